//! `alibridge proxy` flags ([`crate::cli::ProxyArgs`]) validated into a [`ProxyConfig`]:
//! the upstream host (default: the site's OpenAPI MCP host), the access rules, who may connect
//! (`--proxy-token`, `--max-connections`), the body-size cap, the credential settings (built the
//! same way as the bridge's) and the timeouts.

use std::time::Duration;

use reqwest::Url;

use super::access::ProxyToken;
use super::rules::AccessRules;
use crate::auth::access_key::chain::endpoint_url;
use crate::auth::access_key::policy;
use crate::auth::access_key::site::{is_openapi_mcp_host, Site};
use crate::cli::{AuthMode, ProxyArgs};
use crate::config::{self, AuthConfig, ConfigError};

/// Everything the proxy needs, validated.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// `--host` as given (an IP address or a name).
    pub host: String,
    pub port: u16,
    /// Scheme and authority only (path `/`, no query).
    pub upstream: Url,
    /// Set when `--upstream-url` had a path or query, which is ignored.
    pub upstream_note: Option<String>,
    pub rules: AccessRules,
    /// `--allowed-hosts`.
    pub allowed_hosts: Vec<String>,
    pub auth: AuthConfig,
    /// Whether to call ListApiMcpServers at start (signed with AccessKeys: `--auth ak`, or an
    /// OpenAPI MCP upstream).
    pub list_servers: bool,
    pub connect_timeout: Duration,
    pub shutdown_grace: Duration,
    /// `--proxy-token`: clients must present it as a bearer.
    pub token: Option<ProxyToken>,
    /// `--max-connections` (at least 1).
    pub max_connections: usize,
    /// `--max-body-size` in bytes.
    pub max_body: usize,
    /// The tool policy, applied per server to the MCP traffic forwarded.
    pub policy: crate::policy::Policy,
    /// `--audit-log`.
    pub audit: Option<config::AuditTarget>,
}

/// The OpenAPI MCP host of each site (what `aliyun mcp-proxy` forwards to by default).
pub fn default_upstream(site: Site) -> &'static str {
    match site {
        Site::Cn => "https://openapi-mcp.cn-hangzhou.aliyuncs.com/",
        Site::Intl => "https://openapi-mcp.ap-southeast-1.aliyuncs.com/",
    }
}

impl ProxyConfig {
    /// Validates `args`; `lookup` reads the environment (a map in tests).
    pub fn resolve(
        args: &ProxyArgs,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let (upstream, upstream_note) = upstream(args)?;
        let a = &args.ak;
        let auth = AuthConfig {
            mode: args.auth,
            site: a.site_type,
            profile: a.profile.clone(),
            ims_endpoint: match &a.ims_endpoint {
                Some(e) => Some(endpoint_url(e, "--ims-endpoint").map_err(ConfigError::Auth)?),
                None => None,
            },
            client_id: a.client_id.clone().filter(|c| !c.trim().is_empty()),
            boundary_policy: match &a.boundary_policy {
                Some(p) => policy::validate(p).map_err(ConfigError::Auth)?,
                None => None,
            },
            refresh_skew: seconds("token-refresh-skew", a.token_refresh_skew)?,
            oauth: config::oauth_config(&upstream, &args.oauth, &lookup)?,
            safety: config::safety_config(a, &args.policy)?,
        };
        let (policy, audit) = config::policy_config(&args.policy)?;
        let list_servers = match args.auth {
            AuthMode::None => false,
            AuthMode::Ak => true,
            // The listing is signed with AccessKeys: only the service's own hosts get it
            // unasked, as with the credential under `auto`.
            AuthMode::Auto | AuthMode::Oauth => is_openapi_mcp_host(&upstream),
        };
        // `[::1]` is accepted for `::1`.
        let host = args
            .host
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return Err(ConfigError::Auth(
                "--host is empty; give an address such as 127.0.0.1".into(),
            ));
        }
        let token = match &args.proxy_token {
            Some(t) => Some(ProxyToken::new(t).map_err(ConfigError::Auth)?),
            None => None,
        };
        if args.max_connections == 0 {
            return Err(ConfigError::Auth(
                "--max-connections must be at least 1 (default 256)".into(),
            ));
        }
        Ok(ProxyConfig {
            host,
            port: args.port,
            upstream,
            upstream_note,
            rules: AccessRules {
                allowed: args
                    .allowed_servers
                    .iter()
                    .flat_map(|l| l.0.clone())
                    .collect(),
                blocked: args
                    .blocked_servers
                    .iter()
                    .flat_map(|l| l.0.clone())
                    .collect(),
            },
            allowed_hosts: args
                .allowed_hosts
                .iter()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .collect(),
            auth,
            list_servers,
            connect_timeout: seconds("connect-timeout", args.connect_timeout)?,
            shutdown_grace: seconds("shutdown-grace", args.shutdown_grace)?,
            token,
            max_connections: args.max_connections,
            max_body: args.max_body_size,
            policy,
            audit,
        })
    }
}

