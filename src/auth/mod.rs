//! The credential layer: how the bridge proves who it is to the upstream.
//!
//! Every credential kind is one submodule behind the [`Credential`] trait: [`none`] (static
//! headers only) and [`access_key`] (Alibaba Cloud AccessKeys exchanged for a token). The
//! transports never look inside a credential: they ask it to decorate each outgoing request,
//! and tell it when the upstream rejected one (401/403) so it can refresh and let the transport
//! retry that request once. [`select`] picks the credential for `--auth`.

pub mod access_key;
pub mod browser;
pub mod loopback;
pub mod none;
pub mod oauth;
pub mod pkce;
pub mod secret;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use reqwest::header::HeaderMap;
use reqwest::Url;

use self::access_key::chain::{self, ChainError, ChainInput};
use self::access_key::exchange::Exchange;
use self::access_key::site::{self, Site, OPENAPI_SCOPE};
use self::access_key::AccessKeyCredential;
use crate::cli::AuthMode;
use crate::config::AuthConfig;

/// A boxed future, so [`Credential`] stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

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

/// A credential failure the user must act on. The message says what to do.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct AuthError {
    pub message: String,
}

/// One way of authenticating upstream requests.
pub trait Credential: Send + Sync {
    /// Short name for logs and `status` (`none`, `oauth`, `ak`).
    fn name(&self) -> &'static str;

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

    /// Who requests are made as, for the audit log, without secrets (`ak:LTAI****1234`,
    /// `oauth:<subject>`); `None` when unknown (yet).
    fn identity(&self) -> Option<String> {
        None
    }
}

/// The chosen credential and the one line that tells the user why.
pub struct Selection {
    pub credential: Arc<dyn Credential>,
    pub reason: String,
    /// One more line for stderr, when the choice sends credentials somewhere the user should
    /// know about (an explicit `--auth ak` to a host that is not an OpenAPI MCP endpoint).
    pub warning: Option<String>,
}

/// Picks the credential for `--auth`, looking for AccessKeys where the official tools do.
/// `has_auth_header`: the user passed `--header Authorization: …`, which `auto` respects.
///
/// `auto` uses AccessKeys only for the OpenAPI MCP service's own hosts
/// ([`site::is_openapi_mcp_host`]), whatever `--site-type` says: a token minted from them acts
/// for the whole RAM identity, and other Alibaba Cloud hosts may run anyone's code.
pub fn select(cfg: &AuthConfig, url: &Url, has_auth_header: bool) -> Result<Selection, AuthError> {
    let none = |reason: String| Selection {
        credential: Arc::new(none::NoCredential),
        reason,
        warning: None,
    };
    match cfg.mode {
        AuthMode::None => Ok(none("none (--auth none)".into())),
        AuthMode::Oauth => oauth(cfg, "--auth oauth"),
        AuthMode::Ak => {
            let mut selection = access_key(cfg, url, "--auth ak")?;
            if !site::is_openapi_mcp_host(url) {
                selection.warning = Some(format!(
                    "--auth ak: {} is not an OpenAPI MCP endpoint (openapi-mcp.<region>.aliyuncs.com), \
                     yet it will receive the bearer tokens minted from your AccessKeys, which act \
                     for that RAM identity; go on only if you trust it",
                    crate::origin::origin_of(url)
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
            match access_key(cfg, url, "auto") {
                Err(e) if e.message.starts_with(NOT_FOUND) => {
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
    Ok(Selection {
        credential: Arc::new(credential),
        reason: format!("OAuth ({why}; {state})"),
        warning: None,
    })
}

const NOT_FOUND: &str = "no Alibaba Cloud AccessKey found";

fn access_key(cfg: &AuthConfig, url: &Url, why: &str) -> Result<Selection, AuthError> {
    let env = |k: &str| std::env::var(k).ok();
    let input = ChainInput {
        profile: cfg.profile.as_deref(),
        env: &env,
        home: access_key::home_dir(),
    };
    let resolved = chain::resolve(&input).map_err(|e| AuthError {
        message: match e {
            ChainError::NotFound { .. } => e.to_string(),
            ChainError::Invalid(m) => m,
        },
    })?;
    let (site, site_why) = match (cfg.site, Site::infer(url)) {
        (Some(s), _) => (s, "--site-type"),
        (None, Some(s)) => (s, "inferred from the endpoint"),
        (None, None) => (
            Site::Cn,
            "default; pass --site-type INTL for international accounts",
        ),
    };
    tracing::debug!(site = site.flag_value(), reason = site_why, "site type");
    let endpoint = cfg.ims_endpoint.clone().unwrap_or_else(|| {
        Url::parse(&format!("https://{}/", site.ims_host())).expect("static host")
    });
    let exchange = Exchange {
        endpoint,
        client_id: cfg
            .client_id
            .clone()
            .unwrap_or_else(|| site.client_id().to_string()),
        scope: OPENAPI_SCOPE.to_string(),
        policy: cfg.boundary_policy.clone(),
        site,
        safety: cfg
            .safety
            .as_ref()
            .filter(|s| s.binds_anything())
            .map(|s| s.binding(url)),
    };
    let origin = resolved.source.describe();
    let credential =
        AccessKeyCredential::new(resolved, exchange, cfg.refresh_skew, cfg.profile.clone())?;
    Ok(Selection {
        credential: Arc::new(credential),
        reason: format!(
            "Alibaba Cloud AccessKey ({why}) from {origin}, site {} ({site_why})",
            site.flag_value()
        ),
        warning: None,
    })
}
