//! `acp-admin merchant create / rotate-key`: the new key works over HTTP, a rotated one does not.

use crate::app::{TestApp, expect};
use crate::on_every_backend;
use api::onboarding::{self, NewMerchant, OnboardingError};
use checkout::catalog::Catalog;
use checkout::ids::MerchantId;

on_every_backend!(a_created_merchant_can_call_the_api_until_its_key_is_rotated);

async fn a_created_merchant_can_call_the_api_until_its_key_is_rotated(app: TestApp) {
    let id = MerchantId::parse(&format!("mer_{}", ulid::Ulid::new())).unwrap();
    let new = || NewMerchant {
        id: id.clone(),
        name: "Corner Shop".to_owned(),
        catalog: Catalog::demo(),
        order_url_base: "https://corner.example.com/orders".to_owned(),
        links: vec![checkout::acp::Link {
            kind: "terms_of_use".to_owned(),
            url: "https://corner.example.com/terms".to_owned(),
        }],
    };
    let (merchant, key) = onboarding::create_merchant(app.backend.merchants.as_ref(), new())
        .await
        .unwrap();
    assert_eq!(merchant.name, "Corner Shop");
    let body = serde_json::json!({"currency": "usd", "line_items": [{"id": "test_1", "quantity": 1}]});
    let created = expect(
        app.post_as(&key, "/checkout_sessions", &body).send().await.unwrap(),
        201,
    )
    .await;
    assert!(created["id"].as_str().is_some());
    // Its own legal links, not the demo shop's.
    assert_eq!(
        created["links"],
        serde_json::json!([{"type": "terms_of_use", "url": "https://corner.example.com/terms"}])
    );

    let again = onboarding::create_merchant(app.backend.merchants.as_ref(), new()).await;
    assert!(matches!(again, Err(OnboardingError::AlreadyExists(_))), "{again:?}");
    let stored = app.backend.merchants.merchant(&id).await.unwrap().unwrap();
    assert_eq!(
        stored.api_key_hash, merchant.api_key_hash,
        "a refused create changes nothing"
    );

    let rotated = onboarding::rotate_api_key(app.backend.merchants.as_ref(), &id)
        .await
        .unwrap();
    // A running instance may hold the old key for its cache's lifetime; a fresh one must not.
    let fresh = TestApp::spawn(app.backend.clone()).await;
    let old = fresh.post_as(&key, "/checkout_sessions", &body).send().await.unwrap();
    assert_eq!(old.status(), 401);
    expect(
        fresh
            .post_as(&rotated, "/checkout_sessions", &body)
            .send()
            .await
            .unwrap(),
        201,
    )
    .await;

    let unknown = MerchantId::parse("mer_nobody").unwrap();
    let missing = onboarding::rotate_api_key(app.backend.merchants.as_ref(), &unknown).await;
    assert!(matches!(missing, Err(OnboardingError::NotFound(_))), "{missing:?}");
}
