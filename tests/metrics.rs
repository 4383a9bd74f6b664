//! Prometheus metrics of a live `skylark standalone` (issue 14): after a
//! known produce and consume, `GET /metrics` parses as the Prometheus text
//! format and carries the exact counts, latency histograms with samples,
//! and a lag alert that flips when the lag crosses its threshold.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{bin, free_port, wait_until, Standalone, ROOMY_DISK};
use prometheus_parse::{Scrape, Value};

const TOPIC: &str = "MetricsTopic";
const GROUP: &str = "metrics-group";
/// Config lines that let a test write on a shared, nearly full disk.
/// Body bytes of every message produced (`--size`).
const SIZE: usize = 10;

/// `GET /metrics` over plain HTTP/1.1, parsed with `prometheus-parse`.
fn scrape(port: u16) -> Result<Scrape, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).map_err(|e| e.to_string())?;
    let (head, body) = raw.split_once("\r\n\r\n").ok_or("no HTTP header")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("answer: {head}"));
    }
    if !head
        .to_ascii_lowercase()
        .contains("content-type: text/plain")
    {
        return Err(format!("not the text format: {head}"));
    }
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).map_err(|e| e.to_string())
}

/// Sum of the samples of `metric` whose labels include every `want` pair.
fn sum(s: &Scrape, metric: &str, want: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for x in s.samples.iter().filter(|x| x.metric == metric) {
        if want.iter().all(|(k, v)| x.labels.get(k) == Some(*v)) {
            let v = match &x.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                Value::Histogram(_) | Value::Summary(_) => continue,
            };
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// Observations in the histogram `metric` with the labels `want` (its +Inf bucket).
fn histogram_count(s: &Scrape, metric: &str, want: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == metric && want.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .filter_map(|x| match &x.value {
            Value::Histogram(b) => b
                .iter()
                .find(|b| b.less_than.is_infinite())
                .map(|b| b.count),
            _ => None,
        })
        .sum()
}

fn ok(out: std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Pulls exactly `per_queue` messages from each queue of the topic as
/// `GROUP` and commits where it stopped.
/// ... and, while the consumer is a member of the group (it heartbeats),
/// checks that the broker counts one connection for the group.
fn consume_exactly(namesrv: &str, broker: &str, per_queue: u64, metrics_port: u16) {
    use skylark::client::{ClientConfig, MessageModel, PullConsumer};
    let namesrv = namesrv.to_string();
    let broker = broker.to_string();
    actix::System::new().block_on(async move {
        let c = PullConsumer::start(ClientConfig::new(&namesrv), GROUP).unwrap();
        let queues = c.queues(TOPIC).await.unwrap();
        c.heartbeat(
            &[(TOPIC.to_string(), None)],
            MessageModel::Clustering,
            &[broker],
        )
        .await
        .unwrap();
        let g = [("consumer_group", GROUP)];
        let mut seen = None;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while seen != Some(1.0) && std::time::Instant::now() < deadline {
            seen = scrape(metrics_port)
                .ok()
                .and_then(|s| sum(&s, "rocketmq_consumer_connections", &g));
            if seen != Some(1.0) {
                actix_rt::time::sleep(Duration::from_millis(100)).await;
            }
        }
        assert_eq!(seen, Some(1.0), "one consumer connection for {GROUP}");
        let groups = scrape(metrics_port)
            .ok()
            .and_then(|s| sum(&s, "rocketmq_consumer_group_number", &[]));
        assert_eq!(groups, Some(1.0), "one group with members");
        for q in queues {
            let mut offset = 0;
            while offset < per_queue {
                let max = (per_queue - offset).min(32) as u32;
                let r = c.pull(&q, offset, max, None, Duration::ZERO).await.unwrap();
                assert!(
                    !r.messages.is_empty(),
                    "queue {} ran dry at {offset}",
                    q.queue_id
                );
                offset = r.next_offset;
            }
            assert_eq!(offset, per_queue);
            c.commit_offset(&q, offset).await.unwrap();
        }
    });
}

#[test]
fn metrics_show_exact_counts_latencies_lag_and_the_lag_alert() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("broker.toml");
    std::fs::write(&conf, "metrics_lag_alert_threshold = 500\n").unwrap();
    let port = free_port();
    let sa = Standalone::start(
        &tmp.path().join("data"),
        &[
            "-c",
            conf.to_str().unwrap(),
            "--metrics-port",
            &port.to_string(),
        ],
    );
    ok(sa.cli(&["admin", "topic", "create", "--name", TOPIC, "--queues", "2"]));
    ok(sa.cli(&[
        "produce", "--topic", TOPIC, "--count", "1000", "--batch", "10", "--size", "10",
    ]));
    // 1000 round-robin over 2 queues: 500 each; take 300 of each.
    consume_exactly(&sa.namesrv(), &sa.broker(), 300, port);

    let t = [("topic", TOPIC)];
    let tg = [("topic", TOPIC), ("consumer_group", GROUP)];
    // Offsets are committed asynchronously: wait for the lag to settle.
    let mut last = None;
    let settled = wait_until(Duration::from_secs(30), || {
        last = scrape(port).ok();
        last.as_ref()
            .is_some_and(|s| sum(s, "rocketmq_consumer_lag_messages", &tg) == Some(400.0))
    });
    let s = last.expect("metrics endpoint answers");
    assert!(
        settled,
        "lag never reached 400: {:?}",
        sum(&s, "rocketmq_consumer_lag_messages", &tg)
    );

    assert_eq!(sum(&s, "rocketmq_messages_in_total", &t), Some(1000.0));
    // The consumer is gone: its group has no member left (the broker still
    // knows the group: its offsets, its actor). It counted every group seen.
    let mut groups = None;
    assert!(
        wait_until(Duration::from_secs(30), || {
            groups = scrape(port)
                .ok()
                .and_then(|s| sum(&s, "rocketmq_consumer_group_number", &[]));
            groups == Some(0.0)
        }),
        "groups with members: {groups:?}"
    );
    // No request was refused, and the counter says 0 rather than nothing.
    for reason in ["inflight", "connections", "mailbox"] {
        assert_eq!(
            sum(&s, "skylark_busy_rejections_total", &[("reason", reason)]),
            Some(0.0),
            "{reason}"
        );
    }
    assert_eq!(
        sum(&s, "rocketmq_throughput_in_total", &t),
        Some((1000 * SIZE) as f64)
    );
    assert_eq!(sum(&s, "rocketmq_messages_out_total", &tg), Some(600.0));
    assert!(sum(&s, "rocketmq_throughput_out_total", &tg).unwrap() > 6000.0);
    assert_eq!(
        sum(&s, "rocketmq_consumer_inflight_messages", &tg),
        Some(0.0)
    );
    // Per queue: 500 stored, 300 committed.
    for q in ["0", "1"] {
        let tq = [("topic", TOPIC), ("consumer_group", GROUP), ("queue_id", q)];
        assert_eq!(sum(&s, "rocketmq_consumer_lag_messages", &tq), Some(200.0));
    }
    // The labels RIP-46 asks for.
    let lag = s
        .samples
        .iter()
        .find(|x| x.metric == "rocketmq_messages_in_total")
        .unwrap();
    assert_eq!(lag.labels.get("cluster"), Some("DefaultCluster"));
    assert_eq!(lag.labels.get("node_id"), Some("standalone"));
    // Latency histograms with samples: 100 batch sends, 20 pulls or more.
    let sends = histogram_count(&s, "rocketmq_rpc_latency", &[("request_code", "11")]);
    assert_eq!(sends, 100.0, "one observation per SendBatch request");
    let pulls = histogram_count(&s, "rocketmq_rpc_latency", &[("request_code", "20")]);
    assert!(pulls >= 20.0, "pull latency samples: {pulls}");
    // Async flush fsyncs on its interval: the appends above were flushed.
    let flushed = wait_until(Duration::from_secs(30), || {
        scrape(port).is_ok_and(|s| {
            histogram_count(&s, "skylark_commitlog_flush_latency_seconds", &[]) > 0.0
        })
    });
    assert!(flushed, "no CommitLog fsync was timed");
    // The rest of the broker and the NameServer of the process.
    assert!(sum(&s, "rocketmq_storage_size", &[]).unwrap() > 10_000.0);
    assert!(sum(&s, "skylark_disk_usage_ratio", &[]).is_some());
    assert_eq!(sum(&s, "skylark_alert_disk_full", &[]), Some(0.0));
    assert_eq!(sum(&s, "skylark_half_messages_pending", &[]), Some(0.0));
    assert_eq!(
        sum(
            &s,
            "skylark_delayed_messages_pending",
            &[("delay_level", "1")]
        ),
        Some(0.0)
    );
    assert_eq!(
        sum(
            &s,
            "skylark_namesrv_brokers",
            &[("cluster", "DefaultCluster")]
        ),
        Some(1.0)
    );
    assert!(sum(&s, "skylark_connections", &[]).is_some());
    // The NameServer times its requests too: routes were asked for above.
    let routes = histogram_count(
        &s,
        "rocketmq_rpc_latency",
        &[("node_type", "namesrv"), ("request", "GetRouteInfo")],
    );
    assert!(
        routes >= 1.0,
        "NameServer GetRouteInfo latency samples: {routes}"
    );

    // Lag 400 is below the threshold of 500; 200 more make it 600.
    assert_eq!(
        sum(&s, "skylark_alert_consumer_lag_threshold", &[]),
        Some(500.0)
    );
    assert_eq!(sum(&s, "skylark_alert_consumer_lag", &tg), Some(0.0));
    ok(sa.cli(&[
        "produce", "--topic", TOPIC, "--count", "200", "--batch", "10", "--size", "10",
    ]));
    let mut alert = None;
    let flipped = wait_until(Duration::from_secs(30), || {
        alert = scrape(port)
            .ok()
            .and_then(|s| sum(&s, "skylark_alert_consumer_lag", &tg));
        alert == Some(1.0)
    });
    assert!(flipped, "the lag alert did not fire at lag 600: {alert:?}");
    let s = scrape(port).unwrap();
    assert_eq!(sum(&s, "rocketmq_consumer_lag_messages", &tg), Some(600.0));
    assert_eq!(sum(&s, "rocketmq_messages_in_total", &t), Some(1200.0));
}

/// A metrics port that is asked for and taken fails the start with a reason.
#[test]
fn a_taken_metrics_port_fails_the_start() {
    let tmp = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = Command::new(bin())
        .args(["--log-level", "warn", "standalone", "--data-dir"])
        .envs(common::ROOMY_DISK)
        .arg(tmp.path())
        .args(["--namesrv-port", &free_port().to_string()])
        .args(["--broker-port", &free_port().to_string()])
        .args(["--metrics-port", &port.to_string()])
        .env("SKYLARK_STORE__SEGMENT_SIZE", "67108864")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot serve metrics"), "{err}");
}

/// Only `/metrics` is served.
#[test]
fn other_paths_are_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let _sa = Standalone::start(tmp.path(), &["--metrics-port", &port.to_string()]);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /nope HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 404"), "{raw}");
}

/// Disk usage above the write-refusal ratio (lowered to 1 % so the test
/// disk is "full") shows as `skylark_alert_disk_full` 1.
#[test]
fn the_disk_alert_fires_above_the_write_refusal_ratio() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let _sa = Standalone::start_env(
        &tmp.path().join("data"),
        &["--metrics-port", &port.to_string()],
        &[
            ("SKYLARK_STORE__DISK_SOFT_LIMIT_RATIO", "0.01"),
            ("SKYLARK_STORE__DISK_HARD_LIMIT_RATIO", "0.01"),
        ],
    );
    let s = scrape(port).unwrap();
    assert_eq!(sum(&s, "skylark_disk_write_refusal_ratio", &[]), Some(0.01));
    assert!(sum(&s, "skylark_disk_usage_ratio", &[]).unwrap() > 0.01);
    assert_eq!(sum(&s, "skylark_alert_disk_full", &[]), Some(1.0));
}

