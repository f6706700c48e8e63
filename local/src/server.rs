//! The HTTP server of `acp-local`: the API router on HTTP/1.1, with the limits a public server
//! needs against clients that hold connections without finishing requests (slowloris).
//!
//! - a request's headers must arrive within [`HEADER_READ_TIMEOUT`] (also how long an idle
//!   keep-alive connection may wait for its next request): a connection that dribbles its
//!   headers, or sends nothing, is closed;
//! - at most [`MAX_CONNECTIONS`] connections at once, [`MAX_CONNECTIONS_PER_CLIENT`] from one
//!   address; more wait in the listen backlog instead of exhausting file descriptors;
//! - a request's head is at most [`MAX_HEAD_BYTES`];
//! - request bodies are read under the API's own body timeout.

use axum::response::IntoResponse;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::debug;

/// How long a client may take to send a request's headers, or to start its next request.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 4096;
/// Connections one client address may hold at once: a single client holding connections open
/// cannot take every place (more are accepted and closed at once).
pub const MAX_CONNECTIONS_PER_CLIENT: usize = 256;
/// The most a connection buffers of a request's head (request line and headers) before it is
/// refused with 431: bounds what a client sending huge unfinished headers can make the server
/// hold (the HTTP library's default is about 400 KiB per connection).
pub const MAX_HEAD_BYTES: usize = 32 * 1024;
/// The longest request target (path and query) served; no route needs more than a few hundred
/// bytes. A longer one is a 414 in the ACP error shape. (Past 64 KiB hyper refuses the request
/// line itself, with a bare 414, before any of this code sees it.)
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Serves `app` on `listener` until `shutdown` completes, then lets requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    // The echo outside the request-line check, so its refusals carry a Request-Id too.
    let app = app
        .layer(axum::middleware::from_fn(check_request_line))
        .layer(axum::middleware::from_fn(api::echo_request_headers));
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let clients = Arc::new(Clients::default());
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let service = TowerToHyperService::new(app);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => permit,
            () = &mut shutdown => break,
        };
        let Ok(permit) = permit else { break };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: wait a moment instead of spinning.
                    debug!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(client_place) = clients.enter(peer.ip()) else {
            debug!(%peer, "connection refused: the client holds too many");
            drop(stream);
            continue;
        };
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_buf_size(MAX_HEAD_BYTES);
        let connection = builder.serve_connection(TokioIo::new(stream), service.clone());
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                debug!(%peer, error = %err, "connection ended");
            }
            drop(client_place);
            drop(permit);
        });
    }
    graceful.shutdown().await;
    Ok(())
}

/// Connections held per client address.
#[derive(Default)]
struct Clients {
    held: std::sync::Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in [`Clients`], given back when dropped.
struct ClientPlace {
    clients: Arc<Clients>,
    ip: IpAddr,
}

impl Clients {
    fn enter(self: &Arc<Self>, ip: IpAddr) -> Option<ClientPlace> {
        let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = held.entry(ip).or_default();
        if *count >= MAX_CONNECTIONS_PER_CLIENT {
            return None;
        }
        *count += 1;
        Some(ClientPlace {
            clients: self.clone(),
            ip,
        })
    }
}

impl Drop for ClientPlace {
    fn drop(&mut self) {
        let mut held = self
            .clients
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = held.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.ip);
            }
        }
    }
}

/// What hyper lets through but a public server must refuse, in the ACP error shape: an HTTP/1.1
/// request without `Host` (RFC 9112 §3.2), and a request target longer than [`MAX_URI_BYTES`].
async fn check_request_line(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::http::{StatusCode, Version, header};
    let refusal = if request.version() == Version::HTTP_11 && !request.headers().contains_key(header::HOST) {
        Some((
            StatusCode::BAD_REQUEST,
            r#"{"type":"invalid_request","code":"missing_host","message":"An HTTP/1.1 request must carry a Host header."}"#,
        ))
    } else if request.uri().path_and_query().map_or(0, |p| p.as_str().len()) > MAX_URI_BYTES {
        Some((
            StatusCode::URI_TOO_LONG,
            r#"{"type":"invalid_request","code":"uri_too_long","message":"The request path and query may be at most 8 KiB."}"#,
        ))
    } else {
        None
    };
    match refusal {
        Some((status, body)) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        None => next.run(request).await,
    }
}
