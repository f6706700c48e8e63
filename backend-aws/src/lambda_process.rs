//! What every Lambda bootstrap does before it reaches the runtime: answer `--help` and
//! `--version` without touching the network, and refuse to start outside Lambda with a clear
//! message instead of failing on the runtime API.

use std::io::Write;
use std::process::ExitCode;

/// A function's name, what it does and the environment it reads, for `--help`.
pub struct Usage {
    pub name: &'static str,
    pub about: &'static str,
    /// (variable, meaning), besides the [`TABLE_VARIABLES`] every function reads.
    pub env: &'static [(&'static str, &'static str)],
}

impl Usage {
    /// Every variable the function reads: its own, then the tables'.
    pub fn variables(&self) -> impl Iterator<Item = &(&'static str, &'static str)> {
        self.env.iter().chain(TABLE_VARIABLES)
    }
}

/// The tables every function finds the way [`crate::TableNames::from_env`] does.
pub const TABLE_VARIABLES: &[(&str, &str)] = &[
    ("ACP_ENVIRONMENT", "the environment name the table names derive from"),
    (
        "SESSIONS_TABLE",
        "the event store (default: {ACP_ENVIRONMENT}-acp-sessions)",
    ),
    ("IDEMPOTENCY_TABLE", "idempotency replies"),
    ("MERCHANTS_TABLE", "merchants and their webhook endpoints"),
    ("DELIVERIES_TABLE", "the attempt log"),
];

/// Set by the Lambda service in every function's environment.
const RUNTIME_API: &str = "AWS_LAMBDA_RUNTIME_API";

/// Logs as Lambda's advanced logging controls ask: JSON lines when `AWS_LAMBDA_LOG_FORMAT` is
/// `JSON` (the template's setting), at the level `AWS_LAMBDA_LOG_LEVEL` names, else `RUST_LOG` if
/// it is a plain level, else INFO. One level for everything, no per-module filter: that filter
/// needs a regex engine in every bootstrap. Each line carries the invocation's span (its request
/// id), not the list of every enclosing span.
pub fn init_logging() {
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let level = log_level(
        std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref(),
        std::env::var("RUST_LOG").ok().as_deref(),
    );
    let logs = tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_max_level(level);
    if json {
        logs.json().with_span_list(false).init();
    } else {
        logs.init();
    }
}

fn log_level(lambda: Option<&str>, rust_log: Option<&str>) -> tracing_subscriber::filter::LevelFilter {
    [lambda, rust_log]
        .into_iter()
        .flatten()
        .find_map(|level| level.trim().parse().ok())
        .unwrap_or(tracing_subscriber::filter::LevelFilter::INFO)
}

/// `None` when the process should go on to serve invocations; otherwise how it should exit.
pub fn preflight(usage: &Usage) -> Option<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    match decide(&args, std::env::var_os(RUNTIME_API).is_some()) {
        Preflight::Serve => None,
        Preflight::Help => {
            let _ = out.write_all(help(usage).as_bytes());
            Some(ExitCode::SUCCESS)
        }
        Preflight::Version => {
            let _ = writeln!(out, "{} {}", usage.name, env!("CARGO_PKG_VERSION"));
            Some(ExitCode::SUCCESS)
        }
        Preflight::NotInLambda => {
            let _ = writeln!(
                err,
                "{name}: {RUNTIME_API} is not set, so this is not running on AWS Lambda.\n\
                 {name} is a Lambda function's bootstrap: deploy it with `sam build && sam deploy`, \
                 or run the whole system locally with `acp-local`. `{name} --help` lists its settings.",
                name = usage.name
            );
            Some(ExitCode::from(2))
        }
        Preflight::UnknownArgument(arg) => {
            let _ = writeln!(err, "{}: unknown argument {arg:?}; try --help", usage.name);
            Some(ExitCode::from(2))
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Preflight {
    Serve,
    Help,
    Version,
    NotInLambda,
    UnknownArgument(String),
}

fn decide(args: &[String], in_lambda: bool) -> Preflight {
    match args.first().map(String::as_str) {
        Some("-h" | "--help" | "help") => Preflight::Help,
        Some("-V" | "--version") => Preflight::Version,
        Some(other) => Preflight::UnknownArgument(other.to_owned()),
        None if in_lambda => Preflight::Serve,
        None => Preflight::NotInLambda,
    }
}

fn help(usage: &Usage) -> String {
    let width = usage.variables().map(|(name, _)| name.len()).max().unwrap_or(0);
    let mut text = format!(
        "{name} — {about}\n\nThe bootstrap of an AWS Lambda function: it serves invocations from the \
         Lambda runtime API and takes no arguments.\n\nEnvironment:\n",
        name = usage.name,
        about = usage.about
    );
    for (name, meaning) in usage.variables() {
        text.push_str(&format!("  {name:width$}  {meaning}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_level_follows_lambda_then_rust_log() {
        use tracing_subscriber::filter::LevelFilter;
        assert_eq!(log_level(Some("WARN"), Some("debug")), LevelFilter::WARN);
        assert_eq!(log_level(None, Some("debug")), LevelFilter::DEBUG);
        assert_eq!(log_level(Some("nonsense"), Some("error")), LevelFilter::ERROR);
        assert_eq!(log_level(None, Some("info,aws_config=warn")), LevelFilter::INFO);
        assert_eq!(log_level(None, None), LevelFilter::INFO);
    }

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn help_and_version_answer_anywhere_and_only_lambda_serves() {
        assert_eq!(decide(&args(&["--help"]), false), Preflight::Help);
        assert_eq!(decide(&args(&["-h"]), true), Preflight::Help);
        assert_eq!(decide(&args(&["--version"]), false), Preflight::Version);
        assert_eq!(decide(&args(&[]), true), Preflight::Serve);
        assert_eq!(decide(&args(&[]), false), Preflight::NotInLambda);
        assert_eq!(
            decide(&args(&["--port"]), true),
            Preflight::UnknownArgument("--port".into())
        );
    }

    #[test]
    fn help_lists_every_setting() {
        let usage = Usage {
            name: "f",
            about: "does things",
            env: &[("A_TABLE", "where things are"), ("B", "how many")],
        };
        let text = help(&usage);
        for (name, meaning) in usage.variables() {
            let line = text
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("{name} ")))
                .unwrap_or_default();
            assert!(line.ends_with(meaning), "{name}: {text}");
        }
        assert!(text.contains("SESSIONS_TABLE"), "{text}");
    }
}
