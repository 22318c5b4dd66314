//! Trace context: span ids, the W3C `traceparent`/`tracestate`, a span being recorded, and
//! the span that is current in a task (carried across its `await`s by [`Scoped`]).
//!
//! This is alibridge's own small tracer rather than the OpenTelemetry SDK's: a span is one
//! allocation with its attributes in a `Vec`, ended into the export queue as plain data
//! ([`super::record::SpanRecord`]); docs/observability.md "What it costs" has the figures
//! that led here.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};

use super::export;
use super::record::{now_unix_nano, Attribute, SpanKind, SpanRecord, Text};

/// W3C trace flag: the trace is sampled (recorded).
const SAMPLED: u8 = 0x01;

/// The identity of a span as it travels: what `traceparent` and `tracestate` carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
    pub trace_state: Option<Arc<str>>,
}

impl SpanContext {
    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }

    /// The `traceparent` header value (version 00), as bytes (no allocation).
    pub fn traceparent_bytes(&self) -> [u8; 55] {
        let mut out = [b'-'; 55];
        out[..2].copy_from_slice(b"00");
        hex_into(&mut out[3..35], &self.trace_id);
        hex_into(&mut out[36..52], &self.span_id);
        hex_into(&mut out[53..55], &[self.flags]);
        out
    }

    /// Reads a sender's `traceparent` (and `tracestate`) as the W3C Trace Context says:
    /// `None` for anything malformed, all-zero ids or version `ff`. A `tracestate` that is not
    /// a valid list is dropped, the parent kept.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<SpanContext> {
        let t = traceparent.trim().as_bytes();
        if t.len() < 55 || t[2] != b'-' || t[35] != b'-' || t[52] != b'-' {
            return None;
        }
        let version = unhex::<1>(&t[0..2])?[0];
        // Version 00 is exactly 55 characters; a later version may append fields after a dash.
        if version == 0xff || (version == 0 && t.len() != 55) || (t.len() > 55 && t[55] != b'-') {
            return None;
        }
        let trace_id = unhex::<16>(&t[3..35])?;
        let span_id = unhex::<8>(&t[36..52])?;
        let flags = unhex::<1>(&t[53..55])?[0];
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(SpanContext {
            trace_id,
            span_id,
            flags: flags & SAMPLED,
            trace_state: tracestate.filter(|s| valid_tracestate(s)).map(Arc::from),
        })
    }
}

/// Lowercase hex of `bytes` into `out` (twice as long).
fn hex_into(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0xf)];
    }
}

/// Lowercase hex only, as `traceparent` requires.
fn unhex<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0; N];
    for (i, pair) in text.chunks_exact(2).enumerate().take(N) {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// A `tracestate` list as W3C defines it, loosely: at most 32 `key=value` members, 512
/// characters, printable ASCII. It is passed on, never interpreted.
fn valid_tracestate(s: &str) -> bool {
    s.len() <= 512
        && s.bytes().all(|b| (0x20..0x7f).contains(&b))
        && s.split(',').filter(|m| !m.trim().is_empty()).count() <= 32
        && s.split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .all(|m| {
                m.split_once('=')
                    .is_some_and(|(k, v)| !k.is_empty() && !v.is_empty())
            })
}

thread_local! {
    /// A fast generator for span and trace ids, seeded from the system's CSPRNG once per
    /// thread (ids must be unique and unpredictable enough not to collide, not secret).
    static IDS: Cell<u64> = Cell::new(u64::from_le_bytes(crate::random::bytes::<8>()) | 1);
}

/// wyrand: one multiply per 64 bits.
fn next_u64() -> u64 {
    IDS.with(|s| {
        let x = s.get().wrapping_add(0xa076_1d64_78bd_642f);
        s.set(x);
        let m = u128::from(x) * u128::from(x ^ 0xe703_7ed1_a0b4_28db);
        (m >> 64) as u64 ^ m as u64
    })
}

fn span_id() -> [u8; 8] {
    loop {
        let id = next_u64();
        if id != 0 {
            return id.to_le_bytes();
        }
    }
}

fn trace_id() -> [u8; 16] {
    let mut id = [0; 16];
    id[..8].copy_from_slice(&next_u64().to_le_bytes());
    id[8..].copy_from_slice(&next_u64().to_le_bytes());
    if id == [0; 16] {
        id[15] = 1;
    }
    id
}

/// Which traces are recorded (`OTEL_TRACES_SAMPLER`; the specification's default is
/// `parentbased_always_on`). A trace not recorded still carries its context upstream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampler {
    AlwaysOn,
    AlwaysOff,
    /// Records this fraction of new traces (by trace id, so every span of a trace agrees).
    Ratio(f64),
    /// Follows a parent's sampled flag; a new trace is decided by the inner sampler.
    ParentBased(Root),
}

