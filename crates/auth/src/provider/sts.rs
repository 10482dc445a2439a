//! STS: AssumeRole (RPC V1 signed) and AssumeRoleWithOIDC (anonymous, the OIDC token is the proof).

use super::{failed, Clock, CredentialsError};
use crate::endpoints::{self, Endpoint, OssNetwork, Service};
use crate::rpc::{RpcClient, RpcError, Signer, Style, Transport};
use crate::time::parse_iso8601;
use crate::{Credentials, Env};
use serde::Deserialize;
use std::time::Duration;

pub const VERSION: &str = "2015-04-01";

/// An STS endpoint with its RPC client.
#[derive(Clone)]
pub struct StsClient {
    pub endpoint: Endpoint,
    rpc: RpcClient,
}

/// Parameters of AssumeRole.
#[derive(Debug, Clone)]
pub struct AssumeRole {
    pub role_arn: String,
    pub session_name: String,
    pub duration_seconds: u32,
    pub policy: Option<String>,
    pub external_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsCredentials {
    access_key_id: String,
    access_key_secret: String,
    security_token: String,
    expiration: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsResponse {
    credentials: Option<StsCredentials>,
}

fn sts_failed(e: RpcError) -> CredentialsError {
    match e {
        RpcError::Credentials(c) => c,
        e => failed("sts", e.to_string()),
    }
}

impl StsClient {
    /// The endpoint comes from `IMGPORT_STS_ENDPOINT`, or `region` / `ALIBABA_CLOUD_STS_REGION`, or the global one.
    pub fn new(env: &Env, region: Option<&str>, clock: Clock) -> Result<Self, CredentialsError> {
        let endpoint =
            endpoints::resolve(Service::Sts, region, OssNetwork::Public, None, env).map_err(|m| failed("sts", m))?;
        let rpc = RpcClient::new(Service::Sts, VERSION, endpoint.clone(), Style::RpcV1, clock)
            .and_then(|c| c.with_timeouts(Duration::from_secs(5), Duration::from_secs(15)))
            .map_err(sts_failed)?;
        Ok(StsClient { endpoint, rpc })
    }

    /// AssumeRole with the given (usually long-term) credentials.
    pub async fn assume_role(&self, creds: &Credentials, p: &AssumeRole) -> Result<Credentials, CredentialsError> {
        let duration = p.duration_seconds.to_string();
        let mut params = vec![
            ("RoleArn", p.role_arn.as_str()),
            ("RoleSessionName", p.session_name.as_str()),
            ("DurationSeconds", duration.as_str()),
        ];
        if let Some(policy) = &p.policy {
            params.push(("Policy", policy));
        }
        if let Some(ext) = &p.external_id {
            params.push(("ExternalId", ext));
        }
        let resp = self.rpc.call_with("AssumeRole", &params, Transport::Query, Signer::Fixed(creds)).await;
        self.credentials_from("AssumeRole", resp)
    }

    /// AssumeRoleWithOIDC: the parameters go in a form body, since OIDC tokens are long.
    pub async fn assume_role_with_oidc(
        &self,
        role_arn: &str,
        provider_arn: &str,
        token: &str,
        session_name: &str,
        duration_seconds: u32,
        policy: Option<&str>,
    ) -> Result<Credentials, CredentialsError> {
        let duration = duration_seconds.to_string();
        let mut params = vec![
            ("RoleArn", role_arn),
            ("OIDCProviderArn", provider_arn),
            ("OIDCToken", token),
            ("RoleSessionName", session_name),
            ("DurationSeconds", duration.as_str()),
        ];
        if let Some(p) = policy {
            params.push(("Policy", p));
        }
        let resp = self.rpc.call_with("AssumeRoleWithOIDC", &params, Transport::Form, Signer::Anonymous).await;
        self.credentials_from("AssumeRoleWithOIDC", resp)
    }

    fn credentials_from(
        &self,
        action: &str,
        resp: Result<StsResponse, RpcError>,
    ) -> Result<Credentials, CredentialsError> {
        let where_ = format!("STS {action} at {}", self.endpoint.url());
        let c = resp
            .map_err(sts_failed)?
            .credentials
            .ok_or_else(|| failed("sts", format!("{where_}: no Credentials in the response")))?;
        let exp = parse_iso8601(&c.expiration)
            .ok_or_else(|| failed("sts", format!("{where_}: bad Expiration {:?}", c.expiration)))?;
        Ok(Credentials::new(c.access_key_id, c.access_key_secret).with_token(c.security_token).with_expiration(exp))
    }
}

/// Fetches role credentials with AssumeRole from base credentials (RamRoleArn profiles).
pub(crate) struct AssumeRoleFetch {
    pub sts: StsClient,
    pub base: std::sync::Arc<dyn super::CredentialsProvider>,
    pub params: AssumeRole,
}

impl super::Fetch for AssumeRoleFetch {
    fn fetch(&self) -> super::BoxFuture<'_, Result<Credentials, CredentialsError>> {
        Box::pin(async move {
            let base = self.base.credentials().await?;
            self.sts.assume_role(&base, &self.params).await
        })
    }
}
