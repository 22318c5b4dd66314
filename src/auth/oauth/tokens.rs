//! Token endpoint requests: the authorization-code exchange and refresh, with the client
//! authentication method the server supports (`none`, `client_secret_basic`,
//! `client_secret_post`), and RFC 8707 `resource` on both.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use reqwest::Url;
use serde::Deserialize;

use super::OAuthError;
use crate::auth::secret::Secret;

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Basic,
    Post,
}

impl ClientAuth {
    /// Picks the method: a public client uses `none`; a client with a secret prefers
    /// `client_secret_basic` (the RFC 8414 default when the server lists nothing).
    pub fn choose(has_secret: bool, supported: Option<&[String]>) -> ClientAuth {
        if !has_secret {
            return ClientAuth::None;
        }
        match supported {
            None => ClientAuth::Basic,
            Some(list) if list.iter().any(|m| m == "client_secret_basic") => ClientAuth::Basic,
            Some(list) if list.iter().any(|m| m == "client_secret_post") => ClientAuth::Post,
            Some(_) => ClientAuth::Basic,
        }
    }
}

/// The client as the token endpoint sees it.
pub struct Client<'a> {
    pub id: &'a str,
    pub secret: Option<&'a Secret>,
    pub auth: ClientAuth,
}

/// A successful token response.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    /// Unix seconds.
    pub expires_at: Option<u64>,
    pub scope: Option<String>,
}

#[derive(Deserialize)]
struct Raw {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    scope: Option<String>,
}

#[derive(Deserialize)]
struct RawError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// The longest access-token lifetime believed (a year, in seconds): `expires_in` is the
/// server's number, so a huge one means "refresh in a year", never an overflow.
pub const MAX_EXPIRES_IN: u64 = 366 * 24 * 3600;

/// When a token with this `expires_in` expires, in Unix seconds: a non-negative number or
/// numeric string, capped at [`MAX_EXPIRES_IN`]; anything else is unknown (`None`).
fn expires_at(expires_in: Option<&serde_json::Value>) -> Option<u64> {
    let v = expires_in?;
    let secs = v.as_u64().or_else(|| {
        let f = v
            .as_f64()
            .or_else(|| v.as_str()?.trim().parse::<f64>().ok())?;
        // `as` saturates; NaN and negatives are refused first.
        (f.is_finite() && f >= 0.0).then_some(f as u64)
    })?;
    Some(now_secs().saturating_add(secs.min(MAX_EXPIRES_IN)))
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Exchanges an authorization code.
pub async fn exchange_code(
    http: &reqwest::Client,
    token_endpoint: &Url,
    client: &Client<'_>,
    code: &Secret,
    verifier: &Secret,
    redirect_uri: &str,
    resource: &str,
) -> Result<Tokens, OAuthError> {
    let form = vec![
        ("grant_type", "authorization_code"),
        ("code", code.expose()),
        ("code_verifier", verifier.expose()),
        ("redirect_uri", redirect_uri),
        ("resource", resource),
    ];
    post(http, token_endpoint, client, form).await
}

/// Refreshes; a rotated refresh token replaces the old one, an absent one keeps it.
pub async fn refresh(
    http: &reqwest::Client,
    token_endpoint: &Url,
    client: &Client<'_>,
    refresh_token: &Secret,
    resource: &str,
    scope: Option<&str>,
) -> Result<Tokens, OAuthError> {
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.expose()),
        ("resource", resource),
    ];
    if let Some(s) = scope {
        form.push(("scope", s));
    }
    let mut t = post(http, token_endpoint, client, form).await?;
    if t.refresh_token.is_none() {
        t.refresh_token = Some(refresh_token.clone());
    }
    Ok(t)
}

async fn post(
    http: &reqwest::Client,
    endpoint: &Url,
    client: &Client<'_>,
    mut form: Vec<(&str, &str)>,
) -> Result<Tokens, OAuthError> {
    let mut rb = http
        .post(endpoint.clone())
        .header(reqwest::header::ACCEPT, "application/json");
    match (client.auth, client.secret) {
        (ClientAuth::Basic, Some(secret)) => {
            // RFC 6749 §2.3.1: form-urlencode id and secret before base64.
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let pair = format!("{}:{}", enc(client.id), enc(secret.expose()));
            let value = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            );
            rb = rb.header(reqwest::header::AUTHORIZATION, value);
        }
        (ClientAuth::Post, Some(secret)) => {
            form.push(("client_id", client.id));
            form.push(("client_secret", secret.expose()));
        }
        _ => form.push(("client_id", client.id)),
    }
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let resp = rb
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| OAuthError::Unreachable {
            what: format!("token endpoint {endpoint}"),
            source: e.into(),
        })?;
    let status = resp.status().as_u16();
    let bytes = crate::auth::transport::read_small(resp)
        .await
        .map_err(|e| OAuthError::Unreachable {
            what: format!("token endpoint {endpoint}"),
            source: e,
        })?;
    if (200..300).contains(&status) {
        let raw: Raw = serde_json::from_slice(&bytes).map_err(|e| OAuthError::Malformed {
            what: "the token endpoint answered without a usable access_token".into(),
            source: e,
        })?;
        if raw
            .token_type
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
        {
            return Err(OAuthError::Protocol(format!(
                "unsupported token_type {:?}",
                raw.token_type
            )));
        }
        return Ok(Tokens {
            access_token: Secret::new(raw.access_token),
            refresh_token: raw.refresh_token.filter(|r| !r.is_empty()).map(Secret::new),
            expires_at: expires_at(raw.expires_in.as_ref()),
            scope: raw.scope,
        });
    }
    match serde_json::from_slice::<RawError>(&bytes) {
        Ok(e) => Err(OAuthError::Rejected {
            error: e.error,
            description: e.error_description,
            status,
        }),
        Err(_) => Err(OAuthError::Protocol(format!(
            "the token endpoint answered HTTP {status}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_expires_in_neither_panics_nor_overflows() {
        use serde_json::json;
        let now = now_secs();
        for huge in [
            json!(u64::MAX),
            json!("18446744073709551615"),
            json!(1e308),
            json!("1e308"),
        ] {
            let at = expires_at(Some(&huge)).unwrap();
            assert!(
                (now + MAX_EXPIRES_IN..=now_secs() + MAX_EXPIRES_IN).contains(&at),
                "{huge}"
            );
        }
        for unknown in [json!(-1), json!("-1"), json!("NaN"), json!(null), json!({})] {
            assert_eq!(expires_at(Some(&unknown)), None, "{unknown}");
        }
        assert_eq!(expires_at(None), None);
        let at = expires_at(Some(&json!("3600"))).unwrap();
        assert!((now + 3600..=now_secs() + 3600).contains(&at));
    }

    #[test]
    fn client_auth_method_choice() {
        let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            ClientAuth::choose(false, Some(&l(&["client_secret_basic"]))),
            ClientAuth::None
        );
        assert_eq!(ClientAuth::choose(true, None), ClientAuth::Basic);
        assert_eq!(
            ClientAuth::choose(true, Some(&l(&["client_secret_post"]))),
            ClientAuth::Post
        );
        assert_eq!(
            ClientAuth::choose(
                true,
                Some(&l(&["none", "client_secret_basic", "client_secret_post"]))
            ),
            ClientAuth::Basic
        );
    }
}
