//! The credential layer: how the bridge proves who it is to the upstream.
//!
//! Every credential kind (none, OAuth, Alibaba Cloud AccessKey, …) is one submodule behind the
//! [`Credential`] trait. The transports never look inside a credential: they ask it to
//! decorate each outgoing request, and tell it when the upstream rejected one (401/403) so it
//! can refresh and let the transport retry that request once.

pub mod none;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use reqwest::header::HeaderMap;

use crate::cli::AuthMode;

/// A boxed future, so [`Credential`] stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the upstream said when it refused a request.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// 401 or 403.
    pub status: u16,
    /// The `WWW-Authenticate` header, if any (OAuth discovery and step-up read it).
    pub www_authenticate: Option<String>,
}

/// Whether a rejected request is worth sending once more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The credential changed (refreshed, re-minted): retry the request once.
    Once,
    /// Nothing changed; the rejection stands.
    No,
}

/// A credential failure the user must act on. The message says what to do.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct AuthError {
    pub message: String,
}

/// One way of authenticating upstream requests.
pub trait Credential: Send + Sync {
    /// Short name for logs and `status` (`none`, `oauth`, `ak`).
    fn name(&self) -> &'static str;

    /// Adds this credential's headers (e.g. `Authorization`) to an outgoing request. May
    /// refresh first when the current token is about to expire.
    fn apply<'a>(&'a self, headers: &'a mut HeaderMap) -> BoxFuture<'a, Result<(), AuthError>>;

    /// Called when the upstream answered 401 or 403. Returns [`Retry::Once`] when the
    /// credential has changed so resending makes sense.
    fn rejected<'a>(&'a self, rejection: &'a Rejection) -> BoxFuture<'a, Result<Retry, AuthError>>;
}

/// Builds the credential selected by `--auth`.
pub fn from_mode(mode: AuthMode) -> Arc<dyn Credential> {
    match mode {
        AuthMode::None => Arc::new(none::NoCredential),
    }
}
