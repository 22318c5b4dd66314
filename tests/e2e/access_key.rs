//! `--auth ak` end to end: the real binary, isolated from the machine's credentials (`HOME` is
//! a temp dir, no `ALIBABA_CLOUD_*` variables inherited), against the local fake of RAM-OAuth
//! and STS (`support/aliyun_fake`) and the rmcp test server requiring the fake's tokens (401
//! otherwise): where keys come from and what is refused. The tokens' life (renewal,
//! revocation, STS renewal) is in `access_key_tokens.rs`, `pre-check` in `pre_check.rs`, the
//! fake's own checks in `aliyun_fake_checks.rs`.

use std::time::Duration;

use serde_json::json;

use crate::support::ak_rig::{auth_line, env_keys, AkRig};
use crate::support::aliyun_fake::{
    AliyunFake, Call, ASSUME_ROLE, ASSUME_ROLE_WITH_OIDC, CN_CLIENT_ID, GENERATE_ACCESS_TOKEN,
    IMS_VERSION, INTL_CLIENT_ID, MINT_POLICY, OPENAPI_SCOPE, STS_VERSION,
};
use crate::support::bridge::Bridge;
use crate::support::check::{assert_no_secrets, auth_error, init_params, tool_text};
use crate::support::mcp_server::{ServerOptions, TestServer};
use crate::support::wait::until;

pub(crate) const AK_ID: &str = "LTAI5tEnvKey000000000001";
pub(crate) const AK_SECRET: &str = "envSecret-Q3v9Lk2Xw8Rt5Yp1Zn7Mb4Hc";
pub(crate) const ROLE_SRC_ID: &str = "LTAI5tRoleSource00000002";
pub(crate) const ROLE_SRC_SECRET: &str = "roleSourceSecret-Jd8Fs2Lq9Wk3Pz6Vx1";
pub(crate) const OTHER_ID: &str = "LTAI5tOtherProfile000003";
pub(crate) const OTHER_SECRET: &str = "otherSecret-Hg5Tr8Ye2Uw6Iq9Oa3Sd7";
pub(crate) const ROLE_ARN: &str = "acs:ram::1234567890123456:role/mcp-operator";
const CHAINED_ROLE_ARN: &str = "acs:ram::1234567890123456:role/mcp-chained";

/// The shared AccessKey rig ([`AkRig`]), with what these suites add.
pub(crate) type Rig = AkRig;

impl AkRig {
    /// `<mcp url> … --site-type SITE` + `extra` (see [`AkRig::args`]).
    pub(crate) fn site_args(&self, site: &str, extra: &[&str]) -> Vec<String> {
        self.args(&[&["--site-type", site][..], extra].concat())
    }

    pub(crate) fn spawn(&self, site: &str, extra: &[&str], env: &[(&str, &str)]) -> Bridge {
        Bridge::spawn_isolated(
            self.site_args(site, extra),
            env.iter().copied(),
            self.home.path(),
        )
    }

    /// The upstream requests that carried `tools/call` with id `id`.
    pub(crate) fn tool_posts(&self, id: i64) -> Vec<crate::support::mcp_server::SeenRequest> {
        self.server
            .requests()
            .into_iter()
            .filter(|r| {
                r.rpc_method.as_deref() == Some("tools/call") && r.rpc_id == Some(id.into())
            })
            .collect()
    }
}

/// The successful calls of `action` in `calls`.
pub(crate) fn ok_calls<'a>(calls: &'a [Call], action: &str) -> Vec<&'a Call> {
    calls
        .iter()
        .filter(|c| c.action == action && c.ok())
        .collect()
}

