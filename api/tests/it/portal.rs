//! The merchant portal as an attacker meets it: links and sessions that are expired, changed or
//! of the wrong kind; another merchant's endpoint and event; forms without their CSRF token;
//! the Content-Security-Policy; a receiver's answer holding HTML.

use crate::app::{TestApp, add_merchant, expect};
use crate::on_every_backend;
use checkout::attempt_log::AttemptStatus;
use checkout::ids::{EndpointId, SessionId};
use checkout::portal_access::{self, TokenKind};
use checkout::testkit::attempt_record;
use serde_json::json;

on_every_backend!(
    a_portal_link_opens_a_session_that_shows_the_endpoints,
    expired_changed_or_misused_tokens_are_refused,
    another_merchants_endpoint_is_not_found_in_the_portal,
    a_form_without_its_csrf_token_changes_nothing,
    a_receivers_html_is_shown_as_text,
    revoking_or_rotating_the_api_key_ends_every_session,
    every_portal_answer_has_its_security_headers,
    a_filter_pages_on_past_records_it_did_not_match,
);

/// A client that keeps no cookies and follows no redirect: each test says what it sends.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub async fn link(app: &TestApp, api_key: &str) -> String {
    let made = expect(
        app.post_as(api_key, "/portal_links", &json!({})).send().await.unwrap(),
        201,
    )
    .await;
    made["url"].as_str().unwrap().to_owned()
}

/// A hidden field's value on a page.
pub fn field(page: &str, name: &str) -> String {
    let after = page
        .split(&format!("name=\"{name}\" value=\""))
        .nth(1)
        .unwrap_or_else(|| panic!("no {name} on {page}"));
    after.split('"').next().unwrap().to_owned()
}

/// The `name=value` of the `Set-Cookie` of `name` in an answer.
pub fn set_cookie(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with(&format!("{name}=")))
}

/// Posts the sign-in page of `link` as the browser that opened it: the answer.
pub async fn sign_in(app: &TestApp, link: &str) -> reqwest::Response {
    let opened = browser().get(link).send().await.unwrap();
    assert_eq!(opened.status(), 200);
    let login = set_cookie(opened.headers(), "acp_portal_login").expect("the sign-in page's cookie");
    let page = opened.text().await.unwrap();
    browser()
        .post(app.url("/portal/login"))
        .header("cookie", login.split(';').next().unwrap())
        .form(&[("token", field(&page, "token")), ("nonce", field(&page, "nonce"))])
        .send()
        .await
        .unwrap()
}

/// Opens a link and signs in; the session cookie's `name=value`.
pub async fn session(app: &TestApp, api_key: &str) -> String {
    let signed_in = sign_in(app, &link(app, api_key).await).await;
    assert_eq!(signed_in.status(), 303);
    let cookie = set_cookie(signed_in.headers(), "acp_portal").expect("the session cookie");
    cookie.split(';').next().unwrap().to_owned()
}

