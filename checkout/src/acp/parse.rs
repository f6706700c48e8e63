//! Strict parsing of request bodies, and refusals a client can act on.

use super::{AcpError, ErrorCode};
use serde::de::DeserializeOwned;

/// How deeply a request body may nest objects and arrays. Free-form fields (`metadata`,
/// `intent_trace`, …) are stored inside the event envelope a few levels deeper, and the JSON
/// reader refuses 128 levels: a body nested deeper than this could be stored but never read back.
pub const MAX_JSON_DEPTH: usize = 32;

/// How deeply `body` nests objects and arrays (brackets inside strings do not count).
fn nesting_depth(body: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &byte in body {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Parses a request body, turning any failure into an ACP `invalid_request` (or `invalid_json`)
/// that says in plain words what was wrong, and names the offending field as a JSONPath in
/// `param`. The body must be one JSON object, nested at most [`MAX_JSON_DEPTH`] levels.
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, AcpError> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(AcpError::invalid(
            ErrorCode::InvalidRequest,
            "The request body must be a JSON object.",
        ));
    }
    let depth = nesting_depth(body);
    if depth > MAX_JSON_DEPTH {
        return Err(AcpError::invalid(
            ErrorCode::InvalidRequest,
            format!(
                "The request body nests {depth} levels of objects and arrays; at most {MAX_JSON_DEPTH} are accepted."
            ),
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let value = parsed.map_err(|err| {
        let path = err.path().to_string();
        refusal(err.inner(), (path != ".").then_some(path.as_str()))
    })?;
    de.end().map_err(|err| refusal(&err, None))?;
    Ok(value)
}

/// The refusal of a body serde could not read. serde says what it met and what it expected in
/// Rust's words (`expected u32`, `struct Address`); the client is told in JSON's.
fn refusal(err: &serde_json::Error, path: Option<&str>) -> AcpError {
    if err.is_syntax() || err.is_eof() || err.is_io() {
        let (line, column) = (err.line(), err.column());
        let message = if err.is_eof() {
            format!("The request body is not valid JSON: it ends before the JSON does (line {line}, column {column}).")
        } else {
            format!("The request body is not valid JSON (line {line}, column {column}).")
        };
        return AcpError::invalid(ErrorCode::InvalidJson, message);
    }
    let text = err.to_string();
    // serde_json appends where it stopped; the path in `param` says it better.
    let text = text.split(" at line ").next().unwrap_or(&text);
    let field = path.map(|p| format!("$.{p}"));
    let (message, param) = match describe(text) {
        Problem::Missing(name) => {
            let param = match &field {
                Some(parent) => format!("{parent}.{name}"),
                None => format!("$.{name}"),
            };
            (format!("{param} is required."), Some(param))
        }
        Problem::Other(what) => {
            let at = field.as_deref().unwrap_or("The request body");
            (format!("{at}: {what}"), field)
        }
    };
    let error = AcpError::invalid(ErrorCode::InvalidRequest, message);
    match param {
        Some(param) => error.with_param(param),
        None => error,
    }
}

enum Problem {
    /// A required field is absent.
    Missing(String),
    Other(String),
}

/// serde's message in plain words (its wording is stable: it is part of `serde::de::Error`'s
/// default messages); a message it does not recognise is kept whole.
fn describe(text: &str) -> Problem {
    if let Some(rest) = text.strip_prefix("missing field `") {
        return Problem::Missing(rest.trim_end_matches('`').to_owned());
    }
    if let Some(rest) = text.strip_prefix("unknown field `") {
        let (name, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let known = listed(expected);
        return Problem::Other(if known.is_empty() {
            format!("'{name}' is not a field here.")
        } else {
            format!("'{name}' is not a field here; the fields are {known}.")
        });
    }
    if let Some(rest) = text.strip_prefix("unknown variant `") {
        let (name, expected) = rest.split_once('`').unwrap_or((rest, ""));
        return Problem::Other(format!("'{name}' is not one of {}.", listed(expected)));
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = text.strip_prefix(prefix)
            && let Some((got, expected)) = rest.split_once(", expected ")
        {
            return Problem::Other(format!(
                "expected {}, got {}.",
                expected_thing(expected),
                got_thing(got)
            ));
        }
    }
    if let Some(rest) = text.strip_prefix("invalid length ")
        && let Some((n, expected)) = rest.split_once(", expected ")
    {
        return Problem::Other(format!("expected {}, got {n} items.", expected_thing(expected)));
    }
    Problem::Other(format!("{text}."))
}

/// "one of `a`, `b`" → "a, b".
fn listed(expected: &str) -> String {
    let names: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    names.join(", ")
}

/// What serde expected, in JSON's words.
fn expected_thing(expected: &str) -> String {
    let thing = match expected {
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "an integer",
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number, 0 or more",
        "f32" | "f64" => "a number",
        "a boolean" => "true or false",
        "a string" | "a borrowed string" | "a character" => "a string",
        "a sequence" | "a tuple" => "an array",
        "a map" => "an object",
        "unit" => "null",
        other if other.starts_with("struct ") || other.starts_with("a struct") => "an object",
        other if other.starts_with("variant identifier") || other.starts_with("enum ") => "one of the allowed values",
        other if other.starts_with("a sequence of ") || other.starts_with("an array of length ") => {
            return other.replace("a sequence", "an array");
        }
        other => return other.to_owned(),
    };
    thing.to_owned()
}

/// What serde met, in JSON's words ("string \"two\"" → "the string \"two\"").
fn got_thing(got: &str) -> String {
    let shown = |v: &str| -> String {
        let v = v.trim_matches('`');
        if v.chars().count() > 40 {
            format!("{}…", v.chars().take(40).collect::<String>())
        } else {
            v.to_owned()
        }
    };
    if let Some(s) = got.strip_prefix("string ") {
        return format!("the string {}", shown(s));
    }
    for prefix in ["integer ", "floating point "] {
        if let Some(n) = got.strip_prefix(prefix) {
            return format!("the number {}", shown(n));
        }
    }
    if let Some(b) = got.strip_prefix("boolean ") {
        return shown(b);
    }
    match got {
        "map" => "an object".to_owned(),
        "sequence" => "an array".to_owned(),
        "null" | "unit value" | "unit" => "null".to_owned(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acp::{CancelSessionRequest, CreateSessionRequest};

    #[test]
    fn unknown_top_level_field_is_named() {
        let err = parse_body::<CreateSessionRequest>(br#"{"currency":"usd","line_items":[{"id":"a"}],"bogus":1}"#)
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidRequest);
        assert!(err.message.contains("bogus"), "{}", err.message);
    }

    #[test]
    fn wrong_type_points_at_the_field() {
        let err =
            parse_body::<CreateSessionRequest>(br#"{"currency":"usd","line_items":[{"id":"a","quantity":"two"}]}"#)
                .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("$.line_items[0].quantity"));
    }

    #[test]
    fn malformed_json_is_invalid_json() {
        let err = parse_body::<CreateSessionRequest>(br#"{"currency":"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidJson);
        let err = parse_body::<CreateSessionRequest>(br#"{"currency":"usd"} trailing"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidJson);
    }

    #[test]
    fn only_objects_are_bodies() {
        for body in [
            &br#"[null,[{"id":"test_1","quantity":3}],null,"usd"]"#[..],
            b"[]",
            b"\"usd\"",
            b"1",
            b"",
        ] {
            let err = parse_body::<CancelSessionRequest>(body).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidRequest, "{}", String::from_utf8_lossy(body));
            assert!(err.message.contains("JSON object"), "{}", err.message);
        }
        assert!(parse_body::<CancelSessionRequest>(b"  {}").is_ok());
    }

    #[test]
    fn deep_nesting_is_refused_with_the_limit_in_the_message() {
        let nested = |levels: usize| {
            format!(
                r#"{{"intent_trace":{{"x":{}1{}}}}}"#,
                "[".repeat(levels),
                "]".repeat(levels)
            )
        };
        // Two levels for the body and intent_trace, then the arrays.
        assert!(parse_body::<CancelSessionRequest>(nested(MAX_JSON_DEPTH - 2).as_bytes()).is_ok());
        let err = parse_body::<CancelSessionRequest>(nested(125).as_bytes()).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidRequest);
        assert!(err.message.contains("at most 32"), "{}", err.message);
        // Brackets inside strings are text, not nesting.
        let text = format!(
            r#"{{"intent_trace":{{"x":"{}\"{}"}}}}"#,
            "[".repeat(200),
            "{".repeat(200)
        );
        assert!(parse_body::<CancelSessionRequest>(text.as_bytes()).is_ok());
    }

    #[test]
    fn seed_shape_parses() {
        let req: CreateSessionRequest =
            parse_body(br#"{"currency":"usd","items":[{"id":"test_1","quantity":1}]}"#).unwrap();
        assert_eq!(req.items.unwrap()[0].quantity, Some(1));
    }

    #[test]
    fn empty_extensions_array_is_accepted() {
        let req: CreateSessionRequest =
            parse_body(br#"{"currency":"usd","line_items":[{"id":"a"}],"capabilities":{"extensions":[]}}"#).unwrap();
        assert_eq!(req.capabilities.unwrap().extensions, Some(vec![]));
    }

    /// What a client reads says which field and what was expected, in JSON's words, never in
    /// Rust's.
    #[test]
    fn refusals_speak_json_not_rust() {
        let cases: [(&[u8], &str, Option<&str>); 7] = [
            (
                br#"{"currency":"usd","line_items":[{"id":"a","quantity":"two"}]}"#,
                "expected an integer, got the string \"two\"",
                Some("$.line_items[0].quantity"),
            ),
            (
                br#"{"currency":"usd","line_items":[{"id":"a","quantity":1.5}]}"#,
                "expected an integer, got the number 1.5",
                Some("$.line_items[0].quantity"),
            ),
            (
                br#"{"line_items":[{"id":"a"}]}"#,
                "$.currency is required.",
                Some("$.currency"),
            ),
            (
                br#"{"currency":"usd","line_items":{"id":"a"}}"#,
                "expected an array, got an object",
                Some("$.line_items"),
            ),
            (
                br#"{"currency":7,"line_items":[]}"#,
                "expected a string, got the number 7",
                Some("$.currency"),
            ),
            (
                br#"{"currency":"usd","line_items":[],"bogus":1}"#,
                "'bogus' is not a field here; the fields are ",
                Some("$.bogus"),
            ),
            (
                br#"{"currency":"#,
                "ends before the JSON does (line 1, column 12)",
                None,
            ),
        ];
        for (body, says, param) in cases {
            let err = parse_body::<CreateSessionRequest>(body).unwrap_err();
            assert!(
                err.message.contains(says),
                "{} → {}",
                String::from_utf8_lossy(body),
                err.message
            );
            assert_eq!(err.param.as_deref(), param, "{}", err.message);
            for rust in [
                "i64",
                "u32",
                "u64",
                "struct",
                "premature",
                "EOF",
                "variant",
                "`",
                "line 1 column",
            ] {
                assert!(!err.message.contains(rust), "{rust} in {}", err.message);
            }
        }
    }
}
