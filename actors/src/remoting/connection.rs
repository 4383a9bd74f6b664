//! The server side of one TCP connection (actix chat-tcp pattern), with
//! back-pressure.
//!
//! Reads frames with [`FrameCodec`], hands each request to the server's
//! [`Service`], and writes the answers back as they complete — answers may
//! overtake each other; the client matches them by request id. Garbage on
//! the socket gets one error frame and closes this connection only (its
//! WARN line is rate limited per peer, [`super::bad_input`]).
//!
//! Why the flow control lives here: a client that sends requests and never
//! reads the answers used to make the broker queue those answers without
//! bound (actix's `io::Writer` buffers whatever it is given). Now:
//!
//! * answers go to a write task of this connection through a queue whose
//!   bytes are counted, per connection and for the whole process
//!   ([`buffered_answer_bytes`]);
//! * the read side stops pulling frames off the socket while this
//!   connection's unsent bytes or requests in flight are above their
//!   high-water marks, or the process-wide budget is spent, and resumes once
//!   they are back under the low-water marks — the kernel's socket buffers
//!   then push back on the sender (TCP flow control), as Netty's
//!   `WRITE_BUFFER_WATER_MARK` + `autoRead` do in RocketMQ;
//! * requests beyond `max_inflight` are still answered `Busy` at once;
//! * a frame that does not arrive whole in one read waits, unread, while
//!   the process-wide budget of incomplete frames is spent
//!   ([`super::frame_budget`]);
//! * a frame that has started must be complete within `frame_read_timeout`
//!   (slowloris), and a connection that neither delivers a frame nor accepts
//!   a byte of output for `idle_timeout` is closed (RocketMQ closes idle
//!   channels after 120 s).
//!
//! Everything of one connection (actor, read stream, write task) runs on
//! the same arbiter thread, so the shared [`Gate`] uses `Cell`s.
//!
//! Messages answered by [`Connection`]: [`Push`] (a server-push frame, from
//! a `ConsumerGroup` or the Transaction check-back), [`AnswerWithTail`] (a
//! pull answer whose records follow the header as mapped slices); its input
//! is the socket's frame stream.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use futures::future::LocalBoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::Stream;
use skylark_codec::{
    Command, ErrorCode, FrameCodec, FrameKind, Handshake, Header, ProtocolError, RawFrame,
    WireError,
};
use slog::{debug, info, Logger};
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};
use tokio_util::codec::FramedRead;

use super::frame_budget::{Admission, BudgetedCodec, BudgetedRead};
use super::{wire, Service};
use crate::tls::MaybeTls;

/// Answer bytes queued for writing, over every connection of the process.
static BUFFERED_ANSWER_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Answer bytes queued (not yet written to a socket) by every connection of
/// this process.
pub fn buffered_answer_bytes() -> usize {
    BUFFERED_ANSWER_BYTES.load(Ordering::Relaxed)
}

/// The flow-control limits of one connection (see the module doc).
#[derive(Debug, Clone, Copy)]
pub struct FlowLimits {
    /// Largest accepted frame.
    pub max_frame_size: usize,
    /// Requests in flight beyond this are answered `Busy`.
    pub max_inflight: usize,
    /// Stop reading at this many requests in flight ...
    pub inflight_high_water: usize,
    /// ... and resume at or below this many.
    pub inflight_low_water: usize,
    /// Stop reading at this many unsent answer bytes ...
    pub write_high_water_bytes: usize,
    /// ... and resume at or below this many.
    pub write_low_water_bytes: usize,
    /// Process-wide budget of unsent answer bytes: every connection stops
    /// reading while it is spent, and resumes below three quarters of it.
    pub buffered_answer_budget: usize,
    /// Process-wide budget of incomplete request frames (their announced
    /// sizes): a frame that straddles reads waits, unread, while it is
    /// spent ([`super::frame_budget`]).
    pub incomplete_frame_budget: usize,
    /// A frame begun must be complete within this.
    pub frame_read_timeout: Duration,
    /// Closed after this long without a frame in or a byte out.
    pub idle_timeout: Duration,
    /// How long a closing connection may take to write its last bytes.
    pub close_linger: Duration,
}

