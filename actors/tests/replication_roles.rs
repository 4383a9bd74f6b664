//! Replication roles with real actors on ephemeral ports: a SYNC_MASTER
//! answers by what its slaves acked, a slave refuses sends and serves
//! pulls with long polling woken by replicated data.

use std::time::{Duration, Instant};

use bytes::Bytes;
use skylark_actors::config::{BrokerConfig, BrokerRole};
use skylark_actors::launch::{start_broker, BrokerHandle};
use skylark_actors::remoting::RpcClient;
use skylark_codec::*;
use tokio::io::AsyncWriteExt;

fn log() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

async fn broker(dir: &tempfile::TempDir, id: u64, master_ha: Option<String>) -> BrokerHandle {
    start_broker(config(dir, id, master_ha), log())
        .await
        .unwrap()
}

fn config(dir: &tempfile::TempDir, id: u64, master_ha: Option<String>) -> BrokerConfig {
    let mut cfg = BrokerConfig {
        port: 0,
        broker_id: id,
        broker_role: BrokerRole::SyncMaster,
        ha_port: Some(0),
        namesrv: String::new(),
        sync_replication_timeout_ms: 500,
        master_ha_addr: master_ha,
        ..Default::default()
    };
    cfg.store.data_dir = dir.path().to_path_buf();
    cfg.store.segment_size = 1 << 20;
    cfg
}

async fn client(addr: std::net::SocketAddr) -> RpcClient {
    RpcClient::connect(&addr.to_string(), Duration::from_secs(5))
        .await
        .unwrap()
}

fn send(topic: &str, body: &str) -> SendRequest {
    SendRequest {
        producer_group: "p".into(),
        topic: topic.into(),
        queue_id: 0,
        message: MessageData::new(Bytes::from(body.to_string())),
    }
}

/// A SYNC_MASTER and its slave, the slave's HA session established.
async fn connected_pair(
    md: &tempfile::TempDir,
    sd: &tempfile::TempDir,
) -> (BrokerHandle, RpcClient, BrokerHandle, RpcClient) {
    let master = broker(md, 0, None).await;
    let m = client(master.local_addr()).await;
    let ha = status(&m).await.ha_addr.unwrap();
    let slave = broker(sd, 1, Some(ha)).await;
    let s = client(slave.local_addr()).await;
    wait_for_slave(&m).await;
    (master, m, slave, s)
}

