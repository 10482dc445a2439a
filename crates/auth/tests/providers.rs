//! The credential chain and each source, with temporary homes and environments passed in (the process
//! environment is never changed), and STS / instance metadata served by a local responder that verifies what
//! it receives.

use imgport_auth::provider::{Clock, CredentialsError, CredentialsProvider, DefaultChain, Imds, Refreshing};
use imgport_auth::sign::{rpc_v1, VerifyError};
use imgport_auth::time::UtcTime;
use imgport_auth::{Env, Secret};
use imgport_test_support::responder::{Received, Reply, Server};
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

const BASE_AK: &str = "LTAIbaseAccessKey01";
const BASE_SK: &str = "base-secret-VALUE-1";
const STS_AK: &str = "STS.NTemporaryKey9999";
const STS_SK: &str = "temporary-secret-VALUE";
const STS_TOKEN: &str = "CAIS-temporary-token-VALUE";

fn env(home: &Path, vars: &[(&str, &str)]) -> Env {
    let mut e = Env::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    e.set("HOME", &home.to_string_lossy());
    e
}

async fn resolve(e: Env) -> Result<(imgport_auth::Credentials, String), CredentialsError> {
    DefaultChain::new(e).resolve().await
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

fn cli_config(home: &Path, json: &str) {
    write(&home.join(".aliyun/config.json"), json);
}

fn sts_json(exp: i64) -> String {
    format!(
        r#"{{"RequestId":"r-1","AssumedRoleUser":{{"Arn":"acs:ram::1:role/x","AssumedRoleId":"1:x"}},"Credentials":{{"AccessKeyId":"{STS_AK}","AccessKeySecret":"{STS_SK}","SecurityToken":"{STS_TOKEN}","Expiration":"{}"}}}}"#,
        UtcTime::from_unix(exp).iso8601()
    )
}

/// An STS endpoint that answers AssumeRole only when the RPC V1 signature verifies with the base secret.
fn sts_server(lifetime: i64, clock: Clock) -> Server {
    Server::start(move |r: &Received| {
        let keys = |ak: &str| (ak == BASE_AK).then(|| Secret::new(BASE_SK));
        match rpc_v1::verify(&r.method, &r.params(), &keys) {
            Ok(v) if v.access_key_id == BASE_AK && r.param("Action").as_deref() == Some("AssumeRole") => {
                Reply::ok(sts_json(clock() + lifetime))
            }
            Ok(_) => Reply::status(400, r#"{"Code":"InvalidAction"}"#),
            Err(VerifyError::Mismatch { .. }) => Reply::status(
                400,
                r#"{"Code":"SignatureDoesNotMatch","Message":"Specified signature is not matched with our calculation.","RequestId":"r-2"}"#,
            ),
            Err(_) => Reply::status(
                404,
                r#"{"Code":"InvalidAccessKeyId.NotFound","Message":"no such key","RequestId":"r-3"}"#,
            ),
        }
    })
}

fn manual_clock(start: i64) -> (Arc<AtomicI64>, Clock) {
    let now = Arc::new(AtomicI64::new(start));
    let n = now.clone();
    (now, Arc::new(move || n.load(Ordering::SeqCst)))
}

#[tokio::test]
async fn environment_sets_in_order() {
    let home = tempfile::tempdir().expect("tempdir");
    let all = [
        ("OSS_ACCESS_KEY_ID", "oss-id"),
        ("OSS_ACCESS_KEY_SECRET", "oss-secret"),
        ("OSS_SESSION_TOKEN", "oss-token"),
        ("ALICLOUD_ACCESS_KEY", "ali-id"),
        ("ALICLOUD_SECRET_KEY", "ali-secret"),
        ("SECURITY_TOKEN", "ali-token"),
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", "sdk-id"),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "sdk-secret"),
    ];
    let (c, src) = resolve(env(home.path(), &all)).await.expect("env");
    assert_eq!(
        (c.access_key_id.as_str(), c.token(), src.as_str()),
        ("sdk-id", None, "env (ALIBABA_CLOUD_ACCESS_KEY_ID)")
    );
    let (c, src) = resolve(env(home.path(), &all[..6])).await.expect("env");
    assert_eq!(
        (c.access_key_id.as_str(), c.token(), src.as_str()),
        ("ali-id", Some("ali-token"), "env (ALICLOUD_ACCESS_KEY)")
    );
    let (c, src) = resolve(env(home.path(), &all[..3])).await.expect("env");
    assert_eq!(
        (c.access_key_id.as_str(), c.token(), src.as_str()),
        ("oss-id", Some("oss-token"), "env (OSS_ACCESS_KEY_ID)")
    );
    // An id without its secret is reported, not silently skipped.
    let err = resolve(env(home.path(), &[("ALIBABA_CLOUD_ACCESS_KEY_ID", "x")])).await.expect_err("incomplete");
    assert!(err.to_string().contains("ALIBABA_CLOUD_ACCESS_KEY_SECRET is not"), "{err}");
}

#[tokio::test]
async fn nothing_configured_lists_every_source() {
    let home = tempfile::tempdir().expect("tempdir");
    let err = resolve(env(home.path(), &[])).await.expect_err("no credentials");
    assert_eq!(err.kind(), imgport_auth::ErrorKind::CredentialsNotFound);
    let msg = err.to_string();
    for kind in ["env", "oidc_role_arn", "cli_profile", "profile", "ecs_ram_role"] {
        assert!(msg.contains(&format!("{kind}: not configured")), "{msg}");
    }
}

#[tokio::test]
async fn chain_order_env_then_cli_then_ini() {
    let home = tempfile::tempdir().expect("tempdir");
    cli_config(
        home.path(),
        r#"{"current":"main","profiles":[{"name":"main","mode":"AK","access_key_id":"cli-id","access_key_secret":"cli-secret"},
            {"name":"sts","mode":"StsToken","access_key_id":"sts-id","access_key_secret":"sts-secret","sts_token":"sts-token"}]}"#,
    );
    write(&home.path().join(".alibabacloud/credentials"), "[default]\ntype = access_key\naccess_key_id = ini-id\naccess_key_secret = ini-secret\n[second]\ntype = sts\naccess_key_id = ini2\naccess_key_secret = s\nsecurity_token = t\n");

    let envvars = [("ALIBABA_CLOUD_ACCESS_KEY_ID", "env-id"), ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "env-secret")];
    assert_eq!(resolve(env(home.path(), &envvars)).await.expect("env").0.access_key_id, "env-id");

    let (c, src) = resolve(env(home.path(), &[])).await.expect("cli");
    assert_eq!((c.access_key_id.as_str(), src.as_str()), ("cli-id", "cli_profile/AK (main)"));
    let (c, src) = resolve(env(home.path(), &[("ALIBABA_CLOUD_PROFILE", "sts")])).await.expect("cli sts");
    assert_eq!(
        (c.access_key_id.as_str(), c.token(), src.as_str()),
        ("sts-id", Some("sts-token"), "cli_profile/StsToken (sts)")
    );

    let (c, src) = resolve(env(home.path(), &[("ALIBABA_CLOUD_CLI_PROFILE_DISABLED", "true")])).await.expect("ini");
    assert_eq!((c.access_key_id.as_str(), src.as_str()), ("ini-id", "profile/access_key (default)"));
    std::fs::remove_file(home.path().join(".aliyun/config.json")).expect("rm");
    // ALIBABA_CLOUD_PROFILE picks the INI section too.
    let (c, _) = resolve(env(home.path(), &[("ALIBABA_CLOUD_PROFILE", "second")])).await.expect("ini second");
    assert_eq!((c.access_key_id.as_str(), c.token()), ("ini2", Some("t")));
    let other = home.path().join("elsewhere.ini");
    write(&other, "[default]\ntype = access_key\naccess_key_id = file-id\naccess_key_secret = s\n");
    let e = env(home.path(), &[("ALIBABA_CLOUD_CREDENTIALS_FILE", other.to_str().expect("utf-8"))]);
    assert_eq!(resolve(e).await.expect("file").0.access_key_id, "file-id");
    write(&other, "[default]\nenable = false\ntype = access_key\naccess_key_id = file-id\naccess_key_secret = s\n");
    let e = env(home.path(), &[("ALIBABA_CLOUD_CREDENTIALS_FILE", other.to_str().expect("utf-8"))]);
    assert!(resolve(e).await.is_err());
}

