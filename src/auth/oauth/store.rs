//! Where OAuth sign-ins are kept between runs: one record per MCP server, keyed by a hash of the
//! server's canonical URL (stable across alibridge versions: upgrading never signs you out).
//!
//! Every record has a file `<ALIBRIDGE_HOME>/oauth/<key>.json` (0600, written atomically) that
//! `status` and `logout` read. With the OS keychain (`--token-store keyring`, or `auto` when a
//! keychain is available) the secrets (tokens, a registered client secret) live in the keychain
//! entry `alibridge` / `<key>` and the file holds only the rest.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::OAuthError;

/// `--token-store`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum StoreKind {
    /// The OS keychain when one is available, else the file.
    #[default]
    Auto,
    /// The OS keychain (macOS Keychain, Windows Credential Manager, Secret Service).
    Keyring,
    /// A 0600 file under ALIBRIDGE_HOME.
    File,
}

/// How the client identity was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Registration {
    Preregistered,
    MetadataDocument,
    Dynamic,
}

/// Secret fields, kept apart so they can live in the keychain.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Secrets {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// A secret the server issued at dynamic registration (never a user's own secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secrets(****)")
    }
}

/// One server's sign-in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub server: String,
    pub issuer: String,
    pub client_id: String,
    pub registration: Registration,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Unix seconds when the access token expires, if known.
    #[serde(default)]
    pub expires_at: Option<u64>,
    #[serde(default)]
    pub scope: Option<String>,
    pub updated_at: u64,
    /// Where the secrets are: "file" or "keyring".
    #[serde(default = "file_store")]
    pub store: String,
    #[serde(default, flatten)]
    pub secrets: Secrets,
}

fn file_store() -> String {
    "file".into()
}

/// The store for one `ALIBRIDGE_HOME`.
pub struct TokenStore {
    dir: PathBuf,
    kind: StoreKind,
}

/// Keychain service name.
const SERVICE: &str = "alibridge";

impl TokenStore {
    pub fn new(home: &Path, kind: StoreKind) -> Self {
        TokenStore {
            dir: home.join("oauth"),
            kind,
        }
    }

    /// The record key of a server (first 24 hex digits of SHA-256 of its canonical URL).
    pub fn key(server: &str) -> String {
        let d = ring::digest::digest(&ring::digest::SHA256, server.as_bytes());
        d.as_ref()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    /// Loads the record of `server`, with its secrets.
    pub fn load(&self, server: &str) -> Result<Option<Record>, OAuthError> {
        let key = Self::key(server);
        let Some(mut rec) = self.read(&self.path(&key))? else {
            return Ok(None);
        };
        if rec.store == "keyring" {
            match keyring_get(&key) {
                Ok(Some(s)) => rec.secrets = s,
                Ok(None) => rec.secrets = Secrets::default(),
                Err(e) => {
                    return Err(OAuthError::Store(format!(
                        "the sign-in for {server} is in the OS keychain, which is not available now ({e}); \
                         unlock it, or run `alibridge logout {server}` and sign in again with --token-store file"
                    )))
                }
            }
        }
        Ok(Some(rec))
    }

    fn read(&self, path: &Path) -> Result<Option<Record>, OAuthError> {
        match std::fs::read(path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(r) => Ok(Some(r)),
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "ignoring an unreadable sign-in record");
                    Ok(None)
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(OAuthError::Store(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    /// Saves a record (secrets to the keychain when that is the store in use).
    pub fn save(&self, rec: &Record) -> Result<(), OAuthError> {
        let key = Self::key(&rec.server);
        let mut on_disk = rec.clone();
        on_disk.store = "file".into();
        let use_keyring = match self.kind {
            StoreKind::File => false,
            StoreKind::Keyring => true,
            StoreKind::Auto => keyring_available(),
        };
        if use_keyring {
            match keyring_set(&key, &rec.secrets) {
                Ok(()) => {
                    on_disk.store = "keyring".into();
                    on_disk.secrets = Secrets::default();
                }
                Err(e) if self.kind == StoreKind::Keyring => {
                    return Err(OAuthError::Store(format!(
                        "cannot write to the OS keychain ({e}); use --token-store file (ALIBRIDGE_TOKEN_STORE=file) on machines without one"
                    )))
                }
                Err(e) => warn!(error = %e, "OS keychain unavailable; keeping the sign-in in a 0600 file"),
            }
        }
        write_private(
            &self.path(&key),
            &serde_json::to_vec_pretty(&on_disk).expect("serialisable"),
        )
    }

    /// Deletes the record of `server`; `Ok(false)` when there was none.
    pub fn delete(&self, server: &str) -> Result<bool, OAuthError> {
        let key = Self::key(server);
        let path = self.path(&key);
        let existed = path.exists();
        if let Ok(Some(rec)) = self.read(&path) {
            if rec.store == "keyring" {
                let _ = keyring_delete(&key);
            }
        }
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(existed),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(OAuthError::Store(format!(
                "cannot delete {}: {e}",
                path.display()
            ))),
        }
    }

    /// Every stored record, without secrets.
    pub fn list(&self) -> Vec<Record> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<Record> = entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| self.read(&e.path()).ok().flatten())
            .map(|mut r| {
                r.secrets = Secrets::default();
                r
            })
            .collect();
        out.sort_by(|a, b| a.server.cmp(&b.server));
        out
    }
}

/// Writes `bytes` to `path` atomically with mode 0600, in a 0700 directory (see
/// [`crate::private_fs`]: unique temporary file, fsync, rename, directory fsync; loose modes
/// tightened or refused).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), OAuthError> {
    crate::private_fs::write_private(path, bytes)
        .map_err(|e| OAuthError::Store(format!("cannot write {}: {e}", path.display())))
}

