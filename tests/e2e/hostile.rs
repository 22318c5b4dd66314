//! Hostile peers against the real binary: every path by which a server (or a host name) could
//! steer the bridge's credentials to another origin is tried, with a canary server on
//! 127.0.0.2 (`support::canary`) as the place the credentials are steered to, and a hostile
//! MCP server (`support::hostile`) or the Alibaba Cloud fake doing the steering.
//!
//! Every scenario asserts both sides: the client gets a clear JSON-RPC error with its request's
//! id naming both origins (or, for the proxy, a 502 body naming both), and the canary received
//! nothing (or at least no secret). Also: `--auth auto` host classification, with a hosts
//! trick: `HTTP_PROXY` makes a public-looking host name (`*.fc.aliyuncs.com`,
//! `openapi-mcp.<region>.aliyuncs.com`) reach a local server.

use std::net::{IpAddr, Ipv4Addr};

use serde_json::{json, Value};

use crate::support::ak_rig::auth_line;
use crate::support::aliyun_fake::AliyunFake;
use crate::support::bridge::Bridge;
use crate::support::canary::Canary;
use crate::support::check::{bridge_error, init_params, tool_text};
use crate::support::home::TempHome;
use crate::support::hostile::{Hostile, MESSAGES_PATH};
use crate::support::mcp_server::{ServerOptions, TestServer};
use crate::support::proxy::{post, Proxy, INIT};

const HEADER_SECRET: &str = "canary-header-value-5f1e9a";
const BEARER_SECRET: &str = "canary-bearer-token-8c2d4b";
const AK_ID: &str = "LTAI5tHostileKey00000001";
const AK_SECRET: &str = "hostileSecret-Vb7Nq2Rx5Tz8Lm3Kw";

/// `--header` flags carrying the two static secrets.
fn secret_headers() -> Vec<String> {
    vec![
        "--header".into(),
        format!("X-Api-Key: {HEADER_SECRET}"),
        "--header".into(),
        format!("Authorization: Bearer {BEARER_SECRET}"),
    ]
}

/// Spawns the bridge on `url` with the secret headers and `extra` flags (no AccessKeys: an
/// Authorization header makes `auto` choose none).
fn bridge_with_headers(url: &str, extra: &[&str]) -> Bridge {
    let mut args = vec![url.to_string()];
    args.extend(secret_headers());
    args.extend(extra.iter().map(|s| s.to_string()));
    Bridge::spawn(args)
}

/// Asserts `resp` is the bridge's error for `id`, of `kind`, whose message names both origins;
/// returns the message.
fn origin_error(resp: &Value, id: i64, kind: &str, from: &str, to: &str) -> String {
    assert_eq!(resp["id"], id, "{resp}");
    let msg = bridge_error(resp, kind);
    assert!(
        msg.contains(from) && msg.contains(to),
        "the message names neither {from} nor {to}: {msg}"
    );
    for secret in [HEADER_SECRET, BEARER_SECRET, AK_SECRET] {
        assert!(!msg.contains(secret), "a secret in the message: {msg}");
    }
    msg
}

/// Legacy HTTP+SSE: an `endpoint` event naming another origin (the canary on 127.0.0.2, then
/// another port of the same host) is refused; not one POST goes there, the initialize gets an
/// error naming both origins, and so does the next request (the bridge keeps refusing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_endpoint_on_another_origin_is_never_posted_to() {
    let other_host = Canary::start().await;
    let other_port = Canary::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    for canary in [&other_host, &other_port] {
        let hostile = Hostile::start().await;
        hostile.set_endpoint(&format!("{}{MESSAGES_PATH}?sessionId=1", canary.url()));
        let mut b = bridge_with_headers(&hostile.url("/sse"), &["--transport", "sse-only"]);
        b.request(0, "initialize", init_params()).await;
        let msg = origin_error(
            &b.response(0).await,
            0,
            "origin",
            &hostile.origin(),
            &canary.url(),
        );
        assert!(msg.contains("endpoint"), "{msg}");
        b.request(1, "ping", json!({})).await;
        origin_error(
            &b.response(1).await,
            1,
            "origin",
            &hostile.origin(),
            &canary.url(),
        );
        b.finish().await;
        canary.assert_untouched();
        assert!(
            hostile.requests().iter().all(|r| r.method == "GET"),
            "nothing was POSTed anywhere"
        );
    }
}

