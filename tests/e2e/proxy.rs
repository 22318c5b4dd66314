//! `alibridge proxy` end to end, its boundaries: access rules and the server list that feeds
//! them, the Host/Origin guard, the bind warning, the proxy token, connection and body caps,
//! and AccessKey credentials (401 refresh, health without secrets). The real binary listens on
//! a free loopback port; raw HTTP and the rmcp test server (with its bearer check) talk to it.
//! Credentials come from the Alibaba Cloud fake (`support::aliyun_fake`); the server list from
//! a small ROA fake defined here. Sessions, peers and lifecycle: `proxy_sessions`.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::support::aliyun_fake::AliyunFake;
use crate::support::mcp_server::{Match, ServerOptions, TestServer};
use crate::support::net::{http_client, listen, serve, LOOPBACK};
use crate::support::proxy::{handshake, plain_rig, post, Proxy, INIT, STEP};

/// Sends `request` (a whole HTTP/1.1 request, `Connection: close`) and returns the status and
/// the raw rest of the answer.
async fn raw(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(STEP, s.read_to_end(&mut out))
        .await
        .expect("no answer")
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text}"));
    (status, text)
}

fn echo_call(id: u32, text: &str) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"echo","arguments":{"text":text}}})
        .to_string()
}

/// The allow/block matrix: names, ids, path prefixes on segment boundaries, block over allow,
/// case and encoded spellings of a blocked server; denied requests get 403 naming the rule and
/// never reach the upstream; allowed ones arrive at the same path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_and_block_matrix() {
    let (server, proxy) = plain_rig(&[
        "--allowed-servers",
        "ecs,Oss999,/mcp",
        "--blocked-servers",
        "ram,/mcp/a",
    ])
    .await;
    assert!(
        proxy
            .banner
            .contains("blocked (--blocked-servers, wins): ram, /mcp/a"),
        "{}",
        proxy.banner
    );
    assert!(proxy
        .banner
        .contains("allowed (--allowed-servers, nothing else): ecs, Oss999, /mcp"));
    let cases: &[(&str, Option<&str>)] = &[
        ("/accounts/1/custom/ecs/id/E1/mcp", None),
        ("/accounts/1/custom/oss/id/Oss999/mcp", None),
        ("/mcp", None),
        ("/mcp/ab/mcp", None),
        ("/mcp/a", Some("blocked by --blocked-servers /mcp/a")),
        ("/mcp/a/mcp", Some("blocked by --blocked-servers /mcp/a")),
        (
            "/accounts/1/custom/ram/id/R1/mcp",
            Some("blocked by --blocked-servers ram"),
        ),
        (
            "/accounts/1/custom/RAM/id/R1/mcp",
            Some("blocked by --blocked-servers ram"),
        ),
        (
            "/accounts/1/system/%72am/id/R1/mcp",
            Some("blocked by --blocked-servers ram"),
        ),
        (
            "/accounts/1/custom/ecs2/id/E2/mcp",
            Some("not in --allowed-servers"),
        ),
        ("/mcpx", Some("not in --allowed-servers")),
        ("/", Some("not in --allowed-servers")),
    ];
    for (path, denied) in cases {
        let r = post(&proxy.url(path), None, INIT).await;
        match denied {
            None => assert_eq!(r.status(), 200, "{path} should be allowed"),
            Some(rule) => {
                assert_eq!(r.status(), 403, "{path} should be denied");
                let body: Value = r.json().await.unwrap();
                assert_eq!(body["error"], "access_denied", "{body}");
                assert_eq!(body["rule"], *rule, "{path}: {body}");
            }
        }
    }
    let reached: Vec<String> = server.requests().iter().map(|r| r.uri.clone()).collect();
    let allowed: Vec<&str> = cases
        .iter()
        .filter(|c| c.1.is_none())
        .map(|c| c.0)
        .collect();
    assert_eq!(
        reached, allowed,
        "exactly the allowed requests reached the upstream"
    );

    // Spellings another server could resolve differently are refused before any rule.
    for path in ["/mcp/x/%2e%2e/a/mcp", "/mcp/%2Fa/mcp", "/mcp//a/mcp"] {
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            proxy.addr
        );
        let (status, text) = raw(proxy.addr, &req).await;
        assert_eq!(status, 400, "{path}: {text}");
        assert!(text.contains("bad_path"), "{text}");
    }
    assert_eq!(server.requests().len(), allowed.len());
}

