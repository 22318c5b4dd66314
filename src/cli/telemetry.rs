//! `--otlp-endpoint`: the one telemetry flag (the rest is the standard `OTEL_*` environment,
//! read by [`crate::telemetry`]). Its own `Args` struct, flattened into the flags the bridge
//! and `proxy` share.

use clap::Args;

/// Where traces and metrics go (OpenTelemetry, OTLP over HTTP).
#[derive(Debug, Clone, Default, Args)]
pub struct TelemetryArgs {
    /// Send OpenTelemetry traces and metrics to this OTLP/HTTP collector (base URL, e.g.
    /// http://localhost:4318; /v1/traces and /v1/metrics are added). Off by default; the
    /// standard OTEL_EXPORTER_OTLP_* variables work too (docs/observability.md).
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
}
