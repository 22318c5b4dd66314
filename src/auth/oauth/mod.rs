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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use reqwest::Url;
use tracing::{debug, info, warn};

use self::discovery::{parse_challenge, Challenge, Discovered};
use self::lock::ServerLock;
use self::store::{same_issuer, Record, StoreKind, TokenStore};
use self::tokens::ClientAuth;
use super::access_key::site::Site;
use super::secret::Secret;
use futures_util::future::BoxFuture;

use super::{AuthError, Credential, Rejection, Retry};
use crate::auth::loopback::CALLBACK_PATH;

/// Refresh this long before the access token expires.
const REFRESH_SKEW: u64 = 60;
/// Step-up sign-ins allowed per run (`insufficient_scope`), so a server that keeps asking for
/// more never loops.
const MAX_STEP_UPS: u32 = 3;
/// A server that rejects the token of a sign-in this recent, without having accepted it even
/// once, does not get another browser sign-in from this process.
const STORM_WINDOW: Duration = Duration::from_secs(20);
/// How much longer than a sign-in a waiter for the server's lock waits.
const LOCK_MARGIN: Duration = Duration::from_secs(30);

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
    /// The brake against sign-in loops; the message says which case it is and what to do.
    #[error("{0}")]
    NotAgain(String),
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

/// A browser sign-in this process completed.
struct SignIn {
    at: Instant,
    /// Its `Authorization` value, to recognise the server accepting it.
    header: Option<HeaderValue>,
}

struct State {
    /// The sign-in in use; read from the store on first use ([`OAuthCredential::ensure_loaded`]).
    record: Option<Record>,
    loaded: bool,
    /// The `Authorization` value of `record`, built once per token.
    header: Option<HeaderValue>,
    step_ups: u32,
    last_sign_in: Option<SignIn>,
}

impl State {
    fn set(&mut self, rec: Option<Record>) {
        self.header = rec.as_ref().and_then(OAuthCredential::header);
        self.record = rec;
        self.loaded = true;
    }

    fn generation(&self) -> u64 {
        self.record.as_ref().map_or(0, |r| r.generation)
    }
}

/// Why a renewal was asked for.
enum Need<'a> {
    /// The token of generation `.0` is about to expire. Never opens a browser: without a
    /// token the request goes out bare and its 401 asks for a sign-in.
    Expiring(u64),
    /// A request carrying `sent` (no token: `None`) was refused with 401.
    Rejected {
        sent: Option<&'a HeaderValue>,
        challenge: &'a Challenge,
    },
    /// 403 `insufficient_scope`: sign in again for more scope.
    StepUp(&'a Challenge),
}

impl Need<'_> {
    fn challenge(&self) -> Option<&Challenge> {
        match self {
            Need::Expiring(_) => None,
            Need::Rejected { challenge, .. } | Need::StepUp(challenge) => Some(challenge),
        }
    }

    /// True when `rec` replaces what this need is about, so the caller can use it as is.
    fn met_by(&self, rec: &Record, header: Option<&HeaderValue>) -> bool {
        OAuthCredential::fresh(rec)
            && match self {
                Need::Expiring(g) => rec.generation > *g,
                Need::Rejected { sent, .. } => header.is_some() && header != *sent,
                Need::StepUp(_) => false,
            }
    }
}

/// The OAuth credential of one MCP server.
pub struct OAuthCredential {
    cfg: OAuthConfig,
    http: reqwest::Client,
    store: TokenStore,
    key: String,
    resource: String,
    state: Mutex<State>,
    /// Set after a browser sign-in until the server accepts its token: the fast path of
    /// [`Credential::accepted`] reads only this.
    unproven: AtomicBool,
    /// The last discovery result: refreshes reuse it instead of fetching metadata each time.
    discovered: Mutex<Option<Discovered>>,
    /// One renewal (refresh or sign-in) at a time inside this process.
    busy: tokio::sync::Mutex<()>,
}

