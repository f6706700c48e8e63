//! A whole deployment on moto: the template's tables, topic and queues, its three functions
//! (the real bootstraps from this build) with their environment resolved as CloudFormation
//! would, the HTTP API front and the event source mappings.

use crate::api_gateway;
use crate::meter::{Counts, Meter};
use crate::runtime_api::Invocations;
use crate::runtime_api::{Function, Spec};
use crate::sqs_source::SqsSource;
use crate::stream_source::{OnFailure, StreamSource};
use crate::template::Template;
use aws_backend::{PipelineResources, QueueSettings, TableNames};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// What a test may change from the template's deployment.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The HTTP API's stage instead of the template's (`$default`, say).
    pub stage: Option<String>,
    /// More variables for every function (e.g. `DISPATCHER_MAX_ATTEMPTS`).
    pub env: Vec<(String, String)>,
    /// Count every AWS request each function makes (see [`crate::meter`]).
    pub metered: bool,
}

pub struct Deployment {
    /// Where each function's output goes (`{binary}.log`).
    pub logs: PathBuf,
    pub environment: String,
    pub tables: TableNames,
    pub pipeline: PipelineResources,
    pub projector_failures_url: String,
    pub sqs: aws_sdk_sqs::Client,
    pub stage: String,
    front: SocketAddr,
    /// Each function by its binary's name, with its meter when metered.
    functions: Vec<(&'static str, Arc<Function>, Option<Meter>)>,
    _stream: StreamSource,
    queues: Vec<SqsSource>,
    /// Log bytes at the last [`Deployment::take_usage`], per function.
    logged: std::sync::Mutex<HashMap<&'static str, u64>>,
}

/// What the deployment did since the last look, for its bill.
pub struct Usage {
    pub functions: Vec<(&'static str, Invocations, i64, Counts, u64)>,
    /// SQS requests of the queue event sources (receives that got messages, deletes).
    pub queue_requests: u64,
}

/// The bootstrap `name` of this build: beside the test binary's folder (`target/debug/`),
/// built by `cargo test --workspace` with the rest of the workspace.
pub fn bootstrap(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: the harness runs the workspace's binaries, which `cargo test --workspace` builds",
        path.display()
    );
    path
}

impl Deployment {
    pub async fn start(options: Options) -> Deployment {
        let template = Template::load();
        let endpoint = aws_backend::testkit::endpoint();
        let sdk = aws_backend::local_sdk_config(&endpoint);
        let environment = format!("h{}", ulid::Ulid::new().to_string().to_lowercase());
        let tables = TableNames::for_environment(&environment);
        let dynamodb = aws_backend::DynamoClient::new(&sdk);
        aws_backend::create_tables(&dynamodb, &tables)
            .await
            .expect("tables on moto");
        let (sns, sqs) = (aws_backend::SnsClient::new(&sdk), aws_backend::SqsClient::new(&sdk));
        let queue = template.queue("OrderUpdatesQueue");
        let settings = QueueSettings {
            visibility_timeout: queue.visibility_timeout,
            max_receive_count: queue.max_receive_count.unwrap_or(50),
        };
        let pipeline = aws_backend::create_pipeline(&sns, &sqs, &environment, settings)
            .await
            .expect("topic and queues on moto");
        let projector_failures_url = sqs
            .create_queue()
            .queue_name(format!("{environment}-projector-failures"))
            .send()
            .await
            .expect("projector failures queue")
            .queue_url
            .unwrap_or_default();

        // What the functions write (CloudWatch Logs, on AWS).
        let logs = std::env::temp_dir().join("acp-lambda-harness").join(&environment);
        std::fs::create_dir_all(&logs).expect("a folder for the functions' logs");
        let resolved: HashMap<&str, String> = HashMap::from([
            ("SessionsTable", tables.sessions.clone()),
            ("IdempotencyTable", tables.idempotency.clone()),
            ("MerchantsTable", tables.merchants.clone()),
            ("ViewsTable", tables.views.clone()),
            ("DeliveriesTable", tables.deliveries.clone()),
            ("OrderUpdatesQueue", pipeline.queue_url.clone()),
            ("SlowDeliveriesQueue", pipeline.slow_queue_url.clone()),
            ("OrderUpdatesDeadLetterQueue", pipeline.dead_letter_queue_url.clone()),
            ("ProjectorFailuresQueue", projector_failures_url.clone()),
            ("CheckoutEventsTopic", pipeline.topic_arn.clone()),
            ("Environment", environment.clone()),
            ("PaymentProcessor", "test".to_owned()),
        ]);
        let mut meters = HashMap::new();
        for binary in ["session-manager", "event-projector", "webhook-dispatcher"] {
            if options.metered {
                meters.insert(binary, Meter::start(&endpoint).await.expect("a meter"));
            }
        }
        let start = |binary: &'static str, instances: usize| {
            let aws_endpoint = meters.get(binary).map_or(endpoint.clone(), |m| m.url.clone());
            let function = template.function_of_binary(binary);
            let mut env: Vec<(String, String)> = template
                .environment(&function)
                .into_iter()
                .map(|(name, raw)| {
                    let value = resolved
                        .get(raw.as_str())
                        .cloned()
                        .or_else(|| template.parameter_default(&raw))
                        .unwrap_or(raw);
                    (name, value)
                })
                .collect();
            env.extend(template.logging_environment(&function));
            env.extend([
                ("AWS_ENDPOINT_URL".to_owned(), aws_endpoint),
                ("AWS_REGION".to_owned(), "us-east-1".to_owned()),
                ("AWS_DEFAULT_REGION".to_owned(), "us-east-1".to_owned()),
                ("AWS_ACCESS_KEY_ID".to_owned(), "testing".to_owned()),
                ("AWS_SECRET_ACCESS_KEY".to_owned(), "testing".to_owned()),
                ("AWS_SESSION_TOKEN".to_owned(), "testing".to_owned()),
                // The receivers of the tests listen on this machine.
                ("ACP_ALLOW_LOOPBACK_WEBHOOKS".to_owned(), "1".to_owned()),
            ]);
            env.extend(options.env.iter().cloned());
            Spec {
                binary: bootstrap(binary),
                log: logs.join(format!("{binary}.log")),
                name: format!("{environment}-{binary}"),
                memory_mb: template.memory_size(&function),
                timeout: template.timeout(&function),
                instances,
                env,
            }
        };
        let session_manager = Arc::new(
            Function::start(start("session-manager", 2))
                .await
                .expect("session-manager"),
        );
        let projector = Arc::new(
            Function::start(start("event-projector", 1))
                .await
                .expect("event-projector"),
        );
        let dispatcher = Arc::new(
            Function::start(start("webhook-dispatcher", 2))
                .await
                .expect("webhook-dispatcher"),
        );

