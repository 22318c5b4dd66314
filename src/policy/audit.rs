//! `--audit-log PATH`: one JSON line per `tools/call`, appended to a file created `0600`.
//!
//! When the file would grow past `--audit-log-max-size`, it is renamed to `PATH.1` (replacing
//! the previous one) and a new file is started: at most twice the cap on disk. A write that
//! fails is reported on stderr once (and at debug level every time) and never stops the relay:
//! the call it describes has already been decided.
//!
//! Lines are written synchronously as each call ends, before its answer reaches the client, so
//! whoever sees the answer can find its line. One line is a few hundred bytes.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// Where the audit log goes (`--audit-log`, `--audit-log-max-size`).
#[derive(Debug, Clone)]
pub struct AuditTarget {
    pub path: PathBuf,
    pub max_bytes: u64,
}

/// Why the file at `--audit-log` cannot be the audit log. Each message names the path, says
/// what is wrong and what to do, so it is shown as it is (start-up: a usage error, exit 2;
/// rollover: the once-only warning).
#[derive(Debug, thiserror::Error)]
pub enum AuditFileError {
    #[error(
        "the audit log {} is a symbolic link; alibridge does not follow links for the audit \
         log: give the real path with --audit-log",
        path.display()
    )]
    Symlink { path: PathBuf },
    #[error(
        "the audit log {} is {what}, not a regular file; give the path of a regular file (or \
         of one to create) with --audit-log",
        path.display()
    )]
    NotAFile { path: PathBuf, what: &'static str },
    #[error(
        "the audit log {} belongs to another user (uid {owner}; alibridge runs as uid {own}); \
         give the path of a file of your own with --audit-log",
        path.display()
    )]
    NotOwned { path: PathBuf, owner: u32, own: u32 },
    #[error(
        "the audit log {} was replaced while alibridge opened it; make sure nothing else \
         writes that path, or give another one with --audit-log",
        path.display()
    )]
    Replaced { path: PathBuf },
    #[error("cannot open the audit log {}: {error}; check --audit-log", path.display())]
    Io { path: PathBuf, error: io::Error },
}

/// The audit log.
pub struct AuditLog {
    path: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
    /// Where the once-only warning goes: the caller's channel to the person at the terminal
    /// (`policy` sits beside `logging` and does not print on its own).
    warn: Warn,
}

