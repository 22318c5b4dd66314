//! `--pin-tools` in the stdio relay: each `tools/list` answer is judged against the pins of
//! the endpoint and identity (opened on the first listing, when the identity is known); new
//! and changed tools are held back from the client, a call of one is refused, and a client
//! that declared elicitation is asked once per listing to approve them. Approved, they are
//! pinned and the client is told `notifications/tools/list_changed` so it lists again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::{Outbox, ToolPolicy};
use crate::jsonrpc::Id;
use crate::policy::confirm::{self, Answer};
use crate::policy::pins::{self, Change, PinError, PinStore, Pins};
use crate::policy::{self, Record};

/// Prefix of the ids of the bridge's pin questions.
const PIN_ID_PREFIX: &str = "alibridge-pin-";

/// The pins of this bridge's endpoint.
pub(super) struct PinSetup {
    store: PinStore,
    endpoint: String,
    /// Opened on the first listing (`None` before, and after a failure to open).
    state: Mutex<Option<Pins>>,
    /// A question is out (one at a time).
    asking: AtomicBool,
    /// The outbox, to ask and to announce `list_changed` from a task of its own.
    outbox: std::sync::OnceLock<Weak<Outbox>>,
}

impl PinSetup {
    pub(super) fn new(store: PinStore, endpoint: String) -> PinSetup {
        PinSetup {
            store,
            endpoint,
            state: Mutex::new(None),
            asking: AtomicBool::new(false),
            outbox: std::sync::OnceLock::new(),
        }
    }

    pub(super) fn bind_outbox(&self, outbox: &Arc<Outbox>) {
        let _ = self.outbox.set(Arc::downgrade(outbox));
    }

    /// The session's pins, opened now if they were not yet.
    fn open(&self, identity: Option<String>) -> Result<MutexGuard<'_, Option<Pins>>, PinError> {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some(Pins::open(
                self.store.clone(),
                &self.endpoint,
                identity.as_deref(),
            )?);
        }
        Ok(guard)
    }
}

/// Whether `id` is one of the bridge's pin questions.
pub(super) fn is_pin_id(id: &Id) -> bool {
    id.as_json()
        .strip_prefix('"')
        .is_some_and(|s| s.starts_with(PIN_ID_PREFIX))
}

impl ToolPolicy {
    /// Filters a `tools/list` answer through the policy and the pins. `Err` carries the error
    /// that answers the listing instead (pins that cannot be read, a listing too large to pin).
    pub(super) fn filter_pinned(
        &self,
        ps: &PinSetup,
        id: &Id,
        bytes: &[u8],
    ) -> Result<Option<Bytes>, Bytes> {
        let mut guard = ps
            .open((self.identity)())
            .map_err(|e| self.pin_failure(id, &e))?;
        let pins = guard.as_mut().expect("opened");
        let was_first = pins.is_first_use();
        let out = policy::filter_list(&self.policy, &mut self.session(), Some(pins), bytes)
            .map_err(|e| self.pin_failure(id, &e))?;
        if let Err(e) = pins.commit() {
            warn!(error = %e, "could not record the pins");
            crate::logging::notice(format_args!("warning: pins: {e}"));
        }
        let asks = pins.to_ask();
        for line in pins.notices(was_first, &asks) {
            crate::logging::notice(format_args!("{line}"));
        }
        drop(guard);
        if !asks.is_empty()
            && self.session().client_elicits
            && !ps.asking.swap(true, Ordering::SeqCst)
        {
            match (self.me.upgrade(), ps.outbox.get().and_then(Weak::upgrade)) {
                (Some(me), Some(outbox)) => {
                    tokio::spawn(async move { me.ask_pins(outbox, asks).await });
                }
                _ => ps.asking.store(false, Ordering::SeqCst),
            }
        }
        Ok(out)
    }

    /// Whether `tool` may be called under the pins: `Err` says why not.
    pub(super) fn pin_check(&self, ps: &PinSetup, tool: &str) -> Result<(), String> {
        let guard = ps.open((self.identity)()).map_err(|e| e.to_string())?;
        guard.as_ref().expect("opened").check_call(tool)
    }

    /// The error answering a listing that cannot be pinned.
    fn pin_failure(&self, id: &Id, e: &PinError) -> Bytes {
        warn!(error = %e, "held back a tool listing");
        crate::logging::notice(format_args!("pins: {e}"));
        pins::listing_refusal(id, e)
    }

    /// Asks the person once about the held-back tools; approved, they are pinned and the
    /// client is told to list again.
    async fn ask_pins(self: Arc<Self>, outbox: Arc<Outbox>, asks: Vec<(String, Change)>) {
        let Some(ps) = self.pins.as_ref() else {
            return;
        };
        let id = Id::from_json(&format!(
            "\"{PIN_ID_PREFIX}{}\"",
            crate::random::hex::<16>()
        ));
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().unwrap().insert(id.clone(), tx);
        self.asked.notify_one();
        outbox.write(pins::question(&id, &ps.endpoint, &asks)).await;
        let limit = self
            .policy
            .confirm_timeout
            .unwrap_or(policy::DEFAULT_CONFIRM_TIMEOUT);
        let answer = match tokio::time::timeout(limit, rx).await {
            Ok(Ok(bytes)) => confirm::answer(&bytes),
            Ok(Err(_)) => Answer::Failed("the client went away".into()),
            Err(_) => {
                self.waiting.lock().unwrap().remove(&id);
                Answer::Failed("no answer within --confirm-timeout".into())
            }
        };
        let names: Vec<String> = asks.into_iter().map(|(n, _)| n).collect();
        let approved = answer == Answer::Confirmed;
        if let Ok(mut guard) = ps.open((self.identity)()) {
            let pins = guard.as_mut().expect("opened");
            if approved {
                pins.approve(&names);
            } else {
                pins.decline(&names);
            }
            if let Err(e) = pins.commit() {
                crate::logging::notice(format_args!("warning: pins: {e}"));
            }
        }
        let decision = if approved {
            "approved"
        } else {
            answer.as_str()
        };
        info!(tools = ?names, decision, "pin question answered");
        for n in &names {
            self.audit(Record::pinning(self.origin(), n, decision));
        }
        ps.asking.store(false, Ordering::SeqCst);
        if approved {
            let changed = r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#;
            outbox.write(Bytes::from_static(changed.as_bytes())).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_ids_are_recognised() {
        assert!(is_pin_id(&Id::from_json("\"alibridge-pin-ab\"")));
        assert!(!is_pin_id(&Id::from_json("\"alibridge-confirm-ab\"")));
        assert!(!is_pin_id(&Id::from_json("7")));
    }
}
