//! `alibridge add` / `remove` / `list` against fixture files of every client and scope in a
//! scratch HOME: other servers, comments and odd formatting survive; the entry is read back by
//! the client's own rules (strict JSON for Claude Code, comments allowed where the client
//! allows them, TOML for Codex); idempotence, `--dry-run`, `.bak`, modes, `--force`, `--env`.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::support::bridge::{bin, isolated_command, output};
use crate::support::home::TempHome;

const URL: &str =
    "https://openapi-mcp.cn-hangzhou.aliyuncs.com/accounts/1234/custom/ecs-ops/id/abc/mcp";

/// The binary as `add` writes it: absolute, symlinks resolved.
fn exe() -> String {
    std::fs::canonicalize(bin())
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// The project directory of a test (the working directory of every command).
fn project(home: &TempHome) -> PathBuf {
    let p = home.path().join("proj");
    std::fs::create_dir_all(&p).unwrap();
    p
}

async fn run(home: &TempHome, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = isolated_command(home.path());
    cmd.current_dir(project(home))
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("CODEX_HOME")
        .env_remove("APPDATA")
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    output(cmd).await
}

/// JSON as a client that allows `//` comment lines reads it (the fixtures put comments on
/// lines of their own).
fn read_jsonc(text: &str) -> Value {
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    serde_json::from_str(&code).unwrap_or_else(|e| panic!("{e}:\n{text}"))
}

fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| &v[*k])
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
fn set_mode(p: &Path, m: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

/// A JSON client: where its file lives (relative to HOME; `proj/` is the project), the key
/// path to its servers, whether it allows comments, and the `type` it wants.
struct JsonCase {
    client: &'static str,
    scope: &'static str,
    file: &'static str,
    servers: &'static [&'static str],
    comments: bool,
    typed: bool,
}

const JSON_CASES: &[JsonCase] = &[
    JsonCase { client: "claude-code", scope: "user", file: ".claude.json", servers: &["mcpServers"], comments: false, typed: true },
    JsonCase { client: "claude-code", scope: "project", file: "proj/.mcp.json", servers: &["mcpServers"], comments: false, typed: true },
    JsonCase { client: "claude-desktop", scope: "user", file: ".config/Claude/claude_desktop_config.json", servers: &["mcpServers"], comments: false, typed: false },
    JsonCase { client: "cursor", scope: "user", file: ".cursor/mcp.json", servers: &["mcpServers"], comments: true, typed: true },
    JsonCase { client: "cursor", scope: "project", file: "proj/.cursor/mcp.json", servers: &["mcpServers"], comments: true, typed: true },
    JsonCase { client: "windsurf", scope: "user", file: ".codeium/windsurf/mcp_config.json", servers: &["mcpServers"], comments: false, typed: false },
    JsonCase { client: "vscode", scope: "user", file: ".config/Code/User/mcp.json", servers: &["servers"], comments: true, typed: true },
    JsonCase { client: "vscode", scope: "project", file: "proj/.vscode/mcp.json", servers: &["servers"], comments: true, typed: true },
    JsonCase { client: "cline", scope: "user", file: ".config/Code/User/globalStorage/saoudrizwan.claude-dev/settings/cline_mcp_settings.json", servers: &["mcpServers"], comments: false, typed: true },
    JsonCase { client: "lingma", scope: "user", file: ".lingma/lingma_mcp.json", servers: &["mcpServers"], comments: false, typed: false },
];

/// A fixture with another server, another top-level key, odd spacing and (where the client
/// allows them) comments.
fn json_fixture(c: &JsonCase) -> String {
    let key = c.servers[0];
    let comment = if c.comments {
        "  // my servers, keep this\n"
    } else {
        ""
    };
    format!(
        "{{\n  \"oauthAccount\" :  {{\"email\": \"me@example.com\"}},\n{comment}  \"{key}\": {{\n    \"other\":   {{ \"command\": \"npx\", \"args\": [\"-y\", \"x\"] }}\n  }},\n  \"zzz\": [1,2,   3]\n}}\n"
    )
}

