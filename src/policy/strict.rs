//! The strict reader: when any policy flag is set, a client message must be exactly one
//! well-formed JSON-RPC object that every common JSON parser reads the same way, or it is
//! refused before it is forwarded. The bridge and the proxy both call [`check`].
//!
//! Why: the policy decides on what *alibridge's* parser reads, the server acts on what *its*
//! parser reads. Where parsers disagree (a repeated key: first or last wins; a byte-order mark
//! some skip; an integer past 2^53 that JavaScript rounds; invalid UTF-8 some replace) an agent
//! could show alibridge one call and the server another. Refused here:
//!
//! - anything that is not valid UTF-8 JSON text, or that starts with a byte-order mark;
//! - a repeated key in any object, at any depth;
//! - a number outside ±2^53 (integers every parser represents exactly) or not finite;
//! - a top level that is not one object (a batch holding a `tools/call` is refused; other
//!   batches are checked element by element);
//! - a `tools/call` without an id, or with a `null` id (it would run unanswered and unaudited).

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use bytes::Bytes;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::json;

use crate::jsonrpc::{self, Id};

/// Largest integer magnitude every JSON parser keeps exactly (IEEE 754 doubles).
const MAX_SAFE: u64 = (1 << 53) - 1;
/// Most elements a batch may hold (each is checked).
const MAX_BATCH: usize = 1024;

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("it starts with a byte-order mark")]
    ByteOrderMark,
    #[error("it is not valid JSON ({0})")]
    Json(String),
    #[error("the key {0:?} appears twice in one object")]
    DuplicateKey(String),
    #[error("it holds a number outside ±2^53, which JSON parsers read differently")]
    UnsafeNumber,
    #[error("it is not one JSON object")]
    NotObject,
    #[error("it is a batch holding a tools/call")]
    BatchWithCall,
    #[error("it is a tools/call without an id (or with id null)")]
    CallWithoutId,
}

/// Checks one client message (see the module doc).
pub fn check(bytes: &[u8]) -> Result<(), Malformed> {
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        return Err(Malformed::ByteOrderMark);
    }
    let text = std::str::from_utf8(bytes).map_err(|e| Malformed::Json(e.to_string()))?;
    let first = text.trim_start().bytes().next();
    match first {
        Some(b'{') => check_object(text),
        Some(b'[') => {
            let items: Vec<&serde_json::value::RawValue> =
                serde_json::from_str(text).map_err(|e| Malformed::Json(e.to_string()))?;
            if items.len() > MAX_BATCH {
                return Err(Malformed::NotObject);
            }
            for item in &items {
                check_object(item.get())?;
            }
            let calls = items
                .iter()
                .any(|i| shape(i.get()).is_some_and(|s| s.is_call));
            if calls {
                return Err(Malformed::BatchWithCall);
            }
            Ok(())
        }
        _ => Err(Malformed::NotObject),
    }
}

fn check_object(text: &str) -> Result<(), Malformed> {
    let mut de = serde_json::Deserializer::from_str(text);
    let why = RefCell::new(None);
    let found = Walk { why: &why }
        .deserialize(&mut de)
        .map_err(|e| why.take().unwrap_or_else(|| Malformed::Json(e.to_string())))?;
    de.end().map_err(|e| Malformed::Json(e.to_string()))?;
    if !found.object {
        return Err(Malformed::NotObject);
    }
    if let Some(s) = shape(text) {
        if s.is_call && !s.has_id {
            return Err(Malformed::CallWithoutId);
        }
    }
    Ok(())
}

/// What the top level of a message is.
struct Shape {
    is_call: bool,
    has_id: bool,
}

fn shape(text: &str) -> Option<Shape> {
    #[derive(serde::Deserialize)]
    struct Top<'a> {
        #[serde(borrow, default)]
        method: Option<std::borrow::Cow<'a, str>>,
        #[serde(default, deserialize_with = "present")]
        id: Option<serde_json::Value>,
    }
    fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
        serde::Deserialize::deserialize(d).map(Some)
    }
    let top: Top<'_> = serde_json::from_str(text).ok()?;
    Some(Shape {
        is_call: top.method.as_deref() == Some("tools/call"),
        has_id: top.id.is_some_and(|v| !v.is_null()),
    })
}

/// A visitor that reads every value, refusing repeated keys and unsafe numbers; the reason is
/// left in `why` (serde's error carries only text).
#[derive(Clone, Copy)]
struct Walk<'w> {
    why: &'w RefCell<Option<Malformed>>,
}

impl Walk<'_> {
    fn fail<E: de::Error>(self, why: Malformed) -> E {
        let e = E::custom(&why);
        *self.why.borrow_mut() = Some(why);
        e
    }
}

