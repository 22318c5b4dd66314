//! The credential layer: how the bridge proves who it is to the upstream.
//!
//! Every credential kind is one submodule behind the [`Credential`] trait: [`none`] (static
//! headers only), [`bearer`] and [`token_command`] (tokens from elsewhere) and [`access_key`] (Alibaba Cloud AccessKeys exchanged for a token). The
//! transports never look inside a credential: they ask it to decorate each outgoing request,
//! and tell it when the upstream rejected one (401/403) so it can refresh and let the transport
//! retry that request once. [`select`] picks the credential for `--auth` from an
//! [`AuthConfig`]; failures are [`AuthError`]s whose variant says what kind of problem it is.

pub mod access_key;
pub mod bearer;
pub mod browser;
pub mod loopback;
pub mod none;
pub mod oauth;
pub mod pkce;
pub mod secret;
pub mod token_command;
pub mod transport;

#[cfg(test)]
mod chain_tests;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::header::HeaderMap;
use reqwest::Url;

use self::access_key::site::{self, Site};
use self::oauth::{OAuthConfig, OAuthError};

/// `--auth` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// AccessKeys if found and the endpoint is the OpenAPI MCP service's, else OAuth when the
    /// server asks.
    Auto,
    /// OAuth 2.1 browser sign-in, started when the server answers 401.
    Oauth,
    /// Alibaba Cloud AccessKeys exchanged for a short-lived token.
    Ak,
    /// No credential beyond the static --header values.
    None,
}

/// The credential settings (`--auth`, the AccessKey and OAuth flags), validated.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub mode: AuthMode,
    /// `--site-type`, when given.
    pub site: Option<Site>,
    pub profile: Option<String>,
    pub ims_endpoint: Option<Url>,
    /// `--discovery-endpoint`: where the URL-less start calls ListApiMcpServerCores.
    pub discovery_endpoint: Option<Url>,
    pub client_id: Option<String>,
    /// A validated boundary policy, trimmed.
    pub boundary_policy: Option<String>,
    pub refresh_skew: Duration,
    /// OAuth settings (used by `oauth`, and by `auto` when no AccessKeys apply).
    pub oauth: OAuthConfig,
    /// What to bind to each token server-side (AccessKeys only).
    pub safety: Option<access_key::safety::SafetyConfig>,
    /// `--bearer-token` / `--token-command`: a token from elsewhere (at most one is set).
    pub external: Option<External>,
}

/// A token obtained outside alibridge.
#[derive(Debug, Clone)]
pub enum External {
    Bearer(secret::Secret),
    Command(String),
}

/// What the upstream said when it refused a request.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// 401 or 403.
    pub status: u16,
    /// The `WWW-Authenticate` header, if any (OAuth discovery and step-up read it).
    pub www_authenticate: Option<String>,
    /// The `Authorization` value the refused request carried (marked sensitive), so a
    /// credential can tell a stale token from one it already replaced.
    pub authorization: Option<reqwest::header::HeaderValue>,
}

/// Whether a rejected request is worth sending once more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The credential changed (refreshed, re-minted): retry the request once.
    Once,
    /// Nothing changed; the rejection stands.
    No,
}

