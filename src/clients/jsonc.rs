//! Format-preserving edits of JSON and JSON-with-comments files: a server entry is spliced into
//! (or cut out of) the text, so other keys, their order, comments, odd spacing and trailing
//! commas stay byte for byte. The file is scanned on a copy with comments and trailing commas
//! blanked to spaces (same byte offsets), which is also what is handed to `serde_json` to read.

use std::ops::Range;

use serde_json::Value;

/// Why a JSON(C) file cannot be read or edited; `String` is a reason a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum JsoncError {
    #[error("not valid JSON: {0}")]
    Syntax(String),
    #[error("\"{0}\" is not an object")]
    NotAnObject(String),
}

/// The document as `serde_json` sees it; an empty file is an empty object.
pub fn parse(text: &str) -> Result<Value, JsoncError> {
    let blank = blank(text)?;
    if blank.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_str(&blank).map_err(|e| JsoncError::Syntax(e.to_string()))
}

/// Sets `path…/name` to `value`, adding missing objects along `path`.
pub fn upsert(text: &str, path: &[&str], name: &str, value: &Value) -> Result<String, JsoncError> {
    let mut text = if text.trim().is_empty() {
        "{}\n".to_string()
    } else {
        text.to_string()
    };
    // Create the objects on the way, one level per pass (each pass rescans the new text).
    for depth in 0..path.len() {
        let obj = object_at(&text, &path[..depth])?;
        if find(&text, &obj, path[depth]).is_none() {
            text = insert(
                &text,
                &obj,
                depth + 1,
                path[depth],
                &Value::Object(Default::default()),
            )?;
        }
    }
    let obj = object_at(&text, path)?;
    let out = match find(&text, &obj, name) {
        Some(m) => {
            let rendered = render(value, &indent_unit(&text), path.len() + 1);
            splice(&text, m.value.clone(), &rendered)
        }
        None => insert(&text, &obj, path.len() + 1, name, value)?,
    };
    Ok(out)
}

/// Removes `path…/name`; `None` when there is no such entry.
pub fn remove(text: &str, path: &[&str], name: &str) -> Result<Option<String>, JsoncError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let obj = match object_at(text, path) {
        Ok(o) => o,
        Err(JsoncError::NotAnObject(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(idx) = obj.members.iter().position(|m| m.key == name) else {
        return Ok(None);
    };
    let blank = blank(text)?;
    let b = blank.as_bytes();
    let m = &obj.members[idx];
    let after = skip_ws(b, m.value.end);
    let range = if b.get(after) == Some(&b',') {
        // `"name": …,` up to the next line: cut the whole line(s).
        let start = line_start_if_blank(text, m.key_start);
        let mut end = after + 1;
        let rest = skip_inline_ws(b, end);
        if b.get(rest) == Some(&b'\n') {
            end = rest + 1;
        }
        start..end
    } else if idx > 0 {
        // The last member: cut from the comma after the previous one.
        let prev_end = obj.members[idx - 1].value.end;
        let comma = skip_ws(b, prev_end);
        comma..m.value.end
    } else {
        let start = if blank[obj.open + 1..m.key_start].trim().is_empty() {
            obj.open + 1
        } else {
            m.key_start
        };
        start..m.value.end
    };
    Ok(Some(splice(text, range, "")))
}

struct Member {
    key: String,
    key_start: usize,
    value: Range<usize>,
}

struct Object {
    open: usize,
    close: usize,
    members: Vec<Member>,
}

fn find<'a>(_text: &str, obj: &'a Object, key: &str) -> Option<&'a Member> {
    obj.members.iter().find(|m| m.key == key)
}

/// Replaces `range` with `with`, whose line breaks follow the file's (CRLF files stay CRLF).
fn splice(text: &str, range: Range<usize>, with: &str) -> String {
    let crlf;
    let with = if text.contains("\r\n") && with.contains('\n') && !with.contains('\r') {
        crlf = with.replace('\n', "\r\n");
        crlf.as_str()
    } else {
        with
    };
    let mut out = String::with_capacity(text.len() + with.len());
    out.push_str(&text[..range.start]);
    out.push_str(with);
    out.push_str(&text[range.end..]);
    out
}

/// Adds `"key": value` as the last member of `obj`, whose members sit at `depth`.
fn insert(
    text: &str,
    obj: &Object,
    depth: usize,
    key: &str,
    value: &Value,
) -> Result<String, JsoncError> {
    let unit = indent_unit(text);
    let pad = unit.repeat(depth);
    let member = format!(
        "{}: {}",
        serde_json::to_string(key).expect("a string serializes"),
        render(value, &unit, depth)
    );
    Ok(match obj.members.last() {
        Some(last) => splice(
            text,
            last.value.end..last.value.end,
            &format!(",\n{pad}{member}"),
        ),
        None => {
            let inner = &text[obj.open + 1..obj.close];
            let close_pad = unit.repeat(depth - 1);
            if inner.trim().is_empty() {
                splice(
                    text,
                    obj.open + 1..obj.close,
                    &format!("\n{pad}{member}\n{close_pad}"),
                )
            } else {
                // Only comments inside: keep them after the new member.
                splice(
                    text,
                    obj.open + 1..obj.open + 1,
                    &format!("\n{pad}{member}"),
                )
            }
        }
    })
}

