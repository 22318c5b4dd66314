//! Which era a server speaks: the `server/discover` probe for a client of the `initialize`
//! era ([`probe`]), the first message of a modern client ([`Modern::send_first`]), and what
//! makes a client message modern ([`is_modern_shaped`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::{Response, Url};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tracing::debug;

use super::call::post_json;
use super::{First, Modern, MODERN_ERRORS, MODERN_VERSION};
use crate::jsonrpc::{Kind, Message};
use crate::net::{display_url, read_body};
use crate::upstream::error::UpstreamError;
use crate::upstream::event_stream::{parse_event, EventStream, Parsed};
use crate::upstream::headers::{self, ToolFacts};
use crate::upstream::http::{error_snippet, is_event_stream, HttpClient};

/// How long the answer to a `server/discover` probe may take once the response head arrived,
/// before the server is taken for a legacy one (a legacy server may never answer a request it
/// does not know on a stream it opened). The head itself has no limit: a sign-in may come first.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a `server/discover` probe found.
#[derive(Debug)]
pub enum Probe {
    /// A modern server: its discover result, and the version the bridge will use with it.
    Modern { discover: Value, version: String },
    /// Anything else: the reason, for the log.
    Legacy(String),
}

/// Sends `server/discover` with `client_info` and `capabilities` in `_meta` and reads the
/// server's era from the answer. Connection and credential failures are errors (the era is
/// unknown); every other outcome is an era.
pub async fn probe(
    url: &Url,
    http: &HttpClient,
    client_info: &Value,
    capabilities: &Value,
) -> Result<Probe, UpstreamError> {
    let discover = discover(url, http, client_info, capabilities);
    crate::telemetry::traced("alibridge.era_probe", discover).await
}

/// [`probe`] without its telemetry span.
async fn discover(
    url: &Url,
    http: &HttpClient,
    client_info: &Value,
    capabilities: &Value,
) -> Result<Probe, UpstreamError> {
    let mut version = MODERN_VERSION.to_string();
    // One retry when the server names a modern version it prefers (−32022 with `supported`).
    for _ in 0..2 {
        let body = json!({
            "jsonrpc": "2.0", "id": "alibridge-discover", "method": "server/discover",
            "params": {"_meta": {
                headers::META_PROTOCOL_VERSION: version,
                headers::META_CLIENT_INFO: client_info,
                headers::META_CLIENT_CAPABILITIES: capabilities,
            }}
        });
        let body = Bytes::from(body.to_string());
        let facts = ToolFacts::default();
        let sent = post_json(http, url, &body, None, &facts);
        // No time limit until the response head: a sign-in the server asks for happens there.
        let resp = match sent.await {
            Err(e @ (UpstreamError::Connect { .. } | UpstreamError::Auth(_))) => return Err(e),
            Err(e @ UpstreamError::ForeignOrigin(_)) => return Err(e),
            Err(e) => return Ok(Probe::Legacy(e.to_string())),
            Ok(r) => r,
        };
        let status = resp.status().as_u16();
        if matches!(status, 401 | 403) {
            let (snippet, _) = error_snippet(resp).await;
            return Err(UpstreamError::Status {
                status,
                url: display_url(url),
                body: snippet,
            });
        }
        let answer = if resp.status().is_success() {
            let read = tokio::time::timeout(PROBE_TIMEOUT, first_response(resp, http));
            match read.await {
                Ok(Some(v)) => v,
                _ => return Ok(Probe::Legacy(format!("HTTP {status} without an answer"))),
            }
        } else {
            let (snippet, body) = error_snippet(resp).await;
            match serde_json::from_slice::<Value>(&body) {
                Ok(v) if v.get("error").is_some() => v,
                _ => return Ok(Probe::Legacy(format!("HTTP {status} {snippet}"))),
            }
        };
        debug!(status, answer = %answer, "server/discover answered");
        if let Some(result) = answer.get("result") {
            if result.get("supportedVersions").is_none() {
                return Ok(Probe::Legacy(
                    "the discover result names no versions".into(),
                ));
            }
            let chosen = pick_version(result.get("supportedVersions")).unwrap_or(version);
            return Ok(Probe::Modern {
                discover: result.clone(),
                version: chosen,
            });
        }
        let code = answer.pointer("/error/code").and_then(Value::as_i64);
        match code {
            Some(-32022) => {
                let supported = answer.pointer("/error/data/supported");
                match pick_version(supported) {
                    Some(v) if v != version => version = v,
                    _ => {
                        return Ok(Probe::Legacy(format!(
                            "the server supports none of the modern versions alibridge speaks \
                             ({MODERN_VERSION}): {}",
                            supported.map(Value::to_string).unwrap_or_default()
                        )))
                    }
                }
            }
            Some(c) if MODERN_ERRORS.contains(&c) => {
                // A modern server that refused the probe itself: modern all the same, with
                // what can be learnt later; serverInfo stays unknown.
                return Ok(Probe::Modern {
                    discover: json!({"supportedVersions": [version], "capabilities": {}}),
                    version,
                });
            }
            _ => {
                let msg = answer
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                return Ok(Probe::Legacy(format!(
                    "server/discover got error {}: {msg}",
                    code.unwrap_or(0)
                )));
            }
        }
    }
    Ok(Probe::Legacy("no modern version in common".into()))
}

