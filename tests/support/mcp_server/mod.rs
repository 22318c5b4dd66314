//! A real MCP server for tests, in-process: rmcp's Streamable HTTP server (stateful sessions,
//! protocol 2025-06-18 and earlier) on `127.0.0.1`, behind a fault-injection layer, controlled
//! through [`TestServer`].
//!
//! What it owns:
//! - the tools (`tools.rs`): `echo {text}`, `sleep {ms}`, `big {bytes}`, `progress {steps}`,
//!   `sample {prompt}`, `elicit {message}`, `notify {count}`, `count`, with per-tool call counters
//!   ([`TestServer::calls`]);
//! - the server's life: it is served by the suite's one accept loop ([`super::net::serve`]),
//!   and [`TestServer::kill`] closes the port and drops every connection;
//! - the layer in front of rmcp (`faults.rs`): request log ([`TestServer::requests`]), canned
//!   HTTP errors ([`TestServer::fail_next`]), SSE cuts the test pulls, with `Last-Event-ID` replay
//!   ([`TestServer::cut_next_sse`]), kill on a matching POST ([`TestServer::kill_on`]); and session
//!   expiry ([`TestServer::expire_sessions`], rmcp itself then answers 404); and, when
//!   [`ServerOptions::require_bearer`] is set, `401` + `WWW-Authenticate: Bearer` for every
//!   request whose `Authorization: Bearer <token>` the check refuses
//!   ([`TestServer::unauthorized`]).
//!
//! rmcp 3.11 behaviour worth knowing (checked against this server; what the bridge sees):
//! - Every SSE response starts with a priming event: `id`, `retry: <ms>` (here 300 ms; rmcp's
//!   default is 3000) and an empty `data:` line. Ids: `0` on initialize, `<index>/<n>` on the
//!   n-th request stream (priming is `0/<n>`), `0`, `1`, … on the standalone GET stream, whose
//!   priming *and* first message are both `0`. Responses to initialize carry no id.
//! - Native resumption (`GET` + `Last-Event-ID` of a request stream) works only while that
//!   request is still running: once its response is produced the stream is forgotten, and the
//!   GET gets `200` with an empty SSE body. It also re-sends the event named by `Last-Event-ID`
//!   itself (off by one), so a resumed client sees that event twice. The layer's own replay
//!   ([`TestServer::cut_next_sse`]) has neither problem; [`TestServer::cut_next_sse_native`]
//!   leaves resumption to rmcp.
//! - A new standalone GET without `Last-Event-ID` replays the last (up to 16) messages of that
//!   stream from the start: notifications sent before any GET was open are delivered then.
//! - Notifications other than progress (e.g. `notifications/message`) go to the standalone GET
//!   stream; progress and server requests made inside a tool call (sampling, elicitation) go on
//!   that call's POST stream. Server request ids count from 0 per session and carry
//!   `_meta.progressToken`.
//! - Requests are always answered with SSE (never `application/json`); notifications and client
//!   responses get `202` with no body; DELETE gets `202`.
//! - An unknown or closed session id gets `404` (`text/plain`, "Not Found: Session not found");
//!   a non-initialize POST without a session id gets `400`. Unknown methods get the JSON-RPC
//!   error -32601 inside a normal `200` SSE answer.
//! - An initialize asking for an unknown protocol version is answered with `2025-11-25`.

mod faults;
mod tools;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rmcp::transport::streamable_http_server::{
    session::local::LocalSessionManager, SessionManager, StreamableHttpServerConfig,
    StreamableHttpService,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

// `super`: the test support module in tests, the crate root in the examples.
use super::net::{serve, LOOPBACK};
use super::wait::{until, until_notified};

pub use faults::{Action, Cut, Match, Rule, SeenRequest, TokenCheck};
pub use tools::Counters;

/// How the server is started.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// The `retry:` advertised in SSE priming events (rmcp's default is 3 s).
    pub sse_retry: Duration,
    /// Largest POST body rmcp accepts (rmcp's default is 4 MiB).
    pub max_body_bytes: usize,
    /// When set, every request must carry `Authorization: Bearer <token>` with a token this
    /// accepts; anything else gets `401` with `WWW-Authenticate: Bearer` and never reaches rmcp.
    pub require_bearer: Option<TokenCheck>,
    /// Accept any `Host` header (rmcp accepts only loopback names by default), for tests that
    /// reach this server under a public host name through an HTTP proxy (`HTTP_PROXY`).
    pub any_host: bool,
}

impl ServerOptions {
    /// Options that require a bearer token `accept` says yes to.
    pub fn requiring_bearer(accept: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        ServerOptions {
            require_bearer: Some(TokenCheck(Arc::new(accept))),
            ..ServerOptions::default()
        }
    }
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            port: 0,
            sse_retry: Duration::from_millis(300),
            max_body_bytes: 256 << 20,
            require_bearer: None,
            any_host: false,
        }
    }
}

/// The running server. Dropping it kills it.
pub struct TestServer {
    addr: SocketAddr,
    layer: Arc<faults::Layer>,
    counters: Arc<Counters>,
    sessions: Arc<LocalSessionManager>,
    rmcp_ct: CancellationToken,
}

impl TestServer {
    /// Starts a server on a free port with default options.
    pub async fn start() -> TestServer {
        Self::start_with(ServerOptions::default()).await
    }

