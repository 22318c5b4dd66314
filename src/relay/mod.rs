//! The pump between the two sides: stdin lines become upstream sends, server messages reach
//! stdout through the [`Outbox`], and shutdown is orderly.
//!
//! ```text
//!  stdin ─► LineReader ─► Message::parse ─┬─► spawned send task per message ─► Upstream
//!                                          └─► parse error ─────────────────┐
//!  Upstream (POST answers, GET stream, SSE) ─► Outbox (ledger) ─► stdout writer task ─► stdout
//! ```
//!
//! Each message gets its own task, so one slow request never delays another; messages of one
//! response stream are delivered in the order the server sent them. At most `--max-in-flight`
//! tasks run at once: at the cap, stdin is not read until one finishes (back-pressure on the
//! client, nothing refused). A task that panics still gets its request answered (`InFlight`).
//! A stdin line over `--max-message-size` is dropped as it is read and answered with an error.
//! The handshake (`initialize`, `notifications/initialized`) is kept in order: [`order`] holds
//! later messages behind it.

pub mod order;
pub mod outbox;
pub mod tool_policy;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use tokio::io::{AsyncBufRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn, Instrument};

use self::order::Order;
pub use self::outbox::Outbox;
pub use self::tool_policy::ToolPolicy;
use crate::jsonrpc::{self, Id, Kind, Message};
use crate::policy::strict;
use crate::stdio::{self, Line, LineReader, Oversized};
use crate::upstream::{Upstream, UpstreamError};

/// Why the relay stopped.
#[derive(Debug)]
pub enum QuitReason {
    /// stdin reached end of file: the client went away.
    InputClosed,
    /// SIGINT/SIGTERM (or the injected shutdown future).
    Signal,
    /// stdout is closed (the client stopped reading).
    OutputClosed,
    /// Reading stdin failed.
    InputError(std::io::Error),
}

/// Timing and size knobs.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub request_timeout: Option<Duration>,
    pub shutdown_grace: Duration,
    /// `--max-message-size`: longest stdin line relayed.
    pub max_message_size: usize,
    /// `--max-in-flight`: client messages relayed at once.
    pub max_in_flight: usize,
    /// `--keep-alive`: ping the server this often (`None`: never).
    pub keep_alive: Option<Duration>,
}

/// How long the stdout writer gets to flush after the relay is done.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the bridge until stdin closes, `shutdown` completes or stdout breaks.
///
/// `connect` builds the upstream around the outbox it must deliver to; `policy`, when set,
/// sees tool listings and calls (see [`tool_policy`]).
pub async fn run<R, W>(
    stdin: R,
    stdout: W,
    connect: impl FnOnce(Arc<Outbox>) -> Upstream,
    limits: Limits,
    policy: Option<Arc<ToolPolicy>>,
    shutdown: impl Future<Output = ()>,
) -> QuitReason
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Bytes>(stdio::STDOUT_QUEUE);
    let mut writer = tokio::spawn(stdio::write_lines(stdout, rx));
    let outbox = Arc::new(Outbox::new(tx).with_policy(policy.clone()));
    if let Some(p) = &policy {
        p.bind_outbox(&outbox);
    }
    let upstream = Arc::new(connect(outbox.clone()));
    let mut reader = LineReader::new(stdin, limits.max_message_size);
    let mut tasks = InFlight::default();
    let max_in_flight = limits.max_in_flight.max(1);
    let mut order = Order::new();
    tokio::pin!(shutdown);
    let mut keep_alive = limits.keep_alive.map(|every| {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });

    let reason = loop {
        tokio::select! {
            // A call waiting for the person's confirmation needs the client's next line (its
            // answer), so it does not count against the cap.
            line = reader.next_line(), if tasks.len() < max_in_flight + asking(&policy) => match line {
                Ok(Some(Line::Message(line))) => {
                    on_line(line, &upstream, &outbox, limits, &policy, &mut order, &mut tasks).await
                }
                Ok(Some(Line::TooLarge(o))) => {
                    on_oversized(o, &upstream, &outbox, limits, &mut tasks).await
                }
                Ok(None) => break QuitReason::InputClosed,
                Err(e) => break QuitReason::InputError(e),
            },
            Some(()) = tasks.join_next(&outbox), if !tasks.is_empty() => {}
            // A relay task started asking: look at the cap again.
            () = asked(&policy) => {}
            _ = tick(&mut keep_alive) => ping(&upstream, &mut tasks),
            () = &mut shutdown => break QuitReason::Signal,
            _ = &mut writer => break QuitReason::OutputClosed,
        }
    };
    debug!(?reason, in_flight = outbox.open_count(), "stopping");
    drop(reader);

    if !matches!(reason, QuitReason::OutputClosed) && !tasks.is_empty() {
        let drain = async { while tasks.join_next(&outbox).await.is_some() {} };
        if tokio::time::timeout(limits.shutdown_grace, drain)
            .await
            .is_err()
        {
            info!(
                open = outbox.open_count(),
                "grace period over; answering the rest with errors"
            );
        }
    }
    tasks.set.shutdown().await;
    outbox.settle_all(|| UpstreamError::Shutdown).await;
    upstream.close().await;
    outbox.close();
    drop(upstream);
    if !writer.is_finished() {
        let _ = tokio::time::timeout(FLUSH_TIMEOUT, &mut writer).await;
    }
    reason
}