/// Every JSON client and scope: the entry lands where the client reads it, by its rules;
/// everything else stays byte for byte; running it again changes nothing; the previous file
/// is kept as .bak with the file's mode; `remove` restores the original bytes.
#[tokio::test]
async fn add_and_remove_every_json_client_and_scope() {
    for c in JSON_CASES {
        let home = TempHome::new("setup-json");
        let fixture = json_fixture(c);
        let file = home.write(c.file, &fixture);
        #[cfg(unix)]
        set_mode(&file, 0o640);
        let (code, _, err) = run(
            &home,
            &[
                "add",
                c.client,
                URL,
                "--scope",
                c.scope,
                "--",
                "--read-only",
            ],
            &[],
        )
        .await;
        assert_eq!(code, 0, "{} {}: {err}", c.client, c.scope);
        let text = std::fs::read_to_string(&file).unwrap();
        let v = if c.comments {
            assert!(text.contains("// my servers, keep this"), "{text}");
            read_jsonc(&text)
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} wrote invalid JSON ({e}):\n{text}", c.client))
        };
        let servers = at(&v, c.servers);
        let e = &servers["ecs-ops"];
        assert_eq!(
            e["command"],
            exe(),
            "{}: absolute path of the binary",
            c.client
        );
        assert!(Path::new(e["command"].as_str().unwrap()).is_absolute());
        assert_eq!(e["args"], json!([URL, "--read-only"]), "{}", c.client);
        assert_eq!(e.get("type").is_some(), c.typed, "{}: {e}", c.client);
        assert_eq!(
            servers["other"],
            json!({"command": "npx", "args": ["-y", "x"]})
        );
        assert_eq!(v["oauthAccount"]["email"], "me@example.com");
        assert!(
            text.contains("\"zzz\": [1,2,   3]") && text.contains("\"oauthAccount\" :  {"),
            "{text}"
        );
        let bak = PathBuf::from(format!("{}.bak", file.display()));
        assert_eq!(
            std::fs::read_to_string(&bak).unwrap(),
            fixture,
            "{}: .bak",
            c.client
        );
        #[cfg(unix)]
        {
            assert_eq!(mode(&file), 0o640, "{}: mode kept", c.client);
            assert_eq!(mode(&bak), 0o640, "{}: .bak mode", c.client);
        }

        let (code, _, err) = run(
            &home,
            &[
                "add",
                c.client,
                URL,
                "--scope",
                c.scope,
                "--",
                "--read-only",
            ],
            &[],
        )
        .await;
        assert_eq!(code, 0, "{err}");
        assert!(err.contains("nothing changed"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            text,
            "{}: idempotent",
            c.client
        );

        let (code, _, err) = run(
            &home,
            &["remove", c.client, "--name", "ecs-ops", "--scope", c.scope],
            &[],
        )
        .await;
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            fixture,
            "{}: remove undoes add",
            c.client
        );
        let (code, _, err) = run(
            &home,
            &["remove", c.client, "--name", "ecs-ops", "--scope", c.scope],
            &[],
        )
        .await;
        assert_eq!(code, 1, "a second remove finds nothing: {err}");
        assert!(err.contains("no entry"), "{err}");
    }
}

