//! Upstream failures, and how each becomes a JSON-RPC error a person can act on.

use bytes::Bytes;
use serde_json::json;

use crate::auth::AuthError;
use crate::jsonrpc::{self, Id};
use crate::net::origin::ForeignOrigin;

/// Why a message could not be delivered or answered by the upstream.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error(
        "could not reach the MCP server at {url}: {detail}. Check the URL and your network \
         (behind a proxy, set HTTPS_PROXY)"
    )]
    Connect { url: String, detail: String },

    #[error("{}", status_message(*status, url, body))]
    Status {
        status: u16,
        url: String,
        body: String,
    },

    #[error(
        "the MCP server at {url} closed the response stream before answering ({detail}); the \
         request may or may not have run on the server, so it was not sent again"
    )]
    StreamClosed { url: String, detail: String },

    #[error("the MCP server at {url} sent something that is not JSON-RPC: {detail}")]
    Malformed { url: String, detail: String },

    #[error(transparent)]
    Auth(#[from] AuthError),

    /// The server tried to move the exchange (and its credentials) to another origin: a
    /// cross-origin redirect or a foreign legacy `endpoint` event. Nothing was sent there.
    #[error(transparent)]
    ForeignOrigin(#[from] ForeignOrigin),

    #[error(
        "the MCP session at {url} expired and starting a new one failed: {detail}. Restart the \
         MCP server entry in your client"
    )]
    Session { url: String, detail: String },

    #[error("no answer within --request-timeout ({secs} s); raise it, or 0 for no limit")]
    Timeout { secs: f64 },

    #[error("alibridge is shutting down (stdin closed or signal) and the request did not finish in time")]
    Shutdown,

    #[error(
        "the MCP server at {url} sent a message of {} while alibridge accepts at most {} \
         (--max-message-size, env ALIBRIDGE_MAX_MESSAGE_SIZE); it was discarded. Ask for less \
         (e.g. page through results) or raise the limit",
        size_text(*size), jsonrpc::human_size(*limit)
    )]
    TooLarge {
        url: String,
        /// The message's size, when known (`None`: reading stopped at the limit).
        size: Option<u64>,
        limit: u64,
    },

    /// A modern server's `input_required` round could not be completed through the client
    /// (it lacks the capability, refused, or the server kept asking).
    #[error(
        "the MCP server at {url} needs input from the client that alibridge could not obtain: \
         {detail}"
    )]
    InputRequired { url: String, detail: String },

    /// `--protocol modern`, but the server does not speak MCP 2026-07-28.
    #[error(
        "the MCP server at {url} does not speak MCP 2026-07-28 ({detail}), and --protocol modern \
         (env ALIBRIDGE_PROTOCOL) forbids the older protocol; use --protocol auto"
    )]
    NotModern { url: String, detail: String },

    #[error(
        "alibridge hit an internal error while relaying this request ({detail}); this is a \
         bug, please report it with the log (stderr or --log-file)"
    )]
    Internal { detail: String },

    /// The first POST was refused in a way that means "not a Streamable HTTP endpoint"
    /// (400/404/405); the caller may fall back to HTTP+SSE.
    #[error("{}", status_message(*status, url, body))]
    NotStreamable {
        status: u16,
        url: String,
        body: String,
    },
}

fn size_text(size: Option<u64>) -> String {
    match size {
        Some(n) => jsonrpc::human_size(n),
        None => "unknown size (more than the limit)".into(),
    }
}

fn status_message(status: u16, url: &str, body: &str) -> String {
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let body = if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    };
    let advice = match status {
        401 | 403 => "; the server refused the credentials: check the --header token or the --auth setting",
        404 => "; check the endpoint URL (for Alibaba Cloud, copy it from the OpenAPI MCP Server console)",
        429 => "; the server is rate-limiting: wait and retry",
        500..=599 => "; this is a server-side failure: retry later",
        _ => "",
    };
    format!("the MCP server at {url} answered HTTP {status} {reason}{body}{advice}")
}

/// Constructors the transports share, each for the endpoint shown as `url` (no query string).
impl UpstreamError {
    /// A message from the server over the `limit` of `--max-message-size`; `size` when known.
    pub fn too_large(url: &str, size: Option<u64>, limit: usize) -> Self {
        UpstreamError::TooLarge {
            url: url.to_string(),
            size,
            limit: limit as u64,
        }
    }

    /// The response stream ended or broke before the answer.
    pub fn stream_closed(url: &str, detail: impl Into<String>) -> Self {
        UpstreamError::StreamClosed {
            url: url.to_string(),
            detail: detail.into(),
        }
    }

    /// The server sent something that is not JSON-RPC.
    pub fn malformed(url: &str, detail: impl Into<String>) -> Self {
        UpstreamError::Malformed {
            url: url.to_string(),
            detail: detail.into(),
        }
    }
}

impl UpstreamError {
    /// The `data.alibridge.kind` value documented in `docs/relay-contract.md`.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Connect { .. } => "connect",
            UpstreamError::Status {
                status: 401 | 403, ..
            } => "auth",
            UpstreamError::Status { .. } | UpstreamError::NotStreamable { .. } => "http_status",
            UpstreamError::StreamClosed { .. } => "stream_closed",
            UpstreamError::Malformed { .. } => "malformed",
            UpstreamError::Auth(_) => "auth",
            UpstreamError::ForeignOrigin(_) => "origin",
            UpstreamError::Session { .. } => "session",
            UpstreamError::Timeout { .. } => "timeout",
            UpstreamError::Shutdown => "shutdown",
            UpstreamError::TooLarge { .. } => "too_large",
            UpstreamError::Internal { .. } => "internal",
            UpstreamError::InputRequired { .. } => "input_required",
            UpstreamError::NotModern { .. } => "protocol",
        }
    }

    pub fn http_status(&self) -> Option<u16> {
        match self {
            UpstreamError::Status { status, .. } | UpstreamError::NotStreamable { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }

    /// The JSON-RPC error response that answers request `id` with this failure.
    pub fn to_response(&self, id: &Id) -> Bytes {
        let mut info = json!({ "kind": self.kind() });
        if let Some(s) = self.http_status() {
            info["httpStatus"] = s.into();
        }
        if let UpstreamError::Auth(e) = self {
            info["credential"] = json!(e.failure());
        }
        jsonrpc::error_response(
            Some(id),
            jsonrpc::code::UPSTREAM_ERROR,
            &format!("alibridge: {}", crate::logging::error_line(self)),
            Some(json!({ "alibridge": info })),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_response_carries_kind_status_and_advice() {
        let e = UpstreamError::Status {
            status: 502,
            url: "https://h/mcp".into(),
            body: "bad".into(),
        };
        let v: serde_json::Value =
            serde_json::from_slice(&e.to_response(&Id::from_json("5"))).unwrap();
        assert_eq!(v["id"], 5);
        assert_eq!(v["error"]["code"], -32000);
        assert_eq!(v["error"]["data"]["alibridge"]["kind"], "http_status");
        assert_eq!(v["error"]["data"]["alibridge"]["httpStatus"], 502);
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("502 Bad Gateway: bad") && msg.contains("retry later"),
            "{msg}"
        );
    }
}
