//! The authorization server's HTTP endpoints: RFC 8414 metadata, RFC 7591 registration,
//! `/authorize` (validates, then redirects straight back) and `/token` (authorization code with
//! PKCE, rotating refresh tokens, client authentication none / basic / post). See the parent
//! module for what each one checks.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::SystemTime;

use base64::Engine as _;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

// `super::super`: the test support module in tests, the crate root in the example.
use super::super::net::read_body;

use super::{
    issuer, join_scopes, new_access_token, now_secs, random_b64url, scope_set, AccessToken,
    Authorization, CallbackIss, Client, Code, RefreshToken, Registration, State, TokenRequest,
};

type Resp = Response<Full<Bytes>>;

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn json_resp(status: StatusCode, v: &Value) -> Resp {
    respond(status, "application/json", v.to_string())
}

fn oauth_error(status: StatusCode, error: &str, why: &str) -> Resp {
    let mut r = json_resp(status, &json!({"error": error, "error_description": why}));
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"token\""),
        );
    }
    r
}

/// Answers one request to the authorization server at `addr`.
pub(super) async fn handle(
    addr: SocketAddr,
    state: &Mutex<State>,
    req: Request<hyper::body::Incoming>,
) -> Resp {
    let (parts, body) = read_body(req).await;
    let prefix = state.lock().unwrap().opts.issuer_path.clone();
    let prefix = prefix.trim_end_matches('/');
    let path = parts.uri.path();
    let query = parts.uri.query().unwrap_or_default();
    let at = |p: &str| format!("{prefix}{p}");
    let mut st = state.lock().unwrap();
    match (&parts.method, path) {
        (&Method::GET, p) if p == format!("/.well-known/oauth-authorization-server{prefix}") => {
            json_resp(StatusCode::OK, &metadata(addr, &st))
        }
        (&Method::POST, p) if p == at("/register") && st.opts.registration => {
            register(&mut st, &body)
        }
        (&Method::GET, p) if p == at("/authorize") => authorize(addr, &mut st, query),
        (&Method::POST, p) if p == at("/token") => {
            let basic = parts
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            token(&mut st, basic.as_deref(), &body)
        }
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found"),
    }
}

fn metadata(addr: SocketAddr, st: &State) -> Value {
    let iss = issuer(addr, &st.opts);
    let mut m = json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/authorize"),
        "token_endpoint": format!("{iss}/token"),
        "scopes_supported": st.opts.scopes_supported,
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": st.opts.token_auth_methods,
        "authorization_response_iss_parameter_supported": st.opts.advertise_iss,
    });
    if st.opts.registration {
        m["registration_endpoint"] = json!(format!("{iss}/register"));
    }
    m
}

/// RFC 7591: a native client's registration; no secret for `token_endpoint_auth_method: none`.
fn register(st: &mut State, body: &[u8]) -> Resp {
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client_metadata",
            "not JSON",
        );
    };
    let uris: Vec<String> = req["redirect_uris"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|u| u.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if uris.is_empty() {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_redirect_uri",
            "redirect_uris is required",
        );
    }
    if let Some(bad) = uris.iter().find(|u| {
        !(u.starts_with("http://127.0.0.1:")
            || u.starts_with("http://localhost:")
            || u.starts_with("http://[::1]:")
            || u.starts_with("https://"))
    }) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_redirect_uri",
            &format!("{bad} is neither loopback nor https"),
        );
    }
    let method = req["token_endpoint_auth_method"]
        .as_str()
        .unwrap_or("client_secret_basic")
        .to_string();
    let id = format!("dyn-{}", random_b64url(9));
    let secret = (method != "none").then(|| random_b64url(24));
    if let Some(s) = &secret {
        st.secrets.insert(s.clone());
    }
    st.clients.insert(
        id.clone(),
        Client {
            secret: secret.clone(),
            redirect_uris: uris.clone(),
        },
    );
    st.registrations.push(Registration {
        request: req.clone(),
        client_id: id.clone(),
    });
    let mut answer = req;
    answer["client_id"] = json!(id);
    answer["client_id_issued_at"] = json!(now_secs());
    answer["token_endpoint_auth_method"] = json!(method);
    if let Some(s) = secret {
        answer["client_secret"] = json!(s);
        answer["client_secret_expires_at"] = json!(0);
    }
    json_resp(StatusCode::CREATED, &answer)
}

