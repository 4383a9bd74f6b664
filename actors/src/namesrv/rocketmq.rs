//! The NameServer's RocketMQ remoting listener (issue 17):
//! unmodified RocketMQ clients pointed at `remoting_port` with their usual
//! `namesrvAddr` get their routes from the same [`NameServer`] actor that
//! Skylark clients ask.
//!
//! Answered: GET_ROUTEINFO_BY_TOPIC (105; TOPIC_NOT_EXIST, 17, when no live
//! broker serves the topic), GET_BROKER_CLUSTER_INFO (106),
//! GET_ALL_TOPIC_LIST_FROM_NAMESERVER (206), GET_KV_CONFIG
//! (101; always QUERY_NOT_FOUND, 22: Skylark keeps no KV config). Any other
//! request gets REQUEST_CODE_NOT_SUPPORTED (3) with a remark. Each answer
//! uses the header codec (JSON or ROCKETMQ binary) of its request; oneway
//! requests get no answer; responses sent to us are ignored.
//!
//! Framing, limits and connection handling are the shared listener's
//! ([`crate::remoting::rocketmq`]; `connection_idle_secs`,
//! `frame_read_timeout_ms`, `max_connections` of the NameServer config).
//!
//! Routes and cluster info name each broker at the remoting address it
//! registered (`remoting_port` of the broker); brokers without one are left
//! out, since a RocketMQ client cannot speak to their Skylark port.

use std::collections::HashMap;
use std::rc::Rc;

use actix::Addr;
use skylark_codec::remoting::{request, response, route, RemotingCommand};
use slog::Logger;

use super::{GetClusterInfo, GetRemotingAddrs, GetRouteInfo, GetTopicList, NameServer};
use crate::config::NameServerConfig;
pub use crate::remoting::rocketmq::{RemotingLimits, RemotingListenerHandle};

/// The port `skylark standalone` serves RocketMQ remoting on unless told
/// otherwise. No default of ours uses it (NameServer 9876, controllers
/// 9881-9883, brokers 109x1/109x2, dashboard 8088, metrics 5557, the
/// standalone broker's remoting port 9887).
pub const STANDALONE_PORT: u16 = 9886;

impl RemotingLimits {
    /// The NameServer's limits.
    pub fn of(config: &NameServerConfig) -> Self {
        RemotingLimits::new(
            config.max_frame_size,
            config.max_connections,
            config.connection_idle_secs,
            config.frame_read_timeout_ms,
        )
    }
}

/// Binds `host:port` and serves RocketMQ remoting requests from `ns`.
/// With `acl`, every request must be signed as RocketMQ clients sign
/// (any valid account may read routes, as on Skylark's own port).
/// Must be called inside a running actix System.
pub async fn start(
    host: &str,
    port: u16,
    ns: Addr<NameServer>,
    acl: Option<crate::acl::Acl>,
    limits: RemotingLimits,
    tls: Option<std::sync::Arc<crate::tls::ServerTls>>,
    log: Logger,
) -> std::io::Result<RemotingListenerHandle> {
    let answer: crate::remoting::rocketmq::Answer = Rc::new(move |req, conn| {
        let ns = ns.clone();
        let refused = acl
            .as_ref()
            .and_then(|acl| acl.check_remoting(&req, conn.peer.ip(), |_| Ok(())).err());
        Box::pin(async move {
            match refused {
                Some(e) => req.response_to(response::NO_PERMISSION, Some(e.message)),
                None => answer(&ns, &req).await,
            }
        })
    });
    let listener = crate::remoting::rocketmq::bind(host, port).await?;
    let port = (listener, crate::metrics::Listener::NameServerRemoting);
    crate::remoting::rocketmq::serve(port, answer, limits, tls, log)
}

/// Rewrites a route for RocketMQ clients: each broker is listed at its
/// remoting address; a broker without a remoting port is left out (a
/// RocketMQ client could not talk to it).
fn remoting_route(
    mut r: route::TopicRouteData,
    remoting: &HashMap<String, String>,
) -> route::TopicRouteData {
    for b in &mut r.broker_datas {
        remote_addrs(b, remoting);
    }
    r
}

fn remote_addrs(b: &mut route::BrokerData, remoting: &HashMap<String, String>) {
    b.broker_addrs = std::mem::take(&mut b.broker_addrs)
        .into_iter()
        .filter_map(|(id, a)| remoting.get(&a).map(|r| (id, r.clone())))
        .collect();
}

/// The answer to one request.
pub async fn answer(ns: &Addr<NameServer>, req: &RemotingCommand) -> RemotingCommand {
    match req.code {
        request::GET_ROUTEINFO_BY_TOPIC => {
            let Some(topic) = req.ext("topic") else {
                return req.response_to(
                    response::SYSTEM_ERROR,
                    Some("the request header has no 'topic' field".into()),
                );
            };
            let remoting = ns.send(GetRemotingAddrs).await.unwrap_or_default();
            match ns.send(GetRouteInfo(topic.to_string())).await {
                Ok(Some(r)) => req
                    .response_to(response::SUCCESS, None)
                    .with_body(route::to_json(&remoting_route(
                        route::TopicRouteData::from(&r),
                        &remoting,
                    ))),
                Ok(None) => req.response_to(
                    response::TOPIC_NOT_EXIST,
                    Some(format!(
                        "No topic route info in name server for the topic: {topic}"
                    )),
                ),
                Err(e) => unavailable(req, e),
            }
        }
        request::GET_BROKER_CLUSTER_INFO => match ns.send(GetClusterInfo).await {
            Ok(c) => {
                let remoting = ns.send(GetRemotingAddrs).await.unwrap_or_default();
                let mut c = route::ClusterInfo::from(&c);
                for b in c.broker_addr_table.values_mut() {
                    remote_addrs(b, &remoting);
                }
                req.response_to(response::SUCCESS, None)
                    .with_body(route::to_json(&c))
            }
            Err(e) => unavailable(req, e),
        },
        request::GET_ALL_TOPIC_LIST_FROM_NAMESERVER => match ns.send(GetTopicList).await {
            Ok(t) => req
                .response_to(response::SUCCESS, None)
                .with_body(route::to_json(&route::TopicList::from(&t))),
            Err(e) => unavailable(req, e),
        },
        request::GET_KV_CONFIG => req.response_to(
            response::QUERY_NOT_FOUND,
            Some(format!(
                "No config item, Namespace: {} Key: {}",
                req.ext("namespace").unwrap_or(""),
                req.ext("key").unwrap_or("")
            )),
        ),
        other => req.response_to(
            response::REQUEST_CODE_NOT_SUPPORTED,
            Some(format!(
                "request code {other} is not supported by the Skylark NameServer \
                 (docs/rocketmq-compat.md)"
            )),
        ),
    }
}

