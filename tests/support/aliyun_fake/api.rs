//! The RPC actions: RAM-OAuth `GenerateAccessToken` and STS `AssumeRole` (both RPC v2 signed),
//! STS `AssumeRoleWithOIDC` (unsigned). One call in, one JSON answer out, one [`Call`] recorded.
//!
//! Checks, in the order a real gateway makes them: POST on `/`; `Action` and its `Version`;
//! for signed actions the common parameters (`SignatureMethod=HMAC-SHA1`,
//! `SignatureVersion=1.0`), a `Timestamp` within 15 minutes, a known `AccessKeyId` (long-term
//! keys added by the test, or STS keys the fake minted, whose `SecurityToken` must match and not
//! be expired), the signature (recomputed with [`super::rpc`]), and a `SignatureNonce` never
//! seen before; then the action's own parameters and the caller's permission.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use super::rpc;
use super::{Call, ClientStatus, State, StsCredentials, TokenInfo};

pub const GENERATE_ACCESS_TOKEN: &str = "GenerateAccessToken";
pub const ASSUME_ROLE: &str = "AssumeRole";
pub const ASSUME_ROLE_WITH_OIDC: &str = "AssumeRoleWithOIDC";
/// `Version` of GenerateAccessToken.
pub const IMS_VERSION: &str = "2026-04-21";
/// `Version` of the STS actions.
pub const STS_VERSION: &str = "2015-04-01";
/// The only scope GenerateAccessToken mints for.
pub const OPENAPI_SCOPE: &str = "/internal/acs/openapi";
/// How far `Timestamp` may be from the server's clock.
const TIMESTAMP_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Longest `Policy` the service accepts, in characters.
const MAX_POLICY: usize = 512;

/// One HTTP request, as far as the RPC layer cares.
pub struct Req<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub host: &'a str,
    pub query: &'a str,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

/// A refused call: HTTP status, Alibaba error code, message.
struct Fail {
    status: u16,
    code: String,
    message: String,
}

fn fail(status: u16, code: &str, message: impl Into<String>) -> Fail {
    Fail {
        status,
        code: code.into(),
        message: message.into(),
    }
}

/// Who signed a call.
struct Signer {
    key_id: String,
    permitted: bool,
}

/// Handles one RPC request; returns the HTTP status and the JSON body, and records the call.
pub fn handle(st: &mut State, req: &Req<'_>) -> (u16, Value) {
    let request_id = rpc::request_id();
    let mut call = Call {
        http_method: req.method.to_string(),
        request_id: request_id.clone(),
        ..Call::default()
    };
    let outcome = process(st, req, &mut call);
    let (status, body) = match outcome {
        Ok(mut v) => {
            v["RequestId"] = request_id.clone().into();
            (200, v)
        }
        Err(f) => {
            let product = if call.action == GENERATE_ACCESS_TOKEN {
                "Ims"
            } else {
                "Sts"
            };
            call.code = Some(f.code.clone());
            call.message = Some(f.message.clone());
            let body = json!({
                "RequestId": request_id,
                "HostId": req.host,
                "Code": f.code,
                "Message": f.message,
                "Recommend": format!(
                    "https://api.aliyun.com/troubleshoot?q={}&product={product}&requestId={request_id}",
                    f.code
                ),
            });
            (f.status, body)
        }
    };
    call.status = status;
    st.calls.push(call);
    (status, body)
}

