//! `alibridge doctor [URL] [-- BRIDGE FLAGS]`: explains a failing set-up in one run. Checks are
//! made from the outside, the way a client would see them: the network path (DNS, TCP, TLS,
//! with the proxy in effect), the clock against the server's `Date` header, then the real
//! bridge binary is started with the entry's arguments and asked `initialize` and
//! `tools/list` (so the credential it picks, token minting and the server are checked by the
//! very code a client runs). Without a URL, every entry `list` finds is checked with its own
//! binary and arguments; an entry without a URL (and `--core`) is the URL-less form, whose
//! endpoint the bridge reports once it has found it. After the bridge, the credential's own
//! state: the stored OAuth sign-in (issuer, expiry) or the recorded `pre-check` verdict.
//! Layout: `network` (DNS, TCP, TLS, clock), `credential` (the credential the entry's flags
//! pick, chosen in this process by the bridge's own code, and its sign-in or pre-check state),
//! `probe` (the bridge binary itself).
//! Decisions are made on data (the selection's kind and site, the answer's error kind), never
//! on the text of a message. Details come from the bridge's own messages, which never hold a
//! secret; proxy URLs are shown without user info.

mod credential;
mod network;
mod probe;
mod telemetry;

use std::path::Path;
use std::process::ExitCode;

use crate::cli::exit::Exit;
use std::time::Duration;

use serde_json::json;
use url::Url;

use self::credential::{choose, credential_state, Choice};
use self::network::check_network;
use self::probe::{probe, Probed};
use crate::cli::DoctorArgs;
use crate::clients::{self, Found, Places};
use crate::config::ConfigError;
use crate::error::UsageError;
use crate::net::{display_url, parse_endpoint};

/// Signatures (and Alibaba Cloud's token exchange) fail beyond this much clock skew.
const MAX_SKEW: Duration = Duration::from_secs(15 * 60);
/// How long each network step and the whole MCP probe may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes of the probe's stderr kept (for the message of a bridge that stops at start).
const STDERR_LIMIT: u64 = 64 << 10;

struct Check {
    target: String,
    name: &'static str,
    ok: bool,
    detail: String,
    fix: Option<String>,
}

struct Report {
    json: bool,
    checks: Vec<Check>,
    target: String,
}

impl Report {
    fn add(
        &mut self,
        name: &'static str,
        ok: bool,
        detail: impl Into<String>,
        fix: Option<String>,
    ) {
        let c = Check {
            target: self.target.clone(),
            name,
            ok,
            detail: detail.into(),
            fix,
        };
        if self.json {
            let line = json!({"target": c.target, "check": c.name, "ok": c.ok, "detail": c.detail, "fix": c.fix});
            crate::logging::outln!("{line}");
        } else {
            let mark = if c.ok { "✓" } else { "✗" };
            match &c.fix {
                Some(fix) if !c.ok => {
                    crate::logging::outln!("{mark} {}: {}\n    fix: {fix}", c.name, c.detail)
                }
                _ => crate::logging::outln!("{mark} {}: {}", c.name, c.detail),
            }
        }
        self.checks.push(c);
    }

    fn ok(&mut self, name: &'static str, detail: impl Into<String>) {
        self.add(name, true, detail, None);
    }

    fn fail(&mut self, name: &'static str, detail: impl Into<String>, fix: impl Into<String>) {
        self.add(name, false, detail, Some(fix.into()));
    }

    fn section(&mut self, target: String) {
        if !self.json {
            crate::logging::outln!("── {target}");
        }
        self.target = target;
    }
}

