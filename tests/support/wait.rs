//! Waiting for something a test can observe, with one deadline for the whole suite: polling a
//! condition ([`until`]), or re-checking it each time a fake says its log changed
//! ([`until_notified`]). The deadline only bounds a hang; nothing here measures time.
//!
//! Included by `examples/` (through the fakes) as well as by the tests.

use std::fmt::Display;
use std::time::Duration;

use tokio::sync::Notify;

/// How long anything may take to happen before the test fails instead of hanging.
pub const WAIT: Duration = Duration::from_secs(30);

/// How often [`until`] re-checks: cheap checks (a lock, a small file), so often.
const POLL: Duration = Duration::from_millis(10);

/// Waits until `cond` holds; panics naming `what` after [`WAIT`].
pub async fn until(what: impl Display, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {WAIT:?}: {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until `check` finds something, looking again whenever `changed` is notified (a fake's
/// request log grew); panics naming `what` after [`WAIT`].
pub async fn until_notified<T>(
    changed: &Notify,
    what: impl Display,
    check: impl Fn() -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        // Registered before the check, so a change between the check and the wait is not lost.
        let notified = changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(found) = check() {
            return found;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            panic!("timed out after {WAIT:?}: {what}");
        }
    }
}
