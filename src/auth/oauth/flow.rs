//! The interactive part of a sign-in: the client identity (pre-registered, metadata document,
//! or dynamic registration), the loopback redirect listener bound *before* the browser opens,
//! the authorization URL (PKCE S256, a fresh `state`, RFC 8707 `resource`), the wait for the
//! browser (or a pasted redirect URL / code on a terminal), and the code exchange.

use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;
use serde_json::json;
use tokio::io::AsyncBufReadExt;
use tracing::{debug, info};

use super::discovery::Discovered;
use super::store::{same_issuer, Record, Registration, Secrets};
use super::tokens::{self, ClientAuth, Tokens};
use super::{OAuthConfig, OAuthError};
use crate::auth::loopback::{parse_query, Callback, Listener};
use crate::auth::secret::Secret;
use crate::auth::{browser, pkce};
use crate::logging::notice;

/// The client as registered with the authorization server.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    pub id: String,
    pub secret: Option<Secret>,
    pub registration: Registration,
    pub redirect_uris: Vec<String>,
}

/// Ports tried for the redirect when `--callback-port` is not given: a port derived from the
/// server (stable, so a dynamic registration keeps matching) and two neighbours.
pub fn candidate_ports(key: &str, fixed: Option<u16>) -> Vec<u16> {
    if let Some(p) = fixed {
        return vec![p];
    }
    let n = u16::from_str_radix(&key[..4], 16).unwrap_or(0);
    let base = 33_000 + n % 16_000;
    vec![base, base + 1, base + 2]
}

/// Binds the first free candidate port. A busy port is never fatal unless the user fixed it.
pub async fn bind(ports: &[u16]) -> Result<Listener, OAuthError> {
    let mut last = None;
    for &p in ports {
        match Listener::bind(p).await {
            Ok(l) => return Ok(l),
            Err(e) => {
                debug!(port = p, error = %e, "callback port busy");
                last = Some((p, e));
            }
        }
    }
    let (p, e) = last.expect("at least one port");
    Err(OAuthError::Listen { port: p, source: e })
}

/// Picks the client identity, in the spec's order: pre-registered (flag/env), a Client ID
/// Metadata Document when the server supports it, the stored dynamic registration (if it was
/// made with this issuer and covers `redirect`), a new dynamic registration.
pub async fn client_identity(
    http: &reqwest::Client,
    cfg: &OAuthConfig,
    disc: &Discovered,
    stored: Option<&Record>,
    redirects: &[String],
    redirect: &str,
) -> Result<ClientIdentity, OAuthError> {
    if let Some(id) = &cfg.client_id {
        return Ok(ClientIdentity {
            id: id.clone(),
            secret: cfg.client_secret.clone(),
            registration: Registration::Preregistered,
            redirect_uris: vec![],
        });
    }
    if let Some(url) = &cfg.client_metadata_url {
        if disc.server.client_id_metadata_document_supported {
            return Ok(ClientIdentity {
                id: url.to_string(),
                secret: None,
                registration: Registration::MetadataDocument,
                redirect_uris: vec![],
            });
        }
        info!("the authorization server does not accept client metadata documents; registering instead");
    }
    if let Some(rec) = stored.filter(|r| {
        r.registration == Registration::Dynamic
            && r.issuer == disc.server.issuer
            && r.redirect_uris.iter().any(|u| u == redirect)
    }) {
        return Ok(ClientIdentity {
            id: rec.client_id.clone(),
            secret: rec.secrets.client_secret.clone().map(Secret::new),
            registration: Registration::Dynamic,
            redirect_uris: rec.redirect_uris.clone(),
        });
    }
    register(http, disc, redirects, cfg).await
}

#[derive(Deserialize)]
struct Registered {
    client_id: String,
    #[serde(default)]
    client_secret: Option<String>,
}

