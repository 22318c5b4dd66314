//! The flag groups more than one command takes, each flag defined once and flattened where it
//! is used: how to reach the upstream ([`ConnectionArgs`]), how to authenticate to it
//! ([`CredentialArgs`] with [`AccessKeyArgs`] and [`OAuthArgs`]), the safety flags
//! ([`SafetyArgs`]), and the single flags several groups or commands share (the site, the
//! OpenAPI MCP application, the aliyun CLI profile, the browser sign-in, the token store,
//! plain http, the shutdown grace).

// The doc comments of the flags below are `--help` text, written for a terminal: URLs and
// `<placeholders>` stay as they are rather than as rustdoc markup.
#![allow(rustdoc::bare_urls, rustdoc::invalid_html_tags)]

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{
    byte_size, seconds, MAX_AUTH_TIMEOUT, MAX_CONFIRM_TIMEOUT, MAX_CONNECT_TIMEOUT,
    MAX_SHUTDOWN_GRACE, MAX_SIZE, MAX_TOKEN_REFRESH_SKEW,
};
use crate::auth::access_key::site::Site;
use crate::auth::oauth::store::StoreKind;
use crate::auth::AuthMode;
use crate::env;
use crate::policy::api::ApiGlobList;
use crate::policy::glob::GlobList;

/// What the bridge and `proxy` both take: how to reach the upstream and authenticate to it,
/// the safety flags, the shutdown grace, and where telemetry goes.
#[derive(Debug, Args)]
pub struct FrontEndArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,

    #[command(flatten)]
    pub credential: CredentialArgs,

    #[command(flatten)]
    pub safety: SafetyArgs,

    #[command(flatten)]
    pub shutdown: ShutdownArgs,

    #[command(flatten)]
    pub telemetry: super::telemetry::TelemetryArgs,
}

/// How to reach the upstream (the bridge and `proxy`).
#[derive(Debug, Args)]
pub struct ConnectionArgs {
    #[command(flatten)]
    pub http: AllowHttpArg,

    /// Seconds to wait for a TCP/TLS connection to the upstream (at most 600).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = seconds(MAX_CONNECT_TIMEOUT), env = env::ALIBRIDGE_CONNECT_TIMEOUT)]
    pub connect_timeout: Duration,
}

/// `--allow-http` (the bridge, `proxy`, `login`).
#[derive(Debug, Args, Default)]
pub struct AllowHttpArg {
    /// Allow a plain http:// endpoint that is not loopback (traffic and tokens unencrypted).
    #[arg(long, env = env::ALIBRIDGE_ALLOW_HTTP, value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_http: bool,
}

/// `--shutdown-grace` (the bridge and `proxy`).
#[derive(Debug, Args)]
pub struct ShutdownArgs {
    /// Seconds in-flight requests may still finish after stdin closes or a signal arrives (at
    /// most 3600).
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = seconds(MAX_SHUTDOWN_GRACE), env = env::ALIBRIDGE_SHUTDOWN_GRACE)]
    pub shutdown_grace: Duration,
}

/// How to authenticate to the upstream (the bridge and `proxy`).
#[derive(Debug, Args)]
pub struct CredentialArgs {
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
}

/// Flags of `--auth ak` (Alibaba Cloud AccessKeys exchanged for an MCP token).
#[derive(Debug, Args, Default)]
pub struct AccessKeyArgs {
    #[command(flatten)]
    pub site: SiteArg,

    #[command(flatten)]
    pub profile: ProfileArg,

    /// RAM-OAuth endpoint that mints tokens (default: the site's; http allowed for loopback).
    #[arg(long, value_name = "URL", env = env::ALIBRIDGE_IMS_ENDPOINT)]
    pub ims_endpoint: Option<String>,

    /// Without a URL: where to ask for the account's Core endpoint (ListApiMcpServerCores;
    /// default: the site's OpenAPI MCP host; http allowed for loopback).
    #[arg(long, value_name = "URL", env = env::ALIBRIDGE_DISCOVERY_ENDPOINT)]
    pub discovery_endpoint: Option<String>,

    #[command(flatten)]
    pub client: ClientIdArg,

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

/// `--site-type` (AccessKeys, `pre-check`, where it is required).
#[derive(Debug, Args, Default)]
pub struct SiteArg {
    /// Alibaba Cloud site of the account: CN (aliyun.com) or INTL (alibabacloud.com). For
    /// AccessKeys, default: inferred from the endpoint's host.
    #[arg(long, value_enum, ignore_case = true, value_name = "SITE", env = env::ALIBRIDGE_SITE_TYPE)]
    pub site_type: Option<Site>,
}

/// `--client-id` (AccessKeys, `pre-check`).
#[derive(Debug, Args, Default)]
pub struct ClientIdArg {
    /// OAuth application (client id) of the OpenAPI MCP service: the one tokens are minted
    /// for, and the one `pre-check` checks (default: the site's built-in one).
    #[arg(long, value_name = "ID", env = env::ALIBRIDGE_CLIENT_ID)]
    pub client_id: Option<String>,
}

/// `--profile` (AccessKeys, `status`).
#[derive(Debug, Args, Default)]
pub struct ProfileArg {
    /// aliyun CLI profile to take AccessKeys from (default: ALIBABA_CLOUD_PROFILE, else the
    /// config's current profile).
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
}

/// OAuth flags, shared by the bridge, `proxy` and `login`.
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

    #[command(flatten)]
    pub browser: BrowserArgs,

    #[command(flatten)]
    pub store: TokenStoreArg,
}

/// The browser sign-in (OAuth, `pre-check`).
#[derive(Debug, Args, Default)]
pub struct BrowserArgs {
    /// Port of the local redirect the browser comes back to (default: OAuth a stable port per
    /// server, with fallbacks; pre-check any free port).
    #[arg(long, value_name = "PORT", env = env::ALIBRIDGE_CALLBACK_PORT)]
    pub callback_port: Option<u16>,

    /// Seconds to wait for the browser (at most 86400).
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = seconds(MAX_AUTH_TIMEOUT), env = env::ALIBRIDGE_AUTH_TIMEOUT)]
    pub auth_timeout: Duration,

    /// Do not open a browser: print the URL (login also accepts the pasted redirect).
    #[arg(long, env = env::ALIBRIDGE_NO_BROWSER, value_parser = clap::builder::BoolishValueParser::new())]
    pub no_browser: bool,
}

/// `--token-store` (OAuth, `logout`).
#[derive(Debug, Args, Default)]
pub struct TokenStoreArg {
    /// Where OAuth sign-ins are stored: the OS keychain, a 0600 file, or auto (keychain when
    /// available).
    #[arg(long, value_enum, default_value_t = StoreKind::Auto, env = env::ALIBRIDGE_TOKEN_STORE)]
    pub token_store: StoreKind,
}

/// The safety flags (the tool policy and its audit log), shared by the bridge and `alibridge
/// proxy`; enforced locally (a refused call never reaches the server). See docs/safety.md.
#[derive(Debug, Args, Default, Clone)]
pub struct SafetyArgs {
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
