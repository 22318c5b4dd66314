//! The command-line surface: clap derive types whose doc comments are the `--help` text, the
//! value parsers every flag of a kind shares (one for seconds, one for sizes), and, in
//! [`resolve`], the step that turns these raw values into the validated configurations the
//! layers below take ([`crate::config::BridgeConfig`], [`crate::proxy::config::ProxyConfig`],
//! [`crate::auth::AuthConfig`]). Parsing does no I/O.
//!
//! Subcommands (`login`, `pre-check`, `proxy`, …) sit beside the positional URL:
//! `alibridge <URL> [flags]` runs the bridge, `alibridge <COMMAND> …` runs a command.
//! `--debug` and `--log-file` are global: they work with every command.

// The doc comments of the flags below are `--help` text, written for a terminal: URLs and
// `<placeholders>` stay as they are rather than as rustdoc markup.
#![allow(rustdoc::bare_urls, rustdoc::invalid_html_tags)]

pub mod resolve;
pub mod telemetry;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::auth::access_key::site::Site;
use crate::auth::oauth::store::StoreKind;
use crate::auth::AuthMode;
use crate::env;
use crate::policy::api::ApiGlobList;
use crate::policy::glob::GlobList;
use crate::proxy::rules::EntryList;
use crate::upstream::{ProtocolMode, TransportMode};

/// Bridge a stdio MCP client to a remote MCP server (Streamable HTTP or HTTP+SSE).
///
/// Reads newline-delimited JSON-RPC on stdin, relays it to URL, and writes the server's messages
/// to stdout. Logs go to stderr (or --log-file), never stdout.
#[derive(Debug, Parser)]
#[command(name = "alibridge", version, about, max_term_width = 100)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
#[command(after_help = EXIT_CODES_HELP)]
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

/// `alibridge tools`.
#[derive(Debug, Args)]
#[command(after_help = "Docs: docs/pinning.md")]
pub struct ToolsArgs {
    /// The MCP endpoint, as the bridge was given it (for the proxy: the upstream URL a request
    /// was forwarded to).
    #[arg(value_name = "URL")]
    pub url: String,
    /// Pin these held-back tools (their definitions as last seen).
    #[arg(long, value_name = "NAME", num_args = 1.., conflicts_with_all = ["all", "forget"])]
    pub approve: Vec<String>,
    /// Pin every held-back tool.
    #[arg(long, conflicts_with = "forget")]
    pub all: bool,
    /// Drop the endpoint's pins: the next listing is trusted on first use again.
    #[arg(long)]
    pub forget: bool,
    /// Only the pins of this identity (`ak:LTAI****1234`, `oauth:<subject>`, `anonymous`), as
    /// listed; default: every identity's.
    #[arg(long, value_name = "ID")]
    pub identity: Option<String>,
}

/// `alibridge doctor`.
#[derive(Debug, Args)]
#[command(after_help = "Docs: docs/doctor.md")]
pub struct DoctorArgs {
    /// The MCP endpoint to check. Default: every alibridge entry in the clients' configs.
    #[arg(value_name = "URL")]
    pub url: Option<String>,
    /// One JSON object per check (for support tickets; never contains a secret).
    #[arg(long)]
    pub json: bool,
    /// Check the URL-less form: the AccessKey account's Core endpoint (also implied by bridge
    /// flags without a URL).
    #[arg(long, conflicts_with = "url")]
    pub core: bool,
    /// Bridge flags to check with, after `--` (as an entry would pass them).
    #[arg(last = true, value_name = "BRIDGE FLAGS")]
    pub bridge_flags: Vec<String>,
}

/// An MCP client whose configuration `add`/`remove`/`list` edit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientKind {
    ClaudeCode,
    ClaudeDesktop,
    Codex,
    Cursor,
    Windsurf,
    Vscode,
    Cline,
    CherryStudio,
    Lingma,
}

impl std::fmt::Display for ClientKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use clap::ValueEnum;
        let v = self.to_possible_value().expect("no variant is skipped");
        f.write_str(v.get_name())
    }
}

/// Which of a client's files: the user's own, the project's (in the current directory), or
/// Claude Code's per-project entry in ~/.claude.json.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scope {
    User,
    Project,
    Local,
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use clap::ValueEnum;
        let v = self.to_possible_value().expect("no variant is skipped");
        f.write_str(v.get_name())
    }
}

