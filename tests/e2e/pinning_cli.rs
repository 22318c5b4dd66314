//! Issue 20, tool pinning on the command line and with bad input: `alibridge tools <URL>`
//! (the pinned set and what a bridge run withheld, with the diff; `--approve NAME…`, `--all`,
//! `--forget`; a URL with no pins), a corrupt pin file, and listings over the limits (10,000
//! tools, 1 MiB per definition). The CLI needs no network: the pending set is what a bridge run
//! recorded. The bridge side: `pinning`.

use serde_json::json;

use crate::support::check::tool_text;
use crate::support::home::TempHome;
use crate::support::pin_server::{
    delete_all, echo, echo_injected, echo_retyped, exfiltrate, first_tools, many_tools, PinServer,
};
use crate::support::pins::{
    assert_first_use, assert_withheld_line, bridge_in, list_run, pin_lines, pin_list_error,
    pin_refusal, pinned_bridge, sorted, tools_cli, FIRST_USE, RULE,
};

/// First use, then a run that withholds a retyped `echo` and a new `exfiltrate`: the pending
/// set the CLI works on.
async fn withheld_run(server: &PinServer, home: &TempHome, changed: Vec<serde_json::Value>) {
    let (names, _) = list_run(&server.url(), home, &[]).await;
    assert_eq!(names, ["echo", "delete_all"]);
    server.set_tools(changed);
    let (names, run) = list_run(&server.url(), home, &[]).await;
    assert_eq!(names, ["delete_all"]);
    assert_withheld_line(&run.stderr);
}

/// `alibridge tools <URL>` shows the pinned tools and the pending ones with their diff
/// (schema properties added and retyped; a new tool), exit 0; it changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listing_shows_pinned_and_pending_with_the_diff() {
    let home = TempHome::new("pin-cli-list");
    let server = PinServer::start(first_tools()).await;
    withheld_run(
        &server,
        &home,
        vec![echo_retyped(), delete_all(), exfiltrate()],
    )
    .await;
    let before = std::fs::read(&home.pin_files()[0]).unwrap();

    let (code, stdout, stderr) = tools_cli(&home, &[&server.url()]).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for needle in [
        "delete_all",
        "echo",
        "exfiltrate",
        "property callback_url added",
        "property text",
        "retyped string → integer",
    ] {
        assert!(stdout.contains(needle), "shows {needle:?}:\n{stdout}");
    }
    assert!(stdout.to_lowercase().contains("pending"), "{stdout}");
    assert_eq!(std::fs::read(&home.pin_files()[0]).unwrap(), before);

    // Still withheld: looking approves nothing.
    let (names, _) = list_run(&server.url(), &home, &[]).await;
    assert_eq!(names, ["delete_all"]);
}

/// `--approve NAME` pins that pending tool only: the next run lists it and runs it; the other
/// stays withheld and refused as new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_pins_the_named_tool_for_the_next_run() {
    let home = TempHome::new("pin-cli-approve");
    let server = PinServer::start(first_tools()).await;
    withheld_run(
        &server,
        &home,
        vec![echo_injected(), delete_all(), exfiltrate()],
    )
    .await;

    let (code, stdout, stderr) = tools_cli(&home, &[&server.url(), "--approve", "echo"]).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");

    let mut b = pinned_bridge(&server.url(), &home, &[]);
    b.initialize_plain().await;
    assert_eq!(sorted(b.list_all_names(1).await), ["delete_all", "echo"]);
    let ok = b.call_tool(10, "echo", json!({"text": "approved"})).await;
    assert_eq!(tool_text(&ok), r#"ran echo {"text":"approved"}"#);
    pin_refusal(
        &b.call_tool(11, "exfiltrate", json!({})).await,
        "exfiltrate",
        "new",
    );
    b.finish().await;
    assert_eq!(server.called_names(), ["echo"]);
}

/// `--all` pins every pending tool: the next run lists everything and says nothing about pins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_pins_every_pending_tool() {
    let home = TempHome::new("pin-cli-all");
    let server = PinServer::start(first_tools()).await;
    withheld_run(
        &server,
        &home,
        vec![echo_injected(), delete_all(), exfiltrate()],
    )
    .await;

    let (code, stdout, stderr) = tools_cli(&home, &[&server.url(), "--all"]).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let (names, run) = list_run(&server.url(), &home, &[]).await;
    assert_eq!(sorted(names), ["delete_all", "echo", "exfiltrate"]);
    assert!(pin_lines(&run.stderr).is_empty(), "{}", run.stderr);
}

