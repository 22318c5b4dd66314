//! The local policy compiled into the OpenAPI MCP Server's safety-policy syntax, so that with
//! AccessKeys the server refuses the API calls inside CallCLI, RunScript and RunIaC itself
//! (the expression is bound to every minted token by `UpdateBearerTokenSafetyPolicy`).
//!
//! The syntax, as Alibaba's own packages use it: comma-separated `PATTERN=allow|deny` rules,
//! `PATTERN` being `product:api` with `*` wildcards and the API in kebab-case
//! (`ecs:describe-*=allow,*=deny`). Assumed here, stricter reading where unconfirmed: rules are
//! tried in order and the first match decides; an API no rule matches is allowed (so every
//! compiled policy that allows anything ends with `*=deny`).
//!
//! What each flag becomes:
//! - `--read-only`: deny the access-issuing reads, allow the read verbs of every product, deny
//!   the rest;
//! - `--deny-api P`: `P=deny`, before any allow; `--allow-api P`: `P=allow`, then `*=deny`;
//! - with a user's `--safety-policy U` as well, the two are intersected (an API must be allowed
//!   by both): alibridge's denials, then U's denials, then the allows both grant (each pair of
//!   allow patterns narrowed to their common part, a pair with none dropped), then `*=deny`.
//!   When alibridge's rules only deny, U follows them unchanged. Moving U's denials before its
//!   allows can only refuse more.

use super::api::{self, ApiGlob};
use super::classify::{ACCESS_FRAGMENTS, ACCESS_ISSUING, READ_VERBS};

/// One rule of the server's syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRule {
    /// `product:api-glob`, or `*`.
    pub pattern: String,
    pub allow: bool,
}

impl ServerRule {
    fn deny(pattern: String) -> Self {
        ServerRule {
            pattern,
            allow: false,
        }
    }
    fn allow(pattern: String) -> Self {
        ServerRule {
            pattern,
            allow: true,
        }
    }
}

/// Products whose access-issuing actions are listed by name ([`ACCESS_ISSUING`]), so the
/// server-side denial names the product too.
const ISSUING_PRODUCTS: &[(&str, &str)] = &[
    ("cr", "GetAuthorizationToken"),
    ("cs", "DescribeClusterUserKubeconfig"),
    ("cs", "DescribeSubaccountK8sClusterUserConfig"),
    ("kms", "GetSecretValue"),
    ("ecs", "DescribeInstanceVncUrl"),
    ("sts", "GetFederationToken"),
];

/// The rules `--read-only` compiles to.
pub fn read_only_rules() -> Vec<ServerRule> {
    let mut rules = Vec::new();
    for (product, action) in ISSUING_PRODUCTS {
        rules.push(ServerRule::deny(format!(
            "{product}:{}",
            api::kebab(action)
        )));
    }
    for action in ACCESS_ISSUING {
        rules.push(ServerRule::deny(format!("*:{}", api::kebab(action))));
    }
    for fragment in ACCESS_FRAGMENTS {
        rules.push(ServerRule::deny(format!("*:*{}*", api::kebab(fragment))));
    }
    for verb in READ_VERBS {
        rules.push(ServerRule::allow(format!(
            "*:{}-*",
            verb.to_ascii_lowercase()
        )));
    }
    rules
}

/// An API glob in the server's spelling: the product lower-cased, the action in kebab-case
/// where it was written in PascalCase (a `-` only between two word parts, never after a
/// wildcard, so `*Instance*` stays `*instance*` and still matches `delete-instance`).
pub fn server_glob(g: &ApiGlob) -> String {
    let mut action = String::new();
    let mut prev: Option<char> = None;
    for c in g.action().chars() {
        if c.is_ascii_uppercase() && prev.is_some_and(|p| p.is_ascii_alphanumeric()) {
            action.push('-');
        }
        action.push(c.to_ascii_lowercase());
        prev = Some(c);
    }
    format!("{}:{action}", g.product().to_ascii_lowercase())
}

/// The rules alibridge's own flags compile to: denials first, then allows, then `*=deny` when
/// anything is allowed. Empty when no flag limits APIs.
pub fn flag_rules(read_only: bool, deny_api: &[ApiGlob], allow_api: &[ApiGlob]) -> Vec<ServerRule> {
    let mut denies: Vec<ServerRule> = deny_api
        .iter()
        .map(|g| ServerRule::deny(server_glob(g)))
        .collect();
    let mut allows: Vec<ServerRule> = Vec::new();
    let explicit: Vec<ServerRule> = allow_api
        .iter()
        .map(|g| ServerRule::allow(server_glob(g)))
        .collect();
    if read_only {
        let ro = read_only_rules();
        denies.extend(ro.iter().filter(|r| !r.allow).cloned());
        let ro_allows: Vec<ServerRule> = ro.into_iter().filter(|r| r.allow).collect();
        allows = if explicit.is_empty() {
            ro_allows
        } else {
            meet_all(&ro_allows, &explicit)
        };
    } else if !explicit.is_empty() {
        allows = explicit;
    }
    let restricts = read_only || !allow_api.is_empty();
    let mut rules = denies;
    rules.extend(allows);
    if restricts {
        rules.push(ServerRule::deny("*".into()));
    }
    rules
}

