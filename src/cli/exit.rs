//! The exit codes: one table, from which `--help` ([`help`]) and [`crate::error::report`] take
//! them; the README's table is checked against it by a test (`tests/e2e/cli.rs`).

use std::process::ExitCode;

/// How a run of `alibridge` ended, as the shell sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: a normal end.
    Ok,
    /// 1: a runtime failure, or a command whose answer is "no".
    Failure,
    /// 2: the command line, the configuration or the credentials are the user's to fix.
    Usage,
    /// 3: `pre-check` waited for the browser in vain.
    Timeout,
}

impl Exit {
    /// Every exit code, in order.
    pub const ALL: [Exit; 4] = [Exit::Ok, Exit::Failure, Exit::Usage, Exit::Timeout];

    /// The number the process exits with.
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Failure => 1,
            Exit::Usage => 2,
            Exit::Timeout => 3,
        }
    }

    /// What the code means, as `--help` and the README say it.
    pub fn meaning(self) -> &'static str {
        match self {
            Exit::Ok => {
                "Normal end: stdin closed, SIGTERM/SIGINT, or the client closed stdout; a command \
                 that did its job (`proxy` after SIGTERM/SIGINT)."
            }
            Exit::Failure => {
                "Runtime failure (stdin unreadable, cannot listen, a service refused, \
                 `--safety-policy` could not be bound to the token). `pre-check`: denied or not \
                 installed. `logout <URL>`, `remove`: no such sign-in or entry. `doctor`: a check \
                 failed. `tools`: no pins for the URL, or a name to approve is not held back. The \
                 message says why."
            }
            Exit::Usage => {
                "Bad command line, configuration or credentials: unknown flag, bad URL, plain \
                 http refused, malformed header, unset `${VAR}`, invalid `--boundary-policy`, no \
                 usable AccessKeys with `--auth ak`, unsupported profile mode, no state \
                 directory, a log file that cannot be opened; `add`: a different entry of that \
                 name without `--force`, a bad `--name`/`--env`, a scope the client lacks."
            }
            Exit::Timeout => "`pre-check`: the browser did not come back within `--auth-timeout`.",
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}

/// The `--help` epilogue: the exit-code table, then where the docs are.
pub fn help() -> String {
    let mut text = String::from("Exit codes:\n");
    for e in Exit::ALL {
        text.push_str(&format!("  {}  {}\n", e.code(), e.meaning()));
    }
    text.push_str("\nDocs: https://github.com/alibridge/alibridge#readme");
    text
}
