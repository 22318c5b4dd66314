//! Server-side enforcement for AccessKey mode: like Alibaba's own `alibabacloud.mcp-proxy`,
//! every minted token gets a safety policy bound to it before it is used, with OpenAPI
//! Explorer's `UpdateBearerTokenSafetyPolicy` (version 2024-11-30, ROA `POST /safePolicy/set`,
//! anonymous: the token in the body is the credential). The body is compact JSON:
//! `{"bearerToken":…,"safePolicy":…,"toolPolicy":"{\"allowedTools\":[…]}"}`, with
//! `safePolicy` the `--safety-policy` expression (`ecs:describe-*=allow,*=deny`) or
//! `{"rules":[]}`, and `toolPolicy` only when `--allow-tools` names exact tools.
//!
//! A token whose policy could not be bound is never used: the mint fails with an error saying
//! why (at start the bridge then exits). The endpoint is the OpenAPI MCP host the bridge talks
//! to when it is one (the token goes nowhere new), else the China host Alibaba's proxy uses;
//! `--safety-policy-endpoint` overrides it.

use std::time::SystemTime;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE, DATE};
use reqwest::Url;
use serde_json::{json, Value};

use super::api::{ApiClient, ApiError};
use super::site::is_openapi_mcp_host;
use crate::auth::secret::Secret;
use crate::auth::transport::read_small;
use crate::auth::{AuthError, AuthFailure};
use crate::net::origin::foreign_redirect;

pub const ACTION: &str = "UpdateBearerTokenSafetyPolicy";
pub const VERSION: &str = "2024-11-30";
pub const PATH: &str = "/safePolicy/set";
/// `safePolicy` when only a tool list is bound.
pub const EMPTY_SAFE_POLICY: &str = r#"{"rules":[]}"#;
/// Where Alibaba's proxy binds policies, whatever the site.
pub const DEFAULT_ENDPOINT: &str = "https://openapi-mcp.cn-hangzhou.aliyuncs.com/";
/// Longest `--safety-policy` accepted.
const MAX_EXPR: usize = 4096;

/// What to bind to each token, and where.
#[derive(Debug, Clone, Default)]
pub struct SafetyConfig {
    /// The expression to bind: `--safety-policy` (validated, trimmed) intersected with what
    /// `--read-only`, `--allow-api` and `--deny-api` compile to ([`crate::policy::server_side`]).
    pub expr: Option<String>,
    /// The user gave `--safety-policy` (only AccessKey tokens can carry it).
    pub from_user: bool,
    /// `expr` carries the limits of `--read-only` / `--allow-api` / `--deny-api`: the server
    /// judges what alibridge cannot read locally.
    pub enforces_flags: bool,
    /// The exact names of `--allow-tools` (`toolPolicy`); empty when there are none, or when
    /// a pattern with `*`/`?` makes the list inexpressible server-side.
    pub allowed_tools: Vec<String>,
    /// `--safety-policy-endpoint`.
    pub endpoint: Option<Url>,
}

impl SafetyConfig {
    /// Whether anything is bound at all.
    pub fn binds_anything(&self) -> bool {
        self.expr.is_some() || !self.allowed_tools.is_empty()
    }

    /// The binding for tokens used with the MCP endpoint `mcp`.
    pub fn binding(&self, mcp: &Url) -> Binding {
        let endpoint = self.endpoint.clone().unwrap_or_else(|| {
            if is_openapi_mcp_host(mcp) {
                let mut u = mcp.clone();
                u.set_path("/");
                u.set_query(None);
                u
            } else {
                Url::parse(DEFAULT_ENDPOINT).expect("static URL")
            }
        });
        Binding {
            endpoint,
            safe_policy: self
                .expr
                .clone()
                .unwrap_or_else(|| EMPTY_SAFE_POLICY.to_string()),
            allowed_tools: self.allowed_tools.clone(),
        }
    }
}

