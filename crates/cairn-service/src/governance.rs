//! Governance: the policy bundle in force, authorization of every call, runtime grants, the
//! record of denied calls, reloads and dry runs.
//!
//! The bundle (`policies/`: access model and policy, policy tests, retention and scoring rules) is
//! loaded at start and on reload, checked against its own policy tests, hashed, and recorded as
//! `policy.activated` in `cairn-system/policy/bundle`; from then on the ledger stamps that hash on
//! every event. A bundle that does not parse or fails its tests is refused (`policy.refused` is
//! recorded when a running server refuses it) and the active one stays. Runtime grants are
//! `access.granted` / `access.revoked` events in `cairn-system/access/grants` (every tenant's in
//! one stream, so a start reads one stream to know them), never writes to the tracked files.
//!
//! Every authorization request is remembered in the access log (distinct requests per minute),
//! which a dry run replays against a proposed bundle. Every denied call is recorded in the
//! tenant's `audit/denied` stream, coalesced so that a client looping on a denied call cannot grow
//! the ledger by one fsync'd record per call: the first denial of a call (principal, method,
//! object, action, tenant, bundle) in a window of [`DENIAL_WINDOW_MICROS`] is `access.denied`,
//! recorded before the caller is told; the further ones are counted in memory and recorded as one
//! `access.denied.repeated` with their count when the window ends (by the flusher,
//! [`Governance::spawn_denied_flusher`]), when the same call is denied after it ended, when
//! [`DENIAL_WINDOWS_MAX`] windows are open and another call needs one (the oldest first), or on
//! [`Governance::flush_denied`] (at shutdown). A process killed before a window is recorded loses
//! that window's count, never its first denial.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use cairn_domain::governance::{
    ACCESS_AGGREGATE, AUDIT_AGGREGATE, DENIED_STREAM_ID, GRANTS_STREAM_ID, GovernanceEvent,
    POLICY_AGGREGATE, POLICY_STREAM_ID, SYSTEM_TENANT,
};
use cairn_domain::limits::REASON_BYTES_MAX;
use cairn_ledger::{
    DataClass, Hash, Position, Record, SealedPayload, StreamId, StreamVersion, TenantId,
};
use cairn_policy::{
    AccessRequest, Action, Authorizer, Bundle, Flip, Grant, Object, RpcAccess, Scope, TestReport,
    Verdict,
};
use cairn_store::{EventStore, ExpectedVersion, KeyStore};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use crate::denials::{DENIAL_WINDOW_MICROS, DENIAL_WINDOWS_MAX};
use crate::denials::{Denial, DenialKey, DenialWindows, Repeats};
use crate::error::ServiceError;
use crate::ledger::{AppendCommand, EventDraft, Ledger, PersonalData, PersonalView};
use crate::scoring_policy::ScoringPolicy;
use crate::tokens::Caller;

/// Where the bundle is loaded from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BundleSource {
    /// A `policies/` directory (reloaded from the same place).
    Dir(PathBuf),
    /// The copy compiled into the binary.
    BuiltIn,
}

impl BundleSource {
    fn describe(&self) -> String {
        match self {
            BundleSource::Dir(dir) => dir.display().to_string(),
            BundleSource::BuiltIn => "built-in".into(),
        }
    }

    fn load(&self) -> Result<Bundle, ServiceError> {
        match self {
            BundleSource::Dir(dir) => Bundle::load_dir(dir).map_err(policy_error),
            BundleSource::BuiltIn => Ok(Bundle::built_in()),
        }
    }
}

/// Most distinct (minute, request) entries the access log keeps; older minutes are dropped first.
pub const ACCESS_LOG_ENTRIES_MAX: usize = 1_000_000;
/// The access log is written anew at start when it holds more lines than this and twice what is
/// kept.
const ACCESS_LOG_REWRITE_LINES_MIN: usize = 10_000;
/// Most flips a dry run returns.
pub const DRY_RUN_FLIPS_MAX: usize = 10_000;
/// Longest grant reason, in bytes.
pub const GRANT_REASON_BYTES_MAX: usize = REASON_BYTES_MAX;
/// Most runtime grants in force at once.
pub const GRANTS_MAX: usize = 100_000;
/// Longest tenant text an `access.denied` event keeps of an invalid tenant, in bytes.
const DENIED_TENANT_BYTES_MAX: usize = 64;
/// How often the server's flusher records the denial windows that have ended.
pub const DENIED_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
const MINUTE_MICROS: i64 = 60_000_000;

/// The bundle in force, compiled.
pub struct Active {
    /// The bundle.
    pub bundle: Bundle,
    /// Its access policy with the runtime grants.
    pub authorizer: Authorizer,
    /// The runtime grants folded into it.
    pub grants: Vec<Grant>,
    /// Where it came from.
    pub source: String,
    /// The git commit of its directory, when it is in a git checkout.
    pub git_commit: Option<String>,
    /// How many of its policy tests passed (all).
    pub tests_passed: u32,
    /// The position of the `policy.activated` event that put it in force.
    pub activated_at: Position,
}

impl Active {
    /// The bundle's hash.
    pub fn hash(&self) -> [u8; 32] {
        self.bundle.hash()
    }
}

/// What a reload did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// False when the files were identical to the bundle in force: nothing recorded.
    pub changed: bool,
    /// The hash in force after the reload.
    pub bundle_hash: [u8; 32],
    /// The position of `policy.activated`, when something changed.
    pub position: Option<Position>,
}

/// A denied call, as the caller is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied {
    /// What the policy said.
    pub verdict: Verdict,
    /// The request that was denied.
    pub request: AccessRequest,
}