/// `--upstream-url` (https assumed without a scheme; http only for loopback unless
/// `--allow-http`), or the site's host. Only scheme and authority are kept.
fn upstream(args: &ProxyArgs) -> Result<(Url, Option<String>), ConfigError> {
    let raw = match &args.upstream_url {
        Some(u) if !u.trim().is_empty() => u.trim().to_string(),
        _ => default_upstream(args.ak.site_type.unwrap_or(Site::Cn)).to_string(),
    };
    let with_scheme = if raw.contains("://") {
        raw
    } else {
        format!("https://{raw}")
    };
    let mut url = config::parse_url(&with_scheme, args.allow_http)?;
    let note = (url.path() != "/" || url.query().is_some()).then(|| {
        format!(
            "--upstream-url: the path {:?} is ignored; each client's own path is forwarded \
             (give clients http://<proxy>{} instead)",
            url.path(),
            url.path()
        )
    });
    url.set_path("/");
    url.set_query(None);
    url.set_fragment(None);
    Ok((url, note))
}

/// Largest `--max-body-size`: bodies are held in memory.
const MAX_BODY_LIMIT: usize = 4 << 30;

/// Parses a byte size: `33554432`, `512KiB`, `32MiB`, `1GiB` (K/KB/KiB, M/MB/MiB and G/GB/GiB
/// are all powers of 1024; case does not matter).
pub fn parse_size(raw: &str) -> Result<usize, String> {
    let t = raw.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let bad = || format!("{raw:?} is not a size: give bytes, or a number with KiB, MiB or GiB");
    let n: usize = digits.parse().map_err(|_| bad())?;
    let unit = unit.trim().to_ascii_lowercase();
    let factor: usize = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    match n.checked_mul(factor) {
        Some(0) => Err(format!("{raw:?}: the size must be more than 0")),
        Some(v) if v <= MAX_BODY_LIMIT => Ok(v),
        _ => Err(format!("{raw:?} is more than the 4 GiB this flag allows")),
    }
}

fn seconds(flag: &'static str, value: f64) -> Result<Duration, ConfigError> {
    Duration::try_from_secs_f64(value).map_err(|_| ConfigError::BadDuration { flag, value })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn resolve(args: &[&str]) -> Result<ProxyConfig, ConfigError> {
        let mut argv = vec!["alibridge", "proxy"];
        argv.extend_from_slice(args);
        let cli = crate::cli::Cli::try_parse_from(argv).unwrap();
        let Some(crate::cli::Command::Proxy(p)) = cli.command else {
            panic!("not the proxy command")
        };
        ProxyConfig::resolve(&p, |k| (k == "HOME").then(|| "/home/u".to_string()))
    }

    #[test]
    fn defaults_follow_aliyun_mcp_proxy() {
        let c = resolve(&[]).unwrap();
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 8088));
        assert_eq!(
            c.upstream.as_str(),
            "https://openapi-mcp.cn-hangzhou.aliyuncs.com/"
        );
        assert!(c.rules.is_empty() && c.list_servers);
        let c = resolve(&["--site-type", "intl"]).unwrap();
        assert_eq!(
            c.upstream.as_str(),
            "https://openapi-mcp.ap-southeast-1.aliyuncs.com/"
        );
    }

    #[test]
    fn upstream_url_keeps_only_scheme_and_host() {
        let c = resolve(&["--upstream-url", "openapi-mcp.cn-shanghai.aliyuncs.com"]).unwrap();
        assert_eq!(
            c.upstream.as_str(),
            "https://openapi-mcp.cn-shanghai.aliyuncs.com/"
        );
        assert!(c.upstream_note.is_none());
        let c = resolve(&["--upstream-url", "http://127.0.0.1:9/accounts/1/mcp?x=1"]).unwrap();
        assert_eq!(c.upstream.as_str(), "http://127.0.0.1:9/");
        assert!(c.upstream_note.unwrap().contains("/accounts/1/mcp"));
        assert!(
            !c.list_servers,
            "auto on a host that is not OpenAPI MCP's does not send AccessKeys"
        );
        assert!(matches!(
            resolve(&["--upstream-url", "http://example.com"]),
            Err(ConfigError::PlainHttp { .. })
        ));
        assert!(resolve(&["--upstream-url", "http://example.com", "--allow-http"]).is_ok());
    }

    #[test]
    fn rules_and_hosts_collect_every_flag_value() {
        let c = resolve(&[
            "--allowed-servers",
            "ecs, oss",
            "--allowed-servers",
            "/acs/x",
            "--blocked-servers",
            "ram",
            "--allowed-hosts",
            "host.docker.internal",
        ])
        .unwrap();
        assert_eq!(c.rules.allowed.len(), 3);
        assert_eq!(c.rules.blocked.len(), 1);
        assert_eq!(c.allowed_hosts, ["host.docker.internal"]);
        assert!(!resolve(&["--auth", "none"]).unwrap().list_servers);
    }

    #[test]
    fn token_and_limits() {
        let c = resolve(&[]).unwrap();
        assert!(c.token.is_none());
        assert_eq!((c.max_connections, c.max_body), (256, 32 << 20));
        let c = resolve(&[
            "--proxy-token",
            "abc-123",
            "--max-connections",
            "3",
            "--max-body-size",
            "2KiB",
        ])
        .unwrap();
        assert!(c.token.is_some());
        assert_eq!((c.max_connections, c.max_body), (3, 2048));
        assert!(resolve(&["--proxy-token", " "]).is_err());
        assert!(resolve(&["--max-connections", "0"]).is_err());
    }

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size(" 32 MiB "), Ok(32 << 20));
        assert_eq!(parse_size("32m"), Ok(32 << 20));
        assert_eq!(parse_size("1GB"), Ok(1 << 30));
        for bad in [
            "",
            "MiB",
            "-1",
            "1.5MiB",
            "10 parsecs",
            "0",
            "5GiB",
            "99999999999999999999",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
