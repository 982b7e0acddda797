//! Governance and stewardship over an in-memory ledger: bundle activation and reload, runtime
//! grants folded across restarts, denied calls recorded, dry runs, retention sweeps with legal
//! holds, and erasure on request.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_domain::governance::{ErasureCause, GovernanceEvent};
use cairn_ledger::{Hash, Position, StreamId, StreamVersion, TenantId};
use cairn_policy::{AccessRequest, Action, Grant, Object};
use cairn_service::governance::{BundleSource, Governance};
use cairn_service::stewardship::Stewardship;
use cairn_service::tokens::{Caller, TenantScope};
use cairn_service::{
    AppendCommand, EventDraft, Ledger, PersonalData, PersonalView, ServerIdentity, ServiceError,
};
use cairn_store::{EventStore, ExpectedVersion, MemoryStore};

const DAY_MICROS: i64 = 86_400_000_000;

fn repository_policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

/// A copy of the repository's bundle (access, tests, retention) that `edit` may change.
fn bundle_copy(edit: impl FnOnce(&Path)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for folder in ["access", "tests", "retention"] {
        std::fs::create_dir_all(dir.path().join(folder)).unwrap();
        for entry in std::fs::read_dir(repository_policies().join(folder)).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(
                &path,
                dir.path().join(folder).join(path.file_name().unwrap()),
            )
            .unwrap();
        }
    }
    edit(dir.path());
    dir
}

fn ledger() -> (Arc<MemoryStore>, Arc<Ledger<MemoryStore>>) {
    let store = MemoryStore::new();
    let identity = Arc::new(ServerIdentity::from_secrets([1; 32], [2; 32], [3; 32]));
    let ledger = Arc::new(Ledger::new(Arc::clone(&store), identity));
    (store, ledger)
}

async fn governance_stream(store: &MemoryStore, tenant: &str, kind: &str, id: &str) -> Vec<String> {
    let stream = StreamId::new(TenantId::new(tenant).unwrap(), kind, id).unwrap();
    store
        .read_stream(&stream, StreamVersion(1), 1000)
        .await
        .unwrap()
        .iter()
        .map(|record| record.envelope.event_type.clone())
        .collect()
}

fn caller(principal: &str) -> Caller {
    Caller {
        principal: principal.into(),
        tenants: TenantScope::Any,
    }
}

#[tokio::test]
async fn a_bundle_is_activated_once_reloaded_when_it_changes_and_refused_when_its_tests_fail() {
    let (store, ledger) = ledger();
    let dir = bundle_copy(|_| {});
    let source = BundleSource::Dir(dir.path().to_owned());
    let governance = Governance::start(Arc::clone(&ledger), source.clone(), None)
        .await
        .unwrap();
    let first = governance.active().hash();
    assert_eq!(ledger.policy_bundle_hash(), Hash(first));
    // A restart with the same files records nothing new.
    drop(governance);
    let governance = Governance::start(Arc::clone(&ledger), source, None)
        .await
        .unwrap();
    assert_eq!(
        governance_stream(&store, "cairn-system", "policy", "bundle").await,
        ["policy.activated"]
    );
    // Identical files: unchanged.
    let same = governance.reload("admin", "rpc").await.unwrap();
    assert!(!same.changed);

    // A changed policy that passes its tests comes into force.
    let policy = dir.path().join("access/policy.csv");
    let mut text = std::fs::read_to_string(&policy).unwrap();
    text.push_str("g, user:newcomer, role:viewer, acme\n");
    std::fs::write(&policy, &text).unwrap();
    let reloaded = governance.reload("admin", "signal").await.unwrap();
    assert!(reloaded.changed);
    assert_ne!(reloaded.bundle_hash, first);
    assert_eq!(ledger.policy_bundle_hash(), Hash(reloaded.bundle_hash));
    let newcomer = AccessRequest {
        principal: "user:newcomer".into(),
        tenant: "acme".into(),
        object: Object::Feedback,
        action: Action::Read,
    };
    assert!(governance.check(&newcomer).allowed);

    // A bundle failing its own tests is refused; the active one stays, and the refusal is recorded.
    let tests = dir.path().join("tests/access.csv");
    let mut rows = std::fs::read_to_string(&tests).unwrap();
    rows.push_str("user:newcomer, acme, feedback, read, deny\n");
    std::fs::write(&tests, rows).unwrap();
    let refused = governance.reload("admin", "rpc").await.unwrap_err();
    assert!(
        matches!(&refused, ServiceError::FailedPrecondition(message) if message.contains("tests")),
        "{refused}"
    );
    assert_eq!(governance.active().hash(), reloaded.bundle_hash);
    assert_eq!(
        governance_stream(&store, "cairn-system", "policy", "bundle").await,
        ["policy.activated", "policy.activated", "policy.refused"]
    );
    // A bundle that does not parse is refused the same way.
    std::fs::write(&policy, "p, role:x, acme\n").unwrap();
    assert!(governance.reload("admin", "rpc").await.is_err());
    assert_eq!(governance.active().hash(), reloaded.bundle_hash);
}

