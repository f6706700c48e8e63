//! The merchant portal, under `/portal/`: a merchant's webhook endpoints, their health and
//! attempts, and pause / resume / test, in a browser, without the API key.
//!
//! Access ([`checkout::portal_access`]): `POST /portal_links` (with the API key) answers a link
//! valid for minutes; opening it sets a session cookie (`HttpOnly`, `SameSite=Strict`, the
//! portal's path only, `Secure` over HTTPS) valid for hours. Every form carries the session's
//! CSRF token. Every page is sent with a Content-Security-Policy that allows our own stylesheet
//! and nothing else (no script, no frame, forms only to us), `Referrer-Policy: no-referrer` (the
//! link's token never leaves in a `Referer`) and `Cache-Control: no-store`. Another merchant's
//! endpoint or event is a 404 here as in the API.

mod chart;
mod docs;
mod form;
mod health;
mod manage;
mod pages;

use crate::AppState;
use crate::discovery::PublicBaseUrl;
use crate::endpoints::{change_merchant, load, queue_test_event, reply};
use crate::error::ApiError;
use crate::extract::Caller;
use crate::pause::{pause_endpoint, resume_endpoint};
use crate::reply::ApiReply;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use checkout::attempt_log::{AttemptQuery, AttemptRecord, AttemptStatus};
use checkout::clock;
use checkout::ids::{EndpointId, EventId};
use checkout::merchant::Merchant;
use checkout::portal_access::{self, LINK_LIFETIME, SESSION_LIFETIME, Session, TokenKind};
use form::Form;
use manage::Outcome;
use maud::Markup;
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use tracing::{info, warn};

const COOKIE: &str = "acp_portal";
/// Ties the sign-in page to the browser that opened its link (until the form is posted).
const LOGIN_COOKIE: &str = "acp_portal_login";
/// Attempts read for an endpoint's health on its own page (of its newest events): enough for
/// a day of a busy endpoint's percentiles without reading its whole log on every page.
pub const HEALTH_RECORDS: usize = 1_000;
/// The same on the list of endpoints (up to 50 of them): two pages of the log each.
const LIST_HEALTH_RECORDS: usize = 200;
/// Attempts listed on an endpoint's page.
const LISTED: usize = 100;

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// The portal's routes (nested under `/portal`) and `POST /portal_links`.
pub fn routes(router: axum::Router<AppState>) -> axum::Router<AppState> {
    router
        .route("/portal_links", post(create_link).delete(revoke_links))
        .route("/portal", get(to_portal))
        .route("/portal/login", get(login).post(sign_in))
        .route("/portal/", get(endpoints_page))
        .route("/portal/portal.css", get(stylesheet))
        .route("/portal/event-types", get(event_types_page))
        .route("/portal/schemas/{file}", get(schema))
        .route("/portal/endpoints/new", get(new_endpoint_page).post(create_endpoint))
        .route("/portal/endpoints/{id}", get(endpoint_page))
        .route("/portal/endpoints/{id}/events/{event_id}", get(event_page))
        .route("/portal/endpoints/{id}/{action}", get(endpoint_subpage).post(act))
        .route("/portal/logout", post(logout))
        .route("/portal/{*rest}", get(unknown_page))
}

/// Middleware for the whole router: the portal's security headers on every answer under
/// `/portal` that has none of them yet — the router's and the extractors' refusals, redirects
/// and body limits too, not only the pages.
pub async fn guard(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let portal = request.uri().path() == "/portal" || request.uri().path().starts_with("/portal/");
    let mut response = next.run(request).await;
    if portal {
        let headers = response.headers_mut();
        for (name, value) in [
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ] {
            if !headers.contains_key(&name) {
                headers.insert(name, HeaderValue::from_static(value));
            }
        }
    }
    response
}

/// An HTML answer with the portal's headers.
fn html(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    secure(response.headers_mut(), "text/html; charset=utf-8");
    response
}

