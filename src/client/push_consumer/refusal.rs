//! Pulls the brokers refuse for good, and how the application hears of
//! them.
//!
//! A pull answered `PermissionDenied` (the topic is not readable — `admin
//! topic perm` —, the group's `consume_enable` is off, the broker may not
//! be read), `NoPermission` or `AuthFailed` (the ACL), or `InvalidFilter`
//! (a SQL subscription the broker will not evaluate, e.g. with
//! `enable_property_filter` off) will not succeed by itself: until an
//! operator changes something, the consumer reads nothing. It still
//! retries (every second, so consumption resumes once the refusal is
//! lifted), but it no longer does so without a word: each refusal is a
//! typed [`PullRefusal`] handed to the `on_pull_error` hook
//! ([`PushConsumerBuilder::on_pull_error`](super::PushConsumerBuilder::on_pull_error);
//! by default a `WARN` line on stderr), at most once per queue and error
//! code every [`REPORT_INTERVAL`], with the count left out since; and it
//! stands ([`PushConsumer::pull_refusals`](super::PushConsumer::pull_refusals))
//! until a pull of that queue succeeds again. A route that lists the topic
//! but no readable queue is reported the same way, without a queue.
//!
//! Connection failures, timeouts and `Busy` answers (a broker restarting,
//! a failover, a full mailbox) are transient: retried, not reported.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use skylark_codec::ErrorCode;

use crate::client::error::ClientError;
use crate::client::route::MessageQueue;

/// At most one report per (queue, error code) this often.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// A pull (or the route look-up before it) that a broker or NameServer
/// refused for good.
#[derive(Debug, Clone)]
pub struct PullRefusal {
    /// The consumer group.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// The queue whose pull was refused; `None` when the route of the topic
    /// had no readable queue (every queue's permission lacks read).
    pub queue: Option<MessageQueue>,
    /// The refusal, with the broker's code ([`ClientError::code`]) and
    /// reason.
    pub error: Arc<ClientError>,
    /// Refusals of the same queue and code left out of the reports since
    /// the last one (see [`REPORT_INTERVAL`]).
    pub suppressed: u64,
}

impl PullRefusal {
    /// The wire code of the refusal.
    pub fn code(&self) -> Option<ErrorCode> {
        self.error.code()
    }
}

impl std::fmt::Display for PullRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "consumer group '{}': pulls ", self.group)?;
        match &self.queue {
            Some(q) => write!(f, "of queue {q}")?,
            None => write!(f, "of topic '{}'", self.topic)?,
        }
        write!(f, " are refused: {}", self.error)?;
        if self.suppressed > 0 {
            write!(f, " [{} more since the last report]", self.suppressed)?;
        }
        Ok(())
    }
}

/// Whether a failed pull is a refusal (reported) rather than a transient
/// failure (only retried).
pub(crate) fn refuses_pull(e: &ClientError) -> bool {
    e.is_refusal() || e.code() == Some(ErrorCode::InvalidFilter)
}

/// What the consumer calls with each reported refusal.
pub(super) type PullErrorHook = Arc<dyn Fn(&PullRefusal) + Send + Sync>;

/// The hook when the application installs none: this library has no
/// logger, so the warning goes to stderr.
pub(super) fn warn_on_stderr(r: &PullRefusal) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "WARN push consumer: {r}");
}

/// A standing refusal of one queue (or one topic's route).
struct Standing {
    error: Arc<ClientError>,
    code: Option<ErrorCode>,
    last_report: Instant,
    suppressed: u64,
}

/// The standing refusals, keyed by topic and queue (`None`: the route).
#[derive(Default)]
pub(super) struct Refusals {
    standing: Mutex<HashMap<(String, Option<MessageQueue>), Standing>>,
}

impl Refusals {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, Option<MessageQueue>), Standing>> {
        self.standing.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `error` for `topic` / `queue` at `now`; the refusal to
    /// report if its turn has come (the first of its queue and code, or
    /// [`REPORT_INTERVAL`] after the last report).
    pub(super) fn note(
        &self,
        group: &str,
        topic: &str,
        queue: Option<&MessageQueue>,
        error: ClientError,
        now: Instant,
    ) -> Option<PullRefusal> {
        let code = error.code();
        let error = Arc::new(error);
        let mut map = self.lock();
        let key = (topic.to_string(), queue.cloned());
        let suppressed = match map.get_mut(&key) {
            Some(s)
                if s.code == code
                    && now.saturating_duration_since(s.last_report) < REPORT_INTERVAL =>
            {
                s.error = error;
                s.suppressed += 1;
                return None;
            }
            Some(s) if s.code == code => s.suppressed,
            _ => 0,
        };
        map.insert(
            key,
            Standing {
                error: error.clone(),
                code,
                last_report: now,
                suppressed: 0,
            },
        );
        Some(PullRefusal {
            group: group.to_string(),
            topic: topic.to_string(),
            queue: queue.cloned(),
            error,
            suppressed,
        })
    }

