//! Peer input that must not panic, bloat or stall the bridge: messages over
//! `--max-message-size` in both directions, the `--max-in-flight` queue, a GET stream that a
//! server accepts and closes at once, peak memory with a 128 MiB stdin line, hostile numbers on
//! the command line, and a loose `--log-file` made private.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use serde_json::{json, Value};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::support::bridge::{bridge_for, Bridge};
use crate::support::check::tool_text;
use crate::support::home::TempHome;
use crate::support::mcp_server::{Match, TestServer};
use crate::support::net::{listen, serve, LOOPBACK};

/// Asserts `resp` is the bridge's size error (code and kind) and returns its message.
fn too_large(resp: &Value, code: i64) -> String {
    assert_eq!(resp["error"]["code"], code, "not a size error: {resp:.300}");
    assert_eq!(
        resp["error"]["data"]["alibridge"]["kind"], "too_large",
        "{resp:.300}"
    );
    let msg = resp["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("--max-message-size"), "no advice: {msg}");
    msg.to_string()
}

/// A `tools/call` line of about `fill` bytes whose `id` comes after the big `params`, so only a
/// scan of the whole line can find it.
fn big_call_with_late_id(id: Value, fill: usize) -> Vec<u8> {
    let mut line =
        br#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo","arguments":{"text":""#
            .to_vec();
    line.extend(std::iter::repeat_n(b'x', fill));
    line.extend_from_slice(format!(r#""}}}},"id":{id}}}"#).as_bytes());
    line.push(b'\n');
    line
}

/// A stdin line over the limit is answered with an error carrying its id (read after the
/// params), is never sent upstream, and the next request is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_stdin_line_with_a_readable_id_is_answered_and_the_next_is_served() {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &["--max-message-size", "64K"]);
    bridge.initialize().await;
    bridge
        .write_raw(&big_call_with_late_id(json!("late"), 200_000))
        .await;
    let r = bridge.response("late").await;
    let msg = too_large(&r, -32600);
    assert!(msg.contains("64 KiB"), "names the limit: {msg}");
    assert_eq!(r["error"]["data"]["alibridge"]["limit"], 65536);
    assert!(r["error"]["data"]["alibridge"]["size"].as_u64().unwrap() > 200_000);
    assert_eq!(
        tool_text(&bridge.call_tool(2, "echo", json!({"text": "next"})).await),
        "next"
    );
    bridge.finish().await;
    assert!(
        !server
            .requests()
            .iter()
            .any(|r| r.rpc_id == Some(json!("late"))),
        "the oversized message reached the server"
    );
    assert_eq!(server.calls("echo"), 1);
}

/// Without a readable id (not even a JSON object) the error has id null; the bridge goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_stdin_line_without_an_id_gets_an_error_with_id_null() {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &["--max-message-size", "1K"]);
    bridge.initialize().await;
    let mut line = b"[1,".to_vec();
    line.extend(std::iter::repeat_n(b'2', 5000));
    line.push(b'\n');
    bridge.write_raw(&line).await;
    let r = bridge.next().await.expect("an answer");
    assert_eq!(r["id"], Value::Null, "{r}");
    too_large(&r, -32600);
    assert_eq!(
        tool_text(&bridge.call_tool(3, "echo", json!({"text": "ok"})).await),
        "ok"
    );
    bridge.finish().await;
}

/// An SSE answer over the limit fails that request (kind `too_large`, its id); the next call
/// is served on the same session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_sse_answer_is_an_error_for_its_request() {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &["--max-message-size", "1M"]);
    bridge.initialize().await;
    let r = bridge.call_tool(1, "big", json!({"bytes": 2 << 20})).await;
    let msg = too_large(&r, -32000);
    assert!(
        msg.contains("1 MiB") && msg.contains(&server.url()),
        "{msg}"
    );
    let r = bridge.call_tool(2, "big", json!({"bytes": 500_000})).await;
    assert_eq!(tool_text(&r).len(), 500_000);
    bridge.finish().await;
}

