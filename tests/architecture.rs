//! The crate's module graph points one way. This test reads every `crate::…` path (and every
//! `super::` chain that climbs to the crate root, and every group such as `crate::{auth, net}`)
//! in `src/`, maps each to its top-level module, and fails on any import that points up the
//! order below or sideways within a layer, so the structure cannot quietly decay. Inside each
//! module, sibling files may not import each other in a loop. And no code branches on the text
//! of a message. Comments and string literals are ignored.
//!
//! To add a module, put it in [`LAYERS`]: the layer it sits in says what it may use (anything
//! in a later layer) and what may use it (anything in an earlier one).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Top to bottom. A module may import only modules of *later* layers.
const LAYERS: &[&[&str]] = &[
    // One file per subcommand; parses nothing, resolves nothing itself.
    &["commands"],
    // Exit codes and error reporting at the edge.
    &["error"],
    // MCP clients' configuration files, for add/remove/list.
    &["clients"],
    // The command line, resolved into configurations.
    &["cli"],
    // Validated configuration.
    &["config"],
    // The two front ends: the stdio relay and the local HTTP proxy.
    &["relay", "proxy"],
    // The remote endpoint and its transports.
    &["upstream"],
    // Credentials.
    &["auth"],
    // Leaves, and the leaves of leaves.
    &[
        "signer",
        "stdio",
        "logging",
        "shutdown",
        "env",
        "policy",
        "telemetry",
    ],
    &["jsonrpc", "private_fs", "net"],
    &["backoff", "random", "allocator"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// `src/auth/oauth/flow.rs` → (["auth", "oauth", "flow"], depth 3); `mod.rs` names its folder.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// `src/` and every `.rs` file below it, sorted.
fn src_files() -> (PathBuf, Vec<PathBuf>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    (src, files)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The production code of a file: comments, the contents of string and char literals, and
/// `#[cfg(test)]`/`#[cfg(all(test, …))]` modules blanked (newlines kept, so line numbers stay
/// right). Tests may build fixtures from any layer; the rule is for what ships.
fn code_only(text: &str) -> String {
    without_test_modules(&strip_comments_and_literals(text))
}

/// Blanks every `mod … { … }` that follows a `#[cfg(test)]`-like attribute.
fn without_test_modules(code: &str) -> String {
    let mut out: Vec<u8> = code.as_bytes().to_vec();
    let mut from = 0;
    while let Some(at) = code[from..].find("#[cfg(").map(|p| p + from) {
        let attr_end = code[at..].find(']').map_or(code.len(), |p| at + p + 1);
        let is_test = code[at..attr_end].contains("test");
        let Some(open) = code[attr_end..].find('{').map(|p| attr_end + p) else {
            break;
        };
        if is_test && code[attr_end..open].trim_start().starts_with("mod ") {
            let mut depth = 0;
            let mut end = open;
            for (k, c) in code[open..].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = open + k;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            for byte in &mut out[at..=end] {
                if *byte != b'\n' {
                    *byte = b' ';
                }
            }
            from = end + 1;
        } else {
            from = attr_end;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn strip_comments_and_literals(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        out.push(if b[i] == b'\n' { b'\n' } else { b' ' });
                        i += 1;
                    }
                }
            }
            b'r' if b.get(i + 1) == Some(&b'#') || b.get(i + 1) == Some(&b'"') => {
                // A raw string r"…" or r#"…"#; anything else starting with r is code.
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') || (i > 0 && is_ident(b[i - 1])) {
                    out.push(b[i]);
                    i += 1;
                    continue;
                }
                i = j + 1;
                while i < b.len() {
                    if b[i] == b'"' && (0..hashes).all(|k| b.get(i + 1 + k) == Some(&b'#')) {
                        i += 1 + hashes;
                        break;
                    }
                    out.push(if b[i] == b'\n' { b'\n' } else { b' ' });
                    i += 1;
                }
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    if b.get(i) == Some(&b'\n') {
                        out.push(b'\n');
                    }
                    i += 1;
                }
                i += 1;
            }
            b'\'' if is_char_literal(&text[i..]) => {
                // A char literal ('x', '\n', '\''); lifetimes ('a) are code.
                i += 1;
                while i < b.len() && b[i] != b'\'' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `'x'`, `'…'` or `'\n'` (a char literal) rather than `'a` (a lifetime).
fn is_char_literal(rest: &str) -> bool {
    let mut chars = rest.chars().skip(1);
    match chars.next() {
        Some('\\') => true,
        Some(_) => chars.next() == Some('\''),
        None => false,
    }
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Every top-level module `line` refers to: `crate::x…` (also inside a group,
/// `crate::{x, y::{z}}`), and `super::` chains from `path` that climb to the crate root and name
/// a module there.
fn targets(path: &[String], line: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for (_, full) in module_paths(path, line) {
        if let Some(first) = full.into_iter().next() {
            found.push(first);
        }
    }
    found
}

/// Every path `code` names from the crate root, made absolute from the module at `path`:
/// `crate::a::b`, `super::…` and `self::…` chains, each group `{x, y::{z}}` expanded into its
/// paths; with the byte offset where each path starts. `super::` past the root is dropped.
fn module_paths(path: &[String], code: &str) -> Vec<(usize, Vec<String>)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !code.is_char_boundary(i) || (i > 0 && (is_ident(b[i - 1]) || b[i - 1] == b':')) {
            i += 1;
            continue;
        }
        let rest = &code[i..];
        let (base, after): (Vec<String>, &str) = if let Some(r) = rest.strip_prefix("crate::") {
            (Vec::new(), r)
        } else if rest.starts_with("super::") {
            // `path` names the file's module; `super` is its parent.
            let mut up = 0;
            let mut r = rest;
            while let Some(x) = r.strip_prefix("super::") {
                up += 1;
                r = x;
            }
            if up > path.len() {
                i += 1;
                continue;
            }
            (path[..path.len() - up].to_vec(), r)
        } else if let Some(r) = rest.strip_prefix("self::") {
            (path.to_vec(), r)
        } else {
            i += 1;
            continue;
        };
        let start = i;
        let mut paths = Vec::new();
        let used = path_tree(after, &base, &mut paths);
        out.extend(paths.into_iter().map(|p| (start, p)));
        i = code.len() - after.len() + used.max(1);
    }
    out
}

/// Parses one use-tree at the start of `text` (`a::b`, `a::{b, c::{d}}`, `{a, b}`), pushing
/// each path (prefixed by `base`) into `out`; returns how many bytes it read.
fn path_tree(text: &str, base: &[String], out: &mut Vec<Vec<String>>) -> usize {
    let b = text.as_bytes();
    let mut i = 0;
    let mut cur = base.to_vec();
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if b.get(i) == Some(&b'{') {
            i += 1;
            loop {
                while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b',') {
                    i += 1;
                }
                if i >= b.len() || b[i] == b'}' {
                    return i + 1;
                }
                let before = i;
                i += path_tree(&text[i..], &cur, out);
                // Skip `as name` and anything else up to the next item.
                while i < b.len() && b[i] != b',' && b[i] != b'}' {
                    i += 1;
                }
                if i == before {
                    i += 1;
                }
            }
        }
        let start = i;
        while i < b.len() && is_ident(b[i]) {
            i += 1;
        }
        if i == start {
            if cur.len() > base.len() {
                out.push(cur);
            }
            return i;
        }
        let name = &text[start..i];
        if name != "self" {
            cur.push(name.to_string());
        }
        if text[i..].starts_with("::") {
            i += 2;
        } else {
            if cur.len() > base.len() || name == "self" {
                out.push(cur);
            }
            return i;
        }
    }
}

#[test]
fn imports_point_down_the_layers() {
    let (src, files) = src_files();
    let mut unknown = BTreeMap::new();
    let mut violations = Vec::new();
    let mut edges = 0;
    for file in &files {
        let path = module_path(&src, file);
        let Some(from) = path.first().cloned() else {
            continue;
        };
        // The crate root (lib.rs) and the binary (main.rs) sit above everything.
        if from == "lib" || from == "main" {
            continue;
        }
        let Some(from_layer) = layer_of(&from) else {
            unknown.insert(from.clone(), file.display().to_string());
            continue;
        };
        let code = code_only(&std::fs::read_to_string(file).unwrap());
        for (at, full) in module_paths(&path, &code) {
            let n = code[..at].matches('\n').count();
            if let Some(to) = full.into_iter().next() {
                if to == from {
                    continue;
                }
                edges += 1;
                match layer_of(&to) {
                    None => {
                        unknown.insert(to, format!("{}:{}", file.display(), n + 1));
                    }
                    Some(to_layer) if to_layer <= from_layer => violations.push(format!(
                        "{}:{}: `{from}` uses `{to}`, which is {} it in the layer order",
                        file.strip_prefix(&src).unwrap().display(),
                        n + 1,
                        if to_layer == from_layer {
                            "beside"
                        } else {
                            "above"
                        }
                    )),
                    Some(_) => {}
                }
            }
        }
    }
    let order: Vec<String> = LAYERS.iter().map(|l| l.join(", ")).collect();
    assert!(
        unknown.is_empty(),
        "modules missing from LAYERS in tests/architecture.rs (place each one): {unknown:#?}"
    );
    assert!(
        violations.is_empty(),
        "imports that point up or sideways:\n  {}\nallowed order, top to bottom:\n  {}",
        violations.join("\n  "),
        order.join("\n  ")
    );
    assert!(
        edges > 50,
        "only {edges} imports found: is the scanner broken?"
    );
}

#[test]
fn the_scanner_sees_through_comments_strings_and_super_chains() {
    let code = code_only(
        "use crate::auth; // crate::cli\n/* crate::proxy */ let s = \"crate::relay\"; let c = '\"'; use crate::net;\n",
    );
    let path = vec!["upstream".to_string(), "http".to_string()];
    let found: Vec<String> = code.lines().flat_map(|l| targets(&path, l)).collect();
    assert_eq!(found, ["auth", "net"]);
    assert_eq!(targets(&path, "use super::super::config;"), ["config"]);
    let code = code_only(
        "use crate::auth;\n#[cfg(test)]\nmod tests {\n    use crate::cli;\n}\nuse crate::net;\n",
    );
    let found: Vec<String> = code.lines().flat_map(|l| targets(&path, l)).collect();
    assert_eq!(
        found,
        ["auth", "net"],
        "test modules are not production imports"
    );
    assert_eq!(
        targets(&path, "use super::error;"),
        ["upstream"],
        "a sibling, inside the module"
    );
    assert_eq!(
        targets(&path, "use crate::{auth::{self, Selection}, shutdown};"),
        ["auth", "auth", "shutdown"],
        "grouped imports"
    );
    let multi = code_only("use crate::{\n    cli::Cli,\n    net::{self, origin},\n};\n");
    let found: Vec<Vec<String>> = module_paths(&path, &multi)
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    assert_eq!(
        found,
        [vec!["cli", "Cli"], vec!["net"], vec!["net", "origin"]],
        "a group over several lines"
    );
    assert_eq!(layer_of("commands"), Some(0));
}

#[path = "architecture/text_decisions.rs"]
mod text_decisions;

/// Inside every module, the files (and folders) beside each other import one way: no two
/// siblings use each other, directly or around a loop (`api.rs` → `keys.rs` → `api.rs`). What
/// both need goes into a third sibling, or into their parent. A file's imports count for the
/// sibling it sits in (`auth/oauth/flow.rs` using `auth::access_key::…` is an edge from
/// `oauth` to `access_key` inside `auth`).
#[test]
fn siblings_inside_a_module_import_without_cycles() {
    let (src, files) = src_files();
    let paths: Vec<Vec<String>> = files.iter().map(|f| module_path(&src, f)).collect();
    // Every module that exists, so a path to an item (`super::AccessKeyCredential`) is not
    // taken for a sibling.
    let mut modules = std::collections::BTreeSet::new();
    for p in &paths {
        for n in 1..=p.len() {
            modules.insert(p[..n].to_vec());
        }
    }
    // (parent module, from sibling) → sibling names it uses.
    let mut edges: BTreeMap<(Vec<String>, String), std::collections::BTreeSet<String>> =
        BTreeMap::new();
    let mut seen = 0;
    for (file, path) in files.iter().zip(&paths) {
        let code = code_only(&std::fs::read_to_string(file).unwrap());
        for (_, to) in module_paths(path, &code) {
            let common = path.iter().zip(&to).take_while(|(a, b)| a == b).count();
            // Top-level modules are the layer test's; a parent and its children are not
            // siblings.
            if common == 0 || common >= path.len() || common >= to.len() {
                continue;
            }
            if !modules.contains(&to[..=common]) {
                continue;
            }
            seen += 1;
            edges
                .entry((path[..common].to_vec(), path[common].clone()))
                .or_default()
                .insert(to[common].clone());
        }
    }
    assert!(
        seen > 50,
        "only {seen} sibling imports found: is the scanner broken?"
    );
    let mut cycles = Vec::new();
    for ((parent, from), tos) in &edges {
        for to in tos {
            // Is `from` reachable again from `to`?
            let mut stack = vec![(to.clone(), vec![from.clone(), to.clone()])];
            let mut visited = std::collections::BTreeSet::new();
            while let Some((at, trail)) = stack.pop() {
                if at == *from {
                    let cycle = trail.join(" → ");
                    let named = format!("{}: {cycle}", parent.join("::"));
                    if !cycles.iter().any(|c: &String| {
                        c.starts_with(&format!("{}:", parent.join("::"))) && same_loop(c, &named)
                    }) {
                        cycles.push(named);
                    }
                    break;
                }
                if !visited.insert(at.clone()) {
                    continue;
                }
                for next in edges
                    .get(&(parent.clone(), at.clone()))
                    .into_iter()
                    .flatten()
                {
                    let mut t = trail.clone();
                    t.push(next.clone());
                    stack.push((next.clone(), t));
                }
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "sibling files that import each other (move what both need into a third file):\n  {}",
        cycles.join("\n  ")
    );
}

/// Whether two reported loops `parent: a → b → a` visit the same files.
fn same_loop(a: &str, b: &str) -> bool {
    let set = |s: &str| {
        let mut v: Vec<String> = s
            .split(": ")
            .nth(1)
            .unwrap_or_default()
            .split(" → ")
            .map(str::to_string)
            .collect();
        v.sort();
        v.dedup();
        v
    };
    set(a) == set(b)
}
