//! `bench --otel [--quick]`: what exporting telemetry costs (issue 23). alibridge relays the
//! same sequential `echo` calls to the bench's upstream twice per round, once with telemetry
//! off and once with `--otlp-endpoint` pointing at a local OTLP/HTTP sink (answers 200 to
//! every export), with the specification's default export schedule: a batch goes when it
//! holds 512 spans (every 256 calls here) or after 5 s, so the export work falls inside the
//! measured window as it does for a user; the metric export, once a minute, is not a per-call
//! cost. Measured: CPU time of the alibridge process (all threads,
//! export threads included) per 1000 calls; the medians over the rounds and their ratio
//! (and the range of the per-round ratios: each round's off and on run back to back, so a
//! round's ratio is the fairer figure on a loaded machine), against the target of at
//! most 1.1×. See `docs/observability.md`.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::{
    bridge_bin, cpu_time, echo, fail, ms, runtime, start_upstream, Res, StdioPeer, Target,
    INITIALIZED, MIB,
};

pub fn main(quick: bool, instructions: bool) {
    let rt = runtime().unwrap_or_else(|e| fail(1, e));
    if instructions {
        return rt
            .block_on(count_instructions(quick))
            .unwrap_or_else(|e| fail(1, e));
    }
    // The specification's default schedule (spans every 5 s or 512, metrics every 60 s), as
    // `--instructions` runs it: what a user gets. Read by the bridges this process spawns.
    std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "5000");
    std::env::set_var("OTEL_METRIC_EXPORT_INTERVAL", "60000");
    rt.block_on(run(quick)).unwrap_or_else(|e| fail(1, e));
}

