//! `--pin-tools` end to end, the core loop against the rmcp test server: the first listing is
//! trusted and pinned (0600 file, one stderr line); a restart with the same tools says nothing;
//! a definition that differs from its pin is held back from the listing and its call refused,
//! `alibridge tools` shows the diff, `--approve` pins it, and the next run relays it;
//! `--forget` starts over.

use serde_json::{json, Value};

use crate::support::bridge::{isolated_command, output, Bridge};
use crate::support::check::policy_refusal;
use crate::support::home::TempHome;
use crate::support::mcp_server::TestServer;

fn bridge(server: &TestServer, home: &TempHome) -> Bridge {
    Bridge::spawn_isolated(
        [
            server.url().as_str(),
            "--transport",
            "http-only",
            "--auth",
            "none",
            "--pin-tools",
        ],
        Vec::<(&str, &str)>::new(),
        home.path(),
    )
}

async fn names(b: &mut Bridge, id: i64) -> Vec<String> {
    b.request(id, "tools/list", json!({})).await;
    let r = b.response(id).await;
    r["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

async fn tools_cli(home: &TempHome, args: &[&str]) -> (i32, String, String) {
    let mut cmd = isolated_command(home.path());
    cmd.arg("tools").args(args);
    output(cmd).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_are_trusted_once_then_held_until_approved() {
    let server = TestServer::start().await;
    let home = TempHome::new("pins-basics");
    let url = server.url();

    let mut b = bridge(&server, &home);
    b.initialize().await;
    let first = names(&mut b, 1).await;
    assert!(first.contains(&"echo".to_string()), "{first:?}");
    let fin = b.finish().await;
    let pins_lines: Vec<&str> = fin
        .stderr
        .lines()
        .filter(|l| l.starts_with("alibridge: pins:"))
        .collect();
    assert_eq!(pins_lines.len(), 1, "{}", fin.stderr);
    assert!(
        pins_lines[0].contains("first use of")
            && pins_lines[0].contains(&format!("pinned {} tools", first.len())),
        "{}",
        pins_lines[0]
    );
    let files = home.pin_files();
    assert_eq!(files.len(), 1);
    let path = files[0].clone();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    // `status` counts the pin files and says where each safety guarantee holds.
    let mut cmd = isolated_command(home.path());
    cmd.arg("status");
    let (code, out, err) = output(cmd).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("pinned tool definitions (--pin-tools): 1 endpoint/identity file(s)"),
        "{out}"
    );
    assert!(
        out.contains("safety flags: with AccessKeys, --read-only"),
        "{out}"
    );

    // Unchanged: silent.
    let mut b = bridge(&server, &home);
    b.initialize().await;
    assert_eq!(names(&mut b, 1).await, first);
    let fin = b.finish().await;
    assert!(!fin.stderr.contains("alibridge: pins:"), "{}", fin.stderr);

    // The pinned definition of `echo` differs from what the server lists now (as after a
    // server-side change): held back, refused, shown, approved.
    tamper(&home, "echo");
    let mut b = bridge(&server, &home);
    b.initialize().await;
    let now = names(&mut b, 1).await;
    assert!(!now.contains(&"echo".to_string()), "held back: {now:?}");
    let resp = b.call_tool(2, "echo", json!({"text": "hi"})).await;
    let (rule, msg) = policy_refusal(&resp);
    assert_eq!(rule, "--pin-tools");
    assert!(
        msg.contains("echo") && msg.contains("changed") && msg.contains("alibridge tools"),
        "{msg}"
    );
    let fin = b.finish().await;
    assert!(
        fin.stderr.contains("alibridge: pins: withheld 1"),
        "{}",
        fin.stderr
    );
    assert_eq!(
        server.calls("echo"),
        0,
        "the refused call never reached the server"
    );

    let (code, out, err) = tools_cli(&home, &[&url]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("pending: held back until approved (1)"),
        "{out}"
    );
    assert!(out.contains("- The old description."), "{out}");
    let (code, _, err) = tools_cli(&home, &[&url, "--approve", "nope"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("not held back"), "{err}");
    let (code, out, err) = tools_cli(&home, &[&url, "--approve", "echo"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pending: none"), "{out}");

    let mut b = bridge(&server, &home);
    b.initialize().await;
    assert_eq!(names(&mut b, 1).await, first, "approved: listed again");
    let resp = b.call_tool(2, "echo", json!({"text": "hi"})).await;
    assert!(resp.get("result").is_some(), "{resp}");
    b.finish().await;

    let (code, out, _) = tools_cli(&home, &[&url, "--forget"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("forgot"), "{out}");
    let (code, _, err) = tools_cli(&home, &[&url]).await;
    assert_eq!(code, 1);
    assert!(err.contains("no pins"), "{err}");
}

/// The proxy pins per upstream server: its first listing is trusted and recorded, and a tool
/// it has not seen listed is refused once something is pinned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_pins_each_server() {
    use crate::support::proxy::{handshake, post, Proxy};
    let server = TestServer::start().await;
    let base = format!("http://{}", server.addr());
    let proxy = Proxy::start(
        &["--auth", "none", "--upstream-url", &base, "--pin-tools"],
        &[],
    )
    .await;
    let url = proxy.url("/mcp");
    let sid = handshake(&url).await;
    let r = post(
        &url,
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#,
    )
    .await;
    let text = r.text().await.unwrap();
    assert!(text.contains("\"echo\""), "{text}");
    let r = post(
        &url,
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"not-listed","arguments":{}}}"#,
    )
    .await;
    let text = r.text().await.unwrap();
    assert!(
        text.contains("--pin-tools") && text.contains("not-listed is new"),
        "{text}"
    );
    let stderr = proxy.stderr();
    assert!(
        stderr.contains(&format!("alibridge: pins: first use of {}", server.url())),
        "{stderr}"
    );
}

/// Makes the pinned definition of `tool` in the only pin file under `home` differ from what
/// the server lists (as after a change on the server).
fn tamper(home: &TempHome, tool: &str) {
    let dir = home.alibridge_home().join("pins");
    let path = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let mut file: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    file["pinned"][tool]["definition"]["description"] = json!("The old description.");
    file["pinned"][tool]["digest"] = json!("0".repeat(64));
    std::fs::write(&path, serde_json::to_string(&file).unwrap()).unwrap();
}

/// A modern-only server (MCP 2026-07-28; the older client is translated): its listing is
/// pinned and a changed tool held back the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modern_servers_tools_are_pinned_too() {
    use crate::support::peers_modern::{Legacy, ModernServer};
    use crate::support::pins::{assert_first_use, assert_withheld_line, list_run};
    let server = ModernServer::start(Legacy::Reject);
    let url = server.url();
    let home = TempHome::new("pins-modern");
    let (first, fin) = list_run(&url, &home, &[]).await;
    assert!(!first.is_empty());
    assert_first_use(&fin.stderr, first.len());
    let victim = first[0].clone();
    tamper(&home, &victim);
    let (now, fin) = list_run(&url, &home, &[]).await;
    assert!(!now.contains(&victim), "{victim} held back: {now:?}");
    assert_eq!(now.len(), first.len() - 1);
    assert_withheld_line(&fin.stderr);
}

/// The audit log records the person's answer about held-back tools and each refused call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_and_withheld_calls_are_audited() {
    use crate::support::pins::{accept, answer, pin_question, pinned_bridge};
    let server = TestServer::start().await;
    let url = server.url();
    let home = TempHome::new("pins-audit");
    let audit = home.file("audit.jsonl");
    let mut b = pinned_bridge(&url, &home, &["--audit-log", &audit]);
    b.initialize().await;
    names(&mut b, 1).await;
    b.finish().await;
    tamper(&home, "echo");
    let mut b = pinned_bridge(&url, &home, &["--audit-log", &audit]);
    b.initialize().await;
    let from = b.seen.len();
    names(&mut b, 1).await;
    let refused = b.call_tool(2, "echo", json!({"text": "x"})).await;
    assert_eq!(policy_refusal(&refused).0, "--pin-tools");
    let q = pin_question(&mut b, from).await;
    answer(&mut b, &q, accept()).await;
    // Once approved, the client is told to list again, and the call passes.
    loop {
        let m = b.next().await.expect("list_changed");
        if m["method"] == "notifications/tools/list_changed" {
            break;
        }
    }
    let ok = b.call_tool(3, "echo", json!({"text": "x"})).await;
    assert!(ok.get("result").is_some(), "{ok}");
    b.finish().await;
    let lines: Vec<Value> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines.iter().any(|l| l["tool"] == "echo"
            && l["decision"] == "denied"
            && l["rule"] == "--pin-tools"),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l["tool"] == "echo"
            && l["decision"] == "approved"
            && l["rule"] == "--pin-tools"),
        "{lines:?}"
    );
}
