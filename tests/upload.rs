//! `imgport upload` end to end against the in-process OSS emulator (V4 and V1) and s3s-fs (a real S3 server):
//! sizes at part boundaries, injected faults, kill -9 and resume, a changed source. Streamed `convert` to a
//! store: the object equals `imgport convert`'s file, with faults, after kill -9 and resume, a changed source.

use crate::common;
use crate::common::{peak_rss_kib, under_time};

use imgport_auth::Credentials;
use imgport_emulator::{CloudSettings, Emulator, EmulatorConfig, Fault, FaultConfig, FaultRule, RunningEmulator};
use imgport_storage::checksum::{self, Algorithm};
use imgport_storage::{Body, Client, Flavor, ObjectStore, PutOptions};
use imgport_test_support::recorder::{Echo, Recorder, Refusal};
use imgport_test_support::responder::Received;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BUCKET: &str = "imgport-test";

struct Store {
    dir: tempfile::TempDir,
    endpoint: String,
    region: String,
    creds: Credentials,
    flavor: Flavor,
    emu: Option<RunningEmulator>,
    child: Option<std::process::Child>,
}

impl Drop for Store {
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

fn oss(flavor: Flavor) -> Store {
    oss_with(flavor, CloudSettings::default())
}

fn oss_with(flavor: Flavor, cloud: CloudSettings) -> Store {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start(EmulatorConfig::new(dir.path().join("emu")).cloud(cloud)).expect("emulator");
    let s = Store {
        endpoint: emu.oss_endpoint.clone(),
        region: emu.region().to_string(),
        creds: emu.credentials.clone(),
        flavor,
        emu: Some(emu),
        child: None,
        dir,
    };
    rt().block_on(s.client().create_bucket()).expect("bucket");
    s
}

/// s3s-fs on a free port. A missing peer fails the test: scripts/install-peers.sh builds it.
fn s3() -> Store {
    let Some(bin) = common::s3s_fs() else {
        panic!("s3s-fs is not installed: run scripts/install-peers.sh (it builds s3s-fs 0.14.1)");
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("s3");
    std::fs::create_dir_all(data.join(BUCKET)).expect("bucket dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let child = Command::new(bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--access-key", "AKTEST", "--secret-key", "SKTEST"])
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start s3s-fs");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Store {
        endpoint: format!("http://127.0.0.1:{port}"),
        region: "us-east-1".into(),
        creds: Credentials::new("AKTEST", "SKTEST"),
        flavor: Flavor::S3,
        emu: None,
        child: Some(child),
        dir,
    }
}

impl Store {
    fn client(&self) -> Client {
        common::store_client(&self.endpoint, self.flavor, &self.region, BUCKET, &self.creds)
    }

    fn emu(&self) -> &RunningEmulator {
        self.emu.as_ref().expect("an emulator store")
    }

    /// Runs imgport with `args` and kills it with SIGKILL once its resume state records `min_parts` parts (the
    /// caller makes the run slow enough); any emulator faults are cleared afterwards. Returns the parts recorded.
    fn kill_after_parts(&self, args: &[&str], min_parts: usize) -> usize {
        let mut child = self.command(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn imgport");
        let recorded = self.wait_for_recorded_parts(min_parts);
        let _ = child.kill();
        let _ = child.wait();
        if let Some(emu) = &self.emu {
            emu.set_faults(FaultConfig::default());
        }
        assert!(recorded >= min_parts, "{args:?} never recorded {min_parts} parts");
        recorded
    }

    /// Every UploadPart answered 150 ms late: an upload that lasts long enough to be interrupted or disturbed.
    fn slow_parts(&self) {
        self.emu().set_faults(FaultConfig {
            rules: vec![rule("UploadPart", Fault::Latency { ms: 150 }, 1.0, 0, None)],
            ..Default::default()
        });
    }

    fn url(&self, key: &str) -> String {
        let scheme = if self.flavor == Flavor::S3 { "s3" } else { "oss" };
        format!("{scheme}://{BUCKET}/{key}")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgport"));
        cmd.args(args)
            .env("XDG_STATE_HOME", self.dir.path().join("state"))
            .env("IMGPORT_OSS_ENDPOINT", &self.endpoint)
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("ALIBABA_CLOUD_REGION_ID", &self.region)
            .env("ALIBABA_CLOUD_ACCESS_KEY_ID", &self.creds.access_key_id)
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", self.creds.access_key_secret.expose())
            .env("AWS_ACCESS_KEY_ID", &self.creds.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", self.creds.access_key_secret.expose())
            .env_remove("ALIBABA_CLOUD_SECURITY_TOKEN")
            .env_remove("AWS_SESSION_TOKEN");
        if self.flavor == Flavor::OssV1 {
            cmd.arg("--oss-v1");
        }
        cmd
    }

    fn upload(&self, src: &Path, key: &str, extra: &[&str]) -> Output {
        let url = self.url(key);
        let mut args = vec!["upload", "--json", src.to_str().expect("utf-8 path"), url.as_str()];
        args.extend_from_slice(extra);
        self.command(&args).output().expect("run imgport upload")
    }

    fn upload_ok(&self, src: &Path, key: &str, extra: &[&str]) -> Value {
        let out = self.upload(src, key, extra);
        assert!(out.status.success(), "upload failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("json summary")
    }

    fn get(&self, key: &str) -> Vec<u8> {
        rt().block_on(self.client().get_object(key)).expect("get").to_vec()
    }

    fn state_files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.dir.path().join("state/imgport/uploads"))
            .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "json")).collect())
            .unwrap_or_default()
    }

    /// The resume state of the upload in progress, once one has been written.
    fn recorded_state(&self) -> Option<Value> {
        let f = self.state_files().into_iter().next()?;
        serde_json::from_slice(&std::fs::read(f).ok()?).ok()
    }

    /// Waits (up to 60 s) until the resume state records at least `n` parts; returns how many it records.
    fn wait_for_recorded_parts(&self, n: usize) -> usize {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut recorded = 0;
        while std::time::Instant::now() < deadline && recorded < n {
            recorded = self.recorded_state().and_then(|v| v["parts"].as_object().map(|m| m.len())).unwrap_or(0);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        recorded
    }
}

/// Deterministic, incompressible-looking data.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn write_source(dir: &Path, name: &str, len: usize, seed: u64) -> (PathBuf, Vec<u8>) {
    let p = dir.join(name);
    let d = data(len, seed);
    std::fs::write(&p, &d).expect("write source");
    (p, d)
}

fn sizes_at_part_boundaries(store: &Store, part: usize) {
    let src_dir = tempfile::tempdir().expect("tempdir");
    let part_arg = part.to_string();
    for (i, len) in [0, 1, part - 1, part, part + 1, 2 * part - 1, 3 * part, 3 * part + 1].into_iter().enumerate() {
        let (src, d) = write_source(src_dir.path(), &format!("f{i}"), len, i as u64 + 1);
        let key = format!("sizes/{len}.raw");
        let s = store.upload_ok(&src, &key, &["--part-size", &part_arg, "--concurrency", "3"]);
        assert_eq!(s["bytes"], len as u64, "{s}");
        assert_eq!(s["parts"], len.div_ceil(part).max(1) as u64, "{s}");
        assert!(store.get(&key) == d, "stored object differs from the source ({len} bytes)");
    }
    assert!(store.state_files().is_empty(), "resume state left behind after success");
}

#[test]
fn oss_v4_sizes() {
    sizes_at_part_boundaries(&oss(Flavor::OssV4), 100 << 10);
}

#[test]
fn oss_v1_sizes() {
    sizes_at_part_boundaries(&oss(Flavor::OssV1), 100 << 10);
}

#[test]
fn s3_sizes() {
    sizes_at_part_boundaries(&s3(), 5 << 20);
}

fn rule(operation: &str, fault: Fault, rate: f64, after: u64, times: Option<u64>) -> FaultRule {
    FaultRule { operation: operation.into(), fault, rate, after, times }
}

/// Issue 5's acceptance 2: 10% 5xx, dropped connections mid-part, a throttling burst, a failed Complete and an
/// hour of clock skew.
fn acceptance_faults(seed: u64) -> FaultConfig {
    FaultConfig {
        seed,
        rules: vec![
            rule("UploadPart", Fault::InternalError, 0.1, 0, None),
            rule("UploadPart", Fault::DropRequest { after_bytes: 50_000 }, 0.05, 0, None),
            rule("UploadPart", Fault::SlowDown, 1.0, 10, Some(6)),
            rule("CompleteMultipartUpload", Fault::ServiceUnavailable, 1.0, 0, Some(1)),
        ],
        clock_skew_seconds: 3600,
        tokens_expire_at: None,
    }
}

