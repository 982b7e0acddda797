//! The flags every feedback-loop subcommand shares: who writes for which tenant and how a retry is
//! recognised (`WriteFlags`), which position a read answers as of (`ReadScope`), how results are
//! printed (`Format`), and paging (`PageFlags`).

use cairn_grpc::proto;
use clap::{Args, ValueEnum};

use crate::append::default_actor;
use crate::client::ServerArgs;

/// How a result is printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Lines for a person.
    #[default]
    Text,
    /// One JSON object.
    Json,
}

/// The flags of a mutating subcommand.
#[derive(Clone, Debug, Args)]
pub struct WriteFlags {
    #[command(flatten)]
    pub server: ServerArgs,

    /// The tenant (an organisation or business unit).
    #[arg(long, env = "CAIRN_TENANT")]
    pub tenant: String,

    /// The principal on whose behalf the command runs (default: $USER, else `cli`).
    #[arg(long, value_name = "PRINCIPAL")]
    pub actor: Option<String>,

    /// Names the command, so a retry with the same key records nothing twice and answers the
    /// first receipt. Default: none (a retry is decided again).
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,

    /// The entity's stream version the command requires (the `version` a read printed); 0: any.
    #[arg(long, value_name = "VERSION", default_value_t = 0)]
    pub expected_version: u64,

    /// How to print the receipt.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

impl WriteFlags {
    /// The request's command metadata.
    pub fn meta(&self) -> proto::CommandMeta {
        proto::CommandMeta {
            tenant: self.tenant.clone(),
            idempotency_key: self.idempotency_key.clone().unwrap_or_default(),
            expected_version: self.expected_version,
            actor: self.actor.clone().unwrap_or_else(default_actor),
            occurred_at_micros: 0,
            correlation_id: Vec::new(),
        }
    }
}

/// Which server, tenant and ledger position a read answers for.
#[derive(Clone, Debug, Args)]
pub struct ReadScope {
    #[command(flatten)]
    pub server: ServerArgs,

    /// The tenant (an organisation or business unit).
    #[arg(long, env = "CAIRN_TENANT")]
    pub tenant: String,

    /// Answer as the ledger stood at this position (reproducible: pass a stamp's position).
    #[arg(long, value_name = "POSITION")]
    pub as_of: Option<u64>,

    /// Answer only once the read models have applied this position (a receipt's last position).
    #[arg(long, value_name = "POSITION")]
    pub at_least: Option<u64>,

    /// Include personal data (feedback text and submitter) where the caller may see it.
    #[arg(long)]
    pub include_personal: bool,
}

impl ReadScope {
    /// The request's read options.
    pub fn options(&self) -> proto::ReadOptions {
        proto::ReadOptions {
            as_of_position: self.as_of,
            at_least_position: self.at_least,
            include_personal: self.include_personal,
        }
    }

    /// The read options pinned at `position`: every read of one answer (a report, the demo's
    /// questions) reflects the same ledger.
    pub fn options_at(&self, position: u64) -> proto::ReadOptions {
        proto::ReadOptions {
            as_of_position: Some(position),
            at_least_position: None,
            include_personal: self.include_personal,
        }
    }
}

/// The flags of a read subcommand.
#[derive(Clone, Debug, Args)]
pub struct ReadFlags {
    #[command(flatten)]
    pub scope: ReadScope,

    /// How to print the answer.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// The paging flags of a list.
#[derive(Clone, Debug, Args)]
pub struct PageFlags {
    /// Items per page (0: the server's default, 100; at most 500).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub page_size: u32,

    /// Continue from a previous page (its `next page` token; the answer stays as of the first
    /// page's position).
    #[arg(long, value_name = "TOKEN", conflicts_with = "all")]
    pub page_token: Option<String>,

    /// Follow every page to the end.
    #[arg(long)]
    pub all: bool,
}

impl PageFlags {
    /// The first page's request part.
    pub fn first(&self) -> proto::PageRequest {
        proto::PageRequest {
            page_size: self.page_size,
            page_token: self.page_token.clone().unwrap_or_default(),
        }
    }

