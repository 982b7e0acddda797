//! Erasure end to end on the real server: a data subject's feedback is erased on request (refused
//! while a legal hold covers them), reads show it erased from then on and after a restart, the
//! erasure log names the request, no file of the data directory holds the plaintext, and the
//! stopped server's files still verify (every proof and checkpoint). An export for analysis names
//! no one.

use anyhow::{Context, Result, bail, ensure};
use cairn_e2e::{Server, auth_channel, files_under, find_all, run_cairn};
use cairn_grpc::proto;
use cairn_grpc::proto::feedback_service_client::FeedbackServiceClient;
use cairn_grpc::proto::stewardship_service_client::StewardshipServiceClient;
use tonic::Code;

const TENANT: &str = "acme";
const SECRET: &str = "carol.kestrel+erasure-marker@example.com says the deploy queue is stuck";

async fn feedback_state(
    feedback: &mut FeedbackServiceClient<cairn_grpc::auth::AuthChannel>,
    at_least: u64,
) -> Result<proto::Feedback> {
    feedback
        .get_feedback(proto::GetFeedbackRequest {
            tenant: TENANT.into(),
            read: Some(proto::ReadOptions {
                at_least_position: Some(at_least),
                include_personal: true,
                ..Default::default()
            }),
            id: "f-erase".into(),
        })
        .await?
        .into_inner()
        .feedback
        .context("no feedback")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_is_erased_on_request_and_nothing_of_it_remains_readable() -> Result<()> {
    let mut server = Server::start_temp(&["--checkpoint-interval-ms", "50"])?;
    let token = server.token()?;
    let channel = auth_channel(&server.url(), &token).await?;
    let mut feedback = FeedbackServiceClient::new(channel.clone());
    let mut steward = StewardshipServiceClient::new(channel);
    let receipt = feedback
        .submit_feedback(proto::SubmitFeedbackRequest {
            meta: Some(proto::CommandMeta {
                tenant: TENANT.into(),
                actor: "service:portal".into(),
                ..Default::default()
            }),
            id: "f-erase".into(),
            text: SECRET.into(),
            submitter: "user:carol".into(),
            team: "platform".into(),
            source: proto::FeedbackSource::Survey as i32,
            visibility: proto::Visibility::Team as i32,
            ..Default::default()
        })
        .await?
        .into_inner();
    let before = feedback_state(&mut feedback, receipt.last_position).await?;
    ensure!(before.text == SECRET, "{before:?}");
    ensure!(before.personal_state == proto::PersonalState::Open as i32);

    // An export for analysis names no one and holds no personal data.
    let export = steward
        .export_events(proto::ExportEventsRequest {
            tenant: TENANT.into(),
            from_position: 1,
            limit: 100,
        })
        .await?
        .into_inner();
    let received = export
        .events
        .iter()
        .find(|event| event.event_type == "feedback.received")
        .context("the feedback in the export")?;
    ensure!(
        received.actor.starts_with("p_") && received.json.contains("f-erase"),
        "{received:?}"
    );
    let text = format!("{export:?}");
    ensure!(
        !text.contains("carol") && !text.contains("service:portal") && !text.contains("deploy"),
        "the export names someone or holds personal data: {text}"
    );

    // A legal hold stops the erasure, naming itself.
    steward
        .place_legal_hold(proto::PlaceLegalHoldRequest {
            tenant: TENANT.into(),
            hold_id: "case-9".into(),
            subject: "user:carol".into(),
            reason: "pending litigation".into(),
        })
        .await?;
    let erase = || proto::RequestErasureRequest {
        tenant: TENANT.into(),
        subject: "user:carol".into(),
        request_id: "dsr-2026-001".into(),
        reason: "the data subject asked".into(),
    };
    match steward.request_erasure(erase()).await {
        Err(status) if status.code() == Code::FailedPrecondition => {
            ensure!(status.message().contains("case-9"), "{status}");
        }
        other => bail!("an erasure under a legal hold: {other:?}"),
    }
    steward
        .release_legal_hold(proto::ReleaseLegalHoldRequest {
            tenant: TENANT.into(),
            hold_id: "case-9".into(),
            reason: "settled".into(),
        })
        .await?;
    let erased = steward.request_erasure(erase()).await?.into_inner();
    ensure!(
        erased.key_ids.len() == 1 && erased.records == 1,
        "{erased:?}"
    );
    let last = *erased.recorded.last().context("recorded")?;

    let after = feedback_state(&mut feedback, last).await?;
    ensure!(
        after.personal_state == proto::PersonalState::Erased as i32 && after.text.is_empty(),
        "after erasure: {after:?}"
    );
    let log = steward
        .list_erasures(proto::ListErasuresRequest {
            tenant: TENANT.into(),
            page: None,
        })
        .await?
        .into_inner();
    ensure!(log.entries.len() == 1, "{log:?}");
    ensure!(
        log.entries[0].cause
            == Some(proto::erasure_log_entry::Cause::RequestId(
                "dsr-2026-001".into()
            ))
            // The subject was sealed under its own key, erased with it: the log names the
            // request, no longer the person.
            && log.entries[0].subject.is_empty(),
        "{log:?}"
    );
    // Nothing has expired under the shipped retention rules.
    let preview = steward
        .preview_retention(proto::PreviewRetentionRequest {
            tenant: TENANT.into(),
        })
        .await?
        .into_inner();
    ensure!(
        preview.erase.is_empty() && !preview.rules.is_empty(),
        "{preview:?}"
    );

    // Stop: no file holds the plaintext, and every record, proof and checkpoint still verifies.
    drop((feedback, steward));
    let status = server.terminate()?;
    ensure!(status.success(), "SIGTERM: {status}\n{}", server.stderr());
    for file in files_under(server.data_dir())? {
        let bytes = std::fs::read(&file)?;
        ensure!(
            find_all(&bytes, SECRET.as_bytes()).is_empty()
                && find_all(&bytes, b"carol.kestrel").is_empty(),
            "{} holds the erased text",
            file.display()
        );
        // Nor the erased submitter's id: not in the item, the hold or the erasure record.
        ensure!(
            find_all(&bytes, b"user:carol").is_empty(),
            "{} holds the erased subject's id",
            file.display()
        );
    }
    let verify = run_cairn([
        "verify".as_ref(),
        "--data".as_ref(),
        server.data_dir().as_os_str(),
    ])?;
    ensure!(verify.status.success(), "verify after erasure:\n{verify}");

    // Erased for good: after a restart too.
    server.restart()?;
    let mut feedback = FeedbackServiceClient::new(auth_channel(&server.url(), &token).await?);
    let restarted = feedback_state(&mut feedback, last).await?;
    ensure!(
        restarted.personal_state == proto::PersonalState::Erased as i32,
        "after a restart: {restarted:?}"
    );
    Ok(())
}
