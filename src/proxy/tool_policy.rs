//! The tool policy ([`crate::policy`]) on the MCP traffic `alibridge proxy` forwards, per
//! server and client session (keyed by the request path and `Mcp-Session-Id`):
//!
//! - every client request body (any HTTP method) is decided before it is forwarded. With a
//!   policy flag set it must first pass the strict reader ([`crate::policy::strict`]) and read
//!   as one JSON-RPC message, else it is refused with HTTP 400 (fail closed);
//! - a `tools/call` is refused (answered here with the JSON-RPC error, HTTP 200), given the
//!   default region, or, with `--confirm-writes`, answered with an SSE stream that first asks
//!   the client (`elicitation/create`, a proxy-owned id), then carries the upstream's answer
//!   once the client's POSTed reply said yes (that reply is answered 202 here and never
//!   forwarded);
//! - a confirmation belongs to the caller that made the call ([`Caller`]: session and proxy
//!   token); an answer from anyone else is refused (HTTP 403) and the confirmation stays open.
//!   It waits at most `--confirm-timeout`, ends when its client goes away, and at most
//!   [`MAX_WAITING`] are open at once;
//! - answers are read on their way back, in JSON bodies and in SSE streams (POST answers and
//!   GET streams alike): a `tools/list` result is filtered, a `tools/call` result audited,
//!   `notifications/tools/list_changed` makes the session forget its listing;
//! - with `--pin-tools`, a `tools/list` whose answer holds back new or changed tools asks the
//!   client's person about them when the client declared elicitation and accepts SSE answers
//!   (`tool_policy/pinning.rs`): the answer becomes an SSE stream carrying the question, then
//!   the listing judged again after the answer (approved tools in it). The question is owned
//!   like a confirmation, and a decline holds for the rest of the client session;
//! - a batch (JSON array, 2025-03-26) holding `tools/list` or `tools/call` is refused: it
//!   could not be filtered message by message.
//!
//! SSE events that need no change keep their exact bytes (`id:`, `retry:`, comments).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tracing::{debug, warn};

use super::access::Presented;
use crate::jsonrpc::{self, Id, InvalidMessage, Kind, Message};
use crate::policy::audit::AuditLog;
use crate::policy::confirm;
use crate::policy::quote::{self, QuoteIds};

mod confirmations;
mod pinning;
use crate::policy::redact::call_arguments;
use crate::policy::strict::{self, Malformed};
use crate::policy::{
    self, messages, Decision, Origin, Pending, Policy, Record, Rule, Session, Verdict,
};
pub use confirmations::Confirmation;
use confirmations::{is_own_id, mint_confirm_id, Ticket, Waiter, Waiting};
pub use pinning::{Asker, Listing, PinQuestion, ProxyPins};

/// Client sessions remembered per proxy; past this the oldest are forgotten (their calls are
/// then judged by name alone, which only ever refuses more).
const MAX_SESSIONS: usize = 4096;
/// Confirmations (and questions about held-back tools) open at once per proxy. Each holds a
/// request body or a listing, so past this a write that needs one is refused (a listing goes
/// without the held-back tools, unasked) rather than letting clients grow the proxy's memory
/// without bound.
pub const MAX_WAITING: usize = 1024;
/// How the proxy's own request ids start; 128 random bits (hex) follow, drawn per
/// confirmation, so seeing one id tells nothing about the next.
const CONFIRM_PREFIX: &str = "alibridge-proxy-confirm-";
/// How the ids of the proxy's questions about held-back tools start; 128 random bits follow,
/// as for confirmations. Not the bridge's `alibridge-pin-`: a bridge between the client and
/// the proxy takes answers to its own ids for itself, so the proxy's must differ.
const PIN_PREFIX: &str = "alibridge-proxy-pin-";

/// A session: the request path and its `Mcp-Session-Id` (empty for stateless servers).
pub type Key = (String, String);

/// A relayed call waiting for its answer, for the audit log. It travels with the exchange (the
/// POST's answer stream), so nothing is left behind when a client goes away.
pub type Tracked = Option<(Id, Pending)>;

/// Who sent a request: its session, and the digest of the proxy token it presented when
/// `--proxy-token` is set. A confirmation can only be answered by the caller that asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub key: Key,
    pub token: Option<Presented>,
}

