//! Issue 20, approval by elicitation in `alibridge proxy --pin-tools`: the proxy in front of
//! the pin server, whose tools change after the first (trusted) listing, and a client that
//! lists through it:
//!
//! - a client that declared elicitation (rmcp's Streamable HTTP client, and the official
//!   TypeScript SDK client: `tests/peers/pin_client.mjs http:…`) is asked once, in the
//!   listing's own answer; accepting puts the changed and new tools into that very listing,
//!   a call of one reaches the server, and the pin file holds the new definition;
//! - declining keeps them withheld and refused (the server runs nothing), and the session is
//!   not asked again; another session is;
//! - the question belongs to the session (and proxy token) that listed: anyone else's answer
//!   is refused with 403 (raw HTTP);
//! - a server that answers with JSON bodies gets the same: the proxy answers the listing with
//!   an SSE stream of its own;
//! - a client without elicitation is not asked: the listing comes without them, as before.

use rmcp::model::{CallToolRequestParams, ElicitResult};
use rmcp::service::{RoleClient, RunningService};
use serde_json::{json, Value};

use crate::support::home::TempHome;
use crate::support::peers::run_peer_script;
use crate::support::pin_server::{
    delete_all, echo, echo_injected, exfiltrate, first_tools, PinServer, INJECTED_DESCRIPTION,
};
use crate::support::pins::{accept, pin_refusal, sorted, tools_cli, FIRST_USE, WITHHELD};
use crate::support::proxy::{
    connect, handshake_with, next_sse_message, post, Client, Proxy, INIT, INIT_ELICITING,
};
use crate::support::wait::until;

/// The pin server after its first listing was pinned through the proxy, then changed: `echo`
/// with an injected description, `exfiltrate` new, `delete_all` as it was.
struct Rig {
    home: TempHome,
    server: PinServer,
    proxy: Proxy,
    audit: String,
}

impl Rig {
    async fn start(tag: &str) -> Rig {
        Rig::on(tag, PinServer::start(first_tools()).await).await
    }

    async fn on(tag: &str, server: PinServer) -> Rig {
        let home = TempHome::new(tag);
        let audit = home.file("audit.jsonl");
        let upstream = format!("http://{}", server.addr());
        let proxy = Proxy::start_in(
            home.path(),
            &[
                "--auth",
                "none",
                "--upstream-url",
                &upstream,
                "--pin-tools",
                "--audit-log",
                &audit,
            ],
            &[],
        )
        .await;
        let first = connect(&proxy.url("/mcp"), Client::default()).await;
        assert_eq!(names(&first).await, ["echo", "delete_all"]);
        proxy.stderr_with(FIRST_USE).await;
        first.cancel().await.ok();
        server.set_tools(vec![echo_injected(), delete_all(), exfiltrate()]);
        Rig {
            home,
            server,
            proxy,
            audit,
        }
    }

    fn url(&self) -> String {
        self.proxy.url("/mcp")
    }

    /// The one pin file, as JSON.
    fn pin_file(&self) -> Value {
        let files = self.home.pin_files();
        assert_eq!(files.len(), 1, "{files:?}");
        serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap()
    }

    /// The audit records of the pin questions: (tool, decision), sorted.
    fn pin_decisions(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = std::fs::read_to_string(&self.audit)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|r| r["rule"] == "--pin-tools" && r["outcome"] == "not_sent")
            .filter(|r| r["decision"] != "denied")
            .map(|r| {
                let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                (s("tool"), s("decision"))
            })
            .collect();
        v.sort();
        v
    }

    async fn waiting(&self) -> u64 {
        self.proxy.health().await["confirmationsWaiting"]
            .as_u64()
            .expect("/health counts open questions")
    }
}

