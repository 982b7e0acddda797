//! TLS and mutual TLS on the real server (`cairn serve --tls-cert --tls-key --tls-client-ca`).
//!
//! The test makes its own PKI with rcgen: a CA, a server certificate for 127.0.0.1 and
//! localhost, client certificates for `cairn:admin` (the bootstrap administrator, admin in every
//! tenant in the shipped policy), `user:dave` (a viewer in tenant globex only) and `role:admin`
//! (a role, never a principal), and a second CA with its own `cairn:admin` certificate.
//!
//! - Over TLS, a bearer token works as over TCP; health answers without credentials.
//! - A client certificate alone authenticates as its subject, and the policy decides the rest:
//!   `cairn:admin` reads the ledger and the policy; `user:dave` may list globex's feedback but
//!   not read the ledger.
//! - A certificate from another CA fails the handshake; no certificate and no token is
//!   UNAUTHENTICATED; a certificate and a token of two principals is UNAUTHENTICATED; a
//!   certificate naming a role is UNAUTHENTICATED.
//! - The CLI's `--tls-ca`, `--tls-cert` and `--tls-key` reach the server the same way.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use cairn_e2e::{Server, run_cairn};
use cairn_grpc::auth::{AuthChannel, BearerToken};
use cairn_grpc::proto;
use cairn_grpc::proto::feedback_service_client::FeedbackServiceClient;
use cairn_grpc::proto::ledger_service_client::LedgerServiceClient;
use cairn_grpc::proto::policy_service_client::PolicyServiceClient;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// A certificate and its key, PEM, also written to `DIR/NAME.pem` and `DIR/NAME.key`.
struct Pem {
    cert: String,
    key: String,
    cert_path: PathBuf,
    key_path: PathBuf,
}

impl Pem {
    fn write(dir: &Path, name: &str, cert: String, key: &KeyPair) -> Result<Pem> {
        let pem = Pem {
            cert,
            key: key.serialize_pem(),
            cert_path: dir.join(format!("{name}.pem")),
            key_path: dir.join(format!("{name}.key")),
        };
        std::fs::write(&pem.cert_path, &pem.cert)?;
        std::fs::write(&pem.key_path, &pem.key)?;
        Ok(pem)
    }

    fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert, &self.key)
    }
}

/// A certificate authority: its certificate (PEM, on disk) and what signs with it.
struct Ca {
    pem: Pem,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Result<Ca> {
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let pem = Pem::write(dir, name, cert.pem(), &key)?;
        Ok(Ca {
            pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// A server certificate for these names (IP addresses become IP names).
    fn server(&self, dir: &Path, names: &[&str]) -> Result<Pem> {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let mut params = CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "cairn server");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Pem::write(dir, "server", cert.pem(), &key)
    }

    /// A client certificate whose subject's common name is `common_name`.
    fn client(&self, dir: &Path, file: &str, common_name: &str) -> Result<Pem> {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Pem::write(dir, file, cert.pem(), &key)
    }
}

fn token_entry(token: &str, principal: &str) -> String {
    format!(
        "[[token]]\nhash = \"blake3:{}\"\nprincipal = \"{principal}\"\ntenants = [\"*\"]\n",
        blake3::hash(token.as_bytes()).to_hex()
    )
}

/// A TLS channel to the server, trusting `ca`, presenting `identity` if given.
async fn tls_channel(
    url: &str,
    ca: &Ca,
    identity: Option<&Pem>,
) -> Result<Channel, tonic::transport::Error> {
    let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca.pem.cert));
    if let Some(identity) = identity {
        config = config.identity(identity.identity());
    }
    Endpoint::from_shared(url.to_owned())?
        .tls_config(config)?
        .connect()
        .await
}

fn with_token(channel: Channel, token: Option<&str>) -> Result<AuthChannel> {
    let bearer = match token {
        Some(token) => BearerToken::new(token).map_err(anyhow::Error::msg)?,
        None => BearerToken::none(),
    };
    Ok(InterceptedService::new(channel, bearer))
}

async fn log_info(channel: &AuthChannel) -> Result<proto::LogInfo, tonic::Status> {
    LedgerServiceClient::new(channel.clone())
        .get_log_info(proto::GetLogInfoRequest {})
        .await
        .map(tonic::Response::into_inner)
}

async fn health(channel: Channel) -> Result<i32, tonic::Status> {
    let answer = HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await?;
    Ok(answer.into_inner().status)
}

