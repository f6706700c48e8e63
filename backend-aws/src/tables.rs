//! Table names and their creation (for tests, `acp-local --create-resources` and fresh accounts;
//! deployments get their tables from the SAM template).

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, StreamSpecification,
    StreamViewType, TimeToLiveSpecification,
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableNames {
    pub sessions: String,
    pub idempotency: String,
    pub merchants: String,
    /// Where `acp-local --backend aws` keeps its position in the sessions stream (the Lambda
    /// event source mapping keeps its own): created with the other tables, not deployed.
    pub stream_positions: String,
    pub deliveries: String,
}

impl TableNames {
    /// `{env}-acp-sessions`, `{env}-acp-idempotency`, `{env}-acp-merchants`, `{env}-acp-stream-positions`,
    /// `{env}-acp-deliveries`.
    pub fn for_environment(env: &str) -> Self {
        Self {
            sessions: format!("{env}-acp-sessions"),
            idempotency: format!("{env}-acp-idempotency"),
            merchants: format!("{env}-acp-merchants"),
            stream_positions: format!("{env}-acp-stream-positions"),
            deliveries: format!("{env}-acp-deliveries"),
        }
    }
}

type Built<T> = Result<T, aws_sdk_dynamodb::error::BuildError>;

fn key(name: &str, kind: KeyType) -> Built<KeySchemaElement> {
    KeySchemaElement::builder().attribute_name(name).key_type(kind).build()
}

fn attribute(name: &str, kind: ScalarAttributeType) -> Built<AttributeDefinition> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(kind)
        .build()
}

/// Creates any table that does not exist yet.
pub async fn create_tables(client: &Client, names: &TableNames) -> Result<(), aws_sdk_dynamodb::Error> {
    let existing = client.list_tables().send().await?.table_names.unwrap_or_default();
    if !existing.contains(&names.sessions) {
        client
            .create_table()
            .table_name(&names.sessions)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key("session_id", KeyType::Hash)?)
            .key_schema(key("version", KeyType::Range)?)
            .attribute_definitions(attribute("session_id", ScalarAttributeType::S)?)
            .attribute_definitions(attribute("version", ScalarAttributeType::N)?)
            .stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::NewImage)
                    .build()?,
            )
            .send()
            .await?;
    }
    let keyed_tables = [
        (&names.idempotency, "pk", None, Some("expires_at")),
        (&names.stream_positions, "session_id", None, None),
        (&names.merchants, "pk", Some("sk"), Some("expires_at")),
        (&names.deliveries, "target", Some("sk"), Some("expires_at")),
    ];
    for (name, hash, range, ttl) in keyed_tables {
        if existing.contains(name) {
            continue;
        }
        let mut create = client
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key(hash, KeyType::Hash)?)
            .attribute_definitions(attribute(hash, ScalarAttributeType::S)?);
        if let Some(range) = range {
            create = create
                .key_schema(key(range, KeyType::Range)?)
                .attribute_definitions(attribute(range, ScalarAttributeType::S)?);
        }
        create.send().await?;
        if let Some(attribute_name) = ttl {
            client
                .update_time_to_live()
                .table_name(name)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .enabled(true)
                        .attribute_name(attribute_name)
                        .build()?,
                )
                .send()
                .await?;
        }
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
#[error("set {missing} (or ACP_ENVIRONMENT to derive every table name from it)")]
pub struct MissingTableName {
    missing: &'static str,
}

impl TableNames {
    /// `SESSIONS_TABLE`, `IDEMPOTENCY_TABLE`, `MERCHANTS_TABLE` and `DELIVERIES_TABLE`, each
    /// defaulting to the name derived from `ACP_ENVIRONMENT`; `STREAM_POSITIONS_TABLE` (only
    /// `acp-local` reads the stream itself) defaults to `{sessions table}-stream-positions`.
    pub fn from_env() -> Result<Self, MissingTableName> {
        let derived = std::env::var("ACP_ENVIRONMENT")
            .ok()
            .map(|env| Self::for_environment(&env));
        let pick = |var: &'static str, from: fn(&TableNames) -> &String| {
            std::env::var(var)
                .ok()
                .or_else(|| derived.as_ref().map(|d| from(d).clone()))
                .ok_or(MissingTableName { missing: var })
        };
        let sessions = pick("SESSIONS_TABLE", |t| &t.sessions)?;
        let stream_positions = pick("STREAM_POSITIONS_TABLE", |t| &t.stream_positions)
            .unwrap_or_else(|_| format!("{sessions}-stream-positions"));
        Ok(Self {
            idempotency: pick("IDEMPOTENCY_TABLE", |t| &t.idempotency)?,
            merchants: pick("MERCHANTS_TABLE", |t| &t.merchants)?,
            deliveries: pick("DELIVERIES_TABLE", |t| &t.deliveries)?,
            stream_positions,
            sessions,
        })
    }
}
