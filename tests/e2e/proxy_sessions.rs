//! `alibridge proxy` end to end, sessions and lifecycle: real MCP clients (rmcp's Streamable
//! HTTP client, the stdio bridge over legacy SSE) through the proxy to the rmcp test server
//! and server-everything from npm, unbuffered SSE, upstream failures, concurrency, SIGTERM,
//! and the command line. Access rules and credentials: `proxy`.
#![allow(deprecated)] // sampling and logging types are deprecated in rmcp (SEP-2577)

use rmcp::model::{
    CallToolRequestParams, ClientInfo, CreateMessageRequestParams, CreateMessageResult,
    GetPromptRequestParams, LoggingMessageNotificationParam, ReadResourceRequestParams,
};
use rmcp::service::{NotificationContext, RequestContext, RoleClient, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, ErrorData, ServiceExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::support::bridge::{bin, Bridge};
use crate::support::net::{http_client, ClosedPort};
use crate::support::peers::{Mode, ServerEverything};
use crate::support::proxy::{handshake, plain_rig, post, Proxy, INIT, STEP};

/// The MCP client side: answers sampling, collects logging notifications.
#[derive(Clone)]
struct Client {
    logs: mpsc::UnboundedSender<Value>,
}

impl ClientHandler for Client {
    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _cx: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        let asked = serde_json::to_value(&params.messages).unwrap();
        let asked = asked[0]["content"]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        Ok(serde_json::from_value(json!({
            "model": "canned", "role": "assistant", "stopReason": "endTurn",
            "content": {"type": "text", "text": format!("canned reply to: {asked}")}
        }))
        .unwrap())
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _cx: NotificationContext<RoleClient>,
    ) {
        let _ = self.logs.send(params.data);
    }

    fn get_info(&self) -> ClientInfo {
        serde_json::from_value(json!({
            "protocolVersion": "2025-06-18",
            "capabilities": {"sampling": {}},
            "clientInfo": {"name": "alibridge-proxy-tests", "version": "0"}
        }))
        .unwrap()
    }
}

type McpClient = RunningService<RoleClient, Client>;

/// An rmcp Streamable HTTP client session at `url`, and its logging notifications.
async fn connect(url: &str) -> (McpClient, mpsc::UnboundedReceiver<Value>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let transport = StreamableHttpClientTransport::with_client(
        http_client(),
        StreamableHttpClientTransportConfig::with_uri(url.to_string()),
    );
    let client = tokio::time::timeout(STEP, Client { logs: tx }.serve(transport))
        .await
        .expect("initialize in time")
        .expect("initialize through the proxy");
    (client, rx)
}

fn params<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

/// The first text content of a tool result.
async fn call_text(c: &McpClient, name: &str, args: Value) -> String {
    let p: CallToolRequestParams = params(json!({"name": name, "arguments": args}));
    let r = tokio::time::timeout(STEP, c.call_tool(p))
        .await
        .expect("answer in time")
        .unwrap_or_else(|e| panic!("{name} failed: {e}"));
    serde_json::to_value(&r).unwrap()["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A real rmcp client through the proxy: tools, sampling (a server request on the POST stream),
/// progress, and notifications on the GET stream; session headers pass, the client's own
/// Authorization never reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmcp_client_full_session_through_the_proxy() {
    let (server, proxy) = plain_rig(&[]).await;
    let (client, mut logs) = connect(&proxy.url("/accounts/1/custom/t/id/x/mcp")).await;
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "sample"), "{tools:?}");
    assert_eq!(
        call_text(&client, "echo", json!({"text": "héllo"})).await,
        "héllo"
    );
    assert_eq!(
        call_text(&client, "sample", json!({"prompt": "ping"})).await,
        "canned reply to: ping"
    );
    assert_eq!(
        call_text(&client, "progress", json!({"steps": 3})).await,
        "done 3"
    );
    // The notifications go to the GET stream: have it open first, so they are live messages
    // (not a replay to a stream opened meanwhile, which can overtake the live ones).
    server
        .wait_for_request(|r| r.method == "GET" && r.status == Some(200))
        .await;
    assert_eq!(
        call_text(&client, "notify", json!({"count": 3})).await,
        "sent 3"
    );
    // rmcp's client hands each notification to the handler in a task of its own, so their
    // order at the handler is not the stream's: compare the set (the proxy relays the stream's
    // bytes as they come; order on one stream is tested for the bridge on stdout).
    let mut got = Vec::new();
    for _ in 0..3 {
        let n = tokio::time::timeout(STEP, logs.recv())
            .await
            .expect("notification in time");
        got.push(n.unwrap()["seq"].as_u64().expect("a seq number"));
    }
    got.sort_unstable();
    assert_eq!(got, [0, 1, 2], "GET-stream notifications");
    client.cancel().await.unwrap();
    let reqs = server.requests();
    assert!(
        reqs.iter().any(|r| r.method == "GET"),
        "a GET stream was opened"
    );
    for r in &reqs {
        assert_eq!(
            r.uri.split('?').next(),
            Some("/accounts/1/custom/t/id/x/mcp")
        );
        assert_eq!(
            r.header("authorization"),
            None,
            "the client's token travelled"
        );
        assert_eq!(r.header("host"), Some(server.addr().to_string().as_str()));
        if r.rpc_method.as_deref() != Some("initialize") {
            assert!(
                r.header("mcp-session-id").is_some(),
                "{:?} without session",
                r.rpc_method
            );
        }
    }
}

