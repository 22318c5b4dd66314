//! Reading a few top-level members of a JSON object that is already known to be valid (a
//! message the relay parsed) without parsing it again: every value is stepped over by its
//! structure (strings to their closing quote, objects and arrays to their matching bracket),
//! never searched for text. The readers that run on every message (the request headers, the
//! span's names) use it; whatever it declines, serde reads.

use std::borrow::Cow;
use std::ops::Range;

/// Where each of `N` wanted members' values is (a byte range), when it is there.
pub type Found<const N: usize> = [Option<Range<usize>>; N];

/// Where the values of `keys` are among the top-level members of the object `text` (byte
/// ranges into `text`; a `null` value is absent, as serde reads an `Option`).
///
/// `None` — and the caller reads `text` with serde, which decides these cases — when `text`
/// is not an object, a key is written with escapes, or one of `keys` comes twice. `text` must
/// be valid JSON; on anything else the answer is unspecified, but never a panic.
pub fn members<const N: usize>(text: &[u8], keys: [&str; N]) -> Option<Found<N>> {
    object_at::<N, 0>(text, 0, keys, None).map(|(found, _, _)| found)
}

/// [`members`] of `text`, and of the object that is the value of `keys[nested.0]` (ranges
/// into `text` too), in one walk: a message's top level and its `params` without stepping
/// over `params` and reading it again. The nested members are all absent when that value is
/// not an object; `None` as for [`members`], at either level.
pub fn members_with<const N: usize, const M: usize>(
    text: &[u8],
    keys: [&str; N],
    nested: (usize, [&str; M]),
) -> Option<(Found<N>, Found<M>)> {
    object_at(text, 0, keys, Some(nested)).map(|(found, inner, _)| (found, inner))
}

/// The walk of the object at `i`: its members named in `keys`, those of the object at
/// `nested`, and where the object ends.
fn object_at<const N: usize, const M: usize>(
    b: &[u8],
    i: usize,
    keys: [&str; N],
    nested: Option<(usize, [&str; M])>,
) -> Option<(Found<N>, Found<M>, usize)> {
    let mut found: Found<N> = std::array::from_fn(|_| None);
    let mut inner: Found<M> = std::array::from_fn(|_| None);
    let mut seen = [false; N];
    let mut i = skip_ws(b, i);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = skip_ws(b, i);
        match b.get(i)? {
            b'}' => return Some((found, inner, i + 1)),
            b',' => {
                i += 1;
                continue;
            }
            b'"' => {}
            _ => return None,
        }
        let (key_end, escaped) = skip_string_at(b, i)?;
        if escaped {
            return None;
        }
        let key = b.get(i + 1..key_end - 1)?;
        i = skip_ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let start = skip_ws(b, i + 1);
        let at = keys.iter().position(|k| k.as_bytes() == key);
        i = match nested {
            Some((n, inner_keys)) if at == Some(n) && b.get(start) == Some(&b'{') => {
                let (members, _, end) = object_at::<M, 0>(b, start, inner_keys, None)?;
                inner = members;
                end
            }
            _ => skip_value(b, start)?,
        };
        let Some(at) = at else {
            continue;
        };
        if std::mem::replace(&mut seen[at], true) {
            return None;
        }
        found[at] = (b.get(start..i)? != b"null").then_some(start..i);
    }
}

/// The text of a raw JSON value that is a string, borrowed when it has no escapes; `None`
/// for any other value.
pub fn string(raw: &[u8]) -> Option<Cow<'_, str>> {
    let inner = raw.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    if memchr::memchr(b'\\', inner).is_none() {
        // Valid JSON has no raw control characters in a string: the bytes are the text.
        return std::str::from_utf8(inner).ok().map(Cow::Borrowed);
    }
    serde_json::from_slice::<String>(raw).ok().map(Cow::Owned)
}

/// The words of a string read eight bytes at a time before a vector search takes over.
const SHORT_WORDS: usize = 2;
const QUOTES: u64 = u64::from_ne_bytes([b'"'; 8]);
const BACKSLASHES: u64 = u64::from_ne_bytes([b'\\'; 8]);

