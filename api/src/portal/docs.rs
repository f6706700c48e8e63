//! What a merchant reads to build a receiver: the event types (meaning, example, JSON Schema)
//! and the code that verifies our signatures, with this deployment's header names and key set.

use super::pages::page;
use checkout::clock::Timestamp;
use checkout::event::EventType;
use checkout::event_docs::{self, ACP_SCHEMA_FILE, DOCUMENTED};
use checkout::ids::MerchantId;
use checkout::webhook_endpoint::{SignatureScheme, WebhookEndpoint};
use maud::{Markup, html};

/// The ACP checkout JSON Schema bundle (2026-04-17) that the event schemas refer to, minified
/// and raw-DEFLATE compressed: 18 KB in the Lambda bootstrap instead of 125 KB (a test checks it
/// is the bundle in `spec/`).
const ACP_SCHEMA_DEFLATED: &[u8] = include_bytes!("acp-checkout.schema.json.deflate");
/// More than the bundle inflates to.
const ACP_SCHEMA_MAX: usize = 1024 * 1024;

/// The schema served as `file`, if there is one.
pub fn schema(file: &str) -> Option<String> {
    if file == ACP_SCHEMA_FILE {
        let inflated = checkout::deflate::decompress(ACP_SCHEMA_DEFLATED, None, ACP_SCHEMA_MAX).ok()?;
        return String::from_utf8(inflated).ok();
    }
    DOCUMENTED
        .into_iter()
        .find(|kind| event_docs::schema_file(*kind) == file)
        .and_then(|kind| serde_json::to_string_pretty(&event_docs::schema(kind)).ok())
}

/// `GET /portal/event-types`.
pub fn event_types_page(merchant: &MerchantId, now: Timestamp) -> Markup {
    page(
        "Event types",
        "./",
        html! {
            h1 { "Event types" }
            p { "Every delivery is one event, a JSON object with the same envelope; "
                code { "data" } " is the checkout session after the change, as the "
                a href={ "schemas/" (ACP_SCHEMA_FILE) } { "ACP checkout schema" } " (2026-04-17) defines it. "
                "Deliveries of one session carry increasing " code { "version" } "s; a retry or replay repeats its " code { "id" } "." }
            @for kind in DOCUMENTED {
                section.event-type id=(kind.as_str()) {
                    h2 { code { (kind.as_str()) } }
                    p { (event_docs::meaning(kind)) }
                    p { a href={ "schemas/" (event_docs::schema_file(kind)) } { "JSON Schema" } }
                    details {
                        summary { "Example" }
                        pre { (example(kind, merchant, now)) }
                    }
                }
            }
        },
    )
}

fn example(kind: EventType, merchant: &MerchantId, now: Timestamp) -> String {
    event_docs::example(kind, merchant, now)
        .and_then(|e| serde_json::to_string_pretty(&e).ok())
        .unwrap_or_default()
}

struct Snippet {
    language: &'static str,
    file: &'static str,
    code: &'static str,
}

const HMAC: [Snippet; 3] = [
    Snippet {
        language: "Python",
        file: "hmac.py",
        code: include_str!("verify/hmac.py"),
    },
    Snippet {
        language: "Node",
        file: "hmac.mjs",
        code: include_str!("verify/hmac.mjs"),
    },
    Snippet {
        language: "Rust",
        file: "hmac.rs",
        code: include_str!("verify/hmac.rs"),
    },
];

const ED25519: [Snippet; 3] = [
    Snippet {
        language: "Python",
        file: "ed25519.py",
        code: include_str!("verify/ed25519.py"),
    },
    Snippet {
        language: "Node",
        file: "ed25519.mjs",
        code: include_str!("verify/ed25519.mjs"),
    },
    Snippet {
        language: "Rust",
        file: "ed25519.rs",
        code: include_str!("verify/ed25519.rs"),
    },
];