/// DNS rebinding and cross-site pages: a foreign Host, a foreign Origin or a cross-site
/// Sec-Fetch-Site get 403 and never reach the upstream; the proxy's own names work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_and_origin_rebinding_is_refused() {
    let (server, proxy) = plain_rig(&[]).await;
    let port = proxy.addr.port();
    let request = |host: String, extra: &str| {
        format!(
            "POST /mcp HTTP/1.1\r\nHost: {host}\r\n{extra}Accept: application/json, text/event-stream\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{INIT}",
            INIT.len()
        )
    };
    let refused = [
        request(format!("rebind.evil.example:{port}"), ""),
        request(format!("localhost.evil.example:{port}"), ""),
        request(format!("127.0.0.1:{}", port.wrapping_add(1)), ""),
        request(
            format!("127.0.0.1:{port}"),
            "Origin: http://evil.example\r\n",
        ),
        request(format!("127.0.0.1:{port}"), "Origin: null\r\n"),
        request(
            format!("127.0.0.1:{port}"),
            "Sec-Fetch-Site: cross-site\r\n",
        ),
    ];
    for req in &refused {
        let (status, text) = raw(proxy.addr, req).await;
        assert_eq!(status, 403, "{req}\n→ {text}");
        assert!(text.contains("forbidden_host"), "{text}");
    }
    let own_origin = format!("Origin: http://127.0.0.1:{port}\r\n");
    let (status, text) = raw(
        proxy.addr,
        &request(format!("127.0.0.1:{port}"), &own_origin),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let (status, _) = raw(proxy.addr, &request(format!("localhost:{port}"), "")).await;
    assert_eq!(status, 200);
    let (status, text) = raw(
        proxy.addr,
        &format!("GET /health HTTP/1.1\r\nHost: evil.example:{port}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 403, "/health is guarded too: {text}");
    assert_eq!(
        server.requests().len(),
        2,
        "only the two accepted requests reached the upstream"
    );
    proxy.stderr_with("refused a request").await;
}

/// The AccessKey the proxy runs with in the AccessKey tests.
const KEY: (&str, &str) = ("LTAIproxytest", "proxy-secret-0123456789");

/// The AccessKey rig: the Alibaba Cloud fake mints tokens, the test server accepts only valid
/// ones, and the proxy runs `--auth ak` with keys in its environment.
async fn ak_rig(fake: &AliyunFake, server: &TestServer, extra: &[&str]) -> Proxy {
    fake.add_access_key(KEY.0, KEY.1);
    let upstream = format!("http://{}", server.addr());
    let extra = [&["--debug"], extra].concat();
    Proxy::start_ak(&fake.url(), &upstream, KEY, &extra, &[]).await
}

/// Upstream 401 → the credential mints a new token → the request (body kept) is sent once
/// more and succeeds; the tool runs once; no secret, token or body reaches the logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_401_refreshes_the_token_and_retries_once() {
    let fake = AliyunFake::start().await;
    let server =
        TestServer::start_with(ServerOptions::requiring_bearer(fake.token_checker())).await;
    let proxy = ak_rig(&fake, &server, &[]).await;
    let url = proxy.url("/accounts/1/custom/t/id/x/mcp");
    let sid = handshake(&url).await;
    assert_eq!(fake.mint_count(), 1);
    fake.revoke_all_tokens();
    let r = post(&url, Some(&sid), &echo_call(7, "body-marker-7f3a")).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("body-marker-7f3a"));
    assert_eq!(fake.mint_count(), 2, "one new token");
    let tokens = fake.minted_tokens();
    let posts: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.tool.as_deref() == Some("echo"))
        .collect();
    assert_eq!(posts.len(), 2, "sent, refused, sent once more");
    assert_eq!(
        (posts[0].status, posts[0].bearer()),
        (Some(401), Some(tokens[0].as_str()))
    );
    assert_eq!(
        (posts[1].status, posts[1].bearer()),
        (Some(200), Some(tokens[1].as_str()))
    );
    assert_eq!(posts[0].body, posts[1].body, "the same body both times");
    assert_eq!(server.calls("echo"), 1);
    let logs = proxy.stderr();
    for secret in fake
        .secrets()
        .iter()
        .map(String::as_str)
        .chain(["body-marker-7f3a", "client-secret"])
    {
        assert!(
            !logs.contains(secret),
            "{secret:.12}… reached the logs:\n{logs}"
        );
    }
}

