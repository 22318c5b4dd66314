//! A local OAuth 2.1 authorization server for the sign-in tests, in-process on
//! `127.0.0.1:<free port>`, controlled through [`OAuthServer`]; and, in `protected.rs`, a
//! protected MCP server ([`ProtectedMcp`]) that fronts the rmcp test server, accepts only this
//! server's access tokens, and answers the way real MCP servers do (`401` with
//! `WWW-Authenticate: Bearer resource_metadata="…", scope="…"`, `403 insufficient_scope` for a
//! step-up, RFC 9728 metadata at its well-known URLs).
//!
//! Files: this one holds the state and the controls, `endpoints.rs` the HTTP endpoints,
//! `protected.rs` the protected MCP server.
//!
//! The authorization server serves, under its issuer (`http://127.0.0.1:<port>[/<path>]`):
//! - RFC 8414 metadata at `/.well-known/oauth-authorization-server[/<path>]` (`issuer` is its
//!   own URL; `S256` in `code_challenge_methods_supported`; `registration_endpoint` unless
//!   registration is off; `token_endpoint_auth_methods_supported` as configured);
//! - RFC 7591 registration (`POST …/register`): records the body (`redirect_uris`,
//!   `application_type`, …); a client asking for `token_endpoint_auth_method: none` gets no
//!   secret;
//! - `GET …/authorize`, which checks `client_id` (known), `redirect_uri` (registered, exact
//!   match), `response_type=code`, `code_challenge` + `code_challenge_method=S256`, `state`,
//!   `resource` (a protected resource it serves) and `scope` (supported), and then answers
//!   `302` straight back to the redirect URI with `code`, `state` and `iss` (or
//!   `error=access_denied` when [`OAuthServer::deny`] is on): the user approves at once. An
//!   unknown client or redirect URI gets a `400` page and no redirect (RFC 6749 §4.1.2.1);
//! - `POST …/token` for `authorization_code` (the PKCE verifier must hash to the challenge;
//!   `redirect_uri`, `resource` and the client must match the code's; a code works once) and
//!   `refresh_token` (rotating: each refresh token works once; `scope` may only narrow), with
//!   client authentication `none`, `client_secret_basic` or `client_secret_post`, each accepted
//!   only when the metadata lists it. Access tokens expire after a configurable lifetime and
//!   look like JWTs (`sub` = [`USER`]) so `alibridge status` can show who signed in.
//!
//! Switches: [`OAuthServer::deny`], [`OAuthServer::forget_clients`] (every later use of a
//! client id gets `invalid_client`), [`OAuthServer::revoke_refresh_tokens`] (→
//! `invalid_grant`), [`OAuthServer::revoke_access_tokens`]. Every request is logged:
//! [`OAuthServer::authorizations`], [`OAuthServer::token_requests`],
//! [`OAuthServer::registrations`]; [`OAuthServer::secrets`] lists every secret value that went
//! through it (tokens, codes, verifiers, client secrets) so tests can prove none is logged.

mod endpoints;
mod protected;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

// `super`: the test support module in tests, the crate root in the example.
use super::net::{listen, random_b64url, serve};

#[allow(unused_imports)]
pub use protected::{FrontRequest, ProtectedMcp, ProtectedOptions};

/// The user every access token is issued to (the JWT-shaped token's `sub`).
pub const USER: &str = "test-user@example.com";

