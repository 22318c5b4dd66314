//! Reading and rewriting the few messages the policy touches, by splicing the original bytes:
//! a filtered `tools/list` answer keeps every kept tool's exact text, and a `tools/call` that
//! gets a default region keeps every other byte (numbers are never re-printed, keys never
//! reordered). Messages the policy does not change are never copied.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::ToolInfo;

/// The argument the OpenAPI MCP Server routes by (`cn-hangzhou` when absent).
pub const REGION_ARG: &str = "x_mcp_region_id";

/// One tool of a `tools/list` answer.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Empty when the entry has no string `name`.
    pub name: String,
    pub info: ToolInfo,
    /// The whole entry, as parsed (for pinning).
    pub definition: Value,
}

#[derive(Deserialize)]
struct ListAnswer<'a> {
    #[serde(borrow, default)]
    result: Option<ListResult<'a>>,
}

#[derive(Deserialize)]
struct ListResult<'a> {
    #[serde(borrow, default)]
    tools: Option<&'a RawValue>,
}

/// Where `inner` (a slice of `outer`) starts in `outer`.
fn offset(outer: &[u8], inner: &str) -> Option<usize> {
    let start = (inner.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
    (start + inner.len() <= outer.len()).then_some(start)
}

impl Listed {
    fn with_definition(mut self, v: Value) -> Listed {
        self.definition = v;
        self
    }
}

/// Every entry of a `tools/list` answer's `result.tools`, parsed (empty when there is none).
pub fn tool_definitions(bytes: &[u8]) -> Vec<Value> {
    let Ok(answer) = serde_json::from_slice::<ListAnswer<'_>>(bytes) else {
        return Vec::new();
    };
    answer
        .result
        .and_then(|r| r.tools)
        .and_then(|t| serde_json::from_str::<Vec<Value>>(t.get()).ok())
        .unwrap_or_default()
}

/// Whether a `tools/list` answer says more pages follow (`result.nextCursor`).
pub fn has_next_cursor(bytes: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct A<'a> {
        #[serde(borrow, default)]
        result: Option<R<'a>>,
    }
    #[derive(Deserialize)]
    struct R<'a> {
        #[serde(borrow, default, rename = "nextCursor")]
        next: Option<&'a RawValue>,
    }
    serde_json::from_slice::<A<'_>>(bytes)
        .ok()
        .and_then(|a| a.result)
        .and_then(|r| r.next)
        .is_some_and(|n| n.get() != "null")
}

/// What a tool entry says about itself.
pub fn tool_info(tool: &Value) -> Listed {
    let name = tool
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let read_only_hint = tool
        .pointer("/annotations/readOnlyHint")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let declares_region = tool
        .pointer("/inputSchema/properties")
        .and_then(Value::as_object)
        .is_some_and(|p| p.contains_key(REGION_ARG));
    Listed {
        name,
        info: ToolInfo {
            read_only_hint,
            declares_region,
        },
        definition: Value::Null,
    }
}

/// Filters the `result.tools` of a `tools/list` answer: every entry is shown to `seen`, and
/// kept when `keep` says so. `None` when the answer has no tools array or nothing was dropped
/// (the original bytes are then relayed as they are).
pub fn filter_tools(
    bytes: &[u8],
    mut seen: impl FnMut(&Listed),
    mut keep: impl FnMut(&Listed) -> bool,
) -> Option<Bytes> {
    let answer: ListAnswer<'_> = serde_json::from_slice(bytes).ok()?;
    let tools_raw = answer.result?.tools?;
    let tools: Vec<&RawValue> = serde_json::from_str(tools_raw.get()).ok()?;
    let mut kept: Vec<&str> = Vec::with_capacity(tools.len());
    for raw in &tools {
        let listed = serde_json::from_str::<Value>(raw.get())
            .map(|v| {
                Listed {
                    definition: Value::Null,
                    ..tool_info(&v)
                }
                .with_definition(v)
            })
            .unwrap_or(Listed {
                name: String::new(),
                info: ToolInfo::default(),
                definition: Value::Null,
            });
        seen(&listed);
        if keep(&listed) {
            kept.push(raw.get());
        }
    }
    if kept.len() == tools.len() {
        return None;
    }
    let start = offset(bytes, tools_raw.get())?;
    let end = start + tools_raw.get().len();
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..start]);
    out.push(b'[');
    for (i, t) in kept.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(t.as_bytes());
    }
    out.push(b']');
    out.extend_from_slice(&bytes[end..]);
    Some(Bytes::from(out))
}

