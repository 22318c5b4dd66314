//! The metric instruments: the MCP conventions' operation-duration histograms and
//! alibridge's counters, aggregated in process (cumulative) and read by the export thread.
//!
//! | name | kind | attributes |
//! | --- | --- | --- |
//! | `mcp.client.operation.duration` (s) | histogram | `mcp.method.name`, `gen_ai.tool.name`, `error.type`, `server.address`, `server.port`, … |
//! | `mcp.server.operation.duration` (s) | histogram | the same (the proxy) |
//! | `alibridge.policy.refusals` | counter | `gen_ai.tool.name`, `alibridge.policy.rule` |
//! | `alibridge.confirmations` | counter | `alibridge.confirmation.outcome` (`accepted`, `declined`, `timed_out`) |
//! | `alibridge.token.mints` | counter | |
//! | `alibridge.token.refreshes` | counter | |
//! | `alibridge.stream.reconnects` | counter | |
//! | `alibridge.stream.resumptions` | counter | |
//! | `alibridge.messages.oversized` | counter | |
//!
//! Attribute values come from peers (tool names), so each metric keeps at most
//! [`MAX_SERIES`] attribute sets; further ones are added up in one set marked
//! `otel.metric.overflow=true`, as the specification's cardinality limit says.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::record::{
    Attribute, CounterPoint, HistogramPoint, Metric, MetricData, MetricsRecord, Text, Value,
};
use super::{Event, Side};

