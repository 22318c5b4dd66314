//! The fault matrix: upstream HTTP errors, a killed server, expired sessions, a cut SSE stream,
//! slow upstream, bad stdin, shutdown paths and an unreachable URL. Each test also proves that
//! every request was answered exactly once (`Bridge::finish`), that stdout carried only
//! JSON-RPC (the harness checks each line) and, through the server's tool counters and request
//! log, that nothing was executed or sent twice.
//!
//! Three families share their set-up and checks, one case table and one runner each: a fault
//! meeting one call ([`one_call`]), a call in flight when the run ends ([`in_flight`]), and
//! stdin lines that are no request ([`not_a_request`]).

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::support::bridge::{bridge_for, responses_per_id, Bridge};
use crate::support::cases;
use crate::support::check::{error_kind, init_params, tool_text};
use crate::support::mcp_server::{Match, SeenRequest, TestServer};
use crate::support::net::ClosedPort;

/// The POSTs that carried `tools/call` with JSON-RPC id `id`.
fn posts_of(reqs: &[SeenRequest], id: Value) -> Vec<&SeenRequest> {
    reqs.iter()
        .filter(|r| r.rpc_method.as_deref() == Some("tools/call") && r.rpc_id == Some(id.clone()))
        .collect()
}

/// What a request must be answered with.
#[derive(Debug)]
enum Answer {
    /// The tool's own text.
    Text(&'static str),
    /// A bridge-made error of one of these kinds.
    Kind(&'static [&'static str]),
    /// A bridge-made `http_status` error carrying this status.
    HttpStatus(u16),
    /// Exactly this message, as the server sent it.
    Verbatim(&'static str),
}

impl Answer {
    fn check(&self, resp: &Value) {
        match self {
            Answer::Text(text) => assert_eq!(tool_text(resp), *text),
            Answer::Kind(kinds) => assert!(kinds.contains(&error_kind(resp)), "{resp}"),
            Answer::HttpStatus(status) => {
                assert_eq!(error_kind(resp), "http_status", "{resp}");
                assert_eq!(resp["error"]["data"]["alibridge"]["httpStatus"], *status);
            }
            Answer::Verbatim(body) => {
                assert_eq!(resp, &serde_json::from_str::<Value>(body).unwrap());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One call meets a fault

/// What the server does to the call.
enum Fault {
    /// Nothing (the bridge's own flags make the fault).
    None,
    /// Answers this status and body without reaching rmcp.
    Respond(u16, &'static str),
    /// Dies the moment the call's POST arrives, before any answer.
    Kill,
}

/// One call (id 1) meets a fault; then a second call (id 2, `echo`) is made.
struct OneCall {
    flags: &'static [&'static str],
    fault: Fault,
    /// The tool called, and its arguments.
    call: (&'static str, Value),
    answer: Answer,
    /// What the second call gets: served (`None`), or an error of this kind.
    then: Option<&'static str>,
    /// How many times each tool ran in the end.
    ran: &'static [(&'static str, u64)],
}

/// Arms the fault, makes the call and the next one, and checks that the call was answered as
/// the case says, POSTed once (never re-sent), and that the tools ran as often as it says.
async fn one_call(case: OneCall) {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, case.flags);
    bridge.initialize().await;
    let (tool, args) = case.call;
    match case.fault {
        Fault::None => {}
        Fault::Respond(status, body) => server.fail_next(Match::tool(tool), status, body),
        Fault::Kill => server.kill_on(Match::tool(tool)),
    }
    case.answer.check(&bridge.call_tool(1, tool, args).await);
    let next = bridge.call_tool(2, "echo", json!({"text": "b"})).await;
    match case.then {
        None => assert_eq!(tool_text(&next), "b"),
        Some(kind) => assert_eq!(error_kind(&next), kind, "{next}"),
    }
    bridge.finish().await;
    assert_eq!(
        posts_of(&server.requests(), json!(1)).len(),
        1,
        "the failed POST was re-sent"
    );
    for (tool, n) in case.ran {
        assert_eq!(
            server.calls(tool),
            *n,
            "{tool} ran {} times",
            server.calls(tool)
        );
    }
}

cases! { one_call:
    /// A 500 answer to a tools/call POST becomes an error for that id with kind `http_status`;
    /// it is not retried, and the bridge keeps working.
    http_500_on_tools_call_is_an_http_status_error => OneCall {
        flags: &[],
        fault: Fault::Respond(500, "internal trouble"),
        call: ("echo", json!({"text": "a"})),
        answer: Answer::HttpStatus(500),
        then: None,
        ran: &[("echo", 1)],
    },
    /// A failed POST whose body is the server's own JSON-RPC error for that id is forwarded as
    /// is (the call never reached the tool).
    json_rpc_error_body_of_a_failed_post_is_forwarded => OneCall {
        flags: &[],
        fault: Fault::Respond(
            400,
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"bad arguments, says the server"}}"#,
        ),
        call: ("echo", json!({"text": "a"})),
        answer: Answer::Verbatim(
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"bad arguments, says the server"}}"#,
        ),
        then: None,
        ran: &[("echo", 1)],
    },
    /// The server dies the moment a tools/call POST arrives, before any answer: one error of
    /// kind `connect` or `stream_closed`, never a retry; a later call gets `connect`.
    server_killed_before_answering => OneCall {
        flags: &[],
        fault: Fault::Kill,
        call: ("sleep", json!({"ms": 10})),
        answer: Answer::Kind(&["connect", "stream_closed"]),
        then: Some("connect"),
        ran: &[("sleep", 0)],
    },
    /// `--request-timeout` answers a call the upstream is still working on with kind `timeout`.
    request_timeout_answers_timeout => OneCall {
        flags: &["--request-timeout", "1"],
        fault: Fault::None,
        call: ("sleep", json!({"ms": 30000})),
        answer: Answer::Kind(&["timeout"]),
        then: None,
        ran: &[("sleep", 1), ("echo", 1)],
    },
}