/// A JSON answer over the limit is refused (here by its Content-Length, before it is read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_json_answer_is_an_error_for_its_request() {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &["--max-message-size", "64K"]);
    bridge.initialize().await;
    let body = json!({"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "y".repeat(100_000)}]}});
    server.fail_next(Match::tool("echo"), 200, body.to_string());
    let r = bridge.call_tool(1, "echo", json!({"text": "a"})).await;
    too_large(&r, -32000);
    assert_eq!(
        tool_text(&bridge.call_tool(2, "echo", json!({"text": "b"})).await),
        "b"
    );
    bridge.finish().await;
}

/// The client's answer to a server request is over the limit: it cannot be relayed, so the
/// server gets an error for its request instead of waiting forever, and the tool call ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_client_answer_is_refused_to_the_server() {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &["--max-message-size", "4K"]);
    bridge.initialize().await;
    bridge
        .request(
            1,
            "tools/call",
            json!({"name": "elicit", "arguments": {"message": "Sure?"}}),
        )
        .await;
    let req = loop {
        let m = bridge.next().await.expect("elicitation request");
        if m["method"] == "elicitation/create" {
            break m;
        }
    };
    let answer = json!({"jsonrpc": "2.0", "id": req["id"], "result": {"action": "accept", "content": {"answer": "z".repeat(10_000)}}});
    bridge.send(&answer).await;
    let r = bridge.response(1).await;
    assert!(
        r.get("error").is_some() || r["result"]["isError"] == true,
        "{r:.300}"
    );
    bridge.finish().await;
    let refusal = server
        .requests()
        .into_iter()
        .find(|r| r.is_rpc_response() && r.rpc_id == Some(req["id"].clone()))
        .expect("the server got an answer for its request");
    let body: Value = serde_json::from_slice(&refusal.body).unwrap();
    let msg = body["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("--max-message-size"), "{body}");
}

/// `--max-in-flight 1`: a second request waits for the first instead of being refused. The
/// first (a long sleep) ends by `--request-timeout`; only then is the second read and served,
/// so its answer comes after the first's, although it would otherwise be immediate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_cap_queues_requests_instead_of_refusing_them() {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &["--max-in-flight", "1", "--request-timeout", "1"]);
    bridge.initialize().await;
    bridge
        .request(
            1,
            "tools/call",
            json!({"name": "sleep", "arguments": {"ms": 60_000}}),
        )
        .await;
    bridge
        .request(
            2,
            "tools/call",
            json!({"name": "echo", "arguments": {"text": "queued"}}),
        )
        .await;
    let first = loop {
        let m = bridge.next().await.expect("an answer");
        if m.get("method").is_none() {
            break m;
        }
    };
    assert_eq!(
        first["id"], 1,
        "the queued request overtook the cap: {first}"
    );
    assert_eq!(first["error"]["data"]["alibridge"]["kind"], "timeout");
    assert_eq!(tool_text(&bridge.response(2).await), "queued");
    bridge.finish().await;
}

/// A burst far over `--max-in-flight` is relayed in full: every request answered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_the_cap_is_answered_in_full() {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &["--max-in-flight", "2"]);
    bridge.initialize().await;
    for i in 1..=40 {
        bridge
            .request(
                i,
                "tools/call",
                json!({"name": "echo", "arguments": {"text": format!("m{i}")}}),
            )
            .await;
    }
    let mut answered = std::collections::BTreeMap::new();
    while answered.len() < 40 {
        let m = bridge.next().await.expect("stdout open");
        if m.get("method").is_none() {
            answered.insert(m["id"].as_i64().unwrap(), tool_text(&m).to_string());
        }
    }
    for (i, text) in answered {
        assert_eq!(text, format!("m{i}"));
    }
    bridge.finish().await;
    assert_eq!(server.calls("echo"), 40);
}

/// A Streamable HTTP server whose GET stream answers `200` with only `retry: 0` and closes at
/// once, every time: a faithful model of a misconfigured gateway. Counts the GETs; stops when
/// dropped.
struct FlappingServer {
    url: String,
    gets: Arc<AtomicUsize>,
    first_get: Arc<tokio::sync::Notify>,
    _stop: DropGuard,
}

impl FlappingServer {
    async fn start() -> FlappingServer {
        let listener = listen(LOOPBACK).await;
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let gets = Arc::new(AtomicUsize::new(0));
        let first_get = Arc::new(tokio::sync::Notify::new());
        let kill = CancellationToken::new();
        let (g, n) = (gets.clone(), first_get.clone());
        serve(listener, kill.clone(), move |req| {
            let (g, n) = (g.clone(), n.clone());
            async move { flapping(req, &g, &n).await }
        });
        FlappingServer {
            url,
            gets,
            first_get,
            _stop: kill.drop_guard(),
        }
    }
}

