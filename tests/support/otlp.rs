//! A real OTLP/HTTP receiver for the observability tests: `POST /v1/traces` and
//! `/v1/metrics`, protobuf (`application/x-protobuf`) or JSON (`application/json`), decoded
//! with the official `opentelemetry-proto` messages (prost; no gRPC). Tests read the spans and
//! metric points back, and the raw bytes of every export (to search for values that must never
//! be exported).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point;
use prost::Message;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::net;
use super::wait::until_notified;

/// One exported span, flattened.
#[derive(Debug, Clone)]
pub struct Span {
    pub name: String,
    /// `SPAN_KIND_*` number: 2 server, 3 client, 1 internal.
    pub kind: i32,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    /// Every attribute as text.
    pub attributes: BTreeMap<String, String>,
    /// `STATUS_CODE_*` number: 2 error.
    pub status: i32,
    /// `service.name` of the resource.
    pub service: String,
    /// When the span ended, nanoseconds since the Unix epoch.
    pub end_time_unix_nano: u64,
}

impl Span {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// One metric data point (sum or histogram count), flattened.
#[derive(Debug, Clone)]
pub struct Point {
    pub metric: String,
    pub unit: String,
    pub attributes: BTreeMap<String, String>,
    /// The sum's value, or the histogram's count.
    pub value: f64,
    /// The histogram's bucket boundaries (empty for sums).
    pub bounds: Vec<f64>,
    /// A sum declared monotonic (a counter); false for histograms.
    pub monotonic: bool,
}

#[derive(Default)]
struct Shared {
    spans: Mutex<Vec<Span>>,
    points: Mutex<Vec<Point>>,
    /// Every request body received, as received.
    raw: Mutex<Vec<u8>>,
    /// `Content-Type` of each export, in order.
    content_types: Mutex<Vec<String>>,
    /// Exports with an empty body (an empty protobuf message: `alibridge doctor`'s check).
    empty: Mutex<usize>,
    changed: Notify,
}

/// The running receiver; dropping it stops it.
pub struct OtlpReceiver {
    url: String,
    shared: Arc<Shared>,
    kill: CancellationToken,
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.kill.cancel();
    }
}

impl OtlpReceiver {
    pub async fn start() -> OtlpReceiver {
        let listener = net::listen(IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared::default());
        let kill = CancellationToken::new();
        let s = shared.clone();
        net::serve(listener, kill.clone(), move |req| {
            let s = s.clone();
            async move {
                let (parts, body) = net::read_body(req).await;
                let ct = parts
                    .headers
                    .get(hyper::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let status = s.take(parts.uri.path(), &ct, &body);
                let mut resp = Response::new(Full::new(Bytes::new()));
                *resp.status_mut() = status;
                resp
            }
        });
        OtlpReceiver { url, shared, kill }
    }

    /// The base URL (`http://127.0.0.1:PORT`), for `--otlp-endpoint` or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn spans(&self) -> Vec<Span> {
        self.shared.spans.lock().unwrap().clone()
    }

    pub fn points(&self) -> Vec<Point> {
        self.shared.points.lock().unwrap().clone()
    }

    /// Every byte every export carried.
    pub fn raw(&self) -> Vec<u8> {
        self.shared.raw.lock().unwrap().clone()
    }

    /// How many exports had an empty body.
    pub fn empty_exports(&self) -> usize {
        *self.shared.empty.lock().unwrap()
    }

    pub fn content_types(&self) -> Vec<String> {
        self.shared.content_types.lock().unwrap().clone()
    }

    /// Waits until a span satisfying `matches` has arrived, and returns it.
    pub async fn span(&self, what: &str, matches: impl Fn(&Span) -> bool) -> Span {
        until_notified(&self.shared.changed, what, || {
            self.spans().into_iter().find(|s| matches(s))
        })
        .await
    }

    /// Waits until a point of `metric` satisfying `matches` has arrived (the latest such).
    pub async fn point(&self, metric: &str, matches: impl Fn(&Point) -> bool) -> Point {
        until_notified(&self.shared.changed, metric, || {
            self.points()
                .into_iter()
                .rev()
                .find(|p| p.metric == metric && matches(p))
        })
        .await
    }
}

