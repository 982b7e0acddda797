//! Governance events: which policy bundle was in force from when, runtime grants and revocations
//! of roles, and calls that were denied. They are not entity events (no aggregate folds them into
//! a view), so they have their own enum beside [`crate::Event`]; they are encoded the same way
//! (postcard, one schema version, a golden sample each in `tests/golden`).
//!
//! Streams (tenant / aggregate type / aggregate id):
//! - `cairn-system/policy/bundle`: [`GovernanceEvent::PolicyActivated`] and
//!   [`GovernanceEvent::PolicyRefused`], one per start or reload;
//! - `cairn-system/access/grants`: every runtime grant and revocation, whatever its tenant (one
//!   stream, so a start reads one stream to know them all);
//! - `TENANT/audit/denied`: calls denied in that tenant (`cairn-system/audit/denied` for calls
//!   about no tenant or an invalid one): the first denial of a call in a window as
//!   [`GovernanceEvent::AccessDenied`], the further ones counted and recorded when the window
//!   ends as [`GovernanceEvent::AccessDeniedRepeated`];
//! - `TENANT/stewardship/holds`: legal holds placed and released;
//! - `TENANT/stewardship/erasures`: every erasure, naming its rule or request.
//!
//! Principals, roles and tenants are validated by the policy crate before an event is built; this
//! crate only carries them.

use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError, SCHEMA_VERSION};

/// The tenant whose streams hold what is about no one tenant. It is a valid tenant id, so the
/// gRPC edge refuses it as a caller's tenant.
pub const SYSTEM_TENANT: &str = "cairn-system";
/// The aggregate type of the policy bundle's stream.
pub const POLICY_AGGREGATE: &str = "policy";
/// The aggregate id of the policy bundle's stream.
pub const POLICY_STREAM_ID: &str = "bundle";
/// The aggregate type of grant streams.
pub const ACCESS_AGGREGATE: &str = "access";
/// The aggregate id of a tenant's grant stream.
pub const GRANTS_STREAM_ID: &str = "grants";
/// The aggregate type of denied-call streams.
pub const AUDIT_AGGREGATE: &str = "audit";
/// The aggregate id of a tenant's denied-call stream.
pub const DENIED_STREAM_ID: &str = "denied";
/// The aggregate type of a tenant's stewardship streams (legal holds, erasures).
pub const STEWARDSHIP_AGGREGATE: &str = "stewardship";
/// The aggregate id of a tenant's legal-hold stream.
pub const HOLDS_STREAM_ID: &str = "holds";
/// The aggregate id of a tenant's erasure log.
pub const ERASURES_STREAM_ID: &str = "erasures";
/// Every aggregate type that holds governance events: raw ledger appends to them are refused,
/// like appends to entity streams, so no one can forge an activation, a grant or an erasure.
pub const AGGREGATE_TYPES: &[&str] = &[
    POLICY_AGGREGATE,
    ACCESS_AGGREGATE,
    AUDIT_AGGREGATE,
    STEWARDSHIP_AGGREGATE,
];

/// Why personal data was erased.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErasureCause {
    /// A retention rule expired it.
    Retention {
        /// The rule, as the policy file states it (`p, acme, personal, 365` at its line).
        rule: String,
        /// The data class the rule is about.
        class: String,
        /// The retention in days.
        days: u32,
        /// When the key last sealed data, microseconds.
        last_sealed_micros: i64,
    },
    /// The data subject (or someone for them) asked.
    Request {
        /// The request's id, as the caller names it (a ticket number).
        request_id: String,
        /// Why.
        reason: String,
    },
}

