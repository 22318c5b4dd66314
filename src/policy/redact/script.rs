//! RunScript scripts (Python) with the string literals bound to secret-looking names masked:
//! a small tokenizer, not a parser, that never fails and never panics.

use super::{is_secret_key, splice, Masks, MASK};

/// A RunScript script (Python) with the string literals bound to a secret-looking name
/// ([`is_secret_key`]) replaced by `****`, quotes and prefix kept:
///
/// - assignments and keyword arguments: `password = "x"`, `Password='x'`, `cfg.token = 'x'`,
///   `pwd: str = 'x'`, `key := 'x'`;
/// - dict entries and subscripts: `{"AccessKeySecret": "x"}`, `env['DB_PASSWORD'] = 'x'`;
/// - comparisons with a literal: `if token == 'x'`;
/// - what continues such a literal: `("a" "b")`, `'a' + 'b'`.
///
/// The script is split into Python tokens (strings with their prefixes, triple quotes and
/// escapes; names; operators; comments, whose text is read the same way since commented-out
/// code leaks as well). It is not a full parser: a value computed at run time (`getenv(…)`) is
/// not a literal and has nothing to mask, and Python 3.12 f-strings that nest the same quote
/// are read as several strings. Never fails: odd input masks less or more, never panics.
pub fn script_text(script: &str) -> String {
    let mut masks: Masks = Vec::new();
    python_masks(script, 0, script.len(), false, &mut masks);
    splice(script, &masks)
}

/// One Python token, as byte ranges of the script.
#[derive(Clone, Copy)]
enum Tok {
    Name(usize, usize),
    Str(Literal),
    Op(usize, usize),
}

/// A string literal: `start..open` is the prefix and opening quote, `open..body` the
/// contents, `body..end` the closing quote (empty when unterminated).
#[derive(Clone, Copy)]
struct Literal {
    start: usize,
    open: usize,
    body: usize,
    end: usize,
    masked: bool,
}

/// Operators after which a literal is the value bound to the name before them.
const BINDING_OPS: &[&str] = &["=", ":", ":=", "==", "!=", "+="];

/// Tokenizes `src[from..to]` and pushes the masks of the secret literals in it; a comment's
/// text is read the same way (`in_comment`: then `#` is an ordinary character, so this
/// recurses at most once).
fn python_masks(src: &str, from: usize, to: usize, in_comment: bool, masks: &mut Masks) {
    let b = src.as_bytes();
    let to = to.min(b.len());
    let is_name = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80;
    let mut toks: Vec<Tok> = Vec::new();
    let mut i = from;
    while i < to {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\r' | b'\n' | b'\x0c' | b'\\' => i += 1,
            b'#' if !in_comment => {
                let end = b[i..to]
                    .iter()
                    .position(|&x| x == b'\n')
                    .map_or(to, |p| i + p);
                python_masks(src, i + 1, end, true, masks);
                i = end;
            }
            b'\'' | b'"' => {
                let lit = python_literal(b, i, i, to);
                i = lit.end;
                push_literal(src, &mut toks, lit, masks);
            }
            _ if is_name(c) => {
                let end = b[i..to]
                    .iter()
                    .position(|&x| !is_name(x))
                    .map_or(to, |p| i + p);
                let prefix = src.get(i..end).unwrap_or_default().to_ascii_lowercase();
                if end < to
                    && matches!(b[end], b'\'' | b'"')
                    && ["r", "u", "b", "f", "t", "br", "rb", "fr", "rf", "tr", "rt"]
                        .contains(&prefix.as_str())
                {
                    let lit = python_literal(b, i, end, to);
                    i = lit.end;
                    push_literal(src, &mut toks, lit, masks);
                } else {
                    toks.push(Tok::Name(i, end));
                    i = end;
                }
            }
            _ => {
                let two = i + 1 < to && b[i + 1] == b'=' && b"=!<>:+-*/%&|^@".contains(&c);
                let end = if two { i + 2 } else { i + 1 };
                toks.push(Tok::Op(i, end));
                i = end;
            }
        }
    }
}

/// The literal whose prefix starts at `start` and whose quote is at `quote`. A backslash
/// escapes the next byte (in raw strings too, as far as ending the string goes); a one-quote
/// string ends at the line's end if it is not closed, a triple-quoted one at `to`.
fn python_literal(b: &[u8], start: usize, quote: usize, to: usize) -> Literal {
    let q = b[quote];
    let triple = quote + 2 < to && b[quote + 1] == q && b[quote + 2] == q;
    let open = quote + if triple { 3 } else { 1 };
    let mut j = open;
    let (body, end) = loop {
        if j >= to {
            break (to, to);
        }
        match b[j] {
            b'\\' => j = (j + 2).min(to),
            c if triple && c == q && j + 2 < to && b[j + 1] == q && b[j + 2] == q => {
                break (j, j + 3)
            }
            c if !triple && c == q => break (j, j + 1),
            b'\n' if !triple => break (j, j),
            _ => j += 1,
        }
    };
    Literal {
        start,
        open,
        body,
        end,
        masked: false,
    }
}

