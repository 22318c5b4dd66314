//! Newline-delimited framing on the client side: stdin lines in, stdout lines out.
//!
//! This module owns stdout. Nothing else in the program writes to it, and it writes nothing
//! but the message lines it is given (the relay guarantees each is one JSON-RPC message with
//! no raw newline). It knows nothing about HTTP or sessions.

use bytes::Bytes;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

/// Reads one line at a time from the client.
pub struct LineReader<R> {
    inner: R,
    /// The line being read. Kept across calls so `next_line` is cancel-safe: a `select!` that
    /// drops a pending read loses no bytes, the next call continues the same line.
    buf: Vec<u8>,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    pub fn new(inner: R) -> Self {
        LineReader {
            inner,
            buf: Vec::new(),
        }
    }

    /// The next non-blank line without its terminator; `None` at end of input.
    ///
    /// `read_until` appends into one growing buffer (amortised doubling), so a line of tens of
    /// MiB costs linear time, and the buffer becomes the message's `Bytes` without a copy.
    pub async fn next_line(&mut self) -> std::io::Result<Option<Bytes>> {
        loop {
            // Returns at a newline or at end of input; either way `buf` holds a whole line,
            // unless it is empty, which means end of input.
            self.inner.read_until(b'\n', &mut self.buf).await?;
            if self.buf.is_empty() {
                return Ok(None);
            }
            let mut buf = std::mem::take(&mut self.buf);
            while matches!(buf.last(), Some(b'\n' | b'\r')) {
                buf.pop();
            }
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some(Bytes::from(buf)));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn splits_lines_and_skips_blank_ones() {
        let input: &[u8] = b"{\"a\":1}\r\n\n   \n{\"b\":2}\n{\"c\":3}";
        let mut r = LineReader::new(input);
        assert_eq!(&r.next_line().await.unwrap().unwrap()[..], b"{\"a\":1}");
        assert_eq!(&r.next_line().await.unwrap().unwrap()[..], b"{\"b\":2}");
        assert_eq!(&r.next_line().await.unwrap().unwrap()[..], b"{\"c\":3}");
        assert!(r.next_line().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn reads_a_huge_line_whole() {
        let mut input = vec![b'x'; 20 * 1024 * 1024];
        input.push(b'\n');
        let mut r = LineReader::new(tokio::io::BufReader::new(&input[..]));
        assert_eq!(
            r.next_line().await.unwrap().unwrap().len(),
            20 * 1024 * 1024
        );
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