/// A second 401 (after the refresh) goes back to the client as the upstream sent it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_401_goes_back_to_the_client() {
    let fake = AliyunFake::start().await;
    let server =
        TestServer::start_with(ServerOptions::requiring_bearer(fake.token_checker())).await;
    let proxy = ak_rig(&fake, &server, &[]).await;
    let url = proxy.url("/mcp");
    let sid = handshake(&url).await;
    let body = r#"{"error":"invalid_token","error_description":"still no"}"#;
    server.fail_next(Match::tool("echo"), 401, body);
    server.fail_next(Match::tool("echo"), 401, body);
    let r = post(&url, Some(&sid), &echo_call(8, "x")).await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.text().await.unwrap(), body);
    let posts = server
        .requests()
        .into_iter()
        .filter(|r| r.tool.is_some())
        .count();
    assert_eq!(posts, 2, "one retry, no more");
    assert_eq!(server.calls("echo"), 0);
}

/// `GET /health` reports the credential's state and counters, never a secret; a credential
/// that cannot mint makes it 503 with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_token_state_without_secrets() {
    let fake = AliyunFake::start().await;
    let server =
        TestServer::start_with(ServerOptions::requiring_bearer(fake.token_checker())).await;
    let proxy = ak_rig(&fake, &server, &[]).await;
    handshake(&proxy.url("/mcp")).await;
    let r = http_client()
        .get(proxy.url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let h: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (h["status"].as_str(), h["auth"].as_str()),
        (Some("ok"), Some("ak")),
        "{h}"
    );
    assert_eq!(h["token"]["state"], "present", "{h}");
    assert_eq!(h["requests"]["forwarded"], 2, "{h}");
    for secret in fake.secrets() {
        assert!(!text.contains(&secret), "/health shows a secret: {text}");
    }
    assert!(!text.contains("Bearer"), "{text}");

    let denied = AliyunFake::start().await;
    denied.add_access_key_without_permission("LTAInoperm", "noperm-secret-abcdef");
    let upstream = format!("http://{}", server.addr());
    let key = ("LTAInoperm", "noperm-secret-abcdef");
    let proxy = Proxy::start_ak(&denied.url(), &upstream, key, &[], &[]).await;
    let r = http_client()
        .get(proxy.url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let text = r.text().await.unwrap();
    let h: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (h["status"].as_str(), h["token"]["state"].as_str()),
        (Some("degraded"), Some("error")),
        "{h}"
    );
    assert!(
        h["token"]["error"]
            .as_str()
            .unwrap()
            .contains("AliyunOpenAPIMCPServerStaticCredentialAccess"),
        "{h}"
    );
    assert!(!text.contains("noperm-secret"), "{text}");
}

/// Listening on all interfaces prints the warning that every local user and network peer gets
/// the proxy's cloud identity; loopback clients still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_loopback_bind_warns() {
    let server = TestServer::start().await;
    let upstream = format!("http://{}", server.addr());
    let mut proxy = Proxy::start(
        &[
            "--host",
            "0.0.0.0",
            "--auth",
            "none",
            "--upstream-url",
            &upstream,
        ],
        &[],
    )
    .await;
    let warning = proxy
        .stderr_with(
            "warning: --host 0.0.0.0 is not a loopback address: every local user and network peer",
        )
        .await;
    assert!(warning.contains("cloud identity"), "{warning}");
    handshake(&proxy.url("/mcp")).await;
    proxy.sigterm();
    assert_eq!(proxy.wait().await, 0);
}

