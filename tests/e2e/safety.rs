//! Cloud-ops safety end to end (docs/safety.md), the tool policy in the stdio bridge: the
//! real binary between this harness (or the TypeScript SDK client) and the ops server
//! (`support/ops_server`), whose tools mirror the Alibaba Cloud OpenAPI MCP Server's names and
//! annotations and which records every call it executes. For each flag: what the client
//! lists, what it may call, and that a refused call never executed; confirmation. The audit
//! log: `safety_audit`. `--safety-policy` and the policy flags: `safety_policy`; the same policy in
//! `alibridge proxy`: `safety_proxy`.

use serde_json::{json, Value};

use crate::support::bridge::Bridge;
use crate::support::check::{policy_refusal, tool_text};
use crate::support::home::TempHome;
use crate::support::ops_server::OpsServer;

/// Runs `node tests/peers/<script> <alibridge> <args…>` in a scratch home; returns its
/// one-line JSON summary, failing the test unless it says `"ok": true`.
fn run_node_script(script: &str, args: &[&str]) -> Value {
    let home = TempHome::new("safety-node");
    crate::support::peers::run_peer_script(script, args, &home)
}

/// `alibridge <ops url> --transport http-only --auth none <extra…>`, initialized.
pub(crate) async fn bridge(server: &OpsServer, extra: &[&str]) -> Bridge {
    let mut args = vec![server.url(), "--transport".into(), "http-only".into()];
    args.extend(["--auth".into(), "none".into()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut b = Bridge::spawn(args);
    b.initialize().await;
    b
}

/// Lists every page (ids `id`, `id + 1`, …); the tool names in order.
pub(crate) async fn list_all(b: &mut Bridge, id: i64) -> Vec<String> {
    b.list_all_names(id).await
}

/// `--allow-tools` and `--deny-tools` (and its alias `--ignore-tool`) shape both pages of the
/// listing; deny wins over allow; a hidden tool called anyway is refused with an error naming
/// the pattern and never reaches the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_and_deny_lists_filter_every_page_and_refuse_calls() {
    let server = OpsServer::start().await;
    let mut b = bridge(
        &server,
        &[
            "--allow-tools",
            "describe*,Ecs-*,AlibabaCloud___*",
            "--allow-tools",
            "Delete*",
            "--deny-tools",
            "DeleteInstance",
            "--ignore-tool",
            "*Stop*",
        ],
    )
    .await;
    let names = list_all(&mut b, 1).await;
    assert_eq!(
        names,
        [
            "DescribeInstances",
            "DescribeRegions",
            "Ecs-20140526-DescribeImages",
            "AlibabaCloud___CallCLI",
            "AlibabaCloud___GetApiDefinition",
            "AlibabaCloud___RunScript",
            "AlibabaCloud___RunIaC"
        ]
    );

    let (rule, msg) = policy_refusal(
        &b.call_tool(10, "DeleteInstance", json!({"InstanceId": "i-1"}))
            .await,
    );
    assert_eq!(rule, "--deny-tools DeleteInstance");
    assert!(
        msg.contains("DeleteInstance") && msg.contains("Nothing was sent to the server"),
        "{msg}"
    );
    let (rule, msg) = policy_refusal(&b.call_tool(11, "StartInstance", json!({})).await);
    assert_eq!(rule, "--allow-tools");
    assert!(msg.contains("ALIBRIDGE_ALLOW_TOOLS"), "{msg}");
    let (rule, _) = policy_refusal(
        &b.call_tool(12, "Ecs-20140526-StopInstance", json!({}))
            .await,
    );
    assert_eq!(rule, "--deny-tools *Stop*");
    // Never listed, judged by name alone: still refused by the allow list.
    let (rule, _) = policy_refusal(&b.call_tool(13, "RebootInstance", json!({})).await);
    assert_eq!(rule, "--allow-tools");

    let ok = b.call_tool(14, "DescribeRegions", json!({})).await;
    assert!(tool_text(&ok).starts_with("ran DescribeRegions"), "{ok}");
    assert_eq!(server.executed_names(), ["DescribeRegions"]);
    b.close_stdin();
    assert_eq!(b.wait().await, 0);
}

/// `--read-only`: only reads are listed (the hint, a read verb, a Custom-edition name, the
/// Core tools that only read) and the generic CallCLI stays, judged per call by its command;
/// writes, listed or not, are refused and never run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_lists_and_runs_only_reads() {
    let server = OpsServer::start().await;
    let mut b = bridge(&server, &["--read-only"]).await;
    let names = list_all(&mut b, 1).await;
    assert_eq!(
        names,
        [
            "DescribeInstances",
            "DescribeRegions",
            "Ecs-20140526-DescribeImages",
            "AlibabaCloud___CallCLI",
            "AlibabaCloud___GetApiDefinition",
            "AlibabaCloud___RunScript",
            "AlibabaCloud___RunIaC"
        ]
    );
    for (id, tool, args) in [
        (10, "DeleteInstance", json!({"InstanceId": "i-1"})),
        (11, "StartInstance", json!({})),
        (12, "Ecs-20140526-StopInstance", json!({})),
        (13, "EnableSnapshots", json!({})),
        (
            14,
            "AlibabaCloud___CallCLI",
            json!({"command": "aliyun ecs delete-instance --InstanceId i-1"}),
        ),
        (
            15,
            "AlibabaCloud___CallCLI",
            json!({"command": "aliyun ecs describe-instances; aliyun ecs delete-instance"}),
        ),
        (16, "ModifyInstanceAttribute", json!({})),
        (
            17,
            "AlibabaCloud___RunScript",
            json!({"script": "a = await call_cli(product='Ecs', action='DescribeInstances', params={})\nb = await call_cli(product='Ecs', action='StopInstances', params={})\nresult = 1"}),
        ),
        (
            18,
            "AlibabaCloud___RunIaC",
            json!({"action": "apply", "code": "resource \"alicloud_vpc\" \"v\" {}"}),
        ),
        (19, "AlibabaCloud___RunIaC", json!({"action": "destroy"})),
        (
            25,
            "AlibabaCloud___RunScript",
            json!({"script": "r = await call_cli(product='Ecs', action='DescribeRegions', params={})\nresult = r"}),
        ),
    ] {
        let resp = b.call_tool(id, tool, args).await;
        let (rule, msg) = policy_refusal(&resp);
        assert_eq!(rule, "--read-only", "{tool}: {resp}");
        assert!(
            msg.contains("write") && msg.contains("--read-only"),
            "{msg}"
        );
    }
    for (id, tool, args) in [
        (20, "DescribeInstances", json!({})),
        (21, "DescribeRegions", json!({})),
        (22, "Ecs-20140526-DescribeImages", json!({})),
        (
            23,
            "AlibabaCloud___CallCLI",
            json!({"command": "aliyun ecs describe-instances --biz-region-id cn-hangzhou"}),
        ),
        (
            24,
            "AlibabaCloud___GetApiDefinition",
            json!({"product": "Ecs", "apiVersion": "2014-05-26", "apiName": "DeleteInstance"}),
        ),
        (
            26,
            "AlibabaCloud___RunIaC",
            json!({"action": "plan", "code": "resource \"alicloud_vpc\" \"v\" {}"}),
        ),
        (
            27,
            "AlibabaCloud___RunIaC",
            json!({"code": "data \"alicloud_zones\" \"z\" {}"}),
        ),
    ] {
        let resp = b.call_tool(id, tool, args).await;
        assert!(
            tool_text(&resp).starts_with(&format!("ran {tool}")),
            "{resp}"
        );
    }
    assert_eq!(
        server.executed_names(),
        [
            "DescribeInstances",
            "DescribeRegions",
            "Ecs-20140526-DescribeImages",
            "AlibabaCloud___CallCLI",
            "AlibabaCloud___GetApiDefinition",
            "AlibabaCloud___RunIaC",
            "AlibabaCloud___RunIaC"
        ]
    );
    assert_eq!(
        server.executed()[3].arguments["command"],
        "aliyun ecs describe-instances --biz-region-id cn-hangzhou"
    );
}