/// Legacy HTTP+SSE reconnect: the first stream names the server itself and works; the stream
/// breaks, and the new one names the canary: the next request gets an error naming both
/// origins, and the canary receives nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_endpoint_switched_on_reconnect_is_refused() {
    let canary = Canary::start().await;
    let hostile = Hostile::start().await;
    let mut b = bridge_with_headers(&hostile.url("/sse"), &["--transport", "sse-only"]);
    b.initialize().await;
    b.request(1, "ping", json!({})).await;
    assert!(b.response(1).await.get("result").is_some());

    hostile.set_endpoint(&format!("{}{MESSAGES_PATH}", canary.url()));
    hostile.break_stream();
    hostile.wait_for(2, |r| r.method == "GET").await;
    let resp = b.call_tool(2, "echo", json!({"text": "x"})).await;
    origin_error(&resp, 2, "origin", &hostile.origin(), &canary.url());
    let stderr = b.finish().await.stderr;
    assert!(stderr.contains("SSE reconnect refused"), "{stderr}");
    canary.assert_untouched();
    assert!(hostile
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .all(|r| r.path == MESSAGES_PATH));
}

/// Streamable HTTP: a 307 or 308 answer to the POST, pointing at the canary, is not followed;
/// the request gets an error naming both origins and the status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_origin_redirect_of_the_post_is_not_followed() {
    let canary = Canary::start().await;
    for status in [307, 308] {
        let hostile = Hostile::start().await;
        hostile.redirect_posts(status, &format!("{}/stolen", canary.url()));
        let mut b = bridge_with_headers(&hostile.url("/mcp"), &[]);
        b.request(0, "initialize", init_params()).await;
        let msg = origin_error(
            &b.response(0).await,
            0,
            "origin",
            &hostile.origin(),
            &canary.url(),
        );
        assert!(msg.contains(&format!("HTTP {status}")), "{msg}");
        b.finish().await;
    }
    canary.assert_untouched();
}

/// A redirect within the same origin is still followed (servers move paths), headers and all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_origin_redirect_is_followed() {
    let hostile = Hostile::start().await;
    hostile.move_path("/old/sse", 308, &hostile.url("/sse"));
    let mut b = bridge_with_headers(&hostile.url("/old/sse"), &["--transport", "sse-only"]);
    b.initialize().await;
    b.finish().await;
    let gets: Vec<_> = hostile
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert_eq!(gets[0].path, "/old/sse");
    assert_eq!(gets[1].path, "/sse");
    assert_eq!(
        gets[1].headers["x-api-key"], HEADER_SECRET,
        "same origin: the headers go along"
    );
}

/// Streamable HTTP: the standalone GET stream redirected to the canary (307) is given up with
/// a warning naming both origins while requests keep working; a resumption GET redirected
/// (308) fails its request with an error naming both origins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_origin_redirect_of_the_get_stream_is_not_followed() {
    let canary = Canary::start().await;
    let hostile = Hostile::start().await;
    hostile.redirect_gets(307, &format!("{}/stream", canary.url()));
    let mut b = bridge_with_headers(&hostile.url("/mcp"), &[]);
    b.initialize().await;
    hostile.wait_for(1, |r| r.method == "GET").await;
    let resp = b.call_tool(1, "echo", json!({"text": "still works"})).await;
    assert_eq!(tool_text(&resp), "hostile answer");

    hostile.redirect_gets(308, &format!("{}/resume", canary.url()));
    hostile.cut_tool_calls();
    let resp = b.call_tool(2, "echo", json!({"text": "cut"})).await;
    let msg = origin_error(&resp, 2, "origin", &hostile.origin(), &canary.url());
    assert!(msg.contains("HTTP 308"), "{msg}");
    let stderr = b.finish().await.stderr;
    let warning = stderr
        .lines()
        .find(|l| l.contains("GET stream refused"))
        .unwrap_or_else(|| panic!("no warning about the GET stream:\n{stderr}"));
    assert!(
        warning.contains(&hostile.origin()) && warning.contains(&canary.url()),
        "{warning}"
    );
    assert!(
        hostile
            .requests()
            .iter()
            .any(|r| r.method == "GET" && r.headers.contains_key("last-event-id")),
        "the bridge did try to resume"
    );
    canary.assert_untouched();
}

