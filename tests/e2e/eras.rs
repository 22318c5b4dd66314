//! Protocol eras (issue 10): every cell of client era × server era × `--protocol` in
//! `docs/protocol-eras.md`, against real peers.
//!
//! - Modern servers: the official TypeScript SDK 2.x (`tests/peers-modern/server.mjs`), dual-era
//!   and modern-only (its 2025 traffic refused with 400 / −32022, so a pass proves translation).
//! - Legacy servers: the in-process rmcp server and `@modelcontextprotocol/server-everything`.
//! - Older client: this harness speaking 2025-06-18 over stdio. Modern client: the SDK 2.x
//!   client with `versionNegotiation: auto` (`tests/peers-modern/client.mjs`).

use serde_json::{json, Value};

use crate::support::bridge::{bin, responses_per_id, Bridge};
use crate::support::mcp_server::TestServer;
use crate::support::peers::{Mode, ServerEverything};
use crate::support::peers_modern::{run_modern_client, try_modern_client, Legacy, ModernServer};

/// The `requestState` the server's `ask_name` tool mints (see `server.mjs`).
const STATE: &str = "état \"1\" \\ ✓";

fn spawn(url: &str, extra: &[&str]) -> Bridge {
    let mut args = vec![url.to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    Bridge::spawn_with_env(args, [("ALIBRIDGE_DEBUG", "true")])
}

fn text(resp: &Value) -> &str {
    resp["result"]["content"][0]["text"].as_str().unwrap_or("")
}

/// Reads until the bridge asks the client something (a request with an id); returns it.
async fn next_request(bridge: &mut Bridge) -> Value {
    loop {
        let m = bridge.next().await.expect("stdout closed");
        if m.get("method").is_some() && m.get("id").is_some_and(|i| !i.is_null()) {
            return m;
        }
    }
}

/// Waits for a notification `method` among the messages read since `seen[from]` (it may come
/// before or after the answer being waited for), reading more as needed.
async fn wait_for_method(bridge: &mut Bridge, from: usize, method: &str) {
    if bridge.seen[from..].iter().any(|m| m["method"] == method) {
        return;
    }
    loop {
        let m = bridge.next().await.expect("stdout closed");
        if m["method"] == method {
            return;
        }
    }
}

/// An initialize-era client through the bridge to a modern server: the whole matrix row.
async fn older_client_to_modern_server(legacy: Legacy) {
    let server = ModernServer::start(legacy);
    let mut bridge = spawn(&server.url(), &[]);

    let init = bridge.initialize().await;
    assert_eq!(init["protocolVersion"], "2025-06-18", "{init}");
    assert_eq!(init["serverInfo"]["name"], "modern-peer", "{init}");
    assert_eq!(init["capabilities"]["tools"]["listChanged"], true, "{init}");
    assert!(init["instructions"]
        .as_str()
        .is_some_and(|i| i.contains("Test server")));

    bridge.request(1, "ping", json!({})).await;
    assert_eq!(bridge.response(1).await["result"], json!({}));

    bridge.request(2, "tools/list", json!({})).await;
    let list = bridge.response(2).await;
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(
        names.contains(&"echo") && names.contains(&"ask_name"),
        "{list}"
    );

    let unicode = "héllo ✓ 世界 🦀 \"quoted\"";
    let echo = bridge.call_tool(3, "echo", json!({"text": unicode})).await;
    assert_eq!(text(&echo), unicode, "{echo}");

    // Progress with the client's own token, before the result.
    bridge
        .request(
            4,
            "tools/call",
            json!({"name":"progress","arguments":{"steps":3},"_meta":{"progressToken":"pt-4"}}),
        )
        .await;
    let before = bridge.seen.len();
    let done = bridge.response(4).await;
    assert_eq!(text(&done), "done after 3 steps", "{done}");
    let progress: Vec<&Value> = bridge.seen[before..]
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 3, "{:?}", &bridge.seen[before..]);
    assert!(progress
        .iter()
        .all(|p| p["params"]["progressToken"] == "pt-4"));

    // x-mcp-header: the server refuses the call unless Mcp-Param-Region mirrors the argument.
    let regional = bridge
        .call_tool(5, "regional", json!({"region": "华东 1", "query": "q"}))
        .await;
    assert_eq!(text(&regional), "华东 1: q", "{regional}");

    // Elicitation round trip (MRTR): accepted, then declined.
    bridge
        .request(6, "tools/call", json!({"name":"ask_name","arguments":{}}))
        .await;
    let ask = next_request(&mut bridge).await;
    assert_eq!(ask["method"], "elicitation/create", "{ask}");
    assert_eq!(ask["params"]["message"], "What is your name?");
    let ask_id = ask["id"].as_str().expect("a string id").to_string();
    assert!(ask_id.starts_with("alibridge-mrtr-"), "{ask_id}");
    bridge
        .send(&json!({"jsonrpc":"2.0","id":ask_id,"result":{"action":"accept","content":{"name":"Zoë"}}}))
        .await;
    let hello = bridge.response(6).await;
    assert_eq!(text(&hello), "Hello, Zoë!", "{hello}");

    bridge
        .request(7, "tools/call", json!({"name":"ask_name","arguments":{}}))
        .await;
    let ask = next_request(&mut bridge).await;
    bridge
        .send(&json!({"jsonrpc":"2.0","id":ask["id"],"result":{"action":"decline"}}))
        .await;
    let declined = bridge.response(7).await;
    assert_eq!(text(&declined), "no name (decline)", "{declined}");

    // list_changed arrives through the subscriptions/listen stream, once the server opened it
    // (a change announced before that reaches nobody: the modern era has no replay).
    while server.count("listen_acknowledged").await == 0 {
        tokio::task::yield_now().await;
    }
    let from = bridge.seen.len();
    let changed = bridge.call_tool(8, "change_tools", json!({})).await;
    assert_eq!(text(&changed), "announced");
    wait_for_method(&mut bridge, from, "notifications/tools/list_changed").await;

    // Exactly once: each call ran once on the server (ask_name: once per completed call).
    for (tool, n) in [
        ("echo", 1),
        ("progress", 1),
        ("regional", 1),
        ("ask_name", 2),
        ("change_tools", 1),
    ] {
        assert_eq!(server.count(tool).await, n, "{tool}");
    }
    // The client never saw input_required, and got one answer per request.
    assert!(bridge
        .seen
        .iter()
        .all(|m| m["result"]["resultType"] != "input_required"));
    bridge.close_stdin();
    let rest = bridge.drain().await;
    assert!(rest.is_empty(), "nothing after the last answer: {rest:?}");
    assert_eq!(bridge.wait().await, 0);
    for (id, n) in responses_per_id(&bridge.seen) {
        assert_eq!(n, 1, "id {id} answered {n} times");
    }

    // On the wire: the client's initialize only as the first contact (refused, or answered
    // without a session), then server/discover and nothing of the initialize era; no session;
    // the retry under a new id with the state echoed.
    let log = server.log().await;
    let posts: Vec<&Value> = log.iter().filter(|r| r["httpMethod"] == "POST").collect();
    assert_eq!(posts[0]["rpcMethod"], "initialize", "{log:#?}");
    assert_eq!(posts[1]["rpcMethod"], "server/discover", "{log:#?}");
    assert!(
        posts[1..].iter().all(|r| r["rpcMethod"] != "initialize"),
        "{log:#?}"
    );
    assert!(log.iter().all(|r| r["headers"]["mcp-session-id"].is_null()));
    assert!(posts[1..]
        .iter()
        .all(|r| r["headers"]["mcp-protocol-version"] == "2026-07-28"
            && r["headers"]["mcp-method"] == r["rpcMethod"]));
    let asks = server.posts("tools/call").await;
    let asks: Vec<&Value> = asks.iter().filter(|r| r["tool"] == "ask_name").collect();
    assert_eq!(asks.len(), 4, "two calls, each sent twice: {asks:#?}");
    assert_eq!(asks[0]["rpcId"], 6);
    let retry_id = asks[1]["rpcId"].as_str().expect("a bridge id");
    assert!(retry_id.starts_with("alibridge-retry-"), "{retry_id}");
    assert_eq!(asks[1]["requestState"], STATE, "echoed byte for byte");
    assert_eq!(asks[1]["hasInputResponses"], true);
    assert_eq!(
        asks[0]["meta"]["io.modelcontextprotocol/clientInfo"]["name"],
        "alibridge-tests"
    );
    assert!(
        asks[0]["meta"]["io.modelcontextprotocol/clientCapabilities"]["elicitation"].is_object()
    );
    let regional = server
        .posts("tools/call")
        .await
        .into_iter()
        .find(|r| r["tool"] == "regional")
        .expect("regional call");
    assert_eq!(
        regional["headers"]["mcp-param-region"], "=?base64?5Y2O5LicIDE=?=",
        "{regional}"
    );
    assert_eq!(regional["headers"]["mcp-name"], "regional");
    assert_eq!(server.posts("subscriptions/listen").await.len(), 1);
}

