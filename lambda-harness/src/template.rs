//! The settings the harness takes from `infra/template.yaml`, so what the tests run and what
//! `sam deploy` creates cannot drift apart: each function's environment, its event sources
//! (stream and queue mappings) and the queues' own settings. CloudFormation's short tags
//! (`!Ref X`, `!GetAtt X.Arn`) read as the plain string `X`, resolved by the caller.

use std::time::Duration;
use yaml_rust2::{Yaml, YamlLoader};

const TEMPLATE: &str = include_str!("../../infra/template.yaml");

pub struct Template {
    doc: Yaml,
}

/// A DynamoDB stream event source mapping.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamSource {
    pub trim_horizon: bool,
    pub batch_size: usize,
    pub window: Duration,
    pub bisect_on_error: bool,
    pub max_retries: u32,
    pub report_item_failures: bool,
    /// The logical id of the on-failure destination (a queue).
    pub on_failure: Option<String>,
}

/// An SQS event source mapping.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueSource {
    /// The logical id of the queue.
    pub queue: String,
    pub batch_size: usize,
    pub window: Duration,
    pub report_item_failures: bool,
    pub max_concurrency: usize,
}

/// A DynamoDB table's keys — (name, `HASH`/`RANGE`, `S`/`N`/`B`) — stream and TTL attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableShape {
    pub keys: Vec<(String, String, String)>,
    pub stream_view: Option<String>,
    pub ttl: Option<String>,
}

/// An SQS queue's own settings.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueSettings {
    pub visibility_timeout: Duration,
    pub max_receive_count: Option<u32>,
}

impl Default for Template {
    fn default() -> Self {
        Self::load()
    }
}

impl Template {
    pub fn load() -> Self {
        let mut docs = YamlLoader::load_from_str(TEMPLATE).expect("infra/template.yaml is YAML");
        Self { doc: docs.remove(0) }
    }

    fn resource(&self, logical_id: &str) -> &Yaml {
        let resource = &self.doc["Resources"][logical_id];
        assert!(!resource.is_badvalue(), "no resource {logical_id} in the template");
        resource
    }

    /// A parameter's default, as a string.
    pub fn parameter_default(&self, name: &str) -> Option<String> {
        scalar(&self.doc["Parameters"][name]["Default"])
    }

    /// A number that may be a `!Ref` to a parameter.
    fn number(&self, value: &Yaml) -> Option<i64> {
        match value {
            Yaml::Integer(n) => Some(*n),
            Yaml::String(name) => self.parameter_default(name).and_then(|d| d.parse().ok()),
            _ => None,
        }
    }

    /// The function's logical id whose build binary is `binary`.
    pub fn function_of_binary(&self, binary: &str) -> String {
        let resources = self.doc["Resources"].as_hash().expect("Resources");
        resources
            .iter()
            .find(|(_, r)| r["Metadata"]["BuildProperties"]["Binary"].as_str() == Some(binary))
            .and_then(|(id, _)| id.as_str().map(str::to_owned))
            .unwrap_or_else(|| panic!("no function builds {binary}"))
    }

