//! Authentication and authorization of the real server.
//!
//! - Without a token, or with an unknown one, every cairn call is UNAUTHENTICATED and records
//!   nothing; health and reflection stay open.
//! - The matrix: every RPC of every cairn service (from the served descriptor set) × every role
//!   (granted at run time through `PolicyService.Grant`, in one tenant or in every tenant) × the
//!   tenant called in, against the expectation written here from the role table and the RPC table
//!   (`cairn_policy::RPCS`): PERMISSION_DENIED exactly when the expectation says deny. 0
//!   mismatches, each printed.
//! - Every denied call is recorded in the tenant's denied log, without the token; repeats of one
//!   call within its window are counted and recorded as one record when the window ends or the
//!   server shuts down (a SIGKILL loses only such counts, never the first denial).
//! - Personal data is redacted for a caller without (personal, read); a command on behalf of
//!   someone else needs (actor, act_for); a token scoped to one tenant is refused in another.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use cairn_e2e::{Server, auth_channel, head_position};
use cairn_grpc::auth::AuthChannel;
use cairn_grpc::proto;
use cairn_grpc::proto::feedback_service_client::FeedbackServiceClient;
use cairn_grpc::proto::policy_service_client::PolicyServiceClient;
use cairn_policy::{RPCS, Scope, rpc_access};
use prost::Message;
use tonic::Code;
use tonic::client::Grpc;

/// The roles of the shipped policy.
const ROLES: [&str; 7] = [
    "viewer",
    "contributor",
    "triager",
    "owner",
    "steward",
    "auditor",
    "admin",
];
const OWN: &str = "acme";
const OTHER: &str = "beta";

/// What each role may do, written from the role table in `policies/access/README.md`
/// independently of `policy.csv`.
fn permissions(role: &str) -> BTreeSet<(&'static str, &'static str)> {
    let viewer = [
        ("feedback", "read"),
        ("signal", "read"),
        ("opportunity", "read"),
        ("decision", "read"),
        ("initiative", "read"),
        ("lineage", "read"),
    ];
    let contributor = [
        ("feedback", "write"),
        ("signal", "write"),
        ("opportunity", "write"),
        ("decision", "write"),
    ];
    let triager = [("feedback", "triage"), ("opportunity", "triage")];
    let owner = [
        ("opportunity", "decide"),
        ("decision", "decide"),
        ("initiative", "write"),
        ("initiative", "decide"),
    ];
    let steward = [
        ("personal", "read"),
        ("stewardship", "read"),
        ("stewardship", "write"),
        ("stewardship", "erase"),
    ];
    let auditor = [
        ("ledger", "read"),
        ("audit", "read"),
        ("policy", "read"),
        ("access", "read"),
        ("stewardship", "read"),
    ];
    let admin = [
        ("ledger", "write"),
        ("policy", "test"),
        ("policy", "admin"),
        ("access", "grant"),
        ("actor", "act_for"),
    ];
    let mut set = BTreeSet::new();
    let parts: Vec<&[(&str, &str)]> = match role {
        "viewer" => vec![&viewer],
        "contributor" => vec![&viewer, &contributor],
        "triager" => vec![&viewer, &contributor, &triager],
        "owner" => vec![&viewer, &contributor, &triager, &owner],
        "steward" => vec![&viewer, &steward],
        "auditor" => vec![&viewer, &auditor],
        "admin" => vec![
            &viewer,
            &contributor,
            &triager,
            &owner,
            &steward,
            &auditor,
            &admin,
        ],
        _ => vec![],
    };
    for part in parts {
        set.extend(part.iter().copied());
    }
    set
}

/// A principal of the matrix: a role granted in one place (or none).
struct Principal {
    name: String,
    token: String,
    role: Option<&'static str>,
    /// Where the role was granted: `acme` or `*`.
    granted_in: &'static str,
}

fn token_entry(token: &str, principal: &str, tenants: &str) -> String {
    format!(
        "[[token]]\nhash = \"blake3:{}\"\nprincipal = \"{principal}\"\ntenants = [{tenants}]\n",
        blake3::hash(token.as_bytes()).to_hex()
    )
}

/// The request message of an RPC, as the matrix sends it: only what names the tenant.
#[derive(Clone, PartialEq, Message)]
struct TenantOnly {
    #[prost(string, tag = "1")]
    tenant: String,
}

