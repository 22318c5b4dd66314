//! What `alibridge proxy` runs with ([`ProxyConfig`], filled from the command line by
//! [`crate::cli`]): the upstream host (default: the site's OpenAPI MCP host), the access rules,
//! who may connect (`--proxy-token`, `--max-connections`), the body-size cap, the credential
//! settings (the same as the bridge's) and the timeouts.

use std::time::Duration;

use reqwest::Url;

use super::access::ProxyToken;
use super::rules::AccessRules;
use crate::auth::access_key::site::Site;
use crate::auth::AuthConfig;

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
    pub audit: Option<crate::policy::audit::AuditTarget>,
}

/// The OpenAPI MCP host of each site (what `aliyun mcp-proxy` forwards to by default).
pub fn default_upstream(site: Site) -> &'static str {
    match site {
        Site::Cn => "https://openapi-mcp.cn-hangzhou.aliyuncs.com/",
        Site::Intl => "https://openapi-mcp.ap-southeast-1.aliyuncs.com/",
    }
}