/// The version to speak with a server that supports `supported` (a JSON array of strings):
/// [`MODERN_VERSION`] when listed, else the newest later one (versions are dates, so they
/// order as strings); `None` when it lists no modern version.
fn pick_version(supported: Option<&Value>) -> Option<String> {
    let list: Vec<&str> = supported?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    if list.contains(&MODERN_VERSION) {
        return Some(MODERN_VERSION.to_string());
    }
    list.into_iter()
        .filter(|v| *v > MODERN_VERSION)
        .max()
        .map(str::to_string)
}

/// Whether a discover result lists a version of the initialize era (before
/// [`MODERN_VERSION`]) among the server's supported versions: a dual-era server.
pub fn lists_legacy(discover: &Value) -> bool {
    discover
        .get("supportedVersions")
        .and_then(Value::as_array)
        .is_some_and(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .any(|v| v < MODERN_VERSION)
        })
}

/// The first JSON-RPC response in a successful answer (JSON or SSE), as a value.
async fn first_response(resp: Response, http: &HttpClient) -> Option<Value> {
    let limit = http.max_message_size();
    if is_event_stream(&resp) {
        let mut events = EventStream::new(resp.bytes_stream()).with_limit(limit);
        while let Some(Ok(ev)) = events.next().await {
            if let Some(Parsed::Message(m)) = parse_event(ev) {
                if m.kind == Kind::Response {
                    return serde_json::from_slice(&m.bytes).ok();
                }
            }
        }
        return None;
    }
    let body = read_body(resp, limit).await.ok()?;
    serde_json::from_slice(&body).ok()
}

/// True when a client message is shaped for the modern era: `server/discover`, or a request
/// whose `_meta` names a protocol version.
pub fn is_modern_shaped(msg: &Message) -> bool {
    if msg.method_is("server/discover") {
        return true;
    }
    #[derive(Deserialize)]
    struct Params<'a> {
        #[serde(borrow, rename = "_meta")]
        meta: Option<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct Meta {
        #[serde(rename = "io.modelcontextprotocol/protocolVersion")]
        version: Option<serde::de::IgnoredAny>,
    }
    // Only `params` is read (every relayed message comes here), and `_meta` only when it is
    // an object; a `_meta` with a key twice is read as a map, where the last one counts.
    let Some(params) = msg.params.clone().and_then(|r| msg.bytes.get(r)) else {
        return false;
    };
    if params.first() != Some(&b'{') {
        return false;
    }
    let Some(meta) = serde_json::from_slice::<Params<'_>>(params)
        .ok()
        .and_then(|p| p.meta)
        .filter(|m| m.get().starts_with('{'))
    else {
        return false;
    };
    if !crate::jsonrpc::may_hold_key(meta.get().as_bytes(), headers::META_PROTOCOL_VERSION) {
        return false;
    }
    match serde_json::from_str::<Meta>(meta.get()) {
        Ok(m) => m.version.is_some(),
        Err(_) => serde_json::from_str::<HashMap<&str, serde::de::IgnoredAny>>(meta.get())
            .is_ok_and(|m| m.contains_key(headers::META_PROTOCOL_VERSION)),
    }
}

