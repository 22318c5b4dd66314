//! The little the bridge needs to know about JSON-RPC: classify a message by peeking at `id`
//! and `method`, and build the error responses the bridge itself must send.
//!
//! Messages are never re-serialised: a [`Message`] keeps the exact bytes it was made from, and
//! the peek borrows from them. Parsing validates the whole text (serde reads every token), so
//! anything that reaches stdout is known to be well-formed JSON.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

/// Error codes from the JSON-RPC 2.0 specification, plus the one the bridge uses for
/// upstream failures (the implementation-defined server-error range).
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const UPSTREAM_ERROR: i64 = -32000;
}

/// What a message is, for routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Has `method` and a non-null `id`: expects exactly one response.
    Request,
    /// Has `method`, no `id`.
    Notification,
    /// No `method`, has `id` (`result` or `error`).
    Response,
}

/// A JSON-RPC message: the original bytes plus what was peeked from them.
#[derive(Debug, Clone)]
pub struct Message {
    /// The bytes exactly as received (without the line terminator).
    pub bytes: Bytes,
    pub kind: Kind,
    /// The `id` as canonical JSON text (e.g. `1`, `"abc"`), for matching responses to requests.
    pub id: Option<Id>,
    pub method: Option<String>,
}

/// A request id in canonical JSON form: equal ids compare equal even if the peer wrote them
/// with different whitespace or escapes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Id(String);

impl Id {
    fn from_raw(raw: &RawValue) -> Id {
        // Canonicalise through Value so `"a"` and `"\u0061"` are the same id; ids are tiny.
        match serde_json::from_str::<Value>(raw.get()) {
            Ok(v) => Id(v.to_string()),
            Err(_) => Id(raw.get().to_string()),
        }
    }

    /// The id as JSON text, ready to splice into a response.
    pub fn as_json(&self) -> &str {
        &self.0
    }

    /// Parses an id from JSON text (used for ids the bridge mints itself).
    pub fn from_json(text: &str) -> Id {
        Id(text.to_string())
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a line could not be relayed.
#[derive(Debug, thiserror::Error)]
pub enum InvalidMessage {
    #[error("not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("not a JSON-RPC message: {0}")]
    NotJsonRpc(&'static str, Option<Id>),
}

impl InvalidMessage {
    /// The JSON-RPC error response the bridge owes the sender of this line.
    pub fn to_response(&self) -> Bytes {
        match self {
            InvalidMessage::Json(e) => {
                error_response(None, code::PARSE_ERROR, &format!("Parse error: {e}"), None)
            }
            InvalidMessage::NotJsonRpc(why, id) => error_response(
                id.as_ref(),
                code::INVALID_REQUEST,
                &format!("Invalid Request: {why}"),
                None,
            ),
        }
    }
}

#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(default)]
    method: Option<std::borrow::Cow<'a, str>>,
}

impl Message {
    /// Classifies `bytes` (one complete JSON text) without copying it.
    pub fn parse(bytes: Bytes) -> Result<Message, InvalidMessage> {
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
        if first != Some(b'{') {
            // Validate first so garbage gets a parse error, not "invalid request".
            serde_json::from_slice::<serde::de::IgnoredAny>(&bytes)
                .map_err(InvalidMessage::Json)?;
            let why = if first == Some(b'[') {
                "batches are not supported (removed in MCP 2025-06-18); send one message per line"
            } else {
                "expected a JSON object"
            };
            return Err(InvalidMessage::NotJsonRpc(why, None));
        }
        let peek: Peek<'_> = serde_json::from_slice(&bytes).map_err(InvalidMessage::Json)?;
        let id = peek.id.filter(|r| r.get() != "null").map(Id::from_raw);
        let method = peek.method.map(|m| m.into_owned());
        let kind = match (&method, &id) {
            (Some(_), Some(_)) => Kind::Request,
            (Some(_), None) => Kind::Notification,
            (None, Some(_)) => Kind::Response,
            (None, None) => {
                return Err(InvalidMessage::NotJsonRpc(
                    "it has neither \"method\" nor \"id\"",
                    None,
                ))
            }
        };
        Ok(Message {
            bytes,
            kind,
            id,
            method,
        })
    }

    pub fn is_request(&self) -> bool {
        self.kind == Kind::Request
    }

    pub fn method_is(&self, m: &str) -> bool {
        self.method.as_deref() == Some(m)
    }
}

/// Builds `{"jsonrpc":"2.0","id":…,"error":{…}}` as one line of bytes.
pub fn error_response(id: Option<&Id>, code: i64, message: &str, data: Option<Value>) -> Bytes {
    let mut error = json!({ "code": code, "message": message });
    if let Some(data) = data {
        error["data"] = data;
    }
    let id_text = id.map(Id::as_json).unwrap_or("null");
    let body = serde_json::to_string(&error).expect("serialising a Value cannot fail");
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","id":{id_text},"error":{body}}}"#
    ))
}