#[derive(Clone, PartialEq, Message)]
struct MetaOnly {
    #[prost(message, optional, tag = "1")]
    meta: Option<proto::CommandMeta>,
}

#[derive(Clone, PartialEq, Message)]
struct StreamOnly {
    #[prost(message, optional, tag = "1")]
    stream: Option<proto::StreamRef>,
}

/// Any answer: the matrix only looks at the status.
#[derive(Clone, PartialEq, Message)]
struct Anything {}

/// How an RPC's request names its tenant, from the descriptor set.
#[derive(Clone, Copy, Debug)]
enum Shape {
    Tenant,
    Meta,
    Stream,
    Nothing,
}

struct Method {
    path: String,
    shape: Shape,
    server_streaming: bool,
}

/// Every method of every cairn service the server describes.
fn served_methods() -> Result<Vec<Method>> {
    let set = prost_types::FileDescriptorSet::decode(cairn_grpc::proto::FILE_DESCRIPTOR_SET)?;
    let messages: Vec<(String, &prost_types::DescriptorProto)> = set
        .file
        .iter()
        .flat_map(|file| {
            file.message_type
                .iter()
                .map(move |message| (format!(".{}.{}", file.package(), message.name()), message))
        })
        .collect();
    let mut methods = Vec::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                let input = messages
                    .iter()
                    .find(|(name, _)| name == method.input_type())
                    .with_context(|| format!("no message {}", method.input_type()))?
                    .1;
                let first = input.field.iter().find(|field| field.number() == 1);
                let shape = match first.map(|field| (field.name(), field.type_name())) {
                    Some(("tenant", _)) => Shape::Tenant,
                    Some(("meta", ".cairn.v1.CommandMeta")) => Shape::Meta,
                    Some(("stream", ".cairn.v1.StreamRef")) => Shape::Stream,
                    _ => Shape::Nothing,
                };
                methods.push(Method {
                    path: format!("/{}.{}/{}", file.package(), service.name(), method.name()),
                    shape,
                    server_streaming: method.server_streaming(),
                });
            }
        }
    }
    Ok(methods)
}

/// Calls `method` in `tenant` with the smallest request that names it; the status code.
async fn call(channel: &AuthChannel, method: &Method, tenant: &str) -> Result<Code> {
    let mut grpc = Grpc::new(channel.clone());
    grpc.ready().await.context("channel not ready")?;
    let path: tonic::codegen::http::uri::PathAndQuery = method.path.parse()?;
    macro_rules! send {
        ($message:expr, $type:ty) => {{
            let codec = tonic_prost::ProstCodec::<$type, Anything>::default();
            let request = tonic::Request::new($message);
            let result = if method.server_streaming {
                grpc.server_streaming(request, path, codec)
                    .await
                    .map(|_| ())
            } else {
                grpc.unary(request, path, codec).await.map(|_| ())
            };
            match result {
                Ok(()) => Code::Ok,
                Err(status) => status.code(),
            }
        }};
    }
    Ok(match method.shape {
        Shape::Tenant => send!(
            TenantOnly {
                tenant: tenant.into()
            },
            TenantOnly
        ),
        Shape::Meta => send!(
            MetaOnly {
                meta: Some(proto::CommandMeta {
                    tenant: tenant.into(),
                    ..Default::default()
                }),
            },
            MetaOnly
        ),
        Shape::Stream => send!(
            StreamOnly {
                stream: Some(proto::StreamRef {
                    tenant: tenant.into(),
                    aggregate_type: "matrix".into(),
                    aggregate_id: "m".into(),
                }),
            },
            StreamOnly
        ),
        Shape::Nothing => send!(Anything {}, Anything),
    })
}

/// A server whose token file knows the bootstrap administrator and every matrix principal.
fn start_server(dir: &Path, principals: &[Principal], admin_token: &str) -> Result<Server> {
    let mut file = token_entry(admin_token, "cairn:admin", "\"*\"");
    for principal in principals {
        file.push_str(&token_entry(&principal.token, &principal.name, "\"*\""));
    }
    // A token that may only be used in acme, for a principal that is admin everywhere.
    file.push_str(&token_entry(
        "tok-scoped",
        "m.scoped",
        &format!("\"{OWN}\""),
    ));
    let tokens = dir.join("tokens.toml");
    std::fs::write(&tokens, file)?;
    let tokens_arg = tokens.to_str().context("utf-8 path")?;
    Server::start_temp(&["--tokens", tokens_arg])
}

