//! The exact request of one delivery attempt. The body is serialized once and those bytes are
//! both signed and sent.

use crate::headers::*;
use bytes::Bytes;
use checkout::clock::Timestamp;
use checkout::delivery_task::EventHead;
use checkout::merchant::OrderWebhook;
use checkout::signature::{self, SignatureError};
use checkout::signing_key::SigningKey;
use checkout::webhook_endpoint::WebhookEndpoint;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue};

#[derive(Clone, Debug)]
pub struct WebhookRequest {
    pub url: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A header value from text we made ourselves (ids, numbers, signatures: visible ASCII).
fn text(value: &str) -> Result<HeaderValue, SignatureError> {
    HeaderValue::from_str(value).map_err(|_| SignatureError::Malformed)
}

const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// A Standard Webhooks delivery of an event (its id, version and exact bytes) to `endpoint`,
/// signed as its scheme says with every secret and key that signs at `at`: `v1` signatures
/// first, then `v1a` ones, whose keys `webhook-key-id` names in order. Which credentials sign is
/// decided at `at` itself, not at its whole second: a credential that ended at 12:00:00.5 must
/// not sign at 12:00:00.7.
pub fn standard(
    event: &EventHead,
    body: Bytes,
    endpoint: &WebhookEndpoint,
    attempt: u32,
    at: Timestamp,
) -> Result<WebhookRequest, SignatureError> {
    let now = at.timestamp();
    let id = event.id.as_str();
    let mut signatures = signature::signature_header(endpoint.hmac_secrets(at), id, now, &body)?;
    let keys: Vec<&SigningKey> = endpoint.signing_keys(at).collect();
    for key in &keys {
        if !signatures.is_empty() {
            signatures.push(' ');
        }
        signatures.push_str(&key.sign(id, now, &body).map_err(|_| SignatureError::BadSecret)?);
    }
    let mut headers = HeaderMap::with_capacity(9);
    headers.insert(CONTENT_TYPE, JSON);
    headers.insert(WEBHOOK_ID, text(id)?);
    headers.insert(WEBHOOK_TIMESTAMP, HeaderValue::from(now));
    headers.insert(WEBHOOK_SIGNATURE, text(&signatures)?);
    if !keys.is_empty() {
        let kids: Vec<&str> = keys.iter().map(|k| k.kid.as_str()).collect();
        headers.insert(WEBHOOK_KEY_ID, text(&kids.join(" "))?);
    }
    headers.insert(WEBHOOK_SEQUENCE, HeaderValue::from(event.version));
    headers.insert(WEBHOOK_ATTEMPT, HeaderValue::from(attempt));
    Ok(WebhookRequest {
        url: endpoint.url.clone(),
        headers,
        body,
    })
}

/// An ACP order webhook (`{type, data: Order}`) of the event `id`, signed with
/// `Merchant-Signature` (the current secret) and, alongside, the Standard Webhooks headers with
/// one `v1` per secret in force at `at`: the overlap of a replaced secret (see [`OrderWebhook`]).
pub fn acp_order(hook: &OrderWebhook, id: &str, body: Bytes, at: Timestamp) -> Result<WebhookRequest, SignatureError> {
    let now = at.timestamp();
    let merchant_signature = signature::merchant_signature(hook.secret.as_bytes(), now, &body)?;
    let signatures: Result<Vec<String>, _> = hook
        .secrets_at(at)
        .map(|secret| signature::sign_raw(secret.as_bytes(), id, now, &body))
        .collect();
    let mut headers = HeaderMap::with_capacity(5);
    headers.insert(CONTENT_TYPE, JSON);
    headers.insert(MERCHANT_SIGNATURE, text(&merchant_signature)?);
    headers.insert(WEBHOOK_ID, text(id)?);
    headers.insert(WEBHOOK_TIMESTAMP, HeaderValue::from(now));
    headers.insert(WEBHOOK_SIGNATURE, text(&signatures?.join(" "))?);
    Ok(WebhookRequest {
        url: hook.url.clone(),
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use checkout::testkit::{event, merchant};

    #[test]
    fn the_signed_bytes_are_the_sent_bytes_and_verify() {
        let m = merchant();
        let e = event(&m, None, 1);
        let mut endpoint = WebhookEndpoint::new(
            m.id.clone(),
            "https://hooks.example.com/a".into(),
            checkout::clock::now(),
        )
        .unwrap();
        let old = endpoint.current_secret().unwrap().to_owned();
        endpoint
            .rotate(checkout::clock::now(), chrono::Duration::hours(1))
            .unwrap();
        let new = endpoint.current_secret().unwrap().to_owned();
        let at = checkout::clock::now();
        let now = at.timestamp();
        let body = Bytes::from(serde_json::to_vec(&e).unwrap());
        let request = standard(&EventHead::from(&e), body.clone(), &endpoint, 3, at).unwrap();
        assert_eq!(request.body, body);
        let header = |name: http::HeaderName| request.headers[name].to_str().unwrap().to_owned();
        assert_eq!(header(WEBHOOK_ID), e.id.to_string());
        assert_eq!(header(WEBHOOK_SEQUENCE), "1");
        assert_eq!(header(WEBHOOK_ATTEMPT), "3");
        let signatures = header(WEBHOOK_SIGNATURE);
        assert_eq!(
            signatures.split(' ').count(),
            2,
            "both secrets sign during the rotation window"
        );
        for secret in [&old, &new] {
            let verdict = signature::verify(
                secret,
                e.id.as_str(),
                &header(WEBHOOK_TIMESTAMP),
                &signatures,
                &request.body,
                now,
            );
            assert_eq!(verdict, Ok(()));
        }
        assert!(request.headers.get(WEBHOOK_KEY_ID).is_none(), "no key id without v1a");
    }

    #[test]
    fn each_scheme_signs_with_what_it_names_and_key_ids_follow_the_v1a_order() {
        use checkout::webhook_endpoint::SignatureScheme;
        let m = merchant();
        let e = event(&m, None, 1);
        let now = checkout::clock::now();
        let mut endpoint = WebhookEndpoint::new(m.id.clone(), "https://hooks.example.com/a".into(), now).unwrap();
        let body = Bytes::from(serde_json::to_vec(&e).unwrap());
        let ts = now.timestamp();
        let sign = |endpoint: &WebhookEndpoint| standard(&EventHead::from(&e), body.clone(), endpoint, 1, now).unwrap();
        let header =
            |r: &WebhookRequest, name: http::HeaderName| r.headers.get(name).map(|v| v.to_str().unwrap().to_owned());

        endpoint.set_signature_scheme(SignatureScheme::Ed25519, now).unwrap();
        endpoint.rotate(now, chrono::Duration::hours(1)).unwrap();
        let request = sign(&endpoint);
        let signatures = header(&request, WEBHOOK_SIGNATURE).unwrap();
        assert!(signatures.split(' ').all(|s| s.starts_with("v1a,")), "{signatures}");
        let kids: Vec<String> = header(&request, WEBHOOK_KEY_ID)
            .unwrap()
            .split(' ')
            .map(str::to_owned)
            .collect();
        assert_eq!(kids.len(), 2, "both keys sign during the rotation");
        for (signature, kid) in signatures.split(' ').zip(&kids) {
            let key = endpoint.signing_keys.iter().find(|k| &k.kid == kid).unwrap();
            let verdict =
                checkout::signing_key::verify_v1a(&key.public, e.id.as_str(), &ts.to_string(), signature, &body);
            assert_eq!(verdict, Ok(()), "the n-th key id names the n-th signature's key");
        }
        let secret = endpoint.current_secret().unwrap().to_owned();
        assert_eq!(
            signature::verify(&secret, e.id.as_str(), &ts.to_string(), &signatures, &body, ts),
            Err(SignatureError::Malformed),
            "no v1 signature under ed25519 alone"
        );

        endpoint.set_signature_scheme(SignatureScheme::Both, now).unwrap();
        // Turning v1 on made a fresh secret: the one kept while it was off signs nothing.
        let fresh = endpoint.current_secret().unwrap().to_owned();
        assert_ne!(fresh, secret);
        let request = sign(&endpoint);
        let signatures = header(&request, WEBHOOK_SIGNATURE).unwrap();
        assert!(signatures.starts_with("v1,"), "v1 first: {signatures}");
        assert_eq!(
            signature::verify(&fresh, e.id.as_str(), &ts.to_string(), &signatures, &body, ts),
            Ok(()),
            "an HMAC receiver skips the v1a signatures"
        );
        assert_eq!(
            signature::verify(&secret, e.id.as_str(), &ts.to_string(), &signatures, &body, ts),
            Err(SignatureError::Mismatch)
        );

        endpoint.set_signature_scheme(SignatureScheme::Hmac, now).unwrap();
        let request = sign(&endpoint);
        assert!(!header(&request, WEBHOOK_SIGNATURE).unwrap().contains("v1a,"));
        assert_eq!(header(&request, WEBHOOK_KEY_ID), None);
    }

    #[test]
    fn an_order_webhook_carries_the_current_secret_and_the_overlap_alongside() {
        let now = checkout::clock::now();
        let first = OrderWebhook::replacing(
            None,
            "https://p.example/o".into(),
            "one".into(),
            now,
            chrono::Duration::zero(),
        );
        let hook = OrderWebhook::replacing(
            Some(&first),
            first.url.clone(),
            "two".into(),
            now,
            chrono::Duration::hours(1),
        );
        let body = Bytes::from_static(br#"{"type":"order_create"}"#);
        let request = acp_order(&hook, "evt_1", body.clone(), now).unwrap();
        let header = |name: http::HeaderName| request.headers[name].to_str().unwrap().to_owned();
        let ts = now.timestamp();
        let merchant = header(MERCHANT_SIGNATURE);
        assert_eq!(
            signature::verify_merchant_signature(b"two", &merchant, &body, ts),
            Ok(())
        );
        assert_eq!(merchant.matches("v1=").count(), 1, "ACP's header holds exactly one");
        assert_eq!(header(WEBHOOK_ID), "evt_1");
        let signatures = header(WEBHOOK_SIGNATURE);
        for secret in ["two", "one"] {
            let expected = signature::sign_raw(secret.as_bytes(), "evt_1", ts, &body).unwrap();
            assert!(
                signatures.split(' ').any(|s| s == expected),
                "{secret} signs in the overlap"
            );
        }
        let later = now + chrono::Duration::hours(2);
        let request = acp_order(&hook, "evt_1", body, later).unwrap();
        assert_eq!(
            request.headers[WEBHOOK_SIGNATURE].to_str().unwrap().split(' ').count(),
            1
        );
    }

    /// Found by the independent verifiers' run: a rotation without grace at 12:00:00.5 left the
    /// old secret signing until 12:00:01, since the delivery time was cut to its second.
    #[test]
    fn a_credential_stops_signing_at_its_end_not_at_the_end_of_that_second() {
        use checkout::webhook_endpoint::SignatureScheme;
        let m = merchant();
        let e = event(&m, None, 1);
        let second = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let mut endpoint = WebhookEndpoint::new(m.id.clone(), "https://hooks.example.com/a".into(), second).unwrap();
        endpoint.set_signature_scheme(SignatureScheme::Both, second).unwrap();
        let rotated_at = second + chrono::Duration::milliseconds(500);
        endpoint.rotate(rotated_at, chrono::Duration::zero()).unwrap();
        let later = second + chrono::Duration::milliseconds(700);
        let body = Bytes::from_static(b"{}");
        let request = standard(&EventHead::from(&e), body, &endpoint, 1, later).unwrap();
        let signatures = request.headers[WEBHOOK_SIGNATURE].to_str().unwrap();
        assert_eq!(
            signatures.split(' ').count(),
            2,
            "one v1 and one v1a, the new ones only: {signatures}"
        );
        assert_eq!(
            request.headers[WEBHOOK_KEY_ID].to_str().unwrap(),
            endpoint.signing_keys[0].kid
        );
    }
}
