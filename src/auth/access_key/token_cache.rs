//! The minted-token cache: an OpenAPI MCP token minted from AccessKeys, kept across runs so a
//! warm start sends its first request without a GenerateAccessToken round trip.
//!
//! One 0600 file per minting context, `<state dir>/ak-tokens/<digest>.json`, where the digest
//! (SHA-256) covers everything that shapes the token: the AccessKey id *and secret* (and STS
//! security token or role), the RAM-OAuth endpoint, site, client id, scope, `--boundary-policy`
//! and the safety binding (`--safety-policy`, exact `--allow-tools`). Another key, site or policy
//! therefore never finds the entry, and a wrong secret for a known id misses too (it must fail
//! the way it would without a cache). The file holds the token, the key id (for the audit log)
//! and the mint and expiry times; never the AccessKey secret.
//!
//! Why a file and not the OS keychain the OAuth store may use: the token is short-lived, bound
//! to the policy, and derived from AccessKeys that already live in 0600 files
//! (`~/.aliyun/config.json`, `~/.alibabacloud/credentials`), so a 0600 file next to them does
//! not lower the bar; a keychain read costs a D-Bus/XPC round trip (and on macOS may prompt
//! after every binary update) on exactly the path this cache exists to make fast.
//!
//! A cached token is used only while it is more than `--token-refresh-skew` (at most half its
//! lifetime, as for a fresh token) from expiry; a token without a known expiry is not kept. A
//! 401/403 on a token drops its entry. Every failure to read or write the cache is only logged:
//! the cache can cost a mint, never a start.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tracing::debug;

use super::exchange::Exchange;
use crate::auth::secret::Secret;

/// Directory under the state directory.
pub const DIR: &str = "ak-tokens";
/// A cache file is a few hundred bytes; anything much larger is not ours.
const MAX_FILE: u64 = 64 * 1024;

/// The cache entry of one minting context.
#[derive(Debug, Clone)]
pub struct TokenCache {
    path: PathBuf,
}

/// A token read from the cache.
#[derive(Debug)]
pub struct Cached {
    pub token: Secret,
    pub key_id: String,
    pub expires_at: SystemTime,
    /// When it should be replaced (expiry minus the skew, as for a freshly minted token).
    pub refresh_at: SystemTime,
}

#[derive(Serialize, Deserialize)]
struct Record {
    v: u32,
    key_id: String,
    token: String,
    minted_at: u64,
    expires_at: u64,
}

