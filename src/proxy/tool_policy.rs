//! The tool policy ([`crate::policy`]) on the MCP traffic `alibridge proxy` forwards, per
//! server and client session (keyed by the request path and `Mcp-Session-Id`):
//!
//! - a POST carrying `tools/call` is decided before it is forwarded: refused (answered here
//!   with the JSON-RPC error, HTTP 200), given the default region, or, with
//!   `--confirm-writes`, answered with an SSE stream that first asks the client
//!   (`elicitation/create`, a bridge-owned id), then carries the upstream's answer once the
//!   client's POSTed reply said yes (that reply is answered 202 here and never forwarded);
//! - answers are read on their way back, in JSON bodies and in SSE streams (POST answers and
//!   GET streams alike): a `tools/list` result is filtered, a `tools/call` result audited,
//!   `notifications/tools/list_changed` makes the session forget its listing;
//! - a batch (JSON array, 2025-03-26) holding `tools/list` or `tools/call` is refused: it
//!   could not be filtered message by message.
//!
//! SSE events that need no change keep their exact bytes (`id:`, `retry:`, comments).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use serde_json::Value;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use crate::jsonrpc::{self, Id, Kind, Message};
use crate::policy::audit::AuditLog;
use crate::policy::confirm::{self, Answer, ConfirmIds};
use crate::policy::redact::call_arguments;
use crate::policy::{
    self, messages, Decision, Origin, Pending, Policy, Record, Rule, Session, Verdict,
};

/// Client sessions remembered per proxy; past this the oldest are forgotten (their calls are
/// then judged by name alone, which only ever refuses more).
const MAX_SESSIONS: usize = 4096;
/// Largest SSE event or JSON answer read for the policy (larger answers end the stream).
pub const MAX_EVENT: usize = 64 << 20;

/// A session: the request path and its `Mcp-Session-Id` (empty for stateless servers).
pub type Key = (String, String);

/// A relayed call waiting for its answer, for the audit log. It travels with the exchange (the
/// POST's answer stream), so nothing is left behind when a client goes away.
pub type Tracked = Option<(Id, Pending)>;

/// The policy of one running proxy.
pub struct ProxyPolicy {
    policy: Policy,
    audit: Option<AuditLog>,
    upstream: String,
    ids: ConfirmIds,
    sessions: Mutex<HashMap<Key, (u64, Session)>>,
    next_seq: std::sync::atomic::AtomicU64,
    waiting: Mutex<HashMap<Id, oneshot::Sender<Bytes>>>,
    identity: Box<dyn Fn() -> Option<String> + Send + Sync>,
}

/// What to do with a client's POST.
pub enum Inbound {
    /// Forward `body`; `watch` when its answer must be read (`tools/list`, `tools/call`);
    /// `initialize`: the client's elicitation support, to remember once the session id is known;
    /// `tracked`: the call to audit when its answer passes.
    Forward {
        body: Bytes,
        watch: bool,
        initialize: Option<bool>,
        tracked: Tracked,
    },
    /// Answer here with this JSON-RPC message.
    Answer(Bytes),
    /// The client's reply to the proxy's own request: answer 202, forward nothing.
    Consumed,
    /// Ask the person first.
    Confirm(Box<Confirmation>),
}

/// A write waiting for the person's answer.
pub struct Confirmation {
    pub key: Key,
    pub id: Id,
    pub tool: String,
    /// The `elicitation/create` to send first.
    pub request: Bytes,
    pub answer: oneshot::Receiver<Bytes>,
    /// What to forward once confirmed.
    pub body: Bytes,
    decision: Decision,
    region: Option<String>,
    arguments: Value,
    started: Instant,
}

impl ProxyPolicy {
    pub fn new(
        policy: Policy,
        audit: Option<AuditLog>,
        upstream: String,
        identity: Box<dyn Fn() -> Option<String> + Send + Sync>,
    ) -> Self {
        ProxyPolicy {
            policy,
            audit,
            upstream,
            ids: ConfirmIds::default(),
            sessions: Mutex::new(HashMap::new()),
            next_seq: std::sync::atomic::AtomicU64::new(0),
            waiting: Mutex::new(HashMap::new()),
            identity,
        }
    }

