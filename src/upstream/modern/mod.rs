//! Streamable HTTP as MCP 2026-07-28 defines it (the "modern" era): no session, no
//! `initialize`, every request carrying its protocol version, client info and capabilities in
//! `params._meta`, server-to-client requests returned as `input_required` results (MRTR), and
//! change notifications on a `subscriptions/listen` stream. It owns both ways a stdio client
//! can meet such a server:
//!
//! - **Translation** for a client of the `initialize` era ([`Modern::translating`]): the
//!   handshake is answered here from the `server/discover` result, `ping` too,
//!   `notifications/initialized` is swallowed; every request gets the three `_meta` keys added;
//!   an `input_required` result becomes requests to the client (ids `alibridge-mrtr-<n>`) whose
//!   answers are sent back with the original call under a new id (`alibridge-retry-<n>`), so
//!   the client sees exactly one answer with its own id and never `input_required`; list and
//!   resource notifications come from a `subscriptions/listen` stream kept open with back-off.
//! - **Passthrough** for a modern client ([`Modern::passthrough`]): messages go as they are,
//!   with the request metadata headers derived from each body.
//!
//! In both, a stdio `notifications/cancelled` closes the HTTP response stream of the request it
//! names (that is how cancellation is said over HTTP), and a response stream that breaks before
//! the answer is re-issued under a new id only when that cannot run anything twice: always for
//! reads, for `tools/call` only when the tool is annotated `idempotentHint: true`. Otherwise the
//! client gets an error saying the result was lost and the call may have run.
//!
//! [`probe()`] decides the era: a `server/discover` answered with a result, or with a modern
//! JSON-RPC error (−32020/−32021/−32022), means a modern server.
//!
//! The parts: `probe` (the era: `server/discover`, a modern client's first message),
//! `envelope` (translation: the `initialize` answered locally, the `_meta` keys added to each
//! request), `call` (one request to its single answer: re-issues, cancellation, reading the
//! answer), `mrtr` (`input_required` rounds through the client), `listen` (the
//! `subscriptions/listen` stream of a translated client). This file holds the transport's state
//! and routes each client message.

mod call;
mod envelope;
mod listen;
mod mrtr;
mod probe;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use reqwest::Url;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::error::UpstreamError;
use super::headers::ToolFacts;
use super::http::{error_snippet, HttpClient};
use super::transport::{Deliver, Link};
use crate::jsonrpc::{Id, Kind, Message};
use crate::net::display_url;

pub use envelope::initialize_params;
use envelope::{with_meta, LegacyClient};
pub use mrtr::MAX_INPUT_ROUNDS;
pub use probe::{is_modern_shaped, lists_legacy, probe, Probe, PROBE_TIMEOUT};

/// The modern protocol revision the bridge speaks.
pub const MODERN_VERSION: &str = "2026-07-28";
/// JSON-RPC error codes only a modern server sends (HeaderMismatch,
/// MissingRequiredClientCapability, UnsupportedProtocolVersion).
pub const MODERN_ERRORS: [i64; 3] = [-32020, -32021, -32022];

/// How the first message of a modern client fared (see [`Modern::send_first`]).
pub enum First {
    /// The server answered as a modern server; the answer was delivered.
    Modern,
    /// The server does not speak the modern era; nothing was delivered.
    Legacy(String),
    /// The client cancelled the request before the server's era showed; nothing was
    /// delivered (the client expects nothing) and the era is still open.
    Cancelled,
}

pub struct Modern {
    url: Url,
    shown: String,
    http: HttpClient,
    out: Arc<dyn Deliver>,
    tools: Arc<ToolFacts>,
    /// The version put in `MCP-Protocol-Version` when a body names none.
    version: String,
    /// `Some` when translating for a client of the `initialize` era.
    client: Mutex<Option<Arc<LegacyClient>>>,
    /// The `server/discover` result (translation answers `initialize` from it).
    discover: Value,
    /// Requests sent to the client for `input_required` rounds, by the bridge's id.
    asked: Mutex<HashMap<Id, oneshot::Sender<Message>>>,
    /// The client's requests in flight, so `notifications/cancelled` can close their streams.
    in_flight: Mutex<HashMap<Id, CancellationToken>>,
    /// `resources/subscribe`d URIs (translation), for the listen filter.
    subscriptions: Mutex<BTreeSet<String>>,
    listen: Mutex<Option<CancellationToken>>,
    next_id: AtomicU64,
    cancel: CancellationToken,
}

impl Modern {
    fn new(link: Link, version: String, discover: Value) -> Arc<Self> {
        let Link {
            url,
            http,
            out,
            tools,
            cancel,
        } = link;
        Arc::new(Modern {
            shown: display_url(&url),
            url,
            http,
            out,
            tools,
            version,
            client: Mutex::new(None),
            discover,
            asked: Mutex::default(),
            in_flight: Mutex::default(),
            subscriptions: Mutex::default(),
            listen: Mutex::new(None),
            next_id: AtomicU64::new(1),
            cancel,
        })
    }

