//! What SDK tests do not reach: virtual-hosted addressing, chunked request bodies, the response headers every
//! write carries, HEAD errors without a body, and the RPC gateway's placeholder answers in XML and JSON; and what
//! a hostile client tries: the admin API without its secret or from another site, deeply nested XML, stalled
//! connections, unsigned bodies, replays, VMDK extents naming host files, and files others could read.

use imgport_auth::sign::{acs3, oss_v1, oss_v4, rpc_v1, sha256_hex};
use imgport_auth::time::{now, UtcTime};
use imgport_auth::{Credentials, SignableRequest};
use imgport_emulator::{CloudSettings, Emulator, EmulatorConfig, RunningEmulator};
use imgport_test_support::http::{exchange, read_head, Answer};
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const AK: &str = "LTAI5tRawHttpTestKey";
const SK: &str = "raw-http-test-secret";

/// Sends a request as-is (`body_wire` already framed) and reads the whole answer.
fn send(emu: &RunningEmulator, req: &SignableRequest, body_wire: &[u8], framing: &str) -> Answer {
    let mut s = TcpStream::connect(emu.addr).expect("connect");
    let mut head = format!("{} {} HTTP/1.1\r\n{framing}Connection: close\r\n", req.method, req.target());
    for (k, v) in &req.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("head");
    s.write_all(body_wire).expect("body");
    let mut r = BufReader::new(s);
    let (status, headers) = read_head(&mut r);
    let mut body = String::new();
    if req.method != "HEAD" {
        let _ = r.read_to_string(&mut body);
    }
    Answer { status, headers, body }
}

fn start(dir: &std::path::Path) -> RunningEmulator {
    Emulator::start(EmulatorConfig::new(dir).with_keys(AK, SK)).expect("start")
}

fn creds() -> Credentials {
    Credentials::new(AK, SK)
}

fn v1(method: &str, host: &str, path: &str, bucket: &str, key: Option<&str>) -> SignableRequest {
    let mut r = SignableRequest::new(method, path).with_header("Host", host);
    oss_v1::sign_header(&mut r, &creds(), Some(bucket), key, now());
    r
}

#[test]
fn virtual_hosted_and_chunked_bodies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = start(dir.path());
    let host = emu.addr.to_string();
    let a = send(&emu, &v1("PUT", &host, "/vbucket", "vbucket", None), b"", "Content-Length: 0\r\n");
    assert_eq!(a.status, 200, "{}", a.body);

    // Virtual-hosted (V4): the bucket is in the Host header, the path holds only the key.
    let vhost = format!("vbucket.localhost:{}", emu.addr.port());
    let mut r = SignableRequest::new("PUT", "/dir/v4.txt").with_header("Host", &vhost);
    let res = oss_v4::Resource { bucket: Some("vbucket"), key: Some("dir/v4.txt") };
    let scope = oss_v4::Scope { region: "cn-hangzhou", product: "oss" };
    oss_v4::sign_header(&mut r, &creds(), res, scope, &[], now());
    let a = send(&emu, &r, b"virtual", "Content-Length: 7\r\n");
    assert_eq!(a.status, 200, "{}", a.body);
    // Every write answers with its CRC-64, MD5 and ETag.
    assert_eq!(
        a.header("x-oss-hash-crc64ecma"),
        Some(imgport_emulator::crc64::checksum(b"virtual").to_string().as_str())
    );
    assert!(a.header("ETag").is_some_and(|e| e.starts_with('"') && e.len() == 34), "{:?}", a.headers);
    assert!(a.header("x-oss-request-id").is_some() && a.header("Date").is_some());

    // Chunked transfer encoding, no Content-Length (V1, virtual-hosted).
    let r = v1("PUT", &vhost, "/chunked.bin", "vbucket", Some("chunked.bin"));
    let a = send(&emu, &r, b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "Transfer-Encoding: chunked\r\n");
    assert_eq!(a.status, 200, "{}", a.body);

    // Both read back path style.
    let a = send(&emu, &v1("GET", &host, "/vbucket/dir/v4.txt", "vbucket", Some("dir/v4.txt")), b"", "");
    assert_eq!((a.status, a.body.as_str()), (200, "virtual"));
    let a = send(&emu, &v1("GET", &host, "/vbucket/chunked.bin", "vbucket", Some("chunked.bin")), b"", "");
    assert_eq!((a.status, a.body.as_str()), (200, "hello world"));

    // HEAD of a missing key: 404 with the request id and error code headers, no body.
    let a = send(&emu, &v1("HEAD", &host, "/vbucket/none", "vbucket", Some("none")), b"", "");
    assert_eq!(a.status, 404);
    assert!(a.header("x-oss-request-id").is_some());

    // A request signed for another key is refused with the server's string to sign.
    let mut r = v1("GET", &host, "/vbucket/chunked.bin", "vbucket", Some("other.bin"));
    r.set_header("Host", &host);
    let a = send(&emu, &r, b"", "");
    assert_eq!(a.status, 403);
    assert!(a.body.contains("<Code>SignatureDoesNotMatch</Code>") && a.body.contains("<StringToSign>"), "{}", a.body);
    assert!(a.body.contains("/vbucket/chunked.bin"), "{}", a.body);
    assert!(!a.body.contains(SK));
}

