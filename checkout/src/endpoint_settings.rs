//! What a merchant may set on a webhook endpoint and on its ACP order webhook, checked: event
//! types, the rate limit, the description, a secret rotation's grace period, the order webhook's
//! secret, and what a change touches. (The URL's rules need a resolver: see [`crate::url_safety`].)

use crate::acp::ErrorCode;
use crate::clock::Timestamp;
use crate::event::EventType;
use crate::signing_key::KeyError;
use crate::webhook_endpoint::{
    DEFAULT_ROTATION_GRACE, MAX_DESCRIPTION_LEN, MAX_RATE_LIMIT, MAX_ROTATION_GRACE, SignatureScheme, WebhookEndpoint,
};
use chrono::Duration;

/// Longest order webhook secret accepted.
pub const MAX_ORDER_SECRET_LEN: usize = 512;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    #[error("Unknown event type '{name}'; known: {}", known_event_types())]
    UnknownEventType { index: usize, name: String },
    #[error("rate_limit is deliveries per second, from 1 to {MAX_RATE_LIMIT}")]
    RateLimit,
    #[error("description is at most {MAX_DESCRIPTION_LEN} characters, with no control or direction characters")]
    Description,
    #[error("grace_period_seconds is from 0 to {}", MAX_ROTATION_GRACE.num_seconds())]
    GracePeriod,
    #[error("secret is 1 to {MAX_ORDER_SECRET_LEN} bytes")]
    OrderWebhookSecret,
    #[error("the update changes nothing: give at least one field to change")]
    NothingToUpdate,
}

impl SettingError {
    /// The field, as a JSONPath into the request body.
    pub fn param(&self) -> String {
        match self {
            Self::UnknownEventType { index, .. } => format!("$.event_types[{index}]"),
            Self::RateLimit => "$.rate_limit".to_owned(),
            Self::Description => "$.description".to_owned(),
            Self::GracePeriod => "$.grace_period_seconds".to_owned(),
            Self::OrderWebhookSecret => "$.secret".to_owned(),
            Self::NothingToUpdate => "$".to_owned(),
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Self::UnknownEventType { .. } => ErrorCode::InvalidEventType,
            Self::RateLimit => ErrorCode::InvalidRateLimit,
            Self::Description => ErrorCode::InvalidDescription,
            Self::GracePeriod => ErrorCode::InvalidGracePeriod,
            Self::OrderWebhookSecret => ErrorCode::InvalidSecret,
            Self::NothingToUpdate => ErrorCode::NothingToUpdate,
        }
    }
}

fn known_event_types() -> String {
    let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
    known.join(", ")
}

/// Event types by name, each kept once (so the list is never longer than the types there
/// are, however long the request's); empty: every type.
pub fn event_types(names: &[String]) -> Result<Vec<EventType>, SettingError> {
    let mut types = Vec::new();
    for (index, name) in names.iter().enumerate() {
        let kind = EventType::parse(name).ok_or_else(|| SettingError::UnknownEventType {
            index,
            name: name.chars().take(40).collect(),
        })?;
        if !types.contains(&kind) {
            types.push(kind);
        }
    }
    Ok(types)
}

/// Deliveries per second, 1 to [`MAX_RATE_LIMIT`]; `None`: no limit of the endpoint's own.
pub fn rate_limit(rate: Option<u32>) -> Result<Option<u32>, SettingError> {
    match rate {
        Some(r) if r == 0 || r > MAX_RATE_LIMIT => Err(SettingError::RateLimit),
        _ => Ok(rate),
    }
}

/// At most [`MAX_DESCRIPTION_LEN`] characters, none of them a control character or a
/// bidirectional override (which could make a list of endpoints read other than it is).
pub fn description(description: Option<String>) -> Result<Option<String>, SettingError> {
    // Controls, and the invisible format characters that reorder, join or hide text.
    let spoofing = |c: char| {
        c.is_control()
            || matches!(c, '\u{ad}' | '\u{61c}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}' | '\u{feff}' | '\u{e0000}'..='\u{e007f}')
    };
    match description {
        Some(d) if d.chars().count() > MAX_DESCRIPTION_LEN || d.chars().any(spoofing) => Err(SettingError::Description),
        _ => Ok(description),
    }
}

/// How long a rotated-out secret keeps signing: 0 to [`MAX_ROTATION_GRACE`], by default
/// [`DEFAULT_ROTATION_GRACE`].
pub fn rotation_grace(seconds: Option<i64>) -> Result<Duration, SettingError> {
    match seconds {
        None => Ok(DEFAULT_ROTATION_GRACE),
        Some(secs) if (0..=MAX_ROTATION_GRACE.num_seconds()).contains(&secs) => Ok(Duration::seconds(secs)),
        Some(_) => Err(SettingError::GracePeriod),
    }
}

/// An order webhook's shared secret: 1 to [`MAX_ORDER_SECRET_LEN`] bytes.
pub fn order_webhook_secret(secret: &str) -> Result<(), SettingError> {
    if secret.is_empty() || secret.len() > MAX_ORDER_SECRET_LEN {
        return Err(SettingError::OrderWebhookSecret);
    }
    Ok(())
}

/// A change to an endpoint whose fields are checked (the URL by the caller), ready to apply to a
/// fresh copy: absent fields stay as they are.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EndpointChange {
    pub url: Option<String>,
    pub event_types: Option<Vec<EventType>>,
    pub description: Option<String>,
    /// `Some(None)` removes the endpoint's own limit.
    pub rate_limit: Option<Option<u32>>,
    pub enabled: Option<bool>,
    pub signature_scheme: Option<SignatureScheme>,
}

