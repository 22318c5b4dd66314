//! Fast first contact (issue 21), asserted by order and by connection, never by time: a cold
//! start (no era remembered) sends the client's `initialize` before anything it waits on, so
//! the era costs a 2025 server no round trip; the GET stream for server-initiated messages
//! opens on a connection of its own, so the client's first `tools/list` goes out on the warm
//! connection `initialize` used instead of paying a new connect behind the stream.

use serde_json::json;

use crate::support::bridge::Bridge;
use crate::support::mcp_server::TestServer;
use crate::support::wait;

/// `alibridge <server> --transport http-only --auth none <extra…>`.
fn bridge(server: &TestServer, extra: &[&str]) -> Bridge {
    let url = server.url();
    let mut args = vec![url.as_str(), "--transport", "http-only", "--auth", "none"];
    args.extend_from_slice(extra);
    Bridge::spawn(args)
}

/// `--protocol auto` (the default), Streamable HTTP, a fresh state directory: the first thing
/// on the wire that the bridge waits on is the client's `initialize` (only the credential-less
/// preconnect `HEAD` may come before it, and nothing waits for its answer); no
/// `server/discover` is ever sent, and the era decision opens no connection of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_start_against_a_2025_server_sends_no_request_before_initialize_that_it_waits_on() {
    let server = TestServer::start().await;
    let url = server.url();
    let mut b = Bridge::spawn([url.as_str(), "--auth", "none"]);
    let init = b.initialize().await;
    assert!(init["protocolVersion"].is_string(), "{init}");
    b.request(1, "tools/list", json!({})).await;
    let list = b.response(1).await;
    assert!(list["result"]["tools"].is_array(), "{list}");
    b.finish().await;

    let seen = server.all_requests();
    let at = seen
        .iter()
        .position(|r| r.rpc_method.as_deref() == Some("initialize"))
        .expect("initialize reached the server");
    let before: Vec<_> = seen[..at].iter().map(|r| r.method.clone()).collect();
    assert!(
        before.iter().all(|m| *m == reqwest::Method::HEAD),
        "only a preconnect HEAD may precede initialize: {before:?}"
    );
    assert!(
        seen.iter()
            .all(|r| r.rpc_method.as_deref() != Some("server/discover")),
        "no probe"
    );
    let posts: Vec<_> = seen
        .iter()
        .filter(|r| r.method == reqwest::Method::POST)
        .collect();
    assert_eq!(posts[0].rpc_method.as_deref(), Some("initialize"));
    assert_eq!(
        posts
            .iter()
            .filter(|r| r.rpc_method.as_deref() == Some("initialize"))
            .count(),
        1,
        "initialize sent once"
    );
    // By connection: initialize went out on the first connection anything but the preconnect
    // used, and no request shared it before initialize, so it waited on no other exchange.
    let init_conn = seen[at].conn.expect("initialize's connection");
    let first_mcp_conn = seen
        .iter()
        .filter(|r| r.method != reqwest::Method::HEAD)
        .filter_map(|r| r.conn)
        .min()
        .unwrap();
    assert_eq!(
        init_conn, first_mcp_conn,
        "the era opened no connection first"
    );
    assert!(
        seen[..at]
            .iter()
            .all(|r| r.conn != Some(init_conn) || r.method == reqwest::Method::HEAD),
        "nothing but the preconnect before initialize on its connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_get_stream_never_takes_the_first_requests_connection() {
    let server = TestServer::start().await;
    let mut b = bridge(&server, &[]);
    b.initialize().await;
    // The GET stream is opened after notifications/initialized; wait until it is on the wire
    // so the listing below races it as a real client's would.
    wait::until("the GET stream", || {
        server
            .requests()
            .iter()
            .any(|r| r.method == reqwest::Method::GET)
    })
    .await;
    b.request(1, "tools/list", json!({})).await;
    let list = b.response(1).await;
    assert!(list["result"]["tools"].is_array(), "{list}");
    b.finish().await;

    let seen = server.requests();
    let conn_of = |pred: &dyn Fn(&crate::support::mcp_server::SeenRequest) -> bool| {
        seen.iter()
            .find(|r| pred(r))
            .and_then(|r| r.conn)
            .expect("the request was seen, with its connection")
    };
    let init = conn_of(&|r| r.rpc_method.as_deref() == Some("initialize"));
    let listed = conn_of(&|r| r.rpc_method.as_deref() == Some("tools/list"));
    let get = conn_of(&|r| r.method == reqwest::Method::GET);
    assert_eq!(listed, init, "tools/list reused the warm connection");
    assert_ne!(get, listed, "the GET stream has a connection of its own");
    let order: Vec<String> = seen
        .iter()
        .filter(|r| r.method == reqwest::Method::POST)
        .filter_map(|r| r.rpc_method.clone())
        .collect();
    let pos = |m: &str| order.iter().position(|x| x == m).unwrap_or(usize::MAX);
    assert!(
        pos("initialize") < pos("notifications/initialized")
            && pos("notifications/initialized") < pos("tools/list"),
        "the client's order is kept: {order:?}"
    );
}

/// `--keep-alive`: the bridge pings the server at the interval with ids of its own, and the
/// answers never reach the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_pings_the_server_and_keeps_the_answers() {
    let server = TestServer::start().await;
    let mut b = bridge(&server, &["--keep-alive", "0.2"]);
    b.initialize().await;
    let pings = || {
        server
            .requests()
            .into_iter()
            .filter(|r| r.rpc_method.as_deref() == Some("ping"))
            .collect::<Vec<_>>()
    };
    wait::until("two keep-alive pings", || pings().len() >= 2).await;
    for p in pings() {
        let id = p
            .rpc_id
            .as_ref()
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        assert!(id.starts_with("alibridge-ping-"), "{id}");
    }
    let fin = b.finish().await;
    assert!(
        !fin.seen.iter().any(|m| m["id"]
            .as_str()
            .is_some_and(|i| i.starts_with("alibridge-ping-"))),
        "ping answers are the bridge's own"
    );
}
