//! Policy as code: the bundle's own expected verdicts, and dry runs of a proposed bundle.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::access::utf8;
use crate::authorizer::{AccessRequest, Authorizer, Verdict};
use crate::bundle::Bundle;
use crate::error::PolicyError;
use crate::limits;
use crate::names::{Action, Object};

/// Where a bundle's policy tests live: every `.csv` file under it.
pub const TESTS_DIR: &str = "tests/";

/// One row of a policy test file, and what the bundle answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestCase {
    /// The bundle-relative test file.
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// The request the row states.
    pub request: AccessRequest,
    /// Whether the row expects it allowed.
    pub expected: bool,
    /// What the bundle answered (with no runtime grants).
    pub verdict: Verdict,
}

impl TestCase {
    /// Whether the answer is the expected one.
    pub fn passed(&self) -> bool {
        self.verdict.allowed == self.expected
    }
}

impl fmt::Display for TestCase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = |allowed: bool| if allowed { "allow" } else { "deny" };
        write!(
            f,
            "{}:{}: {}: expected {}, got {}: {}",
            self.file,
            self.line,
            self.request,
            word(self.expected),
            word(self.verdict.allowed),
            self.verdict.rule.as_deref().unwrap_or(&self.verdict.reason)
        )
    }
}

/// Every policy test case of a bundle, run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestReport {
    /// In file and line order.
    pub cases: Vec<TestCase>,
}

impl TestReport {
    /// The cases whose answer was not the expected one.
    pub fn failures(&self) -> impl Iterator<Item = &TestCase> {
        self.cases.iter().filter(|case| !case.passed())
    }

    /// Whether every case passed.
    pub fn passed(&self) -> bool {
        self.failures().next().is_none()
    }
}

impl fmt::Display for TestReport {
    /// One line per failure (file:line, request, expected, got, rule or reason), then a count.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut failed = 0;
        for case in self.failures() {
            writeln!(f, "{case}")?;
            failed += 1;
        }
        write!(
            f,
            "{} policy test cases, {} passed, {failed} failed",
            self.cases.len(),
            self.cases.len() - failed
        )
    }
}

/// Runs the bundle's policy tests: every `tests/**.csv` file holds header-less rows
/// `principal, tenant, object, action, allow|deny`, `#` comment lines and blank lines. The
/// principal and tenant are taken as written, even when invalid or empty (the authorizer must
/// deny those); the object, action and expectation must parse. An error only for a test file
/// that does not parse, naming file and line; failed expectations are in the report.
pub fn run_tests(bundle: &Bundle) -> Result<TestReport, PolicyError> {
    let authorizer = Authorizer::compile(bundle, &[])?;
    let mut cases = Vec::new();
    let test_files = bundle
        .files()
        .filter(|(path, _)| path.starts_with(TESTS_DIR) && path.ends_with(".csv"));
    for (file, bytes) in test_files {
        let text = utf8(file, bytes)?;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let invalid = |reason: String| PolicyError::InvalidLine {
                file: file.to_owned(),
                line,
                reason,
            };
            if cases.len() == limits::TEST_CASES_MAX {
                return Err(invalid(format!(
                    "more than {} policy test cases in the bundle",
                    limits::TEST_CASES_MAX
                )));
            }
            let fields: Vec<&str> = trimmed.split(',').map(str::trim).collect();
            let [principal, tenant, object, action, expectation] = fields[..] else {
                return Err(invalid(format!(
                    "a test row has 5 fields (principal, tenant, object, action, allow|deny), \
                     not {}",
                    fields.len()
                )));
            };
            let object: Object = object
                .parse()
                .map_err(|e: PolicyError| invalid(e.to_string()))?;
            let action: Action = action
                .parse()
                .map_err(|e: PolicyError| invalid(e.to_string()))?;
            let expected = match expectation {
                "allow" => true,
                "deny" => false,
                other => return Err(invalid(format!("expected allow or deny, not {other:?}"))),
            };
            let request = AccessRequest::new(principal, tenant, object, action);
            let verdict = authorizer.check_uncached(&request);
            cases.push(TestCase {
                file: file.to_owned(),
                line,
                request,
                expected,
                verdict,
            });
        }
    }
    Ok(TestReport { cases })
}

/// A request whose answer differs between two authorizers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flip {
    /// The request replayed.
    pub request: AccessRequest,
    /// The current authorizer's answer.
    pub was: Verdict,
    /// The proposed authorizer's answer.
    pub becomes: Verdict,
}

/// Replays recorded requests against two authorizers; every request whose answer (allowed or
/// not) differs, in the order given. The authorizers' memos are left alone.
pub fn dry_run(
    current: &Authorizer,
    proposed: &Authorizer,
    requests: &[AccessRequest],
) -> Vec<Flip> {
    requests
        .iter()
        .filter_map(|request| {
            let was = current.check_uncached(request);
            let becomes = proposed.check_uncached(request);
            (was.allowed != becomes.allowed).then(|| Flip {
                request: request.clone(),
                was,
                becomes,
            })
        })
        .collect()
}
