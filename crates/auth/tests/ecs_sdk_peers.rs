//! Requests from Alibaba's Python ECS SDK, signed with ACS3-HMAC-SHA256 and with RPC V1, verify with imgport's
//! verifiers; a wrong secret does not. Needs `python3` with `alibabacloud-ecs20140526` (scripts/install-peers.sh);
//! fails without it.

use imgport_auth::sign::{acs3, rpc_v1, sha256_hex, VerifyError};
use imgport_auth::{Secret, SignableRequest};
use imgport_test_support::responder::{Received, Reply, Server};
use std::process::Command;
use std::sync::{Arc, Mutex};

const AK: &str = "LTAI5tEcsPeerKey001";
const SK: &str = "ecs-peer-secret";
const TOKEN: &str = "ecs-peer-token";

fn verify(r: &Received) -> Result<&'static str, VerifyError> {
    let keys = |ak: &str| (ak == AK).then(|| Secret::new(SK));
    let req = SignableRequest::from_target(&r.method, &r.target, r.headers.clone())
        .map_err(|e| VerifyError::Malformed(e.to_string()))?;
    if req.header("Authorization").is_some_and(|a| a.starts_with("ACS3-HMAC-SHA256 ")) {
        if req.header("x-acs-security-token").is_some_and(|t| t != TOKEN) {
            return Err(VerifyError::Malformed("wrong token".into()));
        }
        acs3::verify(&req, &sha256_hex(&r.body), &keys).map(|_| "acs3")
    } else {
        let params = r.params();
        if params.iter().any(|(k, v)| k == "SecurityToken" && v != TOKEN) {
            return Err(VerifyError::Malformed("wrong token".into()));
        }
        rpc_v1::verify(&r.method, &params, &keys).map(|_| "rpc")
    }
}

fn run(secret: &str) -> (bool, String, Vec<String>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    let server = Server::start(move |r: &Received| {
        let outcome = verify(r);
        seen.lock().expect("lock").push(format!(
            "{} {} -> {:?}",
            r.method,
            r.path(),
            outcome.as_ref().map_err(|e| e.to_string())
        ));
        match outcome {
            Ok(_) => Reply::ok(r#"{"RequestId":"req-1","Regions":{"Region":[]},"Images":{"Image":[]},"TotalCount":0}"#),
            Err(_) => Reply::status(400, r#"{"RequestId":"req-2","Code":"SignatureDoesNotMatch","Message":"no"}"#),
        }
    });
    let host = server.url.trim_start_matches("http://").to_string();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/ecs_client.py");
    let out = Command::new("python3").args([script, &host, AK, secret, TOKEN]).output().expect("python3 runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let log = log.lock().expect("lock").clone();
    (out.status.success(), text, log)
}

#[test]
fn official_ecs_sdk_verifies() {
    let has_sdk = Command::new("python3")
        .args(["-c", "import alibabacloud_ecs20140526"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(has_sdk, "python3 with alibabacloud-ecs20140526 is missing: run scripts/install-peers.sh");
    let (ok, text, log) = run(SK);
    assert!(ok, "client failed:\n{text}\nserver saw:\n{}", log.join("\n"));
    assert_eq!(log.len(), 8, "{}", log.join("\n"));
    assert_eq!(log.iter().filter(|l| l.ends_with("Ok(\"acs3\")")).count(), 4, "{}", log.join("\n"));
    assert_eq!(log.iter().filter(|l| l.ends_with("Ok(\"rpc\")")).count(), 4, "{}", log.join("\n"));

    let (ok, _, log) = run("a-wrong-secret");
    assert!(!ok);
    assert!(log.first().is_some_and(|l| l.contains("does not match")), "{}", log.join("\n"));
}
