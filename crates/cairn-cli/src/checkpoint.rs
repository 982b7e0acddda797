//! `cairn checkpoint`: the latest signed checkpoint, checked against the key the server serves,
//! and optionally saved for a later `cairn verify --checkpoint`.

use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use cairn_grpc::checkpoint_from_proto;
use cairn_ledger::{PublicKey, SignedCheckpoint};
use clap::Args;

use crate::checkpoint_file;
use crate::client::{Client, ServerArgs};
use crate::output::format_micros;

/// `cairn checkpoint`.
#[derive(Debug, Args)]
pub struct CheckpointArgs {
    #[command(flatten)]
    server: ServerArgs,

    /// Save the checkpoint (176 bytes as hex, one line) for a later `cairn verify --checkpoint`.
    #[arg(long, value_name = "FILE")]
    save: Option<PathBuf>,
}

/// Fetches, checks, prints and optionally saves the latest checkpoint.
pub async fn run(args: CheckpointArgs) -> anyhow::Result<()> {
    let mut client = Client::connect(&args.server).await?;
    let info = client.log_info().await?;
    let served_key = PublicKey(info.public_key.as_slice().try_into().map_err(|_| {
        anyhow!(
            "GetLogInfo on {} returned a public key of {} bytes, not 32",
            client.server(),
            info.public_key.len()
        )
    })?);
    let proto_checkpoint = client.checkpoint().await?;
    let signed = checkpoint_from_proto(&proto_checkpoint).with_context(|| {
        format!(
            "GetCheckpoint on {} returned a malformed checkpoint",
            client.server()
        )
    })?;
    print_checkpoint(&signed);
    if signed.checkpoint.log_id.0.as_slice() != info.log_id.as_slice() {
        bail!(
            "the checkpoint's log id {} is not the server's log id {}",
            signed.checkpoint.log_id,
            hex::encode(&info.log_id)
        );
    }
    signed.verify(&served_key).with_context(|| {
        format!("the checkpoint does not verify under the server's public key {served_key}")
    })?;
    println!(
        "signature   valid under the server's public key (pin it: cairn verify --public-key {served_key})"
    );
    if let Some(path) = &args.save {
        checkpoint_file::save(path, &signed)?;
        println!("saved to    {}", path.display());
    }
    Ok(())
}

/// Prints every field of a signed checkpoint, one per line.
pub fn print_checkpoint(signed: &SignedCheckpoint) {
    let checkpoint = &signed.checkpoint;
    println!("log id      {}", checkpoint.log_id);
    println!("tree size   {}", checkpoint.tree_size);
    println!("root        {}", checkpoint.root);
    println!("time        {}", format_micros(checkpoint.timestamp.0));
    println!("public key  {}", signed.public_key);
    println!("signature   {}", hex::encode(signed.signature));
}
