//! STS: AssumeRole (RPC V1 signed) and AssumeRoleWithOIDC (anonymous, the OIDC token is the proof).

use super::{failed, http_client, nonce, Clock, CredentialsError};
use crate::endpoints::{self, Endpoint, OssNetwork, Service};
use crate::sign::rpc_v1;
use crate::time::parse_iso8601;
use crate::{encode, Credentials, Env};
use serde::Deserialize;
use std::time::Duration;

pub const VERSION: &str = "2015-04-01";

/// An STS endpoint with its HTTP client.
#[derive(Clone)]
pub struct StsClient {
    pub endpoint: Endpoint,
    http: reqwest::Client,
    clock: Clock,
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

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct StsError {
    code: String,
    message: String,
    request_id: String,
}

impl StsClient {
    /// The endpoint comes from `IMGPORT_STS_ENDPOINT`, or `region` / `ALIBABA_CLOUD_STS_REGION`, or the global one.
    pub fn new(env: &Env, region: Option<&str>, clock: Clock) -> Result<Self, CredentialsError> {
        let endpoint =
            endpoints::resolve(Service::Sts, region, OssNetwork::Public, None, env).map_err(|m| failed("sts", m))?;
        let http = http_client("sts", Duration::from_secs(5), Duration::from_secs(15))?;
        Ok(StsClient { endpoint, http, clock })
    }

    /// AssumeRole with the given (usually long-term) credentials.
    pub async fn assume_role(&self, creds: &Credentials, p: &AssumeRole) -> Result<Credentials, CredentialsError> {
        let mut params: Vec<(String, String)> = [
            ("Action", "AssumeRole"),
            ("Format", "JSON"),
            ("Version", VERSION),
            ("RoleArn", p.role_arn.as_str()),
            ("RoleSessionName", p.session_name.as_str()),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        params.push(("DurationSeconds".into(), p.duration_seconds.to_string()));
        if let Some(policy) = &p.policy {
            params.push(("Policy".into(), policy.clone()));
        }
        if let Some(ext) = &p.external_id {
            params.push(("ExternalId".into(), ext.clone()));
        }
        rpc_v1::sign(&mut params, "GET", creds, (self.clock)(), &nonce());
        let url = format!("{}/?{}", self.endpoint.url(), encode::format_query(&params));
        let resp = self.http.get(url).send().await;
        self.credentials_from("AssumeRole", resp).await
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
        let time = crate::time::UtcTime::from_unix((self.clock)()).iso8601();
        let query: Vec<(String, String)> =
            [("Action", "AssumeRoleWithOIDC"), ("Format", "JSON"), ("Version", VERSION), ("Timestamp", time.as_str())]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let mut body: Vec<(String, String)> = vec![
            ("RoleArn".into(), role_arn.into()),
            ("OIDCProviderArn".into(), provider_arn.into()),
            ("OIDCToken".into(), token.into()),
            ("RoleSessionName".into(), session_name.into()),
            ("DurationSeconds".into(), duration_seconds.to_string()),
        ];
        if let Some(p) = policy {
            body.push(("Policy".into(), p.into()));
        }
        let url = format!("{}/?{}", self.endpoint.url(), encode::format_query(&query));
        let resp = self
            .http
            .post(url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(encode::format_query(&body))
            .send()
            .await;
        self.credentials_from("AssumeRoleWithOIDC", resp).await
    }

    async fn credentials_from(
        &self,
        action: &str,
        resp: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<Credentials, CredentialsError> {
        let where_ = format!("STS {action} at {}", self.endpoint.url());
        // reqwest errors name the URL, and the RPC V1 URL carries the signature: strip it.
        let resp = resp.map_err(|e| failed("sts", format!("{where_}: {}", e.without_url())))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| failed("sts", format!("{where_}: {}", e.without_url())))?;
        if !status.is_success() {
            // Only the error fields are shown: a response body is never echoed.
            let err: StsError = serde_json::from_slice(&body).unwrap_or_default();
            return Err(failed(
                "sts",
                format!(
                    "{where_}: HTTP {} {} {} (RequestId {})",
                    status.as_u16(),
                    err.code,
                    err.message,
                    err.request_id
                ),
            ));
        }
        let parsed: StsResponse =
            serde_json::from_slice(&body).map_err(|_| failed("sts", format!("{where_}: unreadable response")))?;
        let c = parsed.credentials.ok_or_else(|| failed("sts", format!("{where_}: no Credentials in the response")))?;
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
