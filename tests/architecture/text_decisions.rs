//! No code branches on the text of a message: decisions are made on data (an enum, a code
//! field), never on what a message happens to say.

use super::{code_only, is_ident, src_files};

/// Names that hold the text of a message (an error's, a log line, another program's output):
/// code that branches on what such a value *says* breaks when the wording changes, so
/// decisions are made on data (an enum, a code field) instead.
const MESSAGE_NAMES: &[&str] = &[
    "msg",
    "message",
    "line",
    "l",
    "err",
    "e",
    "text",
    "stderr",
    "stdout",
    "detail",
    "reason",
    "why",
    "description",
    "auth",
    "hint",
    "summary",
];

/// Files that parse text as their job, with what they parse: a match there is grammar, not a
/// decision on a message.
const PARSERS: &[(&str, &str)] = &[
    (
        "clients/jsonc.rs",
        "JSON with comments: the file's own line endings",
    ),
    (
        "auth/access_key/profile.rs",
        "the INI grammar of the aliyun CLI's credentials file (comment lines)",
    ),
    (
        "policy/messages.rs",
        "a tools/call's JSON arguments object, spliced without re-serialising",
    ),
];

/// Every place in `code` (literals already blanked, so `x.contains("…")` reads `x.contains()`)
/// where a string comparison (`starts_with`, `ends_with`, `contains`, `==`) against a literal
/// is made on a message-named value or on an error's `to_string()`.
fn text_decisions(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (n, line) in code.lines().enumerate() {
        for probe in [".starts_with()", ".ends_with()", ".contains()"] {
            let mut from = 0;
            while let Some(at) = line[from..].find(probe).map(|p| p + from) {
                if decides_on_text(&line[..at]) {
                    found.push(format!("{}: {}", n + 1, line.trim()));
                }
                from = at + probe.len();
            }
        }
        let mut from = 0;
        while let Some(at) = line[from..].find("==").map(|p| p + from) {
            let after = line[at + 2..].trim_start();
            // `x == "literal"` reads `x == ` followed by what came after the literal.
            let literal = after.is_empty() || after.starts_with([')', '{', '|', '&', ';', ',']);
            if literal && decides_on_text(line[..at].trim_end()) {
                found.push(format!("{}: {}", n + 1, line.trim()));
            }
            from = at + 2;
        }
    }
    found
}

/// Whether the expression ending `before` is a message-named value, or an error turned into
/// text, possibly through `.trim()`-like calls.
fn decides_on_text(before: &str) -> bool {
    let mut rest = before;
    let mut via_to_string = false;
    // Peel `.method()` calls off the end: `msg.trim().to_lowercase()` → `msg`.
    while let Some(stripped) = rest.strip_suffix("()") {
        let dot = stripped.rfind('.').unwrap_or(0);
        let method = &stripped[dot + 1..];
        if dot == 0 || !method.bytes().all(is_ident) {
            break;
        }
        via_to_string |= method == "to_string";
        rest = &stripped[..dot];
    }
    let start = rest
        .bytes()
        .rposition(|c| !is_ident(c))
        .map_or(0, |p| p + 1);
    let name = &rest[start..];
    let field = rest[..start].ends_with('.');
    via_to_string || (!field && MESSAGE_NAMES.contains(&name))
}

/// A unit-test module kept in a file of its own (`#[cfg(test)] mod tests;` → `tests.rs`,
/// `limit_tests.rs`): tests check messages' text, which is what they are for, as the inline
/// `#[cfg(test)] mod tests { … }` blanked by [`code_only`] do.
fn is_test_module_file(file: &std::path::Path) -> bool {
    let Some(stem) = file.file_stem().and_then(|s| s.to_str()) else {
        return false;
    };
    let Some(dir) = file.parent() else {
        return false;
    };
    // The parent module: `dir/mod.rs`, or `dir.rs` beside the directory.
    let parents = [dir.join("mod.rs"), dir.with_extension("rs")];
    let declaration = format!("mod {stem};");
    parents.iter().any(|parent| {
        let text = std::fs::read_to_string(parent).unwrap_or_default();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        lines
            .windows(2)
            .any(|w| w[0].starts_with("#[cfg(test)]") && w[1] == declaration)
    })
}

#[test]
fn no_decision_on_the_text_of_a_message() {
    let (src, files) = src_files();
    let mut violations = Vec::new();
    for file in &files {
        let rel = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if PARSERS.iter().any(|(p, _)| *p == rel) || is_test_module_file(file) {
            continue;
        }
        let found = text_decisions(&code_only(&std::fs::read_to_string(file).unwrap()));
        for f in found {
            violations.push(format!("{rel}:{f}"));
        }
    }
    assert!(
        violations.is_empty(),
        "branches on the text of a message (decide on data: an enum, a code field):\n  {}",
        violations.join("\n  ")
    );
}

#[test]
fn the_text_decision_scan_sees_what_it_should() {
    let scan = |s: &str| text_decisions(&code_only(s));
    assert_eq!(scan("if msg.starts_with(\"OAuth\") {}\n").len(), 1);
    assert_eq!(scan("if auth.contains(\", site INTL \") {}\n").len(), 1);
    assert_eq!(scan("let b = e.to_string().contains(\"x\");\n").len(), 1);
    assert_eq!(scan("if line.trim() == \"ok\" {}\n").len(), 1);
    assert_eq!(
        scan("if kind == \"auth\" {}\n").len(),
        0,
        "not a message name"
    );
    assert_eq!(
        scan("if self.line.contains(\"x\") {}\n").len(),
        0,
        "a field"
    );
    assert_eq!(scan("if msg == other {}\n").len(), 0, "not a literal");
    assert_eq!(
        scan("#[cfg(test)]\nmod tests {\n fn t() { assert!(msg.contains(\"x\")); }\n}\n").len(),
        0,
        "tests may look at messages"
    );
}
