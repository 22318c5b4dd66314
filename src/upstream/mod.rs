//! The server side of the bridge: the remote MCP endpoint and its transports.
//!
//! [`Upstream`] first settles the protocol era of the run (`--protocol`, the state machine in
//! [`era`]): a client's `initialize` goes to the server first, and only a refusal (or a
//! stateless answer) is followed by a `server/discover` probe; a modern server (MCP
//! 2026-07-28) gets the [`modern`] transport, which translates for the `initialize`-era client;
//! a modern client's first message is relayed as it is and its answer tells the era. Otherwise
//! it picks a legacy transport (Streamable HTTP or the HTTP+SSE pair) according to
//! `--transport`, falling back once when the first attempt shows the server speaks the other
//! one. Each transport hands every message the server sends to a [`Deliver`] sink (the relay),
//! never to stdout directly.
//!
//! Layout: [`era`] (the era's states and decisions, no I/O), [`era_cache`] (what earlier runs
//! learned), [`transport`] (what every transport shares: [`Deliver`], [`Link`], background
//! tasks), [`http`] (client, headers, credential, safe retries), [`headers`] (the request
//! metadata headers derived from each body, per-tool facts), [`event_stream`] (SSE parsing),
//! [`streamable`] (Streamable HTTP sessions), [`legacy_sse`] (HTTP+SSE), [`modern`]
//! (2026-07-28, sessionless), [`follow`] (a discovered endpoint that moves with the
//! credential's identity), [`error`].

pub mod era;
pub mod era_cache;
pub mod error;
pub mod event_stream;
pub mod follow;
pub mod headers;
pub mod http;
pub mod legacy_sse;
pub mod modern;
pub mod streamable;
pub mod transport;

use std::sync::Arc;

use tokio::sync::{Mutex, MutexGuard};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use self::era::ProtocolMode;
use self::era::{AfterInitialize, Era, FirstContact, Found, Policy, Shape, Step, Tried, Verdict};
use self::era_cache::{EraCheck, Learned};
pub use self::error::UpstreamError;
use self::headers::ToolFacts;
use self::http::HttpClient;
use self::legacy_sse::LegacySse;
use self::modern::{First, Modern, Probe};
use self::streamable::StreamableHttp;
pub use self::transport::{Deliver, Link};
use crate::jsonrpc::{self, Message};

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