#[test]
fn oss_faults_are_retried() {
    let store = oss(Flavor::OssV4);
    store.emu().set_faults(acceptance_faults(42));
    let dir = tempfile::tempdir().expect("tempdir");
    let (src, d) = write_source(dir.path(), "src", 12 << 20, 9);
    let s = store.upload_ok(&src, "faults.raw", &["--part-size", "256K", "--concurrency", "8"]);
    assert!(s["retries"].as_u64().unwrap_or(0) >= 8, "{s}");
    store.emu().set_faults(FaultConfig::default());
    assert!(store.get("faults.raw") == d);
}

/// Starts an upload slowed by latency, kills it with SIGKILL once `min_parts` parts are recorded, and returns
/// how many the state held.
fn start_and_kill(store: &Store, src: &Path, key: &str, min_parts: usize) -> usize {
    store.slow_parts();
    let url = store.url(key);
    store.kill_after_parts(
        &["upload", src.to_str().expect("utf-8"), &url, "--part-size", "128K", "--concurrency", "4"],
        min_parts,
    )
}

#[test]
fn kill_9_then_resume() {
    let store = oss(Flavor::OssV4);
    let dir = tempfile::tempdir().expect("tempdir");
    let (src, d) = write_source(dir.path(), "src", 8 << 20, 3);
    let recorded = start_and_kill(&store, &src, "resume.raw", 12);
    let s = store.upload_ok(&src, "resume.raw", &["--part-size", "128K", "--concurrency", "4"]);
    let resumed = s["resumed_parts"].as_u64().unwrap_or(0) as usize;
    // Parts finished after the state was read may also be kept; none recorded is lost.
    assert!(resumed >= recorded, "resumed {resumed} of {recorded} recorded parts: {s}");
    assert!(store.get("resume.raw") == d);
    assert!(store.state_files().is_empty());
}

#[test]
fn changed_source_is_not_resumed() {
    let store = oss(Flavor::OssV4);
    let dir = tempfile::tempdir().expect("tempdir");
    let (src, _) = write_source(dir.path(), "src", 8 << 20, 4);
    start_and_kill(&store, &src, "changed.raw", 4);
    // Same size, new content in the middle.
    let (src, d) = write_source(dir.path(), "src", 8 << 20, 5);
    let out = store.upload(&src, "changed.raw", &["--part-size", "128K", "--concurrency", "4"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "upload failed: {stderr}");
    // The library reports the restart as an event; the command prints it.
    assert!(stderr.contains("changed since the interrupted upload; starting over"), "{stderr}");
    let s: Value = serde_json::from_slice(&out.stdout).expect("json summary");
    assert_eq!(s["resumed_parts"], 0, "{s}");
    assert!(store.get("changed.raw") == d);
}

/// The source is written to in the middle of an upload: the upload fails naming the change and stores nothing;
/// a rerun uploads the new contents. `slow` makes the upload last long enough to write during it.
fn source_written_during_upload(store: &Store, part: &str, len: usize, slow: &[&str]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (src, _) = write_source(dir.path(), "src", len, 6);
    let url = store.url("written.raw");
    let mut args = vec!["upload", "--json", src.to_str().expect("utf-8"), &url, "--part-size", part];
    args.extend_from_slice(&["--concurrency", "2"]);
    args.extend_from_slice(slow);
    let child = store.command(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn upload");
    store.wait_for_recorded_parts(1);
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&src).expect("open source");
        f.write_all_at(&data(4096, 7), (len / 2) as u64).expect("write into the source");
    }
    let out = child.wait_with_output().expect("wait for the upload");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an upload of a changing file succeeded: {stderr}");
    assert!(stderr.contains("changed while it was being uploaded"), "{stderr}");
    assert!(rt().block_on(store.client().head_object("written.raw")).is_err(), "an object was stored");
    if let Some(m) = &store.emu {
        m.set_faults(FaultConfig::default());
    }
    let d = std::fs::read(&src).expect("read source");
    let s = store.upload_ok(&src, "written.raw", &["--part-size", part]);
    assert_eq!(s["resumed_parts"], 0, "{s}");
    assert!(store.get("written.raw") == d, "the rerun did not store the new contents");
}

#[test]
fn oss_source_written_during_upload() {
    let store = oss(Flavor::OssV4);
    store.slow_parts();
    source_written_during_upload(&store, "128K", 4 << 20, &[]);
}

#[test]
fn s3_source_written_during_upload() {
    source_written_during_upload(&s3(), "5M", 24 << 20, &["--rate-limit", "6M"]);
}

#[test]
fn interrupted_uploads_are_listed_and_aborted() {
    let store = oss(Flavor::OssV4);
    let dir = tempfile::tempdir().expect("tempdir");
    let (src, _) = write_source(dir.path(), "src", 8 << 20, 6);
    start_and_kill(&store, &src, "left.raw", 2);
    let out = store.command(&["uploads", "list", "--json", &store.url("")]).output().expect("list");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    let out = store.command(&["uploads", "abort", &store.url("left.raw")]).output().expect("abort");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(store.state_files().is_empty());
    let out = store.command(&["uploads", "list", "--json", &store.url("")]).output().expect("list");
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v.as_array().map(Vec::len), Some(0), "{v}");
}

/// Runs an upload under /usr/bin/time and returns its JSON summary and peak RSS in KiB.
fn upload_measured(store: &Store, src: &Path, key: &str, extra: &[&str]) -> (Value, u64) {
    let url = store.url(key);
    let report = store.dir.path().join("rss");
    let mut inner = store.command(&["upload", "--json", src.to_str().expect("utf-8"), url.as_str()]);
    inner.args(extra);
    let out = under_time(&inner, &report).output().expect("run upload");
    assert!(out.status.success(), "upload failed: {}", String::from_utf8_lossy(&out.stderr));
    (serde_json::from_slice(&out.stdout).expect("json summary"), peak_rss_kib(&report))
}

/// A large source made cheaply: one pseudo-random MiB repeated, each copy stamped with its index so no two parts
/// are alike (a misplaced part changes the CRC). Returns the path and the data's CRC-64.
fn write_large_source(dir: &Path, name: &str, mib: u64) -> (PathBuf, u64) {
    use std::io::Write;
    let p = dir.join(name);
    let mut block = data(1 << 20, 17);
    let mut crc = imgport_storage::crc64::Crc64::new();
    let mut f = std::io::BufWriter::with_capacity(8 << 20, std::fs::File::create(&p).expect("create source"));
    for i in 0..mib {
        block[..8].copy_from_slice(&i.to_le_bytes());
        crc.update(&block);
        f.write_all(&block).expect("write source");
    }
    f.flush().expect("flush source");
    (p, crc.finish())
}

/// Peak RSS of a file upload, whatever its part size and concurrency: parts are streamed from the file.
const FILE_UPLOAD_RSS_KIB: u64 = 128 * 1024;

/// 4 GiB in 64 MiB parts, 8 in flight. The object's length and CRC-64 from the server match the source, and peak
/// RSS stays under 128 MiB (it held every part in flight before parts were streamed: (8 + 1) x 64 MiB).
///
/// The same object then checks issue 12's acceptance 3: ImportImage of a 4 GiB multipart object answers at once.
#[test]
fn oss_4_gib_in_bounded_memory() {
    let store = oss_with(Flavor::OssV4, CloudSettings { seed_import_role: true, ..Default::default() });
    let dir = tempfile::tempdir().expect("tempdir");
    let (part_mib, mib) = (64, 4096);
    let (src, want) = write_large_source(dir.path(), "big", mib);
    let (s, rss_kib) = upload_measured(&store, &src, "big.raw", &["--part-size", "64M", "--concurrency", "8"]);
    assert_eq!(s["parts"], mib / part_mib, "{s}");
    assert_eq!(s["crc64"], want.to_string(), "{s}");
    let bound = FILE_UPLOAD_RSS_KIB;
    assert!(rss_kib < bound, "peak RSS {} MiB over the bound {} MiB", rss_kib / 1024, bound / 1024);
    let head = rt().block_on(store.client().head_object("big.raw")).expect("head");
    assert_eq!((head.len, head.crc64), (mib << 20, Some(want)));
    import_answers_at_once(&store, "big.raw");
}

/// 2 GiB to S3 (s3s-fs) in 256 MiB parts, 8 in flight (all of them at once): peak RSS under 128 MiB, the object
/// whole (length, and the multipart ETag checked by the upload against the parts' MD5s).
#[test]
fn s3_2_gib_in_256_mib_parts_in_bounded_memory() {
    let store = s3();
    let dir = tempfile::tempdir().expect("tempdir");
    let mib = 2048;
    let (src, want) = write_large_source(dir.path(), "big", mib);
    let (s, rss_kib) = upload_measured(&store, &src, "big.raw", &["--part-size", "256M", "--concurrency", "8"]);
    assert_eq!((s["parts"].as_u64(), s["part_size"].as_u64()), (Some(8), Some(256 << 20)), "{s}");
    assert_eq!(s["crc64"], want.to_string(), "{s}");
    assert!(s["etag"].as_str().is_some_and(|e| e.ends_with("-8")), "{s}");
    let bound = FILE_UPLOAD_RSS_KIB;
    assert!(rss_kib < bound, "peak RSS {} MiB over the bound {} MiB", rss_kib / 1024, bound / 1024);
    let head = rt().block_on(store.client().head_object("big.raw")).expect("head");
    assert_eq!(head.len, mib << 20);
}

