//! The spans: the MCP operation span (named and attributed per the MCP conventions), the
//! HTTP exchange span, and child spans for everything else that takes time. Parenting goes
//! through OpenTelemetry's ambient [`Context`], which [`super::Operation::scope`] carries
//! across the `await`s of one relay task.

use std::borrow::Cow;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Instant;

use opentelemetry::context::FutureExt;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

use super::instruments::Instruments;
use super::meta;
use super::{Event, Side};
use crate::jsonrpc::{Kind, Message};

/// What the hooks need, set once by [`install`].
struct State {
    tracer: Option<SdkTracer>,
    instruments: Option<Instruments>,
}

static STATE: RwLock<Option<State>> = RwLock::new(None);
/// `server.address` and `server.port` of the upstream; the host is shared, not copied, by
/// every span and histogram point that names it.
static SERVER: OnceLock<RwLock<Option<Server>>> = OnceLock::new();

/// The upstream's host and port.
type Server = (Arc<str>, i64);

pub(super) fn install(traces: Option<&SdkTracerProvider>, metrics: Option<&SdkMeterProvider>) {
    let tracer = traces.map(|t| t.tracer("alibridge"));
    let instruments = metrics.map(Instruments::new);
    *STATE.write().unwrap_or_else(|e| e.into_inner()) = Some(State {
        tracer,
        instruments,
    });
}

/// Stops the hooks (at shutdown, before the providers go).
pub(super) fn clear() {
    *STATE.write().unwrap_or_else(|e| e.into_inner()) = None;
}

pub(super) fn enabled() -> bool {
    STATE.read().map(|s| s.is_some()).unwrap_or(false)
}

/// Runs `f` with the state, when telemetry is on.
fn with_state<T>(f: impl FnOnce(&State) -> Option<T>) -> Option<T> {
    let guard = STATE.read().ok()?;
    f(guard.as_ref()?)
}

