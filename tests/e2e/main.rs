//! End-to-end tests: each one spawns the real `alibridge` binary and speaks JSON-RPC to it over
//! stdio, against real MCP servers (rmcp in-process, and the official npm packages).

#[path = "../support/mod.rs"]
mod support;

/// Command-line surface: flags, validation errors, exit codes.
mod cli;
/// Official npm peers: server-everything (streamableHttp, sse) and the TypeScript SDK client.
mod everything;
/// Fault matrix: upstream failures, session loss, cut streams, bad stdin, shutdown.
mod faults;
/// Happy paths against the rmcp test server.
mod relay;
