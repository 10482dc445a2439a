//! OIDC / RRSA (ACK pods): exchange the projected service-account token for role credentials.

use super::{failed, session_name, sts::StsClient, BoxFuture, Clock, CredentialsError, Fetch};
use crate::{Credentials, Env};
use std::path::PathBuf;

pub struct Oidc {
    pub role_arn: String,
    pub provider_arn: String,
    pub token_file: PathBuf,
    pub session_name: String,
    pub duration_seconds: u32,
    pub policy: Option<String>,
    sts: StsClient,
}

impl Oidc {
    pub fn new(
        env: &Env,
        role_arn: &str,
        provider_arn: &str,
        token_file: &str,
        session: Option<&str>,
        region: Option<&str>,
        clock: Clock,
    ) -> Result<Self, CredentialsError> {
        Ok(Oidc {
            role_arn: role_arn.to_string(),
            provider_arn: provider_arn.to_string(),
            token_file: PathBuf::from(token_file),
            session_name: session.map_or_else(|| session_name(&clock), str::to_string),
            duration_seconds: 3600,
            policy: None,
            sts: StsClient::new(env, region, clock)?,
        })
    }

    /// From `ALIBABA_CLOUD_ROLE_ARN`, `ALIBABA_CLOUD_OIDC_PROVIDER_ARN` and `ALIBABA_CLOUD_OIDC_TOKEN_FILE`
    /// (all three needed, as in the SDKs) and the optional `ALIBABA_CLOUD_ROLE_SESSION_NAME`.
    pub fn from_env(env: &Env, clock: Clock) -> Option<Result<Self, CredentialsError>> {
        let role = env.get("ALIBABA_CLOUD_ROLE_ARN")?;
        let provider = env.get("ALIBABA_CLOUD_OIDC_PROVIDER_ARN")?;
        let file = env.get("ALIBABA_CLOUD_OIDC_TOKEN_FILE")?;
        Some(Oidc::new(env, role, provider, file, env.get("ALIBABA_CLOUD_ROLE_SESSION_NAME"), None, clock))
    }
}

impl Fetch for Oidc {
    fn fetch(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>> {
        Box::pin(async move {
            // Read on every refresh: the token file is rotated underneath us.
            let token = std::fs::read_to_string(&self.token_file)
                .map_err(|e| failed("oidc_role_arn", format!("cannot read {}: {e}", self.token_file.display())))?;
            let token = token.trim();
            if token.is_empty() {
                return Err(failed("oidc_role_arn", format!("{} is empty", self.token_file.display())));
            }
            self.sts
                .assume_role_with_oidc(
                    &self.role_arn,
                    &self.provider_arn,
                    token,
                    &self.session_name,
                    self.duration_seconds,
                    self.policy.as_deref(),
                )
                .await
        })
    }
}
