//! The OAuth failures, each with what to do in its message.

/// An OAuth failure, with what to do in the message.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("OAuth discovery failed: {0}")]
    Discovery(String),
    #[error("could not reach {0}")]
    Unreachable(String),
    #[error("{0}")]
    Registration(String),
    #[error("{0}")]
    Callback(String),
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
    #[error("unexpected answer from the authorization server: {0}")]
    Protocol(String),
    #[error("token store: {0}")]
    Store(String),
    /// The brake against sign-in loops; the message says which case it is and what to do.
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
