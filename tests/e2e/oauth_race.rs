//! OAuth renewals coordinated by token generation (see `src/auth/oauth/renew.rs`): many calls,
//! streams and processes meeting one revocation produce one renewal, one browser tab, one code
//! exchanged, and never a second use of a rotating refresh token. Runs against the local
//! authorization server, whose refresh tokens rotate and whose reuse revokes the whole grant.
#![cfg(unix)]

use serde_json::{json, Value};

use crate::support::bridge::Bridge;
use crate::support::check::{auth_error, init_params, tool_text};
use crate::support::oauth_rig::{echo, Rig};
use crate::support::wait::until;

/// Sends `echo` calls with ids `first..first+n` without waiting, then asserts every one is
/// answered with its own text (answers arrive in any order).
async fn racing_calls(rig: &Rig, b: &mut Bridge, first: i64, n: i64) {
    for id in first..first + n {
        b.request(
            id,
            "tools/call",
            json!({"name": "echo", "arguments": {"text": format!("call {id}")}}),
        )
        .await;
    }
    let mut pending: std::collections::BTreeSet<i64> = (first..first + n).collect();
    while !pending.is_empty() {
        let next = tokio::time::timeout(std::time::Duration::from_secs(20), b.next()).await;
        let Ok(Some(msg)) = next else {
            let _ = b.child.start_kill();
            let front: Vec<String> = rig
                .mcp
                .requests()
                .iter()
                .map(|r| format!("{} {:?} {}", r.method, r.rpc_method, r.status))
                .collect();
            panic!(
                "no answer to {pending:?}; front saw: {front:#?}\nstderr:\n{}",
                b.stderr().await
            );
        };
        let Some(id) = msg["id"].as_i64().filter(|_| msg.get("method").is_none()) else {
            continue;
        };
        if pending.remove(&id) {
            assert_eq!(
                tool_text(&msg),
                format!("call {id}"),
                "answer to {id}: {msg}"
            );
        }
    }
}

/// Authorization-code exchanges and refreshes the server saw.
fn grants(rig: &Rig) -> (usize, usize) {
    (
        rig.oauth.token_count("authorization_code"),
        rig.oauth.token_count("refresh_token"),
    )
}

/// N calls in flight in one bridge meet one revocation of the grant: the first refused call
/// refreshes (refused), then signs in once; the others wait for it and retry with its token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_racing_one_revocation_in_one_bridge_open_one_browser() {
    let rig = Rig::start("race-one").await;
    rig.sign_in_once().await;
    let mut b = rig.spawn(&[], &[]);
    b.initialize().await;
    echo(&rig, &mut b, 1, "before").await;
    rig.oauth.revoke_refresh_tokens();

    racing_calls(&rig, &mut b, 10, 6).await;
    let stderr = b.finish().await.stderr;

    assert_eq!(
        rig.oauth.authorize_count(),
        2,
        "one new sign-in; stderr:\n{stderr}"
    );
    assert_eq!(rig.browser.opened().len(), 2, "one new browser tab");
    let (codes, refreshes) = grants(&rig);
    assert_eq!(codes, 2, "one code exchanged per sign-in");
    assert_eq!(refreshes, 1, "one refresh attempt for six refused calls");
    assert_eq!(
        rig.oauth.refresh_reuse_count(),
        0,
        "no refresh token used twice"
    );
    // One by the first sign-in, one before the revocation, six racing it.
    assert_eq!(
        rig.mcp.backend().calls("echo"),
        8,
        "every call ran exactly once"
    );
}