/// Legacy HTTP+SSE: the SSE GET itself redirected (307, 308) to the canary is not followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_origin_redirect_of_the_legacy_sse_get_is_not_followed() {
    let canary = Canary::start().await;
    for status in [307, 308] {
        let hostile = Hostile::start().await;
        hostile.redirect_gets(status, &format!("{}/sse", canary.url()));
        let mut b = bridge_with_headers(&hostile.url("/sse"), &["--transport", "sse-only"]);
        b.request(0, "initialize", init_params()).await;
        let msg = origin_error(
            &b.response(0).await,
            0,
            "origin",
            &hostile.origin(),
            &canary.url(),
        );
        assert!(msg.contains(&format!("HTTP {status}")), "{msg}");
        b.finish().await;
    }
    canary.assert_untouched();
}

/// `--auth ak`: a token minted from AccessKeys is attached to the POST, and a redirect to the
/// canary does not carry it (nor the `--header` value) there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_never_carries_a_minted_token() {
    let canary = Canary::start().await;
    let fake = AliyunFake::start().await;
    fake.add_access_key(AK_ID, AK_SECRET);
    let hostile = Hostile::start().await;
    hostile.redirect_posts(307, &format!("{}/stolen", canary.url()));
    let home = TempHome::new("hostile");
    let url = hostile.url("/mcp");
    let ims = fake.url();
    let header = format!("X-Api-Key: {HEADER_SECRET}");
    let args = [
        url.as_str(),
        "--auth",
        "ak",
        "--site-type",
        "CN",
        "--ims-endpoint",
        ims.as_str(),
        "--header",
        header.as_str(),
    ];
    let env = [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", AK_ID),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", AK_SECRET),
    ];
    let mut b = Bridge::spawn_isolated(args, env, home.path());
    b.request(0, "initialize", init_params()).await;
    origin_error(
        &b.response(0).await,
        0,
        "origin",
        &hostile.origin(),
        &canary.url(),
    );
    b.finish().await;
    assert_eq!(fake.mint_count(), 1, "a token was minted and attached");
    let posted = hostile
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    let token = &fake.minted_tokens()[0];
    assert_eq!(
        posted.headers["authorization"].to_str().unwrap(),
        format!("Bearer {token}"),
        "the hostile server itself got the token (it is the named origin)"
    );
    canary.assert_untouched();
}

