//! The relay's hooks into the tool policy ([`crate::policy`]). Only four kinds of message are
//! looked at; everything else keeps the zero-copy path:
//!
//! - from the client: `initialize` (does it declare elicitation?), `tools/list` (its answer
//!   must be filtered), `tools/call` (decided before it is sent: refused, confirmed, given a
//!   region), and answers to the bridge's own `elicitation/create` requests (never relayed);
//! - from the server: answers to those `tools/list` and `tools/call` requests (filtered,
//!   audited) and `notifications/tools/list_changed` (the listing is forgotten).
//!
//! A confirmation is one more request on stdout with a bridge-owned id
//! ([`crate::policy::confirm::ConfirmIds`]); the relay task of the `tools/call` waits for the
//! client's answer to it, then relays the call once or answers it itself.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use super::Outbox;
use crate::jsonrpc::{Id, Kind, Message};
use crate::policy::audit::AuditLog;
use crate::policy::confirm::{self, Answer, ConfirmIds};
use crate::policy::quote::{self, QuoteIds};
use crate::policy::redact::call_arguments;
use crate::policy::{
    self, messages, Decision, Origin, Pending, Policy, Record, Rule, Session, Verdict,
};
use crate::upstream::{Upstream, UpstreamError};

pub use crate::policy::Identity;

mod pinning;

/// The policy of one bridge session.
pub struct ToolPolicy {
    policy: Policy,
    session: Mutex<Session>,
    audit: Option<AuditLog>,
    ids: ConfirmIds,
    /// Confirmations asked and not yet answered: our request id → the waiting relay task.
    waiting: Mutex<HashMap<Id, oneshot::Sender<Bytes>>>,
    /// Quotes asked (`--estimate-cost`) and not answered yet: our request id → the waiting
    /// relay task.
    quotes: Mutex<HashMap<Id, oneshot::Sender<Bytes>>>,
    quote_ids: QuoteIds,
    /// Signalled when a confirmation is asked (the relay then reads stdin past its cap).
    asked: tokio::sync::Notify,
    /// The upstream's host (and port), for the audit log.
    upstream: String,
    identity: Identity,
    /// `--pin-tools`.
    pins: Option<pinning::PinSetup>,
    /// This policy, for the tasks it starts (a pin question).
    me: std::sync::Weak<ToolPolicy>,
}

impl ToolPolicy {
    /// `pins`: the pin store and the endpoint as people see it, with `--pin-tools`.
    pub fn new(
        policy: Policy,
        audit: Option<AuditLog>,
        upstream: String,
        identity: Identity,
        pins: Option<(crate::policy::pins::PinStore, String)>,
    ) -> std::sync::Arc<Self> {
        std::sync::Arc::new_cyclic(|me| ToolPolicy {
            pins: pins.map(|(store, endpoint)| pinning::PinSetup::new(store, endpoint)),
            me: me.clone(),
            policy,
            session: Mutex::new(Session::default()),
            audit,
            ids: ConfirmIds::default(),
            waiting: Mutex::new(HashMap::new()),
            quotes: Mutex::new(HashMap::new()),
            quote_ids: QuoteIds,
            asked: tokio::sync::Notify::new(),
            upstream,
            identity,
        })
    }

    /// Gives the pins the outbox they ask and announce through.
    pub fn bind_outbox(&self, outbox: &std::sync::Arc<Outbox>) {
        if let Some(ps) = &self.pins {
            ps.bind_outbox(outbox);
        }
    }

    /// Whether client messages go through the strict reader ([`crate::policy::strict`]): when
    /// any flag limits calls (an audit log or a default region alone decides nothing).
    pub fn strict(&self) -> bool {
        self.policy.constrains()
    }

    /// Records a message the strict reader refused.
    pub fn audit_malformed(&self, why: &crate::policy::strict::Malformed) {
        self.audit(Record::malformed(self.origin(), why));
    }

    /// Confirmations asked and not answered yet.
    pub fn asking(&self) -> usize {
        self.waiting.lock().unwrap().len()
    }

    /// Completes once a confirmation has been asked since the last call.
    pub async fn asked(&self) {
        self.asked.notified().await
    }

    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Looks at a client message as it is read. `true` when it was the client's answer to one
    /// of the bridge's own requests: it is consumed here and never relayed.
    pub fn from_client(&self, msg: &Message) -> bool {
        match msg.kind {
            Kind::Response => {
                let ours = |id: &&Id| self.ids.owns(id) || pinning::is_pin_id(id);
                let Some(id) = msg.id.as_ref().filter(ours) else {
                    return false;
                };
                match self.waiting.lock().unwrap().remove(id) {
                    Some(tx) => {
                        let _ = tx.send(msg.bytes.clone());
                    }
                    None => debug!(%id, "dropping a second answer to a confirmation"),
                }
                true
            }
            Kind::Request if msg.method_is("initialize") => {
                let elicits = confirm::client_can_elicit(&msg.bytes);
                self.session().client_elicits = elicits;
                false
            }
            Kind::Request if msg.method_is("tools/list") => {
                if let Some(id) = msg.id.clone() {
                    self.session().expect_list(id);
                }
                false
            }
            _ => false,
        }
    }

