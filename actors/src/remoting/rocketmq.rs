//! The RocketMQ remoting listener shared by the NameServer and the Broker
//! (issue 17, docs/rocketmq-compat.md): frames in and out with
//! [`RemotingCodec`], each request handed to the server's answer function.
//!
//! Requests of one connection are answered concurrently, answers leaving
//! as they finish and matched by `opaque` (a RocketMQ client sends and
//! long-polls on one connection per broker, so a parked pull must not hold
//! up a send). Above [`MAX_INFLIGHT`] unanswered requests the connection
//! stops reading until one is answered; TCP then pushes back on the client.
//!
//! A frame that cannot be decoded (bad length, over the frame limit, bad
//! header) closes that one connection, as RocketMQ's `NettyDecoder` does:
//! nothing after a broken frame can be trusted to start a frame. A whole
//! frame whose header would decode into more than its budget (8 × its
//! length + 16 KiB, `skylark_codec::budget`) is first answered
//! `MESSAGE_ILLEGAL` with the reason (its opaque and codec are read
//! without the refused fields), then closed the same way. A
//! connection silent for `idle` is closed, and so is one whose begun frame
//! is not complete within `frame_read` (slowloris); above `max_connections`
//! open remoting connections a new one is closed at once. Oneway requests
//! are executed and never answered; responses sent to us are ignored.
//! The WARN lines of these closes are rate limited per peer and reason
//! ([`super::bad_input`]); a peer that leaves mid-frame logs at INFO.
//! [`RemotingListenerHandle::shutdown`] closes every connection.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::LocalBoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, SinkExt, StreamExt};
use skylark_codec::remoting::{RemotingCodec, RemotingCommand, RemotingError};
use slog::{debug, info, warn, Logger};
use tokio::net::TcpListener;

use super::tracker::{track_connections, Connections};
use crate::tls::{MaybeTls, ServerTls};
use tokio::sync::oneshot;
use tokio_util::codec::{FramedRead, FramedWrite};

/// Requests of one connection answered at the same time, at most.
pub const MAX_INFLIGHT: usize = 256;

/// The answer to a header refused by the decode budget: `MESSAGE_ILLEGAL`,
/// what the Broker answers any other bad request with (its `BadRequest`),
/// and which a RocketMQ producer does not retry.
const OVER_BUDGET_CODE: i32 = skylark_codec::remoting::response::MESSAGE_ILLEGAL;

/// What a server answers to one request (`peer` is the client's address).
pub type Answer =
    Rc<dyn Fn(RemotingCommand, &RemotingConn) -> LocalBoxFuture<'static, RemotingCommand>>;

/// A handle on one remoting connection: its peer, and a queue of requests
/// the server initiates on it (NOTIFY_CONSUMER_IDS_CHANGED, ...), written
/// between answers. Closed once the connection is.
#[derive(Clone, Debug)]
pub struct RemotingConn {
    pub peer: SocketAddr,
    push: tokio::sync::mpsc::UnboundedSender<RemotingCommand>,
}

impl RemotingConn {
    /// Whether the connection is still open.
    pub fn connected(&self) -> bool {
        !self.push.is_closed()
    }

    /// Queues a server-initiated command; false if the connection is gone.
    pub fn push(&self, cmd: RemotingCommand) -> bool {
        self.push.send(cmd).is_ok()
    }
}

/// Limits of a listener.
#[derive(Debug, Clone)]
pub struct RemotingLimits {
    pub max_frame_size: usize,
    pub max_connections: usize,
    pub idle: Duration,
    /// A begun frame must be complete within this.
    pub frame_read: Duration,
}

