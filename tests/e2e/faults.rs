//! The fault matrix: upstream HTTP errors, a killed server, expired sessions, a cut SSE stream,
//! slow upstream, bad stdin, shutdown paths and an unreachable URL. Each test also proves that
//! every request was answered exactly once (`finish`), that stdout carried only JSON-RPC (the
//! harness checks each line) and, through the server's tool counters and request log, that
//! nothing was executed or sent twice.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::relay::{bridge_for, finish, issued_session, tool_text};
use crate::support::bridge::{responses_per_id, Bridge};
use crate::support::mcp_server::{Match, SeenRequest, TestServer};

/// `error.data.alibridge.kind` of a bridge-made error (panics if `resp` is not one).
fn kind(resp: &Value) -> &str {
    assert_eq!(resp["error"]["code"], -32000, "not a bridge error: {resp}");
    let message = resp["error"]["message"].as_str().unwrap_or_default();
    assert!(
        !message.is_empty(),
        "bridge error without a message: {resp}"
    );
    resp["error"]["data"]["alibridge"]["kind"]
        .as_str()
        .unwrap_or_else(|| panic!("no kind: {resp}"))
}

/// The POSTs that carried `tools/call` with JSON-RPC id `id`.
fn posts_of(reqs: &[SeenRequest], id: Value) -> Vec<&SeenRequest> {
    reqs.iter()
        .filter(|r| r.rpc_method.as_deref() == Some("tools/call") && r.rpc_id == Some(id.clone()))
        .collect()
}

/// A 500 answer to a tools/call POST becomes an error for that id with kind `http_status`; it is
/// not retried, and the bridge keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_500_on_tools_call_is_an_http_status_error() {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &[]);
    bridge.initialize().await;
    server.fail_next(Match::tool("echo"), 500, "internal trouble");
    let r = bridge.call_tool(1, "echo", json!({"text": "a"})).await;
    assert_eq!(kind(&r), "http_status");
    assert_eq!(r["error"]["data"]["alibridge"]["httpStatus"], 500);
    assert_eq!(
        tool_text(&bridge.call_tool(2, "echo", json!({"text": "b"})).await),
        "b"
    );
    finish(bridge).await;
    assert_eq!(
        posts_of(&server.requests(), json!(1)).len(),
        1,
        "the failed POST was re-sent"
    );
    assert_eq!(server.calls("echo"), 1);
}

/// A failed POST whose body is the server's own JSON-RPC error for that id is forwarded as is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_rpc_error_body_of_a_failed_post_is_forwarded() {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &[]);
    bridge.initialize().await;
    let body = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"bad arguments, says the server"}}"#;
    server.fail_next(Match::tool("echo"), 400, body);
    let r = bridge.call_tool(1, "echo", json!({"text": "a"})).await;
    assert_eq!(r, serde_json::from_str::<Value>(body).unwrap());
    finish(bridge).await;
    assert_eq!(server.calls("echo"), 0);
}

/// The server dies while a tools/call is running (its SSE stream already open): that call gets
/// one error of kind `connect` or `stream_closed`, and a later call gets `connect`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_request() {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &[]);
    bridge.initialize().await;
    bridge
        .request(
            1,
            "tools/call",
            json!({"name": "sleep", "arguments": {"ms": 60000}}),
        )
        .await;
    server
        .wait_for_request(|r| r.tool.as_deref() == Some("sleep") && r.status.is_some())
        .await;
    server.wait_for_calls("sleep", 1).await;
    server.kill();
    let r = bridge.response(1).await;
    assert!(["connect", "stream_closed"].contains(&kind(&r)), "{r}");
    let r = bridge.call_tool(2, "echo", json!({"text": "a"})).await;
    assert_eq!(kind(&r), "connect", "{r}");
    finish(bridge).await;
    assert_eq!(posts_of(&server.requests(), json!(1)).len(), 1);
    assert_eq!(server.calls("sleep"), 1);
}

/// The server dies the moment a tools/call POST arrives, before any answer: one error of kind
/// `connect` or `stream_closed`, never a retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_before_answering() {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &[]);
    bridge.initialize().await;
    server.kill_on(Match::tool("sleep"));
    let r = bridge.call_tool(1, "sleep", json!({"ms": 10})).await;
    assert!(["connect", "stream_closed"].contains(&kind(&r)), "{r}");
    finish(bridge).await;
    assert_eq!(posts_of(&server.requests(), json!(1)).len(), 1);
}

