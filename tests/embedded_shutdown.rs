//! `skylark::embedded`: a standalone started inside the caller's actix
//! System is laptop-sized like `skylark standalone`, and its shutdown lets
//! go of what it opened.

mod common;

use std::time::Duration;

use skylark::client::{
    ClientConfig, ClientError, MessageModel, NameServerClient, Producer, PullConsumer,
    TransactionProducer, TransactionState,
};
use skylark::codec::MessageData;
use skylark::embedded;

fn quiet() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

/// A standalone on free ports with data in `dir`.
async fn standalone(dir: &std::path::Path) -> embedded::Standalone {
    embedded::start_standalone(dir, 0, 0, quiet())
        .await
        .unwrap()
}

/// A NameServer client that has asked `namesrv` once (it holds that
/// connection).
async fn connected_client(namesrv: &str) -> NameServerClient {
    let client = NameServerClient::new(namesrv, Duration::from_secs(5), "stop").unwrap();
    let r = client.route("Nothing").await;
    assert!(matches!(r, Err(ClientError::TopicNotFound(_))), "{r:?}");
    client
}

/// `client`'s NameServer was stopped: a request fails on the connection
/// instead of being answered.
async fn refused_after_stop(client: &NameServerClient) {
    let after = client.route("Nothing").await;
    assert!(
        after.is_err() && !matches!(after, Err(ClientError::TopicNotFound(_))),
        "a stopped NameServer answered on an established connection: {after:?}"
    );
}

/// `start_standalone` used RocketMQ's 1 GiB CommitLog segment (and 420 MB
/// IndexFile): `examples/embedded.rs` took 1.4 GB of disk a run.
#[test]
fn start_standalone_makes_a_standalone_sized_commit_log() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    actix::System::new().block_on(async {
        let node = standalone(dir.path()).await;
        let namesrv = node.namesrv_addr().to_string();
        let p = Producer::start(ClientConfig::new(&namesrv), "embedded-size").unwrap();
        p.send("Sized", MessageData::new("m")).await.unwrap();
        drop(p);
        node.shutdown().await;
    });
    let segments = common::commitlog_segments(dir.path());
    assert!(!segments.is_empty(), "a CommitLog segment was made");
    for s in segments {
        let len = std::fs::metadata(&s).unwrap().len();
        assert_eq!(len, 64 << 20, "{} is {len} bytes", s.display());
    }
}

/// Tests of this file one at a time: the descriptor count and the panic
/// hook are the whole process's.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether the server closed `s` (EOF or reset) within 10 s.
async fn closed_by_server(s: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut b = [0u8; 1];
    match tokio::time::timeout(Duration::from_secs(10), s.read(&mut b)).await {
        Ok(Ok(n)) => n == 0,
        Ok(Err(_)) => true,
        Err(_) => false,
    }
}

/// A RocketMQ GET_KV_CONFIG request on `s` and its answer: the remoting
/// listener has this connection.
async fn remoting_round_trip(s: &mut tokio::net::TcpStream) {
    use skylark::codec::remoting::{decode_frame, encode_frame, request, RemotingCommand};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut f = bytes::BytesMut::new();
    encode_frame(&RemotingCommand::request(request::GET_KV_CONFIG, 1), &mut f).unwrap();
    s.write_all(&f).await.unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.unwrap();
    let mut rest = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut rest).await.unwrap();
    let answer = decode_frame(rest.into()).unwrap();
    assert!(answer.is_response());
}

/// `Standalone::shutdown` (and `NameServerHandle` dropped) stopped the
/// NameServer's accept loop only: a client that was connected still got
/// answers ("topic not found") from a stopped NameServer.
#[test]
fn namesrv_shutdown_closes_its_connections() {
    let _serial = serial();
    actix::System::new().block_on(async {
        let cfg = embedded::NameServerConfig {
            port: 0,
            remoting_port: Some(0),
            ..embedded::NameServerConfig::default()
        };
        let ns = embedded::start_namesrv(cfg, quiet()).await.unwrap();
        let addr = ns.local_addr();
        let remoting = ns.remoting.as_ref().unwrap().local_addr;
        let client = connected_client(&addr.to_string()).await;
        let mut rocketmq = tokio::net::TcpStream::connect(remoting).await.unwrap();
        remoting_round_trip(&mut rocketmq).await;

        ns.shutdown().await;
        assert!(
            closed_by_server(&mut rocketmq).await,
            "the RocketMQ remoting connection is closed"
        );
        refused_after_stop(&client).await;
    });
}

