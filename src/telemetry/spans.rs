//! The spans the hooks make: the MCP operation span (named and attributed per the MCP
//! conventions), the HTTP exchange span, and child spans for everything else that takes time.
//! Parenting goes through the task's current [`Scope`], which [`super::Operation::scope`]
//! carries across the `await`s of one relay task.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Instant;

use super::context::{self, Sampler, Scope, Scoped, Shared, Span, SpanContext};
use super::instruments::Instruments;
use super::meta;
use super::record::{self, Attribute, SpanKind, Text, Value};
use super::{Event, Side};
use crate::jsonrpc::{Kind, Message};

/// What the hooks need, set once by [`install`].
struct State {
    /// Traces are exported (else only the metrics are kept).
    traces: bool,
    sampler: Sampler,
    instruments: Option<Arc<Instruments>>,
}

static STATE: RwLock<Option<State>> = RwLock::new(None);
/// `server.address` and `server.port` of the upstream; the host is shared, not copied, by
/// every span and histogram point that names it.
static SERVER: OnceLock<RwLock<Option<Server>>> = OnceLock::new();

/// The upstream's host and port.
type Server = (Arc<str>, i64);

/// `mcp.session.id` of the bridge's upstream session, hashed ([`session_hash`]).
static SESSION: RwLock<Option<Arc<str>>> = RwLock::new(None);

pub(super) fn set_session(id: Option<&str>) {
    let hashed = id.map(|id| Arc::from(session_hash(id)));
    *SESSION.write().unwrap_or_else(|e| e.into_inner()) = hashed;
}

/// What `mcp.session.id` holds: the first 16 hex digits of the SHA-256 of the session id.
/// The id itself lets whoever holds it speak in the session, so it is never exported; the
/// hash still ties a session's spans together.
pub(super) fn session_hash(id: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, id.as_bytes());
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `STATE` is set: what every hook reads first, so that off costs one load, not a
/// lock.
static ON: AtomicBool = AtomicBool::new(false);

pub(super) fn install(traces: bool, sampler: Sampler, instruments: Option<Arc<Instruments>>) {
    *STATE.write().unwrap_or_else(|e| e.into_inner()) = Some(State {
        traces,
        sampler,
        instruments,
    });
    ON.store(true, Ordering::Release);
}

/// Stops the hooks (at shutdown, before the last export).
pub(super) fn clear() {
    ON.store(false, Ordering::Release);
    *STATE.write().unwrap_or_else(|e| e.into_inner()) = None;
}

pub(super) fn enabled() -> bool {
    ON.load(Ordering::Acquire) && STATE.read().map(|s| s.is_some()).unwrap_or(false)
}

/// Runs `f` with the state, when telemetry is on.
fn with_state<T>(f: impl FnOnce(&State) -> Option<T>) -> Option<T> {
    if !ON.load(Ordering::Acquire) {
        return None;
    }
    let guard = STATE.read().ok()?;
    f(guard.as_ref()?)
}

fn with_instruments(f: impl FnOnce(&Instruments)) {
    with_state(|s| {
        f(s.instruments.as_deref()?);
        Some(())
    });
}

/// The sampler, when traces are on.
fn tracing_on() -> Option<Sampler> {
    with_state(|s| s.traces.then_some(s.sampler))
}

pub(super) fn set_server(url: &url::Url) {
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return;
    };
    let cell = SERVER.get_or_init(|| RwLock::new(None));
    *cell.write().unwrap_or_else(|e| e.into_inner()) = Some((host.into(), port.into()));
}

fn server() -> Option<Server> {
    SERVER.get()?.read().ok()?.clone()
}

/// The MCP methods, so that `mcp.method.name` of the usual messages is a static string
/// rather than a copy per span.
const METHODS: [&str; 26] = [
    "tools/call",
    "tools/list",
    "initialize",
    "ping",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/message",
    "notifications/roots/list_changed",
    "notifications/tools/list_changed",
    "notifications/prompts/list_changed",
    "notifications/resources/list_changed",
    "notifications/resources/updated",
    "prompts/get",
    "prompts/list",
    "resources/read",
    "resources/list",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "logging/setLevel",
    "sampling/createMessage",
    "elicitation/create",
    "roots/list",
    "server/discover",
];

