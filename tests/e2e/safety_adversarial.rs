//! Issue 19, "How it is tested": safety that holds against the agent it constrains. Every
//! attempt of `safety_adversarial_cases` goes through **both** front ends, the stdio bridge and
//! `alibridge proxy`, to the Core-edition-shaped upstream of `support/core_server`, which
//! records every byte it receives. One bridge (or one proxy) per flag set takes every attempt
//! of its table in turn, each with its own id.
//!
//! What is asserted, per attempt:
//! - the upstream never received its canary (a string unique to the attempt, in its arguments),
//!   raw bytes compared, checked after the answer and again once the front end is done;
//! - a write gets a clear refusal: a JSON-RPC error of kind `policy` (or, under
//!   `--confirm-writes` with a client that declines, an `isError` result);
//! - a message that is not one well-formed JSON-RPC object gets a JSON-RPC error (over the
//!   proxy, an HTTP 4xx also counts);
//! - a legitimate read reaches the upstream unchanged, its `ran …` answer reaches the client,
//!   and under `--confirm-writes` nobody is asked about it.
//!
//! A test collects every attempt that fails and names them all, rather than stopping at the
//! first.

use rmcp::model::CallToolRequestParams;
use rmcp::service::ServiceError;
use serde_json::{json, Value};

use crate::safety_adversarial_cases::{self as table, Attempt, Expect, Msg};
use crate::support::bridge::{responses_per_id, Bridge};
use crate::support::cases;
use crate::support::check::as_policy_refusal;
use crate::support::core_server::CoreServer;
use crate::support::proxy::{connect, handshake, send, Client, Proxy};

/// A flag set and its table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Set {
    ReadOnly,
    ConfirmWrites,
    DenyApi,
    AllowApi,
    StrictInput,
}