/// How the authorization server is started.
#[derive(Debug, Clone)]
pub struct AsOptions {
    /// Path of the issuer: empty for `http://127.0.0.1:<port>`, else e.g. `/tenant1`, which
    /// moves the metadata to `/.well-known/oauth-authorization-server/tenant1` and the
    /// endpoints under `/tenant1/`.
    pub issuer_path: String,
    /// `token_endpoint_auth_methods_supported`; the token endpoint accepts only these.
    pub token_auth_methods: Vec<String>,
    /// Offer dynamic client registration (`registration_endpoint`).
    pub registration: bool,
    /// How long an access token is valid (`expires_in`).
    pub access_token_lifetime: Duration,
    /// `scopes_supported`; requested scopes must be among them.
    pub scopes_supported: Vec<String>,
    /// The loopback address to listen on (`127.0.0.2` for a second, "other" host).
    pub bind: std::net::IpAddr,
    /// The RFC 9207 `iss` put on the redirect back to the client.
    pub callback_iss: CallbackIss,
    /// `authorization_response_iss_parameter_supported` in the metadata.
    pub advertise_iss: bool,
}

/// What `iss` the authorization response carries (a hostile or broken server varies it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackIss {
    /// Its own issuer, as RFC 9207 requires.
    Own,
    /// None at all.
    Omitted,
    /// Another issuer (a mix-up attack).
    Other(String),
}

impl Default for AsOptions {
    fn default() -> Self {
        AsOptions {
            issuer_path: String::new(),
            token_auth_methods: vec!["none".into()],
            registration: true,
            access_token_lifetime: Duration::from_secs(3600),
            scopes_supported: vec!["mcp:read".into(), "mcp:admin".into()],
            bind: std::net::Ipv4Addr::LOCALHOST.into(),
            callback_iss: CallbackIss::Own,
            advertise_iss: true,
        }
    }
}

/// One visit to `/authorize`.
#[derive(Debug, Clone)]
pub struct Authorization {
    pub params: BTreeMap<String, String>,
    /// `code`, `access_denied`, or `<error>: <why>` when the request was refused.
    pub outcome: String,
    /// Where the browser was sent (`None` when the page refused to redirect).
    pub location: Option<String>,
}

impl Authorization {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// The requested scopes, as a set.
    pub fn scopes(&self) -> BTreeSet<String> {
        scope_set(self.param("scope"))
    }
}

/// One request to `/token`.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub grant_type: String,
    /// `none`, `client_secret_basic` or `client_secret_post`: how the client authenticated.
    pub client_auth: String,
    pub client_id: Option<String>,
    /// The form parameters (secrets included; tests only compare them).
    pub params: BTreeMap<String, String>,
    pub status: u16,
    /// The OAuth `error` answered, when refused (with its reason after `: `).
    pub error: Option<String>,
}

impl TokenRequest {
    pub fn ok(&self) -> bool {
        self.status == 200
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// One dynamic registration.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The registration request, as sent.
    pub request: Value,
    pub client_id: String,
}

/// What [`OAuthServer::check_access_token`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenVerdict {
    Valid,
    /// Unknown, expired, revoked, or for another resource.
    Invalid,
    /// Valid, but without every required scope.
    InsufficientScope,
}

struct Client {
    secret: Option<String>,
    redirect_uris: Vec<String>,
}

struct Code {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    resource: Option<String>,
    scopes: BTreeSet<String>,
    used: bool,
}

struct AccessToken {
    /// The grant (one authorization code and every refresh after it) it belongs to.
    grant: u64,
    resource: Option<String>,
    scopes: BTreeSet<String>,
    expires_at: SystemTime,
    revoked: bool,
}

struct RefreshToken {
    grant: u64,
    client_id: String,
    resource: Option<String>,
    scopes: BTreeSet<String>,
    used: bool,
    revoked: bool,
}

/// Everything the server knows; one lock, held briefly.
struct State {
    opts: AsOptions,
    clients: HashMap<String, Client>,
    /// Protected resources whose tokens this server issues (empty: any).
    resources: Vec<String>,
    codes: HashMap<String, Code>,
    access: HashMap<String, AccessToken>,
    /// Access tokens in the order they were issued.
    access_order: Vec<String>,
    refresh: HashMap<String, RefreshToken>,
    deny: bool,
    authorizations: Vec<Authorization>,
    token_requests: Vec<TokenRequest>,
    registrations: Vec<Registration>,
    /// Every secret value seen or issued.
    secrets: BTreeSet<String>,
    /// Grants issued so far (ids of [`AccessToken::grant`]).
    grants: u64,
    /// Refresh tokens presented a second time (each revoked its whole grant).
    refresh_reuses: usize,
}