/// Sends a signal to a process.
fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

/// Slave 1 of standalone's `standalone` group, on `port`, serving metrics
/// on `metrics_port`; once both listen.
fn spawn_slave(
    sa: &Standalone,
    data_dir: &std::path::Path,
    port: u16,
    metrics_port: u16,
) -> common::KillOnDrop {
    let child = Command::new(bin())
        .args(["--log-level", "error", "broker", "--namesrv", &sa.namesrv()])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--port", &port.to_string()])
        .env("SKYLARK_BROKER_NAME", "standalone")
        .env("SKYLARK_BROKER_ID", "1")
        .env("SKYLARK_METRICS_PORT", metrics_port.to_string())
        .env("SKYLARK_METRICS_REPLICATION_STALL_SECS", "1")
        .envs(ROOMY_DISK)
        .env("SKYLARK_REGISTER_INTERVAL_SECS", "1")
        .env("SKYLARK_STORE__SEGMENT_SIZE", "67108864")
        .env_remove("SKYLARK_NAMESRV")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut slave = common::KillOnDrop(child);
    common::wait_listening(&mut slave.0, &[port, metrics_port]).unwrap();
    slave
}

/// The `(slave label, value)` samples of `metric`.
fn by_slave(s: &Scrape, metric: &str) -> Vec<(String, f64)> {
    s.samples
        .iter()
        .filter(|x| x.metric == metric)
        .filter_map(|x| match x.value {
            Value::Gauge(v) => Some((x.labels.get("slave")?.to_string(), v)),
            _ => None,
        })
        .collect()
}

