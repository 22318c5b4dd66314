//! Prices for the confirmation form: before the person is asked about a CallCLI write, the same
//! command is run once more with `--estimate-cost`, which makes the OpenAPI MCP Server return a
//! quote and execute nothing. The form then shows the quote, or says the price is unknown —
//! never "free" unless the quote says so.
//!
//! The quote request is the bridge's own `tools/call`, under an id no client can produce
//! ([`QuoteIds`]); its answer is consumed by the bridge, never shown to the client.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};

use super::classify::{self, Generic};
use super::{cli_command, redact};
use crate::jsonrpc::Id;

/// How long the form waits for a quote before saying the price is unknown.
pub const QUOTE_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest quote text shown.
const MAX_QUOTE: usize = 800;
/// The CLI flag that asks for a quote instead of running the command.
pub const ESTIMATE_FLAG: &str = "--estimate-cost";

/// Ids of quote requests: `alibridge-quote-<128 random bits>`, one per quote.
#[derive(Debug, Default)]
pub struct QuoteIds;

impl QuoteIds {
    const PREFIX: &'static str = "alibridge-quote-";

    pub fn mint(&self) -> Id {
        let hex = crate::random::hex::<16>();
        Id::from_json(&format!("\"{}{hex}\"", Self::PREFIX))
    }

    pub fn owns(&self, id: &Id) -> bool {
        id.as_json()
            .strip_prefix('"')
            .is_some_and(|s| s.starts_with(Self::PREFIX))
    }
}

/// The quote request for a call of `tool` with `args`, when one makes sense: a CallCLI command
/// alibridge can read (so appending a flag cannot change which API it names) that does not ask
/// for a quote already.
pub fn request(id: &Id, tool: &str, args: Option<&Value>) -> Option<Bytes> {
    if classify::generic(tool) != Some(Generic::CallCli) {
        return None;
    }
    let args = args?.as_object()?;
    let command = args.get("command")?.as_str()?;
    let parsed = cli_command::parse(command).ok()?;
    // Access-issuing reads cost nothing; only what may be billed is quoted.
    let action = classify::cli_api(command).ok()?.0.action;
    if parsed.is_oss()
        || classify::is_access_issuing(&action)
        || parsed
            .flags
            .iter()
            .any(|(f, _)| f.eq_ignore_ascii_case(ESTIMATE_FLAG))
    {
        return None;
    }
    let mut quoted = args.clone();
    quoted.insert(
        "command".into(),
        Value::String(format!("{command} {ESTIMATE_FLAG}")),
    );
    let id = serde_json::from_str::<Value>(id.as_json()).ok()?;
    let v = json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": quoted},
    });
    Some(Bytes::from(v.to_string()))
}

/// What the form says about the price, from the quote's answer (`None`: none came).
pub fn shown(answer: Option<&[u8]>) -> String {
    const UNKNOWN: &str = "unknown";
    let Some(bytes) = answer else {
        return format!("{UNKNOWN} (no quote came back in time; this does not mean free)");
    };
    let Ok(v) = serde_json::from_slice::<Value>(bytes) else {
        return format!("{UNKNOWN} (the quote was not JSON; this does not mean free)");
    };
    if v.get("error").is_some() || v.pointer("/result/isError") == Some(&Value::Bool(true)) {
        return format!(
            "{UNKNOWN} (the server gave no quote for this API; this does not mean free)"
        );
    }
    let text: String = v
        .pointer("/result/content")
        .and_then(Value::as_array)
        .map(|blocks| {
            blocks
                .iter()
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let text = redact::cut(text.trim());
    if text.is_empty() {
        return format!("{UNKNOWN} (the quote was empty; this does not mean free)");
    }
    let mut shown: String = text.chars().take(MAX_QUOTE).collect();
    if text.chars().count() > MAX_QUOTE {
        shown.push('…');
    }
    format!("{shown} (a quote from {ESTIMATE_FLAG}; nothing was run)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_asked_only_for_readable_cli_commands() {
        let ids = QuoteIds;
        let id = ids.mint();
        assert!(ids.owns(&id));
        assert!(!ids.owns(&Id::from_json("\"alibridge-confirm-x\"")));
        assert_ne!(ids.mint(), id, "random per quote");
        let args = json!({"command": "aliyun ecs run-instances --Amount 2", "x_output_jmespath_filter": "a"});
        let r = request(&id, "AlibabaCloud___CallCLI", Some(&args)).unwrap();
        let v: Value = serde_json::from_slice(&r).unwrap();
        assert_eq!(
            v["params"]["arguments"]["command"],
            "aliyun ecs run-instances --Amount 2 --estimate-cost"
        );
        assert_eq!(v["params"]["arguments"]["x_output_jmespath_filter"], "a");
        assert_eq!(v["id"].as_str().unwrap(), id.as_json().trim_matches('"'));
        for (tool, args) in [
            (
                "AlibabaCloud___CallCLI",
                json!({"command": "aliyun ecs x; y"}),
            ),
            (
                "AlibabaCloud___CallCLI",
                json!({"command": "aliyun ecs run-instances --estimate-cost"}),
            ),
            (
                "AlibabaCloud___CallCLI",
                json!({"command": "aliyun oss rm oss://b/k"}),
            ),
            (
                "AlibabaCloud___CallCLI",
                json!({"command": "aliyun kms get-secret-value --SecretName s"}),
            ),
            ("AlibabaCloud___RunScript", json!({"script": "x"})),
            ("DeleteInstance", json!({})),
        ] {
            assert!(request(&id, tool, Some(&args)).is_none(), "{tool} {args}");
        }
    }

    #[test]
    fn the_form_never_calls_a_missing_quote_free() {
        let ok = br#"{"jsonrpc":"2.0","id":"q","result":{"content":[{"type":"text","text":"{\"costPreview\":{\"status\":\"ESTIMATED\",\"total\":\"0.52 CNY/hour\"}}"}]}}"#;
        let s = shown(Some(ok));
        assert!(
            s.contains("0.52 CNY/hour") && s.contains("nothing was run"),
            "{s}"
        );
        for bad in [
            None,
            Some(br#"{"jsonrpc":"2.0","id":"q","error":{"code":-1,"message":"x"}}"#.as_slice()),
            Some(
                br#"{"jsonrpc":"2.0","id":"q","result":{"content":[],"isError":true}}"#.as_slice(),
            ),
            Some(br#"{"jsonrpc":"2.0","id":"q","result":{"content":[]}}"#.as_slice()),
            Some(b"garbage".as_slice()),
        ] {
            let s = shown(bad);
            assert!(
                s.starts_with("unknown") && s.contains("not mean free"),
                "{s}"
            );
        }
    }
}
