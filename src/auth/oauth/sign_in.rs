//! The browser sign-in (`alibridge login`, or a 401 the stored tokens cannot answer): the
//! loopback listener, the client's identity (registered again once if the authorization
//! server forgot it), the authorization itself, and the scope to ask for.

use std::sync::atomic::Ordering;
use std::time::Instant;

use tracing::{info, warn};

use super::discovery::{Challenge, Discovered};
use super::lock::ServerLock;
use super::store::{self, Record};
use super::{flow, OAuthCredential, OAuthError, SignIn, LOCK_MARGIN};
use crate::auth::loopback::CALLBACK_PATH;

impl OAuthCredential {
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
    pub(super) async fn sign_in_locked(
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
