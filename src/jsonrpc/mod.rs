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

mod head_scan;
pub mod walk;

/// The property tests' JSON generator, for other readers' property tests.
#[cfg(test)]
pub(crate) use head_scan::tests as head_scan_tests;
pub use head_scan::{HeadScan, MAX_ID_LEN};

/// Error codes from the JSON-RPC 2.0 specification, plus the one the bridge uses for
/// upstream failures (the implementation-defined server-error range).
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
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
    /// Where the `params` value is in `bytes` (found by the same parse, so readers of the
    /// params need not parse the whole message again).
    pub params: Option<std::ops::Range<usize>>,
}

/// A request id in canonical JSON form: equal ids compare equal even if the peer wrote them
/// with different whitespace or escapes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Id(String);

impl Id {
    fn from_raw(raw: &RawValue) -> Id {
        // The usual ids (small integers, plain ASCII strings) are already canonical: every
        // message has one, so skip the round trip through Value for them.
        if is_canonical(raw.get()) {
            return Id(raw.get().to_string());
        }
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

/// Whether `text` (one JSON value) is written exactly as `Value`'s `to_string` writes it: an
/// integer without leading zeros that fits in an `i64`, or a string of printable ASCII without
/// escapes.
fn is_canonical(text: &str) -> bool {
    let b = text.as_bytes();
    match b {
        [b'"', inner @ .., b'"'] => inner
            .iter()
            .all(|&c| (0x20..0x7f).contains(&c) && c != b'"' && c != b'\\'),
        _ => {
            let digits = b.strip_prefix(b"-").unwrap_or(b);
            let plain =
                !digits.is_empty() && digits.len() <= 18 && digits.iter().all(u8::is_ascii_digit);
            plain && (digits == b"0".as_slice() && b.len() == 1 || digits[0] != b'0')
        }
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
    /// The parser's message is this error's own detail (where in the line), so it is part of
    /// the message, not a separate cause.
    #[error("not valid JSON: {0}")]
    Json(serde_json::Error),
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
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
}

/// Whether `json` (one JSON text) can hold the object key `key` (or text containing it):
/// `false` only when those bytes appear nowhere in it and it has no escape (`\`) that could
/// spell them. Readers that run on every message use it to skip a parse that could only find
/// nothing; `true` answers nothing, the parse decides.
pub fn may_hold_key(json: &[u8], key: &str) -> bool {
    let key = key.as_bytes();
    let Some(&first) = key.first() else {
        return true;
    };
    // Messages are short and keys few: finding the first byte and comparing the rest beats
    // setting up a substring searcher on every call.
    memchr::memchr(b'\\', json).is_some()
        || memchr::memchr_iter(first, json).any(|at| json[at..].starts_with(key))
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
        // The raw value borrows from `bytes`: its offset is the distance between the two.
        let params = peek.params.map(|p| {
            let start = p.get().as_ptr() as usize - bytes.as_ptr() as usize;
            start..start + p.get().len()
        });
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
            params,
        })
    }

    pub fn is_request(&self) -> bool {
        self.kind == Kind::Request
    }

    pub fn method_is(&self, m: &str) -> bool {
        self.method.as_deref() == Some(m)
    }
}

/// The answer to a client message that was over `--max-message-size`: a JSON-RPC error with
/// the message's id when one could be read, else with id null.
pub fn too_large_response(id: Option<&Id>, size: u64, limit: u64) -> Bytes {
    error_response(
        id,
        code::INVALID_REQUEST,
        &format!(
            "Invalid Request: the message is {} and alibridge accepts at most {} \
             (--max-message-size, env ALIBRIDGE_MAX_MESSAGE_SIZE); it was discarded. Send a \
             smaller message or raise the limit",
            human_size(size),
            human_size(limit)
        ),
        Some(json!({"alibridge": {"kind": "too_large", "size": size, "limit": limit}})),
    )
}

