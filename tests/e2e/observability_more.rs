//! Issue 23, more of the export, end to end against the real OTLP/HTTP receiver
//! (`support/otlp`): the session id only as a hash (bridge and proxy), the event stream's
//! reconnect counter, an OAuth refresh as a child of the call that needed it, the API actions
//! of a CallCLI command as a span attribute (and an argument value nowhere), and a proxy SSE
//! answer's span that lasts as long as its stream.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::support::bridge::Bridge;
use crate::support::check::{assert_no_secrets, tool_text};
use crate::support::core_server::CoreServer;
use crate::support::hostile::Hostile;
use crate::support::mcp_server::TestServer;
use crate::support::otlp::{
    children, echo_through_proxy, exporting_bridge, OtlpReceiver, CLIENT, SERVER,
};
use crate::support::proxy::{handshake_with, next_sse_message, plain_rig, post, INIT_ELICITING};

/// What `mcp.session.id` must hold for session id `id`: the first 16 lowercase hex digits of
/// its SHA-256, computed here independently of the binary.
fn hashed(id: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, id.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    hex[..16].to_string()
}

fn raw_text(otlp: &OtlpReceiver) -> String {
    String::from_utf8_lossy(&otlp.raw()).into_owned()
}

/// The session id the server assigned is exported only as its hash: on the bridge's CLIENT
/// span (its upstream session), and on the proxy's SERVER span (the client's
/// `Mcp-Session-Id`); the id itself is nowhere in the exported bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_id_is_exported_only_as_a_hash() {
    // The stdio bridge: the session the rmcp server issued to it.
    let otlp = OtlpReceiver::start().await;
    let server = TestServer::start().await;
    let mut b = exporting_bridge(server.url(), otlp.url(), &[], &[]);
    b.initialize().await;
    assert_eq!(
        tool_text(&b.call_tool(4, "echo", json!({"text": "s"})).await),
        "s"
    );
    b.finish().await;
    let sid = server.issued_session();
    exported_only_hashed(&otlp, CLIENT, &sid, "the bridge's OTLP export").await;

    // The proxy: the session id its client sent.
    let otlp = OtlpReceiver::start().await;
    let (_server, sid) = echo_through_proxy(&otlp, 6, None).await;
    exported_only_hashed(&otlp, SERVER, &sid, "the proxy's OTLP export").await;
}

/// The `tools/call echo` span of `kind` holds the hash of session `sid`, and the raw export
/// holds the hash but not the id.
async fn exported_only_hashed(otlp: &OtlpReceiver, kind: i32, sid: &str, what: &str) {
    let span = otlp
        .span("tools/call span", |s| s.name == "tools/call echo")
        .await;
    assert_eq!(span.kind, kind);
    let expected = hashed(sid);
    assert_eq!(
        span.attr("mcp.session.id"),
        Some(expected.as_str()),
        "{span:?}"
    );
    assert_ne!(expected, sid);
    let raw = raw_text(otlp);
    assert!(raw.contains(&expected), "the export was searched");
    assert_no_secrets(what, &raw, &[sid]);
}

/// The server ends the bridge's GET stream (its session is closed): the monotonic counter
/// `alibridge.stream.reconnects` is exported with a value of at least 1, and was not before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_reconnects_are_counted() {
    let otlp = OtlpReceiver::start().await;
    let server = TestServer::start().await;
    let env = [("OTEL_METRIC_EXPORT_INTERVAL", "200")];
    let mut b = exporting_bridge(server.url(), otlp.url(), &[], &env);
    b.initialize().await;
    server
        .wait_for_request(|r| r.method == http::Method::GET && r.status == Some(200))
        .await;
    // A metrics export after the stream opened: nothing reconnected yet.
    otlp.point("mcp.client.operation.duration", |_| true).await;
    assert!(
        !otlp
            .points()
            .iter()
            .any(|p| p.metric == "alibridge.stream.reconnects"),
        "no reconnect before the cut: {:#?}",
        otlp.points()
    );

    assert_eq!(server.expire_sessions().await, 1, "the stream's session");
    let reconnects = otlp
        .point("alibridge.stream.reconnects", |p| p.value >= 1.0)
        .await;
    assert!(reconnects.monotonic, "a counter: {reconnects:?}");
    // The bridge serves on after the stream was cut.
    b.request(2, "ping", json!({})).await;
    assert!(b.response(2).await.get("result").is_some());
    b.finish().await;
}

