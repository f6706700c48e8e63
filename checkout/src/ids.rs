//! Typed identifiers. Each carries a short prefix so a stray id in a log says what it is.

use serde::{Deserialize, Serialize};
use std::fmt;
use ulid::Ulid;

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A fresh, time-ordered identifier.
            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, Ulid::new()))
            }

            /// Accepts an identifier from outside (a URL path, a stored record). Anything that
            /// could not have come from `generate` (or an operator's own id) is refused.
            pub fn parse(raw: &str) -> Option<Self> {
                let rest = raw.strip_prefix($prefix)?;
                let plausible = !rest.is_empty()
                    && raw.len() <= 64
                    && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                plausible.then(|| Self(raw.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

prefixed_id!(
    /// A checkout session (`cs_…`).
    SessionId,
    "cs_"
);
prefixed_id!(
    /// An event in the store (`evt_…`); also the `webhook-id` of every delivery of it.
    EventId,
    "evt_"
);
prefixed_id!(
    /// A tenant (`mer_…`).
    MerchantId,
    "mer_"
);
prefixed_id!(
    /// A merchant's webhook endpoint (`we_…`).
    EndpointId,
    "we_"
);
prefixed_id!(
    /// A replay of what an endpoint missed, run in the background (`rpl_…`).
    ReplayId,
    "rpl_"
);
prefixed_id!(
    /// An order created when a session completes (`ord_…`).
    OrderId,
    "ord_"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back() {
        let id = SessionId::generate();
        assert!(id.as_str().starts_with("cs_"));
        assert_eq!(SessionId::parse(id.as_str()), Some(id));
    }

    #[test]
    fn foreign_or_hostile_ids_are_refused() {
        assert_eq!(SessionId::parse("evt_01ABC"), None);
        assert_eq!(SessionId::parse("cs_"), None);
        assert_eq!(SessionId::parse("cs_../../etc"), None);
        assert_eq!(SessionId::parse(&format!("cs_{}", "a".repeat(80))), None);
        assert!(MerchantId::parse("mer_demo").is_some());
    }
}
