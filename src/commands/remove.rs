//! `alibridge remove <client> --name NAME`: undoes `add` (the file keeps everything else, a
//! `.bak` of the previous content is kept).

use std::process::ExitCode;

use crate::cli::exit::Exit;

use crate::cli::RemoveArgs;
use crate::clients::{self, Places};
use crate::logging::notice;

use super::clients_error;

pub fn run(args: RemoveArgs) -> anyhow::Result<ExitCode> {
    let places = Places::from_env().map_err(clients_error)?;
    let Some(target) = clients::target(args.client, args.scope, &places).map_err(clients_error)?
    else {
        notice(format!(
            "{} keeps its servers in the app: remove {:?} there",
            args.client, args.name
        ));
        return Ok(ExitCode::from(Exit::Failure));
    };
    let before = clients::read(&target.file).map_err(clients_error)?;
    let after = match &before {
        Some(text) => clients::remove(&target, text, &args.name).map_err(clients_error)?,
        None => None,
    };
    let (Some(before), Some(after)) = (before, after) else {
        notice(format!(
            "{} has no entry {:?} (see `alibridge list`)",
            target.file.display(),
            args.name
        ));
        return Ok(ExitCode::from(Exit::Failure));
    };
    if args.dry_run {
        crate::logging::out!("{}", clients::diff(&target.file, &before, &after));
        notice("dry run: nothing written");
        return Ok(ExitCode::SUCCESS);
    }
    clients::write(&target.file, &after, Some(&before)).map_err(clients_error)?;
    notice(format!(
        "removed entry {:?} from {} (previous file kept as .bak)",
        args.name,
        target.file.display()
    ));
    Ok(ExitCode::SUCCESS)
}
