//! `--auth ak`: Alibaba Cloud AccessKey credentials, exchanged for a short-lived OpenAPI MCP
//! bearer token.
//!
//! Keys come from the [`chain`] (environment, OIDC, the `aliyun` CLI profile, the shared
//! credentials file, …); [`exchange`] mints a token with a signed GenerateAccessToken call.
//! The token is cached in memory and replaced before it expires, so the live session simply
//! carries the new one on its next request; a 401/403 mints a new one once. With
//! `--safety-policy` or exact `--allow-tools`, every new token gets that policy bound
//! server-side ([`safety`]) before it is used. Credential files
//! are re-checked (at most once a second) so an `aliyun configure` during a run is picked up.

pub mod api;
pub mod chain;
pub mod discovery;
pub mod exchange;
pub mod input;
pub mod keys;
pub mod policy;
pub mod pre_check_record;
pub mod profile;
pub mod safety;
pub mod site;
pub mod sources;
pub mod token_cache;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use std::sync::Arc;

use futures_util::future::BoxFuture;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use reqwest::Url;
use tracing::{debug, info};

use self::api::ApiClient;
use self::chain::{ChainInput, Resolved};
use self::exchange::Exchange;
use self::keys::SharedSource;
use self::site::{Site, OPENAPI_SCOPE};
use super::{AuthConfig, AuthError, Credential, Rejection, Retry, Selection};

/// Sets up the AccessKey credential for `url`: finds the keys where the official tools look,
/// picks the site (flag, else the endpoint, else CN) and the token exchange. `why` is what the
/// `auth:` line says about the choice.
pub fn select(cfg: &AuthConfig, url: &Url, why: &str) -> Result<Selection, AuthError> {
    let (site, site_why) = match (cfg.site, Site::infer(url)) {
        (Some(s), _) => (s, "--site-type"),
        (None, Some(s)) => (s, "inferred from the endpoint"),
        (None, None) => (Site::Cn, DEFAULT_SITE),
    };
    let (credential, reason) = build(cfg, site, site_why, url, why)?;
    Ok(Selection {
        site: Some(site),
        ..Selection::new(Arc::new(credential), reason)
    })
}

const DEFAULT_SITE: &str = "default; pass --site-type INTL for international accounts";

/// The URL-less start: the AccessKey credential, and the account's Core endpoint found with
/// it ([`Selection::endpoint`]; `--site-type` picks the site; `--discovery-endpoint` where to
/// ask).
pub async fn select_core(
    cfg: &AuthConfig,
) -> Result<(Selection, Arc<discovery::CoreEndpoint>), AuthError> {
    let (site, site_why) = match cfg.site {
        Some(s) => (s, "--site-type"),
        None => (Site::Cn, DEFAULT_SITE),
    };
    let asked = cfg
        .discovery_endpoint
        .clone()
        .unwrap_or_else(|| discovery::default_endpoint(site));
    // Safety policies are bound on the host the token is for; the Core endpoint is on the
    // discovery host's kind (an OpenAPI MCP host), so that is where they go.
    let (credential, reason) = build(cfg, site, site_why, &asked, "no URL given")?;
    let credential = Arc::new(credential);
    let (core, url) =
        discovery::CoreEndpoint::start(credential.clone(), site, cfg.discovery_endpoint.clone())
            .await?;
    let reason = format!(
        "{reason}; endpoint {} (the account's Core edition, {})",
        crate::net::display_url(&url),
        discovery::ACTION
    );
    let selection = Selection {
        site: Some(site),
        endpoint: Some(url),
        ..Selection::new(credential, reason)
    };
    Ok((selection, core))
}