pub(crate) fn describe(calls: &[Call]) -> String {
    calls
        .iter()
        .map(|c| {
            format!(
                "{} key={:?} token={} -> {} {:?}",
                c.action,
                c.access_key_id,
                c.security_token.is_some(),
                c.status,
                c.code
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Keys from `ALIBABA_CLOUD_ACCESS_KEY_ID/_SECRET` are exchanged by one signed
/// GenerateAccessToken (built-in CN client, OpenAPI scope, parameters in the query) for a token
/// the upstream accepts on every request; the start-up line names the environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_keys_mint_one_token_that_the_server_accepts() {
    let rig = Rig::start("env").await;
    rig.fake.add_access_key(AK_ID, AK_SECRET);
    let mut bridge = rig.spawn("CN", &[], &env_keys(AK_ID, AK_SECRET));
    bridge.initialize().await;
    let resp = bridge.call_tool(1, "echo", json!({"text": "hi"})).await;
    assert_eq!(tool_text(&resp), "hi");
    let stderr = bridge.finish().await.stderr;

    let calls = rig.fake.calls();
    assert_eq!(calls.len(), 1, "exactly one call:\n{}", describe(&calls));
    let mint = &calls[0];
    assert!(mint.ok(), "{mint:?}");
    assert_eq!(mint.action, GENERATE_ACCESS_TOKEN);
    assert_eq!(mint.http_method, "POST");
    assert_eq!(mint.param("Version"), Some(IMS_VERSION));
    assert_eq!(mint.access_key_id.as_deref(), Some(AK_ID));
    assert_eq!(mint.security_token, None);
    assert_eq!(mint.client_id.as_deref(), Some(CN_CLIENT_ID));
    assert_eq!(mint.scope.as_deref(), Some(OPENAPI_SCOPE));
    assert_eq!(mint.policy, None);
    assert!(mint.form.is_empty(), "parameters travel in the query");
    let token = mint.token.clone().unwrap();

    let reqs = rig.server.requests();
    assert!(
        reqs.len() >= 3,
        "initialize, initialized, tools/call at least"
    );
    for r in &reqs {
        let what = format!("{} {:?}", r.method, r.rpc_method);
        assert_eq!(r.bearer(), Some(token.as_str()), "{what}");
    }
    assert!(rig.server.unauthorized().is_empty());
    assert_eq!(rig.server.calls("echo"), 1);

    let line = auth_line(&stderr);
    assert!(
        line.contains("environment") && line.contains("ALIBABA_CLOUD_ACCESS_KEY_ID"),
        "{line}"
    );
    assert!(line.contains("CN"), "{line}");
}

/// The `aliyun` CLI's config.json: `current` selects a RamRoleArn profile, so one AssumeRole
/// signed with its long-term keys comes first, then GenerateAccessToken signed with the STS keys
/// and their SecurityToken (INTL client); `--profile other` uses that AK profile instead, and a
/// ChainableRamRoleArn profile assumes twice (the second signed with the first STS keys).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_profiles_select_keys_and_ram_roles() {
    let rig = Rig::start("profiles").await;
    for (id, secret) in [
        ("LTAI5tDefault00000000000", "defaultSecret-xxxxxxxxxxxxxxxx"),
        (ROLE_SRC_ID, ROLE_SRC_SECRET),
        (OTHER_ID, OTHER_SECRET),
    ] {
        rig.fake.add_access_key(id, secret);
    }
    let sts = rig.fake.url();
    let config = rig.home.cli_config(&json!({
        "current": "ops",
        "profiles": [
            {"name": "default", "mode": "AK", "access_key_id": "LTAI5tDefault00000000000",
             "access_key_secret": "defaultSecret-xxxxxxxxxxxxxxxx", "region_id": "cn-hangzhou"},
            {"name": "ops", "mode": "RamRoleArn", "access_key_id": ROLE_SRC_ID,
             "access_key_secret": ROLE_SRC_SECRET, "ram_role_arn": ROLE_ARN,
             "ram_session_name": "alibridge-e2e", "expired_seconds": 900,
             "sts_endpoint": sts, "region_id": "cn-hangzhou"},
            {"name": "other", "mode": "AK", "access_key_id": OTHER_ID,
             "access_key_secret": OTHER_SECRET, "region_id": "cn-hangzhou"},
            {"name": "chain", "mode": "ChainableRamRoleArn", "source_profile": "ops",
             "ram_role_arn": CHAINED_ROLE_ARN, "ram_session_name": "chained",
             "sts_endpoint": sts, "region_id": "cn-hangzhou"}
        ],
        "meta_path": ""
    }));

    // 1. `current` = ops (RamRoleArn).
    let mut bridge = rig.spawn("INTL", &[], &[]);
    bridge.initialize().await;
    assert_eq!(
        tool_text(&bridge.call_tool(1, "echo", json!({"text": "a"})).await),
        "a"
    );
    let stderr = bridge.finish().await.stderr;
    let line = auth_line(&stderr);
    assert!(
        line.contains("\"ops\"")
            && line.contains("RamRoleArn")
            && line.contains(&*config.to_string_lossy()),
        "{line}"
    );
    let calls = rig.fake.calls();
    assert_eq!(calls.len(), 2, "{}", describe(&calls));
    let (assume, mint) = (&calls[0], &calls[1]);
    assert!(assume.ok() && mint.ok(), "{}", describe(&calls));
    assert_eq!(assume.action, ASSUME_ROLE);
    assert_eq!(assume.param("Version"), Some(STS_VERSION));
    assert_eq!(assume.access_key_id.as_deref(), Some(ROLE_SRC_ID));
    assert_eq!(assume.security_token, None);
    assert_eq!(assume.param("RoleArn"), Some(ROLE_ARN));
    assert_eq!(assume.param("RoleSessionName"), Some("alibridge-e2e"));
    assert_eq!(assume.param("DurationSeconds"), Some("900"));
    for p in ["RoleArn", "RoleSessionName", "DurationSeconds"] {
        assert!(
            assume.form.iter().any(|f| f == p),
            "{p} is a form parameter"
        );
    }
    let issued = assume.sts.clone().unwrap();
    assert_eq!(mint.action, GENERATE_ACCESS_TOKEN);
    assert_eq!(
        mint.access_key_id.as_deref(),
        Some(issued.access_key_id.as_str())
    );
    assert_eq!(
        mint.security_token.as_deref(),
        Some(issued.security_token.as_str())
    );
    assert_eq!(mint.client_id.as_deref(), Some(INTL_CLIENT_ID));
    let token = mint.token.clone().unwrap();
    assert!(rig
        .server
        .requests()
        .iter()
        .all(|r| r.bearer() == Some(token.as_str())));

    // 2. --profile other (AK): no role, the other key.
    let before = rig.fake.calls().len();
    let mut bridge = rig.spawn("INTL", &["--profile", "other"], &[]);
    bridge.initialize().await;
    let stderr = bridge.finish().await.stderr;
    assert!(auth_line(&stderr).contains("\"other\""), "{stderr}");
    let calls = rig.fake.calls()[before..].to_vec();
    assert_eq!(calls.len(), 1, "{}", describe(&calls));
    assert_eq!(calls[0].action, GENERATE_ACCESS_TOKEN);
    assert!(calls[0].ok());
    assert_eq!(calls[0].access_key_id.as_deref(), Some(OTHER_ID));
    assert_eq!(calls[0].security_token, None);

    // 3. --profile chain (ChainableRamRoleArn over ops).
    let before = rig.fake.calls().len();
    let mut bridge = rig.spawn("INTL", &["--profile", "chain"], &[]);
    bridge.initialize().await;
    bridge.finish().await;
    let calls = rig.fake.calls()[before..].to_vec();
    assert_eq!(calls.len(), 3, "{}", describe(&calls));
    assert!(calls.iter().all(Call::ok), "{}", describe(&calls));
    let first = calls[0].sts.clone().unwrap();
    assert_eq!(
        (calls[0].action.as_str(), calls[0].param("RoleArn")),
        (ASSUME_ROLE, Some(ROLE_ARN))
    );
    assert_eq!(calls[0].access_key_id.as_deref(), Some(ROLE_SRC_ID));
    assert_eq!(
        (calls[1].action.as_str(), calls[1].param("RoleArn")),
        (ASSUME_ROLE, Some(CHAINED_ROLE_ARN))
    );
    assert_eq!(
        calls[1].access_key_id.as_deref(),
        Some(first.access_key_id.as_str())
    );
    assert_eq!(
        calls[1].security_token.as_deref(),
        Some(first.security_token.as_str())
    );
    let second = calls[1].sts.clone().unwrap();
    assert_eq!(calls[2].action, GENERATE_ACCESS_TOKEN);
    assert_eq!(
        calls[2].access_key_id.as_deref(),
        Some(second.access_key_id.as_str())
    );
    assert!(rig.server.unauthorized().is_empty());
}

/// The SDKs' shared credentials file (`~/.alibabacloud/credentials`, section from
/// `ALIBABA_CLOUD_PROFILE`) is used when there is no environment key and no CLI config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_credentials_file_is_used() {
    let rig = Rig::start("ini").await;
    rig.fake.add_access_key(OTHER_ID, OTHER_SECRET);
    rig.home.write(
        ".alibabacloud/credentials",
        &format!(
            "[default]\ntype = access_key\naccess_key_id = LTAI5tWrongSection000000\n\
             access_key_secret = nope\n\n[work]\ntype = access_key\n\
             access_key_id = {OTHER_ID}\naccess_key_secret = {OTHER_SECRET}\n"
        ),
    );
    let mut bridge = rig.spawn("CN", &[], &[("ALIBABA_CLOUD_PROFILE", "work")]);
    bridge.initialize().await;
    let stderr = bridge.finish().await.stderr;
    assert!(auth_line(&stderr).contains("[work]"), "{stderr}");
    let calls = rig.fake.calls();
    assert_eq!(calls.len(), 1, "{}", describe(&calls));
    assert!(calls[0].ok());
    assert_eq!(calls[0].access_key_id.as_deref(), Some(OTHER_ID));
}

/// A wrong AccessKey secret: the service says SignatureDoesNotMatch; the request gets a
/// JSON-RPC error of kind `auth` naming the code, the RequestId and the secret to check, and
/// the bridge keeps running (the next request gets its own answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_is_an_auth_error_naming_the_cause() {
    let rig = Rig::start("wrong-secret").await;
    rig.fake.add_access_key(AK_ID, AK_SECRET);
    let wrong = "notTheSecret-Zz9Yy8Xx7Ww6Vv5Uu4";
    let mut bridge = rig.spawn("CN", &[], &env_keys(AK_ID, wrong));
    bridge.request(0, "initialize", init_params()).await;
    let message = auth_error(&bridge.response(0).await);
    let calls = rig.fake.calls();
    assert_eq!(calls.len(), 1, "{}", describe(&calls));
    assert_eq!(calls[0].code.as_deref(), Some("SignatureDoesNotMatch"));
    assert_eq!(calls[0].status, 400);
    assert!(message.contains("SignatureDoesNotMatch"), "{message}");
    assert!(
        message.contains(&calls[0].request_id),
        "names the RequestId: {message}"
    );
    assert!(
        message.contains("secret") && message.contains("ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
        "says which secret to check: {message}"
    );
    assert!(!message.contains(wrong), "{message}");

    bridge.request(1, "ping", json!({})).await;
    auth_error(&bridge.response(1).await);
    bridge.finish().await;
    assert!(
        rig.server.requests().is_empty(),
        "nothing was sent upstream without a token"
    );
}

/// Temporary keys (`ALIBABA_CLOUD_SECURITY_TOKEN`) with a wrong secret: the error the client
/// sees names SignatureDoesNotMatch but never contains the security token, although the
/// service's message echoes its string to sign (which includes `SecurityToken`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_token_never_reaches_the_client_in_errors() {
    let rig = Rig::start("sts-error").await;
    let sts = rig.fake.mint_sts(ROLE_ARN, Duration::from_secs(3600));
    let env = [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", sts.access_key_id.as_str()),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "notTheStsSecret"),
        ("ALIBABA_CLOUD_SECURITY_TOKEN", sts.security_token.as_str()),
    ];
    let mut bridge = rig.spawn("CN", &[], &env);
    bridge.request(0, "initialize", init_params()).await;
    let message = auth_error(&bridge.response(0).await);
    let stderr = bridge.finish().await.stderr;
    let calls = rig.fake.calls();
    assert_eq!(calls[0].code.as_deref(), Some("SignatureDoesNotMatch"));
    assert_eq!(
        calls[0].security_token.as_deref(),
        Some(sts.security_token.as_str())
    );
    assert!(message.contains("SignatureDoesNotMatch"), "{message}");
    let secrets = [sts.security_token.clone(), sts.access_key_secret.clone()];
    assert_no_secrets("the JSON-RPC error", &message, &secrets);
    assert_no_secrets("stderr", &stderr, &secrets);
}

