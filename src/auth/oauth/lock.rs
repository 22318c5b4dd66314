//! A per-server lock across processes, so that when a desktop client starts several bridges at
//! once exactly one runs the sign-in (one browser tab) and one refreshes a token; the others
//! wait, then reuse what it stored. It is an OS file lock (`flock`/`LockFileEx` through std),
//! so a holder that dies releases it and a waiter takes over. Works on Linux, macOS, Windows.

use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use super::store::create_private_dir;
use super::OAuthError;

/// Held while signing in or refreshing; released on drop.
pub struct ServerLock {
    _file: File,
}

/// How often a waiter retries.
const POLL: Duration = Duration::from_millis(100);

impl ServerLock {
    /// Takes the lock for `key`, waiting up to `timeout` for another process to finish.
    pub async fn acquire(
        home: &Path,
        key: &str,
        timeout: Duration,
    ) -> Result<ServerLock, OAuthError> {
        let dir = home.join("locks");
        create_private_dir(&dir)?;
        let path = dir.join(format!("{key}.lock"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| OAuthError::Store {
                action: "open the lock",
                path: path.to_path_buf(),
                source: e,
            })?;
        // No deadline when `timeout` is too large to add (it then cannot end anyway).
        let deadline = Instant::now().checked_add(timeout);
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(ServerLock { _file: file }),
                Err(std::fs::TryLockError::WouldBlock)
                    if deadline.is_none_or(|d| Instant::now() < d) =>
                {
                    tokio::time::sleep(POLL).await
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(OAuthError::Timeout(format!(
                        "another alibridge process has been signing in to this server for over {} s; finish or cancel that sign-in",
                        timeout.as_secs()
                    )))
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(OAuthError::Store {
                        action: "lock",
                        path: path.to_path_buf(),
                        source: e,
                    })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn second_holder_waits_until_the_first_releases() {
        let home = std::env::temp_dir().join(format!("alibridge-lock-{}", std::process::id()));
        let first = ServerLock::acquire(&home, "k", Duration::from_secs(1))
            .await
            .unwrap();
        let err = ServerLock::acquire(&home, "k", Duration::from_millis(200))
            .await
            .err()
            .unwrap();
        assert!(matches!(err, OAuthError::Timeout(_)));
        drop(first);
        assert!(ServerLock::acquire(&home, "k", Duration::from_secs(1))
            .await
            .is_ok());
        let _ = std::fs::remove_dir_all(home);
    }
}
