//! The shared credentials file of the SDKs (`~/.alibabacloud/credentials`, INI).

use super::sts::{AssumeRole, AssumeRoleFetch, StsClient};
use super::{failed, session_name, Clock, CredentialsError, CredentialsProvider, Imds, Oidc, Refreshing, Static};
use crate::{Credentials, Env};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

pub struct IniProfile;

const NAME: &str = "profile";

/// Sections of an INI file; `#`/`;` start comments, and a `#` inside a value ends it (as the Python SDK reads it).
pub(crate) fn parse_ini(text: &str) -> HashMap<String, HashMap<String, String>> {
    let mut sections: HashMap<String, HashMap<String, String>> = HashMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim().to_string();
            sections.entry(name.clone()).or_default();
            current = Some(name);
        } else if let (Some(section), Some((k, v))) = (&current, line.split_once('=')) {
            let v = v.split('#').next().unwrap_or("").trim();
            sections.entry(section.clone()).or_default().insert(k.trim().to_string(), v.to_string());
        }
    }
    sections
}

impl IniProfile {
    /// `ALIBABA_CLOUD_CREDENTIALS_FILE`, else `~/.alibabacloud/credentials` (or `credentials.ini`, the Python SDK's name).
    pub fn path(env: &Env) -> Option<PathBuf> {
        if let Some(p) = env.get("ALIBABA_CLOUD_CREDENTIALS_FILE") {
            return Some(PathBuf::from(p));
        }
        let dir = env.home.as_ref()?.join(".alibabacloud");
        let plain = dir.join("credentials");
        Some(if !plain.exists() && dir.join("credentials.ini").exists() { dir.join("credentials.ini") } else { plain })
    }

    /// The provider for section `ALIBABA_CLOUD_PROFILE` (default `default`); `None` when the file or section is absent
    /// or the section says `enable = false`.
    pub fn from_env(env: &Env, clock: Clock) -> Option<Result<Arc<dyn CredentialsProvider>, CredentialsError>> {
        let path = Self::path(env)?;
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => return Some(Err(failed(NAME, format!("cannot read {}: {e}", path.display())))),
        };
        let profile = env.get("ALIBABA_CLOUD_PROFILE").unwrap_or("default").to_string();
        let sections = parse_ini(&text);
        let section = sections.get(&profile)?;
        if section.get("enable").is_some_and(|v| v.eq_ignore_ascii_case("false")) {
            return None;
        }
        Some(Self::provider(env, section, &profile, &path, clock))
    }

    fn provider(
        env: &Env,
        s: &HashMap<String, String>,
        profile: &str,
        path: &std::path::Path,
        clock: Clock,
    ) -> Result<Arc<dyn CredentialsProvider>, CredentialsError> {
        let kind = s.get("type").map(String::as_str).unwrap_or("");
        let name = format!("{NAME}/{kind} ({profile})");
        let get = |k: &str| s.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let need = |k: &str| {
            get(k)
                .map(str::to_string)
                .ok_or_else(|| failed(&name, format!("[{profile}] in {} has no {k}", path.display())))
        };
        Ok(match kind {
            "access_key" => {
                Arc::new(Static::new(Credentials::new(need("access_key_id")?, need("access_key_secret")?), name))
            }
            "sts" => Arc::new(Static::new(
                Credentials::new(need("access_key_id")?, need("access_key_secret")?)
                    .with_token(need("security_token")?),
                name,
            )),
            "ram_role_arn" => {
                let base = Credentials::new(need("access_key_id")?, need("access_key_secret")?);
                let params = AssumeRole {
                    role_arn: need("role_arn")?,
                    session_name: get("role_session_name").map_or_else(|| session_name(&clock), str::to_string),
                    duration_seconds: get("duration_seconds")
                        .and_then(|d| d.parse().ok())
                        .filter(|d| *d >= 900)
                        .unwrap_or(3600),
                    policy: get("policy").map(str::to_string),
                    external_id: get("external_id").map(str::to_string),
                };
                let fetch = AssumeRoleFetch {
                    sts: StsClient::new(env, get("sts_region"), clock.clone())?,
                    base: Arc::new(Static::new(base, "profile/access_key")),
                    params,
                };
                Arc::new(Refreshing::new(fetch, name, clock))
            }
            "ecs_ram_role" => Arc::new(Refreshing::new(Imds::new(env, get("role_name"))?, name, clock)),
            "oidc_role_arn" => {
                let oidc = Oidc::new(
                    env,
                    &need("role_arn")?,
                    &need("oidc_provider_arn")?,
                    &need("oidc_token_file_path")?,
                    get("role_session_name"),
                    get("sts_region"),
                    clock.clone(),
                )?;
                Arc::new(Refreshing::new(oidc, name, clock))
            }
            other => {
                return Err(failed(
                    NAME,
                    format!("[{profile}] in {} has type {other:?}, which imgport does not support", path.display()),
                ))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_parsing() {
        let s = parse_ini("# c\n[default]\ntype = access_key # inline\naccess_key_id=a\n; c\n[other]\nenable=false\n");
        assert_eq!(s.get("default").and_then(|d| d.get("type")).map(String::as_str), Some("access_key"));
        assert_eq!(s.get("default").and_then(|d| d.get("access_key_id")).map(String::as_str), Some("a"));
        assert_eq!(s.get("other").and_then(|d| d.get("enable")).map(String::as_str), Some("false"));
    }
}
