//! Topics at scale (issue 19, item 9): creating many topics at full speed
//! must neither slow down with the table's size (a create is one append to
//! the topic log, not a rewrite of every topic) nor make the NameServer
//! drop the broker (heartbeats apart from topic payloads, registrations
//! sent as deltas).
//!
//! The NameServer runs with a short expiry (6 s, scanned every second) so a
//! broker whose liveness waited behind topic payloads would be caught within
//! the test. `SKYLARK_HARDENING_TOPICS` sets the topic count (default
//! 20,000; the 100,000 is a manual run, see docs/cluster.md).

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bin, free_port, wait_listening, KillOnDrop};
use skylark::actors::remoting::RpcClient;
use skylark::codec::{CreateTopicRequest, GetClusterInfoRequest, GetTopicListRequest, TopicConfig};

/// Concurrent admin clients creating topics.
const CLIENTS: usize = 8;

fn spawn_namesrv(port: u16, log: &std::path::Path) -> KillOnDrop {
    let err = std::fs::File::create(log).unwrap();
    let mut child = KillOnDrop(
        Command::new(bin())
            .args([
                "--log-level",
                "info",
                "namesrv",
                "--port",
                &port.to_string(),
            ])
            .env("SKYLARK_BROKER_EXPIRE_SECS", "6")
            .env("SKYLARK_SCAN_INTERVAL_SECS", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("spawn namesrv"),
    );
    wait_listening(&mut child.0, &[port]).expect("namesrv listens");
    child
}

fn spawn_broker(port: u16, namesrv: &str, dir: &std::path::Path) -> KillOnDrop {
    let mut child = KillOnDrop(
        Command::new(bin())
            .args(["--log-level", "warn", "broker", "--namesrv", namesrv])
            .envs(common::ROOMY_DISK)
            .arg("--data-dir")
            .arg(dir)
            .args(["--port", &port.to_string()])
            .env("SKYLARK_REGISTER_INTERVAL_SECS", "1")
            .env("SKYLARK_HA_PORT", "0")
            .env("SKYLARK_STORE__SEGMENT_SIZE", "67108864")
            .env_remove("SKYLARK_NAMESRV")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn broker"),
    );
    wait_listening(&mut child.0, &[port]).expect("broker listens");
    child
}

/// Whether the NameServer lists `broker`, and how many topics it routes.
async fn namesrv_view(namesrv: &str, broker: &str) -> (bool, usize) {
    let Ok(c) = RpcClient::connect(namesrv, Duration::from_secs(3)).await else {
        return (false, 0);
    };
    let t = Duration::from_secs(10);
    let listed = c
        .call_timeout(&GetClusterInfoRequest {}, t)
        .await
        .is_ok_and(|ci| {
            ci.brokers
                .values()
                .any(|b| b.addrs.values().any(|a| a == broker))
        });
    let topics = c
        .call_timeout(&GetTopicListRequest {}, t)
        .await
        .map(|l| l.topics.iter().filter(|n| n.starts_with("Scale")).count())
        .unwrap_or(0);
    c.close();
    (listed, topics)
}

/// Creates `count` topics with [`CLIENTS`] clients; answers each create's
/// latency by topic index and the number of failed creates.
async fn create_all(broker: &str, count: usize) -> (Vec<Duration>, usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (next, broker) = (next.clone(), broker.to_string());
        tasks.push(actix_rt::spawn(async move {
            let c = RpcClient::connect(&broker, Duration::from_secs(3))
                .await
                .expect("connect broker");
            let (mut times, mut failed) = (Vec::new(), 0);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let req = CreateTopicRequest {
                    config: TopicConfig::new(format!("Scale{i:06}"), 4),
                };
                let t0 = Instant::now();
                if let Err(e) = c.call_timeout(&req, Duration::from_secs(30)).await {
                    eprintln!("create Scale{i:06} failed: {e}");
                    failed += 1;
                }
                times.push((i, t0.elapsed()));
            }
            (times, failed)
        }));
    }
    let mut all = vec![Duration::ZERO; count];
    let mut failed = 0;
    for t in tasks {
        let (times, f) = t.await.expect("create task");
        failed += f;
        for (i, d) in times {
            all[i] = d;
        }
    }
    (all, failed)
}