/// The cloud API client (RAM-OAuth GenerateAccessToken, signed with STS keys carrying a
/// security token) does not follow the fake's 307/308 to the canary: the request gets an
/// `auth` error naming both origins, and no key material reaches the canary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_api_redirect_keeps_signed_calls_home() {
    let canary = Canary::start().await;
    for status in [307, 308] {
        let fake = AliyunFake::start().await;
        let sts = fake.mint_sts(
            "acs:ram::1234567890123456:role/hostile",
            std::time::Duration::from_secs(3600),
        );
        fake.redirect_api(status, &canary.url());
        let server =
            TestServer::start_with(ServerOptions::requiring_bearer(fake.token_checker())).await;
        let home = TempHome::new("hostile");
        let (url, ims) = (server.url(), fake.url());
        let args = [
            url.as_str(),
            "--transport",
            "http-only",
            "--auth",
            "ak",
            "--site-type",
            "CN",
            "--ims-endpoint",
            ims.as_str(),
        ];
        let env = [
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", sts.access_key_id.as_str()),
            (
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
                sts.access_key_secret.as_str(),
            ),
            ("ALIBABA_CLOUD_SECURITY_TOKEN", sts.security_token.as_str()),
        ];
        let mut b = Bridge::spawn_isolated(args, env, home.path());
        b.request(0, "initialize", init_params()).await;
        let fake_origin = fake.url();
        let msg = origin_error(&b.response(0).await, 0, "auth", &fake_origin, &canary.url());
        assert!(msg.contains(&format!("HTTP {status}")), "{msg}");
        assert!(
            !msg.contains(&sts.security_token),
            "the security token in the message: {msg}"
        );
        b.finish().await;
        assert!(fake.redirected() >= 1, "the fake did redirect");
        assert!(
            server.requests().is_empty(),
            "no token, so nothing was sent"
        );
    }
    canary.assert_untouched();
}

/// `alibridge proxy --auth ak`: the upstream answers the forwarded POST with a 307 to the
/// canary; the proxy does not follow it with its token (nor hand it to the client): the client
/// gets a 502 `upstream_redirect` naming both origins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_does_not_follow_a_redirect_with_its_credential() {
    let canary = Canary::start().await;
    let fake = AliyunFake::start().await;
    fake.add_access_key(AK_ID, AK_SECRET);
    let hostile = Hostile::start().await;
    hostile.redirect_posts(307, &format!("{}/stolen", canary.url()));
    let (ims, upstream) = (fake.url(), hostile.origin());
    let proxy = Proxy::start_ak(&ims, &upstream, (AK_ID, AK_SECRET), &[], &[]).await;
    let r = post(&proxy.url("/mcp"), None, INIT).await;
    assert_eq!(r.status(), 502);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "upstream_redirect", "{body}");
    let msg = body["message"].as_str().unwrap();
    assert!(
        msg.contains(&hostile.origin()) && msg.contains(&canary.url()),
        "{msg}"
    );
    assert_eq!(fake.mint_count(), 1, "the proxy's token was attached");
    canary.assert_untouched();
}

/// `--auth auto` with AccessKeys available: hosts under Alibaba Cloud domains that are not the
/// OpenAPI MCP service (a Function Compute trigger, an OSS bucket named like the service) get
/// no AccessKey-minted token, and the auth line says why. The host names reach the canary
/// through `HTTP_PROXY`, so the test sees exactly what those hosts would have received.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_keeps_access_keys_from_hosts_that_are_not_openapi_mcp() {
    let fake = AliyunFake::start().await;
    fake.add_access_key(AK_ID, AK_SECRET);
    for host in [
        "fn-canary.cn-hangzhou.fc.aliyuncs.com",
        "openapi-mcp.oss-cn-hangzhou.aliyuncs.com",
    ] {
        let canary = Canary::start().await;
        let home = TempHome::new("hostile");
        let url = format!("http://{host}/mcp");
        let ims = fake.url();
        let args = [
            url.as_str(),
            "--allow-http",
            "--transport",
            "http-only",
            "--ims-endpoint",
            ims.as_str(),
        ];
        let proxy = canary.url();
        let env = [
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", AK_ID),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", AK_SECRET),
            ("HTTP_PROXY", proxy.as_str()),
            ("NO_PROXY", "127.0.0.1"),
        ];
        let mut b = Bridge::spawn_isolated(args, env, home.path());
        b.request(0, "initialize", init_params()).await;
        b.response(0).await; // the canary is no MCP server: some error
        let stderr = b.finish().await.stderr;
        let auth = auth_line(&stderr);
        assert!(
            auth.contains("OAuth (auto: ")
                && auth.contains(&format!("{host} is not an OpenAPI MCP endpoint")),
            "{auth}"
        );
        assert!(!stderr.contains("alibridge: warning:"), "{stderr}");
        let seen = canary.requests();
        assert!(
            seen.iter().any(|r| r.target.contains(host)),
            "the request went to {host} (through the canary as proxy): {seen:?}"
        );
        assert!(seen.iter().all(|r| r.header("authorization").is_none()));
        canary.assert_no_secrets(&[AK_ID, AK_SECRET]);
        assert!(fake.calls().is_empty(), "no token was minted");
    }
}

