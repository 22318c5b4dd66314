//! Log setup, and [`notice`], the one way code speaks to the person at the terminal. Logs go to
//! stderr or to `--log-file`; never to stdout, which belongs to the protocol. Log lines carry
//! message ids, methods and header *names*; the code never passes header values, bodies or
//! tokens to a log macro.

use std::path::Path;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

/// Tells the person at the terminal something that is not a log line: which credential was
/// chosen, the sign-in URL, a warning about where tokens go. Always on stderr (also with
/// `--log-file`: the person is at the terminal, not in the log), prefixed `alibridge: `.
pub fn notice(line: impl std::fmt::Display) {
    eprintln!("alibridge: {line}");
}

/// The message of `err` and of each of its sources, in order: the one place an error chain
/// becomes text. Each error's message says only its own part (a variant with a source never
/// repeats it), so every cause appears once.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> Vec<String> {
    std::iter::successors(Some(err), |e| e.source())
        .map(ToString::to_string)
        .collect()
}

/// [`error_chain`] on one line, `message: cause: cause` (a JSON-RPC error, a `doctor` check).
pub fn error_line(err: &(dyn std::error::Error + 'static)) -> String {
    error_chain(err).join(": ")
}

/// [`notice`] as a plain `fn`, for layers that may not name this module and take the channel
/// as a value (the audit log's once-only warning).
pub fn notice_args(line: std::fmt::Arguments<'_>) {
    notice(line);
}

/// Writes part of a command's report (`status`, `doctor`, `list`, …) to stdout. When stdout is
/// closed under it (`alibridge status | head -1`), the process ends quietly with exit 0, as Unix
/// tools do, instead of panicking. Used through `logging::outln!` and
/// `logging::out!`; never by the bridge, whose stdout is the protocol.
pub fn report(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

/// `println!` for a command's report: see [`report`].
macro_rules! outln {
    () => {
        $crate::logging::report(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::logging::report(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for a command's report: see [`report`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::logging::report(format_args!($($arg)*))
    };
}
pub(crate) use {out, outln};

/// Installs the global subscriber. `debug` raises alibridge's own level to DEBUG.
pub fn init(debug: bool, log_file: Option<&Path>) -> std::io::Result<()> {
    let own = if debug {
        LevelFilter::DEBUG
    } else {
        LevelFilter::INFO
    };
    let others = if debug {
        LevelFilter::INFO
    } else {
        LevelFilter::WARN
    };
    let filter = Targets::new()
        .with_target("alibridge", own)
        .with_default(others);
    let fmt = tracing_subscriber::fmt::layer().with_target(false);
    match log_file {
        Some(path) => {
            let file = open_private(path)?;
            let layer = fmt
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file));
            tracing_subscriber::registry()
                .with(layer.with_filter(filter))
                .init();
        }
        None => {
            use std::io::IsTerminal;
            let ansi = std::io::stderr().is_terminal();
            let layer = fmt.with_ansi(ansi).with_writer(std::io::stderr);
            tracing_subscriber::registry()
                .with(layer.with_filter(filter))
                .init();
        }
    }
    Ok(())
}

/// Opens the log for appending, created 0600 (an existing one is made 0600): debug logs
/// describe the user's cloud activity.
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    crate::private_fs::open_private_append(path)
}
