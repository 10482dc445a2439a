//! RAM roles and custom policies: the import role that gates ImportImage and the roles STS AssumeRole hands out
//! credentials for.
//!
//! | operation | parameters | checks and answers |
//! |---|---|---|
//! | GetRole | RoleName | 404 `EntityNotExist.Role` |
//! | CreateRole | RoleName, AssumeRolePolicyDocument, Description, MaxSessionDuration | name 1-64 of `[A-Za-z0-9._-]` (400 `InvalidParameter.RoleName.InvalidChars`); the document is JSON with a `Statement` (400 `MalformedPolicyDocument`); MaxSessionDuration 3600-43200 (400 `InvalidParameter`); Description at most 1024 characters (400 `InvalidParameter.Description`); 409 `EntityAlreadyExists.Role`; at 1000 roles 409 `LimitExceeded.Role` |
//! | UpdateRole | RoleName, NewAssumeRolePolicyDocument, NewMaxSessionDuration, NewDescription | the same rules as CreateRole for each value given; 404 `EntityNotExist.Role`; UpdateDate moves |
//! | DeleteRole | RoleName | 404 `EntityNotExist.Role`; 409 `DeleteConflict.Role.Policy` while any policy is attached |
//! | AttachPolicyToRole | PolicyType (System/Custom), PolicyName, RoleName | 400 `InvalidParameter.PolicyType.InvalidValue`; PolicyName 1-128 of `[A-Za-z0-9-]` (400 `InvalidParameter.PolicyName.InvalidChars`); a System policy must be named `Aliyun*`, a Custom one must exist (404 `EntityNotExist.Policy`); 409 `EntityAlreadyExists.Role.Policy`; a role holds at most 20 System and 10 Custom policies (409 `LimitExceeded.Role.Policy`) |
//! | DetachPolicyFromRole | PolicyType, PolicyName, RoleName | 404 `EntityNotExist.Role`; 404 `EntityNotExist.Role.Policy` when that policy is not attached |
//! | ListPoliciesForRole | RoleName | the attached policies |
//! | GetPolicy | PolicyName, PolicyType | the policy and its default version's document; 404 `EntityNotExist.Policy`; of the system policies only `AliyunECSImageImportRolePolicy` is known (its document allows the import's reads), any other answers 404 |
//! | CreatePolicy | PolicyName, PolicyDocument, Description | name 1-128 of `[A-Za-z0-9-]` (400 `InvalidParameter.PolicyName.InvalidChars`); the document is JSON with a `Statement`, at most 6144 bytes (400 `MalformedPolicyDocument`); Description at most 1024 characters (400 `InvalidParameter.Description`); 409 `EntityAlreadyExists.Policy`; at 1500 custom policies 409 `LimitExceeded.Policy` |
//!
//! What ImportImage asks of its role (`import_role_ok`, reading documents with [`imgport_auth::policy`], the
//! same reading imgport's import preflight uses): the role exists; its trust policy has an `Allow`
//! statement for `sts:AssumeRole` whose `Principal.Service` names `ecs.aliyuncs.com`; and it has
//! `AliyunECSImageImportRolePolicy` attached, or a custom policy that allows (and does not deny) every action the
//! import reads with: `oss:GetObject`, `oss:GetBucketLocation` and `oss:GetBucketInfo` (`*` wildcards allowed in
//! actions). Known differences: a policy's `Resource` and `Condition` are not evaluated (any resource counts), and
//! changes take effect at once where the real service takes a short while to propagate them.
//!
//! Limits: those of RAM's "Limits" page (1000 roles and 1500 custom policies per account, 20 system and 10 custom
//! policies attached to a role, 1024-character descriptions). The limit codes `LimitExceeded.Role` and
//! `LimitExceeded.Role.Policy` (409, like `LimitExceeded.Policy`) are the emulator's choice: the API reference
//! names none. Any `Aliyun*` name counts as a system policy, which is why a role's system policies are capped.

use crate::rpc::{Params, RpcContext, RpcError, RpcResult};
use crate::services::{iso, Db, Inner};
use imgport_auth::policy;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The role ECS assumes to read the user's bucket during an import.
pub use imgport_auth::policy::IMPORT_ROLE;
use imgport_auth::policy::{ECS_PRINCIPAL, ECS_TRUST_POLICY as ECS_TRUST, IMPORT_POLICY};

/// A custom policy made with CreatePolicy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Policy {
    pub name: String,
    pub description: String,
    pub document: String,
    pub created: i64,
}

fn malformed() -> RpcError {
    RpcError::new(400, "MalformedPolicyDocument", "The policy document is malformed.")
}

