//! Cloud-ops safety end to end (docs/safety.md), the tool policy in the stdio bridge: the
//! real binary between this harness (or the TypeScript SDK client) and the ops server
//! (`support/ops_server`), whose tools mirror the Alibaba Cloud OpenAPI MCP Server's names and
//! annotations and which records every call it executes. For each flag: what the client
//! lists, what it may call, and that a refused call never executed; the audit log;
//! confirmation. `--safety-policy` and the policy flags: `safety_policy`; the same policy in
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
async fn bridge(server: &OpsServer, extra: &[&str]) -> Bridge {
    let mut args = vec![server.url(), "--transport".into(), "http-only".into()];
    args.extend(["--auth".into(), "none".into()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut b = Bridge::spawn(args);
    b.initialize().await;
    b
}

/// Lists every page (ids `id`, `id + 1`, …); the tool names in order.
async fn list_all(b: &mut Bridge, id: i64) -> Vec<String> {
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

/// The audit log: one JSON line per tools/call (relayed, denied, tool error, upstream error),
/// created 0600, secret-looking arguments masked, and the durations, upstream and decision
/// recorded. A small cap rolls the file over once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_records_every_call_without_secrets() {
    let dir = TempHome::new("safety-audit");
    let path = dir.file("audit.jsonl");
    let server = OpsServer::start().await;
    let port = server.addr().port();
    let mut b = bridge(
        &server,
        &["--deny-tools", "StartInstance", "--audit-log", &path],
    )
    .await;
    list_all(&mut b, 1).await;
    b.call_tool(10, "DescribeRegions", json!({})).await;
    b.call_tool(
        11,
        "DeleteInstance",
        json!({"InstanceId": "i-missing", "Password": "hunter2-secret"}),
    )
    .await;
    b.call_tool(12, "StartInstance", json!({"InstanceId": "i-2"}))
        .await;
    b.call_tool(
        13,
        "AlibabaCloud___CallCLI",
        json!({"command": "aliyun ecs reset-password --InstanceId i-3 --Password hunter2-secret"}),
    )
    .await;
    drop(server); // the next call cannot reach it
    let failed = b.call_tool(14, "DescribeRegions", json!({})).await;
    assert!(failed["error"].is_object(), "{failed}");
    b.close_stdin();
    assert_eq!(b.wait().await, 0);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains("hunter2"),
        "a secret reached the audit log:\n{text}"
    );
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 5, "{text}");
    let by = |tool: &str, n: usize| -> &Value {
        lines
            .iter()
            .filter(|l| l["tool"] == tool)
            .nth(n)
            .unwrap_or_else(|| panic!("no line for {tool}:\n{text}"))
    };
    let ok = by("DescribeRegions", 0);
    assert_eq!(ok["decision"], "relayed");
    assert_eq!(ok["outcome"], "ok");
    assert_eq!(ok["access"], "read");
    assert_eq!(ok["action"], "DescribeRegions");
    assert_eq!(ok["upstream"], format!("127.0.0.1:{port}"));
    assert!(ok["durationMs"].is_u64() && ok["time"].as_str().unwrap().ends_with('Z'));
    let del = by("DeleteInstance", 0);
    assert_eq!(del["outcome"], "isError");
    assert_eq!(del["access"], "write");
    assert_eq!(del["arguments"]["Password"], "****");
    assert_eq!(del["arguments"]["InstanceId"], "i-missing");
    let denied = by("StartInstance", 0);
    assert_eq!(denied["decision"], "denied");
    assert_eq!(denied["rule"], "--deny-tools StartInstance");
    assert_eq!(denied["outcome"], "not_sent");
    let cli = by("AlibabaCloud___CallCLI", 0);
    assert_eq!(cli["action"], "ecs:ResetPassword");
    assert_eq!(
        cli["arguments"]["command"],
        "aliyun ecs reset-password --InstanceId i-3 --Password ****"
    );
    let err = by("DescribeRegions", 1);
    assert_eq!(err["outcome"], "error");
    assert!(
        err["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{err}"
    );
}

/// `--audit-log-max-size`: past the cap the log moves to PATH.1 (replacing it) and a new one
/// starts; both stay within the cap and hold whole lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_rolls_over_once() {
    let dir = TempHome::new("safety-roll");
    let path = dir.file("audit.jsonl");
    let server = OpsServer::start().await;
    let mut b = bridge(
        &server,
        &["--audit-log", &path, "--audit-log-max-size", "2K"],
    )
    .await;
    for id in 1..=30 {
        b.call_tool(id, "DescribeRegions", json!({"n": id})).await;
    }
    b.close_stdin();
    assert_eq!(b.wait().await, 0);
    let current = std::fs::read_to_string(&path).unwrap();
    let rolled = std::fs::read_to_string(format!("{path}.1")).unwrap();
    assert!(current.len() <= 2048 && rolled.len() <= 2048);
    let last: Value = serde_json::from_str(current.lines().last().unwrap()).unwrap();
    assert_eq!(last["arguments"]["n"], 30);
    assert!(rolled
        .lines()
        .all(|l| serde_json::from_str::<Value>(l).is_ok()));
    assert!(!dir.path().join("audit.jsonl.2").exists());
}

