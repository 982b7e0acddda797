//! `cairn.v1.PolicyService`: checks with an explanation, the bundle in force, dry runs, reloads,
//! runtime grants and the log of denied calls. Thin: every rule is in `cairn-policy` and
//! `cairn_service::governance`.

use std::path::PathBuf;
use std::sync::Arc;

use cairn_policy::{AccessRequest, Grant, Verdict};
use cairn_service::governance::{DRY_RUN_FLIPS_MAX, DeniedCall, Governance};
use cairn_store::{EventStore, KeyStore};
use tonic::{Request, Response, Status};

use crate::api_support::{Backend, StreamPage, service_status};
use crate::domain_convert::tenant_from_proto;
use crate::error::invalid_argument;
use crate::proto;
use crate::proto::policy_service_server::PolicyService;

/// The flips a dry run returns when the request does not say.
const DRY_RUN_FLIPS_DEFAULT: usize = 1000;
/// Longest bundle directory path a dry run accepts, in bytes.
const BUNDLE_DIR_BYTES_MAX: usize = 4096;

/// The policy service.
pub struct PolicyApi<S> {
    backend: Arc<Backend<S>>,
}

impl<S: EventStore + KeyStore> PolicyApi<S> {
    pub(crate) fn new(backend: Arc<Backend<S>>) -> PolicyApi<S> {
        PolicyApi { backend }
    }

    fn governance(&self) -> &Arc<Governance<S>> {
        self.backend.access().governance()
    }
}

fn verdict_to_proto(verdict: &Verdict) -> proto::Verdict {
    proto::Verdict {
        allowed: verdict.allowed,
        rule: verdict.rule.clone().unwrap_or_default(),
        reason: verdict.reason.clone(),
    }
}

fn request_to_proto(request: &AccessRequest) -> proto::AccessRequest {
    proto::AccessRequest {
        principal: request.principal.clone(),
        tenant: request.tenant.clone(),
        object: request.object.as_str().to_owned(),
        action: request.action.as_str().to_owned(),
    }
}

fn request_from_proto(request: Option<proto::AccessRequest>) -> Result<AccessRequest, Status> {
    let request = request.ok_or_else(|| invalid_argument("request", "request is required"))?;
    cairn_policy::validate_principal(&request.principal)
        .map_err(|e| invalid_argument("request.principal", e.to_string()))?;
    cairn_policy::validate_tenant(&request.tenant)
        .map_err(|e| invalid_argument("request.tenant", e.to_string()))?;
    Ok(AccessRequest {
        principal: request.principal,
        tenant: request.tenant,
        object: request
            .object
            .parse()
            .map_err(|e: cairn_policy::PolicyError| {
                invalid_argument("request.object", e.to_string())
            })?,
        action: request
            .action
            .parse()
            .map_err(|e: cairn_policy::PolicyError| {
                invalid_argument("request.action", e.to_string())
            })?,
    })
}

/// A grant's tenant: a tenant id, or `*` (every tenant).
fn grant_tenant(tenant: &str) -> Result<(), Status> {
    if tenant == "*" {
        return Ok(());
    }
    tenant_from_proto("tenant", tenant.to_owned()).map(|_| ())
}

fn denied_to_proto(call: DeniedCall) -> proto::DeniedCall {
    use cairn_domain::governance::GovernanceEvent;
    let at = proto::DeniedCall {
        position: call.position.0,
        recorded_at_micros: call.recorded_at_micros,
        ..Default::default()
    };
    match call.event {
        GovernanceEvent::AccessDenied {
            principal,
            method,
            object,
            action,
            tenant,
            bundle_hash,
        } => proto::DeniedCall {
            principal,
            method,
            object,
            action,
            tenant,
            bundle_hash: bundle_hash.to_vec(),
            ..at
        },
        GovernanceEvent::AccessDeniedRepeated {
            principal,
            method,
            object,
            action,
            tenant,
            bundle_hash,
            count,
            first_at_micros,
            last_at_micros,
        } => proto::DeniedCall {
            principal,
            method,
            object,
            action,
            tenant,
            bundle_hash: bundle_hash.to_vec(),
            repeats: count,
            first_repeat_at_micros: first_at_micros,
            last_repeat_at_micros: last_at_micros,
            ..at
        },
        // Only the server writes the denied stream, and only these two.
        _ => at,
    }
}

