//! Stewardship: retention of personal data, legal holds, and erasure on request.
//!
//! Personal data is sealed under its data subject's key (per tenant, per generation: see
//! `Ledger`), so erasing is destroying keys: the records stay, every hash, proof and checkpoint
//! still verifies, and the sealed parts can never be opened again.
//!
//! - **Retention.** The bundle's `retention/` rules (casbin, `cairn_policy::RetentionPolicy`) say
//!   per data class and tenant how many days personal data is kept after its key last sealed
//!   anything. A sweep finds every key whose data has expired, skips those a legal hold covers,
//!   destroys the rest and records `data.erased` naming the rule. A preview answers the same
//!   without destroying anything.
//! - **Legal holds** (`legal_hold.placed` / `legal_hold.released` in `TENANT/stewardship/holds`)
//!   cover one data subject or a whole tenant; nothing they cover is erased, by retention or on
//!   request, until they are released.
//! - **Erasure on request** destroys every key a subject has had in a tenant and records
//!   `data.erased` naming the request. Personal data recorded for the subject afterwards is sealed
//!   under a new key.
//!
//! A sweep finds keys by reading the ledger's envelopes (key id, tenant, data class, time); it
//! costs a read of the whole ledger (about a second per million records here). An index of keys in
//! the read models would make it incremental.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use cairn_domain::governance::{
    ERASURES_STREAM_ID, ErasureCause, GovernanceEvent, HOLDS_STREAM_ID, STEWARDSHIP_AGGREGATE,
};
use cairn_domain::limits::REASON_BYTES_MAX;
use cairn_ledger::{DataClass, KeyId, Position, StreamId, StreamVersion, TenantId};
use cairn_policy::RetentionPolicy;
use cairn_store::{EventStore, KeyState, KeyStore};

use crate::error::ServiceError;
use crate::governance::{self, Governance};
use crate::ledger::Ledger;

/// Records read from the ledger at once by a sweep.
const SCAN_PAGE_RECORDS: usize = 4096;
/// Longest hold id or erasure request id, in bytes.
pub const STEWARDSHIP_ID_BYTES_MAX: usize = 128;
/// Most legal holds in force in one tenant.
pub const HOLDS_MAX: usize = 10_000;
const DAY_MICROS: i64 = 86_400_000_000;

/// What the ledger says of one data key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyUse {
    /// The key.
    pub key_id: KeyId,
    /// The tenant of the records it sealed.
    pub tenant: TenantId,
    /// The data classes of those records.
    pub classes: BTreeSet<DataClass>,
    /// When it last sealed a record (the ledger's recording time), microseconds.
    pub last_sealed_micros: i64,
    /// How many records it sealed.
    pub records: u64,
}

/// A legal hold in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    /// Its id.
    pub hold_id: String,
    /// The subject it covers; `None`: the whole tenant.
    pub subject: Option<String>,
    /// Why.
    pub reason: String,
    /// The position of `legal_hold.placed`.
    pub placed_at: Position,
}

/// A key whose data a retention rule has expired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expired {
    /// The key and its use.
    pub key: KeyUse,
    /// The rule, as the file states it.
    pub rule: String,
    /// The class the rule is about.
    pub class: String,
    /// The rule's days.
    pub days: u32,
    /// The hold that keeps it, if one does.
    pub held_by: Option<String>,
}

/// What a retention sweep would erase (or erased).
#[derive(Clone, Debug, Default)]
pub struct RetentionReport {
    /// Expired and not held: erased by a run.
    pub erase: Vec<Expired>,
    /// Expired but held.
    pub held: Vec<Expired>,
    /// Keys already destroyed (erased before), not counted again.
    pub already_erased: usize,
    /// The ledger position the scan read through.
    pub scanned_through: Position,
    /// The rules in force, as their file states them.
    pub rules: Vec<String>,
    /// Positions of the `data.erased` events a run recorded.
    pub recorded: Vec<Position>,
}

/// What an erasure on request did.
#[derive(Clone, Debug)]
pub struct Erasure {
    /// The keys destroyed now.
    pub keys: Vec<KeyId>,
    /// The positions of the `data.erased` events.
    pub recorded: Vec<Position>,
    /// Records sealed under them.
    pub records: u64,
}

