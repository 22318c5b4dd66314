//! Credentials stay with the origin the user named.
//!
//! This module owns the one rule every outgoing HTTP client of alibridge follows: a request that
//! carries credentials (the bearer token, a token minted from AccessKeys, `--header` values, a
//! signed Alibaba Cloud API call) goes only to the origin (scheme, host, port) it was addressed
//! to. A server cannot move it elsewhere:
//!
//! - [`redirect_policy`] is installed on every reqwest client: a redirect is followed only
//!   within the origin of the request's first URL; any other redirect fails the request with a
//!   [`ForeignOrigin::Redirect`] before anything is sent to the new place. (reqwest's own
//!   policy strips only `Authorization`/`Cookie` across hosts, so `X-Api-Key`-style headers,
//!   `x-acs-security-token` and request bodies would travel on.)
//! - the legacy HTTP+SSE transport checks the `endpoint` event with [`same_origin`] and refuses
//!   a foreign one with [`ForeignOrigin::Endpoint`].
//!
//! [`foreign_redirect`] recovers the refusal from the `reqwest::Error` so callers can report it
//! as what it is rather than as a connection failure.

use reqwest::redirect::{Attempt, Policy};
use reqwest::Url;

/// Same-origin redirects followed at most (reqwest's default limit).
const MAX_REDIRECTS: usize = 10;

/// A server tried to send the bridge (and its credentials) to another origin; nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForeignOrigin {
    #[error(
        "{from} answered HTTP {status} redirecting to {to}, another origin; alibridge follows \
         redirects only within the same origin (scheme, host and port), so nothing was sent to \
         {to} and your credentials and --header values stayed with {from}. If {to} is the real \
         endpoint, use its URL directly (and check who runs {from})"
    )]
    Redirect {
        status: u16,
        /// The origin that answered with the redirect.
        from: String,
        /// The origin it pointed to.
        to: String,
    },
    #[error(
        "the HTTP+SSE server at {sse} named {endpoint} as the place to POST messages to (its \
         `endpoint` event), another origin; alibridge sends messages and credentials only to the \
         origin you gave (same scheme, host and port), so nothing was sent to {endpoint}. If \
         that server is really meant, use its URL directly"
    )]
    Endpoint {
        /// The origin of the SSE URL the user gave.
        sse: String,
        /// The origin the server named.
        endpoint: String,
    },
}

/// `scheme://host[:port]` of `url`, the default port left out (as browsers print origins).
pub fn origin_of(url: &Url) -> String {
    match url.origin() {
        o @ url::Origin::Tuple(..) => o.ascii_serialization(),
        url::Origin::Opaque(_) => format!("{}:", url.scheme()),
    }
}

/// Same scheme, host and port (the default port of the scheme counts as given).
pub fn same_origin(a: &Url, b: &Url) -> bool {
    let (oa, ob) = (a.origin(), b.origin());
    oa.is_tuple() && oa == ob
}

/// The redirect policy of every alibridge HTTP client: follow within the first URL's origin
/// (up to `MAX_REDIRECTS`), refuse anything else with [`ForeignOrigin::Redirect`].
pub fn redirect_policy() -> Policy {
    Policy::custom(decide)
}

fn decide(attempt: Attempt<'_>) -> reqwest::redirect::Action {
    // `previous` starts with the URL the request was made for.
    let first = attempt.previous().first().cloned();
    let Some(first) = first else {
        return attempt.stop();
    };
    if !same_origin(&first, attempt.url()) {
        let refusal = ForeignOrigin::Redirect {
            status: attempt.status().as_u16(),
            from: origin_of(attempt.previous().last().unwrap_or(&first)),
            to: origin_of(attempt.url()),
        };
        return attempt.error(refusal);
    }
    if attempt.previous().len() > MAX_REDIRECTS {
        return attempt.error(format!(
            "more than {MAX_REDIRECTS} redirects from {}",
            origin_of(&first)
        ));
    }
    attempt.follow()
}

/// The refused redirect behind a reqwest error, if that is what it is.
pub fn foreign_redirect(err: &reqwest::Error) -> Option<ForeignOrigin> {
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        if let Some(f) = s.downcast_ref::<ForeignOrigin>() {
            return Some(f.clone());
        }
        source = s.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        assert!(same_origin(
            &u("https://a.example/x"),
            &u("https://a.example:443/y?q")
        ));
        assert!(same_origin(
            &u("http://127.0.0.1:80/"),
            &u("http://127.0.0.1/sse")
        ));
        assert!(!same_origin(
            &u("https://a.example/"),
            &u("http://a.example/")
        ));
        assert!(!same_origin(
            &u("https://a.example/"),
            &u("https://b.a.example/")
        ));
        assert!(!same_origin(
            &u("http://127.0.0.1:1/"),
            &u("http://127.0.0.1:2/")
        ));
        assert!(!same_origin(
            &u("http://127.0.0.1:1/"),
            &u("http://127.0.0.2:1/")
        ));
        assert!(!same_origin(
            &u("data:text/plain,x"),
            &u("data:text/plain,x")
        ));
        assert_eq!(
            origin_of(&u("https://u:p@a.example:443/x?t=1")),
            "https://a.example"
        );
        assert_eq!(origin_of(&u("http://127.0.0.2:9/x")), "http://127.0.0.2:9");
    }

    #[test]
    fn refusals_name_both_origins_and_what_to_do() {
        let r = ForeignOrigin::Redirect {
            status: 307,
            from: "http://127.0.0.1:1".into(),
            to: "http://127.0.0.2:2".into(),
        }
        .to_string();
        assert!(
            r.contains("http://127.0.0.1:1 answered HTTP 307")
                && r.contains("redirecting to http://127.0.0.2:2")
                && r.contains("nothing was sent")
                && r.contains("use its URL directly"),
            "{r}"
        );
        let e = ForeignOrigin::Endpoint {
            sse: "https://a.example".into(),
            endpoint: "https://b.example".into(),
        }
        .to_string();
        assert!(
            e.contains("https://a.example") && e.contains("https://b.example"),
            "{e}"
        );
    }
}