    /// For a client of the `initialize` era, after a probe found a modern server: `discover`
    /// is its `server/discover` result, `version` the modern revision chosen with it.
    pub fn translating(link: Link, version: String, discover: Value) -> Arc<Self> {
        Self::new(link, version, discover)
    }

    /// For a modern client: its messages are relayed as they are.
    pub fn passthrough(link: Link) -> Arc<Self> {
        Self::new(link, MODERN_VERSION.to_string(), Value::Null)
    }

    fn translating_for(&self) -> Option<Arc<LegacyClient>> {
        self.client.lock().unwrap().clone()
    }

    fn fresh_id(&self, kind: &str) -> Id {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        Id::from_json(&format!("\"alibridge-{kind}-{n}\""))
    }

    /// Sends one client message (see [`super::Upstream::send`]).
    pub async fn send(self: &Arc<Self>, msg: Message) -> Result<(), UpstreamError> {
        match msg.kind {
            Kind::Response => {
                let id = msg.id.clone().expect("responses have ids");
                match self.asked.lock().unwrap().remove(&id) {
                    Some(tx) => {
                        let _ = tx.send(msg);
                    }
                    None => debug!(%id, "dropping a client response to no request of the bridge"),
                }
                Ok(())
            }
            Kind::Notification => self.notification(msg).await,
            Kind::Request => self.request(msg).await,
        }
    }

    async fn notification(self: &Arc<Self>, msg: Message) -> Result<(), UpstreamError> {
        if msg.method_is("notifications/cancelled") {
            // Over HTTP, closing the request's response stream is the cancellation.
            if let Some(id) = cancelled_id(&msg.bytes) {
                if let Some(t) = self.in_flight.lock().unwrap().get(&id) {
                    debug!(%id, "closing the response stream of a cancelled request");
                    t.cancel();
                }
            }
            return Ok(());
        }
        if self.translating_for().is_some() {
            if msg.method_is("notifications/initialized") {
                self.restart_listen();
            } else {
                debug!(method = ?msg.method, "not relayed: the modern era has no such client notification");
            }
            return Ok(());
        }
        let resp = self.post(&msg.bytes).await?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let (snippet, _) = error_snippet(resp).await;
            return Err(UpstreamError::Status {
                status,
                url: self.shown.clone(),
                body: snippet,
            });
        }
        Ok(())
    }

    async fn request(self: &Arc<Self>, msg: Message) -> Result<(), UpstreamError> {
        let id = msg.id.clone().expect("requests have ids");
        if msg.method_is("initialize") {
            return self.answer_initialize(&msg, &id).await;
        }
        let Some(client) = self.translating_for() else {
            return self.call(&id, msg.bytes.clone(), &msg).await;
        };
        match msg.method.as_deref() {
            Some("ping") => self.answer(&id, json!({})).await,
            Some("resources/subscribe") | Some("resources/unsubscribe") => {
                let uri = serde_json::from_slice::<Value>(&msg.bytes)
                    .ok()
                    .and_then(|v| v.pointer("/params/uri")?.as_str().map(str::to_string));
                if let Some(uri) = uri {
                    let mut subs = self.subscriptions.lock().unwrap();
                    if msg.method_is("resources/subscribe") {
                        subs.insert(uri);
                    } else {
                        subs.remove(&uri);
                    }
                }
                self.restart_listen();
                self.answer(&id, json!({})).await
            }
            _ => {
                let body = with_meta(&msg.bytes, &client, &self.version).ok_or_else(|| {
                    UpstreamError::malformed(
                        &self.shown,
                        "the client's request has params that are not an object",
                    )
                })?;
                self.call(&id, body, &msg).await
            }
        }
    }

    /// Whether `msg` cancels a request of this transport still in flight: such a notification
    /// must reach [`Self::send`] even while the era is being decided by that very request.
    pub fn cancels_in_flight(&self, msg: &Message) -> bool {
        msg.method_is("notifications/cancelled")
            && cancelled_id(&msg.bytes)
                .is_some_and(|id| self.in_flight.lock().unwrap().contains_key(&id))
    }

    /// Stops every task of this transport (listen stream, calls in flight).
    pub fn close(&self) {
        self.cancel.cancel();
    }
}

/// `params.requestId` of a `notifications/cancelled`.
fn cancelled_id(bytes: &[u8]) -> Option<Id> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    let id = v.pointer("/params/requestId")?;
    (id.is_string() || id.is_number()).then(|| Id::from_json(&id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancelled_names_the_request() {
        assert_eq!(
            cancelled_id(br#"{"method":"notifications/cancelled","params":{"requestId":5}}"#),
            Some(Id::from_json("5"))
        );
    }
}
