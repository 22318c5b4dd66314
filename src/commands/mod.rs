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
pub mod tools;

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
    crate::policy::audit::AuditLog::open(&a.path, a.max_bytes, crate::logging::notice_args)
        .map(Some)
        .map_err(|e| {
            crate::error::UsageError::from(crate::config::ConfigError::Policy(e.to_string())).into()
        })
}

/// What both front ends build their tool policy from (the relay's `ToolPolicy`, the proxy's
/// `ProxyPolicy`): the flags, the opened audit log, the upstream as the log names it, and who
/// the calls are made as. `None` when no policy flag and no `--audit-log` is set.
pub(crate) struct PolicyParts {
    pub policy: crate::policy::Policy,
    pub audit: Option<crate::policy::audit::AuditLog>,
    pub upstream: String,
    pub identity: crate::policy::Identity,
}

pub(crate) fn policy_parts(
    policy: &crate::policy::Policy,
    audit: Option<&crate::policy::audit::AuditTarget>,
    upstream: &reqwest::Url,
    credential: std::sync::Arc<dyn crate::auth::Credential>,
) -> anyhow::Result<Option<PolicyParts>> {
    let audit = open_audit(audit)?;
    if !policy.is_active() && audit.is_none() {
        return Ok(None);
    }
    tracing::debug!(?policy, "tool policy");
    Ok(Some(PolicyParts {
        policy: policy.clone(),
        audit,
        upstream: host_port(upstream),
        identity: Box::new(move || credential.identity()),
    }))
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

/// What the safety flags mean for this credential, shared by the bridge and the proxy: a
/// `--safety-policy` no token would carry is a usage error; with AccessKeys the compiled policy
/// is bound to a first token now (a bridge that cannot enforce it never starts) and the local
/// policy learns that the server judges what it cannot read; one line says which guarantees
/// are server-enforced and which are local only.
pub(crate) async fn set_up_safety(
    policy: &mut crate::policy::Policy,
    safety: Option<&crate::auth::access_key::safety::SafetyConfig>,
    selection: &crate::auth::Selection,
) -> anyhow::Result<()> {
    let is_ak = selection.kind == crate::auth::CredentialKind::AccessKey;
    let reason = &selection.reason;
    if let Some(safety) = safety {
        if !is_ak && safety.from_user {
            return Err(
                crate::error::UsageError::from(crate::config::ConfigError::Policy(format!(
                    "--safety-policy is bound to tokens minted from Alibaba Cloud AccessKeys, but \
                 alibridge authenticates with {reason}; use --auth ak with AccessKeys, or drop \
                 --safety-policy and limit tools with --allow-tools / --read-only (enforced \
                 locally)"
                )))
                .into(),
            );
        }
        if is_ak {
            let mut scratch = reqwest::header::HeaderMap::new();
            selection
                .credential
                .apply(&mut scratch)
                .await
                .map_err(anyhow::Error::new)?;
            policy.server_enforced = safety.enforces_flags;
        }
    }
    if let Some(line) = safety_line(policy, is_ak) {
        crate::logging::notice(format_args!("safety: {line}"));
    }
    Ok(())
}

/// The start-up line naming which limits the server enforces and which only alibridge does
/// (`doctor` reports it too).
pub(crate) fn safety_line(policy: &crate::policy::Policy, is_ak: bool) -> Option<String> {
    let mut flags = Vec::new();
    if policy.read_only {
        flags.push("--read-only");
    }
    if !policy.allow_api.is_empty() || !policy.deny_api.is_empty() {
        flags.push("--allow-api/--deny-api");
    }
    let mut local = Vec::new();
    if !policy.allow.is_empty() || !policy.deny.is_empty() {
        local.push("--allow-tools/--deny-tools");
    }
    if policy.confirm_writes {
        local.push("--confirm-writes");
    }
    if flags.is_empty() && local.is_empty() {
        return None;
    }
    Some(if policy.server_enforced {
        let rest = if local.is_empty() {
            String::new()
        } else {
            format!("; {} local only", local.join(", "))
        };
        format!(
            "{} enforced by alibridge and server-side (a safety policy bound to every token){rest}",
            flags.join(", ")
        )
    } else {
        let why = if is_ak {
            "no API limit is bound to the token"
        } else {
            "this credential carries no server-side policy (AccessKeys do)"
        };
        flags.extend(local);
        format!("{} enforced by alibridge only ({why})", flags.join(", "))
    })
}
