//! `skylark produce`: send messages from the command line.
//!
//! Sends are sequential (one request in flight) so that what is printed is
//! exactly what the broker acknowledged: with `--json`, one line
//! `{"msg_id","queue_id","queue_offset","status"}` per message, flushed
//! right after its acknowledgement (a test kills the broker mid-run and
//! checks that every printed message survived). The first failure stops the
//! run with the broker's reason on stderr and a non-zero exit. So does the
//! first send status other than `SendOk` (stored, but not flushed or
//! replicated as promised: exit status 3), unless `--accept-status`.
//!
//! Human output: one line per message for up to 100 messages, then only a
//! summary.

use std::io::Write;
use std::time::Instant;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use rand::Rng;
use serde::Serialize;

use super::ProduceArgs;
use crate::client::{now_ms, MessageData, Producer, SendResult, SendStatus};

/// `println!` that returns an error (e.g. a closed pipe) instead of panicking.
macro_rules! out {
    ($($t:tt)*) => {
        writeln!(std::io::stdout().lock(), $($t)*)?
    };
}

/// Above this many messages the human output is only a summary.
const MAX_HUMAN_LINES: u64 = 100;

/// The `--json` line of one sent message (`produce_tx` adds its fields).
#[derive(Serialize)]
pub(super) struct SentJson<'a> {
    msg_id: &'a str,
    queue_id: u32,
    queue_offset: u64,
    status: String,
}

impl<'a> SentJson<'a> {
    pub(super) fn of(r: &'a SendResult) -> Self {
        SentJson {
            msg_id: &r.msg_id,
            queue_id: r.queue_id,
            queue_offset: r.queue_offset,
            status: format!("{:?}", r.status),
        }
    }
}

/// Entry point of `skylark produce` without `--transaction` (with it, the
/// binary calls `produce_tx`'s `run`, which builds its messages with
/// this module's helpers; this module does not know it).
pub fn run(a: ProduceArgs) -> anyhow::Result<()> {
    check_args(&a)?;
    super::block_on(produce(a))
}

/// The checks of the arguments that both kinds of produce run first.
pub(super) fn check_args(a: &ProduceArgs) -> anyhow::Result<()> {
    if a.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if let Some(l) = a.delay_level {
        if l == 0 {
            bail!("--delay-level must be at least 1 (a level above the broker's last is clamped to it)");
        }
    }
    skylark_codec::validate_topic_name(&a.topic).map_err(anyhow::Error::msg)?;
    parse_properties(&a.properties)?;
    Ok(())
}

/// `--property NAME=VALUE`s. A system property name is refused, naming
/// the flag that sets it: `TRAN_MSG=true` alone stored a half message no
/// producer would ever commit, acknowledged at an offset of the half queue.
pub(super) fn parse_properties(props: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    use skylark_codec::message::*;
    props
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, _)) if SYSTEM_PROPERTIES.contains(&k) => {
                let by = match k {
                    PROPERTY_TAGS => "--tag",
                    PROPERTY_KEYS => "--key",
                    PROPERTY_DELAY => "--delay-level",
                    PROPERTY_DELIVER_AT => "--deliver-at or --delay-ms",
                    PROPERTY_TRANSACTION_PREPARED
                    | PROPERTY_PRODUCER_GROUP
                    | PROPERTY_TRANSACTION_ID => "--transaction",
                    PROPERTY_UNIQ_KEY => "the producer itself",
                    _ => "the broker",
                };
                bail!("--property {k} is a system property, set by {by}, not a user property")
            }
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("--property must be NAME=VALUE, got {p:?}"),
        })
        .collect()
}

/// The body of message `i` (0-based).
fn body(a: &ProduceArgs, i: u64) -> Bytes {
    if let Some(size) = a.size {
        let mut rng = rand::thread_rng();
        return (0..size)
            .map(|_| rng.gen_range(0x20u8..0x7f))
            .collect::<Vec<u8>>()
            .into();
    }
    let text = a.body.as_deref().unwrap_or("Hello Skylark");
    if a.count > 1 && !a.exact_body {
        Bytes::from(format!("{text}-{i}"))
    } else {
        Bytes::from(text.to_string())
    }
}

/// `--delay-ms`: a number of milliseconds that, added to now, is still a
/// Unix time in milliseconds (below 2^63, what `deliver_at_ms` holds). A
/// longer delay could only be sent saturated, as an absurd delivery time no
/// broker accepts (each refuses more than its `max_delay_ms` ahead), so it
/// is a usage error that names the limit.
pub(super) fn parse_delay_ms(s: &str) -> Result<u64, String> {
    let ms: u64 = s.trim().parse().map_err(|e| format!("{e}"))?;
    let max = u64::try_from(i64::MAX.saturating_sub(now_ms())).unwrap_or(0);
    if ms > max {
        return Err(format!(
            "the delay must be at most {max} ms (now + the delay must be a Unix time in \
             milliseconds below 2^63); brokers refuse any delay over their max_delay_ms \
             (default 259200000 ms, 3 days; `admin delay stats` shows it)"
        ));
    }
    Ok(ms)
}

