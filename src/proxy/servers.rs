//! The "available servers" list printed at start: OpenAPI Explorer `ListApiMcpServers`
//! (version 2024-11-30, ROA `GET /apimcpservers`, signed ACS3-HMAC-SHA256 with AccessKeys,
//! exactly as `aliyun mcp-proxy` calls it), sent to the upstream host.
//!
//! The listing is best effort: without AccessKeys, or when the call fails, the proxy prints one
//! line saying why and runs anyway (server names and ids in the access rules then match only
//! the `…/<name>/id/<id>/…` segments of request paths). Only the keys' id ever reaches a message.

use std::time::Duration;

use reqwest::Url;
use serde_json::Value;

use super::rules::{AccessRules, ServerIndex, Verdict};
use crate::auth::access_key::api::{ApiClient, ApiError};
use crate::auth::access_key::chain::{self, ChainError, ChainInput};
use crate::auth::access_key::keys::AccessKeys;

pub const ACTION: &str = "ListApiMcpServers";
pub const VERSION: &str = "2024-11-30";
pub const PATH: &str = "/apimcpservers";

/// The whole listing may take this long before the proxy starts without it.
const LIST_TIMEOUT: Duration = Duration::from_secs(15);
/// Pages followed at most (`nextToken`).
const MAX_PAGES: usize = 50;

/// One server of the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpServer {
    pub name: String,
    pub id: String,
    /// Path of the Streamable HTTP endpoint (`urls.mcp`), if given.
    pub mcp_path: Option<String>,
    /// Path of the SSE endpoint (`urls.sse`), if given.
    pub sse_path: Option<String>,
}

/// What the listing came to.
#[derive(Debug)]
pub enum Listing {
    Servers(Vec<McpServer>),
    /// Not listed; the text says why (one line, no secrets).
    Skipped(String),
}

/// Lists the account's servers on `upstream`'s host with the AccessKeys the credential chain
/// finds (`profile`: `--profile`).
pub async fn list(upstream: &Url, profile: Option<&str>) -> Listing {
    let env = |k: &str| std::env::var(k).ok();
    let input = ChainInput {
        profile,
        env: &env,
        home: crate::auth::access_key::home_dir(),
    };
    let resolved = match chain::resolve(&input) {
        Ok(r) => r,
        Err(ChainError::NotFound { .. }) => {
            return Listing::Skipped(
                "no Alibaba Cloud AccessKeys found; ListApiMcpServers needs them".into(),
            )
        }
        Err(ChainError::Invalid(m)) => return Listing::Skipped(m),
    };
    let api = match ApiClient::new() {
        Ok(a) => a,
        Err(e) => return Listing::Skipped(format!("cannot set up TLS: {e}")),
    };
    let fetch = async {
        let keys = resolved
            .source
            .keys(&api)
            .await
            .map_err(|e| e.to_string())?;
        fetch_all(&api, upstream, &keys).await
    };
    match tokio::time::timeout(LIST_TIMEOUT, fetch).await {
        Ok(Ok(servers)) => Listing::Servers(servers),
        Ok(Err(why)) => Listing::Skipped(why),
        Err(_) => Listing::Skipped(format!(
            "{ACTION} did not answer within {} s",
            LIST_TIMEOUT.as_secs()
        )),
    }
}

async fn fetch_all(
    api: &ApiClient,
    upstream: &Url,
    keys: &AccessKeys,
) -> Result<Vec<McpServer>, String> {
    let mut servers = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = fetch_page(api, upstream, keys, token.as_deref()).await?;
        servers.extend(parse_servers(&page));
        token = page
            .get("nextToken")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    Ok(servers)
}

/// One signed `GET /apimcpservers[?nextToken=…]`.
async fn fetch_page(
    api: &ApiClient,
    upstream: &Url,
    keys: &AccessKeys,
    next_token: Option<&str>,
) -> Result<Value, String> {
    let query: Vec<(&str, &str)> = next_token.map(|t| ("nextToken", t)).into_iter().collect();
    api.roa_get(upstream, PATH, ACTION, VERSION, &query, &keys.api())
        .await
        .map_err(|e| {
            let hint = match &e {
                ApiError::Service {
                    status: 401 | 403, ..
                } => format!(
                    "; AccessKey {} may not call openapiexplorer:{ACTION} (attach \
                     AliyunOpenAPIMCPServerStaticCredentialAccess)",
                    keys.id
                ),
                _ => String::new(),
            };
            format!("{ACTION}: {e}{hint}")
        })
}