/// RFC 7591 dynamic registration of a native, public client for all candidate redirects.
async fn register(
    http: &reqwest::Client,
    disc: &Discovered,
    redirects: &[String],
    cfg: &OAuthConfig,
) -> Result<ClientIdentity, OAuthError> {
    let Some(endpoint) = &disc.server.registration_endpoint else {
        return Err(OAuthError::Registration(no_registration_hint(
            disc, redirects, cfg,
        )));
    };
    let body = json!({
        "client_name": "alibridge",
        "client_uri": "https://github.com/alibridge/alibridge",
        "software_id": "alibridge",
        "software_version": env!("CARGO_PKG_VERSION"),
        "application_type": "native",
        "redirect_uris": redirects,
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    });
    let resp = http
        .post(endpoint.clone())
        .json(&body)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| OAuthError::Unreachable {
            what: format!("registration endpoint {endpoint}"),
            source: e.into(),
        })?;
    let status = resp.status().as_u16();
    if !resp.status().is_success() {
        let body = crate::auth::transport::read_small(resp)
            .await
            .unwrap_or_default();
        return Err(OAuthError::Registration(format!(
            "dynamic client registration at {endpoint} failed with HTTP {status}: {}. {}",
            String::from_utf8_lossy(&body)
                .chars()
                .take(200)
                .collect::<String>(),
            "Register an application yourself and pass --oauth-client-id"
        )));
    }
    let body = crate::auth::transport::read_small(resp)
        .await
        .map_err(|e| OAuthError::Unreachable {
            what: format!("registration endpoint {endpoint}"),
            source: e,
        })?;
    let r: Registered = serde_json::from_slice(&body).map_err(|e| OAuthError::Malformed {
        what: "the registration answer has no client_id".into(),
        source: e,
    })?;
    info!("registered this client with the authorization server");
    Ok(ClientIdentity {
        id: r.client_id,
        secret: r.client_secret.filter(|s| !s.is_empty()).map(Secret::new),
        registration: Registration::Dynamic,
        redirect_uris: redirects.to_vec(),
    })
}

/// What to do when the server offers no way to register.
fn no_registration_hint(disc: &Discovered, redirects: &[String], cfg: &OAuthConfig) -> String {
    let redirect = redirects.first().cloned().unwrap_or_default();
    let alibaba = cfg.site.map(|s| {
        format!(
            " For Alibaba Cloud: in the RAM console, OAuth Applications, create a Native application with redirect URI {redirect} \
             (the {} console is {}), then pass its AppId.",
            s.flag_value(),
            s.console_url()
        )
    });
    format!(
        "the authorization server {} does not support dynamic client registration and no client id was given. \
         Pass --oauth-client-id (env ALIBRIDGE_OAUTH_CLIENT_ID; a secret only via ALIBRIDGE_OAUTH_CLIENT_SECRET), registered \
         with the redirect URI {redirect} (fix the port with --callback-port).{}",
        disc.server.issuer,
        alibaba.unwrap_or_default()
    )
}

/// Runs the browser part and the code exchange; returns the new record.
pub async fn authorize(
    http: &reqwest::Client,
    cfg: &OAuthConfig,
    disc: &Discovered,
    client: &ClientIdentity,
    listener: &Listener,
    scope: Option<&str>,
    paste: bool,
) -> Result<(Tokens, String), OAuthError> {
    let redirect = listener.redirect_uri();
    let state = pkce::state();
    let pkce = pkce::Pkce::new();
    let mut url: Url = disc.server.authorization_endpoint.clone();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &client.id)
            .append_pair("redirect_uri", &redirect)
            .append_pair("state", &state)
            .append_pair("code_challenge", &pkce.challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("resource", &disc.resource);
        if let Some(s) = scope {
            q.append_pair("scope", s);
        }
    }
    notice(format_args!(
        "sign in to {} in your browser:\n\n  {url}\n",
        disc.resource
    ));
    if !cfg.no_browser {
        match browser::open(url.as_str()) {
            Some(how) => notice(format_args!(
                "opened with {how}; waiting up to {} s",
                cfg.auth_timeout.as_secs()
            )),
            None => notice("could not open a browser; open the URL above yourself"),
        }
    }
    if paste {
        notice("after approving, if the browser cannot reach this machine, paste the address it ended on (or the code) here:");
    }
    let check = |cb: &Callback| check_issuer(disc, cb);
    let waited = tokio::time::timeout(cfg.auth_timeout, async {
        tokio::select! {
            r = listener.wait(&state, check) => r.map_err(OAuthError::Redirect),
            r = read_pasted(&state, &check), if paste => r,
        }
    })
    .await
    .map_err(|_| {
        OAuthError::Timeout(format!(
            "no answer from the browser within {} s (--auth-timeout); run `alibridge login {}` to sign in ahead of time",
            cfg.auth_timeout.as_secs(),
            disc.resource
        ))
    })??;
    let code = match waited {
        Callback::Code { code, .. } => code,
        Callback::Error {
            error, description, ..
        } => return Err(OAuthError::Denied { error, description }),
        Callback::Refused(why) => return Err(OAuthError::Callback(why)),
    };
    let client_auth = ClientAuth::choose(
        client.secret.is_some(),
        disc.server.token_endpoint_auth_methods_supported.as_deref(),
    );
    let tc = tokens::Client {
        id: &client.id,
        secret: client.secret.as_ref(),
        auth: client_auth,
    };
    let t = tokens::exchange_code(
        http,
        &disc.server.token_endpoint,
        &tc,
        &code,
        &pkce.verifier,
        &redirect,
        &disc.resource,
    )
    .await?;
    Ok((t, redirect))
}

