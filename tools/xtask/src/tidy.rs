//! The architecture invariants of ARCHITECTURE.md that a text search can hold.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Crates that may do no I/O, read no clock and draw no randomness.
const PURE_CRATES: &[&str] = &["cairn-domain", "cairn-ledger"];
/// What a pure crate's sources must never contain.
const IMPURE_NAMES: &[&str] = &[
    "std::fs",
    "std::net",
    "std::io::stdin",
    "std::env",
    "SystemTime",
    "Instant::now",
    "getrandom",
    "rand::",
    "tokio",
    "std::thread",
];

/// (name in source or manifest, the crates allowed to name it).
const CONFINED: &[(&str, &[&str])] = &[
    (
        "tonic",
        &["cairn-grpc", "cairn-cli", "cairn-e2e", "cairn-bench"],
    ),
    (
        "prost",
        &["cairn-grpc", "cairn-cli", "cairn-e2e", "cairn-bench"],
    ),
    ("casbin", &["cairn-policy"]),
    (
        "sled",
        &[
            "cairn-store-embedded",
            "cairn-store-jetstream",
            "cairn-projections",
        ],
    ),
    (
        "async_nats",
        &["cairn-store-jetstream", "cairn-projections"],
    ),
    (
        "async-nats",
        &["cairn-store-jetstream", "cairn-projections"],
    ),
];

/// Every problem found under `root`.
pub fn check(root: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let crates_dir = root.join("crates");
    for entry in
        fs::read_dir(&crates_dir).with_context(|| format!("reading {}", crates_dir.display()))?
    {
        let dir = entry?.path();
        let Some(name) = dir.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        let manifest = fs::read_to_string(dir.join("Cargo.toml"))
            .with_context(|| format!("{name}/Cargo.toml"))?;
        if !manifest.contains(&format!("name = \"{name}\"")) {
            problems.push(format!(
                "crates/{name}: the package name must equal the folder name"
            ));
        }
        let lib = dir.join("src/lib.rs");
        let main = dir.join("src/main.rs");
        let root_file = if lib.exists() { lib } else { main };
        let opening = fs::read_to_string(&root_file).unwrap_or_default();
        if !opening.trim_start().starts_with("//!") {
            problems.push(format!(
                "{}: must open with a //! paragraph",
                relative(root, &root_file)
            ));
        }
        let sources = rust_files(&dir.join("src"))?;
        if PURE_CRATES.contains(&name.as_str()) {
            for file in &sources {
                let text = fs::read_to_string(file)?;
                for forbidden in IMPURE_NAMES {
                    if code_lines(&text).any(|line| line.contains(forbidden)) {
                        problems.push(format!(
                            "{}: a pure crate names {forbidden}",
                            relative(root, file)
                        ));
                    }
                }
            }
        }
        for (needle, allowed) in CONFINED {
            if allowed.contains(&name.as_str()) {
                continue;
            }
            if dependency_lines(&manifest).any(|line| line.starts_with(needle)) {
                problems.push(format!(
                    "crates/{name}/Cargo.toml: only {allowed:?} may depend on {needle}"
                ));
            }
            for file in &sources {
                let text = fs::read_to_string(file)?;
                let pattern = format!("{}::", needle.replace('-', "_"));
                if code_lines(&text).any(|line| line.contains(&pattern)) {
                    problems.push(format!(
                        "{}: only {allowed:?} may name {needle}",
                        relative(root, file)
                    ));
                }
            }
        }
    }
    Ok(problems)
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Lines of code, without comment lines.
fn code_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
}

/// Lines of a manifest's dependency tables.
fn dependency_lines(manifest: &str) -> impl Iterator<Item = &str> {
    let mut in_dependencies = false;
    manifest.lines().filter(move |line| {
        let line = line.trim();
        if line.starts_with('[') {
            in_dependencies = line.contains("dependencies");
            return false;
        }
        in_dependencies && !line.is_empty()
    })
}

fn rust_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    if !dir.exists() {
        return Ok(files);
    }
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files.extend(rust_files(&path)?);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_is_tidy() {
        let problems = check(&crate::workspace_root()).unwrap();
        assert!(
            problems.is_empty(),
            "tidy problems:\n{}",
            problems.join("\n")
        );
    }

    #[test]
    fn tidy_catches_a_violation() {
        let dir = std::env::temp_dir().join(format!("cairn-tidy-{}", std::process::id()));
        let crate_dir = dir.join("crates/cairn-ledger/src");
        fs::create_dir_all(&crate_dir).unwrap();
        fs::write(
            dir.join("crates/cairn-ledger/Cargo.toml"),
            "[package]\nname = \"cairn-ledger\"\n[dependencies]\nsled = \"0.34\"\n",
        )
        .unwrap();
        fs::write(
            crate_dir.join("lib.rs"),
            "//! doc\nfn f() { let _ = std::time::SystemTime::now(); }\n",
        )
        .unwrap();
        let problems = check(&dir).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        assert!(
            problems.iter().any(|p| p.contains("SystemTime")),
            "{problems:?}"
        );
        assert!(problems.iter().any(|p| p.contains("sled")), "{problems:?}");
    }
}
