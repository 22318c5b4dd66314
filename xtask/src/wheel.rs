//! The Python wheel, built by maturin from `packaging/python/pyproject.toml`, and its version
//! read back.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::tools::{as_if_run_by_hand, capture, python, run};
use crate::{DistOptions, Result};

/// The wheel, built by maturin from `packaging/python/pyproject.toml` with the same release
/// profile, so cargo reuses the binary built above.
pub(crate) fn wheel(root: &Path, version: &str, o: &DistOptions, out: &Path) -> Result<PathBuf> {
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

pub(crate) fn wheels_in(dir: &Path, version: &str) -> Vec<PathBuf> {
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

/// `Version:` from the wheel's METADATA (python reads the zip; maturin needed it anyway).
pub(crate) fn wheel_version(path: &Path) -> Result<String> {
    let script = "import sys, zipfile\n\
                  z = zipfile.ZipFile(sys.argv[1])\n\
                  m = [n for n in z.namelist() if n.endswith('.dist-info/METADATA')]\n\
                  print(next(l.split(':', 1)[1].strip() for l in z.read(m[0]).decode().splitlines() if l.startswith('Version:')))";
    let mut cmd = Command::new(python());
    cmd.args(["-c", script]).arg(path);
    Ok(capture(&mut cmd)?.trim().to_string())
}
