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
//! address dialled (an IP address or a DNS name).
//!
//! Client certificates (mutual TLS) are optional: a server given a client
//! CA (`tls_client_ca_file`) asks every TLS client for a certificate and
//! verifies it with rustls' `WebPkiClientVerifier`. In `enforcing` mode a
//! client without a certificate chaining to that CA fails the handshake;
//! in `permissive` mode (which takes plain clients anyway) a TLS client may
//! come without one, but a certificate it does present must verify. A
//! client presents one with [`ClientTls::with_client_cert`].
//!
//! [`MaybeTls`] is the stream type connections run on: an enum rather than
//! a boxed trait object, so plain TCP costs one `match` per read or write.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// How a port treats TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain TCP only.
    #[default]
    Disabled,
    /// TLS and plain TCP both (during a migration).
    Permissive,
    /// TLS only.
    Enforcing,
}

/// First byte of a TLS record carrying a handshake (the ClientHello).
const TLS_HANDSHAKE: u8 = 0x16;
/// A client must start (TLS or not) within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn provider() -> Arc<tokio_rustls::rustls::crypto::CryptoProvider> {
    Arc::new(tokio_rustls::rustls::crypto::ring::default_provider())
}

fn read_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read certificates from {path}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad certificate PEM in {path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {path}"));
    }
    Ok(certs)
}

fn read_key(path: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("cannot read a private key from {path}: {e}"))
}

fn read_roots(path: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in read_certs(path)? {
        roots
            .add(c)
            .map_err(|e| format!("bad CA certificate in {path}: {e}"))?;
    }
    Ok(roots)
}

/// The server side: mode and certificate.
pub struct ServerTls {
    mode: TlsMode,
    acceptor: TlsAcceptor,
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
        })))
    }

    /// Turns an accepted connection into the stream to serve, or says why
    /// it is refused (a plain client on an enforcing port has been told).
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<MaybeTls> {
        let mut first = [0u8; 1];
        let n = tokio::time::timeout(HANDSHAKE_TIMEOUT, tcp.peek(&mut first))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "client sent nothing"))??;
        if n == 1 && first[0] == TLS_HANDSHAKE {
            let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(tcp))
                .await
                .map_err(|_| {
                    io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")
                })??;
            return Ok(MaybeTls::Server(Box::new(tls)));
        }
        if self.mode == TlsMode::Permissive {
            return Ok(MaybeTls::Plain(tcp));
        }
        refuse_plain(tcp).await;
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "plain TCP on a TLS-only port",
        ))
    }
}

/// One plain error frame, then close.
async fn refuse_plain(mut tcp: TcpStream) {
    let h = skylark_codec::Header {
        request_id: 0,
        kind: skylark_codec::FrameKind::Response,
        command: 0,
    };
    let e = skylark_codec::WireError::new(
        skylark_codec::ErrorCode::AuthFailed,
        "this port accepts TLS connections only (tls_mode = enforcing): connect with TLS",
    );
    let frame = crate::remoting::wire::error_response(&h, e);
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = tcp.write_all(&frame).await;
        let _ = tcp.shutdown().await;
    })
    .await;
}

/// The client side: the CA that server certificates must chain to, and
/// the certificate this client presents if a server asks for one.
#[derive(Clone)]
pub struct ClientTls {
    roots: Arc<RootCertStore>,
    connector: TlsConnector,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls")
    }
}

impl ClientTls {
    /// Verifies servers against the CA certificates in `path` (PEM).
    pub fn from_ca_file(path: &str) -> Result<ClientTls, String> {
        let roots = Arc::new(read_roots(path)?);
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        Ok(ClientTls {
            roots,
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// The same, presenting the certificate chain `cert_file` with its
    /// private key `key_file` (PEM) to servers that ask for one (mutual TLS).
    pub fn with_client_cert(self, cert_file: &str, key_file: &str) -> Result<ClientTls, String> {
        let certs = read_certs(cert_file)?;
        let key = read_key(key_file)?;
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(self.roots.clone())
            .with_client_auth_cert(certs, key)
            .map_err(|e| format!("client certificate and key do not make a TLS identity: {e}"))?;
        Ok(ClientTls {
            roots: self.roots,
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// TLS over `tcp` to `addr` (`host:port`; the host is the name checked).
    pub async fn connect(&self, addr: &str, tcp: TcpStream) -> io::Result<MaybeTls> {
        let host = addr
            .rsplit_once(':')
            .map_or(addr, |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let name = ServerName::try_from(host.to_string()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("server name {host}: {e}"),
            )
        })?;
        let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.connector.connect(name, tcp))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        Ok(MaybeTls::Client(Box::new(tls)))
    }
}

/// A connection's byte stream: plain TCP or TLS over TCP.
pub enum MaybeTls {
    Plain(TcpStream),
    Server(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    Client(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl From<TcpStream> for MaybeTls {
    fn from(s: TcpStream) -> Self {
        MaybeTls::Plain(s)
    }
}

impl MaybeTls {
    fn tcp(&self) -> &TcpStream {
        match self {
            MaybeTls::Plain(s) => s,
            MaybeTls::Server(s) => s.get_ref().0,
            MaybeTls::Client(s) => s.get_ref().0,
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().peer_addr()
    }

    /// Sets TCP_NODELAY on the socket.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.tcp().set_nodelay(on)
    }
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            MaybeTls::Plain($s) => $e,
            MaybeTls::Server($s) => $e,
            MaybeTls::Client($s) => $e,
        }
    };
}

impl AsyncRead for MaybeTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let r = each!(self, s => Pin::new(s).poll_read(cx, buf));
        match r {
            // A peer that closes without TLS close_notify has closed: every
            // frame is length-prefixed, so a cut frame is still seen as one.
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Poll::Ready(Ok(())),
            other => other,
        }
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_shutdown(cx))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(s) => s.is_write_vectored(),
            MaybeTls::Server(s) => s.is_write_vectored(),
            MaybeTls::Client(s) => s.is_write_vectored(),
        }
    }
}
