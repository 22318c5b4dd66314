//! What every transport shares, so none of them reaches into `upstream/mod.rs`: the
//! [`Deliver`] sink their server messages go to, [`Link`] (the bundle each one is built from),
//! `spawn_child` for background tasks tied to the cancellation tree, and `dropped`, what
//! becomes of a server message over `--max-message-size`.

use std::future::Future;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::error::UpstreamError;
use super::event_stream::TooLarge;
use super::headers::ToolFacts;
use super::http::HttpClient;
use crate::jsonrpc::{self, Message};

/// Where server messages go. Implemented by the relay, which enforces "one answer per request".
pub trait Deliver: Send + Sync + 'static {
    /// Hands one message from the server to the client side; waits for room on stdout.
    fn deliver(&self, msg: Message) -> BoxFuture<'_, ()>;
}

/// What a transport is built from: the endpoint, the HTTP client with its credential, the sink
/// for server messages, the per-tool facts every request's headers are derived from, and the
/// token its background tasks hang off.
#[derive(Clone)]
pub struct Link {
    pub url: reqwest::Url,
    pub http: HttpClient,
    pub out: Arc<dyn Deliver>,
    pub tools: Arc<ToolFacts>,
    pub cancel: CancellationToken,
}

/// Spawns `task` as a child of `token`: once `token` or any ancestor is cancelled, the task is
/// dropped at its next await.
pub(crate) fn spawn_child(
    token: &CancellationToken,
    task: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    let token = token.clone();
    tokio::spawn(async move {
        token.run_until_cancelled(task).await;
    })
}

/// What becomes of a server message dropped for its size, other than the answer a POST is
/// reading (that request simply fails with [`UpstreamError::TooLarge`]).
pub(crate) enum Dropped {
    /// A response: the client's request with that id gets this error instead (the relay drops
    /// it if no such request is open).
    AnswerClient(Message),
    /// A request from the server: it gets this error response, so it does not wait forever for
    /// an answer the client never saw.
    RefuseServer(Message),
    /// A notification, or nothing could be read: only logged.
    Nothing,
}

/// Logs a message discarded for its size and says who must still hear about it, so a dropped
/// answer or server request never leaves the other side waiting.
pub(crate) fn dropped(t: &TooLarge, url: &str, limit: usize) -> Dropped {
    tracing::warn!(size = t.size, limit, id = %t.id.as_ref().map(|i| i.as_json()).unwrap_or("-"),
                   request = t.has_method, "discarded a server message over --max-message-size");
    let Some(id) = &t.id else {
        return Dropped::Nothing;
    };
    if t.has_method {
        let refusal = jsonrpc::error_response(
            Some(id),
            jsonrpc::code::INVALID_REQUEST,
            &format!(
                "the request was {} and the client's bridge (alibridge) relays at most {} \
                 (--max-message-size); it was not passed to the client",
                jsonrpc::human_size(t.size),
                jsonrpc::human_size(limit as u64)
            ),
            None,
        );
        return Message::parse(refusal).map_or(Dropped::Nothing, Dropped::RefuseServer);
    }
    let err = UpstreamError::TooLarge {
        url: url.to_string(),
        size: Some(t.size),
        limit: limit as u64,
    };
    Message::parse(err.to_response(id)).map_or(Dropped::Nothing, Dropped::AnswerClient)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A task whose future was dropped (cancelled) closes its end of a channel it held.
    async fn held(tx: tokio::sync::oneshot::Sender<()>) {
        let _kept_until_dropped = tx;
        std::future::pending::<()>().await
    }

    #[tokio::test]
    async fn cancelling_the_root_stops_every_task_below_it() {
        let root = CancellationToken::new();
        let transport = root.child_token();
        let stream = transport.child_token();
        let (a, a_rx) = tokio::sync::oneshot::channel();
        let (b, b_rx) = tokio::sync::oneshot::channel();
        let (c, c_rx) = tokio::sync::oneshot::channel();
        let tasks = [
            spawn_child(&root, held(a)),
            spawn_child(&transport, held(b)),
            spawn_child(&stream, held(c)),
        ];
        // Stopping one stream leaves its parents' tasks running.
        stream.cancel();
        assert!(c_rx.await.is_err(), "the stream's task was dropped");
        assert!(!tasks[0].is_finished() && !tasks[1].is_finished());
        root.cancel();
        for t in tasks {
            t.await.expect("a cancelled task ends cleanly");
        }
        assert!(a_rx.await.is_err() && b_rx.await.is_err());
    }
}
