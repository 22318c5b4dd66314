//! `alibridge doctor [URL] [-- BRIDGE FLAGS]`: explains a failing set-up in one run. Checks are
//! made from the outside, the way a client would see them: the network path (DNS, TCP, TLS,
//! with the proxy in effect), the clock against the server's `Date` header, then the real
//! bridge binary is started with the entry's arguments and asked `initialize` and
//! `tools/list` (so the credential it picks, token minting and the server are checked by the
//! very code a client runs). Without a URL, every entry `list` finds is checked with its own
//! binary and arguments; an entry without a URL (and `--core`) is the URL-less form, whose
//! endpoint the bridge reports once it has found it. After the bridge, the credential's own
//! state: the stored OAuth sign-in (issuer, expiry) or the recorded `pre-check` verdict.
//! Details come from the bridge's own messages, which never hold a secret; proxy URLs are
//! shown without user info.

use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use url::Url;

use crate::auth::access_key::pre_check_record;
use crate::auth::access_key::site::Site;
use crate::auth::oauth::store::{StoreKind, TokenStore};
use crate::auth::oauth::tokens::now_secs;
use crate::cli::DoctorArgs;
use crate::clients::{self, Found, Places};
use crate::config::ConfigError;
use crate::error::UsageError;
use crate::net::{client_builder, describe, display_url, parse_endpoint};

/// Signatures (and Alibaba Cloud's token exchange) fail beyond this much clock skew.
const MAX_SKEW: Duration = Duration::from_secs(15 * 60);
/// How long each network step and the whole MCP probe may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes of the probe's stderr kept (for the credential line).
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
            println!("{line}");
        } else {
            let mark = if c.ok { "✓" } else { "✗" };
            match &c.fix {
                Some(fix) if !c.ok => println!("{mark} {}: {}\n    fix: {fix}", c.name, c.detail),
                _ => println!("{mark} {}: {}", c.name, c.detail),
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
            println!("── {target}");
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
        ExitCode::from(1)
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
    let probed = probe(r, command, args).await;
    credential_state(r, Some(url), &probed);
}

/// DNS, TCP and TLS to `url` (through the proxy in effect), and the server's clock. `false`
/// when a step failed (later steps would only repeat it).
async fn check_network(r: &mut Report, url: &Url) -> bool {
    let Some(host) = url.host_str().map(str::to_string) else {
        r.fail(
            "endpoint",
            "the URL has no host",
            "pass a full https:// URL",
        );
        return false;
    };
    let port = url.port_or_known_default().unwrap_or(443);
    // The first hop is the proxy when one applies (reqwest honours the same variables).
    let proxy = proxy_for(url);
    let (hop_host, hop_port, via) = match &proxy {
        Some(p) => (
            p.host_str().unwrap_or_default().to_string(),
            p.port_or_known_default().unwrap_or(80),
            format!(" via proxy {}", display_url(p)),
        ),
        None => (host.clone(), port, String::new()),
    };
    let hop = format!("{hop_host}:{hop_port}");
    let addrs = match tokio::time::timeout(STEP_TIMEOUT, tokio::net::lookup_host(hop.clone())).await
    {
        Ok(Ok(a)) => a.collect::<Vec<_>>(),
        Ok(Err(e)) => {
            r.fail(
                "DNS",
                format!("{hop_host}{via}: {e}"),
                "check the host name, your DNS, or HTTPS_PROXY",
            );
            return false;
        }
        Err(_) => {
            r.fail(
                "DNS",
                format!("{hop_host}{via}: no answer in {STEP_TIMEOUT:?}"),
                "check your DNS",
            );
            return false;
        }
    };
    let shown: Vec<String> = addrs.iter().take(3).map(|a| a.ip().to_string()).collect();
    r.ok("DNS", format!("{hop_host}{via} → {}", shown.join(", ")));
    match tokio::time::timeout(STEP_TIMEOUT, tokio::net::TcpStream::connect(&addrs[..])).await {
        Ok(Ok(_)) => r.ok("TCP", format!("connected to {hop}")),
        Ok(Err(e)) => {
            r.fail(
                "TCP",
                format!("{hop}: {e}"),
                "is the server up? check firewalls and HTTPS_PROXY/NO_PROXY",
            );
            return false;
        }
        Err(_) => {
            r.fail(
                "TCP",
                format!("{hop}: no connection in {STEP_TIMEOUT:?}"),
                "check firewalls and HTTPS_PROXY/NO_PROXY",
            );
            return false;
        }
    }
    // One plain request (no credential): TLS, and the server's clock.
    let client = match client_builder(STEP_TIMEOUT).timeout(STEP_TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            r.fail("TLS", describe(&e), "report this as a bug");
            return false;
        }
    };
    let tls = if url.scheme() == "https" {
        "TLS"
    } else {
        "HTTP"
    };
    match client
        .get(url.clone())
        .header("accept", "text/event-stream, application/json")
        .send()
        .await
    {
        Ok(resp) => {
            r.ok(
                tls,
                format!(
                    "{} answered HTTP {}",
                    display_url(url),
                    resp.status().as_u16()
                ),
            );
            check_clock(r, resp.headers().get(reqwest::header::DATE));
        }
        Err(e) => {
            r.fail(tls, describe(&e), "check the URL, the server's certificate (corporate CAs must be in the system trust store) and HTTPS_PROXY");
            return false;
        }
    }
    true
}

