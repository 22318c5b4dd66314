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
                    // A copy into an exact allocation, not `reserve`: that may round up past
                    // the limit (it doubles), and the limit is what bounds memory per event.
                    let target = needed.max(2 * m.capacity()).min(self.limit);
                    let mut grown = BytesMut::with_capacity(target);
                    grown.extend_from_slice(&m);
                    m = grown;
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
mod tests;

#[cfg(test)]
mod limit_tests;
