//! Finding alibridge's entries in every client's files (`list`, `doctor`), and what an entry
//! says: whether it runs alibridge, and its URL.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::edit::{entries, read};
use super::{scopes, target, ClientsError, Places, ALL};
use crate::cli::{ClientKind, Scope};

/// An alibridge entry found in a client's file.
#[derive(Debug, Clone)]
pub struct Found {
    pub client: ClientKind,
    pub scope: Scope,
    pub name: String,
    pub file: PathBuf,
    pub entry: Value,
}

impl Found {
    pub fn command(&self) -> &str {
        self.entry["command"].as_str().unwrap_or_default()
    }

    /// The arguments after the command (URL and bridge flags).
    pub fn args(&self) -> Vec<String> {
        self.entry["args"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Every alibridge entry of every client and scope; files that cannot be read are reported in
/// the second list (file and reason) rather than failing the whole scan.
pub fn find_all(at: &Places) -> (Vec<Found>, Vec<ClientsError>) {
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    for &client in ALL {
        for &scope in scopes(client) {
            let target = match target(client, scope, at) {
                Ok(Some(t)) => t,
                Ok(None) => continue,
                Err(e) => {
                    skipped.push(e);
                    continue;
                }
            };
            let text = match read(&target.file) {
                Ok(Some(t)) => t,
                Ok(None) => continue,
                Err(e) => {
                    skipped.push(e);
                    continue;
                }
            };
            match entries(&target, &text) {
                Ok(list) => found.extend(list.into_iter().filter(|(_, e)| is_alibridge(e)).map(
                    |(name, entry)| Found {
                        client,
                        scope,
                        name,
                        file: target.file.clone(),
                        entry,
                    },
                )),
                Err(e) => skipped.push(e),
            }
        }
    }
    (found, skipped)
}

/// Whether an entry runs alibridge (its command's file name is `alibridge[.exe]`).
pub fn is_alibridge(entry: &Value) -> bool {
    entry
        .get("command")
        .and_then(Value::as_str)
        .and_then(|c| Path::new(c).file_stem().map(|s| s == "alibridge"))
        .unwrap_or(false)
}

/// The endpoint an alibridge entry points at: its positional `http(s)://` argument; `None` for
/// the URL-less form.
pub fn entry_url(entry: &Value) -> Option<String> {
    let args = entry.get("args")?.as_array()?;
    // The URL is the positional argument: skip the values of flags that take one
    // (`--ims-endpoint http://…` is not the endpoint), as the bridge's own parser would.
    let cli = <crate::cli::Cli as clap::CommandFactory>::command();
    let takes_value = |flag: &str| {
        cli.get_arguments().any(|a| {
            let named = match flag.strip_prefix("--") {
                Some(long) => a.get_long() == Some(long),
                None => flag
                    .strip_prefix('-')
                    .and_then(|s| s.chars().next())
                    .is_some_and(|c| flag.len() == 2 && a.get_short() == Some(c)),
            };
            named && a.get_action().takes_values()
        })
    };
    let mut skip = false;
    for a in args.iter().filter_map(Value::as_str) {
        if std::mem::take(&mut skip) {
            continue;
        }
        if a.starts_with('-') {
            skip = !a.contains('=') && takes_value(a);
            continue;
        }
        if a.starts_with("https://") || a.starts_with("http://") {
            return Some(a.to_string());
        }
    }
    None
}
