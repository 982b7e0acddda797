//! The gRPC server: the ledger and feedback-loop services, standard health and reflection,
//! limits, graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cairn_service::governance::{BundleSource, Governance};
use cairn_service::stewardship::Stewardship;
use cairn_service::tokens::{BOOTSTRAP_ADMIN, Caller, TenantScope, Tokens};
use cairn_service::{FeedbackLoop, Ledger, Reads, ScoringPolicy};
use cairn_store::{EventStore, KeyStore, limits as store_limits};
use futures::StreamExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::api_support::Backend;
use crate::auth::{AuthLayer, Authenticator};
use crate::decision_api::DecisionApi;
use crate::feedback_api::FeedbackApi;
use crate::initiative_api::InitiativeApi;
use crate::ledger_api::LedgerApi;
use crate::lineage_api::LineageApi;
use crate::policy_api::PolicyApi;
use crate::prioritization_api::PrioritizationApi;
use crate::proto;
use crate::proto::decision_service_server::DecisionServiceServer;
use crate::proto::feedback_service_server::FeedbackServiceServer;
use crate::proto::initiative_service_server::InitiativeServiceServer;
use crate::proto::ledger_service_server::LedgerServiceServer;
use crate::proto::lineage_service_server::LineageServiceServer;
use crate::proto::policy_service_server::PolicyServiceServer;
use crate::proto::prioritization_service_server::PrioritizationServiceServer;
use crate::proto::stewardship_service_server::StewardshipServiceServer;
use crate::stewardship_api::StewardshipApi;

/// The limits the server enforces; each is refused with a clear status when exceeded.
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// Largest request or response message, in bytes (RESOURCE_EXHAUSTED beyond).
    pub message_bytes_max: usize,
    /// Largest page a read may ask for (RESOURCE_EXHAUSTED beyond).
    pub page_size_max: usize,
    /// The page size of a read that does not say.
    pub page_size_default: usize,
    /// HTTP/2 streams one connection may have open at once (the client is told in SETTINGS).
    pub concurrent_streams_max: u32,
    /// Subscriptions the server serves at once (RESOURCE_EXHAUSTED beyond).
    pub subscriptions_max: usize,
    /// Records buffered per subscription before the server waits for the client.
    pub subscription_buffer_records: usize,
    /// Longest a unary call may take, in milliseconds (DEADLINE_EXCEEDED beyond). An append cut
    /// off by it may still be recorded: retry it with the same event ids, which answers with the
    /// original positions if it was.
    pub request_deadline_ms: u64,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            message_bytes_max: store_limits::APPEND_BATCH_BYTES_MAX + 1024 * 1024,
            page_size_max: 1000,
            page_size_default: 100,
            concurrent_streams_max: 256,
            subscriptions_max: 1024,
            subscription_buffer_records: 256,
            request_deadline_ms: 30_000,
        }
    }
}

impl ServerLimits {
    pub(crate) fn to_proto(&self) -> proto::Limits {
        proto::Limits {
            message_bytes_max: self.message_bytes_max as u64,
            append_events_max: store_limits::APPEND_EVENTS_MAX as u64,
            append_batch_bytes_max: store_limits::APPEND_BATCH_BYTES_MAX as u64,
            payload_bytes_max: cairn_ledger::limits::PAYLOAD_BYTES_MAX as u64,
            page_size_max: self.page_size_max as u64,
            concurrent_streams_max: u64::from(self.concurrent_streams_max),
            subscription_lag_max: store_limits::LIVE_BUFFER_RECORDS as u64,
        }
    }
}

/// What the server serves: the ledger, the feedback-loop commands over it, and the read side over
/// its projections. The caller builds them (and keeps the projections following the ledger), so
/// tests and the binary choose the store, the scoring policy and where the projections live.
pub struct Services<S> {
    /// Raw events, proofs and checkpoints (`LedgerService`).
    pub ledger: Arc<Ledger<S>>,
    /// The commands of `FeedbackService`, `DecisionService`, `PrioritizationService` and
    /// `InitiativeService`.
    pub feedback_loop: Arc<FeedbackLoop<S>>,
    /// Every read of those services and of `LineageService`.
    pub reads: Arc<Reads<S>>,
    /// The policy in force: every call is authorized by it (`PolicyService` manages it).
    pub governance: Arc<Governance<S>>,
    /// The credentials every call but health and reflection must present.
    pub authenticator: Arc<Authenticator>,
    /// Retention, legal holds and erasure (`StewardshipService`).
    pub stewardship: Arc<Stewardship<S>>,
}

