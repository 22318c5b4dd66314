//! Where OAuth sign-ins are kept between runs: one record per MCP server **and** authorization
//! server, so a server that moves to another authorization server never makes alibridge send
//! one issuer's refresh token to another.
//!
//! Every record has a file `<ALIBRIDGE_HOME>/oauth/<server key>-<issuer key>.json` (0600,
//! written atomically) that `status` and `logout` read; the keys are hashes of the canonical
//! server URL and of the issuer. Records written by earlier versions (`<server key>.json`) are
//! still read, and replaced on the next save: upgrading never signs you out. With the OS
//! keychain (`--token-store keyring`, or `auto` when a keychain is available) the secrets
//! (tokens, a registered client secret) live in the keychain entry `alibridge` / `<file stem>`
//! and the file holds only the rest. When `auto` finds no usable keychain (no Secret Service,
//! an SSH session, a locked keychain that cannot prompt) the secrets stay in the 0600 file and
//! one notice per process says so; `keyring` fails instead, saying what to do.
//!
//! Each record carries a **generation**, raised by one on every save of that server's sign-in
//! (under the server's cross-process lock): the credential compares generations, never clocks,
//! to tell whether another task or process already replaced the tokens a request was sent with.
//!
//! Everything here is blocking I/O (the keychain may even wait for an unlock prompt): async
//! callers run it on the blocking pool, never on the runtime thread.

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
    /// Raised by one on every save of this server's sign-in; see the module comment.
    #[serde(default)]
    pub generation: u64,
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
#[derive(Debug, Clone)]
pub struct TokenStore {
    dir: PathBuf,
    kind: StoreKind,
}

/// Keychain service name.
#[cfg(feature = "keyring")]
const SERVICE: &str = "alibridge";

impl TokenStore {
    pub fn new(home: &Path, kind: StoreKind) -> Self {
        TokenStore {
            dir: home.join("oauth"),
            kind,
        }
    }

    /// The record key of a server (first 24 hex digits of SHA-256 of its canonical URL). Also
    /// names the server's lock and seeds its stable callback port.
    pub fn key(server: &str) -> String {
        hex_digest(server, 12)
    }

    /// The file stem (and keychain entry) of a server's sign-in with one issuer.
    fn stem(server: &str, issuer: &str) -> String {
        format!("{}-{}", Self::key(server), hex_digest(issuer, 6))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, stem: &str) -> PathBuf {
        self.dir.join(format!("{stem}.json"))
    }

