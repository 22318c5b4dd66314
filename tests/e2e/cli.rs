//! The command line: help, version, validation errors and their exit codes. These run the real
//! binary and need no server.

use std::process::{Command, Output};

use crate::support::bridge::bin;

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env_remove("ALIBRIDGE_HEADERS")
        .env_remove("SECRET_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run alibridge")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `--help` documents every flag together with its environment variable.
#[test]
fn help_lists_every_flag_with_its_env_var() {
    let o = run(&["--help"], &[]);
    assert_eq!(o.status.code(), Some(0));
    let help = String::from_utf8_lossy(&o.stdout);
    for (flag, env) in [
        ("--header", "ALIBRIDGE_HEADERS"),
        ("--transport", "ALIBRIDGE_TRANSPORT"),
        ("--allow-http", "ALIBRIDGE_ALLOW_HTTP"),
        ("--auth", "ALIBRIDGE_AUTH"),
        ("--connect-timeout", "ALIBRIDGE_CONNECT_TIMEOUT"),
        ("--request-timeout", "ALIBRIDGE_REQUEST_TIMEOUT"),
        ("--shutdown-grace", "ALIBRIDGE_SHUTDOWN_GRACE"),
        ("--debug", "ALIBRIDGE_DEBUG"),
        ("--log-file", "ALIBRIDGE_LOG_FILE"),
        ("--site-type", "ALIBRIDGE_SITE_TYPE"),
        ("--ims-endpoint", "ALIBRIDGE_IMS_ENDPOINT"),
        ("--client-id", "ALIBRIDGE_CLIENT_ID"),
        ("--boundary-policy", "ALIBRIDGE_BOUNDARY_POLICY"),
        ("--token-refresh-skew", "ALIBRIDGE_TOKEN_REFRESH_SKEW"),
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
        assert!(help.contains(env), "--help lacks {env}");
    }
    assert!(help.contains("Exit codes"), "--help documents exit codes");
    assert!(
        help.contains("pre-check"),
        "--help lists the pre-check command"
    );
    assert!(help.contains("--profile"), "--help lists --profile");
}

/// The exit-code table in `--help` (generated from `src/cli/exit.rs`) and the README's say the
/// same, row for row.
#[test]
fn exit_codes_in_help_match_the_readme() {
    let o = run(&["--help"], &[]);
    assert_eq!(o.status.code(), Some(0));
    let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let help = words(&String::from_utf8_lossy(&o.stdout));
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let table = readme
        .split("## Exit codes")
        .nth(1)
        .expect("the README has an Exit codes section");
    let rows: Vec<(&str, &str)> = table
        .lines()
        .skip_while(|l| !l.starts_with("|---"))
        .skip(1)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').splitn(2, '|').map(str::trim).collect();
            (cells[0], cells[1].trim_end_matches('|').trim())
        })
        .collect();
    assert_eq!(rows.len(), 4, "one README row per exit code: {rows:?}");
    for (code, meaning) in rows {
        let row = format!("{code} {}", words(meaning));
        assert!(
            help.contains(&row),
            "--help lacks the README's row {row:?}:\n{help}"
        );
    }
}

/// `pre-check --help` documents its flags, named as everywhere else (its old `--timeout`
/// still works, unlisted); a missing `--site-type` is a usage error.
#[test]
fn pre_check_help_and_usage() {
    let o = run(&["pre-check", "--help"], &[]);
    assert_eq!(o.status.code(), Some(0));
    let help = String::from_utf8_lossy(&o.stdout);
    for (flag, env) in [
        ("--site-type", "ALIBRIDGE_SITE_TYPE"),
        ("--client-id", "ALIBRIDGE_CLIENT_ID"),
        ("--no-browser", "ALIBRIDGE_NO_BROWSER"),
        ("--auth-timeout", "ALIBRIDGE_AUTH_TIMEOUT"),
        ("--callback-port", "ALIBRIDGE_CALLBACK_PORT"),
    ] {
        assert!(help.contains(flag), "pre-check --help lacks {flag}");
        assert!(
            help.contains(&format!("[env: {env}]")),
            "pre-check --help lacks [env: {env}]:\n{help}"
        );
    }
    assert!(!help.contains("=]"), "no empty values shown:\n{help}");
    assert_eq!(
        run(&["pre-check"], &[("ALIBRIDGE_SITE_TYPE", "")])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        run(&["pre-check", "--site-type", "MARS"], &[])
            .status
            .code(),
        Some(2)
    );
}

/// `--version` prints the crate version.
#[test]
fn version_prints_the_version() {
    let o = run(&["--version"], &[]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains(env!("CARGO_PKG_VERSION")));
}

/// Plain http to a non-loopback host is refused with exit 2 and a pointer to `--allow-http`;
/// stdout stays empty because it belongs to the protocol.
#[test]
fn plain_http_to_a_remote_host_is_refused() {
    let o = run(&["http://example.com/mcp"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--allow-http"), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
}

/// A `${VAR}` that is not set names the variable; the other header's value is not echoed.
#[test]
fn unset_header_variable_is_named() {
    let o = run(
        &[
            "https://example.com/mcp",
            "--header",
            "X-Api-Key: visible-secret-value",
            "--header",
            "Authorization: Bearer ${SECRET_TOKEN}",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("SECRET_TOKEN"), "{err}");
    assert!(
        !err.contains("visible-secret-value"),
        "a header value leaked: {err}"
    );
}

/// A header without a colon is a usage error that does not repeat the would-be token.
#[test]
fn malformed_header_does_not_echo_its_value() {
    let o = run(
        &[
            "https://example.com/mcp",
            "-H",
            "Authorization Bearer sk-live-0123456789abcdef",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("Name: value"), "{err}");
    assert!(
        !err.contains("sk-live-0123456789abcdef"),
        "the value leaked: {err}"
    );
}

/// Unknown flags, a missing URL and malformed URLs exit 2.
#[test]
fn usage_errors_exit_2() {
    assert_eq!(
        run(&["https://example.com/mcp", "--no-such-flag"], &[])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(run(&[], &[]).status.code(), Some(2));
    assert_eq!(run(&["not a url"], &[]).status.code(), Some(2));
    assert_eq!(run(&["ftp://example.com/mcp"], &[]).status.code(), Some(2));
    assert_eq!(
        run(
            &["https://example.com/mcp", "--transport", "carrier-pigeon"],
            &[]
        )
        .status
        .code(),
        Some(2)
    );
}

/// Headers can come from `ALIBRIDGE_HEADERS` (one per line), validated like `--header`.
#[test]
fn headers_from_the_environment_are_validated() {
    let o = run(
        &["https://example.com/mcp"],
        &[("ALIBRIDGE_HEADERS", "Good: 1\nMcp-Session-Id: x")],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("Mcp-Session-Id"), "{}", stderr(&o));
}

/// A report whose reader went away (`alibridge status | head -0`) ends quietly with exit 0, as
/// Unix tools do, instead of panicking with a backtrace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_a_report_quietly() {
    let home = crate::support::home::TempHome::new("closed-stdout");
    let mut cmd = crate::support::bridge::isolated_command(home.path());
    cmd.arg("status")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn alibridge status");
    drop(child.stdout.take()); // the reader is gone before anything is written
    let out = child.wait_with_output().await.expect("status ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
