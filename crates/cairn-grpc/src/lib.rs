//! The gRPC edge of cairn: code generated from `proto/cairn/v1`, the tonic services (thin: convert,
//! call `cairn-service`, map errors in one table), and the server with health and reflection.
//!
//! This is the only crate that names tonic or prost types; it holds no business rules.

mod convert;
mod error;
mod ledger_api;
mod server;

/// Code generated from `proto/cairn/v1/*.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("cairn.v1");

    /// The encoded descriptor set of every cairn proto file, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/cairn_descriptor.bin"));
}

pub use convert::{checkpoint_from_proto, checkpoint_to_proto, record_from_proto};
pub use error::{RESUME_FROM_METADATA, status_from_service, status_from_store};
pub use ledger_api::LedgerApi;
pub use server::{ServerLimits, serve};
