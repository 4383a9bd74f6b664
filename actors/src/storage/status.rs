//! The broker's runtime status as the Storage actor sees it (RocketMQ's
//! `StoreStatsService` behind `brokerStatus`): message counters sampled once
//! a second into a ten-minute window, so put / get TPS over 10 s, 1 min and
//! 10 min are differences of two samples; CommitLog, flush and disk figures;
//! and the store's recovery report, with the records quarantined as damaged.
//!
//! Counting is one addition per append batch and per read, on the Storage
//! thread; sampling runs on its one-second tick; nothing here is on a
//! connection's thread.

use std::collections::VecDeque;
use std::time::Instant;

use actix::prelude::*;

use super::Storage;

/// Samples kept: ten minutes at one a second.
const WINDOW: usize = 601;

/// Running totals and their samples.
#[derive(Debug)]
pub struct RuntimeCounters {
    /// Messages stored since start.
    pub put_messages: u64,
    /// Messages returned by reads since start.
    pub got_messages: u64,
    samples: VecDeque<(Instant, u64, u64)>,
}

impl Default for RuntimeCounters {
    fn default() -> Self {
        let mut samples = VecDeque::with_capacity(WINDOW);
        samples.push_back((Instant::now(), 0, 0));
        RuntimeCounters {
            put_messages: 0,
            got_messages: 0,
            samples,
        }
    }
}

impl RuntimeCounters {
    /// Records the totals now (the one-second tick).
    pub fn sample(&mut self, now: Instant) {
        if self.samples.len() == WINDOW {
            self.samples.pop_front();
        }
        self.samples
            .push_back((now, self.put_messages, self.got_messages));
    }

    /// (put, get) messages per second over the last `secs` seconds (or
    /// since start, if shorter).
    pub fn tps(&self, secs: u64, now: Instant) -> (f64, f64) {
        let Some(&(at, puts, gets)) = self
            .samples
            .iter()
            .find(|(t, _, _)| now.duration_since(*t).as_secs() <= secs)
            .or(self.samples.front())
        else {
            return (0.0, 0.0);
        };
        let elapsed = now.duration_since(at).as_secs_f64();
        if elapsed < 0.001 {
            return (0.0, 0.0);
        }
        (
            (self.put_messages - puts) as f64 / elapsed,
            (self.got_messages - gets) as f64 / elapsed,
        )
    }
}

/// The status table: `(key, value)` text in a stable order.
#[derive(Message)]
#[rtype(result = "Vec<(String, String)>")]
pub struct GetRuntimeStatus;

impl Handler<GetRuntimeStatus> for Storage {
    type Result = MessageResult<GetRuntimeStatus>;

    fn handle(&mut self, _: GetRuntimeStatus, _: &mut Self::Context) -> Self::Result {
        let now = Instant::now();
        let mut t: Vec<(String, String)> = Vec::new();
        let mut put = |k: &str, v: String| t.push((k.to_string(), v));
        for (label, secs) in [("10s", 10), ("1m", 60), ("10m", 600)] {
            let (p, g) = self.runtime.tps(secs, now);
            put(&format!("put_tps_{label}"), format!("{p:.2}"));
            put(&format!("get_found_tps_{label}"), format!("{g:.2}"));
        }
        put("put_messages_total", self.runtime.put_messages.to_string());
        put(
            "get_found_messages_total",
            self.runtime.got_messages.to_string(),
        );
        let Some(store) = self.store.as_mut() else {
            put("store", "shut down".to_string());
            return MessageResult(t);
        };
        let (min, max, flushed) = (
            store.min_physical_offset(),
            store.max_physical_offset(),
            store.flushed_offset(),
        );
        let segment_size = store.config().segment_size;
        let segments = store.segment_count() as u64;
        put("commit_log_min_offset", min.to_string());
        put("commit_log_max_offset", max.to_string());
        put("commit_log_flushed_offset", flushed.to_string());
        put(
            "commit_log_unflushed_bytes",
            max.saturating_sub(flushed).to_string(),
        );
        put("commit_log_segments", segments.to_string());
        put("commit_log_segment_size", segment_size.to_string());
        // The mapped CommitLog: what the page cache holds at most.
        put(
            "commit_log_mapped_bytes",
            (segments * segment_size).to_string(),
        );
        let ratio = store.check_disk();
        put("commit_log_disk_ratio", format!("{ratio:.4}"));
        put(
            "disk_hard_limit_ratio",
            format!("{:.4}", store.config().disk_hard_limit_ratio),
        );
        put("disk_full", store.is_disk_full().to_string());
        put("flush_mode", format!("{:?}", store.config().flush_mode));
        put("flush_fsyncs_total", store.fsync_count().to_string());
        let (last_us, max_us) = store.flush_latency_us();
        put("flush_latency_last_us", last_us.to_string());
        put("flush_latency_max_us", max_us.to_string());
        let r = store.recovery_report().clone();
        put("recovery_kind", format!("{:?}", r.kind));
        put("recovery_scanned_from", r.scanned_from.to_string());
        put("recovery_scanned_records", r.scanned_records.to_string());
        put("recovery_scanned_bytes", r.scanned_bytes.to_string());
        put("recovery_valid_end", r.valid_end.to_string());
        put("recovery_damaged_ranges", r.damaged.len().to_string());
        let quarantined = r.damaged.iter().filter(|d| d.quarantined.is_some()).count();
        put("recovery_quarantined_ranges", quarantined.to_string());
        // Ranges recovery skipped plus records reads refused since open.
        put(
            "recovery_damaged_records",
            store.damaged_records().to_string(),
        );
        MessageResult(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn tps_is_the_difference_over_the_window() {
        let t0 = Instant::now();
        let mut c = RuntimeCounters::default();
        for s in 1..=20u64 {
            c.put_messages += 100;
            c.got_messages += 50;
            c.sample(t0 + Duration::from_secs(s));
        }
        let (p, g) = c.tps(10, t0 + Duration::from_secs(20));
        assert!((p - 100.0).abs() < 1.0, "{p}");
        assert!((g - 50.0).abs() < 1.0, "{g}");
        let (p, _) = RuntimeCounters::default().tps(10, Instant::now());
        assert_eq!(p, 0.0);
    }
}
