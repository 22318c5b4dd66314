//! Renewing the token of one server, single-flight within the process (`busy`) and across
//! processes (the server lock): adopt a newer sign-in from a sibling task or process, else
//! refresh (never sending one issuer's refresh token to another), else sign in again, with the
//! brake against sign-in loops.

use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::header::HeaderValue;
use tracing::{debug, info};

use super::discovery::{self, Challenge, Discovered};
use super::lock::ServerLock;
use super::store::{self, same_issuer, Record};
use super::tokens::{self, ClientAuth};
use super::{OAuthCredential, OAuthError, LOCK_MARGIN};
use crate::auth::secret::Secret;

/// A server that rejects the token of a sign-in this recent, without having accepted it even
/// once, does not get another browser sign-in from this process.
const STORM_WINDOW: Duration = Duration::from_secs(20);

/// Why a renewal was asked for.
pub(super) enum Need<'a> {
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

impl OAuthCredential {
    /// Brings the credential past what `need` is about, exactly once per generation: adopts a
    /// newer sign-in from this process or the store when there is one, else refreshes, else
    /// (not for [`Need::Expiring`]) signs in. `Ok(None)`: nothing usable, send without a token.
    pub(super) async fn renew(&self, need: Need<'_>) -> Result<Option<Record>, OAuthError> {
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
        // Only a stored refresh token makes an attempt (and a span for it).
        let refreshable = base
            .as_ref()
            .is_some_and(|r| r.secrets.refresh_token.is_some());
        if refreshable && !matches!(need, Need::StepUp(_)) {
            let refresh = self.refresh(base.as_ref(), need.challenge());
            match crate::telemetry::traced("alibridge.oauth.refresh", refresh).await {
                Ok(Some(rec)) => {
                    crate::telemetry::count(crate::telemetry::Event::TokenRefresh);
                    return Ok(Some(rec));
                }
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
        let sign_in = self.sign_in_locked(need.challenge(), false);
        crate::telemetry::traced("alibridge.oauth.sign_in", sign_in)
            .await
            .map(Some)
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
    pub(super) async fn discover(
        &self,
        challenge: Option<&Challenge>,
    ) -> Result<Discovered, OAuthError> {
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
}
