//! Checks an *installed* alibridge the way a desktop client uses it: `.ci/run` points it at the
//! copy installed from the wheel, the one installed from the npm tarballs, and the Windows
//! `.exe` under wine. Any command works:
//!
//! ```text
//! cargo run --example smoke -- [--oauth] [--token-store KIND] -- CMD [ARGS…]
//! cargo run --example smoke -- -- ~/.venv/bin/alibridge
//! cargo run --example smoke -- --oauth -- wine64 alibridge.exe
//! ```
//!
//! Always: `CMD --version` prints Cargo.toml's version, then a relay session against the test
//! suite's rmcp server (initialize, tools/list, an echo with spaces and non-ASCII text, stdin
//! closed → exit 0, one answer per request, nothing but JSON-RPC on stdout).
//!
//! With `--oauth`, against the test suite's authorization server and protected MCP server: the
//! token store round trip (`login --no-browser`, the URL opened by curl as a user who approves
//! at once; `status`; a bridge that uses the stored sign-in without a new authorization) and
//! the cross-process lock (two bridges meeting one revoked access token refresh it once between
//! them, no refresh token used twice), then `logout`. The state directory is the platform's
//! default unless `ALIBRIDGE_HOME` is set. Exits 1 with what went wrong.

#[path = "../tests/support/mcp_server/mod.rs"]
#[allow(dead_code)]
mod mcp_server;
#[path = "../tests/support/net.rs"]
#[allow(dead_code)]
mod net;
#[path = "../tests/support/oauth_server/mod.rs"]
#[allow(dead_code)]
mod oauth_server;
#[path = "../tests/support/wait.rs"]
#[allow(dead_code)]
mod wait;

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// How long one step may take before the check gives up (wine starts slowly).
const STEP: Duration = Duration::from_secs(60);

type Result<T> = std::result::Result<T, String>;

#[tokio::main]
async fn main() {
    let mut oauth = false;
    let mut store = "file".to_string();
    let mut args = std::env::args().skip(1);
    let mut cmd: Vec<String> = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--oauth" => oauth = true,
            "--token-store" => store = args.next().unwrap_or_else(|| usage("--token-store KIND")),
            "--" => {
                cmd = args.by_ref().collect();
                break;
            }
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    if cmd.is_empty() {
        usage("no command");
    }
    let label = cmd.join(" ");
    let result = async {
        step("--version");
        version(&cmd).await?;
        step("relay session");
        relay(&cmd).await?;
        if oauth {
            oauth_round_trip(&cmd, &store).await?;
        }
        Ok::<(), String>(())
    }
    .await;
    match result {
        Ok(()) => println!(
            "smoke: ok: {label} (version, relay session{})",
            if oauth {
                format!(", OAuth store ({store}) round trip and two instances")
            } else {
                String::new()
            }
        ),
        Err(e) => {
            eprintln!("smoke: FAILED: {label}: {e}");
            std::process::exit(1);
        }
    }
}

fn step(what: &str) {
    eprintln!("smoke: {what}");
}

fn usage(err: &str) -> ! {
    eprintln!("error: {err}\nusage: cargo run --example smoke -- [--oauth] [--token-store KIND] -- CMD [ARGS…]");
    std::process::exit(2);
}

fn command(cmd: &[String], args: &[&str]) -> Command {
    let mut c = Command::new(&cmd[0]);
    c.args(&cmd[1..]).args(args);
    for v in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
    ] {
        c.env_remove(v);
    }
    c.env("BROWSER", "").kill_on_drop(true);
    c
}