impl EndpointChange {
    /// Checks each field given; a change that gives none is refused.
    pub fn new(
        url: Option<String>,
        event_type_names: Option<&[String]>,
        description: Option<String>,
        rate_limit: Option<Option<u32>>,
        enabled: Option<bool>,
        signature_scheme: Option<SignatureScheme>,
    ) -> Result<Self, SettingError> {
        let change = Self {
            url,
            event_types: event_type_names.map(event_types).transpose()?,
            description: self::description(description)?,
            rate_limit: rate_limit.map(self::rate_limit).transpose()?,
            enabled,
            signature_scheme,
        };
        if change == Self::default() {
            return Err(SettingError::NothingToUpdate);
        }
        Ok(change)
    }

    /// Applies the change; enabling an endpoint clears why the system had disabled it.
    /// Fails only when a new signing key cannot be made (no randomness).
    pub fn apply(&self, endpoint: &mut WebhookEndpoint, now: Timestamp) -> Result<(), KeyError> {
        if let Some(url) = &self.url {
            endpoint.url.clone_from(url);
        }
        if let Some(types) = &self.event_types {
            endpoint.event_types.clone_from(types);
        }
        if let Some(description) = &self.description {
            // A blank description removes it.
            endpoint.description = (!description.is_empty()).then(|| description.clone());
        }
        if let Some(rate) = self.rate_limit {
            endpoint.rate_limit = rate;
        }
        if let Some(enabled) = self.enabled {
            endpoint.enabled = enabled;
            if enabled {
                endpoint.disabled_reason = None;
            }
        }
        if let Some(scheme) = self.signature_scheme {
            endpoint.set_signature_scheme(scheme, now)?;
        }
        endpoint.updated_at = now;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock;
    use crate::ids::MerchantId;

    #[test]
    fn repeated_event_types_are_kept_once() {
        let names: Vec<String> = std::iter::repeat_n("checkout.session.created".to_owned(), 55_000)
            .chain(["checkout.session.completed".to_owned()])
            .collect();
        assert_eq!(event_types(&names).unwrap(), [EventType::Created, EventType::Completed]);
    }

    #[test]
    fn descriptions_refuse_control_and_direction_characters() {
        for bad in [
            "a\u{0}b",
            "line\nbreak",
            "\u{202e}gnp.exe",
            "x\u{2066}y",
            "rlm\u{200f}",
            "sep\u{2028}",
            "zw\u{200b}j",
            "tag\u{e0041}",
        ] {
            assert!(description(Some(bad.to_owned())).is_err(), "{bad:?}");
        }
        assert_eq!(
            description(Some("Orders — EU".to_owned())).unwrap().as_deref(),
            Some("Orders — EU")
        );
    }

    #[test]
    fn bounds_are_checked_and_name_their_field() {
        assert_eq!(rate_limit(Some(1)), Ok(Some(1)));
        assert_eq!(rate_limit(Some(MAX_RATE_LIMIT)), Ok(Some(MAX_RATE_LIMIT)));
        assert_eq!(rate_limit(None), Ok(None));
        for bad in [0, MAX_RATE_LIMIT + 1] {
            assert_eq!(rate_limit(Some(bad)), Err(SettingError::RateLimit));
        }
        let long = "é".repeat(MAX_DESCRIPTION_LEN + 1);
        assert_eq!(description(Some(long)), Err(SettingError::Description));
        let at_limit = "é".repeat(MAX_DESCRIPTION_LEN);
        assert!(description(Some(at_limit)).is_ok(), "characters are counted, not bytes");
        assert_eq!(rotation_grace(None), Ok(DEFAULT_ROTATION_GRACE));
        assert_eq!(rotation_grace(Some(0)), Ok(Duration::zero()));
        assert_eq!(
            rotation_grace(Some(MAX_ROTATION_GRACE.num_seconds())),
            Ok(MAX_ROTATION_GRACE)
        );
        for bad in [-1, MAX_ROTATION_GRACE.num_seconds() + 1] {
            assert_eq!(rotation_grace(Some(bad)), Err(SettingError::GracePeriod));
        }
        assert_eq!(order_webhook_secret(""), Err(SettingError::OrderWebhookSecret));
        assert_eq!(
            order_webhook_secret(&"s".repeat(MAX_ORDER_SECRET_LEN + 1)),
            Err(SettingError::OrderWebhookSecret)
        );
        assert_eq!(order_webhook_secret("whsec_abc"), Ok(()));
        let unknown = event_types(&["checkout.session.created".into(), "nope".into()]);
        let err = unknown.unwrap_err();
        assert_eq!(err.param(), "$.event_types[1]");
        assert_eq!(err.code(), ErrorCode::InvalidEventType);
        assert!(err.to_string().contains("checkout.session.created"), "{err}");
    }

    #[test]
    fn a_change_applies_only_what_it_gives_and_must_give_something() {
        assert_eq!(
            EndpointChange::new(None, None, None, None, None, None),
            Err(SettingError::NothingToUpdate)
        );
        let mut endpoint =
            WebhookEndpoint::new(MerchantId::generate(), "https://a.example/hook".into(), clock::now()).unwrap();
        endpoint.rate_limit = Some(5);
        endpoint.disable("answered 410".into(), clock::now());
        let before = endpoint.clone();
        let change = EndpointChange::new(None, None, None, Some(None), Some(true), None).unwrap();
        change.apply(&mut endpoint, clock::now()).unwrap();
        assert_eq!(endpoint.rate_limit, None, "null removes the endpoint's own limit");
        assert!(endpoint.enabled);
        assert_eq!(endpoint.disabled_reason, None, "enabling clears the system's reason");
        assert_eq!(
            (&endpoint.url, &endpoint.event_types),
            (&before.url, &before.event_types)
        );
    }
}
