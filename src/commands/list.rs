//! `alibridge list`: every alibridge entry in every client's files (all scopes; project files
//! of the current directory), with whether the binary it runs still exists.

use std::process::ExitCode;

use serde_json::json;

use crate::cli::ListArgs;
use crate::clients::{self, Places};
use crate::logging::notice;

use super::clients_error;

pub fn run(args: ListArgs) -> anyhow::Result<ExitCode> {
    let places = Places::from_env().map_err(clients_error)?;
    let (found, skipped) = clients::find_all(&places);
    for e in skipped {
        notice(format!("skipped: {e}"));
    }
    for f in &found {
        let command = f.command();
        let exists = std::path::Path::new(command).is_file();
        let url = clients::entry_url(&f.entry);
        let (client, scope, name) = (f.client, f.scope, &f.name);
        if args.json {
            let line = json!({
                "client": client.to_string(), "scope": scope.to_string(), "name": name,
                "file": f.file, "url": url, "command": command, "command_exists": exists,
            });
            crate::logging::outln!("{line}");
        } else {
            crate::logging::outln!(
                "{client} ({scope}) {name} → {} [{}]{}",
                url.as_deref().unwrap_or("(no URL)"),
                f.file.display(),
                if exists {
                    String::new()
                } else {
                    format!(
                        " ✗ {command} does not exist: run `alibridge add {client} … --force` again"
                    )
                }
            );
        }
    }
    if found.is_empty() && !args.json {
        notice("no alibridge entries found (add one with `alibridge add <client> <URL>`)");
    }
    Ok(ExitCode::SUCCESS)
}
