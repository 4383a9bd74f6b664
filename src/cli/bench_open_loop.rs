//! Open-loop pacing for `skylark bench produce|e2e --rate R`.
//!
//! Why it exists: a closed-loop sender (send, wait for the answer, send the
//! next) slows down whenever the broker does. It then never sends the
//! messages that would have met the worst latency, its histogram looks
//! better than what a fleet of producers would see ("coordinated
//! omission"), and it can miss the asked-for rate without saying so. Here
//! the schedule does not wait for anybody:
//!
//! * Message `i` is due at `start + i/R`. Request `b` carries messages
//!   `[b·K, (b+1)·K)` (`K` = `--batch`) and is due when its last message is
//!   (a batching producer cannot send it earlier). Client `c` of `C` owns
//!   requests `c, c+C, c+2C, …`: a fleet of producers, each with a fixed
//!   share of the load, that does not hand its share to the others when it
//!   falls behind.
//! * Each client sends each request when it is due and keeps at most a
//!   window of requests awaiting an answer: `--inflight` if given, else
//!   [`window`] sizes it to one second of the client's share of the rate,
//!   between 1 and [`MAX_AUTO_WINDOW`]. When the window is full the send
//!   waits for a free slot and goes out late; it is counted in
//!   `window_full_waits`, and because every latency is measured from the
//!   scheduled time, the lateness is in the percentiles too.
//! * Each message carries its own scheduled time (µs since the Unix epoch)
//!   in the [`SCHED_US`] property: e2e latency = arrival − scheduled.
//!   `produce` latency per request = answer − the request's due time.
//! * `send_lag` is how late each request actually left (it is counted
//!   against the broker like any other lateness). Requests are handed to
//!   the sender by a pacing thread ([`pacer`]) that sleeps with the OS's
//!   timer, not tokio's millisecond wheel.
//!
//! The schedule starts once every client has made one unpaced warm-up send
//! (route looked up, connection open), so client start-up is not lateness.
//! The warm-up message carries no [`SCHED_US`], and the e2e consumer skips it.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use tokio::sync::Semaphore;

use super::{histogram, micros, Shared};
use crate::client::{now_ms, now_us, MessageData, Producer};

/// Property carrying a message's scheduled send time in µs since the epoch.
pub(super) const SCHED_US: &str = "BENCH_SCHED_US";

/// Largest window [`window`] picks by itself: the broker's default
/// `max_inflight_per_connection`, above which it answers `Busy`.
pub(super) const MAX_AUTO_WINDOW: usize = 1024;

/// Most due requests spawned before the earlier sends get to run: after a
/// stall the backlog goes out in rounds, not all at once.
const MAX_BURST: usize = 64;

/// The latency the automatic window is sized to absorb at full rate.
const WINDOW_COVERS: Duration = Duration::from_secs(1);

/// The schedule of one run: when each message is due.
#[derive(Debug)]
pub(super) struct Plan {
    /// When message 0 is due.
    pub start: Instant,
    /// `start` on the wall clock, µs since the epoch (for the stamps).
    start_epoch_us: i64,
    rate: u64,
    count: u64,
    batch: u64,
    clients: u64,
}

impl Plan {
    /// A schedule of `count` messages at `rate` msgs/s (> 0), in requests
    /// of `batch`, over `clients`, starting `lead` from now.
    pub fn new(rate: u64, count: u64, batch: u64, clients: u64, lead: Duration) -> Plan {
        Plan {
            start: Instant::now() + lead,
            start_epoch_us: now_us().saturating_add(i64::try_from(lead.as_micros()).unwrap_or(0)),
            rate: rate.max(1),
            count,
            batch: batch.max(1),
            clients: clients.max(1),
        }
    }

    /// Number of requests in the schedule.
    pub fn requests(&self) -> u64 {
        self.count.div_ceil(self.batch)
    }

    /// Index of the first message of request `b` and how many it carries.
    pub fn request(&self, b: u64) -> (u64, u64) {
        let first = b.saturating_mul(self.batch);
        (first, self.batch.min(self.count.saturating_sub(first)))
    }

