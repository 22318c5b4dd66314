//! `input_required` rounds (MRTR) for a translated client: the requests a result embeds are
//! put to the client under the bridge's own ids (`alibridge-mrtr-<n>`), and its answers go back
//! verbatim with the original request, `requestState` echoed byte for byte.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::sync::oneshot;
use tracing::debug;

use super::envelope::LegacyClient;
use super::Modern;
use crate::jsonrpc::{Id, Message};
use crate::upstream::error::UpstreamError;

/// `input_required` rounds per client request before the bridge gives up on the server.
pub const MAX_INPUT_ROUNDS: u32 = 8;

impl Modern {
    /// Turns one `input_required` round into requests to the client and collects its results
    /// verbatim. The client is asked only for what it declared it can do.
    pub(super) async fn ask_client(
        &self,
        client: &LegacyClient,
        round: &InputRound,
    ) -> Result<Vec<(String, Box<RawValue>)>, UpstreamError> {
        let mut waits = Vec::new();
        for (key, req) in &round.requests {
            let needs = match req.method.as_str() {
                "elicitation/create" => "elicitation",
                "sampling/createMessage" => "sampling",
                "roots/list" => "roots",
                other => {
                    return Err(self.input_error(format!(
                        "the server asked for {other:?}, which alibridge cannot pass to the client"
                    )))
                }
            };
            if client.capabilities.get(needs).is_none() {
                return Err(self.input_error(format!(
                    "the server asked for {} but the client did not declare the {needs:?} \
                     capability, so it was not asked",
                    req.method
                )));
            }
            let id = self.fresh_id("mrtr");
            let params = req
                .params
                .as_ref()
                .map(|p| format!(r#","params":{}"#, p.get()))
                .unwrap_or_default();
            let line = format!(
                r#"{{"jsonrpc":"2.0","id":{},"method":{}{params}}}"#,
                id.as_json(),
                Value::String(req.method.clone())
            );
            let m = Message::parse(Bytes::from(line))
                .map_err(|e| UpstreamError::malformed(&self.shown, e.to_string()))?;
            let (tx, rx) = oneshot::channel();
            self.asked.lock().unwrap().insert(id.clone(), tx);
            debug!(%id, method = %req.method, key = %key, "asking the client for input");
            self.out.deliver(m).await;
            waits.push((key.clone(), id, req.method.clone(), rx));
        }
        let ids: Vec<Id> = waits.iter().map(|w| w.1.clone()).collect();
        let _forget = Forget {
            asked: &self.asked,
            ids,
        };
        let mut out = Vec::new();
        for (key, id, method, rx) in waits {
            let answer = rx
                .await
                .map_err(|_| self.input_error("the client's answer never came".into()))?;
            #[derive(Deserialize)]
            struct Answer {
                result: Option<Box<RawValue>>,
                error: Option<Value>,
            }
            let a: Answer = serde_json::from_slice(&answer.bytes)
                .map_err(|e| self.input_error(format!("the client's answer to {id}: {e}")))?;
            match (a.result, a.error) {
                (Some(r), _) => out.push((key, r)),
                (None, e) => {
                    let why = e
                        .as_ref()
                        .and_then(|e| e.get("message"))
                        .and_then(Value::as_str)
                        .unwrap_or("no result");
                    return Err(self
                        .input_error(format!("the client refused the server's {method}: {why}")));
                }
            }
        }
        Ok(out)
    }

    pub(super) fn input_error(&self, detail: String) -> UpstreamError {
        UpstreamError::InputRequired {
            url: self.shown.clone(),
            detail,
        }
    }
}

/// Removes the bridge's requests to the client from the waiting list however the round ends
/// (answered, failed, or the call cancelled), so late answers are dropped.
struct Forget<'a> {
    asked: &'a Mutex<HashMap<Id, oneshot::Sender<Message>>>,
    ids: Vec<Id>,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        let mut asked = self.asked.lock().unwrap();
        for id in &self.ids {
            asked.remove(id);
        }
    }
}

/// One `input_required` result: the requests it embeds and the state to echo.
pub(super) struct InputRound {
    pub(super) requests: Vec<(String, InputRequest)>,
    /// The exact JSON text of `requestState`, echoed byte for byte.
    pub(super) request_state: Option<String>,
}

pub(super) struct InputRequest {
    pub(super) method: String,
    pub(super) params: Option<Box<RawValue>>,
}

