//! `--auth none`: no credential beyond the static `--header` values (gateways, local servers,
//! servers that take a bearer token the user passes as a header).

use reqwest::header::HeaderMap;

use futures_util::future::BoxFuture;

use super::{AuthError, Credential, Rejection, Retry};

/// Adds nothing and cannot refresh, so a 401/403 is final.
pub struct NoCredential;

impl Credential for NoCredential {
    fn kind(&self) -> crate::auth::CredentialKind {
        crate::auth::CredentialKind::None
    }

    fn apply<'a>(&'a self, _headers: &'a mut HeaderMap) -> BoxFuture<'a, Result<(), AuthError>> {
        Box::pin(async { Ok(()) })
    }

    fn rejected<'a>(&'a self, _r: &'a Rejection) -> BoxFuture<'a, Result<Retry, AuthError>> {
        Box::pin(async { Ok(Retry::No) })
    }
}