/// The root decision of a parent-based sampler.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Root {
    AlwaysOn,
    AlwaysOff,
    Ratio(f64),
}

impl Sampler {
    /// From `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`; `None` for a name alibridge
    /// does not implement (the caller warns and uses the default).
    pub fn from_env(name: Option<&str>, arg: Option<&str>) -> Option<Sampler> {
        let ratio = || {
            arg.and_then(|a| a.trim().parse::<f64>().ok())
                .filter(|r| (0.0..=1.0).contains(r))
                .unwrap_or(1.0)
        };
        Some(match name.map(str::trim).unwrap_or("") {
            "" | "parentbased_always_on" => Sampler::ParentBased(Root::AlwaysOn),
            "always_on" => Sampler::AlwaysOn,
            "always_off" => Sampler::AlwaysOff,
            "traceidratio" => Sampler::Ratio(ratio()),
            "parentbased_always_off" => Sampler::ParentBased(Root::AlwaysOff),
            "parentbased_traceidratio" => Sampler::ParentBased(Root::Ratio(ratio())),
            _ => return None,
        })
    }

    fn sample(self, parent: Option<&SpanContext>, trace_id: &[u8; 16]) -> bool {
        let ratio = |r: f64| {
            // The specification's rule: the lower 8 bytes of the id against the ratio.
            let x = u64::from_be_bytes(trace_id[8..].try_into().unwrap_or_default()) >> 1;
            (x as f64) < r * (1u64 << 63) as f64
        };
        match self {
            Sampler::AlwaysOn => true,
            Sampler::AlwaysOff => false,
            Sampler::Ratio(r) => ratio(r),
            Sampler::ParentBased(root) => match parent {
                Some(p) => p.sampled(),
                None => match root {
                    Root::AlwaysOn => true,
                    Root::AlwaysOff => false,
                    Root::Ratio(r) => ratio(r),
                },
            },
        }
    }
}

/// A span being recorded. Ending it (or dropping the last reference) sends it to the export
/// queue once; a span of a trace that is not sampled records nothing.
#[derive(Debug)]
pub struct Span {
    cx: SpanContext,
    parent: Option<[u8; 8]>,
    data: Mutex<Option<Pending>>,
}

#[derive(Debug)]
struct Pending {
    name: Text,
    kind: SpanKind,
    start: u64,
    attributes: Vec<Attribute>,
    error: Option<Text>,
}

impl Span {
    /// Starts a span under `parent` (`None`: a new trace). A remote parent's `tracestate`
    /// is kept.
    pub fn start(
        sampler: Sampler,
        parent: Option<&SpanContext>,
        name: Text,
        kind: SpanKind,
        attributes: Vec<Attribute>,
    ) -> Span {
        let trace_id = parent.map_or_else(trace_id, |p| p.trace_id);
        let sampled = sampler.sample(parent, &trace_id);
        Span {
            cx: SpanContext {
                trace_id,
                span_id: span_id(),
                flags: if sampled { SAMPLED } else { 0 },
                trace_state: parent.and_then(|p| p.trace_state.clone()),
            },
            parent: parent.map(|p| p.span_id),
            data: Mutex::new(sampled.then(|| Pending {
                name,
                kind,
                start: now_unix_nano(),
                attributes,
                error: None,
            })),
        }
    }

