//! The npm packages: the launcher `alibridge` (committed under `packaging/npm/alibridge`, which
//! must list every platform package at this version) and this platform's generated
//! `alibridge-<os>-<cpu>` holding the binary, both packed by `npm pack`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::archive::tar_program;
use crate::tools::{capture, copy, copy_tree, mkdir, npm, read, set_executable};
use crate::{Build, Result};

/// The platform packages the launcher may pull in: (Rust target, npm `os`, npm `cpu`). The
/// release workflow builds all of them; `dist` builds the one of `--target`.
pub(crate) const PLATFORMS: [(&str, &str, &str); 5] = [
    ("x86_64-unknown-linux-musl", "linux", "x64"),
    ("aarch64-unknown-linux-musl", "linux", "arm64"),
    ("x86_64-apple-darwin", "darwin", "x64"),
    ("aarch64-apple-darwin", "darwin", "arm64"),
    ("x86_64-pc-windows-msvc", "win32", "x64"),
];

/// npm `os`/`cpu` of a Rust target triple.
pub(crate) fn npm_platform(target: &str) -> Result<(&'static str, &'static str)> {
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
pub(crate) fn npm_packages(b: &Build) -> Result<Vec<PathBuf>> {
    let Build {
        root,
        binary,
        exe,
        version,
        target,
        stage,
        out,
    } = *b;
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

/// `package/package.json` of an npm tarball.
pub(crate) fn npm_manifest(path: &Path) -> Result<Value> {
    let mut cmd = Command::new(tar_program());
    cmd.arg("-xzOf").arg(path).arg("package/package.json");
    serde_json::from_str(&capture(&mut cmd)?)
        .map_err(|e| format!("{}: package.json: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{cargo_version, root};

    #[test]
    fn every_release_target_maps_to_its_npm_platform() {
        for (target, os, cpu) in PLATFORMS {
            assert_eq!(npm_platform(target).unwrap(), (os, cpu), "{target}");
        }
        assert!(npm_platform("riscv64gc-unknown-linux-gnu").is_err());
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
