//! Streamable HTTP as MCP 2026-07-28 defines it (the "modern" era): no session, no
//! `initialize`, every request carrying its protocol version, client info and capabilities in
//! `params._meta`, server-to-client requests returned as `input_required` results (MRTR), and
//! change notifications on a `subscriptions/listen` stream. It owns both ways a stdio client
//! can meet such a server:
//!
//! - **Translation** for a client of the `initialize` era ([`Modern::translating`]): the
//!   handshake is answered here from the `server/discover` result, `ping` too,
//!   `notifications/initialized` is swallowed; every request gets the three `_meta` keys added;
//!   an `input_required` result becomes requests to the client (ids `alibridge-mrtr-<n>`) whose
//!   answers are sent back with the original call under a new id (`alibridge-retry-<n>`), so
//!   the client sees exactly one answer with its own id and never `input_required`; list and
//!   resource notifications come from a `subscriptions/listen` stream kept open with back-off.
//! - **Passthrough** for a modern client ([`Modern::passthrough`]): messages go as they are,
//!   with the request metadata headers derived from each body.
//!
//! In both, a stdio `notifications/cancelled` closes the HTTP response stream of the request it
//! names (that is how cancellation is said over HTTP), and a response stream that breaks before
//! the answer is re-issued under a new id only when that cannot run anything twice: always for
//! reads, for `tools/call` only when the tool is annotated `idempotentHint: true`. Otherwise the
//! client gets an error saying the result was lost and the call may have run.
//!
//! [`probe`] decides the era: a `server/discover` answered with a result, or with a modern
//! JSON-RPC error (−32020/−32021/−32022), means a modern server.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Response, Url};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::error::UpstreamError;
use super::event_stream::{parse_event, EventStream, Parsed};
use super::headers::{self, ToolFacts};
use super::http::{error_snippet, is_event_stream, HttpClient, ACCEPT_POST};
use super::{dropped, spawn_child, Deliver, Dropped};
use crate::backoff::Backoff;
use crate::jsonrpc::{self, single_line, Id, Kind, Message};
use crate::net::{describe, display_url, read_body, BodyError};

/// The modern protocol revision the bridge speaks.
pub const MODERN_VERSION: &str = "2026-07-28";
/// JSON-RPC error codes only a modern server sends (HeaderMismatch,
/// MissingRequiredClientCapability, UnsupportedProtocolVersion).
pub const MODERN_ERRORS: [i64; 3] = [-32020, -32021, -32022];
/// How long the answer to a `server/discover` probe may take once the response head arrived,
/// before the server is taken for a legacy one (a legacy server may never answer a request it
/// does not know on a stream it opened). The head itself has no limit: a sign-in may come first.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// `input_required` rounds per client request before the bridge gives up on the server.
pub const MAX_INPUT_ROUNDS: u32 = 8;
/// Re-issues of one request after broken response streams.
const MAX_REISSUES: u32 = 2;
/// Pacing of `subscriptions/listen` reopenings.
const LISTEN_BACKOFF_BASE: Duration = Duration::from_secs(1);
const LISTEN_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A listen stream that stayed open this long was healthy: reopen promptly.
const LISTEN_HEALTHY: Duration = Duration::from_secs(30);

/// What a `server/discover` probe found.
#[derive(Debug)]
pub enum Probe {
    /// A modern server: its discover result, and the version the bridge will use with it.
    Modern { discover: Value, version: String },
    /// Anything else: the reason, for the log.
    Legacy(String),
}

/// Sends `server/discover` with `client_info` and `capabilities` in `_meta` and reads the
/// server's era from the answer. Connection and credential failures are errors (the era is
/// unknown); every other outcome is an era.
pub async fn probe(
    url: &Url,
    http: &HttpClient,
    client_info: &Value,
    capabilities: &Value,
) -> Result<Probe, UpstreamError> {
    let mut version = MODERN_VERSION.to_string();
    // One retry when the server names a modern version it prefers (−32022 with `supported`).
    for _ in 0..2 {
        let body = json!({
            "jsonrpc": "2.0", "id": "alibridge-discover", "method": "server/discover",
            "params": {"_meta": {
                headers::META_PROTOCOL_VERSION: version,
                headers::META_CLIENT_INFO: client_info,
                headers::META_CLIENT_CAPABILITIES: capabilities,
            }}
        });
        let body = Bytes::from(body.to_string());
        let hdrs = headers::for_body(&body, None, &ToolFacts::default());
        let sent = http.send(url, || {
            let mut rb = http
                .client()
                .post(url.clone())
                .header(ACCEPT, ACCEPT_POST)
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
            for (n, v) in &hdrs {
                rb = rb.header(n, v.clone());
            }
            rb
        });
        // No time limit until the response head: a sign-in the server asks for happens there.
        let resp = match sent.await {
            Err(e @ (UpstreamError::Connect { .. } | UpstreamError::Auth(_))) => return Err(e),
            Err(e @ UpstreamError::ForeignOrigin(_)) => return Err(e),
            Err(e) => return Ok(Probe::Legacy(e.to_string())),
            Ok(r) => r,
        };
        let status = resp.status().as_u16();
        if matches!(status, 401 | 403) {
            let (snippet, _) = error_snippet(resp).await;
            return Err(UpstreamError::Status {
                status,
                url: display_url(url),
                body: snippet,
            });
        }
        let answer = if resp.status().is_success() {
            let read = tokio::time::timeout(PROBE_TIMEOUT, first_response(resp, http));
            match read.await {
                Ok(Some(v)) => v,
                _ => return Ok(Probe::Legacy(format!("HTTP {status} without an answer"))),
            }
        } else {
            let (snippet, body) = error_snippet(resp).await;
            match serde_json::from_slice::<Value>(&body) {
                Ok(v) if v.get("error").is_some() => v,
                _ => return Ok(Probe::Legacy(format!("HTTP {status} {snippet}"))),
            }
        };
        debug!(status, answer = %answer, "server/discover answered");
        if let Some(result) = answer.get("result") {
            if result.get("supportedVersions").is_none() {
                return Ok(Probe::Legacy(
                    "the discover result names no versions".into(),
                ));
            }
            let chosen = pick_version(result.get("supportedVersions")).unwrap_or(version);
            return Ok(Probe::Modern {
                discover: result.clone(),
                version: chosen,
            });
        }
        let code = answer.pointer("/error/code").and_then(Value::as_i64);
        match code {
            Some(-32022) => {
                let supported = answer.pointer("/error/data/supported");
                match pick_version(supported) {
                    Some(v) if v != version => version = v,
                    _ => {
                        return Ok(Probe::Legacy(format!(
                            "the server supports none of the modern versions alibridge speaks \
                             ({MODERN_VERSION}): {}",
                            supported.map(Value::to_string).unwrap_or_default()
                        )))
                    }
                }
            }
            Some(c) if MODERN_ERRORS.contains(&c) => {
                // A modern server that refused the probe itself: modern all the same, with
                // what can be learnt later; serverInfo stays unknown.
                return Ok(Probe::Modern {
                    discover: json!({"supportedVersions": [version], "capabilities": {}}),
                    version,
                });
            }
            _ => {
                let msg = answer
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                return Ok(Probe::Legacy(format!(
                    "server/discover got error {}: {msg}",
                    code.unwrap_or(0)
                )));
            }
        }
    }
    Ok(Probe::Legacy("no modern version in common".into()))
}

