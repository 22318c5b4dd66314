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

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use serde_json::{json, Value};

type Result<T> = std::result::Result<T, String>;

/// The platform packages the launcher may pull in: (Rust target, npm `os`, npm `cpu`). The
/// release workflow builds all of them; `dist` builds the one of `--target`.
const PLATFORMS: [(&str, &str, &str); 5] = [
    ("x86_64-unknown-linux-musl", "linux", "x64"),
    ("aarch64-unknown-linux-musl", "linux", "arm64"),
    ("x86_64-apple-darwin", "darwin", "x64"),
    ("aarch64-apple-darwin", "darwin", "arm64"),
    ("x86_64-pc-windows-msvc", "win32", "x64"),
];

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

    let archive = archive(&root, &binary, exe, &version, &target, &stage, &out)?;
    println!("xtask: {}", archive.display());

    if o.npm {
        for tgz in npm_packages(&root, &binary, exe, &version, &target, &stage, &out)? {
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

/// `alibridge-<version>-<target>/{alibridge, README.md, LICENSE}` as `.tar.gz`, or `.zip`
/// for Windows (Windows 10's own `tar` writes zip files too).
fn archive(
    root: &Path,
    binary: &Path,
    exe: &str,
    version: &str,
    target: &str,
    stage: &Path,
    out: &Path,
) -> Result<PathBuf> {
    let name = format!("alibridge-{version}-{target}");
    let dir = stage.join(&name);
    mkdir(&dir)?;
    copy(binary, &dir.join(exe))?;
    copy(&root.join("README.md"), &dir.join("README.md"))?;
    copy(&root.join("LICENSE"), &dir.join("LICENSE"))?;
    let file = out.join(if target.contains("windows") {
        format!("{name}.zip")
    } else {
        format!("{name}.tar.gz")
    });
    let _ = std::fs::remove_file(&file);
    let mut tar = Command::new(tar_program());
    tar.current_dir(stage);
    if target.contains("windows") {
        tar.arg("-a");
        tar.args(["-cf".as_ref(), file.as_os_str(), name.as_ref()]);
    } else {
        tar.args(["-czf".as_ref(), file.as_os_str(), name.as_ref()]);
    }
    run(&mut tar)?;
    Ok(file)
}

/// `tar`; on Windows the system's own bsdtar, which writes zip files (the GNU tar of Git for
/// Windows, first on a bash step's PATH, does not).
fn tar_program() -> PathBuf {
    if cfg!(windows) {
        let root = std::env::var_os("SystemRoot").unwrap_or_else(|| r"C:\Windows".into());
        let system = Path::new(&root).join("System32").join("tar.exe");
        if system.is_file() {
            return system;
        }
    }
    PathBuf::from("tar")
}

/// npm `os`/`cpu` of a Rust target triple.
fn npm_platform(target: &str) -> Result<(&'static str, &'static str)> {
    let os = if target.contains("linux") {
        "linux"
    } else if target.contains("apple-darwin") {
        "darwin"
    } else if target.contains("windows") {
        "win32"
    } else {
        return Err(format!("no npm platform for target {target}"));
    };
    let cpu = if target.starts_with("x86_64") {
        "x64"
    } else if target.starts_with("aarch64") {
        "arm64"
    } else {
        return Err(format!("no npm cpu for target {target}"));
    };
    Ok((os, cpu))
}

/// The launcher package and this platform's binary package, packed by `npm pack`.
fn npm_packages(
    root: &Path,
    binary: &Path,
    exe: &str,
    version: &str,
    target: &str,
    stage: &Path,
    out: &Path,
) -> Result<Vec<PathBuf>> {
    let (os, cpu) = npm_platform(target)?;
    let platform_name = format!("alibridge-{os}-{cpu}");
    let template = root.join("packaging").join("npm");

    // The launcher: copied as it is committed, plus README and LICENSE.
    let launcher = stage.join("npm-alibridge");
    copy_tree(&template.join("alibridge"), &launcher)?;
    copy(&root.join("README.md"), &launcher.join("README.md"))?;
    copy(&root.join("LICENSE"), &launcher.join("LICENSE"))?;
    let manifest: Value = serde_json::from_str(&read(&launcher.join("package.json"))?)
        .map_err(|e| format!("packaging/npm/alibridge/package.json: {e}"))?;
    let wanted = PLATFORMS
        .iter()
        .map(|(_, os, cpu)| format!("alibridge-{os}-{cpu}"))
        .chain([platform_name.clone()]);
    for name in wanted {
        let listed = &manifest["optionalDependencies"][&name];
        if listed.as_str() != Some(version) {
            return Err(format!(
                "packaging/npm/alibridge/package.json must list {name} {version} in optionalDependencies (found {listed})"
            ));
        }
    }

    // The platform package: generated, with the binary under bin/.
    let pkg = stage.join(format!("npm-{platform_name}"));
    mkdir(&pkg.join("bin"))?;
    copy(binary, &pkg.join("bin").join(exe))?;
    set_executable(&pkg.join("bin").join(exe))?;
    copy(&root.join("LICENSE"), &pkg.join("LICENSE"))?;
    std::fs::write(
        pkg.join("README.md"),
        format!(
            "# {platform_name}\n\nThe `alibridge` binary for {os}-{cpu} ({target}). Install the \
             `alibridge` package instead (`npx -y alibridge <URL>`): it picks this one for you.\n"
        ),
    )
    .map_err(|e| format!("write README: {e}"))?;
    let platform_manifest = json!({
        "name": platform_name,
        "version": version,
        "description": format!("The alibridge binary for {os}-{cpu}; install `alibridge` instead"),
        "license": manifest["license"],
        "repository": manifest["repository"],
        "homepage": manifest["homepage"],
        "os": [os],
        "cpu": [cpu],
        "files": ["bin/", "README.md", "LICENSE"],
        "preferUnplugged": true,
    });
    std::fs::write(
        pkg.join("package.json"),
        serde_json::to_string_pretty(&platform_manifest).expect("json") + "\n",
    )
    .map_err(|e| format!("write package.json: {e}"))?;

    let mut packed = Vec::new();
    for dir in [&launcher, &pkg] {
        let mut cmd = Command::new(npm());
        cmd.current_dir(dir)
            .args(["pack", "--silent", "--pack-destination"])
            .arg(out);
        let name = capture(&mut cmd)?;
        let name = name.lines().last().ok_or("npm pack printed no file name")?;
        packed.push(out.join(name.trim()));
    }
    Ok(packed)
}

/// The wheel, built by maturin from `packaging/python/pyproject.toml` with the same release
/// profile, so cargo reuses the binary built above.
fn wheel(root: &Path, version: &str, o: &DistOptions, out: &Path) -> Result<PathBuf> {
    let python = root.join("packaging").join("python");
    let before: Vec<PathBuf> = wheels_in(out, version);
    for w in before {
        let _ = std::fs::remove_file(w);
    }
    let mut cmd = Command::new(std::env::var("MATURIN").unwrap_or_else(|_| "maturin".into()));
    as_if_run_by_hand(&mut cmd);
    cmd.current_dir(&python)
        .args(["build", "--release", "--locked", "--out"])
        .arg(out);
    if let Some(t) = &o.target {
        cmd.args(["--target", t]);
    }
    if o.zig {
        cmd.arg("--zig");
    }
    if !o.wheel_compat.is_empty() {
        cmd.arg("--compatibility").args(&o.wheel_compat);
    }
    run(&mut cmd).map_err(|e| {
        format!("{e} (maturin comes from PyPI: `pip install maturin`; --no-wheel skips the wheel)")
    })?;
    let mut built = wheels_in(out, version);
    built.pop().ok_or_else(|| "maturin wrote no wheel".into())
}

fn wheels_in(dir: &Path, version: &str) -> Vec<PathBuf> {
    let prefix = format!("alibridge-{version}-");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap_or_default().to_string_lossy();
            n.starts_with(&prefix) && n.ends_with(".whl")
        })
        .collect();
    v.sort();
    v
}

