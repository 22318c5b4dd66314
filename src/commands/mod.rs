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

/// Opens `--audit-log` when it is set; a file that cannot be opened or is refused (a link, not
/// a regular file, another user's) is a usage error. The bridge and the proxy both start only
/// with a working audit log. The error already names the path and the flag, so it is shown as
/// it is, once.
pub(crate) fn open_audit(
    target: Option<&crate::policy::audit::AuditTarget>,
) -> anyhow::Result<Option<crate::policy::audit::AuditLog>> {
    let Some(a) = target else {
        return Ok(None);
    };
    crate::policy::audit::AuditLog::open(&a.path, a.max_bytes)
        .map(Some)
        .map_err(|e| {
            crate::error::UsageError::from(crate::config::ConfigError::Policy(e.to_string())).into()
        })
}

/// `host[:port]` of the upstream, as the audit log names it.
pub(crate) fn host_port(url: &reqwest::Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => String::new(),
    }
}

/// A failure of the client-config layer, as exit code 2 when it is the command line's to fix.
pub fn clients_error(e: crate::clients::ClientsError) -> anyhow::Error {
    if e.is_usage() {
        crate::error::UsageError::Clients(e).into()
    } else {
        e.into()
    }
}