/// A ROA fake of OpenAPI Explorer on loopback: `GET /apimcpservers` answers three servers when
/// the request is ACS3-signed with the test key; any other path answers 200 `{"path": …}`.
/// Serves until the guard is dropped.
async fn listing_fake() -> (SocketAddr, DropGuard) {
    let listener = listen(LOOPBACK).await;
    let addr = listener.local_addr().unwrap();
    let kill = CancellationToken::new();
    serve(listener, kill.clone(), move |req| async move {
        let h = |n: &str| {
            req.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let body = if req.uri().path() == "/apimcpservers" {
            let signed = h("authorization")
                .starts_with("ACS3-HMAC-SHA256 Credential=LTAIproxytest,SignedHeaders=")
                && h("x-acs-action") == "ListApiMcpServers"
                && h("x-acs-version") == "2024-11-30"
                && !h("x-acs-signature-nonce").is_empty();
            let host = format!("http://{addr}");
            if signed {
                let servers: Vec<Value> = ["ecs", "oss", "ram"].iter().map(|n| json!({
                    "id": format!("{n}-id"), "name": n,
                    "urls": {"mcp": format!("{host}/acs/mcp-server/{n}/mcp"), "sse": format!("{host}/acs/mcp-server/{n}/sse")}
                })).collect();
                json!({"requestId": "r", "apiMcpServers": servers})
            } else {
                json!({"Code": "IncompleteSignature", "Message": "not signed"})
            }
        } else {
            json!({"path": req.uri().path()})
        };
        hyper::Response::new(Full::new(Bytes::from(body.to_string())))
    });
    (addr, kill.drop_guard())
}

/// With AccessKeys the start-up report lists the account's servers (ListApiMcpServers, ACS3
/// signed) with their proxy URLs and rule status, and names from the list drive the rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_list_is_printed_and_feeds_the_rules() {
    let fake = AliyunFake::start().await;
    fake.add_access_key(KEY.0, KEY.1);
    let (listing, _listing) = listing_fake().await;
    let upstream = format!("http://{listing}");
    let rules = ["--allowed-servers", "ecs,ram", "--blocked-servers", "ram"];
    let proxy = Proxy::start_ak(&fake.url(), &upstream, KEY, &rules, &[]).await;
    let b = &proxy.banner;
    assert!(
        b.contains("available servers (ListApiMcpServers, 3):"),
        "{b}"
    );
    assert!(b.contains(&format!("  - ecs\n      MCP: {0}/acs/mcp-server/ecs/mcp\n      SSE: {0}/acs/mcp-server/ecs/sse\n", proxy.base)), "{b}");
    assert!(b.contains("  - oss (not in --allowed-servers)\n"), "{b}");
    assert!(
        b.contains("  - ram (blocked by --blocked-servers ram)\n"),
        "{b}"
    );
    assert!(!b.contains("proxy-secret"), "{b}");
    let get = |path: &str| http_client().get(proxy.url(path)).send();
    assert_eq!(get("/acs/mcp-server/ecs/mcp").await.unwrap().status(), 200);
    assert_eq!(get("/acs/mcp-server/ecs/sse").await.unwrap().status(), 200);
    for denied in [
        "/acs/mcp-server/oss/mcp",
        "/acs/mcp-server/ram/mcp",
        "/acs/mcp-server/ecsx/mcp",
    ] {
        assert_eq!(get(denied).await.unwrap().status(), 403, "{denied}");
    }
}

/// POSTs one JSON-RPC message with `authorization` (if any) as the client's Authorization.
async fn post_as(
    url: &str,
    authorization: Option<&str>,
    session: Option<&str>,
    body: &str,
) -> reqwest::Response {
    let mut rb = http_client()
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(a) = authorization {
        rb = rb.header("authorization", a);
    }
    if let Some(s) = session {
        rb = rb
            .header("mcp-session-id", s)
            .header("mcp-protocol-version", "2025-06-18");
    }
    rb.send().await.expect("the proxy answers")
}

const PROXY_TOKEN: &str = "proxy-token-7Hq2Wm9Zx4Lc";

/// `--proxy-token` (here from `ALIBRIDGE_PROXY_TOKEN`): without it or with another token a
/// request is 401 with a body saying what to send, and reaches nothing; with it the session
/// works, and upstream sees the proxy's own credential (the minted token), never the client's
/// Authorization. `/health` stays open but without details; the token never reaches the logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_token_is_required_and_never_forwarded() {
    let fake = AliyunFake::start().await;
    fake.add_access_key(KEY.0, KEY.1);
    let server =
        TestServer::start_with(ServerOptions::requiring_bearer(fake.token_checker())).await;
    let (upstream, ims) = (format!("http://{}", server.addr()), fake.url());
    let env = [("ALIBRIDGE_PROXY_TOKEN", PROXY_TOKEN)];
    let proxy = Proxy::start_ak(&ims, &upstream, KEY, &["--debug"], &env).await;
    assert!(
        proxy
            .banner
            .contains("clients must send Authorization: Bearer <the --proxy-token value>"),
        "{}",
        proxy.banner
    );
    let url = proxy.url("/mcp");
    for (auth, says) in [
        (None, "this proxy requires a token"),
        (Some("Bearer not-the-token"), "does not match"),
        (
            Some(&format!("Basic {PROXY_TOKEN}") as &str),
            "is not \"Bearer <token>\"",
        ),
    ] {
        let r = post_as(&url, auth, None, INIT).await;
        assert_eq!(r.status(), 401, "{auth:?}");
        assert!(r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer"));
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "unauthorized", "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains(says) && message.contains("--proxy-token"),
            "{message}"
        );
    }
    // (The start-up listing, GET /apimcpservers, went to the upstream before any client.)
    let mcp_requests = || {
        server
            .requests()
            .into_iter()
            .filter(|r| r.uri.starts_with("/mcp"))
            .collect::<Vec<_>>()
    };
    assert!(mcp_requests().is_empty(), "refused requests reach nothing");
    assert_eq!(fake.mint_count(), 0);

    let bearer = format!("Bearer {PROXY_TOKEN}");
    let r = post_as(&url, Some(&bearer), None, INIT).await;
    assert_eq!(r.status(), 200);
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_string();
    let r = post_as(
        &url,
        Some(&bearer),
        Some(&sid),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await;
    assert_eq!(r.status(), 202);
    let r = post_as(&url, Some(&bearer), Some(&sid), &echo_call(3, "with token")).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("with token"));
    let token = fake.minted_tokens()[0].clone();
    let forwarded = mcp_requests();
    assert_eq!(forwarded.len(), 3);
    for r in forwarded {
        assert_eq!(
            r.bearer(),
            Some(token.as_str()),
            "the proxy's own credential"
        );
        for (name, value) in &r.headers {
            assert!(
                !value.to_str().unwrap_or_default().contains(PROXY_TOKEN),
                "the proxy token reached the upstream in {name}"
            );
        }
    }

    let open: Value = proxy.health().await;
    assert_eq!(open["status"], "ok");
    assert!(
        open.get("token").is_none() && open.get("upstream").is_none(),
        "{open}"
    );
    let full: Value = http_client()
        .get(proxy.url("/health"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(full["token"]["state"], "present", "{full}");
    assert_eq!(full["requests"]["unauthorized"], 3, "{full}");
    assert!(!proxy.stderr().contains(PROXY_TOKEN));
}

/// Sends `GET /health` on a new keep-alive connection and reads the whole answer, leaving the
/// connection open (it holds one of the proxy's connection slots).
async fn open_connection(addr: SocketAddr) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(STEP, s.read(&mut buf))
            .await
            .expect("an answer in time")
            .unwrap();
        assert!(n > 0, "the proxy closed the connection");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .expect("a Content-Length");
            if got.len() >= end + 4 + length {
                assert!(text.starts_with("HTTP/1.1 200"), "{text}");
                return s;
            }
        }
    }
}

