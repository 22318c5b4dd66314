//! The server side of the bridge: the remote MCP endpoint and its transports.
//!
//! [`Upstream`] first settles the protocol era of the run (`--protocol`): a client's
//! `initialize` is preceded by a `server/discover` probe, and a modern server (MCP 2026-07-28)
//! gets the [`modern`] transport, which translates for the `initialize`-era client; a modern
//! client's first message is relayed as it is and its answer tells the era. Otherwise it picks
//! a legacy transport (Streamable HTTP or the HTTP+SSE pair) according to `--transport`,
//! falling back once when the first attempt shows the server speaks the other one. Each
//! transport hands every message the server sends to a [`Deliver`] sink (the relay), never to
//! stdout directly.
//!
//! Layout: [`http`] (client, headers, credential, safe retries), [`headers`] (the request
//! metadata headers derived from each body, per-tool facts), [`event_stream`] (SSE parsing),
//! [`streamable`] (Streamable HTTP sessions), [`legacy_sse`] (HTTP+SSE), [`modern`]
//! (2026-07-28, sessionless), [`follow`] (a discovered endpoint that moves with the
//! credential's identity), [`error`].

pub mod era_cache;
pub mod error;
pub mod event_stream;
pub mod follow;
pub mod headers;
pub mod http;
pub mod legacy_sse;
pub mod modern;
pub mod streamable;

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use self::error::UpstreamError;
use self::event_stream::TooLarge;
use self::headers::ToolFacts;
use self::http::HttpClient;
use self::legacy_sse::LegacySse;
use self::modern::{First, Modern, Probe};
use self::streamable::StreamableHttp;
use crate::jsonrpc::{self, Message};
use futures_util::future::BoxFuture;

/// `--transport` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportMode {
    /// Streamable HTTP; on 400/404/405 from the first POST, try HTTP+SSE once.
    HttpFirst,
    /// HTTP+SSE; if the SSE GET is refused, try Streamable HTTP once.
    SseFirst,
    /// Streamable HTTP only.
    HttpOnly,
    /// Legacy HTTP+SSE (2024-11-05) only.
    SseOnly,
}

impl TransportMode {
    /// The default for `url`: an `/sse` path is the conventional legacy endpoint, so trying
    /// SSE first there saves a doomed POST.
    pub fn default_for(url: &reqwest::Url) -> TransportMode {
        if url.path().trim_end_matches('/').ends_with("/sse") {
            TransportMode::SseFirst
        } else {
            TransportMode::HttpFirst
        }
    }
}

/// `--protocol` values: which MCP era the bridge may speak to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProtocolMode {
    /// Probe with `server/discover` on the client's `initialize`: a modern server (2026-07-28)
    /// is translated for, anything else gets the older protocol as before.
    Auto,
    /// The `initialize` era only (2025-11-25 and earlier); never probes.
    Legacy,
    /// MCP 2026-07-28 only: a server that does not speak it is refused with an error.
    Modern,
}

/// The protocol era settled for the run.
enum Era {
    Undecided,
    /// The `initialize`-era transports ([`Active`]).
    Legacy,
    Modern(Arc<Modern>),
}

/// Where server messages go. Implemented by the relay, which enforces "one answer per request".
pub trait Deliver: Send + Sync + 'static {
    /// Hands one message from the server to the client side; waits for room on stdout.
    fn deliver(&self, msg: Message) -> BoxFuture<'_, ()>;
}

/// The chosen transport.
enum Active {
    Undecided,
    Streamable(Arc<StreamableHttp>),
    Sse(Arc<LegacySse>),
}

/// The remote endpoint, with its transport chosen on first use.
pub struct Upstream {
    /// Fixed for the run, except when [`follow`] moves it to another identity's endpoint.
    url: std::sync::RwLock<reqwest::Url>,
    /// The URL-less start: the endpoint follows the AccessKey identity.
    follow: Option<follow::Follow>,
    mode: TransportMode,
    protocol: ProtocolMode,
    /// Held while the era is being decided, so concurrent messages wait for it.
    era: Mutex<Era>,
    /// The modern transport whose first request is deciding the era (see [`Self::send_here`]).
    deciding: std::sync::Mutex<Option<Arc<Modern>>>,
    /// Per-tool facts from `tools/list` answers (header mirroring, idempotency).
    tools: Arc<ToolFacts>,
    http: HttpClient,
    out: Arc<dyn Deliver>,
    /// Held across the first send while no transport is chosen, so concurrent messages wait
    /// for the decision instead of racing it.
    active: Mutex<Active>,
    /// Root of the cancellation tree of every background task of the upstream (GET stream,
    /// SSE reader, re-initialisations, replays): cancelled by [`Self::close`] or on drop.
    cancel: CancellationToken,
    /// The state directory where the era learned by earlier runs is kept (`--protocol auto`),
    /// see [`era_cache`].
    era_home: Option<std::path::PathBuf>,
}

