//! Parsing and validating `access/model.conf` and `access/policy.csv`, before casbin sees them.
//!
//! The model is fixed: the authorizer explains casbin's verdicts by following the same rows the
//! matcher follows, which is only sound for this one matcher, and casbin panics at enforcement
//! time on an effect it does not know. So `model.conf` must hold exactly the definitions below
//! (whitespace aside); it is still a file of the bundle, hashed with it and read by casbin.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use crate::error::PolicyError;
use crate::limits;
use crate::names::{
    ANY_TENANT, Action, Object, ROLE_PREFIX, validate_principal, validate_role, validate_tenant,
};

/// Where the access model lives in a bundle.
pub const MODEL_PATH: &str = "access/model.conf";
/// Where the access policy lives in a bundle.
pub const POLICY_PATH: &str = "access/policy.csv";

/// The request: who, in which tenant (casbin's domain), on what, doing what.
const REQUEST_DEFINITION: &str = "sub, dom, obj, act";
/// A policy row: a role, the tenant it holds in (or `*`), an object and an action. There is no
/// `eft` column: every row allows, so no row can deny and nothing is allowed without a row.
const POLICY_DEFINITION: &str = "sub, dom, obj, act";
/// A grouping row: principal or role, the role it gets, the tenant it holds in (or `*`).
const ROLE_DEFINITION: &str = "_, _, _";
/// Deny by default: allowed only if some row allows. Never `!some(where (p.eft == deny))`, which
/// allows everything under an empty policy.
const POLICY_EFFECT: &str = "some(where (p.eft == allow))";
/// Exact comparisons first (cheap, and they skip most rows), then the tenant of the row, then the
/// role graph of the request's tenant (which, through the domain matching function, includes the
/// links granted in every tenant, `*`).
const MATCHER: &str = r#"r.obj == p.obj && r.act == p.act && (p.dom == "*" || p.dom == r.dom) && g(r.sub, p.sub, r.dom)"#;

/// The sections and keys `model.conf` must hold, with their values.
const MODEL_ENTRIES: [(&str, &str, &str); 5] = [
    ("request_definition", "r", REQUEST_DEFINITION),
    ("policy_definition", "p", POLICY_DEFINITION),
    ("role_definition", "g", ROLE_DEFINITION),
    ("policy_effect", "e", POLICY_EFFECT),
    ("matchers", "m", MATCHER),
];

/// A `p` row: `role` may do `action` on `object` in `tenant` (or every tenant, `*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PolicyRule {
    pub role: String,
    pub tenant: String,
    pub object: Object,
    pub action: Action,
    /// 1-based line in `access/policy.csv`.
    pub line: usize,
}

impl fmt::Display for PolicyRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p, {}, {}, {}, {} ({POLICY_PATH}:{})",
            self.role, self.tenant, self.object, self.action, self.line
        )
    }
}

/// Where a role link comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LinkSource {
    /// A `g` row of `access/policy.csv`, at this 1-based line.
    PolicyLine(usize),
    /// A runtime grant (from the ledger), at this index of the grants compiled in.
    Grant(usize),
}

/// A `g` row or a runtime grant: `member` (a principal or a role) has `role` in `tenant` (or in
/// every tenant, `*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RoleLink {
    pub member: String,
    pub role: String,
    pub tenant: String,
    pub source: LinkSource,
}

impl fmt::Display for RoleLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "g, {}, {}, {}", self.member, self.role, self.tenant)?;
        match self.source {
            LinkSource::PolicyLine(line) => write!(f, " ({POLICY_PATH}:{line})"),
            LinkSource::Grant(index) => write!(f, " (runtime grant {index})"),
        }
    }
}

/// The access part of a bundle, parsed and validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AccessPolicy {
    /// `model.conf` as text, for casbin.
    pub model_text: String,
    /// The `p` rows, in file order (casbin's order too).
    pub rules: Vec<PolicyRule>,
    /// The `g` rows, in file order.
    pub links: Vec<RoleLink>,
}