#[tokio::test]
async fn grants_are_events_folded_on_start_and_denials_are_recorded() {
    let (store, ledger) = ledger();
    let governance = Governance::start(Arc::clone(&ledger), BundleSource::BuiltIn, None)
        .await
        .unwrap();
    let method = "/cairn.v1.DecisionService/AcceptDecision";
    let denied = governance
        .authorize(&caller("user:zoe"), method, "acme")
        .await
        .unwrap_err();
    assert!(!denied.verdict.allowed);
    let grant = Grant {
        principal: "user:zoe".into(),
        role: "role:owner".into(),
        tenant: "acme".into(),
    };
    governance
        .grant("cairn:admin", grant.clone(), "covering for alice")
        .await
        .unwrap();
    governance
        .authorize(&caller("user:zoe"), method, "acme")
        .await
        .unwrap();
    // Granting the same again is refused; the grant holds only in its tenant.
    assert!(
        governance
            .grant("cairn:admin", grant.clone(), "again")
            .await
            .is_err()
    );
    assert!(
        governance
            .authorize(&caller("user:zoe"), method, "beta")
            .await
            .is_err()
    );
    // A restart folds the grant from the ledger.
    drop(governance);
    let governance = Governance::start(Arc::clone(&ledger), BundleSource::BuiltIn, None)
        .await
        .unwrap();
    assert_eq!(governance.active().grants, std::slice::from_ref(&grant));
    governance
        .revoke("cairn:admin", grant.clone(), "alice is back")
        .await
        .unwrap();
    assert!(
        governance
            .authorize(&caller("user:zoe"), method, "acme")
            .await
            .is_err()
    );
    assert!(matches!(
        governance.revoke("cairn:admin", grant, "twice").await,
        Err(ServiceError::NotFound(_))
    ));
    // Invalid grants are refused naming the field.
    let bad = Grant {
        principal: "role:owner".into(),
        role: "role:owner".into(),
        tenant: "acme".into(),
    };
    assert!(matches!(
        governance.grant("cairn:admin", bad, "no").await,
        Err(ServiceError::InvalidArgument {
            field: "principal",
            ..
        })
    ));

    // Two denials in acme (one before the grant, one after the revocation), one in beta.
    let denied = governance
        .denied(&TenantId::new("acme").unwrap(), StreamVersion(1), 100)
        .await
        .unwrap();
    assert_eq!(denied.len(), 2);
    let GovernanceEvent::AccessDenied {
        principal,
        method: recorded_method,
        object,
        action,
        tenant,
        bundle_hash,
    } = &denied[0].event
    else {
        panic!("{:?}", denied[0].event)
    };
    assert_eq!(
        (
            principal.as_str(),
            recorded_method.as_str(),
            object.as_str(),
            action.as_str(),
            tenant.as_str()
        ),
        ("user:zoe", method, "decision", "decide", "acme")
    );
    assert_eq!(*bundle_hash, governance.active().hash());
    assert_eq!(
        governance_stream(&store, "beta", "audit", "denied").await,
        ["access.denied"]
    );
    assert_eq!(
        governance_stream(&store, "cairn-system", "access", "grants").await,
        ["access.granted", "access.revoked"]
    );
}

