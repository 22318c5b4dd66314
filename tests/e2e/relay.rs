//! Happy paths through the real binary against the in-process rmcp server: handshake headers,
//! passthrough of unknown methods and fields, every test tool, server→client requests, the GET
//! stream, concurrency, very large messages, DELETE on exit and `--header`. The server→client
//! request round trips (sampling, elicitation) share one case table and runner
//! ([`server_request`]).

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::support::bridge::{bridge_for, responses_per_id};
use crate::support::cases;
use crate::support::check::tool_text;
use crate::support::home::TempHome;
use crate::support::mcp_server::{SeenRequest, TestServer};

fn tools_calls<'a>(reqs: &'a [SeenRequest], tool: &str) -> Vec<&'a SeenRequest> {
    reqs.iter()
        .filter(|r| r.tool.as_deref() == Some(tool))
        .collect()
}

/// Initialize relays the server's answer; every later request echoes Mcp-Session-Id and sends
/// MCP-Protocol-Version, and a GET stream is opened after initialized.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initialize_echoes_session_id_and_protocol_version() {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &[]);
    let result = bridge.initialize().await;
    assert_eq!(result["protocolVersion"], "2025-06-18");
    assert_eq!(result["serverInfo"]["name"], "rmcp");
    bridge.request(1, "tools/list", json!({})).await;
    bridge.response(1).await;
    server.wait_for_request(|r| r.method == "GET").await;
    let sid = server.issued_session();
    let seen = bridge.finish().await.seen;
    assert_eq!(responses_per_id(&seen).len(), 2);

    let reqs = server.requests();
    // `--protocol auto` sends the client's initialize first (issue 21); no probe before it.
    let init = &reqs[0];
    assert_eq!(init.rpc_method.as_deref(), Some("initialize"));
    assert_eq!(
        init.header("mcp-session-id"),
        None,
        "initialize must not carry a session id"
    );
    for r in &reqs[1..] {
        let what = format!("{} {:?}", r.method, r.rpc_method);
        assert_eq!(r.header("mcp-session-id"), Some(sid.as_str()), "{what}");
        assert_eq!(
            r.header("mcp-protocol-version"),
            Some("2025-06-18"),
            "{what}"
        );
    }
    assert!(reqs
        .iter()
        .any(|r| r.rpc_method.as_deref() == Some("notifications/initialized")));
    let get = reqs.iter().find(|r| r.method == "GET").unwrap();
    assert!(get
        .header("accept")
        .unwrap_or_default()
        .contains("text/event-stream"));
}

/// MCP-Protocol-Version is the version the server chose in the initialize result, not the one
/// the client asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_version_header_comes_from_the_initialize_result() {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &[]);
    let params = json!({"protocolVersion": "2030-01-01", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}});
    bridge.request(0, "initialize", params).await;
    let negotiated = bridge.response(0).await["result"]["protocolVersion"].clone();
    assert_eq!(
        negotiated, "2025-11-25",
        "rmcp's answer to an unknown version"
    );
    bridge.notify("notifications/initialized", json!({})).await;
    assert_eq!(
        tool_text(&bridge.call_tool(1, "echo", json!({"text": "v"})).await),
        "v"
    );
    bridge.finish().await;
    let reqs = server.requests();
    assert!(reqs.len() >= 3);
    // `--protocol auto` sends the client's initialize first (issue 21).
    assert_eq!(reqs[0].rpc_method.as_deref(), Some("initialize"));
    for r in &reqs[1..] {
        let what = format!("{} {:?}", r.method, r.rpc_method);
        assert_eq!(
            r.header("mcp-protocol-version"),
            Some("2025-11-25"),
            "{what}"
        );
    }
}

/// tools/list comes back with every tool of the test server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_list_is_relayed() {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &[]);
    bridge.initialize().await;
    bridge.request(1, "tools/list", json!({})).await;
    let resp = bridge.response(1).await;
    let names: BTreeSet<&str> = resp["result"]["tools"]
        .as_array()
        .expect("tools array")
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    let want = [
        "big", "count", "echo", "elicit", "notify", "progress", "sample", "sleep",
    ];
    assert_eq!(names, want.into_iter().collect());
    bridge.finish().await;
}

/// echo, sleep, big and count return what the server computed, and each ran exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_tools_round_trip() {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &[]);
    bridge.initialize().await;
    let r = bridge
        .call_tool(1, "echo", json!({"text": "héllo \"world\"\n\ttab"}))
        .await;
    assert_eq!(tool_text(&r), "héllo \"world\"\n\ttab");
    let r = bridge.call_tool(2, "sleep", json!({"ms": 50})).await;
    assert_eq!(tool_text(&r), "slept 50");
    let r = bridge.call_tool(3, "big", json!({"bytes": 1000})).await;
    assert_eq!(tool_text(&r), "x".repeat(1000));
    let r = bridge.call_tool("four", "count", json!({})).await;
    let counts: Value = serde_json::from_str(tool_text(&r)).unwrap();
    assert_eq!(counts, json!({"echo": 1, "sleep": 1, "big": 1, "count": 1}));
    bridge.finish().await;
    assert_eq!(server.calls("echo"), 1);
}