impl AccessPolicy {
    /// Parses and validates both files.
    pub fn parse(model: &[u8], policy: &[u8]) -> Result<AccessPolicy, PolicyError> {
        let model_text = utf8(MODEL_PATH, model)?;
        check_model(model_text)?;
        let policy_text = utf8(POLICY_PATH, policy)?;
        let (rules, links) = parse_policy(policy_text)?;
        Ok(AccessPolicy {
            model_text: model_text.to_owned(),
            rules,
            links,
        })
    }
}

/// The file as UTF-8, or an error naming the line of the first invalid byte.
pub(crate) fn utf8<'a>(file: &str, bytes: &'a [u8]) -> Result<&'a str, PolicyError> {
    std::str::from_utf8(bytes).map_err(|error| {
        let line = 1 + bytes[..error.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        PolicyError::InvalidLine {
            file: file.to_owned(),
            line,
            reason: "not UTF-8".to_owned(),
        }
    })
}

fn line_error(file: &str, line: usize, reason: impl Into<String>) -> PolicyError {
    PolicyError::InvalidLine {
        file: file.to_owned(),
        line,
        reason: reason.into(),
    }
}

fn without_whitespace(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Checks that `model.conf` holds exactly [`MODEL_ENTRIES`], in casbin's INI dialect.
fn check_model(text: &str) -> Result<(), PolicyError> {
    let mut section: Option<(String, usize)> = None;
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if trimmed.ends_with('\\') {
            return Err(line_error(
                MODEL_PATH,
                line,
                "continued lines are not supported",
            ));
        }
        if let Some(name) = trimmed.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            if !MODEL_ENTRIES.iter().any(|(s, _, _)| *s == name) {
                return Err(line_error(
                    MODEL_PATH,
                    line,
                    format!("unknown section [{name}]"),
                ));
            }
            section = Some((name.to_owned(), line));
            continue;
        }
        let Some((key, value)) = trimmed.split_once('=') else {
            return Err(line_error(
                MODEL_PATH,
                line,
                "expected `key = value`, a [section], or a # comment",
            ));
        };
        let (key, value) = (key.trim(), value.trim());
        let Some((section_name, _)) = &section else {
            return Err(line_error(MODEL_PATH, line, "a key before any [section]"));
        };
        let Some((_, _, expected)) = MODEL_ENTRIES
            .iter()
            .find(|(s, k, _)| s == section_name && *k == key)
        else {
            return Err(line_error(
                MODEL_PATH,
                line,
                format!("unknown key `{key}` in [{section_name}]"),
            ));
        };
        if let Some(first) = seen.insert((section_name.clone(), key.to_owned()), line) {
            return Err(line_error(
                MODEL_PATH,
                line,
                format!("`{key}` again (first at line {first})"),
            ));
        }
        // casbin compares the effect as a string: it must be exact.
        let matches = match key {
            "e" => value == *expected,
            _ => without_whitespace(value) == without_whitespace(expected),
        };
        if !matches {
            return Err(line_error(
                MODEL_PATH,
                line,
                format!(
                    "[{section_name}] {key} must be `{expected}`: cairn explains verdicts by this \
                     model and denies by default"
                ),
            ));
        }
    }
    for (section_name, key, expected) in MODEL_ENTRIES {
        if !seen.contains_key(&(section_name.to_owned(), key.to_owned())) {
            return Err(PolicyError::InvalidFile {
                file: MODEL_PATH.to_owned(),
                reason: format!("missing [{section_name}] {key} = {expected}"),
            });
        }
    }
    Ok(())
}