/// Three bridges with the stored sign-in of a fourth moment; the grant is revoked in the same
/// second as that sign-in (timestamps cannot tell them apart, generations can); all three call
/// at once: one new sign-in between them, every call answered once, no refresh token reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_bridges_racing_a_revocation_in_the_second_of_a_sign_in_open_one_browser() {
    let rig = Rig::start("race-three").await;
    let mut first = rig.spawn(&[], &[]);
    first.initialize().await; // signs in
    rig.oauth.revoke_refresh_tokens();
    let mut b2 = rig.spawn(&[], &[]);
    let mut b3 = rig.spawn(&[], &[]);
    tokio::join!(b2.initialize(), b3.initialize());
    assert_eq!(
        rig.oauth.authorize_count(),
        2,
        "the revoked grant needed one new sign-in"
    );

    rig.oauth.revoke_refresh_tokens();
    tokio::join!(
        racing_calls(&rig, &mut first, 1, 3),
        racing_calls(&rig, &mut b2, 1, 3),
        racing_calls(&rig, &mut b3, 1, 3)
    );
    for b in [first, b2, b3] {
        b.finish().await;
    }

    assert_eq!(rig.oauth.authorize_count(), 3, "one sign-in per revocation");
    assert_eq!(rig.browser.opened().len(), 3);
    assert_eq!(
        rig.oauth.refresh_reuse_count(),
        0,
        "no refresh token used twice"
    );
    assert_eq!(grants(&rig).0, 3, "one code exchanged per sign-in");
    assert_eq!(rig.mcp.backend().calls("echo"), 9);
}

/// The GET stream's reconnect meets the revocation first, and a POST meets it while that
/// renewal runs: one sign-in serves both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_stream_401_racing_a_post_401_opens_one_browser() {
    let rig = Rig::start("race-get").await;
    rig.sign_in_once().await;
    let gets = |status: u16| {
        rig.mcp
            .requests()
            .iter()
            .filter(|r| r.method == "GET" && r.status == status)
            .count()
    };
    let earlier = gets(200);
    let mut b = rig.spawn(&[], &[]);
    b.initialize().await;
    until("this bridge's GET stream is open", || gets(200) > earlier).await;

    rig.oauth.revoke_refresh_tokens();
    rig.mcp.cut_get_streams();
    until("the GET stream's reconnect is refused", || gets(401) > 0).await;
    racing_calls(&rig, &mut b, 1, 2).await;
    until("the GET stream is open again", || {
        let reqs = rig.mcp.requests();
        let refused = reqs
            .iter()
            .position(|r| r.method == "GET" && r.status == 401);
        refused.is_some_and(|i| {
            reqs[i..]
                .iter()
                .any(|r| r.method == "GET" && r.status == 200)
        })
    })
    .await;
    let stderr = b.finish().await.stderr;

    assert_eq!(
        rig.oauth.authorize_count(),
        2,
        "one new sign-in; stderr:\n{stderr}"
    );
    assert_eq!(rig.browser.opened().len(), 2);
    assert_eq!(grants(&rig).0, 2);
    assert_eq!(rig.oauth.refresh_reuse_count(), 0);
}

/// A refresh refused (grant revoked while no bridge ran) leads to exactly one new sign-in,
/// never a loop, and the rotating refresh token is never presented twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_refresh_leads_to_exactly_one_new_sign_in() {
    let rig = Rig::start("race-refused").await;
    rig.sign_in_once().await;
    rig.oauth.revoke_refresh_tokens();
    let mut b = rig.spawn(&[], &[]);
    b.initialize().await;
    racing_calls(&rig, &mut b, 1, 4).await;
    b.finish().await;
    assert_eq!(rig.oauth.authorize_count(), 2);
    let (codes, refreshes) = grants(&rig);
    assert_eq!(
        (codes, refreshes),
        (2, 1),
        "{:#?}",
        rig.oauth.token_requests()
    );
    assert_eq!(rig.oauth.refresh_reuse_count(), 0);
}

/// The grant revoked moments after a sign-in whose token the server never accepted: no
/// second browser tab, and the message says the grant was revoked and a new sign-in is
/// needed, not that the server misbehaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_revoked_right_after_a_sign_in_is_reported_as_such() {
    let rig = Rig::start("race-revoked-msg").await;
    rig.mcp.reject_all_tokens(true);
    let mut b = rig.spawn(&[], &[]);
    let init = init_params();
    b.request(0, "initialize", init.clone()).await;
    let first: Value = b.response(0).await;
    auth_error(&first);
    rig.oauth.revoke_refresh_tokens();
    b.request(1, "initialize", init).await;
    let msg = auth_error(&b.response(1).await);
    b.finish().await;
    assert!(
        msg.contains("revoked the grant") && msg.contains("new sign-in is needed"),
        "{msg}"
    );
    assert!(!msg.contains("issued moments ago"), "{msg}");
    assert_eq!(rig.oauth.authorize_count(), 1, "no second browser tab");
}
