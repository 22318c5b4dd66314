//! The network leaf every other layer builds on: URL rules ([`is_loopback`], [`parse_endpoint`],
//! [`display_url`]), how a failed request is described to a person ([`describe`]), bounded body
//! reading ([`read_body`], [`read_small`]), the one HTTP client builder ([`client_builder`],
//! which installs the TLS provider once for the whole process), and the same-origin rule for
//! credentials ([`origin`]).
//!
//! Nothing here knows about MCP, credentials or the command line.

pub mod origin;

use std::sync::Once;
use std::time::Duration;

use reqwest::{Response, Url};

/// Builds every reqwest client of alibridge: rustls with the platform's trust store (so
/// corporate CAs work), HTTP(S)_PROXY / NO_PROXY honoured, the alibridge user agent, the
/// same-origin redirect policy ([`origin::redirect_policy`]) and a connect timeout. Callers add
/// what is specific to them (pooling, gzip, no redirects at all).
pub fn client_builder(connect_timeout: Duration) -> reqwest::ClientBuilder {
    install_tls_provider();
    reqwest::Client::builder()
        .user_agent(concat!("alibridge/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(connect_timeout)
        .redirect(origin::redirect_policy())
}

/// rustls needs one process-wide crypto provider; installing it here, once, means no client
/// can be built before it (which would panic) whatever order the commands run in.
pub fn install_tls_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// True for `localhost`, `*.localhost`, 127.0.0.0/8 and ::1.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Why an endpoint URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("invalid URL {url:?}: {reason}; give the full endpoint, e.g. https://host/mcp")]
    Invalid { url: String, reason: String },
    #[error(
        "refusing plain http to {host}: traffic and credentials would travel unencrypted; \
         use https, or pass --allow-http if this network is trusted"
    )]
    PlainHttp { host: String },
}

/// Parses an endpoint and applies the plain-http rule: loopback is fine (local servers and
/// tunnels), anything else needs `allow_http`.
pub fn parse_endpoint(raw: &str, allow_http: bool) -> Result<Url, EndpointError> {
    let invalid = |reason: String| EndpointError::Invalid {
        url: raw.to_string(),
        reason,
    };
    let url = Url::parse(raw.trim()).map_err(|e| invalid(e.to_string()))?;
    match url.scheme() {
        "https" => {}
        "http" => {
            if !allow_http && !is_loopback(&url) {
                let host = url.host_str().unwrap_or_default().to_string();
                return Err(EndpointError::PlainHttp { host });
            }
        }
        other => return Err(invalid(format!("scheme {other:?} is not http or https"))),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it has no host".into()));
    }
    Ok(url)
}

/// A URL safe to show: scheme, host, port and path, never the query or user info.
pub fn display_url(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// Describes a reqwest error without its URL (which may carry a query string) and with the
/// underlying cause, which is what tells a person what went wrong ("connection refused").
pub fn describe(err: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    if err.is_timeout() {
        parts.push("timed out".to_string());
    }
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    if parts.is_empty() {
        parts.push(
            if err.is_connect() {
                "connection failed"
            } else if err.is_body() || err.is_decode() {
                "error reading the response body"
            } else {
                "error sending the request"
            }
            .to_string(),
        );
    }
    parts.join(": ")
}

/// Why a response body could not be read whole.
#[derive(Debug)]
pub enum BodyError {
    /// Over the limit; `size` is the announced `Content-Length`, when that alone refused it.
    TooLarge {
        size: Option<u64>,
    },
    Transport(reqwest::Error),
}

/// Reads a whole body of at most `limit` bytes (decompressed). A larger one is refused by its
/// `Content-Length` before any byte is read, or as soon as the bytes read pass the limit, so
/// a peer cannot make alibridge hold more than `limit`. A body that arrives as one chunk is
/// returned without a copy. A longer one is gathered in one buffer of the announced length:
/// grown by doubling instead, each step would leave the old block in the heap, and a 16 MiB
/// answer cost twice its size in resident memory.
pub async fn read_body(mut resp: Response, limit: usize) -> Result<bytes::Bytes, BodyError> {
    let announced = resp.content_length();
    if let Some(len) = announced {
        if len > limit as u64 {
            return Err(BodyError::TooLarge { size: Some(len) });
        }
    }
    let mut first: Option<bytes::Bytes> = None;
    let mut more: Option<bytes::BytesMut> = None;
    let mut total = 0usize;
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        total = total.saturating_add(chunk.len());
        if total > limit {
            return Err(BodyError::TooLarge { size: None });
        }
        match (&mut first, &mut more) {
            (None, _) => first = Some(chunk),
            (Some(f), None) => {
                let cap = match announced {
                    Some(len) => (len as usize).max(total), // at most `limit`, checked above
                    None => (2 * total).min(limit),
                };
                let mut m = bytes::BytesMut::with_capacity(cap);
                m.extend_from_slice(f);
                m.extend_from_slice(&chunk);
                more = Some(m);
            }
            (Some(_), Some(m)) => m.extend_from_slice(&chunk),
        }
    }
    Ok(match (first, more) {
        (_, Some(m)) => m.freeze(),
        (Some(f), None) => f,
        (None, None) => bytes::Bytes::new(),
    })
}