    /// Globals' variables, then the function's own: (name, raw value). A value naming a
    /// resource or parameter is left for the caller to resolve.
    pub fn environment(&self, function: &str) -> Vec<(String, String)> {
        let global = &self.doc["Globals"]["Function"]["Environment"]["Variables"];
        let own = &self.resource(function)["Properties"]["Environment"]["Variables"];
        [global, own]
            .into_iter()
            .filter_map(Yaml::as_hash)
            .flat_map(|vars| vars.iter())
            .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), scalar(v)?)))
            .collect()
    }

    /// The function's timeout (its own, or the global one).
    pub fn timeout(&self, function: &str) -> Duration {
        let own = &self.resource(function)["Properties"]["Timeout"];
        let seconds = self
            .number(own)
            .or_else(|| self.number(&self.doc["Globals"]["Function"]["Timeout"]))
            .unwrap_or(3);
        Duration::from_secs(seconds.max(1) as u64)
    }

    /// The variables Lambda sets from the function's `LoggingConfig` (its own settings over
    /// Globals'): `AWS_LAMBDA_LOG_FORMAT` and, for JSON logs, `AWS_LAMBDA_LOG_LEVEL`.
    pub fn logging_environment(&self, function: &str) -> Vec<(String, String)> {
        let own = &self.resource(function)["Properties"]["LoggingConfig"];
        let global = &self.doc["Globals"]["Function"]["LoggingConfig"];
        let pick = |key: &str| scalar(&own[key]).or_else(|| scalar(&global[key]));
        let mut env = Vec::new();
        if let Some(format) = pick("LogFormat") {
            env.push(("AWS_LAMBDA_LOG_FORMAT".to_owned(), format.to_uppercase()));
            if format.eq_ignore_ascii_case("json")
                && let Some(level) = pick("ApplicationLogLevel")
            {
                env.push(("AWS_LAMBDA_LOG_LEVEL".to_owned(), level.to_uppercase()));
            }
        }
        env
    }

    /// The function's `Policies`, as written (see [`crate::iam`]).
    pub fn policies(&self, function: &str) -> Vec<Yaml> {
        self.resource(function)["Properties"]["Policies"]
            .as_vec()
            .cloned()
            .unwrap_or_default()
    }

    pub fn memory_size(&self, function: &str) -> i64 {
        let own = &self.resource(function)["Properties"]["MemorySize"];
        self.number(own)
            .or_else(|| self.number(&self.doc["Globals"]["Function"]["MemorySize"]))
            .unwrap_or(128)
    }

    /// The properties of the `AWS::Lambda::EventSourceMapping`s of `function` whose source is a
    /// stream (`stream`) or a queue (not `stream`).
    fn mappings(&self, function: &str, stream: bool) -> Vec<&Yaml> {
        let resources = self.doc["Resources"].as_hash().expect("Resources");
        resources
            .values()
            .filter(|r| r["Type"].as_str() == Some("AWS::Lambda::EventSourceMapping"))
            .map(|r| &r["Properties"])
            .filter(|p| p["FunctionName"].as_str() == Some(function))
            .filter(|p| {
                let source = p["EventSourceArn"].as_str().unwrap_or_default();
                source.ends_with(".StreamArn") == stream
            })
            .collect()
    }

    /// SAM `Events` of these types attach AWS's managed execution roles, which read every stream
    /// or queue in the account: the template declares its mappings as resources instead.
    pub fn functions_with_sam_event_sources(&self) -> Vec<String> {
        let resources = self.doc["Resources"].as_hash().expect("Resources");
        resources
            .iter()
            .filter(|(_, r)| {
                r["Properties"]["Events"].as_hash().is_some_and(|events| {
                    events
                        .values()
                        .any(|e| matches!(e["Type"].as_str(), Some("DynamoDB" | "SQS" | "Kinesis")))
                })
            })
            .filter_map(|(id, _)| id.as_str().map(str::to_owned))
            .collect()
    }

    /// The function's DynamoDB stream mapping.
    pub fn stream_source(&self, function: &str) -> StreamSource {
        let p = *self
            .mappings(function, true)
            .first()
            .unwrap_or_else(|| panic!("{function} has no stream mapping"));
        StreamSource {
            trim_horizon: p["StartingPosition"].as_str() == Some("TRIM_HORIZON"),
            batch_size: self.number(&p["BatchSize"]).unwrap_or(100) as usize,
            window: Duration::from_secs(self.number(&p["MaximumBatchingWindowInSeconds"]).unwrap_or(0) as u64),
            bisect_on_error: p["BisectBatchOnFunctionError"].as_bool().unwrap_or(false),
            max_retries: self.number(&p["MaximumRetryAttempts"]).map_or(u32::MAX, |n| n as u32),
            report_item_failures: reports_item_failures(p),
            on_failure: scalar(&p["DestinationConfig"]["OnFailure"]["Destination"]).map(logical_id),
        }
    }

    /// The function's SQS mappings.
    pub fn queue_sources(&self, function: &str) -> Vec<QueueSource> {
        self.mappings(function, false)
            .into_iter()
            .map(|p| QueueSource {
                queue: scalar(&p["EventSourceArn"])
                    .map(logical_id)
                    .expect("a queue mapping names its queue"),
                batch_size: self.number(&p["BatchSize"]).unwrap_or(10) as usize,
                window: Duration::from_secs(self.number(&p["MaximumBatchingWindowInSeconds"]).unwrap_or(0) as u64),
                report_item_failures: reports_item_failures(p),
                max_concurrency: self.number(&p["ScalingConfig"]["MaximumConcurrency"]).unwrap_or(1000) as usize,
            })
            .collect()
    }

    /// A DynamoDB table's shape as the template declares it.
    pub fn table(&self, logical_id: &str) -> TableShape {
        let p = &self.resource(logical_id)["Properties"];
        let types: std::collections::HashMap<String, String> = p["AttributeDefinitions"]
            .as_vec()
            .into_iter()
            .flatten()
            .filter_map(|d| Some((scalar(&d["AttributeName"])?, scalar(&d["AttributeType"])?)))
            .collect();
        let keys = p["KeySchema"]
            .as_vec()
            .into_iter()
            .flatten()
            .filter_map(|k| {
                let name = scalar(&k["AttributeName"])?;
                let kind = scalar(&k["KeyType"])?;
                let attribute_type = types.get(&name).cloned().unwrap_or_default();
                Some((name, kind, attribute_type))
            })
            .collect();
        let ttl = &p["TimeToLiveSpecification"];
        TableShape {
            keys,
            stream_view: scalar(&p["StreamSpecification"]["StreamViewType"]),
            ttl: (ttl["Enabled"].as_bool() == Some(true))
                .then(|| scalar(&ttl["AttributeName"]))
                .flatten(),
        }
    }

    /// The HTTP API's stage name, resolved (`$default` or a parameter's default).
    pub fn http_api_stage(&self) -> String {
        let stage =
            scalar(&self.resource("CheckoutApi")["Properties"]["StageName"]).unwrap_or_else(|| "$default".into());
        self.parameter_default(&stage).unwrap_or(stage)
    }

    pub fn queue(&self, logical_id: &str) -> QueueSettings {
        let p = &self.resource(logical_id)["Properties"];
        QueueSettings {
            visibility_timeout: Duration::from_secs(self.number(&p["VisibilityTimeout"]).unwrap_or(30) as u64),
            max_receive_count: self.number(&p["RedrivePolicy"]["maxReceiveCount"]).map(|n| n as u32),
        }
    }
}

