//! OpenAPI Explorer `UpdateBearerTokenSafetyPolicy` (version 2024-11-30): ROA `POST
//! /safePolicy/set`, anonymous (the bearer token in the body is the credential), JSON body
//! `{"bearerToken","safePolicy","toolPolicy"?}`, as `alibabacloud.mcp-proxy` sends it.
//!
//! Checked as the gateway would: the method and path, `x-acs-action` / `x-acs-version`, a JSON
//! content type, a body that is a JSON object with only those keys, a `bearerToken` the fake
//! minted that is still valid, a `safePolicy` string that is `{"rules":[]}` or
//! `PATTERN=allow|deny` rules, and a `toolPolicy` (when present) that is a JSON string holding
//! `{"allowedTools":[non-empty strings]}`. The policy is then bound to the token
//! ([`super::AliyunFake::bound_policy`]).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{rpc, valid, State};

pub const ACTION: &str = "UpdateBearerTokenSafetyPolicy";
pub const VERSION: &str = "2024-11-30";
pub const PATH: &str = "/safePolicy/set";

/// One call to `/safePolicy/set`.
#[derive(Debug, Clone)]
pub struct SafetyCall {
    pub status: u16,
    pub code: Option<String>,
    /// The request headers (lower-case names).
    pub headers: BTreeMap<String, String>,
    /// The body as received.
    pub body: String,
}

/// A policy bound to a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    pub safe_policy: String,
    /// `allowedTools` of `toolPolicy`, when one was given.
    pub allowed_tools: Option<Vec<String>>,
}

/// Handles one request; returns the status and JSON body, and records the call.
pub(super) fn handle(
    st: &mut State,
    method: &str,
    headers: BTreeMap<String, String>,
    body: &[u8],
) -> (u16, Value) {
    let request_id = rpc::request_id();
    let outcome = match st.safety_failure.clone() {
        Some((status, code)) => Err((status, code, "the test made this call fail".to_string())),
        None => check(st, method, &headers, body),
    };
    let (status, answer, code) = match outcome {
        Ok(()) => (200, json!({"RequestId": request_id}), None),
        Err((status, code, message)) => (
            status,
            json!({"RequestId": request_id, "Code": code, "Message": message}),
            Some(code),
        ),
    };
    st.safety_calls.push(SafetyCall {
        status,
        code,
        headers,
        body: String::from_utf8_lossy(body).into_owned(),
    });
    (status, answer)
}

type Fail = (u16, String, String);

fn bad(code: &str, message: impl Into<String>) -> Fail {
    (400, code.to_string(), message.into())
}

fn check(
    st: &mut State,
    method: &str,
    headers: &BTreeMap<String, String>,
    body: &[u8],
) -> Result<(), Fail> {
    if method != "POST" {
        return Err(bad(
            "InvalidHttpMethod",
            format!("{method} is not accepted; POST"),
        ));
    }
    let h = |k: &str| headers.get(k).map(String::as_str);
    if h("x-acs-action") != Some(ACTION) {
        return Err((
            404,
            "InvalidAction.NotFound".into(),
            format!("x-acs-action {:?}", h("x-acs-action")),
        ));
    }
    if h("x-acs-version") != Some(VERSION) {
        return Err(bad(
            "InvalidVersion",
            format!("x-acs-version {:?}", h("x-acs-version")),
        ));
    }
    if !h("content-type").is_some_and(|c| c.starts_with("application/json")) {
        return Err(bad("InvalidParameter", "the body must be application/json"));
    }
    let v: Value =
        serde_json::from_slice(body).map_err(|e| bad("InvalidParameter", format!("body: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad("InvalidParameter", "the body must be an object"))?;
    if let Some(k) = obj
        .keys()
        .find(|k| !["bearerToken", "safePolicy", "toolPolicy"].contains(&k.as_str()))
    {
        return Err(bad("InvalidParameter", format!("unknown field {k}")));
    }
    let token = obj
        .get("bearerToken")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("MissingBearerToken", "bearerToken is required"))?;
    if !valid(st, token) {
        return Err((
            401,
            "InvalidBearerToken".into(),
            "the bearer token is unknown, expired or revoked".into(),
        ));
    }
    let safe_policy = obj
        .get("safePolicy")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("MissingSafePolicy", "safePolicy is required (a string)"))?;
    if safe_policy != r#"{"rules":[]}"# && !expression_ok(safe_policy) {
        return Err(bad(
            "InvalidParameter.SafePolicy",
            format!("cannot parse safePolicy {safe_policy:?}"),
        ));
    }
    let allowed_tools = match obj.get("toolPolicy") {
        None => None,
        Some(Value::String(s)) => {
            let tp: Value = serde_json::from_str(s).map_err(|_| {
                bad(
                    "InvalidParameter.ToolPolicy",
                    "toolPolicy must be a JSON string",
                )
            })?;
            let list = tp
                .get("allowedTools")
                .and_then(Value::as_array)
                .filter(|a| a.iter().all(|t| t.as_str().is_some_and(|t| !t.is_empty())))
                .ok_or_else(|| {
                    bad(
                        "InvalidParameter.ToolPolicy",
                        "toolPolicy needs allowedTools: [names]",
                    )
                })?;
            Some(
                list.iter()
                    .map(|t| t.as_str().unwrap().to_string())
                    .collect(),
            )
        }
        Some(_) => {
            return Err(bad(
                "InvalidParameter.ToolPolicy",
                "toolPolicy must be a string",
            ))
        }
    };
    st.bound.insert(
        token.to_string(),
        Bound {
            safe_policy: safe_policy.to_string(),
            allowed_tools,
        },
    );
    Ok(())
}

/// `PATTERN=allow|deny[,…]`.
fn expression_ok(s: &str) -> bool {
    s.split(',').all(|rule| {
        rule.rsplit_once('=').is_some_and(|(p, e)| {
            !p.trim().is_empty()
                && matches!(e.trim().to_ascii_lowercase().as_str(), "allow" | "deny")
        })
    })
}

/// How the fake service judges one API call under a bound `safePolicy`, written independently
/// of alibridge's compiler: rules in order, the first whose pattern matches `product:api`
/// (kebab-case, lower-case; `*` any run of characters) decides; no match allows; `{"rules":[]}`
/// allows everything.
pub fn evaluate(safe_policy: &str, product: &str, api: &str) -> bool {
    if safe_policy == r#"{"rules":[]}"# {
        return true;
    }
    let subject = format!("{}:{}", product.to_lowercase(), api.to_lowercase());
    for rule in safe_policy.split(',') {
        let Some((pattern, effect)) = rule.trim().rsplit_once('=') else {
            continue;
        };
        let pattern = pattern.trim().to_lowercase();
        let hit = if pattern.contains(':') {
            wildcard(&pattern, &subject)
        } else {
            wildcard(&pattern, &subject) || wildcard(&pattern, &subject.replace(':', "-"))
        };
        if hit {
            return effect.trim().eq_ignore_ascii_case("allow");
        }
    }
    true
}

/// `*`-only glob over whole strings (recursive; test inputs are short).
fn wildcard(p: &str, s: &str) -> bool {
    match p.split_once('*') {
        None => p == s,
        Some((head, tail)) => {
            let Some(rest) = s.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len()).any(|i| rest.is_char_boundary(i) && wildcard(tail, &rest[i..]))
        }
    }
}
