//! The protocol era of a run as a small state machine, without any I/O: which states there are
//! ([`Era`]), what each does with a client message ([`Era::on_message`]), and the choices made
//! while the first message decides ([`first_contact`], [`after_initialize`], [`after_probe`]).
//! `Upstream::send` dispatches on the [`Step`] it gets and feeds back the outcome.
//!
//! ```text
//!   Undecided ──(legacy only, or a message that cannot decide)──────────────▶ Legacy
//!   Undecided ──(initialize: first contact, probe)──▶ Legacy | Modern(translating)
//!   Undecided ──(a modern client's first request: its answer)──▶ Modern(passthrough) | Legacy
//!   Legacy | Modern ──(the endpoint moves: reset)──▶ Undecided
//! ```
//!
//! A cold start (`--protocol auto`, Streamable HTTP, nothing remembered) sends the client's
//! `initialize` first: a server of the `initialize` era answers it with a session and nothing
//! else is asked, so the era costs no round trip of its own. A refusal (HTTP 400/404/405
//! without a session, or a modern JSON-RPC error) or a stateless answer sends `server/discover`
//! next; a modern server pays that trip, and the era cache remembers it so the next start
//! probes at once.

use tracing::info;

use super::era_cache::Learned;
use super::modern::is_modern_shaped;
use crate::jsonrpc::Message;

/// `--protocol` values: which MCP era the bridge may speak to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProtocolMode {
    /// Decide on the client's `initialize`: sent first, a server of the `initialize` era takes
    /// it; a refusal (or a stateless answer) is followed by a `server/discover` probe, and a
    /// modern server (2026-07-28) is translated for.
    Auto,
    /// The `initialize` era only (2025-11-25 and earlier); never probes.
    Legacy,
    /// MCP 2026-07-28 only: a server that does not speak it is refused with an error.
    Modern,
}

/// What the run is configured to allow, as far as the era is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub protocol: ProtocolMode,
    /// `--transport http-first` or `http-only`: Streamable HTTP is tried first.
    pub http_first: bool,
}

impl Policy {
    /// No probe can be needed: `--protocol legacy`, or `auto` towards an HTTP+SSE endpoint
    /// (no modern server is reached that way).
    fn legacy_only(self) -> bool {
        self.protocol == ProtocolMode::Legacy
            || (self.protocol == ProtocolMode::Auto && !self.http_first)
    }
}

/// What a client message can tell about the era.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A request `initialize`: the client speaks the `initialize` era.
    Initialize,
    /// `server/discover`, or a request whose `_meta` names a protocol version.
    Modern,
    /// Anything else (a notification, a response, a request before any handshake).
    Other,
}

impl Shape {
    pub fn of(msg: &Message) -> Shape {
        if msg.is_request() && msg.method_is("initialize") {
            Shape::Initialize
        } else if is_modern_shaped(msg) {
            Shape::Modern
        } else {
            Shape::Other
        }
    }
}

/// The era settled for the run; `M` is the modern transport.
#[derive(Debug)]
pub enum Era<M> {
    Undecided,
    /// The `initialize`-era transports (Streamable HTTP, HTTP+SSE).
    Legacy,
    Modern(M),
}

/// What to do with one message, as [`Era::on_message`] says.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<M> {
    /// Through the `initialize`-era transports (the era is, or has just become, legacy).
    Legacy,
    /// Through this modern transport.
    Modern(M),
    /// Undecided, the client's `initialize`: decide by [`first_contact`].
    Initialize,
    /// Undecided, a modern client's first message: relay it; its answer decides.
    ModernFirst,
    /// Undecided under `--protocol modern`, a message that cannot decide: refuse it.
    Refuse,
}

impl<M: Clone> Era<M> {
    /// The event "a client message arrived": settled states route it; `Undecided` either
    /// settles on legacy at once (nothing to probe) or says which decision the message starts.
    /// `shape` is asked only while the era is undecided (reading a message's shape is a
    /// parse; once the era is settled, no message needs one).
    pub fn on_message(&mut self, policy: Policy, shape: impl FnOnce() -> Shape) -> Step<M> {
        match self {
            Era::Legacy => return Step::Legacy,
            Era::Modern(m) => return Step::Modern(m.clone()),
            Era::Undecided => {}
        }
        if policy.legacy_only() {
            info!(
                "protocol: the initialize era (--protocol {:?}, {}); no server/discover probe",
                policy.protocol,
                if policy.http_first {
                    "Streamable HTTP"
                } else {
                    "HTTP+SSE first"
                }
            );
            *self = Era::Legacy;
            return Step::Legacy;
        }
        match shape() {
            Shape::Initialize => Step::Initialize,
            Shape::Modern => Step::ModernFirst,
            Shape::Other if policy.protocol == ProtocolMode::Modern => Step::Refuse,
            Shape::Other => {
                *self = Era::Legacy;
                Step::Legacy
            }
        }
    }

