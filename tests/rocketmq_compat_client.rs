//! Issue 17's "done when": the published `rocketmq-client-rust` crate,
//! unmodified, against a live `skylark standalone` serving its RocketMQ
//! remoting ports. The same cases are also covered frame by frame in
//! `tests/rocketmq_compat.rs`; these show that a real RocketMQ client library
//! gets what it expects.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{free_port, json_lines, wait_until, Standalone};
use rocketmq_client_rust::{
    ClientConfig, ClientRuntime, ClientRuntimeConfig, ConsumeConcurrentlyContext,
    ConsumeConcurrentlyStatus, ConsumeOrderlyContext, ConsumeOrderlyStatus, DefaultMQProducer,
    DefaultMQPushConsumer, DefaultMQPushConsumerBuilder, LocalTransactionState, MQPushConsumer,
    MessageListenerConcurrently, MessageListenerOrderly, TransactionListener,
    TransactionMQProducer,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_model::common::message::MessageTrait;
use rocketmq_protocol::protocol::heartbeat::message_model::MessageModel;
use skylark::codec::remoting::{decode_frame, encode_frame, request, RemotingCommand};

/// One client runtime for the whole test binary (the crate's runtime owner
/// and its telemetry are process-wide); kept for the life of the process.
fn client_runtime() -> Arc<ClientRuntime> {
    static RT: OnceLock<Arc<ClientRuntime>> = OnceLock::new();
    RT.get_or_init(|| {
        // The client's TLS (useTLS) asks rustls for the process's default
        // crypto provider; the build has more than one, so name it.
        let _ = (*skylark::codec::tls::provider()).clone().install_default();
        // The client's blocking lanes are sized from the cores (2 here:
        // 32 queued listener calls); several consumers in one process
        // overflow that, and a broadcasting consumer drops what does not
        // fit (its documented behaviour). Size them as for 8 cores.
        let mut config =
            rocketmq_runtime::RuntimeConfig::for_parallelism("rocketmq-compat-client", 8);
        config.worker_threads = 2;
        let owner = rocketmq_runtime::RuntimeOwner::plan(config)
            .expect("runtime plan")
            .build()
            .expect("client runtime");
        let owner: &'static rocketmq_runtime::RuntimeOwner = Box::leak(Box::new(owner));
        // RMQ_CLIENT_LOG=1 shows the client's own log on stderr.
        let telemetry = if std::env::var_os("RMQ_CLIENT_LOG").is_some() {
            let guard = rocketmq_observability::install_global(
                &rocketmq_observability::TelemetryBootstrapConfig::default(),
            )
            .expect("client telemetry");
            let handle = guard.handle();
            Box::leak(Box::new(guard));
            handle
        } else {
            rocketmq_observability::TelemetryHandle::noop()
        };
        ClientRuntime::try_new(
            owner.root_context().component("client"),
            ClientRuntimeConfig::default(),
            telemetry,
        )
        .expect("client runtime")
    })
    .clone()
}

/// A standalone with both remoting ports; its NameServer remoting address
/// is what a RocketMQ client is given as `namesrvAddr`.
struct Node {
    _dir: tempfile::TempDir,
    node: Standalone,
    remoting_namesrv: String,
    broker_remoting: u16,
}

fn start() -> Node {
    start_env(&[])
}

fn start_env(env: &[(&str, &str)]) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let (node, port, bport) = Standalone::start_with_remoting(dir.path(), env);
    Node {
        _dir: dir,
        node,
        remoting_namesrv: format!("127.0.0.1:{port}"),
        broker_remoting: bport,
    }
}

/// One RocketMQ request with a JSON body, by hand, to the broker's remoting
/// port; its answer.
fn raw_request(port: u16, code: i32, body: serde_json::Value) -> RemotingCommand {
    raw_frame(
        port,
        &RemotingCommand::request(code, 1).with_body(serde_json::to_vec(&body).unwrap()),
    )
}

/// `r` is NO_PERMISSION with `why` in its remark.
fn refused(r: &RemotingCommand, why: &str) {
    assert_eq!(r.code, 16, "{r:?}");
    assert!(
        r.remark.as_deref().unwrap_or("").contains(why),
        "{why}: {r:?}"
    );
}

/// `req` sent by hand to a remoting port; its answer.
fn raw_frame(port: u16, req: &RemotingCommand) -> RemotingCommand {
    use std::io::{Read, Write};
    let mut out = bytes::BytesMut::new();
    encode_frame(req, &mut out).unwrap();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&out).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut rest = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut rest).unwrap();
    decode_frame(bytes::Bytes::from(rest)).unwrap()
}

/// A started producer of `group`.
async fn producer(n: &Node, group: &str) -> DefaultMQProducer {
    let mut p = DefaultMQProducer::builder(client_runtime())
        .producer_group(group.to_string())
        .name_server_addr(n.remoting_namesrv.clone())
        .build();
    started(p.start().await, "producer");
    p
}

/// What a listener saw: every delivered message, in delivery order.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Delivered>>>);

#[derive(Clone, Debug)]
struct Delivered {
    body: String,
    tags: String,
    keys: String,
    props: HashMap<String, String>,
    queue_id: i32,
    queue_offset: i64,
    reconsume_times: i32,
    at: Instant,
}

impl Seen {
    fn record(&self, m: &MessageExt) {
        let props = m
            .properties()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.0.lock().unwrap().push(Delivered {
            body: String::from_utf8_lossy(&m.body().unwrap_or_default()).into_owned(),
            tags: m.get_tags().map(|t| t.to_string()).unwrap_or_default(),
            keys: m.get_keys().map(|t| t.to_string()).unwrap_or_default(),
            props,
            queue_id: m.queue_id(),
            queue_offset: m.queue_offset(),
            reconsume_times: m.reconsume_times(),
            at: Instant::now(),
        });
    }

