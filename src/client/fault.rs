//! Latency fault tolerance: skip a broker that failed or answered slowly.
//!
//! RocketMQ's `MQFaultStrategy`: after each send the producer records the
//! broker's latency; a latency above a step makes the broker "not available"
//! for the matching duration, and a connection failure isolates it outright.
//! Queue selection prefers available brokers and falls back to any broker
//! when all are isolated (a single-broker cluster keeps working).
//!
//! Unlike RocketMQ, an answer only speaks for the time it was sent: a fast
//! success of a request sent *before* the broker's last failure does not
//! lift the isolation. With several sends in flight when a broker dies, the
//! ones that were answered just before report after the failure, and would
//! otherwise put the dead broker back into rotation, so that the retries of
//! the failed sends chose it again.
//!
//! Plain logic with an explicit clock so it can be unit-tested.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Latency steps (ms) and how long a broker is avoided after each.
const LATENCY_MAX_MS: [u64; 7] = [50, 100, 550, 1_000, 2_000, 3_000, 15_000];
const NOT_AVAILABLE_MS: [u64; 7] = [0, 0, 30_000, 60_000, 120_000, 180_000, 600_000];

/// What a request to a broker came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It answered: success, or an error retrying elsewhere would not fix.
    Answered,
    /// It answered with a retryable error (busy, flush or slave timeout):
    /// alive, but avoided for the isolation window.
    Refused,
    /// It could not be reached: connecting failed, the connection broke, or
    /// the request timed out.
    Unreachable,
}

/// Which brokers to avoid until when, by broker name.
#[derive(Debug, Clone)]
pub struct LatencyFaultTolerance {
    isolation: Duration,
    avoid_until: HashMap<String, Instant>,
    /// When each broker was last found unreachable.
    failed_at: HashMap<String, Instant>,
}

impl LatencyFaultTolerance {
    /// A tracker that isolates a failed broker for `isolation`.
    pub fn new(isolation: Duration) -> Self {
        LatencyFaultTolerance {
            isolation,
            avoid_until: HashMap::new(),
            failed_at: HashMap::new(),
        }
    }

    /// How long to avoid a broker that answered in `latency`.
    pub fn not_available_for(latency: Duration) -> Duration {
        let ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        LATENCY_MAX_MS
            .iter()
            .zip(NOT_AVAILABLE_MS)
            .rev()
            .find(|(max, _)| ms >= **max)
            .map(|(_, na)| Duration::from_millis(na))
            .unwrap_or(Duration::ZERO)
    }

    /// Records the outcome of a request to `broker` sent at `sent` and
    /// settled `latency` later: a refusal or an unreachable broker isolates
    /// it; an answer lets its latency decide, unless the request was sent
    /// before the broker was last found unreachable.
    pub fn update(&mut self, broker: &str, sent: Instant, latency: Duration, outcome: Outcome) {
        let settled = sent + latency;
        let avoid = match outcome {
            Outcome::Unreachable => {
                let f = self.failed_at.entry(broker.to_string()).or_insert(settled);
                *f = (*f).max(settled);
                self.isolation
            }
            Outcome::Refused => self.isolation,
            Outcome::Answered => {
                if self.failed_at.get(broker).is_some_and(|f| sent <= *f) {
                    return;
                }
                Self::not_available_for(latency)
            }
        };
        if avoid.is_zero() {
            self.avoid_until.remove(broker);
        } else {
            self.avoid_until.insert(broker.to_string(), settled + avoid);
        }
    }

    /// Whether `broker` was found unreachable (not merely slow or busy)
    /// within the last isolation window before `now`.
    pub fn failed_recently(&self, broker: &str, now: Instant) -> bool {
        self.failed_at
            .get(broker)
            .is_some_and(|f| now < *f + self.isolation)
    }

    /// Whether no broker is being avoided: a fast answer then changes
    /// nothing, and the producer need not report it.
    pub fn is_quiet(&self) -> bool {
        self.avoid_until.is_empty()
    }

    /// Whether `broker` may be used at `now`.
    pub fn is_available(&self, broker: &str, now: Instant) -> bool {
        match self.avoid_until.get(broker) {
            Some(until) => now >= *until,
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_isolates_for_the_window() {
        let mut f = LatencyFaultTolerance::new(Duration::from_secs(30));
        let t0 = Instant::now();
        assert!(f.is_available("a", t0));
        f.update("a", t0, Duration::ZERO, Outcome::Unreachable);
        assert!(!f.is_available("a", t0 + Duration::from_secs(29)));
        assert!(f.is_available("a", t0 + Duration::from_secs(30)));
        assert!(f.is_available("b", t0));
        // A busy broker is avoided too, but it is alive.
        f.update("b", t0, Duration::ZERO, Outcome::Refused);
        assert!(!f.is_available("b", t0 + Duration::from_secs(1)));
        assert!(!f.failed_recently("b", t0 + Duration::from_secs(1)));
        assert!(f.failed_recently("a", t0 + Duration::from_secs(1)));
    }

    #[test]
    fn latency_steps() {
        assert_eq!(
            LatencyFaultTolerance::not_available_for(Duration::from_millis(10)),
            Duration::ZERO
        );
        assert_eq!(
            LatencyFaultTolerance::not_available_for(Duration::from_millis(120)),
            Duration::ZERO
        );
        assert_eq!(
            LatencyFaultTolerance::not_available_for(Duration::from_millis(600)),
            Duration::from_secs(30)
        );
        assert_eq!(
            LatencyFaultTolerance::not_available_for(Duration::from_secs(20)),
            Duration::from_secs(600)
        );
        let mut f = LatencyFaultTolerance::new(Duration::from_secs(30));
        let t0 = Instant::now();
        f.update("a", t0, Duration::from_millis(700), Outcome::Answered);
        assert!(!f.is_available("a", t0 + Duration::from_secs(1)));
        // A fast answer clears it.
        f.update("a", t0, Duration::from_millis(1), Outcome::Answered);
        assert!(f.is_available("a", t0));
    }

    #[test]
    fn an_answer_sent_before_the_failure_does_not_lift_the_isolation() {
        let mut f = LatencyFaultTolerance::new(Duration::from_secs(30));
        let t0 = Instant::now();
        // Sent at t0 + 7 ms, found unreachable 3 ms later.
        let fail_sent = t0 + Duration::from_millis(7);
        f.update(
            "a",
            fail_sent,
            Duration::from_millis(3),
            Outcome::Unreachable,
        );
        // Sent at t0 + 8 ms, answered (and reported) after the failure.
        let early = t0 + Duration::from_millis(8);
        f.update("a", early, Duration::from_millis(4), Outcome::Answered);
        let later = t0 + Duration::from_millis(20);
        assert!(!f.is_available("a", later));
        assert!(f.failed_recently("a", later));
        assert!(!f.failed_recently("a", fail_sent + Duration::from_secs(31)));
        // A request sent after the failure that succeeds does lift it.
        let fresh = t0 + Duration::from_secs(1);
        f.update("a", fresh, Duration::from_millis(1), Outcome::Answered);
        assert!(f.is_available("a", fresh));
    }
}