/// The version to speak with a server that supports `supported` (a JSON array of strings):
/// [`MODERN_VERSION`] when listed, else the newest later one (versions are dates, so they
/// order as strings); `None` when it lists no modern version.
fn pick_version(supported: Option<&Value>) -> Option<String> {
    let list: Vec<&str> = supported?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    if list.contains(&MODERN_VERSION) {
        return Some(MODERN_VERSION.to_string());
    }
    list.into_iter()
        .filter(|v| *v > MODERN_VERSION)
        .max()
        .map(str::to_string)
}

/// Whether a discover result lists a version of the initialize era (before
/// [`MODERN_VERSION`]) among the server's supported versions: a dual-era server.
pub fn lists_legacy(discover: &Value) -> bool {
    discover
        .get("supportedVersions")
        .and_then(Value::as_array)
        .is_some_and(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .any(|v| v < MODERN_VERSION)
        })
}

/// The first JSON-RPC response in a successful answer (JSON or SSE), as a value.
async fn first_response(resp: Response, http: &HttpClient) -> Option<Value> {
    let limit = http.max_message_size();
    if is_event_stream(&resp) {
        let mut events = EventStream::new(resp.bytes_stream()).with_limit(limit);
        while let Some(Ok(ev)) = events.next().await {
            if let Some(Parsed::Message(m)) = parse_event(ev) {
                if m.kind == Kind::Response {
                    return serde_json::from_slice(&m.bytes).ok();
                }
            }
        }
        return None;
    }
    let body = read_body(resp, limit).await.ok()?;
    serde_json::from_slice(&body).ok()
}

/// What a client of the `initialize` era told the bridge in its `initialize`.
struct LegacyClient {
    client_info: Value,
    capabilities: Value,
}

/// Reads `params.protocolVersion`, `params.clientInfo` and `params.capabilities` of an
/// `initialize` request (missing parts become `{}` / null).
pub fn initialize_params(bytes: &[u8]) -> (Value, Value, Value) {
    let v: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    let p = v.get("params").cloned().unwrap_or(Value::Null);
    (
        p.get("protocolVersion").cloned().unwrap_or(Value::Null),
        p.get("clientInfo").cloned().unwrap_or_else(|| json!({})),
        p.get("capabilities").cloned().unwrap_or_else(|| json!({})),
    )
}

/// True when a client message is shaped for the modern era: `server/discover`, or a request
/// whose `_meta` names a protocol version.
pub fn is_modern_shaped(msg: &Message) -> bool {
    if msg.method_is("server/discover") {
        return true;
    }
    #[derive(Deserialize)]
    struct Peek<'a> {
        #[serde(borrow)]
        params: Option<Params<'a>>,
    }
    #[derive(Deserialize)]
    struct Params<'a> {
        #[serde(borrow, rename = "_meta")]
        meta: Option<HashMap<&'a str, serde::de::IgnoredAny>>,
    }
    serde_json::from_slice::<Peek<'_>>(&msg.bytes)
        .ok()
        .and_then(|p| p.params?.meta)
        .is_some_and(|m| m.contains_key(headers::META_PROTOCOL_VERSION))
}

/// How the first message of a modern client fared (see [`Modern::send_first`]).
pub enum First {
    /// The server answered as a modern server; the answer was delivered.
    Modern,
    /// The server does not speak the modern era; nothing was delivered.
    Legacy(String),
}

pub struct Modern {
    url: Url,
    shown: String,
    http: HttpClient,
    out: Arc<dyn Deliver>,
    tools: Arc<ToolFacts>,
    /// The version put in `MCP-Protocol-Version` when a body names none.
    version: String,
    /// `Some` when translating for a client of the `initialize` era.
    client: Mutex<Option<Arc<LegacyClient>>>,
    /// The `server/discover` result (translation answers `initialize` from it).
    discover: Value,
    /// Requests sent to the client for `input_required` rounds, by the bridge's id.
    asked: Mutex<HashMap<Id, oneshot::Sender<Message>>>,
    /// The client's requests in flight, so `notifications/cancelled` can close their streams.
    in_flight: Mutex<HashMap<Id, CancellationToken>>,
    /// `resources/subscribe`d URIs (translation), for the listen filter.
    subscriptions: Mutex<BTreeSet<String>>,
    listen: Mutex<Option<CancellationToken>>,
    next_id: AtomicU64,
    cancel: CancellationToken,
}

