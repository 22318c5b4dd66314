//! Reading a CallCLI command as the server's shell-like splitter would, and only then deciding
//! which API it runs. A command is *readable* when, split into words as a POSIX shell splits
//! them, it is exactly
//!
//! ```text
//! aliyun <product> <Api> [--Flag value | --flag=value | --valueless-flag]…
//! ```
//!
//! (`oss`/`ossutil` commands may also name `oss://…` objects after their sub-command). Anything
//! the shell would treat specially outside single quotes — `\`, `$`, a backtick, `; & | < > ( )`,
//! glob characters, `#`, `~`, `{ }`, `!` — any control character (a tab or a newline included),
//! an unbalanced quote, a flag before the product, a word after the API that is not a flag or a
//! flag's value: all make the command unreadable, and an unreadable command is a write.
//!
//! Quoted values are ordinary values: `--InstanceIds '["i-1"]'` and `--Name "web 1"` read fine.

/// Flags of the `aliyun` CLI that take no value; every other `--flag` takes the next word.
pub const VALUELESS_FLAGS: &[&str] = &[
    "--dryrun",
    "--quiet",
    "--insecure",
    "--force",
    "--secure",
    "--estimate-cost",
    "--help",
];

/// Why a command could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    #[error("holds {0:?}, which a shell would not take literally")]
    Special(char),
    #[error("holds a control character")]
    Control,
    #[error("has an unbalanced quote")]
    Unbalanced,
    #[error("does not start with `aliyun`")]
    NotAliyun,
    #[error("names no product and API")]
    Short,
    #[error("has a flag before the API")]
    EarlyFlag,
    #[error("runs the CLI's own `{0}` command")]
    Meta(String),
    #[error("has {0:.40} where the product or API should be")]
    BadWord(String),
    #[error("has {0:.40} after the API, which is neither a flag nor a flag's value")]
    Trailing(String),
    #[error("ends with the flag {0:.40}, which takes a value")]
    MissingValue(String),
}

/// CLI "products" that are not APIs (they change the executor itself).
const CLI_META: &[&str] = &["configure", "plugin", "upgrade", "mock", "auto-completion"];

/// A command that reads as one API call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Lower-case product code (`ecs`).
    pub product: String,
    /// The API word as written (`describe-instances`, `DescribeInstances`, `ls`).
    pub api: String,
    /// `(flag, value)` pairs, flags with their dashes; `None` for value-less flags.
    pub flags: Vec<(String, Option<String>)>,
    /// `oss://…` operands of an `oss` sub-command.
    pub operands: Vec<String>,
}

impl Command {
    /// The value of `--flag` (case-insensitive), if given.
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .find(|(f, _)| f.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_deref())
    }

    /// Whether the product is OSS's file-style CLI (`ls`, `cp`, …), not an API product.
    pub fn is_oss(&self) -> bool {
        matches!(self.product.as_str(), "oss" | "ossutil" | "ossutil64")
    }
}

