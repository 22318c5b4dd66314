//! Shared test support: real peers and the harness that drives the real `alibridge` binary.
//!
//! Each file here is also usable from `examples/` (via `#[path]`), so a newcomer can run the
//! same servers the tests use.
#![allow(dead_code)]

pub mod aliyun_fake;
pub mod bridge;
pub mod canary;
pub mod hostile;
pub mod mcp_server;
pub mod oauth_server;
pub mod peers;
pub mod peers_modern;
