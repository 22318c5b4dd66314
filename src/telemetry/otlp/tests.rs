//! Every body is decoded with the official `opentelemetry-proto` definitions (prost for
//! protobuf, its serde derive for OTLP/JSON) and compared, field by field, with the message
//! the records mean, built here independently of the encoders.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1 as pm;
use opentelemetry_proto::tonic::resource::v1::Resource as PbResource;
use opentelemetry_proto::tonic::trace::v1 as pt;
use prost::Message as _;
use serde_json::Value as Json;

use super::{metrics, traces, Format};
use crate::telemetry::record::{
    Attribute, CounterPoint, HistogramPoint, Metric, MetricData, MetricsRecord, Resource, SpanKind,
    SpanRecord, Text, Value, SCOPE_NAME, SCOPE_VERSION,
};

pub(super) const BOTH: [Format; 2] = [Format::Protobuf, Format::Json];

// ---- the expected messages ----

fn key_value(a: &Attribute) -> KeyValue {
    let value = match &a.value {
        Value::Text(t) => any_value::Value::StringValue(t.as_str().to_owned()),
        Value::Int(i) => any_value::Value::IntValue(*i),
        Value::Bool(b) => any_value::Value::BoolValue(*b),
    };
    KeyValue {
        key: a.key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn key_values(attributes: &[Attribute]) -> Vec<KeyValue> {
    attributes.iter().map(key_value).collect()
}

fn pb_resource(r: &Resource) -> Option<PbResource> {
    Some(PbResource {
        attributes: key_values(&r.attributes),
        ..Default::default()
    })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: SCOPE_NAME.to_owned(),
        version: SCOPE_VERSION.to_owned(),
        ..Default::default()
    })
}

fn expected_span(s: &SpanRecord) -> pt::Span {
    pt::Span {
        trace_id: s.trace_id.to_vec(),
        span_id: s.span_id.to_vec(),
        trace_state: s.trace_state.as_deref().unwrap_or_default().to_owned(),
        parent_span_id: s.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
        flags: u32::from(s.flags),
        name: s.name.as_str().to_owned(),
        kind: s.kind as i32,
        start_time_unix_nano: s.start_unix_nano,
        end_time_unix_nano: s.end_unix_nano,
        attributes: key_values(&s.attributes),
        status: s.error.as_ref().map(|m| pt::Status {
            message: m.as_str().to_owned(),
            code: pt::status::StatusCode::Error as i32,
        }),
        ..Default::default()
    }
}

