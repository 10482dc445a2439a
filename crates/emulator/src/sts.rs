//! STS AssumeRole (temporary credentials for a RAM role, usable against OSS and ECS) and GetCallerIdentity.
//!
//! | operation | parameters | checks and answers |
//! |---|---|---|
//! | AssumeRole | RoleArn, RoleSessionName, DurationSeconds | `RoleArn` and `RoleSessionName` present (400 `MissingParameter`); `RoleArn` is `acs:ram::ACCOUNT:role/NAME` (400 `InvalidParameter.RoleArn`); `RoleSessionName` is 2-64 characters of ASCII letters, digits and `-_.@=,` (400 `InvalidParameter.RoleSessionName`); `ACCOUNT` is the emulator's account and `NAME` an existing role (made with RAM CreateRole, or the import role seeded when `CloudSettings::seed_import_role` is set; the name in any case; 404 `EntityNotExist.Role`); `DurationSeconds` is an integer from 900 to the role's `MaxSessionDuration` (3600-43200, see [`crate::ram`]; 400 `InvalidParameter.DurationSeconds`), 3600 (or the role's maximum, if lower) when absent or empty; answers `Credentials` (`AccessKeyId`, `AccessKeySecret`, `SecurityToken`, `Expiration`) and `AssumedRoleUser` (`Arn` `acs:ram::ACCOUNT:role/ROLENAME/SESSION` with the role name in lower case, `AssumedRoleId` `ROLEID:SESSION`) |
//! | GetCallerIdentity | none | answers `AccountId`, `UserId` (the account id), `Arn` `acs:ram::ACCOUNT:root` and `IdentityType`: `AssumedRoleUser` when the request was signed with temporary credentials, `Account` otherwise |
//!
//! Any other STS action is 404 `InvalidAction.NotFound`. The credentials work for every OSS and RPC request that
//! carries their `SecurityToken` (OSS: the `x-oss-security-token` header or the `security-token` query parameter;
//! RPC: `SecurityToken`, or `x-acs-security-token` with ACS3 signatures). A missing or wrong token is 403
//! `InvalidSecurityToken` on OSS and 400 `InvalidSecurityToken.MismatchWithAccessKey` on RPC; an expired one 403
//! `SecurityTokenExpired` on OSS and 400 `InvalidSecurityToken.Expired` on RPC (see
//! [`crate::credentials::CredentialStore::check_token`]). `CloudSettings::sts_lifetime_cap_seconds`, when set,
//! shortens every credential's lifetime (and its `Expiration`) to at most that many seconds whatever
//! `DurationSeconds` asked for, so that expiry can be tested quickly; the fault setting
//! [`crate::faults::FaultConfig::tokens_expire_at`] expires those already issued.
//!
//! Temporary credentials are kept in a bounded registry ([`crate::credentials`]): expired ones are forgotten a day
//! after their expiry, and at 10,000 credentials in force AssumeRole drops every expired one, then, if all are
//! still valid, answers 400 `Throttling` (the emulator's bound; the real STS documents none).
//!
//! **Differs.** The role's trust policy (`AssumeRolePolicyDocument`) is not evaluated: any caller holding the
//! emulator's keys (or temporary credentials from an earlier AssumeRole) may assume any role, and the role's
//! attached policies are not applied to the credentials. `Policy` (a session policy), `ExternalId` and
//! `SourceIdentity` are not read: the credentials have the whole account's rights, and the emulator has no
//! permission checks on OSS or ECS requests (ImportImage judges its RAM role itself, see [`crate::ram`]).
//! GetCallerIdentity does not describe the assumed role: for temporary credentials it answers the account's root
//! `Arn` and `UserId`, with no `RoleId` or `PrincipalId`. STS has no regions or endpoints of its own here: it is
//! served by the same listener as ECS and RAM, selected by `Version=2015-04-01`.

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
