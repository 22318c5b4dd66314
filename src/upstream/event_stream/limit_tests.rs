//! Over-limit events and lines (`--max-message-size`), and the parser against a reference on
//! arbitrary input.

use super::*;
use futures_util::stream;
use futures_util::FutureExt;
use proptest::prelude::*;

/// Runs the parser over `input` cut into pieces of the given sizes (cycled), checking the
/// memory bound after every step. Every poll is ready (the stream is in memory).
fn parse(input: &[u8], sizes: &[usize], limit: usize) -> (Vec<Event>, Option<String>, Option<u64>) {
    let mut parts = Vec::new();
    let (mut at, mut k) = (0, 0);
    while at < input.len() {
        let n = sizes[k % sizes.len()].max(1).min(input.len() - at);
        parts.push(Ok::<_, ()>(Bytes::copy_from_slice(&input[at..at + n])));
        at += n;
        k += 1;
    }
    let biggest = sizes.iter().copied().max().unwrap_or(1);
    let mut s = EventStream::new(stream::iter(parts)).with_limit(limit);
    let mut out = Vec::new();
    while let Some(ev) = s
        .next()
        .now_or_never()
        .expect("in-memory stream is always ready")
    {
        out.push(ev.unwrap());
        assert_bounded(&s, limit, biggest);
    }
    assert_bounded(&s, limit, biggest);
    let (last, retry) = (s.last_event_id().map(str::to_string), s.retry_ms());
    (out, last, retry)
}

fn assert_bounded<S>(s: &EventStream<S>, limit: usize, chunk: usize) {
    assert!(
        s.buf.len() <= limit + FIELD_ROOM + chunk,
        "line buffer {} > bound",
        s.buf.len()
    );
    let held = match &s.data {
        Data::One(b) => b.len(),
        Data::Many(m) => m.capacity(),
        Data::None | Data::Over(..) => 0,
    };
    assert!(
        held <= limit.max(limit + FIELD_ROOM + chunk),
        "event data {held} > bound"
    );
}

/// An obviously correct parser: the whole input at once, lines split eagerly, the limit
/// applied to the joined data afterwards.
fn reference(input: &[u8], limit: usize) -> (Vec<Event>, Option<String>, Option<u64>) {
    let mut lines = Vec::new();
    let (mut i, mut start) = (0, 0);
    while i < input.len() {
        match input[i] {
            b'\n' => {
                lines.push(&input[start..i]);
                i += 1;
                start = i;
            }
            b'\r' => {
                lines.push(&input[start..i]);
                i += 1;
                if input.get(i) == Some(&b'\n') {
                    i += 1;
                }
                start = i;
            }
            _ => i += 1,
        }
    }
    let (mut out, mut last, mut retry) = (Vec::new(), None, None);
    let (mut data, mut lines_n, mut nonempty): (Vec<u8>, usize, bool) = (Vec::new(), 0, false);
    let (mut event, mut event_id): (Option<String>, Option<String>) = (None, None);
    for line in lines {
        if line.is_empty() {
            let (ev, id) = (event.take(), event_id.take());
            let joined = std::mem::take(&mut data);
            let any = std::mem::take(&mut nonempty);
            lines_n = 0;
            if joined.len() > limit {
                if ev.as_deref().is_none_or(|t| t == "message") {
                    let mut scan = HeadScan::new();
                    scan.feed(&joined);
                    out.push(Event {
                        event: ev,
                        id,
                        data: Bytes::new(),
                        too_large: Some(TooLarge {
                            size: joined.len() as u64,
                            id: scan.id().cloned(),
                            has_method: scan.has_method(),
                        }),
                    });
                }
            } else if any {
                out.push(Event {
                    event: ev,
                    id,
                    data: Bytes::from(joined),
                    too_large: None,
                });
            }
            continue;
        }
        if line[0] == b':' {
            continue;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(c) if line.get(c + 1) == Some(&b' ') => (&line[..c], &line[c + 2..]),
            Some(c) => (&line[..c], &line[c + 1..]),
            None => (line, &b""[..]),
        };
        if field == b"data" {
            if lines_n > 0 {
                data.push(b'\n');
            }
            lines_n += 1;
            nonempty |= !value.is_empty();
            data.extend_from_slice(value);
            continue;
        }
        if line.len() > limit + FIELD_ROOM {
            continue;
        }
        match field {
            b"event" => event = Some(String::from_utf8_lossy(value).into_owned()),
            b"id" if !value.contains(&0) => {
                event_id = Some(String::from_utf8_lossy(value).into_owned());
                last = event_id.clone();
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                let n: u128 = std::str::from_utf8(value)
                    .unwrap()
                    .parse()
                    .unwrap_or(u128::MAX);
                retry = Some(n.min(MAX_RETRY_MS as u128) as u64);
            }
            _ => {}
        }
    }
    (out, last, retry)
}