async fn output(cmd: &[String], args: &[&str]) -> Result<(i32, String, String)> {
    let mut c = command(cmd, args);
    c.stdin(Stdio::null());
    let out = tokio::time::timeout(STEP, c.output())
        .await
        .map_err(|_| format!("`{}` did not finish in time", args.join(" ")))?
        .map_err(|e| format!("cannot run it: {e}"))?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

async fn version(cmd: &[String]) -> Result<()> {
    let (code, out, err) = output(cmd, &["--version"]).await?;
    let want = format!("alibridge {}", env!("CARGO_PKG_VERSION"));
    if code != 0 || out.trim() != want {
        return Err(format!(
            "--version: exit {code}, printed {out:?} (want {want:?}); stderr: {err}"
        ));
    }
    Ok(())
}

/// A bridge process with piped stdio.
struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: tokio::task::JoinHandle<String>,
    answers: std::collections::HashMap<String, usize>,
}

impl Session {
    fn start(cmd: &[String], args: &[&str]) -> Result<Session> {
        let mut c = command(cmd, args);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().map_err(|e| format!("cannot start it: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped")).lines();
        let mut err = child.stderr.take().expect("piped");
        let stderr = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut buf = Vec::new();
            let _ = err.read_to_end(&mut buf).await;
            String::from_utf8_lossy(&buf).into_owned()
        });
        Ok(Session {
            child,
            stdin,
            stdout,
            stderr,
            answers: Default::default(),
        })
    }

    async fn send(&mut self, msg: Value) -> Result<()> {
        let mut line = serde_json::to_vec(&msg).expect("json");
        line.push(b'\n');
        let stdin = self.stdin.as_mut().ok_or("stdin closed")?;
        stdin
            .write_all(&line)
            .await
            .map_err(|e| format!("write stdin: {e}"))?;
        stdin.flush().await.map_err(|e| format!("flush stdin: {e}"))
    }

    /// Reads stdout until the answer to `id`; every line must be one JSON-RPC object.
    async fn answer(&mut self, id: i64) -> Result<Value> {
        loop {
            let line = tokio::time::timeout(STEP, self.stdout.next_line())
                .await
                .map_err(|_| format!("no answer to request {id} in time"))?
                .map_err(|e| format!("read stdout: {e}"))?
                .ok_or_else(|| format!("stdout closed before the answer to request {id}"))?;
            let v: Value = serde_json::from_str(&line)
                .map_err(|e| format!("stdout carried a non-JSON line ({e}): {line:.200}"))?;
            if v["jsonrpc"] != "2.0" {
                return Err(format!("stdout carried a non-JSON-RPC line: {line:.200}"));
            }
            if v.get("method").is_none() {
                *self.answers.entry(v["id"].to_string()).or_default() += 1;
                if v["id"] == id {
                    return Ok(v);
                }
            }
        }
    }

    async fn request(&mut self, id: i64, method: &str, params: Value) -> Result<Value> {
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await?;
        let v = self.answer(id).await?;
        if v.get("result").is_none() {
            return Err(format!("{method} failed: {v}"));
        }
        Ok(v["result"].clone())
    }

    async fn initialize(&mut self) -> Result<()> {
        self.request(
            0,
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "alibridge-smoke", "version": "0"}}),
        )
        .await?;
        self.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await
    }

    async fn echo(&mut self, id: i64, text: &str) -> Result<()> {
        let r = self
            .request(
                id,
                "tools/call",
                json!({"name": "echo", "arguments": {"text": text}}),
            )
            .await?;
        if r["content"][0]["text"] != text {
            return Err(format!("echo {text:?} answered {r}"));
        }
        Ok(())
    }

    /// Closes stdin; the bridge must drain, exit 0, and have answered each request once.
    async fn finish(mut self) -> Result<String> {
        self.stdin.take();
        while let Ok(Some(line)) = tokio::time::timeout(STEP, self.stdout.next_line())
            .await
            .map_err(|_| "stdout stayed open after stdin closed".to_string())?
        {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if v.get("method").is_none() {
                    *self.answers.entry(v["id"].to_string()).or_default() += 1;
                }
            }
        }
        let status = tokio::time::timeout(STEP, self.child.wait())
            .await
            .map_err(|_| "did not exit after stdin closed".to_string())?
            .map_err(|e| format!("wait: {e}"))?;
        let stderr = self.stderr.await.unwrap_or_default();
        if status.code() != Some(0) {
            return Err(format!("exit status {status}; stderr:\n{stderr}"));
        }
        if let Some((id, n)) = self.answers.iter().find(|(_, n)| **n != 1) {
            return Err(format!(
                "request {id} answered {n} times; stderr:\n{stderr}"
            ));
        }
        Ok(stderr)
    }
}

