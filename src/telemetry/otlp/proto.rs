//! OTLP in binary protobuf, written by hand: varints, one-byte tags (two for `Span.flags`),
//! length-delimited nested messages, little-endian fixed64/double.
//!
//! A nested message's length must precede it, so every message has a `*_len` function that
//! computes its encoded size from the record (string lengths, varint widths) without
//! encoding anything, and a `put_*` function that writes it. A span is sized once and written
//! once. The request's outer lengths need the spans' total, so the spans are written first
//! and the few header fields after them, then rotated to the front (one move of the body);
//! nothing is allocated but `out`'s growth. Each span, metric and the header is written
//! into bytes appended beforehand at its computed size ([`Writer`]), so every `put_*` must
//! write exactly what its `*_len` counted (a debug assertion checks each; the tests decode
//! every body with prost).
//!
//! Field numbers and wire types are the prost tags of the generated code in
//! `opentelemetry-proto` 0.33 (`src/proto/tonic/opentelemetry.proto.*.rs`), the
//! `opentelemetry-proto` v1 `.proto` files. Fields equal to their default are left out
//! (proto3), except the few every reader expects (name, kind, timestamps, count, sum).

use crate::telemetry::record::{
    Attribute, MetricData, MetricsRecord, Resource, SpanRecord, Value, SCOPE_NAME, SCOPE_VERSION,
};

/// Wire type of varints (`int64`, `bool`, enums).
const VARINT: u8 = 0;
/// Wire type of `fixed64`, `sfixed64` and `double`.
const I64: u8 = 1;
/// Wire type of strings, bytes, nested messages and packed repeated scalars.
const LEN: u8 = 2;

/// The one-byte tag of field `number` (1..=15) with wire type `wire`.
const fn tag(number: u8, wire: u8) -> u8 {
    (number << 3) | wire
}