/// Pieces that make SSE-shaped input: fields, terminators of every kind, JSON heads, long
/// runs, and raw garbage bytes.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::sample::select(vec![
            &b"data:"[..], b"data: ", b"id:", b"id: 7", b"event:", b"event: message",
            b"event: endpoint", b"retry:", b"retry: 123", b"retry:99999999999999999999999",
            b":", b": ping", b"\n", b"\r", b"\r\n", b"\n\n", b"\r\r",
            br#"{"jsonrpc":"2.0","id":3,"method":"m","params":{"#, br#""id":"x"}"#, b"}",
            b"\0",
        ]).prop_map(<[u8]>::to_vec),
        1 => (1usize..150, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
        1 => (1usize..150).prop_map(|n| [&b"\ndata: "[..], &vec![b'x'; n]].concat()),
        1 => prop::collection::vec(any::<u8>(), 0..8),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn matches_the_reference_for_any_split(
        input in prop::collection::vec(piece(), 0..60).prop_map(|v| v.concat()),
        sizes in prop::collection::vec(1usize..40, 1..8),
        limit in 1usize..48,
    ) {
        prop_assert_eq!(parse(&input, &sizes, limit), reference(&input, limit));
    }
}

#[test]
fn an_oversized_answer_is_reported_with_its_id_and_the_stream_goes_on() {
    let (head, tail) = (br#"{"jsonrpc":"2.0","result":{"t":""#, br#""},"#);
    let mut input = b"retry: 100000000000000000000000000\nid: 1\ndata: ".to_vec();
    input.extend_from_slice(head);
    input.extend(std::iter::repeat_n(b'x', 10_000));
    input.extend_from_slice(tail);
    input.extend_from_slice(b"\r\ndata: \"id\":41}\r\n\r\nevent: endpoint\ndata: ");
    input.extend(std::iter::repeat_n(b'y', 10_000));
    input.extend_from_slice(b"\n\ndata: {\"id\":42}\n\n");
    let (evs, last, retry) = parse(&input, &[7, 1000, 3], 1000);
    assert_eq!(
        retry,
        Some(MAX_RETRY_MS),
        "a huge retry is clamped, not dropped"
    );
    assert_eq!(last.as_deref(), Some("1"));
    assert_eq!(
        evs.len(),
        2,
        "the oversized endpoint event is dropped: {evs:?}"
    );
    let t = evs[0].too_large.as_ref().expect("too large");
    assert_eq!(t.id, Some(Id::from_json("41")));
    assert!(!t.has_method);
    // The joined data: both lines and the `\n` between them.
    assert_eq!(
        t.size as usize,
        head.len() + 10_000 + tail.len() + 1 + br#""id":41}"#.len()
    );
    assert_eq!(&evs[1].data[..], b"{\"id\":42}");
}

/// Found by the property above: growing the joined data with `reserve` let the allocation
/// double past the limit (capacity 36 → 72 with a 40-byte limit). Three data lines that
/// make exactly that growth: the buffer never holds more than the limit.
#[test]
fn joined_data_never_allocates_past_the_limit() {
    let mut s = EventStream::new(stream::iter(Vec::<Result<Bytes, ()>>::new())).with_limit(40);
    for line in [&[b'x'; 18][..], b"y", &[b'z'; 17]] {
        s.add_data(Bytes::copy_from_slice(line));
        let Data::Many(m) = &s.data else { continue };
        assert!(m.capacity() <= 40, "capacity {} > limit 40", m.capacity());
    }
    assert!(
        matches!(&s.data, Data::Many(m) if m.len() == 38),
        "all three lines kept"
    );
}