/// RFC 9207: the authorization response names its issuer; a different one means the code may
/// belong to another authorization server (a mix-up attack), so it is never exchanged. A server
/// that advertises `authorization_response_iss_parameter_supported` must send it.
fn check_issuer(disc: &Discovered, cb: &Callback) -> Result<(), String> {
    let iss = match cb {
        Callback::Code { iss, .. } | Callback::Error { iss, .. } => iss.as_deref(),
        Callback::Refused(_) => return Ok(()),
    };
    let expected = &disc.server.issuer;
    match iss {
        Some(i) if !same_issuer(i, expected) => Err(format!(
            "the sign-in answer says it comes from the authorization server {i:?}, not {expected:?} which alibridge asked; \
             the code was not used (a mix-up attack or a misconfigured server). Sign in again; if this repeats, report it to the server's operator"
        )),
        None if disc.server.authorization_response_iss_parameter_supported => Err(format!(
            "the authorization server {expected} promises to name itself in its answer (RFC 9207 iss) but did not; \
             the code was not used. Sign in again; if this repeats, report it to the server's operator"
        )),
        _ => Ok(()),
    }
}

/// Reads a pasted redirect URL (`…?code=…&state=…`) or a bare code from the terminal. A bare
/// code carries no `iss`, so it is accepted only from servers that do not promise one.
async fn read_pasted(
    state: &str,
    check: &impl Fn(&Callback) -> Result<(), String>,
) -> Result<Callback, OAuthError> {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some((_, query)) = line.split_once('?') {
            let p = parse_query(query);
            if p.get("state").map(String::as_str) != Some(state) {
                notice(
                    "that address belongs to another sign-in (state differs); paste the latest one",
                );
                continue;
            }
            let Some(cb) = Callback::from_params(&p) else {
                notice("no code in that address; paste the full address or the code");
                continue;
            };
            return Ok(match check(&cb) {
                Ok(()) => cb,
                Err(why) => Callback::Refused(why),
            });
        }
        let cb = Callback::Code {
            code: Secret::new(line.to_string()),
            iss: None,
        };
        if let Err(why) = check(&cb) {
            notice(format_args!(
                "{why}; paste the full address the browser ended on instead"
            ));
            continue;
        }
        return Ok(cb);
    }
    std::future::pending().await
}

/// Builds the stored record of a completed sign-in.
pub fn record(
    disc: &Discovered,
    client: &ClientIdentity,
    t: Tokens,
    scope: Option<&str>,
) -> Record {
    Record {
        server: disc.resource.clone(),
        issuer: disc.server.issuer.clone(),
        client_id: client.id.clone(),
        registration: client.registration,
        redirect_uris: client.redirect_uris.clone(),
        expires_at: t.expires_at,
        scope: t.scope.or_else(|| scope.map(str::to_string)),
        updated_at: tokens::now_secs(),
        generation: 0,
        store: "file".into(),
        secrets: Secrets {
            access_token: Some(t.access_token.expose().to_string()),
            refresh_token: t.refresh_token.map(|r| r.expose().to_string()),
            // A user's own secret comes from the environment each run and is never stored.
            client_secret: match client.registration {
                Registration::Dynamic => client.secret.as_ref().map(|s| s.expose().to_string()),
                _ => None,
            },
        },
    }
}
