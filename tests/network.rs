//! Uploads through a hostile network that stays on this machine (imgport-test-support's netem module): imgport runs in a network
//! namespace whose veth link is shaped to 200 Mbit/s by `tbf`, and reaches the OSS emulator and s3s-fs through a
//! TCP proxy that adds 50 ms of round trip with jitter, stalls connections and resets them in the middle of parts.
//! Every upload is read back and compared; retries are counted; a kill -9 in the middle resumes. Needs root
//! (namespaces, veth, tbf), as CI has: anything missing fails the test.

use crate::common;
use imgport_test_support::netem::{Delay, Faults, Link, Proxy};

use imgport_auth::Credentials;
use imgport_emulator::{Emulator, EmulatorConfig, RunningEmulator};
use imgport_storage::{Client, Flavor, ObjectStore};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BUCKET: &str = "imgport-net";
const RATE_MBIT: u32 = 200;

/// A store on 127.0.0.1 and the way to it from a namespace: the shaped link and the proxy.
struct Wan {
    dir: tempfile::TempDir,
    /// The store's own address (loopback, for reading objects back).
    direct: String,
    region: String,
    creds: Credentials,
    flavor: Flavor,
    _emu: Option<RunningEmulator>,
    child: Option<Child>,
    proxy: Proxy,
    link: Link,
}