/// A RAM identity without AliyunOpenAPIMCPServerStaticCredentialAccess (403): the error says
/// which policy to attach and to run `alibridge pre-check`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_permission_names_the_policy_and_pre_check() {
    let rig = Rig::start("forbidden").await;
    rig.fake.add_access_key_without_permission(AK_ID, AK_SECRET);
    let mut bridge = rig.spawn("INTL", &[], &env_keys(AK_ID, AK_SECRET));
    bridge.request(0, "initialize", init_params()).await;
    let message = auth_error(&bridge.response(0).await);
    bridge.finish().await;
    let calls = rig.fake.calls();
    assert_eq!(
        (calls[0].status, calls[0].code.as_deref()),
        (403, Some("Forbidden.RAM"))
    );
    assert!(message.contains(MINT_POLICY), "{message}");
    assert!(message.contains("alibridge pre-check"), "{message}");
    assert!(message.contains(&calls[0].request_id), "{message}");
}

/// `--boundary-policy`: a Deny-only policy is sent verbatim as `Policy` (and signed: spaces,
/// `*`, `:` and quotes survive the encoding); an Allow statement is refused with exit 2 before
/// any network call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boundary_policy_is_sent_verbatim_or_refused_up_front() {
    let rig = Rig::start("policy").await;
    rig.fake.add_access_key(AK_ID, AK_SECRET);
    let policy = r#"{"Version": "1", "Statement": [{"Effect": "Deny", "Action": ["ram:*", "ecs:Delete*"], "Resource": "*"}]}"#;
    let mut bridge = rig.spawn(
        "CN",
        &["--boundary-policy", policy],
        &env_keys(AK_ID, AK_SECRET),
    );
    bridge.initialize().await;
    bridge.finish().await;
    let calls = rig.fake.calls();
    assert_eq!(calls.len(), 1, "{}", describe(&calls));
    assert!(calls[0].ok(), "{}", describe(&calls));
    assert_eq!(calls[0].policy.as_deref(), Some(policy));

    let fake = AliyunFake::start().await;
    fake.add_access_key(AK_ID, AK_SECRET);
    let server =
        TestServer::start_with(ServerOptions::requiring_bearer(fake.token_checker())).await;
    let allow = r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
    let args = [
        server.url(),
        "--auth".into(),
        "ak".into(),
        "--site-type".into(),
        "CN".into(),
        "--ims-endpoint".into(),
        fake.url(),
        "--boundary-policy".into(),
        allow.into(),
    ];
    let bridge = Bridge::spawn_isolated(args, env_keys(AK_ID, AK_SECRET), rig.home.path());
    let (code, stderr) = bridge.exited().await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--boundary-policy") && stderr.contains("Deny"),
        "{stderr}"
    );
    assert!(fake.calls().is_empty(), "no call to the token service");
    assert!(server.requests().is_empty(), "no call upstream");
}

