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

/// An `ExportMetricsServiceRequest` holding every metric of `record` under one
/// `ResourceMetrics` (`resource`) and one `ScopeMetrics`, written to `out` (cleared first).
pub fn metrics(resource: &Resource, record: &MetricsRecord, format: Format, out: &mut Vec<u8>) {
    out.clear();
    match format {
        Format::Protobuf => proto::metrics(resource, record, out),
        Format::Json => json::metrics(resource, record, out),
    }
}