#[tokio::test]
async fn a_dry_run_lists_the_recorded_requests_a_proposed_bundle_would_flip() {
    let (_, ledger) = ledger();
    let log = tempfile::tempdir().unwrap();
    let log_path = log.path().join("access.log");
    let governance = Governance::start(
        Arc::clone(&ledger),
        BundleSource::BuiltIn,
        Some(log_path.clone()),
    )
    .await
    .unwrap();
    // bob is a triager in acme in the shipped policy.
    let triage = "/cairn.v1.PrioritizationService/Triage";
    let read = "/cairn.v1.FeedbackService/GetFeedback";
    for _ in 0..3 {
        governance
            .authorize(&caller("user:bob"), triage, "acme")
            .await
            .unwrap();
    }
    governance
        .authorize(&caller("user:bob"), read, "acme")
        .await
        .unwrap();
    // The proposal demotes bob to viewer.
    let proposed = bundle_copy(|dir| {
        let path = dir.join("access/policy.csv");
        let text = std::fs::read_to_string(&path).unwrap().replace(
            "g, user:bob, role:triager, acme",
            "g, user:bob, role:viewer, acme",
        );
        std::fs::write(path, text).unwrap();
    });
    let run = governance
        .dry_run(proposed.path(), None, None, 100)
        .unwrap();
    assert_eq!(run.requests_replayed, 2);
    assert_eq!(run.flips.len(), 1, "{:?}", run.flips);
    let (flip, minutes) = &run.flips[0];
    assert_eq!(flip.request.object, Object::Opportunity);
    assert_eq!(flip.request.action, Action::Triage);
    assert!(flip.was.allowed && !flip.becomes.allowed);
    assert_eq!(*minutes, 1);
    // The proposal's own tests expect bob to triage: they fail, and the dry run says so.
    assert!(!run.tests.passed());
    // The access log survives a restart.
    drop(governance);
    let governance = Governance::start(ledger, BundleSource::BuiltIn, Some(log_path))
        .await
        .unwrap();
    let again = governance
        .dry_run(proposed.path(), None, None, 100)
        .unwrap();
    assert_eq!(again.flips.len(), 1);
    // A period before anything was recorded replays nothing.
    let none = governance
        .dry_run(proposed.path(), None, Some(1), 100)
        .unwrap();
    assert_eq!(none.requests_replayed, 0);
}

async fn submit(ledger: &Ledger<MemoryStore>, tenant: &str, id: u8, subject: &str) -> Position {
    let (result, _) = ledger
        .append(AppendCommand {
            stream: StreamId::new(TenantId::new(tenant).unwrap(), "notes", format!("n{id}"))
                .unwrap(),
            expected: ExpectedVersion::Any,
            actor: subject.into(),
            events: vec![EventDraft {
                event_id: Some(cairn_ledger::EventId([id; 16])),
                event_type: "Noted".into(),
                event_schema_version: 1,
                causation_id: None,
                correlation_id: None,
                lineage: vec![],
                data_class: None,
                clear: b"clear".to_vec(),
                personal: Some(PersonalData {
                    subject: subject.into(),
                    bytes: format!("secret of {subject}").into_bytes(),
                }),
                expected_policy_bundle_hash: None,
            }],
        })
        .await
        .unwrap();
    result.last_position
}

async fn personal_at(
    store: &MemoryStore,
    ledger: &Ledger<MemoryStore>,
    at: Position,
) -> PersonalView {
    let record = store.read_all(at, 1).await.unwrap().remove(0);
    ledger.open(record, true).await.unwrap().personal
}

