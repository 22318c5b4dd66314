//! Which collector, how, and what the process is called: `--otlp-endpoint` and the standard
//! `OTEL_*` variables, read into plain values. Nothing here starts anything; `alibridge doctor`
//! reads the same values to check the collector the bridge would use.

use std::time::Duration;

/// The exporter's defaults, from the OpenTelemetry specification.
const DEFAULT_TIMEOUT_MS: u64 = 10_000;
const DEFAULT_SCHEDULE_DELAY_MS: u64 = 5_000;
const DEFAULT_MAX_QUEUE: usize = 2_048;
const DEFAULT_MAX_BATCH: usize = 512;
const DEFAULT_METRIC_INTERVAL_MS: u64 = 60_000;

/// Where one signal goes and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signal {
    /// The full OTLP/HTTP URL (`…/v1/traces`, `…/v1/metrics`, or the per-signal variable).
    pub url: String,
    /// `http/json` rather than `http/protobuf`.
    pub json: bool,
    /// `OTEL_EXPORTER_OTLP_HEADERS` (or the signal's own), decoded. Values are secrets
    /// (API keys): never logged.
    pub headers: Vec<(String, String)>,
    /// One export's time limit.
    pub timeout: Duration,
    /// A protocol that is not built in (`grpc`): exported as `http/protobuf`, with a warning.
    pub unsupported_protocol: Option<String>,
}

