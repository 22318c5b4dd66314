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
//! - a batch (JSON array, 2025-03-26) holding `tools/list` or `tools/call` is refused: it
//!   could not be filtered message by message.
//!
//! SSE events that need no change keep their exact bytes (`id:`, `retry:`, comments).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hyper::header::HeaderMap;
use hyper::StatusCode;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use super::access::Presented;
use crate::jsonrpc::{self, Id, InvalidMessage, Kind, Message};
use crate::policy::audit::AuditLog;
use crate::policy::confirm::{self, Answer};
use crate::policy::quote::{self, QuoteIds};

mod pinning;
use crate::policy::redact::call_arguments;
use crate::policy::strict::{self, Malformed};
use crate::policy::{
    self, messages, Decision, Origin, Pending, Policy, Record, Rule, Session, Verdict,
};
pub use pinning::ProxyPins;

/// Client sessions remembered per proxy; past this the oldest are forgotten (their calls are
/// then judged by name alone, which only ever refuses more).
const MAX_SESSIONS: usize = 4096;
/// Largest SSE event or JSON answer read for the policy (larger answers end the stream).
pub const MAX_EVENT: usize = 64 << 20;
/// Confirmations open at once per proxy. Each holds a request body, so past this a write that
/// needs one is refused rather than letting clients grow the proxy's memory without bound.
pub const MAX_WAITING: usize = 1024;
/// Longest `Mcp-Session-Id` the proxy keys a session on.
pub const MAX_SESSION_ID: usize = 256;
/// How the proxy's own request ids start; 128 random bits (hex) follow, drawn per
/// confirmation, so seeing one id tells nothing about the next.
const CONFIRM_PREFIX: &str = "alibridge-proxy-confirm-";

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

/// An open confirmation: who may answer it, and the exchange waiting for the answer.
struct Waiter {
    owner: Caller,
    tool: String,
    tx: oneshot::Sender<Bytes>,
}

type Waiting = Arc<Mutex<HashMap<Id, Waiter>>>;

/// A confirmation's entry in the open ones, given up when the confirmation ends however it
/// ends (answered, timed out, its client gone, its exchange dropped): no entry outlives it.
struct Ticket {
    waiting: Waiting,
    id: Id,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        lock(&self.waiting).remove(&self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why the proxy will not key a session on a request's `Mcp-Session-Id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadSessionId {
    #[error("its Mcp-Session-Id header is longer than {MAX_SESSION_ID} bytes")]
    TooLong,
    #[error("its Mcp-Session-Id header holds a character that is not visible ASCII (0x21-0x7E)")]
    NotVisibleAscii,
    #[error("it carries more than one Mcp-Session-Id header")]
    Repeated,
}

/// The `Mcp-Session-Id` of a request (empty when it has none), if the proxy may key a session
/// on it: one header, at most [`MAX_SESSION_ID`] bytes of visible ASCII (what MCP's Streamable
/// HTTP transport allows). Anything else could grow the session table without bound or make
/// two spellings of one session.
pub fn session_id(headers: &HeaderMap) -> Result<String, BadSessionId> {
    let mut values = headers.get_all("mcp-session-id").iter();
    let Some(value) = values.next() else {
        return Ok(String::new());
    };
    if values.next().is_some() {
        return Err(BadSessionId::Repeated);
    }
    let raw = value.as_bytes();
    if raw.len() > MAX_SESSION_ID {
        return Err(BadSessionId::TooLong);
    }
    if !raw.iter().all(|b| (0x21..=0x7E).contains(b)) {
        return Err(BadSessionId::NotVisibleAscii);
    }
    // Checked above: every byte is ASCII.
    Ok(raw.iter().map(|&b| char::from(b)).collect())
}

/// The JSON-RPC error (id `null`) a request with an unusable `Mcp-Session-Id` gets, with HTTP
/// 400.
pub fn session_id_refusal(why: &BadSessionId) -> Bytes {
    jsonrpc::error_response(
        None,
        jsonrpc::code::INVALID_REQUEST,
        &format!(
            "alibridge proxy refused the request: {why}. A session id is one header of at most \
             {MAX_SESSION_ID} visible ASCII characters (0x21-0x7E); nothing was sent to the server"
        ),
        Some(json!({"alibridge": {"kind": "policy", "rule": "session-id"}})),
    )
}

/// The policy of one running proxy.
pub struct ProxyPolicy {
    policy: Policy,
    audit: Option<AuditLog>,
    upstream: String,
    sessions: Mutex<HashMap<Key, (u64, Session)>>,
    next_seq: std::sync::atomic::AtomicU64,
    /// Confirmations asked and not answered yet: our request id → its owner and exchange.
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
        }
    }
}

