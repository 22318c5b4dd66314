//! A faithful local fake of the Alibaba Cloud services behind `--auth ak`, in-process on
//! `127.0.0.1:<free port>`, controlled through [`AliyunFake`]:
//!
//! - RAM-OAuth `GenerateAccessToken` (version 2026-04-21; RPC v2 signed, POST, parameters in the
//!   query, empty body): mints expiring bearer tokens (`{"RequestId","Data":{"TokenType":
//!   "Bearer","ExpiresIn":"<secs>","Scope","AccessToken"}}`) with a per-test lifetime;
//! - STS `AssumeRole` (2015-04-01; RPC v2 signed over query ∪ form body) and
//!   `AssumeRoleWithOIDC` (unsigned, form body with `OIDCToken`): mint temporary keys
//!   (`STS.…`, secret, `SecurityToken`, `Expiration`) that the fake then accepts for signing;
//! - the sign-in page `GET /oauth2/v1/auth` that `alibridge pre-check` opens (`signin.rs`).
//!
//! Every signed call is verified as the real gateway does (`api.rs`), with the fake's own
//! canonicalisation (`rpc.rs`): known AccessKeyId, matching and unexpired SecurityToken for STS
//! keys, `Timestamp` within 15 minutes, `SignatureNonce` never reused, `HMAC-SHA1` / `1.0`.
//! Errors are shaped like Alibaba Cloud's: `{"RequestId","HostId","Code","Message",
//! "Recommend"}` with the real codes and statuses (`SignatureDoesNotMatch` 400,
//! `InvalidAccessKeyId.NotFound` 404, `InvalidTimeStamp.Expired` 400, `SignatureNonceUsed` 400,
//! `InvalidSecurityToken.Expired` 400, `Forbidden.RAM` 403 for keys the test marks as lacking
//! `AliyunOpenAPIMCPServerStaticCredentialAccess`, …).
//!
//! - OpenAPI Explorer `UpdateBearerTokenSafetyPolicy` (ROA `POST /safePolicy/set`, anonymous,
//!   JSON body; `safety.rs`): binds a safety policy and a tool list to a minted token.
//!
//! A hostile switch, [`AliyunFake::redirect_api`], makes every API call (not the sign-in page)
//! answer with a redirect to another place, carrying the call's path and signed query along.
//!
//! Every call is recorded ([`Call`]); minted tokens can be checked ([`AliyunFake::is_valid_token`],
//! [`AliyunFake::token_checker`], which the test MCP server uses to answer 401) and revoked.

mod api;
pub mod cores;
pub mod rpc;
pub mod safety;
mod signin;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tokio_util::sync::CancellationToken;

// `super`: the test support module in tests, the crate root in the example.
use super::net::{listen, read_body, serve, LOOPBACK};

pub use api::{
    ASSUME_ROLE, ASSUME_ROLE_WITH_OIDC, GENERATE_ACCESS_TOKEN, IMS_VERSION, OPENAPI_SCOPE,
    STS_VERSION,
};
pub use signin::AUTHORIZE_PATH;

/// Client id of the built-in OpenAPI MCP application, China site.
pub const CN_CLIENT_ID: &str = "4071151845732613353";
/// Client id of the built-in OpenAPI MCP application, International site.
pub const INTL_CLIENT_ID: &str = "4195410055503316452";
/// The system policy a RAM identity needs to mint tokens from AccessKeys.
pub const MINT_POLICY: &str = "AliyunOpenAPIMCPServerStaticCredentialAccess";