/// `1536` → `1.5 KiB`; exact bytes below 1 KiB.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    let text = format!("{v:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text} {}", UNITS[unit])
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
    fn a_key_is_ruled_out_only_when_nothing_could_spell_it() {
        assert!(!may_hold_key(br#"{"a":1}"#, "isError"));
        assert!(may_hold_key(br#"{"isError":true}"#, "isError"));
        assert!(may_hold_key(br#"{"is\u0045rror":true}"#, "isError"));
        assert!(may_hold_key(br#"{"text":"isError"}"#, "isError"));
    }

    #[test]
    fn knows_where_params_are() {
        let text = r#"{"id":1, "params" : {"name":"x","a":[1,2]} ,"method":"m"}"#;
        let m = parse(text).unwrap();
        assert_eq!(&text[m.params.unwrap()], r#"{"name":"x","a":[1,2]}"#);
        assert_eq!(parse(r#"{"id":1,"method":"m"}"#).unwrap().params, None);
        let m = parse(r#"{"id":1,"method":"m","params":[3]}"#).unwrap();
        assert_eq!(m.params, Some(30..33));
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

    fn scan(pieces: &[&[u8]]) -> HeadScan {
        let mut s = HeadScan::new();
        for p in pieces {
            s.feed(p);
        }
        s
    }

    #[test]
    fn head_scan_finds_the_top_level_id_anywhere() {
        let s = scan(&[
            br#" {"params":{"id":9,"x":[{"id":8}],"s":"\"id\":7,"}, "i"#,
            br#"d" : "ab\"c" ,"method":"m"}"#,
        ]);
        assert_eq!(s.id(), Some(&Id::from_json(r#""ab\"c""#)));
        assert!(s.has_method() && s.has_content());
        let s = scan(&[br#"{"jsonrpc":"2.0","id":12,"result":{}}"#]);
        assert_eq!(
            (s.id().map(Id::as_json), s.has_method()),
            (Some("12"), false)
        );
        // Canonical like Message::parse: the same id whatever its spelling.
        let s = scan(&[br#"{"id":"\u0061"}"#]);
        assert_eq!(s.id(), Some(&Id::from_json(r#""a""#)));
        for unreadable in [
            &br#"{"id":null,"method":"x"}"#[..],
            br#"{"id":{"a":1}}"#,
            br#"[{"id":1}]"#,
            br#"{"id":1"#,
            br#"{"id""#,
            b"   ",
        ] {
            assert_eq!(
                scan(&[unreadable]).id(),
                None,
                "{}",
                String::from_utf8_lossy(unreadable)
            );
        }
        let long = format!(r#"{{"id":"{}"}}"#, "x".repeat(MAX_ID_LEN));
        assert_eq!(
            scan(&[long.as_bytes()]).id(),
            None,
            "an id longer than MAX_ID_LEN is dropped"
        );
        let s = scan(&[br#"{"a":1} {"id":2}"#]);
        assert_eq!(s.id(), None, "nothing after the top-level object counts");
    }

    #[test]
    fn sizes_read_like_a_person_would_write_them() {
        assert_eq!(human_size(10), "10 bytes");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(32 << 20), "32 MiB");
        assert_eq!(human_size(u64::MAX), "16777216 TiB");
    }

    #[test]
    fn ids_taken_as_written_are_the_canonical_ones() {
        let samples = [
            "0",
            "7",
            "-3",
            "123456789012345678",
            "\"a\"",
            "\"\"",
            "\"x y/z\"",
            "-0",
            "1.0",
            "1e3",
            "12345678901234567890",
            "\"\\u0061\"",
            "\"é\"",
            "\"a\\\"b\"",
            "true",
        ];
        for text in samples {
            let round_trip = serde_json::from_str::<Value>(text).unwrap().to_string();
            if is_canonical(text) {
                assert_eq!(round_trip, text, "{text} is taken as written");
            }
            let raw: Box<RawValue> = serde_json::from_str(text).unwrap();
            assert_eq!(Id::from_raw(&raw).as_json(), round_trip, "{text}");
        }
        assert!(is_canonical("42") && is_canonical("\"req-1\""));
        assert!(!is_canonical("-0") && !is_canonical("\"\\u0061\""));
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
