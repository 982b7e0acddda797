//! The gRPC API of the real server: limits and errors map to the standard codes, the standard
//! health and reflection services answer, and personal data is sealed at rest.

use anyhow::{Context, Result, ensure};
use cairn_e2e::{
    Server, event, expected, files_under, find_all, head_position, read_all, stream_ref,
};
use cairn_grpc::proto;
use cairn_grpc::proto::expected_version::Condition;
use tokio_stream::StreamExt;
use tonic::Code;

/// Checks a refused call: its code, and words its message must contain.
fn check_status<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: Code,
    words: &[&str],
) -> Result<tonic::Status> {
    let status = match result {
        Ok(answer) => anyhow::bail!("expected {code:?}, got an answer: {answer:?}"),
        Err(status) => status,
    };
    ensure!(
        status.code() == code,
        "expected {code:?}, got {:?}: {}",
        status.code(),
        status.message()
    );
    for word in words {
        ensure!(
            status.message().contains(word),
            "{code:?} message {:?} does not mention {word:?}",
            status.message()
        );
    }
    Ok(status)
}

fn one_event_append(
    aggregate_id: &str,
    id: u8,
    payload: &[u8],
    condition: Option<Condition>,
) -> proto::AppendRequest {
    proto::AppendRequest {
        stream: Some(stream_ref("acme", "notes", aggregate_id)),
        expected: condition.and_then(expected),
        events: vec![event([id; 16], "FeedbackReceived", payload.to_vec())],
        actor: "user:api-test".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_events_per_append_is_resource_exhausted() -> Result<()> {
    let server = Server::start_temp(&[])?;
    let mut client = server.client().await?;
    let start = head_position(&mut client).await?;
    let limits = client
        .get_log_info(proto::GetLogInfoRequest {})
        .await?
        .into_inner()
        .limits
        .context("log info without limits")?;
    let count = limits.append_events_max + 1;
    let events = (0..count)
        .map(|i| {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&i.to_be_bytes());
            event(id, "Tick", b"x".to_vec())
        })
        .collect();
    let result = client
        .append(proto::AppendRequest {
            stream: Some(stream_ref("acme", "notes", "many")),
            expected: None,
            events,
            actor: "user:api-test".into(),
        })
        .await;
    check_status(
        result,
        Code::ResourceExhausted,
        &[&limits.append_events_max.to_string()],
    )?;
    let head = head_position(&mut client).await?;
    ensure!(
        head == start,
        "a refused append stored {} records",
        head - start
    );

    // Exactly the limit is accepted.
    let events = (0..limits.append_events_max)
        .map(|i| {
            let mut id = [1u8; 16];
            id[..8].copy_from_slice(&i.to_be_bytes());
            event(id, "Tick", b"x".to_vec())
        })
        .collect();
    let answer = client
        .append(proto::AppendRequest {
            stream: Some(stream_ref("acme", "notes", "many")),
            expected: None,
            events,
            actor: "user:api-test".into(),
        })
        .await?
        .into_inner();
    ensure!(answer.last_position == start + limits.append_events_max);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_tenant_is_invalid_argument_naming_the_field() -> Result<()> {
    let server = Server::start_temp(&[])?;
    let mut client = server.client().await?;
    for tenant in ["Acme Corp", "a::b", ""] {
        let result = client
            .append(proto::AppendRequest {
                stream: Some(stream_ref(tenant, "notes", "f1")),
                expected: None,
                events: vec![event([1; 16], "FeedbackReceived", b"x".to_vec())],
                actor: "user:api-test".into(),
            })
            .await;
        let status = check_status(result, Code::InvalidArgument, &["tenant"])?;
        let field = status
            .metadata()
            .get("cairn-field")
            .context("INVALID_ARGUMENT without the cairn-field metadata")?
            .to_str()?;
        ensure!(field.starts_with("stream"), "cairn-field is {field:?}");
    }
    // Reads check the tenant too.
    let result = client
        .read_stream(proto::ReadStreamRequest {
            stream: Some(stream_ref("ACME", "notes", "f1")),
            from_version: 0,
            limit: 10,
            include_personal: false,
        })
        .await;
    check_status(result, Code::InvalidArgument, &["tenant"])?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_appends_to_feedback_loop_streams_are_refused() -> Result<()> {
    let server = Server::start_temp(&[])?;
    let mut client = server.client().await?;
    let start = head_position(&mut client).await?;
    for aggregate_type in [
        "feedback",
        "signal",
        "opportunity",
        "decision",
        "initiative",
    ] {
        let result = client
            .append(proto::AppendRequest {
                stream: Some(stream_ref("acme", aggregate_type, "x1")),
                expected: None,
                events: vec![event(
                    [9; 16],
                    "opportunity.voted",
                    b"not postcard".to_vec(),
                )],
                actor: "user:api-test".into(),
            })
            .await;
        let status = check_status(result, Code::InvalidArgument, &["feedback-loop"])?;
        let field = status
            .metadata()
            .get("cairn-field")
            .context("INVALID_ARGUMENT without the cairn-field metadata")?
            .to_str()?;
        ensure!(field == "stream.aggregate_type", "cairn-field is {field:?}");
    }
    let head = head_position(&mut client).await?;
    ensure!(head == start, "{} records were recorded", head - start);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_expected_version_is_failed_precondition() -> Result<()> {
    let server = Server::start_temp(&[])?;
    let mut client = server.client().await?;
    let start = head_position(&mut client).await?;
    client
        .append(one_event_append(
            "f1",
            1,
            b"one",
            Some(Condition::NoStream(true)),
        ))
        .await?;
    let result = client
        .append(one_event_append("f1", 2, b"two", Some(Condition::Exact(0))))
        .await;
    let status = check_status(result, Code::FailedPrecondition, &["version"])?;
    ensure!(
        status
            .metadata()
            .get("cairn-current-version")
            .and_then(|value| value.to_str().ok())
            == Some("1"),
        "the current version is not in the metadata: {:?}",
        status.metadata()
    );
    let result = client
        .append(one_event_append(
            "f1",
            3,
            b"three",
            Some(Condition::NoStream(true)),
        ))
        .await;
    check_status(result, Code::FailedPrecondition, &[])?;
    // The right version goes through.
    let answer = client
        .append(one_event_append(
            "f1",
            4,
            b"four",
            Some(Condition::Exact(1)),
        ))
        .await?
        .into_inner();
    ensure!(answer.last_version == 2 && answer.last_position == start + 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_id_with_other_content_is_already_exists() -> Result<()> {
    let server = Server::start_temp(&[])?;
    let mut client = server.client().await?;
    let first = client
        .append(one_event_append("f1", 7, b"original", None))
        .await?
        .into_inner();
    ensure!(!first.deduplicated);
    let retry = client
        .append(one_event_append("f1", 7, b"original", None))
        .await?
        .into_inner();
    ensure!(
        retry.deduplicated && retry.first_position == first.first_position,
        "a retry was not recognised: {retry:?}"
    );
    let result = client
        .append(one_event_append("f1", 7, b"changed", None))
        .await;
    let recorded_at = format!("position {}", first.first_position);
    check_status(result, Code::AlreadyExists, &[&recorded_at])?;
    let result = client
        .append(one_event_append("f2", 7, b"original", None))
        .await;
    check_status(result, Code::AlreadyExists, &[])?;
    let records = read_all(&mut client).await?;
    let notes = records
        .iter()
        .filter(|record| {
            record
                .stream
                .as_ref()
                .is_some_and(|s| s.aggregate_type == "notes")
        })
        .count();
    ensure!(notes == 1, "{notes} records stored");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_size_over_the_limit_is_resource_exhausted() -> Result<()> {
    let server = Server::start_temp(&[])?;
    let mut client = server.client().await?;
    let page_size_max = client
        .get_log_info(proto::GetLogInfoRequest {})
        .await?
        .into_inner()
        .limits
        .context("limits")?
        .page_size_max;
    let over = u32::try_from(page_size_max + 1)?;
    let result = client
        .read_all(proto::ReadAllRequest {
            from_position: 1,
            limit: over,
            include_personal: false,
        })
        .await;
    check_status(
        result,
        Code::ResourceExhausted,
        &[&page_size_max.to_string()],
    )?;
    let result = client
        .read_stream(proto::ReadStreamRequest {
            stream: Some(stream_ref("acme", "notes", "f1")),
            from_version: 0,
            limit: over,
            include_personal: false,
        })
        .await;
    check_status(result, Code::ResourceExhausted, &[])?;
    // The limit itself is fine.
    client
        .read_all(proto::ReadAllRequest {
            from_position: 1,
            limit: u32::try_from(page_size_max)?,
            include_personal: false,
        })
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inclusion_proof_beyond_the_head_is_out_of_range() -> Result<()> {
    let server = Server::start_temp(&[])?;
    let mut client = server.client().await?;
    // The ledger opens with the server's policy activation: the three records follow it.
    let start = head_position(&mut client).await?;
    for id in 1..=3 {
        client
            .append(one_event_append("f1", id, b"x", None))
            .await?;
    }
    let result = client
        .get_inclusion_proof(proto::GetInclusionProofRequest {
            position: 10,
            tree_size: 10,
        })
        .await;
    check_status(result, Code::OutOfRange, &[])?;
    let result = client
        .get_inclusion_proof(proto::GetInclusionProofRequest {
            position: 4,
            tree_size: 3,
        })
        .await;
    check_status(result, Code::OutOfRange, &[])?;
    let result = client
        .get_consistency_proof(proto::GetConsistencyProofRequest {
            old_size: 2,
            new_size: 10,
        })
        .await;
    check_status(result, Code::OutOfRange, &[])?;
    // Within the head, the proof verifies against the root the server reports.
    let proof = client
        .get_inclusion_proof(proto::GetInclusionProofRequest {
            position: start + 2,
            tree_size: start + 3,
        })
        .await?
        .into_inner();
    let records = read_all(&mut client).await?;
    let (_, tree) = cairn_e2e::tree_of(&records)?;
    ensure!(proof.root == tree.root_at(start + 3)?.0.to_vec());
    cairn_ledger::InclusionProof {
        leaf_index: start + 1,
        tree_size: start + 3,
        path: proof
            .path
            .iter()
            .map(|hash| cairn_ledger::Hash::from_slice(hash, "path"))
            .collect::<Result<_, _>>()?,
    }
    .verify(
        &tree.leaf(start + 1).context("leaf")?,
        &tree.root_at(start + 3)?,
    )?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_serving_and_reflection_lists_the_ledger() -> Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};

    let server = Server::start_temp(&[])?;
    let mut health = HealthClient::new(server.channel().await?);
    for service in ["", "cairn.v1.LedgerService"] {
        let answer = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .with_context(|| format!("health check of {service:?}"))?
            .into_inner();
        ensure!(
            answer.status == ServingStatus::Serving as i32,
            "health of {service:?} is {:?}",
            answer.status
        );
    }

    let mut reflection = ServerReflectionClient::new(server.channel().await?);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await?
        .into_inner();
    let answer: ServerReflectionResponse = answers
        .next()
        .await
        .context("reflection answered nothing")??;
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        anyhow::bail!("reflection answered {answer:?}");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    ensure!(
        names.contains(&"cairn.v1.LedgerService") && names.contains(&"grpc.health.v1.Health"),
        "reflection lists {names:?}"
    );

    // The file that defines the service is served too, so grpcurl can call it.
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(
            "cairn.v1.LedgerService".into(),
        )),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await?
        .into_inner();
    let answer = answers.next().await.context("no answer")??;
    let Some(MessageResponse::FileDescriptorResponse(files)) = answer.message_response else {
        anyhow::bail!("reflection answered {answer:?}");
    };
    ensure!(!files.file_descriptor_proto.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_data_is_readable_when_asked_and_never_at_rest_in_plaintext() -> Result<()> {
    let mut server = Server::start_temp(&["--checkpoint-interval-ms", "50"])?;
    let mut client = server.client().await?;
    let start = head_position(&mut client).await?;
    let secret = b"alice.liddell+e2e-marker@example.com reported the build is slow";
    let mut input = event(
        [9; 16],
        "FeedbackReceived",
        b"clear part of the feedback".to_vec(),
    );
    input.personal = secret.to_vec();
    input.data_subject = "user:alice".into();
    let mut public = event(
        [10; 16],
        "FeedbackReceived",
        b"no personal data here".to_vec(),
    );
    public.data_class = "internal".into();
    client
        .append(proto::AppendRequest {
            stream: Some(stream_ref("acme", "notes", "f-personal")),
            expected: None,
            events: vec![input, public],
            actor: "user:alice".into(),
        })
        .await?;

    let read = |include_personal| proto::ReadAllRequest {
        from_position: start + 1,
        limit: 10,
        include_personal,
    };
    let opened = client.read_all(read(true)).await?.into_inner().records;
    ensure!(opened.len() == 2);
    ensure!(opened[0].personal_state == proto::PersonalState::Open as i32);
    ensure!(opened[0].personal == secret, "personal part not opened");
    ensure!(opened[0].data_class == "personal");
    ensure!(opened[0].payload == b"clear part of the feedback");
    ensure!(opened[1].personal_state == proto::PersonalState::None as i32);
    ensure!(opened[1].data_class == "internal");
    ensure!(
        find_all(&opened[0].sealed_payload, secret).is_empty(),
        "the sealed payload holds the plaintext"
    );
    let withheld = client.read_all(read(false)).await?.into_inner().records;
    ensure!(withheld[0].personal_state == proto::PersonalState::Withheld as i32);
    ensure!(withheld[0].personal.is_empty());
    // A subscriber that asks gets it opened too.
    let mut subscription = client
        .subscribe(proto::SubscribeRequest {
            from_position: start + 1,
            include_personal: true,
        })
        .await?
        .into_inner();
    let first = subscription
        .next()
        .await
        .context("subscription ended")??
        .record
        .context("no record")?;
    ensure!(first.personal == secret);
    drop(subscription);
    drop(client);

    let status = server.terminate()?;
    ensure!(status.success(), "SIGTERM: {status}\n{}", server.stderr());
    let files = files_under(server.data_dir())?;
    ensure!(!files.is_empty(), "the data directory is empty");
    for file in &files {
        let bytes = std::fs::read(file)?;
        ensure!(
            find_all(&bytes, secret).is_empty() && find_all(&bytes, b"alice.liddell").is_empty(),
            "{} holds the personal data in plaintext",
            file.display()
        );
    }
    // And it is still readable after a restart.
    server.restart()?;
    let mut client = server.client().await?;
    let opened = client.read_all(read(true)).await?.into_inner().records;
    ensure!(
        opened[0].personal == secret,
        "personal part lost on restart"
    );
    Ok(())
}