/// ImportImage of a multipart object answers within 200 ms whatever its size: the request reads the object's
/// header and footer in place, and the import task reads the rest. The best of three DryRun calls (which run
/// every check of the request) and the real call is measured, so the scheduling of a busy test machine does not
/// decide it; the real call must return an ImageId.
fn import_answers_at_once(store: &Store, key: &str) {
    use imgport_auth::endpoints::{Endpoint, Service};
    use imgport_auth::provider::Static;
    use imgport_auth::rpc::{RpcClient, Style};
    let emu = store.emu();
    let endpoint = Endpoint::parse(&emu.ecs_endpoint).expect("ECS endpoint");
    let clock: imgport_auth::provider::Clock = std::sync::Arc::new(imgport_auth::time::now);
    let client = RpcClient::new(Service::Ecs, "2014-05-26", endpoint, Style::RpcV1, clock)
        .expect("RPC client")
        .with_credentials(std::sync::Arc::new(Static::new(store.creds.clone(), "test")));
    let params = [
        ("RegionId", store.region.as_str()),
        ("ImageName", "big-multipart"),
        ("DiskDeviceMapping.1.OSSBucket", BUCKET),
        ("DiskDeviceMapping.1.OSSObject", key),
        ("DiskDeviceMapping.1.Format", "RAW"),
    ];
    let mut best = std::time::Duration::MAX;
    for dry_run in [true, true, true, false] {
        let mut p = params.to_vec();
        if dry_run {
            p.push(("DryRun", "true"));
        }
        let started = std::time::Instant::now();
        let answer = rt().block_on(client.call::<Value>("ImportImage", &p));
        best = best.min(started.elapsed());
        match (dry_run, answer) {
            (true, Err(e)) => assert_eq!(e.code(), Some("DryRunOperation"), "{e}"),
            (false, Ok(v)) => assert!(v["ImageId"].as_str().is_some_and(|id| id.starts_with("m-")), "{v}"),
            (_, other) => panic!("ImportImage (DryRun {dry_run}): {other:?}"),
        }
    }
    assert!(best < std::time::Duration::from_millis(200), "ImportImage of a 4 GiB multipart object took {best:?}");
}

/// STS credentials (a RamRoleArn profile of the aliyun CLI) expire on the server mid-upload while they look
/// valid for another hour here (the emulator's token expiry fault): the uploader has the provider drop them,
/// fetches new ones with AssumeRole and completes.
#[test]
fn expired_token_mid_upload_is_refreshed() {
    let store = oss_with(Flavor::OssV4, CloudSettings { seed_import_role: true, ..Default::default() });
    let emu = store.emu();
    let home = store.dir.path().join("home");
    std::fs::create_dir_all(home.join(".aliyun")).expect("home");
    let profile = serde_json::json!({
        "current": "role",
        "profiles": [{
            "name": "role",
            "mode": "RamRoleArn",
            "access_key_id": store.creds.access_key_id,
            "access_key_secret": store.creds.access_key_secret.expose(),
            "ram_role_arn": format!("acs:ram::{}:role/AliyunECSImageImportDefaultRole", emu.state().account_id),
            "region_id": store.region,
        }]
    });
    std::fs::write(home.join(".aliyun/config.json"), profile.to_string()).expect("profile");
    let latency = rule("UploadPart", Fault::Latency { ms: 100 }, 1.0, 0, None);
    emu.set_faults(FaultConfig { rules: vec![latency.clone()], ..Default::default() });
    let dir = tempfile::tempdir().expect("tempdir");
    let (src, d) = write_source(dir.path(), "src", 8 << 20, 21);
    let url = store.url("sts.raw");
    let mut cmd = store.command(&["upload", "--json", src.to_str().expect("utf-8"), &url]);
    cmd.args(["--part-size", "128K", "--concurrency", "4"]);
    // Only the profile may supply credentials.
    for var in [
        "ALIBABA_CLOUD_ACCESS_KEY_ID",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        "ALICLOUD_ACCESS_KEY",
        "ALICLOUD_SECRET_KEY",
        "OSS_ACCESS_KEY_ID",
        "OSS_ACCESS_KEY_SECRET",
        "ALIBABA_CLOUD_ROLE_ARN",
        "ALIBABA_CLOUD_CONFIG_FILE",
        "ALIBABA_CLOUD_PROFILE",
    ] {
        cmd.env_remove(var);
    }
    let child = cmd
        .env("HOME", &home)
        .env("IMGPORT_STS_ENDPOINT", &emu.ecs_endpoint)
        .env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn upload");
    // Expire the tokens once a few parts are in.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let parts_done = || emu.request_log().iter().filter(|e| e.operation == "UploadPart" && e.status == 200).count();
    while parts_done() < 8 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(parts_done() >= 8, "the upload never got going");
    emu.set_faults(FaultConfig {
        rules: vec![latency],
        tokens_expire_at: Some(emu.state().now()),
        ..Default::default()
    });
    let out = child.wait_with_output().expect("wait");
    emu.set_faults(FaultConfig::default());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s: Value = serde_json::from_slice(&out.stdout).expect("json summary");
    assert!(s["retries"].as_u64().unwrap_or(0) >= 1, "{s}");
    let log = emu.request_log();
    let refused = log.iter().filter(|e| e.operation == "UploadPart" && e.status == 403).count();
    let assumed = log.iter().filter(|e| e.operation == "AssumeRole" && e.status == 200).count();
    assert!(refused >= 1, "no part was refused for its token");
    assert!(assumed >= 2, "the credentials were not fetched again after the refusal ({assumed} AssumeRole calls)");
    assert!(store.get("sts.raw") == d);
}

