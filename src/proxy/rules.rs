//! `--allowed-servers` / `--blocked-servers`: parsing the lists and deciding, for one request
//! path, whether the proxy may forward it.
//!
//! An entry is a server **name**, a server **id**, or a **path prefix** (it starts with `/`).
//! Decisions, in this order (the `aliyun mcp-proxy` rules, made stricter where it was loose):
//!
//! 1. A path matching any blocked entry is denied: the block list wins.
//! 2. If the allow list is not empty, a path matching none of its entries is denied.
//! 3. Everything else is allowed.
//!
//! Matching:
//! - A prefix matches on whole path segments: `/mcp/a` matches `/mcp/a` and `/mcp/a/…`, never
//!   `/mcp/ab` (`aliyun mcp-proxy` compares raw strings).
//! - A name or id matches the server segments of the path, `…/<name>/id/<id>/…` (the first `id`
//!   segment), and, when the server list could be read at start ([`ServerIndex`]), every path
//!   under that server's endpoints.
//! - Blocked entries compare without regard to case and allowed entries exactly, so a change of
//!   case can only make a request *less* reachable.
//!
//! Paths are matched after percent-decoding. Paths the upstream could read differently than
//! these rules do (dot segments, empty segments, encoded `/` or `\`, control characters, bytes
//! that are not UTF-8) are refused outright by [`normalize`], so no spelling slips past a rule.

use std::collections::HashMap;
use std::fmt;

/// One entry of `--allowed-servers` / `--blocked-servers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A path prefix, without its trailing `/` (the root is the empty string).
    Prefix(String),
    /// A server name or id.
    Server(String),
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Prefix(p) if p.is_empty() => f.write_str("/"),
            Entry::Prefix(p) | Entry::Server(p) => f.write_str(p),
        }
    }
}

/// The entries of one flag value, e.g. `"ecs, oss,/acs/mcp-server/ram"`. Empty items are
/// dropped, as `aliyun mcp-proxy` does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryList(pub Vec<Entry>);

impl std::str::FromStr for EntryList {
    type Err = String;

    /// Parses a comma-separated flag value (clap uses this as the flag's value parser).
    fn from_str(raw: &str) -> Result<Self, String> {
        raw.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(parse_entry)
            .collect::<Result<Vec<_>, _>>()
            .map(EntryList)
    }
}

/// [`EntryList`]'s parser, by name.
pub fn parse_list(raw: &str) -> Result<EntryList, String> {
    raw.parse()
}

fn parse_entry(s: &str) -> Result<Entry, String> {
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{s:?} contains a space; separate entries with commas"
        ));
    }
    if s.starts_with('/') {
        let trimmed = s.trim_end_matches('/');
        if s.contains(['?', '#']) {
            return Err(format!(
                "path prefix {s:?} has a query or fragment; give a path only"
            ));
        }
        let decoded = normalize(if trimmed.is_empty() { "/" } else { trimmed })
            .map_err(|e| format!("path prefix {s:?}: {e}"))?;
        return Ok(Entry::Prefix(decoded.trim_end_matches('/').to_string()));
    }
    if s.contains(['/', '?', '#', '%']) {
        return Err(format!(
            "{s:?} is neither a server name or id (no '/') nor a path prefix (starts with '/')"
        ));
    }
    Ok(Entry::Server(s.to_string()))
}

/// Why a request path is refused before any rule is applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path is not valid UTF-8 after percent-decoding")]
    NotUtf8,
    #[error("the path contains an encoded '/' or '\\' (%2F, %5C) or a backslash")]
    EncodedSeparator,
    #[error("the path contains '.' or '..' segments")]
    DotSegment,
    #[error("the path contains an empty segment ('//')")]
    EmptySegment,
    #[error("the path contains control characters")]
    Control,
    #[error("the path does not start with '/'")]
    NotAbsolute,
}

