//! Finding the authorization server of an MCP server, per the MCP authorization spec
//! (2025-06-18 / 2025-11-25, with the 2025-03-26 fallback):
//!
//! 1. The 401's `WWW-Authenticate` (`resource_metadata`, `scope`, `error`).
//! 2. Protected Resource Metadata (RFC 9728): the header's URL, else the path-inserted
//!    well-known URL, else the root one. Its `resource` is required and must be the server's
//!    URL (or a path-segment prefix of it, RFC 9728 §3.3 / §7.3).
//! 3. Authorization Server Metadata (RFC 8414, then OpenID Connect discovery), with the
//!    path-variant URLs for issuers that have a path. Its `issuer` must match.
//! 4. No metadata at all (2025-03-26 servers): the metadata at the server's origin, whose
//!    issuer may carry a path on that same origin; else the origin is the authorization server
//!    with the default endpoints `/authorize`, `/token`, `/register`.
//!
//! Trust rules, checked on everything discovery returns: every endpoint that will receive a
//! code, a verifier, a refresh token or a client secret (authorization, token, registration,
//! revocation) is `https`; plain `http` and loopback hosts are accepted only when the MCP server
//! itself is on loopback, and then only on loopback.

use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;
use tracing::debug;

use super::OAuthError;

/// What a `WWW-Authenticate: Bearer …` challenge said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Challenge {
    pub resource_metadata: Option<String>,
    pub scope: Option<String>,
    pub error: Option<String>,
}

impl Challenge {
    /// True for a 403 step-up challenge.
    pub fn insufficient_scope(&self) -> bool {
        self.error.as_deref() == Some("insufficient_scope")
    }
}

/// Parses the `Bearer` challenge's auth-params (quoted or token values).
pub fn parse_challenge(header: &str) -> Challenge {
    let mut c = Challenge::default();
    let rest = header.trim();
    let rest = match rest.get(..6) {
        Some(p) if p.eq_ignore_ascii_case("bearer") => &rest[6..],
        _ => rest,
    };
    let bytes = rest.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && (bytes[i] == b',' || bytes[i].is_ascii_whitespace()) {
            i += 1;
        }
        let start = i;
        while i < bytes.len() && bytes[i] != b'=' && bytes[i] != b',' {
            i += 1;
        }
        let key = rest[start..i].trim().to_ascii_lowercase();
        if i >= bytes.len() || bytes[i] != b'=' {
            continue;
        }
        i += 1;
        let value = if bytes.get(i) == Some(&b'"') {
            i += 1;
            let mut v = String::new();
            while i < bytes.len() && bytes[i] != b'"' {
                if bytes[i] == b'\\' && i + 1 < bytes.len() {
                    i += 1;
                }
                v.push(bytes[i] as char);
                i += 1;
            }
            i += 1;
            v
        } else {
            let s = i;
            while i < bytes.len() && bytes[i] != b',' {
                i += 1;
            }
            rest[s..i].trim().to_string()
        };
        match key.as_str() {
            "resource_metadata" => c.resource_metadata = Some(value),
            "scope" => c.scope = Some(value).filter(|s| !s.is_empty()),
            "error" => c.error = Some(value),
            _ => {}
        }
    }
    c
}

/// RFC 9728 metadata (the fields we use).
#[derive(Debug, Clone, Deserialize)]
pub struct ProtectedResource {
    pub resource: Option<String>,
    #[serde(default)]
    pub authorization_servers: Vec<String>,
    pub scopes_supported: Option<Vec<String>>,
}

/// RFC 8414 / OIDC metadata (the fields we use).
#[derive(Debug, Clone, Deserialize)]
pub struct AuthServer {
    pub issuer: String,
    pub authorization_endpoint: Url,
    pub token_endpoint: Url,
    pub registration_endpoint: Option<Url>,
    pub scopes_supported: Option<Vec<String>>,
    #[serde(default)]
    pub code_challenge_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    pub client_id_metadata_document_supported: bool,
    /// RFC 7009; not used yet, but checked like the others so a later use inherits the rule.
    #[serde(default)]
    pub revocation_endpoint: Option<Url>,
    /// RFC 9207: the server names itself (`iss`) in every authorization response.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}

/// Everything discovery found.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The RFC 8707 resource indicator to send (the canonical server URI).
    pub resource: String,
    pub resource_scopes: Option<Vec<String>>,
    pub server: AuthServer,
}

const TIMEOUT: Duration = Duration::from_secs(10);

