//! `alibridge doctor` against the local fakes (the Alibaba fake and the rmcp server requiring
//! its tokens): all green; upstream down; wrong secret; application not authorized; missing
//! permission; a skewed clock (a server with a fake `Date` header); a client config pointing
//! at a missing binary. Output never holds a secret; exit 0 only when every check passes.

use bytes::Bytes;
use http_body_util::Full;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::support::ak_rig::{env_keys, AkRig};
use crate::support::aliyun_fake::{ClientStatus, CN_CLIENT_ID};
use crate::support::bridge::{isolated_command, output};
use crate::support::home::TempHome;

use crate::support::net::{listen, serve, ClosedPort, LOOPBACK};

const AK_ID: &str = "LTAI5tDoctorKey000000001";
const AK_SECRET: &str = "doctorSecret-Q3v9Lk2Xw8Rt5Yp1Zn7Mb4Hc";

type Rig = AkRig;

impl AkRig {
    /// `doctor <url> [--json] -- <flags pointing at the fake>` with AccessKeys in the env.
    async fn doctor(&self, url: &str, json: bool, secret: &str) -> (i32, String, String) {
        self.doctor_with(url, json, secret, &[]).await
    }

    /// [`Rig::doctor`] with more bridge flags.
    async fn doctor_with(
        &self,
        url: &str,
        json: bool,
        secret: &str,
        extra: &[&str],
    ) -> (i32, String, String) {
        let mut cmd = isolated_command(self.home.path());
        cmd.arg("doctor").arg(url);
        if json {
            cmd.arg("--json");
        }
        cmd.arg("--")
            .args(&self.args(&["--site-type", "CN"])[1..])
            .args(extra)
            .envs(env_keys(AK_ID, secret));
        output(cmd).await
    }
}

/// The line of check `name` (text output), panicking when there is none.
fn line<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find(|l| l[l.find(' ').map_or(0, |p| p + 1)..].starts_with(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} line in:\n{out}"))
}

fn passed(out: &str, name: &str) -> bool {
    let l = line(out, name);
    assert!(l.starts_with('✓') || l.starts_with('✗'), "{l}");
    l.starts_with('✓')
}

/// Everything works: every check ✓, exit 0; `--json` has one object per check, all ok, and no
/// secret anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_green() {
    let rig = Rig::start("green").await;
    rig.fake.add_access_key(AK_ID, AK_SECRET);
    let (code, out, err) = rig
        .doctor(rig.server.url().as_str(), false, AK_SECRET)
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    for check in [
        "version",
        "DNS",
        "TCP",
        "HTTP",
        "clock",
        "credential",
        "MCP",
    ] {
        assert!(passed(&out, check), "{check}:\n{out}");
    }
    assert!(line(&out, "credential").contains("AccessKey"), "{out}");
    // Tokens were minted, so the never-recorded pre-check is not a problem.
    assert!(passed(&out, "pre-check"), "{out}");
    assert!(line(&out, "pre-check").contains("not needed"), "{out}");
    let mcp = line(&out, "MCP");
    assert!(
        mcp.contains("protocol 20") && mcp.contains(" tools"),
        "{mcp}"
    );

    let (code, out, err) = rig.doctor(rig.server.url().as_str(), true, AK_SECRET).await;
    assert_eq!(code, 0, "{err}");
    let rows: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(rows.len() >= 7, "{out}");
    assert!(rows.iter().all(|r| r["ok"] == true), "{out}");
    assert!(!out.contains(AK_SECRET) && !err.contains(AK_SECRET));
    for token in rig.fake.minted_tokens() {
        assert!(!out.contains(&token), "a token in the report");
    }
}

/// The upstream is down: TCP ✗ with a fix, exit 1, nothing after it is attempted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down() {
    let rig = Rig::start("down").await;
    let closed = ClosedPort::new();
    let url = format!("http://{}/mcp", closed.addr());
    let (code, out, _) = rig.doctor(&url, false, AK_SECRET).await;
    assert_eq!(code, 1, "{out}");
    assert!(!passed(&out, "TCP"), "{out}");
    assert!(out.contains("fix: is the server up?"), "{out}");
    assert!(
        rig.fake.calls().is_empty(),
        "no credential is tried against a dead upstream"
    );
}

