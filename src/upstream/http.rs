//! The HTTP client shared by both transports: connection pooling, TLS, proxies, static
//! headers, the credential, and the two retries that are always safe.
//!
//! Redirects are followed only within the request's origin ([`crate::origin`]); a
//! cross-origin one fails the request with [`UpstreamError::ForeignOrigin`].
//!
//! Safe retries only: a request is sent again when the connection failed before anything was
//! written, or when the credential refreshed after a 401/403 (the server refused it without
//! running it). Anything else that fails after sending is reported, never repeated.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{RequestBuilder, Response, Url};
use tracing::{debug, warn};

use super::error::{describe, display_url, UpstreamError};
use crate::auth::{Credential, Rejection, Retry};

/// `Accept` for POSTs: the spec requires both JSON and SSE.
pub const ACCEPT_POST: &str = "application/json, text/event-stream";
/// `Accept` for the GET stream.
pub const ACCEPT_SSE: &str = "text/event-stream";

/// Pause before the single reconnect after a connect failure.
const CONNECT_RETRY_DELAY: Duration = Duration::from_millis(250);

/// A configured client plus what every upstream request carries.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    static_headers: Arc<HeaderMap>,
    credential: Arc<dyn Credential>,
    /// `--max-message-size`: the largest JSON body or SSE event read from the server.
    max_message_size: usize,
}

impl HttpClient {
    /// Builds the reqwest client: rustls with the platform's trust store (so corporate CAs
    /// work), HTTP(S)_PROXY / NO_PROXY honoured, gzip, keep-alive, a connect timeout and **no
    /// total timeout**, because an idle SSE stream must be allowed to stay open for hours.
    pub fn new(
        connect_timeout: Duration,
        headers: &[(HeaderName, HeaderValue)],
        credential: Arc<dyn Credential>,
    ) -> Result<Self, reqwest::Error> {
        // Installing twice is harmless (the second call reports that one is already set).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .user_agent(concat!("alibridge/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .tcp_keepalive(Duration::from_secs(30))
            .gzip(true)
            // Headers and bodies carry credentials: never follow a server to another origin.
            .redirect(crate::origin::redirect_policy())
            .build()?;
        let mut static_headers = HeaderMap::new();
        for (n, v) in headers {
            static_headers.append(n.clone(), v.clone());
        }
        Ok(HttpClient {
            client,
            static_headers: Arc::new(static_headers),
            credential,
            max_message_size: super::event_stream::DEFAULT_LIMIT,
        })
    }

    /// Sets `--max-message-size` for everything read through this client.
    pub fn with_max_message_size(mut self, limit: usize) -> Self {
        self.max_message_size = limit;
        self
    }

    /// The largest message read from the server (bodies and SSE events).
    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// The raw client, for building requests.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends the request `build` makes, decorated with static headers and the credential.
    /// `build` is called again for a retry, so it must be cheap (bodies are `Bytes`).
    pub async fn send(
        &self,
        url: &Url,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response, UpstreamError> {
        let mut connect_retried = false;
        let mut auth_retried = false;
        loop {
            let mut headers = (*self.static_headers).clone();
            self.credential.apply(&mut headers).await?;
            let sent_auth = headers.get(reqwest::header::AUTHORIZATION).cloned();
            match build().headers(headers).send().await {
                Ok(resp) if matches!(resp.status().as_u16(), 401 | 403) && !auth_retried => {
                    let rejection = Rejection {
                        authorization: sent_auth,
                        status: resp.status().as_u16(),
                        www_authenticate: resp
                            .headers()
                            .get(WWW_AUTHENTICATE)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string),
                    };
                    if self.credential.rejected(&rejection).await? == Retry::Once {
                        debug!(
                            status = rejection.status,
                            "credential refreshed; retrying once"
                        );
                        auth_retried = true;
                        continue;
                    }
                    return Ok(resp);
                }
                Ok(resp) => {
                    if !matches!(resp.status().as_u16(), 401 | 403) {
                        self.credential.accepted(sent_auth.as_ref());
                    }
                    return Ok(resp);
                }
                Err(e) if e.is_connect() && !connect_retried => {
                    warn!(url = %display_url(url), error = %describe(&e), "connect failed; retrying once");
                    connect_retried = true;
                    tokio::time::sleep(CONNECT_RETRY_DELAY).await;
                }
                Err(e) => {
                    if let Some(refused) = crate::origin::foreign_redirect(&e) {
                        warn!(error = %refused, "refused a cross-origin redirect");
                        return Err(refused.into());
                    }
                    return Err(UpstreamError::Connect {
                        url: display_url(url),
                        detail: describe(&e),
                    });
                }
            }
        }
    }
}

/// True when the response is an SSE stream.
pub fn is_event_stream(resp: &Response) -> bool {
    content_type(resp).starts_with("text/event-stream")
}

/// True when the response is JSON.
pub fn is_json(resp: &Response) -> bool {
    let ct = content_type(resp);
    ct.starts_with("application/json") || (ct.starts_with("application/") && ct.contains("+json"))
}

fn content_type(resp: &Response) -> String {
    resp.headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
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
/// a server cannot make the bridge hold more than `limit`. A body that arrives as one chunk is
/// returned without a copy.
pub async fn read_body(mut resp: Response, limit: usize) -> Result<bytes::Bytes, BodyError> {
    if let Some(len) = resp.content_length() {
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
                let mut m = bytes::BytesMut::with_capacity((2 * total).min(limit));
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

/// Reads at most a few KiB of an error body, as text fit for a one-line message.
pub async fn error_snippet(resp: Response) -> (String, bytes::Bytes) {
    const MAX: usize = 64 * 1024;
    let body = read_limited(resp, MAX).await;
    let text = String::from_utf8_lossy(&body);
    let mut snippet: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    if text.chars().count() > 300 {
        snippet.push('…');
    }
    (snippet.trim().to_string(), body)
}

async fn read_limited(mut resp: Response, max: usize) -> bytes::Bytes {
    let mut out = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        out.extend_from_slice(&chunk);
        if out.len() >= max {
            out.truncate(max);
            break;
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

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
