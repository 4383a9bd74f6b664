//! `skylark::embedded`: a standalone started inside the caller's actix
//! System is laptop-sized like `skylark standalone`, and its shutdown lets
//! go of what it opened.

mod common;

use skylark::client::{ClientConfig, Producer};
use skylark::codec::MessageData;
use skylark::embedded;

fn quiet() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

/// `start_standalone` used RocketMQ's 1 GiB CommitLog segment (and 420 MB
/// IndexFile): `examples/embedded.rs` took 1.4 GB of disk a run.
#[test]
fn start_standalone_makes_a_standalone_sized_commit_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    actix::System::new().block_on(async move {
        let node = embedded::start_standalone(&path, 0, 0, quiet())
            .await
            .unwrap();
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
