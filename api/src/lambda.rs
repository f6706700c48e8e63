//! The API as the SessionManagerFunction serves it, behind an API Gateway HTTP API.
//!
//! On a named stage (`/dev`, `/prod`), API Gateway puts the stage into the path the function is
//! given (`rawPath` is `/dev/checkout_sessions`), and `lambda_http` keeps it there, whatever
//! `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH` says: every route would be a 404. The stage prefix is
//! therefore removed here, before routing; on the `$default` stage the path has none.

use crate::{AppState, router};
use axum::Router;
use axum::http::Uri;
use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};
use tower::util::MapRequest;

/// What the function reads from its environment, for `--help`.
pub const USAGE: aws_backend::lambda_process::Usage = aws_backend::lambda_process::Usage {
    name: "session-manager",
    about: "the ACP checkout API and the merchant API, behind an API Gateway HTTP API",
    env: &[
        (
            "PAYMENT_PROCESSOR",
            "required: the payment processor; `test` (the one built in) approves test tokens only",
        ),
        (
            "ACP_PUBLIC_BASE_URL",
            "the API's address as clients reach it, for /.well-known/acp.json (default: as API Gateway names it)",
        ),
        (
            "ACP_SUPPORTED_CURRENCIES",
            "the currencies /.well-known/acp.json announces, comma-separated (default usd)",
        ),
        (
            "REPLAY_STEPS_QUEUE_URL",
            "where replays start, for the replay runner (without it, replay answers 503)",
        ),
        (
            "ORDER_UPDATES_QUEUE_URL",
            "the dispatcher's queue, where test events go (without it, POST /webhook_endpoints/{id}/test answers 503)",
        ),
    ],
};

/// The payment processors this build can charge through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Processor {
    /// [`checkout::payment::TestPaymentProcessor`]: test tokens only; every session says
    /// `test_mode: true`.
    Test,
}

/// The function's settings, from its environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub processor: Processor,
    pub replay_steps_queue_url: Option<String>,
    /// `ORDER_UPDATES_QUEUE_URL`: the dispatcher's queue, for test events.
    pub deliveries_queue_url: Option<String>,
    /// `ACP_PUBLIC_BASE_URL`: where clients reach the API (behind a custom domain); else as API
    /// Gateway names it per request.
    pub public_base_url: Option<String>,
    /// `ACP_SUPPORTED_CURRENCIES`: comma-separated, announced by `/.well-known/acp.json`.
    pub supported_currencies: Vec<String>,
    /// `ACP_ALLOW_LOOPBACK_WEBHOOKS=1`: webhook URLs on this machine are accepted. For test rigs
    /// only; the template never sets it.
    pub allow_loopback_webhooks: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    #[error(
        "PAYMENT_PROCESSOR is not set: a deployment must choose its payment processor (the \
         template's PaymentProcessor parameter); `test` is the one built in"
    )]
    NoProcessor,
    #[error("PAYMENT_PROCESSOR={0:?} is not a payment processor this build has (it has `test`)")]
    UnknownProcessor(String),
    #[error("ACP_SUPPORTED_CURRENCIES={0:?} is not a list of ISO 4217 codes in lower case, such as usd,eur")]
    BadCurrencies(String),
}

impl Settings {
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let processor = match get("PAYMENT_PROCESSOR").as_deref().map(str::trim) {
            None | Some("") => return Err(SettingsError::NoProcessor),
            Some("test") => Processor::Test,
            Some(other) => return Err(SettingsError::UnknownProcessor(other.to_owned())),
        };
        let supported_currencies = match get("ACP_SUPPORTED_CURRENCIES") {
            None => vec!["usd".to_owned()],
            Some(raw) => {
                let codes: Vec<String> = raw.split(',').map(|c| c.trim().to_owned()).collect();
                let valid = codes
                    .iter()
                    .all(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_lowercase()));
                if !valid {
                    return Err(SettingsError::BadCurrencies(raw));
                }
                codes
            }
        };
        Ok(Self {
            processor,
            replay_steps_queue_url: get("REPLAY_STEPS_QUEUE_URL").filter(|u| !u.is_empty()),
            deliveries_queue_url: get("ORDER_UPDATES_QUEUE_URL").filter(|u| !u.is_empty()),
            public_base_url: get("ACP_PUBLIC_BASE_URL").filter(|u| !u.is_empty()),
            supported_currencies,
            allow_loopback_webhooks: get("ACP_ALLOW_LOOPBACK_WEBHOOKS")
                .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")),
        })
    }
}

/// The API with the stage taken out of each request's path, and the address clients reach it
/// at noted on each request.
pub fn service(state: AppState) -> MapRequest<Router, fn(Request) -> Request> {
    MapRequest::new(router(state), from_api_gateway)
}

fn from_api_gateway(request: Request) -> Request {
    note_public_base_url(strip_stage(request))
}

