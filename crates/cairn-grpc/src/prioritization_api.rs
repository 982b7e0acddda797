//! `cairn.v1.PrioritizationService`: opportunities, their triage, votes, ratings and scores, the
//! ranking and why it stands as it does, and aging out.

use std::collections::BTreeMap;
use std::sync::Arc;

use cairn_domain::opportunity::{OpportunityCommand, OpportunityEvent, OpportunityStatus};
use cairn_domain::scoring::ScoreSnapshot;
use cairn_domain::{EntityKind, EntityRef, Event, Team, Time};
use cairn_ledger::Position;
use cairn_projections::{
    AtPosition, OpportunityView, PAGE_SIZE_MAX, PageRequest, ProjectionError, Projections, Ranked,
};
use cairn_service::feedback_loop::FeedbackLoop;
use cairn_service::history;
use cairn_service::{ReadOptions, ServiceError};
use cairn_store::{EventStore, KeyStore};
use futures::{StreamExt, TryStreamExt};
use tonic::{Request, Response, Status};

use crate::api_support::{
    Backend, LEDGER_READS_CONCURRENT_MAX, Pager, page_info, read_options, service_status, stamp,
    time_range, within,
};
use crate::domain_convert::{
    EXPLAIN_EVIDENCE_MAX, EntityCommand, RANKING_LIMIT_DEFAULT, RANKING_LIMIT_MAX, age_out,
    aged_out_result_to_proto, aging_rule_to_proto, bounded, create_opportunity,
    entity_id_from_proto, evidence_to_proto, history_provenance_to_proto, optional_team_from_proto,
    provenance_to_proto, rate, rescore, score_snapshot_to_proto, scoring_model_to_proto,
    ship_opportunity, start_review, start_work, tenant_from_proto, triage, validate_outcome, vote,
    wake_opportunity,
};
use crate::proto;
use crate::proto::prioritization_service_server::PrioritizationService;
use crate::view_convert::{aged_out_entry_to_proto, fold, opportunity_to_proto, ranked_to_proto};

/// The prioritization service.
pub struct PrioritizationApi<S> {
    backend: Arc<Backend<S>>,
}

impl<S: EventStore + KeyStore> PrioritizationApi<S> {
    pub(crate) fn new(backend: Arc<Backend<S>>) -> PrioritizationApi<S> {
        PrioritizationApi { backend }
    }

    async fn run(
        &self,
        command: Result<EntityCommand<OpportunityCommand>, Status>,
    ) -> Result<Response<proto::CommandReceipt>, Status> {
        let command = command?;
        let feedback_loop: &FeedbackLoop<S> = self.backend.feedback_loop();
        self.backend
            .command(feedback_loop.opportunity(&command.meta, &command.id, command.command))
            .await
    }

    /// The score snapshot recorded at `position`.
    async fn snapshot_at(&self, position: Position) -> Result<ScoreSnapshot, Status> {
        history::snapshot_at(&**self.backend.ledger().store(), position)
            .await
            .map(|(_, snapshot)| snapshot)
            .map_err(service_status)
    }

    /// One line of a ranking, with the model of the score it ranks by.
    async fn ranked_line(
        &self,
        ranked: &Ranked,
        view: &OpportunityView,
    ) -> Result<proto::RankedOpportunity, Status> {
        let snapshot = self.snapshot_at(ranked.score_position).await?;
        Ok(ranked_to_proto(ranked.rank, view, Some(&snapshot)))
    }
}

/// The whole ranking as of `at`, best first, read in pages of the read model's largest.
fn whole_ranking(
    p: &Projections,
    tenant: &str,
    team: Option<&Team>,
    at: Position,
) -> Result<Vec<Ranked>, ProjectionError> {
    let mut ranking = Vec::new();
    loop {
        let page = p
            .ranking(tenant, team, Some(at), ranking.len(), PAGE_SIZE_MAX)?
            .value;
        let last = page.len() < PAGE_SIZE_MAX;
        ranking.extend(page);
        if last {
            return Ok(ranking);
        }
    }
}