/// The running authorization server. Dropping it stops it.
pub struct OAuthServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    kill: CancellationToken,
}

impl OAuthServer {
    /// Starts with default options: public clients, registration on, 1 h access tokens,
    /// scopes `mcp:read` and `mcp:admin`.
    pub async fn start() -> OAuthServer {
        Self::start_with(AsOptions::default()).await
    }

    pub async fn start_with(opts: AsOptions) -> OAuthServer {
        let listener = listen(opts.bind).await;
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            opts,
            clients: HashMap::new(),
            resources: Vec::new(),
            codes: HashMap::new(),
            access: HashMap::new(),
            access_order: Vec::new(),
            refresh: HashMap::new(),
            deny: false,
            authorizations: Vec::new(),
            token_requests: Vec::new(),
            registrations: Vec::new(),
            secrets: BTreeSet::new(),
            grants: 0,
            refresh_reuses: 0,
        }));
        let kill = CancellationToken::new();
        let s = state.clone();
        serve(listener, kill.clone(), move |req| {
            let state = s.clone();
            async move { endpoints::handle(addr, &state, req).await }
        });
        OAuthServer { addr, state, kill }
    }

    fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// The issuer identifier, e.g. `http://127.0.0.1:4242` or `http://127.0.0.1:4242/tenant1`.
    pub fn issuer(&self) -> String {
        issuer(self.addr, &self.st().opts)
    }

    /// Pre-registers a client (as an administrator would), with an optional secret and the
    /// exact redirect URIs it may use.
    pub fn add_client(&self, id: &str, secret: Option<&str>, redirect_uris: &[String]) {
        let mut st = self.st();
        if let Some(s) = secret {
            st.secrets.insert(s.to_string());
        }
        st.clients.insert(
            id.to_string(),
            Client {
                secret: secret.map(str::to_string),
                redirect_uris: redirect_uris.to_vec(),
            },
        );
    }

    /// Declares a protected resource: `/authorize` and `/token` then accept only known
    /// `resource` values (RFC 8707), and tokens are bound to the resource they were asked for.
    pub fn add_resource(&self, resource: &str) {
        self.st().resources.push(resource.to_string());
    }

    /// From now on the user declines (`error=access_denied`), or approves again.
    pub fn deny(&self, on: bool) {
        self.st().deny = on;
    }

    /// The server loses every client registration (a database reset): their codes, tokens and
    /// refresh tokens stop working and every later use of their ids gets `invalid_client`.
    pub fn forget_clients(&self) {
        let mut st = self.st();
        st.clients.clear();
        for t in st.access.values_mut() {
            t.revoked = true;
        }
        for t in st.refresh.values_mut() {
            t.revoked = true;
        }
    }

    /// Revokes every refresh token issued so far (→ `invalid_grant`) and their access tokens.
    pub fn revoke_refresh_tokens(&self) {
        let mut st = self.st();
        for t in st.refresh.values_mut() {
            t.revoked = true;
        }
        for t in st.access.values_mut() {
            t.revoked = true;
        }
    }

    /// How many times a refresh token was presented after it had been used (rotation
    /// violated; each such reuse revoked its grant, as OAuth 2.1 §4.3.1 recommends).
    pub fn refresh_reuse_count(&self) -> usize {
        self.st().refresh_reuses
    }

    /// Every refresh token issued so far (to prove one never reaches another server).
    pub fn refresh_tokens(&self) -> Vec<String> {
        self.st().refresh.keys().cloned().collect()
    }

    /// Revokes every access token issued so far (refresh tokens keep working).
    pub fn revoke_access_tokens(&self) {
        for t in self.st().access.values_mut() {
            t.revoked = true;
        }
    }

    /// Access tokens issued from now on live `d`.
    pub fn set_access_token_lifetime(&self, d: Duration) {
        self.st().opts.access_token_lifetime = d;
    }

    /// Checks a bearer token for `resource` (when given) and every scope in `required`
    /// (space-separated).
    pub fn check_access_token(
        &self,
        token: &str,
        resource: Option<&str>,
        required: Option<&str>,
    ) -> TokenVerdict {
        check(&self.st(), token, resource, required)
    }

    /// True when `token` is a live access token of this server granting every scope in
    /// `required_scope` (space-separated; `None`: any scope).
    pub fn is_valid_access_token(&self, token: &str, required_scope: Option<&str>) -> bool {
        self.check_access_token(token, None, required_scope) == TokenVerdict::Valid
    }

    /// Every visit to `/authorize`, in order.
    pub fn authorizations(&self) -> Vec<Authorization> {
        self.st().authorizations.clone()
    }

    /// How many times `/authorize` was visited.
    pub fn authorize_count(&self) -> usize {
        self.st().authorizations.len()
    }

    /// Every request to `/token`, in order.
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.st().token_requests.clone()
    }

    /// How many `/token` requests had `grant_type` (successful or not).
    pub fn token_count(&self, grant_type: &str) -> usize {
        self.st()
            .token_requests
            .iter()
            .filter(|t| t.grant_type == grant_type)
            .count()
    }

    /// Every dynamic registration, in order.
    pub fn registrations(&self) -> Vec<Registration> {
        self.st().registrations.clone()
    }

    /// Access tokens in the order they were issued.
    pub fn access_tokens(&self) -> Vec<String> {
        self.st().access_order.clone()
    }

    /// Every secret value that went through this server: access and refresh tokens,
    /// authorization codes, PKCE verifiers, client secrets.
    pub fn secrets(&self) -> Vec<String> {
        self.st().secrets.iter().cloned().collect()
    }

    /// Whether any secret of [`OAuthServer::secrets`] occurs in `text`; returns the first.
    pub fn leaked_in(&self, text: &str) -> Option<String> {
        self.secrets()
            .into_iter()
            .find(|s| text.contains(s.as_str()))
    }

    fn shared(&self) -> Arc<Mutex<State>> {
        self.state.clone()
    }
}

