//! Official npm MCP peers, pinned in `tests/peers/package-lock.json` and installed by the tests.
//!
//! - [`ensure_npm_peers`] runs `npm ci` in `tests/peers` once (per process, and serialized across
//!   processes with a lock directory), skipping it when `node_modules` already matches the lock.
//! - [`ServerEverything`] runs `@modelcontextprotocol/server-everything` (`streamableHttp` or
//!   `sse`) on a loopback port the kernel picks (`PORT=0`; `tests/peers/report_port.cjs`, preloaded,
//!   reports which) and kills it on drop.
//! - [`run_sdk_client`] runs `tests/peers/sdk_client.mjs` (the official TypeScript SDK client,
//!   spawning alibridge over stdio) and returns its JSON summary.
//! - [`NodeProcess`] and [`run_node_summary`]: the one way every suite runs a node peer (a
//!   server that reports its port, or a script that prints a JSON summary).
//!
//! Needs `node` (20+) and `npm` on `PATH`, and the npm registry reachable on first use.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::home::TempHome;

/// `tests/peers`: package.json, package-lock.json, node_modules, sdk_client.mjs.
pub fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("peers")
}

/// Preloaded into npm servers started with `PORT=0`: prints `alibridge-test-port <port>`.
fn report_port_js() -> PathBuf {
    peers_dir().join("report_port.cjs")
}

/// The server-everything launcher (`dist/index.js <stdio|sse|streamableHttp>`).
pub fn server_everything_js() -> PathBuf {
    peers_dir().join("node_modules/@modelcontextprotocol/server-everything/dist/index.js")
}

/// Installs the pinned npm peers (`npm ci`) unless `node_modules` already matches the lock file.
/// Safe to call from every test: the work happens once per process; panics if npm fails.
pub fn ensure_npm_peers() {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(e) = INSTALLED.get_or_init(install) {
        panic!("{e}");
    }
}

/// Whether `node_modules` of `dir` holds exactly what its `package-lock.json` pins: npm
/// records what it installed in `node_modules/.package-lock.json` (whoever ran `npm ci`).
pub fn lock_installed(dir: &Path) -> bool {
    let packages = |path: PathBuf| -> Option<Value> {
        let mut lock: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        let mut packages = lock.get_mut("packages")?.take();
        packages.as_object_mut()?.remove(""); // the root project is not installed
        Some(packages)
    };
    let wanted = packages(dir.join("package-lock.json"));
    wanted.is_some() && wanted == packages(dir.join("node_modules/.package-lock.json"))
}

fn installed_matches_lock(dir: &Path) -> bool {
    lock_installed(dir)
        && server_everything_js().is_file()
        && dir.join("sdk_client.mjs").is_file()
        && report_port_js().is_file()
}

fn install() -> Result<(), String> {
    npm_ci(&peers_dir(), installed_matches_lock)
}