fn secure(headers: &mut HeaderMap, content_type: &'static str) {
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// Where the portal is reached: the configured public address, or the front's.
fn portal_url(state: &AppState, front: Option<Extension<PublicBaseUrl>>) -> Option<String> {
    state
        .public_base_url()
        .map(str::to_owned)
        .or(front.map(|Extension(PublicBaseUrl(url))| url))
}

/// `POST /portal_links`: 201 `{url, expires_at}`, a link to the caller's portal valid for
/// [`LINK_LIFETIME`]. The merchant's portal secret is made at its first link.
async fn create_link(
    State(state): State<AppState>,
    caller: Caller,
    front: Option<Extension<PublicBaseUrl>>,
) -> Result<ApiReply, ApiError> {
    let base = portal_url(&state, front).ok_or(ApiError::PortalUnavailable)?;
    let merchant = with_portal_secret(&state, &caller.merchant).await?;
    let secret = merchant.portal_secret.as_deref().ok_or(ApiError::Unavailable)?;
    let expires_at = clock::now() + LINK_LIFETIME;
    let token =
        portal_access::issue(secret, &merchant.id, TokenKind::Link, expires_at).map_err(ApiError::no_randomness)?;
    info!(merchant_id = %merchant.id, "portal link made");
    Ok(reply(
        201,
        &json!({"url": format!("{base}/portal/login?token={token}"), "expires_at": clock::rfc3339(&expires_at)}),
    ))
}

/// `DELETE /portal_links`: ends every portal link and session of the merchant (its portal
/// secret is dropped; the next link makes another). 204.
async fn revoke_links(State(state): State<AppState>, caller: Caller) -> Result<ApiReply, ApiError> {
    change_merchant(&state, &caller.merchant, |m| {
        m.portal_secret = None;
        Ok(())
    })
    .await?;
    info!(merchant_id = %caller.merchant.id, "portal links and sessions revoked");
    Ok(ApiReply(checkout::service::Reply::no_content()))
}

async fn with_portal_secret(state: &AppState, merchant: &Merchant) -> Result<Merchant, ApiError> {
    if merchant.portal_secret.is_some() {
        return Ok(merchant.clone());
    }
    let fresh = portal_access::generate_secret().map_err(ApiError::no_randomness)?;
    change_merchant(state, merchant, |m| {
        // Another request may have made one first: theirs is kept.
        if m.portal_secret.is_none() {
            m.portal_secret = Some(fresh.clone());
        }
        Ok(())
    })
    .await
}

/// Checks a token against its merchant's secret: the merchant and its session.
async fn open(state: &AppState, token: &str, kind: TokenKind) -> Result<(Merchant, Session), String> {
    let refused = |why: &str| {
        format!(
            "This portal {} {why}.",
            if kind == TokenKind::Link { "link" } else { "session" }
        )
    };
    let unverified = portal_access::read(token).map_err(|_| refused("is not valid"))?;
    let merchant = match state.backend.merchants.merchant(&unverified.merchant_id).await {
        Ok(Some(merchant)) => merchant,
        Ok(None) => return Err(refused("is not valid")),
        Err(err) => {
            warn!(error = %err, "could not read the merchant of a portal token");
            return Err("The portal cannot be reached right now; try again in a moment.".to_owned());
        }
    };
    let secret = merchant
        .portal_secret
        .as_deref()
        .ok_or_else(|| refused("is not valid"))?;
    match unverified.verify(secret, kind, clock::now()) {
        Ok(session) => Ok((merchant, session)),
        Err(portal_access::TokenError::Expired) => Err(refused("has expired")),
        Err(_) => Err(refused("is not valid")),
    }
}

#[derive(Deserialize)]
struct LoginQuery {
    token: Option<String>,
}

/// `; Secure` wherever the portal is served over HTTPS (acp-local on plain loopback HTTP is not).
fn secure_attribute(state: &AppState) -> &'static str {
    if state.public_base_url().is_some_and(|url| url.starts_with("http://")) {
        ""
    } else {
        "; Secure"
    }
}

