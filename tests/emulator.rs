//! `imgport emulator serve` end to end: the start-up line, a clean stop on Ctrl-C, and memory that stays flat while
//! a large object streams in and out (the emulator runs as a child; its peak RSS is read from /proc).

use imgport_auth::sign::oss_v1;
use imgport_auth::time::now;
use imgport_auth::{Credentials, SignableRequest};
use imgport_emulator::crc64::Crc64;
use imgport_test_support::http::read_head;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

const AK: &str = "LTAI5tCliEmulatorKey";
const SK: &str = "cli-emulator-secret-MUST-NOT-BE-LOGGED";

struct Served {
    child: Child,
    info: serde_json::Value,
    stderr: std::thread::JoinHandle<String>,
}

fn serve(data: &std::path::Path) -> Served {
    serve_with(data, &[])
}

fn serve_with(data: &std::path::Path, extra: &[&str]) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_imgport"))
        .args([
            "emulator",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--json",
            "--access-key-id",
            AK,
            "--access-key-secret",
            SK,
        ])
        .args(extra)
        .arg("--data")
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start imgport emulator serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("first line");
    let info: serde_json::Value = serde_json::from_str(&line).expect("the first line is one JSON object");
    let mut err = child.stderr.take().expect("stderr");
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    Served { child, info, stderr }
}

impl Served {
    fn addr(&self) -> String {
        self.info["listen"].as_str().expect("listen").to_string()
    }

    /// Sends Ctrl-C and waits: (exit code, stderr).
    fn stop(mut self) -> (i32, String) {
        // SAFETY: kill(2) with the pid of our own child and SIGINT has no memory effects.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let status = self.child.wait().expect("wait");
        (status.code().unwrap_or(-1), self.stderr.join().unwrap_or_default())
    }

    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }
}

/// Sends a V1-signed request whose body comes from `body` (`len` bytes); returns the status and headers, and
/// leaves the stream positioned at the response body.
fn request(
    addr: &str,
    method: &str,
    path: &str,
    len: u64,
    body: &mut dyn FnMut(&mut TcpStream) -> std::io::Result<()>,
) -> (u16, Vec<(String, String)>, BufReader<TcpStream>) {
    let mut req = SignableRequest::new(method, path);
    req.set_header("Content-Type", "application/octet-stream");
    let rest = path.trim_start_matches('/');
    let (bucket, key) = rest.split_once('/').map_or((rest, None), |(b, k)| (b, Some(k).filter(|k| !k.is_empty())));
    oss_v1::sign_header(&mut req, &Credentials::new(AK, SK), Some(bucket), key, now());
    let mut s = TcpStream::connect(addr).expect("connect");
    let mut head =
        format!("{method} {} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {len}\r\nConnection: close\r\n", req.target());
    for (k, v) in &req.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("send head");
    body(&mut s).expect("send body");
    let mut r = BufReader::new(s);
    let (status, headers) = read_head(&mut r);
    let headers = headers.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
    (status, headers, r)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

const CHUNK: usize = 1 << 20;

/// The i-th MiB of the test object: a fixed pattern stamped with its index, so every chunk differs.
fn chunk(i: u64, buf: &mut [u8]) {
    buf[..8].copy_from_slice(&i.to_le_bytes());
}

/// An RPC V1 signed GET; returns the status and body (JSON).
fn rpc(addr: &str, action: &str, version: &str, extra: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let mut params: Vec<(String, String)> = [("Action", action), ("Version", version), ("Format", "JSON")]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let nonce = imgport_emulator::util::random_hex(8);
    imgport_auth::sign::rpc_v1::sign(&mut params, "GET", &Credentials::new(AK, SK), now(), &nonce);
    let mut req = SignableRequest::new("GET", "/");
    req.query = params;
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(s, "GET {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n", req.target()).expect("send");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read");
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
}

#[test]
fn serve_answers_ecs_ram_and_sts_with_the_import_role_seeded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let served =
        serve_with(dir.path(), &["--seed-import-role", "--import-seconds", "0.5", "--copy-seconds", "0.5", "--quiet"]);
    let addr = served.addr();
    let (status, v) = rpc(&addr, "GetRole", "2015-05-01", &[("RoleName", "AliyunECSImageImportDefaultRole")]);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["Role"]["RoleName"], "AliyunECSImageImportDefaultRole");
    let (status, v) = rpc(&addr, "DescribeImages", "2014-05-26", &[("RegionId", "cn-hangzhou")]);
    assert_eq!(status, 200, "{v}");
    assert!(v["TotalCount"].as_u64().is_some_and(|n| n > 0), "{v}");
    let arn = format!("acs:ram::{}:role/aliyunecsimageimportdefaultrole", "1234567890123456");
    let (status, v) = rpc(&addr, "AssumeRole", "2015-04-01", &[("RoleArn", &arn), ("RoleSessionName", "cli")]);
    assert_eq!(status, 200, "{v}");
    assert!(v["Credentials"]["AccessKeyId"].as_str().is_some_and(|k| k.starts_with("STS.")), "{v}");
    let (code, stderr) = served.stop();
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn serve_prints_one_json_line_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().expect("tempdir");
    let served = serve(dir.path());
    for field in ["oss_endpoint", "ecs_endpoint", "region", "access_key_id", "access_key_secret"] {
        assert!(served.info.get(field).is_some_and(|v| !v.is_null()), "{field} missing: {}", served.info);
    }
    assert_eq!(served.info["access_key_id"], AK);
    assert_eq!(served.info["regions"], serde_json::json!(["cn-hangzhou"]));
    let addr = served.addr();
    let (status, _, _) = request(&addr, "PUT", "/cli-bucket", 0, &mut |_| Ok(()));
    assert_eq!(status, 200);
    let (status, headers, mut r) = request(&addr, "GET", "/cli-bucket/missing", 0, &mut |_| Ok(()));
    let mut body = String::new();
    let _ = r.read_to_string(&mut body);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("<Code>NoSuchKey</Code>") && header(&headers, "x-oss-request-id").is_some(), "{body}");
    let (code, stderr) = served.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("PutBucket") && stderr.contains("GetObject"), "{stderr}");
    assert!(!stderr.contains(SK), "the secret reached the log");
}