/// What the proxy remembers of one client session.
#[derive(Default)]
struct SessionState {
    /// When it was first seen (the oldest is forgotten first).
    seq: u64,
    policy: Session,
    /// Digests of held-back tool definitions the person declined in this session: not asked
    /// about again while it lasts (`--pin-tools`).
    declined_pins: HashSet<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The policy of one running proxy.
pub struct ProxyPolicy {
    policy: Policy,
    audit: Option<AuditLog>,
    upstream: String,
    sessions: Mutex<HashMap<Key, SessionState>>,
    next_seq: std::sync::atomic::AtomicU64,
    /// Confirmations and pin questions asked and not answered yet: our request id → its owner
    /// and exchange.
    waiting: Waiting,
    identity: Box<dyn Fn() -> Option<String> + Send + Sync>,
    /// `--pin-tools`.
    pins: Option<ProxyPins>,
}

/// What to do with a client's request body. Made once per request and matched at once, so the
/// size of the `Forward` variant (it carries the call to audit) costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub enum Inbound {
    /// Forward `body`; `watch` when its answer must be read (`tools/list`, `tools/call`);
    /// `initialize`: the client's elicitation support, to remember once the session id is known;
    /// `tracked`: the call to audit when its answer passes; `ask`: a `tools/list` whose client
    /// can be asked about the tools the pins hold back from its answer.
    Forward {
        body: Bytes,
        watch: bool,
        initialize: Option<bool>,
        tracked: Tracked,
        ask: Option<Asker>,
    },
    /// Answer here with this JSON-RPC message.
    Answer(Bytes),
    /// The client's reply to the proxy's own request: answer 202, forward nothing.
    Consumed,
    /// Ask the person first.
    Confirm(Box<Confirmation>),
    /// Refuse the HTTP request itself: this status, with this JSON-RPC error as the body.
    Reject { status: StatusCode, body: Bytes },
}

impl Inbound {
    /// Forward `body` as it is, its answer unread.
    fn plain(body: Bytes) -> Inbound {
        Inbound::Forward {
            body,
            watch: false,
            initialize: None,
            tracked: None,
            ask: None,
        }
    }
}

impl ProxyPolicy {
    pub fn new(
        policy: Policy,
        audit: Option<AuditLog>,
        upstream: String,
        identity: crate::policy::Identity,
    ) -> Self {
        ProxyPolicy {
            pins: None,
            policy,
            audit,
            upstream,
            sessions: Mutex::new(HashMap::new()),
            next_seq: std::sync::atomic::AtomicU64::new(0),
            waiting: Arc::new(Mutex::new(HashMap::new())),
            identity,
        }
    }

    /// With `--pin-tools`: the pins of the servers behind the proxy.
    pub fn with_pins(mut self, pins: Option<ProxyPins>) -> Self {
        self.pins = pins;
        self
    }

    /// Whether client bodies go through the strict reader ([`crate::policy::strict`]) and fail
    /// closed: when any flag limits calls (an audit log or a default region alone decides
    /// nothing).
    pub fn strict(&self) -> bool {
        self.policy.constrains()
    }

    /// Confirmations asked and not answered yet (for `/health`).
    pub fn waiting(&self) -> usize {
        lock(&self.waiting).len()
    }

    fn confirm_timeout(&self) -> Duration {
        self.policy
            .confirm_timeout
            .unwrap_or(policy::DEFAULT_CONFIRM_TIMEOUT)
    }

    /// Runs `f` on the session `key`'s policy state (created when new).
    fn with_session<T>(&self, key: &Key, f: impl FnOnce(&mut Session) -> T) -> T {
        self.with_state(key, |s| f(&mut s.policy))
    }