pub async fn page(app: &TestApp, cookie: &str, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let response = browser()
        .get(app.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    (status, headers, response.text().await.unwrap())
}

pub async fn register_as(app: &TestApp, api_key: &str, url: &str) -> String {
    let created = expect(
        app.post_as(api_key, "/webhook_endpoints", &json!({ "url": url }))
            .send()
            .await
            .unwrap(),
        201,
    )
    .await;
    created["id"].as_str().unwrap().to_owned()
}

pub async fn register(app: &TestApp, url: &str) -> String {
    let created = expect(
        app.post("/webhook_endpoints", &json!({ "url": url }))
            .send()
            .await
            .unwrap(),
        201,
    )
    .await;
    created["id"].as_str().unwrap().to_owned()
}

async fn a_portal_link_opens_a_session_that_shows_the_endpoints(app: TestApp) {
    let id = register(&app, "https://hooks.example.com/portal").await;
    let url = link(&app, &app.api_key).await;
    assert!(url.starts_with(&format!("{}/portal/login?token=", app.base)), "{url}");
    let opened = browser().get(&url).send().await.unwrap();
    assert_eq!(opened.status(), 200);
    assert!(
        set_cookie(opened.headers(), "acp_portal").is_none(),
        "opening a link signs nothing in"
    );
    let asks = opened.headers().clone();
    let question = opened.text().await.unwrap();
    assert!(
        question.contains(&format!("Sign in to the webhooks of {}?", app.merchant.name)),
        "{question}"
    );
    let signed_in = sign_in(&app, &url).await;
    assert_eq!(signed_in.status(), 303);
    assert_eq!(signed_in.headers()["location"], "./");
    let cookie = set_cookie(signed_in.headers(), "acp_portal").unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Max-Age="] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    let ended = set_cookie(signed_in.headers(), "acp_portal_login").unwrap();
    assert!(ended.contains("Max-Age=0"), "{ended}");
    let opened = asks;
    let csp = opened
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(
        opened["referrer-policy"], "no-referrer",
        "the link's token never leaves"
    );
    let pair = cookie.split(';').next().unwrap();
    let (status, headers, body) = page(&app, pair, "/portal/").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    assert!(body.contains("https://hooks.example.com/portal"), "{body}");
    assert!(body.contains(&format!("endpoints/{id}")));
    assert!(!body.contains("<script"), "no script on any page");
    let (status, _, detail) = page(&app, pair, &format!("/portal/endpoints/{id}")).await;
    assert_eq!(status, 200);
    assert!(detail.contains("name=\"csrf\""), "its forms carry the CSRF token");
    let (status, headers, css) = page(&app, pair, "/portal/portal.css").await;
    assert_eq!(
        (status, headers["content-type"].to_str().unwrap()),
        (200, "text/css; charset=utf-8")
    );
    assert!(css.contains("table"));
    // Without the cookie: not signed in, and nothing of the merchant's shown.
    let (status, _, body) = page(&app, "", "/portal/").await;
    assert_eq!(status, 401);
    assert!(!body.contains("hooks.example.com"));
}

async fn expired_changed_or_misused_tokens_are_refused(app: TestApp) {
    let url = link(&app, &app.api_key).await;
    let token = url.split("token=").nth(1).unwrap().to_owned();
    let login = |token: String| {
        let url = app.url(&format!("/portal/login?token={token}"));
        async move { browser().get(url).send().await.unwrap() }
    };
    // Changed: one character of the signature, or the expiry pushed out.
    let mut tampered = token.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let refused = login(String::from_utf8(tampered).unwrap()).await;
    assert_eq!(refused.status(), 401);
    assert!(refused.headers().get("set-cookie").is_none());
    let parts: Vec<&str> = token.split('.').collect();
    let later = (parts[3].parse::<i64>().unwrap() + 86_400).to_string();
    let pushed = [parts[0], parts[1], parts[2], &later, parts[4], parts[5]].join(".");
    assert_eq!(login(pushed).await.status(), 401);
    // Expired: a link made with the merchant's own secret, ended a second ago.
    let merchant = app.backend.merchants.merchant(&app.merchant.id).await.unwrap().unwrap();
    let secret = merchant.portal_secret.unwrap();
    let ended = checkout::clock::now() - chrono::Duration::seconds(1);
    let expired = portal_access::issue(&secret, &merchant.id, TokenKind::Link, ended).unwrap();
    let answer = login(expired).await;
    assert_eq!(answer.status(), 401);
    assert!(answer.text().await.unwrap().contains("expired"));
    // A session token is no link, and a link is no session.
    let session_token = portal_access::issue(
        &secret,
        &merchant.id,
        TokenKind::Session,
        checkout::clock::now() + chrono::Duration::hours(1),
    )
    .unwrap();
    assert_eq!(login(session_token).await.status(), 401);
    let (status, _, _) = page(&app, &format!("acp_portal={token}"), "/portal/").await;
    assert_eq!(status, 401, "a link is no session cookie");
    for junk in ["", "nonsense", "v1.mer_nobody.link.9999999999.n.t"] {
        assert_eq!(login(junk.to_owned()).await.status(), 401, "{junk}");
    }
    // Signing in takes the sign-in page's own form, posted by the browser that opened it: a
    // form posted from elsewhere (an attacker's link, to sign a victim into the attacker's
    // account) lacks the page's cookie or its nonce.
    let page_of_link = browser().get(&url).send().await.unwrap();
    let login_cookie = set_cookie(page_of_link.headers(), "acp_portal_login").unwrap();
    let login_cookie = login_cookie.split(';').next().unwrap().to_owned();
    let text = page_of_link.text().await.unwrap();
    let post = |cookie: Option<String>, form: Vec<(&'static str, String)>| {
        let mut request = browser().post(app.url("/portal/login")).form(&form);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        async move { request.send().await.unwrap() }
    };
    let (token_field, nonce_field) = (field(&text, "token"), field(&text, "nonce"));
    for (cookie, form, status) in [
        (
            None,
            vec![("token", token_field.clone()), ("nonce", nonce_field.clone())],
            403,
        ),
        (
            Some(login_cookie.clone()),
            vec![("token", token_field.clone()), ("nonce", "another".to_owned())],
            403,
        ),
        (Some(login_cookie.clone()), vec![("token", token_field.clone())], 403),
        (
            Some("acp_portal_login=".to_owned()),
            vec![("token", token_field.clone()), ("nonce", String::new())],
            403,
        ),
        (
            Some(login_cookie.clone()),
            vec![("token", "v1.nonsense".to_owned()), ("nonce", nonce_field.clone())],
            401,
        ),
    ] {
        let answer = post(cookie.clone(), form.clone()).await;
        assert_eq!(answer.status(), status, "{cookie:?} {form:?}");
        assert!(set_cookie(answer.headers(), "acp_portal").is_none());
    }
    let answer = post(Some(login_cookie), vec![("token", token_field), ("nonce", nonce_field)]).await;
    assert_eq!(answer.status(), 303, "the page's own form signs in");
}

async fn another_merchants_endpoint_is_not_found_in_the_portal(app: TestApp) {
    let theirs = register(&app, "https://hooks.example.com/theirs").await;
    let session_id = SessionId::parse(app.create().await["id"].as_str().unwrap()).unwrap();
    let event = app.backend.events.history(&session_id).await.unwrap().remove(0);
    app.backend
        .deliveries
        .record(&attempt_record(&theirs, &event, 1))
        .await
        .unwrap();
    let (_, other_key) = add_merchant(&app.backend).await;
    let mine = session(&app, &other_key).await;
    let (status, _, list) = page(&app, &mine, "/portal/").await;
    assert_eq!(status, 200);
    assert!(!list.contains("hooks.example.com/theirs"), "{list}");
    for path in [
        format!("/portal/endpoints/{theirs}"),
        format!("/portal/endpoints/{theirs}/events/{}", event.id),
        format!("/portal/endpoints/{}", EndpointId::generate()),
    ] {
        let (status, _, body) = page(&app, &mine, &path).await;
        assert_eq!(status, 404, "{path}");
        assert!(!body.contains("theirs"), "{body}");
    }
    // Their endpoint's form, with the valid CSRF token of the other merchant's own session.
    let own = register_as(&app, &other_key, "https://hooks.example.com/mine").await;
    let (_, _, own_page) = page(&app, &mine, &format!("/portal/endpoints/{own}")).await;
    let answer = browser()
        .post(app.url(&format!("/portal/endpoints/{theirs}/pause")))
        .header("cookie", &mine)
        .form(&[("csrf", csrf_of(&own_page))])
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer.status(),
        404,
        "the session's own token does not reach another merchant's endpoint"
    );
    let read = expect(
        app.get(&format!("/webhook_endpoints/{theirs}")).send().await.unwrap(),
        200,
    )
    .await;
    assert_eq!(read["state"], "enabled", "nothing changed");
}

