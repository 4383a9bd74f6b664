//! Requests a broker initiates on a RocketMQ client's connection:
//! NOTIFY_CONSUMER_IDS_CHANGED (40) to the members of a group whose
//! membership changed, CHECK_TRANSACTION_STATE (39) to a producer of a
//! half message still undecided. Both oneway, as RocketMQ's broker sends
//! them; the client answers a check with END_TRANSACTION (37).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, Ordering};

use bytes::BytesMut;

use super::message::encode_stored;
use super::{request, RemotingCommand, FLAG_ONEWAY};
use crate::message::{PROPERTY_REAL_QUEUE_ID, PROPERTY_REAL_TOPIC, PROPERTY_UNIQ_KEY};
use crate::record::DecodedMessage;

/// Opaques of server-initiated requests (never answered: oneway).
static OPAQUE: AtomicI32 = AtomicI32::new(1);

fn oneway(code: i32) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(code, OPAQUE.fetch_add(1, Ordering::Relaxed));
    cmd.flag = FLAG_ONEWAY;
    cmd
}

/// NOTIFY_CONSUMER_IDS_CHANGED (40), header `consumerGroup`.
pub fn consumer_ids_changed(group: &str) -> RemotingCommand {
    let mut cmd = oneway(request::NOTIFY_CONSUMER_IDS_CHANGED);
    cmd.ext_fields
        .insert("consumerGroup".into(), group.to_string());
    cmd
}

/// CHECK_TRANSACTION_STATE (39): header `tranStateTableOffset`,
/// `commitLogOffset`, `msgId` and `transactionId` (the producer's unique
/// key when Skylark holds no transaction id), `offsetMsgId`; the body is
/// the half message in the stored layout under its real topic and queue.
pub fn check_transaction_state(
    r: &crate::CheckTransactionStateRequest,
    store_host: SocketAddr,
) -> Result<RemotingCommand, String> {
    let (m, _) = crate::record::decode(&r.record).map_err(|e| e.to_string())?;
    let real = DecodedMessage {
        topic: m.property(PROPERTY_REAL_TOPIC).unwrap_or(m.topic),
        queue_id: m
            .property(PROPERTY_REAL_QUEUE_ID)
            .and_then(|q| q.parse().ok())
            .unwrap_or(m.queue_id),
        ..m
    };
    let mut body = BytesMut::new();
    encode_stored(&real, &mut body).map_err(|e| e.to_string())?;
    let tx_id = if r.transaction_id.is_empty() {
        m.property(PROPERTY_UNIQ_KEY).unwrap_or("").to_string()
    } else {
        r.transaction_id.clone()
    };
    let mut cmd = oneway(request::CHECK_TRANSACTION_STATE);
    let ext = &mut cmd.ext_fields;
    ext.insert("tranStateTableOffset".into(), r.queue_offset.to_string());
    ext.insert("commitLogOffset".into(), m.physical_offset.to_string());
    ext.insert("msgId".into(), tx_id.clone());
    ext.insert("transactionId".into(), tx_id);
    ext.insert(
        "offsetMsgId".into(),
        crate::MessageId::new(store_host, m.physical_offset).to_hex(),
    );
    Ok(cmd.with_body(body.freeze()))
}
