//! The OAuth token store on a real OS keychain: the Secret Service of gnome-keyring, which
//! `.ci/run` starts under `dbus-run-session` (an unlocked `login` collection; `.ci/with-keyring`
//! sets `ALIBRIDGE_TEST_KEYRING=1`) before running these with `--ignored`. The keychain is read
//! back with `secret-tool` (libsecret), not with alibridge's own code. They share one keychain,
//! so they run one at a time; `locked::` locks it for good, so `.ci/run` gives it a session of
//! its own (`--skip keyring::locked`, then `keyring::locked` alone).
//!
//! Without a keychain (no Secret Service on the session bus) the `auto` store falls back to the
//! 0600 file with one notice: that test runs everywhere on Linux, not only under the daemon.
#![cfg(target_os = "linux")]

use std::process::Stdio;

use serde_json::{json, Value};

use crate::support::check::auth_error;
use crate::support::oauth_rig::{echo, Rig};

/// One keychain test at a time (one of them locks the shared collection).
static KEYCHAIN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const NEEDS: &str =
    "needs a Secret Service: .ci/run runs it under dbus-run-session with gnome-keyring";

/// The Secret Service's `login` collection, which gnome-keyring's `--unlock` creates.
const COLLECTION: &str = "/org/freedesktop/secrets/collection/login";

fn require_keychain() {
    assert!(
        std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some()
            && std::env::var_os("ALIBRIDGE_TEST_KEYRING").is_some(),
        "{NEEDS} (DBUS_SESSION_BUS_ADDRESS and ALIBRIDGE_TEST_KEYRING must be set)"
    );
}

async fn keyring_rig(tag: &str) -> Rig {
    require_keychain();
    let mut rig = Rig::start(tag).await;
    rig.store = "keyring";
    rig
}

/// The secret libsecret finds for alibridge's entry `stem` (`None`: no such entry).
fn keychain_secret(stem: &str) -> Option<Value> {
    let out = std::process::Command::new("secret-tool")
        .args(["lookup", "service", "alibridge", "username", stem])
        .stderr(Stdio::null())
        .output()
        .expect("run secret-tool (Debian package libsecret-tools)");
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.trim().is_empty() {
        return None;
    }
    Some(serde_json::from_str(text.trim()).expect("alibridge stores JSON in the keychain"))
}

/// The one stored record of `rig`: its file stem and contents.
fn record(rig: &Rig) -> (String, Value) {
    let records = rig.home.records();
    assert_eq!(records.len(), 1, "{records:?}");
    let stem = records[0]
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let rec = serde_json::from_slice(&std::fs::read(&records[0]).unwrap()).unwrap();
    (stem, rec)
}

fn lock_keychain() {
    let status = std::process::Command::new("dbus-send")
        .args([
            "--session",
            "--dest=org.freedesktop.secrets",
            "--type=method_call",
            "--print-reply",
            "/org/freedesktop/secrets",
            "org.freedesktop.Secret.Service.Lock",
            &format!("array:objpath:{COLLECTION}"),
        ])
        .stdout(Stdio::null())
        .status()
        .expect("run dbus-send");
    assert!(status.success(), "locking the keychain failed");
}

/// Sign-in with `--token-store keyring`: the tokens are in the keychain (read back by
/// libsecret), the file keeps only the rest; a new process uses them without a browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Secret Service: .ci/run runs it under dbus-run-session with gnome-keyring"]
async fn the_keychain_holds_the_tokens_and_a_new_process_loads_them() {
    let _one = KEYCHAIN.lock().await;
    let rig = keyring_rig("kr-save").await;
    let stderr = rig.sign_in_once().await;

    let (stem, rec) = record(&rig);
    assert_eq!(rec["store"], "keyring", "{rec}");
    for field in ["access_token", "refresh_token", "client_secret"] {
        assert!(rec.get(field).is_none(), "{field} in the file: {rec}");
    }
    let secret = keychain_secret(&stem).expect("an entry in the keychain");
    let refresh = secret["refresh_token"].as_str().expect("a refresh token");
    assert!(rig.oauth.refresh_tokens().iter().any(|t| t == refresh));
    let file_text = std::fs::read_to_string(&rig.home.records()[0]).unwrap();
    assert!(
        rig.oauth.leaked_in(&file_text).is_none(),
        "a token in the file"
    );
    assert!(rig.oauth.leaked_in(&stderr).is_none(), "a token on stderr");

    let mut b = rig.spawn(&[], &[]);
    b.initialize().await;
    echo(&rig, &mut b, 1, "from the keychain").await;
    let stderr = b.finish().await.stderr;
    assert!(stderr.contains("using the stored sign-in"), "{stderr}");
    assert_eq!(rig.oauth.authorize_count(), 1, "no second sign-in");
    assert_eq!(rig.browser.opened().len(), 1);
}

