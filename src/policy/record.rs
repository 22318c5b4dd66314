//! One line of the audit log, and the lines both front ends (the stdio relay and the proxy)
//! write: a call refused by the policy, a write the person did not confirm, a relayed call's
//! answer.

use std::time::Instant;

use serde_json::{json, Value};

use super::audit;
use super::classify::CallClass;
use super::confirm::Answer;
use super::redact;
use super::{Decision, Pending, Rule};

/// Where a call went and as whom: the same on every line a front end writes for one call.
pub struct Origin<'a> {
    pub upstream: &'a str,
    /// The server's path (proxy).
    pub server: Option<&'a str>,
    pub identity: Option<String>,
}

/// One audit line.
pub struct Record<'a> {
    pub tool: &'a str,
    pub class: Option<&'a CallClass>,
    /// `relayed`, `denied`, `declined`, `cancelled`, `unconfirmed`.
    pub decision: &'a str,
    pub rule: Option<String>,
    pub confirmed: bool,
    /// `ok`, `error`, `isError`, `not_sent`.
    pub outcome: &'a str,
    pub error: Option<String>,
    pub duration_ms: u128,
    pub upstream: &'a str,
    /// The server's path (proxy).
    pub server: Option<&'a str>,
    pub identity: Option<String>,
    pub region_added: Option<&'a str>,
    pub arguments: Value,
}

impl Record<'_> {
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "time": audit::rfc3339(std::time::SystemTime::now()),
            "tool": self.tool,
            "action": self.class.and_then(|c| c.action.clone()),
            "access": self.class.map(|c| c.access.as_str()),
            "reason": self.class.map(|c| c.reason.as_str()),
            "decision": self.decision,
            "outcome": self.outcome,
            "durationMs": self.duration_ms,
            "upstream": self.upstream,
            "identity": self.identity,
            "arguments": self.arguments,
        });
        let m = v.as_object_mut().expect("an object");
        if let Some(r) = &self.rule {
            m.insert("rule".into(), json!(r));
        }
        if self.confirmed {
            m.insert("confirmed".into(), json!(true));
        }
        if let Some(e) = &self.error {
            m.insert("error".into(), json!(e));
        }
        if let Some(s) = self.server {
            m.insert("server".into(), json!(s));
        }
        if let Some(r) = self.region_added {
            m.insert("regionAdded".into(), json!(r));
        }
        v
    }
}

impl<'a> Record<'a> {
    /// A call the policy refused: never sent.
    pub fn denied(
        at: Origin<'a>,
        tool: &'a str,
        decision: &'a Decision,
        rule: &Rule,
        args: Option<&Value>,
    ) -> Self {
        Record {
            tool,
            class: Some(&decision.class),
            decision: "denied",
            rule: Some(rule.name()),
            confirmed: false,
            outcome: "not_sent",
            error: None,
            duration_ms: 0,
            upstream: at.upstream,
            server: at.server,
            identity: at.identity,
            region_added: None,
            arguments: redact::call_arguments(args),
        }
    }

    /// A write the person did not confirm (`answer` says how): never sent. `arguments` are
    /// already redacted.
    pub fn unconfirmed(
        at: Origin<'a>,
        tool: &'a str,
        class: &'a CallClass,
        answer: &Answer,
        started: Instant,
        arguments: Value,
    ) -> Self {
        Record {
            tool,
            class: Some(class),
            decision: answer.as_str(),
            rule: Some(Rule::CannotConfirm.name()),
            confirmed: false,
            outcome: "not_sent",
            error: match answer {
                Answer::Failed(why) => Some(why.clone()),
                _ => None,
            },
            duration_ms: started.elapsed().as_millis(),
            upstream: at.upstream,
            server: at.server,
            identity: at.identity,
            region_added: None,
            arguments,
        }
    }

    /// A message the strict reader refused ([`super::strict`]): never sent, arguments not
    /// logged (they could not be read unambiguously).
    pub fn malformed(at: Origin<'a>, why: &super::strict::Malformed) -> Self {
        Record {
            tool: "(malformed message)",
            class: None,
            decision: "denied",
            rule: Some("strict-json".into()),
            confirmed: false,
            outcome: "not_sent",
            error: Some(why.to_string()),
            duration_ms: 0,
            upstream: at.upstream,
            server: at.server,
            identity: at.identity,
            region_added: None,
            arguments: Value::Null,
        }
    }

    /// The person's answer about a held-back tool (`--pin-tools`): `approved`, `declined`,
    /// `cancelled` or `failed`.
    pub fn pinning(at: Origin<'a>, tool: &'a str, decision: &'a str) -> Self {
        Record {
            tool,
            class: None,
            decision,
            rule: Some("--pin-tools".into()),
            confirmed: decision == "approved",
            outcome: "not_sent",
            error: None,
            duration_ms: 0,
            upstream: at.upstream,
            server: at.server,
            identity: at.identity,
            region_added: None,
            arguments: Value::Null,
        }
    }

    /// A relayed call whose answer (`outcome`, `error`) came, or never will.
    pub fn answered(
        at: Origin<'a>,
        p: &'a Pending,
        outcome: &'a str,
        error: Option<String>,
    ) -> Self {
        Record {
            tool: &p.tool,
            class: Some(&p.class),
            decision: "relayed",
            rule: None,
            confirmed: p.confirmed,
            outcome,
            error,
            duration_ms: p.started.elapsed().as_millis(),
            upstream: at.upstream,
            server: at.server,
            identity: at.identity,
            region_added: p.region_added.as_deref(),
            arguments: p.arguments.clone(),
        }
    }
}
