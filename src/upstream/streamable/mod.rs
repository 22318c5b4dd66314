//! Streamable HTTP (MCP 2025-06-18 and 2025-11-25): one POST per client message, answers as
//! JSON or SSE, a session id to echo, a GET stream for server-initiated messages, resumption
//! of cut streams with `Last-Event-ID`, re-initialisation when the server forgets the session,
//! and `DELETE` on exit (the GET stream in `get_stream`, the replayed event a resume may bring
//! in `replay`). POSTs also carry the request metadata headers derived from each body
//! ([`super::headers`]), so a 2026-07-28 server reached through this transport sees them too.

mod get_stream;
mod replay;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::{RequestBuilder, Response, Url};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::error::UpstreamError;
use super::event_stream::{parse_event, EventStream, Parsed, TooLarge};
use super::headers::{self, ToolFacts};
use super::http::{error_snippet, is_event_stream, HttpClient, ACCEPT_POST, ACCEPT_SSE};
use super::transport::{dropped, Deliver, Dropped, Link};
use crate::jsonrpc::{self, single_line, Id, Kind, Message};
use crate::net::{describe, display_url, read_body, BodyError};
use replay::Replay;

const SESSION_ID: &str = "mcp-session-id";
const PROTOCOL_VERSION: &str = "mcp-protocol-version";
const LAST_EVENT_ID: &str = "last-event-id";

/// How many times one response stream may be resumed without making progress.
const MAX_RESUMES: u32 = 5;
/// Wait before resuming when the server sent no `retry:`.
const DEFAULT_RETRY: Duration = Duration::from_millis(500);
/// `DELETE` on exit must not hold up the client that is closing us.
const DELETE_TIMEOUT: Duration = Duration::from_secs(2);

/// Session state, copied out as a snapshot for each request.
#[derive(Clone, Default)]
struct Session {
    id: Option<HeaderValue>,
    protocol_version: Option<HeaderValue>,
    /// Bumped whenever the session changes, so concurrent 404s trigger one re-initialize.
    generation: u64,
    /// The client's `initialize` request, replayed when the session expires.
    initialize: Option<Bytes>,
    /// The client's `notifications/initialized`, replayed after it.
    initialized: Option<Bytes>,
}

/// What a POST achieved, beyond errors.
enum Outcome {
    Done,
    /// HTTP 404 for our session id: the server forgot the session.
    Expired,
}

pub struct StreamableHttp {
    url: Url,
    /// The URL as shown in messages (no query string).
    shown: String,
    http: HttpClient,
    out: Arc<dyn Deliver>,
    tools: Arc<ToolFacts>,
    session: Mutex<Session>,
    /// Held for writing while an `initialize` is in flight: later messages need its session id.
    init_gate: tokio::sync::RwLock<()>,
    /// Makes re-initialisation single-flight.
    reinit_lock: tokio::sync::Mutex<()>,
    reinit_count: AtomicU64,
    /// Parent of every task this transport spawns; cancelled by [`Self::close`].
    cancel: CancellationToken,
    /// The running GET stream's own token (a child of `cancel`), so it can be stopped alone.
    get_stream: Mutex<Option<CancellationToken>>,
}

impl StreamableHttp {
    /// `link.cancel` is the parent of the transport's background tasks.
    pub fn new(link: Link) -> Self {
        let Link {
            url,
            http,
            out,
            tools,
            cancel,
        } = link;
        StreamableHttp {
            shown: display_url(&url),
            url,
            http,
            out,
            tools,
            session: Mutex::new(Session::default()),
            init_gate: tokio::sync::RwLock::new(()),
            reinit_lock: tokio::sync::Mutex::new(()),
            reinit_count: AtomicU64::new(0),
            cancel,
            get_stream: Mutex::new(None),
        }
    }

    /// Sends one client message (see [`super::Upstream::send`]).
    pub async fn send(self: &Arc<Self>, msg: Message) -> Result<(), UpstreamError> {
        if msg.is_request() && msg.method_is("initialize") {
            return self.initialize(msg).await;
        }
        // Wait for an initialize in flight; do not hold the gate for the whole exchange.
        drop(self.init_gate.read().await);
        let session = self.snapshot();
        if let Outcome::Expired = self.post(&msg, &session).await? {
            info!(url = %self.shown, "session expired (HTTP 404); starting a new one");
            self.reinit(session.generation).await?;
            if let Outcome::Expired = self.post(&msg, &self.snapshot()).await? {
                return Err(self.session_error("the new session was rejected at once (HTTP 404)"));
            }
        }
        if msg.method_is("notifications/initialized") {
            self.session.lock().unwrap().initialized = Some(msg.bytes.clone());
            self.start_get_stream();
        }
        Ok(())
    }

