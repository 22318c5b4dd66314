//! `--bearer-token TOKEN`: a token obtained elsewhere (a vault, a company SSO helper), sent as
//! `Authorization: Bearer`. It cannot be refreshed, so a 401/403 is final and says so.

use futures_util::future::BoxFuture;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};

use super::secret::Secret;
use super::{AuthError, Credential, Rejection, Retry};

pub struct BearerToken {
    header: HeaderValue,
}

impl BearerToken {
    pub fn new(token: &Secret) -> Result<Self, AuthError> {
        Ok(Self {
            header: header_for(token.expose(), "--bearer-token (ALIBRIDGE_BEARER_TOKEN)")?,
        })
    }
}

/// `Bearer <token>`, marked sensitive (kept out of debug output); `what` names the source in
/// the error when the token cannot be a header value.
pub(super) fn header_for(token: &str, what: &str) -> Result<HeaderValue, AuthError> {
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::Config(format!("{what} gave an empty token")));
    }
    let mut v = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        AuthError::Config(format!(
            "{what} gave a token with characters a header cannot carry (line breaks, control characters)"
        ))
    })?;
    v.set_sensitive(true);
    Ok(v)
}

impl Credential for BearerToken {
    fn kind(&self) -> crate::auth::CredentialKind {
        crate::auth::CredentialKind::Bearer
    }

    fn apply<'a>(&'a self, headers: &'a mut HeaderMap) -> BoxFuture<'a, Result<(), AuthError>> {
        headers.insert(AUTHORIZATION, self.header.clone());
        Box::pin(async { Ok(()) })
    }

    fn rejected<'a>(&'a self, r: &'a Rejection) -> BoxFuture<'a, Result<Retry, AuthError>> {
        let status = r.status;
        Box::pin(async move {
            Err(AuthError::Denied(format!(
                "the server refused the token from --bearer-token (HTTP {status}); it may have expired: \
                 get a new one and set ALIBRIDGE_BEARER_TOKEN, or use --token-command to fetch \
                 fresh tokens automatically"
            )))
        })
    }
}
