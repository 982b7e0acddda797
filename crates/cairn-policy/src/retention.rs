//! Retention: how long personal data is kept, per data class and tenant, decided by casbin from
//! `policies/retention/model.conf` and `policies/retention/policy.csv`.
//!
//! A row `p, TENANT, CLASS, DAYS` says: personal data of class `CLASS` (`personal` or
//! `sensitive`) in tenant `TENANT` (`*`: every tenant) is kept `DAYS` days after its data key last
//! sealed anything. casbin answers "expired?" for a request (tenant, class, age in days): the
//! matcher holds for a row whose tenant and class match and whose days the age exceeds, so when
//! several rows match, the shortest retention wins (a tenant row can shorten the default, never
//! lengthen it). A bundle without `retention/` keeps personal data until it is erased on request.

use casbin::function_map::OperatorFunction;
use casbin::prelude::{CoreApi, DefaultModel, Enforcer, MemoryAdapter};
use casbin::rhai::Dynamic;

use crate::access::utf8;
use crate::bundle::Bundle;
use crate::error::PolicyError;
use crate::names::{ANY_TENANT, validate_tenant};

/// Where the retention model lives in a bundle.
pub const RETENTION_MODEL_PATH: &str = "retention/model.conf";
/// Where the retention rules live in a bundle.
pub const RETENTION_POLICY_PATH: &str = "retention/policy.csv";
/// The longest retention a rule may state, in days (100 years).
pub const RETENTION_DAYS_MAX: u32 = 36_500;
/// Most retention rules in one bundle.
pub const RETENTION_RULES_MAX: usize = 10_000;
/// The data classes that hold personal data, the only ones retention is about.
pub const RETAINED_CLASSES: [&str; 2] = ["personal", "sensitive"];

/// The one retention model cairn accepts (whitespace aside): the explanation of each verdict
/// follows this matcher.
const MODEL: &str = "[request_definition]
r = tenant, class, age

[policy_definition]
p = tenant, class, days

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = (p.tenant == \"*\" || p.tenant == r.tenant) && p.class == r.class && older_than(r.age, p.days)
";

/// One row of `retention/policy.csv`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionRule {
    /// A tenant, or `*`.
    pub tenant: String,
    /// `personal` or `sensitive`.
    pub class: String,
    /// How long data of that class is kept after its key last sealed anything.
    pub days: u32,
    /// Its line in `retention/policy.csv`.
    pub line: usize,
}

impl RetentionRule {
    /// The rule as the file states it, with its place: `retention/policy.csv:3: p, *, personal, 365`.
    pub fn describe(&self) -> String {
        format!(
            "{RETENTION_POLICY_PATH}:{}: p, {}, {}, {}",
            self.line, self.tenant, self.class, self.days
        )
    }
}

/// The retention rules of a bundle, compiled.
pub struct RetentionPolicy {
    enforcer: Enforcer,
    rules: Vec<RetentionRule>,
}

impl std::fmt::Debug for RetentionPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetentionPolicy")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

/// casbin's `older_than(age, days)`: the age (an integer of days) exceeds the row's days (text in
/// the CSV, so parsed here; a row's days were validated when the bundle loaded).
fn older_than(age: Dynamic, days: Dynamic) -> Dynamic {
    let age = age.as_int().unwrap_or(0);
    let days = days
        .into_string()
        .ok()
        .and_then(|text| text.trim().parse::<i64>().ok())
        .unwrap_or(i64::MAX);
    Dynamic::from(i64::from(age) > days)
}

impl RetentionPolicy {
    /// The bundle's retention rules; `None` when it has no `retention/policy.csv`.
    pub fn from_bundle(bundle: &Bundle) -> Result<Option<RetentionPolicy>, PolicyError> {
        let Some(policy) = bundle.file(RETENTION_POLICY_PATH) else {
            return Ok(None);
        };
        let model = bundle
            .file(RETENTION_MODEL_PATH)
            .ok_or_else(|| PolicyError::InvalidFile {
                file: RETENTION_MODEL_PATH.to_owned(),
                reason: format!("missing: {RETENTION_POLICY_PATH} needs it"),
            })?;
        RetentionPolicy::parse(model, policy).map(Some)
    }

