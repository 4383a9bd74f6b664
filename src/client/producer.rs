//! [`Producer`]: send messages (sync, async, oneway, batch, ordered).
//!
//! A `Send + Clone` handle on a [`ClientInstance`]. Each send asks the actor
//! for a queue and a broker connection, then makes the RPC itself, so any
//! number of sends run concurrently on pipelined connections. A failed send
//! (connection failure or a retryable broker error such as `Busy`) is
//! retried on another broker up to `retry_times_when_send_failed` times,
//! except ordered sends, which must stay on their queue, and a request that
//! got no answer within `request_timeout` (it may be stored: sent again it
//! would be stored twice). A body over
//! `ClientConfig::max_message_size` (4 MiB, as RocketMQ's producer), or a
//! batch that cannot fit in one frame, is refused before sending with
//! `ClientError::MessageTooLarge`, worded as the broker's own answer.

use std::sync::Arc;
use std::time::Instant;

use actix::Addr;
use skylark_codec::message::PROPERTY_UNIQ_KEY;
use skylark_codec::{MessageData, SendBatchRequest, SendRequest, SendResult};

use super::config::ClientConfig;
use super::error::{ClientError, Result};
use super::fault::{LatencyFaultTolerance, Outcome};
use super::instance::{ClientInstance, ReportOutcome, SelectQueue, Selected};
use super::namesrv::NameServerClient;
use super::now_ms;

/// A producer handle; clone it freely.
#[derive(Clone)]
pub struct Producer {
    instance: Addr<ClientInstance>,
    namesrv: NameServerClient,
    config: Arc<ClientConfig>,
    group: Arc<str>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Producer({})", self.group)
    }
}

/// What to send in one request.
enum Payload {
    One(MessageData),
    Batch(Vec<MessageData>),
}

impl Producer {
    /// Starts a client instance (on the current arbiter) and returns a
    /// producer of `group` on it. Must run inside an actix System.
    pub fn start(config: ClientConfig, group: &str) -> Result<Producer> {
        // The group names the producer in heartbeats and, for transactions,
        // is whom the broker asks back: the consumer's rules apply.
        skylark_codec::validate_group_name(group).map_err(ClientError::InvalidArgument)?;
        let (instance, namesrv, config) = ClientInstance::start_with(config)?;
        Ok(Producer::on(instance, namesrv, config, group))
    }

    /// A producer sharing an existing client instance.
    pub fn on(
        instance: Addr<ClientInstance>,
        namesrv: NameServerClient,
        config: Arc<ClientConfig>,
        group: &str,
    ) -> Producer {
        Producer {
            instance,
            namesrv,
            config,
            group: Arc::from(group),
        }
    }

    /// The client instance behind this handle.
    pub fn instance(&self) -> &Addr<ClientInstance> {
        &self.instance
    }

    /// The NameServer client behind this handle.
    pub fn namesrv(&self) -> &NameServerClient {
        &self.namesrv
    }

    /// Sends one message and waits for the broker's answer.
    pub async fn send(&self, topic: &str, msg: MessageData) -> Result<SendResult> {
        let mut r = self.send_payload(topic, Payload::One(msg), None).await?;
        r.pop().ok_or_else(|| empty_answer(topic))
    }

    /// Sends one message to the queue chosen by `order_key` (same key, same
    /// queue); not retried elsewhere.
    pub async fn send_ordered(
        &self,
        topic: &str,
        msg: MessageData,
        order_key: &str,
    ) -> Result<SendResult> {
        let mut r = self
            .send_payload(topic, Payload::One(msg), Some(order_key.to_string()))
            .await?;
        r.pop().ok_or_else(|| empty_answer(topic))
    }

    /// Sends several messages in one request, stored in order in one queue;
    /// one result per message.
    pub async fn send_batch(&self, topic: &str, msgs: Vec<MessageData>) -> Result<Vec<SendResult>> {
        self.send_payload(topic, Payload::Batch(msgs), None).await
    }

    /// [`send_batch`](Self::send_batch) into the queue of `order_key`.
    pub async fn send_batch_ordered(
        &self,
        topic: &str,
        msgs: Vec<MessageData>,
        order_key: &str,
    ) -> Result<Vec<SendResult>> {
        self.send_payload(topic, Payload::Batch(msgs), Some(order_key.to_string()))
            .await
    }