/// The ranked lines with their views (the owner is not in the ranking's index).
fn with_views(
    p: &Projections,
    tenant: &str,
    lines: Vec<Ranked>,
    at: Position,
) -> Result<Vec<(Ranked, OpportunityView)>, ProjectionError> {
    let mut viewed = Vec::with_capacity(lines.len());
    for line in lines {
        if let Some(view) = p.opportunity(tenant, line.id.as_str(), Some(at))?.value {
            viewed.push((line, view));
        }
    }
    Ok(viewed)
}

/// An aged-out opportunity's status just before it aged out, and now.
fn aged_statuses(
    p: &Projections,
    tenant: &str,
    id: &str,
    aged_at: Position,
    at: Position,
) -> Result<(Option<OpportunityStatus>, Option<OpportunityStatus>), ProjectionError> {
    let before = p
        .opportunity(tenant, id, Some(Position(aged_at.0.saturating_sub(1))))?
        .value
        .map(|view| view.status);
    let now = p
        .opportunity(tenant, id, Some(at))?
        .value
        .map(|view| view.status);
    Ok((before, now))
}

#[tonic::async_trait]
impl<S: EventStore + KeyStore> PrioritizationService for PrioritizationApi<S> {
    async fn create_opportunity(
        &self,
        mut request: Request<proto::CreateOpportunityRequest>,
    ) -> Result<Response<proto::CommandReceipt>, Status> {
        self.backend
            .access()
            .authorize_command(&mut request)
            .await?;
        self.run(create_opportunity(request.into_inner())).await
    }

    async fn start_review(
        &self,
        mut request: Request<proto::StartReviewRequest>,
    ) -> Result<Response<proto::CommandReceipt>, Status> {
        self.backend
            .access()
            .authorize_command(&mut request)
            .await?;
        self.run(start_review(request.into_inner())).await
    }

    async fn triage(
        &self,
        mut request: Request<proto::TriageRequest>,
    ) -> Result<Response<proto::CommandReceipt>, Status> {
        self.backend
            .access()
            .authorize_command(&mut request)
            .await?;
        self.run(triage(request.into_inner())).await
    }

    async fn wake(
        &self,
        mut request: Request<proto::WakeOpportunityRequest>,
    ) -> Result<Response<proto::CommandReceipt>, Status> {
        self.backend
            .access()
            .authorize_command(&mut request)
            .await?;
        self.run(wake_opportunity(request.into_inner())).await
    }

    async fn start_work(
        &self,
        mut request: Request<proto::StartWorkRequest>,
    ) -> Result<Response<proto::CommandReceipt>, Status> {
        self.backend
            .access()
            .authorize_command(&mut request)
            .await?;
        self.run(start_work(request.into_inner())).await
    }

    async fn ship(
        &self,
        mut request: Request<proto::ShipOpportunityRequest>,
    ) -> Result<Response<proto::CommandReceipt>, Status> {
        self.backend
            .access()
            .authorize_command(&mut request)
            .await?;
        self.run(ship_opportunity(request.into_inner())).await
    }

    async fn validate_outcome(
        &self,
        mut request: Request<proto::ValidateOutcomeRequest>,
    ) -> Result<Response<proto::CommandReceipt>, Status> {
        self.backend
            .access()
            .authorize_command(&mut request)
            .await?;
        self.run(validate_outcome(request.into_inner())).await
    }

    async fn vote(
        &self,
        mut request: Request<proto::VoteRequest>,
    ) -> Result<Response<proto::CommandReceipt>, Status> {
        self.backend
            .access()
            .authorize_command(&mut request)
            .await?;
        self.run(vote(request.into_inner())).await
    }

