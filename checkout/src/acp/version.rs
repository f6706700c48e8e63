//! API versions this server speaks.

use std::fmt;

/// Newest first, as ACP asks for in `supported_versions`.
pub const SUPPORTED_VERSIONS: [&str; 2] = ["2026-04-17", "2025-09-29"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiVersion {
    /// The current protocol: `line_items`, capabilities, `Total.type`.
    V2026_04_17,
    /// The first public shape (`items` with a quantity); requests in it are still accepted.
    /// Responses are always in the current shape.
    V2025_09_29,
}

impl ApiVersion {
    pub const CURRENT: ApiVersion = ApiVersion::V2026_04_17;

    pub fn parse(raw: &str) -> Option<Self> {
        match raw.trim() {
            "2026-04-17" => Some(Self::V2026_04_17),
            "2025-09-29" => Some(Self::V2025_09_29),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::V2026_04_17 => "2026-04-17",
            Self::V2025_09_29 => "2025-09-29",
        }
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
