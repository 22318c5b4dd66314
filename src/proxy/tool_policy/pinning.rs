//! `--pin-tools` in `alibridge proxy`: the pins of each upstream server (the upstream URL a
//! request is forwarded to) and identity. `tools/list` answers, in JSON bodies and SSE streams
//! alike, are judged against them; new and changed tools are held back and a call of one is
//! refused. Approval is by `alibridge tools <upstream URL> --approve` (the proxy has no
//! channel of its own to the person).

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use reqwest::Url;
use tracing::warn;

use super::{Key, ProxyPolicy};
use crate::jsonrpc::Id;
use crate::net::display_url;
use crate::policy;
use crate::policy::pins::{self, PinError, PinStore, Pins};

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
            Ok::<_, PinError>(out)
        });
        match judged.and_then(|r| r) {
            Ok(out) => out,
            Err(e) => {
                warn!(server = %key.0, error = %e, "held back a tool listing");
                crate::logging::notice(format_args!("pins: {e}"));
                Some(pins::listing_refusal(id, &e))
            }
        }
    }

    /// Whether `tool` may be called on `key`'s server under the pins.
    pub(super) fn pin_check(&self, pp: &ProxyPins, key: &Key, tool: &str) -> Result<(), String> {
        pp.with(&key.0, (self.identity)(), |pins| pins.check_call(tool))
            .map_err(|e| e.to_string())
            .and_then(|r| r)
    }
}