    /// Sends without waiting for (or getting) an answer; errors only if no
    /// broker could be reached.
    pub async fn send_oneway(&self, topic: &str, mut msg: MessageData) -> Result<()> {
        // No answer comes back to refuse a bad name: check it here.
        skylark_codec::validate_topic_name(topic).map_err(ClientError::InvalidArgument)?;
        check_size(&self.config, topic, std::slice::from_ref(&msg))?;
        stamp(&mut msg);
        let sel = self.select(topic, None, None).await?;
        let req = SendRequest {
            producer_group: self.group.to_string(),
            topic: topic.to_string(),
            queue_id: queue_id(&sel),
            message: msg,
        };
        sel.client
            .oneway(&req)
            .await
            .map_err(|e| ClientError::from_call(&sel.queue.broker_addr, Some(topic), e))
    }

    /// Sends in the background; `callback` gets the result. Must be called
    /// inside an actix System.
    pub fn send_async<F>(&self, topic: &str, msg: MessageData, callback: F)
    where
        F: FnOnce(Result<SendResult>) + 'static,
    {
        let this = self.clone();
        let topic = topic.to_string();
        actix::spawn(async move {
            callback(this.send(&topic, msg).await);
        });
    }

    async fn select(
        &self,
        topic: &str,
        order_key: Option<String>,
        last_failed: Option<String>,
    ) -> Result<Selected> {
        self.instance
            .send(SelectQueue {
                topic: topic.to_string(),
                order_key,
                last_failed,
            })
            .await
            .map_err(|_| ClientError::Stopped)?
    }

