//! What changed between a pinned tool definition and the one listed now, in a few lines a
//! person can read: description lines added and removed, schema properties added, removed or
//! retyped, annotation changes, and a read turning into a write.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use super::Change;
use crate::policy::classify::{self, Shape};

/// What changed between two definitions, as short lines: description lines added and removed
/// (`+ `/`- `), title, schema properties added/removed/retyped, annotation changes, and the
/// tool turning from a read into a write under alibridge's classification.
pub fn diff(old: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    if text(old, "title") != text(new, "title") {
        out.push(format!(
            "title: {:?} → {:?}",
            text(old, "title"),
            text(new, "title")
        ));
    }
    let (od, nd) = (text(old, "description"), text(new, "description"));
    if od != nd {
        let ol: Vec<&str> = od.lines().collect();
        let nl: Vec<&str> = nd.lines().collect();
        for l in ol.iter().filter(|l| !nl.contains(l)) {
            out.push(format!("- {}", cut(l)));
        }
        for l in nl.iter().filter(|l| !ol.contains(l)) {
            out.push(format!("+ {}", cut(l)));
        }
    }
    for schema in ["inputSchema", "outputSchema"] {
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
                None => out.push(format!("{schema}: property {k} added ({})", kind(v))),
                Some(o) if kind(o) != kind(v) => out.push(format!(
                    "{schema}: property {k} retyped {} → {}",
                    kind(o),
                    kind(v)
                )),
                Some(o) if o != v => out.push(format!("{schema}: property {k} changed")),
                _ => {}
            }
        }
        for k in op.keys().filter(|k| !np.contains_key(*k)) {
            out.push(format!("{schema}: property {k} removed"));
        }
        let rest = |v: &Value| {
            let mut s = v.get(schema).cloned().unwrap_or(Value::Null);
            if let Some(m) = s.as_object_mut() {
                m.remove("properties");
            }
            s
        };
        if rest(old) != rest(new) {
            out.push(format!("{schema}: changed (besides its properties)"));
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
            out.push(format!("{k}: {} → {}", show(oa.get(k)), show(na.get(k))));
        }
    }
    let shape = |v: &Value| {
        let name = text(v, "name");
        let hint = v.pointer("/annotations/readOnlyHint") == Some(&Value::Bool(true));
        classify::shape(&name, hint)
    };
    if shape(old) == Shape::Read && shape(new) == Shape::Write {
        out.push("it was a read and is now a write".into());
    }
    if text(old, "name") != text(new, "name") {
        out.push("name changed".into());
    }
    if out.is_empty() {
        out.push("changed".into());
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
        let d = diff(&old, &new);
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
        assert!(
            flip.contains(&"it was a read and is now a write".to_string()),
            "{flip:?}"
        );
    }
}