/// The CSRF token of the endpoint page's forms.
pub fn csrf_of(page: &str) -> String {
    let after = page.split("name=\"csrf\" value=\"").nth(1).unwrap();
    after.split('"').next().unwrap().to_owned()
}

async fn a_form_without_its_csrf_token_changes_nothing(app: TestApp) {
    let id = register(&app, "https://hooks.example.com/forms").await;
    let cookie = session(&app, &app.api_key).await;
    let pause = app.url(&format!("/portal/endpoints/{id}/pause"));
    let state = || async {
        expect(app.get(&format!("/webhook_endpoints/{id}")).send().await.unwrap(), 200).await["state"].clone()
    };
    for form in [vec![], vec![("csrf", "forged")]] {
        let answer = browser()
            .post(&pause)
            .header("cookie", &cookie)
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 403, "{form:?}");
        assert_eq!(state().await, "enabled");
    }
    // Another session's token (a colleague's link) is not this one's.
    let other_session = session(&app, &app.api_key).await;
    let (_, _, theirs) = page(&app, &other_session, &format!("/portal/endpoints/{id}")).await;
    let answer = browser()
        .post(&pause)
        .header("cookie", &cookie)
        .form(&[("csrf", csrf_of(&theirs))])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 403);
    // With its own token: paused, and back to the endpoint's page.
    let (_, _, mine) = page(&app, &cookie, &format!("/portal/endpoints/{id}")).await;
    let answer = browser()
        .post(&pause)
        .header("cookie", &cookie)
        .form(&[("csrf", csrf_of(&mine))])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
    assert_eq!(answer.headers()["location"], format!("../{id}").as_str());
    assert_eq!(state().await, "paused");
    // Without a session the token alone does nothing.
    let answer = browser()
        .post(&pause)
        .form(&[("csrf", csrf_of(&mine))])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
}