/// server-everything (Streamable HTTP) through the proxy with an rmcp client: tools,
/// resources, prompts and sampling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_everything_tools_resources_prompts_sampling() {
    let everything = ServerEverything::start(Mode::StreamableHttp);
    let proxy = Proxy::start(
        &["--auth", "none", "--upstream-url", &everything.base_url()],
        &[],
    )
    .await;
    let (client, _logs) = connect(&proxy.url("/mcp")).await;
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "get-sum"), "{tools:?}");
    assert_eq!(
        call_text(&client, "echo", json!({"message": "hi"})).await,
        "Echo: hi"
    );
    let uri = "demo://resource/static/document/architecture.md";
    let listed = client.list_all_resources().await.unwrap();
    assert!(listed.iter().any(|r| r.uri == uri), "{listed:?}");
    let read = client
        .read_resource(params::<ReadResourceRequestParams>(json!({"uri": uri})))
        .await
        .unwrap();
    assert!(serde_json::to_string(&read)
        .unwrap()
        .contains("architecture"));
    let prompts = client.list_all_prompts().await.unwrap();
    assert!(
        prompts.iter().any(|p| p.name == "args-prompt"),
        "{prompts:?}"
    );
    let prompt = client
        .get_prompt(params::<GetPromptRequestParams>(
            json!({"name": "args-prompt", "arguments": {"city": "Hangzhou"}}),
        ))
        .await
        .unwrap();
    let prompt = serde_json::to_value(&prompt).unwrap();
    assert_eq!(
        prompt["messages"][0]["content"]["text"],
        "What's weather in Hangzhou?"
    );
    let sampled = call_text(
        &client,
        "trigger-sampling-request",
        json!({"prompt": "ping", "maxTokens": 8}),
    )
    .await;
    assert!(
        sampled.contains("canned reply to: Resource trigger-sampling-request context: ping"),
        "{sampled}"
    );
    client.cancel().await.unwrap();
}

/// Legacy HTTP+SSE (server-everything `sse`): the event stream arrives while it is still open
/// (no buffering), without Content-Length, and a whole session runs through the proxy with the
/// stdio bridge as the SSE client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_passes_through_unbuffered() {
    let everything = ServerEverything::start(Mode::Sse);
    let proxy = Proxy::start(
        &["--auth", "none", "--upstream-url", &everything.base_url()],
        &[],
    )
    .await;
    let mut resp = http_client()
        .get(proxy.url("/sse"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    assert!(resp.headers().get("content-length").is_none());
    assert_eq!(resp.headers()["x-accel-buffering"], "no");
    let mut seen = String::new();
    while !seen.contains("\n\n") {
        let chunk = tokio::time::timeout(STEP, resp.chunk())
            .await
            .expect("the first event in time");
        seen.push_str(&String::from_utf8_lossy(
            &chunk.unwrap().expect("stream open"),
        ));
    }
    assert!(
        seen.contains("event: endpoint") && seen.contains("/message?sessionId="),
        "{seen}"
    );
    drop(resp);

    let mut bridge = Bridge::spawn([proxy.url("/sse").as_str(), "--transport", "sse-only"]);
    bridge.initialize().await;
    let r = bridge
        .call_tool(1, "echo", json!({"message": "over sse"}))
        .await;
    assert_eq!(r["result"]["content"][0]["text"], "Echo: over sse", "{r}");
    bridge.close_stdin();
    bridge.drain().await;
    assert_eq!(bridge.wait().await, 0);
}

/// An unreachable upstream (never up, or killed) is a 502 whose body names the upstream and
/// the cause; the proxy keeps serving. The banner says why no servers are listed (the upstream
/// is not an OpenAPI MCP host, so `auto` signs nothing for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_is_a_502_with_a_clear_body() {
    let closed_port = ClosedPort::new();
    let closed = closed_port.addr();
    let upstream = format!("http://{closed}");
    let proxy = Proxy::start(&["--site-type", "CN", "--upstream-url", &upstream], &[]).await;
    assert!(
        proxy
            .banner
            .contains("not listed (skipped for --auth none and for upstreams that are not an OpenAPI MCP host"),
        "{}",
        proxy.banner
    );
    let r = post(&proxy.url("/mcp"), None, INIT).await;
    assert_eq!(r.status(), 502);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "upstream_unreachable", "{body}");
    assert_eq!(body["upstream"], format!("{upstream}/mcp"), "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("could not reach") && message.contains(&closed.to_string()),
        "{message}"
    );

    let (server, proxy) = plain_rig(&[]).await;
    handshake(&proxy.url("/mcp")).await;
    server.kill();
    let r = post(&proxy.url("/mcp"), None, INIT).await;
    assert_eq!(r.status(), 502);
    let health: Value = proxy.health().await;
    assert_eq!(health["requests"]["upstreamErrors"], 1, "{health}");
}

