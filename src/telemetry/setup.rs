//! Telemetry setup: which collector (flag or `OTEL_*` variables), the OTLP/HTTP exporters,
//! the batch span processor and the periodic metric reader, and the bounded shutdown.
//!
//! The export runs on the SDK's own threads with reqwest's blocking client: a span ending on
//! the relay path is only pushed onto a bounded queue (`OTEL_BSP_MAX_QUEUE_SIZE`, 2048 by
//! default). When the collector is slow or gone the queue fills and spans are dropped, never
//! waited for; a failed export is counted and reported in **one** warning line. Each export is
//! a single attempt (no retry loop holding the export thread), within the OTLP timeout.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, RetryPolicy, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{SdkMeterProvider, Temporality};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use tracing::warn;

use super::Role;

/// How long exit waits for the last export: a dead or slow collector must not hold the
/// process (the client is waiting for it to go).
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// Where each signal goes, when it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targets {
    /// Full URL for traces, or `None`: the exporter reads the `OTEL_*` variables itself.
    pub traces: Option<Option<String>>,
    /// Likewise for metrics.
    pub metrics: Option<Option<String>>,
}

/// Which signals are on: `--otlp-endpoint` turns both on (its `/v1/traces` and `/v1/metrics`);
/// otherwise `OTEL_EXPORTER_OTLP_ENDPOINT` turns both on, and the per-signal variables each
/// turn on theirs. `OTEL_SDK_DISABLED=true` turns everything off.
pub fn targets(flag: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> Targets {
    let set = |k: &str| env(k).is_some_and(|v| !v.trim().is_empty());
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Targets {
            traces: None,
            metrics: None,
        };
    }
    if let Some(base) = flag.map(str::trim).filter(|b| !b.is_empty()) {
        let base = base.trim_end_matches('/');
        return Targets {
            traces: Some(Some(format!("{base}/v1/traces"))),
            metrics: Some(Some(format!("{base}/v1/metrics"))),
        };
    }
    let all = set("OTEL_EXPORTER_OTLP_ENDPOINT");
    Targets {
        traces: (all || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")).then_some(None),
        metrics: (all || set("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")).then_some(None),
    }
}

/// The providers in use; [`Running::stop`] flushes and shuts them down.
pub struct Running {
    traces: Option<SdkTracerProvider>,
    metrics: Option<SdkMeterProvider>,
    health: Arc<Health>,
}

impl Running {
    /// Exports what is queued and stops, waiting at most `SHUTDOWN_WAIT` per signal.
    pub fn stop(self) {
        super::spans::clear();
        if let Some(t) = &self.traces {
            let _ = t.shutdown_with_timeout(SHUTDOWN_WAIT);
        }
        if let Some(m) = &self.metrics {
            let _ = m.shutdown_with_timeout(SHUTDOWN_WAIT);
        }
        let dropped = self.health.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            tracing::debug!(dropped, "telemetry items the collector did not take");
        }
    }
}

