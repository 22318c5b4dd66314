//! OpenTelemetry traces and metrics (issue 23): setup from `--otlp-endpoint` and the standard
//! `OTEL_*` variables, the export off the relay path, the metric instruments, and the small
//! hooks the relay, the proxy, the upstream and the credentials call. See
//! `docs/observability.md` for what is exported.
//!
//! Off by default and then free: every hook first reads one global that [`start`] sets only
//! when a collector is configured, and returns. In a build without the `otel` cargo feature
//! the hooks are empty functions.
//!
//! Names follow the OpenTelemetry semantic conventions for MCP (`mcp.method.name`,
//! `jsonrpc.request.id`, `gen_ai.tool.name`, the `mcp.client.operation.duration` and
//! `mcp.server.operation.duration` histograms, trace context in `params._meta`).
//!
//! **Never exported**: argument values, results, tokens, header values, session ids in clear
//! (only a short hash), URLs' paths and queries. Attributes are tool names, method names,
//! API actions, policy rules, hosts and ports, status codes and error kinds.
//!
//! alibridge records and exports these itself (no OpenTelemetry SDK): a span is one small
//! allocation that ends into a bounded queue, and one export thread encodes OTLP/HTTP
//! (protobuf or JSON) straight from it; docs/observability.md "What it costs" says why.
//!
//! Layout: [`config`] (the flag and the `OTEL_*` variables), [`setup`] (start and stop),
//! [`context`] (ids, `traceparent`, the current span of a task, the sampler), `spans` (the
//! span helpers the hooks use), [`meta`] (trace context in `params._meta`), [`instruments`]
//! (metrics), [`record`] (what is exported, as data), [`otlp`] (its encoding) and
//! [`export`] (the queue and the export thread).

pub mod config;
#[cfg(feature = "otel")]
pub mod context;
#[cfg(feature = "otel")]
pub mod export;
#[cfg(feature = "otel")]
pub mod instruments;
#[cfg(feature = "otel")]
pub mod meta;
#[cfg(feature = "otel")]
pub mod otlp;
#[cfg(feature = "otel")]
pub mod record;
#[cfg(feature = "otel")]
pub mod setup;
#[cfg(feature = "otel")]
mod spans;

/// Which end of the message the process is.
#[cfg(feature = "otel")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// It sends the request or notification and waits for the answer (CLIENT span).
    Sender,
    /// It received it (SERVER span): the proxy, or the bridge for the server's own messages.
    Receiver,
}

use std::future::Future;

use crate::jsonrpc::Message;

/// Which side of the wire the process is: sets the span kinds and the default service name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `alibridge <URL>`: an MCP client of the server (CLIENT spans).
    Bridge,
    /// `alibridge proxy`: receives MCP requests and forwards them (SERVER spans).
    Proxy,
}

/// Keeps telemetry running; dropping it exports what is queued (bounded wait) and stops.
#[must_use = "telemetry stops when the guard is dropped"]
pub struct Guard {
    #[cfg(feature = "otel")]
    inner: Option<setup::Running>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(r) = self.inner.take() {
            r.stop();
        }
    }
}

/// Starts telemetry when `--otlp-endpoint` (`flag`) or the standard variables name a
/// collector; otherwise (and with `OTEL_SDK_DISABLED=true`) does nothing. A configuration
/// that cannot be used is reported in one warning line and telemetry stays off: the bridge
/// never fails to start because of it.
pub fn start(flag: Option<&str>, role: Role) -> Guard {
    #[cfg(feature = "otel")]
    {
        Guard {
            inner: setup::start(flag, role, &|k| std::env::var(k).ok()),
        }
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = (flag, role);
        Guard {}
    }
}

