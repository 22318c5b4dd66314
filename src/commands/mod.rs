//! One file per command. Each exposes `run(args) -> anyhow::Result<ExitCode>`; `main.rs`
//! parses and dispatches, and [`crate::error`] renders failures.

pub mod bridge;
pub mod pre_check;