/// A client's trace that is not sampled (flags `00`, parent-based sampling, the default):
/// no span is exported for it, the server still receives the trace with flags `00`, and the
/// duration histogram still counts the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsampled_trace_is_carried_but_not_recorded() {
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    let otlp = OtlpReceiver::start().await;
    let server = TestServer::start().await;
    let env = [
        ("OTEL_METRIC_EXPORT_INTERVAL", "200"),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
    ];
    let mut b = exporting_bridge(server.url(), otlp.url(), &[], &env);
    b.initialize().await;
    b.request(
        4,
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "quiet"},
               "_meta": {"traceparent": format!("00-{TRACE}-00f067aa0ba902b7-00")}}),
    )
    .await;
    assert_eq!(tool_text(&b.response(4).await), "quiet");
    otlp.point("mcp.client.operation.duration", |p| {
        p.attributes.get("gen_ai.tool.name").map(String::as_str) == Some("echo")
    })
    .await;
    b.finish().await;

    let req = server
        .requests()
        .into_iter()
        .find(|r| r.rpc_method.as_deref() == Some("tools/call"))
        .expect("the call reached the server");
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    let sent = body["params"]["_meta"]["traceparent"]
        .as_str()
        .unwrap_or_default();
    assert!(
        sent.starts_with(&format!("00-{TRACE}-")) && sent.ends_with("-00"),
        "the trace goes on, unsampled: {sent}"
    );
    assert!(
        !sent.contains("00f067aa0ba902b7"),
        "the bridge's own span is the parent upstream: {sent}"
    );
    assert!(
        otlp.spans().iter().all(|s| s.trace_id != TRACE),
        "nothing of the unsampled trace is exported: {:#?}",
        otlp.spans()
    );
    // The bridge's own `initialize` (a new trace, sampled) is exported: export works.
    assert!(otlp.spans().iter().any(|s| s.name == "initialize"));
}

/// The legacy HTTP+SSE transport's stream, broken by the server: the reconnect is counted in
/// the same counter, and the bridge serves on over the new stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_sse_reconnects_are_counted() {
    let otlp = OtlpReceiver::start().await;
    let server = Hostile::start().await;
    let mut b = Bridge::spawn_with_env(
        [
            server.url("/sse"),
            "--transport".into(),
            "sse-only".into(),
            "--otlp-endpoint".into(),
            otlp.url().into(),
        ],
        [("OTEL_METRIC_EXPORT_INTERVAL", "200")],
    );
    b.initialize().await;
    b.request(1, "ping", json!({})).await;
    assert!(b.response(1).await.get("result").is_some());
    otlp.point("mcp.client.operation.duration", |_| true).await;
    assert!(
        !otlp
            .points()
            .iter()
            .any(|p| p.metric == "alibridge.stream.reconnects"),
        "no reconnect before the break"
    );

    server.break_stream();
    server.wait_for(2, |r| r.method == "GET").await;
    let reconnects = otlp
        .point("alibridge.stream.reconnects", |p| p.value >= 1.0)
        .await;
    assert!(reconnects.monotonic, "a counter: {reconnects:?}");
    b.request(2, "ping", json!({})).await;
    assert!(b.response(2).await.get("result").is_some());
    b.finish().await;
}

