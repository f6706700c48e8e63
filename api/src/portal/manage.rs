//! Changing endpoints from the portal: add, edit, delete, rotate the secret, replay a window.
//! Each form posts to the page that showed it; the work is the API's own
//! ([`crate::endpoints`], [`crate::deliveries`]). A refused form is shown again with what was
//! entered and why; a secret is shown once, on the page that answers its creation.

use super::form::Form;
use super::pages::{csrf_field, page};
use crate::AppState;
use crate::deliveries::{ReplayRequest, start_replay};
use crate::endpoints::{
    CreateEndpoint, UpdateEndpoint, body, create_endpoint, delete_endpoint, once, reply, rotate_endpoint_secret,
    update_endpoint,
};
use crate::error::ApiError;
use crate::extract::{Caller, KeyScope};
use checkout::clock::{self, Timestamp};
use checkout::event::EventType;
use checkout::merchant::Merchant;
use checkout::replay::{self, ReplayJob};
use checkout::webhook_endpoint::{
    DEFAULT_ROTATION_GRACE, MAX_DESCRIPTION_LEN, MAX_RATE_LIMIT, MAX_ROTATION_GRACE, SignatureScheme, WebhookEndpoint,
};
use chrono::{Datelike, NaiveDateTime};
use maud::{Markup, html};
use serde_json::Value;
use std::sync::Arc;

/// Records a replay's preview may read: enough to count a busy day exactly, bounded so the
/// page answers in well under a second.
const PREVIEW_RECORDS: usize = 10_000;

/// What the endpoint form holds: an endpoint's settings, or what was entered.
pub struct Fields {
    url: String,
    description: String,
    event_types: Vec<String>,
    rate_limit: String,
    scheme: String,
    enabled: bool,
}

impl Fields {
    pub fn blank() -> Self {
        Self {
            url: String::new(),
            description: String::new(),
            event_types: Vec::new(),
            rate_limit: String::new(),
            scheme: SignatureScheme::default().as_str().to_owned(),
            enabled: true,
        }
    }

    pub fn of(endpoint: &WebhookEndpoint) -> Self {
        Self {
            url: endpoint.url.clone(),
            description: endpoint.description.clone().unwrap_or_default(),
            event_types: endpoint.event_types.iter().map(|t| t.as_str().to_owned()).collect(),
            rate_limit: endpoint.rate_limit.map(|r| r.to_string()).unwrap_or_default(),
            scheme: endpoint.signature_scheme.as_str().to_owned(),
            enabled: endpoint.enabled,
        }
    }

    fn posted(form: &Form) -> Self {
        Self {
            url: form.get("url").unwrap_or_default().to_owned(),
            description: form.get("description").unwrap_or_default().to_owned(),
            event_types: form.all("event_types"),
            rate_limit: form.get("rate_limit").unwrap_or_default().to_owned(),
            scheme: form.get("signature_scheme").unwrap_or_default().to_owned(),
            enabled: form.checked("enabled"),
        }
    }

    fn rate_limit(&self) -> Result<Option<u32>, String> {
        match self.rate_limit.as_str() {
            "" => Ok(None),
            raw => raw.parse().map(Some).map_err(|_| {
                format!("The rate limit is a whole number of deliveries per second, 1 to {MAX_RATE_LIMIT}.")
            }),
        }
    }

    fn scheme(&self) -> Result<SignatureScheme, String> {
        serde_json::from_value(serde_json::Value::String(self.scheme.clone()))
            .map_err(|_| "Choose how deliveries are signed.".to_owned())
    }
}

/// The outcome of a form: a page to show (with its status) or where to go next.
pub enum Outcome {
    Page(u16, Markup),
    SeeOther(String),
}

/// The status and message of a refused change, as the portal shows it.
pub fn refusal(err: &ApiError) -> (u16, String) {
    let status = match err {
        ApiError::NotFound => 404,
        ApiError::Unavailable
        | ApiError::ReplayUnavailable
        | ApiError::TestEventsUnavailable
        | ApiError::NoRandomness => 503,
        ApiError::Invalid(_) => 400,
        _ => 409,
    };
    (status, sentence(&err.to_string()))
}