/// A master (standalone) and its slave: replication lag per slave on the
/// master, and the not-replicating alert while the slave is frozen.
#[test]
fn replication_lag_and_the_slave_alert_follow_a_frozen_slave() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("broker.toml");
    std::fs::write(&conf, "metrics_replication_stall_secs = 1\n").unwrap();
    let (mport, sport) = (free_port(), free_port());
    let sa = Standalone::start(
        &tmp.path().join("m"),
        &[
            "-c",
            conf.to_str().unwrap(),
            "--metrics-port",
            &mport.to_string(),
        ],
    );
    let slave_port = free_port();
    let slave = spawn_slave(&sa, &tmp.path().join("s"), slave_port, sport);
    let pid = slave.0.id();
    ok(sa.cli(&[
        "produce", "--topic", TOPIC, "--count", "100", "--batch", "10", "--size", "10",
    ]));
    let lag = |port: u16| {
        scrape(port)
            .ok()
            .and_then(|s| sum(&s, "skylark_replication_lag_bytes", &[]))
    };
    let alert = |port: u16| {
        scrape(port)
            .ok()
            .and_then(|s| sum(&s, "skylark_alert_slave_not_replicating", &[]))
    };
    assert!(
        wait_until(Duration::from_secs(30), || lag(mport) == Some(0.0)
            && lag(sport) == Some(0.0)),
        "the slave never caught up: master says {:?}, slave {:?}",
        lag(mport),
        lag(sport)
    );
    assert_eq!(alert(mport), Some(0.0));
    assert_eq!(alert(sport), Some(0.0));

    signal(pid, "-STOP");
    ok(sa.cli(&[
        "produce", "--topic", TOPIC, "--count", "100", "--batch", "10", "--size", "10",
    ]));
    let fired = wait_until(Duration::from_secs(30), || alert(mport) == Some(1.0));
    let behind = lag(mport);
    signal(pid, "-CONT");
    assert!(fired, "no alert for a frozen slave: {:?}", alert(mport));
    assert!(behind.unwrap() > 0.0, "lag while frozen: {behind:?}");
    assert!(
        wait_until(Duration::from_secs(30), || alert(mport) == Some(0.0)
            && lag(mport) == Some(0.0)),
        "the alert did not clear after the slave resumed: {:?}",
        alert(mport)
    );
}

