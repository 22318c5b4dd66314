//! Trace context in MCP `params._meta` (W3C `traceparent` and `tracestate`, as the MCP
//! semantic conventions say), and the few names a span needs from a message.
//!
//! The rewrite keeps every other value byte for byte: `params` is read as a map of raw JSON
//! values, only `_meta` is parsed and written again. Plain JSON work: nothing here knows
//! about spans.

use std::borrow::Cow;
use std::ops::Range;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::jsonrpc::walk;

/// A sender's trace context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carrier {
    pub traceparent: String,
    pub tracestate: Option<String>,
}

/// What a span takes from a message: never an argument value. Borrowed from the message's
/// bytes (copied only where the JSON text has escapes).
#[derive(Debug, Default)]
pub struct Peek<'a> {
    /// `params.name` (the tool or prompt name), when it is a string.
    pub name: Option<Cow<'a, str>>,
    /// `params.protocolVersion` (initialize) or the modern `_meta` protocol version.
    pub protocol_version: Option<Cow<'a, str>>,
    /// `params._meta.traceparent` (and `tracestate`).
    pub parent: Option<Carrier>,
    /// Where trace context would be written into this message.
    pub site: Option<Site>,
}

/// Where trace context goes in a message, as the parse found it: byte offsets into the
/// message, so that [`inject`] need not parse it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    /// No `params`: `"params":{"_meta":…}` goes before the message's closing brace at `close`.
    NoParams { close: usize, empty: bool },
    /// A `params` object without `_meta` at `open..close`: `"_meta":…` goes right after its
    /// `{`.
    Params {
        open: usize,
        close: usize,
        empty: bool,
    },
    /// The sender's own `_meta` object at `start..end` (in `params` at `params`): written
    /// again with the context in it.
    Meta {
        start: usize,
        end: usize,
        params: (usize, usize),
    },
}

/// A JSON string as text; `None` for any other value (read, not failed on).
fn text(raw: Option<&str>) -> Option<Cow<'_, str>> {
    walk::string(raw?.as_bytes())
}

/// Reads the names and the trace context of `bytes`, whose `params` value is at `params` (as
/// [`crate::jsonrpc::Message::parse`] found it); empty when they are not there or not
/// strings.
///
/// Only `params` is read (this runs for every relayed request when telemetry is on): its
/// three keys as borrowed raw values, everything else (the arguments) skipped without being
/// copied; `_meta`, which clients rarely send, is read only when it is there.
pub fn peek(bytes: &[u8], params: Option<Range<usize>>) -> Peek<'_> {
    #[derive(Deserialize)]
    struct Meta<'a> {
        #[serde(borrow)]
        traceparent: Option<&'a RawValue>,
        #[serde(borrow)]
        tracestate: Option<&'a RawValue>,
        /// The modern era's protocol version.
        #[serde(borrow, rename = "io.modelcontextprotocol/protocolVersion")]
        protocol_version: Option<&'a RawValue>,
    }
    let Some(range) = params else {
        return Peek {
            site: no_params(bytes),
            ..Peek::default()
        };
    };
    let Some(text_of_params) = bytes.get(range.clone()) else {
        return Peek::default();
    };
    // `params` that is not an object (an array) has no members: no names, and no place for
    // `_meta`.
    let Some(p) = members(text_of_params).or_else(|| members_by_serde(text_of_params)) else {
        return Peek::default();
    };
    let meta = p
        .meta
        .and_then(|m| serde_json::from_str::<Meta<'_>>(m).ok());
    let site = match p.meta {
        Some(m) if m.starts_with('{') => {
            let start = m.as_ptr() as usize - bytes.as_ptr() as usize;
            Some(Site::Meta {
                start,
                end: start + m.len(),
                params: (range.start, range.end),
            })
        }
        Some(_) => None,
        None => Some(Site::Params {
            open: range.start,
            close: range.end,
            empty: bytes[range.start + 1..range.end]
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                == Some(&b'}'),
        }),
    };
    fn raw(r: Option<&RawValue>) -> Option<&str> {
        r.map(RawValue::get)
    }
    let owned = |r| text(r).map(Cow::into_owned);
    Peek {
        name: text(p.name),
        protocol_version: text(p.protocol_version)
            .or_else(|| text(raw(meta.as_ref()?.protocol_version))),
        parent: meta.as_ref().and_then(|m| {
            Some(Carrier {
                traceparent: owned(raw(m.traceparent))?,
                tracestate: owned(raw(m.tracestate)),
            })
        }),
        site,
    }
}

