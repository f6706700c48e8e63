//! One Lambda function: its real bootstrap started as the Lambda service starts it (the
//! `AWS_LAMBDA_*` variables, the template's environment), several instances sharing one
//! runtime API endpoint (`/2018-06-01/runtime/invocation/next`, `…/response`, `…/error`,
//! `/runtime/init/error`), and [`Function::invoke`] to hand it an event and wait for its answer.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

/// What an invocation ended with.
#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    Response(Value),
    /// The function reported an error (`/error`), or did not answer within its timeout.
    Error(String),
}

struct Pending {
    id: String,
    payload: Vec<u8>,
    reply: oneshot::Sender<Invocation>,
}

#[derive(Default)]
struct Shared {
    /// Each invocation an instance holds: who waits for its answer, and since when it runs.
    in_flight: Mutex<HashMap<String, (oneshot::Sender<Invocation>, std::time::Instant)>>,
    invocations: Mutex<Invocations>,
    init_errors: Mutex<Vec<String>>,
    /// The process id of each running instance.
    pids: Mutex<HashMap<usize, u32>>,
}

#[derive(Clone)]
struct ApiState {
    name: String,
    timeout: Duration,
    queue: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Pending>>>,
    shared: Arc<Shared>,
}

/// How to start a function.
pub struct Spec {
    /// The bootstrap binary.
    pub binary: PathBuf,
    /// Where the instances' output goes (appended).
    pub log: PathBuf,
    /// The function's name (`AWS_LAMBDA_FUNCTION_NAME`).
    pub name: String,
    pub memory_mb: i64,
    pub timeout: Duration,
    pub instances: usize,
    /// The function's environment: the template's variables, resolved, and the harness's own.
    pub env: Vec<(String, String)>,
}

/// Invocations of a function and their time, for its bill.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Invocations {
    pub count: u64,
    /// Billed duration summed: each invocation rounded up to the millisecond.
    pub billed: Duration,
}

pub struct Function {
    name: String,
    memory_mb: i64,
    invocations: mpsc::UnboundedSender<Pending>,
    shared: Arc<Shared>,
    /// Each instance's keeper: it runs the process and starts a new one when it exits.
    instances: Vec<tokio::task::JoinHandle<()>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Function {
    fn drop(&mut self) {
        // Dropping a keeper drops its process, which `kill_on_drop` ends.
        for instance in &self.instances {
            instance.abort();
        }
        self.server.abort();
    }
}

impl Function {
    pub async fn start(spec: Spec) -> std::io::Result<Function> {
        let (invocations, queue) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::default());
        let state = ApiState {
            name: spec.name.clone(),
            timeout: spec.timeout,
            queue: Arc::new(tokio::sync::Mutex::new(queue)),
            shared: shared.clone(),
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(respond))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(fail))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&spec.log)?;
        let spec = Arc::new(spec);
        let mut instances = Vec::new();
        for n in 0..spec.instances {
            let (spec, log, addr, shared) = (spec.clone(), log.try_clone()?, addr, shared.clone());
            // An instance that exits (a crash, an init failure) is replaced by a cold one, as
            // Lambda does; what it held times out.
            instances.push(tokio::spawn(async move {
                loop {
                    let Ok(mut child) = spawn_instance(&spec, &log, addr, n) else {
                        return;
                    };
                    if let (Some(pid), Ok(mut pids)) = (child.id(), shared.pids.lock()) {
                        pids.insert(n, pid);
                    }
                    let _ = child.wait().await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }));
        }
        Ok(Function {
            memory_mb: spec.memory_mb,
            name: spec.name.clone(),
            invocations,
            shared,
            instances,
            server,
        })
    }
}

fn spawn_instance(spec: &Spec, log: &std::fs::File, addr: std::net::SocketAddr, n: usize) -> std::io::Result<Child> {
    Command::new(&spec.binary)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", &spec.name)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", spec.memory_mb.to_string())
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{}", spec.name))
        .env("AWS_LAMBDA_LOG_STREAM_NAME", format!("2026/12/02/[$LATEST]{n:032x}"))
        .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
        .env("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023")
        .env("_HANDLER", "bootstrap")
        .env("LAMBDA_TASK_ROOT", "/var/task")
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log.try_clone()?)
        .kill_on_drop(true)
        .spawn()
}

