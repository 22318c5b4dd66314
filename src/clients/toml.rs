//! Codex's `config.toml`: edits only `[mcp_servers.<name>]`, through `toml_edit`, so comments,
//! key order and keys alibridge does not know stay as they were (`codex mcp add` drops them).
//! Entries are exchanged as JSON values (strings, integers, booleans, arrays, tables).

use serde_json::{Map, Value};
use toml_edit::{Array, DocumentMut, Item, Table};

fn parse(text: &str) -> Result<DocumentMut, String> {
    text.parse::<DocumentMut>().map_err(|e| e.to_string())
}

/// Every `[mcp_servers.*]` entry.
pub fn entries(text: &str) -> Result<Vec<(String, Value)>, String> {
    let doc = parse(text)?;
    let Some(servers) = doc.get("mcp_servers").and_then(Item::as_table_like) else {
        return Ok(Vec::new());
    };
    Ok(servers
        .iter()
        .map(|(k, v)| (k.to_string(), to_json(v)))
        .collect())
}

/// Sets `[mcp_servers.<name>]` to `entry`; a replaced entry keeps its place and its comments.
pub fn upsert(text: &str, name: &str, entry: &Value) -> Result<String, String> {
    let mut doc = parse(text)?;
    if doc.get("mcp_servers").is_none() {
        let mut t = Table::new();
        t.set_implicit(true);
        doc.insert("mcp_servers", Item::Table(t));
    }
    let servers = doc["mcp_servers"]
        .as_table_mut()
        .ok_or("mcp_servers is not a table")?;
    let Value::Object(fields) = entry else {
        return Err("an entry must be a table".into());
    };
    match servers.get_mut(name).and_then(Item::as_table_mut) {
        Some(existing) => {
            // Keep the header's decor (comments above it) and its position.
            existing.clear();
            for (k, v) in fields {
                existing.insert(k, Item::Value(to_toml(v)?));
            }
        }
        None => {
            let mut t = Table::new();
            for (k, v) in fields {
                t.insert(k, Item::Value(to_toml(v)?));
            }
            servers.insert(name, Item::Table(t));
        }
    }
    Ok(doc.to_string())
}

/// Removes `[mcp_servers.<name>]`; `None` when it is not there.
pub fn remove(text: &str, name: &str) -> Result<Option<String>, String> {
    let mut doc = parse(text)?;
    let Some(servers) = doc.get_mut("mcp_servers").and_then(Item::as_table_like_mut) else {
        return Ok(None);
    };
    if servers.remove(name).is_none() {
        return Ok(None);
    }
    Ok(Some(doc.to_string()))
}

fn to_toml(v: &Value) -> Result<toml_edit::Value, String> {
    Ok(match v {
        Value::String(s) => s.as_str().into(),
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n.as_f64().unwrap_or_default().into(),
        },
        Value::Array(a) => {
            let mut arr = Array::new();
            for x in a {
                arr.push(to_toml(x)?);
            }
            toml_edit::Value::Array(arr)
        }
        Value::Object(m) => {
            let mut t = toml_edit::InlineTable::new();
            for (k, x) in m {
                t.insert(k, to_toml(x)?);
            }
            toml_edit::Value::InlineTable(t)
        }
        Value::Null => return Err("TOML has no null".into()),
    })
}

fn to_json(item: &Item) -> Value {
    match item {
        Item::Value(v) => value_to_json(v),
        Item::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.to_string(), to_json(v)))
                .collect::<Map<_, _>>(),
        ),
        Item::ArrayOfTables(a) => {
            Value::Array(a.iter().map(|t| to_json(&Item::Table(t.clone()))).collect())
        }
        Item::None => Value::Null,
    }
}

fn value_to_json(v: &toml_edit::Value) -> Value {
    use toml_edit::Value as T;
    match v {
        T::String(s) => Value::String(s.value().clone()),
        T::Integer(i) => Value::from(*i.value()),
        T::Float(f) => serde_json::Number::from_f64(*f.value()).map_or(Value::Null, Value::Number),
        T::Boolean(b) => Value::Bool(*b.value()),
        T::Datetime(d) => Value::String(d.value().to_string()),
        T::Array(a) => Value::Array(a.iter().map(value_to_json).collect()),
        T::InlineTable(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.to_string(), value_to_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FILE: &str = "# my codex\nmodel = \"o3\" # inline\n\n[mcp_servers.other]\ncommand = \"x\"\nunknown_key = 1\n\n# trailer\n[profiles.a]\nk = 2\n";

    #[test]
    fn add_and_remove_keep_comments_and_unknown_keys() {
        let e = json!({"command": "/bin/alibridge", "args": ["https://h/mcp"], "tool_timeout_sec": 300});
        let out = upsert(FILE, "ali", &e).unwrap();
        for kept in [
            "# my codex",
            "# inline",
            "unknown_key = 1",
            "# trailer",
            "[profiles.a]",
        ] {
            assert!(out.contains(kept), "{kept} lost:\n{out}");
        }
        let got = entries(&out).unwrap();
        assert_eq!(got.iter().find(|(k, _)| k == "ali").unwrap().1, e);
        assert_eq!(upsert(&out, "ali", &e).unwrap(), out, "idempotent");
        let back = remove(&out, "ali").unwrap().unwrap();
        assert_eq!(back, FILE);
        assert!(remove(&back, "ali").unwrap().is_none());
    }
}
