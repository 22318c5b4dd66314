//! The credential's own state on this machine, after the bridge reported which one it uses:
//! the stored OAuth sign-in for the endpoint, or the `pre-check` verdict recorded for the site.

use std::path::Path;

use url::Url;

use super::probe::Probed;
use super::{same_url, Report};
use crate::auth::access_key::pre_check_record;
use crate::auth::access_key::site::Site;
use crate::auth::oauth::store::{StoreKind, TokenStore};
use crate::auth::oauth::tokens::now_secs;

/// The credential's own state on this machine: the stored OAuth sign-in, or the recorded
/// `pre-check` verdict for AccessKeys.
pub(super) fn credential_state(r: &mut Report, url: Option<&Url>, probed: &Probed) {
    let Some(auth) = probed.auth.as_deref() else {
        return;
    };
    let Ok(home) = crate::commands::state_home() else {
        return;
    };
    if auth.starts_with("OAuth") {
        if let Some(url) = url {
            oauth_state(r, &home, url);
        }
    } else if auth.starts_with("Alibaba Cloud AccessKey") {
        let site = if auth.contains(", site INTL ") {
            Site::Intl
        } else {
            Site::Cn
        };
        pre_check_state(r, &home, site, probed.credential_failure.as_deref());
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

fn pre_check_state(r: &mut Report, home: &Path, site: Site, failure: Option<&str>) {
    let flag = site.flag_value();
    let record = pre_check_record::load(home, flag, site.client_id());
    let refused = failure.is_some_and(|f| {
        [
            "Forbidden",
            "NoPermission",
            "NotAuthorized",
            "not yet authorized",
            "pre-check",
        ]
        .iter()
        .any(|k| f.contains(k))
    });
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