/// After the server forgets every session (404 for the old id), the bridge re-initializes with
/// a fresh id, uses the new session, and the call runs exactly once; the client sees no extra
/// message from the replayed handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_session_is_reinitialized_and_the_call_runs_once() {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &[]);
    bridge.initialize().await;
    assert_eq!(
        tool_text(&bridge.call_tool(1, "echo", json!({"text": "a"})).await),
        "a"
    );
    let old = issued_session(&server);
    assert_eq!(server.expire_sessions().await, 1);
    let r = bridge.call_tool(2, "echo", json!({"text": "b"})).await;
    assert_eq!(tool_text(&r), "b");
    let seen = finish(bridge).await;

    let ids: BTreeSet<String> = responses_per_id(&seen).into_keys().collect();
    assert_eq!(ids, ["0", "1", "2"].map(String::from).into_iter().collect());
    assert_eq!(
        server.calls("echo"),
        2,
        "echo ran {} times for 2 calls",
        server.calls("echo")
    );
    let reqs = server.requests();
    let inits: Vec<_> = reqs
        .iter()
        .filter(|r| r.rpc_method.as_deref() == Some("initialize"))
        .collect();
    assert!(inits.len() >= 2, "no re-initialize");
    let first: Value = serde_json::from_slice(&inits[0].body).unwrap();
    for again in &inits[1..] {
        let m: Value = serde_json::from_slice(&again.body).unwrap();
        assert_ne!(
            m["id"], first["id"],
            "replayed initialize must use a fresh id"
        );
        assert_eq!(
            m["params"], first["params"],
            "replayed initialize must be the client's"
        );
    }
    let ok: Vec<_> = posts_of(&reqs, json!(2))
        .into_iter()
        .filter(|r| r.status == Some(200))
        .collect();
    assert_eq!(ok.len(), 1);
    let new = ok[0].header("mcp-session-id").unwrap();
    assert_ne!(new, old, "the call must use the new session");
    let initialized = reqs
        .iter()
        .filter(|r| r.rpc_method.as_deref() == Some("notifications/initialized"));
    assert!(
        initialized
            .filter(|r| r.header("mcp-session-id") == Some(new))
            .count()
            >= 1
    );
}

/// A POST's SSE stream dropped after two events (priming, first progress) is resumed with GET +
/// Last-Event-ID: the rest of the progress and the real result arrive exactly once, and the
/// tool ran once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_sse_stream_is_resumed_with_last_event_id() {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &[]);
    bridge.initialize().await;
    server.cut_next_sse(Match::tool("progress"), 2);
    let params =
        json!({"name": "progress", "arguments": {"steps": 3}, "_meta": {"progressToken": 9}});
    bridge.request(1, "tools/call", params).await;
    let before = bridge.seen.len();
    let r = bridge.response(1).await;
    assert_eq!(tool_text(&r), "done 3");
    let progress: Vec<f64> = bridge.seen[before..]
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| m["params"]["progress"].as_f64().unwrap())
        .collect();
    assert_eq!(
        progress,
        vec![1.0, 2.0, 3.0],
        "progress lost or duplicated across the resume"
    );
    let sid = issued_session(&server);
    finish(bridge).await;

    let reqs = server.requests();
    assert_eq!(
        posts_of(&reqs, json!(1)).len(),
        1,
        "the cut call was re-POSTed"
    );
    assert_eq!(server.calls("progress"), 1);
    let resume = reqs
        .iter()
        .find(|r| {
            r.method == "GET"
                && r.header("last-event-id")
                    .is_some_and(|id| id.starts_with("1/"))
        })
        .expect("a GET with Last-Event-ID of the last delivered event");
    assert_eq!(resume.header("mcp-session-id"), Some(sid.as_str()));
    assert_eq!(resume.status, Some(200));
}

