//! Project automation, in Rust so it runs wherever cargo does.
//!
//! - `cargo xtask test`: the whole test suite, as CI runs it (the README's test command): builds
//!   the `cairn` binary the end-to-end tests start, finds or installs the nats-server the
//!   JetStream tests start (see `nats`), checks formatting, runs clippy with warnings as errors,
//!   then every test of the workspace.
//! - `cargo xtask nats-server`: finds or installs that nats-server and prints its path.
//! - `cargo xtask tidy`: the architecture invariants that can be checked as absences (also run by
//!   `cargo test`, as this crate's test).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

mod nats;
mod tidy;

fn main() -> Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    let root = workspace_root();
    match task.as_str() {
        "test" => test(&root),
        "nats-server" => {
            let binary = nats::ensure(&root)?;
            nats::announce(&binary)?;
            println!("export CAIRN_NATS_SERVER={}", binary.display());
            Ok(())
        }
        "tidy" => {
            let problems = tidy::check(&root)?;
            if problems.is_empty() {
                println!("tidy: ok");
                Ok(())
            } else {
                for problem in &problems {
                    eprintln!("tidy: {problem}");
                }
                bail!("{} tidy problem(s)", problems.len())
            }
        }
        _ => {
            eprintln!("usage: cargo xtask <test|tidy|nats-server>");
            std::process::exit(2);
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("tools/xtask is two levels below the root")
        .to_path_buf()
}

fn cargo(root: &Path, args: &[&str]) -> Result<()> {
    cargo_with(root, args, &[])
}

fn cargo_with(root: &Path, args: &[&str], env: &[(&str, &Path)]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    println!("$ cargo {}", args.join(" "));
    let status = Command::new(cargo)
        .args(args)
        .envs(env.iter().map(|(name, value)| (*name, *value)))
        .current_dir(root)
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed: {status}", args.join(" "));
    }
    Ok(())
}

fn test(root: &Path) -> Result<()> {
    let nats_server = nats::ensure(root)?;
    nats::announce(&nats_server)?;
    cargo(root, &["fmt", "--all", "--", "--check"])?;
    cargo(
        root,
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    cargo(root, &["build", "--package", "cairn-cli"])?;
    cargo_with(
        root,
        &["test", "--workspace", "--all-targets"],
        &[("CAIRN_NATS_SERVER", &nats_server)],
    )?;
    Ok(())
}
