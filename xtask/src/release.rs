//! What a release checks and publishes beside the packages: every package's version read back
//! and compared with Cargo.toml's, `SHA256SUMS`, and the Homebrew formula filled from it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::npm::npm_manifest;
use crate::tools::read;
use crate::wheel::wheel_version;
use crate::{cargo_version, root, Result};

/// Reads every package in `dir` back and compares its version with Cargo.toml's.
pub(crate) fn verify_versions(dir: &Path, version: &str) -> Result<()> {
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

/// Writes `dir/SHA256SUMS` (`sha256sum` format) over every other file in `dir`.
pub(crate) fn write_checksums(dir: &Path) -> Result<PathBuf> {
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
pub(crate) fn write_formula(dir: &Path) -> Result<PathBuf> {
    let root = root();
    let version = cargo_version(&root)?;
    let sums = read(&dir.join("SHA256SUMS"))?;
    let template = read(&root.join("packaging/homebrew/alibridge.rb"))?;
    let text = fill_formula(&template, &version, &sums)?;
    let path = dir.join("alibridge.rb");
    std::fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
    Ok(path)
}

pub(crate) fn fill_formula(template: &str, version: &str, sums: &str) -> Result<String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::mkdir;

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
}
