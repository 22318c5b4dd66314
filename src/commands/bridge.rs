//! `alibridge [URL]`: the stdio bridge itself. Without a URL, the AccessKey account's Core
//! endpoint is found first, and the upstream follows it when the identity changes.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use tokio::io::BufReader;
use tracing::debug;

use crate::auth::access_key;
use crate::auth::{AuthError, AuthFailure, Credential};
use crate::cli::BridgeArgs;
use crate::config::{BridgeConfig, ConfigError};
use crate::error::UsageError;
use crate::net::display_url;
use crate::relay::{self, Limits, QuitReason, ToolPolicy};
use crate::upstream::http::HttpClient;
use crate::upstream::{Deliver, TransportMode, Upstream};
use crate::{auth, shutdown};

/// Resolves the configuration, then relays until the client goes away or a signal arrives.
pub async fn run(args: BridgeArgs) -> anyhow::Result<ExitCode> {
    let otlp = args.front.telemetry.otlp_endpoint.as_deref();
    let _telemetry = crate::telemetry::start(otlp, crate::telemetry::Role::Bridge);
    let mut cfg = args
        .resolve(|k| std::env::var(k).ok())
        .map_err(UsageError::from)?;
    let (selection, core) = select(&cfg).await?;
    if let Some(url) = &selection.endpoint {
        cfg.transport = args
            .transport
            .unwrap_or_else(|| TransportMode::default_for(url));
        cfg.url = url.clone();
    }
    crate::telemetry::set_server(&cfg.url);
    // The one line that tells the user which credential is used and why (never a secret).
    crate::logging::notice(format_args!("auth: {}", selection.reason));
    if let Some(w) = &selection.warning {
        crate::logging::notice(format_args!("warning: {w}"));
    }
    super::set_up_safety(&mut cfg.policy, cfg.auth.safety.as_ref(), &selection).await?;
    let credential = selection.credential;
    let tool_policy = tool_policy(&cfg, credential.clone())?;
    let header_names: Vec<&str> = cfg.headers.iter().map(|(n, _)| n.as_str()).collect();
    debug!(url = %display_url(&cfg.url), transport = ?cfg.transport, protocol = ?cfg.protocol, auth = credential.kind().name(),
           headers = ?header_names, "starting");
    let http = HttpClient::new(cfg.connect_timeout, &cfg.headers, credential.clone())
        .context("could not set up the HTTP client (TLS)")?
        .with_max_message_size(cfg.max_message_size);
    // While the client is still starting: mint (or load) the token now (issue 14), and if the
    // mint goes to the network, connect to the server meanwhile (issue 21).
    let (preconnect, url) = (http.clone(), cfg.url.clone());
    credential.on_first_network(Box::new(move || {
        tokio::spawn(async move { preconnect.preconnect(&url).await });
    }));
    tokio::spawn(async move { credential.warm_up().await });
    let limits = Limits {
        request_timeout: cfg.request_timeout,
        shutdown_grace: cfg.shutdown_grace,
        max_message_size: cfg.max_message_size,
        max_in_flight: cfg.max_in_flight,
        keep_alive: cfg.keep_alive,
    };
    let stdin = BufReader::with_capacity(64 * 1024, crate::stdio::stdin());
    let (url, mode, protocol) = (cfg.url.clone(), cfg.transport, cfg.protocol);
    let state_home = cfg.auth.oauth.home.clone();
    let connect = move |outbox: Arc<relay::Outbox>| {
        let up = Upstream::new(url, mode, protocol, http, outbox as Arc<dyn Deliver>)
            .with_era_cache(&state_home);
        match core {
            Some(core) => up.following(core),
            None => up,
        }
    };
    let reason = relay::run(
        stdin,
        crate::stdio::stdout(),
        connect,
        limits,
        tool_policy,
        shutdown::signal(),
    )
    .await;
    match reason {
        QuitReason::InputError(e) => Err(e).context("reading stdin failed"),
        reason => {
            debug!(?reason, "bridge stopped");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The credential the bridge's configuration picks, and for a URL-less start the account's
/// Core endpoint found with it ([`auth::Selection::endpoint`] names it). `doctor` calls this
/// too, so it reports the choice the bridge makes.
pub(crate) async fn select(
    cfg: &BridgeConfig,
) -> anyhow::Result<(
    auth::Selection,
    Option<Arc<access_key::discovery::CoreEndpoint>>,
)> {
    if cfg.discover_core {
        let (selection, core) = access_key::select_core(&cfg.auth)
            .await
            .map_err(core_error)?;
        return Ok((selection, Some(core)));
    }
    let has_auth_header = cfg
        .headers
        .iter()
        .any(|(n, _)| n == reqwest::header::AUTHORIZATION);
    let selection = auth::select(&cfg.auth, &cfg.url, has_auth_header).map_err(UsageError::from)?;
    Ok((selection, None))
}

/// A URL-less start that found no keys is a usage error (exit 2) whose message says what to
/// pass; a refused or failed discovery is a runtime error (exit 1).
fn core_error(e: AuthError) -> anyhow::Error {
    match e.failure() {
        AuthFailure::NotFound => UsageError::from(ConfigError::NoUrl(format!(
            "finding the account's Core endpoint needs AccessKeys, and none were found ({e})"
        )))
        .into(),
        AuthFailure::Config => UsageError::from(e).into(),
        _ => anyhow::Error::new(e),
    }
}

/// The relay's tool policy, when any policy flag or `--audit-log` is set.
fn tool_policy(
    cfg: &BridgeConfig,
    credential: Arc<dyn Credential>,
) -> anyhow::Result<Option<Arc<ToolPolicy>>> {
    let parts = super::policy_parts(&cfg.policy, cfg.audit.as_ref(), &cfg.url, credential)?;
    let pins = cfg.policy.pin_tools.then(|| {
        (
            crate::policy::pins::PinStore::new(&cfg.auth.oauth.home),
            display_url(&cfg.url),
        )
    });
    Ok(parts.map(|p| ToolPolicy::new(p.policy, p.audit, p.upstream, p.identity, pins)))
}