fn set_cookie(response: &mut Response, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// `GET /portal/login?token=`: a valid link shows whose portal it opens and asks to sign in.
/// Nothing is signed in yet: a link opened without the merchant's knowing (another merchant's,
/// sent to trick it into working in the wrong account) changes nothing until the button, which
/// names that account, is pressed. The page's form carries a nonce that must match the
/// `SameSite=Strict` cookie set here, so a form posted from another site cannot sign in.
async fn login(State(state): State<AppState>, Query(query): Query<LoginQuery>) -> Response {
    let token = query.token.unwrap_or_default();
    let merchant = match open(&state, &token, TokenKind::Link).await {
        Ok((merchant, _)) => merchant,
        Err(message) => return html(StatusCode::UNAUTHORIZED, pages::refused("./", &message)),
    };
    let Ok(nonce) = portal_access::nonce() else {
        return html(
            StatusCode::SERVICE_UNAVAILABLE,
            pages::failed("./", "The sign-in page could not be made; try the link again."),
        );
    };
    let mut response = html(StatusCode::OK, pages::sign_in(&merchant.name, &token, &nonce));
    let cookie = format!(
        "{LOGIN_COOKIE}={nonce}; HttpOnly; SameSite=Strict; Max-Age={}{}",
        LINK_LIFETIME.num_seconds(),
        secure_attribute(&state)
    );
    set_cookie(&mut response, &cookie);
    response
}

/// `POST /portal/login` (the sign-in page's form): the session cookie, then the portal.
async fn sign_in(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let nonce = form.get("nonce").unwrap_or_default();
    // The nonce is no secret from this browser; it proves the form is the page's own.
    if nonce.is_empty() || cookie(&headers, LOGIN_COOKIE) != Some(nonce) {
        return html(
            StatusCode::FORBIDDEN,
            pages::refused(
                "./",
                "This sign-in page is out of date or was not opened here: open the portal link again.",
            ),
        );
    }
    let token = form.get("token").unwrap_or_default();
    let merchant = match open(&state, token, TokenKind::Link).await {
        Ok((merchant, _)) => merchant,
        Err(message) => return html(StatusCode::UNAUTHORIZED, pages::refused("./", &message)),
    };
    let Some(secret) = merchant.portal_secret.as_deref() else {
        return html(
            StatusCode::UNAUTHORIZED,
            pages::refused("./", "This portal link is not valid."),
        );
    };
    let Ok(session) = portal_access::issue(
        secret,
        &merchant.id,
        TokenKind::Session,
        clock::now() + SESSION_LIFETIME,
    ) else {
        return html(
            StatusCode::SERVICE_UNAVAILABLE,
            pages::failed("./", "No session could be made; try the link again."),
        );
    };
    let secure = secure_attribute(&state);
    let mut response = see_other("./");
    set_cookie(
        &mut response,
        &format!(
            "{COOKIE}={session}; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            SESSION_LIFETIME.num_seconds()
        ),
    );
    set_cookie(
        &mut response,
        &format!("{LOGIN_COOKIE}=; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    );
    info!(merchant_id = %merchant.id, "portal session opened");
    response
}

/// The value of the cookie `name`, if the request has it.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(name)?.strip_prefix('='))
}

/// The signed-in merchant, or the page that says why not.
async fn signed_in(state: &AppState, headers: &HeaderMap, root: &str) -> Result<(Merchant, Session), Response> {
    let Some(token) = cookie(headers, COOKIE) else {
        return Err(html(
            StatusCode::UNAUTHORIZED,
            pages::refused(root, "You are not signed in to this portal."),
        ));
    };
    open(state, token, TokenKind::Session)
        .await
        .map_err(|message| html(StatusCode::UNAUTHORIZED, pages::refused(root, &message)))
}

/// `POST /portal/logout` (with the CSRF token): the cookie is cleared.
async fn logout(State(state): State<AppState>, headers: HeaderMap, form: Bytes) -> Response {
    if let Ok((merchant, session)) = signed_in(&state, &headers, "./").await {
        let secret = merchant.portal_secret.as_deref().unwrap_or_default();
        if !session.csrf_matches(secret, Form::parse(&form).get("csrf").unwrap_or_default()) {
            return html(
                StatusCode::FORBIDDEN,
                pages::failed("./", "This form is out of date: reload the page and try again."),
            );
        }
    }
    let mut response = html(StatusCode::OK, pages::refused("./", "You are signed out."));
    let secure = secure_attribute(&state);
    set_cookie(
        &mut response,
        &format!("{COOKIE}=; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    );
    response
}

/// Any other page under `/portal/`: a 404 page with the portal's headers, its links relative
/// to how deep it is.
async fn unknown_page(Path(rest): Path<String>) -> Response {
    let depth = rest.matches('/').count();
    let root = if depth == 0 {
        "./".to_owned()
    } else {
        "../".repeat(depth)
    };
    html(StatusCode::NOT_FOUND, pages::not_found(&root))
}

/// `/portal` is `/portal/` (relative, so behind a stage prefix too).
async fn to_portal() -> Response {
    let mut response = StatusCode::PERMANENT_REDIRECT.into_response();
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("portal/"));
    response
}

async fn stylesheet() -> Response {
    let mut response = pages::STYLESHEET.into_response();
    secure(response.headers_mut(), "text/css; charset=utf-8");
    response
}

fn storage_failed(root: &str, err: impl std::fmt::Display) -> Response {
    warn!(error = %err, "portal: storage failed");
    html(
        StatusCode::SERVICE_UNAVAILABLE,
        pages::failed(root, "Storage is unavailable right now; try again in a moment."),
    )
}

/// The newest attempts of an endpoint, up to `count`.
async fn newest_attempts(
    state: &AppState,
    endpoint: &EndpointId,
    count: usize,
) -> Result<Vec<AttemptRecord>, Response> {
    Ok(read_attempts(state, endpoint, None, count, count, |_| true).await?.kept)
}

/// Attempts read newest first: those kept, and where a next read would go on from (none when
/// the log has nothing older).
struct Read {
    kept: Vec<AttemptRecord>,
    next: Option<String>,
}

/// Attempts of an endpoint newest first, from before the sort key `before` (or the newest): up
/// to `wanted` that `keep` keeps, reading at most about `max_read` records.
async fn read_attempts(
    state: &AppState,
    endpoint: &EndpointId,
    before: Option<String>,
    max_read: usize,
    wanted: usize,
    keep: impl Fn(&AttemptRecord) -> bool,
) -> Result<Read, Response> {
    let mut kept = Vec::new();
    let mut query = AttemptQuery {
        before,
        limit: 100,
        ..AttemptQuery::default()
    };
    let mut read = 0;
    let mut exhausted = false;
    while kept.len() < wanted && read < max_read {
        let page = state
            .backend
            .deliveries
            .attempts(endpoint.as_str(), &query)
            .await
            .map_err(|err| storage_failed("../", err))?;
        let full = page.len() == query.limit;
        read += page.len();
        query.before = page.last().map(AttemptRecord::sort_key);
        kept.extend(page.into_iter().filter(|r| keep(r)));
        if !full {
            exhausted = true;
            break;
        }
    }
    let next = if kept.len() >= wanted {
        kept.truncate(wanted);
        kept.last().map(AttemptRecord::sort_key)
    } else if exhausted {
        None
    } else {
        // Fewer kept than wanted in all that was read: older ones may match.
        query.before
    };
    Ok(Read { kept, next })
}

/// `GET /portal/`: the endpoints with their health.
async fn endpoints_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (merchant, session) = match signed_in(&state, &headers, "./").await {
        Ok(signed_in) => signed_in,
        Err(refused) => return refused,
    };
    let Ok(csrf) = session.csrf_token(merchant.portal_secret.as_deref().unwrap_or_default()) else {
        return storage_failed("./", "no CSRF token");
    };
    let endpoints = match state.backend.endpoints.endpoints(&merchant.id).await {
        Ok(endpoints) => endpoints,
        Err(err) => return storage_failed("./", err),
    };
    let now = clock::now();
    let mut listed = Vec::with_capacity(endpoints.len());
    for endpoint in endpoints {
        let records = match newest_attempts(&state, &endpoint.id, LIST_HEALTH_RECORDS).await {
            Ok(records) => records,
            Err(failed) => return failed,
        };
        let health = health::of(&records, now);
        let hours = chart::hourly(&records, now);
        listed.push((endpoint, health, hours));
    }
    html(StatusCode::OK, pages::endpoints(&listed, &merchant.name, &csrf, now))
}

/// The endpoint named in the path, if it is the merchant's.
async fn own_endpoint(
    state: &AppState,
    merchant: &Merchant,
    id: &str,
    root: &str,
) -> Result<checkout::webhook_endpoint::WebhookEndpoint, Response> {
    match load(state, merchant, id).await {
        Ok(endpoint) => Ok(endpoint),
        Err(ApiError::NotFound) => Err(html(StatusCode::NOT_FOUND, pages::not_found(root))),
        Err(err) => Err(storage_failed(root, err)),
    }
}

/// The signed-in merchant, its session, and its endpoint named in the path; or the page that
/// says why not (not signed in, not found).
async fn signed_in_endpoint(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    root: &str,
) -> Result<(Merchant, Session, checkout::webhook_endpoint::WebhookEndpoint), Response> {
    let (merchant, session) = signed_in(state, headers, root).await?;
    let endpoint = own_endpoint(state, &merchant, id, root).await?;
    Ok((merchant, session, endpoint))
}

fn filter_of(query: &HashMap<String, String>) -> Option<pages::Filter> {
    match query.get("status").map(String::as_str) {
        None | Some("all") => Some(pages::Filter::All),
        Some("failed") => Some(pages::Filter::Only(AttemptStatus::Failed)),
        Some("succeeded") => Some(pages::Filter::Only(AttemptStatus::Succeeded)),
        Some("paused") => Some(pages::Filter::Only(AttemptStatus::Paused)),
        Some("skipped") => Some(pages::Filter::Only(AttemptStatus::Skipped)),
        Some(_) => None,
    }
}

/// The attempts listed on an endpoint's page: the newest (of `newest`, already read), or those
/// before a time; of one status or all.
async fn listed_attempts(
    state: &AppState,
    endpoint: &EndpointId,
    newest: &[AttemptRecord],
    filter: pages::Filter,
    before: Option<String>,
) -> Result<Read, Response> {
    let Some(before) = before else {
        let kept: Vec<AttemptRecord> = newest
            .iter()
            .filter(|r| filter.keeps(r))
            .take(LISTED)
            .cloned()
            .collect();
        let next = if kept.len() == LISTED {
            kept.last().map(AttemptRecord::sort_key)
        } else if newest.len() >= HEALTH_RECORDS {
            // The newest records read hold fewer matches than a page: older ones may match.
            newest.last().map(AttemptRecord::sort_key)
        } else {
            None
        };
        return Ok(Read { kept, next });
    };
    read_attempts(state, endpoint, Some(before), HEALTH_RECORDS, LISTED, |r| {
        filter.keeps(r)
    })
    .await
}

/// `GET /portal/endpoints/{id}?status=&before=&cursor=`: the endpoint, its health, its chart,
/// its latest replay and its attempts (newest first; of events before a time, or past the
/// cursor of the page before: the sort key of its last attempt).
async fn endpoint_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (merchant, session, endpoint) = match signed_in_endpoint(&state, &headers, &id, "../").await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    let Some(filter) = filter_of(&query) else {
        return html(
            StatusCode::BAD_REQUEST,
            pages::failed("../", "status is one of all, failed, succeeded, paused, skipped."),
        );
    };
    let before_text = query.get("before").map(String::as_str).filter(|b| !b.is_empty());
    let before = match before_text.map(manage::parse_time) {
        None => None,
        Some(Some(before)) => Some(before),
        Some(None) => {
            return html(
                StatusCode::BAD_REQUEST,
                pages::failed("../", "Give the time as a date and time (UTC), e.g. 2026-12-04T09:30."),
            );
        }
    };
    let cursor = query.get("cursor").filter(|c| !c.is_empty());
    let valid_cursor = |c: &str| {
        let attempt = c.split_once('#').map(|(_, a)| a).unwrap_or_default();
        c.len() <= 64
            && checkout::attempt_log::event_of_sort_key(c).is_some()
            && !attempt.is_empty()
            && attempt.bytes().all(|b| b.is_ascii_digit())
    };
    if cursor.is_some_and(|c| !valid_cursor(c)) {
        return html(
            StatusCode::BAD_REQUEST,
            pages::failed("../", "This page link is not valid."),
        );
    }
    let start = cursor
        .cloned()
        .or_else(|| before.map(checkout::attempt_log::time_bound));
    let records = match newest_attempts(&state, &endpoint.id, HEALTH_RECORDS).await {
        Ok(records) => records,
        Err(failed) => return failed,
    };
    let listed = match listed_attempts(&state, &endpoint.id, &records, filter, start).await {
        Ok(listed) => listed,
        Err(failed) => return failed,
    };
    let replay = match state.backend.replays.replay(&merchant.id, &endpoint.id).await {
        Ok(replay) => replay,
        Err(err) => return storage_failed("../", err),
    };
    let now = clock::now();
    let health = health::of(&records, now);
    let hours = chart::hourly(&records, now);
    let secret = merchant.portal_secret.as_deref().unwrap_or_default();
    let Ok(csrf) = session.csrf_token(secret) else {
        return storage_failed("../", "no CSRF token");
    };
    let Read { kept: listed, next } = listed;
    let older = next.map(|next| {
        let cursor: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
        match filter {
            pages::Filter::All => format!("?cursor={cursor}"),
            pages::Filter::Only(status) => format!("?status={}&cursor={cursor}", pages::status_name(status)),
        }
    });
    let view = pages::EndpointView {
        older: older.as_deref(),
        health: &health,
        hours: &hours,
        attempts: &listed,
        filter,
        before: before_text,
        replay: replay.as_ref(),
        csrf: &csrf,
    };
    html(StatusCode::OK, pages::endpoint(&endpoint, &view, now))
}

/// `GET /portal/endpoints/{id}/events/{event_id}`: every attempt of one event to the endpoint.
async fn event_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, event_id)): Path<(String, String)>,
) -> Response {
    let root = "../../../";
    let (merchant, _, endpoint) = match signed_in_endpoint(&state, &headers, &id, root).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    let Some(event_id) = EventId::parse(&event_id) else {
        return html(StatusCode::NOT_FOUND, pages::not_found(root));
    };
    let attempts = match state
        .backend
        .deliveries
        .attempts_of(endpoint.id.as_str(), &event_id)
        .await
    {
        Ok(attempts) => attempts,
        Err(err) => return storage_failed(root, err),
    };
    let Some(first) = attempts.first().filter(|r| r.merchant_id == merchant.id) else {
        return html(StatusCode::NOT_FOUND, pages::not_found(root));
    };
    let body = match state.backend.events.event_at(&first.session_id, first.version).await {
        Ok(Some(event)) if event.id == event_id => serde_json::to_string_pretty(&event).ok(),
        _ => None,
    };
    html(
        StatusCode::OK,
        pages::event_attempts(&endpoint, &attempts, body.as_deref(), clock::now()),
    )
}

