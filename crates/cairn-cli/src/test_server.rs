//! An in-process server on an in-memory store, on a loopback port, for the client tests.

use std::sync::Arc;

use cairn_grpc::{ServerLimits, Services};
use cairn_ledger::SignedCheckpoint;
use cairn_projections::Projections;
use cairn_service::{Checkpointer, Ledger, ServerIdentity};
use cairn_store::MemoryStore;
use tokio::sync::{oneshot, watch};

use crate::client::{Client, ServerArgs};

/// The administrator's token the test server accepts.
pub const TEST_TOKEN: &str = "cairn_test_admin";

/// A running test server; dropping it stops the server.
pub struct TestServer {
    pub url: String,
    pub identity: Arc<ServerIdentity>,
    pub store: Arc<MemoryStore>,
    _shutdown: oneshot::Sender<()>,
    /// Dropping it stops the projection follower.
    _stop_following: watch::Sender<bool>,
}

impl TestServer {
    /// Serves a fresh in-memory ledger with a fixed identity.
    pub async fn start(limits: ServerLimits) -> TestServer {
        let store = MemoryStore::new();
        let identity = Arc::new(ServerIdentity::from_secrets([1; 32], [2; 32], [3; 32]));
        let ledger = Arc::new(Ledger::new(Arc::clone(&store), Arc::clone(&identity)));
        let projections = Arc::new(Projections::temporary().unwrap());
        let (stop_following, following_stopped) = watch::channel(false);
        tokio::spawn(Arc::clone(&projections).follow(Arc::clone(&store), following_stopped));
        let services = Services::built_in(ledger, projections, TEST_TOKEN)
            .await
            .unwrap();
        let listener = crate::serve::bind_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(cairn_grpc::serve(listener, services, limits, async {
            let _ = stopped.await;
        }));
        TestServer {
            url,
            identity,
            store,
            _shutdown: shutdown,
            _stop_following: stop_following,
        }
    }

    /// The `--server` arguments for this server.
    pub fn args(&self) -> ServerArgs {
        ServerArgs {
            server: self.url.clone(),
            token: Some(TEST_TOKEN.into()),
            token_file: None,
            tls: Default::default(),
        }
    }

    /// A connected client.
    pub async fn client(&self) -> Client {
        Client::connect(&self.args()).await.unwrap()
    }

    /// Signs a checkpoint of the current head, as the sealer would.
    pub async fn checkpoint(&self) -> SignedCheckpoint {
        Checkpointer::new(Arc::clone(&self.store), Arc::clone(&self.identity))
            .checkpoint_now()
            .await
            .unwrap()
            .expect("there are new records to sign")
    }

    /// Appends `count` events with payloads `prefix-0`, `prefix-1`, ... to one stream.
    pub async fn append(&self, stream: &str, prefix: &str, count: usize) {
        let mut client = self.client().await;
        let stream = crate::input::parse_stream(stream).unwrap();
        let events = (0..count)
            .map(|index| cairn_grpc::proto::EventInput {
                event_type: "Noted".into(),
                event_schema_version: 1,
                payload: format!("{prefix}-{index}").into_bytes(),
                ..Default::default()
            })
            .collect();
        client
            .append(cairn_grpc::proto::AppendRequest {
                stream: Some(crate::input::stream_to_proto(&stream)),
                expected: None,
                events,
                actor: "user:test".into(),
            })
            .await
            .unwrap();
    }
}
