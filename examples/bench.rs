//! Benchmark: alibridge against two floors and against mcp-remote, all on one local upstream.
//!
//! ```text
//! cargo build --release
//! npm ci --prefix bench/peers          # mcp-remote 0.15.1 (the bench runs it when needed)
//! cargo run --release --example bench -- [--quick] [--no-mcp-remote]
//! ```
//!
//! The upstream runs in this process: a minimal Streamable HTTP MCP server on plain tokio
//! (hand-written HTTP/1.1, keep-alive, Content-Length bodies). It answers `initialize` with an
//! `Mcp-Session-Id`, notifications with 202, `tools/call` `echo` with a small result and `big`
//! with an N-byte text, GET with 405 and DELETE with 200, so upstream cost is tiny and the same
//! for every contender:
//!
//! - **direct**: a keep-alive HTTP/1.1 POST loop in this process, the minimal passthrough
//!   floor (no stdio, no second process);
//! - **relay**: this example re-run as `bench --relay ADDR`, the smallest stdio→HTTP relay
//!   (one-thread tokio, the same hand-written HTTP client): the floor for any process that
//!   sits between a client's pipes and the network;
//! - **alibridge**: `target/release/alibridge URL --transport http-only`;
//! - **mcp-remote**: `node bench/peers/node_modules/mcp-remote/dist/proxy.js URL --transport
//!   http-only` (skipped, with a note, without node and npm).
//!
//! The stdio contenders are driven alike: lines to stdin, lines from stdout, matched by id.
//! Measured: sequential `echo` latency (p50/p90/p99), throughput with 32 requests in flight,
//! time per `big` call (2 and 16 MiB), spawn → initialize response (median over fresh
//! processes), peak RSS (`VmHWM`, Linux) and CPU time per 1000 calls. See `docs/benchmarks.md`.

use std::collections::HashMap;
use std::fmt::Display;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::BufReader;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::oneshot;
use tokio::time::timeout;

#[path = "bench/otel.rs"]
mod otel;
#[path = "bench/upstream.rs"]
mod upstream;
#[path = "bench/wan.rs"]
mod wan;

use upstream::{read_body, read_head, serve_until_eof, start_upstream, Head};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;
type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Vec<u8>>>>>;

const MIB: usize = 1 << 20;
const PROTOCOL: &str = "2025-06-18";
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const INITIALIZED: &[u8] = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

/// How much work one run does.
struct Plan {
    warmup: usize,
    calls: usize,
    tput_calls: usize,
    in_flight: usize,
    big: [(usize, usize); 2], // (payload bytes, calls)
    starts: usize,
}

/// One contender's results (`None`: not measured or not available).
#[derive(Default)]
struct Row {
    lat_us: Option<[f64; 3]>,
    cpu_ms_per_1k: Option<f64>,
    rps: Option<f64>,
    big_ms: [Option<f64>; 2],
    start_ms: Option<f64>,
    rss_idle_mib: Option<f64>,
    rss_steady_mib: Option<f64>,
    rss_peak_mib: Option<f64>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| args.iter().any(|a| a == name);
    if args.first().is_some_and(|a| a == "--relay") {
        let addr = args.get(1).and_then(|a| a.parse().ok());
        let addr = addr.unwrap_or_else(|| fail(2, "usage: bench --relay HOST:PORT"));
        let rt = runtime().unwrap_or_else(|e| fail(1, e));
        return rt.block_on(relay(addr)).unwrap_or_else(|e| fail(1, e));
    }
    if flag("--wan") {
        return wan::main(flag("--quick"));
    }
    if flag("--otel") {
        return otel::main(flag("--quick"), flag("--instructions"));
    }
    if args.first().is_some_and(|a| a == "--upstream") {
        return serve_until_eof().unwrap_or_else(|e| fail(1, e));
    }
    if flag("-h") || flag("--help") {
        println!(
            "usage: cargo run --release --example bench -- [--quick] [--no-mcp-remote] [--wan] [--otel [--instructions]]"
        );
        return;
    }
    let known = ["--quick", "--no-mcp-remote"];
    if let Some(bad) = args.iter().find(|a| !known.contains(&a.as_str())) {
        fail(2, format!("unknown argument {bad:?} (try --help)"));
    }
    let bridge = bridge_bin().unwrap_or_else(|e| fail(2, e));
    let node = match flag("--no-mcp-remote") {
        true => Err("skipped (--no-mcp-remote)".to_string()),
        false => mcp_remote(),
    };
    let rt = runtime().unwrap_or_else(|e| fail(1, e));
    let outcome = rt.block_on(run(flag("--quick"), bridge, node));
    outcome.unwrap_or_else(|e| fail(1, e));
}