    /// How long after `start` message `index` is due.
    pub fn offset(&self, index: u64) -> Duration {
        let nanos = u128::from(index) * 1_000_000_000 / u128::from(self.rate);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// When message `index` is due.
    pub fn due(&self, index: u64) -> Instant {
        self.start + self.offset(index)
    }

    /// When message `index` is due, µs since the epoch.
    pub fn scheduled_us(&self, index: u64) -> i64 {
        let off = i64::try_from(self.offset(index).as_micros()).unwrap_or(i64::MAX);
        self.start_epoch_us.saturating_add(off)
    }
}

/// The per-client cap on requests awaiting an answer: `inflight` if given,
/// else enough for [`WINDOW_COVERS`] of the client's share of the request
/// rate, between 1 and [`MAX_AUTO_WINDOW`].
pub(super) fn window(rate: u64, batch: usize, clients: usize, inflight: Option<usize>) -> usize {
    if let Some(w) = inflight {
        return w.max(1);
    }
    let per_client =
        u128::try_from(batch.max(1).saturating_mul(clients.max(1))).unwrap_or(u128::MAX);
    let covers = u128::from(rate) * WINDOW_COVERS.as_millis() / 1000;
    let w = covers.div_ceil(per_client);
    usize::try_from(w)
        .unwrap_or(usize::MAX)
        .clamp(1, MAX_AUTO_WINDOW)
}

/// What one paced client measured.
pub(super) struct ClientStats {
    /// Per request: answer − due (µs).
    pub latency: Histogram<u64>,
    /// Per request: actual send − due (µs).
    pub send_lag: Histogram<u64>,
    /// Requests that found the window full and waited for a slot.
    pub window_full_waits: u64,
}

/// Body, topic and stamping of the messages a client sends.
pub(super) struct Load {
    pub topic: String,
    pub body: Bytes,
    /// Put each message's scheduled time in [`SCHED_US`] (e2e).
    pub stamp: bool,
}

/// Sends client `client`'s share of `plan`, each request when it is due,
/// with at most `window` awaiting an answer; returns when every answer is in.
pub(super) async fn paced_client(
    p: Producer,
    load: Rc<Load>,
    plan: Arc<Plan>,
    client: u64,
    window: usize,
    shared: Arc<Shared>,
) -> anyhow::Result<ClientStats> {
    let permits = u32::try_from(window)?;
    let slots = Arc::new(Semaphore::new(window));
    let latency = Rc::new(RefCell::new(histogram()?));
    let mut send_lag = histogram()?;
    let mut window_full_waits = 0;
    let mut due_requests = pacer(plan.clone(), client)?;
    let mut due_now = Vec::new();
    'run: while due_requests.recv_many(&mut due_now, MAX_BURST).await > 0 {
        // Every request already due is spawned before any of them runs, so
        // their frames reach the connection together and leave in one
        // write, as a busy producer's would (one write per request was most
        // of the bench's own send lag). Then the sends spawned earlier run.
        for b in due_now.drain(..) {
            if shared.stop.load(Ordering::Relaxed) {
                break 'run; // a run of failures (`Shared::fail`); the pacer ends too
            }
            let (first, n) = plan.request(b);
            let due = plan.due(first + n - 1);
            let slot = match slots.clone().try_acquire_owned() {
                Ok(s) => s,
                Err(_) => {
                    window_full_waits += 1;
                    slots.clone().acquire_owned().await?
                }
            };
            send_lag.saturating_record(micros(Instant::now().saturating_duration_since(due)));
            let msgs: Vec<MessageData> = (first..first + n)
                .map(|i| message(&load, &plan, i))
                .collect();
            let (p, load, latency, shared) =
                (p.clone(), load.clone(), latency.clone(), shared.clone());
            actix::spawn(async move {
                if let Err(e) = send(&p, &load.topic, msgs).await {
                    shared.fail(&e);
                } else {
                    shared.succeeded();
                    let lat = micros(Instant::now().saturating_duration_since(due));
                    latency.borrow_mut().saturating_record(lat);
                    shared.done.fetch_add(n, Ordering::Relaxed);
                    shared
                        .bytes
                        .fetch_add(n * load.body.len() as u64, Ordering::Relaxed);
                    shared.mark_done();
                }
                drop(slot);
            });
        }
        // Let the sends spawned so far run before taking more.
        tokio::task::yield_now().await;
    }
    // Every request has been sent; wait for the answers still out.
    let _all = slots.acquire_many(permits).await?;
    let latency = latency.borrow().clone();
    Ok(ClientStats {
        latency,
        send_lag,
        window_full_waits,
    })
}

