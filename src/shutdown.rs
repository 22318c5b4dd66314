//! The signals that end the bridge. The relay takes shutdown as an injected future (as
//! mini-redis's server does), so tests and other commands can supply their own.

use std::future::Future;
use std::io;

use tracing::warn;

/// Completes on SIGINT or SIGTERM (Ctrl-C / Ctrl-Break on Windows). A handler that cannot be
/// installed disables only itself: the other signal still ends the bridge, and a failure never
/// looks like a signal.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = async {
            signal(SignalKind::terminate())?.recv().await;
            Ok(())
        };
        first_signal(("SIGINT", tokio::signal::ctrl_c()), ("SIGTERM", term)).await
    }
    #[cfg(not(unix))]
    {
        first_signal(
            ("Ctrl-C", tokio::signal::ctrl_c()),
            ("none", std::future::pending()),
        )
        .await
    }
}

/// Completes when either source reports a signal. A source that fails (its handler could not
/// be installed) is logged and then never completes, so it neither ends the bridge nor stops
/// the other source from doing so.
pub(crate) async fn first_signal(
    a: (&str, impl Future<Output = io::Result<()>>),
    b: (&str, impl Future<Output = io::Result<()>>),
) {
    tokio::select! {
        () = or_pending(a.0, a.1) => {}
        () = or_pending(b.0, b.1) => {}
    }
}

async fn or_pending(name: &str, source: impl Future<Output = io::Result<()>>) {
    if let Err(e) = source.await {
        warn!(signal = name, error = %e, "cannot listen for this signal; the other one still stops alibridge");
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    async fn failed() -> io::Result<()> {
        Err(io::Error::other("no signal handler"))
    }

    #[test]
    fn a_failed_handler_neither_fires_nor_disables_the_other() {
        // SIGTERM's handler failed: Ctrl-C still ends the bridge.
        assert!(first_signal(("INT", async { Ok(()) }), ("TERM", failed()))
            .now_or_never()
            .is_some());
        assert!(first_signal(("INT", failed()), ("TERM", async { Ok(()) }))
            .now_or_never()
            .is_some());
        // A failure alone is not a signal: the bridge keeps running.
        assert!(
            first_signal(("INT", failed()), ("TERM", std::future::pending()))
                .now_or_never()
                .is_none()
        );
        assert!(first_signal(("INT", failed()), ("TERM", failed()))
            .now_or_never()
            .is_none());
    }
}
