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
use std::io::Write;
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

/// The audit log.
pub struct AuditLog {
    path: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
}

struct State {
    file: Option<File>,
    size: u64,
    reported: bool,
}

impl AuditLog {
    /// Opens (creating `0600`, or tightening an existing file to `0600`) the log at `path`.
    pub fn open(path: &Path, max_bytes: u64) -> std::io::Result<AuditLog> {
        let file = open_private(path)?;
        let size = file.metadata()?.len();
        Ok(AuditLog {
            path: path.to_path_buf(),
            max_bytes: max_bytes.max(1024),
            state: Mutex::new(State {
                file: Some(file),
                size,
                reported: false,
            }),
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

    /// Appends `entry` as one line. Never fails: a failure is reported once on stderr.
    pub fn append(&self, entry: &Value) {
        let mut line = entry.to_string().into_bytes();
        line.push(b'\n');
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = self.write(&mut st, &line) {
            tracing::debug!(error = %e, "audit log write failed");
            if !std::mem::replace(&mut st.reported, true) {
                eprintln!(
                    "alibridge: warning: cannot write the audit log {}: {e}; tool calls go on \
                     without it (reported once)",
                    self.path.display()
                );
            }
            st.file = None; // reopened on the next line
        }
    }

    fn write(&self, st: &mut State, line: &[u8]) -> std::io::Result<()> {
        if st.file.is_some() && st.size > 0 && st.size + line.len() as u64 > self.max_bytes {
            st.file = None;
            std::fs::rename(&self.path, self.rolled_path())?;
        }
        if st.file.is_none() {
            let f = open_private(&self.path)?;
            st.size = f.metadata()?.len();
            st.file = Some(f);
        }
        let f = st.file.as_mut().expect("opened above");
        f.write_all(line)?;
        st.size += line.len() as u64;
        Ok(())
    }
}

fn open_private(path: &Path) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        o.mode(0o600);
        let f = o.open(path)?;
        let meta = f.metadata()?;
        let mode = meta.permissions().mode() & 0o777;
        // Only regular files are tightened (never a device such as /dev/null).
        if meta.is_file() && mode & 0o077 != 0 {
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(f)
    }
    #[cfg(not(unix))]
    {
        o.open(path)
    }
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
        let log = AuditLog::open(&path, 1024).unwrap();
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
        let log = AuditLog::open(&path, 1 << 20).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // The directory goes away: writes fail (reported once) and nothing panics.
        std::fs::remove_dir_all(&d).unwrap();
        log.append(&json!({"a": 1}));
        log.state.lock().unwrap().file = None;
        log.append(&json!({"a": 2}));
        assert!(log.state.lock().unwrap().reported);
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
