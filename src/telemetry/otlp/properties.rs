//! Property tests: any strings (escapes, non-ASCII, long), integers, timestamps, ids and
//! flags round-trip through both encodings, compared with the official decoders' reading
//! (see [`super::tests`] for the expected messages).

use std::sync::Arc;

use opentelemetry_proto::tonic::metrics::v1 as pm;
use proptest::prelude::*;

use super::tests::{
    decode_metrics, decode_traces, expected_metrics, expected_traces, histogram, record, resource,
    BOTH,
};
use super::Format;
use crate::telemetry::record::{
    Attribute, CounterPoint, HistogramPoint, Metric, MetricData, MetricsRecord, Resource, SpanKind,
    SpanRecord, Text, Value,
};

fn text() -> impl Strategy<Value = Text> {
    prop_oneof![
        any::<String>().prop_map(Text::from),
        any::<String>().prop_map(|s| Text::Shared(Arc::from(s))),
        Just(Text::Static("static")),
        "\\PC{0,8}".prop_map(|s| Text::copy(&s)),
        "[\\x00-\\x7f]{0,300}".prop_map(Text::from),
    ]
}

fn attribute() -> impl Strategy<Value = Attribute> {
    let value = prop_oneof![
        text().prop_map(Value::Text),
        any::<i64>().prop_map(Value::Int),
        any::<bool>().prop_map(Value::Bool),
    ];
    // Keys are 'static in the records; leaking a few test strings is fine.
    (any::<String>(), value).prop_map(|(k, value)| Attribute {
        key: Box::leak(k.into_boxed_str()),
        value,
    })
}

fn span() -> impl Strategy<Value = SpanRecord> {
    let ids = (
        any::<[u8; 16]>(),
        any::<[u8; 8]>(),
        any::<Option<[u8; 8]>>(),
    );
    let kind = prop_oneof![
        Just(SpanKind::Internal),
        Just(SpanKind::Server),
        Just(SpanKind::Client)
    ];
    let meta = (any::<Option<String>>(), any::<u8>(), text(), kind);
    let times = (any::<u64>(), any::<u64>());
    let rest = (
        prop::collection::vec(attribute(), 0..12),
        prop::option::of(text()),
    );
    (ids, meta, times, rest).prop_map(
        |(
            (trace_id, span_id, parent),
            (state, flags, name, kind),
            (start, end),
            (attrs, error),
        )| {
            SpanRecord {
                trace_id,
                span_id,
                parent_span_id: parent,
                trace_state: state.map(Arc::from),
                flags,
                name,
                kind,
                start_unix_nano: start,
                end_unix_nano: end,
                attributes: attrs,
                error,
            }
        },
    )
}

/// Doubles that any JSON reader reads back exactly (serde_json without `float_roundtrip`
/// may be one ulp off on long decimals); the protobuf property covers all finite ones.
fn short_double() -> impl Strategy<Value = f64> {
    (-1_000_000_i64..1_000_000).prop_map(|n| n as f64 / 1024.0)
}

fn metric() -> impl Strategy<Value = Metric> {
    let attrs = || prop::collection::vec(attribute(), 0..4);
    let hist = prop::collection::vec(
        (
            attrs(),
            any::<u64>(),
            (short_double(), short_double(), short_double()),
            prop::collection::vec(any::<u64>(), 4),
        ),
        0..3,
    )
    .prop_map(|points| MetricData::Histogram {
        bounds: &[0.25, 1.0, 2.5],
        points: points
            .into_iter()
            .map(
                |(attributes, count, (sum, min, max), bucket_counts)| HistogramPoint {
                    attributes,
                    count,
                    sum,
                    min,
                    max,
                    bucket_counts,
                },
            )
            .collect(),
    });
    let counter = prop::collection::vec((attrs(), any::<u64>()), 0..3).prop_map(|points| {
        MetricData::Counter {
            points: points
                .into_iter()
                .map(|(attributes, value)| CounterPoint { attributes, value })
                .collect(),
        }
    });
    (prop_oneof![hist, counter], any::<bool>()).prop_map(|(data, described)| Metric {
        name: "m",
        description: if described { "described" } else { "" },
        unit: if described { "ms" } else { "" },
        data,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn any_spans_round_trip(
        spans in prop::collection::vec(span(), 0..6),
        resource_attrs in prop::collection::vec(attribute(), 0..4),
    ) {
        let r = Resource { attributes: resource_attrs };
        for format in BOTH {
            prop_assert_eq!(decode_traces(&r, &spans, format), expected_traces(&r, &spans));
        }
    }

    #[test]
    fn any_metrics_round_trip(
        ms in prop::collection::vec(metric(), 0..4),
        start in any::<u64>(),
        time in any::<u64>(),
    ) {
        let rec = MetricsRecord { start_unix_nano: start, time_unix_nano: time, metrics: ms };
        let r = resource();
        for format in BOTH {
            prop_assert_eq!(decode_metrics(&r, &rec, format), expected_metrics(&r, &rec));
        }
    }

    #[test]
    fn any_finite_doubles_round_trip_in_protobuf(
        sum in any::<f64>().prop_filter("finite", |v| v.is_finite()),
        min in any::<f64>(),
        max in any::<f64>(),
    ) {
        let mut h = histogram();
        if let MetricData::Histogram { points, .. } = &mut h.data {
            (points[0].sum, points[0].min, points[0].max) = (sum, min, max);
        }
        let rec = record(vec![h]);
        let decoded = decode_metrics(&resource(), &rec, Format::Protobuf);
        let m = &decoded.resource_metrics[0].scope_metrics[0].metrics[0];
        let Some(pm::metric::Data::Histogram(h)) = &m.data else { panic!("{m:?}") };
        let p = &h.data_points[0];
        prop_assert_eq!(p.sum.map(f64::to_bits), Some(sum.to_bits()));
        prop_assert_eq!(p.min.map(f64::to_bits), Some(min.to_bits()));
        prop_assert_eq!(p.max.map(f64::to_bits), Some(max.to_bits()));
    }
}