    /// Runs the client's `initialize`: a fresh session, its id and protocol version captured.
    async fn initialize(self: &Arc<Self>, msg: Message) -> Result<(), UpstreamError> {
        let _gate = self.init_gate.write().await;
        self.stop_get_stream();
        {
            let mut s = self.session.lock().unwrap();
            *s = Session {
                generation: s.generation + 1,
                initialize: Some(msg.bytes.clone()),
                ..Session::default()
            };
        }
        let id = msg.id.clone().expect("initialize is a request");
        let answer = self.exchange_initialize(&msg, &id).await?;
        if let Some(answer) = answer {
            self.out.deliver(answer).await;
        }
        Ok(())
    }

    /// POSTs an initialize without a session id and records the new session. Returns the
    /// answer, or `None` when the server's error body was already delivered.
    async fn exchange_initialize(
        &self,
        msg: &Message,
        id: &Id,
    ) -> Result<Option<Message>, UpstreamError> {
        let fresh = Session::default();
        let resp = self
            .http
            .send(&self.url, || self.post_request(&msg.bytes, &fresh))
            .await?;
        if !resp.status().is_success() {
            return self.failed(resp, msg, &fresh).await.map(|_| None);
        }
        let session_id = resp.headers().get(SESSION_ID).cloned();
        let answer = self.read_answer(resp, id, &fresh).await?;
        let version = jsonrpc::negotiated_protocol_version(&answer.bytes)
            .and_then(|v| HeaderValue::from_str(&v).ok());
        debug!(session = session_id.is_some(), version = ?version, "initialize answered");
        crate::telemetry::set_session(session_id.as_ref().and_then(|v| v.to_str().ok()));
        let mut s = self.session.lock().unwrap();
        s.id = session_id;
        s.protocol_version = version;
        Ok(Some(answer))
    }

    /// POSTs one message with `session`'s headers and delivers what comes back.
    async fn post(&self, msg: &Message, session: &Session) -> Result<Outcome, UpstreamError> {
        let resp = self
            .http
            .send(&self.url, || self.post_request(&msg.bytes, session))
            .await?;
        if !resp.status().is_success() {
            return self.failed(resp, msg, session).await;
        }
        if let (Kind::Request, Some(id)) = (msg.kind, &msg.id) {
            let mut answer = self.read_answer(resp, id, session).await?;
            if msg.method_is("tools/list") {
                let seen = self.tools.observe_list(answer.bytes.clone());
                if seen != answer.bytes {
                    answer = Message::parse(seen).unwrap_or(answer);
                }
            }
            self.out.deliver(answer).await;
        }
        Ok(Outcome::Done)
    }

    /// Turns a non-success POST response into the right outcome.
    async fn failed(
        &self,
        resp: Response,
        msg: &Message,
        session: &Session,
    ) -> Result<Outcome, UpstreamError> {
        let status = resp.status().as_u16();
        if status == 404 && session.id.is_some() {
            return Ok(Outcome::Expired);
        }
        let (snippet, body) = error_snippet(resp).await;
        // Some servers answer a bad request with a JSON-RPC error for it: that is the answer.
        if let (Some(id), Ok(m)) = (&msg.id, Message::parse(single_line(body))) {
            if m.kind == Kind::Response && m.id.as_ref() == Some(id) {
                self.out.deliver(m).await;
                return Ok(Outcome::Done);
            }
        }
        let url = self.shown.clone();
        if session.id.is_none() && matches!(status, 400 | 404 | 405) {
            return Err(UpstreamError::NotStreamable {
                status,
                url,
                body: snippet,
            });
        }
        Err(UpstreamError::Status {
            status,
            url,
            body: snippet,
        })
    }

