//! The parser's cases: fields, ids and `retry`, line endings, chunk splits.

use super::*;
use futures_util::stream;

fn chunks(parts: &[&'static [u8]]) -> EventStream<impl Stream<Item = Result<Bytes, ()>> + Unpin> {
    EventStream::new(stream::iter(
        parts
            .iter()
            .map(|p| Ok::<_, ()>(Bytes::from_static(p)))
            .collect::<Vec<_>>(),
    ))
}

async fn all<S: Stream<Item = Result<Bytes, ()>> + Unpin>(s: &mut EventStream<S>) -> Vec<Event> {
    let mut v = Vec::new();
    while let Some(e) = s.next().await {
        v.push(e.unwrap());
    }
    v
}

#[tokio::test]
async fn parses_fields_across_chunk_boundaries() {
    let mut s = chunks(&[
        b"id: 1\nretry: 250\ndata: \n\n",
        b": keep-alive\nevent: message\nid: 2\nda",
        b"ta: {\"a\":1}\r",
        b"\n\r\ndata:x\ndata:y\n\nid: 3\ndata: cut",
    ]);
    let evs = all(&mut s).await;
    assert_eq!(evs.len(), 2);
    assert_eq!(evs[0].event.as_deref(), Some("message"));
    assert_eq!(&evs[0].data[..], b"{\"a\":1}");
    assert_eq!(evs[0].id.as_deref(), Some("2"));
    assert_eq!(evs[1].id, None);
    assert_eq!(&evs[1].data[..], b"x\ny");
    assert_eq!(s.retry_ms(), Some(250));
    assert_eq!(
        s.last_event_id(),
        Some("3"),
        "id of the cut event still counts"
    );
}

#[tokio::test]
async fn priming_event_sets_id_without_dispatch() {
    let mut s = chunks(&[b"id: prime-7\ndata:\n\n"]);
    assert!(all(&mut s).await.is_empty());
    assert_eq!(s.last_event_id(), Some("prime-7"));
}

#[tokio::test]
async fn big_single_data_line_in_small_chunks() {
    let payload = vec![b'z'; 3 * 1024 * 1024];
    let mut body = b"data: ".to_vec();
    body.extend_from_slice(&payload);
    body.extend_from_slice(b"\n\n");
    let parts: Vec<Result<Bytes, ()>> = body
        .chunks(8 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let mut s = EventStream::new(stream::iter(parts));
    let ev = s.next().await.unwrap().unwrap();
    assert_eq!(ev.data.len(), payload.len());
    assert!(s.next().await.is_none());
}

#[tokio::test]
async fn transport_error_is_reported() {
    let mut s = EventStream::new(stream::iter(vec![
        Ok(Bytes::from_static(b"data: 1\n\n")),
        Err("boom"),
    ]));
    assert!(s.next().await.unwrap().is_ok());
    assert_eq!(s.next().await.unwrap().unwrap_err(), "boom");
    assert!(s.next().await.is_none());
}