impl TokenCache {
    /// The entry for keys identified by `identity` (see [`super::keys::KeySource::cache_identity`])
    /// minted through `exchange`, under the state directory `home`.
    pub fn new(home: &Path, identity: &str, exchange: &Exchange) -> TokenCache {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let safety = exchange.safety.as_ref().map(|b| {
            format!(
                "{}\n{}\n{}",
                b.endpoint,
                b.safe_policy,
                b.allowed_tools.join("\n")
            )
        });
        let parts: [&str; 8] = [
            "alibridge ak-token v1",
            identity,
            exchange.endpoint.as_str(),
            exchange.site.flag_value(),
            &exchange.client_id,
            &exchange.scope,
            exchange.policy.as_deref().unwrap_or("\u{0}none"),
            safety.as_deref().unwrap_or("\u{0}none"),
        ];
        for p in parts {
            // Length-prefixed, so no two different tuples hash the same bytes.
            ctx.update(&(p.len() as u64).to_be_bytes());
            ctx.update(p.as_bytes());
        }
        let digest = ctx.finish();
        let name: String = digest.as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        TokenCache {
            path: home.join(DIR).join(format!("{name}.json")),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cached token, if there is one still usable with `skew`.
    pub fn load(&self, skew: Duration) -> Option<Cached> {
        let rec = match self.read() {
            Ok(Some(r)) => r,
            Ok(None) => return None,
            Err(e) => {
                debug!(path = %self.path.display(), error = %e, "ignoring an unreadable token cache entry");
                return None;
            }
        };
        if rec.v != 1 || rec.token.is_empty() || rec.expires_at <= rec.minted_at {
            return None;
        }
        let secs = |s: u64| UNIX_EPOCH.checked_add(Duration::from_secs(s));
        let (minted_at, expires_at) = (secs(rec.minted_at)?, secs(rec.expires_at)?);
        let life = expires_at.duration_since(minted_at).unwrap_or_default();
        let refresh_at = expires_at.checked_sub(skew.min(life / 2))?;
        if refresh_at <= SystemTime::now() {
            debug!("the cached OpenAPI MCP token is within --token-refresh-skew of its expiry; minting");
            return None;
        }
        Some(Cached {
            token: Secret::new(rec.token),
            key_id: rec.key_id,
            expires_at,
            refresh_at,
        })
    }

    fn read(&self) -> std::io::Result<Option<Record>> {
        let file = match fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // A token others could read may have been read: do not use it.
            let mode = file.metadata()?.permissions().mode();
            if mode & 0o077 != 0 {
                let _ = fs::remove_file(&self.path);
                return Err(std::io::Error::other(format!(
                    "mode {:o} is open to other users; removed",
                    mode & 0o777
                )));
            }
        }
        let mut bytes = Vec::new();
        file.take(MAX_FILE + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > MAX_FILE {
            return Err(std::io::Error::other("too large"));
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(std::io::Error::other)
    }

    /// Keeps a freshly minted token (only one with a known expiry).
    pub fn store(&self, token: &Secret, key_id: &str, expires_at: Option<SystemTime>) {
        let Some(expires_at) = expires_at else {
            self.forget();
            return;
        };
        let unix = |t: SystemTime| t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).ok();
        let (Some(minted_at), Some(expires_at)) = (unix(SystemTime::now()), unix(expires_at))
        else {
            return;
        };
        let rec = Record {
            v: 1,
            key_id: key_id.to_string(),
            token: token.expose().to_string(),
            minted_at,
            expires_at,
        };
        let bytes = serde_json::to_vec(&rec).expect("a record serializes");
        if let Err(e) = crate::private_fs::write_private(&self.path, &bytes) {
            debug!(path = %self.path.display(), error = %e, "could not keep the minted token for the next start");
        }
    }

    /// Drops the entry if it still holds `token` (the one the server refused); an entry another
    /// process replaced meanwhile is kept.
    pub fn forget_token(&self, token: &str) {
        if let Ok(Some(rec)) = self.read() {
            if rec.token == token {
                self.forget();
            }
        }
    }

    pub fn forget(&self) {
        match fs::remove_file(&self.path) {
            Ok(()) => debug!(path = %self.path.display(), "dropped the cached OpenAPI MCP token"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                debug!(path = %self.path.display(), error = %e, "could not drop the cached token")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::access_key::site::Site;

    fn exchange(policy: Option<&str>) -> Exchange {
        Exchange {
            endpoint: "https://oauth.aliyun.com/".parse().unwrap(),
            client_id: "cid".into(),
            scope: "/internal/acs/openapi".into(),
            policy: policy.map(str::to_string),
            site: Site::Cn,
            safety: None,
        }
    }

    fn scratch() -> PathBuf {
        std::env::temp_dir().join(format!(
            "alibridge-akcache-{}-{:x}",
            std::process::id(),
            crate::backoff::random_u64()
        ))
    }

    #[test]
    fn every_part_of_the_context_selects_another_entry() {
        let home = Path::new("/h");
        let base = TokenCache::new(home, "id\nsecret", &exchange(None));
        let others = [
            TokenCache::new(home, "id\nother-secret", &exchange(None)),
            TokenCache::new(home, "id2\nsecret", &exchange(None)),
            TokenCache::new(home, "id\nsecret", &exchange(Some("{}"))),
            TokenCache::new(
                home,
                "id\nsecret",
                &Exchange {
                    site: Site::Intl,
                    ..exchange(None)
                },
            ),
        ];
        for o in &others {
            assert_ne!(o.path(), base.path());
        }
        let again = TokenCache::new(home, "id\nsecret", &exchange(None));
        assert_eq!(again.path(), base.path());
        assert!(!base.path().to_string_lossy().contains("secret"));
    }

    #[test]
    fn a_token_is_used_until_the_skew_and_dropped_when_refused() {
        let home = scratch();
        let c = TokenCache::new(&home, "id\nsecret", &exchange(None));
        assert!(c.load(Duration::from_secs(60)).is_none());
        let in_an_hour = SystemTime::now() + Duration::from_secs(3600);
        c.store(&Secret::new("tok-1"), "LTAIid", Some(in_an_hour));
        let hit = c
            .load(Duration::from_secs(60))
            .expect("a fresh token is used");
        assert_eq!(hit.token.expose(), "tok-1");
        assert_eq!(hit.key_id, "LTAIid");
        // Minted 3500 s ago, 100 s left: a 300 s skew refuses it, a 60 s skew does not.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let aged = Record {
            v: 1,
            key_id: "LTAIid".into(),
            token: "tok-1".into(),
            minted_at: now - 3500,
            expires_at: now + 100,
        };
        crate::private_fs::write_private(c.path(), &serde_json::to_vec(&aged).unwrap()).unwrap();
        assert!(c.load(Duration::from_secs(300)).is_none());
        assert!(c.load(Duration::from_secs(60)).is_some());
        c.forget_token("another");
        assert!(c.load(Duration::from_secs(60)).is_some());
        c.forget_token("tok-1");
        assert!(c.load(Duration::from_secs(60)).is_none());
        // No expiry: not kept.
        c.store(&Secret::new("tok-2"), "LTAIid", None);
        assert!(!c.path().exists());
        let _ = fs::remove_dir_all(&home);
    }

    #[cfg(unix)]
    #[test]
    fn a_file_open_to_others_is_not_trusted() {
        use std::os::unix::fs::PermissionsExt;
        let home = scratch();
        let c = TokenCache::new(&home, "id\nsecret", &exchange(None));
        c.store(
            &Secret::new("tok"),
            "LTAIid",
            Some(SystemTime::now() + Duration::from_secs(3600)),
        );
        let mode = fs::metadata(c.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        fs::set_permissions(c.path(), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(c.load(Duration::from_secs(60)).is_none());
        assert!(!c.path().exists());
        let _ = fs::remove_dir_all(&home);
    }
}
