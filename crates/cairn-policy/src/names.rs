//! The vocabulary of an access request: objects, actions, and the alphabets of tenants,
//! principals and roles.
//!
//! casbin keys its role graphs by name and domain and its own configuration by `section::key`,
//! and answers `true` for `g(x, x, dom)` whatever `x` is. So every name that reaches it is
//! validated here: no `::` anywhere, and a principal can never be spelled like a role.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::PolicyError;
use crate::limits;

/// The tenant of a request that is not about one tenant (reading the whole ledger, reloading the
/// policy), and the tenant of a grant or policy row that holds in every tenant.
pub const ANY_TENANT: &str = "*";

/// The prefix of every role name.
pub const ROLE_PREFIX: &str = "role:";

/// What a request acts on. `as_str` is the name used in `policy.csv`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Object {
    /// The raw ledger: `LedgerService` (append, read, subscribe, checkpoints and proofs).
    Ledger,
    /// Feedback items.
    Feedback,
    /// Metric signals.
    Signal,
    /// Opportunities, with their votes, ratings, scores and ranking.
    Opportunity,
    /// Decision records.
    Decision,
    /// Initiatives and their milestones.
    Initiative,
    /// Lineage walks and the "why" and "what happened" answers.
    Lineage,
    /// Personal data (the sealed part of events: feedback text and submitter, data subjects).
    ///
    /// No RPC is checked for it alone, so it has no row in [`crate::RPCS`]: a request that asks
    /// for personal data (`include_personal`) is checked once for its RPC's row and a second time,
    /// by the server, for `(personal, read)` in the same tenant; without it the personal part is
    /// withheld.
    Personal,
    /// The policy bundle: checking, reading, dry-running and reloading it.
    Policy,
    /// Runtime grants of roles.
    Access,
    /// The record of denied calls.
    Audit,
    /// Retention, legal holds and erasure.
    Stewardship,
    /// Acting on behalf of another principal (a command whose `meta.actor` is not the caller).
    Actor,
}

impl Object {
    /// Every object, in declaration order.
    pub const ALL: [Object; 13] = [
        Object::Ledger,
        Object::Feedback,
        Object::Signal,
        Object::Opportunity,
        Object::Decision,
        Object::Initiative,
        Object::Lineage,
        Object::Personal,
        Object::Policy,
        Object::Access,
        Object::Audit,
        Object::Stewardship,
        Object::Actor,
    ];

    /// The name used in `policy.csv` and in test files.
    pub const fn as_str(self) -> &'static str {
        match self {
            Object::Ledger => "ledger",
            Object::Feedback => "feedback",
            Object::Signal => "signal",
            Object::Opportunity => "opportunity",
            Object::Decision => "decision",
            Object::Initiative => "initiative",
            Object::Lineage => "lineage",
            Object::Personal => "personal",
            Object::Policy => "policy",
            Object::Access => "access",
            Object::Audit => "audit",
            Object::Stewardship => "stewardship",
            Object::Actor => "actor",
        }
    }
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Object {
    type Err = PolicyError;

    fn from_str(text: &str) -> Result<Object, PolicyError> {
        Object::ALL
            .into_iter()
            .find(|object| object.as_str() == text)
            .ok_or_else(|| PolicyError::InvalidField {
                field: "object",
                value: text.to_owned(),
                reason: "not one of ledger, feedback, signal, opportunity, decision, initiative, \
                         lineage, personal, policy, access, audit, stewardship, actor"
                    .to_owned(),
            })
    }
}

/// What a request does to its object. `as_str` is the name used in `policy.csv`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// See it.
    Read,
    /// Record something new about it (submit, record, vote, rate, create, propose, revise).
    Write,
    /// Sort it: triage, review, wake, link, discard, mark duplicate, rescore, age out.
    Triage,
    /// Commit to it: accept or reject a decision, start, ship or validate work, complete or
    /// cancel an initiative.
    Decide,
    /// Give or take back a role (runtime grants).
    Grant,
    /// Change what is in force (reload the policy).
    Admin,
    /// Try a proposed policy against recorded requests (dry run).
    Test,
    /// Destroy personal data (retention sweeps, erasure requests).
    Erase,
    /// Act on behalf of another principal.
    ActFor,
}

impl Action {
    /// Every action, in declaration order.
    pub const ALL: [Action; 9] = [
        Action::Read,
        Action::Write,
        Action::Triage,
        Action::Decide,
        Action::Grant,
        Action::Admin,
        Action::Test,
        Action::Erase,
        Action::ActFor,
    ];

    /// The name used in `policy.csv` and in test files.
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "write",
            Action::Triage => "triage",
            Action::Decide => "decide",
            Action::Grant => "grant",
            Action::Admin => "admin",
            Action::Test => "test",
            Action::Erase => "erase",
            Action::ActFor => "act_for",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = PolicyError;

    fn from_str(text: &str) -> Result<Action, PolicyError> {
        Action::ALL
            .into_iter()
            .find(|action| action.as_str() == text)
            .ok_or_else(|| PolicyError::InvalidField {
                field: "action",
                value: text.to_owned(),
                reason: "not one of read, write, triage, decide, grant, admin, test, erase, \
                         act_for"
                    .to_owned(),
            })
    }
}