/// One RPC call the fake answered (successful or not), in arrival order.
#[derive(Debug, Clone, Default)]
pub struct Call {
    /// `Action` (empty if missing).
    pub action: String,
    pub http_method: String,
    /// `AccessKeyId` the call was signed with (`None` for unsigned calls).
    pub access_key_id: Option<String>,
    /// `SecurityToken`, when the call carried one.
    pub security_token: Option<String>,
    /// `Policy`, verbatim.
    pub policy: Option<String>,
    pub client_id: Option<String>,
    pub scope: Option<String>,
    /// Every parameter (query ∪ form) except `Signature`.
    pub params: BTreeMap<String, String>,
    /// Names of the parameters that came in the form body.
    pub form: Vec<String>,
    /// The action requires a signature (and it was checked).
    pub signed: bool,
    /// HTTP status answered.
    pub status: u16,
    /// The error `Code`, when refused.
    pub code: Option<String>,
    /// The error `Message`, when refused.
    pub message: Option<String>,
    pub request_id: String,
    /// The bearer token minted (GenerateAccessToken).
    pub token: Option<String>,
    /// The temporary keys minted (AssumeRole*).
    pub sts: Option<StsCredentials>,
}

impl Call {
    pub fn ok(&self) -> bool {
        self.status == 200
    }

    /// A parameter's value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Temporary keys minted by an STS action.
#[derive(Debug, Clone)]
pub struct StsCredentials {
    pub access_key_id: String,
    pub access_key_secret: String,
    pub security_token: String,
    pub expires_at: SystemTime,
    pub role_arn: String,
    /// May mint tokens (inherited from the keys that assumed the role).
    pub permitted: bool,
}

/// How the sign-in page treats an OAuth application (client id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientStatus {
    /// Installed and authorized: a code comes back.
    Installed,
    /// The user declines: `error=access_denied`.
    Denied,
    /// Not installed in this account: `error=unauthorized_client`.
    NotInstalled,
}

/// One visit to the sign-in page.
#[derive(Debug, Clone)]
pub struct SignIn {
    pub params: BTreeMap<String, String>,
    /// `code`, `access_denied`, `unauthorized_client`, or `invalid_…: why`.
    pub outcome: String,
    /// Where the browser was sent (`None` when the page refused to redirect).
    pub location: Option<String>,
}

struct LongTermKey {
    secret: String,
    permitted: bool,
}

struct TokenInfo {
    key_id: String,
    expires_at: SystemTime,
    revoked: bool,
}

/// Everything the fake knows; one lock, held only briefly.
struct State {
    keys: HashMap<String, LongTermKey>,
    sts: HashMap<String, StsCredentials>,
    tokens: HashMap<String, TokenInfo>,
    nonces: HashSet<String>,
    calls: Vec<Call>,
    token_lifetime: Duration,
    sts_lifetime: Option<Duration>,
    oidc_tokens: HashSet<String>,
    clients: HashMap<String, ClientStatus>,
    signins: Vec<SignIn>,
    /// `(status, base)`: API calls are redirected to `base` + their path and query.
    api_redirect: Option<(u16, String)>,
    /// API calls answered with that redirect.
    redirected: usize,
    /// Calls to `/safePolicy/set`.
    safety_calls: Vec<safety::SafetyCall>,
    /// Policies bound to tokens.
    bound: HashMap<String, safety::Bound>,
    /// `(status, code)`: every `/safePolicy/set` fails so.
    safety_failure: Option<(u16, String)>,
    /// ListApiMcpServerCores entries, by the AccessKey id that asks.
    cores: HashMap<String, Vec<serde_json::Value>>,
}

/// The running fake. Dropping it stops it.
pub struct AliyunFake {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    kill: CancellationToken,
}

