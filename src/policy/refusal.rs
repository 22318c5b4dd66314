//! The JSON-RPC error a refused call gets: which rule refused it, why, and what to change (the
//! flag and its environment variable), with `data.alibridge` for programs.

use bytes::Bytes;
use serde_json::json;

use super::{Decision, Rule, REFUSAL_CODE};
use crate::jsonrpc::{self, Id};

/// The JSON-RPC error answering a refused call.
pub fn refusal(id: &Id, tool: &str, decision: &Decision, rule: &Rule) -> Bytes {
    let class = &decision.class;
    let action = class
        .action
        .as_deref()
        .map(|a| format!(" ({a})"))
        .unwrap_or_default();
    let (what, fix) = match rule {
        Rule::Denied(p) => (
            format!("it matches --deny-tools {p}"),
            "remove the pattern from --deny-tools (ALIBRIDGE_DENY_TOOLS) to allow it".to_string(),
        ),
        Rule::NotAllowed => (
            "it is not in --allow-tools".to_string(),
            "add it to --allow-tools (ALIBRIDGE_ALLOW_TOOLS) to allow it".to_string(),
        ),
        Rule::ReadOnly => (
            format!(
                "it is a write ({}) and alibridge runs with --read-only",
                class.reason
            ),
            "restart alibridge without --read-only (ALIBRIDGE_READ_ONLY) to allow writes"
                .to_string(),
        ),
        Rule::CannotConfirm => (
            format!(
                "it is a write ({}), --confirm-writes asks you to confirm each write in your MCP \
                 client, and this client did not declare the elicitation capability (form mode) \
                 when it connected, so it cannot be asked",
                class.reason
            ),
            "use an MCP client that supports elicitation, or restart alibridge without \
             --confirm-writes and limit the agent with --read-only or --allow-tools instead"
                .to_string(),
        ),
        Rule::Unpinned(why) => (
            format!("{why}, and alibridge holds back tools until you approve them (--pin-tools)"),
            "approve it when your client asks, or with `alibridge tools <URL> --approve NAME` \
             (`alibridge tools <URL>` shows what changed); then list the tools again"
                .to_string(),
        ),
        Rule::DeniedApi { pattern, api } => (
            format!("it runs {api}, which matches --deny-api {pattern}"),
            "remove the pattern from --deny-api (ALIBRIDGE_DENY_API) to allow it".to_string(),
        ),
        Rule::ApiNotAllowed(api) => (
            format!("it runs {api}, which matches no --allow-api pattern"),
            "add a matching PRODUCT:ACTION pattern to --allow-api (ALIBRIDGE_ALLOW_API) to allow \
             it"
            .to_string(),
        ),
        Rule::ApisUnknown => (
            format!(
                "--allow-api/--deny-api are set and alibridge cannot tell every API it runs ({})",
                class.reason
            ),
            "use a tool or CLI command that names its API, or, with AccessKeys, let the \
             server-side policy judge such calls (the API rules are then bound to the token)"
                .to_string(),
        ),
        Rule::Unreadable => (
            "alibridge could not tell which tool the request names (params.name missing, or \
             params or name given twice)"
                .to_string(),
            "send one params object with one name".to_string(),
        ),
    };
    let message = format!(
        "alibridge refused to call {tool}{action}: {what}. Nothing was sent to the server; {fix}."
    );
    jsonrpc::error_response(
        Some(id),
        REFUSAL_CODE,
        &message,
        Some(json!({"alibridge": {
            "kind": "policy",
            "rule": rule.name(),
            "tool": tool,
            "action": class.action,
            "access": class.access.as_str(),
        }})),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{glob, Policy, Verdict};
    use serde_json::Value;

    #[test]
    fn refusals_name_the_rule_and_the_fix() {
        let p = Policy {
            deny: glob::parse_list("Delete*").unwrap(),
            ..Policy::default()
        };
        let d = p.decide("DeleteInstance", None, None);
        let Verdict::Refuse(rule) = &d.verdict else {
            panic!("refused")
        };
        let r = refusal(&Id::from_json("5"), "DeleteInstance", &d, rule);
        let v: Value = serde_json::from_slice(&r).unwrap();
        assert_eq!(v["id"], 5);
        assert_eq!(v["error"]["data"]["alibridge"]["kind"], "policy");
        assert_eq!(
            v["error"]["data"]["alibridge"]["rule"],
            "--deny-tools Delete*"
        );
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("--deny-tools Delete*") && msg.contains("Nothing was sent"),
            "{msg}"
        );
    }
}