/// A slave names itself on the HA connection: its master keys its series
/// by its broker id (`slave="1"`), not by the connection's ephemeral port,
/// so a slave killed and restarted continues the one series it had, with
/// its name and address in `skylark_replication_slave_info`, and the
/// master's status lists it once, by id.
#[test]
fn a_restarted_slave_continues_its_series_keyed_by_its_broker_id() {
    let tmp = tempfile::tempdir().unwrap();
    let mport = free_port();
    let sa = Standalone::start(
        &tmp.path().join("m"),
        &["--metrics-port", &mport.to_string()],
    );
    let (slave_port, sport) = (free_port(), free_port());
    let mut slave = spawn_slave(&sa, &tmp.path().join("s"), slave_port, sport);
    let produce = || {
        ok(sa.cli(&[
            "produce", "--topic", TOPIC, "--count", "50", "--batch", "10", "--size", "10",
        ]))
    };
    let lags = |port: u16| {
        scrape(port)
            .map(|s| by_slave(&s, "skylark_replication_lag_bytes"))
            .unwrap_or_default()
    };
    let caught_up = |port: u16| lags(port) == [("1".to_string(), 0.0)];
    produce();
    assert!(
        wait_until(Duration::from_secs(30), || caught_up(mport)),
        "the master never showed one caught-up series for slave 1: {:?}",
        lags(mport)
    );
    assert!(
        caught_up(sport),
        "the slave's own series: {:?}",
        lags(sport)
    );
    let me = format!("127.0.0.1:{slave_port}");
    let info = [
        ("slave", "1"),
        ("broker_name", "standalone"),
        ("addr", me.as_str()),
    ];
    for port in [mport, sport] {
        let s = scrape(port).unwrap();
        assert_eq!(
            sum(&s, "skylark_replication_slave_info", &info),
            Some(1.0),
            "{:?}",
            by_slave(&s, "skylark_replication_slave_info")
        );
    }

    // kill -9 and a restart: a new HA connection, from a new port.
    drop(slave);
    produce();
    slave = spawn_slave(&sa, &tmp.path().join("s"), slave_port, sport);
    produce();
    let mut seen = Vec::new();
    let resumed = wait_until(Duration::from_secs(30), || {
        let now = lags(mport);
        // Never a second series for the same slave, not even for a scrape.
        assert!(now.len() <= 1, "two series for one slave: {now:?}");
        seen = now;
        seen == [("1".to_string(), 0.0)]
    });
    assert!(resumed, "slave 1's series did not resume: {seen:?}");
    let s = scrape(mport).unwrap();
    assert_eq!(
        by_slave(&s, "skylark_replication_slave_info"),
        [("1".to_string(), 1.0)]
    );
    // The status names the slave too (admin cluster list --json).
    let master = master_row(&sa);
    let slaves = master["slaves"].as_array().expect("slaves listed");
    assert_eq!(slaves.len(), 1, "{slaves:?}");
    assert_eq!(slaves[0]["broker_id"], 1, "{slaves:?}");
    assert_eq!(slaves[0]["broker_addr"], me.as_str(), "{slaves:?}");
    drop(slave);
}

