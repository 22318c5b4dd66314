//! A protected MCP server: an HTTP front on its own `127.0.0.1` port that serves RFC 9728
//! protected resource metadata and lets through to the rmcp test server only requests carrying
//! a live access token of the [`super::OAuthServer`] for this resource. Everything else gets
//! what real MCP servers answer:
//!
//! - no token, or a token that is unknown, expired, revoked or for another resource: `401` with
//!   `WWW-Authenticate: Bearer [error="invalid_token", ]resource_metadata="<PRM URL>",
//!   scope="<base scope>"`;
//! - a `tools/call` of the step-up tool with a token lacking the step-up scope: `403` with
//!   `WWW-Authenticate: Bearer error="insufficient_scope", scope="<step-up scope>",
//!   resource_metadata="…"`.
//!
//! The metadata is at the path-inserted well-known URL (`/.well-known/oauth-protected-resource/mcp`)
//! and the root one. Accepted requests are proxied to the rmcp server unchanged (bodies streamed,
//! so SSE answers and the GET stream flow as they come), minus the `Authorization` header.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::{check, OAuthServer, State as AsState, TokenVerdict};
// `super::super`: the test support module in tests, the crate root in the example.
use super::super::mcp_server::TestServer;
use super::super::net::{http_client, listen, read_body, serve, LOOPBACK};

type Body = BoxBody<Bytes, std::io::Error>;

/// How the protected server behaves.
#[derive(Debug, Clone)]
pub struct ProtectedOptions {
    /// The scope every request needs, announced in the 401 challenge (`None`: any token).
    pub scope: Option<String>,
    /// `tools/call` of this tool additionally needs this scope (403 `insufficient_scope`).
    pub step_up: Option<(String, String)>,
    /// Put `resource_metadata` in the challenge (as 2025-06-18 servers must); when off, the
    /// client has to find the metadata at the well-known URLs.
    pub resource_metadata_in_challenge: bool,
    /// `scopes_supported` of the protected resource metadata.
    pub scopes_supported: Vec<String>,
}

impl Default for ProtectedOptions {
    fn default() -> Self {
        ProtectedOptions {
            scope: Some("mcp:read".into()),
            step_up: None,
            resource_metadata_in_challenge: true,
            scopes_supported: vec!["mcp:read".into()],
        }
    }
}

/// One request to the protected server, as it arrived.
#[derive(Debug, Clone)]
pub struct FrontRequest {
    pub method: String,
    pub path: String,
    /// JSON-RPC `method` of a POST body.
    pub rpc_method: Option<String>,
    /// `params.name` of a `tools/call`.
    pub tool: Option<String>,
    /// The bearer token it carried.
    pub bearer: Option<String>,
    /// What the front answered itself (401/403), or the backend's status.
    pub status: u16,
}

struct Front {
    addr: SocketAddr,
    opts: ProtectedOptions,
    /// The authorization server it trusts now (issuer, state); switchable.
    trusted: Mutex<(String, Arc<Mutex<AsState>>)>,
    /// Overrides the metadata's `resource` (`Some(Value::Null)` drops it).
    resource_override: Mutex<Option<Value>>,
    /// Cancelled to end the GET streams open now ([`ProtectedMcp::cut_get_streams`]).
    cut: Mutex<CancellationToken>,
    backend: String,
    http: reqwest::Client,
    log: Mutex<Vec<FrontRequest>>,
    reject_all: Mutex<bool>,
}

/// The running protected MCP server (front + rmcp backend). Dropping it stops both.
pub struct ProtectedMcp {
    front: Arc<Front>,
    backend: TestServer,
    kill: CancellationToken,
}

impl ProtectedMcp {
    /// Starts an rmcp test server and a front that accepts `oauth`'s tokens for it.
    pub async fn start(oauth: &OAuthServer, opts: ProtectedOptions) -> ProtectedMcp {
        let backend = TestServer::start().await;
        let listener = listen(LOOPBACK).await;
        let addr = listener.local_addr().unwrap();
        let front = Arc::new(Front {
            addr,
            opts,
            trusted: Mutex::new((oauth.issuer(), oauth.shared())),
            resource_override: Mutex::new(None),
            cut: Mutex::new(CancellationToken::new()),
            backend: format!("http://{}", backend.addr()),
            http: http_client(),
            log: Mutex::default(),
            reject_all: Mutex::new(false),
        });
        oauth.add_resource(&front.resource());
        let kill = CancellationToken::new();
        let f = front.clone();
        serve(listener, kill.clone(), move |req| {
            let front = f.clone();
            async move { handle(&front, req).await }
        });
        ProtectedMcp {
            front,
            backend,
            kill,
        }
    }