/// `value` pretty-printed with the file's indent, its lines shifted to `depth`.
fn render(value: &Value, unit: &str, depth: usize) -> String {
    use serde::Serialize;
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(unit.as_bytes());
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    match value {
        Value::Object(m) => Ordered(m).serialize(&mut ser),
        v => v.serialize(&mut ser),
    }
    .expect("a JSON value serializes");
    let s = String::from_utf8(buf).expect("serde_json writes UTF-8");
    s.replace('\n', &format!("\n{}", unit.repeat(depth)))
}

/// The keys an entry is written with first, in the order the clients' docs show them (the
/// rest follow sorted), so a written entry reads like the documented examples.
const FIRST_KEYS: &[&str] = &["type", "command", "args", "env"];

struct Ordered<'a>(&'a serde_json::Map<String, Value>);

impl serde::Serialize for Ordered<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for k in FIRST_KEYS {
            if let Some(v) = self.0.get(*k) {
                map.serialize_entry(k, v)?;
            }
        }
        for (k, v) in self.0 {
            if !FIRST_KEYS.contains(&k.as_str()) {
                map.serialize_entry(k, v)?;
            }
        }
        map.end()
    }
}

/// The indent of the first indented member line (two spaces when the file has none).
fn indent_unit(text: &str) -> String {
    text.lines()
        .find_map(|l| {
            let t = l.trim_start_matches([' ', '\t']);
            (t.starts_with('"') && t.len() < l.len()).then(|| l[..l.len() - t.len()].to_string())
        })
        .unwrap_or_else(|| "  ".to_string())
}

/// The object reached from the root through `path`.
fn object_at(text: &str, path: &[&str]) -> Result<Object, JsoncError> {
    let blank = blank(text)?;
    let b = blank.as_bytes();
    let mut at = skip_ws(b, 0);
    if b.get(at) != Some(&b'{') {
        return Err(JsoncError::NotAnObject("(top level)".into()));
    }
    let mut obj = scan_object(&blank, at)?;
    for key in path {
        let m = obj
            .members
            .iter()
            .find(|m| m.key == *key)
            .ok_or_else(|| JsoncError::NotAnObject((*key).to_string()))?;
        at = m.value.start;
        if b[at] != b'{' {
            return Err(JsoncError::NotAnObject((*key).to_string()));
        }
        obj = scan_object(&blank, at)?;
    }
    Ok(obj)
}

fn scan_object(blank: &str, open: usize) -> Result<Object, JsoncError> {
    let b = blank.as_bytes();
    let mut members = Vec::new();
    let mut i = skip_ws(b, open + 1);
    if b.get(i) == Some(&b'}') {
        return Ok(Object {
            open,
            close: i,
            members,
        });
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return Err(syntax(i, "expected a key"));
        }
        let key_end = scan_string(b, i)?;
        let key: String = serde_json::from_str(&blank[i..key_end])
            .map_err(|e| JsoncError::Syntax(e.to_string()))?;
        let colon = skip_ws(b, key_end);
        if b.get(colon) != Some(&b':') {
            return Err(syntax(colon, "expected ':'"));
        }
        let vstart = skip_ws(b, colon + 1);
        let vend = scan_value(b, vstart)?;
        members.push(Member {
            key,
            key_start: i,
            value: vstart..vend,
        });
        i = skip_ws(b, vend);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => {
                return Ok(Object {
                    open,
                    close: i,
                    members,
                })
            }
            _ => return Err(syntax(i, "expected ',' or '}'")),
        }
    }
}

fn syntax(at: usize, what: &str) -> JsoncError {
    JsoncError::Syntax(format!("{what} at byte {at}"))
}

/// The end of the value starting at `i`. Depth is tracked with a counter, not recursion, so a
/// deeply nested file cannot overflow the stack.
fn scan_value(b: &[u8], i: usize) -> Result<usize, JsoncError> {
    let mut depth = 0usize;
    let mut j = i;
    loop {
        match b.get(j) {
            None => return Err(syntax(j, "unexpected end")),
            Some(b'"') => j = scan_string(b, j)?,
            Some(b'{' | b'[') => {
                depth += 1;
                j += 1;
            }
            Some(b'}' | b']') => {
                if depth == 0 {
                    return Err(syntax(j, "unexpected bracket"));
                }
                depth -= 1;
                j += 1;
            }
            Some(c) if depth == 0 && (c.is_ascii_alphanumeric() || *c == b'-') => {
                while b
                    .get(j)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || b"+-.".contains(c))
                {
                    j += 1;
                }
                return Ok(j);
            }
            Some(_) => j += 1,
        }
        if depth == 0 {
            return Ok(j);
        }
    }
}

fn scan_string(b: &[u8], open: usize) -> Result<usize, JsoncError> {
    let mut j = open + 1;
    while let Some(&c) = b.get(j) {
        match c {
            b'\\' => j += 2,
            b'"' => return Ok(j + 1),
            _ => j += 1,
        }
    }
    Err(syntax(open, "unterminated string"))
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
        i += 1;
    }
    i
}