/// `--auth ak` with no keys anywhere exits 2 and lists every place it looked, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_keys_anywhere_exits_2_listing_every_place() {
    let rig = Rig::start("nokeys").await;
    let (code, stderr) = rig.spawn("CN", &[], &[]).exited().await;
    assert_eq!(code, 2, "{stderr}");
    let home = rig.home.path().to_string_lossy().into_owned();
    let places = [
        "ALIBABA_CLOUD_ACCESS_KEY_ID".to_string(),
        "OIDC".into(),
        format!("{home}/.aliyun/config.json"),
        format!("{home}/.alibabacloud/credentials"),
        "credentials.ini".into(),
        "ALIBABA_CLOUD_CREDENTIALS_URI".into(),
        "ECS".into(),
    ];
    let mut last = 0;
    for place in &places {
        let at = stderr[last..]
            .find(place.as_str())
            .unwrap_or_else(|| panic!("{place} missing (or out of order) in:\n{stderr}"));
        last += at;
    }
    assert!(
        stderr.contains("aliyun configure"),
        "says what to do: {stderr}"
    );
    assert!(rig.fake.calls().is_empty() && rig.server.requests().is_empty());
}

/// A profile in a mode alibridge cannot use (CloudSSO) exits 2 naming the mode, the supported
/// modes and the alternatives (another profile, an AK profile, environment variables).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_profile_mode_exits_2_naming_alternatives() {
    let rig = Rig::start("sso").await;
    rig.home.cli_config(&json!({
        "current": "sso",
        "profiles": [{"name": "sso", "mode": "CloudSSO",
                      "cloud_sso_sign_in_url": "https://signin-cn.alibabacloudsso.com/x/login",
                      "cloud_sso_account_id": "1", "cloud_sso_access_config": "ac-1",
                      "region_id": "cn-hangzhou"}]
    }));
    let (code, stderr) = rig.spawn("CN", &[], &[]).exited().await;
    assert_eq!(code, 2, "{stderr}");
    for word in [
        "CloudSSO",
        "AK",
        "RamRoleArn",
        "--profile",
        "ALIBABA_CLOUD_ACCESS_KEY_ID",
    ] {
        assert!(stderr.contains(word), "{word} missing in:\n{stderr}");
    }
    assert!(rig.fake.calls().is_empty());
}