/// Starts the configured signals; `None` when none is configured or setup failed (one
/// warning line; the bridge runs on without telemetry).
pub fn start(
    flag: Option<&str>,
    role: Role,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<Running> {
    let targets = targets(flag, env);
    if targets.traces.is_none() && targets.metrics.is_none() {
        return None;
    }
    crate::net::install_tls_provider();
    let resource = resource(role, env);
    let health = Arc::new(Health::default());
    let traces = match &targets.traces {
        Some(endpoint) => match span_exporter(endpoint.as_deref()) {
            Ok(exporter) => {
                let exporter = Watched {
                    inner: exporter,
                    health: health.clone(),
                };
                Some(
                    SdkTracerProvider::builder()
                        .with_resource(resource.clone())
                        .with_batch_exporter(exporter)
                        .build(),
                )
            }
            Err(e) => {
                warn!(error = %e, "telemetry: traces are off: the OTLP exporter could not be set up");
                None
            }
        },
        None => None,
    };
    let metrics = match &targets.metrics {
        Some(endpoint) => match metric_exporter(endpoint.as_deref()) {
            Ok(exporter) => {
                let exporter = Watched {
                    inner: exporter,
                    health: health.clone(),
                };
                Some(
                    SdkMeterProvider::builder()
                        .with_resource(resource)
                        .with_periodic_exporter(exporter)
                        .build(),
                )
            }
            Err(e) => {
                warn!(error = %e, "telemetry: metrics are off: the OTLP exporter could not be set up");
                None
            }
        },
        None => None,
    };
    if traces.is_none() && metrics.is_none() {
        return None;
    }
    super::spans::install(traces.as_ref(), metrics.as_ref());
    Some(Running {
        traces,
        metrics,
        health,
    })
}

/// `service.name` is `alibridge` (or `alibridge-proxy`) unless `OTEL_SERVICE_NAME` or
/// `OTEL_RESOURCE_ATTRIBUTES` say otherwise; the SDK reads both.
fn resource(role: Role, env: &dyn Fn(&str) -> Option<String>) -> Resource {
    let named = env("OTEL_SERVICE_NAME").is_some_and(|v| !v.trim().is_empty())
        || env("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|v| v.contains("service.name="));
    let version = KeyValue::new("service.version", env!("CARGO_PKG_VERSION"));
    let builder = Resource::builder().with_attribute(version);
    if named {
        builder.build()
    } else {
        builder
            .with_service_name(match role {
                Role::Bridge => "alibridge",
                Role::Proxy => "alibridge-proxy",
            })
            .build()
    }
}

/// `OTEL_EXPORTER_OTLP_PROTOCOL` (or the signal's own) as the exporter would read it: only the
/// two HTTP protocols are built in; `grpc` falls back to `http/protobuf` with a warning.
fn protocol(signal_var: &str) -> Protocol {
    let v = std::env::var(signal_var)
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_default();
    match v.trim() {
        "http/json" => Protocol::HttpJson,
        "" | "http/protobuf" => Protocol::HttpBinary,
        other => {
            warn!(
                protocol = other,
                "telemetry: only http/protobuf and http/json are built in; using http/protobuf"
            );
            Protocol::HttpBinary
        }
    }
}

fn span_exporter(
    endpoint: Option<&str>,
) -> Result<opentelemetry_otlp::SpanExporter, opentelemetry_otlp::ExporterBuildError> {
    let mut b = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
        .with_retry_policy(RetryPolicy::disabled());
    if let Some(e) = endpoint {
        b = b.with_endpoint(e);
    }
    b.build()
}

fn metric_exporter(
    endpoint: Option<&str>,
) -> Result<opentelemetry_otlp::MetricExporter, opentelemetry_otlp::ExporterBuildError> {
    let mut b = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_protocol(protocol("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"))
        .with_retry_policy(RetryPolicy::disabled())
        .with_temporality(Temporality::Cumulative);
    if let Some(e) = endpoint {
        b = b.with_endpoint(e);
    }
    b.build()
}

/// Failed exports: counted, and the first one warned about.
#[derive(Default)]
struct Health {
    warned: AtomicBool,
    dropped: AtomicU64,
}

impl Health {
    /// Records a failed export of `items`. The error text is not shown: it can hold the
    /// collector URL with credentials in it.
    fn failed(&self, items: usize) {
        self.dropped.fetch_add(items as u64, Ordering::Relaxed);
        if !self.warned.swap(true, Ordering::Relaxed) {
            warn!(
                "telemetry: the OTLP collector did not take an export; telemetry is being \
                 dropped (relaying is not affected). `alibridge doctor` checks the collector"
            );
        }
    }
}

/// An exporter whose failures go to [`Health`] instead of the SDK's own log.
struct Watched<E> {
    inner: E,
    health: Arc<Health>,
}

impl<E> std::fmt::Debug for Watched<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watched")
    }
}

impl<E: SpanExporter> SpanExporter for Watched<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let r = self.inner.export(batch).await;
        if r.is_err() {
            self.health.failed(n);
        }
        r
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: PushMetricExporter> PushMetricExporter for Watched<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let r = self.inner.export(metrics).await;
        if r.is_err() {
            self.health.failed(1);
        }
        r
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn off_unless_a_collector_is_named() {
        let t = targets(None, &env(&[("OTEL_SERVICE_NAME", "x")]));
        assert_eq!((t.traces, t.metrics), (None, None));
    }

    #[test]
    fn the_flag_names_both_signal_paths() {
        let t = targets(Some("http://c:4318/"), &env(&[]));
        assert_eq!(t.traces, Some(Some("http://c:4318/v1/traces".into())));
        assert_eq!(t.metrics, Some(Some("http://c:4318/v1/metrics".into())));
    }

    #[test]
    fn per_signal_variables_turn_on_their_signal_only() {
        let t = targets(
            None,
            &env(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c/t")]),
        );
        assert_eq!((t.traces, t.metrics), (Some(None), None));
        let t = targets(None, &env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c")]));
        assert_eq!((t.traces, t.metrics), (Some(None), Some(None)));
    }

    #[test]
    fn sdk_disabled_wins_over_everything() {
        let t = targets(
            Some("http://c"),
            &env(&[
                ("OTEL_SDK_DISABLED", "TRUE"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"),
            ]),
        );
        assert_eq!((t.traces, t.metrics), (None, None));
    }
}