#[tokio::test]
async fn broken_cli_config_is_reported() {
    let home = tempfile::tempdir().expect("tempdir");
    cli_config(home.path(), "{ not json");
    let err = resolve(env(home.path(), &[])).await.expect_err("broken");
    assert!(err.to_string().contains("not valid JSON"), "{err}");
    cli_config(home.path(), r#"{"current":"gone","profiles":[]}"#);
    let err = resolve(env(home.path(), &[])).await.expect_err("missing profile");
    assert!(err.to_string().contains("no profile \"gone\""), "{err}");
    cli_config(home.path(), r#"{"current":"x","profiles":[{"name":"x","mode":"CloudSSO"}]}"#);
    let err = resolve(env(home.path(), &[])).await.expect_err("unsupported");
    assert!(err.to_string().contains("CloudSSO"), "{err}");
}

#[tokio::test]
async fn cli_ram_role_arn_assumes_role_with_a_verified_signature_and_caches() {
    let home = tempfile::tempdir().expect("tempdir");
    let (now, clock) = manual_clock(imgport_auth::time::now());
    let sts = sts_server(3600, clock.clone());
    cli_config(
        home.path(),
        &format!(
            r#"{{"current":"role","profiles":[{{"name":"role","mode":"RamRoleArn","access_key_id":"{BASE_AK}","access_key_secret":"{BASE_SK}","ram_role_arn":"acs:ram::123:role/importer","ram_session_name":"build-42","expired_seconds":900}}]}}"#
        ),
    );
    let chain = DefaultChain::new(env(home.path(), &[("IMGPORT_STS_ENDPOINT", &sts.url)])).with_clock(clock);
    let (c, src) = chain.resolve().await.expect("assume role");
    assert_eq!(src, "cli_profile/RamRoleArn (role)");
    assert_eq!((c.access_key_id.as_str(), c.access_key_secret.expose(), c.token()), (STS_AK, STS_SK, Some(STS_TOKEN)));
    assert_eq!(c.expiration, Some(now.load(Ordering::SeqCst) + 3600));
    let got = sts.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].param("RoleArn").as_deref(), Some("acs:ram::123:role/importer"));
    assert_eq!(got[0].param("RoleSessionName").as_deref(), Some("build-42"));
    assert_eq!(got[0].param("DurationSeconds").as_deref(), Some("900"));
    assert_eq!(got[0].param("Version").as_deref(), Some("2015-04-01"));

    // Cached while fresh; refreshed once less than the margin remains.
    chain.resolve().await.expect("cached");
    assert_eq!(sts.count(), 1);
    now.fetch_add(3600 - 100, Ordering::SeqCst);
    chain.resolve().await.expect("refreshed");
    assert_eq!(sts.count(), 2);
}

