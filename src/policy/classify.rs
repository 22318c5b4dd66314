//! Reads and writes: which tool calls only look at the cloud, and which may change it or hand
//! out access, and which APIs each call runs ([`CallClass::apis`], for `--allow-api` /
//! `--deny-api`).
//!
//! A tool is a **read** when it declares `annotations.readOnlyHint: true`, or when its name
//! carries an Alibaba Cloud OpenAPI action that starts with a read verb ([`READ_VERBS`]) and does
//! not hand out access ([`is_access_issuing`]). Everything else is a **write**, including names
//! of unknown shape. The action is found in the tool-name shapes the OpenAPI MCP Server uses:
//!
//! - Custom edition API tools: `<Product>-<yyyymmdd>-<Action>` (`Ecs-20140526-DescribeInstances`),
//!   or the bare action (`DescribeInstances`) in Alibaba's PascalCase;
//! - system tools: `AlibabaCloud___<Name>` (`AlibabaCloud___IaCService_ListProducts`: the last
//!   `_` part is the action).
//!
//! The Core edition's generic tools take the API (or a CLI command, or a script) as an argument,
//! so they are classified per call ([`Generic`]), whatever their annotations say:
//!
//! - `AlibabaCloud___CallCLI {command}`: read only when the command reads as exactly one API
//!   call ([`super::cli_command`]) whose action is a read; a command that cannot be read is an
//!   *opaque* write (the server-side policy, when bound, is then the judge);
//! - `AlibabaCloud___RunScript {script}`: always an opaque write: whether a Python script only
//!   reads cannot be decided from its text;
//! - `AlibabaCloud___RunIaC {action: plan|apply|destroy}`: `plan` (the default) only previews.
//!
//! The other Core tools are named in [`CORE_READS`] and run no cloud API.

use serde_json::Value;

use super::api::Api;
use super::cli_command;

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

/// Actions with a read verb that hand out access (credentials, passwords, consoles, signed
/// URLs), from Alibaba's API references: Container Registry's registry password, ACK's
/// kubeconfigs, KMS secret values, ECS's VNC console URL, STS credentials, OSS upload URLs.
pub const ACCESS_ISSUING: &[&str] = &[
    "GetAuthorizationToken",
    "DescribeClusterUserKubeconfig",
    "DescribeSubaccountK8sClusterUserConfig",
    "GetSecretValue",
    "DescribeInstanceVncUrl",
    "GetFederationToken",
    "GetPresignedUrl",
];

/// Name fragments (compared case-insensitively) that mark an action as handing out access
/// whatever its verb: tokens, kubeconfigs, secret values, credentials, passwords, console URLs,
/// signed URLs, tickets. In PascalCase, so the server-side policy can spell them in kebab-case.
pub const ACCESS_FRAGMENTS: &[&str] = &[
    "Token",
    "Kubeconfig",
    "UserConfig",
    "SecretValue",
    "Credential",
    "Password",
    "VncUrl",
    "Presign",
    "SignUrl",
    "Signature",
    "Ticket",
];

/// Prefix of the OpenAPI MCP Server's system tools.
pub const CORE_PREFIX: &str = "AlibabaCloud___";

/// Core edition tools that only read (metadata, docs, task status) and run no cloud API, by
/// their name after [`CORE_PREFIX`]. `GenerateCLICommand` only prints a command; `GetTask` only
/// polls.
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
    /// The API action(s), for people (`DescribeInstances`; `ecs:DeleteInstance` for CLI
    /// commands; `plan`/`apply` for RunIaC).
    pub action: Option<String>,
    /// Every API the call runs, when alibridge can know them all (empty: it runs none, like
    /// the Core edition's metadata tools); `None` when it cannot.
    pub apis: Option<Vec<Api>>,
    /// The call's effect cannot be read locally at all (a RunScript script, a CLI command that
    /// does not parse): a write locally, for a server-side policy to judge when one is bound.
    pub opaque: bool,
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

/// The API a tool name carries, in the shapes the OpenAPI MCP Server uses (the product is `*`
/// when the name does not say); `None` for names of any other shape.
pub fn api_of_name(name: &str) -> Option<Api> {
    if let Some(rest) = core_name(name) {
        let (product, action) = match rest.rsplit_once('_') {
            Some((p, a)) => (p, a),
            None => ("*", rest),
        };
        return is_pascal_action(action).then(|| Api::new(product, action));
    }
    let parts: Vec<&str> = name.split('-').collect();
    if let [product, date, action] = parts.as_slice() {
        let dated = date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit());
        let product_ok = !product.is_empty() && product.bytes().all(|b| b.is_ascii_alphanumeric());
        if dated && product_ok && is_pascal_action(action) {
            return Some(Api::new(product, action));
        }
        return None;
    }
    is_pascal_action(name).then(|| Api::new("*", name))
}