/// A write waiting for the person's answer. Dropping it closes the confirmation.
pub struct Confirmation {
    pub key: Key,
    pub id: Id,
    pub tool: String,
    /// The `elicitation/create` to send first.
    pub request: Bytes,
    answer: oneshot::Receiver<Bytes>,
    /// What to forward once confirmed.
    pub body: Bytes,
    decision: Decision,
    region: Option<String>,
    arguments: Value,
    started: Instant,
    ticket: Ticket,
    /// The price quote to ask the server for before the person is asked (a CLI write), with
    /// what is needed to ask again with the price: our request id, the raw arguments, the
    /// region shown.
    pub quote: Option<(Id, Bytes)>,
    our_id: Id,
    raw_arguments: Option<Value>,
    shown_region: Option<String>,
}

impl Confirmation {
    /// Puts the price line ([`crate::policy::quote::shown`]) into the question.
    pub fn priced(&mut self, price: &str) {
        self.request = confirm::request(
            &self.our_id,
            &confirm::Prompt {
                tool: &self.tool,
                class: &self.decision.class,
                region: self.shown_region.as_deref(),
                arguments: self.raw_arguments.as_ref(),
                price: Some(price),
            },
        );
    }
}

/// How a confirmation's wait ended.
enum Ended {
    Answered(Answer),
    TimedOut(Duration),
    ClientGone,
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