pub(super) fn with_instruments(f: impl FnOnce(&Instruments)) {
    with_state(|s| {
        f(s.instruments.as_ref()?);
        Some(())
    });
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
fn interned(text: &str, known: &[&'static str]) -> Cow<'static, str> {
    match known.iter().find(|k| **k == text) {
        Some(k) => Cow::Borrowed(*k),
        None => Cow::Owned(text.to_string()),
    }
}

/// The span of one MCP request or notification, and what its duration metric is recorded
/// with.
pub(super) struct Operation {
    /// The span's context, which also holds the [`Failure`] slot.
    cx: Context,
    started: Instant,
    side: Side,
    /// Low-cardinality attributes shared by the span and the histogram (their string values
    /// static or shared, so the copy for the span costs no string copies).
    common: Vec<KeyValue>,
}

impl Operation {
    pub(super) fn start(msg: &Message, side: Side) -> Option<Operation> {
        if msg.kind == Kind::Response {
            return None;
        }
        let method = msg.method.as_deref()?;
        // Off: nothing is read from the message.
        let tracer = with_state(|s| Some(s.tracer.clone()))?;
        let peek = meta::peek(&msg.bytes);
        let mut common = Vec::with_capacity(9);
        let method_name = interned(method, &METHODS);
        common.push(KeyValue::new("mcp.method.name", method_name.clone()));
        let mut name = method_name;
        let target = match method {
            "tools/call" => Some(("gen_ai.tool.name", true)),
            "prompts/get" => Some(("gen_ai.prompt.name", false)),
            _ => None,
        };
        if let (Some((key, tool)), Some(target)) = (target, &peek.name) {
            let shared: Arc<str> = Arc::from(&**target);
            common.push(KeyValue::new(key, shared));
            if tool {
                common.push(KeyValue::new("gen_ai.operation.name", "execute_tool"));
            }
            name = Cow::Owned(format!("{method} {target}"));
        }
        if let Some(v) = &peek.protocol_version {
            common.push(KeyValue::new("mcp.protocol.version", v.to_string()));
        }
        common.push(KeyValue::new("network.transport", "tcp"));
        common.push(KeyValue::new("network.protocol.name", "http"));
        if side == Side::Sender {
            if let Some((host, port)) = server() {
                common.push(KeyValue::new("server.address", host));
                common.push(KeyValue::new("server.port", port));
            }
        }
        let parent = peek
            .parent
            .as_ref()
            .map(meta::extract)
            .unwrap_or_else(Context::current);
        let parent = parent.with_value(Failure {
            id: msg.id.as_ref().map(|id| id.as_json().to_string()),
            slot: Mutex::default(),
        });
        let cx = match tracer {
            Some(tracer) => {
                let mut attrs = Vec::with_capacity(common.len() + 1);
                attrs.extend_from_slice(&common);
                if let Some(id) = &msg.id {
                    attrs.push(KeyValue::new(
                        "jsonrpc.request.id",
                        request_id(id.as_json()),
                    ));
                }
                let kind = match side {
                    Side::Sender => SpanKind::Client,
                    Side::Receiver => SpanKind::Server,
                };
                let span = tracer
                    .span_builder(name)
                    .with_kind(kind)
                    .with_attributes(attrs)
                    .start_with_context(&tracer, &parent);
                parent.with_span(span)
            }
            None => parent,
        };
        Some(Operation {
            cx,
            started: Instant::now(),
            side,
            common,
        })
    }

    pub(super) fn fail(&self, kind: &str) {
        if let Some(f) = self.cx.get::<Failure>() {
            f.set(kind);
        }
    }

    pub(super) fn failure(&self) -> Option<String> {
        self.cx.get::<Failure>()?.slot.lock().ok()?.clone()
    }

    pub(super) fn context(&self) -> Context {
        self.cx.clone()
    }

    pub(super) fn end(mut self, error: Option<&str>) {
        let span = self.cx.span();
        if let Some(kind) = error {
            span.set_attribute(KeyValue::new("error.type", kind.to_string()));
            span.set_status(Status::error(kind.to_string()));
            self.common
                .push(KeyValue::new("error.type", kind.to_string()));
        }
        span.end();
        let secs = self.started.elapsed().as_secs_f64();
        with_instruments(|i| i.operation(self.side, secs, &self.common));
    }
}

/// Where [`failed`] (or the JSON-RPC error answering the request) leaves the error kind of
/// the operation it runs in.
struct Failure {
    /// The request's id as JSON text (`None` for a notification).
    id: Option<String>,
    /// The context holds the `Failure` behind an `Arc` already: the slot needs no other.
    slot: Mutex<Option<String>>,
}

impl Failure {
    fn set(&self, kind: &str) {
        if let Ok(mut slot) = self.slot.lock() {
            *slot = Some(kind.to_string());
        }
    }
}

pub(super) fn failed(kind: &str) {
    if let Some(f) = Context::current().get::<Failure>() {
        f.set(kind);
    }
}

/// The server's answer to the current operation's request: a JSON-RPC error is its
/// `error.type` and `rpc.response.status_code` (the code), a tool result with `isError` is
/// `tool_error`, as the conventions say. Answers to other requests are not looked at.
pub(super) fn answered(msg: &Message) {
    let cx = Context::current();
    let Some(f) = cx.get::<Failure>() else {
        return;
    };
    if f.id.as_deref() != msg.id.as_ref().map(|i| i.as_json()) {
        return;
    }
    match meta::outcome(&msg.bytes) {
        meta::Outcome::Error(code) => {
            cx.span()
                .set_attribute(KeyValue::new("rpc.response.status_code", code.clone()));
            f.set(&code);
        }
        meta::Outcome::ToolError => f.set("tool_error"),
        meta::Outcome::Ok => {}
    }
}

/// `jsonrpc.request.id`: the id as a string (a string id without its quotes).
fn request_id(json: &str) -> String {
    // A number (the usual id) is its own text: no failed string parse (whose error value is
    // an allocation of its own) for every request.
    if !json.starts_with('"') {
        return json.to_string();
    }
    serde_json::from_str::<String>(json).unwrap_or_else(|_| json.to_string())
}

pub(super) fn inject(msg: Message) -> Message {
    if !enabled() {
        return msg;
    }
    let cx = Context::current();
    if !cx.span().span_context().is_valid() || msg.kind == Kind::Response {
        return msg;
    }
    // Only `params._meta` changed, and it is valid JSON: the kind, id and method stay those
    // already parsed, the message is not parsed again.
    match meta::inject(&msg.bytes, &cx) {
        Some(bytes) => Message { bytes, ..msg },
        None => msg,
    }
}

/// A child span `name` of the current span; `None` without one (a mint the warm-up starts on
/// its own is not a trace of its own).
pub(super) fn child(name: &'static str) -> Option<Context> {
    let tracer = with_state(|s| s.tracer.clone())?;
    let parent = Context::current();
    if !parent.span().span_context().is_valid() {
        return None;
    }
    let span = tracer
        .span_builder(name)
        .with_kind(SpanKind::Internal)
        .start_with_context(&tracer, &parent);
    Some(parent.with_span(span))
}

pub(super) fn traced<F: Future>(name: &'static str, fut: F) -> impl Future<Output = F::Output> {
    let cx = child(name);
    async move {
        match cx {
            Some(cx) => {
                let out = fut.with_context(cx.clone()).await;
                cx.span().end();
                out
            }
            None => fut.await,
        }
    }
}

/// One HTTP exchange with the upstream.
pub(super) struct HttpAttempt {
    cx: Context,
}

impl HttpAttempt {
    pub(super) fn start(method: &str, url: &url::Url, resend: u32) -> Option<HttpAttempt> {
        let tracer = with_state(|s| s.tracer.clone())?;
        let parent = Context::current();
        if !parent.span().span_context().is_valid() {
            return None;
        }
        let method = interned(method, &["POST", "GET", "DELETE"]);
        let mut attrs = Vec::with_capacity(4);
        attrs.push(KeyValue::new("http.request.method", method.clone()));
        if let Some(host) = url.host_str() {
            // The upstream's host (the usual case) is shared with the operation spans.
            let value = match server() {
                Some((known, _)) if *known == *host => Value::from(known),
                _ => Value::from(host.to_string()),
            };
            attrs.push(KeyValue::new("server.address", value));
        }
        if let Some(port) = url.port_or_known_default() {
            attrs.push(KeyValue::new("server.port", i64::from(port)));
        }
        if resend > 0 {
            attrs.push(KeyValue::new(
                "http.request.resend_count",
                i64::from(resend),
            ));
        }
        let span = tracer
            .span_builder(method)
            .with_kind(SpanKind::Client)
            .with_attributes(attrs)
            .start_with_context(&tracer, &parent);
        Some(HttpAttempt {
            cx: parent.with_span(span),
        })
    }

    pub(super) fn end(self, outcome: Result<u16, &str>) {
        let span = self.cx.span();
        match outcome {
            Ok(status) => {
                span.set_attribute(KeyValue::new(
                    "http.response.status_code",
                    i64::from(status),
                ));
                if status >= 400 {
                    span.set_attribute(KeyValue::new("error.type", status.to_string()));
                    span.set_status(Status::error(status.to_string()));
                }
            }
            Err(kind) => {
                span.set_attribute(KeyValue::new("error.type", kind.to_string()));
                span.set_status(Status::error(kind.to_string()));
            }
        }
        span.end();
    }
}

pub(super) fn set_attribute(key: &'static str, value: &'static str) {
    if enabled() {
        Context::current()
            .span()
            .set_attribute(KeyValue::new(key, value));
    }
}

pub(super) fn refused(tool: &str, rule: &str) {
    if !enabled() {
        return;
    }
    let cx = Context::current();
    let span = cx.span();
    span.set_attribute(KeyValue::new("alibridge.policy.decision", "deny"));
    span.set_attribute(KeyValue::new("alibridge.policy.rule", rule.to_string()));
    failed("policy_refused");
    with_instruments(|i| i.refusal(tool, rule));
}

/// Counts one event, when metrics are on.
pub(super) fn count(event: Event) {
    with_instruments(|i| i.count(event));
}