/// An audit log that cannot be written is reported once on stderr and never breaks the relay.
/// (A device such as `/dev/full` is refused at start, so the failure is a rollover whose
/// `PATH.1` is a directory: every rename fails.)
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_audit_log_is_reported_once_and_calls_go_on() {
    let dir = TempHome::new("safety-audit-fail");
    let path = dir.file("audit.jsonl");
    std::fs::write(&path, "x".repeat(4096)).unwrap();
    std::fs::create_dir(format!("{path}.1")).unwrap();
    std::fs::write(format!("{path}.1/keep"), "").unwrap();
    let server = OpsServer::start().await;
    let mut b = bridge(
        &server,
        &["--audit-log", &path, "--audit-log-max-size", "1K"],
    )
    .await;
    for id in 1..=3 {
        let resp = b.call_tool(id, "DescribeRegions", json!({})).await;
        assert!(tool_text(&resp).starts_with("ran DescribeRegions"));
    }
    b.close_stdin();
    assert_eq!(b.wait().await, 0);
    let stderr = b.stderr().await;
    assert_eq!(
        stderr.matches("cannot write the audit log").count(),
        1,
        "{stderr}"
    );
    assert_eq!(server.executed().len(), 3);
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

/// Issue 19 §7: a symbolic link at `--audit-log` (to a file, or dangling) stops the bridge at
/// start with a usage error (exit 2) naming the path, said once; nothing is written through
/// the link and its target is never created.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlinked_audit_log_is_refused_at_start() {
    let dir = TempHome::new("safety-audit-link");
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "untouched\n").unwrap();
    let nowhere = dir.path().join("created-through-the-link");
    let server = OpsServer::start().await;
    for (name, target) in [("audit.jsonl", &victim), ("dangling.jsonl", &nowhere)] {
        let link = dir.file(name);
        std::os::unix::fs::symlink(target, &link).unwrap();
        let args = [
            server.url(),
            "--transport".into(),
            "http-only".into(),
            "--auth".into(),
            "none".into(),
            "--audit-log".into(),
            link.clone(),
        ];
        let (code, stderr) = Bridge::spawn(args).exited().await;
        assert_eq!(code, 2, "{stderr}");
        assert_eq!(stderr.matches(&link).count(), 1, "{stderr}");
        assert_eq!(stderr.matches("alibridge: error:").count(), 1, "{stderr}");
        assert!(
            stderr.contains("is a symbolic link") && stderr.contains("--audit-log"),
            "{stderr}"
        );
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched\n");
    assert!(!nowhere.exists(), "the dangling link's target was created");
    assert!(server.executed().is_empty());
}

/// Issue 19 §7: the audit lines of a RunScript and a CallCLI call hide a canary secret in
/// every form it takes (assigned or passed by a secret-looking name in the script; after a
/// secret flag, as quoted free text, inside a JSON value in the command), while the
/// `SecretName` the write targets stays readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_masks_script_and_command_secrets_but_not_names() {
    const CANARY: &str = "zq-canary-5e1d";
    let dir = TempHome::new("safety-audit-mask");
    let path = dir.file("audit.jsonl");
    let server = OpsServer::start().await;
    let mut b = bridge(&server, &["--audit-log", &path]).await;
    let script = format!(
        "password = \"{CANARY}\"\n\
         result = await call_cli(product='Kms', action='PutSecretValue',\n    \
         params={{'SecretName': 'db-prod-name', 'SecretData': '{CANARY}'}},\n    \
         Passphrase=r'{CANARY}')\n"
    );
    let ran = b
        .call_tool(1, "AlibabaCloud___RunScript", json!({"script": script}))
        .await;
    assert!(
        tool_text(&ran).starts_with("ran AlibabaCloud___RunScript"),
        "{ran}"
    );
    let command = format!(
        "aliyun kms put-secret-value --SecretName db-prod-name --SecretData {CANARY} \
         --Description 'note {CANARY}' --Tags '[{{\"Key\":\"k\",\"Value\":\"{CANARY}\"}}]'"
    );
    let ran = b
        .call_tool(2, "AlibabaCloud___CallCLI", json!({"command": command}))
        .await;
    assert!(
        tool_text(&ran).starts_with("ran AlibabaCloud___CallCLI"),
        "{ran}"
    );
    b.close_stdin();
    assert_eq!(b.wait().await, 0);
    // The server got the real arguments: only the log is masked.
    assert!(format!("{:?}", server.executed()).contains(CANARY));

    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains(CANARY),
        "the canary reached the audit log:\n{text}"
    );
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    let shown = lines[0]["arguments"]["script"].as_str().unwrap();
    assert!(
        shown.contains("password = \"****\"")
            && shown.contains("'SecretName': 'db-prod-name'")
            && shown.contains("action='PutSecretValue'"),
        "{shown}"
    );
    assert_eq!(
        lines[1]["arguments"]["command"],
        "aliyun kms put-secret-value --SecretName db-prod-name --SecretData **** \
         --Description '****' --Tags '****'"
    );
}