/// The credential for `site`, binding safety policies for tokens used at `url`, and the
/// `auth:` line that explains it.
fn build(
    cfg: &AuthConfig,
    site: Site,
    site_why: &str,
    url: &Url,
    why: &str,
) -> Result<(AccessKeyCredential, String), AuthError> {
    let env = |k: &str| std::env::var(k).ok();
    let input = ChainInput {
        profile: cfg.profile.as_deref(),
        env: &env,
        home: home_dir(),
    };
    let resolved = chain::resolve(&input)?;
    debug!(site = site.flag_value(), reason = site_why, "site type");
    let endpoint = cfg.ims_endpoint.clone().unwrap_or_else(|| site.ims_url());
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
    let mut credential =
        AccessKeyCredential::new(resolved, exchange, cfg.refresh_skew, cfg.profile.clone())?;
    credential.token_home = Some(cfg.oauth.home.clone());
    let reason = format!(
        "Alibaba Cloud AccessKey ({why}) from {origin}, site {} ({site_why})",
        site.flag_value()
    );
    Ok((credential, reason))
}

/// How often the credential files are stat'ed for changes.
const FILE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// [`FILE_CHECK_INTERVAL`], or the test knob [`crate::env::ALIBRIDGE_TEST_FILE_CHECK_MS`].
fn file_check_interval() -> Duration {
    static INTERVAL: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *INTERVAL.get_or_init(|| {
        crate::env::test_knob(crate::env::ALIBRIDGE_TEST_FILE_CHECK_MS)
            .map_or(FILE_CHECK_INTERVAL, Duration::from_millis)
    })
}

/// What identifies a file's content without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileSig(Option<(SystemTime, u64)>);

fn sig(path: &PathBuf) -> FileSig {
    FileSig(
        std::fs::metadata(path)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len())),
    )
}

/// The token in use.
struct Current {
    header: HeaderValue,
    /// When to mint the next one (expiry minus the refresh skew); `None` = until rejected.
    refresh_at: Option<SystemTime>,
}

struct State {
    source: SharedSource,
    watched: Vec<(PathBuf, FileSig)>,
    checked: Instant,
    token: Option<Current>,
    /// The AccessKey id the current token was minted with (for the audit log).
    key_id: Option<String>,
    /// A mint was attempted (the warm-up runs only before any).
    attempted: bool,
    /// The warm-up's failure, reported by the first request instead of minting again.
    warm_error: Option<AuthError>,
}

pub struct AccessKeyCredential {
    api: ApiClient,
    exchange: Exchange,
    skew: Duration,
    profile: Option<String>,
    state: Mutex<State>,
    /// One mint at a time; others wait and reuse its token.
    mint_lock: tokio::sync::Mutex<()>,
    /// Run before the first network mint ([`Credential::on_first_network`]).
    network_hook: Mutex<Option<crate::auth::NetworkHook>>,
    /// The state directory that keeps minted tokens across runs ([`token_cache`]); `None`
    /// keeps them in memory only.
    pub token_home: Option<PathBuf>,
}

impl AccessKeyCredential {
    pub fn new(
        resolved: Resolved,
        exchange: Exchange,
        skew: Duration,
        profile: Option<String>,
    ) -> Result<Self, AuthError> {
        let api = ApiClient::new().map_err(AuthError::Tls)?;
        let watched = resolved
            .watched
            .into_iter()
            .map(|p| {
                let s = sig(&p);
                (p, s)
            })
            .collect();
        Ok(AccessKeyCredential {
            api,
            exchange,
            skew,
            profile,
            state: Mutex::new(State {
                source: resolved.source,
                watched,
                checked: Instant::now(),
                token: None,
                key_id: None,
                attempted: false,
                warm_error: None,
            }),
            mint_lock: tokio::sync::Mutex::new(()),
            network_hook: Mutex::new(None),
            token_home: None,
        })
    }

    /// Where the keys come from (for the start-up line and `status`).
    pub fn origin(&self) -> String {
        self.state.lock().unwrap().source.describe()
    }

    /// Re-resolves the chain when a watched credential file changed. A file that changed into
    /// something unusable is an error: silently keeping the old identity would surprise.
    fn reload_if_changed(&self) -> Result<(), AuthError> {
        let mut st = self.state.lock().unwrap();
        if st.checked.elapsed() < file_check_interval() {
            return Ok(());
        }
        st.checked = Instant::now();
        if st.watched.iter().all(|(p, s)| sig(p) == *s) {
            return Ok(());
        }
        let env = |k: &str| std::env::var(k).ok();
        let input = ChainInput {
            profile: self.profile.as_deref(),
            env: &env,
            home: home_dir(),
        };
        let resolved = chain::resolve(&input).map_err(AuthError::Changed)?;
        info!(source = %resolved.source.describe(), "credential files changed; using the new credentials");
        st.watched = resolved
            .watched
            .into_iter()
            .map(|p| {
                let s = sig(&p);
                (p, s)
            })
            .collect();
        st.source = resolved.source;
        st.token = None;
        Ok(())
    }