/// A governance event.
///
/// A new variant goes at the end: postcard encodes a variant by its index, so inserting one
/// would change the encoding of every variant after it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GovernanceEvent {
    /// A policy bundle came into force (at start or on reload); every later event carries its
    /// hash until the next activation.
    PolicyActivated {
        /// The bundle's hash (blake3 over its files).
        bundle_hash: [u8; 32],
        /// The bundle in force before, if any.
        previous: Option<[u8; 32]>,
        /// The git commit the bundle's directory was at, when it is in a git checkout.
        git_commit: Option<String>,
        /// Where it came from: a directory, or `built-in`.
        source: String,
        /// Why: `start`, or the reload's trigger (`signal`, `rpc`).
        trigger: String,
        /// How many of the bundle's own policy tests passed (all of them, or it is refused).
        tests_passed: u32,
    },
    /// A reload was refused: the bundle did not parse or failed its own tests. The active
    /// bundle stays.
    PolicyRefused {
        /// The refused bundle's hash, when its files could be read.
        bundle_hash: Option<[u8; 32]>,
        /// The bundle in force, which stays.
        active: [u8; 32],
        /// Where it came from.
        source: String,
        /// The reload's trigger.
        trigger: String,
        /// Why it was refused (first failures).
        reason: String,
    },
    /// A principal was given a role in a tenant (or `*`) at run time.
    AccessGranted {
        /// Who gets the role.
        principal: String,
        /// The role (`role:NAME`).
        role: String,
        /// The tenant, or `*`.
        tenant: String,
        /// Why.
        reason: String,
    },
    /// A runtime grant was taken back.
    AccessRevoked {
        /// Who loses the role.
        principal: String,
        /// The role.
        role: String,
        /// The tenant, or `*`.
        tenant: String,
        /// Why.
        reason: String,
    },
    /// A call was denied. Never holds a credential.
    AccessDenied {
        /// The authenticated principal.
        principal: String,
        /// The gRPC method (`/cairn.v1.FeedbackService/SubmitFeedback`).
        method: String,
        /// The object checked.
        object: String,
        /// The action checked.
        action: String,
        /// The tenant the call named (`*` for none; the raw text, cut to 64 bytes, if invalid).
        tenant: String,
        /// The policy bundle that denied it.
        bundle_hash: [u8; 32],
    },
    /// A legal hold was placed: no personal data it covers is erased until it is released.
    LegalHoldPlaced {
        /// The hold's id, unique within its tenant.
        hold_id: String,
        /// The data subject it covers; `None`: every subject of the tenant. Sealed under the
        /// subject's key (the personal part).
        subject: Option<String>,
        /// Why (a case reference).
        reason: String,
    },
    /// A legal hold was released.
    LegalHoldReleased {
        /// The hold's id.
        hold_id: String,
        /// Why.
        reason: String,
    },
    /// Personal data was erased: its data key was destroyed, so every record sealed under it is
    /// unreadable for good, while every hash, proof and checkpoint stays as it was.
    DataErased {
        /// The destroyed key's id.
        key_id: [u8; 16],
        /// The data subject, when the erasure was asked for by subject (a retention sweep does
        /// not know whose key it is). Sealed under the subject's key, so once the erasure is done
        /// the record no longer says whom it was about: the request id does.
        subject: Option<String>,
        /// The rule or the request.
        cause: ErasureCause,
        /// How many records the key sealed.
        records: u64,
    },
    /// More denials of one call (the same principal, method, object, action, tenant and bundle)
    /// in the window its [`GovernanceEvent::AccessDenied`] opened: they were counted, not
    /// recorded one by one, so the denied stream's total (each `access.denied` plus the `count`
    /// of each `access.denied.repeated`) is the number of denied calls. Never holds a credential.
    AccessDeniedRepeated {
        /// The authenticated principal.
        principal: String,
        /// The gRPC method.
        method: String,
        /// The object checked.
        object: String,
        /// The action checked.
        action: String,
        /// The tenant the calls named (as in `access.denied`).
        tenant: String,
        /// The policy bundle that denied them.
        bundle_hash: [u8; 32],
        /// How many denials were counted (at least 1).
        count: u64,
        /// When the first of them was denied, microseconds.
        first_at_micros: i64,
        /// When the last of them was denied, microseconds.
        last_at_micros: i64,
    },
}