/// `--forget` deletes the endpoint's pins: the next start is a first use again and trusts the
/// tools as they are now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_makes_the_next_start_a_first_use() {
    let home = TempHome::new("pin-cli-forget");
    let server = PinServer::start(first_tools()).await;
    withheld_run(&server, &home, vec![echo_injected(), delete_all()]).await;

    let (code, stdout, stderr) = tools_cli(&home, &[&server.url(), "--forget"]).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(home.pin_files().is_empty(), "{:?}", home.pin_files());
    let (names, run) = list_run(&server.url(), &home, &[]).await;
    assert_eq!(names, ["echo", "delete_all"]);
    assert_first_use(&run.stderr, 2);

    let (code, out, err) = tools_cli(&home, &[&server.url()]).await;
    assert_eq!(code, 0, "pins again:\n{out}\n{err}");
}

/// A URL with no pins: exit 1 and a message saying so (nothing created).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_without_pins_is_an_error() {
    let home = TempHome::new("pin-cli-none");
    let (code, stdout, stderr) = tools_cli(&home, &["http://127.0.0.1:9/mcp"]).await;
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains("no pins"),
        "{stdout}\n{stderr}"
    );
    assert!(home.pin_files().is_empty());
}

/// A corrupt pin file: the listing is answered with an error naming the file and
/// `--forget`; the file is left exactly as it was (never re-trusted or overwritten).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_pin_file_is_an_error_not_a_re_trust() {
    let home = TempHome::new("pin-corrupt");
    let server = PinServer::start(first_tools()).await;
    list_run(&server.url(), &home, &[]).await;
    let file = home.pin_files().pop().expect("a pin file");
    std::fs::write(&file, "{").unwrap();

    let mut b = pinned_bridge(&server.url(), &home, &[]);
    b.initialize_plain().await;
    b.request(1, "tools/list", json!({})).await;
    let msg = pin_list_error(&b.response(1).await);
    assert!(
        msg.contains(&*file.to_string_lossy()),
        "names the file: {msg}"
    );
    assert!(msg.contains("--forget"), "names the fix: {msg}");
    let run = b.finish().await;
    assert!(
        !pin_lines(&run.stderr)
            .iter()
            .any(|l| l.starts_with(FIRST_USE)),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "{");
    assert_eq!(home.pin_files(), [file]);
}

/// A listing the pins refuse (rule `--pin-tools`), not relayed and nothing pinned: the next
/// start with a normal listing is a first use.
async fn refused_listing(tag: &str, tools: Vec<serde_json::Value>) {
    let home = TempHome::new(tag);
    let server = PinServer::start(tools).await;
    let mut b = pinned_bridge(&server.url(), &home, &[]);
    b.initialize_plain().await;
    b.request(1, "tools/list", json!({})).await;
    let resp = b.response(1).await;
    pin_list_error(&resp);
    let short: String = resp.to_string().chars().take(300).collect();
    assert_eq!(resp["error"]["data"]["alibridge"]["rule"], RULE, "{short}");
    let run = b.finish().await;
    assert!(
        !pin_lines(&run.stderr)
            .iter()
            .any(|l| l.starts_with(FIRST_USE)),
        "{}",
        run.stderr
    );

    server.set_tools(first_tools());
    let (names, run) = list_run(&server.url(), &home, &[]).await;
    assert_eq!(names, ["echo", "delete_all"]);
    assert_first_use(&run.stderr, 2);
}

/// 10,001 tools: over the limit of 10,000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_over_ten_thousand_tools_is_refused() {
    refused_listing("pin-many", many_tools(10_001)).await;
}

/// One definition over 1 MiB (its description).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_definition_over_one_mebibyte_is_refused() {
    let mut big = echo();
    big["description"] = json!("x".repeat((1 << 20) + 1));
    refused_listing("pin-big", vec![big, delete_all()]).await;
}

/// The control of the two above: without pinning, the same listings reach the client whole
/// (no other limit of the bridge refuses them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_pinning_the_same_listings_pass() {
    let home = TempHome::new("pin-limits-control");
    let mut big = echo();
    big["description"] = json!("x".repeat((1 << 20) + 1));
    let server = PinServer::start(vec![big, delete_all()]).await;
    let mut b = bridge_in(&server.url(), &home, &[]);
    b.initialize_plain().await;
    let tools = b.list_all_tools(1).await;
    assert_eq!(
        tools[0]["description"].as_str().unwrap().len(),
        (1 << 20) + 1
    );
    server.set_tools(many_tools(10_001));
    assert_eq!(b.list_all_names(10).await.len(), 10_001);
    b.finish().await;
}
