//! Issue 19 §6: before the person is asked to confirm a CallCLI write, the bridge asks the
//! server for a quote (the same command with `--estimate-cost`, which the server answers
//! without running anything) and shows it in the form, or says the price is unknown, never
//! "free". Against the Core-edition fake, which quotes like the real server.

use serde_json::{json, Value};

use crate::support::bridge::Bridge;
use crate::support::check::tool_text;
use crate::support::core_server::CoreServer;

/// The next `elicitation/create` the bridge sends (answers on the way are kept in `b.seen`).
async fn next_question(b: &mut Bridge) -> Value {
    loop {
        let m = b.next().await.expect("the bridge asks");
        if m["method"] == "elicitation/create" {
            return m;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_confirmation_shows_the_quote_or_an_unknown_price() {
    let core = CoreServer::start().await;
    let mut b = Bridge::spawn([
        core.url().as_str(),
        "--transport",
        "http-only",
        "--auth",
        "none",
        "--confirm-writes",
    ]);
    b.initialize().await;
    let run = "aliyun ecs run-instances --RegionId cn-hangzhou --Amount 2";
    b.request(
        1,
        "tools/call",
        json!({"name": "AlibabaCloud___CallCLI", "arguments": {"command": run}}),
    )
    .await;
    let ask = next_question(&mut b).await;
    let message = ask["params"]["message"].as_str().unwrap();
    assert!(
        message.contains("Price: {\"costPreview\":{\"status\":\"ESTIMATED\",\"total\":\"0.52 CNY/hour\"}} (a quote from --estimate-cost; nothing was run)"),
        "{message}"
    );
    b.send(&json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"action": "accept", "content": {"confirm": true}}}))
        .await;
    let resp = b.response(1).await;
    assert!(
        tool_text(&resp).starts_with("ran AlibabaCloud___CallCLI"),
        "{resp}"
    );

    // No price for this API: "unknown", and the decline sends nothing.
    b.request(
        2,
        "tools/call",
        json!({"name": "AlibabaCloud___CallCLI", "arguments": {"command": "aliyun ecs delete-instance --InstanceId i-9"}}),
    )
    .await;
    let ask = next_question(&mut b).await;
    let message = ask["params"]["message"].as_str().unwrap();
    assert!(message.contains("Price: unknown"), "{message}");
    assert!(message.contains("does not mean free"), "{message}");
    assert!(
        !message.to_ascii_lowercase().contains("price: free"),
        "{message}"
    );
    b.send(&json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"action": "decline"}}))
        .await;
    let resp = b.response(2).await;
    assert_eq!(resp["result"]["isError"], true, "{resp}");

    // A write that is not a CLI command gets no quote and no price line.
    b.request(
        3,
        "tools/call",
        json!({"name": "Ecs-20140526-DeleteInstance", "arguments": {"InstanceId": "i-3"}}),
    )
    .await;
    let ask = next_question(&mut b).await;
    assert!(!ask["params"]["message"]
        .as_str()
        .unwrap()
        .contains("Price:"));
    b.send(&json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"action": "decline"}}))
        .await;
    b.response(3).await;

    let fin = b.finish().await;
    assert!(
        !fin.seen.iter().any(|m| m["id"]
            .as_str()
            .is_some_and(|i| i.starts_with("alibridge-quote-"))),
        "the quotes' answers never reach the client"
    );
    assert_eq!(core.quotes().len(), 2, "one quote per CLI write");
    let executed: Vec<String> = core
        .executed_calls()
        .into_iter()
        .map(|(_, a)| a["command"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        executed,
        [run],
        "only the confirmed write ran; quotes ran nothing"
    );
}

/// The same through `alibridge proxy`: the quote is asked on the client's session before the
/// `elicitation/create` goes out on the call's SSE answer, and never reaches the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_shows_the_quote_too() {
    use crate::support::proxy::{connect, Client, Proxy};
    use rmcp::model::CallToolRequestParams;
    let core = CoreServer::start().await;
    let base = core.base();
    let proxy = Proxy::start(
        &[
            "--auth",
            "none",
            "--upstream-url",
            base.as_str(),
            "--confirm-writes",
        ],
        &[],
    )
    .await;
    let client = Client {
        elicits: true,
        decline_rest: true,
        ..Client::default()
    };
    let asked = client.asked.clone();
    let c = connect(&proxy.url("/mcp"), client).await;
    let run = "aliyun ecs run-instances --RegionId cn-hangzhou --Amount 1";
    let p: CallToolRequestParams = serde_json::from_value(
        json!({"name": "AlibabaCloud___CallCLI", "arguments": {"command": run}}),
    )
    .unwrap();
    let result = serde_json::to_value(c.call_tool(p).await.expect("answered")).unwrap();
    assert_eq!(result["isError"], true, "declined: {result}");
    let asked = asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 1);
    let message = asked[0]["message"].as_str().unwrap();
    assert!(
        message.contains("0.52 CNY/hour") && message.contains("nothing was run"),
        "{message}"
    );
    assert_eq!(core.quotes().len(), 1);
    assert!(
        core.executed_calls().is_empty(),
        "declined, and the quote ran nothing"
    );
    drop(c);
}
