//! Exit codes and the one place errors reach the user.
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | normal end: stdin closed, SIGINT/SIGTERM, or the client closed stdout; a command that did its job |
//! | 1    | runtime failure (stdin unreadable, cannot listen, the service refused); `logout` of a URL with no sign-in; `remove` of an entry that is not there; `doctor` with a failed check; `pre-check` denied or not installed |
//! | 2    | bad command line or configuration (clap errors use 2 as well), credentials that cannot be found or used |
//! | 3    | `pre-check`: the browser did not come back in time |
//!
//! The same table is in `--help` ([`crate::cli::EXIT_CODES_HELP`]) and the README. [`report`]
//! prints a failure and its causes (each once) and picks the code; everything else
//! meant for the person at the terminal goes through [`crate::logging::notice`].

use std::process::ExitCode;

/// A mistake in the command line or configuration (including credentials that cannot be
/// found or used): exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Credentials(#[from] crate::auth::AuthError),
    #[error(transparent)]
    Clients(crate::clients::ClientsError),
}

/// Prints `error: …` and each cause on stderr, and picks the exit code.
pub fn report(err: &anyhow::Error) -> ExitCode {
    eprintln!("alibridge: error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
    if err.downcast_ref::<UsageError>().is_some() {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    }
}