// ExportTraceServiceRequest.resource_spans = 1, ExportMetricsServiceRequest.resource_metrics = 1.
const REQUEST_RESOURCE: u8 = tag(1, LEN);
// ResourceSpans / ResourceMetrics: resource = 1, scope_spans / scope_metrics = 2.
const RESOURCE_RESOURCE: u8 = tag(1, LEN);
const RESOURCE_SCOPE: u8 = tag(2, LEN);
// Resource.attributes = 1.
const RESOURCE_ATTRIBUTES: u8 = tag(1, LEN);
// ScopeSpans / ScopeMetrics: scope = 1, spans / metrics = 2.
const SCOPE_SCOPE: u8 = tag(1, LEN);
const SCOPE_ITEMS: u8 = tag(2, LEN);
// InstrumentationScope: name = 1, version = 2.
const INSTRUMENTATION_NAME: u8 = tag(1, LEN);
const INSTRUMENTATION_VERSION: u8 = tag(2, LEN);
// KeyValue: key = 1, value = 2.
const KEY_VALUE_KEY: u8 = tag(1, LEN);
const KEY_VALUE_VALUE: u8 = tag(2, LEN);
// AnyValue oneof: string_value = 1, bool_value = 2, int_value = 3 (int64).
const ANY_STRING: u8 = tag(1, LEN);
const ANY_BOOL: u8 = tag(2, VARINT);
const ANY_INT: u8 = tag(3, VARINT);
// Span: trace_id = 1, span_id = 2, trace_state = 3, parent_span_id = 4, name = 5,
// kind = 6, start_time_unix_nano = 7 (fixed64), end_time_unix_nano = 8 (fixed64),
// attributes = 9, status = 15, flags = 16 (fixed32).
const SPAN_TRACE_ID: u8 = tag(1, LEN);
const SPAN_SPAN_ID: u8 = tag(2, LEN);
const SPAN_TRACE_STATE: u8 = tag(3, LEN);
const SPAN_PARENT_SPAN_ID: u8 = tag(4, LEN);
const SPAN_NAME: u8 = tag(5, LEN);
const SPAN_KIND: u8 = tag(6, VARINT);
const SPAN_START: u8 = tag(7, I64);
const SPAN_END: u8 = tag(8, I64);
const SPAN_ATTRIBUTES: u8 = tag(9, LEN);
const SPAN_STATUS: u8 = tag(15, LEN);
/// Field 16, wire type 5 (fixed32): `(16 << 3) | 5` = 133 as a varint.
const SPAN_FLAGS: [u8; 2] = [0x85, 0x01];
// Status: message = 2, code = 3 (STATUS_CODE_ERROR = 2).
const STATUS_MESSAGE: u8 = tag(2, LEN);
const STATUS_CODE: u8 = tag(3, VARINT);
const STATUS_CODE_ERROR: u8 = 2;
// Metric: name = 1, description = 2, unit = 3, sum = 7, histogram = 9.
const METRIC_NAME: u8 = tag(1, LEN);
const METRIC_DESCRIPTION: u8 = tag(2, LEN);
const METRIC_UNIT: u8 = tag(3, LEN);
const METRIC_SUM: u8 = tag(7, LEN);
const METRIC_HISTOGRAM: u8 = tag(9, LEN);
// Sum / Histogram: data_points = 1, aggregation_temporality = 2; Sum.is_monotonic = 3.
const DATA_POINTS: u8 = tag(1, LEN);
const DATA_TEMPORALITY: u8 = tag(2, VARINT);
const SUM_MONOTONIC: u8 = tag(3, VARINT);
/// AGGREGATION_TEMPORALITY_CUMULATIVE.
const CUMULATIVE: u8 = 2;
// NumberDataPoint / HistogramDataPoint: start_time_unix_nano = 2, time_unix_nano = 3
// (fixed64); NumberDataPoint: as_int = 6 (sfixed64), attributes = 7.
const POINT_START: u8 = tag(2, I64);
const POINT_TIME: u8 = tag(3, I64);
const NUMBER_AS_INT: u8 = tag(6, I64);
const NUMBER_ATTRIBUTES: u8 = tag(7, LEN);
// HistogramDataPoint: count = 4 (fixed64), sum = 5, bucket_counts = 6 (packed fixed64),
// explicit_bounds = 7 (packed double), attributes = 9, min = 11, max = 12.
const HISTOGRAM_COUNT: u8 = tag(4, I64);
const HISTOGRAM_SUM: u8 = tag(5, I64);
const HISTOGRAM_BUCKET_COUNTS: u8 = tag(6, LEN);
const HISTOGRAM_EXPLICIT_BOUNDS: u8 = tag(7, LEN);
const HISTOGRAM_ATTRIBUTES: u8 = tag(9, LEN);
const HISTOGRAM_MIN: u8 = tag(11, I64);
const HISTOGRAM_MAX: u8 = tag(12, I64);

/// Size of a one-byte-tagged `fixed64`/`double` field.
const FIXED64_FIELD: usize = 1 + 8;

/// Writes the `ExportTraceServiceRequest`.
pub(super) fn traces(resource: &Resource, spans: &[SpanRecord], out: &mut Vec<u8>) {
    // The spans first, each sized once; then the header (whose lengths need the spans'
    // total), moved in front by one rotation.
    for span in spans {
        span_item(span, out);
    }
    put_header(out, resource);
}

/// Appends `span` as one item (tag, length, `Span`) of a `ScopeSpans`.
///
/// One pass, as the span ends on the relay's thread: the span is written after room for a
/// two-byte length (a span of 128 to 16383 bytes: nearly all of them), and the length goes
/// in after; a span of another size moves once to fit its length.
pub(super) fn span_item(span: &SpanRecord, out: &mut Vec<u8>) {
    const ROOM: usize = 2;
    let at = out.len();
    out.reserve(512);
    out.extend_from_slice(&[SCOPE_ITEMS, 0, 0]);
    put_span(out, span);
    let len = out.len() - at - 1 - ROOM;
    if varint_len(len as u64) == ROOM {
        out[at + 1] = (len as u8) | 0x80;
        out[at + 2] = (len >> 7) as u8;
        return;
    }
    let mut varint = Vec::with_capacity(10);
    put_varint(&mut varint, len as u64);
    out.splice(at + 1..at + 1 + ROOM, varint);
}

