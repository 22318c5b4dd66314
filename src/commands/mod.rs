//! One file per command. Each exposes `run(args) -> anyhow::Result<ExitCode>`; `main.rs`
//! parses and dispatches, and [`crate::error`] renders failures.

pub mod bridge;
pub mod login;
pub mod logout;
pub mod pre_check;
pub mod proxy;
pub mod status;

/// The state directory (`ALIBRIDGE_HOME` or the platform default), or a usage error saying
/// how to set it.
pub fn state_home() -> anyhow::Result<std::path::PathBuf> {
    crate::cli::resolve::state_home(|k| std::env::var(k).ok())
        .map_err(|e| crate::error::UsageError::Config(e).into())
}
