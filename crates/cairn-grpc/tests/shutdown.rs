//! Graceful shutdown ends open subscriptions with UNAVAILABLE and the position to resume from.

use std::sync::Arc;

use cairn_grpc::auth::BearerToken;
use cairn_grpc::proto::ledger_service_client::LedgerServiceClient;
use cairn_grpc::proto::{AppendRequest, EventInput, StreamRef, SubscribeRequest};
use cairn_grpc::{RESUME_FROM_METADATA, ServerLimits, Services, serve};
use cairn_projections::Projections;
use cairn_service::{Ledger, ServerIdentity};
use cairn_store::MemoryStore;
use tokio::net::TcpListener;

const TOKEN: &str = "cairn_test_admin";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_subscriptions_with_the_resume_position() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let identity = Arc::new(ServerIdentity::from_secrets([1; 32], [2; 32], [3; 32]));
    let ledger = Arc::new(Ledger::new(MemoryStore::new(), identity));
    // Only the ledger is used here: the read models need not follow it.
    let services = Services::built_in(ledger, Arc::new(Projections::temporary().unwrap()), TOKEN)
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, services, ServerLimits::default(), async {
        let _ = stopped.await;
    }));

    let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client =
        LedgerServiceClient::with_interceptor(channel, BearerToken::new(TOKEN).unwrap());
    let events = (0..3u8)
        .map(|i| EventInput {
            event_id: vec![i; 16],
            event_type: "Noted".into(),
            payload: vec![i],
            ..Default::default()
        })
        .collect();
    // The server recorded its policy activation first, so the appended records follow it.
    let appended = client
        .append(AppendRequest {
            stream: Some(StreamRef {
                tenant: "acme".into(),
                aggregate_type: "notes".into(),
                aggregate_id: "f1".into(),
            }),
            expected: None,
            events,
            actor: "user:a".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let (first, last) = (appended.first_position, appended.last_position);
    let mut subscription = client
        .subscribe(SubscribeRequest {
            from_position: first + 1,
            include_personal: false,
        })
        .await
        .unwrap()
        .into_inner();
    for expected in first + 1..=last {
        let record = subscription
            .message()
            .await
            .unwrap()
            .unwrap()
            .record
            .unwrap();
        assert_eq!(record.position, expected);
    }

    stop.send(()).unwrap();
    let status = subscription
        .message()
        .await
        .expect_err("ends with a status");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status}");
    assert_eq!(
        status
            .metadata()
            .get(RESUME_FROM_METADATA)
            .unwrap()
            .to_str()
            .unwrap(),
        (last + 1).to_string()
    );
    // With the subscription ended, graceful shutdown completes without waiting on it.
    server.await.unwrap().unwrap();
}
