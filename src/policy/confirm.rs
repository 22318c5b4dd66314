//! `--confirm-writes`: asking the person, through their MCP client, before a write is relayed.
//!
//! The bridge sends the client an `elicitation/create` request (form mode) of its own, under an
//! id no server can produce ([`ConfirmIds`]): the tool, the API action, the region and the key
//! arguments (secrets masked) in the message and as read-only fields, and a `confirm` checkbox.
//! Only `accept` with `confirm: true` lets the call through, once; `decline`, `cancel`, an
//! unticked box or an error are refusals, answered to the model as a tool error result so it
//! learns the person said no.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use serde_json::{json, Value};

use super::classify::CallClass;
use super::redact;
use crate::jsonrpc::Id;

/// Whether the client's `initialize` request declares form-mode elicitation: an
/// `elicitation` capability that is empty (2025-06-18, and the 2025-11-25 default) or names
/// `form`.
pub fn client_can_elicit(initialize: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<Value>(initialize) else {
        return false;
    };
    match v.pointer("/params/capabilities/elicitation") {
        Some(Value::Object(e)) => e.contains_key("form") || !e.contains_key("url"),
        _ => false,
    }
}

/// Ids for the bridge's own requests to the client: `alibridge-confirm-<128 random bits>-<n>`.
/// The random part is made once per process and never sent upstream, so no server can name
/// one of these ids (and the client's answer to it can only be the bridge's).
pub struct ConfirmIds {
    prefix: String,
    next: AtomicU64,
}

impl Default for ConfirmIds {
    fn default() -> Self {
        // `RandomState` is seeded from the operating system's randomness once per process.
        let r = |salt: u64| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(salt);
            h.finish()
        };
        ConfirmIds {
            prefix: format!("alibridge-confirm-{:016x}{:016x}", r(1), r(2)),
            next: AtomicU64::new(1),
        }
    }
}

impl ConfirmIds {
    /// A fresh id, as JSON text.
    pub fn mint(&self) -> Id {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Id::from_json(&format!("\"{}-{n}\"", self.prefix))
    }

    /// Whether `id` is one of ours.
    pub fn owns(&self, id: &Id) -> bool {
        id.as_json()
            .strip_prefix('"')
            .is_some_and(|s| s.starts_with(&self.prefix))
    }
}

/// What the person is asked about.
pub struct Prompt<'a> {
    pub tool: &'a str,
    pub class: &'a CallClass,
    /// The region the call will act in, as far as it can be told.
    pub region: Option<&'a str>,
    pub arguments: Option<&'a Value>,
    /// What the call would cost ([`super::quote::shown`]), when a quote was asked for.
    pub price: Option<&'a str>,
}

/// Longest rendering of the arguments in the message.
const MAX_ARGS_TEXT: usize = 1500;

/// The `elicitation/create` request for `prompt`, with id `id`.
pub fn request(id: &Id, prompt: &Prompt<'_>) -> Bytes {
    let action = prompt.class.action.as_deref().unwrap_or("(unknown)");
    let region = prompt.region.unwrap_or("(not set)");
    let args = prompt
        .arguments
        .map(redact::arguments)
        .map(|a| key_arguments(&a))
        .unwrap_or_else(|| "(none)".into());
    let message = format!(
        "alibridge: your agent wants to run a write.\n\
         Tool: {tool}\nAPI action: {action}\nRegion: {region}\nArguments: {args}\n{price}{script}\
         Why it counts as a write: {why}.\n\
         Tick \"confirm\" and accept to let it run once; decline to refuse it.",
        tool = prompt.tool,
        script = whole_script(prompt.arguments),
        price = prompt
            .price
            .map(|p| format!("Price: {p}\n"))
            .unwrap_or_default(),
        why = prompt.class.reason,
    );
    let shown = |title: &str, value: &str| json!({"type": "string", "title": title, "enum": [value], "default": value});
    let confirm = json!({
        "type": "boolean",
        "title": format!("Run {action}?"),
        "description": "Relay this call to the server once.",
        "default": false
    });
    // Written by hand so the form shows the fields in this order (JSON objects from
    // `serde_json` are sorted by key).
    let properties = format!(
        r#"{{"tool":{},"action":{},"region":{},"confirm":{}}}"#,
        shown("Tool", prompt.tool),
        shown("API action", action),
        shown("Region", region),
        confirm
    );
    let id = serde_json::from_str::<Value>(id.as_json()).unwrap_or(Value::Null);
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"elicitation/create","params":{{"message":{},"requestedSchema":{{"type":"object","properties":{properties},"required":["confirm"]}}}}}}"#,
        Value::String(message)
    ))
}

