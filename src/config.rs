//! The validated configuration the bridge runs with ([`BridgeConfig`]), and the checks that
//! catch user mistakes before any network I/O: a header that is not `Name: value`, a `${VAR}`
//! that is not set, a header the transport owns, no place to keep state. [`crate::cli`] fills
//! it from the command line. Nothing here logs header values.

use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Url;

use crate::auth::AuthConfig;
use crate::net::EndpointError;
use crate::policy::audit::AuditTarget;
use crate::policy::Policy;
use crate::upstream::{ProtocolMode, TransportMode};

/// Everything the bridge needs to run, validated.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// The remote MCP endpoint; with `discover_core`, where ListApiMcpServerCores is called
    /// until the bridge replaces it with the account's Core endpoint.
    pub url: Url,
    /// No URL was given: the endpoint is the AccessKey account's Core edition.
    pub discover_core: bool,
    /// Static headers sent on every upstream request; values are marked sensitive so they never
    /// show in `Debug` output.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Resolved transport strategy (the `/sse` default already applied).
    pub transport: TransportMode,
    /// `--protocol`: which MCP era the bridge may speak to the server.
    pub protocol: ProtocolMode,
    pub auth: AuthConfig,
    pub connect_timeout: Duration,
    /// `None` means no limit.
    pub request_timeout: Option<Duration>,
    pub shutdown_grace: Duration,
    /// `--max-message-size`: the largest message relayed in either direction.
    pub max_message_size: usize,
    /// `--max-in-flight`: client messages relayed at once before stdin reading pauses.
    pub max_in_flight: usize,
    /// `--keep-alive`: how often to ping the server (`None`: never).
    pub keep_alive: Option<Duration>,
    /// The tool policy (`--allow-tools`, `--read-only`, …).
    pub policy: Policy,
    /// `--audit-log`.
    pub audit: Option<AuditTarget>,
}

/// A configuration mistake; every message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error("invalid --header {header:?}: expected \"Name: value\" (for example \"Authorization: Bearer ${{TOKEN}}\")")]
    HeaderSyntax { header: String },
    #[error(
        "invalid --header name {name:?}: header names are letters, digits and !#$%&'*+-.^_`|~"
    )]
    HeaderName { name: String },
    #[error("invalid value for --header {name:?}: header values cannot contain control characters or newlines")]
    HeaderValue { name: String },
    #[error("--header {name:?} cannot be set by hand: alibridge manages it for the MCP transport")]
    ReservedHeader { name: String },
    #[error("environment variable {var} is not set, but --header {name:?} uses ${{{var}}}; export it or pass the value directly")]
    UnsetVariable { var: String, name: String },
    /// A credential flag (`--ims-endpoint`, `--boundary-policy`, the OAuth client flags).
    #[error("{0}")]
    Credentials(String),
    /// A flag of `alibridge proxy`.
    #[error("{0}")]
    Proxy(String),
    /// A tool-policy flag (`--allow-tools`, `--region`, `--safety-policy`, `--audit-log`).
    #[error("{0}")]
    Policy(String),
    #[error("cannot tell where to keep state (sign-ins, locks): set ALIBRIDGE_HOME (or HOME)")]
    NoStateDir,
    /// No URL was given, and the endpoint cannot be found (only AccessKeys can find it).
    #[error(
        "no MCP endpoint URL was given: {0}. Pass the endpoint URL (copy it from the OpenAPI MCP \
         Server console), or drop that flag to find the account's Core endpoint with AccessKeys"
    )]
    NoUrl(String),
}

/// Headers the transport owns; letting users set them would break the session.
const RESERVED_HEADERS: &[&str] = &[
    "accept",
    "content-type",
    "content-length",
    "host",
    "mcp-session-id",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    "last-event-id",
    "transfer-encoding",
];

/// The state directory: `ALIBRIDGE_HOME`, else the platform's config directory + `alibridge`
/// (`$XDG_CONFIG_HOME` or `~/.config` on Linux, `~/Library/Application Support` on macOS,
/// `%APPDATA%` on Windows).
pub fn state_dir(lookup: impl Fn(&str) -> Option<String>) -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    if let Some(h) = lookup(crate::env::ALIBRIDGE_HOME).filter(|h| !h.is_empty()) {
        return Some(PathBuf::from(h));
    }
    let home = || lookup("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
    let base = if cfg!(windows) {
        lookup("APPDATA").map(PathBuf::from)
    } else if cfg!(target_os = "macos") {
        home().map(|h| h.join("Library").join("Application Support"))
    } else {
        lookup("XDG_CONFIG_HOME")
            .filter(|x| !x.is_empty())
            .map(PathBuf::from)
            .or_else(|| home().map(|h| h.join(".config")))
    };
    base.map(|b| b.join("alibridge"))
}

