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
//! [`MaybeTls`] is the stream type connections run on: an enum rather than
//! a boxed trait object, so plain TCP costs one `match` per read or write.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use skylark_codec::tls::{provider, read_certs, read_key, read_roots, HANDSHAKE_TIMEOUT};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

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

crate::config::setting_words!(
    TlsMode,
    "tls_mode",
    [
        ("disabled", TlsMode::Disabled),
        ("permissive", TlsMode::Permissive),
        ("enforcing", TlsMode::Enforcing),
    ]
);

/// First byte of a TLS record carrying a handshake (the ClientHello).
const TLS_HANDSHAKE: u8 = 0x16;

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
        self.accept_then(tcp, true).await
    }

    /// [`ServerTls::accept`] for a port of another protocol (RocketMQ
    /// remoting): a plain client on an enforcing port is closed without a
    /// Skylark error frame, which it could not read.
    pub async fn accept_foreign(&self, tcp: TcpStream) -> io::Result<MaybeTls> {
        self.accept_then(tcp, false).await
    }

    async fn accept_then(&self, tcp: TcpStream, tell_plain: bool) -> io::Result<MaybeTls> {
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
        if tell_plain {
            refuse_plain(tcp).await;
        }
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
    // `AuthFailed` as before (older clients refuse at once on it); the
    // message says what is wrong, and newer clients print it as such.
    let e = skylark_codec::WireError::new(
        skylark_codec::ErrorCode::AuthFailed,
        skylark_codec::tls::PLAIN_REFUSAL,
    );
    let frame = skylark_codec::wire::error_response(&h, e);
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = tcp.write_all(&frame).await;
        let _ = tcp.shutdown().await;
    })
    .await;
}