/// `--otel --instructions`: instructions per call, export off and on, counted by valgrind's
/// callgrind (the CPU time of a process on a shared 2-core machine varies by ±20 % from run
/// to run; instruction counts repeat to 0.1 %). Each mode runs a bridge for `short` calls
/// and one for `long` calls: the difference over `long - short` calls leaves out start-up
/// and exit. The export runs with the specification's default schedule (spans in batches of
/// 512 or every 5 s, metrics every 60 s), so the figure is the per-call cost; a metric
/// export is per minute, not per call.
async fn count_instructions(quick: bool) -> Res<()> {
    let valgrind = std::process::Command::new("valgrind")
        .arg("--version")
        .output()
        .map_err(|_| "valgrind is not installed (apt-get install valgrind)")?;
    if !valgrind.status.success() {
        return Err("valgrind --version failed".into());
    }
    let Setup {
        bridge,
        off,
        on,
        exports,
    } = set_up()?;
    let (short, long) = if quick { (100, 600) } else { (200, 1200) };
    // ALIBRIDGE_BENCH_CG_DIR keeps the callgrind profiles (for `callgrind_annotate`).
    let kept = std::env::var_os("ALIBRIDGE_BENCH_CG_DIR").map(std::path::PathBuf::from);
    let dir = kept.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("alibridge-bench-cg-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir)?;
    println!(
        "alibridge bench --otel --instructions: {short} and {long} sequential calls per mode, \
         under callgrind, {RUNS} runs"
    );
    // A run's figure moves by about ±0.5 % of the total (the allocator's state, where the
    // export thread's timer falls): the median of a few runs is the figure.
    let (mut offs, mut ons, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=RUNS {
        let mut per_call = Vec::new();
        for (label, args) in [("off", &off), ("on", &on)] {
            let name = |n: &str| dir.join(format!("{label}-{n}-{run}"));
            let a = instructions(&bridge, args, short, &name("short")).await?;
            let b = instructions(&bridge, args, long, &name("long")).await?;
            per_call.push((b as f64 - a as f64) / (long - short) as f64);
        }
        let ratio = per_call[1] / per_call[0];
        println!(
            "  run {run}: export off {:.0}, on {:.0} instructions per call: {ratio:.3}",
            per_call[0], per_call[1]
        );
        offs.push(per_call[0]);
        ons.push(per_call[1]);
        ratios.push(ratio);
    }
    if kept.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let (lo, hi) = ratios.iter().fold((f64::INFINITY, 0f64), |(lo, hi), r| {
        (lo.min(*r), hi.max(*r))
    });
    let ratio = median(&mut ratios);
    let verdict = if ratio <= 1.1 { "met" } else { "NOT met" };
    println!();
    println!(
        "| instructions per call (median) | export off | export on | on ÷ off | per run | target |"
    );
    println!("|---|---:|---:|---:|---:|---|");
    println!(
        "| alibridge | {:.0} | {:.0} | {ratio:.3} | {lo:.3}–{hi:.3} | ≤ 1.1 ({verdict}) |",
        median(&mut offs),
        median(&mut ons)
    );
    println!("  exports the sink received: {}", exports.load(Relaxed));
    Ok(())
}

/// Runs of `--instructions`; the median ratio is reported.
const RUNS: usize = 3;

/// The instructions a fresh bridge runs for `calls` sequential calls (and its start and
/// exit), counted by callgrind into `out`.
async fn instructions(
    bridge: &std::path::Path,
    args: &[String],
    calls: usize,
    out: &std::path::Path,
) -> Res<u64> {
    let mut full = vec![
        "--tool=callgrind".to_string(),
        format!("--callgrind-out-file={}", out.display()),
        bridge.display().to_string(),
    ];
    full.extend_from_slice(args);
    let peer = StdioPeer::spawn(std::path::Path::new("valgrind"), &full)?;
    peer.initialize().await?;
    peer.write_line(INITIALIZED.to_vec()).await?;
    let t = Target::Stdio(Box::new(peer));
    for _ in 0..calls {
        echo(&t).await?;
    }
    if let Target::Stdio(peer) = t {
        peer.close().await;
    }
    let text = std::fs::read_to_string(out)
        .map_err(|e| format!("no callgrind output at {}: {e}", out.display()))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| format!("no instruction total in {}", out.display()).into())
}

/// What both measures run: the bridge, its arguments with export off and on (the upstream and
/// the OTLP sink they name are started here), and the count of exports the sink takes.
struct Setup {
    bridge: std::path::PathBuf,
    off: Vec<String>,
    on: Vec<String>,
    exports: Arc<AtomicUsize>,
}

fn set_up() -> Res<Setup> {
    let bridge = bridge_bin()?;
    let addr = start_upstream(MIB)?;
    let (sink, exports) = start_sink()?;
    let off = vec![
        format!("http://{addr}/mcp"),
        "--transport".into(),
        "http-only".into(),
    ];
    let mut on = off.clone();
    on.extend(["--otlp-endpoint".into(), format!("http://{sink}")]);
    Ok(Setup {
        bridge,
        off,
        on,
        exports,
    })
}

async fn run(quick: bool) -> Res<()> {
    let Setup {
        bridge,
        off,
        on,
        exports,
    } = set_up()?;
    let (calls, rounds) = if quick { (1000, 3) } else { (10_000, 5) };
    println!("alibridge bench --otel: {calls} sequential calls × {rounds} rounds, off then on");
    let (mut cpu_off, mut cpu_on) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let a = cpu_per_1k(&bridge, &off, calls).await?;
        let b = cpu_per_1k(&bridge, &on, calls).await?;
        println!("  round {round}: off {a:.1} ms, on {b:.1} ms per 1000 calls");
        cpu_off.push(a);
        cpu_on.push(b);
    }
    let ratios: Vec<f64> = cpu_off.iter().zip(&cpu_on).map(|(a, b)| b / a).collect();
    let (lo, hi) = ratios.iter().fold((f64::INFINITY, 0f64), |(lo, hi), r| {
        (lo.min(*r), hi.max(*r))
    });
    let (off_ms, on_ms) = (median(&mut cpu_off), median(&mut cpu_on));
    let ratio = on_ms / off_ms;
    let verdict = if ratio <= 1.1 { "met" } else { "NOT met" };
    println!();
    println!(
        "| CPU per 1k seq. calls (ms, median) | export off | export on | on ÷ off | per round | target |"
    );
    println!("|---|---:|---:|---:|---:|---|");
    println!(
        "| alibridge | {off_ms:.1} | {on_ms:.1} | {ratio:.2} | {lo:.2}–{hi:.2} | ≤ 1.1 ({verdict}) |"
    );
    println!("  exports the sink received: {}", exports.load(Relaxed));
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// CPU milliseconds of one fresh bridge per 1000 sequential `echo` calls, after a warm-up.
async fn cpu_per_1k(program: &std::path::Path, args: &[String], calls: usize) -> Res<f64> {
    let peer = StdioPeer::spawn(program, args)?;
    peer.initialize().await?;
    peer.write_line(INITIALIZED.to_vec()).await?;
    let t = Arc::new(Target::Stdio(Box::new(peer)));
    for _ in 0..calls / 10 {
        echo(&t).await?;
    }
    let before = t
        .pid()
        .and_then(cpu_time)
        .ok_or("no CPU time (Linux only)")?;
    for _ in 0..calls {
        echo(&t).await?;
    }
    let after = t
        .pid()
        .and_then(cpu_time)
        .ok_or("no CPU time (Linux only)")?;
    if let Some(Target::Stdio(peer)) = Arc::into_inner(t) {
        peer.close().await;
    }
    Ok(ms(after - before) * 1000.0 / calls as f64)
}

/// A local OTLP/HTTP sink on its own thread: reads each request (Content-Length bodies, keep
/// alive) and answers 200 with an empty body; counts the requests.
fn start_sink() -> Res<(std::net::SocketAddr, Arc<AtomicUsize>)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let rt = runtime()?;
    std::thread::spawn(move || {
        rt.block_on(async move {
            let listener = TcpListener::from_std(listener).expect("a tokio listener");
            while let Ok((stream, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut read = BufReader::new(read);
                    loop {
                        let mut length = 0usize;
                        loop {
                            let mut line = String::new();
                            if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            let line = line.trim_end();
                            if line.is_empty() {
                                break;
                            }
                            if let Some((k, v)) = line.split_once(':') {
                                if k.eq_ignore_ascii_case("content-length") {
                                    length = v.trim().parse().unwrap_or(0);
                                }
                            }
                        }
                        let mut body = vec![0; length];
                        if read.read_exact(&mut body).await.is_err() {
                            return;
                        }
                        seen.fetch_add(1, Relaxed);
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                        if write.write_all(ok).await.is_err() {
                            return;
                        }
                    }
                });
            }
        })
    });
    Ok((addr, count))
}