/// After `notifications/tools/list_changed` the client lists again, and the new listing is
/// filtered too: a new tool matching `--deny-tools` stays hidden and refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_tool_list_is_filtered_again() {
    let server = OpsServer::start().await;
    let mut b = bridge(&server, &["--deny-tools", "Delete*"]).await;
    let before = list_all(&mut b, 1).await;
    assert!(!before
        .iter()
        .any(|n| n.contains("Snapshot") && n != "EnableSnapshots"));
    let resp = b.call_tool(5, "EnableSnapshots", json!({})).await;
    assert!(tool_text(&resp).starts_with("ran EnableSnapshots"));
    let changed = b
        .seen
        .iter()
        .any(|m| m["method"] == "notifications/tools/list_changed");
    assert!(changed, "the server's list_changed reached the client");
    let after = list_all(&mut b, 10).await;
    assert!(
        after.contains(&"DescribeSnapshots".to_string()),
        "{after:?}"
    );
    assert!(!after.iter().any(|n| n.starts_with("Delete")), "{after:?}");
    let (rule, _) = policy_refusal(
        &b.call_tool(20, "DeleteSnapshot", json!({"SnapshotId": "s-1"}))
            .await,
    );
    assert_eq!(rule, "--deny-tools Delete*");
    assert_eq!(server.executed_names(), ["EnableSnapshots"]);
}

