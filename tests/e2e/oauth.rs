//! OAuth sign-in end to end: the real binary, isolated from the machine (`HOME` is a temp dir,
//! tokens in a file store, never the keychain), against the local authorization server and the
//! protected MCP server of `support/oauth_server`, brought together by the rig of
//! `support/oauth_rig.rs` (shared with every `oauth_*` suite). The browser is a `$BROWSER`
//! script that follows the authorization server's redirect to the bridge's loopback callback
//! with curl, as a user who approves at once; it logs every URL it is asked to open.
//! Unix only (a shell script is the browser; file modes are checked).
//!
//! Here: the first sign-in, stored and refreshed tokens, revocation, step-up, refusals,
//! discovery, and secrets kept out of the log. Client identity and the `login` / `status` /
//! `logout` commands: `oauth_clients`; bridges and requests at once, the callback port,
//! interrupted sign-ins: `oauth_concurrency`.
#![cfg(unix)]

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::check::{auth_error, init_params};
use crate::support::oauth_rig::{echo, Rig};
use crate::support::oauth_server::{AsOptions, ProtectedOptions};
use crate::support::wait::until;

/// 401 → discovery, registration, one PKCE browser sign-in, retry; 0600 record; nothing logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sign_in_through_the_browser() {
    use std::os::unix::fs::PermissionsExt;
    let rig = Rig::start("first").await;
    // `auto` (no --auth): not an Alibaba Cloud host, so OAuth.
    let mut b = rig.spawn_raw(&["--debug"], &[]);
    b.initialize().await;
    echo(&rig, &mut b, 1, "signed in").await;
    let stderr = b.finish().await.stderr;

    assert!(
        stderr.contains("alibridge: auth: OAuth (auto"),
        "the auth line names OAuth:\n{stderr}"
    );
    assert_eq!(rig.browser.opened().len(), 1, "one browser tab");
    let auths = rig.oauth.authorizations();
    assert_eq!(auths.len(), 1, "{auths:#?}");
    let a = &auths[0];
    assert_eq!(a.outcome, "code", "{a:#?}");
    assert_eq!(
        rig.browser.opened()[0].split('?').next(),
        Some(format!("{}/authorize", rig.oauth.issuer()).as_str())
    );
    assert_eq!(a.param("response_type"), Some("code"));
    assert_eq!(a.param("code_challenge_method"), Some("S256"));
    assert!(a.param("state").is_some_and(|s| s.len() >= 16), "{a:#?}");
    assert_eq!(a.param("resource"), Some(rig.mcp.url().as_str()));
    assert_eq!(a.param("scope"), Some("mcp:read"), "the challenge's scope");
    let redirect = a.param("redirect_uri").unwrap();
    assert!(
        redirect.starts_with("http://127.0.0.1:") && redirect.ends_with("/oauth/callback"),
        "{redirect}"
    );

    let regs = rig.oauth.registrations();
    assert_eq!(regs.len(), 1, "one dynamic registration");
    let reg = &regs[0].request;
    assert_eq!(reg["application_type"], "native", "{reg}");
    assert_eq!(reg["token_endpoint_auth_method"], "none", "{reg}");
    assert!(
        reg["redirect_uris"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u == redirect),
        "{reg}"
    );
    assert_eq!(a.param("client_id"), Some(regs[0].client_id.as_str()));

    let tokens = rig.oauth.token_requests();
    let codes: Vec<_> = tokens
        .iter()
        .filter(|t| t.grant_type == "authorization_code")
        .collect();
    assert_eq!(codes.len(), 1, "{tokens:#?}");
    assert!(codes[0].ok(), "{:?}", codes[0].error);
    assert_eq!(codes[0].client_auth, "none");
    assert_eq!(codes[0].param("resource"), Some(rig.mcp.url().as_str()));

    let front = rig.mcp.requests();
    assert_eq!(front[0].status, 401, "the first request had no token");
    assert!(front[0].bearer.is_none());
    assert!(
        front.iter().skip(1).all(|r| r.bearer.is_some()),
        "every later request carried the token: {front:#?}"
    );
    assert_eq!(rig.mcp.backend().calls("echo"), 1);

    let records = rig.home.records();
    assert_eq!(records.len(), 1, "one stored sign-in");
    let name = records[0]
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    assert!(
        name.split_once('-')
            .is_some_and(|(server, issuer)| hex(server, 24) && hex(issuer, 12)),
        "the record is named by the server and the issuer (no version in the path): {name}"
    );
    let mode = std::fs::metadata(&records[0]).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "record file mode {mode:o}");
    let dir_mode = std::fs::metadata(rig.home.store_dir())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o077, 0, "store directory mode {dir_mode:o}");
    let rec: Value = serde_json::from_slice(&std::fs::read(&records[0]).unwrap()).unwrap();
    assert_eq!(rec["server"], rig.mcp.url());
    assert_eq!(rec["issuer"], rig.oauth.issuer());
    rig.assert_no_secrets(&stderr, "--debug stderr");
}

