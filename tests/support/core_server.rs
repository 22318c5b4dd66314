//! A recording upstream shaped like Alibaba's OpenAPI MCP Server, Core edition, for the
//! adversarial safety suite (`tests/e2e/safety_adversarial.rs`): a small hand-written
//! Streamable HTTP server (hyper, not rmcp) on `127.0.0.1:<free port>` that answers JSON
//! (`Content-Type: application/json`, never SSE).
//!
//! It is not rmcp because it must accept and **record whatever bytes arrive**, malformed or
//! not: every POST, PUT, PATCH and DELETE body is recorded raw, with its method and path,
//! before anything else is done with it ([`CoreServer::raw`], [`CoreServer::received`]). A test
//! puts a unique canary string in every write it attempts and then proves, with
//! [`CoreServer::assert_never_reached`] (or [`CoreServer::reached`]), that no byte of it
//! arrived, whatever shape the bytes had.
//!
//! What it answers (POST, any path):
//! - `initialize`: `protocolVersion` 2025-06-18, `capabilities.tools`, and an `Mcp-Session-Id`;
//! - notifications and client responses (no `id`, or no `method`): 202;
//! - `tools/list`: the tools below, one page;
//! - `tools/call`: `{"content":[{"type":"text","text":"ran <name> <arguments JSON>"}]}`, recorded
//!   in [`CoreServer::executed_calls`];
//! - `ping`: `{}`; anything else (`server/discover` included): JSON-RPC error −32601; a body
//!   that is not JSON: HTTP 400 with JSON-RPC error −32700; a batch: −32600.
//!
//! GET is 405 (no stream), PUT and PATCH are 405 (after recording), DELETE is 200.
//!
//! Tools: the Core edition's generic ones (`AlibabaCloud___CallCLI`, `…RunScript`, `…RunIaC`,
//! `…GetPresignedUrl`, `…GetTask`, `…GetApiDefinition`, `…SearchApis`, no annotations), the
//! Custom edition's `<Product>-<version>-<Action>` ones (with `x_mcp_region_id`; reads carry
//! `readOnlyHint: true`, as the server would: the access-issuing reads among them
//! (`GetSecretValue`, `GetAuthorizationToken`, `DescribeClusterUserKubeconfig`,
//! `DescribeInstanceVncUrl`, `GetFederationToken`) too, so a policy that trusts the hint lets
//! them through), and `echo` (no annotations).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::net::{listen, read_body, serve, LOOPBACK};

/// One request with a body method, as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub body: Bytes,
}

/// The server-side safety policy, as the OpenAPI MCP Server applies it to every API call a
/// tool makes: `(bearer token, product, api in kebab-case) → allowed`.
pub type Judge = Arc<dyn Fn(Option<&str>, &str, &str) -> bool + Send + Sync>;

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    executed: Mutex<Vec<(String, Value)>>,
    sessions: AtomicU64,
    judge: Option<Judge>,
}

/// The running server; dropping it stops it.
pub struct CoreServer {
    addr: std::net::SocketAddr,
    shared: Arc<Shared>,
    kill: CancellationToken,
}

impl CoreServer {
    pub async fn start() -> CoreServer {
        Self::start_with(None).await
    }

    /// A server that, like the real one with a policy bound to the token, runs the API calls
    /// of CallCLI commands and RunScript scripts only when `judge` allows each of them; a
    /// refused call answers a tool error and is not recorded as executed.
    pub async fn start_enforcing(judge: Judge) -> CoreServer {
        Self::start_with(Some(judge)).await
    }

    async fn start_with(judge: Option<Judge>) -> CoreServer {
        let listener = listen(LOOPBACK).await;
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            judge,
            ..Shared::default()
        });
        let kill = CancellationToken::new();
        let s = shared.clone();
        serve(listener, kill.clone(), move |req| handle(s.clone(), req));
        CoreServer { addr, shared, kill }
    }

    /// `http://127.0.0.1:PORT/mcp`.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// `http://127.0.0.1:PORT` (for `alibridge proxy --upstream-url`).
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every `tools/call` it executed, in order: (tool, arguments).
    pub fn executed_calls(&self) -> Vec<(String, Value)> {
        self.shared.executed.lock().unwrap().clone()
    }

    /// Every request with a body method (POST, PUT, PATCH, DELETE), in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// The raw bodies of [`CoreServer::received`].
    pub fn raw(&self) -> Vec<Bytes> {
        self.received().into_iter().map(|r| r.body).collect()
    }

    /// The first recorded request whose raw body contains `canary` (bytes compared, so a body
    /// that is not UTF-8 counts too), if any. The bridge's price quotes (a CallCLI command with
    /// `--estimate-cost`, which the real server answers with a quote and never runs) do not
    /// count: they carry the command but execute nothing.
    pub fn reached(&self, canary: &str) -> Option<Received> {
        assert!(canary.len() >= 8, "{canary:?} is too short for a canary");
        let needle = canary.as_bytes();
        self.received()
            .into_iter()
            .filter(|r| !is_quote(&r.body))
            .find(|r| r.body.windows(needle.len()).any(|w| w == needle))
    }

    /// The quote requests received (see [`CoreServer::reached`]).
    pub fn quotes(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| is_quote(&r.body))
            .collect()
    }

    /// Panics if any recorded body contains `canary`, showing the request that carried it.
    pub fn assert_never_reached(&self, canary: &str) {
        if let Some(r) = self.reached(canary) {
            panic!(
                "{canary} reached the upstream: {} {} {:.400}",
                r.method,
                r.path,
                String::from_utf8_lossy(&r.body)
            );
        }
    }
}

