//! Helpers of the end-to-end tests: run the imgport binary, build the guest test images, read validate reports,
//! bound runs. What the crates' tests share too (peers, fixtures, the PRNG) comes from imgport-test-support and is
//! re-exported here.
#![allow(dead_code)]

pub use imgport_test_support::images::*;
pub use imgport_test_support::peers::*;
pub use imgport_test_support::Rng;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The imgport binary under test.
pub fn imgport() -> Command {
    Command::new(env!("CARGO_BIN_EXE_imgport"))
}

/// Run imgport with `args`; return the output whatever the exit status.
pub fn run_imgport(args: &[&str]) -> Output {
    imgport().args(args).output().expect("cannot run imgport")
}

/// Run imgport and insist on exit status 0.
pub fn imgport_ok(args: &[&str]) -> String {
    let out = run_imgport(args);
    assert!(
        out.status.success(),
        "imgport {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn p(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// The imgport JSON output of `args` parsed.
pub fn imgport_json(args: &[&str]) -> serde_json::Value {
    let out = imgport_ok(args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("imgport {args:?} printed invalid JSON ({e}):\n{out}"))
}

// ---- guest ---------------------------------------------------------------------------------------------------------
// Helpers for the guest inspection tests: the realistic images of scripts/build-test-images.sh, and the real tools
// (blkid, sfdisk) whose answers the inspection must match.

/// Build the guest test images (into the target folder; again only when the script changed) and return their folder.
pub fn guest_images() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        for tool in [
            "sfdisk",
            "sgdisk",
            "mkfs.ext4",
            "mkfs.xfs",
            "mkfs.fat",
            "mkswap",
            "mmd",
            "mcopy",
            "cpio",
            "xz",
            "zstd",
            "lz4",
            "debugfs",
            "rpm",
            "rpmbuild",
            "hivexsh",
            "mkntfs",
            "wimlib-imagex",
            "mkfs.btrfs",
            "cryptsetup",
            "python3",
        ] {
            require(tool);
        }
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("guest-images");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-test-images.sh");
        // Test processes started together (a loop hunting a flaky test) build the images one at a time.
        let lock = std::fs::File::create(dir.with_extension("lock")).expect("image build lock");
        lock.lock().expect("lock the image build");
        // Built already by this very script and its helper (an earlier test process): reused, not rewritten under
        // a reader.
        let mut text = std::fs::read(&script).expect("read build-test-images.sh");
        text.extend(std::fs::read(script.with_file_name("lvm-vg.py")).expect("read lvm-vg.py"));
        let built_by = dir.join(".built-by");
        if std::fs::read(&built_by).is_ok_and(|b| b == text) {
            return dir;
        }
        let _ = std::fs::remove_file(&built_by);
        let out = Command::new("bash").arg(&script).arg(&dir).output().expect("cannot run build-test-images.sh");
        assert!(
            out.status.success(),
            "build-test-images.sh failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(&built_by, &text).expect("record the image build");
        dir
    })
}

