//! What alibridge knows about MCP clients' configuration files: where each client keeps its
//! stdio server entries (per OS and scope), the shape of an entry, how it references an
//! environment variable, and how to edit the file without disturbing anything else
//! ([`jsonc`] for JSON/JSONC, `toml_edit` for Codex). Used by `add`, `remove` and `list`.
//! Layout: this file (where each client's file is, the shape of an entry), [`edit`] (reading
//! and rewriting one file), [`found`] (alibridge's entries across every client);
//! see `/work/shared/reference/clients.md` for the sources behind each rule.

pub mod edit;
pub mod found;
pub mod jsonc;
pub mod toml;

pub use edit::{diff, entries, read, remove, upsert, write};
pub use found::{entry_url, find_all, is_alibridge, Found};

use std::path::PathBuf;

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
        let d = diff(
            std::path::Path::new("f"),
            "a\nb\nc\nd\ne\n",
            "a\nb\nX\nd\ne\n",
        );
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
