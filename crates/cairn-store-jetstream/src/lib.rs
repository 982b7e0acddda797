//! The NATS JetStream backend of the cairn ledger: several cairn nodes share one stream.
//!
//! - **Records.** One JetStream stream (file storage, `DenyDelete`, `DenyPurge`, atomic batch
//!   publish allowed), one message per record; the stream sequence is the ledger position. Each
//!   ledger stream is one subject (see [`wire`]); `Nats-Expected-Last-Subject-Sequence` is the
//!   per-stream version check, `Nats-Msg-Id` (the event id) de-duplicates within the server's
//!   window, and the event-id index every node builds makes idempotency permanent. An append of
//!   several events is one atomic batch: all of it is stored, or none.
//! - **Nodes.** Every node applies the stream in order from the first record, builds the same
//!   envelopes, Merkle tree and indexes, and publishes them on its live feed. A node applies its
//!   own appends from their acknowledgements (the positions) and the bodies it published; it
//!   fetches other nodes' records with batched direct gets, or consumes the stream while other
//!   nodes write much. An append returns once the node has applied its own records, so a read on
//!   that node sees them.
//! - **Checkpoints** go to their own stream, each expecting the previous one, so two sealers
//!   can never record checkpoints out of order.
//! - **Data keys** live in a KV bucket; destroying one writes a tombstone revision and then
//!   securely erases the revision that held the key (JetStream overwrites its bytes).
//! - [`lease`]: the sealer lease, a KV entry with a time to live; [`shared`]: the ledger's
//!   identity, created by the first node and adopted by the others.
//!
//! Start-up refuses a server older than [`SERVER_VERSION_MIN`] and a stream whose configuration
//! would break the ledger (see [`store::check_stream_config`]).

mod keys;
pub mod lease;
pub mod shared;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod wire;

use std::fmt;

pub use store::{
    JetStreamOptions, JetStreamStore, STREAM_NAME_BYTES_MAX, check_stream_config,
    record_stream_config,
};

/// A nats-server version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion(pub u32, pub u32, pub u32);

impl ServerVersion {
    /// Parses `2.15.1`, `v2.15.1` or `2.12.0-beta`.
    pub fn parse(text: &str) -> Option<ServerVersion> {
        let text = text.trim().trim_start_matches('v');
        let core = text.split(['-', '+']).next()?;
        let mut parts = core.split('.').map(|part| part.parse::<u32>().ok());
        Some(ServerVersion(
            parts.next()??,
            parts.next()??,
            parts.next().flatten().unwrap_or(0),
        ))
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// The oldest nats-server cairn runs on: 2.12 brought atomic batch publish, without which an
/// append of several events could be stored in part.
pub const SERVER_VERSION_MIN: ServerVersion = ServerVersion(2, 12, 0);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_order() {
        assert_eq!(
            ServerVersion::parse("v2.15.1"),
            Some(ServerVersion(2, 15, 1))
        );
        assert_eq!(
            ServerVersion::parse("2.12.0-beta.1"),
            Some(ServerVersion(2, 12, 0))
        );
        assert_eq!(ServerVersion::parse("2.9"), Some(ServerVersion(2, 9, 0)));
        assert_eq!(ServerVersion::parse("nats"), None);
        assert!(ServerVersion(2, 9, 10) < SERVER_VERSION_MIN);
        assert!(ServerVersion(2, 15, 1) >= SERVER_VERSION_MIN);
    }

    #[test]
    fn stream_names_and_replicas_are_checked_before_anything_is_sent() {
        let options = |stream: &str, replicas: usize| JetStreamOptions {
            stream: stream.into(),
            replicas,
            ..JetStreamOptions::default()
        };
        assert!(options("CAIRN", 1).validate().is_ok());
        assert!(options("ledger-prod_2", 3).validate().is_ok());
        for bad in ["", "CAIRN.X", "CAIRN X", "CAIRN*", "C>", &"X".repeat(49)] {
            let error = options(bad, 1).validate().unwrap_err().to_string();
            assert!(error.contains("nats_stream"), "{bad:?}: {error}");
        }
        assert!(options("CAIRN", 0).validate().is_err());
        assert!(options("CAIRN", 6).validate().is_err());
    }
}
