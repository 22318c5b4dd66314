//! The streaming scan of a message too large to keep: its top-level `id`, in constant memory.

use serde_json::Value;

use super::Id;

/// What a streaming scan of a message too large to keep found out about it.
///
/// Fed the message in pieces of any size ([`HeadScan::feed`]), it follows the JSON nesting one
/// byte at a time and keeps only the top-level `"id"` value (at most [`MAX_ID_LEN`] bytes), so a
/// message of any length costs constant memory, and an `id` placed after a huge `params` is
/// still found. Best effort by design: a key written with escapes (`"\u0069d"`) is not
/// recognised, and on malformed JSON the result may be partial; it is only used to address an
/// error to the right request.
#[derive(Debug, Clone, Default)]
pub struct HeadScan {
    /// Nesting depth: 1 inside the top-level object.
    depth: u32,
    started: bool,
    /// The top level is not an object, or it already ended: nothing more to learn.
    done: bool,
    in_str: bool,
    escaped: bool,
    /// At depth 1, the next string is a key (after `{` or `,`), not a value.
    want_key: bool,
    /// The key being read, when it is short enough to be `id` or `method`.
    key: Vec<u8>,
    key_too_long: bool,
    /// The last complete key at depth 1.
    last_key: LastKey,
    /// Capturing the value of the top-level `id`.
    capturing: bool,
    id_raw: Vec<u8>,
    id_too_long: bool,
    id: Option<Id>,
    has_method: bool,
    has_content: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum LastKey {
    #[default]
    Other,
    Id,
    Method,
}

/// Longest `id` value a scan keeps; a longer one is treated as unreadable.
pub const MAX_ID_LEN: usize = 1024;

impl HeadScan {
    pub fn new() -> Self {
        HeadScan::default()
    }

    /// Scans the next piece of the message.
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.done {
                return;
            }
            self.step(b);
        }
    }

    fn step(&mut self, b: u8) {
        if !self.started {
            if b.is_ascii_whitespace() {
                return;
            }
            self.has_content = true;
            self.started = true;
            if b == b'{' {
                self.depth = 1;
                self.want_key = true;
            } else {
                self.done = true;
            }
            return;
        }
        if self.capturing {
            self.capture(b);
        }
        if self.in_str {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_str = false;
                if self.depth == 1 && self.want_key {
                    self.last_key = match (&self.key[..], self.key_too_long) {
                        (b"id", false) => LastKey::Id,
                        (b"method", false) => LastKey::Method,
                        _ => LastKey::Other,
                    };
                    self.want_key = false;
                    return;
                }
            }
            if self.depth == 1 && self.want_key && self.in_str {
                if self.key.len() < 8 {
                    self.key.push(b);
                } else {
                    self.key_too_long = true;
                }
            }
            return;
        }
        match b {
            b'"' => {
                self.in_str = true;
                if self.depth == 1 && self.want_key {
                    self.key.clear();
                    self.key_too_long = false;
                }
            }
            b'{' | b'[' => self.depth = self.depth.saturating_add(1),
            b'}' | b']' => {
                self.depth = self.depth.saturating_sub(1);
                if self.depth == 0 {
                    self.end_capture();
                    self.done = true;
                }
            }
            b':' if self.depth == 1 => match self.last_key {
                LastKey::Id if self.id.is_none() && !self.id_too_long => {
                    self.capturing = true;
                    self.id_raw.clear();
                }
                LastKey::Method => self.has_method = true,
                _ => {}
            },
            b',' if self.depth == 1 => {
                self.end_capture();
                self.want_key = true;
                self.last_key = LastKey::Other;
            }
            _ => {}
        }
    }

    /// Records one byte of the `id` value (the closing `,`/`}` is dropped by `end_capture`).
    fn capture(&mut self, b: u8) {
        if self.id_raw.len() >= MAX_ID_LEN {
            self.capturing = false;
            self.id_too_long = true;
            self.id_raw = Vec::new();
            return;
        }
        self.id_raw.push(b);
    }

    fn end_capture(&mut self) {
        if !self.capturing {
            return;
        }
        self.capturing = false;
        // The byte that ended the value (`,` or `}`) was captured too.
        self.id_raw.pop();
        let raw = std::mem::take(&mut self.id_raw);
        if let Ok(v) = serde_json::from_slice::<Value>(&raw) {
            if v.is_string() || v.is_number() {
                self.id = Some(Id(v.to_string()));
            }
        }
    }

    /// The top-level `id`, when one was read (strings and numbers only; `null` is none).
    pub fn id(&self) -> Option<&Id> {
        self.id.as_ref()
    }

    /// Whether the message has a top-level `method` (a request or notification, not a response).
    pub fn has_method(&self) -> bool {
        self.has_method
    }

    /// Whether anything but whitespace was fed.
    pub fn has_content(&self) -> bool {
        self.has_content
    }
}

/// The streaming id scan agrees with a full parse on any valid message, however it is split.
#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    use super::*;

    /// Any JSON value, with strings full of the bytes a scanner could trip on (quotes,
    /// backslashes, brackets, non-ASCII) and keys that include `id` and `method`; for the
    /// property tests of every reader that steps over JSON.
    pub(crate) fn arbitrary_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "[a-z\"\\\\{}\\[\\],:\u{e9}\u{1F600} ]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec(("[a-z]{1,6}|id|method", inner), 0..5)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn scan_agrees_with_a_full_parse(
            fields in prop::collection::vec((prop::sample::select(vec!["id", "method", "params", "result", "jsonrpc", "idx"]), arbitrary_json()), 0..6),
            pretty in any::<bool>(),
            cut in prop::collection::vec(1usize..16, 1..6),
        ) {
            let obj = Value::Object(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
            let text = if pretty { serde_json::to_vec_pretty(&obj) } else { serde_json::to_vec(&obj) }.unwrap();
            let mut scan = HeadScan::new();
            let (mut at, mut k) = (0, 0);
            while at < text.len() {
                let n = cut[k % cut.len()].min(text.len() - at);
                scan.feed(&text[at..at + n]);
                at += n;
                k += 1;
            }
            // What a full parse of the same text reads (floats as serde_json reads them back).
            let parsed: Value = serde_json::from_slice(&text).unwrap();
            let expected = parsed.get("id").filter(|v| v.is_string() || v.is_number()).map(|v| Id(v.to_string()));
            prop_assert_eq!(scan.id().cloned(), expected);
            prop_assert_eq!(scan.has_method(), obj.get("method").is_some());
        }
    }
}