impl Drop for OAuthServer {
    fn drop(&mut self) {
        self.kill.cancel();
    }
}

fn issuer(addr: SocketAddr, opts: &AsOptions) -> String {
    format!("http://{addr}{}", opts.issuer_path.trim_end_matches('/'))
}

fn scope_set(s: Option<&str>) -> BTreeSet<String> {
    s.unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn join_scopes(s: &BTreeSet<String>) -> String {
    s.iter().cloned().collect::<Vec<_>>().join(" ")
}

fn check(st: &State, token: &str, resource: Option<&str>, required: Option<&str>) -> TokenVerdict {
    let Some(t) = st.access.get(token) else {
        return TokenVerdict::Invalid;
    };
    if t.revoked || t.expires_at <= SystemTime::now() {
        return TokenVerdict::Invalid;
    }
    if let (Some(want), Some(have)) = (resource, t.resource.as_deref()) {
        if want != have {
            return TokenVerdict::Invalid;
        }
    }
    if scope_set(required).is_subset(&t.scopes) {
        TokenVerdict::Valid
    } else {
        TokenVerdict::InsufficientScope
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A JWT-shaped access token (not signed: only this server checks it, by lookup).
fn new_access_token(lifetime: Duration) -> String {
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let exp = now_secs() + lifetime.as_secs();
    format!(
        "{}.{}.{}",
        b64(json!({"alg": "none", "typ": "at+jwt"})),
        b64(json!({"sub": USER, "exp": exp, "jti": random_b64url(12)})),
        random_b64url(24)
    )
}