/// Claude Code reads `local` (projects[<dir>].mcpServers of ~/.claude.json) before project
/// and user; `add --scope local` puts it there, next to the project's other settings.
#[tokio::test]
async fn claude_code_local_scope_is_the_project_entry_in_claude_json() {
    let home = TempHome::new("setup-local");
    let dir = std::fs::canonicalize(project(&home)).unwrap();
    let dir = dir.to_string_lossy().into_owned();
    let original =
        json!({"projects": {dir.clone(): {"hasTrustDialogAccepted": true}}, "userID": "u"});
    let file = home.write(
        ".claude.json",
        &serde_json::to_string_pretty(&original).unwrap(),
    );
    let (code, _, err) = run(
        &home,
        &[
            "add",
            "claude-code",
            URL,
            "--scope",
            "local",
            "--name",
            "ops",
        ],
        &[],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let p = &v["projects"][&dir];
    assert_eq!(p["hasTrustDialogAccepted"], true);
    assert_eq!(p["mcpServers"]["ops"]["type"], "stdio");
    assert_eq!(p["mcpServers"]["ops"]["args"], json!([URL]));
    assert_eq!(v["userID"], "u");
    assert!(v.get("mcpServers").is_none(), "not in the user scope");
}

/// Codex: `[mcp_servers.<name>]` with command, args, AccessKey/proxy variables in `env_vars`
/// (Codex clears the environment) and explicit timeouts; comments and unknown keys survive.
#[tokio::test]
async fn codex_toml_keeps_comments_and_forwards_accesskey_variables() {
    for (scope, rel) in [
        ("user", ".codex/config.toml"),
        ("project", "proj/.codex/config.toml"),
    ] {
        let home = TempHome::new("setup-codex");
        let fixture = "# my settings\nmodel = \"o3\"  # pinned\n\n[mcp_servers.other]\ncommand = \"npx\"\nsomething_new = true\n\n[profiles.fast]\nmodel = \"o4-mini\"\n";
        let file = home.write(rel, fixture);
        let (code, _, err) = run(
            &home,
            &["add", "codex", URL, "--scope", scope, "--env", "MY_TOKEN"],
            &[("MY_TOKEN", "s3cr3t-value")],
        )
        .await;
        assert_eq!(code, 0, "{err}");
        let text = std::fs::read_to_string(&file).unwrap();
        for kept in [
            "# my settings",
            "# pinned",
            "something_new = true",
            "[profiles.fast]",
        ] {
            assert!(text.contains(kept), "{kept} lost:\n{text}");
        }
        assert!(
            !text.contains("s3cr3t-value"),
            "a value never goes into the file"
        );
        let doc: toml_edit::DocumentMut = text.parse().unwrap();
        let e = &doc["mcp_servers"]["ecs-ops"];
        assert_eq!(e["command"].as_str(), Some(exe().as_str()));
        assert_eq!(
            e["args"]
                .as_array()
                .unwrap()
                .get(0)
                .and_then(|v| v.as_str()),
            Some(URL)
        );
        let vars: Vec<&str> = e["env_vars"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        for v in [
            "ALIBABA_CLOUD_ACCESS_KEY_ID",
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            "HTTPS_PROXY",
            "MY_TOKEN",
        ] {
            assert!(vars.contains(&v), "{v} in env_vars: {vars:?}");
        }
        assert_eq!(e["startup_timeout_sec"].as_integer(), Some(30));
        assert_eq!(e["tool_timeout_sec"].as_integer(), Some(300));
        let (code, _, err) = run(
            &home,
            &["remove", "codex", "--name", "ecs-ops", "--scope", scope],
            &[],
        )
        .await;
        assert_eq!(code, 0, "{err}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), fixture);
    }
}

/// A missing file (and its folder) is created private; `--dry-run` shows the diff and writes
/// nothing.
#[tokio::test]
async fn dry_run_prints_the_diff_and_new_files_are_private() {
    let home = TempHome::new("setup-new");
    let file = home.path().join(".cursor/mcp.json");
    let (code, out, err) = run(&home, &["add", "cursor", URL, "--dry-run"], &[]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("+++ ") && out.contains("+    \"ecs-ops\": {"),
        "{out}"
    );
    assert!(
        !file.exists() && !home.path().join(".cursor").exists(),
        "dry run writes nothing"
    );

    let (code, _, err) = run(&home, &["add", "cursor", URL], &[]).await;
    assert_eq!(code, 0, "{err}");
    let v = read_jsonc(&std::fs::read_to_string(&file).unwrap());
    assert_eq!(v["mcpServers"]["ecs-ops"]["command"], exe());
    assert!(
        !PathBuf::from(format!("{}.bak", file.display())).exists(),
        "nothing to back up"
    );
    #[cfg(unix)]
    assert_eq!(mode(&file), 0o600);

    let before = std::fs::read_to_string(&file).unwrap();
    let (code, out, _) = run(
        &home,
        &["remove", "cursor", "--name", "ecs-ops", "--dry-run"],
        &[],
    )
    .await;
    assert_eq!(code, 0);
    assert!(out.contains("-    \"ecs-ops\": {"), "{out}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
}

/// A different entry under the same name is refused (exit 2, naming --force) and the file is
/// untouched; `--force` replaces it in place.
#[tokio::test]
async fn a_different_entry_needs_force() {
    let home = TempHome::new("setup-force");
    let (code, _, err) = run(&home, &["add", "claude-code", URL], &[]).await;
    assert_eq!(code, 0, "{err}");
    let file = home.path().join(".claude.json");
    let first = std::fs::read_to_string(&file).unwrap();
    let (code, _, err) = run(
        &home,
        &["add", "claude-code", URL, "--", "--read-only"],
        &[],
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--force") && err.contains("ecs-ops"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), first);
    let (code, _, err) = run(
        &home,
        &["add", "claude-code", URL, "--force", "--", "--read-only"],
        &[],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(
        v["mcpServers"]["ecs-ops"]["args"],
        json!([URL, "--read-only"])
    );
}

/// `--env NAME` references the variable the way each client expands it, never its value; a
/// client with no documented expansion refuses it with what to do instead.
#[tokio::test]
async fn env_is_a_reference_in_the_clients_syntax() {
    let secret = "AKSECRET-must-not-be-written";
    for (client, file, reference) in [
        (
            "claude-code",
            ".claude.json",
            "${ALIBABA_CLOUD_ACCESS_KEY_SECRET}",
        ),
        (
            "cursor",
            ".cursor/mcp.json",
            "${env:ALIBABA_CLOUD_ACCESS_KEY_SECRET}",
        ),
        (
            "vscode",
            ".config/Code/User/mcp.json",
            "${env:ALIBABA_CLOUD_ACCESS_KEY_SECRET}",
        ),
        (
            "windsurf",
            ".codeium/windsurf/mcp_config.json",
            "${ALIBABA_CLOUD_ACCESS_KEY_SECRET}",
        ),
    ] {
        let home = TempHome::new("setup-env");
        let (code, _, err) = run(
            &home,
            &[
                "add",
                client,
                URL,
                "--env",
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            ],
            &[("ALIBABA_CLOUD_ACCESS_KEY_SECRET", secret)],
        )
        .await;
        assert_eq!(code, 0, "{client}: {err}");
        let text = std::fs::read_to_string(home.path().join(file)).unwrap();
        assert!(!text.contains(secret) && !err.contains(secret), "{client}");
        let v = read_jsonc(&text);
        let servers = if client == "vscode" {
            &v["servers"]
        } else {
            &v["mcpServers"]
        };
        assert_eq!(
            servers["ecs-ops"]["env"]["ALIBABA_CLOUD_ACCESS_KEY_SECRET"], reference,
            "{client}"
        );
    }
    let home = TempHome::new("setup-env-refused");
    let (code, _, err) = run(&home, &["add", "claude-desktop", URL, "--env", "X"], &[]).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("aliyun configure") && err.contains("--env"),
        "{err}"
    );
    assert!(!home.path().join(".config/Claude").exists());
    let (code, _, err) = run(&home, &["add", "cursor", URL, "--env", "BAD-NAME"], &[]).await;
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(&home, &["add", "cursor", URL, "--name", "no spaces"], &[]).await;
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(&home, &["add", "windsurf", URL, "--scope", "project"], &[]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--scope user"), "{err}");
}

/// Cherry Studio is set up in its GUI: the import JSON and deeplink are printed, no file is
/// written; Lingma gets its form's field values.
#[tokio::test]
async fn gui_clients_get_what_to_paste() {
    let home = TempHome::new("setup-gui");
    let (code, out, err) = run(&home, &["add", "cherry-studio", URL], &[]).await;
    assert_eq!(code, 0, "{err}");
    let json_end = out.find("\ncherrystudio://").expect("a deeplink");
    let import: Value = serde_json::from_str(&out[..json_end]).unwrap();
    assert_eq!(import["mcpServers"]["ecs-ops"]["command"], exe());
    assert_eq!(
        import["mcpServers"].as_object().unwrap().len(),
        1,
        "exactly one server"
    );
    use base64::Engine;
    let link = out[json_end..]
        .trim()
        .strip_prefix("cherrystudio://mcp/install?servers=")
        .unwrap();
    let decoded: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(link)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(decoded, import);
    let (code, out, _) = run(&home, &["add", "lingma", URL], &[]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("Command: {}", exe())) && out.contains(&format!("Arguments: {URL}")),
        "{out}"
    );
    assert!(
        !home.path().join(".lingma").exists(),
        "no third-party file is made up"
    );
}

/// `list` finds alibridge entries of every client and scope (not other servers) and flags one
/// whose binary is gone; a broken file is refused untouched (exit 1).
#[tokio::test]
async fn list_finds_entries_and_missing_binaries() {
    let home = TempHome::new("setup-list");
    for (client, scope) in [
        ("claude-code", "project"),
        ("codex", "user"),
        ("vscode", "user"),
    ] {
        let (code, _, err) = run(&home, &["add", client, URL, "--scope", scope], &[]).await;
        assert_eq!(code, 0, "{err}");
    }
    home.write(".cursor/mcp.json", "{\"mcpServers\": {\"gone\": {\"command\": \"/nowhere/alibridge\", \"args\": [\"https://x.example/mcp\"]}, \"npx\": {\"command\": \"npx\"}}}");
    let (code, out, err) = run(&home, &["list", "--json"], &[]).await;
    assert_eq!(code, 0, "{err}");
    let rows: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let found: Vec<(String, String, String, bool)> = rows
        .iter()
        .map(|r| {
            (
                r["client"].as_str().unwrap().into(),
                r["scope"].as_str().unwrap().into(),
                r["name"].as_str().unwrap().into(),
                r["command_exists"].as_bool().unwrap(),
            )
        })
        .collect();
    for want in [
        ("claude-code", "project", "ecs-ops", true),
        ("codex", "user", "ecs-ops", true),
        ("vscode", "user", "ecs-ops", true),
        ("cursor", "user", "gone", false),
    ] {
        assert!(
            found.contains(&(want.0.into(), want.1.into(), want.2.into(), want.3)),
            "{want:?} in {found:?}"
        );
    }
    assert_eq!(found.len(), 4, "only alibridge entries: {found:?}");
    let (_, text, _) = run(&home, &["list"], &[]).await;
    assert!(text.contains("/nowhere/alibridge does not exist"), "{text}");

    let broken = home.write(".cursor/mcp.json", "{\"mcpServers\": {");
    let (code, _, err) = run(&home, &["add", "cursor", URL], &[]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("mcp.json"), "{err}");
    assert_eq!(
        std::fs::read_to_string(broken).unwrap(),
        "{\"mcpServers\": {"
    );
}
