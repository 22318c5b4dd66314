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
    let mut found = 0;
    for &client in clients::ALL {
        for &scope in clients::scopes(client) {
            let Some(target) = clients::target(client, scope, &places).map_err(clients_error)?
            else {
                continue;
            };
            let Some(text) = clients::read(&target.file).map_err(clients_error)? else {
                continue;
            };
            let entries = match clients::entries(&target, &text) {
                Ok(e) => e,
                Err(e) => {
                    notice(format!("skipped: {e}"));
                    continue;
                }
            };
            for (name, entry) in entries
                .into_iter()
                .filter(|(_, e)| clients::is_alibridge(e))
            {
                found += 1;
                let command = entry["command"].as_str().unwrap_or_default();
                let exists = std::path::Path::new(command).is_file();
                let url = clients::entry_url(&entry);
                if args.json {
                    let line = json!({
                        "client": client.to_string(), "scope": scope.to_string(), "name": name,
                        "file": target.file, "url": url, "command": command,
                        "command_exists": exists,
                    });
                    println!("{line}");
                } else {
                    println!(
                        "{client} ({scope}) {name} → {} [{}]{}",
                        url.as_deref().unwrap_or("(no URL)"),
                        target.file.display(),
                        if exists {
                            String::new()
                        } else {
                            format!(" ✗ {command} does not exist: run `alibridge add {client} … --force` again")
                        }
                    );
                }
            }
        }
    }
    if found == 0 && !args.json {
        notice("no alibridge entries found (add one with `alibridge add <client> <URL>`)");
    }
    Ok(ExitCode::SUCCESS)
}
