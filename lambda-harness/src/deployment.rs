//! A whole deployment on moto: the template's tables, topic and queues, its four functions
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
    /// Each function by its binary's name, with the meter its AWS calls go through.
    functions: Vec<(&'static str, Arc<Function>, Meter)>,
    /// Physical name (table, queue, topic) → logical id in the template.
    logical: HashMap<String, String>,
    template: Template,
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
/// built by `cargo test --workspace` with the rest of the workspace — or in the folder
/// `ACP_HARNESS_BINARIES` names (`target/release`, to measure the bill with the durations of
/// optimised code).
pub fn bootstrap(name: &str) -> PathBuf {
    let dir = match std::env::var_os("ACP_HARNESS_BINARIES") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let exe = std::env::current_exe().expect("the test binary's path");
            exe.parent()
                .and_then(|deps| deps.parent())
                .expect("target/<profile>/deps")
                .to_owned()
        }
    };
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
            ("DeliveriesTable", tables.deliveries.clone()),
            ("OrderUpdatesQueue", pipeline.queue_url.clone()),
            ("SlowDeliveriesQueue", pipeline.slow_queue_url.clone()),
            ("OrderUpdatesDeadLetterQueue", pipeline.dead_letter_queue_url.clone()),
            ("ProjectorFailuresQueue", projector_failures_url.clone()),
            ("ReplayStepsQueue", pipeline.replay_steps_queue_url.clone()),
            ("CheckoutEventsTopic", pipeline.topic_arn.clone()),
            ("Environment", environment.clone()),
            ("PaymentProcessor", "test".to_owned()),
        ]);
        // Every function's AWS calls go through its meter: counted for the bill, and checked
        // against its policies (see `denied_calls`).
        let mut meters = HashMap::new();
        for binary in [
            "session-manager",
            "event-projector",
            "webhook-dispatcher",
            "replay-runner",
        ] {
            meters.insert(binary, Meter::start(&endpoint).await.expect("a meter"));
        }
        let logical = resolved
            .iter()
            .map(|(id, physical)| (physical_name(physical), (*id).to_owned()))
            .collect();
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
        let replay_runner = Arc::new(Function::start(start("replay-runner", 1)).await.expect("replay-runner"));

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
        for (binary, function) in [("webhook-dispatcher", &dispatcher), ("replay-runner", &replay_runner)] {
            for source in template.queue_sources(&template.function_of_binary(binary)) {
                let url = resolved
                    .get(source.queue.as_str())
                    .cloned()
                    .expect("a queue the harness created");
                queues.push(
                    SqsSource::start(sqs.clone(), url, source, function.clone())
                        .await
                        .expect("queue mapping"),
                );
            }
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
                (
                    "session-manager",
                    session_manager,
                    meter(&mut meters, "session-manager"),
                ),
                ("event-projector", projector, meter(&mut meters, "event-projector")),
                (
                    "webhook-dispatcher",
                    dispatcher,
                    meter(&mut meters, "webhook-dispatcher"),
                ),
                ("replay-runner", replay_runner, meter(&mut meters, "replay-runner")),
            ],
            logical,
            template,
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
                    meter.take(),
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

    /// The AWS calls a function made that its policies in the template do not allow (IAM would
    /// answer `AccessDenied`), by function.
    pub fn denied_calls(&self) -> Vec<(&'static str, crate::iam::Access)> {
        self.functions
            .iter()
            .flat_map(|(name, _, meter)| {
                let grants = crate::iam::grants(&self.template, &self.template.function_of_binary(name));
                crate::iam::denied(&grants, &meter.accesses(), &self.logical)
                    .into_iter()
                    .map(move |access| (*name, access))
            })
            .collect()
    }

    /// What each function called AWS for so far, as IAM names it: `dynamodb:PutItem on
    /// DeliveriesTable` (the resource's logical id in the template).
    pub fn calls(&self) -> Vec<(&'static str, Vec<String>)> {
        self.functions
            .iter()
            .map(|(name, _, meter)| {
                let calls = meter
                    .accesses()
                    .iter()
                    .map(|a| {
                        let (base, rest) = a.resource.split_once('/').unwrap_or((&a.resource, ""));
                        let id = self.logical.get(base).map_or(base, String::as_str);
                        let suffix = if rest.is_empty() {
                            String::new()
                        } else {
                            format!("/{rest}")
                        };
                        format!("{} on {id}{suffix}", a.action)
                    })
                    .collect::<std::collections::BTreeSet<_>>();
                (*name, calls.into_iter().collect())
            })
            .collect()
    }

    /// Each function's peak memory so far (the largest of its instances) and its `MemorySize`, MB.
    pub fn memory(&self) -> Vec<(&'static str, f64, i64)> {
        self.functions
            .iter()
            .map(|(name, function, _)| (*name, function.peak_memory_mb(), function.memory_mb()))
            .collect()
    }

    /// Checks what AWS would refuse that moto does not: every call allowed by the function's
    /// policies, and no instance using more memory than its function's `MemorySize` (Lambda
    /// ends such an instance). Returns how many distinct calls were checked.
    pub fn assert_within_the_templates_limits(&self) -> usize {
        let denied = self.denied_calls();
        assert!(
            denied.is_empty(),
            "calls the template's policies do not allow: {denied:#?}"
        );
        for (name, peak, limit) in self.memory() {
            assert!(
                peak <= limit as f64,
                "{name} used {peak:.0} MB, over its MemorySize of {limit} MB"
            );
        }
        self.functions.iter().map(|(_, _, meter)| meter.accesses().len()).sum()
    }

    /// The front's address without any stage.
    pub fn host_url(&self) -> String {
        format!("http://{}", self.front)
    }
}

fn meter(meters: &mut HashMap<&'static str, Meter>, binary: &str) -> Meter {
    meters.remove(binary).expect("each function has its meter")
}

/// A table's name, a queue's (from its URL) or a topic's (from its ARN): what IAM calls the
/// resource, and what the calls name.
fn physical_name(resolved: &str) -> String {
    if resolved.starts_with("arn:") {
        resolved.rsplit(':').next().unwrap_or_default().to_owned()
    } else if resolved.starts_with("http") {
        resolved.rsplit('/').next().unwrap_or_default().to_owned()
    } else {
        resolved.to_owned()
    }
}