    /// Runs `f` on the session `key` (created when new).
    fn with_session<T>(&self, key: &Key, f: impl FnOnce(&mut Session) -> T) -> T {
        let mut map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if !map.contains_key(key) && map.len() >= MAX_SESSIONS {
            let oldest = map
                .iter()
                .min_by_key(|(_, (seq, _))| *seq)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                map.remove(&k);
            }
        }
        let seq = self
            .next_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let entry = map
            .entry(key.clone())
            .or_insert_with(|| (seq, Session::default()));
        f(&mut entry.1)
    }

    /// The client ended the session (`DELETE`).
    pub fn end_session(&self, key: &Key) {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// Records what the client said in `initialize` once the server named the session.
    pub fn initialized(&self, key: &Key, elicits: bool) {
        self.with_session(key, |s| s.client_elicits = elicits);
    }

    /// Decides a client POST body.
    pub fn inbound(&self, key: &Key, body: Bytes, accepts_sse: bool) -> Inbound {
        let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
        if first == Some(b'[') {
            return self.batch(body);
        }
        let Ok(msg) = Message::parse(body.clone()) else {
            return Inbound::Forward {
                body,
                watch: false,
                initialize: None,
                tracked: None,
            };
        };
        match msg.kind {
            Kind::Response => {
                let Some(id) = msg.id.as_ref().filter(|id| self.ids.owns(id)) else {
                    return Inbound::Forward {
                        body,
                        watch: false,
                        initialize: None,
                        tracked: None,
                    };
                };
                if let Some(tx) = self.waiting.lock().unwrap().remove(id) {
                    let _ = tx.send(msg.bytes.clone());
                }
                Inbound::Consumed
            }
            Kind::Request if msg.method_is("initialize") => Inbound::Forward {
                initialize: Some(confirm::client_can_elicit(&msg.bytes)),
                body,
                watch: false,
                tracked: None,
            },
            // Its answer is recognised by shape (`result.tools`), wherever it arrives.
            Kind::Request if msg.method_is("tools/list") => Inbound::Forward {
                body,
                watch: true,
                initialize: None,
                tracked: None,
            },
            Kind::Request if msg.method_is("tools/call") => self.call(key, msg, accepts_sse),
            _ => Inbound::Forward {
                body,
                watch: false,
                initialize: None,
                tracked: None,
            },
        }
    }

    fn batch(&self, body: Bytes) -> Inbound {
        let Ok(items) = serde_json::from_slice::<Vec<Value>>(&body) else {
            return Inbound::Forward {
                body,
                watch: false,
                initialize: None,
                tracked: None,
            };
        };
        let touches = items.iter().any(|m| {
            matches!(
                m.get("method").and_then(Value::as_str),
                Some("tools/list" | "tools/call")
            )
        });
        if !touches {
            return Inbound::Forward {
                body,
                watch: false,
                initialize: None,
                tracked: None,
            };
        }
        Inbound::Answer(jsonrpc::error_response(
            None,
            jsonrpc::code::INVALID_REQUEST,
            "alibridge proxy refused a batch holding tools/list or tools/call: the tool policy \
             decides such messages one by one; send them in separate requests",
            Some(serde_json::json!({"alibridge": {"kind": "policy", "rule": "batch"}})),
        ))
    }

    fn call(&self, key: &Key, msg: Message, accepts_sse: bool) -> Inbound {
        let Some(id) = msg.id.clone() else {
            return Inbound::Forward {
                body: msg.bytes,
                watch: false,
                initialize: None,
                tracked: None,
            };
        };
        let started = Instant::now();
        let Some(call) = messages::read_call(&msg.bytes) else {
            let d = self.policy.decide("", None, None);
            return Inbound::Answer(self.refuse(
                key,
                &id,
                "(unreadable)",
                &d,
                Rule::Unreadable,
                None,
            ));
        };
        let args = call.arguments.as_ref();
        let (info, elicits) =
            self.with_session(key, |s| (s.tool(&call.name).copied(), s.client_elicits));
        let decision = self.policy.decide(&call.name, info.as_ref(), args);
        let region = self
            .policy
            .region_for(info.as_ref(), args)
            .map(str::to_string);
        let body = match &region {
            Some(r) => messages::with_region(&msg.bytes, r).unwrap_or(msg.bytes),
            None => msg.bytes,
        };
        match decision.verdict.clone() {
            Verdict::Refuse(rule) => {
                Inbound::Answer(self.refuse(key, &id, &call.name, &decision, rule, args))
            }
            Verdict::Confirm if !elicits || !accepts_sse => Inbound::Answer(self.refuse(
                key,
                &id,
                &call.name,
                &decision,
                Rule::CannotConfirm,
                args,
            )),
            Verdict::Confirm => {
                let our_id = self.ids.mint();
                let (tx, rx) = oneshot::channel();
                self.waiting.lock().unwrap().insert(our_id.clone(), tx);
                let shown = policy::region_of(args, region.as_deref());
                let request = confirm::request(
                    &our_id,
                    &confirm::Prompt {
                        tool: &call.name,
                        class: &decision.class,
                        region: shown.as_deref(),
                        arguments: args,
                    },
                );
                Inbound::Confirm(Box::new(Confirmation {
                    key: key.clone(),
                    id,
                    tool: call.name.clone(),
                    request,
                    answer: rx,
                    body,
                    arguments: call_arguments(args),
                    decision,
                    region,
                    started,
                }))
            }
            Verdict::Relay => Inbound::Forward {
                body,
                watch: true,
                initialize: None,
                tracked: self.track(
                    id,
                    &call.name,
                    &decision,
                    false,
                    region,
                    call_arguments(args),
                    started,
                ),
            },
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn track(
        &self,
        id: Id,
        tool: &str,
        decision: &Decision,
        confirmed: bool,
        region_added: Option<String>,
        arguments: Value,
        started: Instant,
    ) -> Tracked {
        self.audit.as_ref()?;
        let p = Pending {
            tool: tool.to_string(),
            class: decision.class.clone(),
            confirmed,
            region_added,
            arguments,
            started,
        };
        Some((id, p))
    }

    fn refuse(
        &self,
        key: &Key,
        id: &Id,
        tool: &str,
        decision: &Decision,
        rule: Rule,
        args: Option<&Value>,
    ) -> Bytes {
        warn!(server = %key.0, tool, rule = %rule.name(), "refused a tool call");
        self.audit(Record::denied(
            self.origin(Some(&key.0)),
            tool,
            decision,
            &rule,
            args,
        ));
        let mut refusal = policy::refusal(id, tool, decision, &rule);
        if rule == Rule::CannotConfirm {
            // Through the proxy the client must also read SSE answers to be asked.
            let v: Option<Value> = serde_json::from_slice(&refusal).ok();
            if let Some(mut v) = v {
                if let Some(m) = v.pointer_mut("/error/message") {
                    let text = m.as_str().unwrap_or_default().replace(
                        "did not declare the elicitation capability (form mode) when it connected",
                        "did not declare the elicitation capability (form mode) when it \
                         connected, or does not accept text/event-stream answers",
                    );
                    *m = Value::String(text);
                }
                refusal = Bytes::from(v.to_string());
            }
        }
        refusal
    }

    /// The person's answer to `c`: `Ok` with the body to forward (and the call to audit) when
    /// confirmed, else the tool result that tells the model no.
    pub async fn await_confirmation(&self, c: Confirmation) -> Result<(Bytes, Tracked), Bytes> {
        let answer = match c.answer.await {
            Ok(bytes) => confirm::answer(&bytes),
            Err(_) => Answer::Failed("no answer came".into()),
        };
        if answer == Answer::Confirmed {
            info!(server = %c.key.0, tool = %c.tool, "write confirmed; relaying it");
            let tracked = self.track(
                c.id,
                &c.tool,
                &c.decision,
                true,
                c.region,
                c.arguments,
                c.started,
            );
            return Ok((c.body, tracked));
        }
        info!(server = %c.key.0, tool = %c.tool, answer = answer.as_str(), "write not confirmed");
        self.audit(Record::unconfirmed(
            self.origin(Some(&c.key.0)),
            &c.tool,
            &c.decision.class,
            &answer,
            c.started,
            c.arguments,
        ));
        Err(confirm::refused_result(&c.id, &c.tool, &answer))
    }

    /// One message from the server on its way to the client; `Some` when it changed. `tracked`
    /// is the call this exchange waits for (audited, and cleared, when its answer passes).
    pub fn outbound(&self, key: &Key, bytes: &[u8], tracked: &mut Tracked) -> Option<Bytes> {
        let msg = Message::parse(Bytes::copy_from_slice(bytes)).ok()?;
        match msg.kind {
            Kind::Response => {
                if tracked
                    .as_ref()
                    .is_some_and(|(id, _)| Some(id) == msg.id.as_ref())
                {
                    let (_, p) = tracked.take().expect("checked");
                    let (outcome, error) = messages::outcome(bytes);
                    self.audit_answered(key, p, outcome, error);
                    return None;
                }
                if has_tools_array(bytes) {
                    return self.with_session(key, |s| policy::filter_list(&self.policy, s, bytes));
                }
                None
            }
            Kind::Notification if msg.method_is("notifications/tools/list_changed") => {
                debug!(server = %key.0, "the tool list changed; forgetting it");
                self.with_session(key, |s| s.forget_tools());
                None
            }
            _ => None,
        }
    }

    /// The call tracked by an exchange got no answer (`error` says why).
    pub fn call_failed(&self, key: &Key, tracked: Tracked, error: String) {
        if let Some((_, p)) = tracked {
            self.audit_answered(key, p, "error", Some(policy::redact::cut(&error)));
        }
    }

    fn audit_answered(&self, key: &Key, p: Pending, outcome: &str, error: Option<String>) {
        self.audit(Record::answered(
            self.origin(Some(&key.0)),
            &p,
            outcome,
            error,
        ));
    }

    fn origin<'a>(&'a self, server: Option<&'a str>) -> Origin<'a> {
        Origin {
            upstream: &self.upstream,
            server,
            identity: (self.identity)(),
        }
    }

    fn audit(&self, r: Record<'_>) {
        if let Some(log) = &self.audit {
            log.append(&r.to_json());
        }
    }
}

/// A `tools/list`-shaped result (`result.tools` is an array), tracked or not: answers that
/// reach the client some other way (a resumed stream) are filtered too.
fn has_tools_array(bytes: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct A<'a> {
        #[serde(borrow, default)]
        result: Option<R<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct R<'a> {
        #[serde(borrow, default)]
        tools: Option<&'a serde_json::value::RawValue>,
    }
    serde_json::from_slice::<A<'_>>(bytes)
        .ok()
        .and_then(|a| a.result)
        .and_then(|r| r.tools)
        .is_some_and(|t| t.get().starts_with('['))
}

/// An SSE stream rewritten event by event: an event whose data `rewrite` changes gets new
/// `data:` lines; every other event keeps its exact bytes.
pub struct SseRewriter {
    buf: BytesMut,
    /// The current event's raw lines (with their line ends).
    lines: Vec<Bytes>,
    data: Vec<u8>,
    has_data: bool,
    size: usize,
}

/// The event being read grew past [`MAX_EVENT`].
#[derive(Debug)]
pub struct EventTooLarge;

impl Default for SseRewriter {
    fn default() -> Self {
        SseRewriter {
            buf: BytesMut::new(),
            lines: Vec::new(),
            data: Vec::new(),
            has_data: false,
            size: 0,
        }
    }
}

impl SseRewriter {
    /// Feeds a chunk; returns what can be sent on now.
    pub fn push(
        &mut self,
        chunk: &[u8],
        rewrite: &mut impl FnMut(&[u8]) -> Option<Bytes>,
    ) -> Result<Bytes, EventTooLarge> {
        self.buf.extend_from_slice(chunk);
        let mut out = BytesMut::new();
        while let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
            let raw = self.buf.split_to(nl + 1).freeze();
            self.size += raw.len();
            if self.size > MAX_EVENT {
                return Err(EventTooLarge);
            }
            let line = raw.strip_suffix(b"\n").unwrap_or(&raw);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                self.end_event(raw, &mut out, rewrite);
                continue;
            }
            if let Some(v) = line.strip_prefix(b"data:") {
                let v = v.strip_prefix(b" ").unwrap_or(v);
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(v);
                self.has_data = true;
            }
            self.lines.push(raw);
        }
        if self.buf.len() + self.size > MAX_EVENT {
            return Err(EventTooLarge);
        }
        Ok(out.freeze())
    }

    fn end_event(
        &mut self,
        blank: Bytes,
        out: &mut BytesMut,
        rewrite: &mut impl FnMut(&[u8]) -> Option<Bytes>,
    ) {
        let replaced = if self.has_data {
            rewrite(&self.data)
        } else {
            None
        };
        for l in self.lines.drain(..) {
            let is_data = l.starts_with(b"data:");
            if replaced.is_none() || !is_data {
                out.extend_from_slice(&l);
            }
        }
        if let Some(new) = replaced {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(&jsonrpc::single_line(new));
            out.extend_from_slice(b"\n");
        }
        out.extend_from_slice(&blank);
        self.data.clear();
        self.has_data = false;
        self.size = 0;
    }

    /// What is left at the end of the stream (an unfinished event, as it was).
    pub fn finish(&mut self) -> Bytes {
        let mut out = BytesMut::new();
        for l in self.lines.drain(..) {
            out.extend_from_slice(&l);
        }
        out.extend_from_slice(&self.buf.split());
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewriter_keeps_untouched_events_exact_and_replaces_data() {
        let mut r = SseRewriter::default();
        let stream = b"id: 0\nretry: 300\ndata:\n\n: comment\nid: 1\r\nevent: message\ndata: {\"a\":1}\n\nid: 2\ndata: {\"b\":\ndata: 2}\n\ntail";
        let mut rewrite =
            |d: &[u8]| (d == b"{\"b\":\n2}").then(|| Bytes::from_static(b"{\"b\":3}"));
        let mut out = Vec::new();
        for chunk in stream.chunks(5) {
            out.extend_from_slice(&r.push(chunk, &mut rewrite).unwrap());
        }
        out.extend_from_slice(&r.finish());
        let s = String::from_utf8(out).unwrap();
        assert_eq!(
            s,
            "id: 0\nretry: 300\ndata:\n\n: comment\nid: 1\r\nevent: message\ndata: {\"a\":1}\n\nid: 2\ndata: {\"b\":3}\n\ntail"
        );
    }

    #[test]
    fn rewriter_bounds_events() {
        let mut r = SseRewriter::default();
        let big = vec![b'x'; MAX_EVENT + 10];
        assert!(r.push(&big, &mut |_| None).is_err());
    }
}