fn reports_item_failures(p: &Yaml) -> bool {
    p["FunctionResponseTypes"]
        .as_vec()
        .is_some_and(|types| types.iter().any(|t| t.as_str() == Some("ReportBatchItemFailures")))
}

/// `X.Arn` (from `!GetAtt X.Arn`) → `X`.
fn logical_id(reference: String) -> String {
    reference.split('.').next().unwrap_or_default().to_owned()
}

fn scalar(value: &Yaml) -> Option<String> {
    match value {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(n) => Some(n.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_templates_mappings_are_read() {
        let t = Template::load();
        let projector = t.function_of_binary("event-projector");
        let stream = t.stream_source(&projector);
        assert!(stream.trim_horizon && stream.bisect_on_error && stream.report_item_failures);
        assert_eq!(stream.max_retries, 10);
        assert_eq!(stream.on_failure.as_deref(), Some("ProjectorFailuresQueue"));
        let dispatcher = t.function_of_binary("webhook-dispatcher");
        let queues = t.queue_sources(&dispatcher);
        assert_eq!(queues.len(), 2);
        assert!(queues.iter().all(|q| q.report_item_failures && q.max_concurrency >= 2));
        assert_eq!(t.queue("OrderUpdatesQueue").max_receive_count, Some(50));
        assert!(
            t.environment(&dispatcher)
                .iter()
                .any(|(k, v)| k == "ORDER_UPDATES_QUEUE_URL" && v == "OrderUpdatesQueue")
        );
        assert_eq!(t.http_api_stage(), "dev");
        assert_eq!(
            t.functions_with_sam_event_sources(),
            Vec::<String>::new(),
            "no account-wide managed policies"
        );
        let logging = t.logging_environment(&dispatcher);
        assert!(
            logging.contains(&("AWS_LAMBDA_LOG_FORMAT".to_owned(), "JSON".to_owned())),
            "{logging:?}"
        );
    }
}
