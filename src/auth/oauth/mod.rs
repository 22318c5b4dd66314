//! `--auth oauth`: OAuth 2.1 sign-in per the MCP authorization spec.
//!
//! The credential is lazy: it sends nothing until the server answers 401, then discovers the
//! authorization server from the challenge ([`discovery`]), signs in through the browser
//! ([`flow`]: PKCE, state, loopback redirect) and retries the request once. Tokens are kept in
//! the [`store`] (OS keychain or a 0600 file) and refreshed before they expire. A per-server
//! [`lock`] makes sign-ins and refreshes single-flight across processes: when a desktop client
//! starts three bridges at once, one browser tab opens and the others reuse its tokens.

pub mod discovery;
pub mod flow;
pub mod lock;
pub mod store;
pub mod tokens;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use reqwest::Url;
use tracing::{debug, info, warn};

use self::discovery::{parse_challenge, Challenge, Discovered};
use self::lock::ServerLock;
use self::store::{Record, StoreKind, TokenStore};
use self::tokens::ClientAuth;
use super::access_key::site::Site;
use super::secret::Secret;
use super::{AuthError, BoxFuture, Credential, Rejection, Retry};

/// Refresh this long before the access token expires.
const REFRESH_SKEW: u64 = 60;
/// Step-up sign-ins allowed per run (`insufficient_scope`), so a server that keeps asking for
/// more never loops.
const MAX_STEP_UPS: u32 = 3;
/// A server that rejects a token issued this recently will not get another sign-in.
const STORM_WINDOW: Duration = Duration::from_secs(20);

/// An OAuth failure, with what to do in the message.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("OAuth discovery failed: {0}")]
    Discovery(String),
    #[error("could not reach {0}")]
    Unreachable(String),
    #[error("{0}")]
    Registration(String),
    #[error("{0}")]
    Callback(String),
    #[error("{0}")]
    Timeout(String),
    #[error("the sign-in was refused: {error}{}", description.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Denied {
        error: String,
        description: Option<String>,
    },
    #[error("the authorization server refused the request: {error}{} (HTTP {status})", description.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Rejected {
        error: String,
        description: Option<String>,
        status: u16,
    },
    #[error("unexpected answer from the authorization server: {0}")]
    Protocol(String),
    #[error("token store: {0}")]
    Store(String),
}

impl OAuthError {
    fn is_invalid_grant(&self) -> bool {
        matches!(self, OAuthError::Rejected { error, .. } if error == "invalid_grant")
    }

    fn is_invalid_client(&self) -> bool {
        matches!(self, OAuthError::Rejected { error, .. } | OAuthError::Denied { error, .. }
                 if error == "invalid_client" || error == "unauthorized_client")
    }
}

impl From<OAuthError> for AuthError {
    fn from(e: OAuthError) -> Self {
        AuthError {
            message: e.to_string(),
        }
    }
}

/// OAuth settings, resolved from flags and environment.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// The MCP endpoint.
    pub server: Url,
    /// `--oauth-client-id` / `ALIBRIDGE_OAUTH_CLIENT_ID`.
    pub client_id: Option<String>,
    /// `ALIBRIDGE_OAUTH_CLIENT_SECRET` only (never argv, never stored).
    pub client_secret: Option<Secret>,
    /// `--oauth-client-metadata-url`.
    pub client_metadata_url: Option<Url>,
    pub callback_port: Option<u16>,
    pub auth_timeout: Duration,
    pub store: StoreKind,
    /// `ALIBRIDGE_HOME`.
    pub home: PathBuf,
    pub no_browser: bool,
    /// The Alibaba Cloud site, when the endpoint is Alibaba's (for hints and fallbacks).
    pub site: Option<Site>,
}

struct State {
    record: Option<Record>,
    step_ups: u32,
    last_sign_in: Option<Instant>,
}