    pub fn context(&self) -> &SpanContext {
        &self.cx
    }

    /// Whether this span is recorded (its trace is sampled and it has not ended).
    pub fn is_recording(&self) -> bool {
        self.data.lock().is_ok_and(|d| d.is_some())
    }

    /// Replaces the attributes (the span was started without them).
    pub fn set_all(&self, attributes: Vec<Attribute>) {
        self.with(|p| p.attributes = attributes);
    }

    /// Runs `f` on the recorded attributes; `None` when nothing is recorded.
    pub fn read_attributes<T>(&self, f: impl FnOnce(&[Attribute]) -> T) -> Option<T> {
        let data = self.data.lock().ok()?;
        Some(f(&data.as_ref()?.attributes))
    }

    /// Sets an attribute (replacing one of the same key).
    pub fn set(&self, attribute: Attribute) {
        self.with(
            |p| match p.attributes.iter_mut().find(|a| a.key == attribute.key) {
                Some(a) => *a = attribute,
                None => p.attributes.push(attribute),
            },
        );
    }

    /// Marks the span failed: status Error with `kind` as its description, and `error.type`.
    pub fn fail(&self, kind: Text) {
        self.set(Attribute::new("error.type", kind.clone()));
        self.with(|p| p.error = Some(kind));
    }

    fn with(&self, f: impl FnOnce(&mut Pending)) {
        if let Ok(mut data) = self.data.lock() {
            if let Some(p) = data.as_mut() {
                f(p);
            }
        }
    }

    /// Ends the span now; later calls (and the drop) do nothing.
    pub fn end(&self) {
        let Some(p) = self.data.lock().ok().and_then(|mut d| d.take()) else {
            return;
        };
        export::push_span(SpanRecord {
            trace_id: self.cx.trace_id,
            span_id: self.cx.span_id,
            parent_span_id: self.parent,
            trace_state: self.cx.trace_state.clone(),
            flags: self.cx.flags,
            name: p.name,
            kind: p.kind,
            start_unix_nano: p.start,
            end_unix_nano: now_unix_nano(),
            attributes: p.attributes,
            error: p.error,
        });
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        self.end();
    }
}

/// What the spans of one operation share (through their scopes): the request's id and its
/// failure, so that a failure anywhere inside is the operation's.
#[derive(Debug)]
pub struct Shared {
    /// The request's id as JSON text (`None` for a notification): answers are matched on it.
    pub id: Option<Text>,
    /// The error kind, once something failed.
    pub failure: Mutex<Option<Text>>,
    /// The operation's own span, in the same allocation (a child's is in its scope).
    pub span: Option<Span>,
}

impl Shared {
    pub fn set(&self, kind: Text) {
        if let Ok(mut slot) = self.failure.lock() {
            *slot = Some(kind);
        }
    }

    pub fn get(&self) -> Option<Text> {
        self.failure.lock().ok()?.clone()
    }
}

/// The current span of a task (`None` while only metrics are on), and the operation it
/// belongs to.
#[derive(Debug, Clone)]
pub struct Scope {
    /// A child span's (an operation's own span is in `shared`).
    pub span: Option<Arc<Span>>,
    pub shared: Option<Arc<Shared>>,
}

impl Scope {
    /// The span that work in this scope belongs to: the child's, else the operation's.
    pub fn current_span(&self) -> Option<&Span> {
        self.span
            .as_deref()
            .or_else(|| self.shared.as_ref()?.span.as_ref())
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Scope>> = const { RefCell::new(None) };
}

/// Runs `f` with the current scope borrowed (no reference-count traffic).
pub fn with_current<T>(f: impl FnOnce(&Scope) -> T) -> Option<T> {
    CURRENT.with(|c| c.borrow().as_ref().map(f))
}

/// Runs `f` with `scope` current (synchronous work).
pub fn in_scope<T>(scope: Scope, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<Scope>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|c| c.replace(self.0.take()));
        }
    }
    let _restore = Restore(CURRENT.with(|c| c.replace(Some(scope))));
    f()
}

