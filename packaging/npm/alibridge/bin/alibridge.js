#!/usr/bin/env node
// Runs the native alibridge binary that npm installed from this package's optional dependency
// for this platform (alibridge-<platform>-<arch>); nothing is downloaded at install time.
// stdin/stdout/stderr are the child's own, so the MCP client talks to the binary directly.
"use strict";
const { spawn } = require("child_process");
const path = require("path");

const pkg = `alibridge-${process.platform}-${process.arch}`;
const exe = process.platform === "win32" ? "alibridge.exe" : "alibridge";
let binary;
try {
  binary = path.join(path.dirname(require.resolve(`${pkg}/package.json`)), "bin", exe);
} catch {
  process.stderr.write(
    `alibridge: no native binary for ${process.platform}-${process.arch}: the npm package ${pkg} ` +
      "is not installed. Reinstall without --no-optional / --omit=optional, or use a release " +
      "binary or `cargo install alibridge` (https://github.com/alibridge/alibridge#install).\n",
  );
  process.exit(1);
}

const child = spawn(binary, process.argv.slice(2), { stdio: "inherit", windowsHide: true });
// The client stops us with a signal: pass it on, so the bridge closes its session cleanly.
const forward = (signal) => () => child.kill(signal);
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(signal, forward(signal));
child.on("error", (err) => {
  process.stderr.write(`alibridge: cannot start ${binary}: ${err.message}\n`);
  process.exit(1);
});
child.on("exit", (code, signal) => {
  if (signal) {
    process.removeAllListeners(signal);
    process.kill(process.pid, signal);
  }
  process.exit(code === null ? 1 : code);
});
