//! The NameServer's RocketMQ remoting listener (issue 17, first slice):
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
//! A frame that cannot be decoded (bad length, over 16 MiB, bad header)
//! closes that one connection, as RocketMQ's `NettyDecoder` does: nothing
//! after a broken frame can be trusted to start a frame. A connection silent
//! for `connection_idle_secs` is closed, and so is one whose begun frame is
//! not complete within `frame_read_timeout_ms` (slowloris); above
//! `max_connections` open remoting connections a new one is closed at once.
//!
//! The routes name the brokers' Skylark addresses: brokers have no remoting
//! port yet (docs/rocketmq-compat.md).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Addr;
use futures::{SinkExt, StreamExt};
use skylark_codec::remoting::{
    request, response, route, RemotingCodec, RemotingCommand, RemotingError,
};
use slog::{debug, info, warn, Logger};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_util::codec::{FramedRead, FramedWrite};

use super::{GetClusterInfo, GetRouteInfo, GetTopicList, NameServer};
use crate::config::NameServerConfig;

/// The port `skylark standalone` serves RocketMQ remoting on unless told
/// otherwise. No default of ours uses it (NameServer 9876, controllers
/// 9881-9883, brokers 109x1/109x2, dashboard 8088, metrics 5557).
pub const STANDALONE_PORT: u16 = 9886;

/// Limits of the listener, from [`NameServerConfig`].
#[derive(Debug, Clone)]
pub struct RemotingLimits {
    pub max_frame_size: usize,
    pub max_connections: usize,
    pub idle: Duration,
    /// A begun frame must be complete within this.
    pub frame_read: Duration,
}

impl RemotingLimits {
    pub fn of(config: &NameServerConfig) -> Self {
        RemotingLimits {
            max_frame_size: config
                .max_frame_size
                .min(skylark_codec::remoting::DEFAULT_MAX_FRAME_SIZE),
            max_connections: config.max_connections,
            idle: Duration::from_secs(config.connection_idle_secs.max(1)),
            frame_read: Duration::from_millis(config.frame_read_timeout_ms.max(1)),
        }
    }
}

/// The running listener; dropping it stops accepting.
pub struct RemotingListenerHandle {
    /// The address actually bound (useful with port 0).
    pub local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for RemotingListenerHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Binds `host:port` and serves RocketMQ remoting requests from `ns`.
/// Must be called inside a running actix System.
pub async fn start(
    host: &str,
    port: u16,
    ns: Addr<NameServer>,
    limits: RemotingLimits,
    log: Logger,
) -> std::io::Result<RemotingListenerHandle> {
    let listener = TcpListener::bind((host, port)).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen for RocketMQ remoting on {host}:{port}: {e}"),
        )
    })?;
    let local_addr = listener.local_addr()?;
    let log = log.new(slog::o!("listener" => "rocketmq-remoting"));
    info!(log, "RocketMQ remoting listener"; "addr" => %local_addr);
    let (tx, mut rx) = oneshot::channel();
    let open = Arc::new(AtomicUsize::new(0));
    actix::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut rx => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        if open.load(Ordering::Relaxed) >= limits.max_connections {
                            warn!(log, "too many remoting connections, closing"; "peer" => %peer);
                            continue;
                        }
                        open.fetch_add(1, Ordering::Relaxed);
                        let (ns, limits, log, open) =
                            (ns.clone(), limits.clone(), log.clone(), open.clone());
                        actix::spawn(async move {
                            serve_connection(stream, peer, ns, &limits, &log).await;
                            open.fetch_sub(1, Ordering::Relaxed);
                        });
                    }
                    Err(e) => {
                        warn!(log, "remoting accept failed"; "error" => %e);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
    });
    Ok(RemotingListenerHandle {
        local_addr,
        stop: Some(tx),
    })
}

/// Reads requests until the peer leaves, goes idle or sends a broken frame.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    ns: Addr<NameServer>,
    limits: &RemotingLimits,
    log: &Logger,
) {
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    let mut reader = FramedRead::new(r, RemotingCodec::new(limits.max_frame_size));
    let mut writer = FramedWrite::new(w, RemotingCodec::new(limits.max_frame_size));
    // Wake at least every half frame timeout to check both deadlines; a
    // cancelled `next()` loses nothing (the bytes stay in the read buffer).
    let tick = (limits.frame_read / 2).clamp(Duration::from_millis(1), limits.idle);
    let mut last_frame = Instant::now();
    let mut partial_since: Option<Instant> = None;
    loop {
        let req = match tokio::time::timeout(tick, reader.next()).await {
            Err(_) => {
                let now = Instant::now();
                if reader.read_buffer().is_empty() {
                    partial_since = None;
                    if now.duration_since(last_frame) >= limits.idle {
                        debug!(log, "idle remoting connection closed"; "peer" => %peer);
                        return;
                    }
                } else if now.duration_since(*partial_since.get_or_insert(now)) >= limits.frame_read
                {
                    warn!(log, "remoting frame not completed in time, closing"; "peer" => %peer);
                    return;
                }
                continue;
            }
            Ok(None) => return,
            Ok(Some(Err(e))) => {
                warn!(log, "bad remoting frame, closing the connection"; "peer" => %peer, "error" => %e);
                return;
            }
            Ok(Some(Ok(req))) => req,
        };
        last_frame = Instant::now();
        partial_since = None;
        if req.is_response() {
            continue;
        }
        let resp = answer(&ns, &req).await;
        if req.is_oneway() {
            continue;
        }
        if let Err(e) = writer.send(resp).await {
            if !matches!(e, RemotingError::Io(_)) {
                warn!(log, "cannot encode a remoting answer"; "peer" => %peer, "error" => %e);
            }
            return;
        }
    }
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
            match ns.send(GetRouteInfo(topic.to_string())).await {
                Ok(Some(r)) => req
                    .response_to(response::SUCCESS, None)
                    .with_body(route::to_json(&route::TopicRouteData::from(&r))),
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
            Ok(c) => req
                .response_to(response::SUCCESS, None)
                .with_body(route::to_json(&route::ClusterInfo::from(&c))),
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
            serde_json::json!({"0": "h:1", "1": "h:2"})
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
        assert_eq!(j["brokerAddrTable"]["b1"]["brokerAddrs"]["1"], "h:2");

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
