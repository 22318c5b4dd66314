//! `alibridge pre-check` against the Alibaba fake's sign-in page: a `$BROWSER` script follows
//! the page's redirect to the loopback callback; the verdict is printed, exits as documented, and
//! is recorded for `doctor`.

use std::path::{Path, PathBuf};

use crate::support::aliyun_fake::{
    AliyunFake, ClientStatus, CN_CLIENT_ID, INTL_CLIENT_ID, OPENAPI_SCOPE,
};
use crate::support::bridge::{isolated_command, output};
use crate::support::home::TempHome;
use crate::support::wait::until;

/// Runs `alibridge pre-check <args>` isolated like the bridge, with `env` on top.
async fn pre_check(args: &[&str], env: &[(&str, &str)], home: &Path) -> (i32, String, String) {
    let mut cmd = isolated_command(home);
    cmd.arg("pre-check").args(args).envs(env.iter().copied());
    output(cmd).await
}

/// Writes a `$BROWSER` script that "opens" the URL with curl: it follows the sign-in page's
/// 302 to the loopback callback. With `forge`, it first delivers a forged callback (another
/// state, `error=access_denied`), which pre-check must ignore. Each HTTP status it gets is
/// appended to `browser.log`.
#[cfg(unix)]
fn browser_script(home: &TempHome, forge: bool) -> (String, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let log = home.path().join("browser.log");
    let forged = if forge {
        r#"forged=$(printf '%s' "$loc" | sed -e 's/code=[^&]*/error=access_denied/' -e 's/state=[^&]*/state=forged/')
curl -s -o /dev/null -w 'forged %{http_code}\n' "$forged" >> "$LOG"
"#
    } else {
        ""
    };
    let script = format!(
        "#!/bin/sh\nLOG='{}'\nloc=$(curl -s -o /dev/null -w '%{{redirect_url}}' \"$1\")\n\
         echo \"location $loc\" >> \"$LOG\"\n{forged}curl -s -o /dev/null -w 'callback %{{http_code}}\\n' \"$loc\" >> \"$LOG\"\n",
        log.display()
    );
    let path = home.write("bin/browser", &script);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    (path.to_string_lossy().into_owned(), log)
}

/// Waits until the browser script's log has a line starting with `prefix`; returns that line.
#[cfg(unix)]
async fn browser_logged(log: &Path, prefix: &str) -> String {
    let found = || {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with(prefix))
            .map(str::to_string)
    };
    until(&format!("browser logged {prefix:?}"), || found().is_some()).await;
    found().unwrap()
}

/// pre-check opens `$BROWSER` on the sign-in page with a PKCE (S256) authorization request for
/// the built-in CN application and a loopback redirect; the page's 302 with a code means
/// `authorized` (exit 0). A forged callback with another state, delivered first, is ignored.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_check_authorized_ignoring_a_forged_callback() {
    let fake = AliyunFake::start().await;
    let home = TempHome::new("ak-precheck-ok");
    let (browser, log) = browser_script(&home, true);
    let authorize = fake.authorize_url();
    let env = [
        ("BROWSER", browser.as_str()),
        ("ALIBRIDGE_AUTHORIZE_URL", authorize.as_str()),
    ];
    let (code, stdout, stderr) =
        pre_check(&["--site-type", "CN", "--timeout", "20"], &env, home.path()).await;
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.starts_with("authorized"), "{stdout}");
    assert!(
        browser_logged(&log, "forged ").await.ends_with(" 400"),
        "the forged callback was turned away"
    );
    assert!(browser_logged(&log, "callback ").await.ends_with(" 200"));

    let signins = fake.signins();
    assert_eq!(signins.len(), 1, "{signins:?}");
    let s = &signins[0];
    assert_eq!(s.outcome, "code", "{s:?}");
    assert_eq!(
        s.params.get("client_id").map(String::as_str),
        Some(CN_CLIENT_ID)
    );
    assert_eq!(
        s.params.get("scope").map(String::as_str),
        Some(OPENAPI_SCOPE)
    );
    assert_eq!(
        s.params.get("code_challenge_method").map(String::as_str),
        Some("S256")
    );
    assert!(
        s.params["state"].len() >= 22,
        "state carries at least 128 random bits: {s:?}"
    );
    assert_eq!(
        recorded(&home),
        [("CN".into(), CN_CLIENT_ID.into(), "authorized".into())]
    );
}

