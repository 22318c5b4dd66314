//! Issue 20, tool pinning with other peers: `alibridge proxy --pin-tools` in front of the pin
//! server (rmcp's Streamable HTTP client through it; approval by `alibridge tools <upstream
//! URL> --approve`), and the official TypeScript SDK client approving or declining through
//! elicitation (`tests/peers/pin_client.mjs`).

use rmcp::model::CallToolRequestParams;
use rmcp::service::{RoleClient, RunningService};
use serde_json::{json, Value};

use crate::support::home::TempHome;
use crate::support::peers::run_peer_script;
use crate::support::pin_server::{
    delete_all, echo_injected, exfiltrate, first_tools, PinServer, INJECTED_DESCRIPTION,
};
use crate::support::pins::{list_run, sorted, tools_cli, FIRST_USE, WITHHELD};
use crate::support::proxy::{connect, Client, Proxy};

async fn names(c: &RunningService<RoleClient, Client>) -> Vec<String> {
    c.list_all_tools()
        .await
        .expect("tools/list through the proxy")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect()
}

async fn call(c: &RunningService<RoleClient, Client>, name: &str) -> Result<Value, String> {
    let p: CallToolRequestParams =
        serde_json::from_value(json!({"name": name, "arguments": {"text": "via-proxy"}})).unwrap();
    c.call_tool(p)
        .await
        .map(|r| serde_json::to_value(&r).unwrap())
        .map_err(|e| e.to_string())
}

/// `alibridge proxy --pin-tools --auth none --upstream-url <server>` in `home`.
async fn pinning_proxy(home: &TempHome, server: &PinServer) -> Proxy {
    let upstream = format!("http://{}", server.addr());
    Proxy::start_in(
        home.path(),
        &["--auth", "none", "--upstream-url", &upstream, "--pin-tools"],
        &[],
    )
    .await
}

/// The proxy pins per upstream URL: first use recorded; after the server changes `echo` and
/// adds `exfiltrate`, both are withheld from the listing and refused (the server never runs
/// them); `alibridge tools <the forwarded-to URL> --approve echo` pins `echo`, and a proxy
/// started again on the same home lists and runs it while `exfiltrate` stays withheld.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_withholds_refuses_and_takes_approval_from_the_cli() {
    let home = TempHome::new("pin-proxy");
    let server = PinServer::start(first_tools()).await;
    let mut proxy = pinning_proxy(&home, &server).await;
    let endpoint = proxy.url("/mcp");
    let a = connect(&endpoint, Client::default()).await;
    assert_eq!(names(&a).await, ["echo", "delete_all"]);
    let stderr = proxy.stderr_with(FIRST_USE).await;
    assert_eq!(stderr.matches(FIRST_USE).count(), 1, "{stderr}");
    assert_eq!(home.pin_files().len(), 1);
    a.cancel().await.ok();

    server.set_tools(vec![echo_injected(), delete_all(), exfiltrate()]);
    let b = connect(&endpoint, Client::default()).await;
    let listed = b.list_all_tools().await.expect("tools/list");
    let listed_names: Vec<String> = listed.iter().map(|t| t.name.to_string()).collect();
    assert_eq!(listed_names, ["delete_all"]);
    for (tool, what) in [("echo", "changed"), ("exfiltrate", "new")] {
        let err = call(&b, tool).await.unwrap_err();
        assert!(
            err.contains(tool) && err.contains(what) && err.contains("alibridge tools"),
            "{tool}: {err}"
        );
    }
    assert!(server.calls().is_empty(), "{:?}", server.calls());
    proxy.stderr_with(WITHHELD).await;
    b.cancel().await.ok();

    // The pin key is the URL the proxy forwarded to.
    let (code, out, err) = tools_cli(&home, &[&server.url(), "--approve", "echo"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    proxy.sigterm();
    proxy.wait().await;
    let proxy = pinning_proxy(&home, &server).await;
    let c = connect(&proxy.url("/mcp"), Client::default()).await;
    assert_eq!(sorted(names(&c).await), ["delete_all", "echo"]);
    let ok = call(&c, "echo").await.unwrap();
    assert_eq!(
        ok["content"][0]["text"], r#"ran echo {"text":"via-proxy"}"#,
        "{ok}"
    );
    assert!(call(&c, "exfiltrate").await.is_err());
    assert_eq!(server.called_names(), ["echo"]);
    c.cancel().await.ok();
}

/// First use through the harness, then the server changes `echo` (injected description) and
/// adds `exfiltrate`; the TypeScript SDK client runs with the bridge in the same home.
async fn sdk_run(tag: &str, mode: &str) -> (PinServer, TempHome, Value) {
    let home = TempHome::new(tag);
    let server = PinServer::start(first_tools()).await;
    let (names, _) = list_run(&server.url(), &home, &[]).await;
    assert_eq!(names, ["echo", "delete_all"]);
    server.set_tools(vec![echo_injected(), delete_all(), exfiltrate()]);
    let url = server.url();
    let args = [
        mode,
        &url,
        "--transport",
        "http-only",
        "--auth",
        "none",
        "--pin-tools",
    ];
    let summary = tokio::task::block_in_place(|| run_peer_script("pin_client.mjs", &args, &home));
    (server, home, summary)
}

/// The question the SDK client got: one, with the bridge's id, the tools and the diff.
fn check_question(summary: &Value) {
    let asked = summary["asked"].as_array().expect("asked");
    assert_eq!(asked.len(), 1, "{summary:#}");
    let q = &asked[0];
    assert!(
        q["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("alibridge-pin-")),
        "{q}"
    );
    let message = q["message"].as_str().unwrap();
    for needle in ["echo", "exfiltrate", "- Echo text.", INJECTED_DESCRIPTION] {
        assert!(message.contains(needle), "{needle:?} in:\n{message}");
    }
    assert_eq!(q["schema"]["properties"]["confirm"]["type"], "boolean");
    assert_eq!(summary["before"], json!(["delete_all"]), "{summary:#}");
}

/// Accepting in the TypeScript SDK client: list_changed arrives, the next listing has both
/// tools, the call runs; a later run finds them pinned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_sdk_client_approves_through_elicitation() {
    let (server, home, summary) = sdk_run("pin-sdk-accept", "accept").await;
    check_question(&summary);
    assert!(summary["listChanged"].as_u64() >= Some(1), "{summary:#}");
    let mut after: Vec<String> = serde_json::from_value(summary["after"].clone()).unwrap();
    after.sort();
    assert_eq!(after, ["delete_all", "echo", "exfiltrate"]);
    assert_eq!(
        summary["call"],
        json!({"isError": false, "text": r#"ran echo {"text":"from-sdk"}"#}),
        "{summary:#}"
    );
    assert_eq!(server.called_names(), ["echo"]);
    let (names, _) = list_run(&server.url(), &home, &[]).await;
    assert_eq!(sorted(names), ["delete_all", "echo", "exfiltrate"]);
}

/// Declining in the TypeScript SDK client: still withheld, the call is an error that points
/// at `alibridge tools`, and the server never ran it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_sdk_client_declines_through_elicitation() {
    let (server, _home, summary) = sdk_run("pin-sdk-decline", "decline").await;
    check_question(&summary);
    assert_eq!(summary["after"], json!(["delete_all"]), "{summary:#}");
    assert_eq!(summary["call"], Value::Null, "{summary:#}");
    let err = summary["callError"].as_str().expect("the call failed");
    assert!(
        err.contains("echo") && err.contains("alibridge tools"),
        "{err}"
    );
    assert!(server.calls().is_empty(), "{:?}", server.calls());
}
