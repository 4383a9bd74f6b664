//! What an operator sees of bad input on a server port (Skylark frames,
//! RocketMQ remoting, the HA stream): a WARN line naming the peer and the
//! error, at most one per (peer IP, reason) every
//! [`LOG_INTERVAL`](crate::acl::refusals::LOG_INTERVAL); the next line for
//! that pair says how many were left out since (`suppressed`). A port
//! scan or a flood of garbage connections (1000 connects sending 4 zero
//! bytes) so gives a line or two, not one per connection. The budget is
//! the [`LineBudget`] of the ACL and TLS refusal lines, one for the
//! process.
//!
//! A peer that goes away (an i/o error: a reset, a close in the middle of
//! a frame) sent nothing wrong: [`closed_or_bad`] logs that at INFO,
//! limited the same way.

use std::fmt::Display;
use std::net::IpAddr;
use std::sync::LazyLock;
use std::time::Instant;

use slog::{info, warn, Logger};

use crate::acl::refusals::LineBudget;

/// Lines left to log, by (peer, (line, reason)).
static BUDGET: LazyLock<LineBudget<(&'static str, &'static str)>> =
    LazyLock::new(LineBudget::default);

/// Logs `line` at WARN with `reason` and `error` unless a line for this
/// (peer, line, reason) went out less than `LOG_INTERVAL` ago; returns
/// whether it logged. `log` names the peer.
pub fn warn_limited(
    log: &Logger,
    peer: IpAddr,
    line: &'static str,
    reason: &'static str,
    error: &dyn Display,
) -> bool {
    let Some(suppressed) = BUDGET.take_turn(Some(peer), (line, reason), Instant::now()) else {
        return false;
    };
    warn!(log, "{}", line; "reason" => reason, "error" => %error, "suppressed" => suppressed);
    true
}

/// [`warn_limited`], or an INFO line when `peer_left` (the error is the
/// peer's going away, not bad bytes).
pub fn closed_or_bad(
    log: &Logger,
    peer: IpAddr,
    peer_left: bool,
    (line, reason): (&'static str, &'static str),
    error: &dyn Display,
) {
    if peer_left {
        // Rate limited as well: a flood of connect, part of a frame, reset
        // is one line per peer every interval, not one per connection.
        // Counted per listener (the caller's `line`).
        if let Some(suppressed) = BUDGET.take_turn(Some(peer), (line, "left"), Instant::now()) {
            info!(log, "connection closed by the peer in the middle of a frame";
                "error" => %error, "suppressed" => suppressed);
        }
    } else {
        warn_limited(log, peer, line, reason, error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_from_one_peer_gives_one_line_per_reason() {
        let log = Logger::root(slog::Discard, slog::o!());
        let peer = IpAddr::from([192, 0, 2, 77]);
        let logged = (0..1000)
            .filter(|_| warn_limited(&log, peer, "test line", "garbage", &"x"))
            .count();
        assert_eq!(logged, 1);
        assert!(warn_limited(&log, peer, "test line", "other", &"x"));
        assert!(warn_limited(
            &log,
            IpAddr::from([192, 0, 2, 78]),
            "test line",
            "garbage",
            &"x"
        ));
    }
}
