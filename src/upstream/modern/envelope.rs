//! Translation for a client of the `initialize` era: what it said in its `initialize`, the
//! handshake answered here from the `server/discover` result, and the three `_meta` envelope
//! keys (protocol version, client info, capabilities) every request it sends gains.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Map, Value};
use tracing::info;

use super::{Modern, MODERN_VERSION};
use crate::jsonrpc::{Id, Message};
use crate::upstream::error::UpstreamError;
use crate::upstream::headers;

/// What a client of the `initialize` era told the bridge in its `initialize`.
pub(super) struct LegacyClient {
    pub(super) client_info: Value,
    pub(super) capabilities: Value,
}

/// Reads `params.protocolVersion`, `params.clientInfo` and `params.capabilities` of an
/// `initialize` request (missing parts become `{}` / null).
pub fn initialize_params(bytes: &[u8]) -> (Value, Value, Value) {
    let v: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    let p = v.get("params").cloned().unwrap_or(Value::Null);
    (
        p.get("protocolVersion").cloned().unwrap_or(Value::Null),
        p.get("clientInfo").cloned().unwrap_or_else(|| json!({})),
        p.get("capabilities").cloned().unwrap_or_else(|| json!({})),
    )
}

impl Modern {
    /// Answers `initialize` for a client of the `initialize` era from the discover result: its
    /// own protocol version, the server's capabilities, identity and instructions.
    pub(super) async fn answer_initialize(
        &self,
        msg: &Message,
        id: &Id,
    ) -> Result<(), UpstreamError> {
        let (version, client_info, capabilities) = initialize_params(&msg.bytes);
        let name = client_info.get("name").cloned().unwrap_or(Value::Null);
        info!(client = %name, client_version = %version, server_version = %self.version,
              "protocol: the client speaks the initialize era, the server the modern era \
               ({MODERN_VERSION}); translating");
        *self.client.lock().unwrap() = Some(Arc::new(LegacyClient {
            client_info,
            capabilities,
        }));
        let d = &self.discover;
        let server_info = d
            .pointer("/_meta/io.modelcontextprotocol~1serverInfo")
            .cloned()
            .unwrap_or_else(
                || json!({"name": self.url.host_str().unwrap_or("server"), "version": "unknown"}),
            );
        let mut result = json!({
            "protocolVersion": version,
            "capabilities": d.get("capabilities").cloned().unwrap_or_else(|| json!({})),
            "serverInfo": server_info,
        });
        if let Some(i) = d.get("instructions").filter(|i| i.is_string()) {
            result["instructions"] = i.clone();
        }
        self.answer(id, result).await
    }

    pub(super) async fn answer(&self, id: &Id, result: Value) -> Result<(), UpstreamError> {
        let line = format!(
            r#"{{"jsonrpc":"2.0","id":{},"result":{}}}"#,
            id.as_json(),
            result
        );
        let m = Message::parse(Bytes::from(line)).expect("a response the bridge built");
        self.out.deliver(m).await;
        Ok(())
    }
}

/// The three envelope keys for a translated client.
pub(super) fn meta_of(client: &LegacyClient, version: &str) -> Value {
    json!({
        headers::META_PROTOCOL_VERSION: version,
        headers::META_CLIENT_INFO: client.client_info,
        headers::META_CLIENT_CAPABILITIES: client.capabilities,
    })
}

/// The client's request with the envelope keys added to its `_meta` (kept keys, such as
/// `progressToken`, survive; keys the client set itself win). `None` if `params` is not an
/// object.
pub(super) fn with_meta(bytes: &[u8], client: &LegacyClient, version: &str) -> Option<Bytes> {
    let mut msg: Map<String, Value> = serde_json::from_slice(bytes).ok()?;
    let params = msg
        .entry("params")
        .or_insert_with(|| Value::Object(Map::new()));
    let params = params.as_object_mut()?;
    let meta = params
        .entry("_meta")
        .or_insert_with(|| Value::Object(Map::new()));
    let meta = meta.as_object_mut()?;
    if let Value::Object(envelope) = meta_of(client, version) {
        for (k, v) in envelope {
            meta.entry(k).or_insert(v);
        }
    }
    serde_json::to_vec(&msg).ok().map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> LegacyClient {
        LegacyClient {
            client_info: json!({"name":"c","version":"1"}),
            capabilities: json!({"elicitation":{}}),
        }
    }

    #[test]
    fn meta_is_added_beside_the_clients_own_keys() {
        let b = with_meta(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{"progressToken":"p1"}}}"#,
            &client(),
            "2026-07-28",
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&b).unwrap();
        let meta = &v["params"]["_meta"];
        assert_eq!(meta["progressToken"], "p1");
        assert_eq!(meta[headers::META_PROTOCOL_VERSION], "2026-07-28");
        assert_eq!(meta[headers::META_CLIENT_INFO]["name"], "c");
        assert_eq!(
            meta[headers::META_CLIENT_CAPABILITIES],
            json!({"elicitation":{}})
        );
        let b = with_meta(
            br#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
            &client(),
            "v",
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["params"]["_meta"][headers::META_PROTOCOL_VERSION], "v");
        assert!(with_meta(br#"{"id":3,"method":"x","params":[1]}"#, &client(), "v").is_none());
    }
}
