//! The URL-less start: `alibridge` with AccessKeys and no URL finds the account's OpenAPI MCP
//! Core endpoint with `ListApiMcpServerCores` (ACS3-signed, verified by the Alibaba fake), and
//! follows the identity when the `aliyun` CLI's current profile changes during a run. Each
//! "account" is an rmcp test server that accepts only tokens minted with its own AccessKey.

use serde_json::{json, Value};

use crate::support::ak_rig::auth_line;
use crate::support::aliyun_fake::{cores, AliyunFake, GENERATE_ACCESS_TOKEN, INTL_CLIENT_ID};
use crate::support::bridge::{isolated_command, output, Bridge};
use crate::support::canary::Canary;
use crate::support::check::{assert_no_secrets, tool_text};
use crate::support::home::TempHome;
use crate::support::mcp_server::{ServerOptions, TestServer};
use crate::support::wait::WAIT;

const AK_ID: &str = "LTAI5tCoreFirst000000001";
const AK_SECRET: &str = "coreFirstSecret-Ab3Cd5Ef7Gh9Ij1Kl";
const OTHER_ID: &str = "LTAI5tCoreSecond00000002";
const OTHER_SECRET: &str = "coreSecondSecret-Mn2Op4Qr6St8Uv0W";

fn core(url: &str) -> Value {
    json!({"id": "c-1", "name": "core", "urls": {"mcp": url, "sse": format!("{url}/sse")}})
}

fn profile(name: &str, id: &str, secret: &str) -> Value {
    json!({"name": name, "mode": "AK", "access_key_id": id, "access_key_secret": secret,
           "region_id": "cn-hangzhou"})
}

/// No URL: the fake is both the RAM-OAuth and the discovery endpoint.
fn args(fake: &AliyunFake, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "--ims-endpoint",
        fake.url().as_str(),
        "--discovery-endpoint",
        fake.url().as_str(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// A URL-less start with AccessKeys in the environment and no stdin, to its end.
async fn run_url_less(fake: &AliyunFake, home: &TempHome, secret: &str) -> (i32, String, String) {
    let mut cmd = isolated_command(home.path());
    cmd.args(args(fake, &[]))
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", AK_ID)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", secret);
    output(cmd).await
}

fn discoveries(fake: &AliyunFake) -> Vec<crate::support::aliyun_fake::Call> {
    fake.calls_of(cores::ACTION)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_url_the_accounts_core_endpoint_is_found_and_used() {
    let fake = AliyunFake::start().await;
    fake.add_access_key(AK_ID, AK_SECRET);
    let server = TestServer::start_with(ServerOptions::requiring_bearer(
        fake.token_checker_for(AK_ID),
    ))
    .await;
    fake.set_cores(
        AK_ID,
        vec![core(&server.url()), core("https://unused.invalid/mcp")],
    );
    let home = TempHome::new("core-start");
    let mut bridge = Bridge::spawn_isolated(
        args(&fake, &["--site-type", "INTL"]),
        [
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", AK_ID),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", AK_SECRET),
        ],
        home.path(),
    );
    bridge.initialize().await;
    assert_eq!(
        tool_text(&bridge.call_tool(1, "echo", json!({"text": "core"})).await),
        "core"
    );
    let done = bridge.finish().await;
    let auth = auth_line(&done.stderr);
    assert!(
        auth.contains(&format!("endpoint {}", server.url()))
            && auth.contains("Core edition")
            && auth.contains("site INTL (--site-type)"),
        "{auth}"
    );
    let found = discoveries(&fake);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].ok() && found[0].signed, "{found:?}");
    assert_eq!(found[0].access_key_id.as_deref(), Some(AK_ID));
    // --site-type INTL picked the international application for the token.
    let mints = fake.calls_of(GENERATE_ACCESS_TOKEN);
    assert_eq!(mints[0].client_id.as_deref(), Some(INTL_CLIENT_ID));
    assert!(server.unauthorized().is_empty());
    assert_no_secrets("stderr", &done.stderr, &[AK_SECRET]);
}