impl Shared {
    /// Decodes and stores one export; the status answered.
    fn take(&self, path: &str, content_type: &str, body: &[u8]) -> StatusCode {
        let json = content_type.starts_with("application/json");
        if !json && !content_type.starts_with("application/x-protobuf") {
            return StatusCode::UNSUPPORTED_MEDIA_TYPE;
        }
        self.raw.lock().unwrap().extend_from_slice(body);
        if body.is_empty() {
            *self.empty.lock().unwrap() += 1;
        }
        self.content_types
            .lock()
            .unwrap()
            .push(content_type.to_string());
        let ok = match path {
            "/v1/traces" => {
                let req: Option<ExportTraceServiceRequest> = if json {
                    serde_json::from_slice(body).ok()
                } else {
                    ExportTraceServiceRequest::decode(body).ok()
                };
                req.map(|r| self.spans.lock().unwrap().extend(spans_of(r)))
                    .is_some()
            }
            "/v1/metrics" => {
                let req: Option<ExportMetricsServiceRequest> = if json {
                    serde_json::from_slice(body).ok()
                } else {
                    ExportMetricsServiceRequest::decode(body).ok()
                };
                req.map(|r| self.points.lock().unwrap().extend(points_of(r)))
                    .is_some()
            }
            _ => return StatusCode::NOT_FOUND,
        };
        self.changed.notify_waiters();
        if ok {
            StatusCode::OK
        } else {
            StatusCode::BAD_REQUEST
        }
    }
}

fn text(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attrs(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), text(&kv.value)))
        .collect()
}

fn spans_of(req: ExportTraceServiceRequest) -> Vec<Span> {
    let mut out = Vec::new();
    for rs in req.resource_spans {
        let resource = rs
            .resource
            .map(|r| attrs(&r.attributes))
            .unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                out.push(Span {
                    name: s.name,
                    kind: s.kind,
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent_span_id: hex(&s.parent_span_id),
                    attributes: attrs(&s.attributes),
                    status: s.status.map(|st| st.code).unwrap_or(0),
                    service: service.clone(),
                    end_time_unix_nano: s.end_time_unix_nano,
                });
            }
        }
    }
    out
}

fn points_of(req: ExportMetricsServiceRequest) -> Vec<Point> {
    let mut out = Vec::new();
    for rm in req.resource_metrics {
        for sm in rm.scope_metrics {
            for m in sm.metrics {
                let monotonic = matches!(&m.data, Some(Data::Sum(s)) if s.is_monotonic);
                let point = |attributes: &[KeyValue], value: f64, bounds: Vec<f64>| Point {
                    metric: m.name.clone(),
                    unit: m.unit.clone(),
                    attributes: attrs(attributes),
                    value,
                    bounds,
                    monotonic,
                };
                match &m.data {
                    Some(Data::Sum(s)) => {
                        for p in &s.data_points {
                            let v = match p.value {
                                Some(number_data_point::Value::AsInt(i)) => i as f64,
                                Some(number_data_point::Value::AsDouble(d)) => d,
                                None => 0.0,
                            };
                            out.push(point(&p.attributes, v, Vec::new()));
                        }
                    }
                    Some(Data::Histogram(h)) => {
                        for p in &h.data_points {
                            out.push(point(
                                &p.attributes,
                                p.count as f64,
                                p.explicit_bounds.clone(),
                            ));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// OTLP `Span.SpanKind` values.
pub const SERVER: i32 = 2;
pub const CLIENT: i32 = 3;

/// The spans among `spans` whose parent is `parent`.
pub fn children<'a>(spans: &'a [Span], parent: &Span) -> Vec<&'a Span> {
    spans
        .iter()
        .filter(|s| s.parent_span_id == parent.span_id && s.trace_id == parent.trace_id)
        .collect()
}

/// A bridge to `url` (Streamable HTTP only) exporting to the receiver at `otlp`, with `extra`
/// flags and `env`.
pub fn exporting_bridge(
    url: String,
    otlp: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> crate::support::bridge::Bridge {
    let mut args = vec![
        url,
        "--transport".into(),
        "http-only".into(),
        "--otlp-endpoint".into(),
        otlp.into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    crate::support::bridge::Bridge::spawn_with_env(args, env.iter().copied())
}

/// One `tools/call echo` (request `id`, with `meta` as its `params._meta` when given) through
/// an `alibridge proxy` exporting to `otlp`, stopped afterwards so that its spans are
/// exported. Returns the upstream (it records what reached it) and the client's session id.
pub async fn echo_through_proxy(
    otlp: &OtlpReceiver,
    id: u64,
    meta: Option<serde_json::Value>,
) -> (crate::support::mcp_server::TestServer, String) {
    use crate::support::proxy::{handshake, plain_rig, post};
    let (server, mut proxy) = plain_rig(&["--otlp-endpoint", otlp.url()]).await;
    let url = proxy.url("/mcp");
    let sid = handshake(&url).await;
    let mut params = serde_json::json!({"name": "echo", "arguments": {"text": "via-proxy"}});
    if let Some(meta) = meta {
        params["_meta"] = meta;
    }
    let call =
        serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params});
    let r = post(&url, Some(&sid), &call.to_string()).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("via-proxy"));
    proxy.sigterm();
    proxy.wait().await;
    (server, sid)
}
