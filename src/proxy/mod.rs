//! `alibridge proxy`: a local HTTP reverse proxy that lets MCP clients which speak HTTP but not
//! Alibaba Cloud authentication (Dify, LangChain, agent platforms) reach a remote MCP host.
//! Every request's path and query are forwarded to the upstream with the proxy's credential.
//!
//! This module owns the listener: the accept loop (hyper HTTP/1.1, one task per connection,
//! at most `--max-connections` at once: a connection beyond it is answered 503 and closed),
//! graceful shutdown, request dispatch (guard → `/health` → proxy token → local routes →
//! access rules → forward), the proxy's own JSON answers, `GET /health`, and the counters it
//! reports.
//!
//! - [`config`]: flags → [`config::ProxyConfig`].
//! - [`guard`]: `Host` / `Origin` / `Sec-Fetch-Site` checks (DNS rebinding, cross-site pages).
//! - [`access`]: the `--proxy-token` bearer check (other local users).
//! - [`rules`]: `--allowed-servers` / `--blocked-servers`, path normalization.
//! - [`forward`]: forwarding one request and streaming its answer.
//! - [`servers`]: the `ListApiMcpServers` listing shown at start and used by the rules.
//! - [`tool_policy`]: the tool policy (allow/deny, read-only, confirmation, region, audit) on
//!   the MCP messages forwarded, per server.
//!
//! Logs carry methods, paths, statuses and rule names; never header values, bodies or tokens.

pub mod access;
pub mod config;
pub mod forward;
pub mod guard;
pub mod quote;
pub mod rules;
pub mod servers;
pub mod session_id;
pub mod sse_rewrite;
pub mod tool_policy;

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use reqwest::Url;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};

use self::access::ProxyToken;
use self::guard::Guard;
use self::rules::{AccessRules, ServerIndex, Verdict};
use crate::auth::Credential;
use crate::net::display_url;
use crate::upstream::http::HttpClient;

/// Error type of streamed bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every answer (streamed upstream bodies and the proxy's own JSON).
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// `/health` waits this long for the credential before reporting it as failing.
const HEALTH_CREDENTIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection over `--max-connections` may take this long to send the request its 503
/// answers; a slower one is just closed.
const REFUSAL_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections being refused at once; beyond that (a flood), they are closed unanswered.
const MAX_REFUSALS: usize = 32;

/// A counter for `/health`.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What `/health` reports besides the credential.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests forwarded and answered by the upstream (any status).
    pub forwarded: Counter,
    /// Requests denied by the access rules.
    pub denied: Counter,
    /// Requests refused by the Host/Origin guard.
    pub refused: Counter,
    /// Requests that could not be forwarded (unreachable upstream, credential failure).
    pub upstream_errors: Counter,
    /// Client connections open now.
    pub connections: Counter,
    /// Requests refused for a missing or wrong `--proxy-token`.
    pub unauthorized: Counter,
    /// Connections refused because `--max-connections` were open.
    pub over_capacity: Counter,
}

/// The running proxy, shared by every connection.
pub struct Proxy {
    /// Scheme and authority of the upstream (path `/`).
    pub upstream: Url,
    pub http: HttpClient,
    /// The same credential `http` applies (for `/health`).
    pub credential: Arc<dyn Credential>,
    pub rules: AccessRules,
    pub index: ServerIndex,
    pub guard: Guard,
    /// `--proxy-token`, when set.
    pub token: Option<ProxyToken>,
    /// `--max-body-size` in bytes.
    pub max_body: usize,
    pub stats: Stats,
    pub started: Instant,
    /// The tool policy, when any policy flag or `--audit-log` is set.
    pub policy: Option<Arc<tool_policy::ProxyPolicy>>,
}