    /// Starts a server with `opts`.
    pub async fn start_with(opts: ServerOptions) -> TestServer {
        let listener = TcpListener::bind((LOOPBACK, opts.port))
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let counters = Arc::new(Counters::default());
        let mut sessions = LocalSessionManager::default();
        sessions.session_config.sse_retry = Some(opts.sse_retry);
        let sessions = Arc::new(sessions);
        let rmcp_ct = CancellationToken::new();
        let mut config = StreamableHttpServerConfig::default()
            .with_sse_retry(Some(opts.sse_retry))
            .with_max_request_body_bytes(opts.max_body_bytes)
            .with_cancellation_token(rmcp_ct.child_token());
        if opts.any_host {
            config = config.disable_allowed_hosts();
        }
        let c = counters.clone();
        let rmcp = StreamableHttpService::new(
            move || Ok(tools::TestTools::new(c.clone())),
            sessions.clone(),
            config,
        );
        let kill = CancellationToken::new();
        let layer = Arc::new(faults::Layer::new(
            rmcp,
            kill.clone(),
            opts.sse_retry,
            opts.require_bearer.clone(),
        ));
        let l = layer.clone();
        serve(listener, kill, move |req| {
            let layer = l.clone();
            async move { layer.handle(req).await }
        });
        TestServer {
            addr,
            layer,
            counters,
            sessions,
            rmcp_ct,
        }
    }

    /// The MCP endpoint, e.g. `http://127.0.0.1:PORT/mcp` (any path is served).
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many times `tool` has started running.
    pub fn calls(&self, tool: &str) -> u64 {
        self.counters.get(tool)
    }

    /// Every tool's call count.
    pub fn call_counts(&self) -> BTreeMap<String, u64> {
        self.counters.snapshot()
    }

    /// Every MCP request received so far, in arrival order: all but the bridge's
    /// credential-less preconnect (a `HEAD`, see [`TestServer::all_requests`]).
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.all_requests()
            .into_iter()
            .filter(|r| r.method != http::Method::HEAD)
            .collect()
    }

    /// Every HTTP request received so far, in arrival order, the preconnect `HEAD` included.
    pub fn all_requests(&self) -> Vec<SeenRequest> {
        self.layer.requests()
    }

    /// The requests answered `401` because their bearer token was refused
    /// ([`ServerOptions::require_bearer`]).
    pub fn unauthorized(&self) -> Vec<SeenRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.status == Some(401))
            .collect()
    }

    /// The session id the server issued on the first initialize (panics if none was).
    pub fn issued_session(&self) -> String {
        self.requests()
            .iter()
            .find_map(|r| r.issued_session.clone())
            .expect("an initialize answered with Mcp-Session-Id")
    }

    /// Waits (see [`super::wait`]) until a logged request satisfies `pred`; returns it.
    pub async fn wait_for_request(&self, pred: impl Fn(&SeenRequest) -> bool) -> SeenRequest {
        until_notified(
            &self.layer.log_changed,
            "no such request reached the test server",
            || self.requests().into_iter().find(|r| pred(r)),
        )
        .await
    }

    /// Waits (see [`super::wait`]) until `tool` has started at least `n` times.
    pub async fn wait_for_calls(&self, tool: &str, n: u64) {
        until(format!("{tool} called {n} times"), || self.calls(tool) >= n).await;
    }

    /// Arms a fault for the next POST matching `rule.when`.
    pub fn arm(&self, rule: Rule) {
        self.layer.arm(rule);
    }

    /// The next POST matching `when` gets `status` with `body` (JSON content type if it starts
    /// with `{`, else text/plain), without reaching rmcp.
    pub fn fail_next(&self, when: Match, status: u16, body: impl Into<String>) {
        self.arm(Rule {
            when,
            action: Action::Respond {
                status,
                body: body.into(),
            },
        });
    }

    /// The next POST matching `when` that rmcp answers with SSE delivers `after_events` events
    /// (the priming event counts), then holds until the returned [`Cut`] is pulled, which breaks
    /// the connection; the rest is served to a `GET` with `Last-Event-ID`. Pull it once the
    /// client has shown the last delivered event.
    pub fn cut_next_sse(&self, when: Match, after_events: usize) -> Cut {
        let cut = Cut::default();
        self.arm(Rule {
            when,
            action: Action::CutAfter(after_events, cut.clone()),
        });
        cut
    }

    /// Like [`TestServer::cut_next_sse`], but rmcp's own stream is dropped at the cut, so a
    /// resuming `GET` is served by rmcp's native resumption (with its quirks, see module docs).
    pub fn cut_next_sse_native(&self, when: Match, after_events: usize) -> Cut {
        let cut = Cut::default();
        self.arm(Rule {
            when,
            action: Action::CutNative(after_events, cut.clone()),
        });
        cut
    }

    /// The server dies (as [`TestServer::kill`]) when the next POST matching `when` arrives.
    pub fn kill_on(&self, when: Match) {
        self.arm(Rule {
            when,
            action: Action::Kill,
        });
    }

    /// Closes every rmcp session; requests with those `Mcp-Session-Id`s then get 404.
    /// Returns how many sessions were closed.
    pub async fn expire_sessions(&self) -> usize {
        let ids: Vec<_> = self
            .sessions
            .sessions
            .read()
            .await
            .keys()
            .cloned()
            .collect();
        for id in &ids {
            let _ = self.sessions.close_session(id).await;
        }
        ids.len()
    }

    /// Kills the server: stops listening (the port then refuses connections) and drops every
    /// open connection mid-flight.
    pub fn kill(&self) {
        self.layer.kill.cancel();
        self.rmcp_ct.cancel();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}
