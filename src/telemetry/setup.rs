//! Starting and stopping telemetry: the configuration ([`super::config`]) turned into the
//! resource, the sampler, the instruments and the export thread ([`super::export`]), and the
//! hooks switched on; at exit, the hooks off and the last export, bounded.

use std::sync::Arc;

use tracing::warn;

use super::config::{self, Config};
use super::context::Sampler;
use super::export::{self, Exporter};
use super::instruments::Instruments;
use super::record::{now_unix_nano, Attribute, Resource, Text};
use super::spans;
use super::Role;

/// Telemetry while it runs; [`Running::stop`] ends it.
pub struct Running {
    export: export::Running,
}

impl Running {
    /// Switches the hooks off, exports what is queued and stops, waiting at most
    /// [`export::SHUTDOWN_WAIT`].
    pub fn stop(self) {
        spans::clear();
        self.export.stop();
    }
}

/// Starts the configured signals; `None` when none is configured or setup failed (one
/// warning line; the bridge runs on without telemetry).
pub fn start(
    flag: Option<&str>,
    role: Role,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<Running> {
    let cfg = config::read(flag, env)?;
    for signal in cfg.traces.iter().chain(&cfg.metrics) {
        if let Some(p) = &signal.unsupported_protocol {
            warn!(
                protocol = p.as_str(),
                "telemetry: only http/protobuf and http/json are built in; using http/protobuf"
            );
        }
        if url::Url::parse(&signal.url)
            .ok()
            .is_none_or(|u| !matches!(u.scheme(), "http" | "https"))
        {
            // The URL is not shown: it may carry credentials.
            warn!(
                "telemetry is off: the OTLP endpoint is not an http(s) URL; set \
                 --otlp-endpoint or OTEL_EXPORTER_OTLP_ENDPOINT to e.g. http://localhost:4318"
            );
            return None;
        }
    }
    let (name, arg) = &cfg.sampler;
    let sampler = Sampler::from_env(name.as_deref(), arg.as_deref()).unwrap_or_else(|| {
        warn!(
            sampler = name.as_deref().unwrap_or_default(),
            "telemetry: this OTEL_TRACES_SAMPLER is not built in; using parentbased_always_on"
        );
        Sampler::from_env(None, None).unwrap_or(Sampler::AlwaysOn)
    });
    let instruments = cfg
        .metrics
        .is_some()
        .then(|| Arc::new(Instruments::new(now_unix_nano())));
    let traces = cfg.traces.is_some();
    let exporter = Exporter {
        resource: resource(role, &cfg),
        metrics: cfg.metrics.clone().zip(instruments.clone()),
        traces: cfg.traces,
        schedule_delay: cfg.schedule_delay,
        metric_interval: cfg.metric_interval,
        max_queue: cfg.max_queue,
        max_batch: cfg.max_batch,
    };
    let export = match exporter.spawn() {
        Ok(running) => running,
        Err(e) => {
            warn!(error = %e, "telemetry is off: the OTLP export could not be started");
            return None;
        }
    };
    spans::install(traces, sampler, instruments);
    Some(Running { export })
}

/// `service.name` is `alibridge` (or `alibridge-proxy`) unless `OTEL_SERVICE_NAME` or
/// `OTEL_RESOURCE_ATTRIBUTES` say otherwise; the SDK attributes name alibridge itself.
fn resource(role: Role, cfg: &Config) -> Resource {
    let service = match &cfg.service_name {
        Some(name) => Text::from(name.clone()),
        None => Text::Static(match role {
            Role::Bridge => "alibridge",
            Role::Proxy => "alibridge-proxy",
        }),
    };
    let mut attributes = vec![
        Attribute::new("service.name", service),
        Attribute::new("service.version", env!("CARGO_PKG_VERSION")),
        Attribute::new("telemetry.sdk.name", "alibridge"),
        Attribute::new("telemetry.sdk.language", "rust"),
        Attribute::new("telemetry.sdk.version", env!("CARGO_PKG_VERSION")),
    ];
    // Resource keys are the user's own: `Attribute` keys are static, so they are kept for the
    // life of the process (read once at start).
    for (k, v) in &cfg.resource {
        let key: &'static str = Box::leak(k.clone().into_boxed_str());
        attributes.retain(|a| a.key != key);
        attributes.push(Attribute::new(key, Text::from(v.clone())));
    }
    Resource { attributes }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resource_names_the_role_unless_the_user_does() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let cfg = config::read(Some("http://c"), &env(&[])).unwrap();
        let r = resource(Role::Proxy, &cfg);
        assert_eq!(r.attributes[0].value, "alibridge-proxy".into());
        let cfg = config::read(
            Some("http://c"),
            &env(&[("OTEL_RESOURCE_ATTRIBUTES", "service.version=9,team=ops")]),
        )
        .unwrap();
        let r = resource(Role::Bridge, &cfg);
        let get = |k: &str| {
            r.attributes
                .iter()
                .find(|a| a.key == k)
                .map(|a| a.value.clone())
        };
        assert_eq!(get("service.name"), Some("alibridge".into()));
        assert_eq!(
            get("service.version"),
            Some(Text::from("9".to_string()).into())
        );
        assert_eq!(get("team"), Some(Text::from("ops".to_string()).into()));
        assert_eq!(
            r.attributes
                .iter()
                .filter(|a| a.key == "service.version")
                .count(),
            1
        );
    }
}
