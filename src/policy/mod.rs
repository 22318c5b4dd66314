//! The local tool policy: which tools the client may see and call, what a write needs before it
//! is relayed, the default region, and the audit trail. A leaf: it knows JSON-RPC messages
//! (`crate::jsonrpc`) and nothing of transports or credentials; the relay and the proxy call it.
//!
//! - [`glob`]: `--allow-tools` / `--deny-tools` patterns.
//! - [`classify`]: reads and writes (annotations, API verbs, the generic Core tools per call).
//! - [`messages`]: reading `tools/call`, filtering `tools/list` answers, adding the region, by
//!   splicing the original bytes.
//! - [`confirm`]: `--confirm-writes` (the `elicitation/create` request and its answer).
//! - [`audit`]: `--audit-log` (JSON Lines, `0600`, one rollover file).
//! - [`redact`]: secret-looking arguments masked for the person and the log.
//! - `record`: one audit line ([`Record`]), and the lines both front ends write; `refusal`: the
//!   error a refused call gets.
//! - [`api`]: `--allow-api` / `--deny-api` patterns on `product:Action`.
//! - [`cli_command`]: CallCLI commands read as a shell would, with a strict grammar.
//! - [`strict`]: the strict reader every client message passes when a flag limits calls.
//! - [`server_side`]: the flags compiled into the safety policy bound to AccessKey tokens.
//! - [`quote`]: the price quote shown before a CLI write is confirmed.
//! - [`pins`]: `--pin-tools`, tool definitions held back until the person approves a change.
//!
//! Enforcement is local and fails closed: a tool hidden from `tools/list` is also refused when
//! called, with an error naming the rule, and the call never reaches the server; a tool the
//! bridge has not seen listed is judged by its name alone (unknown shapes are writes); a
//! `tools/call` that cannot be read unambiguously is refused.

pub mod api;
pub mod audit;
pub mod classify;
pub mod cli_command;
pub mod confirm;
pub mod glob;
pub mod messages;
pub mod pins;
pub mod quote;
mod record;
pub mod redact;
mod refusal;
pub mod server_side;
pub mod strict;

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use bytes::Bytes;
use serde_json::Value;

use self::classify::{Access, CallClass, Shape};
use self::glob::Glob;
use crate::jsonrpc::{self, Id};

pub use self::record::{Origin, Record};
pub use self::refusal::refusal;

/// Who the calls are made as, for the audit log (`ak:LTAI****1234`, `oauth:<subject>`).
pub type Identity = Box<dyn Fn() -> Option<String> + Send + Sync>;

/// The JSON-RPC error code of a refusal (the bridge's own range, as for upstream failures).
pub const REFUSAL_CODE: i64 = jsonrpc::code::UPSTREAM_ERROR;

/// The policy flags, validated.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// `--allow-tools`: when not empty, only matching tools exist for the client.
    pub allow: Vec<Glob>,
    /// `--deny-tools` / `--ignore-tool`: matching tools never exist for the client (deny wins).
    pub deny: Vec<Glob>,
    /// `--allow-api`: when not empty, every API a call resolves to must match one of these.
    pub allow_api: Vec<api::ApiGlob>,
    /// `--deny-api`: a call resolving to a matching API is refused (deny wins).
    pub deny_api: Vec<api::ApiGlob>,
    /// `--read-only`: only reads are listed and callable.
    pub read_only: bool,
    /// `--confirm-writes`: the person confirms each write in their client.
    pub confirm_writes: bool,
    /// `--region`: added as `x_mcp_region_id` to calls of tools that declare it, when absent.
    pub region: Option<String>,
    /// The server enforces the same limits too (a safety policy compiled from these flags is
    /// bound to every token, AccessKeys): a call whose effect cannot be read locally (a
    /// RunScript script, a CLI command alibridge cannot parse) is then relayed for the server to
    /// judge instead of refused.
    pub server_enforced: bool,
    /// `--confirm-timeout`: how long a confirmation waits for the person before it counts as
    /// declined (`None`: the default, [`DEFAULT_CONFIRM_TIMEOUT`]).
    pub confirm_timeout: Option<std::time::Duration>,
    /// `--pin-tools` (on by default with `--confirm-writes`): new and changed tool definitions
    /// are held back until approved ([`pins`]).
    pub pin_tools: bool,
}

/// How long a confirmation waits when `--confirm-timeout` is not given.
pub const DEFAULT_CONFIRM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// What the bridge knows of a listed tool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ToolInfo {
    /// `annotations.readOnlyHint: true`.
    pub read_only_hint: bool,
    /// `inputSchema.properties` has `x_mcp_region_id`.
    pub declares_region: bool,
}

