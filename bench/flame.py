#!/usr/bin/env python3
"""Profiles one stdio bridge on sequential `tools/call echo` calls against the bench upstream.

    python3 bench/flame.py perf      OUT.svg   [--calls N] [--relay]   # flame graph (perf + inferno)
    python3 bench/flame.py callgrind           [--calls N] [--relay]   # instructions per call

The upstream is `bench --upstream` (the same minimal server `examples/bench.rs` measures
against). The subject is target/release/alibridge (`--transport http-only`), or with `--relay`
the bench's minimal relay. `perf` needs /usr/bin/perf and inferno (`cargo install inferno`);
`callgrind` needs valgrind: it counts instructions, so it is repeatable on a busy machine. It
runs the subject twice (N and 3N calls) and reports the difference per call, which leaves out
start-up and shutdown.
"""
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target", "release")
BRIDGE = os.environ.get("ALIBRIDGE_BIN", os.path.join(REL, "alibridge"))
BENCH = os.environ.get("BENCH_BIN", os.path.join(REL, "examples", "bench"))


def upstream():
    p = subprocess.Popen([BENCH, "--upstream"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    addr = p.stdout.readline().decode().strip()
    return p, addr


def subject(addr, relay):
    if relay:
        return [BENCH, "--relay", addr]
    return [BRIDGE, f"http://{addr}/mcp", "--transport", "http-only"]


def drive(cmd, calls):
    """Runs `cmd`, sends initialize, initialized and `calls` echo calls one at a time."""
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)

    def call(i, method, params):
        msg = {"jsonrpc": "2.0", "id": i, "method": method, "params": params}
        p.stdin.write(json.dumps(msg).encode() + b"\n")
        p.stdin.flush()
        line = p.stdout.readline()
        if b'"result"' not in line:
            sys.exit(f"not a result: {line[:200]!r}")

    call(0, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                           "clientInfo": {"name": "flame", "version": "0"}})
    p.stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
    for i in range(1, calls + 1):
        call(i, "tools/call", {"name": "echo", "arguments": {"text": "hello"}})
    p.stdin.close()
    p.wait()


def callgrind_total(cmd, calls):
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "cg.out")
        drive(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"] + cmd, calls)
        for line in open(out):
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    sys.exit("callgrind wrote no totals")


def main():
    args = sys.argv[1:]
    relay = "--relay" in args
    calls = int(args[args.index("--calls") + 1]) if "--calls" in args else None
    up, addr = upstream()
    try:
        if args[0] == "perf":
            svg = args[1]
            data = svg + ".perf.data"
            perf = ["perf", "record", "-q", "-F", "2000", "--call-graph", "dwarf,16384",
                    "-o", data, "--"]
            drive(perf + subject(addr, relay), calls or 20000)
            script = subprocess.run(["perf", "script", "-i", data], capture_output=True,
                                    check=True).stdout
            folded = subprocess.run(["inferno-collapse-perf"], input=script,
                                    capture_output=True, check=True).stdout
            title = f"{os.path.basename(svg)}: {calls or 20000} sequential echo calls"
            graph = subprocess.run(["inferno-flamegraph", "--title", title], input=folded,
                                   capture_output=True, check=True).stdout
            open(svg, "wb").write(graph)
            open(svg + ".folded", "wb").write(folded)
            os.remove(data)
        elif args[0] == "callgrind":
            n = calls or 1000
            a = callgrind_total(subject(addr, relay), n)
            b = callgrind_total(subject(addr, relay), 3 * n)
            print(f"{'relay' if relay else 'alibridge'}: {(b - a) / (2 * n):.0f} instructions "
                  f"per call ({a} for {n} calls, {b} for {3 * n})")
        else:
            sys.exit(__doc__)
    finally:
        up.stdin.close()
        up.wait()


if __name__ == "__main__":
    main()
