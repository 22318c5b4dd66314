//! The command-line surface: clap derive types whose doc comments are the `--help` text, the
//! value parsers every flag of a kind shares (one for seconds, one for sizes), and, in
//! [`resolve`], the step that turns these raw values into the validated configurations the
//! layers below take ([`crate::config::BridgeConfig`], [`crate::proxy::config::ProxyConfig`],
//! [`crate::auth::AuthConfig`]). Parsing does no I/O.
//!
//! Subcommands (`login`, `pre-check`, `proxy`, …) sit beside the positional URL:
//! `alibridge <URL> [flags]` runs the bridge, `alibridge <COMMAND> …` runs a command.
//! `--debug` and `--log-file` are global: they work with every command.
//!
//! Layout: this file (the top level, [`parse`], the value parsers and limits), [`commands`]
//! (each command's arguments), [`flags`] (the groups several commands flatten in, each flag
//! defined once), [`exit`] (the exit codes, also the `--help` epilogue), [`resolve`].

// The doc comments of the flags below are `--help` text, written for a terminal: URLs and
// `<placeholders>` stay as they are rather than as rustdoc markup.
#![allow(rustdoc::bare_urls, rustdoc::invalid_html_tags)]

pub mod commands;
pub mod exit;
pub mod flags;
pub mod resolve;
pub mod telemetry;

pub use commands::{
    AddArgs, BridgeArgs, ClientKind, DoctorArgs, ListArgs, LoginArgs, LogoutArgs, PreCheckArgs,
    ProxyArgs, RemoveArgs, Scope, StatusArgs, ToolsArgs,
};

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::env;

/// Bridge a stdio MCP client to a remote MCP server (Streamable HTTP or HTTP+SSE).
///
/// Reads newline-delimited JSON-RPC on stdin, relays it to URL, and writes the server's messages
/// to stdout. Logs go to stderr (or --log-file), never stdout.
#[derive(Debug, Parser)]
#[command(name = "alibridge", version, about, max_term_width = 100)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
#[command(after_help = exit::help())]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub bridge: BridgeArgs,

    /// Verbose logs (header names, never values; message ids and methods, never bodies or
    /// tokens).
    #[arg(long, global = true, env = env::ALIBRIDGE_DEBUG, value_parser = clap::builder::BoolishValueParser::new())]
    pub debug: bool,

    /// Append logs to this file (created 0600) instead of stderr (MCP hosts often hide
    /// stderr).
    #[arg(long, global = true, value_name = "PATH", env = env::ALIBRIDGE_LOG_FILE)]
    pub log_file: Option<PathBuf>,
}

/// Commands that sit beside `alibridge <URL>`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// One-time check, in a browser, that the OpenAPI MCP application is authorized for your
    /// account (needed before AccessKey credentials can mint tokens).
    PreCheck(PreCheckArgs),
    /// Sign in to an MCP server ahead of time (OAuth), e.g. over SSH with --no-browser.
    Login(LoginArgs),
    /// Forget stored sign-ins.
    Logout(LogoutArgs),
    /// Show stored sign-ins (server, identity, expiry, store) and the AccessKey source.
    Status(StatusArgs),
    /// Run a local HTTP proxy for MCP clients that speak HTTP but not Alibaba Cloud
    /// authentication (Dify, LangChain, …): every request is forwarded upstream with this
    /// machine's credentials, limited by --allowed-servers / --blocked-servers.
    Proxy(Box<ProxyArgs>),
    /// Add an alibridge entry for URL to an MCP client's configuration (absolute path of this
    /// binary, the bridge flags after `--`); prints the entry for clients set up in a GUI.
    Add(AddArgs),
    /// Remove an entry `add` wrote.
    Remove(RemoveArgs),
    /// Show every alibridge entry found in the clients' configurations.
    List(ListArgs),
    /// Check the set-up of URL (or of every entry `list` finds): clock, DNS/TCP/TLS, the
    /// credential, MCP initialize and tools, client configs. One line per check, ✓ or ✗ with
    /// the fix; exit 0 only when all pass.
    Doctor(DoctorArgs),
    /// Show the pinned tool definitions of URL and the ones held back (--pin-tools) with what
    /// changed; approve or forget them.
    Tools(ToolsArgs),
}

/// Ceilings of the duration flags, in seconds. Values past them are refused as usage errors, so
/// no later `Instant + Duration` or `Duration + Duration` can overflow, and a typo such as
/// `1e9` does not silently mean "forever".
pub const MAX_CONNECT_TIMEOUT: u32 = 600;
pub const MAX_REQUEST_TIMEOUT: u32 = 7 * 24 * 3600;
pub const MAX_SHUTDOWN_GRACE: u32 = 3600;
pub const MAX_AUTH_TIMEOUT: u32 = 24 * 3600;
pub const MAX_TOKEN_REFRESH_SKEW: u32 = 24 * 3600;
pub const MAX_CONFIRM_TIMEOUT: u32 = 24 * 3600;
pub const MAX_KEEP_ALIVE: u32 = 3600;

