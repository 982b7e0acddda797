//! The gRPC client the subcommands share: connecting, and turning a failed call into one message
//! that says which call failed, on which server, with the status code, message and details.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow};
use cairn_grpc::auth::{AuthChannel, BearerToken};
use cairn_grpc::proto;
use cairn_grpc::proto::ledger_service_client::LedgerServiceClient;
use clap::Args;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};

/// The server a client subcommand talks to.
#[derive(Clone, Debug, Args)]
pub struct ServerArgs {
    /// The server's URL.
    #[arg(long, env = "CAIRN_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,

    /// The bearer token to present. Prefer the environment or a file: a command-line argument is
    /// visible to other users of the machine.
    #[arg(long, env = "CAIRN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// A file whose first line is the token. Default: `./cairn-data/admin.token` when it exists
    /// (the administrator's token `cairn serve` writes on its first start in `./cairn-data`).
    #[arg(long, env = "CAIRN_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// TLS, for an `https://` server.
    #[command(flatten)]
    pub tls: ClientTlsArgs,
}

/// How a client speaks TLS to an `https://` server (`cairn serve --tls-cert`).
#[derive(Clone, Debug, Default, Args)]
pub struct ClientTlsArgs {
    /// The CA that issued the server's certificate (PEM): the only one trusted (no system
    /// roots). Needed for an `https://` server.
    #[arg(long, env = "CAIRN_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,

    /// A client certificate (PEM) to present (mutual TLS): its subject is the principal calls are
    /// made as, so no token is needed. Needs `--tls-key`.
    #[arg(
        long,
        env = "CAIRN_CLIENT_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// The private key of `--tls-cert` (PEM).
    #[arg(
        long,
        env = "CAIRN_CLIENT_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
}

impl ClientTlsArgs {
    fn is_empty(&self) -> bool {
        self.tls_ca.is_none() && self.tls_cert.is_none() && self.tls_key.is_none()
    }

    /// The client TLS configuration: the server CA to trust and the identity to present.
    fn config(&self) -> anyhow::Result<ClientTlsConfig> {
        let read = |path: &PathBuf| {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
        };
        let ca = self.tls_ca.as_ref().ok_or_else(|| {
            anyhow!("an https:// server needs --tls-ca (the CA that issued its certificate)")
        })?;
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        Ok(config)
    }
}

/// Where the client looks for a token when neither `--token` nor `--token-file` says.
const DEFAULT_TOKEN_FILE: &str = "./cairn-data/admin.token";

impl ServerArgs {
    /// The token to present: `--token`, else the first line of `--token-file`, else of the
    /// default token file if it exists. `None`: calls go without credentials (and the server
    /// answers UNAUTHENTICATED).
    pub fn resolve_token(&self) -> anyhow::Result<Option<String>> {
        if let Some(token) = &self.token {
            return Ok(Some(token.trim().to_owned()));
        }
        let path = match &self.token_file {
            Some(path) => path.clone(),
            None => {
                let default = PathBuf::from(DEFAULT_TOKEN_FILE);
                if !default.exists() {
                    return Ok(None);
                }
                default
            }
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the token file {}", path.display()))?;
        let token = text.lines().next().unwrap_or_default().trim().to_owned();
        if token.is_empty() {
            return Err(anyhow!("the token file {} is empty", path.display()));
        }
        Ok(Some(token))
    }
}

/// Largest message the client accepts. Above the server's own limit, so the server's limit is the
/// one a caller meets, with its clear error.
const CLIENT_MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// How long to wait for a TCP connection before giving up.
const CONNECT_TIMEOUT_MS: u64 = 5_000;

/// Connects to `server` (`http://host:port`, or `https://host:port` with TLS): the channel, which presents the token on every
/// call, and the URL errors name.
pub async fn connect_channel(server: &ServerArgs) -> anyhow::Result<(AuthChannel, String)> {
    let token = server.resolve_token()?;
    let url = server.server.trim().to_owned();
    let mut endpoint = Endpoint::from_shared(url.clone())
        .with_context(|| format!("invalid --server URL {url:?}"))?
        .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS));
    if url.starts_with("https://") {
        endpoint = endpoint
            .tls_config(server.tls.config()?)
            .with_context(|| format!("cannot configure TLS for {url}"))?;
    } else if !server.tls.is_empty() {
        // Never send what was meant to go over TLS in the clear.
        return Err(anyhow!(
            "--tls-ca, --tls-cert and --tls-key need an https:// --server URL, not {url}"
        ));
    }
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("cannot connect to the cairn server at {url}"))?;
    let bearer = match token {
        Some(token) => {
            BearerToken::new(&token).map_err(|reason| anyhow!("invalid token: {reason}"))?
        }
        // No token: calls are sent without credentials, so the server's UNAUTHENTICATED (with
        // the hint in `describe_status`) is what the user sees.
        None => BearerToken::none(),
    };
    Ok((InterceptedService::new(channel, bearer), url))
}

/// A connected ledger client that names its server in every error.
pub struct Client {
    inner: LedgerServiceClient<AuthChannel>,
    server: String,
}