/// One-thread runtimes throughout: the driver, the upstream and the relay each get one.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn fail(code: i32, msg: impl Display) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(code)
}

async fn run(quick: bool, bridge: PathBuf, node: Result<PathBuf, String>) -> Res<()> {
    let (warmup, calls, tput_calls, reps, starts) = match quick {
        true => (20, 200, 640, [2, 1], 3),
        false => (200, 2000, 6400, [20, 5], 20),
    };
    let big = [(2 * MIB, reps[0]), (16 * MIB, reps[1])];
    let in_flight = 32;
    let plan = Plan {
        warmup,
        calls,
        tput_calls,
        in_flight,
        big,
        starts,
    };
    let addr = start_upstream(16 * MIB)?;
    let url = format!("http://{addr}/mcp");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mode = ["full", "--quick"][quick as usize];
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split(' ').take(3).collect::<Vec<_>>().join(" ");
    println!("alibridge bench ({mode}): upstream {url}, {cores} cores, load {load}");
    println!("  alibridge:  {}", bridge.display());
    match &node {
        Ok(proxy) => println!("  mcp-remote: {} ({})", proxy.display(), npm_version(proxy)),
        Err(why) => println!("  mcp-remote: n/a: {why}"),
    }
    let http_only = |mut args: Vec<String>| {
        args.extend([url.clone(), "--transport".into(), "http-only".into()]);
        args
    };
    let mut rows: [Row; 4] = Default::default();
    println!("[1/4] direct HTTP client");
    let direct = Arc::new(Target::Direct(Direct::connect(addr).await?));
    rows[0] = bench_target(&direct, &plan).await?;
    println!("[2/4] relay (minimal stdio relay)");
    let relay = vec!["--relay".into(), addr.to_string()];
    rows[1] = bench_peer(&std::env::current_exe()?, &relay, &plan).await?;
    println!("[3/4] alibridge");
    rows[2] = bench_peer(&bridge, &http_only(vec![]), &plan).await?;
    println!("[4/4] mcp-remote");
    match &node {
        Ok(proxy) => {
            let args = http_only(vec![proxy.display().to_string()]);
            match bench_peer(Path::new("node"), &args, &plan).await {
                Ok(row) => rows[3] = row,
                Err(e) => println!("  mcp-remote failed: {e}"),
            }
        }
        Err(why) => println!("  skipped: {why}"),
    }
    print_table(&plan, &rows);
    print_targets(&rows);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Measurements

/// Benchmarks one warm session of a stdio peer, then its start time over fresh processes.
async fn bench_peer(program: &Path, args: &[String], plan: &Plan) -> Res<Row> {
    let peer = StdioPeer::spawn(program, args)?;
    peer.initialize().await?;
    peer.write_line(INITIALIZED.to_vec()).await?;
    let idle = peer.child.id().and_then(rss_mib);
    let peer = Arc::new(Target::Stdio(Box::new(peer)));
    let mut row = bench_target(&peer, plan).await?;
    row.rss_idle_mib = idle;
    if let Some(Target::Stdio(peer)) = Arc::into_inner(peer) {
        peer.close().await;
    }
    let mut starts = Vec::new();
    for _ in 0..plan.starts {
        let t0 = Instant::now();
        let peer = StdioPeer::spawn(program, args)?;
        peer.initialize().await?;
        starts.push(t0.elapsed());
    } // each dropped peer is killed
    let start = ms(percentile(&mut starts, 0.5));
    row.start_ms = Some(start);
    let runs = plan.starts;
    println!("  spawn → initialize: {start:.1} ms (median of {runs})");
    Ok(row)
}

/// Latency, throughput and big payloads on one warm session.
async fn bench_target(t: &Arc<Target>, plan: &Plan) -> Res<Row> {
    let mut row = Row::default();
    let warm = Instant::now(); // at least `warmup` calls and 300 ms: wakes CPUs and JITs
    for i in 0.. {
        if i >= plan.warmup && warm.elapsed() > Duration::from_millis(300) {
            break;
        }
        echo(t).await?;
    }
    let cpu_before = t.pid().and_then(cpu_time);
    let mut lat = Vec::with_capacity(plan.calls);
    for _ in 0..plan.calls {
        let t0 = Instant::now();
        echo(t).await?;
        lat.push(t0.elapsed());
    }
    if let (Some(a), Some(b)) = (cpu_before, t.pid().and_then(cpu_time)) {
        row.cpu_ms_per_1k = Some(ms(b - a) * 1000.0 / plan.calls as f64);
    }
    let [p50, p90, p99] = [0.5, 0.9, 0.99].map(|q| percentile(&mut lat, q).as_secs_f64() * 1e6);
    row.lat_us = Some([p50, p90, p99]);
    println!("  echo latency p50/p90/p99: {p50:.0}/{p90:.0}/{p99:.0} µs");

    let n = plan.in_flight;
    throughput(t, n, n * 8).await?; // warm-up: opens the connections
    let rps = throughput(t, n, plan.tput_calls).await?;
    row.rps = Some(rps);
    println!("  throughput: {rps:.0} req/s ({n} in flight)");
    row.rss_steady_mib = t.pid().and_then(peak_rss_mib);

    for (i, &(bytes, reps)) in plan.big.iter().enumerate() {
        let mut times = Vec::new();
        for _ in 0..reps {
            let t0 = Instant::now();
            let args = json!({"name": "big", "arguments": {"bytes": bytes}});
            check_result(&t.request("tools/call", args).await?, bytes)?;
            times.push(t0.elapsed());
        }
        let (median, mib) = (ms(percentile(&mut times, 0.5)), bytes / MIB);
        row.big_ms[i] = Some(median);
        println!("  big {mib} MiB: {median:.1} ms/call (median of {reps})");
    }
    row.rss_peak_mib = t.pid().and_then(peak_rss_mib);
    Ok(row)
}

async fn echo(t: &Target) -> Res<()> {
    let args = json!({"name": "echo", "arguments": {"text": "hello"}});
    check_result(&t.request("tools/call", args).await?, 0)
}

/// Requests per second for `total` echo calls issued by `in_flight` workers.
async fn throughput(t: &Arc<Target>, in_flight: usize, total: usize) -> Res<f64> {
    let issued = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..in_flight {
        let (t, issued) = (t.clone(), issued.clone());
        workers.spawn(async move {
            while issued.fetch_add(1, Relaxed) < total {
                echo(&t).await?;
            }
            Res::Ok(())
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    Ok(total as f64 / t0.elapsed().as_secs_f64())
}

/// Nearest-rank percentile (sorts in place).
fn percentile(v: &mut [Duration], q: f64) -> Duration {
    v.sort_unstable();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1));
    v.get(rank - 1).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `VmHWM` of a process in MiB (Linux; `None` elsewhere).
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// `VmRSS` of a process in MiB (Linux; `None` elsewhere).
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// utime + stime of a process (Linux; assumes the usual 100 clock ticks per second).
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some(Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
}

// ---------------------------------------------------------------------------------------------
// Clients: the direct HTTP client and the stdio driver behind one request interface.

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

enum Target {
    Direct(Direct),
    Stdio(Box<StdioPeer>),
}

impl Target {
    /// Sends one JSON-RPC request and returns the raw response message.
    async fn request(&self, method: &str, params: Value) -> Res<Vec<u8>> {
        let id = NEXT_ID.fetch_add(1, Relaxed);
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let line = serde_json::to_vec(&msg)?;
        let reply = async {
            match self {
                Target::Direct(d) => d.post(&line).await.map(|(_, body)| body),
                Target::Stdio(p) => p.call(id, line).await,
            }
        };
        let reply = timeout(CALL_TIMEOUT, reply).await;
        reply.map_err(|_| format!("{method} timed out"))?
    }

    fn pid(&self) -> Option<u32> {
        match self {
            Target::Direct(_) => None,
            Target::Stdio(p) => p.child.id(),
        }
    }
}

/// Fails on a JSON-RPC error or a message shorter than `min_len` bytes.
fn check_result(msg: &[u8], min_len: usize) -> Res<()> {
    let (head, tail) = ends(msg);
    let has = |s: &[u8], pat: &[u8]| s.windows(pat.len()).any(|w| w == pat);
    if has(head, b"\"error\":") || has(tail, b"\"error\":") || !has(msg, b"\"result\"") {
        return Err(format!("not a result: {}", String::from_utf8_lossy(head)).into());
    }
    if msg.len() < min_len {
        return Err(format!("result of {} bytes, expected ≥ {min_len}", msg.len()).into());
    }
    Ok(())
}

/// The first and last 200 bytes of a message: where every peer here puts `id` and `error`.
fn ends(msg: &[u8]) -> (&[u8], &[u8]) {
    let len = msg.len();
    (&msg[..len.min(200)], &msg[len.saturating_sub(200)..])
}

/// The numeric `id` of a response, found without parsing a possibly huge result.
fn response_id(msg: &[u8]) -> Option<u64> {
    let find = |s: &[u8]| -> Option<u64> {
        let at = s.windows(5).position(|w| w == b"\"id\":")? + 5;
        let digits = s[at..].iter().skip_while(|b| b.is_ascii_whitespace());
        let n: Vec<u8> = digits.take_while(|b| b.is_ascii_digit()).copied().collect();
        std::str::from_utf8(&n).ok()?.parse().ok()
    };
    let (head, tail) = ends(msg);
    find(head).or_else(|| find(tail))
}

type Conn = (BufReader<OwnedReadHalf>, OwnedWriteHalf);

/// Keep-alive HTTP/1.1 client with a connection pool (one connection per request in flight).
/// It remembers the `Mcp-Session-Id` of the last response that carried one.
struct Direct {
    addr: SocketAddr,
    session: Mutex<String>,
    idle: Mutex<Vec<Conn>>,
}

impl Direct {
    fn new(addr: SocketAddr) -> Direct {
        let (session, idle) = Default::default();
        Direct {
            addr,
            session,
            idle,
        }
    }

    /// A client with an initialized session.
    async fn connect(addr: SocketAddr) -> Res<Direct> {
        let d = Direct::new(addr);
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": PROTOCOL, "capabilities": {},
            "clientInfo": {"name": "bench-direct", "version": "0"}}});
        d.post(&serde_json::to_vec(&init)?).await?;
        d.post(INITIALIZED).await?;
        Ok(d)
    }

    async fn post(&self, body: &[u8]) -> Res<(Head, Vec<u8>)> {
        let pooled = self.idle.lock().unwrap().pop();
        let (mut r, mut w) = match pooled {
            Some(conn) => conn,
            None => {
                let stream = TcpStream::connect(self.addr).await?;
                stream.set_nodelay(true)?;
                let (r, w) = stream.into_split();
                (BufReader::with_capacity(64 * 1024, r), w)
            }
        };
        let session = match self.session.lock().unwrap().as_str() {
            "" => String::new(),
            s => format!("Mcp-Session-Id: {s}\r\nMCP-Protocol-Version: {PROTOCOL}\r\n"),
        };
        let (addr, len) = (self.addr, body.len());
        let head = format!(
            "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\n{session}Content-Length: {len}\r\n\r\n"
        );
        w.write_all(&[head.as_bytes(), body].concat()).await?;
        let head = read_head(&mut r).await?.ok_or("connection closed")?;
        let body = read_body(&mut r, &head).await?;
        if !head.start.starts_with("HTTP/1.1 2") {
            return Err(format!("upstream answered {}", head.start).into());
        }
        if let Some(id) = head.get("mcp-session-id") {
            *self.session.lock().unwrap() = id.to_string();
        }
        self.idle.lock().unwrap().push((r, w));
        Ok((head, body))
    }
}

