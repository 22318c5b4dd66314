//! Warm starts (issue 14): a second run with the same state directory pays no round trip the
//! first one already paid. AccessKeys: the minted token is reused from the 0600 cache (the
//! fake's mint count proves it), but never past the refresh skew, never after a 401, never for
//! another key, site or policy. `--protocol auto`: the era is remembered per endpoint, so the
//! second run against a modern server sends no `initialize` it would refuse, and a server that
//! changed era behind the same URL is probed again. Counted, never timed.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::support::ak_rig::{env_keys, AkRig};
use crate::support::bridge::Bridge;
use crate::support::delay_proxy::DelayProxy;
use crate::support::home::TempHome;
use crate::support::mcp_server::TestServer;
use crate::support::net::{listen, LOOPBACK};
use crate::support::peers_modern::{Legacy, ModernServer};

const AK_ID: &str = "LTAI5tWarmKey00000000001";
const AK_SECRET: &str = "warmSecret-Zk3Lq8Wv2Xr6Tn1Pm5Bc9Hd";
const OTHER_ID: &str = "LTAI5tWarmOther000000002";
const OTHER_SECRET: &str = "warmOther-Jf4Ks9Ld2Qw7Er1Ty6Ui3Op";

/// The shared AccessKey rig ([`AkRig`]) with two key pairs, and what these suites add.
struct Rig(AkRig);

impl std::ops::Deref for Rig {
    type Target = AkRig;
    fn deref(&self) -> &AkRig {
        &self.0
    }
}

impl Rig {
    async fn start(tag: &str) -> Rig {
        let rig = AkRig::start(&format!("warm-{tag}")).await;
        rig.fake.add_access_key(AK_ID, AK_SECRET);
        rig.fake.add_access_key(OTHER_ID, OTHER_SECRET);
        Rig(rig)
    }

    /// One whole session: initialize, `tools/list`, exit. Returns its stderr.
    async fn session(&self, key: (&str, &str), extra: &[&str]) -> String {
        let mut args = self.args(&[]);
        if !extra.contains(&"--site-type") {
            args.extend(["--site-type".to_string(), "CN".to_string()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let env = env_keys(key.0, key.1);
        let mut b = Bridge::spawn_isolated(args, env, self.home.path());
        b.initialize().await;
        b.request(1, "tools/list", json!({})).await;
        let list = b.response(1).await;
        assert!(list["result"]["tools"].is_array(), "tools/list: {list}");
        b.finish().await.stderr
    }

    fn cache_files(&self) -> Vec<PathBuf> {
        crate::support::home::json_files(&self.home.alibridge_home().join("ak-tokens"))
    }

    fn only_cache_file(&self) -> PathBuf {
        let files = self.cache_files();
        assert_eq!(files.len(), 1, "one cache entry: {files:?}");
        files[0].clone()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The second run with the same keys mints nothing: its requests carry the first run's token.
/// The cache file is 0600 and holds the token but not the AccessKey secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_start_with_access_keys_mints_nothing() {
    let rig = Rig::start("reuse").await;
    rig.session((AK_ID, AK_SECRET), &[]).await;
    assert_eq!(rig.fake.mint_count(), 1);
    let token = rig.fake.minted_tokens()[0].clone();
    // `--debug`: even the most verbose log never shows the cached token.
    let stderr = rig.session((AK_ID, AK_SECRET), &["--debug"]).await;
    assert_eq!(
        rig.fake.mint_count(),
        1,
        "the warm start minted; stderr:\n{stderr}"
    );
    assert!(stderr.contains("kept from an earlier run"), "{stderr}");
    let last = rig.server.requests().pop().expect("requests upstream");
    assert_eq!(
        last.headers["authorization"].to_str().unwrap(),
        format!("Bearer {token}")
    );
    assert!(!stderr.contains(&token), "the token in stderr:\n{stderr}");

    let file = rig.only_cache_file();
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains(&token), "the cache holds the token");
    assert!(
        !text.contains(AK_SECRET),
        "the AccessKey secret is in the cache: {text}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
        let dir = std::fs::metadata(file.parent().unwrap()).unwrap();
        assert_eq!(dir.permissions().mode() & 0o777, 0o700);
    }
}

/// A cached token that is expired, or within `--token-refresh-skew` of expiry, is not used: the
/// next run mints a new one and caches that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_or_nearly_expired_cached_token_is_not_used() {
    let rig = Rig::start("skew").await;
    rig.session((AK_ID, AK_SECRET), &[]).await;
    let file = rig.only_cache_file();
    // (minted, expires) relative to now: expired; 100 s left of an hour, under a 300 s skew.
    for (n, (minted_ago, expires_in)) in [(3600i64, -5i64), (3500, 100)].into_iter().enumerate() {
        let mut rec: Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        rec["minted_at"] = json!(now() as i64 - minted_ago);
        rec["expires_at"] = json!(now() as i64 + expires_in);
        std::fs::write(&file, rec.to_string()).unwrap();
        let stderr = rig
            .session((AK_ID, AK_SECRET), &["--token-refresh-skew", "300"])
            .await;
        assert_eq!(rig.fake.mint_count(), n + 2, "stderr:\n{stderr}");
        let now_cached: Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(
            now_cached["token"].as_str(),
            rig.fake.minted_tokens().last().map(String::as_str),
            "the new token replaced the stale one"
        );
    }
}

/// A cached token the server refuses (401) is dropped: the run mints once and retries, the
/// cache then holds the new token, and the run after that mints nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_cached_token_is_dropped() {
    let rig = Rig::start("401").await;
    rig.session((AK_ID, AK_SECRET), &[]).await;
    let revoked = rig.fake.minted_tokens()[0].clone();
    rig.fake.revoke_all_tokens();
    let stderr = rig.session((AK_ID, AK_SECRET), &[]).await;
    assert_eq!(rig.fake.mint_count(), 2, "stderr:\n{stderr}");
    let refused = rig
        .server
        .requests()
        .iter()
        .filter(|r| r.status == Some(401))
        .count();
    assert_eq!(refused, 1, "one request carried the revoked token");
    let text = std::fs::read_to_string(rig.only_cache_file()).unwrap();
    assert!(
        !text.contains(&revoked),
        "the refused token is still cached"
    );
    rig.session((AK_ID, AK_SECRET), &[]).await;
    assert_eq!(rig.fake.mint_count(), 2, "the replacement is reused");
}

/// Another AccessKey, another site or another boundary policy never reuses a cached token: each
/// mints its own (and keeps it under its own entry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_key_site_or_policy_does_not_reuse_the_token() {
    let rig = Rig::start("keyed").await;
    let policy = r#"{"Version": "1", "Statement": [{"Effect": "Deny", "Action": ["ecs:Delete*"], "Resource": "*"}]}"#;
    let runs: [((&str, &str), Vec<&str>); 4] = [
        ((AK_ID, AK_SECRET), vec![]),
        ((OTHER_ID, OTHER_SECRET), vec![]),
        ((AK_ID, AK_SECRET), vec!["--site-type", "INTL"]),
        ((AK_ID, AK_SECRET), vec!["--boundary-policy", policy]),
    ];
    for (n, (key, extra)) in runs.iter().enumerate() {
        let stderr = rig.session(*key, extra).await;
        assert_eq!(
            rig.fake.mint_count(),
            n + 1,
            "run {n} reused a token:\n{stderr}"
        );
    }
    assert_eq!(rig.cache_files().len(), 4);
    let tokens = rig.fake.minted_tokens();
    assert_eq!(rig.fake.token_key(&tokens[1]).as_deref(), Some(OTHER_ID));
    // And each is reused by its own context.
    for (key, extra) in &runs {
        rig.session(*key, extra).await;
    }
    assert_eq!(rig.fake.mint_count(), 4);
}

