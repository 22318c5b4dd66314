//! RPC-style signature "V2": HMAC-SHA1 with `SignatureVersion=1.0`.
//!
//! Used by RAM-OAuth `GenerateAccessToken` (the AK → bearer-token exchange,
//! `alibabacloud-mcp-proxy.md` §2.3) and STS `AssumeRole`
//! (`aliyun-cli-and-credentials.md` §5). The rules, from §4.1 there:
//!
//! 1. The signed set is every query parameter plus every form-body
//!    parameter, except `Signature` itself.
//! 2. Sort by name (byte order), percent-encode name and value
//!    ([`percent_encode`]), join as `k=v` pairs with `&`: the
//!    canonicalized query string, [`canonical_query`].
//! 3. `StringToSign = METHOD & %2F & percent_encode(canonicalized)`; the
//!    second encoding is why a `:` in `Timestamp` shows up as `%253A`.
//! 4. `Signature = base64(HMAC-SHA1(key = AccessKeySecret + "&", StringToSign))`.
//!
//! [`sign`] adds the common parameters and returns the finished query string
//! (and form body); the lower-level functions exist so each step can be
//! checked against the published vectors.

use std::fmt;
use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use super::{
    canonical_query, check_names, iso8601_utc, percent_encode, ApiCredentials, HttpMethod,
    SignError,
};

/// Value of the `SignatureMethod` common parameter.
pub const SIGNATURE_METHOD: &str = "HMAC-SHA1";
/// Value of the `SignatureVersion` common parameter.
pub const SIGNATURE_VERSION: &str = "1.0";
/// `Content-Type` of the form body [`sign`] produces.
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// Parameter names [`sign`] sets itself, so callers may not supply them.
#[rustfmt::skip]
const RESERVED: [&str; 10] = [
    "AccessKeyId", "Action", "Format", "SecurityToken", "Signature", "SignatureMethod",
    "SignatureNonce", "SignatureVersion", "Timestamp", "Version",
];

/// One RPC API call to sign: what differs between calls, before the common
/// parameters are added.
#[derive(Debug, Clone, Copy)]
pub struct RpcCall<'a> {
    /// HTTP method; RPC APIs take `GET` or `POST`. It is part of the string
    /// to sign, so it must be the method actually sent.
    pub method: HttpMethod,
    /// `Action`, e.g. `GenerateAccessToken`.
    pub action: &'a str,
    /// `Version`, the API version date, e.g. `2026-04-21`.
    pub version: &'a str,
    /// `Format` of the response: `JSON`, `json` or `XML`. The value is
    /// signed verbatim (the Python SDK sends `json`, the Go SDK `JSON`).
    pub format: &'a str,
    /// API parameters sent in the query string (e.g. `ClientId`, `Scope`,
    /// `Policy`, `RegionId`). GenerateAccessToken puts all of its parameters
    /// here, with POST and an empty body.
    pub query: &'a [(&'a str, &'a str)],
    /// API parameters sent as a form body (e.g. AssumeRole's `RoleArn`).
    /// They are signed together with the query. Needs a method with a body.
    pub form: &'a [(&'a str, &'a str)],
}

/// A signed RPC request, ready to send as
/// `METHOD https://<host>/?<query>` with an optional form body.
///
/// `Debug` is redacted: the query may carry an STS `SecurityToken`.
pub struct SignedRpcRequest {
    /// Full query string, without the leading `?`: the common parameters,
    /// [`RpcCall::query`], and `Signature` last, all percent-encoded.
    pub query: String,
    /// Form body (percent-encoded `k=v&…`) when [`RpcCall::form`] is not
    /// empty; send it with [`FORM_CONTENT_TYPE`].
    pub body: Option<String>,
}

impl SignedRpcRequest {
    /// The `Content-Type` to send: [`FORM_CONTENT_TYPE`] with a body, none
    /// without.
    pub fn content_type(&self) -> Option<&'static str> {
        self.body.as_ref().map(|_| FORM_CONTENT_TYPE)
    }
}

