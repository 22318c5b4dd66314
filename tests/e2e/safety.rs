//! Cloud-ops safety end to end (docs/safety.md): the real binary between this harness (or the
//! TypeScript SDK client) and the ops server (`support/ops_server`), whose tools mirror the
//! Alibaba Cloud OpenAPI MCP Server's names and annotations and which records every call it
//! executes. For each flag: what the client lists, what it may call, and that a refused call
//! never executed. Also `--safety-policy` against the Alibaba fake, and the same policy in
//! `alibridge proxy`.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::support::aliyun_fake::AliyunFake;
use crate::support::bridge::{bin, inherited_vars_to_scrub, Bridge};
use crate::support::mcp_server::{ServerOptions, TestServer};
use crate::support::ops_server::OpsServer;

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("alibridge-safety-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn file(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `node tests/peers/<script> <alibridge> <args…>` with an isolated `ALIBRIDGE_HOME`;
/// returns its one-line JSON summary, failing the test unless it says `"ok": true`.
fn run_node_script(script: &str, args: &[&str]) -> Value {
    use crate::support::peers::{ensure_npm_peers, peers_dir, run_node_summary};
    ensure_npm_peers();
    let home = Scratch::new("node");
    let mut cmd = std::process::Command::new("node");
    cmd.arg(peers_dir().join(script))
        .arg(bin())
        .args(args)
        .env("ALIBRIDGE_HOME", home.path());
    let (success, summary, stderr) = run_node_summary(cmd, script);
    assert!(
        success && summary["ok"] == true,
        "{script} failed: {summary:#}\nstderr:\n{stderr}"
    );
    summary
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
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    for n in 0.. {
        let params = match &cursor {
            Some(c) => json!({"cursor": c}),
            None => json!({}),
        };
        b.request(id + n, "tools/list", params).await;
        let resp = b.response(id + n).await;
        let result = &resp["result"];
        for t in result["tools"].as_array().expect("tools") {
            names.push(t["name"].as_str().unwrap().to_string());
        }
        match result["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    names
}

/// The policy refusal in `resp`: `(rule, message)`.
fn refusal(resp: &Value) -> (String, String) {
    let e = &resp["error"];
    assert!(e.is_object(), "expected a refusal: {resp}");
    assert_eq!(e["data"]["alibridge"]["kind"], "policy", "{resp}");
    (
        e["data"]["alibridge"]["rule"].as_str().unwrap().to_string(),
        e["message"].as_str().unwrap().to_string(),
    )
}

fn text(resp: &Value) -> &str {
    resp["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text result: {resp}"))
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
            "AlibabaCloud___RunScript"
        ]
    );

    let (rule, msg) = refusal(
        &b.call_tool(10, "DeleteInstance", json!({"InstanceId": "i-1"}))
            .await,
    );
    assert_eq!(rule, "--deny-tools DeleteInstance");
    assert!(
        msg.contains("DeleteInstance") && msg.contains("Nothing was sent to the server"),
        "{msg}"
    );
    let (rule, msg) = refusal(&b.call_tool(11, "StartInstance", json!({})).await);
    assert_eq!(rule, "--allow-tools");
    assert!(msg.contains("ALIBRIDGE_ALLOW_TOOLS"), "{msg}");
    let (rule, _) = refusal(
        &b.call_tool(12, "Ecs-20140526-StopInstance", json!({}))
            .await,
    );
    assert_eq!(rule, "--deny-tools *Stop*");
    // Never listed, judged by name alone: still refused by the allow list.
    let (rule, _) = refusal(&b.call_tool(13, "RebootInstance", json!({})).await);
    assert_eq!(rule, "--allow-tools");

    let ok = b.call_tool(14, "DescribeRegions", json!({})).await;
    assert!(text(&ok).starts_with("ran DescribeRegions"), "{ok}");
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
            "AlibabaCloud___RunScript"
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
    ] {
        let resp = b.call_tool(id, tool, args).await;
        let (rule, msg) = refusal(&resp);
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
            25,
            "AlibabaCloud___RunScript",
            json!({"script": "r = await call_cli(product='Ecs', action='DescribeRegions', params={})\nresult = r"}),
        ),
    ] {
        let resp = b.call_tool(id, tool, args).await;
        assert!(text(&resp).starts_with(&format!("ran {tool}")), "{resp}");
    }
    assert_eq!(
        server.executed_names(),
        [
            "DescribeInstances",
            "DescribeRegions",
            "Ecs-20140526-DescribeImages",
            "AlibabaCloud___CallCLI",
            "AlibabaCloud___GetApiDefinition",
            "AlibabaCloud___RunScript"
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
    assert!(text(&resp).starts_with("ran EnableSnapshots"));
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
    let (rule, _) = refusal(
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
    let (rule, _) = refusal(&b.response(1).await);
    assert_eq!(rule, "unreadable tools/call");
    b.request(2, "tools/call", json!({"arguments": {}})).await;
    let (rule, _) = refusal(&b.response(2).await);
    assert_eq!(rule, "unreadable tools/call");
    assert!(server.executed().is_empty());
}

/// The audit log: one JSON line per tools/call (relayed, denied, tool error, upstream error),
/// created 0600, secret-looking arguments masked, and the durations, upstream and decision
/// recorded. A small cap rolls the file over once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_records_every_call_without_secrets() {
    let dir = Scratch::new("audit");
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
    let dir = Scratch::new("roll");
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
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_audit_log_is_reported_once_and_calls_go_on() {
    let server = OpsServer::start().await;
    let mut b = bridge(&server, &["--audit-log", "/dev/full"]).await;
    for id in 1..=3 {
        let resp = b.call_tool(id, "DescribeRegions", json!({})).await;
        assert!(text(&resp).starts_with("ran DescribeRegions"));
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
    assert!(text(&resp).starts_with("ran StartInstance"), "{resp}");

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
    assert!(text(&read).starts_with("ran DescribeRegions"));
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

const AK_ID: &str = "LTAI5tSafetyKey000000001";
const AK_SECRET: &str = "safetySecret-Q3v9Lk2Xw8Rt5Yp1Zn7M";

/// An isolated bridge with AccessKeys in the environment, against `server`, minting from
/// `fake` and binding policies there.
fn ak_bridge(fake: &AliyunFake, server_url: &str, home: &Scratch, extra: &[&str]) -> Bridge {
    let mut args: Vec<String> = [
        server_url,
        "--transport",
        "http-only",
        "--auth",
        "ak",
        "--site-type",
        "CN",
        "--ims-endpoint",
        &fake.url(),
        "--safety-policy-endpoint",
        &fake.url(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    Bridge::spawn_isolated(
        args,
        [
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", AK_ID),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", AK_SECRET),
        ],
        home.path(),
    )
}

/// `--safety-policy` and an exact `--allow-tools` list are bound to every minted token with
/// UpdateBearerTokenSafetyPolicy before the token is used (the server here only accepts tokens
/// with a policy bound), in the body Alibaba's proxy sends: at start, and again for the token
/// minted after the first one is revoked. Local enforcement stays on; the audit log names the
/// masked AccessKey id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safety_policy_is_bound_to_every_token_before_use() {
    let fake = AliyunFake::start().await;
    fake.add_access_key(AK_ID, AK_SECRET);
    let server = TestServer::start_with(ServerOptions::requiring_bearer(
        fake.policy_bound_token_checker(),
    ))
    .await;
    let home = Scratch::new("ak");
    let audit = home.file("audit.jsonl");
    let mut b = ak_bridge(
        &fake,
        &server.url(),
        &home,
        &[
            "--safety-policy",
            " ecs:describe-*=allow,*=deny ",
            "--allow-tools",
            "echo,count",
            "--audit-log",
            &audit,
        ],
    );
    b.initialize().await;
    assert_eq!(
        fake.safety_calls().len(),
        1,
        "bound at start, before initialize went out"
    );
    let first = b.call_tool(1, "echo", json!({"text": "one"})).await;
    assert_eq!(text(&first), "one");
    // The service revokes the token: the bridge mints a new one, binds it, retries once.
    fake.revoke_all_tokens();
    let second = b.call_tool(2, "echo", json!({"text": "two"})).await;
    assert_eq!(text(&second), "two");
    let (rule, _) = refusal(&b.call_tool(3, "sleep", json!({"ms": 1})).await);
    assert_eq!(rule, "--allow-tools", "local enforcement stays on");
    b.close_stdin();
    assert_eq!(b.wait().await, 0);

    let tokens = fake.minted_tokens();
    assert_eq!(tokens.len(), 2);
    for refused in server.unauthorized() {
        assert_eq!(
            refused.bearer(),
            Some(tokens[0].as_str()),
            "only the revoked token was refused; the new one carried its policy from the start"
        );
    }
    let calls = fake.safety_calls();
    assert_eq!(calls.len(), 2, "one binding per token");
    for (call, token) in calls.iter().zip(&tokens) {
        assert_eq!(call.status, 200, "{call:?}");
        assert_eq!(
            call.headers["x-acs-action"],
            "UpdateBearerTokenSafetyPolicy"
        );
        assert_eq!(call.headers["x-acs-version"], "2024-11-30");
        assert!(call.headers["content-type"].starts_with("application/json"));
        assert!(
            !call.headers.contains_key("authorization"),
            "the call is anonymous"
        );
        assert_eq!(
            call.body,
            format!(
                r#"{{"bearerToken":"{token}","safePolicy":"ecs:describe-*=allow,*=deny","toolPolicy":"{{\"allowedTools\":[\"echo\",\"count\"]}}"}}"#
            )
        );
        let bound = fake.bound_policy(token).expect("bound");
        assert_eq!(bound.safe_policy, "ecs:describe-*=allow,*=deny");
        assert_eq!(
            bound.allowed_tools,
            Some(vec!["echo".into(), "count".into()])
        );
    }
    let log = std::fs::read_to_string(&audit).unwrap();
    let line: Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(line["identity"], "ak:LTAI****0001");
    assert!(!log.contains(AK_SECRET) && !tokens.iter().any(|t| log.contains(t.as_str())));
}

/// Only patterns in `--allow-tools` and no `--safety-policy`: nothing can be bound server-side
/// (toolPolicy takes exact names), so no binding call is made; the list is enforced locally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_patterns_alone_are_enforced_locally_only() {
    let fake = AliyunFake::start().await;
    fake.add_access_key(AK_ID, AK_SECRET);
    let server =
        TestServer::start_with(ServerOptions::requiring_bearer(fake.token_checker())).await;
    let home = Scratch::new("glob");
    let mut b = ak_bridge(&fake, &server.url(), &home, &["--allow-tools", "ec*"]);
    b.initialize().await;
    assert_eq!(
        text(&b.call_tool(1, "echo", json!({"text": "x"})).await),
        "x"
    );
    let (rule, _) = refusal(&b.call_tool(2, "count", json!({})).await);
    assert_eq!(rule, "--allow-tools");
    b.close_stdin();
    assert_eq!(b.wait().await, 0);
    assert!(fake.safety_calls().is_empty());
}

/// When the policy cannot be bound, the bridge does not start with a weaker token: it exits 1
/// with the service's reason and what to check, and the MCP server never sees a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_binding_stops_the_bridge_before_anything_is_sent() {
    let fake = AliyunFake::start().await;
    fake.add_access_key(AK_ID, AK_SECRET);
    fake.fail_safety_policy(400, "InvalidParameter.SafePolicy");
    let server =
        TestServer::start_with(ServerOptions::requiring_bearer(fake.token_checker())).await;
    let home = Scratch::new("fail");
    let mut b = ak_bridge(
        &fake,
        &server.url(),
        &home,
        &["--safety-policy", "ecs:describe-*=allow,*=deny"],
    );
    assert_eq!(b.wait().await, 1);
    let stderr = b.stderr().await;
    assert!(
        stderr.contains("could not bind the safety policy")
            && stderr.contains("InvalidParameter.SafePolicy")
            && stderr.contains("does not use a token without the policy"),
        "{stderr}"
    );
    for t in fake.minted_tokens() {
        assert!(!stderr.contains(&t), "the token reached stderr");
    }
    assert!(
        server.requests().is_empty(),
        "nothing reached the MCP server"
    );
}

/// Bad policy flags are usage errors (exit 2) naming the flag: a malformed expression, a
/// `--safety-policy` without AccessKeys, a bad region, an empty pattern list entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_policy_flags_exit_2() {
    let home = Scratch::new("flags");
    for (args, expect) in [
        (
            vec!["--auth", "ak", "--safety-policy", "ecs:describe-*"],
            "PATTERN=allow",
        ),
        (
            vec!["--auth", "none", "--safety-policy", "*=deny"],
            "--auth ak",
        ),
        (vec!["--region", "Hangzhou"], "--region"),
        (vec!["--allow-tools", "a\u{1}b"], "control characters"),
        (
            vec!["--audit-log", "/nonexistent-dir/x/audit.jsonl"],
            "audit log",
        ),
    ] {
        let mut all = vec!["http://127.0.0.1:9/mcp".to_string()];
        all.extend(args.iter().map(|s| s.to_string()));
        let mut cmd = tokio::process::Command::new(bin());
        cmd.args(&all);
        for name in inherited_vars_to_scrub() {
            cmd.env_remove(name);
        }
        let out = cmd
            .env("HOME", home.path())
            .env("ALIBRIDGE_HOME", home.path().join(".alibridge"))
            .env("ALIBABA_CLOUD_ACCESS_KEY_ID", AK_ID)
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", AK_SECRET)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty());
    }
}

/// Every policy flag has its environment variable, and `--help` lists them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_flags_have_environment_variables_and_help() {
    let out = tokio::process::Command::new(bin())
        .arg("--help")
        .output()
        .await
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for (flag, var) in [
        ("--allow-tools", "ALIBRIDGE_ALLOW_TOOLS"),
        ("--deny-tools", "ALIBRIDGE_DENY_TOOLS"),
        ("ignore-tool", "ALIBRIDGE_DENY_TOOLS"),
        ("--read-only", "ALIBRIDGE_READ_ONLY"),
        ("--confirm-writes", "ALIBRIDGE_CONFIRM_WRITES"),
        ("--region", "ALIBRIDGE_REGION"),
        ("--audit-log", "ALIBRIDGE_AUDIT_LOG"),
        ("--audit-log-max-size", "ALIBRIDGE_AUDIT_LOG_MAX_SIZE"),
        ("--safety-policy", "ALIBRIDGE_SAFETY_POLICY"),
        (
            "--safety-policy-endpoint",
            "ALIBRIDGE_SAFETY_POLICY_ENDPOINT",
        ),
    ] {
        assert!(
            help.contains(flag) && help.contains(var),
            "{flag} / {var} not in --help"
        );
    }
    // The environment alone switches read-only on.
    let server = OpsServer::start().await;
    let mut b = Bridge::spawn_with_env(
        [
            server.url().as_str(),
            "--transport",
            "http-only",
            "--auth",
            "none",
        ],
        [
            ("ALIBRIDGE_READ_ONLY", "true"),
            ("ALIBRIDGE_DENY_TOOLS", "DescribeRegions"),
        ],
    );
    b.initialize().await;
    let (rule, _) = refusal(&b.call_tool(1, "DeleteInstance", json!({})).await);
    assert_eq!(rule, "--read-only");
    let (rule, _) = refusal(&b.call_tool(2, "DescribeRegions", json!({})).await);
    assert_eq!(rule, "--deny-tools DescribeRegions");
    assert!(server.executed().is_empty());
}

