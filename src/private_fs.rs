//! Files that hold secrets or describe the user's cloud activity: the OAuth token store and its
//! lock directory, and the `--log-file`. This module owns how they are made private:
//!
//! - directories are created 0700 and files 0600 (Unix); an existing directory or file with a
//!   looser mode (0755, 0644, …) is tightened, or refused with a message saying what to do when
//!   it cannot be (it belongs to another user);
//! - a file is replaced atomically through a temporary file whose name is unique per process
//!   *and* per call (pid, counter, random), created exclusively, synced, renamed over the
//!   target, and the directory synced: two writers, in one process or several, never write
//!   through the same temporary file, and a crash leaves either the old or the new content.

use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(unix)]
use tracing::{debug, info};

/// Mode of private directories and files (Unix).
pub const DIR_MODE: u32 = 0o700;
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) 0700, or makes an existing `dir` private.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => return tighten(dir, &m, DIR_MODE, |p| fs::set_permissions(dir, p)),
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a directory", dir.display()),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(DIR_MODE);
    }
    b.create(dir)?;
    // Another process may have created it first, with its own idea of the mode.
    let m = fs::metadata(dir)?;
    tighten(dir, &m, DIR_MODE, |p| fs::set_permissions(dir, p))
}

/// Replaces `path` with `bytes`, atomically and privately (see the module docs).
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a file path", path.display()),
        )
    })?;
    create_private_dir(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.{}.{:016x}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        crate::backoff::random_u64()
    ));
    let written = (|| {
        let mut opts = OpenOptions::new();
        // `create_new`: never write through a file (or symlink) someone else put there.
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(FILE_MODE);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir);
    Ok(())
}

/// Opens `path` for appending, creating it 0600, and makes an existing file private.
pub fn open_private_append(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(FILE_MODE);
    }
    let file = opts.open(path)?;
    // Checked on the open handle, so it is this very file that is tightened.
    let m = file.metadata()?;
    tighten(path, &m, FILE_MODE, |p| file.set_permissions(p))?;
    Ok(file)
}

/// Makes the rename durable: without it a crash can lose the new directory entry (Unix; other
/// systems do not sync directories, and a failure here costs durability, not correctness).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        debug!(dir = %dir.display(), error = %e, "could not sync the directory");
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Sets `mode` when `meta` shows group or other permissions; refuses when that fails.
#[cfg(unix)]
fn tighten(
    path: &Path,
    meta: &Metadata,
    mode: u32,
    set: impl FnOnce(fs::Permissions) -> io::Result<()>,
) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let current = meta.permissions().mode() & 0o777;
    if current & 0o077 == 0 {
        return Ok(());
    }
    match set(fs::Permissions::from_mode(mode)) {
        Ok(()) => {
            info!(path = %path.display(), from = %format!("{current:o}"), to = %format!("{mode:o}"),
                  "made a private file or directory readable by its owner only");
            Ok(())
        }
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!(
                "{} is open to other users (mode {current:o}) and could not be made private \
                 ({e}); it may belong to another user. Use a location of your own (e.g. set \
                 ALIBRIDGE_HOME) or run `chmod {mode:o}` on it",
                path.display()
            ),
        )),
    }
}

#[cfg(not(unix))]
fn tighten(
    _: &Path,
    _: &Metadata,
    _: u32,
    _: impl FnOnce(fs::Permissions) -> io::Result<()>,
) -> io::Result<()> {
    // Windows: files under the user's profile inherit its ACL (owner-only by default).
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "alibridge-private-{name}-{}-{:x}",
            std::process::id(),
            crate::backoff::random_u64()
        ));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn concurrent_writers_in_one_process_never_collide() {
        let dir = scratch("race");
        let path = dir.join("record.json");
        let contents: Vec<Vec<u8>> = (0..8u8)
            .map(|i| vec![b'a' + i; 1000 * (usize::from(i) + 1)])
            .collect();
        std::thread::scope(|s| {
            for c in &contents {
                let path = &path;
                s.spawn(move || {
                    for _ in 0..40 {
                        write_private(path, c).expect("every write succeeds");
                    }
                });
            }
        });
        let last = fs::read(&path).unwrap();
        assert!(
            contents.contains(&last),
            "the file is one whole write, never a mix"
        );
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name() != "record.json")
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
        assert_eq!(mode(&path), 0o600);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn loose_directories_and_files_are_tightened() {
        let dir = scratch("loose");
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.join("tokens.json");
        fs::write(&path, b"old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, b"new").unwrap();
        assert_eq!((mode(&dir), mode(&path)), (0o700, 0o600));
        assert_eq!(fs::read(&path).unwrap(), b"new");

        let log = dir.join("alibridge.log");
        fs::write(&log, b"line 1\n").unwrap();
        fs::set_permissions(&log, fs::Permissions::from_mode(0o644)).unwrap();
        let mut f = open_private_append(&log).unwrap();
        f.write_all(b"line 2\n").unwrap();
        assert_eq!(mode(&log), 0o600);
        assert_eq!(fs::read(&log).unwrap(), b"line 1\nline 2\n");

        let fresh = dir.join("sub").join("deeper");
        create_private_dir(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_loose_directory_that_cannot_be_tightened_is_refused_with_advice() {
        // /proc/self is 0555 and its mode cannot be changed, not even by root.
        let e = create_private_dir(Path::new("/proc/self")).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("could not be made private") && msg.contains("ALIBRIDGE_HOME"),
            "{msg}"
        );
        let e = write_private(Path::new("/proc/self/alibridge-test"), b"x").unwrap_err();
        assert!(e.to_string().contains("could not be made private"), "{e}");
    }
}