/// Why a tool is hidden or a call refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// Matched this `--deny-tools` pattern.
    Denied(String),
    /// Matched no `--allow-tools` pattern.
    NotAllowed,
    /// A write under `--read-only`.
    ReadOnly,
    /// A write under `--confirm-writes`, and the client cannot be asked.
    CannotConfirm,
    /// `--pin-tools`: the tool is new or changed since it was pinned (why).
    Unpinned(String),
    /// The `tools/call` could not be read unambiguously.
    Unreadable,
    /// The call runs this API (`ecs:DeleteInstance`), which matches this `--deny-api` pattern.
    DeniedApi { pattern: String, api: String },
    /// The call runs this API, which matches no `--allow-api` pattern.
    ApiNotAllowed(String),
    /// API rules are set and alibridge cannot know every API the call runs.
    ApisUnknown,
}

impl Rule {
    /// The rule as the user wrote it, for messages and the audit log.
    pub fn name(&self) -> String {
        match self {
            Rule::Denied(p) => format!("--deny-tools {p}"),
            Rule::NotAllowed => "--allow-tools".into(),
            Rule::ReadOnly => "--read-only".into(),
            Rule::CannotConfirm => "--confirm-writes".into(),
            Rule::Unpinned(_) => "--pin-tools".into(),
            Rule::Unreadable => "unreadable tools/call".into(),
            Rule::DeniedApi { pattern, .. } => format!("--deny-api {pattern}"),
            Rule::ApiNotAllowed(_) => "--allow-api".into(),
            Rule::ApisUnknown => "--allow-api/--deny-api (APIs unknown)".into(),
        }
    }
}

/// What to do with one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Relay,
    /// Ask the person first.
    Confirm,
    Refuse(Rule),
}

/// One call's classification and verdict.
#[derive(Debug, Clone)]
pub struct Decision {
    pub class: CallClass,
    pub verdict: Verdict,
}

impl Policy {
    /// Whether any flag of this module is set (else the relay skips it entirely).
    pub fn is_active(&self) -> bool {
        self.constrains() || self.region.is_some()
    }

    /// Whether any flag limits what the agent may call (`--region` alone only adds a default):
    /// then client messages go through the strict reader ([`strict`]).
    pub fn constrains(&self) -> bool {
        !self.allow.is_empty()
            || !self.deny.is_empty()
            || !self.allow_api.is_empty()
            || !self.deny_api.is_empty()
            || self.read_only
            || self.confirm_writes
            || self.pin_tools
    }

    /// Whether tools are ever hidden (so `tools/list` answers must be read and filtered).
    fn filters(&self) -> bool {
        !self.allow.is_empty() || !self.deny.is_empty() || self.read_only
    }

    /// The name rules: deny wins, then the allow list.
    pub fn by_name(&self, name: &str) -> Option<Rule> {
        if let Some(g) = glob::first_match(&self.deny, name) {
            return Some(Rule::Denied(g.as_str().to_string()));
        }
        if !self.allow.is_empty() && glob::first_match(&self.allow, name).is_none() {
            return Some(Rule::NotAllowed);
        }
        None
    }

    /// The API rules: every API the call runs must pass `--deny-api` (deny wins) and, when
    /// set, `--allow-api`. A call whose APIs cannot all be known passes only when the server
    /// enforces the same rules.
    pub fn by_api(&self, class: &CallClass) -> Option<Rule> {
        if self.allow_api.is_empty() && self.deny_api.is_empty() {
            return None;
        }
        let Some(apis) = &class.apis else {
            return (!self.server_enforced).then_some(Rule::ApisUnknown);
        };
        for a in apis {
            if let Some(g) = self.deny_api.iter().find(|g| g.may_match(a)) {
                return Some(Rule::DeniedApi {
                    pattern: g.as_str().to_string(),
                    api: a.label(),
                });
            }
            if !self.allow_api.is_empty() && api::first_match(&self.allow_api, a).is_none() {
                return Some(Rule::ApiNotAllowed(a.label()));
            }
        }
        None
    }