impl OAuthCredential {
    /// Sets the credential up without touching the keychain: the stored sign-in is read on
    /// first use, on the blocking pool.
    pub fn new(cfg: OAuthConfig) -> Result<Self, AuthError> {
        // OAuth endpoints are taken from metadata as they are: no redirect is followed at all.
        let http = crate::net::client_builder(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(AuthError::Tls)?;
        let store = TokenStore::new(&cfg.home, cfg.store);
        let resource = discovery::canonical_resource(&cfg.server);
        let key = TokenStore::key(&resource);
        Ok(OAuthCredential {
            cfg,
            http,
            store,
            key,
            resource,
            state: Mutex::new(State {
                record: None,
                loaded: false,
                header: None,
                step_ups: 0,
                last_sign_in: None,
            }),
            unproven: AtomicBool::new(false),
            discovered: Mutex::new(None),
            busy: tokio::sync::Mutex::new(()),
        })
    }

    /// True when a sign-in for this server is stored (reads the record file only).
    pub fn has_record(&self) -> bool {
        self.store.has_record(&self.resource)
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
                e > tokens::now_secs().saturating_add(skew)
            })
    }

    /// Runs blocking store I/O (files, the keychain and its unlock prompt) off the runtime
    /// thread, so relaying never waits on it.
    async fn with_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&TokenStore, &str) -> Result<T, OAuthError> + Send + 'static,
    ) -> Result<T, OAuthError> {
        let store = self.store.clone();
        let resource = self.resource.clone();
        tokio::task::spawn_blocking(move || f(&store, &resource))
            .await
            .map_err(|e| OAuthError::Store(format!("the token store task failed: {e}")))?
    }

    async fn load(&self, issuer: Option<String>) -> Result<Option<Record>, OAuthError> {
        self.with_store(move |s, r| s.load(r, issuer.as_deref()))
            .await
    }

    async fn ensure_loaded(&self) -> Result<(), OAuthError> {
        if self.state.lock().unwrap().loaded {
            return Ok(());
        }
        let rec = self.load(None).await?;
        let mut st = self.state.lock().unwrap();
        if !st.loaded {
            st.set(rec);
        }
        Ok(())
    }

    /// Saves `rec` as the next generation and makes it current. Callers hold the server lock,
    /// so the generation read here cannot be raced by another process.
    async fn commit(&self, mut rec: Record) -> Result<Record, OAuthError> {
        let mine = self.state.lock().unwrap().generation();
        rec.updated_at = tokens::now_secs();
        let saved = self
            .with_store(move |s, r| {
                rec.generation = s.generation(r).max(mine).saturating_add(1);
                rec.store = s.save(&rec)?.into();
                Ok(rec)
            })
            .await?;
        self.state.lock().unwrap().set(Some(saved.clone()));
        Ok(saved)
    }

    /// The current header, refreshing first when the token is about to expire.
    async fn current(&self) -> Result<Option<HeaderValue>, OAuthError> {
        self.ensure_loaded().await?;
        let generation = {
            let st = self.state.lock().unwrap();
            match &st.record {
                Some(r) if Self::fresh(r) => return Ok(st.header.clone()),
                Some(r) if r.secrets.refresh_token.is_some() => r.generation,
                // Expired without a refresh token: send nothing; the 401 starts a sign-in.
                _ => return Ok(None),
            }
        };
        let rec = self.renew(Need::Expiring(generation)).await?;
        Ok(rec.as_ref().and_then(Self::header))
    }

    /// Brings the credential past what `need` is about, exactly once per generation: adopts a
    /// newer sign-in from this process or the store when there is one, else refreshes, else
    /// (not for [`Need::Expiring`]) signs in. `Ok(None)`: nothing usable, send without a token.
    async fn renew(&self, need: Need<'_>) -> Result<Option<Record>, OAuthError> {
        let _local = self.busy.lock().await;
        // A sibling task may have renewed while this one waited for `busy`.
        {
            let st = self.state.lock().unwrap();
            if let Some(r) = st
                .record
                .as_ref()
                .filter(|r| need.met_by(r, st.header.as_ref()))
            {
                debug!("another request already renewed the token");
                return Ok(Some(r.clone()));
            }
        }
        let _lock = ServerLock::acquire(
            &self.cfg.home,
            &self.key,
            self.cfg.auth_timeout + LOCK_MARGIN,
        )
        .await?;
        // Another process may have, too: the store is authoritative under the lock.
        let mine = self.state.lock().unwrap().generation();
        let stored = self.load(None).await?;
        if let Some(s) = stored.as_ref().filter(|s| s.generation > mine) {
            let header = Self::header(s);
            self.state.lock().unwrap().set(Some(s.clone()));
            if need.met_by(s, header.as_ref()) {
                info!("another alibridge process renewed the sign-in; using its tokens");
                return Ok(Some(s.clone()));
            }
        }
        let base = self.state.lock().unwrap().record.clone();

        let mut refused_refresh = false;
        if !matches!(need, Need::StepUp(_)) {
            match self.refresh(base.as_ref(), need.challenge()).await {
                Ok(Some(rec)) => return Ok(Some(rec)),
                Ok(None) => {}
                Err(e) if e.is_invalid_grant() || e.is_invalid_client() => {
                    info!(error = %e, "the refresh token was refused; a new sign-in is needed");
                    refused_refresh = true;
                }
                Err(e) => return Err(e),
            }
        }
        match need {
            Need::Expiring(_) => return Ok(None),
            Need::Rejected { .. } => self.check_storm(refused_refresh)?,
            // Bounded by MAX_STEP_UPS instead.
            Need::StepUp(_) => {}
        }
        self.sign_in_locked(need.challenge(), false).await.map(Some)
    }

    /// Refreshes `base` when it can be refreshed with the authorization server the server
    /// names now; `Ok(None)` when there is nothing to refresh with.
    async fn refresh(
        &self,
        base: Option<&Record>,
        challenge: Option<&Challenge>,
    ) -> Result<Option<Record>, OAuthError> {
        let Some(base) = base.filter(|r| r.secrets.refresh_token.is_some()) else {
            return Ok(None);
        };
        let disc = self.discover(challenge).await?;
        // Never send one issuer's refresh token to another: a server that moved to another
        // authorization server uses that server's own stored sign-in, or a new one.
        let base = if same_issuer(&base.issuer, &disc.server.issuer) {
            base.clone()
        } else {
            info!(
                from = %base.issuer,
                to = %disc.server.issuer,
                "the server names another authorization server now; not sending it the old refresh token"
            );
            match self.load(Some(disc.server.issuer.clone())).await? {
                Some(r) if r.secrets.refresh_token.is_some() => r,
                _ => return Ok(None),
            }
        };
        let Some(rt) = base.secrets.refresh_token.clone().map(Secret::new) else {
            return Ok(None);
        };
        let secret = self.client_secret_for(&base);
        let auth = ClientAuth::choose(
            secret.is_some(),
            disc.server.token_endpoint_auth_methods_supported.as_deref(),
        );
        let client = tokens::Client {
            id: &base.client_id,
            secret: secret.as_ref(),
            auth,
        };
        let result = tokens::refresh(
            &self.http,
            &disc.server.token_endpoint,
            &client,
            &rt,
            &self.resource,
            base.scope.as_deref(),
        )
        .await;
        let t = match result {
            Ok(t) => t,
            Err(e) => {
                if e.is_invalid_grant() || e.is_invalid_client() {
                    self.forget_tokens(&base, e.is_invalid_client()).await?;
                }
                return Err(e);
            }
        };
        let mut rec = base;
        rec.secrets.access_token = Some(t.access_token.expose().to_string());
        rec.secrets.refresh_token = t.refresh_token.map(|r| r.expose().to_string());
        rec.expires_at = t.expires_at;
        if t.scope.is_some() {
            rec.scope = t.scope;
        }
        let rec = self.commit(rec).await?;
        debug!(generation = rec.generation, "access token refreshed");
        Ok(Some(rec))
    }

    /// Drops the tokens (and, when the server forgot the client, the registration) so the
    /// next attempt starts clean instead of retrying something that cannot work.
    async fn forget_tokens(&self, rec: &Record, forget_client: bool) -> Result<(), OAuthError> {
        if forget_client && rec.registration == store::Registration::Dynamic {
            let issuer = rec.issuer.clone();
            self.with_store(move |s, r| s.delete(r, Some(&issuer)))
                .await?;
            self.state.lock().unwrap().set(None);
            return Ok(());
        }
        let mut r = rec.clone();
        r.secrets.access_token = None;
        r.secrets.refresh_token = None;
        r.expires_at = None;
        self.commit(r).await?;
        Ok(())
    }

    /// The brake against sign-in loops: no second browser sign-in within [`STORM_WINDOW`] of
    /// one whose token the server never accepted. A token that worked and was then refused is
    /// a revocation, and gets its one new sign-in.
    fn check_storm(&self, refused_refresh: bool) -> Result<(), OAuthError> {
        let st = self.state.lock().unwrap();
        let Some(last) = st.last_sign_in.as_ref() else {
            return Ok(());
        };
        let unproven = self.unproven.load(Ordering::Acquire);
        let ago = last.at.elapsed();
        if !unproven || ago >= STORM_WINDOW {
            return Ok(());
        }
        let url = &self.resource;
        Err(OAuthError::NotAgain(if refused_refresh {
            format!(
                "the authorization server revoked the grant of the sign-in {} s ago (it refused the refresh token), \
                 so a new sign-in is needed. alibridge opens at most one browser sign-in per {} s for a server \
                 that has not accepted the last one: retry the call after that, or run `alibridge login {url}`",
                ago.as_secs(),
                STORM_WINDOW.as_secs()
            )
        } else {
            format!(
                "the server rejected a token its authorization server issued {} s ago; not opening another sign-in. \
                 Check that the server accepts tokens of this authorization server (audience, scopes, clock), \
                 or run `alibridge logout {url}` and try again",
                ago.as_secs()
            )
        }))
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

    /// Signs in (browser) under the cross-process lock: `alibridge login`, which always signs
    /// in. `paste`: also accept a pasted redirect URL or code on stdin (`login --no-browser`).
    pub async fn sign_in(
        &self,
        challenge: Option<&Challenge>,
        paste: bool,
    ) -> Result<Record, OAuthError> {
        let _local = self.busy.lock().await;
        let _lock = ServerLock::acquire(
            &self.cfg.home,
            &self.key,
            self.cfg.auth_timeout + LOCK_MARGIN,
        )
        .await?;
        self.ensure_loaded().await?;
        self.sign_in_locked(challenge, paste).await
    }

    /// The browser sign-in itself; the caller holds `busy` and the server lock.
    async fn sign_in_locked(
        &self,
        challenge: Option<&Challenge>,
        paste: bool,
    ) -> Result<Record, OAuthError> {
        let seen = self.state.lock().unwrap().record.clone();
        let disc = self.discover(challenge).await?;
        let scope = self.scope_for(&disc, challenge, seen.as_ref());
        let ports = flow::candidate_ports(&self.key, self.cfg.callback_port);
        let listener = flow::bind(&ports).await?;
        let redirects: Vec<String> = ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}{CALLBACK_PATH}"))
            .collect();
        let redirect = listener.redirect_uri();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let stored = self.load(Some(disc.server.issuer.clone())).await?;
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
                    let rec = self
                        .commit(flow::record(&disc, &client, t, scope.as_deref()))
                        .await?;
                    let header = Self::header(&rec);
                    self.state.lock().unwrap().last_sign_in = Some(SignIn {
                        at: Instant::now(),
                        header,
                    });
                    self.unproven.store(true, Ordering::Release);
                    info!(generation = rec.generation, "signed in");
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
                    let issuer = disc.server.issuer.clone();
                    self.with_store(move |s, r| s.delete(r, Some(&issuer)))
                        .await?;
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

    fn identity(&self) -> Option<String> {
        let st = self.state.lock().unwrap();
        let token = st.record.as_ref()?.secrets.access_token.as_deref()?;
        jwt_subject(token).map(|s| format!("oauth:{s}"))
    }

    fn apply<'a>(&'a self, headers: &'a mut HeaderMap) -> BoxFuture<'a, Result<(), AuthError>> {
        Box::pin(async move {
            if let Some(h) = self.current().await? {
                headers.insert(AUTHORIZATION, h);
            }
            Ok(())
        })
    }

    fn accepted(&self, authorization: Option<&HeaderValue>) {
        if !self.unproven.load(Ordering::Acquire) {
            return;
        }
        let st = self.state.lock().unwrap();
        if st
            .last_sign_in
            .as_ref()
            .is_some_and(|s| s.header.is_some() && s.header.as_ref() == authorization)
        {
            self.unproven.store(false, Ordering::Release);
        }
    }

    fn rejected<'a>(&'a self, r: &'a Rejection) -> BoxFuture<'a, Result<Retry, AuthError>> {
        Box::pin(async move {
            let challenge = r
                .www_authenticate
                .as_deref()
                .map(parse_challenge)
                .unwrap_or_default();
            self.ensure_loaded().await?;
            let need = if r.status == 403 {
                if !challenge.insufficient_scope() {
                    return Ok(Retry::No);
                }
                let mut st = self.state.lock().unwrap();
                if st.step_ups >= MAX_STEP_UPS {
                    return Err(AuthError::Denied(format!(
                        "the server keeps asking for more scope ({:?}) after {MAX_STEP_UPS} sign-ins; giving up",
                        challenge.scope
                    )));
                }
                st.step_ups += 1;
                Need::StepUp(&challenge)
            } else {
                Need::Rejected {
                    sent: r.authorization.as_ref(),
                    challenge: &challenge,
                }
            };
            Ok(match self.renew(need).await? {
                Some(_) => Retry::Once,
                None => Retry::No,
            })
        })
    }
}

/// The `sub` claim of a JWT access token, unverified (display only); `None` for opaque tokens.
fn jwt_subject(token: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let sub = claims.get("sub")?.as_str()?;
    Some(sub.chars().take(128).collect())
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    #[test]
    fn the_audit_identity_is_the_jwt_subject_when_there_is_one() {
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(r#"{"sub":"user-1234","aud":"x"}"#);
        assert_eq!(
            super::jwt_subject(&format!("h.{claims}.sig")).as_deref(),
            Some("user-1234")
        );
        assert_eq!(super::jwt_subject("opaque-token"), None);
        let no_sub = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"aud":"x"}"#);
        assert_eq!(super::jwt_subject(&format!("h.{no_sub}.s")), None);
    }
}
