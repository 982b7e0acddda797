//! The JetStream store passes the conformance suite, unchanged, against a real nats-server
//! started for each check on a free loopback port with a temporary store directory. `reopen`
//! closes the store and opens the same stream again: a new node that rebuilds everything from
//! the stream.

use std::sync::Arc;

use async_trait::async_trait;
use cairn_store::testsuite::Harness;
use cairn_store_jetstream::testing::NatsServer;
use cairn_store_jetstream::{JetStreamOptions, JetStreamStore};

struct JetStreamHarness {
    // Dropped last: the store's connection closes before the server stops.
    store: Arc<JetStreamStore>,
    options: JetStreamOptions,
    _server: NatsServer,
}

#[async_trait]
impl Harness for JetStreamHarness {
    type Store = JetStreamStore;

    async fn new() -> Self {
        let server = tokio::task::spawn_blocking(NatsServer::start)
            .await
            .expect("server start");
        let options = JetStreamOptions {
            urls: server.url(),
            ..JetStreamOptions::default()
        };
        let store = JetStreamStore::open(options.clone())
            .await
            .expect("open the store");
        JetStreamHarness {
            store,
            options,
            _server: server,
        }
    }

    fn store(&self) -> Arc<Self::Store> {
        Arc::clone(&self.store)
    }

    async fn reopen(&mut self) -> Arc<Self::Store> {
        self.store.close().await;
        self.store = JetStreamStore::open(self.options.clone())
            .await
            .expect("reopen the store");
        Arc::clone(&self.store)
    }
}

cairn_store::conformance_suite!(JetStreamHarness);
