//! Forwarding one allowed request upstream and streaming the answer back.
//!
//! - The URL is the upstream's scheme and host plus the client's path and query, unchanged.
//! - Headers are copied except `Host`, `Authorization` (the credential layer sets its own, and
//!   with `--auth none` none is sent), hop-by-hop headers, `Expect`, `Origin`/`Referer` (they
//!   name the proxy, not the client's site), `Accept-Encoding` (the HTTP client negotiates
//!   compression itself) and `User-Agent` (alibridge's is sent).
//!   `Mcp-Session-Id`, `MCP-Protocol-Version`, `Last-Event-ID`, `Accept`, … pass unchanged.
//! - The body is read once into [`bytes::Bytes`] (at most `--max-body-size`, default 32 MiB)
//!   so the single retry after a credential refresh can send it again. A larger body is a 413
//!   naming the limit and the flag: at once when `Content-Length` says so (nothing read), else
//!   once the limit is passed (the rest is read and dropped, up to `DRAIN_AFTER_LIMIT`, so
//!   the client sees the answer rather than a reset; never buffered); sending goes through
//!   [`crate::upstream::http::HttpClient::send`], which applies the credential and does that
//!   retry (a second 401 goes back to the client as the upstream sent it).
//! - The answer's status and headers are copied (minus hop-by-hop ones) and its body is
//!   streamed frame by frame as it arrives: an SSE stream is never buffered, and it gets
//!   `Cache-Control: no-cache` and `X-Accel-Buffering: no` so intermediaries do not buffer it
//!   either. A stream the upstream breaks is broken towards the client too.
//! - Redirects are followed only within the upstream's origin; a cross-origin redirect is
//!   never followed with the proxy's credential (nor handed to the client to follow): it is a
//!   502 `upstream_redirect` naming both origins.
//! - When the tool policy asks the client's person first (a write under `--confirm-writes`, a
//!   listing the pins hold tools back from), the answer is an SSE stream of the proxy's own
//!   (`forward/asking.rs`).
//! - Failures the proxy itself answers carry a JSON body saying what failed and why: 502 when
//!   the upstream cannot be reached, redirects elsewhere, or the credential cannot be obtained,
//!   413 for a body over the limit.

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use reqwest::Url;
use serde_json::json;
use tracing::{debug, warn};

use super::access;
use super::session_id::{session_id, session_id_refusal};
use super::sse_rewrite::{SseRewriter, MAX_EVENT};
use super::tool_policy::{Caller, Inbound, Key, ProxyPolicy, Tracked};
use super::{json_response, Body, BoxError, Proxy};
use crate::net::{display_url, read_body as read_answer};
use crate::upstream::error::UpstreamError;
use crate::upstream::http::{is_event_stream, HttpClient};

mod asking;

/// Body bytes read and dropped past `--max-body-size` before answering 413.
const DRAIN_AFTER_LIMIT: usize = 1 << 20;