    async fn rate(
        &self,
        mut request: Request<proto::RateRequest>,
    ) -> Result<Response<proto::CommandReceipt>, Status> {
        self.backend
            .access()
            .authorize_command(&mut request)
            .await?;
        self.run(rate(request.into_inner())).await
    }

    async fn rescore(
        &self,
        mut request: Request<proto::RescoreRequest>,
    ) -> Result<Response<proto::CommandReceipt>, Status> {
        self.backend
            .access()
            .authorize_command(&mut request)
            .await?;
        self.run(rescore(request.into_inner())).await
    }

    async fn age_out(
        &self,
        mut request: Request<proto::AgeOutRequest>,
    ) -> Result<Response<proto::AgeOutResponse>, Status> {
        self.backend
            .access()
            .authorize_command(&mut request)
            .await?;
        let (request, wait_until) = self.backend.read_request(request);
        let sweep = age_out(request)?;
        self.backend
            .within_deadline(async move {
                let feedback_loop = self.backend.feedback_loop();
                // The candidates: open opportunities in a status some aging rule applies to, a
                // page at a time (of one team when asked). The token pins the first page's position, so opportunities that age out
                // (and leave the list) do not shift the later pages.
                let mut statuses: Vec<OpportunityStatus> = Vec::new();
                for rule in &feedback_loop.scoring().aging_rules {
                    for status in &rule.statuses {
                        if !statuses.contains(status) {
                            statuses.push(*status);
                        }
                    }
                }
                if statuses.is_empty() {
                    return Ok(Response::new(proto::AgeOutResponse {
                        aged_out: Vec::new(),
                        examined: 0,
                        page: page_info(None),
                    }));
                }
                // The first page waits for the head, so a sweep right after a write sees it (a
                // later page's token pins the first page's position).
                let head = feedback_loop
                    .ledger()
                    .store()
                    .head()
                    .await
                    .map_err(|e| service_status(e.into()))?
                    .position;
                let options = ReadOptions {
                    as_of: None,
                    at_least: sweep.page.token.is_none().then_some(head),
                    deadline: wait_until,
                    include_personal: false,
                };
                let tenant = sweep.meta.tenant.as_str().to_owned();
                let (team, page) = (
                    sweep.team,
                    PageRequest {
                        size: sweep.page.size,
                        token: sweep.page.token,
                    },
                );
                let candidates = self
                    .backend
                    .query(&options, move |p, as_of| {
                        p.list_opportunities(&tenant, &statuses, team.as_ref(), as_of, &page)
                    })
                    .await?
                    .value;
                let ids: Vec<_> = candidates.items.into_iter().map(|view| view.id).collect();
                let aged = feedback_loop
                    .sweep_aging(&sweep.meta, &ids)
                    .await
                    .map_err(service_status)?;
                Ok(Response::new(proto::AgeOutResponse {
                    aged_out: aged
                        .iter()
                        .map(|(receipt, rule)| aged_out_result_to_proto(receipt, rule))
                        .collect(),
                    examined: ids.len() as u32,
                    page: page_info(candidates.next_page_token),
                }))
            })
            .await
    }