/// A wrong secret for a cached AccessKey id misses the cache: it fails as it would cold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_does_not_unlock_a_cached_token() {
    let rig = Rig::start("wrong").await;
    rig.session((AK_ID, AK_SECRET), &[]).await;
    let args = [
        rig.server.url(),
        "--transport".into(),
        "http-only".into(),
        "--auth".into(),
        "ak".into(),
        "--site-type".into(),
        "CN".into(),
        "--ims-endpoint".into(),
        rig.fake.url(),
    ];
    let env = [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", AK_ID),
        (
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            "not-the-secret-0000000000",
        ),
    ];
    let before = rig.server.requests().len();
    let mut b = Bridge::spawn_isolated(args, env, rig.home.path());
    b.request(0, "initialize", crate::support::check::init_params())
        .await;
    let resp = b.response(0).await;
    assert!(resp.get("error").is_some(), "{resp}");
    b.finish().await;
    assert_eq!(
        rig.fake.calls_of("GenerateAccessToken").len(),
        2,
        "the wrong key was tried"
    );
    assert_eq!(rig.fake.mint_count(), 1);
    assert_eq!(rig.server.requests().len(), before, "nothing sent upstream");
}

/// `--protocol auto` against a modern-only server: the first run pays for its era (the
/// client's `initialize`, refused, then `server/discover`) and remembers it; the second sends
/// `server/discover` straight away and no `initialize` at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_start_skips_the_trip_that_taught_the_era() {
    let server = ModernServer::start(Legacy::Reject);
    let home = TempHome::new("warm-era");
    let mut firsts = Vec::new();
    for _ in 0..2 {
        let before = server.log().await.len();
        let mut b =
            Bridge::spawn_isolated([server.url()], [("ALIBRIDGE_AUTH", "none")], home.path());
        b.initialize().await;
        b.request(1, "tools/list", json!({})).await;
        assert!(b.response(1).await["result"]["tools"].is_array());
        b.finish().await;
        let methods: Vec<String> = server.log().await[before..]
            .iter()
            .filter_map(|r| r["rpcMethod"].as_str().map(str::to_string))
            .filter(|m| m == "server/discover" || m == "initialize")
            .collect();
        firsts.push(methods);
    }
    assert_eq!(
        firsts,
        [
            vec!["initialize", "server/discover"],
            vec!["server/discover"]
        ],
        "cold, then warm"
    );
}

