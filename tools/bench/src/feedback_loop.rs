//! The feedback-loop benchmark: a realistic data set of about `--events` ledger events recorded
//! through the service in process (tenants in parallel, each tenant's commands in order), then
//! the projections rebuilt from the ledger beside a raw read-and-decode of the same records, then
//! the latency of the queries the design aims at (ranking top 50, lineage to depth 5, decision
//! lookup) over the rebuilt projections.
//!
//! With `CAIRN_BENCH_LEDGER_DIR` set, the ledger lives in that directory and is kept: a later run
//! that finds events there skips the load (and reports no load time) and measures the rest over
//! them, so repeated runs at a million events do not pay the minutes of loading each time.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cairn_domain::codec::StoredPersonal;
use cairn_domain::opportunity::OpportunityCommand;
use cairn_domain::{EntityId, EntityKind, EntityRef, Event, Time};
use cairn_ledger::{Position, SealedPayload};
use cairn_projections::{Direction, Projections};
use cairn_service::dataset::{self, Action, Scale};
use cairn_service::{FeedbackLoop, Ledger, ScoringPolicy, ServerIdentity};
use cairn_store::{EventStore, limits as store_limits};
use cairn_store_embedded::{EmbeddedOptions, EmbeddedStore};

/// Opportunities per tenant of the data set; tenants are added until the events are reached.
const OPPORTUNITIES_PER_TENANT: usize = 120;
/// The environment variable naming a ledger directory to keep and reuse between runs.
const LEDGER_DIR_VARIABLE: &str = "CAIRN_BENCH_LEDGER_DIR";
/// Queries timed per kind.
const QUERIES_PER_KIND: usize = 2000;

/// The figures of one run.
pub struct Report {
    events: u64,
    tenants: usize,
    /// `None` when the ledger of an earlier run was reused.
    load: Option<Duration>,
    raw_decode: Duration,
    rebuild: Duration,
    ranking: Vec<Duration>,
    lineage: Vec<Duration>,
    lineage_nodes: usize,
    decision: Vec<Duration>,
}

/// Loads, rebuilds and queries; `events` is the target size of the ledger.
pub async fn run(base: &Path, events: u64) -> Result<Report> {
    let store_dir = match std::env::var_os(LEDGER_DIR_VARIABLE) {
        Some(dir) => std::path::PathBuf::from(dir),
        None => base.join("feedback-loop"),
    };
    let store = {
        let dir = store_dir.clone();
        tokio::task::spawn_blocking(move || EmbeddedStore::open(&dir, EmbeddedOptions::default()))
            .await??
    };
    let identity = Arc::new(ServerIdentity::from_secrets([1; 32], [2; 32], [3; 32]));
    let ledger = Arc::new(Ledger::new(Arc::clone(&store), identity));
    let now = Time(cairn_store::now().0);
    let service = Arc::new(FeedbackLoop::new(
        ledger,
        Arc::new(ScoringPolicy::built_in()),
    ));

    // One tenant's data set is about OPPORTUNITIES_PER_TENANT × 120 events; measure one to size.
    let per_tenant = Scale {
        tenants: 1,
        opportunities: OPPORTUNITIES_PER_TENANT,
        feedback_per_opportunity: 4,
        voters_per_opportunity: 6,
    };
    let probe_steps = dataset::generate(1, per_tenant, now).len() as u64;
    // About 1.5 events per step in the data set (receipts carry the scores and links).
    let tenants = ((events as f64 / (probe_steps as f64 * 1.5)).ceil() as usize).max(1);
    let reused = store.head().await?.position;
    let load = if reused > Position::ZERO {
        eprintln!(
            "feedback loop: reusing the {} events in {}",
            reused.0,
            store_dir.display()
        );
        None
    } else {
        let steps = dataset::generate(
            42,
            Scale {
                tenants,
                ..per_tenant
            },
            now,
        );
        eprintln!(
            "feedback loop: loading {} steps over {tenants} tenants",
            steps.len()
        );
        let started = Instant::now();
        load(&service, steps).await?;
        store.wait_indexed().await?;
        Some(started.elapsed())
    };
    let head = store.head().await?.position;
    eprintln!(
        "feedback loop: {} events, loaded in {:.1} s",
        head.0,
        load.unwrap_or_default().as_secs_f64()
    );

    eprintln!("feedback loop: raw read and decode");
    let started = Instant::now();
    let mut decoded = 0u64;
    let mut next = Position(1);
    loop {
        let records = store.read_all(next, store_limits::READ_RECORDS_MAX).await?;
        let Some(last) = records.last() else { break };
        next = last.position().next();
        for record in &records {
            let payload = SealedPayload::decode(&record.payload)?;
            let envelope = &record.envelope;
            let event = Event::decode(
                &envelope.stream.aggregate_type,
                &envelope.event_type,
                envelope.event_schema_version,
                &payload.clear,
                StoredPersonal::Withheld,
            )?;
            std::hint::black_box(&event);
            decoded += 1;
        }
    }
    let raw_decode = started.elapsed();
    std::hint::black_box(decoded);

    eprintln!("feedback loop: rebuild");
    let projections_dir = base.join("projections");
    let started = Instant::now();
    let projections = Projections::rebuild(&*store, &projections_dir).await?;
    let rebuild = started.elapsed();
    assert_eq!(projections.applied(), head, "the rebuild reached the head");

    // Queries over the largest tenant (the first), as a dashboard would ask them.
    let tenant = "acme";
    let feedback: Vec<EntityRef> = projections
        .list_feedback(
            tenant,
            &Default::default(),
            None,
            &cairn_projections::PageRequest {
                size: 500,
                token: None,
            },
        )?
        .value
        .items
        .into_iter()
        .map(|v| EntityRef::new(EntityKind::Feedback, v.id))
        .collect();
    let decisions: Vec<String> = projections
        .list_decisions(
            tenant,
            &Default::default(),
            None,
            &cairn_projections::PageRequest {
                size: 500,
                token: None,
            },
        )?
        .value
        .items
        .into_iter()
        .map(|v| v.id.as_str().to_owned())
        .collect();
    let mut ranking = Vec::with_capacity(QUERIES_PER_KIND);
    let mut lineage = Vec::with_capacity(QUERIES_PER_KIND);
    let mut decision = Vec::with_capacity(QUERIES_PER_KIND);
    let mut lineage_nodes = 0;
    for i in 0..QUERIES_PER_KIND {
        let started = Instant::now();
        let top = projections.ranking(tenant, None, None, 0, 50)?;
        ranking.push(started.elapsed());
        std::hint::black_box(top);

        let root = &feedback[(i * 7919) % feedback.len()];
        let started = Instant::now();
        let graph = projections.graph(tenant, root, Direction::Both, 5, 1000, None)?;
        lineage.push(started.elapsed());
        lineage_nodes = lineage_nodes.max(graph.value.nodes.len());

        let id = &decisions[(i * 104_729) % decisions.len()];
        let started = Instant::now();
        let found = projections.decision(tenant, id, None)?;
        decision.push(started.elapsed());
        assert!(found.value.is_some());
    }
    ranking.sort_unstable();
    lineage.sort_unstable();
    decision.sort_unstable();
    drop(projections);
    store.close().await;
    Ok(Report {
        events: head.0,
        tenants,
        load,
        raw_decode,
        rebuild,
        ranking,
        lineage,
        lineage_nodes,
        decision,
    })
}