/// The most bytes the request's header (everything before the spans) takes for any batch
/// below 4 GiB (the queue keeps 16 MiB at most): its varint lengths only grow with the
/// spans' total.
pub(super) fn batch_room(resource: &Resource) -> usize {
    header_len(resource, u32::MAX as usize)
}

/// Makes `batch` (`room` bytes kept free, then spans written by [`span_item`]) a whole
/// request in place: the header goes right before the spans; returns where it starts.
pub(super) fn finish_batch(resource: &Resource, batch: &mut Vec<u8>, room: usize) -> usize {
    let items = batch.len().saturating_sub(room);
    let mut header = Vec::with_capacity(header_len(resource, items));
    put_header_for(&mut header, resource, items);
    match room.checked_sub(header.len()) {
        Some(start) => {
            batch[start..room].copy_from_slice(&header);
            start
        }
        // Not reached (`room` is the most a header takes), but a wrong room must not make a
        // wrong body.
        None => {
            batch.splice(..room, header);
            0
        }
    }
}

/// Writes the `ExportMetricsServiceRequest`.
pub(super) fn metrics(resource: &Resource, record: &MetricsRecord, out: &mut Vec<u8>) {
    let times = (record.start_unix_nano, record.time_unix_nano);
    for metric in &record.metrics {
        let data = data_len(&metric.data);
        let len = metric_head_len(metric) + field_len(data);
        let out = &mut Writer::append(out, field_len(len));
        put_len(out, SCOPE_ITEMS, len);
        put_str(out, METRIC_NAME, metric.name);
        put_str_nonempty(out, METRIC_DESCRIPTION, metric.description);
        put_str_nonempty(out, METRIC_UNIT, metric.unit);
        match &metric.data {
            MetricData::Histogram { bounds, points } => {
                put_len(out, METRIC_HISTOGRAM, data);
                for p in points {
                    put_len(out, DATA_POINTS, histogram_point_len(p, bounds));
                    put_attributes(out, HISTOGRAM_ATTRIBUTES, &p.attributes);
                    put_fixed64(out, POINT_START, times.0);
                    put_fixed64(out, POINT_TIME, times.1);
                    put_fixed64(out, HISTOGRAM_COUNT, p.count);
                    put_fixed64(out, HISTOGRAM_SUM, p.sum.to_bits());
                    put_packed_fixed64(out, HISTOGRAM_BUCKET_COUNTS, &p.bucket_counts, |c| c);
                    put_packed_fixed64(out, HISTOGRAM_EXPLICIT_BOUNDS, bounds, f64::to_bits);
                    if p.count > 0 {
                        put_fixed64(out, HISTOGRAM_MIN, p.min.to_bits());
                        put_fixed64(out, HISTOGRAM_MAX, p.max.to_bits());
                    }
                }
                out.extend_from_slice(&[DATA_TEMPORALITY, CUMULATIVE]);
            }
            MetricData::Counter { points } => {
                put_len(out, METRIC_SUM, data);
                for p in points {
                    put_len(out, DATA_POINTS, number_point_len(&p.attributes));
                    put_attributes(out, NUMBER_ATTRIBUTES, &p.attributes);
                    put_fixed64(out, POINT_START, times.0);
                    put_fixed64(out, POINT_TIME, times.1);
                    put_fixed64(out, NUMBER_AS_INT, counter_value(p.value) as u64);
                }
                out.extend_from_slice(&[DATA_TEMPORALITY, CUMULATIVE, SUM_MONOTONIC, 1]);
            }
        }
        out.done();
    }
    put_header(out, resource);
}

/// `out` holds the encoded items (spans or metrics, each with its tag and length) of the
/// `ScopeSpans`/`ScopeMetrics`: appends the fields that enclose them (the request's
/// `ResourceSpans`/`ResourceMetrics` tag and length, the resource, the `ScopeSpans`/
/// `ScopeMetrics` tag and length, the scope) and rotates them to the front. The two
/// requests have the same shape and field numbers at these levels.
fn put_header(out: &mut Vec<u8>, resource: &Resource) {
    let items = out.len();
    let header = put_header_for(out, resource, items);
    out.rotate_right(header);
}