impl Set {
    fn flags(self) -> &'static [&'static str] {
        match self {
            Set::ReadOnly | Set::StrictInput => &["--read-only"],
            Set::ConfirmWrites => &["--confirm-writes"],
            Set::DenyApi => &["--deny-api", "ram:*,*:Delete*"],
            Set::AllowApi => &["--allow-api", "ecs:Describe*"],
        }
    }

    fn table(self) -> Vec<Attempt> {
        match self {
            Set::ReadOnly => table::read_only(),
            Set::ConfirmWrites => table::confirm_writes(),
            Set::DenyApi => table::deny_api(),
            Set::AllowApi => table::allow_api(),
            Set::StrictInput => table::strict_input(),
        }
    }

    /// Part of each canary, so a canary names its flag set.
    fn tag(self) -> &'static str {
        match self {
            Set::ReadOnly => "RO",
            Set::ConfirmWrites => "CW",
            Set::DenyApi => "DA",
            Set::AllowApi => "AA",
            Set::StrictInput => "SI",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Front {
    Stdio,
    Proxy,
}

cases! { run:
    /// `--read-only` through the stdio bridge.
    read_only_over_stdio => (Set::ReadOnly, Front::Stdio),
    /// `--read-only` through `alibridge proxy`.
    read_only_over_the_proxy => (Set::ReadOnly, Front::Proxy),
    /// `--confirm-writes`, the client declining every confirmation, through the stdio bridge.
    confirm_writes_declined_over_stdio => (Set::ConfirmWrites, Front::Stdio),
    /// `--confirm-writes`, rmcp's client declining every confirmation, through the proxy.
    confirm_writes_declined_over_the_proxy => (Set::ConfirmWrites, Front::Proxy),
    /// `--deny-api 'ram:*,*:Delete*'` through the stdio bridge.
    deny_api_over_stdio => (Set::DenyApi, Front::Stdio),
    /// `--deny-api 'ram:*,*:Delete*'` through the proxy.
    deny_api_over_the_proxy => (Set::DenyApi, Front::Proxy),
    /// `--allow-api 'ecs:Describe*'` through the stdio bridge.
    allow_api_over_stdio => (Set::AllowApi, Front::Stdio),
    /// `--allow-api 'ecs:Describe*'` through the proxy.
    allow_api_over_the_proxy => (Set::AllowApi, Front::Proxy),
    /// The strict reader (`--read-only`): raw lines on the bridge's stdin.
    strict_input_over_stdio => (Set::StrictInput, Front::Stdio),
    /// The strict reader (`--read-only`): raw bodies, and PUT/PATCH, to the proxy.
    strict_input_over_the_proxy => (Set::StrictInput, Front::Proxy),
}

/// The suite keeps its promise: at least 40 distinct attempts, unique names within each table
/// (a failure names its attempt), and every table holds legitimate calls that must pass next
/// to the ones that must not (a policy that refuses everything fails it).
#[test]
fn the_tables_hold_40_attempts_and_reads_that_must_pass() {
    let sets = [
        Set::ReadOnly,
        Set::ConfirmWrites,
        Set::DenyApi,
        Set::AllowApi,
        Set::StrictInput,
    ];
    let mut distinct = std::collections::HashSet::new();
    for set in sets {
        let t = set.table();
        let names: std::collections::HashSet<_> = t.iter().map(|a| a.name).collect();
        assert_eq!(names.len(), t.len(), "{set:?}: attempt names repeat");
        for want in [Expect::Passes, Expect::Refused] {
            assert!(t.iter().any(|a| a.expect == want), "{set:?}: no {want:?}");
        }
        distinct.extend(t.iter().map(|a| (a.name, template(&a.msg))));
    }
    assert!(distinct.len() >= 40, "only {} attempts", distinct.len());
}

/// The recording upstream itself: bytes no JSON parser takes are recorded as they came (and
/// found by their canary), PUT bodies too, and only a well-formed POSTed tools/call runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_core_fake_records_what_it_cannot_parse() {
    let upstream = CoreServer::start().await;
    let url = upstream.url();
    let bad = fill(
        "<BOM>{\"id\":1,\"method\":\"tools/call\",\"x\":\"CANARY<FF>\"}",
        "CNRYSELF0001",
        1,
    );
    let r = send(reqwest::Method::POST, &url, None, bad.clone()).await;
    assert_eq!(r.status(), 400);
    let put = fill(
        r#"{"id":2,"method":"tools/call","params":{"name":"echo","arguments":{"t":"CANARY"}}}"#,
        "CNRYSELF0002",
        2,
    );
    let r = send(reqwest::Method::PUT, &url, None, put).await;
    assert_eq!(r.status(), 405);
    assert!(upstream.executed_calls().is_empty());
    assert_eq!(upstream.raw()[0], bad);
    assert_eq!(upstream.reached("CNRYSELF0002").unwrap().method, "PUT");
    let ok = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"t":"CNRYSELF0003"}}}"#;
    let r: Value = send(reqwest::Method::POST, &url, None, ok.into())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        r["result"]["content"][0]["text"],
        r#"ran echo {"t":"CNRYSELF0003"}"#
    );
    assert_eq!(
        upstream.executed_calls(),
        [("echo".to_string(), json!({"t": "CNRYSELF0003"}))]
    );
    upstream.assert_never_reached("CNRYSELF0004");
}

/// One attempt, ready to send.
struct Prepared<'a> {
    attempt: &'a Attempt,
    canary: String,
    id: i64,
    /// The tools/call as the upstream should execute it (for attempts expected to pass).
    call: Option<(String, Value)>,
    /// The message as sent: a stdin line (without its newline) or an HTTP body.
    bytes: Vec<u8>,
}

/// What came back for one attempt.
enum Answer {
    /// A JSON-RPC response.
    Message(Value),
    /// Over the proxy: an HTTP answer holding no JSON-RPC response.
    Http(u16, String),
    /// No answer: `why`.
    Nothing(String),
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Message(m) => write!(f, "{m}"),
            Answer::Http(status, body) => write!(f, "HTTP {status} {body}"),
            Answer::Nothing(why) => write!(f, "{why}"),
        }
    }
}

