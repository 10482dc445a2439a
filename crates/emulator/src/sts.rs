//! STS AssumeRole (temporary credentials for a RAM role, usable against OSS and ECS) and GetCallerIdentity.
//!
//! Temporary credentials are kept in a bounded registry ([`crate::credentials`]): expired ones are forgotten a day
//! after their expiry, and at 10,000 credentials in force AssumeRole drops every expired one, then, if all are
//! still valid, answers 400 `Throttling` (the emulator's bound; the real STS documents none).

use crate::ram::no_role;
use crate::rpc::{Params, RpcContext, RpcError, RpcResult};
use crate::services::{iso, Inner};
use serde_json::json;

pub(crate) fn handle(inner: &Inner, ctx: &RpcContext, action: &str, params: &Params) -> RpcResult {
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
    // The registry of temporary credentials is bounded (see `crate::credentials::MAX_TEMPORARY`): when it is full
    // of credentials still valid, AssumeRole answers 400 `Throttling` (the emulator's choice; STS documents no
    // limit on credentials in force).
    let cred = ctx.state.credentials.issue_temporary(ctx.now, lifetime).map_err(|e| match e.kind() {
        std::io::ErrorKind::QuotaExceeded => RpcError::new(
            400,
            "Throttling",
            "Request was denied due to request throttling (too many temporary credentials in force).",
        ),
        _ => RpcError::internal(),
    })?;
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