/// The members of `params` a span reads, as raw JSON texts borrowed from the message.
#[derive(Debug, Default, PartialEq)]
struct Members<'a> {
    name: Option<&'a str>,
    protocol_version: Option<&'a str>,
    meta: Option<&'a str>,
}

/// [`Members`] by serde, for what the walk declines.
fn members_by_serde(params: &[u8]) -> Option<Members<'_>> {
    #[derive(Deserialize)]
    struct Params<'a> {
        #[serde(borrow)]
        name: Option<&'a RawValue>,
        #[serde(borrow, rename = "protocolVersion")]
        protocol_version: Option<&'a RawValue>,
        #[serde(borrow, rename = "_meta")]
        meta: Option<&'a RawValue>,
    }
    if !params.starts_with(b"{") {
        return None;
    }
    let p: Params<'_> = serde_json::from_slice(params).ok()?;
    Some(Members {
        name: p.name.map(RawValue::get),
        protocol_version: p.protocol_version.map(RawValue::get),
        meta: p.meta.map(RawValue::get),
    })
}

/// [`Members`] by [`walk::members`] (params is valid JSON: the message's parse read all of
/// it). This runs for every relayed request with telemetry on, at about a sixth of the
/// serde reading's cost.
fn members(params: &[u8]) -> Option<Members<'_>> {
    let [name, protocol_version, meta] =
        walk::members(params, ["name", "protocolVersion", "_meta"])?;
    let text = |r: Option<Range<usize>>| match r {
        Some(r) => std::str::from_utf8(params.get(r)?).ok().map(Some),
        None => Some(None),
    };
    Some(Members {
        name: text(name)?,
        protocol_version: text(protocol_version)?,
        meta: text(meta)?,
    })
}

/// The site of a message without `params` (known to be one JSON object): its closing brace.
fn no_params(bytes: &[u8]) -> Option<Site> {
    let close = bytes.iter().rposition(|b| *b == b'}')?;
    let empty = bytes[..close]
        .iter()
        .rev()
        .find(|b| !b.is_ascii_whitespace())
        == Some(&b'{');
    Some(Site::NoParams { close, empty })
}

/// How a response ended, for `error.type`.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// A JSON-RPC error, with its code as text.
    Error(String),
    /// A `tools/call` result with `isError: true`.
    ToolError,
}

/// Reads `error.code` or `result.isError` of a response (nothing else of the result).
pub fn outcome(bytes: &[u8]) -> Outcome {
    // Most answers are neither. An `error` or `isError` key spells `rror` in the text, unless
    // it is written with escapes, and then a backslash is there: without either, a parse
    // could only find `Ok`, so it is skipped. With either, the parse decides.
    if !crate::jsonrpc::may_hold_key(bytes, "rror") {
        return Outcome::Ok;
    }
    #[derive(Deserialize)]
    struct Resp<'a> {
        #[serde(borrow)]
        error: Option<&'a RawValue>,
        #[serde(borrow)]
        result: Option<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct Error {
        code: Option<i64>,
    }
    #[derive(Deserialize)]
    struct Result {
        #[serde(rename = "isError")]
        is_error: Option<bool>,
    }
    let Ok(r) = serde_json::from_slice::<Resp<'_>>(bytes) else {
        return Outcome::Ok;
    };
    if let Some(e) = r.error {
        let code = serde_json::from_str::<Error>(e.get())
            .ok()
            .and_then(|e| e.code);
        return Outcome::Error(code.map_or_else(|| "_OTHER".into(), |c| c.to_string()));
    }
    let tool_error = r
        .result
        .and_then(|r| serde_json::from_str::<Result>(r.get()).ok())
        .and_then(|r| r.is_error);
    if tool_error == Some(true) {
        Outcome::ToolError
    } else {
        Outcome::Ok
    }
}