impl Default for FlowLimits {
    fn default() -> Self {
        FlowLimits {
            max_frame_size: skylark_codec::DEFAULT_MAX_FRAME_SIZE,
            max_inflight: 1024,
            inflight_high_water: 256,
            inflight_low_water: 128,
            write_high_water_bytes: 4 << 20,
            write_low_water_bytes: 1 << 20,
            buffered_answer_budget: 256 << 20,
            incomplete_frame_budget: 256 << 20,
            frame_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            close_linger: Duration::from_secs(2),
        }
    }
}

/// One open connection, counted by its listener and by the process (the
/// metrics' [`crate::metrics::CountedConnection`]); the counts drop when
/// the socket is closed (the slot is dropped).
/// The second count is the worker arbiter's, which spreads new connections;
/// the tracker lets the listener's owner close the connection
/// ([`super::ServerHandle::shutdown`]) and know when it is closed.
pub(crate) struct ConnSlot(
    pub(crate) Arc<AtomicUsize>,
    pub(crate) Arc<AtomicUsize>,
    pub(crate) Option<super::tracker::Tracker>,
    // Held, never read: dropping it uncounts the connection.
    #[allow(dead_code)] pub(crate) crate::metrics::CountedConnection,
);

impl ConnSlot {
    /// Resolves when the listener's owner closes its connections (never
    /// without a tracker).
    pub(crate) async fn closed(&self) {
        match &self.2 {
            Some(t) => t.closed.cancelled().await,
            None => std::future::pending().await,
        }
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        self.1.fetch_sub(1, Ordering::Relaxed);
    }
}

/// State shared by a connection's actor, read stream and write task.
struct Gate {
    limits: FlowLimits,
    /// Unsent answer bytes of this connection.
    queued_bytes: Cell<usize>,
    /// Requests handed to the service and not answered yet.
    inflight: Cell<usize>,
    /// Reading is paused (between high and low water).
    paused: Cell<bool>,
    /// The socket failed or the write task ended: stop reading.
    broken: Cell<bool>,
    /// Last frame read or output bytes accepted by the peer.
    last_progress: Cell<Instant>,
    reader: RefCell<Option<Waker>>,
}

impl Gate {
    /// A fresh connection's gate: nothing queued or in flight, reading.
    fn new(limits: FlowLimits) -> Gate {
        Gate {
            limits,
            queued_bytes: Cell::new(0),
            inflight: Cell::new(0),
            paused: Cell::new(false),
            broken: Cell::new(false),
            last_progress: Cell::new(Instant::now()),
            reader: RefCell::new(None),
        }
    }

    fn over_high(&self) -> bool {
        let l = &self.limits;
        self.queued_bytes.get() >= l.write_high_water_bytes
            || self.inflight.get() >= l.inflight_high_water
            || buffered_answer_bytes() >= l.buffered_answer_budget
    }

    fn under_low(&self) -> bool {
        let l = &self.limits;
        self.queued_bytes.get() <= l.write_low_water_bytes
            && self.inflight.get() <= l.inflight_low_water
            && buffered_answer_bytes() <= l.buffered_answer_budget / 4 * 3
    }

    /// Lets the read stream look at the marks again.
    fn wake_reader(&self) {
        if let Some(w) = self.reader.borrow_mut().take() {
            w.wake();
        }
    }
}

/// One answer queued for the socket.
enum Out {
    /// A whole frame.
    Frame(Bytes),
    /// A frame's head, then its tail in slices (a pull answer: the records
    /// as they are in the mapped CommitLog), written with `writev`.
    Chunks(Bytes, Vec<Bytes>),
}

impl Out {
    fn len(&self) -> usize {
        match self {
            Out::Frame(f) => f.len(),
            Out::Chunks(head, tail) => head.len() + tail.iter().map(Bytes::len).sum::<usize>(),
        }
    }
}

/// The write side: a counted queue drained by a write task.
struct Output {
    tx: Option<mpsc::UnboundedSender<Out>>,
    gate: Rc<Gate>,
    closing: Rc<Notify>,
}

impl Output {
    fn write(&self, frame: Bytes) {
        self.send(Out::Frame(frame));
    }