#[tonic::async_trait]
impl<S: EventStore + KeyStore> PolicyService for PolicyApi<S> {
    async fn check(
        &self,
        request: Request<proto::CheckRequest>,
    ) -> Result<Response<proto::CheckResponse>, Status> {
        // A check about no one tenant (`*`: reloading the policy, reading the whole ledger) needs
        // the right to read the policy in every tenant.
        let tenant = request.get_ref().tenant.clone();
        if tenant == cairn_policy::ANY_TENANT {
            self.backend.access().authorize(&request, &tenant).await?;
        } else {
            self.backend
                .access()
                .authorize_in(&request, "tenant", &tenant)
                .await?;
        }
        let request = request.into_inner();
        let asked = request_from_proto(request.request)?;
        if asked.tenant != request.tenant {
            return Err(invalid_argument(
                "request.tenant",
                format!(
                    "must be the request's tenant {:?}: a check is asked within a tenant whose \
                     policy the caller may read",
                    request.tenant
                ),
            ));
        }
        let governance = self.governance();
        let verdict = governance.check(&asked);
        Ok(Response::new(proto::CheckResponse {
            verdict: Some(verdict_to_proto(&verdict)),
            bundle_hash: governance.active().hash().to_vec(),
        }))
    }

    async fn get_active_bundle(
        &self,
        request: Request<proto::GetActiveBundleRequest>,
    ) -> Result<Response<proto::GetActiveBundleResponse>, Status> {
        self.backend.access().authorize(&request, "*").await?;
        let active = self.governance().active();
        Ok(Response::new(proto::GetActiveBundleResponse {
            bundle_hash: active.hash().to_vec(),
            source: active.source.clone(),
            git_commit: active.git_commit.clone().unwrap_or_default(),
            files: active
                .bundle
                .files()
                .map(|(path, bytes)| proto::BundleFile {
                    path: path.to_owned(),
                    hash: blake3::hash(bytes).as_bytes().to_vec(),
                    size_bytes: bytes.len() as u64,
                })
                .collect(),
            activated_at_position: active.activated_at.0,
            grants: active.grants.len() as u64,
            tests_passed: u64::from(active.tests_passed),
        }))
    }

    async fn dry_run(
        &self,
        request: Request<proto::DryRunRequest>,
    ) -> Result<Response<proto::DryRunResponse>, Status> {
        self.backend.access().authorize(&request, "*").await?;
        let request = request.into_inner();
        if request.bundle_dir.is_empty() || request.bundle_dir.len() > BUNDLE_DIR_BYTES_MAX {
            return Err(invalid_argument(
                "bundle_dir",
                format!(
                    "must be 1 to {BUNDLE_DIR_BYTES_MAX} bytes, got {}",
                    request.bundle_dir.len()
                ),
            ));
        }
        let flips_max = match request.flips_max as usize {
            0 => DRY_RUN_FLIPS_DEFAULT,
            n if n > DRY_RUN_FLIPS_MAX => {
                return Err(Status::resource_exhausted(format!(
                    "flips_max is {n}, over the limit of {DRY_RUN_FLIPS_MAX}"
                )));
            }
            n => n,
        };
        let period = request.period.unwrap_or_default();
        let from = (period.from_micros != 0).then_some(period.from_micros);
        let to = (period.to_micros != 0).then_some(period.to_micros);
        let governance = Arc::clone(self.governance());
        let dir = PathBuf::from(request.bundle_dir);
        let run =
            tokio::task::spawn_blocking(move || governance.dry_run(&dir, from, to, flips_max))
                .await
                .map_err(|error| Status::internal(format!("the dry run failed: {error}")))?
                .map_err(|error| match error {
                    cairn_service::ServiceError::InvalidPolicy { .. }
                    | cairn_service::ServiceError::Io { .. } => {
                        invalid_argument("bundle_dir", error.to_string())
                    }
                    other => service_status(other),
                })?;
        Ok(Response::new(proto::DryRunResponse {
            proposed_hash: run.proposed_hash.to_vec(),
            tests_pass: run.tests.passed(),
            test_failures: run
                .tests
                .failures()
                .map(|case| {
                    format!(
                        "{}:{}: {} {} {} {}: expected {}, got {} ({})",
                        case.file,
                        case.line,
                        case.request.principal,
                        case.request.tenant,
                        case.request.object.as_str(),
                        case.request.action.as_str(),
                        if case.expected { "allow" } else { "deny" },
                        if case.verdict.allowed {
                            "allow"
                        } else {
                            "deny"
                        },
                        case.verdict.reason
                    )
                })
                .collect(),
            requests_replayed: run.requests_replayed,
            requests_recorded: run.requests_recorded,
            flips: run
                .flips
                .iter()
                .map(|(flip, count)| proto::Flip {
                    request: Some(request_to_proto(&flip.request)),
                    was: Some(verdict_to_proto(&flip.was)),
                    becomes: Some(verdict_to_proto(&flip.becomes)),
                    count: *count,
                })
                .collect(),
            truncated: run.truncated,
        }))
    }