fn authorize(addr: SocketAddr, st: &mut State, query: &str) -> Resp {
    let params: BTreeMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let p = |k: &str| params.get(k).map(String::as_str);
    let mut log = Authorization {
        params: params.clone(),
        outcome: String::new(),
        location: None,
    };
    // No redirect for an unknown client or redirect URI (RFC 6749 §4.1.2.1).
    let page_error = |log: &mut Authorization, why: String| {
        log.outcome = why.clone();
        respond(StatusCode::BAD_REQUEST, "text/plain", why)
    };
    let client = p("client_id").and_then(|id| st.clients.get(id));
    let Some(client) = client else {
        let r = page_error(&mut log, "invalid_client: unknown client_id".into());
        st.authorizations.push(log);
        return r;
    };
    let redirect = p("redirect_uri").unwrap_or_default().to_string();
    if !client.redirect_uris.contains(&redirect) {
        let r = page_error(
            &mut log,
            format!("invalid_request: redirect_uri {redirect:?} is not registered"),
        );
        st.authorizations.push(log);
        return r;
    }
    let iss = issuer(addr, &st.opts);
    let callback_iss = st.opts.callback_iss.clone();
    let state_param = p("state").map(str::to_string);
    let back = |pairs: Vec<(&str, String)>| {
        let mut u = url::Url::parse(&redirect).expect("registered redirect is a URL");
        {
            let mut q = u.query_pairs_mut();
            for (k, v) in pairs {
                q.append_pair(k, &v);
            }
            if let Some(s) = &state_param {
                q.append_pair("state", s);
            }
            match &callback_iss {
                CallbackIss::Own => {
                    q.append_pair("iss", &iss);
                }
                CallbackIss::Other(other) => {
                    q.append_pair("iss", other);
                }
                CallbackIss::Omitted => {}
            }
        }
        u.to_string()
    };
    let requested = scope_set(p("scope"));
    let unsupported: Vec<&String> = requested
        .iter()
        .filter(|s| !st.opts.scopes_supported.contains(s))
        .collect();
    let refusal = if p("response_type") != Some("code") {
        Some((
            "unsupported_response_type",
            "response_type must be code".to_string(),
        ))
    } else if p("code_challenge").is_none_or(|c| c.len() != 43) {
        Some((
            "invalid_request",
            "a code_challenge (S256) is required".into(),
        ))
    } else if p("code_challenge_method") != Some("S256") {
        Some((
            "invalid_request",
            "code_challenge_method must be S256".into(),
        ))
    } else if p("state").is_none_or(str::is_empty) {
        Some(("invalid_request", "state is required".into()))
    } else if p("resource").is_none() {
        Some(("invalid_target", "resource (RFC 8707) is required".into()))
    } else if !st.resources.is_empty()
        && !st
            .resources
            .iter()
            .any(|r| Some(r.as_str()) == p("resource"))
    {
        Some((
            "invalid_target",
            format!("unknown resource {:?}", p("resource")),
        ))
    } else if !unsupported.is_empty() {
        Some((
            "invalid_scope",
            format!("unsupported scopes {unsupported:?}"),
        ))
    } else {
        None
    };
    let location = if let Some((error, why)) = refusal {
        log.outcome = format!("{error}: {why}");
        back(vec![("error", error.into()), ("error_description", why)])
    } else if st.deny {
        log.outcome = "access_denied".into();
        back(vec![
            ("error", "access_denied".into()),
            ("error_description", "The user declined the request".into()),
        ])
    } else {
        let code = random_b64url(24);
        st.secrets.insert(code.clone());
        st.codes.insert(
            code.clone(),
            Code {
                client_id: p("client_id").unwrap().to_string(),
                redirect_uri: redirect.clone(),
                challenge: p("code_challenge").unwrap().to_string(),
                resource: p("resource").map(str::to_string),
                scopes: requested,
                used: false,
            },
        );
        log.outcome = "code".into();
        back(vec![("code", code)])
    };
    log.location = Some(location.clone());
    st.authorizations.push(log);
    let mut r = respond(StatusCode::FOUND, "text/plain", "redirecting");
    r.headers_mut()
        .insert(header::LOCATION, location.parse().expect("valid Location"));
    r
}

