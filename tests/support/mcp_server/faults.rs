//! The HTTP layer in front of rmcp's `StreamableHttpService`: it records every request, and
//! injects the faults a test asks for through [`super::TestServer`].
//!
//! - Every request is logged ([`SeenRequest`]: HTTP method, headers, raw body, the JSON-RPC
//!   method / id / tool name peeked from the body, the status answered).
//! - A [`Rule`] armed by the test is consumed by the first POST it matches ([`Match`]): answer a
//!   canned status/body without reaching rmcp, cut the SSE response after N events, or kill the
//!   whole server. A cut stream holds after its N events until the test pulls the [`Cut`] (having
//!   seen the last delivered event arrive), so the cut never races the delivery of those events.
//! - With a [`TokenCheck`], a request without an accepted `Authorization: Bearer <token>` gets
//!   `401` (`WWW-Authenticate: Bearer …`) before any rule or rmcp sees it; it is logged with
//!   that status.
//! - A cut keeps draining rmcp's stream in the background and records every event, so a later
//!   `GET` with `Last-Event-ID` naming one of them is answered here by replaying the events after
//!   it (then the live rest). rmcp can resume by itself too, but only while the request is still
//!   running; this layer makes resumption independent of that race.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use rmcp::transport::streamable_http_server::{
    session::local::LocalSessionManager, StreamableHttpService,
};
use serde_json::Value;
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;

use super::tools::TestTools;

/// The body type the server answers with (rmcp's bodies, canned bodies and cut streams).
pub type Body = BoxBody<Bytes, io::Error>;
type Rmcp = StreamableHttpService<TestTools, LocalSessionManager>;

/// Decides whether a bearer token is accepted (see [`super::ServerOptions::require_bearer`]).
#[derive(Clone)]
pub struct TokenCheck(pub Arc<dyn Fn(&str) -> bool + Send + Sync>);

impl std::fmt::Debug for TokenCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCheck(..)")
    }
}

/// One HTTP request as the server received it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: Method,
    /// Path and query.
    pub uri: String,
    pub headers: HeaderMap,
    /// The raw body (POST), exactly as received.
    pub body: Bytes,
    /// `method` of the JSON-RPC message in the body, if any.
    pub rpc_method: Option<String>,
    /// `id` of the JSON-RPC message in the body, if any.
    pub rpc_id: Option<Value>,
    /// `params.name` when the body is a `tools/call`.
    pub tool: Option<String>,
    /// The HTTP status answered (`None` while the answer is being made, or if killed first).
    pub status: Option<u16>,
    /// The `Mcp-Session-Id` header of the answer, if it had one (initialize).
    pub issued_session: Option<String>,
    /// The connection it arrived on (`net::ConnId`), numbered in accept order.
    pub conn: Option<u64>,
}

impl SeenRequest {
    /// A request header as a string (`None` if absent or not UTF-8).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The token of an `Authorization: Bearer <token>` header, if any.
    pub fn bearer(&self) -> Option<&str> {
        self.header("authorization")?.strip_prefix("Bearer ")
    }

    /// The body is a JSON-RPC response (the client answering a server request).
    pub fn is_rpc_response(&self) -> bool {
        self.rpc_method.is_none() && self.rpc_id.is_some()
    }
}

/// Which POST a fault applies to.
#[derive(Debug, Clone)]
pub enum Match {
    /// Any POST.
    AnyPost,
    /// A POST whose JSON-RPC `method` is this.
    Method(String),
    /// A POST that is a `tools/call` of this tool.
    Tool(String),
}

impl Match {
    /// A `tools/call` of `name`.
    pub fn tool(name: &str) -> Self {
        Match::Tool(name.to_owned())
    }

    /// A message with JSON-RPC `method`.
    pub fn method(name: &str) -> Self {
        Match::Method(name.to_owned())
    }

    fn matches(&self, r: &SeenRequest) -> bool {
        r.method == Method::POST
            && match self {
                Match::AnyPost => true,
                Match::Method(m) => r.rpc_method.as_deref() == Some(m.as_str()),
                Match::Tool(t) => {
                    r.rpc_method.as_deref() == Some("tools/call") && r.tool.as_deref() == Some(t)
                }
            }
    }
}