fn process(st: &mut State, req: &Req<'_>, call: &mut Call) -> Result<Value, Fail> {
    let now = SystemTime::now();
    let query = rpc::parse_urlencoded(req.query).map_err(|e| fail(400, "InvalidParameter", e))?;
    let form = if req.body.is_empty() {
        Vec::new()
    } else {
        let ct = req.content_type.unwrap_or_default();
        if !ct.starts_with("application/x-www-form-urlencoded") {
            return Err(fail(
                400,
                "InvalidParameter",
                format!("a request body must be application/x-www-form-urlencoded, not {ct:?}"),
            ));
        }
        let text = std::str::from_utf8(req.body)
            .map_err(|_| fail(400, "InvalidParameter", "the body is not UTF-8"))?;
        rpc::parse_urlencoded(text).map_err(|e| fail(400, "InvalidParameter", e))?
    };
    let mut params = BTreeMap::new();
    for (k, v) in query.iter().chain(&form) {
        if params.insert(k.clone(), v.clone()).is_some() {
            return Err(fail(
                400,
                "InvalidParameter",
                format!("parameter {k} is given twice"),
            ));
        }
    }
    let get = |k: &str| params.get(k).cloned();
    call.action = get("Action").unwrap_or_default();
    call.access_key_id = get("AccessKeyId");
    call.security_token = get("SecurityToken");
    call.policy = get("Policy");
    call.client_id = get("ClientId");
    call.scope = get("Scope");
    call.form = form.iter().map(|(k, _)| k.clone()).collect();
    call.params = params.clone();
    call.params.remove("Signature");

    if req.path != "/" {
        return Err(fail(
            404,
            "InvalidAction.NotFound",
            format!("RPC APIs live at \"/\", not {:?}", req.path),
        ));
    }
    if req.method != "POST" {
        return Err(fail(
            400,
            "InvalidHttpMethod",
            format!(
                "{} is not accepted here: these calls are POST, as the official SDK sends them",
                req.method
            ),
        ));
    }
    let (version, signed) = match call.action.as_str() {
        "" => return Err(missing("Action")),
        GENERATE_ACCESS_TOKEN => (IMS_VERSION, true),
        ASSUME_ROLE => (STS_VERSION, true),
        ASSUME_ROLE_WITH_OIDC => (STS_VERSION, false),
        _ => {
            return Err(fail(
                404,
                "InvalidAction.NotFound",
                "Specified api is not found, please check your url and method.",
            ))
        }
    };
    match get("Version") {
        None => return Err(missing("Version")),
        Some(v) if v != version => {
            return Err(fail(
                400,
                "InvalidVersion",
                format!(
                    "Specified parameter Version is not valid ({v}; {} is {version}).",
                    call.action
                ),
            ))
        }
        Some(_) => {}
    }
    if let Some(ts) = get("Timestamp") {
        check_timestamp(&ts, now)?;
    } else if signed {
        return Err(missing("Timestamp"));
    }
    call.signed = signed;
    let signer = if signed {
        Some(verify(st, req.method, &params, now)?)
    } else {
        None
    };
    match call.action.as_str() {
        GENERATE_ACCESS_TOKEN => {
            generate_access_token(st, &params, &form, signer.expect("signed"), now, call)
        }
        ASSUME_ROLE => assume_role(st, &params, signer.expect("signed"), now, call),
        _ => assume_role_with_oidc(st, &params, now, call),
    }
}

fn missing(name: &str) -> Fail {
    fail(
        400,
        &format!("Missing{name}"),
        format!("{name} is mandatory for this action."),
    )
}

fn check_timestamp(ts: &str, now: SystemTime) -> Result<(), Fail> {
    let t = rpc::parse_timestamp(ts).ok_or_else(|| {
        fail(
            400,
            "InvalidTimeStamp.Format",
            "Specified time stamp or date value is not well formatted.",
        )
    })?;
    let off = now
        .duration_since(t)
        .or_else(|_| t.duration_since(now))
        .unwrap_or_default();
    if off > TIMESTAMP_WINDOW {
        return Err(fail(
            400,
            "InvalidTimeStamp.Expired",
            format!(
                "Specified time stamp or date value is expired. Server time: {}, request time: {ts}.",
                rpc::format_timestamp(now)
            ),
        ));
    }
    Ok(())
}

