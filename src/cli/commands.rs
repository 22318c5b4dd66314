//! The arguments of each command (`alibridge <URL>` itself, `proxy`, `login`, `pre-check`, …):
//! what is particular to it, and the shared flag groups of [`super::flags`] flattened in.

// The doc comments of the flags below are `--help` text, written for a terminal: URLs and
// `<placeholders>` stay as they are rather than as rustdoc markup.
#![allow(rustdoc::bare_urls, rustdoc::invalid_html_tags)]

use std::time::Duration;

use clap::Args;

use super::flags::{
    AllowHttpArg, BrowserArgs, ClientIdArg, FrontEndArgs, OAuthArgs, ProfileArg, SiteArg,
    TokenStoreArg,
};
use super::{byte_size, seconds, MAX_KEEP_ALIVE, MAX_REQUEST_TIMEOUT, MAX_SIZE, MIN_MESSAGE_SIZE};
use crate::env;
use crate::proxy::rules::EntryList;
use crate::upstream::{ProtocolMode, TransportMode};

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
    pub front: FrontEndArgs,

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
        f.write_str(&value_name(self))
    }
}

/// The name a value has on the command line (`claude-code`, `user`).
fn value_name(v: &impl clap::ValueEnum) -> String {
    let v = v.to_possible_value().expect("no variant is skipped");
    v.get_name().to_string()
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
        f.write_str(&value_name(self))
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
    pub front: FrontEndArgs,
}

/// `alibridge login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The MCP endpoint to sign in to.
    #[arg(value_name = "URL")]
    pub url: String,
    #[command(flatten)]
    pub http: AllowHttpArg,
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
    #[command(flatten)]
    pub store: TokenStoreArg,
}

/// `alibridge status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub profile: ProfileArg,
}

/// `alibridge pre-check`. `--site-type` is required here; `--timeout` is the old name of
/// `--auth-timeout`, still accepted.
#[derive(Debug, Args)]
#[command(mut_arg("site_type", |a| a.required(true)))]
#[command(mut_arg("auth_timeout", |a| a.alias("timeout")))]
pub struct PreCheckArgs {
    #[command(flatten)]
    pub site: SiteArg,

    #[command(flatten)]
    pub client: ClientIdArg,

    #[command(flatten)]
    pub browser: BrowserArgs,

    /// The sign-in page to open instead of the site's (private deployments; the tests).
    #[arg(long, value_name = "URL", hide = true, env = env::ALIBRIDGE_AUTHORIZE_URL)]
    pub authorize_url: Option<String>,
}
