//! A canary origin: an HTTP server on a second loopback address (`127.0.0.2`; Linux routes all
//! of 127.0.0.0/8 to `lo`) that records every request it receives and answers each with a
//! harmless `200 {"canary":true}`.
//!
//! Hostile peers point the bridge at it (a redirect `Location`, a legacy `endpoint` event,
//! OAuth metadata, an HTTP proxy setting); the test then proves that nothing secret arrived:
//!
//! ```ignore
//! let canary = Canary::start().await;
//! // … make a hostile server send the bridge to canary.url() …
//! canary.assert_no_secrets(&["the --header value", "the bearer token"]);
//! canary.assert_untouched(); // or: not even one request
//! ```
//!
//! A secret counts as arrived when it appears anywhere in a request: the request line (path,
//! query, or the absolute URL a proxy client sends), any header value, or the body, either
//! verbatim or percent-encoded.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use super::net::percent_encode;
use super::net::{listen, read_body, serve};
use super::wait::until_notified;

/// The canary's default address: a loopback address other than the one servers use.
pub const CANARY_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// One request as the canary received it.
#[derive(Debug, Clone)]
pub struct CanaryRequest {
    pub method: String,
    /// The request target as sent: a path and query, or an absolute URL (proxy clients).
    pub target: String,
    /// Header names and values (values lossily decoded).
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl CanaryRequest {
    /// The header's value, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Where in this request `secret` appears (verbatim or percent-encoded), if anywhere.
    pub fn find(&self, secret: &str) -> Option<String> {
        let forms = [secret.to_string(), percent_encode(secret)];
        let body = String::from_utf8_lossy(&self.body);
        for form in &forms {
            if self.target.contains(form.as_str()) {
                return Some("the request target".into());
            }
            if let Some((n, _)) = self.headers.iter().find(|(_, v)| v.contains(form.as_str())) {
                return Some(format!("header {n}"));
            }
            if body.contains(form.as_str()) {
                return Some("the body".into());
            }
        }
        None
    }
}

/// The running canary. Dropping it stops it.
pub struct Canary {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<CanaryRequest>>>,
    changed: Arc<Notify>,
    kill: CancellationToken,
}

impl Canary {
    /// Starts a canary on `127.0.0.2`, on a free port.
    pub async fn start() -> Canary {
        Self::start_on(CANARY_IP).await
    }

    /// Starts a canary on `ip` (e.g. `127.0.0.1`, for "same host, another port"), free port.
    pub async fn start_on(ip: IpAddr) -> Canary {
        let listener = listen(ip).await;
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let changed = Arc::new(Notify::new());
        let kill = CancellationToken::new();
        let (l, c) = (log.clone(), changed.clone());
        serve(listener, kill.clone(), move |req| {
            let (log, changed) = (l.clone(), c.clone());
            async move { record(&log, &changed, req).await }
        });
        Canary {
            addr,
            log,
            changed,
            kill,
        }
    }

    /// `http://<ip>:<port>` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<CanaryRequest> {
        self.log.lock().unwrap().clone()
    }

    /// Waits (see [`super::wait`]) until at least `n` requests arrived.
    pub async fn wait_for_requests(&self, n: usize) {
        until_notified(
            &self.changed,
            format!("the canary did not receive {n} requests"),
            || (self.log.lock().unwrap().len() >= n).then_some(()),
        )
        .await
    }

    /// Panics if any of `secrets` reached the canary, naming the secret (first characters
    /// only), the request and where in it.
    pub fn assert_no_secrets(&self, secrets: &[&str]) {
        assert!(!secrets.is_empty(), "give the secrets to look for");
        for s in secrets {
            assert!(
                s.len() >= 8,
                "{s:?} is too short to be a meaningful canary value"
            );
        }
        for (i, r) in self.requests().iter().enumerate() {
            for s in secrets {
                if let Some(place) = r.find(s) {
                    panic!(
                        "a secret ({}…) reached the canary at {} in request #{i} ({} {}), in {place}",
                        &s[..4],
                        self.url(),
                        r.method,
                        r.target
                    );
                }
            }
        }
    }

    /// Panics unless the canary received no request at all.
    pub fn assert_untouched(&self) {
        let seen = self.requests();
        assert!(
            seen.is_empty(),
            "{} request(s) reached the canary at {}: {:?}",
            seen.len(),
            self.url(),
            seen.iter()
                .map(|r| format!("{} {}", r.method, r.target))
                .collect::<Vec<_>>()
        );
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        self.kill.cancel();
    }
}

/// Logs one request and answers it with the harmless canary body.
async fn record(
    log: &Mutex<Vec<CanaryRequest>>,
    changed: &Notify,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = read_body(req).await;
    log.lock().unwrap().push(CanaryRequest {
        method: parts.method.to_string(),
        target: parts.uri.to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    });
    changed.notify_waiters();
    let mut r = hyper::Response::new(Full::new(Bytes::from_static(br#"{"canary":true}"#)));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}