/// Ctrl-C leaves a resumable upload, says how to resume or abort, and exits 130; the rerun resumes.
#[test]
fn ctrl_c_leaves_a_resumable_upload() {
    let store = oss(Flavor::OssV4);
    store.slow_parts();
    let dir = tempfile::tempdir().expect("tempdir");
    let (src, d) = write_source(dir.path(), "src", 4 << 20, 13);
    let url = store.url("int.raw");
    let child = store
        .command(&["upload", src.to_str().expect("utf-8"), &url, "--part-size", "128K", "--concurrency", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    std::thread::sleep(std::time::Duration::from_millis(1200));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("resume:") && err.contains("uploads abort"), "{err}");
    store.emu().set_faults(FaultConfig::default());
    let s = store.upload_ok(&src, "int.raw", &[]);
    assert!(s["resumed_parts"].as_u64().unwrap_or(0) > 0, "{s}");
    assert!(store.get("int.raw") == d);
}

/// s3s-fs cannot be slowed down from outside: --rate-limit keeps the upload going long enough to kill it. Both
/// checksum kinds: the default (CRC-64/NVME) and Content-MD5; a resume under `auto` keeps the kind it started
/// with, and the human listing names it.
#[test]
fn s3_kill_9_then_resume_and_local_listing() {
    let store = s3();
    let dir = tempfile::tempdir().expect("tempdir");
    for (kind, checksum, seed) in [("crc64nvme", "auto", 12), ("md5", "md5", 13)] {
        let (src, d) = write_source(dir.path(), kind, 30 << 20, seed);
        let key = format!("resume-{kind}.raw");
        let url = store.url(&key);
        let args = ["upload", src.to_str().expect("utf-8"), &url, "--part-size", "5M", "--concurrency", "2"];
        let run = [&args[..], &["--rate-limit", "5M", "--checksum", checksum]].concat();
        let recorded = store.kill_after_parts(&run, 2);
        let state = store.recorded_state().expect("a resume state");
        let part = state["parts"].as_object().and_then(|p| p.values().next().cloned()).expect("a part");
        match kind {
            "md5" => assert!(state.get("checksum").is_none() && part.get("checksum").is_none(), "{state}"),
            _ => assert!(state["checksum"] == kind && part["checksum"].is_u64(), "{state}"),
        }
        // s3s-fs has no ListMultipartUploads: the listing comes from the local resume state, with the kind.
        let out = store.command(&["uploads", "list", "--json", &store.url("")]).output().expect("list");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!((&v[0]["source"], &v[0]["checksum"]), (&Value::from("local"), &Value::from(kind)), "{v}");
        let out = store.command(&["uploads", "list", &store.url("")]).output().expect("list");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(text.contains(&format!("{key}  {kind}  (local)")), "{text}");
        let s = store.upload_ok(&src, &key, &["--part-size", "5M", "--concurrency", "4"]);
        assert!(s["resumed_parts"].as_u64().unwrap_or(0) as usize >= recorded, "{s}");
        assert_eq!(s["checksum_algorithm"], kind, "{s}");
        assert!(store.get(&key) == d);
        assert!(store.state_files().is_empty());
    }
}

/// The upload vanishes mid-way (aborted elsewhere): the uploader starts over once and still completes correctly.
#[test]
fn vanished_upload_starts_over() {
    let store = oss(Flavor::OssV4);
    store.emu().set_faults(FaultConfig {
        rules: vec![rule("UploadPart", Fault::Latency { ms: 100 }, 1.0, 0, None)],
        ..Default::default()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let (src, d) = write_source(dir.path(), "src", 4 << 20, 14);
    let url = store.url("vanish.raw");
    let child = store
        .command(&["upload", "--json", src.to_str().expect("utf-8"), &url, "--part-size", "128K", "--concurrency", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut aborted = false;
    while std::time::Instant::now() < deadline && !aborted {
        if let Some(v) = store.recorded_state().filter(|v| v["parts"].as_object().is_some_and(|m| m.len() >= 3)) {
            let id = v["upload_id"].as_str().expect("upload id").to_string();
            rt().block_on(store.client().abort_multipart("vanish.raw", &id)).expect("abort");
            aborted = true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(aborted, "never saw 3 parts recorded");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    store.emu().set_faults(FaultConfig::default());
    assert!(store.get("vanish.raw") == d);
}

/// `signal` during an upload (slowed by `slow` or the store) exits `code`, says how to resume or abort and keeps
/// the resume state; the rerun does not send the recorded parts again.
fn signalled_upload_resumes(store: &Store, signal: libc::c_int, code: i32, part: &str, len: usize, slow: &[&str]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (src, d) = write_source(dir.path(), "src", len, 31);
    let url = store.url("sig.raw");
    let args = [&["upload", src.to_str().expect("utf-8"), &url, "--part-size", part, "--concurrency", "2"], slow];
    let child = store.command(&args.concat()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn");
    assert!(store.wait_for_recorded_parts(2) >= 2, "the upload never got going");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "signal {signal}: {err}");
    assert!(err.contains("resume:") && err.contains("uploads abort"), "{err}");
    let kept = store.recorded_state().expect("the resume state was not kept");
    let kept = kept["parts"].as_object().map_or(0, |m| m.len()) as u64;
    assert!(kept >= 2, "{kept} parts recorded");
    if let Some(emu) = &store.emu {
        emu.set_faults(FaultConfig::default());
    }
    let s = store.upload_ok(&src, "sig.raw", &["--part-size", part]);
    let (parts, resumed, sent) = (s["parts"].as_u64(), s["resumed_parts"].as_u64(), s["sent_parts"].as_u64());
    assert!(resumed.unwrap_or(0) >= kept, "{s}");
    assert_eq!(sent.zip(resumed).map(|(a, b)| a + b), parts, "recorded parts were sent again: {s}");
    assert!(store.get("sig.raw") == d);
    assert!(store.state_files().is_empty());
}

#[test]
fn oss_sigterm_leaves_a_resumable_upload() {
    let store = oss(Flavor::OssV4);
    store.slow_parts();
    signalled_upload_resumes(&store, libc::SIGTERM, 143, "128K", 4 << 20, &[]);
}

#[test]
fn s3_sighup_leaves_a_resumable_upload() {
    signalled_upload_resumes(&s3(), libc::SIGHUP, 129, "5M", 30 << 20, &["--rate-limit", "5M"]);
}

/// A second upload of the same source to the same destination while the first runs is refused at once with
/// exit 75 (EX_TEMPFAIL), naming the process that holds the resume state; the first completes undisturbed. A
/// streamed convert of the same source to the same destination shares the resume state and is refused too.
fn concurrent_upload_is_refused(store: &Store, part: &str, len: usize, slow: &[&str]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (src, d) = write_source(dir.path(), "src", len, 32);
    let url = store.url("twice.raw");
    let args = [&["upload", "--json", src.to_str().expect("utf-8"), &url, "--part-size", part], slow].concat();
    let first = store.command(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    assert!(store.wait_for_recorded_parts(1) >= 1, "the first upload never got going");
    let second = store.command(&args).output().expect("run the second upload");
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(75), "{err}");
    assert!(err.contains(&format!("pid {}", first.id())), "the holder is not named: {err}");
    let stream = store
        .command(&["convert", "-O", "raw", "--part-size", part, src.to_str().expect("utf-8"), &url])
        .output()
        .expect("run the streamed convert");
    let err = String::from_utf8_lossy(&stream.stderr);
    assert_eq!(stream.status.code(), Some(75), "{err}");
    assert!(err.contains(&format!("pid {}", first.id())), "the holder is not named: {err}");
    // Nor may `uploads abort` pull the upload from under the running process.
    let abort = store.command(&["uploads", "abort", &url]).output().expect("run uploads abort");
    let err = String::from_utf8_lossy(&abort.stderr);
    assert_eq!(abort.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("pid {}", first.id())) && err.contains("is running"), "{err}");
    let out = first.wait_with_output().expect("wait for the first upload");
    assert!(out.status.success(), "the first upload failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(store.get("twice.raw") == d);
    assert!(store.state_files().is_empty());
}

#[test]
fn oss_concurrent_upload_is_refused() {
    let store = oss(Flavor::OssV4);
    store.slow_parts();
    concurrent_upload_is_refused(&store, "128K", 4 << 20, &[]);
}

#[test]
fn s3_concurrent_upload_is_refused() {
    concurrent_upload_is_refused(&s3(), "5M", 30 << 20, &["--rate-limit", "8M"]);
}

/// The upload id a resume state names is aborted through the store's API after the run was killed: the rerun
/// (`args` without `slow`) starts over once and completes, instead of failing on the vanished upload on every
/// rerun.
struct Aborted<'a> {
    args: &'a [&'a str],
    slow: &'a [&'a str],
    min_parts: usize,
    key: &'a str,
    want: &'a [u8],
}

fn aborted_upload_id_starts_over(store: &Store, a: Aborted<'_>) {
    store.kill_after_parts(&[a.args, a.slow].concat(), a.min_parts);
    let v = store.recorded_state().expect("a resume state");
    let id = v["upload_id"].as_str().expect("upload id").to_string();
    rt().block_on(store.client().abort_multipart(a.key, &id)).expect("abort");
    let again = [&a.args[..1], &["--json"], &a.args[1..]].concat();
    let out = store.command(&again).output().expect("rerun");
    assert!(out.status.success(), "{again:?} after the upload was aborted: {}", String::from_utf8_lossy(&out.stderr));
    let s: Value = serde_json::from_slice(&out.stdout).expect("json summary");
    assert_eq!(s["resumed_parts"], 0, "{s}");
    assert!(store.get(a.key) == a.want, "the object differs from the source");
    assert!(store.state_files().is_empty());
}

/// Every part recorded (CompleteMultipartUpload held back by the emulator), killed, the upload aborted behind
/// its back; and the same for a streamed convert killed mid-way.
#[test]
fn oss_aborted_upload_id_starts_over() {
    let store = oss(Flavor::OssV4);
    let dir = tempfile::tempdir().expect("tempdir");
    let (src, d) = write_source(dir.path(), "src", 2 << 20, 33);
    store.emu().set_faults(FaultConfig {
        rules: vec![
            rule("UploadPart", Fault::Latency { ms: 20 }, 1.0, 0, None),
            rule("CompleteMultipartUpload", Fault::Latency { ms: 20_000 }, 1.0, 0, None),
        ],
        ..Default::default()
    });
    let (url, s) = (store.url("gone.raw"), src.to_str().expect("utf-8"));
    let args = ["upload", s, &url, "--part-size", "128K"];
    aborted_upload_id_starts_over(&store, Aborted { args: &args, slow: &[], min_parts: 16, key: "gone.raw", want: &d });

    let disk = raw_disk(dir.path(), "disk.raw", 8, 34);
    let want = convert_local(&disk, dir.path(), &["-O", "qcow2"]);
    store.slow_parts();
    let (url, s) = (store.url("gone.qcow2"), disk.to_str().expect("utf-8"));
    let args = ["convert", "-O", "qcow2", "--part-size", "128K", s, &url];
    aborted_upload_id_starts_over(
        &store,
        Aborted { args: &args, slow: &[], min_parts: 4, key: "gone.qcow2", want: &want },
    );
}

#[test]
fn s3_aborted_upload_id_starts_over() {
    let store = s3();
    let dir = tempfile::tempdir().expect("tempdir");
    let (src, d) = write_source(dir.path(), "src", 30 << 20, 35);
    let (url, s) = (store.url("gone.raw"), src.to_str().expect("utf-8"));
    let args = ["upload", s, &url, "--part-size", "5M"];
    let slow = ["--rate-limit", "5M"];
    aborted_upload_id_starts_over(
        &store,
        Aborted { args: &args, slow: &slow, min_parts: 2, key: "gone.raw", want: &d },
    );
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

/// Resume state is the user's alone: folders 0700 and files 0600 when created, and a folder others could read
/// is tightened when it is used. Plain http to a loopback endpoint (the emulator) is not warned about.
#[test]
fn resume_state_is_private() {
    let store = oss(Flavor::OssV4);
    let dir = tempfile::tempdir().expect("tempdir");
    let (src, d) = write_source(dir.path(), "src", 4 << 20, 36);
    start_and_kill(&store, &src, "private.raw", 2);
    let (imgport_dir, uploads) =
        (store.dir.path().join("state/imgport"), store.dir.path().join("state/imgport/uploads"));
    assert_eq!((mode(&imgport_dir), mode(&uploads)), (0o700, 0o700));
    let files: Vec<PathBuf> = std::fs::read_dir(&uploads).expect("state dir").flatten().map(|e| e.path()).collect();
    assert!(!files.is_empty());
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    // A folder made readable by others (an older imgport, a umask) is tightened on the next use.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&uploads, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let out = store.upload(&src, "private.raw", &["--part-size", "128K"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("warning"), "loopback http was warned about: {err}");
    assert_eq!(mode(&uploads), 0o700);
    assert!(store.get("private.raw") == d);
}

/// Credentials sent over plain http to a host that is not loopback: warned about on stderr before anything is
/// sent (the address here does not answer; only the warning matters).
#[test]
fn plain_http_to_a_remote_endpoint_is_warned_about() {
    use std::io::BufRead;
    let store = oss(Flavor::OssV4);
    let dir = tempfile::tempdir().expect("tempdir");
    let (src, _) = write_source(dir.path(), "src", 1 << 20, 37);
    for (url, endpoint) in [(store.url("w.raw"), "http://10.1.2.3:1"), ("s3://b/w.raw".into(), "http://10.1.2.3:1")] {
        let mut child = store
            .command(&["upload", src.to_str().expect("utf-8"), &url, "--endpoint", endpoint])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut lines = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
            let found = line.contains("warning") && line.contains(endpoint);
            lines.push(line);
            if found {
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            lines.iter().any(|l| l.starts_with("imgport: warning:") && l.contains(endpoint) && l.contains("http")),
            "{url} via {endpoint}: no warning in {lines:?}"
        );
    }
}

// ---- convert streamed to the store ----

impl Store {
    fn convert(&self, src: &Path, key: &str, args: &[&str]) -> Output {
        let url = self.url(key);
        let mut all = vec!["convert", "--json"];
        all.extend_from_slice(args);
        all.extend_from_slice(&[src.to_str().expect("utf-8 path"), url.as_str()]);
        self.command(&all).output().expect("run imgport convert")
    }

    fn convert_ok(&self, src: &Path, key: &str, args: &[&str]) -> Value {
        let out = self.convert(src, key, args);
        assert!(out.status.success(), "streamed convert failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("json summary")
    }

    /// Parts the store holds for the upload the resume state names.
    fn stored_parts(&self) -> Vec<u32> {
        let v = self.recorded_state().expect("a resume state");
        let (key, id) = (v["key"].as_str().expect("key"), v["upload_id"].as_str().expect("upload id"));
        rt().block_on(self.client().list_parts(key, id)).expect("list parts").iter().map(|p| p.number).collect()
    }
}

/// A raw disk with scattered data, written zeros and holes (imgport-test-support's fixtures), `mib` MiB plus an odd tail.
fn raw_disk(dir: &Path, name: &str, mib: u64, seed: u64) -> PathBuf {
    let p = dir.join(name);
    common::make_source_raw(&p, (mib << 20) + 3 * 512, seed);
    p
}

/// `imgport convert` to a local file: the reference a streamed upload must equal.
fn convert_local(src: &Path, dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = dir.join(format!("ref-{}", args.join("_").replace(['/', '='], "-")));
    let _ = std::fs::remove_file(&out);
    let mut all = vec!["convert"];
    all.extend_from_slice(args);
    all.extend_from_slice(&[src.to_str().expect("utf-8"), out.to_str().expect("utf-8")]);
    common::imgport_ok(&all);
    std::fs::read(&out).expect("read the converted file")
}

/// Checks a streamed object against the local conversion and, through qemu-img, against the raw source.
fn assert_streamed(store: &Store, key: &str, reference: &[u8], src: &Path, qemu_fmt: &str, summary: &Value) {
    let got = store.get(key);
    assert_eq!(summary["bytes"], got.len() as u64, "{summary}");
    assert_eq!(got.len(), reference.len(), "{key}: length differs from imgport convert's");
    if qemu_fmt == "vpc" {
        // VHD footers (a copy at 0 and the last sector) hold the creation time and a unique id, which differ
        // between runs unless stamped: compare everything else.
        let mask = |v: &[u8]| {
            let mut v = v.to_vec();
            let n = v.len();
            for base in [0, n - 512] {
                v[base + 24..base + 28].fill(0);
                v[base + 64..base + 84].fill(0);
            }
            v
        };
        assert!(mask(&got) == mask(reference), "{key}: differs from imgport convert's output");
    } else {
        let first = got.iter().zip(reference).position(|(a, b)| a != b);
        assert_eq!(first, None, "{key}: first difference from imgport convert's output at this offset");
    }
    let file = store.dir.path().join(key.replace('/', "_"));
    std::fs::write(&file, &got).expect("write the downloaded object");
    assert_qemu_same(&file, qemu_fmt, src);
}

/// qemu-img compare against the raw source; VHD pads the disk to whole MiB, so sizes may differ there (qemu-img
/// then checks the padding reads as zeros).
fn assert_qemu_same(file: &Path, qemu_fmt: &str, raw: &Path) {
    if qemu_fmt == "vpc" {
        let (a, b) = (file.to_str().expect("utf-8"), raw.to_str().expect("utf-8"));
        let (code, text) = common::qemu_img_status(&["compare", "-f", "vpc", "-F", "raw", a, b]);
        assert_eq!(code, 0, "qemu-img compare {a} (vpc) {b} (raw): {text}");
    } else {
        common::assert_qemu_identical(file, qemu_fmt, raw, "raw");
    }
}

fn streamed_formats_equal_convert(store: &Store, part: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = raw_disk(dir.path(), "disk.raw", 24, 21);
    let part_size = parse_part(part);
    for (fmt, opts, qemu_fmt) in
        [("qcow2", &[][..], "qcow2"), ("vpc", &["-o", "subformat=dynamic"][..], "vpc"), ("raw", &[][..], "raw")]
    {
        let imgport_fmt = if fmt == "vpc" { "vhd" } else { fmt };
        let mut args = vec!["-O", imgport_fmt];
        args.extend_from_slice(opts);
        let reference = convert_local(&src, dir.path(), &args);
        args.extend_from_slice(&["--part-size", part, "--concurrency", "4"]);
        let key = format!("stream/disk.{imgport_fmt}");
        let s = store.convert_ok(&src, &key, &args);
        let parts = (reference.len() as u64).div_ceil(part_size);
        assert_eq!((s["parts"].as_u64(), s["sent_parts"].as_u64()), (Some(parts), Some(parts)), "{s}");
        assert!(parts >= 3, "{imgport_fmt}: only {parts} parts");
        assert_eq!(s["output_format"], imgport_fmt, "{s}");
        assert_streamed(store, &key, &reference, &src, qemu_fmt, &s);
    }
    assert!(store.state_files().is_empty(), "resume state left behind after success");
}

fn parse_part(s: &str) -> u64 {
    let (n, unit) = s.split_at(s.len() - 1);
    n.parse::<u64>().expect("part size") << if unit == "M" { 20 } else { 10 }
}

#[test]
fn oss_v4_streamed_convert_equals_convert() {
    streamed_formats_equal_convert(&oss(Flavor::OssV4), "1M");
}

#[test]
fn oss_v1_streamed_convert_equals_convert() {
    streamed_formats_equal_convert(&oss(Flavor::OssV1), "2M");
}

#[test]
fn s3_streamed_convert_equals_convert() {
    let store = s3();
    streamed_formats_equal_convert(&store, "5M");
}

/// Compressed qcow2 and the other formats with a header region larger than one part (VHDX) stream too.
#[test]
fn oss_streamed_compressed_qcow2_and_vhdx() {
    let store = oss(Flavor::OssV4);
    let dir = tempfile::tempdir().expect("tempdir");
    let src = raw_disk(dir.path(), "disk.raw", 16, 22);
    let reference = convert_local(&src, dir.path(), &["-O", "qcow2", "--compress", "zstd"]);
    let s = store.convert_ok(&src, "z.qcow2", &["-O", "qcow2", "--compress", "zstd", "--part-size", "512K"]);
    assert_streamed(&store, "z.qcow2", &reference, &src, "qcow2", &s);
    // VHDX GUIDs are random without a stamp: qemu-img checks the content; the layout must match in length.
    let s = store.convert_ok(&src, "d.vhdx", &["-O", "vhdx", "--part-size", "1M"]);
    let got = store.get("d.vhdx");
    let reference = convert_local(&src, dir.path(), &["-O", "vhdx"]);
    assert_eq!((got.len(), s["bytes"].as_u64()), (reference.len(), Some(reference.len() as u64)), "{s}");
    let file = dir.path().join("d.vhdx");
    std::fs::write(&file, &got).expect("write");
    common::assert_qemu_identical(&file, "vhdx", &src, "raw");
}

/// Starts a streamed convert slowed by latency and kills it with SIGKILL once `min_parts` parts are recorded.
fn start_stream_and_kill(store: &Store, src: &Path, key: &str, args: &[&str], min_parts: usize) -> usize {
    store.slow_parts();
    let url = store.url(key);
    store.kill_after_parts(&[&["convert"][..], args, &[src.to_str().expect("utf-8"), url.as_str()]].concat(), min_parts)
}

/// kill -9 mid-stream, then the same command: the stored parts are regenerated, recognised by checksum and not
/// sent again; only the parts in flight at the kill (and the held-back header part) are re-sent.
#[test]
fn oss_streamed_kill_9_then_resume() {
    let store = oss(Flavor::OssV4);
    let dir = tempfile::tempdir().expect("tempdir");
    let src = raw_disk(dir.path(), "disk.raw", 16, 23);
    let concurrency = 4;
    for (fmt, key) in [("qcow2", "k.qcow2"), ("vhd", "k.vhd")] {
        let args = ["-O", fmt, "--part-size", "128K", "--concurrency", "4"];
        let recorded = start_stream_and_kill(&store, &src, key, &args, 12);
        let stored = store.stored_parts();
        assert!(stored.len() >= recorded, "{fmt}: the store lost recorded parts");
        let max = stored.iter().copied().max().unwrap_or(0);
        // Parts below the highest stored one that are missing were in flight; part 1 is held back to the end.
        let holes = (2..max).filter(|n| !stored.contains(n)).count();
        assert!(holes <= concurrency + 1, "{fmt}: {holes} missing parts below part {max}");
        assert!(!stored.contains(&1), "{fmt}: the header part was sent before the end");

        let s = store.convert_ok(&src, key, &args);
        assert_eq!(s["resumed_parts"].as_u64(), Some(stored.len() as u64), "{fmt}: {s}");
        assert_eq!(s["skipped_parts"].as_u64(), Some(stored.len() as u64), "{fmt}: {s}");
        let parts = s["parts"].as_u64().expect("parts");
        assert_eq!(s["sent_parts"].as_u64(), Some(parts - stored.len() as u64), "{fmt}: {s}");
        // The resumed object is the same as an uninterrupted streamed one (stamped) and correct for qemu-img.
        let again = store.convert_ok(&src, &format!("again-{key}"), &[&args[..], &["--no-resume"]].concat());
        assert_eq!(again["crc64"], s["crc64"], "{fmt}: a rerun gives other bytes");
        let got = store.get(key);
        let file = dir.path().join(key);
        std::fs::write(&file, &got).expect("write");
        assert_qemu_same(&file, if fmt == "vhd" { "vpc" } else { fmt }, &src);
        if fmt == "qcow2" {
            assert!(got == convert_local(&src, dir.path(), &["-O", "qcow2"]), "differs from imgport convert");
        }
        assert!(store.state_files().is_empty());
    }
}

/// A source changed after the kill: the old upload is dropped, nothing is skipped, the object is the new one.
#[test]
fn oss_streamed_changed_source_is_not_resumed() {
    let store = oss(Flavor::OssV4);
    let dir = tempfile::tempdir().expect("tempdir");
    let src = raw_disk(dir.path(), "disk.raw", 16, 24);
    let args = ["-O", "qcow2", "--part-size", "128K", "--concurrency", "4"];
    start_stream_and_kill(&store, &src, "c.qcow2", &args, 6);
    // Same size, other content in the middle.
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&src).expect("open source");
        f.write_all_at(&data(1 << 20, 99), 8 << 20).expect("rewrite");
    }
    let s = store.convert_ok(&src, "c.qcow2", &args);
    assert_eq!((s["resumed_parts"].as_u64(), s["skipped_parts"].as_u64()), (Some(0), Some(0)), "{s}");
    let reference = convert_local(&src, dir.path(), &["-O", "qcow2"]);
    assert_streamed(&store, "c.qcow2", &reference, &src, "qcow2", &s);
}

/// A qcow2 overlay streamed through its backing file: an unchanged chain resumes; a backing file changed after
/// the kill (the overlay itself untouched) starts over, and the object is the new chain's.
#[test]
fn oss_streamed_changed_backing_file_is_not_resumed() {
    let store = oss(Flavor::OssV4);
    let dir = tempfile::tempdir().expect("tempdir");
    let base = raw_disk(dir.path(), "base.raw", 16, 25);
    let overlay = dir.path().join("overlay.qcow2");
    let (b, o) = (base.to_str().expect("utf-8"), overlay.to_str().expect("utf-8"));
    // A relative backing name, resolved against the overlay's folder as qemu does.
    common::qemu_img(&["create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", o]);
    let args = ["-O", "qcow2", "--follow-backing", "--part-size", "128K", "--concurrency", "4"];

    start_stream_and_kill(&store, &overlay, "b.qcow2", &args, 6);
    let stored = store.stored_parts().len() as u64;
    let s = store.convert_ok(&overlay, "b.qcow2", &args);
    assert_eq!(s["skipped_parts"].as_u64(), Some(stored), "an unchanged chain must resume: {s}");

    start_stream_and_kill(&store, &overlay, "b2.qcow2", &args, 6);
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&base).expect("open backing file");
        f.write_all_at(&data(1 << 20, 98), 8 << 20).expect("rewrite");
    }
    let out =
        store.command(&[&["convert", "--json"][..], &args, &[o, store.url("b2.qcow2").as_str()]].concat()).output();
    let out = out.expect("run imgport");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("a file the image is read from (extent, backing file), changed"), "{stderr}");
    let s: Value = serde_json::from_str(&stdout).expect("JSON summary");
    assert_eq!((s["resumed_parts"].as_u64(), s["skipped_parts"].as_u64()), (Some(0), Some(0)), "{s}");
    let reference = convert_local(&overlay, dir.path(), &["-O", "qcow2", "--follow-backing"]);
    assert_streamed(&store, "b2.qcow2", &reference, Path::new(b), "qcow2", &s);
}

/// 5xx, dropped requests, throttling and a failed Complete during a stream: retried, and the object is right.
#[test]
fn oss_streamed_faults_are_retried() {
    let store = oss(Flavor::OssV4);
    store.emu().set_faults(acceptance_faults(5));
    let dir = tempfile::tempdir().expect("tempdir");
    let src = raw_disk(dir.path(), "disk.raw", 16, 25);
    let s = store.convert_ok(&src, "f.qcow2", &["-O", "qcow2", "--part-size", "256K", "--concurrency", "8"]);
    assert!(s["retries"].as_u64().unwrap_or(0) >= 8, "{s}");
    store.emu().set_faults(FaultConfig::default());
    let reference = convert_local(&src, dir.path(), &["-O", "qcow2"]);
    assert_streamed(&store, "f.qcow2", &reference, &src, "qcow2", &s);
}

/// `signal` during a stream exits `code` (128 + the signal), says how to resume, and the rerun resumes.
fn streamed_interruption_is_resumable(signal: libc::c_int, code: i32, key: &str) {
    let store = oss(Flavor::OssV4);
    store.slow_parts();
    let dir = tempfile::tempdir().expect("tempdir");
    let src = raw_disk(dir.path(), "disk.raw", 32, 26);
    let url = store.url(key);
    let args = ["convert", "-O", "qcow2", "--part-size", "128K", "--concurrency", "1"];
    let child = store
        .command(&[&args[..], &[src.to_str().expect("utf-8"), url.as_str()]].concat())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    assert!(store.wait_for_recorded_parts(2) >= 2, "the stream never got going");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "signal {signal}: {err}");
    assert!(err.contains("resume: ") && err.contains("uploads abort"), "{err}");
    assert!(store.recorded_state().is_some(), "the resume state was not kept");
    store.emu().set_faults(FaultConfig::default());
    let s = store.convert_ok(&src, key, &args[1..]);
    assert!(s["skipped_parts"].as_u64().unwrap_or(0) > 0, "{s}");
    let reference = convert_local(&src, dir.path(), &["-O", "qcow2"]);
    assert_streamed(&store, key, &reference, &src, "qcow2", &s);
}