/// `text` as a span name or attribute value: one of `known` without a copy, else a copy.
fn interned(text: &str, known: &[&'static str]) -> Text {
    match known.iter().find(|k| **k == text) {
        Some(k) => Text::Static(k),
        None => Text::from(text.to_string()),
    }
}

/// The span of one MCP request or notification, and what its duration metric is recorded
/// with.
pub(super) struct Operation {
    scope: Scope,
    /// Where trace context goes in the message the operation started with.
    site: Option<meta::Site>,
    started: Instant,
    side: Side,
    /// The low-cardinality attributes the duration histogram is recorded with: the first
    /// `common` of the span's own (read from the span at the end, not copied), or these when
    /// no span records them (traces off or not sampled).
    common: usize,
    unrecorded: Vec<Attribute>,
}

impl Operation {
    /// `session` is the hashed session id of a request the proxy received (the bridge's own
    /// comes from [`set_session`]).
    pub(super) fn start(msg: &Message, side: Side, session: Option<String>) -> Option<Operation> {
        if msg.kind == Kind::Response {
            return None;
        }
        let method = msg.method.as_deref()?;
        // Off: nothing is read from the message.
        let sampler = with_state(|s| Some(s.traces.then_some(s.sampler)))?;
        let peek = meta::peek(&msg.bytes, msg.params.clone());
        let mut attrs = record::attributes();
        let method_name = interned(method, &METHODS);
        attrs.push(Attribute::new("mcp.method.name", method_name.clone()));
        let mut name = method_name;
        let target = match method {
            "tools/call" => Some(("gen_ai.tool.name", true)),
            "prompts/get" => Some(("gen_ai.prompt.name", false)),
            _ => None,
        };
        if let (Some((key, tool)), Some(target)) = (target, &peek.name) {
            attrs.push(Attribute::new(key, Text::copy(target)));
            if tool {
                attrs.push(Attribute::new("gen_ai.operation.name", "execute_tool"));
            }
            name = Text::joined(&[method, " ", target]);
        }
        if let Some(v) = &peek.protocol_version {
            attrs.push(Attribute::new("mcp.protocol.version", Text::copy(v)));
        }
        attrs.push(Attribute::new("network.transport", "tcp"));
        attrs.push(Attribute::new("network.protocol.name", "http"));
        if side == Side::Sender {
            if let Some((host, port)) = server() {
                attrs.push(Attribute::new("server.address", Text::Shared(host)));
                attrs.push(Attribute::new("server.port", port));
            }
        }
        let common = attrs.len();
        let span = sampler.map(|sampler| {
            let remote = peek
                .parent
                .as_ref()
                .and_then(|c| SpanContext::parse(&c.traceparent, c.tracestate.as_deref()));
            let parent = remote.or_else(|| {
                context::with_current(|s| s.current_span().map(|p| p.context().clone())).flatten()
            });
            (sampler, parent)
        });
        // A span that is not sampled records nothing, but its context still goes upstream
        // (flags `00`), as W3C Trace Context says.
        let span = span.map(|(sampler, parent)| {
            Span::start(sampler, parent.as_ref(), name, kind_of(side), Vec::new())
        });
        let mut unrecorded = Vec::new();
        match &span {
            Some(span) if span.is_recording() => {
                if let Some(id) = &msg.id {
                    attrs.push(Attribute::new(
                        "jsonrpc.request.id",
                        request_id(id.as_json()),
                    ));
                }
                let session = match session {
                    Some(hashed) => Some(Text::from(hashed)),
                    None if side == Side::Sender => SESSION
                        .read()
                        .ok()
                        .and_then(|s| s.clone())
                        .map(Text::Shared),
                    None => None,
                };
                if let Some(session) = session {
                    attrs.push(Attribute::new("mcp.session.id", session));
                }
                span.set_all(attrs);
            }
            _ => unrecorded = attrs,
        }
        Some(Operation {
            scope: Scope {
                span: None,
                shared: Some(Arc::new(Shared {
                    id: msg.id.as_ref().map(|id| Text::copy(id.as_json())),
                    failure: Mutex::default(),
                    span,
                })),
            },
            site: peek.site,
            started: Instant::now(),
            side,
            common,
            unrecorded,
        })
    }

    pub(super) fn fail(&self, kind: &'static str) {
        if let Some(o) = &self.scope.shared {
            o.set(Text::Static(kind));
        }
    }

    pub(super) fn failure(&self) -> Option<Text> {
        self.scope.shared.as_ref()?.get()
    }

    pub(super) fn scope(&self) -> Scope {
        self.scope.clone()
    }

    /// `bytes` (the message this operation started with: where to write was found in it)
    /// with the trace context in `params._meta`, and where `params` now is; `None` when
    /// there is nothing to write or nowhere to write it.
    pub(super) fn inject(&self, bytes: &[u8]) -> Option<(bytes::Bytes, std::ops::Range<usize>)> {
        let cx = self.scope.current_span()?.context();
        let tracestate = cx.trace_state.as_deref().unwrap_or("");
        meta::inject(bytes, self.site?, &cx.traceparent_bytes(), tracestate)
    }

    pub(super) fn end(self, error: Option<Text>) {
        let span = self.scope.current_span();
        if let (Some(kind), Some(span)) = (&error, span) {
            span.fail(kind.clone());
        }
        let error = error.map(|kind| Attribute::new("error.type", kind));
        let secs = self.started.elapsed().as_secs_f64();
        with_instruments(|i| {
            let record = |attrs: &[Attribute]| {
                let common = attrs.get(..self.common).unwrap_or(attrs);
                i.operation(self.side, secs, common, error.as_ref());
            };
            if span.and_then(|s| s.read_attributes(record)).is_none() {
                record(&self.unrecorded);
            }
        });
        if let Some(span) = span {
            span.end();
        }
        record::recycle(self.unrecorded);
    }
}

/// The span kind of an operation on `side`.
fn kind_of(side: Side) -> SpanKind {
    match side {
        Side::Sender => SpanKind::Client,
        Side::Receiver => SpanKind::Server,
    }
}

pub(super) fn failed(kind: &'static str) {
    context::with_current(|s| {
        if let Some(o) = &s.shared {
            o.set(Text::Static(kind));
        }
    });
}

/// The server's answer to the current operation's request: a JSON-RPC error is its
/// `error.type` and `rpc.response.status_code` (the code), a tool result with `isError` is
/// `tool_error`, as the conventions say. Answers to other requests are not looked at.
pub(super) fn answered(msg: &Message) {
    context::with_current(|s| {
        let Some(o) = &s.shared else {
            return;
        };
        // Bytes against bytes: the id's text is not checked as UTF-8 again for every answer.
        if o.id.as_ref().map(Text::as_bytes) != msg.id.as_ref().map(|i| i.as_json().as_bytes()) {
            return;
        }
        match meta::outcome(&msg.bytes) {
            meta::Outcome::Error(code) => {
                let code = Text::from(code);
                if let Some(span) = s.current_span() {
                    span.set(Attribute::new("rpc.response.status_code", code.clone()));
                }
                o.set(code);
            }
            meta::Outcome::ToolError => o.set(Text::Static("tool_error")),
            meta::Outcome::Ok => {}
        }
    });
}

/// `jsonrpc.request.id`: the id as a string (a string id without its quotes).
fn request_id(json: &str) -> Text {
    // A number (the usual id) is its own text: no failed string parse (whose error value is
    // an allocation of its own) for every request.
    if !json.starts_with('"') {
        return Text::copy(json);
    }
    match serde_json::from_str::<&str>(json) {
        Ok(s) => Text::copy(s),
        Err(_) => {
            serde_json::from_str::<String>(json).map_or_else(|_| Text::copy(json), Text::from)
        }
    }
}

/// A child span `name` of the current span (in the same operation); `None` without one (a
/// mint the warm-up starts on its own is not a trace of its own).
fn child_with(name: Text, kind: SpanKind, attrs: Vec<Attribute>) -> Option<Scope> {
    let sampler = tracing_on()?;
    context::with_current(|s| {
        let parent = s.current_span()?;
        Some(Scope {
            span: Some(Arc::new(Span::start(
                sampler,
                Some(parent.context()),
                name,
                kind,
                attrs,
            ))),
            shared: s.shared.clone(),
        })
    })
    .flatten()
}

pub(super) fn child(name: &'static str) -> Option<Scope> {
    child_with(Text::Static(name), SpanKind::Internal, Vec::new())
}

pub(super) fn traced<F: Future>(name: &'static str, fut: F) -> impl Future<Output = F::Output> {
    let scope = child(name);
    async move {
        match scope {
            Some(scope) => {
                let span = scope.span.clone();
                let out = Scoped::new(Some(scope), fut).await;
                if let Some(span) = span {
                    span.end();
                }
                out
            }
            None => fut.await,
        }
    }
}

/// One HTTP exchange with the upstream. Its span is never current (nothing starts inside
/// it), so the attempt owns it.
pub(super) struct HttpAttempt {
    span: Span,
}

impl HttpAttempt {
    pub(super) fn start(method: &str, url: &url::Url, resend: u32) -> Option<HttpAttempt> {
        // Off, or no operation to belong to: nothing is built.
        let sampler = tracing_on()?;
        let parent = context::with_current(|s| Some(s.current_span()?.context().clone()))??;
        let method = interned(method, &["POST", "GET", "DELETE"]);
        // Room for the status code and an error type set at the end.
        let mut attrs = record::attributes();
        attrs.push(Attribute::new("http.request.method", method.clone()));
        if let Some(host) = url.host_str() {
            // The upstream's host (the usual case) is shared with the operation spans.
            let value = match server() {
                Some((known, _)) if *known == *host => Text::Shared(known),
                _ => Text::from(host.to_string()),
            };
            attrs.push(Attribute::new("server.address", value));
        }
        if let Some(port) = url.port_or_known_default() {
            attrs.push(Attribute::new("server.port", i64::from(port)));
        }
        if resend > 0 {
            attrs.push(Attribute::new(
                "http.request.resend_count",
                i64::from(resend),
            ));
        }
        let span = Span::start(sampler, Some(&parent), method, SpanKind::Client, attrs);
        Some(HttpAttempt { span })
    }

    pub(super) fn end(self, outcome: Result<u16, &str>) {
        match outcome {
            Ok(status) => {
                self.span.set(Attribute::new(
                    "http.response.status_code",
                    i64::from(status),
                ));
                if status >= 400 {
                    self.span.fail(Text::from(status.to_string()));
                }
            }
            Err(kind) => self.span.fail(Text::from(kind.to_string())),
        }
        self.span.end();
    }
}

pub(super) fn set_attribute(key: &'static str, value: &'static str) {
    context::with_current(|s| {
        if let Some(span) = s.current_span() {
            span.set(Attribute::new(key, Value::from(value)));
        }
    });
}

pub(super) fn api_actions(labels: impl IntoIterator<Item = String>) {
    // `product:Action` (or `Action`, `plan`): an argument-borne text of another shape is not
    // exported.
    let shaped = |l: &String| {
        !l.is_empty()
            && l.len() <= 128
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b":_-.".contains(&b))
    };
    let labels: Vec<String> = labels.into_iter().filter(shaped).take(16).collect();
    if labels.is_empty() {
        return;
    }
    context::with_current(|s| {
        if let Some(span) = s.current_span() {
            span.set(Attribute::new(
                "alibridge.api.action",
                Text::from(labels.join(",")),
            ));
        }
    });
}

pub(super) fn refused(tool: &str, rule: &str) {
    if !enabled() {
        return;
    }
    context::with_current(|s| {
        if let Some(span) = s.current_span() {
            span.set(Attribute::new("alibridge.policy.decision", "deny"));
            span.set(Attribute::new(
                "alibridge.policy.rule",
                Text::from(rule.to_string()),
            ));
        }
    });
    failed("policy_refused");
    with_instruments(|i| i.refusal(tool, rule));
}

/// Counts one event, when metrics are on.
pub(super) fn count(event: Event) {
    with_instruments(|i| i.count(event));
}