/// An unknown method and unknown fields reach the server byte-for-byte; the server's own
/// -32601 comes back with the request's id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_methods_and_fields_pass_through_untouched() {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &[]);
    bridge.initialize().await;

    let unknown = r#"{"jsonrpc": "2.0", "id": "u-1", "method": "vendor/frobnicate",  "params": {"x": [1, 2.50, null]}, "x-top": {"keep": true}}"#;
    bridge.write_raw(format!("{unknown}\n").as_bytes()).await;
    let resp = bridge.response("u-1").await;
    assert_eq!(resp["error"]["code"], -32601, "{resp}");

    let extra = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"ok"},"x-extra":{"n":[1,2]}},"x-top":"v"}"#;
    bridge.write_raw(format!("{extra}\r\n").as_bytes()).await;
    assert_eq!(tool_text(&bridge.response(7).await), "ok");
    bridge.finish().await;

    let reqs = server.requests();
    let body_of = |m: &str| {
        reqs.iter()
            .find(|r| r.rpc_method.as_deref() == Some(m))
            .map(|r| r.body.clone())
            .unwrap()
    };
    assert_eq!(&body_of("vendor/frobnicate")[..], unknown.as_bytes());
    assert_eq!(
        &body_of("tools/call")[..],
        extra.as_bytes(),
        "trailing \\r must be trimmed"
    );
}

/// notifications/progress for the request's progressToken arrive, in order, before its result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_notifications_arrive_before_the_result() {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &[]);
    bridge.initialize().await;
    let params =
        json!({"name": "progress", "arguments": {"steps": 5}, "_meta": {"progressToken": "tok-1"}});
    bridge.request(1, "tools/call", params).await;
    let before = bridge.seen.len();
    let resp = bridge.response(1).await;
    assert_eq!(tool_text(&resp), "done 5");
    let progress: Vec<f64> = bridge.seen[before..]
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| {
            assert_eq!(m["params"]["progressToken"], "tok-1");
            m["params"]["progress"].as_f64().unwrap()
        })
        .collect();
    assert_eq!(progress, vec![1.0, 2.0, 3.0, 4.0, 5.0]);
    bridge.finish().await;
}

/// A request the server makes inside a tool call, and what the client answers.
struct ServerRequest {
    /// The tool that makes the request, and its arguments.
    tool: &'static str,
    args: Value,
    /// The request's method, and a field of its params (JSON pointer) with its expected value.
    method: &'static str,
    asked: (&'static str, &'static str),
    /// The client's result, and the tool's text once it got it.
    result: Value,
    text: &'static str,
}

/// The server's request reaches stdout with what the tool asked; the client's answer on stdin
/// is POSTed back (accepted with 202, under the server's request id) and becomes the tool's
/// result; the tool ran once.
async fn server_request(case: ServerRequest) {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &[]);
    bridge.initialize().await;
    bridge
        .request(
            1,
            "tools/call",
            json!({"name": case.tool, "arguments": case.args}),
        )
        .await;
    let req = loop {
        let m = bridge.next().await.expect("the server's request");
        if m["method"] == case.method {
            break m;
        }
    };
    let (field, value) = case.asked;
    assert_eq!(req.pointer(field), Some(&json!(value)), "{req}");
    bridge
        .send(&json!({"jsonrpc": "2.0", "id": req["id"], "result": case.result}))
        .await;
    assert_eq!(tool_text(&bridge.response(1).await), case.text);
    bridge.finish().await;
    let reqs = server.requests();
    let posted = reqs
        .iter()
        .find(|r| r.is_rpc_response())
        .expect("client's answer POSTed");
    assert_eq!(posted.rpc_id.as_ref(), Some(&req["id"]));
    assert_eq!(posted.status, Some(202));
    assert_eq!(server.calls(case.tool), 1);
}

cases! { server_request:
    /// A sampling/createMessage from the server reaches stdout; the client's answer on stdin is
    /// POSTed back and becomes the tool's result.
    sampling_round_trip => ServerRequest {
        tool: "sample",
        args: json!({"prompt": "ping?"}),
        method: "sampling/createMessage",
        asked: ("/params/messages/0/content/text", "ping?"),
        result: json!({"role": "assistant", "content": {"type": "text", "text": "pong!"}, "model": "test-model"}),
        text: "pong!",
    },
    /// An elicitation/create from the server reaches stdout; the client's action comes back.
    elicitation_round_trip => ServerRequest {
        tool: "elicit",
        args: json!({"message": "Sure?"}),
        method: "elicitation/create",
        asked: ("/params/message", "Sure?"),
        result: json!({"action": "accept", "content": {"answer": "yes"}}),
        text: "accept",
    },
}

