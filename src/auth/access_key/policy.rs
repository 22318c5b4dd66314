//! `--boundary-policy`: a RAM policy that scopes the minted token down. Validated locally so a
//! typo is caught before any request: valid JSON, at most 512 characters, Deny statements only
//! (the service only accepts scope-downs), each with exactly one of `Action`/`NotAction` and a
//! `Resource`. Sent verbatim (trimmed) as `Policy`.

use serde_json::Value;

/// Longest policy the service accepts, in characters.
pub const MAX_LEN: usize = 512;

const EXAMPLE: &str =
    r#"{"Version":"1","Statement":[{"Effect":"Deny","Action":"ram:*","Resource":"*"}]}"#;

/// Checks `raw` and returns the text to send (trimmed); `None` for an empty value.
pub fn validate(raw: &str) -> Result<Option<String>, String> {
    let text = raw.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let n = text.chars().count();
    if n > MAX_LEN {
        return Err(format!(
            "--boundary-policy is {n} characters; the limit is {MAX_LEN}"
        ));
    }
    let v: Value = serde_json::from_str(text)
        .map_err(|e| format!("--boundary-policy is not valid JSON ({e}); for example {EXAMPLE}"))?;
    let obj = v
        .as_object()
        .ok_or("--boundary-policy must be a JSON object")?;
    if let Some(ver) = obj.get("Version") {
        if ver != "1" {
            return Err("--boundary-policy \"Version\" must be \"1\" when present".into());
        }
    }
    let statements = obj
        .get("Statement")
        .and_then(Value::as_array)
        .filter(|s| !s.is_empty())
        .ok_or("--boundary-policy needs a non-empty \"Statement\" list")?;
    for (i, st) in statements.iter().enumerate() {
        let n = i + 1;
        let st = st
            .as_object()
            .ok_or(format!("--boundary-policy statement {n} must be an object"))?;
        if st.get("Effect").and_then(Value::as_str) != Some("Deny") {
            return Err(format!(
                "--boundary-policy statement {n}: only \"Effect\":\"Deny\" is allowed (a boundary can only take permissions away)"
            ));
        }
        let has_action = st.contains_key("Action");
        if has_action == st.contains_key("NotAction") {
            return Err(format!("--boundary-policy statement {n} must have exactly one of \"Action\" or \"NotAction\""));
        }
        for field in [if has_action { "Action" } else { "NotAction" }, "Resource"] {
            if !non_empty_strings(st.get(field)) {
                return Err(format!(
                    "--boundary-policy statement {n}: \"{field}\" must be a non-empty string or list of strings"
                ));
            }
        }
    }
    Ok(Some(text.to_string()))
}

/// The RAM actions `--read-only` denies in the token's boundary: the access-issuing reads, by
/// their exact RAM action names (the form Alibaba's RAM documentation confirms; a wildcard on
/// the service part, which a `NotAction` on every product's read verbs would need, is not
/// documented, so the read-only limit itself is left to the safety policy).
pub const READ_ONLY_DENIED_ACTIONS: &[&str] = &[
    "cr:GetAuthorizationToken",
    "cs:DescribeClusterUserKubeconfig",
    "cs:DescribeSubaccountK8sClusterUserConfig",
    "kms:GetSecretValue",
    "ecs:DescribeInstanceVncUrl",
    "sts:GetFederationToken",
    "sts:AssumeRole",
];

/// The boundary policy under `--read-only`: the user's `--boundary-policy` (already validated)
/// with one more `Deny` statement for [`READ_ONLY_DENIED_ACTIONS`]; both scope the token down,
/// so the result denies the union. Checked against the same limits.
pub fn with_read_only(user: Option<&str>) -> Result<String, String> {
    let statement = serde_json::json!({
        "Effect": "Deny",
        "Action": READ_ONLY_DENIED_ACTIONS,
        "Resource": "*",
    });
    let mut policy = match user {
        Some(text) => serde_json::from_str::<Value>(text).map_err(|e| e.to_string())?,
        None => serde_json::json!({"Version": "1", "Statement": []}),
    };
    match policy.get_mut("Statement").and_then(Value::as_array_mut) {
        Some(list) => list.push(statement),
        None => return Err("--boundary-policy has no Statement list".into()),
    }
    let text = policy.to_string();
    validate(&text)
        .map_err(|e| {
            format!(
                "--read-only adds a Deny statement for the access-issuing actions to \
                 --boundary-policy, and the result is refused: {e}; shorten --boundary-policy"
            )
        })?
        .ok_or_else(|| "empty boundary policy".to_string())
}

fn non_empty_strings(v: Option<&Value>) -> bool {
    match v {
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => {
            !a.is_empty() && a.iter().all(|x| x.as_str().is_some_and(|s| !s.is_empty()))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_deny_policies_and_trims() {
        assert_eq!(
            validate(&format!("  {EXAMPLE} ")).unwrap().as_deref(),
            Some(EXAMPLE)
        );
        assert_eq!(validate("   ").unwrap(), None);
        let multi =
            r#"{"Statement":[{"Effect":"Deny","NotAction":["ecs:Describe*"],"Resource":["*"]}]}"#;
        assert!(validate(multi).is_ok());
    }

    #[test]
    fn read_only_adds_a_deny_statement() {
        let alone = with_read_only(None).unwrap();
        assert!(alone.contains("kms:GetSecretValue"), "{alone}");
        assert!(validate(&alone).is_ok());
        let both = with_read_only(Some(EXAMPLE)).unwrap();
        let v: Value = serde_json::from_str(&both).unwrap();
        assert_eq!(v["Statement"].as_array().unwrap().len(), 2);
        assert_eq!(v["Statement"][0]["Action"], "ram:*");
        let long = format!(
            r#"{{"Statement":[{{"Effect":"Deny","Action":"{}","Resource":"*"}}]}}"#,
            "a".repeat(300)
        );
        assert!(with_read_only(Some(&long)).unwrap_err().contains("shorten"));
    }

    #[test]
    fn rejects_what_the_service_would() {
        for bad in [
            "not json",
            "[1]",
            r#"{"Version":"2","Statement":[{"Effect":"Deny","Action":"a","Resource":"*"}]}"#,
            r#"{"Statement":[]}"#,
            r#"{"Statement":[{"Effect":"Allow","Action":"a","Resource":"*"}]}"#,
            r#"{"Statement":[{"Effect":"Deny","Action":"a","NotAction":"b","Resource":"*"}]}"#,
            r#"{"Statement":[{"Effect":"Deny","Action":[],"Resource":"*"}]}"#,
            r#"{"Statement":[{"Effect":"Deny","Action":"a"}]}"#,
        ] {
            assert!(validate(bad).is_err(), "{bad} should be rejected");
        }
        let long = format!(
            r#"{{"Statement":[{{"Effect":"Deny","Action":"{}","Resource":"*"}}]}}"#,
            "a".repeat(600)
        );
        assert!(validate(&long).unwrap_err().contains("512"));
    }
}
