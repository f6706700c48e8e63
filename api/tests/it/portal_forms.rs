//! The portal's forms that change endpoints, as a merchant and an attacker use them: add, edit,
//! rotate, delete, replay; a secret shown once; what is refused changes nothing; another
//! merchant's endpoint cannot be reached; the event schemas hold what we send.

use crate::app::{TestApp, add_merchant, expect};
use crate::on_every_backend;
use crate::portal::{browser, csrf_of, field, page, register, register_as, session};
use checkout::attempt_log::AttemptStatus;
use checkout::event::EventType;
use checkout::event_docs;
use checkout::ids::{EndpointId, SessionId};
use checkout::testkit::attempt_record;
use serde_json::{Value, json};

on_every_backend!(
    endpoints_are_added_edited_rotated_and_deleted_from_the_portal,
    a_refused_form_is_shown_again_and_changes_nothing,
    another_merchants_endpoint_cannot_be_changed_from_the_portal,
    forms_without_the_csrf_token_change_nothing,
    a_replay_is_previewed_then_started,
    the_event_schemas_hold_what_is_sent,
    switching_to_hmac_in_the_portal_shows_the_secret,
);

async fn post_form(app: &TestApp, cookie: &str, path: &str, form: &[(&str, &str)]) -> (u16, Option<String>, String) {
    let answer = browser()
        .post(app.url(path))
        .header("cookie", cookie)
        .form(form)
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    let location = answer.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
    (status, location, answer.text().await.unwrap())
}

async fn endpoint(app: &TestApp, id: &str) -> Value {
    expect(app.get(&format!("/webhook_endpoints/{id}")).send().await.unwrap(), 200).await
}

/// The secret shown on a page, if any.
fn shown_secret(page: &str) -> Option<String> {
    let after = page.split("<pre class=\"secret\">").nth(1)?;
    Some(after.split('<').next()?.to_owned())
}

async fn stored_secret(app: &TestApp, id: &str) -> String {
    let stored = app
        .backend
        .endpoints
        .endpoint(&app.merchant.id, &EndpointId::parse(id).unwrap())
        .await
        .unwrap()
        .unwrap();
    stored.current_secret().unwrap().to_owned()
}

