//! The legacy HTTP+SSE transport (MCP 2024-11-05): a GET opens an event stream whose first
//! `endpoint` event names the URL to POST messages to; every server message, answers included,
//! arrives on that one stream.
//!
//! Because answers do not come back on the POST, each request registers a waiter that the
//! stream reader completes when the answer passes by. When the stream breaks, waiting
//! requests are failed (their answers are lost with the old session), the stream is reopened,
//! and the client's initialize/initialized are replayed on the new session.
//!
//! The `endpoint` event must name the SSE URL's own origin (scheme, host, port); a relative URL
//! resolves against it. A foreign endpoint, on the first connect or on any reconnect, is never
//! POSTed to: requests fail with [`ForeignOrigin::Endpoint`] naming both origins.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::Url;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::error::UpstreamError;
use super::event_stream::EventStream;
use super::event_stream::TooLarge;
use super::event_stream::{parse_event, Parsed};
use super::http::{error_snippet, is_event_stream, HttpClient, ACCEPT_SSE};
use super::transport::{dropped, spawn_child, Deliver, Dropped};
use crate::backoff::Backoff;
use crate::jsonrpc::{self, single_line, Id, Kind, Message};
use crate::net::origin::{origin_of, same_origin, ForeignOrigin};
use crate::net::{describe, display_url};

type Events = EventStream<BoxStream<'static, Result<Bytes, reqwest::Error>>>;

/// How long to wait for the `endpoint` event, and for a reconnect before failing a send.
const ENDPOINT_TIMEOUT: Duration = Duration::from_secs(30);
/// Reconnect pacing while the stream keeps failing or closing at once (exponential, jitter).
const BACKOFF_BASE: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A stream that stayed open this long was healthy even if it delivered nothing.
const HEALTHY_STREAM: Duration = Duration::from_secs(30);

/// Where client messages go now.
#[derive(Debug, Clone)]
enum Endpoint {
    Ready(Url),
    /// The stream broke; a new one is being opened.
    Reconnecting,
    /// The newest stream named a foreign endpoint: messages fail at once with this (the stream
    /// is still retried, in case the server comes back to its senses).
    Refused(ForeignOrigin),
}

/// Someone waiting for the answer to a request id.
struct Waiter {
    tx: oneshot::Sender<Result<Message, UpstreamError>>,
    /// The bridge's own replayed initialize: its answer must not reach the client.
    internal: bool,
}

pub struct LegacySse {
    url: Url,
    shown: String,
    http: HttpClient,
    out: Arc<dyn Deliver>,
    /// The POST endpoint of the current stream.
    endpoint: watch::Sender<Endpoint>,
    waiters: Mutex<HashMap<Id, Waiter>>,
    /// The client's initialize and initialized, replayed after a reconnect.
    handshake: Mutex<(Option<Bytes>, Option<Bytes>)>,
    /// Parent of the reader and replay tasks; cancelled by [`Self::close`].
    cancel: CancellationToken,
    closed: AtomicBool,
    replay_count: AtomicU64,
}

impl LegacySse {
    /// Opens the event stream and waits for its `endpoint` event. `cancel` is the parent of
    /// the transport's background tasks.
    pub async fn connect(
        url: &Url,
        http: &HttpClient,
        out: &Arc<dyn Deliver>,
        cancel: CancellationToken,
    ) -> Result<Arc<Self>, UpstreamError> {
        let (events, endpoint) = open(url, http).await?;
        info!(endpoint = %display_url(&endpoint), "connected with the HTTP+SSE transport");
        let me = Arc::new(LegacySse {
            url: url.clone(),
            shown: display_url(url),
            http: http.clone(),
            out: out.clone(),
            endpoint: watch::channel(Endpoint::Ready(endpoint)).0,
            waiters: Mutex::new(HashMap::new()),
            handshake: Mutex::new((None, None)),
            cancel,
            closed: AtomicBool::new(false),
            replay_count: AtomicU64::new(0),
        });
        spawn_child(&me.cancel, me.clone().read_stream(events));
        Ok(me)
    }

