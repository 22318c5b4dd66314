//! The token exchange: RAM-OAuth `GenerateAccessToken` (version 2026-04-21, RPC v2 signed,
//! POST, parameters in the query) turns AccessKeys into a short-lived bearer token for the
//! OpenAPI MCP Server.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use reqwest::Url;
use serde_json::Value;

use super::api::{ApiClient, ApiError};
use super::keys::{parse_utc, AccessKeys};
use super::site::Site;
use crate::auth::secret::Secret;
use crate::auth::AuthError;
use crate::signer::rpc_v2::RpcCall;
use crate::signer::HttpMethod;

pub const ACTION: &str = "GenerateAccessToken";
/// The longest token lifetime believed (a year): `ExpiresIn`, `ExpireTime` and a JWT `exp` are
/// the server's numbers, so a huge one only means "refresh in a year", never an overflow.
pub const MAX_LIFETIME: Duration = Duration::from_secs(366 * 24 * 3600);
pub const VERSION: &str = "2026-04-21";

/// Where and how to mint.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub endpoint: Url,
    pub client_id: String,
    pub scope: String,
    /// A validated `--boundary-policy`, sent as `Policy`.
    pub policy: Option<String>,
    pub site: Site,
    /// Bound to every token before it is used (`--safety-policy`, exact `--allow-tools`).
    pub safety: Option<super::safety::Binding>,
}

/// A minted bearer token.
#[derive(Debug, Clone)]
pub struct Minted {
    pub token: Secret,
    /// `None` when neither the answer nor the token says (then it is used until rejected).
    pub expires_at: Option<SystemTime>,
}

impl Exchange {
    /// Calls GenerateAccessToken with `keys`; `origin` names where the keys came from, for
    /// error messages.
    pub async fn mint(
        &self,
        api: &ApiClient,
        keys: &AccessKeys,
        origin: &str,
    ) -> Result<Minted, AuthError> {
        let mut query = vec![
            ("ClientId", self.client_id.as_str()),
            ("Scope", self.scope.as_str()),
        ];
        if let Some(p) = &self.policy {
            query.push(("Policy", p));
        }
        let call = RpcCall {
            method: HttpMethod::Post,
            action: ACTION,
            version: VERSION,
            format: "json",
            query: &query,
            form: &[],
        };
        let body = api
            .rpc(&self.endpoint, &call, Some(&keys.api()))
            .await
            .map_err(|e| self.explain(e, keys, origin))?;
        parse(&body).ok_or_else(|| {
            AuthError::Protocol(format!(
                "{} answered GenerateAccessToken without an access token (RequestId {}); the service may have changed, please report it",
                self.endpoint.host_str().unwrap_or_default(),
                body.get("RequestId").and_then(Value::as_str).unwrap_or("n/a")
            ))
        })
    }

    /// Adds the likely fix to a failed exchange.
    fn explain(&self, e: ApiError, keys: &AccessKeys, origin: &str) -> AuthError {
        let code = e.code().unwrap_or_default().to_string();
        let status = match &e {
            ApiError::Service { status, .. } => *status,
            _ => 0,
        };
        let id = &keys.id;
        let site = self.site.flag_value();
        // The service's codes for "this identity or application may not do that".
        let not_permitted = status == 403
            || [
                "NoPermission",
                "Forbidden",
                "NotAuthorized",
                "Unauthorized",
                "AccessDenied",
            ]
            .iter()
            .any(|c| code.contains(c));
        let hint = if code.starts_with("SignatureDoesNotMatch") {
            format!("the AccessKey secret does not match AccessKey id {id} (from {origin}); check ALIBABA_CLOUD_ACCESS_KEY_SECRET or the profile's access_key_secret")
        } else if code.starts_with("InvalidAccessKeyId") {
            format!("AccessKey id {id} (from {origin}) does not exist or is disabled; check it in the RAM console (AccessKey management)")
        } else if code.starts_with("InvalidSecurityToken") {
            format!("the security token of {id} (from {origin}) is invalid or expired; get fresh STS credentials")
        } else if code.starts_with("InvalidTimeStamp") || code.starts_with("SignatureNonceUsed") {
            "the request was refused as stale or replayed; check that this computer's clock is right".to_string()
        } else if not_permitted {
            format!(
                "the RAM identity {id} may not mint OpenAPI MCP tokens, or the OpenAPI MCP application is not yet authorized for this account. \
                 Attach the system policy AliyunOpenAPIMCPServerStaticCredentialAccess to the RAM user or role, and run \
                 `alibridge pre-check --site-type {site}` once (in any browser) to authorize the application"
            )
        } else if matches!(e, ApiError::ForeignOrigin(_)) {
            "the signed request was not sent on; if the RAM-OAuth endpoint really moved, give its \
             address with --ims-endpoint"
                .to_string()
        } else if matches!(e, ApiError::Unreachable { .. }) {
            "check the network and HTTPS_PROXY, or point --ims-endpoint at a reachable RAM-OAuth endpoint".to_string()
        } else {
            format!("check --site-type (now {site}) and --client-id")
        };
        AuthError::api(
            format!("could not get an OpenAPI MCP token ({hint})"),
            e,
            not_permitted,
        )
    }
}