/// A dry run's answer.
#[derive(Clone, Debug)]
pub struct DryRun {
    /// The proposed bundle's hash.
    pub proposed_hash: [u8; 32],
    /// Its own policy tests.
    pub tests: TestReport,
    /// Distinct requests replayed.
    pub requests_replayed: u64,
    /// Recorded (minute, request) entries they stand for.
    pub requests_recorded: u64,
    /// Each flip with the number of minutes it was seen in.
    pub flips: Vec<(Flip, u64)>,
    /// More flips than asked for.
    pub truncated: bool,
}

/// A governance event as a log shows it (the denied calls, the erasures).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedEvent {
    /// Its ledger position.
    pub position: Position,
    /// When it was recorded, microseconds.
    pub recorded_at_micros: i64,
    /// Who it was recorded for (the denied principal, the steward, the sweeper).
    pub actor: String,
    /// The event.
    pub event: GovernanceEvent,
}

/// A recorded `access.denied` or `access.denied.repeated` event.
pub type DeniedCall = LoggedEvent;

/// The clock of the denial windows: microseconds since the epoch.
type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The governance use cases over a ledger.
pub struct Governance<S> {
    ledger: Arc<Ledger<S>>,
    source: BundleSource,
    active: RwLock<Arc<Active>>,
    /// Serialises reloads and grants, so each compiles on top of the last.
    changing: tokio::sync::Mutex<()>,
    access_log: AccessLog,
    /// Called with the scoring policy of each bundle that comes into force.
    on_scoring: Option<Box<dyn Fn(Arc<ScoringPolicy>) + Send + Sync>>,
    /// The open denial windows: denials counted, not recorded yet.
    denials: Mutex<DenialWindows>,
    /// The time of a denial.
    clock: Clock,
}

impl<S: EventStore + KeyStore> Governance<S> {
    /// Loads the bundle from `source`, refuses to start if it does not parse or fails its own
    /// tests, folds the runtime grants recorded in the ledger into it, records `policy.activated`
    /// unless the last activation recorded is of the same bundle, and stamps its hash on every
    /// event the ledger appends from now on. `access_log` is a file that keeps the access log
    /// across restarts (`None`: in memory only).
    pub async fn start(
        ledger: Arc<Ledger<S>>,
        source: BundleSource,
        access_log: Option<PathBuf>,
    ) -> Result<Governance<S>, ServiceError> {
        let bundle = source.load()?;
        let tests = cairn_policy::run_tests(&bundle).map_err(policy_error)?;
        if !tests.passed() {
            return Err(ServiceError::InvalidPolicy {
                file: source.describe(),
                reason: format!("the bundle fails its own policy tests:\n{tests}"),
            });
        }
        let grants = fold_grants(&read_stream(ledger.store().as_ref(), &grants_stream()).await?)?;
        let authorizer = Authorizer::compile(&bundle, &grants).map_err(policy_error)?;
        // The scoring rules too, before anything is recorded: a bundle that cannot come into
        // force whole is never recorded as activated.
        scoring_of(&bundle)?;
        let last = last_activation(ledger.store().as_ref()).await?;
        let hash = bundle.hash();
        let git_commit = match &source {
            BundleSource::Dir(dir) => git_commit_of(dir),
            BundleSource::BuiltIn => None,
        };
        let activated_at = match last {
            Some((position, previous)) if previous == hash => position,
            last => {
                let event = GovernanceEvent::PolicyActivated {
                    bundle_hash: hash,
                    previous: last.map(|(_, previous)| previous),
                    git_commit: git_commit.clone(),
                    source: source.describe(),
                    trigger: "start".into(),
                    tests_passed: count(tests.cases.len()),
                };
                record(&ledger, &policy_stream(), "cairn", &event).await?
            }
        };
        ledger.set_policy_bundle_hash(Hash(hash));
        let access_log = AccessLog::open(access_log)?;
        let active = Active {
            bundle,
            authorizer,
            grants,
            source: source.describe(),
            git_commit,
            tests_passed: count(tests.cases.len()),
            activated_at,
        };
        Ok(Governance {
            ledger,
            source,
            active: RwLock::new(Arc::new(active)),
            changing: tokio::sync::Mutex::new(()),
            access_log,
            on_scoring: None,
            denials: Mutex::new(DenialWindows::new(DENIAL_WINDOW_MICROS, DENIAL_WINDOWS_MAX)),
            clock: Arc::new(now_micros),
        })
    }

    /// Times denials with `clock` (microseconds) instead of the ledger's clock, so a test decides
    /// when denial windows end.
    pub fn with_clock(mut self, clock: impl Fn() -> i64 + Send + Sync + 'static) -> Governance<S> {
        self.clock = Arc::new(clock);
        self
    }

    /// Calls `apply` with the scoring policy of the bundle in force now and of every bundle that
    /// comes into force later (a bundle without scoring rules keeps the built-in ones).
    pub fn on_scoring(
        mut self,
        apply: impl Fn(Arc<ScoringPolicy>) + Send + Sync + 'static,
    ) -> Result<Governance<S>, ServiceError> {
        apply(Arc::new(scoring_of(&self.active().bundle)?));
        self.on_scoring = Some(Box::new(apply));
        Ok(self)
    }

