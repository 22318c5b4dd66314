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
use opentelemetry::{Context, KeyValue};
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
/// `server.address` and `server.port` of the upstream.
static SERVER: OnceLock<RwLock<Option<(String, i64)>>> = OnceLock::new();

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
    *cell.write().unwrap_or_else(|e| e.into_inner()) = Some((host.to_string(), port.into()));
}

fn server() -> Option<(String, i64)> {
    SERVER.get()?.read().ok()?.clone()
}

/// The span of one MCP request or notification, and what its duration metric is recorded
/// with.
pub(super) struct Operation {
    /// The span's context, which also holds the [`Failure`] slot.
    cx: Context,
    started: Instant,
    side: Side,
    /// Low-cardinality attributes shared by the span and the histogram.
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
        let mut common = vec![KeyValue::new("mcp.method.name", method.to_string())];
        let mut name = Cow::Borrowed(method);
        if let Some(target) = &peek.name {
            match method {
                "tools/call" => {
                    common.push(KeyValue::new("gen_ai.tool.name", target.clone()));
                    common.push(KeyValue::new("gen_ai.operation.name", "execute_tool"));
                    name = Cow::Owned(format!("{method} {target}"));
                }
                "prompts/get" => {
                    common.push(KeyValue::new("gen_ai.prompt.name", target.clone()));
                    name = Cow::Owned(format!("{method} {target}"));
                }
                _ => {}
            }
        }
        if let Some(v) = &peek.protocol_version {
            common.push(KeyValue::new("mcp.protocol.version", v.clone()));
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
            slot: Arc::default(),
        });
        let cx = match tracer {
            Some(tracer) => {
                let mut attrs = common.clone();
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
                    .span_builder(name.into_owned())
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
    slot: Arc<Mutex<Option<String>>>,
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
    match serde_json::from_str::<String>(json) {
        Ok(s) => s,
        Err(_) => json.to_string(),
    }
}

pub(super) fn inject(msg: Message) -> Message {
    if !enabled() {
        return msg;
    }
    let cx = Context::current();
    if !cx.span().span_context().is_valid() || msg.kind == Kind::Response {
        return msg;
    }
    match meta::inject(&msg.bytes, &cx).map(Message::parse) {
        Some(Ok(m)) => m,
        _ => msg,
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
        let mut attrs = vec![KeyValue::new("http.request.method", method.to_string())];
        if let Some(host) = url.host_str() {
            attrs.push(KeyValue::new("server.address", host.to_string()));
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
            .span_builder(method.to_string())
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