/// The canonical resource URI of an MCP endpoint: lowercase scheme and host, no fragment, no
/// query, no trailing slash.
pub fn canonical_resource(url: &Url) -> String {
    let mut u = url.clone();
    u.set_fragment(None);
    u.set_query(None);
    let s = u.as_str().trim_end_matches('/').to_string();
    if s.ends_with(':') {
        format!("{s}/")
    } else {
        s
    }
}

/// Runs discovery for `server`, starting from `challenge` when a 401 gave one.
pub async fn discover(
    http: &reqwest::Client,
    server: &Url,
    challenge: Option<&Challenge>,
) -> Result<Discovered, OAuthError> {
    let resource = canonical_resource(server);
    let prm = protected_resource(http, server, challenge).await?;
    if let Some(prm) = &prm {
        match prm.resource.as_deref() {
            Some(declared) if resource_matches(declared, &resource) => {}
            Some(declared) => {
                return Err(OAuthError::Discovery(format!(
                    "the server's protected resource metadata names resource {declared:?}, which does not match {resource}; refusing to send a token for another resource"
                )))
            }
            None => {
                return Err(OAuthError::Discovery(format!(
                    "the server's protected resource metadata has no `resource` (RFC 9728 requires it), so it cannot be told apart from another server's; refusing it. Report this to the operator of {resource}"
                )))
            }
        }
    }
    let issuer = match prm.as_ref().and_then(|p| p.authorization_servers.first()) {
        Some(i) => Url::parse(i).map_err(|e| OAuthError::BadIssuer {
            issuer: i.clone(),
            source: e,
        })?,
        None => origin(server),
    };
    check_endpoint("authorization server", &issuer, server)?;
    let server_meta = match auth_server_metadata(http, &issuer, prm.is_none()).await? {
        Some(m) => m,
        None if prm.is_none() => legacy_defaults(&issuer),
        None => {
            return Err(OAuthError::Discovery(format!(
                "no OAuth metadata found for the authorization server {issuer} (tried RFC 8414 and OpenID discovery)"
            )))
        }
    };
    for (what, url) in [
        (
            "authorization endpoint",
            Some(&server_meta.authorization_endpoint),
        ),
        ("token endpoint", Some(&server_meta.token_endpoint)),
        (
            "registration endpoint",
            server_meta.registration_endpoint.as_ref(),
        ),
        (
            "revocation endpoint",
            server_meta.revocation_endpoint.as_ref(),
        ),
    ] {
        if let Some(url) = url {
            check_endpoint(what, url, server)?;
        }
    }
    let methods = server_meta
        .code_challenge_methods_supported
        .clone()
        .unwrap_or_default();
    if !methods.iter().any(|m| m == "S256") {
        return Err(OAuthError::Discovery(format!(
            "the authorization server {} does not advertise PKCE S256 (code_challenge_methods_supported: {methods:?}); the MCP spec forbids proceeding",
            server_meta.issuer
        )));
    }
    Ok(Discovered {
        resource,
        resource_scopes: prm.and_then(|p| p.scopes_supported),
        server: server_meta,
    })
}

/// The trust rule for an OAuth endpoint of the MCP server `server` (see the module comment).
fn check_endpoint(what: &str, url: &Url, server: &Url) -> Result<(), OAuthError> {
    use crate::net::is_loopback;
    let shown = crate::net::display_url(url);
    if is_loopback(url) && !is_loopback(server) {
        return Err(OAuthError::Discovery(format!(
            "the {what} {shown} is on this machine, but the MCP server {} is not; a remote server may not send \
             sign-in secrets to a local address, so alibridge refuses it. Report this to the server's operator",
            crate::net::display_url(server)
        )));
    }
    let local_pair = is_loopback(url) && is_loopback(server);
    if url.scheme() != "https" && !(url.scheme() == "http" && local_pair) {
        return Err(OAuthError::Discovery(format!(
            "the {what} {shown} is not https; codes and tokens would cross the network in the clear, so alibridge refuses it \
             (plain http is accepted only when the MCP server and the authorization server are both on this machine)"
        )));
    }
    Ok(())
}

/// A declared resource matches when it equals ours or is a path-segment prefix of it.
fn resource_matches(declared: &str, ours: &str) -> bool {
    let d = declared.trim_end_matches('/');
    let d_url = Url::parse(d).ok();
    let o_url = Url::parse(ours).ok();
    match (d_url, o_url) {
        (Some(d), Some(o)) => {
            d.scheme().eq_ignore_ascii_case(o.scheme())
                && d.host_str().map(str::to_ascii_lowercase)
                    == o.host_str().map(str::to_ascii_lowercase)
                && d.port_or_known_default() == o.port_or_known_default()
                && {
                    let dp = d.path().trim_end_matches('/');
                    let op = o.path().trim_end_matches('/');
                    op == dp || op.starts_with(&format!("{dp}/"))
                }
        }
        _ => false,
    }
}

