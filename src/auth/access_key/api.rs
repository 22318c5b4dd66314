//! Calls to Alibaba Cloud APIs, RPC style (STS, RAM-OAuth; signed v2) and ROA style (OpenAPI
//! Explorer; signed ACS3-HMAC-SHA256): sign, send, and turn the service's
//! error body (`Code`, `Message`, `RequestId`) into an error a person can act on, including a
//! warning when the local clock is off (a classic cause of signature failures).
//!
//! Signed calls carry the AccessKey id, a signature and the STS security token: the client
//! follows redirects only within the endpoint's origin ([`crate::net::origin`]), and a cross-origin
//! one is the error [`ApiError::ForeignOrigin`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Url;
use serde_json::Value;

use crate::net::origin::foreign_redirect;
use crate::signer::{self, acs3, rpc_v2, ApiCredentials, HttpMethod};

/// How far the local clock may drift before errors mention it (the service allows 15 min).
const CLOCK_WARNING: i64 = 300;

/// A plain HTTP client for Alibaba Cloud APIs (no MCP headers, bounded time).
#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
}

/// A failed API call.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// `host` could not be reached, or its answer not read.
    #[error("could not reach {host}")]
    Unreachable {
        host: String,
        #[source]
        source: crate::auth::transport::Transport,
    },
    #[error("{host} answered HTTP {status} {code}: {message} (RequestId {request_id}){}", skew_note(*clock_skew_secs))]
    Service {
        host: String,
        status: u16,
        code: String,
        message: String,
        request_id: String,
        /// Server time minus local time, when they differ by more than a few minutes.
        clock_skew_secs: Option<i64>,
    },
    #[error(transparent)]
    ForeignOrigin(#[from] crate::net::origin::ForeignOrigin),
    #[error("{host} sent an answer that is not JSON (HTTP {status})")]
    Malformed {
        host: String,
        status: u16,
        #[source]
        source: serde_json::Error,
    },
}

fn skew_note(skew: Option<i64>) -> String {
    match skew {
        Some(s) => format!(
            "; note: this computer's clock is off by {} minutes ({}), and signed requests are \
             only valid within 15 minutes: synchronise the clock (e.g. `timedatectl set-ntp true`)",
            s.abs() / 60,
            if s > 0 { "behind" } else { "ahead" }
        ),
        None => String::new(),
    }
}

impl ApiError {
    /// The service's error code (`SignatureDoesNotMatch`, …), when it sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Service { code, .. } => Some(code),
            _ => None,
        }
    }
}

impl ApiClient {
    pub fn new() -> Result<Self, reqwest::Error> {
        let http = crate::net::client_builder(Duration::from_secs(5))
            .timeout(Duration::from_secs(20))
            .build()?;
        Ok(ApiClient { http })
    }

    /// The raw client (instance metadata, credentials URIs).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Sends an RPC call to `endpoint` (path `/`), signed with `keys` (RPC v2), or unsigned
    /// when `keys` is `None` (AssumeRoleWithOIDC authenticates with its OIDC token instead).
    pub async fn rpc(
        &self,
        endpoint: &Url,
        call: &rpc_v2::RpcCall<'_>,
        keys: Option<&ApiCredentials<'_>>,
    ) -> Result<Value, ApiError> {
        let (query, body) = match keys {
            Some(keys) => {
                let nonce = signer::generate_nonce();
                let signed = rpc_v2::sign(call, keys, SystemTime::now(), &nonce)
                    .expect("the bridge's own calls use no reserved parameter names");
                (signed.query, signed.body)
            }
            None => unsigned(call),
        };
        let mut url = endpoint.clone();
        url.set_query(Some(&query));
        let mut rb = match call.method {
            HttpMethod::Get => self.http.get(url),
            _ => self.http.post(url),
        };
        if let Some(body) = body {
            rb = rb
                .header(reqwest::header::CONTENT_TYPE, rpc_v2::FORM_CONTENT_TYPE)
                .body(body);
        }
        self.finish(rb, endpoint, keys).await
    }

    /// Sends a signed ROA `GET path[?query]` to `endpoint` (OpenAPI Explorer's style, ACS3-HMAC-SHA256
    /// over the URL's authority, as the official SDKs sign it).
    pub async fn roa_get(
        &self,
        endpoint: &Url,
        path: &str,
        action: &str,
        version: &str,
        query: &[(&str, &str)],
        keys: &ApiCredentials<'_>,
    ) -> Result<Value, ApiError> {
        // What the signature covers as `host`: the URL's authority (the port only when it is
        // not the scheme's default, as HTTP clients send it).
        let host = endpoint.host_str().unwrap_or_default();
        let authority = match endpoint.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        let req = acs3::Acs3Request {
            method: HttpMethod::Get,
            host: &authority,
            path,
            action,
            version,
            query,
            headers: &[("accept", "application/json")],
            body: b"",
            header_scope: acs3::HeaderScope::Standard,
        };
        let signed = acs3::sign(&req, keys, SystemTime::now(), &signer::generate_nonce())
            .expect("the bridge's own calls use no reserved header names");
        let mut url = endpoint.clone();
        url.set_path(&signed.path);
        url.set_query((!signed.query.is_empty()).then_some(signed.query.as_str()));
        let mut rb = self.http.get(url);
        for (name, value) in &signed.headers {
            if name != "host" {
                rb = rb.header(name.as_str(), value.as_str());
            }
        }
        self.finish(rb, endpoint, Some(keys)).await
    }