/// What an armed fault does to the POST it matches.
#[derive(Debug, Clone)]
pub enum Action {
    /// Answer this status and body; rmcp never sees the request.
    Respond { status: u16, body: String },
    /// Pass to rmcp; if the answer is SSE, deliver `after_events` events (the priming event
    /// counts; comments do not), then drop the connection once the [`Cut`] is pulled. The rest is
    /// replayable by GET.
    CutAfter(usize, Cut),
    /// Like `CutAfter`, but rmcp's stream is dropped too, so rmcp itself sees the disconnect and
    /// any `GET` + `Last-Event-ID` is answered by rmcp's own resumption (see the module docs of
    /// `mcp_server` for its limits).
    CutNative(usize, Cut),
    /// Kill the whole server (listener and every connection) as soon as the body is read.
    Kill,
}

/// The switch of an armed SSE cut: the stream delivers its events, then holds the connection
/// open until [`Cut::now`]. A test pulls it once it has seen the last delivered event arrive at
/// the client, so the cut cannot overtake bytes still on their way.
#[derive(Debug, Clone, Default)]
pub struct Cut(CancellationToken);

impl Cut {
    /// Breaks the connection (at once if the events are delivered, else right after them).
    pub fn now(&self) {
        self.0.cancel();
    }
}

/// A fault waiting for its POST.
#[derive(Debug, Clone)]
pub struct Rule {
    pub when: Match,
    pub action: Action,
}

/// The events of one cut SSE response, recorded in full for replay.
#[derive(Default)]
struct CutStream {
    /// `(event id, raw event bytes including the blank line)`, every non-comment event.
    events: Mutex<Vec<(Option<String>, Bytes)>>,
    /// Bumped on each new event; `true` in the tuple once rmcp's stream ended.
    progress: Option<watch::Sender<(usize, bool)>>,
}

/// Shared state of the layer.
pub struct Layer {
    rmcp: Rmcp,
    log: Mutex<Vec<SeenRequest>>,
    /// Notified whenever the log changes (new request or status filled in).
    pub log_changed: Notify,
    rules: Mutex<VecDeque<Rule>>,
    cuts: Mutex<Vec<Arc<CutStream>>>,
    /// Cancelled to kill the server (see [`super::TestServer::kill`]).
    pub kill: CancellationToken,
    retry: Duration,
    require_bearer: Option<TokenCheck>,
}

impl Layer {
    pub fn new(
        rmcp: Rmcp,
        kill: CancellationToken,
        retry: Duration,
        require_bearer: Option<TokenCheck>,
    ) -> Self {
        Layer {
            rmcp,
            log: Mutex::default(),
            log_changed: Notify::new(),
            rules: Mutex::default(),
            cuts: Mutex::default(),
            kill,
            retry,
            require_bearer,
        }
    }

    pub fn arm(&self, rule: Rule) {
        self.rules.lock().unwrap().push_back(rule);
    }

    pub fn requests(&self) -> Vec<SeenRequest> {
        self.log.lock().unwrap().clone()
    }

    /// Handles one HTTP request: log, maybe fault, else rmcp.
    pub async fn handle(&self, req: Request<hyper::body::Incoming>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let body = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return plain(StatusCode::BAD_REQUEST, format!("body: {e}")),
        };
        let seen = peek(&parts, body.clone());
        let index = {
            let mut log = self.log.lock().unwrap();
            log.push(seen.clone());
            log.len() - 1
        };
        self.log_changed.notify_waiters();

