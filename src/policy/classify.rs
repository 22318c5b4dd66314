//! Reads and writes: which tool calls only look at the cloud, and which may change it.
//!
//! A tool is a **read** when it declares `annotations.readOnlyHint: true`, or when its name
//! carries an Alibaba Cloud OpenAPI action that starts with a read verb ([`READ_VERBS`]).
//! Everything else is a **write**, including names of unknown shape. The action is found in the
//! tool-name shapes the OpenAPI MCP Server uses:
//!
//! - Custom edition API tools: `<Product>-<yyyymmdd>-<Action>` (`Ecs-20140526-DescribeInstances`),
//!   or the bare action (`DescribeInstances`) in Alibaba's PascalCase;
//! - system tools: `AlibabaCloud___<Name>` (`AlibabaCloud___IaCService_ListProducts`: the last
//!   `_` part is the action).
//!
//! The Core edition's generic tools take the API (or a CLI command, or a script) as an argument,
//! so they are classified per call ([`Generic`]), by the action in their arguments, whatever
//! their annotations say:
//!
//! - `AlibabaCloud___CallCLI {command: "aliyun ecs describe-instances --RegionId …"}`: the API
//!   is the word after the product (`describe-instances` or `DescribeInstances`);
//! - `AlibabaCloud___RunScript {script}`: every `call_cli(product=…, action='…')` in the Python
//!   script must name a literal read action;
//! - `AlibabaCloud___RunIaC {action: plan|apply|destroy}`: `plan` (the default) only previews.
//!
//! The other Core tools are named in [`CORE_READS`]; `GetPresignedUrl` hands out upload URLs
//! and is a write despite its verb ([`NOT_READS`]).

use serde_json::Value;

/// Verbs of Alibaba Cloud API actions that only read. Each one is used across products for
/// actions without side effects: `Describe*` (ECS, VPC, RDS, SLB: the classic RPC products),
/// `List*` (RAM, newer ROA products, ACK), `Get*` (RAM, OSS `GetObject`, STS
/// `GetCallerIdentity`), `Query*` (BSS billing, Cloud Monitor), `Check*` (pre-flight checks such
/// as quota and name availability), `Search*` (Resource Center, docs), `Lookup*` (ActionTrail
/// `LookupEvents`), `Preview*` (ROS `PreviewStack`, which computes a change without applying
/// it). Verbs that only sound harmless are left out on purpose: `Export*`, `Generate*`,
/// `Validate*`, `Verify*`, `Estimate*`, `Download*` start server-side jobs or mint things in
/// some products.
pub const READ_VERBS: &[&str] = &[
    "Describe", "List", "Get", "Query", "Check", "Search", "Lookup", "Preview",
];

/// Actions with a read verb that hand out access, so they count as writes.
pub const NOT_READS: &[&str] = &["GetPresignedUrl", "GetFederationToken"];

/// Prefix of the OpenAPI MCP Server's system tools.
pub const CORE_PREFIX: &str = "AlibabaCloud___";

/// Core edition tools that only read (metadata, docs, task status), by their name after
/// [`CORE_PREFIX`]. `GenerateCLICommand` only prints a command; `GetTask` only polls.
pub const CORE_READS: &[&str] = &[
    "SearchApis",
    "GetApiDefinition",
    "ListApis",
    "ListProductRegions",
    "ListProducts",
    "GenerateCLICommand",
    "SearchDocuments",
    "SearchDocument",
    "GetDocument",
    "ReadDocument",
    "GetDocumentTree",
    "GrepDocuments",
    "GetTask",
];

/// CLI words (`aliyun oss ls`, `aliyun ossutil stat`) that only read.
const OSSUTIL_READS: &[&str] = &["ls", "stat", "cat", "du"];

/// CLI "products" that are not APIs (they change the executor itself).
const CLI_META: &[&str] = &["configure", "plugin", "upgrade", "mock", "auto-completion"];

/// Read or write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
        }
    }
}

/// A generic tool that takes the API in its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generic {
    /// `CallCLI {command}`.
    CallCli,
    /// `RunScript {script}`.
    RunScript,
    /// `RunIaC {action}`.
    RunIac,
}

/// What a tool is, from its name and annotations, before any call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    Read,
    Write,
    /// Read or write depending on each call's arguments.
    PerCall(Generic),
}

/// One call's classification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallClass {
    pub access: Access,
    /// The API action(s), when known (`DescribeInstances`; `ecs:DeleteInstance` for CLI
    /// commands; a comma-separated list for scripts; `plan`/`apply` for RunIaC).
    pub action: Option<String>,
    /// Why, for messages and the audit log.
    pub reason: String,
}