    /// The record files of `server`, current and legacy, with their stems.
    fn files_of(&self, server: &str) -> Vec<(String, PathBuf)> {
        let key = Self::key(server);
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let stem = name.strip_suffix(".json")?;
                let ours = stem == key
                    || stem
                        .strip_prefix(key.as_str())
                        .is_some_and(|rest| rest.starts_with('-'));
                ours.then(|| (stem.to_string(), e.path()))
            })
            .collect()
    }

    /// True when a sign-in for `server` is stored (reads no secrets, touches no keychain).
    pub fn has_record(&self, server: &str) -> bool {
        self.files_of(server)
            .iter()
            .any(|(_, p)| matches!(self.read(p), Ok(Some(r)) if r.server == server))
    }

    /// Loads the sign-in of `server` with its secrets: the one with `issuer` when given, else
    /// the newest (highest generation) of any issuer.
    pub fn load(&self, server: &str, issuer: Option<&str>) -> Result<Option<Record>, OAuthError> {
        let mut best: Option<(String, Record)> = None;
        for (stem, path) in self.files_of(server) {
            let Some(rec) = self.read(&path)? else {
                continue;
            };
            if rec.server != server || issuer.is_some_and(|i| !same_issuer(i, &rec.issuer)) {
                continue;
            }
            let newer = best.as_ref().is_none_or(|(_, b)| {
                (rec.generation, rec.updated_at) > (b.generation, b.updated_at)
            });
            if newer {
                best = Some((stem, rec));
            }
        }
        let Some((stem, mut rec)) = best else {
            return Ok(None);
        };
        if rec.store == "keyring" {
            match keyring_get(&stem) {
                Ok(Some(s)) => rec.secrets = s,
                Ok(None) => rec.secrets = Secrets::default(),
                Err(source) => {
                    return Err(OAuthError::Keychain {
                        what: format!(
                            "the sign-in for {server} is in the OS keychain, which is not available now \
                             (unlock it, or run `alibridge logout {server}` and sign in again with --token-store file)"
                        ),
                        source,
                    })
                }
            }
        }
        Ok(Some(rec))
    }

    /// The highest generation stored for `server`, any issuer (0 when none).
    pub fn generation(&self, server: &str) -> u64 {
        self.files_of(server)
            .iter()
            .filter_map(|(_, p)| self.read(p).ok().flatten())
            .map(|r| r.generation)
            .max()
            .unwrap_or(0)
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
            Err(e) => Err(OAuthError::Store {
                action: "read",
                path: path.to_path_buf(),
                source: e,
            }),
        }
    }

    /// Saves a record (secrets to the keychain when that is the store in use) and says where
    /// the secrets went: `"keyring"` or `"file"`. A legacy record of the same server and
    /// issuer is removed once the new one is written.
    pub fn save(&self, rec: &Record) -> Result<&'static str, OAuthError> {
        let stem = Self::stem(&rec.server, &rec.issuer);
        let mut on_disk = rec.clone();
        on_disk.store = "file".into();
        let use_keyring = match self.kind {
            StoreKind::File => Ok(false),
            StoreKind::Keyring => Ok(true),
            StoreKind::Auto => keyring_available().map(|()| true),
        };
        let fallback = match use_keyring {
            Ok(false) => None,
            Ok(true) => match keyring_set(&stem, &rec.secrets) {
                Ok(()) => {
                    on_disk.store = "keyring".into();
                    on_disk.secrets = Secrets::default();
                    None
                }
                Err(source) if self.kind == StoreKind::Keyring => {
                    return Err(OAuthError::Keychain {
                        what:
                            "cannot write to the OS keychain; unlock it, or use --token-store file \
                               (ALIBRIDGE_TOKEN_STORE=file) on machines without one"
                                .into(),
                        source,
                    })
                }
                Err(e) => Some(e),
            },
            Err(e) => Some(e),
        };
        if let Some(why) = fallback {
            file_fallback_notice(&self.dir, &why);
        }
        write_private(
            &self.path(&stem),
            &serde_json::to_vec_pretty(&on_disk).expect("serialisable"),
        )?;
        let legacy = Self::key(&rec.server);
        if let Ok(Some(old)) = self.read(&self.path(&legacy)) {
            if same_issuer(&old.issuer, &rec.issuer) {
                self.remove(&legacy, &old)?;
            }
        }
        Ok(if on_disk.store == "keyring" {
            "keyring"
        } else {
            "file"
        })
    }

    /// Deletes the sign-ins of `server` (only the one with `issuer` when given); `Ok(false)`
    /// when there was none.
    pub fn delete(&self, server: &str, issuer: Option<&str>) -> Result<bool, OAuthError> {
        let mut any = false;
        for (stem, path) in self.files_of(server) {
            let Ok(Some(rec)) = self.read(&path) else {
                continue;
            };
            if rec.server != server || issuer.is_some_and(|i| !same_issuer(i, &rec.issuer)) {
                continue;
            }
            any |= self.remove(&stem, &rec)?;
        }
        Ok(any)
    }

    fn remove(&self, stem: &str, rec: &Record) -> Result<bool, OAuthError> {
        if rec.store == "keyring" {
            let _ = keyring_delete(stem);
        }
        let path = self.path(stem);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(OAuthError::Store {
                action: "delete",
                path: path.to_path_buf(),
                source: e,
            }),
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
        out.sort_by(|a, b| (&a.server, &a.issuer).cmp(&(&b.server, &b.issuer)));
        out
    }
}

/// Issuer identifiers compare as strings, ignoring a trailing slash (RFC 8414 §3.3).
pub fn same_issuer(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// The first `bytes` bytes of SHA-256 of `s`, in hex.
fn hex_digest(s: &str, bytes: usize) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    d.as_ref()[..bytes]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes `bytes` to `path` atomically with mode 0600, in a 0700 directory (see
/// [`crate::private_fs`]: unique temporary file, fsync, rename, directory fsync; loose modes
/// tightened or refused).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), OAuthError> {
    crate::private_fs::write_private(path, bytes).map_err(|e| OAuthError::Store {
        action: "write",
        path: path.to_path_buf(),
        source: e,
    })
}

/// Creates `dir` (and parents) with mode 0700 on Unix, or makes an existing one private.
pub fn create_private_dir(dir: &Path) -> Result<(), OAuthError> {
    crate::private_fs::create_private_dir(dir).map_err(|e| OAuthError::Store {
        action: "use",
        path: dir.to_path_buf(),
        source: e,
    })
}

/// Says once per process that sign-ins go to a file because the keychain cannot be used
/// (headless Linux without a Secret Service, SSH sessions, a locked keychain that cannot
/// prompt), so a user who expected the keychain learns why and where the tokens are.
fn file_fallback_notice(dir: &Path, why: &KeychainError) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        warn!(
            "the OS keychain is not available ({why}); keeping OAuth sign-ins in 0600 files under {} (--token-store file silences this)",
            dir.display()
        )
    });
}

