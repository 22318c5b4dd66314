//! Tool pinning (`--pin-tools`): what the agent is told about each tool (name, title,
//! description, schemas, annotations) is recorded per endpoint and identity the first time it
//! is seen, and a later listing that changes a definition, or adds a tool, is held back until
//! the person approves it.
//!
//! - [`canonical`]: the pinned parts of a definition as canonical JSON (sorted keys, no
//!   whitespace), and [`digest`] its SHA-256.
//! - [`PinFile`]: `<state dir>/pins/<hash of endpoint and identity>.json`, 0600, replaced
//!   atomically. It holds the pinned definitions (so a change can be shown as a diff) and the
//!   pending ones a bridge withheld (so `alibridge tools` can show and approve them offline).
//! - [`Pins`]: one session's view: judges each listed tool, remembers what it withheld, and
//!   records approvals.
//! - [`diff()`]: what changed, in a few lines a person can read.
//!
//! A pin file that cannot be read (corrupt, a link, another user's) is an error naming the
//! file and the fix, never a silent re-trust.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

mod diff;
pub use diff::{describe, diff, DiffLine, Part};

/// Most tools a listing may hold for pinning.
pub const MAX_TOOLS: usize = 10_000;
/// Largest single tool definition (its canonical JSON) pinned.
pub const MAX_DEFINITION: usize = 1 << 20;
/// The pinned parts of a definition.
pub const PINNED_KEYS: &[&str] = &[
    "name",
    "title",
    "description",
    "inputSchema",
    "outputSchema",
    "annotations",
];
/// The file format's version.
const VERSION: u32 = 1;

/// Why pinning could not go on.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error(
        "the pin file {path} cannot be used ({why}); alibridge never re-trusts tools silently. \
         Check the file, or drop the endpoint's pins with `alibridge tools {endpoint} --forget` \
         (the next listing is then trusted on first use again)"
    )]
    Unusable {
        path: PathBuf,
        endpoint: String,
        why: String,
    },
    #[error("cannot write the pin file {path}: {cause}")]
    Write {
        path: PathBuf,
        /// Part of the message (this error has no separate source, so it is printed once).
        cause: std::io::Error,
    },
    #[error(
        "the server listed more than {MAX_TOOLS} tools; alibridge pins at most {MAX_TOOLS} and \
         relays no listing it cannot pin (turn pinning off with --no-pin-tools to relay it)"
    )]
    TooManyTools,
    #[error(
        "the definition of tool {0:.80} is larger than 1 MiB; alibridge does not pin or relay \
         it (turn pinning off with --no-pin-tools to relay it)"
    )]
    TooLarge(String),
}

/// A definition's pinned parts as canonical JSON: only [`PINNED_KEYS`], keys sorted at every
/// depth (serde_json's map is ordered), no whitespace.
pub fn canonical(tool: &Value) -> String {
    let mut kept = Map::new();
    if let Some(obj) = tool.as_object() {
        for k in PINNED_KEYS {
            if let Some(v) = obj.get(*k) {
                kept.insert((*k).to_string(), v.clone());
            }
        }
    }
    Value::Object(kept).to_string()
}

/// SHA-256 of `canonical`, hex.
pub fn digest(canonical: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One pinned (or pending) definition.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Pin {
    pub digest: String,
    /// The pinned parts ([`canonical`], parsed).
    pub definition: Value,
    /// When it was pinned or seen (RFC 3339).
    pub at: String,
}

impl Pin {
    fn of(definition: &Value) -> Pin {
        let text = canonical(definition);
        Pin {
            digest: digest(&text),
            definition: serde_json::from_str(&text).unwrap_or(Value::Null),
            at: super::audit::rfc3339(std::time::SystemTime::now()),
        }
    }
}

/// One endpoint's pins for one identity.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PinFile {
    pub version: u32,
    /// The endpoint, as shown to people (no secrets).
    pub endpoint: String,
    /// `ak:LTAI****1234`, `oauth:<subject>`, or `anonymous`.
    pub identity: String,
    pub pinned: BTreeMap<String, Pin>,
    /// Seen, withheld, waiting for approval.
    #[serde(default)]
    pub pending: BTreeMap<String, Pin>,
}

impl PinFile {
    fn new(endpoint: &str, identity: &str) -> PinFile {
        PinFile {
            version: VERSION,
            endpoint: endpoint.to_string(),
            identity: identity.to_string(),
            pinned: BTreeMap::new(),
            pending: BTreeMap::new(),
        }
    }

