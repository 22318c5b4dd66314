//! `alibridge proxy` holding its ground against its own clients (issue 19 §4, §5), with raw
//! HTTP requests to the proxy in front of the ops server (which records every call it runs):
//!
//! - a confirmation belongs to the session that made the call: another session's answer is
//!   refused (403) and the call stays waiting for its owner;
//! - a client that disconnects frees its confirmation at once (`/health` counts them);
//! - `--confirm-timeout` ends an unanswered confirmation as not confirmed;
//! - an over-long or non-ASCII `Mcp-Session-Id` is refused with 400;
//! - with a policy set, bodies the strict reader cannot take are refused with 400, on every
//!   method, and a PUT carrying a write is refused like a POST.

use reqwest::header::HeaderValue;
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::home::TempHome;
use crate::support::net::http_client;
use crate::support::ops_server::OpsServer;
use crate::support::proxy::{handshake_with, next_sse_message, post, Proxy, INIT};
use crate::support::wait::until;

/// `initialize` from a client that can be asked (form-mode elicitation).
const INIT_ELICITING: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"elicitation":{}},"clientInfo":{"name":"raw","version":"0"}}}"#;

/// A write the policy asks about (or refuses under `--read-only`).
fn delete(id: u64, instance: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": "DeleteInstance", "arguments": {"InstanceId": instance}}})
    .to_string()
}

/// The person's "yes" to the proxy's request `id`.
fn yes(id: &Value) -> String {
    json!({"jsonrpc": "2.0", "id": id,
           "result": {"action": "accept", "content": {"confirm": true}}})
    .to_string()
}

/// POSTs a write on session `sid`; returns the open SSE answer and the proxy's
/// `elicitation/create` read from it.
async fn ask(url: &str, sid: &str, instance: &str) -> (reqwest::Response, Vec<u8>, Value) {
    let mut resp = post(url, Some(sid), &delete(7, instance)).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut buf = Vec::new();
    let asked = next_sse_message(&mut resp, &mut buf).await;
    assert_eq!(asked["method"], "elicitation/create", "{asked}");
    (resp, buf, asked)
}

async fn waiting(proxy: &Proxy) -> u64 {
    proxy.health().await["confirmationsWaiting"]
        .as_u64()
        .expect("/health counts open confirmations")
}

fn audit_lines(path: &str) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn confirming_proxy(server: &OpsServer, audit: &str, extra: &[&str]) -> Proxy {
    let upstream = format!("http://{}", server.addr());
    let mut args = vec![
        "--auth",
        "none",
        "--upstream-url",
        &upstream,
        "--confirm-writes",
        "--audit-log",
        audit,
    ];
    args.extend_from_slice(extra);
    Proxy::start(&args, &[]).await
}

/// Another session (or a client with none) answering a confirmation is refused with 403 and
/// nothing runs; the confirmation stays open and its owner's answer then runs the write once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmation_answers_only_to_its_own_session() {
    let dir = TempHome::new("proxy-confirm-owner");
    let audit = dir.file("audit.jsonl");
    let server = OpsServer::start().await;
    let proxy = confirming_proxy(&server, &audit, &[]).await;
    let url = proxy.url("/ops/mcp");
    let owner = handshake_with(&url, INIT_ELICITING).await;
    let stranger = handshake_with(&url, INIT_ELICITING).await;

    let (mut stream, mut buf, asked) = ask(&url, &owner, "i-owner").await;
    let our_id = asked["id"].clone();
    assert_eq!(waiting(&proxy).await, 1);
    for session in [Some(stranger.as_str()), None] {
        let r = post(&url, session, &yes(&our_id)).await;
        assert_eq!(r.status(), 403, "{session:?}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            v["error"]["data"]["alibridge"]["rule"],
            "confirmation-owner"
        );
    }
    proxy
        .stderr_with("refused an answer to a confirmation another client session asked for")
        .await;
    assert_eq!(waiting(&proxy).await, 1, "still open for its owner");
    assert!(server.executed().is_empty(), "{:?}", server.executed());

    let r = post(&url, Some(&owner), &yes(&our_id)).await;
    assert_eq!(r.status(), 202);
    let answer = next_sse_message(&mut stream, &mut buf).await;
    assert_eq!(answer["id"], 7, "{answer}");
    assert!(answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .starts_with("ran DeleteInstance"));
    assert_eq!(
        server.executed_names(),
        ["DeleteInstance"],
        "run once, on the owner's answer"
    );
    assert_eq!(waiting(&proxy).await, 0);
    let lines = audit_lines(&audit);
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["rule"] == "confirmation-owner")
            .count(),
        2,
        "{lines:?}"
    );
    until("the confirmed call is audited", || {
        audit_lines(&audit)
            .iter()
            .any(|l| l["decision"] == "relayed" && l["confirmed"] == true)
    })
    .await;
}

