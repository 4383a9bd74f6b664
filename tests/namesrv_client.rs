//! The client's NameServer connections are single flight: a burst of
//! concurrent requests from one fresh `NameServerClient` opens one
//! connection per NameServer, a failed connect is every waiting request's
//! failure (one attempt) and the next request dials again, and a dead
//! connection is replaced once. A real `skylark namesrv` answers; a counting
//! TCP proxy in front of it is how the test sees the NameServer's side: every
//! connection the NameServer gets from the client is one the proxy accepted,
//! and one it still forwards is one the client has not closed. The proxy
//! can also stall connections (hold what the client sends), which is how a
//! NameServer that answers slowly looks from the client.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use skylark::client::{ClientError, NameServerClient, SECOND_OPINION_PAUSE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
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
    /// Connections numbered below this (in accept order, from 0) are
    /// closed, unanswered, when their client next sends (a NameServer that
    /// closed the connection just as a request came).
    hang_up_below: Arc<AtomicUsize>,
    /// Connections numbered below this (in accept order, from 0) are
    /// stalled: what their client sends is read and held, not forwarded,
    /// until the number drops to or below theirs again.
    stall_below: Arc<watch::Sender<usize>>,
}

/// Forwards what the client sends to the NameServer, holding it while
/// connection number `me` is stalled; returns when the client closes, or
/// when it sends while `me` is to be hung up.
async fn forward_up(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    me: usize,
    (hang_up_below, mut stall_below): (Arc<AtomicUsize>, watch::Receiver<usize>),
) {
    let mut held = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let stalled = *stall_below.borrow_and_update() > me;
        if !stalled && !held.is_empty() {
            if to.write_all(&held).await.is_err() {
                return;
            }
            held.clear();
        }
        tokio::select! {
            n = from.read(&mut buf) => match n {
                Ok(0) | Err(_) => return,
                Ok(_) if hang_up_below.load(Ordering::SeqCst) > me => return,
                Ok(n) => held.extend_from_slice(&buf[..n]),
            },
            _ = stall_below.changed() => {}
        }
    }
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
        let stall_below = Arc::new(watch::channel(0usize).0);
        let hang_up_below = Arc::new(AtomicUsize::new(0));
        let (a, r, c, st, h) = (
            accepted.clone(),
            refuse.clone(),
            cut.clone(),
            stall_below.clone(),
            hang_up_below.clone(),
        );
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let me = a.fetch_add(1, Ordering::SeqCst);
                if r.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let (upstream, open_tx, mut cut, stall) = (
                    upstream.clone(),
                    open_tx.clone(),
                    c.subscribe(),
                    (h.clone(), st.subscribe()),
                );
                open_tx.send_modify(|n| *n += 1);
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&upstream).await {
                        let (cr, mut cw) = client.into_split();
                        let (mut sr, sw) = server.into_split();
                        tokio::select! {
                            _ = forward_up(cr, sw, me, stall) => {}
                            _ = tokio::io::copy(&mut sr, &mut cw) => {}
                            _ = cut.changed() => {}
                        }
                    }
                    // Both sockets are closed before `open` says so (the
                    // halves were dropped with the select's futures).
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
            hang_up_below,
            stall_below,
        }
    }

    /// Closes every connection accepted so far when its client next sends,
    /// before the NameServer sees it.
    fn hang_up_on_next_request(&self) {
        self.hang_up_below.store(self.accepted(), Ordering::SeqCst);
    }

    /// Stalls every connection accepted so far (`true`) or every one from
    /// now on as well (`false`).
    fn stall(&self, only_open_ones: bool) {
        let below = if only_open_ones {
            self.accepted()
        } else {
            usize::MAX
        };
        self.stall_below.send_replace(below);
    }

    /// Forwards every connection again, with what was held.
    fn unstall(&self) {
        self.stall_below.send_replace(0);
    }

    /// Waits until the proxy forwards exactly `n` connections.
    async fn wait_open(&mut self, n: usize, within: Duration) {
        let seen = matches!(
            tokio::time::timeout(within, self.open.wait_for(|o| *o == n)).await,
            Ok(Ok(_))
        );
        assert!(
            seen,
            "connections forwarded: {} after {within:?}, want {n}",
            *self.open.borrow()
        );
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Closes every connection being forwarded; returns once they are.
    async fn cut_all(&mut self) {
        self.cut.send_modify(|g| *g += 1);
        self.wait_open(0, DEADLINE).await;
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

/// Runs `test` in an actix System with a NameServer behind a new proxy.
fn behind_proxy<F: std::future::Future<Output = ()>>(test: impl FnOnce(Proxy) -> F) {
    let (_ns, port) = common::spawn_namesrv();
    actix::System::new()
        .block_on(async move { test(Proxy::start(format!("127.0.0.1:{port}")).await).await });
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
        let began = Instant::now();
        let got = burst(&ns).await;
        assert!(got.iter().all(answered), "{got:?}");
        assert_eq!((down.accepted(), up.accepted()), (1, 1));
        // The one that answered is asked first from now on; the one that
        // failed is not asked for a second opinion within the pause after
        // its failure (5 s: a slow machine may be past it, and then it is
        // dialled once more, once).
        assert!(burst(&ns).await.iter().all(answered));
        let want_down = if began.elapsed() < SECOND_OPINION_PAUSE {
            1..=1
        } else {
            1..=2
        };
        assert!(want_down.contains(&down.accepted()), "{}", down.accepted());
        assert_eq!(up.accepted(), 1);
    });
}