/// `template` with `CANARY`, `@ID@`, `<BOM>` and `<FF>` filled in.
fn fill(template: &str, canary: &str, id: i64) -> Vec<u8> {
    let text = template
        .replace("CANARY", canary)
        .replace("@ID@", &id.to_string())
        .replace("<BOM>", "\u{feff}");
    let mut out = Vec::with_capacity(text.len());
    for (i, part) in text.split("<FF>").enumerate() {
        if i > 0 {
            out.push(0xff);
        }
        out.extend_from_slice(part.as_bytes());
    }
    out
}

fn prepare(attempt: &Attempt, canary: String, id: i64) -> Prepared<'_> {
    let text = |t: &str| String::from_utf8(fill(t, &canary, id)).unwrap();
    let call = match attempt.msg {
        Msg::Cli(c) => Some(("AlibabaCloud___CallCLI", json!({"command": text(c)}))),
        Msg::Script(s) => Some(("AlibabaCloud___RunScript", json!({"script": text(s)}))),
        Msg::Call(tool, args) => {
            let args = serde_json::from_str(&text(args))
                .unwrap_or_else(|e| panic!("{}: arguments are not JSON: {e}", attempt.name));
            Some((tool, args))
        }
        Msg::Raw(_) | Msg::Http(..) => None,
    };
    let (bytes, call) = match (attempt.msg, call) {
        (Msg::Raw(t) | Msg::Http(_, t), _) => {
            let bytes = fill(t, &canary, id);
            // What a well-formed raw message asks the upstream to run.
            let call = serde_json::from_slice::<Value>(&bytes).ok().map(|m| {
                let p = &m["params"];
                (
                    p["name"].as_str().unwrap_or_default().to_string(),
                    p["arguments"].clone(),
                )
            });
            (bytes, call)
        }
        (_, Some((tool, args))) => {
            let msg = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": {"name": tool, "arguments": args}});
            (msg.to_string().into_bytes(), Some((tool.to_string(), args)))
        }
        (_, None) => unreachable!("every other message is a tools/call"),
    };
    Prepared {
        attempt,
        canary,
        id,
        call,
        bytes,
    }
}

fn template(msg: &Msg) -> &'static str {
    match *msg {
        Msg::Cli(t) | Msg::Script(t) | Msg::Raw(t) | Msg::Http(_, t) => t,
        Msg::Call(_, t) => t,
    }
}

async fn run((set, front): (Set, Front)) {
    let attempts = set.table();
    let mut failures = Vec::new();
    for a in &attempts {
        if a.expect != Expect::Passes && !template(&a.msg).contains("CANARY") {
            failures.push(format!("{}: the table gives it no CANARY to trace", a.name));
        }
    }
    let front_tag = if front == Front::Stdio { "S" } else { "P" };
    let prepared: Vec<Prepared> = attempts
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let canary = format!("CNRY{i:03}{}{front_tag}", set.tag());
            prepare(a, canary, 1000 + i as i64)
        })
        .collect();
    let upstream = CoreServer::start().await;
    let confirm = set == Set::ConfirmWrites;
    let answers = match front {
        Front::Stdio => over_stdio(set, &upstream, &prepared, &mut failures).await,
        Front::Proxy => over_proxy(set, &upstream, &prepared, &mut failures).await,
    };
    let (mut ran, mut failed) = (0, std::collections::HashSet::new());
    for (p, answer, asked) in answers {
        ran += 1;
        let problems = judge(p, &answer, asked, confirm, &upstream);
        if !problems.is_empty() {
            failed.insert(p.attempt.name);
            let answer = answer.to_string();
            failures.push(format!(
                "{}: {}\n      answer: {answer:.400}",
                p.attempt.name,
                problems.join("; "),
            ));
        }
    }
    // Once the front end is done: nothing it sent late carried a canary either.
    for p in &prepared {
        if p.attempt.expect == Expect::Passes || failed.contains(p.attempt.name) {
            continue;
        }
        if let Some(r) = upstream.reached(&p.canary) {
            failures.push(format!(
                "{}: the upstream received its canary late ({} {})",
                p.attempt.name, r.method, r.path
            ));
        }
    }
    assert!(ran >= 8, "{set:?} over {front:?} ran only {ran} attempts");
    assert!(
        failures.is_empty(),
        "{set:?}: {} of {ran} attempts failed under `{}` over {front:?}:\n  - {}",
        failures.len(),
        set.flags().join(" "),
        failures.join("\n  - ")
    );
}