/// Percent-decodes `raw` (a request path without query) and refuses every spelling another
/// server might resolve to a different path. Returns the decoded path the rules look at.
pub fn normalize(raw: &str) -> Result<String, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let mut bytes = Vec::with_capacity(raw.len());
    let mut it = raw.bytes();
    while let Some(b) = it.next() {
        if b == b'%' {
            let hex = [it.next(), it.next()];
            let decoded = match hex {
                [Some(h), Some(l)] => hex_val(h).zip(hex_val(l)).map(|(h, l)| h << 4 | l),
                _ => None,
            };
            match decoded {
                Some(b'/') | Some(b'\\') => return Err(PathError::EncodedSeparator),
                Some(d) => bytes.push(d),
                // A stray '%' stays literal (it cannot form another path).
                None => {
                    bytes.push(b'%');
                    bytes.extend(hex.into_iter().flatten());
                }
            }
        } else {
            bytes.push(b);
        }
    }
    let path = String::from_utf8(bytes).map_err(|_| PathError::NotUtf8)?;
    if path.contains('\\') {
        return Err(PathError::EncodedSeparator);
    }
    if path.chars().any(char::is_control) {
        return Err(PathError::Control);
    }
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." | ".." => return Err(PathError::DotSegment),
            "" if i != last => return Err(PathError::EmptySegment),
            _ => {}
        }
    }
    Ok(path)
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Server name and id → the path prefixes of that server's endpoints, from the server list
/// read at start (empty when it could not be read).
#[derive(Debug, Clone, Default)]
pub struct ServerIndex {
    paths: HashMap<String, Vec<String>>,
}

impl ServerIndex {
    /// Records that server `name` with `id` is served under each of `endpoint_paths` (its MCP
    /// and SSE endpoint paths; the last segment, `mcp` or `sse`, is dropped so the server's
    /// message endpoints are covered too).
    pub fn add(&mut self, name: &str, id: &str, endpoint_paths: &[&str]) {
        let bases: Vec<String> = endpoint_paths
            .iter()
            .filter_map(|p| normalize(p).ok())
            .map(|p| server_base(&p))
            .collect();
        for key in [name, id] {
            if key.is_empty() {
                continue;
            }
            let v = self.paths.entry(key.to_string()).or_default();
            for b in &bases {
                if !v.contains(b) {
                    v.push(b.clone());
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The prefixes recorded for `key`; case-insensitive lookups see every key that differs
    /// only in case.
    fn prefixes<'a>(&'a self, key: &'a str, fold_case: bool) -> impl Iterator<Item = &'a str> {
        self.paths
            .iter()
            .filter(move |(k, _)| {
                if fold_case {
                    k.eq_ignore_ascii_case(key)
                } else {
                    k.as_str() == key
                }
            })
            .flat_map(|(_, v)| v.iter().map(String::as_str))
    }
}

/// `/a/b/mcp` → `/a/b`; a path whose last segment is not `mcp` or `sse` is its own base.
fn server_base(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rsplit_once('/') {
        Some((base, "mcp" | "sse")) => base.to_string(),
        _ => trimmed.to_string(),
    }
}

/// Which list denied a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum List {
    Blocked,
    Allowed,
}

impl List {
    pub fn flag(self) -> &'static str {
        match self {
            List::Blocked => "--blocked-servers",
            List::Allowed => "--allowed-servers",
        }
    }
}

/// The verdict for one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Denied by `list`; `entry` is the blocked entry that matched (none for "not in the allow
    /// list").
    Deny {
        list: List,
        entry: Option<String>,
    },
}

impl Verdict {
    /// One phrase saying which rule decided, e.g. `blocked by --blocked-servers ram`.
    pub fn describe(&self) -> String {
        match self {
            Verdict::Allow => "allowed".into(),
            Verdict::Deny {
                list,
                entry: Some(e),
            } => format!("blocked by {} {e}", list.flag()),
            Verdict::Deny { list, entry: None } => {
                format!("not in {}", list.flag())
            }
        }
    }
}

/// Both lists.
#[derive(Debug, Clone, Default)]
pub struct AccessRules {
    pub allowed: Vec<Entry>,
    pub blocked: Vec<Entry>,
}

impl AccessRules {
    pub fn is_empty(&self) -> bool {
        self.allowed.is_empty() && self.blocked.is_empty()
    }

