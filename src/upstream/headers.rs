//! The request metadata headers of MCP 2026-07-28 Streamable HTTP, derived from each POST's
//! body, and the per-tool facts read from `tools/list` answers that later POSTs need.
//!
//! - `MCP-Protocol-Version`: `params._meta["io.modelcontextprotocol/protocolVersion"]` when the
//!   body carries it, else the version negotiated by `initialize` (the caller's fallback).
//! - `Mcp-Method`: the message's `method`.
//! - `Mcp-Name`: `params.name` of `tools/call` and `prompts/get`, `params.uri` of
//!   `resources/read`.
//! - `Mcp-Param-{Name}`: the `tools/call` argument at the property path a tool's `inputSchema`
//!   marks with `x-mcp-header` (strings as-is, integers in decimal, booleans lowercase; absent
//!   or null: no header).
//!
//! A value that is not plain visible ASCII, has leading or trailing whitespace, or looks like
//! the sentinel itself is sent as `=?base64?{standard base64 of its UTF-8}?=`.
//!
//! [`ToolFacts`] remembers, per tool, the `x-mcp-header` paths and whether the tool is
//! annotated `idempotentHint: true` (the only tools a broken response stream may re-issue).
//! Tools whose `x-mcp-header` annotations break the spec's constraints are removed from the
//! `tools/list` answer, as the spec requires of HTTP clients, with a warning naming the tool.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Mutex;

use base64::Engine as _;
use bytes::Bytes;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::Value;
use tracing::warn;

use crate::jsonrpc::walk;

pub const PROTOCOL_VERSION: &str = "mcp-protocol-version";
pub const MCP_METHOD: &str = "mcp-method";
pub const MCP_NAME: &str = "mcp-name";
/// The `_meta` keys of the modern per-request envelope.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";

/// Largest integer a header may carry (the JavaScript safe range the spec names).
const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// What the bridge knows about one tool from the last `tools/list`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolFact {
    /// `(header name suffix, property path)` for each `x-mcp-header` parameter.
    pub params: Vec<(String, Vec<String>)>,
    /// `annotations.idempotentHint == true`.
    pub idempotent: bool,
}

/// Per-tool facts from `tools/list` answers, shared by every POST of the run.
#[derive(Default)]
pub struct ToolFacts {
    tools: Mutex<HashMap<String, ToolFact>>,
}

impl ToolFacts {
    /// Whether `tool` was listed with `idempotentHint: true`.
    pub fn idempotent(&self, tool: &str) -> bool {
        self.tools
            .lock()
            .unwrap()
            .get(tool)
            .is_some_and(|t| t.idempotent)
    }

    /// Whether `tool` was in a `tools/list` answer seen so far.
    pub fn knows(&self, tool: &str) -> bool {
        self.tools.lock().unwrap().contains_key(tool)
    }

    fn params(&self, tool: &str) -> Vec<(String, Vec<String>)> {
        self.tools
            .lock()
            .unwrap()
            .get(tool)
            .map(|t| t.params.clone())
            .unwrap_or_default()
    }

    /// Reads a `tools/list` answer: records each tool's facts and returns the answer to relay,
    /// which is the same bytes unless a tool had to be removed for a bad `x-mcp-header`.
    pub fn observe_list(&self, answer: Bytes) -> Bytes {
        let Ok(mut v) = serde_json::from_slice::<Value>(&answer) else {
            return answer;
        };
        let Some(list) = v
            .get_mut("result")
            .and_then(|r| r.get_mut("tools"))
            .and_then(Value::as_array_mut)
        else {
            return answer;
        };
        let mut removed = false;
        let mut facts = self.tools.lock().unwrap();
        list.retain(|tool| {
            let Some(name) = tool.get("name").and_then(Value::as_str) else {
                return true;
            };
            match tool_fact(tool) {
                Ok(fact) => {
                    facts.insert(name.to_string(), fact);
                    true
                }
                Err(why) => {
                    warn!(tool = name, reason = %why, "removing a tool with an invalid x-mcp-header from tools/list");
                    facts.remove(name);
                    removed = true;
                    false
                }
            }
        });
        drop(facts);
        if !removed {
            return answer;
        }
        serde_json::to_vec(&v).map(Bytes::from).unwrap_or(answer)
    }
}