impl fmt::Debug for SignedRpcRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedRpcRequest")
            .field(
                "query",
                &format_args!("<redacted, {} bytes>", self.query.len()),
            )
            .field("body_len", &self.body.as_ref().map(String::len))
            .finish()
    }
}

/// Signs `call` with `creds` and returns the query string and form body to
/// send (§4.1; mcp-proxy §2.3).
///
/// Adds the common parameters `AccessKeyId`, `Action`, `Format`,
/// `SignatureMethod=HMAC-SHA1`, `SignatureNonce`, `SignatureVersion=1.0`,
/// `Timestamp` (from `now`, see [`iso8601_utc`]), `Version`, and
/// `SecurityToken` when the credentials carry one. `nonce` must be unique
/// per request; pass [`super::generate_nonce`] output outside tests.
///
/// # Errors
///
/// [`SignError::Reserved`] if the call supplies a common parameter,
/// [`SignError::Duplicate`] if a name repeats across `query` and `form`, and
/// [`SignError::FormWithoutBody`] for form parameters on `GET`/`HEAD`.
pub fn sign(
    call: &RpcCall<'_>,
    creds: &ApiCredentials<'_>,
    now: SystemTime,
    nonce: &str,
) -> Result<SignedRpcRequest, SignError> {
    if !call.form.is_empty() && matches!(call.method, HttpMethod::Get | HttpMethod::Head) {
        return Err(SignError::FormWithoutBody(call.method));
    }
    let names = call.query.iter().chain(call.form).map(|&(k, _)| k);
    check_names(names, &RESERVED, |a, b| a == b)?;

    let timestamp = iso8601_utc(now);
    let mut query: Vec<(&str, &str)> = vec![
        ("AccessKeyId", creds.access_key_id),
        ("Action", call.action),
        ("Format", call.format),
        ("SignatureMethod", SIGNATURE_METHOD),
        ("SignatureNonce", nonce),
        ("SignatureVersion", SIGNATURE_VERSION),
        ("Timestamp", &timestamp),
        ("Version", call.version),
    ];
    if let Some(token) = creds.security_token {
        query.push(("SecurityToken", token));
    }
    query.extend_from_slice(call.query);

    let signed_set = canonical_query(query.iter().chain(call.form).copied());
    let to_sign = string_to_sign(call.method.as_str(), &signed_set);
    let sig = signature(creds.access_key_secret, &to_sign);

    let (mut query_string, body) = if call.form.is_empty() {
        (signed_set, None)
    } else {
        let form = canonical_query(call.form.iter().copied());
        (canonical_query(query.iter().copied()), Some(form))
    };
    query_string.push_str("&Signature=");
    query_string.push_str(&percent_encode(&sig));
    Ok(SignedRpcRequest {
        query: query_string,
        body,
    })
}

/// Builds `METHOD + "&" + percent_encode("/") + "&" + percent_encode(canonicalized)`,
/// the V2 string to sign (§4.1 step 3). `method` is taken verbatim, because
/// one published vector signs with an empty method.
pub fn string_to_sign(method: &str, canonicalized_query: &str) -> String {
    format!("{method}&%2F&{}", percent_encode(canonicalized_query))
}

/// Computes the V2 `Signature` value: standard, padded base64 of
/// HMAC-SHA1 keyed with `access_key_secret + "&"` (§4.1 step 4; the `&`
/// suffix is part of the key, unlike V3).
pub fn signature(access_key_secret: &str, string_to_sign: &str) -> String {
    let key = format!("{access_key_secret}&");
    hmac_sha1_base64(key.as_bytes(), string_to_sign.as_bytes())
}