/// The OTLP/HTTP traces endpoint telemetry would export to (`--otlp-endpoint` `flag`, else
/// the `OTEL_*` variables read through `env`), with its protocol and headers; `None` when none
/// is configured or `OTEL_SDK_DISABLED=true`. For `alibridge doctor`.
pub fn traces_endpoint(
    flag: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<config::Signal> {
    config::read(flag, env)?.traces
}

/// The upstream every later span names in `server.address`/`server.port`.
pub fn set_server(url: &url::Url) {
    #[cfg(feature = "otel")]
    spans::set_server(url);
    #[cfg(not(feature = "otel"))]
    let _ = url;
}

/// The bridge's upstream session changed (`None`: it has none): later spans carry its
/// hash as `mcp.session.id`.
pub fn set_session(id: Option<&str>) {
    #[cfg(feature = "otel")]
    spans::set_session(id);
    #[cfg(not(feature = "otel"))]
    let _ = id;
}

/// One MCP operation being traced: a client request or notification the bridge relays (CLIENT
/// span), or one the proxy receives (SERVER span). Inert when telemetry is off. Dropping it
/// ends it (with the error a [`failed`] call or [`Self::fail`] left, if any).
pub struct Operation {
    #[cfg(feature = "otel")]
    inner: Option<spans::Operation>,
}

impl Operation {
    /// Starts the span of `msg` (a request or notification; `None` for responses), continuing
    /// the trace of a `traceparent` the sender put in `params._meta`.
    pub fn start(msg: &Message, role: Role) -> Operation {
        #[cfg(feature = "otel")]
        {
            let side = match role {
                Role::Bridge => Side::Sender,
                Role::Proxy => Side::Receiver,
            };
            Operation {
                inner: spans::Operation::start(msg, side, None),
            }
        }
        #[cfg(not(feature = "otel"))]
        {
            let _ = (msg, role);
            Operation {}
        }
    }

    /// The proxy's SERVER span of a request body it is about to forward in the client's
    /// `session` (`body` is read only when telemetry is on and it is one JSON-RPC message).
    pub fn received(body: &bytes::Bytes, session: Option<&str>) -> Operation {
        #[cfg(feature = "otel")]
        {
            let msg = enabled()
                .then(|| Message::parse(body.clone()).ok())
                .flatten();
            let session = session.map(spans::session_hash);
            Operation {
                inner: msg.and_then(|m| spans::Operation::start(&m, Side::Receiver, session)),
            }
        }
        #[cfg(not(feature = "otel"))]
        {
            let _ = (body, session);
            Operation {}
        }
    }

    /// A message from the server, as the bridge hands it to the client: its request or
    /// notification is a SERVER span (the bridge receives it) until it is written; a response
    /// gives the current request span its JSON-RPC error code or `tool_error`.
    pub fn delivered(msg: &Message) -> Operation {
        #[cfg(feature = "otel")]
        {
            if msg.kind == crate::jsonrpc::Kind::Response {
                if enabled() {
                    spans::answered(msg);
                }
                return Operation { inner: None };
            }
            Operation {
                inner: spans::Operation::start(msg, Side::Receiver, None),
            }
        }
        #[cfg(not(feature = "otel"))]
        {
            let _ = msg;
            Operation {}
        }
    }

    /// `body` (the request this operation started with) with this operation's trace context
    /// in `params._meta`: the proxy forwards it.
    pub fn inject(&self, body: bytes::Bytes) -> bytes::Bytes {
        #[cfg(feature = "otel")]
        if let Some(op) = &self.inner {
            return op.inject(&body).map_or(body, |(bytes, _)| bytes);
        }
        body
    }

    /// `msg` (the message this operation started with) with this operation's trace context
    /// in `params._meta`, as the conventions say; `msg` itself when telemetry is off or
    /// `params` is not an object. Only `params._meta` changes, and it is valid JSON: the
    /// kind, id and method stay those already parsed, the message is not parsed again.
    pub fn inject_message(&self, msg: Message) -> Message {
        #[cfg(feature = "otel")]
        if let Some((bytes, params)) = self.inner.as_ref().and_then(|op| op.inject(&msg.bytes)) {
            return Message {
                bytes,
                params: Some(params),
                ..msg
            };
        }
        msg
    }

    /// Whether there is a span (telemetry is on and this is a request or notification).
    pub fn is_recording(&self) -> bool {
        #[cfg(feature = "otel")]
        {
            self.inner.is_some()
        }
        #[cfg(not(feature = "otel"))]
        {
            false
        }
    }

    /// Runs `f` (synchronous work such as the proxy's policy check) as this operation, so
    /// what it records lands on this operation's span.
    pub fn in_scope<T>(&self, f: impl FnOnce() -> T) -> T {
        #[cfg(feature = "otel")]
        if let Some(op) = &self.inner {
            return context::in_scope(op.scope(), f);
        }
        f()
    }

    /// This operation failed with the error kind `kind`.
    pub fn fail(&self, kind: &'static str) {
        #[cfg(feature = "otel")]
        if let Some(op) = &self.inner {
            op.fail(kind);
        }
        #[cfg(not(feature = "otel"))]
        let _ = kind;
    }

    /// Runs `fut` with this operation's span as the current one, so the hooks called inside
    /// (HTTP exchanges, token mints, the confirmation) become its children.
    pub fn scope<F: Future>(&self, fut: F) -> impl Future<Output = F::Output> {
        #[cfg(feature = "otel")]
        {
            // Off (or a response): the future is polled as it is.
            context::Scoped::new(self.inner.as_ref().map(spans::Operation::scope), fut)
        }
        #[cfg(not(feature = "otel"))]
        {
            fut
        }
    }

    /// Runs `fut` as this operation ([`Self::scope`]) and ends the span when it is done; a
    /// [`failed`] call inside gives the error.
    ///
    /// `fut` is a relay task (kilobytes of state): it is wrapped where it lies, not moved
    /// through an `async` block, whose first poll would copy it again — every call paid
    /// three copies of it for this wrapper, telemetry on or off.
    pub fn run<F: Future<Output = ()>>(self, fut: F) -> impl Future<Output = ()> {
        #[cfg(feature = "otel")]
        {
            Run {
                work: context::Scoped::new(self.inner.as_ref().map(spans::Operation::scope), fut),
                op: Some(self),
            }
        }
        #[cfg(not(feature = "otel"))]
        {
            let _ = self;
            fut
        }
    }

    /// Ends the span and records the duration histogram; `error` is the error kind (a short
    /// fixed word such as `timeout`), `None` on success.
    pub fn end(mut self, error: Option<&str>) {
        #[cfg(feature = "otel")]
        if let Some(op) = self.inner.take() {
            op.end(error.map(|e| record::Text::from(e.to_string())));
        }
        #[cfg(not(feature = "otel"))]
        let _ = (&mut self, error);
    }
}

#[cfg(feature = "otel")]
pin_project_lite::pin_project! {
    /// [`Operation::run`]'s future: the work in the operation's scope, then the operation's
    /// end, as soon as the work is done.
    struct Run<F> {
        #[pin]
        work: context::Scoped<F>,
        op: Option<Operation>,
    }
}

#[cfg(feature = "otel")]
impl<F: Future<Output = ()>> Future for Run<F> {
    type Output = ();

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        let this = self.project();
        std::task::ready!(this.work.poll(cx));
        drop(this.op.take());
        std::task::Poll::Ready(())
    }
}