    async fn send_payload(
        &self,
        topic: &str,
        payload: Payload,
        order_key: Option<String>,
    ) -> Result<Vec<SendResult>> {
        match &payload {
            Payload::One(m) => check_size(&self.config, topic, std::slice::from_ref(m))?,
            Payload::Batch(ms) => check_size(&self.config, topic, ms)?,
        }
        let mut req = match payload {
            Payload::One(mut m) => {
                stamp(&mut m);
                Request::One(SendRequest {
                    producer_group: self.group.to_string(),
                    topic: topic.to_string(),
                    queue_id: -1,
                    message: m,
                })
            }
            Payload::Batch(mut ms) => {
                ms.iter_mut().for_each(stamp);
                Request::Batch(SendBatchRequest {
                    producer_group: self.group.to_string(),
                    topic: topic.to_string(),
                    queue_id: -1,
                    messages: ms,
                })
            }
        };
        let retries = if order_key.is_some() {
            0
        } else {
            self.config.retry_times_when_send_failed
        };
        let mut last_failed = None;
        let mut attempt = 0;
        loop {
            let sel = match self
                .select(topic, order_key.clone(), last_failed.take())
                .await
            {
                Ok(sel) => sel,
                // The chosen master is unreachable (the fault tracker now
                // avoids it): try another broker.
                Err(ClientError::Connection { .. }) if attempt < retries => {
                    attempt += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let start = Instant::now();
            let res = req.call(&sel, topic).await;
            let failed = matches!(&res, Err(e) if e.is_retryable());
            // A request that got no answer in time was sent and may be
            // stored: sending it again elsewhere would store it twice. As
            // RocketMQ's producer, whose send timeout covers all its
            // retries, it ends here (the fault tracker still hears of it).
            let resend = failed && !matches!(&res, Err(e) if e.is_answer_timeout());
            let outcome = match &res {
                Err(ClientError::Connection { .. }) => Outcome::Unreachable,
                _ if failed => Outcome::Refused,
                _ => Outcome::Answered,
            };
            let latency = start.elapsed();
            let changes_nothing = outcome == Outcome::Answered
                && !sel.report_answers
                && LatencyFaultTolerance::not_available_for(latency).is_zero();
            if !changes_nothing {
                self.instance.do_send(ReportOutcome {
                    topic: topic.to_string(),
                    broker_name: sel.queue.broker_name.clone(),
                    sent: start,
                    latency,
                    outcome,
                });
            }
            match res {
                Err(_) if resend && attempt < retries => {
                    attempt += 1;
                    last_failed = Some(sel.queue.broker_name);
                }
                other => return other,
            }
        }
    }
}

/// One send request, built once and re-aimed at each attempt's queue.
enum Request {
    One(SendRequest),
    Batch(SendBatchRequest),
}

impl Request {
    async fn call(&mut self, sel: &Selected, topic: &str) -> Result<Vec<SendResult>> {
        let wrap = |e| ClientError::from_call(&sel.queue.broker_addr, Some(topic), e);
        match self {
            Request::One(req) => {
                req.queue_id = queue_id(sel);
                sel.client.call(&*req).await.map(|r| vec![r]).map_err(wrap)
            }
            Request::Batch(req) => {
                req.queue_id = queue_id(sel);
                sel.client
                    .call(&*req)
                    .await
                    .map(|r| r.results)
                    .map_err(wrap)
            }
        }
    }
}

/// Room in a frame for a send request's header, topic, group and message
/// fields around the bodies.
const FRAME_SLACK: usize = 64 * 1024;

/// Refuses, before anything is sent, an empty body (as RocketMQ's producer
/// does: "the message body length is zero"), a tag with a `|` in it (as
/// RocketMQ 5's does), a body over the configured
/// message size, or a request whose bodies (and properties) cannot fit one
/// frame.
fn check_size(config: &ClientConfig, topic: &str, msgs: &[MessageData]) -> Result<()> {
    let too_large = |size, limit| ClientError::MessageTooLarge {
        topic: topic.to_string(),
        size,
        limit,
    };
    let mut total = 0usize;
    for m in msgs {
        if m.body.is_empty() {
            return Err(ClientError::InvalidArgument(format!(
                "message body is empty (topic '{topic}'): a message needs a body of at least one byte"
            )));
        }
        if let Some(tag) = m.tags.as_deref().filter(|t| t.contains('|')) {
            // RocketMQ 5's producer refuses it too: no tag expression can
            // select such a message (`||` separates tags).
            return Err(ClientError::InvalidArgument(format!(
                "message tag {tag:?} (topic '{topic}') contains '|', which no tag may: a consumer's tag filter could never select it"
            )));
        }
        if m.body.len() > config.max_message_size {
            return Err(too_large(m.body.len(), config.max_message_size));
        }
        let props: usize = m.properties.iter().map(|(k, v)| k.len() + v.len()).sum();
        total = total.saturating_add(m.body.len()).saturating_add(props);
    }
    let frame_room = config.max_frame_size.saturating_sub(FRAME_SLACK);
    if total > frame_room {
        return Err(too_large(total, frame_room));
    }
    Ok(())
}

fn queue_id(sel: &Selected) -> i32 {
    i32::try_from(sel.queue.queue_id).unwrap_or(-1)
}

/// Sets the born timestamp and the unique id (`UNIQ_KEY`, indexed by the
/// broker for query by id/key) if the caller did not.
fn stamp(m: &mut MessageData) {
    if m.born_timestamp == 0 {
        m.born_timestamp = now_ms();
    }
    if !m.properties.iter().any(|(k, _)| k == PROPERTY_UNIQ_KEY) {
        m.properties
            .push((PROPERTY_UNIQ_KEY.to_string(), unique_id()));
    }
}

/// RocketMQ's client-side message id: 32 hex digits, unique per process
/// (process id, a random number drawn once, a counter).
pub fn unique_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static PREFIX: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix =
        PREFIX.get_or_init(|| format!("{:08X}{:08X}", std::process::id(), rand::random::<u32>()));
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // One allocation and no formatting machinery: this runs for every send.
    let mut id = String::with_capacity(prefix.len() + 16);
    id.push_str(prefix);
    for shift in (0..16).rev() {
        let digit = ((n >> (shift * 4)) & 0xF) as u8;
        id.push(char::from(b"0123456789ABCDEF"[usize::from(digit)]));
    }
    id
}

fn empty_answer(topic: &str) -> ClientError {
    ClientError::InvalidArgument(format!(
        "broker returned no send result for topic '{topic}'"
    ))
}

#[cfg(test)]
mod tests {
    use super::unique_id;

    #[test]
    fn unique_ids_are_32_hex_digits_counting_up() {
        let (a, b) = (unique_id(), unique_id());
        for id in [&a, &b] {
            assert_eq!(id.len(), 32, "{id}");
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()),
                "{id}"
            );
        }
        assert_eq!(a[..16], b[..16], "one prefix per process");
        let (na, nb) = (
            u64::from_str_radix(&a[16..], 16).unwrap(),
            u64::from_str_radix(&b[16..], 16).unwrap(),
        );
        assert!(nb > na, "{a} then {b}");
        assert_eq!(
            &b[16..],
            format!("{nb:016X}"),
            "the counter's digits, zero-padded"
        );
    }
}