/// `admin cluster list --json`: the master's row of standalone's group.
fn master_row(sa: &Standalone) -> serde_json::Value {
    let out = sa.cli(&["admin", "--json", "cluster", "list"]);
    common::json_lines(&out.stdout)
        .iter()
        .flat_map(|v| v["members"].as_array().cloned().unwrap_or_default())
        .find(|m| m["broker_id"] == 0)
        .expect("the master's row")
}

/// A second HA session of a slave whose first one the master still holds
/// (a connection dropped without a FIN) replaces the first at once: the
/// master closes the old stream, lists the slave once and exports one
/// series for it. A slave that sends no name (older than its master) is
/// still served, labelled by its connection's address.
#[test]
fn a_new_session_of_the_same_slave_replaces_its_old_one() {
    use skylark::actors::replicator::protocol;
    let tmp = tempfile::tempdir().unwrap();
    let mport = free_port();
    let sa = Standalone::start(
        &tmp.path().join("m"),
        &["--metrics-port", &mport.to_string()],
    );
    ok(sa.cli(&["produce", "--topic", TOPIC, "--count", "10", "--size", "10"]));
    let ha = master_row(&sa)["ha_addr"]
        .as_str()
        .expect("the master's HA address")
        .to_string();
    let name = protocol::SlaveName {
        broker_name: "standalone".into(),
        broker_id: 1,
        addr: "127.0.0.1:1".into(),
    };
    let rt = common::tokio_rt();
    // A session that has its first chunk: the master holds it.
    let open = |name: Option<&protocol::SlaveName>| {
        rt.block_on(async {
            let mut c = tokio::net::TcpStream::connect(&ha).await.unwrap();
            if let Some(n) = name {
                protocol::write_name(&mut c, n).await.unwrap();
            }
            protocol::write_offset(&mut c, 0).await.unwrap();
            let (h, data) = protocol::read_chunk(&mut c).await.unwrap();
            assert_eq!(h.offset, 0);
            assert!(!data.is_empty());
            c
        })
    };
    let series = || {
        scrape(mport)
            .map(|s| by_slave(&s, "skylark_replication_lag_bytes"))
            .unwrap_or_default()
    };
    let labels = || series().into_iter().map(|(l, _)| l).collect::<Vec<_>>();
    let mut first = open(Some(&name));
    assert!(
        wait_until(Duration::from_secs(10), || labels() == ["1"]),
        "{:?}",
        series()
    );
    let second = open(Some(&name));
    let second_addr = second.local_addr().unwrap().to_string();
    assert_eq!(labels(), ["1"], "one series for one slave");
    let slaves = master_row(&sa)["slaves"].clone();
    assert_eq!(slaves.as_array().map(Vec::len), Some(1), "{slaves}");
    assert_eq!(slaves[0]["addr"], second_addr.as_str(), "{slaves}");
    // The old stream is closed by the master: EOF after what was sent.
    let closed = rt.block_on(async {
        let read = async { while protocol::read_chunk(&mut first).await.is_ok() {} };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .is_ok()
    });
    assert!(closed, "the superseded session was not closed");
    // A slave without a name.
    let old = open(None);
    let old_addr = old.local_addr().unwrap().to_string();
    assert!(
        wait_until(Duration::from_secs(10), || {
            let mut l = labels();
            l.sort();
            l == ["1".to_string(), old_addr.clone()]
        }),
        "{:?}",
        series()
    );
    drop((second, old));
    assert!(
        wait_until(Duration::from_secs(10), || series().is_empty()),
        "the closed sessions' series stayed: {:?}",
        series()
    );
}

