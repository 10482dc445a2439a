//! ECS instance RAM role credentials from the instance metadata service (IMDSv2 token flow).

use super::{failed, http_client, BoxFuture, CredentialsError, Fetch};
use crate::time::parse_iso8601;
use crate::{Credentials, Env};
use serde::Deserialize;
use std::time::Duration;

pub const DEFAULT_BASE: &str = "http://100.100.100.200";
const CREDENTIALS_PATH: &str = "/latest/meta-data/ram/security-credentials/";
const TOKEN_TTL: &str = "21600";
const REGION_PATH: &str = "/latest/meta-data/region-id";

pub struct Imds {
    /// `http://100.100.100.200`, or `IMGPORT_IMDS_ENDPOINT` (tests, proxies).
    pub base: String,
    /// The role name; asked from the service when not configured.
    pub role: Option<String>,
    /// Refuse the token-less (IMDSv1) fallback.
    pub v2_only: bool,
    http: reqwest::Client,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MetadataCredentials {
    code: String,
    access_key_id: Option<String>,
    access_key_secret: Option<String>,
    security_token: Option<String>,
    expiration: Option<String>,
}

const NAME: &str = "ecs_ram_role";

impl Imds {
    pub fn new(env: &Env, role: Option<&str>) -> Result<Self, CredentialsError> {
        let base = env.get("IMGPORT_IMDS_ENDPOINT").unwrap_or(DEFAULT_BASE).trim_end_matches('/').to_string();
        // The metadata service is one hop away: anything slower means we are not on ECS.
        let http = http_client(NAME, Duration::from_secs(1), Duration::from_secs(5))?;
        Ok(Imds {
            base,
            role: role.or_else(|| env.get("ALIBABA_CLOUD_ECS_METADATA")).map(str::to_string),
            v2_only: env.flag("ALIBABA_CLOUD_IMDSV1_DISABLED"),
            http,
        })
    }

    /// Whether the chain should ask the metadata service: not when disabled; yes when a role or a metadata endpoint
    /// is configured, or when the machine says it is an Alibaba Cloud ECS instance. Elsewhere the address is not
    /// ours to probe, and a laptop would wait on a timeout for nothing.
    pub fn applies(env: &Env) -> bool {
        if env.flag("ALIBABA_CLOUD_ECS_METADATA_DISABLED") {
            return false;
        }
        env.get("ALIBABA_CLOUD_ECS_METADATA").is_some()
            || env.get("IMGPORT_IMDS_ENDPOINT").is_some()
            || env.dmi_product_name.as_deref().is_some_and(|p| p.contains("Alibaba Cloud"))
    }

    async fn token(&self) -> Result<Option<String>, CredentialsError> {
        let resp = self
            .http
            .put(format!("{}/latest/api/token", self.base))
            .header("X-aliyun-ecs-metadata-token-ttl-seconds", TOKEN_TTL)
            .send()
            .await;
        let err = match resp {
            Ok(r) if r.status().is_success() => match r.text().await {
                Ok(t) if !t.trim().is_empty() => return Ok(Some(t.trim().to_string())),
                Ok(_) => "empty token".to_string(),
                Err(e) => e.to_string(),
            },
            Ok(r) => format!("HTTP {}", r.status().as_u16()),
            Err(e) => e.to_string(),
        };
        if self.v2_only {
            Err(failed(NAME, format!("cannot get a metadata token from {}: {err}", self.base)))
        } else {
            Ok(None)
        }
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Result<String, CredentialsError> {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.header("X-aliyun-ecs-metadata-token", t);
        }
        let resp = req.send().await.map_err(|e| failed(NAME, format!("{}{path}: {e}", self.base)))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(failed(NAME, format!("{}{path}: HTTP {}", self.base, status.as_u16())));
        }
        resp.text().await.map_err(|e| failed(NAME, format!("{}{path}: {e}", self.base)))
    }
}

impl Imds {
    /// The instance's region (`/latest/meta-data/region-id`), with the same token flow as the credentials.
    pub async fn region_id(&self) -> Result<String, CredentialsError> {
        let token = self.token().await?;
        let body = self.get(REGION_PATH, token.as_deref()).await?;
        let region = body.trim();
        let shaped = !region.is_empty()
            && region.len() <= 64
            && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !shaped {
            return Err(failed(NAME, format!("{}{REGION_PATH}: not a region id", self.base)));
        }
        Ok(region.to_string())
    }
}

/// The region of the ECS instance imgport runs on, or `None`: not asked where [`Imds::applies`] says no, and
/// `None` when the service does not answer within `timeout` (asked once, no retry).
pub async fn instance_region(env: &Env, timeout: Duration) -> Option<String> {
    if !Imds::applies(env) {
        return None;
    }
    let imds = Imds::new(env, None).ok()?;
    tokio::time::timeout(timeout, imds.region_id()).await.ok()?.ok()
}

impl Fetch for Imds {
    fn fetch(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>> {
        Box::pin(async move {
            let token = self.token().await?;
            let role = match &self.role {
                Some(r) => r.clone(),
                None => {
                    let listed = self.get(CREDENTIALS_PATH, token.as_deref()).await?;
                    listed
                        .lines()
                        .next()
                        .map(str::trim)
                        .filter(|r| !r.is_empty())
                        .map(str::to_string)
                        .ok_or_else(|| failed(NAME, "the instance has no RAM role attached"))?
                }
            };
            let body = self.get(&format!("{CREDENTIALS_PATH}{role}"), token.as_deref()).await?;
            let m: MetadataCredentials = serde_json::from_str(&body)
                .map_err(|_| failed(NAME, format!("unreadable credentials for role {role}")))?;
            if m.code != "Success" {
                return Err(failed(NAME, format!("metadata service answered Code {:?} for role {role}", m.code)));
            }
            match (
                m.access_key_id,
                m.access_key_secret,
                m.security_token,
                m.expiration.as_deref().and_then(parse_iso8601),
            ) {
                (Some(id), Some(secret), Some(token), Some(exp)) => {
                    Ok(Credentials::new(id, secret).with_token(token).with_expiration(exp))
                }
                _ => Err(failed(NAME, format!("incomplete credentials for role {role}"))),
            }
        })
    }
}