fn snippets(title: &str, list: &[Snippet], keys_url: &str, merchant: &MerchantId) -> Markup {
    html! {
        h2 { (title) }
        @for snippet in list {
            h3 { (snippet.language) }
            pre.code data-file=(snippet.file) {
                (snippet.code.replace("{{KEYS_URL}}", keys_url).replace("{{MERCHANT_ID}}", merchant.as_str()))
            }
        }
    }
}

fn scheme_words(scheme: SignatureScheme) -> &'static str {
    match scheme {
        SignatureScheme::Hmac => "v1 signatures (HMAC-SHA256 with the endpoint's secret)",
        SignatureScheme::Ed25519 => "v1a signatures (ed25519, with our published keys)",
        SignatureScheme::Both => "both v1 (HMAC-SHA256) and v1a (ed25519) signatures",
    }
}

/// `GET /portal/endpoints/{id}/verify`: the code for the endpoint's signatures.
pub fn verify_page(endpoint: &WebhookEndpoint, keys_url: &str) -> Markup {
    let scheme = endpoint.signature_scheme;
    page(
        "Verify signatures",
        "../../",
        html! {
            p { a href={ "../" (endpoint.id.as_str()) } { "← " (endpoint.url) } }
            h1 { "Verify our signatures" }
            p { "Deliveries to this endpoint carry " strong { (scheme_words(scheme)) } ". Check every one before you act on it, on the raw body as it arrived: parse the JSON only afterwards." }
            table {
                thead { tr { th { "Header" } th { "What it holds" } } }
                tbody {
                    tr { td { code { "webhook-id" } } td { "The event's id: the same on every retry and replay. Use it to ignore a repeat." } }
                    tr { td { code { "webhook-timestamp" } } td { "When this attempt was signed (Unix seconds). Refuse one more than 5 minutes away." } }
                    tr { td { code { "webhook-signature" } } td {
                        @if scheme.signs_hmac() { code { "v1," } "base64 HMAC-SHA256 of " code { "{webhook-id}.{webhook-timestamp}.{body}" } " with the secret. " }
                        @if scheme.signs_ed25519() { code { "v1a," } "base64 ed25519 signature of the same. " }
                        "Space-separated, one per credential in force during a rotation."
                    } }
                    @if scheme.signs_ed25519() {
                        tr { td { code { "webhook-key-id" } } td { "The key of each " code { "v1a" } " signature, in the same order, in the key set at " code { (keys_url) } "." } }
                    }
                    tr { td { code { "webhook-sequence" } } td { "The session's version: order events of one session by it." } }
                    tr { td { code { "webhook-attempt" } } td { "1 for the first attempt, then 2, 3… (not signed)." } }
                }
            }
            @if scheme.signs_hmac() {
                (snippets("v1: HMAC with the endpoint's secret", &HMAC, keys_url, &endpoint.merchant_id))
            }
            @if scheme.signs_ed25519() {
                (snippets("v1a: ed25519 with the published keys", &ED25519, keys_url, &endpoint.merchant_id))
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_named_on_the_page_is_served() {
        let page = event_types_page(&MerchantId::generate(), checkout::clock::now()).into_string();
        let mut served = 0;
        for name in page.split("href=\"schemas/").skip(1) {
            let file = name.split('"').next().unwrap();
            let schema: serde_json::Value = serde_json::from_str(&schema(file).unwrap()).unwrap();
            assert!(schema.is_object());
            served += 1;
        }
        assert_eq!(served, DOCUMENTED.len() + 1);
        assert_eq!(schema("../secrets"), None);
    }

    #[test]
    fn the_served_acp_schema_is_the_bundle_in_spec() {
        const BUNDLE: &str = include_str!("../../../spec/acp-2026-04-17/json-schema/schema.agentic_checkout.json");
        let served: serde_json::Value = serde_json::from_str(&schema(ACP_SCHEMA_FILE).unwrap()).unwrap();
        let bundle: serde_json::Value = serde_json::from_str(BUNDLE).unwrap();
        assert_eq!(
            served, bundle,
            "regenerate acp-checkout.schema.json.deflate from spec/ (minified JSON, raw DEFLATE)"
        );
    }
}