    fn send(&self, out: Out) {
        let Some(tx) = &self.tx else { return };
        if self.gate.broken.get() {
            return;
        }
        let n = out.len();
        if tx.send(out).is_ok() {
            self.gate.queued_bytes.set(self.gate.queued_bytes.get() + n);
            BUFFERED_ANSWER_BYTES.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// No more output: the write task sends what is queued (within the
    /// linger time) and closes the socket.
    fn close(&mut self) {
        self.tx = None;
        self.closing.notify_one();
    }
}

/// Writes queued frames, coalescing small ones into one syscall; a large
/// tail of slices goes out with `writev` behind what is coalesced, without
/// being copied.
async fn write_loop(
    mut rx: mpsc::UnboundedReceiver<Out>,
    mut w: WriteHalf<MaybeTls>,
    gate: Rc<Gate>,
) -> std::io::Result<()> {
    use super::wire::COPY_TAIL;
    const COALESCE: usize = 64 * 1024;
    let mut batch = BytesMut::new();
    // What was taken from the queue when the batch filled up.
    let mut carry: Option<Out> = None;
    loop {
        let first = match carry.take() {
            Some(out) => out,
            None => match rx.recv().await {
                Some(out) => out,
                None => break,
            },
        };
        let mut n = 0;
        let mut next = Some(first);
        batch.clear();
        while let Some(out) = next.take() {
            let more = rx.try_recv().ok();
            n += out.len();
            match out {
                // Alone, or too large to coalesce: written as it is.
                Out::Frame(f) if batch.is_empty() && (more.is_none() || f.len() >= COALESCE) => {
                    w.write_all(&f).await?
                }
                Out::Frame(f) => batch.extend_from_slice(&f),
                Out::Chunks(head, tail) => {
                    batch.extend_from_slice(&head);
                    if tail.iter().map(Bytes::len).sum::<usize>() < COPY_TAIL {
                        for c in &tail {
                            batch.extend_from_slice(c);
                        }
                    } else {
                        write_all_vectored(&mut w, &batch, &tail).await?;
                        batch.clear();
                    }
                }
            }
            if batch.len() < COALESCE {
                next = more;
            } else {
                carry = more;
            }
        }
        if !batch.is_empty() {
            w.write_all(&batch).await?;
        }
        gate.queued_bytes
            .set(gate.queued_bytes.get().saturating_sub(n));
        BUFFERED_ANSWER_BYTES.fetch_sub(n, Ordering::Relaxed);
        gate.last_progress.set(Instant::now());
        if gate.paused.get() {
            gate.wake_reader();
        }
    }
    w.shutdown().await
}

/// Writes `head` then every slice of `tail`, with as few `writev` calls as
/// the socket takes (at most `IOV_MAX` slices each).
async fn write_all_vectored(
    w: &mut WriteHalf<MaybeTls>,
    head: &[u8],
    tail: &[Bytes],
) -> std::io::Result<()> {
    const IOV_MAX: usize = 1024;
    let mut slices: Vec<IoSlice<'_>> = std::iter::once(head)
        .chain(tail.iter().map(|b| &b[..]))
        .filter(|s| !s.is_empty())
        .map(IoSlice::new)
        .collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let upto = rest.len().min(IOV_MAX);
        let written = w.write_vectored(&rest[..upto]).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut rest, written);
    }
    Ok(())
}

