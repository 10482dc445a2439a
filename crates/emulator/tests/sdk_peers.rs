//! The emulator driven by Alibaba's official Python SDKs (oss2 with V1 and V4 signatures, alibabacloud-oss-v2,
//! alibabacloud-ecs20140526) as real clients, against an in-process emulator on a random port: conformance,
//! authentication errors, every fault kind, persistence across a restart.
//!
//! Needs the peers scripts/install-peers.sh installs (python3 with the SDKs, qemu-img); fails without them.

use imgport_emulator::faults::{Fault, FaultConfig, FaultRule};
use imgport_emulator::{Emulator, EmulatorConfig, RunningEmulator};
use imgport_test_support::peers::require_python;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::process::Command;

const AK: &str = "LTAI5tEmulatorTest01";
const SK: &str = "emulator-test-secret-0123456789";
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/oss_conformance.py");
const RPC_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/rpc_gateway.py");

/// The official SDKs are the test's peers (scripts/install-peers.sh installs them): without them the test fails,
/// never skips.
fn require_oss_sdks() {
    require_python("oss2, alibabacloud_oss_v2, requests");
}

struct Emu {
    running: Option<RunningEmulator>,
    dir: tempfile::TempDir,
}

impl Emu {
    fn start(faults: FaultConfig) -> Emu {
        let dir = tempfile::tempdir().expect("tempdir");
        let running = start_in(dir.path(), faults);
        Emu { running: Some(running), dir }
    }

    fn get(&self) -> &RunningEmulator {
        self.running.as_ref().expect("running")
    }

    fn restart(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown();
        }
        self.running = Some(start_in(self.dir.path(), FaultConfig::default()));
    }

    fn config(&self, extra: Value) -> Value {
        let mut cfg = json!({"endpoint": self.get().oss_endpoint, "ak": AK, "sk": SK, "bucket": "conformance"});
        if let (Some(c), Value::Object(e)) = (cfg.as_object_mut(), extra) {
            c.extend(e);
        }
        cfg
    }

    /// Runs one scenario of the conformance script; (success, output).
    fn scenario(&self, name: &str, extra: Value) -> (bool, String) {
        let out = Command::new("python3")
            .args([SCRIPT, name, &self.config(extra).to_string()])
            .output()
            .expect("python3 runs");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    fn expect_ok(&self, name: &str, extra: Value) -> String {
        let (ok, text) = self.scenario(name, extra);
        assert!(ok, "scenario {name} failed:\n{text}\nrequests:\n{}", self.log_lines());
        assert!(text.contains(&format!("ok {name}")), "{text}");
        text
    }

    fn log_lines(&self) -> String {
        self.get().request_log().iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")
    }

    fn set_faults(&self, rules: Vec<FaultRule>) {
        self.get().set_faults(FaultConfig { seed: 7, rules, ..Default::default() });
    }
}

fn start_in(dir: &std::path::Path, faults: FaultConfig) -> RunningEmulator {
    let mut cfg = EmulatorConfig::new(dir).with_keys(AK, SK);
    cfg.faults = faults;
    Emulator::start(cfg).expect("emulator starts")
}

fn rule(operation: &str, fault: Fault) -> FaultRule {
    FaultRule { operation: operation.into(), fault, rate: 1.0, after: 0, times: None }
}

#[test]
fn oss2_v1_conformance() {
    require_oss_sdks();
    Emu::start(FaultConfig::default()).expect_ok("full-oss2-v1", json!({}));
}

#[test]
fn oss2_v4_conformance() {
    require_oss_sdks();
    Emu::start(FaultConfig::default()).expect_ok("full-oss2-v4", json!({}));
}

#[test]
fn oss_v2_sdk_conformance() {
    require_oss_sdks();
    Emu::start(FaultConfig::default()).expect_ok("full-v2", json!({}));
}

#[test]
fn wrong_secret_unknown_key_anonymous_and_presigned() {
    require_oss_sdks();
    let emu = Emu::start(FaultConfig::default());
    emu.expect_ok("wrong-secret", json!({}));
    let log = emu.log_lines();
    assert!(log.contains(" 403 "), "{log}");
    assert!(!log.contains(SK) && !log.contains("Signature="), "{log}");
}

