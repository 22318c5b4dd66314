//! `alibridge <URL>`: the stdio bridge itself.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use tokio::io::BufReader;
use tracing::debug;

use crate::cli::BridgeArgs;
use crate::error::UsageError;
use crate::net::display_url;
use crate::relay::{self, Limits, QuitReason};
use crate::upstream::http::HttpClient;
use crate::upstream::{Deliver, Upstream};
use crate::{auth, shutdown};

/// Resolves the configuration, then relays until the client goes away or a signal arrives.
pub async fn run(args: BridgeArgs) -> anyhow::Result<ExitCode> {
    let cfg = args
        .resolve(|k| std::env::var(k).ok())
        .map_err(UsageError::from)?;
    let has_auth_header = cfg
        .headers
        .iter()
        .any(|(n, _)| n == reqwest::header::AUTHORIZATION);
    let selection = auth::select(&cfg.auth, &cfg.url, has_auth_header).map_err(UsageError::from)?;
    // The one line that tells the user which credential is used and why (never a secret).
    crate::logging::notice(format_args!("auth: {}", selection.reason));
    if let Some(w) = &selection.warning {
        crate::logging::notice(format_args!("warning: {w}"));
    }
    let credential = selection.credential;
    let header_names: Vec<&str> = cfg.headers.iter().map(|(n, _)| n.as_str()).collect();
    debug!(url = %display_url(&cfg.url), transport = ?cfg.transport, protocol = ?cfg.protocol, auth = credential.name(),
           headers = ?header_names, "starting");
    let http = HttpClient::new(cfg.connect_timeout, &cfg.headers, credential)
        .context("could not set up the HTTP client (TLS)")?
        .with_max_message_size(cfg.max_message_size);
    let limits = Limits {
        request_timeout: cfg.request_timeout,
        shutdown_grace: cfg.shutdown_grace,
        max_message_size: cfg.max_message_size,
        max_in_flight: cfg.max_in_flight,
    };
    let stdin = BufReader::with_capacity(64 * 1024, tokio::io::stdin());
    let (url, mode, protocol) = (cfg.url.clone(), cfg.transport, cfg.protocol);
    let connect = move |outbox: Arc<relay::Outbox>| {
        Upstream::new(url, mode, protocol, http, outbox as Arc<dyn Deliver>)
    };
    let reason = relay::run(
        stdin,
        tokio::io::stdout(),
        connect,
        limits,
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
