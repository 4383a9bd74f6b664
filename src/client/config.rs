//! Client configuration: where the NameServers are and how patient to be.
//!
//! Defaults follow RocketMQ's `ClientConfig` / `DefaultMQProducer`: 3 s
//! request timeout, route refresh every 30 s, two retries of a failed send on
//! another broker, a broker isolated for 30 s after a connection failure.

use std::time::Duration;

/// The longest duration a client setting takes, a year, for every timer
/// period, timeout and delay of [`ClientConfig`], the push consumer's
/// options and the transaction producer's heartbeat: a deadline further
/// out overflows the clock's arithmetic (`Instant + Duration` panics), so
/// a longer one (`Duration::MAX`, `u64::MAX` ms) is refused with
/// [`ClientError::InvalidArgument`](super::ClientError) when the handle
/// starts.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Checks the duration setting `name` (named in the error as
/// `owner::name`): at most [`MAX_DURATION`], and not zero unless
/// `zero_ok` (a timer period or a timeout that zero would make spin or
/// always expire).
pub(crate) fn check_duration(
    owner: &str,
    name: &str,
    d: Duration,
    zero_ok: bool,
) -> Result<(), super::ClientError> {
    let why = if d > MAX_DURATION {
        format!(
            "{d:?} is over the longest a client setting takes ({} days)",
            MAX_DURATION.as_secs() / 86_400
        )
    } else if d.is_zero() && !zero_ok {
        "zero: it is the period of a timer or a timeout, which must be positive".to_string()
    } else {
        return Ok(());
    };
    Err(super::ClientError::InvalidArgument(format!(
        "{owner}::{name} is {why}"
    )))
}

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

    /// Refuses a duration setting that is zero where that makes no sense
    /// (`request_timeout`, `connect_timeout`, `route_refresh`) or over
    /// [`MAX_DURATION`] (any of them, `isolation` too). Every handle
    /// checks it when it starts.
    pub fn validate(&self) -> Result<(), super::ClientError> {
        for (name, d, zero_ok) in [
            ("request_timeout", self.request_timeout, false),
            ("connect_timeout", self.connect_timeout, false),
            ("route_refresh", self.route_refresh, false),
            ("isolation", self.isolation, true),
        ] {
            check_duration("ClientConfig", name, d, zero_ok)?;
        }
        Ok(())
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
pub(crate) mod tests {
    use super::*;
    use crate::client::{ClientError, Producer, PullConsumer};

    /// Durations the clock cannot add to now (`Instant + Duration`
    /// panicked in a timer) and one just over the limit.
    pub(crate) const OVERLONG: [Duration; 3] = [
        Duration::MAX,
        Duration::from_millis(u64::MAX),
        MAX_DURATION.saturating_add(Duration::from_millis(1)),
    ];

    /// Starts a producer and a pull consumer with `config`: the error, if
    /// either is refused (both must agree).
    fn start_refusal(config: ClientConfig) -> Option<String> {
        actix::System::new().block_on(async move {
            let p = Producer::start(config.clone(), "limits").map(drop);
            let c = PullConsumer::start(config, "limits").map(drop);
            match (p, c) {
                (Ok(()), Ok(())) => None,
                (Err(ClientError::InvalidArgument(a)), Err(ClientError::InvalidArgument(b))) => {
                    assert_eq!(a, b);
                    Some(a)
                }
                other => panic!("producer and consumer disagree or another error: {other:?}"),
            }
        })
    }

    /// One test per duration of [`ClientConfig`]: a duration over
    /// [`MAX_DURATION`] is refused when a handle starts, naming the
    /// setting; the longest taken starts; zero is refused where it is a
    /// timer period or a timeout.
    macro_rules! duration_setting {
        ($($test:ident: $field:ident, zero_ok = $zero_ok:expr;)*) => {$(
            #[test]
            fn $test() {
                let with = |d| ClientConfig {
                    $field: d,
                    ..ClientConfig::new("127.0.0.1:1")
                };
                for d in OVERLONG {
                    let e = start_refusal(with(d)).unwrap_or_else(|| panic!("{d:?} taken"));
                    assert!(e.contains(concat!("ClientConfig::", stringify!($field))), "{e}");
                    assert!(e.contains("365 days"), "{e}");
                }
                assert_eq!(start_refusal(with(MAX_DURATION)), None);
                let zero = start_refusal(with(Duration::ZERO));
                assert_eq!(zero.is_none(), $zero_ok, "{zero:?}");
            }
        )*};
    }

    duration_setting! {
        request_timeout_is_bounded: request_timeout, zero_ok = false;
        connect_timeout_is_bounded: connect_timeout, zero_ok = false;
        route_refresh_is_bounded: route_refresh, zero_ok = false;
        isolation_is_bounded: isolation, zero_ok = true;
    }

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