/// Drives a session through a proactive renewal and a revocation (401 → re-mint).
async fn renew_and_revoke(bridge: &mut Bridge, fake: &AliyunFake) {
    bridge.initialize().await;
    assert_eq!(
        tool_text(&bridge.call_tool(1, "echo", json!({"text": "1"})).await),
        "1"
    );
    let first = fake.minted_tokens().last().unwrap().clone();
    until("the first token expires", || !fake.is_valid_token(&first)).await;
    assert_eq!(
        tool_text(&bridge.call_tool(2, "echo", json!({"text": "2"})).await),
        "2"
    );
    fake.revoke_all_tokens();
    assert_eq!(
        tool_text(&bridge.call_tool(3, "echo", json!({"text": "3"})).await),
        "3"
    );
}

/// With `--debug`, neither stderr nor `--log-file` ever contains an AccessKey secret, an STS
/// secret or security token, or a minted bearer token, through env keys and a RAM role, a
/// proactive renewal and a 401 re-mint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_and_tokens_never_reach_the_logs() {
    let rig = Rig::start("leaks").await;
    rig.fake.add_access_key(AK_ID, AK_SECRET);
    rig.fake.add_access_key(ROLE_SRC_ID, ROLE_SRC_SECRET);
    // Renewal is due 1 s before expiry (3 s in), so the revocation 2.1 s after the renewal
    // hits a token the bridge still considers good.
    rig.fake.set_token_lifetime(Duration::from_secs(4));

    // Environment keys, debug logs on stderr.
    let mut bridge = rig.spawn(
        "CN",
        &["--debug", "--token-refresh-skew", "1"],
        &env_keys(AK_ID, AK_SECRET),
    );
    renew_and_revoke(&mut bridge, &rig.fake).await;
    let stderr_env = bridge.finish().await.stderr;

    // A RAM role from config.json, debug logs in a file.
    rig.home.cli_config(&json!({
        "current": "ops",
        "profiles": [{"name": "ops", "mode": "RamRoleArn", "access_key_id": ROLE_SRC_ID,
                      "access_key_secret": ROLE_SRC_SECRET, "ram_role_arn": ROLE_ARN,
                      "ram_session_name": "leaks", "sts_endpoint": rig.fake.url()}]
    }));
    let log = rig.home.path().join("bridge.log");
    let log_arg = log.to_string_lossy().into_owned();
    let mut bridge = rig.spawn(
        "CN",
        &[
            "--debug",
            "--log-file",
            &log_arg,
            "--token-refresh-skew",
            "1",
        ],
        &[],
    );
    renew_and_revoke(&mut bridge, &rig.fake).await;
    let stderr_role = bridge.finish().await.stderr;
    let logged = std::fs::read_to_string(&log).expect("log file written");

    let calls = rig.fake.calls();
    assert_eq!(rig.fake.mint_count(), 6, "{}", describe(&calls));
    assert!(!ok_calls(&calls, ASSUME_ROLE).is_empty());
    assert_eq!(rig.server.unauthorized().len(), 2, "one revocation per run");
    assert!(
        stderr_env.contains("DEBUG"),
        "debug logs went to stderr:\n{stderr_env}"
    );
    assert!(
        logged.contains("DEBUG"),
        "debug logs went to the file:\n{logged}"
    );
    let secrets = rig.fake.secrets();
    assert!(
        secrets.len() >= 2 + 6 + 2,
        "keys, tokens, STS secret and token"
    );
    for (what, text) in [
        ("stderr (env keys)", &stderr_env),
        ("stderr (RAM role)", &stderr_role),
        ("the log file", &logged),
    ] {
        assert_no_secrets(what, text, &secrets);
    }
}

