//! The loopback redirect target of a browser authorization: a one-purpose HTTP listener on
//! 127.0.0.1, bound *before* the browser opens so the redirect can never miss it. It answers
//! the callback path with a small page, checks `state` (and whatever else the caller checks,
//! such as RFC 9207 `iss`), and hands back the code or the error. Nothing a request carries is
//! echoed into the page unescaped.

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
    /// The user approved: an authorization code (with the expected `state`), and the RFC 9207
    /// `iss` of the server that issued it, when it said.
    Code { code: Secret, iss: Option<String> },
    /// The server reported an error (`access_denied`, `invalid_client`, …).
    Error {
        error: String,
        description: Option<String>,
        iss: Option<String>,
    },
    /// The caller's check refused an otherwise well-formed callback; the reason, for the user.
    Refused(String),
}

impl Callback {
    /// Reads a callback's query parameters (`state` already checked).
    pub fn from_params(params: &HashMap<String, String>) -> Option<Callback> {
        let iss = params.get("iss").cloned();
        if let Some(error) = params.get("error") {
            return Some(Callback::Error {
                error: error.clone(),
                description: params.get("error_description").cloned(),
                iss,
            });
        }
        let code = params.get("code")?;
        Some(Callback::Code {
            code: Secret::new(code.clone()),
            iss,
        })
    }
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
    /// (a stale tab, a forged link) get an explanatory page and are otherwise ignored. `check`
    /// may refuse the callback (its message is shown on the page and returned as
    /// [`Callback::Refused`]).
    pub async fn wait(
        &self,
        state: &str,
        check: impl Fn(&Callback) -> Result<(), String>,
    ) -> std::io::Result<Callback> {
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
            let Some(callback) = Callback::from_params(&params) else {
                respond(
                    &mut conn,
                    400,
                    "Missing code",
                    "The redirect carried neither a code nor an error.",
                )
                .await;
                continue;
            };
            if let Err(why) = check(&callback) {
                let text =
                    format!("alibridge refused this sign-in: {why}. You can close this tab.");
                respond(&mut conn, 400, "Sign-in refused", &text).await;
                return Ok(Callback::Refused(why));
            }
            match &callback {
                Callback::Error { error, .. } => {
                    let text = format!("Authorization failed: {error}. You can close this tab and return to the terminal.");
                    respond(&mut conn, 200, "Authorization failed", &text).await;
                }
                _ => respond(
                    &mut conn,
                    200,
                    "Authorized",
                    "Authorization complete. You can close this tab and return to the terminal.",
                )
                .await,
            }
            return Ok(callback);
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
    let (title, text) = (html_escape(title), html_escape(text));
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
    url::form_urlencoded::parse(q.as_bytes())
        .into_owned()
        .collect()
}

/// Escapes text for an HTML page (element content and quoted attributes).
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
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
        let waiter = tokio::spawn(async move { l.wait("good", |_| Ok(())).await.unwrap() });
        assert!(get("/favicon.ico".into()).await.starts_with("HTTP/1.1 404"));
        assert!(get(format!("{CALLBACK_PATH}?code=c&state=bad"))
            .await
            .starts_with("HTTP/1.1 400"));
        assert!(get(format!("{CALLBACK_PATH}?code=c0de&state=good"))
            .await
            .starts_with("HTTP/1.1 200"));
        match waiter.await.unwrap() {
            Callback::Code { code, iss } => {
                assert_eq!(code.expose(), "c0de");
                assert_eq!(iss, None);
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn echoed_values_are_escaped_and_a_refused_callback_says_why() {
        let l = Listener::bind(0).await.unwrap();
        let addr = l.redirect_uri()[7..].split('/').next().unwrap().to_string();
        let waiter = tokio::spawn(async move {
            l.wait("s", |cb| match cb {
                Callback::Code { iss, .. } if iss.as_deref() != Some("https://as.example") => {
                    Err(format!("the answer came from issuer {iss:?}"))
                }
                _ => Ok(()),
            })
            .await
            .unwrap()
        });
        let mut c = TcpStream::connect(&addr).await.unwrap();
        let evil = "%3Cscript%3Ealert(1)%3C%2Fscript%3E";
        c.write_all(
            format!("GET {CALLBACK_PATH}?code=c&state=s&iss={evil} HTTP/1.1\r\nHost: x\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        let mut page = String::new();
        c.read_to_string(&mut page).await.unwrap();
        assert!(page.starts_with("HTTP/1.1 400"), "{page}");
        assert!(!page.contains("<script>"), "unescaped: {page}");
        assert!(page.contains("&lt;script&gt;"), "{page}");
        match waiter.await.unwrap() {
            Callback::Refused(why) => assert!(why.contains("<script>"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
