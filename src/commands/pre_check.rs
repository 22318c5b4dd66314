//! `alibridge pre-check --site-type CN|INTL`: the one-time check that the OpenAPI MCP OAuth
//! application is authorized for the signed-in account, which AccessKey credentials need
//! before GenerateAccessToken will mint tokens. Works on any machine with a browser.
//!
//! Exit codes: 0 authorized; 1 denied, not installed or another authorization error;
//! 2 bad command line; 3 no answer before `--timeout`.

use std::process::ExitCode;

use crate::cli::exit::Exit;

use anyhow::Context;
use reqwest::Url;

use crate::auth::access_key::pre_check_record;
use crate::auth::access_key::site::{Site, CUSTOM_APP_SCOPE, OPENAPI_SCOPE};
use crate::auth::loopback::{Callback, Listener};
use crate::auth::{browser, pkce};
use crate::cli::PreCheckArgs;
use crate::logging::notice;

/// Runs the check and prints a verdict on stdout (progress goes to stderr).
pub async fn run(args: PreCheckArgs) -> anyhow::Result<ExitCode> {
    let site = args.site.site_type.expect("clap requires --site-type");
    let client_id = args
        .client
        .client_id
        .clone()
        .unwrap_or_else(|| site.client_id().to_string());
    let scope = if args.client.client_id.is_some() {
        CUSTOM_APP_SCOPE
    } else {
        OPENAPI_SCOPE
    };
    let listener = Listener::bind(args.browser.callback_port.unwrap_or(0)).await.with_context(|| {
        format!(
            "cannot listen on 127.0.0.1:{} for the browser's redirect; pick another --callback-port",
            args.browser.callback_port.unwrap_or(0)
        )
    })?;
    let state = pkce::state();
    let pkce = pkce::Pkce::new();
    let url = authorize_url(
        &authorize_endpoint(site, args.authorize_url.as_deref())?,
        &client_id,
        scope,
        &listener.redirect_uri(),
        &state,
        &pkce.challenge,
    );

    let wait = args.browser.auth_timeout.as_secs_f64();
    notice(format_args!(
        "checking that application {client_id} is authorized for your {} account.",
        site.flag_value()
    ));
    notice(format_args!("open this URL in a browser signed in to Alibaba Cloud (as the RAM user that owns the AccessKey):\n\n  {url}\n"));
    if !args.browser.no_browser {
        match browser::open(url.as_str()) {
            Some(how) => notice(format_args!("opened with {how}; waiting up to {wait} s")),
            None => notice(format_args!(
                "could not open a browser; open the URL above yourself; waiting up to {wait} s"
            )),
        }
    }
    let timeout = args.browser.auth_timeout;
    let outcome = match tokio::time::timeout(timeout, listener.wait(&state, |_| Ok(()))).await {
        Err(_) => {
            crate::logging::outln!("no answer: the browser did not come back within {wait} s. Run `alibridge pre-check --site-type {}` again and click Authorize.", site.flag_value());
            return Ok(ExitCode::from(Exit::Timeout));
        }
        Ok(r) => r.context("the callback listener failed")?,
    };
    let (code, recorded) = verdict(outcome, site, &client_id);
    // Remembered for `doctor`; the verdict above is what counts.
    if let Ok(home) = super::state_home() {
        if let Err(e) = pre_check_record::save(&home, site.flag_value(), &client_id, recorded) {
            tracing::debug!(error = %e, "could not record the pre-check verdict");
        }
    }
    Ok(code)
}

/// Prints what the callback means and picks the exit code and the recorded outcome.
fn verdict(cb: Callback, site: Site, client_id: &str) -> (ExitCode, &'static str) {
    let site_flag = site.flag_value();
    match cb {
        Callback::Code { .. } => {
            crate::logging::outln!(
                "authorized: application {client_id} is authorized for this account. AccessKey \
                 credentials (--auth ak) can now mint OpenAPI MCP tokens; the RAM identity also \
                 needs the AliyunOpenAPIMCPServerStaticCredentialAccess policy."
            );
            (ExitCode::SUCCESS, "authorized")
        }
        Callback::Refused(why) => {
            crate::logging::outln!("failed: {why}. Run the check again.");
            (ExitCode::from(Exit::Failure), "failed")
        }
        Callback::Error {
            error, description, ..
        } => {
            let detail = description.map(|d| format!(" ({d})")).unwrap_or_default();
            let recorded = match error.as_str() {
                "access_denied" => "denied",
                "invalid_client" | "unauthorized_client" | "unsupported_response_type" => {
                    "not_installed"
                }
                _ => "failed",
            };
            match error.as_str() {
                "access_denied" => crate::logging::outln!(
                    "denied: the authorization was declined{detail}. Run `alibridge pre-check --site-type {site_flag}` again and click Authorize; \
                     if you cannot, ask an administrator to grant your RAM user access to the OpenAPI MCP Server."
                ),
                "invalid_client" | "unauthorized_client" | "unsupported_response_type" => crate::logging::outln!(
                    "not installed: application {client_id} is not available to this account{detail}. \
                     Check --site-type (now {site_flag}: use INTL for alibabacloud.com accounts); for a custom --client-id, install the \
                     application in the RAM console (OAuth Applications) first. Console: {}", site.console_url()
                ),
                other => crate::logging::outln!("failed: the sign-in page answered {other}{detail}. Check --site-type and --client-id, then run the check again."),
            }
            (ExitCode::from(Exit::Failure), recorded)
        }
    }
}

/// The authorization endpoint; the hidden `--authorize-url` (env `ALIBRIDGE_AUTHORIZE_URL`)
/// overrides it (private deployments, and the tests, which cannot reach Alibaba Cloud's
/// sign-in page).
fn authorize_endpoint(site: Site, custom: Option<&str>) -> anyhow::Result<Url> {
    let raw = custom.unwrap_or(site.authorize_url());
    Url::parse(raw).with_context(|| format!("ALIBRIDGE_AUTHORIZE_URL {raw:?} is not a URL"))
}

fn authorize_url(
    base: &Url,
    client_id: &str,
    scope: &str,
    redirect: &str,
    state: &str,
    challenge: &str,
) -> Url {
    let mut url = base.clone();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect)
        .append_pair("scope", scope)
        .append_pair("state", state)
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256");
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorize_url_carries_pkce_and_state() {
        let u = authorize_url(
            &Url::parse(Site::Intl.authorize_url()).unwrap(),
            "4195410055503316452",
            OPENAPI_SCOPE,
            "http://127.0.0.1:5/oauth/callback",
            "st",
            "ch",
        );
        let q: std::collections::HashMap<_, _> = u.query_pairs().into_owned().collect();
        assert_eq!(u.host_str(), Some("signin.alibabacloud.com"));
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["code_challenge"], "ch");
        assert_eq!(q["state"], "st");
        assert_eq!(q["scope"], "/internal/acs/openapi");
        assert_eq!(q["redirect_uri"], "http://127.0.0.1:5/oauth/callback");
    }
}
