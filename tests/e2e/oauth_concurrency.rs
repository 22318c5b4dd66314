//! OAuth end to end (the rig and browser of `oauth`), sign-ins and refreshes at once: bridges
//! started together share one sign-in, refresh with the refresh token once, two 401s in one
//! bridge start one sign-in; the loopback callback port (busy, stable, its neighbours); a
//! sign-in interrupted by closing stdin or killing the bridge. Unix only.
#![cfg(unix)]

use serde_json::json;

use crate::support::check::{auth_error, init_params, tool_text};
use crate::support::net::LOOPBACK;
use crate::support::oauth_rig::{echo, Rig};
use crate::support::wait::until;

/// Three bridges started at once, nothing stored: exactly one authorize request, all three work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_bridges_at_once_share_one_sign_in() {
    let rig = Rig::start("three").await;
    let mut b1 = rig.spawn(&[], &[]);
    let mut b2 = rig.spawn(&[], &[]);
    let mut b3 = rig.spawn(&[], &[]);
    tokio::join!(b1.initialize(), b2.initialize(), b3.initialize());
    for (i, b) in [&mut b1, &mut b2, &mut b3].into_iter().enumerate() {
        let text = format!("bridge {i}");
        assert_eq!(
            tool_text(&b.call_tool(1, "echo", json!({"text": text})).await),
            text
        );
    }
    for b in [b1, b2, b3] {
        b.finish().await;
    }
    assert_eq!(
        rig.oauth.authorize_count(),
        1,
        "{:#?}",
        rig.oauth.authorizations()
    );
    assert_eq!(rig.browser.opened().len(), 1, "one browser tab");
    assert_eq!(rig.oauth.registrations().len(), 1);
    assert_eq!(rig.mcp.backend().calls("echo"), 3);
}

/// A busy `--callback-port` → a clear `auth` error, no browser, no crash; works once it is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_callback_port_is_a_clear_error_not_a_crash() {
    let rig = Rig::start("busy").await;
    let holder = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = holder.local_addr().unwrap().port();
    let port_s = port.to_string();
    let mut b = rig.spawn(&["--callback-port", &port_s], &[]);
    let init = init_params();
    b.request(0, "initialize", init.clone()).await;
    let msg = auth_error(&b.response(0).await);
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    assert!(msg.contains("--callback-port"), "{msg}");
    assert_eq!(
        rig.oauth.authorize_count(),
        0,
        "no browser before the listener is bound"
    );
    assert!(rig.browser.opened().is_empty());
    assert!(
        b.child.try_wait().unwrap().is_none(),
        "the bridge is still running"
    );

    drop(holder);
    b.request(1, "initialize", init).await;
    let resp = b.response(1).await;
    assert!(resp.get("result").is_some(), "{resp}");
    b.finish().await;
    assert_eq!(rig.oauth.authorize_count(), 1);
}

/// Three bridges needing a refresh at once: the rotating refresh token is used once, no sign-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_bridges_refreshing_at_once_use_the_refresh_token_once() {
    let rig = Rig::start("three-refresh").await;
    rig.sign_in_once().await;
    rig.oauth.revoke_access_tokens();
    let mut b1 = rig.spawn(&[], &[]);
    let mut b2 = rig.spawn(&[], &[]);
    let mut b3 = rig.spawn(&[], &[]);
    tokio::join!(b1.initialize(), b2.initialize(), b3.initialize());
    echo(&rig, &mut b1, 1, "1").await;
    echo(&rig, &mut b2, 1, "2").await;
    echo(&rig, &mut b3, 1, "3").await;
    for b in [b1, b2, b3] {
        b.finish().await;
    }
    let refreshes: Vec<_> = rig
        .oauth
        .token_requests()
        .into_iter()
        .filter(|t| t.grant_type == "refresh_token")
        .collect();
    assert_eq!(
        refreshes.len(),
        1,
        "one refresh for three bridges: {refreshes:#?}"
    );
    assert!(refreshes[0].ok());
    assert_eq!(rig.oauth.authorize_count(), 1, "no new sign-in");
    assert_eq!(
        rig.oauth.refresh_reuse_count(),
        0,
        "no refresh token used twice"
    );
}