/// Whether `msg` is the proxy's question about held-back tools (its own id prefix, never the
/// bridge's `alibridge-pin-`).
fn is_pin_question(msg: &Value) -> bool {
    msg["method"] == "elicitation/create"
        && msg["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("alibridge-proxy-pin-") && id.len() == 20 + 32)
}

/// A client that declares elicitation and answers every question with `answer`.
fn asking_client(answer: Option<ElicitResult>) -> Client {
    let c = Client {
        elicits: true,
        decline_rest: true,
        ..Client::default()
    };
    c.answers.lock().unwrap().extend(answer);
    c
}

async fn list(c: &RunningService<RoleClient, Client>) -> Vec<Value> {
    c.list_all_tools()
        .await
        .expect("tools/list through the proxy")
        .into_iter()
        .map(|t| serde_json::to_value(t).unwrap())
        .collect()
}

async fn names(c: &RunningService<RoleClient, Client>) -> Vec<String> {
    list(c)
        .await
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

/// Calls `name`: the tool result, or the JSON-RPC error as JSON.
async fn call(c: &RunningService<RoleClient, Client>, name: &str) -> Value {
    let p: CallToolRequestParams =
        serde_json::from_value(json!({"name": name, "arguments": {"text": "via-proxy"}})).unwrap();
    match c.call_tool(p).await {
        Ok(r) => serde_json::to_value(&r).unwrap(),
        Err(rmcp::service::ServiceError::McpError(e)) => {
            json!({"error": serde_json::to_value(&e).unwrap()})
        }
        Err(e) => panic!("calling {name}: {e}"),
    }
}

/// The questions `client` was asked, after checking each names the held-back tools with the
/// diff.
fn questions(client: &Client) -> Vec<Value> {
    let asked = client.asked.lock().unwrap().clone();
    for q in &asked {
        let message = q["message"].as_str().expect("a message");
        for needle in ["echo", "exfiltrate", "- Echo text.", INJECTED_DESCRIPTION] {
            assert!(message.contains(needle), "{needle:?} in:\n{message}");
        }
        assert!(
            !message.contains("delete_all"),
            "only held-back tools: {message}"
        );
        assert_eq!(
            q["requestedSchema"]["properties"]["confirm"]["type"],
            "boolean"
        );
    }
    asked
}

/// Accepting in the client: the listing that asked carries the changed `echo` and the new
/// `exfiltrate`; a call of `echo` reaches the server; the pin file holds the definitions the
/// person was shown (nothing pending); the audit log says approved; a second listing does not
/// ask again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepting_in_the_client_lists_the_tools_in_that_same_listing() {
    let rig = Rig::start("pin-proxy-accept").await;
    let before = rig.pin_file();
    let client = asking_client(Some(serde_json::from_value(accept()).unwrap()));
    let c = connect(&rig.url(), client.clone()).await;

    let listed = list(&c).await;
    assert_eq!(questions(&client).len(), 1);
    let listed_names: Vec<String> = listed
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(sorted(listed_names), ["delete_all", "echo", "exfiltrate"]);
    let shown_echo = listed.iter().find(|t| t["name"] == "echo").unwrap();
    assert_eq!(shown_echo["description"], INJECTED_DESCRIPTION);

    let ran = call(&c, "echo").await;
    assert_eq!(
        ran["content"][0]["text"], r#"ran echo {"text":"via-proxy"}"#,
        "{ran}"
    );
    assert_eq!(rig.server.called_names(), ["echo"]);

    let after = rig.pin_file();
    let digest =
        |t: &Value| alibridge::policy::pins::digest(&alibridge::policy::pins::canonical(t));
    assert_eq!(before["pinned"]["echo"]["digest"], digest(&echo()));
    assert_eq!(after["pinned"]["echo"]["digest"], digest(&echo_injected()));
    assert_eq!(
        after["pinned"]["exfiltrate"]["digest"],
        digest(&exfiltrate())
    );
    assert_eq!(after["pending"], json!({}), "{after:#}");
    assert_eq!(
        rig.pin_decisions(),
        [
            ("echo".to_string(), "approved".to_string()),
            ("exfiltrate".to_string(), "approved".to_string())
        ]
    );

    assert_eq!(
        sorted(names(&c).await),
        ["delete_all", "echo", "exfiltrate"]
    );
    assert_eq!(questions(&client).len(), 1, "asked once");
    assert_eq!(rig.waiting().await, 0, "nothing left open");
    c.cancel().await.ok();
}

/// Declining in the client: withheld from the listing, both calls refused with the pin error
/// (the server runs nothing), the session's second listing does not ask again; another
/// session is asked (a decline holds for its session only). The pin file still holds the old
/// `echo`, the new definitions pending for `alibridge tools`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declining_keeps_them_withheld_and_is_not_asked_again_in_the_session() {
    let rig = Rig::start("pin-proxy-decline").await;
    let before = rig.pin_file();
    let client = asking_client(None);
    let c = connect(&rig.url(), client.clone()).await;

    assert_eq!(names(&c).await, ["delete_all"]);
    assert_eq!(questions(&client).len(), 1);
    for (tool, what) in [("echo", "changed"), ("exfiltrate", "new")] {
        pin_refusal(&call(&c, tool).await, tool, what);
    }
    assert!(rig.server.calls().is_empty(), "{:?}", rig.server.calls());
    assert_eq!(names(&c).await, ["delete_all"]);
    assert_eq!(
        questions(&client).len(),
        1,
        "not asked again in this session"
    );

    let after = rig.pin_file();
    assert_eq!(after["pinned"]["echo"], before["pinned"]["echo"]);
    let mut pending: Vec<&String> = after["pending"].as_object().unwrap().keys().collect();
    pending.sort();
    assert_eq!(pending, ["echo", "exfiltrate"]);
    assert_eq!(
        rig.pin_decisions(),
        [
            ("echo".to_string(), "declined".to_string()),
            ("exfiltrate".to_string(), "declined".to_string())
        ]
    );

    let other = asking_client(None);
    let d = connect(&rig.url(), other.clone()).await;
    assert_eq!(names(&d).await, ["delete_all"]);
    assert_eq!(questions(&other).len(), 1, "another session is asked");
    assert_eq!(rig.waiting().await, 0);
    assert!(rig.server.calls().is_empty());
    c.cancel().await.ok();
    d.cancel().await.ok();
}