#[test]
fn temporary_credentials_and_expiry() {
    require_oss_sdks();
    let emu = Emu::start(FaultConfig::default());
    emu.expect_ok("setup", json!({}));
    let t = emu.get().issue_temporary_credentials(3600).expect("issue");
    let sts = |extra: Value| {
        let mut v = json!({"ak": t.access_key_id, "sk": t.access_key_secret, "token": t.security_token});
        if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
            o.extend(e);
        }
        v
    };
    emu.expect_ok("sts-ok", sts(json!({})));
    // The temporary key without its token.
    emu.expect_ok("sts-missing-token", json!({"ak": t.access_key_id, "sk": t.access_key_secret}));
    // Credentials issued already expired.
    let old = emu.get().issue_temporary_credentials(-60).expect("issue");
    emu.expect_ok(
        "sts-expired",
        json!({"ak": old.access_key_id, "sk": old.access_key_secret, "token": old.security_token}),
    );
    // The token-expiry fault: valid credentials count as expired from now on.
    let now = emu.get().state().now();
    emu.get().set_faults(FaultConfig { tokens_expire_at: Some(now), ..Default::default() });
    emu.expect_ok("sts-expired", sts(json!({})));
    emu.get().set_faults(FaultConfig::default());
    emu.expect_ok("sts-ok", sts(json!({})));
    // Nothing secret in the request log.
    let log = serde_json::to_string(&emu.get().request_log()).expect("json");
    for secret in [SK, t.access_key_secret.as_str(), t.security_token.as_str()] {
        assert!(!log.contains(secret), "the log holds a secret");
    }
}

#[test]
fn injected_errors_are_what_the_sdk_sees() {
    require_oss_sdks();
    let emu = Emu::start(FaultConfig::default());
    emu.expect_ok("setup", json!({}));
    for (fault, code, status) in [
        (Fault::InternalError, "InternalError", 500),
        (Fault::ServiceUnavailable, "ServiceUnavailable", 503),
        (Fault::SlowDown, "SlowDown", 503),
    ] {
        emu.set_faults(vec![rule("PutObject", fault)]);
        let out = emu.expect_ok("expect-code", json!({"code": code, "status": status}));
        assert!(out.contains("message "), "{out}");
    }
    // Rules for other operations leave PutObject alone.
    emu.set_faults(vec![rule("UploadPart", Fault::InternalError)]);
    let (ok, _) = emu.scenario("expect-code", json!({"code": "InternalError", "status": 500}));
    assert!(!ok);
}

#[test]
fn the_v2_sdk_retries_throttling_and_errors_and_succeeds() {
    require_oss_sdks();
    let emu = Emu::start(FaultConfig::default());
    emu.expect_ok("setup", json!({}));
    let mut slow = rule("PutObject", Fault::SlowDown);
    slow.times = Some(2);
    emu.set_faults(vec![slow]);
    emu.expect_ok("v2-retrying-put", json!({"attempts": 5}));
    let puts: Vec<u16> =
        emu.get().request_log().iter().filter(|e| e.operation == "PutObject").map(|e| e.status).collect();
    assert_eq!(puts, vec![503, 503, 200], "{}", emu.log_lines());
}

fn faulty_multipart(seed: u64) -> (String, Vec<(String, u16)>) {
    let emu = Emu::start(FaultConfig::default());
    emu.expect_ok("setup", json!({}));
    let mut errors = rule("*", Fault::InternalError);
    errors.rate = 0.25;
    let mut throttle = rule("UploadPart", Fault::SlowDown);
    throttle.rate = 0.15;
    emu.get().set_faults(FaultConfig { seed, rules: vec![errors, throttle], ..Default::default() });
    let out = emu.expect_ok("retrying-multipart", json!({}));
    let seq = emu.get().request_log().iter().skip(1).map(|e| (e.operation.clone(), e.status)).collect();
    (out, seq)
}

#[test]
fn a_retrying_client_completes_under_error_rates_deterministically() {
    require_oss_sdks();
    let (out, seq) = faulty_multipart(11);
    let retries: u32 = out
        .lines()
        .find_map(|l| l.strip_prefix("retries ").and_then(|n| n.trim().parse().ok()))
        .expect("retry count printed");
    assert!(retries > 0, "{out}");
    assert!(seq.iter().filter(|(_, s)| *s >= 500).count() >= 2, "{seq:?}");
    assert!(seq.iter().any(|(op, s)| op == "UploadPart" && *s == 503), "{seq:?}");
    // The same seed gives the same faults.
    let (_, again) = faulty_multipart(11);
    assert_eq!(seq, again);
}

#[test]
fn latency_is_added() {
    require_oss_sdks();
    let emu = Emu::start(FaultConfig::default());
    emu.set_faults(vec![rule("PutBucket", Fault::Latency { ms: 400 })]);
    let started = std::time::Instant::now();
    emu.expect_ok("setup", json!({}));
    assert!(started.elapsed() >= std::time::Duration::from_millis(400));
    let entry = emu.get().request_log().into_iter().find(|e| e.operation == "PutBucket").expect("logged");
    assert!(entry.duration_ms >= 400 && entry.fault.as_deref() == Some("latency 400ms"), "{entry}");
}