#[tokio::test]
async fn ini_ram_role_arn_with_wrong_secret_is_refused_by_the_server() {
    let home = tempfile::tempdir().expect("tempdir");
    let sts = sts_server(3600, Arc::new(imgport_auth::time::now));
    write(
        &home.path().join(".alibabacloud/credentials"),
        &format!("[default]\ntype = ram_role_arn\naccess_key_id = {BASE_AK}\naccess_key_secret = not-the-secret\nrole_arn = acs:ram::1:role/r\n"),
    );
    let err = resolve(env(home.path(), &[("IMGPORT_STS_ENDPOINT", &sts.url)])).await.expect_err("refused");
    let msg = err.to_string();
    assert!(msg.contains("SignatureDoesNotMatch") && msg.contains("HTTP 400"), "{msg}");
    assert!(!msg.contains("not-the-secret") && !msg.contains("Signature="), "{msg}");

    write(
        &home.path().join(".alibabacloud/credentials"),
        &format!("[default]\ntype = ram_role_arn\naccess_key_id = {BASE_AK}\naccess_key_secret = {BASE_SK}\nrole_arn = acs:ram::1:role/r\n"),
    );
    let (c, src) = resolve(env(home.path(), &[("IMGPORT_STS_ENDPOINT", &sts.url)])).await.expect("accepted");
    assert_eq!((c.access_key_id.as_str(), src.as_str()), (STS_AK, "profile/ram_role_arn (default)"));
}

