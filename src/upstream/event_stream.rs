//! Server-Sent Events parsing (the WHATWG `text/event-stream` format) over a byte stream.
//!
//! Written here rather than taken from a crate because the bridge needs three things at once:
//! the stream-level `id`/`retry` state for resumption (including ids of events with empty
//! `data`, which MCP servers send to prime a resumable stream), single-pass scanning so a
//! multi-megabyte `data:` line costs linear time, and zero-copy hand-off of a one-line `data`
//! payload (the usual shape of an MCP message) to stdout.

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};

/// One dispatched event. Events whose data is empty carry no MCP message and are not
/// dispatched, but their `id` and `retry` still update the stream state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field; `None` means the default type, `message`.
    pub event: Option<String>,
    /// The `id:` given in this event, if any (the stream's last id otherwise carries over).
    pub id: Option<String>,
    /// The joined `data:` lines.
    pub data: Bytes,
}

/// Parses events from `inner` as they arrive.
pub struct EventStream<S> {
    inner: S,
    buf: BytesMut,
    /// Bytes of `buf` already searched for a line end, so long lines are scanned once.
    scanned: usize,
    /// A line ended with `\r` at the end of a chunk: skip a `\n` that starts the next one.
    skip_lf: bool,
    data: Vec<Bytes>,
    event: Option<String>,
    /// The `id:` field of the event being read.
    event_id: Option<String>,
    last_event_id: Option<String>,
    retry_ms: Option<u64>,
    finished: bool,
}

impl<S, E> EventStream<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    pub fn new(inner: S) -> Self {
        EventStream {
            inner,
            buf: BytesMut::new(),
            scanned: 0,
            skip_lf: false,
            data: Vec::new(),
            event: None,
            event_id: None,
            last_event_id: None,
            retry_ms: None,
            finished: false,
        }
    }

    /// Starts from a known last event id (a resumed stream continues the old one's state).
    pub fn with_last_event_id(mut self, id: Option<String>) -> Self {
        self.last_event_id = id;
        self
    }

    /// Starts from a known `retry:` value (kept across resumptions of one stream).
    pub fn with_retry_ms(mut self, ms: u64) -> Self {
        self.retry_ms = Some(ms);
        self
    }

    /// The id of the last event seen, for `Last-Event-ID` on reconnect.
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    /// The server's last `retry:` value in milliseconds.
    pub fn retry_ms(&self) -> Option<u64> {
        self.retry_ms
    }

    /// The next event; `None` when the stream ends, `Some(Err)` when the transport failed.
    /// An event cut off by the end of the stream is discarded, as the standard requires.
    pub async fn next(&mut self) -> Option<Result<Event, E>> {
        loop {
            while let Some(line) = self.next_line() {
                if let Some(ev) = self.process_line(line) {
                    return Some(Ok(ev));
                }
            }
            if self.finished {
                return None;
            }
            match self.inner.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    self.finished = true;
                    return Some(Err(e));
                }
                None => self.finished = true,
            }
        }
    }

    /// Splits one complete line off the buffer (terminator removed).
    fn next_line(&mut self) -> Option<Bytes> {
        if self.skip_lf && !self.buf.is_empty() {
            if self.buf[0] == b'\n' {
                let _ = self.buf.split_to(1);
            }
            self.skip_lf = false;
        }
        let pos = self.buf[self.scanned..]
            .iter()
            .position(|&b| b == b'\n' || b == b'\r');
        let Some(rel) = pos else {
            self.scanned = self.buf.len();
            return None;
        };
        let end = self.scanned + rel;
        let line = self.buf.split_to(end).freeze();
        let term = self.buf.split_to(1);
        if term[0] == b'\r' {
            if self.buf.first() == Some(&b'\n') {
                let _ = self.buf.split_to(1);
            } else if self.buf.is_empty() {
                self.skip_lf = true;
            }
        }
        self.scanned = 0;
        Some(line)
    }

    fn process_line(&mut self, line: Bytes) -> Option<Event> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line[0] == b':' {
            return None; // comment / keep-alive
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = if line.get(i + 1) == Some(&b' ') {
                    i + 2
                } else {
                    i + 1
                };
                (line.slice(..i), line.slice(v..))
            }
            None => (line.clone(), Bytes::new()),
        };
        match &field[..] {
            b"data" => self.data.push(value),
            b"event" => self.event = Some(String::from_utf8_lossy(&value).into_owned()),
            b"id" if !value.contains(&0) => {
                let id = String::from_utf8_lossy(&value).into_owned();
                self.event_id = Some(id.clone());
                self.last_event_id = Some(id);
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                self.retry_ms = std::str::from_utf8(&value)
                    .ok()
                    .and_then(|s| s.parse().ok())
            }
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<Event> {
        let event = self.event.take();
        let id = self.event_id.take();
        if self.data.iter().all(Bytes::is_empty) {
            // Nothing to relay (a priming event, or `data:` alone); `id`/`retry` are kept.
            self.data.clear();
            return None;
        }
        let data = match self.data.len() {
            1 => self.data.pop().unwrap(),
            _ => {
                let joined = self.data.join(&b'\n');
                self.data.clear();
                Bytes::from(joined)
            }
        };
        Some(Event { event, id, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    fn chunks(
        parts: &[&'static [u8]],
    ) -> EventStream<impl Stream<Item = Result<Bytes, ()>> + Unpin> {
        EventStream::new(stream::iter(
            parts
                .iter()
                .map(|p| Ok::<_, ()>(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        ))
    }

    async fn all<S: Stream<Item = Result<Bytes, ()>> + Unpin>(
        s: &mut EventStream<S>,
    ) -> Vec<Event> {
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
}