/// A RunScript call's whole script (literal secrets masked, never cut: the person must see
/// everything that would run) and its `costManifest`, when the arguments carry them.
fn whole_script(args: Option<&Value>) -> String {
    let Some(script) = args.and_then(|a| a.get("script")).and_then(Value::as_str) else {
        return String::new();
    };
    let manifest = args
        .and_then(|a| a.get("costManifest"))
        .map(|m| format!("Cost manifest: {}\n", redact::arguments(m)))
        .unwrap_or_default();
    format!(
        "The whole script:\n-----\n{}\n-----\n{manifest}",
        redact::script_text(script)
    )
}

/// A plain yes/no question (`elicitation/create`, form mode) with the same `confirm` box as a
/// write's confirmation, read back with [`answer`].
pub fn yes_no(id: &Id, message: &str, title: &str) -> Bytes {
    let id = serde_json::from_str::<Value>(id.as_json()).unwrap_or(Value::Null);
    let v = json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "elicitation/create",
        "params": {
            "message": message,
            "requestedSchema": {
                "type": "object",
                "properties": {"confirm": {"type": "boolean", "title": title, "default": false}},
                "required": ["confirm"]
            }
        }
    });
    Bytes::from(v.to_string())
}

/// `k=v, k=v` of the (already redacted) arguments, cut to [`MAX_ARGS_TEXT`].
fn key_arguments(args: &Value) -> String {
    let text = match args {
        Value::Object(m) if m.is_empty() => return "(none)".into(),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    };
    if text.chars().count() > MAX_ARGS_TEXT {
        let head: String = text.chars().take(MAX_ARGS_TEXT).collect();
        format!("{head}…")
    } else {
        text
    }
}

/// What the person answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `accept` with `confirm: true`.
    Confirmed,
    /// `decline`, or `accept` without ticking `confirm`.
    Declined,
    Cancelled,
    /// The client answered with an error (or something unreadable).
    Failed(String),
}

impl Answer {
    /// For the audit log.
    pub fn as_str(&self) -> &'static str {
        match self {
            Answer::Confirmed => "confirmed",
            Answer::Declined => "declined",
            Answer::Cancelled => "cancelled",
            Answer::Failed(_) => "failed",
        }
    }
}

/// Reads the client's response to our `elicitation/create`.
pub fn answer(bytes: &[u8]) -> Answer {
    let Ok(v) = serde_json::from_slice::<Value>(bytes) else {
        return Answer::Failed("the answer was not JSON".into());
    };
    if let Some(e) = v.get("error") {
        let msg = e
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("(no message)");
        return Answer::Failed(format!(
            "the client answered with an error: {}",
            redact::cut(msg)
        ));
    }
    let result = v.get("result").cloned().unwrap_or(Value::Null);
    match result.get("action").and_then(Value::as_str) {
        Some("accept") => {
            if result.pointer("/content/confirm") == Some(&Value::Bool(true)) {
                Answer::Confirmed
            } else {
                Answer::Declined
            }
        }
        Some("decline") => Answer::Declined,
        Some("cancel") => Answer::Cancelled,
        _ => Answer::Failed("the answer had no action".into()),
    }
}