impl Upstream {
    pub fn new(
        url: reqwest::Url,
        mode: TransportMode,
        protocol: ProtocolMode,
        http: HttpClient,
        out: Arc<dyn Deliver>,
    ) -> Self {
        Upstream {
            url: std::sync::RwLock::new(url),
            follow: None,
            mode,
            protocol,
            era: Mutex::new(Era::Undecided),
            deciding: std::sync::Mutex::new(None),
            tools: Arc::new(ToolFacts::default()),
            http,
            out,
            active: Mutex::new(Active::Undecided),
            cancel: CancellationToken::new(),
            era_home: None,
        }
    }

    /// Makes the endpoint follow the AccessKey identity (the URL-less Core start): when the
    /// identity changes, its own Core endpoint is discovered and a new session started there.
    pub fn following(
        mut self,
        core: Arc<crate::auth::access_key::discovery::CoreEndpoint>,
    ) -> Self {
        self.follow = Some(follow::Follow::new(core));
        self
    }

    fn url(&self) -> reqwest::Url {
        self.url.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Remembers the era across runs in the state directory `home`.
    pub fn with_era_cache(mut self, home: &std::path::Path) -> Self {
        self.era_home = Some(home.to_path_buf());
        self
    }

    /// Sends one client message. For a request, returns once its answer was delivered or the
    /// exchange failed (the caller then answers with the error); for other messages, once the
    /// server accepted them.
    pub async fn send(&self, msg: Message) -> Result<(), UpstreamError> {
        if let Some(f) = &self.follow {
            f.before_send(self, &msg).await?;
        }
        self.send_here(msg).await
    }

    /// [`Self::send`] to the endpoint in use, without checking the identity.
    async fn send_here(&self, msg: Message) -> Result<(), UpstreamError> {
        // A modern client's first request decides the era while holding it; cancelling that
        // request must not wait behind it.
        let deciding = self.deciding.lock().unwrap().clone();
        if let Some(m) = deciding.filter(|m| m.cancels_in_flight(&msg)) {
            return m.send(msg).await;
        }
        let mut era = self.era.lock().await;
        match &*era {
            Era::Legacy => {
                drop(era);
                return self.send_legacy(msg).await;
            }
            Era::Modern(m) => {
                let m = m.clone();
                drop(era);
                return m.send(msg).await;
            }
            Era::Undecided => {}
        }
        let legacy_only = self.protocol == ProtocolMode::Legacy
            || (self.protocol == ProtocolMode::Auto
                && matches!(self.mode, TransportMode::SseFirst | TransportMode::SseOnly));
        if legacy_only {
            info!("protocol: the initialize era (--protocol {:?}, --transport {:?}); no server/discover probe",
                  self.protocol, self.mode);
            *era = Era::Legacy;
            drop(era);
            return self.send_legacy(msg).await;
        }
        if msg.is_request() && msg.method_is("initialize") {
            if let Some(done) = self.initialize_by_cached_era(&msg).await {
                *era = Era::Legacy;
                return done;
            }
            let (asked, client_info, caps) = modern::initialize_params(&msg.bytes);
            match modern::probe(&self.url(), &self.http, &client_info, &caps).await? {
                // A server that also lists versions of the initialize era is best served in it:
                // no translation, and the server negotiates the version, keeps a session and
                // sends its requests as the client expects.
                Probe::Modern { discover, .. }
                    if self.protocol == ProtocolMode::Auto && modern::lists_legacy(&discover) =>
                {
                    info!(client_version = %asked, "protocol: the server speaks both eras; using \
                          the initialize era");
                    *era = Era::Legacy;
                    drop(era);
                    return self.send_legacy_and_remember(msg).await;
                }
                Probe::Modern { discover, version } => {
                    let m = Modern::translating(
                        self.url(),
                        self.http.clone(),
                        self.out.clone(),
                        self.tools.clone(),
                        self.cancel.child_token(),
                        version,
                        discover,
                    );
                    *era = Era::Modern(m.clone());
                    drop(era);
                    self.remember(era_cache::Learned::Modern).await;
                    return m.send(msg).await;
                }
                Probe::Legacy(why) => {
                    if self.protocol == ProtocolMode::Modern {
                        return Err(self.not_modern(why));
                    }
                    info!(reason = %why, "protocol: the server does not speak MCP {}; using the initialize era",
                          modern::MODERN_VERSION);
                    *era = Era::Legacy;
                    drop(era);
                    return self.send_legacy_and_remember(msg).await;
                }
            }
        }
        if modern::is_modern_shaped(&msg) {
            let m = Modern::passthrough(
                self.url(),
                self.http.clone(),
                self.out.clone(),
                self.tools.clone(),
                self.cancel.child_token(),
            );
            let id = msg.id.clone();
            *self.deciding.lock().unwrap() = Some(m.clone());
            let first = m.send_first(msg).await;
            *self.deciding.lock().unwrap() = None;
            match first? {
                First::Cancelled => {
                    m.close();
                    return Ok(());
                }
                First::Modern => {
                    info!(
                        "protocol: client and server speak the modern era (MCP {}); relaying",
                        modern::MODERN_VERSION
                    );
                    *era = Era::Modern(m);
                    return Ok(());
                }
                First::Legacy(why) => {
                    m.close();
                    if self.protocol == ProtocolMode::Modern {
                        return Err(self.not_modern(why));
                    }
                    info!(reason = %why, "protocol: the client speaks the modern era, the server does \
                           not; answering with a non-modern error so the client falls back to initialize");
                    *era = Era::Legacy;
                    drop(era);
                    // A JSON-RPC error whose code no modern server uses: the client's signal to
                    // fall back to `initialize` (answered on the legacy path).
                    if let Some(id) = id {
                        let line = jsonrpc::error_response(
                            Some(&id),
                            jsonrpc::code::METHOD_NOT_FOUND,
                            &format!(
                                "alibridge: the MCP server at {} does not speak MCP {} ({why}); \
                                 send initialize to use the older protocol",
                                self.shown_url(),
                                modern::MODERN_VERSION
                            ),
                            None,
                        );
                        if let Ok(m) = Message::parse(line) {
                            self.out.deliver(m).await;
                        }
                    }
                    return Ok(());
                }
            }
        }
        if self.protocol == ProtocolMode::Modern {
            warn!(method = ?msg.method, "--protocol modern: refusing a message sent before initialize");
            return Err(self.not_modern(format!(
                "the client sent {} before initialize or any modern request, so the server's era \
                 is not known yet",
                msg.method.as_deref().unwrap_or("a response")
            )));
        }
        *era = Era::Legacy;
        drop(era);
        self.send_legacy(msg).await
    }

    // ---- era cache hook (see era_cache.rs) ----

    /// The era cache entry of the endpoint now in use.
    fn era_cache(&self) -> Option<era_cache::EraCache> {
        let home = self.era_home.as_ref()?;
        Some(era_cache::EraCache::new(home, &self.url()))
    }

    /// With a cached `legacy` era (and `--protocol auto` over Streamable HTTP), sends the
    /// client's `initialize` without probing. `None` when there is no such entry, or when the
    /// server refused the message the way a modern-only server does: then the entry is dropped
    /// and the caller probes as on a cold start.
    async fn initialize_by_cached_era(&self, msg: &Message) -> Option<Result<(), UpstreamError>> {
        let cache = self.era_cache()?;
        if self.protocol != ProtocolMode::Auto
            || !matches!(
                self.mode,
                TransportMode::HttpFirst | TransportMode::HttpOnly
            )
        {
            return None;
        }
        let c = cache.clone();
        let cached = tokio::task::spawn_blocking(move || c.load()).await.ok()??;
        if cached != era_cache::Learned::Legacy {
            return None;
        }
        let mut active = self.active.lock().await;
        if !matches!(*active, Active::Undecided) {
            return None;
        }
        let check = era_cache::EraCheck::new(self.out.clone(), msg.id.clone());
        let t = Arc::new(StreamableHttp::new(
            self.url(),
            self.http.clone(),
            check.clone(),
            self.tools.clone(),
            self.cancel.child_token(),
        ));
        let sent = t.send(msg.clone()).await;
        if check.refused() && sent.is_ok() {
            info!(
                "protocol: the server refused initialize with a modern era error although it \
                  took it on an earlier run; probing its era again"
            );
            t.close().await;
            let c = cache.clone();
            let _ = tokio::task::spawn_blocking(move || c.forget()).await;
            return None;
        }
        match sent {
            Err(UpstreamError::NotStreamable { status, .. }) => {
                info!(
                    status,
                    "protocol: the server refused initialize although it took it on \
                      an earlier run; probing its era again"
                );
                let c = cache.clone();
                let _ = tokio::task::spawn_blocking(move || c.forget()).await;
                None
            }
            Err(e @ UpstreamError::Connect { .. }) => Some(Err(e)),
            other => {
                info!("protocol: the initialize era, as learned on an earlier run (no server/discover probe)");
                *active = Active::Streamable(t);
                Some(other)
            }
        }
    }

    /// Sends through the legacy transports and, when that settled on Streamable HTTP, records
    /// the era for the next start.
    async fn send_legacy_and_remember(&self, msg: Message) -> Result<(), UpstreamError> {
        let sent = self.send_legacy(msg).await;
        if self.era_home.is_some()
            && sent.is_ok()
            && matches!(*self.active.lock().await, Active::Streamable(_))
        {
            self.remember(era_cache::Learned::Legacy).await;
        }
        sent
    }

    async fn remember(&self, era: era_cache::Learned) {
        if let Some(c) = self.era_cache() {
            let _ = tokio::task::spawn_blocking(move || c.store(era)).await;
        }
    }

    fn not_modern(&self, detail: String) -> UpstreamError {
        UpstreamError::NotModern {
            url: self.shown_url(),
            detail,
        }
    }

    /// Sends one message through the `initialize`-era transports, choosing one on first use.
    async fn send_legacy(&self, msg: Message) -> Result<(), UpstreamError> {
        let mut active = self.active.lock().await;
        match &*active {
            Active::Streamable(t) => {
                let t = t.clone();
                drop(active);
                return t.send(msg).await;
            }
            Active::Sse(t) => {
                let t = t.clone();
                drop(active);
                return t.send(msg).await;
            }
            Active::Undecided => {}
        }
        match self.mode {
            TransportMode::HttpOnly | TransportMode::HttpFirst => {
                let t = Arc::new(self.streamable());
                match t.send(msg.clone()).await {
                    Err(UpstreamError::NotStreamable { status, url, body }) => {
                        if self.mode == TransportMode::HttpOnly {
                            *active = Active::Streamable(t);
                            return Err(UpstreamError::Status { status, url, body });
                        }
                        info!(
                            status,
                            "POST refused; falling back to the HTTP+SSE transport"
                        );
                        let sse = match LegacySse::connect(
                            &self.url(),
                            &self.http,
                            &self.out,
                            self.cancel.child_token(),
                        )
                        .await
                        {
                            Ok(sse) => sse,
                            // Neither transport works: report the Streamable HTTP refusal too.
                            Err(e) => return Err(both_failed(status, e)),
                        };
                        *active = Active::Sse(sse.clone());
                        drop(active);
                        sse.send(msg).await
                    }
                    Err(e @ UpstreamError::Connect { .. }) => Err(e),
                    other => {
                        *active = Active::Streamable(t);
                        other
                    }
                }
            }
            TransportMode::SseOnly | TransportMode::SseFirst => {
                let connected = LegacySse::connect(
                    &self.url(),
                    &self.http,
                    &self.out,
                    self.cancel.child_token(),
                )
                .await;
                match connected {
                    Ok(sse) => {
                        *active = Active::Sse(sse.clone());
                        drop(active);
                        sse.send(msg).await
                    }
                    Err(e) if self.mode == TransportMode::SseFirst && e.http_status().is_some() => {
                        info!(error = %e, "SSE GET refused; falling back to Streamable HTTP");
                        let t = Arc::new(self.streamable());
                        *active = Active::Streamable(t.clone());
                        drop(active);
                        t.send(msg).await.map_err(|e| match e {
                            UpstreamError::NotStreamable { status, url, body } => {
                                UpstreamError::Status { status, url, body }
                            }
                            e => e,
                        })
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// The endpoint as shown in messages (no query string).
    pub fn shown_url(&self) -> String {
        crate::net::display_url(&self.url())
    }

    /// Moves to `url`: ends the transports of the old endpoint (their streams and era; no
    /// `DELETE`, which would carry the new identity's token to the old account's endpoint) so
    /// the next message settles everything afresh there. Returns `false` when the endpoint
    /// already is `url`.
    async fn rebase(&self, url: &reqwest::Url) -> bool {
        let mut era = self.era.lock().await;
        if self.url() == *url {
            return false;
        }
        if let Era::Modern(m) = &*era {
            m.close();
        }
        *era = Era::Undecided;
        let active = std::mem::replace(&mut *self.active.lock().await, Active::Undecided);
        match active {
            Active::Streamable(t) => t.abandon(),
            Active::Sse(t) => t.close(),
            Active::Undecided => {}
        }
        *self.url.write().unwrap_or_else(|e| e.into_inner()) = url.clone();
        true
    }

    /// Ends the session politely (Streamable HTTP `DELETE`) and stops every background task.
    pub async fn close(&self) {
        if let Era::Modern(m) = &*self.era.lock().await {
            m.close();
        }
        let active = std::mem::replace(&mut *self.active.lock().await, Active::Undecided);
        match active {
            Active::Streamable(t) => t.close().await,
            Active::Sse(t) => t.close(),
            Active::Undecided => {}
        }
        self.cancel.cancel();
    }

    fn streamable(&self) -> StreamableHttp {
        StreamableHttp::new(
            self.url(),
            self.http.clone(),
            self.out.clone(),
            self.tools.clone(),
            self.cancel.child_token(),
        )
    }
}

impl Drop for Upstream {
    /// Background tasks hold the transport alive; without this a dropped upstream would leave
    /// its GET stream running.
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Spawns `task` as a child of `token`: once `token` or any ancestor is cancelled, the task is
/// dropped at its next await.
pub(crate) fn spawn_child(
    token: &CancellationToken,
    task: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    let token = token.clone();
    tokio::spawn(async move {
        token.run_until_cancelled(task).await;
    })
}

/// What becomes of a server message dropped for its size, other than the answer a POST is
/// reading (that request simply fails with [`UpstreamError::TooLarge`]).
pub(crate) enum Dropped {
    /// A response: the client's request with that id gets this error instead (the relay drops
    /// it if no such request is open).
    AnswerClient(Message),
    /// A request from the server: it gets this error response, so it does not wait forever for
    /// an answer the client never saw.
    RefuseServer(Message),
    /// A notification, or nothing could be read: only logged.
    Nothing,
}

pub(crate) fn dropped(t: &TooLarge, url: &str, limit: usize) -> Dropped {
    tracing::warn!(size = t.size, limit, id = %t.id.as_ref().map(|i| i.as_json()).unwrap_or("-"),
                   request = t.has_method, "discarded a server message over --max-message-size");
    let Some(id) = &t.id else {
        return Dropped::Nothing;
    };
    if t.has_method {
        let refusal = jsonrpc::error_response(
            Some(id),
            jsonrpc::code::INVALID_REQUEST,
            &format!(
                "the request was {} and the client's bridge (alibridge) relays at most {} \
                 (--max-message-size); it was not passed to the client",
                jsonrpc::human_size(t.size),
                jsonrpc::human_size(limit as u64)
            ),
            None,
        );
        return Message::parse(refusal).map_or(Dropped::Nothing, Dropped::RefuseServer);
    }
    let err = UpstreamError::TooLarge {
        url: url.to_string(),
        size: Some(t.size),
        limit: limit as u64,
    };
    Message::parse(err.to_response(id)).map_or(Dropped::Nothing, Dropped::AnswerClient)
}

fn both_failed(status: u16, sse: UpstreamError) -> UpstreamError {
    match sse {
        UpstreamError::Status {
            status: s2,
            url,
            body,
        } => UpstreamError::Status {
            status,
            url,
            body: format!(
                "{body} (the HTTP+SSE fallback got HTTP {s2} too; is this an MCP endpoint?)"
            ),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A task whose future was dropped (cancelled) closes its end of a channel it held.
    async fn held(tx: tokio::sync::oneshot::Sender<()>) {
        let _kept_until_dropped = tx;
        std::future::pending::<()>().await
    }

    #[tokio::test]
    async fn cancelling_the_root_stops_every_task_below_it() {
        let root = CancellationToken::new();
        let transport = root.child_token();
        let stream = transport.child_token();
        let (a, a_rx) = tokio::sync::oneshot::channel();
        let (b, b_rx) = tokio::sync::oneshot::channel();
        let (c, c_rx) = tokio::sync::oneshot::channel();
        let tasks = [
            spawn_child(&root, held(a)),
            spawn_child(&transport, held(b)),
            spawn_child(&stream, held(c)),
        ];
        // Stopping one stream leaves its parents' tasks running.
        stream.cancel();
        assert!(c_rx.await.is_err(), "the stream's task was dropped");
        assert!(!tasks[0].is_finished() && !tasks[1].is_finished());
        root.cancel();
        for t in tasks {
            t.await.expect("a cancelled task ends cleanly");
        }
        assert!(a_rx.await.is_err() && b_rx.await.is_err());
    }
}