fn unavailable(req: &RemotingCommand, e: actix::MailboxError) -> RemotingCommand {
    req.response_to(
        response::SYSTEM_ERROR,
        Some(format!("nameserver unavailable: {e}")),
    )
}

#[cfg(test)]
mod tests {
    use actix::Actor;
    use skylark_codec::remoting::{RemotingCommand, SerializeType};
    use skylark_codec::{RegisterBrokerRequest, TopicConfig};

    use super::*;
    use crate::namesrv::RegisterBroker;

    fn nameserver() -> Addr<NameServer> {
        let log = Logger::root(slog::Discard, slog::o!());
        NameServer::new(NameServerConfig::default(), log).start()
    }

    async fn register(ns: &Addr<NameServer>, id: u64, addr: &str, topics: &[&str]) {
        ns.send(RegisterBroker(RegisterBrokerRequest {
            cluster_name: "c1".into(),
            broker_name: "b1".into(),
            broker_id: id,
            broker_addr: addr.into(),
            remoting_addr: Some(format!("r{addr}")),
            topics: topics.iter().map(|t| TopicConfig::new(*t, 4)).collect(),
            data_version: 1,
            ..Default::default()
        }))
        .await
        .unwrap();
    }

    fn req(code: i32, ty: SerializeType, ext: &[(&str, &str)]) -> RemotingCommand {
        let mut r = RemotingCommand::request(code, 11);
        r.serialize_type = ty;
        for (k, v) in ext {
            r.ext_fields.insert(k.to_string(), v.to_string());
        }
        r
    }

    fn json(cmd: &RemotingCommand) -> serde_json::Value {
        serde_json::from_slice(&cmd.body).unwrap()
    }

    #[actix_rt::test]
    async fn route_names_master_and_slave_in_the_request_codec() {
        let ns = nameserver();
        register(&ns, 0, "h:1", &["T"]).await;
        register(&ns, 1, "h:2", &[]).await;
        let a = answer(
            &ns,
            &req(
                request::GET_ROUTEINFO_BY_TOPIC,
                SerializeType::RocketMq,
                &[("topic", "T")],
            ),
        )
        .await;
        assert_eq!((a.code, a.opaque, a.flag), (response::SUCCESS, 11, 1));
        assert_eq!(a.serialize_type, SerializeType::RocketMq);
        let j = json(&a);
        assert_eq!(
            j["brokerDatas"][0]["brokerAddrs"],
            serde_json::json!({"0": "rh:1", "1": "rh:2"})
        );
        assert_eq!(j["brokerDatas"][0]["cluster"], "c1");
        assert_eq!(j["queueDatas"][0]["readQueueNums"], 4);
        assert_eq!(j["queueDatas"][0]["writeQueueNums"], 4);

        let a = answer(
            &ns,
            &req(request::GET_BROKER_CLUSTER_INFO, SerializeType::Json, &[]),
        )
        .await;
        let j = json(&a);
        assert_eq!(j["clusterAddrTable"]["c1"], serde_json::json!(["b1"]));
        assert_eq!(j["brokerAddrTable"]["b1"]["brokerAddrs"]["1"], "rh:2");

        let a = answer(
            &ns,
            &req(
                request::GET_ALL_TOPIC_LIST_FROM_NAMESERVER,
                SerializeType::Json,
                &[],
            ),
        )
        .await;
        assert_eq!(json(&a)["topicList"], serde_json::json!(["T"]));
    }

    #[actix_rt::test]
    async fn unknown_topic_kv_config_and_unknown_code() {
        let ns = nameserver();
        let a = answer(
            &ns,
            &req(
                request::GET_ROUTEINFO_BY_TOPIC,
                SerializeType::Json,
                &[("topic", "X")],
            ),
        )
        .await;
        assert_eq!(a.code, response::TOPIC_NOT_EXIST);
        assert!(a.remark.unwrap().ends_with("topic: X"));
        assert!(a.body.is_empty());
        let a = answer(
            &ns,
            &req(
                request::GET_KV_CONFIG,
                SerializeType::Json,
                &[("namespace", "ORDER_TOPIC_CONFIG"), ("key", "X")],
            ),
        )
        .await;
        assert_eq!(a.code, response::QUERY_NOT_FOUND);
        assert!(a.remark.unwrap().contains("ORDER_TOPIC_CONFIG"));
        let a = answer(
            &ns,
            &req(request::SEND_MESSAGE, SerializeType::RocketMq, &[]),
        )
        .await;
        assert_eq!(a.code, response::REQUEST_CODE_NOT_SUPPORTED);
        assert!(a.remark.unwrap().contains("request code 10"));
    }
}
