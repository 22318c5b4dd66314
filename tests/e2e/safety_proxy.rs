//! The same policy in `alibridge proxy`, per server: rmcp's Streamable HTTP client through
//! the proxy to the ops server (SSE answers rewritten on the way).

use std::sync::{Arc, Mutex};

use rmcp::model::{CallToolRequestParams, ElicitResult, ElicitationAction};
use rmcp::service::{RoleClient, RunningService};
use serde_json::{json, Value};

use crate::support::home::TempHome;
use crate::support::ops_server::OpsServer;
use crate::support::proxy::{connect, Client, Proxy};

async fn call(
    c: &RunningService<RoleClient, Client>,
    name: &str,
    args: Value,
) -> Result<Value, String> {
    let p: CallToolRequestParams =
        serde_json::from_value(json!({"name": name, "arguments": args})).unwrap();
    c.call_tool(p)
        .await
        .map(|r| serde_json::to_value(&r).unwrap())
        .map_err(|e| e.to_string())
}

async fn names(c: &RunningService<RoleClient, Client>) -> Vec<String> {
    c.list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect()
}

/// `--read-only`, `--deny-tools` and `--region` on forwarded traffic: every page of the
/// listing is filtered (SSE answers), refused calls never reach the server, the region is
/// added for tools the session saw declare it, and each server path keeps its own state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_applies_the_policy_per_server() {
    let dir = TempHome::new("safety-proxy");
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
            "--ignore-tool",
            "*Images",
            "--region",
            "cn-beijing",
            "--audit-log",
            &audit,
        ],
        &[],
    )
    .await;
    let a = connect(&proxy.url("/a/mcp"), Client::default()).await;
    assert_eq!(
        names(&a).await,
        [
            "DescribeInstances",
            "DescribeRegions",
            "AlibabaCloud___CallCLI",
            "AlibabaCloud___GetApiDefinition",
            "AlibabaCloud___RunScript",
            "AlibabaCloud___RunIaC"
        ]
    );
    let err = call(&a, "DeleteInstance", json!({"InstanceId": "i-1"}))
        .await
        .unwrap_err();
    assert!(
        err.contains("--read-only") && err.contains("Nothing was sent"),
        "{err}"
    );
    let err = call(&a, "Ecs-20140526-DescribeImages", json!({}))
        .await
        .unwrap_err();
    assert!(err.contains("--deny-tools *Images"), "{err}");
    let err = call(
        &a,
        "AlibabaCloud___CallCLI",
        json!({"command": "aliyun ecs stop-instance --InstanceId i-1"}),
    )
    .await
    .unwrap_err();
    assert!(err.contains("--read-only"), "{err}");
    let ok = call(&a, "DescribeRegions", json!({})).await.unwrap();
    assert!(ok["content"][0]["text"]
        .as_str()
        .unwrap()
        .starts_with("ran DescribeRegions"));

    // Another server behind the same proxy: its own session state (nothing listed yet, so
    // no region is added), the same rules.
    let b = connect(&proxy.url("/b/mcp"), Client::default()).await;
    call(&b, "DescribeRegions", json!({})).await.unwrap();
    let err = call(&b, "StartInstance", json!({})).await.unwrap_err();
    assert!(err.contains("--read-only"), "{err}");

    let ran = server.executed();
    assert_eq!(ran.len(), 2, "{ran:?}");
    assert_eq!(ran[0].arguments, json!({"x_mcp_region_id": "cn-beijing"}));
    assert_eq!(ran[1].arguments, json!({}));
    let log = std::fs::read_to_string(&audit).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6, "{log}");
    assert!(lines.iter().any(|l| l["server"] == "/a/mcp"
        && l["decision"] == "relayed"
        && l["regionAdded"] == "cn-beijing"
        && l["outcome"] == "ok"));
    assert!(lines.iter().any(|l| l["server"] == "/b/mcp"
        && l["tool"] == "StartInstance"
        && l["rule"] == "--read-only"));
    a.cancel().await.ok();
    b.cancel().await.ok();
}