    /// POSTs one client message; for a request, waits until its answer passed on the stream.
    pub async fn send(&self, msg: Message) -> Result<(), UpstreamError> {
        if msg.is_request() && msg.method_is("initialize") {
            self.handshake.lock().unwrap().0 = Some(msg.bytes.clone());
        } else if msg.method_is("notifications/initialized") {
            self.handshake.lock().unwrap().1 = Some(msg.bytes.clone());
        }
        let answer = match (&msg.kind, &msg.id) {
            (Kind::Request, Some(id)) => Some(self.wait_for(id.clone(), false)),
            _ => None,
        };
        if let Err(e) = self.post(&msg).await {
            if let Some(id) = &msg.id {
                self.waiters.lock().unwrap().remove(id);
            }
            return Err(e);
        }
        let Some(rx) = answer else { return Ok(()) };
        match rx.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(UpstreamError::StreamClosed {
                url: self.shown.clone(),
                detail: "the bridge stopped reading the SSE stream".into(),
            }),
        }
    }

    fn wait_for(
        &self,
        id: Id,
        internal: bool,
    ) -> oneshot::Receiver<Result<Message, UpstreamError>> {
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap()
            .insert(id, Waiter { tx, internal });
        rx
    }

    async fn post(&self, msg: &Message) -> Result<(), UpstreamError> {
        let endpoint = self.current_endpoint().await?;
        let resp = self.post_to(&endpoint, msg.bytes.clone()).await?;
        if resp.status().is_success() {
            return Ok(());
        }
        let status = resp.status().as_u16();
        let (snippet, body) = error_snippet(resp).await;
        if let (Some(id), Ok(m)) = (&msg.id, Message::parse(single_line(body))) {
            if m.kind == Kind::Response && m.id.as_ref() == Some(id) {
                self.on_message(m).await;
                return Ok(());
            }
        }
        Err(UpstreamError::Status {
            status,
            url: display_url(&endpoint),
            body: snippet,
        })
    }

    /// The POST endpoint, waiting (bounded) while the stream reconnects.
    async fn current_endpoint(&self) -> Result<Url, UpstreamError> {
        let mut rx = self.endpoint.subscribe();
        let waited = tokio::time::timeout(ENDPOINT_TIMEOUT, async {
            rx.wait_for(|e| !matches!(e, Endpoint::Reconnecting))
                .await
                .ok()
                .map(|e| e.clone())
        })
        .await;
        match waited {
            Ok(Some(Endpoint::Ready(ep))) => Ok(ep),
            Ok(Some(Endpoint::Refused(f))) => Err(f.into()),
            _ => Err(UpstreamError::Connect {
                url: self.shown.clone(),
                detail: "the SSE stream is down and reconnecting has not succeeded".into(),
            }),
        }
    }

    /// Routes one server message: answers complete their waiter, the bridge's own replayed
    /// initialize answer is kept back, everything else goes to the client. `true` when the
    /// message went to the client.
    async fn on_message(&self, m: Message) -> bool {
        let waiter = match (&m.kind, &m.id) {
            (Kind::Response, Some(id)) => self.waiters.lock().unwrap().remove(id),
            _ => None,
        };
        match waiter {
            Some(w) if w.internal => {
                let _ = w.tx.send(Ok(m));
                return false;
            }
            Some(w) => {
                self.out.deliver(m.clone()).await;
                let _ = w.tx.send(Ok(m));
            }
            None => self.out.deliver(m).await,
        }
        true
    }

    /// A server message dropped for its size: a waiting request fails with the size error, a
    /// server request is refused so the server does not wait forever.
    async fn on_too_large(&self, t: &TooLarge) {
        let limit = self.http.max_message_size();
        if let (Some(id), false) = (&t.id, t.has_method) {
            let waiter = self.waiters.lock().unwrap().remove(id);
            if let Some(w) = waiter {
                let _ = w.tx.send(Err(UpstreamError::TooLarge {
                    url: self.shown.clone(),
                    size: Some(t.size),
                    limit: limit as u64,
                }));
                return;
            }
        }
        match dropped(t, &self.shown, limit) {
            Dropped::AnswerClient(m) => self.out.deliver(m).await,
            Dropped::RefuseServer(m) => {
                if let Err(e) = self.post(&m).await {
                    warn!(error = %e, "could not refuse an oversized server request");
                }
            }
            Dropped::Nothing => {}
        }
    }

    /// Reads the stream for the life of the transport, reconnecting when it breaks. While
    /// streams keep ending at once without a message for the client, reconnects back off
    /// exponentially (with jitter, up to [`MAX_BACKOFF`]).
    async fn read_stream(self: Arc<Self>, mut events: Events) {
        let mut backoff = Backoff::new(BACKOFF_BASE, MAX_BACKOFF);
        loop {
            let opened = Instant::now();
            let mut delivered = 0u64;
            let end = loop {
                match events.next().await {
                    Some(Ok(ev)) => match parse_event(ev) {
                        Some(Parsed::Message(m)) => {
                            delivered += u64::from(self.on_message(m).await);
                        }
                        Some(Parsed::Malformed(e)) => {
                            warn!(error = %e, "dropping a malformed SSE message")
                        }
                        Some(Parsed::TooLarge(t)) => {
                            delivered += 1;
                            self.on_too_large(&t).await
                        }
                        None => {}
                    },
                    Some(Err(e)) => break describe(&e),
                    None => break "the server ended the stream".to_string(),
                }
            };
            if self.closed.load(Ordering::Relaxed) {
                return;
            }
            warn!(reason = %end, "SSE stream lost; reconnecting");
            crate::telemetry::count(crate::telemetry::Event::Reconnect);
            self.endpoint.send_replace(Endpoint::Reconnecting);
            let detail = format!(
                "the SSE stream broke before the answer arrived ({end}); the request was not sent again"
            );
            for (_, w) in self.waiters.lock().unwrap().drain() {
                let _ = w.tx.send(Err(UpstreamError::StreamClosed {
                    url: self.shown.clone(),
                    detail: detail.clone(),
                }));
            }
            if delivered > 0 || opened.elapsed() >= HEALTHY_STREAM {
                backoff.reset();
            } else {
                let wait = backoff.next_delay();
                debug!(
                    ?wait,
                    "the SSE stream ended at once; waiting before reconnecting"
                );
                tokio::time::sleep(wait).await;
            }
            events = self.reconnect(&mut backoff).await;
        }
    }

    /// Reopens the stream (backing off), then replays the handshake on the new session.
    async fn reconnect(self: &Arc<Self>, backoff: &mut Backoff) -> Events {
        let (events, endpoint) = loop {
            match open(&self.url, &self.http).await {
                Ok(ok) => break ok,
                Err(UpstreamError::ForeignOrigin(f)) => {
                    warn!(error = %f, "SSE reconnect refused; retrying");
                    self.endpoint.send_replace(Endpoint::Refused(f));
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(e) => {
                    let wait = backoff.next_delay();
                    debug!(error = %e, ?wait, "SSE reconnect failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        };
        info!(endpoint = %display_url(&endpoint), "SSE stream re-established");
        let (init, initialized) = self.handshake.lock().unwrap().clone();
        let Some(init) = init else {
            self.endpoint.send_replace(Endpoint::Ready(endpoint));
            return events;
        };
        // Messages wait for the replay rather than failing on an old refusal.
        self.endpoint.send_replace(Endpoint::Reconnecting);
        // The replay runs beside the reader: its answer arrives on the stream being read.
        let me = self.clone();
        spawn_child(&self.cancel, async move {
            if let Err(e) = me.replay(init, initialized, endpoint).await {
                warn!(error = %e, "could not re-initialize after reconnecting");
            }
        });
        events
    }

    async fn replay(
        &self,
        init: Bytes,
        initialized: Option<Bytes>,
        endpoint: Url,
    ) -> Result<(), UpstreamError> {
        let n = self.replay_count.fetch_add(1, Ordering::Relaxed);
        let rid = Id::from_json(&format!("\"alibridge-reinit-{n}\""));
        let msg = jsonrpc::with_id(&init, &rid)
            .and_then(|b| Message::parse(b).ok())
            .ok_or_else(|| UpstreamError::Session {
                url: self.shown.clone(),
                detail: "the cached initialize could not be replayed".into(),
            })?;
        let answer = self.wait_for(rid, true);
        // Post straight to the new endpoint; client messages keep waiting until it is ready.
        self.post_to(&endpoint, msg.bytes).await?;
        let _ = tokio::time::timeout(ENDPOINT_TIMEOUT, answer).await;
        let initialized = initialized.unwrap_or_else(|| {
            Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
        });
        self.post_to(&endpoint, initialized).await?;
        self.endpoint.send_replace(Endpoint::Ready(endpoint));
        Ok(())
    }

    async fn post_to(
        &self,
        endpoint: &Url,
        body: Bytes,
    ) -> Result<reqwest::Response, UpstreamError> {
        self.http
            .send(endpoint, || {
                self.http
                    .client()
                    .post(endpoint.clone())
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone())
            })
            .await
    }

    /// Stops reading; the server ends the session when the stream closes.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.cancel.cancel();
    }
}

/// GETs the SSE stream and reads up to its `endpoint` event.
async fn open(url: &Url, http: &HttpClient) -> Result<(Events, Url), UpstreamError> {
    let resp = http
        .send(url, || {
            http.client().get(url.clone()).header(ACCEPT, ACCEPT_SSE)
        })
        .await?;
    let status = resp.status().as_u16();
    if !resp.status().is_success() || !is_event_stream(&resp) {
        let body = if resp.status().is_success() {
            "the response is not an SSE stream".to_string()
        } else {
            error_snippet(resp).await.0
        };
        return Err(UpstreamError::Status {
            status,
            url: display_url(url),
            body,
        });
    }
    let mut events: Events =
        EventStream::new(resp.bytes_stream().boxed()).with_limit(http.max_message_size());
    let closed = |detail: String| UpstreamError::StreamClosed {
        url: display_url(url),
        detail,
    };
    let endpoint = tokio::time::timeout(ENDPOINT_TIMEOUT, async {
        loop {
            match events.next().await {
                Some(Ok(ev)) if ev.event.as_deref() == Some("endpoint") => {
                    let text = String::from_utf8_lossy(&ev.data).trim().to_string();
                    let endpoint = url.join(&text).map_err(|e| {
                        closed(format!("the endpoint event {text:?} is not a URL: {e}"))
                    })?;
                    if !same_origin(url, &endpoint) {
                        return Err(ForeignOrigin::Endpoint {
                            sse: origin_of(url),
                            endpoint: origin_of(&endpoint),
                        }
                        .into());
                    }
                    return Ok(endpoint);
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(closed(describe(&e))),
                None => return Err(closed("the stream ended before its endpoint event".into())),
            }
        }
    })
    .await
    .map_err(|_| {
        closed("no endpoint event within 30 s; is this an HTTP+SSE MCP endpoint?".into())
    })??;
    Ok((events, endpoint))
}
