//! Which permission each command needs, and the names it touches.
//!
//! One table for every server (command numbers are global): the NameServer
//! and the Broker check the same rule for the same command. A command not
//! listed (one added later) needs an admin account: new commands fail
//! closed until someone decides their rule here.
//!
//! Resource names are read from the request body with borrowed "views"
//! (only the `topic` / `group` fields, `&str` slices of the frame): no
//! copy of the body, no allocation beyond the heartbeat's small vectors.

use serde::Deserialize;
use skylark_codec::frame::decode_value;
use skylark_codec::{Command, ErrorCode, WireError};

use super::phrase::{self, Target};
use super::table::{Account, Perm};

/// What a command requires of the signed account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Any valid account.
    Authenticated,
    /// An `admin = true` account.
    Admin,
    /// The cluster's broker credential (`broker = true`).
    Broker,
    /// PUB on the body's `topic`.
    TopicPub,
    /// SUB on the body's `topic`.
    TopicSub,
    /// SUB on the body's group (`group` or `consumer_group`).
    GroupSub,
    /// SUB on the body's group and SUB on its `topic`.
    GroupAndTopicSub,
    /// Heartbeat: SUB on every consumer group and every subscribed topic.
    Heartbeat,
}

/// The rule of `cmd`.
pub fn need(cmd: Command) -> Need {
    use Command as C;
    match cmd {
        C::SendMessage | C::SendBatch => Need::TopicPub,
        C::PullMessage | C::QueryConsumerOffset | C::UpdateConsumerOffset => Need::GroupAndTopicSub,
        C::GetQueueOffsets | C::SearchOffsetByTime | C::QueryMessageByKey => Need::TopicSub,
        C::QueryMessageByTime => Need::TopicSub,
        C::Heartbeat => Need::Heartbeat,
        C::GetConsumerList
        | C::LockBatchMq
        | C::UnlockBatchMq
        | C::ConsumerSendBack
        | C::GetConsumeProgress => Need::GroupSub,
        C::Handshake
        | C::UnregisterClient
        | C::EndTransaction
        | C::GetRouteInfo
        | C::GetClusterInfo
        | C::GetTopicList
        | C::GetTopicStats
        | C::GetGroupList
        | C::GetScheduleStats
        | C::GetReplicationStatus => Need::Authenticated,
        C::RegisterBroker | C::UnregisterBroker | C::SyncMetadata => Need::Broker,
        // Topic create/update/delete, offset reset, group delete, broker
        // config, reading any message by id, and everything else.
        _ => Need::Admin,
    }
}

#[derive(Deserialize)]
struct Names<'a> {
    #[serde(borrow, default)]
    topic: Option<&'a str>,
    #[serde(borrow, default)]
    group: Option<&'a str>,
    #[serde(borrow, default)]
    consumer_group: Option<&'a str>,
}

#[derive(Deserialize)]
struct HeartbeatView<'a> {
    #[serde(borrow, default)]
    consumer_groups: Vec<GroupView<'a>>,
}

#[derive(Deserialize)]
struct GroupView<'a> {
    #[serde(borrow)]
    group: &'a str,
    #[serde(borrow, default)]
    subscriptions: Vec<SubView<'a>>,
}

#[derive(Deserialize)]
struct SubView<'a> {
    #[serde(borrow)]
    topic: &'a str,
}

fn denied(account: &Account, what: std::fmt::Arguments<'_>) -> WireError {
    WireError::new(
        ErrorCode::NoPermission,
        format!("access key '{}' lacks {what}", account.access_key),
    )
}

fn bad_body(e: skylark_codec::ProtocolError) -> WireError {
    WireError::new(ErrorCode::BadRequest, format!("bad request body: {e}"))
}

fn topic_needs(account: &Account, topic: &str, need: Perm) -> Result<(), WireError> {
    // A group's retry and dead-letter topics belong to the group (as in
    // RocketMQ's ACL): its consumers read and re-send them with group SUB.
    let group_topic = topic
        .strip_prefix(skylark_codec::cmd::group::RETRY_TOPIC_PREFIX)
        .or_else(|| topic.strip_prefix(skylark_codec::cmd::group::DLQ_TOPIC_PREFIX));
    if let Some(group) = group_topic {
        return group_needs(account, group);
    }
    if account.topic_perm(topic).allows(need) {
        Ok(())
    } else {
        Err(denied(account, format_args!("{need} on topic '{topic}'")))
    }
}