    async fn get_opportunity(
        &self,
        mut request: Request<proto::GetOpportunityRequest>,
    ) -> Result<Response<proto::GetOpportunityResponse>, Status> {
        self.backend.access().authorize_read(&mut request).await?;
        let (request, wait_until) = self.backend.read_request(request);
        self.backend
            .within_deadline(async move {
                let tenant = tenant_from_proto("tenant", request.tenant)?;
                let options = read_options(request.read, wait_until)?;
                let id = entity_id_from_proto("id", request.id)?;
                let (t, i) = (tenant.as_str().to_owned(), id.as_str().to_owned());
                let answer = self
                    .backend
                    .query(&options, move |p, as_of| {
                        let at = p.resolve(as_of)?;
                        let Some(view) = p.opportunity(&t, &i, Some(at))?.value else {
                            return Ok(AtPosition {
                                value: None,
                                position: at,
                            });
                        };
                        let rank = p.rank_of(&t, &i, Some(at))?.value;
                        let aged = match &view.aged_out {
                            Some(aged) => Some(aged_statuses(p, &t, &i, aged.position, at)?),
                            None => None,
                        };
                        Ok(AtPosition {
                            value: Some((view, rank, aged)),
                            position: at,
                        })
                    })
                    .await?;
                let (view, rank, aged) = answer.value.ok_or_else(|| {
                    service_status(ServiceError::NotFound(format!("no opportunity {id}")))
                })?;
                let at = answer.stamp.position;
                let aged_out = match (&view.aged_out, aged) {
                    (Some(entry), Some((before, now))) => {
                        let record = self.backend.record_at(entry.position).await?;
                        Some(aged_out_entry_to_proto(
                            entry,
                            before,
                            now,
                            Some(provenance_to_proto(&record)),
                        ))
                    }
                    _ => None,
                };
                let entity = EntityRef::new(EntityKind::Opportunity, id);
                let entries = self.backend.history_at(&tenant, &entity, at).await?;
                Ok(Response::new(proto::GetOpportunityResponse {
                    opportunity: Some(opportunity_to_proto(&view, rank, &entries, aged_out)),
                    stamp: stamp(&answer.stamp),
                }))
            })
            .await
    }

    async fn get_ranking(
        &self,
        mut request: Request<proto::GetRankingRequest>,
    ) -> Result<Response<proto::GetRankingResponse>, Status> {
        self.backend.access().authorize_read(&mut request).await?;
        let (request, wait_until) = self.backend.read_request(request);
        self.backend
            .within_deadline(async move {
                let tenant = tenant_from_proto("tenant", request.tenant)?;
                let options = read_options(request.read, wait_until)?;
                let team = optional_team_from_proto("team", request.team)?;
                let limit = bounded(
                    "limit",
                    request.limit,
                    RANKING_LIMIT_DEFAULT,
                    RANKING_LIMIT_MAX,
                )?;
                let t = tenant.as_str().to_owned();
                let answer = self
                    .backend
                    .query(&options, move |p, as_of| {
                        let at = p.resolve(as_of)?;
                        let mut ranking = whole_ranking(p, &t, team.as_ref(), at)?;
                        let ranked_count = ranking.len();
                        ranking.truncate(limit);
                        Ok(AtPosition {
                            value: (with_views(p, &t, ranking, at)?, ranked_count),
                            position: at,
                        })
                    })
                    .await?;
                let (lines, ranked_count) = answer.value;
                let entries = futures::stream::iter(lines)
                    .map(|(ranked, view)| async move { self.ranked_line(&ranked, &view).await })
                    .buffered(LEDGER_READS_CONCURRENT_MAX)
                    .try_collect()
                    .await?;
                Ok(Response::new(proto::GetRankingResponse {
                    entries,
                    ranked_count: ranked_count as u32,
                    stamp: stamp(&answer.stamp),
                }))
            })
            .await
    }