impl<S: EventStore + KeyStore> Services<S> {
    /// Services over `ledger` with the built-in policy bundle and scoring rules, read models in
    /// `projections` (the caller keeps them following the ledger), and one accepted token,
    /// `admin_token`, for the bootstrap administrator (`cairn:admin`, admin in every tenant):
    /// for tests, benchmarks and embedders.
    pub async fn built_in(
        ledger: Arc<Ledger<S>>,
        projections: Arc<cairn_projections::Projections>,
        admin_token: &str,
    ) -> Result<Services<S>, cairn_service::ServiceError> {
        let governance =
            Arc::new(Governance::start(Arc::clone(&ledger), BundleSource::BuiltIn, None).await?);
        let stewardship = Arc::new(Stewardship::new(
            Arc::clone(&ledger),
            Arc::clone(&governance),
        ));
        let feedback_loop = Arc::new(FeedbackLoop::new(
            Arc::clone(&ledger),
            Arc::new(ScoringPolicy::built_in()),
        ));
        Ok(Services {
            ledger: Arc::clone(&ledger),
            feedback_loop,
            reads: Arc::new(Reads::new(ledger, projections)),
            governance,
            stewardship,
            authenticator: Arc::new(Authenticator::new(Tokens::single(
                admin_token,
                Caller {
                    principal: BOOTSTRAP_ADMIN.into(),
                    tenants: TenantScope::Any,
                },
            ))),
        })
    }
}

impl<S> Clone for Services<S> {
    fn clone(&self) -> Self {
        Services {
            ledger: Arc::clone(&self.ledger),
            feedback_loop: Arc::clone(&self.feedback_loop),
            reads: Arc::clone(&self.reads),
            governance: Arc::clone(&self.governance),
            authenticator: Arc::clone(&self.authenticator),
            stewardship: Arc::clone(&self.stewardship),
        }
    }
}