pub(super) fn message(a: &ProduceArgs, i: u64, properties: &[(String, String)]) -> MessageData {
    let now = now_ms();
    let deliver_at_ms = match (a.deliver_at, a.delay_ms) {
        (Some(at), _) => Some(at),
        (None, Some(ms)) => Some(now.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX))),
        (None, None) => None,
    };
    MessageData {
        tags: a.tag.clone(),
        keys: a.key.clone(),
        properties: properties.to_vec(),
        body: body(a, i),
        born_timestamp: now,
        delay_level: a.delay_level.unwrap_or(0),
        deliver_at_ms,
        ..MessageData::default()
    }
}

async fn send(
    p: &Producer,
    a: &ProduceArgs,
    msgs: Vec<MessageData>,
) -> anyhow::Result<Vec<SendResult>> {
    let r = match (&a.order_key, a.batch) {
        (Some(k), 1) => {
            let mut msgs = msgs;
            match msgs.pop() {
                Some(m) => p.send_ordered(&a.topic, m, k).await.map(|r| vec![r]),
                None => Ok(Vec::new()),
            }
        }
        (None, 1) => {
            let mut msgs = msgs;
            match msgs.pop() {
                Some(m) => p.send(&a.topic, m).await.map(|r| vec![r]),
                None => Ok(Vec::new()),
            }
        }
        (Some(k), _) => p.send_batch_ordered(&a.topic, msgs, k).await,
        (None, _) => p.send_batch(&a.topic, msgs).await,
    };
    Ok(r?)
}

/// Why a stored message's send status is not `SendOk`, in an operator's words.
fn status_reason(s: SendStatus) -> &'static str {
    match s {
        SendStatus::SendOk => "stored",
        SendStatus::FlushDiskTimeout => {
            "stored, but the synchronous disk flush timed out (SYNC_FLUSH)"
        }
        SendStatus::FlushSlaveTimeout => {
            "stored on the master, but its slave did not acknowledge it in time (SYNC_MASTER)"
        }
        SendStatus::SlaveNotAvailable => {
            "stored on the master, but no slave is connected to replicate it (SYNC_MASTER)"
        }
    }
}

/// Fails the run (exit status [`EXIT_SEND_NOT_OK`](super::EXIT_SEND_NOT_OK))
/// at the first result that is not `SendOk`; the line already printed for
/// it says where it was stored.
pub(super) fn check_status(topic: &str, results: &[SendResult]) -> anyhow::Result<()> {
    if let Some(r) = results.iter().find(|r| r.status != SendStatus::SendOk) {
        return Err(super::ExitError {
            code: super::EXIT_SEND_NOT_OK,
            message: format!(
                "send status {:?} for msg_id={} (topic '{topic}'): {}; pass --accept-status to accept it",
                r.status,
                r.msg_id,
                status_reason(r.status)
            ),
        }
        .into());
    }
    Ok(())
}

async fn produce(a: ProduceArgs) -> anyhow::Result<()> {
    let properties = parse_properties(&a.properties)?;
    let producer = Producer::start(super::client_config(&a.namesrv), &a.group)?;
    let stdout = std::io::stdout();
    let started = Instant::now();
    let batch = u64::try_from(a.batch).unwrap_or(u64::MAX);
    let bar = super::progress_bar(a.count);
    let mut i = 0;
    while i < a.count {
        let n = batch.min(a.count - i);
        let msgs: Vec<MessageData> = (i..i + n).map(|j| message(&a, j, &properties)).collect();
        let results = send(&producer, &a, msgs).await?;
        let mut out = stdout.lock();
        for r in &results {
            if a.json {
                serde_json::to_writer(&mut out, &SentJson::of(r))?;
                writeln!(out)?;
            } else if a.count <= MAX_HUMAN_LINES {
                writeln!(
                    out,
                    "sent msg_id={} queue={} offset={} status={:?}",
                    r.msg_id, r.queue_id, r.queue_offset, r.status
                )?;
            }
        }
        out.flush().context("writing to stdout")?;
        drop(out);
        if !a.accept_status {
            check_status(&a.topic, &results)?;
        }
        i += n;
        bar.inc(n);
    }
    bar.finish_and_clear();
    if !a.json {
        let secs = started.elapsed().as_secs_f64();
        out!(
            "sent {} message(s) to topic '{}' in {:.3} s",
            a.count,
            a.topic,
            secs
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delay_past_the_largest_delivery_time_is_refused() {
        assert_eq!(parse_delay_ms("1500"), Ok(1500));
        assert_eq!(parse_delay_ms("0"), Ok(0));
        for huge in [u64::MAX, i64::MAX as u64 + 1, i64::MAX as u64] {
            let e = parse_delay_ms(&huge.to_string()).unwrap_err();
            assert!(e.contains("the delay must be at most"), "{e}");
            assert!(e.contains("max_delay_ms"), "{e}");
        }
        // A minute under the limit (which moves with the clock) is taken.
        let limit = u64::try_from(i64::MAX - now_ms()).unwrap();
        assert!(parse_delay_ms(&(limit - 60_000).to_string()).is_ok());
        assert!(parse_delay_ms("-1").is_err());
        assert!(parse_delay_ms("soon").is_err());
    }
}
