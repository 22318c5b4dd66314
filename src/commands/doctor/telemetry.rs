//! The telemetry check of `doctor`: when a collector is configured (`--otlp-endpoint` among
//! the bridge flags, or the `OTEL_EXPORTER_OTLP_*` variables), it is sent an empty trace
//! export, as the bridge would send one, and must accept it. Silent when none is configured.

use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE};

use super::{Report, STEP_TIMEOUT};
use crate::net::{describe, display_url};

/// Checks the configured collector: reachable, and an empty export is answered 2xx.
pub(super) async fn check_collector(r: &mut Report, bridge_flags: &[String]) {
    let env = |k: &str| std::env::var(k).ok();
    let flag = flag_value(bridge_flags, "--otlp-endpoint");
    let Some(signal) = crate::telemetry::traces_endpoint(flag, &env) else {
        return;
    };
    if !cfg!(feature = "otel") {
        r.fail(
            "telemetry",
            "an OTLP collector is configured, but this alibridge was built without the `otel` feature",
            "use a build with default features, or unset OTEL_EXPORTER_OTLP_* / --otlp-endpoint",
        );
        return;
    }
    let Ok(url) = url::Url::parse(&signal.url) else {
        r.fail(
            "telemetry",
            "the OTLP endpoint is not a valid URL",
            "set --otlp-endpoint or OTEL_EXPORTER_OTLP_ENDPOINT to e.g. http://localhost:4318",
        );
        return;
    };
    let shown = display_url(&url);
    let Ok(client) = crate::net::client_builder(STEP_TIMEOUT).build() else {
        r.fail(
            "telemetry",
            "could not set up an HTTP client",
            "report this bug",
        );
        return;
    };
    // An empty ExportTraceServiceRequest: no bytes in protobuf, `{}` in JSON.
    let (content_type, body) = if signal.json {
        ("application/json", "{}")
    } else {
        ("application/x-protobuf", "")
    };
    let mut req = client
        .post(url.clone())
        .header(CONTENT_TYPE, content_type)
        .body(body)
        .timeout(STEP_TIMEOUT);
    for (name, value) in headers(&signal.headers) {
        req = req.header(name, value);
    }
    match req.send().await {
        Ok(resp) if resp.status().is_success() => r.ok(
            "telemetry",
            format!(
                "the OTLP collector at {shown} accepts an empty export (HTTP {})",
                resp.status().as_u16()
            ),
        ),
        Ok(resp) => r.fail(
            "telemetry",
            format!(
                "the OTLP collector at {shown} refused an empty export with HTTP {}",
                resp.status().as_u16()
            ),
            "check the endpoint (OTLP/HTTP, usually port 4318), the protocol \
             (OTEL_EXPORTER_OTLP_PROTOCOL) and OTEL_EXPORTER_OTLP_HEADERS",
        ),
        Err(e) => r.fail(
            "telemetry",
            format!(
                "the OTLP collector at {shown} is not reachable: {}",
                describe(&e)
            ),
            "start the collector, or fix --otlp-endpoint / OTEL_EXPORTER_OTLP_ENDPOINT \
             (relaying works without it; spans are dropped)",
        ),
    }
}

/// The value after `name` (`--name V` or `--name=V`) among the bridge flags.
fn flag_value<'a>(flags: &'a [String], name: &str) -> Option<&'a str> {
    let mut it = flags.iter();
    while let Some(f) = it.next() {
        if f == name {
            return it.next().map(String::as_str);
        }
        if let Some(v) = f.strip_prefix(name).and_then(|v| v.strip_prefix('=')) {
            return Some(v);
        }
    }
    None
}

/// The configured headers as HTTP headers, marked sensitive (they are API keys); pairs that
/// are not valid headers are skipped.
fn headers(pairs: &[(String, String)]) -> Vec<(HeaderName, HeaderValue)> {
    pairs
        .iter()
        .filter_map(|(k, v)| {
            let mut value = HeaderValue::from_str(v).ok()?;
            value.set_sensitive(true);
            Some((HeaderName::from_bytes(k.as_bytes()).ok()?, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_flag_in_both_spellings() {
        let f = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let a = f(&["--read-only", "--otlp-endpoint", "http://c:4318"]);
        assert_eq!(flag_value(&a, "--otlp-endpoint"), Some("http://c:4318"));
        let b = f(&["--otlp-endpoint=http://c"]);
        assert_eq!(flag_value(&b, "--otlp-endpoint"), Some("http://c"));
        assert_eq!(flag_value(&f(&["--debug"]), "--otlp-endpoint"), None);
    }

    #[test]
    fn invalid_header_pairs_are_skipped() {
        let pairs = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        let h = headers(&pairs(&[
            ("api-key", "a b"),
            ("bad name", "x"),
            ("x", "\n"),
        ]));
        assert_eq!(
            h.len(),
            1,
            "a name with a space and a value with a newline are not headers"
        );
        assert_eq!(h[0].0.as_str(), "api-key");
        assert!(h[0].1.is_sensitive());
    }
}