/// A whole standalone's shutdown closes its client connections too.
#[test]
fn standalone_shutdown_closes_client_connections() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    actix::System::new().block_on(async {
        let node = standalone(dir.path()).await;
        let client = connected_client(&node.namesrv_addr().to_string()).await;
        node.shutdown().await;
        refused_after_stop(&client).await;
    });
}

/// A consumer group's actor (started by the broker on the group's first
/// heartbeat, on the caller's arbiter) kept running after the embedded
/// broker's shutdown returned: its scan timer kept firing for good. Now
/// the shutdown stops every actor the broker started and waits for its
/// threads, so none runs when it returns.
#[test]
fn broker_shutdown_stops_every_actor_it_started() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    actix::System::new().block_on(async {
        let node = standalone(dir.path()).await;
        let namesrv = node.namesrv_addr().to_string();
        let p = Producer::start(ClientConfig::new(&namesrv), "actors-p").unwrap();
        p.send("Actors", MessageData::new("m")).await.unwrap();
        let c = PullConsumer::start(ClientConfig::new(&namesrv), "actors-group").unwrap();
        let subs = [("Actors".to_string(), None)];
        let broker = [node.broker_addr().to_string()];
        c.heartbeat(&subs, MessageModel::Clustering, &broker)
            .await
            .unwrap();
        let actors = node.broker.actors();
        let running = actors.running();
        for want in [
            "consumer group actors-group",
            "topic queue Actors",
            "storage",
        ] {
            assert!(running.iter().any(|r| r == want), "{want}: {running:?}");
        }
        drop((p, c));
        let stopped = tokio::time::timeout(Duration::from_secs(30), node.shutdown()).await;
        assert!(stopped.is_ok(), "the shutdown did not end within 30 s");
        let left = actors.running();
        assert!(
            left.is_empty(),
            "still running after the shutdown returned: {left:?}"
        );
    });
}

/// Each start/shutdown of an embedded standalone in one System left
/// descriptors open: the HA listener (fixed before), and the reactors
/// (epoll + eventfd) of two stopped threads, pinned by the Transaction
/// actor, whose tick kept it and the Storage and Broker addresses it holds
/// alive on the caller's arbiter.
#[test]
fn standalone_restarts_leave_no_descriptor_open() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    actix::System::new().block_on(async {
        let before = common::open_descriptors();
        for i in 0..3 {
            let node = standalone(dir.path()).await;
            let namesrv = node.namesrv_addr().to_string();
            let p = Producer::start(ClientConfig::new(&namesrv), &format!("restart-{i}")).unwrap();
            p.send("Restarts", MessageData::new("m")).await.unwrap();
            drop(p);
            node.shutdown().await;
        }
        // Threads exit and clients let go shortly after a shutdown. The
        // count comes back exactly here; the slack is for a descriptor a
        // library may open once per process. The leak was 4 a restart.
        let slack = 2;
        let settled = common::wait_until_async(Duration::from_secs(10), || {
            common::open_descriptors().len() <= before.len() + slack
        })
        .await;
        let mut after = common::open_descriptors();
        for b in &before {
            if let Some(i) = after.iter().position(|a| a == b) {
                after.swap_remove(i);
            }
        }
        after.sort();
        assert!(
            settled,
            "{} descriptors before, {} more after 3 restarts: {after:?}",
            before.len(),
            after.len()
        );
    });
}

/// A System whose future returned before its first await, with a client
/// started in it: the client's actor was first polled while the System was
/// torn down (actix polls an actor once when dropping it), outside any
/// runtime, and starting its timers there panicked ("there is no reactor
/// running").
#[test]
fn a_client_started_and_never_run_does_not_panic_at_teardown() {
    static PANICS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let _serial = serial();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(info.to_string());
        previous(info)
    }));
    actix::System::new().block_on(async {
        let _p = Producer::start(ClientConfig::new("127.0.0.1:9"), "never-run").unwrap();
        // A transaction producer's checker actor has timers of its own.
        let _t =
            TransactionProducer::start(ClientConfig::new("127.0.0.1:9"), "never-run-tx", |_| {
                TransactionState::Commit
            })
            .unwrap();
    });
    let panics = PANICS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(panics.is_empty(), "panics at teardown: {panics:?}");
}