    /// Sends a built call and turns the answer into JSON or an [`ApiError`]; RPC answers name
    /// their fields `Code`/`Message`/`RequestId`, ROA answers the lower-case forms.
    async fn finish(
        &self,
        rb: reqwest::RequestBuilder,
        endpoint: &Url,
        keys: Option<&ApiCredentials<'_>>,
    ) -> Result<Value, ApiError> {
        let host = endpoint.host_str().unwrap_or_default().to_string();
        let resp = rb.send().await.map_err(|e| match foreign_redirect(&e) {
            Some(refused) => ApiError::ForeignOrigin(refused),
            None => ApiError::Unreachable {
                host: host.clone(),
                source: e.into(),
            },
        })?;
        let status = resp.status().as_u16();
        let skew = clock_skew(resp.headers().get(reqwest::header::DATE));
        let bytes = crate::auth::transport::read_small(resp)
            .await
            .map_err(|source| ApiError::Unreachable {
                host: host.clone(),
                source,
            })?;
        let value: Value =
            serde_json::from_slice(&bytes).map_err(|source| ApiError::Malformed {
                host: host.clone(),
                status,
                source,
            })?;
        let text = |k: &str| {
            value
                .get(k)
                .or_else(|| value.get(k.to_ascii_lowercase()))
                .and_then(Value::as_str)
        };
        if (200..300).contains(&status) && text("Code").is_none_or(|c| c == "Success" || c == "200")
        {
            return Ok(value);
        }
        Err(ApiError::Service {
            host,
            status,
            code: text("Code").unwrap_or("(no code)").to_string(),
            message: redact_message(text("Message").unwrap_or("(no message)"), keys),
            request_id: text("RequestId").unwrap_or("n/a").to_string(),
            clock_skew_secs: skew,
        })
    }
}

/// The service echoes its "string to sign" in signature errors, and that string carries the
/// security token: cut it off, and blank any key material that still appears.
fn redact_message(msg: &str, keys: Option<&ApiCredentials<'_>>) -> String {
    let lower = msg.to_ascii_lowercase();
    let mut out = match lower.find("string to sign") {
        Some(i) => format!("{}…", msg[..i].trim_end()),
        None => msg.to_string(),
    };
    if let Some(k) = keys {
        let mut secrets = vec![k.access_key_secret.to_string()];
        if let Some(t) = k.security_token {
            secrets.push(t.to_string());
            secrets.push(crate::signer::percent_encode(t));
        }
        for s in secrets.iter().filter(|s| s.len() >= 4) {
            out = out.replace(s.as_str(), "****");
        }
    }
    out
}

/// The common parameters of an unsigned RPC call, and its form body.
fn unsigned(call: &rpc_v2::RpcCall<'_>) -> (String, Option<String>) {
    let ts = signer::iso8601_utc(SystemTime::now());
    let mut q: Vec<(&str, &str)> = vec![
        ("Action", call.action),
        ("Format", call.format),
        ("Version", call.version),
        ("Timestamp", &ts),
    ];
    q.extend_from_slice(call.query);
    let body = (!call.form.is_empty()).then(|| signer::canonical_query(call.form.iter().copied()));
    (signer::canonical_query(q), body)
}

/// Server time minus local time in seconds, when beyond [`CLOCK_WARNING`].
fn clock_skew(date: Option<&reqwest::header::HeaderValue>) -> Option<i64> {
    let server = parse_http_date(date?.to_str().ok()?)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs() as i64;
    let diff = server - now;
    (diff.abs() > CLOCK_WARNING).then_some(diff)
}

/// Parses an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`) into Unix seconds.
fn parse_http_date(s: &str) -> Option<i64> {
    let t = httpdate::parse_http_date(s).ok()?;
    i64::try_from(t.duration_since(UNIX_EPOCH).ok()?.as_secs()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_http_dates() {
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:01:40 GMT"), Some(100));
        assert_eq!(parse_http_date("garbage"), None);
    }

    #[test]
    fn service_errors_mention_a_skewed_clock() {
        let e = ApiError::Service {
            host: "h".into(),
            status: 400,
            code: "InvalidTimeStamp.Expired".into(),
            message: "m".into(),
            request_id: "r".into(),
            clock_skew_secs: Some(-3600),
        };
        let s = e.to_string();
        assert!(
            s.contains("off by 60 minutes (ahead)") && s.contains("RequestId r"),
            "{s}"
        );
    }
}