    /// Pins pending `names` (every pending one with `all`); the names that were not pending.
    pub fn approve(&mut self, names: &[String], all: bool) -> Vec<String> {
        let chosen: Vec<String> = if all {
            self.pending.keys().cloned().collect()
        } else {
            names.to_vec()
        };
        let mut missing = Vec::new();
        for n in chosen {
            match self.pending.remove(&n) {
                Some(p) => {
                    self.pinned.insert(n, p);
                }
                None => missing.push(n),
            }
        }
        missing
    }
}

/// Where the pin files live: `<state dir>/pins/`.
#[derive(Debug, Clone)]
pub struct PinStore {
    dir: PathBuf,
}

impl PinStore {
    pub fn new(state_home: &Path) -> PinStore {
        PinStore {
            dir: state_home.join("pins"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of `endpoint` and `identity`: a hash of both, so neither shows in a file name.
    pub fn path(&self, endpoint: &str, identity: &str) -> PathBuf {
        let key = digest(&format!("{endpoint}\n{identity}"));
        self.dir.join(format!("{}.json", &key[..32]))
    }

    /// Reads the pins of `endpoint` and `identity`; `None` when there are none yet.
    pub fn load(&self, endpoint: &str, identity: &str) -> Result<Option<PinFile>, PinError> {
        let path = self.path(endpoint, identity);
        read(&path, endpoint)
    }

    /// Every pin file of `endpoint` (one per identity), with its path.
    pub fn all_for(&self, endpoint: &str) -> Result<Vec<(PathBuf, PinFile)>, PinError> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            if let Some(f) = read(&path, endpoint)? {
                if f.endpoint == endpoint {
                    out.push((path, f));
                }
            }
        }
        out.sort_by(|a, b| a.1.identity.cmp(&b.1.identity));
        Ok(out)
    }

    /// Writes `file` atomically, 0600, in a 0700 directory.
    pub fn save(&self, file: &PinFile) -> Result<(), PinError> {
        let path = self.path(&file.endpoint, &file.identity);
        let write = |e| PinError::Write {
            path: path.clone(),
            cause: e,
        };
        crate::private_fs::create_private_dir(&self.dir).map_err(write)?;
        let text = serde_json::to_string_pretty(file).expect("pins serialize");
        crate::private_fs::write_private(&path, text.as_bytes()).map_err(write)
    }

    /// Removes `path`.
    pub fn forget(&self, path: &Path) -> Result<(), PinError> {
        std::fs::remove_file(path).map_err(|e| PinError::Write {
            path: path.to_path_buf(),
            cause: e,
        })
    }
}

/// Reads one pin file, refusing a link, anything but a regular file, a file of another user
/// than the pins directory's, and content that is not a pin file.
fn read(path: &Path, endpoint: &str) -> Result<Option<PinFile>, PinError> {
    let unusable = |why: String| PinError::Unusable {
        path: path.to_path_buf(),
        endpoint: endpoint.to_string(),
        why,
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unusable(e.to_string())),
    };
    if !meta.file_type().is_file() {
        return Err(unusable("it is not a regular file".into()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let dir_uid = path
            .parent()
            .and_then(|d| std::fs::metadata(d).ok())
            .map(|m| m.uid());
        if dir_uid.is_some_and(|u| u != meta.uid()) {
            return Err(unusable("it belongs to another user".into()));
        }
    }
    let bytes = std::fs::read(path).map_err(|e| unusable(e.to_string()))?;
    let file: PinFile = serde_json::from_slice(&bytes)
        .map_err(|e| unusable(format!("it is not a pin file: {e}")))?;
    if file.version != VERSION {
        return Err(unusable(format!("unknown version {}", file.version)));
    }
    Ok(Some(file))
}

/// What a listing said about one tool, against the pins.
#[derive(Debug, Clone, PartialEq)]
pub enum Judgement {
    Pass,
    /// New or changed: held back; the text says what changed.
    Withhold(Change),
}

/// Why a tool is held back.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    New,
    Changed(Vec<DiffLine>),
}

impl Change {
    /// One line for the refusal the model reads: which parts changed, never their new text
    /// (a changed description is exactly what must not reach the model unapproved).
    pub fn summary(&self) -> String {
        match self {
            Change::New => "it is new since the tools were pinned".into(),
            Change::Changed(lines) => {
                let mut parts: Vec<&str> = Vec::new();
                for l in lines {
                    let part = l.part.summary();
                    if !parts.contains(&part) {
                        parts.push(part);
                    }
                }
                format!(
                    "its definition changed since it was pinned ({})",
                    parts.join(", ")
                )
            }
        }
    }
}

/// One session's pins.
#[derive(Debug)]
pub struct Pins {
    store: PinStore,
    file: PinFile,
    /// No pin file existed: the first complete listing is trusted.
    first_use: bool,
    /// Tools withheld in this run: name → (digest, what changed).
    withheld: HashMap<String, (String, Change)>,
    /// Digests the person declined in this run (not asked again).
    declined: HashSet<String>,
    /// Names this run pinned (first use or approval): what it writes over the file on disk.
    touched: HashSet<String>,
    /// The file existed when opened or was written since: its absence later means `--forget`.
    on_disk: bool,
    dirty: bool,
}

impl Pins {
    /// The pins of `endpoint` and `identity` (`None`: `anonymous`).
    pub fn open(store: PinStore, endpoint: &str, identity: Option<&str>) -> Result<Pins, PinError> {
        let identity = identity.unwrap_or("anonymous");
        let loaded = store.load(endpoint, identity)?;
        let first_use = loaded.is_none();
        Ok(Pins {
            store,
            file: loaded.unwrap_or_else(|| PinFile::new(endpoint, identity)),
            first_use,
            withheld: HashMap::new(),
            declined: HashSet::new(),
            touched: HashSet::new(),
            on_disk: !first_use,
            dirty: false,
        })
    }