    async fn reload(
        &self,
        request: Request<proto::ReloadRequest>,
    ) -> Result<Response<proto::ReloadResponse>, Status> {
        let caller = self.backend.access().authorize(&request, "*").await?;
        let outcome = self
            .governance()
            .reload(&caller.principal, "rpc")
            .await
            .map_err(service_status)?;
        Ok(Response::new(proto::ReloadResponse {
            changed: outcome.changed,
            bundle_hash: outcome.bundle_hash.to_vec(),
            position: outcome.position.map_or(0, |p| p.0),
        }))
    }

    async fn grant(
        &self,
        request: Request<proto::GrantRequest>,
    ) -> Result<Response<proto::GrantResponse>, Status> {
        self.change_grant(request, true).await
    }

    async fn revoke(
        &self,
        request: Request<proto::RevokeRequest>,
    ) -> Result<Response<proto::GrantResponse>, Status> {
        let request = request.map(|r| proto::GrantRequest {
            tenant: r.tenant,
            principal: r.principal,
            role: r.role,
            reason: r.reason,
        });
        self.change_grant(request, false).await
    }

    async fn list_denied(
        &self,
        mut request: Request<proto::ListDeniedRequest>,
    ) -> Result<Response<proto::ListDeniedResponse>, Status> {
        self.backend.access().authorize_read(&mut request).await?;
        let request = request.into_inner();
        let tenant = tenant_from_proto("tenant", request.tenant)?;
        let page = StreamPage::new(request.page)?;
        let stamp = self.backend.head_stamp().await?;
        let calls = self
            .governance()
            .denied(&tenant, page.from, page.read_limit())
            .await
            .map_err(service_status)?;
        let (calls, page) = page.finish(calls);
        Ok(Response::new(proto::ListDeniedResponse {
            calls: calls.into_iter().map(denied_to_proto).collect(),
            page,
            stamp,
        }))
    }
}

impl<S: EventStore + KeyStore> PolicyApi<S> {
    async fn change_grant(
        &self,
        request: Request<proto::GrantRequest>,
        give: bool,
    ) -> Result<Response<proto::GrantResponse>, Status> {
        grant_tenant(&request.get_ref().tenant)?;
        let tenant = request.get_ref().tenant.clone();
        let caller = self.backend.access().authorize(&request, &tenant).await?;
        let request = request.into_inner();
        let grant = Grant {
            principal: request.principal,
            role: request.role,
            tenant: request.tenant,
        };
        let governance = self.governance();
        let position = if give {
            governance
                .grant(&caller.principal, grant, &request.reason)
                .await
        } else {
            governance
                .revoke(&caller.principal, grant, &request.reason)
                .await
        }
        .map_err(service_status)?;
        Ok(Response::new(proto::GrantResponse {
            position: position.0,
            bundle_hash: governance.active().hash().to_vec(),
        }))
    }
}