/// Accepts `Name: value` and `Name:value`; expands `${VAR}` in the value.
pub fn parse_header(
    raw: &str,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<(HeaderName, HeaderValue), ConfigError> {
    let (name, value) = raw
        .split_once(':')
        .ok_or_else(|| ConfigError::HeaderSyntax {
            header: redact(raw),
        })?;
    let name = name.trim();
    if name.is_empty() {
        return Err(ConfigError::HeaderSyntax {
            header: redact(raw),
        });
    }
    let header_name =
        HeaderName::from_bytes(name.as_bytes()).map_err(|_| ConfigError::HeaderName {
            name: name.to_string(),
        })?;
    if RESERVED_HEADERS.contains(&header_name.as_str()) {
        return Err(ConfigError::ReservedHeader {
            name: name.to_string(),
        });
    }
    let value = expand_vars(value.trim(), name, lookup)?;
    let mut header_value = HeaderValue::from_str(&value).map_err(|_| ConfigError::HeaderValue {
        name: name.to_string(),
    })?;
    header_value.set_sensitive(true);
    Ok((header_name, header_value))
}

/// Keeps the header name of a malformed `--header` for the error message but never its value:
/// a user who typed `Bearer abc` without a colon must not see the token echoed into a log.
fn redact(raw: &str) -> String {
    match raw.split_once([':', ' ']) {
        Some((name, _)) => format!("{name}…"),
        None if raw.len() > 24 => "(value hidden)".to_string(),
        None => raw.to_string(),
    }
}

/// Expands `${NAME}`; a `$` not followed by `{` stays literal, so values such as `$2a$…` work.
fn expand_vars(
    value: &str,
    header: &str,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start + 2..].find('}') else {
            break;
        };
        let var = &rest[start + 2..start + 2 + len];
        out.push_str(&rest[..start]);
        let val = lookup(var).ok_or_else(|| ConfigError::UnsetVariable {
            var: var.to_string(),
            name: header.to_string(),
        })?;
        out.push_str(&val);
        rest = &rest[start + 3 + len..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "TOKEN" => Some("s3cret".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn header_forms() {
        let (n, v) = parse_header("Authorization: Bearer ${TOKEN}", &env).unwrap();
        assert_eq!(n.as_str(), "authorization");
        assert_eq!(v.to_str().unwrap(), "Bearer s3cret");
        assert!(v.is_sensitive());
        let (n, v) = parse_header("X-Api-Key:abc", &env).unwrap();
        assert_eq!((n.as_str(), v.to_str().unwrap()), ("x-api-key", "abc"));
        let (_, v) = parse_header("X: a${EMPTY}b $2a$ ${unclosed", &env).unwrap();
        assert_eq!(v.to_str().unwrap(), "ab $2a$ ${unclosed");
    }

    #[test]
    fn header_errors_name_the_problem_without_the_value() {
        let e = parse_header("X: ${MISSING}", &env).unwrap_err();
        assert!(e.to_string().contains("MISSING"), "{e}");
        let e = parse_header("Authorization Bearer abcdefghijklmnopqrstuvwxyz", &env).unwrap_err();
        assert!(!e.to_string().contains("abcdefghijklmnop"), "{e}");
        assert!(matches!(
            parse_header("Bad Name: x", &env),
            Err(ConfigError::HeaderName { .. })
        ));
        assert!(matches!(
            parse_header("Mcp-Session-Id: x", &env),
            Err(ConfigError::ReservedHeader { .. })
        ));
    }

    #[test]
    fn state_dir_prefers_alibridge_home() {
        let env = |k: &str| match k {
            "ALIBRIDGE_HOME" => Some("/x/state".to_string()),
            "HOME" => Some("/home/u".to_string()),
            _ => None,
        };
        assert_eq!(
            state_dir(env).unwrap(),
            std::path::PathBuf::from("/x/state")
        );
        let env = |k: &str| (k == "HOME").then(|| "/home/u".to_string());
        let d = state_dir(env).unwrap();
        assert!(
            d.ends_with("alibridge") && d.starts_with("/home/u"),
            "{}",
            d.display()
        );
    }
}