/// The KEY=value facts a test image was built with.
pub fn guest_env(name: &str) -> std::collections::HashMap<String, String> {
    let text = std::fs::read_to_string(guest_images().join(format!("{name}.env"))).expect("image facts");
    text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// `blkid -p -o export` of the byte range `[offset, offset + size)` of a disk image.
pub fn blkid_range(path: &Path, offset: u64, size: u64) -> std::collections::HashMap<String, String> {
    require("blkid");
    let out = Command::new("blkid")
        .args(["-p", "-o", "export", "-O", &offset.to_string(), "-S", &size.to_string()])
        .arg(path)
        .output()
        .expect("cannot run blkid");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `sfdisk --json` of a disk image, parsed (its "partitiontable" object).
pub fn sfdisk_json(path: &Path) -> serde_json::Value {
    require("sfdisk");
    let out = Command::new("sfdisk").arg("--json").arg(path).output().expect("cannot run sfdisk");
    assert!(out.status.success(), "sfdisk --json {} failed: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("sfdisk printed invalid JSON");
    v["partitiontable"].clone()
}

/// Run imgport, insist it did not panic (exit 101) or die by a signal; return (exit code, stdout, stderr).
pub fn imgport_no_panic(args: &[&str]) -> (i32, String, String) {
    let out = run_imgport(args);
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    let code = out.status.code();
    assert!(code.is_some() && code != Some(101), "imgport {args:?} crashed ({}):\n{stdout}\n{stderr}", out.status);
    (code.unwrap_or(-1), stdout, stderr)
}

// ---- validate -------------------------------------------------------------------------------------------------------
// Helpers for `imgport validate`: run it with --json and read the findings.

/// `imgport validate --json ARGS...`: (exit code, parsed report). Insists it did not crash and printed JSON.
pub fn validate_json(args: &[&str]) -> (i32, serde_json::Value) {
    let mut all = vec!["validate", "--json"];
    all.extend_from_slice(args);
    let (code, out, err) = imgport_no_panic(&all);
    let v = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("imgport {all:?} printed invalid JSON ({e}):\n{out}\n{err}"));
    (code, v)
}

/// The failed findings of a report as "id:severity", sorted; `min` "warning" leaves out notes.
pub fn failures(report: &serde_json::Value, min: &str) -> Vec<String> {
    let rank = |s: &str| ["info", "warning", "error"].iter().position(|x| *x == s).unwrap_or(0);
    let mut out: Vec<String> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["status"] == "fail" && rank(f["severity"].as_str().unwrap()) >= rank(min))
        .map(|f| format!("{}:{}", f["id"].as_str().unwrap(), f["severity"].as_str().unwrap()))
        .collect();
    out.sort();
    out
}

/// The findings of one check.
pub fn findings_of<'a>(report: &'a serde_json::Value, id: &str) -> Vec<&'a serde_json::Value> {
    report["findings"].as_array().expect("findings").iter().filter(|f| f["id"] == id).collect()
}

// ---- bounded runs and damaged images (hostile-input tests) -----------------------------------------------------

/// Peak resident memory any imgport command may reach, whatever the input.
pub const RSS_BOUND_KIB: u64 = 256 * 1024;

/// What a bounded run of imgport returned.
pub struct BoundedRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// `inner` (program, arguments, environment) run under /usr/bin/time, which writes the peak RSS in KiB to `report`
/// (read it with [`peak_rss_kib`]). /usr/bin/time is installed by scripts/install-peers.sh. It forks the program
/// from its own small address space; wait4's figure for a direct child of a test process is no use, because Linux
/// carries the parent's high-water RSS across fork/vfork and exec, so it would count the test's own pages.
pub fn under_time(inner: &Command, report: &Path) -> Command {
    let time = Path::new("/usr/bin/time");
    assert!(time.exists(), "/usr/bin/time is missing: run scripts/install-peers.sh (Debian package `time`)");
    let mut cmd = Command::new(time);
    cmd.arg("-o").arg(report).args(["-f", "%M"]).arg(inner.get_program()).args(inner.get_args());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd
}

/// The peak RSS in KiB that /usr/bin/time wrote to `report` (see [`under_time`]).
pub fn peak_rss_kib(report: &Path) -> u64 {
    let text = std::fs::read_to_string(report).unwrap_or_default();
    text.lines().last().and_then(|l| l.trim().parse().ok()).expect("/usr/bin/time wrote no peak RSS")
}