/// Two requests meeting a 401 at once in one bridge start one sign-in, not two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_401s_at_once_in_one_bridge_start_one_sign_in() {
    let rig = Rig::start("two401").await;
    let mut b = rig.spawn(&[], &[]);
    let init = init_params();
    b.request(0, "initialize", init).await;
    b.request(1, "ping", json!({})).await;
    let resp = b.response(0).await;
    assert!(resp.get("result").is_some(), "{resp}");
    b.response(1).await; // answered one way or another (no session yet)
    b.notify("notifications/initialized", json!({})).await;
    echo(&rig, &mut b, 2, "one").await;
    b.finish().await;
    assert_eq!(
        rig.oauth.authorize_count(),
        1,
        "{:#?}",
        rig.oauth.authorizations()
    );
    assert_eq!(rig.browser.opened().len(), 1);
}

/// The callback ports the bridge tries for `resource` without `--callback-port`: a stable port
/// derived from the server, and its two neighbours (mirrors `flow::candidate_ports`).
fn candidate_ports(resource: &str) -> [u16; 3] {
    let d = ring::digest::digest(&ring::digest::SHA256, resource.as_bytes());
    let n = u16::from_be_bytes([d.as_ref()[0], d.as_ref()[1]]);
    let base = 33_000 + n % 16_000;
    [base, base + 1, base + 2]
}

/// The stable callback port is busy: a registered neighbour port is used, no crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_stable_callback_port_falls_back_to_a_neighbour() {
    // The stable port derives from the server's URL, whose port is random: when someone else
    // holds it, another rig (another URL, another stable port) is started, never skipped.
    let mut taken = Vec::new();
    let (rig, ports, _holder) = loop {
        let rig = Rig::start("fallback").await;
        let ports = candidate_ports(&rig.mcp.url());
        match std::net::TcpListener::bind((LOOPBACK, ports[0])) {
            Ok(holder) => break (rig, ports, holder),
            Err(e) => taken.push(format!("{}: {e}", ports[0])),
        }
        assert!(taken.len() < 20, "no stable port could be held: {taken:?}");
    };
    let mut b = rig.spawn(&[], &[]);
    b.initialize().await;
    echo(&rig, &mut b, 1, "f").await;
    b.finish().await;
    let auths = rig.oauth.authorizations();
    assert_eq!(auths.len(), 1);
    let redirect = auths[0].param("redirect_uri").unwrap().to_string();
    assert_ne!(
        redirect,
        format!("http://127.0.0.1:{}/oauth/callback", ports[0]),
        "not the busy port"
    );
    assert!(
        ports[1..]
            .iter()
            .any(|p| redirect == format!("http://127.0.0.1:{p}/oauth/callback")),
        "{redirect} is one of {ports:?}"
    );
    let reg = &rig.oauth.registrations()[0].request;
    assert_eq!(reg["redirect_uris"].as_array().unwrap().len(), 3, "{reg}");
}

/// stdin closes during a sign-in: the request gets `shutdown`, exit 0, the next bridge signs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_stdin_during_a_sign_in_exits_cleanly() {
    let rig = Rig::start("stdin-close").await;
    let idle = rig.browser.idle.clone();
    let mut b = rig.spawn(&["--shutdown-grace", "1"], &[("BROWSER", idle.as_str())]);
    let init = init_params();
    b.request(0, "initialize", init).await;
    until("the browser was asked to open the sign-in", || {
        !rig.browser.opened().is_empty()
    })
    .await;
    b.close_stdin();
    let rest = b.drain().await;
    let answer = rest
        .iter()
        .find(|m| m["id"] == 0)
        .unwrap_or_else(|| panic!("initialize was not answered: {rest:?}"));
    assert_eq!(
        answer["error"]["data"]["alibridge"]["kind"], "shutdown",
        "{answer}"
    );
    assert_eq!(b.wait().await, 0);

    let mut b = rig.spawn(&[], &[]);
    b.initialize().await;
    echo(&rig, &mut b, 1, "next").await;
    b.finish().await;
}

/// A bridge killed mid-sign-in leaves no stale lock: the next bridge signs in at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_killed_during_a_sign_in_does_not_block_the_next() {
    let rig = Rig::start("killed").await;
    let idle = rig.browser.idle.clone();
    let mut first = rig.spawn(&[], &[("BROWSER", idle.as_str())]);
    let init = init_params();
    first.request(0, "initialize", init).await;
    until("the first bridge is waiting for the browser", || {
        !rig.browser.opened().is_empty()
    })
    .await;
    first.child.start_kill().unwrap();
    first.child.wait().await.unwrap();

    let mut b = rig.spawn(&[], &[]);
    b.initialize().await;
    echo(&rig, &mut b, 1, "after").await;
    b.finish().await;
    assert_eq!(rig.browser.opened().len(), 2);
    assert_eq!(
        rig.oauth.authorize_count(),
        1,
        "only the second browser visited the page"
    );
}
