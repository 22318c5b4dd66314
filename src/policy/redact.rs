//! Tool arguments made fit to show a person or write to the audit log. This module owns the
//! masking rules ([`is_secret_key`], [`names_a_resource`]) and where they apply:
//!
//! - JSON arguments: values under secret-looking keys are `****`, at any depth;
//! - a CallCLI `command`: values after secret-looking flags, free-text values (quoted with
//!   spaces) and JSON values (see [`cli_command`]);
//! - a RunScript `script`: string literals bound to a secret-looking name (see [`script_text`]);
//! - long strings are cut, deep or wide values summarised.
//!
//! A key that names a resource (`SecretName`, `AccessKeyId`) is never masked: the person asked
//! to confirm a write must see what it targets.

use serde_json::{Map, Value};

/// Key fragments (case-insensitive) whose values are never shown.
pub const SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "passphrase",
    "secret",
    "token",
    "key",
    "credential",
    "signature",
    "authorization",
    "cookie",
    "userdata",
    "connectionstring",
];

/// Key endings that make a key the name, id or kind of a resource rather than a secret.
pub const RESOURCE_SUFFIXES: &[&str] = &["Name", "Id", "Ids", "Arn", "Type"];

/// Longest string value kept, in characters.
const MAX_STRING: usize = 512;
/// Deepest nesting kept; deeper values are summarised.
const MAX_DEPTH: usize = 8;
/// Most entries kept per object or array.
const MAX_ENTRIES: usize = 64;
/// What a masked value becomes.
const MASK: &str = "****";

/// Whether a key (argument name, CLI flag, Python name or dict key) holds a secret: it
/// contains one of [`SECRET_KEYS`] (case-insensitive) and does not name a resource
/// ([`names_a_resource`]). So `Password`, `SecurityToken`, `UserData`, `PrivateKey` are secret;
/// `SecretName`, `AccessKeyId`, `KeyPairName`, `TokenType` are not.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    SECRET_KEYS.iter().any(|s| k.contains(s)) && !names_a_resource(key)
}

