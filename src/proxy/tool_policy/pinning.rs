//! `--pin-tools` in `alibridge proxy`: the pins of each upstream server (the upstream URL a
//! request is forwarded to) and identity. `tools/list` answers, in JSON bodies and SSE streams
//! alike, are judged against them; new and changed tools are held back and a call of one is
//! refused.
//!
//! Approval: when the listing's client declared elicitation and accepts SSE answers
//! ([`Asker`]), an answer that holds back tools becomes a question first ([`PinQuestion`]:
//! form-mode `elicitation/create`, an `alibridge-proxy-pin-` id with 128 random bits, owned by
//! the asking session and proxy token like a confirmation, within `--confirm-timeout`, ended by
//! a departing client). Accepted, the tools shown are pinned and the listing, judged again,
//! carries them; declined, it goes without them and this client session is not asked about
//! those definitions again. For clients that cannot be asked, `alibridge tools <upstream URL>
//! --approve` pins them for the proxy's next start.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use bytes::Bytes;
use reqwest::Url;
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::confirmations::{mint_id, seconds};
use super::{lock, Caller, Key, ProxyPolicy, Ticket, Waiter, MAX_WAITING, PIN_PREFIX};
use crate::jsonrpc::{Id, Kind, Message};
use crate::net::display_url;
use crate::policy::confirm::{self, Answer};
use crate::policy::pins::{self, Change, PinError, PinStore, Pins};
use crate::policy::{self, messages, Record};

/// The pins of every server behind the proxy, opened on first use.
pub struct ProxyPins {
    store: PinStore,
    base: Url,
    open: Mutex<HashMap<String, Pins>>,
}