fn skip_inline_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\r')) {
        i += 1;
    }
    i
}

/// The start of `at`'s line when only spaces precede `at` on it, else `at`.
fn line_start_if_blank(text: &str, at: usize) -> usize {
    let start = text[..at].rfind('\n').map_or(0, |p| p + 1);
    if text[start..at].trim().is_empty() {
        start
    } else {
        at
    }
}

/// `text` with `//` and `/* */` comments and trailing commas replaced by spaces (newlines
/// kept), so byte offsets match the original.
fn blank(text: &str) -> Result<String, JsoncError> {
    let mut b = text.as_bytes().to_vec();
    // A byte-order mark (Windows editors) is kept in the file, skipped when reading.
    if b.starts_with(&[0xEF, 0xBB, 0xBF]) {
        b[..3].fill(b' ');
    }
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => i = scan_string(&b, i)?,
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    b[i] = b' ';
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let end = text[i + 2..]
                    .find("*/")
                    .map(|p| i + 2 + p + 2)
                    .ok_or_else(|| syntax(i, "unterminated comment"))?;
                for c in &mut b[i..end] {
                    if *c != b'\n' {
                        *c = b' ';
                    }
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    // Trailing commas, now that comments are gone.
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => i = scan_string(&b, i)?,
            b',' => {
                let next = skip_ws(&b, i + 1);
                if matches!(b.get(next), Some(b'}' | b']')) {
                    b[i] = b' ';
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    // Only ASCII bytes of comments were replaced by ASCII spaces, or whole multi-byte chars
    // byte by byte, so the result is UTF-8.
    String::from_utf8(b).map_err(|e| JsoncError::Syntax(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FILE: &str = "{\n  // servers\n  \"mcpServers\": {\n    \"other\": { \"command\": \"x\" }, /* keep */\n  },\n  \"z\": 1,\n}\n";

    #[test]
    fn insert_keeps_comments_and_other_servers_and_reads_back() {
        let out = upsert(FILE, &["mcpServers"], "a", &json!({"command": "/bin/a"})).unwrap();
        assert!(
            out.contains("// servers") && out.contains("/* keep */"),
            "{out}"
        );
        let v = parse(&out).unwrap();
        assert_eq!(v["mcpServers"]["a"]["command"], "/bin/a");
        assert_eq!(v["mcpServers"]["other"]["command"], "x");
        assert_eq!(v["z"], 1);
        let back = remove(&out, &["mcpServers"], "a").unwrap().unwrap();
        assert_eq!(parse(&back).unwrap(), parse(FILE).unwrap());
        assert!(back.contains("/* keep */"));
    }

    #[test]
    fn missing_path_objects_are_created_and_removal_of_a_lone_member_leaves_an_empty_object() {
        let out = upsert("{\"a\": [1, {\"b\": \"}\"}]}", &["p", "q"], "n", &json!(1)).unwrap();
        let v = parse(&out).unwrap();
        assert_eq!(v["p"]["q"]["n"], 1);
        assert_eq!(v["a"][1]["b"], "}");
        let back = remove(&out, &["p", "q"], "n").unwrap().unwrap();
        assert_eq!(parse(&back).unwrap()["p"]["q"], json!({}));
        assert!(remove(&back, &["p", "q"], "n").unwrap().is_none());
    }

    #[test]
    fn entries_are_written_in_the_documented_key_order() {
        let e = json!({"env": {}, "args": [], "type": "stdio", "command": "c", "cwd": "/"});
        let out = upsert("{}", &["s"], "n", &e).unwrap();
        let pos = |k: &str| out.find(&format!("\"{k}\"")).unwrap();
        assert!(
            pos("type") < pos("command") && pos("command") < pos("args"),
            "{out}"
        );
        assert!(pos("args") < pos("env") && pos("env") < pos("cwd"), "{out}");
    }

    #[test]
    fn replacing_an_entry_keeps_its_place() {
        let text = "{\"s\": {\"a\": 1, \"b\": 2, \"c\": 3}}";
        let out = upsert(text, &["s"], "b", &json!(5)).unwrap();
        assert_eq!(out, "{\"s\": {\"a\": 1, \"b\": 5, \"c\": 3}}");
    }

    #[test]
    fn bom_and_crlf_files_keep_their_form() {
        let text = "\u{feff}{\r\n  \"mcpServers\": {\r\n    \"a\": 1\r\n  }\r\n}\r\n";
        let out = upsert(text, &["mcpServers"], "b", &json!({"command": "x"})).unwrap();
        assert!(out.starts_with('\u{feff}'));
        assert!(!out.replace("\r\n", "").contains('\n'), "{out:?}");
        assert_eq!(parse(&out).unwrap()["mcpServers"]["b"]["command"], "x");
        assert_eq!(remove(&out, &["mcpServers"], "b").unwrap().unwrap(), text);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in ["{", "[1]", "{\"a\" 1}", "{\"a\": /* x", "\"", "{\"a\":}"] {
            assert!(upsert(bad, &["s"], "n", &json!(1)).is_err(), "{bad}");
        }
    }
}
