//! API rules: `--allow-api` / `--deny-api`, globs on `product:Action` evaluated against every
//! API action a call resolves to (a Custom edition tool's own action, CallCLI's API, each
//! `call_cli` of a RunScript script, RunIaC's verb).
//!
//! Matching is case-insensitive and ignores `-` in the action part, so `ecs:describe-*`,
//! `ecs:Describe*` and `ECS:DESCRIBE*` mean the same thing (the CLI spells actions in kebab-case,
//! the APIs in PascalCase). Product codes keep their hyphens (`r-kvstore`).

use super::glob::Glob;

/// One API an action resolves to: a product code (lower-case; `*` when the tool name does not
/// say) and the action in PascalCase.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Api {
    pub product: String,
    pub action: String,
}

impl Api {
    pub fn new(product: &str, action: &str) -> Api {
        Api {
            product: product.to_ascii_lowercase(),
            action: action.to_string(),
        }
    }

    /// `product:Action`, for messages and the audit log.
    pub fn label(&self) -> String {
        format!("{}:{}", self.product, self.action)
    }

    /// The action in kebab-case (`DescribeInstances` → `describe-instances`), as the server-side
    /// policy and the CLI spell it.
    pub fn kebab_action(&self) -> String {
        kebab(&self.action)
    }
}

/// `DescribeInstances` → `describe-instances`; `DescribeVSwitches` → `describe-v-switches`
/// (each upper-case letter after the first starts a word, as the CLI's own conversion does).
pub fn kebab(pascal: &str) -> String {
    let mut out = String::with_capacity(pascal.len() + 8);
    for (i, c) in pascal.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 && !out.ends_with('-') {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// One `--allow-api` / `--deny-api` pattern: `product-glob:action-glob`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiGlob {
    text: String,
    product: Glob,
    /// The action part with `-` removed.
    action: Glob,
}

const EXAMPLE: &str = "for example ram:*, *:Delete*, ecs:Describe*";

impl ApiGlob {
    pub fn new(text: &str) -> Result<ApiGlob, String> {
        let Some((product, action)) = text.split_once(':') else {
            return Err(format!(
                "API pattern {text:?} is not PRODUCT:ACTION; {EXAMPLE}"
            ));
        };
        let (product, action) = (product.trim(), action.trim());
        let ok = |s: &str, extra: &[u8]| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"*?".contains(&b) || extra.contains(&b))
        };
        if !ok(product, b"-_.") || !ok(action, b"-") {
            return Err(format!(
                "API pattern {text:?} may hold letters, digits, - and the wildcards * and ? on \
                 each side of one ':'; {EXAMPLE}"
            ));
        }
        Ok(ApiGlob {
            text: format!("{product}:{action}"),
            product: Glob::new(product)?,
            action: Glob::new(&action.replace('-', ""))?,
        })
    }

    /// The pattern as the user wrote it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The product part, as written.
    pub fn product(&self) -> &str {
        self.text.split_once(':').map(|(p, _)| p).unwrap_or("*")
    }

    /// The action part, as written.
    pub fn action(&self) -> &str {
        self.text.split_once(':').map(|(_, a)| a).unwrap_or("*")
    }

    /// Whether `api` matches. An API whose product is unknown (`*`) matches only patterns whose
    /// product part is `*` alone.
    pub fn matches(&self, api: &Api) -> bool {
        let product_ok = if api.product == "*" {
            self.product.as_str() == "*"
        } else {
            self.product.matches(&api.product)
        };
        product_ok && self.action.matches(&api.action)
    }

    /// Whether `api` could match: as [`ApiGlob::matches`], but an unknown product (`*`) matches
    /// any product part (for deny rules, which must not miss a bare action such as
    /// `CreateAccessKey` under `ram:*`).
    pub fn may_match(&self, api: &Api) -> bool {
        (api.product == "*" || self.product.matches(&api.product))
            && self.action.matches(&api.action)
    }
}

/// Parses one flag value: comma-separated patterns.
pub fn parse_list(raw: &str) -> Result<Vec<ApiGlob>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(ApiGlob::new)
        .collect()
}

/// One `--allow-api` / `--deny-api` value.
#[derive(Debug, Clone, Default)]
pub struct ApiGlobList(pub Vec<ApiGlob>);

impl std::str::FromStr for ApiGlobList {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        parse_list(raw).map(ApiGlobList)
    }
}

/// The first pattern of `globs` matching `api`.
pub fn first_match<'a>(globs: &'a [ApiGlob], api: &Api) -> Option<&'a ApiGlob> {
    globs.iter().find(|g| g.matches(api))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, product: &str, action: &str) -> bool {
        ApiGlob::new(p).unwrap().matches(&Api::new(product, action))
    }

    #[test]
    fn patterns_match_products_and_actions_in_either_spelling() {
        assert!(m("ram:*", "ram", "CreateAccessKey"));
        assert!(m("RAM:*", "ram", "CreateAccessKey"));
        assert!(m("*:Delete*", "ecs", "DeleteInstance"));
        assert!(m("*:delete-*", "ecs", "DeleteInstance"));
        assert!(m("ecs:describe-instances", "Ecs", "DescribeInstances"));
        assert!(!m("ecs:Describe*", "vpc", "DescribeVpcs"));
        assert!(!m("ram:*", "*", "CreateAccessKey"), "unknown product");
        assert!(m("*:Create*", "*", "CreateAccessKey"));
        assert!(m("r-kvstore:*", "r-kvstore", "FlushInstance"));
    }

    #[test]
    fn bad_patterns_are_refused_with_an_example() {
        for bad in [
            "ram",
            "ram:",
            ":Delete*",
            "ram:Delete Instance",
            "a:b:c",
            "ram:x\u{7}",
        ] {
            let e = ApiGlob::new(bad).unwrap_err();
            assert!(e.contains("ram:*") || e.contains("pattern"), "{bad}: {e}");
        }
        let l = parse_list(" ram:* , *:Delete*,").unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[1].as_str(), "*:Delete*");
    }

    #[test]
    fn kebab_case_as_the_cli_spells_it() {
        assert_eq!(kebab("DescribeInstances"), "describe-instances");
        assert_eq!(kebab("GetSecretValue"), "get-secret-value");
        assert_eq!(kebab("describe"), "describe");
        assert_eq!(
            Api::new("Ecs", "DeleteInstance").label(),
            "ecs:DeleteInstance"
        );
    }
}