/// `alibridge add`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example: alibridge add claude-code https://openapi-mcp.cn-hangzhou.\
                        aliyuncs.com/accounts/1234/custom/my-server/id/abc/mcp -- --read-only\n\
                        Secrets never go into the file: --env NAME references a variable the \
                        client expands (Codex: forwarded through env_vars)."
)]
pub struct AddArgs {
    /// The client to configure.
    #[arg(value_enum, value_name = "CLIENT")]
    pub client: ClientKind,
    /// The MCP endpoint the entry bridges to. Without it, the entry finds the AccessKey
    /// account's OpenAPI MCP Core endpoint each time it starts.
    #[arg(value_name = "URL")]
    pub url: Option<String>,
    /// Entry name (letters, digits, '-', '_'). Default: derived from the URL ("aliyun"
    /// without one).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Which configuration file (default: user; project = the current directory's).
    #[arg(long, value_enum, default_value_t = Scope::User)]
    pub scope: Scope,
    /// Print the change as a diff; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Replace a different entry of the same name.
    #[arg(long)]
    pub force: bool,
    /// A variable the entry passes on from the client's environment, by reference (repeatable),
    /// e.g. --env ALIBABA_CLOUD_ACCESS_KEY_ID.
    #[arg(long = "env", value_name = "NAME")]
    pub env: Vec<String>,
    /// Bridge flags for the entry, after `--` (e.g. -- --read-only --region cn-hangzhou).
    #[arg(last = true, value_name = "BRIDGE FLAGS")]
    pub bridge_flags: Vec<String>,
}

/// `alibridge remove`.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The client whose configuration to edit.
    #[arg(value_enum, value_name = "CLIENT")]
    pub client: ClientKind,
    /// The entry's name (see `alibridge list`).
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// Which configuration file (default: user).
    #[arg(long, value_enum, default_value_t = Scope::User)]
    pub scope: Scope,
    /// Print the change as a diff; write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `alibridge list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `alibridge proxy`.
#[derive(Debug, Args)]
#[command(
    after_help = "Clients use http://HOST:PORT/<path of the server's endpoint>, e.g. \
                        http://127.0.0.1:8088/accounts/1234/custom/my-server/id/abc/mcp.\n\
                        Anyone who can reach the port acts with this proxy's cloud identity: keep \
                        --host on loopback unless the network is trusted.\n\
                        Docs: docs/proxy.md"
)]
pub struct ProxyArgs {
    /// Address to listen on. Anything but a loopback address lets every local user and network
    /// peer that reaches the port use this proxy's cloud identity.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1", env = env::ALIBRIDGE_PROXY_HOST)]
    pub host: String,

    /// Port to listen on (0 picks a free one; the address is printed).
    #[arg(long, value_name = "PORT", default_value_t = 8088, env = env::ALIBRIDGE_PROXY_PORT)]
    pub port: u16,

    /// Upstream every request is forwarded to (`scheme://host[:port]`; https when no scheme is
    /// given; the path comes from each request). Default: the site's OpenAPI MCP host.
    #[arg(long, value_name = "URL", env = env::ALIBRIDGE_UPSTREAM_URL)]
    pub upstream_url: Option<String>,

    /// Only these servers may be reached: comma-separated server names, server ids, or path
    /// prefixes starting with "/" (matched on whole path segments). Repeatable.
    #[arg(long, value_name = "LIST", env = env::ALIBRIDGE_ALLOWED_SERVERS)]
    pub allowed_servers: Vec<EntryList>,

    /// These servers may not be reached, even if allowed (same syntax). Repeatable.
    #[arg(long, value_name = "LIST", env = env::ALIBRIDGE_BLOCKED_SERVERS)]
    pub blocked_servers: Vec<EntryList>,

    /// More names clients may use to reach the proxy (Host header), comma-separated, e.g.
    /// host.docker.internal. Requests naming any other host are refused (DNS rebinding).
    #[arg(long, value_name = "NAMES", value_delimiter = ',', env = env::ALIBRIDGE_PROXY_ALLOWED_HOSTS)]
    pub allowed_hosts: Vec<String>,

    /// Require every client to send "Authorization: Bearer TOKEN" (for machines with other
    /// users, whose processes can reach a loopback port too). Prefer the environment variable:
    /// a command line is visible to every local user. /health stays open without details.
    #[arg(long, value_name = "TOKEN", env = env::ALIBRIDGE_PROXY_TOKEN, hide_env_values = true)]
    pub proxy_token: Option<String>,