/// A NameServer that stops answering: the request on the connection times
/// out, the connection is forgotten and the next request dials a new one —
/// and the old socket is closed by the client at once, not left open until
/// the NameServer's 120 s idle close (one more per timeout, before).
#[test]
fn a_connection_forgotten_after_a_timeout_is_closed() {
    behind_proxy(|mut proxy| async move {
        let ns = NameServerClient::new(&proxy.addr, Duration::from_secs(1), "ns-timeout").unwrap();
        assert!(answered(&ns.route("NoSuchTopic").await.map(|_| ())));
        proxy.wait_open(1, DEADLINE).await;
        proxy.stall(true);
        match ns.route("NoSuchTopic").await {
            Err(ClientError::NameServerUnavailable { last, .. }) => {
                assert!(last.contains("no answer"), "{last}")
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        // A new connection answers; the stalled one is closed by the
        // client (the NameServer would keep it 120 s).
        assert!(answered(&ns.route("NoSuchTopic").await.map(|_| ())));
        assert_eq!(proxy.accepted(), 2);
        proxy.wait_open(1, Duration::from_secs(10)).await;
        // A request still on a forgotten connection keeps it open until it
        // is over: a route lookup held 3 s more than the plain one, both
        // on a stalled connection; the plain one times out, the next one
        // dials, and the held one's connection stays until it times out.
        proxy.stall(true);
        let held = async {
            ns.route_within("NoSuchTopic", Duration::from_secs(3))
                .await
                .map(|_| ())
        };
        let plain = async {
            assert!(ns.route("NoSuchTopic").await.is_err(), "stalled");
            assert!(answered(&ns.route("NoSuchTopic").await.map(|_| ())));
            assert_eq!(proxy.accepted(), 3, "one connection per timeout");
            assert_eq!(*proxy.open.borrow(), 2, "closed under a request");
        };
        let (held, ()) = tokio::join!(held, plain);
        assert!(
            matches!(held, Err(ClientError::NameServerUnavailable { .. })),
            "{held:?}"
        );
        proxy.wait_open(1, Duration::from_secs(10)).await;
    });
}

/// The request that dialled is cancelled while the connection is being
/// made (its handshake not answered yet): the attempt goes on, and the
/// connection it makes serves the next request — no second dial, no
/// socket left open that nobody uses.
#[test]
fn a_connection_dialled_for_a_cancelled_request_serves_the_next_one() {
    behind_proxy(|mut proxy| async move {
        let ns = client(&proxy.addr);
        proxy.stall(false);
        let cancelled = tokio::time::timeout(DEADLINE, async {
            tokio::select! {
                r = ns.route("NoSuchTopic") => panic!("answered while stalled: {r:?}"),
                _ = proxy.open.wait_for(|n| *n == 1) => {}
            }
        })
        .await;
        assert!(cancelled.is_ok(), "the proxy never saw the connect");
        proxy.unstall();
        assert!(answered(&ns.route("NoSuchTopic").await.map(|_| ())));
        assert_eq!(
            proxy.accepted(),
            1,
            "the cancelled request's connection was used"
        );
        proxy.wait_open(1, DEADLINE).await;
    });
}

/// The NameServer closes a kept connection just as requests come on it (it
/// restarted, or closed the connection idle, and the client had not seen
/// the close yet): every request goes once more, on one new connection,
/// and is answered. Before, they failed with "connection to ... closed"
/// (with a second NameServer: went to it, and failed if it was down).
#[test]
fn requests_on_a_connection_closed_under_them_go_once_more_on_a_new_one() {
    behind_proxy(|proxy| async move {
        let ns = client(&proxy.addr);
        assert!(answered(&ns.route("NoSuchTopic").await.map(|_| ())));
        proxy.hang_up_on_next_request();
        let got = burst(&ns).await;
        assert!(got.iter().all(answered), "{got:?}");
        assert_eq!(proxy.accepted(), 2, "the kept connection and one new one");
    });
}

/// Registers a broker of group `broker-a` (`broker_id` 0: its master) at
/// `addr` with NameServer `namesrv`, hosting `topics`.
async fn register(namesrv: &str, broker_id: u64, addr: &str, topics: &[&str]) {
    use skylark::codec::{rpc::RpcClient, RegisterBrokerRequest, TopicConfig};
    let c = RpcClient::connect(namesrv, DEADLINE).await.unwrap();
    let req = RegisterBrokerRequest {
        cluster_name: "c".into(),
        broker_name: "broker-a".into(),
        broker_id,
        broker_addr: addr.into(),
        topics: topics.iter().map(|t| TopicConfig::new(*t, 2)).collect(),
        data_version: 1,
        ..RegisterBrokerRequest::default()
    };
    c.call(&req).await.unwrap();
}

/// A NameServer without a topic's route, or with its group's slave and not
/// its master (as one just restarted knows it until the master registers
/// again), is not the last word: the next one is asked and the route with
/// the master comes back. Only a topic no NameServer has is "not found".
/// Before, the first NameServer's answer was the client's, and a restarted
/// NameServer stopped every send until the next registration (30 s).
#[test]
fn a_nameserver_without_the_route_or_its_master_is_not_the_last_word() {
    let (_fresh, fresh) = common::spawn_namesrv();
    let (_full, full) = common::spawn_namesrv();
    let (fresh, full) = (format!("127.0.0.1:{fresh}"), format!("127.0.0.1:{full}"));
    actix::System::new().block_on(async move {
        register(&full, 0, "127.0.0.1:1", &["Both", "FullOnly"]).await;
        register(&fresh, 1, "127.0.0.1:2", &["Both"]).await;
        for topic in ["Both", "FullOnly"] {
            // A new client asks `fresh` first.
            let ns = client(&format!("{fresh};{full}"));
            let route = ns.route(topic).await.unwrap_or_else(|e| panic!("{topic}: {e}"));
            let masters: Vec<_> = route.brokers.iter().filter_map(|b| b.master_addr()).collect();
            assert_eq!(masters, ["127.0.0.1:1"], "{topic}: {route:?}");
        }
        let ns = client(&format!("{fresh};{full}"));
        assert!(
            matches!(ns.route("Nowhere").await, Err(ClientError::TopicNotFound(t)) if t == "Nowhere")
        );
        // A slave-only route is still a route when no NameServer knows better.
        let ns = client(&fresh);
        let route = ns.route("Both").await.unwrap();
        assert!(route.brokers.iter().all(|b| b.master_addr().is_none()), "{route:?}");
    });
}