/// The facts of one tool definition, or why its `x-mcp-header` annotations are invalid.
pub fn tool_fact(tool: &Value) -> Result<ToolFact, String> {
    let idempotent = tool
        .pointer("/annotations/idempotentHint")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut params = Vec::new();
    if let Some(schema) = tool.get("inputSchema") {
        collect_headers(schema, &mut Vec::new(), true, &mut params)?;
    }
    let mut seen = std::collections::HashSet::new();
    for (name, _) in &params {
        if !seen.insert(name.to_ascii_lowercase()) {
            return Err(format!("x-mcp-header {name:?} is used twice"));
        }
    }
    Ok(ToolFact { params, idempotent })
}

/// Walks a schema: `x-mcp-header` is allowed only on primitive properties reached through a
/// chain of `properties` keys; anywhere else it invalidates the tool.
fn collect_headers(
    schema: &Value,
    path: &mut Vec<String>,
    reachable: bool,
    out: &mut Vec<(String, Vec<String>)>,
) -> Result<(), String> {
    let Some(obj) = schema.as_object() else {
        if let Some(arr) = schema.as_array() {
            for item in arr {
                collect_headers(item, path, false, out)?;
            }
        }
        return Ok(());
    };
    if let Some(h) = obj.get("x-mcp-header") {
        let name = h
            .as_str()
            .ok_or("x-mcp-header is not a string".to_string())?;
        if !reachable || path.is_empty() {
            return Err(format!(
                "x-mcp-header {name:?} is not on a property reached only through \"properties\""
            ));
        }
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(format!("x-mcp-header {name:?} is not an HTTP token"));
        }
        let ty = obj.get("type").and_then(Value::as_str);
        if !matches!(ty, Some("string" | "integer" | "boolean")) {
            return Err(format!(
                "x-mcp-header {name:?} is on a property of type {} (only string, integer, boolean)",
                ty.unwrap_or("(none)")
            ));
        }
        out.push((name.to_string(), path.clone()));
    }
    for (key, value) in obj {
        if key == "properties" {
            if let Some(props) = value.as_object() {
                for (prop, sub) in props {
                    path.push(prop.clone());
                    collect_headers(sub, path, reachable, out)?;
                    path.pop();
                }
            }
        } else if value.is_object() || value.is_array() {
            collect_headers(value, path, false, out)?;
        }
    }
    Ok(())
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A header value per the spec's Value Encoding: plain when it is visible ASCII (spaces only
/// inside) and does not look like the sentinel, else `=?base64?…?=`.
pub fn encode_value(value: &str) -> String {
    let visible = value.bytes().all(|b| (0x20..=0x7e).contains(&b));
    let padded = value.starts_with(' ') || value.ends_with(' ');
    let sentinel = value.starts_with("=?base64?") && value.ends_with("?=");
    if value.is_empty() || (visible && !padded && !sentinel) {
        return value.to_string();
    }
    format!(
        "=?base64?{}?=",
        base64::engine::general_purpose::STANDARD.encode(value.as_bytes())
    )
}

