//! What the last `alibridge pre-check` found, per site and application, kept in the state
//! directory (`pre-check.json`, no secrets) so `doctor` can tell "the application was never
//! authorized on this account" from other reasons a token mint fails.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

const FILE: &str = "pre-check.json";
/// Records kept at most (one per site and application in practice).
const MAX_RECORDS: usize = 16;

/// One verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// `CN` or `INTL`.
    pub site: String,
    pub client_id: String,
    /// `authorized`, `denied`, `not_installed` or `failed`.
    pub outcome: String,
    /// Unix seconds.
    pub at: u64,
}

/// Replaces the record for the same site and application. Best effort: the check's verdict
/// is printed either way, so a state directory that cannot be written only loses the memo.
pub fn save(home: &Path, site: &str, client_id: &str, outcome: &str) -> std::io::Result<()> {
    let mut all = load_all(home);
    all.retain(|r| !(r.site == site && r.client_id == client_id));
    all.push(Record {
        site: site.to_string(),
        client_id: client_id.to_string(),
        outcome: outcome.to_string(),
        at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default(),
    });
    let excess = all.len().saturating_sub(MAX_RECORDS);
    all.drain(..excess);
    crate::private_fs::create_private_dir(home)?;
    let text = serde_json::to_vec_pretty(&all).map_err(std::io::Error::other)?;
    crate::private_fs::write_private(&home.join(FILE), &text)
}

/// The record for `site` and `client_id`, if the check ran on this machine.
pub fn load(home: &Path, site: &str, client_id: &str) -> Option<Record> {
    load_all(home)
        .into_iter()
        .find(|r| r.site == site && r.client_id == client_id)
}

/// Every record, oldest first.
pub fn load_all(home: &Path) -> Vec<Record> {
    // A small file of our own; anything unreadable counts as no record.
    std::fs::read(home.join(FILE))
        .ok()
        .filter(|b| b.len() <= 64 << 10)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_verdict_per_site_and_application_is_kept() {
        let dir = std::env::temp_dir().join(format!("alibridge-precheck-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(load(&dir, "CN", "1"), None);
        save(&dir, "CN", "1", "denied").unwrap();
        save(&dir, "INTL", "2", "authorized").unwrap();
        save(&dir, "CN", "1", "authorized").unwrap();
        assert_eq!(load(&dir, "CN", "1").unwrap().outcome, "authorized");
        assert_eq!(load(&dir, "INTL", "2").unwrap().outcome, "authorized");
        assert_eq!(load_all(&dir).len(), 2);
        std::fs::write(dir.join(FILE), b"not json").unwrap();
        assert_eq!(load(&dir, "CN", "1"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