impl Drop for Operation {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(op) = self.inner.take() {
            let failure = op.failure();
            op.end(failure);
        }
    }
}

/// The current operation ended with the error kind `error` (`None`: it did not fail).
pub fn failed(error: Option<&'static str>) {
    #[cfg(feature = "otel")]
    if let Some(kind) = error {
        spans::failed(kind);
    }
    #[cfg(not(feature = "otel"))]
    let _ = error;
}

/// Runs `fut` inside a child span `name` of the current span (`alibridge.access_key.mint`,
/// `alibridge.oauth.refresh`, `alibridge.era_probe`, `alibridge.confirmation`, …).
pub fn traced<F: Future>(name: &'static str, fut: F) -> impl Future<Output = F::Output> {
    #[cfg(feature = "otel")]
    {
        spans::traced(name, fut)
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = name;
        fut
    }
}

/// A span around synchronous work (a pin check), child of the current span; ended on drop.
#[must_use = "the span ends when this is dropped"]
pub struct Child {
    #[cfg(feature = "otel")]
    scope: Option<context::Scope>,
}

impl Child {
    pub fn start(name: &'static str) -> Child {
        #[cfg(feature = "otel")]
        {
            Child {
                scope: spans::child(name),
            }
        }
        #[cfg(not(feature = "otel"))]
        {
            let _ = name;
            Child {}
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(span) = self.scope.take().and_then(|s| s.span) {
            span.end();
        }
    }
}

/// One HTTP exchange with the upstream (one attempt: retries and replays get one each).
pub struct HttpAttempt {
    #[cfg(feature = "otel")]
    inner: Option<spans::HttpAttempt>,
}

impl HttpAttempt {
    /// Starts the span of attempt number `resend` (0 for the first) of a `method` request to
    /// `url` (only its host and port are recorded).
    pub fn start(method: &str, url: &url::Url, resend: u32) -> HttpAttempt {
        #[cfg(feature = "otel")]
        {
            HttpAttempt {
                inner: spans::HttpAttempt::start(method, url, resend),
            }
        }
        #[cfg(not(feature = "otel"))]
        {
            let _ = (method, url, resend);
            HttpAttempt {}
        }
    }