    /// The event "the decision is made".
    pub fn settle(&mut self, era: Era<M>) {
        *self = era;
    }

    /// The event "the endpoint moved or the upstream closes": back to `Undecided`; returns the
    /// modern transport that was in use, to be closed.
    pub fn reset(&mut self) -> Option<M> {
        match std::mem::replace(self, Era::Undecided) {
            Era::Modern(m) => Some(m),
            _ => None,
        }
    }
}

/// How the client's `initialize` first meets the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstContact {
    /// Send it as it is; a server of the `initialize` era answers and nothing else is asked.
    /// `trust_stateless`: an answer without a session settles legacy too (remembered so), instead
    /// of being checked with a probe.
    InitializeFirst { trust_stateless: bool },
    /// Probe with `server/discover` first: the server is known (remembered) or required
    /// (`--protocol modern`) to be modern, and its discover result is what the translated
    /// `initialize` answer is made of.
    ProbeFirst,
}

/// The first contact for `initialize` under `protocol`, with what an earlier run learned.
pub fn first_contact(protocol: ProtocolMode, remembered: Option<Learned>) -> FirstContact {
    match (protocol, remembered) {
        (ProtocolMode::Modern, _) | (_, Some(Learned::Modern)) => FirstContact::ProbeFirst,
        (_, Some(Learned::Legacy)) => FirstContact::InitializeFirst {
            trust_stateless: true,
        },
        (_, None) => FirstContact::InitializeFirst {
            trust_stateless: false,
        },
    }
}

/// What the server did with an `initialize` sent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tried {
    /// Answered, with a session: a server of the `initialize` era.
    Session,
    /// Answered, without a session: a stateless server, which may be a modern server's
    /// fallback leg (the TypeScript SDK 2.x `legacy: 'stateless'`).
    Stateless,
    /// Refused as a modern-only server refuses 2025 traffic: HTTP 400/404/405 without a
    /// session, or a modern JSON-RPC error (−32020…−32022).
    Refused,
}

/// After an `initialize` sent first: settle on legacy, or probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterInitialize {
    Legacy,
    Probe,
}

pub fn after_initialize(tried: Tried, trust_stateless: bool) -> AfterInitialize {
    match tried {
        Tried::Session => AfterInitialize::Legacy,
        Tried::Stateless if trust_stateless => AfterInitialize::Legacy,
        Tried::Stateless | Tried::Refused => AfterInitialize::Probe,
    }
}

/// What a `server/discover` probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// A modern server; `lists_legacy`: its discover result lists versions of the
    /// `initialize` era too.
    Modern { lists_legacy: bool },
    /// Anything else.
    Legacy,
}

/// The verdict of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Translate for the `initialize`-era client.
    Translate,
    /// The `initialize` era.
    Legacy,
    /// `--protocol modern` and a server that does not speak it: refuse.
    NotModern,
}