impl Function {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Hands `event` to the next free instance and waits for its answer, at most the function's
    /// timeout (then the invocation is an error, as Lambda reports a timeout).
    pub async fn invoke(&self, event: &Value) -> Invocation {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            id: ulid::Ulid::new().to_string().to_lowercase(),
            payload: serde_json::to_vec(event).unwrap_or_default(),
            reply,
        };
        if self.invocations.send(pending).is_err() {
            return Invocation::Error("the runtime API is gone".into());
        }
        // The function's timeout runs from the hand-over to an instance (see `next`); waiting for a
        // free instance does not count, as on Lambda.
        answer
            .await
            .unwrap_or_else(|_| Invocation::Error("the invocation was dropped".into()))
    }

    /// Invocations so far, and their billed time (measured from the hand-over to the answer);
    /// counting starts again from nothing.
    pub fn take_invocations(&self) -> Invocations {
        self.shared
            .invocations
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default()
    }

    /// Whether an instance is running an invocation now.
    pub fn busy(&self) -> bool {
        self.shared.in_flight.lock().map(|m| !m.is_empty()).unwrap_or(false)
    }

    pub fn memory_mb(&self) -> i64 {
        self.memory_mb
    }

    /// The most memory any running instance has held (its peak resident set, `VmHWM`), in MB
    /// as Lambda counts `MemorySize` (MiB).
    pub fn peak_memory_mb(&self) -> f64 {
        let pids: Vec<u32> = self
            .shared
            .pids
            .lock()
            .map(|p| p.values().copied().collect())
            .unwrap_or_default();
        pids.iter()
            .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
            .filter_map(|status| {
                let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
                line.split_whitespace().nth(1)?.parse::<f64>().ok()
            })
            .fold(0.0, f64::max)
            / 1024.0
    }

    /// Errors reported to `/runtime/init/error` so far.
    pub fn init_errors(&self) -> Vec<String> {
        self.shared.init_errors.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

async fn next(State(state): State<ApiState>) -> Response {
    let pending = { state.queue.lock().await.recv().await };
    let Some(pending) = pending else {
        return StatusCode::GONE.into_response();
    };
    if let Ok(mut in_flight) = state.shared.in_flight.lock() {
        in_flight.insert(pending.id.clone(), (pending.reply, std::time::Instant::now()));
    }
    // The function's time runs from the hand-over: past it, the invocation has timed out (billed
    // in full), whatever the instance answers later.
    let deadline = SystemTime::now() + state.timeout;
    let (timer_state, id) = (state.clone(), pending.id.clone());
    tokio::spawn(async move {
        tokio::time::sleep(timer_state.timeout).await;
        let secs = timer_state.timeout.as_secs();
        finish(
            &timer_state,
            &id,
            Invocation::Error(format!("Task timed out after {secs}.00 seconds")),
        );
    });
    let deadline_ms = deadline.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set("lambda-runtime-aws-request-id", pending.id.clone());
    set("lambda-runtime-deadline-ms", deadline_ms.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        format!("arn:aws:lambda:us-east-1:123456789012:function:{}", state.name),
    );
    set(
        "lambda-runtime-trace-id",
        format!("Root=1-{}-{}", "674d0000", pending.id),
    );
    set("content-type", "application/json".to_owned());
    (StatusCode::OK, headers, pending.payload).into_response()
}

fn finish(state: &ApiState, id: &str, result: Invocation) -> StatusCode {
    let sender = state.shared.in_flight.lock().ok().and_then(|mut m| m.remove(id));
    match sender {
        Some((sender, since)) => {
            // Billed as Lambda bills: from the hand-over to the answer, per started millisecond.
            if let Ok(mut made) = state.shared.invocations.lock() {
                made.count += 1;
                made.billed += Duration::from_millis((since.elapsed().as_micros() as u64).div_ceil(1000));
            }
            let _ = sender.send(result);
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

async fn respond(State(state): State<ApiState>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    let value = serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()));
    finish(&state, &id, Invocation::Response(value))
}

async fn fail(State(state): State<ApiState>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    finish(&state, &id, Invocation::Error(String::from_utf8_lossy(&body).into()))
}

async fn init_error(State(state): State<ApiState>, body: Bytes) -> StatusCode {
    if let Ok(mut errors) = state.shared.init_errors.lock() {
        errors.push(String::from_utf8_lossy(&body).into());
    }
    StatusCode::ACCEPTED
}
