//! The sign-in page `alibridge pre-check` opens: `GET /oauth2/v1/auth` (the path of
//! `signin.aliyun.com/oauth2/v1/auth`). It checks the authorization request the way an OAuth 2.1
//! server with PKCE does and "signs the user in" at once: a 302 to the loopback `redirect_uri`
//! with `code` and `state`, or with `error=access_denied` / `error=unauthorized_client` for
//! client ids the test set up that way (`alibabacloud-mcp-proxy.md` §3).
//!
//! As RFC 6749 §4.1.2.1 requires, an unknown `client_id` or a bad `redirect_uri` is never
//! redirected to: those get a 400 page. Other malformed requests are redirected with
//! `error=invalid_request` and a description, so `pre-check` can say what was wrong.

use super::rpc::{self, percent_encode};
use super::{ClientStatus, SignIn, State};

/// Path of the authorization endpoint.
pub const AUTHORIZE_PATH: &str = "/oauth2/v1/auth";
/// Scopes `pre-check` may ask for: the built-in application's, and a custom one's.
const SCOPES: [&str; 2] = ["/internal/acs/openapi", "openid /acs/mcp-server"];

/// What the page answers.
pub struct Answer {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

/// Handles `GET /oauth2/v1/auth?<query>` and records it.
pub fn handle(st: &mut State, query: &str) -> Answer {
    let params: std::collections::BTreeMap<String, String> = match rpc::parse_urlencoded(query) {
        Ok(p) => p.into_iter().collect(),
        Err(e) => return page(st, Default::default(), format!("invalid_request: {e}")),
    };
    let get = |k: &str| params.get(k).map(String::as_str);
    let Some(client) = get("client_id") else {
        return page(st, params.clone(), "invalid_request: no client_id".into());
    };
    let Some(status) = st.clients.get(client).copied() else {
        return page(
            st,
            params.clone(),
            format!("invalid_client: unknown client_id {client}"),
        );
    };
    let redirect = get("redirect_uri").unwrap_or_default();
    if !is_loopback_callback(redirect) {
        return page(
            st,
            params.clone(),
            format!(
                "invalid_request: redirect_uri {redirect:?} is not http://127.0.0.1:<port>/oauth/callback"
            ),
        );
    }
    let state = get("state").unwrap_or_default().to_string();
    let challenge = get("code_challenge").unwrap_or_default();
    let problem = if get("response_type") != Some("code") {
        Some("response_type must be code")
    } else if get("code_challenge_method") != Some("S256") {
        Some("code_challenge_method must be S256")
    } else if challenge.len() != 43
        || !challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Some("code_challenge must be 43 base64url characters (S256 of the verifier)")
    } else if state.is_empty() {
        Some("state is required")
    } else if !get("scope").is_some_and(|s| SCOPES.contains(&s)) {
        Some("scope must be /internal/acs/openapi or openid /acs/mcp-server")
    } else {
        None
    };
    let (outcome, tail) = match (problem, status) {
        (Some(p), _) => (
            format!("invalid_request: {p}"),
            format!(
                "error=invalid_request&error_description={}",
                percent_encode(p)
            ),
        ),
        (None, ClientStatus::Installed) => {
            ("code".to_string(), format!("code={}", rpc::random_b64url(24)))
        }
        (None, ClientStatus::Denied) => (
            "access_denied".to_string(),
            "error=access_denied&error_description=The%20user%20denied%20the%20request".into(),
        ),
        (None, ClientStatus::NotInstalled) => (
            "unauthorized_client".to_string(),
            "error=unauthorized_client&error_description=The%20application%20is%20not%20installed%20in%20this%20account".into(),
        ),
    };
    let location = format!("{redirect}?{tail}&state={}", percent_encode(&state));
    st.signins.push(SignIn {
        params,
        outcome,
        location: Some(location.clone()),
    });
    Answer {
        status: 302,
        location: Some(location),
        body: String::new(),
    }
}

/// `http://127.0.0.1:<port>/oauth/callback`, exactly.
fn is_loopback_callback(uri: &str) -> bool {
    uri.strip_prefix("http://127.0.0.1:")
        .and_then(|r| r.strip_suffix("/oauth/callback"))
        .is_some_and(|port| port.parse::<u16>().is_ok_and(|p| p != 0))
}

/// A 400 page that does not redirect (the request cannot be trusted with a redirect).
fn page(st: &mut State, params: std::collections::BTreeMap<String, String>, why: String) -> Answer {
    st.signins.push(SignIn {
        params,
        outcome: why.clone(),
        location: None,
    });
    Answer {
        status: 400,
        location: None,
        body: format!("<!doctype html><title>Sign-in error</title><p>{why}</p>"),
    }
}
