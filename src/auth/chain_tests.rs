//! Auth errors through the one renderer ([`crate::logging::error_line`]): each cause appears
//! once, after the context that names what alibridge was doing (style rule R6).

use std::path::PathBuf;

use super::access_key::api::ApiError;
use super::oauth::OAuthError;
use super::transport::Transport;
use super::{AuthError, AuthFailure};
use crate::logging::{error_chain, error_line};

fn io_error() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::PermissionDenied, "io-cause-7f3a")
}

fn json_error() -> serde_json::Error {
    serde_json::from_str::<serde_json::Value>("{not json").unwrap_err()
}

fn once(line: &str, cause: &str) {
    assert_eq!(line.matches(cause).count(), 1, "{cause:?} in {line:?}");
}

#[test]
fn a_token_store_io_failure_names_the_file_then_the_cause_once() {
    let err = AuthError::from(OAuthError::Store {
        action: "write",
        path: PathBuf::from("/tmp/alibridge/oauth/x.json"),
        source: io_error(),
    });
    assert_eq!(
        error_chain(&err),
        [
            "token store: cannot write /tmp/alibridge/oauth/x.json",
            "io-cause-7f3a"
        ]
    );
    once(&error_line(&err), "io-cause-7f3a");
}

#[test]
fn a_malformed_answer_shows_the_parser_finding_once() {
    let json = json_error().to_string();
    let err = AuthError::from(OAuthError::Malformed {
        what: "the token endpoint answered without a usable access_token".into(),
        source: json_error(),
    });
    let line = error_line(&err);
    assert!(line.starts_with("unexpected answer from the authorization server: the token endpoint answered without a usable access_token: "), "{line}");
    once(&line, &json);
}

#[test]
fn an_api_failure_keeps_its_kind_and_shows_each_cause_once() {
    let json = json_error().to_string();
    let err = AuthError::api(
        "could not get an OpenAPI MCP token (check --site-type)".into(),
        ApiError::Malformed {
            host: "openapi-mcp.cn-hangzhou.aliyuncs.com".into(),
            status: 200,
            source: json_error(),
        },
        true,
    );
    assert_eq!(err.failure(), AuthFailure::Protocol);
    assert_eq!(
        error_chain(&err),
        [
            "could not get an OpenAPI MCP token (check --site-type)".to_string(),
            "openapi-mcp.cn-hangzhou.aliyuncs.com sent an answer that is not JSON (HTTP 200)"
                .to_string(),
            json.clone(),
        ]
    );
    once(&error_line(&err), &json);
    once(&error_line(&err), "openapi-mcp.cn-hangzhou.aliyuncs.com");
}

#[test]
fn a_local_command_failure_shows_the_io_error_once() {
    let err = AuthError::Io {
        message: "cannot run --token-command (check the command)".into(),
        source: io_error(),
    };
    assert_eq!(err.failure(), AuthFailure::Config);
    assert_eq!(
        error_line(&err),
        "cannot run --token-command (check the command): io-cause-7f3a"
    );
}

/// A real connection failure: reqwest's own causes are walked once, and neither the URL's
/// query (which may hold a secret) nor a repeated cause shows.
#[tokio::test]
async fn an_unreachable_endpoint_shows_the_network_cause_once_without_the_url() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let client = crate::net::client_builder(std::time::Duration::from_secs(5))
        .no_proxy()
        .build()
        .unwrap();
    let e = client
        .get(format!("http://127.0.0.1:{port}/token?secret=s3cr3t-q"))
        .send()
        .await
        .unwrap_err();
    let cause = crate::net::describe(&e);
    let err = AuthError::from(OAuthError::Unreachable {
        what: format!("token endpoint http://127.0.0.1:{port}/token"),
        source: Transport::from(e),
    });
    let chain = error_chain(&err);
    assert_eq!(chain.len(), 2, "{chain:?}");
    assert_eq!(chain[1], cause);
    let line = error_line(&err);
    assert!(!line.contains("s3cr3t-q"), "{line}");
    let last = cause.rsplit(": ").next().unwrap();
    once(&line, last);
}