#[tokio::test]
async fn oidc_exchanges_the_token_file() {
    let home = tempfile::tempdir().expect("tempdir");
    let token_file = home.path().join("token");
    write(&token_file, "eyJhbGciOi.first-token.sig\n");
    let server = Server::start(|r: &Received| {
        // Anonymous action: there must be no signature, and the token must be the file's content.
        let ok = r.method == "POST"
            && r.param("Action").as_deref() == Some("AssumeRoleWithOIDC")
            && r.param("Signature").is_none()
            && r.param("OIDCProviderArn").as_deref() == Some("acs:ram::1:oidc-provider/ack")
            && r.param("RoleArn").as_deref() == Some("acs:ram::1:role/pod")
            && r.param("OIDCToken").is_some_and(|t| t.starts_with("eyJhbGciOi."));
        if ok {
            Reply::ok(sts_json(imgport_auth::time::now() + 3600))
        } else {
            Reply::status(400, r#"{"Code":"InvalidParameter"}"#)
        }
    });
    let e = env(
        home.path(),
        &[
            ("ALIBABA_CLOUD_ROLE_ARN", "acs:ram::1:role/pod"),
            ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", "acs:ram::1:oidc-provider/ack"),
            ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", token_file.to_str().expect("utf-8")),
            ("IMGPORT_STS_ENDPOINT", &server.url),
        ],
    );
    let (c, src) = resolve(e).await.expect("oidc");
    assert_eq!((c.access_key_id.as_str(), c.token(), src.as_str()), (STS_AK, Some(STS_TOKEN), "oidc_role_arn (env)"));
    assert_eq!(server.received()[0].param("OIDCToken").as_deref(), Some("eyJhbGciOi.first-token.sig"));
}

/// A metadata service that insists on the IMDSv2 token (or allows v1 when `v1` is set).
fn imds_server(v1: bool) -> Server {
    Server::start(move |r: &Received| {
        let token_ok = r.header("X-aliyun-ecs-metadata-token") == Some("imds-session-token");
        match (r.method.as_str(), r.path()) {
            ("PUT", "/latest/api/token") if !v1 => {
                if r.header("X-aliyun-ecs-metadata-token-ttl-seconds").is_some() {
                    Reply::ok("imds-session-token")
                } else {
                    Reply::status(400, "")
                }
            }
            ("PUT", _) => Reply::status(403, ""),
            ("GET", _) if !(token_ok || v1) => Reply::status(401, ""),
            ("GET", "/latest/meta-data/ram/security-credentials/") => Reply::ok("ImporterRole"),
            ("GET", "/latest/meta-data/region-id") => Reply::ok("cn-beijing"),
            ("GET", "/latest/meta-data/ram/security-credentials/ImporterRole") => Reply::ok(format!(
                r#"{{"Code":"Success","AccessKeyId":"{STS_AK}","AccessKeySecret":"{STS_SK}","SecurityToken":"{STS_TOKEN}","Expiration":"{}","LastUpdated":"x"}}"#,
                UtcTime::from_unix(imgport_auth::time::now() + 21600).iso8601()
            )),
            _ => Reply::status(404, ""),
        }
    })
}

#[tokio::test]
async fn instance_metadata_v2_token_flow() {
    let home = tempfile::tempdir().expect("tempdir");
    let server = imds_server(false);
    let (c, src) = resolve(env(home.path(), &[("IMGPORT_IMDS_ENDPOINT", &server.url)])).await.expect("imds");
    assert_eq!((c.access_key_id.as_str(), c.token(), src.as_str()), (STS_AK, Some(STS_TOKEN), "ecs_ram_role"));
    let got = server.received();
    let steps: Vec<(String, String)> = got.iter().map(|r| (r.method.clone(), r.path().to_string())).collect();
    assert_eq!(
        steps,
        [
            ("PUT".to_string(), "/latest/api/token".to_string()),
            ("GET".to_string(), "/latest/meta-data/ram/security-credentials/".to_string()),
            ("GET".to_string(), "/latest/meta-data/ram/security-credentials/ImporterRole".to_string()),
        ]
    );
    // Disabled, it is not asked.
    let e =
        env(home.path(), &[("IMGPORT_IMDS_ENDPOINT", &server.url), ("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")]);
    assert!(resolve(e).await.is_err());
    assert_eq!(server.count(), 3);
}

/// The OSS network of an upload: internal when the metadata service (IMDSv2 token flow) answers the import region,
/// public for another region or when it does not answer in time; not asked at all when `--oss-internal` or
/// `IMGPORT_OSS_ENDPOINT` decides, nor on a machine that is not Alibaba Cloud's.
#[tokio::test]
async fn oss_network_follows_the_instance_region() {
    use imgport_auth::endpoints::{oss_network, OssNetwork, OssReason};
    use std::time::{Duration, Instant};
    let home = tempfile::tempdir().expect("tempdir");
    let server = imds_server(false);
    let e = env(home.path(), &[("IMGPORT_IMDS_ENDPOINT", &server.url)]);
    let second = Duration::from_secs(1);
    assert_eq!(oss_network("cn-beijing", false, &e, second).await, (OssNetwork::Internal, OssReason::OnEcsInRegion));
    let steps: Vec<(String, String)> =
        server.received().iter().map(|r| (r.method.clone(), r.path().to_string())).collect();
    assert_eq!(
        steps,
        [
            ("PUT".to_string(), "/latest/api/token".to_string()),
            ("GET".to_string(), "/latest/meta-data/region-id".to_string())
        ]
    );
    assert_eq!(
        oss_network("cn-shanghai", false, &e, second).await,
        (OssNetwork::Public, OssReason::OnEcsElsewhere("cn-beijing".into()))
    );
    let asked = server.count();
    assert_eq!(oss_network("cn-shanghai", true, &e, second).await, (OssNetwork::Internal, OssReason::Forced));
    let overridden =
        env(home.path(), &[("IMGPORT_IMDS_ENDPOINT", &server.url), ("IMGPORT_OSS_ENDPOINT", "http://127.0.0.1:9")]);
    assert_eq!(oss_network("cn-beijing", false, &overridden, second).await.1, OssReason::Override);
    let elsewhere = env(home.path(), &[]);
    assert_eq!(oss_network("cn-beijing", false, &elsewhere, second).await, (OssNetwork::Public, OssReason::NotOnEcs));
    assert_eq!(server.count(), asked, "not asked when the choice is made without it");
    // A metadata service that does not answer in time: public, after the timeout, asked once.
    let slow = Server::start(|r: &Received| {
        if r.path() == "/latest/meta-data/region-id" {
            std::thread::sleep(Duration::from_secs(3));
        }
        Reply::ok("cn-beijing")
    });
    let e = env(home.path(), &[("IMGPORT_IMDS_ENDPOINT", &slow.url)]);
    let started = Instant::now();
    assert_eq!(oss_network("cn-beijing", false, &e, second).await, (OssNetwork::Public, OssReason::NotOnEcs));
    assert!(started.elapsed() < Duration::from_millis(2500), "bounded by the timeout: {:?}", started.elapsed());
}

#[tokio::test]
async fn instance_metadata_v1_fallback_and_v2_only() {
    let home = tempfile::tempdir().expect("tempdir");
    let server = imds_server(true);
    let e = env(home.path(), &[("IMGPORT_IMDS_ENDPOINT", &server.url), ("ALIBABA_CLOUD_ECS_METADATA", "ImporterRole")]);
    let (c, _) = resolve(e).await.expect("v1 fallback");
    assert_eq!(c.access_key_id, STS_AK);
    let e = env(
        home.path(),
        &[
            ("IMGPORT_IMDS_ENDPOINT", &server.url),
            ("ALIBABA_CLOUD_ECS_METADATA", "ImporterRole"),
            ("ALIBABA_CLOUD_IMDSV1_DISABLED", "true"),
        ],
    );
    let err = resolve(e).await.expect_err("v2 only");
    assert!(err.to_string().contains("metadata token"), "{err}");
}

#[tokio::test]
async fn cli_ecs_ram_role_profile_uses_metadata() {
    let home = tempfile::tempdir().expect("tempdir");
    let server = imds_server(false);
    cli_config(
        home.path(),
        r#"{"current":"ecs","profiles":[{"name":"ecs","mode":"EcsRamRole","ram_role_name":"ImporterRole"}]}"#,
    );
    let (c, src) = resolve(env(home.path(), &[("IMGPORT_IMDS_ENDPOINT", &server.url)])).await.expect("ecs role");
    assert_eq!((c.access_key_id.as_str(), src.as_str()), (STS_AK, "cli_profile/EcsRamRole (ecs)"));
    // The role is configured, so it is not listed first.
    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn imds_refreshing_provider_reports_its_name() {
    let home = tempfile::tempdir().expect("tempdir");
    let server = imds_server(false);
    let e = env(home.path(), &[("IMGPORT_IMDS_ENDPOINT", &server.url)]);
    let p = Refreshing::new(Imds::new(&e, None).expect("imds"), "ecs_ram_role", Arc::new(imgport_auth::time::now));
    assert_eq!(p.name(), "ecs_ram_role");
    assert!(p.credentials().await.is_ok());
    assert!(p.credentials().await.is_ok());
    assert_eq!(server.count(), 3, "second call served from the cache");
}
