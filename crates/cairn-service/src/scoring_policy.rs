//! The scoring policy in force: the scoring models and aging-out rules of `policies/scoring/`.
//!
//! `policy.toml` names the active model and holds the aging rules; every other `*.toml` file is
//! one model. Each model carries the blake3 digest of its file, so every score snapshot names the
//! exact text it was computed with.

use std::collections::BTreeMap;
use std::path::Path;

use cairn_domain::scoring::{AgingRule, ScoringModel};
use serde::Deserialize;

use crate::error::ServiceError;

/// Largest policy file, in bytes.
pub const POLICY_FILE_BYTES_MAX: u64 = 256 * 1024;
/// Most model files in the folder.
pub const SCORING_MODELS_MAX: usize = 64;
/// Most aging rules.
pub const AGING_RULES_MAX: usize = 64;

/// The models and rules in force.
#[derive(Clone, Debug)]
pub struct ScoringPolicy {
    /// Every model, by name.
    pub models: BTreeMap<String, ScoringModel>,
    /// The model that scores opportunities.
    pub active: String,
    /// The aging-out rules, in file order.
    pub aging_rules: Vec<AgingRule>,
    /// The metrics whose signals are sampled, and at what rate.
    pub sampling: Vec<SamplingRule>,
}

/// Signals of a high-volume metric are sampled: one in `rate` observations is recorded (which ones
/// is decided by a hash of the tenant, metric and signal id, so a retry decides the same), and the
/// recorded event says its rate.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingRule {
    /// The metric's name, exactly as signals name it.
    pub metric: String,
    /// One in how many observations is recorded: 2 to `SAMPLE_RATE_MAX`.
    pub rate: u32,
}

/// Most sampling rules in `policy.toml`.
pub const SAMPLING_RULES_MAX: usize = 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    active_model: String,
    #[serde(default)]
    aging_rule: Vec<AgingRule>,
    #[serde(default)]
    sampling: Vec<SamplingRule>,
}

/// The files of the repository's `policies/scoring/`, built in, for a server started without a
/// policies folder.
pub const BUILT_IN: &[(&str, &str)] = &[
    (
        "policy.toml",
        include_str!("../../../policies/scoring/policy.toml"),
    ),
    (
        "platform-rice.toml",
        include_str!("../../../policies/scoring/platform-rice.toml"),
    ),
    (
        "platform-ice.toml",
        include_str!("../../../policies/scoring/platform-ice.toml"),
    ),
    (
        "platform-wsjf.toml",
        include_str!("../../../policies/scoring/platform-wsjf.toml"),
    ),
    (
        "platform-weighted.toml",
        include_str!("../../../policies/scoring/platform-weighted.toml"),
    ),
];

impl ScoringPolicy {
    /// The active model.
    pub fn active_model(&self) -> &ScoringModel {
        &self.models[&self.active]
    }

    /// The sample rate of a metric's signals, if they are sampled.
    pub fn sample_rate(&self, metric: &str) -> Option<u32> {
        self.sampling
            .iter()
            .find(|rule| rule.metric == metric)
            .map(|rule| rule.rate)
    }

    /// An aging rule by name.
    pub fn aging_rule(&self, name: &str) -> Option<&AgingRule> {
        self.aging_rules.iter().find(|rule| rule.name == name)
    }