/// The high bit of each byte of `x` that is zero, and perhaps of bytes above the first such
/// one (a borrow runs up): the lowest flag is always a zero byte.
fn zero_byte(x: u64) -> u64 {
    const LOW: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    x.wrapping_sub(LOW) & !x & HIGH
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// The end (one past the closing quote) of the string whose opening quote is at `i`.
fn skip_string(b: &[u8], i: usize) -> Option<usize> {
    skip_string_at(b, i).map(|(end, _)| end)
}

/// [`skip_string`], and whether the string has an escape.
fn skip_string_at(b: &[u8], i: usize) -> Option<(usize, bool)> {
    let mut j = i + 1;
    // Most strings here are keys and short names: eight bytes at a time, for the first
    // few words, costs less than setting up a vector search.
    for _ in 0..SHORT_WORDS {
        let Some(word) = b.get(j..j + 8) else {
            break;
        };
        let word = u64::from_le_bytes(word.try_into().ok()?);
        let found = zero_byte(word ^ QUOTES) | zero_byte(word ^ BACKSLASHES);
        if found != 0 {
            // The lowest flagged byte is exact (the flags above it may not be).
            j += (found.trailing_zeros() / 8) as usize;
            if b[j] == b'"' {
                return Some((j + 1, false));
            }
            // An escape: the loop below steps over it.
            break;
        }
        j += 8;
    }
    let mut escaped = false;
    loop {
        j += memchr::memchr2(b'"', b'\\', b.get(j..)?)?;
        if b[j] == b'"' {
            return Some((j + 1, escaped));
        }
        // A backslash escapes the next byte (`\uXXXX`'s digits need no care).
        escaped = true;
        j += 2;
    }
}

/// The end of the value that starts at `i`.
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match b.get(j)? {
                    b'"' => {
                        j = skip_string(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        // A number, `true`, `false` or `null`: up to the next delimiter.
        _ => Some(
            b[i..]
                .iter()
                .position(|c| matches!(c, b',' | b'}' | b']') || c.is_ascii_whitespace())
                .map_or(b.len(), |n| i + n),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;
    use std::collections::BTreeMap;

    const KEYS: [&str; 4] = ["name", "protocolVersion", "_meta", "arguments"];

    /// What serde reads of `text` for `KEYS` (the last of a repeated key, as a map keeps it).
    fn by_serde(text: &str) -> Option<[Option<String>; 4]> {
        let map: BTreeMap<String, &RawValue> = serde_json::from_str(text).ok()?;
        Some(KEYS.map(|k| {
            map.get(k)
                .map(|r| r.get().to_string())
                .filter(|v| v != "null")
        }))
    }

    fn walked(text: &str) -> Option<[Option<String>; 4]> {
        let found = members(text.as_bytes(), KEYS)?;
        Some(found.map(|r| r.map(|r| text[r].to_string())))
    }

    #[test]
    fn the_walk_reads_what_serde_reads() {
        for text in [
            r#"{"name":"echo","arguments":{"text":"a \"}\" ] {","n":[1,{"x":"}"}]}}"#,
            r#"{ "arguments" : [] , "name" : "e\u0063ho" , "_meta" : { "k" : "v" } }"#,
            r#"{"protocolVersion":"2025-11-25","capabilities":{},"n":-1.5e3,"t":true,"z":null}"#,
            r#"{"_meta":7,"name":null}"#,
            r#"{}"#,
            r#"{"a":"\\","name":"x"}"#,
            "{\n\t\"name\" :\n\"x\"\n}",
        ] {
            assert_eq!(walked(text), by_serde(text), "{text}");
        }
        // Escaped keys and repeated keys are left to serde; only objects have members.
        assert_eq!(walked(r#"{"n\u0061me":"x"}"#), None);
        assert_eq!(walked(r#"{"name":"x","name":"y"}"#), None);
        assert_eq!(walked("[1]"), None);
        assert_eq!(walked("\"name\""), None);
        // A repeated key nobody asked for is not the walk's concern.
        assert_eq!(
            walked(r#"{"x":1,"x":2,"name":"n"}"#),
            Some([Some("\"n\"".into()), None, None, None])
        );
    }

    /// `members_with` against the two-step read it replaces.
    fn nested_agrees(text: &str) {
        let b = text.as_bytes();
        let two_step = members(b, ["method", "params"]).map(|[m, p]| {
            let inner = p
                .clone()
                .filter(|p| b[p.clone()].starts_with(b"{"))
                .map(|p| {
                    members(&b[p.clone()], KEYS)
                        .map(|f| f.map(|r| r.map(|r| r.start + p.start..r.end + p.start)))
                });
            (m, p, inner)
        });
        let one = members_with(b, ["method", "params"], (1, KEYS));
        match (two_step, one) {
            (Some((m, p, None)), Some(([m1, p1], inner))) => {
                assert_eq!((m, p), (m1, p1), "{text}");
                assert_eq!(inner, [None, None, None, None], "{text}");
            }
            (Some((m, p, Some(Some(i)))), Some(([m1, p1], inner))) => {
                assert_eq!((m, p, i), (m1, p1, inner), "{text}");
            }
            (Some((_, _, Some(None))), None) | (None, None) => {}
            (two, one) => panic!("{text}: {two:?} vs {one:?}"),
        }
    }

    #[test]
    fn one_walk_reads_what_two_read() {
        for text in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"},"_meta":{"traceparent":"x"}}}"#,
            r#"{"params":{"name":"a"},"method":"m"}"#,
            r#"{"params":[1,2],"method":"m"}"#,
            r#"{"params":null,"method":"m"}"#,
            r#"{"method":"m"}"#,
            r#"{"params":{"name":"a","name":"b"},"method":"m"}"#,
            r#"{"params":{"n\u0061me":"a"},"method":"m"}"#,
            r#"{"params":{},"params":{"name":"b"},"method":"m"}"#,
        ] {
            nested_agrees(text);
        }
    }

    #[test]
    fn broken_text_never_panics() {
        for text in [
            "",
            "{",
            "{\"",
            "{\"a",
            "{\"a\"",
            "{\"a\":",
            "{\"a\":\"",
            "{\"a\":[",
            "{\"a\":}]",
            "{\"a\":1",
            "{\"a\\",
            "{\"a\":\"\\",
            "{]",
            "{\"a\":]}",
            "{,}",
            "{\"name\":",
        ] {
            let _ = members(text.as_bytes(), KEYS);
        }
    }

    #[test]
    fn strings_are_borrowed_unless_escaped() {
        assert!(matches!(string(br#""echo""#), Some(Cow::Borrowed("echo"))));
        assert_eq!(string(br#""e\u0063ho\n""#).as_deref(), Some("echo\n"));
        assert_eq!(string(b"7"), None);
        assert_eq!(string(b"null"), None);
        assert_eq!(string(b"\""), None);
        assert_eq!(string(br#""\ud800""#), None, "a lone surrogate is not text");
    }

    proptest::proptest! {
        #[test]
        fn the_walk_agrees_with_serde_on_any_object(
            entries in proptest::collection::vec(
                (
                    proptest::sample::select(vec!["name", "protocolVersion", "_meta", "arguments", "x", "na me"]),
                    super::super::head_scan_tests::arbitrary_json(),
                    proptest::sample::select(vec!["", " ", "\n\t "]),
                ),
                0..6,
            )
        ) {
            let mut text = String::from("{");
            for (i, (key, value, ws)) in entries.iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                text.push_str(ws);
                text.push_str(&serde_json::to_string(key).unwrap());
                text.push_str(ws);
                text.push(':');
                text.push_str(ws);
                text.push_str(&serde_json::to_string_pretty(value).unwrap());
            }
            text.push('}');
            let repeated = KEYS.iter().any(|k| {
                entries.iter().filter(|(key, _, _)| key == k).count() > 1
            });
            // The walk declines exactly when a wanted key repeats; otherwise it reads what
            // serde reads.
            match walked(&text) {
                Some(w) => proptest::prop_assert_eq!(Some(w), by_serde(&text), "{}", text),
                None => proptest::prop_assert!(repeated, "declined {}", text),
            }
        }

        #[test]
        fn one_walk_agrees_with_two_on_any_message(
            value in super::super::head_scan_tests::arbitrary_json(),
            name in proptest::sample::select(vec!["echo", "e\\u0063ho"]),
            after in proptest::bool::ANY,
        ) {
            let params = format!(r#"{{"name":"{name}","x":{}}}"#, serde_json::to_string(&value).unwrap());
            let text = if after {
                format!(r#"{{"id":1,"params":{params},"method":"m"}}"#)
            } else {
                format!(r#"{{"id":1,"method":"m","params":{params}}}"#)
            };
            nested_agrees(&text);
            // The generated value as `params` itself (an object or not).
            nested_agrees(&format!(r#"{{"method":"m","params":{}}}"#, serde_json::to_string(&value).unwrap()));
        }

        #[test]
        fn the_walk_survives_any_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = members(&bytes, KEYS);
            let _ = members_with(&bytes, ["params"], (0, KEYS));
            let _ = string(&bytes);
        }
    }
}