/// A second bridge uses the stored sign-in: token on its first request, no browser, no authorize.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_sign_in_is_reused() {
    let rig = Rig::start("reuse").await;
    rig.sign_in_once().await;
    let before = rig.mcp.requests().len();

    let mut b = rig.spawn(&[], &[]);
    b.initialize().await;
    echo(&rig, &mut b, 1, "again").await;
    let stderr = b.finish().await.stderr;

    assert!(stderr.contains("using the stored sign-in"), "{stderr}");
    assert_eq!(rig.oauth.authorize_count(), 1, "no second authorization");
    assert_eq!(rig.oauth.registrations().len(), 1, "no second registration");
    assert_eq!(rig.browser.opened().len(), 1);
    let later = &rig.mcp.requests()[before..];
    assert!(
        later.iter().all(|r| r.bearer.is_some() && r.status != 401),
        "{later:#?}"
    );
}

/// A call after the session's token expired succeeds via the rotating refresh token; no authorize.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_access_token_is_refreshed_mid_session() {
    let rig = Rig::start_with(
        "expiry",
        AsOptions {
            access_token_lifetime: Duration::from_secs(4),
            ..AsOptions::default()
        },
        ProtectedOptions::default(),
    )
    .await;
    let mut b = rig.spawn(&[], &[]);
    b.initialize().await;
    echo(&rig, &mut b, 1, "one").await;
    let used = rig
        .mcp
        .requests()
        .iter()
        .rev()
        .find(|r| r.tool.as_deref() == Some("echo"))
        .and_then(|r| r.bearer.clone())
        .expect("the call carried a token");
    until("the token the call used has expired", || {
        !rig.oauth.is_valid_access_token(&used, None)
    })
    .await;
    echo(&rig, &mut b, 2, "two").await;
    let stderr = b.finish().await.stderr;

    assert_eq!(
        rig.oauth.authorize_count(),
        1,
        "no new sign-in; stderr:\n{stderr}"
    );
    let refreshes: Vec<_> = rig
        .oauth
        .token_requests()
        .into_iter()
        .filter(|t| t.grant_type == "refresh_token")
        .collect();
    assert!(!refreshes.is_empty(), "the token was refreshed");
    assert!(
        refreshes.iter().all(|t| t.ok()),
        "every refresh used the latest (rotated) refresh token: {:#?}",
        refreshes.iter().map(|t| &t.error).collect::<Vec<_>>()
    );
    assert!(refreshes
        .iter()
        .all(|t| t.param("resource") == Some(rig.mcp.url().as_str())));
    let call = rig
        .mcp
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.tool.as_deref() == Some("echo") && r.status == 200)
        .unwrap();
    assert_ne!(
        call.bearer.as_deref(),
        Some(used.as_str()),
        "a new token was used"
    );
}

