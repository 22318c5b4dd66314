//! `--auth oauth`: OAuth 2.1 sign-in per the MCP authorization spec.
//!
//! The credential is lazy: it sends nothing until the server answers 401, then discovers the
//! authorization server from the challenge ([`discovery`]), signs in through the browser
//! ([`flow`]: PKCE, state, loopback redirect) and retries the request once. Tokens are kept in
//! the [`store`] (OS keychain or a 0600 file) and refreshed before they expire. A per-server
//! [`lock`] makes sign-ins and refreshes single-flight across processes: when a desktop client
//! starts three bridges at once, one browser tab opens and the others reuse its tokens.
//!
//! This file holds the credential and its state (the stored sign-in, read lazily, and the
//! header built from it); `renew` decides how a token is renewed (adopt, refresh, or sign in,
//! with the brake against sign-in loops) and `sign_in` runs the browser sign-in itself.

pub mod discovery;
mod error;
pub mod flow;
pub mod lock;
mod renew;
mod sign_in;
pub mod store;
pub mod tokens;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use reqwest::Url;

use self::discovery::{parse_challenge, Discovered};
use self::renew::Need;
use self::store::{Record, StoreKind, TokenStore};
use super::access_key::site::Site;
use super::secret::Secret;
use futures_util::future::BoxFuture;

pub use self::error::OAuthError;
use super::{AuthError, Credential, Rejection, Retry};

/// Refresh this long before the access token expires.
const REFRESH_SKEW: u64 = 60;
/// Step-up sign-ins allowed per run (`insufficient_scope`), so a server that keeps asking for
/// more never loops.
const MAX_STEP_UPS: u32 = 3;
/// How much longer than a sign-in a waiter for the server's lock waits.
const LOCK_MARGIN: Duration = Duration::from_secs(30);

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
            .map_err(OAuthError::StoreTask)?
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
}

impl Credential for OAuthCredential {
    fn kind(&self) -> crate::auth::CredentialKind {
        crate::auth::CredentialKind::OAuth
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