/// Appends the fields that enclose `items` bytes of items (see [`put_header`]), to be
/// followed by those items; returns the header's length.
fn put_header_for(out: &mut Vec<u8>, resource: &Resource, items: usize) -> usize {
    let resource_len = attributes_len(&resource.attributes);
    let scope = field_len(scope_len()) + items;
    let resource_items = field_len(resource_len) + field_len(scope);
    let header = header_len(resource, items);
    let mut w = Writer::append(out, header);
    put_len(&mut w, REQUEST_RESOURCE, resource_items);
    put_resource(&mut w, resource, resource_len);
    put_len(&mut w, RESOURCE_SCOPE, scope);
    put_scope(&mut w);
    w.done();
    header
}

/// Size of the request's fields that enclose `items` bytes of spans.
fn header_len(resource: &Resource, items: usize) -> usize {
    let resource_len = attributes_len(&resource.attributes);
    let scope = field_len(scope_len()) + items;
    let resource_items = field_len(resource_len) + field_len(scope);
    field_len(resource_items) - items
}

/// A counter's value as OTLP's `as_int` (an `int64`): a count past `i64::MAX` cannot happen
/// in practice, and saturating keeps it monotonic.
pub(super) fn counter_value(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

// ---- sizes ----

/// Bytes of `v` as a varint: 7 bits a byte.
#[inline]
fn varint_len(v: u64) -> usize {
    // Lengths and attribute integers are mostly small: one compare for them.
    if v < 1 << 7 {
        1
    } else {
        // The number of significant bits, 7 a byte.
        (64 - v.leading_zeros() as usize).div_ceil(7)
    }
}

/// Size of a one-byte-tagged length-delimited field whose content is `len` bytes.
#[inline]
fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// Size of an `InstrumentationScope` (name and version; both constants).
fn scope_len() -> usize {
    field_len(SCOPE_NAME.len()) + str_nonempty_len(SCOPE_VERSION)
}

/// Size of a string field that is left out when empty.
fn str_nonempty_len(s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        field_len(s.len())
    }
}

/// Size of an `AnyValue` holding `value`.
#[inline]
fn any_value_len(value: &Value) -> usize {
    match value {
        Value::Text(t) => field_len(t.as_bytes().len()),
        Value::Int(i) => 1 + varint_len(*i as u64),
        Value::Bool(_) => 2,
    }
}

/// Size of a `KeyValue`, given the size of its `AnyValue`.
#[inline]
fn key_value_len(key: &str, value_len: usize) -> usize {
    field_len(key.len()) + field_len(value_len)
}

/// Size of a repeated `KeyValue` field holding `attributes`.
fn attributes_len(attributes: &[Attribute]) -> usize {
    attributes
        .iter()
        .map(|a| field_len(key_value_len(a.key, any_value_len(&a.value))))
        .sum()
}

/// Size of an error `Status` with `message`.
fn status_len(message: &str) -> usize {
    str_nonempty_len(message) + 2
}

/// Size of a `Metric` without its data field.
fn metric_head_len(m: &crate::telemetry::record::Metric) -> usize {
    field_len(m.name.len()) + str_nonempty_len(m.description) + str_nonempty_len(m.unit)
}

/// Size of a `Histogram` or `Sum` message.
fn data_len(data: &MetricData) -> usize {
    match data {
        MetricData::Histogram { bounds, points } => {
            let points: usize = points
                .iter()
                .map(|p| field_len(histogram_point_len(p, bounds)))
                .sum();
            points + 2
        }
        MetricData::Counter { points } => {
            let points: usize = points
                .iter()
                .map(|p| field_len(number_point_len(&p.attributes)))
                .sum();
            points + 4
        }
    }
}

/// Size of a `HistogramDataPoint`.
fn histogram_point_len(p: &crate::telemetry::record::HistogramPoint, bounds: &[f64]) -> usize {
    attributes_len(&p.attributes)
        + 4 * FIXED64_FIELD
        + packed_fixed64_len(p.bucket_counts.len())
        + packed_fixed64_len(bounds.len())
        + if p.count > 0 { 2 * FIXED64_FIELD } else { 0 }
}

/// Size of a `NumberDataPoint` with an `as_int` value.
fn number_point_len(attributes: &[Attribute]) -> usize {
    attributes_len(attributes) + 3 * FIXED64_FIELD
}

