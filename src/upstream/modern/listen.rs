//! The `subscriptions/listen` stream of a translated client: opened with the filter the
//! server's capabilities and the client's `resources/subscribe` calls allow, its change
//! notifications relayed, reopened with back-off when it ends or breaks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Map, Value};
use tracing::{debug, warn};

use super::envelope::{meta_of, LegacyClient};
use super::Modern;
use crate::backoff::Backoff;
use crate::jsonrpc::{self, Kind, Message};
use crate::upstream::event_stream::{parse_event, EventStream, Parsed};
use crate::upstream::http::{error_snippet, is_event_stream};
use crate::upstream::transport::spawn_child;

/// Pacing of `subscriptions/listen` reopenings.
const LISTEN_BACKOFF_BASE: Duration = Duration::from_secs(1);
const LISTEN_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A listen stream that stayed open this long was healthy: reopen promptly.
const LISTEN_HEALTHY: Duration = Duration::from_secs(30);

impl Modern {
    /// (Re)opens the `subscriptions/listen` stream of a translated client with the filter the
    /// server's capabilities and the client's `resources/subscribe` calls allow.
    pub(super) fn restart_listen(self: &Arc<Self>) {
        let Some(client) = self.translating_for() else {
            return;
        };
        let caps = self
            .discover
            .get("capabilities")
            .cloned()
            .unwrap_or(Value::Null);
        let flag = |area: &str| {
            caps.get(area)
                .and_then(|c| c.get("listChanged"))
                .and_then(Value::as_bool)
                .unwrap_or(false)
        };
        let mut filter = Map::new();
        for (area, key) in [
            ("tools", "toolsListChanged"),
            ("prompts", "promptsListChanged"),
            ("resources", "resourcesListChanged"),
        ] {
            if flag(area) {
                filter.insert(key.into(), Value::Bool(true));
            }
        }
        let subs: Vec<Value> = self
            .subscriptions
            .lock()
            .unwrap()
            .iter()
            .map(|u| Value::String(u.clone()))
            .collect();
        if !subs.is_empty() {
            filter.insert("resourceSubscriptions".into(), Value::Array(subs));
        }
        let token = self.cancel.child_token();
        if let Some(old) = self.listen.lock().unwrap().replace(token.clone()) {
            old.cancel();
        }
        if filter.is_empty() {
            debug!("the server offers no change notifications; no subscriptions/listen stream");
            return;
        }
        let me = self.clone();
        let filter = Value::Object(filter);
        spawn_child(&token, async move { me.run_listen(client, filter).await });
    }

    /// Keeps one `subscriptions/listen` stream open, relaying its change notifications (not
    /// the acknowledgement, which an `initialize`-era client would not know) and reopening it
    /// with back-off when it ends or breaks. Gives up when the server refuses it outright.
    async fn run_listen(self: Arc<Self>, client: Arc<LegacyClient>, filter: Value) {
        let mut backoff = Backoff::new(LISTEN_BACKOFF_BASE, LISTEN_BACKOFF_MAX);
        let mut reopened = false;
        loop {
            let id = self.fresh_id("listen");
            let body = json!({"jsonrpc":"2.0","id": serde_json::from_str::<Value>(id.as_json()).unwrap_or(Value::Null),
                "method":"subscriptions/listen","params":{"_meta": meta_of(&client, &self.version), "notifications": filter}});
            let body = Bytes::from(body.to_string());
            let opened = Instant::now();
            let mut delivered = 0u64;
            match self.post(&body).await {
                Ok(resp) if resp.status().is_success() && is_event_stream(&resp) => {
                    debug!("subscriptions/listen stream open");
                    let mut events = EventStream::new(resp.bytes_stream())
                        .with_limit(self.http.max_message_size());
                    while let Some(Ok(ev)) = events.next().await {
                        match parse_event(ev) {
                            Some(Parsed::Message(m)) if m.kind == Kind::Notification => {
                                if m.method_is("notifications/subscriptions/acknowledged") {
                                    if reopened {
                                        // Changes while the stream was down were missed: have
                                        // the client list again.
                                        self.announce_changes(&filter).await;
                                    }
                                    continue;
                                }
                                delivered += 1;
                                self.out.deliver(m).await;
                            }
                            Some(Parsed::Message(m)) if m.kind == Kind::Response => {
                                if jsonrpc::is_error_response(&m.bytes) {
                                    warn!("the server ended subscriptions/listen with an error; list changes will not be relayed");
                                    return;
                                }
                                debug!("the server closed subscriptions/listen gracefully");
                                break;
                            }
                            _ => {}
                        }
                    }
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if !(resp.status().is_server_error() || matches!(status, 408 | 429)) {
                        let (snippet, _) = error_snippet(resp).await;
                        warn!(status, body = %snippet, "subscriptions/listen refused; list changes will not be relayed");
                        return;
                    }
                }
                Err(e) => debug!(error = %e, "subscriptions/listen failed; will retry"),
            }
            reopened = true;
            let wait = if delivered > 0 || opened.elapsed() >= LISTEN_HEALTHY {
                backoff.reset();
                LISTEN_BACKOFF_BASE
            } else {
                backoff.next_delay()
            };
            debug!(
                ?wait,
                delivered, "subscriptions/listen stream ended; reopening"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// Delivers a `list_changed` notification for every list `filter` subscribes to.
    async fn announce_changes(&self, filter: &Value) {
        for (key, method) in [
            ("toolsListChanged", "notifications/tools/list_changed"),
            ("promptsListChanged", "notifications/prompts/list_changed"),
            (
                "resourcesListChanged",
                "notifications/resources/list_changed",
            ),
        ] {
            if filter.get(key) == Some(&Value::Bool(true)) {
                let line = format!(r#"{{"jsonrpc":"2.0","method":"{method}"}}"#);
                if let Ok(m) = Message::parse(Bytes::from(line)) {
                    self.out.deliver(m).await;
                }
            }
        }
    }
}
