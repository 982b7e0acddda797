//! `cairn info`: what a client needs to know about a server: the log id, the public key to pin,
//! the head, the latest checkpoint and the limits.

use anyhow::Context;
use cairn_grpc::checkpoint_from_proto;
use clap::Args;

use crate::client::{Client, ServerArgs};
use crate::output::format_micros;

/// `cairn info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    #[command(flatten)]
    server: ServerArgs,
}

/// Prints the log info.
pub async fn run(args: InfoArgs) -> anyhow::Result<()> {
    let mut client = Client::connect(&args.server).await?;
    let info = client.log_info().await?;
    println!("server         {}", client.server());
    println!("log id         {}", hex::encode(&info.log_id));
    println!(
        "public key     {} (pin it to verify checkpoints)",
        hex::encode(&info.public_key)
    );
    println!("head position  {}", info.head_position);
    println!("head root      {}", hex::encode(&info.head_root));
    match &info.latest_checkpoint {
        Some(checkpoint) => {
            let signed = checkpoint_from_proto(checkpoint).with_context(|| {
                format!(
                    "GetLogInfo on {} returned a malformed checkpoint",
                    client.server()
                )
            })?;
            println!(
                "checkpoint     tree size {} root {} at {}",
                signed.checkpoint.tree_size,
                signed.checkpoint.root,
                format_micros(signed.checkpoint.timestamp.0)
            );
        }
        None => println!("checkpoint     none signed yet"),
    }
    if let Some(limits) = &info.limits {
        println!("limits");
        for (name, value) in [
            ("message_bytes_max", limits.message_bytes_max),
            ("append_events_max", limits.append_events_max),
            ("append_batch_bytes_max", limits.append_batch_bytes_max),
            ("payload_bytes_max", limits.payload_bytes_max),
            ("page_size_max", limits.page_size_max),
            ("concurrent_streams_max", limits.concurrent_streams_max),
            ("subscription_lag_max", limits.subscription_lag_max),
        ] {
            println!("  {name:<24} {value}");
        }
    }
    Ok(())
}