    /// Reads a successful POST response until the answer to `id`, delivering everything else
    /// (progress, logging, server→client requests) in the order it arrives.
    async fn read_answer(
        &self,
        resp: Response,
        id: &Id,
        session: &Session,
    ) -> Result<Message, UpstreamError> {
        if is_event_stream(&resp) {
            return self.read_sse_answer(resp, id, session).await;
        }
        let body = match read_body(resp, self.http.max_message_size()).await {
            Ok(b) => b,
            Err(BodyError::TooLarge { size }) => return Err(self.too_large(size)),
            Err(BodyError::Transport(e)) => return Err(self.closed(describe(&e))),
        };
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(self.closed("the server accepted the request but sent no answer".into()));
        }
        let m = Message::parse(single_line(body)).map_err(|e| self.malformed(e.to_string()))?;
        if m.kind == Kind::Response && m.id.as_ref() == Some(id) {
            return Ok(m);
        }
        self.out.deliver(m).await;
        Err(self.closed("the JSON body was not the answer to this request".into()))
    }

    async fn read_sse_answer(
        &self,
        resp: Response,
        id: &Id,
        session: &Session,
    ) -> Result<Message, UpstreamError> {
        let mut events = self.events(resp);
        let mut resumes = 0;
        let mut malformed = None;
        let mut replay = Replay::default();
        loop {
            let detail = match events.next().await {
                Some(Ok(ev)) => {
                    if replay.is_duplicate(&ev) {
                        continue;
                    }
                    match parse_event(ev) {
                        Some(Parsed::Message(m))
                            if m.kind == Kind::Response && m.id.as_ref() == Some(id) =>
                        {
                            return Ok(m)
                        }
                        Some(Parsed::Message(m)) => {
                            resumes = 0;
                            self.out.deliver(m).await;
                        }
                        Some(Parsed::Malformed(e)) => {
                            warn!(error = %e, "dropping a malformed message from the SSE stream");
                            malformed = Some(e);
                        }
                        // The answer itself (or a message that cannot be told apart from it).
                        Some(Parsed::TooLarge(t))
                            if t.id.as_ref() == Some(id) || (t.id.is_none() && !t.has_method) =>
                        {
                            return Err(self.too_large(Some(t.size)));
                        }
                        Some(Parsed::TooLarge(t)) => {
                            resumes = 0;
                            self.on_dropped(&t, session).await;
                        }
                        None => {}
                    }
                    continue;
                }
                Some(Err(e)) => describe(&e),
                None => "the stream ended".to_string(),
            };
            let detail = match malformed.take() {
                Some(m) => return Err(self.malformed(format!("{m} ({detail})"))),
                None => detail,
            };
            let Some(last) = events.last_event_id().map(str::to_string) else {
                return Err(self.closed(format!(
                    "{detail}; the server gave no event id to resume from"
                )));
            };
            if resumes >= MAX_RESUMES {
                return Err(
                    self.closed(format!("{detail}; gave up after {MAX_RESUMES} resumptions"))
                );
            }
            resumes += 1;
            crate::telemetry::count(crate::telemetry::Event::Resumption);
            let retry = events.retry_ms();
            tokio::time::sleep(retry.map(Duration::from_millis).unwrap_or(DEFAULT_RETRY)).await;
            debug!(last_event_id = %last, attempt = resumes, "resuming the response stream");
            let resp = self
                .http
                .send(&self.url, || self.get_request(Some(&last), session))
                .await
                .map_err(|e| match e {
                    // Its own kind: the message names both origins and says what to do.
                    e @ UpstreamError::ForeignOrigin(_) => e,
                    e => self.closed(format!("{detail}; resuming failed: {e}")),
                })?;
            if !(resp.status().is_success() && is_event_stream(&resp)) {
                let status = resp.status().as_u16();
                return Err(self.closed(format!(
                    "{detail}; resuming with Last-Event-ID got HTTP {status}"
                )));
            }
            events = self.events(resp).with_last_event_id(Some(last));
            replay.resumed();
            if let Some(ms) = retry {
                events = events.with_retry_ms(ms);
            }
        }
    }

    /// Starts a new session after the old one expired: replays the client's initialize (with
    /// an id of our own, so its answer stays here) and initialized. Concurrent callers that saw
    /// the same expired session wait for one replay.
    async fn reinit(self: &Arc<Self>, failed_generation: u64) -> Result<(), UpstreamError> {
        let _one_at_a_time = self.reinit_lock.lock().await;
        let old = self.snapshot();
        if old.generation != failed_generation {
            return Ok(()); // someone else already replaced the session
        }
        let Some(init) = old.initialize.clone() else {
            return Err(self
                .session_error("the client never sent initialize, so there is nothing to replay"));
        };
        self.stop_get_stream();
        let n = self.reinit_count.fetch_add(1, Ordering::Relaxed);
        let rid = Id::from_json(&format!("\"alibridge-reinit-{n}\""));
        let msg = jsonrpc::with_id(&init, &rid)
            .and_then(|b| Message::parse(b).ok())
            .ok_or_else(|| self.session_error("the cached initialize could not be replayed"))?;
        {
            let mut s = self.session.lock().unwrap();
            s.id = None;
            s.protocol_version = None;
            s.generation += 1;
        }
        let answer = match self.exchange_initialize(&msg, &rid).await {
            Ok(Some(a)) => a,
            Ok(None) => return Err(self.session_error("the server refused the new initialize")),
            Err(e) => return Err(self.session_error(&e.to_string())),
        };
        if jsonrpc::is_error_response(&answer.bytes) {
            return Err(self.session_error("the server answered the new initialize with an error"));
        }
        let initialized = old.initialized.clone().unwrap_or_else(|| {
            Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
        });
        let note = Message::parse(initialized).expect("initialized was parsed before");
        let session = self.snapshot();
        if let Err(e) = self.post(&note, &session).await {
            warn!(error = %e, "the new session did not accept notifications/initialized");
        }
        if old.initialized.is_some() {
            self.start_get_stream();
        }
        info!(url = %self.shown, "new MCP session established");
        Ok(())
    }

    /// Stops the GET stream and deletes the session, bounded by `DELETE_TIMEOUT`; then every
    /// task this transport started is cancelled.
    /// Stops every task of the session without telling the server: the credential in use now
    /// belongs to another identity, which must not be sent to this endpoint.
    pub fn abandon(&self) {
        self.stop_get_stream();
        self.cancel.cancel();
    }

    pub async fn close(&self) {
        self.stop_get_stream();
        let _cancel_all = self.cancel.clone().drop_guard();
        let session = self.snapshot();
        let Some(id) = session.id.clone() else { return };
        let delete = self.http.send(&self.url, || {
            let mut rb = self
                .http
                .client()
                .delete(self.url.clone())
                .header(SESSION_ID, id.clone());
            if let Some(v) = &session.protocol_version {
                rb = rb.header(PROTOCOL_VERSION, v.clone());
            }
            rb
        });
        match tokio::time::timeout(DELETE_TIMEOUT, delete).await {
            Ok(Ok(resp)) => debug!(status = resp.status().as_u16(), "session deleted"),
            Ok(Err(e)) => debug!(error = %e, "session DELETE failed"),
            Err(_) => debug!("session DELETE timed out"),
        }
    }

    /// Whether the server gave this transport a session (`Mcp-Session-Id`): a server that
    /// serves the `initialize` era statelessly does not, and may be a modern one's fallback leg.
    pub fn has_session(&self) -> bool {
        self.session.lock().unwrap().id.is_some()
    }

    fn snapshot(&self) -> Session {
        self.session.lock().unwrap().clone()
    }

    fn post_request(&self, body: &Bytes, session: &Session) -> RequestBuilder {
        let mut rb = self
            .http
            .client()
            .post(self.url.clone())
            .header(ACCEPT, ACCEPT_POST)
            .header(CONTENT_TYPE, "application/json")
            .body(body.clone());
        if let Some(id) = &session.id {
            rb = rb.header(HeaderName::from_static(SESSION_ID), id.clone());
        }
        let negotiated = session
            .protocol_version
            .as_ref()
            .and_then(|v| v.to_str().ok());
        for (n, v) in headers::for_body(body, negotiated, &self.tools) {
            rb = rb.header(n, v);
        }
        rb
    }

    fn get_request(&self, last_event_id: Option<&str>, session: &Session) -> RequestBuilder {
        let mut rb = self
            .http
            .stream_client()
            .get(self.url.clone())
            .header(ACCEPT, ACCEPT_SSE);
        if let Some(v) = last_event_id.and_then(|l| HeaderValue::from_str(l).ok()) {
            rb = rb.header(LAST_EVENT_ID, v);
        }
        with_session(rb, session)
    }

    /// An SSE parser for `resp`'s body, bounded by `--max-message-size`.
    fn events(
        &self,
        resp: Response,
    ) -> EventStream<impl futures_util::Stream<Item = reqwest::Result<Bytes>> + Unpin> {
        EventStream::new(resp.bytes_stream()).with_limit(self.http.max_message_size())
    }

    /// Deals with a server message dropped for its size that is not the answer being read.
    async fn on_dropped(&self, t: &TooLarge, session: &Session) {
        match dropped(t, &self.shown, self.http.max_message_size()) {
            Dropped::AnswerClient(m) => self.out.deliver(m).await,
            Dropped::RefuseServer(m) => {
                // A plain POST of the error response (not `post`, which reads answers).
                let sent = self
                    .http
                    .send(&self.url, || self.post_request(&m.bytes, session))
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => warn!(
                        status = r.status().as_u16(),
                        "the server refused our error for its oversized request"
                    ),
                    Err(e) => warn!(error = %e, "could not refuse an oversized server request"),
                }
            }
            Dropped::Nothing => {}
        }
    }

    fn too_large(&self, size: Option<u64>) -> UpstreamError {
        UpstreamError::too_large(&self.shown, size, self.http.max_message_size())
    }

    fn closed(&self, detail: String) -> UpstreamError {
        UpstreamError::stream_closed(&self.shown, detail)
    }

    fn malformed(&self, detail: String) -> UpstreamError {
        UpstreamError::malformed(&self.shown, detail)
    }

    fn session_error(&self, detail: &str) -> UpstreamError {
        UpstreamError::Session {
            url: self.shown.clone(),
            detail: detail.to_string(),
        }
    }
}

fn with_session(mut rb: RequestBuilder, session: &Session) -> RequestBuilder {
    if let Some(id) = &session.id {
        rb = rb.header(SESSION_ID, id.clone());
    }
    if let Some(v) = &session.protocol_version {
        rb = rb.header(PROTOCOL_VERSION, v.clone());
    }
    rb
}