/// What pre-check recorded for `doctor` (`<ALIBRIDGE_HOME>/pre-check.json`): (site, client id,
/// outcome) per record.
#[cfg(unix)]
fn recorded(home: &TempHome) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(home.alibridge_home().join("pre-check.json"))
        .expect("pre-check recorded its verdict");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let f = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (f("site"), f("client_id"), f("outcome"))
        })
        .collect()
}

/// The user declines (`error=access_denied`, here for a custom `--client-id`): `denied`, exit 1.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_check_denied() {
    let fake = AliyunFake::start().await;
    fake.set_client("5000000000000000001", ClientStatus::Denied);
    let home = TempHome::new("ak-precheck-denied");
    let (browser, _) = browser_script(&home, false);
    let authorize = fake.authorize_url();
    let env = [
        ("BROWSER", browser.as_str()),
        ("ALIBRIDGE_AUTHORIZE_URL", authorize.as_str()),
    ];
    let args = [
        "--site-type",
        "CN",
        "--client-id",
        "5000000000000000001",
        "--timeout",
        "20",
    ];
    let (code, stdout, stderr) = pre_check(&args, &env, home.path()).await;
    assert_eq!(code, 1, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.starts_with("denied"), "{stdout}");
    let signins = fake.signins();
    assert_eq!(signins[0].outcome, "access_denied");
    assert_eq!(
        signins[0].params.get("scope").map(String::as_str),
        Some("openid /acs/mcp-server"),
        "a custom application is asked for its own scope"
    );
    assert_eq!(
        recorded(&home),
        [("CN".into(), "5000000000000000001".into(), "denied".into())]
    );
}

/// The application is not installed for the account (`error=unauthorized_client`, INTL site):
/// `not installed`, exit 1.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_check_not_installed() {
    let fake = AliyunFake::start().await;
    fake.set_client(INTL_CLIENT_ID, ClientStatus::NotInstalled);
    let home = TempHome::new("ak-precheck-missing");
    let (browser, _) = browser_script(&home, false);
    let authorize = fake.authorize_url();
    let env = [
        ("BROWSER", browser.as_str()),
        ("ALIBRIDGE_AUTHORIZE_URL", authorize.as_str()),
    ];
    let (code, stdout, stderr) = pre_check(
        &["--site-type", "INTL", "--timeout", "20"],
        &env,
        home.path(),
    )
    .await;
    assert_eq!(code, 1, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.starts_with("not installed"), "{stdout}");
    assert_eq!(
        fake.signins()[0]
            .params
            .get("client_id")
            .map(String::as_str),
        Some(INTL_CLIENT_ID)
    );
    assert_eq!(
        recorded(&home),
        [("INTL".into(), INTL_CLIENT_ID.into(), "not_installed".into())]
    );
}

/// `--no-browser --timeout 1` with nobody visiting the URL: exit 3, and the URL was printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_check_times_out_without_a_browser() {
    let fake = AliyunFake::start().await;
    let home = TempHome::new("ak-precheck-timeout");
    let authorize = fake.authorize_url();
    let env = [("ALIBRIDGE_AUTHORIZE_URL", authorize.as_str())];
    let (code, stdout, stderr) = pre_check(
        &["--site-type", "CN", "--no-browser", "--timeout", "1"],
        &env,
        home.path(),
    )
    .await;
    assert_eq!(code, 3, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains(&authorize), "the URL is printed: {stderr}");
    assert!(fake.signins().is_empty());
}

// ---------------------------------------------------------------------------------------------
// The fake itself
