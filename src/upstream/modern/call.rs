//! One client request to its single answer: the POST, the answer read from JSON or SSE (other
//! messages on the way delivered), re-issues under a new id after a broken stream where that
//! cannot run anything twice, a re-send after learning a tool's `x-mcp-header` parameters, and
//! cancellation by the client.

use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Response, Url};
use serde_json::{json, Value};
use tracing::{debug, warn};

use super::envelope::{meta_of, LegacyClient};
use super::mrtr::{retry_body, InputRound};
use super::{Modern, MAX_INPUT_ROUNDS, MODERN_VERSION};
use crate::jsonrpc::{self, single_line, Id, Kind, Message};
use crate::net::{describe, read_body, BodyError};
use crate::upstream::error::UpstreamError;
use crate::upstream::event_stream::{parse_event, EventStream, Parsed};
use crate::upstream::headers::{self, ToolFacts};
use crate::upstream::http::{error_snippet, is_event_stream, HttpClient, ACCEPT_POST};
use crate::upstream::transport::{dropped, Dropped};

/// Re-issues of one request after broken response streams.
const MAX_REISSUES: u32 = 2;

impl Modern {
    /// Runs one client request to its single answer: `input_required` rounds (translation),
    /// re-issues after broken streams where they are safe, cancellation by the client.
    pub(super) async fn call(
        &self,
        client_id: &Id,
        body: Bytes,
        msg: &Message,
    ) -> Result<(), UpstreamError> {
        let token = self.cancel.child_token();
        self.in_flight
            .lock()
            .unwrap()
            .insert(client_id.clone(), token.clone());
        let run = self.run_call(client_id, body, msg);
        let result = token.run_until_cancelled(run).await;
        self.in_flight.lock().unwrap().remove(client_id);
        match result {
            Some(r) => r,
            None => {
                debug!(id = %client_id, "request cancelled; its response stream was closed");
                Ok(())
            }
        }
    }

