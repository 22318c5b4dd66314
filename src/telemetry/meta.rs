//! Trace context in MCP `params._meta` (W3C `traceparent` and `tracestate`, as the MCP
//! semantic conventions say), and the few names a span needs from a message.
//!
//! The rewrite keeps every other value byte for byte: the message and its `params` are read
//! as maps of raw JSON values, only `_meta` is parsed and written again.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::context::SpanContext;

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
}

/// A JSON string as text; `None` for any other value (read, not failed on).
fn text(raw: Option<&RawValue>) -> Option<Cow<'_, str>> {
    let raw = raw?.get();
    if !raw.starts_with('"') {
        return None;
    }
    serde_json::from_str::<Cow<'_, str>>(raw).ok()
}

/// Reads the names and the trace context of `bytes`; empty when they are not there or not
/// strings.
///
/// One pass over the message (this runs for every relayed request when telemetry is on):
/// `params` is read in place with its three keys as borrowed raw values, everything else
/// (the arguments) is skipped without being copied; `_meta`, which clients rarely send, is
/// read only when it is there.
pub fn peek(bytes: &[u8]) -> Peek<'_> {
    #[derive(Deserialize)]
    struct Msg<'a> {
        #[serde(borrow)]
        params: Option<Params<'a>>,
    }
    #[derive(Deserialize)]
    struct Params<'a> {
        #[serde(borrow)]
        name: Option<&'a RawValue>,
        #[serde(borrow, rename = "protocolVersion")]
        protocol_version: Option<&'a RawValue>,
        #[serde(borrow, rename = "_meta")]
        meta: Option<&'a RawValue>,
    }
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
    // `params` that is not an object (an array) fails `Params`, as it should: no names.
    let Some(p) = serde_json::from_slice::<Msg<'_>>(bytes)
        .ok()
        .and_then(|m| m.params)
    else {
        return Peek::default();
    };
    let meta = p
        .meta
        .and_then(|m| serde_json::from_str::<Meta<'_>>(m.get()).ok());
    let owned = |raw| text(raw).map(Cow::into_owned);
    Peek {
        name: text(p.name),
        protocol_version: text(p.protocol_version)
            .or_else(|| text(meta.as_ref()?.protocol_version)),
        parent: meta.as_ref().and_then(|m| {
            Some(Carrier {
                traceparent: owned(m.traceparent)?,
                tracestate: owned(m.tracestate),
            })
        }),
    }
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
        .filter(|r| r.get().contains("isError"))
        .and_then(|r| serde_json::from_str::<Result>(r.get()).ok())
        .and_then(|r| r.is_error);
    if tool_error == Some(true) {
        Outcome::ToolError
    } else {
        Outcome::Ok
    }
}