/// Why the OS keychain could not be used: the keychain's own error, or a build without one.
#[derive(Debug, thiserror::Error)]
pub enum KeychainError {
    #[cfg(feature = "keyring")]
    #[error(transparent)]
    Keyring(#[from] keyring::Error),
    /// The keychain backend failed to start. The backend keeps that error and lends it
    /// (`Entry::store_status`), so only its text can be kept here.
    #[cfg(feature = "keyring")]
    #[error("{0}")]
    Start(String),
    #[error("this build has no keychain support (cargo feature `keyring`)")]
    NotBuilt,
}

#[cfg(feature = "keyring")]
fn keyring_available() -> Result<(), KeychainError> {
    keyring::Entry::new(SERVICE, "probe").map(|_| ()).map_err(
        |e| match keyring::Entry::store_status() {
            Err(init) => KeychainError::Start(init.to_string()),
            Ok(()) => e.into(),
        },
    )
}

#[cfg(feature = "keyring")]
fn keyring_set(key: &str, s: &Secrets) -> Result<(), KeychainError> {
    let e = keyring::Entry::new(SERVICE, key)?;
    Ok(e.set_password(&serde_json::to_string(s).expect("serialisable"))?)
}

#[cfg(feature = "keyring")]
fn keyring_get(key: &str) -> Result<Option<Secrets>, KeychainError> {
    let e = keyring::Entry::new(SERVICE, key)?;
    match e.get_password() {
        Ok(p) => Ok(serde_json::from_str(&p).ok()),
        Err(keyring::Error::NoEntry) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(feature = "keyring")]
fn keyring_delete(key: &str) -> Result<(), KeychainError> {
    let e = keyring::Entry::new(SERVICE, key)?;
    Ok(e.delete_credential()?)
}

#[cfg(not(feature = "keyring"))]
fn keyring_available() -> Result<(), KeychainError> {
    Err(KeychainError::NotBuilt)
}

#[cfg(not(feature = "keyring"))]
fn keyring_set(_: &str, _: &Secrets) -> Result<(), KeychainError> {
    Err(KeychainError::NotBuilt)
}

#[cfg(not(feature = "keyring"))]
fn keyring_get(_: &str) -> Result<Option<Secrets>, KeychainError> {
    Err(KeychainError::NotBuilt)
}

#[cfg(not(feature = "keyring"))]
fn keyring_delete(_: &str) -> Result<(), KeychainError> {
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
            generation: 1,
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
        let back = store.load("https://a.example/mcp", None).unwrap().unwrap();
        assert_eq!(back.secrets.access_token.as_deref(), Some("at-secret"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let stem = TokenStore::stem("https://a.example/mcp", "https://as.example");
            let mode = std::fs::metadata(home.join("oauth").join(format!("{stem}.json")))
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
        assert!(store.delete("https://a.example/mcp", None).unwrap());
        assert!(store.load("https://a.example/mcp", None).unwrap().is_none());
        let _ = std::fs::remove_dir_all(home);
    }

    #[test]
    fn sign_ins_are_kept_per_issuer_and_the_newest_generation_wins() {
        let home = std::env::temp_dir().join(format!("alibridge-store-iss-{}", std::process::id()));
        let store = TokenStore::new(&home, StoreKind::File);
        let server = "https://a.example/mcp";
        let first = record(server);
        store.save(&first).unwrap();
        let mut other = record(server);
        other.issuer = "https://other-as.example".into();
        other.generation = 2;
        other.secrets.refresh_token = Some("rt-of-the-other-issuer".into());
        store.save(&other).unwrap();

        let newest = store.load(server, None).unwrap().unwrap();
        assert_eq!(newest.issuer, "https://other-as.example");
        let by_issuer = store
            .load(server, Some("https://as.example/"))
            .unwrap()
            .unwrap();
        assert_eq!(
            by_issuer.secrets.refresh_token.as_deref(),
            Some("rt-secret")
        );
        assert_eq!(store.generation(server), 2);
        assert!(store
            .load(server, Some("https://nobody.example"))
            .unwrap()
            .is_none());
        assert!(store.has_record(server));
        assert!(!store.has_record("https://a.example/mcp2"));

        assert!(store
            .delete(server, Some("https://other-as.example"))
            .unwrap());
        assert_eq!(
            store.load(server, None).unwrap().unwrap().issuer,
            "https://as.example"
        );
        let _ = std::fs::remove_dir_all(home);
    }

    #[test]
    fn a_record_of_an_earlier_version_is_read_then_replaced() {
        let home =
            std::env::temp_dir().join(format!("alibridge-store-legacy-{}", std::process::id()));
        let store = TokenStore::new(&home, StoreKind::File);
        let server = "https://a.example/mcp";
        let mut legacy = record(server);
        legacy.generation = 0;
        let legacy_path = home
            .join("oauth")
            .join(format!("{}.json", TokenStore::key(server)));
        write_private(&legacy_path, &serde_json::to_vec(&legacy).unwrap()).unwrap();
        assert_eq!(
            store
                .load(server, None)
                .unwrap()
                .unwrap()
                .secrets
                .access_token
                .as_deref(),
            Some("at-secret")
        );
        let mut next = legacy.clone();
        next.generation = 1;
        store.save(&next).unwrap();
        assert!(!legacy_path.exists(), "the legacy file is replaced");
        assert_eq!(store.list().len(), 1);
        let _ = std::fs::remove_dir_all(home);
    }
}