/// Parses a validated `--safety-policy` expression into rules.
pub fn parse_expr(expr: &str) -> Vec<ServerRule> {
    expr.split(',')
        .filter_map(|r| r.trim().rsplit_once('='))
        .map(|(p, e)| ServerRule {
            pattern: p.trim().to_string(),
            allow: e.trim().eq_ignore_ascii_case("allow"),
        })
        .collect()
}

/// Renders rules in the server's syntax.
pub fn render(rules: &[ServerRule]) -> String {
    rules
        .iter()
        .map(|r| format!("{}={}", r.pattern, if r.allow { "allow" } else { "deny" }))
        .collect::<Vec<_>>()
        .join(",")
}

/// The expression to bind: alibridge's rules intersected with the user's (see the module
/// doc). `None` when there is nothing to bind.
pub fn combine(ours: &[ServerRule], user: Option<&str>) -> Option<String> {
    let user = user.map(parse_expr).unwrap_or_default();
    match (ours.is_empty(), user.is_empty()) {
        (true, true) => None,
        (true, false) => Some(render(&user)),
        (false, true) => Some(render(ours)),
        (false, false) => {
            let our_allows: Vec<ServerRule> = ours.iter().filter(|r| r.allow).cloned().collect();
            let our_denies = ours.iter().filter(|r| !r.allow && r.pattern != "*");
            let mut rules: Vec<ServerRule> = our_denies.cloned().collect();
            if our_allows.is_empty() {
                rules.extend(user);
                return Some(render(&rules));
            }
            // The user's denials that come before its last allow: moved ahead of the allows
            // (which only refuses more). Those after it only meet APIs no user allow matched,
            // which the final `*=deny` refuses anyway.
            let last_allow = user.iter().rposition(|r| r.allow).unwrap_or(user.len());
            rules.extend(user[..last_allow].iter().filter(|r| !r.allow).cloned());
            let user_allows: Vec<ServerRule> = user.iter().filter(|r| r.allow).cloned().collect();
            // A user policy without allows allows whatever it does not deny.
            let allows = if user_allows.is_empty() {
                our_allows
            } else {
                meet_all(&our_allows, &user_allows)
            };
            rules.extend(allows);
            rules.push(ServerRule::deny("*".into()));
            rules.dedup();
            Some(render(&rules))
        }
    }
}

/// The allows both lists grant: each pair narrowed to the patterns both match.
fn meet_all(a: &[ServerRule], b: &[ServerRule]) -> Vec<ServerRule> {
    let mut out: Vec<ServerRule> = Vec::new();
    for x in a {
        for y in b {
            if let Some(p) = meet(&x.pattern, &y.pattern) {
                if !out.iter().any(|r| r.pattern == p) {
                    out.push(ServerRule::allow(p));
                }
            }
        }
    }
    out
}

/// A pattern matching only what both `a` and `b` match, when one can be written down simply;
/// `None` otherwise (the pair is then dropped, which only allows less).
pub fn meet(a: &str, b: &str) -> Option<String> {
    let split = |p: &str| -> (String, String) {
        match p.split_once(':') {
            Some((x, y)) => (x.to_string(), y.to_string()),
            None if p == "*" => ("*".into(), "*".into()),
            None => (p.to_string(), "*".into()),
        }
    };
    let (pa, aa) = split(a);
    let (pb, ab) = split(b);
    let product = meet_part(&pa, &pb)?;
    let action = meet_part(&aa, &ab)?;
    Some(if product == "*" && action == "*" {
        "*".into()
    } else {
        format!("{product}:{action}")
    })
}