/// The write task: runs [`write_loop`] until the queue is closed and
/// drained, the socket fails, a close has lingered too long, or the
/// listener's owner closes its connections; then gives back the bytes it
/// still counted, drops the socket's write half (and `slot`) and stops the
/// read side, whose end stops the actor and drops the read half.
async fn write_task(
    rx: mpsc::UnboundedReceiver<Out>,
    w: WriteHalf<MaybeTls>,
    gate: Rc<Gate>,
    closing: Rc<Notify>,
    slot: Option<ConnSlot>,
) {
    let linger = gate.limits.close_linger;
    let closed = async {
        match &slot {
            Some(s) => s.closed().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = write_loop(rx, w, gate.clone()) => {}
        _ = async { closing.notified().await; tokio::time::sleep(linger).await } => {}
        _ = closed => {}
    }
    BUFFERED_ANSWER_BYTES.fetch_sub(gate.queued_bytes.replace(0), Ordering::Relaxed);
    gate.broken.set(true);
    gate.wake_reader();
    drop(slot);
}

/// What the read side delivers to the actor.
enum Input {
    Frame(RawFrame),
    /// Undecodable input, with the header of the refused frame if known.
    Bad(ProtocolError, Option<Header>),
    /// A frame was begun and not finished within the read timeout.
    ReadTimeout,
    /// Nothing in or out for the idle timeout.
    Idle,
}

/// The framed read half, paused by the [`Gate`] and watching the timeouts.
struct GatedRead {
    inner: FramedRead<BudgetedRead<ReadHalf<MaybeTls>>, BudgetedCodec>,
    gate: Rc<Gate>,
    /// When the frame now in the read buffer began (None: buffer empty).
    frame_began: Option<Instant>,
    /// This connection's share of the incomplete-frame budget.
    admission: Rc<Admission>,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// Held with the read half, so the listener's owner waiting on its
    /// connections ([`super::ServerHandle::shutdown`]) waits for this half
    /// too.
    _tracker: Option<super::tracker::Tracker>,
}

impl GatedRead {
    /// Arms the timer for the earliest of the deadlines that apply.
    fn arm(&mut self, cx: &mut TaskContext<'_>, deadline: Instant) -> Poll<Option<Input>> {
        self.timer
            .as_mut()
            .reset(tokio::time::Instant::from_std(deadline));
        // Registers the waker; a deadline already past is seen next poll.
        if self.timer.as_mut().poll(cx).is_ready() {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }

    /// The incomplete frame waits for the incomplete-frame budget, freed by
    /// other connections: look again now and then. The wait counts against
    /// the frame's read timeout.
    fn wait_for_budget(
        &mut self,
        cx: &mut TaskContext<'_>,
        now: Instant,
        idle_at: Instant,
    ) -> Poll<Option<Input>> {
        let began = *self.frame_began.get_or_insert(now);
        let timeout_at = began + self.gate.limits.frame_read_timeout;
        if now >= timeout_at {
            return Poll::Ready(Some(Input::ReadTimeout));
        }
        let recheck = now + Duration::from_millis(20);
        self.arm(cx, recheck.min(timeout_at).min(idle_at))
    }
}

impl Stream for GatedRead {
    type Item = Input;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Input>> {
        let this = &mut *self;
        let gate = this.gate.clone();
        if gate.broken.get() {
            return Poll::Ready(None);
        }
        {
            let mut r = gate.reader.borrow_mut();
            if !r.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *r = Some(cx.waker().clone());
            }
        }
        let now = Instant::now();
        let mut idle_at = gate.last_progress.get() + gate.limits.idle_timeout;
        if now >= idle_at {
            // Idle: nothing in flight, or answers the peer does not take.
            if gate.inflight.get() == 0 || gate.queued_bytes.get() > 0 {
                return Poll::Ready(Some(Input::Idle));
            }
            idle_at = now + gate.limits.idle_timeout;
        }
        if gate.paused.get() && gate.under_low() {
            gate.paused.set(false);
        } else if !gate.paused.get() && gate.over_high() {
            gate.paused.set(true);
        }
        if gate.paused.get() {
            // The time the peer waits on us does not count against it.
            this.frame_began = None;
            // Our own queue wakes us; the process-wide budget is freed by
            // other connections, so look again now and then.
            let recheck = now + Duration::from_millis(20);
            return this.arm(cx, recheck.min(idle_at));
        }
        if this.admission.waiting() && !this.admission.admit(this.inner.read_buffer()) {
            return this.wait_for_budget(cx, now, idle_at);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(item)) => {
                this.frame_began = None;
                gate.last_progress.set(now);
                Poll::Ready(Some(match item {
                    Ok(f) => Input::Frame(f),
                    // A frame too large is left unread: answer it as the
                    // request it starts (its id and command) if the header
                    // is in, so the client knows which request failed.
                    Err(e @ ProtocolError::FrameTooLarge { .. }) => {
                        let payload = this
                            .inner
                            .read_buffer()
                            .get(skylark_codec::LENGTH_PREFIX_LEN..);
                        let header = payload.and_then(skylark_codec::frame::peek_header);
                        Input::Bad(e, header)
                    }
                    Err(e) => Input::Bad(e, None),
                }))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                if this.inner.read_buffer().is_empty() {
                    this.frame_began = None;
                    return this.arm(cx, idle_at);
                }
                if this.admission.waiting() {
                    return this.wait_for_budget(cx, now, idle_at);
                }
                let began = *this.frame_began.get_or_insert(now);
                let timeout_at = began + gate.limits.frame_read_timeout;
                if now >= timeout_at {
                    return Poll::Ready(Some(Input::ReadTimeout));
                }
                this.arm(cx, timeout_at.min(idle_at))
            }
        }
    }
}