/// Tells the person at the terminal about a failure that does not stop the run.
pub type Warn = fn(std::fmt::Arguments<'_>);

struct State {
    file: Option<File>,
    size: u64,
    reported: bool,
}

/// Why a line was not written (reported once, see [`AuditLog::append`]).
enum WriteFailure {
    /// The file could not be (re)opened safely.
    Open(AuditFileError),
    /// Renaming or writing failed (disk full, directory gone, …).
    Io(io::Error),
}

impl From<io::Error> for WriteFailure {
    fn from(e: io::Error) -> Self {
        WriteFailure::Io(e)
    }
}

impl AuditLog {
    /// Opens (creating `0600`, or tightening an existing file to `0600`) the log at `path`,
    /// refusing a symbolic link, anything but a regular file, and a file of another user (see
    /// `open_checked`). A line that cannot be written later is reported once through `warn`.
    pub fn open(path: &Path, max_bytes: u64, warn: Warn) -> Result<AuditLog, AuditFileError> {
        let file = open_checked(path)?;
        let size = file
            .metadata()
            .map_err(|error| AuditFileError::Io {
                path: path.to_path_buf(),
                error,
            })?
            .len();
        Ok(AuditLog {
            path: path.to_path_buf(),
            max_bytes: max_bytes.max(1024),
            state: Mutex::new(State {
                file: Some(file),
                size,
                reported: false,
            }),
            warn,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The rollover file, `PATH.1`.
    pub fn rolled_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".1");
        PathBuf::from(p)
    }

    /// Appends `entry` as one line. Never fails: a failure is reported once, through the
    /// `warn` given to [`AuditLog::open`].
    pub fn append(&self, entry: &Value) {
        let mut line = entry.to_string().into_bytes();
        line.push(b'\n');
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = self.write(&mut st, &line) {
            let why = match e {
                WriteFailure::Open(e) => e.to_string(),
                WriteFailure::Io(e) => {
                    format!("cannot write the audit log {}: {e}", self.path.display())
                }
            };
            tracing::debug!(error = %why, "audit log write failed");
            if !std::mem::replace(&mut st.reported, true) {
                (self.warn)(format_args!(
                    "warning: {why}; tool calls go on without it (reported once)"
                ));
            }
            st.file = None; // reopened on the next line
        }
    }

    fn write(&self, st: &mut State, line: &[u8]) -> Result<(), WriteFailure> {
        if st.file.is_some() && st.size > 0 && st.size + line.len() as u64 > self.max_bytes {
            st.file = None;
            std::fs::rename(&self.path, self.rolled_path())?;
        }
        if st.file.is_none() {
            // The new file after a rollover is opened with the same checks as at start: the
            // path may have been swapped for a link in between.
            let f = open_checked(&self.path).map_err(WriteFailure::Open)?;
            st.size = f.metadata()?.len();
            st.file = Some(f);
        }
        let f = st.file.as_mut().expect("opened above");
        f.write_all(line)?;
        st.size += line.len() as u64;
        Ok(())
    }
}

/// `O_NOFOLLOW` of this target (the crate does not depend on `libc`; values from the libc
/// crate's tables): opening a symbolic link fails instead of opening what it points to. `0`
/// (no flag) where it is not known here; the checks after opening still refuse a link there.
#[cfg(unix)]
const O_NOFOLLOW: i32 = if cfg!(all(
    any(target_os = "linux", target_os = "android"),
    any(target_arch = "aarch64", target_arch = "arm")
)) {
    0x8000
} else if cfg!(all(
    any(target_os = "linux", target_os = "android"),
    any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "riscv64",
        target_arch = "loongarch64",
        target_arch = "s390x"
    )
)) {
    0x20000 // 0o400000
} else if cfg!(any(
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
)) {
    0x0100
} else {
    0
};

/// `FILE_FLAG_OPEN_REPARSE_POINT`: opens a symbolic link (or junction) itself, whose metadata
/// then says it is not a regular file, instead of what it points to.
#[cfg(windows)]
const FILE_FLAG_OPEN_REPARSE_POINT: u32 = 0x0020_0000;

/// Opens the audit log at `path` for appending without ever writing through a symbolic link
/// or into someone else's file: the log records what the agent did, so a link planted at its
/// path must not turn alibridge into a writer of the link's target (a shell profile, another
/// user's file), and a file another user owns could be read or edited behind the person's back.
///
/// 1. The path is looked at without following links (a link, a directory, a pipe, which would
///    block the open, are refused before anything is opened).
/// 2. A missing file is created `0600` with `create_new` (which never follows a link); an
///    existing one is opened with `O_NOFOLLOW` where this target has it.
/// 3. On the opened handle: a regular file, the same file as the path names now (a link
///    swapped in meanwhile is caught even without `O_NOFOLLOW`), owned by this user (Unix),
///    then tightened to `0600`. Nothing is written before all of this holds.
fn open_checked(path: &Path) -> Result<File, AuditFileError> {
    let io_err = |error| AuditFileError::Io {
        path: path.to_path_buf(),
        error,
    };
    match std::fs::symlink_metadata(path) {
        Ok(m) => refuse_kind(path, &m.file_type())?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    let (file, created) = match open_options(true).open(path) {
        Ok(f) => (f, true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            match open_options(false).open(path) {
                Ok(f) => (f, false),
                Err(e) => return Err(failed_open(path, e)),
            }
        }
        Err(e) => return Err(failed_open(path, e)),
    };
    let meta = file.metadata().map_err(io_err)?;
    refuse_kind(path, &meta.file_type())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        match std::fs::symlink_metadata(path) {
            Ok(now) if now.file_type().is_symlink() => {
                return Err(AuditFileError::Symlink {
                    path: path.to_path_buf(),
                })
            }
            Ok(now) if (now.dev(), now.ino()) == (meta.dev(), meta.ino()) => {}
            Ok(_) | Err(_) => {
                return Err(AuditFileError::Replaced {
                    path: path.to_path_buf(),
                })
            }
        }
        check_owner(path, &meta, created)?;
        if meta.permissions().mode() & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(
                crate::private_fs::FILE_MODE,
            ))
            .map_err(io_err)?;
        }
    }
    #[cfg(not(unix))]
    let _ = created; // Windows: files under the user's profile carry its owner-only ACL.
    Ok(file)
}

/// Append-only options: `create_new` (never follows a link), or opening an existing file
/// without following one.
fn open_options(create_new: bool) -> OpenOptions {
    let mut o = OpenOptions::new();
    o.append(true).create_new(create_new);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(crate::private_fs::FILE_MODE)
            .custom_flags(O_NOFOLLOW);
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::OpenOptionsExt;
        o.custom_flags(FILE_FLAG_OPEN_REPARSE_POINT);
    }
    o
}

/// The error for an open that failed: `O_NOFOLLOW` reports a link as an I/O error (`ELOOP`),
/// which says less than naming it.
fn failed_open(path: &Path, error: io::Error) -> AuditFileError {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => AuditFileError::Symlink {
            path: path.to_path_buf(),
        },
        _ => AuditFileError::Io {
            path: path.to_path_buf(),
            error,
        },
    }
}