/// A client that disconnects while the proxy waits for its person cancels the confirmation at
/// once: nothing stays open (`/health`), nothing runs, the audit log says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_walks_away_frees_its_confirmation() {
    let dir = TempHome::new("proxy-confirm-gone");
    let audit = dir.file("audit.jsonl");
    let server = OpsServer::start().await;
    let proxy = confirming_proxy(&server, &audit, &[]).await;
    let url = proxy.url("/ops/mcp");
    let sid = handshake_with(&url, INIT_ELICITING).await;
    let (stream, _, asked) = ask(&url, &sid, "i-gone").await;
    assert_eq!(waiting(&proxy).await, 1);
    drop(stream);
    proxy
        .stderr_with("confirmation cancelled: the client disconnected")
        .await;
    assert_eq!(waiting(&proxy).await, 0);
    // A late answer finds nothing open: taken by the proxy, never forwarded, nothing runs.
    let r = post(&url, Some(&sid), &yes(&asked["id"])).await;
    assert_eq!(r.status(), 202);
    until("the cancellation is audited", || {
        audit_lines(&audit).iter().any(|l| {
            l["decision"] == "cancelled"
                && l["outcome"] == "not_sent"
                && l["tool"] == "DeleteInstance"
        })
    })
    .await;
    assert!(server.executed().is_empty(), "{:?}", server.executed());
}

/// `--confirm-timeout 1`: nobody answers, so after a second the model gets the usual "not
/// confirmed" tool result, the upstream is never reached, and the audit line says `timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_confirmation_times_out() {
    let dir = TempHome::new("proxy-confirm-timeout");
    let audit = dir.file("audit.jsonl");
    let server = OpsServer::start().await;
    let proxy = confirming_proxy(&server, &audit, &["--confirm-timeout", "1"]).await;
    let url = proxy.url("/ops/mcp");
    let sid = handshake_with(&url, INIT_ELICITING).await;
    let (mut stream, mut buf, _) = ask(&url, &sid, "i-late").await;
    let answer = next_sse_message(&mut stream, &mut buf).await;
    assert_eq!(answer["id"], 7, "{answer}");
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    let text = answer["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("nobody answered within 1 s") && text.contains("Nothing was sent"),
        "{text}"
    );
    assert_eq!(waiting(&proxy).await, 0);
    assert!(server.executed().is_empty(), "{:?}", server.executed());
    let lines = audit_lines(&audit);
    assert!(
        lines
            .iter()
            .any(|l| l["tool"] == "DeleteInstance" && l["outcome"] == "timeout"),
        "{lines:?}"
    );
}