    async fn explain_rank(
        &self,
        mut request: Request<proto::ExplainRankRequest>,
    ) -> Result<Response<proto::ExplainRankResponse>, Status> {
        self.backend.access().authorize_read(&mut request).await?;
        let (request, wait_until) = self.backend.read_request(request);
        self.backend
            .within_deadline(async move {
                let tenant = tenant_from_proto("tenant", request.tenant)?;
                let options = read_options(request.read, wait_until)?;
                let id = entity_id_from_proto("id", request.id)?;
                let team = optional_team_from_proto("team", request.team)?;
                let explanation = self
                    .backend
                    .reads()
                    .explain_rank(&tenant, &id, &options)
                    .await
                    .map_err(service_status)?;
                let at = explanation.stamp.position;
                let explained = explanation.value;
                let entity = EntityRef::new(EntityKind::Opportunity, id.clone());
                // The same position again: the neighbours, the count, and the feedback behind
                // the score (the explanation ranks within the tenant; a team ranks apart).
                let (t, i) = (tenant.as_str().to_owned(), id.clone());
                let feedback_ids: Vec<_> = explained
                    .evidence
                    .iter()
                    .filter(|edge| edge.edge.from.kind == EntityKind::Feedback)
                    .map(|edge| edge.edge.from.id.clone())
                    .collect();
                let pinned = ReadOptions {
                    as_of: Some(at),
                    at_least: None,
                    ..options
                };
                let around = self
                    .backend
                    .query(&pinned, move |p, as_of| {
                        let at = p.resolve(as_of)?;
                        let ranking = whole_ranking(p, &t, team.as_ref(), at)?;
                        let ranked_count = ranking.len();
                        let index = ranking.iter().position(|line| line.id == i);
                        let neighbour = |offset: Option<usize>| -> Result<_, ProjectionError> {
                            let Some(line) = offset.and_then(|offset| ranking.get(offset)) else {
                                return Ok(None);
                            };
                            Ok(with_views(p, &t, vec![line.clone()], at)?.pop())
                        };
                        let above = neighbour(index.and_then(|index| index.checked_sub(1)))?;
                        let below = neighbour(index.map(|index| index + 1))?;
                        let rank = index.map(|index| ranking[index].rank);
                        let mut feedback = BTreeMap::new();
                        for id in feedback_ids {
                            if let Some(view) = p.feedback(&t, id.as_str(), Some(at))?.value {
                                feedback.insert(id, view);
                            }
                        }
                        Ok(AtPosition {
                            value: (rank, ranked_count, above, below, feedback),
                            position: at,
                        })
                    })
                    .await?;
                let (rank, ranked_count, above, below, feedback_views) = around.value;
                let snapshot = explained.snapshot.as_ref();
                let entry = ranked_to_proto(
                    rank.unwrap_or(0),
                    &explained.opportunity,
                    snapshot.map(|(_, snapshot)| snapshot),
                );
                let above = match above {
                    Some((line, view)) => Some(self.ranked_line(&line, &view).await?),
                    None => None,
                };
                let below = match below {
                    Some((line, view)) => Some(self.ranked_line(&line, &view).await?),
                    None => None,
                };
                // The evidence as the opportunity's own records hold it (with when it was
                // attached and, for a signal, what it observed), newest first.
                let entries = self.backend.history_at(&tenant, &entity, at).await?;
                let state: cairn_domain::opportunity::Opportunity = fold(&entries);
                // The opportunity's record that attached each piece: its own attachment, or the
                // absorption of a duplicate's evidence.
                let mut attached_by: BTreeMap<EntityRef, proto::Provenance> = BTreeMap::new();
                for entry in &entries {
                    let pieces = match &entry.event {
                        Event::Opportunity(OpportunityEvent::EvidenceAttached(piece)) => {
                            std::slice::from_ref(piece)
                        }
                        Event::Opportunity(OpportunityEvent::DuplicateAbsorbed {
                            evidence,
                            ..
                        }) => evidence.as_slice(),
                        _ => continue,
                    };
                    for piece in pieces {
                        attached_by
                            .entry(piece.reference.clone())
                            .or_insert_with(|| history_provenance_to_proto(&entity, entry));
                    }
                }
                let include_personal = options.include_personal;
                let (backend, feedback_views) = (&self.backend, &feedback_views);
                let newest: Vec<_> = state
                    .evidence
                    .iter()
                    .rev()
                    .take(EXPLAIN_EVIDENCE_MAX)
                    .cloned()
                    .collect();
                let evidence = futures::stream::iter(newest)
                    .map(|piece| async move {
                        let feedback = match feedback_views.get(&piece.reference.id) {
                            // Personal data opens as asked: there is no authentication yet (issue 4).
                            Some(view) if piece.reference.kind == EntityKind::Feedback => {
                                Some(backend.feedback_message(view, include_personal).await?)
                            }
                            _ => None,
                        };
                        Ok::<_, Status>((piece, feedback))
                    })
                    .buffered(LEDGER_READS_CONCURRENT_MAX)
                    .try_collect::<Vec<_>>()
                    .await?
                    .into_iter()
                    .map(|(piece, feedback)| proto::EvidenceDetail {
                        evidence: Some(evidence_to_proto(&piece)),
                        feedback,
                        attached: attached_by.get(&piece.reference).cloned(),
                    })
                    .collect();
                Ok(Response::new(proto::ExplainRankResponse {
                    entry: Some(entry),
                    ranked_count: ranked_count as u32,
                    above,
                    below,
                    score: snapshot.map(|(_, snapshot)| score_snapshot_to_proto(snapshot)),
                    scored: snapshot
                        .map(|(recorded, _)| history_provenance_to_proto(&entity, recorded)),
                    evidence,
                    evidence_count: state.evidence.len() as u32,
                    stamp: stamp(&explanation.stamp),
                }))
            })
            .await
    }

