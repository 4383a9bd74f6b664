//! Issue 14: the NameServer's web dashboard, loaded in a real browser.
//!
//! A live `skylark standalone` gets 1000 messages on a topic and a group
//! consumes 600 of them; headless Chromium (Debian's `chromium`, which
//! `.ci/run` installs) loads the dashboard, runs its script, and the test
//! reads the *rendered* DOM (`--dump-dom`, parsed with `scraper`): the
//! topic's row shows 1,000 messages and the group's row a lag of 400. The
//! raw page has empty tables, so this fails unless the page fetched the
//! API and rendered it. A screenshot goes to the test's temporary target
//! directory (docs/dashboard.png is one).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, json_lines, Standalone};
use scraper::{Html, Selector};

const TOPIC: &str = "DashTopic";
const GROUP: &str = "dash-group";

/// The Chromium binary; a clear failure (never a skip) when it is absent.
fn chromium() -> PathBuf {
    let p = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        p.exists(),
        "headless Chromium not found at {} (set CHROMIUM=...): install Debian's `chromium` \
         package (`apt-get install chromium`; .ci/run does this) to run the dashboard browser test",
        p.display()
    );
    p
}

/// Runs headless Chromium on `url` with `extra` arguments; answers stdout.
fn browse(profile: &Path, url: &str, extra: &[&str]) -> String {
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1280,1900",
            "--virtual-time-budget=8000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "chromium failed: {}", out.status);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of the first element matching `css` inside the row `row`.
fn cell(dom: &Html, row: &str, css: &str) -> Option<String> {
    let sel = Selector::parse(format!("{row} {css}").trim()).expect("selector");
    dom.select(&sel)
        .next()
        .map(|e| e.text().collect::<String>().trim().to_string())
}

fn ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn dashboard_renders_topic_count_and_group_lag_in_chromium() {
    let browser = chromium();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let node = Standalone::start(
        &dir.path().join("data"),
        &[
            "--dashboard-port",
            &port.to_string(),
            "--dashboard-lag-alert",
            "399",
        ],
    );
    let out = node.cli(&[
        "produce", "--topic", TOPIC, "--count", "1000", "--body", "dash", "--key", "dash-key",
        "--json",
    ]);
    ok(&out);
    assert_eq!(json_lines(&out.stdout).len(), 1000);
    let out = node.cli(&[
        "consume", "--group", GROUP, "--topic", TOPIC, "--count", "600", "--json",
    ]);
    ok(&out);
    assert_eq!(json_lines(&out.stdout).len(), 600);

    // The NameServer samples every 5 s: load the page until a sample taken
    // after the consume shows, within a deadline.
    let url = format!("http://127.0.0.1:{port}/");
    let profile = dir.path().join("chromium");
    let topic_row = format!("tr[data-topic=\"{TOPIC}\"]");
    let group_row = format!("tr[data-group=\"{GROUP}\"]");
    let deadline = Instant::now() + Duration::from_secs(60);
    let (messages, lag) = loop {
        let dom = Html::parse_document(&browse(&profile, &url, &["--dump-dom"]));
        let messages = cell(&dom, &topic_row, "td.messages");
        let lag = cell(&dom, &group_row, "td.lag");
        if messages.as_deref() == Some("1,000") && lag.as_deref() == Some("400") {
            // The rest of the page rendered from the same sample.
            assert_eq!(
                cell(&dom, &topic_row, "td.topic-name").as_deref(),
                Some(TOPIC)
            );
            let broker = format!("tr[data-broker=\"{}\"]", node.broker());
            assert_eq!(
                cell(&dom, &broker, "td:nth-child(5)").as_deref(),
                Some("ASYNC_MASTER")
            );
            let queues = Selector::parse(&format!("{group_row} div[data-queue]")).unwrap();
            assert_eq!(dom.select(&queues).count(), 4, "one line per queue");
            // Lag 400 is above the threshold of 399: the alert is shown.
            let alert = format!("#alerts li[data-kind=\"group_lag\"][data-subject=\"{GROUP}\"]");
            let text = cell(&dom, &alert, "").unwrap_or_default();
            assert!(text.contains("lags 400 messages"), "alert: {text:?}");
            break (messages, lag);
        }
        assert!(
            Instant::now() < deadline,
            "dashboard never showed {TOPIC} with 1,000 messages and {GROUP} with lag 400 \
             (last: messages {messages:?}, lag {lag:?})"
        );
    };
    assert_eq!(
        (messages.as_deref(), lag.as_deref()),
        (Some("1,000"), Some("400"))
    );

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    browse(
        &profile,
        &url,
        &[&format!("--screenshot={}", shot.display())],
    );
    let png =
        std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", shot.display()));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "screenshot is a PNG");
    eprintln!(
        "dashboard screenshot: {} ({})",
        shot.display(),
        browser.display()
    );
}

/// `GET path` on 127.0.0.1:`port`: (status code, body).
fn http_get(port: u16, path: &str) -> (u16, String) {
    common::http_get(port, path, None)
}

#[test]
fn dashboard_api_searches_messages_and_refuses_bad_queries() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let node = Standalone::start(
        &dir.path().join("data"),
        &["--dashboard-port", &port.to_string()],
    );
    let out = node.cli(&[
        "produce", "--topic", "Search", "--count", "3", "--body", "find me", "--key", "k1",
        "--json",
    ]);
    ok(&out);
    let sent = json_lines(&out.stdout);
    let id = sent[0]["msg_id"].as_str().expect("msg_id").to_string();

    let (code, body) = http_get(port, "/api/messages?topic=Search&key=k1");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let found = v["messages"].as_array().unwrap();
    assert_eq!(found.len(), 3);
    // `produce --count` numbers each body: "find me-0", ...
    assert!(
        found.iter().all(|m| m["body"]
            .as_str()
            .is_some_and(|b| b.starts_with("find me-"))),
        "{body}"
    );
    let (code, body) = http_get(port, &format!("/api/messages?id={id}"));
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["messages"][0]["msg_id"].as_str(),
        Some(id.as_str()),
        "{body}"
    );

    for (query, status, wanted) in [
        ("topic=Search", 400, "give exactly one of key, id, time"),
        ("id=zz", 400, "bad message id 'zz'"),
        ("topic=Search&time=soon", 400, "bad query"),
        ("key=k1", 400, "needs a topic"),
        (
            "topic=NoSuchTopic&key=k1",
            404,
            "topic 'NoSuchTopic' not found",
        ),
        (
            "topic=Search&key=nothing-has-this",
            404,
            "no message matches",
        ),
    ] {
        let (code, body) = http_get(port, &format!("/api/messages?{query}"));
        assert_eq!(code, status, "{query}: {body}");
        assert!(body.contains(wanted), "{query}: {body}");
    }
    let (code, _) = http_get(port, "/api/no-such-endpoint");
    assert_eq!(code, 404);
}
