//! The protocol-era cache: under `--protocol auto`, what the last run learned about an
//! endpoint's era, so a warm start pays no round trip the first one paid to learn it.
//!
//! One small file per endpoint, `<state dir>/eras/<digest>.json` (the digest is SHA-256 of the
//! whole URL, whose query may hold a key; the file shows only the URL without its query). Not
//! secret. A cold start sends the client's `initialize` first (see `upstream::era`); the two
//! entries save what that cannot: `modern` sends `server/discover` at once, skipping the
//! `initialize` a modern-only server refuses; `legacy` (served in the `initialize` era over
//! Streamable HTTP) takes an answer without a session as it is, skipping the probe a stateless
//! server otherwise gets. When the server refuses the `initialize` it once took (400/404/405,
//! or a modern era error), the entry is dropped and the probe runs, and its outcome is written
//! again. [`EraCheck`] holds the answer to an `initialize` sent first until the era is known.
//! Every failure to read or write is only logged: the cache can cost a round trip, never a
//! start.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tracing::debug;

use super::transport::Deliver;
use crate::jsonrpc::{Id, Kind, Message};

/// Directory under the state directory.
pub const DIR: &str = "eras";
const MAX_FILE: u64 = 16 * 1024;

/// What was learned about the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Learned {
    /// The `initialize` era over Streamable HTTP: an answer without a session is taken as is.
    Legacy,
    /// MCP 2026-07-28 (translated): `server/discover` goes first, no `initialize` is tried.
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

/// Sits between the transport an `initialize` is sent first on and the relay: the answer to
/// the client's `initialize` is held back, so the bridge can still probe (a modern server's era
/// error, or a stateless answer that may come from a modern server's fallback leg) before the
/// client sees anything. The caller then delivers it or drops it. Every other message passes.
pub struct EraCheck {
    inner: Arc<dyn Deliver>,
    armed: AtomicBool,
    initialize: Mutex<Option<Id>>,
    held: Mutex<Option<Message>>,
}

impl EraCheck {
    pub fn new(inner: Arc<dyn Deliver>, initialize: Option<Id>) -> Arc<EraCheck> {
        Arc::new(EraCheck {
            inner,
            armed: AtomicBool::new(initialize.is_some()),
            initialize: Mutex::new(initialize),
            held: Mutex::new(None),
        })
    }

    /// True when the held answer is a modern server's era error (−32020…−32022).
    pub fn refused(&self) -> bool {
        self.held
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(is_era_refusal)
    }

    /// The held answer to `initialize`, if it came; later ones are not held.
    pub fn take(&self) -> Option<Message> {
        self.armed.store(false, Ordering::Release);
        self.held.lock().unwrap().take()
    }

    /// Whether `msg` is the awaited answer to `initialize` (then it is no longer awaited).
    fn is_the_answer(&self, msg: &Message) -> bool {
        if msg.kind != Kind::Response {
            return false;
        }
        let mut id = self.initialize.lock().unwrap();
        if id.is_none() || msg.id != *id {
            return false;
        }
        *id = None;
        true
    }
}

fn is_era_refusal(msg: &Message) -> bool {
    let code = serde_json::from_slice::<serde_json::Value>(&msg.bytes)
        .ok()
        .and_then(|v| v["error"]["code"].as_i64());
    code.is_some_and(|c| super::modern::MODERN_ERRORS.contains(&c))
}

impl Deliver for EraCheck {
    fn deliver(&self, msg: Message) -> BoxFuture<'_, ()> {
        if self.armed.load(Ordering::Acquire) && self.is_the_answer(&msg) {
            *self.held.lock().unwrap() = Some(msg);
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

    /// Counts what reaches the relay.
    struct Seen(Mutex<Vec<Message>>);
    impl Deliver for Seen {
        fn deliver(&self, msg: Message) -> BoxFuture<'_, ()> {
            self.0.lock().unwrap().push(msg);
            Box::pin(async {})
        }
    }

    fn msg(s: &'static str) -> Message {
        Message::parse(bytes::Bytes::from_static(s.as_bytes())).unwrap()
    }

    #[tokio::test]
    async fn the_initialize_answer_is_held_until_taken_and_nothing_else_is() {
        let seen = Arc::new(Seen(Mutex::new(Vec::new())));
        let check = EraCheck::new(seen.clone(), Some(Id::from_json("0")));
        check
            .deliver(msg(r#"{"jsonrpc":"2.0","method":"notifications/message"}"#))
            .await;
        check
            .deliver(msg(
                r#"{"jsonrpc":"2.0","id":0,"error":{"code":-32022,"message":"no"}}"#,
            ))
            .await;
        assert_eq!(seen.0.lock().unwrap().len(), 1, "the answer is held");
        assert!(check.refused(), "a modern era error");
        let held = check.take().expect("held");
        assert_eq!(held.id, Some(Id::from_json("0")));
        assert!(!check.refused());
        // Once taken, the check passes everything, even a repeat of the id.
        check
            .deliver(msg(r#"{"jsonrpc":"2.0","id":0,"result":{}}"#))
            .await;
        assert_eq!(seen.0.lock().unwrap().len(), 2);

        let plain = EraCheck::new(seen.clone(), Some(Id::from_json("1")));
        plain
            .deliver(msg(
                r#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18"}}"#,
            ))
            .await;
        assert!(!plain.refused(), "a result is no refusal");
        assert!(plain.take().is_some());
    }
}
