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
}

impl Text {
    pub fn as_str(&self) -> &str {
        match self {
            Text::Static(s) => s,
            Text::Shared(s) => s,
            Text::Owned(s) => s,
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
            _ => self.as_str() == other.as_str(),
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
        Text::Owned(s.into_boxed_str())
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

/// The process the telemetry is about (OTLP `Resource`) and the instrumentation scope.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub attributes: Vec<Attribute>,
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
