//! Issue 23, OpenTelemetry: the real binary exports to a real OTLP/HTTP receiver
//! (`support/otlp`, the official protobuf and JSON messages). One span per request with the
//! MCP conventions' attributes, the span tree of a call that needed a new token, a client's
//! `traceparent` continued and sent upstream in `_meta`, a refused call's span and counter, no
//! secret or argument value anywhere in the export, and a dead collector that changes nothing.

use serde_json::{json, Value};

use crate::access_key::{AK_ID, AK_SECRET};
use crate::support::aliyun_fake::AliyunFake;
use crate::support::bridge::{isolated_command, output, Bridge};
use crate::support::check::{assert_no_secrets, tool_text};
use crate::support::home::TempHome;
use crate::support::mcp_server::{ServerOptions, TestServer};
use crate::support::net::ClosedPort;
use crate::support::ops_server::OpsServer;
use crate::support::otlp::{
    children, echo_through_proxy, exporting_bridge, OtlpReceiver, Span, CLIENT, SERVER,
};
use crate::support::peers_modern::{Legacy, ModernServer};

const ERROR: i32 = 2;
/// The bucket boundaries the MCP conventions give for the duration histograms.
const BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// The `_meta.traceparent` of the upstream request that carried `tools/call` id `id`.
fn sent_traceparent(server: &TestServer, id: i64) -> String {
    let req = server
        .requests()
        .into_iter()
        .find(|r| r.rpc_method.as_deref() == Some("tools/call") && r.rpc_id == Some(id.into()))
        .expect("the call reached the server");
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    body["params"]["_meta"]["traceparent"]
        .as_str()
        .unwrap_or_else(|| panic!("no _meta.traceparent in {body}"))
        .to_string()
}

/// Against a modern-only server the client's `initialize` is refused, and the era probe
/// (`server/discover`) that follows is a child span of that `initialize`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_era_probe_is_a_child_of_initialize() {
    let otlp = OtlpReceiver::start().await;
    let server = ModernServer::start(Legacy::Reject);
    let mut b = Bridge::spawn(vec![
        server.url(),
        "--transport".into(),
        "http-only".into(),
        "--otlp-endpoint".into(),
        otlp.url().into(),
    ]);
    let init = b.initialize().await;
    assert_eq!(init["serverInfo"]["name"], "modern-peer", "{init}");
    b.finish().await;
    let probe = otlp
        .span("era probe", |s| s.name == "alibridge.era_probe")
        .await;
    let spans = otlp.spans();
    let parent = spans
        .iter()
        .find(|s| s.span_id == probe.parent_span_id)
        .unwrap_or_else(|| panic!("the probe's parent was exported: {probe:?}"));
    assert_eq!(parent.name, "initialize", "{parent:?}");
}