/// The URL-less form: the bridge finds the endpoint (its `auth:` line names it), then the
/// network path to that endpoint is checked like any other.
async fn check_core(r: &mut Report, command: &Path, args: &[String]) {
    let probed = probe(r, command, args).await;
    let url = probed.auth.as_deref().and_then(core_url_of);
    credential_state(r, url.as_ref(), &probed);
    if let Some(url) = url {
        r.ok(
            "endpoint",
            format!("the account's Core endpoint is {}", display_url(&url)),
        );
        check_network(r, &url).await;
    }
}

/// The endpoint in the bridge's `auth:` line of a URL-less start.
fn core_url_of(auth: &str) -> Option<Url> {
    let rest = auth.split("; endpoint ").nth(1)?;
    let raw = rest.split_whitespace().next()?;
    Url::parse(raw).ok()
}

/// What the bridge reported, for the checks that follow it.
#[derive(Default)]
struct Probed {
    /// The `auth:` line (which credential, from where).
    auth: Option<String>,
    /// The credential failed; the bridge's message.
    credential_failure: Option<String>,
}

/// The credential's own state on this machine: the stored OAuth sign-in, or the recorded
/// `pre-check` verdict for AccessKeys.
fn credential_state(r: &mut Report, url: Option<&Url>, probed: &Probed) {
    let Some(auth) = probed.auth.as_deref() else {
        return;
    };
    let Ok(home) = super::state_home() else {
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
                    super::status::human_duration(e)
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

fn check_clock(r: &mut Report, date: Option<&reqwest::header::HeaderValue>) {
    let Some(server) = date
        .and_then(|d| d.to_str().ok())
        .and_then(|d| httpdate::parse_http_date(d).ok())
    else {
        r.ok("clock", "the server sent no Date header; skew not measured");
        return;
    };
    let now = SystemTime::now();
    let (skew, ahead) = match now.duration_since(server) {
        Ok(d) => (d, true),
        Err(e) => (e.duration(), false),
    };
    let secs = skew.as_secs();
    let how = format!(
        "{secs} s {} the server",
        if ahead { "ahead of" } else { "behind" }
    );
    if skew > MAX_SKEW {
        r.fail(
            "clock",
            format!("this machine's clock is {how} (signatures fail beyond 15 min)"),
            "set the clock right (turn on automatic time / NTP)",
        );
    } else {
        r.ok("clock", how);
    }
}

/// `HTTPS_PROXY`/`HTTP_PROXY` (either case) for `url`, unless `NO_PROXY` names its host.
fn proxy_for(url: &Url) -> Option<Url> {
    let var = |k: &str| {
        std::env::var(k)
            .or_else(|_| std::env::var(k.to_ascii_lowercase()))
            .ok()
            .filter(|v| !v.is_empty())
    };
    let host = url.host_str()?;
    if let Some(no) = var("NO_PROXY") {
        let hit = no.split(',').map(str::trim).any(|n| {
            n == "*"
                || (!n.is_empty()
                    && (host == n.trim_start_matches('.')
                        || host.ends_with(&format!(".{}", n.trim_start_matches('.')))))
        });
        if hit {
            return None;
        }
    }
    let raw = if url.scheme() == "https" {
        var("HTTPS_PROXY")
    } else {
        var("HTTP_PROXY")
    }
    .or_else(|| var("ALL_PROXY"))?;
    Url::parse(&raw)
        .or_else(|_| Url::parse(&format!("http://{raw}")))
        .ok()
}

/// Runs the bridge as a client would and asks `initialize` and `tools/list`.
async fn probe(r: &mut Report, command: &Path, args: &[String]) -> Probed {
    let mut child = match tokio::process::Command::new(command)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            r.fail(
                "bridge",
                format!("cannot start {}: {e}", command.display()),
                "reinstall alibridge",
            );
            return Probed::default();
        }
    };
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped")).lines();
    let stderr = child.stderr.take().expect("piped");
    let err_task = tokio::spawn(async move {
        let mut buf = String::new();
        let _ = stderr.take(STDERR_LIMIT).read_to_string(&mut buf).await;
        buf
    });
    let started = Instant::now();
    let exchange = async {
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "alibridge-doctor", "version": env!("CARGO_PKG_VERSION")}}});
        let init_resp = ask(&mut stdin, &mut stdout, &init, 0).await?;
        let rtt = started.elapsed();
        if init_resp.get("error").is_some() {
            return Ok::<_, String>((init_resp, None, rtt));
        }
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        send(&mut stdin, &note).await?;
        let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}});
        let tools = ask(&mut stdin, &mut stdout, &list, 1).await?;
        Ok((init_resp, Some(tools), rtt))
    };
    let outcome = tokio::time::timeout(PROBE_TIMEOUT, exchange).await;
    drop(stdin);
    let _ = tokio::time::timeout(STEP_TIMEOUT, child.wait()).await;
    let _ = child.start_kill();
    let stderr = tokio::time::timeout(STEP_TIMEOUT, err_task)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let auth_line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("alibridge: auth: "))
        .map(str::to_string);
    let usage_error = stderr
        .lines()
        .find_map(|l| l.strip_prefix("alibridge: error: "))
        .map(str::to_string);
    let (init, tools, rtt) = match outcome {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            let detail = usage_error.unwrap_or(e);
            r.fail(
                "credential",
                detail.clone(),
                "see the message; `alibridge status` shows what is configured",
            );
            return Probed {
                auth: auth_line,
                credential_failure: Some(detail),
            };
        }
        Err(_) => {
            r.fail(
                "MCP",
                format!("no answer to initialize in {PROBE_TIMEOUT:?}"),
                "check the server and the credential with --debug",
            );
            return Probed {
                auth: auth_line,
                credential_failure: None,
            };
        }
    };
    if let Some(err) = init.get("error") {
        let msg = err["message"]
            .as_str()
            .unwrap_or("(no message)")
            .to_string();
        let kind = err["data"]["alibridge"]["kind"]
            .as_str()
            .unwrap_or_default();
        if kind == "auth" {
            r.fail(
                "credential",
                format!("{}: {msg}", auth_line.as_deref().unwrap_or("?")),
                "see the message above",
            );
            return Probed {
                auth: auth_line,
                credential_failure: Some(msg),
            };
        } else {
            if let Some(a) = &auth_line {
                r.ok("credential", a.clone());
            }
            r.fail(
                "MCP",
                format!("initialize failed: {msg}"),
                "see the message above; run the bridge with --debug for details",
            );
        }
        return Probed {
            auth: auth_line,
            credential_failure: None,
        };
    }
    r.ok(
        "credential",
        auth_line.clone().unwrap_or_else(|| "none needed".into()),
    );
    let version = init["result"]["protocolVersion"].as_str().unwrap_or("?");
    let server = init["result"]["serverInfo"]["name"].as_str().unwrap_or("?");
    match tools.as_ref().and_then(|t| t["result"]["tools"].as_array()) {
        Some(list) => r.ok(
            "MCP",
            format!(
                "{server}: protocol {version}, {} tools, initialize round trip {} ms",
                list.len(),
                rtt.as_millis()
            ),
        ),
        None => r.fail(
            "MCP",
            format!(
                "{server}: protocol {version}; tools/list failed: {}",
                tools
                    .as_ref()
                    .and_then(|t| t["error"]["message"].as_str())
                    .unwrap_or("no answer")
            ),
            "see the message; run the bridge with --debug for details",
        ),
    }
    Probed {
        auth: auth_line,
        credential_failure: None,
    }
}

async fn send(stdin: &mut tokio::process::ChildStdin, msg: &Value) -> Result<(), String> {
    let mut line = msg.to_string();
    line.push('\n');
    stdin
        .write_all(line.as_bytes())
        .await
        .map_err(|_| "the bridge exited at start".to_string())
}

async fn ask(
    stdin: &mut tokio::process::ChildStdin,
    stdout: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    msg: &Value,
    id: i64,
) -> Result<Value, String> {
    send(stdin, msg).await?;
    loop {
        let line = stdout
            .next_line()
            .await
            .ok()
            .flatten()
            .ok_or_else(|| "the bridge exited without answering".to_string())?;
        if let Ok(v) = serde_json::from_str::<Value>(&line) {
            if v["id"] == json!(id) && (v.get("result").is_some() || v.get("error").is_some()) {
                return Ok(v);
            }
        }
    }
}
