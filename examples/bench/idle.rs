//! `bench --wan`, after idle: a `tools/call` after a silence (120 s; 2 s with `--quick`, same
//! code path), against a server that keeps idle connections open and one that closes them
//! (after 60 s; 1 s with `--quick`), through the same delay proxy as the start-up figures.
//! Each case has its own rmcp test server and proxy, so the connections opened and the
//! requests in order during the call are its own; the passthrough (a plain HTTP client that
//! keeps its idle connections, no bridge) is measured beside alibridge in the same run. The
//! cases of all runs wait out their silence together, so the mode costs one silence per run
//! set, not one per case.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::time::timeout;

use super::delay_proxy::DelayProxy;
use super::mcp_server::TestServer;
use super::{addr_of, answer, net, requests_since, scratch, DELAY};

/// The silence, and the server's idle timeout when it closes connections.
pub struct Idle {
    pub silence: Duration,
    pub server_closes_after: Duration,
}

impl Idle {
    pub fn new(quick: bool) -> Idle {
        match quick {
            false => Idle {
                silence: Duration::from_secs(120),
                server_closes_after: Duration::from_secs(60),
            },
            true => Idle {
                silence: Duration::from_secs(2),
                server_closes_after: Duration::from_secs(1),
            },
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Client {
    Alibridge,
    Passthrough,
}

struct Case {
    client: Client,
    server_closes: bool,
}

struct Sample {
    ms: f64,
    connections: usize,
    turns: usize,
    /// `METHOD rpc-method` of each request the server saw during the call, in order.
    requests: Vec<String>,
}

/// Runs every case `runs` times and prints the table.
pub async fn run(runs: usize, bridge: PathBuf, idle: Idle) -> super::super::Res<()> {
    let cases = [
        (Client::Passthrough, false),
        (Client::Alibridge, false),
        (Client::Passthrough, true),
        (Client::Alibridge, true),
    ]
    .map(|(client, server_closes)| Case {
        client,
        server_closes,
    });
    println!();
    println!(
        "After idle: tools/call after {} s of silence; the closing server drops idle connections \
         after {} s ({runs} run(s), all cases waiting together)",
        idle.silence.as_secs_f64(),
        idle.server_closes_after.as_secs_f64()
    );
    println!();
    println!(
        "| server | client | tools/call, ms (min–max) | in RTTs | connections opened | turns | requests (last run) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut all = Vec::new();
    for case in &cases {
        for _ in 0..runs {
            all.push(one(case, &bridge, &idle));
        }
    }
    let samples = futures_util::future::join_all(all).await;
    let rtt = DELAY.as_secs_f64() * 2000.0;
    for (i, case) in cases.iter().enumerate() {
        let mine: Vec<&Sample> = samples[i * runs..(i + 1) * runs]
            .iter()
            .map(|s| s.as_ref().map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        let min = mine.iter().map(|s| s.ms).fold(f64::MAX, f64::min);
        let max = mine.iter().map(|s| s.ms).fold(0.0, f64::max);
        let conns: Vec<String> = mine.iter().map(|s| s.connections.to_string()).collect();
        let turns: Vec<String> = mine.iter().map(|s| s.turns.to_string()).collect();
        let last = mine.last().expect("one run at least");
        println!(
            "| {} | {} | {min:.0}–{max:.0} | {:.2}–{:.2} | {} | {} | {} |",
            match case.server_closes {
                true => format!("closes idle after {} s", idle.server_closes_after.as_secs()),
                false => "keeps connections".to_string(),
            },
            match case.client {
                Client::Alibridge => "alibridge",
                Client::Passthrough => "passthrough",
            },
            min / rtt,
            max / rtt,
            conns.join("/"),
            turns.join("/"),
            last.requests.join(", ")
        );
    }
    println!();
    println!(
        "Connections and turns per run. A connect costs one round trip at the proxy; the \
         passthrough keeps idle connections for as long as the server does."
    );
    Ok(())
}

/// One case: a session, the silence, then the timed `tools/call`.
async fn one(case: &Case, bridge: &PathBuf, idle: &Idle) -> super::super::Res<Sample> {
    let server = TestServer::start().await;
    let listener = net::listen(net::LOOPBACK).await;
    let target = addr_of(&server.url())?;
    let proxy = match case.server_closes {
        true => DelayProxy::start_closing_idle(listener, target, DELAY, idle.server_closes_after),
        false => DelayProxy::start(listener, target, DELAY),
    };
    let url = format!("http://{}/mcp", proxy.addr());
    let mut session: Box<dyn Session> = match case.client {
        Client::Alibridge => Box::new(Bridged::start(bridge, &url).await?),
        Client::Passthrough => Box::new(Direct::start(&url, None).await?),
    };
    tokio::time::sleep(idle.silence).await;
    let mark = server.all_requests().len();
    proxy.reset_counts();
    let t0 = Instant::now();
    session.call().await?;
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    let (connections, turns) = (proxy.connections(), proxy.turns());
    let requests = requests_since(&server, mark);
    session.end().await;
    Ok(Sample {
        ms,
        connections,
        turns,
        requests,
    })
}

trait Session: Send {
    /// One `tools/call echo`, answered.
    fn call(&mut self) -> futures_util::future::BoxFuture<'_, super::super::Res<()>>;
    fn end(&mut self) -> futures_util::future::BoxFuture<'_, ()>;
}

/// alibridge with a fresh state directory: initialize, initialized, tools/list.
struct Bridged {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    home: PathBuf,
}

impl Bridged {
    async fn start(bridge: &PathBuf, url: &str) -> super::super::Res<Bridged> {
        let home = scratch("idle");
        std::fs::create_dir_all(&home)?;
        let mut child = Command::new(bridge)
            .args([url, "--auth", "none"])
            .env("ALIBRIDGE_HOME", &home)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(home.join("stderr.log"))?)
            .kill_on_drop(true)
            .spawn()?;
        let mut stdin = child.stdin.take().ok_or("no stdin")?;
        let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": super::super::PROTOCOL, "capabilities": {},
            "clientInfo": {"name": "bench-idle", "version": "0"}}});
        stdin.write_all(format!("{init}\n").as_bytes()).await?;
        timeout(super::super::CALL_TIMEOUT, answer(&mut lines, 1))
            .await
            .map_err(|_| "initialize timed out")??;
        let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
        let msgs = format!(
            "{}\n{list}\n",
            String::from_utf8_lossy(super::super::INITIALIZED)
        );
        stdin.write_all(msgs.as_bytes()).await?;
        timeout(super::super::CALL_TIMEOUT, answer(&mut lines, 2))
            .await
            .map_err(|_| "tools/list timed out")??;
        Ok(Bridged {
            child,
            stdin,
            lines,
            home,
        })
    }
}

impl Session for Bridged {
    fn call(&mut self) -> futures_util::future::BoxFuture<'_, super::super::Res<()>> {
        Box::pin(async move {
            let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": "after idle"}}});
            self.stdin.write_all(format!("{call}\n").as_bytes()).await?;
            timeout(super::super::CALL_TIMEOUT, answer(&mut self.lines, 3))
                .await
                .map_err(|_| "tools/call timed out")?
        })
    }