/// TLS for the server: its certificate chain and private key, and optionally the CA whose client
/// certificates it accepts (mutual TLS). All PEM.
///
/// With a client CA the server asks every client for a certificate but does not require one: a
/// client without a certificate authenticates with a bearer token as over plain TCP; a client
/// whose certificate that CA did not issue (or that has expired) is refused at the handshake; a
/// verified certificate's subject is the caller's principal (`auth::certificate_principal`).
#[derive(Clone)]
pub struct TlsSettings {
    /// The server's certificate chain, leaf first.
    pub cert_pem: Vec<u8>,
    /// The server's private key.
    pub key_pem: Vec<u8>,
    /// The CA that issues client certificates; `None`: clients are not asked for one.
    pub client_ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("TlsSettings")
            .field("client_ca", &self.client_ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

/// Longest a client may take to finish the TLS handshake (handshakes run beside each other, so a
/// slow one holds only its own connection).
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl TlsSettings {
    fn config(&self) -> ServerTlsConfig {
        let identity = Identity::from_pem(&self.cert_pem, &self.key_pem);
        let config = ServerTlsConfig::new()
            .identity(identity)
            .timeout(TLS_HANDSHAKE_TIMEOUT);
        match &self.client_ca_pem {
            Some(ca) => config
                .client_ca_root(Certificate::from_pem(ca))
                .client_auth_optional(true),
            None => config,
        }
    }

    /// Checks that the certificate, key and client CA can be used (before the server announces
    /// itself, so a bad file is a start-up error).
    pub fn check(&self) -> Result<(), tonic::transport::Error> {
        tonic::transport::Server::builder()
            .tls_config(self.config())
            .map(drop)
    }
}

/// Serves the ledger, the feedback-loop services, health and reflection on `listener` until
/// `shutdown` completes, then stops accepting calls, lets the ones in flight finish and records
/// the repeated denials still counted in memory (`Governance::flush_denied`; recording the ended
/// windows while serving is the caller's, with `Governance::spawn_denied_flusher`).
pub async fn serve<S, F>(
    listener: TcpListener,
    services: Services<S>,
    limits: ServerLimits,
    shutdown: F,
) -> Result<(), tonic::transport::Error>
where
    S: EventStore + KeyStore,
    F: Future<Output = ()> + Send,
{
    serve_tls(listener, services, limits, None, shutdown).await
}

/// [`serve`], over TLS when `tls` is given (and with mutual TLS when it names a client CA).
pub async fn serve_tls<S, F>(
    listener: TcpListener,
    services: Services<S>,
    limits: ServerLimits,
    tls: Option<TlsSettings>,
    shutdown: F,
) -> Result<(), tonic::transport::Error>
where
    S: EventStore + KeyStore,
    F: Future<Output = ()> + Send,
{
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<LedgerServiceServer<LedgerApi<S>>>()
        .await;
    health_reporter
        .set_serving::<FeedbackServiceServer<FeedbackApi<S>>>()
        .await;
    health_reporter
        .set_serving::<DecisionServiceServer<DecisionApi<S>>>()
        .await;
    health_reporter
        .set_serving::<PrioritizationServiceServer<PrioritizationApi<S>>>()
        .await;
    health_reporter
        .set_serving::<InitiativeServiceServer<InitiativeApi<S>>>()
        .await;
    health_reporter
        .set_serving::<LineageServiceServer<LineageApi<S>>>()
        .await;
    health_reporter
        .set_serving::<PolicyServiceServer<PolicyApi<S>>>()
        .await;
    health_reporter
        .set_serving::<StewardshipServiceServer<StewardshipApi<S>>>()
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the compiled descriptor set is valid");
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .expect("the compiled descriptor set is valid");
    // Subscriptions never end by themselves: when shutdown starts, each ends with UNAVAILABLE and
    // the position to resume from, so graceful shutdown does not wait on them.
    let (shutting_down, shutdown_watch) = watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        shutting_down.send_replace(true);
    };
    // Without TCP_NODELAY, Nagle's algorithm holds the last small write of each answer until the
    // client's delayed ACK: about 40 ms per call.
    let incoming = TcpListenerStream::new(listener).map(|connection| {
        let connection = connection?;
        connection.set_nodelay(true)?;
        Ok::<_, std::io::Error>(connection)
    });
    let auth = AuthLayer::new(Arc::clone(&services.authenticator));
    let backend = Arc::new(Backend::new(services.clone(), limits.clone()));
    let ledger_service = LedgerServiceServer::new(LedgerApi::new(
        Arc::clone(&services.ledger),
        Arc::clone(backend.access()),
        limits.clone(),
        shutdown_watch,
    ))
    .max_decoding_message_size(limits.message_bytes_max)
    .max_encoding_message_size(limits.message_bytes_max);
    let bytes_max = limits.message_bytes_max;
    let feedback_service = FeedbackServiceServer::new(FeedbackApi::new(Arc::clone(&backend)))
        .max_decoding_message_size(bytes_max)
        .max_encoding_message_size(bytes_max);
    let decision_service = DecisionServiceServer::new(DecisionApi::new(Arc::clone(&backend)))
        .max_decoding_message_size(bytes_max)
        .max_encoding_message_size(bytes_max);
    let prioritization_service =
        PrioritizationServiceServer::new(PrioritizationApi::new(Arc::clone(&backend)))
            .max_decoding_message_size(bytes_max)
            .max_encoding_message_size(bytes_max);
    let initiative_service = InitiativeServiceServer::new(InitiativeApi::new(Arc::clone(&backend)))
        .max_decoding_message_size(bytes_max)
        .max_encoding_message_size(bytes_max);
    let policy_service = PolicyServiceServer::new(PolicyApi::new(Arc::clone(&backend)))
        .max_decoding_message_size(bytes_max)
        .max_encoding_message_size(bytes_max);
    let stewardship_service =
        StewardshipServiceServer::new(StewardshipApi::new(Arc::clone(&backend)))
            .max_decoding_message_size(bytes_max)
            .max_encoding_message_size(bytes_max);
    let lineage_service = LineageServiceServer::new(LineageApi::new(backend))
        .max_decoding_message_size(bytes_max)
        .max_encoding_message_size(bytes_max);
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &tls {
        builder = builder.tls_config(tls.config())?;
    }
    let served = builder
        .max_concurrent_streams(limits.concurrent_streams_max)
        .layer(auth)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(ledger_service)
        .add_service(feedback_service)
        .add_service(decision_service)
        .add_service(prioritization_service)
        .add_service(initiative_service)
        .add_service(lineage_service)
        .add_service(policy_service)
        .add_service(stewardship_service)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    // The calls in flight have finished: no denial is counted after this. (Each failure is
    // logged where it happens.)
    let _ = services.governance.flush_denied().await;
    served
}