/// Checks a `--safety-policy` expression: comma-separated `PATTERN=allow|deny` rules, patterns
/// of letters, digits and `* : - _ . /` (`ecs:describe-*`, `iacservice:*`, `*`). The service
/// evaluates it; this only catches typos before a token is minted. `None` for a blank value.
pub fn validate_expr(raw: &str) -> Result<Option<String>, String> {
    let text = raw.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let example = "for example ecs:describe-*=allow,*=deny";
    if text.len() > MAX_EXPR {
        return Err(format!(
            "--safety-policy is {} bytes; the limit is {MAX_EXPR}",
            text.len()
        ));
    }
    for rule in text.split(',') {
        let rule = rule.trim();
        let Some((pattern, effect)) = rule.rsplit_once('=') else {
            return Err(format!(
                "--safety-policy rule {rule:?} is not PATTERN=allow or PATTERN=deny; {example}"
            ));
        };
        let (pattern, effect) = (pattern.trim(), effect.trim());
        if !effect.eq_ignore_ascii_case("allow") && !effect.eq_ignore_ascii_case("deny") {
            return Err(format!(
                "--safety-policy rule {rule:?}: the effect must be allow or deny; {example}"
            ));
        }
        let pattern_ok = !pattern.is_empty()
            && pattern
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"*:-_./".contains(&b));
        if !pattern_ok {
            return Err(format!(
                "--safety-policy rule {rule:?}: the pattern may hold letters, digits and * : - _ . /; {example}"
            ));
        }
    }
    Ok(Some(text.to_string()))
}

/// The policy bound to each token.
#[derive(Debug, Clone)]
pub struct Binding {
    pub endpoint: Url,
    pub safe_policy: String,
    pub allowed_tools: Vec<String>,
}

impl Binding {
    /// The request body (compact JSON; `toolPolicy` is itself a JSON string).
    pub fn body(&self, token: &str) -> String {
        let mut body = json!({"bearerToken": token, "safePolicy": self.safe_policy});
        if !self.allowed_tools.is_empty() {
            let tools = json!({"allowedTools": self.allowed_tools}).to_string();
            body["toolPolicy"] = Value::String(tools);
        }
        body.to_string()
    }

    /// Binds the policy to `token`. The error never contains the token.
    pub async fn apply(&self, api: &ApiClient, token: &Secret) -> Result<(), AuthError> {
        let host = self.endpoint.host_str().unwrap_or_default().to_string();
        let context = format!(
            "could not bind the safety policy to the new OpenAPI MCP token ({ACTION} at {host})"
        );
        let advice = "alibridge does not use a token without the policy you asked for; check \
                      --safety-policy (e.g. ecs:describe-*=allow,*=deny) and --allow-tools, or \
                      --safety-policy-endpoint";
        let fail = |detail: String| AuthError::Denied(format!("{context}: {detail}. {advice}"));
        // A failed exchange keeps its cause typed; the kind stays `Denied`, as for a refusal:
        // either way no token is used.
        let failed = |source: ApiError| AuthError::Api {
            failure: AuthFailure::Denied,
            message: format!("{context} ({advice})"),
            source: Box::new(source),
        };
        let mut url = self.endpoint.clone();
        url.set_path(PATH);
        url.set_query(None);
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_static("application/json"));
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        h.insert("x-acs-action", HeaderValue::from_static(ACTION));
        h.insert("x-acs-version", HeaderValue::from_static(VERSION));
        h.insert(
            "x-acs-signature-nonce",
            HeaderValue::from_str(&crate::signer::generate_nonce()).expect("hex nonce"),
        );
        if let Ok(d) = HeaderValue::from_str(&http_date(SystemTime::now())) {
            h.insert(DATE, d);
        }
        let mut body = self.body(token.expose());
        let resp = api
            .http()
            .post(url)
            .headers(h)
            .body(body.clone())
            .send()
            .await;
        // The body holds the token: drop our copy as soon as it is sent.
        body.clear();
        let resp = resp.map_err(|e| match foreign_redirect(&e) {
            Some(refused) => failed(ApiError::ForeignOrigin(refused)),
            None => failed(ApiError::Unreachable {
                host: host.clone(),
                source: e.into(),
            }),
        })?;
        let status = resp.status().as_u16();
        let bytes = read_small(resp).await.map_err(|source| {
            failed(ApiError::Unreachable {
                host: host.clone(),
                source,
            })
        })?;
        let answer: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        let text = |k: &str| {
            answer
                .get(k)
                .or_else(|| answer.get(k.to_ascii_lowercase()))
                .and_then(Value::as_str)
        };
        let code_ok = text("Code").is_none_or(|c| c == "Success" || c == "200" || c == "OK");
        if (200..300).contains(&status) && code_ok {
            tracing::debug!(host = %host, "bound the safety policy to the new token");
            return Ok(());
        }
        let message = text("Message")
            .unwrap_or("(no message)")
            .replace(token.expose(), "****");
        Err(fail(format!(
            "HTTP {status} {}: {} (RequestId {})",
            text("Code").unwrap_or("(no code)"),
            message,
            text("RequestId").unwrap_or("n/a")
        )))
    }
}