/// The most a credential or authorization service may answer with: they send a few KiB.
pub const MAX_SERVICE_ANSWER: usize = 1 << 20;

/// [`read_small`], parsed as JSON.
pub async fn read_small_json(resp: Response) -> Result<serde_json::Value, String> {
    let bytes = read_small(resp).await?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

/// Reads an answer of a credential or authorization service (at most
/// [`MAX_SERVICE_ANSWER`]); the error says why it could not.
pub async fn read_small(resp: Response) -> Result<bytes::Bytes, String> {
    read_body(resp, MAX_SERVICE_ANSWER)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge { .. } => format!(
                "the answer is larger than {MAX_SERVICE_ANSWER} bytes, which no credential or \
                 authorization service sends"
            ),
            BodyError::Transport(e) => describe(&e),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    #[test]
    fn display_url_hides_query_and_userinfo() {
        let u = Url::parse("https://user:pw@h:8443/mcp?token=abc#x").unwrap();
        assert_eq!(display_url(&u), "https://h:8443/mcp");
    }

    #[test]
    fn endpoints_need_https_unless_loopback_or_allowed() {
        assert!(parse_endpoint("https://h.example/mcp", false).is_ok());
        assert!(parse_endpoint("http://127.0.0.1:9/mcp", false).is_ok());
        assert!(parse_endpoint("http://localhost:9/mcp", false).is_ok());
        assert_eq!(
            parse_endpoint("http://h.example/mcp", false),
            Err(EndpointError::PlainHttp {
                host: "h.example".into()
            })
        );
        assert!(parse_endpoint("http://h.example/mcp", true).is_ok());
        assert!(matches!(
            parse_endpoint("ftp://h/x", true),
            Err(EndpointError::Invalid { .. })
        ));
        assert!(matches!(
            parse_endpoint("not a url", true),
            Err(EndpointError::Invalid { .. })
        ));
    }

    #[test]
    fn a_client_can_be_built_before_anything_else_ran() {
        assert!(client_builder(Duration::from_secs(1)).build().is_ok());
    }

    /// A response whose body arrives in `chunks`, with no Content-Length (as when chunked).
    fn chunked(chunks: Vec<Vec<u8>>) -> Response {
        let body = reqwest::Body::wrap_stream(stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::from(c))),
        ));
        Response::from(http::Response::new(body))
    }

    #[tokio::test]
    async fn bodies_are_read_whole_up_to_the_limit_and_refused_past_it() {
        let parts = vec![vec![b'a'; 300], vec![b'b'; 300], vec![b'c'; 400]];
        let whole = read_body(chunked(parts.clone()), 1000).await.unwrap();
        assert_eq!(whole, parts.concat());
        assert!(matches!(
            read_body(chunked(parts), 999).await,
            Err(BodyError::TooLarge { size: None })
        ));
        // Announced too large: refused before reading.
        let resp = Response::from(
            http::Response::builder()
                .header("content-length", "5000")
                .body(vec![b'x'; 5000])
                .unwrap(),
        );
        assert!(matches!(
            read_body(resp, 4096).await,
            Err(BodyError::TooLarge { size: Some(5000) })
        ));
        assert!(read_body(chunked(vec![]), 10).await.unwrap().is_empty());
    }
}
