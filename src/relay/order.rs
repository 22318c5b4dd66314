//! Keeps the handshake in stdin order although every message has its own task.
//!
//! Messages are independent once a session exists, so the relay sends them concurrently. The
//! handshake is not: a server may refuse or drop a request that reaches it before
//! `initialize` was answered or before `notifications/initialized` was accepted, and over a
//! real network a later POST easily overtakes an earlier one. Those two messages are
//! *barriers*: each waits for the barriers before it, and every later message waits for it to
//! be done. Everything else waits only for earlier barriers, never for other messages.

use std::sync::Arc;

use tokio::sync::watch;

use crate::jsonrpc::{Kind, Message};

/// Hands out tickets in stdin order.
pub struct Order {
    /// Barriers handed out so far.
    issued: u64,
    /// Barriers done so far (they finish in order: each waits for the one before).
    done: Arc<watch::Sender<u64>>,
}

/// A message's place in the order; a barrier's ticket marks it done when dropped (sent,
/// failed or cancelled alike, so nothing can wait forever behind it).
pub struct Ticket {
    wait_for: u64,
    done: watch::Receiver<u64>,
    completes: Option<(u64, Arc<watch::Sender<u64>>)>,
}

impl Order {
    pub fn new() -> Self {
        Order {
            issued: 0,
            done: Arc::new(watch::channel(0).0),
        }
    }

    /// The ticket of the next stdin message.
    pub fn ticket(&mut self, msg: &Message) -> Ticket {
        let barrier = match msg.kind {
            Kind::Request => msg.method_is("initialize"),
            Kind::Notification => msg.method_is("notifications/initialized"),
            _ => false,
        };
        let ticket = Ticket {
            wait_for: self.issued,
            done: self.done.subscribe(),
            completes: barrier.then(|| (self.issued + 1, self.done.clone())),
        };
        if barrier {
            self.issued += 1;
        }
        ticket
    }
}

impl Default for Order {
    fn default() -> Self {
        Order::new()
    }
}

impl Ticket {
    /// Waits until every barrier before this message is done.
    pub async fn wait(&mut self) {
        let wait_for = self.wait_for;
        // The sender lives as long as any barrier ticket or the `Order`; if all are gone
        // nothing is left to wait for.
        let _ = self.done.wait_for(|d| *d >= wait_for).await;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some((n, done)) = self.completes.take() {
            done.send_if_modified(|d| {
                let advance = *d < n;
                if advance {
                    *d = n;
                }
                advance
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(json: &str) -> Message {
        Message::parse(Bytes::copy_from_slice(json.as_bytes())).unwrap()
    }

    #[tokio::test]
    async fn later_messages_wait_for_earlier_barriers_only() {
        let mut order = Order::new();
        let mut early = order.ticket(&msg(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#));
        let init = order.ticket(&msg(
            r#"{"jsonrpc":"2.0","id":2,"method":"initialize","params":{}}"#,
        ));
        let mut after = order.ticket(&msg(r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#));
        let mut initialized = order.ticket(&msg(
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        ));
        let mut last = order.ticket(&msg(r#"{"jsonrpc":"2.0","id":4,"method":"tools/list"}"#));

        early.wait().await;
        let pending = |t: &mut Ticket| {
            let fut = t.wait();
            futures_util::FutureExt::now_or_never(fut).is_none()
        };
        assert!(pending(&mut after), "waits for initialize");
        assert!(
            pending(&mut initialized),
            "a barrier waits for the one before"
        );
        drop(init);
        after.wait().await;
        initialized.wait().await;
        assert!(pending(&mut last), "waits for notifications/initialized");
        drop(initialized);
        last.wait().await;
    }
}
