//! The audit log of the stdio bridge's tool policy (docs/safety.md), end to end against the
//! ops server (`support/ops_server`): one line per call without secrets (scripts and commands
//! masked, names kept), rollover, a failing log reported once while calls go on, a symbolic
//! link refused at start.

use serde_json::{json, Value};

use crate::safety::{bridge, list_all};
use crate::support::bridge::Bridge;
use crate::support::check::tool_text;
use crate::support::home::TempHome;
use crate::support::ops_server::OpsServer;

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