/// The common-parameter, key, signature and nonce checks of a signed call.
fn verify(
    st: &mut State,
    method: &str,
    params: &BTreeMap<String, String>,
    now: SystemTime,
) -> Result<Signer, Fail> {
    let need = |k: &str| params.get(k).cloned().ok_or_else(|| missing(k));
    let key_id = need("AccessKeyId")?;
    let given = need("Signature")?;
    let nonce = need("SignatureNonce")?;
    let sig_method = need("SignatureMethod")?;
    let sig_version = need("SignatureVersion")?;
    if sig_method != "HMAC-SHA1" {
        return Err(fail(
            400,
            "InvalidSignatureMethod",
            format!("Specified signature method {sig_method:?} is not valid; RPC v2 is HMAC-SHA1."),
        ));
    }
    if sig_version != "1.0" {
        return Err(fail(
            400,
            "InvalidSignatureVersion",
            format!("Specified signature version {sig_version:?} is not valid; RPC v2 is 1.0."),
        ));
    }
    let token = params.get("SecurityToken");
    let (secret, permitted) = if let Some(k) = st.keys.get(&key_id) {
        if token.is_some() {
            return Err(fail(
                400,
                "InvalidSecurityToken.MismatchWithAccessKey",
                "Specified SecurityToken mismatch with the AccessKey (a long-term AccessKey takes no SecurityToken).",
            ));
        }
        (k.secret.clone(), k.permitted)
    } else if let Some(c) = st.sts.get(&key_id) {
        match token {
            None => return Err(missing("SecurityToken")),
            Some(t) if *t != c.security_token => {
                return Err(fail(
                    400,
                    "InvalidSecurityToken.MismatchWithAccessKey",
                    "Specified SecurityToken mismatch with the AccessKey.",
                ))
            }
            Some(_) if c.expires_at <= now => {
                return Err(fail(
                    400,
                    "InvalidSecurityToken.Expired",
                    "Specified SecurityToken is expired.",
                ))
            }
            Some(_) => {}
        }
        (c.access_key_secret.clone(), c.permitted)
    } else {
        return Err(fail(
            404,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.",
        ));
    };
    let to_sign = rpc::string_to_sign(method, &rpc::canonicalize(params));
    if rpc::signature(&secret, &to_sign) != given {
        return Err(fail(
            400,
            "SignatureDoesNotMatch",
            format!(
                "Specified signature is not matched with our calculation. server string to sign is:{to_sign}"
            ),
        ));
    }
    if !st.nonces.insert(nonce) {
        return Err(fail(
            400,
            "SignatureNonceUsed",
            "Specified signature nonce was used already.",
        ));
    }
    Ok(Signer { key_id, permitted })
}

fn generate_access_token(
    st: &mut State,
    params: &BTreeMap<String, String>,
    form: &[(String, String)],
    signer: Signer,
    now: SystemTime,
    call: &mut Call,
) -> Result<Value, Fail> {
    if !form.is_empty() {
        return Err(fail(
            400,
            "InvalidParameter",
            "GenerateAccessToken takes its parameters in the query string; the body must be empty",
        ));
    }
    if !signer.permitted {
        return Err(fail(
            403,
            "Forbidden.RAM",
            format!(
                "User not authorized to operate on the specified resource, or this API doesn't support RAM. \
                 ({} lacks ram-oauth:GenerateAccessToken)",
                signer.key_id
            ),
        ));
    }
    let client = params.get("ClientId").ok_or_else(|| missing("ClientId"))?;
    match st.clients.get(client) {
        None => {
            return Err(fail(
                400,
                "InvalidParameter.ClientId",
                format!("The specified ClientId {client} does not exist."),
            ))
        }
        Some(ClientStatus::Denied | ClientStatus::NotInstalled) => {
            return Err(fail(
                403,
                "Forbidden.AppNotAuthorized",
                format!("The application {client} is not authorized for this account."),
            ))
        }
        Some(ClientStatus::Installed) => {}
    }
    match params.get("Scope") {
        None => return Err(missing("Scope")),
        Some(s) if s != OPENAPI_SCOPE => {
            return Err(fail(
                400,
                "InvalidParameter.Scope",
                format!("The specified Scope {s:?} is not valid."),
            ))
        }
        Some(_) => {}
    }
    if let Some(p) = params.get("Policy") {
        let json_object = serde_json::from_str::<Value>(p).is_ok_and(|v| v.is_object());
        if p.chars().count() > MAX_POLICY || !json_object {
            return Err(fail(
                400,
                "InvalidParameter.Policy",
                "The specified Policy is not a JSON policy of at most 512 characters.",
            ));
        }
    }
    let lifetime = st.token_lifetime;
    let expires_at = now + lifetime;
    let token = rpc::jwt(&signer.key_id, expires_at);
    st.tokens.insert(
        token.clone(),
        TokenInfo {
            key_id: signer.key_id,
            expires_at,
            revoked: false,
        },
    );
    call.token = Some(token.clone());
    Ok(json!({
        "Data": {
            "TokenType": "Bearer",
            "ExpiresIn": lifetime.as_secs().to_string(),
            "Scope": OPENAPI_SCOPE,
            "AccessToken": token,
        }
    }))
}