pub(super) fn expected_traces(r: &Resource, spans: &[SpanRecord]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![pt::ResourceSpans {
            resource: pb_resource(r),
            scope_spans: vec![pt::ScopeSpans {
                scope: scope(),
                spans: spans.iter().map(expected_span).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

pub(super) fn expected_metrics(r: &Resource, rec: &MetricsRecord) -> ExportMetricsServiceRequest {
    let cumulative = pm::AggregationTemporality::Cumulative as i32;
    let metric = |m: &Metric| pm::Metric {
        name: m.name.to_owned(),
        description: m.description.to_owned(),
        unit: m.unit.to_owned(),
        data: Some(match &m.data {
            MetricData::Histogram { bounds, points } => {
                pm::metric::Data::Histogram(pm::Histogram {
                    data_points: points
                        .iter()
                        .map(|p| pm::HistogramDataPoint {
                            attributes: key_values(&p.attributes),
                            start_time_unix_nano: rec.start_unix_nano,
                            time_unix_nano: rec.time_unix_nano,
                            count: p.count,
                            sum: Some(p.sum),
                            bucket_counts: p.bucket_counts.clone(),
                            explicit_bounds: bounds.to_vec(),
                            // The minimum and maximum of nothing are not sent.
                            min: (p.count > 0).then_some(p.min),
                            max: (p.count > 0).then_some(p.max),
                            ..Default::default()
                        })
                        .collect(),
                    aggregation_temporality: cumulative,
                })
            }
            MetricData::Counter { points } => pm::metric::Data::Sum(pm::Sum {
                data_points: points
                    .iter()
                    .map(|p| pm::NumberDataPoint {
                        attributes: key_values(&p.attributes),
                        start_time_unix_nano: rec.start_unix_nano,
                        time_unix_nano: rec.time_unix_nano,
                        value: Some(pm::number_data_point::Value::AsInt(
                            i64::try_from(p.value).unwrap_or(i64::MAX),
                        )),
                        ..Default::default()
                    })
                    .collect(),
                aggregation_temporality: cumulative,
                is_monotonic: true,
            }),
        }),
        ..Default::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![pm::ResourceMetrics {
            resource: pb_resource(r),
            scope_metrics: vec![pm::ScopeMetrics {
                scope: scope(),
                metrics: rec.metrics.iter().map(metric).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

// ---- encode, then decode with the official definitions ----

pub(super) fn decode_traces(
    r: &Resource,
    spans: &[SpanRecord],
    format: Format,
) -> ExportTraceServiceRequest {
    let mut out = b"left over from the last export".to_vec();
    traces(r, spans, format, &mut out);
    match format {
        Format::Protobuf => ExportTraceServiceRequest::decode(&out[..]).expect("protobuf"),
        Format::Json => serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out))),
    }
}

pub(super) fn decode_metrics(
    r: &Resource,
    rec: &MetricsRecord,
    format: Format,
) -> ExportMetricsServiceRequest {
    let mut out = b"left over from the last export".to_vec();
    metrics(r, rec, format, &mut out);
    match format {
        Format::Protobuf => ExportMetricsServiceRequest::decode(&out[..]).expect("protobuf"),
        Format::Json => serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out))),
    }
}

fn assert_traces_round_trip(r: &Resource, spans: &[SpanRecord]) {
    for format in BOTH {
        assert_eq!(
            decode_traces(r, spans, format),
            expected_traces(r, spans),
            "{format:?}"
        );
        // Spans encoded one by one as they end, then wrapped: the same request.
        let mut whole = Vec::new();
        super::traces(r, spans, format, &mut whole);
        let room = super::batch_room(r, format);
        let mut batch = Vec::new();
        for span in spans {
            super::push_span(span, format, &mut batch, room);
        }
        let start = super::finish_batch(r, format, &mut batch, room);
        assert_eq!(
            batch[start..],
            whole[..],
            "{format:?}: batch and whole differ"
        );
        // A room that is too small or too large still makes the same request.
        for wrong in [0, room / 2, room + 7] {
            let mut batch = Vec::new();
            for span in spans {
                super::push_span(span, format, &mut batch, wrong);
            }
            let start = super::finish_batch(r, format, &mut batch, wrong);
            assert_eq!(batch[start..], whole[..], "{format:?}: room {wrong}");
        }
    }
}

fn assert_metrics_round_trip(r: &Resource, rec: &MetricsRecord) {
    for format in BOTH {
        assert_eq!(
            decode_metrics(r, rec, format),
            expected_metrics(r, rec),
            "{format:?}"
        );
    }
}

fn json_of(r: &Resource, spans: &[SpanRecord]) -> Json {
    let mut out = Vec::new();
    traces(r, spans, Format::Json, &mut out);
    serde_json::from_slice(&out).expect("valid JSON")
}

// ---- fixtures ----

pub(super) fn resource() -> Resource {
    Resource {
        attributes: vec![
            Attribute::new("service.name", "alibridge"),
            Attribute::new("service.version", Text::Shared(Arc::from("9.9.9"))),
            Attribute::new("process.pid", 4242_i64),
            Attribute::new("host.name", Text::from("build-\"box\"".to_owned())),
        ],
    }
}

fn root_span() -> SpanRecord {
    SpanRecord {
        trace_id: *b"\x4b\xf9\x2f\x35\x77\xb3\x4d\xa6\xa3\xce\x92\x9d\x0e\x0e\x47\x36",
        span_id: *b"\x00\xf0\x67\xaa\x0b\xa9\x02\xb7",
        parent_span_id: None,
        trace_state: None,
        flags: 1,
        name: Text::Static("tools/call"),
        kind: SpanKind::Client,
        start_unix_nano: 1_765_000_000_123_456_789,
        end_unix_nano: 1_765_000_000_223_456_789,
        attributes: vec![
            Attribute::new("mcp.method.name", "tools/call"),
            Attribute::new(
                "gen_ai.tool.name",
                Text::Shared(Arc::from("list_instances")),
            ),
            Attribute::new("jsonrpc.request.id", Text::from("17".to_owned())),
            Attribute::new("server.port", 443_i64),
            Attribute::new("alibridge.retry", -1_i64),
            Attribute::new("alibridge.min", i64::MIN),
            Attribute {
                key: "alibridge.confirmed",
                value: Value::Bool(true),
            },
            Attribute {
                key: "alibridge.replayed",
                value: Value::Bool(false),
            },
            Attribute::new("alibridge.zero", 0_i64),
            Attribute::new("alibridge.empty", ""),
        ],
        error: None,
    }
}

fn child_span() -> SpanRecord {
    SpanRecord {
        span_id: *b"\x53\x99\x5c\x3f\x42\xcd\x8a\xd8",
        parent_span_id: Some(*b"\x00\xf0\x67\xaa\x0b\xa9\x02\xb7"),
        trace_state: Some(Arc::from("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")),
        flags: 0,
        name: Text::from("POST".to_owned()),
        kind: SpanKind::Internal,
        // Above 2^53: a JSON number would lose the low bits.
        start_unix_nano: (1 << 60) + 1,
        end_unix_nano: u64::MAX,
        attributes: vec![Attribute::new("http.response.status_code", 503_i64)],
        error: Some(Text::Static("http_5xx")),
        ..root_span()
    }
}

pub(super) fn histogram() -> Metric {
    Metric {
        name: "mcp.client.operation.duration",
        description: "How long an MCP operation took, as the client saw it.",
        unit: "s",
        data: MetricData::Histogram {
            bounds: &[0.005, 0.01, 0.1, 1.0, 10.0],
            points: vec![
                HistogramPoint {
                    attributes: vec![Attribute::new("mcp.method.name", "tools/call")],
                    count: 9,
                    sum: 42.125,
                    min: 0.002,
                    max: 30.5,
                    // Values in several buckets, two above the highest bound.
                    bucket_counts: vec![1, 0, 3, 2, 1, 2],
                },
                HistogramPoint {
                    attributes: vec![
                        Attribute::new("mcp.method.name", "initialize"),
                        Attribute::new("error.type", "timeout"),
                    ],
                    count: 0,
                    sum: 0.0,
                    min: f64::INFINITY,
                    max: f64::NEG_INFINITY,
                    bucket_counts: vec![0; 6],
                },
            ],
        },
    }
}

fn counters() -> [Metric; 2] {
    [
        Metric {
            name: "alibridge.token.mints",
            description: "",
            unit: "",
            data: MetricData::Counter {
                points: vec![CounterPoint {
                    attributes: vec![],
                    value: 3,
                }],
            },
        },
        Metric {
            name: "alibridge.policy.refusals",
            description: "Calls the policy refused.",
            unit: "{call}",
            data: MetricData::Counter {
                points: vec![
                    CounterPoint {
                        attributes: vec![Attribute::new("alibridge.policy.rule", "read_only")],
                        value: (1 << 60) + 7,
                    },
                    CounterPoint {
                        attributes: vec![
                            Attribute::new("alibridge.policy.rule", "deny"),
                            Attribute::new("gen_ai.tool.name", Text::from("rm".to_owned())),
                        ],
                        // Past int64: saturates.
                        value: u64::MAX,
                    },
                ],
            },
        },
    ]
}

pub(super) fn record(metrics: Vec<Metric>) -> MetricsRecord {
    MetricsRecord {
        start_unix_nano: 1_765_000_000_000_000_000,
        time_unix_nano: (1 << 62) + 3,
        metrics,
    }
}

// ---- traces ----

#[test]
fn content_types_are_otlps() {
    assert_eq!(Format::Protobuf.content_type(), "application/x-protobuf");
    assert_eq!(Format::Json.content_type(), "application/json");
}

#[test]
fn a_root_and_a_child_span_round_trip_in_both_formats() {
    assert_traces_round_trip(&resource(), &[root_span(), child_span()]);
}

#[test]
fn no_spans_is_one_resource_and_scope_with_an_empty_list() {
    let r = resource();
    assert_traces_round_trip(&r, &[]);
    let decoded = decode_traces(&r, &[], Format::Protobuf);
    assert_eq!(decoded.resource_spans[0].scope_spans[0].spans.len(), 0);
    assert_eq!(
        decoded.resource_spans[0].scope_spans[0]
            .scope
            .as_ref()
            .unwrap()
            .name,
        "alibridge"
    );
}

#[test]
fn an_empty_resource_still_names_the_scope() {
    let r = Resource { attributes: vec![] };
    assert_traces_round_trip(&r, &[root_span()]);
}

#[test]
fn many_spans_each_different() {
    let spans: Vec<SpanRecord> = (0..300_u16)
        .map(|i| {
            let mut s = if i % 3 == 0 {
                root_span()
            } else {
                child_span()
            };
            s.span_id[..2].copy_from_slice(&i.to_be_bytes());
            s.name = Text::from(format!("span {i}"));
            s.attributes.truncate(usize::from(i % 11));
            s
        })
        .collect();
    assert_traces_round_trip(&resource(), &spans);
}

#[test]
fn strings_needing_escapes_and_long_ones_round_trip() {
    let controls: String = (0u8..0x20).map(char::from).collect();
    let tricky = format!("q\"uote\\back/slash\nnew\rret\ttab {controls} é 漢字 🦀 \u{7f}");
    let long_2 = "x".repeat(200); // 2-byte varint length
    let long_3 = "é".repeat(10_000); // 20,000 bytes: 3-byte varint length
    let mut s = child_span();
    s.name = Text::from(tricky.clone());
    s.trace_state = Some(Arc::from(long_2.as_str()));
    s.error = Some(Text::from(tricky.clone()));
    s.attributes = vec![
        Attribute::new("a.tricky", Text::from(tricky.clone())),
        Attribute::new("a.long2", Text::Shared(Arc::from(long_2.as_str()))),
        Attribute::new("a.long3", Text::from(long_3.clone())),
        Attribute::new("a.key\"with\\escapes\n", 1_i64),
    ];
    let r = Resource {
        attributes: vec![Attribute::new("r.long3", Text::from(long_3))],
    };
    assert_traces_round_trip(&r, &[s.clone(), root_span(), s.clone()]);

    let mut out = Vec::new();
    traces(&r, &[s], Format::Json, &mut out);
    let text = String::from_utf8(out).expect("UTF-8");
    for escaped in [
        r#"q\"uote"#,
        r#"\\back"#,
        r"\n",
        r"\r",
        r"\t",
        r"\u0000",
        r"\u001f",
    ] {
        assert!(text.contains(escaped), "{escaped} missing");
    }
    assert!(
        text.contains("é 漢字 🦀"),
        "non-ASCII passes through as UTF-8"
    );
}

#[test]
fn json_uses_otlp_shapes_strings_for_64_bit_integers_and_numbers_for_enums() {
    let v = json_of(&resource(), &[root_span(), child_span()]);
    let spans = &v["resourceSpans"][0]["scopeSpans"][0]["spans"];
    let (root, child) = (&spans[0], &spans[1]);
    assert_eq!(root["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(root["spanId"], "00f067aa0ba902b7");
    assert_eq!(child["parentSpanId"], "00f067aa0ba902b7");
    assert!(root.get("parentSpanId").is_none(), "a root has no parent");
    assert!(root.get("traceState").is_none(), "no tracestate, no field");
    assert!(
        root.get("status").is_none(),
        "success leaves the status unset"
    );
    assert_eq!(root["startTimeUnixNano"], "1765000000123456789");
    assert_eq!(child["endTimeUnixNano"], u64::MAX.to_string());
    assert_eq!(root["kind"], 3);
    assert_eq!(root["flags"], 1);
    assert_eq!(
        child["status"],
        serde_json::json!({"message": "http_5xx", "code": 2})
    );
    let attrs = &root["attributes"];
    assert_eq!(
        attrs[0],
        serde_json::json!({"key": "mcp.method.name", "value": {"stringValue": "tools/call"}})
    );
    assert_eq!(attrs[3]["value"], serde_json::json!({"intValue": "443"}));
    assert_eq!(attrs[5]["value"]["intValue"], i64::MIN.to_string());
    assert_eq!(attrs[6]["value"], serde_json::json!({"boolValue": true}));
    let scope = &v["resourceSpans"][0]["scopeSpans"][0]["scope"];
    assert_eq!(scope["name"], SCOPE_NAME);
    assert_eq!(scope["version"], SCOPE_VERSION);
    assert_eq!(
        v["resourceSpans"][0]["resource"]["attributes"][2]["value"]["intValue"],
        "4242"
    );
}

#[test]
fn protobuf_flags_carry_only_the_w3c_byte() {
    let mut s = root_span();
    s.flags = 0xff;
    let decoded = decode_traces(&resource(), &[s], Format::Protobuf);
    let flags = decoded.resource_spans[0].scope_spans[0].spans[0].flags;
    assert_eq!(
        flags, 0xff,
        "no is-remote bits: whether the parent is remote is unknown"
    );
}

#[test]
fn the_buffer_is_cleared_and_reused() {
    let (r, spans) = (resource(), [root_span()]);
    for format in BOTH {
        let mut fresh = Vec::new();
        traces(&r, &spans, format, &mut fresh);
        let mut reused = Vec::new();
        metrics(&r, &record(counters().to_vec()), format, &mut reused);
        traces(&r, &spans, format, &mut reused);
        assert_eq!(reused, fresh, "{format:?}");
    }
}

// ---- metrics ----

#[test]
fn histogram_and_counters_round_trip_in_both_formats() {
    let mut all = vec![histogram()];
    all.extend(counters());
    assert_metrics_round_trip(&resource(), &record(all));
}

#[test]
fn no_metrics_round_trips() {
    assert_metrics_round_trip(&resource(), &record(vec![]));
}

#[test]
fn histogram_fields_are_where_the_spec_puts_them() {
    let decoded = decode_metrics(&resource(), &record(vec![histogram()]), Format::Protobuf);
    let m = &decoded.resource_metrics[0].scope_metrics[0].metrics[0];
    let Some(pm::metric::Data::Histogram(h)) = &m.data else {
        panic!("not a histogram: {m:?}");
    };
    assert_eq!(h.aggregation_temporality, 2, "cumulative");
    let p = &h.data_points[0];
    assert_eq!(
        p.bucket_counts,
        [1, 0, 3, 2, 1, 2],
        "with the overflow bucket"
    );
    assert_eq!(p.explicit_bounds, [0.005, 0.01, 0.1, 1.0, 10.0]);
    assert_eq!(
        (p.count, p.sum, p.min, p.max),
        (9, Some(42.125), Some(0.002), Some(30.5))
    );
    assert_eq!(p.time_unix_nano, (1 << 62) + 3);
    let empty = &h.data_points[1];
    assert_eq!((empty.count, empty.min, empty.max), (0, None, None));
}

#[test]
fn json_metrics_write_counts_as_strings() {
    let mut out = Vec::new();
    let mut all = vec![histogram()];
    all.extend(counters());
    metrics(&resource(), &record(all), Format::Json, &mut out);
    let v: Json = serde_json::from_slice(&out).expect("valid JSON");
    let ms = &v["resourceMetrics"][0]["scopeMetrics"][0]["metrics"];
    let h = &ms[0]["histogram"];
    assert_eq!(h["aggregationTemporality"], 2);
    let p = &h["dataPoints"][0];
    assert_eq!(p["count"], "9");
    assert_eq!(
        p["bucketCounts"],
        serde_json::json!(["1", "0", "3", "2", "1", "2"])
    );
    assert_eq!(
        p["explicitBounds"],
        serde_json::json!([0.005, 0.01, 0.1, 1.0, 10.0])
    );
    assert_eq!(p["startTimeUnixNano"], "1765000000000000000");
    let sum = &ms[2]["sum"];
    assert_eq!(sum["isMonotonic"], true);
    assert_eq!(sum["aggregationTemporality"], 2);
    assert_eq!(
        sum["dataPoints"][0]["asInt"],
        ((1_u64 << 60) + 7).to_string()
    );
    assert_eq!(sum["dataPoints"][1]["asInt"], i64::MAX.to_string());
    assert_eq!(
        ms[1]["sum"]["dataPoints"][0]["attributes"],
        serde_json::json!([])
    );
    assert!(ms[1].get("unit").is_none(), "an empty unit is left out");
}