/// Everything telemetry is started with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub traces: Option<Signal>,
    pub metrics: Option<Signal>,
    /// `OTEL_SERVICE_NAME`, else `service.name` from `OTEL_RESOURCE_ATTRIBUTES`, else `None`
    /// (the role's default name).
    pub service_name: Option<String>,
    /// `OTEL_RESOURCE_ATTRIBUTES`, decoded, `service.name` left out.
    pub resource: Vec<(String, String)>,
    /// `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`, as given.
    pub sampler: (Option<String>, Option<String>),
    /// `OTEL_BSP_SCHEDULE_DELAY`: how long a span may wait for its batch.
    pub schedule_delay: Duration,
    /// `OTEL_BSP_MAX_QUEUE_SIZE`: spans waiting for export beyond this are dropped.
    pub max_queue: usize,
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`.
    pub max_batch: usize,
    /// `OTEL_METRIC_EXPORT_INTERVAL`.
    pub metric_interval: Duration,
}

/// Reads the configuration: `None` when no collector is named (`--otlp-endpoint` `flag`,
/// `OTEL_EXPORTER_OTLP_ENDPOINT` or a per-signal endpoint) or `OTEL_SDK_DISABLED=true`.
/// `--otlp-endpoint` turns both signals on, like `OTEL_EXPORTER_OTLP_ENDPOINT`; the
/// per-signal variables each turn on theirs.
pub fn read(flag: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> Option<Config> {
    let set = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return None;
    }
    let base = flag
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(str::to_string)
        .or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"));
    let signal = |name: &str, path: &str| -> Option<Signal> {
        let own = |suffix: &str| set(&format!("OTEL_EXPORTER_OTLP_{name}_{suffix}"));
        let both =
            |suffix: &str| own(suffix).or_else(|| set(&format!("OTEL_EXPORTER_OTLP_{suffix}")));
        // The flag wins over the variables; a per-signal endpoint is used as given.
        let url = match (flag.filter(|f| !f.trim().is_empty()), own("ENDPOINT")) {
            (None, Some(exact)) => exact.trim().to_string(),
            _ => format!("{}/{path}", base.as_deref()?.trim().trim_end_matches('/')),
        };
        let protocol = both("PROTOCOL").unwrap_or_default();
        let protocol = protocol.trim();
        Some(Signal {
            url,
            json: protocol == "http/json",
            headers: both("HEADERS").map(|h| headers(&h)).unwrap_or_default(),
            timeout: Duration::from_millis(number(both("TIMEOUT"), DEFAULT_TIMEOUT_MS)),
            unsupported_protocol: (!matches!(protocol, "" | "http/json" | "http/protobuf"))
                .then(|| protocol.to_string()),
        })
    };
    let traces = signal("TRACES", "v1/traces");
    let metrics = signal("METRICS", "v1/metrics");
    if traces.is_none() && metrics.is_none() {
        return None;
    }
    let mut resource = set("OTEL_RESOURCE_ATTRIBUTES")
        .map(|r| pairs(&r))
        .unwrap_or_default();
    let from_resource = resource
        .iter()
        .position(|(k, _)| k == "service.name")
        .map(|i| resource.remove(i).1);
    Some(Config {
        traces,
        metrics,
        service_name: set("OTEL_SERVICE_NAME")
            .map(|s| s.trim().to_string())
            .or(from_resource),
        resource,
        sampler: (set("OTEL_TRACES_SAMPLER"), set("OTEL_TRACES_SAMPLER_ARG")),
        schedule_delay: Duration::from_millis(number(
            set("OTEL_BSP_SCHEDULE_DELAY"),
            DEFAULT_SCHEDULE_DELAY_MS,
        )),
        max_queue: number(set("OTEL_BSP_MAX_QUEUE_SIZE"), DEFAULT_MAX_QUEUE as u64)
            .clamp(1, 1 << 20) as usize,
        max_batch: number(
            set("OTEL_BSP_MAX_EXPORT_BATCH_SIZE"),
            DEFAULT_MAX_BATCH as u64,
        )
        .clamp(1, 1 << 16) as usize,
        metric_interval: Duration::from_millis(
            number(
                set("OTEL_METRIC_EXPORT_INTERVAL"),
                DEFAULT_METRIC_INTERVAL_MS,
            )
            .max(1),
        ),
    })
}

/// A non-negative integer variable; anything else is the default.
fn number(raw: Option<String>, default: u64) -> u64 {
    raw.and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

/// `OTEL_EXPORTER_OTLP_HEADERS`: `k1=v1,k2=v2`, values percent-encoded (the W3C Baggage
/// format the specification names); pairs without a key are skipped.
pub fn headers(raw: &str) -> Vec<(String, String)> {
    pairs(raw)
}

fn pairs(raw: &str) -> Vec<(String, String)> {
    raw.split(',')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let k = k.trim();
            (!k.is_empty()).then(|| (k.to_string(), percent_decode(v.trim())))
        })
        .collect()
}

/// `%XX` decoding; `+` stays `+` (this is not a form).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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

    fn urls(c: Option<Config>) -> (Option<String>, Option<String>) {
        let c = c.expect("on");
        (c.traces.map(|s| s.url), c.metrics.map(|s| s.url))
    }

    #[test]
    fn off_unless_a_collector_is_named() {
        assert_eq!(read(None, &env(&[("OTEL_SERVICE_NAME", "x")])), None);
    }

    #[test]
    fn the_flag_names_both_signal_paths() {
        assert_eq!(
            urls(read(Some("http://c:4318/"), &env(&[]))),
            (
                Some("http://c:4318/v1/traces".into()),
                Some("http://c:4318/v1/metrics".into())
            )
        );
    }

    #[test]
    fn per_signal_variables_turn_on_their_signal_only_and_are_used_as_given() {
        let t = env(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c/t")]);
        assert_eq!(urls(read(None, &t)), (Some("http://c/t".into()), None));
        let both = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"),
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://m/x"),
        ]);
        assert_eq!(
            urls(read(None, &both)),
            (Some("http://c/v1/traces".into()), Some("http://m/x".into()))
        );
    }

    #[test]
    fn sdk_disabled_wins_over_everything() {
        let e = env(&[
            ("OTEL_SDK_DISABLED", "TRUE"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"),
        ]);
        assert_eq!(read(Some("http://c"), &e), None);
    }

    #[test]
    fn protocol_headers_timeout_and_resource() {
        let c = read(
            None,
            &env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
                ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "grpc"),
                (
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "api-key=a%20b+c, x-team = t1,broken,=v",
                ),
                ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "250"),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "deployment.environment=ci,service.name=from-res",
                ),
            ]),
        )
        .unwrap();
        let t = c.traces.unwrap();
        assert!(t.json);
        assert_eq!(t.timeout, Duration::from_millis(250));
        assert_eq!(
            t.headers,
            vec![
                ("api-key".to_string(), "a b+c".to_string()),
                ("x-team".to_string(), "t1".to_string())
            ]
        );
        let m = c.metrics.unwrap();
        assert!(!m.json);
        assert_eq!(m.unsupported_protocol.as_deref(), Some("grpc"));
        assert_eq!(m.timeout, Duration::from_millis(DEFAULT_TIMEOUT_MS));
        assert_eq!(c.service_name.as_deref(), Some("from-res"));
        assert_eq!(
            c.resource,
            vec![("deployment.environment".to_string(), "ci".to_string())]
        );
        assert_eq!(c.max_queue, DEFAULT_MAX_QUEUE);
    }

    #[test]
    fn the_service_name_variable_wins() {
        let c = read(
            None,
            &env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"),
                ("OTEL_SERVICE_NAME", "agents"),
                ("OTEL_RESOURCE_ATTRIBUTES", "service.name=other"),
            ]),
        )
        .unwrap();
        assert_eq!(c.service_name.as_deref(), Some("agents"));
        assert!(c.resource.is_empty());
    }
}