impl Drop for CoreServer {
    fn drop(&mut self) {
        self.kill.cancel();
    }
}

async fn handle(shared: Arc<Shared>, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    if method == Method::GET {
        return status(StatusCode::METHOD_NOT_ALLOWED);
    }
    let (parts, body) = read_body(req).await;
    if [Method::POST, Method::PUT, Method::PATCH, Method::DELETE].contains(&method) {
        shared.received.lock().unwrap().push(Received {
            method: method.to_string(),
            path: parts.uri.path().to_string(),
            body: body.clone(),
        });
    }
    let bearer = parts
        .headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    match method {
        Method::POST => answer(&shared, &body, bearer.as_deref()),
        Method::DELETE => status(StatusCode::OK),
        _ => status(StatusCode::METHOD_NOT_ALLOWED),
    }
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = code;
    r
}

fn json_response(code: StatusCode, v: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = code;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// The answer to one POSTed body.
fn answer(shared: &Shared, body: &[u8], bearer: Option<&str>) -> Response<Full<Bytes>> {
    let msg: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            let e = error(&Value::Null, -32700, &format!("parse error: {e}"));
            return json_response(StatusCode::BAD_REQUEST, &e);
        }
    };
    if msg.is_array() {
        return json_response(
            StatusCode::OK,
            &error(&Value::Null, -32600, "batches are not supported"),
        );
    }
    let (Some(id), Some(method)) = (msg.get("id"), msg["method"].as_str()) else {
        return status(StatusCode::ACCEPTED); // a notification, or the client's answer
    };
    let result = match method {
        "initialize" => {
            let n = shared.sessions.fetch_add(1, Ordering::Relaxed);
            let result = json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "openapi-mcp-core-fake", "version": "0"}
            });
            let mut r = json_response(
                StatusCode::OK,
                &json!({"jsonrpc": "2.0", "id": id, "result": result}),
            );
            r.headers_mut().insert(
                "mcp-session-id",
                format!("core-session-{n}").parse().unwrap(),
            );
            return r;
        }
        "tools/list" => json!({"tools": tools()}),
        "tools/call" => {
            let name = msg["params"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let arguments = match &msg["params"]["arguments"] {
                Value::Null => json!({}),
                a => a.clone(),
            };
            let command = arguments["command"].as_str().unwrap_or_default();
            if name == "AlibabaCloud___CallCLI" && command.ends_with(" --estimate-cost") {
                // As the real server: a quote, nothing run (and nothing recorded as executed).
                if command.contains("delete-") {
                    let text = "InvalidParameter.EstimateCost: this API has no price";
                    let result =
                        json!({"content": [{"type": "text", "text": text}], "isError": true});
                    return json_response(
                        StatusCode::OK,
                        &json!({"jsonrpc": "2.0", "id": id, "result": result}),
                    );
                }
                let text = r#"{"costPreview":{"status":"ESTIMATED","total":"0.52 CNY/hour"}}"#;
                let result = json!({"content": [{"type": "text", "text": text}]});
                return json_response(
                    StatusCode::OK,
                    &json!({"jsonrpc": "2.0", "id": id, "result": result}),
                );
            }
            if let Some(judge) = &shared.judge {
                if let Some(denied) = sandbox_apis(&name, &arguments)
                    .into_iter()
                    .find(|(p, a)| !judge(bearer, p, a))
                {
                    let text = format!(
                        "Forbidden.SafetyPolicy: {}:{} is denied by the safety policy bound to \
                         the token",
                        denied.0, denied.1
                    );
                    let result =
                        json!({"content": [{"type": "text", "text": text}], "isError": true});
                    return json_response(
                        StatusCode::OK,
                        &json!({"jsonrpc": "2.0", "id": id, "result": result}),
                    );
                }
            }
            let text = format!("ran {name} {arguments}");
            shared.executed.lock().unwrap().push((name, arguments));
            json!({"content": [{"type": "text", "text": text}]})
        }
        "ping" => json!({}),
        other => {
            let e = error(id, -32601, &format!("method not found: {other}"));
            return json_response(StatusCode::OK, &e);
        }
    };
    json_response(
        StatusCode::OK,
        &json!({"jsonrpc": "2.0", "id": id, "result": result}),
    )
}

