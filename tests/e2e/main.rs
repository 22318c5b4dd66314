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
/// Peer input limits: --max-message-size both ways, --max-in-flight, GET-stream backoff, peak
/// memory with a 128 MiB line, hostile numbers, private log file.
mod limits;
/// `--auth oauth` against a local authorization server; `login` / `status` / `logout`.
mod oauth;
/// `alibridge proxy`: rmcp client and server-everything through the local HTTP proxy, access
/// rules, Host/Origin guard, 401 refresh, failures, concurrency, shutdown.
mod proxy;
/// Happy paths against the rmcp test server.
mod relay;
