//! The two Alibaba Cloud sites (China and International) and what differs between them: the
//! RAM-OAuth host that mints MCP tokens, the built-in OAuth application (client id), the sign-in
//! host used by `pre-check`, and the OpenAPI MCP host.

use clap::ValueEnum;
use reqwest::Url;

/// `--site-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum Site {
    /// China site (aliyun.com accounts).
    Cn,
    /// International site (alibabacloud.com accounts).
    Intl,
}

/// The OAuth scope of the built-in application, used by GenerateAccessToken and `pre-check`.
pub const OPENAPI_SCOPE: &str = "/internal/acs/openapi";
/// The scope `pre-check` asks for when checking a custom application (`--client-id`).
pub const CUSTOM_APP_SCOPE: &str = "openid /acs/mcp-server";

impl Site {
    /// Host of the RAM-OAuth API (GenerateAccessToken). The INTL spelling `alibabacloudcs` is
    /// the real one.
    pub fn ims_host(self) -> &'static str {
        match self {
            Site::Cn => "ramoauth.aliyuncs.com",
            Site::Intl => "ramoauth.alibabacloudcs.com",
        }
    }

    /// Client id of Alibaba Cloud's built-in OpenAPI MCP application.
    pub fn client_id(self) -> &'static str {
        match self {
            Site::Cn => "4071151845732613353",
            Site::Intl => "4195410055503316452",
        }
    }

    /// The browser authorization endpoint (`pre-check`).
    pub fn authorize_url(self) -> &'static str {
        match self {
            Site::Cn => "https://signin.aliyun.com/oauth2/v1/auth",
            Site::Intl => "https://signin.alibabacloud.com/oauth2/v1/auth",
        }
    }

    /// The OpenAPI MCP Server console, where endpoints are created and copied from.
    pub fn console_url(self) -> &'static str {
        match self {
            Site::Cn => "https://api.aliyun.com/mcp",
            Site::Intl => "https://api.alibabacloud.com/mcp",
        }
    }

    pub fn flag_value(self) -> &'static str {
        match self {
            Site::Cn => "CN",
            Site::Intl => "INTL",
        }
    }

    /// Guesses the site from an MCP endpoint. Endpoints are `openapi-mcp.<region>.aliyuncs.com`
    /// on both sites; China regions start with `cn-`, and `*.alibabacloud.com` hosts are
    /// international. `None` when the host says nothing (then the caller explains the default).
    pub fn infer(url: &Url) -> Option<Site> {
        let host = url.host_str()?.to_ascii_lowercase();
        if host.ends_with(".alibabacloud.com") || host.ends_with(".alibabacloudcs.com") {
            return Some(Site::Intl);
        }
        let rest = host.strip_suffix(".aliyuncs.com")?;
        let region = rest.split('.').find(|label| {
            let parts: Vec<&str> = label.split('-').collect();
            parts.len() >= 2
                && parts[0].len() == 2
                && parts[0].chars().all(|c| c.is_ascii_alphabetic())
        })?;
        Some(if region.starts_with("cn-") {
            Site::Cn
        } else {
            Site::Intl
        })
    }
}

/// True for hosts that belong to Alibaba Cloud, where sending an Alibaba Cloud token is safe.
pub fn is_alibaba_host(url: &Url) -> bool {
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    [
        ".aliyuncs.com",
        ".alibabacloud.com",
        ".alibabacloudcs.com",
        ".aliyun.com",
    ]
    .iter()
    .any(|s| host.ends_with(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infer(u: &str) -> Option<Site> {
        Site::infer(&Url::parse(u).unwrap())
    }

    #[test]
    fn infers_the_site_from_the_endpoint() {
        assert_eq!(
            infer("https://openapi-mcp.cn-hangzhou.aliyuncs.com/accounts/1/mcp"),
            Some(Site::Cn)
        );
        assert_eq!(
            infer("https://openapi-mcp.ap-southeast-1.aliyuncs.com/x/mcp"),
            Some(Site::Intl)
        );
        assert_eq!(
            infer("https://openapi-mcp.vpc-proxy.cn-shanghai.aliyuncs.com/x"),
            Some(Site::Cn)
        );
        assert_eq!(infer("https://mcp.alibabacloud.com/mcp"), Some(Site::Intl));
        assert_eq!(infer("https://example.com/mcp"), None);
        assert_eq!(infer("https://openapi-mcp.aliyuncs.com/mcp"), None);
    }

    #[test]
    fn only_alibaba_hosts_are_trusted_with_tokens() {
        assert!(is_alibaba_host(
            &Url::parse("https://openapi-mcp.cn-hangzhou.aliyuncs.com/").unwrap()
        ));
        assert!(!is_alibaba_host(
            &Url::parse("https://aliyuncs.com.evil.example/").unwrap()
        ));
    }
}
