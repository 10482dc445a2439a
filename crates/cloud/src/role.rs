//! The import role, checked before any upload: ECS reads the user's bucket as the RAM role
//! `AliyunECSImageImportDefaultRole`, which must exist, trust `ecs.aliyuncs.com`, and hold the system policy
//! `AliyunECSImageImportRolePolicy` (or a custom policy granting the same reads). Without it ImportImage fails
//! with `NoSetRoletoECSServiceAcount` after the whole upload; the preflight finds out first.
//!
//! [`Ram::create_import_role`] repairs it as the console's one-click authorisation does: it creates the role (or
//! rewrites a trust policy that does not name ECS) and attaches the system policy. RAM changes take a short while
//! to reach ECS: the caller checks again, bounded, before importing.

use crate::CloudError;
use imgport_auth::policy::{self, ECS_PRINCIPAL, ECS_TRUST_POLICY, IMPORT_POLICY, IMPORT_ROLE};
use imgport_auth::rpc::{RpcClient, Signer, Transport};
use serde::{Deserialize, Serialize};

/// The RAM API version the client speaks.
pub const VERSION: &str = "2015-05-01";

/// What is wrong with the import role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum RoleProblem {
    /// No role of that name.
    Missing { role: String },
    /// The role's trust policy does not let ECS assume it.
    NotTrustedByEcs { role: String },
    /// Neither the system import policy nor a custom policy granting its reads is attached.
    NoImportPolicy { role: String },
}

impl RoleProblem {
    /// The problem in words, with the fix.
    pub fn explain(&self) -> String {
        let fix = "rerun with --create-role, or authorise the role once in the console \
                   (https://ram.console.aliyun.com/role/authorize, template ECSImportRole)";
        match self {
            RoleProblem::Missing { role } => format!("the RAM role {role} does not exist: {fix}"),
            RoleProblem::NotTrustedByEcs { role } => {
                format!("the RAM role {role} does not trust {ECS_PRINCIPAL}, so ECS cannot assume it: {fix}")
            }
            RoleProblem::NoImportPolicy { role } => {
                format!("the RAM role {role} has no policy letting ECS read OSS ({IMPORT_POLICY}): {fix}")
            }
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct RoleAnswer {
    role: RoleBody,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct RoleBody {
    assume_role_policy_document: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct PoliciesAnswer {
    policies: PolicyList,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct PolicyList {
    policy: Vec<AttachedPolicy>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct AttachedPolicy {
    policy_name: String,
    policy_type: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct PolicyAnswer {
    default_policy_version: PolicyVersion,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct PolicyVersion {
    policy_document: String,
}

#[derive(Deserialize)]
struct Ignored {}

/// A client of RAM, for the import role.
#[derive(Clone)]
pub struct Ram {
    rpc: RpcClient,
}

impl Ram {
    /// `rpc`: a RAM [`RpcClient`] (RPC V1 signatures) with credentials.
    pub fn new(rpc: RpcClient) -> Ram {
        Ram { rpc }
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        action: &str,
        params: &[(&str, &str)],
    ) -> Result<T, CloudError> {
        // Policy documents can be long: parameters travel in a form body.
        Ok(self.rpc.call_with(action, params, Transport::Form, Signer::Provider).await?)
    }

    /// Whether `role` (unset: the default import role) lets ECS import: `Ok(None)` when it does.
    pub async fn check_import_role(&self, role: Option<&str>) -> Result<Option<RoleProblem>, CloudError> {
        let role = role.unwrap_or(IMPORT_ROLE).to_string();
        let answer: RoleAnswer = match self.call("GetRole", &[("RoleName", &role)]).await {
            Err(e) if e.code() == Some("EntityNotExist.Role") => return Ok(Some(RoleProblem::Missing { role })),
            r => r?,
        };
        if !policy::trusts(&answer.role.assume_role_policy_document, ECS_PRINCIPAL) {
            return Ok(Some(RoleProblem::NotTrustedByEcs { role }));
        }
        let attached: PoliciesAnswer = self.call("ListPoliciesForRole", &[("RoleName", &role)]).await?;
        for p in &attached.policies.policy {
            if p.policy_type == "System" && p.policy_name == IMPORT_POLICY {
                return Ok(None);
            }
        }
        for p in attached.policies.policy.iter().filter(|p| p.policy_type == "Custom") {
            let got: PolicyAnswer =
                self.call("GetPolicy", &[("PolicyName", &p.policy_name), ("PolicyType", "Custom")]).await?;
            if policy::grants_import(&got.default_policy_version.policy_document) {
                return Ok(None);
            }
        }
        Ok(Some(RoleProblem::NoImportPolicy { role }))
    }

    /// Makes `role` (unset: the default import role) what the import needs, as the console does: creates it
    /// trusting ECS, or rewrites a trust policy that does not name ECS, and attaches the system import policy.
    /// Changes nothing that is already right. Returns what it changed, in words.
    pub async fn create_import_role(&self, role: Option<&str>) -> Result<Vec<String>, CloudError> {
        let role = role.unwrap_or(IMPORT_ROLE).to_string();
        let mut done = Vec::new();
        match self.check_import_role(Some(&role)).await? {
            None => return Ok(done),
            Some(RoleProblem::Missing { .. }) => {
                self.call::<Ignored>(
                    "CreateRole",
                    &[
                        ("RoleName", &role),
                        ("AssumeRolePolicyDocument", ECS_TRUST_POLICY),
                        ("Description", "Lets ECS read OSS objects to import images (created by imgport)"),
                    ],
                )
                .await?;
                done.push(format!("created the RAM role {role} trusting {ECS_PRINCIPAL}"));
            }
            Some(RoleProblem::NotTrustedByEcs { .. }) => {
                self.call::<Ignored>(
                    "UpdateRole",
                    &[("RoleName", &role), ("NewAssumeRolePolicyDocument", ECS_TRUST_POLICY)],
                )
                .await?;
                done.push(format!("set the trust policy of {role} to trust {ECS_PRINCIPAL}"));
            }
            Some(RoleProblem::NoImportPolicy { .. }) => {}
        }
        if self.check_import_role(Some(&role)).await?.is_some() {
            let attach = [("PolicyType", "System"), ("PolicyName", IMPORT_POLICY), ("RoleName", role.as_str())];
            match self.call::<Ignored>("AttachPolicyToRole", &attach).await {
                Err(e) if e.code() == Some("EntityAlreadyExists.Role.Policy") => {}
                r => {
                    r?;
                    done.push(format!("attached {IMPORT_POLICY} to {role}"));
                }
            }
        }
        Ok(done)
    }
}