/// A `tools/call` is one CLIENT span `tools/call echo` with the conventions' attributes, whose
/// child is the HTTP exchange; the server got the span's context in `_meta`; the duration
/// histogram has the conventions' name, unit and buckets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_is_one_client_span_with_the_mcp_attributes() {
    let otlp = OtlpReceiver::start().await;
    let server = TestServer::start().await;
    let mut b = exporting_bridge(server.url(), otlp.url(), &[], &[]);
    b.initialize().await;
    let resp = b.call_tool(7, "echo", json!({"text": "hi"})).await;
    assert_eq!(tool_text(&resp), "hi");
    b.request(
        8,
        "tools/call",
        json!({"name": "no-such-tool", "arguments": {}}),
    )
    .await;
    let code = b.response(8).await["error"]["code"]
        .as_i64()
        .expect("a JSON-RPC error")
        .to_string();
    b.request(
        9,
        "tools/call",
        json!({"name": "progress", "arguments": {"steps": 2}, "_meta": {"progressToken": "p"}}),
    )
    .await;
    assert_eq!(tool_text(&b.response(9).await), "done 2");
    b.finish().await;

    let call = otlp
        .span("tools/call span", |s| s.name == "tools/call echo")
        .await;
    assert_eq!(call.kind, CLIENT);
    assert_eq!(call.attr("mcp.method.name"), Some("tools/call"));
    assert_eq!(call.attr("gen_ai.tool.name"), Some("echo"));
    assert_eq!(call.attr("gen_ai.operation.name"), Some("execute_tool"));
    assert_eq!(call.attr("jsonrpc.request.id"), Some("7"));
    assert_eq!(call.attr("server.address"), Some("127.0.0.1"));
    let port = url::Url::parse(&server.url()).unwrap().port().unwrap();
    assert_eq!(call.attr("server.port"), Some(port.to_string().as_str()));
    assert_eq!(call.attr("network.transport"), Some("tcp"));
    assert_eq!(call.attr("error.type"), None);
    assert_eq!(call.service, "alibridge");
    assert!(call.parent_span_id.is_empty(), "a root span: {call:?}");

    let spans = otlp.spans();
    let posts = children(&spans, &call);
    assert_eq!(posts.len(), 1, "one HTTP exchange: {posts:#?}");
    assert_eq!(posts[0].name, "POST");
    assert_eq!(posts[0].attr("http.response.status_code"), Some("200"));
    let init: Vec<_> = spans.iter().filter(|s| s.name == "initialize").collect();
    assert_eq!(init.len(), 1, "one span per request");
    assert_eq!(init[0].attr("mcp.protocol.version"), Some("2025-06-18"));
    let calls = spans
        .iter()
        .filter(|s| s.attr("jsonrpc.request.id") == Some("7"))
        .count();
    assert_eq!(calls, 1, "one span per request");

    // A 2025 server takes the client's initialize at once: no era probe (issue 21).
    let under_init = children(&spans, init[0]);
    let names: Vec<&str> = under_init.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["POST"], "initialize's only child is its exchange");

    let failed = otlp
        .span("failed call", |s| s.name == "tools/call no-such-tool")
        .await;
    assert_eq!(failed.attr("error.type"), Some(code.as_str()));
    assert_eq!(failed.attr("rpc.response.status_code"), Some(code.as_str()));
    assert_eq!(failed.status, ERROR);

    let progress: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 2, "one SERVER span per server notification");
    assert!(progress.iter().all(|s| s.kind == SERVER));

    let sent = sent_traceparent(&server, 7);
    assert_eq!(sent, format!("00-{}-{}-01", call.trace_id, call.span_id));

    let h = otlp
        .point("mcp.client.operation.duration", |p| {
            p.attributes.get("gen_ai.tool.name").map(String::as_str) == Some("echo")
        })
        .await;
    assert_eq!(h.unit, "s");
    assert_eq!(h.value, 1.0, "one call recorded");
    assert_eq!(h.bounds, BUCKETS);
    assert_eq!(
        h.attributes.get("mcp.method.name").map(String::as_str),
        Some("tools/call")
    );
    assert_eq!(
        h.attributes.get("server.address").map(String::as_str),
        Some("127.0.0.1")
    );
}