/// Older client → modern-only server (2025 traffic refused with 400 / −32022): the refused
/// `initialize` is followed by the probe, and translation.
#[tokio::test]
async fn older_client_to_modern_only_server() {
    older_client_to_modern_server(Legacy::Reject).await;
}

/// Older client → dual-era server: its stateless answer to `initialize` is held back and the
/// probe finds it modern (listing only 2026-07-28), so it is translated too.
#[tokio::test]
async fn older_client_to_dual_era_server() {
    older_client_to_modern_server(Legacy::Stateless).await;
}

/// A client that did not declare elicitation is never asked; the server's error reaches it.
#[tokio::test]
async fn a_client_without_elicitation_gets_the_servers_error() {
    let server = ModernServer::start(Legacy::Reject);
    let mut bridge = spawn(&server.url(), &[]);
    bridge
        .request(
            0,
            "initialize",
            json!({"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bare","version":"0"}}),
        )
        .await;
    assert!(bridge.response(0).await.get("result").is_some());
    bridge.notify("notifications/initialized", json!({})).await;
    let resp = bridge.call_tool(1, "ask_name", json!({})).await;
    assert_eq!(resp["error"]["code"], -32021, "{resp}");
    assert!(
        bridge
            .seen
            .iter()
            .all(|m| m["method"] != "elicitation/create"),
        "the client was not asked: {:?}",
        bridge.seen
    );
    assert_eq!(server.count("ask_name").await, 0);
    bridge.close_stdin();
    assert_eq!(bridge.wait().await, 0);
}