/// `aliyun configure` switching to another account mid-run: the next message is relayed to the
/// new account's Core endpoint (found again with the new keys), in a session started there by
/// replaying the client's handshake; the old endpoint never sees the new account's token, and
/// the client never sees an answer to the replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_switch_moves_the_session_to_the_new_accounts_endpoint() {
    let fake = AliyunFake::start().await;
    fake.add_access_key(AK_ID, AK_SECRET);
    fake.add_access_key(OTHER_ID, OTHER_SECRET);
    let first = TestServer::start_with(ServerOptions::requiring_bearer(
        fake.token_checker_for(AK_ID),
    ))
    .await;
    let second = TestServer::start_with(ServerOptions::requiring_bearer(
        fake.token_checker_for(OTHER_ID),
    ))
    .await;
    fake.set_cores(AK_ID, vec![core(&first.url())]);
    fake.set_cores(OTHER_ID, vec![core(&second.url())]);
    let home = TempHome::new("core-switch");
    home.cli_config(&json!({"current": "first", "profiles": [profile("first", AK_ID, AK_SECRET)]}));
    let mut bridge = Bridge::spawn_isolated(args(&fake, &[]), [("A", "B")], home.path());
    bridge.initialize().await;
    assert_eq!(
        tool_text(&bridge.call_tool(1, "echo", json!({"text": "one"})).await),
        "one"
    );
    home.cli_config(&json!({"current": "second", "profiles": [
        profile("first", AK_ID, AK_SECRET), profile("second", OTHER_ID, OTHER_SECRET)]}));
    // The bridge re-reads the files at most once a second: ping until the second account's
    // endpoint has seen one.
    let deadline = tokio::time::Instant::now() + WAIT;
    for id in 100.. {
        bridge.request(id, "ping", json!({})).await;
        let pong = bridge.response(id).await;
        assert!(pong.get("result").is_some(), "{pong}");
        if !second.requests().is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bridge never moved to the second account's endpoint"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        tool_text(&bridge.call_tool(2, "echo", json!({"text": "two"})).await),
        "two"
    );
    let done = bridge.finish().await;

    // Found twice, each time with the identity in use.
    let found = discoveries(&fake);
    let keys: Vec<_> = found.iter().map(|c| c.access_key_id.clone()).collect();
    assert_eq!(
        keys,
        [Some(AK_ID.into()), Some(OTHER_ID.into())],
        "{found:?}"
    );
    // The second endpoint got a fresh session: the replayed initialize (after the era probe,
    // settled afresh too), then the rest.
    let methods: Vec<_> = second
        .requests()
        .into_iter()
        .filter_map(|r| r.rpc_method)
        .filter(|m| m != "server/discover")
        .collect();
    assert_eq!(
        methods.first().map(String::as_str),
        Some("initialize"),
        "{methods:?}"
    );
    assert!(
        methods.iter().any(|m| m == "notifications/initialized"),
        "{methods:?}"
    );
    assert_eq!(second.calls("echo"), 1);
    assert_eq!(first.calls("echo"), 1);
    // Neither endpoint saw the other account's token.
    assert!(
        first.unauthorized().is_empty() && second.unauthorized().is_empty(),
        "{:?} {:?}",
        first.unauthorized(),
        second.unauthorized()
    );
    for r in first.requests() {
        let key = r.bearer().and_then(|t| fake.token_key(t));
        assert_eq!(key.as_deref(), Some(AK_ID), "{r:?}");
    }
    // The client saw exactly the answers to its own ids.
    for m in &done.seen {
        let id = m.get("id").cloned().unwrap_or(Value::Null);
        assert!(
            !id.as_str().is_some_and(|s| s.starts_with("alibridge-")),
            "the replay's answer reached the client: {m}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_without_a_core_edition_is_told_where_to_create_one() {
    let fake = AliyunFake::start().await;
    fake.add_access_key(AK_ID, AK_SECRET);
    fake.set_cores(AK_ID, vec![]);
    let home = TempHome::new("core-none");
    let (code, stdout, stderr) = run_url_less(&fake, &home, AK_SECRET).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("no OpenAPI MCP Server Core edition")
            && stderr.contains("https://api.aliyun.com/mcp"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_without_permission_names_the_policy_to_attach() {
    let fake = AliyunFake::start().await;
    fake.add_access_key_without_permission(AK_ID, AK_SECRET);
    let home = TempHome::new("core-perm");
    let (code, _, stderr) = run_url_less(&fake, &home, AK_SECRET).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("Forbidden.RAM")
            && stderr.contains("AliyunOpenAPIMCPServerStaticCredentialAccess"),
        "{stderr}"
    );
    assert_no_secrets("stderr", &stderr, &[AK_SECRET]);
    assert_eq!(fake.calls_of(GENERATE_ACCESS_TOKEN).len(), 0);
}

/// A wrong secret fails the fake's own ACS3 verification, and the message says which key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_fails_the_signature_check() {
    let fake = AliyunFake::start().await;
    fake.add_access_key(AK_ID, AK_SECRET);
    let home = TempHome::new("core-sig");
    let mut cmd = isolated_command(home.path());
    cmd.args(args(&fake, &[]))
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", AK_ID)
        .env(
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            "wrong-secret-000000000000",
        );
    let (code, _, stderr) = output(cmd).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("SignatureDoesNotMatch"), "{stderr}");
    assert!(!stderr.contains("wrong-secret-000000000000"), "{stderr}");
    let found = discoveries(&fake);
    assert_eq!(found[0].code.as_deref(), Some("SignatureDoesNotMatch"));
}

/// An answer naming a host that is neither an OpenAPI MCP host nor the one
/// --discovery-endpoint named gets no token: the canary sees nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_core_url_on_another_host_gets_no_token() {
    let fake = AliyunFake::start().await;
    fake.add_access_key(AK_ID, AK_SECRET);
    let canary = Canary::start().await;
    fake.set_cores(
        AK_ID,
        vec![core(&format!("{}/mcp", canary.url().trim_end_matches('/')))],
    );
    let home = TempHome::new("core-canary");
    let (code, _, stderr) = run_url_less(&fake, &home, AK_SECRET).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("is not an OpenAPI MCP host"), "{stderr}");
    canary.assert_untouched();
}

/// Without keys, or with a flag that rules AccessKeys out, a URL is needed: exit 2 saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_keys_or_with_another_credential_a_url_is_required() {
    let home = TempHome::new("core-usage");
    for (extra, expect) in [
        (vec![], "needs AccessKeys"),
        (vec!["--auth", "oauth"], "--auth oauth is given"),
        (
            vec!["--bearer-token", "tok-123456"],
            "--bearer-token/--token-command is given",
        ),
        (
            vec!["-H", "Authorization: Bearer x"],
            "an Authorization --header is given",
        ),
    ] {
        let mut cmd = isolated_command(home.path());
        cmd.args(&extra);
        let (code, stdout, stderr) = output(cmd).await;
        assert_eq!(code, 2, "{extra:?}: {stderr}");
        assert!(stdout.is_empty());
        assert!(
            stderr.contains("no MCP endpoint URL was given") && stderr.contains(expect),
            "{extra:?}: {stderr}"
        );
    }
}