/// Parses `policy.csv`: `p, ROLE, TENANT, OBJECT, ACTION` and `g, MEMBER, ROLE, TENANT` rows,
/// `#` comment lines and blank lines (casbin's CSV dialect, without quotes).
fn parse_policy(text: &str) -> Result<(Vec<PolicyRule>, Vec<RoleLink>), PolicyError> {
    let mut rules = Vec::new();
    let mut links = Vec::new();
    let mut first_line_of_row: HashMap<Vec<&str>, usize> = HashMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if rules.len() + links.len() == limits::POLICY_ROWS_MAX {
            return Err(line_error(
                POLICY_PATH,
                line,
                format!("more than {} rows", limits::POLICY_ROWS_MAX),
            ));
        }
        let fields: Vec<&str> = trimmed.split(',').map(str::trim).collect();
        let invalid = |error: PolicyError| line_error(POLICY_PATH, line, error.to_string());
        match fields[0] {
            "p" => {
                let [_, role, tenant, object, action] = fields[..] else {
                    return Err(line_error(
                        POLICY_PATH,
                        line,
                        format!(
                            "a p row has 5 fields (p, role, tenant, object, action), not {}",
                            fields.len()
                        ),
                    ));
                };
                validate_role(role).map_err(invalid)?;
                validate_tenant(tenant).map_err(invalid)?;
                let object: Object = object.parse().map_err(invalid)?;
                let action: Action = action.parse().map_err(invalid)?;
                rules.push(PolicyRule {
                    role: role.to_owned(),
                    tenant: tenant.to_owned(),
                    object,
                    action,
                    line,
                });
            }
            "g" => {
                let [_, member, role, tenant] = fields[..] else {
                    return Err(line_error(
                        POLICY_PATH,
                        line,
                        format!(
                            "a g row has 4 fields (g, principal or role, role, tenant), not {}",
                            fields.len()
                        ),
                    ));
                };
                let member_is_role = member.starts_with(ROLE_PREFIX);
                if member_is_role {
                    validate_role(member).map_err(invalid)?;
                } else {
                    validate_principal(member).map_err(invalid)?;
                }
                validate_role(role).map_err(invalid)?;
                validate_tenant(tenant).map_err(invalid)?;
                if member_is_role && tenant != ANY_TENANT {
                    return Err(line_error(
                        POLICY_PATH,
                        line,
                        "role inheritance holds in every tenant: its tenant must be *",
                    ));
                }
                if member == role {
                    return Err(line_error(
                        POLICY_PATH,
                        line,
                        "a role cannot inherit itself",
                    ));
                }
                links.push(RoleLink {
                    member: member.to_owned(),
                    role: role.to_owned(),
                    tenant: tenant.to_owned(),
                    source: LinkSource::PolicyLine(line),
                });
            }
            other => {
                return Err(line_error(
                    POLICY_PATH,
                    line,
                    format!("a row starts with p or g, not {other:?}"),
                ));
            }
        }
        if let Some(first) = first_line_of_row.insert(fields, line) {
            return Err(line_error(
                POLICY_PATH,
                line,
                format!("the same row as line {first}"),
            ));
        }
    }
    check_roles(&rules, &links)?;
    Ok((rules, links))
}

/// Every role a `g` row gives must do something (have `p` rows or inherit a role), so a typo in a
/// role name is an error rather than a grant of nothing; and role inheritance has no cycle and no
/// chain longer than [`limits::ROLE_INHERITANCE_DEPTH_MAX`].
fn check_roles(rules: &[PolicyRule], links: &[RoleLink]) -> Result<(), PolicyError> {
    let inherits: Vec<&RoleLink> = links
        .iter()
        .filter(|link| link.member.starts_with(ROLE_PREFIX))
        .collect();
    let defined: BTreeSet<&str> = rules
        .iter()
        .map(|rule| rule.role.as_str())
        .chain(inherits.iter().map(|link| link.member.as_str()))
        .collect();
    for link in links {
        if !defined.contains(link.role.as_str()) {
            return Err(line_error(
                POLICY_PATH,
                link_line(link),
                format!(
                    "{} is not defined: no p row names it and it inherits no role",
                    link.role
                ),
            ));
        }
    }
    let mut parents: HashMap<&str, Vec<&RoleLink>> = HashMap::new();
    for link in &inherits {
        parents.entry(link.member.as_str()).or_default().push(link);
    }
    // Depth of the longest inheritance chain from each role, by depth-first search.
    let mut depth: HashMap<&str, usize> = HashMap::new();
    for link in &inherits {
        let mut on_path = Vec::new();
        role_depth(link.member.as_str(), &parents, &mut depth, &mut on_path)?;
    }
    Ok(())
}

