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

    /// The RAM-OAuth endpoint of the site (where tokens are minted).
    pub fn ims_url(self) -> reqwest::Url {
        let host = self.ims_host();
        reqwest::Url::parse(&format!("https://{host}/"))
            .unwrap_or_else(|_| unreachable!("{host} is a static host name"))
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

/// True for the OpenAPI MCP service's own endpoints, `openapi-mcp.<region>.aliyuncs.com`
/// (documented: `cn-hangzhou` for CN, `ap-southeast-1` for INTL; other regions have the same
/// shape), the only hosts `--auth auto` sends tokens minted from AccessKeys to.
///
/// Deliberately not the whole `*.aliyuncs.com` / `*.aliyun.com` / `*.alibabacloud.com`: those
/// include hosts that run customer code or serve customer content (Function Compute HTTP
/// triggers `*.<region>.fc.aliyuncs.com` and `*.fcapp.run`, API Gateway, OSS buckets
/// `<bucket>.oss-<region>.aliyuncs.com`), and a token minted from AccessKeys acts for the whole
/// RAM identity. Such hosts get AccessKeys only with an explicit `--auth ak`.
pub fn is_openapi_mcp_host(url: &Url) -> bool {
    let Some(url::Host::Domain(host)) = url.host() else {
        return false;
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = host.split('.').collect();
    matches!(labels.as_slice(), ["openapi-mcp", region, "aliyuncs", "com"] if is_region_id(region))
}

/// `cn-hangzhou`, `ap-southeast-1`, `cn-shanghai-finance-1`, …: two letters, then dash-separated
/// lower-case alphanumeric parts. (`oss-cn-hangzhou` is not one: its first part is a product.)
fn is_region_id(label: &str) -> bool {
    let mut parts = label.split('-');
    let first = parts.next().unwrap_or_default();
    let rest: Vec<&str> = parts.collect();
    label.len() <= 40
        && first.len() == 2
        && first.bytes().all(|b| b.is_ascii_lowercase())
        && !rest.is_empty()
        && rest.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
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
    fn only_openapi_mcp_hosts_are_trusted_with_tokens_under_auto() {
        let yes = |u: &str| is_openapi_mcp_host(&Url::parse(u).unwrap());
        for ok in [
            "https://openapi-mcp.cn-hangzhou.aliyuncs.com/accounts/1/custom/x/id/y/mcp",
            "https://openapi-mcp.ap-southeast-1.aliyuncs.com/id/abc/mcp",
            "https://OPENAPI-MCP.CN-HANGZHOU.ALIYUNCS.COM/mcp",
            "https://openapi-mcp.cn-hangzhou.aliyuncs.com./mcp",
            "http://openapi-mcp.cn-shanghai-finance-1.aliyuncs.com:8443/sse",
            "https://openapi-mcp.us-east-1.aliyuncs.com/mcp",
        ] {
            assert!(yes(ok), "{ok}");
        }
        for no in [
            // Function Compute HTTP triggers run customer code.
            "https://my-fn-abcd.cn-hangzhou.fcapp.run/mcp",
            "https://123456.cn-hangzhou.fc.aliyuncs.com/2016-08-15/proxy/svc/fn/mcp",
            "https://openapi-mcp.cn-hangzhou.fc.aliyuncs.com/mcp",
            // API Gateway and OSS serve customer content.
            "https://abc-cn-hangzhou.alicloudapi.com/mcp",
            "https://openapi-mcp.oss-cn-hangzhou.aliyuncs.com/mcp",
            "https://bucket.oss-cn-hangzhou.aliyuncs.com/mcp",
            // Other Alibaba hosts are not the OpenAPI MCP service.
            "https://dashscope.aliyuncs.com/api/v1/mcps/x/mcp",
            "https://openapi-mcp.aliyuncs.com/mcp",
            "https://mcp.alibabacloud.com/mcp",
            "https://openapi-mcp.cn-hangzhou.aliyun.com/mcp",
            "https://x.openapi-mcp.cn-hangzhou.aliyuncs.com/mcp",
            "https://openapi-mcp.vpc-proxy.cn-shanghai.aliyuncs.com/mcp",
            // Look-alikes.
            "https://openapi-mcp.cn-hangzhou.aliyuncs.com.evil.example/mcp",
            "https://openapi-mcp.cn-hangzhou.aliyuncs.co/mcp",
            "https://openapi-mcp.c-hangzhou.aliyuncs.com/mcp",
            "https://openapi-mcp.cn-.aliyuncs.com/mcp",
            "https://openapi-mcp.cn.aliyuncs.com/mcp",
            "http://127.0.0.1:9/mcp",
        ] {
            assert!(!yes(no), "{no}");
        }
    }
}
