//! The Alibaba fake itself: its canonicalisation reproduces the published vectors, and it
//! refuses what Alibaba Cloud refuses (hand-signed requests the product would never make).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::access_key::{AK_ID, AK_SECRET, ROLE_ARN};
use crate::support::aliyun_fake::{
    rpc, AliyunFake, ASSUME_ROLE, CN_CLIENT_ID, GENERATE_ACCESS_TOKEN, IMS_VERSION, OPENAPI_SCOPE,
    STS_VERSION,
};
use crate::support::net::http_client;
use crate::support::wait::until;

/// Sends an RPC POST to the fake; returns (status, body).
async fn post(fake: &AliyunFake, query: &str, form: Option<&str>) -> (u16, Value) {
    let mut rb = http_client().post(format!("{}/?{query}", fake.url()));
    if let Some(f) = form {
        rb = rb
            .header("content-type", "application/x-www-form-urlencoded")
            .body(f.to_string());
    }
    let resp = rb.send().await.expect("fake reachable");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON body"))
}

/// Signs `query` ∪ `form` with the fake's own primitives (for requests the product would never
/// make); returns the query string (with `Signature`) and the form body.
fn hand_signed_with_form(
    query: &[(&str, &str)],
    form: &[(&str, &str)],
    secret: &str,
) -> (String, String) {
    let map = |p: &[(&str, &str)]| -> BTreeMap<String, String> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let mut all = map(query);
    all.extend(map(form));
    let sig = rpc::signature(
        secret,
        &rpc::string_to_sign("POST", &rpc::canonicalize(&all)),
    );
    (
        format!(
            "{}&Signature={}",
            rpc::canonicalize(&map(query)),
            rpc::percent_encode(&sig)
        ),
        rpc::canonicalize(&map(form)),
    )
}

fn hand_signed(params: &[(&str, &str)], secret: &str) -> String {
    hand_signed_with_form(params, &[], secret).0
}

