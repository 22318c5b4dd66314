//! The standalone GET stream of a Streamable HTTP session: server-initiated messages outside
//! any request, kept open for the life of the session, resumed from the last event id after a
//! break, with back-off for a server that refuses it or closes it at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::replay::Replay;
use super::{StreamableHttp, DEFAULT_RETRY};
use crate::backoff::{retry_after, Backoff};
use crate::upstream::error::UpstreamError;
use crate::upstream::event_stream::{parse_event, Parsed};
use crate::upstream::http::is_event_stream;
use crate::upstream::transport::spawn_child;

/// First and longest pause between GET-stream reconnects after failures (refusals, or streams
/// that closed at once without delivering anything).
const BACKOFF_BASE: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A GET stream that stayed open this long was healthy even if it delivered nothing (an idle
/// stream closed by a proxy's timeout): reconnect promptly.
const HEALTHY_STREAM: Duration = Duration::from_secs(30);

impl StreamableHttp {
    /// Opens (or reopens) the standalone GET stream for server-initiated messages.
    pub(super) fn start_get_stream(self: &Arc<Self>) {
        let token = self.cancel.child_token();
        let me = self.clone();
        spawn_child(&token, async move { me.run_get_stream().await });
        if let Some(old) = self.get_stream.lock().unwrap().replace(token) {
            old.cancel();
        }
    }

    pub(super) fn stop_get_stream(&self) {
        if let Some(old) = self.get_stream.lock().unwrap().take() {
            old.cancel();
        }
    }

    /// Keeps the GET stream open for the life of the session, resuming from the last event id
    /// after a break. Gives up on 405 (the server offers no stream) and on other refusals.
    /// Reconnects back off exponentially (with jitter, up to [`MAX_BACKOFF`]) while streams
    /// end at once without delivering anything, so a server that accepts and closes the GET
    /// repeatedly gets a handful of requests, not a loop.
    async fn run_get_stream(self: Arc<Self>) {
        let mut last: Option<String> = None;
        let mut retry: Option<u64> = None;
        let mut backoff = Backoff::new(BACKOFF_BASE, MAX_BACKOFF);
        let mut replay = Replay::default();
        loop {
            let session = self.snapshot();
            let resp = match self
                .http
                .send(&self.url, || self.get_request(last.as_deref(), &session))
                .await
            {
                Ok(r) => r,
                Err(UpstreamError::ForeignOrigin(f)) => {
                    warn!(error = %f, "GET stream refused; server-initiated messages will only arrive on responses");
                    return;
                }
                Err(e) => {
                    let wait = backoff.next_delay();
                    debug!(error = %e, ?wait, "GET stream: connect failed; will retry");
                    tokio::time::sleep(wait).await;
                    continue;
                }
            };
            let status = resp.status().as_u16();
            if resp.status().is_success() && is_event_stream(&resp) {
                let opened = Instant::now();
                let mut delivered = 0u64;
                let mut events = self.events(resp).with_last_event_id(last.clone());
                replay.resumed();
                while let Some(Ok(ev)) = events.next().await {
                    if replay.is_duplicate(&ev) {
                        continue;
                    }
                    match parse_event(ev) {
                        Some(Parsed::Message(m)) => {
                            delivered += 1;
                            self.out.deliver(m).await
                        }
                        Some(Parsed::Malformed(e)) => {
                            warn!(error = %e, "dropping a malformed message from the GET stream")
                        }
                        Some(Parsed::TooLarge(t)) => {
                            delivered += 1;
                            self.on_dropped(&t, &session).await
                        }
                        None => {}
                    }
                }
                last = events.last_event_id().map(str::to_string);
                retry = events.retry_ms().or(retry);
                let asked = retry.map(Duration::from_millis).unwrap_or(DEFAULT_RETRY);
                let wait = if delivered > 0 || opened.elapsed() >= HEALTHY_STREAM {
                    backoff.reset();
                    asked
                } else {
                    asked.max(backoff.next_delay())
                };
                debug!(
                    resumable = last.is_some(),
                    delivered,
                    ?wait,
                    "GET stream ended; reconnecting"
                );
                crate::telemetry::count(crate::telemetry::Event::Reconnect);
                tokio::time::sleep(wait).await;
                continue;
            }
            match status {
                405 => debug!("the server offers no GET stream (405)"),
                404 if session.id.is_some() => {
                    info!("session expired (GET stream 404); starting a new one");
                    let me = self.clone();
                    // Beside this task, not in it: reinit stops this one.
                    spawn_child(&self.cancel, async move {
                        if let Err(e) = me.reinit(session.generation).await {
                            warn!(error = %e, "could not start a new session");
                        }
                    });
                }
                408 | 429 | 500..=599 => {
                    let asked = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(retry_after)
                        .unwrap_or_default();
                    let wait = backoff.next_delay().max(asked);
                    debug!(status, ?wait, "GET stream refused for now; will retry");
                    tokio::time::sleep(wait).await;
                    continue;
                }
                _ => warn!(
                    status,
                    "GET stream refused; server-initiated messages will only arrive on responses"
                ),
            }
            return;
        }
    }
}