/// Only a regular file is the audit log.
fn refuse_kind(path: &Path, kind: &std::fs::FileType) -> Result<(), AuditFileError> {
    let what = if kind.is_file() {
        return Ok(());
    } else if kind.is_symlink() {
        return Err(AuditFileError::Symlink {
            path: path.to_path_buf(),
        });
    } else if kind.is_dir() {
        "a directory"
    } else {
        "a device, pipe or socket"
    };
    Err(AuditFileError::NotAFile {
        path: path.to_path_buf(),
        what,
    })
}

/// Refuses a log that another user owns. Without `libc` there is no `geteuid`, so "this user"
/// is the owner of a file alibridge has just created: the log itself when this open created it,
/// else a probe file (see [`own_uid`]).
#[cfg(unix)]
fn check_owner(path: &Path, meta: &std::fs::Metadata, created: bool) -> Result<(), AuditFileError> {
    use std::os::unix::fs::MetadataExt;
    if created {
        let _ = OWN_UID.get_or_init(|| meta.uid());
        return Ok(());
    }
    let own = own_uid(path).map_err(|error| AuditFileError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    if meta.uid() == own {
        Ok(())
    } else {
        Err(AuditFileError::NotOwned {
            path: path.to_path_buf(),
            owner: meta.uid(),
            own,
        })
    }
}

/// The owner of files this process creates, learnt once.
#[cfg(unix)]
static OWN_UID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

/// The owner of a file created (exclusively, then removed) next to `log`, or in the temporary
/// directory when that one cannot be written: next to the log first, since on a network file
/// system the owner seen there (after any id mapping) is the one to compare with.
#[cfg(unix)]
fn own_uid(log: &Path) -> io::Result<u32> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    if let Some(uid) = OWN_UID.get() {
        return Ok(*uid);
    }
    let beside = log
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut last = None;
    for dir in [beside.to_path_buf(), std::env::temp_dir()] {
        let probe = dir.join(format!(
            ".alibridge-owner-probe.{}.{:016x}",
            std::process::id(),
            crate::backoff::random_u64()
        ));
        let opened = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(crate::private_fs::FILE_MODE)
            .open(&probe);
        match opened.and_then(|f| f.metadata()) {
            Ok(m) => {
                let _ = std::fs::remove_file(&probe);
                return Ok(*OWN_UID.get_or_init(|| m.uid()));
            }
            Err(e) => {
                let _ = std::fs::remove_file(&probe);
                last = Some(e);
            }
        }
    }
    Err(io::Error::new(
        last.as_ref().map_or(io::ErrorKind::Other, io::Error::kind),
        format!(
            "cannot tell which user alibridge runs as (no file could be created beside it or \
             in the temporary directory: {})",
            last.map_or_else(String::new, |e| e.to_string())
        ),
    ))
}