/// The next `--keep-alive` tick; never, without the flag.
async fn tick(t: &mut Option<tokio::time::Interval>) {
    match t {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Sends the server an MCP `ping` of the bridge's own (`--keep-alive`): its answer is for no
/// client request, so the outbox drops it. Keeps an idle connection (and any NAT or proxy on
/// the path) from being closed under the next call.
fn ping(upstream: &Arc<Upstream>, tasks: &mut InFlight) {
    let id = format!("\"alibridge-ping-{}\"", crate::random::hex::<8>());
    let bytes = Bytes::from(format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#));
    let Ok(msg) = Message::parse(bytes) else {
        return;
    };
    let upstream = upstream.clone();
    tasks.spawn(None, async move {
        if let Err(e) = upstream.send(msg).await {
            debug!(error = %e, "keep-alive ping failed");
        }
    });
}

/// Completes when a relay task starts waiting for a confirmation (never without a policy).
async fn asked(policy: &Option<Arc<ToolPolicy>>) {
    match policy {
        Some(p) => p.asked().await,
        None => std::future::pending().await,
    }
}

/// Relay tasks waiting for a confirmation from the client.
fn asking(policy: &Option<Arc<ToolPolicy>>) -> usize {
    policy.as_ref().map_or(0, |p| p.asking())
}

/// Routes one stdin line.
async fn on_line(
    line: Bytes,
    upstream: &Arc<Upstream>,
    outbox: &Arc<Outbox>,
    limits: Limits,
    policy: &Option<Arc<ToolPolicy>>,
    order: &mut Order,
    tasks: &mut InFlight,
) {
    let strict = policy.as_ref().is_some_and(|p| p.strict());
    let checked = if strict { strict::check(&line) } else { Ok(()) };
    let msg = match Message::parse(line) {
        Ok(m) => m,
        Err(e) => {
            warn!(error = %e, "answering an invalid stdin line with an error");
            outbox.write(e.to_response()).await;
            return;
        }
    };
    if let Err(why) = checked {
        warn!(reason = %why, "refused an ambiguous stdin message (tool policy set)");
        if let Some(p) = policy {
            p.audit_malformed(&why);
        }
        match (&msg.kind, &msg.id) {
            (Kind::Response, Some(id)) => {
                let text = format!("alibridge refused the client's answer: {why}");
                unanswered(id, &text, upstream, tasks);
            }
            (_, id) => outbox.write(strict::refusal(id.as_ref(), &why)).await,
        }
        return;
    }
    if policy.as_ref().is_some_and(|p| p.from_client(&msg)) {
        return; // the client's answer to the bridge's own request
    }
    let guarded = policy
        .clone()
        .filter(|_| msg.kind == Kind::Request && msg.method_is("tools/call"));
    match msg.kind {
        Kind::Request => {
            let id = msg.id.as_ref().expect("requests have ids");
            if !outbox.open(id) {
                let err = jsonrpc::error_response(
                    Some(id),
                    jsonrpc::code::INVALID_REQUEST,
                    "Invalid Request: a request with this id is still in flight; use unique ids",
                    None,
                );
                outbox.write(err).await;
                return;
            }
        }
        Kind::Notification if msg.method_is("notifications/cancelled") => {
            if let Some(id) = cancelled_request(&msg.bytes) {
                outbox.cancelled(&id);
            }
        }
        _ => {}
    }
    let op = crate::telemetry::Operation::start(&msg, crate::telemetry::Role::Bridge);
    // The trace context goes into `params._meta` now, where the span begins: the policy
    // and the upstream see the message as it will be sent.
    let msg = op.inject_message(msg);
    let span = tracing::debug_span!("msg", id = %msg.id.as_ref().map(Id::as_json).unwrap_or("-"),
                                    method = msg.method.as_deref().unwrap_or("(response)"));
    let upstream = upstream.clone();
    let outbox = outbox.clone();
    let mut ticket = order.ticket(&msg);
    let request = (msg.kind == Kind::Request)
        .then(|| msg.id.clone())
        .flatten();
    tasks.spawn_traced(
        request,
        op,
        async move {
            ticket.wait().await;
            debug!(bytes = msg.bytes.len(), "forwarding");
            let (kind, id) = (msg.kind, msg.id.clone());
            let sent = async {
                let msg = match &guarded {
                    Some(p) => match p.check_call(msg, &outbox, &upstream).await {
                        Some(m) => m,
                        None => return Ok(()), // answered by the bridge
                    },
                    None => msg,
                };
                upstream.send(msg).await
            };
            let result =
                match limits.request_timeout {
                    Some(t) if kind == Kind::Request => tokio::time::timeout(t, sent)
                        .await
                        .unwrap_or(Err(UpstreamError::Timeout {
                            secs: t.as_secs_f64(),
                        })),
                    _ => sent.await,
                };
            crate::telemetry::failed(result.as_ref().err().map(UpstreamError::kind));
            match (kind, id) {
                (Kind::Request, Some(id)) => {
                    outbox
                        .settle(&id, result.err(), &upstream.shown_url())
                        .await
                }
                _ => {
                    if let Err(e) = result {
                        warn!(error = %e, "could not pass a message to the server");
                    }
                }
            }
            drop(ticket);
        }
        .instrument(span),
    );
}

/// Answers a stdin line that was over `--max-message-size`. A request (or a line whose kind
/// could not be told) gets the error on stdout, with its id when the scan found one, else with
/// id null. A response (the client answering a server request) cannot be relayed, so the
/// server gets an error for that id instead, rather than waiting for an answer forever.
async fn on_oversized(
    o: Oversized,
    upstream: &Arc<Upstream>,
    outbox: &Arc<Outbox>,
    limits: Limits,
    tasks: &mut InFlight,
) {
    let limit = limits.max_message_size as u64;
    crate::telemetry::count(crate::telemetry::Event::Oversized);
    warn!(size = o.size, limit, id = %o.id.as_ref().map(Id::as_json).unwrap_or("-"),
          "discarded a stdin message over --max-message-size");
    match &o.id {
        Some(id) if !o.has_method => {
            let text = format!(
                "alibridge: the client's answer was {} and alibridge relays at most {} \
                 (--max-message-size); it was discarded",
                jsonrpc::human_size(o.size),
                jsonrpc::human_size(limit)
            );
            unanswered(id, &text, upstream, tasks);
        }
        id => {
            outbox
                .write(jsonrpc::too_large_response(id.as_ref(), o.size, limit))
                .await
        }
    }
}

/// Tells the server that its request `id` will get no answer from the client (the answer
/// could not be relayed), rather than leaving it waiting forever.
fn unanswered(id: &Id, text: &str, upstream: &Arc<Upstream>, tasks: &mut InFlight) {
    let refusal = jsonrpc::error_response(Some(id), jsonrpc::code::INVALID_REQUEST, text, None);
    if let Ok(msg) = Message::parse(refusal) {
        let upstream = upstream.clone();
        tasks.spawn(None, async move {
            if let Err(e) = upstream.send(msg).await {
                warn!(error = %e, "could not tell the server its request went unanswered");
            }
        });
    }
}

/// The relay tasks in flight, and which request each one owes an answer to, so a task that
/// panics (a bug) still gets its request answered instead of leaving the client waiting.
#[derive(Default)]
pub(crate) struct InFlight {
    set: JoinSet<()>,
    requests: HashMap<tokio::task::Id, Id>,
}

impl InFlight {
    /// Spawns one relay task; `request` is the id it must answer, if it carries a request.
    pub(crate) fn spawn(
        &mut self,
        request: Option<Id>,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        // Boxed: the relay future is several KiB (it holds the whole HTTP exchange), and the
        // task machinery would otherwise copy it by value more than once per message.
        let handle = self.set.spawn(Box::pin(task));
        if let Some(id) = request {
            self.requests.insert(handle.id(), id);
        }
    }

    /// [`Self::spawn`] inside the telemetry span of `op`, ended when the task is.
    pub(crate) fn spawn_traced(
        &mut self,
        request: Option<Id>,
        op: crate::telemetry::Operation,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        self.spawn(request, op.run(task));
    }

    pub(crate) fn len(&self) -> usize {
        self.set.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Waits for the next task to end; `None` when there are none. A panicked task's request
    /// is answered with an internal error (a cancelled one is left to the shutdown sweep).
    pub(crate) async fn join_next(&mut self, outbox: &Outbox) -> Option<()> {
        let (task, panicked) = match self.set.join_next_with_id().await? {
            Ok((task, ())) => (task, false),
            Err(e) => (e.id(), e.is_panic()),
        };
        let request = self.requests.remove(&task);
        if panicked {
            error!(id = %request.as_ref().map(Id::as_json).unwrap_or("-"), "a relay task panicked");
            if let Some(id) = request {
                let err = UpstreamError::Internal {
                    detail: "the task relaying it panicked".into(),
                };
                outbox.settle(&id, Some(err), "").await;
            }
        }
        Some(())
    }
}

/// Reads `params.requestId` of a `notifications/cancelled`.
fn cancelled_request(bytes: &[u8]) -> Option<Id> {
    #[derive(Deserialize)]
    struct Note<'a> {
        #[serde(borrow)]
        params: Option<Params<'a>>,
    }
    #[derive(Deserialize)]
    struct Params<'a> {
        #[serde(borrow, rename = "requestId")]
        request_id: Option<&'a serde_json::value::RawValue>,
    }
    let n: Note<'_> = serde_json::from_slice(bytes).ok()?;
    let raw = n.params?.request_id?;
    let v: serde_json::Value = serde_json::from_str(raw.get()).ok()?;
    Some(Id::from_json(&v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_task_still_answers_its_request() {
        let (tx, mut rx) = mpsc::channel(8);
        let outbox = Outbox::new(tx);
        let id = Id::from_json("7");
        assert!(outbox.open(&id));
        let mut tasks = InFlight::default();
        tasks.spawn(Some(id.clone()), async {
            panic!("boom (expected by this test)")
        });
        tasks.spawn(None, async {});
        while tasks.join_next(&outbox).await.is_some() {}
        outbox.close();
        let line = rx.recv().await.expect("an answer for request 7");
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["id"], 7);
        assert_eq!(v["error"]["data"]["alibridge"]["kind"], "internal");
        assert!(rx.recv().await.is_none(), "exactly one answer");
        assert_eq!(outbox.open_count(), 0);
    }

    #[test]
    fn reads_the_cancelled_request_id() {
        let id = cancelled_request(
            br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"x1","reason":"user"}}"#,
        );
        assert_eq!(id, Some(Id::from_json("\"x1\"")));
        assert_eq!(
            cancelled_request(br#"{"method":"notifications/cancelled"}"#),
            None
        );
    }
}