/// Parses a policy document: JSON with a `Statement`, at most 6 KiB (RAM's documented limit for a policy).
fn policy_doc(doc: &str) -> Result<serde_json::Value, RpcError> {
    if doc.len() > 6144 {
        return Err(malformed());
    }
    serde_json::from_str::<serde_json::Value>(doc).ok().filter(|v| v.get("Statement").is_some()).ok_or_else(malformed)
}

/// The role ImportImage uses may be assumed by ECS and lets it read the bucket (see the module docs).
pub(crate) fn import_role_ok(db: &Db, role: &str) -> bool {
    let Some(r) = db.role(role) else { return false };
    if !policy::trusts(&r.trust_policy, ECS_PRINCIPAL) {
        return false;
    }
    r.policies.iter().any(|(kind, name, _)| match kind.as_str() {
        "System" => name == IMPORT_POLICY,
        _ => db.policies.get(&name.to_ascii_lowercase()).is_some_and(|p| policy::grants_import(&p.document)),
    })
}

/// RAM's documented limits ("Limits" in the RAM documentation): roles and custom policies per account, policies
/// attached to one role, characters in a description.
const MAX_ROLES: usize = 1000;
const MAX_POLICIES: usize = 1500;
const MAX_SYSTEM_POLICIES_PER_ROLE: usize = 20;
const MAX_CUSTOM_POLICIES_PER_ROLE: usize = 10;
const MAX_DESCRIPTION: usize = 1024;