    /// Client connections served at once; a connection beyond it is answered 503 and closed.
    #[arg(long, value_name = "N", default_value_t = 256, env = env::ALIBRIDGE_PROXY_MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Largest request body accepted (bytes, or with a KiB/MiB/GiB suffix); larger requests
    /// get 413. Bodies are held in memory (for the retry after a token refresh).
    #[arg(long, value_name = "SIZE", default_value = "32MiB", value_parser = byte_size(1, MAX_SIZE),
          env = env::ALIBRIDGE_PROXY_MAX_BODY_SIZE)]
    pub max_body_size: u64,

    #[command(flatten)]
    pub upstream: UpstreamArgs,
}

/// Flags shared by the bridge and `proxy`: how to reach the upstream and authenticate to it.
#[derive(Debug, Args)]
pub struct UpstreamArgs {
    /// Allow a plain http:// upstream that is not loopback (traffic and tokens unencrypted).
    #[arg(long, env = env::ALIBRIDGE_ALLOW_HTTP, value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_http: bool,

    /// How to authenticate to the upstream (static --header values are always sent; the
    /// proxy never forwards a client's own Authorization). auto: AccessKeys when found
    /// (environment, aliyun CLI profile, …) and the endpoint is the OpenAPI MCP service
    /// (openapi-mcp.<region>.aliyuncs.com), otherwise OAuth sign-in if the server asks for it
    /// (401); other hosts get AccessKeys only with --auth ak. The choice is printed on stderr.
    #[arg(long, value_enum, default_value_t = AuthMode::Auto, value_name = "KIND", env = env::ALIBRIDGE_AUTH)]
    pub auth: AuthMode,

    #[command(flatten)]
    pub ak: AccessKeyArgs,

    #[command(flatten)]
    pub oauth: OAuthArgs,

    /// A bearer token obtained elsewhere, sent as "Authorization: Bearer TOKEN". Prefer the
    /// environment variable: a command line is visible to every local user.
    #[arg(long, value_name = "TOKEN", env = env::ALIBRIDGE_BEARER_TOKEN, hide_env_values = true,
          conflicts_with = "token_command")]
    pub bearer_token: Option<String>,

    /// A command (run by the shell) that prints a bearer token, or JSON with "access_token"
    /// and optional "expires_in" (seconds); run again before expiry and when the server
    /// refuses the token. Its stderr is shown; a non-zero exit is an error.
    #[arg(long, value_name = "CMD", env = env::ALIBRIDGE_TOKEN_COMMAND)]
    pub token_command: Option<String>,

    #[command(flatten)]
    pub policy: PolicyArgs,

    #[command(flatten)]
    pub telemetry: telemetry::TelemetryArgs,

    /// Seconds to wait for a TCP/TLS connection to the upstream (at most 600).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = seconds(MAX_CONNECT_TIMEOUT), env = env::ALIBRIDGE_CONNECT_TIMEOUT)]
    pub connect_timeout: Duration,

    /// Seconds in-flight requests may still finish after stdin closes or a signal arrives (at
    /// most 3600).
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = seconds(MAX_SHUTDOWN_GRACE), env = env::ALIBRIDGE_SHUTDOWN_GRACE)]
    pub shutdown_grace: Duration,
}

/// `alibridge login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The MCP endpoint to sign in to.
    #[arg(value_name = "URL")]
    pub url: String,
    /// Allow a plain http:// URL to a host that is not loopback.
    #[arg(long, env = env::ALIBRIDGE_ALLOW_HTTP, value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_http: bool,
    #[command(flatten)]
    pub oauth: OAuthArgs,
}

/// `alibridge logout`.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The MCP endpoint whose sign-in to forget.
    #[arg(
        value_name = "URL",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub url: Option<String>,
    /// Forget every stored sign-in.
    #[arg(long)]
    pub all: bool,
    /// Where sign-ins are stored.
    #[arg(long, value_enum, default_value_t = StoreKind::Auto, env = env::ALIBRIDGE_TOKEN_STORE)]
    pub token_store: StoreKind,
}

/// `alibridge status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// aliyun CLI profile to report on (default: ALIBABA_CLOUD_PROFILE, else current).
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
}

/// OAuth flags, shared by the bridge and `login`.
#[derive(Debug, Args, Default)]
pub struct OAuthArgs {
    /// A pre-registered OAuth client id (its secret, if any, only via
    /// ALIBRIDGE_OAUTH_CLIENT_SECRET). Default: dynamic registration.
    #[arg(long, value_name = "ID", env = env::ALIBRIDGE_OAUTH_CLIENT_ID)]
    pub oauth_client_id: Option<String>,

