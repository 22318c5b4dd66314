//! Loopback networking for the fakes and the tests:
//!
//! - [`listen`]: a listener bound to port 0 on a loopback address; the kernel picks the port and
//!   the bound listener is handed to whoever serves it (never released and bound again, which
//!   another process could win);
//! - [`serve`]: the one HTTP/1.1 accept loop every fake runs (hyper, a task per connection),
//!   stopped by its kill token: the listener closes and open connections drop mid-flight;
//! - [`read_body`]: a request's whole body, as every fake reads it;
//! - [`ClosedPort`]: a port that refuses connections, held so nobody else takes it;
//! - [`fixed_port`]: a port number for a flag that takes one (`--callback-port`), from outside
//!   the kernel's ephemeral range, so no `bind(0)` or outgoing connection can take it between
//!   the check and the bridge's own bind;
//! - [`http_client`]: a reqwest client that never goes through a system proxy;
//! - [`percent_encode`] and [`random_b64url`]: how the fakes put values in queries and forms,
//!   and make codes and tokens.
//!
//! Included by `examples/` (through the fakes) as well as by the tests.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use hyper::http::request::Parts;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;

/// `127.0.0.1`, where the servers of the tests listen.
pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A listener on `ip`, on a port the kernel picks.
pub async fn listen(ip: IpAddr) -> TcpListener {
    TcpListener::bind((ip, 0))
        .await
        .unwrap_or_else(|e| panic!("bind {ip}:0: {e}"))
}

/// Serves HTTP/1.1 on `listener` with `handler`, one task per connection, until `kill` is
/// cancelled: then the listener is dropped (the port refuses connections) and every open
/// connection is dropped mid-flight, whatever it was doing.
/// The connection a request arrived on, numbered from 1 in accept order (in the request's
/// extensions), so a test can tell which requests shared a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnId(pub u64);

pub fn serve<H, F, B>(listener: TcpListener, kill: CancellationToken, handler: H)
where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        let mut accepted_count = 0u64;
        loop {
            let stream = tokio::select! {
                _ = kill.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
            };
            let (handler, kill) = (handler.clone(), kill.clone());
            accepted_count += 1;
            let conn_id = ConnId(accepted_count);
            tokio::spawn(async move {
                let service = service_fn(move |mut req: Request<Incoming>| {
                    req.extensions_mut().insert(conn_id);
                    let answer = handler(req);
                    async move { Ok::<_, Infallible>(answer.await) }
                });
                let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                tokio::select! {
                    _ = conn => {}
                    _ = kill.cancelled() => {}
                }
            });
        }
    });
}

/// Splits `req` and reads its whole body (one that fails to arrive counts as empty: a fake
/// answers what it got).
pub async fn read_body(req: Request<Incoming>) -> (Parts, Bytes) {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (parts, body)
}

/// A loopback port that refuses connections: bound (so no one else can take it while the test
/// runs) but never listening, so a connect gets "connection refused" at once.
pub struct ClosedPort(TcpSocket);

impl ClosedPort {
    pub fn new() -> ClosedPort {
        let socket = TcpSocket::new_v4().expect("a TCP socket");
        socket
            .bind(SocketAddr::new(LOOPBACK, 0))
            .expect("bind 127.0.0.1:0");
        ClosedPort(socket)
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.0.local_addr().expect("a bound socket")
    }
}

/// A port for tests that must name one before the program under test binds it. It is below
/// the ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`), which the kernel draws from
/// for `bind(0)` and outgoing connections, so only another caller of this function could take
/// it: each call in this process gets a different port (a per-process offset from the pid, then
/// a counter), and one found busy is skipped.
pub fn fixed_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (20_000u16, ephemeral_start.max(20_512));
    let span = u32::from(high - low);
    let base = std::process::id() % span;
    for _ in 0..512 {
        let n = u32::from(NEXT.fetch_add(1, Ordering::Relaxed));
        let port = low + ((base + n * 97) % span) as u16;
        if std::net::TcpListener::bind((LOOPBACK, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below the ephemeral range {low}..{high}");
}

/// A reqwest client builder that never uses a system proxy (the servers it talks to are on
/// loopback), with the TLS provider installed.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy()
}

/// [`http_client_builder`], built.
pub fn http_client() -> reqwest::Client {
    http_client_builder().build().expect("a reqwest client")
}

/// Percent-encodes everything but RFC 3986 unreserved characters: how values travel in queries
/// and form bodies, and what Alibaba Cloud's V2 signature encodes.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// URL-safe base64 (no padding) of `n` random bytes: codes, tokens and client ids the fakes
/// hand out.
pub fn random_b64url(n: usize) -> String {
    use base64::Engine as _;
    use ring::rand::SecureRandom;
    let mut buf = vec![0u8; n];
    ring::rand::SystemRandom::new()
        .fill(&mut buf)
        .expect("system randomness");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}
