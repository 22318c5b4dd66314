//! OTLP/JSON, written by hand in one pass: the protobuf JSON mapping with OTLP's rules —
//! lowerCamelCase field names, trace and span ids as lowercase hex, 64-bit integers
//! (timestamps, `intValue`, `count`, `bucketCounts`, `asInt`) as decimal strings, enums as
//! integers. Strings are escaped as JSON requires (`"`, `\`, control characters); other
//! characters pass through as UTF-8.
//!
//! Fields left out are the same as in [`super::proto`], so both encodings carry the same
//! message.

use std::io::Write as _;

use crate::telemetry::record::{
    Attribute, MetricData, MetricsRecord, Resource, SpanRecord, Value, SCOPE_NAME, SCOPE_VERSION,
};

/// Writes the `ExportTraceServiceRequest`.
pub(super) fn traces(resource: &Resource, spans: &[SpanRecord], out: &mut Vec<u8>) {
    put_prefix(out, resource);
    let start = out.len();
    for span in spans {
        span_item(span, start, out);
    }
    out.extend_from_slice(b"]}]}]}");
}

/// Appends `span` to the spans list that starts at `start` in `out` (a comma before every
/// span but the first).
pub(super) fn span_item(span: &SpanRecord, start: usize, out: &mut Vec<u8>) {
    if out.len() > start {
        out.push(b',');
    }
    put_span(out, span);
}

/// Everything of the request before its first span.
fn put_prefix(out: &mut Vec<u8>, resource: &Resource) {
    out.extend_from_slice(b"{\"resourceSpans\":[{");
    put_resource(out, resource);
    out.extend_from_slice(b",\"scopeSpans\":[{");
    put_scope(out);
    out.extend_from_slice(b",\"spans\":[");
}

/// The room a batch keeps for the request's beginning: exactly its length.
pub(super) fn batch_room(resource: &Resource) -> usize {
    let mut prefix = Vec::new();
    put_prefix(&mut prefix, resource);
    prefix.len()
}

/// Makes `batch` (`room` bytes kept free, then spans written by [`span_item`] from `room`)
/// a whole request in place; returns where it starts.
pub(super) fn finish_batch(resource: &Resource, batch: &mut Vec<u8>, room: usize) -> usize {
    let mut prefix = Vec::with_capacity(room);
    put_prefix(&mut prefix, resource);
    let start = match room.checked_sub(prefix.len()) {
        Some(start) => {
            batch[start..room].copy_from_slice(&prefix);
            start
        }
        // Not reached (`room` is the prefix's length), but a wrong room must not make a
        // wrong body.
        None => {
            batch.splice(..room, prefix);
            0
        }
    };
    batch.extend_from_slice(b"]}]}]}");
    start
}

/// Writes the `ExportMetricsServiceRequest`.
pub(super) fn metrics(resource: &Resource, record: &MetricsRecord, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"resourceMetrics\":[{");
    put_resource(out, resource);
    out.extend_from_slice(b",\"scopeMetrics\":[{");
    put_scope(out);
    out.extend_from_slice(b",\"metrics\":[");
    for (i, metric) in record.metrics.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"name\":");
        put_str(out, metric.name);
        if !metric.description.is_empty() {
            out.extend_from_slice(b",\"description\":");
            put_str(out, metric.description);
        }
        if !metric.unit.is_empty() {
            out.extend_from_slice(b",\"unit\":");
            put_str(out, metric.unit);
        }
        let times = |out: &mut Vec<u8>| {
            out.extend_from_slice(b",\"startTimeUnixNano\":");
            put_u64_str(out, record.start_unix_nano);
            out.extend_from_slice(b",\"timeUnixNano\":");
            put_u64_str(out, record.time_unix_nano);
        };
        match &metric.data {
            MetricData::Histogram { bounds, points } => {
                out.extend_from_slice(b",\"histogram\":{\"dataPoints\":[");
                for (j, p) in points.iter().enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(b"{\"attributes\":");
                    put_attributes(out, &p.attributes);
                    times(out);
                    out.extend_from_slice(b",\"count\":");
                    put_u64_str(out, p.count);
                    out.extend_from_slice(b",\"sum\":");
                    put_f64(out, p.sum);
                    out.extend_from_slice(b",\"bucketCounts\":[");
                    for (k, c) in p.bucket_counts.iter().enumerate() {
                        if k > 0 {
                            out.push(b',');
                        }
                        put_u64_str(out, *c);
                    }
                    out.extend_from_slice(b"],\"explicitBounds\":[");
                    for (k, b) in bounds.iter().enumerate() {
                        if k > 0 {
                            out.push(b',');
                        }
                        put_f64(out, *b);
                    }
                    out.push(b']');
                    if p.count > 0 {
                        out.extend_from_slice(b",\"min\":");
                        put_f64(out, p.min);
                        out.extend_from_slice(b",\"max\":");
                        put_f64(out, p.max);
                    }
                    out.push(b'}');
                }
                out.extend_from_slice(b"],\"aggregationTemporality\":2}");
            }
            MetricData::Counter { points } => {
                out.extend_from_slice(b",\"sum\":{\"dataPoints\":[");
                for (j, p) in points.iter().enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(b"{\"attributes\":");
                    put_attributes(out, &p.attributes);
                    times(out);
                    out.extend_from_slice(b",\"asInt\":");
                    put_i64_str(out, super::proto::counter_value(p.value));
                    out.push(b'}');
                }
                out.extend_from_slice(b"],\"aggregationTemporality\":2,\"isMonotonic\":true}");
            }
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}]}]}");
}

