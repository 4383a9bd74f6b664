//! TLS on the client and NameServer ports (rustls through tokio-rustls).
//!
//! A server with `tls_mode = enforcing` accepts TLS only: a plain-TCP
//! client gets one plain error frame saying so and is closed. `permissive`
//! (for migrations) accepts both, telling them apart by the first byte (a
//! TLS ClientHello starts with `0x16`, a Skylark frame with a length prefix
//! whose first byte is `0x00` for any frame under 16 MiB). `disabled` (the
//! default) is plain TCP, byte for byte what it was.
//!
//! Clients verify the server's certificate against a CA file
//! ([`ClientTls::from_ca_file`]); the name checked is the host part of the
//! address dialled (an IP address or a DNS name). The client side and
//! [`MaybeTls`] are the protocol crate's (`skylark_codec::tls`, re-exported
//! here).
//!
//! Client certificates (mutual TLS) are optional: a server given a client
//! CA (`tls_client_ca_file`) asks every TLS client for a certificate and
//! verifies it with rustls' `WebPkiClientVerifier`. In `enforcing` mode a
//! client without a certificate chaining to that CA fails the handshake;
//! in `permissive` mode (which takes plain clients anyway) a TLS client may
//! come without one, but a certificate it does present must verify. A
//! client presents one with [`ClientTls::with_client_cert`].
//!
//! Every refusal (a plain client on an enforcing port, a handshake that
//! fails: no client certificate, an untrusted one, a timeout, ...) is
//! logged at WARN by the refusing server with the peer and the reason
//! ([`TlsRefusal`]), at most one line per (peer address, reason) every 10 s
//! (the next says how many were left out). A client refused for its
//! certificate is told so by the alert rustls sends, which the client side
//! (`skylark_codec::tls::handshake_refusal`) puts in words.
//!
//! [`MaybeTls`] is the stream type connections run on: an enum rather than
//! a boxed trait object, so plain TCP costs one `match` per read or write.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use slog::{warn, Logger};

use serde::Deserialize;
use skylark_codec::tls::{provider, read_certs, read_key, read_roots, HANDSHAKE_TIMEOUT};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use crate::acl::refusals::LineBudget;

pub use skylark_codec::tls::{ClientTls, MaybeTls};

/// How a port treats TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum TlsMode {
    /// Plain TCP only.
    #[default]
    Disabled,
    /// TLS and plain TCP both (during a migration).
    Permissive,
    /// TLS only.
    Enforcing,
}

crate::config::words::setting_words!(
    TlsMode,
    "tls_mode",
    [
        ("disabled", TlsMode::Disabled),
        ("permissive", TlsMode::Permissive),
        ("enforcing", TlsMode::Enforcing),
    ]
);

/// The client side of a server's own connections (a broker's to its
/// NameServers and master, a NameServer's dashboard's to brokers): servers
/// verified against the CA file `ca`, presenting the certificate and key
/// `client` (`tls_client_cert_file`, `tls_client_key_file`) when a server
/// asks for one, else the server's own identity `server` (`tls_cert_file`,
/// `tls_key_file`), else none. `None` without a CA: plain TCP.
pub fn outgoing(
    ca: Option<&str>,
    client: [&Option<String>; 2],
    server: [&Option<String>; 2],
) -> Result<Option<ClientTls>, String> {
    let Some(ca) = ca else { return Ok(None) };
    let tls = ClientTls::from_ca_file(ca)?;
    let identity = match (client, server) {
        ([Some(c), Some(k)], _) | (_, [Some(c), Some(k)]) => Some((c, k)),
        _ => None,
    };
    match identity {
        Some((cert, key)) => tls.with_client_cert(cert, key).map(Some),
        None => Ok(Some(tls)),
    }
}

/// First byte of a TLS record carrying a handshake (the ClientHello).
const TLS_HANDSHAKE: u8 = 0x16;