// ---------------------------------------------------------------------------------------------
// A call in flight when the run ends

/// How the run ends while the call is in flight.
enum Ending {
    /// The server dies (connections dropped, port closed).
    KillServer,
    /// The client closes stdin.
    CloseStdin,
    /// SIGTERM.
    #[cfg(unix)]
    Sigterm,
}

/// A `sleep` call (id 1) is running upstream, with an `echo` (id 2) sent right after it, when
/// the run ends.
struct InFlight {
    flags: &'static [&'static str],
    sleep_ms: u64,
    ending: Ending,
    /// What the sleep call gets.
    answer: Answer,
}

/// Starts the sleep and the echo, waits until the sleep runs upstream (its answer stream open),
/// ends the run as the case says, and checks: the sleep answered as the case says and POSTed
/// once, the echo answered, exit 0 with every id answered once, and the session DELETEd when
/// the bridge was the one to stop (a killed server cannot be).
async fn in_flight(case: InFlight) {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, case.flags);
    bridge.initialize().await;
    let sid = server.issued_session();
    bridge
        .request(
            1,
            "tools/call",
            json!({"name": "sleep", "arguments": {"ms": case.sleep_ms}}),
        )
        .await;
    bridge
        .request(
            2,
            "tools/call",
            json!({"name": "echo", "arguments": {"text": "e"}}),
        )
        .await;
    server
        .wait_for_request(|r| r.tool.as_deref() == Some("sleep") && r.status.is_some())
        .await;
    server.wait_for_calls("sleep", 1).await;

    let seen = match case.ending {
        Ending::KillServer => {
            assert_eq!(tool_text(&bridge.response(2).await), "e");
            server.kill();
            bridge.response(1).await;
            let r = bridge.call_tool(3, "echo", json!({"text": "a"})).await;
            assert_eq!(error_kind(&r), "connect", "{r}");
            bridge.finish().await.seen
        }
        Ending::CloseStdin => bridge.finish().await.seen,
        #[cfg(unix)]
        Ending::Sigterm => sigterm_and_exit(bridge).await,
    };
    let answer = |id: u64| {
        seen.iter()
            .find(|m| m["id"] == id && m.get("method").is_none())
            .unwrap_or_else(|| panic!("request {id} was not answered"))
    };
    case.answer.check(answer(1));
    assert_eq!(tool_text(answer(2)), "e");
    assert_eq!(posts_of(&server.requests(), json!(1)).len(), 1);
    assert_eq!(server.calls("sleep"), 1);
    if !matches!(case.ending, Ending::KillServer) {
        assert!(
            server
                .requests()
                .iter()
                .any(|r| r.method == "DELETE" && r.header("mcp-session-id") == Some(sid.as_str())),
            "the session was not DELETEd"
        );
    }
}