/// Finds the token and its lifetime in the documented answer shapes: at the root or under
/// `Data`/`data`, `AccessToken`/`access_token`/`Token`/`token`; expiry from `ExpiresIn`
/// (seconds, number or string), `ExpireTime`/`Expiration` (ISO-8601), else the JWT's `exp`.
pub fn parse(body: &Value) -> Option<Minted> {
    let scopes: Vec<&Value> = [Some(body), body.get("Data"), body.get("data")]
        .into_iter()
        .flatten()
        .collect();
    let token = scopes.iter().find_map(|s| {
        [
            "AccessToken",
            "access_token",
            "accessToken",
            "Token",
            "token",
        ]
        .iter()
        .find_map(|k| s.get(*k).and_then(Value::as_str).filter(|t| !t.is_empty()))
    })?;
    let expires_in = scopes.iter().find_map(|s| {
        ["ExpiresIn", "expires_in", "expiresIn"]
            .iter()
            .find_map(|k| seconds(s.get(*k)?))
    });
    let expires_at = expires_in
        .map(|secs| capped(SystemTime::now().checked_add(Duration::from_secs(secs))))
        .or_else(|| {
            scopes.iter().find_map(|s| {
                [
                    "ExpireTime",
                    "expire_time",
                    "Expiration",
                    "expiration",
                    "ExpiresAt",
                    "expires_at",
                ]
                .iter()
                .find_map(|k| s.get(*k).and_then(Value::as_str).and_then(parse_utc))
                .map(|t| capped(Some(t)))
            })
        })
        .or_else(|| jwt_exp(token));
    Some(Minted {
        token: Secret::new(token),
        expires_at,
    })
}

/// A non-negative whole number of seconds from a JSON number or numeric string; anything else
/// (negative, NaN, infinite, not a number) is `None`. Fractions are truncated and huge values
/// saturate, so `1e308` is simply a very large number.
fn seconds(v: &Value) -> Option<u64> {
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    let f = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => {
            let t = s.trim();
            if let Ok(n) = t.parse::<u64>() {
                return Some(n);
            }
            t.parse::<f64>().ok()?
        }
        _ => return None,
    };
    // `as` saturates at u64::MAX; NaN and negatives are refused before it.
    (f.is_finite() && f >= 0.0).then_some(f as u64)
}

/// `t`, but never later than [`MAX_LIFETIME`] from now (`None`, an overflow, counts as later).
fn capped(t: Option<SystemTime>) -> SystemTime {
    let now = SystemTime::now();
    let ceiling = now.checked_add(MAX_LIFETIME).unwrap_or(now);
    t.map_or(ceiling, |t| t.min(ceiling))
}

/// The `exp` claim of a JWT, without verifying it (only used to schedule a refresh).
fn jwt_exp(token: &str) -> Option<SystemTime> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims = serde_json::from_slice::<Value>(&bytes).ok()?;
    let exp = seconds(claims.get("exp")?)?;
    Some(capped(UNIX_EPOCH.checked_add(Duration::from_secs(exp))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secs_left(m: &Minted) -> u64 {
        m.expires_at
            .unwrap()
            .duration_since(SystemTime::now())
            .unwrap()
            .as_secs()
    }

    #[test]
    fn reads_the_documented_shape() {
        let body = json!({"RequestId":"r","Data":{"TokenType":"Bearer","ExpiresIn":"259199","Scope":"/internal/acs/openapi","AccessToken":"tok"}});
        let m = parse(&body).unwrap();
        assert_eq!(m.token.expose(), "tok");
        assert!((259_100..=259_199).contains(&secs_left(&m)));
    }

    #[test]
    fn tolerates_other_shapes_and_falls_back_to_jwt_exp() {
        let m = parse(&json!({"access_token":"t2","expires_in":60})).unwrap();
        assert!(secs_left(&m) <= 60);
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 1000;
        let payload =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(r#"{{"exp":{exp}}}"#));
        let m = parse(&json!({"Data":{"AccessToken": format!("h.{payload}.s")}})).unwrap();
        assert!((990..=1000).contains(&secs_left(&m)));
        let m =
            parse(&json!({"Data":{"Token":"opaque","ExpireTime":"2099-01-01T00:00:00Z"}})).unwrap();
        assert!(m.expires_at.is_some());
        assert!(parse(&json!({"Code":"x","Message":"y"})).is_none());
    }

    #[test]
    fn hostile_lifetimes_neither_panic_nor_overflow() {
        let year = MAX_LIFETIME.as_secs();
        let jwt = |exp: &str| {
            let p = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(format!(r#"{{"exp":{exp}}}"#));
            format!("h.{p}.s")
        };
        for huge in [
            json!(u64::MAX),
            json!("18446744073709551615"),
            json!("99999999999999999999999"),
            json!(1e308),
            json!("1e308"),
        ] {
            let m = parse(&json!({"AccessToken":"t","ExpiresIn": huge})).unwrap();
            assert!(secs_left(&m) <= year && secs_left(&m) > year - 10, "{huge}");
        }
        for ignored in [
            json!(-1),
            json!("-5"),
            json!("NaN"),
            json!("inf"),
            json!(null),
            json!([1]),
        ] {
            let m = parse(&json!({"AccessToken":"t","ExpiresIn": ignored})).unwrap();
            assert!(m.expires_at.is_none(), "{ignored}");
        }
        for exp in ["18446744073709551615", "1e308", "9223372036854775807"] {
            let m = parse(&json!({"AccessToken": jwt(exp)})).unwrap();
            assert!(secs_left(&m) <= year, "exp {exp}");
        }
        let m = parse(&json!({"AccessToken":"t","ExpireTime":"9999-12-31T23:59:59Z"})).unwrap();
        assert!(secs_left(&m) <= year);
        // A JWT that expired long ago is simply expired (refreshed at once), not an error.
        let m = parse(&json!({"AccessToken": jwt("0")})).unwrap();
        assert_eq!(m.expires_at, Some(UNIX_EPOCH));
    }
}
