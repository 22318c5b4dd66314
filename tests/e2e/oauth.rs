//! OAuth sign-in end to end: the real binary, isolated from the machine (`HOME` is a temp dir,
//! tokens in a file store, never the keychain), against the local authorization server and the
//! protected MCP server of `support/oauth_server`. The browser is a `$BROWSER` script that
//! follows the authorization server's redirect to the bridge's loopback callback with curl, as a
//! user who approves at once; it logs every URL it is asked to open. Unix only (a shell script
//! is the browser; file modes are checked).
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::relay::tool_text;
use crate::support::bridge::{bin, inherited_vars_to_scrub, responses_per_id, Bridge};
use crate::support::oauth_server::{AsOptions, OAuthServer, ProtectedMcp, ProtectedOptions, USER};

/// A pre-registered client's secret (passed only through ALIBRIDGE_OAUTH_CLIENT_SECRET).
const CLIENT_SECRET: &str = "pre-registered-Secret-7Hq2Vx9Lm4Kz8Rt1";
const CLIENT_ID: &str = "alibridge-confidential-client";

/// A temporary `HOME` (with `ALIBRIDGE_HOME` = `<it>/.alibridge`), removed on drop.
pub(crate) struct TempHome(PathBuf);

impl TempHome {
    pub(crate) fn new(tag: &str) -> TempHome {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("alibridge-oauth-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp HOME");
        TempHome(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// `<ALIBRIDGE_HOME>/oauth`, where the file store keeps its records.
    pub(crate) fn store_dir(&self) -> PathBuf {
        self.0.join(".alibridge").join("oauth")
    }

    /// The stored sign-in records (`*.json`).
    pub(crate) fn records(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.store_dir()) else {
            return Vec::new();
        };
        let mut v: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        v.sort();
        v
    }
}

impl Drop for TempHome {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The `$BROWSER` of a test: a script that logs the URL it is given, then GETs it with curl,
/// following the authorization server's 302 to the loopback callback. `idle` is a second
/// script that only logs: a user who never finishes signing in.
pub(crate) struct Browser {
    script: String,
    idle: String,
    log: PathBuf,
}

impl Browser {
    fn new(home: &TempHome) -> Browser {
        use std::os::unix::fs::PermissionsExt;
        let dir = home.path().join("bin");
        std::fs::create_dir_all(&dir).unwrap();
        let log = home.path().join("browser.log");
        let write = |name: &str, follow: &str| {
            let path = dir.join(name);
            std::fs::write(
                &path,
                format!(
                    "#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{}'\n{follow}",
                    log.display()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            path.to_string_lossy().into_owned()
        };
        Browser {
            script: write(
                "browser",
                "exec curl --noproxy '*' -s -L --max-redirs 3 -o /dev/null \"$1\"\n",
            ),
            idle: write("idle-browser", ""),
            log,
        }
    }

    /// The URLs the bridge asked the browser to open, in order.
    pub(crate) fn opened(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// The authorization server, the protected MCP server, a temp `HOME` and a browser.
pub(crate) struct Rig {
    pub(crate) oauth: OAuthServer,
    pub(crate) mcp: ProtectedMcp,
    pub(crate) home: TempHome,
    pub(crate) browser: Browser,
    /// `--token-store` of every bridge and command: `file` unless a keychain test says so.
    pub(crate) store: &'static str,
}

impl Rig {
    pub(crate) async fn start(tag: &str) -> Rig {
        Self::start_with(tag, AsOptions::default(), ProtectedOptions::default()).await
    }

    pub(crate) async fn start_with(tag: &str, a: AsOptions, p: ProtectedOptions) -> Rig {
        let oauth = OAuthServer::start_with(a).await;
        let mcp = ProtectedMcp::start(&oauth, p).await;
        let home = TempHome::new(tag);
        let browser = Browser::new(&home);
        Rig {
            oauth,
            mcp,
            home,
            browser,
            store: "file",
        }
    }

    /// `<mcp url> --token-store <store> --auth-timeout 15` + `extra` (a sign-in that cannot
    /// complete then fails before the harness gives up on the bridge).
    pub(crate) fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut args = vec![
            self.mcp.url(),
            "--token-store".into(),
            self.store.into(),
            "--auth-timeout".into(),
            "15".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    /// Spawns a bridge with `--auth oauth` + `extra`, `$BROWSER` = the test browser.
    pub(crate) fn spawn(&self, extra: &[&str], env: &[(&str, &str)]) -> Bridge {
        let mut args = vec!["--auth", "oauth"];
        args.extend_from_slice(extra);
        self.spawn_raw(&args, env)
    }

    /// Spawns a bridge with exactly `self.args(extra)`.
    pub(crate) fn spawn_raw(&self, extra: &[&str], env: &[(&str, &str)]) -> Bridge {
        let mut all: Vec<(&str, &str)> = vec![("BROWSER", self.browser.script.as_str())];
        all.extend_from_slice(env);
        Bridge::spawn_isolated(self.args(extra), all, self.home.path())
    }

    /// Runs `alibridge <args>` (a command such as `status`) isolated like the bridges; returns
    /// (exit code, stdout, stderr).
    pub(crate) async fn command(&self, args: &[&str]) -> (i32, String, String) {
        let mut cmd = self.command_builder(args);
        cmd.stdin(Stdio::null());
        let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
            .await
            .expect("command finished in time")
            .expect("run alibridge");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub(crate) fn command_builder(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(bin());
        cmd.args(args);
        for name in inherited_vars_to_scrub() {
            cmd.env_remove(name);
        }
        cmd.env("HOME", self.home.path())
            .env("ALIBRIDGE_HOME", self.home.path().join(".alibridge"))
            .env("BROWSER", &self.browser.script)
            .kill_on_drop(true);
        cmd
    }

    /// Signs in with a first bridge (initialize + one call) and stops it; returns its stderr.
    pub(crate) async fn sign_in_once(&self) -> String {
        let mut b = self.spawn(&[], &[]);
        b.initialize().await;
        echo(self, &mut b, 1, "hi").await;
        finish(b).await
    }
}

/// Calls `echo {text}` and asserts it answers `text`; on failure, panics with what the
/// authorization server and the protected server saw, and the bridge's stderr.
pub(crate) async fn echo(rig: &Rig, b: &mut Bridge, id: i64, text: &str) {
    let resp = b.call_tool(id, "echo", json!({"text": text})).await;
    if resp["result"]["content"][0]["text"] == text {
        return;
    }
    let _ = b.child.start_kill();
    let stderr = b.stderr().await;
    let tokens: Vec<String> = rig
        .oauth
        .token_requests()
        .iter()
        .map(|t| {
            format!(
                "{} {} -> {} {:?}",
                t.grant_type, t.client_auth, t.status, t.error
            )
        })
        .collect();
    let front: Vec<String> = rig
        .mcp
        .requests()
        .iter()
        .map(|r| {
            format!(
                "{} {:?} bearer={} -> {}",
                r.method,
                r.rpc_method,
                r.bearer.is_some(),
                r.status
            )
        })
        .collect();
    panic!(
        "echo {id} failed: {resp}\nauthorize: {}\ntoken requests:\n  {}\nMCP requests:\n  {}\nstderr:\n{stderr}",
        rig.oauth.authorize_count(),
        tokens.join("\n  "),
        front.join("\n  ")
    );
}

/// Closes stdin, drains stdout, asserts exit 0 and one answer per id; returns stderr.
pub(crate) async fn finish(mut bridge: Bridge) -> String {
    bridge.close_stdin();
    bridge.drain().await;
    let code = bridge.wait().await;
    let stderr = bridge.stderr().await;
    assert_eq!(code, 0, "bridge exit code; stderr:\n{stderr}");
    for (id, n) in responses_per_id(&bridge.seen) {
        assert!(
            id == "null" || n == 1,
            "id {id} answered {n} times; stderr:\n{stderr}"
        );
    }
    stderr
}

/// The message of a bridge-made JSON-RPC error of kind `auth`.
pub(crate) fn auth_error(resp: &Value) -> String {
    assert_eq!(resp["error"]["code"], -32000, "not a bridge error: {resp}");
    assert_eq!(
        resp["error"]["data"]["alibridge"]["kind"], "auth",
        "not an auth error: {resp}"
    );
    resp["error"]["message"].as_str().unwrap().to_string()
}

/// Waits (up to 30 s, polling) until `cond` holds.
pub(crate) async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Panics if any secret the authorization server handled (tokens, codes, verifiers, client
/// secrets) appears in `text`.
pub(crate) fn assert_no_secrets(oauth: &OAuthServer, text: &str, what: &str) {
    assert!(!oauth.secrets().is_empty(), "the server handled no secrets");
    if let Some(s) = oauth.leaked_in(text) {
        panic!("{what} contains the secret {s:?}:\n{text}");
    }
    assert!(
        !text.contains(CLIENT_SECRET),
        "{what} contains the client secret:\n{text}"
    );
}

/// A free port on 127.0.0.1 (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// 401 → discovery, registration, one PKCE browser sign-in, retry; 0600 record; nothing logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sign_in_through_the_browser() {
    use std::os::unix::fs::PermissionsExt;
    let rig = Rig::start("first").await;
    // `auto` (no --auth): not an Alibaba Cloud host, so OAuth.
    let mut b = rig.spawn_raw(&["--debug"], &[]);
    b.initialize().await;
    echo(&rig, &mut b, 1, "signed in").await;
    let stderr = finish(b).await;

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
    assert_no_secrets(&rig.oauth, &stderr, "--debug stderr");
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
    let stderr = finish(b).await;

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
    let stderr = finish(b).await;

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
    finish(b).await;
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
    let stderr = finish(b).await;

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
    let init = json!({
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "0"}
    });
    for id in 0..3 {
        b.request(id, "initialize", init.clone()).await;
        let resp = b.response(id).await;
        let msg = auth_error(&resp);
        assert!(!msg.is_empty());
    }
    finish(b).await;
    assert_eq!(rig.oauth.authorize_count(), 1, "one sign-in only");
    assert_eq!(rig.browser.opened().len(), 1, "one browser tab only");
}

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
    let port = free_port();
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
    let mut stderr = finish(b).await;
    rig.oauth.revoke_access_tokens();
    let mut b = rig.spawn(&args, &env);
    b.initialize().await;
    echo(&rig, &mut b, 1, "b").await;
    stderr.push_str(&finish(b).await);

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
    assert_no_secrets(&rig.oauth, &stderr, "--debug stderr");
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
    let stderr = finish(b).await;

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
    let stderr = finish(b).await;

    let auths = rig.oauth.authorizations();
    assert_eq!(auths.len(), 2, "one step-up sign-in; stderr:\n{stderr}");
    let scopes = |i: usize| auths[i].scopes().into_iter().collect::<Vec<_>>();
    assert_eq!(scopes(0), ["mcp:read"]);
    assert_eq!(scopes(1), ["mcp:admin", "mcp:read"], "the union of scopes");
    assert_eq!(rig.mcp.answered(403), 1, "one insufficient_scope answer");
    assert_eq!(rig.mcp.backend().calls("count"), 1);
}

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
        finish(b).await;
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

/// `?error=access_denied` → a clear `auth` error; the bridge keeps running and signs in later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_is_a_clear_error_and_the_bridge_keeps_running() {
    let rig = Rig::start("denied").await;
    rig.oauth.deny(true);
    let mut b = rig.spawn(&[], &[]);
    let init = json!({
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "0"}
    });
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
    finish(b).await;
    assert_eq!(rig.oauth.authorize_count(), 2);
}

/// A busy `--callback-port` → a clear `auth` error, no browser, no crash; works once it is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_callback_port_is_a_clear_error_not_a_crash() {
    let rig = Rig::start("busy").await;
    let holder = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = holder.local_addr().unwrap().port();
    let port_s = port.to_string();
    let mut b = rig.spawn(&["--callback-port", &port_s], &[]);
    let init = json!({
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "0"}
    });
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
    finish(b).await;
    assert_eq!(rig.oauth.authorize_count(), 1);
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
    finish(b).await;
    let auths = rig.oauth.authorizations();
    assert_eq!(auths.len(), 1);
    assert_eq!(auths[0].outcome, "code");
    assert!(rig.oauth.issuer().ends_with("/tenant1"));
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
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .no_proxy()
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
    assert_no_secrets(&rig.oauth, &stdout, "login stdout");
    assert_no_secrets(&rig.oauth, &stderr, "login stderr");