#[test]
fn rpc_unknown_actions_and_answers_in_the_requested_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = start(dir.path());
    let call_action = |action: &str, version: &str, format: &str, secret: &str| {
        let mut params: Vec<(String, String)> = [("Action", action), ("Version", version), ("Format", format)]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let nonce = imgport_emulator::util::random_hex(8);
        rpc_v1::sign(&mut params, "GET", &Credentials::new(AK, secret), now(), &nonce);
        let mut r = SignableRequest::new("GET", "/").with_header("Host", &emu.addr.to_string());
        r.query = params;
        send(&emu, &r, b"", "")
    };
    let call = |version: &str, format: &str, secret: &str| call_action("NoSuchAction", version, format, secret);
    let a = call_action("GetCallerIdentity", "2015-04-01", "XML", SK);
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("<GetCallerIdentityResponse><AccountId>"), "{}", a.body);
    let a = call("2015-04-01", "JSON", SK);
    assert_eq!(a.status, 404, "{}", a.body);
    let v: serde_json::Value = serde_json::from_str(&a.body).expect("JSON error body");
    assert_eq!(v["Code"], "InvalidAction.NotFound");
    assert!(v["RequestId"].as_str().is_some_and(|id| id.len() == 36));
    let a = call("2014-05-26", "XML", SK);
    assert!(a.body.contains("<Code>InvalidAction.NotFound</Code>") && a.body.contains("<RequestId>"), "{}", a.body);
    let a = call("1999-01-01", "JSON", SK);
    assert!(a.body.contains("InvalidVersion"), "{}", a.body);
    let a = call("2014-05-26", "JSON", "wrong");
    assert!(a.status == 400 && a.body.contains("SignatureDoesNotMatch"), "{}", a.body);
}

fn admin(addr: SocketAddr, method: &str, path: &str, host: &str, extra: &str, body: &str) -> Answer {
    let wire = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    exchange(addr, wire.as_bytes(), Duration::from_secs(10)).expect("an answer")
}

