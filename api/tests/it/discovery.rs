//! `/.well-known/acp.json`: public, valid against the spec's `DiscoveryResponse`, cacheable,
//! the same for every merchant.

use crate::app::{TestApp, embedded};
use crate::schema::assert_valid;

#[tokio::test]
async fn the_discovery_document_is_public_valid_and_names_no_merchant() {
    let app = TestApp::spawn(embedded().await).await;
    // No API key: an agent reads it before it has one.
    let response = app.client.get(app.url("/.well-known/acp.json")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "public, max-age=3600");
    assert_eq!(response.headers()["content-type"], "application/json");
    let text = response.text().await.unwrap();
    assert!(!text.contains("mer_"), "no merchant id: {text}");
    let document: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_valid("DiscoveryResponse", &document);
    assert_eq!(document["api_base_url"], app.base.as_str());
    assert_eq!(document["protocol"]["version"], "2026-04-17");
    let versions = document["protocol"]["supported_versions"].as_array().unwrap();
    assert_eq!(versions.last().unwrap(), "2026-04-17", "oldest first, the latest last");
    assert_eq!(document["capabilities"]["services"], serde_json::json!(["checkout"]));
    assert_eq!(
        document["capabilities"]["supported_currencies"],
        serde_json::json!(["usd"])
    );
    let post = app.client.post(app.url("/.well-known/acp.json")).send().await.unwrap();
    assert_eq!(post.status(), 405);
}