/// SIGTERM, then the bridge must exit 0 by itself with every id answered once; returns every
/// message it printed.
#[cfg(unix)]
async fn sigterm_and_exit(mut bridge: Bridge) -> Vec<Value> {
    bridge.sigterm();
    bridge.drain().await;
    let code = bridge.wait().await;
    assert_eq!(code, 0, "stderr:\n{}", bridge.stderr().await);
    for (id, n) in responses_per_id(&bridge.seen) {
        assert_eq!(n, 1, "id {id} answered {n} times");
    }
    bridge.seen
}

cases! { in_flight:
    /// The server dies while a tools/call is running (its SSE stream already open): that call
    /// gets one error of kind `connect` or `stream_closed`, and a later call gets `connect`.
    server_killed_mid_request => InFlight {
        flags: &[],
        sleep_ms: 60000,
        ending: Ending::KillServer,
        answer: Answer::Kind(&["connect", "stream_closed"]),
    },
    /// stdin closes while requests are in flight: they are still answered (within the grace
    /// period), the session is DELETEd, and the exit code is 0.
    stdin_closed_with_requests_in_flight => InFlight {
        flags: &[],
        sleep_ms: 1500,
        ending: Ending::CloseStdin,
        answer: Answer::Text("slept 1500"),
    },
    /// When the grace period runs out, the requests still in flight are answered with kind
    /// `shutdown` and the exit code is 0.
    shutdown_grace_expiry_answers_shutdown => InFlight {
        flags: &["--shutdown-grace", "1"],
        sleep_ms: 60000,
        ending: Ending::CloseStdin,
        answer: Answer::Kind(&["shutdown"]),
    },
    /// SIGTERM: the in-flight request still gets its real answer, then the bridge exits 0.
    #[cfg(unix)]
    sigterm_exits_zero => InFlight {
        flags: &[],
        sleep_ms: 1000,
        ending: Ending::Sigterm,
        answer: Answer::Text("slept 1000"),
    },
}

// ---------------------------------------------------------------------------------------------
// stdin lines that are no request

/// Chunks written to stdin, each with the error it must get (`code`, and whether its id must be
/// null), if any; then a real call is made.
struct NotARequest {
    input: &'static [(&'static str, Option<(i64, bool)>)],
}

/// Writes each chunk and reads its error; then checks that the next call is served, that no
/// other error was printed and every real id was answered once, and that nothing but the
/// session's own messages reached the server.
async fn not_a_request(case: NotARequest) {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &[]);
    bridge.initialize().await;
    let mut errors = 0;
    for (chunk, error) in case.input {
        bridge.write_raw(chunk.as_bytes()).await;
        if let Some((code, id_null)) = error {
            let m = bridge.next().await.expect("an error");
            assert_eq!(m["error"]["code"], *code, "for {chunk:?}: {m}");
            if *id_null {
                assert_eq!(m["id"], Value::Null, "for {chunk:?}: {m}");
            }
            errors += 1;
        }
    }
    assert_eq!(
        tool_text(&bridge.call_tool(1, "echo", json!({"text": "a"})).await),
        "a"
    );
    let seen = bridge.finish().await.seen;
    let printed = seen.iter().filter(|m| m.get("error").is_some()).count();
    assert_eq!(printed, errors, "errors printed: {seen:?}");
    let ids: BTreeSet<String> = responses_per_id(&seen)
        .into_keys()
        .filter(|id| id != "null")
        .collect();
    assert_eq!(ids, ["0", "1"].map(String::from).into_iter().collect());
    for r in server.requests().iter().filter(|r| r.method == "POST") {
        assert!(
            matches!(
                r.rpc_method.as_deref(),
                // `server/discover` is the `--protocol auto` era probe.
                Some("server/discover" | "initialize" | "notifications/initialized" | "tools/call")
            ),
            "sent upstream: {:?}",
            r.body
        );
    }
}

cases! { not_a_request:
    /// A line that is not JSON gets -32700 with id null, is not sent upstream, and the bridge
    /// goes on.
    garbage_line_gets_parse_error_and_the_bridge_continues => NotARequest {
        input: &[("this is {not json\n", Some((-32700, true)))],
    },
    /// JSON that is not a JSON-RPC message (batch array, scalar, object with neither method nor
    /// id) gets -32600 and is not sent upstream.
    non_jsonrpc_json_gets_invalid_request => NotARequest {
        input: &[
            ("[{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"ping\"}]\n", Some((-32600, false))),
            ("42\n", Some((-32600, true))),
            ("{\"hello\":\"world\"}\n", Some((-32600, true))),
        ],
    },
    /// Empty and whitespace-only lines produce nothing.
    empty_lines_are_ignored => NotARequest {
        input: &[("\n\n   \n\t\n\r\n", None)],
    },
}