/// `"resource":{…}`.
fn put_resource(out: &mut Vec<u8>, resource: &Resource) {
    out.extend_from_slice(b"\"resource\":{\"attributes\":");
    put_attributes(out, &resource.attributes);
    out.push(b'}');
}

/// `"scope":{…}`.
fn put_scope(out: &mut Vec<u8>) {
    out.extend_from_slice(b"\"scope\":{\"name\":");
    put_str(out, SCOPE_NAME);
    if !SCOPE_VERSION.is_empty() {
        out.extend_from_slice(b",\"version\":");
        put_str(out, SCOPE_VERSION);
    }
    out.push(b'}');
}

/// One span object.
fn put_span(out: &mut Vec<u8>, s: &SpanRecord) {
    out.extend_from_slice(b"{\"traceId\":");
    put_hex(out, &s.trace_id);
    out.extend_from_slice(b",\"spanId\":");
    put_hex(out, &s.span_id);
    if let Some(state) = s.trace_state.as_deref().filter(|t| !t.is_empty()) {
        out.extend_from_slice(b",\"traceState\":");
        put_str(out, state);
    }
    if let Some(parent) = &s.parent_span_id {
        out.extend_from_slice(b",\"parentSpanId\":");
        put_hex(out, parent);
    }
    if s.flags != 0 {
        // Only the W3C trace flags, as in the protobuf encoding. fixed32: a JSON number.
        out.extend_from_slice(b",\"flags\":");
        put_u64(out, u64::from(s.flags));
    }
    out.extend_from_slice(b",\"name\":");
    put_str(out, s.name.as_str());
    out.extend_from_slice(b",\"kind\":");
    put_u64(out, s.kind as u64);
    out.extend_from_slice(b",\"startTimeUnixNano\":");
    put_u64_str(out, s.start_unix_nano);
    out.extend_from_slice(b",\"endTimeUnixNano\":");
    put_u64_str(out, s.end_unix_nano);
    out.extend_from_slice(b",\"attributes\":");
    put_attributes(out, &s.attributes);
    if let Some(message) = &s.error {
        out.extend_from_slice(b",\"status\":{");
        if !message.as_str().is_empty() {
            out.extend_from_slice(b"\"message\":");
            put_str(out, message.as_str());
            out.push(b',');
        }
        // STATUS_CODE_ERROR.
        out.extend_from_slice(b"\"code\":2}");
    }
    out.push(b'}');
}

/// `[{"key":…,"value":{…}},…]`.
fn put_attributes(out: &mut Vec<u8>, attributes: &[Attribute]) {
    out.push(b'[');
    for (i, a) in attributes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"key\":");
        put_str(out, a.key);
        match &a.value {
            Value::Text(t) => {
                out.extend_from_slice(b",\"value\":{\"stringValue\":");
                put_str(out, t.as_str());
            }
            Value::Int(n) => {
                out.extend_from_slice(b",\"value\":{\"intValue\":");
                put_i64_str(out, *n);
            }
            Value::Bool(b) => {
                out.extend_from_slice(b",\"value\":{\"boolValue\":");
                out.extend_from_slice(if *b { b"true" } else { b"false" });
            }
        }
        out.extend_from_slice(b"}}");
    }
    out.push(b']');
}

/// `bytes` as a quoted lowercase hex string.
fn put_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for b in bytes {
        out.extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
    }
    out.push(b'"');
}

/// What each byte needs in a JSON string: 0 nothing, `u` a `\u00XX` escape, else the letter
/// of its short escape (`\n`, `\"`, …). Bytes of multi-byte UTF-8 characters need nothing.
const ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[b'\n' as usize] = b'n';
    table[b'\r' as usize] = b'r';
    table[b'\t' as usize] = b't';
    table[0x08] = b'b';
    table[0x0c] = b'f';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// `s` as a JSON string: runs that need no escape are copied whole.
fn put_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape = ESCAPE[usize::from(b)];
        if escape == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        if escape == b'u' {
            out.extend_from_slice(b"\\u00");
            out.extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        } else {
            out.extend_from_slice(&[b'\\', escape]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// `v` in decimal.
fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[at..]);
}

/// A 64-bit unsigned integer as OTLP/JSON writes it: a decimal string.
fn put_u64_str(out: &mut Vec<u8>, v: u64) {
    out.push(b'"');
    put_u64(out, v);
    out.push(b'"');
}

/// A 64-bit signed integer as a decimal string.
fn put_i64_str(out: &mut Vec<u8>, v: i64) {
    out.push(b'"');
    if v < 0 {
        out.push(b'-');
    }
    put_u64(out, v.unsigned_abs());
    out.push(b'"');
}

/// A double: the shortest decimal that reads back to the same value (`{:?}` uses an exponent
/// for very large and small magnitudes, which JSON allows); NaN and the infinities as the
/// strings the protobuf JSON mapping gives them.
fn put_f64(out: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        out.extend_from_slice(b"\"NaN\"");
    } else if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 {
            b"\"Infinity\""
        } else {
            b"\"-Infinity\""
        });
    } else {
        // Writing to a Vec cannot fail.
        let _ = write!(out, "{v:?}");
    }
}