/// Ctrl-C during a stream exits 130, says how to resume, and the rerun resumes.
#[test]
fn oss_streamed_ctrl_c_is_resumable() {
    streamed_interruption_is_resumable(libc::SIGINT, 130, "i.qcow2");
}

/// SIGTERM (CI cancellation, systemd, Kubernetes) and SIGHUP (a closed terminal) are handled as Ctrl-C is.
#[test]
fn oss_streamed_sigterm_and_sighup_are_resumable() {
    streamed_interruption_is_resumable(libc::SIGTERM, 143, "t.qcow2");
    streamed_interruption_is_resumable(libc::SIGHUP, 129, "h.qcow2");
}

/// Peak anonymous memory of a streamed convert: the part buffers stay within (concurrency + 1) parts plus the
/// held-back header part, whatever the image's size. Anonymous memory, sampled from /proc, because the
/// converter maps its input: the page cache it touches shows in the total RSS without being allocated.
#[test]
fn oss_streamed_memory_is_bounded() {
    let store = oss(Flavor::OssV4);
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("big.raw");
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::create(&src).expect("create");
        f.set_len(400 << 20).expect("set_len");
        for i in (0..400u64).step_by(2) {
            f.write_all_at(&data(1 << 20, i + 1), i << 20).expect("write");
        }
    }
    let url = store.url("big.qcow2");
    let args = ["convert", "--json", "-O", "qcow2", "--part-size", "4M", "--concurrency", "8"];
    let mut child = store
        .command(&[&args[..], &[src.to_str().expect("utf-8"), url.as_str()]].concat())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    while child.try_wait().expect("wait").is_none() {
        let anon = std::fs::read_to_string(&status_path).ok().and_then(|s| {
            s.lines().find(|l| l.starts_with("RssAnon:"))?.split_whitespace().nth(1)?.parse::<u64>().ok()
        });
        peak_kib = peak_kib.max(anon.unwrap_or(0));
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let out = child.wait_with_output().expect("output");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(s["parts"].as_u64().unwrap_or(0) >= 50, "{s}");
    assert!(peak_kib > 0, "no memory samples");
    let bound = ((8 + 1 + 1) * 4 + 64) * 1024;
    assert!(peak_kib < bound, "peak anonymous memory {} MiB over the bound {} MiB", peak_kib / 1024, bound / 1024);
    let reference = convert_local(&src, dir.path(), &["-O", "qcow2"]);
    assert!(store.get("big.qcow2") == reference, "differs from imgport convert");
    eprintln!("peak anonymous memory: {} MiB", peak_kib / 1024);
}