/// A client's own `_meta.traceparent` is continued (the span is its child, in its trace) and
/// the server gets the trace with the bridge's span as parent, `tracestate` kept. Configured
/// through the standard variables, with the JSON protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_traceparent_is_continued_and_sent_upstream() {
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const PARENT: &str = "00f067aa0ba902b7";
    let otlp = OtlpReceiver::start().await;
    let server = TestServer::start().await;
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.url()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_SERVICE_NAME", "agents-bridge"),
    ];
    let mut b = Bridge::spawn_with_env(
        [server.url().as_str(), "--transport", "http-only"],
        env.iter().copied(),
    );
    b.initialize().await;
    b.request(
        3,
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "x"},
               "_meta": {"traceparent": format!("00-{TRACE}-{PARENT}-01"), "tracestate": "rojo=1"}}),
    )
    .await;
    assert_eq!(tool_text(&b.response(3).await), "x");
    b.finish().await;

    let call = otlp
        .span("tools/call span", |s| s.name == "tools/call echo")
        .await;
    assert_eq!(call.trace_id, TRACE);
    assert_eq!(call.parent_span_id, PARENT);
    assert_eq!(call.service, "agents-bridge");
    assert!(otlp
        .content_types()
        .iter()
        .all(|c| c.starts_with("application/json")));

    let sent = sent_traceparent(&server, 3);
    assert_eq!(sent, format!("00-{TRACE}-{}-01", call.span_id));
    let req = server
        .requests()
        .into_iter()
        .find(|r| r.rpc_id == Some(3.into()))
        .unwrap();
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body["params"]["_meta"]["tracestate"], "rojo=1");
    assert_eq!(body["params"]["arguments"], json!({"text": "x"}));
}

/// `--deny-tools echo`: the refused call's span says so (decision, rule, `error.type`, error
/// status), it never reached the server, and the refusal counter counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_call_has_its_span_and_counter() {
    let otlp = OtlpReceiver::start().await;
    let server = TestServer::start().await;
    let mut b = exporting_bridge(server.url(), otlp.url(), &["--deny-tools", "echo"], &[]);
    b.initialize().await;
    let resp = b.call_tool(5, "echo", json!({"text": "no"})).await;
    assert!(
        resp.get("error").is_some() || resp["result"]["isError"] == true,
        "{resp}"
    );
    b.finish().await;
    assert_eq!(server.calls("echo"), 0);

    let call = otlp
        .span("refused call span", |s| s.name == "tools/call echo")
        .await;
    assert_eq!(call.attr("alibridge.policy.decision"), Some("deny"));
    assert_eq!(call.attr("error.type"), Some("policy_refused"));
    assert!(call.attr("alibridge.policy.rule").is_some());
    assert_eq!(call.status, ERROR);
    assert!(
        children(&otlp.spans(), &call).is_empty(),
        "nothing was sent"
    );

    let refusals = otlp
        .point("alibridge.policy.refusals", |p| {
            p.attributes.get("gen_ai.tool.name").map(String::as_str) == Some("echo")
        })
        .await;
    assert_eq!(refusals.value, 1.0);
}

/// A call whose token was revoked: its span has the refused exchange (401), the AccessKey
/// mint and the exchange sent again as children, in one trace; the mint counter counts both
/// mints. Nothing secret is anywhere in the export: the AccessKey secret, the minted tokens,
/// a static header's value and an argument value are searched for in the raw bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_mint_is_a_child_of_the_call_and_no_secret_is_exported() {
    const ARG_CANARY: &str = "canary-argument-5f1d0c8e";
    const HEADER_CANARY: &str = "canary-header-9a7b3e21";
    let otlp = OtlpReceiver::start().await;
    let fake = AliyunFake::start().await;
    fake.add_access_key(AK_ID, AK_SECRET);
    let server =
        TestServer::start_with(ServerOptions::requiring_bearer(fake.token_checker())).await;
    let home = TempHome::new("otel-ak");
    let (fake_url, server_url) = (fake.url(), server.url());
    let header = format!("X-Team: {HEADER_CANARY}");
    let args = [
        server_url.as_str(),
        "--transport",
        "http-only",
        "--auth",
        "ak",
        "--site-type",
        "CN",
        "--ims-endpoint",
        fake_url.as_str(),
        "--header",
        header.as_str(),
        "--otlp-endpoint",
        otlp.url(),
    ];
    let env = [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", AK_ID),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", AK_SECRET),
    ];
    let mut b = Bridge::spawn_isolated(args, env, home.path());
    b.initialize().await;
    assert_eq!(
        tool_text(&b.call_tool(1, "echo", json!({"text": ARG_CANARY})).await),
        ARG_CANARY
    );
    fake.revoke_all_tokens();
    assert_eq!(
        tool_text(&b.call_tool(2, "echo", json!({"text": ARG_CANARY})).await),
        ARG_CANARY
    );
    b.finish().await;
    assert_eq!(fake.mint_count(), 2);

    let call = otlp
        .span("second call", |s| s.attr("jsonrpc.request.id") == Some("2"))
        .await;
    let spans = otlp.spans();
    let kids = children(&spans, &call);
    let names: Vec<(&str, Option<&str>)> = kids
        .iter()
        .map(|s| (s.name.as_str(), s.attr("http.response.status_code")))
        .collect();
    assert_eq!(
        names,
        [
            ("POST", Some("401")),
            ("alibridge.access_key.mint", None),
            ("POST", Some("200")),
        ],
        "{kids:#?}"
    );
    assert_eq!(kids[2].attr("http.request.resend_count"), Some("1"));

    otlp.point("alibridge.token.mints", |p| p.value >= 1.0)
        .await;
    let raw = String::from_utf8_lossy(&otlp.raw()).into_owned();
    let mut secrets = vec![
        AK_SECRET.to_string(),
        ARG_CANARY.to_string(),
        HEADER_CANARY.to_string(),
    ];
    secrets.extend(fake.minted_tokens());
    assert_no_secrets("the OTLP export", &raw, &secrets);
    assert!(raw.contains("tools/call"), "the export was searched");
}