    /// A pull of `queue` (or the route of `topic`) worked: its refusal, if
    /// any, no longer stands.
    pub(super) fn clear(&self, topic: &str, queue: Option<&MessageQueue>) {
        let mut map = self.lock();
        if !map.is_empty() {
            map.remove(&(topic.to_string(), queue.cloned()));
        }
    }

    /// The refusals standing now, by topic and queue.
    pub(super) fn standing(&self, group: &str) -> Vec<PullRefusal> {
        let mut v: Vec<PullRefusal> = self
            .lock()
            .iter()
            .map(|((topic, queue), s)| PullRefusal {
                group: group.to_string(),
                topic: topic.clone(),
                queue: queue.clone(),
                error: s.error.clone(),
                suppressed: s.suppressed,
            })
            .collect();
        v.sort_by_key(|r| (r.topic.clone(), r.queue.as_ref().map(|q| q.queue_id)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skylark_codec::{ProtocolError, WireError};

    fn answered(code: ErrorCode, why: &str) -> ClientError {
        ClientError::from_call(
            "127.0.0.1:10911",
            Some("T"),
            ProtocolError::Remote(WireError::new(code, why)),
        )
    }

    fn queue(id: u32) -> MessageQueue {
        MessageQueue {
            topic: "T".into(),
            broker_name: "b".into(),
            broker_addr: "127.0.0.1:10911".into(),
            queue_id: id,
        }
    }

    #[test]
    fn permission_acl_and_filter_refusals_are_reported_transient_failures_are_not() {
        for code in [
            ErrorCode::PermissionDenied,
            ErrorCode::NoPermission,
            ErrorCode::AuthFailed,
            ErrorCode::InvalidFilter,
        ] {
            assert!(refuses_pull(&answered(code, "no")), "{code:?}");
        }
        for code in [
            ErrorCode::Busy,
            ErrorCode::ServiceNotAvailable,
            ErrorCode::NotMaster,
            ErrorCode::TopicNotFound,
            ErrorCode::Internal,
        ] {
            assert!(!refuses_pull(&answered(code, "later")), "{code:?}");
        }
        let closed = ClientError::from_call(
            "b:1",
            None,
            ProtocolError::Io(std::io::Error::other("connection reset")),
        );
        assert!(!refuses_pull(&closed), "a broker restarting is retried");
        // The route's own refusal (every queue without read permission).
        let route = ClientError::PermissionDenied {
            topic: "T".into(),
            what: "readable",
        };
        assert!(refuses_pull(&route));
    }

    #[test]
    fn one_report_per_queue_and_code_per_interval_with_the_count_left_out() {
        let r = Refusals::default();
        let denied = || {
            answered(
                ErrorCode::PermissionDenied,
                "consumer group 'G' may not consume",
            )
        };
        let (q0, q1) = (queue(0), queue(1));
        let t0 = Instant::now();
        let first = r.note("G", "T", Some(&q0), denied(), t0).expect("reported");
        assert_eq!(first.suppressed, 0);
        assert_eq!(first.code(), Some(ErrorCode::PermissionDenied));
        let line = first.to_string();
        assert!(
            line.starts_with("consumer group 'G': pulls of queue T@b(127.0.0.1:10911):0 are refused: permission denied: consumer group 'G' may not consume"),
            "{line}"
        );
        for _ in 0..3 {
            assert!(r.note("G", "T", Some(&q0), denied(), t0).is_none());
        }
        // Another queue, another code, or the route: a turn of their own.
        assert!(r.note("G", "T", Some(&q1), denied(), t0).is_some());
        let acl = answered(ErrorCode::NoPermission, "no SUB");
        assert!(r.note("G", "T", Some(&q0), acl, t0).is_some());
        assert!(r.note("G", "T", Some(&q0), denied(), t0).is_some());
        assert!(r.note("G", "T", None, denied(), t0).is_some());
        assert!(r.note("G", "T", Some(&q0), denied(), t0).is_none());
        let later = t0 + REPORT_INTERVAL;
        let again = r
            .note("G", "T", Some(&q0), denied(), later)
            .expect("its turn");
        assert_eq!(again.suppressed, 1);
        assert!(again
            .to_string()
            .ends_with("[1 more since the last report]"));

        let standing = r.standing("G");
        assert_eq!(standing.len(), 3, "{standing:?}");
        // A pull that works ends the refusal; the next one is reported at once.
        r.clear("T", Some(&q0));
        r.clear("T", None);
        let left: Vec<_> = r.standing("G").into_iter().map(|s| s.queue).collect();
        assert_eq!(left, vec![Some(q1)]);
        assert!(r.note("G", "T", Some(&q0), denied(), later).is_some());
    }
}
