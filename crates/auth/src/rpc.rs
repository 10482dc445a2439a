//! The client of Alibaba Cloud's RPC-style APIs (STS, ECS, RAM): signs each attempt (RPC V1 or ACS3), sends it
//! with retries and clock correction, deserialises the JSON answer into the caller's type, and turns an error
//! answer (`{Code, Message, RequestId}`) into an [`RpcError`] that keeps the RequestId for support.

use crate::endpoints::{Endpoint, Service};
use crate::provider::{nonce, Clock, CredentialsError, CredentialsProvider};
use crate::sign::{acs3, rpc_v1, sha256_hex};
use crate::{encode, time, Credentials, SignableRequest};
use imgport_net::http::{describe_transport_error, ClientOptions};
use imgport_net::retry::{Hooks, RetryClass, RetryPolicy, Retryable};
use imgport_net::ClockOffset;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// How requests are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// RPC V1: HMAC-SHA1 over the sorted parameters, the signature a parameter itself (STS, RAM).
    RpcV1,
    /// ACS3-HMAC-SHA256: a canonical request, the signature in `Authorization` (ECS).
    Acs3,
}

/// Where the parameters of a call travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// GET, every parameter in the query string.
    Query,
    /// POST, the action's parameters in a form body (long values such as an OIDC token or a policy); the
    /// common ones (`Action`, `Version`, the signature's) stay in the query string.
    Form,
}

/// Who signs a call.
#[derive(Clone, Copy)]
pub enum Signer<'a> {
    /// The client's credentials provider (see [`RpcClient::with_credentials`]).
    Provider,
    /// These credentials (STS AssumeRole with a profile's base credentials).
    Fixed(&'a Credentials),
    /// Nobody: the call carries its own proof (AssumeRoleWithOIDC).
    Anonymous,
}

/// A failed call. Messages never hold a secret or a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// The service answered with an error status.
    #[error("{0}")]
    Service(Box<ServiceError>),
    /// No usable answer: connect, send, receive or timeout failures.
    #[error("{service} {action} at {endpoint}: {message}")]
    Transport { service: String, action: String, endpoint: String, message: String },
    /// A success answer that does not deserialise.
    #[error("{service} {action} at {endpoint}: unreadable response")]
    Unreadable { service: String, action: String, endpoint: String },
    /// No credentials to sign with.
    #[error("{0}")]
    Credentials(#[from] CredentialsError),
}

impl RpcError {
    /// The error's stable kind.
    pub fn kind(&self) -> crate::ErrorKind {
        match self {
            RpcError::Service(_) => crate::ErrorKind::Service,
            RpcError::Transport { .. } => crate::ErrorKind::Transport,
            RpcError::Unreadable { .. } => crate::ErrorKind::InvalidResponse,
            RpcError::Credentials(e) => e.kind(),
        }
    }
}

/// An error answer: what the service said, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{service} {action} at {endpoint}: HTTP {status} {code} {message} (RequestId {request_id})")]
pub struct ServiceError {
    pub service: String,
    pub action: String,
    pub endpoint: String,
    pub status: u16,
    pub code: String,
    pub message: String,
    /// The service's id of the request, for support.
    pub request_id: String,
    /// The answer's `Date` (unix seconds), to correct a skewed clock.
    pub server_time: Option<i64>,
    /// The call was signed by the client's provider, which can fetch other credentials.
    pub refreshable: bool,
}

impl RpcError {
    /// The error answer, when the service gave one.
    pub fn service_error(&self) -> Option<&ServiceError> {
        match self {
            RpcError::Service(e) => Some(e),
            _ => None,
        }
    }

    pub fn code(&self) -> Option<&str> {
        self.service_error().map(|e| e.code.as_str())
    }

    pub fn status(&self) -> Option<u16> {
        self.service_error().map(|e| e.status)
    }

    pub fn request_id(&self) -> Option<&str> {
        self.service_error().map(|e| e.request_id.as_str()).filter(|r| !r.is_empty())
    }
}

