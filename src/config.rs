//! Turns raw command-line values ([`crate::cli`]) into a validated [`BridgeConfig`].
//!
//! This is where user mistakes are caught and explained before any network I/O: a malformed
//! URL, plain http to a remote host, a header that is not `Name: value`, a `${VAR}` that is not
//! set. Nothing here logs header values.

use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Url;

use crate::auth::access_key::safety::{self, SafetyConfig};
use crate::auth::access_key::{chain::endpoint_url, policy, site::Site};
use crate::auth::oauth::OAuthConfig;
use crate::auth::secret::Secret;
use crate::cli::{AccessKeyArgs, AuthMode, BridgeArgs, OAuthArgs, PolicyArgs, TransportMode};
use crate::policy::Policy;

/// Everything the bridge needs to run, validated.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// The remote MCP endpoint.
    pub url: Url,
    /// Static headers sent on every upstream request; values are marked sensitive so they never
    /// show in `Debug` output.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Resolved transport strategy (the `/sse` default already applied).
    pub transport: TransportMode,
    pub auth: AuthConfig,
    pub connect_timeout: Duration,
    /// `None` means no limit.
    pub request_timeout: Option<Duration>,
    pub shutdown_grace: Duration,
    /// `--max-message-size`: the largest message relayed in either direction.
    pub max_message_size: usize,
    /// `--max-in-flight`: client messages relayed at once before stdin reading pauses.
    pub max_in_flight: usize,
    /// The tool policy (`--allow-tools`, `--read-only`, …).
    pub policy: Policy,
    /// `--audit-log`.
    pub audit: Option<AuditTarget>,
}

/// Where the audit log goes.
#[derive(Debug, Clone)]
pub struct AuditTarget {
    pub path: std::path::PathBuf,
    pub max_bytes: u64,
}

/// The credential settings (`--auth` and the AccessKey flags), validated.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub mode: AuthMode,
    /// `--site-type`, when given.
    pub site: Option<Site>,
    pub profile: Option<String>,
    pub ims_endpoint: Option<Url>,
    pub client_id: Option<String>,
    /// A validated boundary policy, trimmed.
    pub boundary_policy: Option<String>,
    pub refresh_skew: Duration,
    /// OAuth settings (used by `oauth`, and by `auto` when no AccessKeys apply).
    pub oauth: OAuthConfig,
    /// What to bind to each token server-side (AccessKeys only).
    pub safety: Option<SafetyConfig>,
}

impl AuthConfig {
    fn resolve(
        mode: AuthMode,
        url: &Url,
        a: &AccessKeyArgs,
        o: &OAuthArgs,
        p: &PolicyArgs,
        lookup: &impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let boundary_policy = match &a.boundary_policy {
            Some(p) => policy::validate(p).map_err(ConfigError::Auth)?,
            None => None,
        };
        let ims_endpoint = match &a.ims_endpoint {
            Some(e) => Some(endpoint_url(e, "--ims-endpoint").map_err(ConfigError::Auth)?),
            None => None,
        };
        Ok(AuthConfig {
            mode,
            site: a.site_type,
            profile: a.profile.clone(),
            ims_endpoint,
            client_id: a.client_id.clone().filter(|c| !c.trim().is_empty()),
            boundary_policy,
            refresh_skew: seconds("token-refresh-skew", a.token_refresh_skew)?,
            oauth: oauth_config(url, o, lookup)?,
            safety: safety_config(a, p)?,
        })
    }
}

/// The policy flags, validated: the [`Policy`] and the audit log's place.
pub fn policy_config(p: &PolicyArgs) -> Result<(Policy, Option<AuditTarget>), ConfigError> {
    let region = match &p.region {
        Some(r) => Some(crate::policy::parse_region(r).map_err(ConfigError::Auth)?),
        None => None,
    };
    let policy = Policy {
        allow: p.allow_tools.iter().flat_map(|l| l.0.clone()).collect(),
        deny: p.deny_tools.iter().flat_map(|l| l.0.clone()).collect(),
        read_only: p.read_only,
        confirm_writes: p.confirm_writes,
        region,
    };
    let audit = p.audit_log.as_ref().map(|path| AuditTarget {
        path: path.clone(),
        max_bytes: p.audit_log_max_size,
    });
    Ok((policy, audit))
}