impl Drop for Wan {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

fn addr_of(endpoint: &str) -> SocketAddr {
    endpoint.trim_start_matches("http://").parse().expect("a loopback endpoint")
}

/// The OSS emulator, reached through `faults`.
fn oss(faults: Faults) -> Wan {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start(EmulatorConfig::new(dir.path().join("emu"))).expect("emulator");
    let (direct, region, creds) = (emu.oss_endpoint.clone(), emu.region().to_string(), emu.credentials.clone());
    let wan = wan(dir, direct, region, creds, Flavor::OssV4, Some(emu), None, faults);
    rt().block_on(wan.client().create_bucket()).expect("bucket");
    wan
}

/// s3s-fs (scripts/install-peers.sh), reached through `faults`.
fn s3(faults: Faults) -> Wan {
    let bin = common::peers_dir().expect("HOME or IMGPORT_PEERS_DIR").join("bin/s3s-fs");
    assert!(bin.exists(), "s3s-fs is not installed at {}: run scripts/install-peers.sh", bin.display());
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("s3");
    std::fs::create_dir_all(data.join(BUCKET)).expect("bucket dir");
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let child = Command::new(bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--access-key", "AKNET", "--secret-key", "SKNET"])
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start s3s-fs");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "s3s-fs did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
    let direct = format!("http://127.0.0.1:{port}");
    wan(dir, direct, "us-east-1".into(), Credentials::new("AKNET", "SKNET"), Flavor::S3, None, Some(child), faults)
}

#[allow(clippy::too_many_arguments)]
fn wan(
    dir: tempfile::TempDir,
    direct: String,
    region: String,
    creds: Credentials,
    flavor: Flavor,
    emu: Option<RunningEmulator>,
    child: Option<Child>,
    faults: Faults,
) -> Wan {
    let link = Link::new(RATE_MBIT);
    let proxy = Proxy::start(SocketAddr::new(link.host_addr.into(), 0), addr_of(&direct), faults);
    Wan { dir, direct, region, creds, flavor, _emu: emu, child, proxy, link }
}

impl Wan {
    /// A client of the store that does not cross the link.
    fn client(&self) -> Client {
        common::store_client(&self.direct, self.flavor, &self.region, BUCKET, &self.creds)
    }

    fn url(&self, key: &str) -> String {
        let scheme = if self.flavor == Flavor::S3 { "s3" } else { "oss" };
        format!("{scheme}://{BUCKET}/{key}")
    }

    /// imgport inside the namespace, pointed at the proxy.
    fn imgport(&self, args: &[&str]) -> Command {
        let endpoint = format!("http://{}", self.proxy.addr);
        let mut cmd = self.link.command(env!("CARGO_BIN_EXE_imgport"));
        cmd.args(args)
            .env("XDG_STATE_HOME", self.dir.path().join("state"))
            .env("IMGPORT_OSS_ENDPOINT", &endpoint)
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("ALIBABA_CLOUD_REGION_ID", &self.region)
            .env("AWS_REGION", &self.region)
            .env("ALIBABA_CLOUD_ACCESS_KEY_ID", &self.creds.access_key_id)
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", self.creds.access_key_secret.expose())
            .env("AWS_ACCESS_KEY_ID", &self.creds.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", self.creds.access_key_secret.expose())
            .env_remove("ALIBABA_CLOUD_SECURITY_TOKEN")
            .env_remove("AWS_SESSION_TOKEN");
        cmd
    }

    fn upload_args<'a>(&self, src: &'a Path, url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["upload", "--json", src.to_str().expect("utf-8 path"), url];
        args.extend_from_slice(extra);
        args
    }

    /// `imgport upload --json` through the link; insists on success and returns the summary.
    fn upload_ok(&self, src: &Path, key: &str, extra: &[&str]) -> Value {
        let url = self.url(key);
        let out = self.imgport(&self.upload_args(src, &url, extra)).output().expect("run imgport upload");
        assert!(
            out.status.success(),
            "upload through the link failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("json summary")
    }

    fn get(&self, key: &str) -> Vec<u8> {
        rt().block_on(self.client().get_object(key)).expect("get").to_vec()
    }

    /// Parts the resume state of the upload in progress records.
    fn recorded_parts(&self) -> usize {
        let Ok(rd) = std::fs::read_dir(self.dir.path().join("state/imgport/uploads")) else { return 0 };
        rd.flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| serde_json::from_slice::<Value>(&std::fs::read(e.path()).ok()?).ok())
            .filter_map(|v| v["parts"].as_object().map(|m| m.len()))
            .max()
            .unwrap_or(0)
    }

    /// Starts an upload through the link and kills it with SIGKILL once its resume state records `n` parts;
    /// returns how many it recorded.
    fn kill_9_after_parts(&self, src: &Path, key: &str, extra: &[&str], n: usize) -> usize {
        let url = self.url(key);
        let mut child = self
            .imgport(&self.upload_args(src, &url, extra))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn imgport upload");
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut recorded = 0;
        while recorded < n && Instant::now() < deadline {
            assert!(child.try_wait().expect("wait").is_none(), "the upload ended before {n} parts were recorded");
            std::thread::sleep(Duration::from_millis(10));
            recorded = self.recorded_parts();
        }
        child.kill().expect("kill -9");
        let status = child.wait().expect("wait");
        assert!(!status.success(), "the upload finished before it was killed");
        assert!(recorded >= n, "only {recorded} of {n} parts were recorded in 60 s");
        self.recorded_parts()
    }
}

/// Deterministic, incompressible-looking data.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = common::Rng::new(seed);
    let mut v = vec![0u8; len];
    rng.fill(&mut v);
    v
}

fn write_source(dir: &Path, len: usize, seed: u64) -> (PathBuf, Vec<u8>) {
    let p = dir.join(format!("src-{seed}"));
    let d = data(len, seed);
    std::fs::write(&p, &d).expect("write source");
    (p, d)
}

/// 50 ms of round trip, ± 5 ms each way.
fn wan_50ms() -> Faults {
    Faults::rtt(50, 5)
}

/// 50 ms of round trip, `resets` connections reset and `stalls` stalled for a second, each at a point drawn from
/// the first `span` bytes a connection carries (parts are larger: the cut comes in the middle of one).
fn hostile(resets: u32, stalls: u32, span: u64) -> Faults {
    Faults {
        reset_after: Some((64 << 10, span)),
        resets,
        stall_after: Some((64 << 10, span)),
        stall: Duration::from_secs(1),
        stalls,
        ..wan_50ms()
    }
}

/// One upload through latency, the rate cap, resets and stalls: it completes, the object is the source, every
/// reset was retried, and the bytes crossed the shaped link no faster than its rate.
fn upload_through_hostile_link(wan: &Wan, len: usize, part: &str) {
    let dir = common::tempdir();
    let (src, d) = write_source(dir.path(), len, 11);
    let before = wan.link.bytes_from_ns();
    let started = Instant::now();
    let s = wan.upload_ok(&src, "wan.raw", &["--part-size", part, "--concurrency", "4"]);
    let seconds = started.elapsed().as_secs_f64();
    let crossed = wan.link.bytes_from_ns() - before;
    assert!(wan.get("wan.raw") == d, "the stored object differs from the source: {s}");
    let resets = wan.proxy.resets();
    assert!(resets >= 2, "the proxy reset {resets} connections");
    assert!(wan.proxy.stalls() >= 1, "the proxy stalled no connection");
    assert!(s["retries"].as_u64().unwrap_or(0) >= resets as u64, "{resets} resets, yet: {s}");
    assert!(crossed >= len as u64, "only {crossed} bytes crossed the link for {len}");
    // tbf lets its bucket through at once; anything much faster than the rate did not go through it.
    let floor = (len as f64 * 8.0 / (RATE_MBIT as f64 * 1e6)) * 0.9;
    assert!(seconds >= floor, "{len} bytes in {seconds:.2} s: faster than {RATE_MBIT} Mbit/s");
    eprintln!(
        "{len} bytes in {seconds:.2} s ({:.1} MiB/s), {} retries, {resets} resets, {} stalls, {} connections",
        len as f64 / seconds / (1 << 20) as f64,
        s["retries"],
        wan.proxy.stalls(),
        wan.proxy.connections()
    );
}

#[test]
fn oss_upload_through_latency_rate_cap_and_resets() {
    let wan = oss(hostile(3, 2, 3 << 20));
    upload_through_hostile_link(&wan, 48 << 20, "4M");
}

#[test]
fn s3_upload_through_latency_rate_cap_and_resets() {
    let wan = s3(hostile(3, 2, 4 << 20));
    upload_through_hostile_link(&wan, 40 << 20, "5M");
}

/// kill -9 in the middle of an upload through the link; the rerun (through resets again) keeps the recorded
/// parts, sends fewer than all, and the object is the source.
fn kill_9_through_link_resumes(wan: &Wan, len: usize, part: &str, kill_after: usize) {
    let dir = common::tempdir();
    let (src, d) = write_source(dir.path(), len, 12);
    let args = ["--part-size", part, "--concurrency", "4"];
    let recorded = wan.kill_9_after_parts(&src, "killed.raw", &args, kill_after);
    wan.proxy.set(hostile(2, 0, 2 << 20));
    let s = wan.upload_ok(&src, "killed.raw", &args);
    let (parts, sent) = (s["parts"].as_u64().expect("parts"), s["sent_parts"].as_u64().expect("sent_parts"));
    assert!(s["resumed_parts"].as_u64().unwrap_or(0) >= recorded as u64, "{recorded} parts were recorded: {s}");
    assert!(sent < parts && sent + recorded as u64 <= parts, "the rerun sent {sent} of {parts} parts: {s}");
    assert!(wan.get("killed.raw") == d, "the resumed object differs from the source: {s}");
    eprintln!("killed after {recorded} recorded parts; the rerun sent {sent} of {parts}: {s}");
}

#[test]
fn oss_kill_9_through_the_link_resumes() {
    let wan = oss(wan_50ms());
    kill_9_through_link_resumes(&wan, 64 << 20, "2M", 8);
}

#[test]
fn s3_kill_9_through_the_link_resumes() {
    let wan = s3(wan_50ms());
    kill_9_through_link_resumes(&wan, 60 << 20, "5M", 3);
}

/// The proxy itself, on loopback: a request and its answer take the round trip it was given (within its
/// jitter), and a reset reaches the client as ECONNRESET in the middle of a transfer.
#[test]
fn proxy_delays_both_ways_and_resets() {
    let echo = TcpListener::bind("127.0.0.1:0").expect("listen");
    let upstream = echo.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in echo.incoming().flatten() {
            std::thread::spawn(move || {
                let (mut r, mut w) = (s.try_clone().expect("clone"), s);
                let _ = std::io::copy(&mut r, &mut w);
            });
        }
    });
    let faults = Faults { up: Delay::ms(30, 0), down: Delay::ms(20, 5), ..Faults::default() };
    let proxy = Proxy::start("127.0.0.1:0".parse().expect("addr"), upstream, faults);
    let mut c = TcpStream::connect(proxy.addr).expect("connect");
    c.set_nodelay(true).expect("nodelay");
    let mut rtts = vec![];
    for i in 0..5u8 {
        let t = Instant::now();
        c.write_all(&[i; 100]).expect("write");
        let mut buf = [0u8; 100];
        c.read_exact(&mut buf).expect("read");
        assert_eq!(buf, [i; 100]);
        rtts.push(t.elapsed());
    }
    for rtt in &rtts {
        assert!(*rtt >= Duration::from_millis(45) && *rtt < Duration::from_millis(120), "round trips {rtts:?}");
    }
    proxy.set(Faults { reset_after: Some((1 << 20, 1 << 20)), resets: 1, ..Faults::default() });
    let mut c = TcpStream::connect(proxy.addr).expect("connect");
    let mut r = c.try_clone().expect("clone");
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let mut got = 0u64;
        loop {
            match r.read(&mut buf) {
                Ok(0) => return (got, None),
                Ok(n) => got += n as u64,
                Err(e) => return (got, Some(e.kind())),
            }
        }
    });
    let chunk = vec![7u8; 1 << 16];
    let (mut written, mut write_err) = (0u64, None);
    while written < 8 << 20 {
        match c.write(&chunk) {
            Ok(n) => written += n as u64,
            Err(e) => {
                write_err = Some(e.kind());
                break;
            }
        }
    }
    let (echoed, read_err) = reader.join().expect("reader");
    // The first call after the RST reports it; the other then sees EOF or a broken pipe.
    let reset = std::io::ErrorKind::ConnectionReset;
    assert!(
        read_err == Some(reset) || write_err == Some(reset),
        "{echoed} bytes echoed, then {read_err:?}; {written} bytes written, then {write_err:?}"
    );
    assert!(echoed <= 1 << 20, "{echoed} bytes came back through a connection reset after 1 MiB");
    assert_eq!(proxy.resets(), 1);
}
