//! The network path to an endpoint, checked from the outside: DNS, TCP and TLS through the
//! proxy in effect, and the server's clock against this machine's.

use std::time::SystemTime;

use url::Url;

use super::{Report, MAX_SKEW, STEP_TIMEOUT};
use crate::net::{client_builder, describe, display_url};

/// DNS, TCP and TLS to `url` (through the proxy in effect), and the server's clock. `false`
/// when a step failed (later steps would only repeat it).
pub(super) async fn check_network(r: &mut Report, url: &Url) -> bool {
    let Some(host) = url.host_str().map(str::to_string) else {
        r.fail(
            "endpoint",
            "the URL has no host",
            "pass a full https:// URL",
        );
        return false;
    };
    let port = url.port_or_known_default().unwrap_or(443);
    // The first hop is the proxy when one applies (reqwest honours the same variables).
    let proxy = proxy_for(url);
    let (hop_host, hop_port, via) = match &proxy {
        Some(p) => (
            p.host_str().unwrap_or_default().to_string(),
            p.port_or_known_default().unwrap_or(80),
            format!(" via proxy {}", display_url(p)),
        ),
        None => (host.clone(), port, String::new()),
    };
    let hop = format!("{hop_host}:{hop_port}");
    let addrs = match tokio::time::timeout(STEP_TIMEOUT, tokio::net::lookup_host(hop.clone())).await
    {
        Ok(Ok(a)) => a.collect::<Vec<_>>(),
        Ok(Err(e)) => {
            r.fail(
                "DNS",
                format!("{hop_host}{via}: {e}"),
                "check the host name, your DNS, or HTTPS_PROXY",
            );
            return false;
        }
        Err(_) => {
            r.fail(
                "DNS",
                format!("{hop_host}{via}: no answer in {STEP_TIMEOUT:?}"),
                "check your DNS",
            );
            return false;
        }
    };
    let shown: Vec<String> = addrs.iter().take(3).map(|a| a.ip().to_string()).collect();
    r.ok("DNS", format!("{hop_host}{via} → {}", shown.join(", ")));
    match tokio::time::timeout(STEP_TIMEOUT, tokio::net::TcpStream::connect(&addrs[..])).await {
        Ok(Ok(_)) => r.ok("TCP", format!("connected to {hop}")),
        Ok(Err(e)) => {
            r.fail(
                "TCP",
                format!("{hop}: {e}"),
                "is the server up? check firewalls and HTTPS_PROXY/NO_PROXY",
            );
            return false;
        }
        Err(_) => {
            r.fail(
                "TCP",
                format!("{hop}: no connection in {STEP_TIMEOUT:?}"),
                "check firewalls and HTTPS_PROXY/NO_PROXY",
            );
            return false;
        }
    }
    // One plain request (no credential): TLS, and the server's clock.
    let client = match client_builder(STEP_TIMEOUT).timeout(STEP_TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            r.fail("TLS", describe(&e), "report this as a bug");
            return false;
        }
    };
    let tls = if url.scheme() == "https" {
        "TLS"
    } else {
        "HTTP"
    };
    match client
        .get(url.clone())
        .header("accept", "text/event-stream, application/json")
        .send()
        .await
    {
        Ok(resp) => {
            r.ok(
                tls,
                format!(
                    "{} answered HTTP {}",
                    display_url(url),
                    resp.status().as_u16()
                ),
            );
            check_clock(r, resp.headers().get(reqwest::header::DATE));
        }
        Err(e) => {
            r.fail(tls, describe(&e), "check the URL, the server's certificate (corporate CAs must be in the system trust store) and HTTPS_PROXY");
            return false;
        }
    }
    true
}

pub(super) fn check_clock(r: &mut Report, date: Option<&reqwest::header::HeaderValue>) {
    let Some(server) = date
        .and_then(|d| d.to_str().ok())
        .and_then(|d| httpdate::parse_http_date(d).ok())
    else {
        r.ok("clock", "the server sent no Date header; skew not measured");
        return;
    };
    let now = SystemTime::now();
    let (skew, ahead) = match now.duration_since(server) {
        Ok(d) => (d, true),
        Err(e) => (e.duration(), false),
    };
    let secs = skew.as_secs();
    let how = format!(
        "{secs} s {} the server",
        if ahead { "ahead of" } else { "behind" }
    );
    if skew > MAX_SKEW {
        r.fail(
            "clock",
            format!("this machine's clock is {how} (signatures fail beyond 15 min)"),
            "set the clock right (turn on automatic time / NTP)",
        );
    } else {
        r.ok("clock", how);
    }
}

/// `HTTPS_PROXY`/`HTTP_PROXY` (either case) for `url`, unless `NO_PROXY` names its host.
pub(super) fn proxy_for(url: &Url) -> Option<Url> {
    let var = |k: &str| {
        std::env::var(k)
            .or_else(|_| std::env::var(k.to_ascii_lowercase()))
            .ok()
            .filter(|v| !v.is_empty())
    };
    let host = url.host_str()?;
    if let Some(no) = var("NO_PROXY") {
        let hit = no.split(',').map(str::trim).any(|n| {
            n == "*"
                || (!n.is_empty()
                    && (host == n.trim_start_matches('.')
                        || host.ends_with(&format!(".{}", n.trim_start_matches('.')))))
        });
        if hit {
            return None;
        }
    }
    let raw = if url.scheme() == "https" {
        var("HTTPS_PROXY")
    } else {
        var("HTTP_PROXY")
    }
    .or_else(|| var("ALL_PROXY"))?;
    Url::parse(&raw)
        .or_else(|_| Url::parse(&format!("http://{raw}")))
        .ok()
}