/// `base64(HMAC-SHA1(key, msg))` with the raw key, the SDKs' `ShaHmac1`.
fn hmac_sha1_base64(key: &[u8], msg: &[u8]) -> String {
    // SHA-1 is what the V2 signature is defined with; ring names it "legacy use only".
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
    BASE64.encode(ring::hmac::sign(&key, msg).as_ref())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{at, creds};
    use super::*;

    fn call(method: HttpMethod, action: &'static str, version: &'static str) -> RpcCall<'static> {
        let format = "JSON";
        let (query, form) = (&[][..], &[][..]);
        RpcCall {
            method,
            action,
            version,
            format,
            query,
            form,
        }
    }

    fn signed(call: &RpcCall<'_>, ak: &ApiCredentials<'_>, secs: i64, nonce: &str) -> String {
        sign(call, ak, at(secs), nonce).unwrap().query
    }

    /// credentials-go `utils_test.go` / sdk-go `algorithms_test.go` (§4.1).
    #[test]
    fn vector_sha_hmac1_raw_key() {
        let source = hmac_sha1_base64(b"secret", b"source");
        assert_eq!(source, "Jv4yi8SobFhg5t1C7nWLbhBSFZQ=");
        let chinese = hmac_sha1_base64(b"secret", "中文".as_bytes());
        assert_eq!(chinese, "CqCYIa39h9SSWuXnTz8F5hh9UPA=");
    }

    /// darabonba-openapi / openapi-util `Test_GetRPCSignature` (§4.1).
    #[test]
    fn vector_get_rpc_signature_empty_method() {
        let to_sign = string_to_sign("", &canonical_query([("test", "ok")]));
        assert_eq!(to_sign, "&%2F&test%3Dok");
        let sig = signature("accessKeySecret", &to_sign);
        assert_eq!(sig, "jHx/oHoHNrbVfhncHEvPdHXZwHU=");
    }

    /// sdk-go `TestRpcSignatureComposer_buildRpcStringToSign`: form and query
    /// parameters are signed together (§4.1).
    #[test]
    fn vector_sdk_go_string_to_sign_merges_form_and_query() {
        let params = [("key", "value"), ("q", "http://domain/?q=value&q2=value2")];
        assert_eq!(
            string_to_sign("GET", &canonical_query(params)),
            "GET&%2F&key%3Dvalue%26q%3Dhttp%253A%252F%252Fdomain%252F%253Fq%253Dvalue%2526q2%253Dvalue2"
        );
    }

    /// sdk-go `TestRpcSignatureComposer`, without and with an STS token;
    /// empty values are signed as `k=` (§4.1).
    #[test]
    #[rustfmt::skip]
    fn vector_sdk_go_composer_with_and_without_sts() {
        let mut params = vec![
            ("AccessKeyId", "accessKeyId"), ("Action", ""), ("Format", "JSON"),
            ("RegionId", "regionId"), ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "MOCK_UUID"), ("SignatureType", ""), ("SignatureVersion", "1.0"),
            ("Timestamp", "mock date"), ("Version", ""),
        ];
        let sign_all = |p: &[(&str, &str)]| {
            let to_sign = string_to_sign("GET", &canonical_query(p.iter().copied()));
            signature("accessKeySecret", &to_sign)
        };
        assert_eq!(sign_all(&params), "7loPmFjvDnzOVnQeQNj85S6nFGY=");
        params.push(("SecurityToken", "accessKeyStsToken"));
        assert_eq!(sign_all(&params), "5Nxdcler+ihqWqv0Hr2On4PsBf4=");
    }

    const ECS_NONCE: &str = "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf";
    const ECS_CANONICAL: &str = "AccessKeyId=testid&Action=DescribeRegions&Format=XML&\
        SignatureMethod=HMAC-SHA1&SignatureNonce=3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf&\
        SignatureVersion=1.0&Timestamp=2016-02-23T12%3A46%3A24Z&Version=2014-05-26";

    /// Official V2 doc, classic ECS `DescribeRegions` example, GET; and the
    /// same parameters with POST as re-computed in §4.1.
    #[test]
    fn vector_doc_ecs_describe_regions_get_and_post() {
        assert_eq!(
            string_to_sign("GET", ECS_CANONICAL),
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26\
             SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf\
             %26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
        );
        let ak = creds("testid", "testsecret");
        let mut ecs = call(HttpMethod::Get, "DescribeRegions", "2014-05-26");
        ecs.format = "XML";
        let get = sign(&ecs, &ak, at(1_456_231_584), ECS_NONCE).unwrap();
        let expected = format!("{ECS_CANONICAL}&Signature=OLeaidS1JvxuMvnyHOwuJ%2BuX5qY%3D");
        assert_eq!(get.query, expected);
        assert!(get.body.is_none() && get.content_type().is_none());
        ecs.method = HttpMethod::Post;
        let post = signed(&ecs, &ak, 1_456_231_584, ECS_NONCE);
        assert_eq!(
            post,
            format!("{ECS_CANONICAL}&Signature=MxbnVAM4w6sft9xjVpe%2FGCKueuk%3D")
        );
    }

    /// Current V2 doc example, ECS `DescribeDedicatedHosts` with `RegionId`.
    #[test]
    fn vector_doc_describe_dedicated_hosts() {
        let mut hosts = call(HttpMethod::Get, "DescribeDedicatedHosts", "2014-05-26");
        hosts.query = &[("RegionId", "cn-beijing")];
        let ak = creds("testid", "testsecret");
        let query = signed(
            &hosts,
            &ak,
            1_678_696_470,
            "edb2b34af0af9a6d14deaf7c1a5315eb",
        );
        assert!(
            query.ends_with("&Signature=9NaGiOspFP5UPcwX8Iwt2YJXXuk%3D"),
            "{query}"
        );
        assert!(query.contains("&RegionId=cn-beijing&"));
    }

    const GAT_POLICY: &str =
        r#"{"Version":"1","Statement":[{"Effect":"Deny","Action":"ram:*","Resource":"*"}]}"#;
    const GAT_CANONICAL: &str = "AccessKeyId=LTAI_TEST_ID&Action=GenerateAccessToken&\
        ClientId=4071151845732613353&Format=json&Policy=%7B%22Version%22%3A%221%22%2C%22\
        Statement%22%3A%5B%7B%22Effect%22%3A%22Deny%22%2C%22Action%22%3A%22ram%3A%2A%22%2C\
        %22Resource%22%3A%22%2A%22%7D%5D%7D&Scope=%2Finternal%2Facs%2Fopenapi&\
        SignatureMethod=HMAC-SHA1&SignatureNonce=0123456789abcdef0123456789abcdef&\
        SignatureVersion=1.0&Timestamp=2026-01-01T00%3A00%3A00Z&Version=2026-04-21";
    const GAT_STRING_TO_SIGN: &str = "POST&%2F&AccessKeyId%3DLTAI_TEST_ID%26Action%3D\
        GenerateAccessToken%26ClientId%3D4071151845732613353%26Format%3Djson%26Policy%3D%257B\
        %2522Version%2522%253A%25221%2522%252C%2522Statement%2522%253A%255B%257B%2522Effect\
        %2522%253A%2522Deny%2522%252C%2522Action%2522%253A%2522ram%253A%252A%2522%252C%2522\
        Resource%2522%253A%2522%252A%2522%257D%255D%257D%26Scope%3D%252Finternal%252Facs%252F\
        openapi%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D0123456789abcdef0123456789abcdef\
        %26SignatureVersion%3D1.0%26Timestamp%3D2026-01-01T00%253A00%253A00Z%26Version%3D2026-04-21";

    /// RAM-OAuth `GenerateAccessToken` (mcp-proxy §2.3): POST, every
    /// parameter in the query, empty body; each intermediate value checked.
    #[test]
    fn vector_generate_access_token() {
        let mut gat = call(HttpMethod::Post, "GenerateAccessToken", "2026-04-21");
        gat.format = "json";
        gat.query = &[
            ("ClientId", "4071151845732613353"),
            ("Scope", "/internal/acs/openapi"),
            ("Policy", GAT_POLICY),
        ];
        assert_eq!(string_to_sign("POST", GAT_CANONICAL), GAT_STRING_TO_SIGN);
        let sig = signature("TEST_SECRET", GAT_STRING_TO_SIGN);
        assert_eq!(sig, "gInXH6srNK96++DBqlAIyA/19ls=");
        let ak = creds("LTAI_TEST_ID", "TEST_SECRET");
        let nonce = "0123456789abcdef0123456789abcdef";
        let signed = sign(&gat, &ak, at(1_767_225_600), nonce).unwrap();
        let expected = format!("{GAT_CANONICAL}&Signature=gInXH6srNK96%2B%2BDBqlAIyA%2F19ls%3D");
        assert_eq!(signed.query, expected);
        assert!(signed.body.is_none());
    }

    #[test]
    fn sts_token_is_sent_and_signed() {
        let ecs = call(HttpMethod::Get, "DescribeRegions", "2014-05-26");
        let mut ak = creds("testid", "testsecret");
        let plain = signed(&ecs, &ak, 0, "n");
        ak.security_token = Some("tok en");
        let sts = signed(&ecs, &ak, 0, "n");
        assert!(sts.contains("&SecurityToken=tok%20en&"));
        assert_ne!(plain.rsplit('&').next(), sts.rsplit('&').next());
    }

    /// AssumeRole shape (§5): common parameters in the query, API parameters
    /// in the form body. The signature covers both, so moving the parameters
    /// into the query must not change it.
    #[test]
    fn form_parameters_go_to_the_body_but_are_signed() {
        let form = [("RoleArn", "acs:ram::1:role/r"), ("RoleSessionName", "s")];
        let mut assume = call(HttpMethod::Post, "AssumeRole", "2015-04-01");
        assume.form = &form;
        let ak = creds("id", "sk");
        let with_body = sign(&assume, &ak, at(0), "n").unwrap();
        let body = with_body.body.as_deref().unwrap();
        assert_eq!(
            body,
            "RoleArn=acs%3Aram%3A%3A1%3Arole%2Fr&RoleSessionName=s"
        );
        assert_eq!(with_body.content_type(), Some(FORM_CONTENT_TYPE));
        let (unsigned, sig) = with_body.query.split_once("&Signature=").unwrap();
        assert!(!unsigned.contains("RoleArn"));
        (assume.query, assume.form) = (&form, &[]);
        let all_in_query = signed(&assume, &ak, 0, "n");
        assert!(all_in_query.ends_with(&format!("&Signature={sig}")));
    }

    #[test]
    fn misuse_is_rejected() {
        let ak = creds("id", "sk");
        let mut bad = call(HttpMethod::Get, "A", "1");
        bad.query = &[("Timestamp", "x")];
        let err = sign(&bad, &ak, at(0), "n").unwrap_err();
        assert_eq!(err, SignError::Reserved("Timestamp".into()));
        (bad.query, bad.form) = (&[("A", "1")], &[("A", "2")]);
        let err = sign(&bad, &ak, at(0), "n").unwrap_err();
        assert_eq!(err, SignError::FormWithoutBody(HttpMethod::Get));
        bad.method = HttpMethod::Post;
        let err = sign(&bad, &ak, at(0), "n").unwrap_err();
        assert_eq!(err, SignError::Duplicate("A".into()));
    }

    #[test]
    fn debug_output_hides_query_and_body() {
        let ak = ApiCredentials {
            security_token: Some("SECRET_STS_TOKEN"),
            ..creds("id", "sk")
        };
        let ecs = call(HttpMethod::Get, "DescribeRegions", "2014-05-26");
        let shown = format!("{:?}", sign(&ecs, &ak, at(0), "n").unwrap());
        assert!(!shown.contains("SECRET_STS_TOKEN") && !shown.contains("Signature"));
    }
}
