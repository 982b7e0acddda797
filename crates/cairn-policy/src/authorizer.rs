//! The compiled access policy: casbin decides, cairn explains.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{PoisonError, RwLock};

use casbin::prelude::{CoreApi, DefaultModel, Enforcer, MemoryAdapter};
use serde::{Deserialize, Serialize};

use crate::access::{AccessPolicy, LinkSource, PolicyRule, RoleLink};
use crate::bundle::Bundle;
use crate::error::PolicyError;
use crate::limits;
use crate::names::{
    ANY_TENANT, Action, Object, validate_principal, validate_role, validate_tenant,
};

/// One question for the policy: may `principal` do `action` on `object` in `tenant`?
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AccessRequest {
    /// The authenticated caller.
    pub principal: String,
    /// A tenant id, or `*` for a call that is not about one tenant (reading the whole ledger,
    /// reloading the policy). An empty or invalid tenant is denied.
    pub tenant: String,
    /// What the call acts on.
    pub object: Object,
    /// What the call does to it.
    pub action: Action,
}

impl AccessRequest {
    /// A request from its four parts.
    pub fn new(
        principal: impl Into<String>,
        tenant: impl Into<String>,
        object: Object,
        action: Action,
    ) -> AccessRequest {
        AccessRequest {
            principal: principal.into(),
            tenant: tenant.into(),
            object,
            action,
        }
    }
}

impl fmt::Display for AccessRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} in tenant {}: {}/{}",
            self.principal, self.tenant, self.object, self.action
        )
    }
}

/// The policy's answer, with why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// Whether the request is allowed.
    pub allowed: bool,
    /// When allowed: the policy row that allowed it and the chain of grants and role
    /// inheritance that gave the principal its role, each with its file and line (or runtime
    /// grant). `None` when denied.
    pub rule: Option<String>,
    /// In words, e.g. "no role of user:alice in tenant acme allows opportunity/decide (roles held
    /// there: role:triager, role:contributor, role:viewer)".
    pub reason: String,
}

impl Verdict {
    fn denied(reason: String) -> Verdict {
        Verdict {
            allowed: false,
            rule: None,
            reason,
        }
    }
}

/// A runtime grant: `principal` has `role` in `tenant` (or in every tenant, `*`). Grants are
/// ledger events, never lines of the tracked policy files.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Grant {
    /// Who gets the role: a principal, never a role name.
    pub principal: String,
    /// `role:NAME`. A role the policy does not define grants nothing.
    pub role: String,
    /// A tenant id, or `*` for every tenant.
    pub tenant: String,
}

/// A compiled, immutable access policy: the bundle's model and policy plus runtime grants.
/// `Send + Sync`; [`Authorizer::check`] is synchronous and remembers its verdicts (bounded by
/// [`limits::MEMO_VERDICTS_MAX`]), so a repeated request costs two map lookups.
pub struct Authorizer {
    /// The decider.
    enforcer: Enforcer,
    /// The `p` rows in casbin's order, to explain an allow.
    rules: Vec<PolicyRule>,
    /// The `g` rows and the grants, to explain which chain gave the role.
    links: Vec<RoleLink>,
    /// Indices into `links` by member (principal or role).
    links_by_member: HashMap<String, Vec<usize>>,
    bundle_hash: [u8; 32],
    memo: RwLock<Memo>,
}

// A compile-time proof of the promise above.
const _: fn() = || {
    fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<Authorizer>();
};

/// casbin's domain matching function: a link in `*` holds in every tenant. Called by the role
/// manager with (the domain asked about, a domain that has links). Only `*` is a pattern: a
/// tenant id cannot contain `*` (validated), and a request about `*` sees only `*` links.
fn tenant_matches(asked: &str, linked: &str) -> bool {
    linked == ANY_TENANT || linked == asked
}

/// casbin's result type, as an error of ours.
fn casbin_error(error: casbin::Error) -> PolicyError {
    PolicyError::Casbin(error.to_string())
}

impl Authorizer {
    /// Compiles the bundle's access model and policy, plus runtime grants (which come from ledger
    /// events, never from files). A grant whose principal is not a valid principal (a role name
    /// in particular), whose role is not a valid role name, or whose tenant is invalid is refused.
    pub fn compile(bundle: &Bundle, grants: &[Grant]) -> Result<Authorizer, PolicyError> {
        Authorizer::compile_policy(bundle.access(), bundle.hash(), grants)
    }

