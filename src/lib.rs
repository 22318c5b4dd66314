//! alibridge: lets a desktop MCP client that speaks stdio use a remote MCP server (Streamable
//! HTTP or legacy HTTP+SSE), such as Alibaba Cloud's OpenAPI MCP Server.
//!
//! # Layout
//! Dependencies point one way, top to bottom; `tests/architecture.rs` fails on any import that
//! points up or sideways:
//!
//! ```text
//! main ─► commands ─► error ─► clients ─► cli ─► config ─► relay | proxy ─► upstream ─► auth ─► leaves
//! ```
//!
//! * [`commands`]: one file per command (`bridge` is `alibridge <URL>`).
//! * [`error`]: exit codes and the one place failures are printed.
//! * [`clients`]: MCP clients' configuration files (where, what shape, format-preserving
//!   edits) for `add`, `remove` and `list`.
//! * [`cli`]: the command line, and its resolution into configurations.
//! * [`config`]: the bridge's validated configuration (headers, state directory).
//! * [`relay`]: the stdio pump and the "one answer per request" ledger.
//! * [`proxy`]: `alibridge proxy`, the local HTTP reverse proxy.
//! * [`policy`]: the local tool policy (allow/deny, read-only, confirmation, default region,
//!   audit log); a leaf the relay and the proxy call.
//! * [`upstream`]: the remote endpoint: Streamable HTTP, HTTP+SSE, the shared HTTP client.
//! * [`auth`]: the credential layer, one submodule per credential kind behind one trait.
//! * Leaves: [`signer`] (Alibaba Cloud request signing, no I/O), [`stdio`] (newline framing,
//!   the only writer of stdout), [`jsonrpc`] (peeking at `id`/`method`, the bridge's own
//!   errors), [`net`] (URL rules, error descriptions, bounded bodies, the one HTTP client
//!   builder, the same-origin rule), [`logging`] (logs and notices, never stdout),
//!   [`shutdown`] (signals), [`env`](mod@env) (environment variable names), [`private_fs`]
//!   (secret-holding files), [`backoff`] (reconnect pacing), [`random`] (the OS CSPRNG),
//!   [`allocator`] (the allocator settings `main` applies at start).

pub mod allocator;
pub mod auth;
pub mod backoff;
pub mod cli;
pub mod clients;
pub mod commands;
pub mod config;
pub mod env;
pub mod error;
pub mod jsonrpc;
pub mod logging;
pub mod net;
pub mod policy;
pub mod private_fs;
pub mod proxy;
pub mod random;
pub mod relay;
pub mod shutdown;
pub mod signer;
pub mod stdio;
pub mod telemetry;
pub mod upstream;
