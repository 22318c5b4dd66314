//! Fast first contact (issue 21), asserted by order and by connection, never by time: the GET
//! stream for server-initiated messages opens on a connection of its own, so the client's
//! first `tools/list` goes out on the warm connection `initialize` used instead of paying a new
//! connect behind the stream.

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