#[test]
fn dropped_response_mid_body() {
    require_oss_sdks();
    let emu = Emu::start(FaultConfig::default());
    emu.expect_ok("setup", json!({"put": "drop.bin"}));
    let mut drop = rule("GetObject", Fault::DropResponse { after_bytes: 1000 });
    drop.times = Some(1);
    emu.set_faults(vec![drop]);
    let out = emu.expect_ok("dropped-get", json!({"key": "drop.bin"}));
    assert!(out.contains("client saw"), "{out}");
}

#[test]
fn dropped_connection_while_receiving_a_body() {
    require_oss_sdks();
    let emu = Emu::start(FaultConfig::default());
    emu.expect_ok("setup", json!({}));
    let mut drop = rule("PutObject", Fault::DropRequest { after_bytes: 64 * 1024 });
    drop.times = Some(1);
    emu.set_faults(vec![drop]);
    emu.expect_ok("dropped-put", json!({}));
    let statuses: Vec<u16> =
        emu.get().request_log().iter().filter(|e| e.operation == "PutObject").map(|e| e.status).collect();
    assert_eq!(statuses, vec![0, 200], "{}", emu.log_lines());
}

#[test]
fn clock_skew_gives_request_time_too_skewed_and_the_date_to_correct_by() {
    require_oss_sdks();
    let emu = Emu::start(FaultConfig::default());
    emu.expect_ok("setup", json!({}));
    emu.get().set_faults(FaultConfig { clock_skew_seconds: 1800, ..Default::default() });
    emu.expect_ok("skew", json!({"skew": 1800}));
}

/// An admin API call, with the emulator's admin secret.
fn http(emu: &RunningEmulator, method: &str, path: &str, body: &str) -> (u16, String) {
    let addr = emu.addr;
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        emu.admin_secret,
        body.len()
    );
    s.write_all(req.as_bytes()).expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    (status, body)
}

#[test]
fn faults_set_through_the_admin_endpoint() {
    require_oss_sdks();
    let emu = Emu::start(FaultConfig::default());
    emu.expect_ok("setup", json!({}));
    let addr = emu.get();
    let cfg = r#"{"seed": 1, "rules": [{"operation": "PutObject", "kind": "slow_down"}]}"#;
    let (status, body) = http(addr, "POST", "/_emulator/faults", cfg);
    assert_eq!(status, 200, "{body}");
    assert_eq!(emu.get().faults().rules.len(), 1);
    emu.expect_ok("expect-code", json!({"code": "SlowDown", "status": 503}));
    let (status, body) = http(addr, "GET", "/_emulator/faults", "");
    assert!(status == 200 && body.contains("slow_down"), "{body}");
    let (status, _) = http(addr, "POST", "/_emulator/faults", "{\"rules\": [{\"kind\": \"no_such_fault\"}]}");
    assert_eq!(status, 400);
    let (status, _) = http(addr, "DELETE", "/_emulator/faults", "");
    assert_eq!(status, 200);
    assert!(emu.get().faults().rules.is_empty());
    let (status, body) = http(addr, "GET", "/_emulator/requests", "");
    assert!(status == 200 && body.contains("PutObject"), "{body}");
}

#[test]
fn state_persists_across_a_restart() {
    require_oss_sdks();
    let mut emu = Emu::start(FaultConfig::default());
    let out = emu.expect_ok("persist-write", json!({}));
    let saved: Value = out.lines().find_map(|l| serde_json::from_str(l).ok()).expect("upload facts printed");
    let t = emu.get().issue_temporary_credentials(3600).expect("issue");
    emu.restart();
    emu.expect_ok("persist-check", saved);
    // Temporary credentials survive too.
    emu.expect_ok("sts-ok", json!({"ak": t.access_key_id, "sk": t.access_key_secret, "token": t.security_token}));
}

#[test]
fn rpc_gateway_authenticates_the_ecs_sdk_and_answers_unknown_actions() {
    require_python("alibabacloud_ecs20140526, alibabacloud_tea_openapi");
    let emu = Emu::start(FaultConfig::default());
    let run = |args: &[&str]| {
        let out =
            Command::new("python3").arg(RPC_SCRIPT).arg(&emu.get().ecs_endpoint).args(args).output().expect("python3");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{text}\nrequests:\n{}", emu.log_lines());
        text
    };
    let text = run(&[AK, SK]);
    assert!(text.contains("ok rpc"), "{text}");
    let text = run(&[AK, "wrong-secret", "expect=SignatureDoesNotMatch"]);
    assert!(text.contains("ok rpc"), "{text}");
    let text = run(&["LTAInobodyknowsthis1", SK, "expect=InvalidAccessKeyId.NotFound"]);
    assert!(text.contains("ok rpc"), "{text}");
    let ops: Vec<String> = emu.get().request_log().iter().map(|e| e.operation.clone()).collect();
    assert!(ops.iter().any(|o| o == "DescribeZones"), "{ops:?}");
}