/// A 50 s token (under the 60 s refresh margin) is reused by calls right after the sign-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_token_is_not_refreshed_on_every_request() {
    let rig = Rig::start_with(
        "short",
        AsOptions {
            access_token_lifetime: Duration::from_secs(50),
            ..AsOptions::default()
        },
        ProtectedOptions::default(),
    )
    .await;
    let mut b = rig.spawn(&[], &[]);
    b.initialize().await;
    for id in 1..=3 {
        echo(&rig, &mut b, id, "x").await;
    }
    b.finish().await;
    assert_eq!(
        rig.oauth.token_count("refresh_token"),
        0,
        "refreshes right after sign-in: {:#?}",
        rig.oauth.token_requests()
    );
}

/// A revoked refresh token (invalid_grant) leads to exactly one new sign-in, same client, no loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_refresh_token_leads_to_one_new_sign_in() {
    let rig = Rig::start("revoked").await;
    rig.sign_in_once().await;
    rig.oauth.revoke_refresh_tokens();

    let mut b = rig.spawn(&[], &[]);
    b.initialize().await;
    for id in 1..=3 {
        echo(&rig, &mut b, id, "ok").await;
    }
    let stderr = b.finish().await.stderr;

    assert_eq!(
        rig.oauth.authorize_count(),
        2,
        "exactly one new sign-in; stderr:\n{stderr}"
    );
    assert_eq!(rig.browser.opened().len(), 2);
    assert_eq!(
        rig.oauth.registrations().len(),
        1,
        "the client registration was kept"
    );
    let refused: Vec<_> = rig
        .oauth
        .token_requests()
        .into_iter()
        .filter(|t| t.grant_type == "refresh_token")
        .collect();
    assert_eq!(refused.len(), 1, "one refresh attempt: {refused:#?}");
    assert!(refused[0]
        .error
        .as_deref()
        .unwrap()
        .starts_with("invalid_grant"));
}

/// A server refusing every token gets one sign-in, then `auth` errors: never a loop of tabs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_refusing_every_token_never_causes_a_sign_in_loop() {
    let rig = Rig::start("loop").await;
    rig.mcp.reject_all_tokens(true);
    let mut b = rig.spawn(&[], &[]);
    let init = init_params();
    for id in 0..3 {
        b.request(id, "initialize", init.clone()).await;
        let resp = b.response(id).await;
        let msg = auth_error(&resp);
        assert!(!msg.is_empty());
    }
    b.finish().await;
    assert_eq!(rig.oauth.authorize_count(), 1, "one sign-in only");
    assert_eq!(rig.browser.opened().len(), 1, "one browser tab only");
}

/// 403 insufficient_scope → a second sign-in asking for the union of scopes → the call succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_scope_steps_up_with_the_union_of_scopes() {
    let rig = Rig::start_with(
        "stepup",
        AsOptions::default(),
        ProtectedOptions {
            step_up: Some(("count".into(), "mcp:admin".into())),
            ..ProtectedOptions::default()
        },
    )
    .await;
    let mut b = rig.spawn(&[], &[]);
    b.initialize().await;
    echo(&rig, &mut b, 1, "r").await;
    let resp = b.call_tool(2, "count", json!({})).await;
    assert!(resp.get("result").is_some(), "count after step-up: {resp}");
    echo(&rig, &mut b, 3, "s").await;
    let stderr = b.finish().await.stderr;

    let auths = rig.oauth.authorizations();
    assert_eq!(auths.len(), 2, "one step-up sign-in; stderr:\n{stderr}");
    let scopes = |i: usize| auths[i].scopes().into_iter().collect::<Vec<_>>();
    assert_eq!(scopes(0), ["mcp:read"]);
    assert_eq!(scopes(1), ["mcp:admin", "mcp:read"], "the union of scopes");
    assert_eq!(rig.mcp.answered(403), 1, "one insufficient_scope answer");
    assert_eq!(rig.mcp.backend().calls("count"), 1);
}

