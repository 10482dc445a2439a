//! Credentials from environment variables: the SDKs' names, then the ones Packer/Terraform and the OSS SDK use.

use super::{failed, CredentialsError, Static};
use crate::{Credentials, Env};

/// (id, secret, tokens) variable sets, in the order they are consulted.
const SETS: &[(&str, &str, &[&str])] = &[
    ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET", &["ALIBABA_CLOUD_SECURITY_TOKEN"]),
    ("ALICLOUD_ACCESS_KEY", "ALICLOUD_SECRET_KEY", &["ALICLOUD_SECURITY_TOKEN", "SECURITY_TOKEN"]),
    ("OSS_ACCESS_KEY_ID", "OSS_ACCESS_KEY_SECRET", &["OSS_SESSION_TOKEN"]),
];

/// The first complete key pair in the environment. `None` when no set is present at all; an error when an id
/// is set without its secret (or the reverse), which is a mistake worth reporting rather than skipping.
pub fn from_env(env: &Env) -> Option<Result<Static, CredentialsError>> {
    for (id_var, secret_var, token_vars) in SETS {
        match (env.get(id_var), env.get(secret_var)) {
            (Some(id), Some(secret)) => {
                let mut creds = Credentials::new(id, secret);
                if let Some(token) = token_vars.iter().find_map(|t| env.get(t)) {
                    creds = creds.with_token(token);
                }
                return Some(Ok(Static::new(creds, format!("env ({id_var})"))));
            }
            (Some(_), None) => return Some(Err(failed("env", format!("{id_var} is set but {secret_var} is not")))),
            (None, Some(_)) => return Some(Err(failed("env", format!("{secret_var} is set but {id_var} is not")))),
            (None, None) => {}
        }
    }
    None
}
