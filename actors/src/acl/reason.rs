//! Why the ACL refused a request: the `reason` label of
//! `skylark_auth_refusals_total` and of the refusal log lines
//! ([`super::refusals`]). A leaf module, so that the metrics registry can
//! list every reason without importing the log that counts them.

/// Why a request was refused (the counter's `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No signature at all.
    Unsigned,
    /// An access key not in the ACL file.
    UnknownKey,
    /// The signature does not verify under the key's secret (or is
    /// malformed).
    BadSignature,
    /// Timestamp outside the window, before the server started, or older
    /// than the replay cache still covers.
    Stale,
    /// A signed request already received within the window.
    Replayed,
    /// The account lacks the permission the request needs.
    NoPermission,
    /// The account may not be used from the peer's address.
    AddressNotAllowed,
}

impl Reason {
    /// Every reason, in the order the metric lists them.
    pub const ALL: [Reason; 7] = [
        Reason::Unsigned,
        Reason::UnknownKey,
        Reason::BadSignature,
        Reason::Stale,
        Reason::Replayed,
        Reason::NoPermission,
        Reason::AddressNotAllowed,
    ];

    /// The `reason` label and the log's `reason` value.
    pub fn label(self) -> &'static str {
        match self {
            Reason::Unsigned => "unsigned",
            Reason::UnknownKey => "unknown_key",
            Reason::BadSignature => "bad_signature",
            Reason::Stale => "stale",
            Reason::Replayed => "replayed",
            Reason::NoPermission => "no_permission",
            Reason::AddressNotAllowed => "address_not_allowed",
        }
    }
}
