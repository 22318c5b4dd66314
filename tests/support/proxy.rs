//! Drives `alibridge proxy`, the local HTTP proxy mode: [`Proxy`] starts the real binary on a
//! port it picks itself (`--port 0`, read back from its banner), isolated from the machine's
//! credentials and settings, and keeps its stderr; [`post`] sends one JSON-RPC message to it as
//! an MCP client does ([`send`]: any method, any bytes), [`handshake`] opens a session that way,
//! [`Client`] and [`connect`] are rmcp's client through it (answering elicitation), and
//! [`plain_rig`] puts the proxy in front of the rmcp test server.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{ClientConfig, ElicitRequestParams, ElicitResult, ElicitationAction};
use rmcp::service::{RequestContext, RoleClient, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, ErrorData, ServiceExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Child;

use super::bridge::isolated_command;
use super::home::TempHome;
use super::mcp_server::TestServer;
use super::net::http_client;
use super::wait::until;

/// How long a test waits for one step before declaring the proxy stuck.
pub const STEP: Duration = Duration::from_secs(30);

/// An `initialize` request, as a raw client sends it.
pub const INIT: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#;

/// A running `alibridge proxy`, isolated from this machine's credentials and settings.
pub struct Proxy {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub addr: SocketAddr,
    /// stdout up to and including `listening on …`.
    pub banner: String,
    stderr: Arc<Mutex<String>>,
    /// The scratch `HOME` of [`Proxy::start`] (none for [`Proxy::start_in`]), removed with it.
    _home: Option<TempHome>,
}

impl Proxy {
    /// `alibridge proxy --port 0 <args…>` with `env`; returns once it listens.
    pub async fn start(args: &[&str], env: &[(&str, &str)]) -> Proxy {
        let home = TempHome::new("proxy");
        let mut proxy = Proxy::start_in(home.path(), args, env).await;
        proxy._home = Some(home);
        proxy
    }

    /// Like [`Proxy::start`] with `home` as its `HOME` (`ALIBRIDGE_HOME` is `home/.alibridge`),
    /// which the test keeps: what the proxy stores there outlives it (a restarted proxy, or
    /// another `alibridge` command, finds it).
    pub async fn start_in(home: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Proxy {
        let mut cmd = isolated_command(home);
        cmd.arg("proxy")
            .args(["--port", "0"])
            .args(args)
            .env("ALIBRIDGE_TOKEN_STORE", "file")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn alibridge proxy");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (e, mut pipe) = (stderr.clone(), child.stderr.take().unwrap());
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                e.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut banner = String::new();
        let base = loop {
            let line = tokio::time::timeout(STEP, lines.next_line()).await;
            let Ok(Ok(Some(line))) = line else {
                let _ = child.kill().await;
                panic!(
                    "the proxy did not start; stdout:\n{banner}\nstderr:\n{}",
                    stderr.lock().unwrap()
                );
            };
            banner.push_str(&line);
            banner.push('\n');
            if let Some(url) = line.strip_prefix("listening on ") {
                break url.trim().to_string();
            }
        };
        // Keep draining stdout so the proxy never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let addr = base.trim_start_matches("http://").parse().unwrap();
        Proxy {
            child,
            base,
            addr,
            banner,
            stderr,
            _home: None,
        }
    }

    /// `alibridge proxy --auth ak --site-type CN --ims-endpoint <ims> --upstream-url <upstream>
    /// <extra…>` with the AccessKey `key` (id, secret) in its environment and `env` on top.
    pub async fn start_ak(
        ims: &str,
        upstream: &str,
        key: (&str, &str),
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Proxy {
        let mut args = vec![
            "--auth",
            "ak",
            "--site-type",
            "CN",
            "--ims-endpoint",
            ims,
            "--upstream-url",
            upstream,
        ];
        args.extend_from_slice(extra);
        let mut all = vec![
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", key.0),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", key.1),
        ];
        all.extend_from_slice(env);
        Proxy::start(&args, &all).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET /health` without a token: its JSON.
    pub async fn health(&self) -> serde_json::Value {
        http_client()
            .get(self.url("/health"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Everything the proxy wrote to stderr so far (as far as it has been read from the pipe).
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (see [`super::wait`]) until the proxy's stderr contains `needle`; returns all of it.
    /// What the proxy logs reaches the test through a pipe and a reader task, so a line it wrote
    /// before answering may not be here yet when the answer is.
    pub async fn stderr_with(&self, needle: &str) -> String {
        until(format!("the proxy's stderr says {needle:?}"), || {
            self.stderr().contains(needle)
        })
        .await;
        self.stderr()
    }

    /// Sends SIGTERM to the proxy.
    pub fn sigterm(&self) {
        let pid = self.child.id().expect("running");
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
    }

    /// Waits for the proxy to exit (panics after [`STEP`]); returns its exit code.
    pub async fn wait(&mut self) -> i32 {
        let status = tokio::time::timeout(STEP, self.child.wait())
            .await
            .expect("the proxy did not exit in time")
            .unwrap();
        status.code().unwrap_or(-1)
    }
}

/// POSTs one JSON-RPC message as an MCP client does (with an Authorization of its own, which
/// must never travel upstream).
pub async fn post(url: &str, session: Option<&str>, body: &str) -> reqwest::Response {
    send(
        reqwest::Method::POST,
        url,
        session,
        body.as_bytes().to_vec(),
    )
    .await
}

/// Like [`post`], with any HTTP method and any bytes as the body (not necessarily UTF-8 or
/// JSON): what a hostile client can send.
pub async fn send(
    method: reqwest::Method,
    url: &str,
    session: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut rb = http_client()
        .request(method, url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("authorization", "Bearer client-secret-must-not-travel")
        .body(body);
    if let Some(s) = session {
        rb = rb
            .header("mcp-session-id", s)
            .header("mcp-protocol-version", "2025-06-18");
    }
    rb.send().await.expect("the proxy answers")
}

/// initialize + initialized; returns the session id.
pub async fn handshake(url: &str) -> String {
    handshake_with(url, INIT).await
}

/// initialize (with the request `init`) + initialized; returns the session id.
pub async fn handshake_with(url: &str, init: &str) -> String {
    let r = post(url, None, init).await;
    assert_eq!(r.status(), 200, "initialize through the proxy");
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_string();
    assert!(r.text().await.unwrap().contains("protocolVersion"));
    let r = post(
        url,
        Some(&sid),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await;
    assert_eq!(r.status(), 202);
    sid
}

/// The proxy in front of the rmcp test server, no credential.
pub async fn plain_rig(extra: &[&str]) -> (TestServer, Proxy) {
    let server = TestServer::start().await;
    let upstream = format!("http://{}", server.addr());
    let mut args = vec!["--auth", "none", "--upstream-url", upstream.as_str()];
    args.extend_from_slice(extra);
    let proxy = Proxy::start(&args, &[]).await;
    (server, proxy)
}

/// An MCP client (rmcp) that answers elicitation with the queued answers, popped from the end
/// (when it declares the capability; once they run out: decline if `decline_rest`, else
/// cancel), and records what it was asked.
#[derive(Clone, Default)]
pub struct Client {
    pub elicits: bool,
    pub decline_rest: bool,
    pub answers: Arc<Mutex<Vec<ElicitResult>>>,
    pub asked: Arc<Mutex<Vec<Value>>>,
}

impl ClientHandler for Client {
    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _cx: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        self.asked
            .lock()
            .unwrap()
            .push(serde_json::to_value(&request).unwrap());
        let next = self.answers.lock().unwrap().pop();
        let rest = if self.decline_rest {
            ElicitationAction::Decline
        } else {
            ElicitationAction::Cancel
        };
        Ok(next.unwrap_or(ElicitResult::new(rest)))
    }

    fn get_info(&self) -> ClientConfig {
        let caps = if self.elicits {
            json!({"elicitation": {}})
        } else {
            json!({})
        };
        serde_json::from_value(json!({
            "protocolVersion": "2025-06-18",
            "capabilities": caps,
            "clientInfo": {"name": "alibridge-safety-proxy-tests", "version": "0"}
        }))
        .unwrap()
    }
}

/// Connects `client` to `url` (initialize through the proxy).
pub async fn connect(url: &str, client: Client) -> RunningService<RoleClient, Client> {
    let transport = StreamableHttpClientTransport::with_client(
        http_client(),
        StreamableHttpClientTransportConfig::with_uri(url.to_string()),
    );
    client
        .serve(transport)
        .await
        .expect("initialize through the proxy")
}

/// `initialize` from a client that can be asked (form-mode elicitation), as a raw client sends
/// it.
pub const INIT_ELICITING: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"elicitation":{}},"clientInfo":{"name":"raw","version":"0"}}}"#;

/// The next JSON-RPC message on an SSE answer `resp` (events without JSON data are skipped;
/// `buf` keeps what was read past it). Panics when the stream ends or stalls for [`STEP`].
pub async fn next_sse_message(resp: &mut reqwest::Response, buf: &mut Vec<u8>) -> Value {
    loop {
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = buf.drain(..end + 2).collect();
            let data: Vec<&str> = std::str::from_utf8(&event)
                .unwrap()
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            if let Ok(v) = serde_json::from_str::<Value>(&data.join("\n")) {
                return v;
            }
        }
        let chunk = tokio::time::timeout(STEP, resp.chunk())
            .await
            .expect("the proxy sent the next event in time")
            .expect("the stream is readable")
            .expect("the stream did not end");
        // Line ends may be CRLF: events are split on blank lines either way.
        buf.extend(chunk.iter().filter(|b| **b != b'\r'));
    }
}