    /// Loads `dir` (a `policies/scoring` folder).
    pub fn load_dir(dir: &Path) -> Result<ScoringPolicy, ServiceError> {
        let io = |context: String| move |source| ServiceError::Io { context, source };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io(format!("reading {}", dir.display())))? {
            let path = entry
                .map_err(io(format!("reading {}", dir.display())))?
                .path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let size = std::fs::metadata(&path)
                .map_err(io(format!("reading {}", path.display())))?
                .len();
            if size > POLICY_FILE_BYTES_MAX {
                return Err(invalid(
                    &path.display().to_string(),
                    format!("is {size} bytes, over the limit of {POLICY_FILE_BYTES_MAX}"),
                ));
            }
            let text = std::fs::read_to_string(&path)
                .map_err(io(format!("reading {}", path.display())))?;
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            files.push((name, text));
        }
        files.sort();
        ScoringPolicy::from_files(files.iter().map(|(n, t)| (n.as_str(), t.as_str())))
    }

    /// The built-in copy of the repository's policies.
    pub fn built_in() -> ScoringPolicy {
        ScoringPolicy::from_files(BUILT_IN.iter().copied())
            .expect("the built-in scoring policy is valid (a test checks it)")
    }

    /// Parses a folder's files: (file name, text).
    pub fn from_files<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<ScoringPolicy, ServiceError> {
        let mut policy_file = None;
        let mut models = BTreeMap::new();
        for (name, text) in files {
            if name == "policy.toml" {
                let parsed: PolicyFile =
                    toml::from_str(text).map_err(|e| invalid(name, e.to_string()))?;
                policy_file = Some(parsed);
                continue;
            }
            let mut model: ScoringModel =
                toml::from_str(text).map_err(|e| invalid(name, e.to_string()))?;
            model.digest = blake3::hash(text.as_bytes()).to_hex().to_string();
            model.validate().map_err(|e| invalid(name, e.to_string()))?;
            if models.len() >= SCORING_MODELS_MAX {
                return Err(invalid(
                    name,
                    format!("more than {SCORING_MODELS_MAX} scoring models"),
                ));
            }
            if let Some(other) = models.insert(model.name.clone(), model) {
                return Err(invalid(
                    name,
                    format!("model {:?} is defined twice", other.name),
                ));
            }
        }
        let policy_file =
            policy_file.ok_or_else(|| invalid("policy.toml", "is missing".to_owned()))?;
        if !models.contains_key(&policy_file.active_model) {
            return Err(invalid(
                "policy.toml",
                format!(
                    "active_model {:?} has no model file",
                    policy_file.active_model
                ),
            ));
        }
        if policy_file.aging_rule.len() > AGING_RULES_MAX {
            return Err(invalid(
                "policy.toml",
                format!("more than {AGING_RULES_MAX} aging rules"),
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for rule in &policy_file.aging_rule {
            rule.validate()
                .map_err(|e| invalid("policy.toml", format!("aging rule {}: {e}", rule.name)))?;
            if !names.insert(rule.name.clone()) {
                return Err(invalid(
                    "policy.toml",
                    format!("aging rule {:?} is defined twice", rule.name),
                ));
            }
        }
        if policy_file.sampling.len() > SAMPLING_RULES_MAX {
            return Err(invalid(
                "policy.toml",
                format!("more than {SAMPLING_RULES_MAX} sampling rules"),
            ));
        }
        let mut metrics = std::collections::BTreeSet::new();
        for rule in &policy_file.sampling {
            let max = cairn_domain::limits::SAMPLE_RATE_MAX;
            if rule.metric.is_empty()
                || rule.metric.len() > cairn_domain::limits::METRIC_NAME_BYTES_MAX
            {
                return Err(invalid(
                    "policy.toml",
                    format!(
                        "sampling metric {:?} must be 1 to {} bytes",
                        rule.metric,
                        cairn_domain::limits::METRIC_NAME_BYTES_MAX
                    ),
                ));
            }
            if !(2..=max).contains(&rule.rate) {
                return Err(invalid(
                    "policy.toml",
                    format!(
                        "sampling rate of {:?} must be 2 to {max}, got {}",
                        rule.metric, rule.rate
                    ),
                ));
            }
            if !metrics.insert(rule.metric.clone()) {
                return Err(invalid(
                    "policy.toml",
                    format!("metric {:?} is sampled twice", rule.metric),
                ));
            }
        }
        Ok(ScoringPolicy {
            models,
            active: policy_file.active_model,
            aging_rules: policy_file.aging_rule,
            sampling: policy_file.sampling,
        })
    }
}

fn invalid(file: &str, reason: String) -> ServiceError {
    ServiceError::InvalidPolicy {
        file: file.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_policy_loads_every_model_and_rule() {
        let policy = ScoringPolicy::built_in();
        assert_eq!(policy.active, "platform-rice");
        assert_eq!(policy.models.len(), 4);
        assert_eq!(policy.aging_rules.len(), 2);
        assert_eq!(policy.active_model().digest.len(), 64);
    }

    #[test]
    fn the_repository_folder_matches_the_built_in_copy() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/scoring");
        let loaded = ScoringPolicy::load_dir(&dir).unwrap();
        let built_in = ScoringPolicy::built_in();
        assert_eq!(loaded.models, built_in.models);
        assert_eq!(loaded.aging_rules, built_in.aging_rules);
        assert_eq!(loaded.sampling, built_in.sampling);
    }

    #[test]
    fn sampling_rules_are_read_and_bad_ones_refused() {
        let model = BUILT_IN[1].1;
        let with = |sampling: &str| {
            let policy = format!("active_model = \"platform-rice\"\n{sampling}");
            ScoringPolicy::from_files(vec![("policy.toml", policy.as_str()), ("m.toml", model)])
        };
        let policy = with("[[sampling]]\nmetric = \"rps\"\nrate = 10\n").unwrap();
        assert_eq!(policy.sample_rate("rps"), Some(10));
        assert_eq!(policy.sample_rate("other"), None);
        for (sampling, expected) in [
            ("[[sampling]]\nmetric = \"rps\"\nrate = 1\n", "rate"),
            ("[[sampling]]\nmetric = \"rps\"\nrate = 2000000\n", "rate"),
            ("[[sampling]]\nmetric = \"\"\nrate = 10\n", "metric"),
            (
                "[[sampling]]\nmetric = \"rps\"\nrate = 10\n[[sampling]]\nmetric = \"rps\"\nrate = 20\n",
                "twice",
            ),
            (
                "[[sampling]]\nmetric = \"rps\"\nrate = 10\nevery = 3\n",
                "unknown field",
            ),
        ] {
            let error = with(sampling).unwrap_err().to_string();
            assert!(
                error.contains(expected),
                "{error} should mention {expected}"
            );
        }
    }

    #[test]
    fn bad_policies_are_refused_naming_the_file() {
        let model = BUILT_IN[1].1;
        for (files, expected) in [
            (vec![("m.toml", model)], "policy.toml"),
            (
                vec![
                    ("policy.toml", "active_model = \"nope\"\n"),
                    ("m.toml", model),
                ],
                "active_model",
            ),
            (
                vec![
                    ("policy.toml", "active_model = \"platform-rice\"\n"),
                    ("m.toml", "name = \"x\"\nversion = 0\nformula = \"ice\"\n"),
                ],
                "m.toml",
            ),
            (
                vec![
                    ("policy.toml", "active_model = \"platform-rice\"\n"),
                    ("a.toml", model),
                    ("b.toml", model),
                ],
                "defined twice",
            ),
        ] {
            let error = ScoringPolicy::from_files(files).unwrap_err().to_string();
            assert!(
                error.contains(expected),
                "{error} should mention {expected}"
            );
        }
    }
}