/// An access token revoked mid-session: the next call's 401 is fixed by a refresh, and the
/// span `alibridge.oauth.refresh` is a child of that call's span (same trace); the counter
/// `alibridge.token.refreshes` counts exactly that one refresh; no token or secret the
/// authorization server handled is in the export.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oauth_refresh_is_a_child_of_the_call_that_needed_it() {
    use crate::support::oauth_rig::{echo, Rig};

    let otlp = OtlpReceiver::start().await;
    let rig = Rig::start("otel-refresh").await;
    let mut b = rig.spawn(
        &["--otlp-endpoint", otlp.url()],
        &[("OTEL_METRIC_EXPORT_INTERVAL", "200")],
    );
    b.initialize().await;
    echo(&rig, &mut b, 1, "before").await;
    rig.oauth.revoke_access_tokens();
    echo(&rig, &mut b, 2, "after").await;
    b.finish().await;
    assert_eq!(rig.oauth.token_count("refresh_token"), 1, "one refresh");

    // The refresh that sent a request: the one in the trace of the call whose 401 needed it.
    // (The sign-in at `initialize` has an `alibridge.oauth.refresh` child too, for the attempt
    // that found no refresh token; it is not this one.)
    let call = otlp
        .span("the second call", |s| {
            s.name == "tools/call echo" && s.attr("jsonrpc.request.id") == Some("2")
        })
        .await;
    let refresh = otlp
        .span("the call's refresh span", |s| {
            s.name == "alibridge.oauth.refresh" && s.trace_id == call.trace_id
        })
        .await;
    let spans = otlp.spans();
    let parent = spans
        .iter()
        .find(|s| s.span_id == refresh.parent_span_id && s.trace_id == refresh.trace_id)
        .unwrap_or_else(|| panic!("the refresh's parent was exported: {refresh:?}\n{spans:#?}"));
    assert_eq!(parent.span_id, call.span_id, "{parent:?}");
    assert_eq!(parent.name, "tools/call echo", "{parent:?}");
    // Under the call: the refused exchange, the refresh, the exchange sent again.
    let under: Vec<(&str, Option<&str>)> = children(&spans, parent)
        .iter()
        .map(|s| (s.name.as_str(), s.attr("http.response.status_code")))
        .collect();
    assert_eq!(
        under,
        [
            ("POST", Some("401")),
            ("alibridge.oauth.refresh", None),
            ("POST", Some("200")),
        ]
    );

    let counted = otlp
        .point("alibridge.token.refreshes", |p| p.value >= 1.0)
        .await;
    assert!(counted.monotonic, "{counted:?}");
    assert_eq!(counted.value, 1.0, "{counted:?}");
    rig.assert_no_secrets(&raw_text(&otlp), "the OTLP export");
}

