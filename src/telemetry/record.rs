//! What telemetry exports, as plain data: finished spans, metric points and the resource.
//! The relay side fills these cheaply (static or shared strings, no per-span maps); the
//! export thread encodes them ([`super::otlp`]).

use std::borrow::Cow;
use std::sync::Arc;

/// A string attribute value or name: static for the known words, shared for the tool names
/// and hosts that repeat on every span, owned otherwise. Equal when the text is.
#[derive(Debug, Clone)]
pub enum Text {
    Static(&'static str),
    Shared(Arc<str>),
    Owned(Box<str>),
    /// A short text kept in place (request ids, tool names, `tools/call echo`): no
    /// allocation for the texts most spans carry.
    Inline(Inline),
}

/// Up to [`Inline::CAPACITY`] bytes of UTF-8, in place.
#[derive(Clone, Copy)]
pub struct Inline {
    len: u8,
    bytes: [u8; Inline::CAPACITY],
}

impl Inline {
    pub const CAPACITY: usize = 22;

    /// `parts` joined, when they fit.
    fn of(parts: &[&str]) -> Option<Inline> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > Self::CAPACITY {
            return None;
        }
        let mut bytes = [0; Self::CAPACITY];
        let mut at = 0;
        for p in parts {
            bytes[at..at + p.len()].copy_from_slice(p.as_bytes());
            at += p.len();
        }
        Some(Inline {
            len: len as u8,
            bytes,
        })
    }

    fn as_str(&self) -> &str {
        // Whole `&str`s were copied in: always UTF-8.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl std::fmt::Debug for Inline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

impl Text {
    pub fn as_str(&self) -> &str {
        match self {
            Text::Static(s) => s,
            Text::Shared(s) => s,
            Text::Owned(s) => s,
            Text::Inline(s) => s.as_str(),
        }
    }

    /// The text's UTF-8 bytes (what the encoders write; no check needed).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Text::Inline(s) => &s.bytes[..usize::from(s.len)],
            other => other.as_str().as_bytes(),
        }
    }

    /// A copy of `s`: in place when short, else on the heap.
    pub fn copy(s: &str) -> Text {
        Text::joined(&[s])
    }

    /// `parts` joined into one text: in place when short, else on the heap.
    pub fn joined(parts: &[&str]) -> Text {
        match Inline::of(parts) {
            Some(i) => Text::Inline(i),
            None => Text::Owned(parts.concat().into_boxed_str()),
        }
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        // The same static or shared text (the usual case when series are looked up) is
        // equal without reading it.
        match (self, other) {
            (Text::Static(a), Text::Static(b)) if std::ptr::eq(*a, *b) => true,
            (Text::Shared(a), Text::Shared(b)) if Arc::ptr_eq(a, b) => true,
            _ => self.as_bytes() == other.as_bytes(),
        }
    }
}

impl Eq for Text {}

impl From<&'static str> for Text {
    fn from(s: &'static str) -> Text {
        Text::Static(s)
    }
}

impl From<Arc<str>> for Text {
    fn from(s: Arc<str>) -> Text {
        Text::Shared(s)
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        match Inline::of(&[&s]) {
            Some(i) => Text::Inline(i),
            None => Text::Owned(s.into_boxed_str()),
        }
    }
}

impl From<Cow<'static, str>> for Text {
    fn from(s: Cow<'static, str>) -> Text {
        match s {
            Cow::Borrowed(s) => Text::Static(s),
            Cow::Owned(s) => s.into(),
        }
    }
}

/// An attribute's value (OTLP `AnyValue`; alibridge uses these three).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(Text),
    Int(i64),
    Bool(bool),
}

impl From<&'static str> for Value {
    fn from(s: &'static str) -> Value {
        Value::Text(Text::Static(s))
    }
}

impl From<Text> for Value {
    fn from(t: Text) -> Value {
        Value::Text(t)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}

/// One attribute: keys are always the conventions' (static) names.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    pub key: &'static str,
    pub value: Value,
}

