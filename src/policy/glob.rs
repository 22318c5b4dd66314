//! Tool-name patterns for `--allow-tools` / `--deny-tools`: `*` matches any run of characters,
//! `?` one character, everything else itself; the whole name must match, case-insensitively
//! (as mcp-remote's `--ignore-tool` does, so its users' patterns keep their meaning).

/// One pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    text: String,
    /// Lower-cased characters of `text`.
    chars: Vec<char>,
}

/// Longest pattern accepted; a tool name is a few dozen characters.
const MAX_LEN: usize = 256;

impl Glob {
    /// Parses one pattern (already trimmed); empty or control characters are refused.
    pub fn new(text: &str) -> Result<Glob, String> {
        if text.is_empty() {
            return Err("an empty tool pattern".into());
        }
        if text.chars().count() > MAX_LEN {
            return Err(format!(
                "tool pattern {:.40}… is longer than {MAX_LEN} characters",
                text
            ));
        }
        if text.chars().any(char::is_control) {
            return Err(format!("tool pattern {text:?} contains control characters"));
        }
        Ok(Glob {
            text: text.to_string(),
            chars: lower(text),
        })
    }

    /// The pattern as the user wrote it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when the pattern has no wildcard: it names exactly one tool (the only kind the
    /// server-side `toolPolicy` can express).
    pub fn is_exact(&self) -> bool {
        !self.text.contains(['*', '?'])
    }

    /// Whether `name` matches the whole pattern. Linear in `name` times the pattern's length at
    /// worst (one backtrack point, the last `*`), so a hostile name costs nothing much.
    pub fn matches(&self, name: &str) -> bool {
        let name = lower(name);
        let p = &self.chars;
        let (mut i, mut j) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while i < name.len() {
            if j < p.len() && (p[j] == '?' || p[j] == name[i]) {
                i += 1;
                j += 1;
            } else if j < p.len() && p[j] == '*' {
                star = Some((j, i));
                j += 1;
            } else if let Some((sj, si)) = star {
                j = sj + 1;
                i = si + 1;
                star = Some((sj, si + 1));
            } else {
                return false;
            }
        }
        p[j..].iter().all(|c| *c == '*')
    }
}

fn lower(s: &str) -> Vec<char> {
    s.chars().flat_map(char::to_lowercase).collect()
}

/// Parses one flag value: comma-separated patterns, blanks around them ignored, empty items
/// skipped (so a trailing comma is harmless).
pub fn parse_list(raw: &str) -> Result<Vec<Glob>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(Glob::new)
        .collect()
}

/// One `--allow-tools` / `--deny-tools` value: its patterns, in order.
#[derive(Debug, Clone, Default)]
pub struct GlobList(pub Vec<Glob>);

impl std::str::FromStr for GlobList {
    type Err = String;

    /// Parses a flag value (clap uses this as the flag's value parser).
    fn from_str(raw: &str) -> Result<Self, String> {
        parse_list(raw).map(GlobList)
    }
}

/// The first pattern of `globs` matching `name`.
pub fn first_match<'a>(globs: &'a [Glob], name: &str) -> Option<&'a Glob> {
    globs.iter().find(|g| g.matches(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, n: &str) -> bool {
        Glob::new(p).unwrap().matches(n)
    }

    #[test]
    fn wildcards_match_whole_names_case_insensitively() {
        assert!(m("Describe*", "DescribeInstances"));
        assert!(m("describe*", "DescribeInstances"));
        assert!(m("*Instance*", "DeleteInstance"));
        assert!(m("Delete?nstance", "DeleteInstance"));
        assert!(m("*", ""));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(!m("a*b*c", "aXXbYY"));
        assert!(!m("Describe", "DescribeInstances"), "whole-name match");
        assert!(!m("*Delete", "DeleteInstance"));
        assert!(m("Ecs-*-Delete*", "Ecs-20140526-DeleteInstance"));
        assert!(m("ÉCS*", "écsx"), "non-ASCII letters fold too");
    }

    #[test]
    fn hostile_names_stay_cheap() {
        let name = "a".repeat(100_000);
        assert!(!m("*a*a*a*a*b", &name));
        assert!(m("*a", &name));
    }

    #[test]
    fn lists_split_on_commas_and_refuse_bad_patterns() {
        let l = parse_list(" Describe*, List* ,,Get?pi ,").unwrap();
        let texts: Vec<&str> = l.iter().map(Glob::as_str).collect();
        assert_eq!(texts, ["Describe*", "List*", "Get?pi"]);
        assert!(parse_list("").unwrap().is_empty());
        assert!(parse_list("a\u{7}b").is_err());
        assert!(parse_list(&"x".repeat(300)).is_err());
        assert!(Glob::new("DescribeInstances").unwrap().is_exact());
        assert!(!Glob::new("Describe*").unwrap().is_exact());
        assert_eq!(
            first_match(&l, "listusers").map(Glob::as_str),
            Some("List*")
        );
    }
}
