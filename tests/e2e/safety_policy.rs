//! Cloud-ops safety end to end (docs/safety.md), the policy flags: `--safety-policy` (and an
//! exact `--allow-tools` list) bound to every token minted from the Alibaba fake before use,
//! a failed binding stopping the bridge, and the flags' validation, environment variables and
//! help.

use serde_json::{json, Value};

use crate::support::aliyun_fake::AliyunFake;
use crate::support::bridge::{bin, inherited_vars_to_scrub, Bridge};
use crate::support::check::{policy_refusal, tool_text};
use crate::support::home::TempHome;
use crate::support::mcp_server::{ServerOptions, TestServer};
use crate::support::ops_server::OpsServer;

const AK_ID: &str = "LTAI5tSafetyKey000000001";

const AK_SECRET: &str = "safetySecret-Q3v9Lk2Xw8Rt5Yp1Zn7M";

/// An isolated bridge with AccessKeys in the environment, against `server`, minting from
/// `fake` and binding policies there.
fn ak_bridge(fake: &AliyunFake, server_url: &str, home: &TempHome, extra: &[&str]) -> Bridge {
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
    let home = TempHome::new("safety-ak");
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
    assert_eq!(tool_text(&first), "one");
    // The service revokes the token: the bridge mints a new one, binds it, retries once.
    fake.revoke_all_tokens();
    let second = b.call_tool(2, "echo", json!({"text": "two"})).await;
    assert_eq!(tool_text(&second), "two");
    let (rule, _) = policy_refusal(&b.call_tool(3, "sleep", json!({"ms": 1})).await);
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
    let home = TempHome::new("safety-glob");
    let mut b = ak_bridge(&fake, &server.url(), &home, &["--allow-tools", "ec*"]);
    b.initialize().await;
    assert_eq!(
        tool_text(&b.call_tool(1, "echo", json!({"text": "x"})).await),
        "x"
    );
    let (rule, _) = policy_refusal(&b.call_tool(2, "count", json!({})).await);
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
    let home = TempHome::new("safety-fail");
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
    let home = TempHome::new("safety-flags");
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
    let (rule, _) = policy_refusal(&b.call_tool(1, "DeleteInstance", json!({})).await);
    assert_eq!(rule, "--read-only");
    let (rule, _) = policy_refusal(&b.call_tool(2, "DescribeRegions", json!({})).await);
    assert_eq!(rule, "--deny-tools DescribeRegions");
    assert!(server.executed().is_empty());
}

/// `--read-only`, `--allow-api` and `--deny-api` are compiled into the safety policy bound to
/// every token with AccessKeys (and intersected with a user's `--safety-policy`): the fake
/// service judges a table of API calls under each bound policy with its own evaluator, so the
/// server refuses what the flags refuse even inside CallCLI, RunScript and RunIaC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_flags_are_compiled_into_the_bound_policy() {
    use crate::support::aliyun_fake::safety::evaluate;
    let fake = AliyunFake::start().await;
    fake.add_access_key(AK_ID, AK_SECRET);
    let server = TestServer::start_with(ServerOptions::requiring_bearer(
        fake.policy_bound_token_checker(),
    ))
    .await;
    // (flags, [(product, api in kebab-case, allowed?)])
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str, bool)>);
    let cases: Vec<Case> = vec![
        (
            vec!["--read-only"],
            vec![
                ("ecs", "describe-instances", true),
                ("ram", "list-users", true),
                ("ecs", "delete-instance", false),
                ("ram", "create-access-key", false),
                ("kms", "get-secret-value", false),
                ("cr", "get-authorization-token", false),
                ("cs", "describe-cluster-user-kubeconfig", false),
                ("ecs", "describe-instance-vnc-url", false),
                ("sts", "get-federation-token", false),
                ("ecs", "run-instances", false),
            ],
        ),
        (
            vec!["--deny-api", "ram:*,*:Delete*"],
            vec![
                ("ram", "list-users", false),
                ("ecs", "delete-instance", false),
                ("ecs", "stop-instance", true),
                ("ecs", "describe-instances", true),
            ],
        ),
        (
            vec!["--allow-api", "ecs:Describe*"],
            vec![
                ("ecs", "describe-instances", true),
                ("vpc", "describe-vpcs", false),
                ("ecs", "delete-instance", false),
            ],
        ),
        (
            vec!["--read-only", "--safety-policy", "ecs:*=allow,*=deny"],
            vec![
                ("ecs", "describe-instances", true),
                ("ecs", "delete-instance", false),
                ("vpc", "describe-vpcs", false),
            ],
        ),
    ];
    for (flags, table) in cases {
        let home = TempHome::new("safety-compiled");
        let mut b = ak_bridge(&fake, &server.url(), &home, &flags);
        b.initialize().await;
        let stderr = b.finish().await.stderr;
        assert!(
            stderr.contains("server-side"),
            "{flags:?}: the start-up line names the server-side layer\n{stderr}"
        );
        let token = fake.minted_tokens().last().cloned().expect("minted");
        let bound = fake.bound_policy(&token).expect("a policy is bound");
        for (product, api, allowed) in table {
            assert_eq!(
                evaluate(&bound.safe_policy, product, api),
                allowed,
                "{flags:?}: {product}:{api} under {}",
                bound.safe_policy
            );
        }
    }
}

/// With AccessKeys and `--read-only`, a RunScript (which alibridge cannot judge from its text)
/// is relayed for the server to judge, and the server, enforcing the policy compiled from the
/// flag and bound to the token, refuses the write inside it and runs the read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_write_is_refused_server_side_under_read_only() {
    use crate::support::core_server::CoreServer;
    let fake = AliyunFake::start().await;
    fake.add_access_key(AK_ID, AK_SECRET);
    let core = CoreServer::start_enforcing(fake.policy_judge()).await;
    let home = TempHome::new("safety-script-server");
    let audit = home.file("audit.jsonl");
    let mut b = ak_bridge(
        &fake,
        &core.url(),
        &home,
        &["--read-only", "--audit-log", &audit],
    );
    b.initialize().await;
    let write = b
        .call_tool(
            1,
            "AlibabaCloud___RunScript",
            json!({"script": "r = await call_cli(product='Ecs', action='DeleteInstance', params={'InstanceId': 'i-1'})"}),
        )
        .await;
    assert_eq!(write["result"]["isError"], true, "{write}");
    assert!(
        tool_text(&write).contains("Forbidden.SafetyPolicy"),
        "refused by the server: {write}"
    );
    let read = b
        .call_tool(
            2,
            "AlibabaCloud___RunScript",
            json!({"script": "r = await call_cli(product='Ecs', action='DescribeInstances', params={})"}),
        )
        .await;
    assert!(
        tool_text(&read).starts_with("ran AlibabaCloud___RunScript"),
        "{read}"
    );
    // What alibridge can read is still refused locally, before the server.
    let (rule, _) = policy_refusal(
        &b.call_tool(
            3,
            "AlibabaCloud___CallCLI",
            json!({"command": "aliyun ecs delete-instance --InstanceId i-2"}),
        )
        .await,
    );
    assert_eq!(rule, "--read-only");
    b.finish().await;
    let executed = core.executed_calls();
    assert_eq!(executed.len(), 1, "{executed:?}");
    assert!(executed[0].1["script"]
        .as_str()
        .unwrap()
        .contains("DescribeInstances"));
    let log = std::fs::read_to_string(&audit).unwrap();
    assert!(log.contains("server-side read-only policy"), "{log}");
}
