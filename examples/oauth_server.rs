//! Runs the OAuth test rig of the test suite on its own: a local authorization server (metadata,
//! dynamic registration, PKCE, rotating refresh tokens) and a protected MCP server that answers
//! 401 with `WWW-Authenticate: Bearer resource_metadata=…` until it gets one of its tokens. Try a
//! sign-in by hand:
//!
//! ```text
//! cargo run --example oauth_server -- [--token-lifetime SECS] [--step-up]
//! alibridge http://127.0.0.1:PORT/mcp --auth oauth --token-store file
//! ```
//!
//! The authorization page approves at once (no login form): the browser goes straight back to
//! alibridge. With `--step-up`, the `count` tool needs the extra scope `mcp:admin` (403
//! `insufficient_scope` until the bridge signs in again). Ctrl-C stops it.

#[path = "../tests/support/mcp_server/mod.rs"]
#[allow(dead_code)]
mod mcp_server;
#[path = "../tests/support/net.rs"]
#[allow(dead_code)]
mod net;
#[path = "../tests/support/oauth_server/mod.rs"]
#[allow(dead_code)]
mod oauth_server;
#[path = "../tests/support/wait.rs"]
#[allow(dead_code)]
mod wait;

use std::time::Duration;

use oauth_server::{AsOptions, OAuthServer, ProtectedMcp, ProtectedOptions};

#[tokio::main]
async fn main() {
    let mut a = AsOptions::default();
    let mut p = ProtectedOptions::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--token-lifetime" => {
                let v = args.next().unwrap_or_default();
                let secs: u64 = v
                    .parse()
                    .unwrap_or_else(|_| usage(&format!("bad lifetime {v:?}")));
                a.access_token_lifetime = Duration::from_secs(secs);
            }
            "--step-up" => p.step_up = Some(("count".into(), "mcp:admin".into())),
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    let oauth = OAuthServer::start_with(a).await;
    let mcp = ProtectedMcp::start(&oauth, p).await;
    println!("authorization server: {}", oauth.issuer());
    println!("protected MCP server: {}", mcp.url());
    println!(
        "resource metadata:    {}\n\ntry:\n  alibridge {} --auth oauth --token-store file\n  \
         alibridge login {} --no-browser --token-store file\n  alibridge status",
        mcp.metadata_url(),
        mcp.url(),
        mcp.url()
    );
    eprintln!("Ctrl-C to stop");
    tokio::signal::ctrl_c().await.expect("wait for Ctrl-C");
    println!(
        "authorizations: {}, registrations: {}, token requests: {}",
        oauth.authorize_count(),
        oauth.registrations().len(),
        oauth.token_requests().len()
    );
}

fn usage(err: &str) -> ! {
    if !err.is_empty() {
        eprintln!("error: {err}");
    }
    eprintln!("usage: cargo run --example oauth_server -- [--token-lifetime SECS] [--step-up]");
    std::process::exit(if err.is_empty() { 0 } else { 2 });
}