    /// Takes in what `alibridge tools` changed on disk while this run was going (an approval,
    /// a `--forget`), so a listing is judged against the pins as they are now. Called before
    /// each listing page; while this run has unwritten changes, [`Pins::commit`] merges instead.
    pub fn refresh(&mut self) -> Result<(), PinError> {
        if self.dirty {
            return Ok(());
        }
        match self.store.load(&self.file.endpoint, &self.file.identity)? {
            Some(f) => {
                self.file = f;
                self.on_disk = true;
            }
            None if self.on_disk => self.forgotten(),
            None => {}
        }
        Ok(())
    }

    /// The pin file was removed (`alibridge tools --forget`): the next listing is a first use.
    fn forgotten(&mut self) {
        self.file = PinFile::new(&self.file.endpoint, &self.file.identity);
        self.first_use = true;
        self.on_disk = false;
        self.withheld.clear();
        self.touched.clear();
        self.dirty = false;
    }

    pub fn endpoint(&self) -> &str {
        &self.file.endpoint
    }

    pub fn is_first_use(&self) -> bool {
        self.first_use
    }

    /// Checks a whole listing page before anything is judged: too many tools, or one too
    /// large, refuses the page.
    pub fn check_page(&self, tools: &[Value]) -> Result<(), PinError> {
        if tools.len() > MAX_TOOLS {
            return Err(PinError::TooManyTools);
        }
        for t in tools {
            if canonical(t).len() > MAX_DEFINITION {
                let name = t.get("name").and_then(Value::as_str).unwrap_or("(unnamed)");
                return Err(PinError::TooLarge(name.to_string()));
            }
        }
        Ok(())
    }

    /// Judges one listed tool.
    pub fn judge(&mut self, tool: &Value) -> Judgement {
        let name = tool
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let now = Pin::of(tool);
        if self.first_use {
            self.touched.insert(name.clone());
            self.file.pinned.insert(name, now);
            self.dirty = true;
            return Judgement::Pass;
        }
        let change = match self.file.pinned.get(&name) {
            Some(p) if p.digest == now.digest => {
                self.withheld.remove(&name);
                return Judgement::Pass;
            }
            Some(p) => Change::Changed(diff(&p.definition, &now.definition)),
            None => Change::New,
        };
        if self.file.pending.get(&name).map(|p| &p.digest) != Some(&now.digest) {
            self.file.pending.insert(name.clone(), now.clone());
            self.dirty = true;
        }
        self.withheld
            .insert(name, (now.digest.clone(), change.clone()));
        Judgement::Withhold(change)
    }

    /// A listing ended (no `nextCursor`): the first use is over.
    pub fn listing_done(&mut self) {
        self.first_use = false;
    }

    /// Why `name` is held back, if it is.
    pub fn withheld(&self, name: &str) -> Option<&Change> {
        self.withheld.get(name).map(|(_, c)| c)
    }

    /// Whether a call of `name` may go: pinned, and not held back.
    pub fn callable(&self, name: &str) -> Result<(), Change> {
        if let Some(c) = self.withheld(name) {
            return Err(c.clone());
        }
        if self.file.pinned.contains_key(name) {
            return Ok(());
        }
        Err(Change::New)
    }

