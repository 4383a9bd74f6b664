//! What a refused request tried to do, in the words of whoever ran it:
//! "create or update topic 'orders'", not `CreateTopic` or "request code
//! 17". The `NoPermission` texts of [`super::rules`] (Skylark's port) and of
//! the Broker's RocketMQ port use these; the error code stays
//! `NoPermission`.
//!
//! One row per command that needs an admin account or the cluster's broker
//! credential. A command without a row (a server push a client should not
//! send, or one added later) is named by its command name and number, so a
//! refusal always says what was refused.

use serde::Deserialize;
use skylark_codec::frame::decode_value;
use skylark_codec::remoting::{request as rq, RemotingCommand};
use skylark_codec::Command;

/// The names a request touches, read from its body (borrowed, as
/// [`super::rules`] reads them): `topic`, `group`, a setting's `key`, a
/// message id, or the `config` of a create/update.
#[derive(Debug, Default, Deserialize)]
pub struct Target<'a> {
    #[serde(borrow, default)]
    pub topic: Option<&'a str>,
    #[serde(borrow, default)]
    pub group: Option<&'a str>,
    #[serde(borrow, default)]
    pub key: Option<&'a str>,
    #[serde(borrow, default)]
    pub msg_id: Option<&'a str>,
    #[serde(borrow, default)]
    config: Option<ConfigView<'a>>,
}

/// A `TopicConfig` (`name`) or `SubscriptionGroupConfig` (`group`).
#[derive(Debug, Default, Deserialize)]
struct ConfigView<'a> {
    #[serde(borrow, default)]
    name: Option<&'a str>,
    #[serde(borrow, default)]
    group: Option<&'a str>,
}

impl<'a> Target<'a> {
    /// The names in a Skylark request body; none if it does not decode
    /// (the refusal still names the command).
    pub fn of_body(body: &'a [u8]) -> Self {
        decode_value(body).unwrap_or_default()
    }

    /// Names read already (a RocketMQ request's header fields).
    pub fn names(group: Option<&'a str>, topic: Option<&'a str>) -> Self {
        Target {
            topic,
            group,
            ..Target::default()
        }
    }

    fn topic(&self) -> Option<&'a str> {
        self.topic.or(self.config.as_ref().and_then(|c| c.name))
    }

    fn group(&self) -> Option<&'a str> {
        self.group.or(self.config.as_ref().and_then(|c| c.group))
    }
}

/// `"topic 'T'"`, or `"a topic"` without its name.
fn named(kind: &str, name: Option<&str>) -> String {
    match name {
        Some(n) => format!("{kind} '{n}'"),
        None => format!("a {kind}"),
    }
}

/// What running `cmd` on `t` does, as a verb phrase ("delete topic 'T'").
pub fn skylark(cmd: Command, t: &Target<'_>) -> String {
    use Command as C;
    let topic = || named("topic", t.topic());
    let group = || named("group", t.group());
    match cmd {
        C::CreateTopic => format!("create or update {}", topic()),
        C::DeleteTopic => format!("delete {}", topic()),
        C::ResetOffset => format!("reset the offsets of {} on {}", group(), topic()),
        C::DeleteGroup => format!("delete {}", group()),
        C::UpdateSubscriptionGroup => {
            format!("create or update subscription {}", group())
        }
        C::GetSubscriptionGroup => format!("read the settings of subscription {}", group()),
        C::GetConsumerConnections => format!("list the connections of consumer {}", group()),
        C::GetProducerConnections => format!("list the connections of producer {}", group()),
        C::ViewMessageById => match t.msg_id {
            Some(id) => format!("read message '{id}' by its id"),
            None => "read a message by its id".into(),
        },
        C::GetBrokerConfig => "read the broker's configuration".into(),
        C::SetBrokerConfig => format!("change {}", named("broker setting", t.key)),
        C::GetBrokerRuntimeStatus => "read the broker's runtime status".into(),
        C::GetBrokerRuntime => "read the broker's runtime figures".into(),
        C::RegisterBroker => "register a broker".into(),
        C::UnregisterBroker => "unregister a broker".into(),
        C::SyncMetadata => "sync a slave broker's metadata".into(),
        other => format!("send {other:?} (command {})", other.as_u16()),
    }
}

