//! One file per command. Each exposes `run(args) -> anyhow::Result<ExitCode>`; `main.rs`
//! parses and dispatches, and [`crate::error`] renders failures.

pub mod add;
pub mod bridge;
pub mod doctor;
pub mod list;
pub mod login;
pub mod logout;
pub mod pre_check;
pub mod proxy;
pub mod remove;
pub mod status;

/// The state directory (`ALIBRIDGE_HOME` or the platform default), or a usage error saying
/// how to set it.
pub fn state_home() -> anyhow::Result<std::path::PathBuf> {
    crate::cli::resolve::state_home(|k| std::env::var(k).ok())
        .map_err(|e| crate::error::UsageError::Config(e).into())
}

/// A failure of the client-config layer, as exit code 2 when it is the command line's to fix.
pub fn clients_error(e: crate::clients::ClientsError) -> anyhow::Error {
    if e.is_usage() {
        crate::error::UsageError::Clients(e).into()
    } else {
        e.into()
    }
}
