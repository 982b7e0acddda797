//! The embedded store passes the conformance suite; `reopen` closes the store and opens the same
//! directory again. It runs twice: with the default options, and with an indexer that indexes
//! every group at once (so reads mix sled and pending entries while the indexer removes them)
//! and tiny segments.

use std::sync::Arc;

use async_trait::async_trait;
use cairn_store::testsuite::Harness;
use cairn_store_embedded::{EmbeddedOptions, EmbeddedStore};
use tempfile::TempDir;

/// How a harness configures its store.
trait Configure: Send + Sync + 'static {
    fn options() -> EmbeddedOptions;
}

/// The default options.
struct Defaults;

impl Configure for Defaults {
    fn options() -> EmbeddedOptions {
        EmbeddedOptions::default()
    }
}

/// Tiny segments and an indexer that never lets more than a few records wait.
struct EagerIndexer;

impl Configure for EagerIndexer {
    fn options() -> EmbeddedOptions {
        EmbeddedOptions {
            segment_bytes_max: 64 << 10,
            index_lag_records_max: 4,
            ..EmbeddedOptions::default()
        }
    }
}

/// A store in a temporary directory.
struct EmbeddedHarness<C> {
    dir: TempDir,
    store: Arc<EmbeddedStore>,
    configure: std::marker::PhantomData<C>,
}

async fn open<C: Configure>(dir: &TempDir) -> Arc<EmbeddedStore> {
    let path = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || EmbeddedStore::open(&path, C::options()))
        .await
        .expect("open task")
        .expect("open store")
}

#[async_trait]
impl<C: Configure> Harness for EmbeddedHarness<C> {
    type Store = EmbeddedStore;

    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = open::<C>(&dir).await;
        EmbeddedHarness {
            dir,
            store,
            configure: std::marker::PhantomData,
        }
    }

    fn store(&self) -> Arc<Self::Store> {
        Arc::clone(&self.store)
    }

    async fn reopen(&mut self) -> Arc<Self::Store> {
        self.store.close().await;
        self.store = open::<C>(&self.dir).await;
        Arc::clone(&self.store)
    }
}

cairn_store::conformance_suite!(EmbeddedHarness<Defaults>);

mod eager_indexer {
    use super::{EagerIndexer, EmbeddedHarness};

    cairn_store::conformance_suite!(EmbeddedHarness<EagerIndexer>);
}