pin_project_lite::pin_project! {
    /// A future that runs with `scope` current on every poll; with no scope, the future as it
    /// is (whatever scope is current stays so).
    pub struct Scoped<F> {
        scope: Option<Scope>,
        #[pin]
        inner: F,
    }
}

impl<F> Scoped<F> {
    pub fn new(scope: Option<Scope>, inner: F) -> Scoped<F> {
        Scoped { scope, inner }
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        let this = self.project();
        // Between polls the scope is here; during one it is the thread's current.
        if this.scope.is_none() {
            return this.inner.poll(cx);
        }
        let outer = CURRENT.with(|c| c.replace(this.scope.take()));
        // Puts the outer scope back, and this one in its slot, even if the poll panics.
        struct Restore<'a> {
            slot: &'a mut Option<Scope>,
            outer: Option<Scope>,
        }
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                *self.slot = CURRENT.with(|c| c.replace(self.outer.take()));
            }
        }
        let _restore = Restore {
            slot: this.scope,
            outer,
        };
        this.inner.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_reads_and_writes_back_the_same() {
        let cx = SpanContext::parse(PARENT, Some("congo=t61rcWkgMzE")).expect("valid");
        assert_eq!(&cx.traceparent_bytes()[..], PARENT.as_bytes());
        assert!(cx.sampled());
        assert_eq!(cx.trace_state.as_deref(), Some("congo=t61rcWkgMzE"));
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            assert!(SpanContext::parse(bad, None).is_none(), "{bad:?}");
        }
        // A later version may carry more fields.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-abc";
        assert!(SpanContext::parse(later, None).is_some());
        // A tracestate that is not a list is dropped; the parent stays.
        let cx = SpanContext::parse(PARENT, Some("no members\u{1}")).expect("parent kept");
        assert_eq!(cx.trace_state, None);
    }

    #[test]
    fn ids_are_not_zero_and_do_not_repeat() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            assert!(seen.insert(span_id()));
        }
        assert_ne!(trace_id(), trace_id());
    }

    #[test]
    fn samplers_follow_the_specification() {
        let parent = SpanContext::parse(PARENT, None).unwrap();
        let unsampled = SpanContext {
            flags: 0,
            ..parent.clone()
        };
        let pb = Sampler::from_env(None, None).unwrap();
        assert!(pb.sample(Some(&parent), &parent.trace_id));
        assert!(!pb.sample(Some(&unsampled), &parent.trace_id));
        assert!(pb.sample(None, &[7; 16]));
        let off = Sampler::from_env(Some("parentbased_always_off"), None).unwrap();
        assert!(!off.sample(None, &[7; 16]));
        assert!(off.sample(Some(&parent), &parent.trace_id));
        let half = Sampler::from_env(Some("traceidratio"), Some("0.5")).unwrap();
        let kept = (0..2000).filter(|_| half.sample(None, &trace_id())).count();
        assert!((800..1200).contains(&kept), "{kept}");
        assert_eq!(
            Sampler::from_env(Some("traceidratio"), Some("0")).map(|s| s.sample(None, &[9; 16])),
            Some(false)
        );
        assert!(Sampler::from_env(Some("jaeger_remote"), None).is_none());
    }

    #[test]
    fn a_scope_is_current_only_while_its_future_runs() {
        let span = Arc::new(Span::start(
            Sampler::AlwaysOff,
            None,
            "t".into(),
            SpanKind::Internal,
            Vec::new(),
        ));
        let id = span.context().span_id;
        let scope = Scope {
            span: Some(span),
            shared: None,
        };
        // A future with no scope of its own, inside: the outer scope stays current.
        let inner = Scoped::new(None, async {
            with_current(|s| s.current_span().map(|s| s.context().span_id)).flatten()
        });
        let inside = futures_util::FutureExt::now_or_never(Scoped::new(Some(scope), inner));
        assert_eq!(inside, Some(Some(id)));
        assert!(with_current(|_| ()).is_none());
    }
}
