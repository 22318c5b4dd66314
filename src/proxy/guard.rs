//! Who may talk to the proxy: the defence against DNS rebinding and cross-site requests from
//! web pages, checked before anything else on every request (including `/health`).
//!
//! A web page cannot choose the `Host` a browser sends: after DNS rebinding it is the attacker's
//! domain name. So a request is served only when
//! - its `Host` (and the authority of an absolute request URI) is one of the proxy's own
//!   addresses: the `--host` value, the address actually bound, `localhost` / `127.0.0.1` /
//!   `[::1]` when that is loopback, any IP literal when bound to all interfaces (`0.0.0.0`,
//!   `::`), or a name given with `--allowed-hosts`; with the port the proxy listens on;
//! - its `Origin`, when present, is `http://` one of those same addresses (a page on another
//!   site, a `file:` page or an opaque `null` origin is refused);
//! - its `Sec-Fetch-Site`, when present, is `same-origin` or `none` (browsers send it on
//!   cross-site requests, including those that carry no `Origin`).
//!
//! MCP clients that are programs (Dify, LangChain, SDKs) send the address they were given and
//! no `Origin`, so they pass.

use std::net::{IpAddr, SocketAddr};

use hyper::header::{HeaderMap, HOST, ORIGIN};
use hyper::http::uri::Authority;

/// The accepted addresses.
#[derive(Debug, Clone)]
pub struct Guard {
    port: u16,
    /// Lower-case host names and IP literals (IPv6 without brackets).
    names: Vec<String>,
    /// Bound to all interfaces: any IP literal is one of ours.
    any_ip: bool,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the request has no Host header")]
    MissingHost,
    #[error(
        "Host {0:?} is not this proxy's address (accepted: {1}); requests addressed to other names \
         are refused to stop DNS rebinding. If clients must use this name, add it with --allowed-hosts"
    )]
    Host(String, String),
    #[error(
        "Origin {0:?} is not this proxy's address (accepted: {1}); requests from web pages of other \
         sites are refused"
    )]
    Origin(String, String),
    #[error(
        "Sec-Fetch-Site {0:?}: a browser sent this request on behalf of another site; refused"
    )]
    CrossSite(String),
}

impl Guard {
    /// `bind_host`: the `--host` value as given; `bound`: the address actually listened on;
    /// `extra`: `--allowed-hosts`.
    pub fn new(bind_host: &str, bound: SocketAddr, extra: &[String]) -> Guard {
        let mut names = Vec::new();
        let mut push = |n: &str| {
            let n = clean(n);
            if !n.is_empty() && !names.contains(&n) {
                names.push(n);
            }
        };
        push(bind_host);
        push(&bound.ip().to_string());
        let ip = bound.ip();
        if ip.is_loopback() || ip.is_unspecified() {
            for n in ["localhost", "127.0.0.1", "::1"] {
                push(n);
            }
        }
        for n in extra {
            push(n);
        }
        Guard {
            port: bound.port(),
            names,
            any_ip: ip.is_unspecified(),
        }
    }

    /// The accepted `host:port` forms, for messages.
    pub fn describe(&self) -> String {
        let mut list: Vec<String> = self
            .names
            .iter()
            .filter(|n| !(self.any_ip && (n.as_str() == "0.0.0.0" || n.as_str() == "::")))
            .map(|n| authority(n, self.port))
            .collect();
        if self.any_ip {
            list.push(format!(
                "any IP address of this machine with port {}",
                self.port
            ));
        }
        list.join(", ")
    }

    /// Checks one request's headers (and the authority of its URI, for absolute-form requests).
    pub fn check(&self, headers: &HeaderMap, uri: Option<&Authority>) -> Result<(), Refusal> {
        let host = headers
            .get(HOST)
            .and_then(|v| v.to_str().ok())
            .ok_or(Refusal::MissingHost)?;
        if !self.accepts_authority(host) {
            return Err(Refusal::Host(shorten(host), self.describe()));
        }
        if let Some(a) = uri {
            if !self.accepts_authority(a.as_str()) {
                return Err(Refusal::Host(shorten(a.as_str()), self.describe()));
            }
        }
        if let Some(origin) = headers.get(ORIGIN) {
            let o = String::from_utf8_lossy(origin.as_bytes()).into_owned();
            if !self.accepts_origin(&o) {
                return Err(Refusal::Origin(shorten(&o), self.describe()));
            }
        }
        if let Some(site) = headers.get("sec-fetch-site") {
            let s = String::from_utf8_lossy(site.as_bytes()).to_ascii_lowercase();
            if s != "same-origin" && s != "none" {
                return Err(Refusal::CrossSite(shorten(&s)));
            }
        }
        Ok(())
    }

    /// `host[:port]` as in a `Host` header.
    fn accepts_authority(&self, a: &str) -> bool {
        let Some((host, port)) = split_authority(a.trim()) else {
            return false;
        };
        port.unwrap_or(80) == self.port && self.accepts_host(host)
    }