    pub(crate) fn compile_policy(
        policy: &AccessPolicy,
        bundle_hash: [u8; 32],
        grants: &[Grant],
    ) -> Result<Authorizer, PolicyError> {
        if grants.len() > limits::GRANTS_MAX {
            return Err(PolicyError::Limit {
                what: "runtime grants".to_owned(),
                limit: limits::GRANTS_MAX as u64,
                actual: grants.len() as u64,
            });
        }
        let mut links = policy.links.clone();
        for (index, grant) in grants.iter().enumerate() {
            let refused = |error: PolicyError| PolicyError::InvalidGrant {
                index,
                principal: grant.principal.clone(),
                role: grant.role.clone(),
                tenant: grant.tenant.clone(),
                reason: error.to_string(),
            };
            validate_principal(&grant.principal).map_err(refused)?;
            validate_role(&grant.role).map_err(refused)?;
            validate_tenant(&grant.tenant).map_err(refused)?;
            links.push(RoleLink {
                member: grant.principal.clone(),
                role: grant.role.clone(),
                tenant: grant.tenant.clone(),
                source: LinkSource::Grant(index),
            });
        }

        // casbin's constructors are async only because they can read files; from a string and
        // an in-memory adapter they never wait on anything, so a minimal executor drives them.
        let model = futures::executor::block_on(DefaultModel::from_str(&policy.model_text))
            .map_err(casbin_error)?;
        let mut enforcer =
            futures::executor::block_on(Enforcer::new(model, MemoryAdapter::default()))
                .map_err(casbin_error)?;
        enforcer
            .get_role_manager()
            .write()
            .matching_fn(None, Some(tenant_matches));
        for rule in &policy.rules {
            enforcer.get_mut_model().add_policy(
                "p",
                "p",
                vec![
                    rule.role.clone(),
                    rule.tenant.clone(),
                    rule.object.as_str().to_owned(),
                    rule.action.as_str().to_owned(),
                ],
            );
        }
        // Links in `*` first: the role manager copies them into each tenant's graph when that
        // graph is created, once, rather than into every existing graph link by link.
        let (everywhere, in_one_tenant): (Vec<&RoleLink>, Vec<&RoleLink>) =
            links.iter().partition(|link| link.tenant == ANY_TENANT);
        for link in everywhere.into_iter().chain(in_one_tenant) {
            enforcer.get_mut_model().add_policy(
                "g",
                "g",
                vec![link.member.clone(), link.role.clone(), link.tenant.clone()],
            );
        }
        enforcer.build_role_links().map_err(casbin_error)?;

        let mut links_by_member: HashMap<String, Vec<usize>> = HashMap::new();
        for (index, link) in links.iter().enumerate() {
            links_by_member
                .entry(link.member.clone())
                .or_default()
                .push(index);
        }
        Ok(Authorizer {
            enforcer,
            rules: policy.rules.clone(),
            links,
            links_by_member,
            bundle_hash,
            memo: RwLock::new(Memo::default()),
        })
    }

    /// The answer to `request`. A request whose principal or tenant is invalid (empty, a role
    /// name, containing `::`, ...) is denied without asking casbin.
    pub fn check(&self, request: &AccessRequest) -> Verdict {
        if let Err(verdict) = refuse_invalid(request) {
            return verdict;
        }
        if let Some(verdict) = self
            .memo
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(request)
        {
            return verdict.clone();
        }
        let verdict = self.decide(request);
        self.memo
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(request, verdict.clone());
        verdict
    }

    /// [`Authorizer::check`] without the memo: for replays (dry runs, policy tests), which would
    /// only push live traffic's verdicts out of it.
    pub(crate) fn check_uncached(&self, request: &AccessRequest) -> Verdict {
        match refuse_invalid(request) {
            Err(verdict) => verdict,
            Ok(()) => self.decide(request),
        }
    }

    /// The hash of the bundle this authorizer was compiled from.
    pub fn bundle_hash(&self) -> [u8; 32] {
        self.bundle_hash
    }

    /// Every role `principal` holds in `tenant` (its grants there and in `*`, and what those
    /// roles inherit), sorted.
    pub fn roles_of(&self, principal: &str, tenant: &str) -> Vec<String> {
        let mut roles: Vec<String> = self
            .reachable(principal, tenant)
            .into_keys()
            .filter(|name| *name != principal)
            .map(str::to_owned)
            .collect();
        roles.sort();
        roles
    }

    /// How many runtime grants were compiled in.
    pub fn grant_count(&self) -> usize {
        self.links
            .iter()
            .filter(|link| matches!(link.source, LinkSource::Grant(_)))
            .count()
    }