/// A recorded `data.erased`.
pub type ErasureEntry = governance::LoggedEvent;

/// The stewardship use cases.
pub struct Stewardship<S> {
    ledger: Arc<Ledger<S>>,
    governance: Arc<Governance<S>>,
    /// Serialises sweeps, holds and erasures of the server, so a hold placed during a sweep is
    /// seen by it or the sweep is done before it.
    changing: tokio::sync::Mutex<()>,
}

impl<S: EventStore + KeyStore> Stewardship<S> {
    /// Stewardship over `ledger`, with the retention rules of the bundle `governance` has in force.
    pub fn new(ledger: Arc<Ledger<S>>, governance: Arc<Governance<S>>) -> Stewardship<S> {
        Stewardship {
            ledger,
            governance,
            changing: tokio::sync::Mutex::new(()),
        }
    }

    fn retention(&self) -> Result<Option<RetentionPolicy>, ServiceError> {
        RetentionPolicy::from_bundle(&self.governance.active().bundle).map_err(|error| {
            ServiceError::InvalidPolicy {
                file: cairn_policy::RETENTION_POLICY_PATH.into(),
                reason: error.to_string(),
            }
        })
    }

    /// Every data key the ledger's records name, with its use; only `tenant`'s when given.
    pub async fn key_uses(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<(Vec<KeyUse>, Position), ServiceError> {
        let store = self.ledger.store();
        let mut uses: BTreeMap<KeyId, KeyUse> = BTreeMap::new();
        let mut next = Position(1);
        let mut through = Position(0);
        loop {
            let page = store.read_all(next, SCAN_PAGE_RECORDS).await?;
            let Some(last) = page.last() else { break };
            through = last.position();
            next = Position(through.0 + 1);
            for record in &page {
                let envelope = &record.envelope;
                let Some(key_id) = envelope.key_id else {
                    continue;
                };
                // A hold or an erasure sealed under the subject's key is not the subject's
                // contribution: it neither counts as data of the key nor renews its retention.
                if cairn_domain::governance::AGGREGATE_TYPES
                    .contains(&envelope.stream.aggregate_type.as_str())
                {
                    continue;
                }
                if tenant.is_some_and(|tenant| *tenant != envelope.stream.tenant) {
                    continue;
                }
                let entry = uses.entry(key_id).or_insert_with(|| KeyUse {
                    key_id,
                    tenant: envelope.stream.tenant.clone(),
                    classes: BTreeSet::new(),
                    last_sealed_micros: envelope.recorded_at.0,
                    records: 0,
                });
                entry.classes.insert(envelope.data_class);
                entry.last_sealed_micros = entry.last_sealed_micros.max(envelope.recorded_at.0);
                entry.records += 1;
            }
        }
        Ok((uses.into_values().collect(), through))
    }

    /// The legal holds in force in `tenant`.
    pub async fn holds(&self, tenant: &TenantId) -> Result<Vec<Hold>, ServiceError> {
        let stream = stream(tenant, HOLDS_STREAM_ID)?;
        let mut holds: Vec<Hold> = Vec::new();
        for (position, event, unreadable) in governance::read_opened(&self.ledger, &stream).await? {
            match event {
                // A hold's subject is sealed under the subject's key, which no erasure destroys
                // while the hold is in force; if it cannot be read all the same, the hold is taken
                // to cover the whole tenant, so nothing is erased that it might cover.
                GovernanceEvent::LegalHoldPlaced {
                    hold_id,
                    subject,
                    reason,
                } => holds.push(Hold {
                    hold_id,
                    subject: if unreadable { None } else { subject },
                    reason,
                    placed_at: position,
                }),
                GovernanceEvent::LegalHoldReleased { hold_id, .. } => {
                    holds.retain(|hold| hold.hold_id != hold_id)
                }
                other => {
                    return Err(ServiceError::Internal(format!(
                        "the holds stream of {tenant} holds a {}",
                        other.event_type()
                    )));
                }
            }
        }
        Ok(holds)
    }

    /// The hold that covers `key` (of `subject_keys`, the keys of held subjects), if any.
    fn covering<'a>(
        holds: &'a [Hold],
        held_keys: &BTreeMap<KeyId, String>,
        key: &KeyId,
    ) -> Option<&'a Hold> {
        holds
            .iter()
            .find(|hold| hold.subject.is_none())
            .or_else(|| {
                let hold_id = held_keys.get(key)?;
                holds.iter().find(|hold| &hold.hold_id == hold_id)
            })
    }

    /// The keys of every subject a hold names, mapped to the hold.
    async fn held_keys(
        &self,
        tenant: &TenantId,
        holds: &[Hold],
    ) -> Result<BTreeMap<KeyId, String>, ServiceError> {
        let mut keys = BTreeMap::new();
        for hold in holds {
            if let Some(subject) = &hold.subject {
                for (key_id, _) in self.ledger.subject_keys(tenant, subject).await? {
                    keys.insert(key_id, hold.hold_id.clone());
                }
            }
        }
        Ok(keys)
    }

    /// What a retention sweep of `tenant` would erase now, and what holds keep.
    pub async fn preview(
        &self,
        tenant: &TenantId,
        now_micros: i64,
    ) -> Result<RetentionReport, ServiceError> {
        let Some(retention) = self.retention()? else {
            return Ok(RetentionReport::default());
        };
        let (uses, through) = self.key_uses(Some(tenant)).await?;
        let holds = self.holds(tenant).await?;
        let held_keys = self.held_keys(tenant, &holds).await?;
        let mut report = RetentionReport {
            scanned_through: through,
            rules: retention
                .rules()
                .iter()
                .map(|rule| rule.describe())
                .collect(),
            ..RetentionReport::default()
        };
        for key in uses {
            let age_days = u32::try_from((now_micros - key.last_sealed_micros).max(0) / DAY_MICROS)
                .unwrap_or(u32::MAX);
            // The class with the shortest retention that has expired decides.
            let mut expiring = None;
            for class in &key.classes {
                if let Some(rule) = retention
                    .expired(tenant.as_str(), class.as_str(), age_days)
                    .map_err(|error| ServiceError::Internal(error.to_string()))?
                    && expiring
                        .as_ref()
                        .is_none_or(|(days, _, _): &(u32, String, String)| rule.days < *days)
                {
                    expiring = Some((rule.days, rule.describe(), class.as_str().to_owned()));
                }
            }
            let Some((days, rule, class)) = expiring else {
                continue;
            };
            if matches!(
                self.ledger.store().key(key.key_id).await?,
                KeyState::Destroyed
            ) {
                report.already_erased += 1;
                continue;
            }
            let held_by =
                Self::covering(&holds, &held_keys, &key.key_id).map(|h| h.hold_id.clone());
            let expired = Expired {
                key,
                rule,
                class,
                days,
                held_by,
            };
            if expired.held_by.is_some() {
                report.held.push(expired);
            } else {
                report.erase.push(expired);
            }
        }
        Ok(report)
    }

    /// Runs a retention sweep of `tenant`: destroys every expired key no hold covers and records
    /// `data.erased` for each, naming the rule.
    pub async fn run(
        &self,
        tenant: &TenantId,
        actor: &str,
        now_micros: i64,
    ) -> Result<RetentionReport, ServiceError> {
        let report = self.preview(tenant, now_micros).await?;
        self.apply(tenant, actor, report).await
    }

    /// Erases what a preview found expired: moves what a legal hold placed since covers to the
    /// held, and, with appends of personal data held off, drops every key that sealed anything
    /// since the preview's scan (its data is no longer expired); then records each erasure and
    /// destroys its key. Recorded first, then destroyed: a failure
    /// between the two leaves a record whose key is still active, which the next sweep erases
    /// (and records again), never an erasure without its record.
    pub async fn apply(
        &self,
        tenant: &TenantId,
        actor: &str,
        mut report: RetentionReport,
    ) -> Result<RetentionReport, ServiceError> {
        let _changing = self.changing.lock().await;
        let holds = self.holds(tenant).await?;
        let held_keys = self.held_keys(tenant, &holds).await?;
        let (erase, newly_held): (Vec<Expired>, Vec<Expired>) = std::mem::take(&mut report.erase)
            .into_iter()
            .map(|mut expired| {
                expired.held_by = Self::covering(&holds, &held_keys, &expired.key.key_id)
                    .map(|hold| hold.hold_id.clone());
                expired
            })
            .partition(|expired| expired.held_by.is_none());
        report.erase = erase;
        report.held.extend(newly_held);
        let _sealing = self.ledger.hold_sealing().await;
        let store = self.ledger.store();
        let mut next = Position(report.scanned_through.0 + 1);
        let mut renewed = BTreeSet::new();
        loop {
            let page = store.read_all(next, SCAN_PAGE_RECORDS).await?;
            let Some(last) = page.last() else { break };
            next = Position(last.position().0 + 1);
            renewed.extend(page.iter().filter_map(|record| record.envelope.key_id));
        }
        report
            .erase
            .retain(|expired| !renewed.contains(&expired.key.key_id));
        for expired in &report.erase {
            let event = GovernanceEvent::DataErased {
                key_id: expired.key.key_id.0,
                subject: None,
                cause: ErasureCause::Retention {
                    rule: expired.rule.clone(),
                    class: expired.class.clone(),
                    days: expired.days,
                    last_sealed_micros: expired.key.last_sealed_micros,
                },
                records: expired.key.records,
            };
            // No personal part, so this append does not wait for the sealing guard held here.
            let position = governance::record(
                &self.ledger,
                &stream(tenant, ERASURES_STREAM_ID)?,
                actor,
                &event,
            )
            .await?;
            store.destroy_key(expired.key.key_id).await?;
            report.recorded.push(position);
        }
        Ok(report)
    }

    /// A retention sweep of every tenant that has personal data (the periodic sweeper).
    pub async fn run_all(
        &self,
        actor: &str,
        now_micros: i64,
    ) -> Result<Vec<(TenantId, RetentionReport)>, ServiceError> {
        let (uses, _) = self.key_uses(None).await?;
        let tenants: BTreeSet<TenantId> = uses.into_iter().map(|key| key.tenant).collect();
        let mut reports = Vec::new();
        for tenant in tenants {
            let report = self.run(&tenant, actor, now_micros).await?;
            reports.push((tenant, report));
        }
        Ok(reports)
    }

    /// Places a legal hold on `subject` (`None`: the whole tenant).
    pub async fn place_hold(
        &self,
        tenant: &TenantId,
        hold_id: &str,
        subject: Option<&str>,
        reason: &str,
        actor: &str,
    ) -> Result<Position, ServiceError> {
        validate_id("hold_id", hold_id)?;
        validate_reason(reason)?;
        if let Some(subject) = subject {
            validate_subject(subject)?;
        }
        let _changing = self.changing.lock().await;
        let holds = self.holds(tenant).await?;
        if holds.iter().any(|hold| hold.hold_id == hold_id) {
            return Err(ServiceError::FailedPrecondition(format!(
                "legal hold {hold_id} is already in force in {tenant}"
            )));
        }
        if holds.len() >= HOLDS_MAX {
            return Err(ServiceError::FailedPrecondition(format!(
                "{HOLDS_MAX} legal holds are in force in {tenant}, the limit"
            )));
        }
        let event = GovernanceEvent::LegalHoldPlaced {
            hold_id: hold_id.to_owned(),
            subject: subject.map(str::to_owned),
            reason: reason.to_owned(),
        };
        governance::record(
            &self.ledger,
            &stream(tenant, HOLDS_STREAM_ID)?,
            actor,
            &event,
        )
        .await
    }

    /// Releases a legal hold (NOT_FOUND if it is not in force).
    pub async fn release_hold(
        &self,
        tenant: &TenantId,
        hold_id: &str,
        reason: &str,
        actor: &str,
    ) -> Result<Position, ServiceError> {
        validate_id("hold_id", hold_id)?;
        validate_reason(reason)?;
        let _changing = self.changing.lock().await;
        if !self
            .holds(tenant)
            .await?
            .iter()
            .any(|hold| hold.hold_id == hold_id)
        {
            return Err(ServiceError::NotFound(format!(
                "no legal hold {hold_id} is in force in {tenant}"
            )));
        }
        let event = GovernanceEvent::LegalHoldReleased {
            hold_id: hold_id.to_owned(),
            reason: reason.to_owned(),
        };
        governance::record(
            &self.ledger,
            &stream(tenant, HOLDS_STREAM_ID)?,
            actor,
            &event,
        )
        .await
    }

    /// Erases a data subject's personal data in `tenant` on request: destroys every key the
    /// subject has had there and records `data.erased` for each, naming the request. Refused
    /// (FAILED_PRECONDITION, naming the hold) while a legal hold covers the subject.
    pub async fn erase_subject(
        &self,
        tenant: &TenantId,
        subject: &str,
        request_id: &str,
        reason: &str,
        actor: &str,
    ) -> Result<Erasure, ServiceError> {
        validate_subject(subject)?;
        validate_id("request_id", request_id)?;
        validate_reason(reason)?;
        let _changing = self.changing.lock().await;
        let holds = self.holds(tenant).await?;
        if let Some(hold) = holds
            .iter()
            .find(|hold| hold.subject.as_deref().is_none_or(|held| held == subject))
        {
            return Err(ServiceError::FailedPrecondition(format!(
                "legal hold {} covers {subject} in {tenant}: release it first",
                hold.hold_id
            )));
        }
        let keys = self.ledger.subject_keys(tenant, subject).await?;
        if keys.is_empty() {
            return Err(ServiceError::NotFound(format!(
                "no personal data of {subject} was ever recorded in {tenant}"
            )));
        }
        let (uses, _) = self.key_uses(Some(tenant)).await?;
        let mut erasure = Erasure {
            keys: Vec::new(),
            recorded: Vec::new(),
            records: 0,
        };
        for (key_id, state) in keys {
            if matches!(state, KeyState::Destroyed) {
                continue;
            }
            let records = uses
                .iter()
                .find(|key| key.key_id == key_id)
                .map_or(0, |key| key.records);
            let event = GovernanceEvent::DataErased {
                key_id: key_id.0,
                subject: Some(subject.to_owned()),
                cause: ErasureCause::Request {
                    request_id: request_id.to_owned(),
                    reason: reason.to_owned(),
                },
                records,
            };
            // Recorded first, then destroyed (see `run`).
            let position = governance::record(
                &self.ledger,
                &stream(tenant, ERASURES_STREAM_ID)?,
                actor,
                &event,
            )
            .await?;
            self.ledger.store().destroy_key(key_id).await?;
            erasure.keys.push(key_id);
            erasure.recorded.push(position);
            erasure.records += records;
        }
        Ok(erasure)
    }

    /// The erasure log of `tenant`, from stream version `from`, at most `limit` entries.
    pub async fn erasures(
        &self,
        tenant: &TenantId,
        from: StreamVersion,
        limit: usize,
    ) -> Result<Vec<ErasureEntry>, ServiceError> {
        let stream = stream(tenant, ERASURES_STREAM_ID)?;
        governance::read_page(self.ledger.store().as_ref(), &stream, from, limit).await
    }
}

