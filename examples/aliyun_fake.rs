//! Runs the test suite's local fake of Alibaba Cloud's token services (RAM-OAuth
//! `GenerateAccessToken`, STS `AssumeRole`/`AssumeRoleWithOIDC`, the `pre-check` sign-in page)
//! together with an MCP test server that only accepts the fake's live tokens (401 otherwise),
//! and prints the exact `alibridge` commands to try `--auth ak` and `pre-check` without an
//! Alibaba Cloud account:
//!
//! ```text
//! cargo run --example aliyun_fake -- [--token-lifetime SECS] [--port PORT]
//! ```
//!
//! Every call the fake answers is printed as it happens. For a RAM role, put a `RamRoleArn`
//! profile in `~/.aliyun/config.json` with `"sts_endpoint": "<the fake's URL>"` and the example
//! key. Ctrl-C stops it.

#[path = "../tests/support/aliyun_fake/mod.rs"]
#[allow(dead_code, unused_imports)]
mod aliyun_fake;
#[path = "../tests/support/mcp_server/mod.rs"]
#[allow(dead_code)]
mod mcp_server;
#[path = "../tests/support/net.rs"]
#[allow(dead_code)]
mod net;
#[path = "../tests/support/wait.rs"]
#[allow(dead_code)]
mod wait;

use std::time::Duration;

use aliyun_fake::AliyunFake;
use mcp_server::{ServerOptions, TestServer};

const KEY_ID: &str = "LTAI5tExampleKey00000001";
const KEY_SECRET: &str = "exampleSecret-NotReal-0123456789";
const NO_PERMISSION_ID: &str = "LTAI5tNoPermission000002";

#[tokio::main]
async fn main() {
    let mut lifetime = Duration::from_secs(259_199);
    let mut port = 0;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |what: &str| {
            let v = args.next().unwrap_or_default();
            v.parse::<u64>()
                .unwrap_or_else(|_| usage(&format!("bad {what} {v:?}")))
        };
        match arg.as_str() {
            "--token-lifetime" => lifetime = Duration::from_secs(value("lifetime")),
            "--port" => {
                port = u16::try_from(value("port")).unwrap_or_else(|_| usage("bad port"));
            }
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument {other:?}")),
        }
    }

    let fake = AliyunFake::start().await;
    fake.add_access_key(KEY_ID, KEY_SECRET);
    fake.add_access_key_without_permission(NO_PERMISSION_ID, KEY_SECRET);
    fake.set_token_lifetime(lifetime);
    let server = TestServer::start_with(ServerOptions {
        port,
        ..ServerOptions::requiring_bearer(fake.token_checker())
    })
    .await;
    let (ims, mcp) = (fake.url(), server.url());

    println!("RAM-OAuth / STS / sign-in fake: {ims}");
    println!("MCP server (bearer token required): {mcp}");
    println!("Tokens live {} s.\n", lifetime.as_secs());
    println!("Bridge with AccessKeys from the environment (then paste JSON-RPC lines):\n");
    println!(
        "  ALIBABA_CLOUD_ACCESS_KEY_ID={KEY_ID} ALIBABA_CLOUD_ACCESS_KEY_SECRET={KEY_SECRET} \\\n    \
         alibridge {mcp} --auth ak --site-type CN --ims-endpoint {ims}\n"
    );
    println!(
        "  {{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":{{\"protocolVersion\":\"2025-06-18\",\
         \"capabilities\":{{}},\"clientInfo\":{{\"name\":\"me\",\"version\":\"0\"}}}}}}\n  \
         {{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{{\"name\":\"echo\",\"arguments\":{{\"text\":\"hi\"}}}}}}\n"
    );
    println!(
        "A RAM identity without AliyunOpenAPIMCPServerStaticCredentialAccess (403): use \
         ALIBABA_CLOUD_ACCESS_KEY_ID={NO_PERMISSION_ID}.\nA wrong secret: change the secret.\n"
    );
    println!("pre-check against the fake sign-in page:\n");
    println!(
        "  ALIBRIDGE_AUTHORIZE_URL={} alibridge pre-check --site-type CN\n",
        fake.authorize_url()
    );
    println!(
        "(Not installed? Use `cargo run --bin alibridge --` for `alibridge`.) Ctrl-C stops.\n"
    );

    let mut shown = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tick.tick() => {
                let calls = fake.calls();
                for c in &calls[shown..] {
                    println!(
                        "{} {} key={} security_token={} -> {} {}",
                        c.http_method,
                        c.action,
                        c.access_key_id.as_deref().unwrap_or("(unsigned)"),
                        c.security_token.is_some(),
                        c.status,
                        c.code.as_deref().unwrap_or("OK"),
                    );
                }
                shown = calls.len();
                let refused = server.unauthorized().len();
                if refused > 0 && refused != UNAUTHORIZED.swap(refused, std::sync::atomic::Ordering::Relaxed) {
                    println!("MCP server answered 401 {refused} time(s) so far");
                }
            }
        }
    }
    server.kill();
    fake.kill();
}

static UNAUTHORIZED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn usage(err: &str) -> ! {
    if !err.is_empty() {
        eprintln!("error: {err}");
    }
    eprintln!("usage: cargo run --example aliyun_fake -- [--token-lifetime SECS] [--port PORT]");
    std::process::exit(if err.is_empty() { 0 } else { 2 });
}