impl Retryable for RpcError {
    fn retry_class(&self) -> RetryClass {
        match self {
            RpcError::Transport { .. } => RetryClass::Retry,
            RpcError::Unreadable { .. } | RpcError::Credentials(_) => RetryClass::Fatal,
            RpcError::Service(e) => {
                let (status, code, refreshable) = (&e.status, e.code.as_str(), &e.refreshable);
                if code.starts_with("Throttling") || code == "ServiceUnavailable" || *status == 429 {
                    RetryClass::Throttle
                } else if code == "InvalidTimeStamp.Expired" || code == "RequestTimeTooSkewed" {
                    RetryClass::ClockSkew
                } else if *refreshable
                    && matches!(code, "InvalidSecurityToken.Expired" | "InvalidSecurityToken.Expired.Token")
                {
                    RetryClass::RefreshCredentials
                } else if *status >= 500 || *status == 408 {
                    RetryClass::Retry
                } else {
                    RetryClass::Fatal
                }
            }
        }
    }

    fn server_time(&self) -> Option<i64> {
        self.service_error().and_then(|e| e.server_time)
    }

    fn request_id(&self) -> Option<&str> {
        RpcError::request_id(self)
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ErrorBody {
    code: String,
    message: String,
    request_id: String,
}

/// A client of one service's RPC API at one endpoint.
#[derive(Clone)]
pub struct RpcClient {
    service: Service,
    version: String,
    endpoint: Endpoint,
    style: Style,
    http: reqwest::Client,
    policy: RetryPolicy,
    clock: Clock,
    offset: Arc<ClockOffset>,
    credentials: Option<Arc<dyn CredentialsProvider>>,
}

impl RpcClient {
    /// A client of `service`'s API `version` (`2015-04-01` for STS) at `endpoint` (see
    /// [`crate::endpoints::resolve`]), signing with `style` at the time `clock` reads (corrected for skew).
    pub fn new(
        service: Service,
        version: &str,
        endpoint: Endpoint,
        style: Style,
        clock: Clock,
    ) -> Result<Self, RpcError> {
        let http = ClientOptions::new(Duration::from_secs(5)).total_timeout(Duration::from_secs(30)).build();
        let http = http.map_err(|e| RpcError::Transport {
            service: service_name(service).to_string(),
            action: String::new(),
            endpoint: endpoint.url(),
            message: e.to_string(),
        })?;
        Ok(RpcClient {
            service,
            version: version.to_string(),
            endpoint,
            style,
            http,
            // Throttling is waited out for up to two minutes: ECS counts its limits per minute.
            policy: RetryPolicy::default()
                .with_max_attempts(3)
                .with_throttle_attempts(12)
                .with_deadline(Duration::from_secs(120)),
            clock,
            offset: Arc::new(ClockOffset::new()),
            credentials: None,
        })
    }

    /// Signs [`Signer::Provider`] calls with this provider's credentials.
    pub fn with_credentials(mut self, provider: Arc<dyn CredentialsProvider>) -> Self {
        self.credentials = Some(provider);
        self
    }

    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Bounds each attempt (connect, and connect to last byte).
    pub fn with_timeouts(mut self, connect: Duration, total: Duration) -> Result<Self, RpcError> {
        self.http =
            ClientOptions::new(connect).total_timeout(total).build().map_err(|e| self.transport("", e.to_string()))?;
        Ok(self)
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The same client (credentials, policy, clock correction) at another endpoint: another region's ECS.
    pub fn with_endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoint = endpoint;
        self
    }

    /// Calls `action` with `params` (query string), signed by the client's credentials provider.
    pub async fn call<T: DeserializeOwned>(&self, action: &str, params: &[(&str, &str)]) -> Result<T, RpcError> {
        self.call_with(action, params, Transport::Query, Signer::Provider).await
    }

    /// Calls `action` with `params` sent as `transport` says and signed by `signer`.
    pub async fn call_with<T: DeserializeOwned>(
        &self,
        action: &str,
        params: &[(&str, &str)],
        transport: Transport,
        signer: Signer<'_>,
    ) -> Result<T, RpcError> {
        let hooks = Hooks { clock: Some(&*self.offset), on_retry: None };
        let body = self
            .policy
            .run_with(action, hooks, |attempt| self.attempt(action, params, transport, signer, attempt))
            .await?;
        serde_json::from_slice(&body).map_err(|_| RpcError::Unreadable {
            service: service_name(self.service).to_string(),
            action: action.to_string(),
            endpoint: self.endpoint.url(),
        })
    }

    async fn attempt(
        &self,
        action: &str,
        params: &[(&str, &str)],
        transport: Transport,
        signer: Signer<'_>,
        attempt: u32,
    ) -> Result<Vec<u8>, RpcError> {
        let (creds, refreshable) = match signer {
            Signer::Provider => match &self.credentials {
                Some(p) => (Some(p.credentials().await?), true),
                None => {
                    return Err(crate::provider::failed(service_name(self.service), "no credentials configured").into())
                }
            },
            Signer::Fixed(c) => (Some(c.clone()), false),
            Signer::Anonymous => (None, false),
        };
        let signed_at = (self.clock)() + self.offset.offset();
        let method = match transport {
            Transport::Query => "GET",
            Transport::Form => "POST",
        };
        let own: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let Prepared { query, form, headers } = match self.style {
            Style::RpcV1 => self.rpc_v1(action, own, transport, creds.as_ref(), method, signed_at),
            Style::Acs3 => self.acs3(action, own, transport, creds.as_ref(), method, signed_at),
        };
        let url = format!("{}/?{}", self.endpoint.url(), encode::format_query(&query));
        let mut rb = match transport {
            Transport::Query => self.http.get(url),
            Transport::Form => {
                self.http.post(url).header("Content-Type", "application/x-www-form-urlencoded").body(form.clone())
            }
        };
        for (k, v) in &headers {
            if !k.eq_ignore_ascii_case("host") {
                rb = rb.header(k.as_str(), v.as_str());
            }
        }
        // reqwest errors name the URL, and an RPC V1 URL carries the signature: strip it.
        let resp = rb.send().await.map_err(|e| self.transport(action, describe_transport_error(&e.without_url())))?;
        let status = resp.status().as_u16();
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let (date, header_request_id) = (header("date"), header("x-acs-request-id"));
        let body =
            resp.bytes().await.map_err(|e| self.transport(action, describe_transport_error(&e.without_url())))?;
        if (200..300).contains(&status) {
            if tracing::enabled!(tracing::Level::DEBUG) {
                // The RequestId support asks for: the header's, else the body's (only that field is read).
                let request_id = header_request_id
                    .or_else(|| serde_json::from_slice::<ErrorBody>(&body).ok().map(|b| b.request_id))
                    .unwrap_or_default();
                tracing::debug!(
                    service = service_name(self.service),
                    action,
                    status,
                    request_id = request_id.as_str(),
                    attempt,
                    "call answered"
                );
            }
            return Ok(body.to_vec());
        }
        // Only the error fields are kept: a response body is never echoed.
        let err: ErrorBody = serde_json::from_slice(&body).unwrap_or_default();
        let request_id = if err.request_id.is_empty() { header_request_id.unwrap_or_default() } else { err.request_id };
        tracing::debug!(
            service = service_name(self.service),
            action,
            status,
            code = err.code.as_str(),
            request_id = request_id.as_str(),
            attempt,
            "call refused"
        );
        let error = RpcError::Service(Box::new(ServiceError {
            service: service_name(self.service).to_string(),
            action: action.to_string(),
            endpoint: self.endpoint.url(),
            status,
            code: err.code,
            message: err.message,
            request_id,
            server_time: date.as_deref().and_then(time::parse_http_date),
            refreshable,
        }));
        if error.retry_class() == RetryClass::RefreshCredentials {
            if let (Some(p), Some(c)) = (&self.credentials, &creds) {
                p.invalidate(&c.access_key_id).await;
            }
        }
        Err(error)
    }

    /// RPC V1: `Action`, `Format`, `Version` and the signature's parameters in the query string; the action's in
    /// the query or the form body. Anonymous calls carry a `Timestamp` only.
    fn rpc_v1(
        &self,
        action: &str,
        own: Vec<(String, String)>,
        transport: Transport,
        creds: Option<&Credentials>,
        method: &str,
        time: i64,
    ) -> Prepared {
        let mut common: Vec<(String, String)> = [("Action", action), ("Format", "JSON"), ("Version", &self.version)]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let own_names: Vec<String> = own.iter().map(|(k, _)| k.clone()).collect();
        match creds {
            Some(c) => {
                let mut all = common;
                all.extend(own);
                rpc_v1::sign(&mut all, method, c, time, &nonce());
                match transport {
                    Transport::Query => Prepared { query: all, form: String::new(), headers: vec![] },
                    Transport::Form => {
                        let (body, query): (Vec<_>, Vec<_>) = all.into_iter().partition(|(k, _)| own_names.contains(k));
                        Prepared { query, form: encode::format_query(&body), headers: vec![] }
                    }
                }
            }
            None => {
                common.push(("Timestamp".into(), time::UtcTime::from_unix(time).iso8601()));
                match transport {
                    Transport::Query => {
                        common.extend(own);
                        Prepared { query: common, form: String::new(), headers: vec![] }
                    }
                    Transport::Form => Prepared { query: common, form: encode::format_query(&own), headers: vec![] },
                }
            }
        }
    }

    /// ACS3: the action and version in `x-acs-*` headers, the parameters in the query or the form body, the
    /// signature in `Authorization`.
    fn acs3(
        &self,
        action: &str,
        own: Vec<(String, String)>,
        transport: Transport,
        creds: Option<&Credentials>,
        method: &str,
        time: i64,
    ) -> Prepared {
        let (query, form) = match transport {
            Transport::Query => (own, String::new()),
            Transport::Form => (vec![], encode::format_query(&own)),
        };
        let mut req = SignableRequest::new(method, "/");
        req.query = query;
        req.set_header("host", &self.endpoint.host);
        req.set_header("x-acs-action", action);
        req.set_header("x-acs-version", &self.version);
        if transport == Transport::Form {
            req.set_header("content-type", "application/x-www-form-urlencoded");
        }
        let body_hash = sha256_hex(form.as_bytes());
        match creds {
            Some(c) => acs3::sign(&mut req, c, &body_hash, time, &nonce()),
            None => {
                req.set_header("x-acs-date", &time::UtcTime::from_unix(time).iso8601());
                req.set_header("x-acs-signature-nonce", &nonce());
                req.set_header("x-acs-content-sha256", &body_hash);
            }
        }
        // Content-Type is set by the request builder with the body.
        req.remove_header("content-type");
        Prepared { query: req.query, form, headers: req.headers }
    }

    fn transport(&self, action: &str, message: String) -> RpcError {
        tracing::debug!(service = service_name(self.service), action, error = message.as_str(), "call failed");
        RpcError::Transport {
            service: service_name(self.service).to_string(),
            action: action.to_string(),
            endpoint: self.endpoint.url(),
            message,
        }
    }
}

/// A signed request, ready to send.
struct Prepared {
    query: Vec<(String, String)>,
    /// The form body of a POST (empty for a GET).
    form: String,
    headers: Vec<(String, String)>,
}

/// The service's name in messages.
pub fn service_name(service: Service) -> &'static str {
    match service {
        Service::Oss => "OSS",
        Service::Ecs => "ECS",
        Service::Sts => "STS",
        Service::Ram => "RAM",
    }
}