    let (code, out, err) = rig.command(&["status"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&url), "status lists the server:\n{out}");
    assert!(out.contains(&rig.oauth.issuer()), "{out}");
    assert!(out.contains("expires in"), "{out}");
    assert!(out.contains("stored in: file"), "{out}");
    assert!(out.contains(USER), "status shows who signed in:\n{out}");
    assert_no_secrets(&rig.oauth, &out, "status");

    let before = rig.mcp.requests().len();
    let mut b = rig.spawn(&[], &[]);
    b.initialize().await;
    echo(&rig, &mut b, 1, "l").await;
    finish(b).await;
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
    let mut stderr = finish(b).await;
    rig.oauth.revoke_access_tokens();
    let mut b = rig.spawn(&["--debug"], &[]);
    b.initialize().await;
    let resp = b.call_tool(1, "count", json!({})).await;
    assert!(resp.get("result").is_some(), "{resp}");
    stderr.push_str(&finish(b).await);

    assert!(stderr.contains("DEBUG"), "--debug logged:\n{stderr}");
    assert_eq!(
        rig.oauth.token_count("authorization_code"),
        2,
        "sign-in and step-up"
    );
    assert_eq!(rig.oauth.token_count("refresh_token"), 1);
    assert_no_secrets(&rig.oauth, &stderr, "--debug stderr");
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
    finish(b).await;
    assert_eq!(rig.oauth.authorize_count(), 1, "no second sign-in");
    assert_eq!(
        rig.oauth.token_count("refresh_token"),
        1,
        "{:#?}",
        rig.oauth.token_requests()
    );
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
        finish(b).await;
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
    let init = json!({
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "0"}
    });
    b.request(0, "initialize", init).await;
    b.request(1, "ping", json!({})).await;
    let resp = b.response(0).await;
    assert!(resp.get("result").is_some(), "{resp}");
    b.response(1).await; // answered one way or another (no session yet)
    b.notify("notifications/initialized", json!({})).await;
    echo(&rig, &mut b, 2, "one").await;
    finish(b).await;
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
    let rig = Rig::start("fallback").await;
    let ports = candidate_ports(&rig.mcp.url());
    let Ok(_holder) = std::net::TcpListener::bind(("127.0.0.1", ports[0])) else {
        eprintln!(
            "port {} is taken by someone else; nothing to prove",
            ports[0]
        );
        return;
    };
    let mut b = rig.spawn(&[], &[]);
    b.initialize().await;
    echo(&rig, &mut b, 1, "f").await;
    finish(b).await;
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
    let init = json!({
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "0"}
    });
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
    finish(b).await;
}

/// A bridge killed mid-sign-in leaves no stale lock: the next bridge signs in at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_killed_during_a_sign_in_does_not_block_the_next() {
    let rig = Rig::start("killed").await;
    let idle = rig.browser.idle.clone();
    let mut first = rig.spawn(&[], &[("BROWSER", idle.as_str())]);
    let init = json!({
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "0"}
    });
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
    finish(b).await;
    assert_eq!(rig.browser.opened().len(), 2);
    assert_eq!(
        rig.oauth.authorize_count(),
        1,
        "only the second browser visited the page"
    );
}
