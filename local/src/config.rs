//! `acp-local` configuration: flags, each with an environment variable (documented in the README).

use clap::{Parser, ValueEnum};
use std::net::SocketAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// In-process storage: no AWS account, no emulator, no network.
    Embedded,
    /// DynamoDB through the AWS SDK (honours AWS_ENDPOINT_URL, AWS_PROFILE, AWS_REGION…).
    Aws,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug, Parser)]
#[command(name = "acp-local", version, about = "ACP Checkout Manager in one process")]
pub struct Config {
    /// Address the checkout API listens on.
    #[arg(long, env = "ACP_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// API key of the demo merchant; a random one is made (and printed) when unset.
    #[arg(long, env = "ACP_DEMO_API_KEY", hide_env_values = true)]
    pub demo_api_key: Option<String>,

    /// Where sessions, events and idempotency records are kept.
    #[arg(long, env = "ACP_BACKEND", value_enum, default_value = "embedded")]
    pub backend: BackendKind,

    /// With the AWS backend: the prefix of every table name (`{env}-acp-sessions`, …).
    #[arg(long, env = "ACP_ENVIRONMENT", default_value = "local")]
    pub environment: String,

    /// With the AWS backend: create the tables if they are missing (for moto or a fresh account).
    #[arg(long, env = "ACP_CREATE_RESOURCES")]
    pub create_resources: bool,

    /// Log lines as readable text or as JSON.
    #[arg(long, env = "ACP_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl Config {
    /// Defaults for an in-process stack on a free port (tests, `loadtest --local`).
    pub fn ephemeral(demo_api_key: &str) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            demo_api_key: Some(demo_api_key.to_owned()),
            backend: BackendKind::Embedded,
            environment: "local".to_owned(),
            create_resources: false,
            log_format: LogFormat::Text,
        }
    }
}