/// `bench --relay ADDR`: stdin lines are POSTed (concurrently), bodies go to stdout as lines.
async fn relay(addr: SocketAddr) -> Res<()> {
    let (stdin, stdout) = stdio()?;
    let http = Arc::new(Direct::new(addr));
    let out = Arc::new(tokio::sync::Mutex::new(stdout));
    let mut stdin = BufReader::with_capacity(64 * 1024, stdin);
    let mut line = Vec::new();
    while stdin.read_until(b'\n', &mut line).await? > 0 {
        let (http, out, msg) = (http.clone(), out.clone(), std::mem::take(&mut line));
        tokio::spawn(async move {
            let Ok((_, mut body)) = http.post(msg.trim_ascii_end()).await else {
                return; // a real bridge would answer with an error; nothing fails here
            };
            if !body.is_empty() {
                body.push(b'\n');
                let _ = out.lock().await.write_all(&body).await;
            }
        });
    }
    Ok(())
}

/// The process's stdin and stdout: as non-blocking pipes driven by the reactor where they are
/// pipes on Unix (no thread hand-off per read or write), else tokio's blocking-pool wrappers.
fn stdio() -> Res<(
    Box<dyn AsyncRead + Unpin + Send>,
    Box<dyn AsyncWrite + Unpin + Send>,
)> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        use tokio::net::unix::pipe;
        let stdin = std::io::stdin().as_fd().try_clone_to_owned()?;
        let stdout = std::io::stdout().as_fd().try_clone_to_owned()?;
        if let (Ok(r), Ok(w)) = (
            pipe::Receiver::from_owned_fd(stdin),
            pipe::Sender::from_owned_fd(stdout),
        ) {
            return Ok((Box::new(r), Box::new(w)));
        }
    }
    Ok((Box::new(tokio::io::stdin()), Box::new(tokio::io::stdout())))
}