impl Modern {
    fn new(
        url: Url,
        http: HttpClient,
        out: Arc<dyn Deliver>,
        tools: Arc<ToolFacts>,
        cancel: CancellationToken,
        version: String,
        discover: Value,
    ) -> Arc<Self> {
        Arc::new(Modern {
            shown: display_url(&url),
            url,
            http,
            out,
            tools,
            version,
            client: Mutex::new(None),
            discover,
            asked: Mutex::default(),
            in_flight: Mutex::default(),
            subscriptions: Mutex::default(),
            listen: Mutex::new(None),
            next_id: AtomicU64::new(1),
            cancel,
        })
    }

    /// For a client of the `initialize` era, after a probe found a modern server.
    #[allow(clippy::too_many_arguments)]
    pub fn translating(
        url: Url,
        http: HttpClient,
        out: Arc<dyn Deliver>,
        tools: Arc<ToolFacts>,
        cancel: CancellationToken,
        version: String,
        discover: Value,
    ) -> Arc<Self> {
        Self::new(url, http, out, tools, cancel, version, discover)
    }

    /// For a modern client: its messages are relayed as they are.
    pub fn passthrough(
        url: Url,
        http: HttpClient,
        out: Arc<dyn Deliver>,
        tools: Arc<ToolFacts>,
        cancel: CancellationToken,
    ) -> Arc<Self> {
        Self::new(
            url,
            http,
            out,
            tools,
            cancel,
            MODERN_VERSION.to_string(),
            Value::Null,
        )
    }

    fn translating_for(&self) -> Option<Arc<LegacyClient>> {
        self.client.lock().unwrap().clone()
    }

    fn fresh_id(&self, kind: &str) -> Id {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        Id::from_json(&format!("\"alibridge-{kind}-{n}\""))
    }

    /// Sends one client message (see [`super::Upstream::send`]).
    pub async fn send(self: &Arc<Self>, msg: Message) -> Result<(), UpstreamError> {
        match msg.kind {
            Kind::Response => {
                let id = msg.id.clone().expect("responses have ids");
                match self.asked.lock().unwrap().remove(&id) {
                    Some(tx) => {
                        let _ = tx.send(msg);
                    }
                    None => debug!(%id, "dropping a client response to no request of the bridge"),
                }
                Ok(())
            }
            Kind::Notification => self.notification(msg).await,
            Kind::Request => self.request(msg).await,
        }
    }

