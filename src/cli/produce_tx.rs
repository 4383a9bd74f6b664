//! `skylark produce --transaction commit|rollback|unknown`: send
//! transactional (half) messages from the command line.
//!
//! Each message is sent as a half message and the "local transaction"
//! answers the given state. With `--linger-secs N` the process then stays N
//! seconds answering the broker's check-backs with `--check-answer`. With
//! `--json`, one line per sent message (`msg_id`, `queue_id`,
//! `queue_offset`, `status`, `transaction_id`, `local_state`) and one per
//! check-back answered (`check_msg_id`, `transaction_id`, `answer`), each
//! flushed at once so scripts and tests can follow along.

use std::io::Write;
use std::time::Duration;

use anyhow::Context as _;
use clap::ValueEnum;
use serde::Serialize;

use super::ProduceArgs;
use crate::client::{TransactionProducer, TransactionState};

/// A transaction state on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TxStateArg {
    Commit,
    Rollback,
    Unknown,
}

impl From<TxStateArg> for TransactionState {
    fn from(a: TxStateArg) -> Self {
        match a {
            TxStateArg::Commit => TransactionState::Commit,
            TxStateArg::Rollback => TransactionState::Rollback,
            TxStateArg::Unknown => TransactionState::Unknown,
        }
    }
}

#[derive(Serialize)]
struct SentJson<'a> {
    #[serde(flatten)]
    sent: super::produce::SentJson<'a>,
    transaction_id: &'a str,
    local_state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_error: Option<&'a str>,
}

#[derive(Serialize)]
struct CheckJson<'a> {
    check_msg_id: &'a str,
    transaction_id: Option<&'a str>,
    answer: String,
}

/// Entry point of `skylark produce --transaction ...`.
pub fn run(a: ProduceArgs) -> anyhow::Result<()> {
    super::produce::check_args(&a)?;
    super::block_on(produce(a))
}

async fn produce(a: ProduceArgs) -> anyhow::Result<()> {
    let properties = super::produce::parse_properties(&a.properties)?;
    let local: TransactionState = a.transaction.unwrap_or(TxStateArg::Unknown).into();
    let answer: TransactionState = a.check_answer.into();
    let json = a.json;
    let producer = TransactionProducer::start_with(
        super::client_config(&a.namesrv),
        &a.group,
        Duration::from_secs(1),
        move |m| {
            let mut out = std::io::stdout().lock();
            if json {
                let line = CheckJson {
                    check_msg_id: &m.msg_id,
                    transaction_id: m.property(skylark_codec::PROPERTY_TRANSACTION_ID),
                    answer: format!("{answer:?}"),
                };
                if serde_json::to_writer(&mut out, &line).is_ok() {
                    let _ = writeln!(out);
                }
            } else {
                let _ = writeln!(out, "check-back for {} answered {answer:?}", m.msg_id);
            }
            let _ = out.flush();
            answer
        },
    )?;
    for i in 0..a.count {
        let msg = super::produce::message(&a, i, &properties);
        let r = producer
            .send_in_transaction(&a.topic, msg, |_| local)
            .await?;
        let mut out = std::io::stdout().lock();
        if a.json {
            let line = SentJson {
                sent: super::produce::SentJson::of(&r.send_result),
                transaction_id: &r.transaction_id,
                local_state: format!("{:?}", r.local_state),
                end_error: r.end_error.as_deref(),
            };
            serde_json::to_writer(&mut out, &line)?;
            writeln!(out)?;
        } else {
            writeln!(
                out,
                "sent half msg_id={} transaction_id={} local_state={:?}",
                r.send_result.msg_id, r.transaction_id, r.local_state
            )?;
            if let Some(e) = &r.end_error {
                writeln!(out, "  outcome not confirmed: {e}")?;
            }
        }
        out.flush().context("writing to stdout")?;
        drop(out);
        if !a.accept_status {
            super::produce::check_status(&a.topic, std::slice::from_ref(&r.send_result))?;
        }
    }
    if a.linger_secs > 0 {
        tokio::time::sleep(Duration::from_secs(a.linger_secs)).await;
    }
    producer.shutdown();
    Ok(())
}