#[test]
fn memory_stays_flat_while_a_large_object_streams_in_and_out() {
    // 512 MiB here; scripts/bench-emulator-memory.sh does the same with several GiB.
    let mib: u64 = std::env::var("IMGPORT_EMULATOR_MEMORY_TEST_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(512);
    let dir = tempfile::tempdir().expect("tempdir");
    let served = serve(dir.path());
    let addr = served.addr();
    let (status, _, _) = request(&addr, "PUT", "/mem", 0, &mut |_| Ok(()));
    assert_eq!(status, 200);
    let baseline = served.peak_rss_kib();

    let mut sent = Crc64::new();
    let len = mib * CHUNK as u64;
    let put_started = std::time::Instant::now();
    let (status, headers, _) = request(&addr, "PUT", "/mem/big.raw", len, &mut |s| {
        let mut buf = vec![0x5a; CHUNK];
        for i in 0..mib {
            chunk(i, &mut buf);
            sent.update(&buf);
            s.write_all(&buf)?;
        }
        Ok(())
    });
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-oss-hash-crc64ecma"), Some(sent.finish().to_string().as_str()));
    let put_secs = put_started.elapsed().as_secs_f64();
    let get_started = std::time::Instant::now();

    let (status, headers, mut r) = request(&addr, "GET", "/mem/big.raw", 0, &mut |_| Ok(()));
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-length"), Some(len.to_string().as_str()));
    let mut got = Crc64::new();
    let mut buf = vec![0; CHUNK];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf).expect("read body");
        if n == 0 {
            break;
        }
        got.update(&buf[..n]);
        total += n as u64;
    }
    assert_eq!(total, len);
    assert_eq!(got.finish(), sent.finish());

    let peak = served.peak_rss_kib();
    let (code, stderr) = served.stop();
    assert_eq!(code, 0, "{stderr}");
    let get_secs = get_started.elapsed().as_secs_f64();
    eprintln!(
        "PUT {mib} MiB in {put_secs:.1} s, GET in {get_secs:.1} s; emulator peak RSS {baseline} KiB at start, {peak} KiB after"
    );
    assert!(peak < baseline + 96 * 1024, "peak RSS grew from {baseline} KiB to {peak} KiB for a {mib} MiB object");
}

#[test]
fn admin_api_takes_the_printed_secret_and_unsigned_bodies_stay_small() {
    let dir = tempfile::tempdir().expect("tempdir");
    let served = serve_with(dir.path(), &["--quiet"]);
    let addr = served.addr();
    let secret = served.info["admin_secret"].as_str().expect("admin_secret printed").to_string();
    assert_eq!(std::fs::read_to_string(dir.path().join("admin-secret")).expect("admin-secret").trim(), secret);
    let admin = |auth: &str| {
        let mut s = TcpStream::connect(&addr).expect("connect");
        write!(s, "GET /_emulator/health HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n").expect("send");
        let mut text = String::new();
        s.read_to_string(&mut text).expect("read");
        text.split(' ').nth(1).and_then(|c| c.parse::<u16>().ok()).unwrap_or(0)
    };
    assert_eq!(admin(""), 401);
    assert_eq!(admin(&format!("Authorization: Bearer {secret}\r\n")), 200);

    // A hundred unsigned RPC calls of 8 MiB each at once: refused before their bodies are read, so the memory the
    // server holds does not grow with them.
    let baseline = served.peak_rss_kib();
    let workers: Vec<_> = (0..100)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let Ok(mut s) = TcpStream::connect(&addr) else { return };
                let len = 8usize << 20;
                let head = format!(
                    "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {len}\r\n\r\n"
                );
                if s.write_all(head.as_bytes()).is_err() {
                    return;
                }
                let block = vec![b'a'; 1 << 20];
                for _ in 0..8 {
                    if s.write_all(&block).is_err() {
                        break;
                    }
                }
                let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(10)));
                let mut sink = Vec::new();
                let _ = s.read_to_end(&mut sink);
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    let peak = served.peak_rss_kib();
    assert!(peak < baseline + 64 * 1024, "peak RSS grew from {baseline} KiB to {peak} KiB");
    let (status, v) = rpc(&addr, "GetCallerIdentity", "2015-04-01", &[]);
    assert_eq!(status, 200, "{v}");
    let (code, stderr) = served.stop();
    assert_eq!(code, 0, "{stderr}");
}