impl AliyunFake {
    /// Starts the fake on a free port. It knows no keys yet; tokens live 72 h (like the real
    /// `ExpiresIn` 259199) unless [`AliyunFake::set_token_lifetime`] says otherwise; the two
    /// built-in client ids are installed.
    pub async fn start() -> AliyunFake {
        let listener = listen(LOOPBACK).await;
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            keys: HashMap::new(),
            sts: HashMap::new(),
            tokens: HashMap::new(),
            nonces: HashSet::new(),
            calls: Vec::new(),
            token_lifetime: Duration::from_secs(259_199),
            sts_lifetime: None,
            oidc_tokens: HashSet::new(),
            clients: [
                (CN_CLIENT_ID.to_string(), ClientStatus::Installed),
                (INTL_CLIENT_ID.to_string(), ClientStatus::Installed),
            ]
            .into(),
            signins: Vec::new(),
            api_redirect: None,
            redirected: 0,
            safety_calls: Vec::new(),
            bound: HashMap::new(),
            safety_failure: None,
            cores: HashMap::new(),
        }));
        let kill = CancellationToken::new();
        let s = state.clone();
        serve(listener, kill.clone(), move |req| {
            let state = s.clone();
            async move { handle(&state, req).await }
        });
        AliyunFake { addr, state, kill }
    }

    fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// The endpoint, `http://127.0.0.1:<port>` (for `--ims-endpoint` and `sts_endpoint`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The sign-in page (for `ALIBRIDGE_AUTHORIZE_URL`).
    pub fn authorize_url(&self) -> String {
        format!("http://{}{AUTHORIZE_PATH}", self.addr)
    }

    /// A long-term AccessKey that may mint tokens.
    pub fn add_access_key(&self, id: &str, secret: &str) {
        self.add_key(id, secret, true);
    }

    /// A long-term AccessKey whose RAM identity lacks [`MINT_POLICY`]: GenerateAccessToken
    /// answers 403 `Forbidden.RAM`.
    pub fn add_access_key_without_permission(&self, id: &str, secret: &str) {
        self.add_key(id, secret, false);
    }

    fn add_key(&self, id: &str, secret: &str, permitted: bool) {
        self.st().keys.insert(
            id.to_string(),
            LongTermKey {
                secret: secret.to_string(),
                permitted,
            },
        );
    }

    /// Lifetime of tokens minted from now on (`ExpiresIn`).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.st().token_lifetime = lifetime;
    }

    /// Lifetime of STS keys minted from now on (default: the call's `DurationSeconds`).
    pub fn set_sts_lifetime(&self, lifetime: Duration) {
        self.st().sts_lifetime = Some(lifetime);
    }

    /// An OIDC token AssumeRoleWithOIDC accepts.
    pub fn add_oidc_token(&self, token: &str) {
        self.st().oidc_tokens.insert(token.to_string());
    }

    /// How the sign-in page (and GenerateAccessToken) treats `client_id`.
    pub fn set_client(&self, client_id: &str, status: ClientStatus) {
        self.st().clients.insert(client_id.to_string(), status);
    }

    /// The Core servers ListApiMcpServerCores lists for `key_id`'s account, in order (entries
    /// `{"id","name","urls":{"mcp","sse"}}`, as given).
    pub fn set_cores(&self, key_id: &str, cores: Vec<serde_json::Value>) {
        self.st().cores.insert(key_id.to_string(), cores);
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.st().calls.clone()
    }

    /// The calls of `action`, in order.
    pub fn calls_of(&self, action: &str) -> Vec<Call> {
        self.st()
            .calls
            .iter()
            .filter(|c| c.action == action)
            .cloned()
            .collect()
    }

    /// Successful GenerateAccessToken calls so far.
    pub fn mint_count(&self) -> usize {
        self.minted_tokens().len()
    }

    /// Every token minted so far, oldest first.
    pub fn minted_tokens(&self) -> Vec<String> {
        self.st()
            .calls
            .iter()
            .filter_map(|c| c.token.clone())
            .collect()
    }

    /// When a token stops being accepted.
    pub fn token_expiry(&self, token: &str) -> Option<SystemTime> {
        self.st().tokens.get(token).map(|t| t.expires_at)
    }

    /// The AccessKeyId a token was minted with.
    pub fn token_key(&self, token: &str) -> Option<String> {
        self.st().tokens.get(token).map(|t| t.key_id.clone())
    }

    /// Every STS credential minted so far, oldest first.
    pub fn issued_sts(&self) -> Vec<StsCredentials> {
        self.st()
            .calls
            .iter()
            .filter_map(|c| c.sts.clone())
            .collect()
    }

    /// Mints STS keys for `role_arn` directly (as if AssumeRole had been called elsewhere), for
    /// tests that hand temporary keys to the bridge (`ALIBABA_CLOUD_SECURITY_TOKEN`, StsToken).
    pub fn mint_sts(&self, role_arn: &str, lifetime: Duration) -> StsCredentials {
        let mut st = self.st();
        let mut call = Call::default();
        let saved = st.sts_lifetime.replace(lifetime);
        api::issue_sts(
            &mut st,
            role_arn,
            "test",
            lifetime.as_secs(),
            true,
            SystemTime::now(),
            &mut call,
        );
        st.sts_lifetime = saved;
        call.sts.expect("minted")
    }

    /// Revokes every token minted so far (later ones are valid).
    pub fn revoke_all_tokens(&self) {
        for t in self.st().tokens.values_mut() {
            t.revoked = true;
        }
    }

    /// True for a token the fake minted that is neither expired nor revoked.
    pub fn is_valid_token(&self, token: &str) -> bool {
        valid(&self.st(), token)
    }

    /// [`AliyunFake::is_valid_token`] as a closure that outlives `&self`, for the test MCP
    /// server's `require_bearer`.
    pub fn token_checker(&self) -> impl Fn(&str) -> bool + Send + Sync + 'static {
        let state = self.state.clone();
        move |token| valid(&state.lock().unwrap(), token)
    }

    /// Like [`AliyunFake::token_checker`], but only tokens minted with `key_id` pass: an
    /// account's MCP endpoint refuses another account's tokens.
    pub fn token_checker_for(&self, key_id: &str) -> impl Fn(&str) -> bool + Send + Sync + 'static {
        let state = self.state.clone();
        let key_id = key_id.to_string();
        move |token| {
            let st = state.lock().unwrap();
            valid(&st, token) && st.tokens.get(token).is_some_and(|t| t.key_id == key_id)
        }
    }

    /// From now on every API call is answered `status` (`307`, `308`, …) with a `Location` of
    /// `base` followed by the call's own path and query (signature, key id, security token).
    pub fn redirect_api(&self, status: u16, base: &str) {
        self.st().api_redirect = Some((status, base.to_string()));
    }

    /// How many API calls were answered with the [`AliyunFake::redirect_api`] redirect.
    pub fn redirected(&self) -> usize {
        self.st().redirected
    }

    /// Every call to `UpdateBearerTokenSafetyPolicy`, in order.
    pub fn safety_calls(&self) -> Vec<safety::SafetyCall> {
        self.st().safety_calls.clone()
    }

    /// The policy bound to `token`, if any.
    pub fn bound_policy(&self, token: &str) -> Option<safety::Bound> {
        self.st().bound.get(token).cloned()
    }

    /// From now on `UpdateBearerTokenSafetyPolicy` answers `status` with error `code`.
    pub fn fail_safety_policy(&self, status: u16, code: &str) {
        self.st().safety_failure = Some((status, code.to_string()));
    }

    /// Like [`AliyunFake::token_checker`], but a token is only accepted once a safety policy
    /// is bound to it (what a server behind `--safety-policy` relies on).
    pub fn policy_bound_token_checker(&self) -> impl Fn(&str) -> bool + Send + Sync + 'static {
        let state = self.state.clone();
        move |token| {
            let st = state.lock().unwrap();
            valid(&st, token) && st.bound.contains_key(token)
        }
    }

    /// How the service judges one API call (`product`, kebab-case `api`) made with `token`:
    /// allowed only for a valid token, under the safety policy bound to it
    /// ([`safety::evaluate`]). What an enforcing MCP upstream asks before it runs anything.
    #[allow(clippy::type_complexity)]
    pub fn policy_judge(
        &self,
    ) -> std::sync::Arc<dyn Fn(Option<&str>, &str, &str) -> bool + Send + Sync> {
        let state = self.state.clone();
        std::sync::Arc::new(move |token: Option<&str>, product: &str, api: &str| {
            let st = state.lock().unwrap();
            token.is_some_and(|t| {
                valid(&st, t)
                    && st
                        .bound
                        .get(t)
                        .is_some_and(|b| safety::evaluate(&b.safe_policy, product, api))
            })
        })
    }

    /// Every visit to the sign-in page.
    pub fn signins(&self) -> Vec<SignIn> {
        self.st().signins.clone()
    }

    /// Every secret the fake has seen or issued: long-term secrets, STS secrets and security
    /// tokens, minted bearer tokens (for "never logged" checks).
    pub fn secrets(&self) -> Vec<String> {
        let st = self.st();
        let mut out: Vec<String> = st.keys.values().map(|k| k.secret.clone()).collect();
        for c in st.sts.values() {
            out.push(c.access_key_secret.clone());
            out.push(c.security_token.clone());
        }
        out.extend(st.tokens.keys().cloned());
        out
    }

    /// Stops the fake: the port closes and open connections drop.
    pub fn kill(&self) {
        self.kill.cancel();
    }
}

