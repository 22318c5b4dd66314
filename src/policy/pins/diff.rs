//! What changed between a pinned tool definition and the one listed now, in a few lines a
//! person can read: description lines added and removed, schema properties added, removed or
//! retyped, annotation changes, and a read turning into a write.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use super::Change;
use crate::policy::classify::{self, Shape};

/// Which part of a tool's definition a diff line is about: what the refusal the model reads
/// names (never the new text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Title,
    Description,
    InputSchema,
    OutputSchema,
    Annotations,
    /// The tool was a read and is now a write.
    NowWrite,
    Name,
}

impl Part {
    /// How the one-line summary names the part.
    pub fn summary(self) -> &'static str {
        match self {
            Part::Title => "title",
            Part::Description => "description",
            Part::InputSchema => "inputSchema",
            Part::OutputSchema => "outputSchema",
            Part::Annotations => "annotations",
            Part::NowWrite => "it is now a write",
            Part::Name => "name",
        }
    }
}

/// One line of a diff: the part it is about, and the line a person reads.
#[derive(Debug, Clone, PartialEq)]
pub struct DiffLine {
    pub part: Part,
    pub text: String,
}

impl std::fmt::Display for DiffLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

fn line(part: Part, text: impl Into<String>) -> DiffLine {
    DiffLine {
        part,
        text: text.into(),
    }
}

/// What changed between two definitions, as short lines: description lines added and removed
/// (`+ `/`- `), title, schema properties added/removed/retyped, annotation changes, and the
/// tool turning from a read into a write under alibridge's classification.
pub fn diff(old: &Value, new: &Value) -> Vec<DiffLine> {
    let mut out = Vec::new();
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    if text(old, "title") != text(new, "title") {
        out.push(line(
            Part::Title,
            format!("title: {:?} → {:?}", text(old, "title"), text(new, "title")),
        ));
    }
    let (od, nd) = (text(old, "description"), text(new, "description"));
    if od != nd {
        let ol: Vec<&str> = od.lines().collect();
        let nl: Vec<&str> = nd.lines().collect();
        for l in ol.iter().filter(|l| !nl.contains(l)) {
            out.push(line(Part::Description, format!("- {}", cut(l))));
        }
        for l in nl.iter().filter(|l| !ol.contains(l)) {
            out.push(line(Part::Description, format!("+ {}", cut(l))));
        }
    }
    for (schema, part) in [
        ("inputSchema", Part::InputSchema),
        ("outputSchema", Part::OutputSchema),
    ] {
        let props = |v: &Value| -> BTreeMap<String, Value> {
            v.pointer(&format!("/{schema}/properties"))
                .and_then(Value::as_object)
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default()
        };
        let (op, np) = (props(old), props(new));
        let kind = |v: &Value| {
            v.get("type")
                .map(|t| t.as_str().map(str::to_string).unwrap_or(t.to_string()))
                .unwrap_or_else(|| "any".into())
        };
        for (k, v) in &np {
            match op.get(k) {
                None => out.push(line(
                    part,
                    format!("{schema}: property {k} added ({})", kind(v)),
                )),
                Some(o) if kind(o) != kind(v) => out.push(line(
                    part,
                    format!("{schema}: property {k} retyped {} → {}", kind(o), kind(v)),
                )),
                Some(o) if o != v => {
                    out.push(line(part, format!("{schema}: property {k} changed")))
                }
                _ => {}
            }
        }
        for k in op.keys().filter(|k| !np.contains_key(*k)) {
            out.push(line(part, format!("{schema}: property {k} removed")));
        }
        let rest = |v: &Value| {
            let mut s = v.get(schema).cloned().unwrap_or(Value::Null);
            if let Some(m) = s.as_object_mut() {
                m.remove("properties");
            }
            s
        };
        if rest(old) != rest(new) {
            out.push(line(
                part,
                format!("{schema}: changed (besides its properties)"),
            ));
        }
    }
    let ann = |v: &Value| -> BTreeMap<String, Value> {
        v.get("annotations")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    };
    let (oa, na) = (ann(old), ann(new));
    let keys: std::collections::BTreeSet<&String> = oa.keys().chain(na.keys()).collect();
    for k in keys {
        let show = |v: Option<&Value>| v.map(Value::to_string).unwrap_or_else(|| "unset".into());
        if oa.get(k) != na.get(k) {
            out.push(line(
                Part::Annotations,
                format!("{k}: {} → {}", show(oa.get(k)), show(na.get(k))),
            ));
        }
    }
    let shape = |v: &Value| {
        let name = text(v, "name");
        let hint = v.pointer("/annotations/readOnlyHint") == Some(&Value::Bool(true));
        classify::shape(&name, hint)
    };
    if shape(old) == Shape::Read && shape(new) == Shape::Write {
        out.push(line(Part::NowWrite, "it was a read and is now a write"));
    }
    if text(old, "name") != text(new, "name") {
        out.push(line(Part::Name, "name changed"));
    }
    if out.is_empty() {
        // Something else in the definition (named as its annotations, as before).
        out.push(line(Part::Annotations, "changed"));
    }
    out
}

fn cut(line: &str) -> String {
    let mut s: String = line.chars().take(200).collect();
    if line.chars().count() > 200 {
        s.push('…');
    }
    s
}

/// The withheld tools and their changes, as the person reads them.
pub fn describe(asks: &[(String, Change)]) -> String {
    let mut s = String::new();
    for (name, change) in asks {
        match change {
            Change::New => {
                let _ = writeln!(s, "• {name}: new tool");
            }
            Change::Changed(lines) => {
                let _ = writeln!(s, "• {name}: changed");
                for l in lines {
                    let _ = writeln!(s, "    {l}");
                }
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schema_changes_read_as_lines() {
        let old = json!({"name": "Ecs-20140526-DescribeInstances",
            "inputSchema": {"properties": {"a": {"type": "string"}, "b": {"type": "string"}}}});
        let new = json!({"name": "Ecs-20140526-DescribeInstances",
            "inputSchema": {"properties": {"a": {"type": "integer"}, "c": {"type": "string"}}}});
        let d: Vec<String> = diff(&old, &new).into_iter().map(|l| l.text).collect();
        assert!(
            d.contains(&"inputSchema: property a retyped string → integer".to_string()),
            "{d:?}"
        );
        assert!(
            d.contains(&"inputSchema: property c added (string)".to_string()),
            "{d:?}"
        );
        assert!(
            d.contains(&"inputSchema: property b removed".to_string()),
            "{d:?}"
        );
        let flip = diff(
            &json!({"name": "echo", "annotations": {"readOnlyHint": true}}),
            &json!({"name": "echo"}),
        );
        assert!(flip.iter().any(|l| l.part == Part::NowWrite), "{flip:?}");
        let flip: Vec<String> = flip.into_iter().map(|l| l.text).collect();
        assert!(
            flip.contains(&"it was a read and is now a write".to_string()),
            "{flip:?}"
        );
    }
}