#[derive(Deserialize)]
struct CallRequest<'a> {
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct CallParams<'a> {
    #[serde(default)]
    name: Option<String>,
    /// `Some` whenever the key is present, even as `null` (so nothing is added beside it).
    #[serde(borrow, default, deserialize_with = "present")]
    arguments: Option<&'a RawValue>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// The tool and arguments of a `tools/call` request.
#[derive(Debug, Clone)]
pub struct ToolCall {
    pub name: String,
    /// `params.arguments`, when present.
    pub arguments: Option<Value>,
}

/// Reads the tool and arguments of a `tools/call` request; `None` when it names no tool or
/// cannot be read unambiguously (a duplicated `params` or `name` is refused here, because
/// servers differ on which copy wins).
pub fn read_call(bytes: &[u8]) -> Option<ToolCall> {
    let req: CallRequest<'_> = serde_json::from_slice(bytes).ok()?;
    let p: CallParams<'_> = serde_json::from_str(req.params?.get()).ok()?;
    let name = p.name.filter(|n| !n.is_empty())?;
    let arguments = match p.arguments {
        Some(a) => Some(serde_json::from_str::<Value>(a.get()).ok()?),
        None => None,
    };
    Some(ToolCall { name, arguments })
}

/// The request with `"x_mcp_region_id": region` added to `params.arguments` (which is created
/// when absent). `None` when there is nowhere to put it (no `params` object, or `arguments`
/// that is not an object); the caller then relays the request as it is.
pub fn with_region(bytes: &[u8], region: &str) -> Option<Bytes> {
    let req: CallRequest<'_> = serde_json::from_slice(bytes).ok()?;
    let params = req.params?;
    if !params.get().starts_with('{') {
        return None;
    }
    let p: CallParams<'_> = serde_json::from_str(params.get()).ok()?;
    let value = serde_json::to_string(region).ok()?;
    let (open, insert) = match p.arguments {
        Some(args) => {
            let text = args.get();
            if !text.starts_with('{') {
                return None;
            }
            let empty = text[1..].trim_start().starts_with('}');
            let sep = if empty { "" } else { "," };
            (
                offset(bytes, text)?,
                format!("\"{REGION_ARG}\":{value}{sep}"),
            )
        }
        None => {
            let text = params.get();
            let empty = text[1..].trim_start().starts_with('}');
            let sep = if empty { "" } else { "," };
            (
                offset(bytes, text)?,
                format!("\"arguments\":{{\"{REGION_ARG}\":{value}}}{sep}"),
            )
        }
    };
    let at = open + 1; // just after the `{`
    let mut out = Vec::with_capacity(bytes.len() + insert.len());
    out.extend_from_slice(&bytes[..at]);
    out.extend_from_slice(insert.as_bytes());
    out.extend_from_slice(&bytes[at..]);
    Some(Bytes::from(out))
}