/// The name after the system-tool prefix (`AlibabaCloud___CallCLI` → `CallCLI`).
fn core_name(name: &str) -> Option<&str> {
    name.strip_prefix(CORE_PREFIX)
}

/// The generic tool `name` is, if any (with or without the system-tool prefix).
pub fn generic(name: &str) -> Option<Generic> {
    match core_name(name).unwrap_or(name) {
        "CallCLI" => Some(Generic::CallCli),
        "RunScript" => Some(Generic::RunScript),
        "RunIaC" => Some(Generic::RunIac),
        _ => None,
    }
}

/// The API action a tool name carries, in the shapes the OpenAPI MCP Server uses; `None` for
/// names of any other shape.
pub fn action_of_name(name: &str) -> Option<&str> {
    if let Some(rest) = core_name(name) {
        let action = rest.rsplit('_').next().unwrap_or(rest);
        return is_pascal_action(action).then_some(action);
    }
    let parts: Vec<&str> = name.split('-').collect();
    if let [product, date, action] = parts.as_slice() {
        let dated = date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit());
        let product_ok = !product.is_empty() && product.bytes().all(|b| b.is_ascii_alphanumeric());
        if dated && product_ok && is_pascal_action(action) {
            return Some(action);
        }
        return None;
    }
    is_pascal_action(name).then_some(name)
}

/// `DescribeInstances`: an upper-case letter, then letters and digits, with at least one more
/// upper-case letter after a lower-case run (a verb and an object).
fn is_pascal_action(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 3 || !b[0].is_ascii_uppercase() || !b.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let first_word = b[1..].iter().take_while(|c| c.is_ascii_lowercase()).count();
    first_word > 0 && b.len() > first_word + 1
}

/// Whether an action in PascalCase starts with a read verb (`Describe` + an upper-case letter,
/// a digit or the end) and is not one of [`NOT_READS`].
pub fn is_read_action(action: &str) -> bool {
    if NOT_READS.contains(&action) {
        return false;
    }
    READ_VERBS.iter().any(|v| {
        action.strip_prefix(v).is_some_and(|rest| {
            rest.chars()
                .next()
                .is_none_or(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        })
    })
}

/// The tool's shape from what `tools/list` said (or only its name, when it was not listed).
pub fn shape(name: &str, read_only_hint: bool) -> Shape {
    if let Some(g) = generic(name) {
        return Shape::PerCall(g);
    }
    if read_only_hint {
        return Shape::Read;
    }
    if core_name(name).is_some_and(|n| CORE_READS.contains(&n)) {
        return Shape::Read;
    }
    match action_of_name(name) {
        Some(a) if is_read_action(a) => Shape::Read,
        _ => Shape::Write,
    }
}

/// Classifies one call of `name` with `args` (the `arguments` object).
pub fn classify_call(name: &str, read_only_hint: bool, args: Option<&Value>) -> CallClass {
    let action = action_of_name(name).map(str::to_string);
    match shape(name, read_only_hint) {
        Shape::PerCall(g) => classify_generic(g, args),
        Shape::Read if read_only_hint => CallClass {
            access: Access::Read,
            action,
            reason: "the tool declares readOnlyHint".into(),
        },
        Shape::Read => CallClass {
            access: Access::Read,
            reason: match &action {
                Some(a) if core_name(name).is_none_or(|n| !CORE_READS.contains(&n)) => {
                    format!("the API action {a} starts with a read verb")
                }
                _ => "a Core edition tool that only reads metadata or documents".into(),
            },
            action,
        },
        Shape::Write => CallClass {
            access: Access::Write,
            reason: match &action {
                Some(a) => format!("the API action {a} does not start with a read verb"),
                None => "the tool does not declare readOnlyHint and its name carries no API \
                         action"
                    .into(),
            },
            action,
        },
    }
}

fn write(action: Option<String>, reason: impl Into<String>) -> CallClass {
    CallClass {
        access: Access::Write,
        action,
        reason: reason.into(),
    }
}

fn arg<'a>(args: Option<&'a Value>, key: &str) -> Option<&'a Value> {
    args.and_then(|a| a.get(key))
}

