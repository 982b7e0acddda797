//! Authentication: a tower layer in front of every service. Each call except health and
//! reflection must present credentials: `authorization: Bearer TOKEN`, where the token file maps
//! the token's hash to a principal and the tenants it may act in, or (mutual TLS, when the server
//! is given a client CA) a client certificate that CA issued, whose subject is the principal (see
//! [`certificate_principal`]), in any tenant: the access policy decides what it may do. A call
//! with both must have them name the same principal; it then keeps the token's tenants. A call
//! without valid credentials is answered UNAUTHENTICATED before any service sees it, and records
//! nothing. An authenticated call carries its [`Caller`] in the request's extensions, where each
//! handler finds it to authorize the call (`Backend::authorize`: the RPC's object and action from
//! `cairn_policy::RPCS`, the tenant the request names).

use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use cairn_service::tokens::{Caller, TenantScope, Tokens};
use futures::future::BoxFuture;
use tonic::Status;
use tonic::body::Body;
use tonic::transport::CertificateDer;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::{Layer, Service};

use crate::access::CallPath;

/// Paths served without credentials: the standard health and reflection services, which say
/// nothing about the ledger.
const OPEN_PREFIXES: &[&str] = &["/grpc.health.v1.", "/grpc.reflection."];

/// Whether a gRPC path is served without credentials.
pub fn is_open(path: &str) -> bool {
    OPEN_PREFIXES.iter().any(|prefix| path.starts_with(prefix))
}

/// The credentials the server accepts; replaceable while it runs (on reload).
#[derive(Debug)]
pub struct Authenticator {
    tokens: RwLock<Arc<Tokens>>,
}

impl Authenticator {
    /// Accepts the tokens of `tokens`.
    pub fn new(tokens: Tokens) -> Authenticator {
        Authenticator {
            tokens: RwLock::new(Arc::new(tokens)),
        }
    }

    /// Replaces the accepted tokens (calls in flight keep the caller they were given).
    pub fn replace(&self, tokens: Tokens) {
        *self.tokens.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(tokens);
    }

    /// The caller a request authenticates as: by its client certificate (`peer_certificate`, the
    /// DER of the end-entity certificate the TLS handshake verified, if the client sent one),
    /// its bearer token, or both, which must then name the same principal.
    pub fn authenticate_call(
        &self,
        headers: &http::HeaderMap,
        peer_certificate: Option<&[u8]>,
    ) -> Result<Caller, Status> {
        let Some(der) = peer_certificate else {
            return self.authenticate(headers);
        };
        let principal = certificate_principal(der).map_err(|reason| {
            Status::unauthenticated(format!("the client certificate is not accepted: {reason}"))
        })?;
        if !headers.contains_key(http::header::AUTHORIZATION) {
            return Ok(Caller {
                principal,
                tenants: TenantScope::Any,
            });
        }
        let caller = self.authenticate(headers)?;
        if caller.principal != principal {
            // Two credentials for two principals: acting as either would ignore the other, so
            // neither is trusted.
            return Err(Status::unauthenticated(format!(
                "the client certificate names {principal:?} but the bearer token belongs to \
                 {:?}: present credentials of one principal",
                caller.principal
            )));
        }
        // The same principal: the token's tenants, which may be narrower than the certificate's.
        Ok(caller)
    }

