//! Shared test support: real peers, the harness that drives the real `alibridge` binary, and
//! every helper more than one suite needs (one definition each).
//!
//! - Peers: [`mcp_server`] (rmcp), [`oauth_server`], [`aliyun_fake`], [`canary`], [`hostile`],
//!   [`ops_server`] and [`core_server`] (cloud-ops upstreams for the safety suites),
//!   [`pin_server`] (tools that change, for the pinning suites), [`peers`] (the official npm
//!   packages).
//! - Driving the binary: [`bridge`] (stdio bridge, isolated commands), [`ak_rig`] (the
//!   AccessKey suites' fake, server and `HOME`), [`proxy`] (`alibridge
//!   proxy`), [`oauth_rig`] (the sign-in rig of the OAuth suites), [`pins`] (bridges and
//!   `alibridge tools` sharing one pin store).
//! - Plumbing: [`net`] (listeners on port 0, the one accept loop, a refusing port, the HTTP
//!   client), [`wait`] (waiting on observable events), [`home`] (scratch `HOME`s), [`check`]
//!   (reading answers, secrets that must not leak), and [`cases!`] (table-driven tests).
//!
//! The fakes (`mcp_server`, `oauth_server`, `aliyun_fake`) and what they use (`net`, `wait`) are
//! also usable from `examples/` (via `#[path]`), so a newcomer can run the servers the tests use.
#![allow(dead_code)]

pub mod ak_rig;
pub mod aliyun_fake;
pub mod bridge;
pub mod canary;
pub mod check;
pub mod core_server;
pub mod delay_proxy;
pub mod home;
pub mod hostile;
pub mod mcp_server;
pub mod net;
pub mod oauth_rig;
pub mod oauth_server;
pub mod ops_server;
pub mod otlp;
pub mod peers;
pub mod peers_modern;
pub mod pin_server;
pub mod pins;
pub mod proxy;
pub mod tls_server;
pub mod wait;

/// Declares table-driven tests: each row `name => case,` becomes a `#[tokio::test]` of that
/// name that hands `case` to `runner`, so every row is reported by its own name (a failing row
/// says which it is) and rows run in parallel like any other tests. Attributes and doc comments
/// written on a row apply to its test.
///
/// ```ignore
/// cases! { run_case:
///     /// What this row proves.
///     a_row_named_like_a_test => Case { .. },
/// }
/// ```
macro_rules! cases {
    ($runner:ident: $($(#[$attr:meta])* $name:ident => $case:expr,)+) => {
        $(
            $(#[$attr])*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $runner($case).await
            }
        )+
    };
}
pub(crate) use cases;
