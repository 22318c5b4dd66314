//! Exit codes and the one place errors are printed.
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | normal end: stdin closed, SIGINT/SIGTERM, or the client closed stdout |
//! | 1    | runtime failure (e.g. stdin unreadable, TLS setup failed) |
//! | 2    | bad command line or configuration (clap errors use 2 as well) |

use std::process::ExitCode;

/// A mistake in the command line or configuration (including credentials that cannot be
/// found or used): exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Credentials(#[from] crate::auth::AuthError),
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