/// `2026-01-02T03:04:05.678Z` for `t`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, dd) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    /// Tests check the files; the warning's words are the caller's.
    fn quiet(_: std::fmt::Arguments<'_>) {}

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "alibridge-audit-{name}-{}-{:?}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn appends_lines_privately_and_rolls_over_once() {
        let d = dir("roll");
        let path = d.join("audit.jsonl");
        let log = AuditLog::open(&path, 1024, quiet).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        for i in 0..40 {
            log.append(&json!({"n": i, "pad": "x".repeat(80)}));
        }
        let current = std::fs::read_to_string(&path).unwrap();
        let rolled = std::fs::read_to_string(log.rolled_path()).unwrap();
        assert!(current.len() <= 1024 && rolled.len() <= 1024);
        let last: Value = serde_json::from_str(current.lines().last().unwrap()).unwrap();
        assert_eq!(last["n"], 39);
        for l in current.lines().chain(rolled.lines()) {
            serde_json::from_str::<Value>(l).expect("every line is JSON");
        }
        let first_kept: Value = serde_json::from_str(rolled.lines().next().unwrap()).unwrap();
        assert!(
            first_kept["n"].as_u64().unwrap() > 0,
            "older lines were dropped"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn tightens_an_existing_loose_file_and_survives_failures() {
        use std::os::unix::fs::PermissionsExt;
        let d = dir("loose");
        let path = d.join("audit.jsonl");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let log = AuditLog::open(&path, 1 << 20, quiet).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // The directory goes away: writes fail (reported once) and nothing panics.
        std::fs::remove_dir_all(&d).unwrap();
        log.append(&json!({"a": 1}));
        log.state.lock().unwrap().file = None;
        log.append(&json!({"a": 2}));
        assert!(log.state.lock().unwrap().reported);
    }

    /// A link at the path, to a file or dangling, is refused at start and after a rollover;
    /// nothing is written through it and no target is created.
    #[cfg(unix)]
    #[test]
    fn symbolic_links_are_refused_and_never_written_through() {
        let d = dir("link");
        let target = d.join("victim");
        std::fs::write(&target, "untouched\n").unwrap();
        let link = d.join("audit.jsonl");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = AuditLog::open(&link, 1 << 20, quiet)
            .err()
            .expect("a link is refused");
        assert!(matches!(e, AuditFileError::Symlink { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains(&link.display().to_string())
                && msg.contains("symbolic link")
                && msg.contains("--audit-log"),
            "{msg}"
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched\n");

        let dangling = d.join("dangling.jsonl");
        let nowhere = d.join("created-through-the-link");
        std::os::unix::fs::symlink(&nowhere, &dangling).unwrap();
        let e = AuditLog::open(&dangling, 1 << 20, quiet)
            .err()
            .expect("refused");
        assert!(matches!(e, AuditFileError::Symlink { .. }), "{e:?}");
        assert!(!nowhere.exists(), "a dangling link's target was created");

        // The file is swapped for a link while the log is open: the reopen refuses it.
        let path = d.join("swapped.jsonl");
        let log = AuditLog::open(&path, 1 << 20, quiet).unwrap();
        log.append(&json!({"n": 1}));
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        log.state.lock().unwrap().file = None;
        log.append(&json!({"n": 2}));
        assert!(log.state.lock().unwrap().reported);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched\n");
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// A link planted at `PATH.1` is replaced by the rollover's rename, never written through,
    /// and the new `PATH` is a regular file again.
    #[cfg(unix)]
    #[test]
    fn rollover_never_writes_through_a_planted_link() {
        let d = dir("roll-safe");
        let path = d.join("audit.jsonl");
        let target = d.join("victim");
        std::fs::write(&target, "untouched\n").unwrap();
        let log = AuditLog::open(&path, 1024, quiet).unwrap();
        std::os::unix::fs::symlink(&target, log.rolled_path()).unwrap();
        for i in 0..30 {
            log.append(&json!({"n": i, "pad": "x".repeat(80)}));
        }
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched\n");
        for p in [path.clone(), log.rolled_path()] {
            let meta = std::fs::symlink_metadata(&p).unwrap();
            assert!(meta.file_type().is_file(), "{}", p.display());
        }
        assert!(!log.state.lock().unwrap().reported);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn directories_and_sockets_are_not_audit_logs() {
        let d = dir("kind");
        let e = AuditLog::open(&d, 1 << 20, quiet)
            .err()
            .expect("a directory");
        assert!(
            matches!(
                e,
                AuditFileError::NotAFile {
                    what: "a directory",
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("not a regular file"), "{e}");
        #[cfg(unix)]
        {
            let sock = d.join("audit.sock");
            let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
            let e = AuditLog::open(&sock, 1 << 20, quiet)
                .err()
                .expect("a socket");
            assert!(matches!(e, AuditFileError::NotAFile { .. }), "{e:?}");
        }
        #[cfg(target_os = "linux")]
        {
            let e = AuditLog::open(Path::new("/dev/null"), 1 << 20, quiet)
                .err()
                .expect("a device");
            assert!(e.to_string().contains("a device, pipe or socket"), "{e}");
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// Another user's file is refused, untouched (needs root to make one; skipped otherwise).
    #[cfg(unix)]
    #[test]
    fn another_users_file_is_refused() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let d = dir("owner");
        let mine = d.join("mine.jsonl");
        // Learns this user's uid through an existing file of ours (the probe path).
        std::fs::write(&mine, "").unwrap();
        AuditLog::open(&mine, 1 << 20, quiet).expect("our own existing file");
        let theirs = d.join("theirs.jsonl");
        std::fs::write(&theirs, "theirs\n").unwrap();
        std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o644)).unwrap();
        let own = std::fs::metadata(&mine).unwrap().uid();
        let other = if own == 65_534 { 65_533 } else { 65_534 };
        if std::os::unix::fs::chown(&theirs, Some(other), None).is_err() {
            std::fs::remove_dir_all(&d).unwrap();
            return; // not root: no file of another user can be made here
        }
        let e = AuditLog::open(&theirs, 1 << 20, quiet)
            .err()
            .expect("refused");
        assert!(
            matches!(e, AuditFileError::NotOwned { owner, .. } if owner == other),
            "{e:?}"
        );
        assert!(e.to_string().contains("belongs to another user"), "{e}");
        let meta = std::fs::metadata(&theirs).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o644, "not tightened");
        assert_eq!(std::fs::read_to_string(&theirs).unwrap(), "theirs\n");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(1_767_323_045_678)),
            "2026-01-02T03:04:05.678Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