/// A refresh writes the new (rotated) tokens to the keychain; the next process uses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Secret Service: .ci/run runs it under dbus-run-session with gnome-keyring"]
async fn a_refresh_replaces_the_tokens_in_the_keychain() {
    let _one = KEYCHAIN.lock().await;
    let rig = keyring_rig("kr-refresh").await;
    rig.sign_in_once().await;
    let (stem, _) = record(&rig);
    let before = keychain_secret(&stem).unwrap();

    rig.oauth.revoke_access_tokens();
    let mut b = rig.spawn(&[], &[]);
    b.initialize().await;
    echo(&rig, &mut b, 1, "after a refresh").await;
    b.finish().await;
    assert_eq!(rig.oauth.token_count("refresh_token"), 1, "one refresh");

    let after = keychain_secret(&stem).unwrap();
    assert_ne!(before["refresh_token"], after["refresh_token"], "rotated");
    assert_ne!(before["access_token"], after["access_token"]);
    assert!(rig
        .oauth
        .is_valid_access_token(after["access_token"].as_str().unwrap(), None));
    assert_eq!(record(&rig).1["generation"], 2, "the second save");

    let mut b = rig.spawn(&[], &[]);
    b.initialize().await;
    echo(&rig, &mut b, 1, "the refreshed tokens").await;
    b.finish().await;
    assert_eq!(
        rig.oauth.token_count("refresh_token"),
        1,
        "no second refresh"
    );
    assert_eq!(rig.oauth.authorize_count(), 1);
    assert_eq!(rig.oauth.refresh_reuse_count(), 0);
}

/// `logout` deletes the keychain entry and the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Secret Service: .ci/run runs it under dbus-run-session with gnome-keyring"]
async fn logout_deletes_the_keychain_entry() {
    let _one = KEYCHAIN.lock().await;
    let rig = keyring_rig("kr-logout").await;
    rig.sign_in_once().await;
    let (stem, _) = record(&rig);
    assert!(keychain_secret(&stem).is_some());

    let url = rig.mcp.url();
    let (code, out, err) = rig
        .command(&["logout", &url, "--token-store", "keyring"])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(keychain_secret(&stem).is_none(), "the entry is gone");
    assert!(rig.home.records().is_empty(), "the file is gone");
    let (_, status, _) = rig.command(&["status"]).await;
    assert!(!status.contains(&url), "{status}");
}

/// Two bridges started at once with nothing stored: one sign-in between them, through the
/// keychain; then one revoked access token met by both: one refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Secret Service: .ci/run runs it under dbus-run-session with gnome-keyring"]
async fn two_processes_at_once_share_one_sign_in_and_one_refresh() {
    let _one = KEYCHAIN.lock().await;
    let rig = keyring_rig("kr-two").await;
    let mut a = rig.spawn(&[], &[]);
    let mut b = rig.spawn(&[], &[]);
    tokio::join!(a.initialize(), b.initialize());
    tokio::join!(
        echo(&rig, &mut a, 1, "first"),
        echo(&rig, &mut b, 1, "second")
    );
    assert_eq!(rig.oauth.authorize_count(), 1, "one sign-in for both");
    assert_eq!(rig.browser.opened().len(), 1, "one browser tab");

    rig.oauth.revoke_access_tokens();
    tokio::join!(
        echo(&rig, &mut a, 2, "first again"),
        echo(&rig, &mut b, 2, "second again")
    );
    a.finish().await;
    b.finish().await;
    assert_eq!(rig.oauth.token_count("refresh_token"), 1, "one refresh");
    assert_eq!(rig.oauth.refresh_reuse_count(), 0);
    let (stem, rec) = record(&rig);
    assert_eq!(rec["store"], "keyring");
    assert!(keychain_secret(&stem).is_some());
}

