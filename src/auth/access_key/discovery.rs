//! The URL-less start: finds the account's OpenAPI MCP Server **Core edition** endpoint with
//! OpenAPI Explorer's `ListApiMcpServerCores` (version 2024-11-30, ROA `GET
//! /apimcpservercores`, ACS3-signed with the AccessKeys), as Alibaba's `alibabacloud.mcp-proxy`
//! does when it is given no `--server-url`: the first entry's `urls.mcp` is the endpoint.
//!
//! [`CoreEndpoint`] remembers which AccessKey id the endpoint was found with. When the
//! credential files change identity (another `aliyun` profile becomes current, new STS keys),
//! [`CoreEndpoint::current`] discovers again with the new keys, so the bridge follows the
//! account instead of sending one account's token to another account's endpoint.
//!
//! The call goes to the site's OpenAPI MCP host (`--site-type`), or `--discovery-endpoint`.
//! The answer is a peer's input: the URL must be https (http only on loopback), and it must be
//! on an OpenAPI MCP host (`openapi-mcp.<region>.aliyuncs.com`) unless `--discovery-endpoint`
//! named another host, because the AccessKey-minted token will be sent there.

use std::sync::Arc;

use reqwest::Url;
use serde_json::Value;
use tracing::info;

use super::api::{ApiClient, ApiError};
use super::keys::AccessKeys;
use super::site::{is_openapi_mcp_host, Site};
use super::AccessKeyCredential;
use crate::auth::AuthError;
use crate::net::display_url;

pub const ACTION: &str = "ListApiMcpServerCores";
pub const VERSION: &str = "2024-11-30";
pub const PATH: &str = "/apimcpservercores";

