//! `alibridge tools <URL>`: the pinned tool definitions of an endpoint (`--pin-tools`) and the
//! ones a bridge held back, with what changed; `--approve NAME…` / `--all` pins held-back
//! definitions as last seen, `--forget` drops the endpoint's pins. Reads and writes the pin
//! files only: no network.

use std::process::ExitCode;

use crate::cli::exit::Exit;

use anyhow::Context;

use crate::cli::ToolsArgs;
use crate::error::UsageError;
use crate::net::display_url;
use crate::policy::pins::{self, Change, PinStore};

/// Exit 0 when the pins were shown or changed; 1 when the endpoint has no pins, or a name to
/// approve is not held back.
pub fn run(args: ToolsArgs) -> anyhow::Result<ExitCode> {
    let url = reqwest::Url::parse(args.url.trim()).map_err(|e| {
        UsageError::Config(crate::config::ConfigError::Policy(format!(
            "{:?} is not a URL ({e}); give the endpoint as the bridge was given it",
            args.url
        )))
    })?;
    let endpoint = display_url(&url);
    let store = PinStore::new(&super::state_home()?);
    let mut files = store.all_for(&endpoint)?;
    if let Some(id) = &args.identity {
        files.retain(|(_, f)| &f.identity == id);
    }
    if files.is_empty() {
        eprintln!(
            "alibridge: no pins for {endpoint}{} in {}: a bridge with --pin-tools records them \
             at its first listing",
            args.identity
                .as_deref()
                .map(|i| format!(" and identity {i}"))
                .unwrap_or_default(),
            store.dir().display()
        );
        return Ok(ExitCode::from(Exit::Failure));
    }
    if args.forget {
        for (path, f) in &files {
            store.forget(path)?;
            crate::logging::outln!("forgot the pins of {} for {}", f.endpoint, f.identity);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut missing_anywhere: Vec<String> = args.approve.clone();
    for (_, f) in &mut files {
        if args.all || !args.approve.is_empty() {
            let missing = f.approve(&args.approve, args.all);
            missing_anywhere.retain(|n| missing.contains(n));
            store.save(f).context("could not write the pins")?;
        }
        crate::logging::outln!("{} ({}):", f.endpoint, f.identity);
        crate::logging::outln!("  pinned ({}):", f.pinned.len());
        for (name, p) in &f.pinned {
            crate::logging::outln!("    {name}  {}  {}", &p.digest[..12], p.at);
        }
        if f.pending.is_empty() {
            crate::logging::outln!("  pending: none");
            continue;
        }
        crate::logging::outln!("  pending: held back until approved ({}):", f.pending.len());
        let asks: Vec<(String, Change)> = f
            .pending
            .iter()
            .map(|(name, p)| {
                let change = match f.pinned.get(name) {
                    Some(old) => Change::Changed(pins::diff(&old.definition, &p.definition)),
                    None => Change::New,
                };
                (name.clone(), change)
            })
            .collect();
        for line in pins::describe(&asks).lines() {
            crate::logging::outln!("    {line}");
        }
        crate::logging::outln!(
            "  approve with: alibridge tools {} --approve NAME… (or --all)",
            f.endpoint
        );
    }
    if !missing_anywhere.is_empty() {
        eprintln!(
            "alibridge: not held back for {endpoint}: {} (see the list above)",
            missing_anywhere.join(", ")
        );
        return Ok(ExitCode::from(Exit::Failure));
    }
    Ok(ExitCode::SUCCESS)
}