/// The question belongs to the session that listed: an answer from another session, or from
/// a client with none, is refused with 403 and the question stays open; the owner's answer
/// then gets the listing, with the tools.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_listing_session_answers_its_question() {
    let rig = Rig::start("pin-proxy-owner").await;
    let url = rig.url();
    let owner = handshake_with(&url, INIT_ELICITING).await;
    let stranger = handshake_with(&url, INIT_ELICITING).await;
    let list = r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#;
    let mut stream = post(&url, Some(&owner), list).await;
    assert_eq!(stream.status(), 200);
    let mut buf = Vec::new();
    let q = next_sse_message(&mut stream, &mut buf).await;
    assert!(is_pin_question(&q), "the question comes first: {q}");
    assert_eq!(rig.waiting().await, 1);
    let yes = json!({"jsonrpc": "2.0", "id": q["id"], "result": accept()}).to_string();
    for session in [Some(stranger.as_str()), None] {
        let r = post(&url, session, &yes).await;
        assert_eq!(r.status(), 403, "{session:?}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            v["error"]["data"]["alibridge"]["rule"],
            "confirmation-owner"
        );
    }
    assert_eq!(rig.waiting().await, 1, "still open for its owner");
    assert_eq!(
        rig.pin_file()["pinned"]["echo"]["digest"]
            .as_str()
            .map(str::len),
        Some(64)
    );
    assert!(rig.pin_file()["pinned"].get("exfiltrate").is_none());

    let r = post(&url, Some(&owner), &yes).await;
    assert_eq!(r.status(), 202);
    let listing = next_sse_message(&mut stream, &mut buf).await;
    assert_eq!(listing["id"], 5, "{listing}");
    let mut listed: Vec<&str> = listing["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    listed.sort();
    assert_eq!(listed, ["delete_all", "echo", "exfiltrate"]);
    assert_eq!(rig.waiting().await, 0);
    until("the approval is audited", || rig.pin_decisions().len() == 2).await;
}

/// A client without elicitation is not asked: its listing's answer is the listing, without
/// the changed and new tools; stderr says how to approve them with `alibridge tools`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_elicitation_is_not_asked() {
    let rig = Rig::start("pin-proxy-plain").await;
    let url = rig.url();
    let sid = handshake_with(&url, INIT).await;
    let mut stream = post(
        &url,
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#,
    )
    .await;
    let first = next_sse_message(&mut stream, &mut Vec::new()).await;
    assert_eq!(first["id"], 5, "the listing itself, no question: {first}");
    let listed: Vec<&str> = first["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["delete_all"]);
    let stderr = rig.proxy.stderr_with(WITHHELD).await;
    let line = stderr.lines().find(|l| l.contains(WITHHELD)).unwrap();
    assert!(line.contains("alibridge tools"), "{line}");
    assert_eq!(rig.waiting().await, 0);
    assert!(rig.pin_decisions().is_empty());
}

/// `alibridge tools --approve` while the proxy runs: the next listing has the tool (no
/// restart), a call of it reaches the server, and the proxy's own later writes keep the
/// approval (the other tool stays pending).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approving_on_the_command_line_counts_without_a_restart() {
    let rig = Rig::start("pin-proxy-cli").await;
    let c = connect(&rig.url(), Client::default()).await;
    assert_eq!(names(&c).await, ["delete_all"]);
    let endpoint = format!("http://{}/mcp", rig.server.addr());
    let (code, _, stderr) = tools_cli(&rig.home, &[&endpoint, "--approve", "echo"]).await;
    assert_eq!(code, 0, "{stderr}");

    assert_eq!(sorted(names(&c).await), ["delete_all", "echo"]);
    let ran = call(&c, "echo").await;
    assert_eq!(ran["isError"], false, "{ran}");
    assert_eq!(rig.server.called_names(), ["echo"]);
    pin_refusal(&call(&c, "exfiltrate").await, "exfiltrate", "new");
    assert_eq!(
        rig.server.called_names(),
        ["echo"],
        "exfiltrate never reached it"
    );
    let file = rig.pin_file();
    let digest =
        |t: &Value| alibridge::policy::pins::digest(&alibridge::policy::pins::canonical(t));
    assert_eq!(file["pinned"]["echo"]["digest"], digest(&echo_injected()));
    assert_eq!(
        file["pending"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["exfiltrate"]
    );
    c.cancel().await.ok();
}

