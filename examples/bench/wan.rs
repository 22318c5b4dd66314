//! `bench --wan [--quick]`: spawn → first `tools/list` answer over a simulated WAN.
//!
//! A local delay proxy (`tests/support/delay_proxy.rs`: +50 ms per direction per chunk, one
//! extra round trip for each new connection's handshake; TLS not modelled) sits between each
//! contender and the upstream (the rmcp test server of the e2e tests), and another between
//! alibridge and the local Alibaba Cloud fake (RAM-OAuth `GenerateAccessToken`). Contenders:
//! alibridge with a static `Authorization` header (cold and warm era cache), with AccessKeys
//! (cold and warm token cache), and mcp-remote (same static header; n/a without node). The
//! round trips each needed are counted at the proxies (connections + client turns, up to the
//! moment `tools/list` was answered), with the requests the server saw in order, and set
//! against the protocol's need. Then the after-idle figures (`idle.rs`). See
//! `docs/benchmarks.md`, "Simulated WAN".

#[path = "idle.rs"]
mod idle;

#[path = "../../tests/support/aliyun_fake/mod.rs"]
#[allow(dead_code, unused_imports)]
mod aliyun_fake;
#[path = "../../tests/support/delay_proxy.rs"]
#[allow(dead_code)]
mod delay_proxy;
#[path = "../../tests/support/mcp_server/mod.rs"]
#[allow(dead_code)]
mod mcp_server;
#[path = "../../tests/support/net.rs"]
#[allow(dead_code)]
mod net;
#[path = "../../tests/support/oauth_server/mod.rs"]
#[allow(dead_code, unused_imports)]
mod oauth_server;
#[path = "../../tests/support/wait.rs"]
#[allow(dead_code)]
mod wait;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::time::timeout;

use aliyun_fake::AliyunFake;
use delay_proxy::DelayProxy;
use mcp_server::{ServerOptions, TestServer};
use oauth_server::{OAuthServer, ProtectedMcp, ProtectedOptions};

/// One way; a round trip is twice this.
const DELAY: Duration = Duration::from_millis(50);
const STATIC_TOKEN: &str = "wan-bench-static-token";
const AK_ID: &str = "LTAI5tWanBench0000000001";
const AK_SECRET: &str = "wanBenchSecret-Xq2Lm8Nv4Rt6Yp1Zw3";

/// Runs the mode; exits the process on failure.
pub fn main(quick: bool) {
    let bridge = super::bridge_bin().unwrap_or_else(|e| super::fail(2, e));
    let node = super::mcp_remote();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| super::fail(1, e));
    let runs = if quick { 1 } else { 3 };
    rt.block_on(async {
        run(runs, bridge.clone(), node).await?;
        idle::run(runs, bridge, idle::Idle::new(quick)).await
    })
    .unwrap_or_else(|e| super::fail(1, e));
}

/// A contender: how to start it, and the critical-path round trips the protocol needs.
struct Contender {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// A fresh state directory per run (cold caches) or one kept across runs (warm).
    warm: bool,
    /// Round trips on the critical path the protocol needs: (to the MCP server, to RAM-OAuth).
    need: (usize, usize),
    /// What `need` counts.
    need_why: &'static str,
}

struct Sample {
    ms: f64,
    /// The requests the MCP server saw during the run, in order (`METHOD rpc-method`).
    requests: Vec<String>,
    mcp: (usize, usize),
    mcp_oauth: (usize, usize),
    ims: (usize, usize),
}

