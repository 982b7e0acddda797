//! The limits of domain input. Every string, list and number a command carries has one, checked
//! by `decide` before any event is produced, so no recorded event can exceed them.

/// Longest entity id (feedback, opportunity, decision, ...), in bytes; equal to the ledger's
/// aggregate id limit, since the id is the stream's aggregate id.
pub const ENTITY_ID_BYTES_MAX: usize = 128;
/// Longest principal id, in bytes; equal to the ledger's actor limit.
pub const PRINCIPAL_ID_BYTES_MAX: usize = 256;
/// Longest team name, in bytes.
pub const TEAM_BYTES_MAX: usize = 64;
/// Longest tag (and outcome tag), in bytes.
pub const TAG_BYTES_MAX: usize = 64;
/// Most tags (and, separately, outcome tags) on one item.
pub const TAGS_MAX: usize = 32;
/// Longest title or name, in bytes.
pub const TITLE_BYTES_MAX: usize = 256;
/// Longest free text (feedback text, problem statement, decision context), in bytes.
pub const TEXT_BYTES_MAX: usize = 16 * 1024;
/// Longest reason (decline, discard, cancel, ...), in bytes.
pub const REASON_BYTES_MAX: usize = 2 * 1024;
/// Most entries in one list field (drivers, options, deciders, owners, ...).
pub const LIST_ITEMS_MAX: usize = 32;
/// Longest entry of such a list, in bytes.
pub const LIST_ITEM_BYTES_MAX: usize = 1024;
/// Most milestones of one initiative.
pub const MILESTONES_MAX: usize = 64;
/// Most pieces of evidence attached to one opportunity (the aggregate is folded on every command).
pub const EVIDENCE_MAX: usize = 10_000;
/// Most distinct voters on one opportunity.
pub const VOTERS_MAX: usize = 100_000;
/// Largest vote weight (smallest is 1).
pub const VOTE_WEIGHT_MAX: u32 = 100;
/// Most factors in one scoring model.
pub const SCORING_FACTORS_MAX: usize = 32;
/// Largest absolute value of a rating, metric value or weight.
pub const NUMBER_ABS_MAX: f64 = 1e12;
/// Longest metric name or unit, in bytes.
pub const METRIC_NAME_BYTES_MAX: usize = 128;
/// Largest signal sample rate (one in how many observations of a metric is recorded).
pub const SAMPLE_RATE_MAX: u32 = 1_000_000;