    /// HTTPS URL of a Client ID Metadata Document to use as the client id, when the
    /// authorization server supports it.
    #[arg(long, value_name = "URL", env = env::ALIBRIDGE_OAUTH_CLIENT_METADATA_URL)]
    pub oauth_client_metadata_url: Option<String>,

    /// Port of the local sign-in redirect (default: a stable port per server, with fallbacks).
    #[arg(long, value_name = "PORT", env = env::ALIBRIDGE_CALLBACK_PORT)]
    pub callback_port: Option<u16>,

    /// Seconds to wait for the browser sign-in (at most 86400).
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = seconds(MAX_AUTH_TIMEOUT), env = env::ALIBRIDGE_AUTH_TIMEOUT)]
    pub auth_timeout: Duration,

    /// Where OAuth tokens are stored: the OS keychain, a 0600 file, or auto (keychain when
    /// available).
    #[arg(long, value_enum, default_value_t = StoreKind::Auto, env = env::ALIBRIDGE_TOKEN_STORE)]
    pub token_store: StoreKind,

    /// Do not open a browser: print the sign-in URL (login also accepts the pasted redirect).
    #[arg(long, env = env::ALIBRIDGE_NO_BROWSER, value_parser = clap::builder::BoolishValueParser::new())]
    pub no_browser: bool,
}

/// `alibridge pre-check`.
#[derive(Debug, Args)]
pub struct PreCheckArgs {
    /// Alibaba Cloud site of the account: CN (aliyun.com) or INTL (alibabacloud.com).
    #[arg(long, value_enum, ignore_case = true, env = env::ALIBRIDGE_SITE_TYPE)]
    pub site_type: Site,

    /// Check a custom OAuth application instead of the built-in one.
    #[arg(long, value_name = "ID", env = env::ALIBRIDGE_CLIENT_ID)]
    pub client_id: Option<String>,

    /// Only print the authorization URL; do not open a browser.
    #[arg(long)]
    pub no_browser: bool,

    /// Seconds to wait for the browser to come back (at most 86400).
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = seconds(MAX_AUTH_TIMEOUT))]
    pub timeout: Duration,

    /// The sign-in page to open instead of the site's (private deployments; the tests).
    #[arg(long, value_name = "URL", hide = true, env = env::ALIBRIDGE_AUTHORIZE_URL)]
    pub authorize_url: Option<String>,

    /// Local port for the browser's redirect (default: any free port).
    #[arg(long, value_name = "PORT")]
    pub callback_port: Option<u16>,
}

/// Flags of the bridge itself (`alibridge <URL> …`).
#[derive(Debug, Args)]
pub struct BridgeArgs {
    /// Remote MCP endpoint, e.g. https://openapi-mcp.cn-hangzhou.aliyuncs.com/accounts/…/mcp.
    /// Without it, the account's OpenAPI MCP Core endpoint is found with the AccessKeys
    /// (ListApiMcpServerCores; --site-type picks the site).
    #[arg(value_name = "URL")]
    pub url: Option<String>,

    /// Extra HTTP header for every upstream request, "Name: value" (repeatable). ${VAR} in the
    /// value is expanded from the environment; an unset variable is an error.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", env = env::ALIBRIDGE_HEADERS,
          value_delimiter = '\n', hide_env_values = true)]
    pub headers: Vec<String>,

    /// Upstream transport. http-first falls back to HTTP+SSE once when the first POST gets
    /// 400/404/405. Default: http-first, or sse-first when the URL path ends in /sse.
    #[arg(long, value_enum, value_name = "MODE", env = env::ALIBRIDGE_TRANSPORT)]
    pub transport: Option<TransportMode>,

    /// MCP protocol era toward the server. auto: on the client's initialize, probe with
    /// server/discover and translate for a 2026-07-28 server, else the older protocol; legacy:
    /// never probe; modern: 2026-07-28 only (an older server is refused with an error).
    #[arg(long, value_enum, value_name = "ERA", default_value_t = ProtocolMode::Auto, env = env::ALIBRIDGE_PROTOCOL)]
    pub protocol: ProtocolMode,

    #[command(flatten)]
    pub upstream: UpstreamArgs,

    /// Seconds a request may wait for its answer before the bridge answers it with an error
    /// (0 = no limit; MCP clients usually apply their own; at most 604800, a week).
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = seconds(MAX_REQUEST_TIMEOUT), env = env::ALIBRIDGE_REQUEST_TIMEOUT)]
    pub request_timeout: Duration,

    /// Largest JSON-RPC message relayed in either direction (a stdin line, an SSE event, a JSON
    /// body): bytes, or with a binary suffix K, M or G (32M = 32 MiB; 1K to 4G). A larger
    /// message is discarded without being held in memory and answered with a JSON-RPC error.
    #[arg(long, value_name = "SIZE", default_value = "32M", value_parser = byte_size(MIN_MESSAGE_SIZE, MAX_SIZE), env = env::ALIBRIDGE_MAX_MESSAGE_SIZE)]
    pub max_message_size: u64,

    /// Send the server an MCP `ping` every SECS seconds (0 = off, the default; at most 3600),
    /// so a connection that sat idle is still open when the next call comes (costs one small
    /// request per interval; see docs/benchmarks.md).
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = seconds(MAX_KEEP_ALIVE), env = env::ALIBRIDGE_KEEP_ALIVE)]
    pub keep_alive: Duration,

    /// Most client messages relayed at once (1 to 65536). At the limit the bridge stops
    /// reading stdin until one finishes: later requests wait, none is refused.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65536), env = env::ALIBRIDGE_MAX_IN_FLIGHT)]
    pub max_in_flight: u32,
}

