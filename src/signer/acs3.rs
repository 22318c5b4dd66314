//! `ACS3-HMAC-SHA256` ("V3") request signature.
//!
//! Used for `ListApiMcpServerCores` discovery and any other OpenAPI call the
//! SDKs would sign by default (`aliyun-cli-and-credentials.md` §4.2,
//! `alibabacloud-mcp-proxy.md` §2.4). The rules:
//!
//! ```text
//! CanonicalRequest = METHOD \n CanonicalURI \n CanonicalQuery \n
//!                    CanonicalHeaders \n SignedHeaders \n HashedPayload
//! StringToSign     = "ACS3-HMAC-SHA256\n" + hex(SHA256(CanonicalRequest))
//! Signature        = hex(HMAC-SHA256(key = AccessKeySecret, StringToSign))
//! Authorization: ACS3-HMAC-SHA256 Credential=<id>,SignedHeaders=<list>,Signature=<sig>
//! ```
//!
//! Unlike V2 the key is the raw secret, with no `&` suffix. [`sign`] adds the
//! `x-acs-*` headers, hashes the body and returns every header to send; the
//! lower-level functions expose each step for the published vectors.

use std::fmt;
use std::time::SystemTime;

use super::{
    canonical_query, check_names, hex_lower, iso8601_utc, percent_encode_path, ApiCredentials,
    HttpMethod, SignError,
};

/// The algorithm name that opens the string to sign and the header value.
pub const ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// Headers [`sign`] sets itself, so callers may not supply them.
#[rustfmt::skip]
const RESERVED_HEADERS: [&str; 9] = [
    "authorization", "host", "x-acs-accesskey-id", "x-acs-action", "x-acs-content-sha256",
    "x-acs-date", "x-acs-security-token", "x-acs-signature-nonce", "x-acs-version",
];

/// Which of the request's headers go into the signature. The server
/// recomputes over whatever `SignedHeaders` lists, so both are accepted;
/// they differ only in which headers the HTTP client must leave untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderScope {
    /// Sign `host`, `content-type` and every `x-acs-*` header; send others
    /// unsigned. The V3 doc and Go SDK rule (§4.2); the safer default, as
    /// clients may rewrite `user-agent` or `accept`.
    Standard,
    /// Sign every header handed to [`sign`], as the Python SDK does
    /// (mcp-proxy §2.4).
    All,
}

impl HeaderScope {
    fn signs(self, lower_name: &str) -> bool {
        let standard = matches!(lower_name, "host" | "content-type");
        self == HeaderScope::All || standard || lower_name.starts_with("x-acs-")
    }
}

/// One V3 API call to sign.
#[derive(Debug, Clone, Copy)]
pub struct Acs3Request<'a> {
    /// HTTP method, part of the canonical request.
    pub method: HttpMethod,
    /// Endpoint host, e.g. `openapi-mcp.cn-hangzhou.aliyuncs.com`; signed as
    /// `host`, so it must equal the URL's authority.
    pub host: &'a str,
    /// Unencoded path: `/` for RPC-style APIs, the resource path for ROA
    /// ones (`/apimcpservercores`). No query part.
    pub path: &'a str,
    /// `x-acs-action`, e.g. `ListApiMcpServerCores`.
    pub action: &'a str,
    /// `x-acs-version`, e.g. `2024-11-30`.
    pub version: &'a str,
    /// Unencoded query parameters; names must be unique.
    pub query: &'a [(&'a str, &'a str)],
    /// Other headers to send, e.g. `accept`, `user-agent`, and
    /// `content-type` when there is a body. Repeated names are merged.
    pub headers: &'a [(&'a str, &'a str)],
    /// Exact body bytes to send (empty for none); hashed into the signature.
    pub body: &'a [u8],
    /// Which headers to sign.
    pub header_scope: HeaderScope,
}