/// The metadata headers for one POST body: one JSON text, a message the relay parsed or one
/// the bridge wrote (the fast read walks it, trusting it is valid). `negotiated` is the
/// fallback protocol version (the one `initialize` settled, or the one the bridge chose for a
/// modern server).
pub fn for_body(
    body: &[u8],
    negotiated: Option<&str>,
    tools: &ToolFacts,
) -> Vec<(HeaderName, HeaderValue)> {
    // Runs on every POST: read only the few fields the headers come from, borrowed, instead of
    // building a tree of the whole body. Anything unusual (a key written with escapes, one of
    // the keys twice) takes the general path, so both give the same headers.
    let fields = match Fields::read(body) {
        Some(f) => f,
        None => match serde_json::from_slice::<Value>(body) {
            Ok(v) => Fields::from_value(&v),
            Err(_) => return Vec::new(),
        },
    };
    let mut out = Vec::new();
    let mut push = |name: HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            out.push((name, v));
        }
    };
    // `from_static` names cost no allocation; these three go with every POST.
    if let Some(version) = fields.version.as_deref().or(negotiated) {
        push(HeaderName::from_static(PROTOCOL_VERSION), version);
    }
    let Some(method) = fields.method.as_deref() else {
        return out;
    };
    push(HeaderName::from_static(MCP_METHOD), &encode_value(method));
    let name = match method {
        "tools/call" | "prompts/get" => fields.name.as_deref(),
        "resources/read" => fields.uri.as_deref(),
        _ => None,
    };
    if let Some(name) = name {
        push(HeaderName::from_static(MCP_NAME), &encode_value(name));
    }
    if method == "tools/call" {
        if let (Some(tool), Some(args)) = (fields.name.as_deref(), fields.arguments) {
            let wanted = tools.params(tool);
            let args = match wanted.is_empty() {
                true => None,
                false => args.value(),
            };
            for (header, path) in wanted.iter().filter(|_| args.is_some()) {
                let mut at = args.as_ref();
                for key in path {
                    at = at.and_then(|a| a.get(key));
                }
                let name = HeaderName::from_bytes(format!("mcp-param-{header}").as_bytes());
                if let (Some(text), Ok(name)) = (at.and_then(param_text), name) {
                    push(name, &encode_value(&text));
                }
            }
        }
    }
    out
}

/// What the headers of one body are made of.
#[derive(Default)]
struct Fields<'a> {
    method: Option<Cow<'a, str>>,
    /// `params._meta["io.modelcontextprotocol/protocolVersion"]`.
    version: Option<Cow<'a, str>>,
    name: Option<Cow<'a, str>>,
    uri: Option<Cow<'a, str>>,
    arguments: Option<Args<'a>>,
}

/// `params.arguments`, turned into a tree only when a tool has `x-mcp-header` parameters.
enum Args<'a> {
    /// The value's JSON text.
    Raw(&'a [u8]),
    Tree(Value),
}

impl Args<'_> {
    fn value(&self) -> Option<Value> {
        match self {
            Args::Raw(r) => serde_json::from_slice(r).ok(),
            Args::Tree(v) => Some(v.clone()),
        }
    }
}

impl<'a> Fields<'a> {
    /// The borrowed read, by walking the members it needs ([`walk::members`]: a body is a
    /// message the relay parsed, or one the bridge wrote); `None` when the body needs the
    /// general path (the walk declines: a key written with escapes, one of these keys twice).
    fn read(body: &'a [u8]) -> Option<Fields<'a>> {
        let at = |within: &'a [u8], r: Option<Range<usize>>| r.and_then(|r| within.get(r));
        // `params` is read where it stands (an object of another kind names nothing).
        let ([method, _], inner) = walk::members_with(
            body,
            ["method", "params"],
            (1, ["_meta", "name", "uri", "arguments"]),
        )?;
        let method = at(body, method);
        let [meta, name, uri, arguments] = inner.map(|r| at(body, r));
        // `_meta` (it carries trace context) is read only when it can hold the version.
        let version = match meta.filter(|m| {
            m.starts_with(b"{") && crate::jsonrpc::may_hold_key(m, META_PROTOCOL_VERSION)
        }) {
            Some(m) => at(m, walk::members(m, [META_PROTOCOL_VERSION])?[0].clone()),
            None => None,
        };
        let text = |raw: Option<&'a [u8]>| raw.and_then(walk::string);
        Some(Fields {
            method: text(method),
            version: text(version),
            name: text(name),
            uri: text(uri),
            arguments: arguments.map(Args::Raw),
        })
    }

    fn from_value(v: &Value) -> Fields<'static> {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(|s| Cow::Owned(s.to_string()));
        let params = v.get("params");
        let meta = params.and_then(|p| p.get("_meta"));
        Fields {
            method: text(v.get("method")),
            version: text(meta.and_then(|m| m.get(META_PROTOCOL_VERSION))),
            name: text(params.and_then(|p| p.get("name"))),
            uri: text(params.and_then(|p| p.get("uri"))),
            arguments: params
                .and_then(|p| p.get("arguments"))
                .map(|a| Args::Tree(a.clone())),
        }
    }
}