/// 100 rmcp clients at once, each with its own session, all answered correctly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_clients() {
    let (server, proxy) = plain_rig(&[]).await;
    let url = proxy.url("/mcp");
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move {
                let (client, _logs) = connect(&url).await;
                let text = format!("client {i}");
                assert_eq!(
                    call_text(&client, "echo", json!({"text": text})).await,
                    text
                );
                client.cancel().await.unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(server.calls("echo"), 100);
    let sessions: std::collections::BTreeSet<_> = server
        .requests()
        .into_iter()
        .filter_map(|r| r.issued_session)
        .collect();
    assert_eq!(sessions.len(), 100);
}

/// SIGTERM: the request in flight still gets its answer, then the proxy exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_request_in_flight_finish_and_exits_zero() {
    let (server, mut proxy) = plain_rig(&["--shutdown-grace", "20"]).await;
    let url = proxy.url("/mcp");
    let sid = handshake(&url).await;
    let slow = json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"sleep","arguments":{"ms":700}}}).to_string();
    let in_flight = tokio::spawn({
        let (url, sid) = (url.clone(), sid.clone());
        async move {
            let r = post(&url, Some(&sid), &slow).await;
            (r.status(), r.text().await.unwrap())
        }
    });
    server.wait_for_calls("sleep", 1).await;
    proxy.sigterm();
    let (status, text) = in_flight.await.unwrap();
    assert_eq!(status, 200);
    assert!(text.contains("slept 700"), "{text}");
    assert_eq!(proxy.wait().await, 0, "stderr:\n{}", proxy.stderr());
    assert!(
        tokio::net::TcpStream::connect(proxy.addr).await.is_err(),
        "still listening"
    );
}

/// `proxy --help` documents every flag with its environment variable; a malformed rule or a
/// plain-http remote upstream is a usage error (exit 2); a port in use is exit 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_line_help_and_errors() {
    let run = |args: &[&str]| {
        std::process::Command::new(bin())
            .arg("proxy")
            .args(args)
            .env_remove("ALIBRIDGE_ALLOWED_SERVERS")
            .env_remove("ALIBRIDGE_UPSTREAM_URL")
            .env("HOME", std::env::temp_dir())
            .output()
            .unwrap()
    };
    let help = run(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let help = String::from_utf8_lossy(&help.stdout);
    for (flag, env) in [
        ("--host", "ALIBRIDGE_PROXY_HOST"),
        ("--port", "ALIBRIDGE_PROXY_PORT"),
        ("--upstream-url", "ALIBRIDGE_UPSTREAM_URL"),
        ("--allowed-servers", "ALIBRIDGE_ALLOWED_SERVERS"),
        ("--blocked-servers", "ALIBRIDGE_BLOCKED_SERVERS"),
        ("--allowed-hosts", "ALIBRIDGE_PROXY_ALLOWED_HOSTS"),
        ("--auth", "ALIBRIDGE_AUTH"),
        ("--site-type", "ALIBRIDGE_SITE_TYPE"),
        ("--allow-http", "ALIBRIDGE_ALLOW_HTTP"),
        ("--connect-timeout", "ALIBRIDGE_CONNECT_TIMEOUT"),
        ("--shutdown-grace", "ALIBRIDGE_SHUTDOWN_GRACE"),
        ("--debug", "ALIBRIDGE_DEBUG"),
        ("--log-file", "ALIBRIDGE_LOG_FILE"),
        ("--proxy-token", "ALIBRIDGE_PROXY_TOKEN"),
        ("--max-connections", "ALIBRIDGE_PROXY_MAX_CONNECTIONS"),
        ("--max-body-size", "ALIBRIDGE_PROXY_MAX_BODY_SIZE"),
    ] {
        assert!(
            help.contains(flag) && help.contains(env),
            "{flag} / {env}:\n{help}"
        );
    }
    let bad_rule = run(&["--blocked-servers", "a/b"]);
    assert_eq!(bad_rule.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_rule.stderr).contains("a/b"));
    let plain = run(&["--upstream-url", "http://example.com", "--auth", "none"]);
    assert_eq!(plain.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&plain.stderr).contains("refusing plain http"));
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let busy = run(&[
        "--port",
        &port,
        "--auth",
        "none",
        "--upstream-url",
        "http://127.0.0.1:9",
    ]);
    assert_eq!(busy.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&busy.stderr).contains("cannot listen on 127.0.0.1:"));
}
