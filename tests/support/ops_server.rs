//! A cloud-operations MCP server for the safety tests: rmcp's Streamable HTTP server on
//! `127.0.0.1:<free port>` whose tools mirror the Alibaba Cloud OpenAPI MCP Server's naming and
//! annotations, and which records every call it executes ([`OpsServer::executed`]).
//!
//! Tools (listed in two pages, `nextCursor` `page-2`):
//! - page 1: `DescribeInstances` (`readOnlyHint: true`), `DescribeRegions` (no hint: a read by
//!   its verb), `DeleteInstance` (`destructiveHint: true`, `readOnlyHint: false`; answers
//!   `isError` for `InstanceId: "i-missing"`), `StartInstance` (no hint), `EnableSnapshots`
//!   (no hint; adds `DescribeSnapshots` and `DeleteSnapshot` and sends
//!   `notifications/tools/list_changed`). All declare `x_mcp_region_id` in `inputSchema`.
//! - page 2: `Ecs-20140526-DescribeImages`, `Ecs-20140526-StopInstance` (the Custom edition's
//!   `<Product>-<version>-<Action>` names, with `x_mcp_region_id`), `AlibabaCloud___CallCLI`
//!   (`{command, x_output_jmespath_filter}`, the Core edition's generic tool) and
//!   `AlibabaCloud___GetApiDefinition` (`{product, apiVersion, apiName}`) and
//!   `AlibabaCloud___RunScript` (`{script}`, Python calling `call_cli(product, action, …)`):
//!   none declares `x_mcp_region_id`.
//!
//! Every tool answers `ran <name> <arguments as JSON>`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::{
    session::local::LocalSessionManager, StreamableHttpServerConfig, StreamableHttpService,
};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// One call the server executed.
#[derive(Debug, Clone, PartialEq)]
pub struct Executed {
    pub tool: String,
    pub arguments: Value,
}

#[derive(Default)]
struct Shared {
    executed: Mutex<Vec<Executed>>,
    snapshots: Mutex<bool>,
}

/// The running server; dropping it stops it.
pub struct OpsServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    kill: CancellationToken,
}

impl OpsServer {
    pub async fn start() -> OpsServer {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let kill = CancellationToken::new();
        let s = shared.clone();
        let config =
            StreamableHttpServerConfig::default().with_cancellation_token(kill.child_token());
        let service = StreamableHttpService::new(
            move || Ok(OpsTools { shared: s.clone() }),
            Arc::new(LocalSessionManager::default()),
            config,
        );
        let k = kill.clone();
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = k.cancelled() => return,
                    a = listener.accept() => match a { Ok((s, _)) => s, Err(_) => continue },
                };
                let service = service.clone();
                let k = k.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let service = service.clone();
                        async move { Ok::<_, Infallible>(service.handle(req).await) }
                    });
                    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
                    tokio::select! { _ = conn => {}, _ = k.cancelled() => {} }
                });
            }
        });
        OpsServer { addr, shared, kill }
    }

    /// `http://127.0.0.1:PORT/mcp`.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every call executed so far, in order.
    pub fn executed(&self) -> Vec<Executed> {
        self.shared.executed.lock().unwrap().clone()
    }

    /// The names of the tools executed so far, in order.
    pub fn executed_names(&self) -> Vec<String> {
        self.executed().into_iter().map(|e| e.tool).collect()
    }
}

impl Drop for OpsServer {
    fn drop(&mut self) {
        self.kill.cancel();
    }
}

#[derive(Clone)]
struct OpsTools {
    shared: Arc<Shared>,
}

/// A tool definition; `props` are its string arguments.
fn tool(name: &str, props: &[&str], annotations: Option<Value>) -> Tool {
    let properties: serde_json::Map<String, Value> = props
        .iter()
        .map(|p| {
            (
                (*p).to_string(),
                json!({"type": "string", "description": p}),
            )
        })
        .collect();
    let mut t = json!({
        "name": name,
        "description": format!("{name} (alibridge ops test server)"),
        "inputSchema": {"type": "object", "properties": properties},
    });
    if let Some(a) = annotations {
        t["annotations"] = a;
    }
    serde_json::from_value(t).expect("a valid tool")
}

const REGION: &str = "x_mcp_region_id";

fn page_one(snapshots: bool) -> Vec<Tool> {
    let mut tools = vec![
        tool(
            "DescribeInstances",
            &["RegionId", REGION],
            Some(json!({"readOnlyHint": true})),
        ),
        tool("DescribeRegions", &[REGION], None),
        tool(
            "DeleteInstance",
            &["InstanceId", "Password", REGION],
            Some(json!({"readOnlyHint": false, "destructiveHint": true})),
        ),
        tool("StartInstance", &["InstanceId", REGION], None),
        tool("EnableSnapshots", &[REGION], None),
    ];
    if snapshots {
        tools.push(tool("DescribeSnapshots", &[REGION], None));
        tools.push(tool("DeleteSnapshot", &["SnapshotId", REGION], None));
    }
    tools
}

fn page_two() -> Vec<Tool> {
    vec![
        tool("Ecs-20140526-DescribeImages", &[REGION], None),
        tool("Ecs-20140526-StopInstance", &["InstanceId", REGION], None),
        tool(
            "AlibabaCloud___CallCLI",
            &["command", "x_output_jmespath_filter"],
            None,
        ),
        tool(
            "AlibabaCloud___GetApiDefinition",
            &["product", "apiVersion", "apiName"],
            None,
        ),
        tool("AlibabaCloud___RunScript", &["script"], None),
        tool("AlibabaCloud___RunIaC", &["action", "code"], None),
    ]
}

fn page(tools: Vec<Tool>, next: Option<&str>) -> ListToolsResult {
    let mut v = json!({"tools": tools});
    if let Some(c) = next {
        v["nextCursor"] = json!(c);
    }
    serde_json::from_value(v).expect("a valid page")
}

impl ServerHandler for OpsTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let cursor = request.and_then(|r| r.cursor);
        Ok(match cursor.as_deref() {
            Some("page-2") => page(page_two(), None),
            _ => page(
                page_one(*self.shared.snapshots.lock().unwrap()),
                Some("page-2"),
            ),
        })
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.to_string();
        let arguments = Value::Object(request.arguments.unwrap_or_default());
        self.shared.executed.lock().unwrap().push(Executed {
            tool: name.clone(),
            arguments: arguments.clone(),
        });
        if name == "EnableSnapshots" {
            *self.shared.snapshots.lock().unwrap() = true;
            let _ = ctx.peer.notify_tool_list_changed().await;
        }
        let text = ContentBlock::text(format!("ran {name} {arguments}"));
        if name == "DeleteInstance" && arguments["InstanceId"] == "i-missing" {
            return Ok(CallToolResult::error(vec![text]).into());
        }
        Ok(CallToolResult::success(vec![text]).into())
    }
}
