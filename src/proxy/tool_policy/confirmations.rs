//! Confirmations in `alibridge proxy` (`--confirm-writes`): each one belongs to the caller that
//! made the call (session and proxy token) under an id of 128 random bits; an answer from
//! anyone else is refused (HTTP 403) and the confirmation stays open for its owner. A
//! confirmation waits at most `--confirm-timeout`, ends when its client goes away (the held
//! request body is dropped then), and at most [`MAX_WAITING`] are open at once.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use super::{
    lock, Caller, Inbound, Key, ProxyPolicy, Tracked, CONFIRM_PREFIX, MAX_WAITING, PIN_PREFIX,
};
use crate::jsonrpc::{self, Id};
use crate::policy::confirm::{self, Answer};
use crate::policy::{self, Decision, Record, Rule};

/// An open confirmation: who may answer it, and the exchange waiting for the answer.
pub(super) struct Waiter {
    pub(super) owner: Caller,
    pub(super) tool: String,
    pub(super) tx: oneshot::Sender<Bytes>,
}

pub(super) type Waiting = Arc<Mutex<HashMap<Id, Waiter>>>;

/// A confirmation's entry in the open ones, given up when the confirmation ends however it
/// ends (answered, timed out, its client gone, its exchange dropped): no entry outlives it.
pub(super) struct Ticket {
    pub(super) waiting: Waiting,
    pub(super) id: Id,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        lock(&self.waiting).remove(&self.id);
    }
}

/// A write waiting for the person's answer. Dropping it closes the confirmation.
pub struct Confirmation {
    pub key: Key,
    pub id: Id,
    pub tool: String,
    /// The `elicitation/create` to send first.
    pub request: Bytes,
    pub(super) answer: oneshot::Receiver<Bytes>,
    /// What to forward once confirmed.
    pub body: Bytes,
    pub(super) decision: Decision,
    pub(super) region: Option<String>,
    pub(super) arguments: Value,
    pub(super) started: Instant,
    pub(super) ticket: Ticket,
    /// The price quote to ask the server for before the person is asked (a CLI write), with
    /// what is needed to ask again with the price: our request id, the raw arguments, the
    /// region shown.
    pub quote: Option<(Id, Bytes)>,
    pub(super) our_id: Id,
    pub(super) raw_arguments: Option<Value>,
    pub(super) shown_region: Option<String>,
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

/// A fresh id for one of the proxy's own requests: `prefix` and 128 random bits.
pub(super) fn mint_id(prefix: &str) -> Id {
    let hex = crate::random::hex::<16>();
    Id::from_json(&format!("\"{prefix}{hex}\""))
}

/// A fresh id for a confirmation ([`CONFIRM_PREFIX`]).
pub(super) fn mint_confirm_id() -> Id {
    mint_id(CONFIRM_PREFIX)
}

fn has_prefix(id: &Id, prefix: &str) -> bool {
    id.as_json()
        .strip_prefix('"')
        .is_some_and(|s| s.starts_with(prefix))
}

/// Whether `id` has the shape of a confirmation's id.
#[cfg(test)]
fn is_confirm_id(id: &Id) -> bool {
    has_prefix(id, CONFIRM_PREFIX)
}

/// Whether `id` has the shape of the proxy's own request ids (confirmations and questions
/// about held-back tools): an answer to one is never forwarded, open or not.
pub(super) fn is_own_id(id: &Id) -> bool {
    has_prefix(id, CONFIRM_PREFIX) || has_prefix(id, PIN_PREFIX)
}

/// `5 s`, `1.5 s`.
pub(super) fn seconds(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

impl ProxyPolicy {
    /// The client's answer to confirmation `id`: taken when `caller` asked it; refused (and
    /// the confirmation left open for its owner) when another session or token sends it.
    pub(super) fn answer(&self, caller: &Caller, id: &Id, bytes: Bytes) -> Inbound {
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
                "alibridge proxy refused this answer: the confirmation (or question about \
                 held-back tools) it answers was asked by another client session (Mcp-Session-Id \
                 and proxy token); only that session can answer it",
                Some(json!({"alibridge": {"kind": "policy", "rule": "confirmation-owner"}})),
            ),
        }
    }

    /// A write that needs a confirmation while [`MAX_WAITING`] are open: refused.
    pub(super) fn too_many(
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
}

#[cfg(test)]
mod tests {
    use hyper::header::{HeaderMap, HeaderValue};

    use super::super::tests::{caller, status, WRITE};
    use super::*;
    use crate::policy::Policy;

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
}