/// A server that answers with JSON bodies (stateless): the proxy turns the listing's answer
/// into an SSE stream of its own to ask, and the accepted tools are in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_answer_becomes_a_stream_that_asks() {
    let rig = Rig::on("pin-proxy-json", PinServer::start_json(first_tools()).await).await;
    let client = asking_client(Some(serde_json::from_value(accept()).unwrap()));
    let c = connect(&rig.url(), client.clone()).await;
    assert_eq!(
        sorted(names(&c).await),
        ["delete_all", "echo", "exfiltrate"]
    );
    assert_eq!(questions(&client).len(), 1);
    let ran = call(&c, "exfiltrate").await;
    assert_eq!(ran["isError"], false, "{ran}");
    assert_eq!(rig.server.called_names(), ["exfiltrate"]);
    assert!(rig.pin_file()["pending"].as_object().unwrap().is_empty());
    c.cancel().await.ok();
}

/// A client that goes away while its question is open closes it at once (`/health` counts it
/// no more, the audit log says cancelled), and nothing is pinned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_departing_client_closes_its_question() {
    let rig = Rig::start("pin-proxy-gone").await;
    let url = rig.url();
    let sid = handshake_with(&url, INIT_ELICITING).await;
    let mut stream = post(
        &url,
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#,
    )
    .await;
    let q = next_sse_message(&mut stream, &mut Vec::new()).await;
    assert!(is_pin_question(&q), "{q}");
    assert_eq!(rig.waiting().await, 1);
    drop(stream);
    until("the question is closed", || {
        rig.pin_decisions()
            == [
                ("echo".to_string(), "cancelled".to_string()),
                ("exfiltrate".to_string(), "cancelled".to_string()),
            ]
    })
    .await;
    assert_eq!(rig.waiting().await, 0);
    assert!(rig.pin_file()["pinned"].get("exfiltrate").is_none());
}

/// The official TypeScript SDK client over Streamable HTTP: the question arrives on its
/// `tools/list` POST's answer; accepting, that listing already has the tools (no
/// `notifications/tools/list_changed` needed) and `echo` runs; declining, it has not, the call
/// is refused with the pin error and the server runs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_sdk_client_answers_the_proxy() {
    for mode in ["accept", "decline"] {
        let rig = Rig::start(&format!("pin-proxy-sdk-{mode}")).await;
        let url = rig.url();
        let args = [format!("http:{mode}"), url];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let summary =
            tokio::task::block_in_place(|| run_peer_script("pin_client.mjs", &args, &rig.home));
        let asked = summary["asked"].as_array().expect("asked");
        assert_eq!(asked.len(), 1, "{summary:#}");
        assert!(
            asked[0]["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("alibridge-proxy-pin-")),
            "{summary:#}"
        );
        let message = asked[0]["message"].as_str().unwrap();
        assert!(message.contains(INJECTED_DESCRIPTION), "{message}");
        assert_eq!(summary["listChanged"], 0, "{summary:#}");
        let sorted_names = |k: &str| -> Vec<String> {
            sorted(serde_json::from_value(summary[k].clone()).unwrap())
        };
        if mode == "accept" {
            for k in ["before", "after"] {
                assert_eq!(sorted_names(k), ["delete_all", "echo", "exfiltrate"], "{k}");
            }
            assert_eq!(
                summary["call"],
                json!({"isError": false, "text": r#"ran echo {"text":"from-sdk"}"#}),
                "{summary:#}"
            );
            assert_eq!(rig.server.called_names(), ["echo"]);
        } else {
            for k in ["before", "after"] {
                assert_eq!(sorted_names(k), ["delete_all"], "{k}");
            }
            let err = summary["callError"].as_str().expect("the call failed");
            assert!(
                err.contains("echo") && err.contains("alibridge tools"),
                "{err}"
            );
            assert!(rig.server.calls().is_empty(), "{:?}", rig.server.calls());
            assert_eq!(asked.len(), 1, "the second listing did not ask");
        }
    }
}