fn classify_generic(g: Generic, args: Option<&Value>) -> CallClass {
    match g {
        Generic::CallCli => {
            let Some(command) = arg(args, "command").and_then(Value::as_str) else {
                return write(None, "CallCLI without a command string");
            };
            match cli_action(command) {
                Ok((product, action, read)) => CallClass {
                    access: if read { Access::Read } else { Access::Write },
                    reason: format!(
                        "the CLI command runs {product} {action}, {}",
                        if read {
                            "which only reads"
                        } else {
                            "which is not a read"
                        }
                    ),
                    action: Some(format!("{product}:{action}")),
                },
                Err(why) => write(None, format!("the CLI command {why}")),
            }
        }
        Generic::RunScript => {
            let Some(script) = arg(args, "script").and_then(Value::as_str) else {
                return write(None, "RunScript without a script string");
            };
            match script_actions(script) {
                Ok(actions) => {
                    let list = actions.join(", ");
                    let all_read = actions
                        .iter()
                        .all(|a| is_read_action(a.rsplit(':').next().unwrap_or(a)));
                    if all_read {
                        CallClass {
                            access: Access::Read,
                            reason: format!("every call_cli in the script reads ({list})"),
                            action: Some(list),
                        }
                    } else {
                        write(
                            Some(list.clone()),
                            format!("the script calls actions that are not reads ({list})"),
                        )
                    }
                }
                Err(why) => write(None, format!("the script {why}")),
            }
        }
        Generic::RunIac => match arg(args, "action") {
            None | Some(Value::Null) => CallClass {
                access: Access::Read,
                action: Some("plan".into()),
                reason: "a Terraform plan only previews changes".into(),
            },
            Some(Value::String(a)) if a == "plan" => CallClass {
                access: Access::Read,
                action: Some("plan".into()),
                reason: "a Terraform plan only previews changes".into(),
            },
            Some(Value::String(a)) => write(
                Some(a.chars().take(40).collect()),
                format!("Terraform {a:.40} changes resources"),
            ),
            Some(_) => write(None, "RunIaC with an action that is not a string"),
        },
    }
}

/// `(product, action, is_read)` of an `aliyun …` command; the error says why none could be
/// told (then the call is a write).
pub fn cli_action(command: &str) -> Result<(String, String, bool), String> {
    if command.contains(['|', ';', '&', '>', '<', '`', '\n', '\r']) || command.contains("$(") {
        return Err("contains shell operators".into());
    }
    let mut tokens = command.split_whitespace();
    if tokens.next() != Some("aliyun") {
        return Err("does not start with `aliyun`".into());
    }
    let mut positional = Vec::new();
    let mut skip_value = false;
    for t in tokens {
        if t.starts_with('-') {
            // `--flag value` (a value follows) or `--flag=value` (it does not).
            skip_value = !t.contains('=');
            continue;
        }
        if std::mem::take(&mut skip_value) {
            continue;
        }
        positional.push(t);
        if positional.len() == 2 {
            break;
        }
    }
    let [product, word] = positional.as_slice() else {
        return Err("names no product and API".into());
    };
    let product = product.to_ascii_lowercase();
    if CLI_META.contains(&product.as_str()) {
        return Err(format!("runs the CLI's own `{product}` command"));
    }
    if !word.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        || !word.as_bytes()[0].is_ascii_alphabetic()
    {
        return Err(format!("has {word:.40} where the API should be"));
    }
    if product == "oss" || product == "ossutil" || product == "ossutil64" {
        let w = word.to_ascii_lowercase();
        let read = OSSUTIL_READS.contains(&w.as_str());
        return Ok((product, w, read));
    }
    let action = pascal(word);
    let read = is_read_action(&action);
    Ok((product, action, read))
}

