//! From the command line to validated configurations: the step between clap's raw values and
//! what the layers below run with. User mistakes are caught and explained here, before any
//! network I/O; `lookup` reads the environment (a map in tests) for `${VAR}` expansion, the
//! OAuth client secret and the state directory.

use reqwest::Url;

use super::flags::{AccessKeyArgs, CredentialArgs, OAuthArgs, SafetyArgs};
use super::{BridgeArgs, ProxyArgs};
use crate::auth::access_key::chain::endpoint_url;
use crate::auth::access_key::discovery;
use crate::auth::access_key::policy;
use crate::auth::access_key::safety::{self, SafetyConfig};
use crate::auth::access_key::site::{is_openapi_mcp_host, Site};
use crate::auth::oauth::OAuthConfig;
use crate::auth::secret::Secret;
use crate::auth::{AuthConfig, AuthMode};
use crate::config::{parse_header, state_dir, BridgeConfig, ConfigError};
use crate::net::parse_endpoint;
use crate::policy::audit::AuditTarget;
use crate::policy::server_side;
use crate::policy::Policy;
use crate::proxy::access::ProxyToken;
use crate::proxy::config::{default_upstream, ProxyConfig};
use crate::proxy::rules::AccessRules;
use crate::upstream::TransportMode;

impl BridgeArgs {
    /// Validates the bridge's flags.
    pub fn resolve(
        &self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<BridgeConfig, ConfigError> {
        let (url, discover_core) = match self.url.as_deref() {
            Some(raw) => (
                parse_endpoint(raw, self.front.connection.http.allow_http)?,
                false,
            ),
            None => (self.core_start()?, true),
        };
        let auth = self
            .front
            .credential
            .auth_config(&self.front.safety, &url, &lookup)?;
        let (policy, audit) = self.front.safety.resolve()?;
        let headers = self
            .headers
            .iter()
            .filter(|h| !h.trim().is_empty())
            .map(|h| parse_header(h, &lookup))
            .collect::<Result<Vec<_>, _>>()?;
        let transport = self
            .transport
            .unwrap_or_else(|| TransportMode::default_for(&url));
        if discover_core
            && headers
                .iter()
                .any(|(n, _)| n == reqwest::header::AUTHORIZATION)
        {
            return Err(ConfigError::NoUrl(
                "an Authorization --header is given, so the endpoint cannot be found with \
                 AccessKeys"
                    .into(),
            ));
        }
        Ok(BridgeConfig {
            url,
            discover_core,
            headers,
            transport,
            protocol: self.protocol,
            auth,
            connect_timeout: self.front.connection.connect_timeout,
            request_timeout: Some(self.request_timeout).filter(|d| !d.is_zero()),
            shutdown_grace: self.front.shutdown.shutdown_grace,
            // Both bounded by their parsers (4 GiB, 65536), so these conversions cannot fail on
            // the 64-bit targets alibridge ships for; saturate rather than panic elsewhere.
            max_message_size: usize::try_from(self.max_message_size).unwrap_or(usize::MAX),
            max_in_flight: usize::try_from(self.max_in_flight).unwrap_or(usize::MAX),
            keep_alive: Some(self.keep_alive).filter(|d| !d.is_zero()),
            policy,
            audit,
        })
    }
}

impl BridgeArgs {
    /// No URL: only AccessKeys can find the account's Core endpoint. Returns where
    /// ListApiMcpServerCores will be called (the bridge replaces it with the answer).
    fn core_start(&self) -> Result<Url, ConfigError> {
        let external = self
            .front
            .credential
            .bearer_token
            .as_deref()
            .is_some_and(|t| !t.trim().is_empty())
            || self
                .front
                .credential
                .token_command
                .as_deref()
                .is_some_and(|t| !t.trim().is_empty());
        let refused = match self.front.credential.auth {
            _ if external => Some("--bearer-token/--token-command is given"),
            AuthMode::Auto | AuthMode::Ak => None,
            AuthMode::Oauth => Some("--auth oauth is given"),
            AuthMode::None => Some("--auth none is given"),
        };
        if let Some(why) = refused {
            return Err(ConfigError::NoUrl(format!(
                "{why}, and only AccessKeys can find the account's Core endpoint"
            )));
        }
        match &self.front.credential.ak.discovery_endpoint {
            Some(e) => endpoint_url(e, "--discovery-endpoint").map_err(ConfigError::Credentials),
            None => Ok(discovery::default_endpoint(
                self.front.credential.ak.site.site_type.unwrap_or(Site::Cn),
            )),
        }
    }
}

impl CredentialArgs {
    /// The credential settings for the upstream `server`.
    fn auth_config(
        &self,
        safety: &SafetyArgs,
        server: &Url,
        lookup: &impl Fn(&str) -> Option<String>,
    ) -> Result<AuthConfig, ConfigError> {
        let a = &self.ak;
        let boundary_policy = match &a.boundary_policy {
            Some(p) => policy::validate(p).map_err(ConfigError::Credentials)?,
            None => None,
        };
        let boundary_policy = if safety.read_only {
            Some(policy::with_read_only(boundary_policy.as_deref()).map_err(ConfigError::Policy)?)
        } else {
            boundary_policy
        };
        let ims_endpoint = match &a.ims_endpoint {
            Some(e) => Some(endpoint_url(e, "--ims-endpoint").map_err(ConfigError::Credentials)?),
            None => None,
        };
        let discovery_endpoint = match &a.discovery_endpoint {
            Some(e) => {
                Some(endpoint_url(e, "--discovery-endpoint").map_err(ConfigError::Credentials)?)
            }
            None => None,
        };
        Ok(AuthConfig {
            mode: self.auth,
            site: a.site.site_type,
            profile: a.profile.profile.clone(),
            ims_endpoint,
            discovery_endpoint,
            client_id: a.client.client_id.clone().filter(|c| !c.trim().is_empty()),
            boundary_policy,
            refresh_skew: a.token_refresh_skew,
            oauth: self.oauth.resolve(server, lookup)?,
            safety: a.safety(safety)?,
            external: match (&self.bearer_token, &self.token_command) {
                (Some(t), _) if !t.trim().is_empty() => {
                    Some(crate::auth::External::Bearer(Secret::new(t.trim())))
                }
                (_, Some(c)) if !c.trim().is_empty() => {
                    Some(crate::auth::External::Command(c.clone()))
                }
                _ => None,
            },
        })
    }
}

impl SafetyArgs {
    /// The tool policy and the audit log's place.
    fn resolve(&self) -> Result<(Policy, Option<AuditTarget>), ConfigError> {
        let region = match &self.region {
            Some(r) => Some(crate::policy::parse_region(r).map_err(ConfigError::Policy)?),
            None => None,
        };
        let policy = Policy {
            allow: self.allow_tools.iter().flat_map(|l| l.0.clone()).collect(),
            deny: self.deny_tools.iter().flat_map(|l| l.0.clone()).collect(),
            allow_api: self.allow_api.iter().flat_map(|l| l.0.clone()).collect(),
            deny_api: self.deny_api.iter().flat_map(|l| l.0.clone()).collect(),
            read_only: self.read_only,
            confirm_writes: self.confirm_writes,
            region,
            server_enforced: false,
            confirm_timeout: Some(self.confirm_timeout),
            pin_tools: !self.no_pin_tools && (self.pin_tools || self.confirm_writes),
        };
        let audit = self.audit_log.as_ref().map(|path| AuditTarget {
            path: path.clone(),
            max_bytes: self.audit_log_max_size,
        });
        Ok((policy, audit))
    }
}

impl AccessKeyArgs {
    /// The server-side binding for AccessKey tokens: `--safety-policy`, and `--allow-tools` as a
    /// `toolPolicy` when every entry is an exact name (a pattern cannot be expressed there, so
    /// such a list is enforced locally only). `None` when nothing is to be bound.
    fn safety(&self, p: &SafetyArgs) -> Result<Option<SafetyConfig>, ConfigError> {
        let user = match &self.safety_policy {
            Some(e) => safety::validate_expr(e).map_err(ConfigError::Policy)?,
            None => None,
        };
        let deny_api: Vec<_> = p.deny_api.iter().flat_map(|l| l.0.clone()).collect();
        let allow_api: Vec<_> = p.allow_api.iter().flat_map(|l| l.0.clone()).collect();
        let ours = server_side::flag_rules(p.read_only, &deny_api, &allow_api);
        let expr = match server_side::combine(&ours, user.as_deref()) {
            Some(e) => safety::validate_expr(&e).map_err(|e| {
                ConfigError::Policy(format!(
                    "the safety policy compiled from --read-only/--allow-api/--deny-api and \
                     --safety-policy is not valid: {e}"
                ))
            })?,
            None => None,
        };
        let allow: Vec<&crate::policy::glob::Glob> =
            p.allow_tools.iter().flat_map(|l| &l.0).collect();
        let mut allowed_tools: Vec<String> = Vec::new();
        if allow.iter().all(|g| g.is_exact()) {
            for g in allow {
                if !allowed_tools.iter().any(|t| t == g.as_str()) {
                    allowed_tools.push(g.as_str().to_string());
                }
            }
        }
        let endpoint = match &self.safety_policy_endpoint {
            Some(e) => {
                Some(endpoint_url(e, "--safety-policy-endpoint").map_err(ConfigError::Policy)?)
            }
            None => None,
        };
        let cfg = SafetyConfig {
            from_user: user.is_some(),
            expr,
            enforces_flags: !ours.is_empty(),
            allowed_tools,
            endpoint,
        };
        Ok(cfg.binds_anything().then_some(cfg))
    }
}

impl OAuthArgs {
    /// The OAuth settings for `server` (the bridge's upstream, or `login`'s URL).
    pub fn resolve(
        &self,
        server: &Url,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<OAuthConfig, ConfigError> {
        let client_metadata_url = match &self.oauth_client_metadata_url {
            Some(raw) => {
                let u = Url::parse(raw).map_err(|e| {
                    ConfigError::Credentials(format!("--oauth-client-metadata-url {raw:?}: {e}"))
                })?;
                if u.scheme() != "https" {
                    return Err(ConfigError::Credentials(
                        "--oauth-client-metadata-url must be an https URL".into(),
                    ));
                }
                Some(u)
            }
            None => None,
        };
        let home = state_dir(&lookup).ok_or(ConfigError::NoStateDir)?;
        Ok(OAuthConfig {
            server: server.clone(),
            client_id: self
                .oauth_client_id
                .clone()
                .filter(|c| !c.trim().is_empty()),
            client_secret: lookup(crate::env::ALIBRIDGE_OAUTH_CLIENT_SECRET)
                .filter(|s| !s.is_empty())
                .map(Secret::new),
            client_metadata_url,
            callback_port: self.browser.callback_port,
            auth_timeout: self.browser.auth_timeout,
            store: self.store.token_store,
            home,
            no_browser: self.browser.no_browser,
            site: Site::infer(server),
        })
    }
}

impl ProxyArgs {
    /// Validates `alibridge proxy`'s flags.
    pub fn resolve(
        &self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<ProxyConfig, ConfigError> {
        let (upstream, upstream_note) = self.upstream_url()?;
        let auth = self
            .front
            .credential
            .auth_config(&self.front.safety, &upstream, &lookup)?;
        let (policy, audit) = self.front.safety.resolve()?;
        let list_servers = match self.front.credential.auth {
            AuthMode::None => false,
            AuthMode::Ak => true,
            // The listing is signed with AccessKeys: only the service's own hosts get it
            // unasked, as with the credential under `auto`.
            AuthMode::Auto | AuthMode::Oauth => is_openapi_mcp_host(&upstream),
        };
        // `[::1]` is accepted for `::1`.
        let host = self
            .host
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return Err(ConfigError::Proxy(
                "--host is empty; give an address such as 127.0.0.1".into(),
            ));
        }
        let token = match &self.proxy_token {
            Some(t) => Some(ProxyToken::new(t).map_err(ConfigError::Proxy)?),
            None => None,
        };
        if self.max_connections == 0 {
            return Err(ConfigError::Proxy(
                "--max-connections must be at least 1 (default 256)".into(),
            ));
        }
        let entries = |lists: &[crate::proxy::rules::EntryList]| {
            lists.iter().flat_map(|l| l.0.clone()).collect()
        };
        Ok(ProxyConfig {
            host,
            port: self.port,
            upstream,
            upstream_note,
            rules: AccessRules {
                allowed: entries(&self.allowed_servers),
                blocked: entries(&self.blocked_servers),
            },
            allowed_hosts: self
                .allowed_hosts
                .iter()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .collect(),
            auth,
            list_servers,
            connect_timeout: self.front.connection.connect_timeout,
            shutdown_grace: self.front.shutdown.shutdown_grace,
            token,
            max_connections: self.max_connections,
            // At most 4 GiB (the parser's bound): fits a usize on the 64-bit targets.
            max_body: usize::try_from(self.max_body_size).unwrap_or(usize::MAX),
            policy,
            audit,
        })
    }