/// What a handler may know about the connection a request came on.
#[derive(Clone)]
pub struct ConnInfo {
    /// The peer's address.
    pub peer: SocketAddr,
    /// This connection's actor, for server pushes and parked answers.
    pub addr: Addr<Connection>,
}

/// The per-connection request handler (a type-erased [`Service`]).
type Handle = Box<
    dyn FnMut(
        Command,
        RawFrame,
        &ConnInfo,
    ) -> futures::future::LocalBoxFuture<'static, Option<Bytes>>,
>;

/// A request in flight, timed from when it was handed to the service (the
/// timing lives in the `FuturesUnordered` node the request needs anyway:
/// no allocation of its own).
struct InFlight {
    fut: LocalBoxFuture<'static, Option<Bytes>>,
    cmd: Command,
    start: Option<Instant>,
}

impl Future for InFlight {
    type Output = (Option<Bytes>, Command, Option<Instant>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let out = std::task::ready!(self.fut.as_mut().poll(cx));
        Poll::Ready((out, self.cmd, self.start))
    }
}

/// Where a connection reports each request's latency ([`Service::observe`]).
type Observe = Box<dyn Fn(Command, Duration)>;

/// Server session for one TCP connection.
pub struct Connection {
    peer: SocketAddr,
    out: Output,
    service: Handle,
    /// ACL checked on every request before the service sees it (None: off).
    acl: Option<crate::acl::Acl>,
    /// The requests being served, driven by [`Driver`]: actix polls every
    /// `ctx.spawn`ed item of a context whenever any of them wakes, so with
    /// 32 requests in flight each answer cost 32 polls; `FuturesUnordered`
    /// polls only the request that woke.
    pending: FuturesUnordered<InFlight>,
    /// Set when the service times its requests.
    observe: Option<Observe>,
    /// The driver's waker while `pending` is empty.
    idle_driver: Option<Waker>,
    log: Logger,
}

impl Connection {
    /// Starts a session actor for `stream` on the current arbiter.
    pub fn start<S: Service>(
        stream: TcpStream,
        service: S,
        limits: FlowLimits,
        log: Logger,
    ) -> std::io::Result<Addr<Connection>> {
        Self::start_with_slot(stream.into(), service, limits, None, log)
    }

    /// As [`Connection::start`]; `slot` (the listener's count of open
    /// connections) is released when the socket is closed.
    pub(crate) fn start_with_slot<S: Service>(
        stream: MaybeTls,
        service: S,
        limits: FlowLimits,
        slot: Option<ConnSlot>,
        log: Logger,
    ) -> std::io::Result<Addr<Connection>> {
        let peer = stream.peer_addr()?;
        let _ = stream.set_nodelay(true);
        let (r, w) = tokio::io::split(stream);
        let gate = Rc::new(Gate::new(limits));
        let (tx, rx) = mpsc::unbounded_channel();
        let closing = Rc::new(Notify::new());
        let acl = service.acl();
        let observe: Option<Observe> = service.times_requests().then(|| {
            let svc = service.clone();
            Box::new(move |cmd, d| svc.observe(cmd, d)) as Observe
        });
        let tracker = slot.as_ref().and_then(|s| s.2.clone());
        actix_rt::spawn(write_task(rx, w, gate.clone(), closing.clone(), slot));
        let admission = Admission::new(limits.incomplete_frame_budget);
        let budgeted = BudgetedRead {
            inner: r,
            admission: admission.clone(),
        };
        let codec = BudgetedCodec {
            codec: FrameCodec::new(limits.max_frame_size),
            admission: admission.clone(),
        };
        let read = GatedRead {
            inner: FramedRead::new(budgeted, codec),
            gate: gate.clone(),
            frame_began: None,
            admission,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            _tracker: tracker,
        };
        Ok(Connection::create(move |ctx| {
            ctx.add_stream(read);
            Connection {
                peer,
                out: Output {
                    tx: Some(tx),
                    gate,
                    closing,
                },
                service: Box::new(move |cmd, f, c| service.call(cmd, f, c)),
                acl,
                pending: FuturesUnordered::new(),
                observe,
                idle_driver: None,
                log: log.new(slog::o!("peer" => peer.to_string())),
            }
        }))
    }

