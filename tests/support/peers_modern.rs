//! Official MCP 2026-07-28 peers (the TypeScript SDK 2.x), pinned in
//! `tests/peers-modern/package-lock.json` and installed by the tests (`npm ci`).
//!
//! - [`ModernServer`] runs `tests/peers-modern/server.mjs`: the SDK's `createMcpHandler`,
//!   either dual-era ([`Legacy::Stateless`]) or modern-only ([`Legacy::Reject`]: 2025 traffic
//!   gets 400 / −32022, so a pass proves the bridge translated), behind a front that records
//!   every request (MCP headers, JSON-RPC method/id, status), counts tool executions and can
//!   cut one answer off mid-body.
//! - [`run_modern_client`] runs `tests/peers-modern/client.mjs`: the SDK 2.x client with
//!   `versionNegotiation: auto`, spawning alibridge over stdio, and returns its JSON summary.
//!
//! Needs `node` (20+) and `npm` on `PATH`, and the npm registry reachable on first use.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;

use super::peers::{lock_installed, npm_ci};

/// `tests/peers-modern`.
pub fn modern_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("peers-modern")
}

/// Installs the pinned peers once per process (see [`super::peers::npm_ci`]).
pub fn ensure_modern_peers() {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = |dir: &Path| {
        lock_installed(dir)
            && dir
                .join("node_modules/@modelcontextprotocol/server/package.json")
                .is_file()
    };
    if let Err(e) = INSTALLED.get_or_init(|| npm_ci(&modern_dir(), ready)) {
        panic!("{e}");
    }
}

/// How the server treats 2025-era (`initialize`) traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Legacy {
    /// Dual-era: served statelessly by the SDK's legacy fallback.
    Stateless,
    /// Modern-only: refused with 400 and the −32022 unsupported-version error.
    Reject,
}

/// A running `server.mjs`; killed on drop.
pub struct ModernServer {
    child: Child,
    port: u16,
    stderr: Arc<Mutex<String>>,
    http: reqwest::Client,
}

impl ModernServer {
    pub fn start(legacy: Legacy) -> ModernServer {
        ensure_modern_peers();
        // Before the child exists, so nothing can fail between its spawn and its owner.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("reqwest client");
        let mode = match legacy {
            Legacy::Stateless => "stateless",
            Legacy::Reject => "reject",
        };
        let mut child = Command::new("node")
            .arg(modern_dir().join("server.mjs"))
            .args(["--legacy", mode])
            .current_dir(modern_dir())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn node (the e2e tests need node 20+ on PATH)");
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let port = loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => {
                    if let Some(p) = line
                        .strip_prefix("PORT ")
                        .and_then(|p| p.trim().parse().ok())
                    {
                        break p;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "server.mjs did not report its port:\n{}",
                        stderr.lock().unwrap()
                    )
                }
            }
        };
        ModernServer {
            child,
            port,
            stderr,
            http,
        }
    }

    /// The MCP endpoint.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    fn control(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every MCP request the server received, in order (see `server.mjs`).
    pub async fn log(&self) -> Vec<Value> {
        let v: Value = self
            .http
            .get(self.control("/_log"))
            .send()
            .await
            .expect("GET /_log")
            .json()
            .await
            .expect("log JSON");
        v.as_array().cloned().unwrap_or_default()
    }

    /// The POSTs whose JSON-RPC method is `method`.
    pub async fn posts(&self, method: &str) -> Vec<Value> {
        self.log()
            .await
            .into_iter()
            .filter(|r| r["httpMethod"] == "POST" && r["rpcMethod"] == method)
            .collect()
    }

    /// How many times each tool ran to completion.
    pub async fn count(&self, tool: &str) -> u64 {
        let v: Value = self
            .http
            .get(self.control("/_counts"))
            .send()
            .await
            .expect("GET /_counts")
            .json()
            .await
            .expect("counts JSON");
        v[tool].as_u64().unwrap_or(0)
    }

    /// Arms a fault: the next POST matching `what` (`{"method": m}` or `{"tool": t}`) runs, and
    /// its answer is cut off mid-body.
    pub async fn break_next(&self, what: Value) {
        let resp = self
            .http
            .post(self.control("/_break"))
            .json(&what)
            .send()
            .await
            .expect("POST /_break");
        assert!(resp.status().is_success());
    }

    /// Cuts every open `subscriptions/listen` stream (as a network failure would).
    pub async fn drop_listens(&self) {
        let resp = self
            .http
            .post(self.control("/_drop_listens"))
            .send()
            .await
            .expect("POST /_drop_listens");
        assert!(resp.status().is_success());
    }

    /// What the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for ModernServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `node tests/peers-modern/client.mjs <args…>` (alibridge path, URL, echo arguments,
/// extra bridge flags) and returns its summary; panics unless it exited 0 with `"ok": true`.
pub fn run_modern_client<I, S>(args: I) -> Value
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let (summary, stderr) = try_modern_client(args);
    assert!(
        summary["ok"] == true,
        "client.mjs failed: {summary:#}\nstderr:\n{stderr}"
    );
    summary
}

/// Like [`run_modern_client`], but returns the summary (and stderr) whether or not the
/// scenario succeeded.
pub fn try_modern_client<I, S>(args: I) -> (Value, String)
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    ensure_modern_peers();
    static NEXT_HOME: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let home = std::env::temp_dir().join(format!(
        "alibridge-modern-home-{}-{}",
        std::process::id(),
        NEXT_HOME.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let mut cmd = Command::new("node");
    cmd.arg(modern_dir().join("client.mjs"))
        .args(args)
        .current_dir(modern_dir())
        .env("ALIBRIDGE_HOME", &home);
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "ALIBRIDGE_PROTOCOL",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .expect("run node tests/peers-modern/client.mjs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary: Value = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "client.mjs printed no JSON summary ({}):\n{stdout}\nstderr:\n{stderr}",
                out.status
            )
        });
    assert_eq!(
        out.status.success(),
        summary["ok"] == true,
        "exit status and summary disagree: {summary:#}"
    );
    (summary, stderr.into_owned())
}