/// `--read-only` against a Core-edition-like server: a CallCLI command's API is the span
/// attribute `alibridge.api.action` (`product:Action`), for a read that passes and a write
/// that is refused; the canaries in their argument values are nowhere in the export.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callcli_api_actions_are_span_attributes() {
    const READ_CANARY: &str = "canary-cli-read-3c9e71d2";
    const WRITE_CANARY: &str = "canary-cli-write-8b04fa6e";
    let otlp = OtlpReceiver::start().await;
    let server = CoreServer::start().await;
    let mut b = exporting_bridge(
        server.url(),
        otlp.url(),
        &["--auth", "none", "--read-only"],
        &[],
    );
    b.initialize().await;
    let cli = |id: i64, command: &str| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
               "params": {"name": "AlibabaCloud___CallCLI", "arguments": {"command": command}}})
    };
    let commands = [
        (
            1,
            "aliyun ecs DescribeInstances --RegionId cn-hangzhou".to_string(),
        ),
        (
            2,
            format!(
                "aliyun ecs DescribeInstances --RegionId cn-hangzhou --InstanceIds {READ_CANARY}"
            ),
        ),
        (
            3,
            format!("aliyun ecs DeleteInstance --InstanceId {WRITE_CANARY}"),
        ),
    ];
    let mut answers = Vec::new();
    for (id, command) in &commands {
        b.send(&cli(*id, command)).await;
        answers.push(b.response(*id).await);
    }
    b.finish().await;
    assert!(
        tool_text(&answers[0]).starts_with("ran AlibabaCloud___CallCLI"),
        "{}",
        answers[0]
    );
    assert!(
        tool_text(&answers[1]).contains(READ_CANARY),
        "{}",
        answers[1]
    );
    assert!(answers[2].get("error").is_some(), "refused: {}", answers[2]);
    server.assert_never_reached(WRITE_CANARY);

    let span = |id: &'static str| {
        let otlp = &otlp;
        async move {
            otlp.span("a CallCLI span", |s| {
                s.name == "tools/call AlibabaCloud___CallCLI"
                    && s.attr("jsonrpc.request.id") == Some(id)
            })
            .await
        }
    };
    for id in ["1", "2"] {
        let s = span(id).await;
        assert_eq!(
            s.attr("alibridge.api.action"),
            Some("ecs:DescribeInstances"),
            "{s:?}"
        );
        assert_eq!(s.attr("error.type"), None, "{s:?}");
    }
    let refused = span("3").await;
    assert_eq!(
        refused.attr("alibridge.api.action"),
        Some("ecs:DeleteInstance"),
        "{refused:?}"
    );
    assert_eq!(refused.attr("alibridge.policy.decision"), Some("deny"));
    let raw = raw_text(&otlp);
    assert!(
        raw.contains("ecs:DescribeInstances"),
        "the export was searched"
    );
    assert_no_secrets(
        "the OTLP export",
        &raw,
        &[READ_CANARY.to_string(), WRITE_CANARY.to_string()],
    );
}

fn now_unix_nano() -> u64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    u64::try_from(d.as_nanos()).unwrap()
}

/// Through `alibridge proxy`, a `tools/call` answered as SSE whose result waits for the
/// client (the `elicit` tool asks on the answer's stream first): the proxy's SERVER span for
/// the call ends after the test, having read the question from that stream, let the result
/// come. A span ended with the answer's head would end before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_sse_answer_span_ends_with_its_stream() {
    let otlp = OtlpReceiver::start().await;
    let (server, mut proxy) = plain_rig(&["--otlp-endpoint", otlp.url()]).await;
    let url = proxy.url("/mcp");
    let sid = handshake_with(&url, INIT_ELICITING).await;
    let call = json!({"jsonrpc": "2.0", "id": 11, "method": "tools/call",
        "params": {"name": "elicit", "arguments": {"message": "go on?"}}});
    let mut stream = post(&url, Some(&sid), &call.to_string()).await;
    assert_eq!(stream.status(), 200);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"),
        "an SSE answer"
    );
    let mut buf = Vec::new();
    let question: Value = next_sse_message(&mut stream, &mut buf).await;
    assert_eq!(question["method"], "elicitation/create", "{question}");
    // The answer's head and first event are in; the result is not sent before this moment.
    let released = now_unix_nano();
    let yes = json!({"jsonrpc": "2.0", "id": question["id"],
        "result": {"action": "accept", "content": {"answer": "yes"}}});
    let r = post(&url, Some(&sid), &yes.to_string()).await;
    assert_eq!(r.status(), 202);
    let result = next_sse_message(&mut stream, &mut buf).await;
    assert_eq!(result["id"], 11, "{result}");
    assert_eq!(tool_text(&result), "accept");
    assert_eq!(server.calls("elicit"), 1);
    proxy.sigterm();
    proxy.wait().await;

    let span = otlp
        .span("the call's span", |s| {
            s.name == "tools/call elicit" && s.attr("jsonrpc.request.id") == Some("11")
        })
        .await;
    assert_eq!(span.kind, SERVER);
    assert!(
        span.end_time_unix_nano >= released,
        "the span ended {} ns before the result was released: {span:?}",
        released - span.end_time_unix_nano
    );
}