impl ProxyPins {
    pub fn new(store: PinStore, base: Url) -> ProxyPins {
        ProxyPins {
            store,
            base,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// The endpoint a request path is forwarded to, as people (and `alibridge tools`) see it.
    fn endpoint(&self, path: &str) -> String {
        let mut u = self.base.clone();
        u.set_path(path);
        display_url(&u)
    }

    /// Runs `f` on the pins of `path` for `identity` (opened now if needed).
    fn with<T>(
        &self,
        path: &str,
        identity: Option<String>,
        f: impl FnOnce(&mut Pins) -> T,
    ) -> Result<T, PinError> {
        let endpoint = self.endpoint(path);
        let slot = format!("{endpoint}\n{}", identity.as_deref().unwrap_or(""));
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if !open.contains_key(&slot) {
            let p = Pins::open(self.store.clone(), &endpoint, identity.as_deref())?;
            open.insert(slot.clone(), p);
        }
        Ok(f(open.get_mut(&slot).expect("opened")))
    }
}

/// A `tools/list` exchange whose client can be asked about held-back tools (it declared
/// elicitation and accepts SSE answers): who asked, and the listing request's id.
#[derive(Debug, Clone)]
pub struct Asker {
    caller: Caller,
    id: Id,
}

impl Asker {
    pub fn key(&self) -> &Key {
        &self.caller.key
    }
}

/// What becomes of a message on a listing exchange that can ask.
pub enum Listing {
    /// Send it on: changed (`Some`) or as it came.
    Ready(Option<Bytes>),
    /// Ask the person first ([`ProxyPolicy::await_pins`] then gives the listing to send).
    Ask(Box<PinQuestion>),
}

/// A question about held-back tools waiting for the person's answer. Dropping it closes it.
pub struct PinQuestion {
    key: Key,
    /// The listing request's id.
    id: Id,
    /// The `elicitation/create` to send first.
    pub request: Bytes,
    answer: oneshot::Receiver<Bytes>,
    ticket: Ticket,
    /// The tools asked about, and the digests of the definitions shown.
    names: Vec<String>,
    digests: Vec<String>,
    /// The server's listing as it came, judged again once answered.
    listing: Bytes,
}

/// The tools of a listing page held back and not yet declined in its session: what to ask.
struct Asks {
    tools: Vec<(String, Change)>,
    digests: Vec<String>,
}

impl ProxyPolicy {
    /// A `tools/list` answer for `key`, through the policy and the pins: the changed answer,
    /// or the error that replaces it.
    pub(super) fn filter_pinned(
        &self,
        pp: &ProxyPins,
        key: &Key,
        id: &Id,
        bytes: &[u8],
    ) -> Option<Bytes> {
        match self.judge_listing(pp, key, id, bytes, false) {
            Ok((out, _)) => out,
            Err(refusal) => Some(refusal),
        }
    }

    /// The listing exchange `asker` may ask about held-back tools, when its client is known to
    /// take the question (pins set, elicitation declared, SSE accepted).
    pub(super) fn asker(
        &self,
        caller: &Caller,
        id: Option<&Id>,
        accepts_sse: bool,
    ) -> Option<Asker> {
        let id = id?;
        if self.pins.is_none() || !accepts_sse {
            return None;
        }
        self.with_session(&caller.key, |s| s.client_elicits)
            .then(|| Asker {
                caller: caller.clone(),
                id: id.clone(),
            })
    }

    /// One message from the server on `asker`'s exchange: the answer to its listing may become
    /// a question first; anything else goes through [`Self::outbound`].
    pub fn outbound_asking(&self, asker: &Asker, bytes: &[u8]) -> Listing {
        let key = asker.key();
        let ours = Message::parse(Bytes::copy_from_slice(bytes))
            .ok()
            .filter(|m| m.kind == Kind::Response && m.id.as_ref() == Some(&asker.id));
        let (Some(pp), Some(_)) = (&self.pins, ours) else {
            return Listing::Ready(self.outbound(key, bytes, &mut None));
        };
        if !super::has_tools_array(bytes) {
            return Listing::Ready(None);
        }
        match self.judge_listing(pp, key, &asker.id, bytes, true) {
            Ok((out, Some(asks))) => match self.pin_question(pp, asker, asks, bytes) {
                Some(q) => Listing::Ask(Box::new(q)),
                None => Listing::Ready(out),
            },
            Ok((out, None)) => Listing::Ready(out),
            Err(refusal) => Listing::Ready(Some(refusal)),
        }
    }

    /// Judges a listing page against the pins (recording what it holds back); with `asking`,
    /// also what of it to ask about. `Err` is the error that answers the listing instead.
    fn judge_listing(
        &self,
        pp: &ProxyPins,
        key: &Key,
        id: &Id,
        bytes: &[u8],
        asking: bool,
    ) -> Result<(Option<Bytes>, Option<Asks>), Bytes> {
        let identity = (self.identity)();
        let judged = pp.with(&key.0, identity, |pins| {
            let was_first = pins.is_first_use();
            let out = self.with_session(key, |s| {
                policy::filter_list(&self.policy, s, Some(pins), bytes)
            })?;
            if let Err(e) = pins.commit() {
                warn!(error = %e, "could not record the pins");
                crate::logging::notice(format_args!("warning: pins: {e}"));
            }
            for line in pins.notices(was_first, &pins.to_ask()) {
                crate::logging::notice(format_args!("{line}"));
            }
            let asks = asking.then(|| self.asks(key, pins, bytes)).flatten();
            Ok::<_, PinError>((out, asks))
        });
        judged.and_then(|r| r).map_err(|e| {
            warn!(server = %key.0, error = %e, "held back a tool listing");
            crate::logging::notice(format_args!("pins: {e}"));
            pins::listing_refusal(id, &e)
        })
    }

    /// The tools of this page the pins hold back whose definitions session `key` has not
    /// declined (`None`: nothing to ask). Only this page's: accepting puts them into this
    /// very answer.
    fn asks(&self, key: &Key, pins: &Pins, bytes: &[u8]) -> Option<Asks> {
        let page: HashMap<String, String> = messages::tool_definitions(bytes)
            .iter()
            .filter_map(|t| {
                let name = t.get("name")?.as_str()?.to_string();
                Some((name, pins::digest(&pins::canonical(t))))
            })
            .collect();
        let (tools, digests): (Vec<_>, Vec<_>) = self.with_state(key, |s| {
            pins.to_ask()
                .into_iter()
                .filter_map(|(name, change)| {
                    let d = page.get(&name)?;
                    (!s.declined_pins.contains(d)).then(|| ((name, change), d.clone()))
                })
                .unzip()
        });
        (!tools.is_empty()).then_some(Asks { tools, digests })
    }

    /// Opens the question about `asks` for `asker`; `None` when [`MAX_WAITING`] questions and
    /// confirmations are open (the listing then goes without the tools, as for a client that
    /// cannot be asked).
    fn pin_question(
        &self,
        pp: &ProxyPins,
        asker: &Asker,
        asks: Asks,
        listing: &[u8],
    ) -> Option<PinQuestion> {
        let our_id = mint_id(PIN_PREFIX);
        let names: Vec<String> = asks.tools.iter().map(|(n, _)| n.clone()).collect();
        let (tx, rx) = oneshot::channel();
        {
            let mut waiting = lock(&self.waiting);
            if waiting.len() >= MAX_WAITING {
                warn!(server = %asker.key().0, limit = MAX_WAITING, "not asking about held-back tools: too many questions open");
                return None;
            }
            let w = Waiter {
                owner: asker.caller.clone(),
                tool: names.join(", "),
                tx,
            };
            waiting.insert(our_id.clone(), w);
        }
        let ticket = Ticket {
            waiting: self.waiting.clone(),
            id: our_id.clone(),
        };
        Some(PinQuestion {
            key: asker.key().clone(),
            id: asker.id.clone(),
            request: pins::question(&our_id, &pp.endpoint(&asker.key().0), &asks.tools),
            answer: rx,
            ticket,
            names,
            digests: asks.digests,
            listing: Bytes::copy_from_slice(listing),
        })
    }

    /// The person's answer to `q`, and the listing to send then: judged again, with the tools
    /// pinned when accepted; without them when not (declined, cancelled, no answer within
    /// `--confirm-timeout`), and then this session is not asked about them again. `None` when
    /// `client_gone` completed first (nobody to send it to).
    pub async fn await_pins(
        &self,
        q: PinQuestion,
        client_gone: impl Future<Output = ()>,
    ) -> Option<Bytes> {
        let PinQuestion {
            key,
            id,
            answer,
            ticket,
            names,
            digests,
            listing,
            ..
        } = q;
        let limit = self.confirm_timeout();
        let answer = tokio::select! {
            a = answer => match a {
                Ok(bytes) => confirm::answer(&bytes),
                Err(_) => Answer::Failed("no answer came".into()),
            },
            _ = tokio::time::sleep(limit) => Answer::Failed(format!(
                "nobody answered within {} (--confirm-timeout)",
                seconds(limit)
            )),
            _ = client_gone => {
                drop(ticket);
                info!(server = %key.0, tools = ?names, "question about held-back tools cancelled: the client disconnected");
                self.audit_pins(&key, &names, "cancelled", Some("the client disconnected before the person answered"));
                return None;
            }
        };
        drop(ticket);
        let approved = answer == Answer::Confirmed;
        if !approved {
            self.with_state(&key, |s| s.declined_pins.extend(digests));
        }
        let out = self.judge_again(&key, &id, &listing, approved.then_some(&names[..]));
        let decision = if approved {
            "approved"
        } else {
            answer.as_str()
        };
        let why = match &answer {
            Answer::Failed(why) => Some(why.as_str()),
            _ => None,
        };
        self.audit_pins(&key, &names, decision, why);
        let names = names.join(", ");
        match (approved, &self.pins) {
            (true, _) => crate::logging::notice(format_args!(
                "pins: approved in the client: {names} (pinned now)"
            )),
            (false, Some(pp)) => crate::logging::notice(format_args!(
                "pins: not approved in the client ({decision}): {names} stay held back for that \
                 client session; `alibridge tools {} --approve NAME` pins them",
                pp.endpoint(&key.0)
            )),
            (false, None) => {}
        }
        Some(out)
    }

    /// `listing` judged again; with `approve`, those tools are pinned first, as the listing
    /// showed them (judged once before, so a definition changed since the question is not
    /// what gets pinned).
    fn judge_again(
        &self,
        key: &Key,
        id: &Id,
        listing: &Bytes,
        approve: Option<&[String]>,
    ) -> Bytes {
        let Some(pp) = &self.pins else {
            return listing.clone();
        };
        let judged = pp.with(&key.0, (self.identity)(), |pins| {
            let filter = |pins: &mut Pins| {
                self.with_session(key, |s| {
                    policy::filter_list(&self.policy, s, Some(pins), listing)
                })
            };
            if let Some(names) = approve {
                filter(pins)?;
                pins.approve(names);
            }
            let out = filter(pins)?;
            if let Err(e) = pins.commit() {
                warn!(error = %e, "could not record the pins");
                crate::logging::notice(format_args!("warning: pins: {e}"));
            }
            Ok::<_, PinError>(out)
        });
        match judged.and_then(|r| r) {
            Ok(out) => out.unwrap_or_else(|| listing.clone()),
            Err(e) => {
                warn!(server = %key.0, error = %e, "held back a tool listing");
                pins::listing_refusal(id, &e)
            }
        }
    }

    /// One audit record per tool asked about (`decision`: `approved`, `declined`, …).
    fn audit_pins(&self, key: &Key, names: &[String], decision: &str, why: Option<&str>) {
        for n in names {
            let mut r = Record::pinning(self.origin(Some(&key.0)), n, decision);
            r.error = why.map(str::to_string);
            self.audit(r);
        }
    }

    /// Whether `tool` may be called on `key`'s server under the pins.
    pub(super) fn pin_check(&self, pp: &ProxyPins, key: &Key, tool: &str) -> Result<(), String> {
        pp.with(&key.0, (self.identity)(), |pins| pins.check_call(tool))
            .map_err(|e| e.to_string())
            .and_then(|r| r)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use serde_json::{json, Value};

    use super::super::tests::{caller, status};
    use super::super::Inbound;
    use super::*;
    use crate::policy::Policy;

    /// A proxy policy with pins in a scratch state directory (removed on drop), in front of
    /// `http://up.example/`.
    struct Rig {
        home: PathBuf,
        pp: ProxyPolicy,
    }

    impl Rig {
        fn new(confirm_timeout: Option<Duration>) -> Rig {
            let home = std::env::temp_dir().join(format!(
                "alibridge-proxy-pins-{}",
                crate::random::hex::<8>()
            ));
            let policy = Policy {
                confirm_timeout,
                ..Policy::default()
            };
            let base = Url::parse("http://up.example/").unwrap();
            let pp = ProxyPolicy::new(policy, None, "up".into(), Box::new(|| None))
                .with_pins(Some(ProxyPins::new(PinStore::new(&home), base)));
            Rig { home, pp }
        }

        /// `who` (whose client elicits) lists: the exchange that can ask.
        fn asker(&self, who: &Caller) -> Asker {
            self.pp.initialized(&who.key, true);
            let list = Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
            match self.pp.inbound(who, list, true) {
                Inbound::Forward { ask: Some(a), .. } => a,
                _ => panic!("a listing that can ask"),
            }
        }

        /// `who`'s first listing (`v1`, trusted) then `v2`: the question about it.
        fn question(&self, who: &Asker) -> Box<PinQuestion> {
            self.pp.outbound_asking(who, &listing(1, "v1"));
            match self.pp.outbound_asking(who, &listing(1, "v2")) {
                Listing::Ask(q) => q,
                Listing::Ready(_) => panic!("asked about the changed definition"),
            }
        }

        /// `who` answers `q` with `result`.
        fn answer(
            &self,
            who: &Caller,
            q: &PinQuestion,
            result: Value,
        ) -> Option<hyper::StatusCode> {
            let request: Value = serde_json::from_slice(&q.request).unwrap();
            let a = json!({"jsonrpc": "2.0", "id": request["id"], "result": result});
            status(&self.pp.inbound(who, Bytes::from(a.to_string()), true))
        }
    }

    impl Drop for Rig {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.home);
        }
    }

    /// A listing of one tool, `echo`, described `description`.
    fn listing(id: u64, description: &str) -> Bytes {
        let tools = json!([{"name": "echo", "description": description, "inputSchema": {"type": "object"}}]);
        Bytes::from(json!({"jsonrpc": "2.0", "id": id, "result": {"tools": tools}}).to_string())
    }

    /// The descriptions a listing carries.
    fn listed(bytes: &[u8]) -> Vec<String> {
        let v: Value = serde_json::from_slice(bytes).unwrap();
        v["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["description"].as_str().unwrap().to_string())
            .collect()
    }

    /// A definition that changes again while the person looks at the question: what gets
    /// pinned on "accept" is the definition the question showed, never the newer one.
    #[tokio::test]
    async fn accepting_pins_what_the_question_showed() {
        let rig = Rig::new(None);
        let (a, b) = (caller("A"), caller("B"));
        let q = rig.question(&rig.asker(&a));
        let request: Value = serde_json::from_slice(&q.request).unwrap();
        assert!(request["id"].as_str().unwrap().starts_with(PIN_PREFIX));
        assert!(request["params"]["message"]
            .as_str()
            .unwrap()
            .contains("+ v2"));
        assert_eq!(rig.pp.waiting(), 1);
        // Another session lists meanwhile: the server changed it again.
        let v3 = rig
            .pp
            .outbound(&b.key, &listing(2, "v3"), &mut None)
            .unwrap();
        assert!(listed(&v3).is_empty(), "held back");
        let yes = json!({"action": "accept", "content": {"confirm": true}});
        assert_eq!(rig.answer(&a, &q, yes), Some(hyper::StatusCode::ACCEPTED));
        let out = rig.pp.await_pins(*q, std::future::pending()).await.unwrap();
        assert_eq!(listed(&out), ["v2"]);
        assert_eq!(rig.pp.waiting(), 0);
        let file = PinStore::new(&rig.home)
            .load("http://up.example/s/mcp", "anonymous")
            .unwrap()
            .unwrap();
        assert_eq!(file.pinned["echo"].definition["description"], "v2");
        let v3 = rig
            .pp
            .outbound(&b.key, &listing(2, "v3"), &mut None)
            .unwrap();
        assert!(listed(&v3).is_empty(), "v3 is still held back");
    }

    /// A decline holds for its session: that session's next listing does not ask, another
    /// session's does.
    #[tokio::test]
    async fn a_decline_holds_for_its_session() {
        let rig = Rig::new(None);
        let (a, b) = (rig.asker(&caller("A")), rig.asker(&caller("B")));
        let q = rig.question(&a);
        let no = rig.answer(&caller("A"), &q, json!({"action": "decline"}));
        assert_eq!(no, Some(hyper::StatusCode::ACCEPTED));
        let out = rig.pp.await_pins(*q, std::future::pending()).await.unwrap();
        assert!(listed(&out).is_empty(), "declined: held back");
        assert!(matches!(
            rig.pp.outbound_asking(&a, &listing(1, "v2")),
            Listing::Ready(Some(_))
        ));
        assert!(matches!(
            rig.pp.outbound_asking(&b, &listing(1, "v2")),
            Listing::Ask(_)
        ));
    }

    /// No answer within `--confirm-timeout`: the listing goes without the tools, the question
    /// is closed, and the session is not asked again.
    #[tokio::test(start_paused = true)]
    async fn an_unanswered_question_times_out_as_not_approved() {
        let rig = Rig::new(Some(Duration::from_secs(1)));
        let a = rig.asker(&caller("A"));
        let q = rig.question(&a);
        let out = rig.pp.await_pins(*q, std::future::pending()).await.unwrap();
        assert!(listed(&out).is_empty(), "held back");
        assert_eq!(rig.pp.waiting(), 0, "closed");
        assert!(matches!(
            rig.pp.outbound_asking(&a, &listing(1, "v2")),
            Listing::Ready(Some(_))
        ));
    }
}