/// Runs `npm ci` in `dir` unless `ready(dir)` says it is installed already; serialized across
/// processes with a lock directory.
pub fn npm_ci(dir: &Path, ready: fn(&Path) -> bool) -> Result<(), String> {
    let dir = dir.to_path_buf();
    let installed_matches_lock = ready;
    if installed_matches_lock(&dir) {
        return Ok(());
    }
    let _lock = DirLock::acquire(&dir.join(".npm-ci.lock"))?;
    if installed_matches_lock(&dir) {
        return Ok(()); // another process installed while we waited
    }
    let npm = if cfg!(windows) { "npm.cmd" } else { "npm" };
    let out = Command::new(npm)
        .args([
            "ci",
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
            "--loglevel=error",
        ])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            format!(
                "could not run `{npm} ci` in {}: {e} (the e2e tests need node 20+ and npm on PATH)",
                dir.display()
            )
        })?;
    if !out.status.success() {
        return Err(format!(
            "`npm ci` in {} failed ({}):\n{}\n{}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    if !installed_matches_lock(&dir) {
        return Err(format!(
            "`npm ci` in {} left node_modules unlike the lock",
            dir.display()
        ));
    }
    Ok(())
}

/// A cross-process lock: a directory that exists while someone runs `npm ci`. One older than
/// ten minutes is taken to be left over from a killed run and is removed.
struct DirLock(PathBuf);

impl DirLock {
    fn acquire(path: &Path) -> Result<DirLock, String> {
        let started = Instant::now();
        loop {
            match std::fs::create_dir(path) {
                Ok(()) => return Ok(DirLock(path.to_owned())),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let age = std::fs::metadata(path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| SystemTime::now().duration_since(t).ok());
                    if age.is_some_and(|a| a > Duration::from_secs(600)) {
                        let _ = std::fs::remove_dir(path);
                    } else if started.elapsed() > Duration::from_secs(900) {
                        return Err(format!("gave up waiting for {}", path.display()));
                    } else {
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
                Err(e) => return Err(format!("create {}: {e}", path.display())),
            }
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Which transport server-everything serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Streamable HTTP on `/mcp` (POST/GET/DELETE, sessions, resumable streams).
    StreamableHttp,
    /// Legacy HTTP+SSE: `GET /sse` stream, whose `endpoint` event names `POST /message?sessionId=…`.
    Sse,
}

impl Mode {
    fn arg(self) -> &'static str {
        match self {
            Mode::StreamableHttp => "streamableHttp",
            Mode::Sse => "sse",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Mode::StreamableHttp => "/mcp",
            Mode::Sse => "/sse",
        }
    }
}

/// A running `server-everything`; killed on drop.
pub struct ServerEverything {
    process: NodeProcess,
    mode: Mode,
    port: u16,
}

impl ServerEverything {
    /// Installs the peers if needed, then starts the server on a port the kernel picks and
    /// returns once it listens there.
    pub fn start(mode: Mode) -> ServerEverything {
        ensure_npm_peers();
        let mut cmd = Command::new("node");
        cmd.arg("--require")
            .arg(report_port_js())
            .arg(server_everything_js())
            .arg(mode.arg())
            .current_dir(peers_dir())
            // Only what node needs: its `get-env` tool would otherwise expose our environment.
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PORT", "0");
        let (process, port) = NodeProcess::start(
            cmd,
            "alibridge-test-port ",
            &format!("server-everything {mode:?}"),
        );
        ServerEverything {
            process,
            mode,
            port,
        }
    }

    /// `http://127.0.0.1:<port>/mcp` (streamableHttp) or `…/sse` (sse).
    pub fn url(&self) -> String {
        format!("{}{}", self.base_url(), self.mode.path())
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The server's recent stdout/stderr lines (for failure messages).
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// A node process that serves on a port it reports: its stdout and stderr drained on threads
/// (so the pipes never fill and block node), the last lines kept for failure messages; killed
/// on drop.
pub struct NodeProcess {
    child: Child,
    log: Log,
}

type Log = Arc<Mutex<VecDeque<String>>>;

impl NodeProcess {
    /// Spawns `cmd` (stdin null, output piped) and returns it with the port it reports in a
    /// line `<port_line><port>` (stdout or stderr). Panics, with its output, when it exits
    /// first or reports nothing within 30 s; `what` names it in messages.
    pub fn start(mut cmd: Command, port_line: &str, what: &str) -> (NodeProcess, u16) {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn node (the e2e tests need node 20+ on PATH)");
        let log: Log = Arc::default();
        let (tx, rx) = mpsc::channel();
        pump(child.stdout.take().unwrap(), log.clone(), tx.clone());
        pump(child.stderr.take().unwrap(), log.clone(), tx);
        let mut process = NodeProcess { child, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    if let Some(port) = line.strip_prefix(port_line) {
                        let port = port.trim().parse().expect("a port number");
                        return (process, port);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(Duration::from_millis(100))
                }
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("{what} exited ({status}):\n{}", process.log());
            }
            assert!(
                Instant::now() < deadline,
                "{what} did not report its port within 30 s:\n{}",
                process.log()
            );
        }
    }

    /// The process's recent stdout/stderr lines.
    pub fn log(&self) -> String {
        let log = self.log.lock().unwrap();
        log.iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Drains a child's output on a thread (so the pipe never fills and blocks node), keeping the
/// last lines in `log` and forwarding each line to `tx` while anyone listens.
fn pump(out: impl Read + Send + 'static, log: Log, tx: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line.clone());
            let mut log = log.lock().unwrap();
            if log.len() == 500 {
                log.pop_front();
            }
            log.push_back(line);
        }
    });
}

/// Runs a node script that prints a one-line JSON summary last (stdin null, no proxy
/// variables) and returns whether it exited 0, the summary and its stderr. Panics when it
/// printed no summary; `what` names it in messages.
pub fn run_node_summary(mut cmd: Command, what: &str) -> (bool, Value, String) {
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run node {what} (the e2e tests need node 20+ on PATH): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary: Value = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "{what} printed no JSON summary ({}):\n{stdout}\nstderr:\n{stderr}",
                out.status
            )
        });
    (out.status.success(), summary, stderr.into_owned())
}

/// Runs `node tests/peers/<script> <alibridge> <args…>` isolated in `home` as
/// [`super::bridge::isolated_command`] isolates the binary (`HOME` is `home`, `ALIBRIDGE_HOME`
/// is `home/.alibridge`, no inherited credential or alibridge variable, OAuth tokens in a
/// file), so the bridges it spawns share that home with the test; returns its one-line JSON
/// summary, failing the test unless it exited 0 with `"ok": true`.
pub fn run_peer_script(script: &str, args: &[&str], home: &TempHome) -> Value {
    ensure_npm_peers();
    let mut cmd = Command::new("node");
    for name in super::bridge::inherited_vars_to_scrub() {
        cmd.env_remove(name);
    }
    cmd.arg(peers_dir().join(script))
        .arg(super::bridge::bin())
        .args(args)
        .env("HOME", home.path())
        .env("ALIBRIDGE_HOME", home.alibridge_home())
        .env("ALIBRIDGE_TOKEN_STORE", "file")
        .env("BROWSER", "true");
    let (success, summary, stderr) = run_node_summary(cmd, script);
    assert!(
        success && summary["ok"] == true,
        "{script} failed: {summary:#}\nstderr:\n{stderr}"
    );
    summary
}

/// Runs `node tests/peers/sdk_client.mjs <args…>` (args: alibridge path, URL, extra bridge
/// flags) with an isolated `ALIBRIDGE_HOME` and no proxy variables, and returns its summary.
/// Panics, with the summary and stderr, unless it exited 0 with `"ok": true`.
pub fn run_sdk_client<I, S>(args: I) -> Value
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    ensure_npm_peers();
    let home = TempHome::new("sdk-home");
    let mut cmd = Command::new("node");
    cmd.arg(peers_dir().join("sdk_client.mjs"))
        .args(args)
        .env("ALIBRIDGE_HOME", home.alibridge_home());
    let (success, summary, stderr) = run_node_summary(cmd, "sdk_client.mjs");
    assert!(
        success && summary["ok"] == true,
        "sdk_client failed: {summary:#}\nstderr:\n{stderr}"
    );
    summary
}