/// A signed V3 request: send `METHOD https://<host><path>?<query>` with
/// exactly these headers and the body that was signed.
///
/// `Debug` shows header names only: values include the signature and, with
/// STS credentials, the security token.
pub struct SignedAcs3Request {
    /// Percent-encoded path, as signed (the CanonicalURI).
    pub path: String,
    /// Percent-encoded query string without `?`, as signed; may be empty.
    pub query: String,
    /// Every header to set, names lower-cased and values trimmed as signed:
    /// `host` (most clients derive it from the URL; it must match), the
    /// `x-acs-*` headers, the caller's headers, and `authorization` last.
    pub headers: Vec<(String, String)>,
}

impl fmt::Debug for SignedAcs3Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("SignedAcs3Request")
            .field("path", &self.path)
            .field("query", &self.query)
            .field("header_names", &names)
            .finish()
    }
}

/// The canonical request of §4.2 with its `SignedHeaders` list, the two
/// values the Authorization header is computed from. Deliberately not
/// `Debug`: the text may hold an `x-acs-security-token`.
pub struct CanonicalRequest {
    /// The full canonical request text that is hashed.
    pub text: String,
    /// Lower-case signed header names joined with `;`.
    pub signed_headers: String,
}

/// Signs `req` with `creds` (§4.2) and returns the path, query and headers
/// to send.
///
/// Adds `host`, `x-acs-action`, `x-acs-version`, `x-acs-date` (from `now`,
/// see [`iso8601_utc`]), `x-acs-signature-nonce` (`nonce`, unique per
/// request; use [`super::generate_nonce`] outside tests) and
/// `x-acs-content-sha256` (hex SHA-256 of the body), plus
/// `x-acs-security-token` and `x-acs-accesskey-id` with STS credentials as
/// the SDKs do. Signs them with the caller's headers per `header_scope`.
///
/// # Errors
///
/// [`SignError::Reserved`] if `headers` names one of the headers above or
/// `authorization` (any case), [`SignError::Duplicate`] if a query
/// parameter name repeats.
pub fn sign(
    req: &Acs3Request<'_>,
    creds: &ApiCredentials<'_>,
    now: SystemTime,
    nonce: &str,
) -> Result<SignedAcs3Request, SignError> {
    check_names(req.query.iter().map(|&(k, _)| k), &[], |a, b| a == b)?;
    let is_reserved = |name: &str| {
        RESERVED_HEADERS
            .iter()
            .any(|r| r.eq_ignore_ascii_case(name))
    };
    if let Some((name, _)) = req.headers.iter().find(|(n, _)| is_reserved(n.trim())) {
        return Err(SignError::Reserved((*name).to_owned()));
    }

    let date = iso8601_utc(now);
    let payload_hash = hex_sha256(req.body);
    let mut all: Vec<(&str, &str)> = vec![
        ("host", req.host),
        ("x-acs-action", req.action),
        ("x-acs-content-sha256", &payload_hash),
        ("x-acs-date", &date),
        ("x-acs-signature-nonce", nonce),
        ("x-acs-version", req.version),
    ];
    if let Some(token) = creds.security_token {
        all.push(("x-acs-security-token", token));
        all.push(("x-acs-accesskey-id", creds.access_key_id));
    }
    all.extend_from_slice(req.headers);
    let (signed, unsigned): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|(name, _)| req.header_scope.signs(&name.trim().to_ascii_lowercase()));

    let method = req.method.as_str();
    let canonical = canonical_request(method, req.path, req.query, &signed, &payload_hash);
    let mut headers = normalize_headers(&signed);
    headers.extend(normalize_headers(&unsigned));
    headers.push(("authorization".to_owned(), authorization(creds, &canonical)));
    Ok(SignedAcs3Request {
        path: percent_encode_path(req.path),
        query: canonical_query(req.query.iter().copied()),
        headers,
    })
}

