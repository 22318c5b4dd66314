//! alibridge: lets a desktop MCP client that speaks stdio use a remote MCP server (Streamable
//! HTTP or legacy HTTP+SSE), such as Alibaba Cloud's OpenAPI MCP Server.
//!
//! # Layout
//! The modules follow the data path, client side to server side:
//! * [`cli`] / [`config`] / [`env`]: the command line, validated into a configuration.
//! * [`commands`]: one file per command (`bridge` is `alibridge <URL>`).
//! * [`proxy`]: `alibridge proxy`, the local HTTP reverse proxy (listener, Host/Origin guard,
//!   allow/block rules, streaming forwarder, server listing).
//! * [`stdio`]: newline-delimited framing on stdin/stdout (the only writer of stdout).
//! * [`jsonrpc`]: peeking at `id`/`method` without re-serialising; the bridge's own errors.
//! * [`relay`]: the pump between the two sides, and the "one answer per request" ledger.
//! * [`policy`]: the local tool policy (allow/deny, read-only, confirmation, default region,
//!   audit log); a leaf the relay and the proxy call.
//! * [`upstream`]: the remote endpoint: Streamable HTTP, HTTP+SSE, the shared HTTP client.
//! * [`auth`]: the credential layer, one submodule per credential kind behind one trait.
//! * [`origin`]: credentials stay with the origin the user named (redirects, endpoint events).
//! * [`signer`]: Alibaba Cloud API request signing (RPC v2 HMAC-SHA1, ACS3-HMAC-SHA256); no I/O.
//! * [`shutdown`], [`logging`], [`error`]: signals, logs (never stdout), exit codes.
//! * [`backoff`]: reconnect pacing (exponential, jitter, cap) and `Retry-After`.
//! * [`private_fs`]: secret-holding files and directories (0600/0700, atomic replace).

pub mod auth;
pub mod backoff;
pub mod cli;
pub mod commands;
pub mod config;
pub mod env;
pub mod error;
pub mod jsonrpc;
pub mod logging;
pub mod origin;
pub mod policy;
pub mod private_fs;
pub mod proxy;
pub mod relay;
pub mod shutdown;
pub mod signer;
pub mod stdio;
pub mod upstream;
