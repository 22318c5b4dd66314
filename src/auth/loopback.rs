//! The loopback redirect target of a browser authorization: a one-purpose HTTP listener on
//! 127.0.0.1, bound *before* the browser opens so the redirect can never miss it. It answers
//! the callback path with a small page, checks `state`, and hands back the code or the error.

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

use crate::auth::secret::Secret;

/// The path the authorization server redirects to.
pub const CALLBACK_PATH: &str = "/oauth/callback";

/// What came back from the browser.
#[derive(Debug)]
pub enum Callback {
    /// The user approved: an authorization code (with the expected `state`).
    Code(Secret),
    /// The server reported an error (`access_denied`, `invalid_client`, …).
    Error {
        error: String,
        description: Option<String>,
    },
}

/// A bound callback listener.
pub struct Listener {
    listener: TcpListener,
    port: u16,
}

impl Listener {
    /// Binds 127.0.0.1 on `port` (0 = any free port). A busy port is an error the caller can
    /// explain; nothing listens beyond loopback.
    pub async fn bind(port: u16) -> std::io::Result<Listener> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let port = listener.local_addr()?.port();
        Ok(Listener { listener, port })
    }

    pub fn redirect_uri(&self) -> String {
        format!("http://127.0.0.1:{}{CALLBACK_PATH}", self.port)
    }

    /// Serves requests until a callback carrying `state` arrives. Callbacks with another state
    /// (a stale tab, a forged link) get an explanatory page and are otherwise ignored.
    pub async fn wait(&self, state: &str) -> std::io::Result<Callback> {
        loop {
            let (mut conn, _) = self.listener.accept().await?;
            let Some(target) = read_request_target(&mut conn).await else {
                continue;
            };
            let (path, query) = target.split_once('?').unwrap_or((&target, ""));
            if path != CALLBACK_PATH {
                respond(
                    &mut conn,
                    404,
                    "Not found",
                    "This address only receives the sign-in redirect.",
                )
                .await;
                continue;
            }
            let params = parse_query(query);
            if params.get("state").map(String::as_str) != Some(state) {
                debug!("ignoring a callback with a wrong or missing state");
                respond(&mut conn, 400, "Stale link", "This sign-in link is not the one alibridge is waiting for. Close this tab and use the latest link.").await;
                continue;
            }
            if let Some(error) = params.get("error") {
                let description = params.get("error_description").cloned();
                let text = format!("Authorization failed: {error}. You can close this tab and return to the terminal.");
                respond(&mut conn, 200, "Authorization failed", &text).await;
                return Ok(Callback::Error {
                    error: error.clone(),
                    description,
                });
            }
            match params.get("code") {
                Some(code) => {
                    respond(&mut conn, 200, "Authorized", "Authorization complete. You can close this tab and return to the terminal.").await;
                    return Ok(Callback::Code(Secret::new(code.clone())));
                }
                None => {
                    respond(
                        &mut conn,
                        400,
                        "Missing code",
                        "The redirect carried neither a code nor an error.",
                    )
                    .await
                }
            }
        }
    }
}

/// Reads the request line of an HTTP/1.x request and returns its target.
async fn read_request_target(conn: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 2048];
    let read = async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
            let n = conn.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Some(())
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .ok()??;
    let text = String::from_utf8_lossy(&buf);
    let mut parts = text.lines().next()?.split_whitespace();
    let (method, target) = (parts.next()?, parts.next()?);
    (method == "GET").then(|| target.to_string())
}

async fn respond(conn: &mut TcpStream, status: u16, title: &str, text: &str) {
    let body = format!(
        "<!doctype html><meta charset=utf-8><title>alibridge: {title}</title>\
         <body style=\"font-family:sans-serif;margin:3em\"><h2>{title}</h2><p>{text}</p></body>"
    );
    let head = format!(
        "HTTP/1.1 {status} {title}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(head.as_bytes()).await;
    let _ = conn.write_all(body.as_bytes()).await;
    let _ = conn.shutdown().await;
}

/// Decodes `a=1&b=x%20y` (`+` is a space, as in form encoding).
pub fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_queries() {
        let q = parse_query("code=a%2Bb&state=s1&error_description=user+said%20no&x");
        assert_eq!(q["code"], "a+b");
        assert_eq!(q["error_description"], "user said no");
        assert_eq!(q["x"], "");
        assert_eq!(parse_query("bad=%zz%")["bad"], "%zz%");
    }

    #[tokio::test]
    async fn returns_the_code_for_the_right_state_only() {
        let l = Listener::bind(0).await.unwrap();
        let addr = l
            .redirect_uri()
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let get = |path: String| {
            let addr = addr.clone();
            async move {
                let mut c = TcpStream::connect(addr).await.unwrap();
                c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                    .await
                    .unwrap();
                let mut s = String::new();
                c.read_to_string(&mut s).await.unwrap();
                s
            }
        };
        let waiter = tokio::spawn(async move { l.wait("good").await.unwrap() });
        assert!(get("/favicon.ico".into()).await.starts_with("HTTP/1.1 404"));
        assert!(get(format!("{CALLBACK_PATH}?code=c&state=bad"))
            .await
            .starts_with("HTTP/1.1 400"));
        assert!(get(format!("{CALLBACK_PATH}?code=c0de&state=good"))
            .await
            .starts_with("HTTP/1.1 200"));
        match waiter.await.unwrap() {
            Callback::Code(c) => assert_eq!(c.expose(), "c0de"),
            other => panic!("{other:?}"),
        }
    }
}