/// Creates `dir` (and parents) with mode 0700 on Unix, or makes an existing one private.
pub fn create_private_dir(dir: &Path) -> Result<(), OAuthError> {
    crate::private_fs::create_private_dir(dir)
        .map_err(|e| OAuthError::Store(format!("cannot use {}: {e}", dir.display())))
}

#[cfg(feature = "keyring")]
fn keyring_available() -> bool {
    keyring::Entry::new(SERVICE, "probe").is_ok()
}

#[cfg(feature = "keyring")]
fn keyring_set(key: &str, s: &Secrets) -> Result<(), String> {
    let e = keyring::Entry::new(SERVICE, key).map_err(|e| e.to_string())?;
    e.set_password(&serde_json::to_string(s).expect("serialisable"))
        .map_err(|e| e.to_string())
}

#[cfg(feature = "keyring")]
fn keyring_get(key: &str) -> Result<Option<Secrets>, String> {
    let e = keyring::Entry::new(SERVICE, key).map_err(|e| e.to_string())?;
    match e.get_password() {
        Ok(p) => Ok(serde_json::from_str(&p).ok()),
        Err(keyring::Error::NoEntry) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(feature = "keyring")]
fn keyring_delete(key: &str) -> Result<(), String> {
    let e = keyring::Entry::new(SERVICE, key).map_err(|e| e.to_string())?;
    e.delete_credential().map_err(|e| e.to_string())
}

#[cfg(not(feature = "keyring"))]
fn keyring_available() -> bool {
    false
}

#[cfg(not(feature = "keyring"))]
fn keyring_set(_: &str, _: &Secrets) -> Result<(), String> {
    Err("this build has no keychain support (cargo feature `keyring`)".into())
}

#[cfg(not(feature = "keyring"))]
fn keyring_get(_: &str) -> Result<Option<Secrets>, String> {
    Err("this build has no keychain support (cargo feature `keyring`)".into())
}

#[cfg(not(feature = "keyring"))]
fn keyring_delete(_: &str) -> Result<(), String> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(server: &str) -> Record {
        Record {
            server: server.into(),
            issuer: "https://as.example".into(),
            client_id: "c1".into(),
            registration: Registration::Dynamic,
            redirect_uris: vec![],
            expires_at: Some(1),
            scope: None,
            updated_at: 0,
            store: "file".into(),
            secrets: Secrets {
                access_token: Some("at-secret".into()),
                refresh_token: Some("rt-secret".into()),
                client_secret: None,
            },
        }
    }

    #[test]
    fn file_store_round_trip_is_private_and_lists_without_secrets() {
        let home = std::env::temp_dir().join(format!("alibridge-store-{}", std::process::id()));
        let store = TokenStore::new(&home, StoreKind::File);
        store.save(&record("https://a.example/mcp")).unwrap();
        let back = store.load("https://a.example/mcp").unwrap().unwrap();
        assert_eq!(back.secrets.access_token.as_deref(), Some("at-secret"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let key = TokenStore::key("https://a.example/mcp");
            let mode = std::fs::metadata(home.join("oauth").join(format!("{key}.json")))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let listed = store.list();
        assert_eq!(listed.len(), 1);
        assert!(listed[0].secrets.access_token.is_none());
        assert!(
            !format!("{back:?}").contains("at-secret"),
            "Debug never shows tokens"
        );
        assert!(store.delete("https://a.example/mcp").unwrap());
        assert!(store.load("https://a.example/mcp").unwrap().is_none());
        let _ = std::fs::remove_dir_all(home);
    }
}
