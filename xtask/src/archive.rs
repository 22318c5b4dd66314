//! The archive of one platform: `alibridge-<version>-<target>/` with the binary, README.md and
//! LICENSE, as `.tar.gz`, or `.zip` for Windows.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::tools::{copy, mkdir, run};
use crate::{Build, Result};

/// `alibridge-<version>-<target>/{alibridge, README.md, LICENSE}` as `.tar.gz`, or `.zip`
/// for Windows (Windows 10's own `tar` writes zip files too).
pub(crate) fn archive(b: &Build) -> Result<PathBuf> {
    let name = format!("alibridge-{}-{}", b.version, b.target);
    let dir = b.stage.join(&name);
    mkdir(&dir)?;
    copy(b.binary, &dir.join(b.exe))?;
    copy(&b.root.join("README.md"), &dir.join("README.md"))?;
    copy(&b.root.join("LICENSE"), &dir.join("LICENSE"))?;
    let windows = b.target.contains("windows");
    let file = b.out.join(if windows {
        format!("{name}.zip")
    } else {
        format!("{name}.tar.gz")
    });
    let _ = std::fs::remove_file(&file);
    let mut tar = Command::new(tar_program());
    tar.current_dir(b.stage);
    if windows {
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
pub(crate) fn tar_program() -> PathBuf {
    if cfg!(windows) {
        let root = std::env::var_os("SystemRoot").unwrap_or_else(|| r"C:\Windows".into());
        let system = Path::new(&root).join("System32").join("tar.exe");
        if system.is_file() {
            return system;
        }
    }
    PathBuf::from("tar")
}
