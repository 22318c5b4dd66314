//! `alibridge login <URL>`: sign in ahead of time, so the bridge starts with tokens (no browser
//! when a desktop client launches it). With `--no-browser` it prints the URL and also accepts
//! the address the browser ended on, or the bare code, pasted on the terminal: sign-in over SSH.

use std::process::ExitCode;

use anyhow::Context;

use crate::auth::oauth::discovery::{parse_challenge, Challenge};
use crate::auth::oauth::OAuthCredential;
use crate::cli::LoginArgs;
use crate::config::ConfigError;
use crate::error::UsageError;
use crate::net::parse_endpoint;

pub async fn run(args: LoginArgs) -> anyhow::Result<ExitCode> {
    let url = parse_endpoint(&args.url, args.http.allow_http)
        .map_err(|e| UsageError::from(ConfigError::from(e)))?;
    let cfg = args
        .oauth
        .resolve(&url, |k| std::env::var(k).ok())
        .map_err(UsageError::from)?;
    let store_dir = cfg.home.join("oauth");
    let no_browser = cfg.no_browser;
    let cred = OAuthCredential::new(cfg).map_err(UsageError::from)?;
    let challenge = probe(&url).await;
    let rec = cred
        .sign_in(challenge.as_ref(), no_browser)
        .await
        .context("sign-in failed")?;
    let expiry = match rec.expires_at {
        Some(e) => format!(
            "the access token expires in {}",
            super::status::human_duration(e)
        ),
        None => "the access token has no stated expiry".into(),
    };
    let refresh = if rec.secrets.refresh_token.is_some() {
        ", renewable"
    } else {
        ", not renewable"
    };
    crate::logging::outln!(
        "signed in to {} (authorization server {}); {expiry}{refresh}; stored in {} ({})",
        rec.server,
        rec.issuer,
        if rec.store == "keyring" {
            "the OS keychain"
        } else {
            "a file"
        },
        store_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Asks the server for its challenge (an unauthenticated request answered 401 carries
/// `WWW-Authenticate`); `None` when it does not say, and discovery uses the well-known URLs.
async fn probe(url: &reqwest::Url) -> Option<Challenge> {
    let http = crate::net::client_builder(std::time::Duration::from_secs(10))
        .build()
        .ok()?;
    let body = r#"{"jsonrpc":"2.0","id":"alibridge-login-probe","method":"ping"}"#;
    let resp = http
        .post(url.clone())
        .header(
            reqwest::header::ACCEPT,
            "application/json, text/event-stream",
        )
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .timeout(std::time::Duration::from_secs(15))
        .send()
        .await
        .ok()?;
    let header = resp
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)?
        .to_str()
        .ok()?;
    Some(parse_challenge(header))
}
