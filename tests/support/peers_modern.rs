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

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use super::peers::{lock_installed, npm_ci, run_node_summary, NodeProcess};

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
    process: NodeProcess,
    port: u16,
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
        let mut cmd = Command::new("node");
        cmd.arg(modern_dir().join("server.mjs"))
            .args(["--legacy", mode])
            .current_dir(modern_dir())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default());
        let (process, port) = NodeProcess::start(cmd, "PORT ", "server.mjs");
        ModernServer {
            process,
            port,
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

    /// The server's recent stdout/stderr lines (for failure messages).
    pub fn stderr(&self) -> String {
        self.process.log()
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
    cmd.env_remove("ALIBRIDGE_PROTOCOL");
    let (success, summary, stderr) = run_node_summary(cmd, "client.mjs");
    assert_eq!(
        success,
        summary["ok"] == true,
        "exit status and summary disagree: {summary:#}"
    );
    (summary, stderr)
}