/// Why a request body was not taken.
enum BodyError {
    TooLarge,
    Read(String),
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Client headers the proxy replaces or drops besides the hop-by-hop ones.
const NOT_FORWARDED: &[&str] = &[
    "host",
    "authorization",
    "content-length",
    "expect",
    "accept-encoding",
    "origin",
    "referer",
    "user-agent",
];

/// Forwards `req` (already past the guard and the access rules); `path` is its normalized
/// path (the server, for the tool policy).
pub async fn forward(proxy: &Proxy, req: Request<Incoming>, path: &str) -> Response<Body> {
    let (parts, body) = req.into_parts();
    // With a policy, sessions are keyed on the session id: one the proxy would not store is
    // refused before anything is read or kept.
    let session = match &proxy.policy {
        Some(_) => match session_id(&parts.headers) {
            Ok(s) => s,
            Err(e) => {
                warn!(path, reason = %e, "refused a request: unusable Mcp-Session-Id");
                return rejected(StatusCode::BAD_REQUEST, session_id_refusal(&e));
            }
        },
        None => String::new(),
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > proxy.max_body as u64) {
        return too_large(proxy.max_body);
    }
    let body = match read_body(body, proxy.max_body).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => return too_large(proxy.max_body),
        Err(BodyError::Read(e)) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                json!({"error": "bad_request", "message": format!("could not read the request body: {e}")}),
            );
        }
    };
    let url = upstream_url(&proxy.upstream, &parts.uri);
    let headers = request_headers(&parts.headers);
    let method = parts.method.clone();
    let key: Key = (path.to_string(), session);
    // The SERVER span of the request, ended when its answer has been sent (`spanned`).
    let client_session = parts
        .headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok());
    let op = crate::telemetry::Operation::received(&body, client_session);
    let mut body = op.inject(body);
    let (mut watch, mut initialize, mut tracked, mut ask) = (false, None, None, None);
    if let Some(pp) = &proxy.policy {
        // Every method that carries a body: a server may act on a PUT or PATCH as on a POST.
        if !body.is_empty() {
            let accepts_sse = header_text(&parts.headers, "accept")
                .is_some_and(|a| a.contains("text/event-stream"));
            let caller = Caller {
                key: key.clone(),
                // The guard let the request through, so with a token set it presented one.
                token: proxy
                    .token
                    .as_ref()
                    .and_then(|_| access::presented(&parts.headers).ok()),
            };
            match op.in_scope(|| pp.inbound(&caller, body, accepts_sse)) {
                Inbound::Forward {
                    body: b,
                    watch: w,
                    initialize: i,
                    tracked: t,
                    ask: a,
                } => (body, watch, initialize, tracked, ask) = (b, w, i, t, a),
                Inbound::Answer(answer) => return rpc_answer(answer),
                Inbound::Consumed => return accepted(),
                Inbound::Reject { status, body } => return rejected(status, body),
                Inbound::Confirm(c) => {
                    let to = Outgoing {
                        http: proxy.http.clone(),
                        method,
                        url,
                        headers,
                    };
                    // The span lasts while the person decides and the answer streams.
                    return spanned(asking::confirm_stream(pp.clone(), to, *c), op);
                }
            }
        }
    }
    let with_body = !body.is_empty()
        || !matches!(
            method,
            Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS
        );
    let client = proxy.http.client();
    let sent = proxy.http.send(&url, || {
        let rb = client
            .request(method.clone(), url.clone())
            .headers(headers.clone());
        if with_body {
            rb.body(body.clone())
        } else {
            rb
        }
    });
    let sent = op.scope(sent).await;
    let answer = async {
        match sent {
            Ok(resp) => {
                proxy.stats.forwarded.inc();
                debug!(method = %method, path = parts.uri.path(), status = resp.status().as_u16(), "forwarded");
                let Some(pp) = &proxy.policy else {
                    return response(resp);
                };
                if let Some(elicits) = initialize {
                    match session_id(resp.headers()) {
                        Ok(sid) => pp.initialized(&(key.0.clone(), sid), elicits),
                        // Its clients will be refused too; nothing is stored.
                        Err(e) => {
                            warn!(path = %key.0, reason = %e, "the server named a session id the proxy does not key on")
                        }
                    }
                }
                if method == Method::DELETE {
                    pp.end_session(&key);
                }
                if let Some(asker) = ask {
                    return asking::pin_listing(resp, pp.clone(), asker).await;
                }
                watched_response(resp, pp.clone(), key, watch, tracked).await
            }
            Err(e) => {
                proxy.stats.upstream_errors.inc();
                op.fail(e.kind());
                let why = crate::logging::error_line(&e);
                warn!(method = %method, path = parts.uri.path(), error = %why, "upstream request failed");
                if let Some(pp) = &proxy.policy {
                    pp.call_failed(&key, tracked, why);
                }
                error_response(&e, &url)
            }
        }
    }
    .await;
    spanned(answer, op)
}

/// The response with the request's span ending when its body ends (or is dropped), so that
/// an SSE answer's span covers the whole stream, not only its head.
fn spanned(resp: Response<Body>, op: crate::telemetry::Operation) -> Response<Body> {
    if !op.is_recording() {
        return resp;
    }
    resp.map(|inner| {
        Spanned {
            inner,
            op: Some(op),
        }
        .boxed_unsync()
    })
}

struct Spanned {
    inner: Body,
    op: Option<crate::telemetry::Operation>,
}