/// Size of a packed repeated 8-byte field of `n` elements (left out when empty).
fn packed_fixed64_len(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        field_len(8 * n)
    }
}

// ---- writers ----

/// Writes into bytes appended to the request and sized beforehand by the `*_len` functions:
/// no capacity check or length update of the `Vec` per byte.
struct Writer<'a> {
    buf: &'a mut [u8],
    /// Bytes of `buf` written so far.
    at: usize,
}

/// Where the `put_*` functions write: a [`Writer`] (sized beforehand) or a growing `Vec`.
trait Sink {
    fn push(&mut self, byte: u8);
    fn extend_from_slice(&mut self, bytes: &[u8]);
}

impl Sink for Writer<'_> {
    #[inline]
    fn push(&mut self, byte: u8) {
        Writer::push(self, byte)
    }
    #[inline]
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        Writer::extend_from_slice(self, bytes)
    }
}

impl Sink for Vec<u8> {
    #[inline]
    fn push(&mut self, byte: u8) {
        Vec::push(self, byte)
    }
    #[inline]
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        Vec::extend_from_slice(self, bytes)
    }
}

impl<'a> Writer<'a> {
    /// `len` zero bytes appended to `out`, to be written.
    fn append(out: &'a mut Vec<u8>, len: usize) -> Writer<'a> {
        let start = out.len();
        out.resize(start + len, 0);
        Writer {
            buf: &mut out[start..],
            at: 0,
        }
    }

    #[inline]
    fn push(&mut self, byte: u8) {
        self.buf[self.at] = byte;
        self.at += 1;
    }

    #[inline]
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.buf[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }

    /// Every byte sized was written (a `*_len` function disagreeing with its `put_*` would
    /// leave zeros, or panic on the bounds check above).
    fn done(&self) {
        debug_assert_eq!(self.at, self.buf.len(), "the sizes disagree with the bytes");
    }
}

#[inline]
fn put_varint(out: &mut impl Sink, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field's tag and length; its `len` bytes follow.
#[inline]
fn put_len(out: &mut impl Sink, tag: u8, len: usize) {
    out.push(tag);
    put_varint(out, len as u64);
}

/// A string (or bytes) field.
#[inline]
fn put_bytes(out: &mut impl Sink, tag: u8, s: &[u8]) {
    put_len(out, tag, s.len());
    out.extend_from_slice(s);
}

#[inline]
fn put_str(out: &mut impl Sink, tag: u8, s: &str) {
    put_len(out, tag, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn put_str_nonempty(out: &mut impl Sink, tag: u8, s: &str) {
    if !s.is_empty() {
        put_str(out, tag, s);
    }
}

#[inline]
fn put_fixed64(out: &mut impl Sink, tag: u8, v: u64) {
    out.push(tag);
    out.extend_from_slice(&v.to_le_bytes());
}

/// A packed repeated `fixed64`/`double` field (nothing when `items` is empty).
fn put_packed_fixed64<T: Copy>(out: &mut impl Sink, tag: u8, items: &[T], bits: impl Fn(T) -> u64) {
    if items.is_empty() {
        return;
    }
    put_len(out, tag, 8 * items.len());
    for &item in items {
        out.extend_from_slice(&bits(item).to_le_bytes());
    }
}

/// The `Resource` field of a `ResourceSpans`/`ResourceMetrics` (`len`: its attributes' size).
fn put_resource(out: &mut impl Sink, resource: &Resource, len: usize) {
    put_len(out, RESOURCE_RESOURCE, len);
    put_attributes(out, RESOURCE_ATTRIBUTES, &resource.attributes);
}

/// The `scope` field of a `ScopeSpans`/`ScopeMetrics`.
fn put_scope(out: &mut impl Sink) {
    put_len(out, SCOPE_SCOPE, scope_len());
    put_str(out, INSTRUMENTATION_NAME, SCOPE_NAME);
    put_str_nonempty(out, INSTRUMENTATION_VERSION, SCOPE_VERSION);
}

/// `attributes` as repeated `KeyValue` field `tag`.
fn put_attributes(out: &mut impl Sink, tag: u8, attributes: &[Attribute]) {
    for a in attributes {
        let value_len = any_value_len(&a.value);
        let len = key_value_len(a.key, value_len);
        if len < 0x80 {
            // The usual attribute: every length inside is below 128 too, so each is one
            // byte, and the tags and lengths go in as a few fixed-size copies.
            out.extend_from_slice(&[tag, len as u8, KEY_VALUE_KEY, a.key.len() as u8]);
            out.extend_from_slice(a.key.as_bytes());
            match &a.value {
                Value::Text(t) => {
                    let s = t.as_bytes();
                    out.extend_from_slice(&[KEY_VALUE_VALUE, value_len as u8, ANY_STRING]);
                    out.push(s.len() as u8);
                    out.extend_from_slice(s);
                }
                Value::Int(i) => {
                    out.extend_from_slice(&[KEY_VALUE_VALUE, value_len as u8, ANY_INT]);
                    put_varint(out, *i as u64);
                }
                Value::Bool(b) => {
                    out.extend_from_slice(&[KEY_VALUE_VALUE, 2, ANY_BOOL, u8::from(*b)])
                }
            }
            continue;
        }
        put_len(out, tag, len);
        put_str(out, KEY_VALUE_KEY, a.key);
        put_len(out, KEY_VALUE_VALUE, value_len);
        match &a.value {
            Value::Text(t) => put_bytes(out, ANY_STRING, t.as_bytes()),
            Value::Int(i) => {
                out.push(ANY_INT);
                // int64: a negative value is its two's complement, ten bytes.
                put_varint(out, *i as u64);
            }
            Value::Bool(b) => out.extend_from_slice(&[ANY_BOOL, u8::from(*b)]),
        }
    }
}

/// A `Span`'s fields (its tag and length are the caller's).
fn put_span(out: &mut impl Sink, s: &SpanRecord) {
    put_len(out, SPAN_TRACE_ID, 16);
    out.extend_from_slice(&s.trace_id);
    put_len(out, SPAN_SPAN_ID, 8);
    out.extend_from_slice(&s.span_id);
    if let Some(state) = s.trace_state.as_deref() {
        put_str_nonempty(out, SPAN_TRACE_STATE, state);
    }
    if let Some(parent) = &s.parent_span_id {
        put_len(out, SPAN_PARENT_SPAN_ID, 8);
        out.extend_from_slice(parent);
    }
    put_bytes(out, SPAN_NAME, s.name.as_bytes());
    out.extend_from_slice(&[SPAN_KIND, s.kind as u8]);
    put_fixed64(out, SPAN_START, s.start_unix_nano);
    put_fixed64(out, SPAN_END, s.end_unix_nano);
    put_attributes(out, SPAN_ATTRIBUTES, &s.attributes);
    if let Some(message) = &s.error {
        let message = message.as_str();
        put_len(out, SPAN_STATUS, status_len(message));
        put_str_nonempty(out, STATUS_MESSAGE, message);
        out.extend_from_slice(&[STATUS_CODE, STATUS_CODE_ERROR]);
    }
    if s.flags != 0 {
        // Only the W3C trace flags (bits 0-7): whether the parent is remote is not recorded,
        // so bits 8-9 stay "unknown".
        out.extend_from_slice(&SPAN_FLAGS);
        out.extend_from_slice(&u32::from(s.flags).to_le_bytes());
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn varint_len_matches_put_varint_at_every_width() {
        for v in [
            0,
            1,
            127,
            128,
            16383,
            16384,
            (1 << 21) - 1,
            1 << 21,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            let mut w = Writer::append(&mut out, varint_len(v));
            put_varint(&mut w, v);
            w.done();
            assert_eq!(w.at, varint_len(v), "{v}");
            assert_eq!(
                out.last().map(|b| b & 0x80),
                Some(0),
                "{v}: the last byte ends it"
            );
        }
        assert_eq!(varint_len(u64::MAX), 10);
    }

    #[test]
    fn the_flags_tag_is_field_16_fixed32() {
        let mut out = Vec::new();
        put_varint(&mut Writer::append(&mut out, 2), (16 << 3) | 5);
        assert_eq!(out, SPAN_FLAGS);
    }
}