/// How an answer to a `tools/call` came out, for the audit log: `ok`, `isError` (the tool
/// ran and reported a failure) or `error` (a JSON-RPC error), with the error's message.
pub fn outcome(bytes: &[u8]) -> (&'static str, Option<String>) {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        result: Option<Res>,
        #[serde(default)]
        error: Option<Err>,
    }
    #[derive(Deserialize)]
    struct Res {
        #[serde(rename = "isError", default)]
        is_error: Option<bool>,
    }
    #[derive(Deserialize)]
    struct Err {
        #[serde(default)]
        message: Option<String>,
    }
    match serde_json::from_slice::<Answer>(bytes) {
        Ok(Answer { error: Some(e), .. }) => ("error", e.message.map(|m| super::redact::cut(&m))),
        Ok(Answer {
            result: Some(Res {
                is_error: Some(true),
            }),
            ..
        }) => ("isError", None),
        Ok(_) => ("ok", None),
        Err(_) => ("error", Some("the answer could not be read".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filtering_keeps_exact_bytes_and_passes_unchanged_answers() {
        let text = br#"{"jsonrpc":"2.0","id":3,"result":{"tools":[ {"name":"A","n":1.000000000000000000001},
            {"name":"DeleteX","annotations":{"readOnlyHint":false}},{"name":"B","inputSchema":{"type":"object","properties":{"x_mcp_region_id":{"type":"string"}}},"annotations":{"readOnlyHint":true}} ],"nextCursor":"c2"}}"#;
        let mut seen = Vec::new();
        let out = filter_tools(text, |l| seen.push(l.clone()), |l| l.name != "DeleteX").unwrap();
        let s = std::str::from_utf8(&out).unwrap();
        assert!(
            s.contains(r#"{"name":"A","n":1.000000000000000000001}"#),
            "{s}"
        );
        assert!(!s.contains("DeleteX"));
        assert!(s.ends_with(r#"],"nextCursor":"c2"}}"#), "{s}");
        let v: Value = serde_json::from_str(s).unwrap();
        assert_eq!(v["result"]["tools"].as_array().unwrap().len(), 2);
        assert_eq!(seen.len(), 3);
        assert!(seen[2].info.read_only_hint && seen[2].info.declares_region);
        assert!(!seen[0].info.declares_region);
        assert!(
            filter_tools(text, |_| {}, |_| true).is_none(),
            "nothing dropped"
        );
        assert!(filter_tools(br#"{"id":1,"result":{}}"#, |_| {}, |_| false).is_none());
        assert!(filter_tools(b"not json", |_| {}, |_| false).is_none());
        let all_gone = filter_tools(text, |_| {}, |_| false).unwrap();
        let v: Value = serde_json::from_slice(&all_gone).unwrap();
        assert_eq!(v["result"]["tools"], json!([]));
    }

    #[test]
    fn region_is_spliced_into_the_arguments() {
        let req = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"D","arguments":{"RegionId":"cn-x","n":12345678901234567890123}}}"#;
        let out = with_region(req, "cn-beijing").unwrap();
        let s = std::str::from_utf8(&out).unwrap();
        assert!(s.contains(r#""arguments":{"x_mcp_region_id":"cn-beijing","RegionId":"cn-x","n":12345678901234567890123}"#), "{s}");
        let empty = with_region(br#"{"id":1,"params":{"name":"D","arguments":{ }}}"#, "r").unwrap();
        let v: Value = serde_json::from_slice(&empty).unwrap();
        assert_eq!(v["params"]["arguments"], json!({"x_mcp_region_id": "r"}));
        let none = with_region(br#"{"id":1,"params":{"name":"D"}}"#, "r").unwrap();
        let v: Value = serde_json::from_slice(&none).unwrap();
        assert_eq!(v["params"]["arguments"], json!({"x_mcp_region_id": "r"}));
        assert_eq!(v["params"]["name"], "D");
        let bare = with_region(br#"{"id":1,"params":{}}"#, "r").unwrap();
        let v: Value = serde_json::from_slice(&bare).unwrap();
        assert_eq!(v["params"], json!({"arguments": {"x_mcp_region_id": "r"}}));
        assert!(with_region(br#"{"id":1,"params":{"name":"D","arguments":null}}"#, "r").is_none());
        assert!(with_region(br#"{"id":1}"#, "r").is_none());
        let quoted = with_region(br#"{"params":{"arguments":{}}}"#, "a\"b").unwrap();
        let v: Value = serde_json::from_slice(&quoted).unwrap();
        assert_eq!(v["params"]["arguments"]["x_mcp_region_id"], "a\"b");
    }

    #[test]
    fn reads_calls_and_outcomes() {
        let c = read_call(
            br#"{"id":1,"method":"tools/call","params":{"name":"X","arguments":{"a":1}}}"#,
        )
        .unwrap();
        assert_eq!(c.name, "X");
        assert_eq!(c.arguments, Some(json!({"a": 1})));
        assert!(read_call(br#"{"id":1,"method":"tools/call"}"#).is_none());
        assert!(
            read_call(br#"{"id":1,"params":{"name":"A","name":"B"}}"#).is_none(),
            "ambiguous"
        );
        assert!(read_call(br#"{"id":1,"params":{"name":"A"},"params":{"name":"B"}}"#).is_none());
        assert!(read_call(br#"{"id":1,"params":{"name":""}}"#).is_none());
        assert_eq!(outcome(br#"{"id":1,"result":{"content":[]}}"#).0, "ok");
        assert_eq!(
            outcome(br#"{"id":1,"result":{"isError":true}}"#).0,
            "isError"
        );
        let (o, m) = outcome(br#"{"id":1,"error":{"code":-1,"message":"boom"}}"#);
        assert_eq!((o, m.as_deref()), ("error", Some("boom")));
    }
}