/// What RocketMQ request `req` does, with RocketMQ's name of it and its
/// code: "create or update topic 'T' (UPDATE_AND_CREATE_TOPIC, request
/// code 17)"; a code without a phrase here is named only ("UPDATE_NAMESRV_CONFIG
/// (request code 318)", or "request code 9999" for one RocketMQ does not name
/// in [`skylark_codec::remoting::request::name`]).
pub fn rocketmq(req: &RemotingCommand) -> String {
    let code = req.code;
    let topic = || named("topic", req.ext("topic"));
    let group = |field: &str| named("group", req.ext(field));
    let phrase = match code {
        rq::UPDATE_AND_CREATE_TOPIC => Some(format!("create or update {}", topic())),
        rq::DELETE_TOPIC_IN_BROKER | rq::DELETE_TOPIC_IN_NAMESRV => {
            Some(format!("delete {}", topic()))
        }
        rq::GET_TOPIC_STATS_INFO => Some(format!("read the statistics of {}", topic())),
        rq::GET_ALL_TOPIC_CONFIG => Some("read every topic's configuration".into()),
        rq::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP => {
            Some("create or update a subscription group".into())
        }
        rq::DELETE_SUBSCRIPTIONGROUP => Some(format!("delete {}", group("groupName"))),
        rq::GET_ALL_SUBSCRIPTIONGROUP_CONFIG => {
            Some("read every subscription group's configuration".into())
        }
        rq::INVOKE_BROKER_TO_RESET_OFFSET => Some(format!(
            "reset the offsets of {} on {}",
            group("group"),
            topic()
        )),
        rq::GET_CONSUME_STATS => Some(format!(
            "read the consume progress of {}",
            group("consumerGroup")
        )),
        rq::GET_CONSUMER_CONNECTION_LIST => Some(format!(
            "list the connections of consumer {}",
            group("consumerGroup")
        )),
        rq::GET_PRODUCER_CONNECTION_LIST => Some(format!(
            "list the connections of producer {}",
            group("producerGroup")
        )),
        rq::UPDATE_BROKER_CONFIG => Some("change the broker's configuration".into()),
        rq::GET_BROKER_CONFIG => Some("read the broker's configuration".into()),
        rq::GET_BROKER_RUNTIME_INFO => Some("read the broker's runtime status".into()),
        _ => None,
    };
    let name = rq::name(code);
    match (phrase, name) {
        (Some(p), Some(n)) => format!("to {p} ({n}, request code {code})"),
        (Some(p), None) => format!("to {p} (request code {code})"),
        (None, Some(n)) => format!("for {n} (request code {code})"),
        (None, None) => format!("for request code {code}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_admin_command_has_a_phrase() {
        use crate::acl::rules::{need, Need};
        // Server pushes have no phrase: no client sends them.
        let pushes = [
            Command::NotifyConsumerIdsChanged,
            Command::NotifyResetOffset,
            Command::CheckTransactionState,
        ];
        for cmd in Command::ALL.iter().copied() {
            if matches!(need(cmd), Need::Admin | Need::Broker) && !pushes.contains(&cmd) {
                let p = skylark(cmd, &Target::default());
                assert!(!p.starts_with("send "), "{cmd:?} has no phrase: {p}");
            }
        }
    }

    #[test]
    fn phrases_name_what_was_touched() {
        let body = rmp_serde::to_vec_named(&skylark_codec::CreateTopicRequest {
            config: skylark_codec::TopicConfig::new("orders", 4),
        })
        .unwrap();
        assert_eq!(
            skylark(Command::CreateTopic, &Target::of_body(&body)),
            "create or update topic 'orders'"
        );
        assert_eq!(
            skylark(Command::ResetOffset, &Target::names(Some("G"), Some("T"))),
            "reset the offsets of group 'G' on topic 'T'"
        );
        assert_eq!(
            skylark(Command::DeleteTopic, &Target::default()),
            "delete a topic"
        );
        let mut req = RemotingCommand::request(rq::UPDATE_AND_CREATE_TOPIC, 1);
        req.ext_fields.insert("topic".into(), "orders".into());
        assert_eq!(
            rocketmq(&req),
            "to create or update topic 'orders' (UPDATE_AND_CREATE_TOPIC, request code 17)"
        );
        req.code = rq::UPDATE_NAMESRV_CONFIG;
        assert_eq!(
            rocketmq(&req),
            "for UPDATE_NAMESRV_CONFIG (request code 318)"
        );
        req.code = 9999;
        assert_eq!(rocketmq(&req), "for request code 9999");
    }
}