    /// The bundle in force.
    pub fn active(&self) -> Arc<Active> {
        Arc::clone(&self.active.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Checks a request against the bundle in force (no record, no log): `PolicyService.Check`.
    pub fn check(&self, request: &AccessRequest) -> Verdict {
        self.active().authorizer.check(request)
    }

    /// Authorizes a call of `method` by `caller` in `tenant` (`*` for a call about no one
    /// tenant). Every request goes to the access log; a denied one is recorded as `access.denied`
    /// before the caller is told when it is the first of its window, and counted otherwise (see
    /// the module docs).
    pub async fn authorize(
        &self,
        caller: &Caller,
        method: &str,
        tenant: &str,
    ) -> Result<&'static RpcAccess, Denied> {
        let Some(access) = cairn_policy::rpc_access(method) else {
            let request = AccessRequest {
                principal: caller.principal.clone(),
                tenant: tenant.to_owned(),
                object: Object::Policy,
                action: Action::Admin,
            };
            let verdict = Verdict {
                allowed: false,
                rule: None,
                reason: format!("{method} is in no row of the access table"),
            };
            return Err(self.deny(method, request, verdict).await);
        };
        let tenant = match access.scope {
            Scope::Global => "*",
            Scope::Tenant => tenant,
        };
        self.authorize_access(caller, method, tenant, access.object, access.action)
            .await?;
        Ok(access)
    }

    /// Authorizes one (object, action) in `tenant` for a call of `method`: the second check some
    /// calls make (reading personal data, acting for another principal).
    pub async fn authorize_access(
        &self,
        caller: &Caller,
        method: &str,
        tenant: &str,
        object: Object,
        action: Action,
    ) -> Result<(), Denied> {
        let request = AccessRequest {
            principal: caller.principal.clone(),
            tenant: tenant.to_owned(),
            object,
            action,
        };
        let verdict = if caller.tenants.covers(tenant) {
            self.check(&request)
        } else {
            Verdict {
                allowed: false,
                rule: None,
                reason: format!(
                    "the credential of {} is not valid in tenant {tenant}",
                    caller.principal
                ),
            }
        };
        self.access_log.remember(now_micros(), &request);
        if verdict.allowed {
            Ok(())
        } else {
            Err(self.deny(method, request, verdict).await)
        }
    }

    async fn deny(&self, method: &str, request: AccessRequest, verdict: Verdict) -> Denied {
        let key = DenialKey {
            stream_tenant: TenantId::new(request.tenant.clone())
                .ok()
                .filter(|tenant| tenant.as_str() != SYSTEM_TENANT)
                .unwrap_or_else(system_tenant),
            principal: request.principal.clone(),
            method: method.chars().take(256).collect(),
            object: request.object.as_str().to_owned(),
            action: request.action.as_str().to_owned(),
            tenant: request
                .tenant
                .chars()
                .take(DENIED_TENANT_BYTES_MAX)
                .collect(),
            bundle_hash: self.active().hash(),
        };
        let at = (self.clock)();
        let denial = self.windows().deny(key.clone(), at);
        // The caller is denied whether or not the records could be written; a failure is logged.
        if let Denial::First { closed } = denial {
            let _ = self.record_repeats(closed).await;
            let stream = denied_stream(&key.stream_tenant);
            if let Err(error) = record(&self.ledger, &stream, &key.principal, &key.denied()).await {
                tracing::error!(%error, principal = %request.principal, method, "a denied call could not be recorded");
            }
        }
        Denied { verdict, request }
    }

    fn windows(&self) -> std::sync::MutexGuard<'_, DenialWindows> {
        self.denials.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one `access.denied.repeated` per closed window, in order; returns how many were
    /// recorded. Every failure is logged (with the count it loses); the first is returned.
    async fn record_repeats(&self, closed: Vec<Repeats>) -> Result<usize, ServiceError> {
        let mut recorded = 0;
        let mut failed = None;
        for repeats in closed {
            let stream = denied_stream(&repeats.key.stream_tenant);
            match record(
                &self.ledger,
                &stream,
                &repeats.key.principal,
                &repeats.event(),
            )
            .await
            {
                Ok(_) => recorded += 1,
                Err(error) => {
                    tracing::error!(
                        %error,
                        principal = %repeats.key.principal,
                        method = %repeats.key.method,
                        count = repeats.count,
                        "repeated denials of a call could not be recorded"
                    );
                    failed.get_or_insert(error);
                }
            }
        }
        failed.map_or(Ok(recorded), Err)
    }

    /// Records the denials counted in every window that has ended at `now_micros` (opened at
    /// least [`DENIAL_WINDOW_MICROS`] before), one `access.denied.repeated` per window that
    /// counted any, and closes those windows. Returns how many records were appended.
    pub async fn flush_denied_before(&self, now_micros: i64) -> Result<usize, ServiceError> {
        let closed = self.windows().take_ended(now_micros);
        self.record_repeats(closed).await
    }

    /// Records the denials counted in every open window, ended or not, and closes them all (at
    /// shutdown): the next denial of each call is recorded as `access.denied` again. Returns how
    /// many records were appended.
    pub async fn flush_denied(&self) -> Result<usize, ServiceError> {
        let closed = self.windows().take_all();
        self.record_repeats(closed).await
    }

    /// Denials counted in memory and not recorded yet, and the number of open windows.
    pub fn denials_pending(&self) -> (u64, usize) {
        let windows = self.windows();
        (windows.counted(), windows.open())
    }

    /// Runs in the background, recording ended denial windows every `interval`;
    /// [`DeniedFlusherHandle::stop`] records every window still open and ends it.
    pub fn spawn_denied_flusher(self: &Arc<Self>, interval: Duration) -> DeniedFlusherHandle {
        let governance = Arc::clone(self);
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = stopped.changed() => break,
                }
                // Failures are logged by each record.
                let _ = governance.flush_denied_before((governance.clock)()).await;
            }
            let _ = governance.flush_denied().await;
        });
        DeniedFlusherHandle { stop, task }
    }

    /// Takes the runtime grants from the ledger again and, if they changed (another node of a
    /// shared ledger granted or revoked), compiles them into the bundle in force. Returns whether
    /// anything changed.
    pub async fn refresh_grants(&self) -> Result<bool, ServiceError> {
        let _changing = self.changing.lock().await;
        self.refresh_grants_locked().await
    }

    async fn refresh_grants_locked(&self) -> Result<bool, ServiceError> {
        let grants =
            fold_grants(&read_stream(self.ledger.store().as_ref(), &grants_stream()).await?)?;
        let active = self.active();
        if grants == active.grants {
            return Ok(false);
        }
        let authorizer = Authorizer::compile(&active.bundle, &grants).map_err(policy_error)?;
        self.replace(Active {
            bundle: active.bundle.clone(),
            authorizer,
            grants,
            source: active.source.clone(),
            git_commit: active.git_commit.clone(),
            tests_passed: active.tests_passed,
            activated_at: active.activated_at,
        });
        Ok(true)
    }

    /// Follows the ledger in the background and applies every grant or revocation recorded by
    /// anyone (on a ledger shared by several nodes, the others' too) as soon as this node's store
    /// has it. Ends when the store's live feed ends; abort it to stop earlier.
    pub fn spawn_grants_follower(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let governance = Arc::clone(self);
        let mut live = self.ledger.store().live();
        let stream = grants_stream();
        tokio::spawn(async move {
            loop {
                let refresh = match live.recv().await {
                    Ok(record) => record.envelope.stream == stream,
                    // Records were missed: one of them may have been a grant.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                if refresh {
                    match governance.refresh_grants().await {
                        Ok(true) => tracing::info!("runtime grants changed in the ledger; applied"),
                        Ok(false) => {}
                        Err(error) => {
                            tracing::error!(%error, "cannot apply the ledger's runtime grants")
                        }
                    }
                }
            }
        })
    }

    /// Loads the bundle again from its source. Identical files record nothing; a bundle that
    /// does not parse or fails its tests records `policy.refused` and is refused
    /// (FAILED_PRECONDITION), and the active one stays.
    pub async fn reload(&self, actor: &str, trigger: &str) -> Result<ReloadOutcome, ServiceError> {
        let _changing = self.changing.lock().await;
        let active = self.active();
        let candidate = self.source.load().and_then(|bundle| {
            let tests = cairn_policy::run_tests(&bundle).map_err(policy_error)?;
            Ok((bundle, tests))
        });
        let (bundle, tests) = match candidate {
            Ok((bundle, tests)) if tests.passed() => (bundle, tests),
            Ok((bundle, tests)) => {
                let reason = format!("the bundle fails its own policy tests:\n{tests}");
                return Err(self
                    .refuse(actor, trigger, Some(bundle.hash()), active.hash(), reason)
                    .await);
            }
            Err(error) => {
                return Err(self
                    .refuse(actor, trigger, None, active.hash(), error.to_string())
                    .await);
            }
        };
        if bundle.hash() == active.hash() {
            return Ok(ReloadOutcome {
                changed: false,
                bundle_hash: active.hash(),
                position: None,
            });
        }
        let authorizer = match Authorizer::compile(&bundle, &active.grants) {
            Ok(authorizer) => authorizer,
            Err(error) => {
                return Err(self
                    .refuse(
                        actor,
                        trigger,
                        Some(bundle.hash()),
                        active.hash(),
                        error.to_string(),
                    )
                    .await);
            }
        };
        let scoring = match scoring_of(&bundle) {
            Ok(scoring) => scoring,
            Err(error) => {
                return Err(self
                    .refuse(
                        actor,
                        trigger,
                        Some(bundle.hash()),
                        active.hash(),
                        error.to_string(),
                    )
                    .await);
            }
        };
        let git_commit = match &self.source {
            BundleSource::Dir(dir) => git_commit_of(dir),
            BundleSource::BuiltIn => None,
        };
        let event = GovernanceEvent::PolicyActivated {
            bundle_hash: bundle.hash(),
            previous: Some(active.hash()),
            git_commit: git_commit.clone(),
            source: self.source.describe(),
            trigger: trigger.to_owned(),
            tests_passed: count(tests.cases.len()),
        };
        let position = record(&self.ledger, &policy_stream(), actor, &event).await?;
        let hash = bundle.hash();
        self.ledger.set_policy_bundle_hash(Hash(hash));
        self.replace(Active {
            bundle,
            authorizer,
            grants: active.grants.clone(),
            source: self.source.describe(),
            git_commit,
            tests_passed: count(tests.cases.len()),
            activated_at: position,
        });
        if let Some(apply) = &self.on_scoring {
            apply(Arc::new(scoring));
        }
        tracing::info!(bundle = %Hash(hash), trigger, "policy bundle activated");
        Ok(ReloadOutcome {
            changed: true,
            bundle_hash: hash,
            position: Some(position),
        })
    }

    async fn refuse(
        &self,
        actor: &str,
        trigger: &str,
        bundle_hash: Option<[u8; 32]>,
        active: [u8; 32],
        reason: String,
    ) -> ServiceError {
        tracing::warn!(trigger, %reason, "policy bundle refused; the active one stays");
        let event = GovernanceEvent::PolicyRefused {
            bundle_hash,
            active,
            source: self.source.describe(),
            trigger: trigger.to_owned(),
            reason: reason.chars().take(REASON_BYTES_MAX).collect(),
        };
        if let Err(error) = record(&self.ledger, &policy_stream(), actor, &event).await {
            return error;
        }
        ServiceError::FailedPrecondition(format!(
            "the policy bundle was refused and the active one stays: {reason}"
        ))
    }

    /// Gives `grant.principal` the role `grant.role` in `grant.tenant`, recorded as an event.
    pub async fn grant(
        &self,
        actor: &str,
        grant: Grant,
        reason: &str,
    ) -> Result<Position, ServiceError> {
        self.change_grants(actor, grant, reason, true).await
    }

    /// Takes a runtime grant back (NOT_FOUND if it is not in force).
    pub async fn revoke(
        &self,
        actor: &str,
        grant: Grant,
        reason: &str,
    ) -> Result<Position, ServiceError> {
        self.change_grants(actor, grant, reason, false).await
    }

    async fn change_grants(
        &self,
        actor: &str,
        grant: Grant,
        reason: &str,
        give: bool,
    ) -> Result<Position, ServiceError> {
        validate_grant(&grant)?;
        if reason.is_empty() || reason.len() > GRANT_REASON_BYTES_MAX {
            return Err(ServiceError::InvalidArgument {
                field: "reason",
                reason: format!(
                    "must be 1 to {GRANT_REASON_BYTES_MAX} bytes, got {}",
                    reason.len()
                ),
            });
        }
        let _changing = self.changing.lock().await;
        // Start from the ledger's grants: another node may have changed them.
        self.refresh_grants_locked().await?;
        let active = self.active();
        let mut grants = active.grants.clone();
        let existing = grants.iter().position(|g| *g == grant);
        match (give, existing) {
            (true, Some(_)) => {
                return Err(ServiceError::FailedPrecondition(format!(
                    "{} already has {} in {}",
                    grant.principal, grant.role, grant.tenant
                )));
            }
            (true, None) if grants.len() >= GRANTS_MAX => {
                return Err(ServiceError::FailedPrecondition(format!(
                    "{GRANTS_MAX} runtime grants are in force, the limit"
                )));
            }
            (true, None) => grants.push(grant.clone()),
            (false, Some(index)) => {
                grants.remove(index);
            }
            (false, None) => {
                return Err(ServiceError::NotFound(format!(
                    "{} has no runtime grant of {} in {}",
                    grant.principal, grant.role, grant.tenant
                )));
            }
        }
        let authorizer = Authorizer::compile(&active.bundle, &grants).map_err(policy_error)?;
        let event = if give {
            GovernanceEvent::AccessGranted {
                principal: grant.principal,
                role: grant.role,
                tenant: grant.tenant,
                reason: reason.to_owned(),
            }
        } else {
            GovernanceEvent::AccessRevoked {
                principal: grant.principal,
                role: grant.role,
                tenant: grant.tenant,
                reason: reason.to_owned(),
            }
        };
        let position = record(&self.ledger, &grants_stream(), actor, &event).await?;
        self.replace(Active {
            bundle: active.bundle.clone(),
            authorizer,
            grants,
            source: active.source.clone(),
            git_commit: active.git_commit.clone(),
            tests_passed: active.tests_passed,
            activated_at: active.activated_at,
        });
        Ok(position)
    }

    fn replace(&self, active: Active) {
        *self.active.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(active);
    }

    /// Replays the requests of the access log in `[from, to)` (microseconds; `None` unbounded)
    /// against the bundle in `dir`, with the runtime grants in force.
    pub fn dry_run(
        &self,
        dir: &Path,
        from: Option<i64>,
        to: Option<i64>,
        flips_max: usize,
    ) -> Result<DryRun, ServiceError> {
        let proposed = Bundle::load_dir(dir).map_err(policy_error)?;
        let tests = cairn_policy::run_tests(&proposed).map_err(policy_error)?;
        let active = self.active();
        let authorizer = Authorizer::compile(&proposed, &active.grants).map_err(policy_error)?;
        let (requests, recorded) = self.access_log.between(from, to);
        let mut distinct: Vec<AccessRequest> = requests.keys().cloned().collect();
        distinct.sort_by(|a, b| {
            (&a.principal, &a.tenant, a.object, a.action).cmp(&(
                &b.principal,
                &b.tenant,
                b.object,
                b.action,
            ))
        });
        let flips = cairn_policy::dry_run(&active.authorizer, &authorizer, &distinct);
        let truncated = flips.len() > flips_max;
        let flips = flips
            .into_iter()
            .take(flips_max)
            .map(|flip| {
                let seen = requests.get(&flip.request).copied().unwrap_or(0);
                (flip, seen)
            })
            .collect();
        Ok(DryRun {
            proposed_hash: proposed.hash(),
            tests,
            requests_replayed: distinct.len() as u64,
            requests_recorded: recorded,
            flips,
            truncated,
        })
    }

    /// The calls denied in `tenant`, from stream version `from`, at most `limit`: each
    /// `access.denied` and `access.denied.repeated` (repeats still counted in memory are not
    /// among them until their window is recorded).
    pub async fn denied(
        &self,
        tenant: &TenantId,
        from: StreamVersion,
        limit: usize,
    ) -> Result<Vec<DeniedCall>, ServiceError> {
        let stream = StreamId::new(tenant.clone(), AUDIT_AGGREGATE, DENIED_STREAM_ID)?;
        read_page(self.ledger.store().as_ref(), &stream, from, limit).await
    }
}