/// The API action a tool name carries (see [`api_of_name`]).
pub fn action_of_name(name: &str) -> Option<String> {
    api_of_name(name).map(|a| a.action)
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

/// Whether an action hands out access ([`ACCESS_ISSUING`], [`ACCESS_FRAGMENTS`]).
pub fn is_access_issuing(action: &str) -> bool {
    let lower = action.to_ascii_lowercase();
    ACCESS_ISSUING
        .iter()
        .any(|a| a.eq_ignore_ascii_case(action))
        || ACCESS_FRAGMENTS
            .iter()
            .any(|f| lower.contains(&f.to_ascii_lowercase()))
}

/// Whether an action in PascalCase starts with a read verb (`Describe` + an upper-case letter,
/// a digit or the end) and does not hand out access.
pub fn is_read_action(action: &str) -> bool {
    if is_access_issuing(action) {
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
/// A hint does not make an access-issuing action a read.
pub fn shape(name: &str, read_only_hint: bool) -> Shape {
    if let Some(g) = generic(name) {
        return Shape::PerCall(g);
    }
    if core_name(name).is_some_and(|n| CORE_READS.contains(&n)) {
        return Shape::Read;
    }
    let api = api_of_name(name);
    if api.as_ref().is_some_and(|a| is_access_issuing(&a.action)) {
        return Shape::Write;
    }
    if read_only_hint {
        return Shape::Read;
    }
    match api {
        Some(a) if is_read_action(&a.action) => Shape::Read,
        _ => Shape::Write,
    }
}

/// Classifies one call of `name` with `args` (the `arguments` object).
pub fn classify_call(name: &str, read_only_hint: bool, args: Option<&Value>) -> CallClass {
    let api = api_of_name(name);
    let action = api.as_ref().map(|a| a.action.clone());
    let core_read = core_name(name).is_some_and(|n| CORE_READS.contains(&n));
    let apis = if core_read {
        Some(Vec::new())
    } else {
        api.clone().map(|a| vec![a])
    };
    let class = |access, reason: String| CallClass {
        access,
        action: action.clone(),
        apis: apis.clone(),
        opaque: false,
        reason,
    };
    match shape(name, read_only_hint) {
        Shape::PerCall(g) => classify_generic(g, args),
        Shape::Read if core_read => class(
            Access::Read,
            "a Core edition tool that only reads metadata or documents".into(),
        ),
        Shape::Read if read_only_hint => {
            class(Access::Read, "the tool declares readOnlyHint".into())
        }
        Shape::Read => class(
            Access::Read,
            format!(
                "the API action {} starts with a read verb",
                action.as_deref().unwrap_or_default()
            ),
        ),
        Shape::Write => class(
            Access::Write,
            match &action {
                Some(a) if is_access_issuing(a) => {
                    format!("the API action {a} hands out access (credentials, keys or URLs)")
                }
                Some(a) => format!("the API action {a} does not start with a read verb"),
                None => "the tool does not declare readOnlyHint and its name carries no API \
                         action"
                    .into(),
            },
        ),
    }
}

fn opaque(reason: impl Into<String>) -> CallClass {
    CallClass {
        access: Access::Write,
        action: None,
        apis: None,
        opaque: true,
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
                return opaque("CallCLI without a command string");
            };
            match cli_api(command) {
                Ok((api, read)) => CallClass {
                    access: if read { Access::Read } else { Access::Write },
                    reason: format!(
                        "the CLI command runs {}, {}",
                        api.label(),
                        if read {
                            "which only reads"
                        } else if is_access_issuing(&api.action) {
                            "which hands out access"
                        } else {
                            "which is not a read"
                        }
                    ),
                    action: Some(api.label()),
                    apis: Some(vec![api]),
                    opaque: false,
                },
                Err(why) => opaque(format!("the CLI command {why}")),
            }
        }
        Generic::RunScript => opaque(
            "a RunScript script can call any API, and whether it only reads cannot be decided \
             from its text",
        ),
        Generic::RunIac => {
            let plan = || CallClass {
                access: Access::Read,
                action: Some("plan".into()),
                apis: Some(vec![Api::new("iac", "Plan")]),
                opaque: false,
                reason: "a Terraform plan only previews changes".into(),
            };
            match arg(args, "action") {
                None | Some(Value::Null) => plan(),
                Some(Value::String(a)) if a == "plan" => plan(),
                Some(Value::String(a)) => CallClass {
                    access: Access::Write,
                    action: Some(a.chars().take(40).collect()),
                    apis: None,
                    opaque: false,
                    reason: format!("Terraform {a:.40} changes resources"),
                },
                Some(_) => CallClass {
                    access: Access::Write,
                    action: None,
                    apis: None,
                    opaque: false,
                    reason: "RunIaC with an action that is not a string".into(),
                },
            }
        }
    }
}

/// The API an `aliyun …` command runs and whether it only reads; the error says why the command
/// could not be read (then the call is an opaque write).
pub fn cli_api(command: &str) -> Result<(Api, bool), cli_command::Unreadable> {
    let cmd = cli_command::parse(command)?;
    if cmd.is_oss() {
        let w = cmd.api.to_ascii_lowercase();
        let read = OSSUTIL_READS.contains(&w.as_str());
        return Ok((Api::new(&cmd.product, &pascal(&w)), read));
    }
    let action = pascal(&cmd.api);
    let read = is_read_action(&action);
    Ok((Api::new(&cmd.product, &action), read))
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
            api_of_name("Ecs-20140526-DescribeInstances"),
            Some(Api::new("ecs", "DescribeInstances"))
        );
        assert_eq!(
            api_of_name("DescribeInstances"),
            Some(Api::new("*", "DescribeInstances"))
        );
        assert_eq!(
            api_of_name("AlibabaCloud___IaCService_ListProducts"),
            Some(Api::new("iacservice", "ListProducts"))
        );
        assert_eq!(
            action_of_name("AlibabaCloud___GetTask").as_deref(),
            Some("GetTask")
        );
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
            "GetAuthorizationToken",
            "DescribeClusterUserKubeconfig",
            "DescribeSubaccountK8sClusterUserConfig",
            "GetSecretValue",
            "DescribeInstanceVncUrl",
            "GetSessionToken",
            "DescribeDBInstancePassword",
            "GetLoginTicket",
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
            Access::Write,
            "flags come after the API"
        );
        assert_eq!(
            cli("aliyun --insecure ecs delete-instance describe-instances"),
            Access::Write
        );
        assert_eq!(
            cli("aliyun kms get-secret-value --SecretName s"),
            Access::Write
        );
        assert_eq!(cli("aliyun cr GetAuthorizationToken"), Access::Write);
        assert_eq!(
            cli(r#"aliyun ecs describe-instances --InstanceIds '["i-1"]'"#),
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
    fn run_script_is_always_an_opaque_write() {
        for script in [
            "r = await call_cli(product='Ecs', action='DescribeInstances')",
            "await call_cli(product='Ecs', action='DescribeInstances' if False else 'DeleteInstance')",
            "result = 1",
        ] {
            let c = classify_call(
                "AlibabaCloud___RunScript",
                true,
                Some(&json!({"script": script})),
            );
            assert_eq!((c.access, c.opaque, c.apis), (Access::Write, true, None), "{script}");
        }
    }

    #[test]
    fn apis_are_known_only_when_every_one_is() {
        let apis = |name: &str, args: Value| classify_call(name, false, Some(&args)).apis;
        assert_eq!(
            apis(
                "AlibabaCloud___CallCLI",
                json!({"command": "aliyun ram create-access-key"})
            ),
            Some(vec![Api::new("ram", "CreateAccessKey")])
        );
        assert_eq!(
            apis(
                "AlibabaCloud___CallCLI",
                json!({"command": "aliyun ram x; y"})
            ),
            None
        );
        assert_eq!(
            apis("AlibabaCloud___GetApiDefinition", json!({})),
            Some(vec![])
        );
        assert_eq!(apis("echo", json!({})), None);
        assert_eq!(
            apis("AlibabaCloud___RunIaC", json!({"action": "apply"})),
            None
        );
        assert_eq!(
            apis("Ram-20150501-ListUsers", json!({})),
            Some(vec![Api::new("ram", "ListUsers")])
        );
        let hinted = classify_call("Kms-20160120-GetSecretValue", true, None);
        assert_eq!(
            hinted.access,
            Access::Write,
            "a hint does not make access a read"
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