/// The signed-in merchant and its CSRF token, for a page that shows forms.
async fn signed_in_with_csrf(
    state: &AppState,
    headers: &HeaderMap,
    root: &str,
) -> Result<(Merchant, String), Response> {
    let (merchant, session) = signed_in(state, headers, root).await?;
    let csrf = session
        .csrf_token(merchant.portal_secret.as_deref().unwrap_or_default())
        .map_err(|_| storage_failed(root, "no CSRF token"))?;
    Ok((merchant, csrf))
}

/// A posted form of the signed-in merchant, refused unless it carries the session's CSRF
/// token: the merchant, the form and the token (for a form shown again).
async fn signed_form(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    root: &str,
) -> Result<(Merchant, Form, String), Response> {
    let (merchant, session) = signed_in(state, headers, root).await?;
    let form = Form::parse(body);
    let secret = merchant.portal_secret.as_deref().unwrap_or_default();
    if !session.csrf_matches(secret, form.get("csrf").unwrap_or_default()) {
        return Err(html(
            StatusCode::FORBIDDEN,
            pages::failed(
                root,
                "This form is out of date: go back, reload the page and try again.",
            ),
        ));
    }
    let csrf = session
        .csrf_token(secret)
        .map_err(|_| storage_failed(root, "no CSRF token"))?;
    Ok((merchant, form, csrf))
}

fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(location) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    secure(response.headers_mut(), "text/plain; charset=utf-8");
    response
}

fn outcome(outcome: Outcome) -> Response {
    match outcome {
        Outcome::SeeOther(location) => see_other(&location),
        Outcome::Page(status, markup) => html(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            markup,
        ),
    }
}

/// `GET /portal/endpoints/new`.
async fn new_endpoint_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match signed_in_with_csrf(&state, &headers, "../").await {
        Ok((_, csrf)) => html(StatusCode::OK, manage::new_page(&manage::Fields::blank(), &csrf, None)),
        Err(refused) => refused,
    }
}

/// `POST /portal/endpoints/new`.
async fn create_endpoint(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match signed_form(&state, &headers, &body, "../").await {
        Ok((merchant, form, csrf)) => outcome(manage::create(&state, &merchant, &form, &body, &csrf).await),
        Err(refused) => refused,
    }
}

/// `GET /portal/endpoints/{id}/{edit|delete|rotate|replay|verify}`.
async fn endpoint_subpage(
    State(state): State<AppState>,
    headers: HeaderMap,
    front: Option<Extension<PublicBaseUrl>>,
    Path((id, page)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let root = "../../";
    let (merchant, session, endpoint) = match signed_in_endpoint(&state, &headers, &id, root).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    let Ok(csrf) = session.csrf_token(merchant.portal_secret.as_deref().unwrap_or_default()) else {
        return storage_failed(root, "no CSRF token");
    };
    match page.as_str() {
        "edit" => html(
            StatusCode::OK,
            manage::edit_page(&endpoint, &manage::Fields::of(&endpoint), &csrf, None),
        ),
        "delete" => html(StatusCode::OK, manage::delete_page(&endpoint, &csrf)),
        "rotate" => html(StatusCode::OK, manage::rotate_page(&endpoint, &csrf)),
        "replay" => {
            let (status, markup) = manage::replay_page(&state, &endpoint, &query, &csrf).await;
            html(StatusCode::from_u16(status).unwrap_or(StatusCode::OK), markup)
        }
        "verify" => {
            let base = portal_url(&state, front).unwrap_or_default();
            let keys_url = format!("{base}/.well-known/webhook-keys");
            html(StatusCode::OK, docs::verify_page(&endpoint, &keys_url))
        }
        _ => html(StatusCode::NOT_FOUND, pages::not_found(root)),
    }
}

/// `POST /portal/endpoints/{id}/{action}` (a form with the session's CSRF token): pause,
/// resume, test, edit, delete, rotate or replay; then back to the endpoint's page, or a page
/// that says what came of it.
async fn act(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let root = "../../";
    let (merchant, form, csrf) = match signed_form(&state, &headers, &body, root).await {
        Ok(signed) => signed,
        Err(refused) => return refused,
    };
    let control = match action.as_str() {
        "pause" => Some(pause_endpoint(&state, &merchant, &id).await.map(|_| ())),
        "resume" => Some(resume_endpoint(&state, &merchant, &id).await.map(|_| ())),
        "test" => Some(
            queue_test_event(&state, &merchant, &merchant.default_api_version, &id)
                .await
                .map(|_| ()),
        ),
        _ => None,
    };
    if let Some(done) = control {
        return match done {
            Ok(()) => see_other(&format!("../{id}")),
            Err(err) => {
                let (status, message) = manage::refusal(&err);
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::CONFLICT);
                match err {
                    ApiError::NotFound => html(status, pages::not_found(root)),
                    _ => html(status, pages::failed(root, &message)),
                }
            }
        };
    }
    let endpoint = match own_endpoint(&state, &merchant, &id, root).await {
        Ok(endpoint) => endpoint,
        Err(refused) => return refused,
    };
    outcome(match action.as_str() {
        "edit" => manage::edit(&state, &merchant, &endpoint, &form, &csrf).await,
        "delete" => manage::delete(&state, &merchant, &endpoint).await,
        "rotate" => manage::rotate(&state, &merchant, &endpoint, &form, &body).await,
        "replay" => manage::replay(&state, &merchant, &endpoint, &form, &body).await,
        _ => Outcome::Page(404, pages::not_found(root)),
    })
}

/// `GET /portal/event-types`.
async fn event_types_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers, "./").await {
        Ok((merchant, _)) => html(StatusCode::OK, docs::event_types_page(&merchant.id, clock::now())),
        Err(refused) => refused,
    }
}

/// `GET /portal/schemas/{file}`: the event schemas and the ACP bundle they refer to (nothing
/// of any merchant's: served without a session, so tools can fetch them).
async fn schema(Path(file): Path<String>) -> Response {
    match docs::schema(&file) {
        Some(schema) => {
            let mut response = schema.into_response();
            secure(response.headers_mut(), "application/schema+json");
            response
        }
        None => html(StatusCode::NOT_FOUND, pages::not_found("../")),
    }
}
