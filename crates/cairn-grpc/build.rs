//! Compiles `proto/cairn/v1/*.proto` with protox (pure Rust: no system protoc needed) and writes
//! the encoded descriptor set for gRPC reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    // One compilation over every file: one descriptor set, so reflection serves all of them.
    let files = [
        "ledger.proto",
        "common.proto",
        "feedback.proto",
        "decision.proto",
        "prioritization.proto",
        "initiative.proto",
        "lineage.proto",
        "policy.proto",
        "stewardship.proto",
    ]
    .map(|name| proto_root.join("cairn/v1").join(name));
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let descriptors = protox::compile(&files, [&proto_root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("cairn_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