    /// The keys of the identity in use now (after re-reading changed credential files).
    pub async fn current_keys(&self) -> Result<keys::AccessKeys, AuthError> {
        self.reload_if_changed()?;
        let source = self.state.lock().unwrap().source.clone();
        source.keys(&self.api).await
    }

    fn current(&self) -> Option<HeaderValue> {
        let st = self.state.lock().unwrap();
        let t = st.token.as_ref()?;
        match t.refresh_at {
            Some(at) if at <= SystemTime::now() => None,
            _ => Some(t.header.clone()),
        }
    }

    /// Mints a token unless someone else did while we waited for the lock.
    async fn mint(
        &self,
        force: bool,
        rejected: Option<&HeaderValue>,
    ) -> Result<HeaderValue, AuthError> {
        let _one = self.mint_lock.lock().await;
        self.mint_locked(force, rejected).await
    }

    /// [`Self::mint`] with the mint lock held.
    async fn mint_locked(
        &self,
        force: bool,
        rejected: Option<&HeaderValue>,
    ) -> Result<HeaderValue, AuthError> {
        {
            let mut st = self.state.lock().unwrap();
            st.attempted = true;
            if let Some(e) = st.warm_error.take() {
                return Err(e);
            }
            if let Some(t) = &st.token {
                // After a 401, a token other than the refused one was minted by another request
                // meanwhile (the token's identity, not a clock, tells): use it.
                let replaced = rejected != Some(&t.header);
                let valid = t.refresh_at.is_none_or(|at| at > SystemTime::now());
                if (force && replaced) || (!force && valid) {
                    return Ok(t.header.clone());
                }
            }
        }
        let source = self.state.lock().unwrap().source.clone();
        let cache = self.token_cache(&source);
        if let Some(cache) = &cache {
            if let Some(header) = self.cached_token(cache, force, rejected).await {
                return Ok(header);
            }
        }
        if let Some(hook) = self.network_hook.lock().unwrap().take() {
            hook();
        }
        let keys = source.keys(&self.api).await?;
        let described = source.describe();
        let mint = self.exchange.mint(&self.api, &keys, &described);
        let minted = crate::telemetry::traced("alibridge.access_key.mint", mint).await?;
        crate::telemetry::count(crate::telemetry::Event::TokenMint);
        if let Some(binding) = &self.exchange.safety {
            binding.apply(&self.api, &minted.token).await?;
        }
        let mut header = HeaderValue::from_str(&format!("Bearer {}", minted.token.expose()))
            .map_err(|_| {
                AuthError::Protocol(
                    "the minted token contains characters not allowed in a header".into(),
                )
            })?;
        header.set_sensitive(true);
        let refresh_at = minted.expires_at.map(|exp| {
            let life = exp.duration_since(SystemTime::now()).unwrap_or_default();
            exp.checked_sub(self.skew.min(life / 2)).unwrap_or(exp)
        });
        debug!(key_id = %keys.id, expires_in = ?minted.expires_at.and_then(|e| e.duration_since(SystemTime::now()).ok()),
               "minted an OpenAPI MCP token");
        if let Some(cache) = cache {
            let (token, id, exp) = (minted.token.clone(), keys.id.clone(), minted.expires_at);
            let _ = tokio::task::spawn_blocking(move || cache.store(&token, &id, exp)).await;
        }
        let mut st = self.state.lock().unwrap();
        st.token = Some(Current {
            header: header.clone(),
            refresh_at,
        });
        st.key_id = Some(keys.id.clone());
        drop(st);
        Ok(header)
    }

    // ---- token cache hook (see token_cache.rs) ----