impl RemotingLimits {
    /// From a server's settings; the frame limit is at most RocketMQ's 16 MiB.
    pub fn new(
        max_frame_size: usize,
        max_connections: usize,
        idle_secs: u64,
        frame_read_ms: u64,
    ) -> Self {
        RemotingLimits {
            max_frame_size: max_frame_size.min(skylark_codec::remoting::DEFAULT_MAX_FRAME_SIZE),
            max_connections,
            idle: Duration::from_secs(idle_secs.max(1)),
            frame_read: Duration::from_millis(frame_read_ms.max(1)),
        }
    }
}

/// The running listener; dropping it stops accepting (established
/// connections live on until [`RemotingListenerHandle::shutdown`] or their
/// peers close them).
pub struct RemotingListenerHandle {
    /// The address actually bound (useful with port 0).
    pub local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    connections: Connections,
}

impl RemotingListenerHandle {
    fn stop_accepting(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Stops accepting, closes every established connection (answers not
    /// yet written are dropped) and returns once their sockets are closed.
    pub async fn shutdown(mut self) {
        self.stop_accepting();
        self.connections.close_all().await;
    }
}

impl Drop for RemotingListenerHandle {
    fn drop(&mut self) {
        self.stop_accepting();
    }
}

/// Binds the remoting port (a clear error naming it when taken).
pub async fn bind(host: &str, port: u16) -> std::io::Result<TcpListener> {
    TcpListener::bind((host, port)).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen for RocketMQ remoting on {host}:{port}: {e}"),
        )
    })
}

/// Serves RocketMQ remoting on a bound `listener` (from [`bind`]) with
/// `answer`; with `tls`, connections are TLS (RocketMQ clients' `useTLS`)
/// or, in permissive mode, either; `port` names the listener in
/// `skylark_connections`. Must be called inside a running actix System;
/// connections run on the calling arbiter.
pub fn serve(
    (listener, port): (TcpListener, crate::metrics::Listener),
    answer: Answer,
    limits: RemotingLimits,
    tls: Option<Arc<ServerTls>>,
    log: Logger,
) -> std::io::Result<RemotingListenerHandle> {
    let local_addr = listener.local_addr()?;
    port.listening();
    let log = log.new(slog::o!("listener" => "rocketmq-remoting"));
    info!(log, "RocketMQ remoting listener"; "addr" => %local_addr);
    let (tx, mut rx) = oneshot::channel();
    let (tracker, connections) = track_connections();
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
                        let counted = crate::metrics::CountedConnection::new(port);
                        let (answer, limits, log, open, tls) =
                            (answer.clone(), limits.clone(), log.clone(), open.clone(), tls.clone());
                        let tracker = tracker.for_connection();
                        actix::spawn(async move {
                            let served = async {
                                let _ = stream.set_nodelay(true);
                                let stream = match &tls {
                                    None => Ok(MaybeTls::Plain(stream)),
                                    Some(t) => t.accept_foreign(stream, &log).await,
                                };
                                // A refusal is logged (rate limited) by `accept_foreign`.
                                if let Ok(s) = stream {
                                    serve_connection(s, peer, answer, &limits, &log).await;
                                }
                            };
                            // Closed by the owner: the socket drops with `served`.
                            tokio::select! {
                                _ = served => {}
                                _ = tracker.closed.cancelled() => {}
                            }
                            open.fetch_sub(1, Ordering::Relaxed);
                            drop((tracker, counted));
                        });
                    }
                    Err(e) => {
                        warn!(log, "remoting accept failed"; "error" => %e);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        drop(tracker);
    });
    Ok(RemotingListenerHandle {
        local_addr,
        stop: Some(tx),
        connections,
    })
}

