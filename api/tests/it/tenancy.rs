//! A merchant sees only its own sessions: anyone else's is a 404, whatever the verb.

use crate::app::{TestApp, add_merchant, expect, payment, shipping_details};
use crate::on_every_backend;
use crate::schema::assert_error;

on_every_backend!(other_merchants_sessions_do_not_exist);

async fn other_merchants_sessions_do_not_exist(app: TestApp) {
    let ready = app.ready().await;
    let id = ready["id"].as_str().unwrap();
    let (_, other_key) = add_merchant(&app.backend).await;

    let get = app
        .client
        .get(app.url(&format!("/checkout_sessions/{id}")))
        .bearer_auth(&other_key)
        .send()
        .await
        .unwrap();
    assert_error(&expect(get, 404).await, "not_found");
    for (path, body) in [
        (format!("/checkout_sessions/{id}"), shipping_details()),
        (format!("/checkout_sessions/{id}/complete"), payment("spt_test_approve")),
        (format!("/checkout_sessions/{id}/cancel"), serde_json::json!({})),
    ] {
        let response = app.post_as(&other_key, &path, &body).send().await.unwrap();
        assert_error(&expect(response, 404).await, "not_found");
    }
    assert_eq!(app.history_len(id).await, 2, "nothing changed");
    let own = expect(app.get(&format!("/checkout_sessions/{id}")).send().await.unwrap(), 200).await;
    assert_eq!(own["status"], "ready_for_payment");
}