/// A credential failure the user must act on. Every message is a whole sentence that says what
/// happened and what to do; the variant says what kind of problem it is, for callers that
/// decide on it (`auto` falls back to OAuth when [`AuthError::failure`] is
/// [`AuthFailure::NotFound`]).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No AccessKeys were found (the message lists every place looked at), or where they
    /// were found cannot work.
    #[error(transparent)]
    Chain(#[from] access_key::chain::ChainError),
    /// A watched credential file changed into something that cannot be used (the chain's
    /// finding is the source); the old identity is not kept silently.
    #[error("the Alibaba Cloud credentials changed on disk and can no longer be used")]
    Changed(#[source] access_key::chain::ChainError),
    /// The account's Core endpoint could not be read from the discovery answer.
    #[error(transparent)]
    Core(#[from] access_key::discovery::CoreError),
    /// The credential's own configuration cannot work (an unsupported profile mode, a
    /// changed credentials file). The text is our own finding and advice; a failure with an
    /// underlying error is [`AuthError::Io`], [`AuthError::Api`] or [`AuthError::Unreachable`].
    #[error("{0}")]
    Config(String),
    /// The issuer refused: wrong key or secret, a role that may not be assumed, a server that
    /// keeps asking for more scope. Our own text (a refusal by an API is [`AuthError::Api`]).
    #[error("{0}")]
    Denied(String),
    /// The identity may not mint OpenAPI MCP tokens, or the OpenAPI MCP application is not yet
    /// authorized for the account (what `alibridge pre-check` fixes). Our own text.
    #[error("{0}")]
    NotPermitted(String),
    /// The credential service could not be reached in time; our own text (a command that did
    /// not finish). A transport failure is [`AuthError::Unreachable`].
    #[error("{0}")]
    Network(String),
    /// The credential service answered something unusable; our own text (what was missing).
    #[error("{0}")]
    Protocol(String),
    /// A call to an Alibaba Cloud API (STS, RAM-OAuth, OpenAPI Explorer) failed: `message` says
    /// what alibridge was doing and what to do, `source` what the service or the network said.
    /// `failure` is the kind ([`AuthFailure::Network`], `Protocol`, `Denied`, `NotPermitted`).
    /// Boxed: an API error is large, and every `Result<_, AuthError>` would carry its size.
    #[error("{message}")]
    Api {
        failure: AuthFailure,
        message: String,
        #[source]
        source: Box<access_key::api::ApiError>,
    },
    /// A credential service (instance metadata, a credentials URI) could not be reached or
    /// its answer not read: `message` says which and what to do.
    #[error("{message}")]
    Unreachable {
        message: String,
        #[source]
        source: transport::Transport,
    },
    /// A local file or command the credential needs failed (a token file, `--token-command`).
    #[error("{message}")]
    Io {
        message: String,
        #[source]
        source: std::io::Error,
    },
    /// The HTTP client could not be set up.
    #[error("cannot set up the HTTPS client")]
    Tls(#[source] reqwest::Error),
    /// OAuth sign-in, refresh and the token store.
    #[error(transparent)]
    OAuth(#[from] OAuthError),
}

/// Which kind of credential a [`Credential`] is: what callers decide on (a safety policy binds
/// only to AccessKey tokens; `doctor` looks at the stored sign-in or the pre-check verdict).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// Static `--header` values only.
    None,
    /// `--bearer-token`.
    Bearer,
    /// `--token-command`.
    TokenCommand,
    /// OAuth 2.1 browser sign-in.
    OAuth,
    /// Alibaba Cloud AccessKeys exchanged for OpenAPI MCP tokens.
    AccessKey,
}

impl CredentialKind {
    /// Short name for logs and the proxy's status (`none`, `oauth`, `ak`).
    pub fn name(self) -> &'static str {
        match self {
            CredentialKind::None => "none",
            CredentialKind::Bearer => "bearer",
            CredentialKind::TokenCommand => "token-command",
            CredentialKind::OAuth => "oauth",
            CredentialKind::AccessKey => "ak",
        }
    }
}

/// What kind of problem an [`AuthError`] is, as data: the JSON-RPC error of a failed request
/// carries it (`data.alibridge.credential`), and `doctor` decides on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthFailure {
    NotFound,
    Config,
    Denied,
    NotPermitted,
    Network,
    Protocol,
    Tls,
    OAuth,
}

impl AuthError {
    /// Which kind of problem this is.
    pub fn failure(&self) -> AuthFailure {
        match self {
            AuthError::Chain(access_key::chain::ChainError::NotFound { .. }) => {
                AuthFailure::NotFound
            }
            AuthError::Chain(_) | AuthError::Changed(_) => AuthFailure::Config,
            AuthError::Core(access_key::discovery::CoreError::NoCores { .. }) => {
                AuthFailure::Config
            }
            AuthError::Core(_) => AuthFailure::Protocol,
            AuthError::Config(_) => AuthFailure::Config,
            AuthError::Denied(_) => AuthFailure::Denied,
            AuthError::NotPermitted(_) => AuthFailure::NotPermitted,
            AuthError::Network(_) => AuthFailure::Network,
            AuthError::Protocol(_) => AuthFailure::Protocol,
            AuthError::Api { failure, .. } => *failure,
            AuthError::Unreachable { .. } => AuthFailure::Network,
            AuthError::Io { .. } => AuthFailure::Config,
            AuthError::Tls(_) => AuthFailure::Tls,
            AuthError::OAuth(_) => AuthFailure::OAuth,
        }
    }
}

impl AuthError {
    /// A failed API call, as the kind its error is: the network ([`AuthFailure::Network`]), an
    /// unreadable answer (`Protocol`), a refusal (`Denied`, or `NotPermitted` when the caller
    /// found the refusal to be about permissions). `message` is the context and the advice;
    /// the API error itself is the source, shown once after it.
    pub fn api(message: String, source: access_key::api::ApiError, not_permitted: bool) -> Self {
        use access_key::api::ApiError;
        let failure = match &source {
            ApiError::Unreachable { .. } | ApiError::ForeignOrigin(_) => AuthFailure::Network,
            ApiError::Malformed { .. } => AuthFailure::Protocol,
            ApiError::Service { .. } if not_permitted => AuthFailure::NotPermitted,
            ApiError::Service { .. } => AuthFailure::Denied,
        };
        AuthError::Api {
            failure,
            message,
            source: Box::new(source),
        }
    }
}

/// One way of authenticating upstream requests.
pub trait Credential: Send + Sync {
    /// Which kind of credential this is.
    fn kind(&self) -> CredentialKind;

    /// Adds this credential's headers (e.g. `Authorization`) to an outgoing request. May
    /// refresh first when the current token is about to expire.
    fn apply<'a>(&'a self, headers: &'a mut HeaderMap) -> BoxFuture<'a, Result<(), AuthError>>;

    /// Called when the upstream answered 401 or 403. Returns [`Retry::Once`] when the
    /// credential has changed so resending makes sense.
    fn rejected<'a>(&'a self, rejection: &'a Rejection) -> BoxFuture<'a, Result<Retry, AuthError>>;

    /// Called when the upstream answered a request that carried `authorization` with anything
    /// but 401/403. OAuth uses it to tell a revoked token (it worked once) from a server that
    /// never accepts its authorization server's tokens. Must be cheap: it runs per response.
    fn accepted(&self, _authorization: Option<&reqwest::header::HeaderValue>) {}

    /// Runs `hook` once, when this credential first goes to the network for a token (an
    /// AccessKey mint that the token cache could not spare): the bridge warms the upstream
    /// connection then, so the mint overlaps the connect instead of preceding it. Credentials
    /// that never fetch a token drop the hook.
    fn on_first_network(&self, _hook: NetworkHook) {}

    /// Called once at start, before the client's first message: a credential that would make
    /// a round trip on first use (an AccessKey token mint) starts it now, so it overlaps the
    /// client's start. Never fails the start; a failure is reported on first use instead.
    fn warm_up(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// Who requests are made as, for the audit log, without secrets (`ak:LTAI****1234`,
    /// `oauth:<subject>`); `None` when unknown (yet).
    fn identity(&self) -> Option<String> {
        None
    }
}

/// What [`Credential::on_first_network`] runs.
pub type NetworkHook = Box<dyn FnOnce() + Send>;

/// The chosen credential, what it is as data (kind, site, endpoint) for callers that decide on
/// it, and the one line that tells the user why.
pub struct Selection {
    pub credential: Arc<dyn Credential>,
    /// The credential's kind (the same as `credential.kind()`).
    pub kind: CredentialKind,
    /// The Alibaba Cloud site AccessKey tokens are minted for; `None` for other kinds.
    pub site: Option<Site>,
    /// The endpoint found for a URL-less start (the account's Core endpoint); `None` when the
    /// URL was given.
    pub endpoint: Option<Url>,
    pub reason: String,
    /// One more line for stderr, when the choice sends credentials somewhere the user should
    /// know about (an explicit `--auth ak` to a host that is not an OpenAPI MCP endpoint).
    pub warning: Option<String>,
}

impl Selection {
    /// `credential`, chosen for `reason`; no site, endpoint or warning.
    pub fn new(credential: Arc<dyn Credential>, reason: String) -> Selection {
        Selection {
            kind: credential.kind(),
            credential,
            site: None,
            endpoint: None,
            reason,
            warning: None,
        }
    }
}

/// Picks the credential for `--auth`, looking for AccessKeys where the official tools do.
/// `has_auth_header`: the user passed `--header Authorization: …`, which `auto` respects.
///
/// `auto` uses AccessKeys only for the OpenAPI MCP service's own hosts
/// ([`site::is_openapi_mcp_host`]), whatever `--site-type` says: a token minted from them acts
/// for the whole RAM identity, and other Alibaba Cloud hosts may run anyone's code.
pub fn select(cfg: &AuthConfig, url: &Url, has_auth_header: bool) -> Result<Selection, AuthError> {
    let none = |reason: String| Selection::new(Arc::new(none::NoCredential), reason);
    if let Some(ext) = &cfg.external {
        if !matches!(cfg.mode, AuthMode::Auto) {
            return Err(AuthError::Config(
                "--bearer-token and --token-command are credentials of their own: drop --auth (or use --auth auto)".into(),
            ));
        }
        return Ok(match ext {
            External::Bearer(t) => Selection::new(
                Arc::new(bearer::BearerToken::new(t)?),
                "bearer token (--bearer-token / ALIBRIDGE_BEARER_TOKEN)".into(),
            ),
            External::Command(c) => Selection::new(
                Arc::new(token_command::TokenCommand::new(
                    c.clone(),
                    cfg.refresh_skew,
                )),
                "tokens from --token-command".into(),
            ),
        });
    }
    match cfg.mode {
        AuthMode::None => Ok(none("none (--auth none)".into())),
        AuthMode::Oauth => oauth(cfg, "--auth oauth"),
        AuthMode::Ak => {
            let mut selection = access_key::select(cfg, url, "--auth ak")?;
            if !site::is_openapi_mcp_host(url) {
                selection.warning = Some(format!(
                    "--auth ak: {} is not an OpenAPI MCP endpoint (openapi-mcp.<region>.aliyuncs.com), \
                     yet it will receive the bearer tokens minted from your AccessKeys, which act \
                     for that RAM identity; go on only if you trust it",
                    crate::net::origin::origin_of(url)
                ));
            }
            Ok(selection)
        }
        AuthMode::Auto => {
            if has_auth_header {
                return Ok(none(
                    "none (auto: an Authorization header was given with --header)".into(),
                ));
            }
            if !site::is_openapi_mcp_host(url) {
                let why = format!(
                    "auto: {} is not an OpenAPI MCP endpoint, so AccessKeys are not used; \
                     --auth ak would send it tokens minted from them",
                    url.host_str().unwrap_or_default()
                );
                return oauth(cfg, &why);
            }
            match access_key::select(cfg, url, "auto") {
                Err(e) if e.failure() == AuthFailure::NotFound => {
                    oauth(cfg, "auto: no Alibaba Cloud AccessKeys found")
                }
                other => other,
            }
        }
    }
}

/// OAuth, lazily: nothing is sent until the server answers 401.
fn oauth(cfg: &AuthConfig, why: &str) -> Result<Selection, AuthError> {
    let credential = oauth::OAuthCredential::new(cfg.oauth.clone())?;
    let state = if credential.has_record() {
        "using the stored sign-in"
    } else {
        "a browser sign-in starts if the server asks for one"
    };
    Ok(Selection::new(
        Arc::new(credential),
        format!("OAuth ({why}; {state})"),
    ))
}