    /// casbin's answer, explained.
    fn decide(&self, request: &AccessRequest) -> Verdict {
        let asked = (
            request.principal.as_str(),
            request.tenant.as_str(),
            request.object.as_str(),
            request.action.as_str(),
        );
        let allowed = match self.enforcer.enforce(asked) {
            Ok(allowed) => allowed,
            Err(error) => {
                return Verdict::denied(format!("casbin could not evaluate {request}: {error}"));
            }
        };
        if !allowed {
            return Verdict::denied(self.deny_reason(request));
        }
        match self.explain_allow(request) {
            Some((rule, role)) => Verdict {
                allowed: true,
                rule: Some(rule),
                reason: format!(
                    "{} may {}/{} in tenant {} as {role}",
                    request.principal, request.object, request.action, request.tenant
                ),
            },
            None => {
                // casbin decides; cairn's explanation follows the same rows, so this is a bug
                // (the tests compare both on every request they make).
                debug_assert!(false, "casbin allowed {request} but no row explains it");
                Verdict {
                    allowed: true,
                    rule: Some("casbin allowed it; no policy row explains it".to_owned()),
                    reason: format!("{request}: allowed by casbin without an explanation"),
                }
            }
        }
    }

    /// The first `p` row (casbin's order, so casbin's row) that allows `request`, with the chain
    /// that gives the principal the row's role, and the role.
    pub(crate) fn explain_allow(&self, request: &AccessRequest) -> Option<(String, String)> {
        let tenant = request.tenant.as_str();
        let reachable = self.reachable(&request.principal, tenant);
        self.rules
            .iter()
            .filter(|rule| {
                rule.object == request.object
                    && rule.action == request.action
                    && (rule.tenant == ANY_TENANT || rule.tenant == tenant)
            })
            .find_map(|rule| {
                reachable.get(rule.role.as_str())?;
                let mut chain = Vec::new();
                let mut at = rule.role.as_str();
                while let Some(Some(link_index)) = reachable.get(at) {
                    let link = &self.links[*link_index];
                    chain.push(link.to_string());
                    at = link.member.as_str();
                }
                chain.reverse();
                let text = format!(
                    "{rule}; {} has {} through {}",
                    request.principal,
                    rule.role,
                    chain.join(" > ")
                );
                Some((text, rule.role.clone()))
            })
    }

    fn deny_reason(&self, request: &AccessRequest) -> String {
        let roles = self.roles_of(&request.principal, &request.tenant);
        let held = match roles.is_empty() {
            true => format!("{} holds no role there", request.principal),
            false => format!("roles held there: {}", roles.join(", ")),
        };
        format!(
            "no role of {} in tenant {} allows {}/{} ({held})",
            request.principal, request.tenant, request.object, request.action
        )
    }

    /// Every name reachable from `principal` through links that hold in `tenant` (links in
    /// `tenant` and in `*`, as casbin's role manager sees them with [`tenant_matches`]), each
    /// with the link it was first reached by (breadth first, so the chains are shortest); the
    /// principal itself maps to `None`.
    fn reachable<'a>(
        &'a self,
        principal: &'a str,
        tenant: &str,
    ) -> HashMap<&'a str, Option<usize>> {
        let mut reached: HashMap<&str, Option<usize>> = HashMap::new();
        reached.insert(principal, None);
        let mut queue = VecDeque::from([principal]);
        let mut expanded = HashSet::new();
        while let Some(name) = queue.pop_front() {
            if !expanded.insert(name) {
                continue;
            }
            for &index in self.links_by_member.get(name).into_iter().flatten() {
                let link = &self.links[index];
                if !tenant_matches(tenant, &link.tenant) {
                    continue;
                }
                if !reached.contains_key(link.role.as_str()) {
                    reached.insert(link.role.as_str(), Some(index));
                    queue.push_back(link.role.as_str());
                }
            }
        }
        reached
    }
}

impl fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorizer")
            .field("bundle_hash", &hex(&self.bundle_hash))
            .field("rules", &self.rules.len())
            .field("links", &self.links.len())
            .finish_non_exhaustive()
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Denies a request whose principal or tenant could confuse casbin: an empty tenant matches
/// rows through `*` links, and a principal named like a role "has" that role.
fn refuse_invalid(request: &AccessRequest) -> Result<(), Verdict> {
    validate_principal(&request.principal)
        .and_then(|()| validate_tenant(&request.tenant))
        .map_err(|error| Verdict::denied(format!("denied before the policy was asked: {error}")))
}

/// Verdicts already given, by tenant, then principal, then (object, action): looked up with the
/// request's borrowed strings, so a repeated request allocates only the verdict it returns.
#[derive(Default)]
struct Memo {
    verdicts: usize,
    by_tenant: HashMap<String, HashMap<String, VerdictsOfOne>>,
}