/// `--confirm-writes` through the proxy: the `tools/call` answer stream first carries the
/// proxy's `elicitation/create`; the client's POSTed reply is taken by the proxy (never
/// forwarded); accept runs the write once, decline answers with an error result; a client
/// without the capability gets an error naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_asks_before_writes() {
    let server = OpsServer::start().await;
    let upstream = format!("http://{}", server.addr());
    let proxy = Proxy::start(
        &[
            "--auth",
            "none",
            "--upstream-url",
            &upstream,
            "--confirm-writes",
        ],
        &[],
    )
    .await;
    let client = Client {
        elicits: true,
        ..Client::default()
    };
    // Answers are popped from the end.
    let accept: ElicitResult =
        serde_json::from_value(json!({"action": "accept", "content": {"confirm": true}})).unwrap();
    client
        .answers
        .lock()
        .unwrap()
        .extend([ElicitResult::new(ElicitationAction::Decline), accept]);
    let asked = client.asked.clone();
    let c = connect(&proxy.url("/ops/mcp"), client).await;
    names(&c).await;
    let read = call(&c, "DescribeRegions", json!({})).await.unwrap();
    assert_eq!(read["isError"], false, "{read}");
    let yes = call(&c, "DeleteInstance", json!({"InstanceId": "i-yes"}))
        .await
        .unwrap();
    assert!(
        yes["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("ran DeleteInstance"),
        "{yes}"
    );
    let no = call(&c, "DeleteInstance", json!({"InstanceId": "i-no"}))
        .await
        .unwrap();
    assert_eq!(no["isError"], true, "{no}");
    assert!(
        no["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("declined"),
        "{no}"
    );
    {
        let asked = asked.lock().unwrap();
        assert_eq!(asked.len(), 2, "{asked:?}");
        assert!(asked[0]["message"]
            .as_str()
            .unwrap()
            .contains("InstanceId=i-yes"));
    }
    c.cancel().await.ok();

    let plain = connect(&proxy.url("/ops/mcp"), Client::default()).await;
    names(&plain).await;
    let err = call(&plain, "DeleteInstance", json!({"InstanceId": "i-plain"}))
        .await
        .unwrap_err();
    assert!(
        err.contains("elicitation") && err.contains("--confirm-writes"),
        "{err}"
    );
    plain.cancel().await.ok();

    let deletes: Vec<Value> = server
        .executed()
        .into_iter()
        .filter(|e| e.tool == "DeleteInstance")
        .map(|e| e.arguments)
        .collect();
    assert_eq!(deletes, [json!({"InstanceId": "i-yes"})]);
    drop(proxy);
}

/// A plain MCP server that answers every request with `application/json` (no SSE), and
/// records the `tools/call` arguments it gets.
async fn json_server() -> (std::net::SocketAddr, Arc<Mutex<Vec<Value>>>) {
    use http_body_util::{BodyExt, Full};
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let msg: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            let id = msg["id"].clone();
                            let result = match msg["method"].as_str() {
                                Some("initialize") => json!({
                                    "protocolVersion": "2025-06-18",
                                    "capabilities": {"tools": {}},
                                    "serverInfo": {"name": "json-server", "version": "0"}
                                }),
                                Some("tools/list") => json!({"tools": [
                                    {"name": "DescribeA", "inputSchema": {"type": "object"}},
                                    {"name": "DeleteB", "inputSchema": {"type": "object", "properties": {"x_mcp_region_id": {"type": "string"}}}},
                                    {"name": "StartC", "inputSchema": {"type": "object", "properties": {"x_mcp_region_id": {"type": "string"}}}}
                                ]}),
                                Some("tools/call") => {
                                    seen.lock().unwrap().push(msg["params"].clone());
                                    json!({"content": [{"type": "text", "text": "done"}]})
                                }
                                _ => Value::Null,
                            };
                            let mut r = if id.is_null() {
                                let mut r = hyper::Response::new(Full::new(bytes::Bytes::new()));
                                *r.status_mut() = hyper::StatusCode::ACCEPTED;
                                r
                            } else {
                                let answer = json!({"jsonrpc": "2.0", "id": id, "result": result});
                                hyper::Response::new(Full::new(bytes::Bytes::from(
                                    answer.to_string(),
                                )))
                            };
                            r.headers_mut()
                                .insert("content-type", "application/json".parse().unwrap());
                            r.headers_mut()
                                .insert("mcp-session-id", "json-session".parse().unwrap());
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, calls)
}

/// JSON answers (not only SSE) are filtered too; refused calls are answered by the proxy
/// with HTTP 200 and the JSON-RPC error; the region is spliced into forwarded calls; a batch
/// holding tools/call (strict reader, 400) or tools/list (policy) is refused as a whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_filters_json_answers_too() {
    use crate::support::proxy::{post, INIT};
    let (addr, calls) = json_server().await;
    let upstream = format!("http://{addr}");
    let proxy = Proxy::start(
        &[
            "--auth",
            "none",
            "--upstream-url",
            &upstream,
            "--deny-tools",
            "Delete*",
            "--region",
            "cn-x",
        ],
        &[],
    )
    .await;
    let url = proxy.url("/j/mcp");
    let init = post(&url, None, INIT).await;
    assert_eq!(init.status(), 200);
    let sid = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let list = post(
        &url,
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
    )
    .await;
    assert!(list.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let list: Value = list.json().await.unwrap();
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["DescribeA", "StartC"]);
    let refused = post(&url, Some(&sid), r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"DeleteB","arguments":{}}}"#).await;
    assert_eq!(refused.status(), 200);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["id"], 2);
    assert_eq!(
        refused["error"]["data"]["alibridge"]["rule"],
        "--deny-tools Delete*"
    );
    let ok = post(&url, Some(&sid), r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"StartC","arguments":{"n":1.50}}}"#).await;
    let ok: Value = ok.json().await.unwrap();
    assert_eq!(ok["result"]["content"][0]["text"], "done");
    // A batch holding a call fails the strict reader (400); one holding a listing is refused
    // by the policy, which could not filter it message by message.
    let batch = post(
        &url,
        Some(&sid),
        r#"[{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"DeleteB"}}]"#,
    )
    .await;
    assert_eq!(batch.status(), 400);
    let batch: Value = batch.json().await.unwrap();
    assert_eq!(batch["error"]["data"]["alibridge"]["rule"], "strict-json");
    let batch = post(
        &url,
        Some(&sid),
        r#"[{"jsonrpc":"2.0","id":5,"method":"tools/list"}]"#,
    )
    .await;
    let batch: Value = batch.json().await.unwrap();
    assert_eq!(batch["error"]["data"]["alibridge"]["rule"], "batch");
    let got = calls.lock().unwrap().clone();
    assert_eq!(
        got,
        [json!({"name": "StartC", "arguments": {"x_mcp_region_id": "cn-x", "n": 1.50}})]
    );
}