/// `describe-instances` → `DescribeInstances`; PascalCase stays as it is.
fn pascal(word: &str) -> String {
    word.split('-')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// The `Product:Action` of every `call_cli(…)` in a RunScript script. Every mention of
/// `call_cli` must be a call with a literal action (keyword `action='…'` or the second
/// positional argument); anything else (an alias, a computed action) is an error.
pub fn script_actions(script: &str) -> Result<Vec<String>, String> {
    const NAME: &str = "call_cli";
    let mut out = Vec::new();
    let mut rest = script;
    while let Some(at) = rest.find(NAME) {
        let before = rest[..at].chars().next_back();
        let after_name = &rest[at + NAME.len()..];
        rest = after_name;
        let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
        if before.is_some_and(is_ident) || after_name.chars().next().is_some_and(is_ident) {
            continue; // part of a longer name, e.g. `my_call_cli`
        }
        let Some(args) = after_name.trim_start().strip_prefix('(') else {
            return Err("uses call_cli other than by calling it directly".into());
        };
        // The call's own text: up to the next call_cli at most.
        let call = &args[..args.find(NAME).unwrap_or(args.len())];
        let product = keyword_literal(call, "product").or_else(|| positional_literal(call, 0));
        let action = keyword_literal(call, "action").or_else(|| positional_literal(call, 1));
        match action {
            Some(a) if is_identifier(a) => {
                out.push(format!("{}:{a}", product.unwrap_or("?")));
            }
            _ => return Err("has a call_cli whose action is not a literal name".into()),
        }
        if out.len() > 1000 {
            return Err("has more than 1000 call_cli calls".into());
        }
    }
    if out.is_empty() {
        return Err("makes no call_cli call alibridge can read".into());
    }
    Ok(out)
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The string literal given as keyword `key=` in a call's argument text.
fn keyword_literal<'a>(call: &'a str, key: &str) -> Option<&'a str> {
    let mut rest = call;
    while let Some(at) = rest.find(key) {
        let before = rest[..at].chars().next_back();
        let after = &rest[at + key.len()..];
        rest = after;
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let Some(value) = after.trim_start().strip_prefix('=') else {
            continue;
        };
        if value.starts_with('=') {
            continue; // `==`
        }
        return string_literal(value.trim_start()).map(|(s, _)| s);
    }
    None
}

/// The `n`-th positional argument of a call, when it is a string literal (only literals and
/// commas before it).
fn positional_literal(call: &str, n: usize) -> Option<&str> {
    let mut rest = call.trim_start();
    for i in 0..=n {
        let (s, after) = string_literal(rest)?;
        if i == n {
            return Some(s);
        }
        rest = after.trim_start().strip_prefix(',')?.trim_start();
    }
    None
}