#[test]
fn admin_api_needs_its_secret_and_refuses_other_sites() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = start(dir.path());
    let (addr, port) = (emu.addr, emu.addr.port());
    let here = addr.to_string();
    let ten_years = r#"{"duration_seconds": 315360000}"#;
    // What a web page can send without a preflight: a text/plain POST, no credentials.
    let a = admin(addr, "POST", "/_emulator/credentials", &here, "Content-Type: text/plain\r\n", ten_years);
    assert_eq!(a.status, 401, "{}", a.body);
    assert!(!a.body.contains("AccessKeyId"), "{}", a.body);
    let a = admin(addr, "POST", "/_emulator/faults", &here, "", r#"{"rules": [{"kind": "internal_error"}]}"#);
    assert_eq!(a.status, 401, "{}", a.body);
    assert!(emu.faults().rules.is_empty());
    let a = admin(addr, "GET", "/_emulator/requests", &here, "Authorization: Bearer wrong\r\n", "");
    assert_eq!(a.status, 401, "{}", a.body);

    assert!(emu.admin_secret.len() >= 32, "a generated secret");
    let auth = format!("Authorization: Bearer {}\r\n", emu.admin_secret);
    // Another site, even with the secret: an Origin header, or a Host that is not this listener (DNS rebinding).
    let a = admin(addr, "POST", "/_emulator/faults", &here, &format!("{auth}Origin: http://evil.example\r\n"), "{}");
    assert_eq!(a.status, 403, "{}", a.body);
    let a = admin(addr, "GET", "/_emulator/faults", &format!("evil.example:{port}"), &auth, "");
    assert_eq!(a.status, 403, "{}", a.body);
    let a = admin(addr, "GET", "/_emulator/faults", &format!("127.0.0.1:{}", port ^ 1), &auth, "");
    assert_eq!(a.status, 403, "{}", a.body);
    // Loopback names of this port are fine.
    for host in [here.clone(), format!("localhost:{port}")] {
        let a = admin(addr, "GET", "/_emulator/health", &host, &auth, "");
        assert_eq!(a.status, 200, "{host}: {}", a.body);
    }
    let a = admin(addr, "POST", "/_emulator/faults", &here, &auth, r#"{"seed": 3}"#);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(emu.faults().seed, 3);

    // Credential lifetimes as STS allows: 15 minutes to 12 hours.
    for too in [ten_years, r#"{"duration_seconds": 899}"#, r#"{"duration_seconds": 43201}"#, "not json"] {
        let a = admin(addr, "POST", "/_emulator/credentials", &here, &auth, too);
        assert_eq!(a.status, 400, "{too}: {}", a.body);
        assert!(!a.body.contains("AccessKeyId"), "{}", a.body);
    }
    for (body, want) in [("", 3600), (r#"{"duration_seconds": 43200}"#, 43200), (r#"{"duration_seconds": 900}"#, 900)] {
        let a = admin(addr, "POST", "/_emulator/credentials", &here, &auth, body);
        assert_eq!(a.status, 200, "{}", a.body);
        let v: serde_json::Value = serde_json::from_str(&a.body).expect("json");
        let exp = v["Expiration"].as_str().and_then(imgport_auth::time::parse_iso8601).expect("Expiration");
        assert!((exp - now() - want).abs() <= 5, "{body}: {}", a.body);
    }

    // Kept with the key pair, readable by the owner only.
    let path = dir.path().join("admin-secret");
    assert_eq!(std::fs::read_to_string(&path).expect("admin-secret").trim(), emu.admin_secret);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
}

fn deep(n: usize) -> String {
    format!("{}{}", "<a>".repeat(n), "</a>".repeat(n))
}

#[test]
fn deeply_nested_xml_is_malformed_and_the_server_lives_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = start(dir.path());
    let host = emu.addr.to_string();
    let body = deep(100_000);
    let framing = format!("Content-Length: {}\r\n", body.len());
    // PutBucket's CreateBucketConfiguration.
    let a = send(&emu, &v1("PUT", &host, "/deep", "deep", None), body.as_bytes(), &framing);
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.body.contains("<Code>MalformedXML</Code>"), "{}", a.body);
    let a = send(&emu, &v1("PUT", &host, "/deep", "deep", None), b"", "Content-Length: 0\r\n");
    assert_eq!(a.status, 200, "{}", a.body);
    // DeleteMultipleObjects' Delete, a few levels below its root.
    let body = format!("<Delete><Object><Key>{}</Key></Object></Delete>", deep(100_000));
    let md5 = {
        use base64::Engine;
        use md5::Digest;
        base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body.as_bytes()))
    };
    let mut r = SignableRequest::new("POST", "/deep").with_query("delete", "").with_header("Host", &host);
    r.set_header("Content-MD5", &md5);
    oss_v1::sign_header(&mut r, &creds(), Some("deep"), None, now());
    let a = send(&emu, &r, body.as_bytes(), &format!("Content-Length: {}\r\n", body.len()));
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.body.contains("<Code>MalformedXML</Code>"), "{}", a.body);
    // Nesting that real documents have still parses.
    let ok = "<CreateBucketConfiguration><StorageClass>Standard</StorageClass></CreateBucketConfiguration>";
    let a = send(
        &emu,
        &v1("PUT", &host, "/deep2", "deep2", None),
        ok.as_bytes(),
        &format!("Content-Length: {}\r\n", ok.len()),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let a = send(&emu, &v1("GET", &host, "/deep", "deep", None), b"", "");
    assert_eq!(a.status, 200, "{}", a.body);
}