/// `--auth ak` to such a host is the user's explicit choice: it works, and exactly one stderr
/// line names the origin that receives the minted token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_ak_to_another_host_names_it_once() {
    let fake = AliyunFake::start().await;
    fake.add_access_key(AK_ID, AK_SECRET);
    let receiver = Canary::start().await;
    let home = TempHome::new("hostile");
    let host = "fn-canary.cn-hangzhou.fc.aliyuncs.com";
    let url = format!("http://{host}/mcp");
    let ims = fake.url();
    let args = [
        url.as_str(),
        "--allow-http",
        "--transport",
        "http-only",
        "--auth",
        "ak",
        "--ims-endpoint",
        ims.as_str(),
    ];
    let proxy = receiver.url();
    let env = [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", AK_ID),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", AK_SECRET),
        ("HTTP_PROXY", proxy.as_str()),
        ("NO_PROXY", "127.0.0.1"),
    ];
    let mut b = Bridge::spawn_isolated(args, env, home.path());
    b.request(0, "initialize", init_params()).await;
    b.response(0).await;
    let stderr = b.finish().await.stderr;
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("will receive the bearer tokens minted from your AccessKeys"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].starts_with("alibridge: warning: --auth ak: ")
            && warnings[0].contains(&format!("http://{host}")),
        "{}",
        warnings[0]
    );
    assert_eq!(fake.mint_count(), 1);
    let token = &fake.minted_tokens()[0];
    assert!(
        receiver
            .requests()
            .iter()
            .any(|r| r.header("authorization") == Some(format!("Bearer {token}").as_str())),
        "the named host got the token, as asked"
    );
}

/// `--auth auto` on the OpenAPI MCP service's own host (`openapi-mcp.cn-hangzhou.aliyuncs.com`,
/// reached through `HTTP_PROXY`) does use the AccessKeys, infers the CN site, and warns about
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_uses_access_keys_for_the_openapi_mcp_host() {
    let fake = AliyunFake::start().await;
    fake.add_access_key(AK_ID, AK_SECRET);
    let server = TestServer::start_with(ServerOptions {
        any_host: true,
        ..ServerOptions::requiring_bearer(fake.token_checker())
    })
    .await;
    let home = TempHome::new("hostile");
    let url = "http://openapi-mcp.cn-hangzhou.aliyuncs.com/accounts/1/custom/x/id/y/mcp";
    let ims = fake.url();
    let args = [
        url,
        "--allow-http",
        "--transport",
        "http-only",
        "--ims-endpoint",
        ims.as_str(),
    ];
    let proxy = format!("http://{}", server.addr());
    let env = [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", AK_ID),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", AK_SECRET),
        ("HTTP_PROXY", proxy.as_str()),
        ("NO_PROXY", "127.0.0.1"),
    ];
    let mut b = Bridge::spawn_isolated(args, env, home.path());
    b.initialize().await;
    let resp = b
        .call_tool(1, "echo", json!({"text": "via the service host"}))
        .await;
    assert_eq!(tool_text(&resp), "via the service host");
    let stderr = b.finish().await.stderr;
    let auth = auth_line(&stderr);
    assert!(
        auth.contains("AccessKey (auto)") && auth.contains("site CN (inferred"),
        "{auth}"
    );
    assert!(!stderr.contains("alibridge: warning:"), "{stderr}");
    assert_eq!(fake.mint_count(), 1);
    assert!(server
        .requests()
        .iter()
        .all(|r| r.header("host") == Some("openapi-mcp.cn-hangzhou.aliyuncs.com")));
}