fn assert_mode_600(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{} mode {mode:o}", path.display());
}

/// No Secret Service on the session bus (headless, SSH): `auto` keeps the sign-in in the 0600
/// file and says so once, however many times it saves; `keyring` refuses with what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_keychain_auto_uses_the_private_file_with_one_notice() {
    let nowhere = std::env::temp_dir().join(format!("alibridge-no-bus-{}", std::process::id()));
    let bus = format!("unix:path={}", nowhere.display());
    let env = [("DBUS_SESSION_BUS_ADDRESS", bus.as_str())];
    let mut rig = Rig::start("no-keychain").await;
    rig.store = "auto";
    let mut b = rig.spawn(&[], &env);
    b.initialize().await;
    echo(&rig, &mut b, 1, "signed in").await;
    rig.oauth.revoke_access_tokens();
    echo(&rig, &mut b, 2, "refreshed").await;
    let stderr = b.finish().await.stderr;
    assert_eq!(rig.oauth.token_count("refresh_token"), 1);
    assert_eq!(
        stderr.matches("the OS keychain is not available").count(),
        1,
        "one notice for two saves:\n{stderr}"
    );
    assert!(stderr.contains("0600 files under"), "{stderr}");
    let (_, rec) = record(&rig);
    assert_eq!(rec["store"], "file");
    assert!(rec["refresh_token"].is_string());
    assert_mode_600(&rig.home.records()[0]);

    let mut strict = Rig::start("no-keychain-strict").await;
    strict.store = "keyring";
    let mut b = strict.spawn(&[], &env);
    b.request(0, "initialize", json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}))
        .await;
    let msg = auth_error(&b.response(0).await);
    assert!(msg.contains("cannot write to the OS keychain"), "{msg}");
    assert!(msg.contains("--token-store file"), "{msg}");
    let _ = b.finish().await.stderr;
    assert!(strict.home.records().is_empty(), "nothing stored");
}

/// Locks the shared keychain and leaves it locked: run alone, in a session of its own.
mod locked {
    use super::*;

    /// A locked keychain that cannot prompt (no display): a stored sign-in cannot be read, and the
    /// request gets an error that says so and what to do, at once (no hang). With `auto`, a new
    /// sign-in goes to the 0600 file with one notice instead.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs a Secret Service of its own: .ci/run runs it alone under dbus-run-session with gnome-keyring"]
    async fn a_locked_keychain_is_reported_with_what_to_do() {
        let _one = KEYCHAIN.lock().await;
        let rig = keyring_rig("kr-locked").await;
        rig.sign_in_once().await;
        let (stem, _) = record(&rig);

        lock_keychain();
        assert!(keychain_secret(&stem).is_none(), "libsecret cannot read it");
        let mut b = rig.spawn(&[], &[]);
        b.request(0, "initialize", json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}))
            .await;
        let resp = b.response(0).await;
        let msg = auth_error(&resp);
        assert!(msg.contains("OS keychain"), "{msg}");
        assert!(msg.contains("unlock it"), "{msg}");
        assert!(msg.contains("--token-store file"), "{msg}");
        assert_eq!(
            rig.oauth.authorize_count(),
            1,
            "no sign-in behind the user's back"
        );
        let _ = b.finish().await.stderr;

        // `auto` with the keychain locked: a second server's sign-in lands in the file.
        let mut auto = Rig::start("kr-locked-auto").await;
        auto.store = "auto";
        let mut b = auto.spawn(&[], &[]);
        b.initialize().await;
        echo(&auto, &mut b, 1, "into the file").await;
        auto.oauth.revoke_access_tokens();
        echo(&auto, &mut b, 2, "refreshed into the file").await;
        let stderr = b.finish().await.stderr;
        let (_, rec) = record(&auto);
        assert_eq!(rec["store"], "file", "{rec}");
        assert!(rec["refresh_token"].is_string());
        assert_eq!(
            stderr.matches("the OS keychain is not available").count(),
            1,
            "one notice for two saves:\n{stderr}"
        );
        assert_mode_600(&auto.home.records()[0]);
    }
}
