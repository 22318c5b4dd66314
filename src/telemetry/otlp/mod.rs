//! OTLP/HTTP request bodies from the plain records of [`super::record`]: an
//! `ExportTraceServiceRequest` for a batch of finished spans and an
//! `ExportMetricsServiceRequest` for one metrics collection, in binary protobuf
//! (`proto`) or OTLP/JSON (`json`).
//!
//! Owns the wire format only: it sends nothing, keeps no state and allocates nothing beyond
//! growing the caller's reused `out` buffer. Both encoders are hand-written so the main build
//! needs no protobuf or OpenTelemetry crate; the unit tests decode every body with the
//! official `opentelemetry-proto` definitions (prost and serde) to prove the bytes right.
//!
//! Every request holds one `ResourceSpans`/`ResourceMetrics` (the process's resource) with
//! one scope ([`SCOPE_NAME`](super::record::SCOPE_NAME),
//! [`SCOPE_VERSION`](super::record::SCOPE_VERSION)). Metrics are cumulative.

mod json;
#[cfg(test)]
mod properties;
mod proto;
#[cfg(test)]
mod tests;

use super::record::{MetricsRecord, Resource, SpanRecord};

/// The OTLP/HTTP body encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Binary protobuf (`http/protobuf`, the OTLP default).
    Protobuf,
    /// OTLP/JSON (`http/json`).
    Json,
}

impl Format {
    /// The `Content-Type` of a body in this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
}

/// An `ExportTraceServiceRequest` holding `spans` under one `ResourceSpans` (`resource`) and
/// one `ScopeSpans` (scope [`SCOPE_NAME`](super::record::SCOPE_NAME),
/// [`SCOPE_VERSION`](super::record::SCOPE_VERSION)), written to `out` (cleared first, so the
/// caller reuses one buffer between exports).
pub fn traces(resource: &Resource, spans: &[SpanRecord], format: Format, out: &mut Vec<u8>) {
    out.clear();
    match format {
        Format::Protobuf => proto::traces(resource, spans, out),
        Format::Json => json::traces(resource, spans, out),
    }
}

/// The bytes a batch keeps free in front of its spans for the request's header in
/// `format`, so that [`finish_batch`] makes the request where the spans already are.
pub fn batch_room(resource: &Resource, format: Format) -> usize {
    match format {
        Format::Protobuf => proto::batch_room(resource),
        Format::Json => json::batch_room(resource),
    }
}

/// Appends `span` to `batch`, a batch of spans in `format` with `room` bytes kept free in
/// front ([`batch_room`]; an empty `batch` gets them here). The relay side encodes each span
/// as it ends, so that nothing it allocated for the span is freed by the export thread
/// (which would empty the relay thread's allocator cache: measured, it cost more than the
/// encoding).
pub fn push_span(span: &SpanRecord, format: Format, batch: &mut Vec<u8>, room: usize) {
    if batch.len() < room {
        batch.resize(room, 0);
    }
    match format {
        Format::Protobuf => proto::span_item(span, batch),
        Format::Json => json::span_item(span, room, batch),
    }
}

/// Makes a `batch` built by [`push_span`] the `ExportTraceServiceRequest` of its spans, in
/// place: `batch[start..]`, `start` returned, holds the same bytes [`traces`] writes for
/// those spans. The spans are not copied (a batch is up to 512 of them).
pub fn finish_batch(
    resource: &Resource,
    format: Format,
    batch: &mut Vec<u8>,
    room: usize,
) -> usize {
    if batch.len() < room {
        batch.resize(room, 0);
    }
    match format {
        Format::Protobuf => proto::finish_batch(resource, batch, room),
        Format::Json => json::finish_batch(resource, batch, room),
    }
}

/// An `ExportMetricsServiceRequest` holding every metric of `record` under one
/// `ResourceMetrics` (`resource`) and one `ScopeMetrics`, written to `out` (cleared first).
pub fn metrics(resource: &Resource, record: &MetricsRecord, format: Format, out: &mut Vec<u8>) {
    out.clear();
    match format {
        Format::Protobuf => proto::metrics(resource, record, out),
        Format::Json => json::metrics(resource, record, out),
    }
}
