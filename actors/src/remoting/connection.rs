//! The server side of one TCP connection (actix chat-tcp pattern).
//!
//! Reads frames with [`FrameCodec`], hands each request to the server's
//! [`Service`], and writes the answers back as they complete — answers may
//! overtake each other; the client matches them by request id. Garbage on
//! the socket gets one error frame and closes this connection only.
//! Requests beyond `max_inflight` are answered `Busy` at once, so a client
//! that never reads cannot make the server buffer without bound.
//!
//! The requests in flight live in one `FuturesUnordered` driven by a single
//! actor future ([`Driver`]), not one `ctx.spawn` each: actix polls every
//! spawned item of a context whenever any of them wakes, so with 32
//! requests in flight each answer cost 32 polls; `FuturesUnordered` polls
//! only the request that woke.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Poll, Waker};

use actix::io::{WriteHandler, Writer};
use actix::prelude::*;
use bytes::Bytes;
use futures::future::LocalBoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use skylark_codec::{
    Command, ErrorCode, FrameCodec, FrameKind, Handshake, Header, ProtocolError, RawFrame,
    WireError,
};
use slog::{debug, warn, Logger};
use tokio::io::WriteHalf;
use tokio::net::TcpStream;
use tokio_util::codec::FramedRead;

use super::{wire, Service};

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

/// Server session for one TCP connection.
pub struct Connection {
    peer: SocketAddr,
    writer: Writer<WriteHalf<TcpStream>, std::io::Error>,
    service: Handle,
    /// The requests being served; their answers are written as they finish.
    pending: FuturesUnordered<LocalBoxFuture<'static, Option<Bytes>>>,
    /// The [`Driver`]'s waker while `pending` is empty.
    idle_driver: Option<Waker>,
    /// No more requests will come: the driver ends once `pending` drains.
    closing: bool,
    inflight: usize,
    max_inflight: usize,
    log: Logger,
}

impl Connection {
    /// Starts a session actor for `stream` on the current arbiter.
    pub fn start<S: Service>(
        stream: TcpStream,
        service: S,
        max_frame_size: usize,
        max_inflight: usize,
        log: Logger,
    ) -> std::io::Result<Addr<Connection>> {
        let peer = stream.peer_addr()?;
        let _ = stream.set_nodelay(true);
        let (r, w) = tokio::io::split(stream);
        Ok(Connection::create(move |ctx| {
            ctx.add_stream(FramedRead::new(r, FrameCodec::new(max_frame_size)));
            Connection {
                peer,
                writer: Writer::new(w, ctx),
                service: Box::new(move |cmd, f, c| service.call(cmd, f, c)),
                pending: FuturesUnordered::new(),
                idle_driver: None,
                closing: false,
                inflight: 0,
                max_inflight,
                log: log.new(slog::o!("peer" => peer.to_string())),
            }
        }))
    }

    /// No more requests: let the driver end once the last answer is out.
    fn close_requests(&mut self) {
        self.closing = true;
        if let Some(w) = self.idle_driver.take() {
            w.wake();
        }
    }

    fn refuse(&mut self, header: &Header, code: ErrorCode, msg: String) {
        if header.kind != FrameKind::Oneway {
            let frame = wire::error_response(header, WireError::new(code, msg));
            self.writer.write(&frame);
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
        debug!(self.log, "connection closed");
    }
}

impl WriteHandler<std::io::Error> for Connection {}

/// Drives the connection's requests in flight and writes each answer as
/// it completes. Lives as long as the connection.
struct Driver;

impl ActorFuture<Connection> for Driver {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut Connection,
        _ctx: &mut Context<Connection>,
        task: &mut std::task::Context<'_>,
    ) -> Poll<()> {
        loop {
            match act.pending.poll_next_unpin(task) {
                Poll::Ready(Some(out)) => {
                    act.inflight = act.inflight.saturating_sub(1);
                    if let Some(frame) = out {
                        act.writer.write(&frame);
                    }
                }
                Poll::Ready(None) if act.closing => return Poll::Ready(()),
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

/// An already-encoded frame to write to this connection (server push).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Push(pub Bytes);

impl Handler<Push> for Connection {
    type Result = ();
    fn handle(&mut self, msg: Push, _ctx: &mut Self::Context) {
        self.writer.write(&msg.0);
    }
}

impl StreamHandler<Result<RawFrame, ProtocolError>> for Connection {
    fn handle(&mut self, item: Result<RawFrame, ProtocolError>, ctx: &mut Self::Context) {
        let frame = match item {
            Ok(f) => f,
            Err(e) => {
                // The byte stream is out of step: say why once, then close.
                warn!(self.log, "closing connection on bad input"; "error" => %e);
                let h = Header {
                    request_id: 0,
                    kind: FrameKind::Response,
                    command: 0,
                };
                let frame = wire::error_response(&h, WireError::new(e.code(), e.to_string()));
                self.writer.write(&frame);
                self.writer.close();
                self.close_requests();
                return;
            }
        };
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
                self.writer.write(&out);
            }
            return;
        }
        if self.inflight >= self.max_inflight {
            let h = frame.header;
            self.refuse(
                &h,
                ErrorCode::Busy,
                format!("more than {} requests in flight", self.max_inflight),
            );
            return;
        }
        self.inflight += 1;
        let info = ConnInfo {
            peer: self.peer,
            addr: ctx.address(),
        };
        let fut = (self.service)(cmd, frame, &info);
        self.pending.push(fut);
        if let Some(w) = self.idle_driver.take() {
            w.wake();
        }
    }

    fn finished(&mut self, _ctx: &mut Self::Context) {
        // Peer closed its side: answer what is in flight, flush, then stop.
        self.writer.close();
        self.close_requests();
    }
}