pub async fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let mut r = Report {
        json: args.json,
        checks: Vec::new(),
        target: String::new(),
    };
    let exe = std::env::current_exe().and_then(|p| p.canonicalize()).ok();
    r.ok(
        "version",
        format!(
            "alibridge {} ({})",
            env!("CARGO_PKG_VERSION"),
            exe.as_deref()
                .map_or("path unknown".into(), |p| p.display().to_string())
        ),
    );
    let found = match Places::from_env() {
        Ok(at) => {
            let (found, skipped) = clients::find_all(&at);
            for e in skipped {
                r.fail("client config", e.to_string(), "fix or move the file");
            }
            found
        }
        Err(e) => {
            r.fail("client config", e.to_string(), "set HOME");
            Vec::new()
        }
    };
    telemetry::check_collector(&mut r, &args.bridge_flags).await;
    let command = exe.unwrap_or_else(|| "alibridge".into());
    let core = args.core || (args.url.is_none() && !args.bridge_flags.is_empty());
    match args.url {
        Some(raw) => {
            let allow_http = args.bridge_flags.iter().any(|f| f == "--allow-http");
            let url = parse_endpoint(&raw, allow_http)
                .map_err(|e| UsageError::from(ConfigError::from(e)))?;
            r.section(display_url(&url));
            let mut bridge_args = vec![url.to_string()];
            bridge_args.extend(args.bridge_flags.iter().cloned());
            check_endpoint(&mut r, &url, &command, &bridge_args).await;
            let mine: Vec<&Found> = found
                .iter()
                .filter(|f| clients::entry_url(&f.entry).is_some_and(|u| same_url(&u, &url)))
                .collect();
            if mine.is_empty() {
                r.ok(
                    "client configs",
                    "no client entry points at this URL (add one with `alibridge add <client> <URL>`)",
                );
            }
            for f in mine {
                check_binary(&mut r, f);
            }
        }
        None if core => {
            r.section("the account's Core endpoint (no URL)".into());
            check_core(&mut r, &command, &args.bridge_flags).await;
            let mine: Vec<&Found> = found
                .iter()
                .filter(|f| clients::entry_url(&f.entry).is_none())
                .collect();
            if mine.is_empty() {
                r.ok(
                    "client configs",
                    "no client entry uses the URL-less form (add one with `alibridge add <client>`)",
                );
            }
            for f in mine {
                check_binary(&mut r, f);
            }
        }
        None if found.is_empty() => r.fail(
            "client configs",
            "no alibridge entries found in any client's configuration",
            "pass a URL (`alibridge doctor <URL>`), check the URL-less form with `alibridge doctor --core`, \
             or add an entry with `alibridge add <client> [URL]`",
        ),
        None => {
            for f in &found {
                r.section(format!("{} ({}) {}", f.client, f.scope, f.name));
                if !check_binary(&mut r, f) {
                    continue;
                }
                let args = f.args();
                match clients::entry_url(&f.entry).map(|u| Url::parse(&u)) {
                    Some(Ok(url)) => {
                        check_endpoint(&mut r, &url, Path::new(f.command()), &args).await
                    }
                    Some(Err(e)) => r.fail(
                        "entry",
                        format!("the entry's URL is not valid: {e}"),
                        format!("run `alibridge add {} <URL> --force`", f.client),
                    ),
                    None => check_core(&mut r, Path::new(f.command()), &args).await,
                }
            }
        }
    }
    Ok(if r.checks.iter().all(|c| c.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(Exit::Failure)
    })
}

fn same_url(a: &str, b: &Url) -> bool {
    Url::parse(a)
        .is_ok_and(|a| a.as_str().trim_end_matches('/') == b.as_str().trim_end_matches('/'))
}

/// Whether the entry's binary still exists (a moved or upgraded binary breaks every client).
fn check_binary(r: &mut Report, f: &Found) -> bool {
    let command = f.command();
    let exists = Path::new(command).is_file();
    if exists {
        r.ok(
            "client config",
            format!(
                "{} ({}) {} in {}: {command}",
                f.client,
                f.scope,
                f.name,
                f.file.display()
            ),
        );
    } else {
        r.fail(
            "client config",
            format!(
                "{} ({}) {} in {} runs {command}, which does not exist",
                f.client,
                f.scope,
                f.name,
                f.file.display()
            ),
            format!(
                "run `alibridge add {} <URL> --name {} --scope {} --force` with the binary you want",
                f.client, f.name, f.scope
            ),
        );
    }
    exists
}

async fn check_endpoint(r: &mut Report, url: &Url, command: &Path, args: &[String]) {
    if !check_network(r, url).await {
        return;
    }
    let Some(chosen) = chosen(r, args).await else {
        return;
    };
    let reason = chosen.as_ref().map(|c| c.selection.reason.as_str());
    let probed = probe(r, command, args, reason).await;
    if let Some(c) = &chosen {
        report_safety(r, c, &probed);
        credential_state(r, Some(url), &c.selection, &probed);
    }
}

/// The URL-less form: the bridge's own code finds the endpoint, the bridge is probed, then the
/// network path to that endpoint is checked like any other.
async fn check_core(r: &mut Report, command: &Path, args: &[String]) {
    let Some(chosen) = chosen(r, args).await else {
        return;
    };
    let reason = chosen.as_ref().map(|c| c.selection.reason.as_str());
    let probed = probe(r, command, args, reason).await;
    let Some(c) = chosen else {
        return;
    };
    report_safety(r, &c, &probed);
    let url = c.selection.endpoint.clone();
    credential_state(r, url.as_ref(), &c.selection, &probed);
    if let Some(url) = url {
        r.ok(
            "endpoint",
            format!("the account's Core endpoint is {}", display_url(&url)),
        );
        check_network(r, &url).await;
    }
}

/// The credential the entry's flags pick; `None` (after a failed check) when the bridge would
/// not start, `Some(None)` when this binary cannot read the flags.
async fn chosen(r: &mut Report, args: &[String]) -> Option<Option<Box<credential::Chosen>>> {
    match choose(args).await {
        Choice::Picked(c) => Some(Some(c)),
        Choice::Unreadable => Some(None),
        Choice::Failed(e) => {
            r.fail(
                "credential",
                crate::error::one_line(&e),
                "see the message; `alibridge status` shows what is configured",
            );
            None
        }
    }
}

/// Which limits the server enforces and which only the bridge does, once the bridge started.
fn report_safety(r: &mut Report, chosen: &credential::Chosen, probed: &Probed) {
    if let (true, Some(line)) = (probed.initialized, &chosen.safety) {
        r.ok("safety", line.clone());
    }
}
