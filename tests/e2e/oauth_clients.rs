//! OAuth end to end (the rig and browser of `oauth`), the client's identity: preregistered
//! clients (public, `client_secret_basic`, `client_secret_post`), a dynamic registration the
//! authorization server forgot, and `login --no-browser` with a pasted redirect, then `status`
//! and `logout`. Unix only.
#![cfg(unix)]

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::support::net::{fixed_port, http_client_builder};
use crate::support::oauth_rig::{echo, Rig, CLIENT_ID, CLIENT_SECRET};
use crate::support::oauth_server::{AsOptions, ProtectedOptions, USER};

/// Runs a pre-registered confidential client (`--oauth-client-id`, secret from
/// ALIBRIDGE_OAUTH_CLIENT_SECRET, fixed `--callback-port`) against a server that accepts only
/// `method` at its token endpoint: a sign-in with one bridge, then (the access token revoked)
/// a refresh with a second one.
async fn preregistered_client(method: &str) {
    let rig = Rig::start_with(
        method,
        AsOptions {
            token_auth_methods: vec![method.to_string()],
            registration: false,
            ..AsOptions::default()
        },
        ProtectedOptions::default(),
    )
    .await;
    // The client is registered with its redirect URI up front, so the port must be known before
    // the bridge starts: one below the ephemeral range, which nothing else in the run can take.
    let port = fixed_port();
    rig.oauth.add_client(
        CLIENT_ID,
        Some(CLIENT_SECRET),
        &[format!("http://127.0.0.1:{port}/oauth/callback")],
    );
    let port_s = port.to_string();
    let args = [
        "--oauth-client-id",
        CLIENT_ID,
        "--callback-port",
        &port_s,
        "--debug",
    ];
    let env = [("ALIBRIDGE_OAUTH_CLIENT_SECRET", CLIENT_SECRET)];
    let mut b = rig.spawn(&args, &env);
    b.initialize().await;
    echo(&rig, &mut b, 1, "a").await;
    let mut stderr = b.finish().await.stderr;
    rig.oauth.revoke_access_tokens();
    let mut b = rig.spawn(&args, &env);
    b.initialize().await;
    echo(&rig, &mut b, 1, "b").await;
    stderr.push_str(&b.finish().await.stderr);

    assert!(
        rig.oauth.registrations().is_empty(),
        "no dynamic registration"
    );
    let auths = rig.oauth.authorizations();
    assert_eq!(auths.len(), 1, "{auths:#?}");
    assert_eq!(auths[0].param("client_id"), Some(CLIENT_ID));
    let tokens = rig.oauth.token_requests();
    let grants: Vec<&str> = tokens.iter().map(|t| t.grant_type.as_str()).collect();
    assert_eq!(
        grants,
        ["authorization_code", "refresh_token"],
        "{tokens:#?}"
    );
    for t in &tokens {
        assert!(t.ok(), "{t:#?}");
        assert_eq!(t.client_auth, method, "{t:#?}");
        assert_eq!(t.client_id.as_deref(), Some(CLIENT_ID));
    }
    for rec in rig.home.records() {
        let text = std::fs::read_to_string(rec).unwrap();
        assert!(
            !text.contains(CLIENT_SECRET),
            "the user's client secret is never stored:\n{text}"
        );
    }
    rig.assert_no_secrets(&stderr, "--debug stderr");
}

/// Pre-registered client, secret from the env, `client_secret_basic` on exchange and refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preregistered_client_with_client_secret_basic() {
    preregistered_client("client_secret_basic").await;
}

/// Pre-registered client, secret from the env, `client_secret_post` on exchange and refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preregistered_client_with_client_secret_post() {
    preregistered_client("client_secret_post").await;
}

/// The server forgot the registration (invalid_client): the bridge registers again and signs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgotten_client_registers_again() {
    let rig = Rig::start("forgot").await;
    rig.sign_in_once().await;
    rig.oauth.forget_clients();

    let mut b = rig.spawn(&[], &[]);
    b.initialize().await;
    echo(&rig, &mut b, 1, "new").await;
    let stderr = b.finish().await.stderr;

    let regs = rig.oauth.registrations();
    assert_eq!(regs.len(), 2, "registered again; stderr:\n{stderr}");
    assert_ne!(regs[0].client_id, regs[1].client_id);
    let auths = rig.oauth.authorizations();
    assert_eq!(auths.len(), 2, "{auths:#?}");
    assert_eq!(
        auths[1].param("client_id"),
        Some(regs[1].client_id.as_str())
    );
    assert_eq!(auths[1].outcome, "code");
}

