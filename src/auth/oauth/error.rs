//! The OAuth failures, each with what to do in its message. A failure caused by another error
//! (a file, the network, a JSON body) carries that error as its typed `source` and says only
//! what alibridge was doing: [`crate::logging::error_chain`] prints the cause, once.

use std::path::PathBuf;

use crate::auth::transport::Transport;

/// An OAuth failure, with what to do in the message.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// The server's or authorization server's metadata cannot be used; the text is our own
    /// finding (a mismatched `resource`, no PKCE, plain http), there is no underlying error.
    #[error("OAuth discovery failed: {0}")]
    Discovery(String),
    /// The authorization server the metadata names is not a URL.
    #[error("OAuth discovery failed: authorization server {issuer:?} is not a URL")]
    BadIssuer {
        issuer: String,
        #[source]
        source: url::ParseError,
    },
    /// `what` (an endpoint, with its URL) could not be reached, or its answer not read.
    #[error("could not reach {what}")]
    Unreachable {
        what: String,
        #[source]
        source: Transport,
    },
    /// Dynamic client registration is not possible or was refused; the text is our own advice
    /// built from the server's metadata or its HTTP status (no underlying error).
    #[error("{0}")]
    Registration(String),
    /// The sign-in redirect was refused (our own finding: a wrong issuer, no code).
    #[error("{0}")]
    Callback(String),
    /// The sign-in redirect could not be listened for on `port`.
    #[error("cannot listen on 127.0.0.1:{port} for the sign-in redirect (free the port or pass another --callback-port)")]
    Listen {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    /// Waiting for the redirect failed after listening started.
    #[error("the sign-in redirect listener failed")]
    Redirect(#[source] std::io::Error),
    /// Nothing happened in time; the text says what was waited for and what to do (no
    /// underlying error).
    #[error("{0}")]
    Timeout(String),
    #[error("the sign-in was refused: {error}{}", description.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Denied {
        error: String,
        description: Option<String>,
    },
    #[error("the authorization server refused the request: {error}{} (HTTP {status})", description.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Rejected {
        error: String,
        description: Option<String>,
        status: u16,
    },
    /// An answer that is well-formed but unusable; the text is our own finding (no
    /// underlying error).
    #[error("unexpected answer from the authorization server: {0}")]
    Protocol(String),
    /// An answer that could not be parsed: `what` says whose and what was missing.
    #[error("unexpected answer from the authorization server: {what}")]
    Malformed {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// A token store file or directory could not be used: `action` is what was tried on
    /// `path` ("read", "write", "open the lock", …).
    #[error("token store: cannot {action} {}", path.display())]
    Store {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The OS keychain could not be used: `what` says which sign-in and what to do, `source`
    /// why the keychain failed.
    #[error("token store: {what}")]
    Keychain {
        what: String,
        #[source]
        source: super::store::KeychainError,
    },
    /// The blocking task that runs the token store did not finish (it panicked or was
    /// cancelled at shutdown).
    #[error("token store: the store task did not finish")]
    StoreTask(#[source] tokio::task::JoinError),
    /// The brake against sign-in loops; the message says which case it is and what to do
    /// (our own advice, no underlying error).
    #[error("{0}")]
    NotAgain(String),
}

impl OAuthError {
    pub(super) fn is_invalid_grant(&self) -> bool {
        matches!(self, OAuthError::Rejected { error, .. } if error == "invalid_grant")
    }

    pub(super) fn is_invalid_client(&self) -> bool {
        matches!(self, OAuthError::Rejected { error, .. } | OAuthError::Denied { error, .. }
                 if error == "invalid_client" || error == "unauthorized_client")
    }
}