    fn token_cache(&self, source: &SharedSource) -> Option<token_cache::TokenCache> {
        let home = self.token_home.as_ref()?;
        let identity = source.cache_identity()?;
        Some(token_cache::TokenCache::new(
            home,
            &identity,
            &self.exchange,
        ))
    }

    /// A token kept by an earlier run, when one may be used: not after a rejection (whose token
    /// is dropped from the cache instead), not within the refresh skew of its expiry.
    async fn cached_token(
        &self,
        cache: &token_cache::TokenCache,
        force: bool,
        rejected: Option<&HeaderValue>,
    ) -> Option<HeaderValue> {
        let cache = cache.clone();
        if force {
            let refused = rejected
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.strip_prefix("Bearer "))
                .map(str::to_string);
            let _ = tokio::task::spawn_blocking(move || match refused {
                Some(t) => cache.forget_token(&t),
                None => cache.forget(),
            })
            .await;
            return None;
        }
        let skew = self.skew;
        let hit = tokio::task::spawn_blocking(move || cache.load(skew))
            .await
            .ok()
            .flatten()?;
        let mut header = HeaderValue::from_str(&format!("Bearer {}", hit.token.expose())).ok()?;
        header.set_sensitive(true);
        info!(key_id = %masked(&hit.key_id),
              expires_in = ?hit.expires_at.duration_since(SystemTime::now()).ok(),
              "using the OpenAPI MCP token kept from an earlier run");
        let mut st = self.state.lock().unwrap();
        st.token = Some(Current {
            header: header.clone(),
            refresh_at: Some(hit.refresh_at),
        });
        st.key_id = Some(hit.key_id);
        Some(header)
    }
}

impl Credential for AccessKeyCredential {
    fn kind(&self) -> crate::auth::CredentialKind {
        crate::auth::CredentialKind::AccessKey
    }

    fn on_first_network(&self, hook: crate::auth::NetworkHook) {
        *self.network_hook.lock().unwrap() = Some(hook);
    }

    fn warm_up(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _one = self.mint_lock.lock().await;
            if self.state.lock().unwrap().attempted {
                return;
            }
            if let Err(e) = self.mint_locked(false, None).await {
                debug!(error = %e, "the token mint at start failed; the first request reports it");
                self.state.lock().unwrap().warm_error = Some(e);
            }
        })
    }

    fn apply<'a>(&'a self, headers: &'a mut HeaderMap) -> BoxFuture<'a, Result<(), AuthError>> {
        Box::pin(async move {
            self.reload_if_changed()?;
            let header = match self.current() {
                Some(h) => h,
                None => self.mint(false, None).await?,
            };
            headers.insert(AUTHORIZATION, header);
            Ok(())
        })
    }

    fn identity(&self) -> Option<String> {
        let st = self.state.lock().unwrap();
        st.key_id.as_deref().map(|id| format!("ak:{}", masked(id)))
    }

    fn rejected<'a>(&'a self, r: &'a Rejection) -> BoxFuture<'a, Result<Retry, AuthError>> {
        Box::pin(async move {
            info!(
                status = r.status,
                "the MCP server refused the token; minting a new one"
            );
            self.mint(true, r.authorization.as_ref()).await?;
            Ok(Retry::Once)
        })
    }
}

/// An AccessKey id for logs: its first and last four characters (`LTAI****q1w2`); shorter ids
/// keep only two.
pub fn masked(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    if chars.len() < 12 {
        return format!("{}****", chars.iter().take(2).collect::<String>());
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}****{tail}")
}

/// The user's home directory (`HOME`, else the platform's notion).
pub fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(dirs_home)
}

#[cfg(windows)]
fn dirs_home() -> Option<PathBuf> {
    std::env::var_os("USERPROFILE").map(PathBuf::from)
}

#[cfg(not(windows))]
fn dirs_home() -> Option<PathBuf> {
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn key_ids_are_masked_for_logs() {
        assert_eq!(super::masked("LTAI5tExampleKey123"), "LTAI****y123");
        assert_eq!(super::masked("STS.NUexampleTokenAbcd"), "STS.****Abcd");
        assert_eq!(super::masked("short"), "sh****");
    }
}
