//! Rewriting an SSE stream event by event, for the tool policy on the proxy's answers: an
//! event whose data changes gets new `data:` lines; every other event keeps its exact bytes
//! (`id:`, `retry:`, comments). Events are bounded by [`MAX_EVENT`].

use bytes::{Bytes, BytesMut};

use crate::jsonrpc;

/// Largest SSE event or JSON answer read for the policy (larger answers end the stream).
pub const MAX_EVENT: usize = 64 << 20;

/// An SSE stream rewritten event by event: an event whose data `rewrite` changes gets new
/// `data:` lines; every other event keeps its exact bytes.
pub struct SseRewriter {
    buf: BytesMut,
    /// The current event's raw lines (with their line ends).
    lines: Vec<Bytes>,
    data: Vec<u8>,
    has_data: bool,
    size: usize,
}

/// The event being read grew past [`MAX_EVENT`].
#[derive(Debug)]
pub struct EventTooLarge;

impl Default for SseRewriter {
    fn default() -> Self {
        SseRewriter {
            buf: BytesMut::new(),
            lines: Vec::new(),
            data: Vec::new(),
            has_data: false,
            size: 0,
        }
    }
}

/// One whole SSE event as read: its raw lines (with their line ends), its data, and the blank
/// line that ended it.
pub struct Event {
    lines: Vec<Bytes>,
    data: Option<Vec<u8>>,
    blank: Bytes,
}

impl Event {
    /// The event's data (its `data:` lines joined), if it has any.
    pub fn data(&self) -> Option<&[u8]> {
        self.data.as_deref()
    }

    /// Writes the event: its exact bytes, or with its `data:` lines replaced by `new` (one
    /// line) and every other line (`id:`, `event:`, comments) kept.
    pub fn write(self, new: Option<Bytes>, out: &mut BytesMut) {
        for l in self.lines {
            if new.is_none() || !l.starts_with(b"data:") {
                out.extend_from_slice(&l);
            }
        }
        if let Some(new) = new {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(&jsonrpc::single_line(new));
            out.extend_from_slice(b"\n");
        }
        out.extend_from_slice(&self.blank);
    }
}

impl SseRewriter {
    /// Feeds a chunk; returns what can be sent on now.
    pub fn push(
        &mut self,
        chunk: &[u8],
        rewrite: &mut impl FnMut(&[u8]) -> Option<Bytes>,
    ) -> Result<Bytes, EventTooLarge> {
        let mut out = BytesMut::new();
        for e in self.events(chunk)? {
            let replaced = e.data().and_then(&mut *rewrite);
            e.write(replaced, &mut out);
        }
        Ok(out.freeze())
    }

    /// Feeds a chunk; returns the events it completed, for a caller that must act between
    /// events (ask the person before one is sent on).
    pub fn events(&mut self, chunk: &[u8]) -> Result<Vec<Event>, EventTooLarge> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
            let raw = self.buf.split_to(nl + 1).freeze();
            self.size += raw.len();
            if self.size > MAX_EVENT {
                return Err(EventTooLarge);
            }
            let line = raw.strip_suffix(b"\n").unwrap_or(&raw);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                events.push(Event {
                    lines: std::mem::take(&mut self.lines),
                    data: self.has_data.then(|| std::mem::take(&mut self.data)),
                    blank: raw,
                });
                self.data.clear();
                self.has_data = false;
                self.size = 0;
                continue;
            }
            if let Some(v) = line.strip_prefix(b"data:") {
                let v = v.strip_prefix(b" ").unwrap_or(v);
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(v);
                self.has_data = true;
            }
            self.lines.push(raw);
        }
        if self.buf.len() + self.size > MAX_EVENT {
            return Err(EventTooLarge);
        }
        Ok(events)
    }

    /// What is left at the end of the stream (an unfinished event, as it was).
    pub fn finish(&mut self) -> Bytes {
        let mut out = BytesMut::new();
        for l in self.lines.drain(..) {
            out.extend_from_slice(&l);
        }
        out.extend_from_slice(&self.buf.split());
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewriter_keeps_untouched_events_exact_and_replaces_data() {
        let mut r = SseRewriter::default();
        let stream = b"id: 0\nretry: 300\ndata:\n\n: comment\nid: 1\r\nevent: message\ndata: {\"a\":1}\n\nid: 2\ndata: {\"b\":\ndata: 2}\n\ntail";
        let mut rewrite =
            |d: &[u8]| (d == b"{\"b\":\n2}").then(|| Bytes::from_static(b"{\"b\":3}"));
        let mut out = Vec::new();
        for chunk in stream.chunks(5) {
            out.extend_from_slice(&r.push(chunk, &mut rewrite).unwrap());
        }
        out.extend_from_slice(&r.finish());
        let s = String::from_utf8(out).unwrap();
        assert_eq!(
            s,
            "id: 0\nretry: 300\ndata:\n\n: comment\nid: 1\r\nevent: message\ndata: {\"a\":1}\n\nid: 2\ndata: {\"b\":3}\n\ntail"
        );
    }

    #[test]
    fn rewriter_bounds_events() {
        let mut r = SseRewriter::default();
        let big = vec![b'x'; MAX_EVENT + 10];
        assert!(r.push(&big, &mut |_| None).is_err());
    }
}