    /// Why `name` is hidden from `tools/list`, if it is. Under `--read-only` the generic tools
    /// stay listed: each of their calls is judged by its arguments. A tool whose name carries
    /// an API the API rules refuse is hidden too.
    pub fn hides(&self, name: &str, info: &ToolInfo) -> Option<Rule> {
        if let Some(r) = self.by_name(name) {
            return Some(r);
        }
        if classify::generic(name).is_none() {
            let class = classify::classify_call(name, info.read_only_hint, None);
            if let Some(r @ (Rule::DeniedApi { .. } | Rule::ApiNotAllowed(_))) = self.by_api(&class)
            {
                return Some(r);
            }
        }
        if self.read_only && classify::shape(name, info.read_only_hint) == Shape::Write {
            return Some(Rule::ReadOnly);
        }
        None
    }

    /// Decides a call of `name` with `args`; `info` is what `tools/list` said (`None`: not
    /// seen listed, so judged by the name alone).
    pub fn decide(&self, name: &str, info: Option<&ToolInfo>, args: Option<&Value>) -> Decision {
        let hint = info.is_some_and(|i| i.read_only_hint);
        let mut class = classify::classify_call(name, hint, args);
        let verdict = if let Some(rule) = self.by_name(name) {
            Verdict::Refuse(rule)
        } else if let Some(rule) = self.by_api(&class) {
            Verdict::Refuse(rule)
        } else if class.access == Access::Read {
            Verdict::Relay
        } else if self.read_only && !(class.opaque && self.server_enforced) {
            Verdict::Refuse(Rule::ReadOnly)
        } else if self.read_only {
            class.reason.push_str(
                "; relayed for the server-side read-only policy bound to the token to judge",
            );
            Verdict::Relay
        } else if self.confirm_writes {
            Verdict::Confirm
        } else {
            Verdict::Relay
        };
        Decision { class, verdict }
    }

    /// The region to add to a call of a tool described by `info` with `args`: only for tools
    /// that declare `x_mcp_region_id`, and never over a value the model set.
    pub fn region_for(&self, info: Option<&ToolInfo>, args: Option<&Value>) -> Option<&str> {
        let region = self.region.as_deref()?;
        if !info.is_some_and(|i| i.declares_region) {
            return None;
        }
        let set = args.is_some_and(|a| a.get(messages::REGION_ARG).is_some());
        (!set).then_some(region)
    }
}

/// Checks a `--region` value: a region id such as `cn-hangzhou` or `ap-southeast-1`.
pub fn parse_region(raw: &str) -> Result<String, String> {
    let r = raw.trim();
    let ok = !r.is_empty()
        && r.len() <= 64
        && r.contains('-')
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !r.starts_with('-')
        && !r.ends_with('-');
    if ok {
        Ok(r.to_string())
    } else {
        Err(format!(
            "--region {raw:?} is not a region id; give one such as cn-hangzhou or ap-southeast-1"
        ))
    }
}

/// Most tools remembered per session: a server listing more is only judged by name for the
/// rest (fail closed), and memory stays bounded.
pub const MAX_TOOLS: usize = 10_000;
/// Most `tools/list` / `tools/call` requests tracked at once per session.
const MAX_TRACKED: usize = 65_536;

/// A call that was relayed and waits for its answer (for the audit log).
#[derive(Debug, Clone)]
pub struct Pending {
    pub tool: String,
    pub class: CallClass,
    /// The person confirmed it (`--confirm-writes`).
    pub confirmed: bool,
    /// The region added by `--region`, if any.
    pub region_added: Option<String>,
    /// The arguments as relayed, redacted.
    pub arguments: Value,
    pub started: Instant,
}

/// The policy's state for one MCP session (the bridge's one connection, or one server behind
/// the proxy): tools seen listed, requests whose answers it must read, the client's
/// capabilities.
#[derive(Debug, Default)]
pub struct Session {
    tools: HashMap<String, ToolInfo>,
    lists: HashSet<Id>,
    calls: HashMap<Id, Pending>,
    /// The client declared form-mode elicitation in `initialize`.
    pub client_elicits: bool,
}

impl Session {
    pub fn tool(&self, name: &str) -> Option<&ToolInfo> {
        self.tools.get(name)
    }

    /// Remembers what a listing said about a tool.
    pub fn record(&mut self, name: &str, info: ToolInfo) {
        if name.is_empty() {
            return;
        }
        if self.tools.len() < MAX_TOOLS || self.tools.contains_key(name) {
            self.tools.insert(name.to_string(), info);
        }
    }

    /// The server said `notifications/tools/list_changed`: forget the listing (the client
    /// lists again; until then calls are judged by name).
    pub fn forget_tools(&mut self) {
        self.tools.clear();
    }