/// A collector that refuses connections: every answer arrives as without telemetry, and
/// stderr has exactly one warning line about it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_collector_leaves_relaying_untouched() {
    let dead = ClosedPort::new();
    let server = TestServer::start().await;
    let url = format!("http://{}", dead.addr());
    // Export often, so exports fail while the calls are relayed, not only at exit.
    let mut b = exporting_bridge(server.url(), &url, &[], &[("OTEL_BSP_SCHEDULE_DELAY", "1")]);
    b.initialize().await;
    for id in 1..=40 {
        b.request(
            id,
            "tools/call",
            json!({"name": "echo", "arguments": {"text": format!("m{id}")}}),
        )
        .await;
    }
    let mut answered = std::collections::BTreeMap::new();
    while answered.len() < 40 {
        let v = b.next().await.expect("an answer");
        if let Some(id) = v["id"].as_i64() {
            answered.insert(id, tool_text(&v).to_string());
        }
    }
    for id in 1..=40 {
        assert_eq!(answered[&id], format!("m{id}"));
    }
    let stderr = b.finish().await.stderr;
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("telemetry")).collect();
    assert_eq!(warnings.len(), 1, "one warning line:\n{stderr}");
    assert!(warnings[0].contains("collector"), "{}", warnings[0]);
}

/// `alibridge proxy`: each request it forwards is a SERVER span continuing the client's
/// `_meta.traceparent`, with the upstream exchange as its child; the server gets the proxy's
/// span as parent; the server-side duration histogram counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_traces_each_request_it_forwards() {
    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    const PARENT: &str = "b7ad6b7169203331";
    let otlp = OtlpReceiver::start().await;
    let meta = json!({"traceparent": format!("00-{TRACE}-{PARENT}-01")});
    let (server, _) = echo_through_proxy(&otlp, 9, Some(meta)).await;

    let span = otlp
        .span("proxy span", |s| s.name == "tools/call echo")
        .await;
    assert_eq!(span.kind, SERVER);
    assert_eq!(span.trace_id, TRACE);
    assert_eq!(span.parent_span_id, PARENT);
    assert_eq!(span.service, "alibridge-proxy");
    assert_eq!(span.attr("jsonrpc.request.id"), Some("9"));
    let spans = otlp.spans();
    let kids = children(&spans, &span);
    assert_eq!(kids.len(), 1, "{kids:#?}");
    assert_eq!(kids[0].attr("http.response.status_code"), Some("200"));
    assert_eq!(
        sent_traceparent(&server, 9),
        format!("00-{TRACE}-{}-01", span.span_id)
    );
    let h = otlp
        .point("mcp.server.operation.duration", |p| {
            p.attributes.get("mcp.method.name").map(String::as_str) == Some("tools/call")
        })
        .await;
    assert_eq!(h.value, 1.0);
}