/// Why a server refused a connection at the TLS layer (the `reason` of
/// its WARN line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsRefusal {
    /// Plain TCP on a TLS-only (`enforcing`) port.
    PlainTcp,
    /// A client CA is set and the client presented no certificate.
    NoClientCertificate,
    /// The client's certificate does not verify against the client CA
    /// (another CA, expired, not for client authentication, ...).
    UntrustedClientCertificate,
    /// The client ended the handshake with an alert (it does not trust
    /// this server's certificate, or speaks no common TLS version).
    ClientAborted,
    /// No ClientHello, or no finished handshake, in time.
    Timeout,
    /// Any other handshake failure.
    HandshakeFailed,
}

impl TlsRefusal {
    /// The log's `reason` value.
    pub fn label(self) -> &'static str {
        match self {
            TlsRefusal::PlainTcp => "plain_tcp",
            TlsRefusal::NoClientCertificate => "no_client_certificate",
            TlsRefusal::UntrustedClientCertificate => "untrusted_client_certificate",
            TlsRefusal::ClientAborted => "client_aborted",
            TlsRefusal::Timeout => "timeout",
            TlsRefusal::HandshakeFailed => "handshake_failed",
        }
    }

    /// The reason of a failed server handshake.
    fn of_handshake(e: &io::Error) -> TlsRefusal {
        use tokio_rustls::rustls::Error as E;
        if e.kind() == io::ErrorKind::TimedOut {
            return TlsRefusal::Timeout;
        }
        match e.get_ref().and_then(|i| i.downcast_ref::<E>()) {
            Some(E::NoCertificatesPresented) => TlsRefusal::NoClientCertificate,
            Some(E::InvalidCertificate(_)) => TlsRefusal::UntrustedClientCertificate,
            Some(E::AlertReceived(_)) => TlsRefusal::ClientAborted,
            _ => TlsRefusal::HandshakeFailed,
        }
    }
}

/// The server side: mode and certificate.
pub struct ServerTls {
    mode: TlsMode,
    acceptor: TlsAcceptor,
    /// Rate limit of the refusals' WARN lines (one per peer and reason
    /// every [`crate::acl::refusals::LOG_INTERVAL`]).
    refusals: LineBudget<TlsRefusal>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerTls({:?})", self.mode)
    }
}

impl ServerTls {
    /// TLS for a server port, or `None` when `mode` is disabled. The
    /// certificate chain and private key are PEM files; with `client_ca`
    /// (PEM) TLS clients must present a certificate it signed (see the
    /// module doc for `permissive`).
    pub fn load(
        mode: TlsMode,
        cert_file: Option<&str>,
        key_file: Option<&str>,
        client_ca: Option<&str>,
    ) -> Result<Option<Arc<ServerTls>>, String> {
        if mode == TlsMode::Disabled {
            if client_ca.is_some() {
                return Err("tls_client_ca_file is set but tls_mode = disabled".into());
            }
            return Ok(None);
        }
        let (Some(cert), Some(key)) = (cert_file, key_file) else {
            return Err(format!(
                "tls_mode = {mode:?} needs tls_cert_file and tls_key_file"
            ));
        };
        let certs = read_certs(cert)?;
        let key = read_key(key)?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let roots = Arc::new(read_roots(ca)?);
                let v = WebPkiClientVerifier::builder_with_provider(roots, provider());
                let v = if mode == TlsMode::Permissive {
                    v.allow_unauthenticated()
                } else {
                    v
                };
                let verifier = v.build().map_err(|e| format!("client CA {ca}: {e}"))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder
            .with_single_cert(certs, key)
            .map_err(|e| format!("certificate and key do not make a TLS identity: {e}"))?;
        Ok(Some(Arc::new(ServerTls {
            mode,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            refusals: LineBudget::default(),
        })))
    }

    /// Turns an accepted connection into the stream to serve, or says why
    /// it is refused (a plain client on an enforcing port has been told).
    /// A refusal is logged at WARN (rate limited) with the peer and reason.
    pub async fn accept(&self, tcp: TcpStream, log: &Logger) -> io::Result<MaybeTls> {
        self.accept_then(tcp, Some(plain_refusal_frame()), log)
            .await
    }

