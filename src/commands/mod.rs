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
    crate::config::state_dir(|k| std::env::var(k).ok()).ok_or_else(|| {
        anyhow::Error::new(crate::error::UsageError::Config(
            crate::config::ConfigError::Auth(
                "cannot tell where to keep state: set ALIBRIDGE_HOME (or HOME)".into(),
            ),
        ))
    })
}
