//! The `Mcp-Session-Id` the proxy keys its per-session state on: one header, at most
//! [`MAX_SESSION_ID`] bytes of visible ASCII; anything else is refused with HTTP 400 before the
//! proxy stores or forwards anything.

use bytes::Bytes;
use hyper::header::HeaderMap;
use serde_json::json;

use crate::jsonrpc;

/// Longest `Mcp-Session-Id` the proxy keys a session on.
pub const MAX_SESSION_ID: usize = 256;

/// Why the proxy will not key a session on a request's `Mcp-Session-Id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadSessionId {
    #[error("its Mcp-Session-Id header is longer than {MAX_SESSION_ID} bytes")]
    TooLong,
    #[error("its Mcp-Session-Id header holds a character that is not visible ASCII (0x21-0x7E)")]
    NotVisibleAscii,
    #[error("it carries more than one Mcp-Session-Id header")]
    Repeated,
}

/// The `Mcp-Session-Id` of a request (empty when it has none), if the proxy may key a session
/// on it: one header, at most [`MAX_SESSION_ID`] bytes of visible ASCII (what MCP's Streamable
/// HTTP transport allows). Anything else could grow the session table without bound or make
/// two spellings of one session.
pub fn session_id(headers: &HeaderMap) -> Result<String, BadSessionId> {
    let mut values = headers.get_all("mcp-session-id").iter();
    let Some(value) = values.next() else {
        return Ok(String::new());
    };
    if values.next().is_some() {
        return Err(BadSessionId::Repeated);
    }
    let raw = value.as_bytes();
    if raw.len() > MAX_SESSION_ID {
        return Err(BadSessionId::TooLong);
    }
    if !raw.iter().all(|b| (0x21..=0x7E).contains(b)) {
        return Err(BadSessionId::NotVisibleAscii);
    }
    // Checked above: every byte is ASCII.
    Ok(raw.iter().map(|&b| char::from(b)).collect())
}

/// The JSON-RPC error (id `null`) a request with an unusable `Mcp-Session-Id` gets, with HTTP
/// 400.
pub fn session_id_refusal(why: &BadSessionId) -> Bytes {
    jsonrpc::error_response(
        None,
        jsonrpc::code::INVALID_REQUEST,
        &format!(
            "alibridge proxy refused the request: {why}. A session id is one header of at most \
             {MAX_SESSION_ID} visible ASCII characters (0x21-0x7E); nothing was sent to the server"
        ),
        Some(json!({"alibridge": {"kind": "policy", "rule": "session-id"}})),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;
    use serde_json::Value;

    fn headers(sids: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for s in sids {
            h.append("mcp-session-id", HeaderValue::from_bytes(s).unwrap());
        }
        h
    }

    #[test]
    fn session_ids_are_one_short_visible_ascii_header() {
        assert_eq!(session_id(&HeaderMap::new()), Ok(String::new()));
        assert_eq!(session_id(&headers(&[b"a-B_9.~"])), Ok("a-B_9.~".into()));
        let longest = "s".repeat(MAX_SESSION_ID);
        assert_eq!(session_id(&headers(&[longest.as_bytes()])), Ok(longest));
        let long = "s".repeat(MAX_SESSION_ID + 1);
        assert_eq!(
            session_id(&headers(&[long.as_bytes()])),
            Err(BadSessionId::TooLong)
        );
        for bad in [b"a b".as_slice(), b"caf\xe9", b"tab\there"] {
            assert_eq!(
                session_id(&headers(&[bad])),
                Err(BadSessionId::NotVisibleAscii),
                "{bad:?}"
            );
        }
        assert_eq!(
            session_id(&headers(&[b"a", b"b"])),
            Err(BadSessionId::Repeated)
        );
        let v: Value = serde_json::from_slice(&session_id_refusal(&BadSessionId::TooLong)).unwrap();
        assert_eq!(v["id"], Value::Null);
        assert_eq!(v["error"]["data"]["alibridge"]["rule"], "session-id");
    }
}