    fn accepts_origin(&self, origin: &str) -> bool {
        let Ok(url) = url::Url::parse(origin) else {
            return false;
        };
        url.scheme() == "http"
            && url.path() == "/"
            && url.port_or_known_default() == Some(self.port)
            && url
                .host_str()
                .is_some_and(|h| self.accepts_host(h.trim_start_matches('[').trim_end_matches(']')))
    }

    fn accepts_host(&self, host: &str) -> bool {
        let host = clean(host);
        self.names.contains(&host) || (self.any_ip && host.parse::<IpAddr>().is_ok())
    }
}

/// Lower-case, without IPv6 brackets or a trailing dot.
fn clean(h: &str) -> String {
    h.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// `[::1]:8088` → (`::1`, 8088); `localhost` → (`localhost`, none). `None` when malformed.
fn split_authority(a: &str) -> Option<(&str, Option<u16>)> {
    if a.is_empty() || a.contains(['@', '/', ' ']) {
        return None;
    }
    let (host, port) = if let Some(rest) = a.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        match after {
            "" => (h, None),
            p => (h, Some(p.strip_prefix(':')?)),
        }
    } else {
        match a.split_once(':') {
            Some((h, p)) if !p.contains(':') => (h, Some(p)),
            Some(_) => return None, // an IPv6 literal must be bracketed
            None => (a, None),
        }
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    (!host.is_empty()).then_some((host, port))
}

/// `host:port`, bracketing IPv6.
pub fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Caps an echoed header value (it comes from the client) for messages.
fn shorten(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(120)
        .collect();
    if s.chars().count() > 120 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.insert(
                hyper::header::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn loopback() -> Guard {
        Guard::new("127.0.0.1", "127.0.0.1:8088".parse().unwrap(), &[])
    }

    fn ok(g: &Guard, pairs: &[(&str, &str)]) -> bool {
        g.check(&headers(pairs), None).is_ok()
    }

    #[test]
    fn loopback_accepts_its_own_names_only() {
        let g = loopback();
        for h in [
            "127.0.0.1:8088",
            "localhost:8088",
            "LOCALHOST:8088",
            "[::1]:8088",
        ] {
            assert!(ok(&g, &[("host", h)]), "{h}");
        }
        for h in [
            "evil.example:8088",
            "127.0.0.1",
            "127.0.0.1:8089",
            "localhost.evil.example:8088",
            "10.0.0.5:8088",
            "user@127.0.0.1:8088",
            "::1:8088",
        ] {
            assert!(
                matches!(
                    g.check(&headers(&[("host", h)]), None),
                    Err(Refusal::Host(..))
                ),
                "{h}"
            );
        }
        assert_eq!(g.check(&headers(&[]), None), Err(Refusal::MissingHost));
    }

    #[test]
    fn origin_must_be_the_proxy_itself() {
        let g = loopback();
        let host = ("host", "127.0.0.1:8088");
        assert!(ok(&g, &[host, ("origin", "http://127.0.0.1:8088")]));
        assert!(ok(&g, &[host, ("origin", "http://localhost:8088")]));
        for o in [
            "http://evil.example",
            "http://evil.example:8088",
            "https://127.0.0.1:8088",
            "http://127.0.0.1:3000",
            "null",
            "file://",
        ] {
            assert!(
                matches!(
                    g.check(&headers(&[host, ("origin", o)]), None),
                    Err(Refusal::Origin(..))
                ),
                "{o}"
            );
        }
    }

    #[test]
    fn cross_site_browser_requests_are_refused() {
        let g = loopback();
        let host = ("host", "127.0.0.1:8088");
        assert!(ok(&g, &[host, ("sec-fetch-site", "same-origin")]));
        assert!(ok(&g, &[host, ("sec-fetch-site", "none")]));
        assert!(!ok(&g, &[host, ("sec-fetch-site", "cross-site")]));
        assert!(!ok(&g, &[host, ("sec-fetch-site", "same-site")]));
    }

    #[test]
    fn wildcard_bind_accepts_ip_literals_and_listed_names() {
        let g = Guard::new(
            "0.0.0.0",
            "0.0.0.0:80".parse().unwrap(),
            &["host.docker.internal".into()],
        );
        assert!(ok(&g, &[("host", "172.17.0.1")]), "port 80 may be omitted");
        assert!(ok(&g, &[("host", "192.168.1.9:80")]));
        assert!(ok(&g, &[("host", "host.docker.internal")]));
        assert!(ok(&g, &[("host", "localhost:80")]));
        assert!(!ok(&g, &[("host", "rebind.evil.example")]));
        assert!(g.describe().contains("any IP address"), "{}", g.describe());
    }

    #[test]
    fn specific_address_accepts_that_address() {
        let g = Guard::new("172.17.0.1", "172.17.0.1:8088".parse().unwrap(), &[]);
        assert!(ok(&g, &[("host", "172.17.0.1:8088")]));
        assert!(!ok(&g, &[("host", "localhost:8088")]));
        assert!(!ok(&g, &[("host", "172.17.0.2:8088")]));
    }

    #[test]
    fn absolute_uri_authority_is_checked_too() {
        let g = loopback();
        let a: Authority = "evil.example:8088".parse().unwrap();
        assert!(g
            .check(&headers(&[("host", "127.0.0.1:8088")]), Some(&a))
            .is_err());
    }
}