    /// A `tools/list` request whose answer must be filtered.
    pub fn expect_list(&mut self, id: Id) {
        if self.lists.len() < MAX_TRACKED {
            self.lists.insert(id);
        }
    }

    /// Whether `id` answers a `tools/list` (and stops tracking it).
    pub fn take_list(&mut self, id: &Id) -> bool {
        self.lists.remove(id)
    }

    /// A relayed call waiting for its answer.
    pub fn expect_call(&mut self, id: Id, p: Pending) {
        if self.calls.len() < MAX_TRACKED {
            self.calls.insert(id, p);
        }
    }

    pub fn take_call(&mut self, id: &Id) -> Option<Pending> {
        self.calls.remove(id)
    }
}

/// Handles a `tools/list` answer for `session`: records every tool and drops the hidden ones,
/// then, with `pins`, the ones held back until the person approves them (a tool the policy
/// hides is never judged for pinning). `Ok(None)` when the answer goes out unchanged; an error
/// when the listing cannot be pinned (too many tools, one too large) and must not be relayed.
pub fn filter_list(
    policy: &Policy,
    session: &mut Session,
    pins: Option<&mut pins::Pins>,
    bytes: &[u8],
) -> Result<Option<Bytes>, pins::PinError> {
    let filters = policy.filters();
    let Some(pins) = pins else {
        return Ok(messages::filter_tools(
            bytes,
            |l| session.record(&l.name, l.info),
            |l| !filters || policy.hides(&l.name, &l.info).is_none(),
        ));
    };
    pins.refresh()?;
    pins.check_page(&messages::tool_definitions(bytes))?;
    let out = messages::filter_tools(
        bytes,
        |l| session.record(&l.name, l.info),
        |l| {
            (!filters || policy.hides(&l.name, &l.info).is_none())
                && pins.judge(&l.definition) == pins::Judgement::Pass
        },
    );
    if !messages::has_next_cursor(bytes) {
        pins.listing_done();
    }
    Ok(out)
}