    fn end(&mut self) -> futures_util::future::BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = self.stdin.shutdown().await;
            if timeout(Duration::from_secs(10), self.child.wait())
                .await
                .is_err()
            {
                let _ = self.child.kill().await;
            }
            let _ = std::fs::remove_dir_all(&self.home);
        })
    }
}

/// The passthrough: a plain HTTP client speaking Streamable HTTP itself, its idle connections
/// kept as long as the server keeps them.
pub struct Direct {
    http: reqwest::Client,
    url: String,
    session: String,
    /// `Authorization: Bearer …` on every request, when the server wants one.
    bearer: Option<String>,
}

impl Direct {
    /// Connects and runs initialize, `notifications/initialized` and `tools/list`, each
    /// waited on in turn, as an order-keeping client does.
    pub async fn start(url: &str, bearer: Option<&str>) -> super::super::Res<Direct> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .pool_idle_timeout(None)
            .tcp_nodelay(true)
            .build()?;
        let mut d = Direct {
            http,
            url: url.to_string(),
            session: String::new(),
            bearer: bearer.map(str::to_string),
        };
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": super::super::PROTOCOL, "capabilities": {},
            "clientInfo": {"name": "bench-idle", "version": "0"}}});
        let resp = d.post(&init).await?;
        d.session = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .ok_or("no session id")?
            .to_string();
        resp.bytes().await?;
        let initialized: Value = serde_json::from_slice(super::super::INITIALIZED)?;
        d.post(&initialized).await?.bytes().await?;
        let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
        d.post(&list).await?.bytes().await?;
        Ok(d)
    }

    async fn post(&self, body: &Value) -> super::super::Res<reqwest::Response> {
        let mut req = self
            .http
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(token) = &self.bearer {
            req = req.bearer_auth(token);
        }
        if !self.session.is_empty() {
            req = req
                .header("mcp-session-id", &self.session)
                .header("mcp-protocol-version", super::super::PROTOCOL);
        }
        let resp = timeout(super::super::CALL_TIMEOUT, req.send())
            .await
            .map_err(|_| "request timed out")??;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()).into());
        }
        Ok(resp)
    }
}

impl Session for Direct {
    fn call(&mut self) -> futures_util::future::BoxFuture<'_, super::super::Res<()>> {
        Box::pin(async move {
            let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": "after idle"}}});
            let body = self.post(&call).await?.text().await?;
            match body.contains("after idle") {
                true => Ok(()),
                false => Err(format!("unexpected answer: {body}").into()),
            }
        })
    }

    fn end(&mut self) -> futures_util::future::BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}