    fn refuse(&mut self, header: &Header, code: ErrorCode, msg: String) {
        if header.kind != FrameKind::Oneway {
            self.out
                .write(wire::error_response(header, WireError::new(code, msg)));
        }
    }

    /// Says why in one error frame (request id 0), then closes.
    fn close_with(&mut self, code: ErrorCode, msg: String, ctx: &mut Context<Self>) {
        self.close_with_header(None, code, msg, ctx)
    }

    /// [`Self::close_with`] answering `header` (request id 0 without one).
    fn close_with_header(
        &mut self,
        header: Option<Header>,
        code: ErrorCode,
        msg: String,
        ctx: &mut Context<Self>,
    ) {
        let h = header.unwrap_or(Header {
            request_id: 0,
            kind: FrameKind::Response,
            command: 0,
        });
        self.out
            .write(wire::error_response(&h, WireError::new(code, msg)));
        ctx.stop();
    }

    fn on_frame(&mut self, frame: RawFrame, ctx: &mut Context<Self>) {
        match frame.header.kind {
            FrameKind::Request | FrameKind::Oneway => {}
            // Clients never send answers or pushes to a server.
            _ => {
                let h = frame.header;
                self.refuse(&h, ErrorCode::BadRequest, "unexpected frame kind".into());
                return;
            }
        }
        let Ok(cmd) = Command::try_from(frame.header.command) else {
            let h = frame.header;
            self.refuse(
                &h,
                ErrorCode::UnknownCommand,
                format!("unknown command {}", h.command),
            );
            return;
        };
        if cmd == Command::Handshake {
            // Every server answers the handshake the same way, at once.
            let answer = match frame.decode_body::<Handshake>() {
                Ok(h) => crate::handshake(&h),
                Err(e) => Err(WireError::new(
                    ErrorCode::BadRequest,
                    format!("bad handshake: {e}"),
                )),
            };
            if frame.header.kind != FrameKind::Oneway {
                let out = match answer {
                    Ok(r) => wire::response(&frame.header, &r),
                    Err(e) => wire::error_response(&frame.header, e),
                };
                self.out.write(out);
            }
            return;
        }
        if let Some(acl) = &self.acl {
            if let Err(e) = acl.check(cmd, &frame, self.peer.ip()) {
                debug!(self.log, "request refused by ACL"; "command" => ?cmd, "error" => &e.message);
                let h = frame.header;
                self.refuse(&h, e.code, e.message);
                return;
            }
        }
        let gate = self.out.gate.clone();
        let max = gate.limits.max_inflight;
        if gate.inflight.get() >= max {
            crate::metrics::note_busy(crate::metrics::BusyReason::Inflight);
            let h = frame.header;
            self.refuse(
                &h,
                ErrorCode::Busy,
                format!("more than {max} requests in flight"),
            );
            return;
        }
        gate.inflight.set(gate.inflight.get() + 1);
        let info = ConnInfo {
            peer: self.peer,
            addr: ctx.address(),
        };
        let start = (self.observe.is_some() && crate::metrics::recording()).then(Instant::now);
        let fut = (self.service)(cmd, frame, &info);
        self.pending.push(InFlight { fut, cmd, start });
        if let Some(w) = self.idle_driver.take() {
            w.wake();
        }
    }
}

/// Drives the connection's requests in flight and queues each answer as
/// it completes. Lives as long as the connection.
struct Driver;