/// A running denial flusher ([`Governance::spawn_denied_flusher`]).
pub struct DeniedFlusherHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl DeniedFlusherHandle {
    /// Records the denials still counted in memory (every open window) and waits for the task
    /// to end.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

impl<S> Drop for Governance<S> {
    fn drop(&mut self) {
        let windows = self.denials.get_mut().unwrap_or_else(|e| e.into_inner());
        let counted = windows.counted();
        if counted > 0 {
            tracing::warn!(
                counted,
                "denied calls counted in memory were never recorded: no flush before the end"
            );
        }
    }
}

/// A page of a governance stream: at most `limit` events from stream version `from`.
pub(crate) async fn read_page<S: EventStore + ?Sized>(
    store: &S,
    stream: &StreamId,
    from: StreamVersion,
    limit: usize,
) -> Result<Vec<LoggedEvent>, ServiceError> {
    let records = store.read_stream(stream, from, limit).await?;
    records
        .iter()
        .map(|record| {
            Ok(LoggedEvent {
                position: record.position(),
                recorded_at_micros: record.envelope.recorded_at.0,
                actor: record.envelope.actor.clone(),
                event: decode(record)?,
            })
        })
        .collect()
}

/// The scoring policy of a bundle: its `scoring/*.toml` files, or the built-in policy when it
/// has none.
pub fn scoring_of(bundle: &Bundle) -> Result<ScoringPolicy, ServiceError> {
    let mut files = Vec::new();
    for (path, bytes) in bundle.files() {
        let Some(name) = path.strip_prefix("scoring/") else {
            continue;
        };
        if name.contains('/') || !name.ends_with(".toml") {
            continue;
        }
        let text = std::str::from_utf8(bytes).map_err(|_| ServiceError::InvalidPolicy {
            file: path.to_owned(),
            reason: "is not UTF-8".into(),
        })?;
        files.push((name.to_owned(), text.to_owned()));
    }
    if files.is_empty() {
        return Ok(ScoringPolicy::built_in());
    }
    ScoringPolicy::from_files(files.iter().map(|(n, t)| (n.as_str(), t.as_str())))
}

fn validate_grant(grant: &Grant) -> Result<(), ServiceError> {
    let invalid = |field: &'static str| {
        move |error: cairn_policy::PolicyError| ServiceError::InvalidArgument {
            field,
            reason: error.to_string(),
        }
    };
    cairn_policy::validate_principal(&grant.principal).map_err(invalid("principal"))?;
    cairn_policy::validate_role(&grant.role).map_err(invalid("role"))?;
    cairn_policy::validate_tenant(&grant.tenant).map_err(invalid("tenant"))?;
    Ok(())
}