/// The region a call will act in, as far as it can be told (for the confirmation prompt).
pub fn region_of(args: Option<&Value>, added: Option<&str>) -> Option<String> {
    let s = |k: &str| {
        args.and_then(|a| a.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    if let Some(r) = s(messages::REGION_ARG)
        .or_else(|| s("RegionId"))
        .or_else(|| s("regionId"))
    {
        return Some(r);
    }
    if let Some(r) = added {
        return Some(r.to_string());
    }
    let command = s("command")?;
    let mut words = command.split_whitespace();
    while let Some(w) = words.next() {
        for flag in ["--region", "--biz-region-id", "--RegionId"] {
            if w == flag {
                return words.next().map(str::to_string);
            }
            if let Some(v) = w.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
                return Some(v.to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(allow: &str, deny: &str, read_only: bool, confirm: bool) -> Policy {
        Policy {
            allow: glob::parse_list(allow).unwrap(),
            deny: glob::parse_list(deny).unwrap(),
            read_only,
            confirm_writes: confirm,
            region: Some("cn-beijing".into()),
            ..Policy::default()
        }
    }

    const READ: ToolInfo = ToolInfo {
        read_only_hint: true,
        declares_region: true,
    };
    const PLAIN: ToolInfo = ToolInfo {
        read_only_hint: false,
        declares_region: false,
    };

    #[test]
    fn deny_wins_over_allow_and_names_the_pattern() {
        let p = policy("Describe*,Delete*", "DeleteInstance", false, false);
        assert_eq!(p.by_name("DescribeInstances"), None);
        assert_eq!(
            p.by_name("DeleteInstance"),
            Some(Rule::Denied("DeleteInstance".into()))
        );
        assert_eq!(p.by_name("DeleteSnapshot"), None);
        assert_eq!(p.by_name("StartInstance"), Some(Rule::NotAllowed));
        let d = p.decide("StartInstance", None, None);
        assert_eq!(d.verdict, Verdict::Refuse(Rule::NotAllowed));
    }

    #[test]
    fn read_only_hides_writes_but_keeps_generic_tools() {
        let p = policy("", "", true, false);
        assert_eq!(p.hides("DeleteInstance", &PLAIN), Some(Rule::ReadOnly));
        assert_eq!(p.hides("DescribeRegions", &PLAIN), None);
        assert_eq!(p.hides("echo", &READ), None, "hinted reads stay");
        assert_eq!(p.hides("AlibabaCloud___CallCLI", &PLAIN), None);
        let cli = |c: &str| {
            p.decide(
                "AlibabaCloud___CallCLI",
                Some(&PLAIN),
                Some(&json!({"command": c})),
            )
            .verdict
        };
        assert_eq!(cli("aliyun ecs describe-instances"), Verdict::Relay);
        assert_eq!(
            cli("aliyun ecs delete-instance"),
            Verdict::Refuse(Rule::ReadOnly)
        );
        assert_eq!(
            p.decide("DeleteInstance", None, None).verdict,
            Verdict::Refuse(Rule::ReadOnly),
            "unlisted tools are judged by name"
        );
    }

    #[test]
    fn writes_need_confirmation_reads_do_not() {
        let p = policy("", "", false, true);
        assert_eq!(
            p.decide("DeleteInstance", Some(&PLAIN), None).verdict,
            Verdict::Confirm
        );
        assert_eq!(
            p.decide("DescribeRegions", Some(&PLAIN), None).verdict,
            Verdict::Relay
        );
        assert_eq!(p.decide("x", Some(&READ), None).verdict, Verdict::Relay);
        let ro = policy("", "", true, true);
        assert_eq!(
            ro.decide("DeleteInstance", None, None).verdict,
            Verdict::Refuse(Rule::ReadOnly),
            "read-only wins over asking"
        );
        assert!(!Policy::default().is_active());
        assert_eq!(
            Policy::default()
                .decide("DeleteInstance", None, None)
                .verdict,
            Verdict::Relay
        );
    }

    #[test]
    fn region_only_for_declaring_tools_and_never_over_the_model() {
        let p = policy("", "", false, false);
        assert_eq!(
            p.region_for(Some(&READ), Some(&json!({}))),
            Some("cn-beijing")
        );
        assert_eq!(p.region_for(Some(&READ), None), Some("cn-beijing"));
        assert_eq!(
            p.region_for(Some(&READ), Some(&json!({"x_mcp_region_id": "cn-x"}))),
            None
        );
        assert_eq!(p.region_for(Some(&PLAIN), Some(&json!({}))), None);
        assert_eq!(
            p.region_for(None, Some(&json!({}))),
            None,
            "unlisted: not declared"
        );
        assert_eq!(Policy::default().region_for(Some(&READ), None), None);
    }

    #[test]
    fn regions_are_validated() {
        assert_eq!(parse_region(" cn-hangzhou ").unwrap(), "cn-hangzhou");
        assert!(parse_region("ap-southeast-1").is_ok());
        for bad in [
            "",
            "hangzhou",
            "CN-HANGZHOU",
            "cn hangzhou",
            "-cn",
            "cn-",
            "cn-\"x",
        ] {
            assert!(parse_region(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sessions_filter_and_remember() {
        let p = policy("", "", true, false);
        let mut s = Session::default();
        let ans = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"DescribeA"},{"name":"DeleteB"},{"name":"C","annotations":{"readOnlyHint":true}}]}}"#;
        let out = filter_list(&p, &mut s, None, ans).unwrap().unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        let names: Vec<&str> = v["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["DescribeA", "C"]);
        assert_eq!(
            s.tool("C"),
            Some(&ToolInfo {
                read_only_hint: true,
                declares_region: false
            })
        );
        assert!(
            s.tool("DeleteB").is_some(),
            "hidden tools are remembered too"
        );
        s.forget_tools();
        assert!(s.tool("C").is_none());
        let region_only = Policy {
            region: Some("r".into()),
            ..Policy::default()
        };
        assert!(
            filter_list(&region_only, &mut s, None, ans)
                .unwrap()
                .is_none(),
            "nothing hidden"
        );
        assert!(s.tool("C").is_some(), "but still recorded");
    }

    #[test]
    fn regions_are_found_for_the_prompt() {
        assert_eq!(
            region_of(Some(&json!({"x_mcp_region_id": "a"})), Some("b")).as_deref(),
            Some("a")
        );
        assert_eq!(
            region_of(Some(&json!({"RegionId": "c"})), None).as_deref(),
            Some("c")
        );
        assert_eq!(region_of(None, Some("b")).as_deref(), Some("b"));
        assert_eq!(
            region_of(
                Some(&json!({"command": "aliyun ecs x --region cn-q"})),
                None
            )
            .as_deref(),
            Some("cn-q")
        );
        assert_eq!(
            region_of(
                Some(&json!({"command": "aliyun ecs x --biz-region-id=cn-z"})),
                None
            )
            .as_deref(),
            Some("cn-z")
        );
        assert_eq!(region_of(Some(&json!({})), None), None);
    }
}