/// A connection over the broker's cap is refused with `Busy` and counted.
#[test]
fn busy_rejections_are_counted_by_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("broker.toml");
    std::fs::write(&conf, "max_connections = 1\n").unwrap();
    let port = free_port();
    let sa = Standalone::start(
        &tmp.path().join("data"),
        &[
            "-c",
            conf.to_str().unwrap(),
            "--metrics-port",
            &port.to_string(),
        ],
    );
    let busy = || {
        scrape(port).ok().and_then(|s| {
            sum(
                &s,
                "skylark_busy_rejections_total",
                &[("reason", "connections")],
            )
        })
    };
    // The start-up probes of the test harness connect too, and one of
    // them may still hold the slot: take the slot with a connection the
    // broker keeps (no error frame within 300 ms), then count from there.
    let mut first = None;
    assert!(
        wait_until(Duration::from_secs(10), || {
            let mut c = TcpStream::connect(sa.broker()).unwrap();
            c.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let mut b = [0u8; 1];
            match c.read(&mut b) {
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    first = Some(c);
                    true
                }
                _ => false,
            }
        }),
        "no connection kept by the broker"
    );
    let before = busy().unwrap_or(0.0);
    // The slot is taken: the next connection gets one Busy error frame and
    // is closed.
    let mut second = TcpStream::connect(sa.broker()).unwrap();
    second
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut sink = Vec::new();
    let _ = second.read_to_end(&mut sink);
    assert!(!sink.is_empty(), "no error frame before the close");
    assert!(
        wait_until(Duration::from_secs(10), || busy() == Some(before + 1.0)),
        "busy rejections: {:?} (before: {before})",
        busy()
    );
    // The first is still open (and the broker's own connection to its
    // NameServer counts too).
    assert!(first.is_some());
    assert!(sum(&scrape(port).unwrap(), "skylark_connections", &[]).unwrap() >= 1.0);
}