/// Reads requests until the peer leaves, goes idle or sends a broken frame;
/// answers them concurrently.
async fn serve_connection(
    stream: MaybeTls,
    peer: SocketAddr,
    answer: Answer,
    limits: &RemotingLimits,
    log: &Logger,
) {
    let (r, w) = tokio::io::split(stream);
    let mut reader = FramedRead::new(r, RemotingCodec::new(limits.max_frame_size));
    let mut writer = FramedWrite::new(w, RemotingCodec::new(limits.max_frame_size));
    // Wake at least every tenth of the frame timeout to check both
    // deadlines: a partial frame is seen at the first wake after its bytes
    // came, so it is closed at most a tenth late (with half, a 30 s
    // timeout closed at up to 45 s). A cancelled `next()` loses nothing
    // (the bytes stay in the read buffer).
    let tick = (limits.frame_read / 10).clamp(Duration::from_millis(1), limits.idle);
    let mut last_frame = Instant::now();
    let mut partial_since: Option<Instant> = None;
    let mut inflight: FuturesUnordered<LocalBoxFuture<'static, Option<RemotingCommand>>> =
        FuturesUnordered::new();
    let (push, mut pushed) = tokio::sync::mpsc::unbounded_channel();
    let conn = RemotingConn { peer, push };
    loop {
        let full = inflight.len() >= MAX_INFLIGHT;
        let read = async {
            if full {
                std::future::pending::<()>().await;
            }
            tokio::time::timeout(tick, reader.next()).await
        };
        let next = tokio::select! {
            Some(cmd) = pushed.recv() => {
                if writer.send(cmd).await.is_err() {
                    return;
                }
                continue;
            }
            Some(done) = inflight.next(), if !inflight.is_empty() => {
                // Every answer ready now goes out in one write (a syscall
                // per answer was a third of the broker's time under load).
                let mut done = Some(done);
                while let Some(d) = done.take() {
                    if let Some(resp) = d {
                        if let Err(e) = writer.feed(resp).await {
                            if !matches!(e, RemotingError::Io(_)) {
                                warn!(log, "cannot encode a remoting answer"; "peer" => %peer, "error" => %e);
                            }
                            return;
                        }
                    }
                    done = inflight.next().now_or_never().flatten();
                }
                if writer.flush().await.is_err() {
                    return;
                }
                continue;
            }
            next = read => next,
        };
        let req = match next {
            Err(_) => {
                let now = Instant::now();
                if reader.read_buffer().is_empty() {
                    partial_since = None;
                    if inflight.is_empty() && now.duration_since(last_frame) >= limits.idle {
                        debug!(log, "idle remoting connection closed"; "peer" => %peer);
                        return;
                    }
                } else if now.duration_since(*partial_since.get_or_insert(now)) >= limits.frame_read
                {
                    let log = log.new(slog::o!("peer" => peer.to_string()));
                    let ms = limits.frame_read.as_millis();
                    let e = format!("a frame was not completed within {ms} ms");
                    let line = "remoting frame not completed in time, closing";
                    super::bad_input::warn_limited(&log, peer.ip(), line, "frame_timeout", &e);
                    return;
                }
                continue;
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                super::bad_input::closed_or_bad(
                    &log.new(slog::o!("peer" => peer.to_string())),
                    peer.ip(),
                    matches!(e, RemotingError::Io(_)),
                    ("bad remoting frame, closing the connection", "bad_frame"),
                    &e,
                );
                if let RemotingError::HeaderOverBudget { request, .. } = &e {
                    // The frame was whole: say why before closing.
                    if !request.is_oneway() && !request.is_response() {
                        let refusal = request.response_to(OVER_BUDGET_CODE, Some(e.to_string()));
                        let _ = writer.send(refusal).await;
                    }
                }
                return;
            }
            Ok(Some(Ok(req))) => req,
        };
        last_frame = Instant::now();
        partial_since = None;
        if req.is_response() {
            continue;
        }
        let oneway = req.is_oneway();
        let fut = answer(req, &conn);
        inflight.push(Box::pin(async move {
            let resp = fut.await;
            (!oneway).then_some(resp)
        }));
    }
    // The peer closed its side: finish what it asked, as far as it still reads.
    while let Some(done) = inflight.next().await {
        if let Some(resp) = done {
            if writer.send(resp).await.is_err() {
                return;
            }
        }
    }
}
