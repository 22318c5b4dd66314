//! What alibridge knows about MCP clients' configuration files: where each client keeps its
//! stdio server entries (per OS and scope), the shape of an entry, how it references an
//! environment variable, and how to edit the file without disturbing anything else
//! ([`jsonc`] for JSON/JSONC, `toml_edit` for Codex). Used by `add`, `remove` and `list`;
//! see `/work/shared/reference/clients.md` for the sources behind each rule.

pub mod jsonc;
pub mod toml;

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::cli::{ClientKind, Scope};

/// Failures of `add`/`remove`/`list`; [`ClientsError::is_usage`] says which are the user's to
/// fix on the command line (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum ClientsError {
    #[error("{client} has no {scope} scope; use {supported}")]
    NoSuchScope {
        client: ClientKind,
        scope: Scope,
        supported: &'static str,
    },
    #[error("{client} does not document variable expansion, so --env cannot reference a variable there without writing its value; keep the secret in an aliyun CLI profile (`aliyun configure`), which alibridge reads on its own, and drop --env")]
    EnvNotExpanded { client: ClientKind },
    #[error("the entry name {0:?} may only contain letters, digits, '-' and '_' (use --name)")]
    BadName(String),
    #[error("the variable name {0:?} is not a valid environment variable name")]
    BadEnvName(String),
    #[error("{file} already has a different entry named {name:?}; pass --force to replace it, or --name to pick another name")]
    Conflict { file: PathBuf, name: String },
    #[error("cannot read {file}: {reason}; fix or move the file and try again")]
    Malformed { file: PathBuf, reason: String },
    #[error("cannot {action} {file}: {cause}")]
    Io {
        action: &'static str,
        file: PathBuf,
        /// Part of the message (this error has no separate source, so it is printed once).
        cause: std::io::Error,
    },
}

impl ClientsError {
    pub fn is_usage(&self) -> bool {
        !matches!(self, Self::Io { .. } | Self::Malformed { .. })
    }
}

/// Reads an environment variable (a closure, so tests and callers can supply their own).
pub type VarLookup = Box<dyn Fn(&str) -> Option<String>>;

/// Where the person's files are: the home directory, the project directory, and the
/// environment (for `APPDATA`, `XDG_CONFIG_HOME`, `CODEX_HOME`).
pub struct Places {
    pub home: PathBuf,
    pub project: PathBuf,
    pub var: VarLookup,
}

impl Places {
    /// From this process's environment and working directory.
    pub fn from_env() -> Result<Self, ClientsError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let home = var("HOME")
            .or_else(|| var("USERPROFILE"))
            .map(PathBuf::from)
            .ok_or_else(|| ClientsError::Io {
                action: "find",
                file: PathBuf::from("the home directory"),
                cause: std::io::Error::other("set HOME (USERPROFILE on Windows)"),
            })?;
        let project = std::env::current_dir().map_err(|cause| ClientsError::Io {
            action: "read",
            file: PathBuf::from("the current directory"),
            cause,
        })?;
        Ok(Self {
            home,
            project,
            var: Box::new(var),
        })
    }

    /// The per-user application data folder: `~/Library/Application Support` (macOS),
    /// `%APPDATA%` (Windows), `$XDG_CONFIG_HOME` or `~/.config` (elsewhere).
    fn app_data(&self) -> PathBuf {
        if cfg!(target_os = "macos") {
            self.home.join("Library/Application Support")
        } else if cfg!(windows) {
            (self.var)("APPDATA")
                .map(PathBuf::from)
                .unwrap_or_else(|| self.home.join("AppData/Roaming"))
        } else {
            (self.var)("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| self.home.join(".config"))
        }
    }
}

/// How a client's file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON that may hold comments; entries under the key path.
    Json,
    /// Codex's TOML, `[mcp_servers.<name>]`.
    Toml,
}

/// One place a client reads server entries from.
#[derive(Debug, Clone)]
pub struct Target {
    pub client: ClientKind,
    pub scope: Scope,
    pub file: PathBuf,
    pub format: Format,
    /// Keys from the top of the file to the object holding the entries.
    pub path: Vec<String>,
}

/// What an entry runs: the bridge binary (absolute path), its arguments, and the names of the
/// variables it needs from the client's environment (never their values).
#[derive(Debug, Clone)]
pub struct Launch {
    pub command: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
}

/// Variables Codex must forward (it clears the environment of its servers): AccessKeys, the
/// aliyun profile, and proxy settings, so `--auth auto` finds what it finds in a terminal.
pub const CODEX_FORWARDED: &[&str] = &[
    "ALIBABA_CLOUD_ACCESS_KEY_ID",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
    "ALIBABA_CLOUD_SECURITY_TOKEN",
    "ALIBABA_CLOUD_PROFILE",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "NO_PROXY",
    "ALIBRIDGE_HOME",
];

