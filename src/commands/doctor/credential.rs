//! The credential, chosen in this process by the bridge's own code from the entry's flags
//! ([`crate::commands::bridge::select`]), and its state on this machine: the stored OAuth
//! sign-in for the endpoint, or the `pre-check` verdict recorded for the site.

use std::path::Path;

use clap::Parser;
use url::Url;

use super::probe::{Probed, Refusal};
use super::{same_url, Report};
use crate::auth::access_key::pre_check_record;
use crate::auth::access_key::site::Site;
use crate::auth::oauth::store::{StoreKind, TokenStore};
use crate::auth::oauth::tokens::now_secs;
use crate::auth::{CredentialKind, Selection};
use crate::cli::Cli;
use crate::error::UsageError;

/// What the entry's bridge flags pick, as the bridge would pick it.
pub(super) enum Choice {
    /// The credential and the local policy the bridge would run with.
    Picked(Box<Chosen>),
    /// This binary cannot read the flags (an entry written for another version): only the
    /// probe, which runs the entry's own binary, can tell.
    Unreadable,
    /// The bridge would stop at start with this error.
    Failed(anyhow::Error),
}

/// The credential the bridge picks and the safety line it would print.
pub(super) struct Chosen {
    pub selection: Selection,
    /// Which limits the server enforces and which only the bridge does, when a safety flag
    /// is set.
    pub safety: Option<String>,
}

/// Parses `args` (the bridge's command line, URL first when there is one) and picks the
/// credential with the bridge's own code. For the URL-less form this asks the discovery
/// service for the account's Core endpoint, as the bridge does.
pub(super) async fn choose(args: &[String]) -> Choice {
    let argv = std::iter::once("alibridge").chain(args.iter().map(String::as_str));
    let bridge = match Cli::try_parse_from(argv) {
        Ok(cli) if cli.command.is_none() => cli.bridge,
        _ => return Choice::Unreadable,
    };
    let cfg = match bridge.resolve(|k| std::env::var(k).ok()) {
        Ok(cfg) => cfg,
        Err(e) => return Choice::Failed(UsageError::from(e).into()),
    };
    let (selection, _core) = match crate::commands::bridge::select(&cfg).await {
        Ok(s) => s,
        Err(e) => return Choice::Failed(e),
    };
    // The bridge binds a safety policy to its first token before it starts, and starts only
    // when that works: a bridge that answers enforces what its configuration says.
    let mut policy = cfg.policy;
    let is_ak = selection.kind == CredentialKind::AccessKey;
    policy.server_enforced = is_ak && cfg.auth.safety.as_ref().is_some_and(|s| s.enforces_flags);
    let safety = crate::commands::safety_line(&policy, is_ak);
    Choice::Picked(Box::new(Chosen { selection, safety }))
}

/// The credential's own state on this machine: the stored OAuth sign-in, or the recorded
/// `pre-check` verdict for AccessKeys.
pub(super) fn credential_state(
    r: &mut Report,
    url: Option<&Url>,
    selection: &Selection,
    probed: &Probed,
) {
    let Ok(home) = crate::commands::state_home() else {
        return;
    };
    match (selection.kind, selection.site) {
        (CredentialKind::OAuth, _) => {
            if let Some(url) = url {
                oauth_state(r, &home, url);
            }
        }
        (CredentialKind::AccessKey, Some(site)) => {
            pre_check_state(r, &home, site, probed.credential_failure)
        }
        _ => {}
    }
}

fn oauth_state(r: &mut Report, home: &Path, url: &Url) {
    let store = TokenStore::new(home, StoreKind::File);
    let records: Vec<_> = store
        .list()
        .into_iter()
        .filter(|m| same_url(&m.server, url))
        .collect();
    if records.is_empty() {
        r.ok(
            "OAuth",
            "no stored sign-in: the bridge opens a browser when the server first asks \
             (or sign in now with `alibridge login <URL>`)",
        );
    }
    for m in records {
        let store = if m.store == "keyring" {
            "OS keychain"
        } else {
            "file"
        };
        let detail = format!(
            "signed in at {} (client {}), stored in {store}",
            m.issuer, m.client_id
        );
        match m.expires_at {
            Some(e) if e > now_secs() => r.ok(
                "OAuth",
                format!(
                    "{detail}; token expires in {}",
                    crate::commands::status::human_duration(e)
                ),
            ),
            Some(_) => r.ok(
                "OAuth",
                format!("{detail}; the token has expired and is renewed on next use"),
            ),
            None => r.ok("OAuth", format!("{detail}; no stated expiry")),
        }
    }
}

fn pre_check_state(r: &mut Report, home: &Path, site: Site, failure: Option<Refusal>) {
    let flag = site.flag_value();
    let record = pre_check_record::load(home, flag, site.client_id());
    let refused = failure == Some(Refusal::NotPermitted);
    let fix = format!("run `alibridge pre-check --site-type {flag}` and click Authorize");
    match record {
        Some(rec) if rec.outcome == "authorized" => r.ok(
            "pre-check",
            format!(
                "application {} authorized for the {flag} site ({} ago)",
                rec.client_id,
                ago(rec.at)
            ),
        ),
        Some(rec) => r.fail(
            "pre-check",
            format!(
                "the last pre-check for the {flag} site ({} ago) answered {}",
                ago(rec.at),
                rec.outcome.replace('_', " ")
            ),
            fix,
        ),
        None if refused => r.fail(
            "pre-check",
            format!("never run on this machine, and the {flag} token mint was refused"),
            fix,
        ),
        None if failure.is_none() => r.ok(
            "pre-check",
            "not recorded on this machine; not needed: tokens are minted",
        ),
        None => r.ok(
            "pre-check",
            format!("not recorded on this machine (needed once per account: `alibridge pre-check --site-type {flag}`)"),
        ),
    }
}

/// "5 min" since Unix time `at`.
fn ago(at: u64) -> String {
    let s = now_secs().saturating_sub(at);
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}
