//! `alibridge proxy`: resolve the flags, pick the credential, bind, print what the proxy
//! serves (address, access rules, the account's servers), then serve until SIGTERM/SIGINT.
//!
//! stdout carries the start-up report (the last line, `listening on http://…`, means requests
//! are being served); stderr carries the credential line, warnings and logs.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::cli::ProxyArgs;
use crate::error::UsageError;
use crate::net::display_url;
use crate::proxy::config::ProxyConfig;
use crate::proxy::guard::{authority, Guard};
use crate::proxy::rules::{Entry, ServerIndex};
use crate::proxy::servers::{self, Listing};
use crate::proxy::tool_policy::ProxyPolicy;
use crate::proxy::{self, Proxy, Stats};
use crate::upstream::http::HttpClient;
use crate::{auth, shutdown};

/// Runs the proxy; exit 0 after a signal, 2 for a bad configuration, 1 when it cannot listen.
pub async fn run(args: ProxyArgs) -> anyhow::Result<ExitCode> {
    let otlp = args.front.telemetry.otlp_endpoint.as_deref();
    let _telemetry = crate::telemetry::start(otlp, crate::telemetry::Role::Proxy);
    let mut cfg = args
        .resolve(|k| std::env::var(k).ok())
        .map_err(UsageError::from)?;
    if let Some(note) = &cfg.upstream_note {
        crate::logging::notice(format_args!("note: {note}"));
    }
    let selection = auth::select(&cfg.auth, &cfg.upstream, false).map_err(UsageError::from)?;
    crate::logging::notice(format_args!("auth: {}", selection.reason));
    if let Some(w) = &selection.warning {
        crate::logging::notice(format_args!("warning: {w}"));
    }
    super::set_up_safety(&mut cfg.policy, cfg.auth.safety.as_ref(), &selection).await?;
    let credential = selection.credential;
    let policy = tool_policy(&cfg, credential.clone())?;
    let http = HttpClient::new(cfg.connect_timeout, &[], credential.clone())
        .context("could not set up the HTTP client (TLS)")?;

    let listener = TcpListener::bind((cfg.host.as_str(), cfg.port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}: pick another --port, or check --host",
                authority(&cfg.host, cfg.port)
            )
        })?;
    let bound = listener
        .local_addr()
        .context("cannot read the bound address")?;
    if !bound.ip().is_loopback() {
        crate::logging::notice(format_args!(
            "warning: {}",
            exposure_warning(&cfg.host, bound.port(), cfg.token.is_some())
        ));
    }
    let guard = Guard::new(&cfg.host, bound, &cfg.allowed_hosts);
    let base = format!(
        "http://{}",
        if bound.ip().is_unspecified() {
            authority("127.0.0.1", bound.port())
        } else {
            authority(&cfg.host, bound.port())
        }
    );

    // Listed before serving, so name rules that need the list apply from the first request. A
    // signal meanwhile ends the run as it would later.
    let stop = shutdown::signal();
    tokio::pin!(stop);
    let listing = if cfg.list_servers {
        tokio::select! {
            l = servers::list(&cfg.upstream, cfg.auth.profile.as_deref()) => l,
            _ = &mut stop => return Ok(ExitCode::SUCCESS),
        }
    } else {
        Listing::Skipped(
            "skipped for --auth none and for upstreams that are not an OpenAPI MCP host \
             (the call is signed with AccessKeys); pass --auth ak to list"
                .into(),
        )
    };
    let index = match &listing {
        Listing::Servers(s) => servers::index(s),
        Listing::Skipped(_) => ServerIndex::default(),
    };

    let mut report = format!(
        "alibridge proxy {}\nupstream: {}\n{}",
        env!("CARGO_PKG_VERSION"),
        display_url(&cfg.upstream),
        cfg.rules
    );
    match &listing {
        Listing::Servers(s) => report.push_str(&servers::render(s, &cfg.rules, &index, &base)),
        Listing::Skipped(why) => {
            report.push_str(&format!("available servers: not listed ({why})\n"));
            let mut entries = cfg.rules.allowed.iter().chain(&cfg.rules.blocked);
            if entries.any(|e| matches!(e, Entry::Server(_))) {
                report.push_str(
                    "  server names and ids in the rules match only …/<name>/id/<id>/… in request \
                     paths; use path prefixes for other servers\n",
                );
            }
        }
    }
    if cfg.token.is_some() {
        report.push_str("clients must send Authorization: Bearer <the --proxy-token value>\n");
    }
    report.push_str(&format!(
        "limits: {} connections, {} per request body\n",
        cfg.max_connections,
        crate::jsonrpc::human_size(cfg.max_body as u64)
    ));
    report.push_str(&format!("listening on {base}\n"));
    print_flushed(&report);

    let proxy = Arc::new(Proxy {
        upstream: cfg.upstream.clone(),
        http,
        credential,
        rules: cfg.rules.clone(),
        index,
        guard,
        token: cfg.token.clone(),
        max_body: cfg.max_body,
        stats: Stats::default(),
        started: Instant::now(),
        policy,
    });
    proxy::serve(
        listener,
        proxy,
        stop,
        cfg.shutdown_grace,
        cfg.max_connections,
    )
    .await;
    print_flushed("alibridge proxy stopped\n");
    Ok(ExitCode::SUCCESS)
}

/// The proxy's tool policy, when any policy flag or `--audit-log` is set.
fn tool_policy(
    cfg: &ProxyConfig,
    credential: Arc<dyn crate::auth::Credential>,
) -> anyhow::Result<Option<Arc<ProxyPolicy>>> {
    let parts = super::policy_parts(&cfg.policy, cfg.audit.as_ref(), &cfg.upstream, credential)?;
    let pins = cfg.policy.pin_tools.then(|| {
        crate::proxy::tool_policy::ProxyPins::new(
            crate::policy::pins::PinStore::new(&cfg.auth.oauth.home),
            cfg.upstream.clone(),
        )
    });
    Ok(parts.map(|p| {
        Arc::new(ProxyPolicy::new(p.policy, p.audit, p.upstream, p.identity).with_pins(pins))
    }))
}

/// What binding to a non-loopback address means, said plainly.
pub fn exposure_warning(host: &str, port: u16, has_token: bool) -> String {
    let who = if has_token {
        "every local user and network peer that can reach port {port} and knows the proxy \
         token"
    } else {
        "every local user and network peer that can reach port {port}"
    }
    .replace("{port}", &port.to_string());
    let token = if has_token { "" } else { " set --proxy-token," };
    format!(
        "--host {host} is not a loopback address: {who} gets this proxy's cloud identity and \
         can call every server it allows (over plain http). Limit who can connect (firewall, \
         security group),{token} narrow --allowed-servers, and give the identity the least \
         privilege it needs"
    )
}

/// Writes to stdout and flushes (a service manager or a test reads it line by line); a closed
/// stdout is not an error for a server.
fn print_flushed(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}
