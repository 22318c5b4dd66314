//! `--auth ak`: the life of a token in a live session (the rig and keys of `access_key.rs`):
//! renewed before it expires, re-minted once after a revocation (concurrent rejections share
//! one new token), STS keys from a RAM role reused while fresh then renewed, and a credentials
//! file rewritten mid-session used for the next token. Never a 401
//! the client sees, never a call run twice.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::access_key::{
    describe, ok_calls, Rig, AK_ID, AK_SECRET, OTHER_ID, OTHER_SECRET, ROLE_ARN, ROLE_SRC_ID,
    ROLE_SRC_SECRET,
};
use crate::support::ak_rig::env_keys;
use crate::support::aliyun_fake::{Call, GENERATE_ACCESS_TOKEN};
use crate::support::bridge::Bridge;
use crate::support::check::tool_text;
use crate::support::wait::until;

/// A token that expires during a live session is replaced before it expires, and the live
/// session simply carries the new one: with a 4 s lifetime and `--token-refresh-skew 2`, a call
/// once the token is inside the skew already carries a new token, a call after that one has
/// expired carries a third; the upstream never had to answer 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_is_renewed_before_it_expires_without_a_401() {
    let rig = Rig::start("expiry").await;
    rig.fake.add_access_key(AK_ID, AK_SECRET);
    rig.fake.set_token_lifetime(Duration::from_secs(4));
    let mut bridge = rig.spawn(
        "CN",
        &["--token-refresh-skew", "2"],
        &env_keys(AK_ID, AK_SECRET),
    );
    bridge.initialize().await;
    assert_eq!(
        tool_text(&bridge.call_tool(1, "echo", json!({"text": "1"})).await),
        "1"
    );
    // Inside the skew, before expiry: the bridge renews.
    let first = rig.fake.minted_tokens().last().unwrap().clone();
    let expiry = rig.fake.token_expiry(&first).unwrap();
    // Half a second into the 2 s skew: the bridge counts the lifetime from when it received
    // the token, a little after the fake minted it.
    until("the first token is well inside the refresh skew", || {
        SystemTime::now() + Duration::from_millis(1500) >= expiry
    })
    .await;
    assert_eq!(
        tool_text(&bridge.call_tool(2, "echo", json!({"text": "2"})).await),
        "2"
    );
    // After the current token has expired at the service.
    let second = rig.fake.minted_tokens().last().unwrap().clone();
    until("the second token expires", || {
        !rig.fake.is_valid_token(&second)
    })
    .await;
    assert_eq!(
        tool_text(&bridge.call_tool(3, "echo", json!({"text": "3"})).await),
        "3"
    );
    bridge.finish().await;

    let tokens = rig.fake.minted_tokens();
    assert_eq!(tokens.len(), 3, "{}", describe(&rig.fake.calls()));
    for (id, token) in [(1, &tokens[0]), (2, &tokens[1]), (3, &tokens[2])] {
        let posts = rig.tool_posts(id);
        assert_eq!(posts.len(), 1, "call {id} sent once");
        assert_eq!(posts[0].bearer(), Some(token.as_str()), "call {id}");
        assert_eq!(posts[0].status, Some(200), "call {id}");
    }
    assert!(
        rig.server.unauthorized().is_empty(),
        "renewals were proactive: no 401"
    );
    assert_eq!(rig.server.calls("echo"), 3);
}

/// A token the service revoked: the upstream answers 401, the bridge mints exactly once more
/// and re-sends that request once, which succeeds; the tool ran exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_token_is_reminted_once_and_the_call_runs_once() {
    let rig = Rig::start("revoke").await;
    rig.fake.add_access_key(AK_ID, AK_SECRET);
    let mut bridge = rig.spawn("CN", &[], &env_keys(AK_ID, AK_SECRET));
    bridge.initialize().await;
    assert_eq!(
        tool_text(&bridge.call_tool(1, "echo", json!({"text": "1"})).await),
        "1"
    );
    rig.fake.revoke_all_tokens();
    let resp = bridge.call_tool(2, "sleep", json!({"ms": 1})).await;
    assert_eq!(tool_text(&resp), "slept 1");
    bridge.finish().await;

    let tokens = rig.fake.minted_tokens();
    assert_eq!(tokens.len(), 2, "{}", describe(&rig.fake.calls()));
    let posts = rig.tool_posts(2);
    assert_eq!(posts.len(), 2, "the 401'd POST and its one retry");
    assert_eq!(posts[0].status, Some(401));
    assert_eq!(posts[0].bearer(), Some(tokens[0].as_str()));
    assert_eq!(posts[1].status, Some(200));
    assert_eq!(posts[1].bearer(), Some(tokens[1].as_str()));
    // One JSON-RPC message was refused (the GET stream may also meet the revoked token when it
    // reconnects under load; that is not a message and is not resent).
    let refused: Vec<_> = rig
        .server
        .unauthorized()
        .into_iter()
        .filter(|r| r.rpc_method.is_some())
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(rig.server.calls("sleep"), 1, "the tool ran exactly once");
}

