//! The official npm peers through the real bridge: `@modelcontextprotocol/server-everything`
//! (Streamable HTTP on `/mcp`, legacy HTTP+SSE on `/sse`) upstream, and either this harness or
//! the official TypeScript SDK client (`tests/peers/sdk_client.mjs`) downstream.
//!
//! Versions are pinned in `tests/peers/package-lock.json`; the tests run `npm ci` themselves.

use serde_json::{json, Value};

use crate::support::bridge::{bin, responses_per_id, Bridge};
use crate::support::peers::{run_sdk_client, Mode, ServerEverything};

/// What a desktop client answers to the server's requests: roots, sampling, elicitation, ping.
fn client_answer(method: &str, params: &Value) -> Result<Value, Value> {
    match method {
        "roots/list" => Ok(json!({"roots": []})),
        "sampling/createMessage" => {
            let asked = params["messages"][0]["content"]["text"]
                .as_str()
                .unwrap_or_default();
            Ok(json!({
                "model": "alibridge-canned-model",
                "role": "assistant",
                "content": {"type": "text", "text": format!("canned reply to: {asked}")},
                "stopReason": "endTurn"
            }))
        }
        "elicitation/create" => Ok(json!({"action": "decline"})),
        "ping" => Ok(json!({})),
        _ => Err(json!({"code": -32601, "message": format!("method not found: {method}")})),
    }
}

/// Reads until the response to `id`, answering server→client requests on the way.
async fn response_answering(bridge: &mut Bridge, id: impl Into<Value>) -> Value {
    let id = id.into();
    loop {
        let msg = bridge
            .next()
            .await
            .unwrap_or_else(|| panic!("stdout closed before response {id}"));
        match (msg.get("method").and_then(Value::as_str), msg.get("id")) {
            (Some(method), Some(req_id)) if !req_id.is_null() => {
                let reply = match client_answer(method, &msg["params"]) {
                    Ok(result) => json!({"jsonrpc": "2.0", "id": req_id, "result": result}),
                    Err(error) => json!({"jsonrpc": "2.0", "id": req_id, "error": error}),
                };
                bridge.send(&reply).await;
            }
            (None, Some(resp_id)) if *resp_id == id => return msg,
            _ => {}
        }
    }
}

/// Sends a request and returns its `result`, failing on an error response.
async fn call(bridge: &mut Bridge, id: impl Into<Value>, method: &str, params: Value) -> Value {
    let id = id.into();
    bridge.request(id.clone(), method, params).await;
    let resp = response_answering(bridge, id.clone()).await;
    assert!(
        resp.get("result").is_some(),
        "{method} (id {id}) failed: {resp}"
    );
    resp["result"].clone()
}

/// The first text block of a tool result.
fn text(result: &Value) -> &str {
    result["content"]
        .as_array()
        .and_then(|c| c.iter().find(|b| b["type"] == "text"))
        .and_then(|b| b["text"].as_str())
        .unwrap_or_else(|| panic!("no text content in {result}"))
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect()
}