    /// `--upstream-url` (https assumed without a scheme; http only for loopback unless
    /// `--allow-http`), or the site's host. Only scheme and authority are kept.
    fn upstream_url(&self) -> Result<(Url, Option<String>), ConfigError> {
        let raw = match &self.upstream_url {
            Some(u) if !u.trim().is_empty() => u.trim().to_string(),
            _ => default_upstream(self.front.credential.ak.site.site_type.unwrap_or(Site::Cn))
                .to_string(),
        };
        let with_scheme = if raw.contains("://") {
            raw
        } else {
            format!("https://{raw}")
        };
        let mut url = parse_endpoint(&with_scheme, self.front.connection.http.allow_http)?;
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
}

/// The state directory (`ALIBRIDGE_HOME` or the platform default), or the error saying how to
/// set it.
pub fn state_home(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<std::path::PathBuf, ConfigError> {
    state_dir(lookup).ok_or(ConfigError::NoStateDir)
}

#[cfg(test)]
mod tests {
    use super::super::{Cli, Command};
    use super::*;
    use crate::net::EndpointError;
    use clap::Parser;

    fn proxy(args: &[&str]) -> Result<ProxyConfig, ConfigError> {
        let mut argv = vec!["alibridge", "proxy"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).unwrap();
        let Some(Command::Proxy(p)) = cli.command else {
            panic!("not the proxy command")
        };
        p.resolve(|k| (k == "HOME").then(|| "/home/u".to_string()))
    }

    fn bridge(args: &[&str]) -> Result<BridgeConfig, ConfigError> {
        let mut argv = vec!["alibridge"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).unwrap();
        cli.bridge
            .resolve(|k| (k == "HOME").then(|| "/home/u".to_string()))
    }

    #[test]
    fn bridge_defaults_and_the_sse_transport_default() {
        let c = bridge(&["https://h.example/mcp"]).unwrap();
        assert_eq!(c.transport, TransportMode::HttpFirst);
        assert_eq!(c.request_timeout, None);
        assert_eq!(c.connect_timeout, std::time::Duration::from_secs(10));
        assert_eq!(c.auth.mode, AuthMode::Auto);
        let c = bridge(&["https://h.example/sse"]).unwrap();
        assert_eq!(c.transport, TransportMode::SseFirst);
        assert!(matches!(
            bridge(&["http://h.example/mcp"]),
            Err(ConfigError::Endpoint(EndpointError::PlainHttp { .. }))
        ));
        assert!(matches!(
            bridge(&["https://h.example/mcp", "--boundary-policy", "{"]),
            Err(ConfigError::Credentials(_))
        ));
    }

    #[test]
    fn defaults_follow_aliyun_mcp_proxy() {
        let c = proxy(&[]).unwrap();
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 8088));
        assert_eq!(
            c.upstream.as_str(),
            "https://openapi-mcp.cn-hangzhou.aliyuncs.com/"
        );
        assert!(c.rules.is_empty() && c.list_servers);
        let c = proxy(&["--site-type", "intl"]).unwrap();
        assert_eq!(
            c.upstream.as_str(),
            "https://openapi-mcp.ap-southeast-1.aliyuncs.com/"
        );
    }