/// The same on S3 (s3s-fs, which lists parts without checksums: the state file's records identify them);
/// --rate-limit keeps the stream going long enough to kill it.
#[test]
fn s3_streamed_kill_9_then_resume() {
    let store = s3();
    let dir = tempfile::tempdir().expect("tempdir");
    let src = raw_disk(dir.path(), "disk.raw", 48, 27);
    let url = store.url("k.qcow2");
    let args = ["convert", "-O", "qcow2", "--part-size", "5M", "--concurrency", "2"];
    let recorded = store.kill_after_parts(
        &[&args[..], &["--rate-limit", "5M", src.to_str().expect("utf-8"), url.as_str()]].concat(),
        2,
    );
    let s = store.convert_ok(&src, "k.qcow2", &args[1..]);
    assert!(s["skipped_parts"].as_u64().unwrap_or(0) as usize >= recorded, "{s}");
    let reference = convert_local(&src, dir.path(), &["-O", "qcow2"]);
    assert_streamed(&store, "k.qcow2", &reference, &src, "qcow2", &s);
}

/// A create-only write (the pipeline lease's) lands once: OSS (`x-oss-forbid-overwrite`) and s3s-fs
/// (`If-None-Match: *`) refuse the second with AlreadyExists and keep the first object.
#[test]
fn create_only_puts_refuse_a_taken_key() {
    use imgport_storage::{ErrorKind, PutOptions};
    for store in [oss(Flavor::OssV4), s3()] {
        let c = store.client();
        let once = PutOptions { create_only: true, ..Default::default() };
        rt().block_on(async {
            c.put_object("leases/1", b"first".to_vec().into(), &once).await.expect("the first write");
            let again = c.put_object("leases/1", b"second".to_vec().into(), &once).await;
            let e = again.expect_err("the key is taken");
            assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
            assert_eq!(&c.get_object("leases/1").await.expect("read")[..], b"first");
        });
    }
}

