//! `alibridge add <client> [URL] [-- BRIDGE FLAGS]`: writes an entry that runs this very
//! binary (absolute path: GUI clients do not inherit the shell's PATH) into the client's
//! configuration, or prints it for clients set up in a GUI. Idempotent; a different entry of
//! the same name needs `--force`; `--dry-run` prints the diff. Without a URL the entry runs the
//! URL-less Core start.

use std::process::ExitCode;

use serde_json::json;

use crate::cli::{AddArgs, ClientKind};
use crate::clients::{self, ClientsError, Launch, Places};
use crate::config::ConfigError;
use crate::error::UsageError;
use crate::logging::notice;
use crate::net::parse_endpoint;

use super::clients_error;

/// The entry name of the URL-less (Core endpoint) form.
const CORE_NAME: &str = "aliyun";

pub fn run(args: AddArgs) -> anyhow::Result<ExitCode> {
    let allow_http = args.bridge_flags.iter().any(|f| f == "--allow-http");
    let url = match &args.url {
        Some(raw) => Some(
            parse_endpoint(raw, allow_http).map_err(|e| UsageError::from(ConfigError::from(e)))?,
        ),
        None => None,
    };
    let name = args.name.clone().unwrap_or_else(|| match &url {
        Some(url) => clients::name_from_url(url),
        None => CORE_NAME.to_string(),
    });
    let command = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| anyhow::anyhow!("cannot find the path of this alibridge binary: {e}"))?;
    let mut bridge_args: Vec<String> = url.iter().map(|u| u.to_string()).collect();
    bridge_args.extend(args.bridge_flags.iter().cloned());
    if url.is_none() {
        notice(
            "no URL: the entry finds the account's OpenAPI MCP Core endpoint with the AccessKeys \
             each time it starts (check it with `alibridge doctor`)",
        );
    }
    let launch = Launch {
        command: command.to_string_lossy().into_owned(),
        args: bridge_args,
        env: args.env.clone(),
    };
    clients::validate(args.client, &name, &launch).map_err(clients_error)?;
    let places = Places::from_env().map_err(clients_error)?;
    let target = clients::target(args.client, args.scope, &places).map_err(clients_error)?;
    let entry = clients::entry(args.client, &launch);
    print_for_gui(args.client, &name, &launch);
    let Some(target) = target else {
        return Ok(ExitCode::SUCCESS);
    };

    let before = clients::read(&target.file).map_err(clients_error)?;
    let text = before.clone().unwrap_or_default();
    let existing = clients::entries(&target, &text)
        .map_err(clients_error)?
        .into_iter()
        .find(|(k, _)| *k == name);
    if let Some((_, old)) = &existing {
        if *old == entry {
            notice(format!(
                "{}: entry {name:?} is already there; nothing changed",
                target.file.display()
            ));
            return Ok(ExitCode::SUCCESS);
        }
        if !args.force {
            return Err(clients_error(ClientsError::Conflict {
                file: target.file.clone(),
                name,
            }));
        }
    }
    let after = clients::upsert(&target, &text, &name, &entry).map_err(clients_error)?;
    if args.dry_run {
        crate::logging::out!("{}", clients::diff(&target.file, &text, &after));
        notice("dry run: nothing written");
        return Ok(ExitCode::SUCCESS);
    }
    clients::write(&target.file, &after, before.as_deref()).map_err(clients_error)?;
    notice(format!(
        "{} entry {name:?} in {}{}",
        if existing.is_some() {
            "replaced"
        } else {
            "added"
        },
        target.file.display(),
        if before.is_some() {
            " (previous file kept as .bak)"
        } else {
            ""
        }
    ));
    notice(restart_hint(args.client));
    Ok(ExitCode::SUCCESS)
}

/// Clients configured through a GUI get what to paste or type.
fn print_for_gui(client: ClientKind, name: &str, launch: &Launch) {
    match client {
        ClientKind::CherryStudio => {
            let import =
                json!({"mcpServers": {name: {"command": launch.command, "args": launch.args}}});
            use base64::Engine;
            let link = base64::engine::general_purpose::STANDARD
                .encode(serde_json::to_vec(&import).expect("JSON serializes"));
            crate::logging::outln!(
                "{}",
                serde_json::to_string_pretty(&import).expect("JSON serializes")
            );
            crate::logging::outln!("cherrystudio://mcp/install?servers={link}");
            notice("Cherry Studio: Settings → MCP Servers → Add → Import from JSON, paste the JSON above (or open the link), then enable the server");
        }
        ClientKind::Lingma => {
            crate::logging::outln!("Name: {name}");
            crate::logging::outln!("Type: STDIO");
            crate::logging::outln!("Command: {}", launch.command);
            crate::logging::outln!("Arguments: {}", launch.args.join(" "));
            notice("Lingma: MCP tools → MCP Square/My Servers → Add, and fill in the fields above");
        }
        _ => {}
    }
}

fn restart_hint(client: ClientKind) -> &'static str {
    match client {
        ClientKind::ClaudeDesktop => {
            "quit Claude Desktop fully and start it again to load the entry"
        }
        ClientKind::Windsurf => "press refresh in Windsurf's MCP panel to load the entry",
        ClientKind::ClaudeCode => "check it with `claude mcp list` (project entries need approval)",
        ClientKind::Codex => "check it with `codex mcp list`",
        _ => "reload the client to pick up the entry",
    }
}