    async fn notification(self: &Arc<Self>, msg: Message) -> Result<(), UpstreamError> {
        if msg.method_is("notifications/cancelled") {
            // Over HTTP, closing the request's response stream is the cancellation.
            if let Some(id) = cancelled_id(&msg.bytes) {
                if let Some(t) = self.in_flight.lock().unwrap().get(&id) {
                    debug!(%id, "closing the response stream of a cancelled request");
                    t.cancel();
                }
            }
            return Ok(());
        }
        if self.translating_for().is_some() {
            if msg.method_is("notifications/initialized") {
                self.restart_listen();
            } else {
                debug!(method = ?msg.method, "not relayed: the modern era has no such client notification");
            }
            return Ok(());
        }
        let resp = self.post(&msg.bytes).await?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let (snippet, _) = error_snippet(resp).await;
            return Err(UpstreamError::Status {
                status,
                url: self.shown.clone(),
                body: snippet,
            });
        }
        Ok(())
    }

    async fn request(self: &Arc<Self>, msg: Message) -> Result<(), UpstreamError> {
        let id = msg.id.clone().expect("requests have ids");
        if msg.method_is("initialize") {
            return self.answer_initialize(&msg, &id).await;
        }
        let Some(client) = self.translating_for() else {
            return self.call(&id, msg.bytes.clone(), &msg).await;
        };
        match msg.method.as_deref() {
            Some("ping") => self.answer(&id, json!({})).await,
            Some("resources/subscribe") | Some("resources/unsubscribe") => {
                let uri = serde_json::from_slice::<Value>(&msg.bytes)
                    .ok()
                    .and_then(|v| v.pointer("/params/uri")?.as_str().map(str::to_string));
                if let Some(uri) = uri {
                    let mut subs = self.subscriptions.lock().unwrap();
                    if msg.method_is("resources/subscribe") {
                        subs.insert(uri);
                    } else {
                        subs.remove(&uri);
                    }
                }
                self.restart_listen();
                self.answer(&id, json!({})).await
            }
            _ => {
                let body = with_meta(&msg.bytes, &client, &self.version).ok_or_else(|| {
                    UpstreamError::Malformed {
                        url: self.shown.clone(),
                        detail: "the client's request has params that are not an object".into(),
                    }
                })?;
                self.call(&id, body, &msg).await
            }
        }
    }

    /// Answers `initialize` for a client of the `initialize` era from the discover result: its
    /// own protocol version, the server's capabilities, identity and instructions.
    async fn answer_initialize(&self, msg: &Message, id: &Id) -> Result<(), UpstreamError> {
        let (version, client_info, capabilities) = initialize_params(&msg.bytes);
        let name = client_info.get("name").cloned().unwrap_or(Value::Null);
        info!(client = %name, client_version = %version, server_version = %self.version,
              "protocol: the client speaks the initialize era, the server the modern era \
               ({MODERN_VERSION}); translating");
        *self.client.lock().unwrap() = Some(Arc::new(LegacyClient {
            client_info,
            capabilities,
        }));
        let d = &self.discover;
        let server_info = d
            .pointer("/_meta/io.modelcontextprotocol~1serverInfo")
            .cloned()
            .unwrap_or_else(
                || json!({"name": self.url.host_str().unwrap_or("server"), "version": "unknown"}),
            );
        let mut result = json!({
            "protocolVersion": version,
            "capabilities": d.get("capabilities").cloned().unwrap_or_else(|| json!({})),
            "serverInfo": server_info,
        });
        if let Some(i) = d.get("instructions").filter(|i| i.is_string()) {
            result["instructions"] = i.clone();
        }
        self.answer(id, result).await
    }

    async fn answer(&self, id: &Id, result: Value) -> Result<(), UpstreamError> {
        let line = format!(
            r#"{{"jsonrpc":"2.0","id":{},"result":{}}}"#,
            id.as_json(),
            result
        );
        let m = Message::parse(Bytes::from(line)).expect("a response the bridge built");
        self.out.deliver(m).await;
        Ok(())
    }

    /// Relays the first message of a modern client and tells whether the server is modern: a
    /// result or a modern error says so (and is delivered); anything else is a legacy server
    /// (nothing delivered, so the caller can answer or reroute).
    pub async fn send_first(self: &Arc<Self>, msg: Message) -> Result<First, UpstreamError> {
        if msg.kind != Kind::Request {
            self.send(msg).await?;
            return Ok(First::Modern);
        }
        let id = msg.id.clone().expect("requests have ids");
        // No time limit until the response head: a sign-in the server asks for happens there.
        let answer = match self.post(&msg.bytes).await {
            Ok(resp) if msg.method_is("server/discover") => {
                match tokio::time::timeout(PROBE_TIMEOUT, self.answer_from(resp, &id)).await {
                    Ok(a) => a,
                    Err(_) => {
                        return Ok(First::Legacy(
                            "server/discover was not answered in time".into(),
                        ))
                    }
                }
            }
            Ok(resp) => self.answer_from(resp, &id).await,
            Err(e) => Err(e),
        };
        let answer = match answer {
            Ok(a) => a,
            Err(e @ (UpstreamError::Connect { .. } | UpstreamError::Auth(_))) => return Err(e),
            Err(e @ UpstreamError::ForeignOrigin(_)) => return Err(e),
            Err(UpstreamError::Status {
                status: s @ (401 | 403),
                url,
                body,
            }) => {
                return Err(UpstreamError::Status {
                    status: s,
                    url,
                    body,
                })
            }
            Err(e) => return Ok(First::Legacy(e.to_string())),
        };
        let v: Value = serde_json::from_slice(&answer.bytes).unwrap_or(Value::Null);
        let modern = v.get("result").is_some()
            || v.pointer("/error/code")
                .and_then(Value::as_i64)
                .is_some_and(|c| MODERN_ERRORS.contains(&c));
        if !modern {
            let msg = v
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            return Ok(First::Legacy(msg));
        }
        let answer = if msg.method_is("tools/list") {
            Message::parse(self.tools.observe_list(answer.bytes.clone())).unwrap_or(answer)
        } else {
            answer
        };
        self.out.deliver(answer).await;
        Ok(First::Modern)
    }

    /// Runs one client request to its single answer: `input_required` rounds (translation),
    /// re-issues after broken streams where they are safe, cancellation by the client.
    async fn call(&self, client_id: &Id, body: Bytes, msg: &Message) -> Result<(), UpstreamError> {
        let token = self.cancel.child_token();
        self.in_flight
            .lock()
            .unwrap()
            .insert(client_id.clone(), token.clone());
        let run = self.run_call(client_id, body, msg);
        let result = token.run_until_cancelled(run).await;
        self.in_flight.lock().unwrap().remove(client_id);
        match result {
            Some(r) => r,
            None => {
                debug!(id = %client_id, "request cancelled; its response stream was closed");
                Ok(())
            }
        }
    }

    async fn run_call(
        &self,
        client_id: &Id,
        body: Bytes,
        msg: &Message,
    ) -> Result<(), UpstreamError> {
        let method = msg.method.as_deref().unwrap_or("");
        let tool = (method == "tools/call")
            .then(|| {
                serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v.pointer("/params/name")?.as_str().map(str::to_string))
            })
            .flatten();
        let client = self.translating_for();
        let mut body = body;
        let mut attempt = client_id.clone();
        let mut rounds = 0u32;
        let mut reissues = 0u32;
        let mut relisted = false;
        loop {
            let answer = match self.exchange(&body, &attempt).await {
                Ok(a) => a,
                // A connection lost after sending is a broken stream too; re-sending is
                // harmless only for reads (a tool call keeps its connect error).
                Err(UpstreamError::Connect { detail, .. })
                    if reissues < MAX_REISSUES
                        && tool.is_none()
                        && method != "subscriptions/listen" =>
                {
                    reissues += 1;
                    attempt = self.fresh_id("retry");
                    warn!(id = %client_id, %attempt, %detail,
                          "the connection broke; re-issuing the read under a new id");
                    body = jsonrpc::with_id(&body, &attempt).expect("the request was JSON");
                    continue;
                }
                Err(UpstreamError::StreamClosed { url, detail }) if reissues < MAX_REISSUES => {
                    let safe = match &tool {
                        Some(t) => self.tools.idempotent(t),
                        None => method != "subscriptions/listen",
                    };
                    if !safe {
                        let detail = format!(
                            "{detail}; the result is lost and the tool may have run; alibridge \
                             calls a tool again only when the server annotates it \
                             idempotentHint: true"
                        );
                        return Err(UpstreamError::StreamClosed { url, detail });
                    }
                    reissues += 1;
                    attempt = self.fresh_id("retry");
                    warn!(id = %client_id, %attempt, %detail,
                          "the response stream broke; re-issuing the request under a new id");
                    body = jsonrpc::with_id(&body, &attempt).expect("the request was JSON");
                    continue;
                }
                Err(e) => return Err(e),
            };
            // A header mismatch for a tool the bridge has not seen listed: the `Mcp-Param-*`
            // headers were missing. The server refused before running anything, so learn the
            // tool's schema and send the call again (the spec's advice to clients).
            if let Some(t) = tool
                .as_deref()
                .filter(|_| !relisted && is_header_mismatch(&answer.bytes))
            {
                if !self.tools.knows(t) {
                    relisted = true;
                    self.relist(client.as_deref()).await;
                    if self.tools.knows(t) {
                        attempt = self.fresh_id("retry");
                        body = jsonrpc::with_id(&body, &attempt).expect("the request was JSON");
                        debug!(id = %client_id, tool = t, "re-sending after learning the tool's x-mcp-header parameters");
                        continue;
                    }
                }
            }
            if let Some(client) = &client {
                if let Some(round) = InputRound::read(&answer.bytes) {
                    rounds += 1;
                    if rounds > MAX_INPUT_ROUNDS {
                        return Err(self.input_error(format!(
                            "the server still asked for input after {MAX_INPUT_ROUNDS} rounds"
                        )));
                    }
                    let responses = self.ask_client(client, &round).await?;
                    attempt = self.fresh_id("retry");
                    body = retry_body(&body, &attempt, &responses, round.request_state.as_deref())
                        .ok_or_else(|| {
                            self.input_error("the request could not be rebuilt".into())
                        })?;
                    debug!(id = %client_id, %attempt, round = rounds, "retrying with the client's input");
                    continue;
                }
            }
            let mut bytes = answer.bytes;
            if method == "tools/list" {
                bytes = self.tools.observe_list(bytes);
            }
            if &attempt != client_id {
                bytes = jsonrpc::with_id(&bytes, client_id).unwrap_or(bytes);
            }
            let m = Message::parse(bytes).map_err(|e| self.malformed(e.to_string()))?;
            self.out.deliver(m).await;
            return Ok(());
        }
    }

    /// Reads the server's tool list (every page) into the tool facts, for a call that needs
    /// them before the client asked for the list.
    async fn relist(&self, client: Option<&LegacyClient>) {
        let mut cursor: Option<Value> = None;
        for _ in 0..100 {
            let id = self.fresh_id("list");
            let mut params = json!({"_meta": match client {
                Some(c) => meta_of(c, &self.version),
                None => json!({headers::META_PROTOCOL_VERSION: self.version, headers::META_CLIENT_CAPABILITIES: {}}),
            }});
            if let Some(c) = cursor.take() {
                params["cursor"] = c;
            }
            let body = json!({"jsonrpc":"2.0","id": serde_json::from_str::<Value>(id.as_json()).unwrap_or(Value::Null),
                              "method":"tools/list","params": params});
            let Ok(answer) = self.exchange(&Bytes::from(body.to_string()), &id).await else {
                return;
            };
            self.tools.observe_list(answer.bytes.clone());
            cursor = serde_json::from_slice::<Value>(&answer.bytes)
                .ok()
                .and_then(|v| v.pointer("/result/nextCursor").cloned())
                .filter(|c| !c.is_null());
            if cursor.is_none() {
                return;
            }
        }
    }

    /// Turns one `input_required` round into requests to the client and collects its results
    /// verbatim. The client is asked only for what it declared it can do.
    async fn ask_client(
        &self,
        client: &LegacyClient,
        round: &InputRound,
    ) -> Result<Vec<(String, Box<RawValue>)>, UpstreamError> {
        let mut waits = Vec::new();
        for (key, req) in &round.requests {
            let needs = match req.method.as_str() {
                "elicitation/create" => "elicitation",
                "sampling/createMessage" => "sampling",
                "roots/list" => "roots",
                other => {
                    return Err(self.input_error(format!(
                        "the server asked for {other:?}, which alibridge cannot pass to the client"
                    )))
                }
            };
            if client.capabilities.get(needs).is_none() {
                return Err(self.input_error(format!(
                    "the server asked for {} but the client did not declare the {needs:?} \
                     capability, so it was not asked",
                    req.method
                )));
            }
            let id = self.fresh_id("mrtr");
            let params = req
                .params
                .as_ref()
                .map(|p| format!(r#","params":{}"#, p.get()))
                .unwrap_or_default();
            let line = format!(
                r#"{{"jsonrpc":"2.0","id":{},"method":{}{params}}}"#,
                id.as_json(),
                Value::String(req.method.clone())
            );
            let m = Message::parse(Bytes::from(line)).map_err(|e| self.malformed(e.to_string()))?;
            let (tx, rx) = oneshot::channel();
            self.asked.lock().unwrap().insert(id.clone(), tx);
            debug!(%id, method = %req.method, key = %key, "asking the client for input");
            self.out.deliver(m).await;
            waits.push((key.clone(), id, req.method.clone(), rx));
        }
        let ids: Vec<Id> = waits.iter().map(|w| w.1.clone()).collect();
        let _forget = Forget {
            asked: &self.asked,
            ids,
        };
        let mut out = Vec::new();
        for (key, id, method, rx) in waits {
            let answer = rx
                .await
                .map_err(|_| self.input_error("the client's answer never came".into()))?;
            #[derive(Deserialize)]
            struct Answer {
                result: Option<Box<RawValue>>,
                error: Option<Value>,
            }
            let a: Answer = serde_json::from_slice(&answer.bytes)
                .map_err(|e| self.input_error(format!("the client's answer to {id}: {e}")))?;
            match (a.result, a.error) {
                (Some(r), _) => out.push((key, r)),
                (None, e) => {
                    let why = e
                        .as_ref()
                        .and_then(|e| e.get("message"))
                        .and_then(Value::as_str)
                        .unwrap_or("no result");
                    return Err(self
                        .input_error(format!("the client refused the server's {method}: {why}")));
                }
            }
        }
        Ok(out)
    }

    /// POSTs one request and reads its answer (JSON, or SSE with related messages delivered on
    /// the way). A server's JSON-RPC error body for a refused POST is the answer.
    async fn exchange(&self, body: &Bytes, id: &Id) -> Result<Message, UpstreamError> {
        let resp = self.post(body).await?;
        self.answer_from(resp, id).await
    }

    /// Reads the answer to request `id` from its POST's response.
    async fn answer_from(&self, resp: Response, id: &Id) -> Result<Message, UpstreamError> {
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let (snippet, raw) = error_snippet(resp).await;
            if let Ok(m) = Message::parse(single_line(raw)) {
                if m.kind == Kind::Response && m.id.as_ref() == Some(id) {
                    return Ok(m);
                }
            }
            return Err(UpstreamError::Status {
                status,
                url: self.shown.clone(),
                body: snippet,
            });
        }
        if is_event_stream(&resp) {
            return self.read_sse(resp, id).await;
        }
        let raw = match read_body(resp, self.http.max_message_size()).await {
            Ok(b) => b,
            Err(BodyError::TooLarge { size }) => return Err(self.too_large(size)),
            Err(BodyError::Transport(e)) => return Err(self.closed(describe(&e))),
        };
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Err(self.closed("the server accepted the request but sent no answer".into()));
        }
        let m = Message::parse(single_line(raw)).map_err(|e| self.malformed(e.to_string()))?;
        if m.kind == Kind::Response && m.id.as_ref() == Some(id) {
            return Ok(m);
        }
        self.out.deliver(m).await;
        Err(self.closed("the JSON body was not the answer to this request".into()))
    }

    async fn read_sse(&self, resp: Response, id: &Id) -> Result<Message, UpstreamError> {
        let mut events =
            EventStream::new(resp.bytes_stream()).with_limit(self.http.max_message_size());
        let mut malformed = None;
        let detail = loop {
            match events.next().await {
                Some(Ok(ev)) => match parse_event(ev) {
                    Some(Parsed::Message(m))
                        if m.kind == Kind::Response && m.id.as_ref() == Some(id) =>
                    {
                        return Ok(m)
                    }
                    Some(Parsed::Message(m)) => self.out.deliver(m).await,
                    Some(Parsed::Malformed(e)) => {
                        warn!(error = %e, "dropping a malformed message from the SSE stream");
                        malformed = Some(e);
                    }
                    Some(Parsed::TooLarge(t))
                        if t.id.as_ref() == Some(id) || (t.id.is_none() && !t.has_method) =>
                    {
                        return Err(self.too_large(Some(t.size)));
                    }
                    Some(Parsed::TooLarge(t)) => {
                        match dropped(&t, &self.shown, self.http.max_message_size()) {
                            Dropped::AnswerClient(m) => self.out.deliver(m).await,
                            // A modern server takes no responses: nothing to refuse it with.
                            Dropped::RefuseServer(_) | Dropped::Nothing => {}
                        }
                    }
                    None => {}
                },
                Some(Err(e)) => break describe(&e),
                None => break "the stream ended".to_string(),
            }
        };
        match malformed {
            Some(m) => Err(self.malformed(format!("{m} ({detail})"))),
            None => Err(self.closed(format!(
                "{detail}; streams of MCP {MODERN_VERSION} cannot be resumed"
            ))),
        }
    }

    async fn post(&self, body: &Bytes) -> Result<Response, UpstreamError> {
        let hdrs = headers::for_body(body, Some(&self.version), &self.tools);
        self.http
            .send(&self.url, || {
                let mut rb = self
                    .http
                    .client()
                    .post(self.url.clone())
                    .header(ACCEPT, ACCEPT_POST)
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone());
                for (n, v) in &hdrs {
                    rb = rb.header(n, v.clone());
                }
                rb
            })
            .await
    }

    /// (Re)opens the `subscriptions/listen` stream of a translated client with the filter the
    /// server's capabilities and the client's `resources/subscribe` calls allow.
    fn restart_listen(self: &Arc<Self>) {
        let Some(client) = self.translating_for() else {
            return;
        };
        let caps = self
            .discover
            .get("capabilities")
            .cloned()
            .unwrap_or(Value::Null);
        let flag = |area: &str| {
            caps.get(area)
                .and_then(|c| c.get("listChanged"))
                .and_then(Value::as_bool)
                .unwrap_or(false)
        };
        let mut filter = Map::new();
        for (area, key) in [
            ("tools", "toolsListChanged"),
            ("prompts", "promptsListChanged"),
            ("resources", "resourcesListChanged"),
        ] {
            if flag(area) {
                filter.insert(key.into(), Value::Bool(true));
            }
        }
        let subs: Vec<Value> = self
            .subscriptions
            .lock()
            .unwrap()
            .iter()
            .map(|u| Value::String(u.clone()))
            .collect();
        if !subs.is_empty() {
            filter.insert("resourceSubscriptions".into(), Value::Array(subs));
        }
        let token = self.cancel.child_token();
        if let Some(old) = self.listen.lock().unwrap().replace(token.clone()) {
            old.cancel();
        }
        if filter.is_empty() {
            debug!("the server offers no change notifications; no subscriptions/listen stream");
            return;
        }
        let me = self.clone();
        let filter = Value::Object(filter);
        spawn_child(&token, async move { me.run_listen(client, filter).await });
    }

    /// Keeps one `subscriptions/listen` stream open, relaying its change notifications (not
    /// the acknowledgement, which an `initialize`-era client would not know) and reopening it
    /// with back-off when it ends or breaks. Gives up when the server refuses it outright.
    async fn run_listen(self: Arc<Self>, client: Arc<LegacyClient>, filter: Value) {
        let mut backoff = Backoff::new(LISTEN_BACKOFF_BASE, LISTEN_BACKOFF_MAX);
        let mut reopened = false;
        loop {
            let id = self.fresh_id("listen");
            let body = json!({"jsonrpc":"2.0","id": serde_json::from_str::<Value>(id.as_json()).unwrap_or(Value::Null),
                "method":"subscriptions/listen","params":{"_meta": meta_of(&client, &self.version), "notifications": filter}});
            let body = Bytes::from(body.to_string());
            let opened = Instant::now();
            let mut delivered = 0u64;
            match self.post(&body).await {
                Ok(resp) if resp.status().is_success() && is_event_stream(&resp) => {
                    debug!("subscriptions/listen stream open");
                    let mut events = EventStream::new(resp.bytes_stream())
                        .with_limit(self.http.max_message_size());
                    while let Some(Ok(ev)) = events.next().await {
                        match parse_event(ev) {
                            Some(Parsed::Message(m)) if m.kind == Kind::Notification => {
                                if m.method_is("notifications/subscriptions/acknowledged") {
                                    if reopened {
                                        // Changes while the stream was down were missed: have
                                        // the client list again.
                                        self.announce_changes(&filter).await;
                                    }
                                    continue;
                                }
                                delivered += 1;
                                self.out.deliver(m).await;
                            }
                            Some(Parsed::Message(m)) if m.kind == Kind::Response => {
                                if jsonrpc::is_error_response(&m.bytes) {
                                    warn!("the server ended subscriptions/listen with an error; list changes will not be relayed");
                                    return;
                                }
                                debug!("the server closed subscriptions/listen gracefully");
                                break;
                            }
                            _ => {}
                        }
                    }
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if !(resp.status().is_server_error() || matches!(status, 408 | 429)) {
                        let (snippet, _) = error_snippet(resp).await;
                        warn!(status, body = %snippet, "subscriptions/listen refused; list changes will not be relayed");
                        return;
                    }
                }
                Err(e) => debug!(error = %e, "subscriptions/listen failed; will retry"),
            }
            reopened = true;
            let wait = if delivered > 0 || opened.elapsed() >= LISTEN_HEALTHY {
                backoff.reset();
                LISTEN_BACKOFF_BASE
            } else {
                backoff.next_delay()
            };
            debug!(
                ?wait,
                delivered, "subscriptions/listen stream ended; reopening"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// Delivers a `list_changed` notification for every list `filter` subscribes to.
    async fn announce_changes(&self, filter: &Value) {
        for (key, method) in [
            ("toolsListChanged", "notifications/tools/list_changed"),
            ("promptsListChanged", "notifications/prompts/list_changed"),
            (
                "resourcesListChanged",
                "notifications/resources/list_changed",
            ),
        ] {
            if filter.get(key) == Some(&Value::Bool(true)) {
                let line = format!(r#"{{"jsonrpc":"2.0","method":"{method}"}}"#);
                if let Ok(m) = Message::parse(Bytes::from(line)) {
                    self.out.deliver(m).await;
                }
            }
        }
    }

    /// Stops every task of this transport (listen stream, calls in flight).
    pub fn close(&self) {
        self.cancel.cancel();
    }

    fn input_error(&self, detail: String) -> UpstreamError {
        UpstreamError::InputRequired {
            url: self.shown.clone(),
            detail,
        }
    }

    fn too_large(&self, size: Option<u64>) -> UpstreamError {
        UpstreamError::TooLarge {
            url: self.shown.clone(),
            size,
            limit: self.http.max_message_size() as u64,
        }
    }

    fn closed(&self, detail: String) -> UpstreamError {
        UpstreamError::StreamClosed {
            url: self.shown.clone(),
            detail,
        }
    }

    fn malformed(&self, detail: String) -> UpstreamError {
        UpstreamError::Malformed {
            url: self.shown.clone(),
            detail,
        }
    }
}

/// Removes the bridge's requests to the client from the waiting list however the round ends
/// (answered, failed, or the call cancelled), so late answers are dropped.
struct Forget<'a> {
    asked: &'a Mutex<HashMap<Id, oneshot::Sender<Message>>>,
    ids: Vec<Id>,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        let mut asked = self.asked.lock().unwrap();
        for id in &self.ids {
            asked.remove(id);
        }
    }
}

/// True when `answer` is the modern HeaderMismatch error (−32020).
fn is_header_mismatch(answer: &[u8]) -> bool {
    serde_json::from_slice::<Value>(answer)
        .ok()
        .and_then(|v| v.pointer("/error/code")?.as_i64())
        == Some(-32020)
}

/// One `input_required` result: the requests it embeds and the state to echo.
struct InputRound {
    requests: Vec<(String, InputRequest)>,
    /// The exact JSON text of `requestState`, echoed byte for byte.
    request_state: Option<String>,
}

struct InputRequest {
    method: String,
    params: Option<Box<RawValue>>,
}

impl InputRound {
    /// `Some` when `answer` is a result with `resultType: "input_required"`.
    fn read(answer: &[u8]) -> Option<InputRound> {
        #[derive(Deserialize)]
        struct Resp {
            result: Option<Res>,
        }
        #[derive(Deserialize)]
        struct Res {
            #[serde(rename = "resultType")]
            result_type: Option<String>,
            #[serde(rename = "inputRequests", default)]
            input_requests: Option<serde_json::Map<String, Value>>,
            #[serde(rename = "requestState")]
            request_state: Option<Box<RawValue>>,
        }
        let r: Resp = serde_json::from_slice(answer).ok()?;
        let res = r.result?;
        if res.result_type.as_deref() != Some("input_required") {
            return None;
        }
        let mut requests = Vec::new();
        for (key, req) in res.input_requests.unwrap_or_default() {
            let method = req
                .get("method")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let params = req
                .get("params")
                .and_then(|p| RawValue::from_string(p.to_string()).ok());
            requests.push((key, InputRequest { method, params }));
        }
        Some(InputRound {
            requests,
            request_state: res.request_state.map(|r| r.get().to_string()),
        })
    }
}

/// The retry of a request after an `input_required` round: the same request under `id`, with
/// `inputResponses` (the client's results verbatim) and `requestState` (byte for byte, or
/// none when the server sent none).
fn retry_body(
    prev: &[u8],
    id: &Id,
    responses: &[(String, Box<RawValue>)],
    request_state: Option<&str>,
) -> Option<Bytes> {
    let mut msg: Map<String, Value> = serde_json::from_slice(prev).ok()?;
    let mut params = match msg.remove("params") {
        Some(Value::Object(p)) => p,
        None => Map::new(),
        Some(_) => return None,
    };
    params.remove("inputResponses");
    params.remove("requestState");
    msg.insert("id".into(), serde_json::from_str(id.as_json()).ok()?);
    let mut text = serde_json::to_string(&params).ok()?;
    text.pop(); // the closing brace
    let mut sep = if params.is_empty() { "" } else { "," };
    if !responses.is_empty() {
        text.push_str(sep);
        text.push_str(r#""inputResponses":{"#);
        for (i, (k, v)) in responses.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(&serde_json::to_string(k).ok()?);
            text.push(':');
            text.push_str(v.get());
        }
        text.push('}');
        sep = ",";
    }
    if let Some(state) = request_state {
        text.push_str(sep);
        text.push_str(r#""requestState":"#);
        text.push_str(state);
    }
    text.push('}');
    let mut head = serde_json::to_string(&msg).ok()?;
    head.pop();
    let sep = if msg.is_empty() { "" } else { "," };
    Some(Bytes::from(format!(r#"{head}{sep}"params":{text}}}"#)))
}

/// The three envelope keys for a translated client.
fn meta_of(client: &LegacyClient, version: &str) -> Value {
    json!({
        headers::META_PROTOCOL_VERSION: version,
        headers::META_CLIENT_INFO: client.client_info,
        headers::META_CLIENT_CAPABILITIES: client.capabilities,
    })
}

/// The client's request with the envelope keys added to its `_meta` (kept keys, such as
/// `progressToken`, survive; keys the client set itself win). `None` if `params` is not an
/// object.
fn with_meta(bytes: &[u8], client: &LegacyClient, version: &str) -> Option<Bytes> {
    let mut msg: Map<String, Value> = serde_json::from_slice(bytes).ok()?;
    let params = msg
        .entry("params")
        .or_insert_with(|| Value::Object(Map::new()));
    let params = params.as_object_mut()?;
    let meta = params
        .entry("_meta")
        .or_insert_with(|| Value::Object(Map::new()));
    let meta = meta.as_object_mut()?;
    if let Value::Object(envelope) = meta_of(client, version) {
        for (k, v) in envelope {
            meta.entry(k).or_insert(v);
        }
    }
    serde_json::to_vec(&msg).ok().map(Bytes::from)
}

/// `params.requestId` of a `notifications/cancelled`.
fn cancelled_id(bytes: &[u8]) -> Option<Id> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    let id = v.pointer("/params/requestId")?;
    (id.is_string() || id.is_number()).then(|| Id::from_json(&id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> LegacyClient {
        LegacyClient {
            client_info: json!({"name":"c","version":"1"}),
            capabilities: json!({"elicitation":{}}),
        }
    }

    #[test]
    fn meta_is_added_beside_the_clients_own_keys() {
        let b = with_meta(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{"progressToken":"p1"}}}"#,
            &client(),
            "2026-07-28",
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&b).unwrap();
        let meta = &v["params"]["_meta"];
        assert_eq!(meta["progressToken"], "p1");
        assert_eq!(meta[headers::META_PROTOCOL_VERSION], "2026-07-28");
        assert_eq!(meta[headers::META_CLIENT_INFO]["name"], "c");
        assert_eq!(
            meta[headers::META_CLIENT_CAPABILITIES],
            json!({"elicitation":{}})
        );
        let b = with_meta(
            br#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
            &client(),
            "v",
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["params"]["_meta"][headers::META_PROTOCOL_VERSION], "v");
        assert!(with_meta(br#"{"id":3,"method":"x","params":[1]}"#, &client(), "v").is_none());
    }

    #[test]
    fn retry_echoes_state_byte_for_byte_and_responses_verbatim() {
        let answer = br#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"input_required","inputRequests":{"k":{"method":"elicitation/create","params":{"message":"m"}}},"requestState":"a\u00e9\"b"}}"#;
        let round = InputRound::read(answer).unwrap();
        assert_eq!(round.request_state.as_deref(), Some(r#""a\u00e9\"b""#));
        assert_eq!(round.requests[0].1.method, "elicitation/create");
        let prev = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","requestState":"old","_meta":{"progressToken":7}}}"#;
        let resp =
            RawValue::from_string(r#"{"action":"accept","content":{"n":"é"}}"#.into()).unwrap();
        let id = Id::from_json(r#""alibridge-retry-1""#);
        let b = retry_body(
            prev,
            &id,
            &[("k".into(), resp)],
            round.request_state.as_deref(),
        )
        .unwrap();
        let text = std::str::from_utf8(&b).unwrap();
        assert!(text.contains(r#""requestState":"a\u00e9\"b""#), "{text}");
        assert!(
            text.contains(r#""inputResponses":{"k":{"action":"accept","content":{"n":"é"}}}"#),
            "{text}"
        );
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["id"], "alibridge-retry-1");
        assert_eq!(v["params"]["_meta"]["progressToken"], 7);
        assert_eq!(v["params"]["name"], "t");
        // No state from the server: none in the retry.
        let b = retry_body(prev, &id, &[], None).unwrap();
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert!(v["params"].get("requestState").is_none());
        assert!(InputRound::read(br#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#).is_none());
    }

    #[test]
    fn modern_shape_and_versions() {
        let m = |s: &'static str| Message::parse(Bytes::from_static(s.as_bytes())).unwrap();
        assert!(is_modern_shaped(&m(
            r#"{"jsonrpc":"2.0","id":1,"method":"server/discover"}"#
        )));
        assert!(is_modern_shaped(&m(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#
        )));
        assert!(!is_modern_shaped(&m(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"progressToken":1}}}"#
        )));
        assert!(!is_modern_shaped(&m(
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#
        )));
        assert_eq!(
            pick_version(Some(&json!(["2025-11-25", "2026-07-28", "2027-01-01"]))).as_deref(),
            Some("2026-07-28")
        );
        assert_eq!(pick_version(Some(&json!(["2025-11-25"]))), None);
        assert_eq!(
            cancelled_id(br#"{"method":"notifications/cancelled","params":{"requestId":5}}"#),
            Some(Id::from_json("5"))
        );
    }
}