/// A remembered initialize era at a URL now served by a modern-only server (which refuses
/// `initialize` with 400 / −32022): the bridge probes once, serves the client in the modern era,
/// and remembers that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remembered_era_the_server_left_is_probed_again() {
    let old = TestServer::start().await;
    let modern = ModernServer::start(Legacy::Reject);
    let old_addr = url_addr(&old.url());
    let front = DelayProxy::start(listen(LOOPBACK).await, old_addr, std::time::Duration::ZERO);
    let url = format!("http://{}/mcp", front.addr());
    let home = TempHome::new("warm-era-moved");
    let session = |home: &TempHome| {
        let mut b =
            Bridge::spawn_isolated([url.clone()], [("ALIBRIDGE_AUTH", "none")], home.path());
        async move {
            b.initialize().await;
            b.request(1, "tools/list", json!({})).await;
            let list = b.response(1).await;
            assert!(list["result"]["tools"].is_array(), "{list}");
            b.finish().await.stderr
        }
    };
    session(&home).await;
    assert_eq!(
        old.requests()
            .iter()
            .filter(|r| r.rpc_method.as_deref() == Some("server/discover"))
            .count(),
        0,
        "the initialize era needs no probe"
    );
    front.retarget(url_addr(&modern.url()));
    let stderr = session(&home).await;
    let refused = modern.posts("initialize").await;
    assert_eq!(
        refused.len(),
        1,
        "one initialize tried on the remembered era:\n{stderr}"
    );
    assert_eq!(
        modern.posts("server/discover").await.len(),
        1,
        "then one probe"
    );
    let era_files: Vec<_> = std::fs::read_dir(home.alibridge_home().join("eras"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(era_files.len(), 1);
    let rec: Value =
        serde_json::from_str(&std::fs::read_to_string(era_files[0].path()).unwrap()).unwrap();
    assert_eq!(rec["era"], "modern");
}

fn url_addr(url: &str) -> std::net::SocketAddr {
    let u = reqwest::Url::parse(url).unwrap();
    format!("{}:{}", u.host_str().unwrap(), u.port().unwrap())
        .parse()
        .unwrap()
}

/// The token is minted at start, while the client is still starting: before any message the
/// fake has minted, and the client's requests then use that token (one mint in all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_minted_before_the_client_speaks() {
    let rig = Rig::start("early").await;
    let args = [
        rig.server.url(),
        "--transport".into(),
        "http-only".into(),
        "--auth".into(),
        "ak".into(),
        "--site-type".into(),
        "CN".into(),
        "--ims-endpoint".into(),
        rig.fake.url(),
    ];
    let env = [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", AK_ID),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", AK_SECRET),
    ];
    let mut b = Bridge::spawn_isolated(args, env, rig.home.path());
    crate::support::wait::until("a token minted before the first message", || {
        rig.fake.mint_count() == 1
    })
    .await;
    assert!(
        rig.server.requests().is_empty(),
        "nothing sent upstream yet"
    );
    b.initialize().await;
    b.request(1, "tools/list", json!({})).await;
    assert!(b.response(1).await["result"]["tools"].is_array());
    b.finish().await;
    assert_eq!(rig.fake.mint_count(), 1);
}

/// Issue 21: a start that must mint a token connects to the server meanwhile (a `HEAD` without
/// any credential, whose connection the first request reuses); a start that finds its token in
/// the cache goes straight to the server and sends no such `HEAD`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mint_at_start_overlaps_the_connect_and_carries_nothing() {
    let rig = Rig::start("preconnect").await;
    rig.session((AK_ID, AK_SECRET), &[]).await;
    let seen = rig.server.all_requests();
    let heads: Vec<_> = seen
        .iter()
        .filter(|r| r.method == reqwest::Method::HEAD)
        .collect();
    assert_eq!(heads.len(), 1, "one preconnect for the one mint");
    assert!(
        heads[0].header("authorization").is_none(),
        "the preconnect carries no credential"
    );
    let token = rig.fake.minted_tokens()[0].clone();
    assert!(!format!("{:?}", heads[0].headers).contains(&token));
    // Whether the first request then reuses that connection depends on which finishes first,
    // the mint or the HEAD; the simulated-WAN bench measures what the overlap saves.
    rig.session((AK_ID, AK_SECRET), &[]).await;
    let heads_after = rig
        .server
        .all_requests()
        .iter()
        .filter(|r| r.method == reqwest::Method::HEAD)
        .count();
    assert_eq!(heads_after, 1, "a cached token needs no preconnect");
    assert_eq!(rig.fake.mint_count(), 1, "the second start used the cache");
}