/// A request to `url` with `method`, a raw `Mcp-Session-Id` and a raw body.
async fn raw(method: Method, url: &str, sid: Option<&[u8]>, body: &[u8]) -> reqwest::Response {
    let mut rb = http_client()
        .request(method, url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(s) = sid {
        rb = rb
            .header("mcp-session-id", HeaderValue::from_bytes(s).unwrap())
            .header("mcp-protocol-version", "2025-06-18");
    }
    rb.send().await.expect("the proxy answers")
}

async fn rule_of(r: reqwest::Response) -> Value {
    let v: Value = r.json().await.unwrap();
    v["error"]["data"]["alibridge"]["rule"].clone()
}

/// A session id the proxy would not key on (over 256 bytes, a space, UTF-8) is refused with
/// 400 before anything is forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_session_ids_are_refused() {
    let server = OpsServer::start().await;
    let upstream = format!("http://{}", server.addr());
    let proxy = Proxy::start(
        &["--auth", "none", "--upstream-url", &upstream, "--read-only"],
        &[],
    )
    .await;
    let url = proxy.url("/ops/mcp");
    let read = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"DescribeRegions","arguments":{}}}"#;
    let long = vec![b's'; 257];
    for sid in [long.as_slice(), b"a b", "caf\u{e9}".as_bytes()] {
        let r = raw(Method::POST, &url, Some(sid), read).await;
        assert_eq!(r.status(), 400, "{}", String::from_utf8_lossy(sid));
        assert_eq!(rule_of(r).await, "session-id");
    }
    proxy.stderr_with("unusable Mcp-Session-Id").await;
    assert!(server.executed().is_empty(), "{:?}", server.executed());
}

/// Under `--read-only`, bodies the strict reader cannot take (a repeated `method` key naming a
/// write, a byte-order mark, not JSON, not JSON-RPC) are refused with 400 and audited, on POST
/// and on other methods alike; a PUT carrying a write is refused like a POST; the upstream
/// never runs any of them, and an ordinary read still passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_strict_reader_refuses_what_it_cannot_read() {
    let dir = TempHome::new("proxy-strict");
    let audit = dir.file("audit.jsonl");
    let server = OpsServer::start().await;
    let upstream = format!("http://{}", server.addr());
    let proxy = Proxy::start(
        &[
            "--auth",
            "none",
            "--upstream-url",
            &upstream,
            "--read-only",
            "--audit-log",
            &audit,
        ],
        &[],
    )
    .await;
    let url = proxy.url("/ops/mcp");
    let sid = handshake_with(&url, INIT).await;
    let s = Some(sid.as_bytes());
    let repeated = br#"{"jsonrpc":"2.0","id":5,"method":"tools/list","method":"tools/call","params":{"name":"DeleteInstance","arguments":{"InstanceId":"i-dup"}}}"#;
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend_from_slice(delete(6, "i-bom").as_bytes());
    let refused: [(Method, &[u8]); 5] = [
        (Method::POST, repeated),
        (Method::POST, &bom),
        (Method::POST, b"DeleteInstance i-1, please"),
        (
            Method::POST,
            br#"{"jsonrpc":"2.0","params":{"name":"DeleteInstance"}}"#,
        ),
        (Method::PATCH, &bom),
    ];
    for (method, body) in refused {
        let r = raw(method.clone(), &url, s, body).await;
        assert_eq!(
            r.status(),
            400,
            "{method} {}",
            String::from_utf8_lossy(body)
        );
        assert_eq!(rule_of(r).await, "strict-json");
    }
    // A PUT carrying a write goes through the same decision as a POST.
    let r = raw(Method::PUT, &url, s, delete(8, "i-put").as_bytes()).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["id"], 8);
    assert_eq!(v["error"]["data"]["alibridge"]["rule"], "--read-only");

    let read = r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"DescribeRegions","arguments":{}}}"#;
    let mut ok = post(&url, Some(&sid), read).await;
    assert_eq!(ok.status(), 200);
    let answer = next_sse_message(&mut ok, &mut Vec::new()).await;
    assert!(
        answer["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("ran DescribeRegions"),
        "{answer}"
    );
    assert_eq!(server.executed_names(), ["DescribeRegions"]);
    let lines = audit_lines(&audit);
    assert_eq!(
        lines.iter().filter(|l| l["rule"] == "strict-json").count(),
        5,
        "{lines:?}"
    );
    assert!(lines
        .iter()
        .any(|l| l["tool"] == "DeleteInstance" && l["rule"] == "--read-only"));
}