// ---------------------------------------------------------------------------------------------
// The rest

/// After the server forgets every session (404 for the old id), the bridge re-initializes with
/// a fresh id, uses the new session, and the call runs exactly once; the client sees no extra
/// message from the replayed handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_session_is_reinitialized_and_the_call_runs_once() {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &[]);
    bridge.initialize().await;
    assert_eq!(
        tool_text(&bridge.call_tool(1, "echo", json!({"text": "a"})).await),
        "a"
    );
    let old = server.issued_session();
    assert_eq!(server.expire_sessions().await, 1);
    let r = bridge.call_tool(2, "echo", json!({"text": "b"})).await;
    assert_eq!(tool_text(&r), "b");
    let seen = bridge.finish().await.seen;

    let ids: BTreeSet<String> = responses_per_id(&seen).into_keys().collect();
    assert_eq!(ids, ["0", "1", "2"].map(String::from).into_iter().collect());
    assert_eq!(
        server.calls("echo"),
        2,
        "echo ran {} times for 2 calls",
        server.calls("echo")
    );
    let reqs = server.requests();
    let inits: Vec<_> = reqs
        .iter()
        .filter(|r| r.rpc_method.as_deref() == Some("initialize"))
        .collect();
    assert!(inits.len() >= 2, "no re-initialize");
    let first: Value = serde_json::from_slice(&inits[0].body).unwrap();
    for again in &inits[1..] {
        let m: Value = serde_json::from_slice(&again.body).unwrap();
        assert_ne!(
            m["id"], first["id"],
            "replayed initialize must use a fresh id"
        );
        assert_eq!(
            m["params"], first["params"],
            "replayed initialize must be the client's"
        );
    }
    let ok: Vec<_> = posts_of(&reqs, json!(2))
        .into_iter()
        .filter(|r| r.status == Some(200))
        .collect();
    assert_eq!(ok.len(), 1);
    let new = ok[0].header("mcp-session-id").unwrap();
    assert_ne!(new, old, "the call must use the new session");
    let initialized = reqs
        .iter()
        .filter(|r| r.rpc_method.as_deref() == Some("notifications/initialized"));
    assert!(
        initialized
            .filter(|r| r.header("mcp-session-id") == Some(new))
            .count()
            >= 1
    );
}

/// A POST's SSE stream dropped after two events (priming, first progress) is resumed with GET +
/// Last-Event-ID: the rest of the progress and the real result arrive exactly once, and the
/// tool ran once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_sse_stream_is_resumed_with_last_event_id() {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &[]);
    bridge.initialize().await;
    let cut = server.cut_next_sse(Match::tool("progress"), 2);
    let params =
        json!({"name": "progress", "arguments": {"steps": 3}, "_meta": {"progressToken": 9}});
    bridge.request(1, "tools/call", params).await;
    let before = bridge.seen.len();
    // Cut once the second event (the first progress) has reached the client.
    loop {
        let m = bridge.next().await.expect("the first progress");
        if m["method"] == "notifications/progress" {
            break;
        }
    }
    cut.now();
    let r = bridge.response(1).await;
    assert_eq!(tool_text(&r), "done 3");
    let progress: Vec<f64> = bridge.seen[before..]
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| m["params"]["progress"].as_f64().unwrap())
        .collect();
    assert_eq!(
        progress,
        vec![1.0, 2.0, 3.0],
        "progress lost or duplicated across the resume"
    );
    let sid = server.issued_session();
    bridge.finish().await;

    let reqs = server.requests();
    assert_eq!(
        posts_of(&reqs, json!(1)).len(),
        1,
        "the cut call was re-POSTed"
    );
    assert_eq!(server.calls("progress"), 1);
    let resume = reqs
        .iter()
        .find(|r| {
            r.method == "GET"
                && r.header("last-event-id")
                    .is_some_and(|id| id.starts_with("1/"))
        })
        .expect("a GET with Last-Event-ID of the last delivered event");
    assert_eq!(resume.header("mcp-session-id"), Some(sid.as_str()));
    assert_eq!(resume.status, Some(200));
}