    /// Parses and compiles a retention model and rules.
    pub fn parse(model: &[u8], policy: &[u8]) -> Result<RetentionPolicy, PolicyError> {
        let model_text = utf8(RETENTION_MODEL_PATH, model)?;
        let squeeze = |text: &str| -> String {
            text.lines()
                .map(str::trim)
                .filter(|line| !line.is_empty() && !line.starts_with('#'))
                .map(|line| {
                    line.chars()
                        .filter(|c| !c.is_whitespace())
                        .collect::<String>()
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        if squeeze(model_text) != squeeze(MODEL) {
            return Err(PolicyError::InvalidFile {
                file: RETENTION_MODEL_PATH.to_owned(),
                reason: format!("must be cairn's retention model:\n{MODEL}"),
            });
        }
        let rules = parse_rules(utf8(RETENTION_POLICY_PATH, policy)?)?;
        let casbin = |error: casbin::Error| PolicyError::Casbin(error.to_string());
        // From a string and an in-memory adapter casbin never waits: a minimal executor drives it.
        let model = futures::executor::block_on(DefaultModel::from_str(MODEL)).map_err(casbin)?;
        let mut enforcer =
            futures::executor::block_on(Enforcer::new(model, MemoryAdapter::default()))
                .map_err(casbin)?;
        enforcer.add_function("older_than", OperatorFunction::Arg2(older_than));
        for rule in &rules {
            enforcer.get_mut_model().add_policy(
                "p",
                "p",
                vec![
                    rule.tenant.clone(),
                    rule.class.clone(),
                    rule.days.to_string(),
                ],
            );
        }
        Ok(RetentionPolicy { enforcer, rules })
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[RetentionRule] {
        &self.rules
    }

    /// The retention that applies to `class` in `tenant`: the shortest matching rule.
    pub fn applicable(&self, tenant: &str, class: &str) -> Option<&RetentionRule> {
        self.rules
            .iter()
            .filter(|rule| {
                (rule.tenant == ANY_TENANT || rule.tenant == tenant) && rule.class == class
            })
            .min_by_key(|rule| (rule.days, rule.line))
    }

    /// Whether data of `class` in `tenant`, `age_days` old, has expired: casbin decides, and the
    /// answer names the rule (the shortest that matches). A disagreement between casbin and the
    /// explanation is an error, never a silent erasure.
    pub fn expired(
        &self,
        tenant: &str,
        class: &str,
        age_days: u32,
    ) -> Result<Option<&RetentionRule>, PolicyError> {
        validate_tenant(tenant)?;
        let age = i32::try_from(age_days).unwrap_or(i32::MAX);
        let decided = self
            .enforcer
            .enforce((tenant, class, age))
            .map_err(|error| PolicyError::Casbin(error.to_string()))?;
        let explained = self
            .applicable(tenant, class)
            .filter(|rule| age_days > rule.days);
        if decided != explained.is_some() {
            return Err(PolicyError::Casbin(format!(
                "retention of {class} in {tenant} at {age_days} days: casbin says {decided}, the \
                 rules say {}",
                explained.is_some()
            )));
        }
        Ok(explained)
    }
}

fn parse_rules(text: &str) -> Result<Vec<RetentionRule>, PolicyError> {
    let error = |line: usize, reason: String| PolicyError::InvalidLine {
        file: RETENTION_POLICY_PATH.to_owned(),
        line,
        reason,
    };
    let mut rules: Vec<RetentionRule> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = trimmed.split(',').map(str::trim).collect();
        let [kind, tenant, class, days] = fields[..] else {
            return Err(error(
                line,
                format!(
                    "expected `p, TENANT, CLASS, DAYS`, got {} fields",
                    fields.len()
                ),
            ));
        };
        if kind != "p" {
            return Err(error(line, format!("expected a `p` row, got {kind:?}")));
        }
        validate_tenant(tenant).map_err(|e| error(line, e.to_string()))?;
        if !RETAINED_CLASSES.contains(&class) {
            return Err(error(
                line,
                format!("class {class:?} holds no personal data: one of {RETAINED_CLASSES:?}"),
            ));
        }
        let days: u32 = days
            .parse()
            .ok()
            .filter(|days| (1..=RETENTION_DAYS_MAX).contains(days))
            .ok_or_else(|| {
                error(
                    line,
                    format!("days {days:?} must be a whole number from 1 to {RETENTION_DAYS_MAX}"),
                )
            })?;
        if let Some(earlier) = rules
            .iter()
            .find(|rule| rule.tenant == tenant && rule.class == class)
        {
            return Err(error(
                line,
                format!(
                    "a second rule for {class} in {tenant} (the first is line {})",
                    earlier.line
                ),
            ));
        }
        if rules.len() >= RETENTION_RULES_MAX {
            return Err(PolicyError::Limit {
                what: "retention rules".to_owned(),
                limit: RETENTION_RULES_MAX as u64,
                actual: rules.len() as u64 + 1,
            });
        }
        rules.push(RetentionRule {
            tenant: tenant.to_owned(),
            class: class.to_owned(),
            days,
            line,
        });
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(rows: &str) -> Result<RetentionPolicy, PolicyError> {
        RetentionPolicy::parse(MODEL.as_bytes(), rows.as_bytes())
    }

    #[test]
    fn the_shortest_matching_rule_expires_data_and_casbin_agrees() {
        let policy =
            policy("# default\np, *, personal, 365\np, *, sensitive, 30\np, acme, personal, 90\n")
                .unwrap();
        let expired = |tenant: &str, class: &str, age: u32| {
            policy
                .expired(tenant, class, age)
                .unwrap()
                .map(|rule| rule.line)
        };
        assert_eq!(expired("acme", "personal", 90), None);
        assert_eq!(expired("acme", "personal", 91), Some(4));
        assert_eq!(expired("beta", "personal", 91), None);
        assert_eq!(expired("beta", "personal", 366), Some(2));
        assert_eq!(expired("beta", "sensitive", 31), Some(3));
        assert_eq!(expired("beta", "public", 100_000), None);
        // Exhaustive agreement over a range of ages, tenants and classes.
        for tenant in ["acme", "beta"] {
            for class in ["personal", "sensitive", "internal"] {
                for age in (0..400).chain([u32::MAX]) {
                    policy.expired(tenant, class, age).unwrap();
                }
            }
        }
    }

    #[test]
    fn no_rule_keeps_data() {
        let policy = policy("").unwrap();
        assert_eq!(policy.expired("acme", "personal", u32::MAX).unwrap(), None);
    }

    #[test]
    fn bad_rows_name_their_line() {
        for (rows, fragment) in [
            ("p, *, personal\n", "fields"),
            ("g, *, personal, 3\n", "`p` row"),
            ("p, Acme, personal, 3\n", "tenant"),
            ("p, *, public, 3\n", "holds no personal data"),
            ("p, *, personal, 0\n", "days"),
            ("p, *, personal, -3\n", "days"),
            ("p, *, personal, 40000\n", "days"),
            ("p, *, personal, 3\np, *, personal, 4\n", "second rule"),
        ] {
            let error = policy(rows).unwrap_err().to_string();
            assert!(error.contains(fragment), "{rows:?}: {error}");
            assert!(error.contains(RETENTION_POLICY_PATH), "{error}");
        }
        let error = RetentionPolicy::parse(b"[matchers]\nm = true\n", b"")
            .unwrap_err()
            .to_string();
        assert!(error.contains(RETENTION_MODEL_PATH), "{error}");
    }
}