/// A broken response stream: reads are re-issued under a new id; a tool call is not (unless
/// annotated idempotentHint), and its error says the result was lost.
#[tokio::test]
async fn broken_streams_reissue_reads_and_idempotent_tools_only() {
    let server = ModernServer::start(Legacy::Reject);
    let mut bridge = spawn(&server.url(), &[]);
    bridge.initialize().await;

    server.break_next(json!({"method": "tools/list"})).await;
    bridge.request(1, "tools/list", json!({})).await;
    let list = bridge.response(1).await;
    assert!(list["result"]["tools"].is_array(), "{list}");
    let lists = server.posts("tools/list").await;
    assert_eq!(lists.len(), 2, "{lists:#?}");
    assert_eq!(lists[0]["rpcId"], 1);
    assert!(lists[1]["rpcId"]
        .as_str()
        .is_some_and(|i| i.starts_with("alibridge-retry-")));

    server.break_next(json!({"tool": "echo"})).await;
    let lost = bridge.call_tool(2, "echo", json!({"text": "once"})).await;
    assert_eq!(
        lost["error"]["data"]["alibridge"]["kind"], "stream_closed",
        "{lost}"
    );
    let msg = lost["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("may have run") && msg.contains("idempotentHint"),
        "{msg}"
    );
    assert_eq!(server.count("echo").await, 1, "ran once, not re-issued");

    server.break_next(json!({"tool": "idempotent_echo"})).await;
    let again = bridge
        .call_tool(3, "idempotent_echo", json!({"text": "twice is fine"}))
        .await;
    assert_eq!(text(&again), "twice is fine", "{again}");
    assert_eq!(server.count("idempotent_echo").await, 2);

    bridge.close_stdin();
    assert_eq!(bridge.wait().await, 0);
    for (id, n) in responses_per_id(&bridge.seen) {
        assert_eq!(n, 1, "id {id} answered {n} times");
    }
}

/// A stdio `notifications/cancelled` closes that request's HTTP response stream: the server
/// sees the disconnect as cancellation, and the client gets no answer for it.
#[tokio::test]
async fn cancellation_closes_the_response_stream() {
    let server = ModernServer::start(Legacy::Reject);
    let mut bridge = spawn(&server.url(), &[]);
    bridge.initialize().await;
    bridge
        .request(
            1,
            "tools/call",
            json!({"name":"slow","arguments":{"ms":60000}}),
        )
        .await;
    // The tool is running once the server counted it.
    while server.count("slow_started").await == 0 {
        tokio::task::yield_now().await;
    }
    bridge
        .notify(
            "notifications/cancelled",
            json!({"requestId": 1, "reason": "user"}),
        )
        .await;
    while server.count("slow_aborted").await == 0 {
        tokio::task::yield_now().await;
    }
    bridge.request(2, "ping", json!({})).await;
    assert_eq!(bridge.response(2).await["result"], json!({}));
    bridge.close_stdin();
    let rest = bridge.drain().await;
    assert!(
        bridge.seen.iter().chain(&rest).all(|m| m["id"] != 1),
        "a cancelled request gets no answer: {:?}",
        bridge.seen
    );
}