/// Returns once the master behind `m` lists a connected slave.
async fn wait_for_slave(m: &RpcClient) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(m).await.slaves.is_empty() {
        assert!(Instant::now() < deadline, "slave never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A half message of transaction `tx-1` of producer group `txp`.
fn half() -> SendRequest {
    let mut half = send("Tx", "debit 10");
    half.message.properties = vec![
        (PROPERTY_TRANSACTION_PREPARED.into(), "true".into()),
        (PROPERTY_PRODUCER_GROUP.into(), "txp".into()),
        (PROPERTY_TRANSACTION_ID.into(), "tx-1".into()),
    ];
    half
}

/// The producer's outcome for the half stored as `r`.
fn end(r: &SendResult, state: TransactionState) -> EndTransactionRequest {
    EndTransactionRequest {
        producer_group: "txp".into(),
        transaction_id: "tx-1".into(),
        msg_id: r.msg_id.clone(),
        queue_offset: r.queue_offset,
        state,
        from_check: false,
    }
}

/// The slave behind `s` holds everything the master behind `m` stored.
async fn slave_has_everything(m: &RpcClient, s: &RpcClient) {
    let (ms, ss) = (status(m).await, status(s).await);
    assert_eq!(ms.max_offset, ss.max_offset, "{ms:?} vs {ss:?}");
}

async fn status(c: &RpcClient) -> ReplicationStatus {
    c.call(&GetReplicationStatusRequest {}).await.unwrap()
}

/// A "slave" of the master behind `m` that opens an HA session at `start`
/// and never acks; returned once the master lists a slave.
async fn mute_slave(m: &RpcClient, start: u64) -> tokio::net::TcpStream {
    let ha = status(m).await.ha_addr.unwrap();
    let mut mute = tokio::net::TcpStream::connect(&ha).await.unwrap();
    mute.write_all(&start.to_be_bytes()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while status(m).await.slaves.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    mute
}

#[actix_rt::test]
async fn replication_roles_sync_master_statuses_and_slave_reads() {
    let (md, sd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let master = broker(&md, 0, None).await;
    let m = client(master.local_addr()).await;
    let ha = status(&m).await.ha_addr.unwrap();
    assert_eq!(status(&m).await.role, "SYNC_MASTER");

    // No slave connected: stored, but SlaveNotAvailable.
    let r = m.call(&send("T", "first")).await.unwrap();
    assert_eq!(r.status, SendStatus::SlaveNotAvailable);

    // A "slave" that connects and never acks: FlushSlaveTimeout (and one
    // past the master's end, refused).
    let mut mute = tokio::net::TcpStream::connect(&ha).await.unwrap();
    mute.write_all(&u64::MAX.to_be_bytes()).await.unwrap();
    let mute2 = mute_slave(&m, 0).await;
    let started = Instant::now();
    let r = m.call(&send("T", "second")).await.unwrap();
    assert_eq!(r.status, SendStatus::FlushSlaveTimeout);
    assert!(started.elapsed() >= Duration::from_millis(400));
    drop((mute, mute2));

    // A real slave: it catches up, then every send is SendOk.
    let slave = broker(&sd, 1, Some(ha)).await;
    let s = client(slave.local_addr()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = status(&s).await;
        if st.master_connected && st.max_offset == status(&m).await.max_offset {
            break;
        }
        assert!(Instant::now() < deadline, "slave never caught up: {st:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The slave serves the topic once it learned it from the replicated
    // records (a slave takes no topic change of its own: NotMaster).
    let refused = s
        .call(&CreateTopicRequest {
            config: TopicConfig::new("T", 4),
        })
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("slave"), "{refused}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while s
        .call(&GetTopicStatsRequest { topic: "T".into() })
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the slave never learned topic T");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A pull parked on the slave is woken by replicated data.
    let parked = {
        let s = s.clone();
        actix_rt::spawn(async move {
            s.call_timeout(
                &PullRequest {
                    consumer_group: "g".into(),
                    topic: "T".into(),
                    queue_id: 0,
                    queue_offset: 2,
                    max_messages: 32,
                    max_bytes: 1 << 20,
                    suspend_timeout_ms: 10_000,
                    subscription: None,
                    sql: None,
                    commit_offset: None,
                },
                Duration::from_secs(15),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let r = m.call(&send("T", "third")).await.unwrap();
    assert_eq!(r.status, SendStatus::SendOk);
    let pulled = parked.await.unwrap().unwrap();
    assert_eq!(pulled.status, PullStatus::Found);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "pull was not woken"
    );
    let (rec, _) = skylark_actors::message_store::record::decode(&pulled.records).unwrap();
    assert_eq!(rec.body, b"third");
    assert_eq!(
        r.msg_id,
        MessageId::new(rec.store_host, rec.physical_offset).to_hex()
    );

    // The slave refuses sends.
    let e = s.call(&send("T", "nope")).await.unwrap_err();
    assert!(
        matches!(&e, ProtocolError::Remote(w) if w.code == ErrorCode::NotMaster),
        "{e}"
    );
    let st = status(&m).await;
    assert_eq!(st.slaves.len(), 1);
    assert_eq!(st.slaves[0].acked_offset, st.max_offset);
    slave.shutdown().await;
    master.shutdown().await;
}

/// Delayed messages on a master/slave pair: only the master's Scheduler
/// delivers (a slave's CommitLog must stay the master's byte for byte), the
/// message arrives once on the master, and the slave ends at the same
/// offset; a slave refuses transactional and delayed sends with NotMaster.
#[actix_rt::test]
async fn replication_slave_scheduler_stays_passive() {
    let (md, sd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (master, m, slave, s) = connected_pair(&md, &sd).await;
    let mut delayed = send("Later", "soon");
    delayed.message.deliver_at_ms = Some(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
            + 300,
    );
    m.call(&delayed).await.unwrap();
    // Delivered once, on the master's real topic.
    let pull = |c: RpcClient| async move {
        c.call(&PullRequest {
            consumer_group: "g".into(),
            topic: "Later".into(),
            queue_id: 0,
            queue_offset: 0,
            max_messages: 32,
            max_bytes: 1 << 20,
            suspend_timeout_ms: 0,
            subscription: None,
            sql: None,
            commit_offset: None,
        })
        .await
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(r) = pull(m.clone()).await {
            if r.count > 0 {
                assert_eq!(r.count, 1);
                break;
            }
        }
        assert!(Instant::now() < deadline, "delayed message never delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The slave ends exactly where the master is: it appended nothing itself.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (ms, ss) = (status(&m).await, status(&s).await);
        if ms.max_offset == ss.max_offset {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "slave diverged: {ms:?} vs {ss:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Without NameServers there is no metadata sync here: the slave learns
    // the topic from the replicated delivery and serves its one copy.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = pull(s.clone()).await {
            assert_eq!(r.count, 1, "the slave serves the one delivered copy");
            break;
        }
        assert!(Instant::now() < deadline, "slave never served the topic");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let err = s.call(&delayed).await.unwrap_err();
    assert!(
        matches!(err, ProtocolError::Remote(ref w) if w.code == ErrorCode::NotMaster),
        "{err}"
    );
    slave.shutdown().await;
    master.shutdown().await;
}

/// SYNC_MASTER + transactions: a half message and its commit are answered
/// only once the slave has them, so at the moment the producer hears
/// "committed" the slave already holds the committed copy.
#[actix_rt::test]
async fn replication_sync_master_commit_is_on_the_slave_when_acknowledged() {
    let (md, sd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (master, m, slave, s) = connected_pair(&md, &sd).await;
    let r = m.call(&half()).await.unwrap();
    assert_eq!(r.status, SendStatus::SendOk, "the slave has the half");
    m.call(&end(&r, TransactionState::Commit)).await.unwrap();
    // Right after the acknowledgement: the slave holds everything.
    slave_has_everything(&m, &s).await;
    slave.shutdown().await;
    master.shutdown().await;
}

/// SYNC_MASTER without a slave: a commit is stored on the master only, and
/// the producer is told so (`SlaveNotAvailable`), as it is for a send.
/// Before, `EndTransaction` answered OK whatever the slave wait gave. Once a
/// slave is back, repeating the commit is answered OK, after the slave has
/// it.
#[actix_rt::test]
async fn replication_sync_master_commit_without_a_slave_is_not_answered_ok() {
    let (md, sd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let master = broker(&md, 0, None).await;
    let m = client(master.local_addr()).await;
    let r = m.call(&half()).await.unwrap();
    assert_eq!(r.status, SendStatus::SlaveNotAvailable);
    // "Unknown" stores nothing, so it has nothing to wait for.
    m.call(&end(&r, TransactionState::Unknown)).await.unwrap();
    let err = m
        .call(&end(&r, TransactionState::Commit))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProtocolError::Remote(ref w) if w.code == ErrorCode::SlaveNotAvailable),
        "{err}"
    );

    let ha = status(&m).await.ha_addr.unwrap();
    let slave = broker(&sd, 1, Some(ha)).await;
    let s = client(slave.local_addr()).await;
    wait_for_slave(&m).await;
    m.call(&end(&r, TransactionState::Commit)).await.unwrap();
    slave_has_everything(&m, &s).await;
    slave.shutdown().await;
    master.shutdown().await;
}

/// The wait for a slave counts from when the send went to the store, so it
/// runs alongside the fsync wait (sync flush) instead of after it: a send
/// whose fsync took most of `sync_replication_timeout_ms` gets only the
/// rest of it from a hung slave. Before, a slow disk and a hung slave cost
/// the two timeouts added up (2.5 s + 2 s shipped), past the client's 3 s,
/// and the producer could not tell whether its message was stored.
#[actix_rt::test]
async fn replication_the_slave_wait_overlaps_the_fsync_wait() {
    let md = tempfile::tempdir().unwrap();
    let mut cfg = config(&md, 0, None);
    cfg.sync_replication_timeout_ms = 20_000;
    let master = start_broker(cfg, log()).await.unwrap();
    let m = client(master.local_addr()).await;
    let _mute = mute_slave(&m, 0).await;

    // A send that went to the store 19.7 s ago (its fsync took that long)
    // and that the slave has not acked: 0.3 s of the slave's timeout left.
    let started = Instant::now();
    let since = started
        .checked_sub(Duration::from_millis(19_700))
        .expect("the machine has been up for 20 s");
    let outcome = tokio::time::timeout(
        Duration::from_secs(10),
        master
            .replicator
            .send(skylark_actors::replicator::WaitReplicated { offset: 1, since }),
    )
    .await
    .expect("the slave wait restarted its 20 s after the fsync")
    .unwrap();
    assert_eq!(outcome, skylark_actors::replicator::WaitOutcome::Timeout);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "waited only {waited:?} of the 0.3 s left"
    );
    master.shutdown().await;
}

/// A slave newer than its master: the master refuses the slave's name
/// (it reads it as an offset past its end and closes), and the slave's
/// next connection goes without it, as an older slave's would, so a
/// rolling upgrade can take the slaves first.
#[actix_rt::test]
async fn replication_a_slave_whose_name_a_master_refuses_connects_again_without_it() {
    use skylark_actors::replicator::protocol::NAME_MAGIC;
    use tokio::io::AsyncReadExt;
    let old_master = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ha = old_master.local_addr().unwrap().to_string();
    let sd = tempfile::tempdir().unwrap();
    let slave = broker(&sd, 1, Some(ha)).await;
    let first_word = |mut s: tokio::net::TcpStream| async move {
        let mut w = [0u8; 8];
        s.read_exact(&mut w).await.unwrap();
        u64::from_be_bytes(w)
    };
    let within = Duration::from_secs(10);
    let (s, _) = tokio::time::timeout(within, old_master.accept())
        .await
        .expect("the slave connects")
        .unwrap();
    assert_eq!(first_word(s).await, NAME_MAGIC, "a new slave names itself");
    // Dropped: closed before streaming, as an old master does.
    let (s, _) = tokio::time::timeout(within, old_master.accept())
        .await
        .expect("the slave connects again")
        .unwrap();
    assert_eq!(
        first_word(s).await,
        0,
        "the second attempt starts at the slave's end offset, without the name"
    );
    slave.shutdown().await;
}
