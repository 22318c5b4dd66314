//! `alibridge status`: the stored sign-ins (server, authorization server, identity when the
//! token says, expiry, where it is stored) and the AccessKey source `auto` would use. Never a
//! token or a secret.

use std::process::ExitCode;

use base64::Engine as _;
use serde_json::Value;

use crate::auth::access_key::{self, chain::ChainInput};
use crate::auth::oauth::store::{StoreKind, TokenStore};
use crate::auth::oauth::tokens::now_secs;
use crate::cli::StatusArgs;

pub async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let home = super::state_home()?;
    let store = TokenStore::new(&home, StoreKind::File);
    let records = store.list();
    crate::logging::outln!("state directory: {}", home.display());
    if records.is_empty() {
        crate::logging::outln!("OAuth sign-ins: none (run `alibridge login <URL>`)");
    } else {
        crate::logging::outln!("OAuth sign-ins:");
    }
    for meta in records {
        // Secrets are loaded only to read the identity claims of a JWT access token.
        let full = store.load(&meta.server, Some(&meta.issuer)).ok().flatten();
        let identity = full
            .as_ref()
            .and_then(|r| r.secrets.access_token.as_deref())
            .and_then(identity_of)
            .unwrap_or_else(|| "unknown".into());
        let expiry = match meta.expires_at {
            Some(e) if e > now_secs() => format!("expires in {}", human_duration(e)),
            Some(_) => "expired".into(),
            None => "no stated expiry".into(),
        };
        let renew = if full
            .as_ref()
            .is_some_and(|r| r.secrets.refresh_token.is_some())
        {
            "renewable"
        } else {
            "not renewable"
        };
        let store_name = if meta.store == "keyring" {
            "OS keychain"
        } else {
            "file"
        };
        crate::logging::outln!("  {}", meta.server);
        crate::logging::outln!("    authorization server: {}", meta.issuer);
        crate::logging::outln!("    client: {} ({:?})", meta.client_id, meta.registration);
        crate::logging::outln!("    identity: {identity}");
        crate::logging::outln!(
            "    token: {expiry}, {renew}; scope: {}",
            meta.scope.as_deref().unwrap_or("(none)")
        );
        crate::logging::outln!("    stored in: {store_name}");
    }
    let env = |k: &str| std::env::var(k).ok();
    let input = ChainInput {
        profile: args.profile.profile.as_deref(),
        env: &env,
        home: access_key::home_dir(),
    };
    match access_key::chain::resolve(&input) {
        Ok(r) => crate::logging::outln!("AccessKeys (--auth ak/auto): {}", r.source.describe()),
        // The whole message: it lists every place that was looked at, in order.
        Err(e) => crate::logging::outln!("AccessKeys (--auth ak/auto): none usable: {e}"),
    }
    // Which guarantees hold where (issue 19): the same flags, a different enforcer.
    crate::logging::outln!(
        "safety flags: with AccessKeys, --read-only and --allow-api/--deny-api are also bound to \
         every token server-side (a safety policy the OpenAPI MCP Server enforces); with OAuth, \
         --bearer-token or static headers they are enforced by alibridge only; --allow-tools/\
         --deny-tools, --confirm-writes and --pin-tools are always local. `alibridge doctor \
         <URL> -- <flags>` shows it for one entry"
    );
    let pins = crate::policy::pins::PinStore::new(&home);
    let pinned = std::fs::read_dir(pins.dir())
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .count()
        })
        .unwrap_or(0);
    crate::logging::outln!(
        "pinned tool definitions (--pin-tools): {pinned} endpoint/identity file(s) in {} \
         (`alibridge tools <URL>` shows one)",
        pins.dir().display()
    );
    let checks = access_key::pre_check_record::load_all(&home);
    if checks.is_empty() {
        crate::logging::outln!(
            "pre-check: not run on this machine (`alibridge pre-check --site-type CN|INTL`)"
        );
    }
    for c in checks {
        let ago = now_secs().saturating_sub(c.at);
        crate::logging::outln!(
            "pre-check: {} site, application {}: {} ({} ago)",
            c.site,
            c.client_id,
            c.outcome.replace('_', " "),
            human_duration(now_secs() + ago)
        );
    }
    // No live session here: the configured mode; the bridge logs the eras it finds.
    let protocol = env(crate::env::ALIBRIDGE_PROTOCOL);
    crate::logging::outln!(
        "protocol era toward servers: {} ({}); a running bridge logs which era each side speaks",
        protocol.as_deref().unwrap_or("auto"),
        if protocol.is_some() {
            "ALIBRIDGE_PROTOCOL"
        } else {
            "default; --protocol or ALIBRIDGE_PROTOCOL"
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// Who a JWT access token is for (`email`, `preferred_username`, `name` or `sub`), without
/// verifying it: this is display only.
fn identity_of(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    ["email", "preferred_username", "name", "sub"]
        .iter()
        .find_map(|k| claims.get(*k).and_then(Value::as_str).map(str::to_string))
}

/// "3 h 12 min" until Unix time `at`.
pub fn human_duration(at: u64) -> String {
    let s = at.saturating_sub(now_secs());
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=172_799 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} days", s / 86_400),
    }
}
