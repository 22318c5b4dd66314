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
    let dir = home.alibridge_home().join("pins");
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    assert_eq!(files.len(), 1);
    let path = files[0].path();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    // Unchanged: silent.
    let mut b = bridge(&server, &home);
    b.initialize().await;
    assert_eq!(names(&mut b, 1).await, first);
    let fin = b.finish().await;
    assert!(!fin.stderr.contains("alibridge: pins:"), "{}", fin.stderr);

    // The pinned definition of `echo` differs from what the server lists now (as after a
    // server-side change): held back, refused, shown, approved.
    let mut file: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    file["pinned"]["echo"]["definition"]["description"] = json!("The old description.");
    file["pinned"]["echo"]["digest"] = json!("0".repeat(64));
    std::fs::write(&path, serde_json::to_string(&file).unwrap()).unwrap();
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