/// `bytes` with the trace context (`traceparent`, and `tracestate` unless empty) written
/// into `params._meta` at `site` (from [`peek`] of these same bytes), replacing a sender's
/// own `traceparent`, whose span is the parent of the new one, and where `params` now is.
/// `None` when the sender's `_meta` cannot be read.
///
/// Spliced, not re-serialised: the new `_meta` goes in at the byte offset of the old one (or
/// at the start of `params`), so every other byte stays as the sender wrote it.
pub fn inject(
    bytes: &[u8],
    site: Site,
    traceparent: &[u8],
    tracestate: &str,
) -> Option<(Bytes, Range<usize>)> {
    // Written into JSON as it is: it must need no escaping.
    debug_assert!(traceparent
        .iter()
        .all(|b| b.is_ascii_hexdigit() || *b == b'-'));
    // The tracestate as a JSON string (printable ASCII, quotes allowed), when there is one.
    let tracestate = match tracestate {
        "" => None,
        t => Some(serde_json::to_string(t).ok()?),
    };
    // The `_meta` object written below, sized exactly with the rest: a buffer of exactly the
    // message's length becomes its `Bytes` without a second allocation.
    let meta_len = br#"{"traceparent":""#.len()
        + traceparent.len()
        + 1
        + tracestate
            .as_ref()
            .map_or(0, |t| br#","tracestate":"#.len() + t.len())
        + 1;
    let capacity = match site {
        Site::NoParams { close, empty } => {
            bytes[..close].trim_ascii_end().len()
                + usize::from(!empty)
                + br#""params":{"_meta":"#.len()
                + meta_len
                + 1
                + (bytes.len() - close)
        }
        Site::Params { empty, .. } => {
            bytes.len() + br#""_meta":"#.len() + meta_len + usize::from(!empty)
        }
        // The sender's own `_meta`, rewritten: its size is known once written.
        Site::Meta { .. } => bytes.len() + meta_len,
    };
    let mut out = Vec::with_capacity(capacity);
    let mut params_start = 0;
    let (cut, rest, wrap) = match site {
        Site::NoParams { close, empty } => {
            let head = bytes[..close].trim_ascii_end();
            out.extend_from_slice(head);
            if !empty {
                out.push(b',');
            }
            out.extend_from_slice(br#""params":"#);
            params_start = out.len();
            out.extend_from_slice(br#"{"_meta":"#);
            (head.len(), close, &b"}"[..])
        }
        Site::Params { open, empty, .. } => {
            out.extend_from_slice(&bytes[..=open]);
            out.extend_from_slice(br#""_meta":"#);
            (open + 1, open + 1, if empty { &b""[..] } else { &b","[..] })
        }
        Site::Meta { start, end, .. } => (start, end, &b""[..]),
    };
    if out.is_empty() {
        out.extend_from_slice(&bytes[..cut]);
    }
    match site {
        Site::Meta { start, end, .. } => {
            let mut meta: Map<String, Value> = serde_json::from_slice(&bytes[start..end]).ok()?;
            let traceparent = std::str::from_utf8(traceparent).ok()?;
            meta.insert("traceparent".into(), Value::String(traceparent.into()));
            match &tracestate {
                None => meta.remove("tracestate"),
                Some(t) => meta.insert("tracestate".into(), serde_json::from_str(t).ok()?),
            };
            serde_json::to_writer(&mut out, &meta).ok()?;
        }
        _ => {
            // Written directly: the traceparent is hex digits and dashes; the tracestate
            // (printable ASCII, quotes allowed) is escaped as JSON.
            out.extend_from_slice(br#"{"traceparent":""#);
            // Hex digits and dashes ([`super::context::SpanContext::traceparent_bytes`]).
            out.extend_from_slice(traceparent);
            out.push(b'"');
            if let Some(t) = &tracestate {
                out.extend_from_slice(br#","tracestate":"#);
                out.extend_from_slice(t.as_bytes());
            }
            out.push(b'}');
        }
    }
    out.extend_from_slice(wrap);
    let params_end = out.len();
    out.extend_from_slice(&bytes[rest..]);
    // What follows the insertion kept its bytes, so `params` ends as far from the end.
    let grown = |end: usize| out.len() - (bytes.len() - end);
    let params = match site {
        Site::NoParams { .. } => params_start..params_end,
        Site::Params { open, close, .. } => open..grown(close),
        Site::Meta { params, .. } => params.0..grown(params.1),
    };
    // The sizing above is exact (the tests run this check).
    debug_assert!(matches!(site, Site::Meta { .. }) || out.len() == out.capacity());
    Some((Bytes::from(out), params))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonrpc::Message;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn peeked(text: &str) -> (Message, Option<Site>) {
        let m = Message::parse(Bytes::copy_from_slice(text.as_bytes())).expect(text);
        let site = peek(&m.bytes, m.params.clone()).site;
        (m, site)
    }

    fn injected(text: &str) -> Option<Value> {
        let (m, site) = peeked(text);
        let (after, params) = inject(&m.bytes, site?, PARENT.as_bytes(), "a=1")?;
        // Where `params` now is, as a parse of the new bytes finds it.
        let again = Message::parse(after.clone()).expect("still a message");
        assert_eq!(again.params, Some(params), "{text}");
        Some(serde_json::from_slice(&after).unwrap_or_else(|e| panic!("{text} -> {after:?}: {e}")))
    }

    #[test]
    fn peeks_names_and_the_senders_context_but_no_arguments() {
        let msg = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"name":"secret"}},"_meta":{{"traceparent":"{PARENT}","tracestate":"a=1"}}}}}}"#
        );
        let (m, _) = peeked(&msg);
        let p = peek(&m.bytes, m.params.clone());
        assert_eq!(p.name.as_deref(), Some("echo"));
        let c = p.parent.expect("the sender's traceparent");
        assert_eq!(c.traceparent, PARENT);
        assert_eq!(c.tracestate.as_deref(), Some("a=1"));
        let (m, _) =
            peeked(r#"{"id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}"#);
        assert_eq!(
            peek(&m.bytes, m.params.clone()).protocol_version.as_deref(),
            Some("2025-11-25")
        );
        let (m, site) = peeked(r#"{"id":1,"method":"x","params":[1]}"#);
        assert!(peek(&m.bytes, m.params.clone()).name.is_none());
        assert_eq!(site, None, "no place for _meta in an array");
        // The modern era's version in `_meta`; an escaped name; a name that is not a string
        // does not hide the rest.
        let (m, _) = peeked(
            r#"{"id":2,"method":"tools/call","params":{"name":"e\u0063ho","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-06-30"}}}"#,
        );
        let p = peek(&m.bytes, m.params.clone());
        assert_eq!(p.name.as_deref(), Some("echo"));
        assert_eq!(p.protocol_version.as_deref(), Some("2026-06-30"));
        let msg = format!(
            r#"{{"id":3,"method":"x","params":{{"name":7,"_meta":{{"traceparent":"{PARENT}"}}}}}}"#
        );
        let (m, _) = peeked(&msg);
        let p = peek(&m.bytes, m.params.clone());
        assert!(p.name.is_none());
        assert_eq!(p.parent.map(|c| c.traceparent).as_deref(), Some(PARENT));
    }

    #[test]
    fn injects_beside_the_senders_keys_and_keeps_arguments_byte_for_byte() {
        let before = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"n":1.50,"big":123456789012345678901234567890},"_meta":{"progressToken":"p"}}}"#;
        let (m, site) = peeked(before);
        let (after, _) =
            inject(&m.bytes, site.unwrap(), PARENT.as_bytes(), "a=1").expect("rewritten");
        let text = std::str::from_utf8(&after).unwrap();
        assert!(text.contains(r#"{"n":1.50,"big":123456789012345678901234567890}"#));
        let v: Value = serde_json::from_slice(&after).unwrap();
        assert_eq!(v["params"]["_meta"]["traceparent"], PARENT);
        assert_eq!(v["params"]["_meta"]["tracestate"], "a=1");
        assert_eq!(v["params"]["_meta"]["progressToken"], "p");
        let v = injected(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#).unwrap();
        assert_eq!(v["params"]["_meta"]["traceparent"], PARENT);
        assert!(injected(r#"{"id":3,"method":"x","params":[1]}"#).is_none());
        assert!(injected(r#"{"id":3,"method":"x","params":{"_meta":7}}"#).is_none());
        for (before, params) in [
            (r#"{"id":4,"method":"x","params":{}}"#, 1),
            (r#"{"id":4,"method":"x","params":{ }}"#, 1),
            (r#"{"id":5,"method":"x","params":{"a":[1, 2]}}"#, 2),
            (
                r#"{"id":6,"method":"x","params":{"_meta":{"k":1},"a":2}}"#,
                2,
            ),
            (r#"{ "id" : 7 , "method":"x" }"#, 1),
            (r#"{ "id" : 7 , "method":"x" } "#, 1),
            (
                r#"{"id":8,"params":{"_meta":{"a":1,  "b":[2]}},"method":"x"}"#,
                1,
            ),
            (r#"{"id":9,"params":{"_meta":{}} ,"method":"x"}"#, 1),
        ] {
            let v = injected(before).expect(before);
            assert_eq!(v["params"]["_meta"]["traceparent"], PARENT, "{before}");
            assert_eq!(v["params"]["_meta"]["tracestate"], "a=1", "{before}");
            assert_eq!(v["params"].as_object().unwrap().len(), params, "{before}");
        }
    }

    #[test]
    fn the_walk_and_serde_read_the_same_members() {
        for params in [
            r#"{"name":"echo","arguments":{"text":"a \"}\" ] {","n":[1,{"x":"}"}]}}"#,
            r#"{ "arguments" : [] , "name" : "e\u0063ho" , "_meta" : { "k" : "v" } }"#,
            r#"{"protocolVersion":"2025-11-25","capabilities":{},"n":-1.5e3,"t":true,"z":null}"#,
            r#"{"_meta":7,"name":null}"#,
        ] {
            let p = params.as_bytes();
            assert_eq!(members(p), members_by_serde(p), "{params}");
        }
        // What the walk declines, serde reads.
        assert_eq!(members(br#"{"n\u0061me":"x"}"#), None);
        assert_eq!(
            members_by_serde(br#"{"n\u0061me":"x"}"#).and_then(|m| m.name),
            Some(r#""x""#)
        );
    }

    #[test]
    fn an_answers_outcome_is_read_only_when_it_can_be_an_error() {
        assert_eq!(outcome(br#"{"id":1,"result":{"content":[]}}"#), Outcome::Ok);
        assert_eq!(
            outcome(br#"{"id":1,"error":{"code":-32602,"message":"m"}}"#),
            Outcome::Error("-32602".into())
        );
        assert_eq!(
            outcome(br#"{"id":1,"result":{"isError":true,"content":[]}}"#),
            Outcome::ToolError
        );
        // Keys written with escapes still count: the parse decides.
        assert_eq!(
            outcome(br#"{"id":1,"\u0065rror":{"code":7}}"#),
            Outcome::Error("7".into())
        );
        assert_eq!(
            outcome(br#"{"id":1,"result":{"is\u0045rror":true}}"#),
            Outcome::ToolError
        );
        // The word elsewhere is not an error.
        assert_eq!(
            outcome(br#"{"id":1,"result":{"text":"no error","isError":false}}"#),
            Outcome::Ok
        );
    }
}