/// Reads `child`'s stderr until a line holding the authorization URL; returns (URL, everything
/// read so far).
async fn read_authorize_url(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
) -> (String, String) {
    let mut seen = String::new();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no authorization URL on stderr:\n{seen}"))
            .expect("read stderr")
            .unwrap_or_else(|| panic!("stderr closed without an authorization URL:\n{seen}"));
        seen.push_str(&line);
        seen.push('\n');
        let t = line.trim();
        if t.starts_with("http") && t.contains("/authorize?") {
            return (t.to_string(), seen);
        }
    }
}

/// `login --no-browser` + pasted redirect; `status` shows it without tokens; `logout` clears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_no_browser_with_a_pasted_redirect_then_status_and_logout() {
    let rig = Rig::start("login").await;
    let url = rig.mcp.url();
    let mut cmd = rig.command_builder(&["login", &url, "--no-browser", "--token-store", "file"]);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn alibridge login");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (authorize, mut stderr) = read_authorize_url(&mut lines).await;
    assert!(authorize.starts_with(&format!("{}/authorize?", rig.oauth.issuer())));

    // The user's browser, on another machine: approve, and copy the address it ends on.
    let http = http_client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = http.get(&authorize).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 302);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(location.contains("code="), "{location}");
    // An address from another sign-in (another state) is refused; then the real one.
    let forged = format!(
        "{}?code=forged-code&state=forged-state",
        location.split('?').next().unwrap()
    );
    stdin
        .write_all(format!("{forged}\n{location}\n").as_bytes())
        .await
        .unwrap();
    stdin.flush().await.unwrap();

    let mut stdout = String::new();
    tokio::io::AsyncReadExt::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout)
        .await
        .unwrap();
    while let Ok(Some(line)) = lines.next_line().await {
        stderr.push_str(&line);
        stderr.push('\n');
    }
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("login exited")
        .unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "login; stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains(&format!("signed in to {url}")), "{stdout}");
    assert!(
        rig.browser.opened().is_empty(),
        "--no-browser opened nothing"
    );
    assert_eq!(rig.oauth.authorize_count(), 1);
    assert!(
        stderr.contains("state differs"),
        "the forged paste was refused:\n{stderr}"
    );
    let exchanges = rig.oauth.token_requests();
    assert_eq!(
        exchanges.len(),
        1,
        "only the real code was exchanged: {exchanges:#?}"
    );
    assert!(exchanges[0].ok());
    rig.assert_no_secrets(&stdout, "login stdout");
    rig.assert_no_secrets(&stderr, "login stderr");

    let (code, out, err) = rig.command(&["status"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&url), "status lists the server:\n{out}");
    assert!(out.contains(&rig.oauth.issuer()), "{out}");
    assert!(out.contains("expires in"), "{out}");
    assert!(out.contains("stored in: file"), "{out}");
    assert!(out.contains(USER), "status shows who signed in:\n{out}");
    rig.assert_no_secrets(&out, "status");

    let before = rig.mcp.requests().len();
    let mut b = rig.spawn(&[], &[]);
    b.initialize().await;
    echo(&rig, &mut b, 1, "l").await;
    b.finish().await;
    assert_eq!(
        rig.oauth.authorize_count(),
        1,
        "the bridge used the stored sign-in"
    );
    let later = &rig.mcp.requests()[before..];
    assert!(later.iter().all(|r| r.status != 401), "{later:#?}");

    let (code, out, err) = rig.command(&["logout", &url]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("signed out of {url}")), "{out}");
    assert!(rig.home.records().is_empty(), "the record is gone");
    let (code, out, _) = rig.command(&["status"]).await;
    assert_eq!(code, 0);
    assert!(!out.contains(&url), "status no longer lists it:\n{out}");
    let (code, out, _) = rig.command(&["logout", &url]).await;
    assert_eq!(code, 1, "nothing left to sign out of: {out}");
}