async fn endpoints_are_added_edited_rotated_and_deleted_from_the_portal(app: TestApp) {
    let cookie = session(&app, &app.api_key).await;
    let (status, _, new) = page(&app, &cookie, "/portal/endpoints/new").await;
    assert_eq!(status, 200, "{new}");
    let csrf = csrf_of(&new);
    let form_id = field(&new, "form_id");
    let form = [
        ("csrf", csrf.as_str()),
        ("form_id", form_id.as_str()),
        ("url", "https://hooks.example.com/from-the-portal"),
        ("description", "Orders"),
        ("event_types", "checkout.session.created"),
        ("event_types", "checkout.session.completed"),
        ("event_types", "checkout.session.created"),
        ("signature_scheme", "both"),
        ("rate_limit", "5"),
    ];
    let (status, _, added) = post_form(&app, &cookie, "/portal/endpoints/new", &form).await;
    assert_eq!(status, 200, "{added}");
    // The page reloaded posts the form again: the same endpoint and secret, not a second one.
    let (status, _, reloaded) = post_form(&app, &cookie, "/portal/endpoints/new", &form).await;
    assert_eq!(status, 200, "{reloaded}");
    assert_eq!(shown_secret(&reloaded), shown_secret(&added), "the same secret");
    // A triple click of another form: three posts at once, one endpoint, each shown its secret.
    let (_, _, other) = page(&app, &cookie, "/portal/endpoints/new").await;
    let other_id = field(&other, "form_id");
    let mut clicked = form;
    clicked[1] = ("form_id", other_id.as_str());
    clicked[2] = ("url", "https://hooks.example.com/clicked");
    let posts = (0..3).map(|_| post_form(&app, &cookie, "/portal/endpoints/new", &clicked));
    let answers = futures_util::future::join_all(posts).await;
    let secrets: Vec<_> = answers
        .iter()
        .map(|(status, _, body)| (*status, shown_secret(body)))
        .collect();
    assert!(
        secrets
            .iter()
            .all(|(status, secret)| *status == 200 && secret.is_some()),
        "{secrets:?}"
    );
    assert!(secrets.windows(2).all(|w| w[0].1 == w[1].1), "one secret: {secrets:?}");
    let listed = expect(app.get("/webhook_endpoints").send().await.unwrap(), 200).await;
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        2,
        "one endpoint per form: {listed}"
    );
    let clicked_id = listed["data"][1]["id"].as_str().unwrap().to_owned();
    let deleted = app
        .client
        .delete(app.url(&format!("/webhook_endpoints/{clicked_id}")))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let listed = expect(app.get("/webhook_endpoints").send().await.unwrap(), 200).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "one endpoint: {listed}");
    let made = &listed["data"][0];
    let id = made["id"].as_str().unwrap().to_owned();
    assert_eq!(made["url"], "https://hooks.example.com/from-the-portal");
    assert_eq!(
        made["event_types"],
        json!(["checkout.session.created", "checkout.session.completed"])
    );
    assert_eq!(
        (&made["description"], &made["signature_scheme"], &made["rate_limit"]),
        (&json!("Orders"), &json!("both"), &json!(5))
    );
    let secret = shown_secret(&added).expect("the secret is shown");
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert_eq!(secret, stored_secret(&app, &id).await, "the one that signs");
    assert!(
        added.contains(made["signing_keys"][0]["kid"].as_str().unwrap()),
        "its key id"
    );
    // Shown once: no other page has it.
    for path in [
        format!("/portal/endpoints/{id}"),
        format!("/portal/endpoints/{id}/edit"),
        format!("/portal/endpoints/{id}/verify"),
        "/portal/".to_owned(),
    ] {
        let (status, _, body) = page(&app, &cookie, &path).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(!body.contains(&secret), "{path} shows the secret");
    }

    // Edit: every field as the form holds it; unticked boxes mean all events and disabled.
    let (_, _, edit) = page(&app, &cookie, &format!("/portal/endpoints/{id}/edit")).await;
    assert!(
        edit.contains("value=\"https://hooks.example.com/from-the-portal\""),
        "{edit}"
    );
    let (status, location, body) = post_form(
        &app,
        &cookie,
        &format!("/portal/endpoints/{id}/edit"),
        &[
            ("csrf", &csrf_of(&edit)),
            ("url", "https://hooks.example.com/edited"),
            ("description", ""),
            ("signature_scheme", "hmac"),
            ("rate_limit", ""),
        ],
    )
    .await;
    assert_eq!(
        (status, location.as_deref()),
        (303, Some(format!("../{id}").as_str())),
        "{body}"
    );
    let edited = endpoint(&app, &id).await;
    assert_eq!(edited["url"], "https://hooks.example.com/edited");
    assert_eq!(edited["event_types"], json!([]));
    assert_eq!(
        (&edited["description"], &edited["rate_limit"], &edited["enabled"]),
        (&Value::Null, &Value::Null, &json!(false))
    );
    assert_eq!(edited["signature_scheme"], "hmac");

    // Rotate without grace: a new secret, shown once; the old one no longer signs.
    let (_, _, rotate) = page(&app, &cookie, &format!("/portal/endpoints/{id}/rotate")).await;
    let rotation = [
        ("csrf", csrf_of(&rotate)),
        ("form_id", field(&rotate, "form_id")),
        ("grace_period_seconds", "0".to_owned()),
    ];
    let rotation: Vec<(&str, &str)> = rotation.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _, rotated) = post_form(&app, &cookie, &format!("/portal/endpoints/{id}/rotate"), &rotation).await;
    assert_eq!(status, 200, "{rotated}");
    let new_secret = shown_secret(&rotated).expect("the new secret is shown");
    // Reloaded: the same page, not a second rotation that would end the secret just copied.
    let (status, _, again) = post_form(&app, &cookie, &format!("/portal/endpoints/{id}/rotate"), &rotation).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(shown_secret(&again).as_deref(), Some(new_secret.as_str()));
    assert_ne!(new_secret, secret);
    assert_eq!(new_secret, stored_secret(&app, &id).await);
    assert!(rotated.contains("stopped signing now"), "{rotated}");
    let stored = app
        .backend
        .endpoints
        .endpoint(&app.merchant.id, &EndpointId::parse(&id).unwrap())
        .await
        .unwrap()
        .unwrap();
    let signing: Vec<&str> = stored.hmac_secrets(checkout::clock::now()).collect();
    assert_eq!(signing, vec![new_secret.as_str()], "the old secret ended");

    // Delete, after the page that asks.
    let (status, _, ask) = page(&app, &cookie, &format!("/portal/endpoints/{id}/delete")).await;
    assert_eq!(status, 200);
    let (status, location, _) = post_form(
        &app,
        &cookie,
        &format!("/portal/endpoints/{id}/delete"),
        &[("csrf", &csrf_of(&ask))],
    )
    .await;
    assert_eq!((status, location.as_deref()), (303, Some("../../")));
    let gone = app.get(&format!("/webhook_endpoints/{id}")).send().await.unwrap();
    assert_eq!(gone.status(), 404);
}