/// Credential failures name the cause and the fix, never the secret: a wrong secret, the
/// application not authorized for the account (pre-check), keys without the permission.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_failures_explain_themselves() {
    let wrong = "notTheSecret-Zz9Yy8Xx7Ww6Vv5Uu4";
    let rig = Rig::start("wrong").await;
    rig.fake.add_access_key(AK_ID, AK_SECRET);
    let (code, out, err) = rig.doctor(rig.server.url().as_str(), false, wrong).await;
    assert_eq!(code, 1, "{out}");
    let l = line(&out, "credential");
    assert!(
        l.starts_with('✗')
            && l.contains("SignatureDoesNotMatch")
            && l.contains("ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
        "{l}"
    );
    assert!(!out.contains(wrong) && !err.contains(wrong));
    assert!(
        passed(&out, "TCP") && passed(&out, "clock"),
        "the network is fine: {out}"
    );

    let rig = Rig::start("app").await;
    rig.fake.add_access_key(AK_ID, AK_SECRET);
    rig.fake
        .set_client(CN_CLIENT_ID, ClientStatus::NotInstalled);
    let (code, out, _) = rig
        .doctor(rig.server.url().as_str(), false, AK_SECRET)
        .await;
    assert_eq!(code, 1, "{out}");
    let l = line(&out, "credential");
    assert!(l.starts_with('✗') && l.contains("pre-check"), "{l}");
    let l = line(&out, "pre-check");
    assert!(
        l.starts_with('✗') && l.contains("never run on this machine"),
        "{l}"
    );
    assert!(
        out.contains("fix: run `alibridge pre-check --site-type CN`"),
        "{out}"
    );
    // A recorded refusal is named as such.
    record_pre_check(&rig.home, "not_installed");
    let (_, out, _) = rig
        .doctor(rig.server.url().as_str(), false, AK_SECRET)
        .await;
    let l = line(&out, "pre-check");
    assert!(
        l.starts_with('✗') && l.contains("answered not installed"),
        "{l}"
    );

    let rig = Rig::start("perm").await;
    rig.fake.add_access_key_without_permission(AK_ID, AK_SECRET);
    let (code, out, _) = rig
        .doctor(rig.server.url().as_str(), false, AK_SECRET)
        .await;
    assert_eq!(code, 1, "{out}");
    let l = line(&out, "credential");
    assert!(l.starts_with('✗') && l.contains("Forbidden.RAM"), "{l}");
}

/// A server whose `Date` is 20 minutes off: the clock check fails and says how to fix it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skewed_clock() {
    let home = TempHome::new("doctor-clock");
    let kill = CancellationToken::new();
    let listener = listen(LOOPBACK).await;
    let addr = listener.local_addr().unwrap();
    serve(listener, kill.clone(), |_req| async {
        let date = httpdate::fmt_http_date(
            std::time::SystemTime::now() - std::time::Duration::from_secs(20 * 60),
        );
        hyper::Response::builder()
            .status(405)
            .header("date", date)
            .body(Full::new(Bytes::new()))
            .unwrap()
    });
    let mut cmd = isolated_command(home.path());
    cmd.args(["doctor", &format!("http://{addr}/mcp")]);
    let (code, out, _) = output(cmd).await;
    kill.cancel();
    assert_eq!(code, 1, "{out}");
    let l = line(&out, "clock");
    assert!(
        l.starts_with('✗') && l.contains("ahead of the server"),
        "{l}"
    );
    assert!(out.contains("fix: set the clock right"), "{out}");
}

/// Without a URL, doctor checks every configured entry: one whose binary is gone is ✗ with the
/// command that fixes it.
#[tokio::test]
async fn config_pointing_at_a_missing_binary() {
    let home = TempHome::new("doctor-missing");
    home.write(
        ".claude.json",
        r#"{"mcpServers": {"ops": {"command": "/nowhere/bin/alibridge", "args": ["https://openapi-mcp.cn-hangzhou.aliyuncs.com/mcp"]}}}"#,
    );
    let mut cmd = isolated_command(home.path());
    cmd.env_remove("XDG_CONFIG_HOME")
        .env_remove("CODEX_HOME")
        .current_dir(home.path())
        .arg("doctor");
    let (code, out, _) = output(cmd).await;
    assert_eq!(code, 1, "{out}");
    let l = line(&out, "client config");
    assert!(
        l.starts_with('✗') && l.contains("/nowhere/bin/alibridge") && l.contains("does not exist"),
        "{l}"
    );
    assert!(
        out.contains("alibridge add claude-code <URL> --name ops --scope user --force"),
        "{out}"
    );

    let empty = TempHome::new("doctor-empty");
    let mut cmd = isolated_command(empty.path());
    cmd.env_remove("XDG_CONFIG_HOME")
        .env_remove("CODEX_HOME")
        .current_dir(empty.path())
        .arg("doctor");
    let (code, out, _) = output(cmd).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no alibridge entries"), "{out}");
}