#[test]
fn stalled_connections_time_out_and_the_connection_cap_holds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = EmulatorConfig::new(dir.path()).with_keys(AK, SK);
    cfg.max_connections = 8;
    cfg.header_timeout = Duration::from_secs(1);
    cfg.idle_timeout = Duration::from_secs(2);
    let emu = Emulator::start(cfg).expect("start");
    let host = emu.addr.to_string();
    // Three times the cap in connections that never finish their headers.
    let stalled: Vec<TcpStream> = (0..24)
        .map(|_| {
            let mut s = TcpStream::connect(emu.addr).expect("connect");
            s.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\nX-Slow: ").as_bytes()).expect("partial head");
            s
        })
        .collect();
    // A body that stalls after its first bytes.
    let mut slow_body = TcpStream::connect(emu.addr).expect("connect");
    let r = v1("PUT", &host, "/never", "never", None);
    let mut head = format!("PUT {} HTTP/1.1\r\nContent-Length: 1000\r\n", r.target());
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    slow_body.write_all(format!("{head}\r\n<Create").as_bytes()).expect("partial body");
    // A legitimate request still gets through once the stalled ones are closed.
    let started = Instant::now();
    let a = send(&emu, &v1("PUT", &host, "/alive", "alive", None), b"", "Content-Length: 0\r\n");
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    // Every stalled connection has been closed by the server.
    for mut s in stalled.into_iter().chain([slow_body]) {
        s.set_read_timeout(Some(Duration::from_secs(8))).expect("timeout");
        let mut buf = Vec::new();
        match s.read_to_end(&mut buf) {
            Ok(_) => {}
            Err(e) => assert!(
                !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
                "a stalled connection is still open"
            ),
        }
    }
    // An idle kept-alive connection is closed too.
    let mut idle = TcpStream::connect(emu.addr).expect("connect");
    let r = v1("GET", &host, "/alive", "alive", None);
    let mut head = format!("GET {} HTTP/1.1\r\n", r.target());
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    idle.write_all(format!("{head}\r\n").as_bytes()).expect("request");
    idle.set_read_timeout(Some(Duration::from_secs(8))).expect("timeout");
    let mut buf = Vec::new();
    let closed = idle.read_to_end(&mut buf);
    assert!(closed.is_ok(), "{closed:?}");
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));
    // A small body dripped a byte a second: every byte within the idle timeout, the whole body never. The
    // connection (and its slot) is given up within about one idle period, not held for as long as the drip lasts.
    let mut drip = TcpStream::connect(emu.addr).expect("connect");
    let r = v1("PUT", &host, "/dripped", "dripped", None);
    let mut head = format!("PUT {} HTTP/1.1\r\nContent-Length: 1000\r\n", r.target());
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    drip.write_all(format!("{head}\r\n<").as_bytes()).expect("head");
    drip.set_read_timeout(Some(Duration::from_millis(900))).expect("timeout");
    let started = Instant::now();
    let mut closed = false;
    while !closed && started.elapsed() < Duration::from_secs(10) {
        let mut b = [0u8; 1024];
        closed = match drip.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
        } || drip.write_all(b"x").is_err();
    }
    assert!(closed, "a dripped body held its connection for {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(6), "closed only after {:?}", started.elapsed());
    let a = send(&emu, &v1("GET", &host, "/alive", "alive", None), b"", "");
    assert_eq!(a.status, 200, "{}", a.body);
}

