// Cargo.toml: ring = "0.17", base64 = "0.22", http = "1", serde_json = "1"
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// The event, if a key of `keys` signed it for `my_merchant_id` within the last 5 minutes.
/// `keys` is the JWK Set at {{KEYS_URL}}: fetch it again every 5 minutes (a key leaves it when
/// its grace ends) and when a kid is unknown (a new key signs at once), at most every 10 s.
/// `body` is the raw request body.
pub fn verify_v1a(
    keys: &serde_json::Value,
    my_merchant_id: &str,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<serde_json::Value, String> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let timestamp: i64 = header("webhook-timestamp").parse().map_err(|_| "no webhook-timestamp")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| "the clock is before 1970")?
        .as_secs() as i64;
    if (now - timestamp).abs() > 300 {
        return Err("the timestamp is more than 5 minutes away".into());
    }
    let mut content = format!("{}.{timestamp}.", header("webhook-id")).into_bytes();
    content.extend_from_slice(body);
    let signatures = header("webhook-signature").split(' ').filter_map(|s| s.strip_prefix("v1a,"));
    for (kid, signature) in header("webhook-key-id").split(' ').zip(signatures) {
        let jwk = keys["keys"].as_array().into_iter().flatten().find(|k| k["kid"] == kid);
        let Some(x) = jwk.and_then(|k| k["x"].as_str()) else { continue };
        let (Ok(x), Ok(signature)) = (URL_SAFE_NO_PAD.decode(x), STANDARD.decode(signature)) else { continue };
        let key = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, x);
        if key.verify(&content, &signature).is_ok() {
            let event: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
            if event["merchant_id"] != my_merchant_id {
                return Err("signed for another merchant".into());
            }
            return Ok(event);
        }
    }
    Err("not signed by a published key".into())
}