fn origin(url: &Url) -> Url {
    let mut o = url.clone();
    o.set_path("/");
    o.set_query(None);
    o.set_fragment(None);
    o
}

async fn protected_resource(
    http: &reqwest::Client,
    server: &Url,
    challenge: Option<&Challenge>,
) -> Result<Option<ProtectedResource>, OAuthError> {
    let mut candidates = Vec::new();
    if let Some(u) = challenge
        .and_then(|c| c.resource_metadata.as_deref())
        .and_then(|u| server.join(u).ok())
    {
        candidates.push(u);
    }
    let path = server.path().trim_end_matches('/');
    let mut root = origin(server);
    if !path.is_empty() {
        let mut with_path = root.clone();
        with_path.set_path(&format!("/.well-known/oauth-protected-resource{path}"));
        candidates.push(with_path);
    }
    root.set_path("/.well-known/oauth-protected-resource");
    candidates.push(root);
    for url in candidates {
        if let Some(prm) = get_json::<ProtectedResource>(http, &url).await? {
            debug!(url = %url, "protected resource metadata found");
            return Ok(Some(prm));
        }
    }
    Ok(None)
}

/// RFC 8414 then OIDC, path-aware, in the spec's order; the `issuer` must match. `fallback`:
/// `issuer` is only the server's origin, guessed because there is no resource metadata
/// (2025-03-26): metadata there may name an issuer with a path on the same origin, which is
/// accepted (the MCP conformance scenario `auth/2025-03-26-oauth-metadata-backcompat`); an
/// issuer on another origin is still refused.
async fn auth_server_metadata(
    http: &reqwest::Client,
    issuer: &Url,
    fallback: bool,
) -> Result<Option<AuthServer>, OAuthError> {
    let path = issuer.path().trim_end_matches('/');
    let base = origin(issuer);
    let at = |p: String| {
        let mut u = base.clone();
        u.set_path(&p);
        u
    };
    let candidates = if path.is_empty() {
        vec![
            at("/.well-known/oauth-authorization-server".into()),
            at("/.well-known/openid-configuration".into()),
        ]
    } else {
        vec![
            at(format!("/.well-known/oauth-authorization-server{path}")),
            at(format!("/.well-known/openid-configuration{path}")),
            at(format!("{path}/.well-known/openid-configuration")),
        ]
    };
    let expected = issuer.as_str().trim_end_matches('/');
    for url in candidates {
        if let Some(meta) = get_json::<AuthServer>(http, &url).await? {
            let same_origin_with_path = fallback
                && Url::parse(&meta.issuer).is_ok_and(|i| {
                    i.origin() == issuer.origin() && i.query().is_none() && i.fragment().is_none()
                });
            if meta.issuer.trim_end_matches('/') != expected && !same_origin_with_path {
                return Err(OAuthError::Discovery(format!(
                    "the metadata at {url} names issuer {:?}, not {expected}; refusing a mismatched authorization server",
                    meta.issuer
                )));
            }
            return Ok(Some(meta));
        }
    }
    Ok(None)
}

/// 2025-03-26 servers without metadata: default endpoints at the origin.
fn legacy_defaults(origin: &Url) -> AuthServer {
    let at = |p: &str| origin.join(p).expect("static path");
    AuthServer {
        issuer: origin.as_str().trim_end_matches('/').to_string(),
        authorization_endpoint: at("/authorize"),
        token_endpoint: at("/token"),
        registration_endpoint: Some(at("/register")),
        scopes_supported: None,
        // The 2025-03-26 revision required PKCE S256 of every server.
        code_challenge_methods_supported: Some(vec!["S256".into()]),
        token_endpoint_auth_methods_supported: None,
        client_id_metadata_document_supported: false,
        revocation_endpoint: None,
        authorization_response_iss_parameter_supported: false,
    }
}

