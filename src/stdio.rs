//! Newline-delimited framing on the client side: stdin lines in, stdout lines out.
//!
//! This module owns stdout. Nothing else in the program writes to it, and it writes nothing
//! but the message lines it is given (the relay guarantees each is one JSON-RPC message with
//! no raw newline). It knows nothing about HTTP or sessions.
//!
//! It also opens the two streams ([`stdin`], [`stdout`]): on Unix, pipes and sockets are driven
//! by the runtime's reactor, so a message costs no hand-off to a blocking thread.

use bytes::Bytes;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

use crate::jsonrpc::{HeadScan, Id};

/// What the client sent on one line.
#[derive(Debug)]
pub enum Line {
    /// A line within the size limit, without its terminator (trailing `\r`s removed).
    Message(Bytes),
    /// A line over the limit. Its bytes were scanned as they passed and dropped: only what the
    /// scan found is left.
    TooLarge(Oversized),
}

/// A client message that was discarded for its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Oversized {
    /// Bytes before the newline.
    pub size: u64,
    /// The top-level `id`, when the scan could read it.
    pub id: Option<Id>,
    /// It has a top-level `method` (a request or notification; without one, a response).
    pub has_method: bool,
}

/// Reads one line at a time from the client, holding at most `limit` bytes of a line.
pub struct LineReader<R> {
    inner: R,
    limit: usize,
    /// The line being read. Kept across calls so `next_line` is cancel-safe: a `select!` that
    /// drops a pending read loses no bytes, the next call continues the same line.
    buf: Vec<u8>,
    /// Set once the line outgrew `limit`: the rest of it is scanned and dropped, not kept.
    discarding: Option<Discard>,
}

#[derive(Debug)]
struct Discard {
    scan: HeadScan,
    size: u64,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    /// `limit` is `--max-message-size`: the longest line (before the newline) that is relayed.
    pub fn new(inner: R, limit: usize) -> Self {
        LineReader {
            inner,
            limit,
            buf: Vec::new(),
            discarding: None,
        }
    }

    /// The next non-blank line; `None` at end of input.
    ///
    /// Reads straight from the reader's buffer: a line within the limit is appended to one
    /// growing buffer (amortised doubling, never past `limit`) that becomes the message's
    /// `Bytes` without a copy; a longer one is dropped piece by piece, so its size costs time
    /// but no memory.
    pub async fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        loop {
            let chunk = self.inner.fill_buf().await?;
            if chunk.is_empty() {
                // End of input: a last line without a newline still counts.
                if self.buf.is_empty() && self.discarding.is_none() {
                    return Ok(None);
                }
                if let Some(line) = self.finish_line() {
                    return Ok(Some(line));
                }
                continue;
            }
            let (piece, newline) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (&chunk[..i], true),
                None => (chunk, false),
            };
            let used = piece.len() + usize::from(newline);
            match &mut self.discarding {
                Some(d) => {
                    d.scan.feed(piece);
                    d.size = d.size.saturating_add(piece.len() as u64);
                }
                None if self.buf.len() + piece.len() > self.limit => {
                    let mut scan = HeadScan::new();
                    scan.feed(&self.buf);
                    scan.feed(piece);
                    let size = (self.buf.len() + piece.len()) as u64;
                    // Give the memory back now, not when the next line reuses the buffer.
                    self.buf = Vec::new();
                    self.discarding = Some(Discard { scan, size });
                }
                None => {
                    let needed = self.buf.len() + piece.len();
                    if needed > self.buf.capacity() {
                        let target = needed.max(self.buf.capacity() * 2).min(self.limit);
                        self.buf.reserve_exact(target - self.buf.len());
                    }
                    self.buf.extend_from_slice(piece);
                }
            }
            self.inner.consume(used);
            if newline {
                if let Some(line) = self.finish_line() {
                    return Ok(Some(line));
                }
            }
        }
    }

    /// Ends the current line: the line itself, or `None` when it was blank.
    fn finish_line(&mut self) -> Option<Line> {
        if let Some(d) = self.discarding.take() {
            if !d.scan.has_content() {
                return None;
            }
            return Some(Line::TooLarge(Oversized {
                size: d.size,
                id: d.scan.id().cloned(),
                has_method: d.scan.has_method(),
            }));
        }
        let mut buf = std::mem::take(&mut self.buf);
        while buf.last() == Some(&b'\r') {
            buf.pop();
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        Some(Line::Message(Bytes::from(buf)))
    }
}

