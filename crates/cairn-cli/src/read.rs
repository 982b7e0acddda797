//! `cairn read`: records of the whole ledger (by position) or of one stream (by version).

use std::io::Write;

use anyhow::Context;
use cairn_grpc::proto;
use clap::Args;

use crate::client::{Client, ServerArgs};
use crate::input::{parse_stream, stream_to_proto};
use crate::output::{record_json, record_line};

/// `cairn read`.
#[derive(Debug, Args)]
pub struct ReadArgs {
    #[command(flatten)]
    server: ServerArgs,

    /// Read one stream (TENANT/TYPE/ID) instead of the whole ledger.
    #[arg(long)]
    stream: Option<String>,

    /// The first position (ledger) or stream version (--stream) to read; 0 or 1 read from the
    /// start.
    #[arg(long, default_value_t = 0)]
    from: u64,

    /// At most this many records (0: the server's default page); with --all, the page size.
    #[arg(long, default_value_t = 0)]
    limit: u32,

    /// Page through to the head (the head as it was when the read started).
    #[arg(long)]
    all: bool,

    /// Include personal data (opened by the server where the caller may).
    #[arg(long)]
    personal: bool,

    /// One JSON object per line instead of one line of text per record.
    #[arg(long)]
    json: bool,
}

/// How records are printed.
#[derive(Clone, Copy, Debug)]
pub enum RecordFormat {
    /// One line of text per record.
    Text,
    /// One JSON object per line.
    Json,
}

impl RecordFormat {
    /// The format a `--json` flag asks for.
    pub fn from_json_flag(json: bool) -> RecordFormat {
        if json {
            RecordFormat::Json
        } else {
            RecordFormat::Text
        }
    }

    /// Writes one record and a newline.
    pub fn write(self, out: &mut impl Write, record: &proto::Record) -> anyhow::Result<()> {
        let line = match self {
            RecordFormat::Text => record_line(record),
            RecordFormat::Json => record_json(record),
        };
        writeln!(out, "{line}").context("cannot write to stdout")
    }
}

/// Reads and prints.
pub async fn run(args: ReadArgs) -> anyhow::Result<()> {
    let stream = args.stream.as_deref().map(parse_stream).transpose()?;
    let format = RecordFormat::from_json_flag(args.json);
    let mut client = Client::connect(&args.server).await?;
    let (count, head) = match (&stream, args.all) {
        (None, false) => {
            let page = client
                .read_all(proto::ReadAllRequest {
                    from_position: args.from,
                    limit: args.limit,
                    include_personal: args.personal,
                })
                .await?;
            print_page(format, &page.records)?;
            (page.records.len() as u64, page.head_position)
        }
        (Some(stream), false) => {
            let page = client
                .read_stream(proto::ReadStreamRequest {
                    stream: Some(stream_to_proto(stream)),
                    from_version: args.from,
                    limit: args.limit,
                    include_personal: args.personal,
                })
                .await?;
            print_page(format, &page.records)?;
            (page.records.len() as u64, page.head_position)
        }
        (None, true) => {
            let info = client.log_info().await?;
            let head = info.head_position;
            let page_size = page_size(args.limit, &info);
            let from = args.from.max(1);
            let wanted = (head + 1).saturating_sub(from);
            let first = proto::ReadAllRequest {
                from_position: from,
                limit: 0,
                include_personal: args.personal,
            };
            let mut stdout = std::io::stdout().lock();
            let count = client
                .read_all_pages(first, wanted, page_size, |record| {
                    format.write(&mut stdout, &record)
                })
                .await?;
            (count, head)
        }
        (Some(stream), true) => {
            let info = client.log_info().await?;
            let page_size = page_size(args.limit, &info);
            let mut from_version = args.from.max(1);
            let mut count = 0u64;
            let mut head = info.head_position;
            loop {
                let page = client
                    .read_stream(proto::ReadStreamRequest {
                        stream: Some(stream_to_proto(stream)),
                        from_version,
                        limit: page_size,
                        include_personal: args.personal,
                    })
                    .await?;
                // Stop at the head as it was when the read started, even if appends go on.
                let records: Vec<_> = page
                    .records
                    .into_iter()
                    .filter(|record| record.position <= info.head_position)
                    .collect();
                let Some(last) = records.last() else { break };
                from_version = last.stream_version + 1;
                count += records.len() as u64;
                head = page.head_position;
                print_page(format, &records)?;
            }
            (count, head)
        }
    };
    eprintln!(
        "{count} record{} (the ledger's head was at position {head})",
        if count == 1 { "" } else { "s" }
    );
    Ok(())
}

/// The page size for paging: `--limit` if given, else the server's largest page.
fn page_size(limit: u32, info: &proto::LogInfo) -> u32 {
    if limit != 0 {
        return limit;
    }
    info.limits
        .as_ref()
        .map(|limits| u32::try_from(limits.page_size_max).unwrap_or(u32::MAX))
        .filter(|size| *size > 0)
        .unwrap_or(100)
}

fn print_page(format: RecordFormat, records: &[proto::Record]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    for record in records {
        format.write(&mut stdout, record)?;
    }
    stdout.flush().context("cannot write to stdout")
}
