//! Tool arguments made fit to show a person or write to the audit log: values under keys that
//! look secret are `****`, values after secret-looking flags of a CLI command too, and long
//! strings are cut.

use serde_json::{Map, Value};

/// Key fragments (case-insensitive) whose values are never shown.
pub const SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "key",
    "credential",
    "signature",
    "authorization",
    "cookie",
];

/// Longest string value kept, in characters.
const MAX_STRING: usize = 512;
/// Deepest nesting kept; deeper values are summarised.
const MAX_DEPTH: usize = 8;
/// Most entries kept per object or array.
const MAX_ENTRIES: usize = 64;

/// Whether a key (argument name or CLI flag) looks like it holds a secret.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    SECRET_KEYS.iter().any(|s| k.contains(s))
}

/// A copy of `v` with secret-looking values masked and sizes bounded.
pub fn arguments(v: &Value) -> Value {
    redact(v, 0)
}

/// A call's arguments redacted for the audit log; `null` when the call has none.
pub fn call_arguments(args: Option<&Value>) -> Value {
    args.map(arguments).unwrap_or(Value::Null)
}

fn redact(v: &Value, depth: usize) -> Value {
    match v {
        Value::Object(m) => {
            if depth >= MAX_DEPTH {
                return Value::String(format!("(object of {} keys)", m.len()));
            }
            let mut out = Map::new();
            for (k, val) in m.iter().take(MAX_ENTRIES) {
                let shown = if is_secret_key(k) && !val.is_null() {
                    Value::String("****".into())
                } else if k == "command" && val.is_string() {
                    Value::String(cut(&cli_command(val.as_str().unwrap_or_default())))
                } else {
                    redact(val, depth + 1)
                };
                out.insert(k.clone(), shown);
            }
            if m.len() > MAX_ENTRIES {
                out.insert(
                    "…".into(),
                    Value::String(format!("{} more", m.len() - MAX_ENTRIES)),
                );
            }
            Value::Object(out)
        }
        Value::Array(a) => {
            if depth >= MAX_DEPTH {
                return Value::String(format!("(array of {})", a.len()));
            }
            let mut out: Vec<Value> = a
                .iter()
                .take(MAX_ENTRIES)
                .map(|x| redact(x, depth + 1))
                .collect();
            if a.len() > MAX_ENTRIES {
                out.push(Value::String(format!("… {} more", a.len() - MAX_ENTRIES)));
            }
            Value::Array(out)
        }
        Value::String(s) => Value::String(cut(s)),
        other => other.clone(),
    }
}

/// `s`, cut to 512 characters (`MAX_STRING`) with a note of the full length.
pub fn cut(s: &str) -> String {
    if s.chars().count() <= MAX_STRING {
        return s.to_string();
    }
    let head: String = s.chars().take(MAX_STRING).collect();
    format!("{head}… ({} bytes)", s.len())
}

/// A CLI command with the values of secret-looking flags (`--Password x`, `--token=x`) masked.
pub fn cli_command(command: &str) -> String {
    let mut out = Vec::new();
    let mut mask_next = false;
    for t in command.split_whitespace() {
        if std::mem::take(&mut mask_next) && !t.starts_with('-') {
            out.push("****".to_string());
            continue;
        }
        if let Some(flag) = t.strip_prefix('-') {
            let flag = flag.trim_start_matches('-');
            match flag.split_once('=') {
                Some((name, _)) if is_secret_key(name) => {
                    out.push(format!("{}=****", &t[..t.len() - flag.len() + name.len()]));
                    continue;
                }
                None if is_secret_key(flag) => mask_next = true,
                _ => {}
            }
        }
        out.push(t.to_string());
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_looking_keys_are_masked_at_any_depth() {
        let v = json!({
            "InstanceId": "i-1",
            "Password": "hunter2",
            "nested": {"AccessKeySecret": "s", "list": [{"SecurityToken": "t", "Name": "n"}]},
            "Tag": [{"Key": "env", "Value": "prod"}],
            "maybe": null,
        });
        let r = arguments(&v);
        assert_eq!(r["InstanceId"], "i-1");
        assert_eq!(r["Password"], "****");
        assert_eq!(r["nested"]["AccessKeySecret"], "****");
        assert_eq!(r["nested"]["list"][0]["SecurityToken"], "****");
        assert_eq!(r["nested"]["list"][0]["Name"], "n");
        assert_eq!(
            r["Tag"][0]["Key"], "****",
            "over-masking a tag key is the safe side"
        );
        assert!(r["maybe"].is_null());
        assert!(!r.to_string().contains("hunter2"));
    }

    #[test]
    fn cli_flags_and_sizes() {
        assert_eq!(
            cli_command("aliyun ecs reset-password --InstanceId i-1 --Password hunter2 --x y"),
            "aliyun ecs reset-password --InstanceId i-1 --Password **** --x y"
        );
        assert_eq!(
            cli_command("aliyun ram x --AccessKeySecret=abc --Name=n"),
            "aliyun ram x --AccessKeySecret=**** --Name=n"
        );
        let r = arguments(&json!({"command": "aliyun x y --Token t"}));
        assert_eq!(r["command"], "aliyun x y --Token ****");
        let long = "x".repeat(10_000);
        let r = arguments(&json!({"script": long}));
        assert!(r["script"].as_str().unwrap().len() < 600);
        let deep = (0..100).fold(json!(1), |acc, _| json!([acc]));
        assert!(arguments(&deep).to_string().len() < 200);
        let wide: Vec<u32> = (0..1000).collect();
        assert!(arguments(&json!(wide)).as_array().unwrap().len() <= MAX_ENTRIES + 1);
    }
}