impl hyper::body::Body for Spanned {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(None | Some(Err(_))) = &polled {
            self.op.take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

fn header_text(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// A JSON-RPC message the proxy answers itself (HTTP 200, as a server's answer would be).
fn rpc_answer(body: Bytes) -> Response<Body> {
    let mut r = Response::new(
        http_body_util::Full::new(body)
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// The proxy's refusal of the request itself: `status` with a JSON-RPC error as the body.
fn rejected(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut r = rpc_answer(body);
    *r.status_mut() = status;
    r
}

/// 202 for the client's reply to the proxy's own request.
fn accepted() -> Response<Body> {
    let mut r = Response::new(Body::default());
    *r.status_mut() = StatusCode::ACCEPTED;
    r
}

/// The upstream's answer with the tool policy applied: SSE event by event, a JSON answer to a
/// watched request as a whole; anything else untouched.
async fn watched_response(
    resp: reqwest::Response,
    pp: std::sync::Arc<ProxyPolicy>,
    key: Key,
    watch: bool,
    mut tracked: Tracked,
) -> Response<Body> {
    if is_event_stream(&resp) {
        let mut out = response_head(&resp);
        *out.body_mut() = StreamBody::new(rewritten(resp, pp, key, tracked)).boxed_unsync();
        return out;
    }
    if !watch || !crate::upstream::http::is_json(&resp) {
        return response(resp);
    }
    let mut out = response_head(&resp);
    out.headers_mut().remove(header::CONTENT_LENGTH);
    let bytes = match read_answer(resp, MAX_EVENT).await {
        Ok(b) => b,
        Err(e) => {
            warn!(error = ?e, "could not read the upstream's answer for the tool policy");
            pp.call_failed(&key, tracked, "the answer could not be read".into());
            return unreadable_answer();
        }
    };
    let bytes = pp.outbound(&key, &bytes, &mut tracked).unwrap_or(bytes);
    pp.call_failed(&key, tracked, UNANSWERED.into());
    *out.body_mut() = http_body_util::Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync();
    out
}

/// 502: the upstream's answer could not be read for the tool policy (too large or cut).
fn unreadable_answer() -> Response<Body> {
    json_response(
        StatusCode::BAD_GATEWAY,
        json!({"error": "upstream_failed", "message": "alibridge proxy could not read the upstream's answer (too large or cut)"}),
    )
}

/// Audit note for a call whose answer never came through its exchange.
const UNANSWERED: &str = "the answer stream ended before the answer";

/// An SSE answer being passed through the policy.
struct Rewriting {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<Bytes>> + Send>>,
    rw: SseRewriter,
    pp: std::sync::Arc<ProxyPolicy>,
    key: Key,
    tracked: Tracked,
    done: bool,
}

impl Rewriting {
    /// The stream is over: a call still waiting for its answer is audited as failed.
    fn end(&mut self) {
        self.done = true;
        self.pp
            .call_failed(&self.key, self.tracked.take(), UNANSWERED.into());
    }
}

/// The frames of an SSE answer, each event passed through the policy.
fn rewritten(
    resp: reqwest::Response,
    pp: std::sync::Arc<ProxyPolicy>,
    key: Key,
    tracked: Tracked,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, BoxError>> + Send + 'static {
    let state = Rewriting {
        body: Box::pin(resp.bytes_stream()),
        rw: SseRewriter::default(),
        pp,
        key,
        tracked,
        done: false,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            match st.body.next().await {
                Some(Ok(chunk)) => {
                    let Rewriting {
                        rw,
                        pp,
                        key,
                        tracked,
                        ..
                    } = &mut st;
                    let out = rw.push(&chunk, &mut |d: &[u8]| pp.outbound(key, d, tracked));
                    match out {
                        Ok(b) if b.is_empty() => continue,
                        Ok(b) => return Some((Ok(Frame::data(b)), st)),
                        Err(e) => {
                            warn!("an SSE event over 64 MiB cannot be checked by the tool policy; ending the stream");
                            st.end();
                            let e: BoxError = format!("{e:?}").into();
                            return Some((Err(e), st));
                        }
                    }
                }
                Some(Err(e)) => {
                    st.end();
                    return Some((Err(Box::new(e) as BoxError), st));
                }
                None => {
                    let rest = st.rw.finish();
                    st.end();
                    return (!rest.is_empty()).then(|| (Ok(Frame::data(rest)), st));
                }
            }
        }
    })
}

/// Where a confirmed call goes: the client's method, URL and headers.
struct Outgoing {
    http: HttpClient,
    method: Method,
    url: Url,
    headers: HeaderMap,
}

/// Reads the body, keeping at most `max` bytes; past that, reads on (dropping) up to
/// [`DRAIN_AFTER_LIMIT`] more so the connection stays clean for the 413.
async fn read_body(mut body: Incoming, max: usize) -> Result<Bytes, BodyError> {
    let mut buf = BytesMut::new();
    let mut over = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if over == 0 && buf.len().saturating_add(data.len()) <= max {
            buf.extend_from_slice(&data);
            continue;
        }
        if over == 0 {
            buf = BytesMut::new();
        }
        over = over.saturating_add(data.len());
        if over > DRAIN_AFTER_LIMIT {
            break;
        }
    }
    if over > 0 {
        Err(BodyError::TooLarge)
    } else {
        Ok(buf.freeze())
    }
}

/// 413, naming the limit and how to raise it; the connection is closed after it.
fn too_large(max: usize) -> Response<Body> {
    let mut r = json_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        json!({
            "error": "body_too_large",
            "message": format!(
                "the request body is larger than this proxy accepts ({}); raise --max-body-size \
                 (ALIBRIDGE_PROXY_MAX_BODY_SIZE) if such requests are expected",
                crate::jsonrpc::human_size(max as u64)
            ),
        }),
    );
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// The upstream's scheme and authority with the client's path and query.
pub fn upstream_url(upstream: &Url, uri: &hyper::Uri) -> Url {
    let mut url = upstream.clone();
    url.set_path(uri.path());
    url.set_query(uri.query());
    url
}

/// The client's headers minus those the proxy must not pass on.
pub fn request_headers(client: &HeaderMap) -> HeaderMap {
    let named_by_connection = connection_tokens(client);
    let mut out = HeaderMap::with_capacity(client.len());
    for (name, value) in client {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n)
            || NOT_FORWARDED.contains(&n)
            || named_by_connection.iter().any(|t| t == n)
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// Header names listed in `Connection` (they are hop-by-hop too).
fn connection_tokens(h: &HeaderMap) -> Vec<String> {
    h.get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// The upstream's answer, streamed.
fn response(resp: reqwest::Response) -> Response<Body> {
    let mut out = response_head(&resp);
    let frames = resp
        .bytes_stream()
        .map(|chunk| chunk.map(Frame::data).map_err(|e| Box::new(e) as BoxError));
    *out.body_mut() = StreamBody::new(frames).boxed_unsync();
    out
}

/// The upstream answer's status and headers (hop-by-hop ones dropped; SSE marked unbuffered).
fn response_head(resp: &reqwest::Response) -> Response<Body> {
    let sse = is_event_stream(resp);
    let named_by_connection = connection_tokens(resp.headers());
    let mut out = Response::new(Body::default());
    *out.status_mut() = resp.status();
    let headers = out.headers_mut();
    for (name, value) in resp.headers() {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n)
            || named_by_connection.iter().any(|t| t == n)
            || (sse && name == header::CONTENT_LENGTH)
        {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    if sse {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(
            HeaderName::from_static("x-accel-buffering"),
            HeaderValue::from_static("no"),
        );
    }
    out
}

/// What the client gets when the request could not be forwarded.
fn error_response(e: &UpstreamError, url: &Url) -> Response<Body> {
    let upstream = display_url(url);
    let body = match e {
        UpstreamError::Auth(a) => json!({
            "error": "credential_failed",
            "upstream": upstream,
            "message": format!(
                "alibridge proxy could not get credentials for the upstream: {}",
                crate::logging::error_line(a)
            ),
        }),
        UpstreamError::ForeignOrigin(f) => json!({
            "error": "upstream_redirect",
            "upstream": upstream,
            "message": format!("alibridge proxy: {f}"),
        }),
        UpstreamError::Connect { .. } => json!({
            "error": "upstream_unreachable",
            "upstream": upstream,
            "message": format!("alibridge proxy: {e}"),
        }),
        other => json!({
            "error": "upstream_failed",
            "upstream": upstream,
            "message": format!("alibridge proxy: {other}"),
        }),
    };
    json_response(StatusCode::BAD_GATEWAY, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_path_and_query_and_drops_what_the_proxy_owns() {
        let up = Url::parse("https://openapi-mcp.cn-hangzhou.aliyuncs.com/").unwrap();
        let uri: hyper::Uri = "/accounts/1/custom/x/id/y/mcp?a=1&b=%20".parse().unwrap();
        assert_eq!(
            upstream_url(&up, &uri).as_str(),
            "https://openapi-mcp.cn-hangzhou.aliyuncs.com/accounts/1/custom/x/id/y/mcp?a=1&b=%20"
        );
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("host", "127.0.0.1:8088"),
            ("authorization", "Bearer client-token"),
            ("connection", "keep-alive, x-private"),
            ("x-private", "1"),
            ("mcp-session-id", "s1"),
            ("mcp-protocol-version", "2025-06-18"),
            ("last-event-id", "7"),
            ("accept", "application/json, text/event-stream"),
            ("content-type", "application/json"),
            ("transfer-encoding", "chunked"),
            ("origin", "http://127.0.0.1:8088"),
        ] {
            h.append(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        let out = request_headers(&h);
        let names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "mcp-session-id",
                "mcp-protocol-version",
                "last-event-id",
                "accept",
                "content-type"
            ]
        );
    }
}