fn stream(tenant: &TenantId, id: &str) -> Result<StreamId, ServiceError> {
    Ok(StreamId::new(tenant.clone(), STEWARDSHIP_AGGREGATE, id)?)
}

fn validate_id(field: &'static str, id: &str) -> Result<(), ServiceError> {
    if id.is_empty()
        || id.len() > STEWARDSHIP_ID_BYTES_MAX
        || !id.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ServiceError::InvalidArgument {
            field,
            reason: format!(
                "must be 1 to {STEWARDSHIP_ID_BYTES_MAX} bytes of printable ASCII without spaces"
            ),
        });
    }
    Ok(())
}

fn validate_reason(reason: &str) -> Result<(), ServiceError> {
    if reason.trim().is_empty() || reason.len() > REASON_BYTES_MAX {
        return Err(ServiceError::InvalidArgument {
            field: "reason",
            reason: format!(
                "must be 1 to {REASON_BYTES_MAX} bytes, got {}",
                reason.len()
            ),
        });
    }
    Ok(())
}

fn validate_subject(subject: &str) -> Result<(), ServiceError> {
    if subject.is_empty() || subject.len() > crate::ledger::DATA_SUBJECT_BYTES_MAX {
        return Err(ServiceError::InvalidArgument {
            field: "subject",
            reason: format!(
                "must be 1 to {} bytes",
                crate::ledger::DATA_SUBJECT_BYTES_MAX
            ),
        });
    }
    Ok(())
}