fn mean(d: &[Duration]) -> Duration {
    d.iter().sum::<Duration>() / d.len().max(1) as u32
}

#[test]
fn topics_hardening_many_creates_stay_flat_and_the_broker_stays_registered() {
    let count: usize = std::env::var("SKYLARK_HARDENING_TOPICS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    assert!(
        count >= 2000,
        "need at least 2000 topics to compare thousands"
    );
    let tmp = tempfile::tempdir().unwrap();
    let ns_log = tmp.path().join("namesrv.log");
    let (ns_port, b_port) = (free_port(), free_port());
    let ns = spawn_namesrv(ns_port, &ns_log);
    let namesrv = format!("127.0.0.1:{ns_port}");
    let broker = format!("127.0.0.1:{b_port}");
    let data = tmp.path().join("broker");
    let b = spawn_broker(b_port, &namesrv, &data);

    let sys = actix_rt::System::new();
    sys.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !namesrv_view(&namesrv, &broker).await.0 {
            assert!(Instant::now() < deadline, "broker never registered");
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
        let started = Instant::now();
        // Watch the NameServer's view while creating.
        let missing = Arc::new(AtomicUsize::new(0));
        let watch = {
            let (ns, br, missing) = (namesrv.clone(), broker.clone(), missing.clone());
            actix_rt::spawn(async move {
                loop {
                    if !namesrv_view(&ns, &br).await.0 {
                        missing.fetch_add(1, Ordering::Relaxed);
                    }
                    actix_rt::time::sleep(Duration::from_millis(500)).await;
                }
            })
        };
        let (times, failed) = create_all(&broker, count).await;
        let total = started.elapsed();
        watch.abort();
        let missing = missing.load(Ordering::Relaxed);
        assert_eq!(
            missing, 0,
            "the NameServer did not list the broker {missing} times"
        );
        let (first, last) = (mean(&times[..1000]), mean(&times[count - 1000..]));
        eprintln!(
            "created {count} topics in {:.1} s ({:.0}/s) with {CLIENTS} clients; \
             mean create: first 1000 {:.2} ms, last 1000 {:.2} ms",
            total.as_secs_f64(),
            count as f64 / total.as_secs_f64(),
            first.as_secs_f64() * 1e3,
            last.as_secs_f64() * 1e3,
        );
        assert_eq!(failed, 0, "{failed} creates failed");
        assert!(
            last <= first * 4 + Duration::from_millis(20),
            "creates slowed down: first 1000 {first:?}, last 1000 {last:?}"
        );
        // Every topic reaches the NameServer (deltas, coalesced).
        let mut routed;
        let ok = {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let (listed, n) = namesrv_view(&namesrv, &broker).await;
                routed = n;
                if listed && n == count {
                    break true;
                }
                if Instant::now() > deadline {
                    break false;
                }
                actix_rt::time::sleep(Duration::from_millis(200)).await;
            }
        };
        assert!(ok, "the NameServer routes {routed} of {count} topics");
    });
    let mut log = String::new();
    std::fs::File::open(&ns_log)
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    let expired: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("broker expired"))
        .collect();
    assert!(
        expired.is_empty(),
        "the NameServer dropped the live broker: {expired:?}"
    );

    // kill -9 the broker and restart it with a fresh NameServer: every
    // topic comes back from the snapshot and the topic log, and reaches the
    // new NameServer in a full registration split across requests.
    drop(b);
    drop(ns);
    let ns_port = free_port();
    let _ns = spawn_namesrv(ns_port, &tmp.path().join("namesrv2.log"));
    let namesrv = format!("127.0.0.1:{ns_port}");
    let b = spawn_broker(b_port, &namesrv, &data);
    sys.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (listed, n) = namesrv_view(&namesrv, &broker).await;
            if listed && n == count {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "after restart the NameServer routes {n} of {count} topics"
            );
            actix_rt::time::sleep(Duration::from_millis(200)).await;
        }
    });
    drop(b);
}