    /// The MCP endpoint, `http://127.0.0.1:<port>/mcp` (also the RFC 8707 resource).
    pub fn url(&self) -> String {
        self.front.resource()
    }

    /// The URL of the protected resource metadata the challenge names.
    pub fn metadata_url(&self) -> String {
        self.front.metadata_url()
    }

    /// The rmcp server behind the front (its tool counters and request log).
    pub fn backend(&self) -> &TestServer {
        &self.backend
    }

    /// Every request the front received, in order.
    pub fn requests(&self) -> Vec<FrontRequest> {
        self.front.log.lock().unwrap().clone()
    }

    /// How many requests the front answered with `status` itself.
    pub fn answered(&self, status: u16) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.status == status)
            .count()
    }

    /// From now on the server trusts `other` instead (its metadata names it; only its tokens
    /// are accepted): a server that moved to another authorization server.
    pub fn switch_authorization_server(&self, other: &OAuthServer) {
        other.add_resource(&self.url());
        *self.front.trusted.lock().unwrap() = (other.issuer(), other.shared());
    }

    /// From now on the metadata's `resource` is `value` (`Value::Null`: no `resource` at all);
    /// a URL there is also the audience tokens must carry.
    pub fn set_metadata_resource(&self, value: Value) {
        *self.front.resource_override.lock().unwrap() = Some(value);
    }

    /// Ends every open GET stream, after a `retry: 1` so the client reconnects at once.
    pub fn cut_get_streams(&self) {
        let old = std::mem::take(&mut *self.front.cut.lock().unwrap());
        old.cancel();
    }

    /// From now on every token is refused with `401 invalid_token` (a misconfigured server).
    pub fn reject_all_tokens(&self, on: bool) {
        *self.front.reject_all.lock().unwrap() = on;
    }
}

impl Drop for ProtectedMcp {
    fn drop(&mut self) {
        self.kill.cancel();
    }
}

impl Front {
    fn resource(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// The resource tokens must be issued for: the metadata's `resource` when it was set to
    /// another URL (the front is reached through a proxy at that URL), else its own.
    fn audience(&self) -> String {
        match &*self.resource_override.lock().unwrap() {
            Some(Value::String(s)) => s.clone(),
            _ => self.resource(),
        }
    }

    fn metadata_url(&self) -> String {
        format!(
            "http://{}/.well-known/oauth-protected-resource/mcp",
            self.addr
        )
    }

    fn metadata(&self) -> Value {
        let issuer = self.trusted.lock().unwrap().0.clone();
        let mut m = json!({
            "resource": self.resource(),
            "authorization_servers": [issuer],
            "scopes_supported": self.opts.scopes_supported,
            "bearer_methods_supported": ["header"],
            "resource_name": "alibridge test MCP server",
        });
        match self.resource_override.lock().unwrap().clone() {
            Some(Value::Null) => {
                m.as_object_mut().unwrap().remove("resource");
            }
            Some(v) => m["resource"] = v,
            None => {}
        }
        m
    }

    /// The challenge for a refused request.
    fn challenge(&self, error: Option<&str>, scope: Option<&str>) -> String {
        let mut parts = Vec::new();
        if let Some(e) = error {
            parts.push(format!("error=\"{e}\""));
        }
        if let Some(s) = scope {
            parts.push(format!("scope=\"{s}\""));
        }
        if self.opts.resource_metadata_in_challenge {
            parts.push(format!("resource_metadata=\"{}\"", self.metadata_url()));
        }
        if parts.is_empty() {
            "Bearer".into()
        } else {
            format!("Bearer {}", parts.join(", "))
        }
    }
}

fn never(e: Infallible) -> std::io::Error {
    match e {}
}

fn full(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).map_err(never).boxed());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn refuse(status: StatusCode, challenge: String, error: &str) -> Response<Body> {
    let mut r = full(
        status,
        "application/json",
        json!({"error": error}).to_string(),
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_str(&challenge).expect("valid challenge"),
    );
    r
}