impl ActorFuture<Connection> for Driver {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut Connection,
        _ctx: &mut Context<Connection>,
        task: &mut TaskContext<'_>,
    ) -> Poll<()> {
        loop {
            match act.pending.poll_next_unpin(task) {
                Poll::Ready(Some((out, cmd, start))) => {
                    if let (Some(observe), Some(start)) = (&act.observe, start) {
                        observe(cmd, start.elapsed());
                    }
                    let gate = act.out.gate.clone();
                    gate.inflight.set(gate.inflight.get().saturating_sub(1));
                    if let Some(frame) = out {
                        act.out.write(frame);
                    }
                    if gate.paused.get() {
                        gate.wake_reader();
                    }
                }
                Poll::Ready(None) => {
                    // Nothing in flight: wait for the next request.
                    act.idle_driver = Some(task.waker().clone());
                    return Poll::Pending;
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Actor for Connection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        debug!(self.log, "connection opened");
        ctx.spawn(Driver);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.out.close();
        debug!(self.log, "connection closed");
    }
}

/// An already-encoded frame to write to this connection (server push).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Push(pub Bytes);

impl Handler<Push> for Connection {
    type Result = ();
    fn handle(&mut self, msg: Push, _ctx: &mut Self::Context) {
        self.out.write(msg.0);
    }
}

/// An answer whose frame ends with `tail` (see
/// [`skylark_codec::encode_frame_with_tail`]): the head is queued, then the
/// slices as they are, so a pull answer's records go from the mapped
/// CommitLog to the socket with one copy, the kernel's.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AnswerWithTail {
    pub head: Bytes,
    pub tail: Vec<Bytes>,
}

impl Handler<AnswerWithTail> for Connection {
    type Result = ();
    fn handle(&mut self, msg: AnswerWithTail, _ctx: &mut Self::Context) {
        self.out.send(Out::Chunks(msg.head, msg.tail));
    }
}

impl StreamHandler<Input> for Connection {
    fn handle(&mut self, item: Input, ctx: &mut Self::Context) {
        match item {
            Input::Frame(f) => self.on_frame(f, ctx),
            Input::Bad(e, header) => {
                // The byte stream is out of step: say why once, then close
                // (the log line is rate limited per peer and reason).
                let reason = match &e {
                    ProtocolError::FrameTooLarge { .. } => "frame_too_large",
                    ProtocolError::Malformed(_) => "malformed",
                    _ => "bad_input",
                };
                super::bad_input::closed_or_bad(
                    &self.log,
                    self.peer.ip(),
                    matches!(e, ProtocolError::Io(_)),
                    ("closing connection on bad input", reason),
                    &e,
                );
                let h = header
                    .filter(|h| h.kind == FrameKind::Request)
                    .map(|h| h.response_to());
                self.close_with_header(h, e.code(), e.to_string(), ctx);
            }
            Input::ReadTimeout => {
                let ms = self.out.gate.limits.frame_read_timeout.as_millis();
                info!(self.log, "closing connection: frame not completed in time"; "timeout_ms" => ms);
                let msg = format!("a frame was not completed within {ms} ms");
                self.close_with(ErrorCode::BadRequest, msg, ctx);
            }
            Input::Idle => {
                let s = self.out.gate.limits.idle_timeout.as_secs();
                debug!(self.log, "closing idle connection"; "idle_secs" => s);
                ctx.stop();
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        // Peer closed (or the socket failed): stop now, so whoever watches
        // this connection (consumer groups, parked pulls) learns at once;
        // what is already queued is still written within the linger time.
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(limits: FlowLimits) -> Gate {
        Gate::new(limits)
    }

    #[test]
    fn water_marks_have_hysteresis() {
        let g = gate(FlowLimits {
            write_high_water_bytes: 100,
            write_low_water_bytes: 10,
            inflight_high_water: 4,
            inflight_low_water: 2,
            buffered_answer_budget: usize::MAX,
            ..FlowLimits::default()
        });
        assert!(!g.over_high() && g.under_low());
        g.queued_bytes.set(50);
        assert!(!g.over_high() && !g.under_low());
        g.queued_bytes.set(100);
        assert!(g.over_high());
        g.queued_bytes.set(10);
        assert!(g.under_low());
        g.inflight.set(4);
        assert!(g.over_high());
        g.inflight.set(3);
        assert!(!g.over_high() && !g.under_low());
        g.inflight.set(2);
        assert!(g.under_low());
    }
}