#[test]
fn rpc_bodies_are_refused_before_they_are_read_when_they_can_be() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = start(dir.path());
    let host = emu.addr.to_string();
    let wait = Duration::from_secs(3);
    // A form POST that announces 8 MiB: answered without waiting for the body.
    let wire = format!(
        "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        8 << 20
    );
    let a = exchange(emu.addr, wire.as_bytes(), wait).expect("answered before the body");
    assert_eq!(a.status, 413, "{}", a.body);
    // So is a small body from a key the server does not know (the key is in the query string).
    let wire = format!(
        "POST /?Action=DescribeRegions&Version=2014-05-26&Format=JSON&AccessKeyId=LTAInobodyknowsthis1 HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 60000\r\n\r\n"
    );
    let a = exchange(emu.addr, wire.as_bytes(), wait).expect("answered before the body");
    assert_eq!(a.status, 404, "{}", a.body);
    assert!(a.body.contains("InvalidAccessKeyId.NotFound"), "{}", a.body);
    // A form body larger than any RPC call needs, sent chunked: refused once the limit is passed.
    let chunk = format!("{:x}\r\n{}\r\n", 32 << 10, "A".repeat(32 << 10));
    let wire = format!(
        "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n{}",
        chunk.repeat(4)
    );
    let a = exchange(emu.addr, wire.as_bytes(), wait).expect("answered");
    assert_eq!(a.status, 413, "{}", a.body);
    // A signed call still works, its parameters in a form body.
    let mut params: Vec<(String, String)> =
        [("Action", "GetCallerIdentity"), ("Version", "2015-04-01"), ("Format", "JSON")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    rpc_v1::sign(&mut params, "POST", &creds(), now(), &imgport_emulator::util::random_hex(8));
    let form = imgport_auth::encode::format_query(&params);
    let wire = format!(
        "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    );
    let a = exchange(emu.addr, wire.as_bytes(), Duration::from_secs(10)).expect("answered");
    assert_eq!(a.status, 200, "{}", a.body);
}

/// An RPC V1 GET with these parameters signed as given (no nonce added).
fn rpc_v1_get(emu: &RunningEmulator, mut params: Vec<(String, String)>) -> Answer {
    params.retain(|(k, _)| k != "Signature");
    let sig = rpc_v1::signature(SK, &rpc_v1::string_to_sign("GET", &params));
    params.push(("Signature".into(), sig));
    let mut r = SignableRequest::new("GET", "/").with_header("Host", &emu.addr.to_string());
    r.query = params;
    send(emu, &r, b"", "")
}

/// An ACS3 request for STS GetCallerIdentity; `tamper` edits it before the signature, `signed` (when given)
/// replaces the list of signed headers.
/// An ACS3 call signed over `signed` (default: what the SDKs sign); `decoy` is an extra authorization parameter
/// placed before `SignedHeaders`, to try to make the server read a different header list than the one signed.
fn acs3_call(
    emu: &RunningEmulator,
    tamper: impl Fn(&mut SignableRequest),
    signed: Option<&[&str]>,
    decoy: Option<&str>,
) -> Answer {
    let mut r = SignableRequest::new("POST", "/")
        .with_header("Host", &emu.addr.to_string())
        .with_header("x-acs-action", "GetCallerIdentity")
        .with_header("x-acs-version", "2015-04-01");
    let body_hash = sha256_hex(b"");
    acs3::sign(&mut r, &creds(), &body_hash, now(), &imgport_emulator::util::random_hex(16));
    tamper(&mut r);
    let names: Vec<String> = match signed {
        Some(list) => list.iter().map(|s| s.to_string()).collect(),
        None => acs3::default_signed_headers(&r),
    };
    r.remove_header("Authorization");
    let sts = acs3::string_to_sign(&acs3::canonical_request(&r, &names, &body_hash));
    let auth = format!(
        "{} Credential={AK},{}SignedHeaders={},Signature={}",
        acs3::ALGORITHM,
        decoy.map(|d| format!("{d},")).unwrap_or_default(),
        names.join(";"),
        acs3::signature(SK, &sts)
    );
    r.set_header("Authorization", &auth);
    send(emu, &r, b"", "Content-Length: 0\r\n")
}

#[test]
fn rpc_requests_need_a_nonce_and_acs3_signs_its_headers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = start(dir.path());
    let base = |nonce: Option<&str>| {
        let mut p: Vec<(String, String)> = [
            ("Action", "GetCallerIdentity"),
            ("Version", "2015-04-01"),
            ("Format", "JSON"),
            ("AccessKeyId", AK),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        p.push(("Timestamp".into(), UtcTime::from_unix(now()).iso8601()));
        if let Some(n) = nonce {
            p.push(("SignatureNonce".into(), n.into()));
        }
        p
    };
    // RPC V1: without a nonce the signed URL could be replayed for 15 minutes.
    let a = rpc_v1_get(&emu, base(None));
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.body.contains("MissingSignatureNonce"), "{}", a.body);
    let once = base(Some("nonce-used-once"));
    let a = rpc_v1_get(&emu, once.clone());
    assert_eq!(a.status, 200, "{}", a.body);
    let a = rpc_v1_get(&emu, once);
    assert!(a.status == 400 && a.body.contains("SignatureNonceUsed"), "{}", a.body);

    // ACS3 as the SDKs sign it.
    let a = acs3_call(&emu, |_| {}, None, None);
    assert_eq!(a.status, 200, "{}", a.body);
    // Without a nonce.
    let a = acs3_call(&emu, |r| r.remove_header("x-acs-signature-nonce"), None, None);
    assert!(a.status == 400 && a.body.contains("MissingSignatureNonce"), "{}", a.body);
    // Only host signed: the action, date, nonce and body hash could be changed by anyone.
    let a = acs3_call(&emu, |_| {}, Some(&["host"]), None);
    assert!(a.status == 400 && a.body.contains("IncompleteSignature"), "{}", a.body);
    // A look-alike parameter listing every header does not stand in for the list the signature covers.
    let decoy = "XSignedHeaders=host;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-action;x-acs-version";
    let a = acs3_call(&emu, |_| {}, Some(&["host"]), Some(decoy));
    assert!(a.status == 400 && a.body.contains("IncompleteSignature"), "{}", a.body);
    // Everything but the content hash signed.
    let a = acs3_call(
        &emu,
        |_| {},
        Some(&["host", "x-acs-action", "x-acs-date", "x-acs-signature-nonce", "x-acs-version"]),
        None,
    );
    assert!(a.status == 400 && a.body.contains("IncompleteSignature"), "{}", a.body);
    // No content hash at all.
    let a = acs3_call(&emu, |r| r.remove_header("x-acs-content-sha256"), None, None);
    assert!(a.status == 400 && a.body.contains("IncompleteSignature"), "{}", a.body);
}