/// Hands client `client`'s requests over as each falls due, from a thread
/// of its own: tokio's timers tick in milliseconds, so a request paced by
/// them left up to a millisecond late (the bench's own lag, counted
/// against the broker); `thread::sleep` wakes within tens of µs.
fn pacer(
    plan: Arc<Plan>,
    client: u64,
) -> anyhow::Result<tokio::sync::mpsc::UnboundedReceiver<u64>> {
    /// Closer than this to its time, a request is handed over at once.
    const SLACK: Duration = Duration::from_micros(20);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name(format!("bench-pacer-{client}"))
        .spawn(move || {
            let mut b = client;
            while b < plan.requests() {
                let (first, n) = plan.request(b);
                let wait = plan
                    .due(first + n - 1)
                    .saturating_duration_since(Instant::now());
                if wait > SLACK {
                    std::thread::sleep(wait);
                }
                if tx.send(b).is_err() {
                    return;
                }
                b += plan.clients;
            }
        })?;
    Ok(rx)
}

/// Message `i` of the schedule.
fn message(load: &Load, plan: &Plan, i: u64) -> MessageData {
    MessageData {
        body: load.body.clone(),
        born_timestamp: now_ms(),
        properties: if load.stamp {
            vec![(SCHED_US.to_string(), plan.scheduled_us(i).to_string())]
        } else {
            Vec::new()
        },
        ..MessageData::default()
    }
}

/// One request: a plain send for one message at `--batch 1`, else a batch.
async fn send(
    p: &Producer,
    topic: &str,
    mut msgs: Vec<MessageData>,
) -> Result<(), crate::client::ClientError> {
    if msgs.len() == 1 {
        if let Some(m) = msgs.pop() {
            return p.send(topic, m).await.map(drop);
        }
    }
    p.send_batch(topic, msgs).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(rate: u64, count: u64, batch: u64, clients: u64) -> Plan {
        Plan::new(rate, count, batch, clients, Duration::ZERO)
    }

    #[test]
    fn message_i_is_due_at_i_over_rate() {
        let p = plan(50_000, 300_000, 1, 1);
        assert_eq!(p.offset(0), Duration::ZERO);
        assert_eq!(p.offset(1), Duration::from_micros(20));
        assert_eq!(p.offset(50_000), Duration::from_secs(1));
        assert_eq!(p.offset(299_999), Duration::from_nanos(5_999_980_000));
        // Non-integral intervals do not drift: 3 msgs/s, message 3 at 1 s.
        assert_eq!(plan(3, 10, 1, 1).offset(3), Duration::from_secs(1));
        assert_eq!(p.scheduled_us(50_000) - p.scheduled_us(0), 1_000_000);
    }

    #[test]
    fn requests_cover_every_message_once() {
        let p = plan(1000, 10, 4, 3);
        assert_eq!(p.requests(), 3);
        let parts: Vec<_> = (0..p.requests()).map(|b| p.request(b)).collect();
        assert_eq!(parts, vec![(0, 4), (4, 4), (8, 2)]);
        assert_eq!(plan(1000, 8, 4, 1).requests(), 2);
        assert_eq!(plan(1000, 1, 1, 1).request(0), (0, 1));
    }

    #[test]
    fn window_covers_a_second_of_the_clients_share_capped() {
        // 10 K msgs/s, one client, one message per request: 1024 (cap).
        assert_eq!(window(10_000, 1, 1, None), MAX_AUTO_WINDOW);
        // 1000 msgs/s over 2 clients in batches of 10: 50 requests/s each.
        assert_eq!(window(1000, 10, 2, None), 50);
        // Rounds up and never goes below 1.
        assert_eq!(window(7, 2, 1, None), 4);
        assert_eq!(window(1, 32, 4, None), 1);
        // --inflight wins, even above the automatic cap.
        assert_eq!(window(10_000, 1, 1, Some(8)), 8);
        assert_eq!(window(10_000, 1, 1, Some(4096)), 4096);
    }
}