/// The address of a store on loopback, from its endpoint URL.
fn addr_of(endpoint: &str) -> std::net::SocketAddr {
    endpoint.trim_start_matches("http://").parse().expect("a loopback endpoint")
}

/// The oracle for a flexible checksum imgport sent: s3s-fs stores `bytes` under `value` only if it is their
/// checksum (it answers BadDigest otherwise).
fn s3s_takes(store: &Store, algorithm: Algorithm, bytes: &[u8], value: &str) -> Result<(), String> {
    let value = algorithm.decode(value).ok_or_else(|| format!("{value:?} is not a {}", algorithm.name()))?;
    let opts = PutOptions { checksum: Some(checksum::Value { algorithm, value }), ..Default::default() };
    let client = store.client();
    rt().block_on(client.put_object("checksum-oracle", Body::from(bytes.to_vec()), &opts))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn part_number(r: &Received) -> Option<usize> {
    r.param("partNumber").and_then(|n| n.parse().ok())
}

/// S3 uploads carry CRC-64/NVME on every part, announce it at Create and check the whole object at Complete
/// (`FULL_OBJECT`): seen on the wire by a recording proxy, each value checked by s3s-fs itself, which verifies
/// checksums on PutObject. CRC-32C likewise on a single PUT.
#[test]
fn s3_flexible_checksums_on_every_part_and_the_object() {
    let store = s3();
    let rec = Recorder::start(addr_of(&store.endpoint));
    let dir = tempfile::tempdir().expect("tempdir");
    let part = 5usize << 20;
    let (src, d) = write_source(dir.path(), "src", 4 * part + 12345, 21);
    let url = store.url("flex.raw");
    let out = store
        .command(&["upload", "--json", src.to_str().expect("utf-8"), &url, "--part-size", "5M"])
        .env("AWS_ENDPOINT_URL", &rec.url)
        .output()
        .expect("upload");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!((&s["checksum_algorithm"], &s["parts"]), (&Value::from("crc64nvme"), &Value::from(5)), "{s}");
    // s3s-fs echoes no checksum on parts: each also goes with Content-MD5, and its ETag is compared with its MD5.
    assert_eq!(s["checksum_confirmed"], false, "{s}");
    assert!(store.get("flex.raw") == d);
    let reqs = rec.received();
    let create = reqs.iter().find(|r| r.method == "POST" && r.param("uploads").is_some()).expect("Create");
    assert_eq!(create.header("x-amz-checksum-algorithm"), Some("CRC64NVME"));
    assert_eq!(create.header("x-amz-checksum-type"), Some("FULL_OBJECT"));
    let parts: Vec<&Received> = reqs.iter().filter(|r| r.method == "PUT" && part_number(r).is_some()).collect();
    assert_eq!(parts.len(), 5, "one request per part, none retried");
    let mut part_sums = std::collections::BTreeMap::new();
    for p in &parts {
        let n = part_number(p).expect("part number");
        assert!(p.header("content-md5").is_some(), "part {n} without Content-MD5 to a store that echoes nothing");
        let sum = p.header("x-amz-checksum-crc64nvme").expect("part checksum").to_string();
        let bytes = &d[(n - 1) * part..(n * part).min(d.len())];
        s3s_takes(&store, Algorithm::Crc64nvme, bytes, &sum).unwrap_or_else(|e| panic!("part {n}: {e}"));
        part_sums.insert(n, sum);
    }
    let complete = reqs.iter().find(|r| r.method == "POST" && r.param("uploadId").is_some()).expect("Complete");
    let whole = complete.header("x-amz-checksum-crc64nvme").expect("the object's checksum");
    assert_eq!((Some(whole), complete.header("x-amz-checksum-type")), (s["checksum"].as_str(), Some("FULL_OBJECT")));
    s3s_takes(&store, Algorithm::Crc64nvme, &d, whole).expect("the object's checksum");
    let xml = String::from_utf8_lossy(&complete.body).to_string();
    for (n, sum) in &part_sums {
        let el = format!("<PartNumber>{n}</PartNumber><ETag>");
        assert!(xml.contains(&el) && xml.contains(&format!("<ChecksumCRC64NVME>{sum}</ChecksumCRC64NVME>")), "{xml}");
    }
    // The oracle refuses a wrong value.
    let mut wrong = whole.as_bytes().to_vec();
    wrong[0] = if wrong[0] == b'A' { b'B' } else { b'A' };
    let refused = s3s_takes(&store, Algorithm::Crc64nvme, &d, std::str::from_utf8(&wrong).expect("ascii"));
    assert!(refused.as_ref().is_err_and(|e| e.contains("BadDigest")), "{refused:?}");

    // CRC-32C on a single PUT, which s3s-fs checks and echoes.
    rec.clear();
    let (small, sd) = write_source(dir.path(), "small", 3 << 20, 22);
    let out = store
        .command(&["upload", "--json", small.to_str().expect("utf-8"), &store.url("small.raw"), "--checksum", "crc32c"])
        .env("AWS_ENDPOINT_URL", &rec.url)
        .output()
        .expect("upload");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!((&s["checksum_algorithm"], &s["checksum_confirmed"]), (&Value::from("crc32c"), &Value::from(true)));
    let put = rec.received().into_iter().find(|r| r.method == "PUT").expect("PutObject");
    let sum = put.header("x-amz-checksum-crc32c").expect("CRC-32C header");
    assert_eq!(Some(sum), s["checksum"].as_str());
    s3s_takes(&store, Algorithm::Crc32c, &sd, sum).expect("the object's CRC-32C");
    assert!(store.get("small.raw") == sd);
}

/// A store older than flexible checksums refuses their headers (400 InvalidArgument naming the header at Create,
/// as Backblaze B2 did; 501 NotImplemented on the parts, as R2 did for CRC64NVME): `auto` starts again with
/// Content-MD5 and says so; `--checksum crc64nvme` fails with what to do.
#[test]
fn s3_refused_flexible_checksums_fall_back_to_content_md5() {
    let store = s3();
    let rec = Recorder::start(addr_of(&store.endpoint));
    let dir = tempfile::tempdir().expect("tempdir");
    let (src, d) = write_source(dir.path(), "src", (12 << 20) + 7, 31);
    let refusals = [
        Refusal {
            header: "x-amz-checksum-".into(),
            status: 400,
            code: "InvalidArgument".into(),
            message: "Unsupported header 'x-amz-checksum-algorithm' received for this API call.".into(),
        },
        Refusal {
            header: "x-amz-checksum-crc64nvme".into(),
            status: 501,
            code: "NotImplemented".into(),
            message: "Header 'x-amz-checksum-crc64nvme' with value 'xyz' not implemented".into(),
        },
    ];
    for (i, refusal) in refusals.into_iter().enumerate() {
        rec.refuse(Some(refusal.clone()));
        rec.clear();
        let key = format!("refused-{i}.raw");
        let out = store
            .command(&["upload", "--json", src.to_str().expect("utf-8"), &store.url(&key), "--part-size", "5M"])
            .env("AWS_ENDPOINT_URL", &rec.url)
            .output()
            .expect("upload");
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.contains("does not take crc64nvme checksums") && stderr.contains("Content-MD5"), "{stderr}");
        let s: Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(s["checksum_algorithm"], "md5", "{s}");
        assert!(store.get(&key) == d);
        let reqs = rec.received();
        let sent: Vec<&Received> = reqs
            .iter()
            .filter(|r| part_number(r).is_some() && !r.headers.iter().any(|(k, _)| k.starts_with("x-amz-checksum")))
            .collect();
        assert_eq!(sent.len(), 3, "{:?}", reqs.iter().map(|r| &r.target).collect::<Vec<_>>());
        assert!(sent.iter().all(|r| r.header("content-md5").is_some()), "a part without Content-MD5");
        let creates = reqs.iter().filter(|r| r.method == "POST" && r.param("uploads").is_some()).count();
        // Refused at Create: created again without the checksum. Refused on the parts: that upload is aborted.
        assert_eq!(creates, 2, "{refusal:?}");
        let aborted = reqs.iter().any(|r| r.method == "DELETE" && r.param("uploadId").is_some());
        assert_eq!(aborted, i == 1, "{refusal:?}");
    }

    // A single PUT falls back too; an explicit choice does not.
    let (small, sd) = write_source(dir.path(), "small", 1 << 20, 32);
    let s = {
        let out = store
            .command(&["upload", "--json", small.to_str().expect("utf-8"), &store.url("small.raw")])
            .env("AWS_ENDPOINT_URL", &rec.url)
            .output()
            .expect("upload");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).expect("json")
    };
    assert_eq!(s["checksum_algorithm"], "md5", "{s}");
    assert!(store.get("small.raw") == sd);
    let out = store
        .command(&["upload", src.to_str().expect("utf-8"), &store.url("explicit.raw"), "--checksum", "crc64nvme"])
        .env("AWS_ENDPOINT_URL", &rec.url)
        .output()
        .expect("upload");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("NotImplemented") && stderr.contains("--checksum md5"),
        "{stderr}"
    );
}