async fn flapping(
    req: Request<hyper::body::Incoming>,
    gets: &AtomicUsize,
    first_get: &tokio::sync::Notify,
) -> Response<Full<Bytes>> {
    use http_body_util::BodyExt;
    let reply = |status: u16, ct: &str, body: Vec<u8>| {
        Response::builder()
            .status(status)
            .header("content-type", ct)
            .header("mcp-session-id", "flap-1")
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    match req.method().as_str() {
        "GET" => {
            gets.fetch_add(1, Ordering::SeqCst);
            first_get.notify_one();
            reply(200, "text/event-stream", b"retry: 0\n\n".to_vec())
        }
        "POST" => {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let msg: Value = serde_json::from_slice(&body).unwrap_or_default();
            match (msg.get("method"), msg.get("id")) {
                (Some(m), Some(id)) => {
                    let result = if m == "initialize" {
                        json!({"protocolVersion": "2025-06-18", "capabilities": {}, "serverInfo": {"name": "flapping", "version": "0"}})
                    } else {
                        json!({})
                    };
                    let answer = json!({"jsonrpc": "2.0", "id": id, "result": result});
                    reply(200, "application/json", answer.to_string().into_bytes())
                }
                _ => reply(202, "text/plain", Vec::new()),
            }
        }
        _ => reply(202, "text/plain", Vec::new()),
    }
}

/// The server accepts the GET stream and closes it at once, with `retry: 0`, over and over.
/// The bridge backs off instead of reconnecting in a loop: while 30 requests are relayed one
/// after another, it opens only a handful of GETs (a loop would open thousands).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_stream_closed_at_once_is_not_hammered() {
    let server = FlappingServer::start().await;
    let mut bridge = Bridge::spawn([server.url.as_str(), "--transport", "http-only"]);
    let first_get = server.first_get.notified();
    bridge.initialize().await;
    first_get.await;
    for i in 1..=30 {
        bridge.request(i, "ping", json!({})).await;
        let r = bridge.response(i).await;
        assert!(r.get("result").is_some(), "{r}");
    }
    let gets = server.gets.load(Ordering::SeqCst);
    bridge.finish().await;
    assert!(
        gets <= 8,
        "{gets} GETs while relaying 30 requests: the GET stream is reconnecting in a loop"
    );
}

/// Peak memory (VmHWM) with a 128 MiB stdin line stays under 96 MiB: the line is scanned and
/// dropped as it arrives, answered with an error carrying its id, and the bridge serves on.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_128_mib_stdin_line_does_not_bloat_the_bridge() {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &[]);
    bridge.initialize().await;
    bridge
        .write_raw(br#"{"jsonrpc":"2.0","id":"huge","method":"tools/call","params":{"name":"echo","arguments":{"text":""#)
        .await;
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..128 {
        bridge.write_raw(&chunk).await;
    }
    bridge.write_raw(b"\"}}}\n").await;
    let r = bridge.response("huge").await;
    too_large(&r, -32600);
    assert_eq!(
        tool_text(
            &bridge
                .call_tool(1, "echo", json!({"text": "still here"}))
                .await
        ),
        "still here"
    );
    let pid = bridge.child.id().expect("running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hwm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status");
    bridge.finish().await;
    assert!(
        hwm_kib < 96 * 1024,
        "peak RSS {} MiB with a 128 MiB line (limit 32 MiB)",
        hwm_kib / 1024
    );
}

/// Hostile numbers on the command line (or in the environment) are usage errors (exit 2) with
/// a message, never a panic.
#[test]
fn hostile_numbers_on_the_command_line_are_usage_errors() {
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(crate::support::bridge::bin());
        cmd.args(args);
        for name in crate::support::bridge::inherited_vars_to_scrub() {
            cmd.env_remove(name);
        }
        cmd.envs(env.iter().copied());
        cmd.output().unwrap()
    };
    let url = "http://127.0.0.1:9/mcp";
    for (flag, value) in [
        ("--connect-timeout", "1e308"),
        ("--request-timeout", "18446744073709551616"),
        ("--shutdown-grace", "NaN"),
        ("--auth-timeout", "-1"),
        ("--token-refresh-skew", "inf"),
        ("--max-message-size", "0"),
        ("--max-message-size", "99999999999999999999G"),
        ("--max-in-flight", "0"),
        ("--max-in-flight", "4294967296"),
    ] {
        let arg = format!("{flag}={value}");
        let o = run(&[url, &arg], &[]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(flag), "{flag} {value}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let o = run(&[url], &[("ALIBRIDGE_MAX_MESSAGE_SIZE", "1e9")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("K, M or G suffix"));
}

/// An existing `--log-file` that others could read is made private (0600) before anything is
/// logged to it.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loose_log_file_is_made_private() {
    use std::os::unix::fs::PermissionsExt;
    let server = TestServer::start().await;
    let dir = TempHome::new("log");
    let log = dir.path().join("bridge.log");
    std::fs::write(&log, b"earlier\n").unwrap();
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o644)).unwrap();
    let log_arg = log.to_str().unwrap();
    let mut bridge = bridge_for(&server, &["--log-file", log_arg, "--debug"]);
    bridge.initialize().await;
    bridge.finish().await;
    let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .starts_with("earlier\n"));
}