/// A ledger with the built-in bundle in force, and stewardship over it.
async fn stewardship() -> (
    Arc<MemoryStore>,
    Arc<Ledger<MemoryStore>>,
    Stewardship<MemoryStore>,
) {
    let (store, ledger) = ledger();
    let governance = Arc::new(
        Governance::start(Arc::clone(&ledger), BundleSource::BuiltIn, None)
            .await
            .unwrap(),
    );
    let stewardship = Stewardship::new(Arc::clone(&ledger), governance);
    (store, ledger, stewardship)
}

#[tokio::test]
async fn retention_erases_expired_keys_unless_held_and_requests_erase_a_subject() {
    let (store, ledger, stewardship) = stewardship().await;
    let acme = TenantId::new("acme").unwrap();
    let alice = submit(&ledger, "acme", 1, "user:alice").await;
    let bob = submit(&ledger, "acme", 2, "user:bob").await;
    let carol = submit(&ledger, "acme", 3, "user:carol").await;
    let now = cairn_store::now().0;

    // Nothing has expired yet (the shipped rule keeps personal data 730 days).
    let preview = stewardship.preview(&acme, now).await.unwrap();
    assert!(preview.erase.is_empty() && preview.held.is_empty());
    assert!(
        preview
            .rules
            .iter()
            .any(|rule| rule.contains("personal, 730"))
    );

    // A hold on bob; two years and a day later, alice's and carol's keys expire, bob's is held.
    stewardship
        .place_hold(&acme, "case-1", Some("user:bob"), "litigation", "user:erin")
        .await
        .unwrap();
    assert!(
        stewardship
            .place_hold(&acme, "case-1", None, "again", "user:erin")
            .await
            .is_err()
    );
    let later = now + 731 * DAY_MICROS;
    let preview = stewardship.preview(&acme, later).await.unwrap();
    assert_eq!(preview.erase.len(), 2);
    assert_eq!(preview.held.len(), 1);
    assert_eq!(preview.held[0].held_by.as_deref(), Some("case-1"));
    // A preview destroys nothing.
    assert!(matches!(
        personal_at(&store, &ledger, alice).await,
        PersonalView::Open(_)
    ));
    let run = stewardship
        .run(&acme, "cairn:retention", later)
        .await
        .unwrap();
    assert_eq!(run.recorded.len(), 2);
    assert_eq!(
        personal_at(&store, &ledger, alice).await,
        PersonalView::Erased
    );
    assert_eq!(
        personal_at(&store, &ledger, carol).await,
        PersonalView::Erased
    );
    assert!(matches!(
        personal_at(&store, &ledger, bob).await,
        PersonalView::Open(_)
    ));
    // A second run finds nothing new to erase.
    let again = stewardship
        .run(&acme, "cairn:retention", later)
        .await
        .unwrap();
    assert!(again.erase.is_empty() && again.recorded.is_empty());
    assert_eq!(again.already_erased, 2);

    // Erasure on request is refused while the hold covers bob, and works once it is released.
    let refused = stewardship
        .erase_subject(&acme, "user:bob", "dsr-1", "asked", "user:erin")
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, ServiceError::FailedPrecondition(message) if message.contains("case-1")),
        "{refused}"
    );
    stewardship
        .release_hold(&acme, "case-1", "case closed", "user:erin")
        .await
        .unwrap();
    let erasure = stewardship
        .erase_subject(&acme, "user:bob", "dsr-1", "asked", "user:erin")
        .await
        .unwrap();
    assert_eq!((erasure.keys.len(), erasure.records), (1, 1));
    assert_eq!(
        personal_at(&store, &ledger, bob).await,
        PersonalView::Erased
    );
    assert!(matches!(
        stewardship
            .erase_subject(&acme, "user:nobody", "dsr-2", "asked", "user:erin")
            .await,
        Err(ServiceError::NotFound(_))
    ));
    // bob comes back: new personal data is sealed under a new key; the old stays erased.
    let bob_again = submit(&ledger, "acme", 4, "user:bob").await;
    assert!(matches!(
        personal_at(&store, &ledger, bob_again).await,
        PersonalView::Open(_)
    ));
    assert_eq!(
        personal_at(&store, &ledger, bob).await,
        PersonalView::Erased
    );

    // The erasure log names the rule or the request of each erasure.
    let log = stewardship
        .erasures(&acme, StreamVersion(1), 100)
        .await
        .unwrap();
    assert_eq!(log.len(), 3);
    let causes: Vec<&ErasureCause> = log
        .iter()
        .map(|entry| match &entry.event {
            GovernanceEvent::DataErased { cause, .. } => cause,
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(matches!(
        causes[0],
        ErasureCause::Retention { days: 730, .. }
    ));
    assert!(matches!(causes[2], ErasureCause::Request { request_id, .. } if request_id == "dsr-1"));
    // A hold on the whole tenant stops every retention erasure there.
    stewardship
        .place_hold(&acme, "audit-2027", None, "regulator audit", "user:erin")
        .await
        .unwrap();
    let much_later = later + 731 * DAY_MICROS;
    let held = stewardship.preview(&acme, much_later).await.unwrap();
    assert!(held.erase.is_empty());
    assert_eq!(held.held.len(), 1);
}

#[tokio::test]
async fn a_bundle_with_broken_scoring_rules_is_refused_and_never_activated() {
    let (store, first) = ledger();
    let dir = bundle_copy(|_| {});
    let governance = Governance::start(
        Arc::clone(&first),
        BundleSource::Dir(dir.path().to_owned()),
        None,
    )
    .await
    .unwrap();
    let active = governance.active().hash();
    std::fs::create_dir_all(dir.path().join("scoring")).unwrap();
    std::fs::write(dir.path().join("scoring/policy.toml"), "active_model = 7\n").unwrap();
    let refused = governance.reload("admin", "rpc").await.unwrap_err();
    assert!(
        matches!(refused, ServiceError::FailedPrecondition(_)),
        "{refused}"
    );
    assert_eq!(governance.active().hash(), active);
    assert_eq!(
        governance_stream(&store, "cairn-system", "policy", "bundle").await,
        ["policy.activated", "policy.refused"]
    );
    // Nor does a server start with it.
    let (fresh_store, fresh) = ledger();
    let error = Governance::start(fresh, BundleSource::Dir(dir.path().to_owned()), None).await;
    assert!(error.is_err());
    assert_eq!(fresh_store.head().await.unwrap().position, Position(0));
}

#[tokio::test]
async fn a_sweep_spares_keys_that_sealed_since_its_scan_and_data_a_new_hold_covers() {
    let (store, ledger, stewardship) = stewardship().await;
    let acme = TenantId::new("acme").unwrap();
    let alice = submit(&ledger, "acme", 1, "user:alice").await;
    let carol = submit(&ledger, "acme", 2, "user:carol").await;
    let dave = submit(&ledger, "acme", 3, "user:dave").await;
    let later = cairn_store::now().0 + 731 * DAY_MICROS;
    let preview = stewardship.preview(&acme, later).await.unwrap();
    assert_eq!(preview.erase.len(), 3);
    // Between the scan and the erasure: alice contributes again, and a hold on dave is placed.
    let alice_again = submit(&ledger, "acme", 4, "user:alice").await;
    stewardship
        .place_hold(&acme, "case-2", Some("user:dave"), "dispute", "user:erin")
        .await
        .unwrap();
    let run = stewardship
        .apply(&acme, "cairn:retention", preview)
        .await
        .unwrap();
    assert_eq!(run.recorded.len(), 1, "only carol's key is erased");
    assert_eq!(run.held.len(), 1);
    assert_eq!(
        personal_at(&store, &ledger, carol).await,
        PersonalView::Erased
    );
    for kept in [alice, alice_again, dave] {
        assert!(matches!(
            personal_at(&store, &ledger, kept).await,
            PersonalView::Open(_)
        ));
    }
}

/// A clock the test moves, in microseconds, and governance over a fresh ledger timed by it.
async fn governance_with_clock(
    start: i64,
) -> (
    Arc<MemoryStore>,
    Arc<std::sync::atomic::AtomicI64>,
    Governance<MemoryStore>,
) {
    let (store, ledger) = ledger();
    let now = Arc::new(std::sync::atomic::AtomicI64::new(start));
    let governance = Governance::start(ledger, BundleSource::BuiltIn, None)
        .await
        .unwrap()
        .with_clock({
            let now = Arc::clone(&now);
            move || now.load(std::sync::atomic::Ordering::SeqCst)
        });
    (store, now, governance)
}

fn set(clock: &std::sync::atomic::AtomicI64, micros: i64) {
    clock.store(micros, std::sync::atomic::Ordering::SeqCst);
}

/// Every record of a tenant's denied stream.
async fn denied_log(governance: &Governance<MemoryStore>, tenant: &str) -> Vec<GovernanceEvent> {
    let tenant = TenantId::new(tenant).unwrap();
    let mut log = Vec::new();
    loop {
        let from = StreamVersion(log.len() as u64 + 1);
        let page = governance.denied(&tenant, from, 1000).await.unwrap();
        if page.is_empty() {
            return log;
        }
        log.extend(page.into_iter().map(|call| call.event));
    }
}

/// (`access.denied` records, `access.denied.repeated` records, denied calls they stand for).
fn tally(log: &[GovernanceEvent]) -> (usize, usize, u64) {
    let mut tally = (0, 0, 0);
    for event in log {
        match event {
            GovernanceEvent::AccessDenied { .. } => {
                tally.0 += 1;
                tally.2 += 1;
            }
            GovernanceEvent::AccessDeniedRepeated { count, .. } => {
                assert!(*count >= 1, "{event:?}");
                tally.1 += 1;
                tally.2 += count;
            }
            other => panic!("the denied stream holds a {}", other.event_type()),
        }
    }
    tally
}

const ACCEPT: &str = "/cairn.v1.DecisionService/AcceptDecision";
const REJECT: &str = "/cairn.v1.DecisionService/RejectDecision";
const SECOND: i64 = 1_000_000;

#[tokio::test]
async fn repeated_denials_of_a_call_are_counted_and_recorded_once_their_window_ends() {
    use cairn_service::governance::DENIAL_WINDOW_MICROS;
    let start = 1_767_225_600 * SECOND;
    let (_, clock, governance) = governance_with_clock(start).await;
    // user:zoe has no role: 7 denials of the same call in one window.
    for i in 0..7 {
        set(&clock, start + i * SECOND);
        governance
            .authorize(&caller("user:zoe"), ACCEPT, "acme")
            .await
            .unwrap_err();
    }
    let log = denied_log(&governance, "acme").await;
    assert_eq!(tally(&log), (1, 0, 1), "only the first is recorded at once");
    assert_eq!(governance.denials_pending(), (6, 1));
    // Another method, another principal, another tenant: other calls, each recorded at once.
    set(&clock, start + 10 * SECOND);
    for (principal, method, tenant) in [
        ("user:zoe", REJECT, "acme"),
        ("user:yan", ACCEPT, "acme"),
        ("user:zoe", ACCEPT, "beta"),
    ] {
        for _ in 0..3 {
            governance
                .authorize(&caller(principal), method, tenant)
                .await
                .unwrap_err();
        }
    }
    assert_eq!(tally(&denied_log(&governance, "acme").await), (3, 0, 3));
    assert_eq!(tally(&denied_log(&governance, "beta").await), (1, 0, 1));
    assert_eq!(governance.denials_pending(), (6 + 3 * 2, 4));

    // The first window has not ended a microsecond before its length: nothing is recorded.
    assert_eq!(
        governance
            .flush_denied_before(start + DENIAL_WINDOW_MICROS - 1)
            .await
            .unwrap(),
        0
    );
    // At its end, its six repeats become one record; the later windows stay open.
    assert_eq!(
        governance
            .flush_denied_before(start + DENIAL_WINDOW_MICROS)
            .await
            .unwrap(),
        1
    );
    let log = denied_log(&governance, "acme").await;
    assert_eq!(tally(&log), (3, 1, 3 + 6));
    assert_eq!(
        log.last().unwrap(),
        &GovernanceEvent::AccessDeniedRepeated {
            principal: "user:zoe".into(),
            method: ACCEPT.into(),
            object: "decision".into(),
            action: "decide".into(),
            tenant: "acme".into(),
            bundle_hash: governance.active().hash(),
            count: 6,
            first_at_micros: start + SECOND,
            last_at_micros: start + 6 * SECOND,
        }
    );
    assert_eq!(governance.denials_pending(), (3 * 2, 3));

    // The same call after its window ended opens a new one, recorded at once.
    set(&clock, start + DENIAL_WINDOW_MICROS + 5 * SECOND);
    governance
        .authorize(&caller("user:zoe"), ACCEPT, "acme")
        .await
        .unwrap_err();
    assert_eq!(tally(&denied_log(&governance, "acme").await), (4, 1, 10));

    // A flush (as at shutdown) records every open window, ended or not: nothing is lost.
    assert_eq!(governance.flush_denied().await.unwrap(), 3);
    assert_eq!(governance.denials_pending(), (0, 0));
    let acme = tally(&denied_log(&governance, "acme").await);
    let beta = tally(&denied_log(&governance, "beta").await);
    assert_eq!(acme, (4, 3, 7 + 3 + 3 + 1));
    assert_eq!(beta, (1, 1, 3));
    // Nothing is left to record.
    assert_eq!(governance.flush_denied().await.unwrap(), 0);
}

#[tokio::test]
async fn the_oldest_denial_windows_are_recorded_early_when_too_many_are_open() {
    use cairn_service::governance::DENIAL_WINDOWS_MAX;
    let start = 1_767_225_600 * SECOND;
    let (_, clock, governance) = governance_with_clock(start).await;
    for _ in 0..3 {
        governance
            .authorize(&caller("user:first"), ACCEPT, "acme")
            .await
            .unwrap_err();
    }
    // As many other calls as fill the bound, each a little later; the clock never reaches the
    // end of the first window.
    for i in 1..DENIAL_WINDOWS_MAX {
        set(&clock, start + i as i64);
        governance
            .authorize(&caller(&format!("user:p{i}")), ACCEPT, "acme")
            .await
            .unwrap_err();
    }
    assert_eq!(governance.denials_pending(), (2, DENIAL_WINDOWS_MAX));
    assert_eq!(
        tally(&denied_log(&governance, "acme").await),
        (DENIAL_WINDOWS_MAX, 0, DENIAL_WINDOWS_MAX as u64)
    );
    // One more call: the oldest window (the first principal's) is recorded early, not dropped.
    governance
        .authorize(&caller("user:last"), ACCEPT, "acme")
        .await
        .unwrap_err();
    assert_eq!(governance.denials_pending(), (0, DENIAL_WINDOWS_MAX));
    let log = denied_log(&governance, "acme").await;
    assert_eq!(
        tally(&log),
        (DENIAL_WINDOWS_MAX + 1, 1, DENIAL_WINDOWS_MAX as u64 + 3)
    );
    let repeated: Vec<_> = log
        .iter()
        .filter_map(|event| match event {
            GovernanceEvent::AccessDeniedRepeated {
                principal, count, ..
            } => Some((principal.as_str(), *count)),
            _ => None,
        })
        .collect();
    assert_eq!(repeated, [("user:first", 2)]);
    // The first principal's call opens a new window (another, the oldest now, closes without a
    // record: it counted nothing).
    governance
        .authorize(&caller("user:first"), ACCEPT, "acme")
        .await
        .unwrap_err();
    assert_eq!(governance.denials_pending(), (0, DENIAL_WINDOWS_MAX));
    assert_eq!(
        tally(&denied_log(&governance, "acme").await),
        (DENIAL_WINDOWS_MAX + 2, 1, DENIAL_WINDOWS_MAX as u64 + 4)
    );
}

#[tokio::test]
async fn the_denial_flusher_records_ended_windows_and_everything_when_stopped() {
    use cairn_service::governance::DENIAL_WINDOW_MICROS;
    let start = 1_767_225_600 * SECOND;
    let (_, clock, governance) = governance_with_clock(start).await;
    let governance = Arc::new(governance);
    let flusher = governance.spawn_denied_flusher(std::time::Duration::from_millis(5));
    for _ in 0..4 {
        governance
            .authorize(&caller("user:zoe"), ACCEPT, "acme")
            .await
            .unwrap_err();
    }
    set(&clock, start + DENIAL_WINDOW_MICROS - 1);
    for _ in 0..5 {
        governance
            .authorize(&caller("user:zoe"), REJECT, "acme")
            .await
            .unwrap_err();
    }
    // The first window ends: the flusher records it by itself (the deadline only turns a hang
    // into a failure).
    set(&clock, start + DENIAL_WINDOW_MICROS);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while tally(&denied_log(&governance, "acme").await).1 == 0 {
        assert!(std::time::Instant::now() < deadline, "no flush");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(tally(&denied_log(&governance, "acme").await), (2, 1, 2 + 3));
    assert_eq!(governance.denials_pending(), (4, 1));
    // Stopping it (at shutdown) records the window still open.
    flusher.stop().await;
    assert_eq!(governance.denials_pending(), (0, 0));
    assert_eq!(tally(&denied_log(&governance, "acme").await), (2, 2, 4 + 5));
}

/// Two nodes of one shared ledger (two `Governance`s over one store): a grant or revocation
/// recorded by one applies on the other as soon as its store has the record, and a change on the
/// second starts from what the first recorded.
#[tokio::test]
async fn grants_recorded_by_another_node_apply_here() {
    let (store, ledger_a) = ledger();
    let identity = Arc::new(ServerIdentity::from_secrets([1; 32], [2; 32], [3; 32]));
    let ledger_b = Arc::new(Ledger::new(Arc::clone(&store), identity));
    let a = Arc::new(
        Governance::start(Arc::clone(&ledger_a), BundleSource::BuiltIn, None)
            .await
            .unwrap(),
    );
    let b = Arc::new(
        Governance::start(Arc::clone(&ledger_b), BundleSource::BuiltIn, None)
            .await
            .unwrap(),
    );
    let follower = b.spawn_grants_follower();
    let method = "/cairn.v1.DecisionService/AcceptDecision";
    let grant = Grant {
        principal: "user:zoe".into(),
        role: "role:owner".into(),
        tenant: "acme".into(),
    };
    a.grant("cairn:admin", grant.clone(), "covering")
        .await
        .unwrap();
    // Until b's follower has applied it (the deadline only bounds a hang).
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while b.active().grants.is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("b's follower applies a's grant");
    b.authorize(&caller("user:zoe"), method, "acme")
        .await
        .unwrap();
    // b revokes what a granted; a refreshes before its next change and sees it gone.
    b.revoke("cairn:admin", grant.clone(), "back")
        .await
        .unwrap();
    assert!(
        a.refresh_grants().await.unwrap(),
        "a applies b's revocation"
    );
    assert!(
        a.authorize(&caller("user:zoe"), method, "acme")
            .await
            .is_err()
    );
    assert!(
        a.revoke("cairn:admin", grant, "again").await.is_err(),
        "a revocation starts from the ledger's grants"
    );
    follower.abort();
}