/// An API message as a sentence of the portal: its fields named as the forms label them.
fn sentence(message: &str) -> String {
    let mut text = message.to_owned();
    for (field, label) in [
        ("grace_period_seconds", "the grace period (seconds)"),
        ("rate_limit", "the rate limit"),
        ("since must be before until", "From must be before To"),
        ("until is in the future", "To is in the future"),
        ("PATCH with \"enabled\": true", "tick Enabled on its Edit page"),
    ] {
        text = text.replace(field, label);
    }
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => format!(
            "{}{}{}",
            first.to_uppercase(),
            chars.as_str(),
            if text.ends_with('.') { "" } else { "." }
        ),
        None => text,
    }
}

fn endpoint_form(action: &str, fields: &Fields, csrf: &str, editing: bool, problem: Option<&str>) -> Markup {
    // A new form's id: posting it again (a reload of the answer) adds nothing more.
    let form_id = checkout::portal_access::nonce().unwrap_or_default();
    html! {
        @if let Some(problem) = problem { p.failure.problem { (problem) } }
        form.settings method="post" action=(action) {
            (csrf_field(csrf))
            @if !editing { input type="hidden" name="form_id" value=(form_id); }
            label { "URL" input type="url" name="url" required size="60" value=(fields.url); }
            label { "Description (optional)" input type="text" name="description" maxlength=(MAX_DESCRIPTION_LEN) value=(fields.description); }
            fieldset {
                legend { "Events (none ticked: all of them)" }
                @for kind in EventType::ALL {
                    label.inline {
                        input type="checkbox" name="event_types" value=(kind.as_str())
                            checked[fields.event_types.iter().any(|t| t == kind.as_str())];
                        code { (kind.as_str()) }
                    }
                }
            }
            label { "Signatures"
                select name="signature_scheme" {
                    @for (value, label) in [("hmac", "v1: HMAC-SHA256 with a shared secret (Standard Webhooks)"), ("ed25519", "v1a: ed25519, verified with our published keys"), ("both", "Both, while receivers move from one to the other")] {
                        option value=(value) selected[fields.scheme == value] { (label) }
                    }
                }
                @if editing {
                    small { "Moving from ed25519 to v1 alone ends its ed25519 key at once; moving to v1 from ed25519 alone shows the secret it will sign with." }
                }
            }
            label { "Rate limit, deliveries per second (blank: your account's)"
                input type="number" name="rate_limit" min="1" max=(MAX_RATE_LIMIT) value=(fields.rate_limit);
            }
            @if editing {
                label.inline { input type="checkbox" name="enabled" value="1" checked[fields.enabled]; "Enabled: deliveries are sent" }
            }
            button type="submit" { @if editing { "Save" } @else { "Add the endpoint" } }
        }
    }
}

/// `GET /portal/endpoints/new`.
pub fn new_page(fields: &Fields, csrf: &str, problem: Option<&str>) -> Markup {
    page(
        "Add an endpoint",
        "../",
        html! {
            p { a href="../" { "← Endpoints" } }
            h1 { "Add an endpoint" }
            (endpoint_form("new", fields, csrf, false, problem))
        },
    )
}

/// The merchant as an API caller, for a portal form that runs once per form id.
fn caller(merchant: &Merchant) -> Caller {
    Caller {
        merchant: Arc::new(merchant.clone()),
        api_version: merchant.pinned_version(),
        request_id: String::new(),
    }
}