/// Parts of the requests `rec` logged, and how many of them went without Content-MD5.
fn parts_without_md5(rec: &Recorder) -> (usize, usize) {
    let reqs = rec.received();
    let parts: Vec<&Received> = reqs.iter().filter(|r| r.method == "PUT" && part_number(r).is_some()).collect();
    (parts.len(), parts.iter().filter(|r| r.header("content-md5").is_none()).count())
}

/// A store that echoes flexible checksums, as S3 does (the proxy adds the echo to s3s-fs's answers): once the
/// first parts are echoed, the hasher stops, and the parts it had not reached go without Content-MD5. A part the
/// store then does not echo gets its MD5 taken on its own and compared with its ETag; a wrong echo has the part
/// sent again.
#[test]
fn s3_echoed_checksums_replace_md5_and_are_checked() {
    let store = s3();
    let rec = Recorder::start(addr_of(&store.endpoint));
    let dir = tempfile::tempdir().expect("tempdir");
    // 24 parts, 2 in flight: the hasher's groups are parts 1-2 (the first wave), 3-18, then 19-24, which it
    // starts only once part 3 is taken, after the first answer.
    let (src, d) = write_source(dir.path(), "src", 23 * (5 << 20) + 99, 41);
    let upload = |key: &str| -> Value {
        let args = ["upload", "--json", src.to_str().expect("utf-8"), &store.url(key), "--part-size", "5M"];
        let out = store
            .command(&[&args[..], &["--concurrency", "2"]].concat())
            .env("AWS_ENDPOINT_URL", &rec.url)
            .output()
            .expect("upload");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(store.get(key) == d);
        serde_json::from_slice(&out.stdout).expect("json")
    };

    rec.echo(Echo { count: usize::MAX, wrong_first: false });
    let s = upload("echoed.raw");
    assert_eq!((&s["checksum_confirmed"], &s["retries"]), (&Value::from(true), &Value::from(0)), "{s}");
    // Parts 19-24 were never hashed: no MD5 taken, none sent.
    assert_eq!(parts_without_md5(&rec), (24, 6));

    rec.clear();
    rec.echo(Echo { count: 2, wrong_first: false });
    let s = upload("echoed-then-not.raw");
    assert_eq!(s["checksum_confirmed"], true, "{s}");
    // Six parts neither echoed nor sent with Content-MD5: each was checked by its MD5 against its ETag.
    assert_eq!(parts_without_md5(&rec), (24, 6));

    rec.clear();
    rec.echo(Echo { count: usize::MAX, wrong_first: true });
    let s = upload("wrong-echo.raw");
    assert_eq!(s["retries"], 1, "{s}");
    assert_eq!(parts_without_md5(&rec).0, 25, "the part with the wrong echo is sent twice");
}

/// A hostile store cannot make the client read without bound: an answer over its bound is an error (never read
/// whole), and a ListParts whose pages do not move forward stops instead of looping.
#[test]
fn hostile_store_answers_are_bounded() {
    use imgport_test_support::responder::{Reply, Server};
    let huge = Server::start(|_| Reply::ok("x".repeat(17 << 20)));
    let creds = Credentials::new("AK", "SK");
    let client = common::store_client(&huge.url, Flavor::S3, "us-east-1", BUCKET, &creds);
    let err = rt().block_on(client.list_parts("k", "u")).expect_err("a 17 MiB listing");
    assert!(err.to_string().contains("over the 16777216 expected"), "{err}");

    let page = "<ListPartsResult><IsTruncated>true</IsTruncated><NextPartNumberMarker>5</NextPartNumberMarker>\
                <Part><PartNumber>1</PartNumber><Size>5</Size><ETag>\"e\"</ETag></Part></ListPartsResult>";
    let circling = Server::start(move |_| Reply::ok(page));
    let client = common::store_client(&circling.url, Flavor::S3, "us-east-1", BUCKET, &creds);
    let err = rt().block_on(client.list_parts("k", "u")).expect_err("pages that do not move");
    assert!(err.to_string().contains("without a next part number after 5"), "{err}");
    assert_eq!(circling.count(), 2, "one page, then the same marker again");
}