/// What `alibridge pre-check` records (`<ALIBRIDGE_HOME>/pre-check.json`).
fn record_pre_check(home: &TempHome, outcome: &str) {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let dir = home.alibridge_home();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("pre-check.json"),
        serde_json::json!([{"site": "CN", "client_id": CN_CLIENT_ID, "outcome": outcome, "at": at - 120}])
            .to_string(),
    )
    .unwrap();
}

/// The URL-less form, by `--core` and by an entry `add` wrote without a URL: the bridge finds
/// the account's Core endpoint, then the network path to it is checked; the recorded pre-check
/// is shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_url_less_form_is_checked_at_the_endpoint_it_finds() {
    let rig = Rig::start("core").await;
    rig.fake.add_access_key(AK_ID, AK_SECRET);
    rig.fake.set_cores(
        AK_ID,
        vec![serde_json::json!({"id": "c", "urls": {"mcp": rig.server.url()}})],
    );
    record_pre_check(&rig.home, "authorized");
    let flags = [
        "--transport",
        "http-only",
        "--auth",
        "ak",
        "--ims-endpoint",
        &rig.fake.url(),
        "--discovery-endpoint",
        &rig.fake.url(),
    ];
    let keys = [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", AK_ID),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", AK_SECRET),
    ];
    let mut cmd = isolated_command(rig.home.path());
    cmd.args(["doctor", "--core", "--"]).args(flags).envs(keys);
    let (code, out, err) = output(cmd).await;
    assert_eq!(code, 0, "{out}\n{err}");
    for check in [
        "credential",
        "endpoint",
        "DNS",
        "TCP",
        "HTTP",
        "MCP",
        "pre-check",
    ] {
        assert!(passed(&out, check), "{check}:\n{out}");
    }
    assert!(line(&out, "credential").contains("Core edition"), "{out}");
    assert!(
        line(&out, "endpoint").contains(rig.server.url().as_str()),
        "{out}"
    );
    assert!(
        line(&out, "pre-check").contains("authorized for the CN site"),
        "{out}"
    );

    // An entry without a URL is the same form.
    let mut cmd = isolated_command(rig.home.path());
    cmd.args(["add", "claude-code", "--"]).args(flags);
    let (code, _, err) = output(cmd).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("no URL"), "{err}");
    let mut cmd = isolated_command(rig.home.path());
    cmd.arg("doctor").envs(keys);
    let (code, out, err) = output(cmd).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("claude-code (user) aliyun"), "{out}");
    assert!(
        line(&out, "endpoint").contains(rig.server.url().as_str()),
        "{out}"
    );
    assert!(!out.contains(AK_SECRET) && !err.contains(AK_SECRET));
}

/// An OAuth entry: the stored sign-in is shown (authorization server, client, expiry, store)
/// and nothing secret is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_oauth_sign_in_is_shown() {
    let rig = crate::support::oauth_rig::Rig::start("doctor-oauth").await;
    rig.sign_in_once().await;
    let url = rig.mcp.url();
    let (code, out, err) = rig
        .command(&[
            "doctor",
            &url,
            "--",
            "--auth",
            "oauth",
            "--token-store",
            "file",
        ])
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(passed(&out, "credential") && passed(&out, "MCP"), "{out}");
    let l = line(&out, "OAuth");
    assert!(
        l.starts_with('✓')
            && l.contains(&format!("signed in at {}", rig.oauth.issuer()))
            && l.contains("expires in")
            && l.contains("stored in file"),
        "{l}"
    );
    rig.assert_no_secrets(&out, "doctor stdout");
    rig.assert_no_secrets(&err, "doctor stderr");
}

/// With a safety flag set, doctor says which limits the server enforces: with AccessKeys,
/// `--read-only` compiled into the policy bound to the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_which_limits_the_server_enforces() {
    let rig = Rig::start("safety").await;
    rig.fake.add_access_key(AK_ID, AK_SECRET);
    let endpoint = rig.fake.url();
    let (code, out, err) = rig
        .doctor_with(
            rig.server.url().as_str(),
            false,
            AK_SECRET,
            &[
                "--read-only",
                "--confirm-writes",
                "--safety-policy-endpoint",
                &endpoint,
            ],
        )
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(passed(&out, "safety"), "{out}");
    let safety = line(&out, "safety");
    assert!(
        safety.contains("--read-only enforced by alibridge and server-side")
            && safety.contains("--confirm-writes local only"),
        "{safety}"
    );
    assert_eq!(rig.fake.safety_calls().len(), 1, "bound once");
}
