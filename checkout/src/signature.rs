//! Webhook signatures, for the dispatcher that signs and for receivers that verify.
//!
//! - Standard Webhooks (what merchants' endpoints get): `webhook-signature: v1,<base64>` with
//!   HMAC-SHA256 keyed by the base64 part of a `whsec_…` secret over `{id}.{timestamp}.{body}`;
//!   during a secret rotation several signatures, space-separated.
//! - ACP order webhooks (what the agent platform gets): `Merchant-Signature: t=<unix>,v1=<hex>`
//!   with HMAC-SHA256 keyed by the secret's bytes over `{t}.{body}`.
//!
//! Verification compares in constant time and refuses timestamps more than five minutes away.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// How far a signed timestamp may be from the receiver's clock.
pub const TOLERANCE_SECS: i64 = 5 * 60;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the secret is not a whsec_ secret with a base64 key")]
    BadSecret,
    #[error("the signature header is missing or malformed")]
    Malformed,
    #[error("the timestamp is more than {TOLERANCE_SECS} s from now")]
    Stale,
    #[error("no signature matches")]
    Mismatch,
}

fn key_of(secret: &str) -> Result<Vec<u8>, SignatureError> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    STANDARD.decode(encoded).map_err(|_| SignatureError::BadSecret)
}

fn mac(key: &[u8], parts: &[&[u8]]) -> Result<HmacSha256, SignatureError> {
    // HMAC accepts keys of every length, so this error is never seen in practice.
    let mut mac = HmacSha256::new_from_slice(key).map_err(|_| SignatureError::BadSecret)?;
    for part in parts {
        mac.update(part);
    }
    Ok(mac)
}

/// One `v1,<base64>` signature.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, SignatureError> {
    sign_raw(&key_of(secret)?, id, timestamp, body)
}

/// One `v1,<base64>` signature keyed by `key` as given: ACP order webhook secrets, which are not
/// `whsec_` base64 (see [`crate::merchant::OrderWebhook`]).
pub fn sign_raw(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> Result<String, SignatureError> {
    let ts = timestamp.to_string();
    let tag = mac(key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body])?
        .finalize()
        .into_bytes();
    Ok(format!("v1,{}", STANDARD.encode(tag)))
}

/// The `webhook-signature` header: one signature per secret, space-separated.
pub fn signature_header<'a>(
    secrets: impl IntoIterator<Item = &'a str>,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SignatureError> {
    let signatures: Result<Vec<String>, _> = secrets.into_iter().map(|s| sign(s, id, timestamp, body)).collect();
    Ok(signatures?.join(" "))
}

/// Checks a Standard Webhooks delivery: any `v1` signature made with `secret` will do.
pub fn verify(
    secret: &str,
    id: &str,
    timestamp: &str,
    header: &str,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let ts: i64 = timestamp.trim().parse().map_err(|_| SignatureError::Malformed)?;
    if (now - ts).abs() > TOLERANCE_SECS {
        return Err(SignatureError::Stale);
    }
    let key = key_of(secret)?;
    let expected = mac(&key, &[id.as_bytes(), b".", timestamp.trim().as_bytes(), b".", body])?;
    let candidates: Vec<Vec<u8>> = header
        .split_whitespace()
        .filter_map(|sig| sig.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .collect();
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if candidates.iter().any(|tag| expected.clone().verify_slice(tag).is_ok()) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The ACP `Merchant-Signature` header value.
pub fn merchant_signature(secret: &[u8], timestamp: i64, body: &[u8]) -> Result<String, SignatureError> {
    let ts = timestamp.to_string();
    let tag = mac(secret, &[ts.as_bytes(), b".", body])?.finalize().into_bytes();
    Ok(format!("t={ts},v1={}", hex::encode(tag)))
}

/// Checks an ACP order webhook's `Merchant-Signature` header.
pub fn verify_merchant_signature(secret: &[u8], header: &str, body: &[u8], now: i64) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut tags = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = Some(t),
            Some(("v1", hex_tag)) => tags.extend(hex::decode(hex_tag).ok()),
            _ => {}
        }
    }
    let raw_ts = timestamp.ok_or(SignatureError::Malformed)?;
    let ts: i64 = raw_ts.parse().map_err(|_| SignatureError::Malformed)?;
    if tags.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now - ts).abs() > TOLERANCE_SECS {
        return Err(SignatureError::Stale);
    }
    let expected = mac(secret, &[raw_ts.as_bytes(), b".", body])?;
    if tags.iter().any(|tag| expected.clone().verify_slice(tag).is_ok()) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;

    #[test]
    fn standard_webhooks_vector() {
        assert_eq!(
            sign(SECRET, ID, TS, BODY).unwrap(),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        let header = signature_header([SECRET], ID, TS, BODY).unwrap();
        assert_eq!(verify(SECRET, ID, &TS.to_string(), &header, BODY, TS + 10), Ok(()));
    }

    #[test]
    fn acp_merchant_signature_vector() {
        let body = br#"{"type":"order_create","data":{"type":"order","id":"ord_123","checkout_session_id":"checkout_session_123","permalink_url":"https://example.com/orders/123","status":"created"}}"#;
        let header = merchant_signature(b"whsec_test_secret", 1709123456, body).unwrap();
        assert_eq!(
            header,
            "t=1709123456,v1=338efc7c9418016590773fec50cdde35f0cee854777ea940add20d93175b19b5"
        );
        assert_eq!(
            verify_merchant_signature(b"whsec_test_secret", &header, body, 1709123456),
            Ok(())
        );
        assert_eq!(
            verify_merchant_signature(b"other", &header, body, 1709123456),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_merchant_signature(b"whsec_test_secret", &header, body, 1709123456 + 301),
            Err(SignatureError::Stale)
        );
    }

    #[test]
    fn any_of_several_signatures_verifies_during_rotation() {
        let old = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let new = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let header = signature_header([new, old], ID, TS, BODY).unwrap();
        assert_eq!(header.split(' ').count(), 2);
        assert_eq!(verify(old, ID, &TS.to_string(), &header, BODY, TS), Ok(()));
        assert_eq!(verify(new, ID, &TS.to_string(), &header, BODY, TS), Ok(()));
    }

    #[test]
    fn tampering_staleness_and_garbage_are_refused() {
        let header = sign(SECRET, ID, TS, BODY).unwrap();
        let ts = TS.to_string();
        assert_eq!(
            verify(SECRET, ID, &ts, &header, b"{}", TS),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, "msg_other", &ts, &header, BODY, TS),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, ID, &ts, &header, BODY, TS + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(SECRET, ID, &ts, &header, BODY, TS - 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(SECRET, ID, &ts, "v2,abc", BODY, TS),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(SECRET, ID, "soon", &header, BODY, TS),
            Err(SignatureError::Malformed)
        );
        assert_eq!(sign("whsec_!!!", ID, TS, BODY), Err(SignatureError::BadSecret));
    }
}
