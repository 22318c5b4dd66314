//! [`Transport`]: a failed HTTP exchange as the typed cause of an auth error, and
//! [`read_small`], which reads a credential service's answer and keeps that cause typed.

use crate::net::{BodyError, MAX_SERVICE_ANSWER};

/// A failed HTTP exchange (connect, TLS, timeout, reading the body, an oversized answer),
/// kept as the typed cause of an auth error. A reqwest error shows as
/// [`crate::net::describe`] does: without the URL, which may carry a query string, and with
/// reqwest's own causes ("connection refused") already walked, so it reports no `source` of
/// its own and the chain names each cause once.
#[derive(Debug)]
pub enum Transport {
    Http(reqwest::Error),
    /// The answer passed [`MAX_SERVICE_ANSWER`] bytes.
    TooLarge,
    /// The answer, read whole, is not JSON (the parser's finding is the source).
    NotJson(serde_json::Error),
}

impl Transport {
    /// The underlying reqwest error (`is_timeout`, `is_connect`, …), when there is one.
    pub fn reqwest(&self) -> Option<&reqwest::Error> {
        match self {
            Transport::Http(e) => Some(e),
            Transport::TooLarge | Transport::NotJson(_) => None,
        }
    }
}

impl From<reqwest::Error> for Transport {
    fn from(err: reqwest::Error) -> Transport {
        Transport::Http(err.without_url())
    }
}

impl From<BodyError> for Transport {
    fn from(err: BodyError) -> Transport {
        match err {
            BodyError::TooLarge { .. } => Transport::TooLarge,
            BodyError::Transport(e) => e.into(),
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Http(e) => f.write_str(&crate::net::describe(e)),
            Transport::TooLarge => write!(
                f,
                "the answer is larger than {MAX_SERVICE_ANSWER} bytes, which no credential or \
                 authorization service sends"
            ),
            Transport::NotJson(_) => f.write_str("the answer is not JSON"),
        }
    }
}

impl std::error::Error for Transport {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Transport::NotJson(e) => Some(e),
            Transport::Http(_) | Transport::TooLarge => None,
        }
    }
}

/// [`crate::net::read_small`] with its failure typed: reads an answer of at most
/// [`MAX_SERVICE_ANSWER`] bytes.
pub async fn read_small(resp: reqwest::Response) -> Result<bytes::Bytes, Transport> {
    Ok(crate::net::read_body(resp, MAX_SERVICE_ANSWER).await?)
}

/// [`read_small`], parsed as JSON.
pub async fn read_small_json(resp: reqwest::Response) -> Result<serde_json::Value, Transport> {
    let bytes = read_small(resp).await?;
    serde_json::from_slice(&bytes).map_err(Transport::NotJson)
}