/// What [`Walk`] saw at its level.
struct Found {
    object: bool,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = Found;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Found, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = Found;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Found, E> {
        Ok(Found { object: false })
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Found, E> {
        if v.unsigned_abs() > MAX_SAFE {
            return Err(self.fail(Malformed::UnsafeNumber));
        }
        Ok(Found { object: false })
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Found, E> {
        if v > MAX_SAFE {
            return Err(self.fail(Malformed::UnsafeNumber));
        }
        Ok(Found { object: false })
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Found, E> {
        if !v.is_finite() || v.abs() > MAX_SAFE as f64 {
            return Err(self.fail(Malformed::UnsafeNumber));
        }
        Ok(Found { object: false })
    }
    fn visit_str<E>(self, _: &str) -> Result<Found, E> {
        Ok(Found { object: false })
    }
    fn visit_borrowed_str<E>(self, _: &'de str) -> Result<Found, E> {
        Ok(Found { object: false })
    }
    fn visit_string<E>(self, _: String) -> Result<Found, E> {
        Ok(Found { object: false })
    }
    fn visit_unit<E>(self) -> Result<Found, E> {
        Ok(Found { object: false })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Found, A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(Found { object: false })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Found, A::Error> {
        let mut keys: HashSet<String> = HashSet::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if !keys.insert(key.to_string()) {
                return Err(self.fail(Malformed::DuplicateKey(key.into_owned())));
            }
            map.next_value_seed(self)?;
        }
        Ok(Found { object: true })
    }
}

/// The JSON-RPC error refusing a message: `-32600` with the request's id when it could be read
/// (else `null`), `data.alibridge.kind = "policy"`, rule `strict-json`.
pub fn refusal(id: Option<&Id>, why: &Malformed) -> Bytes {
    jsonrpc::error_response(
        id,
        jsonrpc::code::INVALID_REQUEST,
        &format!(
            "alibridge refused a message: {why}. With a tool policy set (--read-only, \
             --allow-tools/--deny-tools, --allow-api/--deny-api, --confirm-writes), alibridge \
             forwards only messages every JSON parser reads the same way. Nothing was sent to \
             the server; send one JSON object per message, each key once, numbers within \
             ±2^53, and an id on every tools/call."
        ),
        Some(json!({"alibridge": {"kind": "policy", "rule": "strict-json"}})),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_messages_pass() {
        for ok in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"a":[1,2.5,-3,{"b":null}]}}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"2.0","id":"a","result":{}}"#,
            r#" {"jsonrpc":"2.0","id":9007199254740991,"method":"ping"} "#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"n"}]"#,
            r#"{"a":{"a":{"a":1}}}"#,
        ] {
            assert_eq!(check(ok.as_bytes()), Ok(()), "{ok}");
        }
    }

    #[test]
    fn ambiguous_messages_are_refused_with_the_reason() {
        let cases: &[(&[u8], Malformed)] = &[
            (
                br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call"}"#,
                Malformed::DuplicateKey("method".into()),
            ),
            (
                br#"{"id":1,"method":"tools/call","params":{"arguments":{"command":"a","command":"b"}}}"#,
                Malformed::DuplicateKey("command".into()),
            ),
            (
                br#"{"id":1,"method":"tools/call","params":{"name":"a","n\u0061me":"b"}}"#,
                Malformed::DuplicateKey("name".into()),
            ),
            (
                b"\xEF\xBB\xBF{\"id\":1,\"method\":\"ping\"}",
                Malformed::ByteOrderMark,
            ),
            (br#"{"id":9007199254740993,"method":"ping"}"#, Malformed::UnsafeNumber),
            (br#"{"id":1,"method":"ping","params":{"x":-1e300}}"#, Malformed::UnsafeNumber),
            (br#"{"jsonrpc":"2.0","method":"tools/call","params":{}}"#, Malformed::CallWithoutId),
            (br#"{"id":null,"method":"tools\/call"}"#, Malformed::CallWithoutId),
            (br#"[{"id":1,"method":"tools/call"}]"#, Malformed::BatchWithCall),
            (br#""text""#, Malformed::NotObject),
            (br#"[1]"#, Malformed::NotObject),
        ];
        assert_eq!(
            check(br#"{"id":1,"method":"tools/call"}"#),
            Ok(()),
            "has an id"
        );
        for (bytes, want) in cases {
            assert_eq!(
                &check(bytes).unwrap_err(),
                want,
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
        for bad in [
            b"{\"id\":1,\"method\":\"p\xFFing\"}".as_slice(),
            br#"{"id":1,"method":"ping"} {"id":2}"#,
            br#"{"id":1,"method":"ping","params":{"x":1e400}}"#,
            br#"{"id":1,"method":"ping","params":"\ud800"}"#,
            br#"{"id":1,"#,
        ] {
            assert!(
                matches!(
                    check(bad),
                    Err(Malformed::Json(_) | Malformed::UnsafeNumber)
                ),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000);
        assert!(check(format!("{{\"a\":{deep}").as_bytes()).is_err());
    }

    #[test]
    fn refusals_are_json_rpc_errors_with_the_id() {
        let r = refusal(Some(&Id::from_json("7")), &Malformed::UnsafeNumber);
        let v: serde_json::Value = serde_json::from_slice(&r).unwrap();
        assert_eq!(v["id"], 7);
        assert_eq!(v["error"]["code"], -32600);
        assert_eq!(v["error"]["data"]["alibridge"]["rule"], "strict-json");
        assert!(v["error"]["message"].as_str().unwrap().contains("2^53"));
    }
}