fn rpc_call(emu: &RunningEmulator, extra: &[(&str, &str)]) -> serde_json::Value {
    let mut params: Vec<(String, String)> =
        [("Format", "JSON")].iter().chain(extra).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    rpc_v1::sign(&mut params, "GET", &creds(), now(), &imgport_emulator::util::random_hex(8));
    let mut r = SignableRequest::new("GET", "/").with_header("Host", &emu.addr.to_string());
    r.query = params;
    let a = send(emu, &r, b"", "");
    let mut v: serde_json::Value = serde_json::from_str(&a.body).unwrap_or(serde_json::Value::Null);
    v["_status"] = a.status.into();
    v
}

#[test]
fn import_refuses_vmdk_extents_and_never_names_host_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cloud = CloudSettings { import_seconds: 0.2, seed_import_role: true, ..CloudSettings::default() };
    let emu = Emulator::start(EmulatorConfig::new(dir.path()).with_keys(AK, SK).cloud(cloud)).expect("start");
    let host = emu.addr.to_string();
    let a = send(&emu, &v1("PUT", &host, "/images", "images", None), b"", "Content-Length: 0\r\n");
    assert_eq!(a.status, 200, "{}", a.body);
    // One descriptor names a host file that exists, one a file that does not; both are refused alike.
    let existing = std::env::current_exe().expect("exe");
    let targets = [existing.display().to_string(), "/root/.ssh/id_rsa_does_not_exist".to_string(), "../../x".into()];
    let mut messages = Vec::new();
    for (i, target) in targets.iter().enumerate() {
        let desc = format!(
            "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\nRW 2048 FLAT \"{target}\" 0\n\nddb.adapterType = \"lsilogic\"\nddb.virtualHWVersion = \"4\"\n"
        );
        let key = format!("extent-{i}.vmdk");
        let r = v1("PUT", &host, &format!("/images/{key}"), "images", Some(&key));
        let a = send(&emu, &r, desc.as_bytes(), &format!("Content-Length: {}\r\n", desc.len()));
        assert_eq!(a.status, 200, "{}", a.body);
        let v = rpc_call(
            &emu,
            &[
                ("Action", "ImportImage"),
                ("Version", "2014-05-26"),
                ("RegionId", "cn-hangzhou"),
                ("ImageName", &format!("extent-{i}")),
                ("OSType", "linux"),
                ("Architecture", "x86_64"),
                ("DiskDeviceMapping.1.OSSBucket", "images"),
                ("DiskDeviceMapping.1.OSSObject", &key),
                ("DiskDeviceMapping.1.Format", "VMDK"),
                ("DiskDeviceMapping.1.DiskImageSize", "5"),
            ],
        );
        let text = v.to_string();
        assert!(!text.contains(target.as_str()) && !text.contains("/root"), "{text}");
        if v["_status"] != 200 {
            messages.push(v["Message"].as_str().unwrap_or_default().to_string());
            continue;
        }
        let task = v["TaskId"].as_str().expect("TaskId").to_string();
        let deadline = Instant::now() + Duration::from_secs(30);
        let t = loop {
            let t = rpc_call(
                &emu,
                &[
                    ("Action", "DescribeTaskAttribute"),
                    ("Version", "2014-05-26"),
                    ("RegionId", "cn-hangzhou"),
                    ("TaskId", &task),
                ],
            );
            if t["TaskStatus"] != "Processing" && t["TaskStatus"] != "Waiting" || Instant::now() > deadline {
                break t;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let text = t.to_string();
        assert_eq!(t["TaskStatus"], "Failed", "{text}");
        assert!(!text.contains(target.as_str()) && !text.contains("/root") && !text.contains("/proc"), "{text}");
        let msg = t["OperationProgressSet"]["OperationProgress"][0]["ErrorMsg"].as_str().unwrap_or("").to_string();
        assert!(msg.contains("names extent files") && msg.contains(&format!("oss://images/{key}")), "{text}");
        messages.push(msg.replace(&key, "KEY"));
    }
    assert!(messages.windows(2).all(|w| w[0] == w[1]), "the answers differ: {messages:?}");
}

#[test]
fn data_files_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // A folder that already exists, as a umask of 022 leaves it, is tightened.
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let cloud = CloudSettings { seed_import_role: true, ..CloudSettings::default() };
    let emu = Emulator::start(EmulatorConfig::new(&data).with_keys(AK, SK).cloud(cloud)).expect("start");
    let host = emu.addr.to_string();
    let a = send(&emu, &v1("PUT", &host, "/private", "private", None), b"", "Content-Length: 0\r\n");
    assert_eq!(a.status, 200, "{}", a.body);
    let r = v1("PUT", &host, "/private/dir/object.bin", "private", Some("dir/object.bin"));
    let a = send(&emu, &r, b"secret bytes", "Content-Length: 12\r\n");
    assert_eq!(a.status, 200, "{}", a.body);
    let mut r = SignableRequest::new("POST", "/private/multi.bin").with_query("uploads", "").with_header("Host", &host);
    oss_v1::sign_header(&mut r, &creds(), Some("private"), Some("multi.bin"), now());
    let a = send(&emu, &r, b"", "Content-Length: 0\r\n");
    assert_eq!(a.status, 200, "{}", a.body);
    let upload = a.body.split("<UploadId>").nth(1).and_then(|r| r.split('<').next()).expect("UploadId").to_string();
    let mut r = SignableRequest::new("PUT", "/private/multi.bin")
        .with_query("partNumber", "1")
        .with_query("uploadId", &upload)
        .with_header("Host", &host);
    oss_v1::sign_header(&mut r, &creds(), Some("private"), Some("multi.bin"), now());
    let a = send(&emu, &r, b"part", "Content-Length: 4\r\n");
    assert_eq!(a.status, 200, "{}", a.body);
    let v = rpc_call(
        &emu,
        &[("Action", "GetRole"), ("Version", "2015-05-01"), ("RoleName", "AliyunECSImageImportDefaultRole")],
    );
    assert_eq!(v["_status"], 200, "{v}");
    emu.issue_temporary_credentials(3600).expect("issue");
    let mut seen = 0;
    let mut stack = vec![data.clone()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).expect("meta");
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_dir() {
            assert_eq!(mode, 0o700, "{}", p.display());
            stack.extend(std::fs::read_dir(&p).expect("read_dir").map(|e| e.expect("entry").path()));
        } else {
            assert_eq!(mode, 0o600, "{}", p.display());
            seen += 1;
        }
    }
    for name in ["cloud.json", "credentials.json", "admin-secret"] {
        assert!(data.join(name).exists(), "{name}");
    }
    assert!(seen >= 5, "{seen} files");
}