/// A price quote: a well-formed `tools/call` of CallCLI under a bridge quote id whose command
/// ends with `--estimate-cost`.
fn is_quote(body: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    v["id"]
        .as_str()
        .is_some_and(|i| i.starts_with("alibridge-quote-"))
        && v["method"] == "tools/call"
        && v["params"]["name"] == "AlibabaCloud___CallCLI"
        && v["params"]["arguments"]["command"]
            .as_str()
            .is_some_and(|c| c.ends_with(" --estimate-cost"))
}

/// The API calls a generic tool would make when the fake "runs" it, as `(product, kebab api)`:
/// a CallCLI command's words 1 and 2; every `call_cli(product='P', action='A')` of a RunScript
/// script with literal keyword arguments (the fake's sandbox only runs such scripts).
fn sandbox_apis(tool: &str, args: &Value) -> Vec<(String, String)> {
    let kebab = |a: &str| {
        let mut out = String::new();
        for (i, c) in a.chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        }
        out
    };
    match tool {
        "AlibabaCloud___CallCLI" => {
            let words: Vec<&str> = args["command"].as_str().unwrap_or("").split(' ').collect();
            match words.as_slice() {
                [_, product, api, ..] if !api.contains('-') => {
                    vec![(product.to_lowercase(), kebab(api))]
                }
                [_, product, api, ..] => vec![(product.to_lowercase(), api.to_lowercase())],
                _ => Vec::new(),
            }
        }
        "AlibabaCloud___RunScript" => {
            let script = args["script"].as_str().unwrap_or("");
            let literal = |call: &str, key: &str| {
                let at = call.find(&format!("{key}='"))? + key.len() + 2;
                call[at..].split('\'').next().map(str::to_string)
            };
            script
                .split("call_cli(")
                .skip(1)
                .filter_map(|call| {
                    Some((
                        literal(call, "product")?.to_lowercase(),
                        kebab(&literal(call, "action")?),
                    ))
                })
                .collect()
        }
        _ => Vec::new(),
    }
}

const REGION: &str = "x_mcp_region_id";

/// A tool: `props` are (name, JSON type); `region` adds `x_mcp_region_id`.
fn tool(name: &str, props: &[(&str, &str)], region: bool, annotations: Option<Value>) -> Value {
    let mut properties = serde_json::Map::new();
    for (p, ty) in props {
        properties.insert((*p).to_string(), json!({"type": ty, "description": p}));
    }
    if region {
        properties.insert(REGION.into(), json!({"type": "string"}));
    }
    let mut t = json!({
        "name": name,
        "description": format!("{name} (Core edition fake)"),
        "inputSchema": {"type": "object", "properties": properties},
    });
    if let Some(a) = annotations {
        t["annotations"] = a;
    }
    t
}

/// Every tool, in one page.
pub fn tools() -> Vec<Value> {
    let read = || Some(json!({"readOnlyHint": true}));
    let s = "string";
    let mut tools = vec![
        tool("AlibabaCloud___CallCLI", &[("command", s)], false, None),
        tool(
            "AlibabaCloud___RunScript",
            &[("script", s), ("costManifest", "object")],
            false,
            None,
        ),
        tool(
            "AlibabaCloud___RunIaC",
            &[("action", s), ("code", s), ("previousProcessId", s)],
            false,
            None,
        ),
        tool(
            "AlibabaCloud___GetPresignedUrl",
            &[("requests", "array")],
            false,
            None,
        ),
        tool("AlibabaCloud___GetTask", &[("processID", s)], false, None),
        tool(
            "AlibabaCloud___GetApiDefinition",
            &[("product", s), ("apiVersion", s), ("apiName", s)],
            false,
            None,
        ),
        tool("AlibabaCloud___SearchApis", &[("prompt", s)], false, None),
    ];
    for (name, props, hint) in [
        (
            "Ecs-20140526-DescribeInstances",
            &["InstanceIds"][..],
            read(),
        ),
        (
            "Ecs-20140526-DeleteInstance",
            &["InstanceId"],
            Some(json!({"readOnlyHint": false, "destructiveHint": true})),
        ),
        (
            "Ram-20150501-CreateAccessKey",
            &["UserName"],
            Some(json!({"readOnlyHint": false})),
        ),
        ("Ram-20150501-ListUsers", &["Marker"], read()),
        ("Kms-20160120-GetSecretValue", &["SecretName"], read()),
        ("Cr-20181201-GetAuthorizationToken", &["InstanceId"], read()),
        (
            "CS-20151215-DescribeClusterUserKubeconfig",
            &["ClusterId"],
            read(),
        ),
        (
            "Ecs-20140526-DescribeInstanceVncUrl",
            &["InstanceId"],
            read(),
        ),
        ("Sts-20150401-GetFederationToken", &["Name"], read()),
    ] {
        let props: Vec<(&str, &str)> = props.iter().map(|p| (*p, s)).collect();
        tools.push(tool(name, &props, true, hint));
    }
    tools.push(tool("echo", &[("text", s)], false, None));
    tools
}
