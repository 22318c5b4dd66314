//! The HTTP client shared by both transports: connection pooling, TLS, proxies, static
//! headers, the credential, and the two retries that are always safe.
//!
//! Redirects are followed only within the request's origin ([`crate::net::origin`]); a
//! cross-origin one fails the request with [`UpstreamError::ForeignOrigin`].
//!
//! Safe retries only: a request is sent again when the connection failed before anything was
//! written, or when the credential refreshed after a 401/403 (the server refused it without
//! running it). Anything else that fails after sending is reported, never repeated.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{RequestBuilder, Response, Url};
use tracing::{debug, warn};

use super::error::UpstreamError;
use crate::auth::{Credential, Rejection, Retry};
use crate::net::{describe, display_url};

/// How long an idle connection stays in the pool (issue 21: a `tools/call` after 120 s of
/// silence must not pay a connect, which the 90 s kept before (reqwest's default) made it pay).
pub const POOL_IDLE: Duration = Duration::from_secs(300);

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
    /// A pool of its own for long-lived streams ([`HttpClient::stream_client`]), built on
    /// first use so start-up does not pay for it.
    streams: Arc<std::sync::OnceLock<reqwest::Client>>,
    /// Set once a response came back over HTTP/2: the server multiplexes, so streams share
    /// the client's connection instead of opening their own (issue 21).
    speaks_h2: Arc<AtomicBool>,
    connect_timeout: Duration,
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
        let client = Self::build(connect_timeout)?;
        let mut static_headers = HeaderMap::new();
        for (n, v) in headers {
            static_headers.append(n.clone(), v.clone());
        }
        Ok(HttpClient {
            client,
            streams: Arc::new(std::sync::OnceLock::new()),
            speaks_h2: Arc::new(AtomicBool::new(false)),
            connect_timeout,
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

    /// Idle connections stay pooled for [`POOL_IDLE`]: a client's request after minutes of
    /// silence then costs one round trip, not a new connect, where the server keeps the
    /// connection open (one that closes it is noticed by the pool and a new one opened; TCP
    /// keep-alive probes every 30 s keep middleboxes from dropping it silently).
    fn build(connect_timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
        crate::net::client_builder(connect_timeout)
            .pool_idle_timeout(POOL_IDLE)
            .tcp_nodelay(true)
            .tcp_keepalive(Duration::from_secs(30))
            .gzip(true)
            .build()
    }

    /// The raw client, for building requests.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Opens a connection to `url`'s origin ahead of the first request, so a token mint in
    /// progress overlaps the connect: a `HEAD` **without** the credential or the static headers
    /// (nothing secret goes out; the server answers 401 or 405, which is ignored), whose
    /// keep-alive connection the next request reuses.
    pub async fn preconnect(&self, url: &Url) {
        match self.client.head(url.clone()).send().await {
            Ok(resp) => {
                self.note_version(&resp);
                tracing::debug!(
                    status = resp.status().as_u16(),
                    "preconnected to the server"
                );
                // Read the (empty) body so the connection goes back to the pool.
                let _ = resp.bytes().await;
            }
            Err(e) => tracing::debug!(error = %describe(&e), "preconnect failed (harmless)"),
        }
    }

    /// The client for long-lived streams (the GET stream). Over HTTP/1.1: a connection pool of
    /// its own, so a stream, which holds its connection for as long as it is open, never takes
    /// the warm connection the client's next request is about to use (that request would then
    /// pay a new connect on the critical path); built on first use, off the start-up path.
    /// Once the server answered over HTTP/2 (ALPN `h2`): the client itself, because a stream
    /// is one more multiplexed stream on the connection everything else uses, and a pool of
    /// its own would only cost a second TLS connection.
    pub fn stream_client(&self) -> &reqwest::Client {
        if self.speaks_h2.load(Ordering::Relaxed) {
            return &self.client;
        }
        self.streams.get_or_init(|| {
            Self::build(self.connect_timeout).unwrap_or_else(|e| {
                tracing::debug!(error = %e, "no separate stream pool; streams share the client's");
                self.client.clone()
            })
        })
    }

    /// Remembers that the server speaks HTTP/2 when `resp` came over it (see
    /// [`HttpClient::stream_client`]). Never unset: a server that negotiated `h2` once keeps
    /// offering it (should one stop, a stream on the shared pool costs the next request a connect,
    /// nothing worse).
    fn note_version(&self, resp: &Response) {
        if resp.version() == reqwest::Version::HTTP_2 {
            self.speaks_h2.store(true, Ordering::Relaxed);
        }
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
        let mut resend = 0;
        loop {
            let mut headers = (*self.static_headers).clone();
            self.credential.apply(&mut headers).await?;
            let sent_auth = headers.get(reqwest::header::AUTHORIZATION).cloned();
            let sent = traced_send(build().headers(headers), url, resend).await;
            resend += 1;
            if let Ok(resp) = &sent {
                self.note_version(resp);
            }
            match sent {
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
                    if let Some(refused) = crate::net::origin::foreign_redirect(&e) {
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

/// Sends one attempt inside its own telemetry span (method, host, port, status; never the
/// path, query or headers).
async fn traced_send(
    request: RequestBuilder,
    url: &Url,
    resend: u32,
) -> Result<Response, reqwest::Error> {
    let (client, request) = request.build_split();
    let request = request?;
    let span = crate::telemetry::HttpAttempt::start(request.method().as_str(), url, resend);
    let sent = client.execute(request).await;
    span.end(match &sent {
        Ok(r) => Ok(r.status().as_u16()),
        Err(e) if e.is_connect() => Err("connect"),
        Err(e) if e.is_timeout() => Err("timeout"),
        Err(_) => Err("_OTHER"),
    });
    sent
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

    fn answered_over(version: reqwest::Version) -> Response {
        Response::from(
            http::Response::builder()
                .version(version)
                .body(Vec::<u8>::new())
                .unwrap(),
        )
    }

    /// Streams get a pool of their own until the server is seen answering over HTTP/2, and
    /// share the client's from then on; an HTTP/1.1 answer changes nothing.
    #[test]
    fn streams_share_the_clients_pool_once_the_server_spoke_http2() {
        let http = HttpClient::new(
            Duration::from_secs(1),
            &[],
            Arc::new(crate::auth::none::NoCredential),
        )
        .unwrap();
        // A clone made before (each transport task holds one) learns it too.
        let earlier = http.clone();
        http.note_version(&answered_over(reqwest::Version::HTTP_11));
        assert!(!std::ptr::eq(http.stream_client(), http.client()));
        http.note_version(&answered_over(reqwest::Version::HTTP_2));
        assert!(std::ptr::eq(http.stream_client(), http.client()));
        assert!(std::ptr::eq(earlier.stream_client(), earlier.client()));
    }
}