    /// The caller a request's headers authenticate.
    pub fn authenticate(&self, headers: &http::HeaderMap) -> Result<Caller, Status> {
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Err(Status::unauthenticated(
                "this call needs credentials: send `authorization: Bearer TOKEN`",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|text| text.strip_prefix("Bearer "))
            .ok_or_else(|| {
                Status::unauthenticated("the authorization header must be `Bearer TOKEN`")
            })?;
        let tokens = Arc::clone(&self.tokens.read().unwrap_or_else(|e| e.into_inner()));
        tokens
            .authenticate(token.trim())
            .cloned()
            .ok_or_else(|| Status::unauthenticated("the token is not valid"))
    }
}

/// The principal a client certificate names: the subject's common name (CN); a certificate
/// without one names the first DNS name or URI of its subject alternative names. The name must be
/// a valid principal (`cairn_policy::validate_principal`: `[A-Za-z0-9._:-]`, not a `role:`), so
/// `CN=cairn:admin` or `CN=user:dave` work, and a certificate naming a role, or with two CNs, is
/// refused. The chain, validity and key usage are checked by the TLS handshake, not here.
pub fn certificate_principal(der: &[u8]) -> Result<String, String> {
    use x509_parser::extensions::GeneralName;

    let (_, certificate) = x509_parser::parse_x509_certificate(der)
        .map_err(|error| format!("cannot parse it: {error}"))?;
    let mut common_names = certificate.subject().iter_common_name();
    let name = match (common_names.next(), common_names.next()) {
        (Some(_), Some(_)) => return Err("its subject has more than one common name".into()),
        (Some(common_name), None) => common_name
            .as_str()
            .map_err(|_| "its common name is not a string".to_owned())?
            .to_owned(),
        (None, _) => {
            let names = certificate
                .subject_alternative_name()
                .map_err(|error| format!("cannot read its subject alternative names: {error}"))?;
            names
                .into_iter()
                .flat_map(|extension| extension.value.general_names.iter())
                .find_map(|name| match name {
                    GeneralName::DNSName(name) | GeneralName::URI(name) => Some((*name).to_owned()),
                    _ => None,
                })
                .ok_or_else(|| {
                    "it names no principal: no common name, no DNS or URI subject alternative \
                     name"
                        .to_owned()
                })?
        }
    };
    cairn_policy::validate_principal(&name)
        .map_err(|error| format!("its subject is not a principal: {error}"))?;
    Ok(name)
}

/// The end-entity certificate the client presented on this request's connection, verified by the
/// TLS handshake against the client CA (absent on plain TCP and when the client sent none).
fn peer_certificate<B>(request: &http::Request<B>) -> Option<Arc<Vec<CertificateDer<'static>>>> {
    request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(TlsConnectInfo::peer_certs)
        .filter(|chain| !chain.is_empty())
}

/// The client side: an interceptor that sends `authorization: Bearer TOKEN` on every call
/// (`XServiceClient::with_interceptor(channel, BearerToken::new(token)?)`).
#[derive(Clone)]
pub struct BearerToken {
    header: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.write_str("BearerToken(..)")
    }
}

impl BearerToken {
    /// A token to present; an error if it cannot be sent as a header (not visible ASCII).
    pub fn new(token: &str) -> Result<BearerToken, String> {
        let token = token.trim();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("a token is visible ASCII without spaces".into());
        }
        let header = format!("Bearer {token}")
            .parse()
            .map_err(|_| "a token is visible ASCII without spaces".to_owned())?;
        Ok(BearerToken {
            header: Some(header),
        })
    }

    /// No credentials: calls are sent without an authorization header.
    pub fn none() -> BearerToken {
        BearerToken { header: None }
    }
}

impl tonic::service::Interceptor for BearerToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(header) = &self.header {
            request
                .metadata_mut()
                .insert("authorization", header.clone());
        }
        Ok(request)
    }
}

/// A channel that presents a bearer token on every call.
pub type AuthChannel =
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, BearerToken>;

/// The layer that authenticates every call.
#[derive(Clone, Debug)]
pub struct AuthLayer {
    authenticator: Arc<Authenticator>,
}

impl AuthLayer {
    /// Authenticates with `authenticator`.
    pub fn new(authenticator: Arc<Authenticator>) -> AuthLayer {
        AuthLayer { authenticator }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            authenticator: Arc::clone(&self.authenticator),
        }
    }
}

/// The service [`AuthLayer`] wraps around the router.
#[derive(Clone, Debug)]
pub struct AuthService<S> {
    inner: S,
    authenticator: Arc<Authenticator>,
}