/// `alibridge doctor -- --otlp-endpoint URL` sends the collector an empty export: a live one
/// passes the check, a dead one fails it (exit 1) with a fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_the_configured_collector() {
    let otlp = OtlpReceiver::start().await;
    let dead = ClosedPort::new();
    let dead_url = format!("http://{}", dead.addr());
    let server = TestServer::start().await;
    let home = TempHome::new("otel-doctor");
    for (collector, ok) in [(otlp.url(), true), (dead_url.as_str(), false)] {
        let mut cmd = isolated_command(home.path());
        cmd.args([
            "doctor",
            &server.url(),
            "--json",
            "--",
            "--transport",
            "http-only",
        ])
        .args(["--otlp-endpoint", collector]);
        let (code, stdout, stderr) = output(cmd).await;
        let check: Value = stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["check"] == "telemetry")
            .unwrap_or_else(|| panic!("no telemetry check:\n{stdout}\n{stderr}"));
        assert_eq!(check["ok"], ok, "{check}");
        assert_eq!(code, if ok { 0 } else { 1 }, "{stdout}\n{stderr}");
        if !ok {
            assert!(check["fix"].is_string(), "{check}");
        }
    }
    assert_eq!(
        otlp.empty_exports(),
        1,
        "the live collector got the empty export"
    );
}

/// `--confirm-writes` (which turns pinning on): a write's span has the pin check, the wait
/// for the person's answer and then the exchange as children, and the confirmations counter
/// says `accepted`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmation_and_a_pin_check_are_children_of_their_requests() {
    let otlp = OtlpReceiver::start().await;
    let server = OpsServer::start().await;
    let mut b = Bridge::spawn(vec![
        server.url(),
        "--transport".into(),
        "http-only".into(),
        "--auth".into(),
        "none".into(),
        "--confirm-writes".into(),
        "--otlp-endpoint".into(),
        otlp.url().into(),
    ]);
    b.initialize().await;
    b.request(1, "tools/list", json!({})).await;
    b.response(1).await;
    b.request(
        2,
        "tools/call",
        json!({"name": "DeleteInstance", "arguments": {"InstanceId": "i-otel"}}),
    )
    .await;
    let ask = loop {
        let m = b.next().await.expect("the bridge asks");
        if m["method"] == "elicitation/create" {
            break m;
        }
    };
    b.send(&json!({"jsonrpc": "2.0", "id": ask["id"],
                   "result": {"action": "accept", "content": {"confirm": true}}}))
        .await;
    let resp = b.response(2).await;
    assert_eq!(resp["result"]["isError"], false, "{resp}");
    b.finish().await;
    assert_eq!(server.executed_names(), ["DeleteInstance"]);

    let call = otlp
        .span("the write's span", |s| {
            s.name == "tools/call DeleteInstance"
        })
        .await;
    let spans = otlp.spans();
    let names = |parent: &Span| -> Vec<String> {
        children(&spans, parent)
            .iter()
            .map(|s| s.name.clone())
            .collect()
    };
    let under_call = names(&call);
    for child in ["alibridge.pin_check", "alibridge.confirmation", "POST"] {
        assert!(
            under_call.iter().any(|n| n == child),
            "{child}: {under_call:?}"
        );
    }
    let accepted = otlp
        .point("alibridge.confirmations", |p| {
            p.attributes
                .get("alibridge.confirmation.outcome")
                .map(String::as_str)
                == Some("accepted")
        })
        .await;
    assert_eq!(accepted.value, 1.0);
}