    fn bodies(&self) -> HashSet<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|d| d.body.clone())
            .collect()
    }

    fn all(&self) -> Vec<Delivered> {
        self.0.lock().unwrap().clone()
    }

    /// Waits until every body of `want` was delivered.
    async fn wait_for(&self, want: &HashSet<String>, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let got = self.bodies();
            if want.is_subset(&got) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "missing after {within:?}: {:?}; got {:?}",
                want.difference(&got).collect::<Vec<_>>(),
                self.all()
                    .iter()
                    .map(|d| (d.body.clone(), d.queue_id, d.queue_offset))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

struct Concurrently(Seen, ConsumeConcurrentlyStatus);

impl MessageListenerConcurrently for Concurrently {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> rocketmq_client_rust::ClientResult<ConsumeConcurrentlyStatus> {
        for m in msgs {
            self.0.record(m);
        }
        Ok(self.1)
    }
}

/// A started push consumer of `topic` filtered by `selector` (a tag
/// expression) whose listener records what it gets.
async fn push_consumer(
    n: &Node,
    group: &str,
    topic: &str,
    tags: &str,
    model: MessageModel,
    seen: &Seen,
) -> DefaultMQPushConsumer {
    let mut c = consumer_builder(n, group).message_model(model).build();
    c.subscribe(topic, tags).await.expect("subscribe");
    c.register_message_listener_concurrently(Concurrently(
        seen.clone(),
        ConsumeConcurrentlyStatus::ConsumeSuccess,
    ));
    started(c.start().await, "push consumer");
    c
}

/// A push consumer of `group` reading from the first offset, as its own
/// client instance (as if each were a process of its own: one instance
/// holds one consumer per group).
fn consumer_builder(n: &Node, group: &str) -> DefaultMQPushConsumerBuilder {
    consumer_builder_at(&n.remoting_namesrv, group)
}

fn consumer_builder_at(namesrv: &str, group: &str) -> DefaultMQPushConsumerBuilder {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let mut config = ClientConfig {
        namesrv_addr: Some(namesrv.to_string().into()),
        ..Default::default()
    };
    config
        .set_instance_name(format!("skylark-test-{}", NEXT.fetch_add(1, Ordering::Relaxed)).into());
    DefaultMQPushConsumer::builder(client_runtime())
        .client_config(config)
        .consumer_group(group.to_string())
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
}

/// Panics with the client's error in full (its `Debug` redacts the message).
fn started<T>(r: rocketmq_client_rust::ClientResult<T>, what: &str) -> T {
    r.unwrap_or_else(|e| {
        let mut chain = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            chain.push_str(&format!(": {s}"));
            src = s.source();
        }
        panic!("start {what}: {chain}")
    })
}

fn message(topic: &str, tag: &str, key: &str, body: &str) -> Message {
    Message::builder()
        .topic(topic)
        .tags(tag)
        .key(key)
        .body_slice(body.as_bytes())
        .build_unchecked()
}