/// `https://{domain}/{stage}` (no stage on `$default`), from API Gateway's request context.
pub fn note_public_base_url(mut request: Request) -> Request {
    let base = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.domain_name.clone().map(|domain| {
            match context.stage.as_deref().filter(|s| *s != "$default" && !s.is_empty()) {
                Some(stage) => format!("https://{domain}/{stage}"),
                None => format!("https://{domain}"),
            }
        }),
        _ => None,
    };
    if let Some(base) = base {
        request.extensions_mut().insert(crate::discovery::PublicBaseUrl(base));
    }
    request
}

/// `/dev/checkout_sessions` on stage `dev` becomes `/checkout_sessions`; anything else is left as
/// it came.
pub fn strip_stage(mut request: Request) -> Request {
    let stage = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.stage.clone(),
        _ => None,
    };
    let Some(stage) = stage.filter(|s| s != "$default" && !s.is_empty()) else {
        return request;
    };
    let prefix = format!("/{stage}");
    let uri = request.uri();
    let Some(rest) = uri.path().strip_prefix(&prefix) else {
        return request;
    };
    if !(rest.is_empty() || rest.starts_with('/')) {
        // `/device/...` on stage `dev` is not under the stage.
        return request;
    }
    let path = if rest.is_empty() { "/" } else { rest };
    let target = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    if let Ok(target) = target.parse() {
        parts.path_and_query = Some(target);
        if let Ok(uri) = Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext;

    fn on_stage(stage: &str, path: &str) -> Request {
        let mut request = Request::new(lambda_http::Body::Empty);
        *request.uri_mut() = path.parse().unwrap();
        let mut context = ApiGatewayV2httpRequestContext::default();
        context.stage = Some(stage.to_owned());
        request.extensions_mut().insert(RequestContext::ApiGatewayV2(context));
        request
    }

    fn stripped(stage: &str, path: &str) -> String {
        strip_stage(on_stage(stage, path)).uri().to_string()
    }

    #[test]
    fn a_deployment_must_name_its_payment_processor() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
        };
        assert_eq!(Settings::from_lookup(env(&[])), Err(SettingsError::NoProcessor));
        assert_eq!(
            Settings::from_lookup(env(&[("PAYMENT_PROCESSOR", "stripe")])),
            Err(SettingsError::UnknownProcessor("stripe".into()))
        );
        let settings = Settings::from_lookup(env(&[
            ("PAYMENT_PROCESSOR", "test"),
            ("REPLAY_STEPS_QUEUE_URL", "https://q"),
            ("ORDER_UPDATES_QUEUE_URL", "https://d"),
        ]))
        .unwrap();
        assert_eq!(settings.processor, Processor::Test);
        assert_eq!(settings.replay_steps_queue_url.as_deref(), Some("https://q"));
        assert_eq!(settings.deliveries_queue_url.as_deref(), Some("https://d"));
    }

    #[test]
    fn the_public_base_url_is_the_domain_and_named_stage() {
        let base = |stage: &str| {
            let mut request = on_stage(stage, "/x");
            if let Some(RequestContext::ApiGatewayV2(context)) = request.extensions_mut().get_mut::<RequestContext>() {
                context.domain_name = Some("abc.execute-api.us-east-1.amazonaws.com".to_owned());
            }
            note_public_base_url(request)
                .extensions()
                .get::<crate::discovery::PublicBaseUrl>()
                .map(|b| b.0.clone())
        };
        assert_eq!(
            base("dev").as_deref(),
            Some("https://abc.execute-api.us-east-1.amazonaws.com/dev")
        );
        assert_eq!(
            base("$default").as_deref(),
            Some("https://abc.execute-api.us-east-1.amazonaws.com")
        );
        let settings = Settings::from_lookup(|name| match name {
            "PAYMENT_PROCESSOR" => Some("test".to_owned()),
            "ACP_SUPPORTED_CURRENCIES" => Some("usd, eur".to_owned()),
            _ => None,
        })
        .unwrap();
        assert_eq!(settings.supported_currencies, ["usd", "eur"]);
        let bad = Settings::from_lookup(|name| match name {
            "PAYMENT_PROCESSOR" => Some("test".to_owned()),
            "ACP_SUPPORTED_CURRENCIES" => Some("USD".to_owned()),
            _ => None,
        });
        assert_eq!(bad, Err(SettingsError::BadCurrencies("USD".to_owned())));
    }

    #[test]
    fn only_a_whole_leading_stage_segment_is_removed() {
        assert_eq!(stripped("dev", "/dev/checkout_sessions?x=1"), "/checkout_sessions?x=1");
        assert_eq!(stripped("dev", "/dev"), "/");
        assert_eq!(stripped("check", "/checkout_sessions"), "/checkout_sessions");
        assert_eq!(stripped("$default", "/checkout_sessions"), "/checkout_sessions");
        assert_eq!(stripped("dev", "/webhook_endpoints/dev"), "/webhook_endpoints/dev");
    }
}