impl Client {
    /// Connects to `server` (`http://host:port`).
    pub async fn connect(server: &ServerArgs) -> anyhow::Result<Client> {
        let (channel, url) = connect_channel(server).await?;
        let inner = LedgerServiceClient::new(channel)
            .max_decoding_message_size(CLIENT_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(CLIENT_MESSAGE_BYTES_MAX);
        Ok(Client { inner, server: url })
    }

    /// The server's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The error for a failed call: `Append on http://...: FAILED_PRECONDITION: ...`.
    pub fn call_failed(&self, call: &str, status: &Status) -> anyhow::Error {
        anyhow!(
            "{call} on {} failed: {}",
            self.server,
            describe_status(status)
        )
    }

    /// `LedgerService.GetLogInfo`.
    pub async fn log_info(&mut self) -> anyhow::Result<proto::LogInfo> {
        let answer = self.inner.get_log_info(proto::GetLogInfoRequest {}).await;
        answer
            .map(tonic::Response::into_inner)
            .map_err(|status| self.call_failed("GetLogInfo", &status))
    }

    /// `LedgerService.GetCheckpoint`.
    pub async fn checkpoint(&mut self) -> anyhow::Result<proto::Checkpoint> {
        let answer = self
            .inner
            .get_checkpoint(proto::GetCheckpointRequest {})
            .await;
        answer
            .map(tonic::Response::into_inner)
            .map_err(|status| self.call_failed("GetCheckpoint", &status))
    }

    /// `LedgerService.Append`.
    pub async fn append(
        &mut self,
        request: proto::AppendRequest,
    ) -> anyhow::Result<proto::AppendResponse> {
        let answer = self.inner.append(request).await;
        answer
            .map(tonic::Response::into_inner)
            .map_err(|status| self.call_failed("Append", &status))
    }

    /// `LedgerService.ReadAll`, with the raw status so callers can react to its code.
    pub async fn read_all_raw(
        &mut self,
        request: proto::ReadAllRequest,
    ) -> Result<proto::ReadResponse, Status> {
        self.inner
            .read_all(request)
            .await
            .map(tonic::Response::into_inner)
    }

    /// `LedgerService.ReadAll`.
    pub async fn read_all(
        &mut self,
        request: proto::ReadAllRequest,
    ) -> anyhow::Result<proto::ReadResponse> {
        let from = request.from_position;
        let answer = self.read_all_raw(request).await;
        answer.map_err(|status| self.call_failed(&format!("ReadAll from position {from}"), &status))
    }

    /// `LedgerService.ReadStream`.
    pub async fn read_stream(
        &mut self,
        request: proto::ReadStreamRequest,
    ) -> anyhow::Result<proto::ReadResponse> {
        let from = request.from_version;
        let answer = self.inner.read_stream(request).await;
        answer
            .map(tonic::Response::into_inner)
            .map_err(|status| self.call_failed(&format!("ReadStream from version {from}"), &status))
    }

    /// `LedgerService.Subscribe`, with the raw status (the caller handles cut-offs).
    pub async fn subscribe(
        &mut self,
        request: proto::SubscribeRequest,
    ) -> Result<tonic::Streaming<proto::SubscribeResponse>, Status> {
        self.inner
            .subscribe(request)
            .await
            .map(tonic::Response::into_inner)
    }

    /// `LedgerService.GetInclusionProof`.
    pub async fn inclusion_proof(
        &mut self,
        position: u64,
        tree_size: u64,
    ) -> anyhow::Result<proto::InclusionProof> {
        let request = proto::GetInclusionProofRequest {
            position,
            tree_size,
        };
        let answer = self.inner.get_inclusion_proof(request).await;
        answer.map(tonic::Response::into_inner).map_err(|status| {
            self.call_failed(
                &format!("GetInclusionProof for position {position} in tree size {tree_size}"),
                &status,
            )
        })
    }

    /// `LedgerService.GetConsistencyProof`.
    pub async fn consistency_proof(
        &mut self,
        old_size: u64,
        new_size: u64,
    ) -> anyhow::Result<proto::ConsistencyProof> {
        let request = proto::GetConsistencyProofRequest { old_size, new_size };
        let answer = self.inner.get_consistency_proof(request).await;
        answer.map(tonic::Response::into_inner).map_err(|status| {
            self.call_failed(
                &format!("GetConsistencyProof from size {old_size} to {new_size}"),
                &status,
            )
        })
    }

    /// Reads up to `count` records of the ledger from `first.from_position`, in pages (of at most
    /// `page_size_max`; `first.limit` is ignored), calling `each` on every record in order. Stops
    /// early at the end of the ledger and returns how many records it read. A page too large for the message limits
    /// (RESOURCE_EXHAUSTED or OUT_OF_RANGE on a multi-record page) is retried at half the size,
    /// so ledgers of large payloads can still be read through.
    pub async fn read_all_pages(
        &mut self,
        first: proto::ReadAllRequest,
        count: u64,
        page_size_max: u32,
        mut each: impl FnMut(proto::Record) -> anyhow::Result<()>,
    ) -> anyhow::Result<u64> {
        let mut next = first.from_position.max(1);
        let mut read = 0u64;
        let mut page_size = page_size_max.max(1);
        while read < count {
            let limit =
                u32::try_from((count - read).min(u64::from(page_size))).unwrap_or(page_size);
            let request = proto::ReadAllRequest {
                from_position: next,
                limit,
                include_personal: first.include_personal,
            };
            let page = match self.read_all_raw(request).await {
                Ok(page) => page,
                Err(status)
                    if limit > 1
                        && matches!(status.code(), Code::ResourceExhausted | Code::OutOfRange) =>
                {
                    page_size = (limit / 2).max(1);
                    tracing::info!(
                        page_size,
                        "page too large for the message limit; halving it"
                    );
                    continue;
                }
                Err(status) => {
                    return Err(self.call_failed(&format!("ReadAll from position {next}"), &status));
                }
            };
            if page.records.is_empty() {
                break;
            }
            for record in page.records {
                if read == count {
                    break;
                }
                if record.position != next {
                    anyhow::bail!(
                        "ReadAll on {} returned position {} where position {next} was expected",
                        self.server,
                        record.position
                    );
                }
                next += 1;
                read += 1;
                each(record)?;
            }
        }
        Ok(read)
    }
}

/// `CODE: message (metadata-key: value, ...)`, with the canonical upper-case code name and the
/// cairn metadata that explains the error (the field at fault, a stream's current version, the
/// position to resume from).
pub fn describe_status(status: &Status) -> String {
    let mut text = format!("{}: {}", code_name(status.code()), status.message());
    let details: Vec<String> = [
        "cairn-rule",
        "cairn-field",
        "cairn-current-version",
        cairn_grpc::RESUME_FROM_METADATA,
    ]
    .iter()
    .filter_map(|key| {
        let value = status.metadata().get(*key)?.to_str().ok()?;
        Some(format!("{key}: {value}"))
    })
    .collect();
    if !details.is_empty() {
        text.push_str(&format!(" ({})", details.join(", ")));
    }
    if status.code() == Code::Unauthenticated {
        text.push_str(
            " (give a token with CAIRN_TOKEN, --token-file or CAIRN_TOKEN_FILE, or a client \
             certificate with --tls-cert and --tls-key; `cairn serve` writes an administrator's \
             token to DATA/admin.token on its first start)",
        );
    }
    text
}

/// The position a cut-off subscriber should resume from, if the status carries one.
pub fn resume_from(status: &Status) -> Option<u64> {
    status
        .metadata()
        .get(cairn_grpc::RESUME_FROM_METADATA)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The canonical name of a status code, as grpcurl and the gRPC docs spell it.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use cairn_grpc::ServerLimits;

    use super::*;
    use crate::test_server::TestServer;

    #[tokio::test]
    async fn pages_too_large_for_the_message_limit_are_halved() {
        let limits = ServerLimits {
            message_bytes_max: 8 * 1024,
            ..ServerLimits::default()
        };
        let server = TestServer::start(limits).await;
        // About 1 KiB per record: a page of all 40 is far over the 8 KiB limit.
        let padding = "x".repeat(1000);
        for batch in 0..8 {
            server
                .append("acme/notes/a", &format!("{batch}{padding}"), 5)
                .await;
        }
        let mut client = server.client().await;
        let whole = client
            .read_all_raw(proto::ReadAllRequest {
                from_position: 1,
                limit: 40,
                include_personal: false,
            })
            .await
            .unwrap_err();
        let mut positions = Vec::new();
        let first = proto::ReadAllRequest {
            from_position: 3,
            limit: 0,
            include_personal: false,
        };
        let read = client
            .read_all_pages(first, 100, 1000, |record| {
                positions.push(record.position);
                Ok(())
            })
            .await
            .unwrap();
        assert!(
            matches!(whole.code(), Code::ResourceExhausted | Code::OutOfRange),
            "{whole:?}"
        );
        // The server's policy activation is position 1; the 40 records follow it.
        assert_eq!(read, 39);
        assert_eq!(positions, (3..=41).collect::<Vec<u64>>());
    }

    #[test]
    fn statuses_name_their_code_and_cairn_details() {
        let mut status = Status::failed_precondition("stream acme/f/1 is at version 2, expected 1");
        status
            .metadata_mut()
            .insert("cairn-current-version", "2".parse().unwrap());
        assert_eq!(
            describe_status(&status),
            "FAILED_PRECONDITION: stream acme/f/1 is at version 2, expected 1 \
             (cairn-current-version: 2)"
        );
        assert_eq!(
            describe_status(&Status::not_found("no checkpoint")),
            "NOT_FOUND: no checkpoint"
        );
    }

    #[test]
    fn resume_positions_come_from_metadata() {
        let mut status = Status::resource_exhausted("too slow");
        assert_eq!(resume_from(&status), None);
        status
            .metadata_mut()
            .insert(cairn_grpc::RESUME_FROM_METADATA, "1234".parse().unwrap());
        assert_eq!(resume_from(&status), Some(1234));
    }
}