/// The committed offsets of `group` on `topic` at the broker, summed over
/// its queues (`skylark admin group progress`).
fn committed(n: &Node, group: &str, topic: &str) -> i64 {
    let out = n
        .node
        .cli(&["admin", "--json", "group", "progress", "--group", group]);
    if !out.status.success() {
        return -1;
    }
    json_lines(&out.stdout)
        .iter()
        .filter_map(|v| v["queues"].as_array().cloned())
        .flatten()
        .filter(|q| q["topic"] == topic)
        .filter_map(|q| q["consumer_offset"].as_i64())
        .filter(|c| *c > 0)
        .sum()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn rocketmq_compat_client_sends_every_way_and_push_consumers_get_all() {
    let n = start();
    runtime().block_on(async {
        let topic = "RmqSends";
        let mut p = producer(&n, "rmq-sends-pg").await;
        let mut want = HashSet::new();
        for i in 0..10 {
            let body = format!("sync-{i}");
            let r = p
                .send_with_timeout(message(topic, "TagA", &format!("K{i}"), &body), 5000)
                .await
                .expect("sync send")
                .expect("a send result");
            assert_eq!(
                format!("{:?}", r.send_status),
                "SendOk",
                "sync send answered {r:?}"
            );
            assert!(r.offset_msg_id.is_some(), "no offsetMsgId in {r:?}");
            want.insert(body);
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for i in 0..10 {
            let body = format!("async-{i}");
            let tx = tx.clone();
            p.send_with_callback(message(topic, "TagA", "KA", &body), move |r, e| {
                let _ = tx.send(
                    r.map(|r| format!("{:?}", r.send_status))
                        .ok_or(format!("{e:?}")),
                );
            })
            .await
            .expect("async send");
            want.insert(body);
        }
        for _ in 0..10 {
            let answer = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("an async send's callback")
                .unwrap();
            assert_eq!(answer, Ok("SendOk".to_string()));
        }
        for i in 0..10 {
            let body = format!("oneway-{i}");
            p.send_oneway(message(topic, "TagA", "KO", &body))
                .await
                .expect("oneway send");
            want.insert(body);
        }
        let batch: Vec<Message> = (0..10)
            .map(|i| message(topic, "TagA", "KB", &format!("batch-{i}")))
            .collect();
        want.extend((0..10).map(|i| format!("batch-{i}")));
        let r = p.send_batch(batch).await.expect("batch send");
        assert_eq!(format!("{:?}", r.send_status), "SendOk");
        assert_eq!(
            r.msg_id.as_deref().unwrap_or("").split(',').count(),
            10,
            "one id per batched message: {r:?}"
        );

        // Clustering: one consumer gets every message, with what was sent.
        let seen = Seen::default();
        let mut c = push_consumer(&n, "rmq-cg", topic, "*", MessageModel::Clustering, &seen).await;
        seen.wait_for(&want, Duration::from_secs(60)).await;
        let first = seen.all().into_iter().find(|d| d.body == "sync-3").unwrap();
        assert_eq!((first.tags.as_str(), first.keys.as_str()), ("TagA", "K3"));
        assert!(first.props.contains_key("UNIQ_KEY"), "{:?}", first.props);
        // The group's offsets reach the broker; after a restart the group
        // goes on from there and gets only what is new.
        assert!(
            wait_until(Duration::from_secs(30), || committed(&n, "rmq-cg", topic)
                >= 40),
            "offsets never committed: {}",
            committed(&n, "rmq-cg", topic)
        );
        c.shutdown().await;
        let mut fresh = HashSet::new();
        for i in 0..5 {
            let body = format!("after-restart-{i}");
            p.send_with_timeout(message(topic, "TagA", "KR", &body), 5000)
                .await
                .expect("send");
            fresh.insert(body);
        }
        let again = Seen::default();
        let mut c = push_consumer(&n, "rmq-cg", topic, "*", MessageModel::Clustering, &again).await;
        again.wait_for(&fresh, Duration::from_secs(60)).await;
        let old: Vec<_> = again.bodies().difference(&fresh).cloned().collect();
        assert!(old.is_empty(), "redelivered after restart: {old:?}");
        c.shutdown().await;

        // Broadcasting: each of two members gets every message.
        want.extend(fresh);
        let (b1, b2) = (Seen::default(), Seen::default());
        let mut c1 = push_consumer(&n, "rmq-bc", topic, "*", MessageModel::Broadcasting, &b1).await;
        let mut c2 = push_consumer(&n, "rmq-bc", topic, "*", MessageModel::Broadcasting, &b2).await;
        b1.wait_for(&want, Duration::from_secs(60)).await;
        b2.wait_for(&want, Duration::from_secs(60)).await;
        c1.shutdown().await;
        c2.shutdown().await;
        p.shutdown().await;
    });
}

struct Orderly(Seen);

impl MessageListenerOrderly for Orderly {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &mut ConsumeOrderlyContext,
    ) -> rocketmq_client_rust::ClientResult<ConsumeOrderlyStatus> {
        for m in msgs {
            self.0.record(m);
        }
        Ok(ConsumeOrderlyStatus::Success)
    }
}

#[test]
fn rocketmq_compat_client_orderly_by_selector_key_with_queue_locks() {
    let n = start();
    runtime().block_on(async {
        let topic = "RmqOrder";
        let mut p = producer(&n, "rmq-order-pg").await;
        let mut want = HashSet::new();
        for i in 0..60 {
            let order = i % 3;
            let body = format!("o{order}-{i}");
            p.send_with_selector(
                message(topic, "TagA", &format!("order-{order}"), &body),
                |mqs, _m, order: &usize| Some(mqs[order % mqs.len()].clone()),
                order,
            )
            .await
            .expect("send with selector");
            want.insert(body);
        }
        let seen = Seen::default();
        let mut c = consumer_builder(&n, "rmq-order-cg").build();
        c.subscribe(topic, "*").await.expect("subscribe");
        c.register_message_listener_orderly(Orderly(seen.clone()));
        started(c.start().await, "orderly consumer");
        seen.wait_for(&want, Duration::from_secs(60)).await;
        // Per order key: one queue, and the sending order.
        let all = seen.all();
        for order in 0..3 {
            let of: Vec<&Delivered> = all
                .iter()
                .filter(|d| d.body.starts_with(&format!("o{order}-")))
                .collect();
            let queues: HashSet<i32> = of.iter().map(|d| d.queue_id).collect();
            assert_eq!(queues.len(), 1, "order key {order} spread over {queues:?}");
            let idx: Vec<usize> = of
                .iter()
                .map(|d| d.body.rsplit('-').next().unwrap().parse().unwrap())
                .collect();
            let mut sorted = idx.clone();
            sorted.sort();
            assert_eq!(idx, sorted, "order key {order} out of order");
        }
        // The orderly consumer holds its queues' locks on the broker: another
        // client of the group is refused every one of them.
        let order_queues: HashSet<i32> = all.iter().map(|d| d.queue_id).collect();
        let answer = raw_request(
            n.broker_remoting,
            request::LOCK_BATCH_MQ,
            serde_json::json!({
                "consumerGroup": "rmq-order-cg",
                "clientId": "someone-else@1",
                "onlyThisBroker": true,
                "mqSet": order_queues.iter().map(|q| serde_json::json!(
                    {"topic": topic, "brokerName": "standalone", "queueId": q}
                )).collect::<Vec<_>>(),
            }),
        );
        assert_eq!(answer.code, 0, "{answer:?}");
        let granted: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(
            granted["lockOKMQSet"].as_array().map(Vec::len),
            Some(0),
            "locks held by the orderly consumer were granted to another client: {granted}"
        );
        c.shutdown().await;
        p.shutdown().await;
    });
}

#[test]
fn rocketmq_compat_client_tag_and_sql92_filters_on_the_broker() {
    let n = start();
    runtime().block_on(async {
        let topic = "RmqFilter";
        let mut p = producer(&n, "rmq-filter-pg").await;
        for i in 0..20 {
            let tag = ["TagA", "TagB", "TagC"][i % 3];
            let m = Message::builder()
                .topic(topic)
                .tags(tag)
                .body_slice(format!("{tag}-{i}").as_bytes())
                .raw_property("price", (i * 10).to_string())
                .unwrap()
                .build_unchecked();
            p.send_with_timeout(m, 5000).await.expect("send");
        }
        let by_tag = Seen::default();
        let mut c1 = push_consumer(
            &n,
            "rmq-tag-cg",
            topic,
            "TagA || TagC",
            MessageModel::Clustering,
            &by_tag,
        )
        .await;
        let by_sql = Seen::default();
        let mut c2 = consumer_builder(&n, "rmq-sql-cg").build();
        c2.subscribe_with_selector(
            topic,
            Some(rocketmq_client_rust::MessageSelector::by_sql(
                "TAGS = 'TagB' AND price >= 100",
            )),
        )
        .await
        .expect("subscribe by SQL92");
        c2.register_message_listener_concurrently(Concurrently(
            by_sql.clone(),
            ConsumeConcurrentlyStatus::ConsumeSuccess,
        ));
        started(c2.start().await, "SQL92 consumer");

        let tag_want: HashSet<String> = (0..20)
            .filter(|i| i % 3 != 1)
            .map(|i| format!("{}-{i}", ["TagA", "TagB", "TagC"][i % 3]))
            .collect();
        let sql_want: HashSet<String> = (0..20)
            .filter(|i| i % 3 == 1 && i * 10 >= 100)
            .map(|i| format!("TagB-{i}"))
            .collect();
        by_tag.wait_for(&tag_want, Duration::from_secs(60)).await;
        by_sql.wait_for(&sql_want, Duration::from_secs(60)).await;
        // Everything is consumed once its offsets are committed past the
        // end: only then is "nothing else came" a fact.
        assert!(wait_until(Duration::from_secs(30), || {
            committed(&n, "rmq-tag-cg", topic) >= 20 && committed(&n, "rmq-sql-cg", topic) >= 20
        }));
        // What the client asked before starting (CHECK_CLIENT_CONFIG): an
        // expression that does not compile is refused, typed.
        let check = |sql: &str| {
            raw_request(
                n.broker_remoting,
                request::CHECK_CLIENT_CONFIG,
                serde_json::json!({
                    "clientId": "checker@1", "group": "rmq-sql-cg",
                    "subscriptionData": {"topic": topic, "subString": sql,
                        "expressionType": "SQL92", "tagsSet": [], "codeSet": [], "subVersion": 1}
                }),
            )
        };
        assert_eq!(check("price >= 100").code, 0);
        let refused = check("price >=");
        assert_eq!(refused.code, 23, "{refused:?}");
        assert!(refused.remark.unwrap_or_default().contains("SQL92"));
        assert_eq!(by_tag.bodies(), tag_want);
        assert_eq!(by_sql.bodies(), sql_want);
        c1.shutdown().await;
        c2.shutdown().await;
        p.shutdown().await;
    });
}

/// Rejects the first delivery of every body that starts with "retry-".
struct RejectOnce(Seen, Mutex<HashSet<String>>);

impl MessageListenerConcurrently for RejectOnce {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> rocketmq_client_rust::ClientResult<ConsumeConcurrentlyStatus> {
        let mut status = ConsumeConcurrentlyStatus::ConsumeSuccess;
        for m in msgs {
            self.0.record(m);
            let body = String::from_utf8_lossy(&m.body().unwrap_or_default()).into_owned();
            if body.starts_with("retry-") && self.1.lock().unwrap().insert(body) {
                status = ConsumeConcurrentlyStatus::ReconsumeLater;
            }
        }
        Ok(status)
    }
}

#[test]
fn rocketmq_compat_client_delay_level_and_reconsume_later_through_the_retry_topic() {
    let n = start();
    runtime().block_on(async {
        let topic = "RmqDelay";
        let mut p = producer(&n, "rmq-delay-pg").await;
        // The topic exists before the consumer subscribes to it.
        p.send_with_timeout(message(topic, "TagA", "K0", "plain"), 5000)
            .await
            .expect("send");
        let seen = Seen::default();
        let mut c = consumer_builder(&n, "rmq-delay-cg").build();
        c.subscribe(topic, "*").await.expect("subscribe");
        c.register_message_listener_concurrently(RejectOnce(seen.clone(), Mutex::default()));
        started(c.start().await, "push consumer");
        seen.wait_for(
            &HashSet::from(["plain".to_string()]),
            Duration::from_secs(60),
        )
        .await;

        // Delay level 2 is 5 s.
        let sent_at = Instant::now();
        let delayed = Message::builder()
            .topic(topic)
            .tags("TagD")
            .body_slice(b"delayed")
            .delay_level(2)
            .build_unchecked();
        p.send_with_timeout(delayed, 5000)
            .await
            .expect("send delayed");
        seen.wait_for(
            &HashSet::from(["delayed".to_string()]),
            Duration::from_secs(60),
        )
        .await;
        let got = seen
            .all()
            .into_iter()
            .find(|d| d.body == "delayed")
            .unwrap();
        assert!(
            got.at.duration_since(sent_at) >= Duration::from_secs(5),
            "delay level 2 arrived after {:?}",
            got.at.duration_since(sent_at)
        );
        assert_eq!(got.tags, "TagD");

        // RECONSUME_LATER: the message comes again, through the group's
        // retry topic (delay level 3, 10 s), with its reconsume count.
        p.send_with_timeout(message(topic, "TagR", "KR", "retry-1"), 5000)
            .await
            .expect("send");
        let deadline = Instant::now() + Duration::from_secs(90);
        let deliveries = loop {
            let d: Vec<Delivered> = seen
                .all()
                .into_iter()
                .filter(|d| d.body == "retry-1")
                .collect();
            if d.len() >= 2 {
                break d;
            }
            assert!(Instant::now() < deadline, "redelivered {} times", d.len());
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(deliveries[0].reconsume_times, 0);
        assert!(deliveries[1].reconsume_times >= 1, "{:?}", deliveries[1]);
        assert_eq!(
            (deliveries[1].tags.as_str(), deliveries[1].keys.as_str()),
            ("TagR", "KR")
        );
        assert!(
            deliveries[1].at.duration_since(deliveries[0].at) >= Duration::from_secs(9),
            "the retry came after {:?}",
            deliveries[1].at.duration_since(deliveries[0].at)
        );
        c.shutdown().await;
        p.shutdown().await;
    });
}

/// Decides by the body's prefix; "unknown-" is left open and answered
/// COMMIT when the broker checks back.
struct TxListener(Arc<Mutex<Vec<String>>>);

impl TransactionListener for TxListener {
    fn execute_local_transaction(
        &self,
        msg: &dyn MessageTrait,
        _arg: Option<&(dyn std::any::Any + Send + Sync)>,
    ) -> LocalTransactionState {
        let body = msg
            .get_body()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        if body.starts_with("commit-") {
            LocalTransactionState::CommitMessage
        } else if body.starts_with("rollback-") {
            LocalTransactionState::RollbackMessage
        } else {
            LocalTransactionState::Unknown
        }
    }

    fn check_local_transaction(&self, msg: &MessageExt) -> LocalTransactionState {
        let body = String::from_utf8_lossy(&msg.body().unwrap_or_default()).into_owned();
        self.0.lock().unwrap().push(body.clone());
        if body.starts_with("unknown-") {
            LocalTransactionState::CommitMessage
        } else {
            LocalTransactionState::RollbackMessage
        }
    }
}

#[test]
fn rocketmq_compat_client_transactions_commit_rollback_and_check_back() {
    let n = start_env(&[
        ("SKYLARK_TRANSACTION_TIMEOUT_MS", "500"),
        ("SKYLARK_TRANSACTION_CHECK_INTERVAL_MS", "500"),
    ]);
    runtime().block_on(async {
        let topic = "RmqTx";
        let checked = Arc::new(Mutex::new(Vec::new()));
        let mut p = TransactionMQProducer::builder(client_runtime())
            .producer_group("rmq-tx-pg".to_string())
            .name_server_addr(n.remoting_namesrv.clone())
            .topics(vec![topic])
            .transaction_listener(TxListener(checked.clone()))
            .build();
        p.start().await.expect("start transactional producer");
        for body in ["commit-1", "rollback-1", "unknown-1"] {
            let r = p
                .send_message_in_transaction::<(), _>(message(topic, "TagT", "KT", body), None)
                .await
                .expect("send in transaction");
            assert_eq!(
                format!("{:?}", r.send_result.as_ref().map(|r| r.send_status)),
                "Some(SendOk)",
                "{body}"
            );
        }
        let seen = Seen::default();
        let mut c =
            push_consumer(&n, "rmq-tx-cg", topic, "*", MessageModel::Clustering, &seen).await;
        let want: HashSet<String> = ["commit-1", "unknown-1"].map(String::from).into();
        seen.wait_for(&want, Duration::from_secs(60)).await;
        assert!(
            checked.lock().unwrap().iter().any(|b| b == "unknown-1"),
            "no check-back reached the producer: {:?}",
            checked.lock().unwrap()
        );
        // The rolled-back one never shows, even once everything the group
        // can see is consumed.
        assert!(wait_until(Duration::from_secs(30), || committed(
            &n,
            "rmq-tx-cg",
            topic
        ) >= 2));
        assert!(!seen.bodies().contains("rollback-1"), "{:?}", seen.bodies());
        c.shutdown().await;
        p.shutdown().await;
    });
}

#[test]
fn rocketmq_compat_client_messages_cross_to_and_from_skylark_clients() {
    let n = start();
    runtime().block_on(async {
        let topic = "RmqCross";
        // RocketMQ producer -> Skylark consumer (the CLI), intact.
        let mut p = producer(&n, "rmq-cross-pg").await;
        let m = Message::builder()
            .topic(topic)
            .tags("FromRmq")
            .keys(vec!["k1".into(), "k2".into()])
            .body_slice(b"from rocketmq")
            .raw_property("colour", "blue")
            .unwrap()
            .build_unchecked();
        let r = p
            .send_with_timeout(m, 5000)
            .await
            .expect("send")
            .expect("a send result");
        let got = n.node.cli(&common::consume_args("sk-cross-cg", topic, "1"));
        assert!(got.status.success(), "{got:?}");
        let got = json_lines(&got.stdout);
        assert_eq!(got.len(), 1, "{got:?}");
        let g = &got[0];
        assert_eq!(g["body"], "from rocketmq");
        assert_eq!(g["tags"], "FromRmq");
        assert_eq!(g["keys"], "k1 k2");
        assert_eq!(g["properties"]["colour"], "blue");
        // Its ids resolve on the Skylark side: the offset id and the
        // producer's unique id.
        for id in [
            r.offset_msg_id.clone().unwrap(),
            r.msg_id.clone().unwrap().to_string(),
        ] {
            let out = n
                .node
                .cli(&["admin", "--json", "message", "by-id", id.as_str()]);
            assert!(out.status.success(), "by-id {id}: {out:?}");
            assert!(
                String::from_utf8_lossy(&out.stdout).contains("from rocketmq"),
                "by-id {id}: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }

        // Skylark producer (the CLI) -> RocketMQ push consumer, intact.
        let out = n.node.cli(&[
            "produce",
            "--topic",
            topic,
            "--tag",
            "FromSkylark",
            "--key",
            "s1 s2",
            "--property",
            "size=XL",
            "--body",
            "from skylark",
            "--exact-body",
        ]);
        assert!(out.status.success(), "{out:?}");
        let seen = Seen::default();
        let mut c = push_consumer(
            &n,
            "rmq-cross-cg",
            topic,
            "FromSkylark",
            MessageModel::Clustering,
            &seen,
        )
        .await;
        seen.wait_for(
            &HashSet::from(["from skylark".to_string()]),
            Duration::from_secs(60),
        )
        .await;
        let d = seen
            .all()
            .into_iter()
            .find(|d| d.body == "from skylark")
            .unwrap();
        assert_eq!(d.tags, "FromSkylark");
        assert_eq!(d.keys, "s1 s2");
        assert_eq!(d.props.get("size").map(String::as_str), Some("XL"));
        assert!(
            !seen.bodies().contains("from rocketmq"),
            "the tag filter let FromRmq through"
        );
        c.shutdown().await;
        p.shutdown().await;
    });
}

/// A NameServer and a Broker as separate processes (standalone serves
/// neither ACL nor TLS on its NameServer), both with `env`, the broker also
/// with `broker_env`; each serves a remoting port.
struct Pair {
    _namesrv: common::KillOnDrop,
    _broker: common::KillOnDrop,
    ns_remoting: u16,
    broker_remoting: u16,
}

impl Pair {
    fn start(dir: &std::path::Path, env: &[(&str, String)], broker_env: &[(&str, String)]) -> Pair {
        let (ns_port, ns_remoting, broker_port, broker_remoting) =
            (free_port(), free_port(), free_port(), free_port());
        let spawn = |args: &[&str], own: &[(&str, String)]| {
            let mut c = std::process::Command::new(common::bin());
            c.args(["--log-level", "warn"])
                .args(args)
                .env_remove("SKYLARK_TLS_CA")
                .env_remove("SKYLARK_ACCESS_KEY")
                .env_remove("SKYLARK_SECRET_KEY")
                .envs(common::ROOMY_DISK)
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                .envs(own.iter().map(|(k, v)| (*k, v.as_str())))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null());
            common::KillOnDrop(c.spawn().expect("spawn skylark"))
        };
        let mut ns = spawn(
            &["namesrv", "--port", &ns_port.to_string()],
            &[("SKYLARK_REMOTING_PORT", ns_remoting.to_string())],
        );
        common::wait_listening(&mut ns.0, &[ns_port, ns_remoting]).expect("namesrv up");
        let data = dir.join("broker");
        let mut own = vec![
            ("SKYLARK_REMOTING_PORT", broker_remoting.to_string()),
            ("SKYLARK_HA_PORT", free_port().to_string()),
            ("SKYLARK_STORE__SEGMENT_SIZE", "67108864".into()),
            ("SKYLARK_REGISTER_INTERVAL_SECS", "1".into()),
        ];
        own.extend(broker_env.iter().cloned());
        let mut broker = spawn(
            &[
                "broker",
                "--namesrv",
                &format!("127.0.0.1:{ns_port}"),
                "--port",
                &broker_port.to_string(),
                "--data-dir",
                data.to_str().unwrap(),
            ],
            &own,
        );
        common::wait_listening(&mut broker.0, &[broker_port, broker_remoting]).expect("broker up");
        Pair {
            _namesrv: ns,
            _broker: broker,
            ns_remoting,
            broker_remoting,
        }
    }
}

/// Sends `m()` until the broker has registered (a second or so after it
/// listens) and the send is acknowledged; panics after 30 s.
async fn send_once_registered(p: &DefaultMQProducer, m: impl Fn() -> Message) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match p.send_with_timeout(m(), 5000).await {
            Ok(Some(r)) => {
                assert_eq!(format!("{:?}", r.send_status), "SendOk");
                return;
            }
            other => {
                let other = other.map_err(|e| (e.broker_response_code(), e.to_string()));
                assert!(Instant::now() < deadline, "send: {other:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// A NameServer and a Broker with ACL on (`conf/acl.toml` format) and both
/// remoting ports: the RocketMQ client signs with `AclClientRPCHook`.
#[test]
fn rocketmq_compat_client_acl_signed_requests_on_the_remoting_ports() {
    use rocketmq_client_rust::{AclClientRPCHook, SessionCredentials};
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("acl.toml");
    std::fs::write(
        &acl,
        r#"
[[accounts]]
access_key = "broker"
secret_key = "broker-secret"
broker = true
[[accounts]]
access_key = "app"
secret_key = "app-secret"
default_topic_perm = "DENY"
default_group_perm = "SUB"
topic_perms = { orders = "PUB|SUB", TBW102 = "PUB|SUB" }
[[accounts]]
access_key = "narrow"
secret_key = "narrow-secret"
default_topic_perm = "PUB|SUB"
default_group_perm = "DENY"
"#,
    )
    .unwrap();
    let pair = Pair::start(
        dir.path(),
        &[
            ("SKYLARK_ACL_ENABLED", "true".into()),
            ("SKYLARK_ACL_FILE", acl.display().to_string()),
        ],
        &[
            ("SKYLARK_ACCESS_KEY", "broker".into()),
            ("SKYLARK_SECRET_KEY", "broker-secret".into()),
        ],
    );
    let (ns_remoting, broker_remoting) = (pair.ns_remoting, pair.broker_remoting);
    let namesrv = format!("127.0.0.1:{ns_remoting}");
    let hook = |ak: &str, sk: &str| -> Arc<dyn rocketmq_transport::api::RPCHook> {
        Arc::new(AclClientRPCHook::new(SessionCredentials::with_keys(ak, sk)))
    };
    let producer_as = |group: &str, creds: Option<(&str, &str)>| {
        let b = DefaultMQProducer::builder(client_runtime())
            .producer_group(group.to_string())
            .name_server_addr(namesrv.clone());
        match creds {
            Some((ak, sk)) => b.rpc_hook(hook(ak, sk)).build(),
            None => b.build(),
        }
    };
    // The client keeps a refusal's response code, not its remark (checked
    // with raw frames below).
    let code = |r: rocketmq_client_rust::ClientResult<Option<rocketmq_client_rust::SendResult>>| {
        r.err().and_then(|e| e.broker_response_code())
    };
    runtime().block_on(async {
        // The right account: sent, and consumed by a signed consumer.
        let mut p = producer_as("acl-pg", Some(("app", "app-secret")));
        p.start().await.expect("start producer");
        send_once_registered(&p, || message("orders", "TagA", "K1", "signed")).await;
        // The same account on a topic it may not publish to: NO_PERMISSION.
        let r = p
            .send_with_timeout(message("payroll", "TagA", "K1", "denied"), 5000)
            .await;
        assert_eq!(code(r), Some(16), "a send without PUB is refused");
        p.shutdown().await;

        // A wrong secret and no credentials at all are refused.
        let mut wrong = producer_as("acl-pg-wrong", Some(("app", "not-the-secret")));
        wrong.start().await.expect("start producer");
        let r = wrong
            .send_with_timeout(message("orders", "TagA", "K1", "forged"), 5000)
            .await;
        assert!(r.is_err(), "a wrong secret is refused: {r:?}");
        wrong.shutdown().await;
        let mut anonymous = producer_as("acl-pg-anon", None);
        anonymous.start().await.expect("start producer");
        let r = anonymous
            .send_with_timeout(message("orders", "TagA", "K1", "unsigned"), 5000)
            .await;
        assert!(r.is_err(), "an unsigned client is refused: {r:?}");
        anonymous.shutdown().await;

        // The same refusals by hand, with the reasons they carry.
        let send = |ak: Option<(&str, &str)>, topic: &str| {
            let mut req = RemotingCommand::request(request::SEND_MESSAGE, 7).with_body(&b"raw"[..]);
            for (k, v) in [
                ("producerGroup", "acl-raw"),
                ("topic", topic),
                ("defaultTopic", "TBW102"),
                ("defaultTopicQueueNums", "4"),
                ("queueId", "0"),
                ("sysFlag", "0"),
                ("bornTimestamp", "0"),
                ("flag", "0"),
            ] {
                req.ext_fields.insert(k.into(), v.into());
            }
            if let Some((ak, sk)) = ak {
                req.ext_fields.insert("AccessKey".into(), ak.into());
                let sig = skylark::codec::remoting::acl::sign(sk, &req);
                req.ext_fields.insert("Signature".into(), sig);
            }
            raw_frame(broker_remoting, &req)
        };
        let r = send(None, "orders");
        refused(&r, "not signed");
        let r = send(Some(("app", "wrong")), "orders");
        refused(&r, "signature mismatch");
        let r = send(Some(("app", "app-secret")), "payroll");
        refused(&r, "PUB on topic 'payroll'");
        let r = send(Some(("app", "app-secret")), "orders");
        assert_eq!(r.code, 0, "{r:?}");
        let offset_msg_id = r.ext_fields["msgId"].clone();
        // A signed request of an account whose groups are all DENY.
        let signed = |code: i32, fields: &[(&str, &str)], body: &[u8], ak: &str, sk: &str| {
            let mut req = RemotingCommand::request(code, 9).with_body(body.to_vec());
            for (k, v) in fields {
                req.ext_fields.insert(k.to_string(), v.to_string());
            }
            req.ext_fields.insert("AccessKey".into(), ak.into());
            let sig = skylark::codec::remoting::acl::sign(sk, &req);
            req.ext_fields.insert("Signature".into(), sig);
            raw_frame(broker_remoting, &req)
        };
        let pull = [
            ("consumerGroup", "acl-cg"),
            ("topic", "orders"),
            ("queueId", "0"),
            ("queueOffset", "0"),
            ("maxMsgNums", "32"),
            ("sysFlag", "0"),
            ("commitOffset", "-1"),
            ("suspendTimeoutMillis", "0"),
            ("subVersion", "0"),
        ];
        let r = signed(request::PULL_MESSAGE, &pull, b"", "narrow", "narrow-secret");
        refused(&r, "SUB on group 'acl-cg'");
        let hb = serde_json::json!({"clientID": "narrow@1", "producerDataSet": [],
            "consumerDataSet": [{"groupName": "acl-cg", "consumeType": "CONSUME_PASSIVELY",
                "messageModel": "CLUSTERING", "consumeFromWhere": "CONSUME_FROM_FIRST_OFFSET",
                "subscriptionDataSet": [{"topic": "orders", "subString": "*"}]}]});
        let r = signed(
            request::HEART_BEAT,
            &[],
            hb.to_string().as_bytes(),
            "narrow",
            "narrow-secret",
        );
        refused(&r, "SUB on group");
        let r = signed(request::PULL_MESSAGE, &pull, b"", "app", "app-secret");
        assert!([0, 19, 20].contains(&r.code), "app may pull: {r:?}");
        // A send-back copies a message into the group's retry topic: only
        // one of a topic the group subscribes to (none subscribes yet).
        let physical = u64::from_str_radix(&offset_msg_id[offset_msg_id.len() - 16..], 16)
            .unwrap()
            .to_string();
        let back = [
            ("group", "acl-cg"),
            ("offset", physical.as_str()),
            ("delayLevel", "0"),
            ("originMsgId", offset_msg_id.as_str()),
            ("originTopic", "orders"),
            ("maxReconsumeTimes", "16"),
        ];
        let r = signed(
            request::CONSUMER_SEND_MSG_BACK,
            &back,
            b"",
            "app",
            "app-secret",
        );
        refused(&r, "subscribes to");
        // The NameServer's remoting port checks signatures too.
        let mut route = RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC, 8);
        route.ext_fields.insert("topic".into(), "orders".into());
        let r = raw_frame(ns_remoting, &route);
        refused(&r, "not signed");
        route.ext_fields.insert("AccessKey".into(), "app".into());
        let sig = skylark::codec::remoting::acl::sign("app-secret", &route);
        route.ext_fields.insert("Signature".into(), sig);
        assert_eq!(raw_frame(ns_remoting, &route).code, 0);

        let seen = Seen::default();
        let mut c = consumer_builder_at(&namesrv, "acl-cg")
            .rpc_hook(Some(hook("app", "app-secret")))
            .build();
        c.subscribe("orders", "*").await.expect("subscribe");
        c.register_message_listener_concurrently(Concurrently(
            seen.clone(),
            ConsumeConcurrentlyStatus::ConsumeSuccess,
        ));
        started(c.start().await, "signed push consumer");
        seen.wait_for(
            &HashSet::from(["signed".to_string()]),
            Duration::from_secs(60),
        )
        .await;
        // Now that the group subscribes to "orders", the same send-back is
        // accepted.
        let r = signed(
            request::CONSUMER_SEND_MSG_BACK,
            &back,
            b"",
            "app",
            "app-secret",
        );
        assert_eq!(r.code, 0, "{r:?}");
        // A code without an ACL rule needs an admin account.
        let r = signed(999, &[], b"", "app", "app-secret");
        refused(&r, "admin rights");
        // The refusal names the request as RocketMQ does, with what it tried.
        let topic = [("topic", "orders")];
        let r = signed(
            request::UPDATE_AND_CREATE_TOPIC,
            &topic,
            b"",
            "app",
            "app-secret",
        );
        refused(
            &r,
            "access key 'app' lacks admin rights needed to create or update topic 'orders' \
             (UPDATE_AND_CREATE_TOPIC, request code 17)",
        );
        let bodies = seen.bodies();
        assert!(
            !bodies.contains("forged") && !bodies.contains("unsigned"),
            "{bodies:?}"
        );
        c.shutdown().await;
    });
}

/// A NameServer and a Broker with `tls_mode = enforcing` on their remoting
/// ports: the client with `useTLS`, trusting the test CA, sends and
/// consumes; a client without TLS is not served.
#[test]
fn rocketmq_compat_client_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    common::make_certs(dir.path());
    let file = |name: &str| dir.path().join(name).display().to_string();
    let pair = Pair::start(
        dir.path(),
        &[
            ("SKYLARK_TLS_MODE", "enforcing".into()),
            ("SKYLARK_TLS_CERT_FILE", file("server.pem")),
            ("SKYLARK_TLS_KEY_FILE", file("server.key")),
        ],
        &[("SKYLARK_TLS_CA_FILE", file("ca.pem"))],
    );
    let ns_remoting = pair.ns_remoting;
    let namesrv = format!("127.0.0.1:{ns_remoting}");
    let config = |tls: bool, instance: &str| {
        let mut c = ClientConfig {
            namesrv_addr: Some(namesrv.clone().into()),
            ..Default::default()
        };
        c.set_instance_name(instance.to_string().into());
        if tls {
            c.set_use_tls(true);
            c.tls_config.client.auth_server = true;
            c.tls_config.client.trust_cert_path = Some(file("ca.pem"));
        }
        c
    };
    runtime().block_on(async {
        let mut p = DefaultMQProducer::builder(client_runtime())
            .client_config(config(true, "tls-producer"))
            .producer_group("tls-pg".to_string())
            .name_server_addr(namesrv.clone())
            .build();
        started(p.start().await, "TLS producer");
        send_once_registered(&p, || message("secure", "TagT", "K1", "over tls")).await;
        p.shutdown().await;
        let mut plain = DefaultMQProducer::builder(client_runtime())
            .client_config(config(false, "plain-producer"))
            .producer_group("plain-pg".to_string())
            .name_server_addr(namesrv.clone())
            .build();
        plain.start().await.expect("start producer");
        let r = plain
            .send_with_timeout(message("secure", "TagT", "K2", "plain"), 3000)
            .await;
        assert!(r.is_err(), "a plain client was served: {r:?}");
        plain.shutdown().await;

        let seen = Seen::default();
        let mut c = DefaultMQPushConsumer::builder(client_runtime())
            .client_config(config(true, "tls-consumer"))
            .consumer_group("tls-cg".to_string())
            .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
            .build();
        c.subscribe("secure", "*").await.expect("subscribe");
        c.register_message_listener_concurrently(Concurrently(
            seen.clone(),
            ConsumeConcurrentlyStatus::ConsumeSuccess,
        ));
        started(c.start().await, "TLS push consumer");
        seen.wait_for(
            &HashSet::from(["over tls".to_string()]),
            Duration::from_secs(60),
        )
        .await;
        assert!(!seen.bodies().contains("plain"), "{:?}", seen.bodies());
        c.shutdown().await;
    });
}
