//! Latency fault tolerance: skip a broker that failed or answered slowly.
//!
//! RocketMQ's `MQFaultStrategy`: after each send the producer records the
//! broker's latency; a latency above a step makes the broker "not available"
//! for the matching duration, and a connection failure isolates it outright.
//! Queue selection prefers available brokers and falls back to any broker
//! when all are isolated (a single-broker cluster keeps working).
//!
//! Plain logic with an explicit clock so it can be unit-tested.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Latency steps (ms) and how long a broker is avoided after each.
const LATENCY_MAX_MS: [u64; 7] = [50, 100, 550, 1_000, 2_000, 3_000, 15_000];
const NOT_AVAILABLE_MS: [u64; 7] = [0, 0, 30_000, 60_000, 120_000, 180_000, 600_000];

/// Which brokers to avoid until when, by broker name.
#[derive(Debug, Clone)]
pub struct LatencyFaultTolerance {
    isolation: Duration,
    avoid_until: HashMap<String, Instant>,
}

impl LatencyFaultTolerance {
    /// A tracker that isolates a failed broker for `isolation`.
    pub fn new(isolation: Duration) -> Self {
        LatencyFaultTolerance {
            isolation,
            avoid_until: HashMap::new(),
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

    /// Records the outcome of a request to `broker`: `failed` isolates it,
    /// otherwise its latency decides.
    pub fn update(&mut self, broker: &str, latency: Duration, failed: bool, now: Instant) {
        let avoid = if failed {
            self.isolation
        } else {
            Self::not_available_for(latency)
        };
        if avoid.is_zero() {
            self.avoid_until.remove(broker);
        } else {
            self.avoid_until.insert(broker.to_string(), now + avoid);
        }
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
        f.update("a", Duration::ZERO, true, t0);
        assert!(!f.is_available("a", t0 + Duration::from_secs(29)));
        assert!(f.is_available("a", t0 + Duration::from_secs(30)));
        assert!(f.is_available("b", t0));
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
        f.update("a", Duration::from_millis(700), false, t0);
        assert!(!f.is_available("a", t0 + Duration::from_secs(1)));
        // A fast answer clears it.
        f.update("a", Duration::from_millis(1), false, t0);
        assert!(f.is_available("a", t0));
    }
}