/// A POST stream cut right after the server's sampling request is resumed by rmcp's own
/// resumption (GET + Last-Event-ID while the tool waits for the client): the client's answer
/// gets through and the real result arrives once; the tool ran once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_sse_stream_is_resumed_by_rmcp_itself() {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &[]);
    bridge.initialize().await;
    server.cut_next_sse_native(Match::tool("sample"), 2);
    bridge
        .request(
            1,
            "tools/call",
            json!({"name": "sample", "arguments": {"prompt": "q"}}),
        )
        .await;
    let req = loop {
        let m = bridge.next().await.expect("sampling request");
        if m["method"] == "sampling/createMessage" {
            break m;
        }
    };
    // Answer only once resumed: rmcp forgets a request's stream as soon as it is answered.
    let is_resume = |r: &SeenRequest| {
        r.method == "GET"
            && r.header("last-event-id")
                .is_some_and(|id| id.starts_with("1/"))
    };
    let resume = server.wait_for_request(is_resume).await;
    let answer =
        json!({"role": "assistant", "content": {"type": "text", "text": "a"}, "model": "m"});
    bridge
        .send(&json!({"jsonrpc": "2.0", "id": req["id"], "result": answer}))
        .await;
    assert_eq!(tool_text(&bridge.response(1).await), "a");
    // rmcp replays the event named in Last-Event-ID; the bridge must not pass it on twice.
    let sampling = bridge
        .seen
        .iter()
        .filter(|m| m["method"] == "sampling/createMessage")
        .count();
    assert_eq!(sampling, 1, "a replayed event reached the client twice");
    finish(bridge).await;
    assert_eq!(
        resume.header("mcp-session-id"),
        Some(issued_session(&server).as_str())
    );
    assert_eq!(
        posts_of(&server.requests(), json!(1)).len(),
        1,
        "the cut call was re-POSTed"
    );
    assert_eq!(server.calls("sample"), 1);
}

/// A slow upstream call does not hold back concurrent fast calls, even when one of them fails
/// with 503: every request is answered once, the slow one last, nothing runs twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_with_concurrent_fast_calls() {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &[]);
    bridge.initialize().await;
    bridge
        .request(
            "slow",
            "tools/call",
            json!({"name": "sleep", "arguments": {"ms": 3000}}),
        )
        .await;
    server
        .wait_for_request(|r| r.tool.as_deref() == Some("sleep"))
        .await;
    server.fail_next(Match::tool("echo"), 503, "busy");
    for i in 1..=10 {
        bridge
            .request(
                i,
                "tools/call",
                json!({"name": "echo", "arguments": {"text": "f"}}),
            )
            .await;
    }
    let mut order = Vec::new();
    let mut failed = 0;
    while order.len() < 11 {
        let m = bridge.next().await.expect("stdout open");
        if m.get("method").is_some() {
            continue;
        }
        if m.get("error").is_some() {
            assert_eq!(kind(&m), "http_status");
            assert_eq!(m["error"]["data"]["alibridge"]["httpStatus"], 503);
            failed += 1;
        }
        order.push(m["id"].clone());
    }
    assert_eq!(failed, 1);
    assert_eq!(order.last(), Some(&json!("slow")));
    finish(bridge).await;
    assert_eq!(server.calls("echo"), 9);
    assert_eq!(server.calls("sleep"), 1);
}

/// `--request-timeout` answers a call the upstream is still working on with kind `timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_timeout_answers_timeout() {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &["--request-timeout", "1"]);
    bridge.initialize().await;
    let r = bridge.call_tool(1, "sleep", json!({"ms": 30000})).await;
    assert_eq!(kind(&r), "timeout");
    assert_eq!(
        tool_text(&bridge.call_tool(2, "echo", json!({"text": "a"})).await),
        "a"
    );
    finish(bridge).await;
}

/// A line that is not JSON gets -32700 with id null, is not sent upstream, and the bridge goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_line_gets_parse_error_and_the_bridge_continues() {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &[]);
    bridge.initialize().await;
    bridge.write_raw(b"this is {not json\n").await;
    let m = bridge.next().await.expect("a parse error");
    assert_eq!(m["id"], Value::Null, "{m}");
    assert_eq!(m["error"]["code"], -32700, "{m}");
    assert_eq!(
        tool_text(&bridge.call_tool(1, "echo", json!({"text": "a"})).await),
        "a"
    );
    finish(bridge).await;
    assert!(!server
        .requests()
        .iter()
        .any(|r| r.body.starts_with(b"this is")));
}

/// JSON that is not a JSON-RPC message (batch array, scalar, object with neither method nor id)
/// gets -32600 and is not sent upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_jsonrpc_json_gets_invalid_request() {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &[]);
    bridge.initialize().await;
    let bad = [
        r#"[{"jsonrpc":"2.0","id":5,"method":"ping"}]"#,
        "42",
        r#"{"hello":"world"}"#,
    ];
    for line in bad {
        bridge.write_raw(format!("{line}\n").as_bytes()).await;
        let m = bridge.next().await.expect("an invalid-request error");
        assert_eq!(m["error"]["code"], -32600, "for {line}: {m}");
        if line != bad[0] {
            assert_eq!(m["id"], Value::Null, "for {line}: {m}");
        }
    }
    assert_eq!(
        tool_text(&bridge.call_tool(1, "echo", json!({"text": "a"})).await),
        "a"
    );
    finish(bridge).await;
    for r in server.requests() {
        assert!(
            !bad.iter().any(|b| r.body == b.as_bytes()),
            "sent upstream: {:?}",
            r.body
        );
    }
}

