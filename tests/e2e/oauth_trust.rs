//! OAuth trust boundaries (issue "trust boundaries", item 4): a sign-in answer from another
//! issuer is never exchanged (RFC 9207 `iss`), resource metadata must name this server
//! (RFC 9728), and a server that moves to another authorization server never receives the old
//! one's refresh token. The second authorization server listens on `127.0.0.2`, another host
//! as far as the bridge can tell, and records every secret that reaches it.
#![cfg(unix)]

use serde_json::json;

use crate::support::check::{auth_error, init_params};
use crate::support::oauth_rig::{echo, Rig};
use crate::support::oauth_server::{AsOptions, CallbackIss, OAuthServer, ProtectedOptions};

/// Starts a rig whose authorization server behaves as `a` says.
async fn rig_with(tag: &str, a: AsOptions) -> Rig {
    Rig::start_with(tag, a, ProtectedOptions::default()).await
}

/// Initializes a bridge that must sign in, and returns the message of the `auth` error it
/// answers with.
async fn failed_sign_in(rig: &Rig) -> String {
    let mut b = rig.spawn(&[], &[]);
    let init = init_params();
    b.request(0, "initialize", init).await;
    let msg = auth_error(&b.response(0).await);
    b.finish().await;
    msg
}

/// A sign-in answer that names another issuer (a mix-up attack): the code is not exchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_naming_another_issuer_is_never_exchanged() {
    let rig = rig_with(
        "iss-other",
        AsOptions {
            callback_iss: CallbackIss::Other("http://127.0.0.2:9/evil".into()),
            ..AsOptions::default()
        },
    )
    .await;
    let msg = failed_sign_in(&rig).await;
    assert!(
        msg.contains("http://127.0.0.2:9/evil") && msg.contains(&rig.oauth.issuer()),
        "names both issuers: {msg}"
    );
    assert!(msg.contains("not used"), "{msg}");
    assert_eq!(rig.oauth.authorize_count(), 1);
    assert_eq!(
        rig.oauth.token_count("authorization_code"),
        0,
        "no code exchanged"
    );
}

/// A server that promises `iss` (metadata) and leaves it out: refused; one that does not
/// promise it may leave it out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_iss_is_refused_only_when_the_server_promised_it() {
    let promised = rig_with(
        "iss-missing",
        AsOptions {
            callback_iss: CallbackIss::Omitted,
            ..AsOptions::default()
        },
    )
    .await;
    let msg = failed_sign_in(&promised).await;
    assert!(msg.contains("RFC 9207"), "{msg}");
    assert_eq!(promised.oauth.token_count("authorization_code"), 0);

    let unpromised = rig_with(
        "iss-unpromised",
        AsOptions {
            callback_iss: CallbackIss::Omitted,
            advertise_iss: false,
            ..AsOptions::default()
        },
    )
    .await;
    let mut b = unpromised.spawn(&[], &[]);
    b.initialize().await;
    echo(&unpromised, &mut b, 1, "fine").await;
    b.finish().await;
    assert_eq!(unpromised.oauth.token_count("authorization_code"), 1);
}

/// Resource metadata that names another resource, or none: refused before any sign-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_metadata_for_another_resource_is_refused() {
    let rig = Rig::start("prm-other").await;
    rig.mcp
        .set_metadata_resource(json!("http://127.0.0.2:9/mcp"));
    let msg = failed_sign_in(&rig).await;
    assert!(msg.contains("does not match"), "{msg}");
    assert_eq!(rig.oauth.authorize_count(), 0, "no sign-in started");

    let rig = Rig::start("prm-none").await;
    rig.mcp.set_metadata_resource(serde_json::Value::Null);
    let msg = failed_sign_in(&rig).await;
    assert!(msg.contains("no `resource`"), "{msg}");
    assert_eq!(rig.oauth.authorize_count(), 0, "no sign-in started");
}

/// The server moves to another authorization server (on 127.0.0.2): the stored sign-in's
/// refresh token stays with its issuer; the bridge signs in with the new one and keeps both
/// sign-ins apart in the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_moves_to_another_authorization_server_never_gets_the_old_refresh_token() {
    let rig = Rig::start("as-switch").await;
    rig.sign_in_once().await;
    let old_refresh_tokens = rig.oauth.refresh_tokens();
    assert!(!old_refresh_tokens.is_empty());

    let other = OAuthServer::start_with(AsOptions {
        bind: std::net::Ipv4Addr::new(127, 0, 0, 2).into(),
        ..AsOptions::default()
    })
    .await;
    rig.mcp.switch_authorization_server(&other);

    let mut b = rig.spawn(&[], &[]);
    b.initialize().await;
    echo(&rig, &mut b, 1, "moved").await;
    b.finish().await;

    let seen_by_other = other.secrets();
    for rt in &old_refresh_tokens {
        assert!(
            !seen_by_other.contains(rt),
            "the old issuer's refresh token reached the new authorization server"
        );
    }
    assert_eq!(
        other.token_count("refresh_token"),
        0,
        "nothing to refresh at the new server"
    );
    assert_eq!(
        other.authorize_count(),
        1,
        "one sign-in with the new server"
    );
    assert_eq!(
        rig.oauth.token_count("refresh_token"),
        0,
        "nor at the old one"
    );
    assert_eq!(rig.home.records().len(), 2, "one sign-in per issuer");
}