/// The same for a modern client (no initialize; every request carries `_meta`): its
/// `notifications/cancelled` is relayed as the closing of the request's response stream, the
/// server aborts the tool, and the client gets no answer for the cancelled id.
#[tokio::test]
async fn a_modern_clients_cancellation_closes_the_response_stream() {
    let server = ModernServer::start(Legacy::Reject);
    let mut bridge = spawn(&server.url(), &[]);
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "raw-modern", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}
    });
    bridge
        .request(
            1,
            "tools/call",
            json!({"name":"slow","arguments":{"ms":60000},"_meta": meta}),
        )
        .await;
    while server.count("slow_started").await == 0 {
        tokio::task::yield_now().await;
    }
    bridge
        .notify(
            "notifications/cancelled",
            json!({"requestId": 1, "reason": "user", "_meta": meta}),
        )
        .await;
    while server.count("slow_aborted").await == 0 {
        tokio::task::yield_now().await;
    }
    bridge
        .request(2, "tools/list", json!({"_meta": meta}))
        .await;
    let listed = bridge.response(2).await;
    assert!(listed["result"]["tools"].is_array(), "{listed}");
    bridge.close_stdin();
    let rest = bridge.drain().await;
    assert!(
        bridge.seen.iter().chain(&rest).all(|m| m["id"] != 1),
        "a cancelled request gets no answer: {:?}",
        bridge.seen
    );
    let log = server.log().await;
    assert!(
        log.iter().all(|r| r["rpcMethod"] != "initialize"),
        "a modern client's session is relayed as is: {log:#?}"
    );
}

/// A `subscriptions/listen` stream that breaks is reopened, and the client is told to list
/// again (changes while it was down were missed); announcements then flow on the new stream.
#[tokio::test]
async fn a_broken_listen_stream_is_reopened() {
    let server = ModernServer::start(Legacy::Reject);
    let mut bridge = spawn(&server.url(), &[]);
    bridge.initialize().await;
    while server.count("listen_acknowledged").await == 0 {
        tokio::task::yield_now().await;
    }
    let from = bridge.seen.len();
    server.drop_listens().await;
    wait_for_method(&mut bridge, from, "notifications/tools/list_changed").await;
    assert_eq!(server.count("listen_acknowledged").await, 2);
    assert_eq!(server.posts("subscriptions/listen").await.len(), 2);
    let from = bridge.seen.len();
    let changed = bridge.call_tool(1, "change_tools", json!({})).await;
    assert_eq!(text(&changed), "announced");
    wait_for_method(&mut bridge, from, "notifications/tools/list_changed").await;
    bridge.close_stdin();
    assert_eq!(bridge.wait().await, 0);
}