    /// [`ServerTls::accept`] for a port of another protocol (RocketMQ
    /// remoting): a plain client on an enforcing port is closed without a
    /// Skylark error frame, which it could not read.
    pub async fn accept_foreign(&self, tcp: TcpStream, log: &Logger) -> io::Result<MaybeTls> {
        self.accept_then(tcp, None, log).await
    }

    /// [`ServerTls::accept`] telling a plain client on an enforcing port
    /// `answer` (bytes of the port's own protocol: the HA port's refusal).
    pub async fn accept_answering(
        &self,
        tcp: TcpStream,
        answer: Bytes,
        log: &Logger,
    ) -> io::Result<MaybeTls> {
        self.accept_then(tcp, Some(answer), log).await
    }

    async fn accept_then(
        &self,
        tcp: TcpStream,
        plain_answer: Option<Bytes>,
        log: &Logger,
    ) -> io::Result<MaybeTls> {
        let peer = tcp.peer_addr().ok();
        let mut first = [0u8; 1];
        let peeked = tokio::time::timeout(HANDSHAKE_TIMEOUT, tcp.peek(&mut first)).await;
        let n = match peeked {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                let e = io::Error::new(io::ErrorKind::TimedOut, "client sent nothing");
                return Err(self.refused(log, peer, TlsRefusal::Timeout, e));
            }
        };
        if n == 1 && first[0] == TLS_HANDSHAKE {
            let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(tcp))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))
                .and_then(|r| r);
            return match tls {
                Ok(tls) => Ok(MaybeTls::Server(Box::new(tls))),
                Err(e) => Err(self.refused(log, peer, TlsRefusal::of_handshake(&e), e)),
            };
        }
        if self.mode == TlsMode::Permissive {
            return Ok(MaybeTls::Plain(tcp));
        }
        if let Some(answer) = plain_answer {
            refuse_plain(tcp, answer).await;
        }
        let e = io::Error::new(
            io::ErrorKind::PermissionDenied,
            "plain TCP on a TLS-only port",
        );
        if n == 0 {
            // Closed without a byte (a port probe): nothing to warn about.
            return Err(e);
        }
        Err(self.refused(log, peer, TlsRefusal::PlainTcp, e))
    }

    /// Logs a refusal at WARN unless one for this peer and reason went out
    /// within the interval; gives `e` back.
    fn refused(
        &self,
        log: &Logger,
        peer: Option<SocketAddr>,
        reason: TlsRefusal,
        e: io::Error,
    ) -> io::Error {
        let ip = peer.map(|p| p.ip());
        if let Some(suppressed) = self.refusals.take_turn(ip, reason, Instant::now()) {
            let peer = peer.map_or_else(|| "unknown".to_string(), |p| p.to_string());
            warn!(log, "connection refused by TLS";
                "peer" => peer, "reason" => reason.label(), "error" => %e,
                "suppressed" => suppressed);
        }
        e
    }
}

/// The one plain error frame a Skylark port under `enforcing` sends a
/// plain client.
fn plain_refusal_frame() -> Bytes {
    let h = skylark_codec::Header {
        request_id: 0,
        kind: skylark_codec::FrameKind::Response,
        command: 0,
    };
    // `AuthFailed` as before (older clients refuse at once on it); the
    // message says what is wrong, and newer clients print it as such.
    let e = skylark_codec::WireError::new(
        skylark_codec::ErrorCode::AuthFailed,
        skylark_codec::tls::PLAIN_REFUSAL,
    );
    skylark_codec::wire::error_response(&h, e)
}

/// `answer`, then close (within a second).
async fn refuse_plain(mut tcp: TcpStream, answer: Bytes) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = tcp.write_all(&answer).await;
        let _ = tcp.shutdown().await;
    })
    .await;
}