/// OIDC from the environment (as on ACK/RRSA): an unsigned AssumeRoleWithOIDC carrying the
/// token file's content, then GenerateAccessToken signed with the STS keys it returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_environment_assumes_the_role_then_mints() {
    let rig = Rig::start("oidc").await;
    let oidc_token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2lnbmF0dXJl";
    rig.fake.add_oidc_token(oidc_token);
    let file = rig.home.write("oidc/token", &format!("{oidc_token}\n"));
    let file = file.to_string_lossy().into_owned();
    let sts = rig.fake.url();
    let env = [
        ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", file.as_str()),
        (
            "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
            "acs:ram::1234567890123456:oidc-provider/ack-rrsa",
        ),
        ("ALIBABA_CLOUD_ROLE_ARN", ROLE_ARN),
        ("ALIBABA_CLOUD_ROLE_SESSION_NAME", "oidc-e2e"),
        ("ALIBABA_CLOUD_STS_ENDPOINT", sts.as_str()),
    ];
    let mut bridge = rig.spawn("CN", &[], &env);
    bridge.initialize().await;
    bridge.finish().await;
    let calls = rig.fake.calls();
    assert_eq!(calls.len(), 2, "{}", describe(&calls));
    assert!(calls.iter().all(Call::ok), "{}", describe(&calls));
    let (assume, mint) = (&calls[0], &calls[1]);
    assert_eq!(assume.action, ASSUME_ROLE_WITH_OIDC);
    assert!(!assume.signed && assume.access_key_id.is_none());
    assert_eq!(assume.param("OIDCToken"), Some(oidc_token));
    assert_eq!(assume.param("RoleSessionName"), Some("oidc-e2e"));
    assert!(assume.form.iter().any(|f| f == "OIDCToken"));
    let issued = assume.sts.clone().unwrap();
    assert_eq!(
        mint.access_key_id.as_deref(),
        Some(issued.access_key_id.as_str())
    );
    assert_eq!(
        mint.security_token.as_deref(),
        Some(issued.security_token.as_str())
    );
}