/// The status and the message of an API answer that is not a success.
fn problem_of(reply: &checkout::service::Reply) -> (u16, String) {
    let message = serde_json::from_str::<Value>(&reply.body)
        .ok()
        .and_then(|body| body["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "That did not work; try again in a moment.".to_owned());
    (reply.status, sentence(&message))
}

/// `POST /portal/endpoints/new`: the endpoint is added; its secret is shown on this answer. A
/// reload posts the same form id again and gets the same answer (the API's idempotency, keyed by
/// the form's id), not a second endpoint.
pub async fn create(state: &AppState, merchant: &Merchant, form: &Form, raw: &[u8], csrf: &str) -> Outcome {
    let fields = Fields::posted(form);
    let Some(key) = form
        .get("form_id")
        .and_then(|id| KeyScope::portal_form(id, "/portal/endpoints/new"))
    else {
        return Outcome::Page(403, super::pages::failed("../", OUT_OF_DATE));
    };
    let request = fields.rate_limit().and_then(|rate_limit| {
        Ok(CreateEndpoint {
            url: fields.url.clone(),
            event_types: Some(fields.event_types.clone()),
            description: (!fields.description.is_empty()).then(|| fields.description.clone()),
            enabled: Some(true),
            rate_limit,
            signature_scheme: Some(fields.scheme()?),
        })
    });
    let request = match request {
        Ok(request) => request,
        Err(problem) => return Outcome::Page(400, new_page(&fields, csrf, Some(&problem))),
    };
    let answer = run_once(state, merchant, key, raw, || async {
        let endpoint = create_endpoint(state, merchant, request.clone()).await?;
        Ok(reply(201, &body(&endpoint, true)))
    })
    .await;
    if answer.status != 201 {
        let (status, problem) = problem_of(&answer);
        return Outcome::Page(status, new_page(&fields, csrf, Some(&problem)));
    }
    let Ok(created) = serde_json::from_str::<Value>(&answer.body) else {
        return failed(&ApiError::Unavailable);
    };
    let link = created["id"].as_str().unwrap_or_default().to_owned();
    Outcome::Page(200, secret_page(&created, "Endpoint added", "../", &link, None))
}

const OUT_OF_DATE: &str = "This form is out of date: go back, reload the page and try again.";

/// Runs a form's work once per form id (the API's idempotency), and answers what the first
/// post answered. A post that comes while the first still runs (a double click) waits for its
/// answer instead of showing "in progress", which would hide the page the secret is shown on.
async fn run_once<F, Fut>(
    state: &AppState,
    merchant: &Merchant,
    key: KeyScope,
    raw: &[u8],
    run: F,
) -> checkout::service::Reply
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<crate::reply::ApiReply, ApiError>>,
{
    let caller = caller(merchant);
    for _ in 0..IN_FLIGHT_WAITS {
        let answer = once(state, &caller, Some(key.clone()), raw, &run).await.0;
        let in_flight = answer.status == 409 && answer.body.contains("\"idempotency_in_flight\"");
        if !in_flight {
            return answer;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    once(state, &caller, Some(key), raw, &run).await.0
}

/// How many times (100 ms apart) a post waits for the first post of its form to finish.
const IN_FLIGHT_WAITS: usize = 50;

/// `GET /portal/endpoints/{id}/edit`.
pub fn edit_page(endpoint: &WebhookEndpoint, fields: &Fields, csrf: &str, problem: Option<&str>) -> Markup {
    page(
        "Edit",
        "../../",
        html! {
            p { a href={ "../" (endpoint.id.as_str()) } { "← " (endpoint.url) } }
            h1 { "Edit the endpoint" }
            (endpoint_form("edit", fields, csrf, true, problem))
        },
    )
}

/// `POST /portal/endpoints/{id}/edit`.
pub async fn edit(
    state: &AppState,
    merchant: &Merchant,
    endpoint: &WebhookEndpoint,
    form: &Form,
    csrf: &str,
) -> Outcome {
    let fields = Fields::posted(form);
    let request = fields.rate_limit().and_then(|rate_limit| {
        Ok(UpdateEndpoint {
            url: Some(fields.url.clone()),
            event_types: Some(fields.event_types.clone()),
            description: Some(fields.description.clone()),
            enabled: Some(fields.enabled),
            rate_limit: Some(rate_limit),
            signature_scheme: Some(fields.scheme()?),
        })
    });
    let updated = match request {
        Ok(request) => update_endpoint(state, merchant, endpoint.id.as_str(), request).await,
        Err(problem) => return Outcome::Page(400, edit_page(endpoint, &fields, csrf, Some(&problem))),
    };
    match updated {
        // It signs v1 now and did not: the receiver needs the secret, never shown before.
        Ok(changed) if changed.signature_scheme.signs_hmac() && !endpoint.signature_scheme.signs_hmac() => {
            let link = format!("../{}", changed.id);
            Outcome::Page(
                200,
                secret_page(&body(&changed, true), "Signatures changed", "../../", &link, None),
            )
        }
        Ok(changed) => Outcome::SeeOther(format!("../{}", changed.id)),
        Err(err) => {
            let (status, problem) = refusal(&err);
            Outcome::Page(status, edit_page(endpoint, &fields, csrf, Some(&problem)))
        }
    }
}

/// `GET /portal/endpoints/{id}/delete`: asks first.
pub fn delete_page(endpoint: &WebhookEndpoint, csrf: &str) -> Markup {
    page(
        "Delete",
        "../../",
        html! {
            p { a href={ "../" (endpoint.id.as_str()) } { "← " (endpoint.url) } }
            h1 { "Delete this endpoint?" }
            p { "Nothing more is sent to " code { (endpoint.url) } ", retries pending included, and its attempts can no longer be replayed. This cannot be undone." }
            form method="post" action="delete" {
                (csrf_field(csrf))
                button.danger type="submit" { "Delete the endpoint" }
            }
        },
    )
}

/// `POST /portal/endpoints/{id}/delete`: back to the list.
pub async fn delete(state: &AppState, merchant: &Merchant, endpoint: &WebhookEndpoint) -> Outcome {
    match delete_endpoint(state, merchant, endpoint.id.as_str()).await {
        Ok(()) => Outcome::SeeOther("../../".to_owned()),
        Err(err) => failed(&err),
    }
}

fn failed(err: &ApiError) -> Outcome {
    let (status, message) = refusal(err);
    Outcome::Page(status, super::pages::failed("../../", &message))
}

/// The grace periods offered, in seconds.
fn graces() -> [(i64, &'static str); 4] {
    [
        (0, "None: the old secret stops now (after a leak)"),
        (3_600, "1 hour"),
        (DEFAULT_ROTATION_GRACE.num_seconds(), "24 hours"),
        (MAX_ROTATION_GRACE.num_seconds(), "7 days"),
    ]
}

/// `GET /portal/endpoints/{id}/rotate`.
pub fn rotate_page(endpoint: &WebhookEndpoint, csrf: &str) -> Markup {
    page(
        "Rotate the secret",
        "../../",
        html! {
            p { a href={ "../" (endpoint.id.as_str()) } { "← " (endpoint.url) } }
            h1 { "Rotate the signing secret" }
            p { "A new secret (and, for v1a signatures, a new key) signs every delivery from now on. During the grace period the old one signs beside it, so your receiver keeps verifying while you deploy the new secret." }
            form method="post" action="rotate" {
                (csrf_field(csrf))
                input type="hidden" name="form_id" value=(checkout::portal_access::nonce().unwrap_or_default());
                label { "Grace period"
                    select name="grace_period_seconds" {
                        @for (seconds, label) in graces() {
                            option value=(seconds) selected[seconds == DEFAULT_ROTATION_GRACE.num_seconds()] { (label) }
                        }
                    }
                }
                button type="submit" { "Rotate" }
            }
        },
    )
}

/// `POST /portal/endpoints/{id}/rotate`: the new secret, shown on this answer. A reload posts
/// the same form id again and gets the same answer, not a second rotation (which would end the
/// secret just copied).
pub async fn rotate(
    state: &AppState,
    merchant: &Merchant,
    endpoint: &WebhookEndpoint,
    form: &Form,
    raw: &[u8],
) -> Outcome {
    let path = format!("/portal/endpoints/{}/rotate", endpoint.id);
    let Some(key) = form.get("form_id").and_then(|id| KeyScope::portal_form(id, &path)) else {
        return Outcome::Page(403, super::pages::failed("../../", OUT_OF_DATE));
    };
    let Some(grace) = form.get("grace_period_seconds").and_then(|g| g.parse::<i64>().ok()) else {
        return Outcome::Page(400, super::pages::failed("../../", "Choose a grace period."));
    };
    let answer = run_once(state, merchant, key, raw, || async {
        let rotated = rotate_endpoint_secret(state, merchant, endpoint.id.as_str(), Some(grace)).await?;
        Ok(reply(200, &body(&rotated, true)))
    })
    .await;
    if answer.status != 200 {
        let (status, problem) = problem_of(&answer);
        return Outcome::Page(status, super::pages::failed("../../", &problem));
    }
    let Ok(rotated) = serde_json::from_str::<Value>(&answer.body) else {
        return failed(&ApiError::Unavailable);
    };
    let link = format!("../{}", endpoint.id);
    let label = graces()
        .into_iter()
        .find(|(seconds, _)| *seconds == grace)
        .map_or_else(|| format!("{grace} seconds"), |(_, label)| label.to_owned());
    Outcome::Page(
        200,
        secret_page(&rotated, "Secret rotated", "../../", &link, Some((grace, label))),
    )
}

/// A secret (the API's body of the endpoint, with it), shown on the answer to the form that
/// made it; the page is never cached (`no-store`).
fn secret_page(endpoint: &Value, title: &str, root: &str, link: &str, grace: Option<(i64, String)>) -> Markup {
    let signs_hmac = endpoint["signature_scheme"] != "ed25519";
    page(
        title,
        root,
        html! {
            h1 { (title) }
            p { code { (endpoint["url"].as_str().unwrap_or_default()) } }
            @if let Some(secret) = endpoint["secret"].as_str().filter(|_| signs_hmac) {
                p { strong { "Copy the signing secret now: this page is the only place it is shown." } }
                pre.secret { (secret) }
            }
            @if let Some(kid) = endpoint["signing_keys"][0]["kid"].as_str() {
                p { "v1a signatures are made with the key " code.kid { (kid) } ", published in the key set (see " a href={ (link) "/verify" } { "Verify signatures" } ")." }
            }
            @match grace {
                Some((0, _)) => p { "The previous secret and key stopped signing now." },
                Some((_, label)) => p { "The previous secret and key sign beside the new ones for " (label) "." },
                None => {}
            }
            p { a href=(link) { "Continue to the endpoint" } " · " a href={ (link) "/verify" } { "How to verify our signatures" } }
        },
    )
}

/// A `datetime-local` value (`2026-12-04T09:30`, seconds optional), read as UTC.
pub fn parse_time(raw: &str) -> Option<Timestamp> {
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(raw, format).ok())
        .map(|t| t.and_utc())
        // chrono reads signed years of any length; the attempt log's keys end in year 10889.
        .filter(|t| (2000..=9999).contains(&t.year()))
}

fn time_value(t: &Timestamp) -> String {
    t.format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// A replay asked for by the form or the query: the window, checked like the API does.
struct Asked {
    since: Timestamp,
    until: Timestamp,
    include_delivered: bool,
}

fn asked(since: Option<&str>, until: Option<&str>, include_delivered: bool) -> Result<Asked, String> {
    let since = since
        .and_then(parse_time)
        .ok_or("Give the start of the window as a date and time (UTC).")?;
    let until = match until.filter(|u| !u.is_empty()) {
        Some(raw) => {
            parse_time(raw).ok_or("Give the end of the window as a date and time (UTC), or leave it blank for now.")?
        }
        None => clock::now(),
    };
    Ok(Asked {
        since,
        until,
        include_delivered,
    })
}

/// `GET /portal/endpoints/{id}/replay?since=&until=&include_delivered=`: the window's form and,
/// once a window is given, how many events the replay would send.
pub async fn replay_page(
    state: &AppState,
    endpoint: &WebhookEndpoint,
    query: &std::collections::HashMap<String, String>,
    csrf: &str,
) -> (u16, Markup) {
    let now = clock::now();
    let given = query.contains_key("since");
    let include = query.get("include_delivered").is_some_and(|v| v == "1");
    let window = given.then(|| {
        asked(
            query.get("since").map(String::as_str),
            query.get("until").map(String::as_str),
            include,
        )
    });
    let mut status = 200;
    let preview = match &window {
        Some(Ok(window)) => {
            match ReplayJob::new(
                endpoint.merchant_id.clone(),
                endpoint.id.clone(),
                window.since,
                window.until,
                window.include_delivered,
                now,
            ) {
                Err(err) => {
                    status = 400;
                    Some(Err(refusal(&ApiError::invalid(
                        checkout::acp::ErrorCode::InvalidWindow,
                        err.to_string(),
                        "$.since",
                    ))
                    .1))
                }
                Ok(job) => match replay::preview(
                    state.backend.deliveries.as_ref(),
                    endpoint.id.as_str(),
                    job.since,
                    job.until,
                    job.include_delivered,
                    PREVIEW_RECORDS,
                )
                .await
                {
                    Ok(preview) => Some(Ok((preview, job))),
                    Err(err) => {
                        tracing::warn!(error = %err, endpoint_id = %endpoint.id, "portal: replay preview failed");
                        status = 503;
                        Some(Err(
                            "Storage is unavailable right now; try again in a moment.".to_owned()
                        ))
                    }
                },
            }
        }
        Some(Err(problem)) => {
            status = 400;
            Some(Err(problem.clone()))
        }
        None => None,
    };
    let since_value = query
        .get("since")
        .cloned()
        .unwrap_or_else(|| time_value(&(now - chrono::Duration::hours(1))));
    let until_value = query.get("until").cloned().unwrap_or_default();
    let markup = page(
        "Replay",
        "../../",
        html! {
            p { a href={ "../" (endpoint.id.as_str()) } { "← " (endpoint.url) } }
            h1 { "Replay a time window" }
            p { "Sends again, with the same " code { "webhook-id" } ", every event of the window the endpoint did not receive (failed, given up on, skipped while disabled), through its rate limit. Times are UTC." }
            form.settings method="get" action="replay" {
                label { "From" input type="datetime-local" step="1" name="since" required value=(since_value); }
                label { "To (blank: now)" input type="datetime-local" step="1" name="until" value=(until_value); }
                label.inline { input type="checkbox" name="include_delivered" value="1" checked[include]; "Also events it received" }
                button type="submit" { "Preview" }
            }
            @match &preview {
                Some(Err(problem)) => p.failure.problem { (problem) },
                Some(Ok((preview, job))) => {
                    p.preview {
                        @if preview.to_send == 0 { "Nothing to send: " } @else { strong { (preview.to_send) } " event" @if preview.to_send != 1 { "s" } " would be sent: " }
                        (preview.events) " event" @if preview.events != 1 { "s" } " of the window reached the endpoint's log"
                        @if !preview.complete { " (counted in the first " (PREVIEW_RECORDS) " records; the window holds more)" }
                        "."
                    }
                    @if preview.to_send > 0 || !preview.complete {
                        form method="post" action="replay" {
                            (csrf_field(csrf))
                            input type="hidden" name="form_id" value=(checkout::portal_access::nonce().unwrap_or_default());
                            input type="hidden" name="since" value=(time_value(&job.since));
                            input type="hidden" name="until" value=(time_value(&job.until));
                            @if job.include_delivered { input type="hidden" name="include_delivered" value="1"; }
                            button type="submit" { "Replay" }
                        }
                    }
                }
                None => {}
            }
        },
    );
    (status, markup)
}

/// `POST /portal/endpoints/{id}/replay`: the job starts; its progress shows on the endpoint.
pub async fn replay(
    state: &AppState,
    merchant: &Merchant,
    endpoint: &WebhookEndpoint,
    form: &Form,
    raw: &[u8],
) -> Outcome {
    let window = match asked(form.get("since"), form.get("until"), form.checked("include_delivered")) {
        Ok(window) => window,
        Err(problem) => return Outcome::Page(400, super::pages::failed("../../", &problem)),
    };
    let path = format!("/portal/endpoints/{}/replay", endpoint.id);
    let Some(key) = form.get("form_id").and_then(|id| KeyScope::portal_form(id, &path)) else {
        return Outcome::Page(403, super::pages::failed("../../", OUT_OF_DATE));
    };
    let request = ReplayRequest {
        since: window.since,
        until: Some(window.until),
        include_delivered: window.include_delivered,
    };
    // Once per form: a double click starts one replay, not two.
    let answer = run_once(state, merchant, key, raw, || async {
        let job = start_replay(state, merchant, endpoint.id.as_str(), &request).await?;
        Ok(reply(202, &job.view()))
    })
    .await;
    if answer.status != 202 {
        let (status, problem) = problem_of(&answer);
        return Outcome::Page(status, super::pages::failed("../../", &problem));
    }
    Outcome::SeeOther(format!("../{}", endpoint.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_as_utc_with_or_without_seconds() {
        let t = parse_time("2026-12-04T09:30").unwrap();
        assert_eq!(clock::rfc3339(&t), "2026-12-04T09:30:00Z");
        assert_eq!(parse_time(&time_value(&t)), Some(t));
        assert_eq!(parse_time("2026-12-04 09:30"), None);
        assert_eq!(parse_time("+10890-01-01T00:00"), None);
        assert_eq!(parse_time("-0001-01-01T00:00"), None);
        assert!(asked(Some("nope"), None, false).is_err());
        assert!(asked(Some("2026-12-04T09:30"), Some("later"), false).is_err());
    }

    #[test]
    fn refusals_read_as_sentences() {
        assert_eq!(refusal(&ApiError::NotFound), (404, "No such resource.".to_owned()));
        assert_eq!(refusal(&ApiError::EndpointPaused).0, 409);
    }
}
