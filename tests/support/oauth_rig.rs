//! The OAuth rig of the sign-in suites (`oauth`, `oauth_race`, `oauth_trust`): the local
//! authorization server and the protected MCP server of [`super::oauth_server`], a temporary
//! `HOME`, and a `$BROWSER` that approves at once; bridges and commands run isolated from the
//! machine (tokens in a file store, never the keychain). Unix only: the browser is a shell
//! script.
#![cfg(unix)]

use std::path::PathBuf;

use serde_json::json;

use super::bridge::{isolated_command, output, Bridge};
use super::check::assert_no_secrets;
use super::home::TempHome;
use super::oauth_server::{AsOptions, OAuthServer, ProtectedMcp, ProtectedOptions};

/// A pre-registered client's secret (passed only through ALIBRIDGE_OAUTH_CLIENT_SECRET).
pub const CLIENT_SECRET: &str = "pre-registered-Secret-7Hq2Vx9Lm4Kz8Rt1";
/// A pre-registered client's id.
pub const CLIENT_ID: &str = "alibridge-confidential-client";

/// The `$BROWSER` of a test: a script that logs the URL it is given, then GETs it with curl,
/// following the authorization server's 302 to the loopback callback. `idle` is a second
/// script that only logs: a user who never finishes signing in.
pub struct Browser {
    pub script: String,
    pub idle: String,
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
    pub fn opened(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// The authorization server, the protected MCP server, a temp `HOME` and a browser.
pub struct Rig {
    pub oauth: OAuthServer,
    pub mcp: ProtectedMcp,
    pub home: TempHome,
    pub browser: Browser,
    /// `--token-store` of every bridge and command: `file` unless a keychain test says so.
    pub store: &'static str,
}

impl Rig {
    pub async fn start(tag: &str) -> Rig {
        Self::start_with(tag, AsOptions::default(), ProtectedOptions::default()).await
    }

    pub async fn start_with(tag: &str, a: AsOptions, p: ProtectedOptions) -> Rig {
        let oauth = OAuthServer::start_with(a).await;
        let mcp = ProtectedMcp::start(&oauth, p).await;
        let home = TempHome::new(&format!("oauth-{tag}"));
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
    pub fn args(&self, extra: &[&str]) -> Vec<String> {
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
    pub fn spawn(&self, extra: &[&str], env: &[(&str, &str)]) -> Bridge {
        let mut args = vec!["--auth", "oauth"];
        args.extend_from_slice(extra);
        self.spawn_raw(&args, env)
    }

    /// Spawns a bridge with exactly `self.args(extra)`.
    pub fn spawn_raw(&self, extra: &[&str], env: &[(&str, &str)]) -> Bridge {
        let mut all: Vec<(&str, &str)> = vec![("BROWSER", self.browser.script.as_str())];
        all.extend_from_slice(env);
        Bridge::spawn_isolated(self.args(extra), all, self.home.path())
    }

    /// Runs `alibridge <args>` (a command such as `status`) isolated like the bridges; returns
    /// (exit code, stdout, stderr).
    pub async fn command(&self, args: &[&str]) -> (i32, String, String) {
        output(self.command_builder(args)).await
    }

    /// `alibridge <args>` isolated like the bridges, `$BROWSER` = the test browser.
    pub fn command_builder(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = isolated_command(self.home.path());
        cmd.args(args).env("BROWSER", &self.browser.script);
        cmd
    }

    /// Signs in with a first bridge (initialize + one call) and stops it; returns its stderr.
    pub async fn sign_in_once(&self) -> String {
        let mut b = self.spawn(&[], &[]);
        b.initialize().await;
        echo(self, &mut b, 1, "hi").await;
        b.finish().await.stderr
    }

    /// Panics if any secret the authorization server handled (tokens, codes, verifiers, client
    /// secrets), or [`CLIENT_SECRET`], appears in `text`.
    pub fn assert_no_secrets(&self, text: &str, what: &str) {
        let mut secrets = self.oauth.secrets();
        assert!(!secrets.is_empty(), "the server handled no secrets");
        secrets.push(CLIENT_SECRET.to_string());
        assert_no_secrets(what, text, &secrets);
    }
}

/// Calls `echo {text}` and asserts it answers `text`; on failure, panics with what the
/// authorization server and the protected server saw, and the bridge's stderr.
pub async fn echo(rig: &Rig, b: &mut Bridge, id: i64, text: &str) {
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
