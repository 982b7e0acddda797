//! The gRPC edge of cairn: code generated from `proto/cairn/v1`, the tonic services (thin: convert,
//! call `cairn-service`, map errors in one table), and the server with health and reflection.
//! `LedgerService` serves raw events and proofs; `FeedbackService`, `DecisionService`,
//! `PrioritizationService` and `InitiativeService` run the feedback loop's commands and reads, and
//! `LineageService` walks what came from what.
//!
//! This is the only crate that names tonic or prost types; it holds no business rules.

mod access;
mod api_support;
pub mod auth;
mod convert;
mod decision_api;
pub mod domain_convert;
mod error;
mod feedback_api;
mod initiative_api;
mod ledger_api;
mod lineage_api;
mod policy_api;
mod prioritization_api;
mod server;
mod stewardship_api;
mod view_convert;

/// Code generated from `proto/cairn/v1/*.proto`. Every file is in package `cairn.v1`, so this one
/// module holds them all: the ledger (`ledger.proto`), the shared messages (`common.proto`) and the
/// feedback-loop services (`feedback.proto`, `decision.proto`, `prioritization.proto`,
/// `initiative.proto`, `lineage.proto`), each with its `*_service_server` and `*_service_client`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("cairn.v1");

    /// The encoded descriptor set of every cairn proto file, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/cairn_descriptor.bin"));
}

pub use access::ACCESS_DENIED_RULE;
pub use convert::{checkpoint_from_proto, checkpoint_to_proto, record_from_proto};
pub use decision_api::DecisionApi;
pub use error::{CURRENT_VERSION_METADATA, FIELD_METADATA, RULE_METADATA};
pub use error::{RESUME_FROM_METADATA, status_from_service, status_from_store};
pub use feedback_api::FeedbackApi;
pub use initiative_api::InitiativeApi;
pub use ledger_api::LedgerApi;
pub use lineage_api::LineageApi;
pub use policy_api::PolicyApi;
pub use prioritization_api::PrioritizationApi;
pub use server::{ServerLimits, Services, TlsSettings, serve, serve_tls};
pub use stewardship_api::StewardshipApi;

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::proto;

    /// Reflection serves `FILE_DESCRIPTOR_SET`: it must hold every service of every file.
    #[test]
    fn descriptor_set_holds_every_service() {
        let set = prost_types::FileDescriptorSet::decode(proto::FILE_DESCRIPTOR_SET).unwrap();
        let mut services: Vec<String> = set
            .file
            .iter()
            .flat_map(|file| file.service.iter())
            .map(|service| service.name().to_owned())
            .collect();
        services.sort();
        assert_eq!(
            services,
            [
                "DecisionService",
                "FeedbackService",
                "InitiativeService",
                "LedgerService",
                "LineageService",
                "PolicyService",
                "PrioritizationService",
                "StewardshipService",
            ]
        );
    }
}