    /// The held-back tools not yet declined in this run, with what changed: what to ask the
    /// person about.
    pub fn to_ask(&self) -> Vec<(String, Change)> {
        let mut out: Vec<(String, Change)> = self
            .withheld
            .iter()
            .filter(|(_, (d, _))| !self.declined.contains(d))
            .map(|(n, (_, c))| (n.clone(), c.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The person approved `names`: pinned (from pending), no longer withheld.
    pub fn approve(&mut self, names: &[String]) {
        self.file.approve(names, false);
        for n in names {
            self.withheld.remove(n);
            self.touched.insert(n.clone());
        }
        self.dirty = true;
    }

    /// The person declined `names`: still held back, not asked again in this run.
    pub fn decline(&mut self, names: &[String]) {
        for n in names {
            if let Some((d, _)) = self.withheld.get(n) {
                self.declined.insert(d.clone());
            }
        }
    }

    /// Writes the file when something changed, merged with what is on disk now: what this
    /// run pinned wins, anything else `alibridge tools` approved meanwhile is kept, and a file
    /// removed meanwhile (`--forget`) stays removed.
    pub fn commit(&mut self) -> Result<(), PinError> {
        if !std::mem::take(&mut self.dirty) {
            return Ok(());
        }
        match self.store.load(&self.file.endpoint, &self.file.identity)? {
            Some(disk) => self.merge(disk),
            None if self.on_disk => {
                self.forgotten();
                return Ok(());
            }
            None => {}
        }
        self.store.save(&self.file)?;
        self.on_disk = true;
        Ok(())
    }

    fn merge(&mut self, disk: PinFile) {
        let mut pinned = disk.pinned;
        for n in &self.touched {
            if let Some(p) = self.file.pinned.get(n) {
                pinned.insert(n.clone(), p.clone());
            }
        }
        let mut pending = disk.pending;
        pending.extend(std::mem::take(&mut self.file.pending));
        pending.retain(|n, p| pinned.get(n).is_none_or(|q| q.digest != p.digest));
        self.file.pinned = pinned;
        self.file.pending = pending;
    }

    /// Whether a call of `tool` may go; `Err` says why not. Before anything is pinned (a first
    /// use whose listing has not come yet), trust on first use covers calls too.
    pub fn check_call(&self, tool: &str) -> Result<(), String> {
        if self.first_use && self.file.pinned.is_empty() {
            return Ok(());
        }
        self.callable(tool).map_err(|c| match c {
            Change::New => format!("{tool} is new: it is not among the pinned tools"),
            c => format!("{tool}: {}", c.summary()),
        })
    }

    /// The lines to tell the person after a listing page (`was_first`: the page was judged as
    /// a first use): the first-use record, and what is held back.
    pub fn notices(&self, was_first: bool, asks: &[(String, Change)]) -> Vec<String> {
        let mut lines = Vec::new();
        if was_first && !self.first_use {
            lines.push(format!(
                "pins: first use of {}: pinned {} tools in {} (trust on first use)",
                self.file.endpoint,
                self.file.pinned.len(),
                self.path().display()
            ));
        }
        if !asks.is_empty() {
            let names: Vec<&str> = asks.iter().map(|(n, _)| n.as_str()).collect();
            lines.push(format!(
                "pins: withheld {} new or changed tools ({}) until you approve them: in your \
                 client, or with `alibridge tools {} --approve NAME`",
                asks.len(),
                names.join(", "),
                self.file.endpoint
            ));
        }
        lines
    }

    pub fn pinned_count(&self) -> usize {
        self.file.pinned.len()
    }

    pub fn path(&self) -> PathBuf {
        self.store.path(&self.file.endpoint, &self.file.identity)
    }
}

/// The person's question about held-back tools (form-mode `elicitation/create` with id `id`):
/// each tool and what changed; accepting with `confirm` ticked pins them. The bridge and the
/// proxy ask the same question.
pub fn question(
    id: &crate::jsonrpc::Id,
    endpoint: &str,
    asks: &[(String, Change)],
) -> bytes::Bytes {
    let message = format!(
        "alibridge: the tools of {endpoint} changed since they were pinned. These are held back \
         until you approve them:\n{}\nTick \"confirm\" and accept to trust these definitions \
         from now on; decline to keep them held back in this session.",
        describe(asks)
    );
    super::confirm::yes_no(id, &message, "Trust these tool definitions?")
}

/// The error answering a listing that cannot be pinned (the listing is not relayed).
pub fn listing_refusal(id: &crate::jsonrpc::Id, e: &PinError) -> bytes::Bytes {
    crate::jsonrpc::error_response(
        Some(id),
        super::REFUSAL_CODE,
        &format!("alibridge held back the tool list: {e}"),
        Some(serde_json::json!({"alibridge": {"kind": "policy", "rule": "--pin-tools"}})),
    )
}

#[cfg(test)]
mod tests;
