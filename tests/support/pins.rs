//! The harness of the tool-pinning suites (issue 20, `--pin-tools`): bridges against a
//! [`super::pin_server::PinServer`] that share one scratch home across runs (the pins live in
//! `$ALIBRIDGE_HOME/pins/`), `alibridge tools <URL>` in that home, and reading what the bridge
//! said about pins (its `alibridge: pins:` stderr lines, its `--pin-tools` refusals, its
//! `elicitation/create` questions).

use serde_json::{json, Value};

use super::bridge::{isolated_command, output, Bridge, Finished};
use super::home::TempHome;

/// How the first-use line starts (`… pinned <N> tools`).
pub const FIRST_USE: &str = "alibridge: pins: first use of ";
/// How the line about withheld tools starts.
pub const WITHHELD: &str = "alibridge: pins: withheld";
/// What every stderr line about pins starts with.
pub const PINS: &str = "alibridge: pins:";
/// The rule of every refusal the pins make.
pub const RULE: &str = "--pin-tools";

/// `alibridge <url> --transport http-only --auth none <extra…>`, isolated in `home` (no
/// pinning flag: see [`pinned_bridge`]).
pub fn bridge_in(url: &str, home: &TempHome, extra: &[&str]) -> Bridge {
    bridge_with_env(url, home, extra, &[])
}

/// [`bridge_in`] with extra environment variables.
pub fn bridge_with_env(url: &str, home: &TempHome, extra: &[&str], env: &[(&str, &str)]) -> Bridge {
    let mut args = vec![url, "--transport", "http-only", "--auth", "none"];
    args.extend_from_slice(extra);
    Bridge::spawn_isolated(args, env.iter().copied(), home.path())
}

/// [`bridge_in`] with `--pin-tools`.
pub fn pinned_bridge(url: &str, home: &TempHome, extra: &[&str]) -> Bridge {
    let mut args = vec!["--pin-tools"];
    args.extend_from_slice(extra);
    bridge_in(url, home, &args)
}

/// One whole run of a client without elicitation: a pinned bridge in `home`, initialize,
/// every page of `tools/list`, end. The names it listed and what the run left behind.
pub async fn list_run(url: &str, home: &TempHome, extra: &[&str]) -> (Vec<String>, Finished) {
    let mut b = pinned_bridge(url, home, extra);
    b.initialize_plain().await;
    let names = b.list_all_names(1).await;
    (names, b.finish().await)
}

/// The `alibridge: pins:` lines of `stderr`.
pub fn pin_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.starts_with(PINS)).collect()
}

/// Asserts `stderr` has exactly one first-use line and that it says `pinned <n> tools`.
pub fn assert_first_use(stderr: &str, n: usize) {
    let lines: Vec<&str> = pin_lines(stderr)
        .into_iter()
        .filter(|l| l.starts_with(FIRST_USE))
        .collect();
    assert_eq!(lines.len(), 1, "one first-use line; stderr:\n{stderr}");
    assert!(
        lines[0].contains(&format!("pinned {n} tools")),
        "the first-use line counts {n} tools: {}",
        lines[0]
    );
}

/// Asserts `stderr` has a line about withheld tools.
pub fn assert_withheld_line(stderr: &str) {
    assert!(
        pin_lines(stderr).iter().any(|l| l.starts_with(WITHHELD)),
        "a withheld line; stderr:\n{stderr}"
    );
}

/// The message of a `--pin-tools` refusal of a `tools/call` of `tool` (kind `policy`), after
/// checking that it names the tool, says `what` (`changed` or `new`) and points at
/// `alibridge tools`. Panics on anything else.
pub fn pin_refusal(resp: &Value, tool: &str, what: &str) -> String {
    assert!(resp.get("result").is_none(), "refused, not relayed: {resp}");
    let (rule, msg) = super::check::policy_refusal(resp);
    assert_eq!(rule, RULE, "{resp}");
    assert!(msg.contains(tool), "names {tool}: {msg}");
    assert!(msg.contains(what), "says {what}: {msg}");
    assert!(msg.contains("alibridge tools"), "names the command: {msg}");
    msg
}

/// The message of a `--pin-tools` error answering a `tools/list` (no result relayed).
pub fn pin_list_error(resp: &Value) -> String {
    assert!(
        resp.get("result").is_none(),
        "the listing was not relayed: {:.400}",
        resp.to_string()
    );
    let e = &resp["error"];
    assert!(e.is_object(), "an error: {resp}");
    e["message"].as_str().expect("a message").to_string()
}

/// Whether `msg` is the bridge's own pin question.
pub fn is_pin_question(msg: &Value) -> bool {
    msg["method"] == "elicitation/create"
        && msg["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("alibridge-pin-"))
}

/// Waits for the bridge's pin question among the messages from `seen[from..]` on, checks its
/// form (a required boolean `confirm`) and returns it.
pub async fn pin_question(b: &mut Bridge, from: usize) -> Value {
    let q = b.seen_or_next(from, is_pin_question).await;
    let schema = &q["params"]["requestedSchema"];
    assert_eq!(schema["properties"]["confirm"]["type"], "boolean", "{q}");
    assert!(
        schema["required"]
            .as_array()
            .is_some_and(|r| r.contains(&json!("confirm"))),
        "confirm is required: {q}"
    );
    q
}

/// The question's text.
pub fn question_text(q: &Value) -> &str {
    q["params"]["message"].as_str().expect("a message")
}

/// Answers the question `q` with `result` (e.g. `{"action": "decline"}`).
pub async fn answer(b: &mut Bridge, q: &Value, result: Value) {
    b.send(&json!({"jsonrpc": "2.0", "id": q["id"], "result": result}))
        .await;
}

/// The accepting answer: `{"action": "accept", "content": {"confirm": true}}`.
pub fn accept() -> Value {
    json!({"action": "accept", "content": {"confirm": true}})
}

/// `alibridge tools <args…>` isolated in `home`: (exit code, stdout, stderr).
pub async fn tools_cli(home: &TempHome, args: &[&str]) -> (i32, String, String) {
    let mut cmd = isolated_command(home.path());
    cmd.arg("tools").args(args);
    output(cmd).await
}

/// The permission bits of `path`.
#[cfg(unix)]
pub fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `names`, sorted (for listings whose order the test does not pin).
pub fn sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names
}
