//! Server-Sent Events parsing (the WHATWG `text/event-stream` format) over a byte stream.
//!
//! Written here rather than taken from a crate because the bridge needs three things at once:
//! the stream-level `id`/`retry` state for resumption (including ids of events with empty
//! `data`, which MCP servers send to prime a resumable stream), single-pass scanning so a
//! multi-megabyte `data:` line costs linear time, and zero-copy hand-off of a one-line `data`
//! payload (the usual shape of an MCP message) to stdout.
//!
//! Memory is bounded by `--max-message-size` ([`EventStream::with_limit`]): an event whose data
//! grows past it, and any line past it, is dropped piece by piece as it arrives (its bytes
//! scanned for the JSON-RPC `id`, not kept), and the event is reported as [`TooLarge`] so the
//! request it answers can still be answered with an error.

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use tracing::debug;

use crate::jsonrpc::{single_line, HeadScan, Id, Message};

/// The limit used until [`EventStream::with_limit`] sets another (the `--max-message-size`
/// default).
pub const DEFAULT_LIMIT: usize = 32 << 20;
/// A line may exceed the data limit by this much (the `data: ` field name) before it is dropped.
pub const FIELD_ROOM: usize = 16;
/// The longest reconnection delay honoured from `retry:` (60 s): a server cannot park a resume
/// for hours, and a value of any length parses without overflow.
pub const MAX_RETRY_MS: u64 = 60_000;

/// One dispatched event. Events whose data is empty carry no MCP message and are not
/// dispatched, but their `id` and `retry` still update the stream state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field; `None` means the default type, `message`.
    pub event: Option<String>,
    /// The `id:` given in this event, if any (the stream's last id otherwise carries over).
    pub id: Option<String>,
    /// The joined `data:` lines (empty when `too_large` is set).
    pub data: Bytes,
    /// The data was over the limit and was dropped: what is known of it.
    pub too_large: Option<TooLarge>,
}

/// An event whose data was over the limit. Only `message` events are reported; oversized events
/// of other types (which carry no MCP message) are dropped silently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLarge {
    /// Length of the joined data, in bytes.
    pub size: u64,
    /// The JSON-RPC `id` of the message, when the scan could read it.
    pub id: Option<Id>,
    /// The message has a top-level `method` (a request or notification, not a response).
    pub has_method: bool,
}

/// The data of the event being read.
#[derive(Default)]
enum Data {
    #[default]
    None,
    /// One line, kept as a zero-copy slice of the input (the usual shape of an MCP message).
    One(Bytes),
    /// Several lines joined as they arrive, so many tiny lines cost their bytes, not a `Bytes`
    /// handle each.
    Many(BytesMut),
    /// Past the limit: only the scan and the size are kept.
    Over(HeadScan, u64),
}