/// Records `lit` and, when it is bound to a secret-looking name (see [`script_text`]), its mask.
fn push_literal(src: &str, toks: &mut Vec<Tok>, mut lit: Literal, masks: &mut Masks) {
    let text = |a: usize, b: usize| src.get(a..b).unwrap_or_default();
    // Opening parentheses between the operator and the literal: `Password=("x")`.
    let mut k = toks.len();
    while k > 0 && matches!(toks[k - 1], Tok::Op(a, b) if text(a, b) == "(") {
        k -= 1;
    }
    let tok = |n: usize| k.checked_sub(n).map(|at| toks[at]);
    let op = |n: usize| match tok(n) {
        Some(Tok::Op(a, b)) => Some(text(a, b)),
        _ => None,
    };
    let continues_masked = match (tok(1), tok(2)) {
        (Some(Tok::Str(prev)), _) => prev.masked,
        (Some(Tok::Op(a, b)), Some(Tok::Str(prev))) => text(a, b) == "+" && prev.masked,
        _ => false,
    };
    let bound_to_secret = op(1).is_some_and(|o| BINDING_OPS.contains(&o)) && {
        // The key: a name (`password =`), a literal (`"Password":`), a subscript
        // (`env["PASSWORD"] =`), or an annotated name (`password: str =`).
        let mut keys: Vec<&str> = Vec::new();
        match tok(2) {
            Some(Tok::Name(a, b)) => {
                keys.push(text(a, b));
                if let (Some(":"), Some(Tok::Name(a, b))) = (op(3), tok(4)) {
                    keys.push(text(a, b));
                }
            }
            Some(Tok::Str(key)) => keys.push(text(key.open, key.body)),
            Some(Tok::Op(a, b)) if text(a, b) == "]" => {
                if let (Some(Tok::Str(key)), Some("[")) = (tok(3), op(4)) {
                    keys.push(text(key.open, key.body));
                }
            }
            _ => {}
        }
        keys.into_iter().any(is_secret_key)
    };
    if continues_masked || bound_to_secret {
        lit.masked = true;
        let close = text(lit.body, lit.end);
        masks.push((
            lit.start,
            lit.end,
            format!("{}{MASK}{close}", text(lit.start, lit.open)),
        ));
    }
    toks.push(Tok::Str(lit));
}

#[cfg(test)]
mod tests {
    use super::super::arguments;
    use super::*;
    use serde_json::json;

    /// The canary is the secret of every case; what must stay visible is checked too.
    #[test]
    fn script_literals_bound_to_secrets_are_masked() {
        const C: &str = "CANARY-7f3a";
        let cases = [
            format!("password = '{C}'"),
            format!("Password='{C}'"),
            format!(
                "call_cli(product='Ecs', action='ResetPassword', params={{'Password': \"{C}\"}})"
            ),
            format!("params = {{\"AccessKeySecret\": \"{C}\", \"SecretName\": \"keep-me\"}}"),
            format!("cfg.token = r'{C}'"),
            format!("env['DB_PASSWORD'] = b\"{C}\""),
            format!("pwd: str = '{C}'"),
            format!("if (key := '{C}'): pass"),
            format!("if token == '{C}': pass"),
            format!("UserData = '''#!/bin/sh\necho {C}\n'''"),
            format!("ConnectionString = (\"mysql://u:\"\n    \"{C}@h/db\")"),
            format!("Passphrase = 'open ' + '{C}'"),
            format!("SecretValue = f\"{{x}}-{C}\""),
            format!("# old: password = '{C}'\nresult = 1"),
            format!("password = '{C}"), // unterminated
            format!("password = \"\"\"{C}"),
            format!("secret = 'a\\'{C}'"),
            format!("Passwörd = 1; token = 'é{C}'"),
        ];
        for script in &cases {
            let shown = script_text(script);
            assert!(!shown.contains(C), "{script:?} -> {shown:?}");
            assert!(shown.contains("****"), "{script:?} -> {shown:?}");
        }
        let shown = script_text(&cases[3]);
        assert!(shown.contains("\"SecretName\": \"keep-me\""), "{shown}");
        let shown = script_text(&cases[2]);
        assert!(shown.contains("action='ResetPassword'"), "{shown}");
        assert_eq!(
            script_text("password = 'x'\nname = 'web'"),
            "password = '****'\nname = 'web'"
        );
        for visible in [
            "SecretName = 'prod-db'",
            "d = {'KeyPairName': 'kp-1', 'AccessKeyId': 'LTAI1'}",
            "result = call_cli(product='Kms', action='GetSecretValue', params={'SecretName': 'db'})",
            "print('password')",
            "x = 'token'",
        ] {
            assert_eq!(script_text(visible), visible);
        }
        let r = arguments(&json!({"script": format!("Password = '{C}'")}));
        assert_eq!(r["script"], "Password = '****'");
    }
}
