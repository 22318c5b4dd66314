//! Runs the in-process MCP test server of the test suite on its own, so `alibridge` can be
//! pointed at it by hand:
//!
//! ```text
//! cargo run --example test_server -- --port 8931
//! alibridge http://127.0.0.1:8931/mcp --allow-http
//! ```
//!
//! Tools: echo {text}, sleep {ms}, big {bytes}, progress {steps}, sample {prompt},
//! elicit {message}, notify {count}, count. Ctrl-C stops it.

#[path = "../tests/support/mcp_server/mod.rs"]
#[allow(dead_code)]
mod mcp_server;
#[path = "../tests/support/net.rs"]
#[allow(dead_code)]
mod net;
#[path = "../tests/support/wait.rs"]
#[allow(dead_code)]
mod wait;

use mcp_server::{ServerOptions, TestServer};

#[tokio::main]
async fn main() {
    let mut opts = ServerOptions::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => {
                let v = args.next().unwrap_or_default();
                opts.port = v
                    .parse()
                    .unwrap_or_else(|_| usage(&format!("bad port {v:?}")));
            }
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    let server = TestServer::start_with(opts).await;
    println!("{}", server.url());
    eprintln!("MCP test server listening; Ctrl-C to stop");
    tokio::signal::ctrl_c().await.expect("wait for Ctrl-C");
    server.kill();
}

fn usage(err: &str) -> ! {
    if !err.is_empty() {
        eprintln!("error: {err}");
    }
    eprintln!("usage: cargo run --example test_server -- [--port N]");
    std::process::exit(if err.is_empty() { 0 } else { 2 });
}