/// Notifications the server pushes outside any POST (rmcp routes notifications/message to the
/// standalone GET stream) reach stdout, each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_stream_notifications_arrive() {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &[]);
    bridge.initialize().await;
    server
        .wait_for_request(|r| r.method == "GET" && r.status == Some(200))
        .await;
    bridge
        .request(
            1,
            "tools/call",
            json!({"name": "notify", "arguments": {"count": 5}}),
        )
        .await;
    let mut seqs = Vec::new();
    let mut answered = false;
    while !(answered && seqs.len() >= 5) {
        let m = bridge.next().await.expect("stdout open");
        if m["method"] == "notifications/message" && m["params"]["logger"] == "notify" {
            seqs.push(m["params"]["data"]["seq"].as_u64().unwrap());
        } else if m["id"] == 1 && m.get("method").is_none() {
            assert_eq!(tool_text(&m), "sent 5");
            answered = true;
        }
    }
    assert_eq!(seqs, vec![0, 1, 2, 3, 4]);
    let seen = bridge.finish().await.seen;
    let total = seen
        .iter()
        .filter(|m| m["method"] == "notifications/message")
        .count();
    assert_eq!(total, 5, "a GET-stream notification was duplicated");
}

/// A 16 MiB tool result is relayed intact on one stdout line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_result_is_relayed_intact() {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &[]);
    bridge.initialize().await;
    let n = 16 << 20;
    let r = bridge.call_tool(1, "big", json!({"bytes": n})).await;
    let t = tool_text(&r);
    assert_eq!(t.len(), n);
    assert!(t.bytes().all(|b| b == b'x'));
    bridge.finish().await;
}

/// A stdin line of tens of MiB reaches the server byte-for-byte and its echo comes back intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_stdin_line_is_relayed_intact() {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &[]);
    bridge.initialize().await;
    // 24 MiB of varied ASCII (not one repeated byte), so truncation or reordering shows.
    let text: String = (0..(24usize << 20))
        .map(|i| (b'a' + (i % 23) as u8 + (i / 4099 % 3) as u8) as char)
        .collect();
    let msg = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": text}}});
    let line = serde_json::to_vec(&msg).unwrap();
    bridge.write_raw(&[&line[..], b"\n"].concat()).await;
    let r = bridge.response(1).await;
    assert!(tool_text(&r) == text, "echoed text differs");
    bridge.finish().await;
    let reqs = server.requests();
    let posted = tools_calls(&reqs, "echo");
    assert_eq!(posted.len(), 1);
    assert!(
        posted[0].body[..] == line[..],
        "POST body differs from the stdin line"
    );
}

/// On exit (stdin closed) the bridge sends DELETE with its session id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_is_sent_on_exit() {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &[]);
    bridge.initialize().await;
    bridge.call_tool(1, "echo", json!({"text": "x"})).await;
    bridge.finish().await;
    let sid = server.issued_session();
    let deletes: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 1, "exactly one DELETE");
    assert_eq!(deletes[0].header("mcp-session-id"), Some(sid.as_str()));
}

/// `--header` values reach the server on every request (POST, GET and DELETE).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_flag_values_reach_the_server() {
    let server = TestServer::start().await;
    let extra = [
        "--header",
        "Authorization: Bearer t0k3n",
        "--header",
        "X-Test-Tenant: a b;c",
    ];
    let mut bridge = bridge_for(&server, &extra);
    bridge.initialize().await;
    server.wait_for_request(|r| r.method == "GET").await;
    bridge.call_tool(1, "echo", json!({"text": "x"})).await;
    bridge.finish().await;
    let reqs = server.requests();
    assert!(reqs.iter().any(|r| r.method == "DELETE"), "no DELETE seen");
    for r in &reqs {
        let what = format!("{} {:?}", r.method, r.rpc_method);
        assert_eq!(r.header("authorization"), Some("Bearer t0k3n"), "{what}");
        assert_eq!(r.header("x-test-tenant"), Some("a b;c"), "{what}");
    }
}

/// Header values never reach the logs, even with `--debug` (stderr) or `--log-file`; the header
/// names do, so a user can see what was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_values_are_never_logged() {
    let server = TestServer::start().await;
    let dir = TempHome::new("log");
    let log = dir.path().join("bridge.log");
    let log_arg = log.to_string_lossy().into_owned();
    let secret = "sk-very-secret-0123456789";
    let header = format!("X-Api-Key: {secret}");
    for extra in [vec!["--debug"], vec!["--debug", "--log-file", &log_arg]] {
        let mut args = extra.clone();
        args.extend(["--header", &header]);
        let mut bridge = bridge_for(&server, &args);
        bridge.initialize().await;
        bridge.call_tool(1, "echo", json!({"text": "x"})).await;
        let stderr = bridge.finish().await.stderr;
        assert!(!stderr.contains(secret), "a header value leaked to stderr");
        if extra.len() == 1 {
            assert!(
                stderr.contains("x-api-key"),
                "header names are logged: {stderr}"
            );
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&log)
            .expect("log file")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "the log file is private");
    }
    let logged = std::fs::read_to_string(&log).expect("log file written");
    assert!(
        logged.contains("x-api-key"),
        "header names are logged: {logged}"
    );
    assert!(
        !logged.contains(secret),
        "a header value leaked into the log file"
    );
    assert!(server
        .requests()
        .iter()
        .all(|r| r.header("x-api-key") == Some(secret)));
}