/// The sending half used by everything that wants a line on stdout.
pub type StdoutSender = mpsc::Sender<Bytes>;

/// How many messages may wait for stdout before producers slow down. Bounded so a client that
/// stops reading applies back-pressure to the upstream instead of growing our memory.
pub const STDOUT_QUEUE: usize = 64;

/// Writes queued messages, one per line, until every sender is gone. Flushes whenever the queue
/// runs dry, so a burst is written with few syscalls and a lone message is never held back.
pub async fn write_lines<W: AsyncWrite + Unpin>(
    out: W,
    mut rx: mpsc::Receiver<Bytes>,
) -> std::io::Result<()> {
    let mut out = BufWriter::with_capacity(64 * 1024, out);
    while let Some(msg) = rx.recv().await {
        out.write_all(&msg).await?;
        out.write_all(b"\n").await?;
        while let Ok(msg) = rx.try_recv() {
            out.write_all(&msg).await?;
            out.write_all(b"\n").await?;
        }
        out.flush().await?;
    }
    out.flush().await
}

/// The process's stdin, for the relay.
///
/// On Unix a pipe or socket is read by the reactor itself (non-blocking, woken by epoll/kqueue),
/// so a line costs one `read` on the runtime's own thread. tokio's `stdin()` instead hands every
/// read to a blocking-pool thread and back (two thread wake-ups per message), which was most of
/// the bridge's CPU per call. A terminal or a file, and Windows, keep tokio's blocking path.
pub fn stdin() -> Box<dyn AsyncRead + Unpin + Send> {
    #[cfg(unix)]
    if let Some(r) = unix::Pipe::stdin() {
        return Box::new(r);
    }
    Box::new(tokio::io::stdin())
}

/// The process's stdout, for [`write_lines`]; see [`stdin`] for why Unix pipes and sockets are
/// driven by the reactor.
pub fn stdout() -> Box<dyn AsyncWrite + Unpin + Send> {
    #[cfg(unix)]
    if let Some(w) = unix::Pipe::stdout() {
        return Box::new(w);
    }
    Box::new(tokio::io::stdout())
}

#[cfg(unix)]
mod unix {
    //! Standard streams in non-blocking mode, registered with the reactor. The mode belongs to
    //! the open file description, which other processes may share (a shell that started us in
    //! a pipeline), so it is set back to blocking when the stream is dropped.

    use std::io;
    use std::os::fd::{AsFd, OwnedFd};
    use std::os::unix::fs::FileTypeExt;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio::net::unix::pipe;
    use tokio::net::UnixStream;

    enum Inner {
        Reader(pipe::Receiver),
        Writer(pipe::Sender),
        Socket(UnixStream),
    }

    /// One standard stream driven by the reactor; back to blocking mode on drop when
    /// `restore` is set.
    pub struct Pipe(Option<Inner>, bool);

    impl Pipe {
        pub fn stdin() -> Option<Pipe> {
            let fd = io::stdin().as_fd().try_clone_to_owned().ok()?;
            let mut pipe = Self::open(fd, true)?;
            // One socket as both stdin and stdout (inetd style): stdin ends first, and making
            // the socket blocking under the stdout writer could stall the last flush. The
            // stdout side restores it when it ends.
            pipe.1 = !same_stream(&io::stdin(), &io::stdout());
            Some(pipe)
        }

        pub fn stdout() -> Option<Pipe> {
            let fd = io::stdout().as_fd().try_clone_to_owned().ok()?;
            Self::open(fd, false)
        }

        /// A FIFO or a socket (what clients spawn us with: `pipe(2)`, or libuv's
        /// `socketpair(2)` in Node); `None` for anything else (a terminal, a file, /dev/null).
        fn open(fd: OwnedFd, read: bool) -> Option<Pipe> {
            let file = std::fs::File::from(fd);
            let kind = file.metadata().ok()?.file_type();
            let fd = OwnedFd::from(file);
            let inner = if kind.is_fifo() {
                match read {
                    true => Inner::Reader(pipe::Receiver::from_owned_fd(fd).ok()?),
                    false => Inner::Writer(pipe::Sender::from_owned_fd(fd).ok()?),
                }
            } else if kind.is_socket() {
                let s = std::os::unix::net::UnixStream::from(fd);
                s.set_nonblocking(true).ok()?;
                Inner::Socket(UnixStream::from_std(s).ok()?)
            } else {
                return None;
            };
            Some(Pipe(Some(inner), true))
        }

        fn inner(&mut self) -> &mut Inner {
            self.0.as_mut().expect("present until dropped")
        }
    }

