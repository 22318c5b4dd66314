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