/// `--max-connections 2`: with two connections open, a third is answered 503 naming the limit
/// and the flag, and reaches nothing; once one closes, new connections are served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cap_refuses_cleanly_and_recovers() {
    let (server, proxy) = plain_rig(&["--max-connections", "2"]).await;
    assert!(
        proxy.banner.contains("limits: 2 connections"),
        "{}",
        proxy.banner
    );
    let first = open_connection(proxy.addr).await;
    let _second = open_connection(proxy.addr).await;
    let host = proxy.addr;
    let health = format!("GET /health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let (status, text) = raw(proxy.addr, &health).await;
    assert_eq!(status, 503, "{text}");
    assert!(
        text.contains("too_many_connections")
            && text.contains("already serving 2 connections")
            && text.contains("--max-connections"),
        "{text}"
    );
    let init = format!(
        "POST /mcp HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{INIT}",
        INIT.len()
    );
    let (status, _) = raw(proxy.addr, &init).await;
    assert_eq!(status, 503);
    assert!(
        server.requests().is_empty(),
        "refused connections reach nothing"
    );

    drop(first);
    // The proxy frees the slot when it sees the close; serve again from then on.
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let (status, _) = raw(proxy.addr, &health).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot was never freed"
        );
        tokio::task::yield_now().await;
    }
    let (status, _) = raw(proxy.addr, &init).await;
    assert_eq!(status, 200);
    proxy.stderr_with("--max-connections reached").await;
}

/// `--max-body-size 2KiB`: a larger body is 413 naming the limit and the flag, whether its
/// size is declared (`Content-Length`, refused before reading) or not (chunked, refused once
/// past the limit); it reaches nothing, and a body under the limit passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_size_cap_is_a_413_naming_the_flag() {
    let (server, proxy) = plain_rig(&["--max-body-size", "2KiB"]).await;
    let url = proxy.url("/mcp");
    let big = echo_call(1, &"x".repeat(3000));
    let r = post(&url, None, &big).await;
    assert_eq!(r.status(), 413);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "body_too_large", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("(2 KiB)") && message.contains("--max-body-size"),
        "{message}"
    );

    let host = proxy.addr;
    let chunk = "y".repeat(1500);
    let chunked = format!(
        "POST /mcp HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{len:x}\r\n{chunk}\r\n{len:x}\r\n{chunk}\r\n0\r\n\r\n",
        len = chunk.len()
    );
    let (status, text) = raw(proxy.addr, &chunked).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("--max-body-size"), "{text}");
    assert!(server.requests().is_empty(), "refused bodies reach nothing");

    handshake(&url).await;
    assert_eq!(server.requests().len(), 2);
}