impl Drop for AliyunFake {
    fn drop(&mut self) {
        self.kill();
    }
}

fn valid(st: &State, token: &str) -> bool {
    st.tokens
        .get(token)
        .is_some_and(|t| !t.revoked && t.expires_at > SystemTime::now())
}

async fn handle(
    state: &Mutex<State>,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = read_body(req).await;
    let header = |name: http::header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let path = parts.uri.path();
    let query = parts.uri.query().unwrap_or_default();
    if path == AUTHORIZE_PATH && parts.method == http::Method::GET {
        let a = signin::handle(&mut state.lock().unwrap(), query);
        let mut r = Response::new(Full::new(Bytes::from(a.body)));
        *r.status_mut() = StatusCode::from_u16(a.status).unwrap();
        let h = r.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/html; charset=utf-8"),
        );
        if let Some(l) = a.location {
            h.insert(http::header::LOCATION, l.parse().expect("valid Location"));
        }
        return r;
    }
    let redirect = {
        let mut st = state.lock().unwrap();
        let r = st.api_redirect.clone();
        if r.is_some() {
            st.redirected += 1;
        }
        r
    };
    if let Some((status, base)) = redirect {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        let location = format!("{base}{path}?{query}");
        r.headers_mut().insert(
            http::header::LOCATION,
            location.parse().expect("valid Location"),
        );
        return r;
    }
    if path == cores::PATH {
        let headers: BTreeMap<String, String> = parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    v.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let req = cores::Req {
            method: parts.method.as_str(),
            path,
            query,
            headers: &headers,
            body: &body,
        };
        let (status, json) = cores::handle(&mut state.lock().unwrap(), &req);
        let mut r = Response::new(Full::new(Bytes::from(json.to_string())));
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json;charset=utf-8"),
        );
        return r;
    }
    if path == safety::PATH {
        let headers = parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    v.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let (status, json) = safety::handle(
            &mut state.lock().unwrap(),
            parts.method.as_str(),
            headers,
            &body,
        );
        let mut r = Response::new(Full::new(Bytes::from(json.to_string())));
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json;charset=utf-8"),
        );
        return r;
    }
    let host = header(http::header::HOST).unwrap_or_default();
    let content_type = header(http::header::CONTENT_TYPE);
    let req = api::Req {
        method: parts.method.as_str(),
        path,
        host: &host,
        query,
        content_type: content_type.as_deref(),
        body: &body,
    };
    let (status, json) = api::handle(&mut state.lock().unwrap(), &req);
    let request_id = json["RequestId"].as_str().unwrap_or_default().to_string();
    let mut r = Response::new(Full::new(Bytes::from(json.to_string())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json;charset=utf-8"),
    );
    h.insert("x-acs-request-id", request_id.parse().unwrap());
    r
}