/// Parses events from `inner` as they arrive.
pub struct EventStream<S> {
    inner: S,
    limit: usize,
    buf: BytesMut,
    /// Bytes of `buf` already searched for a line end, so long lines are scanned once.
    scanned: usize,
    /// A line ended with `\r` at the end of a chunk: skip a `\n` that starts the next one.
    skip_lf: bool,
    /// The current line is too long and is being dropped; `true` when it is a `data:` line
    /// (its bytes still go to the event's scan and size).
    dropping: Option<bool>,
    data: Data,
    /// Number of `data:` lines in the event (they are joined with `\n`).
    data_lines: usize,
    /// Some `data:` line of the event was not empty.
    data_nonempty: bool,
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
            limit: DEFAULT_LIMIT,
            buf: BytesMut::new(),
            scanned: 0,
            skip_lf: false,
            dropping: None,
            data: Data::None,
            data_lines: 0,
            data_nonempty: false,
            event: None,
            event_id: None,
            last_event_id: None,
            retry_ms: None,
            finished: false,
        }
    }

    /// Sets the largest event data kept (`--max-message-size`).
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Starts from a known last event id (a resumed stream continues the old one's state).
    pub fn with_last_event_id(mut self, id: Option<String>) -> Self {
        self.last_event_id = id;
        self
    }

    /// Starts from a known `retry:` value (kept across resumptions of one stream).
    pub fn with_retry_ms(mut self, ms: u64) -> Self {
        self.retry_ms = Some(ms.min(MAX_RETRY_MS));
        self
    }

    /// The id of the last event seen, for `Last-Event-ID` on reconnect.
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    /// The server's last `retry:` value in milliseconds, at most [`MAX_RETRY_MS`].
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
                Some(Ok(chunk)) => self.push(&chunk),
                Some(Err(e)) => {
                    self.finished = true;
                    return Some(Err(e));
                }
                None => self.finished = true,
            }
        }
    }

    /// Takes in one chunk: the rest of a line being dropped is consumed here, without being
    /// buffered; everything else is appended for [`Self::next_line`].
    fn push(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        if self.skip_lf && !rest.is_empty() {
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
            self.skip_lf = false;
        }
        if let Some(is_data) = self.dropping {
            let end = rest.iter().position(|&b| b == b'\n' || b == b'\r');
            let (dropped, after) = match end {
                Some(i) => (&rest[..i], Some(i)),
                None => (rest, None),
            };
            if is_data {
                self.over_feed(dropped);
            }
            let Some(i) = after else { return };
            self.dropping = None;
            let term = rest[i];
            rest = &rest[i + 1..];
            if term == b'\r' {
                if rest.first() == Some(&b'\n') {
                    rest = &rest[1..];
                } else if rest.is_empty() {
                    self.skip_lf = true;
                }
            }
        }
        self.buf.extend_from_slice(rest);
    }

    /// Splits one complete line off the buffer (terminator removed). A partial line that is
    /// already too long starts being dropped instead.
    fn next_line(&mut self) -> Option<Bytes> {
        if self.dropping.is_some() {
            return None;
        }
        let pos = self.buf[self.scanned..]
            .iter()
            .position(|&b| b == b'\n' || b == b'\r');
        let Some(rel) = pos else {
            self.scanned = self.buf.len();
            if self.buf.len() > self.limit.saturating_add(FIELD_ROOM) {
                self.start_dropping();
            }
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

    /// The partial line in `buf` is too long: scan what belongs to the event, free the buffer.
    fn start_dropping(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        self.scanned = 0;
        let is_data = buf.starts_with(b"data:");
        if is_data {
            let start = if buf.get(5) == Some(&b' ') { 6 } else { 5 };
            let sep = self.begin_data_line(buf.len() > start);
            self.go_over();
            if sep {
                self.over_feed(b"\n");
            }
            self.over_feed(&buf[start..]);
        } else {
            debug!("dropping an over-long SSE line");
        }
        self.dropping = Some(is_data);
    }

    /// Counts a new `data:` line; returns whether it needs a `\n` before it.
    fn begin_data_line(&mut self, nonempty: bool) -> bool {
        let sep = self.data_lines > 0;
        self.data_lines += 1;
        self.data_nonempty |= nonempty;
        sep
    }

    fn add_data(&mut self, value: Bytes) {
        let sep = self.begin_data_line(!value.is_empty());
        let len = match &self.data {
            Data::None => 0,
            Data::One(b) => b.len(),
            Data::Many(m) => m.len(),
            Data::Over(..) => {
                if sep {
                    self.over_feed(b"\n");
                }
                return self.over_feed(&value);
            }
        };
        let needed = len + usize::from(sep) + value.len();
        if needed > self.limit {
            self.go_over();
            if sep {
                self.over_feed(b"\n");
            }
            return self.over_feed(&value);
        }
        self.data = match std::mem::take(&mut self.data) {
            // The first line (every line, even an empty one, makes `One` or more).
            Data::None => Data::One(value),
            Data::One(first) => {
                let mut m = BytesMut::with_capacity(needed.max(2 * first.len()).min(self.limit));
                m.extend_from_slice(&first);
                m.extend_from_slice(b"\n");
                m.extend_from_slice(&value);
                Data::Many(m)
            }
            Data::Many(mut m) => {
                if needed > m.capacity() {
                    let target = needed.max(2 * m.capacity()).min(self.limit);
                    m.reserve(target - m.len());
                }
                m.extend_from_slice(b"\n");
                m.extend_from_slice(&value);
                Data::Many(m)
            }
            Data::Over(..) => unreachable!("handled above"),
        };
    }

    /// Moves the event's data into a scan: from here on it is counted, not kept.
    fn go_over(&mut self) {
        let data = match std::mem::take(&mut self.data) {
            Data::Over(scan, size) => Data::Over(scan, size),
            Data::None => Data::Over(HeadScan::new(), 0),
            Data::One(b) => {
                let mut scan = HeadScan::new();
                scan.feed(&b);
                Data::Over(scan, b.len() as u64)
            }
            Data::Many(m) => {
                let mut scan = HeadScan::new();
                scan.feed(&m);
                Data::Over(scan, m.len() as u64)
            }
        };
        self.data = data;
    }

    fn over_feed(&mut self, bytes: &[u8]) {
        if let Data::Over(scan, size) = &mut self.data {
            scan.feed(bytes);
            *size = size.saturating_add(bytes.len() as u64);
        }
    }

    fn process_line(&mut self, line: Bytes) -> Option<Event> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line[0] == b':' {
            return None; // comment / keep-alive
        }
        let too_long = line.len() > self.limit.saturating_add(FIELD_ROOM);
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
            b"data" => self.add_data(value),
            _ if too_long => debug!("ignoring an over-long SSE field"),
            b"event" => self.event = Some(String::from_utf8_lossy(&value).into_owned()),
            b"id" if !value.contains(&0) => {
                let id = String::from_utf8_lossy(&value).into_owned();
                self.event_id = Some(id.clone());
                self.last_event_id = Some(id);
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                let ms = value.iter().fold(0u64, |acc, d| {
                    acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
                });
                self.retry_ms = Some(ms.min(MAX_RETRY_MS));
            }
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<Event> {
        let event = self.event.take();
        let id = self.event_id.take();
        let data = std::mem::take(&mut self.data);
        let nonempty = std::mem::take(&mut self.data_nonempty);
        self.data_lines = 0;
        let data = match data {
            Data::Over(scan, size) => {
                if event.as_deref().is_some_and(|t| t != "message") {
                    debug!(event = ?event, size, "dropping an oversized non-message SSE event");
                    return None;
                }
                let too_large = TooLarge {
                    size,
                    id: scan.id().cloned(),
                    has_method: scan.has_method(),
                };
                return Some(Event {
                    event,
                    id,
                    data: Bytes::new(),
                    too_large: Some(too_large),
                });
            }
            // Nothing to relay (a priming event, or `data:` alone); `id`/`retry` are kept.
            _ if !nonempty => return None,
            Data::One(b) => b,
            Data::Many(m) => m.freeze(),
            Data::None => return None,
        };
        Some(Event {
            event,
            id,
            data,
            too_large: None,
        })
    }
}

/// An SSE event read as an MCP message.
pub enum Parsed {
    Message(Message),
    /// The data is not JSON-RPC.
    Malformed(String),
    /// The data was over `--max-message-size` and was dropped.
    TooLarge(TooLarge),
}

/// Turns an SSE event into a message: `None` for events that are not MCP messages (other
/// event types).
pub fn parse_event(ev: Event) -> Option<Parsed> {
    if ev.event.as_deref().is_some_and(|t| t != "message") {
        debug!(event = ?ev.event, "ignoring a non-message SSE event");
        return None;
    }
    if let Some(t) = ev.too_large {
        return Some(Parsed::TooLarge(t));
    }
    Some(match Message::parse(single_line(ev.data)) {
        Ok(m) => Parsed::Message(m),
        Err(e) => Parsed::Malformed(e.to_string()),
    })
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

/// Over-limit events and lines, and the parser against a reference on arbitrary input.
#[cfg(test)]
mod limit_tests {
    use super::*;
    use futures_util::stream;
    use futures_util::FutureExt;
    use proptest::prelude::*;

    /// Runs the parser over `input` cut into pieces of the given sizes (cycled), checking the
    /// memory bound after every step. Every poll is ready (the stream is in memory).
    fn parse(
        input: &[u8],
        sizes: &[usize],
        limit: usize,
    ) -> (Vec<Event>, Option<String>, Option<u64>) {
        let mut parts = Vec::new();
        let (mut at, mut k) = (0, 0);
        while at < input.len() {
            let n = sizes[k % sizes.len()].max(1).min(input.len() - at);
            parts.push(Ok::<_, ()>(Bytes::copy_from_slice(&input[at..at + n])));
            at += n;
            k += 1;
        }
        let biggest = sizes.iter().copied().max().unwrap_or(1);
        let mut s = EventStream::new(stream::iter(parts)).with_limit(limit);
        let mut out = Vec::new();
        while let Some(ev) = s
            .next()
            .now_or_never()
            .expect("in-memory stream is always ready")
        {
            out.push(ev.unwrap());
            assert_bounded(&s, limit, biggest);
        }
        assert_bounded(&s, limit, biggest);
        let (last, retry) = (s.last_event_id().map(str::to_string), s.retry_ms());
        (out, last, retry)
    }

    fn assert_bounded<S>(s: &EventStream<S>, limit: usize, chunk: usize) {
        assert!(
            s.buf.len() <= limit + FIELD_ROOM + chunk,
            "line buffer {} > bound",
            s.buf.len()
        );
        let held = match &s.data {
            Data::One(b) => b.len(),
            Data::Many(m) => m.capacity(),
            Data::None | Data::Over(..) => 0,
        };
        assert!(
            held <= limit.max(limit + FIELD_ROOM + chunk),
            "event data {held} > bound"
        );
    }

    /// An obviously correct parser: the whole input at once, lines split eagerly, the limit
    /// applied to the joined data afterwards.
    fn reference(input: &[u8], limit: usize) -> (Vec<Event>, Option<String>, Option<u64>) {
        let mut lines = Vec::new();
        let (mut i, mut start) = (0, 0);
        while i < input.len() {
            match input[i] {
                b'\n' => {
                    lines.push(&input[start..i]);
                    i += 1;
                    start = i;
                }
                b'\r' => {
                    lines.push(&input[start..i]);
                    i += 1;
                    if input.get(i) == Some(&b'\n') {
                        i += 1;
                    }
                    start = i;
                }
                _ => i += 1,
            }
        }
        let (mut out, mut last, mut retry) = (Vec::new(), None, None);
        let (mut data, mut lines_n, mut nonempty): (Vec<u8>, usize, bool) = (Vec::new(), 0, false);
        let (mut event, mut event_id): (Option<String>, Option<String>) = (None, None);
        for line in lines {
            if line.is_empty() {
                let (ev, id) = (event.take(), event_id.take());
                let joined = std::mem::take(&mut data);
                let any = std::mem::take(&mut nonempty);
                lines_n = 0;
                if joined.len() > limit {
                    if ev.as_deref().is_none_or(|t| t == "message") {
                        let mut scan = HeadScan::new();
                        scan.feed(&joined);
                        out.push(Event {
                            event: ev,
                            id,
                            data: Bytes::new(),
                            too_large: Some(TooLarge {
                                size: joined.len() as u64,
                                id: scan.id().cloned(),
                                has_method: scan.has_method(),
                            }),
                        });
                    }
                } else if any {
                    out.push(Event {
                        event: ev,
                        id,
                        data: Bytes::from(joined),
                        too_large: None,
                    });
                }
                continue;
            }
            if line[0] == b':' {
                continue;
            }
            let (field, value) = match line.iter().position(|&b| b == b':') {
                Some(c) if line.get(c + 1) == Some(&b' ') => (&line[..c], &line[c + 2..]),
                Some(c) => (&line[..c], &line[c + 1..]),
                None => (line, &b""[..]),
            };
            if field == b"data" {
                if lines_n > 0 {
                    data.push(b'\n');
                }
                lines_n += 1;
                nonempty |= !value.is_empty();
                data.extend_from_slice(value);
                continue;
            }
            if line.len() > limit + FIELD_ROOM {
                continue;
            }
            match field {
                b"event" => event = Some(String::from_utf8_lossy(value).into_owned()),
                b"id" if !value.contains(&0) => {
                    event_id = Some(String::from_utf8_lossy(value).into_owned());
                    last = event_id.clone();
                }
                b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                    let n: u128 = std::str::from_utf8(value)
                        .unwrap()
                        .parse()
                        .unwrap_or(u128::MAX);
                    retry = Some(n.min(MAX_RETRY_MS as u128) as u64);
                }
                _ => {}
            }
        }
        (out, last, retry)
    }

    /// Pieces that make SSE-shaped input: fields, terminators of every kind, JSON heads, long
    /// runs, and raw garbage bytes.
    fn piece() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            3 => prop::sample::select(vec![
                &b"data:"[..], b"data: ", b"id:", b"id: 7", b"event:", b"event: message",
                b"event: endpoint", b"retry:", b"retry: 123", b"retry:99999999999999999999999",
                b":", b": ping", b"\n", b"\r", b"\r\n", b"\n\n", b"\r\r",
                br#"{"jsonrpc":"2.0","id":3,"method":"m","params":{"#, br#""id":"x"}"#, b"}",
                b"\0",
            ]).prop_map(<[u8]>::to_vec),
            1 => (1usize..150, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
            1 => (1usize..150).prop_map(|n| [&b"\ndata: "[..], &vec![b'x'; n]].concat()),
            1 => prop::collection::vec(any::<u8>(), 0..8),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn matches_the_reference_for_any_split(
            input in prop::collection::vec(piece(), 0..60).prop_map(|v| v.concat()),
            sizes in prop::collection::vec(1usize..40, 1..8),
            limit in 1usize..48,
        ) {
            prop_assert_eq!(parse(&input, &sizes, limit), reference(&input, limit));
        }
    }

    #[test]
    fn an_oversized_answer_is_reported_with_its_id_and_the_stream_goes_on() {
        let (head, tail) = (br#"{"jsonrpc":"2.0","result":{"t":""#, br#""},"#);
        let mut input = b"retry: 100000000000000000000000000\nid: 1\ndata: ".to_vec();
        input.extend_from_slice(head);
        input.extend(std::iter::repeat_n(b'x', 10_000));
        input.extend_from_slice(tail);
        input.extend_from_slice(b"\r\ndata: \"id\":41}\r\n\r\nevent: endpoint\ndata: ");
        input.extend(std::iter::repeat_n(b'y', 10_000));
        input.extend_from_slice(b"\n\ndata: {\"id\":42}\n\n");
        let (evs, last, retry) = parse(&input, &[7, 1000, 3], 1000);
        assert_eq!(
            retry,
            Some(MAX_RETRY_MS),
            "a huge retry is clamped, not dropped"
        );
        assert_eq!(last.as_deref(), Some("1"));
        assert_eq!(
            evs.len(),
            2,
            "the oversized endpoint event is dropped: {evs:?}"
        );
        let t = evs[0].too_large.as_ref().expect("too large");
        assert_eq!(t.id, Some(Id::from_json("41")));
        assert!(!t.has_method);
        // The joined data: both lines and the `\n` between them.
        assert_eq!(
            t.size as usize,
            head.len() + 10_000 + tail.len() + 1 + br#""id":41}"#.len()
        );
        assert_eq!(&evs[1].data[..], b"{\"id\":42}");
    }
}
