//! The single way to the client's stdout, and the ledger behind "every request gets exactly
//! one answer".
//!
//! Every client request is recorded here when it is read. The first answer for its id (the
//! server's, or an error the bridge makes) removes the record and goes to stdout; any later
//! answer for that id finds no record and is dropped. Requests still recorded at shutdown
//! are answered with an error, so none is left hanging.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tracing::debug;

use super::tool_policy::ToolPolicy;
use crate::jsonrpc::{Id, Kind, Message};
use crate::stdio::StdoutSender;
use crate::upstream::{Deliver, UpstreamError};
use futures_util::future::BoxFuture;

/// Open requests, by id.
#[derive(Default)]
struct Ledger {
    /// Value: whether the client cancelled the request (then the bridge owes no answer).
    open: HashMap<Id, bool>,
}

pub struct Outbox {
    /// `None` once the relay has finished, so the stdout writer can end.
    stdout: Mutex<Option<StdoutSender>>,
    ledger: Mutex<Ledger>,
    /// The tool policy, when one is configured: it sees server messages before stdout does.
    policy: Option<Arc<ToolPolicy>>,
}

impl Outbox {
    pub fn new(stdout: StdoutSender) -> Self {
        Outbox {
            stdout: Mutex::new(Some(stdout)),
            ledger: Mutex::new(Ledger::default()),
            policy: None,
        }
    }

    /// Routes server messages through `policy` first.
    pub fn with_policy(mut self, policy: Option<Arc<ToolPolicy>>) -> Self {
        self.policy = policy;
        self
    }

    /// Answers open request `id` with `line`, a response the bridge made itself (a refused or
    /// unconfirmed tool call); nothing if it was already answered or cancelled.
    pub async fn answer(&self, id: &Id, line: Bytes) {
        if self.ledger.lock().unwrap().open.remove(id) == Some(false) {
            self.write(line).await;
        }
    }

    /// Records a request the client sent. `false` if a request with that id is already open.
    pub fn open(&self, id: &Id) -> bool {
        let mut l = self.ledger.lock().unwrap();
        if l.open.contains_key(id) {
            return false;
        }
        l.open.insert(id.clone(), false);
        true
    }

    /// The client cancelled request `id`: it expects no answer from the bridge.
    pub fn cancelled(&self, id: &Id) {
        if let Some(c) = self.ledger.lock().unwrap().open.get_mut(id) {
            *c = true;
        }
    }

    /// Whether request `id` still waits for an answer (open and not cancelled by the client).
    pub fn wants(&self, id: &Id) -> bool {
        self.ledger.lock().unwrap().open.get(id) == Some(&false)
    }

    /// Writes a line no request owns (e.g. a parse error for a line that had no id).
    pub async fn write(&self, line: Bytes) {
        let tx = self.stdout.lock().unwrap().clone();
        if let Some(tx) = tx {
            // A closed stdout ends the relay elsewhere; nothing to do here.
            let _ = tx.send(line).await;
        }
    }

    /// Closes request `id` after the exchange ended: if no answer went out yet, answers it
    /// with `err` (or, when the upstream ended without error but also without an answer, with
    /// a stream-closed error). Cancelled requests get nothing.
    pub async fn settle(&self, id: &Id, err: Option<UpstreamError>, url: &str) {
        let Some(cancelled) = self.ledger.lock().unwrap().open.remove(id) else {
            return;
        };
        if cancelled {
            return;
        }
        let err = err.unwrap_or_else(|| UpstreamError::StreamClosed {
            url: url.to_string(),
            detail: "the exchange ended without an answer".into(),
        });
        debug!(%id, kind = err.kind(), "answering with an error");
        if let Some(p) = &self.policy {
            p.failed(id, &err);
        }
        self.write(err.to_response(id)).await;
    }

    /// Answers every open request with `err`'s response; used at shutdown.
    pub async fn settle_all(&self, err: impl Fn() -> UpstreamError) {
        let open: Vec<(Id, bool)> = self.ledger.lock().unwrap().open.drain().collect();
        for (id, cancelled) in open {
            let err = err();
            if let Some(p) = &self.policy {
                p.failed(&id, &err);
            }
            if !cancelled {
                self.write(err.to_response(&id)).await;
            }
        }
    }

    /// Drops the stdout sender: after this nothing more is written, and the writer can finish
    /// once the queue is flushed.
    pub fn close(&self) {
        self.stdout.lock().unwrap().take();
    }

    /// Number of requests still waiting for an answer.
    pub fn open_count(&self) -> usize {
        self.ledger.lock().unwrap().open.len()
    }
}

impl Deliver for Outbox {
    fn deliver(&self, msg: Message) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let msg = match &self.policy {
                Some(p) => p.from_server(msg),
                None => msg,
            };
            if msg.kind == Kind::Response {
                let id = msg.id.as_ref().expect("responses have ids");
                if self.ledger.lock().unwrap().open.remove(id).is_none() {
                    debug!(%id, "dropping an answer for a request that is not open (duplicate or unknown id)");
                    return;
                }
            }
            let _traced = crate::telemetry::Operation::delivered(&msg);
            self.write(msg.bytes).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    fn response(id: &str) -> Message {
        Message::parse(Bytes::from(format!(
            r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#
        )))
        .unwrap()
    }

    #[tokio::test]
    async fn one_answer_per_request() {
        let (tx, mut rx) = mpsc::channel(8);
        let out = Outbox::new(tx);
        let id = Id::from_json("1");
        assert!(out.open(&id));
        assert!(!out.open(&id), "a duplicate open id is refused");
        out.deliver(response("1")).await;
        out.deliver(response("1")).await;
        out.settle(&id, None, "u").await;
        out.close();
        let mut lines = Vec::new();
        while let Some(l) = rx.recv().await {
            lines.push(l);
        }
        assert_eq!(lines.len(), 1, "only the first answer is written");
    }

    #[tokio::test]
    async fn unanswered_requests_get_an_error_unless_cancelled() {
        let (tx, mut rx) = mpsc::channel(8);
        let out = Outbox::new(tx);
        let (a, b, c) = (
            Id::from_json("\"a\""),
            Id::from_json("\"b\""),
            Id::from_json("\"c\""),
        );
        for id in [&a, &b, &c] {
            out.open(id);
        }
        out.cancelled(&b);
        out.settle(&a, None, "u").await;
        out.settle(&b, None, "u").await;
        out.settle_all(|| UpstreamError::Shutdown).await;
        out.close();
        let mut got = Vec::new();
        while let Some(l) = rx.recv().await {
            got.push(serde_json::from_slice::<serde_json::Value>(&l).unwrap());
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0]["id"], "a");
        assert_eq!(
            got[0]["error"]["data"]["alibridge"]["kind"],
            "stream_closed"
        );
        assert_eq!(got[1]["id"], "c");
        assert_eq!(got[1]["error"]["data"]["alibridge"]["kind"], "shutdown");
    }
}
