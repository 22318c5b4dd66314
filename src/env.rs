//! Every environment variable alibridge reads, named once.
//!
//! Flags wire these through clap's `env = …`, so `--help` shows them next to the flag.

/// State directory (tokens, locks, logs). Default: the platform config dir + `/alibridge`.
pub const ALIBRIDGE_HOME: &str = "ALIBRIDGE_HOME";
/// Same as `--header`, newline-separated `Name: value` pairs.
pub const ALIBRIDGE_HEADERS: &str = "ALIBRIDGE_HEADERS";
/// Same as `--transport`.
pub const ALIBRIDGE_TRANSPORT: &str = "ALIBRIDGE_TRANSPORT";
/// Same as `--protocol`.
pub const ALIBRIDGE_PROTOCOL: &str = "ALIBRIDGE_PROTOCOL";
/// Same as `--auth`.
pub const ALIBRIDGE_AUTH: &str = "ALIBRIDGE_AUTH";
/// Same as `--log-file`.
pub const ALIBRIDGE_LOG_FILE: &str = "ALIBRIDGE_LOG_FILE";
/// Same as `--debug` (any non-empty value but `0`/`false`).
pub const ALIBRIDGE_DEBUG: &str = "ALIBRIDGE_DEBUG";
/// Same as `--allow-http`.
pub const ALIBRIDGE_ALLOW_HTTP: &str = "ALIBRIDGE_ALLOW_HTTP";
/// Same as `--connect-timeout`.
pub const ALIBRIDGE_CONNECT_TIMEOUT: &str = "ALIBRIDGE_CONNECT_TIMEOUT";
/// Same as `--request-timeout`.
pub const ALIBRIDGE_REQUEST_TIMEOUT: &str = "ALIBRIDGE_REQUEST_TIMEOUT";
/// Same as `--shutdown-grace`.
pub const ALIBRIDGE_SHUTDOWN_GRACE: &str = "ALIBRIDGE_SHUTDOWN_GRACE";
/// Same as `--keep-alive`.
pub const ALIBRIDGE_KEEP_ALIVE: &str = "ALIBRIDGE_KEEP_ALIVE";
/// Same as `--max-message-size` (bytes, or with a K/M/G suffix).
pub const ALIBRIDGE_MAX_MESSAGE_SIZE: &str = "ALIBRIDGE_MAX_MESSAGE_SIZE";
/// Same as `--max-in-flight`.
pub const ALIBRIDGE_MAX_IN_FLIGHT: &str = "ALIBRIDGE_MAX_IN_FLIGHT";
/// Same as `--site-type` (CN or INTL).
pub const ALIBRIDGE_SITE_TYPE: &str = "ALIBRIDGE_SITE_TYPE";
/// Same as `--ims-endpoint`.
pub const ALIBRIDGE_IMS_ENDPOINT: &str = "ALIBRIDGE_IMS_ENDPOINT";
/// Same as `--discovery-endpoint`.
pub const ALIBRIDGE_DISCOVERY_ENDPOINT: &str = "ALIBRIDGE_DISCOVERY_ENDPOINT";
/// Same as `--client-id`.
pub const ALIBRIDGE_CLIENT_ID: &str = "ALIBRIDGE_CLIENT_ID";
/// Same as `--boundary-policy`.
pub const ALIBRIDGE_BOUNDARY_POLICY: &str = "ALIBRIDGE_BOUNDARY_POLICY";
/// Same as `--token-refresh-skew`.
pub const ALIBRIDGE_TOKEN_REFRESH_SKEW: &str = "ALIBRIDGE_TOKEN_REFRESH_SKEW";
/// Overrides the sign-in page `pre-check` opens (private deployments, tests).
pub const ALIBRIDGE_AUTHORIZE_URL: &str = "ALIBRIDGE_AUTHORIZE_URL";
/// Same as `--oauth-client-id`.
pub const ALIBRIDGE_OAUTH_CLIENT_ID: &str = "ALIBRIDGE_OAUTH_CLIENT_ID";
/// The pre-registered client's secret (environment only: argv is visible to other users).
pub const ALIBRIDGE_OAUTH_CLIENT_SECRET: &str = "ALIBRIDGE_OAUTH_CLIENT_SECRET";
/// Same as `--oauth-client-metadata-url`.
pub const ALIBRIDGE_OAUTH_CLIENT_METADATA_URL: &str = "ALIBRIDGE_OAUTH_CLIENT_METADATA_URL";
/// Same as `--callback-port`.
pub const ALIBRIDGE_CALLBACK_PORT: &str = "ALIBRIDGE_CALLBACK_PORT";
/// Same as `--auth-timeout`.
pub const ALIBRIDGE_AUTH_TIMEOUT: &str = "ALIBRIDGE_AUTH_TIMEOUT";
/// Same as `--token-store`.
pub const ALIBRIDGE_TOKEN_STORE: &str = "ALIBRIDGE_TOKEN_STORE";
/// Same as `--no-browser`.
pub const ALIBRIDGE_NO_BROWSER: &str = "ALIBRIDGE_NO_BROWSER";
/// Same as `proxy --host`.
pub const ALIBRIDGE_PROXY_HOST: &str = "ALIBRIDGE_PROXY_HOST";
/// Same as `proxy --port`.
pub const ALIBRIDGE_PROXY_PORT: &str = "ALIBRIDGE_PROXY_PORT";
/// Same as `proxy --allowed-hosts` (comma-separated).
pub const ALIBRIDGE_PROXY_ALLOWED_HOSTS: &str = "ALIBRIDGE_PROXY_ALLOWED_HOSTS";
/// Same as `proxy --proxy-token` (preferred: a command line is visible to other local users).
pub const ALIBRIDGE_PROXY_TOKEN: &str = "ALIBRIDGE_PROXY_TOKEN";
/// Same as `proxy --max-connections`.
pub const ALIBRIDGE_PROXY_MAX_CONNECTIONS: &str = "ALIBRIDGE_PROXY_MAX_CONNECTIONS";
/// Same as `proxy --max-body-size`.
pub const ALIBRIDGE_PROXY_MAX_BODY_SIZE: &str = "ALIBRIDGE_PROXY_MAX_BODY_SIZE";
/// Same as `proxy --upstream-url`.
pub const ALIBRIDGE_UPSTREAM_URL: &str = "ALIBRIDGE_UPSTREAM_URL";
/// Same as `proxy --allowed-servers` (comma-separated).
pub const ALIBRIDGE_ALLOWED_SERVERS: &str = "ALIBRIDGE_ALLOWED_SERVERS";
/// Same as `proxy --blocked-servers` (comma-separated).
pub const ALIBRIDGE_BLOCKED_SERVERS: &str = "ALIBRIDGE_BLOCKED_SERVERS";
/// Same as `--allow-tools` (comma-separated patterns).
pub const ALIBRIDGE_ALLOW_TOOLS: &str = "ALIBRIDGE_ALLOW_TOOLS";
/// Same as `--deny-tools` / `--ignore-tool` (comma-separated patterns).
pub const ALIBRIDGE_DENY_TOOLS: &str = "ALIBRIDGE_DENY_TOOLS";
/// Same as `--allow-api` (comma-separated PRODUCT:ACTION patterns).
pub const ALIBRIDGE_ALLOW_API: &str = "ALIBRIDGE_ALLOW_API";
/// Same as `--deny-api` (comma-separated PRODUCT:ACTION patterns).
pub const ALIBRIDGE_DENY_API: &str = "ALIBRIDGE_DENY_API";
/// Same as `--confirm-timeout`.
pub const ALIBRIDGE_CONFIRM_TIMEOUT: &str = "ALIBRIDGE_CONFIRM_TIMEOUT";
/// Same as `--pin-tools`.
pub const ALIBRIDGE_PIN_TOOLS: &str = "ALIBRIDGE_PIN_TOOLS";
/// Same as `--read-only`.
pub const ALIBRIDGE_READ_ONLY: &str = "ALIBRIDGE_READ_ONLY";
/// Same as `--confirm-writes`.
pub const ALIBRIDGE_CONFIRM_WRITES: &str = "ALIBRIDGE_CONFIRM_WRITES";
/// Same as `--region`.
pub const ALIBRIDGE_REGION: &str = "ALIBRIDGE_REGION";
/// Same as `--audit-log`.
pub const ALIBRIDGE_AUDIT_LOG: &str = "ALIBRIDGE_AUDIT_LOG";
/// Same as `--audit-log-max-size`.
pub const ALIBRIDGE_AUDIT_LOG_MAX_SIZE: &str = "ALIBRIDGE_AUDIT_LOG_MAX_SIZE";
/// Same as `--safety-policy`.
pub const ALIBRIDGE_SAFETY_POLICY: &str = "ALIBRIDGE_SAFETY_POLICY";
/// Same as `--safety-policy-endpoint`.
pub const ALIBRIDGE_SAFETY_POLICY_ENDPOINT: &str = "ALIBRIDGE_SAFETY_POLICY_ENDPOINT";
/// `--bearer-token`.
pub const ALIBRIDGE_BEARER_TOKEN: &str = "ALIBRIDGE_BEARER_TOKEN";
/// `--token-command`.
pub const ALIBRIDGE_TOKEN_COMMAND: &str = "ALIBRIDGE_TOKEN_COMMAND";

/// For tests only: how often, in milliseconds, the AccessKey credential files are looked at
/// for changes (default 1000). `0` looks on every request, so a test sees a rewritten file on
/// its next request instead of polling.
pub const ALIBRIDGE_TEST_FILE_CHECK_MS: &str = "ALIBRIDGE_TEST_FILE_CHECK_MS";
/// For tests only: how many seconds before they expire temporary (STS) keys are renewed
/// (default 180, the official SDKs' margin), so a test need not know the margin.
pub const ALIBRIDGE_TEST_STS_RENEW_MARGIN: &str = "ALIBRIDGE_TEST_STS_RENEW_MARGIN";

/// A test knob's value in `unit`s, when the variable is set to a number.
pub fn test_knob(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}