    /// Decides for `path`, already checked by [`normalize`].
    pub fn decide(&self, path: &str, index: &ServerIndex) -> Verdict {
        if let Some(e) = self.blocked.iter().find(|e| matches(e, path, index, true)) {
            return Verdict::Deny {
                list: List::Blocked,
                entry: Some(e.to_string()),
            };
        }
        if !self.allowed.is_empty() && !self.allowed.iter().any(|e| matches(e, path, index, false))
        {
            return Verdict::Deny {
                list: List::Allowed,
                entry: None,
            };
        }
        Verdict::Allow
    }
}

impl fmt::Display for AccessRules {
    /// The "access rules" block printed at start.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |l: &[Entry]| {
            l.iter()
                .map(Entry::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(f, "access rules:")?;
        if self.is_empty() {
            return writeln!(
                f,
                "  none: every server on the upstream can be reached (narrow it with \
                 --allowed-servers / --blocked-servers)"
            );
        }
        if !self.blocked.is_empty() {
            writeln!(
                f,
                "  blocked (--blocked-servers, wins): {}",
                join(&self.blocked)
            )?;
        }
        if !self.allowed.is_empty() {
            writeln!(
                f,
                "  allowed (--allowed-servers, nothing else): {}",
                join(&self.allowed)
            )?;
        }
        Ok(())
    }
}

fn matches(entry: &Entry, path: &str, index: &ServerIndex, fold_case: bool) -> bool {
    let eq = |a: &str, b: &str| {
        if fold_case {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    };
    match entry {
        Entry::Prefix(p) => has_prefix(path, p, fold_case),
        Entry::Server(s) => {
            let by_segments =
                server_segments(path).is_some_and(|(name, id)| eq(name, s) || eq(id, s));
            by_segments
                || index
                    .prefixes(s, fold_case)
                    .any(|p| has_prefix(path, p, fold_case))
        }
    }
}

/// True when `path` is `prefix` or lies under it (whole segments).
fn has_prefix(path: &str, prefix: &str, fold_case: bool) -> bool {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return true;
    }
    let (path, prefix) = if fold_case {
        (path.to_lowercase(), prefix.to_lowercase())
    } else {
        (path.to_string(), prefix.to_string())
    };
    match path.strip_prefix(&prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// `(name, id)` from `…/<name>/id/<id>/…`, the shape of OpenAPI MCP endpoints
/// (`/accounts/<uid>/custom/<name>/id/<id>/mcp`, `…/system/<product>/<name>/id/<id>/mcp`).
pub fn server_segments(path: &str) -> Option<(&str, &str)> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let i = (1..segs.len().saturating_sub(1)).find(|&i| segs[i] == "id")?;
    Some((segs[i - 1], segs[i + 1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allowed: &str, blocked: &str) -> AccessRules {
        AccessRules {
            allowed: parse_list(allowed).unwrap().0,
            blocked: parse_list(blocked).unwrap().0,
        }
    }

    const ECS: &str = "/accounts/1234/custom/ecs/id/AbC123/mcp";
    const OSS: &str = "/accounts/1234/custom/oss/id/Oss999/mcp";
    const RAM: &str = "/accounts/1234/system/ram/id/Ram777/mcp";

    fn allowed(r: &AccessRules, path: &str) -> bool {
        r.decide(path, &ServerIndex::default()) == Verdict::Allow
    }

    #[test]
    fn parses_names_ids_and_prefixes_and_drops_empty_items() {
        let l = parse_list(" ecs, ,AbC123,/acs/mcp-server/oss/,").unwrap().0;
        assert_eq!(
            l,
            vec![
                Entry::Server("ecs".into()),
                Entry::Server("AbC123".into()),
                Entry::Prefix("/acs/mcp-server/oss".into())
            ]
        );
        assert_eq!(parse_list("").unwrap().0, vec![]);
        assert_eq!(
            parse_list("/").unwrap().0,
            vec![Entry::Prefix(String::new())]
        );
        for bad in ["a/b", "a b", "/x/../y", "/x?y=1", "/x//y", "50%"] {
            assert!(parse_list(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn no_rules_allow_everything() {
        let r = rules("", "");
        assert!(allowed(&r, ECS) && allowed(&r, "/") && allowed(&r, "/anything"));
    }

    #[test]
    fn names_and_ids_match_the_server_segments() {
        let r = rules("ecs,Oss999", "");
        assert!(allowed(&r, ECS));
        assert!(allowed(&r, "/accounts/1234/custom/ecs/id/AbC123/sse"));
        assert!(allowed(&r, OSS), "by id");
        assert!(!allowed(&r, RAM));
        assert!(
            !allowed(&r, "/"),
            "a non-server path is not in the allow list"
        );
        assert_eq!(
            r.decide(RAM, &ServerIndex::default()),
            Verdict::Deny {
                list: List::Allowed,
                entry: None
            }
        );
    }

    #[test]
    fn block_wins_over_allow() {
        let r = rules("ecs,ram", "ram");
        assert!(allowed(&r, ECS));
        assert_eq!(
            r.decide(RAM, &ServerIndex::default()),
            Verdict::Deny {
                list: List::Blocked,
                entry: Some("ram".into())
            }
        );
        let r = rules("/accounts/1234", "Ram777");
        assert!(
            !allowed(&r, RAM),
            "an id in the block list wins over a prefix allow"
        );
        assert!(allowed(&r, OSS));
    }

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        let r = rules("", "/mcp/a");
        assert!(!allowed(&r, "/mcp/a"));
        assert!(!allowed(&r, "/mcp/a/"));
        assert!(!allowed(&r, "/mcp/a/sse"));
        assert!(allowed(&r, "/mcp/ab"));
        assert!(allowed(&r, "/mcp/ab/mcp"));
        assert!(allowed(&r, "/mcp"));
        let r = rules("/mcp/a/", "");
        assert!(allowed(&r, "/mcp/a/mcp") && !allowed(&r, "/mcp/ab"));
        let r = rules("", "/");
        assert!(
            !allowed(&r, "/") && !allowed(&r, ECS),
            "/ blocks everything"
        );
    }

    #[test]
    fn blocks_ignore_case_and_allows_do_not() {
        let r = rules("", "RAM,/Accounts/1234/CUSTOM/oss");
        assert!(!allowed(&r, RAM));
        assert!(!allowed(&r, OSS));
        assert!(!allowed(&r, "/accounts/1234/system/Ram/id/x/mcp"));
        let r = rules("ECS", "");
        assert!(!allowed(&r, ECS), "allow entries are exact");
    }

    #[test]
    fn listed_servers_match_by_name_under_their_endpoint_paths() {
        let mut index = ServerIndex::default();
        index.add(
            "ecs",
            "srv-1",
            &["/acs/mcp-server/ecs/mcp", "/acs/mcp-server/ecs/sse"],
        );
        let r = rules("ecs", "");
        assert_eq!(r.decide("/acs/mcp-server/ecs/mcp", &index), Verdict::Allow);
        assert_eq!(
            r.decide("/acs/mcp-server/ecs/message", &index),
            Verdict::Allow
        );
        assert_ne!(r.decide("/acs/mcp-server/ecs2/mcp", &index), Verdict::Allow);
        let r = rules("", "srv-1");
        assert_ne!(r.decide("/acs/mcp-server/ecs/sse", &index), Verdict::Allow);
        let r = rules("", "unknown");
        assert_eq!(r.decide("/acs/mcp-server/ecs/sse", &index), Verdict::Allow);
    }

    #[test]
    fn normalize_decodes_and_refuses_ambiguous_spellings() {
        assert_eq!(normalize("/a/%72am/mcp").unwrap(), "/a/ram/mcp");
        assert_eq!(normalize("/a/b/").unwrap(), "/a/b/");
        assert_eq!(normalize("/50%").unwrap(), "/50%");
        assert_eq!(normalize("/a/%2fb"), Err(PathError::EncodedSeparator));
        assert_eq!(normalize("/a/%5Cb"), Err(PathError::EncodedSeparator));
        assert_eq!(normalize("/a\\b"), Err(PathError::EncodedSeparator));
        assert_eq!(normalize("/a/../b"), Err(PathError::DotSegment));
        assert_eq!(normalize("/a/%2e%2e/b"), Err(PathError::DotSegment));
        assert_eq!(normalize("/a/./b"), Err(PathError::DotSegment));
        assert_eq!(normalize("//a"), Err(PathError::EmptySegment));
        assert_eq!(normalize("/a%00"), Err(PathError::Control));
        assert_eq!(normalize("/%ff"), Err(PathError::NotUtf8));
        assert_eq!(normalize("a"), Err(PathError::NotAbsolute));
        // A blocked server cannot be reached through an encoded spelling.
        let r = rules("", "ram");
        let p = normalize("/accounts/1/system/%52am/id/x/mcp").unwrap();
        assert!(!allowed(&r, &p));
    }

    #[test]
    fn server_segments_take_the_first_id_segment() {
        assert_eq!(server_segments(ECS), Some(("ecs", "AbC123")));
        assert_eq!(
            server_segments("/accounts/1/system/eds-aic/cloudphone/id/XS/mcp"),
            Some(("cloudphone", "XS"))
        );
        assert_eq!(server_segments("/acs/mcp-server/ecs/mcp"), None);
        assert_eq!(server_segments("/id/x"), None);
        assert_eq!(server_segments("/a/id"), None);
    }
}