/// `--region` fills `x_mcp_region_id` only for listed tools that declare it, only when the
/// model did not set it, and changes nothing else in the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_is_a_default_never_an_override() {
    let server = OpsServer::start().await;
    let mut b = bridge(&server, &["--region", "cn-beijing"]).await;
    // Before any listing the bridge cannot know what a tool declares: nothing is added.
    b.call_tool(1, "DescribeRegions", json!({})).await;
    list_all(&mut b, 2).await;
    b.call_tool(10, "DescribeRegions", json!({})).await;
    b.call_tool(
        11,
        "DescribeInstances",
        json!({"RegionId": "cn-qingdao", "x_mcp_region_id": "cn-qingdao", "PageSize": 12345678901234567890u64}),
    )
    .await;
    b.call_tool(
        12,
        "AlibabaCloud___GetApiDefinition",
        json!({"product": "Ecs", "apiVersion": "2014-05-26", "apiName": "DescribeRegions"}),
    )
    .await;
    b.request(
        13,
        "tools/call",
        json!({"name": "Ecs-20140526-DescribeImages"}),
    )
    .await;
    b.response(13).await;
    let ran = server.executed();
    assert_eq!(ran.len(), 5);
    assert_eq!(ran[0].arguments, json!({}), "not listed yet");
    assert_eq!(ran[1].arguments, json!({"x_mcp_region_id": "cn-beijing"}));
    assert_eq!(
        ran[2].arguments,
        json!({"RegionId": "cn-qingdao", "x_mcp_region_id": "cn-qingdao", "PageSize": 12345678901234567890u64})
    );
    assert_eq!(
        ran[3].arguments,
        json!({"product": "Ecs", "apiVersion": "2014-05-26", "apiName": "DescribeRegions"}),
        "GetApiDefinition does not declare x_mcp_region_id"
    );
    assert_eq!(ran[4].arguments, json!({"x_mcp_region_id": "cn-beijing"}));
}

/// Every request gets exactly one answer and bad tools/call shapes are refused, never relayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_calls_are_refused() {
    let server = OpsServer::start().await;
    let mut b = bridge(&server, &["--deny-tools", "Delete*"]).await;
    b.write_raw(
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"DescribeRegions","name":"DeleteInstance"}}
"#,
    )
    .await;
    let (rule, _) = policy_refusal(&b.response(1).await);
    assert_eq!(
        rule, "strict-json",
        "a repeated key: parsers differ on which copy wins"
    );
    b.request(2, "tools/call", json!({"arguments": {}})).await;
    let (rule, _) = policy_refusal(&b.response(2).await);
    assert_eq!(rule, "unreadable tools/call");
    assert!(server.executed().is_empty());
}

/// Confirmation with the official TypeScript SDK client: the bridge asks with
/// `elicitation/create` (form mode, its own id) before each write; accept runs it once,
/// decline, cancel and an unticked box answer the model with an error result and run nothing;
/// reads are never asked about. A client without the elicitation capability gets an error
/// saying why and what to change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmation_through_the_typescript_sdk_client() {
    let server = OpsServer::start().await;
    let url = server.url();
    let args = [
        url.as_str(),
        "--transport",
        "http-only",
        "--auth",
        "none",
        "--confirm-writes",
        "--region",
        "cn-beijing",
    ];
    let summary = run_node_script("confirm_client.mjs", &args);

    let asked = summary["asked"].as_array().expect("asked");
    assert_eq!(
        asked.len(),
        4,
        "one question per write, none for reads: {summary:#}"
    );
    for q in asked {
        assert!(
            q["id"].as_str().unwrap().starts_with("alibridge-confirm-"),
            "{q}"
        );
        let msg = q["message"].as_str().unwrap();
        for part in [
            "DeleteInstance",
            "API action: DeleteInstance",
            "Region: cn-beijing",
            "InstanceId=i-",
        ] {
            assert!(msg.contains(part), "{part} missing from {msg}");
        }
        assert!(
            msg.contains("Password=****") && !msg.contains("hunter2"),
            "{msg}"
        );
        assert_eq!(q["schema"]["required"], json!(["confirm"]));
        assert_eq!(q["schema"]["properties"]["confirm"]["type"], "boolean");
    }
    let results = &summary["results"];
    assert_eq!(results["read"]["isError"], false);
    assert!(results["read"]["text"]
        .as_str()
        .unwrap()
        .starts_with("ran DescribeRegions"));
    assert_eq!(results["accept"]["isError"], false, "{summary:#}");
    for (answer, word) in [
        ("decline", "declined"),
        ("cancel", "cancelled"),
        ("unticked", "declined"),
    ] {
        assert_eq!(results[answer]["isError"], true, "{answer}: {summary:#}");
        let t = results[answer]["text"].as_str().unwrap();
        assert!(
            t.contains(word) && t.contains("Nothing was sent"),
            "{answer}: {t}"
        );
    }
    let no_cap = summary["noCapability"]
        .as_str()
        .expect("an error for the plain client");
    assert!(
        no_cap.contains("elicitation") && no_cap.contains("--confirm-writes"),
        "{no_cap}"
    );
    // Only the confirmed write ran, once, with the default region added.
    let ran = server.executed();
    let deletes: Vec<_> = ran.iter().filter(|e| e.tool == "DeleteInstance").collect();
    assert_eq!(deletes.len(), 1, "{ran:?}");
    assert_eq!(
        deletes[0].arguments,
        json!({"InstanceId": "i-accept", "Password": "hunter2", "x_mcp_region_id": "cn-beijing"})
    );
    assert_eq!(
        ran.iter().filter(|e| e.tool == "DescribeRegions").count(),
        2
    );
}