/// A token revoked right after it was minted (here before the first tool call, well under
/// 2 s later) is re-minted on the 401 too: the retry must carry a new token, not the rejected one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_revoked_right_after_minting_is_reminted() {
    let rig = Rig::start("revoke-fresh").await;
    rig.fake.add_access_key(AK_ID, AK_SECRET);
    let mut bridge = rig.spawn("CN", &[], &env_keys(AK_ID, AK_SECRET));
    bridge.initialize().await;
    // The call waits for `notifications/initialized` (handshake order); revoke only once that
    // was accepted, so the call is the first request to meet the revocation.
    rig.server
        .wait_for_request(|r| {
            r.rpc_method.as_deref() == Some("notifications/initialized") && r.status == Some(202)
        })
        .await;
    rig.fake.revoke_all_tokens();
    let resp = bridge.call_tool(1, "sleep", json!({"ms": 1})).await;
    bridge.finish().await;
    let posts: Vec<_> = rig
        .tool_posts(1)
        .iter()
        .map(|p| (p.status, p.bearer().map(|t| t[t.len() - 8..].to_string())))
        .collect();
    assert!(
        resp.get("result").is_some(),
        "the call failed: {resp}\nPOSTs (status, token tail): {posts:?}\ncalls:\n{}",
        describe(&rig.fake.calls())
    );
    let tokens = rig.fake.minted_tokens();
    assert_eq!(tokens.len(), 2);
    let posts = rig.tool_posts(1);
    assert_eq!(posts.len(), 2, "the 401'd POST and its one retry");
    assert_eq!(posts[1].bearer(), Some(tokens[1].as_str()));
    assert_eq!(rig.server.calls("sleep"), 1);
}

/// Reads stdout until a response for each of `ids` arrived; returns them by id.
async fn responses(bridge: &mut Bridge, ids: &[i64]) -> BTreeMap<i64, Value> {
    let mut got = BTreeMap::new();
    while got.len() < ids.len() {
        let v = bridge.next().await.expect("stdout open");
        if let Some(id) = v
            .get("method")
            .is_none()
            .then(|| v["id"].as_i64())
            .flatten()
        {
            if ids.contains(&id) {
                got.insert(id, v);
            }
        }
    }
    got
}

/// Several requests in flight when the token is revoked: however many of them meet a 401,
/// exactly one new token is minted, every request succeeds, and each tool runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rejections_share_one_new_token() {
    let rig = Rig::start("revoke-many").await;
    rig.fake.add_access_key(AK_ID, AK_SECRET);
    let mut bridge = rig.spawn("CN", &[], &env_keys(AK_ID, AK_SECRET));
    bridge.initialize().await;
    rig.fake.revoke_all_tokens();
    let ids = [10, 11, 12, 13];
    for id in ids {
        let params = json!({"name": "echo", "arguments": {"text": id.to_string()}});
        bridge.request(id, "tools/call", params).await;
    }
    let got = responses(&mut bridge, &ids).await;
    bridge.finish().await;
    for id in ids {
        assert_eq!(tool_text(&got[&id]), id.to_string());
        assert_eq!(rig.tool_posts(id).last().and_then(|p| p.status), Some(200));
    }
    assert_eq!(
        rig.fake.mint_count(),
        2,
        "one new token for all of them: {}",
        describe(&rig.fake.calls())
    );
    assert!(!rig.server.unauthorized().is_empty());
    assert_eq!(rig.server.calls("echo"), 4, "each tool ran once");
}