impl<S, B> Service<http::Request<B>> for AuthService<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The clone is the one that is ready: take it, leave the fresh clone for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if is_open(request.uri().path()) {
            return Box::pin(inner.call(request));
        }
        let chain = peer_certificate(&request);
        let end_entity = chain.as_ref().map(|chain| chain[0].as_ref());
        match self
            .authenticator
            .authenticate_call(request.headers(), end_entity)
        {
            Ok(caller) => {
                let path = CallPath(Arc::from(request.uri().path()));
                request.extensions_mut().insert(caller);
                request.extensions_mut().insert(path);
                Box::pin(inner.call(request))
            }
            Err(status) => Box::pin(async move { Ok(status.into_http()) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use cairn_service::tokens::{TenantScope, new_token};

    use super::*;

    fn headers(value: Option<&str>) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        if let Some(value) = value {
            headers.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn only_a_known_bearer_token_authenticates() {
        let token = new_token();
        let caller = Caller {
            principal: "alice".into(),
            tenants: TenantScope::Any,
        };
        let authenticator = Authenticator::new(Tokens::single(&token, caller.clone()));
        let bearer = format!("Bearer {token}");
        assert_eq!(
            authenticator.authenticate(&headers(Some(&bearer))).unwrap(),
            caller
        );
        for bad in [
            None,
            Some(token.as_str()),
            Some("Bearer "),
            Some("Basic YWxpY2U6cGFzcw=="),
            Some("Bearer cairn_0000"),
        ] {
            let status = authenticator.authenticate(&headers(bad)).unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{bad:?}");
            // The answer never echoes what was sent.
            assert!(!status.message().contains(&token));
        }
        authenticator.replace(Tokens::default());
        assert!(authenticator.authenticate(&headers(Some(&bearer))).is_err());
    }

    /// The DER of a self-signed certificate with these common names and alternative names.
    fn certificate(common_names: &[&str], alt_names: &[rcgen::SanType]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "cairn tests");
        for name in common_names {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, *name);
        }
        params.subject_alt_names = alt_names.to_vec();
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn dns(name: &str) -> rcgen::SanType {
        rcgen::SanType::DnsName(name.try_into().unwrap())
    }

    fn uri(name: &str) -> rcgen::SanType {
        rcgen::SanType::URI(name.try_into().unwrap())
    }

    #[test]
    fn the_common_name_is_the_principal_else_the_first_dns_or_uri_name() {
        let principal = |common_names: &[&str], alt_names: &[rcgen::SanType]| {
            certificate_principal(&certificate(common_names, alt_names))
        };
        assert_eq!(principal(&["cairn:admin"], &[]).unwrap(), "cairn:admin");
        // The common name wins over the alternative names.
        assert_eq!(
            principal(&["user:dave"], &[dns("svc.example")]).unwrap(),
            "user:dave"
        );
        // Without one, the first DNS or URI name, whatever comes before it.
        let ip = rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap());
        assert_eq!(
            principal(&[], &[ip.clone(), dns("importer.acme"), uri("svc:b")]).unwrap(),
            "importer.acme"
        );
        assert_eq!(
            principal(&[], &[ip.clone(), uri("svc:b")]).unwrap(),
            "svc:b"
        );
        // Nothing that names a principal, a role, or a name casbin cannot hold. (Two common names
        // are refused too, but rcgen keeps one name per attribute type, so none is built here.)
        for (common_names, alt_names) in [
            (&[][..], &[ip][..]),
            (&[], &[]),
            (&["role:admin"], &[]),
            (&["Dave Smith"], &[]),
            (&["a::b"], &[]),
            (&[], &[uri("spiffe://acme/importer")]),
        ] {
            assert!(
                principal(common_names, alt_names).is_err(),
                "{common_names:?} {alt_names:?}"
            );
        }
        assert!(certificate_principal(b"not a certificate").is_err());
    }

    #[test]
    fn a_certificate_and_a_token_must_name_one_principal() {
        let token = new_token();
        let scoped = Caller {
            principal: "user:dave".into(),
            tenants: TenantScope::Only(["globex".to_owned()].into()),
        };
        let authenticator = Authenticator::new(Tokens::single(&token, scoped.clone()));
        let bearer = format!("Bearer {token}");
        let dave = certificate(&["user:dave"], &[]);
        let admin = certificate(&["cairn:admin"], &[]);
        // A certificate alone: its subject, in any tenant (the policy decides).
        assert_eq!(
            authenticator
                .authenticate_call(&headers(None), Some(&admin))
                .unwrap(),
            Caller {
                principal: "cairn:admin".into(),
                tenants: TenantScope::Any,
            }
        );
        // Both, for one principal: the token's narrower tenants.
        assert_eq!(
            authenticator
                .authenticate_call(&headers(Some(&bearer)), Some(&dave))
                .unwrap(),
            scoped
        );
        // Both, for two principals; or a bad token beside a good certificate.
        for (value, certificate) in [(bearer.as_str(), &admin), ("Bearer cairn_0000", &dave)] {
            let status = authenticator
                .authenticate_call(&headers(Some(value)), Some(certificate))
                .unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated);
            assert!(!status.message().contains(&token));
        }
        // A certificate that names no principal is refused, even with a good token.
        let role = certificate(&["role:admin"], &[]);
        let status = authenticator
            .authenticate_call(&headers(Some(&bearer)), Some(&role))
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        // No certificate: the token alone, as before.
        assert_eq!(
            authenticator
                .authenticate_call(&headers(Some(&bearer)), None)
                .unwrap(),
            scoped
        );
    }

    #[test]
    fn health_and_reflection_are_open_and_nothing_else_is() {
        assert!(is_open("/grpc.health.v1.Health/Check"));
        assert!(is_open(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
        ));
        assert!(is_open(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
        ));
        assert!(!is_open("/cairn.v1.LedgerService/Append"));
        assert!(!is_open("/grpc.health.v2.Health/Check/../../cairn.v1"));
    }
}
