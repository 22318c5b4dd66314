//! Entry point: parse the command line, set up logging, dispatch, map the outcome to an exit
//! code. Everything else lives in the library.

use std::process::ExitCode;

use alibridge::{allocator, cli, commands, error, logging};

fn main() -> ExitCode {
    allocator::hold_large_messages();
    let cli = cli::parse();
    if let Err(e) = logging::init(cli.debug, cli.log_file.as_deref()) {
        return error::report(&error::UsageError::LogFile(e).into());
    }
    // One thread: a bridge is I/O-bound, and a single-threaded runtime starts faster and uses
    // less memory than a pool (each desktop client runs one bridge per server). The proxy only
    // moves bytes too; one thread serves its hundreds of connections.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return error::report(&anyhow::Error::new(e).context("cannot start the runtime")),
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Some(cli::Command::PreCheck(a)) => commands::pre_check::run(a).await,
            Some(cli::Command::Login(a)) => commands::login::run(a).await,
            Some(cli::Command::Logout(a)) => commands::logout::run(a).await,
            Some(cli::Command::Status(a)) => commands::status::run(a).await,
            Some(cli::Command::Proxy(a)) => commands::proxy::run(*a).await,
            Some(cli::Command::Add(a)) => commands::add::run(a),
            Some(cli::Command::Remove(a)) => commands::remove::run(a),
            Some(cli::Command::List(a)) => commands::list::run(a),
            Some(cli::Command::Doctor(a)) => commands::doctor::run(a).await,
            Some(cli::Command::Tools(a)) => commands::tools::run(a),
            None => commands::bridge::run(cli.bridge).await,
        }
    });
    // Do not wait for stray tasks (a stuck DELETE, an aborted stream) at exit.
    runtime.shutdown_background();
    match outcome {
        Ok(code) => code,
        Err(e) => error::report(&e),
    }
}