/// `?error=access_denied` → a clear `auth` error; the bridge keeps running and signs in later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_is_a_clear_error_and_the_bridge_keeps_running() {
    let rig = Rig::start("denied").await;
    rig.oauth.deny(true);
    let mut b = rig.spawn(&[], &[]);
    let init = init_params();
    b.request(0, "initialize", init.clone()).await;
    let msg = auth_error(&b.response(0).await);
    assert!(msg.contains("access_denied"), "{msg}");
    assert!(msg.contains("refused") || msg.contains("denied"), "{msg}");
    assert_eq!(rig.oauth.authorize_count(), 1, "no retry loop");

    rig.oauth.deny(false);
    b.request(1, "initialize", init).await;
    let resp = b.response(1).await;
    assert!(resp.get("result").is_some(), "{resp}");
    b.notify("notifications/initialized", json!({})).await;
    echo(&rig, &mut b, 2, "yes").await;
    b.finish().await;
    assert_eq!(rig.oauth.authorize_count(), 2);
}

/// No `resource_metadata` in the challenge, issuer with a path: well-known discovery signs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_through_well_known_urls_and_an_issuer_path() {
    let rig = Rig::start_with(
        "wellknown",
        AsOptions {
            issuer_path: "/tenant1".into(),
            ..AsOptions::default()
        },
        ProtectedOptions {
            resource_metadata_in_challenge: false,
            ..ProtectedOptions::default()
        },
    )
    .await;
    let mut b = rig.spawn(&[], &[]);
    b.initialize().await;
    echo(&rig, &mut b, 1, "w").await;
    b.finish().await;
    let auths = rig.oauth.authorizations();
    assert_eq!(auths.len(), 1);
    assert_eq!(auths[0].outcome, "code");
    assert!(rig.oauth.issuer().ends_with("/tenant1"));
}

/// `--debug` through sign-in, refresh and step-up: no token, code, verifier or secret on stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_output_contains_no_secrets() {
    let rig = Rig::start_with(
        "debug",
        AsOptions::default(),
        ProtectedOptions {
            step_up: Some(("count".into(), "mcp:admin".into())),
            ..ProtectedOptions::default()
        },
    )
    .await;
    let mut b = rig.spawn(&["--debug"], &[]);
    b.initialize().await;
    echo(&rig, &mut b, 1, "d").await;
    let mut stderr = b.finish().await.stderr;
    rig.oauth.revoke_access_tokens();
    let mut b = rig.spawn(&["--debug"], &[]);
    b.initialize().await;
    let resp = b.call_tool(1, "count", json!({})).await;
    assert!(resp.get("result").is_some(), "{resp}");
    stderr.push_str(&b.finish().await.stderr);

    assert!(stderr.contains("DEBUG"), "--debug logged:\n{stderr}");
    assert_eq!(
        rig.oauth.token_count("authorization_code"),
        2,
        "sign-in and step-up"
    );
    assert_eq!(rig.oauth.token_count("refresh_token"), 1);
    rig.assert_no_secrets(&stderr, "--debug stderr");
}

/// An access token revoked right after the sign-in: the 401 is fixed by a silent refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_token_revoked_mid_session_is_refreshed() {
    let rig = Rig::start("revoked-at").await;
    let mut b = rig.spawn(&[], &[]);
    b.initialize().await;
    echo(&rig, &mut b, 1, "before").await;
    rig.oauth.revoke_access_tokens();
    echo(&rig, &mut b, 2, "after").await;
    b.finish().await;
    assert_eq!(rig.oauth.authorize_count(), 1, "no second sign-in");
    assert_eq!(
        rig.oauth.token_count("refresh_token"),
        1,
        "{:#?}",
        rig.oauth.token_requests()
    );
}