/// The server-side binding for AccessKey tokens: `--safety-policy`, and `--allow-tools` as a
/// `toolPolicy` when every entry is an exact name (a pattern cannot be expressed there, so
/// such a list is enforced locally only). `None` when nothing is to be bound.
pub fn safety_config(
    a: &AccessKeyArgs,
    p: &PolicyArgs,
) -> Result<Option<SafetyConfig>, ConfigError> {
    let expr = match &a.safety_policy {
        Some(e) => safety::validate_expr(e).map_err(ConfigError::Auth)?,
        None => None,
    };
    let allow: Vec<&crate::policy::glob::Glob> = p.allow_tools.iter().flat_map(|l| &l.0).collect();
    let mut allowed_tools: Vec<String> = Vec::new();
    if allow.iter().all(|g| g.is_exact()) {
        for g in allow {
            if !allowed_tools.iter().any(|t| t == g.as_str()) {
                allowed_tools.push(g.as_str().to_string());
            }
        }
    }
    let endpoint = match &a.safety_policy_endpoint {
        Some(e) => Some(endpoint_url(e, "--safety-policy-endpoint").map_err(ConfigError::Auth)?),
        None => None,
    };
    let cfg = SafetyConfig {
        expr,
        allowed_tools,
        endpoint,
    };
    Ok(cfg.binds_anything().then_some(cfg))
}

/// A configuration mistake; every message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid URL {url:?}: {reason}; give the full endpoint, e.g. https://host/mcp")]
    InvalidUrl { url: String, reason: String },
    #[error(
        "refusing plain http to {host}: traffic and credentials would travel unencrypted; \
         use https, or pass --allow-http if this network is trusted"
    )]
    PlainHttp { host: String },
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
    #[error("--{flag} must be a non-negative number of seconds, got {value}")]
    BadDuration { flag: &'static str, value: f64 },
    #[error("{0}")]
    Auth(String),
}

/// Headers the transport owns; letting users set them would break the session.
const RESERVED_HEADERS: &[&str] = &[
    "accept",
    "content-type",
    "content-length",
    "host",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
    "transfer-encoding",
];

impl BridgeConfig {
    /// Validates `args`, reading `${VAR}` values through `lookup` (the process environment in
    /// production, a map in tests).
    pub fn resolve(
        args: &BridgeArgs,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let url = parse_url(args.url.as_deref().unwrap_or_default(), args.allow_http)?;
        let auth = AuthConfig::resolve(
            args.auth,
            &url,
            &args.ak,
            &args.oauth,
            &args.policy,
            &lookup,
        )?;
        let (policy, audit) = policy_config(&args.policy)?;
        let headers = args
            .headers
            .iter()
            .filter(|h| !h.trim().is_empty())
            .map(|h| parse_header(h, &lookup))
            .collect::<Result<Vec<_>, _>>()?;
        let transport = args.transport.unwrap_or_else(|| default_transport(&url));
        Ok(BridgeConfig {
            url,
            headers,
            transport,
            auth,
            connect_timeout: seconds("connect-timeout", args.connect_timeout)?,
            request_timeout: Some(seconds("request-timeout", args.request_timeout)?)
                .filter(|d| !d.is_zero()),
            shutdown_grace: seconds("shutdown-grace", args.shutdown_grace)?,
            // Both bounded by their parsers (4 GiB, 65536), so these conversions cannot fail on
            // the 64-bit targets alibridge ships for; saturate rather than panic elsewhere.
            max_message_size: usize::try_from(args.max_message_size).unwrap_or(usize::MAX),
            max_in_flight: usize::try_from(args.max_in_flight).unwrap_or(usize::MAX),
            policy,
            audit,
        })
    }
}

