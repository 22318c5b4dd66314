//! External tokens: `--token-command` with a script that counts its runs (first use, reuse
//! while valid, again when expiring, again on 401, a failing helper), and `--bearer-token`
//! from the environment, against the rmcp server requiring the tokens the test accepts.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::support::bridge::Bridge;
use crate::support::check::{auth_error, tool_text};
use crate::support::home::TempHome;
use crate::support::mcp_server::{ServerOptions, TestServer};

/// The tokens the server accepts, changeable by the test.
#[derive(Clone, Default)]
struct Accepted(Arc<Mutex<HashSet<String>>>);

impl Accepted {
    fn set(&self, tokens: &[&str]) {
        *self.0.lock().unwrap() = tokens.iter().map(|s| s.to_string()).collect();
    }
}

async fn server(accepted: &Accepted) -> TestServer {
    let a = accepted.clone();
    TestServer::start_with(ServerOptions::requiring_bearer(move |t| {
        a.0.lock().unwrap().contains(t)
    }))
    .await
}

/// A helper script: each run appends a line to `runs` and prints `tok-<n>` (as JSON with
/// `expires_in` when given); `fail` makes it complain on stderr and exit 3.
fn script(home: &TempHome, expires_in: Option<u64>, fail: bool) -> (String, PathBuf) {
    let runs = home.path().join("runs");
    let print = match expires_in {
        Some(s) => format!("printf '{{\"access_token\":\"tok-%s\",\"expires_in\":{s}}}' \"$n\""),
        None => "printf 'tok-%s\\n' \"$n\"".to_string(),
    };
    let body = if fail {
        "echo 'helper: vault is locked' >&2\nexit 3\n".to_string()
    } else {
        format!(
            "echo run >> '{}'\nn=$(wc -l < '{}' | tr -d ' ')\n{print}\n",
            runs.display(),
            runs.display()
        )
    };
    let path = home.write("token.sh", &format!("#!/bin/sh\n{body}"));
    (format!("sh '{}'", path.display()), runs)
}

fn runs(path: &PathBuf) -> usize {
    std::fs::read_to_string(path).map_or(0, |s| s.lines().count())
}

fn spawn(server: &TestServer, home: &TempHome, cmd: &str) -> Bridge {
    Bridge::spawn_isolated(
        [
            server.url().as_str(),
            "--transport",
            "http-only",
            "--token-command",
            cmd,
        ],
        std::iter::empty::<(&str, &str)>(),
        home.path(),
    )
}

/// Run once and reused while valid; run again when the server refuses the token (401), and
/// the refused request is retried with the new token.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_command_runs_once_then_again_on_401() {
    let accepted = Accepted::default();
    accepted.set(&["tok-1"]);
    let server = server(&accepted).await;
    let home = TempHome::new("tokcmd-401");
    let (cmd, count) = script(&home, Some(3600), false);
    let mut bridge = spawn(&server, &home, &cmd);
    bridge.initialize().await;
    assert_eq!(
        tool_text(&bridge.call_tool(1, "echo", json!({"text": "a"})).await),
        "a"
    );
    assert_eq!(runs(&count), 1, "one run for several requests");
    accepted.set(&["tok-2"]);
    assert_eq!(
        tool_text(&bridge.call_tool(2, "echo", json!({"text": "b"})).await),
        "b"
    );
    assert_eq!(runs(&count), 2, "run again after the 401");
    let f = bridge.finish().await;
    assert!(
        !f.stderr.contains("tok-1") && !f.stderr.contains("tok-2"),
        "{}",
        f.stderr
    );
}

/// A token whose `expires_in` is within the refresh skew is replaced before each request; a
/// bare token (no expiry) is kept.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_command_runs_again_before_expiry() {
    let accepted = Accepted::default();
    accepted.set(&["tok-1", "tok-2", "tok-3", "tok-4", "tok-5", "tok-6"]);
    let server = server(&accepted).await;
    let home = TempHome::new("tokcmd-expiry");
    let (cmd, count) = script(&home, Some(1), false);
    let mut bridge = spawn(&server, &home, &cmd);
    bridge.initialize().await;
    let before = runs(&count);
    tool_text(&bridge.call_tool(1, "echo", json!({"text": "a"})).await);
    let after_one = runs(&count);
    assert!(after_one > before, "an expiring token is fetched anew");
    tool_text(&bridge.call_tool(2, "echo", json!({"text": "b"})).await);
    assert!(runs(&count) > after_one, "and again for the next request");
    bridge.finish().await;

    let home = TempHome::new("tokcmd-bare");
    let (cmd, count) = script(&home, None, false);
    let mut bridge = spawn(&server, &home, &cmd);
    bridge.initialize().await;
    tool_text(&bridge.call_tool(1, "echo", json!({"text": "a"})).await);
    assert_eq!(runs(&count), 1);
    bridge.finish().await;
}

/// A failing helper: the request gets an auth error saying so, the helper's stderr is passed
/// through.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_command_failure_is_a_clear_error() {
    let accepted = Accepted::default();
    let server = server(&accepted).await;
    let home = TempHome::new("tokcmd-fail");
    let (cmd, _) = script(&home, None, true);
    let mut bridge = spawn(&server, &home, &cmd);
    bridge
        .request(0, "initialize", crate::support::check::init_params())
        .await;
    let message = auth_error(&bridge.response(0).await);
    assert!(message.contains("--token-command failed"), "{message}");
    let f = bridge.finish().await;
    assert!(f.stderr.contains("helper: vault is locked"), "{}", f.stderr);
}

/// `ALIBRIDGE_BEARER_TOKEN` is sent as is and never shown; a refusal says how to fix it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_from_the_environment() {
    let accepted = Accepted::default();
    accepted.set(&["static-token-Zq8"]);
    let server = server(&accepted).await;
    let home = TempHome::new("bearer");
    let mut bridge = Bridge::spawn_isolated(
        [server.url().as_str(), "--transport", "http-only"],
        [("ALIBRIDGE_BEARER_TOKEN", "static-token-Zq8")],
        home.path(),
    );
    bridge.initialize().await;
    assert_eq!(
        tool_text(&bridge.call_tool(1, "echo", json!({"text": "a"})).await),
        "a"
    );
    accepted.set(&[]);
    let resp = bridge.call_tool(2, "echo", json!({"text": "b"})).await;
    let message = auth_error(&resp);
    assert!(message.contains("ALIBRIDGE_BEARER_TOKEN"), "{message}");
    let f = bridge.finish().await;
    assert!(!f.stderr.contains("static-token-Zq8"), "{}", f.stderr);
    assert!(f.stderr.contains("auth: bearer token"), "{}", f.stderr);
}