/// Checks a tenant: `*` (every tenant, or none in particular), or the alphabet of
/// `cairn_ledger::TenantId`: 1 to 64 bytes of `[a-z0-9._-]`, starting with a letter or digit
/// (so it never holds casbin's `::` separator).
pub fn validate_tenant(text: &str) -> Result<(), PolicyError> {
    if text == ANY_TENANT {
        return Ok(());
    }
    let invalid = |reason: &str| PolicyError::InvalidField {
        field: "tenant",
        value: text.to_owned(),
        reason: reason.to_owned(),
    };
    if text.is_empty() {
        return Err(invalid("empty"));
    }
    if text.len() > limits::TENANT_BYTES_MAX {
        return Err(PolicyError::Limit {
            what: "tenant bytes".to_owned(),
            limit: limits::TENANT_BYTES_MAX as u64,
            actual: text.len() as u64,
        });
    }
    let first_ok = text
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let all_ok = text
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if !first_ok || !all_ok {
        return Err(invalid(
            "must be * or [a-z0-9._-] starting with a letter or digit",
        ));
    }
    Ok(())
}

/// Checks a principal id: 1 to 128 bytes of `[A-Za-z0-9._:-]`, no `::`, and not starting with
/// `role:` (casbin would take it for the role of that name).
pub fn validate_principal(text: &str) -> Result<(), PolicyError> {
    let invalid = |reason: &str| PolicyError::InvalidField {
        field: "principal",
        value: text.to_owned(),
        reason: reason.to_owned(),
    };
    if text.is_empty() {
        return Err(invalid("empty"));
    }
    if text.len() > limits::PRINCIPAL_BYTES_MAX {
        return Err(PolicyError::Limit {
            what: "principal bytes".to_owned(),
            limit: limits::PRINCIPAL_BYTES_MAX as u64,
            actual: text.len() as u64,
        });
    }
    if !text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
    {
        return Err(invalid("must be [A-Za-z0-9._:-]"));
    }
    if text.contains("::") {
        return Err(invalid("must not contain ::"));
    }
    if text.starts_with(ROLE_PREFIX) {
        return Err(invalid(
            "must not start with role: (role names are not principals)",
        ));
    }
    Ok(())
}

/// Checks a role name: `role:` then 1 to 64 bytes of `[a-z0-9_-]`.
pub fn validate_role(text: &str) -> Result<(), PolicyError> {
    let invalid = |reason: &str| PolicyError::InvalidField {
        field: "role",
        value: text.to_owned(),
        reason: reason.to_owned(),
    };
    let Some(name) = text.strip_prefix(ROLE_PREFIX) else {
        return Err(invalid("must start with role:"));
    };
    if name.is_empty() {
        return Err(invalid("empty name after role:"));
    }
    if name.len() > limits::ROLE_NAME_BYTES_MAX {
        return Err(PolicyError::Limit {
            what: "role name bytes".to_owned(),
            limit: limits::ROLE_NAME_BYTES_MAX as u64,
            actual: name.len() as u64,
        });
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(&b))
    {
        return Err(invalid("the name after role: must be [a-z0-9_-]"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_and_actions_round_trip_through_their_names() {
        for object in Object::ALL {
            assert_eq!(object.as_str().parse::<Object>(), Ok(object));
        }
        for action in Action::ALL {
            assert_eq!(action.as_str().parse::<Action>(), Ok(action));
        }
        assert!("Feedback".parse::<Object>().is_err());
        assert!("*".parse::<Action>().is_err());
    }

    #[test]
    fn tenants() {
        for good in ["*", "acme", "a", "0day", "acme.eu-1_x", &"a".repeat(64)] {
            assert_eq!(validate_tenant(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "Acme",
            "-acme",
            ".acme",
            "ac::me",
            "ac:me",
            "acme*",
            "**",
            " acme",
            &"a".repeat(65),
        ] {
            assert!(validate_tenant(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn principals() {
        for good in [
            "alice",
            "user:alice",
            "service:importer",
            "A.b_c-d:9",
            &"p".repeat(128),
        ] {
            assert_eq!(validate_principal(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "role:admin",
            "role:",
            "user::alice",
            "user alice",
            "user/alice",
            "*",
            "alice,bob",
            &"p".repeat(129),
        ] {
            assert!(validate_principal(bad).is_err(), "{bad:?}");
        }
        // Only the exact prefix is a role: these are principals.
        assert_eq!(validate_principal("roles:x"), Ok(()));
        assert_eq!(validate_principal("Role:x"), Ok(()));
    }

    #[test]
    fn roles() {
        for good in [
            "role:viewer",
            "role:a",
            "role:team_lead-2",
            &format!("role:{}", "r".repeat(64)),
        ] {
            assert_eq!(validate_role(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "viewer",
            "role:",
            "role:Viewer",
            "role:a:b",
            "role::a",
            "role:a.b",
            "role:*",
            &format!("role:{}", "r".repeat(65)),
        ] {
            assert!(validate_role(bad).is_err(), "{bad:?}");
        }
    }
}