impl GovernanceEvent {
    /// The type name.
    pub fn event_type(&self) -> &'static str {
        match self {
            GovernanceEvent::PolicyActivated { .. } => "policy.activated",
            GovernanceEvent::PolicyRefused { .. } => "policy.refused",
            GovernanceEvent::AccessGranted { .. } => "access.granted",
            GovernanceEvent::AccessRevoked { .. } => "access.revoked",
            GovernanceEvent::AccessDenied { .. } => "access.denied",
            GovernanceEvent::AccessDeniedRepeated { .. } => "access.denied.repeated",
            GovernanceEvent::LegalHoldPlaced { .. } => "legal_hold.placed",
            GovernanceEvent::LegalHoldReleased { .. } => "legal_hold.released",
            GovernanceEvent::DataErased { .. } => "data.erased",
        }
    }

    /// The aggregate type of the stream that holds it.
    pub fn aggregate_type(&self) -> &'static str {
        match self {
            GovernanceEvent::PolicyActivated { .. } | GovernanceEvent::PolicyRefused { .. } => {
                POLICY_AGGREGATE
            }
            GovernanceEvent::AccessGranted { .. } | GovernanceEvent::AccessRevoked { .. } => {
                ACCESS_AGGREGATE
            }
            GovernanceEvent::AccessDenied { .. } | GovernanceEvent::AccessDeniedRepeated { .. } => {
                AUDIT_AGGREGATE
            }
            GovernanceEvent::LegalHoldPlaced { .. }
            | GovernanceEvent::LegalHoldReleased { .. }
            | GovernanceEvent::DataErased { .. } => STEWARDSHIP_AGGREGATE,
        }
    }

    /// The data subject a hold or an erasure names: its id is personal data, sealed under the
    /// subject's own key (so an erasure of the subject also erases the record of whom it was).
    pub fn personal_subject(&self) -> Option<&str> {
        match self {
            GovernanceEvent::LegalHoldPlaced { subject, .. }
            | GovernanceEvent::DataErased { subject, .. } => subject.as_deref(),
            _ => None,
        }
    }

    /// The clear part (postcard): the event without its personal part, the subject of a hold or
    /// an erasure ([`GovernanceEvent::personal_subject`]), which is sealed apart.
    pub fn encode(&self) -> Vec<u8> {
        let mut clear = self.clone();
        if let GovernanceEvent::LegalHoldPlaced { subject, .. }
        | GovernanceEvent::DataErased { subject, .. } = &mut clear
        {
            *subject = None;
        }
        postcard::to_stdvec(&clear).expect("governance events always encode")
    }

    /// Decodes a stored governance event from its clear part and, when it was opened, its
    /// personal part (the subject's id).
    pub fn decode_with_subject(
        event_type: &str,
        schema_version: u16,
        bytes: &[u8],
        subject: Option<&str>,
    ) -> Result<GovernanceEvent, CodecError> {
        let mut event = GovernanceEvent::decode(event_type, schema_version, bytes)?;
        if let GovernanceEvent::LegalHoldPlaced { subject: field, .. }
        | GovernanceEvent::DataErased { subject: field, .. } = &mut event
        {
            *field = subject.map(str::to_owned);
        }
        Ok(event)
    }

    /// Decodes a stored governance event's clear part (a hold's or an erasure's subject stays
    /// `None`: it is sealed apart).
    pub fn decode(
        event_type: &str,
        schema_version: u16,
        bytes: &[u8],
    ) -> Result<GovernanceEvent, CodecError> {
        if schema_version != SCHEMA_VERSION {
            return Err(CodecError::UnknownType {
                event_type: event_type.to_owned(),
                schema_version,
            });
        }
        let event: GovernanceEvent = codec::decode(event_type, bytes)?;
        if event.event_type() != event_type {
            return Err(CodecError::Malformed {
                event_type: event_type.to_owned(),
                reason: format!("the payload is a {}", event.event_type()),
            });
        }
        Ok(event)
    }
}