/// A spawned stdio peer: requests go to its stdin as lines; a reader task routes stdout lines
/// to the waiting callers by id. Dropping it kills the process.
struct StdioPeer {
    child: Child,
    stdin: tokio::sync::Mutex<ChildStdin>,
    pending: Pending,
}

impl StdioPeer {
    fn spawn(program: &Path, args: &[String]) -> Res<StdioPeer> {
        let auth_dir = std::env::temp_dir().join("alibridge-bench-mcp-auth");
        let mut child = Command::new(program)
            .args(args)
            .env("MCP_REMOTE_CONFIG_DIR", auth_dir) // mcp-remote: keep out of ~/.mcp-auth
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        let (stdin, stdout) = (child.stdin.take(), child.stdout.take());
        let (stdin, stdout) = stdin.zip(stdout).ok_or("no pipes")?;
        let pending = Pending::default();
        let routes = pending.clone();
        tokio::spawn(async move {
            let mut r = BufReader::with_capacity(64 * 1024, stdout);
            let mut line = Vec::new();
            while r.read_until(b'\n', &mut line).await.unwrap_or(0) > 0 {
                let waiter = response_id(&line).and_then(|id| routes.lock().unwrap().remove(&id));
                match waiter {
                    Some(tx) => drop(tx.send(std::mem::take(&mut line))),
                    None => line.clear(), // notifications and server requests: none expected
                }
            }
            routes.lock().unwrap().clear(); // stdout closed: fail every waiter
        });
        let stdin = tokio::sync::Mutex::new(stdin);
        Ok(StdioPeer {
            child,
            stdin,
            pending,
        })
    }