/// The header text of an `x-mcp-header` argument; `None` for null, absent or a type the spec
/// does not allow (the server then sees no header and decides).
fn param_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => n
            .as_i64()
            .filter(|i| i.unsigned_abs() <= MAX_SAFE_INTEGER as u64)
            .map(|i| i.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn header<'a>(hs: &'a [(HeaderName, HeaderValue)], name: &str) -> Option<&'a str> {
        hs.iter()
            .find(|(n, _)| n.as_str() == name)
            .and_then(|(_, v)| v.to_str().ok())
    }

    #[test]
    fn encodes_like_the_spec_examples() {
        assert_eq!(encode_value("us-west1"), "us-west1");
        assert_eq!(
            encode_value("Hello, 世界"),
            "=?base64?SGVsbG8sIOS4lueVjA==?="
        );
        assert_eq!(encode_value(" padded "), "=?base64?IHBhZGRlZCA=?=");
        assert_eq!(encode_value("line1\nline2"), "=?base64?bGluZTEKbGluZTI=?=");
        assert_eq!(
            encode_value("=?base64?literal?="),
            "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?="
        );
        assert_eq!(encode_value("tab\there"), "=?base64?dGFiCWhlcmU=?=");
    }

    #[test]
    fn the_borrowed_read_agrees_with_the_tree() {
        let bodies = [
            r#"{"method":"tools/call","params":{"name":"a\u0062","arguments":{"x":1}}}"#,
            r#"{"method":"resources/read","params":{"uri":"file:///x","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
            r#"{"method":"tools/call","params":["tools/call",{"name":"x"}]}"#,
            r#"{"method":"tools/call","params":{"name":7,"_meta":[1]}}"#,
            r#"{"method":null,"params":null}"#,
            r#"{"id":1,"result":{}}"#,
        ];
        type Shape = [Option<String>; 4];
        let shape = |f: &Fields<'_>| -> (Shape, Option<Value>) {
            let text = |c: &Option<Cow<'_, str>>| c.as_deref().map(str::to_string);
            let args = f.arguments.as_ref().and_then(Args::value);
            ([&f.method, &f.version, &f.name, &f.uri].map(text), args)
        };
        for body in bodies {
            let tree = Fields::from_value(&serde_json::from_str(body).unwrap());
            let read = Fields::read(body.as_bytes()).expect("read without the tree");
            assert_eq!(shape(&read), shape(&tree), "{body}");
        }
        // A duplicate key and a top-level array take the general path.
        assert!(Fields::read(br#"{"method":"a","method":"b"}"#).is_none());
        assert!(Fields::read(br#"["tools/call",{}]"#).is_none());
        let dup = for_body(
            br#"{"method":"a","method":"b"}"#,
            None,
            &ToolFacts::default(),
        );
        assert_eq!(
            header(&dup, MCP_METHOD),
            Some("b"),
            "the last one wins, as in the tree"
        );
    }

    #[test]
    fn derives_method_name_and_version_from_the_body() {
        let facts = ToolFacts::default();
        let body = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{
            "name":"écho","arguments":{},"_meta":{META_PROTOCOL_VERSION:"2026-07-28"}}});
        let hs = for_body(body.to_string().as_bytes(), Some("2025-06-18"), &facts);
        assert_eq!(header(&hs, PROTOCOL_VERSION), Some("2026-07-28"));
        assert_eq!(header(&hs, MCP_METHOD), Some("tools/call"));
        assert_eq!(header(&hs, MCP_NAME), Some("=?base64?w6ljaG8=?="));
        let body =
            br#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///a b"}}"#;
        let hs = for_body(body, Some("2025-06-18"), &facts);
        assert_eq!(header(&hs, PROTOCOL_VERSION), Some("2025-06-18"));
        assert_eq!(header(&hs, MCP_NAME), Some("file:///a b"));
        let hs = for_body(br#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#, None, &facts);
        assert_eq!(header(&hs, PROTOCOL_VERSION), None);
        assert_eq!(header(&hs, MCP_NAME), None);
        assert!(
            for_body(br#"{"jsonrpc":"2.0","id":3,"result":{}}"#, None, &facts)
                .iter()
                .all(|(n, _)| n.as_str() != MCP_METHOD)
        );
    }

    #[test]
    fn mirrors_x_mcp_header_parameters_from_the_cached_list() {
        let facts = ToolFacts::default();
        let list = json!({"jsonrpc":"2.0","id":1,"result":{"tools":[
            {"name":"sql","inputSchema":{"type":"object","properties":{
                "region":{"type":"string","x-mcp-header":"Region"},
                "opts":{"type":"object","properties":{"n":{"type":"integer","x-mcp-header":"N"},
                                                        "dry":{"type":"boolean","x-mcp-header":"Dry"}}},
                "query":{"type":"string"}}},
             "annotations":{"idempotentHint":true}},
            {"name":"bad","inputSchema":{"type":"object","properties":{
                "xs":{"type":"array","items":{"type":"string","x-mcp-header":"X"}}}}},
            {"name":"dup","inputSchema":{"type":"object","properties":{
                "a":{"type":"string","x-mcp-header":"A"},"b":{"type":"string","x-mcp-header":"a"}}}},
            {"name":"num","inputSchema":{"type":"object","properties":{
                "f":{"type":"number","x-mcp-header":"F"}}}},
            {"name":"plain","inputSchema":{"type":"object"}}
        ]}});
        let relayed = facts.observe_list(Bytes::from(list.to_string()));
        let v: Value = serde_json::from_slice(&relayed).unwrap();
        let names: Vec<&str> = v["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["sql", "plain"], "invalid tools are removed");
        assert!(facts.idempotent("sql") && !facts.idempotent("plain") && !facts.idempotent("x"));
        let call = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"sql",
            "arguments":{"region":"华东 1","opts":{"n":42,"dry":false},"query":"select"}}});
        let hs = for_body(call.to_string().as_bytes(), None, &facts);
        assert_eq!(
            header(&hs, "mcp-param-region"),
            Some(encode_value("华东 1").as_str())
        );
        assert_eq!(header(&hs, "mcp-param-n"), Some("42"));
        assert_eq!(header(&hs, "mcp-param-dry"), Some("false"));
        let call = json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"sql",
            "arguments":{"region":null,"query":"select"}}});
        let hs = for_body(call.to_string().as_bytes(), None, &facts);
        assert!(hs
            .iter()
            .all(|(n, _)| !n.as_str().starts_with("mcp-param-")));
    }

    #[test]
    fn a_valid_list_is_relayed_byte_for_byte() {
        let facts = ToolFacts::default();
        let raw = Bytes::from_static(
            br#"{"jsonrpc":"2.0", "id":1,"result":{"tools":[{"name":"a","inputSchema":{}}]}}"#,
        );
        assert_eq!(facts.observe_list(raw.clone()), raw);
    }
}