/// STS keys from a RAM role are reused for later mints while they are fresh, and renewed (a
/// new AssumeRole) once fewer than the renewal margin remain (180 s; 1 s here through the test
/// knob), so an expired SecurityToken is never used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_keys_are_reused_then_renewed_before_they_expire() {
    let rig = Rig::start("sts-renew").await;
    rig.fake.add_access_key(ROLE_SRC_ID, ROLE_SRC_SECRET);
    rig.fake.set_token_lifetime(Duration::from_secs(3));
    // Fresh for ~6 s with a 1 s margin: the 1st and 2nd mints share the keys, the 3rd renews.
    rig.fake.set_sts_lifetime(Duration::from_secs(7));
    rig.home.cli_config(&json!({
        "current": "ops",
        "profiles": [{"name": "ops", "mode": "RamRoleArn", "access_key_id": ROLE_SRC_ID,
                      "access_key_secret": ROLE_SRC_SECRET, "ram_role_arn": ROLE_ARN,
                      "ram_session_name": "renew", "sts_endpoint": rig.fake.url()}]
    }));
    let mut bridge = rig.spawn(
        "CN",
        &["--token-refresh-skew", "1"],
        &[("ALIBRIDGE_TEST_STS_RENEW_MARGIN", "1")],
    );
    bridge.initialize().await;
    for id in [1, 2] {
        let last = rig.fake.minted_tokens().last().unwrap().clone();
        until("the token expires", || !rig.fake.is_valid_token(&last)).await;
        let resp = bridge.call_tool(id, "echo", json!({"text": "x"})).await;
        assert_eq!(tool_text(&resp), "x");
    }
    bridge.finish().await;
    let calls = rig.fake.calls();
    assert!(calls.iter().all(Call::ok), "{}", describe(&calls));
    let sts = rig.fake.issued_sts();
    let mints = ok_calls(&calls, GENERATE_ACCESS_TOKEN);
    assert_eq!((sts.len(), mints.len()), (2, 3), "{}", describe(&calls));
    let signer = |i: usize| mints[i].access_key_id.clone().unwrap();
    assert_eq!(signer(0), sts[0].access_key_id);
    assert_eq!(signer(1), sts[0].access_key_id, "reused while fresh");
    assert_eq!(signer(2), sts[1].access_key_id, "renewed near expiry");
    assert!(rig.server.unauthorized().is_empty());
}

/// `aliyun configure` during a session: after config.json is rewritten with another AK
/// profile, the next request carries a token minted with the new key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_credentials_file_is_used_for_the_next_token() {
    let rig = Rig::start("reload").await;
    rig.fake.add_access_key(AK_ID, AK_SECRET);
    rig.fake.add_access_key(OTHER_ID, OTHER_SECRET);
    rig.home.cli_config(&json!({
        "current": "first",
        "profiles": [{"name": "first", "mode": "AK", "access_key_id": AK_ID,
                      "access_key_secret": AK_SECRET, "region_id": "cn-hangzhou"}]
    }));
    let mut bridge = rig.spawn("CN", &[], &[("ALIBRIDGE_TEST_FILE_CHECK_MS", "0")]);
    bridge.initialize().await;
    assert_eq!(
        tool_text(&bridge.call_tool(1, "echo", json!({"text": "1"})).await),
        "1"
    );
    rig.home.cli_config(&json!({
        "current": "second",
        "profiles": [
            {"name": "first", "mode": "AK", "access_key_id": AK_ID,
             "access_key_secret": AK_SECRET, "region_id": "cn-hangzhou"},
            {"name": "second", "mode": "AK", "access_key_id": OTHER_ID,
             "access_key_secret": OTHER_SECRET, "region_id": "cn-hangzhou"}
        ]
    }));
    // The files are looked at on every request here (the test knob; else once a second): the
    // next call notices the change.
    assert_eq!(
        tool_text(&bridge.call_tool(2, "echo", json!({"text": "2"})).await),
        "2"
    );
    bridge.finish().await;

    let mints = rig.fake.calls_of(GENERATE_ACCESS_TOKEN);
    assert_eq!(mints.len(), 2, "{}", describe(&rig.fake.calls()));
    assert_eq!(mints[0].access_key_id.as_deref(), Some(AK_ID));
    assert_eq!(mints[1].access_key_id.as_deref(), Some(OTHER_ID));
    let first = rig.tool_posts(1);
    let second = rig.tool_posts(2);
    assert_eq!(
        first[0].bearer().and_then(|t| rig.fake.token_key(t)),
        Some(AK_ID.into())
    );
    assert_eq!(second.len(), 1);
    assert_eq!(
        second[0].bearer().and_then(|t| rig.fake.token_key(t)),
        Some(OTHER_ID.into())
    );
    assert!(rig.server.unauthorized().is_empty());
}
