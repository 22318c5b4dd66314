//! The answers the proxy writes as SSE streams of its own because it asks the client's person
//! something first: a write under `--confirm-writes` ([`confirm_stream`]), and a `tools/list`
//! whose answer the pins hold back tools from ([`pin_listing`]).

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::Response;
use tokio::sync::mpsc;
use tracing::warn;

use super::super::sse_rewrite::SseRewriter;
use super::super::tool_policy::{Asker, Confirmation, Listing, ProxyPolicy};
use super::super::{Body, BoxError};
use super::{
    read_answer, response, response_head, rewritten, unreadable_answer, Outgoing, MAX_EVENT,
    UNANSWERED,
};
use crate::net::display_url;
use crate::upstream::error::UpstreamError;
use crate::upstream::http::{is_event_stream, is_json};

type Frames = mpsc::Sender<Result<Frame<Bytes>, BoxError>>;

/// `message` as one SSE event of its own.
fn event(message: &Bytes) -> Result<Frame<Bytes>, BoxError> {
    let mut e = b"data: ".to_vec();
    e.extend_from_slice(&crate::jsonrpc::single_line(message.clone()));
    e.extend_from_slice(b"\n\n");
    Ok(Frame::data(Bytes::from(e)))
}

/// `head` (status and headers) turned into an SSE answer whose frames are what is sent on the
/// returned channel; the channel closes when the client goes away.
fn sse_channel(mut head: Response<Body>) -> (Frames, Response<Body>) {
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(16);
    let frames =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) });
    *head.body_mut() = StreamBody::new(frames).boxed_unsync();
    let h = head.headers_mut();
    h.remove(header::CONTENT_LENGTH);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    (tx, head)
}

/// `--confirm-writes` through the proxy: answers the `tools/call` POST with an SSE stream that
/// first carries the proxy's `elicitation/create`, then (once the client's reply, POSTed
/// separately, says yes) the upstream's answer to the call, or the refusal.
pub(super) fn confirm_stream(
    pp: std::sync::Arc<ProxyPolicy>,
    to: Outgoing,
    c: Confirmation,
) -> Response<Body> {
    let Outgoing {
        http,
        method,
        url,
        headers,
    } = to;
    let (tx, r) = sse_channel(Response::new(Body::default()));
    let (key, id) = (c.key.clone(), c.id.clone());
    let mut c = c;
    tokio::spawn(async move {
        if let Some((qid, q)) = c.quote.take() {
            let answer = tokio::time::timeout(
                crate::policy::quote::QUOTE_TIMEOUT,
                super::super::quote::ask(&http, &url, &headers, &qid, q),
            )
            .await
            .ok()
            .flatten();
            c.priced(&crate::policy::quote::shown(answer.as_deref()));
        }
        if tx.send(event(&c.request)).await.is_err() {
            return;
        }
        // The answer stream's receiver is dropped when the client disconnects: that ends the
        // confirmation at once instead of holding it (and the body) until the timeout.
        let (body, mut tracked) = match pp.await_confirmation(c, tx.closed()).await {
            Ok(confirmed) => confirmed,
            Err(Some(refusal)) => {
                let _ = tx.send(event(&refusal)).await;
                return;
            }
            Err(None) => return,
        };
        if tx.is_closed() {
            return; // the client went away: nobody would see the answer
        }
        let client = http.client().clone();
        let sent = http
            .send(&url, || {
                client
                    .request(method.clone(), url.clone())
                    .headers(headers.clone())
                    .body(body.clone())
            })
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                pp.call_failed(&key, tracked, crate::logging::error_line(&e));
                let _ = tx.send(event(&e.to_response(&id))).await;
                return;
            }
        };
        if is_event_stream(&resp) {
            let mut frames = std::pin::pin!(rewritten(resp, pp, key, tracked));
            while let Some(f) = frames.next().await {
                if tx.send(f).await.is_err() {
                    return;
                }
            }
            return;
        }
        let answer = match read_answer(resp, MAX_EVENT).await {
            Ok(b) => {
                let answer = pp.outbound(&key, &b, &mut tracked).unwrap_or(b);
                pp.call_failed(&key, tracked, UNANSWERED.into());
                answer
            }
            Err(e) => {
                let err = UpstreamError::Malformed {
                    url: display_url(&url),
                    detail: format!("the answer could not be read: {e:?}"),
                };
                pp.call_failed(&key, tracked, err.to_string());
                err.to_response(&id)
            }
        };
        let _ = tx.send(event(&answer)).await;
    });
    r
}

