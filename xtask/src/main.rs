//! `cargo xtask`: builds alibridge's release packages for one platform, the same way on a
//! developer's machine, in `.ci/run` and in `.github/workflows/release.yml`.
//!
//! ```text
//! cargo xtask dist [--target TRIPLE] [--skip-build] [--zig] [--no-wheel] [--no-npm]
//! cargo xtask checksums DIR          # (re)writes DIR/SHA256SUMS over every file in DIR
//! cargo xtask formula DIR            # DIR/alibridge.rb: the Homebrew formula, from SHA256SUMS
//! cargo xtask version                # prints the version in Cargo.toml
//! ```
//!
//! `dist` builds `alibridge` once (`cargo build --release --locked`, or `cargo zigbuild` with
//! `--zig`) and packages that one binary into `target/dist/`:
//! - `alibridge-<version>-<target>.tar.gz` (`.zip` for Windows) with README.md and LICENSE;
//! - the Python wheel, by maturin (`packaging/python/pyproject.toml`, `bindings = "bin"`). maturin
//!   runs cargo itself, with the same profile and flags, so cargo finds the binary fresh and
//!   builds nothing again;
//! - the npm tarballs: the launcher `alibridge` (`packaging/npm/alibridge`, a few lines of JS)
//!   and this platform's `alibridge-<os>-<cpu>` holding the binary, which the launcher lists as
//!   an optional dependency: npm installs only the one matching the machine, nothing downloads
//!   at install time;
//! - `SHA256SUMS` over everything above.
//!
//! Every package is then read back and its version compared with Cargo.toml's: a mismatch fails
//! the command, so a release never ships packages of different versions.
//!
//! The parts: `archive` (the `.tar.gz` / `.zip`), `npm` (the launcher and platform packages),
//! `wheel` (maturin), `release` (versions read back, `SHA256SUMS`, the Homebrew formula) and
//! `tools` (running programs, touching files, errors that say which).

mod archive;
mod npm;
mod release;
mod tools;
mod wheel;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use archive::archive;
use npm::npm_packages;
use release::{verify_versions, write_checksums, write_formula};
use tools::{as_if_run_by_hand, cargo, host_target, read, run};
use wheel::wheel;

type Result<T> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("dist") => DistOptions::parse(&args[1..]).and_then(|o| dist(&o)),
        Some("checksums") => match args.get(1) {
            Some(dir) => write_checksums(Path::new(dir)).map(|_| ()),
            None => Err("usage: cargo xtask checksums DIR".into()),
        },
        Some("formula") => match args.get(1) {
            Some(dir) => write_formula(Path::new(dir)).map(|p| println!("xtask: {}", p.display())),
            None => Err("usage: cargo xtask formula DIR".into()),
        },
        Some("version") => cargo_version(&root()).map(|v| println!("{v}")),
        _ => Err(USAGE.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: cargo xtask dist [--target TRIPLE] [--skip-build] [--zig] [--wheel-compat TAG,…] [--no-wheel] [--no-npm]\n       cargo xtask checksums DIR\n       cargo xtask formula DIR\n       cargo xtask version";

#[derive(Debug, Default)]
struct DistOptions {
    target: Option<String>,
    skip_build: bool,
    zig: bool,
    /// maturin's `--compatibility` tags (the release's static musl builds are both manylinux
    /// and musllinux).
    wheel_compat: Vec<String>,
    wheel: bool,
    npm: bool,
}

impl DistOptions {
    fn parse(args: &[String]) -> Result<DistOptions> {
        let mut o = DistOptions {
            wheel: true,
            npm: true,
            ..Default::default()
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--target" => o.target = Some(it.next().ok_or("--target needs a value")?.clone()),
                "--skip-build" => o.skip_build = true,
                "--zig" => o.zig = true,
                "--wheel-compat" => {
                    let v = it.next().ok_or("--wheel-compat needs a value")?;
                    o.wheel_compat = v.split(',').map(str::to_string).collect();
                }
                "--no-wheel" => o.wheel = false,
                "--no-npm" => o.npm = false,
                other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
            }
        }
        Ok(o)
    }
}

/// What one `dist` run packages and where: the same for every package it builds.
struct Build<'a> {
    root: &'a Path,
    binary: &'a Path,
    /// The binary's file name (`alibridge`, `alibridge.exe`).
    exe: &'a str,
    version: &'a str,
    target: &'a str,
    /// Scratch space for the package trees, removed when done.
    stage: &'a Path,
    /// `target/dist`, where the packages go.
    out: &'a Path,
}

/// The workspace root (xtask lives one level below it).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

/// The `version` of `[package]` in the root Cargo.toml.
fn cargo_version(root: &Path) -> Result<String> {
    let text = read(&root.join("Cargo.toml"))?;
    let mut in_package = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package {
            if let Some(v) = line
                .strip_prefix("version")
                .map(str::trim_start)
                .and_then(|r| r.strip_prefix('='))
            {
                return Ok(v.trim().trim_matches('"').to_string());
            }
        }
    }
    Err("no version in [package] of Cargo.toml".into())
}

fn dist(o: &DistOptions) -> Result<()> {
    let root = root();
    let version = cargo_version(&root)?;
    let target = match &o.target {
        Some(t) => t.clone(),
        None => host_target()?,
    };
    let windows = target.contains("windows");
    let exe = if windows {
        "alibridge.exe"
    } else {
        "alibridge"
    };
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let binary = match &o.target {
        Some(t) => target_dir.join(t).join("release").join(exe),
        None => target_dir.join("release").join(exe),
    };

    if !o.skip_build {
        let mut cmd = Command::new(cargo());
        as_if_run_by_hand(&mut cmd);
        cmd.current_dir(&root);
        cmd.args([if o.zig { "zigbuild" } else { "build" }]);
        cmd.args(["--release", "--locked", "--bin", "alibridge"]);
        if let Some(t) = &o.target {
            cmd.args(["--target", t]);
        }
        run(&mut cmd)?;
    }
    if !binary.is_file() {
        return Err(format!(
            "{} does not exist: build it first, or drop --skip-build",
            binary.display()
        ));
    }

    let out = target_dir.join("dist");
    let stage = target_dir.join("dist-stage");
    let _ = std::fs::remove_dir_all(&stage);
    std::fs::create_dir_all(&out).map_err(|e| format!("create {}: {e}", out.display()))?;
    std::fs::create_dir_all(&stage).map_err(|e| format!("create {}: {e}", stage.display()))?;
    println!(
        "xtask: packaging {} {version} for {target}",
        binary.display()
    );

    let build = Build {
        root: &root,
        binary: &binary,
        exe,
        version: &version,
        target: &target,
        stage: &stage,
        out: &out,
    };
    let archive = archive(&build)?;
    println!("xtask: {}", archive.display());

    if o.npm {
        for tgz in npm_packages(&build)? {
            println!("xtask: {}", tgz.display());
        }
    }
    if o.wheel {
        let wheel = wheel(&root, &version, o, &out)?;
        println!("xtask: {}", wheel.display());
    }
    let _ = std::fs::remove_dir_all(&stage);

    verify_versions(&out, &version)?;
    let sums = write_checksums(&out)?;
    println!(
        "xtask: {} (all packages carry version {version})",
        sums.display()
    );
    Ok(())
}