/// Flags of `--auth ak` (Alibaba Cloud AccessKeys exchanged for an MCP token).
#[derive(Debug, Args, Default)]
pub struct AccessKeyArgs {
    /// Alibaba Cloud site: CN or INTL. Default: inferred from the endpoint's host.
    #[arg(long, value_enum, ignore_case = true, value_name = "SITE", env = env::ALIBRIDGE_SITE_TYPE)]
    pub site_type: Option<Site>,

    /// aliyun CLI profile to take AccessKeys from (default: ALIBABA_CLOUD_PROFILE, else the
    /// config's current profile).
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,

    /// RAM-OAuth endpoint that mints tokens (default: the site's; http allowed for loopback).
    #[arg(long, value_name = "URL", env = env::ALIBRIDGE_IMS_ENDPOINT)]
    pub ims_endpoint: Option<String>,

    /// Without a URL: where to ask for the account's Core endpoint (ListApiMcpServerCores;
    /// default: the site's OpenAPI MCP host; http allowed for loopback).
    #[arg(long, value_name = "URL", env = env::ALIBRIDGE_DISCOVERY_ENDPOINT)]
    pub discovery_endpoint: Option<String>,

    /// OAuth application (client id) to mint tokens for (default: the site's built-in one).
    #[arg(long, value_name = "ID", env = env::ALIBRIDGE_CLIENT_ID)]
    pub client_id: Option<String>,

    /// RAM policy JSON (Deny statements only, ≤ 512 characters) that scopes the token down.
    #[arg(long, value_name = "JSON", env = env::ALIBRIDGE_BOUNDARY_POLICY)]
    pub boundary_policy: Option<String>,

    /// Mint a new token this many seconds before the current one expires (at most 86400).
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = seconds(MAX_TOKEN_REFRESH_SKEW), env = env::ALIBRIDGE_TOKEN_REFRESH_SKEW)]
    pub token_refresh_skew: Duration,

    /// Safety policy bound server-side to every token minted from AccessKeys
    /// (UpdateBearerTokenSafetyPolicy), in alibabacloud.mcp-proxy's syntax, e.g.
    /// "ecs:describe-*=allow,*=deny". If it cannot be bound, alibridge does not start.
    #[arg(long, value_name = "EXPR", env = env::ALIBRIDGE_SAFETY_POLICY)]
    pub safety_policy: Option<String>,

    /// Where safety policies are bound (default: the endpoint's own host when it is an OpenAPI
    /// MCP host, else openapi-mcp.cn-hangzhou.aliyuncs.com; http only for loopback).
    #[arg(long, value_name = "URL", env = env::ALIBRIDGE_SAFETY_POLICY_ENDPOINT)]
    pub safety_policy_endpoint: Option<String>,
}

/// Tool policy flags, shared by the bridge and `alibridge proxy`; enforced locally (a refused
/// call never reaches the server). See docs/safety.md.
#[derive(Debug, Args, Default, Clone)]
pub struct PolicyArgs {
    /// Only tools matching these patterns are listed and callable: comma-separated, repeatable,
    /// case-insensitive, with the wildcards `*` and `?`. With AccessKeys, a list of exact names
    /// is also bound to the token server-side (toolPolicy).
    #[arg(long, value_name = "GLOBS", env = env::ALIBRIDGE_ALLOW_TOOLS)]
    pub allow_tools: Vec<GlobList>,