/// A POST stream cut right after the server's sampling request is resumed by rmcp's own
/// resumption (GET + Last-Event-ID while the tool waits for the client): the client's answer
/// gets through and the real result arrives once; the tool ran once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_sse_stream_is_resumed_by_rmcp_itself() {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &[]);
    bridge.initialize().await;
    let cut = server.cut_next_sse_native(Match::tool("sample"), 2);
    bridge
        .request(
            1,
            "tools/call",
            json!({"name": "sample", "arguments": {"prompt": "q"}}),
        )
        .await;
    let req = loop {
        let m = bridge.next().await.expect("sampling request");
        if m["method"] == "sampling/createMessage" {
            break m;
        }
    };
    // The second event (the sampling request) has reached the client: cut.
    cut.now();
    // Answer only once resumed: rmcp forgets a request's stream as soon as it is answered.
    let is_resume = |r: &SeenRequest| {
        r.method == "GET"
            && r.header("last-event-id")
                .is_some_and(|id| id.starts_with("1/"))
    };
    let resume = server.wait_for_request(is_resume).await;
    let answer =
        json!({"role": "assistant", "content": {"type": "text", "text": "a"}, "model": "m"});
    bridge
        .send(&json!({"jsonrpc": "2.0", "id": req["id"], "result": answer}))
        .await;
    assert_eq!(tool_text(&bridge.response(1).await), "a");
    // rmcp replays the event named in Last-Event-ID; the bridge must not pass it on twice.
    let sampling = bridge
        .seen
        .iter()
        .filter(|m| m["method"] == "sampling/createMessage")
        .count();
    assert_eq!(sampling, 1, "a replayed event reached the client twice");
    bridge.finish().await;
    assert_eq!(
        resume.header("mcp-session-id"),
        Some(server.issued_session().as_str())
    );
    assert_eq!(
        posts_of(&server.requests(), json!(1)).len(),
        1,
        "the cut call was re-POSTed"
    );
    assert_eq!(server.calls("sample"), 1);
}

/// 32 requests in flight at once: a slow upstream call does not hold back the 31 fast ones,
/// even when one of them fails with 503; every request is answered once, the slow one last,
/// nothing runs twice. (The one test of "a slow call does not block fast ones".)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_with_concurrent_fast_calls() {
    let server = TestServer::start().await;
    let mut bridge = bridge_for(&server, &[]);
    bridge.initialize().await;
    bridge
        .request(
            "slow",
            "tools/call",
            json!({"name": "sleep", "arguments": {"ms": 3000}}),
        )
        .await;
    server
        .wait_for_request(|r| r.tool.as_deref() == Some("sleep"))
        .await;
    server.fail_next(Match::tool("echo"), 503, "busy");
    for i in 1..=31 {
        let args = json!({"text": format!("fast {i}")});
        bridge
            .request(i, "tools/call", json!({"name": "echo", "arguments": args}))
            .await;
    }
    let mut order = Vec::new();
    let mut failed = 0;
    while order.len() < 32 {
        let m = bridge.next().await.expect("stdout open");
        if m.get("method").is_some() {
            continue;
        }
        if m.get("error").is_some() {
            Answer::HttpStatus(503).check(&m);
            failed += 1;
        } else if m["id"] != "slow" {
            let i = m["id"].as_u64().unwrap();
            assert_eq!(tool_text(&m), format!("fast {i}"));
        }
        order.push(m["id"].clone());
    }
    assert_eq!(failed, 1);
    assert_eq!(
        order.last(),
        Some(&json!("slow")),
        "a fast call waited for the slow one"
    );
    bridge.finish().await;
    assert_eq!(server.calls("echo"), 30);
    assert_eq!(server.calls("sleep"), 1);
}

/// An upstream nobody listens on (a port held closed): each request gets kind `connect`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_url_is_a_connect_error() {
    let closed = ClosedPort::new();
    let url = format!("http://{}/mcp", closed.addr());
    let mut bridge = Bridge::spawn([url.as_str(), "--transport", "http-only"]);
    bridge.request(0, "initialize", init_params()).await;
    assert_eq!(error_kind(&bridge.response(0).await), "connect");
    bridge.request(1, "tools/list", json!({})).await;
    assert_eq!(error_kind(&bridge.response(1).await), "connect");
    bridge.finish().await;
}
