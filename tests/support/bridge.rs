//! Drives the real `alibridge` binary over piped stdio, the way a desktop MCP client does, and
//! runs its other commands isolated from the machine ([`isolated_command`], [`output`]).
//!
//! Every line the bridge prints on stdout is checked to be a single JSON object as it is read, so
//! any test that reads output also proves that stdout carried nothing but JSON-RPC; and
//! [`Bridge::finish`] proves the run ended cleanly with every request answered exactly once.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};

use super::home::TempHome;
use super::mcp_server::TestServer;

/// How long a test waits for one line before declaring the bridge stuck.
pub const LINE_TIMEOUT: Duration = Duration::from_secs(20);

/// A running bridge process with its stdio pipes.
pub struct Bridge {
    pub child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr_task: Option<tokio::task::JoinHandle<String>>,
    /// Every message read from stdout so far, in order.
    pub seen: Vec<Value>,
    /// The scratch `ALIBRIDGE_HOME` of [`Bridge::spawn`], removed with the bridge.
    scratch_home: Option<TempHome>,
}

/// What a bridge left behind after [`Bridge::finish`].
pub struct Finished {
    /// Every message it printed during the whole run, in order.
    pub seen: Vec<Value>,
    pub stderr: String,
}

/// The path of the binary under test (built by cargo for integration tests).
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_alibridge")
}