/// One principal's verdicts in one tenant.
type VerdictsOfOne = HashMap<(Object, Action), Verdict>;

impl Memo {
    fn get(&self, request: &AccessRequest) -> Option<&Verdict> {
        self.by_tenant
            .get(request.tenant.as_str())?
            .get(request.principal.as_str())?
            .get(&(request.object, request.action))
    }

    fn insert(&mut self, request: &AccessRequest, verdict: Verdict) {
        if self.verdicts >= limits::MEMO_VERDICTS_MAX {
            *self = Memo::default();
        }
        let previous = self
            .by_tenant
            .entry(request.tenant.clone())
            .or_default()
            .entry(request.principal.clone())
            .or_default()
            .insert((request.object, request.action), verdict);
        if previous.is_none() {
            self.verdicts += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Bundle {
        Bundle::built_in()
    }

    #[test]
    fn explanation_and_casbin_agree_on_every_request_over_the_shipped_policy() {
        let authorizer = Authorizer::compile(&shipped(), &[]).unwrap();
        let mut principals: Vec<String> = authorizer
            .links
            .iter()
            .map(|link| link.member.clone())
            .filter(|member| !member.starts_with("role:"))
            .collect();
        principals.push("user:nobody".to_owned());
        let tenants = ["acme", "globex", "initech", "beta", "*"];
        let mut allowed = 0;
        for principal in &principals {
            for tenant in tenants {
                for object in Object::ALL {
                    for action in Action::ALL {
                        let request = AccessRequest::new(principal, tenant, object, action);
                        let by_casbin = authorizer
                            .enforcer
                            .enforce((principal.as_str(), tenant, object.as_str(), action.as_str()))
                            .unwrap();
                        let explained = authorizer.explain_allow(&request).is_some();
                        assert_eq!(by_casbin, explained, "{request}");
                        allowed += usize::from(by_casbin);
                    }
                }
            }
        }
        assert!(allowed > 1000, "{allowed}");
    }

    #[test]
    fn an_allow_names_the_row_and_the_chain() {
        let authorizer = Authorizer::compile(&shipped(), &[]).unwrap();
        let verdict = authorizer.check(&AccessRequest::new(
            "user:alice",
            "acme",
            Object::Feedback,
            Action::Read,
        ));
        assert!(verdict.allowed);
        let rule = verdict.rule.unwrap();
        assert!(
            rule.starts_with("p, role:viewer, *, feedback, read (access/policy.csv:"),
            "{rule}"
        );
        for step in [
            "g, user:alice, role:owner, acme (access/policy.csv:",
            "g, role:owner, role:triager, *",
            "g, role:triager, role:contributor, *",
            "g, role:contributor, role:viewer, *",
        ] {
            assert!(rule.contains(step), "{rule} lacks {step}");
        }
        assert_eq!(
            verdict.reason,
            "user:alice may feedback/read in tenant acme as role:viewer"
        );
    }

    #[test]
    fn a_deny_says_which_roles_were_held() {
        let authorizer = Authorizer::compile(&shipped(), &[]).unwrap();
        let verdict = authorizer.check(&AccessRequest::new(
            "user:bob",
            "acme",
            Object::Decision,
            Action::Decide,
        ));
        assert_eq!(
            verdict,
            Verdict {
                allowed: false,
                rule: None,
                reason: "no role of user:bob in tenant acme allows decision/decide (roles held \
                         there: role:contributor, role:triager, role:viewer)"
                    .to_owned(),
            }
        );
        let nobody = authorizer.check(&AccessRequest::new(
            "user:bob",
            "globex",
            Object::Feedback,
            Action::Read,
        ));
        assert_eq!(
            nobody.reason,
            "no role of user:bob in tenant globex allows feedback/read (user:bob holds no role there)"
        );
    }

    #[test]
    fn the_memo_is_bounded_and_answers_like_casbin() {
        let authorizer = Authorizer::compile(&shipped(), &[]).unwrap();
        let request = AccessRequest::new("user:carol", "acme", Object::Signal, Action::Write);
        let first = authorizer.check(&request);
        let second = authorizer.check(&request);
        assert_eq!(first, second);
        assert_eq!(first, authorizer.check_uncached(&request));
        for index in 0..(limits::MEMO_VERDICTS_MAX + 10) {
            let request = AccessRequest::new(
                format!("user:p{index}"),
                "acme",
                Object::Signal,
                Action::Read,
            );
            authorizer
                .memo
                .write()
                .unwrap()
                .insert(&request, first.clone());
        }
        assert!(authorizer.memo.read().unwrap().verdicts <= limits::MEMO_VERDICTS_MAX);
    }
}
