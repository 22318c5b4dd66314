//! See the bridge work without an Alibaba Cloud account:
//!
//! ```text
//! cargo run --example demo
//! ```
//!
//! Starts the test suite's MCP server (a real rmcp Streamable HTTP server) on a free loopback
//! port, builds and starts `alibridge <its URL>` exactly as a desktop client would, plays a short
//! conversation over the bridge's stdin, and prints every line that goes in (`→`) and comes out
//! (`←`). The bridge's own log lines (stderr) are shown as they come.

#[path = "../tests/support/mcp_server/mod.rs"]
#[allow(dead_code)]
mod mcp_server;
#[path = "../tests/support/net.rs"]
#[allow(dead_code)]
mod net;
#[path = "../tests/support/wait.rs"]
#[allow(dead_code)]
mod wait;

use std::path::PathBuf;
use std::process::Stdio;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

#[tokio::main]
async fn main() {
    let server = mcp_server::TestServer::start().await;
    println!("MCP server (rmcp, Streamable HTTP) at {}\n", server.url());

    let bin = build_bridge();
    let mut child = Command::new(&bin)
        .arg(server.url())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped")).lines();

    let conversation = [
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
            "protocolVersion":"2025-06-18","capabilities":{},
            "clientInfo":{"name":"demo","version":"1"}}}),
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}),
        json!({"jsonrpc":"2.0","id":3,"method":"tools/call",
               "params":{"name":"echo","arguments":{"text":"hello through alibridge"}}}),
        json!({"jsonrpc":"2.0","id":4,"method":"tools/call",
               "params":{"name":"progress","arguments":{"steps":3},"_meta":{"progressToken":"p1"}}}),
        json!({"jsonrpc":"2.0","id":5,"method":"no/such/method"}),
    ];
    for msg in conversation {
        let line = msg.to_string();
        println!("→ {}", shorten(&line));
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write stdin");
        if let Some(id) = msg.get("id") {
            // Print everything up to and including this request's answer.
            while let Ok(Some(out)) = stdout.next_line().await {
                println!("← {}", shorten(&out));
                let v: Value = serde_json::from_str(&out).expect("stdout carries only JSON-RPC");
                if v.get("method").is_none() && v.get("id") == Some(id) {
                    break;
                }
            }
        }
    }
    drop(stdin); // the client goes away: the bridge deletes the session and exits 0
    let status = child.wait().await.expect("wait for the bridge");
    println!("\nalibridge exited with {status}");
}

/// Builds the `alibridge` binary of this checkout (a no-op when it is up to date) and returns
/// its path, so the demo always runs the code in front of you.
fn build_bridge() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(["build", "--quiet", "--bin", "alibridge"]);
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    let ok = cmd.status().map(|s| s.success()).unwrap_or(false);
    assert!(ok, "`cargo build --bin alibridge` failed");
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("target/<profile>/examples");
    dir.join(format!("alibridge{}", std::env::consts::EXE_SUFFIX))
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 160 {
        format!("{}…", s.chars().take(160).collect::<String>())
    } else {
        s.to_string()
    }
}
