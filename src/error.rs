//! The one place errors reach the user: [`report`] prints a failure and each of its causes
//! once ([`crate::logging::error_chain`]) and picks the exit code from the one table,
//! [`crate::cli::exit::Exit`] (also in `--help` and, checked by a test, the README). Everything
//! else meant for the person at the terminal goes through [`crate::logging::notice`].

use std::process::ExitCode;

use crate::cli::exit::Exit;

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
    /// `--log-file` cannot be opened.
    #[error("cannot open the log file")]
    LogFile(#[source] std::io::Error),
}

/// Prints `error: …` and each cause on stderr, and picks the exit code: [`Exit::Usage`] for a
/// [`UsageError`], else [`Exit::Failure`].
pub fn report(err: &anyhow::Error) -> ExitCode {
    let chain = crate::logging::error_chain(err.as_ref());
    let mut lines = chain.iter();
    if let Some(first) = lines.next() {
        crate::logging::notice(format_args!("error: {first}"));
    }
    for cause in lines {
        eprintln!("  caused by: {cause}");
    }
    let exit = if err.downcast_ref::<UsageError>().is_some() {
        Exit::Usage
    } else {
        Exit::Failure
    };
    exit.into()
}

/// `err` and its causes on one line, for a report that shows a failure without ending the run
/// (a `doctor` check).
pub fn one_line(err: &anyhow::Error) -> String {
    crate::logging::error_line(err.as_ref())
}