/// Resolves the OAuth flags for `server`.
pub fn oauth_config(
    server: &Url,
    o: &OAuthArgs,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<OAuthConfig, ConfigError> {
    let client_metadata_url = match &o.oauth_client_metadata_url {
        Some(raw) => {
            let u = Url::parse(raw).map_err(|e| {
                ConfigError::Auth(format!("--oauth-client-metadata-url {raw:?}: {e}"))
            })?;
            if u.scheme() != "https" {
                return Err(ConfigError::Auth(
                    "--oauth-client-metadata-url must be an https URL".into(),
                ));
            }
            Some(u)
        }
        None => None,
    };
    let home = state_dir(&lookup).ok_or_else(|| {
        ConfigError::Auth("cannot tell where to keep state: set ALIBRIDGE_HOME (or HOME)".into())
    })?;
    Ok(OAuthConfig {
        server: server.clone(),
        client_id: o.oauth_client_id.clone().filter(|c| !c.trim().is_empty()),
        client_secret: lookup(crate::env::ALIBRIDGE_OAUTH_CLIENT_SECRET)
            .filter(|s| !s.is_empty())
            .map(Secret::new),
        client_metadata_url,
        callback_port: o.callback_port,
        auth_timeout: seconds("auth-timeout", o.auth_timeout)?,
        store: o.token_store,
        home,
        no_browser: o.no_browser,
        site: Site::infer(server),
    })
}

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

/// The transport spec says a client should accept either kind of URL; an `/sse` path is the
/// conventional legacy endpoint, so trying SSE first there saves a doomed POST.
fn default_transport(url: &Url) -> TransportMode {
    if url.path().trim_end_matches('/').ends_with("/sse") {
        TransportMode::SseFirst
    } else {
        TransportMode::HttpFirst
    }
}

fn seconds(flag: &'static str, value: f64) -> Result<Duration, ConfigError> {
    Duration::try_from_secs_f64(value).map_err(|_| ConfigError::BadDuration { flag, value })
}

/// Parses the endpoint and applies the plain-http rule: loopback is fine (local servers and
/// tunnels), anything else needs `--allow-http`.
pub fn parse_url(raw: &str, allow_http: bool) -> Result<Url, ConfigError> {
    let invalid = |reason: String| ConfigError::InvalidUrl {
        url: raw.to_string(),
        reason,
    };
    let url = Url::parse(raw.trim()).map_err(|e| invalid(e.to_string()))?;
    match url.scheme() {
        "https" => {}
        "http" => {
            let host = url.host_str().unwrap_or_default().to_string();
            if !allow_http && !is_loopback(&url) {
                return Err(ConfigError::PlainHttp { host });
            }
        }
        other => return Err(invalid(format!("scheme {other:?} is not http or https"))),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it has no host".into()));
    }
    Ok(url)
}

/// True for `localhost`, `*.localhost`, 127.0.0.0/8 and ::1.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Accepts `Name: value` and `Name:value`; expands `${VAR}` in the value.
fn parse_header(
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
    fn plain_http_only_for_loopback_unless_allowed() {
        assert!(parse_url("http://127.0.0.1:8080/mcp", false).is_ok());
        assert!(parse_url("http://localhost/mcp", false).is_ok());
        assert!(parse_url("http://[::1]:1/mcp", false).is_ok());
        assert!(matches!(
            parse_url("http://example.com/mcp", false),
            Err(ConfigError::PlainHttp { .. })
        ));
        assert!(parse_url("http://example.com/mcp", true).is_ok());
        assert!(parse_url("ftp://example.com/mcp", true).is_err());
        assert!(parse_url("not a url", true).is_err());
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

    #[test]
    fn sse_paths_default_to_sse_first() {
        let u = |s| Url::parse(s).unwrap();
        assert_eq!(
            default_transport(&u("https://h/sse")),
            TransportMode::SseFirst
        );
        assert_eq!(
            default_transport(&u("https://h/a/sse/")),
            TransportMode::SseFirst
        );
        assert_eq!(
            default_transport(&u("https://h/mcp")),
            TransportMode::HttpFirst
        );
    }
}