mod proxy {
    //! The same policy in `alibridge proxy`, per server: rmcp's Streamable HTTP client through
    //! the proxy to the ops server (SSE answers rewritten on the way).

    use std::sync::{Arc, Mutex};

    use rmcp::model::{
        CallToolRequestParams, ClientConfig, ElicitRequestParams, ElicitResult, ElicitationAction,
    };
    use rmcp::service::{RequestContext, RoleClient, RunningService};
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::{ClientHandler, ErrorData, ServiceExt};
    use serde_json::{json, Value};

    use super::{OpsServer, Scratch};
    use crate::support::net::http_client as http;
    use crate::support::proxy::Proxy;

    /// An MCP client that answers elicitation with the queued answers (when it declares the
    /// capability) and records what it was asked.
    #[derive(Clone, Default)]
    struct Client {
        elicits: bool,
        answers: Arc<Mutex<Vec<ElicitResult>>>,
        asked: Arc<Mutex<Vec<Value>>>,
    }

    impl ClientHandler for Client {
        async fn create_elicitation(
            &self,
            request: ElicitRequestParams,
            _cx: RequestContext<RoleClient>,
        ) -> Result<ElicitResult, ErrorData> {
            self.asked
                .lock()
                .unwrap()
                .push(serde_json::to_value(&request).unwrap());
            let next = self.answers.lock().unwrap().pop();
            Ok(next.unwrap_or(ElicitResult::new(ElicitationAction::Cancel)))
        }

