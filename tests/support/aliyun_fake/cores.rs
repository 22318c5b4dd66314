//! OpenAPI Explorer `ListApiMcpServerCores` (version 2024-11-30): ROA `GET /apimcpservercores`,
//! signed ACS3-HMAC-SHA256 with AccessKeys; answers `{"requestId","apiMcpServerCores":[{"id",
//! "name","urls":{"mcp","sse"}}]}` with the Cores the test gave the signing key's account
//! ([`super::AliyunFake::set_cores`], by AccessKey id).
//!
//! The signature is verified with the fake's own V3 canonicalisation (written from
//! `aliyun-cli-and-credentials.md` §4.2, not shared with the product's signer):
//!
//! 1. `Authorization: ACS3-HMAC-SHA256 Credential=<id>,SignedHeaders=<a;b;…>,Signature=<hex>`;
//! 2. the signed headers must cover `host` and every `x-acs-*` header sent; `x-acs-action`,
//!    `x-acs-version`, `x-acs-date` (within 15 minutes), `x-acs-signature-nonce` (never seen
//!    before) and `x-acs-content-sha256` (the body's hash) are required;
//! 3. `CanonicalRequest = METHOD\nPATH\nQUERY\nHEADERS\nSIGNED\nHASH`, the query sorted by name with
//!    RFC 3986 encoding, each signed header `name:trimmed value\n`;
//! 4. `Signature = hex(HMAC-SHA256(secret, "ACS3-HMAC-SHA256\n" + hex(SHA256(CanonicalRequest))))`.
//!
//! Errors are ROA-shaped (`requestId`, `hostId`, `code`, `message`) with the gateway's codes.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use super::rpc::{self, percent_encode};
use super::{Call, State};

pub const ACTION: &str = "ListApiMcpServerCores";
pub const VERSION: &str = "2024-11-30";
pub const PATH: &str = "/apimcpservercores";
const ALGORITHM: &str = "ACS3-HMAC-SHA256";
const DATE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// One request, as far as this route cares (header names lower-case).
pub struct Req<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a BTreeMap<String, String>,
    pub body: &'a [u8],
}