    /// Runs `f` on the session `key` (created when new).
    fn with_session<T>(&self, key: &Key, f: impl FnOnce(&mut Session) -> T) -> T {
        let mut map = lock(&self.sessions);
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
            Kind::Response => match msg.id.as_ref().filter(|id| is_confirm_id(id)) {
                Some(id) => self.answer(caller, id, msg.bytes.clone()),
                None => Inbound::plain(body),
            },
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

    /// The client's answer to confirmation `id`: taken when `caller` asked it; refused (and
    /// the confirmation left open for its owner) when another session or token sends it.
    fn answer(&self, caller: &Caller, id: &Id, bytes: Bytes) -> Inbound {
        let mut waiting = lock(&self.waiting);
        let Some(w) = waiting.get(id) else {
            drop(waiting);
            debug!(%id, "dropping an answer to no open confirmation (late, or a second one)");
            return Inbound::Consumed;
        };
        if w.owner != *caller {
            let tool = w.tool.clone();
            drop(waiting);
            return self.foreign_answer(caller, &tool);
        }
        if let Some(w) = waiting.remove(id) {
            let _ = w.tx.send(bytes);
        }
        Inbound::Consumed
    }

    fn foreign_answer(&self, caller: &Caller, tool: &str) -> Inbound {
        warn!(
            server = %caller.key.0,
            tool,
            "refused an answer to a confirmation another client session asked for; it stays open for its owner"
        );
        self.audit(Record {
            tool,
            class: None,
            decision: "denied",
            rule: Some("confirmation-owner".into()),
            confirmed: false,
            outcome: "not_sent",
            error: Some(
                "an answer came from another client session (or proxy token) than the one that \
                 made the call; the confirmation stays open"
                    .into(),
            ),
            duration_ms: 0,
            upstream: &self.upstream,
            server: Some(&caller.key.0),
            identity: (self.identity)(),
            region_added: None,
            arguments: Value::Null,
        });
        Inbound::Reject {
            status: StatusCode::FORBIDDEN,
            body: jsonrpc::error_response(
                None,
                jsonrpc::code::INVALID_REQUEST,
                "alibridge proxy refused this answer: the confirmation it answers was asked by \
                 another client session (Mcp-Session-Id and proxy token); only that session can \
                 answer it",
                Some(json!({"alibridge": {"kind": "policy", "rule": "confirmation-owner"}})),
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

    /// A write that needs a confirmation while [`MAX_WAITING`] are open: refused.
    fn too_many(
        &self,
        key: &Key,
        id: &Id,
        tool: &str,
        decision: &Decision,
        args: Option<&Value>,
    ) -> Bytes {
        warn!(server = %key.0, tool, limit = MAX_WAITING, "refused a write: too many confirmations open");
        let mut record = Record::denied(
            self.origin(Some(&key.0)),
            tool,
            decision,
            &Rule::CannotConfirm,
            args,
        );
        record.rule = Some("confirmations-full".into());
        self.audit(record);
        jsonrpc::error_response(
            Some(id),
            policy::REFUSAL_CODE,
            &format!(
                "alibridge proxy refused to call {tool}: it is a write, --confirm-writes asks the \
                 person to confirm it, and {MAX_WAITING} confirmations are already waiting for an \
                 answer. Nothing was sent to the server; answer or cancel the open confirmations, \
                 then try again."
            ),
            Some(json!({"alibridge": {
                "kind": "policy",
                "rule": "confirmations-full",
                "tool": tool,
                "action": decision.class.action,
                "access": decision.class.access.as_str(),
            }})),
        )
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
    /// confirmed; else `Err` with the tool result that tells the model no, or `Err(None)` when
    /// `client_gone` completed first (nobody to tell). Waits at most `--confirm-timeout`;
    /// however it ends, the confirmation is closed and its held body dropped.
    pub async fn await_confirmation(
        &self,
        c: Confirmation,
        client_gone: impl Future<Output = ()>,
    ) -> Result<(Bytes, Tracked), Option<Bytes>> {
        let Confirmation {
            key,
            id,
            tool,
            answer,
            body,
            decision,
            region,
            arguments,
            started,
            ticket,
            ..
        } = c;
        let limit = self.confirm_timeout();
        let ended = tokio::select! {
            a = answer => Ended::Answered(match a {
                Ok(bytes) => confirm::answer(&bytes),
                Err(_) => Answer::Failed("no answer came".into()),
            }),
            _ = tokio::time::sleep(limit) => Ended::TimedOut(limit),
            _ = client_gone => Ended::ClientGone,
        };
        // Closed before anything is logged, so whoever reads the log sees it closed.
        drop(ticket);
        let origin = self.origin(Some(&key.0));
        let (answer, outcome) = match ended {
            Ended::Answered(Answer::Confirmed) => {
                info!(server = %key.0, tool = %tool, "write confirmed; relaying it");
                let tracked = self.track(id, &tool, &decision, true, region, arguments, started);
                return Ok((body, tracked));
            }
            Ended::Answered(answer) => (answer, None),
            Ended::TimedOut(limit) => {
                let why = format!(
                    "nobody answered within {} (--confirm-timeout)",
                    seconds(limit)
                );
                (Answer::Failed(why), Some("timeout"))
            }
            Ended::ClientGone => {
                drop(body);
                info!(server = %key.0, tool = %tool, "confirmation cancelled: the client disconnected");
                let why = "the client disconnected before the person answered";
                let mut record = Record::unconfirmed(
                    origin,
                    &tool,
                    &decision.class,
                    &Answer::Cancelled,
                    started,
                    arguments,
                );
                record.error = Some(why.into());
                self.audit(record);
                return Err(None);
            }
        };
        info!(server = %key.0, tool = %tool, answer = answer.as_str(), "write not confirmed");
        let mut record =
            Record::unconfirmed(origin, &tool, &decision.class, &answer, started, arguments);
        if let Some(o) = outcome {
            record.outcome = o;
        }
        self.audit(record);
        Err(Some(confirm::refused_result(&id, &tool, &answer)))
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

/// A fresh id for the proxy's own request: [`CONFIRM_PREFIX`] and 128 random bits.
fn mint_confirm_id() -> Id {
    let hex = crate::random::hex::<16>();
    Id::from_json(&format!("\"{CONFIRM_PREFIX}{hex}\""))
}

/// Whether `id` has the shape of the proxy's own request ids (an answer to one is never
/// forwarded, open or not).
fn is_confirm_id(id: &Id) -> bool {
    id.as_json()
        .strip_prefix('"')
        .is_some_and(|s| s.starts_with(CONFIRM_PREFIX))
}

/// `5 s`, `1.5 s`.
fn seconds(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
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
    use hyper::header::HeaderValue;

    fn headers(sids: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for s in sids {
            h.append("mcp-session-id", HeaderValue::from_bytes(s).unwrap());
        }
        h
    }

    #[test]
    fn session_ids_are_one_short_visible_ascii_header() {
        assert_eq!(session_id(&HeaderMap::new()), Ok(String::new()));
        assert_eq!(session_id(&headers(&[b"a-B_9.~"])), Ok("a-B_9.~".into()));
        let longest = "s".repeat(MAX_SESSION_ID);
        assert_eq!(session_id(&headers(&[longest.as_bytes()])), Ok(longest));
        let long = "s".repeat(MAX_SESSION_ID + 1);
        assert_eq!(
            session_id(&headers(&[long.as_bytes()])),
            Err(BadSessionId::TooLong)
        );
        for bad in [b"a b".as_slice(), b"caf\xe9", b"tab\there"] {
            assert_eq!(
                session_id(&headers(&[bad])),
                Err(BadSessionId::NotVisibleAscii),
                "{bad:?}"
            );
        }
        assert_eq!(
            session_id(&headers(&[b"a", b"b"])),
            Err(BadSessionId::Repeated)
        );
        let v: Value = serde_json::from_slice(&session_id_refusal(&BadSessionId::TooLong)).unwrap();
        assert_eq!(v["id"], Value::Null);
        assert_eq!(v["error"]["data"]["alibridge"]["rule"], "session-id");
    }

    #[test]
    fn confirm_ids_are_random_per_confirmation() {
        let (a, b) = (mint_confirm_id(), mint_confirm_id());
        assert_ne!(a, b);
        assert!(is_confirm_id(&a) && is_confirm_id(&b));
        let hex = a
            .as_json()
            .trim_matches('"')
            .strip_prefix(CONFIRM_PREFIX)
            .unwrap();
        assert_eq!(hex.len(), 32, "128 bits");
        assert!(!is_confirm_id(&Id::from_json("7")));
        assert!(!is_confirm_id(&Id::from_json("\"alibridge-confirm-1\"")));
    }

    fn confirming(timeout: Option<Duration>) -> ProxyPolicy {
        let policy = Policy {
            confirm_writes: true,
            confirm_timeout: timeout,
            ..Policy::default()
        };
        ProxyPolicy::new(policy, None, "up".into(), Box::new(|| None))
    }

    fn caller(session: &str) -> Caller {
        Caller {
            key: ("/s/mcp".into(), session.into()),
            token: None,
        }
    }

    const WRITE: &str = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"DeleteInstance","arguments":{"InstanceId":"i-1"}}}"#;

    /// Asks for a confirmation as `who` (whose client elicits).
    fn ask(pp: &ProxyPolicy, who: &Caller) -> Box<Confirmation> {
        pp.initialized(&who.key, true);
        match pp.inbound(who, Bytes::from_static(WRITE.as_bytes()), true) {
            Inbound::Confirm(c) => c,
            _ => panic!("expected a confirmation"),
        }
    }

    fn answer_to(c: &Confirmation) -> Bytes {
        let req: Value = serde_json::from_slice(&c.request).unwrap();
        let id = req["id"].as_str().unwrap();
        Bytes::from(
            json!({"jsonrpc": "2.0", "id": id, "result": {"action": "accept", "content": {"confirm": true}}})
                .to_string(),
        )
    }

    fn status(i: &Inbound) -> Option<StatusCode> {
        match i {
            Inbound::Reject { status, .. } => Some(*status),
            Inbound::Consumed => Some(StatusCode::ACCEPTED),
            _ => None,
        }
    }

    #[tokio::test]
    async fn only_the_asking_session_and_token_can_answer() {
        let pp = confirming(None);
        let owner = Caller {
            token: crate::proxy::access::presented(&{
                let mut h = HeaderMap::new();
                h.insert("authorization", HeaderValue::from_static("Bearer t1"));
                h
            })
            .ok(),
            ..caller("A")
        };
        let c = ask(&pp, &owner);
        let yes = answer_to(&c);
        let stranger = caller("B");
        let other_token = Caller {
            token: None,
            ..owner.clone()
        };
        for who in [&stranger, &other_token] {
            let r = pp.inbound(who, yes.clone(), true);
            assert_eq!(status(&r), Some(StatusCode::FORBIDDEN));
            assert_eq!(pp.waiting(), 1, "still open for its owner");
        }
        assert_eq!(
            status(&pp.inbound(&owner, yes.clone(), true)),
            Some(StatusCode::ACCEPTED)
        );
        assert_eq!(pp.waiting(), 0);
        let (body, _) = pp
            .await_confirmation(*c, std::future::pending())
            .await
            .expect("confirmed");
        assert_eq!(body, WRITE.as_bytes());
        assert_eq!(
            status(&pp.inbound(&owner, yes, true)),
            Some(StatusCode::ACCEPTED),
            "a late answer is dropped, never forwarded"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unanswered_confirmation_times_out_and_is_closed() {
        let pp = confirming(Some(Duration::from_secs(1)));
        let c = ask(&pp, &caller("A"));
        assert_eq!(pp.waiting(), 1);
        let refused = pp
            .await_confirmation(*c, std::future::pending())
            .await
            .err()
            .flatten()
            .expect("a tool result for the model");
        let v: Value = serde_json::from_slice(&refused).unwrap();
        assert_eq!(v["id"], 3);
        assert_eq!(v["result"]["isError"], true);
        assert!(v["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("nobody answered within 1 s"));
        assert_eq!(pp.waiting(), 0);
    }

    #[tokio::test]
    async fn a_departed_client_or_a_dropped_exchange_closes_the_confirmation() {
        let pp = confirming(None);
        let c = ask(&pp, &caller("A"));
        assert!(matches!(
            pp.await_confirmation(*c, std::future::ready(())).await,
            Err(None)
        ));
        assert_eq!(pp.waiting(), 0);
        drop(ask(&pp, &caller("A")));
        assert_eq!(pp.waiting(), 0);
    }

    #[test]
    fn open_confirmations_are_capped() {
        let pp = confirming(None);
        let open: Vec<_> = (0..MAX_WAITING).map(|_| ask(&pp, &caller("A"))).collect();
        assert_eq!(pp.waiting(), MAX_WAITING);
        match pp.inbound(&caller("A"), Bytes::from_static(WRITE.as_bytes()), true) {
            Inbound::Answer(b) => {
                let v: Value = serde_json::from_slice(&b).unwrap();
                assert_eq!(v["id"], 3);
                assert_eq!(
                    v["error"]["data"]["alibridge"]["rule"],
                    "confirmations-full"
                );
            }
            _ => panic!("expected a refusal"),
        }
        drop(open);
        assert_eq!(pp.waiting(), 0);
    }

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
