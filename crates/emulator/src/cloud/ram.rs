//! RAM roles (GetRole, CreateRole, AttachPolicyToRole, ListPoliciesForRole) and STS AssumeRole.

use super::{iso, Db, Inner, Role};
use crate::rpc::{Params, RpcContext, RpcError, RpcResult};
use serde_json::json;

/// The role ECS assumes to read the user's bucket during an import.
pub const IMPORT_ROLE: &str = "AliyunECSImageImportDefaultRole";
pub(crate) const IMPORT_POLICY: &str = "AliyunECSImageImportRolePolicy";
const ECS_TRUST: &str = r#"{"Statement":[{"Action":"sts:AssumeRole","Effect":"Allow","Principal":{"Service":["ecs.aliyuncs.com"]}}],"Version":"1"}"#;

fn no_role(name: &str) -> RpcError {
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

pub(crate) fn handle_ram(inner: &Inner, ctx: &RpcContext, action: &str, params: &Params) -> RpcResult {
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

pub(crate) fn handle_sts(inner: &Inner, ctx: &RpcContext, action: &str, params: &Params) -> RpcResult {
    match action {
        "AssumeRole" => assume_role(inner, ctx, params),
        "GetCallerIdentity" => Ok(json!({
            "AccountId": ctx.state.account_id,
            "UserId": ctx.state.account_id,
            "Arn": format!("acs:ram::{}:root", ctx.state.account_id),
            "IdentityType": if ctx.temporary { "AssumedRoleUser" } else { "Account" },
        })),
        _ => Err(RpcError::action_not_found()),
    }
}

fn assume_role(inner: &Inner, ctx: &RpcContext, params: &Params) -> RpcResult {
    let arn = params.require("RoleArn")?;
    let session = params.require("RoleSessionName")?;
    let bad_arn = || RpcError::new(400, "InvalidParameter.RoleArn", "The parameter RoleArn is wrongly formed.");
    let rest = arn.strip_prefix("acs:ram::").ok_or_else(bad_arn)?;
    let (account, role) = rest.split_once(":role/").ok_or_else(bad_arn)?;
    if session.len() < 2
        || session.len() > 64
        || !session.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@=,".contains(c))
    {
        return Err(RpcError::new(
            400,
            "InvalidParameter.RoleSessionName",
            "The parameter RoleSessionName is wrongly formed.",
        ));
    }
    let db = inner.db();
    let r = db.role(role).filter(|_| account == ctx.state.account_id).ok_or_else(|| no_role(role))?;
    let duration = match params.get("DurationSeconds") {
        None | Some("") => 3600.min(r.max_session_duration),
        Some(v) => v.parse::<i64>().ok().filter(|d| (900..=r.max_session_duration).contains(d)).ok_or_else(|| {
            RpcError::new(
                400,
                "InvalidParameter.DurationSeconds",
                format!("The Min/Max value of DurationSeconds is 15min/{}hr.", r.max_session_duration / 3600),
            )
        })?,
    };
    let lifetime = inner.settings.sts_lifetime_cap_seconds.map_or(duration, |c| duration.min(c.max(1)));
    let role_id = r.id.clone();
    let arn_out = format!("acs:ram::{account}:role/{}/{session}", r.name.to_ascii_lowercase());
    drop(db);
    let cred = ctx.state.credentials.issue_temporary(ctx.now, lifetime).map_err(|_| RpcError::internal())?;
    Ok(json!({
        "AssumedRoleUser": { "Arn": arn_out, "AssumedRoleId": format!("{role_id}:{session}") },
        "Credentials": {
            "AccessKeyId": cred.access_key_id,
            "AccessKeySecret": cred.access_key_secret,
            "SecurityToken": cred.security_token,
            "Expiration": iso(cred.expiration),
        }
    }))
}