/// Records the data set's steps through the service, tenants in parallel, each tenant's in order.
async fn load(service: &Arc<FeedbackLoop<EmbeddedStore>>, steps: Vec<dataset::Step>) -> Result<()> {
    let mut by_tenant: Vec<Vec<dataset::Step>> = Vec::new();
    for step in steps {
        match by_tenant.last_mut() {
            Some(list) if list[0].tenant == step.tenant => list.push(step),
            _ => by_tenant.push(vec![step]),
        }
    }
    let mut tasks = Vec::new();
    for steps in by_tenant {
        let service = Arc::clone(service);
        tasks.push(tokio::spawn(async move {
            let opportunities: Vec<EntityId> = steps
                .iter()
                .filter_map(|s| match &s.action {
                    Action::Opportunity(id, OpportunityCommand::Create { .. }) => Some(id.clone()),
                    _ => None,
                })
                .collect();
            for step in &steps {
                service
                    .run_step(step, &opportunities)
                    .await
                    .with_context(|| format!("step {}", step.key))?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(duration: Duration) -> String {
    format!("{:.3} ms", duration.as_secs_f64() * 1e3)
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let per_second = |d: Duration| self.events as f64 / d.as_secs_f64();
        writeln!(
            f,
            "## Feedback loop: {} events, {} tenants",
            self.events, self.tenants
        )?;
        writeln!(f)?;
        writeln!(f, "| phase | time | events/s |")?;
        writeln!(f, "|---|---:|---:|")?;
        match self.load {
            Some(load) => writeln!(
                f,
                "| load through the service (in process, tenants in parallel) | {:.1} s | {:.0} |",
                load.as_secs_f64(),
                per_second(load)
            )?,
            None => writeln!(f, "| load through the service | (ledger reused) | |")?,
        }
        writeln!(
            f,
            "| raw read and decode (segments → envelope, payload, domain event) | {:.2} s | {:.0} |",
            self.raw_decode.as_secs_f64(),
            per_second(self.raw_decode)
        )?;
        writeln!(
            f,
            "| projections rebuilt from the ledger | {:.2} s | {:.0} |",
            self.rebuild.as_secs_f64(),
            per_second(self.rebuild)
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "Rebuild speed ÷ raw read-and-decode speed: **{:.2}** (aim: at least 0.30).",
            self.raw_decode.as_secs_f64() / self.rebuild.as_secs_f64()
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "| query ({QUERIES_PER_KIND} each, tenant `acme`) | p50 | p99 | aim p99 |"
        )?;
        writeln!(f, "|---|---:|---:|---:|")?;
        for (name, sorted) in [
            ("ranking, top 50".to_owned(), &self.ranking),
            (
                format!(
                    "lineage, both ways to depth 5 (up to {} nodes)",
                    self.lineage_nodes
                ),
                &self.lineage,
            ),
            ("decision lookup by id".to_owned(), &self.decision),
        ] {
            writeln!(
                f,
                "| {name} | {} | {} | 5 ms |",
                ms(percentile(sorted, 0.5)),
                ms(percentile(sorted, 0.99))
            )?;
        }
        Ok(())
    }
}