/// Wraps a failure of a session with its stderr (the bridge is stopped first).
async fn with_stderr<T>(s: &mut Session, r: Result<T>) -> Result<T> {
    match r {
        Ok(v) => Ok(v),
        Err(e) => {
            let _ = s.child.start_kill();
            // A helper the command started (wineserver) may hold the pipe open: wait briefly.
            let stderr = tokio::time::timeout(Duration::from_secs(5), &mut s.stderr)
                .await
                .map(|r| r.unwrap_or_default())
                .unwrap_or_else(|_| "(stderr still open)".into());
            Err(format!("{e}; stderr:\n{stderr}"))
        }
    }
}

async fn relay(cmd: &[String]) -> Result<()> {
    let server = mcp_server::TestServer::start().await;
    let url = server.url();
    // A header value with spaces, as Windows clients mangle them (mcp-remote's Windows
    // complaint): it must reach the server as one value.
    let header = "Bearer two words";
    let flag = format!("X-Smoke-Token: {header}");
    let mut s = Session::start(cmd, &[&url, "--auth", "none", "--header", &flag])?;
    let r = async {
        s.initialize().await?;
        let tools = s.request(1, "tools/list", json!({})).await?;
        if !tools["tools"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["name"] == "echo"))
        {
            return Err(format!("tools/list has no echo: {tools}"));
        }
        s.echo(2, "hello, 世界 — with spaces").await
    }
    .await;
    with_stderr(&mut s, r).await?;
    s.finish().await?;
    let seen = server.requests();
    let posts: Vec<_> = seen.iter().filter(|r| r.method == "POST").collect();
    if posts.is_empty()
        || !posts
            .iter()
            .all(|r| r.headers.get("x-smoke-token").is_some_and(|v| v == header))
    {
        let got: Vec<_> = posts
            .iter()
            .map(|r| r.headers.get("x-smoke-token"))
            .collect();
        return Err(format!("--header {flag:?} arrived as {got:?}"));
    }
    Ok(())
}