    /// The next page's request part, or `None` when done: at the last page, or after the first
    /// unless `--all`.
    pub fn next(&self, page: Option<&proto::PageInfo>) -> Option<proto::PageRequest> {
        let token = page.map(|page| page.next_page_token.as_str())?;
        (self.all && !token.is_empty()).then(|| proto::PageRequest {
            page_size: self.page_size,
            page_token: token.to_owned(),
        })
    }
}

/// The items of one or more pages of a list, the stamp they reflect and where to continue.
pub struct Pages<T> {
    /// Every item read, in the server's order.
    pub items: Vec<T>,
    /// The stamp of the last page (every page answers as of the first page's position).
    pub stamp: Option<proto::Stamp>,
    /// The token of the page after the last one read; empty at the end.
    pub next_page_token: String,
}

/// What one page call answers: its items, its paging part and its stamp.
pub type Page<T> = (Vec<T>, Option<proto::PageInfo>, Option<proto::Stamp>);

/// Reads the first page, and with `--all` every page after it, calling `call` for each.
pub async fn collect_pages<T>(
    flags: &PageFlags,
    mut call: impl AsyncFnMut(proto::PageRequest) -> anyhow::Result<Page<T>>,
) -> anyhow::Result<Pages<T>> {
    let mut items = Vec::new();
    let mut request = flags.first();
    loop {
        let (page_items, page, stamp) = call(request).await?;
        items.extend(page_items);
        match flags.next(page.as_ref()) {
            Some(next) => request = next,
            None => {
                return Ok(Pages {
                    items,
                    stamp,
                    next_page_token: page.map(|page| page.next_page_token).unwrap_or_default(),
                });
            }
        }
    }
}

/// Every page, the largest the server allows: for answers that need the whole list (a report).
pub fn every_page() -> PageFlags {
    PageFlags {
        page_size: 500,
        page_token: None,
        all: true,
    }
}

/// Parses an entity as `kind/id` (`opportunity/o-17`), or a bare id of `default_kind` when there
/// is one.
pub fn parse_entity(
    flag: &str,
    text: &str,
    default_kind: Option<proto::EntityKind>,
) -> anyhow::Result<proto::EntityRef> {
    let (kind, id) = match (text.split_once('/'), default_kind) {
        (Some((kind, id)), _) => (
            crate::enums::parse_enum::<proto::EntityKind>(flag, kind)?,
            id,
        ),
        (None, Some(kind)) => (kind, text),
        (None, None) => anyhow::bail!(
            "{flag} {text:?} must be KIND/ID, for example opportunity/o-17 (kinds: {})",
            crate::enums::short_names::<proto::EntityKind>().join(", ")
        ),
    };
    if id.is_empty() {
        anyhow::bail!("{flag} {text:?} has no id after the kind");
    }
    Ok(proto::EntityRef {
        kind: kind.into(),
        id: id.to_owned(),
    })
}

/// Parses a time flag (see `timespec`): a date, an RFC 3339 time, or relative to now.
pub fn parse_time_flag(flag: &str, text: &str) -> anyhow::Result<i64> {
    crate::timespec::parse_time(flag, text, crate::timespec::now_micros())
}

/// An optional time flag: 0 when absent.
pub fn optional_time_flag(flag: &str, text: Option<&str>) -> anyhow::Result<i64> {
    text.map_or(Ok(0), |text| parse_time_flag(flag, text))
}

/// A time range from `--since` and `--until` flags; `None` when neither is given.
pub fn time_range(
    since: Option<&str>,
    until: Option<&str>,
    since_flag: &str,
    until_flag: &str,
) -> anyhow::Result<Option<proto::TimeRange>> {
    if since.is_none() && until.is_none() {
        return Ok(None);
    }
    Ok(Some(proto::TimeRange {
        from_micros: optional_time_flag(since_flag, since)?,
        to_micros: optional_time_flag(until_flag, until)?,
    }))
}