async fn handle(front: &Front, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    if req.method() == Method::GET
        && (path == "/.well-known/oauth-protected-resource/mcp"
            || path == "/.well-known/oauth-protected-resource")
    {
        return full(
            StatusCode::OK,
            "application/json",
            front.metadata().to_string(),
        );
    }
    let (parts, body) = read_body(req).await;
    let rpc: Option<Value> = serde_json::from_slice(&body).ok();
    let rpc_method = rpc
        .as_ref()
        .and_then(|v| v["method"].as_str())
        .map(str::to_string);
    let tool = rpc
        .as_ref()
        .filter(|_| rpc_method.as_deref() == Some("tools/call"))
        .and_then(|v| v["params"]["name"].as_str())
        .map(str::to_string);
    let bearer = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let mut entry = FrontRequest {
        method: parts.method.to_string(),
        path: path.clone(),
        rpc_method,
        tool: tool.clone(),
        bearer: bearer.clone(),
        status: 0,
    };
    let base = front.opts.scope.as_deref();
    let verdict = match &bearer {
        None => None,
        Some(_) if *front.reject_all.lock().unwrap() => Some(TokenVerdict::Invalid),
        Some(t) => {
            let step_up = front
                .opts
                .step_up
                .as_ref()
                .filter(|(name, _)| tool.as_deref() == Some(name.as_str()));
            let required = match (base, step_up) {
                (Some(b), Some((_, s))) => Some(format!("{b} {s}")),
                (None, Some((_, s))) => Some(s.clone()),
                (b, None) => b.map(str::to_string),
            };
            let oauth = front.trusted.lock().unwrap().1.clone();
            let st = oauth.lock().unwrap();
            Some(check(&st, t, Some(&front.audience()), required.as_deref()))
        }
    };
    let refused = match verdict {
        None => Some(refuse(
            StatusCode::UNAUTHORIZED,
            front.challenge(None, base),
            "invalid_token",
        )),
        Some(TokenVerdict::Invalid) => Some(refuse(
            StatusCode::UNAUTHORIZED,
            front.challenge(Some("invalid_token"), base),
            "invalid_token",
        )),
        Some(TokenVerdict::InsufficientScope) => {
            let extra = front.opts.step_up.as_ref().map(|(_, s)| s.as_str());
            Some(refuse(
                StatusCode::FORBIDDEN,
                front.challenge(Some("insufficient_scope"), extra),
                "insufficient_scope",
            ))
        }
        Some(TokenVerdict::Valid) => None,
    };
    if let Some(r) = refused {
        entry.status = r.status().as_u16();
        front.log.lock().unwrap().push(entry);
        return r;
    }
    let resp = proxy(front, parts, body).await;
    entry.status = resp.status().as_u16();
    front.log.lock().unwrap().push(entry);
    resp
}

/// Sends the request on to the rmcp server and streams its answer back.
async fn proxy(front: &Front, parts: http::request::Parts, body: Bytes) -> Response<Body> {
    let target = format!(
        "{}{}",
        front.backend,
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let mut rb = front.http.request(parts.method.clone(), target);
    for (name, value) in &parts.headers {
        if !matches!(
            name.as_str(),
            "host" | "authorization" | "content-length" | "connection" | "accept-encoding"
        ) {
            rb = rb.header(name, value);
        }
    }
    let upstream = match rb.body(body).send().await {
        Ok(r) => r,
        Err(e) => {
            return full(
                StatusCode::BAD_GATEWAY,
                "text/plain",
                format!("backend: {e}"),
            )
        }
    };
    let mut r = Response::builder().status(upstream.status());
    for (name, value) in upstream.headers() {
        if !matches!(
            name.as_str(),
            "content-length" | "connection" | "transfer-encoding"
        ) {
            r = r.header(name, value);
        }
    }
    let stream = upstream
        .bytes_stream()
        .map_ok(Frame::data)
        .map_err(std::io::Error::other);
    if parts.method == Method::GET {
        let cut = front.cut.lock().unwrap().clone();
        let retry_now = futures_util::stream::once(async {
            Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(b"retry: 1\n\n")))
        });
        let stream = stream.take_until(cut.cancelled_owned()).chain(retry_now);
        return r
            .body(BodyExt::boxed(StreamBody::new(stream)))
            .expect("valid response");
    }
    r.body(BodyExt::boxed(StreamBody::new(stream)))
        .expect("valid response")
}
