//! The price quote of a confirmation in `alibridge proxy`: the proxy's own `tools/call` with
//! `--estimate-cost` ([`crate::policy::quote`]), sent upstream on the client's session, and its
//! answer read from a JSON body or an SSE stream.

use bytes::Bytes;
use hyper::header::HeaderMap;

/// Sends the bridge's own quote request (`--estimate-cost`) upstream with the client's headers
/// and reads its answer, from a JSON body or an SSE stream (the message whose id is `qid`).
pub async fn ask(
    http: &crate::upstream::http::HttpClient,
    url: &reqwest::Url,
    headers: &HeaderMap,
    qid: &crate::jsonrpc::Id,
    body: Bytes,
) -> Option<Bytes> {
    let client = http.client().clone();
    let resp = http
        .send(url, || {
            client
                .post(url.clone())
                .headers(headers.clone())
                .body(body.clone())
        })
        .await
        .ok()?;
    let sse = crate::upstream::http::is_event_stream(&resp);
    let bytes = crate::net::read_small(resp).await.ok()?;
    if !sse {
        return Some(bytes);
    }
    let text = String::from_utf8_lossy(&bytes);
    text.split("\n\n").find_map(|event| {
        let data: Vec<&str> = event
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|l| l.strip_prefix(' ').unwrap_or(l))
            .collect();
        let m = crate::jsonrpc::Message::parse(Bytes::from(data.join("\n"))).ok()?;
        (m.id.as_ref() == Some(qid)).then_some(m.bytes)
    })
}