/// Reads `{"apiMcpServers":[{"id","name","urls":{"mcp","sse"}}]}`; entries without a name are
/// skipped.
pub fn parse_servers(body: &Value) -> Vec<McpServer> {
    let path = |u: Option<&Value>| {
        u.and_then(Value::as_str)
            .and_then(|s| Url::parse(s).ok())
            .map(|u| u.path().to_string())
    };
    body.get("apiMcpServers")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|s| {
                    let name = s.get("name")?.as_str()?.to_string();
                    Some(McpServer {
                        name,
                        id: s
                            .get("id")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .into(),
                        mcp_path: path(s.pointer("/urls/mcp")),
                        sse_path: path(s.pointer("/urls/sse")),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The "available servers" block: each server with its proxy URLs, or why it is denied.
/// `base` is the proxy's own `http://host:port`.
pub fn render(
    servers: &[McpServer],
    rules: &AccessRules,
    index: &ServerIndex,
    base: &str,
) -> String {
    let mut out = format!("available servers ({ACTION}, {}):\n", servers.len());
    if servers.is_empty() {
        out.push_str("  (none: this account has no MCP servers on this site)\n");
    }
    for s in servers {
        let probe = s
            .mcp_path
            .as_deref()
            .or(s.sse_path.as_deref())
            .unwrap_or("/");
        let verdict = rules.decide(probe, index);
        if verdict != Verdict::Allow {
            out.push_str(&format!("  - {} ({})\n", s.name, verdict.describe()));
            continue;
        }
        out.push_str(&format!("  - {}\n", s.name));
        if let Some(p) = &s.mcp_path {
            out.push_str(&format!("      MCP: {base}{p}\n"));
        }
        if let Some(p) = &s.sse_path {
            out.push_str(&format!("      SSE: {base}{p}\n"));
        }
    }
    out
}

/// Records every listed server in a [`ServerIndex`] for the rules.
pub fn index(servers: &[McpServer]) -> ServerIndex {
    let mut index = ServerIndex::default();
    for s in servers {
        let paths: Vec<&str> = [s.mcp_path.as_deref(), s.sse_path.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        index.add(&s.name, &s.id, &paths);
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_the_documented_answer() {
        let body = json!({"requestId": "r", "apiMcpServers": [
            {"id": "XS", "name": "cloudphone", "sourceType": "system", "product": "eds-aic",
             "urls": {"mcp": "https://openapi-mcp.cn-hangzhou.aliyuncs.com/accounts/1/system/eds-aic/cloudphone/id/XS/mcp",
                      "sse": "https://openapi-mcp.cn-hangzhou.aliyuncs.com/accounts/1/system/eds-aic/cloudphone/id/XS/sse"}},
            {"id": "OV", "name": "multi_account", "urls": {"mcp": "https://h/accounts/1/custom/multi_account/id/OV/mcp"}},
            {"id": "nameless"}
        ]});
        let s = parse_servers(&body);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "cloudphone");
        assert_eq!(
            s[0].mcp_path.as_deref(),
            Some("/accounts/1/system/eds-aic/cloudphone/id/XS/mcp")
        );
        assert_eq!(
            s[0].sse_path.as_deref(),
            Some("/accounts/1/system/eds-aic/cloudphone/id/XS/sse")
        );
        assert_eq!(s[1].sse_path, None);
        assert!(parse_servers(&json!({})).is_empty());
    }

    #[test]
    fn render_marks_denied_servers_and_prints_proxy_urls() {
        let servers = parse_servers(&json!({"apiMcpServers": [
            {"id": "e1", "name": "ecs", "urls": {"mcp": "https://h/acs/mcp-server/ecs/mcp", "sse": "https://h/acs/mcp-server/ecs/sse"}},
            {"id": "r1", "name": "ram", "urls": {"mcp": "https://h/acs/mcp-server/ram/mcp"}},
            {"id": "o1", "name": "oss", "urls": {"mcp": "https://h/acs/mcp-server/oss/mcp"}}
        ]}));
        let rules = AccessRules {
            allowed: super::super::rules::parse_list("ecs,ram").unwrap().0,
            blocked: super::super::rules::parse_list("ram").unwrap().0,
        };
        let text = render(&servers, &rules, &index(&servers), "http://127.0.0.1:8088");
        assert!(
            text.contains("available servers (ListApiMcpServers, 3)"),
            "{text}"
        );
        assert!(text.contains("  - ecs\n      MCP: http://127.0.0.1:8088/acs/mcp-server/ecs/mcp\n      SSE: http://127.0.0.1:8088/acs/mcp-server/ecs/sse\n"), "{text}");
        assert!(
            text.contains("  - ram (blocked by --blocked-servers ram)\n"),
            "{text}"
        );
        assert!(
            text.contains("  - oss (not in --allowed-servers)\n"),
            "{text}"
        );
    }
}