    impl Drop for Pipe {
        fn drop(&mut self) {
            if !self.1 {
                return;
            }
            // Best effort: the stream is finished either way.
            let _ = match self.0.take() {
                Some(Inner::Reader(r)) => r.into_blocking_fd().map(drop),
                Some(Inner::Writer(w)) => w.into_blocking_fd().map(drop),
                Some(Inner::Socket(s)) => s.into_std().and_then(|s| s.set_nonblocking(false)),
                None => Ok(()),
            };
        }
    }

    /// Whether two descriptors are the same file (for a socket: the same socket).
    fn same_stream(a: &impl AsFd, b: &impl AsFd) -> bool {
        use std::os::unix::fs::MetadataExt;
        let meta = |fd: &dyn AsFd| {
            let file = std::fs::File::from(fd.as_fd().try_clone_to_owned().ok()?);
            file.metadata().ok().map(|m| (m.dev(), m.ino()))
        };
        matches!((meta(a), meta(b)), (Some(x), Some(y)) if x == y)
    }

    impl AsyncRead for Pipe {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            match self.get_mut().inner() {
                Inner::Reader(r) => Pin::new(r).poll_read(cx, buf),
                Inner::Socket(s) => Pin::new(s).poll_read(cx, buf),
                Inner::Writer(_) => Poll::Ready(Err(io::ErrorKind::Unsupported.into())),
            }
        }
    }

    impl AsyncWrite for Pipe {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            match self.get_mut().inner() {
                Inner::Writer(w) => Pin::new(w).poll_write(cx, buf),
                Inner::Socket(s) => Pin::new(s).poll_write(cx, buf),
                Inner::Reader(_) => Poll::Ready(Err(io::ErrorKind::Unsupported.into())),
            }
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            match self.get_mut().inner() {
                Inner::Writer(w) => Pin::new(w).poll_write_vectored(cx, bufs),
                Inner::Socket(s) => Pin::new(s).poll_write_vectored(cx, bufs),
                Inner::Reader(_) => Poll::Ready(Err(io::ErrorKind::Unsupported.into())),
            }
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(())) // nothing is buffered here
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn splits_lines_and_skips_blank_ones() {
        let input: &[u8] = b"{\"a\":1}\r\n\n   \n{\"b\":2}\n{\"c\":3}";
        let mut r = LineReader::new(input, 1024);
        assert_eq!(&message(&mut r).await[..], b"{\"a\":1}");
        assert_eq!(&message(&mut r).await[..], b"{\"b\":2}");
        assert_eq!(&message(&mut r).await[..], b"{\"c\":3}");
        assert!(r.next_line().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn reads_a_huge_line_whole() {
        let mut input = vec![b'x'; 20 * 1024 * 1024];
        input.push(b'\n');
        let mut r = LineReader::new(tokio::io::BufReader::new(&input[..]), 32 << 20);
        assert_eq!(message(&mut r).await.len(), 20 * 1024 * 1024);
    }

    async fn message<R: AsyncBufRead + Unpin>(r: &mut LineReader<R>) -> Bytes {
        match r.next_line().await.unwrap() {
            Some(Line::Message(m)) => m,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_line_over_the_limit_is_dropped_but_its_id_is_read() {
        // The id comes after the big params; the next line is read normally.
        let mut input = br#"{"jsonrpc":"2.0","method":"tools/call","params":{"t":""#.to_vec();
        input.extend(std::iter::repeat_n(b'x', 5000));
        input.extend_from_slice(b"\"},\"id\":\"late\"}\r\n{\"id\":2}\n   \n");
        input.extend(std::iter::repeat_n(b' ', 3000));
        input.extend_from_slice(b"\n[1,");
        input.extend(std::iter::repeat_n(b'2', 3000));
        let first = input.iter().position(|&b| b == b'\n').unwrap() as u64;
        let mut r = LineReader::new(tokio::io::BufReader::with_capacity(100, &input[..]), 1000);
        let Some(Line::TooLarge(o)) = r.next_line().await.unwrap() else {
            panic!("expected an oversized line")
        };
        assert_eq!(o.id, Some(Id::from_json("\"late\"")));
        assert!(o.has_method);
        assert_eq!(
            o.size, first,
            "the size counts every byte before the newline"
        );
        assert!(
            r.buf.capacity() <= 1000,
            "the buffer never outgrows the limit"
        );
        assert_eq!(&message(&mut r).await[..], b"{\"id\":2}");
        // A blank line of any length is skipped; a last oversized line without newline counts.
        let Some(Line::TooLarge(o)) = r.next_line().await.unwrap() else {
            panic!("expected an oversized line")
        };
        assert_eq!((o.id, o.has_method, o.size), (None, false, 3003));
        assert!(r.next_line().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn writes_one_message_per_line() {
        let (tx, rx) = mpsc::channel(4);
        let mut out = Vec::new();
        let writer = write_lines(&mut out, rx);
        tx.send(Bytes::from_static(b"{\"a\":1}")).await.unwrap();
        tx.send(Bytes::from_static(b"{\"b\":2}")).await.unwrap();
        drop(tx);
        writer.await.unwrap();
        assert_eq!(out, b"{\"a\":1}\n{\"b\":2}\n");
    }
}

/// The line reader against a reference on arbitrary input and arbitrary read sizes.
#[cfg(test)]
mod framing_props {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use futures_util::FutureExt;
    use proptest::prelude::*;
    use tokio::io::AsyncRead;

    use super::*;

    /// An in-memory reader that hands out its bytes in pieces of the given sizes (cycled), so
    /// the line reader sees every possible split of a line across reads.
    struct Pieces {
        data: Vec<u8>,
        at: usize,
        sizes: Vec<usize>,
        k: usize,
    }

    impl Pieces {
        fn window(&self) -> usize {
            self.sizes[self.k % self.sizes.len()]
                .max(1)
                .min(self.data.len() - self.at)
        }
    }

    impl AsyncRead for Pieces {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            unreachable!("LineReader reads through the buffer")
        }
    }

    impl AsyncBufRead for Pieces {
        fn poll_fill_buf(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<std::io::Result<&[u8]>> {
            let me = self.get_mut();
            let n = me.window();
            Poll::Ready(Ok(&me.data[me.at..me.at + n]))
        }

        fn consume(self: Pin<&mut Self>, amt: usize) {
            let me = self.get_mut();
            me.at += amt;
            if amt > 0 {
                me.k += 1;
            }
        }
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Out {
        Message(Vec<u8>),
        TooLarge(Oversized),
    }

    fn read_all(input: &[u8], sizes: Vec<usize>, limit: usize) -> Vec<Out> {
        let biggest = sizes.iter().copied().max().unwrap_or(1);
        let pieces = Pieces {
            data: input.to_vec(),
            at: 0,
            sizes,
            k: 0,
        };
        let mut r = LineReader::new(pieces, limit);
        let mut out = Vec::new();
        loop {
            let next = r
                .next_line()
                .now_or_never()
                .expect("in-memory input is always ready");
            assert!(
                r.buf.capacity() <= limit.max(biggest),
                "buffer outgrew the limit"
            );
            match next.unwrap() {
                Some(Line::Message(m)) => out.push(Out::Message(m.to_vec())),
                Some(Line::TooLarge(o)) => out.push(Out::TooLarge(o)),
                None => return out,
            }
        }
    }

    /// The obvious implementation: split the whole input on `\n`, then judge each line.
    fn reference(input: &[u8], limit: usize) -> Vec<Out> {
        let mut lines: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
        if lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop(); // the input ended with a newline (or was empty)
        }
        let mut out = Vec::new();
        for raw in lines {
            if raw.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if raw.len() > limit {
                let mut scan = HeadScan::new();
                scan.feed(raw);
                out.push(Out::TooLarge(Oversized {
                    size: raw.len() as u64,
                    id: scan.id().cloned(),
                    has_method: scan.has_method(),
                }));
                continue;
            }
            let mut line = raw;
            while let [rest @ .., b'\r'] = line {
                line = rest;
            }
            out.push(Out::Message(line.to_vec()));
        }
        out
    }

    fn piece() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            3 => prop::sample::select(vec![
                &b"\n"[..], b"\r", b"\r\n", b" ", b"\t", br#"{"jsonrpc":"2.0","#, br#""id":"#,
                b"17", br#""a\"b""#, br#""method":"tools/call","#, br#""params":{"x":["#,
                b"]}", b"}", b",", b"null",
            ]).prop_map(<[u8]>::to_vec),
            1 => (1usize..100, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
            1 => prop::collection::vec(any::<u8>(), 0..8),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn lines_match_the_reference_for_any_split(
            input in prop::collection::vec(piece(), 0..60).prop_map(|v| v.concat()),
            sizes in prop::collection::vec(1usize..40, 1..8),
            limit in 1usize..64,
        ) {
            prop_assert_eq!(read_all(&input, sizes, limit), reference(&input, limit));
        }
    }
}