async fn run(runs: usize, bridge: PathBuf, node: Result<PathBuf, String>) -> super::Res<()> {
    let fake = AliyunFake::start().await;
    fake.add_access_key(AK_ID, AK_SECRET);
    let tokens = fake.token_checker();
    let server = TestServer::start_with(ServerOptions::requiring_bearer(move |t| {
        t == STATIC_TOKEN || tokens(t)
    }))
    .await;
    let mcp = DelayProxy::start(
        net::listen(net::LOOPBACK).await,
        addr_of(&server.url())?,
        DELAY,
    );
    let ims = DelayProxy::start(
        net::listen(net::LOOPBACK).await,
        addr_of(&fake.url())?,
        DELAY,
    );
    // OAuth: the protected front of the e2e tests behind its own delay proxy, its metadata
    // naming the proxied URL as the resource; the authorization server is not delayed (a
    // stored, valid sign-in should not need it at all).
    let oauth = OAuthServer::start().await;
    let protected = ProtectedMcp::start(
        &oauth,
        ProtectedOptions {
            resource_metadata_in_challenge: false,
            ..ProtectedOptions::default()
        },
    )
    .await;
    let mcp_oauth = DelayProxy::start(
        net::listen(net::LOOPBACK).await,
        addr_of(&protected.url())?,
        DELAY,
    );
    let oauth_url = format!("http://{}/mcp", mcp_oauth.addr());
    protected.set_metadata_resource(json!(oauth_url));
    oauth.add_resource(&oauth_url);
    let browser = browser_script()?;
    let url = format!("http://{}/mcp", mcp.addr());
    let ims_url = format!("http://{}/", ims.addr());
    let header = format!("Authorization: Bearer {STATIC_TOKEN}");
    println!(
        "alibridge bench --wan: +{} ms per direction (RTT {} ms), {runs} run(s) per contender",
        DELAY.as_millis(),
        DELAY.as_millis() * 2
    );
    println!("  alibridge: {}", bridge.display());
    let b = |extra: &[&str]| {
        let mut a = vec![url.clone()];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let ak_env = vec![
        ("ALIBABA_CLOUD_ACCESS_KEY_ID".to_string(), AK_ID.to_string()),
        (
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET".to_string(),
            AK_SECRET.to_string(),
        ),
    ];
    let ak_args = b(&[
        "--auth",
        "ak",
        "--site-type",
        "CN",
        "--ims-endpoint",
        &ims_url,
    ]);
    let static_why = "connect + initialize + tools/list";
    let mut contenders = vec![
        Contender {
            name: "alibridge, static header, cold",
            program: bridge.clone(),
            args: b(&["--auth", "none", "--header", &header]),
            env: vec![],
            warm: false,
            need: (3, 0),
            need_why: static_why,
        },
        Contender {
            name: "alibridge, static header, warm",
            program: bridge.clone(),
            args: b(&["--auth", "none", "--header", &header]),
            env: vec![],
            warm: true,
            need: (3, 0),
            need_why: static_why,
        },
        Contender {
            name: "alibridge, AccessKeys, cold",
            program: bridge.clone(),
            args: ak_args.clone(),
            env: ak_env.clone(),
            warm: false,
            need: (3, 2),
            need_why: "+ RAM-OAuth connect + GenerateAccessToken",
        },
        Contender {
            name: "alibridge, AccessKeys, warm",
            program: bridge.clone(),
            args: ak_args,
            env: ak_env,
            warm: true,
            need: (3, 0),
            need_why: static_why,
        },
    ];
    if let Some(browser) = &browser {
        contenders.push(Contender {
            name: "alibridge, OAuth, stored sign-in",
            program: bridge.clone(),
            args: vec![
                oauth_url.clone(),
                "--auth".into(),
                "oauth".into(),
                "--auth-timeout".into(),
                "15".into(),
            ],
            env: vec![("BROWSER".into(), browser.display().to_string())],
            warm: true,
            need: (3, 0),
            need_why: static_why,
        });
    }
    match &node {
        Ok(proxy) => contenders.push(Contender {
            name: "mcp-remote, static header",
            program: PathBuf::from("node"),
            args: vec![
                proxy.display().to_string(),
                url.clone(),
                "--transport".into(),
                "http-only".into(),
                "--header".into(),
                header.clone(),
            ],
            env: vec![],
            warm: false,
            need: (3, 0),
            need_why: static_why,
        }),
        Err(why) => println!("  mcp-remote: n/a: {why}"),
    }
    if browser.is_none() {
        println!("  OAuth with a stored sign-in: n/a (needs a Unix shell and curl to sign in)");
    }
    println!();
    println!(
        "| contender | spawn → tools/list, ms (min–max of {runs}) | round trips to the MCP server (conn + turns) | to RAM-OAuth | protocol needs | requests in order (last run) |"
    );
    println!("|---|---|---|---|---|---|");
    for c in &contenders {
        let home = scratch(c.name);
        if c.warm {
            // One untimed run fills the caches.
            start_once(c, &home).await?;
        }
        let mut samples = Vec::new();
        for _ in 0..runs {
            let run_home = if c.warm {
                home.clone()
            } else {
                scratch(c.name)
            };
            mcp.reset_counts();
            mcp_oauth.reset_counts();
            ims.reset_counts();
            let mark = server.all_requests().len();
            let ms = start_once(c, &run_home).await?;
            let requests = requests_since(&server, mark);
            samples.push(Sample {
                ms,
                requests,
                mcp: (mcp.connections(), mcp.turns()),
                mcp_oauth: (mcp_oauth.connections(), mcp_oauth.turns()),
                ims: (ims.connections(), ims.turns()),
            });
            if !c.warm {
                let _ = std::fs::remove_dir_all(&run_home);
            }
        }
        let _ = std::fs::remove_dir_all(&home);
        let min = samples.iter().map(|s| s.ms).fold(f64::MAX, f64::min);
        let max = samples.iter().map(|s| s.ms).fold(0.0, f64::max);
        let last = samples.last().expect("at least one run");
        let rt = |(c, t): (usize, usize)| format!("{} ({c} + {t})", c + t);
        // The OAuth contender has its own proxy; the others share `mcp`.
        let last_mcp = match c.name.contains("OAuth") {
            true => last.mcp_oauth,
            false => last.mcp,
        };
        let floor = (c.need.0 + c.need.1) as f64 * 2.0 * DELAY.as_secs_f64() * 1000.0;
        // The OAuth contender's server is another one; the others share `server`.
        let requests = match c.name.contains("OAuth") {
            true => "(another server)".to_string(),
            false => last.requests.join(", "),
        };
        println!(
            "| {} | {min:.0}–{max:.0} | {} | {} | {} + {} ({}; ≥ {floor:.0} ms) | {requests} |",
            c.name,
            rt(last_mcp),
            rt(last.ims),
            c.need.0,
            c.need.1,
            c.need_why
        );
    }
    // The passthrough: the same three requests from a plain HTTP client, no bridge, no spawn.
    let mut samples = Vec::new();
    for _ in 0..runs {
        mcp.reset_counts();
        let mark = server.all_requests().len();
        let t0 = Instant::now();
        idle::Direct::start(&url, Some(STATIC_TOKEN)).await?;
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        let requests: Vec<String> = server.all_requests()[mark..]
            .iter()
            .map(|r| match &r.rpc_method {
                Some(m) => format!("{} {m}", r.method),
                None => r.method.to_string(),
            })
            .collect();
        samples.push((ms, mcp.connections(), mcp.turns(), requests));
    }
    let min = samples.iter().map(|s| s.0).fold(f64::MAX, f64::min);
    let max = samples.iter().map(|s| s.0).fold(0.0, f64::max);
    let (_, c, t, requests) = samples.last().expect("at least one run");
    println!(
        "| passthrough (plain HTTP client, no bridge, no spawn) | {min:.0}–{max:.0} | {} ({c} + {t}) | 0 (0 + 0) | 3 + 0 ({static_why}; ≥ 300 ms) | {} |",
        c + t,
        requests.join(", ")
    );
    println!();
    println!(
        "Turns are counted until the tools/list answer arrives, so requests off the critical \
         path (notifications/initialized, the GET stream) that started by then are included."
    );
    Ok(())
}

/// Spawns the contender, sends initialize, initialized and tools/list; returns the ms from
/// spawn to the tools/list answer.
async fn start_once(c: &Contender, home: &Path) -> super::Res<f64> {
    std::fs::create_dir_all(home)?;
    let log = home.join("stderr.log");
    let t0 = Instant::now();
    let mut child = Command::new(&c.program)
        .args(&c.args)
        .envs(c.env.iter().map(|(k, v)| (k, v)))
        .env("ALIBRIDGE_HOME", home)
        .env("ALIBRIDGE_TOKEN_STORE", "file")
        .env("MCP_REMOTE_CONFIG_DIR", home.join("mcp-auth"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log)?)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", c.program.display()))?;
    let failed =
        |e: Box<dyn std::error::Error + Send + Sync>| -> Box<dyn std::error::Error + Send + Sync> {
            let stderr = std::fs::read_to_string(&log).unwrap_or_default();
            format!(
                "{}: {e}\n{}'s stderr:\n{stderr}",
                c.name,
                c.program.display()
            )
            .into()
        };
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": super::PROTOCOL, "capabilities": {},
        "clientInfo": {"name": "bench-wan", "version": "0"}}});
    stdin.write_all(format!("{init}\n").as_bytes()).await?;
    timeout(super::CALL_TIMEOUT, answer(&mut lines, 1))
        .await
        .map_err(|_| "initialize timed out")?
        .map_err(failed)?;
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let msgs = format!("{}\n{list}\n", String::from_utf8_lossy(super::INITIALIZED));
    stdin.write_all(msgs.as_bytes()).await?;
    let listed = timeout(super::CALL_TIMEOUT, answer(&mut lines, 2)).await;
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    listed
        .map_err(|_| "tools/list timed out")?
        .map_err(failed)?;
    drop(stdin);
    if timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
    Ok(ms)
}