/// Builds the canonical request (§4.2). Every header in `headers` is
/// signed: names are lower-cased, values trimmed, entries sorted by name
/// then value, and repeated names merged into one line joined with `,`.
/// `path` is unencoded ([`percent_encode_path`] is applied; empty → `/`);
/// `method` and `hashed_payload` are used verbatim, since one published
/// vector uses an empty method and a non-hash payload string.
pub fn canonical_request(
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    headers: &[(&str, &str)],
    hashed_payload: &str,
) -> CanonicalRequest {
    let merged = normalize_headers(headers);
    let lines: String = merged.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
    let names: Vec<&str> = merged.iter().map(|(n, _)| n.as_str()).collect();
    let signed_headers = names.join(";");
    let uri = percent_encode_path(path);
    let query = canonical_query(query.iter().copied());
    let text = format!("{method}\n{uri}\n{query}\n{lines}\n{signed_headers}\n{hashed_payload}");
    CanonicalRequest {
        text,
        signed_headers,
    }
}

/// Lower-cases names, trims values, sorts by (name, value) and merges
/// repeated names with `,` (§4.2 CanonicalHeaders).
fn normalize_headers(headers: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut list: Vec<(String, &str)> = headers
        .iter()
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim()))
        .collect();
    list.sort();
    let mut merged: Vec<(String, String)> = Vec::with_capacity(list.len());
    for (name, value) in list {
        match merged.last_mut() {
            Some((last, joined)) if *last == name => {
                joined.push(',');
                joined.push_str(value);
            }
            _ => merged.push((name, value.to_owned())),
        }
    }
    merged
}

/// Builds `"ACS3-HMAC-SHA256\n" + hex(SHA256(canonical_request))`, the V3
/// string to sign (§4.2).
pub fn string_to_sign(canonical_request: &str) -> String {
    format!("{ALGORITHM}\n{}", hex_sha256(canonical_request.as_bytes()))
}

/// Computes the `Authorization` header value (§4.2):
/// `ACS3-HMAC-SHA256 Credential=<id>,SignedHeaders=<list>,Signature=<hex>`,
/// where the signature is HMAC-SHA256 keyed with the raw secret over
/// [`string_to_sign`] of the canonical request.
pub fn authorization(creds: &ApiCredentials<'_>, canonical: &CanonicalRequest) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, creds.access_key_secret.as_bytes());
    let mac = ring::hmac::sign(&key, string_to_sign(&canonical.text).as_bytes());
    let signature = hex_lower(mac.as_ref());
    format!(
        "{ALGORITHM} Credential={},SignedHeaders={},Signature={signature}",
        creds.access_key_id, canonical.signed_headers
    )
}

