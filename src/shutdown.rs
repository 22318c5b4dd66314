//! The signals that end the bridge. The relay takes shutdown as an injected future (as
//! mini-redis's server does), so tests and other commands can supply their own.

/// Completes on SIGINT or SIGTERM (Ctrl-C / Ctrl-Break on Windows).
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