/// `--auth auto` with environment keys keeps them from a host that is not the OpenAPI MCP
/// service's, even with `--site-type` (which picks the site, not the trust): no token is
/// minted, nothing carries an Authorization header, and the auth line says why. (The service's
/// own host does get them: `hostile::auto_uses_access_keys_for_the_openapi_mcp_host`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_mode_uses_keys_only_for_the_openapi_mcp_service() {
    let rig = Rig::start("auto").await;
    rig.fake.add_access_key(AK_ID, AK_SECRET);
    let fake_url = rig.fake.url();
    let open = TestServer::start().await;
    let url = open.url();
    for site in [Some("CN"), None] {
        let mut args = vec![
            url.as_str(),
            "--transport",
            "http-only",
            "--auth",
            "auto",
            "--ims-endpoint",
            fake_url.as_str(),
        ];
        if let Some(site) = site {
            args.extend(["--site-type", site]);
        }
        let mut bridge = Bridge::spawn_isolated(args, env_keys(AK_ID, AK_SECRET), rig.home.path());
        bridge.initialize().await;
        let resp = bridge.call_tool(1, "echo", json!({"text": "open"})).await;
        assert_eq!(tool_text(&resp), "open");
        let stderr = bridge.finish().await.stderr;
        let line = auth_line(&stderr);
        assert!(
            line.starts_with(
                "alibridge: auth: OAuth (auto: 127.0.0.1 is not an OpenAPI MCP endpoint"
            ),
            "{line}"
        );
    }
    assert_eq!(rig.fake.mint_count(), 0, "no token minted");
    assert!(open
        .requests()
        .iter()
        .all(|r| r.header("authorization").is_none()));
}

// ---------------------------------------------------------------------------------------------
// pre-check