    /// Decides a `tools/call` before it is sent. `Some(message)` (maybe with a region added)
    /// to relay; `None` when the bridge has answered it itself (refused, or not confirmed).
    pub async fn check_call(
        &self,
        msg: Message,
        outbox: &Outbox,
        upstream: &Upstream,
    ) -> Option<Message> {
        let id = msg.id.clone()?;
        let started = Instant::now();
        let Some(call) = messages::read_call(&msg.bytes) else {
            let decision = self.policy.decide("", None, None);
            self.refuse(
                outbox,
                &id,
                "(unreadable)",
                &decision,
                Rule::Unreadable,
                None,
            )
            .await;
            return None;
        };
        let args = call.arguments.as_ref();
        let info = self.session().tool(&call.name).copied();
        let decision = self.policy.decide(&call.name, info.as_ref(), args);
        crate::telemetry::api_actions(decision.class.apis.iter().flatten().map(|a| a.label()));
        // The policy's own refusals come first: a tool it hides is never judged by the pins.
        if let (Some(ps), false) = (&self.pins, matches!(decision.verdict, Verdict::Refuse(_))) {
            let checked = {
                let _span = crate::telemetry::Child::start("alibridge.pin_check");
                self.pin_check(ps, &call.name)
            };
            if let Err(why) = checked {
                self.refuse(
                    outbox,
                    &id,
                    &call.name,
                    &decision,
                    Rule::Unpinned(why),
                    args,
                )
                .await;
                return None;
            }
        }
        let region = self
            .policy
            .region_for(info.as_ref(), args)
            .map(str::to_string);
        let mut confirmed = false;
        match &decision.verdict {
            Verdict::Refuse(rule) => {
                self.refuse(outbox, &id, &call.name, &decision, rule.clone(), args)
                    .await;
                return None;
            }
            Verdict::Confirm if !self.session().client_elicits => {
                self.refuse(
                    outbox,
                    &id,
                    &call.name,
                    &decision,
                    Rule::CannotConfirm,
                    args,
                )
                .await;
                return None;
            }
            Verdict::Confirm => {
                let shown = policy::region_of(args, region.as_deref());
                let price = self.quote(upstream, &call.name, args).await;
                let prompt = confirm::Prompt {
                    tool: &call.name,
                    class: &decision.class,
                    region: shown.as_deref(),
                    arguments: args,
                    price: price.as_deref(),
                };
                let asked = self.ask(outbox, &prompt);
                let answer = crate::telemetry::traced("alibridge.confirmation", asked).await;
                confirmation_outcome(&answer);
                if answer != Answer::Confirmed {
                    info!(tool = %call.name, answer = answer.as_str(), "write not confirmed; not relayed");
                    self.audit(Record::unconfirmed(
                        self.origin(),
                        &call.name,
                        &decision.class,
                        &answer,
                        started,
                        call_arguments(args),
                    ));
                    outbox
                        .answer(&id, confirm::refused_result(&id, &call.name, &answer))
                        .await;
                    return None;
                }
                if !outbox.wants(&id) {
                    // The client cancelled the call while the person was deciding.
                    info!(tool = %call.name, "confirmed, but the client cancelled the call; not relayed");
                    self.audit(Record {
                        tool: &call.name,
                        class: Some(&decision.class),
                        decision: "cancelled",
                        rule: None,
                        confirmed: true,
                        outcome: "not_sent",
                        error: Some("the client cancelled the call".into()),
                        duration_ms: started.elapsed().as_millis(),
                        upstream: &self.upstream,
                        server: None,
                        identity: (self.identity)(),
                        region_added: None,
                        arguments: call_arguments(args),
                    });
                    return None;
                }
                confirmed = true;
            }
            Verdict::Relay => {}
        }
        let msg = match &region {
            Some(r) => match messages::with_region(&msg.bytes, r).map(Message::parse) {
                Some(Ok(m)) => {
                    debug!(tool = %call.name, region = %r, "added the default region");
                    m
                }
                _ => msg,
            },
            None => msg,
        };
        crate::telemetry::decision(if confirmed { "confirmed" } else { "allow" });
        if self.audit.is_some() {
            self.session().expect_call(
                id,
                Pending {
                    tool: call.name.clone(),
                    class: decision.class.clone(),
                    confirmed,
                    region_added: region,
                    arguments: call_arguments(args),
                    started,
                },
            );
        }
        Some(msg)
    }

    /// The price line of the confirmation form for a CallCLI write: the same command run with
    /// `--estimate-cost` (the server quotes and executes nothing); `None` for calls that get no
    /// quote ([`crate::policy::quote::request`]).
    async fn quote(
        &self,
        upstream: &Upstream,
        tool: &str,
        args: Option<&serde_json::Value>,
    ) -> Option<String> {
        let id = self.quote_ids.mint();
        let request = quote::request(&id, tool, args)?;
        let msg = Message::parse(request).ok()?;
        let (tx, rx) = oneshot::channel();
        self.quotes.lock().unwrap().insert(id.clone(), tx);
        debug!(
            tool,
            "asking the server for a quote before the confirmation"
        );
        let answer = async {
            upstream.send(msg).await.ok()?;
            rx.await.ok()
        };
        let answer = tokio::time::timeout(quote::QUOTE_TIMEOUT, answer)
            .await
            .ok()
            .flatten();
        self.quotes.lock().unwrap().remove(&id);
        Some(quote::shown(answer.as_deref()))
    }