/// What is wrong with how one attempt went (nothing: it went as expected).
fn judge(
    p: &Prepared,
    answer: &Answer,
    asked: usize,
    confirm: bool,
    upstream: &CoreServer,
) -> Vec<String> {
    let mut problems = Vec::new();
    match p.attempt.expect {
        Expect::Passes => {
            let (tool, args) = p
                .call
                .clone()
                .expect("a read to pass is a well-formed call");
            let text = match answer {
                Answer::Message(m) => m["result"]["content"][0]["text"].as_str(),
                _ => None,
            };
            if !text.is_some_and(|t| t.starts_with(&format!("ran {tool} "))) {
                problems.push(format!(
                    "a legitimate read did not pass (expected `ran {tool} …`)"
                ));
            }
            if asked > 0 {
                problems.push(format!("a read was asked about ({asked} confirmation(s))"));
            }
            if !upstream.executed_calls().contains(&(tool, args)) {
                problems.push("the upstream did not run it as sent".into());
            }
        }
        Expect::Refused => match answer {
            Answer::Message(m) if as_policy_refusal(m).is_some() => {}
            Answer::Message(m) if confirm && m["result"]["isError"] == true => {}
            _ => problems.push(if confirm {
                "expected a policy refusal or a declined confirmation (isError)".into()
            } else {
                "expected a JSON-RPC error of kind policy".into()
            }),
        },
        Expect::Malformed => match answer {
            Answer::Message(m) if m["error"].is_object() => {}
            Answer::Http(status, _) if (400..500).contains(status) => {}
            _ => problems.push("expected a JSON-RPC error (or HTTP 4xx)".into()),
        },
    }
    if p.attempt.expect != Expect::Passes {
        if let Some(r) = upstream.reached(&p.canary) {
            problems.push(format!(
                "the upstream received its canary ({} {}: {:.200})",
                r.method,
                r.path,
                String::from_utf8_lossy(&r.body)
            ));
        }
    }
    problems
}

/// Every attempt (but the proxy-only ones) as lines on one bridge's stdin, answering every
/// confirmation with a decline; returns (attempt, answer, confirmations asked).
async fn over_stdio<'a>(
    set: Set,
    upstream: &CoreServer,
    prepared: &'a [Prepared<'a>],
    failures: &mut Vec<String>,
) -> Vec<(&'a Prepared<'a>, Answer, usize)> {
    let mut args = vec![upstream.url()];
    for a in ["--transport", "http-only", "--auth", "none"] {
        args.push(a.to_string());
    }
    args.extend(set.flags().iter().map(|f| f.to_string()));
    let mut b = Bridge::spawn(args);
    b.initialize().await;
    let mut out = Vec::new();
    for p in prepared {
        let mut line = p.bytes.clone();
        line.push(b'\n');
        if let Msg::Http(..) = p.attempt.msg {
            continue; // no HTTP method on stdio
        }
        // Should the bridge drop a request, the panic of its hang comes after this line.
        eprintln!("{set:?} over stdio: {}", p.attempt.name);
        b.write_raw(&line).await;
        let mut asked = 0;
        let answer = if let Msg::Raw(t) = p.attempt.msg {
            // A raw line's answer may carry id null, or (without an id) not come at all: a
            // request after it marks where a local refusal must have come by; one with an id
            // is answered in any case.
            let fence = json!(format!("fence-{}", p.id));
            b.request(fence.clone(), "tools/list", json!({})).await;
            let with_id = t.contains("@ID@");
            let (mut mine, mut fenced) = (None, false);
            while !(fenced && (mine.is_some() || !with_id)) {
                let m = next_response(&mut b, &mut asked).await;
                if m["id"] == fence {
                    fenced = true;
                } else if mine.is_none()
                    && (m["id"] == p.id || m["id"].is_null() || m["id"] == "another")
                {
                    mine = Some(m);
                }
            }
            mine.map(Answer::Message).unwrap_or_else(|| {
                Answer::Nothing("no answer before the answer to the next request".into())
            })
        } else {
            loop {
                let m = next_response(&mut b, &mut asked).await;
                if m["id"] == p.id {
                    break Answer::Message(m);
                }
            }
        };
        out.push((p, answer, asked));
    }
    b.close_stdin();
    b.drain().await;
    let code = b.wait().await;
    let stderr = b.stderr().await;
    if code != 0 {
        failures.push(format!("the bridge exited with {code}; stderr:\n{stderr}"));
    }
    for (id, n) in responses_per_id(&b.seen) {
        if id != "null" && n > 1 {
            failures.push(format!("id {id} was answered {n} times"));
        }
    }
    out
}

