//! The export, off the relay path: spans end into a bounded queue ([`push_span`]: a lock and
//! a push), and one thread of its own batches them, encodes them ([`super::otlp`]) and posts
//! them to the collector; the metrics go on their own interval from the same thread.
//!
//! When the collector is slow or gone the queue fills and spans are dropped, never waited
//! for; dropped spans and failed exports are counted and reported in **one** warning line.
//! Each export is a single attempt (no retry loop), within the OTLP timeout. At exit what is
//! queued is exported, waiting at most [`SHUTDOWN_WAIT`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::warn;

use super::config::Signal;
use super::instruments::Instruments;
use super::otlp::{self, Format};
use super::record::{self, now_unix_nano, Resource, SpanRecord};

/// How long exit waits for the last export: a dead or slow collector must not hold the
/// process (the client is waiting for it to go).
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// The spans waiting for export, encoded, shared by every thread that ends one.
struct Queue {
    pending: Mutex<Pending>,
    /// `OTEL_BSP_MAX_QUEUE_SIZE`; 0 while no export runs (spans are then not kept).
    max: AtomicUsize,
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`.
    batch: AtomicUsize,
    /// The traces' encoding.
    json: AtomicBool,
    /// The bytes each batch keeps free for the request's header ([`otlp::batch_room`]).
    room: AtomicUsize,
    wake: Notify,
    stopping: AtomicBool,
    health: Health,
}

/// Batches of encoded spans ([`otlp::push_span`]): full ones wait in `full`, the one being
/// filled is `current`; the export thread hands emptied buffers back in `spare`, so neither
/// side allocates a buffer per batch.
#[derive(Default)]
struct Pending {
    full: VecDeque<Batch>,
    current: Batch,
    spare: Vec<Vec<u8>>,
    /// Spans in `full` and `current`.
    spans: usize,
    /// Their encoded bytes.
    bytes: usize,
}

#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    spans: usize,
}

/// The encoded spans kept at most, whatever their number: a tool name is as long as a peer
/// makes it.
const MAX_QUEUE_BYTES: usize = 16 << 20;

static QUEUE: OnceLock<Queue> = OnceLock::new();

fn queue() -> &'static Queue {
    QUEUE.get_or_init(|| Queue {
        pending: Mutex::default(),
        max: AtomicUsize::new(0),
        batch: AtomicUsize::new(usize::MAX),
        json: AtomicBool::new(false),
        room: AtomicUsize::new(0),
        wake: Notify::new(),
        stopping: AtomicBool::new(false),
        health: Health::default(),
    })
}

/// Queues an ended span for export, encoded here (so what the span allocated is freed by
/// the thread that allocated it); drops it (counted) when the queue is full.
pub fn push_span(span: SpanRecord) {
    queue_encoded(&span);
    // Its attribute list goes back to this thread's next span.
    let SpanRecord { attributes, .. } = span;
    record::recycle(attributes);
}

fn queue_encoded(span: &SpanRecord) {
    let q = queue();
    let format = if q.json.load(Ordering::Relaxed) {
        Format::Json
    } else {
        Format::Protobuf
    };
    let Ok(mut p) = q.pending.lock() else {
        return;
    };
    if p.spans >= q.max.load(Ordering::Relaxed) || p.bytes >= MAX_QUEUE_BYTES {
        drop(p);
        // A span ending while the process exits is not the collector's fault.
        if !q.stopping.load(Ordering::Relaxed) {
            q.health.dropped(1);
        }
        return;
    }
    let before = p.current.bytes.len();
    otlp::push_span(
        span,
        format,
        &mut p.current.bytes,
        q.room.load(Ordering::Relaxed),
    );
    let added = p.current.bytes.len() - before;
    p.current.spans += 1;
    p.spans += 1;
    p.bytes += added;
    if p.current.spans >= q.batch.load(Ordering::Relaxed) {
        let next = Batch {
            bytes: p.spare.pop().unwrap_or_default(),
            spans: 0,
        };
        let full = std::mem::replace(&mut p.current, next);
        p.full.push_back(full);
        drop(p);
        q.wake.notify_one();
    }
}

/// What the export thread needs.
pub struct Exporter {
    pub traces: Option<Signal>,
    pub metrics: Option<(Signal, Arc<Instruments>)>,
    pub resource: Resource,
    pub schedule_delay: Duration,
    pub metric_interval: Duration,
    pub max_queue: usize,
    pub max_batch: usize,
}

/// The running export thread; [`Running::stop`] exports what is left and ends it.
pub struct Running {
    done: mpsc::Receiver<()>,
}

impl Exporter {
    /// Starts the export thread. Fails only if the thread or its HTTP client cannot be made.
    pub fn spawn(self) -> std::io::Result<Running> {
        let client = http_client(&self)?;
        let q = queue();
        q.stopping.store(false, Ordering::Relaxed);
        if let Some(t) = &self.traces {
            q.json.store(t.json, Ordering::Relaxed);
            let room = otlp::batch_room(&self.resource, format(t));
            q.room.store(room, Ordering::Relaxed);
            q.batch.store(self.max_batch, Ordering::Relaxed);
            q.max.store(self.max_queue, Ordering::Relaxed);
        }
        let (tx, done) = mpsc::channel();
        std::thread::Builder::new()
            .name("alibridge-otlp".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(rt) = rt {
                    rt.block_on(self.run(client));
                }
                let _ = tx.send(());
            })?;
        Ok(Running { done })
    }

    async fn run(self, client: reqwest::Client) {
        let q = queue();
        let mut body = Vec::new();
        let mut next_spans = Instant::now() + self.schedule_delay;
        let mut next_metrics = Instant::now() + self.metric_interval;
        loop {
            let stopping = q.stopping.load(Ordering::Relaxed);
            if !stopping {
                let wake = if self.traces.is_some() {
                    next_spans.min(next_metrics)
                } else {
                    next_metrics
                };
                tokio::select! {
                    _ = q.wake.notified() => {}
                    _ = tokio::time::sleep_until(wake) => {}
                }
            }
            let stopping = stopping || q.stopping.load(Ordering::Relaxed);
            let now = Instant::now();
            if let Some(signal) = &self.traces {
                let full = q.pending.lock().is_ok_and(|p| !p.full.is_empty());
                let timer = now >= next_spans;
                if stopping || full || timer {
                    if timer {
                        next_spans = now + self.schedule_delay;
                    }
                    // A full batch goes at once; the one being filled when the timer says.
                    while let Some(mut batch) = take(timer || stopping) {
                        let room = q.room.load(Ordering::Relaxed);
                        let start = otlp::finish_batch(
                            &self.resource,
                            format(signal),
                            &mut batch.bytes,
                            room,
                        );
                        // The batch is the body, not copied into one; its buffer comes back
                        // when the request is done with it.
                        let body = bytes::Bytes::from_owner(Lease {
                            bytes: batch.bytes,
                            start,
                        });
                        self.post(&client, signal, body.into(), batch.spans, stopping)
                            .await;
                    }
                }
            }
            if let Some((signal, instruments)) = &self.metrics {
                if stopping || now >= next_metrics {
                    next_metrics = now + self.metric_interval;
                    let record = instruments.collect(now_unix_nano());
                    if !record.metrics.is_empty() {
                        otlp::metrics(&self.resource, &record, format(signal), &mut body);
                        let sent = std::mem::take(&mut body);
                        self.post(&client, signal, sent.into(), 1, stopping).await;
                    }
                }
            }
            if stopping {
                return;
            }
        }
    }

    /// One export: a single attempt; a failure counts the `items` as dropped.
    async fn post(
        &self,
        client: &reqwest::Client,
        signal: &Signal,
        body: reqwest::Body,
        items: usize,
        stopping: bool,
    ) {
        let timeout = if stopping {
            signal.timeout.min(SHUTDOWN_WAIT)
        } else {
            signal.timeout
        };
        let mut req = client
            .post(&signal.url)
            .header(reqwest::header::CONTENT_TYPE, format(signal).content_type())
            .body(body)
            .timeout(timeout);
        for (name, value) in &signal.headers {
            req = req.header(name.as_str(), value.as_str());
        }
        let ok = match req.send().await {
            Ok(resp) => {
                let ok = resp.status().is_success();
                // Read (bounded), so the connection goes back to the pool for the next export.
                let _ = crate::net::read_small(resp).await;
                ok
            }
            Err(_) => false,
        };
        if !ok {
            queue().health.failed(items);
        }
    }
}

impl Running {
    /// Exports what is queued and ends the thread, waiting at most [`SHUTDOWN_WAIT`].
    pub fn stop(self) {
        let q = queue();
        q.stopping.store(true, Ordering::Relaxed);
        q.wake.notify_one();
        let _ = self.done.recv_timeout(SHUTDOWN_WAIT);
        // Spans ending after this are not kept.
        q.max.store(0, Ordering::Relaxed);
        let dropped = q.health.lost.load(Ordering::Relaxed);
        if dropped > 0 {
            tracing::debug!(dropped, "telemetry items the collector did not take");
        }
    }
}

fn format(signal: &Signal) -> Format {
    if signal.json {
        Format::Json
    } else {
        Format::Protobuf
    }
}

/// The oldest full batch, or (`partial`: the timer ran out, or exit) the one being filled;
/// `None` when none waits.
fn take(partial: bool) -> Option<Batch> {
    let mut p = queue().pending.lock().ok()?;
    let batch = match p.full.pop_front() {
        Some(b) => b,
        None if partial && p.current.spans > 0 => {
            let next = Batch {
                bytes: p.spare.pop().unwrap_or_default(),
                spans: 0,
            };
            std::mem::replace(&mut p.current, next)
        }
        None => return None,
    };
    p.spans -= batch.spans;
    p.bytes -= batch.bytes.len();
    Some(batch)
}

/// A batch's buffer lent to its request as the body (from `start`, where the request
/// begins); handed back for a later batch when the body is dropped.
struct Lease {
    bytes: Vec<u8>,
    start: usize,
}

impl AsRef<[u8]> for Lease {
    fn as_ref(&self) -> &[u8] {
        self.bytes.get(self.start..).unwrap_or_default()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.bytes));
    }
}

/// Hands an exported batch's buffer back for a later batch (a few are kept).
fn give_back(mut bytes: Vec<u8>) {
    bytes.clear();
    if let Ok(mut p) = queue().pending.lock() {
        if p.spare.len() < 2 {
            p.spare.push(bytes);
        }
    }
}

/// The collector's client: alibridge's client builder (proxy variables, same-origin
/// redirects). A plain-http collector (the usual local one) gets no trust store at all, which
/// spares loading the system's root certificates.
fn http_client(e: &Exporter) -> std::io::Result<reqwest::Client> {
    let urls = e
        .traces
        .iter()
        .chain(e.metrics.iter().map(|(s, _)| s))
        .map(|s| s.url.as_str());
    let mut b = crate::net::client_builder(Duration::from_secs(5)).pool_max_idle_per_host(1);
    if urls.clone().all(|u| u.starts_with("http://")) {
        b = b.tls_certs_only([]);
    }
    b.build().map_err(std::io::Error::other)
}

/// Lost telemetry: counted, and the first loss warned about.
#[derive(Default)]
struct Health {
    warned: AtomicBool,
    lost: AtomicU64,
}

impl Health {
    /// Records a failed export of `items`. The error text is not shown: it can hold the
    /// collector URL with credentials in it.
    fn failed(&self, items: usize) {
        self.lost.fetch_add(items as u64, Ordering::Relaxed);
        self.warn();
    }

    /// Records spans dropped because the queue was full (the collector is slower than the
    /// spans come).
    fn dropped(&self, items: u64) {
        self.lost.fetch_add(items, Ordering::Relaxed);
        self.warn();
    }

    fn warn(&self) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            warn!(
                "telemetry: the OTLP collector did not take an export; telemetry is being \
                 dropped (relaying is not affected). `alibridge doctor` checks the collector"
            );
        }
    }
}