/// Run imgport with a deadline. Fails on a signal, a hang, or a peak RSS over [`RSS_BOUND_KIB`] (measured by
/// [`under_time`]).
pub fn run_bounded(args: &[&str], time_bound: std::time::Duration) -> BoundedRun {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    let report = tempfile::NamedTempFile::new().expect("temporary file for /usr/bin/time");
    let mut inner = imgport();
    inner.args(args);
    let mut child = under_time(&inner, report.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a hang is killed with everything it started.
        .process_group(0)
        .spawn()
        .expect("spawn /usr/bin/time imgport");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    // Keep the first 64 MiB of stdout (more than any assertion needs) and drain the rest, so a command whose
    // output is legitimately large (the map of a huge image) does not weigh on the test process.
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = (&mut out).take(64 << 20).read_to_end(&mut s);
        let _ = std::io::copy(&mut out, &mut std::io::sink());
        String::from_utf8_lossy(&s).into_owned()
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for imgport") {
            break status;
        }
        if start.elapsed() > time_bound {
            // SAFETY: signalling the process group we created above.
            unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
            let _ = child.wait();
            panic!("imgport {args:?} hung for more than {time_bound:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    let report_text = std::fs::read_to_string(report.path()).unwrap_or_default();
    assert!(!report_text.contains("terminated by signal"), "imgport {args:?}: {report_text}: {stderr}");
    let peak_kib = peak_rss_kib(report.path());
    assert!(peak_kib < RSS_BOUND_KIB, "imgport {args:?} peaked at {} MiB of RSS", peak_kib / 1024);
    BoundedRun { code: status.code().expect("/usr/bin/time exits normally"), stdout, stderr }
}

/// A disk image with bytes overwritten in memory, so tests can damage metadata without copying files.
pub struct Patched {
    pub inner: Box<dyn imgport_disk::DiskImage>,
    pub patches: Vec<(u64, u8)>,
}

impl imgport_disk::DiskImage for Patched {
    fn virtual_size(&self) -> u64 {
        self.inner.virtual_size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> imgport_disk::Result<()> {
        self.inner.read_at(buf, offset)?;
        for &(at, byte) in &self.patches {
            if at >= offset && at < offset + buf.len() as u64 {
                buf[(at - offset) as usize] = byte;
            }
        }
        Ok(())
    }
    fn map(&self, offset: u64, length: u64) -> imgport_disk::Result<Vec<imgport_disk::Extent>> {
        self.inner.map(offset, length)
    }
    fn details(&self) -> imgport_disk::ImageDetails {
        self.inner.details()
    }
    fn check(&self) -> imgport_disk::Result<imgport_disk::CheckReport> {
        self.inner.check()
    }
}

/// A client of an object store (the local cloud or s3s-fs) for checking what an upload stored.
pub fn store_client(
    endpoint: &str,
    flavor: imgport_storage::Flavor,
    region: &str,
    bucket: &str,
    creds: &imgport_auth::Credentials,
) -> imgport_storage::Client {
    use imgport_auth::endpoints::{BucketStyle, Endpoint};
    let endpoint = Endpoint::parse(endpoint).expect("endpoint");
    imgport_storage::Client::new(imgport_storage::StoreConfig {
        flavor,
        style: BucketStyle::default_for(&endpoint),
        endpoint,
        region: region.to_string(),
        bucket: bucket.into(),
        credentials: std::sync::Arc::new(imgport_auth::provider::Static::new(creds.clone(), "test")),
    })
    .expect("client")
}

/// Checks each document against `docs/schemas/SCHEMA` with Python's `jsonschema` (Draft 2020-12): the schema
/// kept in the repository is the contract, so a field the code adds or renames without it fails here.
pub fn check_schema(schema: &str, docs: &[serde_json::Value]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/schemas").join(schema);
    let script = "import json, sys, jsonschema\n\
                  schema = json.load(open(sys.argv[1]))\n\
                  jsonschema.Draft202012Validator.check_schema(schema)\n\
                  v = jsonschema.Draft202012Validator(schema)\n\
                  for n, doc in enumerate(json.load(sys.stdin)):\n\
                  \x20   for e in v.iter_errors(doc):\n\
                  \x20       sys.exit(f'document {n}: {e.message} at {list(e.absolute_path)}: {json.dumps(doc)[:2000]}')\n";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .arg(&path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let input = serde_json::to_vec(docs).expect("JSON");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), &input).expect("write");
    let out = child.wait_with_output().expect("python3 ends");
    assert!(out.status.success(), "{schema}: {}", String::from_utf8_lossy(&out.stderr));
}

// ---- a served emulator -----------------------------------------------------------------------------------------

/// The key pair [`Served`] accepts: `--cloud alibaba` runs reach it through the usual environment variables.
pub const SERVE_AK: &str = "LTAI5tImportSdkCheck1";
pub const SERVE_SK: &str = "import-sdk-check-secret-NOT-LOGGED";

/// `imgport emulator serve` on a random port (cn-hangzhou and cn-shanghai, the import role seeded), stopped
/// (SIGINT) when dropped.
pub struct Served {
    child: std::process::Child,
    info: serde_json::Value,
}

impl Served {
    pub fn start(data: &Path) -> Served {
        Served::start_with(data, &["--import-seconds", "0.5"])
    }

    /// With more `emulator serve` arguments (`--import-seconds`, `--config`).
    pub fn start_with(data: &Path, extra: &[&str]) -> Served {
        let mut child = imgport()
            .args(["emulator", "serve", "--listen", "127.0.0.1:0", "--json", "--quiet", "--seed-import-role"])
            .args(["--region", "cn-hangzhou", "--region", "cn-shanghai"])
            .args(extra)
            .args(["--access-key-id", SERVE_AK, "--access-key-secret", SERVE_SK, "--data"])
            .arg(data)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("imgport emulator serve starts");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).expect("first line");
        let info = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        Served { child, info }
    }

    pub fn endpoint(&self, name: &str) -> &str {
        self.info[name].as_str().unwrap_or_else(|| panic!("{name} in {}", self.info))
    }

    /// `imgport` with the environment of a `--cloud alibaba` run against this emulator: its endpoints and keys,
    /// and `home` as HOME and the XDG folders.
    pub fn imgport(&self, home: &Path) -> Command {
        let mut c = imgport();
        c.env("IMGPORT_ECS_ENDPOINT", self.endpoint("ecs_endpoint"))
            .env("IMGPORT_RAM_ENDPOINT", self.endpoint("ram_endpoint"))
            .env("IMGPORT_STS_ENDPOINT", self.endpoint("sts_endpoint"))
            .env("IMGPORT_OSS_ENDPOINT", self.endpoint("oss_endpoint"))
            .env("ALIBABA_CLOUD_ACCESS_KEY_ID", SERVE_AK)
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SERVE_SK)
            .env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
            .env("HOME", home)
            .env("XDG_STATE_HOME", home.join("state"))
            .env("XDG_DATA_HOME", home.join("data"))
            .env_remove("ALIBABA_CLOUD_SECURITY_TOKEN")
            .env_remove("ALIBABA_CLOUD_PROFILE")
            .env_remove("ALIBABA_CLOUD_REGION_ID");
        c
    }

    /// A store client of `bucket` in cn-hangzhou (created).
    pub fn bucket(&self, bucket: &str) -> imgport_storage::Client {
        let creds = imgport_auth::Credentials::new(SERVE_AK, SERVE_SK);
        let store =
            store_client(self.endpoint("oss_endpoint"), imgport_storage::Flavor::OssV4, "cn-hangzhou", bucket, &creds);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(store.create_bucket()).expect("the bucket is created");
        store
    }

    /// The emulator's request log (`/_emulator/requests`): method, path, operation, status per request.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        use std::io::{Read, Write};
        let addr = self.info["listen"].as_str().expect("listen address");
        let secret = self.info["admin_secret"].as_str().expect("admin secret");
        let mut s = std::net::TcpStream::connect(addr).expect("connect to the emulator");
        write!(
            s,
            "GET /_emulator/requests HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {secret}\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut answer = String::new();
        s.read_to_string(&mut answer).expect("read the answer");
        let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
    }
}

/// Reads a child's `stderr` until `pattern` shows (at most a minute); answers what was read. Panics, with what was
/// read, when the stream ends first or the minute passes.
pub fn read_until(stderr: &mut impl std::io::Read, pattern: &str) -> String {
    use std::time::{Duration, Instant};
    let (mut seen, mut buf, deadline) = (String::new(), [0u8; 4096], Instant::now() + Duration::from_secs(60));
    while !seen.contains(pattern) {
        assert!(Instant::now() < deadline, "{pattern} never showed: {seen}");
        let n = stderr.read(&mut buf).expect("read stderr");
        assert!(n > 0, "ended before {pattern}: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    seen
}