fn principals() -> Vec<Principal> {
    let mut principals = vec![Principal {
        name: "m.none".into(),
        token: "tok-m.none".into(),
        role: None,
        granted_in: OWN,
    }];
    for role in ROLES {
        for granted_in in [OWN, "*"] {
            let place = if granted_in == "*" { "all" } else { OWN };
            let name = format!("m.{role}.{place}");
            principals.push(Principal {
                token: format!("tok-{name}"),
                name,
                role: Some(role),
                granted_in,
            });
        }
    }
    principals
}

async fn policy_client(server: &Server, token: &str) -> Result<PolicyServiceClient<AuthChannel>> {
    Ok(PolicyServiceClient::new(
        auth_channel(&server.url(), token).await?,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_role_and_tenant_is_answered_as_the_table_says() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let principals = principals();
    let server = start_server(dir.path(), &principals, "tok-admin")?;
    let mut admin = policy_client(&server, "tok-admin").await?;
    for principal in &principals {
        let Some(role) = principal.role else { continue };
        admin
            .grant(proto::GrantRequest {
                tenant: principal.granted_in.into(),
                principal: principal.name.clone(),
                role: format!("role:{role}"),
                reason: "access matrix".into(),
            })
            .await
            .with_context(|| format!("granting {role} to {}", principal.name))?;
    }
    admin
        .grant(proto::GrantRequest {
            tenant: "*".into(),
            principal: "m.scoped".into(),
            role: "role:admin".into(),
            reason: "a scoped token".into(),
        })
        .await?;

    let methods = served_methods()?;
    let cairn_methods: Vec<&Method> = methods
        .iter()
        .filter(|m| m.path.starts_with("/cairn.v1."))
        .collect();
    // The table covers exactly the served methods.
    for method in &cairn_methods {
        ensure!(
            rpc_access(&method.path).is_some(),
            "{} is served but has no row in the access table",
            method.path
        );
    }
    for row in RPCS {
        ensure!(
            cairn_methods.iter().any(|m| m.path == row.method),
            "{} has a row but is not served",
            row.method
        );
    }

    let mut mismatches = Vec::new();
    let mut calls = 0;
    let mut denials_in_own = 0;
    for principal in &principals {
        let channel = auth_channel(&server.url(), &principal.token).await?;
        let allowed_pairs = principal.role.map(permissions).unwrap_or_default();
        for method in &cairn_methods {
            let row = rpc_access(&method.path).context("checked above")?;
            let pair = (row.object.as_str(), row.action.as_str());
            let tenants: &[&str] = match row.scope {
                Scope::Tenant => &[OWN, OTHER],
                Scope::Global => &["*"],
            };
            for tenant in tenants {
                let holds_here = principal.granted_in == "*" || principal.granted_in == *tenant;
                let expected =
                    principal.role.is_some() && holds_here && allowed_pairs.contains(&pair);
                let code = call(&channel, method, tenant).await?;
                calls += 1;
                ensure!(
                    code != Code::Unauthenticated && code != Code::Unimplemented,
                    "{} as {}: {code:?}",
                    method.path,
                    principal.name
                );
                let allowed = code != Code::PermissionDenied;
                if !allowed && (*tenant == OWN) {
                    denials_in_own += 1;
                }
                if allowed != expected {
                    mismatches.push(format!(
                        "{} as {} (role {:?} in {}) in tenant {tenant}: expected {}, got {code:?}",
                        method.path,
                        principal.name,
                        principal.role,
                        principal.granted_in,
                        if expected { "allow" } else { "deny" },
                    ));
                }
            }
        }
    }
    eprintln!(
        "access matrix: {calls} calls, {} RPCs, {} principals, {} mismatches",
        cairn_methods.len(),
        principals.len(),
        mismatches.len()
    );
    ensure!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );

    // Every denial in acme is in acme's denied log, naming the call and never a token. The matrix
    // calls each (principal, method, tenant) once, so each denial is the first of its window: an
    // `access.denied` record of its own, none counted as a repeat.
    let mut logged = Vec::new();
    let mut token = String::new();
    loop {
        let page = admin
            .list_denied(proto::ListDeniedRequest {
                tenant: OWN.into(),
                page: Some(proto::PageRequest {
                    page_size: 500,
                    page_token: token.clone(),
                }),
            })
            .await?
            .into_inner();
        logged.extend(page.calls);
        token = page.page.map(|p| p.next_page_token).unwrap_or_default();
        if token.is_empty() {
            break;
        }
    }
    ensure!(
        logged.len() == denials_in_own,
        "{} denials recorded in {OWN}, {denials_in_own} calls denied there",
        logged.len()
    );
    let bundle = admin
        .get_active_bundle(proto::GetActiveBundleRequest {})
        .await?
        .into_inner();
    for denied in &logged {
        ensure!(denied.principal.starts_with("m."), "{denied:?}");
        ensure!(rpc_access(&denied.method).is_some(), "{denied:?}");
        ensure!(denied.tenant == OWN && denied.bundle_hash == bundle.bundle_hash);
        ensure!(
            denied.repeats == 0,
            "a call denied once counted as a repeat: {denied:?}"
        );
        ensure!(
            !format!("{denied:?}").contains("tok-"),
            "a token was recorded"
        );
    }

    // A token scoped to acme is refused in beta, though its principal is admin everywhere.
    let scoped = auth_channel(&server.url(), "tok-scoped").await?;
    let submit = methods
        .iter()
        .find(|m| m.path == "/cairn.v1.FeedbackService/GetFeedback")
        .context("GetFeedback")?;
    ensure!(call(&scoped, submit, OWN).await? != Code::PermissionDenied);
    ensure!(call(&scoped, submit, OTHER).await? == Code::PermissionDenied);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_valid_credentials_are_unauthenticated_and_record_nothing() -> Result<()> {
    let server = Server::start_temp(&[])?;
    let mut admin = server.client().await?;
    let head = head_position(&mut admin).await?;
    for token in [None, Some("cairn_not-a-token"), Some("tok")] {
        let channel = tonic::transport::Channel::from_shared(server.url())?
            .connect()
            .await?;
        let bearer = match token {
            Some(token) => cairn_grpc::auth::BearerToken::new(token).map_err(anyhow::Error::msg)?,
            None => cairn_grpc::auth::BearerToken::none(),
        };
        let channel = tonic::service::interceptor::InterceptedService::new(channel, bearer);
        for method in served_methods()?
            .iter()
            .filter(|m| m.path.starts_with("/cairn.v1."))
        {
            let code = call(&channel, method, OWN).await?;
            ensure!(
                code == Code::Unauthenticated,
                "{} with {token:?}: {code:?}",
                method.path
            );
        }
    }
    ensure!(
        head_position(&mut admin).await? == head,
        "unauthenticated calls recorded something"
    );
    // Health stays open.
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await?);
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_data_is_redacted_and_acting_for_others_needs_the_right() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let principals = vec![
        Principal {
            name: "m.viewer".into(),
            token: "tok-viewer".into(),
            role: Some("viewer"),
            granted_in: OWN,
        },
        Principal {
            name: "m.steward".into(),
            token: "tok-steward".into(),
            role: Some("steward"),
            granted_in: OWN,
        },
        Principal {
            name: "m.contributor".into(),
            token: "tok-contributor".into(),
            role: Some("contributor"),
            granted_in: OWN,
        },
    ];
    let server = start_server(dir.path(), &principals, "tok-admin")?;
    let mut admin = policy_client(&server, "tok-admin").await?;
    for principal in &principals {
        admin
            .grant(proto::GrantRequest {
                tenant: OWN.into(),
                principal: principal.name.clone(),
                role: format!("role:{}", principal.role.context("a role")?),
                reason: "test".into(),
            })
            .await?;
    }
    let feedback = |token: &'static str| {
        let url = server.url();
        async move {
            Ok::<_, anyhow::Error>(FeedbackServiceClient::new(auth_channel(&url, token).await?))
        }
    };
    let mut contributor = feedback("tok-contributor").await?;
    let submit = |actor: &str| proto::SubmitFeedbackRequest {
        meta: Some(proto::CommandMeta {
            tenant: OWN.into(),
            actor: actor.into(),
            ..Default::default()
        }),
        id: format!("f-{}", actor.len()),
        team: "platform".into(),
        source: proto::FeedbackSource::Survey as i32,
        text: "the build is slow, says carol".into(),
        submitter: "user:carol".into(),
        visibility: proto::Visibility::Team as i32,
        ..Default::default()
    };
    // On behalf of someone else: denied (only admin may act for others).
    let refused = contributor.submit_feedback(submit("user:someone")).await;
    match refused {
        Err(status) if status.code() == Code::PermissionDenied => {}
        other => bail!("acting for another principal: {other:?}"),
    }
    // As itself (the actor defaults to the caller).
    let receipt = contributor.submit_feedback(submit("")).await?.into_inner();
    let read = |include_personal| proto::GetFeedbackRequest {
        tenant: OWN.into(),
        read: Some(proto::ReadOptions {
            at_least_position: Some(receipt.last_position),
            include_personal,
            ..Default::default()
        }),
        id: "f-0".into(),
    };
    let viewed = feedback("tok-viewer")
        .await?
        .get_feedback(read(true))
        .await?
        .into_inner()
        .feedback
        .context("feedback")?;
    ensure!(
        !format!("{viewed:?}").contains("the build is slow"),
        "a viewer read personal data: {viewed:?}"
    );
    let opened = feedback("tok-steward")
        .await?
        .get_feedback(read(true))
        .await?
        .into_inner()
        .feedback
        .context("feedback")?;
    ensure!(
        format!("{opened:?}").contains("the build is slow"),
        "a steward could not read personal data: {opened:?}"
    );
    Ok(())
}

