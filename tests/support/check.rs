//! Reading what the bridge answered, and the checks every suite makes of it: a tool result's
//! text, a bridge-made error and its `kind`, a tool-policy refusal, the standard `initialize` parameters, and that no
//! secret (nor a recognisable piece of one) shows up in some text.

use serde_json::{json, Value};

/// The first text content of a tools/call response (panics if it is not a success).
pub fn tool_text(resp: &Value) -> &str {
    assert!(
        resp.get("result").is_some(),
        "tool call failed: {:.300}",
        resp.to_string()
    );
    resp["result"]["content"][0]["text"]
        .as_str()
        .expect("text content")
}

/// `error.data.alibridge.kind` of a bridge-made error (panics unless `resp` is one: code -32000
/// and a message).
pub fn error_kind(resp: &Value) -> &str {
    assert_eq!(resp["error"]["code"], -32000, "not a bridge error: {resp}");
    let message = resp["error"]["message"].as_str().unwrap_or_default();
    assert!(
        !message.is_empty(),
        "bridge error without a message: {resp}"
    );
    resp["error"]["data"]["alibridge"]["kind"]
        .as_str()
        .unwrap_or_else(|| panic!("no kind: {resp}"))
}

/// The message of a bridge-made error of `kind` (panics if `resp` is anything else).
pub fn bridge_error(resp: &Value, kind: &str) -> String {
    assert_eq!(error_kind(resp), kind, "not a {kind} error: {resp}");
    resp["error"]["message"].as_str().unwrap().to_string()
}

/// The message of a bridge-made error of kind `auth`.
pub fn auth_error(resp: &Value) -> String {
    bridge_error(resp, "auth")
}

/// The tool policy's refusal in `resp`: `(rule, message)` (panics if `resp` is anything else).
pub fn policy_refusal(resp: &Value) -> (String, String) {
    let e = &resp["error"];
    assert!(e.is_object(), "expected a refusal: {resp}");
    assert_eq!(e["data"]["alibridge"]["kind"], "policy", "{resp}");
    as_policy_refusal(resp).unwrap_or_else(|| panic!("a refusal without rule or message: {resp}"))
}

/// [`policy_refusal`] for a test that collects failures: `None` unless `resp` is a refusal of
/// the tool policy with a rule and a message.
pub fn as_policy_refusal(resp: &Value) -> Option<(String, String)> {
    let e = &resp["error"];
    if e["data"]["alibridge"]["kind"] != "policy" {
        return None;
    }
    Some((
        e["data"]["alibridge"]["rule"].as_str()?.to_string(),
        e["message"].as_str()?.to_string(),
    ))
}

/// `initialize` parameters of a plain client (no capabilities), for tests that send the
/// request themselves because its answer is the point.
pub fn init_params() -> Value {
    json!({
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "alibridge-tests", "version": "0"}
    })
}

/// Panics if any of `secrets`, or a recognisable piece of one, occurs in `text` (`what` names
/// the text). A piece catches a truncated secret: a JWT's random signature part, else the
/// middle of a long secret. The panic shows only the first characters of what leaked.
pub fn assert_no_secrets<S: AsRef<str>>(what: &str, text: &str, secrets: &[S]) {
    for s in secrets {
        let s = s.as_ref();
        let mut pieces = vec![s];
        if s.matches('.').count() == 2 {
            pieces.extend(s.rsplit('.').next().filter(|p| p.len() >= 16));
        } else if s.len() >= 32 {
            pieces.push(&s[s.len() / 2 - 8..s.len() / 2 + 8]);
        }
        for p in pieces {
            assert!(!text.contains(p), "a secret ({p:.6}…) leaked into {what}");
        }
    }
}