    async fn score_history(
        &self,
        mut request: Request<proto::ScoreHistoryRequest>,
    ) -> Result<Response<proto::ScoreHistoryResponse>, Status> {
        self.backend.access().authorize_read(&mut request).await?;
        let (request, wait_until) = self.backend.read_request(request);
        self.backend
            .within_deadline(async move {
                let tenant = tenant_from_proto("tenant", request.tenant)?;
                let mut options = read_options(request.read, wait_until)?;
                let pager = Pager::new(request.page)?;
                pager.pin(&mut options);
                let id = entity_id_from_proto("id", request.id)?;
                let computed = time_range(request.computed);
                let (t, i) = (tenant.as_str().to_owned(), id.as_str().to_owned());
                let answer = self
                    .backend
                    .query(&options, move |p, as_of| {
                        let at = p.resolve(as_of)?;
                        if p.opportunity(&t, &i, Some(at))?.value.is_none() {
                            return Ok(AtPosition {
                                value: None,
                                position: at,
                            });
                        }
                        let scores = p.score_history(&t, &i, Some(at))?.value;
                        Ok(AtPosition {
                            value: Some(scores),
                            position: at,
                        })
                    })
                    .await?;
                let scores = answer.value.ok_or_else(|| {
                    service_status(ServiceError::NotFound(format!("no opportunity {id}")))
                })?;
                let at = answer.stamp.position;
                // Newest first.
                let positions: Vec<Position> = scores
                    .into_iter()
                    .rev()
                    .map(|(position, _)| position)
                    .collect();
                let store = self.backend.ledger().store();
                let read = |positions: Vec<Position>| async move {
                    futures::stream::iter(positions)
                        .map(|position| async move {
                            history::snapshot_at(&**store, position)
                                .await
                                .map_err(service_status)
                        })
                        .buffered(LEDGER_READS_CONCURRENT_MAX)
                        .try_collect::<Vec<_>>()
                        .await
                };
                // Without a time range, only this page's snapshots are read.
                let (snapshots, page) = if computed == (None, None) {
                    let (positions, page) = pager.page(positions, at);
                    (read(positions).await?, page)
                } else {
                    let snapshots = read(positions)
                        .await?
                        .into_iter()
                        .filter(|(_, snapshot)| within(snapshot.computed_at, computed))
                        .collect();
                    pager.page(snapshots, at)
                };
                let entity = EntityRef::new(EntityKind::Opportunity, id);
                Ok(Response::new(proto::ScoreHistoryResponse {
                    entries: snapshots
                        .iter()
                        .map(|(recorded, snapshot)| proto::ScoreHistoryEntry {
                            score: Some(score_snapshot_to_proto(snapshot)),
                            recorded: Some(history_provenance_to_proto(&entity, recorded)),
                        })
                        .collect(),
                    page,
                    stamp: stamp(&answer.stamp),
                }))
            })
            .await
    }