/// A whole desktop-client session through `alibridge <args…>` against server-everything; ends
/// with stdin closed, exit 0, and exactly one response per request id on stdout.
async fn full_session(args: &[&str]) {
    let mut bridge = Bridge::spawn(args);

    let init = bridge.initialize().await;
    assert_eq!(
        init["serverInfo"]["name"], "mcp-servers/everything",
        "{init}"
    );
    assert_eq!(init["protocolVersion"], "2025-06-18", "{init}");

    let tools = call(&mut bridge, 1, "tools/list", json!({})).await;
    let tools = names(&tools["tools"]);
    for tool in [
        "echo",
        "get-sum",
        "get-structured-content",
        "trigger-long-running-operation",
    ] {
        assert!(tools.contains(&tool), "{tool} missing from {tools:?}");
    }

    let echo = call(
        &mut bridge,
        2,
        "tools/call",
        json!({"name": "echo", "arguments": {"message": "hello through alibridge"}}),
    )
    .await;
    assert_eq!(text(&echo), "Echo: hello through alibridge");

    // Progress: every notification for our token precedes the result, in order.
    let from = bridge.seen.len();
    let done = call(
        &mut bridge,
        3,
        "tools/call",
        json!({
            "name": "trigger-long-running-operation",
            "arguments": {"duration": 0.3, "steps": 3},
            "_meta": {"progressToken": "progress-3"}
        }),
    )
    .await;
    assert!(
        text(&done).starts_with("Long running operation completed"),
        "{done}"
    );
    let progress: Vec<(Value, Value)> = bridge.seen[from..]
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| {
            (
                m["params"]["progressToken"].clone(),
                m["params"]["progress"].clone(),
            )
        })
        .collect();
    assert_eq!(
        progress,
        [1, 2, 3].map(|n| (json!("progress-3"), json!(n))),
        "progress notifications before the result"
    );

    // String ids survive too.
    let listed = call(&mut bridge, "res-list", "resources/list", json!({})).await;
    let doc = listed["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["uri"] == "demo://resource/static/document/architecture.md")
        .unwrap_or_else(|| panic!("architecture.md not listed: {listed}"))
        .clone();
    let read = call(
        &mut bridge,
        "res-read",
        "resources/read",
        json!({"uri": doc["uri"]}),
    )
    .await;
    assert_eq!(read["contents"][0]["uri"], doc["uri"]);
    assert!(
        !read["contents"][0]["text"].as_str().unwrap().is_empty(),
        "{read}"
    );
    let uri = "demo://resource/dynamic/text/2";
    let dynamic = call(&mut bridge, 6, "resources/read", json!({"uri": uri})).await;
    let dynamic = dynamic["contents"][0]["text"].as_str().unwrap();
    assert!(
        dynamic.starts_with("Resource 2: This is a plaintext resource"),
        "{dynamic}"
    );

    let prompts = call(&mut bridge, 7, "prompts/list", json!({})).await;
    let prompts = names(&prompts["prompts"]);
    assert!(
        prompts.contains(&"simple-prompt") && prompts.contains(&"args-prompt"),
        "{prompts:?}"
    );
    let prompt = call(
        &mut bridge,
        8,
        "prompts/get",
        json!({"name": "args-prompt", "arguments": {"city": "Hangzhou"}}),
    )
    .await;
    assert_eq!(
        prompt["messages"][0]["content"]["text"],
        "What's weather in Hangzhou?"
    );

    // Sampling: the server's request reaches stdout, and our answer reaches the server.
    let from = bridge.seen.len();
    let sampled = call(
        &mut bridge,
        9,
        "tools/call",
        json!({"name": "trigger-sampling-request", "arguments": {"prompt": "ping", "maxTokens": 8}}),
    )
    .await;
    let asked = bridge.seen[from..]
        .iter()
        .filter(|m| m["method"] == "sampling/createMessage");
    assert_eq!(asked.count(), 1, "one sampling request reached the client");
    assert!(
        text(&sampled).contains("canned reply to: Resource trigger-sampling-request context: ping"),
        "{sampled}"
    );

    let seen = bridge.finish().await.seen;
    let per_id = responses_per_id(&seen);
    let sent = [
        "0",
        "1",
        "2",
        "3",
        "\"res-list\"",
        "\"res-read\"",
        "6",
        "7",
        "8",
        "9",
    ];
    for id in sent {
        assert_eq!(
            per_id.get(id),
            Some(&1),
            "responses for id {id}: {per_id:?}"
        );
    }
    assert_eq!(
        per_id.len(),
        sent.len(),
        "responses for ids never sent: {per_id:?}"
    );
}

/// Streamable HTTP (`/mcp`): a full session (tools, progress, resources, prompts, sampling) relays
/// intact, with exactly one response per request id.
#[tokio::test]
async fn streamable_http_full_session() {
    let server = ServerEverything::start(Mode::StreamableHttp);
    full_session(&[server.url().as_str(), "--allow-http"]).await;
}

/// Legacy HTTP+SSE: a URL ending in `/sse` is served over SSE without any `--transport` flag.
#[tokio::test]
async fn sse_url_auto_selects_legacy_sse() {
    let server = ServerEverything::start(Mode::Sse);
    full_session(&[server.url().as_str(), "--allow-http"]).await;
}

/// Legacy HTTP+SSE: `--transport sse-only` runs the full session over the SSE stream.
#[tokio::test]
async fn sse_only_full_session() {
    let server = ServerEverything::start(Mode::Sse);
    full_session(&[
        server.url().as_str(),
        "--allow-http",
        "--transport",
        "sse-only",
    ])
    .await;
}

/// `--transport http-first` against an SSE-only server (POST /sse → 404) falls back to SSE.
#[tokio::test]
async fn http_first_falls_back_to_sse() {
    let server = ServerEverything::start(Mode::Sse);
    full_session(&[
        server.url().as_str(),
        "--allow-http",
        "--transport",
        "http-first",
    ])
    .await;
}

/// `--transport sse-first` against a Streamable HTTP server (GET /mcp → 400) falls back to it.
#[tokio::test]
async fn sse_first_falls_back_to_streamable_http() {
    let server = ServerEverything::start(Mode::StreamableHttp);
    full_session(&[
        server.url().as_str(),
        "--allow-http",
        "--transport",
        "sse-first",
    ])
    .await;
}

