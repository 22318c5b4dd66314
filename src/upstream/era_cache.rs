//! The protocol-era cache: under `--protocol auto`, what the last run learned about an
//! endpoint's era, so a warm start skips the `server/discover` probe (one round trip).
//!
//! One small file per endpoint, `<state dir>/eras/<digest>.json` (the digest is SHA-256 of the
//! whole URL, whose query may hold a key; the file shows only the URL without its query). Not
//! secret. Only one outcome is acted on: `legacy`, an endpoint that was served in the
//! `initialize` era over Streamable HTTP. Then the client's `initialize` goes straight to the
//! server; if the server refuses it as a server without a session would (400/404/405, which is
//! how a modern-only server answers 2025 traffic with −32022), the entry is dropped and the
//! probe runs once, as on a cold start, and its outcome is written again. `modern` is recorded
//! for the record but still probed: there `server/discover` is not an extra round trip, its
//! answer is what the translated `initialize` result is made of. Every failure to read or
//! write is only logged: the cache can cost a round trip, never a start.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tracing::debug;

use super::Deliver;
use crate::jsonrpc::{Id, Kind, Message};

/// Directory under the state directory.
pub const DIR: &str = "eras";
const MAX_FILE: u64 = 16 * 1024;

/// What was learned about the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Learned {
    /// The `initialize` era over Streamable HTTP: no probe needed.
    Legacy,
    /// MCP 2026-07-28 (translated): probe as usual.
    Modern,
}

#[derive(Serialize, Deserialize)]
struct Record {
    v: u32,
    url: String,
    era: Learned,
}

/// The entry of one endpoint.
#[derive(Debug, Clone)]
pub struct EraCache {
    path: PathBuf,
    shown: String,
}

impl EraCache {
    pub fn new(home: &Path, url: &reqwest::Url) -> EraCache {
        let digest = ring::digest::digest(&ring::digest::SHA256, url.as_str().as_bytes());
        let name: String = digest.as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        EraCache {
            path: home.join(DIR).join(format!("{name}.json")),
            shown: crate::net::display_url(url),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn load(&self) -> Option<Learned> {
        let read = || -> std::io::Result<Record> {
            let mut bytes = Vec::new();
            fs::File::open(&self.path)?
                .take(MAX_FILE)
                .read_to_end(&mut bytes)?;
            serde_json::from_slice(&bytes).map_err(std::io::Error::other)
        };
        match read() {
            Ok(r) if r.v == 1 => Some(r.era),
            Ok(_) => None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                debug!(path = %self.path.display(), error = %e, "ignoring an unreadable era cache entry");
                None
            }
        }
    }

    pub fn store(&self, era: Learned) {
        if self.load() == Some(era) {
            return;
        }
        let rec = Record {
            v: 1,
            url: self.shown.clone(),
            era,
        };
        let bytes = serde_json::to_vec(&rec).expect("a record serializes");
        match crate::private_fs::write_private(&self.path, &bytes) {
            Ok(()) => {
                debug!(path = %self.path.display(), ?era, "remembered the server's protocol era")
            }
            Err(e) => {
                debug!(path = %self.path.display(), error = %e, "could not remember the protocol era")
            }
        }
    }

    pub fn forget(&self) {
        if let Err(e) = fs::remove_file(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                debug!(path = %self.path.display(), error = %e, "could not drop the era cache entry");
            }
        }
    }
}

/// Sits between a transport tried on a remembered era and the relay: the answer to the
/// client's `initialize` is held back when it is a modern server's era error (−32020…−32022),
/// so the bridge can probe instead of handing the client a refusal. Every other message passes.
pub struct EraCheck {
    inner: Arc<dyn Deliver>,
    armed: AtomicBool,
    initialize: Mutex<Option<Id>>,
    refused: AtomicBool,
}

impl EraCheck {
    pub fn new(inner: Arc<dyn Deliver>, initialize: Option<Id>) -> Arc<EraCheck> {
        Arc::new(EraCheck {
            inner,
            armed: AtomicBool::new(initialize.is_some()),
            initialize: Mutex::new(initialize),
            refused: AtomicBool::new(false),
        })
    }

    /// True when the server refused `initialize` as a modern-only server does.
    pub fn refused(&self) -> bool {
        self.refused.load(Ordering::Acquire)
    }

    fn is_era_refusal(&self, msg: &Message) -> bool {
        if msg.kind != Kind::Response {
            return false;
        }
        let mut id = self.initialize.lock().unwrap();
        if id.is_none() || msg.id != *id {
            return false;
        }
        *id = None;
        self.armed.store(false, Ordering::Release);
        let code = serde_json::from_slice::<serde_json::Value>(&msg.bytes)
            .ok()
            .and_then(|v| v["error"]["code"].as_i64());
        code.is_some_and(|c| super::modern::MODERN_ERRORS.contains(&c))
    }
}

impl Deliver for EraCheck {
    fn deliver(&self, msg: Message) -> BoxFuture<'_, ()> {
        if self.armed.load(Ordering::Acquire) && self.is_era_refusal(&msg) {
            self.refused.store(true, Ordering::Release);
            return Box::pin(async {});
        }
        self.inner.deliver(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_era_is_kept_per_endpoint_and_can_be_dropped() {
        let home = std::env::temp_dir().join(format!(
            "alibridge-eras-{}-{:x}",
            std::process::id(),
            crate::backoff::random_u64()
        ));
        let a = EraCache::new(&home, &"https://a.example/mcp?key=s3cret".parse().unwrap());
        let b = EraCache::new(&home, &"https://a.example/other".parse().unwrap());
        assert_ne!(a.path(), b.path());
        assert_eq!(a.load(), None);
        a.store(Learned::Legacy);
        assert_eq!(a.load(), Some(Learned::Legacy));
        assert_eq!(b.load(), None);
        let text = fs::read_to_string(a.path()).unwrap();
        assert!(!text.contains("s3cret"), "{text}");
        a.store(Learned::Modern);
        assert_eq!(a.load(), Some(Learned::Modern));
        a.forget();
        assert_eq!(a.load(), None);
        let _ = fs::remove_dir_all(&home);
    }
}
