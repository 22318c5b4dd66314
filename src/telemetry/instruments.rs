//! The metric instruments: the MCP conventions' operation-duration histograms and
//! alibridge's counters.
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

use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::SdkMeterProvider;

use super::{Event, Side};

/// The bucket boundaries the MCP conventions give for the duration histograms.
const DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Every instrument, made once.
pub struct Instruments {
    client_duration: Histogram<f64>,
    server_duration: Histogram<f64>,
    refusals: Counter<u64>,
    confirmations: Counter<u64>,
    mints: Counter<u64>,
    refreshes: Counter<u64>,
    reconnects: Counter<u64>,
    resumptions: Counter<u64>,
    oversized: Counter<u64>,
}

impl Instruments {
    pub(super) fn new(provider: &SdkMeterProvider) -> Instruments {
        let meter = provider.meter("alibridge");
        let duration = |name: &'static str, about: &'static str| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_description(about)
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build()
        };
        let counter = |m: &Meter, name: &'static str, about: &'static str| {
            m.u64_counter(name).with_description(about).build()
        };
        Instruments {
            client_duration: duration(
                "mcp.client.operation.duration",
                "The duration of the MCP request or notification as observed on the sender \
                 from the time it was sent until the response or ack is received.",
            ),
            server_duration: duration(
                "mcp.server.operation.duration",
                "MCP request or notification duration as observed on the receiver from the \
                 time it was received until the result or ack is sent.",
            ),
            refusals: counter(
                &meter,
                "alibridge.policy.refusals",
                "Tool calls the local policy refused.",
            ),
            confirmations: counter(
                &meter,
                "alibridge.confirmations",
                "Writes the person was asked to confirm, by outcome.",
            ),
            mints: counter(
                &meter,
                "alibridge.token.mints",
                "AccessKey-to-bearer token mints.",
            ),
            refreshes: counter(
                &meter,
                "alibridge.token.refreshes",
                "OAuth token refreshes and sign-ins.",
            ),
            reconnects: counter(
                &meter,
                "alibridge.stream.reconnects",
                "Reconnects of the server's event stream.",
            ),
            resumptions: counter(
                &meter,
                "alibridge.stream.resumptions",
                "Reconnects that resumed with Last-Event-ID.",
            ),
            oversized: counter(
                &meter,
                "alibridge.messages.oversized",
                "Messages over --max-message-size, dropped.",
            ),
        }
    }

    pub(super) fn operation(&self, side: Side, secs: f64, attrs: &[KeyValue]) {
        match side {
            Side::Sender => self.client_duration.record(secs, attrs),
            Side::Receiver => self.server_duration.record(secs, attrs),
        }
    }

    pub(super) fn refusal(&self, tool: &str, rule: &str) {
        self.refusals.add(
            1,
            &[
                KeyValue::new("gen_ai.tool.name", tool.to_string()),
                KeyValue::new("alibridge.policy.rule", rule.to_string()),
            ],
        );
    }

    /// Counts one event.
    pub(super) fn count(&self, event: Event) {
        let i = self;
        let outcome = |o: &'static str| [KeyValue::new("alibridge.confirmation.outcome", o)];
        match event {
            Event::TokenMint => i.mints.add(1, &[]),
            Event::TokenRefresh => i.refreshes.add(1, &[]),
            Event::Reconnect => i.reconnects.add(1, &[]),
            Event::Resumption => i.resumptions.add(1, &[]),
            Event::Oversized => i.oversized.add(1, &[]),
            Event::ConfirmAccepted => i.confirmations.add(1, &outcome("accepted")),
            Event::ConfirmDeclined => i.confirmations.add(1, &outcome("declined")),
            Event::ConfirmTimedOut => i.confirmations.add(1, &outcome("timed_out")),
        }
    }
}
