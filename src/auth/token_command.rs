//! `--token-command CMD`: runs a command (through the shell) that prints a bearer token, or a
//! JSON object with `access_token` and optional `expires_in` (seconds). The command is run on
//! first use, again shortly before `expires_in` runs out (`--token-refresh-skew`), and again
//! when the server refuses the current token. Its stderr is passed through (prompts, errors of
//! the helper); its stdout is read up to a bound and never logged.

use std::process::Stdio;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use tokio::io::AsyncReadExt;

use super::bearer::header_for;
use super::{AuthError, Credential, Rejection, Retry};

/// Largest output read from the command (tokens are a few KiB at most).
const MAX_OUTPUT: u64 = 64 << 10;
/// How long the command may run (an SSO helper may wait for a person).
const RUN_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest `expires_in` honoured (a year), so peer numbers cannot overflow an `Instant`.
const MAX_EXPIRES_IN: u64 = 365 * 24 * 3600;

pub struct TokenCommand {
    command: String,
    refresh_skew: Duration,
    current: tokio::sync::Mutex<Option<Token>>,
}

struct Token {
    header: HeaderValue,
    expires_at: Option<Instant>,
}

impl TokenCommand {
    pub fn new(command: String, refresh_skew: Duration) -> Self {
        Self {
            command,
            refresh_skew,
            current: tokio::sync::Mutex::new(None),
        }
    }

    async fn run(&self) -> Result<Token, AuthError> {
        let mut cmd = if cfg!(windows) {
            let mut c = tokio::process::Command::new("cmd");
            c.arg("/C").arg(&self.command);
            c
        } else {
            let mut c = tokio::process::Command::new("sh");
            c.arg("-c").arg(&self.command);
            c
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|source| AuthError::Io {
            message: "cannot run --token-command (check the command)".into(),
            source,
        })?;
        let mut stdout = child.stdout.take().expect("piped");
        let outcome = tokio::time::timeout(RUN_TIMEOUT, async {
            let mut out = Vec::new();
            let read = (&mut stdout).take(MAX_OUTPUT).read_to_end(&mut out).await;
            let status = child.wait().await;
            (read.map(|_| out), status)
        })
        .await
        .map_err(|_| {
            AuthError::Network(format!(
                "--token-command did not finish within {} s; run it in a terminal to see why",
                RUN_TIMEOUT.as_secs()
            ))
        })?;
        let (out, status) = outcome;
        let status = status.map_err(|source| AuthError::Io {
            message: "cannot wait for --token-command".into(),
            source,
        })?;
        if !status.success() {
            return Err(AuthError::Denied(format!(
                "--token-command failed ({status}); its messages are above (stderr). Run it in a \
                 terminal to fix it (signed out of the SSO helper? vault locked?)"
            )));
        }
        let out = out.map_err(|source| AuthError::Io {
            message: "cannot read the output of --token-command".into(),
            source,
        })?;
        parse_output(&String::from_utf8_lossy(&out))
    }
}

/// A bare token, or `{"access_token": …, "expires_in": …}`.
fn parse_output(out: &str) -> Result<Token, AuthError> {
    let out = out.trim();
    if out.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(out).map_err(|_| {
            AuthError::Protocol(
                "--token-command printed something that looks like JSON but is not valid; \
                 print a bare token or {\"access_token\": …, \"expires_in\": …}"
                    .into(),
            )
        })?;
        let token = v["access_token"].as_str().ok_or_else(|| {
            AuthError::Protocol(
                "--token-command printed JSON without a string \"access_token\"".into(),
            )
        })?;
        let expires_at = v["expires_in"]
            .as_u64()
            .or_else(|| {
                v["expires_in"]
                    .as_f64()
                    .filter(|f| *f >= 0.0)
                    .map(|f| f as u64)
            })
            .map(|s| Instant::now() + Duration::from_secs(s.min(MAX_EXPIRES_IN)));
        Ok(Token {
            header: header_for(token, "--token-command")?,
            expires_at,
        })
    } else {
        Ok(Token {
            header: header_for(out, "--token-command")?,
            expires_at: None,
        })
    }
}

impl Credential for TokenCommand {
    fn kind(&self) -> crate::auth::CredentialKind {
        crate::auth::CredentialKind::TokenCommand
    }

    fn apply<'a>(&'a self, headers: &'a mut HeaderMap) -> BoxFuture<'a, Result<(), AuthError>> {
        Box::pin(async move {
            // One run at a time: concurrent requests wait for the same fresh token.
            let mut cur = self.current.lock().await;
            let stale = match &*cur {
                None => true,
                Some(t) => t.expires_at.is_some_and(|at| {
                    at.saturating_duration_since(Instant::now()) <= self.refresh_skew
                }),
            };
            if stale {
                *cur = Some(self.run().await?);
            }
            let t = cur.as_ref().expect("set above");
            headers.insert(AUTHORIZATION, t.header.clone());
            Ok(())
        })
    }

    fn rejected<'a>(&'a self, r: &'a Rejection) -> BoxFuture<'a, Result<Retry, AuthError>> {
        Box::pin(async move {
            let mut cur = self.current.lock().await;
            // Another request already replaced the refused token: just retry with the new one.
            if let (Some(t), Some(sent)) = (&*cur, &r.authorization) {
                if t.header != *sent {
                    return Ok(Retry::Once);
                }
            }
            *cur = Some(self.run().await?);
            Ok(Retry::Once)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_forms() {
        let t = parse_output("  abc.def\n").unwrap();
        assert_eq!(t.header, "Bearer abc.def");
        assert!(t.expires_at.is_none());
        let t = parse_output(r#"{"access_token":"tok","expires_in":99999999999999}"#).unwrap();
        assert!(t.expires_at.is_some());
        for bad in [
            "",
            "{",
            r#"{"expires_in":3}"#,
            "a\u{7}b",
            r#"{"access_token":""}"#,
        ] {
            assert!(parse_output(bad).is_err(), "{bad:?}");
        }
    }
}
