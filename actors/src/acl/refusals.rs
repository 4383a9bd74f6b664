//! What an operator sees of ACL refusals: a WARN line per refusal in the
//! server's log and the counter `skylark_auth_refusals_total{reason}`
//! ([`crate::metrics::note_auth_refusal`]).
//!
//! A client with a wrong secret, or an attacker, can send refused
//! requests as fast as the network allows, so the log lines are rate
//! limited: at most one line per (peer address, reason) every
//! [`LOG_INTERVAL`]; the next line for that pair says how many were left
//! out since (`suppressed`). The counter counts every refusal. The same
//! [`LineBudget`] limits the TLS layer's refusal lines (`crate::tls`).
//!
//! A line names the peer, the access key (never a secret or signature:
//! the refusal texts of [`super`] never hold one), the request and the
//! reason. Plain Rust behind a mutex: refusals are an error path.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use slog::{warn, Logger};

pub use super::reason::Reason;

/// At most one log line per (peer, reason) this often.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// (peer, reason) pairs remembered at most; past that, pairs quiet for
/// [`LOG_INTERVAL`] are forgotten (and their next refusal logs at once).
const MAX_PAIRS: usize = 4096;

/// One refused request, as reported.
pub struct Refused<'a> {
    pub peer: Option<IpAddr>,
    /// The access key the request named, if any.
    pub access_key: Option<&'a str>,
    /// The request: a command, a RocketMQ request code, `HA hello`, ...
    pub request: &'a str,
    pub reason: Reason,
    /// The refusal text sent to the client (holds no secret).
    pub error: &'a str,
}

struct Pair {
    last_line: Instant,
    suppressed: u64,
}

/// The rate-limited reporter (see the module doc).
pub struct RefusalLog {
    log: Logger,
    budget: LineBudget<Reason>,
}

/// Which (peer, reason) pairs may have a log line now: at most one per
/// pair every [`LOG_INTERVAL`], counting the ones left out. `K` is the
/// reason (an ACL [`Reason`], a TLS refusal's).
pub struct LineBudget<K> {
    pairs: Mutex<HashMap<(Option<IpAddr>, K), Pair>>,
}

impl<K> Default for LineBudget<K> {
    fn default() -> Self {
        LineBudget {
            pairs: Mutex::default(),
        }
    }
}

impl RefusalLog {
    pub fn new(log: Logger) -> RefusalLog {
        RefusalLog {
            log,
            budget: LineBudget::default(),
        }
    }

    /// Counts `r` and logs it unless a line for its (peer, reason) went
    /// out less than [`LOG_INTERVAL`] ago; returns whether it logged.
    pub fn report(&self, r: &Refused<'_>) -> bool {
        crate::metrics::note_auth_refusal(r.reason.label());
        let Some(suppressed) = self.budget.take_turn(r.peer, r.reason, Instant::now()) else {
            return false;
        };
        let peer = r
            .peer
            .map_or_else(|| "unknown".to_string(), |p| p.to_string());
        warn!(self.log, "request refused by ACL";
            "peer" => peer,
            "access_key" => r.access_key.unwrap_or("-"),
            "request" => r.request,
            "reason" => r.reason.label(),
            "error" => r.error,
            "suppressed" => suppressed);
        true
    }
}

impl<K: std::hash::Hash + Eq + Copy> LineBudget<K> {
    /// `Some(refusals left out since the last line)` if a line may go out
    /// at `now`, else `None` (and one more is counted as left out).
    pub fn take_turn(&self, peer: Option<IpAddr>, reason: K, now: Instant) -> Option<u64> {
        let mut pairs = match self.pairs.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(p) = pairs.get_mut(&(peer, reason)) {
            if now.duration_since(p.last_line) < LOG_INTERVAL {
                p.suppressed += 1;
                return None;
            }
            let n = p.suppressed;
            *p = Pair {
                last_line: now,
                suppressed: 0,
            };
            return Some(n);
        }
        if pairs.len() >= MAX_PAIRS {
            pairs.retain(|_, p| now.duration_since(p.last_line) < LOG_INTERVAL);
            if pairs.len() >= MAX_PAIRS {
                // Many peers at once: keep logging, forget the oldest.
                if let Some(k) = pairs
                    .iter()
                    .min_by_key(|(_, p)| p.last_line)
                    .map(|(k, _)| *k)
                {
                    pairs.remove(&k);
                }
            }
        }
        pairs.insert(
            (peer, reason),
            Pair {
                last_line: now,
                suppressed: 0,
            },
        );
        Some(0)
    }
}

impl std::fmt::Debug for RefusalLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefusalLog")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_peer_and_reason_per_interval_with_the_count_left_out() {
        let l = RefusalLog::new(Logger::root(slog::Discard, slog::o!()));
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let b = Some(IpAddr::from([10, 0, 0, 2]));
        let t0 = Instant::now();
        assert_eq!(l.budget.take_turn(a, Reason::BadSignature, t0), Some(0));
        for _ in 0..5 {
            assert_eq!(l.budget.take_turn(a, Reason::BadSignature, t0), None);
        }
        // Another reason or another peer has its own turn.
        assert_eq!(l.budget.take_turn(a, Reason::Replayed, t0), Some(0));
        assert_eq!(l.budget.take_turn(b, Reason::BadSignature, t0), Some(0));
        let later = t0 + LOG_INTERVAL;
        assert_eq!(l.budget.take_turn(a, Reason::BadSignature, later), Some(5));
        assert_eq!(l.budget.take_turn(a, Reason::BadSignature, later), None);
    }

    #[test]
    fn many_peers_do_not_grow_the_table_without_bound() {
        let l = RefusalLog::new(Logger::root(slog::Discard, slog::o!()));
        let t0 = Instant::now();
        for i in 0..(MAX_PAIRS as u32 + 100) {
            let peer = Some(IpAddr::from(i.to_be_bytes()));
            assert_eq!(l.budget.take_turn(peer, Reason::UnknownKey, t0), Some(0));
        }
        assert!(l.budget.pairs.lock().unwrap().len() <= MAX_PAIRS);
    }
}