/// The client's answer to a confirmation is read even at `--max-in-flight 1` (the waiting call
/// holds the only slot), and it is never relayed to the server; a call the client cancels
/// while the person decides is not sent even if they then say yes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmation_is_answered_even_at_the_in_flight_cap() {
    let server = OpsServer::start().await;
    let mut b = bridge(&server, &["--confirm-writes", "--max-in-flight", "1"]).await;
    b.request(
        1,
        "tools/call",
        json!({"name": "StartInstance", "arguments": {"InstanceId": "i-7"}}),
    )
    .await;
    let ask = loop {
        let m = b.next().await.expect("the bridge asks");
        if m["method"] == "elicitation/create" {
            break m;
        }
    };
    assert!(ask["params"]["message"]
        .as_str()
        .unwrap()
        .contains("StartInstance"));
    b.send(&json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"action": "accept", "content": {"confirm": true}}}))
        .await;
    let resp = b.response(1).await;
    assert!(tool_text(&resp).starts_with("ran StartInstance"), "{resp}");

    // The client cancels a call while the person decides: even a yes then sends nothing.
    b.request(
        2,
        "tools/call",
        json!({"name": "DeleteInstance", "arguments": {"InstanceId": "i-8"}}),
    )
    .await;
    let ask = loop {
        let m = b.next().await.expect("the bridge asks");
        if m["method"] == "elicitation/create" {
            break m;
        }
    };
    b.notify(
        "notifications/cancelled",
        json!({"requestId": 2, "reason": "user"}),
    )
    .await;
    b.send(&json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"action": "accept", "content": {"confirm": true}}}))
        .await;
    let read = b.call_tool(3, "DescribeRegions", json!({})).await;
    assert!(tool_text(&read).starts_with("ran DescribeRegions"));
    b.close_stdin();
    let rest = b.drain().await;
    assert!(
        !b.seen
            .iter()
            .chain(&rest)
            .any(|m| m["id"] == 2 && m.get("method").is_none()),
        "a cancelled call gets no answer"
    );
    assert_eq!(b.wait().await, 0);
    assert_eq!(
        server.executed_names(),
        ["StartInstance", "DescribeRegions"]
    );
}

/// `--confirm-timeout`: a confirmation nobody answers ends as not confirmed (the model gets a
/// tool error naming the timeout), the write never reaches the server, and a late answer is
/// dropped, not relayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_confirmation_times_out_as_not_confirmed() {
    let server = OpsServer::start().await;
    let mut b = bridge(&server, &["--confirm-writes", "--confirm-timeout", "0.5"]).await;
    b.request(
        1,
        "tools/call",
        json!({"name": "DeleteInstance", "arguments": {"InstanceId": "i-late"}}),
    )
    .await;
    let ask = loop {
        let m = b.next().await.expect("the bridge asks");
        if m["method"] == "elicitation/create" {
            break m;
        }
    };
    let resp = b.response(1).await;
    assert_eq!(resp["result"]["isError"], true, "{resp}");
    assert!(tool_text(&resp).contains("--confirm-timeout"), "{resp}");
    b.send(&json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"action": "accept", "content": {"confirm": true}}}))
        .await;
    let read = b.call_tool(2, "DescribeRegions", json!({})).await;
    assert!(tool_text(&read).starts_with("ran DescribeRegions"));
    b.close_stdin();
    assert_eq!(b.wait().await, 0);
    assert_eq!(server.executed_names(), ["DescribeRegions"]);
}