    #[test]
    fn upstream_url_keeps_only_scheme_and_host() {
        let c = proxy(&["--upstream-url", "openapi-mcp.cn-shanghai.aliyuncs.com"]).unwrap();
        assert_eq!(
            c.upstream.as_str(),
            "https://openapi-mcp.cn-shanghai.aliyuncs.com/"
        );
        assert!(c.upstream_note.is_none());
        let c = proxy(&["--upstream-url", "http://127.0.0.1:9/accounts/1/mcp?x=1"]).unwrap();
        assert_eq!(c.upstream.as_str(), "http://127.0.0.1:9/");
        assert!(c.upstream_note.unwrap().contains("/accounts/1/mcp"));
        assert!(
            !c.list_servers,
            "auto on a host that is not OpenAPI MCP's does not send AccessKeys"
        );
        assert!(matches!(
            proxy(&["--upstream-url", "http://example.com"]),
            Err(ConfigError::Endpoint(EndpointError::PlainHttp { .. }))
        ));
        assert!(proxy(&["--upstream-url", "http://example.com", "--allow-http"]).is_ok());
    }

    #[test]
    fn rules_and_hosts_collect_every_flag_value() {
        let c = proxy(&[
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
        assert!(!proxy(&["--auth", "none"]).unwrap().list_servers);
    }

    #[test]
    fn token_and_limits() {
        let c = proxy(&[]).unwrap();
        assert!(c.token.is_none());
        assert_eq!((c.max_connections, c.max_body), (256, 32 << 20));
        let c = proxy(&[
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
        assert!(matches!(
            proxy(&["--proxy-token", " "]),
            Err(ConfigError::Proxy(_))
        ));
        assert!(matches!(
            proxy(&["--max-connections", "0"]),
            Err(ConfigError::Proxy(_))
        ));
    }

    #[test]
    fn no_state_directory_is_its_own_error() {
        let cli = Cli::try_parse_from(["alibridge", "https://h.example/mcp"]).unwrap();
        assert!(matches!(
            cli.bridge.resolve(|_| None),
            Err(ConfigError::NoStateDir)
        ));
    }
}