/// Reads every package in `dir` back and compares its version with Cargo.toml's.
fn verify_versions(dir: &Path, version: &str) -> Result<()> {
    let mut problems = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| format!("read {}: {e}", dir.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let found = if name.ends_with(".whl") {
            wheel_version(&path)?
        } else if name.ends_with(".tgz") {
            let manifest = npm_manifest(&path)?;
            if let Some(deps) = manifest["optionalDependencies"].as_object() {
                for (dep, v) in deps {
                    if v.as_str() != Some(version) {
                        problems.push(format!("{name}: optional dependency {dep} is {v}"));
                    }
                }
            }
            manifest["version"].as_str().unwrap_or_default().to_string()
        } else if name.ends_with(".tar.gz") || name.ends_with(".zip") {
            name.strip_prefix("alibridge-")
                .and_then(|r| r.split('-').next())
                .unwrap_or_default()
                .to_string()
        } else {
            continue;
        };
        if found != version {
            problems.push(format!("{name} has version {found:?}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "packages that do not carry Cargo.toml's version {version}:\n  {}",
            problems.join("\n  ")
        ))
    }
}

/// `Version:` from the wheel's METADATA (python reads the zip; maturin needed it anyway).
fn wheel_version(path: &Path) -> Result<String> {
    let script = "import sys, zipfile\n\
                  z = zipfile.ZipFile(sys.argv[1])\n\
                  m = [n for n in z.namelist() if n.endswith('.dist-info/METADATA')]\n\
                  print(next(l.split(':', 1)[1].strip() for l in z.read(m[0]).decode().splitlines() if l.startswith('Version:')))";
    let mut cmd = Command::new(python());
    cmd.args(["-c", script]).arg(path);
    Ok(capture(&mut cmd)?.trim().to_string())
}

/// `package/package.json` of an npm tarball.
fn npm_manifest(path: &Path) -> Result<Value> {
    let mut cmd = Command::new(tar_program());
    cmd.arg("-xzOf").arg(path).arg("package/package.json");
    serde_json::from_str(&capture(&mut cmd)?)
        .map_err(|e| format!("{}: package.json: {e}", path.display()))
}

/// Writes `dir/SHA256SUMS` (`sha256sum` format) over every other file in `dir`.
fn write_checksums(dir: &Path) -> Result<PathBuf> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| format!("read {}: {e}", dir.display()))?
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "SHA256SUMS")
        .collect();
    names.sort();
    let mut text = String::new();
    for n in &names {
        let bytes = std::fs::read(dir.join(n)).map_err(|e| format!("read {n}: {e}"))?;
        let d = ring::digest::digest(&ring::digest::SHA256, &bytes);
        for b in d.as_ref() {
            let _ = write!(text, "{b:02x}");
        }
        let _ = writeln!(text, "  {n}");
    }
    let path = dir.join("SHA256SUMS");
    std::fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
    Ok(path)
}

