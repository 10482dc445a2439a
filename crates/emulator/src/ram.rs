//! RAM roles (GetRole, CreateRole, AttachPolicyToRole, ListPoliciesForRole): the import role that gates
//! ImportImage and the roles STS AssumeRole hands out credentials for.

use crate::rpc::{Params, RpcContext, RpcError, RpcResult};
use crate::services::{iso, Db, Inner};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The role ECS assumes to read the user's bucket during an import.
pub const IMPORT_ROLE: &str = "AliyunECSImageImportDefaultRole";
pub(crate) const IMPORT_POLICY: &str = "AliyunECSImageImportRolePolicy";
const ECS_TRUST: &str = r#"{"Statement":[{"Action":"sts:AssumeRole","Effect":"Allow","Principal":{"Service":["ecs.aliyuncs.com"]}}],"Version":"1"}"#;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Role {
    pub name: String,
    pub id: String,
    pub description: String,
    pub trust_policy: String,
    pub max_session_duration: i64,
    pub created: i64,
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
        "UpdateDate": iso(r.created),
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
            if serde_json::from_str::<serde_json::Value>(doc).map(|v| v.get("Statement").is_none()).unwrap_or(true) {
                return Err(RpcError::new(400, "MalformedPolicyDocument", "The policy document is malformed."));
            }
            let max = match params.get("MaxSessionDuration") {
                None | Some("") => 3600,
                Some(v) => v.parse::<i64>().ok().filter(|m| (3600..=43200).contains(m)).ok_or_else(|| {
                    RpcError::invalid_parameter("MaxSessionDuration", "The parameter MaxSessionDuration is invalid.")
                })?,
            };
            let mut db = inner.db();
            if db.role(name).is_some() {
                return Err(RpcError::new(
                    409,
                    "EntityAlreadyExists.Role",
                    format!("The role already exists: {name}."),
                ));
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
            if kind == "System" && !policy.starts_with("Aliyun") {
                return Err(RpcError::new(404, "EntityNotExist.Policy", format!("The policy not exists: {policy}.")));
            }
            let mut db = inner.db();
            let r = db.roles.get_mut(&name.to_ascii_lowercase()).ok_or_else(|| no_role(name))?;
            if r.policies.iter().any(|(_, p, _)| p == policy) {
                return Err(RpcError::new(
                    409,
                    "EntityAlreadyExists.Role.Policy",
                    format!("The policy has already been attached to the role: {policy}."),
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
        _ => Err(RpcError::action_not_found()),
    }
}
