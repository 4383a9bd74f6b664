//! RocketMQ's ACL signature (the `AclClientRPCHook` of its clients): a
//! signed request carries `AccessKey` and `Signature` (and an optional
//! `SecurityToken`) among its header fields. The signature is
//! `base64(HmacSHA1(secret key, the values of every other header field in
//! key order, then the body))`. (RocketMQ clients up to 4.9.3 left
//! `_UNIQUE_KEY_QUERY` out of the signature; it belongs to QUERY_MESSAGE,
//! which Skylark's remoting port does not serve, so every field is signed.)
//!
//! Unlike Skylark's own signatures (`crate::auth`), RocketMQ's carry no
//! timestamp or nonce: a captured request verifies again later
//! (docs/security.md).

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::RemotingCommand;

/// Header field with the access key.
pub const ACCESS_KEY: &str = "AccessKey";
/// Header field with the signature.
pub const SIGNATURE: &str = "Signature";
/// Header field of a temporary credential's token (signed like the others).
pub const SECURITY_TOKEN: &str = "SecurityToken";

fn mac(secret: &str, req: &RemotingCommand) -> Hmac<Sha1> {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC key of any length");
    // `ext_fields` is a BTreeMap: keys in order, as Java's TreeMap sorts
    // them (header field names are ASCII).
    for (k, v) in &req.ext_fields {
        if k != SIGNATURE {
            mac.update(v.as_bytes());
        }
    }
    mac.update(&req.body);
    mac
}

/// The signature a client holding `secret` puts on `req` (base64).
pub fn sign(secret: &str, req: &RemotingCommand) -> String {
    base64::engine::general_purpose::STANDARD.encode(mac(secret, req).finalize().into_bytes())
}

/// Whether `req`'s `Signature` field is its signature under `secret`,
/// compared in constant time.
pub fn verify(secret: &str, req: &RemotingCommand) -> bool {
    let Some(sig) = req.ext(SIGNATURE) else {
        return false;
    };
    let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(sig) else {
        return false;
    };
    mac(secret, req).verify_slice(&sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_sorted_field_values_then_the_body_like_rocketmq() {
        let mut req = RemotingCommand::request(10, 1).with_body(&b"body"[..]);
        req.ext_fields.insert("z".into(), "last".into());
        req.ext_fields.insert("a".into(), "first".into());
        req.ext_fields.insert(ACCESS_KEY.into(), "ak".into());
        // HmacSHA1("secret", "ak" + "first" + "last" + "body"), base64:
        // the value RocketMQ's Java AclUtils.calSignature gives.
        let expected = {
            let mut m = Hmac::<Sha1>::new_from_slice(b"secret").unwrap();
            m.update(b"akfirstlastbody");
            base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
        };
        assert_eq!(sign("secret", &req), expected);
        req.ext_fields.insert(SIGNATURE.into(), expected);
        assert!(verify("secret", &req));
        assert!(!verify("other", &req));
        let mut tampered = req.clone();
        tampered.ext_fields.insert("a".into(), "First".into());
        assert!(!verify("secret", &tampered));
        let mut no_sig = req.clone();
        no_sig.ext_fields.remove(SIGNATURE);
        assert!(!verify("secret", &no_sig));
        no_sig
            .ext_fields
            .insert(SIGNATURE.into(), "not base64!".into());
        assert!(!verify("secret", &no_sig));
    }
}