/// Modern client → modern server: relayed as is, with the request metadata headers derived
/// from each body (the server validates them; the front records them).
#[tokio::test]
async fn modern_client_to_modern_server() {
    for legacy in [Legacy::Reject, Legacy::Stateless] {
        let server = ModernServer::start(legacy);
        let summary = run_modern_client([bin(), &server.url(), r#"{"text":"héllo"}"#]);
        assert_eq!(summary["era"], "modern", "{summary}");
        assert_eq!(summary["serverName"], "modern-peer");
        assert_eq!(summary["echo"], "héllo");
        assert_eq!(summary["askName"], "Hello, Zoë!");
        assert_eq!(summary["regional"], "cn-hangzhou 华东: select 1");
        let log = server.log().await;
        let posts: Vec<&Value> = log.iter().filter(|r| r["httpMethod"] == "POST").collect();
        assert!(
            posts.iter().all(|r| r["rpcMethod"] != "initialize"),
            "{posts:#?}"
        );
        for r in &posts {
            assert_eq!(r["headers"]["mcp-protocol-version"], "2026-07-28", "{r}");
            assert_eq!(r["headers"]["mcp-method"], r["rpcMethod"], "{r}");
        }
        let regional = posts
            .iter()
            .find(|r| r["tool"] == "regional")
            .expect("regional call");
        assert_eq!(regional["headers"]["mcp-name"], "regional");
        assert_eq!(
            regional["headers"]["mcp-param-region"],
            "=?base64?Y24taGFuZ3pob3Ug5Y2O5Lic?="
        );
        // The client ran the MRTR round itself: its retry carries its own new id.
        let asks: Vec<&&Value> = posts.iter().filter(|r| r["tool"] == "ask_name").collect();
        assert_eq!(asks.len(), 2);
        assert_eq!(asks[1]["requestState"], STATE);
    }
}

/// Modern client → rmcp 3.11, which speaks both eras (its `server/discover` lists 2026-07-28):
/// the modern exchange is relayed as is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modern_client_to_rmcp_dual_era() {
    let server = TestServer::start().await;
    let summary = run_modern_client([bin(), &server.url(), r#"{"text":"both eras"}"#]);
    assert_eq!(summary["era"], "modern", "{summary}");
    assert_eq!(summary["serverName"], "rmcp");
    assert_eq!(summary["echo"], "both eras");
    assert_eq!(server.calls("echo"), 1);
    assert!(server
        .requests()
        .iter()
        .all(|r| r.rpc_method.as_deref() != Some("initialize")));
}

/// Modern client → server-everything (2025 Streamable HTTP only): the probe gets a non-modern
/// error at once, the client falls back to initialize, and the same bridge serves it.
#[tokio::test]
async fn modern_client_to_server_everything_falls_back() {
    let server = ServerEverything::start(Mode::StreamableHttp);
    let summary = run_modern_client([bin(), &server.url(), r#"{"message":"fallback"}"#]);
    assert_eq!(summary["era"], "legacy", "{summary}");
    assert!(
        summary["echo"]
            .as_str()
            .is_some_and(|e| e.contains("fallback")),
        "{summary}"
    );
}

/// Older client → a server that speaks both eras, the client's version included (rmcp 3.11):
/// `auto` sends the client's `initialize` first and, answered with a session, never probes
/// (issue 21: a cold start pays no round trip for the era); `legacy` never probes either.
#[tokio::test]
async fn older_client_to_legacy_server_is_never_probed() {
    for flags in [&[][..], &["--protocol", "legacy"][..]] {
        let server = TestServer::start().await;
        let mut bridge = spawn(&server.url(), flags);
        bridge.initialize().await;
        let echo = bridge.call_tool(1, "echo", json!({"text": "old"})).await;
        assert_eq!(text(&echo), "old", "{echo}");
        bridge.close_stdin();
        assert_eq!(bridge.wait().await, 0);
        let posts: Vec<_> = server
            .requests()
            .into_iter()
            .filter(|r| r.method == http::Method::POST)
            .collect();
        assert!(
            posts
                .iter()
                .all(|r| r.rpc_method.as_deref() != Some("server/discover")),
            "{flags:?}: {posts:#?}"
        );
        assert_eq!(posts[0].rpc_method.as_deref(), Some("initialize"));
        // The 2025 session's requests carry the derived headers too.
        let call = posts
            .iter()
            .find(|r| r.rpc_method.as_deref() == Some("tools/call"))
            .unwrap();
        assert_eq!(call.header("mcp-method"), Some("tools/call"));
        assert_eq!(call.header("mcp-name"), Some("echo"));
        assert!(call.header("mcp-session-id").is_some());
    }
}

/// `--protocol modern` refuses a legacy-only server with an error that names the flag.
#[tokio::test]
async fn protocol_modern_refuses_a_legacy_server() {
    let server = ServerEverything::start(Mode::StreamableHttp);
    let mut bridge = spawn(&server.url(), &["--protocol", "modern"]);
    bridge
        .request(
            0,
            "initialize",
            json!({"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}),
        )
        .await;
    let resp = bridge.response(0).await;
    assert_eq!(
        resp["error"]["data"]["alibridge"]["kind"], "protocol",
        "{resp}"
    );
    let msg = resp["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("--protocol") && msg.contains("2026-07-28"),
        "{msg}"
    );
    bridge.close_stdin();
    assert_eq!(bridge.wait().await, 0);
}

/// `--protocol legacy` against a modern-only server: nothing is translated, and the server's
/// own refusal (−32022, naming its versions) reaches the client.
#[tokio::test]
async fn protocol_legacy_relays_a_modern_only_servers_refusal() {
    let server = ModernServer::start(Legacy::Reject);
    let mut bridge = spawn(&server.url(), &["--protocol", "legacy"]);
    bridge
        .request(
            0,
            "initialize",
            json!({"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}),
        )
        .await;
    let resp = bridge.response(0).await;
    assert_eq!(resp["error"]["code"], -32022, "{resp}");
    assert_eq!(resp["error"]["data"]["supported"], json!(["2026-07-28"]));
    assert!(server.posts("server/discover").await.is_empty());
    bridge.close_stdin();
    assert_eq!(bridge.wait().await, 0);
}

/// An initialize-era client's handshake and one echo through the bridge; returns the
/// initialize answer and the echo answer.
async fn older_client_smoke(url: &str, flags: &[&str], echo_args: Value) -> (Value, Value) {
    let mut bridge = spawn(url, flags);
    bridge
        .request(
            0,
            "initialize",
            json!({"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"smoke","version":"0"}}),
        )
        .await;
    let init = bridge.response(0).await;
    bridge.notify("notifications/initialized", json!({})).await;
    let echo = bridge.call_tool(1, "echo", echo_args).await;
    bridge.close_stdin();
    assert_eq!(bridge.wait().await, 0);
    (init, echo)
}

/// The cells of the initialize-era row not covered above, one smoke each: `modern` translates
/// for servers that speak 2026-07-28 (even one that also speaks the client's version), and
/// `legacy` relays the handshake to servers that serve it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_client_in_every_mode() {
    let rmcp = TestServer::start().await;
    let (init, echo) =
        older_client_smoke(&rmcp.url(), &["--protocol", "modern"], json!({"text":"t"})).await;
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18", "{init}");
    assert_eq!(text(&echo), "t", "{echo}");
    assert!(
        rmcp.requests()
            .iter()
            .all(|r| r.rpc_method.as_deref() != Some("initialize")),
        "translated: no initialize reached rmcp"
    );

    let modern_only = ModernServer::start(Legacy::Reject);
    let (init, echo) = older_client_smoke(
        &modern_only.url(),
        &["--protocol", "modern"],
        json!({"text":"m"}),
    )
    .await;
    assert_eq!(
        init["result"]["serverInfo"]["name"], "modern-peer",
        "{init}"
    );
    assert_eq!(text(&echo), "m", "{echo}");

    let dual = ModernServer::start(Legacy::Stateless);
    let (init, echo) =
        older_client_smoke(&dual.url(), &["--protocol", "legacy"], json!({"text":"d"})).await;
    assert_eq!(
        init["result"]["serverInfo"]["name"], "modern-peer",
        "{init}"
    );
    assert_eq!(text(&echo), "d", "{echo}");
    assert_eq!(
        dual.posts("initialize").await.len(),
        1,
        "served by its 2025 leg"
    );
    assert!(dual.posts("server/discover").await.is_empty());

    let everything = ServerEverything::start(Mode::StreamableHttp);
    for flags in [&[][..], &["--protocol", "legacy"][..]] {
        let (init, echo) =
            older_client_smoke(&everything.url(), flags, json!({"message":"e"})).await;
        assert!(init.get("result").is_some(), "{flags:?}: {init}");
        assert!(text(&echo).contains('e'), "{flags:?}: {echo}");
    }
}

/// The modern-client row in every mode: a server that speaks 2026-07-28 is relayed to in all
/// three; a legacy-only one makes the client fall back (auto, legacy) or is refused (modern).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modern_client_in_every_mode() {
    let modern_only = ModernServer::start(Legacy::Reject);
    for mode in ["auto", "legacy", "modern"] {
        let s = run_modern_client([
            bin(),
            &modern_only.url(),
            r#"{"text":"x"}"#,
            "--protocol",
            mode,
        ]);
        assert_eq!(s["era"], "modern", "{mode}: {s}");
        assert_eq!(s["askName"], "Hello, Zoë!", "{mode}: {s}");
        assert_eq!(s["regional"], "cn-hangzhou 华东: select 1", "{mode}: {s}");
    }
    let everything = ServerEverything::start(Mode::StreamableHttp);
    for mode in ["auto", "legacy"] {
        let s = run_modern_client([
            bin(),
            &everything.url(),
            r#"{"message":"y"}"#,
            "--protocol",
            mode,
        ]);
        assert_eq!(s["era"], "legacy", "{mode}: {s}");
    }
    let (s, stderr) = try_modern_client([
        bin(),
        &everything.url(),
        r#"{"message":"z"}"#,
        "--protocol",
        "modern",
    ]);
    assert_eq!(s["ok"], false, "{s}\n{stderr}");
    assert_eq!(s["step"], "connect", "{s}");
    assert!(
        s["error"]
            .as_str()
            .is_some_and(|e| e.contains("--protocol modern")),
        "{s}"
    );
}