/// `skylark_connections` counts the connections of every port, by
/// listener: the Skylark ports of the NameServer and the Broker, both
/// RocketMQ remoting ports, the HA port and the metrics endpoint; and
/// `skylark_connections_accepted_total` every connection accepted (the HA
/// port closes one that says nothing within 5 s).
#[test]
fn connections_are_counted_on_every_listener() {
    let tmp = tempfile::tempdir().unwrap();
    let (mport, ha) = (free_port(), free_port());
    let env = [
        ("SKYLARK_METRICS_PORT", mport.to_string()),
        ("SKYLARK_HA_PORT", ha.to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (sa, ns_remoting, broker_remoting) = Standalone::start_with_remoting(tmp.path(), &env);
    let held: Vec<TcpStream> = [
        sa.namesrv_port,
        sa.broker_port,
        ns_remoting,
        broker_remoting,
        ha,
    ]
    .iter()
    .map(|p| TcpStream::connect(("127.0.0.1", *p)).unwrap())
    .collect();
    let open = |s: &Scrape, l: &str| sum(s, "skylark_connections", &[("listener", l)]);
    let accepted =
        |s: &Scrape, l: &str| sum(s, "skylark_connections_accepted_total", &[("listener", l)]);
    let mut last = None;
    let counted = wait_until(Duration::from_secs(30), || {
        let Ok(s) = scrape(mport) else { return false };
        let all = [
            "namesrv",
            "broker",
            "namesrv_remoting",
            "broker_remoting",
            "metrics",
        ]
        .iter()
        .all(|l| open(&s, l).unwrap_or(0.0) >= 1.0)
            && accepted(&s, "ha").unwrap_or(0.0) >= 1.0;
        last = Some(s);
        all
    });
    let shown = last.map(|s| {
        s.samples
            .iter()
            .filter(|x| x.metric.starts_with("skylark_connections"))
            .map(|x| format!("{}{:?} {:?}", x.metric, x.labels, x.value))
            .collect::<Vec<_>>()
    });
    assert!(counted, "not every listener counted: {shown:?}");
    drop(held);
}

/// A `skylark controller` with `metrics_port` serves its raft role and its
/// broker groups: leader 1, then, after a broker's heartbeat, the group
/// with a master at epoch 1 and an in-sync set of one.
/// `skylark controller` node `id` on `port` of the group `peers`, serving
/// metrics on `metrics_port`; once both listen.
fn spawn_controller(
    id: u64,
    (port, metrics_port): (u16, u16),
    peers: &str,
    data_dir: &std::path::Path,
) -> common::KillOnDrop {
    let child = Command::new(bin())
        .args(["--log-level", "warn", "controller", "--node-id"])
        .arg(id.to_string())
        .args(["--port", &port.to_string()])
        .args(["--peers", peers])
        .arg("--data-dir")
        .arg(data_dir)
        .env("SKYLARK_METRICS_PORT", metrics_port.to_string())
        .env("SKYLARK_RAFT_HEARTBEAT_INTERVAL_MS", "100")
        .env("SKYLARK_RAFT_ELECTION_TIMEOUT_MIN_MS", "300")
        .env("SKYLARK_RAFT_ELECTION_TIMEOUT_MAX_MS", "600")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn skylark controller");
    let mut child = common::KillOnDrop(child);
    common::wait_listening(&mut child.0, &[port, metrics_port]).expect("controller and metrics up");
    child
}

#[test]
fn a_controller_serves_its_role_and_groups() {
    use skylark::actors::controller::client::ControllerClient;
    use skylark::actors::controller::proto::Response;
    let tmp = tempfile::tempdir().unwrap();
    let (port, mport) = (free_port(), free_port());
    let peers = format!("1=127.0.0.1:{port}");
    let _child = spawn_controller(1, (port, mport), &peers, tmp.path());
    let me = [("node_type", "controller"), ("node_id", "1")];
    let leads = wait_until(Duration::from_secs(30), || {
        scrape(mport).is_ok_and(|s| sum(&s, "skylark_controller_is_leader", &me) == Some(1.0))
    });
    assert!(leads, "the only controller never reported leading");
    let s = scrape(mport).unwrap();
    assert!(sum(&s, "skylark_controller_term", &me).unwrap() >= 1.0);
    assert_eq!(sum(&s, "skylark_controller_broker_groups", &me), Some(0.0));

    let rt = common::tokio_rt();
    let mut c = ControllerClient::new(&format!("127.0.0.1:{port}"), Duration::from_secs(5));
    let r = rt
        .block_on(c.leader_request(&common::controller_heartbeat("g1", 0)))
        .expect("heartbeat answered");
    assert!(matches!(r, Response::Group(_)), "{r:?}");
    let g = [("broker_name", "g1")];
    let s = scrape(mport).unwrap();
    assert_eq!(sum(&s, "skylark_controller_broker_groups", &me), Some(1.0));
    assert_eq!(sum(&s, "skylark_controller_has_master", &g), Some(1.0));
    assert_eq!(sum(&s, "skylark_controller_master_epoch", &g), Some(1.0));
    assert_eq!(
        sum(&s, "skylark_controller_sync_state_set_size", &g),
        Some(1.0)
    );
    assert!(sum(&s, "skylark_controller_last_applied_index", &me).unwrap() >= 1.0);
}

/// Every family a 3-node controller group documents (docs/metrics.md)
/// carries a plausible value on every node: one leader they agree on, a
/// term of at least 1, three voters, log and applied indexes, requests
/// counted by kind; and none of the process families a controller cannot
/// feed (it has no CommitLog and never answers `Busy`).
#[test]
fn a_controller_group_reports_real_values_in_every_family() {
    let tmp = tempfile::tempdir().unwrap();
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let peers = ports
        .iter()
        .enumerate()
        .map(|(i, (p, _))| format!("{}=127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(";");
    let _nodes: Vec<_> = ports
        .iter()
        .enumerate()
        .map(|(i, &p)| spawn_controller(i as u64 + 1, p, &peers, &tmp.path().join(i.to_string())))
        .collect();
    let value = |s: &Scrape, m: &str| sum(s, m, &[]).unwrap_or(-1.0);
    let scrapes =
        || -> Option<Vec<Scrape>> { ports.iter().map(|(_, m)| scrape(*m).ok()).collect() };
    // Settled: one leader, known to all, that has counted its term.
    let settled = |all: &[Scrape]| {
        let leaders: Vec<f64> = all
            .iter()
            .map(|s| value(s, "skylark_controller_leader_id"))
            .collect();
        all.iter()
            .map(|s| value(s, "skylark_controller_is_leader"))
            .sum::<f64>()
            == 1.0
            && leaders.iter().all(|l| *l >= 1.0 && *l == leaders[0])
            && all
                .iter()
                .map(|s| value(s, "skylark_controller_leader_terms_total"))
                .sum::<f64>()
                >= 1.0
            && all
                .iter()
                .all(|s| value(s, "skylark_controller_last_applied_index") >= 1.0)
    };
    let mut last = None;
    let ok = wait_until(Duration::from_secs(30), || {
        last = scrapes();
        last.as_deref().is_some_and(settled)
    });
    let shown = |all: &[Scrape]| -> Vec<Vec<(String, f64)>> {
        let keys = [
            "skylark_controller_is_leader",
            "skylark_controller_leader_id",
            "skylark_controller_leader_terms_total",
            "skylark_controller_last_applied_index",
        ];
        all.iter()
            .map(|s| keys.iter().map(|k| (k.to_string(), value(s, k))).collect())
            .collect()
    };
    assert!(
        ok,
        "the group never settled on one leader (-1: no sample): {:?}",
        last.as_deref().map(shown)
    );
    let all = last.unwrap();
    let documented = [
        "skylark_controller_is_leader",
        "skylark_controller_term",
        "skylark_controller_leader_id",
        "skylark_controller_last_log_index",
        "skylark_controller_last_applied_index",
        "skylark_controller_voters",
        "skylark_controller_broker_groups",
        "skylark_controller_requests_total",
        "skylark_controller_leader_terms_total",
        "skylark_connections",
    ];
    for (i, s) in all.iter().enumerate() {
        let node = (i + 1).to_string();
        let mut names: Vec<&str> = s.samples.iter().map(|x| x.metric.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        for m in documented {
            assert!(names.contains(&m), "node {node} has no {m}: {names:?}");
        }
        for m in names
            .iter()
            .filter(|m| !m.starts_with("skylark_controller_"))
        {
            // A controller checks signed requests too (docs/metrics.md).
            assert!(
                [
                    "skylark_connections",
                    "skylark_connections_accepted_total",
                    "skylark_auth_refusals_total"
                ]
                .contains(m),
                "node {node} serves {m}"
            );
        }
        assert!(value(s, "skylark_controller_term") >= 1.0);
        assert_eq!(value(s, "skylark_controller_voters"), 3.0);
        assert!(value(s, "skylark_controller_last_log_index") >= 1.0);
        assert!(value(s, "skylark_controller_last_applied_index") >= 1.0);
        assert_eq!(value(s, "skylark_controller_broker_groups"), 0.0);
        // Raft RPCs between the three: a follower holds the leader's
        // connection and has served its AppendEntries.
        let leads = value(s, "skylark_controller_is_leader") == 1.0;
        if !leads {
            let on_port = sum(s, "skylark_connections", &[("listener", "controller")]);
            assert!(on_port.unwrap_or(0.0) >= 1.0, "node {node}: {on_port:?}");
            let ae = sum(
                s,
                "skylark_controller_requests_total",
                &[("request", "AppendEntries")],
            );
            assert!(ae.unwrap_or(0.0) >= 1.0, "node {node}: {ae:?}");
        }
    }
}