/// Bounds of the size flags: `--max-message-size` (at least 1 KiB) and `proxy --max-body-size`;
/// both are held in memory, so at most 4 GiB.
pub const MIN_MESSAGE_SIZE: u64 = 1 << 10;
pub const MAX_SIZE: u64 = 4 << 30;

/// The value parser of every duration flag: seconds from 0 to `max`, fractions allowed;
/// NaN, infinities, negatives and anything past `max` are usage errors, so no later
/// `Instant + Duration` can overflow and a typo such as `1e9` does not mean "forever".
fn seconds(max: u32) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |raw: &str| {
        let bad = || format!("expected a number of seconds from 0 to {max}");
        let v: f64 = raw.trim().parse().map_err(|_| bad())?;
        if v.is_finite() && (0.0..=f64::from(max)).contains(&v) {
            Duration::try_from_secs_f64(v).map_err(|_| bad())
        } else {
            Err(bad())
        }
    }
}

/// The value parser of every size flag: `33554432`, `32M`, `32MiB`, `512k`, `1G` (binary
/// multiples; `KB`/`MB`/`GB` mean the same as `KiB`/`MiB`/`GiB` here), from `min` to `max`.
fn byte_size(
    min: u64,
    max: u64,
) -> impl Fn(&str) -> Result<u64, String> + Clone + Send + Sync + 'static {
    move |raw: &str| {
        let bad = || {
            format!(
                "expected a size in bytes, optionally with a K, M or G suffix (e.g. 32M), from \
                 {} to {}",
                crate::jsonrpc::human_size(min),
                crate::jsonrpc::human_size(max)
            )
        };
        let t = raw.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(split);
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let shift = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 0,
            "k" | "kb" | "kib" => 10,
            "m" | "mb" | "mib" => 20,
            "g" | "gb" | "gib" => 30,
            _ => return Err(bad()),
        };
        let bytes = n.checked_mul(1 << shift).ok_or_else(bad)?;
        if (min..=max).contains(&bytes) {
            Ok(bytes)
        } else {
            Err(bad())
        }
    }
}

/// The clap command, with every environment variable shown in `--help` as `[env: NAME]`:
/// never its value (it may be a secret), and not a misleading `NAME=` when it is unset.
pub fn command() -> clap::Command {
    fn hide_values(cmd: clap::Command) -> clap::Command {
        cmd.mut_args(|a| a.hide_env_values(true))
            .mut_subcommands(hide_values)
    }
    hide_values(<Cli as clap::CommandFactory>::command())
}