fn link_line(link: &RoleLink) -> usize {
    match link.source {
        LinkSource::PolicyLine(line) => line,
        LinkSource::Grant(_) => 0,
    }
}

fn role_depth<'a>(
    role: &'a str,
    parents: &HashMap<&'a str, Vec<&'a RoleLink>>,
    depth: &mut HashMap<&'a str, usize>,
    on_path: &mut Vec<&'a str>,
) -> Result<usize, PolicyError> {
    if let Some(&known) = depth.get(role) {
        return Ok(known);
    }
    on_path.push(role);
    let mut deepest = 0;
    for link in parents.get(role).into_iter().flatten() {
        if on_path.contains(&link.role.as_str()) {
            return Err(line_error(
                POLICY_PATH,
                link_line(link),
                format!(
                    "role inheritance cycle: {} -> {}",
                    on_path.join(" -> "),
                    link.role
                ),
            ));
        }
        let above = 1 + role_depth(link.role.as_str(), parents, depth, on_path)?;
        if above > limits::ROLE_INHERITANCE_DEPTH_MAX {
            return Err(line_error(
                POLICY_PATH,
                link_line(link),
                format!(
                    "role inheritance from {role} is {above} levels deep, over the limit of {}",
                    limits::ROLE_INHERITANCE_DEPTH_MAX
                ),
            ));
        }
        deepest = deepest.max(above);
    }
    on_path.pop();
    depth.insert(role, deepest);
    Ok(deepest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODEL: &str = include_str!("../../../policies/access/model.conf");

    fn policy_error(policy: &str) -> PolicyError {
        AccessPolicy::parse(MODEL.as_bytes(), policy.as_bytes()).expect_err(policy)
    }

    fn model_error(model: &str) -> PolicyError {
        AccessPolicy::parse(model.as_bytes(), b"").expect_err(model)
    }

    fn line_of(error: &PolicyError) -> (String, usize) {
        match error {
            PolicyError::InvalidLine { file, line, .. } => (file.clone(), *line),
            other => panic!("not a line error: {other}"),
        }
    }

    #[test]
    fn the_shipped_model_and_an_empty_policy_parse() {
        let policy = AccessPolicy::parse(MODEL.as_bytes(), b"# nothing\n\n").unwrap();
        assert!(policy.rules.is_empty() && policy.links.is_empty());
    }

    #[test]
    fn policy_rows_name_file_and_line() {
        let cases = [
            (
                "p, role:viewer, *, feedback, read\np, viewer, *, feedback, read\n",
                2,
            ),
            ("\n\np, role:viewer, Acme, feedback, read\n", 3),
            ("p, role:viewer, ac::me, feedback, read\n", 1),
            ("p, role:viewer, *, feedbacks, read\n", 1),
            ("p, role:viewer, *, feedback, look\n", 1),
            ("p, role:viewer, *, feedback\n", 1),
            ("p, role:viewer, *, feedback, read, allow\n", 1),
            (
                "p, role:viewer, *, feedback, read\ng, role:x, role:viewer, *\ng, alice, role:x, acme\ng, role:y, role:viewer, acme\n",
                4,
            ),
            (
                "p, role:viewer, *, feedback, read\ng, role:x, role:viewer, *\ng, role:x::y, role:viewer, *\n",
                3,
            ),
            (
                "p, role:viewer, *, feedback, read\ng, alice, role:viewer, Acme\n",
                2,
            ),
            (
                "p, role:viewer, *, feedback, read\ng, alice::bob, role:viewer, acme\n",
                2,
            ),
            (
                "p, role:viewer, *, feedback, read\ng, alice, viewer, acme\n",
                2,
            ),
            (
                "p, role:viewer, *, feedback, read\ng, alice, role:viewr, acme\n",
                2,
            ),
            (
                "p, role:viewer, *, feedback, read\ng, alice, role:viewer, acme\ng, alice, role:viewer, acme\n",
                3,
            ),
            (
                "p, role:viewer, *, feedback, read\ng, alice, role:viewer\n",
                2,
            ),
            ("x, role:viewer, *, feedback, read\n", 1),
            ("p, role:viewer, *, feedback, \"read\"\n", 1),
        ];
        for (policy, line) in cases {
            let error = policy_error(policy);
            assert_eq!(
                line_of(&error),
                (POLICY_PATH.to_owned(), line),
                "{policy}: {error}"
            );
        }
    }

    #[test]
    fn a_principal_spelled_like_a_role_is_a_role_and_must_be_defined() {
        // `g, role:x, ...` makes role:x a role; a principal can never be named role:x.
        let error = policy_error("p, role:a, *, feedback, read\ng, role:x, role:b, *\n");
        assert!(
            error.to_string().contains("role:b is not defined"),
            "{error}"
        );
    }

    #[test]
    fn role_inheritance_has_no_cycle_and_a_bounded_depth() {
        let cycle = "p, role:a, *, feedback, read\ng, role:a, role:b, *\ng, role:b, role:a, *\n";
        let error = policy_error(cycle);
        assert!(error.to_string().contains("cycle"), "{error}");
        let mut deep = String::from("p, role:r0, *, feedback, read\n");
        for level in 0..=limits::ROLE_INHERITANCE_DEPTH_MAX {
            deep.push_str(&format!("g, role:r{}, role:r{level}, *\n", level + 1));
        }
        let error = policy_error(&deep);
        assert!(error.to_string().contains("levels deep"), "{error}");
        // One level less is fine.
        let ok = deep
            .lines()
            .take(deep.lines().count() - 1)
            .collect::<Vec<_>>()
            .join("\n");
        AccessPolicy::parse(MODEL.as_bytes(), ok.as_bytes()).unwrap();
    }

    #[test]
    fn the_model_is_fixed_and_denies_by_default() {
        let allow_unless_denied = MODEL.replace(
            "some(where (p.eft == allow))",
            "!some(where (p.eft == deny))",
        );
        let error = model_error(&allow_unless_denied);
        assert_eq!(line_of(&error).0, MODEL_PATH);
        assert!(error.to_string().contains("denies by default"), "{error}");
        let keymatch = MODEL.replace("r.obj == p.obj", "keyMatch(r.obj, p.obj)");
        assert_eq!(line_of(&model_error(&keymatch)).0, MODEL_PATH);
        let extra = format!("{MODEL}\n[matchers]\nm2 = true\n");
        assert_eq!(line_of(&model_error(&extra)).0, MODEL_PATH);
        let missing = MODEL
            .replace("[policy_effect]", "")
            .replace("e = some(where (p.eft == allow))", "");
        assert!(matches!(
            model_error(&missing),
            PolicyError::InvalidFile { .. }
        ));
        // Whitespace in definitions does not matter.
        let spaced = MODEL.replace("r = sub, dom, obj, act", "r=sub,dom,obj,act");
        AccessPolicy::parse(spaced.as_bytes(), b"").unwrap();
    }

    #[test]
    fn not_utf8_names_the_line() {
        let error = AccessPolicy::parse(MODEL.as_bytes(), b"# ok\n# ok\n\xff\n").unwrap_err();
        assert_eq!(line_of(&error), (POLICY_PATH.to_owned(), 3));
    }
}