/// Codex's start-up and per-tool limits, set explicitly (its defaults changed between
/// versions: 10 s/60 s in the docs, 30 s/300 s in newer code).
pub const CODEX_STARTUP_TIMEOUT_SEC: i64 = 30;
pub const CODEX_TOOL_TIMEOUT_SEC: i64 = 300;

/// Every client, for `list`.
pub const ALL: &[ClientKind] = &[
    ClientKind::ClaudeCode,
    ClientKind::ClaudeDesktop,
    ClientKind::Codex,
    ClientKind::Cursor,
    ClientKind::Windsurf,
    ClientKind::Vscode,
    ClientKind::Cline,
    ClientKind::CherryStudio,
    ClientKind::Lingma,
];

/// The scopes a client has, the first being the default.
pub fn scopes(client: ClientKind) -> &'static [Scope] {
    match client {
        ClientKind::ClaudeCode => &[Scope::User, Scope::Project, Scope::Local],
        ClientKind::Codex | ClientKind::Cursor | ClientKind::Vscode => {
            &[Scope::User, Scope::Project]
        }
        _ => &[Scope::User],
    }
}

/// The file `client` reads at `scope`; `None` for a client configured only through its GUI
/// (Cherry Studio), or Lingma when its third-party file does not exist.
pub fn target(
    client: ClientKind,
    scope: Scope,
    at: &Places,
) -> Result<Option<Target>, ClientsError> {
    if !scopes(client).contains(&scope) {
        return Err(ClientsError::NoSuchScope {
            client,
            scope,
            supported: match scopes(client).len() {
                1 => "--scope user (the only one)",
                2 => "--scope user or --scope project",
                _ => "--scope user, project or local",
            },
        });
    }
    let home = &at.home;
    let proj = &at.project;
    let json = |file: PathBuf, path: &[&str]| Target {
        client,
        scope,
        file,
        format: Format::Json,
        path: path.iter().map(|s| s.to_string()).collect(),
    };
    let vscode_user = at.app_data().join("Code/User");
    Ok(Some(match (client, scope) {
        (ClientKind::ClaudeCode, Scope::User) => json(home.join(".claude.json"), &["mcpServers"]),
        (ClientKind::ClaudeCode, Scope::Project) => json(proj.join(".mcp.json"), &["mcpServers"]),
        (ClientKind::ClaudeCode, Scope::Local) => {
            let dir = proj.to_string_lossy().into_owned();
            let mut t = json(home.join(".claude.json"), &["projects"]);
            t.path.push(dir);
            t.path.push("mcpServers".into());
            t
        }
        (ClientKind::ClaudeDesktop, _) => json(
            at.app_data().join("Claude/claude_desktop_config.json"),
            &["mcpServers"],
        ),
        (ClientKind::Codex, Scope::User) => {
            let dir = (at.var)("CODEX_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(".codex"));
            Target {
                client,
                scope,
                file: dir.join("config.toml"),
                format: Format::Toml,
                path: vec!["mcp_servers".into()],
            }
        }
        (ClientKind::Codex, _) => Target {
            client,
            scope,
            file: proj.join(".codex/config.toml"),
            format: Format::Toml,
            path: vec!["mcp_servers".into()],
        },
        (ClientKind::Cursor, Scope::User) => json(home.join(".cursor/mcp.json"), &["mcpServers"]),
        (ClientKind::Cursor, _) => json(proj.join(".cursor/mcp.json"), &["mcpServers"]),
        (ClientKind::Windsurf, _) => json(
            home.join(".codeium/windsurf/mcp_config.json"),
            &["mcpServers"],
        ),
        (ClientKind::Vscode, Scope::User) => json(vscode_user.join("mcp.json"), &["servers"]),
        (ClientKind::Vscode, _) => json(proj.join(".vscode/mcp.json"), &["servers"]),
        (ClientKind::Cline, _) => json(
            vscode_user
                .join("globalStorage/saoudrizwan.claude-dev/settings/cline_mcp_settings.json"),
            &["mcpServers"],
        ),
        (ClientKind::CherryStudio, _) => return Ok(None),
        (ClientKind::Lingma, _) => {
            // Third-party only (unverified): written when it already exists.
            let file = home.join(".lingma/lingma_mcp.json");
            if !file.exists() {
                return Ok(None);
            }
            json(file, &["mcpServers"])
        }
    }))
}

/// How `client` expands an environment variable in an entry, or `None` when that is not
/// documented (then `--env` is refused rather than guessed).
fn env_reference(client: ClientKind, name: &str) -> Option<String> {
    match client {
        ClientKind::ClaudeCode | ClientKind::Windsurf => Some(format!("${{{name}}}")),
        ClientKind::Cursor | ClientKind::Vscode => Some(format!("${{env:{name}}}")),
        _ => None,
    }
}

/// Checks `--name` and `--env` names and that `client` can take `--env`.
pub fn validate(client: ClientKind, name: &str, launch: &Launch) -> Result<(), ClientsError> {
    let ok_name = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    };
    if !ok_name(name) {
        return Err(ClientsError::BadName(name.to_string()));
    }
    for v in &launch.env {
        let valid = !v.is_empty()
            && !v.as_bytes()[0].is_ascii_digit()
            && v.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
        if !valid {
            return Err(ClientsError::BadEnvName(v.clone()));
        }
    }
    if !launch.env.is_empty() && client != ClientKind::Codex && env_reference(client, "X").is_none()
    {
        return Err(ClientsError::EnvNotExpanded { client });
    }
    Ok(())
}