/// A `tools/list` answer on an exchange whose client can be asked ([`Asker`]). When the pins
/// hold back tools of it, the client gets an SSE stream: what the server sent before the
/// listing, the question (an event of its own), and, once answered, the listing judged again
/// (in the event that carried it, `id:` kept). Otherwise the answer goes as it would have.
pub(super) async fn pin_listing(
    resp: reqwest::Response,
    pp: std::sync::Arc<ProxyPolicy>,
    asker: Asker,
) -> Response<Body> {
    if is_event_stream(&resp) {
        let (tx, r) = sse_channel(response_head(&resp));
        tokio::spawn(relay_events(resp, pp, asker, tx));
        return r;
    }
    if !is_json(&resp) {
        return response(resp);
    }
    let mut head = response_head(&resp);
    let bytes = match read_answer(resp, MAX_EVENT).await {
        Ok(b) => b,
        Err(e) => {
            warn!(error = ?e, "could not read the upstream's answer for the tool policy");
            return unreadable_answer();
        }
    };
    let q = match pp.outbound_asking(&asker, &bytes) {
        Listing::Ready(out) => {
            head.headers_mut().remove(header::CONTENT_LENGTH);
            *head.body_mut() = http_body_util::Full::new(out.unwrap_or(bytes))
                .map_err(|never| match never {})
                .boxed_unsync();
            return head;
        }
        Listing::Ask(q) => q,
    };
    let (tx, r) = sse_channel(head);
    tokio::spawn(async move {
        if tx.send(event(&q.request)).await.is_err() {
            return;
        }
        if let Some(listing) = pp.await_pins(*q, tx.closed()).await {
            let _ = tx.send(event(&listing)).await;
        }
    });
    r
}

/// The server's SSE answer to a listing that can ask, event by event: the listing's event
/// waits for the person's answer (the question goes out first as an event of its own).
async fn relay_events(
    resp: reqwest::Response,
    pp: std::sync::Arc<ProxyPolicy>,
    asker: Asker,
    tx: Frames,
) {
    let mut body = resp.bytes_stream();
    let mut rw = SseRewriter::default();
    let send = |out: &mut BytesMut| {
        let b = out.split().freeze();
        let tx = tx.clone();
        async move { b.is_empty() || tx.send(Ok(Frame::data(b))).await.is_ok() }
    };
    while let Some(chunk) = body.next().await {
        let events = match chunk.map_err(|e| Box::new(e) as BoxError).and_then(|c| {
            rw.events(&c).map_err(|_| {
                warn!("an SSE event over 64 MiB cannot be checked by the tool policy; ending the stream");
                BoxError::from("an SSE event over 64 MiB")
            })
        }) {
            Ok(events) => events,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        let mut out = BytesMut::new();
        for e in events {
            let Some(data) = e.data() else {
                e.write(None, &mut out);
                continue;
            };
            match pp.outbound_asking(&asker, data) {
                Listing::Ready(new) => e.write(new, &mut out),
                Listing::Ask(q) => {
                    if !send(&mut out).await || tx.send(event(&q.request)).await.is_err() {
                        return;
                    }
                    match pp.await_pins(*q, tx.closed()).await {
                        Some(listing) => e.write(Some(listing), &mut out),
                        None => return,
                    }
                }
            }
        }
        if !send(&mut out).await {
            return;
        }
    }
    let mut rest = BytesMut::from(&rw.finish()[..]);
    send(&mut rest).await;
}