impl Bridge {
    /// Spawns `alibridge <args…>` with a scratch `ALIBRIDGE_HOME` and no proxy variables.
    pub fn spawn<I, S>(args: I) -> Bridge
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        Self::spawn_with_env(args, std::iter::empty::<(String, String)>())
    }

    /// Like [`Bridge::spawn`], with extra environment variables.
    pub fn spawn_with_env<I, S, E, K, V>(args: I, env: E) -> Bridge
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
        E: IntoIterator<Item = (K, V)>,
        K: AsRef<std::ffi::OsStr>,
        V: AsRef<std::ffi::OsStr>,
    {
        let home = TempHome::new("test-home");
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .env("ALIBRIDGE_HOME", home.alibridge_home())
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy")
            .envs(env);
        let mut bridge = Self::spawn_cmd(cmd);
        bridge.scratch_home = Some(home);
        bridge
    }

    /// Like [`Bridge::spawn_with_env`], fully isolated from the machine's credentials: `HOME` is
    /// `home` (so `~/.aliyun/config.json` and `~/.alibabacloud/credentials` are the test's),
    /// `ALIBRIDGE_HOME` is `home/.alibridge`, no `ALIBABA_CLOUD_*` / `ALIBABACLOUD_*` /
    /// `ALICLOUD_*` / `ALIBRIDGE_*` / proxy variable is inherited, OAuth tokens go to a file
    /// (never the OS keychain), and `BROWSER` is `true` (a browser sign-in, should one start,
    /// opens nothing). `env` is applied last.
    pub fn spawn_isolated<I, S, E, K, V>(args: I, env: E, home: &Path) -> Bridge
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
        E: IntoIterator<Item = (K, V)>,
        K: AsRef<std::ffi::OsStr>,
        V: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = isolated_command(home);
        cmd.args(args)
            .env("ALIBRIDGE_TOKEN_STORE", "file")
            .envs(env);
        Self::spawn_cmd(cmd)
    }

    fn spawn_cmd(mut cmd: Command) -> Bridge {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn alibridge");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let stderr = child.stderr.take().unwrap();
        let stderr_task = Some(tokio::spawn(collect(stderr)));
        Bridge {
            child,
            stdin,
            stdout,
            stderr_task,
            seen: Vec::new(),
            scratch_home: None,
        }
    }

    /// Writes raw bytes to the bridge's stdin (no newline added).
    pub async fn write_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin already closed");
        stdin.write_all(bytes).await.expect("write stdin");
        stdin.flush().await.expect("flush stdin");
    }

    /// Sends one JSON-RPC message as a line.
    pub async fn send(&mut self, msg: &Value) {
        let mut line = serde_json::to_vec(msg).unwrap();
        line.push(b'\n');
        self.write_raw(&line).await;
    }

    /// Sends a request with the given id.
    pub async fn request(&mut self, id: impl Into<Value>, method: &str, params: Value) {
        self.send(&json!({"jsonrpc":"2.0","id":id.into(),"method":method,"params":params}))
            .await;
    }

    /// Sends a notification.
    pub async fn notify(&mut self, method: &str, params: Value) {
        self.send(&json!({"jsonrpc":"2.0","method":method,"params":params}))
            .await;
    }

    /// Closes stdin (the client went away).
    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// Reads the next stdout line, asserting it is one JSON-RPC object. `None` on EOF.
    pub async fn next(&mut self) -> Option<Value> {
        let line = tokio::time::timeout(LINE_TIMEOUT, self.stdout.next_line())
            .await
            .expect("bridge printed nothing in time")
            .expect("read stdout")?;
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line:.200}"));
        assert!(
            v.is_object(),
            "stdout line is not a JSON object: {line:.200}"
        );
        assert_eq!(
            v["jsonrpc"], "2.0",
            "stdout line is not JSON-RPC 2.0: {line:.200}"
        );
        self.seen.push(v.clone());
        Some(v)
    }

    /// Reads until the response with `id` arrives; messages before it are kept in `seen`.
    pub async fn response(&mut self, id: impl Into<Value>) -> Value {
        let id = id.into();
        loop {
            let v = self
                .next()
                .await
                .unwrap_or_else(|| panic!("stdout closed before response {id}"));
            if v.get("method").is_none() && v["id"] == id {
                return v;
            }
        }
    }

    /// The standard initialize + initialized handshake; returns the initialize result.
    pub async fn initialize(&mut self) -> Value {
        self.request(
            0,
            "initialize",
            json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {"sampling": {}, "elicitation": {}, "roots": {"listChanged": true}},
                "clientInfo": {"name": "alibridge-tests", "version": "0"}
            }),
        )
        .await;
        let resp = self.response(0).await;
        assert!(resp.get("result").is_some(), "initialize failed: {resp}");
        self.notify("notifications/initialized", json!({})).await;
        resp["result"].clone()
    }

    /// Calls a tool and returns the whole response message.
    pub async fn call_tool(&mut self, id: impl Into<Value>, name: &str, args: Value) -> Value {
        let id = id.into();
        self.request(
            id.clone(),
            "tools/call",
            json!({"name": name, "arguments": args}),
        )
        .await;
        self.response(id).await
    }

    /// `initialize` + `initialized` as a client WITHOUT any capability (no elicitation, so
    /// the bridge can ask nothing of it); returns the initialize result.
    pub async fn initialize_plain(&mut self) -> Value {
        self.request(0, "initialize", super::check::init_params())
            .await;
        let resp = self.response(0).await;
        assert!(resp.get("result").is_some(), "initialize failed: {resp}");
        self.notify("notifications/initialized", json!({})).await;
        resp["result"].clone()
    }

    /// Lists every page of tools (request ids `id`, `id + 1`, …); the tools in order. Panics
    /// on an error answer.
    pub async fn list_all_tools(&mut self, id: i64) -> Vec<Value> {
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        for n in 0.. {
            let params = match &cursor {
                Some(c) => json!({"cursor": c}),
                None => json!({}),
            };
            self.request(id + n, "tools/list", params).await;
            let resp = self.response(id + n).await;
            let result = &resp["result"];
            tools.extend(
                result["tools"]
                    .as_array()
                    .unwrap_or_else(|| panic!("tools/list failed: {resp}"))
                    .iter()
                    .cloned(),
            );
            match result["nextCursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        tools
    }

    /// [`Bridge::list_all_tools`], the names only.
    pub async fn list_all_names(&mut self, id: i64) -> Vec<String> {
        self.list_all_tools(id)
            .await
            .iter()
            .map(|t| t["name"].as_str().expect("a tool name").to_string())
            .collect()
    }

    /// The first message from `seen[from..]` on that `matches`, reading more lines as needed
    /// (a message may have arrived before the response a test waited for: it is in `seen`).
    pub async fn seen_or_next(&mut self, from: usize, matches: impl Fn(&Value) -> bool) -> Value {
        loop {
            if let Some(v) = self.seen.iter().skip(from).find(|v| matches(v)) {
                return v.clone();
            }
            if self.next().await.is_none() {
                panic!(
                    "stdout closed before the awaited message; seen: {:?}",
                    self.seen
                );
            }
        }
    }

    /// The messages of `seen` with this `method`.
    pub fn seen_method(&self, method: &str) -> Vec<Value> {
        self.seen
            .iter()
            .filter(|v| v["method"] == method)
            .cloned()
            .collect()
    }

    /// Reads every remaining stdout line until EOF (stdin should be closed first).
    pub async fn drain(&mut self) -> Vec<Value> {
        let mut rest = Vec::new();
        while let Some(v) = self.next().await {
            rest.push(v);
        }
        rest
    }

    /// Waits for the process to exit and returns its exit code (panics after `LINE_TIMEOUT`).
    pub async fn wait(&mut self) -> i32 {
        let status = tokio::time::timeout(LINE_TIMEOUT, self.child.wait())
            .await
            .expect("bridge did not exit in time")
            .expect("wait");
        status.code().unwrap_or(-1)
    }

    /// Everything the bridge wrote to stderr. Call after the process exited (or it waits).
    pub async fn stderr(&mut self) -> String {
        match self.stderr_task.take() {
            Some(t) => t.await.unwrap_or_default(),
            None => String::new(),
        }
    }

    /// Closes stdin, reads stdout to EOF, and asserts exit code 0 and that no request id got
    /// two answers (unreadable lines are all answered with id null, so null is not counted).
    pub async fn finish(mut self) -> Finished {
        self.close_stdin();
        self.drain().await;
        let code = self.wait().await;
        let stderr = self.stderr().await;
        assert_eq!(code, 0, "bridge exit code; stderr:\n{stderr}");
        for (id, n) in responses_per_id(&self.seen) {
            assert!(
                id == "null" || n == 1,
                "id {id} answered {n} times; stderr:\n{stderr}"
            );
        }
        Finished {
            seen: std::mem::take(&mut self.seen),
            stderr,
        }
    }

    /// Waits for a bridge that should exit on its own; returns (exit code, stderr).
    pub async fn exited(mut self) -> (i32, String) {
        let code = self.wait().await;
        (code, self.stderr().await)
    }

    /// Sends SIGTERM (Unix) to the bridge.
    #[cfg(unix)]
    pub fn sigterm(&self) {
        let pid = self.child.id().expect("running") as i32;
        // SAFETY-free: `kill` via the shell keeps this crate free of libc.
        std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .unwrap();
    }
}

/// Spawns the bridge against `server` (`--transport http-only` unless `extra` says otherwise).
pub fn bridge_for(server: &TestServer, extra: &[&str]) -> Bridge {
    let mut args = vec![server.url()];
    if !extra.contains(&"--transport") {
        args.extend(["--transport".to_owned(), "http-only".to_owned()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    Bridge::spawn(args)
}

/// `alibridge` isolated from the machine's credentials and settings: `HOME` is `home`,
/// `ALIBRIDGE_HOME` is `home/.alibridge`, nothing of [`inherited_vars_to_scrub`] is inherited,
/// and `BROWSER` is `true` (a browser sign-in, should one start, opens nothing). Killed on drop.
pub fn isolated_command(home: &Path) -> Command {
    let mut cmd = Command::new(bin());
    for name in inherited_vars_to_scrub() {
        cmd.env_remove(name);
    }
    cmd.env("HOME", home)
        .env("ALIBRIDGE_HOME", home.join(".alibridge"))
        .env("BROWSER", "true")
        .kill_on_drop(true);
    cmd
}

/// Runs `cmd` to its end with no stdin (panics after 30 s); returns (exit code, stdout, stderr).
pub async fn output(mut cmd: Command) -> (i32, String, String) {
    cmd.stdin(Stdio::null());
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("the command finished in time")
        .expect("run alibridge");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Names of the variables of this process that must not reach an isolated child: credential
/// variables of the Alibaba Cloud tools, alibridge's own settings, proxies (any `*_PROXY`),
/// `USERPROFILE`.
pub fn inherited_vars_to_scrub() -> Vec<std::ffi::OsString> {
    const PREFIXES: [&str; 4] = ["ALIBABA_CLOUD_", "ALIBABACLOUD_", "ALICLOUD_", "ALIBRIDGE_"];
    const NAMES: [&str; 8] = [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "USERPROFILE",
        "ACCESS_KEY_ID",
        "ACCESS_KEY_SECRET",
        "SECURITY_TOKEN",
    ];
    std::env::vars_os()
        .map(|(k, _)| k)
        .filter(|k| {
            let name = k.to_string_lossy().to_ascii_uppercase();
            PREFIXES.iter().any(|p| name.starts_with(p))
                || NAMES.contains(&name.as_str())
                || name.ends_with("_PROXY")
        })
        .collect()
}

async fn collect(mut stderr: ChildStderr) -> String {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let _ = stderr.read_to_end(&mut buf).await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// Counts the responses (messages without `method`) per id in `msgs`.
pub fn responses_per_id(msgs: &[Value]) -> std::collections::HashMap<String, usize> {
    let mut m = std::collections::HashMap::new();
    for v in msgs {
        if v.get("method").is_none() {
            if let Some(id) = v.get("id") {
                *m.entry(id.to_string()).or_insert(0) += 1;
            }
        }
    }
    m
}
