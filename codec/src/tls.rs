//! TLS for clients (rustls through tokio-rustls), and the stream type both
//! sides run on.
//!
//! Clients verify the server's certificate against a CA file
//! ([`ClientTls::from_ca_file`]); the name checked is the host part of the
//! address dialled (an IP address or a DNS name). A client presents a
//! certificate of its own (mutual TLS) with [`ClientTls::with_client_cert`].
//! The server side (modes, the acceptor, client-certificate checks) is
//! `skylark-actors`' `tls`, built on the helpers here.
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
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// A peer must finish the TLS handshake (a server: start it) within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The message of the one error frame a server under `tls_mode =
/// enforcing` sends a plain-TCP client before closing. The frame's code is
/// `AuthFailed`, as it always was, so older clients keep treating it as a
/// refusal; the message starts with "TLS required" so that they print
/// `auth failed: TLS required: ...`, and newer ones, which recognise it
/// ([`is_plain_refusal`]), print it without the misleading "auth failed".
pub const PLAIN_REFUSAL: &str =
    "TLS required: this port accepts TLS connections only (tls_mode = enforcing): connect with TLS";

/// Whether `e` is a server's refusal of a plain-TCP client on a TLS-only
/// port ([`PLAIN_REFUSAL`], or the wording of servers before it, which
/// lacked the "TLS required" lead), not an ACL failure.
pub fn is_plain_refusal(e: &crate::WireError) -> bool {
    let msg = e.message.trim_start().to_ascii_lowercase();
    e.code == crate::ErrorCode::AuthFailed
        && (msg.starts_with("tls required")
            || msg.starts_with("this port accepts tls connections only"))
}

/// Why a server refused this client's TLS handshake, in words a user can
/// act on, when `e` is the alert it sent (with TLS 1.3 a server checks a
/// client certificate after the client's side of the handshake is done,
/// so the alert arrives on the first read, not at connect); `None` for any
/// other error.
pub fn handshake_refusal(e: &io::Error) -> Option<String> {
    use tokio_rustls::rustls::{AlertDescription as A, Error as TlsError};
    let Some(TlsError::AlertReceived(alert)) = e.get_ref()?.downcast_ref::<TlsError>() else {
        return None;
    };
    let why = match alert {
        A::CertificateRequired => {
            "it requires a client certificate (mutual TLS) and none was presented: \
             give one signed by the CA the server trusts (--tls-cert/--tls-key, \
             ClientConfig::with_tls_client_cert; on a server tls_client_cert_file/tls_client_key_file)"
        }
        // `DecryptError`: a certificate whose signature does not verify
        // (from another CA of the same name) or a bad CertificateVerify.
        A::UnknownCA
        | A::DecryptError
        | A::BadCertificate
        | A::UnsupportedCertificate
        | A::CertificateRevoked
        | A::CertificateExpired
        | A::CertificateUnknown
        | A::AccessDenied => {
            "it does not accept the client certificate presented: it requires one \
             signed by the CA it trusts (its tls_client_ca_file), valid now and \
             allowed for client authentication"
        }
        _ => "see the server's log",
    };
    Some(format!(
        "the server refused the TLS handshake: {why} (it sent the TLS alert {alert:?})"
    ))
}

/// `e` with its words from [`handshake_refusal`] when it is a server's
/// refusal of the handshake, else as it is.
pub fn explain(e: io::Error) -> io::Error {
    match handshake_refusal(&e) {
        Some(why) => io::Error::new(io::ErrorKind::PermissionDenied, why),
        None => e,
    }
}

/// The crypto provider every TLS config uses (ring).
pub fn provider() -> Arc<tokio_rustls::rustls::crypto::CryptoProvider> {
    Arc::new(tokio_rustls::rustls::crypto::ring::default_provider())
}

/// The certificate chain in the PEM file `path` (at least one); the error
/// says which file and why.
pub fn read_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read certificates from {path}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad certificate PEM in {path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {path}"));
    }
    Ok(certs)
}

/// The private key in the PEM file `path`.
pub fn read_key(path: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("cannot read a private key from {path}: {e}"))
}

/// The CA certificates in the PEM file `path`, as a root store.
pub fn read_roots(path: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in read_certs(path)? {
        roots
            .add(c)
            .map_err(|e| format!("bad CA certificate in {path}: {e}"))?;
    }
    Ok(roots)
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
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
            .map_err(explain)?;
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
