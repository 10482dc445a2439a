//! Requests signed by Alibaba's Python OSS SDKs verify with imgport's OSS V1 and V4 verifiers; a wrong secret
//! does not. Needs `python3` with `oss2` and `alibabacloud-oss-v2` (scripts/install-peers.sh); fails without them.

use imgport_auth::sign::{oss_v1, oss_v4, VerifyError};
use imgport_auth::{Secret, SignableRequest};
use imgport_test_support::responder::{Received, Reply, Server};
use std::process::Command;
use std::sync::{Arc, Mutex};

const AK: &str = "LTAI5tPeerTestKey01";
const SK: &str = "peer-test-secret";
const TOKEN: &str = "peer-test-token";

fn verify(r: &Received) -> Result<&'static str, VerifyError> {
    let req = SignableRequest::from_target(&r.method, &r.target, r.headers.clone())
        .map_err(|e| VerifyError::Malformed(e.to_string()))?;
    // Path style: /bucket/key.
    let rest = req.path.trim_start_matches('/');
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    let keys = |ak: &str| (ak == AK).then(|| Secret::new(SK));
    let res = oss_v4::Resource { bucket: Some(bucket), key: Some(key).filter(|k| !k.is_empty()) };
    let token = req.header("x-oss-security-token");
    if token.is_some_and(|t| t != TOKEN) {
        return Err(VerifyError::Malformed("wrong token".into()));
    }
    match req.header("Authorization") {
        Some(a) if a.starts_with("OSS4-HMAC-SHA256 ") => oss_v4::verify(&req, res, &keys).map(|_| "v4"),
        _ => oss_v1::verify(&req, res.bucket, res.key, &keys).map(|_| "v1"),
    }
}

fn run_clients(secret: &str) -> (bool, String, Vec<String>) {
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let seen = outcomes.clone();
    let server = Server::start(move |r: &Received| {
        let outcome = verify(r);
        seen.lock().expect("lock").push(format!(
            "{} {} -> {:?}",
            r.method,
            r.target,
            outcome.as_ref().map_err(|e| e.to_string())
        ));
        match outcome {
            Ok(_) if r.method == "GET" => Reply::ok("hel"),
            Ok(_) => Reply::ok(""),
            Err(_) => Reply::status(403, ""),
        }
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/oss_clients.py");
    let out = Command::new("python3").args([script, &server.url, AK, secret, TOKEN]).output().expect("python3 runs");
    let log = outcomes.lock().expect("lock").clone();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text, log)
}

#[test]
fn official_python_sdks_verify() {
    assert!(
        imgport_test_support::peers::python_has("oss2, alibabacloud_oss_v2"),
        "python3 with oss2 and alibabacloud-oss-v2 is missing: run scripts/install-peers.sh"
    );
    let (ok, text, log) = run_clients(SK);
    assert!(ok, "clients failed:\n{text}\nserver saw:\n{}", log.join("\n"));
    assert!(log.len() >= 12, "{}", log.join("\n"));
    assert!(log.iter().all(|l| l.ends_with("Ok(\"v1\")") || l.ends_with("Ok(\"v4\")")), "{}", log.join("\n"));
    assert!(log.iter().any(|l| l.ends_with("Ok(\"v1\")")) && log.iter().any(|l| l.ends_with("Ok(\"v4\")")));
    assert!(text.contains("alibabacloud-oss-v2 v4 ok"), "{text}");

    let (ok, _, log) = run_clients("a-wrong-secret");
    assert!(!ok);
    assert!(log.first().is_some_and(|l| l.contains("does not match")), "{}", log.join("\n"));
}