fn policy_error(error: cairn_policy::PolicyError) -> ServiceError {
    ServiceError::InvalidPolicy {
        file: "policies".into(),
        reason: error.to_string(),
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn system_tenant() -> TenantId {
    TenantId::new(SYSTEM_TENANT).expect("the system tenant id is valid")
}

fn policy_stream() -> StreamId {
    StreamId::new(system_tenant(), POLICY_AGGREGATE, POLICY_STREAM_ID)
        .expect("the policy stream's id is valid")
}

fn denied_stream(tenant: &TenantId) -> StreamId {
    StreamId::new(tenant.clone(), AUDIT_AGGREGATE, DENIED_STREAM_ID)
        .expect("the denied stream's id is valid")
}

fn grants_stream() -> StreamId {
    StreamId::new(system_tenant(), ACCESS_AGGREGATE, GRANTS_STREAM_ID)
        .expect("the grants stream's id is valid")
}

fn now_micros() -> i64 {
    cairn_store::now().0
}

/// Appends one governance event and returns its position. The subject of a hold or an erasure is
/// its personal part, sealed under that subject's key.
pub(crate) async fn record<S: EventStore + KeyStore>(
    ledger: &Ledger<S>,
    stream: &StreamId,
    actor: &str,
    event: &GovernanceEvent,
) -> Result<Position, ServiceError> {
    let personal = event.personal_subject().map(|subject| PersonalData {
        subject: subject.to_owned(),
        bytes: subject.as_bytes().to_vec(),
    });
    let draft = EventDraft {
        event_id: None,
        event_type: event.event_type().to_owned(),
        event_schema_version: cairn_domain::codec::SCHEMA_VERSION,
        causation_id: None,
        correlation_id: None,
        lineage: Vec::new(),
        data_class: Some(if personal.is_some() {
            DataClass::Personal
        } else {
            DataClass::Internal
        }),
        clear: event.encode(),
        personal,
        expected_policy_bundle_hash: None,
    };
    let (result, _) = ledger
        .append(AppendCommand {
            stream: stream.clone(),
            expected: ExpectedVersion::Any,
            actor: actor.to_owned(),
            events: vec![draft],
        })
        .await?;
    Ok(result.last_position)
}

pub(crate) fn decode(record: &Record) -> Result<GovernanceEvent, ServiceError> {
    let payload = SealedPayload::decode(&record.payload)?;
    GovernanceEvent::decode(
        &record.envelope.event_type,
        record.envelope.event_schema_version,
        &payload.clear,
    )
    .map_err(|error| {
        ServiceError::Internal(format!(
            "governance record at {} does not decode: {error}",
            record.position()
        ))
    })
}

/// Every event of a governance stream with its personal part opened: (position, event, whether
/// the record had a personal part that could not be opened).
pub(crate) async fn read_opened<S: EventStore + KeyStore>(
    ledger: &Ledger<S>,
    stream: &StreamId,
) -> Result<Vec<(Position, GovernanceEvent, bool)>, ServiceError> {
    let mut events = Vec::new();
    let mut from = StreamVersion(1);
    loop {
        let page = ledger
            .store()
            .read_stream(stream, from, GOVERNANCE_READ_PAGE)
            .await?;
        let Some(last) = page.last() else {
            return Ok(events);
        };
        from = StreamVersion(last.envelope.stream_version.0 + 1);
        for record in page {
            let position = record.position();
            let opened = ledger.open(record, true).await?;
            let (subject, unreadable) = match &opened.personal {
                PersonalView::Open(bytes) => {
                    (Some(String::from_utf8_lossy(bytes).into_owned()), false)
                }
                PersonalView::None => (None, false),
                PersonalView::Withheld | PersonalView::Erased => (None, true),
            };
            let envelope = &opened.record.envelope;
            let event = GovernanceEvent::decode_with_subject(
                &envelope.event_type,
                envelope.event_schema_version,
                &opened.clear,
                subject.as_deref(),
            )
            .map_err(|error| {
                ServiceError::Internal(format!(
                    "governance record at {position} does not decode: {error}"
                ))
            })?;
            events.push((position, event, unreadable));
        }
    }
}

/// Most records read from one governance stream at start.
const GOVERNANCE_READ_PAGE: usize = 1000;

async fn read_stream<S: EventStore + ?Sized>(
    store: &S,
    stream: &StreamId,
) -> Result<Vec<GovernanceEvent>, ServiceError> {
    Ok(read_records(store, stream)
        .await?
        .into_iter()
        .map(|(_, _, _, event)| event)
        .collect())
}

/// Every event of a governance stream: (position, recording time, actor, event).
pub(crate) async fn read_records<S: EventStore + ?Sized>(
    store: &S,
    stream: &StreamId,
) -> Result<Vec<(Position, i64, String, GovernanceEvent)>, ServiceError> {
    let mut events = Vec::new();
    let mut from = StreamVersion(1);
    loop {
        let page = store
            .read_stream(stream, from, GOVERNANCE_READ_PAGE)
            .await?;
        let Some(last) = page.last() else {
            return Ok(events);
        };
        from = StreamVersion(last.envelope.stream_version.0 + 1);
        for record in &page {
            events.push((
                record.position(),
                record.envelope.recorded_at.0,
                record.envelope.actor.clone(),
                decode(record)?,
            ));
        }
    }
}

fn fold_grants(events: &[GovernanceEvent]) -> Result<Vec<Grant>, ServiceError> {
    let mut grants: Vec<Grant> = Vec::new();
    for event in events {
        match event {
            GovernanceEvent::AccessGranted {
                principal,
                role,
                tenant,
                ..
            } => grants.push(Grant {
                principal: principal.clone(),
                role: role.clone(),
                tenant: tenant.clone(),
            }),
            GovernanceEvent::AccessRevoked {
                principal,
                role,
                tenant,
                ..
            } => grants
                .retain(|g| !(g.principal == *principal && g.role == *role && g.tenant == *tenant)),
            other => {
                return Err(ServiceError::Internal(format!(
                    "the grants stream holds a {}",
                    other.event_type()
                )));
            }
        }
    }
    Ok(grants)
}

/// The last `policy.activated` recorded: its position and hash.
async fn last_activation<S: EventStore + ?Sized>(
    store: &S,
) -> Result<Option<(Position, [u8; 32])>, ServiceError> {
    let stream = policy_stream();
    let mut from = StreamVersion(1);
    let mut last = None;
    loop {
        let page = store
            .read_stream(&stream, from, GOVERNANCE_READ_PAGE)
            .await?;
        let Some(tail) = page.last() else {
            return Ok(last);
        };
        from = StreamVersion(tail.envelope.stream_version.0 + 1);
        for record in &page {
            if let GovernanceEvent::PolicyActivated { bundle_hash, .. } = decode(record)? {
                last = Some((record.position(), bundle_hash));
            }
        }
    }
}

/// The commit `HEAD` names in the git checkout that holds `dir`, read from the `.git` files (no
/// git binary needed). `None` outside a checkout or when it cannot be read.
pub fn git_commit_of(dir: &Path) -> Option<String> {
    let dir = dir.canonicalize().ok()?;
    let mut at = Some(dir.as_path());
    while let Some(candidate) = at {
        let dot_git = candidate.join(".git");
        if dot_git.is_dir() {
            return head_commit(&dot_git);
        }
        if dot_git.is_file() {
            // A worktree or submodule: `gitdir: PATH`.
            let text = std::fs::read_to_string(&dot_git).ok()?;
            let target = text.trim().strip_prefix("gitdir:")?.trim();
            return head_commit(&candidate.join(target));
        }
        at = candidate.parent();
    }
    None
}

fn head_commit(git_dir: &Path) -> Option<String> {
    let head = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
    let head = head.trim();
    let Some(reference) = head.strip_prefix("ref:") else {
        return is_commit(head).then(|| head.to_owned());
    };
    let reference = reference.trim();
    // A worktree keeps its refs in the common dir.
    let common = std::fs::read_to_string(git_dir.join("commondir"))
        .ok()
        .map(|c| git_dir.join(c.trim()))
        .unwrap_or_else(|| git_dir.to_owned());
    for base in [git_dir, common.as_path()] {
        if let Ok(text) = std::fs::read_to_string(base.join(reference)) {
            let commit = text.trim();
            return is_commit(commit).then(|| commit.to_owned());
        }
    }
    let packed = std::fs::read_to_string(common.join("packed-refs")).ok()?;
    packed.lines().find_map(|line| {
        let (commit, name) = line.split_once(' ')?;
        (name == reference && is_commit(commit)).then(|| commit.to_owned())
    })
}

fn is_commit(text: &str) -> bool {
    (text.len() == 40 || text.len() == 64) && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The access log: distinct requests per minute, in memory and, when a file is given, appended
/// to it (one line per new (minute, request), so a restart keeps what dry runs replay).
struct AccessLog {
    entries: Mutex<BTreeMap<i64, HashSet<AccessRequest>>>,
    file: Option<Mutex<std::fs::File>>,
}

impl AccessLog {
    fn open(path: Option<PathBuf>) -> Result<AccessLog, ServiceError> {
        let mut entries: BTreeMap<i64, HashSet<AccessRequest>> = BTreeMap::new();
        let mut lines_read = 0usize;
        if let Some(path) = &path
            && let Ok(text) = std::fs::read_to_string(path)
        {
            for line in text.lines() {
                lines_read += 1;
                // A torn last line (a crash mid-write) is skipped.
                if let Some((minute, request)) = parse_log_line(line) {
                    entries.entry(minute).or_default().insert(request);
                }
            }
        }
        let log = AccessLog {
            entries: Mutex::new(entries),
            file: None,
        };
        let mut entries = log.entries.lock().unwrap_or_else(|e| e.into_inner());
        log.trim(&mut entries);
        let kept: usize = entries.values().map(HashSet::len).sum();
        let file = match &path {
            None => None,
            Some(path) => {
                let io = |source| ServiceError::Io {
                    context: format!("cannot open the access log {}", path.display()),
                    source,
                };
                // The file only grows while the server runs; at start it is written anew with
                // what is kept once it holds much more (older minutes trimmed, torn lines).
                if lines_read > kept.saturating_mul(2).max(ACCESS_LOG_REWRITE_LINES_MIN) {
                    let temporary = path.with_extension("tmp");
                    let mut text = String::new();
                    for (minute, requests) in entries.iter() {
                        for request in requests {
                            text.push_str(&log_line(*minute, request));
                        }
                    }
                    std::fs::write(&temporary, text).map_err(io)?;
                    std::fs::rename(&temporary, path).map_err(io)?;
                }
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(io)?;
                Some(Mutex::new(file))
            }
        };
        drop(entries);
        Ok(AccessLog { file, ..log })
    }

    fn remember(&self, at_micros: i64, request: &AccessRequest) {
        let minute = at_micros.div_euclid(MINUTE_MICROS) * MINUTE_MICROS;
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        // Every authorized call passes here: the request is copied only the first time in its
        // minute.
        let seen = entries.entry(minute).or_default();
        if seen.contains(request) {
            return;
        }
        seen.insert(request.clone());
        self.trim(&mut entries);
        drop(entries);
        if let Some(file) = &self.file {
            let line = log_line(minute, request);
            let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(error) = file.write_all(line.as_bytes()) {
                tracing::warn!(%error, "the access log could not be written");
            }
        }
    }

    fn trim(&self, entries: &mut BTreeMap<i64, HashSet<AccessRequest>>) {
        let mut total: usize = entries.values().map(HashSet::len).sum();
        while total > ACCESS_LOG_ENTRIES_MAX {
            let Some((_, oldest)) = entries.pop_first() else {
                break;
            };
            total -= oldest.len();
        }
    }

    /// The distinct requests of `[from, to)` with the number of minutes each was seen in, and the
    /// number of (minute, request) entries.
    fn between(&self, from: Option<i64>, to: Option<i64>) -> (HashMap<AccessRequest, u64>, u64) {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut requests = HashMap::new();
        let mut recorded = 0;
        for (minute, set) in entries.iter() {
            if from.is_some_and(|from| *minute + MINUTE_MICROS <= from)
                || to.is_some_and(|to| *minute >= to)
            {
                continue;
            }
            for request in set {
                *requests.entry(request.clone()).or_insert(0) += 1;
                recorded += 1;
            }
        }
        (requests, recorded)
    }
}

/// A line of the access log: `MINUTE PRINCIPAL TENANT OBJECT ACTION`.
fn log_line(minute: i64, request: &AccessRequest) -> String {
    format!(
        "{minute} {} {} {} {}\n",
        request.principal,
        request.tenant,
        request.object.as_str(),
        request.action.as_str()
    )
}

fn parse_log_line(line: &str) -> Option<(i64, AccessRequest)> {
    let mut parts = line.split(' ');
    let minute = parts.next()?.parse().ok()?;
    let principal = parts.next()?.to_owned();
    let tenant = parts.next()?.to_owned();
    let object = parts.next()?.parse().ok()?;
    let action = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((
        minute,
        AccessRequest {
            principal,
            tenant,
            object,
            action,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(principal: &str) -> AccessRequest {
        AccessRequest {
            principal: principal.into(),
            tenant: "acme".into(),
            object: Object::Feedback,
            action: Action::Read,
        }
    }

    #[test]
    fn the_access_log_keeps_distinct_requests_per_minute_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::open(Some(path.clone())).unwrap();
        log.remember(MINUTE_MICROS + 5, &request("user:a"));
        log.remember(MINUTE_MICROS + 9, &request("user:a"));
        log.remember(2 * MINUTE_MICROS, &request("user:a"));
        log.remember(2 * MINUTE_MICROS, &request("user:b"));
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        let log = AccessLog::open(Some(path.clone())).unwrap();
        let (requests, recorded) = log.between(None, None);
        assert_eq!((requests.len(), recorded), (2, 3));
        assert_eq!(requests[&request("user:a")], 2);
        // A period: only the second minute.
        let (requests, _) = log.between(Some(2 * MINUTE_MICROS), None);
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[&request("user:a")], 1);
    }

    #[test]
    fn an_overgrown_access_log_is_written_anew_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        // The same request over and over (as a crash-looping writer might leave), and a torn line.
        let line = log_line(MINUTE_MICROS, &request("user:a"));
        let mut text = line.repeat(ACCESS_LOG_REWRITE_LINES_MIN + 1);
        text.push_str("60000000 user:b acme feed");
        std::fs::write(&path, text).unwrap();
        let log = AccessLog::open(Some(path.clone())).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), line);
        assert_eq!(log.between(None, None).1, 1);
    }
}