/// `refused`: the server already refused the client's `initialize` (so a dual-era listing does
/// not make the `initialize` era usable).
pub fn after_probe(protocol: ProtocolMode, found: Found, refused: bool) -> Verdict {
    match found {
        Found::Legacy if protocol == ProtocolMode::Modern => Verdict::NotModern,
        Found::Legacy => Verdict::Legacy,
        // A server that also lists versions of the initialize era is best served in it: no
        // translation, and the server negotiates the version, keeps a session and sends its
        // requests as the client expects.
        Found::Modern { lists_legacy: true } if protocol == ProtocolMode::Auto && !refused => {
            Verdict::Legacy
        }
        Found::Modern { .. } => Verdict::Translate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUTO_HTTP: Policy = Policy {
        protocol: ProtocolMode::Auto,
        http_first: true,
    };

    fn shape(s: &'static str) -> Shape {
        Shape::of(&Message::parse(bytes::Bytes::from_static(s.as_bytes())).unwrap())
    }

    #[test]
    fn messages_tell_their_shape() {
        assert_eq!(
            shape(r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}"#),
            Shape::Initialize
        );
        assert_eq!(
            shape(r#"{"jsonrpc":"2.0","id":0,"method":"server/discover"}"#),
            Shape::Modern
        );
        assert_eq!(
            shape(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Shape::Other
        );
    }

    #[test]
    fn settled_states_route_every_message_there() {
        let mut era: Era<u8> = Era::Legacy;
        for s in [Shape::Initialize, Shape::Modern, Shape::Other] {
            assert_eq!(era.on_message(AUTO_HTTP, || s), Step::Legacy);
        }
        let mut era: Era<u8> = Era::Modern(7);
        for s in [Shape::Initialize, Shape::Modern, Shape::Other] {
            assert_eq!(era.on_message(AUTO_HTTP, || s), Step::Modern(7));
        }
        // A settled era reads no message's shape.
        let unread = || -> Shape { panic!("the shape was read after the era was settled") };
        assert_eq!(era.on_message(AUTO_HTTP, unread), Step::Modern(7));
        assert_eq!(
            Era::<u8>::Legacy.on_message(AUTO_HTTP, unread),
            Step::Legacy
        );
        assert_eq!(era.reset(), Some(7));
        assert!(matches!(era, Era::Undecided));
    }

    #[test]
    fn undecided_starts_a_decision_or_settles_on_legacy() {
        let fresh = || Era::<u8>::Undecided;
        let mut era = fresh();
        assert_eq!(
            era.on_message(AUTO_HTTP, || Shape::Initialize),
            Step::Initialize
        );
        assert!(matches!(era, Era::Undecided), "decided by the caller");
        assert_eq!(
            era.on_message(AUTO_HTTP, || Shape::Modern),
            Step::ModernFirst
        );
        assert_eq!(era.on_message(AUTO_HTTP, || Shape::Other), Step::Legacy);
        assert!(matches!(era, Era::Legacy), "nothing to probe with: legacy");

        let sse = Policy {
            protocol: ProtocolMode::Auto,
            http_first: false,
        };
        let legacy = Policy {
            protocol: ProtocolMode::Legacy,
            http_first: true,
        };
        for p in [sse, legacy] {
            let mut era = fresh();
            assert_eq!(
                era.on_message(p, || Shape::Initialize),
                Step::Legacy,
                "{p:?}"
            );
            assert!(matches!(era, Era::Legacy));
        }

        let modern = Policy {
            protocol: ProtocolMode::Modern,
            http_first: false,
        };
        let mut era = fresh();
        assert_eq!(era.on_message(modern, || Shape::Other), Step::Refuse);
        assert!(matches!(era, Era::Undecided), "a refusal decides nothing");
        assert_eq!(
            era.on_message(modern, || Shape::Initialize),
            Step::Initialize
        );
        era.settle(Era::Modern(1));
        assert_eq!(era.on_message(modern, || Shape::Other), Step::Modern(1));
    }

    #[test]
    fn a_cold_start_sends_initialize_first_and_a_remembered_modern_server_is_probed() {
        use FirstContact::*;
        assert_eq!(
            first_contact(ProtocolMode::Auto, None),
            InitializeFirst {
                trust_stateless: false
            }
        );
        assert_eq!(
            first_contact(ProtocolMode::Auto, Some(Learned::Legacy)),
            InitializeFirst {
                trust_stateless: true
            }
        );
        assert_eq!(
            first_contact(ProtocolMode::Auto, Some(Learned::Modern)),
            ProbeFirst
        );
        assert_eq!(first_contact(ProtocolMode::Modern, None), ProbeFirst);
    }

    #[test]
    fn only_a_session_or_a_remembered_era_settles_without_a_probe() {
        use AfterInitialize::*;
        assert_eq!(after_initialize(Tried::Session, false), Legacy);
        assert_eq!(after_initialize(Tried::Stateless, false), Probe);
        assert_eq!(after_initialize(Tried::Stateless, true), Legacy);
        assert_eq!(after_initialize(Tried::Refused, false), Probe);
        assert_eq!(after_initialize(Tried::Refused, true), Probe);
    }

    #[test]
    fn probe_verdicts() {
        use ProtocolMode::*;
        let dual = Found::Modern { lists_legacy: true };
        let only = Found::Modern {
            lists_legacy: false,
        };
        assert_eq!(after_probe(Auto, Found::Legacy, false), Verdict::Legacy);
        assert_eq!(after_probe(Auto, Found::Legacy, true), Verdict::Legacy);
        assert_eq!(
            after_probe(Modern, Found::Legacy, false),
            Verdict::NotModern
        );
        assert_eq!(after_probe(Auto, dual, false), Verdict::Legacy);
        assert_eq!(
            after_probe(Auto, dual, true),
            Verdict::Translate,
            "it refused the client's initialize"
        );
        assert_eq!(after_probe(Modern, dual, false), Verdict::Translate);
        assert_eq!(after_probe(Auto, only, false), Verdict::Translate);
    }
}