/// Lower-case hex SHA-256, the form of `x-acs-content-sha256`, of the
/// HashedPayload line and of the string to sign's digest (§4.2).
pub fn hex_sha256(data: &[u8]) -> String {
    hex_lower(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{at, creds};
    use super::*;

    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    /// Signs `req` at `secs` after the epoch with a fixed nonce.
    fn signed(req: &Acs3Request<'_>, ak: &ApiCredentials<'_>, secs: i64) -> SignedAcs3Request {
        sign(req, ak, at(secs), "0123456789abcdef0123456789abcdef").unwrap()
    }

    fn header<'a>(signed: &'a SignedAcs3Request, name: &str) -> &'a str {
        let found = signed.headers.iter().find(|(n, _)| n == name);
        found.map_or("<missing>", |(_, v)| v.as_str())
    }

    /// openapi-util `Test_HexEncode` (§4.2 vector 3), and the empty body.
    #[test]
    fn vector_hex_sha256() {
        let test = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        assert_eq!(hex_sha256(b"test"), test);
        assert_eq!(hex_sha256(b""), EMPTY_SHA256);
    }

    const DOC_IMAGE: &str = "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd";
    const DOC_NONCE: &str = "3156853299f313e23d1673dc12e1703d";
    const DOC_SIGNED: &str =
        "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version";

    /// Official V3 doc worked example (§4.2 vector 1): every intermediate
    /// value, then the same request through [`sign`].
    #[test]
    fn vector_doc_run_instances() {
        let query = [("ImageId", DOC_IMAGE), ("RegionId", "cn-shanghai")];
        let headers = [
            ("host", "ecs.cn-shanghai.aliyuncs.com"),
            ("x-acs-action", "RunInstances"),
            ("x-acs-version", "2014-05-26"),
            ("x-acs-date", "2023-10-26T10:22:32Z"),
            ("x-acs-signature-nonce", DOC_NONCE),
            ("x-acs-content-sha256", EMPTY_SHA256),
        ];
        let canonical = canonical_request("POST", "/", &query, &headers, EMPTY_SHA256);
        let expected_query = format!("ImageId={DOC_IMAGE}&RegionId=cn-shanghai");
        let expected_text = format!(
            "POST\n/\n{expected_query}\nhost:ecs.cn-shanghai.aliyuncs.com\n\
             x-acs-action:RunInstances\nx-acs-content-sha256:{EMPTY_SHA256}\n\
             x-acs-date:2023-10-26T10:22:32Z\nx-acs-signature-nonce:{DOC_NONCE}\n\
             x-acs-version:2014-05-26\n\n{DOC_SIGNED}\n{EMPTY_SHA256}"
        );
        assert_eq!(canonical.text, expected_text);
        assert_eq!(canonical.signed_headers, DOC_SIGNED);
        assert_eq!(
            string_to_sign(&canonical.text),
            "ACS3-HMAC-SHA256\n7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
        );
        let expected_auth = format!(
            "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders={DOC_SIGNED},\
             Signature=06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
        );
        let ak = creds("YourAccessKeyId", "YourAccessKeySecret");
        assert_eq!(authorization(&ak, &canonical), expected_auth);

        let mut req = discovery(HeaderScope::Standard);
        (req.host, req.path, req.headers) = ("ecs.cn-shanghai.aliyuncs.com", "/", &[]);
        (req.method, req.action, req.version) = (HttpMethod::Post, "RunInstances", "2014-05-26");
        req.query = &query;
        let signed = sign(&req, &ak, at(1_698_315_752), DOC_NONCE).unwrap();
        assert_eq!(header(&signed, "authorization"), expected_auth);
        assert_eq!((signed.path.as_str(), signed.query), ("/", expected_query));
    }

    /// darabonba-openapi / openapi-util `Test_GetAuthorization` (§4.2
    /// vector 2): empty method and path, empty query value, and two header
    /// names differing in case merged into one line.
    #[test]
    fn vector_get_authorization_merges_duplicate_headers() {
        let payload = "55e12e91650d2fec56ec74e1d3e4ddbfce2ef3a65890c2a19ecf88a307e76a23";
        let query = [("test", "ok"), ("empty", "")];
        let headers = [("x-acs-test", "http"), ("x-acs-TEST", "https")];
        let canonical = canonical_request("", "", &query, &headers, payload);
        let text = format!("\n/\nempty=&test=ok\nx-acs-test:http,https\n\nx-acs-test\n{payload}");
        assert_eq!(canonical.text, text);
        assert_eq!(
            authorization(&creds("acesskey", "secret"), &canonical),
            "ACS3-HMAC-SHA256 Credential=acesskey,SignedHeaders=x-acs-test,\
             Signature=4ab59fffe3c5738ff8a2729f90cc04fe18b02a4b15b2102cbaf92f9ff3df2ea3"
        );
    }

    const UA: &str = "AlibabaCloud (Linux; x86_64) Python/3.11.7 Core/0.4.3 TeaDSL/2";

    /// The discovery request of mcp-proxy §2.4, also a base for other tests.
    fn discovery(header_scope: HeaderScope) -> Acs3Request<'static> {
        Acs3Request {
            method: HttpMethod::Get,
            host: "openapi-mcp.cn-hangzhou.aliyuncs.com",
            path: "/apimcpservercores",
            action: "ListApiMcpServerCores",
            version: "2024-11-30",
            query: &[],
            headers: &[
                ("accept", "application/json"),
                ("user-agent", UA),
                ("x-acs-credentials-provider", "default/env"),
            ],
            body: b"",
            header_scope,
        }
    }

    /// `ListApiMcpServerCores` discovery as the Python SDK signs it
    /// (mcp-proxy §2.4): every header signed.
    #[test]
    fn vector_discovery_python_sdk_signs_all_headers() {
        let ak = creds("LTAI_TEST_ID", "TEST_SECRET");
        let signed = signed(&discovery(HeaderScope::All), &ak, 1_767_225_600);
        assert_eq!(
            header(&signed, "authorization"),
            "ACS3-HMAC-SHA256 Credential=LTAI_TEST_ID,SignedHeaders=accept;host;user-agent;\
             x-acs-action;x-acs-content-sha256;x-acs-credentials-provider;x-acs-date;\
             x-acs-signature-nonce;x-acs-version,\
             Signature=fdefa45319eec670399050a14a5c2ba6b73cb874e477e7d22530d99fc611727d"
        );
        assert_eq!(signed.path, "/apimcpservercores");
        assert!(signed.query.is_empty());
    }

    /// Standard scope: `content-type`, the body hash and the STS headers are
    /// signed; `accept` and `user-agent` are sent unsigned.
    #[test]
    fn standard_scope_signs_body_hash_content_type_and_sts_headers() {
        let mut req = discovery(HeaderScope::Standard);
        req.method = HttpMethod::Post;
        req.headers = &[
            ("Content-Type", " application/json; charset=utf-8 "),
            ("user-agent", UA),
        ];
        req.body = b"test";
        let ak = ApiCredentials {
            security_token: Some("STS_TOKEN_VALUE"),
            ..creds("LTAI_TEST_ID", "TEST_SECRET")
        };
        let signed = signed(&req, &ak, 0);
        assert_eq!(header(&signed, "x-acs-content-sha256"), hex_sha256(b"test"));
        assert_eq!(
            header(&signed, "content-type"),
            "application/json; charset=utf-8"
        );
        assert_eq!(header(&signed, "x-acs-security-token"), "STS_TOKEN_VALUE");
        assert_eq!(header(&signed, "x-acs-accesskey-id"), "LTAI_TEST_ID");
        let auth = header(&signed, "authorization");
        assert!(auth.contains(
            "SignedHeaders=content-type;host;x-acs-accesskey-id;x-acs-action;x-acs-content-sha256;\
             x-acs-date;x-acs-security-token;x-acs-signature-nonce;x-acs-version,"
        ));
        assert_eq!(header(&signed, "user-agent"), UA);
        assert_eq!(signed.headers.last().unwrap().0, "authorization");
        let shown = format!("{signed:?}");
        assert!(!shown.contains("STS_TOKEN_VALUE") && !shown.contains("Signature="));
    }

    #[test]
    fn query_and_path_are_returned_encoded_as_signed() {
        let mut req = discovery(HeaderScope::Standard);
        req.path = "/a b/c";
        req.query = &[("b", "x y*"), ("a", "")];
        let signed = signed(&req, &creds("id", "sk"), 0);
        assert_eq!(
            (signed.path.as_str(), signed.query.as_str()),
            ("/a%20b/c", "a=&b=x%20y%2A")
        );
    }

    #[test]
    fn misuse_is_rejected() {
        let ak = creds("id", "sk");
        let mut req = discovery(HeaderScope::Standard);
        req.headers = &[("X-Acs-Date", "2026-01-01T00:00:00Z")];
        let err = sign(&req, &ak, at(0), "n").unwrap_err();
        assert_eq!(err, SignError::Reserved("X-Acs-Date".into()));
        req.headers = &[("Authorization", "Bearer x")];
        let err = sign(&req, &ak, at(0), "n").unwrap_err();
        assert_eq!(err, SignError::Reserved("Authorization".into()));
        (req.headers, req.query) = (&[], &[("a", "1"), ("a", "2")]);
        let err = sign(&req, &ak, at(0), "n").unwrap_err();
        assert_eq!(err, SignError::Duplicate("a".into()));
    }
}