fn group_needs(account: &Account, group: &str) -> Result<(), WireError> {
    if account.group_perm(group).allows(Perm::SUB) {
        Ok(())
    } else {
        Err(denied(account, format_args!("SUB on group '{group}'")))
    }
}

/// The decision for needs that look at no resource name (and for admins,
/// who pass the rest); `None` when the names decide. A refusal says what
/// the request tried in the user's words ([`phrase`]); `target` (the names
/// it touches) is only read then.
fn gate<'a>(
    account: &Account,
    cmd: Command,
    need: Need,
    target: impl FnOnce() -> Target<'a>,
) -> Option<Result<(), WireError>> {
    match need {
        Need::Authenticated => Some(Ok(())),
        Need::Broker if account.broker => Some(Ok(())),
        Need::Broker => Some(Err(denied(
            account,
            format_args!(
                "the cluster's broker credential needed to {}",
                phrase::skylark(cmd, &target())
            ),
        ))),
        Need::Admin if account.admin => Some(Ok(())),
        Need::Admin => Some(Err(admin_denied(
            account,
            format_args!("to {}", phrase::skylark(cmd, &target())),
        ))),
        _ if account.admin => Some(Ok(())),
        _ => None,
    }
}

/// `NoPermission`: `account` is not an admin account, and `what` (from
/// [`phrase`], with `to` or `for`) needed one.
pub fn admin_denied(account: &Account, what: std::fmt::Arguments<'_>) -> WireError {
    denied(account, format_args!("admin rights needed {what}"))
}

/// Whether `account` may run `cmd` with this `body`.
pub fn authorize(account: &Account, cmd: Command, body: &[u8]) -> Result<(), WireError> {
    let need = need(cmd);
    if let Some(decided) = gate(account, cmd, need, || Target::of_body(body)) {
        return decided;
    }
    if need == Need::Heartbeat {
        let hb: HeartbeatView<'_> = decode_value(body).map_err(bad_body)?;
        return authorize_heartbeat(
            account,
            hb.consumer_groups
                .iter()
                .map(|g| (g.group, g.subscriptions.iter().map(|s| s.topic))),
        );
    }
    let names: Names<'_> = decode_value(body).map_err(bad_body)?;
    authorize_names(
        account,
        cmd,
        names.group.or(names.consumer_group),
        names.topic,
    )
}

/// [`authorize`] for a request whose group and topic were read already
/// (a RocketMQ request's header fields): `cmd`'s need of them.
pub fn authorize_names(
    account: &Account,
    cmd: Command,
    group: Option<&str>,
    topic: Option<&str>,
) -> Result<(), WireError> {
    let need = need(cmd);
    if let Some(decided) = gate(account, cmd, need, || Target::names(group, topic)) {
        return decided;
    }
    let missing = |field: &str| {
        WireError::new(
            ErrorCode::BadRequest,
            format!("{cmd:?} request without a {field}"),
        )
    };
    let group = || group.ok_or(missing("group"));
    let topic = || topic.ok_or(missing("topic"));
    match need {
        Need::TopicPub => topic_needs(account, topic()?, Perm::PUB),
        Need::TopicSub => topic_needs(account, topic()?, Perm::SUB),
        Need::GroupSub => group_needs(account, group()?),
        Need::GroupAndTopicSub => {
            group_needs(account, group()?)?;
            topic_needs(account, topic()?, Perm::SUB)
        }
        // Decided by `gate`; a heartbeat's names are a list
        // (`authorize_heartbeat`): refuse rather than pass by mistake.
        _ => Err(WireError::new(
            ErrorCode::Internal,
            format!("{cmd:?}: no rule for its names"),
        )),
    }
}

/// A heartbeat's need: SUB on every consumer group and on every topic it
/// subscribes to (admins pass).
pub fn authorize_heartbeat<'a, T: IntoIterator<Item = &'a str>>(
    account: &Account,
    groups: impl IntoIterator<Item = (&'a str, T)>,
) -> Result<(), WireError> {
    if account.admin {
        return Ok(());
    }
    for (group, topics) in groups {
        group_needs(account, group)?;
        for topic in topics {
            topic_needs(account, topic, Perm::SUB)?;
        }
    }
    Ok(())
}