/// Reads stdout lines until the answer to `id`; an error answer is a failure.
async fn answer(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    id: i64,
) -> super::Res<()> {
    loop {
        let line = lines.next_line().await?.ok_or("stdout closed")?;
        let v: Value = serde_json::from_str(&line).unwrap_or_default();
        if v["id"] == id {
            if v.get("error").is_some() {
                return Err(format!("request {id} answered with an error: {line}").into());
            }
            return Ok(());
        }
    }
}

fn scratch(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let slug: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    std::env::temp_dir().join(format!(
        "alibridge-wan-{slug}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ))
}

/// A `$BROWSER` that approves at once (GETs the authorization URL with curl, following the
/// redirect to the bridge's loopback callback), as the e2e tests' browser does; `None` where
/// that cannot run.
fn browser_script() -> super::Res<Option<PathBuf>> {
    if !cfg!(unix)
        || !std::process::Command::new("curl")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    {
        return Ok(None);
    }
    let path = scratch("browser");
    std::fs::write(
        &path,
        "#!/bin/sh\nexec curl --noproxy '*' -s -L --max-redirs 3 -o /dev/null \"$1\"\n",
    )?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(Some(path))
}

fn addr_of(url: &str) -> super::Res<std::net::SocketAddr> {
    let rest = url.split("://").nth(1).ok_or("no scheme")?;
    let host = rest.split('/').next().ok_or("no host")?;
    Ok(host.parse()?)
}

/// The requests `server` saw after the first `mark`, as `POST tools/list` (or the bare HTTP
/// method for a request without a JSON-RPC method, e.g. the preconnect `HEAD`).
fn requests_since(server: &TestServer, mark: usize) -> Vec<String> {
    server.all_requests()[mark..]
        .iter()
        .map(|r| match &r.rpc_method {
            Some(m) => format!("{} {m}", r.method),
            None => r.method.to_string(),
        })
        .collect()
}
