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
    // Strict: an array is never read as an object (serde's derive would take the fields in order).
    let parsed: Result<T, _> = serde_path_to_error::deserialize(super::strict::Strict(&mut de));
    let value = parsed.map_err(|err| {
        let path = err.path().to_string();
        refusal(err.inner(), (path != ".").then_some(path.as_str()), body)
    })?;
    de.end().map_err(|err| refusal(&err, None, body))?;
    Ok(value)
}

/// The refusal of a body serde could not read. serde says what it met and what it expected in
/// Rust's words (`expected u32`, `struct Address`); the client is told in JSON's.
fn refusal(err: &serde_json::Error, path: Option<&str>, body: &[u8]) -> AcpError {
    // A path is made of the client's keys: cut, so a 100 KB key is not sent back three times.
    let field = path.map(|p| {
        if p.chars().count() > MAX_PATH_CHARS {
            format!("$.{}…", p.chars().take(MAX_PATH_CHARS).collect::<String>())
        } else {
            format!("$.{p}")
        }
    });
    if err.is_syntax() || err.is_eof() || err.is_io() {
        // serde_json also calls an enum given in the wrong shape (`"type": 5`) a syntax error:
        // when the body is JSON after all, the field is what is wrong.
        let is_json = serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok();
        if let (true, Some(field)) = (is_json, field) {
            return AcpError::invalid(
                ErrorCode::InvalidRequest,
                format!("{field}: not one of the allowed values; see the API reference for its form."),
            )
            .with_param(field);
        }
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
    let text = text.rsplit_once(" at line ").map_or(text.as_str(), |(t, _)| t);
    let (message, param) = match describe(text) {
        Problem::Named(name, what) => {
            let param = match &field {
                Some(parent) => format!("{parent}.{name}"),
                None => format!("$.{name}"),
            };
            (format!("{param} {what}"), Some(param))
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
    /// About a field of the object at the path, by name (absent, twice).
    Named(String, &'static str),
    Other(String),
}

/// Longest path (of the client's keys) repeated in a message or a `param`.
const MAX_PATH_CHARS: usize = 200;

/// Longest piece of the client's own text repeated in a message.
const SHOWN_CHARS: usize = 40;

/// The client's text, cut to [`SHOWN_CHARS`].
fn shown(text: &str) -> String {
    if text.chars().count() > SHOWN_CHARS {
        format!("{}…", text.chars().take(SHOWN_CHARS).collect::<String>())
    } else {
        text.to_owned()
    }
}

/// The name between serde's backticks and what follows it: `rest` is the text after the
/// opening backtick; the name may itself hold backticks, so the closing one is the last before
/// `tail` (or the end).
fn name_and_rest<'a>(rest: &'a str, tails: &[&str]) -> (&'a str, &'a str) {
    for tail in tails {
        if let Some((name, after)) = rest.rsplit_once(tail) {
            return (name, after);
        }
    }
    (rest.strip_suffix('`').unwrap_or(rest), "")
}

/// serde's message in plain words (its wording is stable: it is part of `serde::de::Error`'s
/// default messages); a message it does not recognise is kept whole.
fn describe(text: &str) -> Problem {
    if let Some(rest) = text.strip_prefix("missing field `") {
        return Problem::Named(shown(name_and_rest(rest, &[]).0), "is required.");
    }
    if let Some(rest) = text.strip_prefix("duplicate field `") {
        return Problem::Named(
            shown(name_and_rest(rest, &[]).0),
            "appears twice; give each field once.",
        );
    }
    if let Some(rest) = text.strip_prefix("unknown field `") {
        let (name, expected) = name_and_rest(rest, &["`, expected ", "`, there are no fields"]);
        let known = listed(expected);
        return Problem::Other(if known.is_empty() {
            format!("'{}' is not a field here.", shown(name))
        } else {
            format!("'{}' is not a field here; the fields are {known}.", shown(name))
        });
    }
    if let Some(rest) = text.strip_prefix("unknown variant `") {
        let (name, expected) = name_and_rest(rest, &["`, expected "]);
        return Problem::Other(format!("'{}' is not one of {}.", shown(name), listed(expected)));
    }
    if let Some(rest) = text.strip_prefix("invalid value: integer `")
        && let Some((number, expected)) = rest.split_once("`, expected ")
    {
        return Problem::Other(format!(
            "the number {} is out of range: expected {}.",
            shown(number),
            range_of(expected)
        ));
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = text.strip_prefix(prefix)
            && let Some((got, expected)) = rest.rsplit_once(", expected ")
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
        // serde counts an array given for an object by the object's fields, not the array's items.
        if expected.starts_with("struct ") {
            return Problem::Other("expected an object, got an array.".to_owned());
        }
        return Problem::Other(format!("expected {}, got {n} items.", expected_thing(expected)));
    }
    Problem::Other(format!("{}.", shown(text)))
}

/// "one of `a`, `b`" → "a, b".
fn listed(expected: &str) -> String {
    let names: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    names.join(", ")
}

/// The range of an integer type, in words.
fn range_of(expected: &str) -> String {
    let (low, high): (i128, i128) = match expected {
        "u8" => (0, u8::MAX.into()),
        "u16" => (0, u16::MAX.into()),
        "u32" => (0, u32::MAX.into()),
        "u64" | "usize" => (0, u64::MAX.into()),
        "i8" => (i8::MIN.into(), i8::MAX.into()),
        "i16" => (i16::MIN.into(), i16::MAX.into()),
        "i32" => (i32::MIN.into(), i32::MAX.into()),
        "i64" | "isize" => (i64::MIN.into(), i64::MAX.into()),
        other => return expected_thing(other),
    };
    format!("a whole number from {low} to {high}")
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
    if let Some(s) = got.strip_prefix("string \"") {
        let s = s.strip_suffix('"').unwrap_or(s);
        let cut = shown(s);
        return format!("the string \"{cut}\"");
    }
    for prefix in ["integer ", "floating point "] {
        if let Some(n) = got.strip_prefix(prefix) {
            return format!("the number {}", shown(n.trim_matches('`')));
        }
    }
    if let Some(b) = got.strip_prefix("boolean ") {
        return b.trim_matches('`').to_owned();
    }
    match got {
        "map" => "an object".to_owned(),
        "sequence" => "an array".to_owned(),
        "null" | "unit value" | "unit" => "null".to_owned(),
        other => shown(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acp::{CancelSessionRequest, CreateSessionRequest, UpdateSessionRequest};

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
        let long_key = format!(r#"{{"currency":"usd","line_items":[],"{}":1}}"#, "k".repeat(100_000));
        let cases: [(&[u8], &str, Option<&str>); 15] = [
            // Every field of the object, in order, as an array: serde alone takes it.
            (
                br#"{"currency":"usd","line_items":[],"buyer":["Jane","Doe",null,"j@example.com",null,null,null,null,null,null,null]}"#,
                "$.buyer: expected an object, got an array.",
                Some("$.buyer"),
            ),
            (
                br#"{"currency":"usd","line_items":[["a",null,null,1]]}"#,
                "$.line_items[0]: expected an object, got an array.",
                Some("$.line_items[0]"),
            ),
            (
                br#"{"currency":"usd","line_items":[],"currency":"eur"}"#,
                "$.currency appears twice",
                Some("$.currency"),
            ),
            (
                br#"{"currency":"usd","line_items":[{"id":"a","quantity":9223372036854775808}]}"#,
                "the number 9223372036854775808 is out of range: expected a whole number from -9223372036854775808 to 9223372036854775807.",
                Some("$.line_items[0].quantity"),
            ),
            (
                br#"{"currency":"usd","line_items":[],"buyer":["Jane"]}"#,
                "expected an object, got an array.",
                Some("$.buyer"),
            ),
            (
                br#"{"currency":"usd","line_items":[],"a`b":1}"#,
                "'a`b' is not a field here; the fields are ",
                Some("$.a`b"),
            ),
            (long_key.as_bytes(), "'kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk…' is not a field here", None),
            (
                br#"{"currency":"usd","line_items":[{"id":"a","quantity":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}]}"#,
                "got the string \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa…\".",
                Some("$.line_items[0].quantity"),
            ),
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
            let sent = String::from_utf8_lossy(&body[..body.len().min(200)]);
            assert!(err.message.contains(says), "{sent} → {}", err.message);
            assert!(
                err.message.len() < 600,
                "{sent}: a message of {} bytes",
                err.message.len()
            );
            if param.is_some() {
                assert_eq!(err.param.as_deref(), param, "{}", err.message);
            }
            // The client's own name may hold a backtick; nothing else may.
            let message = err.message.replace("a`b", "");
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
                assert!(!message.contains(rust), "{rust} in {}", err.message);
            }
        }
    }

    /// serde_json calls an enum in the wrong shape a syntax error; the body is JSON all the same.
    #[test]
    fn an_enum_in_the_wrong_shape_names_its_field_not_the_json() {
        for kind in ["5", "null", "{}", r#"["shipping"]"#] {
            let body = format!(r#"{{"selected_fulfillment_options":[{{"type":{kind},"option_id":"x"}}]}}"#);
            let err = parse_body::<UpdateSessionRequest>(body.as_bytes()).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidRequest, "{body}: {}", err.message);
            assert_eq!(
                err.param.as_deref(),
                Some("$.selected_fulfillment_options[0].type"),
                "{body}: {}",
                err.message
            );
        }
        let broken =
            parse_body::<UpdateSessionRequest>(br#"{"selected_fulfillment_options":[{"type":}]}"#).unwrap_err();
        assert_eq!(broken.code, ErrorCode::InvalidJson);
    }
}