/// Whether a key names a resource: it ends in one of [`RESOURCE_SUFFIXES`] as a word of its
/// own, i.e. the whole key (`Name`, `id`), after a separator (`secret_name`, `key-id`,
/// `Key.Arn`), or as a capitalised word after a lower-case letter or digit (`SecretName`,
/// `AccessKeyId`, `KeyID`, `Key2Ids`). Such a value identifies what a write acts on and is not
/// a secret (an AccessKey *id* is shown, its secret never is).
///
/// A run-together lower- or upper-case key (`secretname`, `SECRETNAME`) has no visible word
/// boundary and stays masked: when in doubt, the safe side.
pub fn names_a_resource(key: &str) -> bool {
    RESOURCE_SUFFIXES.iter().any(|suffix| {
        let Some(split) = key.len().checked_sub(suffix.len()) else {
            return false;
        };
        let (Some(head), Some(tail)) = (key.get(..split), key.get(split..)) else {
            return false;
        };
        if !tail.eq_ignore_ascii_case(suffix) {
            return false;
        }
        match head.chars().next_back() {
            None | Some('_' | '-' | '.') => true,
            Some(c) => {
                (c.is_ascii_lowercase() || c.is_ascii_digit())
                    && tail.starts_with(|t: char| t.is_ascii_uppercase())
            }
        }
    })
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
                let shown = match val {
                    Value::Null => Value::Null,
                    _ if is_secret_key(k) => Value::String(MASK.into()),
                    // CallCLI's `command` and RunScript's `script`.
                    Value::String(s) if k == "command" => Value::String(cut(&cli_command(s))),
                    Value::String(s) if k == "script" => Value::String(cut(&script_text(s))),
                    _ => redact(val, depth + 1),
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

/// Replacements `(start, end, text)` of byte ranges of a source, in order, not overlapping.
type Masks = Vec<(usize, usize, String)>;

/// `src` with each masked range replaced. Ranges always lie on character boundaries; one that
/// would not is skipped rather than panicking.
fn splice(src: &str, masks: &[(usize, usize, String)]) -> String {
    let mut out = String::with_capacity(src.len());
    let mut at = 0;
    for (start, end, text) in masks {
        let (Some(keep), true) = (src.get(at..*start), src.is_char_boundary(*end)) else {
            continue;
        };
        out.push_str(keep);
        out.push_str(text);
        at = *end;
    }
    out.push_str(src.get(at..).unwrap_or_default());
    out
}

// ---------------------------------------------------------------------------------------------
// CallCLI commands

/// One word of a command as a POSIX shell splits it: where it is in the command, and its
/// value (quotes removed, backslash escapes applied).
#[derive(Default)]
struct Word {
    start: usize,
    end: usize,
    value: String,
    /// Written with quotes (its mask keeps them, so the line still reads as quoted).
    quoted: bool,
}

/// The words of `command`, split as a POSIX shell would (single quotes literal, double quotes
/// with `\\`, `\"`, `` \` ``, `\$` escapes, a backslash outside quotes escaping the next
/// character); an unbalanced quote runs to the end. No expansion: only the spans matter here.
fn shell_words(command: &str) -> Vec<Word> {
    #[derive(PartialEq)]
    enum In {
        Gap,
        Bare,
        Single,
        Double,
    }
    let mut words = Vec::new();
    let mut state = In::Gap;
    let mut word = Word::default();
    let mut chars = command.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match state {
            In::Gap | In::Bare if c.is_ascii_whitespace() => {
                if state == In::Bare {
                    word.end = i;
                    words.push(std::mem::take(&mut word));
                    state = In::Gap;
                }
            }
            In::Gap | In::Bare => {
                if state == In::Gap {
                    word.start = i;
                    state = In::Bare;
                }
                match c {
                    '\'' => (state, word.quoted) = (In::Single, true),
                    '"' => (state, word.quoted) = (In::Double, true),
                    '\\' => {
                        word.quoted = true;
                        match chars.next() {
                            Some((_, '\n')) | None => {}
                            Some((_, n)) => word.value.push(n),
                        }
                    }
                    _ => word.value.push(c),
                }
            }
            In::Single => match c {
                '\'' => state = In::Bare,
                _ => word.value.push(c),
            },
            In::Double => match c {
                '"' => state = In::Bare,
                '\\' => match chars.peek().map(|&(_, n)| n) {
                    Some(n @ ('\\' | '"' | '`' | '$')) => {
                        chars.next();
                        word.value.push(n);
                    }
                    Some('\n') => {
                        chars.next();
                    }
                    _ => word.value.push('\\'),
                },
                _ => word.value.push(c),
            },
        }
    }
    if state != In::Gap {
        word.end = command.len();
        words.push(word);
    }
    words
}

/// Whether the value given to `--flag` is hidden: never when the flag names a resource
/// (`--SecretName my-db`, `--InstanceIds '["i-1"]'`: what a write targets stays visible);
/// always when the flag looks secret; otherwise when it is free text (it has spaces, so it was
/// quoted: `--Description 'my secret note'`) or JSON (`--Tags '[{…}]'`, `--Policy {…}`), where
/// secrets hide in ways a flag name does not tell.
fn hides_flag_value(flag: &str, value: &str) -> bool {
    if names_a_resource(flag) {
        return false;
    }
    is_secret_key(flag)
        || value.chars().any(char::is_whitespace)
        || value.trim_start().starts_with(['{', '['])
}

/// A CLI command with the values of some flags masked (see `hides_flag_value`), flag names
/// kept: `--Password x` → `--Password ****`, `--token=x` → `--token=****`, `--Description 'a
/// b'` → `--Description '****'`. The command is split into words as a shell would; the text
/// between words is kept as it was.
pub fn cli_command(command: &str) -> String {
    let mut masks: Masks = Vec::new();
    let mut flag: Option<String> = None;
    let quoted_mask = |quoted: bool| {
        if quoted {
            format!("'{MASK}'")
        } else {
            MASK.to_string()
        }
    };
    for w in shell_words(command) {
        let is_flag = w.value.starts_with('-') && w.value.len() > 1;
        if let Some(name) = flag.take() {
            if !is_flag {
                if hides_flag_value(&name, &w.value) {
                    masks.push((w.start, w.end, quoted_mask(w.quoted)));
                }
                continue;
            }
        }
        if !is_flag {
            continue;
        }
        let dashes = w.value.len() - w.value.trim_start_matches('-').len();
        let (lead, name) = w.value.split_at(dashes);
        match name.split_once('=') {
            Some((n, v)) if hides_flag_value(n, v) => {
                masks.push((
                    w.start,
                    w.end,
                    format!("{lead}{n}={}", quoted_mask(w.quoted)),
                ));
            }
            Some(_) => {}
            None => flag = Some(name.to_string()),
        }
    }
    splice(command, &masks)
}

mod script;
pub use script::script_text;

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
    fn a_value_that_also_occurs_in_other_words_is_still_masked() {
        // Found by the property below: `t v` is also inside `--Next v`.
        let shown = cli_command("aliyun ecs x --Description 't v' --Next v");
        assert!(shown.ends_with(" --Next v"), "{shown}");
        assert!(!shown.contains("'t v'"), "{shown}");
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

    #[test]
    fn resource_names_and_ids_stay_visible_secrets_do_not() {
        for visible in [
            "SecretName",
            "KeyPairName",
            "AccessKeyId",
            "KeyId",
            "KeyIds",
            "AccessKeyID",
            "SecretArn",
            "TokenType",
            "secret_name",
            "access_key_id",
            "key-id",
            "Secret.Name",
            "Key2Id",
            "InstanceId",
            "Name",
        ] {
            assert!(names_a_resource(visible), "{visible} names a resource");
            assert!(!is_secret_key(visible), "{visible} is shown");
        }
        for secret in [
            "Password",
            "password",
            "SecurityToken",
            "AccessKeySecret",
            "SecretValue",
            "UserData",
            "ConnectionString",
            "Passphrase",
            "PrivateKey",
            "ClientSecret",
            "secretname", // no word boundary: the safe side
            "SECRETNAME",
            "Tokenid",
            "KeyPairNames", // not the suffix `Name`
        ] {
            assert!(is_secret_key(secret), "{secret} is masked");
        }
        let r = arguments(&json!({
            "SecretName": "prod-db",
            "SecretValue": "hunter2",
            "KeyPairName": "kp-1",
            "AccessKeyId": "LTAI123",
            "SecurityToken": "sts-abc",
            "UserData": "IyEvYmluL3No",
            "ConnectionString": "mysql://u:p@h/db",
            "Passphrase": "open sesame",
        }));
        assert_eq!(r["SecretName"], "prod-db");
        assert_eq!(r["KeyPairName"], "kp-1");
        assert_eq!(r["AccessKeyId"], "LTAI123");
        for k in [
            "SecretValue",
            "SecurityToken",
            "UserData",
            "ConnectionString",
            "Passphrase",
        ] {
            assert_eq!(r[k], "****", "{k}");
        }
    }

    #[test]
    fn cli_free_text_and_json_values_are_masked_names_kept() {
        let cases = [
            (
                "aliyun kms create-secret --SecretName my-db --SecretData 'p w' --Description 'my secret note'",
                "aliyun kms create-secret --SecretName my-db --SecretData '****' --Description '****'",
            ),
            (
                r#"aliyun ecs run --Tag '[{"Key":"a","Value":"b"}]' --Policy {"x":1} --Ids [1,2] --Extra="a b""#,
                r#"aliyun ecs run --Tag '****' --Policy '****' --Ids [1,2] --Extra='****'"#,
            ),
            (
                r#"aliyun ecs delete-instances --InstanceIds '["i-1", "i-2"]' --InstanceName 'web 1' --Force"#,
                r#"aliyun ecs delete-instances --InstanceIds '["i-1", "i-2"]' --InstanceName 'web 1' --Force"#,
            ),
            (
                "aliyun ram x --AccessKeyId LTAI1 --SecurityToken=abc  --Name  n",
                "aliyun ram x --AccessKeyId LTAI1 --SecurityToken=****  --Name  n",
            ),
            (
                r#"aliyun x y --Password "a \"b\" c" --Note plain"#,
                r#"aliyun x y --Password '****' --Note plain"#,
            ),
            ("aliyun x y --Note my\\ note", "aliyun x y --Note '****'"),
            (
                "aliyun x y --Description 'never closed",
                "aliyun x y --Description '****'",
            ),
            ("aliyun x y --Token", "aliyun x y --Token"),
            ("aliyun x y --Body [1,2]", "aliyun x y --Body ****"),
            ("", ""),
        ];
        for (command, want) in cases {
            assert_eq!(cli_command(command), want, "{command}");
        }
    }

    /// Odd input never panics.
    #[test]
    fn odd_inputs_never_panic() {
        let odd = [
            "",
            "'",
            "\"",
            "'''",
            "\"\"\"",
            "\\",
            "#",
            "#'",
            "=",
            "=''",
            "a=",
            "a='",
            "r'",
            "password=",
            "password=(",
            "password=((((('",
            "]='x'",
            "['a']='b'",
            ":'x'",
            "'x' 'y'",
            "+'x'",
            "é",
            "password='é\\",
            "\u{0}'\u{0}'",
            "'\\\n'",
            "a\\\n='b'",
            "--",
            "-",
            "--=",
            "--Password=",
            "--Password",
            "'--Password=a b'",
            "\"\\",
            "a\\",
            "--x '",
            "--x \"\\",
        ];
        for s in odd {
            let _ = script_text(s);
            let _ = cli_command(s);
            let _ = arguments(&json!({"script": s, "command": s}));
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

        #[test]
        fn any_text_is_masked_without_panicking(s in "\\PC{0,200}") {
            let _ = script_text(&s);
            let _ = cli_command(&s);
        }

        #[test]
        fn python_like_text_never_panics(s in "[a-zA-Z_ =:'\"#\\\\()\\[\\]{},+\\né-]{0,120}") {
            let _ = script_text(&s);
            let _ = cli_command(&s);
        }

        /// A secret assigned anywhere in otherwise quote-free code is always masked.
        #[test]
        fn an_assigned_secret_never_shows(
            before in "[^'\"\\n]{0,60}",
            after in "[^'\"]{0,60}",
            key in proptest::sample::select(vec!["Password", "AccessKeySecret", "token", "UserData"]),
            op in proptest::sample::select(vec!["=", " = ", ": ", "=="]),
            quote in proptest::sample::select(vec!["'", "\"", "'''", "r'", "b\""]),
            secret in "[A-Za-z0-9 ]{0,20}",
        ) {
            let canary = format!("zqx{secret}qxz");
            let close = quote.trim_start_matches(['r', 'b']);
            let script = format!("{before}\n{key}{op}{quote}{canary}{close}\n{after}");
            let shown = script_text(&script);
            proptest::prop_assert!(!shown.contains(&canary), "{:?} -> {:?}", script, shown);
        }

        /// A quoted value with spaces after any flag never shows in a command, unless the flag
        /// names a resource.
        #[test]
        fn a_free_text_value_never_shows(
            flag in "[A-Za-z]{1,12}",
            words in proptest::collection::vec("[a-z0-9]{1,6}", 2..5),
            quote in proptest::sample::select(vec!["'", "\""]),
        ) {
            let value = words.join(" ");
            let command = format!("aliyun ecs x --{flag} {quote}{value}{quote} --Next v");
            let shown = cli_command(&command);
            if names_a_resource(&flag) {
                proptest::prop_assert_eq!(shown, command);
            } else {
                // Only the flag's own value is looked at: the fixed words around it (`--Next v`)
                // may contain what the generator picked for the value.
                let (_, after) = shown.split_once(&format!("--{flag} ")).unwrap_or(("", ""));
                proptest::prop_assert!(!after.is_empty(), "{}", shown);
                let masked = after.strip_suffix(" --Next v").unwrap_or(after);
                proptest::prop_assert!(!masked.contains(&value), "{} -> {}", command, shown);
            }
        }
    }
}