    /// Sends the confirmation request and waits for the client's answer.
    async fn ask(&self, outbox: &Outbox, prompt: &confirm::Prompt<'_>) -> Answer {
        let our_id = self.ids.mint();
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().unwrap().insert(our_id.clone(), tx);
        self.asked.notify_one();
        debug!(id = %our_id, tool = prompt.tool, "asking the client to confirm a write");
        outbox.write(confirm::request(&our_id, prompt)).await;
        let limit = self
            .policy
            .confirm_timeout
            .unwrap_or(policy::DEFAULT_CONFIRM_TIMEOUT);
        match tokio::time::timeout(limit, rx).await {
            Ok(Ok(bytes)) => confirm::answer(&bytes),
            Ok(Err(_)) => Answer::Failed("the client went away before answering".into()),
            Err(_) => {
                // A late answer is then dropped as a second answer would be.
                self.waiting.lock().unwrap().remove(&our_id);
                crate::telemetry::count(crate::telemetry::Event::ConfirmTimedOut);
                Answer::Failed(format!(
                    "nobody answered within --confirm-timeout ({} s)",
                    limit.as_secs_f64()
                ))
            }
        }
    }

    async fn refuse(
        &self,
        outbox: &Outbox,
        id: &Id,
        tool: &str,
        decision: &Decision,
        rule: Rule,
        args: Option<&serde_json::Value>,
    ) {
        warn!(tool, rule = %rule.name(), "refused a tool call");
        crate::telemetry::refused(tool, &rule.name());
        self.audit(Record::denied(self.origin(), tool, decision, &rule, args));
        outbox
            .answer(id, policy::refusal(id, tool, decision, &rule))
            .await;
    }

    /// Looks at a server message before it goes to stdout: filters `tools/list` answers,
    /// audits `tools/call` answers, forgets the listing on `list_changed`.
    pub fn from_server(&self, msg: Message) -> Message {
        match msg.kind {
            Kind::Response => {
                let Some(id) = msg.id.as_ref() else {
                    return msg;
                };
                if self.quote_ids.owns(id) {
                    // The bridge's own quote: taken here; the outbox drops it (no client
                    // request has this id).
                    if let Some(tx) = self.quotes.lock().unwrap().remove(id) {
                        let _ = tx.send(msg.bytes.clone());
                    }
                    return msg;
                }
                let (list, call) = {
                    let mut s = self.session();
                    (s.take_list(id), s.take_call(id))
                };
                if list {
                    let filtered = match &self.pins {
                        Some(ps) => match self.filter_pinned(ps, id, &msg.bytes) {
                            Ok(f) => f,
                            Err(refusal) => return Message::parse(refusal).unwrap_or(msg),
                        },
                        None => {
                            policy::filter_list(&self.policy, &mut self.session(), None, &msg.bytes)
                                .ok()
                                .flatten()
                        }
                    };
                    if let Some(Ok(m)) = filtered.map(Message::parse) {
                        return m;
                    }
                }
                if let Some(p) = call {
                    let (outcome, error) = messages::outcome(&msg.bytes);
                    self.audit_answered(p, outcome, error);
                }
                msg
            }
            Kind::Notification if msg.method_is("notifications/tools/list_changed") => {
                self.session().forget_tools();
                msg
            }
            _ => msg,
        }
    }

    /// The bridge answered request `id` with `err` (upstream failure, timeout, shutdown).
    pub fn failed(&self, id: &Id, err: &UpstreamError) {
        let (_, call) = {
            let mut s = self.session();
            (s.take_list(id), s.take_call(id))
        };
        if let Some(p) = call {
            self.audit_answered(p, "error", Some(policy::redact::cut(&err.to_string())));
        }
    }

    fn audit_answered(&self, p: Pending, outcome: &str, error: Option<String>) {
        self.audit(Record::answered(self.origin(), &p, outcome, error));
    }

    fn origin(&self) -> Origin<'_> {
        Origin {
            upstream: &self.upstream,
            server: None,
            identity: (self.identity)(),
        }
    }

    fn audit(&self, r: Record<'_>) {
        if let Some(log) = &self.audit {
            log.append(&r.to_json());
        }
    }
}

/// Counts the person's answer to a confirmation (a timeout is counted where it happens).
fn confirmation_outcome(answer: &Answer) {
    use crate::telemetry::{count, decision, Event};
    match answer {
        Answer::Confirmed => count(Event::ConfirmAccepted),
        Answer::Declined | Answer::Cancelled => {
            count(Event::ConfirmDeclined);
            decision("declined");
        }
        Answer::Failed(_) => decision("not_confirmed"),
    }
}