/// Empty and whitespace-only lines produce nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_lines_are_ignored() {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &[]);
    bridge.initialize().await;
    bridge.write_raw(b"\n\n   \n\t\n\r\n").await;
    assert_eq!(
        tool_text(&bridge.call_tool(1, "echo", json!({"text": "a"})).await),
        "a"
    );
    let seen = finish(bridge).await;
    assert!(
        seen.iter().all(|m| m.get("error").is_none()),
        "an empty line produced an error"
    );
    let ids: BTreeSet<String> = responses_per_id(&seen).into_keys().collect();
    assert_eq!(ids, ["0", "1"].map(String::from).into_iter().collect());
}

/// stdin closes while requests are in flight: they are still answered (within the grace
/// period), the session is DELETEd, and the exit code is 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_closed_with_requests_in_flight() {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &[]);
    bridge.initialize().await;
    bridge
        .request(
            1,
            "tools/call",
            json!({"name": "sleep", "arguments": {"ms": 1500}}),
        )
        .await;
    bridge
        .request(
            2,
            "tools/call",
            json!({"name": "echo", "arguments": {"text": "e"}}),
        )
        .await;
    server
        .wait_for_request(|r| r.tool.as_deref() == Some("sleep"))
        .await;
    let seen = finish(bridge).await;
    let resp = |id: u64| {
        seen.iter()
            .find(|m| m["id"] == id && m.get("method").is_none())
            .cloned()
    };
    assert_eq!(tool_text(&resp(1).expect("sleep answered")), "slept 1500");
    assert_eq!(tool_text(&resp(2).expect("echo answered")), "e");
    let sid = issued_session(&server);
    let reqs = server.requests();
    assert!(reqs
        .iter()
        .any(|r| r.method == "DELETE" && r.header("mcp-session-id") == Some(sid.as_str())));
}

/// When the grace period runs out, the requests still in flight are answered with kind
/// `shutdown` and the exit code is 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_grace_expiry_answers_shutdown() {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &["--shutdown-grace", "1"]);
    bridge.initialize().await;
    bridge
        .request(
            1,
            "tools/call",
            json!({"name": "sleep", "arguments": {"ms": 60000}}),
        )
        .await;
    server
        .wait_for_request(|r| r.tool.as_deref() == Some("sleep"))
        .await;
    let seen = finish(bridge).await;
    let r = seen
        .iter()
        .find(|m| m["id"] == 1)
        .expect("in-flight request answered");
    assert_eq!(kind(r), "shutdown");
}

/// SIGTERM: the in-flight request still gets its real answer, then the bridge exits 0.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_zero() {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &[]);
    bridge.initialize().await;
    bridge
        .request(
            1,
            "tools/call",
            json!({"name": "sleep", "arguments": {"ms": 1000}}),
        )
        .await;
    server
        .wait_for_request(|r| r.tool.as_deref() == Some("sleep"))
        .await;
    bridge.sigterm();
    let rest = bridge.drain().await;
    let code = bridge.wait().await;
    assert_eq!(code, 0, "stderr:\n{}", bridge.stderr().await);
    let r = rest
        .iter()
        .find(|m| m["id"] == 1)
        .expect("in-flight request answered");
    assert_eq!(tool_text(r), "slept 1000");
    for (id, n) in responses_per_id(&bridge.seen) {
        assert_eq!(n, 1, "id {id} answered {n} times");
    }
    assert!(server.requests().iter().any(|r| r.method == "DELETE"));
}

/// An upstream nobody listens on (closed port): each request gets kind `connect`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_url_is_a_connect_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/mcp");
    let mut bridge = Bridge::spawn([url.as_str(), "--transport", "http-only"]);
    let init = json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}});
    bridge.request(0, "initialize", init).await;
    assert_eq!(kind(&bridge.response(0).await), "connect");
    bridge.request(1, "tools/list", json!({})).await;
    assert_eq!(kind(&bridge.response(1).await), "connect");
    finish(bridge).await;
}