/// RFC 1123 date (`Thu, 01 Jan 1970 00:00:00 GMT`), as the ROA gateway expects in `Date`.
fn http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_in_the_proxy_syntax() {
        for ok in [
            "ecs:describe-*=allow,*=deny",
            " iacservice:*=allow , *=deny ",
            "openapiexplorer:*=allow,*=deny",
            "iacservice-*=allow,*=deny",
            "*=DENY",
        ] {
            assert!(validate_expr(ok).unwrap().is_some(), "{ok}");
        }
        assert_eq!(validate_expr("  ").unwrap(), None);
        assert_eq!(
            validate_expr(" ecs:*=allow ").unwrap().as_deref(),
            Some("ecs:*=allow")
        );
        for bad in [
            "ecs:describe-*",
            "ecs=maybe",
            "=allow",
            "ecs describe=allow",
            "a=allow,",
        ] {
            let e = validate_expr(bad).unwrap_err();
            assert!(e.contains("ecs:describe-*=allow,*=deny"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_body_matches_the_official_proxy() {
        let b = SafetyConfig {
            expr: None,
            from_user: false,
            enforces_flags: false,
            allowed_tools: vec!["DescribeInstances".into(), "ListUsers".into()],
            endpoint: None,
        }
        .binding(
            &Url::parse("https://openapi-mcp.ap-southeast-1.aliyuncs.com/accounts/1/mcp").unwrap(),
        );
        assert_eq!(
            b.endpoint.as_str(),
            "https://openapi-mcp.ap-southeast-1.aliyuncs.com/"
        );
        assert_eq!(
            b.body("tok"),
            r#"{"bearerToken":"tok","safePolicy":"{\"rules\":[]}","toolPolicy":"{\"allowedTools\":[\"DescribeInstances\",\"ListUsers\"]}"}"#
        );
        let b = SafetyConfig {
            expr: Some("ecs:describe-*=allow,*=deny".into()),
            ..SafetyConfig::default()
        }
        .binding(&Url::parse("https://gateway.example.com/mcp").unwrap());
        assert_eq!(b.endpoint.as_str(), DEFAULT_ENDPOINT);
        assert_eq!(
            b.body("t"),
            r#"{"bearerToken":"t","safePolicy":"ecs:describe-*=allow,*=deny"}"#
        );
    }

    #[test]
    fn http_dates() {
        assert_eq!(
            http_date(SystemTime::UNIX_EPOCH),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_767_323_045);
        assert_eq!(http_date(t), "Fri, 02 Jan 2026 03:04:05 GMT");
    }
}