#[tokio::test]
async fn mutual_tls_authenticates_by_the_certificate_subject() -> Result<()> {
    let pki = tempfile::Builder::new()
        .prefix("cairn-e2e-tls-")
        .tempdir()?;
    let dir = pki.path();
    let ca = Ca::new(dir, "cairn-test-ca")?;
    let server_cert = ca.server(dir, &["127.0.0.1", "localhost"])?;
    let admin = ca.client(dir, "admin", "cairn:admin")?;
    let dave = ca.client(dir, "dave", "user:dave")?;
    let role = ca.client(dir, "role", "role:admin")?;
    let stranger_ca = Ca::new(dir, "stranger-ca")?;
    let stranger = stranger_ca.client(dir, "stranger", "cairn:admin")?;

    let admin_token = "cairn_tls_test_admin_token";
    let dave_token = "cairn_tls_test_dave_token";
    let tokens = dir.join("tokens.toml");
    std::fs::write(
        &tokens,
        format!(
            "{}{}",
            token_entry(admin_token, "cairn:admin"),
            token_entry(dave_token, "user:dave")
        ),
    )?;
    let path = |path: &Path| path.to_str().map(str::to_owned).context("a UTF-8 path");
    let (cert, key, client_ca, tokens) = (
        path(&server_cert.cert_path)?,
        path(&server_cert.key_path)?,
        path(&ca.pem.cert_path)?,
        path(&tokens)?,
    );
    let server = Server::start_temp(&[
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tls-client-ca",
        &client_ca,
        "--tokens",
        &tokens,
    ])?;
    let url = format!("https://{}", server.listening().addr);

    // (g) Health answers over TLS without credentials.
    let anonymous = tls_channel(&url, &ca, None).await?;
    assert_eq!(
        health(anonymous.clone()).await?,
        ServingStatus::Serving as i32
    );

    // (e) No certificate and no token: UNAUTHENTICATED.
    let status = log_info(&with_token(anonymous.clone(), None)?)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    // (a) A bearer token over TLS, without a certificate: works.
    let info = log_info(&with_token(anonymous.clone(), Some(admin_token))?).await?;
    ensure!(info.head_position >= 1, "the policy activation is recorded");

    // (b) The administrator's certificate, no token: reads the ledger and the policy.
    let admin_channel = with_token(tls_channel(&url, &ca, Some(&admin)).await?, None)?;
    log_info(&admin_channel).await?;
    let bundle = PolicyServiceClient::new(admin_channel.clone())
        .get_active_bundle(proto::GetActiveBundleRequest {})
        .await?
        .into_inner();
    ensure!(!bundle.bundle_hash.is_empty(), "a bundle is in force");

    // (c) Dave's certificate: a viewer in globex, so no ledger read, but globex's feedback.
    let dave_channel = with_token(tls_channel(&url, &ca, Some(&dave)).await?, None)?;
    let status = log_info(&dave_channel).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    FeedbackServiceClient::new(dave_channel.clone())
        .list_feedback(proto::ListFeedbackRequest {
            tenant: "globex".into(),
            ..Default::default()
        })
        .await?;
    let status = FeedbackServiceClient::new(dave_channel)
        .list_feedback(proto::ListFeedbackRequest {
            tenant: "acme".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // (f) The administrator's certificate with Dave's token: two principals, UNAUTHENTICATED.
    let admin_cert = tls_channel(&url, &ca, Some(&admin)).await?;
    let status = log_info(&with_token(admin_cert.clone(), Some(dave_token))?)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains("cairn:admin") && status.message().contains("user:dave"),
        "{status:?}"
    );
    // The same principal twice is fine.
    log_info(&with_token(admin_cert, Some(admin_token))?).await?;

    // A certificate naming a role is no principal.
    let role_channel = with_token(tls_channel(&url, &ca, Some(&role)).await?, None)?;
    let status = log_info(&role_channel).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    // (d) A certificate from another CA fails the handshake: even health (which needs no
    // credentials) is never reached. With TLS 1.3 the client learns of it when it first uses the
    // connection, so either step may fail.
    let refused = match tls_channel(&url, &stranger_ca, Some(&stranger)).await {
        Err(_) => true,
        Ok(channel) => health(channel).await.is_err(),
    };
    assert!(refused, "a certificate from another CA was accepted");
    // The stranger's certificate, trusting the right server CA: refused the same way.
    let refused = match tls_channel(&url, &ca, Some(&stranger)).await {
        Err(_) => true,
        Ok(channel) => match health(channel).await {
            Ok(_) => false,
            Err(status) => {
                assert_ne!(status.code(), Code::Unauthenticated, "{status:?}");
                true
            }
        },
    };
    assert!(refused, "a certificate from another CA was accepted");
    // Plain TCP to a TLS server gets nowhere.
    let plain = Channel::from_shared(server.url())?.connect().await;
    if let Ok(plain) = plain {
        assert!(health(plain).await.is_err(), "plain TCP was served");
    }

    // The CLI: `cairn info` with a client certificate and no token.
    let info = run_cairn([
        "info",
        "--server",
        &url,
        "--tls-ca",
        &path(&ca.pem.cert_path)?,
        "--tls-cert",
        &path(&admin.cert_path)?,
        "--tls-key",
        &path(&admin.key_path)?,
    ])?;
    assert!(info.status.success(), "{}", info.text());
    // Without the CA to trust, it says what is missing; TLS flags never go over plain TCP.
    let info = run_cairn(["info", "--server", &url])?;
    assert!(!info.status.success(), "{}", info.text());
    assert!(info.text().contains("--tls-ca"), "{}", info.text());
    let info = run_cairn([
        "info",
        "--server",
        &server.url(),
        "--tls-ca",
        &path(&ca.pem.cert_path)?,
    ])?;
    assert!(!info.status.success(), "{}", info.text());
    assert!(info.text().contains("https://"), "{}", info.text());
    Ok(())
}

#[tokio::test]
async fn a_bad_certificate_or_key_stops_the_server_at_start() -> Result<()> {
    let pki = tempfile::Builder::new()
        .prefix("cairn-e2e-tls-")
        .tempdir()?;
    let garbage = pki.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate")?;
    let garbage = garbage.to_str().context("a UTF-8 path")?;
    let data = tempfile::Builder::new()
        .prefix("cairn-e2e-data-")
        .tempdir()?;
    let refused = Server::try_start(data.path(), &["--tls-cert", garbage, "--tls-key", garbage])?
        .err()
        .context("cairn serve started with a garbage certificate")?;
    assert!(!refused.status.success());
    assert!(refused.output.contains("TLS"), "{}", refused.output);
    Ok(())
}