/// The bucket boundaries the MCP conventions give for the duration histograms.
const DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Attribute sets kept per metric (the specification's default cardinality limit).
pub const MAX_SERIES: usize = 2000;

const CLIENT_DURATION: &str = "The duration of the MCP request or notification as observed on \
     the sender from the time it was sent until the response or ack is received.";
const SERVER_DURATION: &str = "MCP request or notification duration as observed on the \
     receiver from the time it was received until the result or ack is sent.";

/// Every instrument's running totals since `start`.
pub struct Instruments {
    start: u64,
    client: Mutex<Vec<HistogramPoint>>,
    server: Mutex<Vec<HistogramPoint>>,
    refusals: Mutex<Vec<CounterPoint>>,
    /// Accepted, declined, timed out.
    confirmations: [AtomicU64; 3],
    mints: AtomicU64,
    refreshes: AtomicU64,
    reconnects: AtomicU64,
    resumptions: AtomicU64,
    oversized: AtomicU64,
}

impl Instruments {
    /// Instruments whose cumulative points start at `start_unix_nano`.
    pub fn new(start_unix_nano: u64) -> Instruments {
        Instruments {
            start: start_unix_nano,
            client: Mutex::default(),
            server: Mutex::default(),
            refusals: Mutex::default(),
            confirmations: Default::default(),
            mints: AtomicU64::new(0),
            refreshes: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            resumptions: AtomicU64::new(0),
            oversized: AtomicU64::new(0),
        }
    }

    /// Records one operation's duration under `attrs` (and `extra`, the error type).
    pub(super) fn operation(
        &self,
        side: Side,
        secs: f64,
        attrs: &[Attribute],
        extra: Option<&Attribute>,
    ) {
        let series = match side {
            Side::Sender => &self.client,
            Side::Receiver => &self.server,
        };
        let Ok(mut points) = series.lock() else {
            return;
        };
        let point = point_for(&mut points, attrs, extra, || HistogramPoint {
            attributes: Vec::new(),
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            bucket_counts: vec![0; DURATION_BUCKETS.len() + 1],
        });
        point.count += 1;
        point.sum += secs;
        point.min = point.min.min(secs);
        point.max = point.max.max(secs);
        // A value on a boundary belongs to the bucket the boundary closes (`(lo, hi]`).
        let bucket = DURATION_BUCKETS.partition_point(|b| *b < secs);
        point.bucket_counts[bucket] += 1;
    }

    pub fn refusal(&self, tool: &str, rule: &str) {
        let Ok(mut points) = self.refusals.lock() else {
            return;
        };
        let attrs = [
            Attribute::new("gen_ai.tool.name", Text::from(tool.to_string())),
            Attribute::new("alibridge.policy.rule", Text::from(rule.to_string())),
        ];
        point_for(&mut points, &attrs, None, || CounterPoint {
            attributes: Vec::new(),
            value: 0,
        })
        .value += 1;
    }

    /// Counts one event.
    pub fn count(&self, event: Event) {
        let counter = match event {
            Event::TokenMint => &self.mints,
            Event::TokenRefresh => &self.refreshes,
            Event::Reconnect => &self.reconnects,
            Event::Resumption => &self.resumptions,
            Event::Oversized => &self.oversized,
            Event::ConfirmAccepted => &self.confirmations[0],
            Event::ConfirmDeclined => &self.confirmations[1],
            Event::ConfirmTimedOut => &self.confirmations[2],
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The totals now, as the export sends them: instruments never used are left out.
    pub fn collect(&self, now_unix_nano: u64) -> MetricsRecord {
        let mut metrics = Vec::new();
        for (name, about, series) in [
            (
                "mcp.client.operation.duration",
                CLIENT_DURATION,
                &self.client,
            ),
            (
                "mcp.server.operation.duration",
                SERVER_DURATION,
                &self.server,
            ),
        ] {
            let points = series.lock().map(|p| p.clone()).unwrap_or_default();
            if !points.is_empty() {
                metrics.push(Metric {
                    name,
                    description: about,
                    unit: "s",
                    data: MetricData::Histogram {
                        bounds: &DURATION_BUCKETS,
                        points,
                    },
                });
            }
        }
        let refusals = self.refusals.lock().map(|p| p.clone()).unwrap_or_default();
        let mut counter = |name, description, points: Vec<CounterPoint>| {
            if !points.is_empty() {
                metrics.push(Metric {
                    name,
                    description,
                    unit: "1",
                    data: MetricData::Counter { points },
                });
            }
        };
        counter(
            "alibridge.policy.refusals",
            "Tool calls the local policy refused.",
            refusals,
        );
        let confirmations = ["accepted", "declined", "timed_out"]
            .iter()
            .zip(&self.confirmations)
            .filter_map(|(outcome, n)| {
                let value = n.load(Ordering::Relaxed);
                (value > 0).then(|| CounterPoint {
                    attributes: vec![Attribute::new("alibridge.confirmation.outcome", *outcome)],
                    value,
                })
            })
            .collect();
        counter(
            "alibridge.confirmations",
            "Writes the person was asked to confirm, by outcome.",
            confirmations,
        );
        for (name, about, n) in [
            (
                "alibridge.token.mints",
                "AccessKey-to-bearer token mints.",
                &self.mints,
            ),
            (
                "alibridge.token.refreshes",
                "OAuth access tokens renewed with a refresh token.",
                &self.refreshes,
            ),
            (
                "alibridge.stream.reconnects",
                "Reconnects of the server's event stream.",
                &self.reconnects,
            ),
            (
                "alibridge.stream.resumptions",
                "Reconnects that resumed with Last-Event-ID.",
                &self.resumptions,
            ),
            (
                "alibridge.messages.oversized",
                "Messages over --max-message-size, dropped.",
                &self.oversized,
            ),
        ] {
            let value = n.load(Ordering::Relaxed);
            let points = if value > 0 {
                vec![CounterPoint {
                    attributes: Vec::new(),
                    value,
                }]
            } else {
                Vec::new()
            };
            counter(name, about, points);
        }
        MetricsRecord {
            start_unix_nano: self.start,
            time_unix_nano: now_unix_nano,
            metrics,
        }
    }
}

/// A point of a metric with its attributes (`attrs` and `extra`), found by value or added;
/// past [`MAX_SERIES`] the overflow point.
fn point_for<'a, P: Point>(
    points: &'a mut Vec<P>,
    attrs: &[Attribute],
    extra: Option<&Attribute>,
    empty: impl Fn() -> P,
) -> &'a mut P {
    let found = points
        .iter()
        .position(|p| same(p.attributes(), attrs, extra));
    let at = match found {
        Some(i) => i,
        None if points.len() < MAX_SERIES => {
            let mut p = empty();
            let kept = p.attributes_mut();
            kept.extend_from_slice(attrs);
            kept.extend(extra.cloned());
            points.push(p);
            points.len() - 1
        }
        None => {
            let overflow = [Attribute::new("otel.metric.overflow", Value::Bool(true))];
            match points
                .iter()
                .position(|p| same(p.attributes(), &overflow, None))
            {
                Some(i) => i,
                None => {
                    let mut p = empty();
                    *p.attributes_mut() = overflow.to_vec();
                    points.push(p);
                    points.len() - 1
                }
            }
        }
    };
    &mut points[at]
}

/// `kept` is `attrs` followed by `extra`. Keys are static, so the same key is usually the
/// same pointer.
fn same(kept: &[Attribute], attrs: &[Attribute], extra: Option<&Attribute>) -> bool {
    let eq = |x: &Attribute, y: &Attribute| {
        (std::ptr::eq(x.key, y.key) || x.key == y.key) && x.value == y.value
    };
    kept.len() == attrs.len() + usize::from(extra.is_some())
        && kept.iter().zip(attrs).all(|(x, y)| eq(x, y))
        && extra.is_none_or(|e| kept.last().is_some_and(|k| eq(k, e)))
}

trait Point {
    fn attributes(&self) -> &[Attribute];
    fn attributes_mut(&mut self) -> &mut Vec<Attribute>;
}

impl Point for HistogramPoint {
    fn attributes(&self) -> &[Attribute] {
        &self.attributes
    }
    fn attributes_mut(&mut self) -> &mut Vec<Attribute> {
        &mut self.attributes
    }
}

impl Point for CounterPoint {
    fn attributes(&self) -> &[Attribute] {
        &self.attributes
    }
    fn attributes_mut(&mut self) -> &mut Vec<Attribute> {
        &mut self.attributes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method(m: &'static str) -> Vec<Attribute> {
        vec![Attribute::new("mcp.method.name", m)]
    }

    #[test]
    fn durations_fall_into_the_conventions_buckets() {
        let i = Instruments::new(1);
        for secs in [0.005, 0.01, 0.011, 400.0] {
            i.operation(Side::Sender, secs, &method("tools/call"), None);
        }
        i.operation(Side::Sender, 0.3, &method("tools/list"), None);
        let r = i.collect(2);
        assert_eq!((r.start_unix_nano, r.time_unix_nano), (1, 2));
        let MetricData::Histogram { bounds, points } = &r.metrics[0].data else {
            panic!("histogram first");
        };
        assert_eq!(r.metrics[0].name, "mcp.client.operation.duration");
        assert_eq!(bounds.len(), 14);
        assert_eq!(points.len(), 2);
        let call = &points[0];
        assert_eq!(call.count, 4);
        assert_eq!(call.bucket_counts[0], 2, "0.005 and the boundary 0.01");
        assert_eq!(call.bucket_counts[1], 1);
        assert_eq!(call.bucket_counts[14], 1, "above the last bound");
        assert_eq!((call.min, call.max), (0.005, 400.0));
        assert!(r
            .metrics
            .iter()
            .all(|m| m.name != "mcp.server.operation.duration"));
    }

    #[test]
    fn equal_text_is_one_series_whatever_its_storage() {
        let i = Instruments::new(0);
        let shared: std::sync::Arc<str> = "echo".into();
        i.operation(
            Side::Receiver,
            0.1,
            &[Attribute::new("gen_ai.tool.name", Text::Shared(shared))],
            None,
        );
        i.operation(
            Side::Receiver,
            0.1,
            &[Attribute::new(
                "gen_ai.tool.name",
                Text::from("echo".to_string()),
            )],
            None,
        );
        // The error type makes a series of its own.
        let error = Attribute::new("error.type", "timeout");
        i.operation(
            Side::Receiver,
            0.2,
            &[Attribute::new("gen_ai.tool.name", Text::copy("echo"))],
            Some(&error),
        );
        let r = i.collect(1);
        let MetricData::Histogram { points, .. } = &r.metrics[0].data else {
            panic!()
        };
        assert_eq!((points.len(), points[0].count, points[1].count), (2, 2, 1));
        assert_eq!(points[1].attributes.last(), Some(&error));
    }

    #[test]
    fn peer_chosen_names_cannot_grow_a_metric_without_bound() {
        let i = Instruments::new(0);
        for n in 0..MAX_SERIES + 500 {
            i.refusal(&format!("tool-{n}"), "deny");
        }
        let r = i.collect(1);
        let MetricData::Counter { points } = &r.metrics[0].data else {
            panic!()
        };
        assert_eq!(points.len(), MAX_SERIES + 1);
        let overflow = points.last().unwrap();
        assert_eq!(overflow.attributes[0].key, "otel.metric.overflow");
        assert_eq!(overflow.value, 500);
    }

    #[test]
    fn counters_are_exported_once_used() {
        let i = Instruments::new(0);
        i.count(Event::TokenMint);
        i.count(Event::TokenMint);
        i.count(Event::ConfirmTimedOut);
        let r = i.collect(1);
        let names: Vec<_> = r.metrics.iter().map(|m| m.name).collect();
        assert_eq!(names, ["alibridge.confirmations", "alibridge.token.mints"]);
        let MetricData::Counter { points } = &r.metrics[1].data else {
            panic!()
        };
        assert_eq!(points[0].value, 2);
    }
}