    /// Tools matching these patterns are hidden and refused, even if allowed (deny wins).
    /// --ignore-tool is the same (mcp-remote's name).
    #[arg(long, visible_alias = "ignore-tool", value_name = "GLOBS", env = env::ALIBRIDGE_DENY_TOOLS)]
    pub deny_tools: Vec<GlobList>,

    /// Calls that resolve to an API matching these PRODUCT:ACTION patterns are refused
    /// (comma-separated, repeatable, case-insensitive; e.g. ram:*,*:Delete*). Checked against
    /// every API a call runs, including CallCLI commands and RunScript's call_cli calls.
    #[arg(long, value_name = "GLOBS", env = env::ALIBRIDGE_DENY_API)]
    pub deny_api: Vec<ApiGlobList>,

    /// Only calls whose every API matches one of these PRODUCT:ACTION patterns are relayed
    /// (e.g. ecs:Describe*,vpc:*); a call whose APIs cannot all be known is refused.
    #[arg(long, value_name = "GLOBS", env = env::ALIBRIDGE_ALLOW_API)]
    pub allow_api: Vec<ApiGlobList>,

    /// Only tools classified as reads are listed and callable (readOnlyHint, or an API action
    /// such as Describe*/List*/Get*; generic tools such as CallCLI per call).
    #[arg(long, env = env::ALIBRIDGE_READ_ONLY, value_parser = clap::builder::BoolishValueParser::new())]
    pub read_only: bool,

    /// Before a write is relayed, ask the person to confirm it in their MCP client
    /// (elicitation); a client without elicitation gets an error instead.
    #[arg(long, env = env::ALIBRIDGE_CONFIRM_WRITES, value_parser = clap::builder::BoolishValueParser::new())]
    pub confirm_writes: bool,

    /// Pin tool definitions per endpoint and identity: a new or changed tool is held back from
    /// the client until approved (in the client, or with `alibridge tools URL --approve`).
    /// On by default with --confirm-writes.
    #[arg(long, env = env::ALIBRIDGE_PIN_TOOLS, overrides_with = "no_pin_tools", value_parser = clap::builder::BoolishValueParser::new())]
    pub pin_tools: bool,

    /// Do not pin tool definitions, even with --confirm-writes.
    #[arg(long, overrides_with = "pin_tools")]
    pub no_pin_tools: bool,

    /// How long a confirmation waits for the person before it counts as declined.
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = seconds(MAX_CONFIRM_TIMEOUT), env = env::ALIBRIDGE_CONFIRM_TIMEOUT)]
    pub confirm_timeout: Duration,

    /// Default x_mcp_region_id for tools that declare it, when the call has none (without it
    /// the OpenAPI MCP Server acts in cn-hangzhou).
    #[arg(long, value_name = "REGION", env = env::ALIBRIDGE_REGION)]
    pub region: Option<String>,

    /// Append one JSON line per tools/call to this file (created 0600; secrets masked).
    #[arg(long, value_name = "PATH", env = env::ALIBRIDGE_AUDIT_LOG)]
    pub audit_log: Option<PathBuf>,

    /// Size at which the audit log is rolled over to PATH.1 (one old file is kept).
    #[arg(long, value_name = "SIZE", default_value = "10M", value_parser = byte_size(1, MAX_SIZE), env = env::ALIBRIDGE_AUDIT_LOG_MAX_SIZE)]
    pub audit_log_max_size: u64,
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

/// The exit codes, for `--help`.
pub const EXIT_CODES_HELP: &str = "Exit codes: 0 normal end (stdin closed, signal, or the \
    command did its job); 1 runtime failure (pre-check: denied or not installed; logout, remove: \
    no such sign-in or entry; doctor: a check failed; tools: no pins, or a name not held back); 2 bad command line, configuration or credentials; 3 pre-check: the browser did \
    not come back in time.\nDocs: https://github.com/alibridge/alibridge#readme";

/// `pre-check`: the browser did not come back within `--timeout`.
pub const EXIT_TIMEOUT: u8 = 3;

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

/// Parses argv; exits with clap's usage error (code 2) or help/version output (code 0).
pub fn parse() -> Cli {
    Cli::parse()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
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
                site_type: Site::Intl,
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
                .upstream
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