    /// Runs `f` on all the proxy remembers of session `key` (created when new).
    fn with_state<T>(&self, key: &Key, f: impl FnOnce(&mut SessionState) -> T) -> T {
        let mut map = lock(&self.sessions);
        if !map.contains_key(key) && map.len() >= MAX_SESSIONS {
            let oldest = map
                .iter()
                .min_by_key(|(_, s)| s.seq)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                map.remove(&k);
            }
        }
        let seq = self
            .next_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let entry = map.entry(key.clone()).or_insert_with(|| SessionState {
            seq,
            ..SessionState::default()
        });
        f(entry)
    }

    /// The client ended the session (`DELETE`).
    pub fn end_session(&self, key: &Key) {
        lock(&self.sessions).remove(key);
    }

    /// Records what the client said in `initialize` once the server named the session.
    pub fn initialized(&self, key: &Key, elicits: bool) {
        self.with_session(key, |s| s.client_elicits = elicits);
    }

    /// Decides a client request body (any HTTP method).
    pub fn inbound(&self, caller: &Caller, body: Bytes, accepts_sse: bool) -> Inbound {
        let key = &caller.key;
        if self.strict() {
            if let Err(why) = strict::check(&body) {
                return self.malformed(key, &body, &why);
            }
        }
        let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
        if first == Some(b'[') {
            return self.batch(body);
        }
        let msg = match Message::parse(body.clone()) {
            Ok(m) => m,
            // An audit log alone decides nothing: what it cannot read passes as before.
            Err(_) if !self.strict() => return Inbound::plain(body),
            Err(e) => return self.unreadable(key, &e),
        };
        match msg.kind {
            Kind::Response => match msg.id.as_ref().filter(|id| is_own_id(id)) {
                Some(id) => self.answer(caller, id, msg.bytes.clone()),
                None => Inbound::plain(body),
            },
            Kind::Request if msg.method_is("initialize") => Inbound::Forward {
                initialize: Some(confirm::client_can_elicit(&msg.bytes)),
                body,
                watch: false,
                tracked: None,
                ask: None,
            },
            // Its answer is recognised by shape (`result.tools`), wherever it arrives.
            Kind::Request if msg.method_is("tools/list") => Inbound::Forward {
                ask: self.asker(caller, msg.id.as_ref(), accepts_sse),
                body,
                watch: true,
                initialize: None,
                tracked: None,
            },
            Kind::Request if msg.method_is("tools/call") => self.call(caller, msg, accepts_sse),
            _ => Inbound::plain(body),
        }
    }

    /// A body the strict reader refused: 400, audited, nothing forwarded.
    fn malformed(&self, key: &Key, body: &Bytes, why: &Malformed) -> Inbound {
        warn!(server = %key.0, reason = %why, "refused an ambiguous request body (tool policy set)");
        self.audit(Record::malformed(self.origin(Some(&key.0)), why));
        let id = Message::parse(body.clone()).ok().and_then(|m| m.id);
        Inbound::Reject {
            status: StatusCode::BAD_REQUEST,
            body: strict::refusal(id.as_ref(), why),
        }
    }

    /// A well-formed JSON object that is no JSON-RPC message: with a policy set, what the
    /// proxy cannot read is not forwarded (the server might read it as something).
    fn unreadable(&self, key: &Key, e: &InvalidMessage) -> Inbound {
        warn!(server = %key.0, "refused a request body that is not a JSON-RPC message (tool policy set)");
        let mut record = Record::malformed(self.origin(Some(&key.0)), &Malformed::NotObject);
        record.error = Some(e.to_string());
        self.audit(record);
        let id = match e {
            InvalidMessage::NotJsonRpc(_, id) => id.as_ref(),
            InvalidMessage::Json(_) => None,
        };
        Inbound::Reject {
            status: StatusCode::BAD_REQUEST,
            body: jsonrpc::error_response(
                id,
                jsonrpc::code::INVALID_REQUEST,
                &format!(
                    "alibridge proxy refused a message: {e}. With a tool policy set, the proxy \
                     forwards only JSON-RPC messages it can read; nothing was sent to the server"
                ),
                Some(json!({"alibridge": {"kind": "policy", "rule": "strict-json"}})),
            ),
        }
    }

    fn batch(&self, body: Bytes) -> Inbound {
        let Ok(items) = serde_json::from_slice::<Vec<Value>>(&body) else {
            return Inbound::plain(body);
        };
        let touches = items.iter().any(|m| {
            matches!(
                m.get("method").and_then(Value::as_str),
                Some("tools/list" | "tools/call")
            )
        });
        if !touches {
            return Inbound::plain(body);
        }
        Inbound::Answer(jsonrpc::error_response(
            None,
            jsonrpc::code::INVALID_REQUEST,
            "alibridge proxy refused a batch holding tools/list or tools/call: the tool policy \
             decides such messages one by one; send them in separate requests",
            Some(serde_json::json!({"alibridge": {"kind": "policy", "rule": "batch"}})),
        ))
    }

    fn call(&self, caller: &Caller, msg: Message, accepts_sse: bool) -> Inbound {
        let key = &caller.key;
        let Some(id) = msg.id.clone() else {
            return Inbound::plain(msg.bytes);
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
        crate::telemetry::api_actions(decision.class.apis.iter().flatten().map(|a| a.label()));
        // The policy's own refusals come first: a tool it hides is never judged by the pins.
        if let (Some(pp), false) = (&self.pins, matches!(decision.verdict, Verdict::Refuse(_))) {
            if let Err(why) = self.pin_check(pp, key, &call.name) {
                return Inbound::Answer(self.refuse(
                    key,
                    &id,
                    &call.name,
                    &decision,
                    Rule::Unpinned(why),
                    args,
                ));
            }
        }
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
                let our_id = mint_confirm_id();
                let (tx, rx) = oneshot::channel();
                {
                    let mut waiting = lock(&self.waiting);
                    if waiting.len() >= MAX_WAITING {
                        drop(waiting);
                        return Inbound::Answer(
                            self.too_many(key, &id, &call.name, &decision, args),
                        );
                    }
                    let w = Waiter {
                        owner: caller.clone(),
                        tool: call.name.clone(),
                        tx,
                    };
                    waiting.insert(our_id.clone(), w);
                }
                let ticket = Ticket {
                    waiting: self.waiting.clone(),
                    id: our_id.clone(),
                };
                let shown = policy::region_of(args, region.as_deref());
                let request = confirm::request(
                    &our_id,
                    &confirm::Prompt {
                        tool: &call.name,
                        class: &decision.class,
                        region: shown.as_deref(),
                        arguments: args,
                        price: None,
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
                    ticket,
                    quote: {
                        let qid = QuoteIds.mint();
                        quote::request(&qid, &call.name, args).map(|q| (qid, q))
                    },
                    our_id,
                    raw_arguments: args.cloned(),
                    shown_region: shown,
                }))
            }
            Verdict::Relay => Inbound::Forward {
                body,
                watch: true,
                initialize: None,
                ask: None,
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
        crate::telemetry::refused(tool, &rule.name());
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
                    if let (Some(pp), Some(id)) = (&self.pins, msg.id.as_ref()) {
                        return self.filter_pinned(pp, key, id, bytes);
                    }
                    return self.with_session(key, |s| {
                        policy::filter_list(&self.policy, s, None, bytes)
                            .ok()
                            .flatten()
                    });
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

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn caller(session: &str) -> Caller {
        Caller {
            key: ("/s/mcp".into(), session.into()),
            token: None,
        }
    }

    pub(super) fn status(i: &Inbound) -> Option<StatusCode> {
        match i {
            Inbound::Reject { status, .. } => Some(*status),
            Inbound::Consumed => Some(StatusCode::ACCEPTED),
            _ => None,
        }
    }

    pub(super) const WRITE: &str = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"DeleteInstance","arguments":{"InstanceId":"i-1"}}}"#;

    #[test]
    fn with_a_policy_unreadable_bodies_are_refused_with_400() {
        let read_only = ProxyPolicy::new(
            Policy {
                read_only: true,
                ..Policy::default()
            },
            None,
            "up".into(),
            Box::new(|| None),
        );
        let who = caller("A");
        for bad in [
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"DeleteInstance"}}"#.as_slice(),
            b"\xEF\xBB\xBF{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}",
            b"not json",
            br#"{"jsonrpc":"2.0","params":{}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":7}"#,
        ] {
            let r = read_only.inbound(&who, Bytes::copy_from_slice(bad), true);
            assert_eq!(
                status(&r),
                Some(StatusCode::BAD_REQUEST),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let ok = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        assert!(matches!(
            read_only.inbound(&who, Bytes::from_static(ok), true),
            Inbound::Forward { watch: true, .. }
        ));
        // An audit log alone decides nothing, as before.
        let audit_only = ProxyPolicy::new(Policy::default(), None, "up".into(), Box::new(|| None));
        assert!(matches!(
            audit_only.inbound(&who, Bytes::from_static(b"not json"), true),
            Inbound::Forward { .. }
        ));
    }
}