/// The OAuth credential of one MCP server.
pub struct OAuthCredential {
    cfg: OAuthConfig,
    http: reqwest::Client,
    store: TokenStore,
    key: String,
    resource: String,
    state: Mutex<State>,
    /// The last discovery result: refreshes reuse it instead of fetching metadata each time.
    discovered: Mutex<Option<Discovered>>,
    /// One refresh or sign-in at a time inside this process.
    busy: tokio::sync::Mutex<()>,
}

impl OAuthCredential {
    pub fn new(cfg: OAuthConfig) -> Result<Self, AuthError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("alibridge/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AuthError {
                message: format!("cannot set up TLS: {e}"),
            })?;
        let store = TokenStore::new(&cfg.home, cfg.store);
        let resource = discovery::canonical_resource(&cfg.server);
        let key = TokenStore::key(&resource);
        let record = store.load(&resource)?;
        Ok(OAuthCredential {
            cfg,
            http,
            store,
            key,
            resource,
            state: Mutex::new(State {
                record,
                step_ups: 0,
                last_sign_in: None,
            }),
            discovered: Mutex::new(None),
            busy: tokio::sync::Mutex::new(()),
        })
    }

    /// True when a sign-in for this server is stored.
    pub fn has_record(&self) -> bool {
        self.state.lock().unwrap().record.is_some()
    }

    fn header(rec: &Record) -> Option<HeaderValue> {
        let token = rec.secrets.access_token.as_deref()?;
        let mut v = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
        v.set_sensitive(true);
        Some(v)
    }

    fn fresh(rec: &Record) -> bool {
        rec.secrets.access_token.is_some()
            && rec.expires_at.is_none_or(|e| {
                let skew = REFRESH_SKEW.min(e.saturating_sub(rec.updated_at) / 2);
                e > tokens::now_secs() + skew
            })
    }

    /// The current header, refreshing first when the token is about to expire.
    async fn current(&self) -> Result<Option<HeaderValue>, OAuthError> {
        let rec = self.state.lock().unwrap().record.clone();
        match rec {
            Some(r) if Self::fresh(&r) => Ok(Self::header(&r)),
            Some(r) if r.secrets.refresh_token.is_some() => match self.refresh(&r).await {
                Ok(r) => Ok(Self::header(&r)),
                Err(e) if e.is_invalid_grant() || e.is_invalid_client() => {
                    info!(error = %e, "the refresh token was refused; a new sign-in will be needed");
                    Ok(None)
                }
                Err(e) => Err(e),
            },
            // Expired without a refresh token: send nothing; the 401 starts a sign-in.
            _ => Ok(None),
        }
    }

    /// Refreshes under the cross-process lock; another process may already have done it.
    async fn refresh(&self, seen: &Record) -> Result<Record, OAuthError> {
        let _local = self.busy.lock().await;
        let _lock = ServerLock::acquire(&self.cfg.home, &self.key, self.cfg.auth_timeout).await?;
        let mut seen = seen.clone();
        if let Some(stored) = self.store.load(&self.resource)? {
            if stored.updated_at > seen.updated_at {
                if Self::fresh(&stored) {
                    debug!("another process refreshed the token");
                    self.state.lock().unwrap().record = Some(stored.clone());
                    return Ok(stored);
                }
                seen = stored;
            }
        }
        let seen = &seen;
        let Some(rt) = seen.secrets.refresh_token.clone().map(Secret::new) else {
            return Err(OAuthError::Rejected {
                error: "invalid_grant".into(),
                description: None,
                status: 0,
            });
        };
        let disc = self.discover(None).await?;
        let secret = self.client_secret_for(seen);
        let auth = ClientAuth::choose(
            secret.is_some(),
            disc.server.token_endpoint_auth_methods_supported.as_deref(),
        );
        let client = tokens::Client {
            id: &seen.client_id,
            secret: secret.as_ref(),
            auth,
        };
        let result = tokens::refresh(
            &self.http,
            &disc.server.token_endpoint,
            &client,
            &rt,
            &self.resource,
            seen.scope.as_deref(),
        )
        .await;
        let t = match result {
            Ok(t) => t,
            Err(e) => {
                if e.is_invalid_grant() || e.is_invalid_client() {
                    self.forget_tokens(seen, e.is_invalid_client())?;
                }
                return Err(e);
            }
        };
        let mut rec = seen.clone();
        rec.secrets.access_token = Some(t.access_token.expose().to_string());
        rec.secrets.refresh_token = t.refresh_token.map(|r| r.expose().to_string());
        rec.expires_at = t.expires_at;
        if t.scope.is_some() {
            rec.scope = t.scope;
        }
        rec.updated_at = tokens::now_secs().max(seen.updated_at + 1);
        self.store.save(&rec)?;
        self.state.lock().unwrap().record = Some(rec.clone());
        debug!("access token refreshed");
        Ok(rec)
    }

    /// Drops the tokens (and, when the server forgot the client, the registration) so the
    /// next attempt starts clean instead of retrying something that cannot work.
    fn forget_tokens(&self, rec: &Record, forget_client: bool) -> Result<(), OAuthError> {
        if forget_client && rec.registration == store::Registration::Dynamic {
            self.store.delete(&self.resource)?;
            self.state.lock().unwrap().record = None;
            return Ok(());
        }
        let mut r = rec.clone();
        r.secrets.access_token = None;
        r.secrets.refresh_token = None;
        r.expires_at = None;
        r.updated_at = tokens::now_secs().max(rec.updated_at + 1);
        self.store.save(&r)?;
        self.state.lock().unwrap().record = Some(r);
        Ok(())
    }

    fn client_secret_for(&self, rec: &Record) -> Option<Secret> {
        match rec.registration {
            store::Registration::Preregistered => self.cfg.client_secret.clone(),
            _ => rec.secrets.client_secret.clone().map(Secret::new),
        }
    }

    /// Discovery, cached for the run; a challenge that names resource metadata re-runs it (the
    /// server may have moved to another authorization server).
    async fn discover(&self, challenge: Option<&Challenge>) -> Result<Discovered, OAuthError> {
        let fresh_needed = challenge.is_some_and(|c| c.resource_metadata.is_some());
        if !fresh_needed {
            if let Some(d) = self.discovered.lock().unwrap().clone() {
                return Ok(d);
            }
        }
        let d = discovery::discover(&self.http, &self.cfg.server, challenge).await?;
        *self.discovered.lock().unwrap() = Some(d.clone());
        Ok(d)
    }

    /// Signs in (browser) under the cross-process lock, unless another process did meanwhile.
    /// `paste`: also accept a pasted redirect URL or code on stdin (`login --no-browser`).
    pub async fn sign_in(
        &self,
        challenge: Option<&Challenge>,
        paste: bool,
    ) -> Result<Record, OAuthError> {
        let _local = self.busy.lock().await;
        let seen = self.state.lock().unwrap().record.clone();
        let _lock = ServerLock::acquire(
            &self.cfg.home,
            &self.key,
            self.cfg.auth_timeout + Duration::from_secs(30),
        )
        .await?;
        if let Some(stored) = self.store.load(&self.resource)? {
            let newer = seen
                .as_ref()
                .is_none_or(|s| stored.updated_at > s.updated_at);
            let wants_more = challenge.is_some_and(|c| c.insufficient_scope());
            if newer && Self::fresh(&stored) && !wants_more {
                info!("another alibridge process signed in; using its tokens");
                self.state.lock().unwrap().record = Some(stored.clone());
                return Ok(stored);
            }
        }
        let disc = self.discover(challenge).await?;
        let scope = self.scope_for(&disc, challenge, seen.as_ref());
        let ports = flow::candidate_ports(&self.key, self.cfg.callback_port);
        let listener = flow::bind(&ports).await?;
        let redirects: Vec<String> = ports
            .iter()
            .map(|p| {
                format!(
                    "http://127.0.0.1:{p}{}",
                    crate::auth::loopback::CALLBACK_PATH
                )
            })
            .collect();
        let redirect = listener.redirect_uri();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let stored = self.store.load(&self.resource)?;
            let client = flow::client_identity(
                &self.http,
                &self.cfg,
                &disc,
                stored.as_ref(),
                &redirects,
                &redirect,
            )
            .await?;
            match flow::authorize(
                &self.http,
                &self.cfg,
                &disc,
                &client,
                &listener,
                scope.as_deref(),
                paste,
            )
            .await
            {
                Ok((t, _)) => {
                    let rec = flow::record(&disc, &client, t, scope.as_deref());
                    self.store.save(&rec)?;
                    let mut st = self.state.lock().unwrap();
                    st.record = Some(rec.clone());
                    st.last_sign_in = Some(Instant::now());
                    info!("signed in");
                    return Ok(rec);
                }
                // The server forgot our dynamic registration: register again, once.
                Err(e)
                    if e.is_invalid_client()
                        && client.registration == store::Registration::Dynamic
                        && attempt == 1 =>
                {
                    warn!(
                        "the authorization server no longer knows this client; registering again"
                    );
                    self.store.delete(&self.resource)?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Scope: the challenge's, else the resource's `scopes_supported`, else none; a step-up
    /// adds the challenge's scopes to what was granted before.
    fn scope_for(
        &self,
        disc: &Discovered,
        challenge: Option<&Challenge>,
        seen: Option<&Record>,
    ) -> Option<String> {
        let from_challenge = challenge.and_then(|c| c.scope.clone());
        let base = from_challenge.or_else(|| {
            disc.resource_scopes
                .as_ref()
                .filter(|s| !s.is_empty())
                .map(|s| s.join(" "))
        });
        if challenge.is_some_and(|c| c.insufficient_scope()) {
            let mut all: Vec<String> = seen
                .and_then(|r| r.scope.clone())
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect();
            for s in base.as_deref().unwrap_or_default().split_whitespace() {
                if !all.iter().any(|a| a == s) {
                    all.push(s.to_string());
                }
            }
            return (!all.is_empty()).then(|| all.join(" "));
        }
        base
    }
}

impl Credential for OAuthCredential {
    fn name(&self) -> &'static str {
        "oauth"
    }

    fn apply<'a>(&'a self, headers: &'a mut HeaderMap) -> BoxFuture<'a, Result<(), AuthError>> {
        Box::pin(async move {
            if let Some(h) = self.current().await? {
                headers.insert(AUTHORIZATION, h);
            }
            Ok(())
        })
    }

    fn rejected<'a>(&'a self, r: &'a Rejection) -> BoxFuture<'a, Result<Retry, AuthError>> {
        Box::pin(async move {
            let challenge = r
                .www_authenticate
                .as_deref()
                .map(parse_challenge)
                .unwrap_or_default();
            if r.status == 403 {
                if !challenge.insufficient_scope() {
                    return Ok(Retry::No);
                }
                let mut st = self.state.lock().unwrap();
                if st.step_ups >= MAX_STEP_UPS {
                    return Err(AuthError {
                        message: format!("the server keeps asking for more scope ({:?}) after {MAX_STEP_UPS} sign-ins; giving up", challenge.scope),
                    });
                }
                st.step_ups += 1;
            } else {
                let (rec, last) = {
                    let st = self.state.lock().unwrap();
                    (st.record.clone(), st.last_sign_in)
                };
                if let Some(rec) = rec.filter(|r| r.secrets.refresh_token.is_some()) {
                    match self.refresh(&rec).await {
                        Ok(_) => return Ok(Retry::Once),
                        Err(e) if e.is_invalid_grant() || e.is_invalid_client() => {
                            info!("refresh refused; signing in again")
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                if last.is_some_and(|t| t.elapsed() < STORM_WINDOW) {
                    return Err(AuthError {
                        message: "the server rejected a token it issued moments ago; not opening another sign-in. \
                                  Check the server's configuration, or run `alibridge logout` and try again"
                            .into(),
                    });
                }
            }
            self.sign_in(Some(&challenge), false).await?;
            Ok(Retry::Once)
        })
    }
}
