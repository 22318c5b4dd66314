//! End-to-end tests: each one spawns the real `alibridge` binary and speaks JSON-RPC to it over
//! stdio, against real MCP servers (rmcp in-process, and the official npm packages).

#[path = "../support/mod.rs"]
mod support;

/// `--auth ak` against a local fake of RAM-OAuth/STS and a token-checking server; pre-check.
mod access_key;
/// Command-line surface: flags, validation errors, exit codes.
mod cli;
/// Official npm peers: server-everything (streamableHttp, sse) and the TypeScript SDK client.
mod everything;
/// Fault matrix: upstream failures, session loss, cut streams, bad stdin, shutdown.
mod faults;
/// Hostile peers: redirects, legacy endpoint events and host names that would steer
/// credentials to another origin (a canary on 127.0.0.2 proves nothing arrives).
mod hostile;
/// The OAuth token store on a real keychain (gnome-keyring's Secret Service, `--ignored`
/// under `.ci/run`), and the 0600 file fallback without one.
mod keyring;
/// `--auth oauth` against a local authorization server; `login` / `status` / `logout`.
mod oauth;
/// OAuth renewals coordinated by token generation: races of calls, streams and processes.
mod oauth_race;
/// OAuth trust boundaries: `iss`, resource metadata, issuer-keyed sign-ins.
mod oauth_trust;
/// `alibridge proxy`: rmcp client and server-everything through the local HTTP proxy, access
/// rules, Host/Origin guard, 401 refresh, failures, concurrency, shutdown.
mod proxy;
/// Happy paths against the rmcp test server.
mod relay;