async fn a_receivers_html_is_shown_as_text(app: TestApp) {
    let id = register(&app, "https://hooks.example.com/html").await;
    let session_id = SessionId::parse(app.create().await["id"].as_str().unwrap()).unwrap();
    let event = app.backend.events.history(&session_id).await.unwrap().remove(0);
    let mut record = attempt_record(&id, &event, 1);
    record.status = AttemptStatus::Failed;
    record.snippet = "<script>alert('owned')</script><img src=x onerror=alert(1)>".to_owned();
    record.server_timing = Some("acp;dur=1, <b>bold</b>".to_owned());
    record.answer_headers = "x-evil: <i>italic</i>\n".to_owned();
    app.backend.deliveries.record(&record).await.unwrap();
    let cookie = session(&app, &app.api_key).await;
    let (status, headers, body) = page(&app, &cookie, &format!("/portal/endpoints/{id}/events/{}", event.id)).await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("<script>alert"), "{body}");
    assert!(!body.contains("<img src=x"), "{body}");
    assert!(body.contains("&lt;script&gt;alert("), "shown as text: {body}");
    assert!(!body.contains("<b>bold</b>"));
    assert!(
        !body.contains("<i>italic</i>") && body.contains("x-evil: &lt;i&gt;"),
        "{body}"
    );
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let (status, _, listing) = page(&app, &cookie, &format!("/portal/endpoints/{id}?status=failed")).await;
    assert_eq!(status, 200);
    assert!(listing.contains(&event.id.to_string()), "the failure is listed");
    assert!(listing.contains("class=\"failure\""), "in red");
    let (status, _, _) = page(&app, &cookie, &format!("/portal/endpoints/{id}?status=<x>")).await;
    assert_eq!(status, 400);
    let (status, _, _) = page(&app, &cookie, &format!("/portal/endpoints/{id}?cursor=junk")).await;
    assert_eq!(status, 400);
    let (status, _, _) = page(
        &app,
        &cookie,
        &format!("/portal/endpoints/{id}?before=%2B10890-01-01T00:00"),
    )
    .await;
    assert_eq!(status, 400, "a year past the log's keys");
}