type Fail = (u16, &'static str, String);

/// Handles one request; returns the status and the JSON body, and records the call.
pub(super) fn handle(st: &mut State, req: &Req<'_>) -> (u16, Value) {
    let request_id = rpc::request_id();
    let mut call = Call {
        action: req.headers.get("x-acs-action").cloned().unwrap_or_default(),
        http_method: req.method.to_string(),
        request_id: request_id.clone(),
        signed: true,
        ..Call::default()
    };
    let (status, body) = match process(st, req, &mut call) {
        Ok(cores) => (
            200,
            json!({"requestId": request_id, "apiMcpServerCores": cores}),
        ),
        Err((status, code, message)) => {
            call.code = Some(code.to_string());
            call.message = Some(message.clone());
            (
                status,
                json!({"requestId": request_id, "hostId": req.headers.get("host"),
                       "code": code, "message": message}),
            )
        }
    };
    call.status = status;
    st.calls.push(call);
    (status, body)
}

fn process(st: &mut State, req: &Req<'_>, call: &mut Call) -> Result<Vec<Value>, Fail> {
    let h = |k: &str| req.headers.get(k).map(String::as_str);
    if req.method != "GET" {
        return Err((
            404,
            "InvalidAction.NotFound",
            format!("{ACTION} is GET {PATH}"),
        ));
    }
    match (h("x-acs-action"), h("x-acs-version")) {
        (Some(ACTION), Some(VERSION)) => {}
        (a, v) => {
            return Err((
                400,
                "InvalidAction.NotFound",
                format!("x-acs-action {a:?} / x-acs-version {v:?} do not name {ACTION} {VERSION}"),
            ))
        }
    }
    let auth = h("authorization").ok_or((
        401,
        "MissingAuthorization",
        "Authorization is mandatory for this action.".to_string(),
    ))?;
    let (key_id, signed, given) = parse_authorization(auth)?;
    call.access_key_id = Some(key_id.clone());
    call.security_token = h("x-acs-security-token").map(str::to_string);
    let (secret, permitted) = match (st.keys.get(&key_id), st.sts.get(&key_id)) {
        (Some(k), _) if call.security_token.is_none() => (k.secret.clone(), k.permitted),
        (None, Some(c)) if call.security_token.as_deref() == Some(c.security_token.as_str()) => {
            (c.access_key_secret.clone(), c.permitted)
        }
        (None, None) => {
            return Err((
                404,
                "InvalidAccessKeyId.NotFound",
                "Specified access key is not found.".into(),
            ))
        }
        _ => {
            return Err((
                400,
                "InvalidSecurityToken.MismatchWithAccessKey",
                "Specified SecurityToken mismatch with the AccessKey.".into(),
            ))
        }
    };
    for need in [
        "host",
        "x-acs-action",
        "x-acs-version",
        "x-acs-date",
        "x-acs-signature-nonce",
        "x-acs-content-sha256",
    ] {
        if h(need).is_none() {
            return Err((400, "MissingHeader", format!("{need} is mandatory.")));
        }
    }
    let unsigned = req
        .headers
        .keys()
        .find(|k| (k.starts_with("x-acs-") || *k == "host") && !signed.contains(k));
    if let Some(k) = unsigned {
        return Err((
            400,
            "IncompleteSignature",
            format!("header {k} is sent but not in SignedHeaders"),
        ));
    }
    let date = h("x-acs-date").unwrap_or_default();
    let t = rpc::parse_timestamp(date).ok_or((
        400,
        "InvalidTimeStamp.Format",
        "Specified time stamp or date value is not well formatted.".into(),
    ))?;
    let now = SystemTime::now();
    let off = now
        .duration_since(t)
        .or_else(|_| t.duration_since(now))
        .unwrap_or_default();
    if off > DATE_WINDOW {
        return Err((
            400,
            "InvalidTimeStamp.Expired",
            "Specified time stamp or date value is expired.".into(),
        ));
    }
    if h("x-acs-content-sha256") != Some(sha256_hex(req.body).as_str()) {
        return Err((
            400,
            "InvalidContentSha256",
            "x-acs-content-sha256 does not match the body".into(),
        ));
    }
    let canonical = canonical_request(req, &signed)?;
    let to_sign = format!("{ALGORITHM}\n{}", sha256_hex(canonical.as_bytes()));
    if hmac_sha256_hex(&secret, &to_sign) != given {
        return Err((
            400,
            "SignatureDoesNotMatch",
            format!(
                "Specified signature is not matched with our calculation. server string to sign is:{to_sign}"
            ),
        ));
    }
    let nonce = h("x-acs-signature-nonce").unwrap_or_default().to_string();
    if !st.nonces.insert(nonce) {
        return Err((
            400,
            "SignatureNonceUsed",
            "Specified signature nonce was used already.".into(),
        ));
    }
    if !permitted {
        return Err((
            403,
            "Forbidden.RAM",
            format!("User not authorized to operate on the specified resource (openapiexplorer:{ACTION})."),
        ));
    }
    Ok(st.cores.get(&key_id).cloned().unwrap_or_default())
}

/// `(key id, signed header names, signature)`.
fn parse_authorization(v: &str) -> Result<(String, Vec<String>, String), Fail> {
    let bad = |why: &str| {
        (
            400,
            "InvalidAuthorization",
            format!("malformed Authorization: {why}"),
        )
    };
    let rest = v
        .strip_prefix(ALGORITHM)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or_else(|| bad("not ACS3-HMAC-SHA256"))?;
    let mut fields = BTreeMap::new();
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=').ok_or_else(|| bad(part))?;
        fields.insert(k, v);
    }
    let get = |k| fields.get(k).map(|v| v.to_string()).ok_or_else(|| bad(k));
    let signed: Vec<String> = get("SignedHeaders")?
        .split(';')
        .map(str::to_string)
        .collect();
    let mut sorted = signed.clone();
    sorted.sort();
    if sorted != signed {
        return Err(bad("SignedHeaders is not sorted"));
    }
    Ok((get("Credential")?, signed, get("Signature")?))
}

fn canonical_request(req: &Req<'_>, signed: &[String]) -> Result<String, Fail> {
    let mut query: Vec<(String, String)> = rpc::parse_urlencoded(req.query)
        .map_err(|e| (400, "InvalidParameter", e))?
        .into_iter()
        .map(|(k, v)| (percent_encode(&k), percent_encode(&v)))
        .collect();
    query.sort();
    let query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut headers = String::new();
    for name in signed {
        let value = req.headers.get(name).ok_or((
            400,
            "IncompleteSignature",
            format!("signed header {name} was not sent"),
        ))?;
        headers.push_str(&format!("{name}:{}\n", value.trim()));
    }
    Ok(format!(
        "{}\n{}\n{query}\n{headers}\n{}\n{}",
        req.method,
        req.path,
        signed.join(";"),
        sha256_hex(req.body)
    ))
}

fn sha256_hex(data: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

fn hmac_sha256_hex(secret: &str, data: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    hex(ring::hmac::sign(&key, data.as_bytes()).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
