//! The exact request of one delivery attempt. The body is serialized once and those bytes are
//! both signed and sent.

use crate::headers::*;
use bytes::Bytes;
use checkout::delivery_task::EventHead;
use checkout::signature::{self, SignatureError};
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
/// signed with every secret that signs at `now` (unix seconds).
pub fn standard(
    event: &EventHead,
    body: Bytes,
    endpoint: &WebhookEndpoint,
    attempt: u32,
    now: i64,
) -> Result<WebhookRequest, SignatureError> {
    let at = chrono::DateTime::from_timestamp(now, 0).unwrap_or_default();
    let signature = signature::signature_header(endpoint.signing_secrets(at), event.id.as_str(), now, &body)?;
    let mut headers = HeaderMap::with_capacity(8);
    headers.insert(CONTENT_TYPE, JSON);
    headers.insert(WEBHOOK_ID, text(event.id.as_str())?);
    headers.insert(WEBHOOK_TIMESTAMP, HeaderValue::from(now));
    headers.insert(WEBHOOK_SIGNATURE, text(&signature)?);
    headers.insert(WEBHOOK_SEQUENCE, HeaderValue::from(event.version));
    headers.insert(WEBHOOK_ATTEMPT, HeaderValue::from(attempt));
    Ok(WebhookRequest {
        url: endpoint.url.clone(),
        headers,
        body,
    })
}

/// An ACP order webhook (`{type, data: Order}`) signed with `Merchant-Signature`.
pub fn acp_order(url: &str, secret: &str, body: Bytes, now: i64) -> Result<WebhookRequest, SignatureError> {
    let signature = signature::merchant_signature(secret.as_bytes(), now, &body)?;
    let mut headers = HeaderMap::with_capacity(2);
    headers.insert(CONTENT_TYPE, JSON);
    headers.insert(MERCHANT_SIGNATURE, text(&signature)?);
    Ok(WebhookRequest {
        url: url.to_owned(),
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
        let now = checkout::clock::now().timestamp();
        let body = Bytes::from(serde_json::to_vec(&e).unwrap());
        let request = standard(&EventHead::from(&e), body.clone(), &endpoint, 3, now).unwrap();
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
    }
}