        let stage = options.stage.clone().unwrap_or_else(|| template.http_api_stage());
        let front = api_gateway::serve(session_manager.clone(), &stage)
            .await
            .expect("API front");

        let projector_function = template.function_of_binary("event-projector");
        let stream_settings = template.stream_source(&projector_function);
        let stream_arn = dynamodb
            .describe_table()
            .table_name(&tables.sessions)
            .send()
            .await
            .ok()
            .and_then(|t| t.table?.latest_stream_arn)
            .expect("the sessions table has a stream");
        let on_failure = stream_settings
            .on_failure
            .as_deref()
            .and_then(|id| resolved.get(id))
            .map(|url| OnFailure {
                sqs: sqs.clone(),
                queue_url: url.clone(),
            });
        let stream = StreamSource::start(
            aws_backend::StreamsClient::new(&sdk),
            stream_arn,
            stream_settings,
            projector.clone(),
            on_failure,
        );
        let mut queues = Vec::new();
        for source in template.queue_sources(&template.function_of_binary("webhook-dispatcher")) {
            let url = resolved
                .get(source.queue.as_str())
                .cloned()
                .expect("a queue the harness created");
            queues.push(
                SqsSource::start(sqs.clone(), url, source, dispatcher.clone())
                    .await
                    .expect("queue mapping"),
            );
        }
        Deployment {
            logs,
            environment,
            tables,
            pipeline,
            projector_failures_url,
            sqs,
            stage,
            front,
            functions: vec![
                ("session-manager", session_manager, meters.remove("session-manager")),
                ("event-projector", projector, meters.remove("event-projector")),
                ("webhook-dispatcher", dispatcher, meters.remove("webhook-dispatcher")),
            ],
            _stream: stream,
            queues,
            logged: std::sync::Mutex::default(),
        }
    }

    /// The API's base URL, as the stack's `ApiEndpoint` output gives it (with the stage).
    pub fn api_url(&self) -> String {
        if self.stage == "$default" {
            format!("http://{}", self.front)
        } else {
            format!("http://{}/{}", self.front, self.stage)
        }
    }

    /// Invocations, AWS requests, log bytes and queue polling since the last call (or the start),
    /// once no function has run anything for half a second (the work a test waited for may
    /// still be finishing: a webhook arrives before its attempt is recorded).
    pub async fn take_usage(&self) -> Usage {
        let mut quiet = 0;
        while quiet < 5 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            quiet = if self.functions.iter().any(|(_, f, _)| f.busy()) {
                0
            } else {
                quiet + 1
            };
        }
        let mut logged = self.logged.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let functions = self
            .functions
            .iter()
            .map(|(name, function, meter)| {
                let size = std::fs::metadata(self.logs.join(format!("{name}.log"))).map_or(0, |m| m.len());
                let before = logged.insert(name, size).unwrap_or(0);
                (
                    *name,
                    function.take_invocations(),
                    function.memory_mb(),
                    meter.as_ref().map(Meter::take).unwrap_or_default(),
                    size.saturating_sub(before),
                )
            })
            .collect();
        let queue_requests = self.queues.iter().map(SqsSource::take_requests).sum();
        Usage {
            functions,
            queue_requests,
        }
    }

    /// The front's address without any stage.
    pub fn host_url(&self) -> String {
        format!("http://{}", self.front)
    }
}
