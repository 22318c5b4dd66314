//! The real bridge, started with an entry's binary and arguments and asked `initialize` and
//! `tools/list` as a client would: token minting and the server are checked by the very
//! binary a client runs. What failed is read from the answer's data
//! (`data.alibridge.kind`/`credential`), never from the text of a message.

use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::{Report, PROBE_TIMEOUT, STDERR_LIMIT, STEP_TIMEOUT};
use crate::auth::AuthFailure;

/// What the bridge reported, for the checks that follow it.
#[derive(Default)]
pub(super) struct Probed {
    /// `initialize` was answered with a result.
    pub initialized: bool,
    /// The credential failed, and how.
    pub credential_failure: Option<Refusal>,
}

/// How a credential failed, as far as `doctor` decides on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The identity may not mint tokens, or the application is not authorized (pre-check).
    NotPermitted,
    /// Anything else (a wrong secret, the network, a bridge that stopped at start).
    Other,
}

impl Refusal {
    /// From the `data.alibridge.credential` of a JSON-RPC error, when there is one.
    fn of(data: &Value) -> Refusal {
        match serde_json::from_value::<AuthFailure>(data["alibridge"]["credential"].clone()) {
            Ok(AuthFailure::NotPermitted) => Refusal::NotPermitted,
            _ => Refusal::Other,
        }
    }
}

/// Runs the bridge as a client would and asks `initialize` and `tools/list`. `credential`:
/// the line that says which credential the bridge uses (chosen in this process), when known.
pub(super) async fn probe(
    r: &mut Report,
    command: &Path,
    args: &[String],
    credential: Option<&str>,
) -> Probed {
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
    // A bridge that stops at start says why in its last line.
    let last_words = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(str::to_string);
    let credential = credential.unwrap_or("the bridge's choice");
    let (init, tools, rtt) = match outcome {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            r.fail(
                "credential",
                last_words.unwrap_or(e),
                "see the message; `alibridge status` shows what is configured",
            );
            return Probed {
                initialized: false,
                credential_failure: Some(Refusal::Other),
            };
        }
        Err(_) => {
            r.fail(
                "MCP",
                format!("no answer to initialize in {PROBE_TIMEOUT:?}"),
                "check the server and the credential with --debug",
            );
            return Probed::default();
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
                format!("{credential}: {msg}"),
                "see the message above",
            );
            return Probed {
                initialized: false,
                credential_failure: Some(Refusal::of(&err["data"])),
            };
        } else {
            r.ok("credential", credential);
            r.fail(
                "MCP",
                format!("initialize failed: {msg}"),
                "see the message above; run the bridge with --debug for details",
            );
        }
        return Probed::default();
    }
    r.ok("credential", credential);
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
        initialized: true,
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