/// Fills `packaging/homebrew/alibridge.rb` with the version and the archives' SHA-256 from
/// `dir/SHA256SUMS`; every archive the formula names must be there.
fn write_formula(dir: &Path) -> Result<PathBuf> {
    let root = root();
    let version = cargo_version(&root)?;
    let sums = read(&dir.join("SHA256SUMS"))?;
    let template = read(&root.join("packaging/homebrew/alibridge.rb"))?;
    let text = fill_formula(&template, &version, &sums)?;
    let path = dir.join("alibridge.rb");
    std::fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
    Ok(path)
}

fn fill_formula(template: &str, version: &str, sums: &str) -> Result<String> {
    let mut text = template.replace("@VERSION@", version);
    while let Some(start) = text.find("@SHA256:") {
        let end = start
            + text[start + 1..]
                .find('@')
                .ok_or("unterminated @SHA256:…@ in the formula")?
            + 2;
        let target = &text[start + 8..end - 1];
        let file = format!("alibridge-{version}-{target}.tar.gz");
        let sum = sums
            .lines()
            .find_map(|l| l.strip_suffix(&file).map(str::trim))
            .ok_or_else(|| format!("SHA256SUMS has no {file}"))?
            .to_string();
        text.replace_range(start..end, &sum);
    }
    Ok(text)
}

fn host_target() -> Result<String> {
    let out = capture(Command::new(rustc()).arg("-vV"))?;
    out.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_string)
        .ok_or_else(|| "rustc -vV printed no host".into())
}