async fn oauth_round_trip(cmd: &[String], store: &str) -> Result<()> {
    use oauth_server::{OAuthServer, ProtectedMcp, ProtectedOptions};
    let oauth = OAuthServer::start().await;
    let mcp = ProtectedMcp::start(&oauth, ProtectedOptions::default()).await;
    let url = mcp.url();
    let opts = ["--token-store", store, "--auth-timeout", "60"];

    step("login --no-browser");
    // login --no-browser: read the URL from stderr and approve it as a browser would.
    let mut args = vec!["login", url.as_str(), "--no-browser"];
    args.extend(opts);
    let mut login = command(cmd, &args);
    login
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = login
        .spawn()
        .map_err(|e| format!("cannot start login: {e}"))?;
    let _stdin = child.stdin.take(); // kept open: nothing is pasted
    let mut err = BufReader::new(child.stderr.take().expect("piped")).lines();
    let mut seen = String::new();
    let authorize = loop {
        let line = tokio::time::timeout(STEP, err.next_line())
            .await
            .map_err(|_| format!("login printed no sign-in URL in time:\n{seen}"))?
            .map_err(|e| format!("read login stderr: {e}"))?
            .ok_or_else(|| format!("login ended without a sign-in URL:\n{seen}"))?;
        seen.push_str(&line);
        seen.push('\n');
        if let Some(u) = line
            .trim()
            .strip_prefix(&format!("{}/authorize?", oauth.issuer()))
        {
            break format!("{}/authorize?{u}", oauth.issuer());
        }
    };
    let curl = tokio::process::Command::new("curl")
        .args([
            "--noproxy",
            "*",
            "-s",
            "-L",
            "--max-redirs",
            "3",
            "-o",
            "/dev/null",
        ])
        .arg(&authorize)
        .status()
        .await
        .map_err(|e| format!("cannot run curl: {e}"))?;
    if !curl.success() {
        return Err(format!("curl {authorize} failed: {curl}"));
    }
    let mut out = String::new();
    {
        use tokio::io::AsyncReadExt;
        let mut so = child.stdout.take().expect("piped");
        tokio::time::timeout(STEP, so.read_to_string(&mut out))
            .await
            .map_err(|_| "login did not finish in time".to_string())?
            .map_err(|e| format!("read login stdout: {e}"))?;
    }
    let status = tokio::time::timeout(STEP, child.wait())
        .await
        .map_err(|_| "login did not exit".to_string())?
        .map_err(|e| format!("wait login: {e}"))?;
    while let Ok(Some(l)) = err.next_line().await {
        seen.push_str(&l);
        seen.push('\n');
    }
    let place = if store == "keyring" {
        "the OS keychain"
    } else {
        "a file"
    };
    if !status.success() || !out.starts_with("signed in to") || !out.contains(place) {
        return Err(format!("login: {status}, stdout {out:?}, stderr:\n{seen}"));
    }
    if oauth.leaked_in(&(out.clone() + &seen)).is_some() {
        return Err("login printed a secret".into());
    }

    step("status");
    let (code, status_out, status_err) = output(cmd, &["status"]).await?;
    if code != 0 || !status_out.contains(&url) {
        return Err(format!(
            "status does not list {url}: exit {code}\n{status_out}{status_err}"
        ));
    }

    step("a bridge with the stored sign-in");
    // The stored sign-in, from a new process: no second authorization.
    let mut args = vec![url.as_str(), "--auth", "oauth"];
    args.extend(opts);
    let mut s = Session::start(cmd, &args)?;
    let r = async {
        s.initialize().await?;
        s.echo(1, "signed in once").await
    }
    .await;
    with_stderr(&mut s, r).await?;
    s.finish().await?;
    if oauth.authorize_count() != 1 {
        return Err(format!(
            "the stored sign-in was not reused: {} authorizations",
            oauth.authorize_count()
        ));
    }

    step("two bridges, one revoked access token");
    // Two processes meet one revoked access token: one refresh between them (the lock).
    let mut a = Session::start(cmd, &args)?;
    let mut b = Session::start(cmd, &args)?;
    let r = async {
        tokio::try_join!(a.initialize(), b.initialize())?;
        oauth.revoke_access_tokens();
        tokio::try_join!(a.echo(1, "first"), b.echo(1, "second"))?;
        Ok::<(), String>(())
    }
    .await;
    let r = with_stderr(&mut a, r).await;
    with_stderr(&mut b, r).await?;
    a.finish().await?;
    b.finish().await?;
    let refreshes = oauth.token_count("refresh_token");
    if refreshes != 1 || oauth.refresh_reuse_count() != 0 || oauth.authorize_count() != 1 {
        return Err(format!(
            "two processes: {refreshes} refreshes (want 1), {} refresh tokens reused, {} authorizations",
            oauth.refresh_reuse_count(),
            oauth.authorize_count()
        ));
    }

    step("logout");
    let mut args = vec!["logout", url.as_str()];
    args.extend(&opts[..2]);
    let (code, out, err) = output(cmd, &args).await?;
    if code != 0 {
        return Err(format!("logout: exit {code}\n{out}{err}"));
    }
    let (_, after, _) = output(cmd, &["status"]).await?;
    if after.contains(&url) {
        return Err(format!("status still lists {url} after logout:\n{after}"));
    }
    Ok(())
}