        if let Some(r) = self.refuse_token(&seen) {
            self.log.lock().unwrap()[index].status = Some(401);
            self.log_changed.notify_waiters();
            return r;
        }
        let rule = {
            let mut rules = self.rules.lock().unwrap();
            let pos = rules.iter().position(|r| r.when.matches(&seen));
            pos.and_then(|p| rules.remove(p))
        };
        let response = match rule.map(|r| r.action) {
            Some(Action::Respond { status, body }) => {
                let status = StatusCode::from_u16(status).expect("valid status");
                let ct = if body.trim_start().starts_with('{') {
                    "application/json"
                } else {
                    "text/plain"
                };
                let mut r = Response::new(full(body));
                *r.status_mut() = status;
                r.headers_mut()
                    .insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ct));
                r
            }
            Some(Action::Kill) => {
                self.kill.cancel();
                // The connection task is dropped on kill; this answer never leaves.
                std::future::pending::<()>().await;
                unreachable!()
            }
            Some(action @ (Action::CutAfter(..) | Action::CutNative(..))) => {
                let (n, native, switch) = match action {
                    Action::CutAfter(n, s) => (n, false, s),
                    Action::CutNative(n, s) => (n, true, s),
                    _ => unreachable!(),
                };
                let r = self
                    .rmcp
                    .handle(Request::from_parts(parts, Full::new(body)))
                    .await;
                if is_sse(r.headers()) {
                    self.cut(r, n, native, switch)
                } else {
                    r.map(|b| b.map_err(never).boxed())
                }
            }
            None => match self.replay(&parts) {
                Some(r) => r,
                None => {
                    let r = self
                        .rmcp
                        .handle(Request::from_parts(parts, Full::new(body)))
                        .await;
                    r.map(|b| b.map_err(never).boxed())
                }
            },
        };
        {
            let mut log = self.log.lock().unwrap();
            log[index].status = Some(response.status().as_u16());
            log[index].issued_session = response
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
        }
        self.log_changed.notify_waiters();
        response
    }

    /// The `401` for a request whose bearer token the [`TokenCheck`] refuses (`None`: accepted,
    /// or no check configured).
    fn refuse_token(&self, seen: &SeenRequest) -> Option<Response<Body>> {
        let check = self.require_bearer.as_ref()?;
        let challenge = match seen.bearer() {
            Some(t) if (check.0)(t) => return None,
            Some(_) => {
                r#"Bearer realm="alibridge-test", error="invalid_token", error_description="the token is expired, revoked or unknown""#
            }
            None => r#"Bearer realm="alibridge-test""#,
        };
        let mut r = Response::new(full(
            r#"{"error":"invalid_token","error_description":"a valid bearer token is required"}"#,
        ));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        let h = r.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
        Some(r)
    }

    /// Wraps an SSE answer: `after` events reach the client, then the connection drops when
    /// `switch` is pulled. Unless `native`, every event (before and after the cut) is recorded for
    /// [`Layer::replay`]; if `native`, rmcp's stream is dropped at the cut instead.
    fn cut(
        &self,
        r: Response<BoxBody<Bytes, Infallible>>,
        after: usize,
        native: bool,
        switch: Cut,
    ) -> Response<Body> {
        let (parts, mut inner) = r.into_parts();
        let (progress, _) = watch::channel((0, false));
        let rec = Arc::new(CutStream {
            events: Mutex::default(),
            progress: Some(progress),
        });
        if !native {
            self.cuts.lock().unwrap().push(rec.clone());
        }
        let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(64);
        tokio::spawn(async move {
            let mut tx = Some(tx);
            let mut delivered = 0;
            let mut splitter = SseSplitter::default();
            let progress = rec.progress.as_ref().unwrap();
            if after == 0 {
                cut_when_pulled(&mut tx, &switch, native).await;
                if native {
                    return;
                }
            }
            while let Some(Ok(frame)) = inner.frame().await {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                for event in splitter.push(&data) {
                    let id = event_id(&event);
                    let real = is_event(&event);
                    if real {
                        let mut events = rec.events.lock().unwrap();
                        events.push((id, event.clone()));
                        progress.send_replace((events.len(), false));
                    }
                    if let Some(t) = &tx {
                        // A client that went away early just stops receiving.
                        let _ = t.send(Ok(event)).await;
                        if real {
                            delivered += 1;
                            if delivered == after {
                                cut_when_pulled(&mut tx, &switch, native).await;
                                if native {
                                    return; // drops rmcp's stream
                                }
                            }
                        }
                    }
                }
            }
            let len = rec.events.lock().unwrap().len();
            progress.send_replace((len, true));
        });
        Response::from_parts(parts, channel_body(rx))
    }

    /// A `GET` whose `Last-Event-ID` names an event of a cut stream: replay what follows it.
    fn replay(&self, parts: &http::request::Parts) -> Option<Response<Body>> {
        if parts.method != Method::GET {
            return None;
        }
        let last = parts.headers.get("last-event-id")?.to_str().ok()?;
        let (rec, start) = self.cuts.lock().unwrap().iter().find_map(|c| {
            let events = c.events.lock().unwrap();
            let pos = events
                .iter()
                .position(|(id, _)| id.as_deref() == Some(last))?;
            Some((c.clone(), pos + 1))
        })?;
        let mut progress = rec.progress.as_ref().unwrap().subscribe();
        let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(64);
        let retry = Bytes::from(format!("retry: {}\n\n", self.retry.as_millis()));
        tokio::spawn(async move {
            let mut next = start;
            if tx.send(Ok(retry)).await.is_err() {
                return;
            }
            loop {
                let (_, done) = *progress.borrow_and_update();
                let batch: Vec<Bytes> = rec.events.lock().unwrap()[next..]
                    .iter()
                    .map(|(_, b)| b.clone())
                    .collect();
                next += batch.len();
                for b in batch {
                    if tx.send(Ok(b)).await.is_err() {
                        return;
                    }
                }
                if done || progress.changed().await.is_err() {
                    // `done` was read before the batch, so nothing recorded is left unsent.
                    let rest: Vec<Bytes> = rec.events.lock().unwrap()[next..]
                        .iter()
                        .map(|(_, b)| b.clone())
                        .collect();
                    for b in rest {
                        let _ = tx.send(Ok(b)).await;
                    }
                    return;
                }
            }
        });
        let mut r = Response::new(channel_body(rx));
        let h = r.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        h.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        );
        Some(r)
    }
}