/// Replaces the `id` of a request (used when replaying the client's `initialize` on a new
/// session, so its answer cannot be mistaken for one the client is waiting for).
pub fn with_id(bytes: &[u8], id: &Id) -> Option<Bytes> {
    let mut v: serde_json::Map<String, Value> = serde_json::from_slice(bytes).ok()?;
    v.insert("id".into(), serde_json::from_str(id.as_json()).ok()?);
    serde_json::to_vec(&v).ok().map(Bytes::from)
}

/// Reads `result.protocolVersion` from an initialize response.
pub fn negotiated_protocol_version(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Resp {
        result: Option<ResultPart>,
    }
    #[derive(Deserialize)]
    struct ResultPart {
        #[serde(rename = "protocolVersion")]
        protocol_version: Option<String>,
    }
    let r: Resp = serde_json::from_slice(bytes).ok()?;
    r.result?.protocol_version
}

/// True when a response carries `error` rather than `result`.
pub fn is_error_response(bytes: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Resp {
        error: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<Resp>(bytes).is_ok_and(|r| r.error.is_some())
}

/// Removes raw CR and LF bytes. In valid JSON they can only be insignificant whitespace
/// (inside strings they must be escaped), so the message keeps its meaning and fits on one
/// stdio line. Borrows when there is nothing to remove, which is the common case.
pub fn single_line(bytes: Bytes) -> Bytes {
    if !bytes.iter().any(|&b| b == b'\n' || b == b'\r') {
        return bytes;
    }
    Bytes::from(
        bytes
            .iter()
            .copied()
            .filter(|&b| b != b'\n' && b != b'\r')
            .collect::<Vec<_>>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Message, InvalidMessage> {
        Message::parse(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn classifies_messages() {
        let m = parse(r#"{"jsonrpc":"2.0","id":7,"method":"tools/list","x":{"y":[1]}}"#).unwrap();
        assert_eq!((m.kind, m.id.unwrap().as_json()), (Kind::Request, "7"));
        let m = parse(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert_eq!(m.kind, Kind::Notification);
        let m = parse(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#).unwrap();
        assert_eq!(
            (m.kind, m.id.unwrap().as_json()),
            (Kind::Response, r#""a""#)
        );
        let m = parse(r#"{"jsonrpc":"2.0","id":null,"method":"x"}"#).unwrap();
        assert_eq!(m.kind, Kind::Notification);
    }

    #[test]
    fn ids_are_canonical() {
        let a = parse(r#"{"id": "\u0061", "result":1}"#)
            .unwrap()
            .id
            .unwrap();
        let b = parse(r#"{"id":"a","result":1}"#).unwrap().id.unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn bad_input_gets_the_right_error() {
        let e = parse("{nope").unwrap_err();
        assert!(String::from_utf8_lossy(&e.to_response()).contains("-32700"));
        let e = parse("[1,2]").unwrap_err();
        assert!(String::from_utf8_lossy(&e.to_response()).contains("-32600"));
        let e = parse("42").unwrap_err();
        assert!(matches!(e, InvalidMessage::NotJsonRpc(..)));
        assert!(matches!(
            parse("{}").unwrap_err(),
            InvalidMessage::NotJsonRpc(..)
        ));
        assert!(matches!(parse("[1,").unwrap_err(), InvalidMessage::Json(_)));
    }

    #[test]
    fn error_response_is_valid_json_rpc() {
        let id = Id::from_json("\"x\"");
        let b = error_response(Some(&id), -32000, "boom \"quoted\"", Some(json!({"k":1})));
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["id"], "x");
        assert_eq!(v["error"]["message"], "boom \"quoted\"");
        assert_eq!(v["error"]["data"]["k"], 1);
    }

    #[test]
    fn single_line_strips_only_whitespace_newlines() {
        let b = single_line(Bytes::from_static(b"{\n  \"a\": \"x\\ny\"\r\n}"));
        assert_eq!(&b[..], b"{  \"a\": \"x\\ny\"}");
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["a"], "x\ny");
    }

    #[test]
    fn replaces_id_and_reads_protocol_version() {
        let b = with_id(
            br#"{"jsonrpc":"2.0","id":0,"method":"initialize"}"#,
            &Id::from_json("\"r1\""),
        )
        .unwrap();
        assert_eq!(
            parse(std::str::from_utf8(&b).unwrap())
                .unwrap()
                .id
                .unwrap()
                .as_json(),
            "\"r1\""
        );
        let v =
            negotiated_protocol_version(br#"{"id":0,"result":{"protocolVersion":"2025-06-18"}}"#);
        assert_eq!(v.as_deref(), Some("2025-06-18"));
    }
}