/// The chosen `initialize`-era transport.
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
    era: Mutex<Era<Arc<Modern>>>,
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

    /// [`Self::send`] to the endpoint in use, without checking the identity: a dispatch on
    /// what the era machine says about the message ([`era::Step`]).
    async fn send_here(&self, msg: Message) -> Result<(), UpstreamError> {
        // A modern client's first request decides the era while holding it; cancelling that
        // request must not wait behind it.
        let deciding = self.deciding.lock().unwrap().clone();
        if let Some(m) = deciding.filter(|m| m.cancels_in_flight(&msg)) {
            return m.send(msg).await;
        }
        let mut era = self.era.lock().await;
        match era.on_message(self.policy(), || Shape::of(&msg)) {
            Step::Legacy => {
                drop(era);
                self.send_legacy(msg).await
            }
            Step::Modern(m) => {
                drop(era);
                m.send(msg).await
            }
            Step::Initialize => self.decide_by_initialize(&mut era, msg).await,
            Step::ModernFirst => self.decide_by_modern_client(&mut era, msg).await,
            Step::Refuse => {
                warn!(method = ?msg.method, "--protocol modern: refusing a message sent before initialize");
                Err(self.not_modern(format!(
                    "the client sent {} before initialize or any modern request, so the server's \
                     era is not known yet",
                    msg.method.as_deref().unwrap_or("a response")
                )))
            }
        }
    }

    fn policy(&self) -> Policy {
        Policy {
            protocol: self.protocol,
            http_first: matches!(
                self.mode,
                TransportMode::HttpFirst | TransportMode::HttpOnly
            ),
        }
    }

    /// What the transports are built from, with `out` as their sink.
    fn link(&self, out: Arc<dyn Deliver>) -> Link {
        Link {
            url: self.url(),
            http: self.http.clone(),
            out,
            tools: self.tools.clone(),
            cancel: self.cancel.child_token(),
        }
    }

    // ---- the era decided by the client's `initialize` ----

    /// The client's `initialize` while the era is open: sent first, or after a probe when the
    /// server is remembered (or required) to be modern ([`era::first_contact`]).
    async fn decide_by_initialize(
        &self,
        era: &mut Era<Arc<Modern>>,
        msg: Message,
    ) -> Result<(), UpstreamError> {
        let remembered = match self.era_cache() {
            Some(c) if self.protocol == ProtocolMode::Auto => {
                tokio::task::spawn_blocking(move || c.load())
                    .await
                    .ok()
                    .flatten()
            }
            _ => None,
        };
        match era::first_contact(self.protocol, remembered) {
            FirstContact::ProbeFirst => {
                if remembered == Some(Learned::Modern) {
                    info!("protocol: the modern era, as learned on an earlier run; probing first");
                }
                self.probe_first(era, msg).await
            }
            FirstContact::InitializeFirst { trust_stateless } => {
                self.initialize_first(era, msg, trust_stateless, remembered.is_some())
                    .await
            }
        }
    }

    /// `server/discover` before the client's `initialize`: its result is what the translated
    /// `initialize` answer is made of.
    async fn probe_first(
        &self,
        era: &mut Era<Arc<Modern>>,
        msg: Message,
    ) -> Result<(), UpstreamError> {
        let (_, client_info, caps) = modern::initialize_params(&msg.bytes);
        let probe = modern::probe(&self.url(), &self.http, &client_info, &caps).await?;
        match (era::after_probe(self.protocol, found(&probe), false), probe) {
            (Verdict::Translate, Probe::Modern { discover, version }) => {
                self.translate(era, version, discover, msg).await
            }
            (Verdict::NotModern, Probe::Legacy(why)) => Err(self.not_modern(why)),
            (_, probe) => {
                info!(found = ?found(&probe), "protocol: the server is served in the initialize era");
                era.settle(Era::Legacy);
                self.send_legacy_and_remember(msg).await
            }
        }
    }

    /// Sends the client's `initialize` to the server as it is, holding its answer back until
    /// the era is known: an answer with a session settles the `initialize` era at no extra
    /// round trip; a refusal or a stateless answer is followed by a probe.
    async fn initialize_first(
        &self,
        era: &mut Era<Arc<Modern>>,
        msg: Message,
        trust_stateless: bool,
        remembered: bool,
    ) -> Result<(), UpstreamError> {
        let check = EraCheck::new(self.out.clone(), msg.id.clone());
        let t = Arc::new(StreamableHttp::new(self.link(check.clone())));
        let sent = t.send(msg.clone()).await;
        let tried = match &sent {
            Err(UpstreamError::NotStreamable { .. }) => Tried::Refused,
            Ok(()) if check.refused() => Tried::Refused,
            Ok(()) if !t.has_session() => Tried::Stateless,
            // No era shows before the server was reached and let the client in: decide later.
            Err(
                UpstreamError::Connect { .. }
                | UpstreamError::Auth(_)
                | UpstreamError::ForeignOrigin(_),
            ) => {
                t.abandon();
                return sent;
            }
            _ => Tried::Session,
        };
        let probe = match era::after_initialize(tried, trust_stateless) {
            AfterInitialize::Legacy => None,
            AfterInitialize::Probe => {
                if remembered && tried == Tried::Refused {
                    info!(
                        "protocol: the server refused initialize although it took it on an \
                         earlier run; probing its era again"
                    );
                    if let Some(c) = self.era_cache() {
                        let _ = tokio::task::spawn_blocking(move || c.forget()).await;
                    }
                }
                let (_, client_info, caps) = modern::initialize_params(&msg.bytes);
                match modern::probe(&self.url(), &self.http, &client_info, &caps).await {
                    Ok(p) => Some(p),
                    Err(e) => {
                        t.abandon();
                        return Err(e);
                    }
                }
            }
        };
        let verdict = probe.as_ref().map_or(Verdict::Legacy, |p| {
            era::after_probe(self.protocol, found(p), tried == Tried::Refused)
        });
        if let (Verdict::Translate, Some(Probe::Modern { discover, version })) = (verdict, probe) {
            // Nothing of the initialize era is kept: a stateless answer left no session.
            t.abandon();
            drop(check.take());
            return self.translate(era, version, discover, msg).await;
        }
        era.settle(Era::Legacy);
        let active = self.active.lock().await;
        match sent {
            Err(UpstreamError::NotStreamable { status, url, body }) => {
                info!(
                    status,
                    "protocol: the server does not speak MCP {}; POST refused",
                    modern::MODERN_VERSION
                );
                self.after_refused_post(active, t, msg, status, url, body)
                    .await
            }
            sent => {
                info!(
                    session = t.has_session(),
                    "protocol: the server took initialize; the initialize era (no server/discover \
                     before it)"
                );
                let mut active = active;
                *active = Active::Streamable(t);
                drop(active);
                if let Some(answer) = check.take() {
                    self.out.deliver(answer).await;
                }
                if sent.is_ok() {
                    self.remember(Learned::Legacy).await;
                }
                sent
            }
        }
    }

    /// Settles the era on a translating [`Modern`] transport and answers `msg` (the client's
    /// `initialize`) from the `discover` result.
    async fn translate(
        &self,
        era: &mut Era<Arc<Modern>>,
        version: String,
        discover: serde_json::Value,
        msg: Message,
    ) -> Result<(), UpstreamError> {
        let m = Modern::translating(self.link(self.out.clone()), version, discover);
        era.settle(Era::Modern(m.clone()));
        self.remember(Learned::Modern).await;
        m.send(msg).await
    }

    /// A modern client's first message: relayed as it is; its answer decides.
    async fn decide_by_modern_client(
        &self,
        era: &mut Era<Arc<Modern>>,
        msg: Message,
    ) -> Result<(), UpstreamError> {
        let m = Modern::passthrough(self.link(self.out.clone()));
        let id = msg.id.clone();
        *self.deciding.lock().unwrap() = Some(m.clone());
        let first = m.send_first(msg).await;
        *self.deciding.lock().unwrap() = None;
        match first? {
            First::Cancelled => {
                m.close();
                Ok(())
            }
            First::Modern => {
                info!(
                    "protocol: client and server speak the modern era (MCP {}); relaying",
                    modern::MODERN_VERSION
                );
                era.settle(Era::Modern(m));
                Ok(())
            }
            First::Legacy(why) => {
                m.close();
                if self.protocol == ProtocolMode::Modern {
                    return Err(self.not_modern(why));
                }
                info!(reason = %why, "protocol: the client speaks the modern era, the server does \
                       not; answering with a non-modern error so the client falls back to initialize");
                era.settle(Era::Legacy);
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
                Ok(())
            }
        }
    }

    // ---- era cache hook (see era_cache.rs) ----

    /// The era cache entry of the endpoint now in use.
    fn era_cache(&self) -> Option<era_cache::EraCache> {
        let home = self.era_home.as_ref()?;
        Some(era_cache::EraCache::new(home, &self.url()))
    }

    /// Sends through the legacy transports and records the era for the next start: `legacy`
    /// when that settled on Streamable HTTP; otherwise the entry is dropped (HTTP+SSE
    /// endpoints are never probed, and a remembered `modern` is wrong now).
    async fn send_legacy_and_remember(&self, msg: Message) -> Result<(), UpstreamError> {
        let sent = self.send_legacy(msg).await;
        if self.era_home.is_some() && sent.is_ok() {
            if matches!(*self.active.lock().await, Active::Streamable(_)) {
                self.remember(Learned::Legacy).await;
            } else if let Some(c) = self.era_cache() {
                let _ = tokio::task::spawn_blocking(move || c.forget()).await;
            }
        }
        sent
    }

    async fn remember(&self, era: Learned) {
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

    // ---- the `initialize`-era transports ----

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
                        self.after_refused_post(active, t, msg, status, url, body)
                            .await
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

    /// The first POST of Streamable HTTP was refused as a server without it refuses
    /// (400/404/405): under `http-first` the HTTP+SSE transport is tried once, under
    /// `http-only` the refusal is the answer.
    async fn after_refused_post(
        &self,
        mut active: MutexGuard<'_, Active>,
        t: Arc<StreamableHttp>,
        msg: Message,
        status: u16,
        url: String,
        body: String,
    ) -> Result<(), UpstreamError> {
        if self.mode == TransportMode::HttpOnly {
            *active = Active::Streamable(t);
            return Err(UpstreamError::Status { status, url, body });
        }
        info!(
            status,
            "POST refused; falling back to the HTTP+SSE transport"
        );
        t.abandon();
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
        if let Some(m) = era.reset() {
            m.close();
        }
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
        if let Some(m) = self.era.lock().await.reset() {
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
        StreamableHttp::new(self.link(self.out.clone()))
    }
}

/// What a probe found, for the era machine.
fn found(p: &Probe) -> Found {
    match p {
        Probe::Modern { discover, .. } => Found::Modern {
            lists_legacy: modern::lists_legacy(discover),
        },
        Probe::Legacy(_) => Found::Legacy,
    }
}

impl Drop for Upstream {
    /// Background tasks hold the transport alive; without this a dropped upstream would leave
    /// its GET stream running.
    fn drop(&mut self) {
        self.cancel.cancel();
    }
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