/// Every record of a tenant's denied log.
async fn denied_log(
    admin: &mut PolicyServiceClient<AuthChannel>,
    tenant: &str,
) -> Result<Vec<proto::DeniedCall>> {
    let mut logged = Vec::new();
    let mut token = String::new();
    loop {
        let page = admin
            .list_denied(proto::ListDeniedRequest {
                tenant: tenant.into(),
                page: Some(proto::PageRequest {
                    page_size: 500,
                    page_token: token.clone(),
                }),
            })
            .await?
            .into_inner();
        logged.extend(page.calls);
        token = page.page.map(|p| p.next_page_token).unwrap_or_default();
        if token.is_empty() {
            return Ok(logged);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_denials_are_counted_recorded_at_shutdown_and_a_kill_loses_only_counts()
-> Result<()> {
    let dir = tempfile::tempdir()?;
    let viewer = Principal {
        name: "m.viewer".into(),
        token: "tok-viewer".into(),
        role: Some("viewer"),
        granted_in: OWN,
    };
    let mut server = start_server(dir.path(), std::slice::from_ref(&viewer), "tok-admin")?;
    policy_client(&server, "tok-admin")
        .await?
        .grant(proto::GrantRequest {
            tenant: OWN.into(),
            principal: viewer.name.clone(),
            role: "role:viewer".into(),
            reason: "test".into(),
        })
        .await?;
    let submit = proto::SubmitFeedbackRequest {
        meta: Some(proto::CommandMeta {
            tenant: OWN.into(),
            ..Default::default()
        }),
        id: "f-1".into(),
        team: "platform".into(),
        source: proto::FeedbackSource::Survey as i32,
        text: "slow".into(),
        submitter: "user:carol".into(),
        visibility: proto::Visibility::Team as i32,
        ..Default::default()
    };
    // A viewer may not submit feedback: each call is denied.
    let deny = |url: String, times: usize| {
        let submit = submit.clone();
        async move {
            let mut client = FeedbackServiceClient::new(auth_channel(&url, "tok-viewer").await?);
            for _ in 0..times {
                match client.submit_feedback(submit.clone()).await {
                    Err(status) if status.code() == Code::PermissionDenied => {}
                    other => bail!("a viewer submitting feedback: {other:?}"),
                }
            }
            Ok::<_, anyhow::Error>(())
        }
    };
    let method = "/cairn.v1.FeedbackService/SubmitFeedback";
    deny(server.url(), 5).await?;
    // The first denial is recorded before the caller is told; the four repeats are counted in
    // its window (the server's is a minute: the calls counted together here are a few
    // milliseconds apart).
    let mut admin = policy_client(&server, "tok-admin").await?;
    let logged = denied_log(&mut admin, OWN).await?;
    ensure!(logged.len() == 1, "{logged:#?}");
    ensure!(
        logged[0].principal == viewer.name && logged[0].method == method && logged[0].repeats == 0,
        "{logged:#?}"
    );

    // A graceful shutdown records the repeats still counted.
    let status = server.terminate()?;
    ensure!(
        status.success(),
        "{status}
{}",
        server.stderr()
    );
    server.restart()?;
    let mut admin = policy_client(&server, "tok-admin").await?;
    let logged = denied_log(&mut admin, OWN).await?;
    ensure!(logged.len() == 2, "{logged:#?}");
    let repeated = &logged[1];
    ensure!(
        repeated.principal == viewer.name
            && repeated.method == method
            && repeated.object == "feedback"
            && repeated.action == "write"
            && repeated.tenant == OWN
            && repeated.bundle_hash == logged[0].bundle_hash
            && repeated.repeats == 4,
        "{logged:#?}"
    );
    ensure!(
        0 < repeated.first_repeat_at_micros
            && repeated.first_repeat_at_micros <= repeated.last_repeat_at_micros,
        "{logged:#?}"
    );
    // Each `access.denied` stands for its call, each repeated record for its repeats.
    let total: u64 = logged.iter().map(|call| call.repeats.max(1)).sum();
    ensure!(total == 5, "{total} denials recorded, 5 calls denied");

    // A SIGKILL loses the repeats counted in memory, never the first denial of a window.
    deny(server.url(), 3).await?;
    server.kill()?;
    server.restart()?;
    let mut admin = policy_client(&server, "tok-admin").await?;
    let logged = denied_log(&mut admin, OWN).await?;
    ensure!(
        logged.len() == 3 && logged[2].repeats == 0 && logged[2].method == method,
        "{logged:#?}"
    );
    Ok(())
}

fn workspace_policies() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

/// The repository's bundle, copied.
fn policies_copy() -> Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    for folder in ["access", "tests", "retention", "scoring"] {
        std::fs::create_dir_all(dir.path().join(folder))?;
        for entry in std::fs::read_dir(workspace_policies().join(folder))? {
            let path = entry?.path();
            let name = path.file_name().context("a file name")?;
            std::fs::copy(&path, dir.path().join(folder).join(name))?;
        }
    }
    Ok(dir)
}

/// Waits until `ready` holds, with a deadline that only turns a hang into a failure.
async fn eventually<F, Fut>(what: &str, mut ready: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let started = std::time::Instant::now();
    while !ready().await? {
        ensure!(
            started.elapsed() < cairn_e2e::PROCESS_DEADLINE,
            "{what} did not happen"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_bundle_and_a_bad_bundle_is_refused_keeping_the_active_one() -> Result<()>
{
    let policies = policies_copy()?;
    let policies_arg = policies.path().to_str().context("utf-8 path")?;
    let server = Server::start_temp(&["--policies", policies_arg])?;
    let token = server.token()?;
    let mut admin = policy_client(&server, &token).await?;
    let first = admin
        .get_active_bundle(proto::GetActiveBundleRequest {})
        .await?
        .into_inner();
    ensure!(
        first.source == policies_arg && first.git_commit.is_empty(),
        "{first:?}"
    );
    let newbie = || proto::CheckRequest {
        tenant: OWN.into(),
        request: Some(proto::AccessRequest {
            principal: "user:newbie".into(),
            tenant: OWN.into(),
            object: "feedback".into(),
            action: "read".into(),
        }),
    };
    let verdict = admin
        .check(newbie())
        .await?
        .into_inner()
        .verdict
        .context("verdict")?;
    ensure!(!verdict.allowed, "{verdict:?}");
    // A check about no one tenant, by someone who may read the policy everywhere.
    let global = admin
        .check(proto::CheckRequest {
            tenant: "*".into(),
            request: Some(proto::AccessRequest {
                principal: "cairn:admin".into(),
                tenant: "*".into(),
                object: "policy".into(),
                action: "admin".into(),
            }),
        })
        .await?
        .into_inner()
        .verdict
        .context("verdict")?;
    ensure!(global.allowed && !global.rule.is_empty(), "{global:?}");

    // A new row, then SIGHUP: the new bundle comes into force.
    let policy = policies.path().join("access/policy.csv");
    let mut rows = std::fs::read_to_string(&policy)?;
    rows.push_str("g, user:newbie, role:viewer, acme\n");
    std::fs::write(&policy, &rows)?;
    let pid = server.pid().context("running")?.to_string();
    let hangup = || {
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
    };
    ensure!(hangup()?.success());
    let mut client = admin.clone();
    eventually("the reload", || {
        let mut client = client.clone();
        let first = first.bundle_hash.clone();
        async move {
            let now = client
                .get_active_bundle(proto::GetActiveBundleRequest {})
                .await?
                .into_inner();
            Ok(now.bundle_hash != first)
        }
    })
    .await?;
    let verdict = client
        .check(newbie())
        .await?
        .into_inner()
        .verdict
        .context("verdict")?;
    ensure!(verdict.allowed && !verdict.rule.is_empty(), "{verdict:?}");
    let second = client
        .get_active_bundle(proto::GetActiveBundleRequest {})
        .await?
        .into_inner();
    ensure!(second.activated_at_position > first.activated_at_position);

    // A bundle that does not parse is refused on SIGHUP; the active one stays, and the refusal is
    // recorded.
    std::fs::write(&policy, "p, role:viewer, acme, feedback\n")?;
    ensure!(hangup()?.success());
    let ledger = server.client().await?;
    let refused_recorded = || {
        let mut ledger = ledger.clone();
        async move {
            let records = ledger
                .read_stream(proto::ReadStreamRequest {
                    stream: Some(cairn_e2e::stream_ref("cairn-system", "policy", "bundle")),
                    from_version: 1,
                    limit: 100,
                    include_personal: false,
                })
                .await?
                .into_inner()
                .records;
            Ok(records
                .iter()
                .any(|record| record.event_type == "policy.refused"))
        }
    };
    eventually("the recorded refusal", refused_recorded).await?;
    let third = client
        .get_active_bundle(proto::GetActiveBundleRequest {})
        .await?
        .into_inner();
    ensure!(
        third.bundle_hash == second.bundle_hash,
        "the refused bundle came into force"
    );
    // The same through the RPC: FAILED_PRECONDITION.
    match client.reload(proto::ReloadRequest {}).await {
        Err(status) if status.code() == Code::FailedPrecondition => {}
        other => bail!("reloading a broken bundle: {other:?}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundle_in_a_git_checkout_names_its_commit() -> Result<()> {
    let policies = workspace_policies().canonicalize()?;
    let Ok(head) = std::process::Command::new("git")
        .args([
            "-C",
            policies.to_str().context("utf-8 path")?,
            "rev-parse",
            "HEAD",
        ])
        .output()
    else {
        bail!("git is needed to check the commit the bundle names");
    };
    ensure!(head.status.success(), "not a git checkout: {head:?}");
    let commit = String::from_utf8(head.stdout)?.trim().to_owned();
    let server = Server::start_temp(&["--policies", policies.to_str().context("utf-8")?])?;
    let mut admin = policy_client(&server, &server.token()?).await?;
    let bundle = admin
        .get_active_bundle(proto::GetActiveBundleRequest {})
        .await?
        .into_inner();
    ensure!(
        bundle.git_commit == commit,
        "{} != {commit}",
        bundle.git_commit
    );
    ensure!(bundle.tests_passed >= 100, "{bundle:?}");
    Ok(())
}

#[test]
fn cairn_policy_test_passes_the_repository_bundle_and_names_a_failing_row() -> Result<()> {
    let repository = workspace_policies();
    let passed = cairn_e2e::run_cairn([
        "policy".as_ref(),
        "test".as_ref(),
        "--dir".as_ref(),
        repository.as_os_str(),
    ])?;
    ensure!(passed.status.success(), "{passed}");
    ensure!(passed.stdout.contains("policy tests passed"), "{passed}");

    let broken = policies_copy()?;
    let rows = broken.path().join("tests/access.csv");
    let mut text = std::fs::read_to_string(&rows)?;
    let line = text.lines().count() + 1;
    text.push_str("user:dave, globex, decision, decide, allow\n");
    std::fs::write(&rows, text)?;
    let failed = cairn_e2e::run_cairn([
        "policy".as_ref(),
        "test".as_ref(),
        "--dir".as_ref(),
        broken.path().as_os_str(),
    ])?;
    ensure!(!failed.status.success(), "a failing row passed:\n{failed}");
    ensure!(
        failed.text().contains(&format!("tests/access.csv:{line}")),
        "the failure does not name its row:\n{failed}"
    );
    Ok(())
}