/// A Python string literal in single or double quotes without escapes at the start of `s`:
/// `(contents, rest)`.
fn string_literal(s: &str) -> Option<(&str, &str)> {
    let q = s.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let body = &s[1..];
    let end = body.find(q)?;
    let content = &body[..end];
    (!content.contains('\\')).then(|| (content, &body[end + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn access(name: &str, hint: bool, args: Value) -> Access {
        classify_call(name, hint, Some(&args)).access
    }

    #[test]
    fn names_carry_actions_in_the_server_shapes() {
        assert_eq!(
            action_of_name("Ecs-20140526-DescribeInstances"),
            Some("DescribeInstances")
        );
        assert_eq!(
            action_of_name("DescribeInstances"),
            Some("DescribeInstances")
        );
        assert_eq!(
            action_of_name("AlibabaCloud___IaCService_ListProducts"),
            Some("ListProducts")
        );
        assert_eq!(action_of_name("AlibabaCloud___GetTask"), Some("GetTask"));
        for none in [
            "echo",
            "get-sum",
            "describe_instances",
            "Ecs-2014-Describe",
            "A",
            "Ab",
        ] {
            assert_eq!(action_of_name(none), None, "{none}");
        }
    }

    #[test]
    fn read_verbs_need_a_word_boundary_and_exclude_access_grants() {
        for read in [
            "DescribeInstances",
            "ListUsers",
            "GetObject",
            "QueryAccountBalance",
            "CheckQuota",
            "SearchResources",
            "LookupEvents",
            "PreviewStack",
            "Get2Things",
        ] {
            assert!(is_read_action(read), "{read}");
        }
        for write in [
            "DeleteInstance",
            "StartInstance",
            "Listen",
            "Getaway",
            "CreateListener",
            "GetPresignedUrl",
            "GetFederationToken",
            "RunInstances",
            "ModifyDescribe",
        ] {
            assert!(!is_read_action(write), "{write}");
        }
    }

    #[test]
    fn hints_verbs_and_unknown_shapes() {
        assert_eq!(
            access("DeleteInstance", true, json!({})),
            Access::Read,
            "the hint wins"
        );
        assert_eq!(access("DescribeRegions", false, json!({})), Access::Read);
        assert_eq!(
            access("Ecs-20140526-StopInstance", false, json!({})),
            Access::Write
        );
        assert_eq!(
            access("echo", false, json!({})),
            Access::Write,
            "unknown shape"
        );
        assert_eq!(
            access("AlibabaCloud___SearchApis", false, json!({})),
            Access::Read
        );
        assert_eq!(
            access("AlibabaCloud___GenerateCLICommand", false, json!({})),
            Access::Read
        );
        assert_eq!(
            access("AlibabaCloud___GetPresignedUrl", false, json!({})),
            Access::Write
        );
        let c = classify_call("DescribeRegions", false, None);
        assert_eq!(c.action.as_deref(), Some("DescribeRegions"));
        assert!(c.reason.contains("read verb"), "{}", c.reason);
    }

    #[test]
    fn call_cli_is_classified_by_its_command() {
        let cli = |c: &str| access("AlibabaCloud___CallCLI", true, json!({"command": c}));
        assert_eq!(
            cli("aliyun ecs describe-instances --biz-region-id cn-hangzhou"),
            Access::Read
        );
        assert_eq!(
            cli("aliyun ecs DescribeRegions --region cn-hangzhou"),
            Access::Read
        );
        assert_eq!(
            cli("aliyun --region cn-hangzhou ecs DescribeRegions"),
            Access::Read
        );
        assert_eq!(
            cli("aliyun ecs delete-instance --InstanceId i-1"),
            Access::Write,
            "hint ignored"
        );
        assert_eq!(
            cli("aliyun ecs --dryrun DescribeX DeleteInstance"),
            Access::Write
        );
        assert_eq!(cli("aliyun oss ls oss://bucket"), Access::Read);
        assert_eq!(cli("aliyun oss rm oss://bucket/x"), Access::Write);
        assert_eq!(cli("aliyun configure list"), Access::Write);
        assert_eq!(
            cli("aliyun ecs describe-instances; aliyun ecs delete-instance"),
            Access::Write
        );
        assert_eq!(cli("aliyun ecs describe-instances | grep x"), Access::Write);
        assert_eq!(cli("ecs describe-instances"), Access::Write);
        assert_eq!(cli("aliyun ecs"), Access::Write);
        assert_eq!(
            access("AlibabaCloud___CallCLI", false, json!({})),
            Access::Write
        );
        let c = classify_call(
            "AlibabaCloud___CallCLI",
            false,
            Some(&json!({"command": "aliyun ecs delete-instance --InstanceId i-1"})),
        );
        assert_eq!(c.action.as_deref(), Some("ecs:DeleteInstance"));
    }

    #[test]
    fn run_script_needs_literal_read_actions_everywhere() {
        let run = |s: &str| access("AlibabaCloud___RunScript", false, json!({"script": s}));
        let reads = "ecs, vpc = await asyncio.gather(\n\
            call_cli(product='Ecs', action='DescribeInstances', params={'RegionId': 'cn-hangzhou'}),\n\
            call_cli(product=\"Vpc\", action=\"DescribeVpcs\", params={}))\nresult = 1";
        assert_eq!(run(reads), Access::Read);
        assert_eq!(
            run("r = await call_cli('Ecs', 'DescribeRegions', {})"),
            Access::Read
        );
        assert_eq!(
            run(
                "await call_cli(product='Ecs', action='DescribeInstances')\n\
                 await call_cli(product='Ecs', action='DeleteInstance', params={})"
            ),
            Access::Write
        );
        assert_eq!(
            run("a = 'DeleteInstance'\nawait call_cli(product='Ecs', action=a)"),
            Access::Write
        );
        assert_eq!(
            run("f = call_cli\nawait f(product='Ecs', action='DeleteInstance')"),
            Access::Write
        );
        assert_eq!(run("result = 1"), Access::Write, "no call at all: unknown");
        assert_eq!(
            run("await call_cli(product='Ecs', action='Describe\\x49nstances')"),
            Access::Write
        );
        let c = classify_call(
            "AlibabaCloud___RunScript",
            false,
            Some(&json!({"script": reads})),
        );
        assert_eq!(
            c.action.as_deref(),
            Some("Ecs:DescribeInstances, Vpc:DescribeVpcs")
        );
    }

    #[test]
    fn run_iac_plans_are_reads() {
        let iac = |a: Value| access("AlibabaCloud___RunIaC", false, a);
        assert_eq!(
            iac(json!({"code": "provider \"alicloud\" {}"})),
            Access::Read
        );
        assert_eq!(iac(json!({"action": "plan"})), Access::Read);
        assert_eq!(
            iac(json!({"action": "apply", "previousProcessId": "p"})),
            Access::Write
        );
        assert_eq!(iac(json!({"action": "destroy"})), Access::Write);
        assert_eq!(iac(json!({"action": 1})), Access::Write);
    }

    #[test]
    fn shapes_for_listing() {
        assert_eq!(
            shape("AlibabaCloud___CallCLI", false),
            Shape::PerCall(Generic::CallCli)
        );
        assert_eq!(shape("DescribeInstances", false), Shape::Read);
        assert_eq!(shape("DeleteInstance", false), Shape::Write);
        assert_eq!(shape("echo", true), Shape::Read);
    }
}