/// Drops what `cargo run` set for xtask itself (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, …): build
/// scripts that watch such a variable (ring watches `CARGO_MANIFEST_DIR`) would otherwise see
/// it change, and the release build `.ci/run` made just before would be rebuilt from ring up.
fn as_if_run_by_hand(cmd: &mut Command) {
    for (name, _) in std::env::vars_os() {
        let n = name.to_string_lossy();
        if n.starts_with("CARGO_PKG_")
            || matches!(
                n.as_ref(),
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
            )
        {
            cmd.env_remove(&name);
        }
    }
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn rustc() -> String {
    std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into())
}

fn npm() -> &'static str {
    if cfg!(windows) {
        "npm.cmd"
    } else {
        "npm"
    }
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| {
        if cfg!(windows) {
            "python".into()
        } else {
            "python3".into()
        }
    })
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed: {status}"))
    }
}

fn capture(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{cmd:?} failed: {}", out.status));
    }
    String::from_utf8(out.stdout).map_err(|e| format!("{cmd:?} printed non-UTF-8: {e}"))
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))
}

fn mkdir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| format!("create {}: {e}", path.display()))
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| format!("copy {} to {}: {e}", from.display(), to.display()))
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    mkdir(to)?;
    for entry in std::fs::read_dir(from).map_err(|e| format!("read {}: {e}", from.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        let dest = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &dest)?;
        } else {
            copy(&entry.path(), &dest)?;
        }
    }
    Ok(())
}

#[cfg(unix)]
fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

#[cfg(not(unix))]
fn set_executable(_: &Path) -> Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_release_target_maps_to_its_npm_platform() {
        for (target, os, cpu) in PLATFORMS {
            assert_eq!(npm_platform(target).unwrap(), (os, cpu), "{target}");
        }
        assert!(npm_platform("riscv64gc-unknown-linux-gnu").is_err());
    }

    #[test]
    fn a_package_of_another_version_fails_the_check() {
        let dir = std::env::temp_dir().join(format!("xtask-versions-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        mkdir(&dir).unwrap();
        std::fs::write(
            dir.join("alibridge-0.1.0-x86_64-unknown-linux-gnu.tar.gz"),
            b"",
        )
        .unwrap();
        assert_eq!(verify_versions(&dir, "0.1.0"), Ok(()));
        std::fs::write(
            dir.join("alibridge-0.2.0-x86_64-unknown-linux-gnu.tar.gz"),
            b"",
        )
        .unwrap();
        let err = verify_versions(&dir, "0.1.0").unwrap_err();
        assert!(err.contains("alibridge-0.2.0-x86_64"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_formula_gets_the_version_and_every_archive_checksum() {
        let template = read(&root().join("packaging/homebrew/alibridge.rb")).unwrap();
        let targets = [
            "aarch64-apple-darwin",
            "x86_64-apple-darwin",
            "aarch64-unknown-linux-musl",
            "x86_64-unknown-linux-musl",
        ];
        let sums: String = targets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                format!(
                    "{}  alibridge-9.8.7-{t}.tar.gz\n",
                    format!("{i}").repeat(64)
                )
            })
            .collect();
        let text = fill_formula(&template, "9.8.7", &sums).unwrap();
        assert!(text.contains("version \"9.8.7\""), "{text}");
        for i in 0..targets.len() {
            assert!(text.contains(&format!("sha256 \"{}\"", format!("{i}").repeat(64))));
        }
        assert!(!text.contains('@'), "a placeholder is left: {text}");
        let missing = sums.lines().skip(1).collect::<Vec<_>>().join("\n");
        assert!(fill_formula(&template, "9.8.7", &missing)
            .unwrap_err()
            .contains("aarch64-apple-darwin"));
    }

    #[test]
    fn the_launcher_lists_every_platform_package_at_the_cargo_version() {
        let root = root();
        let version = cargo_version(&root).unwrap();
        let manifest: Value = serde_json::from_str(
            &read(&root.join("packaging/npm/alibridge/package.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(manifest["version"], version.as_str());
        let deps = manifest["optionalDependencies"].as_object().unwrap();
        let expected: Vec<String> = PLATFORMS
            .iter()
            .map(|(_, os, cpu)| format!("alibridge-{os}-{cpu}"))
            .collect();
        let mut listed: Vec<&String> = deps.keys().collect();
        listed.sort();
        let mut want: Vec<&String> = expected.iter().collect();
        want.sort();
        assert_eq!(listed, want);
        assert!(deps.values().all(|v| v == version.as_str()), "{deps:?}");
    }
}
