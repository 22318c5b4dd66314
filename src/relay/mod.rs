//! The pump between the two sides: stdin lines become upstream sends, server messages reach
//! stdout through the [`Outbox`], and shutdown is orderly.
//!
//! ```text
//!  stdin ─► LineReader ─► Message::parse ─┬─► spawned send task per message ─► Upstream
//!                                          └─► parse error ─────────────────┐
//!  Upstream (POST answers, GET stream, SSE) ─► Outbox (ledger) ─► stdout writer task ─► stdout
//! ```
//!
//! Each message gets its own task, so one slow request never delays another; messages of one
//! response stream are delivered in the order the server sent them. The handshake
//! (`initialize`, `notifications/initialized`) is the exception: [`order`] keeps later
//! messages behind it.

pub mod order;
pub mod outbox;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use tokio::io::{AsyncBufRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, info, warn, Instrument};

use self::order::Order;
pub use self::outbox::Outbox;
use crate::jsonrpc::{self, Id, Kind, Message};
use crate::stdio::{self, LineReader};
use crate::upstream::{Upstream, UpstreamError};

/// Why the relay stopped.
#[derive(Debug)]
pub enum QuitReason {
    /// stdin reached end of file: the client went away.
    InputClosed,
    /// SIGINT/SIGTERM (or the injected shutdown future).
    Signal,
    /// stdout is closed (the client stopped reading).
    OutputClosed,
    /// Reading stdin failed.
    InputError(std::io::Error),
}

/// Timing knobs.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub request_timeout: Option<Duration>,
    pub shutdown_grace: Duration,
}

/// How long the stdout writer gets to flush after the relay is done.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the bridge until stdin closes, `shutdown` completes or stdout breaks.
///
/// `connect` builds the upstream around the outbox it must deliver to.
pub async fn run<R, W>(
    stdin: R,
    stdout: W,
    connect: impl FnOnce(Arc<Outbox>) -> Upstream,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> QuitReason
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Bytes>(stdio::STDOUT_QUEUE);
    let mut writer = tokio::spawn(stdio::write_lines(stdout, rx));
    let outbox = Arc::new(Outbox::new(tx));
    let upstream = Arc::new(connect(outbox.clone()));
    let mut reader = LineReader::new(stdin);
    let mut tasks = JoinSet::new();
    let mut order = Order::new();
    tokio::pin!(shutdown);

    let reason = loop {
        tokio::select! {
            line = reader.next_line() => match line {
                Ok(Some(line)) => {
                    on_line(line, &upstream, &outbox, limits, &mut order, &mut tasks).await
                }
                Ok(None) => break QuitReason::InputClosed,
                Err(e) => break QuitReason::InputError(e),
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            () = &mut shutdown => break QuitReason::Signal,
            _ = &mut writer => break QuitReason::OutputClosed,
        }
    };
    debug!(?reason, in_flight = outbox.open_count(), "stopping");
    drop(reader);

    if !matches!(reason, QuitReason::OutputClosed) && !tasks.is_empty() {
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(limits.shutdown_grace, drain)
            .await
            .is_err()
        {
            info!(
                open = outbox.open_count(),
                "grace period over; answering the rest with errors"
            );
        }
    }
    tasks.shutdown().await;
    outbox.settle_all(|| UpstreamError::Shutdown).await;
    upstream.close().await;
    outbox.close();
    drop(upstream);
    if !writer.is_finished() {
        let _ = tokio::time::timeout(FLUSH_TIMEOUT, &mut writer).await;
    }
    reason
}

/// Routes one stdin line.
async fn on_line(
    line: Bytes,
    upstream: &Arc<Upstream>,
    outbox: &Arc<Outbox>,
    limits: Limits,
    order: &mut Order,
    tasks: &mut JoinSet<()>,
) {
    let msg = match Message::parse(line) {
        Ok(m) => m,
        Err(e) => {
            warn!(error = %e, "answering an invalid stdin line with an error");
            outbox.write(e.to_response()).await;
            return;
        }
    };
    match msg.kind {
        Kind::Request => {
            let id = msg.id.as_ref().expect("requests have ids");
            if !outbox.open(id) {
                let err = jsonrpc::error_response(
                    Some(id),
                    jsonrpc::code::INVALID_REQUEST,
                    "Invalid Request: a request with this id is still in flight; use unique ids",
                    None,
                );
                outbox.write(err).await;
                return;
            }
        }
        Kind::Notification if msg.method_is("notifications/cancelled") => {
            if let Some(id) = cancelled_request(&msg.bytes) {
                outbox.cancelled(&id);
            }
        }
        _ => {}
    }
    let span = tracing::debug_span!("msg", id = %msg.id.as_ref().map(Id::as_json).unwrap_or("-"),
                                    method = msg.method.as_deref().unwrap_or("(response)"));
    let upstream = upstream.clone();
    let outbox = outbox.clone();
    let mut ticket = order.ticket(&msg);
    tasks.spawn(
        async move {
            ticket.wait().await;
            debug!(bytes = msg.bytes.len(), "forwarding");
            let (kind, id) = (msg.kind, msg.id.clone());
            let sent = upstream.send(msg);
            let result =
                match limits.request_timeout {
                    Some(t) if kind == Kind::Request => tokio::time::timeout(t, sent)
                        .await
                        .unwrap_or(Err(UpstreamError::Timeout {
                            secs: t.as_secs_f64(),
                        })),
                    _ => sent.await,
                };
            match (kind, id) {
                (Kind::Request, Some(id)) => {
                    outbox
                        .settle(&id, result.err(), &upstream.shown_url())
                        .await
                }
                _ => {
                    if let Err(e) = result {
                        warn!(error = %e, "could not pass a message to the server");
                    }
                }
            }
            drop(ticket);
        }
        .instrument(span),
    );
}

/// Reads `params.requestId` of a `notifications/cancelled`.
fn cancelled_request(bytes: &[u8]) -> Option<Id> {
    #[derive(Deserialize)]
    struct Note<'a> {
        #[serde(borrow)]
        params: Option<Params<'a>>,
    }
    #[derive(Deserialize)]
    struct Params<'a> {
        #[serde(borrow, rename = "requestId")]
        request_id: Option<&'a serde_json::value::RawValue>,
    }
    let n: Note<'_> = serde_json::from_slice(bytes).ok()?;
    let raw = n.params?.request_id?;
    let v: serde_json::Value = serde_json::from_str(raw.get()).ok()?;
    Some(Id::from_json(&v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_cancelled_request_id() {
        let id = cancelled_request(
            br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"x1","reason":"user"}}"#,
        );
        assert_eq!(id, Some(Id::from_json("\"x1\"")));
        assert_eq!(
            cancelled_request(br#"{"method":"notifications/cancelled"}"#),
            None
        );
    }
}