fn meet_part(a: &str, b: &str) -> Option<String> {
    let literal = |s: &str| !s.contains(['*', '?']);
    let matches = |glob: &str, s: &str| {
        super::glob::Glob::new(glob)
            .map(|g| g.matches(s))
            .unwrap_or(false)
    };
    if a == "*" {
        return Some(b.to_string());
    }
    if b == "*" || a.eq_ignore_ascii_case(b) {
        return Some(a.to_string());
    }
    if literal(a) {
        return matches(b, a).then(|| a.to_string());
    }
    if literal(b) {
        return matches(a, b).then(|| b.to_string());
    }
    // Two prefixes (`describe-*`, `describe-inst*`): the longer one, when it extends the other.
    let prefix = |s: &str| {
        s.strip_suffix('*')
            .filter(|p| literal(p))
            .map(str::to_string)
    };
    match (prefix(a), prefix(b)) {
        (Some(x), Some(y)) if y.starts_with(&x) => Some(b.to_string()),
        (Some(x), Some(y)) if x.starts_with(&y) => Some(a.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn globs(s: &str) -> Vec<ApiGlob> {
        api::parse_list(s).unwrap()
    }

    #[test]
    fn read_only_denies_access_then_allows_reads_then_denies_the_rest() {
        let r = render(&flag_rules(true, &[], &[]));
        assert!(r.starts_with("cr:get-authorization-token=deny,"), "{r}");
        assert!(r.contains("kms:get-secret-value=deny"), "{r}");
        assert!(r.contains("*:*token*=deny"), "{r}");
        assert!(
            r.contains("*:*user-config*=deny,*:*secret-value*=deny"),
            "{r}"
        );
        let first_allow = r.find("=allow").unwrap();
        assert!(r.rfind("*:*ticket*=deny").unwrap() < first_allow, "{r}");
        assert!(r.contains("*:describe-*=allow,*:list-*=allow"), "{r}");
        assert!(r.ends_with(",*=deny"), "{r}");
    }

    #[test]
    fn api_rules_compile_in_the_servers_spelling() {
        let r = render(&flag_rules(
            false,
            &globs("ram:*,*:Delete*,ecs:*Instance*"),
            &[],
        ));
        assert_eq!(r, "ram:*=deny,*:delete*=deny,ecs:*instance*=deny");
        let r = render(&flag_rules(
            false,
            &globs("ram:*"),
            &globs("ecs:DescribeInstances,vpc:*"),
        ));
        assert_eq!(
            r,
            "ram:*=deny,ecs:describe-instances=allow,vpc:*=allow,*=deny"
        );
        let r = render(&flag_rules(true, &[], &globs("ecs:*,vpc:DescribeVpcs")));
        assert!(r.contains("ecs:describe-*=allow"), "{r}");
        assert!(r.contains("vpc:describe-vpcs=allow"), "{r}");
        assert!(!r.contains("ecs:*=allow"), "{r}");
        assert!(
            !r.contains("*:list-*=allow"),
            "narrowed to the allowed products: {r}"
        );
    }

    #[test]
    fn a_user_policy_is_intersected() {
        let ours = flag_rules(false, &globs("ram:*"), &[]);
        assert_eq!(
            combine(&ours, Some("ecs:describe-*=allow,*=deny")).unwrap(),
            "ram:*=deny,ecs:describe-*=allow,*=deny",
            "deny-only flags: the user policy follows unchanged"
        );
        let ro = flag_rules(true, &[], &[]);
        let c = combine(&ro, Some("ecs:delete-*=deny,ecs:*=allow,*=deny")).unwrap();
        assert!(c.contains("ecs:delete-*=deny"), "{c}");
        assert!(c.contains("ecs:describe-*=allow"), "{c}");
        assert!(!c.contains("ecs:*=allow"), "{c}");
        assert!(!c.contains("*:list-*=allow"), "{c}");
        assert!(c.ends_with("*=deny"), "{c}");
        assert!(c.find("ecs:delete-*=deny").unwrap() < c.find("=allow").unwrap());
        assert_eq!(combine(&[], Some("*=deny")).unwrap(), "*=deny");
        assert_eq!(combine(&[], None), None);
        let c = combine(&ro, Some("ram:*=deny")).unwrap();
        assert!(c.contains("ram:*=deny,*:describe-*=allow"), "{c}");
        let c = combine(&ro, Some("ecs:*=allow,*=deny")).unwrap();
        assert!(
            !c.contains(",*=deny,"),
            "a trailing catch-all is not moved up: {c}"
        );
        assert!(c.contains("ecs:describe-*=allow"), "{c}");
    }

    #[test]
    fn meets_narrow_or_give_up() {
        assert_eq!(
            meet("*:describe-*", "ecs:*").as_deref(),
            Some("ecs:describe-*")
        );
        assert_eq!(meet("*", "ecs:*").as_deref(), Some("ecs:*"));
        assert_eq!(
            meet("*:describe-*", "ecs:describe-instances").as_deref(),
            Some("ecs:describe-instances")
        );
        assert_eq!(meet("*:describe-*", "ecs:delete-instance"), None);
        assert_eq!(
            meet("*:describe-*", "ecs:*instance*"),
            None,
            "not simply writable"
        );
        assert_eq!(
            meet("*:describe-*", "*:describe-inst*").as_deref(),
            Some("*:describe-inst*")
        );
    }
}
