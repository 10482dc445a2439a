//! What SDK tests do not reach: virtual-hosted addressing, chunked request bodies, the response headers every
//! write carries, HEAD errors without a body, and the RPC gateway's placeholder answers in XML and JSON.

use imgport_auth::sign::{oss_v1, oss_v4, rpc_v1};
use imgport_auth::time::now;
use imgport_auth::{Credentials, SignableRequest};
use imgport_emulator::{Emulator, EmulatorConfig, RunningEmulator};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

const AK: &str = "LTAI5tRawHttpTestKey";
const SK: &str = "raw-http-test-secret";

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

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
    let mut line = String::new();
    r.read_line(&mut line).expect("status");
    let status = line.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).expect("header");
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
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
