//! Client configuration: where the NameServers are and how patient to be.
//!
//! Defaults follow RocketMQ's `ClientConfig` / `DefaultMQProducer`: 3 s
//! request timeout, route refresh every 30 s, two retries of a failed send on
//! another broker, a broker isolated for 30 s after a connection failure.

use std::time::Duration;

/// Default [`ClientConfig::max_message_size`]: 4 MiB, as RocketMQ.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 4 << 20;

/// Settings shared by every handle of one [`ClientInstance`](super::ClientInstance).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// NameServer addresses, `host:port` separated by `;`.
    pub namesrv: String,
    /// Timeout of one request (a pull adds its suspend time on top).
    pub request_timeout: Duration,
    /// Timeout of a TCP connect.
    pub connect_timeout: Duration,
    /// How often cached topic routes are refreshed from the NameServer.
    pub route_refresh: Duration,
    /// Identity sent in the handshake and in heartbeats (`host@pid`).
    pub client_id: String,
    /// How many times a failed (non-ordered) send is retried on another broker.
    pub retry_times_when_send_failed: u32,
    /// Whether slow or failing brokers are skipped for a while.
    pub send_latency_fault_enable: bool,
    /// How long a broker is skipped after a connection failure.
    pub isolation: Duration,
    /// Largest frame accepted from a server (and sent to one: a send
    /// request that would not fit is refused before it is sent).
    pub max_frame_size: usize,
    /// Largest message body a producer sends (RocketMQ's producer-side
    /// `maxMessageSize`, 4 MiB, the broker's default `max_message_size`);
    /// a larger body is refused before sending with
    /// [`ClientError::MessageTooLarge`](super::ClientError). Raise it
    /// together with the broker's `store.max_message_size`.
    pub max_message_size: usize,
    /// ACL credentials every request is signed with
    /// ([`ClientConfig::with_credentials`]); `None`: unsigned.
    pub credentials: Option<std::sync::Arc<skylark_codec::Credentials>>,
    /// TLS to NameServers and brokers, verifying them against a CA
    /// ([`ClientConfig::with_tls_ca`]); `None`: plain TCP.
    pub tls: Option<skylark_codec::tls::ClientTls>,
    /// Told, once per wait, when a send waits for a topic no broker has
    /// registered yet (the wait is `SKYLARK_ROUTE_WAIT_MS`, 3 s by
    /// default); `None` (the default): the library says nothing and the
    /// send ends with `TopicNotFound` when the wait passes. The `skylark`
    /// CLI prints it on stderr.
    pub route_wait_notice: Option<RouteWaitNotice>,
}

/// What a client calls when a send starts waiting for a topic's route:
/// the topic and how long it will wait
/// ([`ClientConfig::route_wait_notice`]).
#[derive(Clone)]
pub struct RouteWaitNotice(std::sync::Arc<NoticeFn>);

type NoticeFn = dyn Fn(&str, Duration) + Send + Sync;

impl RouteWaitNotice {
    /// A notice that calls `f`.
    pub fn new(f: impl Fn(&str, Duration) + Send + Sync + 'static) -> Self {
        RouteWaitNotice(std::sync::Arc::new(f))
    }

    /// Tells it that a send waits up to `wait` for `topic`'s route.
    pub fn tell(&self, topic: &str, wait: Duration) {
        (self.0)(topic, wait)
    }
}

impl std::fmt::Debug for RouteWaitNotice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RouteWaitNotice(..)")
    }
}

impl ClientConfig {
    /// Defaults with these NameServer addresses.
    pub fn new(namesrv: impl Into<String>) -> Self {
        ClientConfig {
            namesrv: namesrv.into(),
            ..ClientConfig::default()
        }
    }

    /// Signs every request with this account (servers with ACL on).
    pub fn with_credentials(
        mut self,
        access_key: impl Into<String>,
        secret_key: impl Into<String>,
    ) -> Self {
        self.credentials = Some(std::sync::Arc::new(skylark_codec::Credentials::new(
            access_key, secret_key,
        )));
        self
    }

    /// Connects over TLS, verifying servers against the CA certificates in
    /// the PEM file `ca_file`.
    pub fn with_tls_ca(mut self, ca_file: &str) -> Result<Self, super::ClientError> {
        let tls = skylark_codec::tls::ClientTls::from_ca_file(ca_file)
            .map_err(super::ClientError::InvalidArgument)?;
        self.tls = Some(tls);
        Ok(self)
    }

    /// Presents the certificate chain `cert_file` and its private key
    /// `key_file` (PEM) to servers that require client certificates
    /// (`tls_client_ca_file`, mutual TLS). Call after
    /// [`with_tls_ca`](Self::with_tls_ca).
    pub fn with_tls_client_cert(
        mut self,
        cert_file: &str,
        key_file: &str,
    ) -> Result<Self, super::ClientError> {
        let Some(tls) = self.tls.take() else {
            return Err(super::ClientError::InvalidArgument(
                "a client certificate needs TLS: call with_tls_ca first".into(),
            ));
        };
        let tls = tls
            .with_client_cert(cert_file, key_file)
            .map_err(super::ClientError::InvalidArgument)?;
        self.tls = Some(tls);
        Ok(self)
    }

    /// The NameServer addresses as a list (empty parts dropped).
    pub fn namesrv_addrs(&self) -> Vec<String> {
        self.namesrv
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".to_string());
        ClientConfig {
            namesrv: "127.0.0.1:9876".to_string(),
            request_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(3),
            route_refresh: Duration::from_secs(30),
            client_id: format!("{host}@{}", std::process::id()),
            retry_times_when_send_failed: 2,
            send_latency_fault_enable: true,
            isolation: Duration::from_secs(30),
            max_frame_size: skylark_codec::DEFAULT_MAX_FRAME_SIZE,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            credentials: None,
            tls: None,
            route_wait_notice: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namesrv_list() {
        let c = ClientConfig::new(" a:1 ;b:2;; ");
        assert_eq!(
            c.namesrv_addrs(),
            vec!["a:1".to_string(), "b:2".to_string()]
        );
        assert_eq!(c.route_refresh, Duration::from_secs(30));
    }
}
