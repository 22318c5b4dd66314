//! Issue 21's HTTP/2 clause: where the server speaks HTTP/2 (ALPN `h2` over TLS), every request
//! of a session shares one connection — the GET stream for server-initiated messages included,
//! as one more multiplexed stream, where over HTTP/1.1 it takes a connection of its own
//! (`first_contact`). Asserted by the server's own count of accepted TCP connections and the
//! connection and version of each request, never by time.
//!
//! The bridge trusts the test's CA through `SSL_CERT_FILE`, which the platform verifier reads
//! on Linux (in place of the system store).

use serde_json::json;

use crate::support::bridge::Bridge;
use crate::support::net::ConnId;
use crate::support::tls_server::{TlsServer, SESSION_ID};

/// initialize → initialized → (the GET stream opens and stays open) → tools/list → tools/call:
/// the server accepted exactly one TCP connection, negotiated `h2` on it, and saw every request
/// on it as HTTP/2; the list and the call arrived while the GET stream was open beside them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_and_the_get_stream_share_one_http2_connection() {
    let server = TlsServer::start().await;
    let url = server.url();
    let mut b = Bridge::spawn_with_env(
        [url.as_str(), "--transport", "http-only", "--auth", "none"],
        [("SSL_CERT_FILE", server.ca_file().as_os_str())],
    );
    let init = b.initialize().await;
    assert_eq!(init["serverInfo"]["name"], "h2-test-server", "{init}");
    // The stream opens after notifications/initialized; the rest goes out once it is open.
    let get = server
        .wait_for("the GET stream", |s| s.method == http::Method::GET)
        .await;
    assert_eq!(get.session.as_deref(), Some(SESSION_ID), "{get:?}");
    b.request(1, "tools/list", json!({})).await;
    let list = b.response(1).await;
    assert_eq!(list["result"]["tools"][0]["name"], "echo", "{list}");
    let call = b.call_tool(2, "echo", json!({"text": "over h2"})).await;
    assert_eq!(call["result"]["content"][0]["text"], "over h2", "{call}");

    let seen = server.seen();
    let rpc: Vec<_> = seen
        .iter()
        .filter_map(|s| s.rpc_method.as_deref())
        .collect();
    assert_eq!(
        rpc,
        [
            "initialize",
            "notifications/initialized",
            "tools/list",
            "tools/call"
        ],
        "{seen:#?}"
    );
    let gets = seen
        .iter()
        .filter(|s| s.method == http::Method::GET)
        .count();
    assert_eq!(gets, 1, "one GET stream, held open: {seen:#?}");
    for s in &seen {
        assert_eq!(
            s.conn,
            ConnId(1),
            "every request on the one connection: {seen:#?}"
        );
        assert_eq!(s.version, http::Version::HTTP_2, "{seen:#?}");
    }
    for method in ["tools/list", "tools/call"] {
        let s = seen
            .iter()
            .find(|s| s.rpc_method.as_deref() == Some(method))
            .unwrap();
        assert_eq!(
            s.streams_open, 1,
            "{method} beside the open GET stream: {seen:#?}"
        );
    }
    assert_eq!(server.connections(), 1, "one TCP connection: {seen:#?}");
    assert_eq!(server.alpn(), [Some(b"h2".to_vec())], "negotiated by ALPN");
    b.finish().await;
}