/// Splits `command` into words as a POSIX shell would, refusing everything the shell would
/// expand or interpret rather than take literally.
pub fn split(command: &str) -> Result<Vec<String>, Unreadable> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) if c.is_control() => return Err(Unreadable::Control),
                        Some(c) => word.push(c),
                        None => return Err(Unreadable::Unbalanced),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some(c @ ('$' | '`' | '\\' | '!')) => return Err(Unreadable::Special(c)),
                        Some(c) if c.is_control() => return Err(Unreadable::Control),
                        Some(c) => word.push(c),
                        None => return Err(Unreadable::Unbalanced),
                    }
                }
            }
            c if c.is_control() => return Err(Unreadable::Control),
            '\\' | '$' | '`' | ';' | '&' | '|' | '<' | '>' | '(' | ')' | '*' | '?' | '[' | ']'
            | '#' | '~' | '{' | '}' | '!' => return Err(Unreadable::Special(c)),
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Reads `command` as one API call (see the module doc).
pub fn parse(command: &str) -> Result<Command, Unreadable> {
    let words = split(command)?;
    let mut it = words.into_iter();
    if it.next().as_deref() != Some("aliyun") {
        return Err(Unreadable::NotAliyun);
    }
    let product = it.next().ok_or(Unreadable::Short)?;
    let api = it.next().ok_or(Unreadable::Short)?;
    for w in [&product, &api] {
        if w.starts_with('-') {
            return Err(Unreadable::EarlyFlag);
        }
    }
    let product = product.to_ascii_lowercase();
    if CLI_META.contains(&product.as_str()) {
        return Err(Unreadable::Meta(product));
    }
    let word_ok = |w: &str| {
        w.as_bytes()[0].is_ascii_alphabetic()
            && w.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if !word_ok(&product) {
        return Err(Unreadable::BadWord(product));
    }
    if !word_ok(&api) {
        return Err(Unreadable::BadWord(api));
    }
    let mut cmd = Command {
        product,
        api,
        flags: Vec::new(),
        operands: Vec::new(),
    };
    while let Some(w) = it.next() {
        if let Some(body) = w.strip_prefix("--").filter(|b| !b.is_empty()) {
            if let Some((name, value)) = body.split_once('=') {
                cmd.flags
                    .push((format!("--{name}"), Some(value.to_string())));
            } else if VALUELESS_FLAGS.iter().any(|f| f.eq_ignore_ascii_case(&w)) {
                cmd.flags.push((w, None));
            } else {
                let value = it
                    .next()
                    .ok_or_else(|| Unreadable::MissingValue(w.clone()))?;
                cmd.flags.push((w, Some(value)));
            }
        } else if cmd.is_oss() && w.starts_with("oss://") && cmd.flags.is_empty() {
            cmd.operands.push(w);
        } else {
            return Err(Unreadable::Trailing(w));
        }
    }
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn everyday_reads_parse() {
        let c = parse(r#"aliyun ecs describe-instances --RegionId cn-hangzhou --InstanceIds '["i-1","i-2"]' --PageSize=50"#).unwrap();
        assert_eq!(
            (c.product.as_str(), c.api.as_str()),
            ("ecs", "describe-instances")
        );
        assert_eq!(c.flag("--instanceids"), Some(r#"["i-1","i-2"]"#));
        assert_eq!(c.flag("--PageSize"), Some("50"));
        let c = parse(r#"aliyun ECS DescribeRegions --Name "web 1" --dryrun"#).unwrap();
        assert_eq!(c.product, "ecs");
        assert_eq!(c.flag("--Name"), Some("web 1"));
        assert_eq!(c.flags[1], ("--dryrun".to_string(), None));
        let c = parse("aliyun oss ls oss://bucket/dir/").unwrap();
        assert_eq!(c.operands, ["oss://bucket/dir/"]);
    }

    #[test]
    fn anything_a_shell_would_interpret_is_unreadable() {
        for bad in [
            "aliyun ecs describe-instances; aliyun ecs delete-instance",
            "aliyun ecs describe-instances && x",
            "aliyun ecs describe-instances | sh",
            "aliyun ecs describe-instances > /tmp/x",
            "aliyun ecs describe-instances $(x)",
            "aliyun ecs describe-instances `x`",
            "aliyun ecs describe\\-instances",
            "aliyun ecs describe-instances\naliyun ecs delete-instance",
            "aliyun ecs describe-instances\t--x y",
            "aliyun ecs describe-instances --Name 'a",
            "aliyun ecs describe-instances --Name \"$HOME\"",
            "aliyun ecs describe-instances --Ids [i-1]",
            "aliyun ecs describe-instances --Name a*",
            "aliyun ecs describe-instances #comment",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_grammar_is_exact() {
        for (bad, want) in [
            (
                "aliyun --insecure ecs delete-instance describe-instances",
                Unreadable::EarlyFlag,
            ),
            (
                "aliyun ecs describe-instances delete-instance",
                Unreadable::Trailing("delete-instance".into()),
            ),
            (
                "aliyun ecs describe-instances --InstanceId i-1 extra",
                Unreadable::Trailing("extra".into()),
            ),
            (
                "aliyun ecs describe-instances --RegionId",
                Unreadable::MissingValue("--RegionId".into()),
            ),
            (
                "aliyun configure set --x y",
                Unreadable::Meta("configure".into()),
            ),
            ("aws ec2 describe-instances", Unreadable::NotAliyun),
            ("aliyun ecs", Unreadable::Short),
            (
                "aliyun ecs 'describe instances'",
                Unreadable::BadWord("describe instances".into()),
            ),
            ("aliyun ecs -x describe-instances", Unreadable::EarlyFlag),
            (
                "aliyun oss ls --x y oss://b",
                Unreadable::Trailing("oss://b".into()),
            ),
        ] {
            assert_eq!(parse(bad).unwrap_err(), want, "{bad}");
        }
        // Quotes around a word are honoured the way the shell honours them.
        let c = parse(r#"aliyun ecs "delete-instance" --InstanceId i-1"#).unwrap();
        assert_eq!(c.api, "delete-instance");
        let c = parse("aliyun 'ecs' desc'ribe-inst'ances").unwrap();
        assert_eq!(c.api, "describe-instances");
    }

    /// A reference splitter with the shell's rules for the characters the generator uses.
    fn shell_words(s: &str) -> Option<Vec<String>> {
        let mut out = Vec::new();
        let (mut w, mut in_w, mut q) = (String::new(), false, None::<char>);
        for c in s.chars() {
            match (q, c) {
                (Some(open), c) if c == open => q = None,
                (Some(_), c) => w.push(c),
                (None, '\'' | '"') => {
                    q = Some(c);
                    in_w = true
                }
                (None, ' ') => {
                    if in_w {
                        out.push(std::mem::take(&mut w));
                        in_w = false;
                    }
                }
                (None, c) => {
                    w.push(c);
                    in_w = true
                }
            }
        }
        if q.is_some() {
            return None;
        }
        if in_w {
            out.push(w);
        }
        Some(out)
    }

    proptest! {
        /// For generated commands, the product and API alibridge reads are the shell's words 1
        /// and 2, or the command is unreadable (and so a write).
        #[test]
        fn the_reading_agrees_with_the_shell(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("aliyun".to_string()), Just("ecs".to_string()),
                    Just("describe-instances".to_string()), Just("delete-instance".to_string()),
                    Just("--RegionId".to_string()), Just("--dryrun".to_string()),
                    Just("--insecure".to_string()), Just("cn-hangzhou".to_string()),
                    Just("'".to_string()), Just("\"".to_string()), Just(" ".to_string()),
                    Just("\\".to_string()), Just(";".to_string()), Just("=".to_string()),
                    Just("\n".to_string()), Just("$x".to_string()),
                ],
                0..14,
            )
        ) {
            let command = parts.concat();
            if let Ok(c) = parse(&command) {
                let words = shell_words(&command).expect("readable commands are balanced");
                prop_assert_eq!(words[0].as_str(), "aliyun");
                prop_assert_eq!(&words[1].to_ascii_lowercase(), &c.product);
                prop_assert_eq!(&words[2], &c.api);
            }
        }
    }
}