    /// Ends the span with the response status (`Ok`) or an error kind (`Err`).
    pub fn end(self, outcome: Result<u16, &str>) {
        #[cfg(feature = "otel")]
        if let Some(a) = self.inner {
            a.end(outcome);
        }
        #[cfg(not(feature = "otel"))]
        let _ = outcome;
    }
}

/// What the tool policy decided for the current call (`allow`, `deny`, `confirmed`,
/// `declined`, …): an attribute of the current span.
pub fn decision(decision: &'static str) {
    #[cfg(feature = "otel")]
    spans::set_attribute("alibridge.policy.decision", decision);
    #[cfg(not(feature = "otel"))]
    let _ = decision;
}

/// The Alibaba Cloud API actions the current call runs, as the policy parsed them
/// (`ecs:DescribeInstances`; CallCLI's command included): the span's `alibridge.api.action`,
/// comma-separated. Labels that are not shaped like API names are left out: they come from
/// the agent's arguments. Consumed only when telemetry is on.
pub fn api_actions(labels: impl IntoIterator<Item = String>) {
    #[cfg(feature = "otel")]
    if enabled() {
        spans::api_actions(labels);
    }
    #[cfg(not(feature = "otel"))]
    let _ = labels;
}

/// A call the policy refused under `rule` (a rule name, e.g. `read_only`): the current span's
/// decision and error, and the refusal counter.
pub fn refused(tool: &str, rule: &str) {
    #[cfg(feature = "otel")]
    spans::refused(tool, rule);
    #[cfg(not(feature = "otel"))]
    let _ = (tool, rule);
}

/// Things counted (see [`instruments`] for the metric names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// An Alibaba Cloud AccessKey exchanged for a bearer token.
    TokenMint,
    /// An OAuth access token renewed with a refresh token (a sign-in is not one).
    TokenRefresh,
    /// The upstream's event stream reconnected.
    Reconnect,
    /// A reconnect that resumed the stream with `Last-Event-ID`.
    Resumption,
    /// A message over `--max-message-size`, dropped.
    Oversized,
    /// The person confirmed a write.
    ConfirmAccepted,
    /// The person declined (or cancelled) a write.
    ConfirmDeclined,
    /// Nobody answered the confirmation in time.
    ConfirmTimedOut,
}

/// Counts one `event`.
pub fn count(event: Event) {
    #[cfg(feature = "otel")]
    spans::count(event);
    #[cfg(not(feature = "otel"))]
    let _ = event;
}

/// Whether telemetry was started (a collector is configured).
pub fn enabled() -> bool {
    #[cfg(feature = "otel")]
    {
        spans::enabled()
    }
    #[cfg(not(feature = "otel"))]
    {
        false
    }
}