/// Why no Core endpoint came out of an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    #[error("{ACTION} answered something other than a list of Core servers")]
    Unexpected,
    #[error(
        "this account has no OpenAPI MCP Server Core edition yet ({ACTION} listed none); create \
         one in the console ({console}) or pass the endpoint URL of another MCP server"
    )]
    NoCores { console: &'static str },
    #[error("the first Core server {ACTION} listed has no urls.mcp")]
    MissingUrl,
    #[error("{ACTION} named {shown:?} as the Core endpoint, which {why}")]
    BadUrl { shown: String, why: &'static str },
}

/// Reads `{"apiMcpServerCores":[{"urls":{"mcp":…}}, …]}`: the first Core's MCP URL, checked.
/// `trusted_host` is the host `--discovery-endpoint` named (also allowed besides the OpenAPI MCP
/// hosts).
pub fn parse(body: &Value, site: Site, trusted_host: Option<&str>) -> Result<Url, CoreError> {
    let list = body
        .get("apiMcpServerCores")
        .and_then(Value::as_array)
        .ok_or(CoreError::Unexpected)?;
    let first = list.first().ok_or(CoreError::NoCores {
        console: site.console_url(),
    })?;
    let raw = first
        .pointer("/urls/mcp")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or(CoreError::MissingUrl)?;
    let bad = |why| CoreError::BadUrl {
        shown: raw.chars().take(200).collect(),
        why,
    };
    let url = Url::parse(raw).map_err(|_| bad("is not a URL"))?;
    match url.scheme() {
        "https" => {}
        "http" if crate::net::is_loopback(&url) => {}
        _ => return Err(bad("is not an https URL")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("carries user info"));
    }
    let trusted = is_openapi_mcp_host(&url)
        || trusted_host.is_some_and(|h| url.host_str().is_some_and(|u| u.eq_ignore_ascii_case(h)));
    if !trusted {
        return Err(bad(
            "is not an OpenAPI MCP host (openapi-mcp.<region>.aliyuncs.com), so no token is sent there",
        ));
    }
    Ok(url)
}

/// The OpenAPI MCP host `ListApiMcpServerCores` is called on for `site` (what Alibaba's proxy
/// uses).
pub fn default_endpoint(site: Site) -> Url {
    let host = match site {
        Site::Cn => "openapi-mcp.cn-hangzhou.aliyuncs.com",
        Site::Intl => "openapi-mcp.ap-southeast-1.aliyuncs.com",
    };
    Url::parse(&format!("https://{host}/")).unwrap_or_else(|_| unreachable!("static host {host}"))
}

/// One `ListApiMcpServerCores` call with `keys`.
pub async fn discover(
    api: &ApiClient,
    endpoint: &Url,
    site: Site,
    keys: &AccessKeys,
    explicit_endpoint: bool,
) -> Result<Url, AuthError> {
    let body = api
        .roa_get(endpoint, PATH, ACTION, VERSION, &[], &keys.api())
        .await
        .map_err(|e| explain(e, keys, site))?;
    let trusted = explicit_endpoint.then(|| endpoint.host_str()).flatten();
    Ok(parse(&body, site, trusted)?)
}

/// Adds the likely fix to a failed call.
fn explain(e: ApiError, keys: &AccessKeys, site: Site) -> AuthError {
    let id = super::masked(&keys.id);
    let status = match &e {
        ApiError::Service { status, .. } => *status,
        _ => 0,
    };
    let code = e.code().unwrap_or_default();
    let hint = if code.starts_with("SignatureDoesNotMatch") {
        format!("the AccessKey secret does not match AccessKey id {id}")
    } else if code.starts_with("InvalidAccessKeyId") {
        format!(
            "AccessKey id {id} does not exist or is disabled (RAM console, AccessKey management)"
        )
    } else if status == 403 || status == 401 {
        format!(
            "the RAM identity of AccessKey {id} may not call openapiexplorer:{ACTION}: attach the \
             system policy AliyunOpenAPIMCPServerStaticCredentialAccess to it"
        )
    } else if matches!(e, ApiError::Unreachable { .. } | ApiError::ForeignOrigin(_)) {
        "check the network and HTTPS_PROXY, or --discovery-endpoint".to_string()
    } else {
        format!(
            "check --site-type (now {}); or pass the endpoint URL from the console ({})",
            site.flag_value(),
            site.console_url()
        )
    };
    AuthError::api(
        format!(
            "could not find this account's OpenAPI MCP Core endpoint, as no URL was given ({hint})"
        ),
        e,
        false,
    )
}

/// The Core endpoint of whichever identity the AccessKey credential holds now.
pub struct CoreEndpoint {
    credential: Arc<AccessKeyCredential>,
    api: ApiClient,
    endpoint: Url,
    explicit_endpoint: bool,
    site: Site,
    /// (AccessKey id, endpoint found with it). Held across a discovery, so concurrent callers
    /// wait for one call instead of racing it.
    found: tokio::sync::Mutex<(String, Url)>,
}

impl CoreEndpoint {
    /// Discovers the endpoint for the credential's current keys (the start-up call).
    pub async fn start(
        credential: Arc<AccessKeyCredential>,
        site: Site,
        endpoint: Option<Url>,
    ) -> Result<(Arc<CoreEndpoint>, Url), AuthError> {
        let api = ApiClient::new().map_err(AuthError::Tls)?;
        let explicit_endpoint = endpoint.is_some();
        let endpoint = endpoint.unwrap_or_else(|| default_endpoint(site));
        let keys = credential.current_keys().await?;
        let url = discover(&api, &endpoint, site, &keys, explicit_endpoint).await?;
        info!(endpoint = %display_url(&url), "found the Core endpoint");
        let me = Arc::new(CoreEndpoint {
            credential,
            api,
            endpoint,
            explicit_endpoint,
            site,
            found: tokio::sync::Mutex::new((keys.id.clone(), url.clone())),
        });
        Ok((me, url))
    }

    /// The endpoint for the identity in use now: the one already found while the AccessKey id
    /// is unchanged, else a new discovery with the new keys (a failure is an error, never a
    /// fall-back to the previous account's endpoint).
    pub async fn current(&self) -> Result<Url, AuthError> {
        let keys = self.credential.current_keys().await?;
        let mut found = self.found.lock().await;
        if found.0 == keys.id {
            return Ok(found.1.clone());
        }
        let url = discover(
            &self.api,
            &self.endpoint,
            self.site,
            &keys,
            self.explicit_endpoint,
        )
        .await?;
        info!(key_id = %super::masked(&keys.id), endpoint = %display_url(&url),
              "the AccessKey identity changed; found its Core endpoint");
        *found = (keys.id.clone(), url.clone());
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MCP: &str = "https://openapi-mcp.cn-hangzhou.aliyuncs.com/accounts/123/mcp";

    #[test]
    fn the_first_core_s_mcp_url_is_the_endpoint() {
        let body = json!({"requestId": "r", "apiMcpServerCores": [
            {"id": "c1", "urls": {"mcp": format!(" {MCP} "), "sse": "https://x/sse"}},
            {"id": "c2", "urls": {"mcp": "https://openapi-mcp.cn-beijing.aliyuncs.com/other/mcp"}}
        ]});
        assert_eq!(parse(&body, Site::Cn, None).unwrap().as_str(), MCP);
    }

    #[test]
    fn every_documented_failure_has_its_own_error() {
        assert_eq!(
            parse(&json!({}), Site::Cn, None),
            Err(CoreError::Unexpected)
        );
        assert_eq!(
            parse(&json!({"apiMcpServerCores": {}}), Site::Cn, None),
            Err(CoreError::Unexpected)
        );
        let none = parse(&json!({"apiMcpServerCores": []}), Site::Intl, None).unwrap_err();
        assert!(
            none.to_string()
                .contains("https://api.alibabacloud.com/mcp"),
            "{none}"
        );
        for entry in [
            json!({}),
            json!({"urls": {}}),
            json!({"urls": {"mcp": "  "}}),
        ] {
            assert_eq!(
                parse(&json!({"apiMcpServerCores": [entry]}), Site::Cn, None),
                Err(CoreError::MissingUrl)
            );
        }
    }

    #[test]
    fn an_answer_cannot_send_the_token_elsewhere() {
        let core = |u: &str| json!({"apiMcpServerCores": [{"urls": {"mcp": u}}]});
        for bad in [
            "http://openapi-mcp.cn-hangzhou.aliyuncs.com/mcp",
            "https://evil.example/mcp",
            "https://openapi-mcp.cn-hangzhou.aliyuncs.com.evil.example/mcp",
            "https://user:pw@openapi-mcp.cn-hangzhou.aliyuncs.com/mcp",
            "ftp://openapi-mcp.cn-hangzhou.aliyuncs.com/mcp",
            "not a url",
        ] {
            let e = parse(&core(bad), Site::Cn, None).unwrap_err();
            assert!(matches!(e, CoreError::BadUrl { .. }), "{bad}: {e}");
        }
        // The host --discovery-endpoint named is trusted too (a private or test deployment).
        let own = "http://127.0.0.1:8080/accounts/1/mcp";
        assert!(parse(&core(own), Site::Cn, None).is_err());
        assert_eq!(
            parse(&core(own), Site::Cn, Some("127.0.0.1"))
                .unwrap()
                .as_str(),
            own
        );
        // A long hostile value is cut in the message.
        let long = format!("https://evil.example/{}", "a".repeat(5000));
        assert!(
            parse(&core(&long), Site::Cn, None)
                .unwrap_err()
                .to_string()
                .len()
                < 400
        );
    }

    #[test]
    fn each_site_has_its_discovery_host() {
        assert_eq!(
            default_endpoint(Site::Cn).as_str(),
            "https://openapi-mcp.cn-hangzhou.aliyuncs.com/"
        );
        assert_eq!(
            default_endpoint(Site::Intl).as_str(),
            "https://openapi-mcp.ap-southeast-1.aliyuncs.com/"
        );
    }
}