/// The entry as `client` wants it (Codex's as the JSON image of its TOML table).
pub fn entry(client: ClientKind, launch: &Launch) -> Value {
    let mut e = Map::new();
    if matches!(
        client,
        ClientKind::ClaudeCode | ClientKind::Cursor | ClientKind::Vscode | ClientKind::Cline
    ) {
        e.insert("type".into(), json!("stdio"));
    }
    e.insert("command".into(), json!(launch.command));
    e.insert("args".into(), json!(launch.args));
    match client {
        ClientKind::Codex => {
            let mut names: Vec<String> = CODEX_FORWARDED.iter().map(|s| s.to_string()).collect();
            for n in &launch.env {
                if !names.contains(n) {
                    names.push(n.clone());
                }
            }
            e.insert("env_vars".into(), json!(names));
            e.insert(
                "startup_timeout_sec".into(),
                json!(CODEX_STARTUP_TIMEOUT_SEC),
            );
            e.insert("tool_timeout_sec".into(), json!(CODEX_TOOL_TIMEOUT_SEC));
        }
        _ if !launch.env.is_empty() => {
            let env: Map<String, Value> = launch
                .env
                .iter()
                .filter_map(|n| Some((n.clone(), json!(env_reference(client, n)?))))
                .collect();
            e.insert("env".into(), Value::Object(env));
        }
        _ => {}
    }
    Value::Object(e)
}

/// A name for the entry from the endpoint: the OpenAPI MCP server's name
/// (`…/custom/<name>/id/…` or `…/api/<name>/…`), else the first label of the host.
pub fn name_from_url(url: &url::Url) -> String {
    let segs: Vec<&str> = url.path_segments().map(|s| s.collect()).unwrap_or_default();
    let picked = segs
        .windows(2)
        .find(|w| matches!(w[0], "custom" | "api") && !w[1].is_empty())
        .map(|w| w[1].to_string())
        .or_else(|| {
            url.host_str()
                .map(|h| h.split('.').next().unwrap_or(h).to_string())
        })
        .unwrap_or_else(|| "alibridge".into());
    let clean: String = picked
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if clean.trim_matches('-').is_empty() {
        "alibridge".into()
    } else {
        clean
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_server_name_or_the_host() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert_eq!(
            name_from_url(&u(
                "https://openapi-mcp.cn-hangzhou.aliyuncs.com/accounts/1/custom/my.srv/id/x/mcp"
            )),
            "my-srv"
        );
        assert_eq!(name_from_url(&u("https://mcp.example.com/mcp")), "mcp");
        assert_eq!(name_from_url(&u("http://127.0.0.1:9/mcp")), "127");
    }

    #[test]
    fn diff_shows_only_the_changed_lines() {
        let d = diff(Path::new("f"), "a\nb\nc\nd\ne\n", "a\nb\nX\nd\ne\n");
        assert!(d.contains("-c\n+X\n"), "{d}");
        assert!(!d.contains("-a"), "{d}");
    }

    #[test]
    fn the_entry_url_is_the_positional_argument() {
        let url = |args: serde_json::Value| entry_url(&serde_json::json!({"args": args}));
        assert_eq!(
            url(serde_json::json!(["https://h/mcp", "--read-only"])).as_deref(),
            Some("https://h/mcp")
        );
        assert_eq!(
            url(serde_json::json!([
                "--ims-endpoint",
                "http://127.0.0.1:1",
                "--read-only"
            ])),
            None
        );
        assert_eq!(
            url(serde_json::json!([
                "-H",
                "X: https://a",
                "--discovery-endpoint=https://b",
                "https://c/mcp"
            ]))
            .as_deref(),
            Some("https://c/mcp")
        );
    }
}