        fn get_info(&self) -> ClientConfig {
            let caps = if self.elicits {
                json!({"elicitation": {}})
            } else {
                json!({})
            };
            serde_json::from_value(json!({
                "protocolVersion": "2025-06-18",
                "capabilities": caps,
                "clientInfo": {"name": "alibridge-safety-proxy-tests", "version": "0"}
            }))
            .unwrap()
        }
    }

    async fn connect(url: &str, client: Client) -> RunningService<RoleClient, Client> {
        let transport = StreamableHttpClientTransport::with_client(
            http(),
            StreamableHttpClientTransportConfig::with_uri(url.to_string()),
        );
        client
            .serve(transport)
            .await
            .expect("initialize through the proxy")
    }

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
        let dir = Scratch::new("proxy");
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
                "AlibabaCloud___RunScript"
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
            serde_json::from_value(json!({"action": "accept", "content": {"confirm": true}}))
                .unwrap();
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
                                let msg: Value =
                                    serde_json::from_slice(&body).unwrap_or(Value::Null);
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
                                    let mut r =
                                        hyper::Response::new(Full::new(bytes::Bytes::new()));
                                    *r.status_mut() = hyper::StatusCode::ACCEPTED;
                                    r
                                } else {
                                    let answer =
                                        json!({"jsonrpc": "2.0", "id": id, "result": result});
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
    /// holding tools/call is refused as a whole.
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
        let batch = post(
            &url,
            Some(&sid),
            r#"[{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"DeleteB"}}]"#,
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
}
