// Cargo.toml: standardwebhooks = "1", http = "1", serde_json = "1"

/// The event, if we signed it within the last 5 minutes. `secret` is the endpoint's secret
/// (whsec_...), shown once when it was made or rotated; `body` the raw request body.
pub fn verify(secret: &str, headers: &http::HeaderMap, body: &[u8]) -> Result<serde_json::Value, String> {
    let webhook = standardwebhooks::Webhook::new(secret).map_err(|e| e.to_string())?;
    // Reads webhook-id, webhook-timestamp and webhook-signature.
    webhook.verify(body, headers).map_err(|e| e.to_string())?;
    serde_json::from_slice(body).map_err(|e| e.to_string())
}