/// Parses argv; exits with clap's usage error (code 2) or help/version output (code 0).
pub fn parse() -> Cli {
    use clap::FromArgMatches;
    Cli::from_arg_matches(&command().get_matches()).unwrap_or_else(|e| e.exit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::access_key::site::Site;
    use crate::cli::flags::SiteArg;
    use crate::upstream::TransportMode;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
        command().debug_assert();
    }

    #[test]
    fn help_names_environment_variables_without_values() {
        let help = command().render_long_help().to_string();
        assert!(help.contains("[env: ALIBRIDGE_DEBUG]"), "{help}");
        assert!(!help.contains("=]"), "{help}");
        let mut pre_check = command();
        let pre_check = pre_check.find_subcommand_mut("pre-check").unwrap();
        let help = pre_check.render_long_help().to_string();
        assert!(help.contains("[env: ALIBRIDGE_AUTH_TIMEOUT]"), "{help}");
    }

    #[test]
    fn pre_check_takes_the_shared_flags_and_its_old_timeout_name() {
        for flag in ["--timeout", "--auth-timeout"] {
            let cli =
                Cli::try_parse_from(["alibridge", "pre-check", "--site-type", "CN", flag, "7"])
                    .unwrap();
            let Some(Command::PreCheck(a)) = cli.command else {
                panic!("not pre-check");
            };
            assert_eq!(a.browser.auth_timeout, Duration::from_secs(7));
        }
        assert!(
            Cli::try_parse_from(["alibridge", "pre-check"]).is_err(),
            "--site-type is required"
        );
        assert!(
            Cli::try_parse_from(["alibridge", "https://x/mcp", "--timeout", "7"]).is_err(),
            "the old name is pre-check's only"
        );
    }

    #[test]
    fn headers_repeat_and_transport_parses() {
        let cli = Cli::try_parse_from([
            "alibridge",
            "https://x/mcp",
            "--header",
            "A: 1",
            "-H",
            "B:2",
            "--transport",
            "sse-only",
        ])
        .unwrap();
        assert_eq!(cli.bridge.headers, vec!["A: 1", "B:2"]);
        assert!(cli.command.is_none());
        assert_eq!(cli.bridge.transport, Some(TransportMode::SseOnly));
    }

    #[test]
    fn pre_check_is_a_subcommand_and_url_is_optional() {
        let cli = Cli::try_parse_from(["alibridge", "pre-check", "--site-type", "intl"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::PreCheck(PreCheckArgs {
                site: SiteArg {
                    site_type: Some(Site::Intl)
                },
                ..
            }))
        ));
        // No URL is the Core start (the endpoint is found with AccessKeys).
        assert!(Cli::try_parse_from(["alibridge"])
            .unwrap()
            .bridge
            .url
            .is_none());
        assert!(
            Cli::try_parse_from(["alibridge", "pre-check"]).is_err(),
            "--site-type is required"
        );
    }

    #[test]
    fn unknown_flag_is_rejected() {
        assert!(Cli::try_parse_from(["alibridge", "https://x/mcp", "--nope"]).is_err());
    }

    #[test]
    fn duration_flags_refuse_values_that_could_overflow() {
        let parse = |flag: &str, v: &str| {
            Cli::try_parse_from(["alibridge", "https://x/mcp", flag, v]).map(|c| c.bridge)
        };
        for v in [
            "1e308",
            "inf",
            "-inf",
            "NaN",
            "-1",
            "18446744073709551616",
            "604801",
            "",
            "ten",
        ] {
            assert!(
                parse("--request-timeout", v).is_err(),
                "--request-timeout {v}"
            );
        }
        for flag in [
            "--connect-timeout",
            "--shutdown-grace",
            "--auth-timeout",
            "--token-refresh-skew",
        ] {
            let e = parse(flag, "1e308").unwrap_err().to_string();
            assert!(e.contains("expected a number of seconds from 0 to"), "{e}");
        }
        assert_eq!(
            parse("--request-timeout", "604800")
                .unwrap()
                .request_timeout,
            Duration::from_secs(604800)
        );
        assert_eq!(
            parse("--connect-timeout", "0.5")
                .unwrap()
                .front
                .connection
                .connect_timeout,
            Duration::from_millis(500)
        );
        assert!(parse("--connect-timeout", "601").is_err());
        assert!(Cli::try_parse_from([
            "alibridge",
            "pre-check",
            "--site-type",
            "cn",
            "--timeout",
            "1e30"
        ])
        .is_err());
        assert!(Cli::try_parse_from(["alibridge", "proxy", "--shutdown-grace", "NaN"]).is_err());
    }

    #[test]
    fn message_size_takes_bytes_and_binary_suffixes() {
        let byte_size = byte_size(MIN_MESSAGE_SIZE, MAX_SIZE);
        assert_eq!(byte_size("33554432"), Ok(32 << 20));
        assert_eq!(byte_size("32M"), Ok(32 << 20));
        assert_eq!(byte_size("32 MiB"), Ok(32 << 20));
        assert_eq!(byte_size("512k"), Ok(512 << 10));
        assert_eq!(byte_size("1KB"), Ok(1024));
        assert_eq!(byte_size("4G"), Ok(4 << 30));
        for bad in [
            "",
            "0",
            "1023",
            "5G",
            "1.5M",
            "-1M",
            "32X",
            "M",
            "99999999999999999999G",
            "18446744073709551615G",
        ] {
            assert!(byte_size(bad).is_err(), "{bad:?}");
        }
        let cli = Cli::try_parse_from(["alibridge", "https://x/mcp"]).unwrap();
        assert_eq!(cli.bridge.max_message_size, 32 << 20);
        assert_eq!(cli.bridge.max_in_flight, 256);
        assert!(
            Cli::try_parse_from(["alibridge", "https://x/mcp", "--max-in-flight", "0"]).is_err()
        );
        let body = super::byte_size(1, MAX_SIZE);
        assert_eq!(body("1000"), Ok(1000));
        assert_eq!(body(" 32 MiB "), Ok(32 << 20));
        for bad in ["", "MiB", "-1", "1.5MiB", "10 parsecs", "0", "5GiB"] {
            assert!(body(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_and_log_file_work_with_every_command() {
        let cli = Cli::try_parse_from(["alibridge", "--debug", "https://x/mcp"]).unwrap();
        assert!(cli.debug);
        let cli =
            Cli::try_parse_from(["alibridge", "proxy", "--debug", "--log-file", "/tmp/l"]).unwrap();
        assert!(cli.debug && cli.log_file.is_some());
        let cli = Cli::try_parse_from(["alibridge", "status", "--debug"]).unwrap();
        assert!(cli.debug);
    }
}