/// `bytes` with `cx`'s trace context written into `params._meta` (replacing a sender's own
/// `traceparent`, whose span is the parent of `cx`'s). `None` when `params` or `_meta` is
/// there but not an object, or the message is not a JSON object.
///
/// Spliced, not re-serialised: the message is read once with borrowed raw values, and the new
/// `_meta` goes in at the byte offset of the old one (or at the start of `params`), so every
/// other byte stays as the sender wrote it.
pub fn inject(bytes: &[u8], cx: &SpanContext) -> Option<Bytes> {
    #[derive(Deserialize)]
    struct Msg<'a> {
        #[serde(borrow)]
        params: Option<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct Params<'a> {
        #[serde(borrow, rename = "_meta")]
        meta: Option<&'a RawValue>,
    }
    let traceparent = cx.traceparent();
    let tracestate = cx.trace_state.as_deref().unwrap_or("");
    let text = std::str::from_utf8(bytes).ok()?;
    let msg: Msg<'_> = serde_json::from_str(text).ok()?;
    // Where a borrowed raw value starts in `text`.
    let at = |raw: &RawValue| raw.get().as_ptr() as usize - text.as_ptr() as usize;
    // The sender's own `_meta`, when there is one (rare): its other keys are kept.
    let mut meta: Option<Map<String, Value>> = None;
    let mut out = String::with_capacity(text.len() + 160);
    let (cut, rest, wrap) = match msg.params {
        None => {
            // `"params":{"_meta":…}` before the message's closing brace.
            let end = text.rfind('}')?;
            let head = text[..end].trim_end();
            out.push_str(head);
            if !head.ends_with('{') {
                out.push(',');
            }
            out.push_str(r#""params":{"_meta":"#);
            (end, end, "}")
        }
        Some(p) if p.get().starts_with('{') => {
            let params: Params<'_> = serde_json::from_str(p.get()).ok()?;
            match params.meta {
                Some(m) => {
                    meta = Some(serde_json::from_str(m.get()).ok()?);
                    (at(m), at(m) + m.get().len(), "")
                }
                None => {
                    let open = at(p) + 1;
                    let empty = p.get()[1..].trim_start().starts_with('}');
                    out.push_str(&text[..open]);
                    out.push_str(r#""_meta":"#);
                    (open, open, if empty { "" } else { "," })
                }
            }
        }
        Some(_) => return None,
    };
    if out.is_empty() {
        out.push_str(&text[..cut]);
    }
    match meta {
        Some(mut meta) => {
            meta.insert("traceparent".into(), Value::String(traceparent));
            if tracestate.is_empty() {
                meta.remove("tracestate");
            } else {
                meta.insert("tracestate".into(), Value::String(tracestate.to_string()));
            }
            out.push_str(&serde_json::to_string(&meta).ok()?);
        }
        None => {
            // Written directly: the traceparent is hex digits and dashes; the tracestate
            // (printable ASCII, quotes allowed) is escaped as JSON.
            out.push_str(r#"{"traceparent":""#);
            out.push_str(&traceparent);
            out.push('"');
            if !tracestate.is_empty() {
                out.push_str(r#","tracestate":"#);
                out.push_str(&serde_json::to_string(&tracestate).ok()?);
            }
            out.push('}');
        }
    }
    out.push_str(wrap);
    out.push_str(&text[rest..]);
    Some(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn peeks_names_and_the_senders_context_but_no_arguments() {
        let msg = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"name":"secret"}},"_meta":{{"traceparent":"{PARENT}","tracestate":"a=1"}}}}}}"#
        );
        let p = peek(msg.as_bytes());
        assert_eq!(p.name.as_deref(), Some("echo"));
        let c = p.parent.expect("the sender's traceparent");
        assert_eq!(c.traceparent, PARENT);
        assert_eq!(c.tracestate.as_deref(), Some("a=1"));
        let p =
            peek(br#"{"id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}"#);
        assert_eq!(p.protocol_version.as_deref(), Some("2025-11-25"));
        assert!(peek(br#"{"id":1,"method":"x","params":[1]}"#)
            .name
            .is_none());
        // The modern era's version in `_meta`; an escaped name; a name that is not a string
        // does not hide the rest.
        let p = peek(
            br#"{"id":2,"method":"tools/call","params":{"name":"e\u0063ho","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-06-30"}}}"#,
        );
        assert_eq!(p.name.as_deref(), Some("echo"));
        assert_eq!(p.protocol_version.as_deref(), Some("2026-06-30"));
        let msg = format!(
            r#"{{"id":3,"method":"x","params":{{"name":7,"_meta":{{"traceparent":"{PARENT}"}}}}}}"#
        );
        let p = peek(msg.as_bytes());
        assert!(p.name.is_none());
        assert_eq!(p.parent.map(|c| c.traceparent).as_deref(), Some(PARENT));
    }

    #[test]
    fn injects_beside_the_senders_keys_and_keeps_arguments_byte_for_byte() {
        let cx = SpanContext::parse(PARENT, Some("a=1")).unwrap();
        let before = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"n":1.50,"big":123456789012345678901234567890},"_meta":{"progressToken":"p"}}}"#;
        let after = inject(before, &cx).expect("rewritten");
        let text = std::str::from_utf8(&after).unwrap();
        assert!(text.contains(r#"{"n":1.50,"big":123456789012345678901234567890}"#));
        let v: Value = serde_json::from_slice(&after).unwrap();
        assert_eq!(v["params"]["_meta"]["traceparent"], PARENT);
        assert_eq!(v["params"]["_meta"]["tracestate"], "a=1");
        assert_eq!(v["params"]["_meta"]["progressToken"], "p");
        let bare = inject(br#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#, &cx).unwrap();
        let v: Value = serde_json::from_slice(&bare).unwrap();
        assert_eq!(v["params"]["_meta"]["traceparent"], PARENT);
        assert!(inject(br#"{"id":3,"method":"x","params":[1]}"#, &cx).is_none());
        for (before, params) in [
            (r#"{"id":4,"method":"x","params":{}}"#, 1),
            (r#"{"id":5,"method":"x","params":{"a":[1, 2]}}"#, 2),
            (
                r#"{"id":6,"method":"x","params":{"_meta":{"k":1},"a":2}}"#,
                2,
            ),
            (r#"{ "id" : 7 , "method":"x" }"#, 1),
        ] {
            let after = inject(before.as_bytes(), &cx).expect(before);
            let v: Value = serde_json::from_slice(&after)
                .unwrap_or_else(|e| panic!("{before} -> {after:?}: {e}"));
            assert_eq!(v["params"]["_meta"]["traceparent"], PARENT, "{before}");
            assert_eq!(v["params"].as_object().unwrap().len(), params, "{before}");
        }
    }
}