impl Attribute {
    pub fn new(key: &'static str, value: impl Into<Value>) -> Attribute {
        Attribute {
            key,
            value: value.into(),
        }
    }
}

/// OTLP `Span.SpanKind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Internal = 1,
    Server = 2,
    Client = 3,
}

/// A span that has ended, ready for export.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRecord {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// `None` for a root span.
    pub parent_span_id: Option<[u8; 8]>,
    /// The W3C `tracestate` carried from the parent, if any.
    pub trace_state: Option<Arc<str>>,
    /// W3C trace flags (bit 0: sampled).
    pub flags: u8,
    pub name: Text,
    pub kind: SpanKind,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub attributes: Vec<Attribute>,
    /// `Some(message)`: the span's status is Error with that (short, fixed) description.
    pub error: Option<Text>,
}

thread_local! {
    /// Emptied attribute lists of spans this thread encoded, for the next spans it starts.
    static SPARE: std::cell::RefCell<Vec<Vec<Attribute>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// An empty attribute list for a span, with room for the dozen an operation span carries:
/// one a span of this thread ended with ([`recycle`]), so that a span costs no allocation
/// for it.
pub fn attributes() -> Vec<Attribute> {
    SPARE
        .try_with(|s| s.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_else(|| Vec::with_capacity(14))
}

/// Keeps an ended span's attribute list (emptied) for [`attributes`]; a few are kept.
pub fn recycle(mut list: Vec<Attribute>) {
    if list.capacity() == 0 {
        return;
    }
    list.clear();
    let _ = SPARE.try_with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < 8 {
            s.push(list);
        }
    });
}

/// The process the telemetry is about (OTLP `Resource`) and the instrumentation scope.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub attributes: Vec<Attribute>,
}

/// Nanoseconds since the Unix epoch, as OTLP timestamps are.
pub fn now_unix_nano() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The instrumentation scope every span and metric is exported under.
pub const SCOPE_NAME: &str = "alibridge";
/// The scope's version.
pub const SCOPE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A cumulative histogram's point for one attribute set (OTLP `HistogramDataPoint`).
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramPoint {
    pub attributes: Vec<Attribute>,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    /// One more than the bounds: the last counts values above the highest bound.
    pub bucket_counts: Vec<u64>,
}

/// A cumulative monotonic counter's point for one attribute set (OTLP `NumberDataPoint`,
/// `as_int`).
#[derive(Debug, Clone, PartialEq)]
pub struct CounterPoint {
    pub attributes: Vec<Attribute>,
    pub value: u64,
}

/// One metric and its points.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricData {
    /// Explicit-bucket histogram, cumulative.
    Histogram {
        bounds: &'static [f64],
        points: Vec<HistogramPoint>,
    },
    /// Monotonic sum, cumulative.
    Counter { points: Vec<CounterPoint> },
}

/// One metric (OTLP `Metric`).
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: &'static str,
    pub description: &'static str,
    pub unit: &'static str,
    pub data: MetricData,
}

/// Every metric at one collection: cumulative since `start_unix_nano`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsRecord {
    pub start_unix_nano: u64,
    pub time_unix_nano: u64,
    pub metrics: Vec<Metric>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_texts_stay_in_place_and_equal_text_is_equal() {
        let short = Text::joined(&["tools/call", " ", "echo"]);
        assert!(matches!(short, Text::Inline(_)));
        assert_eq!(short.as_str(), "tools/call echo");
        let long = Text::copy("a tool name that is longer than twenty-two bytes");
        assert!(matches!(long, Text::Owned(_)));
        assert_eq!(Text::copy("é✓"), Text::Static("é✓"));
        assert_eq!(
            Text::Shared(Arc::from("echo")),
            Text::from("echo".to_string())
        );
        assert_ne!(Text::copy("echo"), Text::copy("echo2"));
        let exactly = "x".repeat(Inline::CAPACITY);
        assert!(matches!(Text::copy(&exactly), Text::Inline(_)));
        assert!(matches!(Text::copy(&format!("{exactly}y")), Text::Owned(_)));
    }
}