/// `Authorization: Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 §2.3.1).
fn parse_basic(value: &str) -> Option<(String, String)> {
    let b64 = value.strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (id, secret) = raw.split_once(':')?;
    let dec = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((dec(id)?, dec(secret)?))
}

fn token(st: &mut State, authorization: Option<&str>, body: &[u8]) -> Resp {
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    for k in ["code", "code_verifier", "refresh_token", "client_secret"] {
        if let Some(v) = form.get(k) {
            st.secrets.insert(v.clone());
        }
    }
    let basic = authorization.and_then(parse_basic);
    let (client_auth, client_id, secret) = match (&basic, form.get("client_secret")) {
        (Some((id, s)), _) => ("client_secret_basic", Some(id.clone()), Some(s.clone())),
        (None, Some(s)) => (
            "client_secret_post",
            form.get("client_id").cloned(),
            Some(s.clone()),
        ),
        (None, None) => ("none", form.get("client_id").cloned(), None),
    };
    let mut log = TokenRequest {
        grant_type: form.get("grant_type").cloned().unwrap_or_default(),
        client_auth: client_auth.into(),
        client_id: client_id.clone(),
        params: form.clone(),
        status: 200,
        error: None,
    };
    let result = grant(
        st,
        &form,
        client_auth,
        client_id.as_deref(),
        secret.as_deref(),
    );
    let resp = match result {
        Ok(v) => json_resp(StatusCode::OK, &v),
        Err((status, error, why)) => {
            log.status = status.as_u16();
            log.error = Some(format!("{error}: {why}"));
            oauth_error(status, error, &why)
        }
    };
    st.token_requests.push(log);
    resp
}

