//! The test server's MCP tools (an rmcp `ServerHandler`) and the per-tool call counters.
//!
//! One `TestTools` value is made per session; all of them share one [`Counters`], so a test can
//! tell how many times a tool really ran, across sessions, re-initializations and resumptions.
// Sampling and logging are deprecated in rmcp by SEP-2577 but are part of 2025-06-18.
#![allow(deprecated)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::model::{
    CallToolResult, ContentBlock, CreateMessageRequestParams, ElicitRequestParams, LoggingLevel,
    LoggingMessageNotificationParam, ProgressNotificationParam, RequestMetaObject,
    ServerCapabilities, ServerConfig,
};
use rmcp::{schemars, tool, tool_handler, tool_router, ErrorData, Peer, RoleServer, ServerHandler};
use serde::Deserialize;
use serde_json::{json, Value};

/// How many times each tool has been called (counted when the tool starts running).
#[derive(Debug, Default)]
pub struct Counters(Mutex<BTreeMap<String, u64>>);

impl Counters {
    fn hit(&self, tool: &str) {
        *self.0.lock().unwrap().entry(tool.to_owned()).or_insert(0) += 1;
    }

    /// Calls of `tool` so far (0 if never called).
    pub fn get(&self, tool: &str) -> u64 {
        self.0.lock().unwrap().get(tool).copied().unwrap_or(0)
    }

    /// Every tool's count so far.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap().clone()
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct EchoArgs {
    /// Text to return.
    pub text: String,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct SleepArgs {
    /// Milliseconds to sleep before answering.
    pub ms: u64,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct BigArgs {
    /// Size of the returned text, in bytes.
    pub bytes: usize,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct ProgressArgs {
    /// Number of progress notifications to send before the result.
    pub steps: u32,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct SampleArgs {
    /// Prompt sent to the client in sampling/createMessage.
    pub prompt: String,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct ElicitArgs {
    /// Message shown by the client in elicitation/create.
    pub message: String,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct NotifyArgs {
    /// Number of notifications/message to push on the standalone (GET) stream.
    pub count: u32,
}

/// The tools. Cloned by rmcp per request; cheap (an `Arc` and the router).
#[derive(Clone)]
pub struct TestTools {
    counters: Arc<Counters>,
    tool_router: ToolRouter<Self>,
}

fn text(s: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(s)])
}

fn internal(what: &str, e: impl std::fmt::Display) -> ErrorData {
    ErrorData::internal_error(format!("{what}: {e}"), None)
}

#[tool_router]
impl TestTools {
    pub fn new(counters: Arc<Counters>) -> Self {
        Self {
            counters,
            tool_router: Self::tool_router(),
        }
    }

    #[tool(description = "Returns `text` unchanged")]
    async fn echo(
        &self,
        Parameters(EchoArgs { text: t }): Parameters<EchoArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        self.counters.hit("echo");
        Ok(text(t))
    }

    #[tool(description = "Sleeps `ms` milliseconds, then answers \"slept <ms>\"")]
    async fn sleep(
        &self,
        Parameters(SleepArgs { ms }): Parameters<SleepArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        self.counters.hit("sleep");
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(text(format!("slept {ms}")))
    }

    #[tool(description = "Returns a text content of exactly `bytes` bytes ('x' repeated)")]
    async fn big(
        &self,
        Parameters(BigArgs { bytes }): Parameters<BigArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        self.counters.hit("big");
        Ok(text("x".repeat(bytes)))
    }

    #[tool(
        description = "Sends `steps` notifications/progress with the request's \
                          progressToken (if any), then answers \"done <steps>\""
    )]
    async fn progress(
        &self,
        Parameters(ProgressArgs { steps }): Parameters<ProgressArgs>,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.counters.hit("progress");
        if let Some(token) = meta.get_progress_token() {
            for i in 1..=steps {
                let p = ProgressNotificationParam::new(token.clone(), f64::from(i))
                    .with_total(f64::from(steps))
                    .with_message(format!("step {i}"));
                peer.notify_progress(p)
                    .await
                    .map_err(|e| internal("progress", e))?;
            }
        }
        Ok(text(format!("done {steps}")))
    }

    #[tool(description = "Asks the client (sampling/createMessage) and returns its answer text")]
    async fn sample(
        &self,
        Parameters(SampleArgs { prompt }): Parameters<SampleArgs>,
        peer: Peer<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.counters.hit("sample");
        let params: CreateMessageRequestParams = serde_json::from_value(json!({
            "messages": [{"role": "user", "content": {"type": "text", "text": prompt}}],
            "maxTokens": 100
        }))
        .map_err(|e| internal("sampling params", e))?;
        let answer = peer
            .create_message(params)
            .await
            .map_err(|e| internal("sampling", e))?;
        let answer = serde_json::to_value(&answer).map_err(|e| internal("sampling result", e))?;
        let t = answer["content"]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        Ok(text(t))
    }

    #[tool(description = "Asks the client (elicitation/create) and returns the action it chose")]
    async fn elicit(
        &self,
        Parameters(ElicitArgs { message }): Parameters<ElicitArgs>,
        peer: Peer<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.counters.hit("elicit");
        let params: ElicitRequestParams = serde_json::from_value(json!({
            "mode": "form",
            "message": message,
            "requestedSchema": {"type": "object", "properties": {"answer": {"type": "string"}}}
        }))
        .map_err(|e| internal("elicitation params", e))?;
        let result = peer
            .create_elicitation(params)
            .await
            .map_err(|e| internal("elicit", e))?;
        let action = serde_json::to_value(result.action).map_err(|e| internal("action", e))?;
        Ok(text(action.as_str().unwrap_or_default()))
    }

    #[tool(
        description = "Pushes `count` notifications/message (logger \"notify\", data {seq}); \
                          rmcp routes them to the standalone GET stream"
    )]
    async fn notify(
        &self,
        Parameters(NotifyArgs { count }): Parameters<NotifyArgs>,
        peer: Peer<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.counters.hit("notify");
        for seq in 0..count {
            let n = LoggingMessageNotificationParam::new(LoggingLevel::Info, json!({"seq": seq}))
                .with_logger("notify");
            peer.notify_logging_message(n)
                .await
                .map_err(|e| internal("notify", e))?;
        }
        Ok(text(format!("sent {count}")))
    }

    #[tool(description = "Returns a JSON object: how many times each tool has been called")]
    async fn count(&self) -> Result<CallToolResult, ErrorData> {
        self.counters.hit("count");
        let counts: Value = json!(self.counters.snapshot());
        Ok(text(counts.to_string()))
    }
}

#[tool_handler]
impl ServerHandler for TestTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_logging()
                .build(),
        )
        .with_instructions(
            "alibridge test server: echo, sleep, big, progress, sample, elicit, notify, count",
        )
    }
}