    async fn list_aged_out(
        &self,
        mut request: Request<proto::ListAgedOutRequest>,
    ) -> Result<Response<proto::ListAgedOutResponse>, Status> {
        self.backend.access().authorize_read(&mut request).await?;
        let (request, wait_until) = self.backend.read_request(request);
        self.backend
            .within_deadline(async move {
                let tenant = tenant_from_proto("tenant", request.tenant)?;
                let mut options = read_options(request.read, wait_until)?;
                let pager = Pager::new(request.page)?;
                pager.pin(&mut options);
                let (from, to) = time_range(request.aged_out);
                let rule = request.rule;
                let team = optional_team_from_proto("team", request.team)?;
                let t = tenant.as_str().to_owned();
                let answer = self
                    .backend
                    .query(&options, move |p, as_of| {
                        let at = p.resolve(as_of)?;
                        let aged = p
                            .aged_out(
                                &t,
                                from.unwrap_or(Time(i64::MIN)),
                                to.unwrap_or(Time(i64::MAX)),
                                Some(at),
                            )?
                            .value;
                        let mut entries = Vec::new();
                        // Most recently aged out first.
                        for view in aged.into_iter().rev() {
                            if (!rule.is_empty() && view.rule != rule)
                                || team.as_ref().is_some_and(|team| &view.team != team)
                            {
                                continue;
                            }
                            let statuses =
                                aged_statuses(p, &t, view.opportunity.as_str(), view.position, at)?;
                            entries.push((view, statuses));
                        }
                        Ok(AtPosition {
                            value: entries,
                            position: at,
                        })
                    })
                    .await?;
                let (entries, page) = pager.page(answer.value, answer.stamp.position);
                let backend = &self.backend;
                let entries = futures::stream::iter(entries)
                    .map(|(view, (before, now))| async move {
                        let record = backend.record_at(view.position).await?;
                        Ok::<_, Status>(aged_out_entry_to_proto(
                            &view,
                            before,
                            now,
                            Some(provenance_to_proto(&record)),
                        ))
                    })
                    .buffered(LEDGER_READS_CONCURRENT_MAX)
                    .try_collect()
                    .await?;
                Ok(Response::new(proto::ListAgedOutResponse {
                    entries,
                    page,
                    stamp: stamp(&answer.stamp),
                }))
            })
            .await
    }

    async fn get_scoring_model(
        &self,
        mut request: Request<proto::GetScoringModelRequest>,
    ) -> Result<Response<proto::GetScoringModelResponse>, Status> {
        self.backend.access().authorize_read(&mut request).await?;
        let (request, wait_until) = self.backend.read_request(request);
        self.backend
            .within_deadline(async move {
                tenant_from_proto("tenant", request.tenant)?;
                // Models are policy files, not records: the answer is the policy loaded now, so
                // as_of_position is not applied; the stamp still says how far the reads are.
                let options = ReadOptions {
                    as_of: None,
                    ..read_options(request.read, wait_until)?
                };
                let policy = self.backend.feedback_loop().scoring();
                let name = match request.name.is_empty() {
                    true => policy.active.clone(),
                    false => request.name,
                };
                let model = policy.models.get(&name).ok_or_else(|| {
                    service_status(ServiceError::NotFound(format!("no scoring model {name}")))
                })?;
                let answer = self
                    .backend
                    .query(&options, |p, as_of| {
                        Ok(AtPosition {
                            value: (),
                            position: p.resolve(as_of)?,
                        })
                    })
                    .await?;
                Ok(Response::new(proto::GetScoringModelResponse {
                    model: Some(scoring_model_to_proto(model)),
                    active: name == policy.active,
                    model_names: policy.models.keys().cloned().collect(),
                    aging_rules: policy.aging_rules.iter().map(aging_rule_to_proto).collect(),
                    stamp: stamp(&answer.stamp),
                }))
            })
            .await
    }
}