impl Modern {
    /// Relays the first message of a modern client and tells whether the server is modern: a
    /// result or a modern error says so (and is delivered); anything else is a legacy server
    /// (nothing delivered, so the caller can answer or reroute).
    pub async fn send_first(self: &Arc<Self>, msg: Message) -> Result<First, UpstreamError> {
        if msg.kind != Kind::Request {
            self.send(msg).await?;
            return Ok(First::Modern);
        }
        let id = msg.id.clone().expect("requests have ids");
        // The first request may run long (a tool call): it is cancellable like any other.
        let token = self.cancel.child_token();
        self.in_flight
            .lock()
            .unwrap()
            .insert(id.clone(), token.clone());
        // No time limit until the response head: a sign-in the server asks for happens there.
        let exchange = async {
            match self.post(&msg.bytes).await {
                Ok(resp) if msg.method_is("server/discover") => {
                    tokio::time::timeout(PROBE_TIMEOUT, self.answer_from(resp, &id))
                        .await
                        .ok()
                }
                Ok(resp) => Some(self.answer_from(resp, &id).await),
                Err(e) => Some(Err(e)),
            }
        };
        let outcome = token.run_until_cancelled(exchange).await;
        self.in_flight.lock().unwrap().remove(&id);
        let answer = match outcome {
            None => return Ok(First::Cancelled),
            Some(None) => {
                return Ok(First::Legacy(
                    "server/discover was not answered in time".into(),
                ))
            }
            Some(Some(a)) => a,
        };
        let answer = match answer {
            Ok(a) => a,
            Err(e @ (UpstreamError::Connect { .. } | UpstreamError::Auth(_))) => return Err(e),
            Err(e @ UpstreamError::ForeignOrigin(_)) => return Err(e),
            Err(UpstreamError::Status {
                status: s @ (401 | 403),
                url,
                body,
            }) => {
                return Err(UpstreamError::Status {
                    status: s,
                    url,
                    body,
                })
            }
            Err(e) => return Ok(First::Legacy(e.to_string())),
        };
        let v: Value = serde_json::from_slice(&answer.bytes).unwrap_or(Value::Null);
        let modern = v.get("result").is_some()
            || v.pointer("/error/code")
                .and_then(Value::as_i64)
                .is_some_and(|c| MODERN_ERRORS.contains(&c));
        if !modern {
            let msg = v
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            return Ok(First::Legacy(msg));
        }
        let answer = if msg.method_is("tools/list") {
            Message::parse(self.tools.observe_list(answer.bytes.clone())).unwrap_or(answer)
        } else {
            answer
        };
        self.out.deliver(answer).await;
        Ok(First::Modern)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modern_shape_and_versions() {
        let m = |s: &'static str| Message::parse(Bytes::from_static(s.as_bytes())).unwrap();
        assert!(is_modern_shaped(&m(
            r#"{"jsonrpc":"2.0","id":1,"method":"server/discover"}"#
        )));
        assert!(is_modern_shaped(&m(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#
        )));
        assert!(!is_modern_shaped(&m(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"progressToken":1}}}"#
        )));
        assert!(!is_modern_shaped(&m(
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#
        )));
        assert_eq!(
            pick_version(Some(&json!(["2025-11-25", "2026-07-28", "2027-01-01"]))).as_deref(),
            Some("2026-07-28")
        );
        assert_eq!(pick_version(Some(&json!(["2025-11-25"]))), None);
    }
}
