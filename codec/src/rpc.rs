//! The client side of one TCP connection, as an actor (feature `rpc`).
//!
//! [`RpcClient`] is a cheap, `Send` handle: `call::<R>(&req)` encodes the
//! request, hands it to the [`ClientConn`] actor that owns the socket, and
//! awaits the answer with the same request id. Many calls may be in flight
//! at once on one connection (pipelining). Server pushes go to an optional
//! recipient. When the socket closes every pending call fails at once.
//!
//! Messages answered by [`ClientConn`] (all private, sent by
//! [`RpcClient`]): `Outgoing` (write a request, remember its reply),
//! `Cancel` (forget a call that timed out), `SetPush` (where server pushes
//! go), `Close`; its input is the socket's frame stream.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::{FrameCodec, FrameKind, Header, ProtocolError, RawFrame, Rpc};
use actix::dev::SendError;
use actix::io::{WriteHandler, Writer};
use actix::prelude::*;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::WriteHalf;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_util::codec::FramedRead;

use crate::wire;

/// A frame the server pushed without being asked.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct PushFrame(pub RawFrame);

/// Actor owning one client socket and its pending calls.
pub struct ClientConn {
    writer: Writer<WriteHalf<crate::tls::MaybeTls>, io::Error>,
    pending: HashMap<u64, oneshot::Sender<RawFrame>>,
    push: Option<Recipient<PushFrame>>,
    /// Why the server closed, for later calls.
    last_word: Arc<std::sync::Mutex<Option<LastWord>>>,
}

/// What the server said before it closed the connection.
#[derive(Clone)]
enum LastWord {
    /// An error frame (bad input, a timeout, a connection cap).
    Frame(RawFrame),
    /// A refusal of the TLS handshake ([`crate::tls::handshake_refusal`]).
    TlsRefusal(String),
}

impl Actor for ClientConn {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
    }
}

impl WriteHandler<io::Error> for ClientConn {}

impl ClientConn {
    fn remember(&self, word: LastWord) {
        if let Ok(mut w) = self.last_word.lock() {
            *w = Some(word);
        }
    }
}

/// Write a request; remember `reply` to answer when the response arrives.
#[derive(Message)]
#[rtype(result = "()")]
struct Outgoing {
    id: u64,
    frame: Bytes,
    reply: Option<oneshot::Sender<RawFrame>>,
}

impl Handler<Outgoing> for ClientConn {
    type Result = ();
    fn handle(&mut self, msg: Outgoing, _ctx: &mut Self::Context) {
        if let Some(tx) = msg.reply {
            self.pending.insert(msg.id, tx);
        }
        self.writer.write(&msg.frame);
    }
}

/// Forget a call that timed out.
#[derive(Message)]
#[rtype(result = "()")]
struct Cancel(u64);

impl Handler<Cancel> for ClientConn {
    type Result = ();
    fn handle(&mut self, msg: Cancel, _ctx: &mut Self::Context) {
        self.pending.remove(&msg.0);
    }
}

/// Route server pushes to `0`.
#[derive(Message)]
#[rtype(result = "()")]
struct SetPush(Recipient<PushFrame>);

impl Handler<SetPush> for ClientConn {
    type Result = ();
    fn handle(&mut self, msg: SetPush, _ctx: &mut Self::Context) {
        self.push = Some(msg.0);
    }
}

