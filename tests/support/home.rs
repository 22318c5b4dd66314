//! Scratch homes: a temporary directory per test that stands in for the user's `HOME` (and holds
//! `ALIBRIDGE_HOME` as `.alibridge` inside it), removed when dropped.
//!
//! Every suite that isolates the binary from the machine uses this one type: the bridges and
//! commands of the OAuth and AccessKey suites, the proxy harness, the hostile-peer tests, and the
//! plain [`super::bridge::Bridge::spawn`] (whose `ALIBRIDGE_HOME` would otherwise be left behind).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

/// A temporary `HOME`, removed on drop.
pub struct TempHome(PathBuf);

impl TempHome {
    /// Creates an empty `alibridge-<tag>-<pid>-<n>` under the system temp directory (anything
    /// left there by an earlier, killed run is removed first).
    pub fn new(tag: &str) -> TempHome {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("alibridge-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temp HOME");
        TempHome(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The path of `name` inside, as a string (for a flag's value).
    pub fn file(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }

    /// `<HOME>/.alibridge`: what isolated processes get as `ALIBRIDGE_HOME` (not created here,
    /// so the binary finds it as a fresh install would).
    pub fn alibridge_home(&self) -> PathBuf {
        self.0.join(".alibridge")
    }

    /// `<ALIBRIDGE_HOME>/oauth`, where the file token store keeps its records.
    pub fn store_dir(&self) -> PathBuf {
        self.alibridge_home().join("oauth")
    }

    /// The stored sign-in records (`*.json`), sorted.
    pub fn records(&self) -> Vec<PathBuf> {
        json_files(&self.store_dir())
    }

    /// `<ALIBRIDGE_HOME>/pins`, where `--pin-tools` keeps one file per endpoint and identity.
    pub fn pins_dir(&self) -> PathBuf {
        self.alibridge_home().join("pins")
    }

    /// The pin files (`pins/*.json`), sorted.
    pub fn pin_files(&self) -> Vec<PathBuf> {
        json_files(&self.pins_dir())
    }

    /// Writes `rel` (creating directories), as `aliyun configure` or a user would.
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.0.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Writes `~/.aliyun/config.json` (the `aliyun` CLI's profiles).
    pub fn cli_config(&self, config: &Value) -> PathBuf {
        self.write(
            ".aliyun/config.json",
            &serde_json::to_string_pretty(config).unwrap(),
        )
    }
}

/// The `*.json` files directly in `dir`, sorted (none when it does not exist).
pub fn json_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    v.sort();
    v
}

impl Drop for TempHome {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