    async fn initialize(&self) -> Res<()> {
        let id = NEXT_ID.fetch_add(1, Relaxed);
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
            "protocolVersion": PROTOCOL, "capabilities": {},
            "clientInfo": {"name": "bench-driver", "version": "0"}}});
        let reply = timeout(CALL_TIMEOUT, self.call(id, serde_json::to_vec(&msg)?)).await;
        check_result(&reply.map_err(|_| "initialize timed out")??, 0)
    }

    async fn call(&self, id: u64, line: Vec<u8>) -> Res<Vec<u8>> {
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        self.write_line(line).await?;
        Ok(rx.await.map_err(|_| "stdout closed early")?)
    }

    async fn write_line(&self, mut line: Vec<u8>) -> Res<()> {
        line.push(b'\n');
        Ok(self.stdin.lock().await.write_all(&line).await?)
    }

    /// Closes stdin and waits for the exit (bounded), as a desktop client does.
    async fn close(mut self) {
        drop(self.stdin);
        let exited = timeout(Duration::from_secs(10), self.child.wait()).await;
        if exited.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

/// `target/release/alibridge`, beside this example's own `target/release/examples/bench`.
fn bridge_bin() -> Res<PathBuf> {
    if let Some(path) = std::env::var_os("ALIBRIDGE_BIN") {
        return Ok(path.into());
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().and_then(Path::parent);
    let path = dir.ok_or("no target dir")?.join("alibridge");
    let path = path.with_extension(std::env::consts::EXE_EXTENSION);
    match path.is_file() {
        true => Ok(path),
        false => Err(format!(
            "{} is missing: run `cargo build --release` first (or set ALIBRIDGE_BIN)",
            path.display()
        ))?,
    }
}

/// `bench/peers/node_modules/mcp-remote/dist/proxy.js`, installed with `npm ci` when missing.
fn mcp_remote() -> Result<PathBuf, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/peers");
    let proxy = dir.join("node_modules/mcp-remote/dist/proxy.js");
    let run = |program: &str, args: &[&str]| {
        let mut cmd = std::process::Command::new(program);
        cmd.args(args).current_dir(&dir).stdin(Stdio::null());
        cmd.output()
    };
    if !run("node", &["--version"]).is_ok_and(|out| out.status.success()) {
        return Err("node is not on PATH".into());
    }
    if proxy.is_file() {
        return Ok(proxy);
    }
    let npm = if cfg!(windows) { "npm.cmd" } else { "npm" };
    println!("installing mcp-remote: npm ci in {}", dir.display());
    match run(npm, &["ci", "--no-audit", "--no-fund", "--ignore-scripts"]) {
        Ok(out) if out.status.success() && proxy.is_file() => Ok(proxy),
        Ok(out) => Err(String::from_utf8_lossy(&out.stderr).into()),
        Err(e) => Err(format!("cannot run npm ci in {} ({e})", dir.display())),
    }
}

/// The `version` in the package.json above `dist/proxy.js`.
fn npm_version(proxy: &Path) -> String {
    let manifest = proxy.parent().and_then(Path::parent).unwrap_or(proxy);
    let text = std::fs::read(manifest.join("package.json")).unwrap_or_default();
    let manifest: Value = serde_json::from_slice(&text).unwrap_or_default();
    format!("version {}", manifest["version"].as_str().unwrap_or("?"))
}

fn print_table(plan: &Plan, all: &[Row; 4]) {
    let [b0, b1] = plan.big.map(|(bytes, _)| bytes / MIB);
    type Metric = fn(&Row) -> Option<f64>;
    let rows: [(String, Metric); 11] = [
        ("echo p50 (µs)".into(), |r| Some(r.lat_us?[0])),
        ("echo p90 (µs)".into(), |r| Some(r.lat_us?[1])),
        ("echo p99 (µs)".into(), |r| Some(r.lat_us?[2])),
        (format!("req/s, {} in flight", plan.in_flight), |r| r.rps),
        (format!("big {b0} MiB (ms/call)"), |r| r.big_ms[0]),
        (format!("big {b1} MiB (ms/call)"), |r| r.big_ms[1]),
        ("spawn → initialize (ms)".into(), |r| r.start_ms),
        ("RSS idle after initialize (MiB)".into(), |r| r.rss_idle_mib),
        ("peak RSS before big (MiB)".into(), |r| r.rss_steady_mib),
        ("peak RSS after run (MiB)".into(), |r| r.rss_peak_mib),
        ("CPU per 1k seq. calls (ms)".into(), |r| r.cpu_ms_per_1k),
    ];
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    };
    let [d, r, b, n] = ["direct", "relay", "alibridge", "mcp-remote"];
    println!("\n| metric | {d} | {r} | {b} | {n} | {b}/{d} | {b}/{r} | {n}/{b} |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (label, get) in rows {
        let [d, r, b, n] = all.each_ref().map(get);
        let ratios = [ratio(b, d), ratio(b, r), ratio(n, b)].join(" | ");
        let cells = [d, r, b, n].map(cell).join(" | ");
        println!("| {label} | {cells} | {ratios} |");
    }
}

