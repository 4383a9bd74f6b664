//! The client's NameServer connections are single flight: a burst of
//! concurrent requests from one fresh `NameServerClient` opens one
//! connection per NameServer, a failed connect is every waiting request's
//! failure (one attempt) and the next request dials again, and a dead
//! connection is replaced once. A real `skylark namesrv` answers; a counting
//! TCP proxy in front of it is how the test sees the NameServer's side: every
//! connection the NameServer gets from the client is one the proxy accepted.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use skylark::client::{ClientError, NameServerClient};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Requests sent at once in each burst.
const BURST: usize = 100;
/// How long a wait on a condition may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(30);

/// A TCP proxy in front of one NameServer that counts what it accepts.
struct Proxy {
    addr: String,
    /// Connections accepted so far.
    accepted: Arc<AtomicUsize>,
    /// While set, each accepted connection is closed at once, before any
    /// byte is read (a NameServer that fails every handshake).
    refuse: Arc<AtomicBool>,
    /// Connections being forwarded now.
    open: watch::Receiver<usize>,
    /// Bumped to cut every connection being forwarded.
    cut: Arc<watch::Sender<u64>>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`.
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let refuse = Arc::new(AtomicBool::new(false));
        let (open_tx, open) = watch::channel(0usize);
        let open_tx = Arc::new(open_tx);
        let cut = Arc::new(watch::channel(0u64).0);
        let (a, r, c) = (accepted.clone(), refuse.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                if r.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let (upstream, open_tx, mut cut) =
                    (upstream.clone(), open_tx.clone(), c.subscribe());
                open_tx.send_modify(|n| *n += 1);
                tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = cut.changed() => {}
                        }
                    }
                    // Both sockets are closed before `open` says so.
                    drop(client);
                    open_tx.send_modify(|n| *n -= 1);
                });
            }
        });
        Proxy {
            addr,
            accepted,
            refuse,
            open,
            cut,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Closes every connection being forwarded; returns once they are.
    async fn cut_all(&mut self) {
        self.cut.send_modify(|g| *g += 1);
        tokio::time::timeout(DEADLINE, self.open.wait_for(|n| *n == 0))
            .await
            .expect("the proxy's connections never closed")
            .expect("proxy gone");
    }
}

/// `BURST` route lookups at once from `ns`, each one's outcome.
async fn burst(ns: &NameServerClient) -> Vec<Result<(), ClientError>> {
    join_all((0..BURST).map(|_| async { ns.route("NoSuchTopic").await.map(|_| ()) })).await
}

/// The NameServer answered (no route: the topic does not exist).
fn answered(r: &Result<(), ClientError>) -> bool {
    matches!(r, Err(ClientError::TopicNotFound(t)) if t == "NoSuchTopic")
}

fn client(addrs: &str) -> NameServerClient {
    NameServerClient::new(addrs, Duration::from_secs(10), "namesrv-client-test").unwrap()
}

#[test]
fn concurrent_first_lookups_share_one_connection() {
    let (_ns, port) = common::spawn_namesrv();
    actix::System::new().block_on(async move {
        let proxy = Proxy::start(format!("127.0.0.1:{port}")).await;
        let ns = client(&proxy.addr);
        let first = burst(&ns).await;
        assert!(first.iter().all(answered), "{first:?}");
        assert_eq!(proxy.accepted(), 1, "connections the NameServer got");
        let again = burst(&ns.clone()).await;
        assert!(again.iter().all(answered), "{again:?}");
        assert_eq!(proxy.accepted(), 1, "connections after a second burst");
    });
}

#[test]
fn a_failed_connect_is_every_waiters_failure_and_the_next_call_dials_again() {
    let (_ns, port) = common::spawn_namesrv();
    actix::System::new().block_on(async move {
        let proxy = Proxy::start(format!("127.0.0.1:{port}")).await;
        proxy.refuse.store(true, Ordering::SeqCst);
        let ns = client(&proxy.addr);
        let failed = burst(&ns).await;
        assert!(
            failed
                .iter()
                .all(|r| matches!(r, Err(ClientError::NameServerUnavailable { .. }))),
            "{failed:?}"
        );
        assert_eq!(proxy.accepted(), 1, "attempts for one burst");
        // The next call after a failure tries again.
        assert!(matches!(
            ns.route("NoSuchTopic").await,
            Err(ClientError::NameServerUnavailable { .. })
        ));
        assert_eq!(proxy.accepted(), 2);
        proxy.refuse.store(false, Ordering::SeqCst);
        let back = burst(&ns).await;
        assert!(back.iter().all(answered), "{back:?}");
        assert_eq!(proxy.accepted(), 3);
    });
}

#[test]
fn a_dead_connection_is_replaced_once() {
    let (_ns, port) = common::spawn_namesrv();
    actix::System::new().block_on(async move {
        let mut proxy = Proxy::start(format!("127.0.0.1:{port}")).await;
        let ns = client(&proxy.addr);
        assert!(burst(&ns).await.iter().all(answered));
        assert_eq!(proxy.accepted(), 1);
        proxy.cut_all().await;
        // Requests on the dead connection fail over (there is no other
        // NameServer: unavailable), or find it closed and share one new
        // one; either way one new connection serves the next burst.
        let during = burst(&ns).await;
        assert!(
            during.iter().all(|r| answered(r)
                || matches!(r, Err(ClientError::NameServerUnavailable { .. }))),
            "{during:?}"
        );
        let after = burst(&ns).await;
        assert!(after.iter().all(answered), "{after:?}");
        assert_eq!(
            proxy.accepted(),
            2,
            "connections: the first and its one replacement"
        );
    });
}

#[test]
fn a_burst_fails_over_to_the_next_nameserver_with_one_attempt_each() {
    let (_ns, port) = common::spawn_namesrv();
    actix::System::new().block_on(async move {
        let down = Proxy::start(format!("127.0.0.1:{port}")).await;
        down.refuse.store(true, Ordering::SeqCst);
        let up = Proxy::start(format!("127.0.0.1:{port}")).await;
        let ns = client(&format!("{};{}", down.addr, up.addr));
        let got = burst(&ns).await;
        assert!(got.iter().all(answered), "{got:?}");
        assert_eq!((down.accepted(), up.accepted()), (1, 1));
        // The one that answered is asked first from now on.
        assert!(burst(&ns).await.iter().all(answered));
        assert_eq!((down.accepted(), up.accepted()), (1, 1));
    });
}
