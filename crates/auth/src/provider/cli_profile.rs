//! Profiles of the aliyun CLI (`~/.aliyun/config.json`).

use super::sts::{AssumeRole, AssumeRoleFetch, StsClient};
use super::{failed, session_name, Clock, CredentialsError, CredentialsProvider, Imds, Oidc, Refreshing, Static};
use crate::{Credentials, Env};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Config {
    current: String,
    profiles: Vec<Profile>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Profile {
    name: String,
    mode: String,
    access_key_id: String,
    access_key_secret: String,
    sts_token: String,
    ram_role_name: String,
    ram_role_arn: String,
    ram_session_name: String,
    expired_seconds: Option<u32>,
    external_id: String,
    policy: String,
    sts_region: String,
    oidc_provider_arn: String,
    oidc_token_file: String,
}

fn opt(s: &str) -> Option<&str> {
    Some(s).filter(|s| !s.is_empty())
}

pub struct CliProfile;

const NAME: &str = "cli_profile";

impl CliProfile {
    /// The config file: `ALIBABA_CLOUD_CONFIG_FILE` or `~/.aliyun/config.json`.
    pub fn path(env: &Env) -> Option<PathBuf> {
        env.get("ALIBABA_CLOUD_CONFIG_FILE")
            .map(PathBuf::from)
            .or_else(|| env.home.as_ref().map(|h| h.join(".aliyun").join("config.json")))
    }

    /// The provider for the selected profile (`ALIBABA_CLOUD_PROFILE`, else the file's `current`); `None` when there
    /// is no config file or the CLI profile source is disabled (`ALIBABA_CLOUD_CLI_PROFILE_DISABLED`).
    pub fn from_env(env: &Env, clock: Clock) -> Option<Result<Arc<dyn CredentialsProvider>, CredentialsError>> {
        if env.flag("ALIBABA_CLOUD_CLI_PROFILE_DISABLED") {
            return None;
        }
        let path = Self::path(env)?;
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => return Some(Err(failed(NAME, format!("cannot read {}: {e}", path.display())))),
        };
        Some(Self::provider(env, &path, &text, clock))
    }

    fn provider(
        env: &Env,
        path: &std::path::Path,
        text: &str,
        clock: Clock,
    ) -> Result<Arc<dyn CredentialsProvider>, CredentialsError> {
        let config: Config = serde_json::from_str(text)
            .map_err(|e| failed(NAME, format!("{} is not valid JSON (line {})", path.display(), e.line())))?;
        let wanted = env.get("ALIBABA_CLOUD_PROFILE").map(str::to_string).unwrap_or(config.current.clone());
        if wanted.is_empty() {
            return Err(failed(NAME, format!("{} names no current profile", path.display())));
        }
        let p = config
            .profiles
            .iter()
            .find(|p| p.name == wanted)
            .ok_or_else(|| failed(NAME, format!("no profile {wanted:?} in {}", path.display())))?;
        let name = format!("{NAME}/{} ({wanted})", p.mode);
        let need = |v: &str, field: &str| {
            opt(v).map(str::to_string).ok_or_else(|| failed(&name, format!("profile {wanted:?} has no {field}")))
        };
        let provider: Arc<dyn CredentialsProvider> = match p.mode.as_str() {
            "AK" => Arc::new(Static::new(
                Credentials::new(
                    need(&p.access_key_id, "access_key_id")?,
                    need(&p.access_key_secret, "access_key_secret")?,
                ),
                name,
            )),
            "StsToken" => Arc::new(Static::new(
                Credentials::new(
                    need(&p.access_key_id, "access_key_id")?,
                    need(&p.access_key_secret, "access_key_secret")?,
                )
                .with_token(need(&p.sts_token, "sts_token")?),
                name,
            )),
            "RamRoleArn" => {
                let base = Credentials::new(
                    need(&p.access_key_id, "access_key_id")?,
                    need(&p.access_key_secret, "access_key_secret")?,
                );
                let region = opt(&p.sts_region);
                let params = AssumeRole {
                    role_arn: need(&p.ram_role_arn, "ram_role_arn")?,
                    session_name: opt(&p.ram_session_name).map_or_else(|| session_name(&clock), str::to_string),
                    duration_seconds: p.expired_seconds.filter(|s| *s >= 900).unwrap_or(3600),
                    policy: opt(&p.policy).map(str::to_string),
                    external_id: opt(&p.external_id).map(str::to_string),
                };
                let fetch = AssumeRoleFetch {
                    sts: StsClient::new(env, region, clock.clone())?,
                    base: Arc::new(Static::new(base, "cli_profile/AK")),
                    params,
                };
                Arc::new(Refreshing::new(fetch, name, clock))
            }
            "EcsRamRole" => Arc::new(Refreshing::new(Imds::new(env, opt(&p.ram_role_name))?, name, clock)),
            "OIDC" => {
                let oidc = Oidc::new(
                    env,
                    &need(&p.ram_role_arn, "ram_role_arn")?,
                    &need(&p.oidc_provider_arn, "oidc_provider_arn")?,
                    &need(&p.oidc_token_file, "oidc_token_file")?,
                    opt(&p.ram_session_name),
                    opt(&p.sts_region),
                    clock.clone(),
                )?;
                Arc::new(Refreshing::new(oidc, name, clock))
            }
            other => {
                return Err(failed(
                    NAME,
                    format!("profile {wanted:?} has mode {other:?}, which imgport does not support"),
                ))
            }
        };
        Ok(provider)
    }
}