/// Stops delivering to the client and breaks its connection once `switch` is pulled. With
/// `native` this waits for the switch (the caller then drops rmcp's stream); otherwise the wait
/// runs aside, so rmcp's stream keeps being drained and recorded for replay meanwhile.
async fn cut_when_pulled(
    tx: &mut Option<mpsc::Sender<Result<Bytes, io::Error>>>,
    switch: &Cut,
    native: bool,
) {
    let Some(t) = tx.take() else { return };
    let pulled = switch.0.clone().cancelled_owned();
    let cut = async move {
        pulled.await;
        let _ = t
            .send(Err(io::Error::other("test server: SSE stream cut")))
            .await;
    };
    if native {
        cut.await;
    } else {
        tokio::spawn(cut);
    }
}

fn never(e: Infallible) -> io::Error {
    match e {}
}

fn full(s: impl Into<Bytes>) -> Body {
    Full::new(s.into()).map_err(never).boxed()
}

fn plain(status: StatusCode, s: String) -> Response<Body> {
    let mut r = Response::new(full(s));
    *r.status_mut() = status;
    r
}

/// A body fed by a channel; an `Err` item aborts the connection.
fn channel_body(rx: mpsc::Receiver<Result<Bytes, io::Error>>) -> Body {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item.map(Frame::data), rx))
    });
    StreamBody::new(stream).boxed()
}

fn is_sse(h: &HeaderMap) -> bool {
    h.get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// Builds the log entry, peeking at the JSON-RPC message in the body.
fn peek(parts: &http::request::Parts, body: Bytes) -> SeenRequest {
    let msg: Option<Value> = serde_json::from_slice(&body).ok();
    let get = |k: &str| msg.as_ref().and_then(|m| m.get(k)).cloned();
    let rpc_method = get("method").and_then(|m| m.as_str().map(str::to_owned));
    let tool = if rpc_method.as_deref() == Some("tools/call") {
        msg.as_ref()
            .and_then(|m| m["params"]["name"].as_str())
            .map(str::to_owned)
    } else {
        None
    };
    SeenRequest {
        method: parts.method.clone(),
        uri: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts.headers.clone(),
        rpc_id: get("id"),
        rpc_method,
        tool,
        body,
        status: None,
        issued_session: None,
        conn: parts
            .extensions
            .get::<super::super::net::ConnId>()
            .map(|c| c.0),
    }
}

/// Splits an SSE byte stream into whole events (each ending with its blank line).
#[derive(Default)]
struct SseSplitter {
    buf: Vec<u8>,
}

impl SseSplitter {
    fn push(&mut self, data: &[u8]) -> Vec<Bytes> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        while let Some(end) = event_end(&self.buf) {
            let rest = self.buf.split_off(end);
            out.push(Bytes::from(std::mem::replace(&mut self.buf, rest)));
        }
        out
    }
}

/// End (exclusive) of the first complete event in `buf`: after "\n\n" or "\r\n\r\n".
fn event_end(buf: &[u8]) -> Option<usize> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|p| p + 2);
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn fields(event: &[u8]) -> impl Iterator<Item = (&str, &str)> {
    std::str::from_utf8(event)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (name, value) = l.split_once(':').unwrap_or((l, ""));
            (!name.is_empty()).then(|| (name, value.strip_prefix(' ').unwrap_or(value)))
        })
}

fn event_id(event: &[u8]) -> Option<String> {
    fields(event)
        .filter(|(n, _)| *n == "id")
        .last()
        .map(|(_, v)| v.to_owned())
}

/// A block with `data` or `id` (keep-alive comments and bare `retry:` blocks are not events).
fn is_event(event: &[u8]) -> bool {
    fields(event).any(|(n, _)| n == "data" || n == "id")
}