/// The bridge's next response, declining every `elicitation/create` on the way (counted in
/// `asked`) and skipping notifications.
async fn next_response(b: &mut Bridge, asked: &mut usize) -> Value {
    loop {
        let m = b.next().await.expect("the bridge closed stdout");
        if m["method"] == "elicitation/create" {
            *asked += 1;
            b.send(&json!({"jsonrpc": "2.0", "id": m["id"], "result": {"action": "decline"}}))
                .await;
        } else if m.get("method").is_none() {
            return m;
        }
    }
}

/// Every attempt through one proxy: raw HTTP (`support::proxy::send`), or under
/// `--confirm-writes` rmcp's client declining every confirmation.
async fn over_proxy<'a>(
    set: Set,
    upstream: &CoreServer,
    prepared: &'a [Prepared<'a>],
    failures: &mut Vec<String>,
) -> Vec<(&'a Prepared<'a>, Answer, usize)> {
    let base = upstream.base();
    let mut args = vec!["--auth", "none", "--upstream-url", base.as_str()];
    args.extend_from_slice(set.flags());
    let proxy = Proxy::start(&args, &[]).await;
    let url = proxy.url("/mcp");
    let mut out = Vec::new();
    if set == Set::ConfirmWrites {
        let client = Client {
            elicits: true,
            decline_rest: true,
            ..Client::default()
        };
        let asked = client.asked.clone();
        let c = connect(&url, client).await;
        for p in prepared {
            let Some((tool, args)) = (match p.attempt.msg {
                Msg::Raw(_) | Msg::Http(..) => None,
                _ => p.call.clone(),
            }) else {
                failures.push(format!(
                    "{}: raw messages need a plain client",
                    p.attempt.name
                ));
                continue;
            };
            let before = asked.lock().unwrap().len();
            let params: CallToolRequestParams =
                serde_json::from_value(json!({"name": tool, "arguments": args})).unwrap();
            let answer = match c.call_tool(params).await {
                Ok(r) => Answer::Message(json!({"jsonrpc": "2.0", "result": r})),
                Err(ServiceError::McpError(e)) => {
                    Answer::Message(json!({"jsonrpc": "2.0", "error": e}))
                }
                Err(e) => Answer::Nothing(format!("the rmcp client failed: {e}")),
            };
            let asked = asked.lock().unwrap().len() - before;
            out.push((p, answer, asked));
        }
        c.cancel().await.ok();
    } else {
        let sid = handshake(&url).await;
        for p in prepared {
            let method = match p.attempt.msg {
                Msg::Http(m, _) => m.parse().expect("an HTTP method"),
                _ => reqwest::Method::POST,
            };
            let resp = send(method, &url, Some(&sid), p.bytes.clone()).await;
            out.push((p, http_answer(resp).await, 0));
        }
    }
    out
}

/// The JSON-RPC response in an HTTP answer of the proxy (a JSON body, or the first response
/// on an SSE stream), else the status and body.
async fn http_answer(resp: reqwest::Response) -> Answer {
    let status = resp.status().as_u16();
    let sse = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let body = resp.bytes().await.unwrap_or_default();
    let text = String::from_utf8_lossy(&body).into_owned();
    let messages: Vec<Value> = if sse {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect()
    } else {
        serde_json::from_str(&text).into_iter().collect()
    };
    match messages
        .into_iter()
        .find(|m: &Value| m.is_object() && m.get("method").is_none())
    {
        Some(m) => Answer::Message(m),
        None => Answer::Http(status, text),
    }
}