/// `DELETE /portal_links` ends every link and session; so does an API key rotation (a leaked
/// key may have made links); signing out clears the cookie; pages the portal does not have are
/// HTML 404s with its headers.
async fn revoking_or_rotating_the_api_key_ends_every_session(app: TestApp) {
    let cookie = session(&app, &app.api_key).await;
    let unused_link = link(&app, &app.api_key).await;
    assert_eq!(page(&app, &cookie, "/portal/").await.0, 200);
    let revoked = app
        .client
        .delete(app.url("/portal_links"))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    assert_eq!(page(&app, &cookie, "/portal/").await.0, 401, "the session ended");
    assert_eq!(
        browser().get(&unused_link).send().await.unwrap().status(),
        401,
        "and the link"
    );
    let cookie = session(&app, &app.api_key).await;
    assert_eq!(page(&app, &cookie, "/portal/").await.0, 200, "a new link works");
    api::onboarding::rotate_api_key(app.backend.merchants.as_ref(), &app.merchant.id)
        .await
        .unwrap();
    assert_eq!(
        page(&app, &cookie, "/portal/").await.0,
        401,
        "a key rotation ends it too"
    );

    let (_, other_key) = add_merchant(&app.backend).await;
    let cookie = session(&app, &other_key).await;
    let (_, _, list) = page(&app, &cookie, "/portal/").await;
    let answer = browser()
        .post(app.url("/portal/logout"))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf_of(&list))])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert!(answer.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    let (status, headers, _) = page(&app, &cookie, "/portal/nothing/here").await;
    assert_eq!(status, 404);
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
}

/// The portal's headers are on every answer under `/portal`, the router's and extractors'
/// refusals and redirects too; a 404 deep down links back to the portal.
async fn every_portal_answer_has_its_security_headers(app: TestApp) {
    let cookie = session(&app, &app.api_key).await;
    let answers = [
        (reqwest::Method::GET, "/portal", 308),
        (reqwest::Method::GET, "/portal/endpoints/%ff", 400),
        (reqwest::Method::GET, "/portal/login?token=a&token=b", 400),
        (reqwest::Method::POST, "/portal/", 405),
        (reqwest::Method::GET, "/portal/logout", 405),
        (reqwest::Method::GET, "/portal/a/b/c", 404),
    ];
    for (method, path, status) in answers {
        let answer = browser()
            .request(method.clone(), app.url(path))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), status, "{method} {path}");
        let headers = answer.headers();
        for name in [
            "content-security-policy",
            "x-content-type-options",
            "cache-control",
            "x-frame-options",
        ] {
            assert!(headers.contains_key(name), "{method} {path}: no {name}");
        }
        assert_eq!(headers["cache-control"], "no-store", "{method} {path}");
    }
    let (_, _, deep) = page(&app, &cookie, "/portal/a/b/c").await;
    assert!(deep.contains("href=\"../../portal.css\""), "{deep}");
}

/// A review found that a status filter with fewer matches than a page among the records a
/// page reads showed no way on, though older records matched.
async fn a_filter_pages_on_past_records_it_did_not_match(app: TestApp) {
    let id = register(&app, "https://hooks.example.com/mostly-fine").await;
    let session_id = SessionId::parse(app.create().await["id"].as_str().unwrap()).unwrap();
    let template = app.backend.events.history(&session_id).await.unwrap().remove(0);
    // Five old failures, then 1,050 newer deliveries.
    let mut records = Vec::new();
    for i in 0..1_055 {
        let mut event = template.clone();
        event.id = checkout::ids::EventId::generate();
        let mut record = attempt_record(&id, &event, 1);
        record.status = if i < 5 {
            AttemptStatus::Failed
        } else {
            AttemptStatus::Succeeded
        };
        records.push(record);
        std::thread::sleep(std::time::Duration::from_micros(if i < 6 { 2_000 } else { 0 }));
    }
    for chunk in records.chunks(50) {
        let writes = chunk.iter().map(|r| app.backend.deliveries.record(r));
        for written in futures_util::future::join_all(writes).await {
            assert!(written.unwrap());
        }
    }
    let cookie = session(&app, &app.api_key).await;
    let (status, _, first) = page(&app, &cookie, &format!("/portal/endpoints/{id}?status=failed")).await;
    assert_eq!(status, 200);
    assert!(first.contains("No attempts match"), "{first}");
    let older = first
        .split("<p class=\"older\"><a href=\"")
        .nth(1)
        .expect("a way on to older records")
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    let (status, _, second) = page(&app, &cookie, &format!("/portal/endpoints/{older}")).await;
    assert_eq!(status, 200, "{older}");
    assert_eq!(second.matches("<tr class=\"failure\">").count(), 5, "{second}");
    assert!(!second.contains("class=\"older\""), "nothing older");
}