/// The tool result the model gets when the person did not confirm (`isError`, so it does not
/// take the call as done).
pub fn refused_result(id: &Id, tool: &str, answer: &Answer) -> Bytes {
    let text = match answer {
        Answer::Declined => format!(
            "The person declined to run {tool} when alibridge asked them to confirm it \
             (--confirm-writes). Nothing was sent to the server. Ask them before trying again."
        ),
        Answer::Cancelled => format!(
            "The person cancelled the confirmation of {tool} (--confirm-writes). Nothing was \
             sent to the server."
        ),
        Answer::Failed(why) => format!(
            "alibridge could not get a confirmation for {tool} (--confirm-writes): {why}. \
             Nothing was sent to the server."
        ),
        Answer::Confirmed => format!("{tool} was confirmed"),
    };
    let v = json!({
        "jsonrpc": "2.0",
        "id": serde_json::from_str::<Value>(id.as_json()).unwrap_or(Value::Null),
        "result": {"content": [{"type": "text", "text": text}], "isError": true}
    });
    Bytes::from(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::classify::Access;

    #[test]
    fn capability_follows_the_spec_and_the_sdk() {
        let init = |caps: &str| {
            format!(r#"{{"id":0,"method":"initialize","params":{{"capabilities":{caps}}}}}"#)
        };
        assert!(client_can_elicit(init(r#"{"elicitation":{}}"#).as_bytes()));
        assert!(client_can_elicit(
            init(r#"{"elicitation":{"form":{}}}"#).as_bytes()
        ));
        assert!(client_can_elicit(
            init(r#"{"elicitation":{"form":{},"url":{}}}"#).as_bytes()
        ));
        assert!(!client_can_elicit(
            init(r#"{"elicitation":{"url":{}}}"#).as_bytes()
        ));
        assert!(!client_can_elicit(init(r#"{"sampling":{}}"#).as_bytes()));
        assert!(!client_can_elicit(b"garbage"));
    }

    #[test]
    fn ids_are_ours_and_unique() {
        let ids = ConfirmIds::default();
        let (a, b) = (ids.mint(), ids.mint());
        assert_ne!(a, b);
        assert!(ids.owns(&a) && ids.owns(&b));
        assert!(a.as_json().starts_with("\"alibridge-confirm-"));
        assert!(!ids.owns(&Id::from_json("\"alibridge-confirm-1\"")));
        assert!(!ids.owns(&Id::from_json("7")));
        assert!(
            !ConfirmIds::default().owns(&a),
            "another process's ids are not ours"
        );
    }

    #[test]
    fn the_request_shows_what_will_run_without_secrets() {
        let class = CallClass {
            access: Access::Write,
            action: Some("DeleteInstance".into()),
            apis: None,
            opaque: false,
            reason: "the API action DeleteInstance does not start with a read verb".into(),
        };
        let args = json!({"InstanceId": "i-123", "Password": "hunter2"});
        let long = format!(
            "{}\nawait call_cli(product='Ecs', action='DeleteInstance')\npassword = 'hunter3'",
            "# x\n".repeat(600)
        );
        let script_args = json!({"script": long, "costManifest": {"steps": [{"product": "Ecs"}]}});
        let shown = whole_script(Some(&script_args));
        assert!(
            shown.contains("action='DeleteInstance'") && shown.contains("Cost manifest"),
            "the end of a long script is shown"
        );
        assert!(!shown.contains("hunter3"), "{shown}");
        assert_eq!(whole_script(Some(&args)), "");
        let id = Id::from_json("\"alibridge-confirm-x-1\"");
        let req = request(
            &id,
            &Prompt {
                tool: "DeleteInstance",
                class: &class,
                region: Some("cn-beijing"),
                price: Some("0.52 CNY/hour (a quote)"),
                arguments: Some(&args),
            },
        );
        let v: Value = serde_json::from_slice(&req).unwrap();
        assert_eq!(v["method"], "elicitation/create");
        assert_eq!(v["id"], "alibridge-confirm-x-1");
        let msg = v["params"]["message"].as_str().unwrap();
        for part in [
            "DeleteInstance",
            "cn-beijing",
            "InstanceId=i-123",
            "Password=****",
        ] {
            assert!(msg.contains(part), "{part} missing from {msg}");
        }
        assert!(!req.windows(7).any(|w| w == b"hunter2"));
        let schema = &v["params"]["requestedSchema"];
        assert_eq!(schema["required"], json!(["confirm"]));
        assert_eq!(schema["properties"]["confirm"]["type"], "boolean");
        assert_eq!(
            schema["properties"]["region"]["enum"],
            json!(["cn-beijing"])
        );
    }

    #[test]
    fn only_a_ticked_accept_confirms() {
        let a =
            |r: &str| answer(format!(r#"{{"jsonrpc":"2.0","id":"x","result":{r}}}"#).as_bytes());
        assert_eq!(
            a(r#"{"action":"accept","content":{"confirm":true}}"#),
            Answer::Confirmed
        );
        assert_eq!(
            a(r#"{"action":"accept","content":{"confirm":false}}"#),
            Answer::Declined
        );
        assert_eq!(a(r#"{"action":"accept"}"#), Answer::Declined);
        assert_eq!(
            a(r#"{"action":"accept","content":{"confirm":"true"}}"#),
            Answer::Declined
        );
        assert_eq!(a(r#"{"action":"decline"}"#), Answer::Declined);
        assert_eq!(a(r#"{"action":"cancel"}"#), Answer::Cancelled);
        assert!(matches!(a(r#"{}"#), Answer::Failed(_)));
        assert!(matches!(
            answer(br#"{"jsonrpc":"2.0","id":"x","error":{"code":-1,"message":"no"}}"#),
            Answer::Failed(_)
        ));
        let r = refused_result(&Id::from_json("4"), "DeleteInstance", &Answer::Declined);
        let v: Value = serde_json::from_slice(&r).unwrap();
        assert_eq!(v["id"], 4);
        assert_eq!(v["result"]["isError"], true);
        assert!(v["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("declined"));
    }
}
