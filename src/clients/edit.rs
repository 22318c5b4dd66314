//! Reading and editing one client's configuration file: its entries, an entry added or
//! replaced or removed without disturbing anything else ([`super::jsonc`], [`super::toml`]),
//! the atomic write that keeps a `.bak`, and the diff `--dry-run` prints.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{jsonc, toml, ClientsError, Format, Target};

/// The file's current text; `None` when it does not exist.
pub fn read(file: &Path) -> Result<Option<String>, ClientsError> {
    match std::fs::read_to_string(file) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(cause) => Err(ClientsError::Io {
            action: "read",
            file: file.to_path_buf(),
            cause,
        }),
    }
}

/// The entries of `target` in `text`, as JSON values (Codex's tables converted).
pub fn entries(target: &Target, text: &str) -> Result<Vec<(String, Value)>, ClientsError> {
    let malformed = |reason: String| ClientsError::Malformed {
        file: target.file.clone(),
        reason,
    };
    match target.format {
        Format::Toml => toml::entries(text).map_err(malformed),
        Format::Json => {
            let mut v = jsonc::parse(text).map_err(|e| malformed(e.to_string()))?;
            for k in &target.path {
                v = match v {
                    Value::Object(mut m) => m.remove(k).unwrap_or(Value::Null),
                    _ => Value::Null,
                };
            }
            Ok(match v {
                Value::Object(m) => m.into_iter().collect(),
                _ => Vec::new(),
            })
        }
    }
}

/// `text` with `name` set to `entry`.
pub fn upsert(
    target: &Target,
    text: &str,
    name: &str,
    entry: &Value,
) -> Result<String, ClientsError> {
    let malformed = |reason: String| ClientsError::Malformed {
        file: target.file.clone(),
        reason,
    };
    match target.format {
        Format::Toml => toml::upsert(text, name, entry).map_err(malformed),
        Format::Json => {
            let path: Vec<&str> = target.path.iter().map(String::as_str).collect();
            jsonc::upsert(text, &path, name, entry).map_err(|e| malformed(e.to_string()))
        }
    }
}

/// `text` without `name`; `None` when there is no such entry.
pub fn remove(target: &Target, text: &str, name: &str) -> Result<Option<String>, ClientsError> {
    let malformed = |reason: String| ClientsError::Malformed {
        file: target.file.clone(),
        reason,
    };
    match target.format {
        Format::Toml => toml::remove(text, name).map_err(malformed),
        Format::Json => {
            let path: Vec<&str> = target.path.iter().map(String::as_str).collect();
            jsonc::remove(text, &path, name).map_err(|e| malformed(e.to_string()))
        }
    }
}

/// Replaces `file` with `text` atomically (temporary file in the same folder, synced, renamed),
/// keeping the previous content in `<file>.bak` and the previous mode; a new file (and a new
/// folder) is private (0600/0700), since client configs can hold tokens.
pub fn write(file: &Path, text: &str, previous: Option<&str>) -> Result<(), ClientsError> {
    let io = |action: &'static str, cause: std::io::Error| ClientsError::Io {
        action,
        file: file.to_path_buf(),
        cause,
    };
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.exists() {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            b.mode(0o700);
        }
        b.create(dir).map_err(|e| io("create the folder of", e))?;
    }
    let mode = std::fs::metadata(file).ok().map(|m| m.permissions());
    if let Some(prev) = previous {
        let bak = with_suffix(file, ".bak");
        std::fs::write(&bak, prev).map_err(|e| io("back up", e))?;
        if let Some(p) = &mode {
            std::fs::set_permissions(&bak, p.clone()).map_err(|e| io("back up", e))?;
        }
    }
    let tmp = with_suffix(file, &format!(".alibridge-{}.tmp", std::process::id()));
    let written = (|| {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        // `create_new`: never write through a file (or symlink) someone else put there.
        let _ = std::fs::remove_file(&tmp);
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(text.as_bytes())?;
        if let Some(p) = &mode {
            f.set_permissions(p.clone())?;
        }
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, file)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("write", e));
    }
    Ok(())
}

fn with_suffix(file: &Path, suffix: &str) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// A one-hunk line diff of `before` → `after` (unchanged lines around it as context), for
/// `--dry-run`.
pub fn diff(file: &Path, before: &str, after: &str) -> String {
    let a: Vec<&str> = before.lines().collect();
    let b: Vec<&str> = after.lines().collect();
    let pre = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let max_suf = a.len().min(b.len()) - pre;
    let suf = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take(max_suf)
        .take_while(|(x, y)| x == y)
        .count();
    let ctx = 2;
    let from = pre.saturating_sub(ctx);
    let mut out = format!(
        "--- {f}\n+++ {f}\n@@ -{} +{} @@\n",
        from + 1,
        from + 1,
        f = file.display()
    );
    for l in &a[from..pre] {
        out.push_str(&format!(" {l}\n"));
    }
    for l in &a[pre..a.len() - suf] {
        out.push_str(&format!("-{l}\n"));
    }
    for l in &b[pre..b.len() - suf] {
        out.push_str(&format!("+{l}\n"));
    }
    for l in a[a.len() - suf..].iter().take(ctx) {
        out.push_str(&format!(" {l}\n"));
    }
    out
}
