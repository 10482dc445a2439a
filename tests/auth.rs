//! `imgport auth whoami` end to end: the source it names, and that no secret or token ever reaches its output.

use imgport_auth::sign::rpc_v1;
use imgport_auth::time::{now, UtcTime};
use imgport_auth::{Credentials, Secret};
use imgport_test_support::responder::{Received, Reply, Server};
use std::path::Path;
use std::process::Command;

const SECRET: &str = "whoami-secret-MUST-NOT-LEAK";
const TOKEN: &str = "whoami-token-MUST-NOT-LEAK";
const STS_SECRET: &str = "sts-secret-MUST-NOT-LEAK";
const STS_TOKEN: &str = "sts-token-MUST-NOT-LEAK";

/// Runs whoami with only the given variables, a private HOME and instance metadata off.
fn whoami(home: &Path, vars: &[(&str, &str)], json: bool) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgport"));
    cmd.env_clear().env("HOME", home).env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true").args(["auth", "whoami"]);
    if json {
        cmd.arg("--json");
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run imgport");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_no_secrets(text: &str) {
    for s in [SECRET, TOKEN, STS_SECRET, STS_TOKEN] {
        assert!(!text.contains(s), "a secret leaked: {text}");
    }
}

#[test]
fn environment_credentials_human_and_json() {
    let home = tempfile::tempdir().expect("tempdir");
    let vars = [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI5tWhoAmIKeyId42"),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET),
        ("ALIBABA_CLOUD_SECURITY_TOKEN", TOKEN),
    ];
    let (code, stdout, stderr) = whoami(home.path(), &vars, false);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("env (ALIBABA_CLOUD_ACCESS_KEY_ID)"), "{stdout}");
    assert!(stdout.contains("LTAI...Id42") && !stdout.contains("LTAI5tWhoAmIKeyId42"), "{stdout}");
    assert!(stdout.contains("security token: present"), "{stdout}");
    assert_no_secrets(&format!("{stdout}{stderr}"));

    let (code, stdout, stderr) = whoami(home.path(), &vars, true);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(v["source"], "env (ALIBABA_CLOUD_ACCESS_KEY_ID)");
    assert_eq!(v["access_key_id"], "LTAI...Id42");
    assert_eq!(v["security_token"], true);
    assert!(v["expiration"].is_null());
    assert_no_secrets(&format!("{stdout}{stderr}"));

    // Debug output of the credentials themselves.
    let c = Credentials::new("LTAI5tWhoAmIKeyId42", SECRET).with_token(TOKEN);
    assert_no_secrets(&format!("{c:?} {c:#?} {:?} {}", c.access_key_secret, c.access_key_secret));
}

#[test]
fn role_credentials_from_a_cli_profile() {
    let home = tempfile::tempdir().expect("tempdir");
    let sts = Server::start(|r: &Received| {
        let keys = |ak: &str| (ak == "LTAI5tBaseKeyForRole").then(|| Secret::new(SECRET));
        match rpc_v1::verify(&r.method, &r.params(), &keys) {
            Ok(_) => Reply::ok(format!(
                r#"{{"RequestId":"1","Credentials":{{"AccessKeyId":"STS.NRoleKey0001","AccessKeySecret":"{STS_SECRET}","SecurityToken":"{STS_TOKEN}","Expiration":"{}"}}}}"#,
                UtcTime::from_unix(now() + 3600).iso8601()
            )),
            Err(_) => Reply::status(400, r#"{"Code":"SignatureDoesNotMatch","Message":"no","RequestId":"2"}"#),
        }
    });
    let dir = home.path().join(".aliyun");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("config.json"),
        format!(
            r#"{{"current":"deploy","profiles":[{{"name":"deploy","mode":"RamRoleArn","access_key_id":"LTAI5tBaseKeyForRole","access_key_secret":"{SECRET}","ram_role_arn":"acs:ram::1:role/importer"}}]}}"#
        ),
    )
    .expect("config");
    let vars = [("IMGPORT_STS_ENDPOINT", sts.url.as_str())];
    let (code, stdout, stderr) = whoami(home.path(), &vars, false);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("cli_profile/RamRoleArn (deploy)"), "{stdout}");
    assert!(stdout.contains("STS....0001"), "{stdout}");
    assert!(stdout.contains("expires:") && (stdout.contains("(in 59m") || stdout.contains("(in 60m")), "{stdout}");
    assert_no_secrets(&format!("{stdout}{stderr}"));
    let (code, stdout, stderr) = whoami(home.path(), &vars, true);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(v["security_token"], true);
    assert!(v["expires_in_seconds"].as_i64().is_some_and(|s| (3500..=3600).contains(&s)), "{stdout}");
    assert_no_secrets(&format!("{stdout}{stderr}"));

    // A rejected role request: the error names the service's code, still without secrets or the signed URL.
    std::fs::write(
        dir.join("config.json"),
        format!(
            r#"{{"current":"deploy","profiles":[{{"name":"deploy","mode":"RamRoleArn","access_key_id":"LTAI5tBaseKeyForRole","access_key_secret":"{STS_SECRET}","ram_role_arn":"acs:ram::1:role/importer"}}]}}"#
        ),
    )
    .expect("config");
    let (code, stdout, stderr) = whoami(home.path(), &vars, false);
    assert_eq!(code, 1, "{stdout}");
    assert!(stderr.contains("SignatureDoesNotMatch"), "{stderr}");
    assert!(!stderr.contains("Signature="), "{stderr}");
    assert_no_secrets(&format!("{stdout}{stderr}"));
}

#[test]
fn no_credentials_is_an_error_listing_the_sources() {
    let home = tempfile::tempdir().expect("tempdir");
    let (code, stdout, stderr) = whoami(home.path(), &[], false);
    assert_eq!(code, 1);
    assert!(stdout.is_empty());
    assert!(stderr.contains("no credentials found") && stderr.contains("cli_profile: not configured"), "{stderr}");
}
