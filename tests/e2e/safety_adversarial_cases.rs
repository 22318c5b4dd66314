//! The attempts of `safety_adversarial`, one table per flag set: what an agent that wants a
//! write through (or a prompt injection steering one) would send, and the legitimate reads of
//! the same shapes that must keep working.
//!
//! In every template `CANARY` becomes a string unique to the attempt (the runner proves that no
//! upstream request ever carried it, for every attempt not expected to pass), and in raw
//! messages `@ID@` becomes the request id, `<BOM>` a UTF-8 byte-order mark and `<FF>` the byte
//! 0xFF (never valid in UTF-8).

use Expect::*;
use Msg::*;

/// What the client sends.
#[derive(Clone, Copy)]
pub enum Msg {
    /// A `tools/call` of `AlibabaCloud___CallCLI` with this `command`.
    Cli(&'static str),
    /// A `tools/call` of `AlibabaCloud___RunScript` with this `script`.
    Script(&'static str),
    /// A `tools/call` of the tool with these arguments (JSON text).
    Call(&'static str, &'static str),
    /// One raw message: a line on the bridge's stdin, a POST body to the proxy.
    Raw(&'static str),
    /// The proxy only: a request with this HTTP method and body.
    Http(&'static str, &'static str),
}

/// What must happen.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Expect {
    /// A JSON-RPC error of kind `policy` (under `--confirm-writes`, a declined confirmation's
    /// `isError` result also counts); the upstream never sees the canary.
    Refused,
    /// Not one well-formed JSON-RPC object: any JSON-RPC error (or over the proxy an HTTP
    /// 4xx); the upstream never sees the canary.
    Malformed,
    /// Reaches the upstream unchanged and its answer (`ran …`) reaches the client; never
    /// asked about under `--confirm-writes`.
    Passes,
}

pub struct Attempt {
    pub name: &'static str,
    pub expect: Expect,
    pub msg: Msg,
}

const fn a(name: &'static str, expect: Expect, msg: Msg) -> Attempt {
    Attempt { name, expect, msg }
}

/// `--read-only` (also run under `--confirm-writes`, where every refusal is a declined
/// confirmation and every pass is never asked about).
#[rustfmt::skip]
pub fn read_only() -> Vec<Attempt> {
    vec![
        // CallCLI: only `aliyun <product> <Api> [--Flag value]…`, read as a POSIX shell would.
        a("cli_semicolon_chain", Refused, Cli("aliyun ecs describe-instances; aliyun ecs delete-instance --InstanceId CANARY")),
        a("cli_quoted_write_api", Refused, Cli(r#"aliyun ecs "delete-instance" --InstanceId CANARY"#)),
        a("cli_flag_before_product", Refused, Cli("aliyun --insecure ecs delete-instance describe-instances --InstanceId CANARY")),
        a("cli_read_then_write_api", Refused, Cli("aliyun ecs describe-instances delete-instance --InstanceId CANARY")),
        a("cli_word_after_the_flags", Refused, Cli("aliyun ecs describe-instances --InstanceId CANARY extra-word")),
        a("cli_backslash", Refused, Cli(r"aliyun ecs describe-instances --InstanceId CANARY\;aliyun ecs delete-instance")),
        a("cli_newline", Refused, Cli("aliyun ecs describe-instances\naliyun ecs delete-instance --InstanceId CANARY")),
        a("cli_carriage_return", Refused, Cli("aliyun ecs describe-instances --InstanceId CANARY\raliyun ecs delete-instance")),
        a("cli_tab", Refused, Cli("aliyun ecs describe-instances --InstanceId\tCANARY")),
        a("cli_command_substitution", Refused, Cli("aliyun ecs describe-instances --InstanceId $(aliyun ecs delete-instance --InstanceId CANARY)")),
        a("cli_backticks", Refused, Cli("aliyun ecs describe-instances --InstanceId `aliyun ecs delete-instance --InstanceId CANARY`")),
        a("cli_pipe", Refused, Cli("aliyun ecs describe-instances | aliyun ecs delete-instance --InstanceId CANARY")),
        a("cli_and_and", Refused, Cli("aliyun ecs describe-instances && aliyun ecs delete-instance --InstanceId CANARY")),
        a("cli_redirect", Refused, Cli("aliyun ecs describe-instances --InstanceId CANARY > /root/.aliyun/config.json")),
        a("cli_unbalanced_quote", Refused, Cli("aliyun ecs describe-instances --InstanceId 'CANARY")),
        a("cli_not_aliyun_first", Refused, Cli("sh -c 'aliyun ecs delete-instance --InstanceId CANARY'")),
        a("cli_configure_set", Refused, Cli("aliyun configure set --profile CANARY --mode AK --access-key-id x")),
        // Reads that hand out access are writes.
        a("cli_registry_password", Refused, Cli("aliyun cr get-authorization-token --InstanceId CANARY")),
        a("cli_kubeconfig", Refused, Cli("aliyun cs describe-cluster-user-kubeconfig --ClusterId CANARY")),
        a("cli_secret_value", Refused, Cli("aliyun kms get-secret-value --SecretName CANARY")),
        a("cli_vnc_url", Refused, Cli("aliyun ecs describe-instance-vnc-url --InstanceId CANARY")),
        a("cli_federation_token", Refused, Cli("aliyun sts get-federation-token --Name CANARY")),
        a("tool_secret_value", Refused, Call("Kms-20160120-GetSecretValue", r#"{"SecretName":"CANARY"}"#)),
        a("tool_registry_password", Refused, Call("Cr-20181201-GetAuthorizationToken", r#"{"InstanceId":"CANARY"}"#)),
        a("tool_kubeconfig", Refused, Call("CS-20151215-DescribeClusterUserKubeconfig", r#"{"ClusterId":"CANARY"}"#)),
        a("tool_vnc_url", Refused, Call("Ecs-20140526-DescribeInstanceVncUrl", r#"{"InstanceId":"CANARY"}"#)),
        a("tool_federation_token", Refused, Call("Sts-20150401-GetFederationToken", r#"{"Name":"CANARY"}"#)),
        a("tool_presigned_url", Refused, Call("AlibabaCloud___GetPresignedUrl", r#"{"requests":[{"product":"Oss","method":"PUT","bucket":"CANARY","key":"k"}]}"#)),
        a("tool_delete_instance", Refused, Call("Ecs-20140526-DeleteInstance", r#"{"InstanceId":"CANARY"}"#)),
        a("echo_without_a_hint", Refused, Call("echo", r#"{"text":"CANARY"}"#)),
        // RunScript is a write, always (static credentials: no server-side judge).
        a("script_plain_read", Refused, Script("r = await call_cli(product='Ecs', action='DescribeInstances', params={'InstanceIds': 'CANARY'})\nresult = r")),
        a("script_conditional_action", Refused, Script("r = await call_cli(product='Ecs', action='DescribeInstances' if False else 'DeleteInstance', params={'InstanceId': 'CANARY'})\nresult = r")),
        a("script_aliased_call_cli", Refused, Script("f = call_cli\n# call_cli(product='Ecs', action='DescribeInstances')\nr = await f(product='Ecs', action='DeleteInstance', params={'InstanceId': 'CANARY'})\nresult = r")),
        a("script_kwargs_splat", Refused, Script("r = await call_cli(product='Ecs', params={'InstanceId': 'CANARY'}, **{'action': 'DeleteInstance'})\nresult = r")),
        a("script_concatenated_action", Refused, Script("r = await call_cli(product='Ecs', action='Describe' and 'Delete' + 'Instance', params={'InstanceId': 'CANARY'})\nresult = r")),
        a("script_read_with_cost_manifest", Refused, Call("AlibabaCloud___RunScript", r#"{"script":"r = await call_cli(product='Ecs', action='DescribeRegions', params={})\nresult = r","costManifest":{"note":"CANARY"}}"#)),
        // RunIaC: only `plan`.
        a("iac_apply", Refused, Call("AlibabaCloud___RunIaC", r#"{"action":"apply","code":"resource \"alicloud_vpc\" \"CANARY\" {}"}"#)),
        a("iac_destroy", Refused, Call("AlibabaCloud___RunIaC", r#"{"action":"destroy","previousProcessId":"CANARY"}"#)),
        a("iac_capitalised_apply", Refused, Call("AlibabaCloud___RunIaC", r#"{"action":"Apply","code":"resource \"alicloud_vpc\" \"CANARY\" {}"}"#)),
        a("iac_action_not_a_string", Refused, Call("AlibabaCloud___RunIaC", r#"{"action":["plan"],"code":"resource \"alicloud_vpc\" \"CANARY\" {}"}"#)),
        // The same shapes, reading.
        a("cli_read_with_a_json_value", Passes, Cli(r#"aliyun ecs describe-instances --RegionId cn-hangzhou --InstanceIds '["CANARY"]'"#)),
        a("cli_read_pascal_case", Passes, Cli("aliyun ecs DescribeRegions")),
        a("cli_read_quoted_value_with_a_space", Passes, Cli(r#"aliyun ecs describe-instances --RegionId "cn hangzhou""#)),
        a("cli_read_flag_equals_value", Passes, Cli("aliyun ecs describe-instances --RegionId=cn-hangzhou --InstanceIds=CANARY")),
        a("tool_describe_instances", Passes, Call("Ecs-20140526-DescribeInstances", r#"{"InstanceIds":"[\"CANARY\"]"}"#)),
        a("tool_list_users", Passes, Call("Ram-20150501-ListUsers", r#"{"Marker":"CANARY"}"#)),
        a("tool_get_api_definition", Passes, Call("AlibabaCloud___GetApiDefinition", r#"{"product":"Ecs","apiVersion":"2014-05-26","apiName":"DeleteInstance"}"#)),
        a("iac_plan", Passes, Call("AlibabaCloud___RunIaC", r#"{"action":"plan","code":"resource \"alicloud_vpc\" \"CANARY\" {}"}"#)),
    ]
}

/// `--confirm-writes`, with a client that declines every confirmation: the read-only table
/// (each of its refusals is a write) and two plain writes.
#[rustfmt::skip]
pub fn confirm_writes() -> Vec<Attempt> {
    let mut t = read_only();
    t.extend([
        a("cli_create_access_key", Refused, Cli("aliyun ram create-access-key --UserName CANARY")),
        a("tool_create_access_key", Refused, Call("Ram-20150501-CreateAccessKey", r#"{"UserName":"CANARY"}"#)),
    ]);
    t
}

/// `--deny-api 'ram:*,*:Delete*'`.
#[rustfmt::skip]
pub fn deny_api() -> Vec<Attempt> {
    vec![
        a("cli_create_access_key", Refused, Cli("aliyun ram create-access-key --UserName CANARY")),
        a("cli_ram_read", Refused, Cli("aliyun ram list-users --Marker CANARY")),
        a("cli_delete_kebab", Refused, Cli("aliyun ecs delete-instance --InstanceId CANARY")),
        a("cli_delete_pascal", Refused, Cli("aliyun ecs DeleteInstance --InstanceId CANARY")),
        a("cli_delete_odd_case", Refused, Cli("aliyun ECS Delete-Instance --InstanceId CANARY")),
        a("cli_delete_quoted", Refused, Cli(r#"aliyun ecs "delete-instance" --InstanceId CANARY"#)),
        a("cli_unreadable_semicolon", Refused, Cli("aliyun ecs describe-instances --InstanceIds CANARY; echo done")),
        a("cli_unreadable_substitution", Refused, Cli("aliyun ecs describe-instances --InstanceIds $(echo CANARY)")),
        a("tool_create_access_key", Refused, Call("Ram-20150501-CreateAccessKey", r#"{"UserName":"CANARY"}"#)),
        a("tool_delete_instance", Refused, Call("Ecs-20140526-DeleteInstance", r#"{"InstanceId":"CANARY"}"#)),
        a("tool_ram_read", Refused, Call("Ram-20150501-ListUsers", r#"{"Marker":"CANARY"}"#)),
        a("script_read", Refused, Script("r = await call_cli(product='Ecs', action='DescribeInstances', params={'InstanceIds': 'CANARY'})\nresult = r")),
        a("script_delete", Refused, Script("r = await call_cli(product='Ecs', action='Delete' + 'Instance', params={'InstanceId': 'CANARY'})\nresult = r")),
        a("echo_api_unknown", Refused, Call("echo", r#"{"text":"CANARY"}"#)),
        a("cli_describe", Passes, Cli(r#"aliyun ecs describe-instances --InstanceIds '["CANARY"]'"#)),
        a("cli_start_not_denied", Passes, Cli("aliyun ecs start-instance --InstanceId CANARY")),
        a("tool_describe_instances", Passes, Call("Ecs-20140526-DescribeInstances", r#"{"InstanceIds":"CANARY"}"#)),
        a("tool_get_api_definition", Passes, Call("AlibabaCloud___GetApiDefinition", r#"{"product":"Ram","apiVersion":"2015-05-01","apiName":"CreateAccessKey"}"#)),
    ]
}

/// `--allow-api 'ecs:Describe*'`.
#[rustfmt::skip]
pub fn allow_api() -> Vec<Attempt> {
    vec![
        a("cli_other_product", Refused, Cli("aliyun vpc describe-vpcs --VpcId CANARY")),
        a("cli_other_verb", Refused, Cli("aliyun ecs StartInstance --InstanceId CANARY")),
        a("cli_delete", Refused, Cli("aliyun ecs delete-instance --InstanceId CANARY")),
        a("cli_unreadable_and_and", Refused, Cli("aliyun ecs describe-instances --InstanceIds CANARY && true")),
        a("tool_delete_instance", Refused, Call("Ecs-20140526-DeleteInstance", r#"{"InstanceId":"CANARY"}"#)),
        a("tool_other_product", Refused, Call("Ram-20150501-ListUsers", r#"{"Marker":"CANARY"}"#)),
        a("script_read", Refused, Script("r = await call_cli(product='Ecs', action='DescribeInstances', params={'InstanceIds': 'CANARY'})\nresult = r")),
        a("echo_api_unknown", Refused, Call("echo", r#"{"text":"CANARY"}"#)),
        a("cli_describe", Passes, Cli(r#"aliyun ecs describe-instances --InstanceIds '["CANARY"]'"#)),
        a("cli_describe_pascal", Passes, Cli("aliyun ecs DescribeRegions --RegionId CANARY")),
        a("tool_describe_instances", Passes, Call("Ecs-20140526-DescribeInstances", r#"{"InstanceIds":"CANARY"}"#)),
    ]
}

/// Strict input under `--read-only`: raw lines (stdio) and bodies (proxy).
#[rustfmt::skip]
pub fn strict_input() -> Vec<Attempt> {
    vec![
        a("dup_method_list_then_call", Malformed, Raw(r#"{"jsonrpc":"2.0","id":@ID@,"method":"tools/list","method":"tools/call","params":{"name":"Ecs-20140526-DeleteInstance","arguments":{"InstanceId":"CANARY"}}}"#)),
        a("dup_method_call_then_list", Malformed, Raw(r#"{"jsonrpc":"2.0","id":@ID@,"method":"tools/call","params":{"name":"Ecs-20140526-DeleteInstance","arguments":{"InstanceId":"CANARY"}},"method":"tools/list"}"#)),
        a("dup_command_read_first", Malformed, Raw(r#"{"jsonrpc":"2.0","id":@ID@,"method":"tools/call","params":{"name":"AlibabaCloud___CallCLI","arguments":{"command":"aliyun ecs describe-instances","command":"aliyun ecs delete-instance --InstanceId CANARY"}}}"#)),
        a("dup_command_write_first", Malformed, Raw(r#"{"jsonrpc":"2.0","id":@ID@,"method":"tools/call","params":{"name":"AlibabaCloud___CallCLI","arguments":{"command":"aliyun ecs delete-instance --InstanceId CANARY","command":"aliyun ecs describe-instances"}}}"#)),
        a("dup_name_read_first", Malformed, Raw(r#"{"jsonrpc":"2.0","id":@ID@,"method":"tools/call","params":{"name":"Ecs-20140526-DescribeInstances","arguments":{"InstanceId":"CANARY"},"name":"Ecs-20140526-DeleteInstance"}}"#)),
        a("dup_name_write_first", Malformed, Raw(r#"{"jsonrpc":"2.0","id":@ID@,"method":"tools/call","params":{"name":"Ecs-20140526-DeleteInstance","arguments":{"InstanceId":"CANARY"},"name":"Ecs-20140526-DescribeInstances"}}"#)),
        a("dup_params", Malformed, Raw(r#"{"jsonrpc":"2.0","id":@ID@,"method":"tools/call","params":{"name":"Ecs-20140526-DescribeInstances","arguments":{}},"params":{"name":"Ecs-20140526-DeleteInstance","arguments":{"InstanceId":"CANARY"}}}"#)),
        a("dup_id", Malformed, Raw(r#"{"jsonrpc":"2.0","id":@ID@,"id":"another","method":"tools/call","params":{"name":"Ecs-20140526-DescribeInstances","arguments":{"InstanceIds":"CANARY"}}}"#)),
        a("dup_key_deep_in_a_read", Malformed, Raw(r#"{"jsonrpc":"2.0","id":@ID@,"method":"tools/call","params":{"name":"Ecs-20140526-DescribeInstances","arguments":{"Filter":{"Key":"a","Key":"CANARY"}}}}"#)),
        a("bom_before_a_write", Malformed, Raw(r#"<BOM>{"jsonrpc":"2.0","id":@ID@,"method":"tools/call","params":{"name":"Ecs-20140526-DeleteInstance","arguments":{"InstanceId":"CANARY"}}}"#)),
        a("bom_before_a_read", Malformed, Raw(r#"<BOM>{"jsonrpc":"2.0","id":@ID@,"method":"tools/call","params":{"name":"Ecs-20140526-DescribeInstances","arguments":{"InstanceIds":"CANARY"}}}"#)),
        a("null_id_call", Malformed, Raw(r#"{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"Ecs-20140526-DescribeInstances","arguments":{"InstanceIds":"CANARY"}}}"#)),
        a("missing_id_call", Malformed, Raw(r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"Ecs-20140526-DescribeInstances","arguments":{"InstanceIds":"CANARY"}}}"#)),
        a("batch_of_a_read", Malformed, Raw(r#"[{"jsonrpc":"2.0","id":@ID@,"method":"tools/call","params":{"name":"Ecs-20140526-DescribeInstances","arguments":{"InstanceIds":"CANARY"}}}]"#)),
        a("batch_of_a_write", Malformed, Raw(r#"[{"jsonrpc":"2.0","id":@ID@,"method":"tools/call","params":{"name":"Ecs-20140526-DeleteInstance","arguments":{"InstanceId":"CANARY"}}}]"#)),
        a("invalid_utf8_in_a_string", Malformed, Raw(r#"{"jsonrpc":"2.0","id":@ID@,"method":"tools/call","params":{"name":"Ecs-20140526-DescribeInstances","arguments":{"InstanceIds":"CANARY<FF>"}}}"#)),
        a("number_out_of_range", Malformed, Raw(r#"{"jsonrpc":"2.0","id":@ID@,"method":"tools/call","params":{"name":"Ecs-20140526-DescribeInstances","arguments":{"InstanceIds":"CANARY","MaxResults":1e400}}}"#)),
        a("integer_beyond_2_pow_53", Malformed, Raw(r#"{"jsonrpc":"2.0","id":@ID@,"method":"tools/call","params":{"name":"Ecs-20140526-DescribeInstances","arguments":{"InstanceIds":"CANARY","MaxResults":9007199254740993}}}"#)),
        a("a_second_object_after_a_read", Malformed, Raw(r#"{"jsonrpc":"2.0","id":@ID@,"method":"tools/call","params":{"name":"Ecs-20140526-DescribeInstances","arguments":{}}}{"jsonrpc":"2.0","id":@ID@,"method":"tools/call","params":{"name":"Ecs-20140526-DeleteInstance","arguments":{"InstanceId":"CANARY"}}}"#)),
        // Legal JSON escapes: judged as what they decode to, never relayed unjudged.
        a("escaped_slash_in_method", Refused, Raw(r#"{"jsonrpc":"2.0","id":@ID@,"method":"tools\/call","params":{"name":"Ecs-20140526-DeleteInstance","arguments":{"InstanceId":"CANARY"}}}"#)),
        a("unicode_escape_in_method", Refused, Raw(r#"{"jsonrpc":"2.0","id":@ID@,"method":"\u0074ools/call","params":{"name":"Ecs-20140526-DeleteInstance","arguments":{"InstanceId":"CANARY"}}}"#)),
        a("unicode_escape_in_tool_name", Refused, Raw(r#"{"jsonrpc":"2.0","id":@ID@,"method":"tools/call","params":{"name":"Ecs-20140526-Delete\u0049nstance","arguments":{"InstanceId":"CANARY"}}}"#)),
        a("unicode_escape_in_command", Refused, Raw(r#"{"jsonrpc":"2.0","id":@ID@,"method":"tools/call","params":{"name":"AlibabaCloud___CallCLI","arguments":{"command":"aliyun ecs \u0064elete-instance --InstanceId CANARY"}}}"#)),
        a("escaped_method_naming_a_read", Passes, Raw(r#"{"jsonrpc":"2.0","id":@ID@,"method":"tools\/call","params":{"name":"Ecs-20140526-DescribeInstances","arguments":{"InstanceIds":"CANARY"}}}"#)),
        a("plain_read", Passes, Raw(r#"{"jsonrpc":"2.0","id":@ID@,"method":"tools/call","params":{"name":"Ecs-20140526-DescribeInstances","arguments":{"InstanceIds":"CANARY"}}}"#)),
        // Over the proxy, every method that carries a body is inspected.
        a("put_carrying_a_write", Malformed, Http("PUT", r#"{"jsonrpc":"2.0","id":@ID@,"method":"tools/call","params":{"name":"Ecs-20140526-DeleteInstance","arguments":{"InstanceId":"CANARY"}}}"#)),
        a("patch_carrying_a_write", Malformed, Http("PATCH", r#"{"jsonrpc":"2.0","id":@ID@,"method":"tools/call","params":{"name":"Ecs-20140526-DeleteInstance","arguments":{"InstanceId":"CANARY"}}}"#)),
    ]
}