impl InputRound {
    /// `Some` when `answer` is a result with `resultType: "input_required"`.
    pub(super) fn read(answer: &[u8]) -> Option<InputRound> {
        #[derive(Deserialize)]
        struct Resp {
            result: Option<Res>,
        }
        #[derive(Deserialize)]
        struct Res {
            #[serde(rename = "resultType")]
            result_type: Option<String>,
            #[serde(rename = "inputRequests", default)]
            input_requests: Option<serde_json::Map<String, Value>>,
            #[serde(rename = "requestState")]
            request_state: Option<Box<RawValue>>,
        }
        let r: Resp = serde_json::from_slice(answer).ok()?;
        let res = r.result?;
        if res.result_type.as_deref() != Some("input_required") {
            return None;
        }
        let mut requests = Vec::new();
        for (key, req) in res.input_requests.unwrap_or_default() {
            let method = req
                .get("method")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let params = req
                .get("params")
                .and_then(|p| RawValue::from_string(p.to_string()).ok());
            requests.push((key, InputRequest { method, params }));
        }
        Some(InputRound {
            requests,
            request_state: res.request_state.map(|r| r.get().to_string()),
        })
    }
}

/// The retry of a request after an `input_required` round: the same request under `id`, with
/// `inputResponses` (the client's results verbatim) and `requestState` (byte for byte, or
/// none when the server sent none).
pub(super) fn retry_body(
    prev: &[u8],
    id: &Id,
    responses: &[(String, Box<RawValue>)],
    request_state: Option<&str>,
) -> Option<Bytes> {
    let mut msg: Map<String, Value> = serde_json::from_slice(prev).ok()?;
    let mut params = match msg.remove("params") {
        Some(Value::Object(p)) => p,
        None => Map::new(),
        Some(_) => return None,
    };
    params.remove("inputResponses");
    params.remove("requestState");
    msg.insert("id".into(), serde_json::from_str(id.as_json()).ok()?);
    let mut text = serde_json::to_string(&params).ok()?;
    text.pop(); // the closing brace
    let mut sep = if params.is_empty() { "" } else { "," };
    if !responses.is_empty() {
        text.push_str(sep);
        text.push_str(r#""inputResponses":{"#);
        for (i, (k, v)) in responses.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(&serde_json::to_string(k).ok()?);
            text.push(':');
            text.push_str(v.get());
        }
        text.push('}');
        sep = ",";
    }
    if let Some(state) = request_state {
        text.push_str(sep);
        text.push_str(r#""requestState":"#);
        text.push_str(state);
    }
    text.push('}');
    let mut head = serde_json::to_string(&msg).ok()?;
    head.pop();
    let sep = if msg.is_empty() { "" } else { "," };
    Some(Bytes::from(format!(r#"{head}{sep}"params":{text}}}"#)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_echoes_state_byte_for_byte_and_responses_verbatim() {
        let answer = br#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"input_required","inputRequests":{"k":{"method":"elicitation/create","params":{"message":"m"}}},"requestState":"a\u00e9\"b"}}"#;
        let round = InputRound::read(answer).unwrap();
        assert_eq!(round.request_state.as_deref(), Some(r#""a\u00e9\"b""#));
        assert_eq!(round.requests[0].1.method, "elicitation/create");
        let prev = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","requestState":"old","_meta":{"progressToken":7}}}"#;
        let resp =
            RawValue::from_string(r#"{"action":"accept","content":{"n":"é"}}"#.into()).unwrap();
        let id = Id::from_json(r#""alibridge-retry-1""#);
        let b = retry_body(
            prev,
            &id,
            &[("k".into(), resp)],
            round.request_state.as_deref(),
        )
        .unwrap();
        let text = std::str::from_utf8(&b).unwrap();
        assert!(text.contains(r#""requestState":"a\u00e9\"b""#), "{text}");
        assert!(
            text.contains(r#""inputResponses":{"k":{"action":"accept","content":{"n":"é"}}}"#),
            "{text}"
        );
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["id"], "alibridge-retry-1");
        assert_eq!(v["params"]["_meta"]["progressToken"], 7);
        assert_eq!(v["params"]["name"], "t");
        // No state from the server: none in the retry.
        let b = retry_body(prev, &id, &[], None).unwrap();
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert!(v["params"].get("requestState").is_none());
        assert!(InputRound::read(br#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#).is_none());
    }
}
