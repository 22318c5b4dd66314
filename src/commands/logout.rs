//! `alibridge logout <URL>` / `--all`: forget stored sign-ins (files and keychain entries).
//! Tokens already issued stay valid at the server until they expire.

use std::process::ExitCode;

use crate::cli::exit::Exit;

use crate::auth::oauth::discovery::canonical_resource;
use crate::auth::oauth::store::TokenStore;
use crate::cli::LogoutArgs;
use crate::config::ConfigError;
use crate::error::UsageError;
use crate::net::parse_endpoint;

pub async fn run(args: LogoutArgs) -> anyhow::Result<ExitCode> {
    let home = super::state_home()?;
    let store = TokenStore::new(&home, args.store.token_store);
    let servers: Vec<String> = if args.all {
        let mut all: Vec<String> = store.list().into_iter().map(|r| r.server).collect();
        all.dedup();
        all
    } else {
        let raw = args.url.as_deref().unwrap_or_default();
        let url = parse_endpoint(raw, true).map_err(|e| UsageError::from(ConfigError::from(e)))?;
        vec![canonical_resource(&url)]
    };
    if servers.is_empty() {
        crate::logging::outln!("no stored sign-ins");
        return Ok(ExitCode::SUCCESS);
    }
    let mut missing = false;
    for s in servers {
        if store.delete(&s, None)? {
            crate::logging::outln!("signed out of {s}");
        } else {
            crate::logging::outln!("no stored sign-in for {s} (see `alibridge status`)");
            missing = true;
        }
    }
    Ok(if missing && !args.all {
        ExitCode::from(Exit::Failure)
    } else {
        ExitCode::SUCCESS
    })
}