type Refusal = (StatusCode, &'static str, String);

fn grant(
    st: &mut State,
    form: &BTreeMap<String, String>,
    client_auth: &str,
    client_id: Option<&str>,
    secret: Option<&str>,
) -> Result<Value, Refusal> {
    let f = |k: &str| form.get(k).map(String::as_str);
    let bad_client = |why: &str| (StatusCode::UNAUTHORIZED, "invalid_client", why.to_string());
    let bad_grant = |why: &str| (StatusCode::BAD_REQUEST, "invalid_grant", why.to_string());
    // Client authentication.
    let Some(client_id) = client_id else {
        return Err(bad_client("no client_id"));
    };
    let Some(client) = st.clients.get(client_id) else {
        return Err(bad_client("unknown client"));
    };
    if !st.opts.token_auth_methods.iter().any(|m| m == client_auth) {
        return Err(bad_client(&format!(
            "client authentication {client_auth} is not supported here (supported: {:?})",
            st.opts.token_auth_methods
        )));
    }
    match (&client.secret, secret) {
        (Some(want), Some(got)) if want == got => {}
        (Some(_), Some(_)) => return Err(bad_client("wrong client secret")),
        (Some(_), None) => return Err(bad_client("this client must authenticate")),
        (None, Some(_)) => return Err(bad_client("this public client has no secret")),
        (None, None) => {}
    }
    let (resource, scopes, grant) = match f("grant_type") {
        Some("authorization_code") => {
            let code = st
                .codes
                .get_mut(f("code").unwrap_or_default())
                .ok_or_else(|| bad_grant("unknown code"))?;
            if code.used {
                return Err(bad_grant("code already used"));
            }
            code.used = true;
            if code.client_id != client_id {
                return Err(bad_grant("the code was issued to another client"));
            }
            if f("redirect_uri") != Some(code.redirect_uri.as_str()) {
                return Err(bad_grant(
                    "redirect_uri differs from the authorization request",
                ));
            }
            let verifier = f("code_verifier").unwrap_or_default();
            let ok_chars = verifier
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
            if !(43..=128).contains(&verifier.len()) || !ok_chars {
                return Err(bad_grant("code_verifier is malformed"));
            }
            let hashed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
                ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()),
            );
            if hashed != code.challenge {
                return Err(bad_grant("PKCE verification failed"));
            }
            if f("resource") != code.resource.as_deref() {
                return Err((
                    StatusCode::BAD_REQUEST,
                    "invalid_target",
                    "resource differs from the authorization request".into(),
                ));
            }
            let found = (code.resource.clone(), code.scopes.clone());
            st.grants += 1;
            (found.0, found.1, st.grants)
        }
        Some("refresh_token") => {
            let presented = f("refresh_token").unwrap_or_default();
            let reused = st.refresh.get(presented).filter(|t| t.used);
            if let Some(grant) = reused.map(|t| t.grant) {
                // OAuth 2.1 §4.3.1: a reused rotating refresh token means it leaked (or a
                // client raced itself): the whole grant is revoked.
                st.refresh_reuses += 1;
                st.access
                    .values_mut()
                    .filter(|t| t.grant == grant)
                    .for_each(|t| t.revoked = true);
                st.refresh
                    .values_mut()
                    .filter(|t| t.grant == grant)
                    .for_each(|t| t.revoked = true);
                return Err(bad_grant(
                    "the refresh token was already used (rotation); the grant is revoked",
                ));
            }
            let rt = st
                .refresh
                .get_mut(presented)
                .ok_or_else(|| bad_grant("unknown refresh token"))?;
            if rt.revoked {
                return Err(bad_grant("the refresh token was revoked"));
            }
            if rt.client_id != client_id {
                return Err(bad_grant("the refresh token was issued to another client"));
            }
            if let Some(r) = f("resource") {
                if Some(r) != rt.resource.as_deref() {
                    return Err((
                        StatusCode::BAD_REQUEST,
                        "invalid_target",
                        "resource differs from the original grant".into(),
                    ));
                }
            }
            let scopes = match f("scope") {
                Some(s) => {
                    let asked = scope_set(Some(s));
                    if !asked.is_subset(&rt.scopes) {
                        return Err((
                            StatusCode::BAD_REQUEST,
                            "invalid_scope",
                            "a refresh may not widen the scope".into(),
                        ));
                    }
                    asked
                }
                None => rt.scopes.clone(),
            };
            rt.used = true;
            (rt.resource.clone(), scopes, rt.grant)
        }
        other => {
            return Err((
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!("{other:?}"),
            ))
        }
    };
    let lifetime = st.opts.access_token_lifetime;
    let at = new_access_token(lifetime);
    let rt = random_b64url(32);
    st.secrets.insert(at.clone());
    st.secrets.insert(rt.clone());
    st.access.insert(
        at.clone(),
        AccessToken {
            grant,
            resource: resource.clone(),
            scopes: scopes.clone(),
            expires_at: SystemTime::now() + lifetime,
            revoked: false,
        },
    );
    st.access_order.push(at.clone());
    st.refresh.insert(
        rt.clone(),
        RefreshToken {
            grant,
            client_id: client_id.to_string(),
            resource,
            scopes: scopes.clone(),
            used: false,
            revoked: false,
        },
    );
    let mut v = json!({
        "access_token": at,
        "token_type": "Bearer",
        "expires_in": lifetime.as_secs(),
        "refresh_token": rt,
    });
    if !scopes.is_empty() {
        v["scope"] = json!(join_scopes(&scopes));
    }
    Ok(v)
}