/// `--transport http-only` against an SSE-only server does not fall back: initialize gets the
/// bridge's `http_status` error (404), exactly once.
#[tokio::test]
async fn http_only_does_not_fall_back_to_sse() {
    let server = ServerEverything::start(Mode::Sse);
    let url = server.url();
    let mut bridge = Bridge::spawn([url.as_str(), "--allow-http", "--transport", "http-only"]);
    bridge
        .request(
            0,
            "initialize",
            json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "alibridge-tests", "version": "0"}
            }),
        )
        .await;
    let resp = bridge.response(0).await;
    assert_eq!(resp["error"]["code"], -32000, "{resp}");
    assert_eq!(
        resp["error"]["data"]["alibridge"]["kind"], "http_status",
        "{resp}"
    );
    assert_eq!(
        resp["error"]["data"]["alibridge"]["httpStatus"], 404,
        "{resp}"
    );
    bridge.close_stdin();
    bridge.drain().await;
    assert_eq!(bridge.wait().await, 0);
    assert_eq!(
        responses_per_id(&bridge.seen).get("0"),
        Some(&1),
        "{:?}",
        bridge.seen
    );
}

/// Checks the summary `tests/peers/sdk_client.mjs` prints after its scenario.
fn assert_sdk_summary(s: &Value) {
    assert_eq!(
        s["initialize"]["server"]["name"], "mcp-servers/everything",
        "{s:#}"
    );
    // The SDK asks for its latest version; server-everything (same SDK) accepts it.
    assert_eq!(s["initialize"]["protocolVersion"], "2025-11-25", "{s:#}");
    let tools: Vec<&str> = s["tools"]["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    for tool in [
        "echo",
        "get-sum",
        "get-structured-content",
        "trigger-long-running-operation",
    ] {
        assert!(tools.contains(&tool), "{tool} missing: {s:#}");
    }
    assert_eq!(s["echo"], "Echo: hello from the sdk", "{s:#}");
    assert_eq!(s["sum"], "The sum of 2 and 40 is 42.", "{s:#}");
    let weather = json!({"temperature": 36, "conditions": "Light rain / drizzle", "humidity": 82});
    assert_eq!(s["structured"], weather, "{s:#}");
    assert_eq!(s["resourceLinks"], 3, "{s:#}");
    assert!(s["resources"]["count"].as_u64().unwrap() >= 1, "{s:#}");
    assert!(
        s["resources"]["read"]["textLength"].as_u64().unwrap() > 0,
        "{s:#}"
    );
    assert!(
        s["resources"]["dynamicText"]
            .as_str()
            .unwrap()
            .starts_with("Resource 7:"),
        "{s:#}"
    );
    assert_eq!(
        s["prompts"]["simple"], "This is a simple prompt without arguments.",
        "{s:#}"
    );
    assert_eq!(s["prompts"]["args"], "What's weather in Hangzhou?", "{s:#}");
    // On the wire all three progress notifications precede the result. The SDK's `onprogress`
    // may miss the last one when it arrives in the same read as the result (the SDK dispatches
    // notifications a microtask after responses), so only a non-empty prefix is required there.
    let p = &s["progress"];
    assert_eq!(p["wire"], json!([1, 2, 3]), "{s:#}");
    assert_eq!(p["beforeResult"], 3, "{s:#}");
    let seen = p["onprogress"].as_array().unwrap();
    assert!(
        !seen.is_empty() && seen.iter().zip(1..).all(|(n, i)| *n == i),
        "{s:#}"
    );
    assert!(p["result"]
        .as_str()
        .unwrap()
        .starts_with("Long running operation completed"));
    assert_eq!(s["sampling"]["requests"], 1, "{s:#}");
    let sampled = s["sampling"]["result"].as_str().unwrap();
    assert!(sampled.contains("canned reply to: Resource trigger-sampling-request context: ping"));
    assert_eq!(s["elicitation"]["requests"], 1, "{s:#}");
    assert!(
        s["elicitation"]["result"]
            .as_str()
            .unwrap()
            .contains("declined"),
        "{s:#}"
    );
}

/// The official TypeScript SDK client, through the bridge, completes its scenario against
/// server-everything over Streamable HTTP.
#[test]
fn sdk_client_through_bridge_streamable_http() {
    let server = ServerEverything::start(Mode::StreamableHttp);
    let summary = run_sdk_client([bin(), server.url().as_str(), "--allow-http"]);
    assert_sdk_summary(&summary);
}

/// The official TypeScript SDK client, through the bridge, completes its scenario against
/// server-everything over legacy HTTP+SSE.
#[test]
fn sdk_client_through_bridge_sse() {
    let server = ServerEverything::start(Mode::Sse);
    let summary = run_sdk_client([bin(), server.url().as_str(), "--allow-http"]);
    assert_sdk_summary(&summary);
}