/// The role-session checks shared by both STS actions; returns the duration asked for.
fn role_session(params: &BTreeMap<String, String>) -> Result<(String, String, u64), Fail> {
    let role = params.get("RoleArn").ok_or_else(|| missing("RoleArn"))?;
    let well_formed = role
        .strip_prefix("acs:ram::")
        .and_then(|r| r.split_once(":role/"))
        .is_some_and(|(account, name)| {
            !account.is_empty() && account.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty()
        });
    if !well_formed {
        return Err(fail(
            400,
            "InvalidParameter.RoleArn",
            "The parameter RoleArn is wrongly formed.",
        ));
    }
    let session = params
        .get("RoleSessionName")
        .ok_or_else(|| missing("RoleSessionName"))?;
    let ok_session = (2..=64).contains(&session.len())
        && session
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b));
    if !ok_session {
        return Err(fail(
            400,
            "InvalidParameter.RoleSessionName",
            "The parameter RoleSessionName is wrongly formed.",
        ));
    }
    let duration = match params.get("DurationSeconds") {
        None => 3600,
        Some(d) => d
            .parse::<u64>()
            .ok()
            .filter(|d| (900..=3600).contains(d))
            .ok_or_else(|| {
                fail(
                    400,
                    "InvalidParameter.DurationSeconds",
                    "The Min/Max value of DurationSeconds is 15min/1hr.",
                )
            })?,
    };
    Ok((role.clone(), session.clone(), duration))
}

fn assume_role(
    st: &mut State,
    params: &BTreeMap<String, String>,
    signer: Signer,
    now: SystemTime,
    call: &mut Call,
) -> Result<Value, Fail> {
    let (role, session, duration) = role_session(params)?;
    Ok(issue_sts(
        st,
        &role,
        &session,
        duration,
        signer.permitted,
        now,
        call,
    ))
}

fn assume_role_with_oidc(
    st: &mut State,
    params: &BTreeMap<String, String>,
    now: SystemTime,
    call: &mut Call,
) -> Result<Value, Fail> {
    let provider = params
        .get("OIDCProviderArn")
        .ok_or_else(|| missing("OIDCProviderArn"))?;
    if !provider.starts_with("acs:ram::") || !provider.contains(":oidc-provider/") {
        return Err(fail(
            400,
            "InvalidParameter.OIDCProviderArn",
            "The parameter OIDCProviderArn is wrongly formed.",
        ));
    }
    let token = params
        .get("OIDCToken")
        .ok_or_else(|| missing("OIDCToken"))?;
    if !st.oidc_tokens.contains(token) {
        return Err(fail(
            400,
            "AuthenticationFail.OIDCToken.Invalid",
            "The OIDCToken is invalid or expired.",
        ));
    }
    let (role, session, duration) = role_session(params)?;
    Ok(issue_sts(st, &role, &session, duration, true, now, call))
}

/// Mints temporary credentials for `role` and answers like STS does.
pub fn issue_sts(
    st: &mut State,
    role: &str,
    session: &str,
    duration: u64,
    permitted: bool,
    now: SystemTime,
    call: &mut Call,
) -> Value {
    let lifetime = st.sts_lifetime.unwrap_or(Duration::from_secs(duration));
    // Whole seconds: `Expiration` has no fraction, and the fake must agree with what it says.
    let expires_at =
        rpc::parse_timestamp(&rpc::format_timestamp(now + lifetime)).expect("own format");
    let creds = StsCredentials {
        access_key_id: format!("STS.NT{}", rpc::random_hex(12)),
        access_key_secret: rpc::random_b64url(30),
        security_token: format!("CAIS{}", rpc::random_b64url(120)),
        expires_at,
        role_arn: role.to_string(),
        permitted,
    };
    st.sts.insert(creds.access_key_id.clone(), creds.clone());
    call.sts = Some(creds.clone());
    json!({
        "AssumedRoleUser": {
            "AssumedRoleId": format!("3{}:{session}", rpc::random_digits(17)),
            "Arn": format!("{role}/{session}"),
        },
        "Credentials": {
            "AccessKeyId": creds.access_key_id,
            "AccessKeySecret": creds.access_key_secret,
            "SecurityToken": creds.security_token,
            "Expiration": rpc::format_timestamp(creds.expires_at),
        }
    })
}