/// The issue-14 targets: alibridge against the relay measured in the same run, plus its own
/// start time, idle memory and what one 16 MiB result adds to its peak RSS.
fn print_targets(all: &[Row; 4]) {
    let [_, relay, b, node] = all;
    let vs_relay = |get: fn(&Row) -> Option<f64>| Some(get(b)? / get(relay)?);
    let added = b.rss_peak_mib.zip(b.rss_steady_mib).map(|(p, s)| p - s);
    let vs_node = b.rps.zip(node.rps).map(|(b, n)| b / n);
    let cpu = vs_relay(|r| r.cpu_ms_per_1k);
    let p50 = vs_relay(|r| Some(r.lat_us?[0]));
    let rps = vs_relay(|r| r.rps);
    let checks: [(&str, Option<f64>, &str, f64); 7] = [
        ("CPU per 1k seq. calls ÷ relay's", cpu, "≤", 1.1),
        ("echo p50 ÷ relay's", p50, "≤", 1.3),
        ("req/s (32 in flight) ÷ relay's", rps, "≥", 0.9),
        ("RSS added by big calls (MiB)", added, "≤", 20.0),
        ("spawn → initialize (ms)", b.start_ms, "≤", 15.0),
        ("idle RSS after initialize (MiB)", b.rss_idle_mib, "≤", 10.0),
        ("reference: req/s ÷ mcp-remote's", vs_node, "≥", 1.5),
    ];
    println!("\ntargets (alibridge):");
    for (what, value, op, limit) in checks {
        let ok = |v: f64| if op == "≤" { v <= limit } else { v >= limit };
        let verdict = value.map_or("n/a", |v| if ok(v) { "met" } else { "MISSED" });
        let shown = match value {
            Some(v) if limit < 2.0 => format!("{v:.2}"), // a ratio
            v => cell(v),
        };
        println!("  {what}: {shown} (target {op} {limit}) → {verdict}");
    }
}

/// A table cell: "n/a", or the number with one decimal below 100.
fn cell(v: Option<f64>) -> String {
    match v {
        Some(v) if v.abs() < 100.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.0}"),
        None => "n/a".into(),
    }
}