/// GETs JSON; `Ok(None)` for 404/405/410 or a non-JSON answer (try the next candidate).
async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &Url,
) -> Result<Option<T>, OAuthError> {
    let resp = match http
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .header("MCP-Protocol-Version", "2025-06-18")
        .timeout(TIMEOUT)
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => {
            return Err(OAuthError::Unreachable {
                what: crate::net::display_url(url),
                source: e.into(),
            })
        }
    };
    if !resp.status().is_success() {
        debug!(url = %url, status = resp.status().as_u16(), "no metadata here");
        return Ok(None);
    }
    let Ok(body) = crate::net::read_small(resp).await else {
        debug!(url = %url, "metadata unreadable or too large; trying the next place");
        return Ok(None);
    };
    Ok(serde_json::from_slice::<T>(&body).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        let c = parse_challenge(
            r#"Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource", scope="files:read files:write", error="insufficient_scope""#,
        );
        assert_eq!(
            c.resource_metadata.as_deref(),
            Some("https://mcp.example.com/.well-known/oauth-protected-resource")
        );
        assert_eq!(c.scope.as_deref(), Some("files:read files:write"));
        assert!(c.insufficient_scope());
        let c = parse_challenge("Bearer realm=x, error=invalid_token");
        assert_eq!(c.error.as_deref(), Some("invalid_token"));
        assert_eq!(parse_challenge("Basic"), Challenge::default());
    }

    #[test]
    fn resources_match_on_segments() {
        assert!(resource_matches(
            "https://h.example/mcp",
            "https://h.example/mcp"
        ));
        assert!(resource_matches(
            "https://H.example/",
            "https://h.example/mcp"
        ));
        assert!(resource_matches(
            "https://h.example/accounts/1",
            "https://h.example/accounts/1/mcp"
        ));
        assert!(!resource_matches(
            "https://h.example/acc",
            "https://h.example/accounts/1/mcp"
        ));
        assert!(!resource_matches(
            "https://evil.example/mcp",
            "https://h.example/mcp"
        ));
    }

    #[test]
    fn endpoints_must_be_https_and_local_only_for_a_local_server() {
        let u = |s: &str| Url::parse(s).unwrap();
        let remote = u("https://mcp.example.com/mcp");
        let local = u("http://127.0.0.1:8080/mcp");
        assert!(check_endpoint(
            "token endpoint",
            &u("https://as.example.com/token"),
            &remote
        )
        .is_ok());
        let e = check_endpoint("token endpoint", &u("http://as.example.com/token"), &remote)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not https") && e.contains("token endpoint"),
            "{e}"
        );
        let e = check_endpoint("token endpoint", &u("https://127.0.0.1/token"), &remote)
            .unwrap_err()
            .to_string();
        assert!(e.contains("on this machine"), "{e}");
        assert!(check_endpoint("token endpoint", &u("https://localhost:9/t"), &remote).is_err());
        assert!(check_endpoint("token endpoint", &u("http://127.0.0.2:9/t"), &local).is_ok());
        assert!(check_endpoint("token endpoint", &u("https://as.example.com/t"), &local).is_ok());
        assert!(check_endpoint("token endpoint", &u("http://as.example.com/t"), &local).is_err());
        assert!(check_endpoint("token endpoint", &u("ftp://127.0.0.1/t"), &local).is_err());
    }

    /// Serves `/.well-known/oauth-authorization-server` with metadata naming `issuer`, and 404
    /// for everything else (no protected resource metadata: a 2025-03-26 server).
    async fn legacy_server(issuer: impl Fn(u16) -> String + Send + 'static) -> Url {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let meta = serde_json::json!({
            "issuer": issuer(port),
            "authorization_endpoint": format!("http://127.0.0.1:{port}/tenant/authorize"),
            "token_endpoint": format!("http://127.0.0.1:{port}/tenant/token"),
            "code_challenge_methods_supported": ["S256"],
        })
        .to_string();
        tokio::spawn(async move {
            while let Ok((mut c, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let n = c.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]);
                let path = req.split_whitespace().nth(1).unwrap_or("");
                let (status, body) = if path == "/.well-known/oauth-authorization-server" {
                    ("200 OK", meta.as_str())
                } else {
                    ("404 Not Found", "{}")
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = c.write_all(resp.as_bytes()).await;
            }
        });
        Url::parse(&format!("http://127.0.0.1:{port}/mcp")).unwrap()
    }

    #[tokio::test]
    async fn backcompat_metadata_may_name_a_path_issuer_on_the_same_origin() {
        let http = crate::net::client_builder(Duration::from_secs(5))
            .no_proxy()
            .build()
            .unwrap();
        let server = legacy_server(|port| format!("http://127.0.0.1:{port}/tenant")).await;
        let found = discover(&http, &server, None).await.unwrap();
        assert_eq!(
            found.server.issuer,
            format!("http://127.0.0.1:{}/tenant", server.port().unwrap())
        );

        let elsewhere = legacy_server(|port| format!("http://127.0.0.2:{port}/tenant")).await;
        let err = discover(&http, &elsewhere, None)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("refusing a mismatched authorization server"),
            "{err}"
        );
    }

    #[test]
    fn canonical_resource_is_normalised() {
        let u = Url::parse("HTTPS://Mcp.Example.com/mcp/?x=1#f").unwrap();
        assert_eq!(canonical_resource(&u), "https://mcp.example.com/mcp");
    }
}