/// The fake's canonicalisation reproduces the published GenerateAccessToken vector, and the
/// fake refuses what Alibaba Cloud refuses: a wrong signature, an unknown key, a stale
/// timestamp, a reused nonce, another signature method, an STS key with a wrong or expired
/// SecurityToken; errors carry RequestId/HostId/Code/Message/Recommend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_verifies_like_the_real_services() {
    // alibabacloud-mcp-proxy.md §2.3 test vector.
    let policy =
        r#"{"Version":"1","Statement":[{"Effect":"Deny","Action":"ram:*","Resource":"*"}]}"#;
    let vector: BTreeMap<String, String> = [
        ("AccessKeyId", "LTAI_TEST_ID"),
        ("Action", "GenerateAccessToken"),
        ("ClientId", CN_CLIENT_ID),
        ("Format", "json"),
        ("Policy", policy),
        ("Scope", "/internal/acs/openapi"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureNonce", "0123456789abcdef0123456789abcdef"),
        ("SignatureVersion", "1.0"),
        ("Timestamp", "2026-01-01T00:00:00Z"),
        ("Version", "2026-04-21"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let sts = rpc::string_to_sign("POST", &rpc::canonicalize(&vector));
    assert!(sts.starts_with("POST&%2F&AccessKeyId%3DLTAI_TEST_ID%26Action%3DGenerateAccessToken"));
    assert!(sts.contains("Timestamp%3D2026-01-01T00%253A00%253A00Z"));
    assert_eq!(
        rpc::signature("TEST_SECRET", &sts),
        "gInXH6srNK96++DBqlAIyA/19ls="
    );
    assert_eq!(
        rpc::format_timestamp(rpc::parse_timestamp("2024-02-29T23:59:59Z").unwrap()),
        "2024-02-29T23:59:59Z"
    );

    let fake = AliyunFake::start().await;
    fake.add_access_key(AK_ID, AK_SECRET);
    let now = rpc::format_timestamp(SystemTime::now());
    let stale = rpc::format_timestamp(SystemTime::now() - Duration::from_secs(16 * 60));
    let common = |nonce: &'static str, ts: &str| -> Vec<(&'static str, String)> {
        vec![
            ("AccessKeyId", AK_ID.to_string()),
            ("Action", GENERATE_ACCESS_TOKEN.into()),
            ("ClientId", CN_CLIENT_ID.into()),
            ("Format", "JSON".into()),
            ("Scope", OPENAPI_SCOPE.into()),
            ("SignatureMethod", "HMAC-SHA1".into()),
            ("SignatureNonce", nonce.into()),
            ("SignatureVersion", "1.0".into()),
            ("Timestamp", ts.to_string()),
            ("Version", IMS_VERSION.into()),
        ]
    };
    let q = |p: &[(&'static str, String)], secret: &str| {
        let p: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_str())).collect();
        hand_signed(&p, secret)
    };

    // The product's signer and the fake agree (independent implementations).
    let call = alibridge::signer::rpc_v2::RpcCall {
        method: alibridge::signer::HttpMethod::Post,
        action: GENERATE_ACCESS_TOKEN,
        version: IMS_VERSION,
        format: "json",
        query: &[("ClientId", CN_CLIENT_ID), ("Scope", OPENAPI_SCOPE)],
        form: &[],
    };
    let creds = alibridge::signer::ApiCredentials {
        access_key_id: AK_ID,
        access_key_secret: AK_SECRET,
        security_token: None,
    };
    let signed =
        alibridge::signer::rpc_v2::sign(&call, &creds, SystemTime::now(), "product-nonce-1")
            .unwrap();
    let (status, body) = post(&fake, &signed.query, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["Data"]["TokenType"], "Bearer");
    assert!(body["Data"]["ExpiresIn"].is_string());
    assert!(fake.is_valid_token(body["Data"]["AccessToken"].as_str().unwrap()));
    assert!(!fake.is_valid_token("not-a-token"));

    let cases: Vec<(String, u16, &str)> = vec![
        (
            q(&common("n-wrong-secret", &now), "nope"),
            400,
            "SignatureDoesNotMatch",
        ),
        (
            q(&common("product-nonce-1", &now), AK_SECRET),
            400,
            "SignatureNonceUsed",
        ),
        (
            q(&common("n-stale", &stale), AK_SECRET),
            400,
            "InvalidTimeStamp.Expired",
        ),
        (
            {
                let mut p = common("n-unknown", &now);
                p[0].1 = "LTAI5tNobodyHasThisKey00".into();
                q(&p, AK_SECRET)
            },
            404,
            "InvalidAccessKeyId.NotFound",
        ),
        (
            {
                let mut p = common("n-method", &now);
                p[5].1 = "HMAC-SHA256".into();
                q(&p, AK_SECRET)
            },
            400,
            "InvalidSignatureMethod",
        ),
        (
            {
                let mut p = common("n-version", &now);
                p[9].1 = "2015-04-01".into();
                q(&p, AK_SECRET)
            },
            400,
            "InvalidVersion",
        ),
        (
            {
                let mut p = common("n-scope", &now);
                p[4].1 = "/acs/mcp-server".into();
                q(&p, AK_SECRET)
            },
            400,
            "InvalidParameter.Scope",
        ),
    ];
    for (query, want_status, want_code) in cases {
        let (status, body) = post(&fake, &query, None).await;
        assert_eq!(
            (status, body["Code"].as_str()),
            (want_status, Some(want_code)),
            "{body}"
        );
        for k in ["RequestId", "HostId", "Code", "Message", "Recommend"] {
            assert!(body[k].is_string(), "{k} missing: {body}");
        }
    }
    // A good request whose nonce was burnt by a failed signature still goes through: nonces
    // are only spent by verified requests.
    let (status, body) = post(&fake, &q(&common("n-wrong-secret", &now), AK_SECRET), None).await;
    assert_eq!(status, 200, "{body}");

    // STS: AssumeRole over query ∪ form; the STS keys then sign, with their token only.
    fake.set_sts_lifetime(Duration::from_secs(2));
    let assume = [
        ("AccessKeyId", AK_ID),
        ("Action", ASSUME_ROLE),
        ("Format", "JSON"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureNonce", "n-assume"),
        ("SignatureVersion", "1.0"),
        ("Timestamp", now.as_str()),
        ("Version", STS_VERSION),
    ];
    let form = [
        ("DurationSeconds", "900"),
        ("RoleArn", ROLE_ARN),
        ("RoleSessionName", "self-test"),
    ];
    let (query, form_body) = hand_signed_with_form(&assume, &form, AK_SECRET);
    let (status, body) = post(&fake, &query, Some(&form_body)).await;
    assert_eq!(status, 200, "{body}");
    let c = &body["Credentials"];
    let (id, secret, token) = (
        c["AccessKeyId"].as_str().unwrap().to_string(),
        c["AccessKeySecret"].as_str().unwrap().to_string(),
        c["SecurityToken"].as_str().unwrap().to_string(),
    );
    assert!(id.starts_with("STS."));
    let expires = rpc::parse_timestamp(c["Expiration"].as_str().unwrap()).expect("Expiration");
    let with_token = |nonce: &'static str, tok: &str| {
        let mut p = common(nonce, &now);
        p[0].1 = id.clone();
        p.push(("SecurityToken", tok.to_string()));
        q(&p, &secret)
    };
    let (status, body) = post(&fake, &with_token("n-sts-wrong", "CAISwrong"), None).await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (400, Some("InvalidSecurityToken.MismatchWithAccessKey"))
    );
    let (status, body) = post(&fake, &with_token("n-sts-ok", &token), None).await;
    assert_eq!(status, 200, "{body}");
    until("the STS keys are past their Expiration", || {
        SystemTime::now() >= expires
    })
    .await;
    let (status, body) = post(&fake, &with_token("n-sts-late", &token), None).await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (400, Some("InvalidSecurityToken.Expired"))
    );
}