    async fn run_call(
        &self,
        client_id: &Id,
        body: Bytes,
        msg: &Message,
    ) -> Result<(), UpstreamError> {
        let method = msg.method.as_deref().unwrap_or("");
        let tool = (method == "tools/call")
            .then(|| {
                serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v.pointer("/params/name")?.as_str().map(str::to_string))
            })
            .flatten();
        let client = self.translating_for();
        let mut body = body;
        let mut attempt = client_id.clone();
        let mut rounds = 0u32;
        let mut reissues = 0u32;
        let mut relisted = false;
        loop {
            let answer = match self.exchange(&body, &attempt).await {
                Ok(a) => a,
                // A connection lost after sending is a broken stream too; re-sending is
                // harmless only for reads (a tool call keeps its connect error).
                Err(UpstreamError::Connect { detail, .. })
                    if reissues < MAX_REISSUES
                        && tool.is_none()
                        && method != "subscriptions/listen" =>
                {
                    reissues += 1;
                    attempt = self.fresh_id("retry");
                    warn!(id = %client_id, %attempt, %detail,
                          "the connection broke; re-issuing the read under a new id");
                    body = jsonrpc::with_id(&body, &attempt).expect("the request was JSON");
                    continue;
                }
                Err(UpstreamError::StreamClosed { url, detail }) if reissues < MAX_REISSUES => {
                    let safe = match &tool {
                        Some(t) => self.tools.idempotent(t),
                        None => method != "subscriptions/listen",
                    };
                    if !safe {
                        let detail = format!(
                            "{detail}; the result is lost and the tool may have run; alibridge \
                             calls a tool again only when the server annotates it \
                             idempotentHint: true"
                        );
                        return Err(UpstreamError::StreamClosed { url, detail });
                    }
                    reissues += 1;
                    attempt = self.fresh_id("retry");
                    warn!(id = %client_id, %attempt, %detail,
                          "the response stream broke; re-issuing the request under a new id");
                    body = jsonrpc::with_id(&body, &attempt).expect("the request was JSON");
                    continue;
                }
                Err(e) => return Err(e),
            };
            // A header mismatch for a tool the bridge has not seen listed: the `Mcp-Param-*`
            // headers were missing. The server refused before running anything, so learn the
            // tool's schema and send the call again (the spec's advice to clients).
            if let Some(t) = tool
                .as_deref()
                .filter(|_| !relisted && is_header_mismatch(&answer.bytes))
            {
                if !self.tools.knows(t) {
                    relisted = true;
                    self.relist(client.as_deref()).await;
                    if self.tools.knows(t) {
                        attempt = self.fresh_id("retry");
                        body = jsonrpc::with_id(&body, &attempt).expect("the request was JSON");
                        debug!(id = %client_id, tool = t, "re-sending after learning the tool's x-mcp-header parameters");
                        continue;
                    }
                }
            }
            if let Some(client) = &client {
                if let Some(round) = InputRound::read(&answer.bytes) {
                    rounds += 1;
                    if rounds > MAX_INPUT_ROUNDS {
                        return Err(self.input_error(format!(
                            "the server still asked for input after {MAX_INPUT_ROUNDS} rounds"
                        )));
                    }
                    let responses = self.ask_client(client, &round).await?;
                    attempt = self.fresh_id("retry");
                    body = retry_body(&body, &attempt, &responses, round.request_state.as_deref())
                        .ok_or_else(|| {
                            self.input_error("the request could not be rebuilt".into())
                        })?;
                    debug!(id = %client_id, %attempt, round = rounds, "retrying with the client's input");
                    continue;
                }
            }
            let mut bytes = answer.bytes;
            if method == "tools/list" {
                bytes = self.tools.observe_list(bytes);
            }
            if &attempt != client_id {
                bytes = jsonrpc::with_id(&bytes, client_id).unwrap_or(bytes);
            }
            let m = Message::parse(bytes)
                .map_err(|e| UpstreamError::malformed(&self.shown, e.to_string()))?;
            self.out.deliver(m).await;
            return Ok(());
        }
    }

    /// Reads the server's tool list (every page) into the tool facts, for a call that needs
    /// them before the client asked for the list.
    async fn relist(&self, client: Option<&LegacyClient>) {
        let mut cursor: Option<Value> = None;
        for _ in 0..100 {
            let id = self.fresh_id("list");
            let mut params = json!({"_meta": match client {
                Some(c) => meta_of(c, &self.version),
                None => json!({headers::META_PROTOCOL_VERSION: self.version, headers::META_CLIENT_CAPABILITIES: {}}),
            }});
            if let Some(c) = cursor.take() {
                params["cursor"] = c;
            }
            let body = json!({"jsonrpc":"2.0","id": serde_json::from_str::<Value>(id.as_json()).unwrap_or(Value::Null),
                              "method":"tools/list","params": params});
            let Ok(answer) = self.exchange(&Bytes::from(body.to_string()), &id).await else {
                return;
            };
            self.tools.observe_list(answer.bytes.clone());
            cursor = serde_json::from_slice::<Value>(&answer.bytes)
                .ok()
                .and_then(|v| v.pointer("/result/nextCursor").cloned())
                .filter(|c| !c.is_null());
            if cursor.is_none() {
                return;
            }
        }
    }

    /// POSTs one request and reads its answer (JSON, or SSE with related messages delivered on
    /// the way). A server's JSON-RPC error body for a refused POST is the answer.
    async fn exchange(&self, body: &Bytes, id: &Id) -> Result<Message, UpstreamError> {
        let resp = self.post(body).await?;
        self.answer_from(resp, id).await
    }

    /// Reads the answer to request `id` from its POST's response.
    pub(super) async fn answer_from(
        &self,
        resp: Response,
        id: &Id,
    ) -> Result<Message, UpstreamError> {
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let (snippet, raw) = error_snippet(resp).await;
            if let Ok(m) = Message::parse(single_line(raw)) {
                if m.kind == Kind::Response && m.id.as_ref() == Some(id) {
                    return Ok(m);
                }
            }
            return Err(UpstreamError::Status {
                status,
                url: self.shown.clone(),
                body: snippet,
            });
        }
        if is_event_stream(&resp) {
            return self.read_sse(resp, id).await;
        }
        let raw = match read_body(resp, self.http.max_message_size()).await {
            Ok(b) => b,
            Err(BodyError::TooLarge { size }) => {
                return Err(UpstreamError::too_large(
                    &self.shown,
                    size,
                    self.http.max_message_size(),
                ))
            }
            Err(BodyError::Transport(e)) => {
                return Err(UpstreamError::stream_closed(&self.shown, describe(&e)))
            }
        };
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Err(UpstreamError::stream_closed(
                &self.shown,
                "the server accepted the request but sent no answer",
            ));
        }
        let m = Message::parse(single_line(raw))
            .map_err(|e| UpstreamError::malformed(&self.shown, e.to_string()))?;
        if m.kind == Kind::Response && m.id.as_ref() == Some(id) {
            return Ok(m);
        }
        self.out.deliver(m).await;
        Err(UpstreamError::stream_closed(
            &self.shown,
            "the JSON body was not the answer to this request",
        ))
    }

    async fn read_sse(&self, resp: Response, id: &Id) -> Result<Message, UpstreamError> {
        let mut events =
            EventStream::new(resp.bytes_stream()).with_limit(self.http.max_message_size());
        let mut malformed = None;
        let detail = loop {
            match events.next().await {
                Some(Ok(ev)) => match parse_event(ev) {
                    Some(Parsed::Message(m))
                        if m.kind == Kind::Response && m.id.as_ref() == Some(id) =>
                    {
                        return Ok(m)
                    }
                    Some(Parsed::Message(m)) => self.out.deliver(m).await,
                    Some(Parsed::Malformed(e)) => {
                        warn!(error = %e, "dropping a malformed message from the SSE stream");
                        malformed = Some(e);
                    }
                    Some(Parsed::TooLarge(t))
                        if t.id.as_ref() == Some(id) || (t.id.is_none() && !t.has_method) =>
                    {
                        return Err(UpstreamError::too_large(
                            &self.shown,
                            Some(t.size),
                            self.http.max_message_size(),
                        ));
                    }
                    Some(Parsed::TooLarge(t)) => {
                        match dropped(&t, &self.shown, self.http.max_message_size()) {
                            Dropped::AnswerClient(m) => self.out.deliver(m).await,
                            // A modern server takes no responses: nothing to refuse it with.
                            Dropped::RefuseServer(_) | Dropped::Nothing => {}
                        }
                    }
                    None => {}
                },
                Some(Err(e)) => break describe(&e),
                None => break "the stream ended".to_string(),
            }
        };
        match malformed {
            Some(m) => Err(UpstreamError::malformed(
                &self.shown,
                format!("{m} ({detail})"),
            )),
            None => Err(UpstreamError::stream_closed(
                &self.shown,
                format!("{detail}; streams of MCP {MODERN_VERSION} cannot be resumed"),
            )),
        }
    }

    pub(super) async fn post(&self, body: &Bytes) -> Result<Response, UpstreamError> {
        post_json(
            &self.http,
            &self.url,
            body,
            Some(&self.version),
            &self.tools,
        )
        .await
    }
}

/// POSTs one JSON-RPC body to `url` with the request metadata headers derived from it
/// (`negotiated` is the fallback protocol version, see [`headers::for_body`]).
pub(super) async fn post_json(
    http: &HttpClient,
    url: &Url,
    body: &Bytes,
    negotiated: Option<&str>,
    tools: &ToolFacts,
) -> Result<Response, UpstreamError> {
    let hdrs = headers::for_body(body, negotiated, tools);
    http.send(url, || {
        let mut rb = http
            .client()
            .post(url.clone())
            .header(ACCEPT, ACCEPT_POST)
            .header(CONTENT_TYPE, "application/json")
            .body(body.clone());
        for (n, v) in &hdrs {
            rb = rb.header(n, v.clone());
        }
        rb
    })
    .await
}

/// True when `answer` is the modern HeaderMismatch error (−32020).
fn is_header_mismatch(answer: &[u8]) -> bool {
    serde_json::from_slice::<Value>(answer)
        .ok()
        .and_then(|v| v.pointer("/error/code")?.as_i64())
        == Some(-32020)
}