impl Proxy {
    /// Dispatches one request: guard, local routes, access rules, then the upstream.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        if let Err(refusal) = self.guard.check(req.headers(), req.uri().authority()) {
            self.stats.refused.inc();
            warn!(reason = %refusal, "refused a request (Host/Origin check)");
            return json_response(
                StatusCode::FORBIDDEN,
                json!({"error": "forbidden_host", "message": refusal.to_string()}),
            );
        }
        let raw_path = req.uri().path().to_string();
        let authorized = match &self.token {
            Some(t) => t.check(req.headers()),
            None => Ok(()),
        };
        if matches!(*req.method(), Method::GET | Method::HEAD) && raw_path == "/health" {
            return match authorized {
                Ok(()) => self.health().await,
                // Liveness for anyone; the rest only for token holders.
                Err(_) => json_response(
                    StatusCode::OK,
                    json!({
                        "status": "ok",
                        "version": env!("CARGO_PKG_VERSION"),
                        "details": "present the proxy token for the credential state and counters",
                    }),
                ),
            };
        }
        if let Err(refusal) = authorized {
            self.stats.unauthorized.inc();
            info!(reason = %refusal, "refused a request (proxy token)");
            let mut r = json_response(
                StatusCode::UNAUTHORIZED,
                json!({"error": "unauthorized", "message": refusal.to_string()}),
            );
            r.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"alibridge proxy\""),
            );
            return r;
        }
        if matches!(
            raw_path.as_str(),
            "/favicon.ico" | "/robots.txt" | "/apple-touch-icon.png"
        ) {
            return json_response(
                StatusCode::NOT_FOUND,
                json!({"error": "not_found", "message": "not an MCP endpoint"}),
            );
        }
        let path = match rules::normalize(&raw_path) {
            Ok(p) => p,
            Err(e) => {
                self.stats.denied.inc();
                info!(reason = %e, "refused an ambiguous path");
                return json_response(
                    StatusCode::BAD_REQUEST,
                    json!({
                        "error": "bad_path",
                        "message": format!("refused: {e}; such a path could reach another server than the access rules see"),
                    }),
                );
            }
        };
        let verdict = self.rules.decide(&path, &self.index);
        if verdict != Verdict::Allow {
            self.stats.denied.inc();
            let rule = verdict.describe();
            info!(path = %path, rule = %rule, "access denied");
            return json_response(
                StatusCode::FORBIDDEN,
                json!({
                    "error": "access_denied",
                    "message": format!("access denied: {path} is {rule}"),
                    "rule": rule,
                    "path": path,
                }),
            );
        }
        forward::forward(self, req, &path).await
    }

    /// `GET /health`: the credential's state (never its value) and the counters. 503 when the
    /// credential cannot produce a token.
    async fn health(&self) -> Response<Body> {
        let mut scratch = HeaderMap::new();
        let applied = tokio::time::timeout(
            HEALTH_CREDENTIAL_TIMEOUT,
            self.credential.apply(&mut scratch),
        )
        .await;
        let token = match applied {
            Ok(Ok(())) if scratch.contains_key(AUTHORIZATION) => json!({"state": "present"}),
            Ok(Ok(())) => json!({"state": "absent"}),
            Ok(Err(e)) => json!({"state": "error", "error": e.to_string()}),
            Err(_) => json!({"state": "error", "error": format!(
                "the credential did not answer within {} s", HEALTH_CREDENTIAL_TIMEOUT.as_secs())}),
        };
        drop(scratch);
        let healthy = token["state"] != "error";
        let s = &self.stats;
        let body = json!({
            "status": if healthy { "ok" } else { "degraded" },
            "version": env!("CARGO_PKG_VERSION"),
            "upstream": display_url(&self.upstream),
            "auth": self.credential.kind().name(),
            "token": token,
            "connections": s.connections.get(),
            "requests": {
                "forwarded": s.forwarded.get(),
                "denied": s.denied.get(),
                "refused": s.refused.get(),
                "unauthorized": s.unauthorized.get(),
                "upstreamErrors": s.upstream_errors.get(),
            },
            "connectionsRefused": s.over_capacity.get(),
            "confirmationsWaiting": self.policy.as_ref().map_or(0, |p| p.waiting()),
            "uptimeSeconds": self.started.elapsed().as_secs(),
        });
        let status = if healthy {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        json_response(status, body)
    }
}

/// Answers the first request of a connection over the limit with 503, then closes it.
async fn refuse(stream: TcpStream, limit: usize, _permit: OwnedSemaphorePermit) {
    let service = service_fn(move |_req| async move {
        let mut r = json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({
                "error": "too_many_connections",
                "message": format!(
                    "alibridge proxy is already serving {limit} connections (--max-connections, \
                     ALIBRIDGE_PROXY_MAX_CONNECTIONS); retry when one has closed, reuse \
                     connections, or raise the limit"
                ),
            }),
        );
        r.headers_mut()
            .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
        Ok::<_, Infallible>(r)
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(REFUSAL_READ_TIMEOUT)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(REFUSAL_READ_TIMEOUT * 2, conn).await;
}

/// A JSON answer made by the proxy itself.
pub fn json_response(status: StatusCode, body: Value) -> Response<Body> {
    let mut bytes = serde_json::to_vec(&body).unwrap_or_default();
    bytes.push(b'\n');
    let mut r = Response::new(
        Full::new(Bytes::from(bytes))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// Serves connections until `shutdown` completes, then stops accepting and gives open
/// connections up to `grace` to finish their current request (SSE streams that are still
/// open then are cut). At most `max_connections` are served at once: each holds a slot for its
/// whole life, and one that finds none free gets a 503 naming the limit (refusing is clearer
/// to a client than hanging in the accept queue, and bounds the proxy's tasks and memory).
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
    max_connections: usize,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(max_connections));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            proxy.stats.over_capacity.inc();
            warn!(%peer, limit = max_connections, "connection refused: --max-connections reached");
            if let Ok(permit) = refusals.clone().try_acquire_owned() {
                tokio::spawn(refuse(stream, max_connections, permit));
            }
            continue;
        };
        let p = proxy.clone();
        let service = service_fn(move |req| {
            let p = p.clone();
            async move { Ok::<_, Infallible>(p.handle(req).await) }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        let p = proxy.clone();
        p.stats.connections.inc();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(%peer, error = %e, "connection ended with an error");
            }
            p.stats.connections.dec();
            drop(slot);
        });
    }
    drop(listener);
    let open = proxy.stats.connections.get();
    info!(open, grace = ?grace, "stopping: no new connections; waiting for open ones");
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        info!(
            open = proxy.stats.connections.get(),
            "grace period over; closing the remaining connections"
        );
    }
}