async fn a_refused_form_is_shown_again_and_changes_nothing(app: TestApp) {
    let cookie = session(&app, &app.api_key).await;
    let (_, _, new) = page(&app, &cookie, "/portal/endpoints/new").await;
    let csrf = csrf_of(&new);
    let form_id = field(&new, "form_id");
    for (url, rate, scheme, says) in [
        ("http://internal.example.com/x", "", "hmac", "not allowed"),
        ("https://hooks.example.com/x", "fast", "hmac", "whole number"),
        ("https://hooks.example.com/x", "0", "hmac", "rate_limit"),
        ("https://hooks.example.com/x", "", "rsa", "Choose how"),
    ] {
        let (status, _, body) = post_form(
            &app,
            &cookie,
            "/portal/endpoints/new",
            &[
                ("csrf", &csrf),
                ("form_id", &form_id),
                ("url", url),
                ("rate_limit", rate),
                ("signature_scheme", scheme),
            ],
        )
        .await;
        assert_eq!(status, 400, "{url} {rate} {scheme}: {body}");
        assert!(body.contains(says), "{says}: {body}");
        assert!(
            body.contains(&format!("value=\"{url}\"")),
            "what was entered is kept: {body}"
        );
        assert!(shown_secret(&body).is_none());
    }
    let listed = expect(app.get("/webhook_endpoints").send().await.unwrap(), 200).await;
    assert_eq!(listed["data"], json!([]), "nothing was added");
    let id = register(&app, "https://hooks.example.com/kept").await;
    let (_, _, edit) = page(&app, &cookie, &format!("/portal/endpoints/{id}/edit")).await;
    let (status, _, body) = post_form(
        &app,
        &cookie,
        &format!("/portal/endpoints/{id}/edit"),
        &[
            ("csrf", &csrf_of(&edit)),
            ("url", "https://metadata.example.com/x"),
            ("signature_scheme", "hmac"),
            ("enabled", "1"),
        ],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(endpoint(&app, &id).await["url"], "https://hooks.example.com/kept");
    let (_, _, rotate) = page(&app, &cookie, &format!("/portal/endpoints/{id}/rotate")).await;
    let before = stored_secret(&app, &id).await;
    let (status, _, _) = post_form(
        &app,
        &cookie,
        &format!("/portal/endpoints/{id}/rotate"),
        &[
            ("csrf", &csrf_of(&rotate)),
            ("form_id", &field(&rotate, "form_id")),
            ("grace_period_seconds", "99999999"),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(stored_secret(&app, &id).await, before, "not rotated");
}

async fn another_merchants_endpoint_cannot_be_changed_from_the_portal(app: TestApp) {
    let theirs = register(&app, "https://hooks.example.com/theirs").await;
    let secret = stored_secret(&app, &theirs).await;
    let (_, other_key) = add_merchant(&app.backend).await;
    let mine = session(&app, &other_key).await;
    let own = register_as(&app, &other_key, "https://hooks.example.com/mine").await;
    let (_, _, own_page) = page(&app, &mine, &format!("/portal/endpoints/{own}/edit")).await;
    let csrf = csrf_of(&own_page);
    for sub in ["edit", "delete", "rotate", "replay", "verify"] {
        let (status, _, body) = page(&app, &mine, &format!("/portal/endpoints/{theirs}/{sub}")).await;
        assert_eq!(status, 404, "{sub}");
        assert!(!body.contains("theirs"), "{body}");
    }
    for (sub, extra) in [
        (
            "edit",
            vec![
                ("url", "https://hooks.example.com/stolen"),
                ("signature_scheme", "hmac"),
            ],
        ),
        ("rotate", vec![("grace_period_seconds", "0")]),
        ("replay", vec![("since", "2026-01-01T00:00")]),
        ("delete", vec![]),
    ] {
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend(extra);
        let (status, _, body) = post_form(&app, &mine, &format!("/portal/endpoints/{theirs}/{sub}"), &form).await;
        assert_eq!(status, 404, "{sub}: {body}");
        assert!(shown_secret(&body).is_none());
    }
    let after = endpoint(&app, &theirs).await;
    assert_eq!(after["url"], "https://hooks.example.com/theirs");
    assert_eq!(stored_secret(&app, &theirs).await, secret, "not rotated");
}

async fn forms_without_the_csrf_token_change_nothing(app: TestApp) {
    let id = register(&app, "https://hooks.example.com/guarded").await;
    let secret = stored_secret(&app, &id).await;
    let cookie = session(&app, &app.api_key).await;
    for (path, form) in [
        (
            "/portal/endpoints/new".to_owned(),
            vec![
                ("url", "https://hooks.example.com/forged"),
                ("signature_scheme", "hmac"),
            ],
        ),
        (
            format!("/portal/endpoints/{id}/edit"),
            vec![
                ("url", "https://hooks.example.com/forged"),
                ("signature_scheme", "hmac"),
            ],
        ),
        (
            format!("/portal/endpoints/{id}/rotate"),
            vec![("grace_period_seconds", "0")],
        ),
        (
            format!("/portal/endpoints/{id}/replay"),
            vec![("since", "2026-01-01T00:00")],
        ),
        (format!("/portal/endpoints/{id}/delete"), vec![]),
    ] {
        for csrf in [None, Some("forged")] {
            let mut sent = form.clone();
            if let Some(csrf) = csrf {
                sent.push(("csrf", csrf));
            }
            let (status, _, body) = post_form(&app, &cookie, &path, &sent).await;
            assert_eq!(status, 403, "{path} {csrf:?}: {body}");
        }
    }
    let listed = expect(app.get("/webhook_endpoints").send().await.unwrap(), 200).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "nothing added or deleted");
    assert_eq!(listed["data"][0]["url"], "https://hooks.example.com/guarded");
    assert_eq!(stored_secret(&app, &id).await, secret);
    let replays = app
        .get(&format!("/webhook_endpoints/{id}/replays/rpl_none"))
        .send()
        .await
        .unwrap();
    assert_eq!(replays.status(), 404);
    assert_eq!(app.run_replay_steps().await, 0, "no replay started");
}

async fn a_replay_is_previewed_then_started(app: TestApp) {
    let id = register(&app, "https://hooks.example.com/replayed").await;
    // Three sessions: two events never received (one of them tried twice), one delivered.
    let mut events = Vec::new();
    for _ in 0..3 {
        let session_id = SessionId::parse(app.create().await["id"].as_str().unwrap()).unwrap();
        events.push(app.backend.events.history(&session_id).await.unwrap().remove(0));
    }
    for (i, event) in events.iter().enumerate() {
        let mut record = attempt_record(&id, event, 1);
        record.status = if i == 2 {
            AttemptStatus::Succeeded
        } else {
            AttemptStatus::Failed
        };
        record.next_attempt_at = None;
        app.backend.deliveries.record(&record).await.unwrap();
    }
    let mut retry = attempt_record(&id, &events[0], 2);
    retry.status = AttemptStatus::Failed;
    retry.next_attempt_at = None;
    app.backend.deliveries.record(&retry).await.unwrap();

    let cookie = session(&app, &app.api_key).await;
    let (status, _, form) = page(&app, &cookie, &format!("/portal/endpoints/{id}/replay")).await;
    assert_eq!(status, 200);
    assert!(!form.contains("would be sent"), "no preview before a window is given");
    let since = (checkout::clock::now() - chrono::Duration::hours(1))
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    let (status, _, preview) = page(&app, &cookie, &format!("/portal/endpoints/{id}/replay?since={since}")).await;
    assert_eq!(status, 200, "{preview}");
    assert!(
        preview.contains("<strong>2</strong> events would be sent: 3 events of the window"),
        "{preview}"
    );
    let (_, _, with_delivered) = page(
        &app,
        &cookie,
        &format!("/portal/endpoints/{id}/replay?since={since}&include_delivered=1"),
    )
    .await;
    assert!(
        with_delivered.contains("<strong>3</strong> events would be sent"),
        "{with_delivered}"
    );
    let (status, _, refused) = page(&app, &cookie, &format!("/portal/endpoints/{id}/replay?since=yesterday")).await;
    assert_eq!(status, 400);
    assert!(refused.contains("date and time"), "{refused}");
    let (status, _, future) = page(
        &app,
        &cookie,
        &format!("/portal/endpoints/{id}/replay?since={since}&until=2999-01-01T00:00"),
    )
    .await;
    assert_eq!(status, 400);
    assert!(future.contains("in the future"), "{future}");

    let (status, location, _) = post_form(
        &app,
        &cookie,
        &format!("/portal/endpoints/{id}/replay"),
        &[
            ("csrf", &csrf_of(&preview)),
            ("form_id", &field(&preview, "form_id")),
            ("since", &since),
        ],
    )
    .await;
    assert_eq!((status, location.as_deref()), (303, Some(format!("../{id}").as_str())));
    // The same form again (a double click, a reload): no second replay.
    let (status, _, _) = post_form(
        &app,
        &cookie,
        &format!("/portal/endpoints/{id}/replay"),
        &[
            ("csrf", &csrf_of(&preview)),
            ("form_id", &field(&preview, "form_id")),
            ("since", &since),
        ],
    )
    .await;
    assert_eq!(status, 303);
    assert!(app.run_replay_steps().await >= 1);
    let (_, _, shown) = page(&app, &cookie, &format!("/portal/endpoints/{id}")).await;
    assert!(
        shown.contains("<strong>completed</strong>, 2 sent of 3 events looked at"),
        "the replay's progress: {shown}"
    );
}

/// The schema with the ACP bundle's definitions taken in, so a validator needs nothing else.
fn standalone(kind: EventType, acp: &Value) -> Value {
    let mut schema = event_docs::schema(kind);
    let text = serde_json::to_string(&schema)
        .unwrap()
        .replace(&format!("{}#/$defs/", event_docs::ACP_SCHEMA_FILE), "#/$defs/");
    schema = serde_json::from_str(&text).unwrap();
    schema["$defs"] = acp["$defs"].clone();
    schema.as_object_mut().unwrap().remove("$id");
    schema
}

fn assert_holds(schema: &Value, instance: &Value) {
    let validator = jsonschema::validator_for(schema).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{}\n{instance:#}", errors.join("\n"));
}

async fn the_event_schemas_hold_what_is_sent(app: TestApp) {
    let cookie = session(&app, &app.api_key).await;
    let (status, _, types) = page(&app, &cookie, "/portal/event-types").await;
    assert_eq!(status, 200, "{types}");
    let acp: Value = browser()
        .get(app.url(&format!("/portal/schemas/{}", event_docs::ACP_SCHEMA_FILE)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for kind in event_docs::DOCUMENTED {
        assert!(
            types.contains(&format!("id=\"{}\"", kind.as_str())),
            "{kind:?} is listed"
        );
        let served = browser()
            .get(app.url(&format!("/portal/schemas/{}", event_docs::schema_file(kind))))
            .send()
            .await
            .unwrap();
        assert_eq!(served.status(), 200);
        assert_eq!(served.headers()["content-type"], "application/schema+json");
        let served: Value = served.json().await.unwrap();
        assert_eq!(served, event_docs::schema(kind));
        let example = event_docs::example(kind, &app.merchant.id, checkout::clock::now()).unwrap();
        assert_holds(&standalone(kind, &acp), &example);
    }
    // Real events of a checkout, as stored and sent, hold too; and a wrong one does not.
    let session_id = app.ready().await["id"].as_str().unwrap().to_owned();
    expect(app.complete(&session_id, "spt_test_approve").await, 200).await;
    let history = app
        .backend
        .events
        .history(&SessionId::parse(&session_id).unwrap())
        .await
        .unwrap();
    for event in &history {
        let sent = serde_json::to_value(event).unwrap();
        assert_holds(&standalone(event.kind, &acp), &sent);
    }
    let mut wrong = serde_json::to_value(&history[0]).unwrap();
    wrong["type"] = json!("checkout.session.completed");
    let validator = jsonschema::validator_for(&standalone(EventType::Created, &acp)).unwrap();
    assert!(!validator.is_valid(&wrong));
    let (status, _, _) = page(&app, &cookie, "/portal/schemas/..%2F..%2Fetc%2Fpasswd").await;
    assert_eq!(status, 404);
}

/// An endpoint made to sign with ed25519 has never shown a secret: switching it to HMAC in the
/// portal shows the secret it now signs with, instead of leaving the receiver without it.
async fn switching_to_hmac_in_the_portal_shows_the_secret(app: TestApp) {
    let created = expect(
        app.post(
            "/webhook_endpoints",
            &json!({"url": "https://hooks.example.com/keys", "signature_scheme": "ed25519"}),
        )
        .send()
        .await
        .unwrap(),
        201,
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let cookie = session(&app, &app.api_key).await;
    let (_, _, edit) = page(&app, &cookie, &format!("/portal/endpoints/{id}/edit")).await;
    assert!(edit.contains("ends its ed25519 key at once"), "the form warns: {edit}");
    let (status, _, shown) = post_form(
        &app,
        &cookie,
        &format!("/portal/endpoints/{id}/edit"),
        &[
            ("csrf", &csrf_of(&edit)),
            ("url", "https://hooks.example.com/keys"),
            ("signature_scheme", "both"),
            ("enabled", "1"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown_secret(&shown), Some(stored_secret(&app, &id).await), "{shown}");
    assert_ne!(
        shown_secret(&shown).as_deref(),
        created["secret"].as_str(),
        "a fresh one"
    );
    // A change that keeps HMAC as it was goes back to the endpoint, showing nothing.
    let (_, _, edit) = page(&app, &cookie, &format!("/portal/endpoints/{id}/edit")).await;
    let (status, location, _) = post_form(
        &app,
        &cookie,
        &format!("/portal/endpoints/{id}/edit"),
        &[
            ("csrf", &csrf_of(&edit)),
            ("url", "https://hooks.example.com/keys"),
            ("signature_scheme", "hmac"),
            ("enabled", "1"),
        ],
    )
    .await;
    assert_eq!((status, location.as_deref()), (303, Some(format!("../{id}").as_str())));
}