impl StreamHandler<Result<RawFrame, ProtocolError>> for ClientConn {
    fn handle(&mut self, item: Result<RawFrame, ProtocolError>, ctx: &mut Self::Context) {
        match item {
            Ok(frame) => match frame.header.kind {
                FrameKind::Response => {
                    if let Some(tx) = self.pending.remove(&frame.header.request_id) {
                        let _ = tx.send(frame);
                    } else if frame.header.request_id == 0 {
                        // The server's last word before it closes (bad
                        // input, a timeout, a connection cap): every call
                        // waiting here gets that error, not a bare close.
                        for (_, tx) in self.pending.drain() {
                            let _ = tx.send(frame.clone());
                        }
                        self.remember(LastWord::Frame(frame));
                        ctx.stop();
                    }
                }
                FrameKind::Push | FrameKind::Oneway | FrameKind::Request => {
                    if let Some(p) = &self.push {
                        p.do_send(PushFrame(frame));
                    }
                }
            },
            Err(e) => {
                // Once per connection, as it ends: a TLS alert (a client
                // certificate refused) is said as such, not as a close.
                if let ProtocolError::Io(io) = &e {
                    if let Some(why) = crate::tls::handshake_refusal(io) {
                        self.remember(LastWord::TlsRefusal(why));
                    }
                }
                ctx.stop()
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// A handle on one connection; clone it freely. The connection closes
/// when the last clone is dropped (or at [`RpcClient::close`]): a call in
/// flight holds its handle, so it finishes first.
#[derive(Clone)]
pub struct RpcClient {
    conn: Addr<ClientConn>,
    /// Shared by every clone: the last one dropped closes the socket, which
    /// the connection actor would otherwise keep open as long as the peer
    /// does (its read stream keeps it alive).
    _closer: Arc<Closer>,
    next_id: Arc<AtomicU64>,
    remote: Arc<str>,
    timeout: Duration,
    last_word: Arc<std::sync::Mutex<Option<LastWord>>>,
    /// Signs every request (ACL) when set.
    creds: Option<Arc<crate::Credentials>>,
}

impl std::fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RpcClient({})", self.remote)
    }
}

fn closed(remote: &str) -> ProtocolError {
    ProtocolError::Io(io::Error::new(
        io::ErrorKind::ConnectionAborted,
        format!("connection to {remote} closed"),
    ))
}

impl RpcClient {
    /// Connects to `addr` (`host:port`). Must run inside an actix System;
    /// the connection actor lives on the current arbiter.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<RpcClient, ProtocolError> {
        Self::connect_with(addr, timeout, crate::DEFAULT_MAX_FRAME_SIZE).await
    }

    /// Like [`connect`](Self::connect) with an explicit frame size limit.
    pub async fn connect_with(
        addr: &str,
        timeout: Duration,
        max_frame: usize,
    ) -> Result<RpcClient, ProtocolError> {
        Self::connect_tls(addr, timeout, max_frame, None).await
    }

    /// Like [`connect_with`](Self::connect_with), over TLS when `tls` is
    /// given (the server's certificate is verified against its CA).
    pub async fn connect_tls(
        addr: &str,
        timeout: Duration,
        max_frame: usize,
        tls: Option<&crate::tls::ClientTls>,
    ) -> Result<RpcClient, ProtocolError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                ProtocolError::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connect to {addr} timed out"),
                ))
            })?
            .map_err(|e| {
                ProtocolError::Io(io::Error::new(e.kind(), format!("connect to {addr}: {e}")))
            })?;
        let _ = stream.set_nodelay(true);
        let stream = match tls {
            None => crate::tls::MaybeTls::Plain(stream),
            Some(t) => t.connect(addr, stream).await.map_err(|e| {
                ProtocolError::Io(io::Error::new(e.kind(), format!("TLS to {addr}: {e}")))
            })?,
        };
        let (r, w) = tokio::io::split(stream);
        let last_word = Arc::new(std::sync::Mutex::new(None));
        let lw = last_word.clone();
        let conn = ClientConn::create(move |ctx| {
            ctx.add_stream(FramedRead::new(r, FrameCodec::new(max_frame)));
            ClientConn {
                writer: Writer::new(w, ctx),
                pending: HashMap::new(),
                push: None,
                last_word: lw,
            }
        });
        Ok(RpcClient {
            _closer: Arc::new(Closer(conn.clone())),
            conn,
            next_id: Arc::new(AtomicU64::new(1)),
            remote: Arc::from(addr),
            timeout,
            last_word,
            creds: None,
        })
    }

    /// Signs every later request of this handle with `creds` (ACL); `None`
    /// sends them unsigned.
    pub fn with_credentials(mut self, creds: Option<Arc<crate::Credentials>>) -> Self {
        self.creds = creds;
        self
    }

    /// The address this client talks to.
    pub fn remote(&self) -> &str {
        &self.remote
    }

    /// Whether the socket is still open.
    pub fn is_connected(&self) -> bool {
        self.conn.connected()
    }

    /// Sends server pushes to `recipient`.
    pub fn set_push_handler(&self, recipient: Recipient<PushFrame>) {
        self.conn.do_send(SetPush(recipient));
    }

    /// Calls `R` with the default timeout.
    pub async fn call<R>(&self, req: &R) -> Result<R::Response, ProtocolError>
    where
        R: Rpc + Serialize,
        R::Response: DeserializeOwned,
    {
        self.call_timeout(req, self.timeout).await
    }

    /// Calls `R`, failing with `TimedOut` after `timeout`.
    pub async fn call_timeout<R>(
        &self,
        req: &R,
        timeout: Duration,
    ) -> Result<R::Response, ProtocolError>
    where
        R: Rpc + Serialize,
        R::Response: DeserializeOwned,
    {
        let frame = self.call_raw(R::COMMAND as u16, req, timeout).await?;
        frame.decode_response::<R::Response>()
    }

    /// Sends `req` and returns the raw answer frame.
    pub async fn call_raw<T: Serialize>(
        &self,
        command: u16,
        req: &T,
        timeout: Duration,
    ) -> Result<RawFrame, ProtocolError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = wire::encode_request(
            Header {
                request_id: id,
                kind: FrameKind::Request,
                command,
            },
            req,
            self.creds.as_deref(),
        );
        let (tx, rx) = oneshot::channel();
        let out = Outgoing {
            id,
            frame,
            reply: Some(tx),
        };
        // `try_send` still respects the mailbox bound; only a full mailbox
        // waits. (`send` always waited for the handler to run: one more
        // scheduling round trip per call.)
        match self.conn.try_send(out) {
            Ok(()) => {}
            Err(SendError::Full(out)) => self.conn.send(out).await.map_err(|_| self.closed())?,
            Err(SendError::Closed(_)) => return Err(self.closed()),
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(frame)) => Ok(frame),
            Ok(Err(_)) => Err(self.closed()),
            Err(_) => {
                self.conn.do_send(Cancel(id));
                Err(ProtocolError::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer from {} within {:?}", self.remote, timeout),
                )))
            }
        }
    }

    /// Sends `req` without waiting for (or getting) an answer.
    pub async fn oneway<R: Rpc + Serialize>(&self, req: &R) -> Result<(), ProtocolError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = wire::encode_request(
            Header {
                request_id: id,
                kind: FrameKind::Oneway,
                command: R::COMMAND as u16,
            },
            req,
            self.creds.as_deref(),
        );
        self.conn
            .send(Outgoing {
                id,
                frame,
                reply: None,
            })
            .await
            .map_err(|_| closed(&self.remote))
    }

    /// Why calls fail on a closed connection: the server's last error
    /// frame if it sent one (e.g. "too many connections"), else "closed".
    fn closed(&self) -> ProtocolError {
        let last = self.last_word.lock().ok().and_then(|w| w.clone());
        match last {
            Some(LastWord::Frame(f)) => match f.decode_response::<()>() {
                Err(e @ ProtocolError::Remote(_)) => e,
                _ => closed(&self.remote),
            },
            Some(LastWord::TlsRefusal(why)) => ProtocolError::Io(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{}: {why}", self.remote),
            )),
            None => closed(&self.remote),
        }
    }

    /// Closes the connection.
    pub fn close(&self) {
        self.conn.do_send(Close);
    }
}

/// Close the socket.
#[derive(Message)]
#[rtype(result = "()")]
struct Close;

/// Closes the connection when dropped (with the last [`RpcClient`]).
struct Closer(Addr<ClientConn>);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.do_send(Close);
    }
}

impl Handler<Close> for ClientConn {
    type Result = ();
    fn handle(&mut self, _: Close, ctx: &mut Self::Context) {
        self.writer.close();
        ctx.stop();
    }
}
