//! A TCP forwarder on loopback that can add latency and count round trips: the "WAN" of the
//! simulated-WAN bench (`examples/bench/wan.rs`), and a front whose target the era tests switch
//! to another server behind the same URL.
//!
//! Every chunk read from one side is written to the other `delay` later (order kept; latency,
//! not bandwidth). A connection's first client chunk waits one more round trip (`2 × delay`),
//! standing in for the TCP handshake the loopback connect did not pay (TLS is not modelled).
//! Counted per proxy: connections, and *turns*: client→server bursts that follow server data
//! (or open the connection), i.e. the request/response exchanges a client waited on.
//!
//! [`DelayProxy::start_closing_idle`] also closes a connection that carried nothing either way
//! for a while, as a server (or its load balancer) with an idle timeout does.
//!
//! Included by `examples/` as well as by the tests (uses only tokio).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Counts {
    connections: AtomicUsize,
    turns: AtomicUsize,
}

/// A running forwarder; stopped on drop.
pub struct DelayProxy {
    addr: SocketAddr,
    target: Arc<Mutex<SocketAddr>>,
    counts: Arc<Counts>,
    kill: CancellationToken,
}

impl DelayProxy {
    /// Forwards `listener`'s connections to `target`, `delay` each way.
    pub fn start(listener: TcpListener, target: SocketAddr, delay: Duration) -> DelayProxy {
        Self::start_with(listener, target, delay, None)
    }

    /// Like [`DelayProxy::start`], and a connection idle (no bytes either way) for `idle` is
    /// closed both ways.
    pub fn start_closing_idle(
        listener: TcpListener,
        target: SocketAddr,
        delay: Duration,
        idle: Duration,
    ) -> DelayProxy {
        Self::start_with(listener, target, delay, Some(idle))
    }

    fn start_with(
        listener: TcpListener,
        target: SocketAddr,
        delay: Duration,
        idle: Option<Duration>,
    ) -> DelayProxy {
        let addr = listener.local_addr().expect("a bound listener");
        let target = Arc::new(Mutex::new(target));
        let counts = Arc::new(Counts::default());
        let kill = CancellationToken::new();
        let (t, c, k) = (target.clone(), counts.clone(), kill.clone());
        tokio::spawn(async move {
            loop {
                let inbound = tokio::select! {
                    _ = k.cancelled() => return,
                    a = listener.accept() => match a { Ok((s, _)) => s, Err(_) => continue },
                };
                c.connections.fetch_add(1, Ordering::Relaxed);
                let to = *t.lock().unwrap();
                let (c, k) = (c.clone(), k.clone());
                tokio::spawn(async move {
                    k.run_until_cancelled(pipe(inbound, to, delay, c, idle))
                        .await;
                });
            }
        });
        DelayProxy {
            addr,
            target,
            counts,
            kill,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// New connections go to `target` from now on.
    pub fn retarget(&self, target: SocketAddr) {
        *self.target.lock().unwrap() = target;
    }

    pub fn connections(&self) -> usize {
        self.counts.connections.load(Ordering::Relaxed)
    }

    pub fn turns(&self) -> usize {
        self.counts.turns.load(Ordering::Relaxed)
    }

    pub fn reset_counts(&self) {
        self.counts.connections.store(0, Ordering::Relaxed);
        self.counts.turns.store(0, Ordering::Relaxed);
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.kill.cancel();
    }
}

async fn pipe(
    inbound: TcpStream,
    to: SocketAddr,
    delay: Duration,
    counts: Arc<Counts>,
    idle: Option<Duration>,
) {
    let Ok(outbound) = TcpStream::connect(to).await else {
        return;
    };
    let Some(idle) = idle else {
        return forward(inbound, outbound, delay, counts, Arc::new(Mutex::new(None))).await;
    };
    let last = Arc::new(Mutex::new(Some(Instant::now())));
    let watch = async {
        loop {
            let since = last.lock().unwrap().expect("set above");
            if since.elapsed() >= idle {
                return; // dropping the forwarder closes both sockets
            }
            tokio::time::sleep_until(since + idle).await;
        }
    };
    tokio::select! {
        _ = forward(inbound, outbound, delay, counts, last.clone()) => {}
        _ = watch => {}
    }
}

/// Forwards both ways until both ends are closed; every chunk stamps `last` when it is set.
async fn forward(
    inbound: TcpStream,
    outbound: TcpStream,
    delay: Duration,
    counts: Arc<Counts>,
    last: Arc<Mutex<Option<Instant>>>,
) {
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (cr, cw) = inbound.into_split();
    let (sr, sw) = outbound.into_split();
    // True while the last data seen went server → client: the next client chunk is a new turn.
    let server_spoke = Arc::new(AtomicBool::new(true));
    let touch = |last: &Mutex<Option<Instant>>| {
        let mut l = last.lock().unwrap();
        if l.is_some() {
            *l = Some(Instant::now());
        }
    };
    let up_last = last.clone();
    let up = one_way(
        cr,
        sw,
        delay,
        Some((server_spoke.clone(), counts)),
        move || touch(&up_last),
    );
    let down = async {
        let (tx, rx) = mpsc::unbounded_channel();
        let reader = read_into(sr, tx, delay, Duration::ZERO, || {
            touch(&last);
            server_spoke.store(true, Ordering::Relaxed)
        });
        tokio::join!(reader, write_from(rx, cw));
    };
    tokio::join!(up, down);
}

async fn one_way(
    r: tokio::net::tcp::OwnedReadHalf,
    w: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
    turns: Option<(Arc<AtomicBool>, Arc<Counts>)>,
    on_chunk: impl Fn(),
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let reader = read_into(r, tx, delay, delay * 2, move || {
        on_chunk();
        if let Some((spoke, counts)) = &turns {
            if spoke.swap(false, Ordering::Relaxed) {
                counts.turns.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    tokio::join!(reader, write_from(rx, w));
}

/// Reads chunks, stamping each with when it may be delivered.
async fn read_into(
    mut r: tokio::net::tcp::OwnedReadHalf,
    tx: mpsc::UnboundedSender<(Instant, Vec<u8>)>,
    delay: Duration,
    first_extra: Duration,
    on_chunk: impl Fn(),
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut extra = first_extra;
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        on_chunk();
        let due = Instant::now() + delay + std::mem::take(&mut extra);
        if tx.send((due, buf[..n].to_vec())).is_err() {
            return;
        }
    }
}

async fn write_from(
    mut rx: mpsc::UnboundedReceiver<(Instant, Vec<u8>)>,
    mut w: tokio::net::tcp::OwnedWriteHalf,
) {
    while let Some((due, bytes)) = rx.recv().await {
        tokio::time::sleep_until(due).await;
        if w.write_all(&bytes).await.is_err() {
            return;
        }
    }
    let _ = w.shutdown().await;
}