/// A policy name: 1-128 characters of `[A-Za-z0-9-]`.
fn valid_policy_name(name: &str) -> bool {
    (1..=128).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// A role's or policy's description: at most 1024 characters, else 400 `InvalidParameter.<name>`.
fn description(params: &Params, name: &str) -> Result<(), RpcError> {
    if params.get(name).is_some_and(|d| d.chars().count() > MAX_DESCRIPTION) {
        return Err(RpcError::invalid_parameter(name, format!("The parameter {name} is invalid.")));
    }
    Ok(())
}

fn max_session(v: Option<&str>, name: &str) -> Result<Option<i64>, RpcError> {
    match v {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|m| (3600..=43200).contains(m))
            .map(Some)
            .ok_or_else(|| RpcError::invalid_parameter(name, format!("The parameter {name} is invalid."))),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Role {
    pub name: String,
    pub id: String,
    pub description: String,
    pub trust_policy: String,
    pub max_session_duration: i64,
    pub created: i64,
    #[serde(default)]
    pub updated: Option<i64>,
    /// (policy type, policy name, attached at)
    pub policies: Vec<(String, String, i64)>,
}

pub(crate) fn no_role(name: &str) -> RpcError {
    RpcError::new(404, "EntityNotExist.Role", format!("The role not exists: {name}."))
}

fn role_json(r: &Role, account: &str) -> serde_json::Value {
    json!({
        "RoleId": r.id,
        "RoleName": r.name,
        "Arn": format!("acs:ram::{account}:role/{}", r.name.to_ascii_lowercase()),
        "Description": r.description,
        "AssumeRolePolicyDocument": r.trust_policy,
        "MaxSessionDuration": r.max_session_duration,
        "CreateDate": iso(r.created),
        "UpdateDate": iso(r.updated.unwrap_or(r.created)),
    })
}

fn new_role(name: &str, trust: &str, description: &str, max: i64, now: i64) -> Role {
    Role {
        name: name.to_string(),
        id: crate::util::random_bytes(8).iter().fold(String::from("3"), |s, b| s + &format!("{}", b % 10)),
        description: description.to_string(),
        trust_policy: trust.to_string(),
        max_session_duration: max,
        created: now,
        updated: None,
        policies: Vec::new(),
    }
}

/// The import role with its policy, as the console's one-click authorisation creates it.
pub(crate) fn seed_import_role(db: &mut Db, now: i64) {
    let mut r = new_role(IMPORT_ROLE, ECS_TRUST, "ECS image import", 3600, now);
    r.policies.push(("System".into(), IMPORT_POLICY.into(), now));
    db.roles.insert(IMPORT_ROLE.to_ascii_lowercase(), r);
}

pub(crate) fn handle(inner: &Inner, ctx: &RpcContext, action: &str, params: &Params) -> RpcResult {
    let account = &ctx.state.account_id;
    match action {
        "GetRole" => {
            let name = params.require("RoleName")?;
            let db = inner.db();
            let r = db.role(name).ok_or_else(|| no_role(name))?;
            Ok(json!({ "Role": role_json(r, account) }))
        }
        "CreateRole" => {
            let name = params.require("RoleName")?;
            let valid = (1..=64).contains(&name.len())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
            if !valid {
                return Err(RpcError::new(
                    400,
                    "InvalidParameter.RoleName.InvalidChars",
                    "The parameter RoleName is invalid.",
                ));
            }
            let doc = params.require("AssumeRolePolicyDocument")?;
            policy_doc(doc)?;
            let max = max_session(params.get("MaxSessionDuration"), "MaxSessionDuration")?.unwrap_or(3600);
            description(params, "Description")?;
            let mut db = inner.db();
            if db.role(name).is_some() {
                return Err(RpcError::new(
                    409,
                    "EntityAlreadyExists.Role",
                    format!("The role already exists: {name}."),
                ));
            }
            if db.roles.len() >= MAX_ROLES {
                return Err(RpcError::new(409, "LimitExceeded.Role", "The count of roles beyond the current limits."));
            }
            let r = new_role(name, doc, params.get("Description").unwrap_or(""), max, ctx.now);
            let out = role_json(&r, account);
            db.roles.insert(name.to_ascii_lowercase(), r);
            db.save()?;
            Ok(json!({ "Role": out }))
        }
        "AttachPolicyToRole" => {
            let kind = params.require("PolicyType")?;
            let policy = params.require("PolicyName")?;
            let name = params.require("RoleName")?;
            if kind != "System" && kind != "Custom" {
                return Err(RpcError::new(
                    400,
                    "InvalidParameter.PolicyType.InvalidValue",
                    "The parameter PolicyType is invalid.",
                ));
            }
            if !valid_policy_name(policy) {
                return Err(RpcError::new(
                    400,
                    "InvalidParameter.PolicyName.InvalidChars",
                    "The parameter PolicyName is invalid.",
                ));
            }
            let mut db = inner.db();
            let known = match kind {
                "System" => policy.starts_with("Aliyun"),
                _ => db.policies.contains_key(&policy.to_ascii_lowercase()),
            };
            if !known {
                return Err(RpcError::new(404, "EntityNotExist.Policy", format!("The policy not exists: {policy}.")));
            }
            let r = db.roles.get_mut(&name.to_ascii_lowercase()).ok_or_else(|| no_role(name))?;
            if r.policies.iter().any(|(_, p, _)| p == policy) {
                return Err(RpcError::new(
                    409,
                    "EntityAlreadyExists.Role.Policy",
                    format!("The policy has already been attached to the role: {policy}."),
                ));
            }
            let limit = if kind == "System" { MAX_SYSTEM_POLICIES_PER_ROLE } else { MAX_CUSTOM_POLICIES_PER_ROLE };
            if r.policies.iter().filter(|(t, _, _)| t == kind).count() >= limit {
                return Err(RpcError::new(
                    409,
                    "LimitExceeded.Role.Policy",
                    format!("The count of {kind} policies attached to the role beyond the current limits ({limit})."),
                ));
            }
            r.policies.push((kind.to_string(), policy.to_string(), ctx.now));
            db.save()?;
            Ok(json!({}))
        }
        "ListPoliciesForRole" => {
            let name = params.require("RoleName")?;
            let db = inner.db();
            let r = db.role(name).ok_or_else(|| no_role(name))?;
            let list: Vec<_> = r
                .policies
                .iter()
                .map(|(t, p, at)| {
                    json!({"PolicyName": p, "PolicyType": t, "Description": "", "DefaultVersion": "v1", "AttachDate": iso(*at)})
                })
                .collect();
            Ok(json!({ "Policies": { "Policy": list } }))
        }
        "DetachPolicyFromRole" => {
            let kind = params.require("PolicyType")?;
            let policy = params.require("PolicyName")?;
            let name = params.require("RoleName")?;
            let mut db = inner.db();
            let r = db.roles.get_mut(&name.to_ascii_lowercase()).ok_or_else(|| no_role(name))?;
            let before = r.policies.len();
            r.policies.retain(|(t, p, _)| !(t == kind && p == policy));
            if r.policies.len() == before {
                return Err(RpcError::new(
                    404,
                    "EntityNotExist.Role.Policy",
                    format!("The policy {policy} is not attached to the role {name}."),
                ));
            }
            db.save()?;
            Ok(json!({}))
        }
        "DeleteRole" => {
            let name = params.require("RoleName")?;
            let mut db = inner.db();
            let r = db.role(name).ok_or_else(|| no_role(name))?;
            if !r.policies.is_empty() {
                return Err(RpcError::new(
                    409,
                    "DeleteConflict.Role.Policy",
                    "The role cannot have any attached policies when you delete it.",
                ));
            }
            db.roles.remove(&name.to_ascii_lowercase());
            db.save()?;
            Ok(json!({}))
        }
        "UpdateRole" => {
            let name = params.require("RoleName")?;
            let doc = params.get("NewAssumeRolePolicyDocument").filter(|d| !d.is_empty());
            if let Some(d) = doc {
                policy_doc(d)?;
            }
            let max = max_session(params.get("NewMaxSessionDuration"), "NewMaxSessionDuration")?;
            description(params, "NewDescription")?;
            let description = params.get("NewDescription");
            let mut db = inner.db();
            let r = db.roles.get_mut(&name.to_ascii_lowercase()).ok_or_else(|| no_role(name))?;
            if let Some(d) = doc {
                r.trust_policy = d.to_string();
            }
            if let Some(m) = max {
                r.max_session_duration = m;
            }
            if let Some(d) = description {
                r.description = d.to_string();
            }
            r.updated = Some(ctx.now);
            let out = role_json(r, account);
            db.save()?;
            Ok(json!({ "Role": out }))
        }
        "CreatePolicy" => {
            let name = params.require("PolicyName")?;
            if !valid_policy_name(name) {
                return Err(RpcError::new(
                    400,
                    "InvalidParameter.PolicyName.InvalidChars",
                    "The parameter PolicyName is invalid.",
                ));
            }
            let doc = params.require("PolicyDocument")?;
            policy_doc(doc)?;
            description(params, "Description")?;
            let mut db = inner.db();
            if db.policies.len() >= MAX_POLICIES {
                return Err(RpcError::new(
                    409,
                    "LimitExceeded.Policy",
                    "The count of policies beyond the current limits.",
                ));
            }
            if db.policies.contains_key(&name.to_ascii_lowercase()) {
                return Err(RpcError::new(
                    409,
                    "EntityAlreadyExists.Policy",
                    format!("The policy already exists: {name}."),
                ));
            }
            let p = Policy {
                name: name.to_string(),
                description: params.get("Description").unwrap_or("").to_string(),
                document: doc.to_string(),
                created: ctx.now,
            };
            let out = json!({"PolicyName": p.name, "PolicyType": "Custom", "Description": p.description,
                "DefaultVersion": "v1", "CreateDate": iso(p.created)});
            db.policies.insert(name.to_ascii_lowercase(), p);
            db.save()?;
            Ok(json!({ "Policy": out }))
        }
        "GetPolicy" => {
            let name = params.require("PolicyName")?;
            let kind = params.require("PolicyType")?;
            let db = inner.db();
            let (document, description, created) = match kind {
                // The one system policy the emulator knows the content of: what the import needs.
                "System" if name == IMPORT_POLICY => (import_policy_document(), "ECS image import".to_string(), 0),
                "System" => return Err(no_policy(name)),
                "Custom" => {
                    let p = db.policies.get(&name.to_ascii_lowercase()).ok_or_else(|| no_policy(name))?;
                    (p.document.clone(), p.description.clone(), p.created)
                }
                _ => {
                    return Err(RpcError::new(
                        400,
                        "InvalidParameter.PolicyType.InvalidValue",
                        "The parameter PolicyType is invalid.",
                    ))
                }
            };
            let attached =
                db.roles.values().filter(|r| r.policies.iter().any(|(t, p, _)| t == kind && p == name)).count();
            Ok(json!({
                "Policy": {"PolicyName": name, "PolicyType": kind, "Description": description, "DefaultVersion": "v1",
                    "CreateDate": iso(created), "UpdateDate": iso(created), "AttachmentCount": attached},
                "DefaultPolicyVersion": {"VersionId": "v1", "IsDefaultVersion": true, "PolicyDocument": document,
                    "CreateDate": iso(created)},
            }))
        }
        _ => Err(RpcError::action_not_found()),
    }
}

fn no_policy(name: &str) -> RpcError {
    RpcError::new(404, "EntityNotExist.Policy", format!("The policy not exists: {name}."))
}

/// `AliyunECSImageImportRolePolicy` as the emulator models it: the reads the import makes.
fn import_policy_document() -> String {
    json!({"Version": "1", "Statement": [{"Effect": "Allow", "Action": policy::IMPORT_ACTIONS, "Resource": "*"}]})
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_and_policy_documents() {
        use imgport_auth::policy::{allows, trusts};
        assert!(trusts(ECS_TRUST, "ecs.aliyuncs.com"));
        let single = r#"{"Statement":{"Action":"sts:*","Effect":"Allow","Principal":{"Service":"ecs.aliyuncs.com"}}}"#;
        assert!(trusts(single, "ecs.aliyuncs.com"));
        assert!(!trusts(&ECS_TRUST.replace("Allow", "Deny"), "ecs.aliyuncs.com"));
        let doc = r#"{"Statement":[{"Effect":"Allow","Action":"oss:*"},{"Effect":"Deny","Action":["oss:GetObject"]}]}"#;
        assert!(allows(doc, "oss:GetBucketInfo"));
        assert!(!allows(doc, "oss:GetObject"));
        assert!(policy_doc("[]").is_err() && policy_doc(&"x".repeat(7000)).is_err() && policy_doc(doc).is_ok());
    }
}
