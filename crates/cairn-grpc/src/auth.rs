//! Authentication: a tower layer in front of every service. Each call except health and
//! reflection must present `authorization: Bearer TOKEN`; the token file maps the token's hash to
//! a principal and the tenants it may act in. A call without valid credentials is answered
//! UNAUTHENTICATED before any service sees it, and records nothing. An authenticated call carries
//! its [`Caller`] in the request's extensions, where each handler finds it to authorize the call
//! (`Backend::authorize`: the RPC's object and action from `cairn_policy::RPCS`, the tenant the
//! request names).

use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use cairn_service::tokens::{Caller, Tokens};
use futures::future::BoxFuture;
use tonic::Status;
use tonic::body::Body;
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
        match self.authenticator.authenticate(request.headers()) {
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
