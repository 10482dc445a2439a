//! Pipelines run by many runners at once, their state in the bucket (`state = "oss://..."`): separate processes
//! with separate state folders against one `imgport emulator serve`, as runners on separate machines would be.
//! One uploads and imports, the others wait for its result and report the same images; a runner killed while it
//! holds the lease is taken over once the lease expires, and the run goes on from where it was.

use crate::common::*;
use serde_json::Value;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Stdio};

use std::time::{Duration, Instant};

const BUCKET: &str = "imgport-shared";

/// A pipeline importing `source` into cn-hangzhou and copying it to cn-shanghai, its state in the bucket.
fn pipeline(dir: &Path, name: &str, source: &Path, lease: &str) -> String {
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(
        &file,
        format!(
            "name = \"{name}\"\nregion = \"cn-hangzhou\"\nbucket = \"{BUCKET}\"\nstate = \"oss://{BUCKET}/state\"\n\
             lease = \"{lease}\"\n[source]\npath = {:?}\n[import]\nname = \"{name}-{{digest}}\"\n\
             [distribute]\ncopy_to = [\"cn-shanghai\"]\n",
            source.to_str().expect("utf-8")
        ),
    )
    .expect("write the pipeline");
    file.to_str().expect("utf-8").to_string()
}

/// A runner: `pipeline run FILE --json` in its own home (its own state folder), against `served`.
fn runner(served: &Served, home: &Path, file: &str, extra: &[&str]) -> Child {
    served
        .imgport(home)
        .args(["pipeline", "run", file, "--json"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("imgport starts")
}

fn finish(child: Child) -> (i32, Value, String) {
    let out = child.wait_with_output().expect("imgport ends");
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), json, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Images of `name` in `region`, in every status.
fn images_named(served: &Served, home: &Path, name: &str, region: &str) -> Vec<Value> {
    let out = served
        .imgport(home)
        .args(["images", "list", "--name", name, "--region", region, "--json"])
        .output()
        .expect("imgport runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list: Value = serde_json::from_slice(&out.stdout).expect("list JSON");
    list.as_array().cloned().unwrap_or_default()
}

/// Requests that started sending an object under `imgport/` (PutObject, InitiateMultipartUpload).
fn uploads_started(served: &Served) -> usize {
    served
        .requests()
        .iter()
        .filter(|r| matches!(r["operation"].as_str(), Some("PutObject" | "InitiateMultipartUpload")))
        .filter(|r| r["path"].as_str().is_some_and(|p| p.contains("/imgport/")))
        .count()
}

/// Six runners of one pipeline started at once: one lease holder uploads and imports, the other five wait for its
/// record and report the same images; one upload, one image per region.
#[test]
fn six_runners_make_one_upload_and_one_image_per_region() {
    let root = tempdir();
    let served = Served::start_with(&root.path().join("emulator"), &["--import-seconds", "2", "--copy-seconds", "1"]);
    served.bucket(BUCKET);
    let file = pipeline(root.path(), "six", &guest_images().join("mbr-bios-ext4.raw"), "6s");
    let homes: Vec<_> = (0..6).map(|_| tempdir()).collect();
    let children: Vec<Child> = homes.iter().map(|h| runner(&served, h.path(), &file, &[])).collect();
    let results: Vec<(i32, Value, String)> = children.into_iter().map(finish).collect();
    for (code, out, err) in &results {
        assert_eq!(*code, 0, "{out}\n{err}");
        check_schema("pipeline-result.schema.json", std::slice::from_ref(out));
    }
    let images: Vec<&Value> = results.iter().map(|(_, out, _)| &out["images"]).collect();
    assert!(images.iter().all(|i| *i == images[0]), "every runner reports the same images: {images:?}");
    assert!(images[0]["cn-hangzhou"].is_string() && images[0]["cn-shanghai"].is_string(), "{}", images[0]);
    let finished = results.iter().filter(|(_, out, _)| out["status"] == "finished").count();
    assert_eq!(finished, 1, "one runner ran, the others found its result: {results:?}");
    let waited = results.iter().filter(|(_, _, err)| err.contains("already running on")).count();
    assert!(waited >= 1, "runners waited for the lease holder: {results:?}");
    assert_eq!(uploads_started(&served), 1, "one upload");
    let name = results[0].1["image_name"].as_str().expect("image name");
    for region in ["cn-hangzhou", "cn-shanghai"] {
        assert_eq!(images_named(&served, root.path(), name, region).len(), 1, "one image in {region}");
    }

    // `--no-wait` while a holder works: exit 75, saying who holds it. A run of other content holds a lease of
    // its own; this runner then waits for nothing and finds the first run's result.
    let other = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::copy(guest_images().join("mbr-bios-ext4.raw"), other.path()).expect("copy");
    std::fs::OpenOptions::new()
        .append(true)
        .open(other.path())
        .and_then(|mut f| std::io::Write::write_all(&mut f, &[7u8; 512]))
        .expect("change the content");
    let busy_file = pipeline(root.path(), "busy", other.path(), "6s");
    let mut holder = runner(&served, homes[0].path(), &busy_file, &[]);
    let mut stderr = holder.stderr.take().expect("stderr");
    let seen = read_until(&mut stderr, r#""event":"step_started""#);
    let (code, out, err) = finish(runner(&served, homes[1].path(), &busy_file, &["--no-wait"]));
    assert_eq!(code, 75, "{out}\n{err}");
    assert!(err.contains("is already running on") && err.contains("--no-wait"), "{err}");
    assert_eq!(out["exit_code"], 75, "{out}");
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).expect("read");
    let (code, out, _) = finish(holder);
    assert_eq!((code, out["status"].as_str()), (0, Some("finished")), "{out}\n{seen}{rest}");
}

/// A runner killed (SIGKILL) while it holds the lease, waiting for its import: a second runner waits until the
/// lease expires, takes it over, and finishes the same import; no second upload, one image per region.
#[test]
fn a_killed_lease_holder_is_taken_over_once_its_lease_expires() {
    let root = tempdir();
    let served = Served::start_with(&root.path().join("emulator"), &["--import-seconds", "6", "--copy-seconds", "1"]);
    served.bucket(BUCKET);
    let file = pipeline(root.path(), "taken", &guest_images().join("mbr-bios-ext4.raw"), "3s");
    let (first_home, second_home) = (tempdir(), tempdir());
    let mut first = runner(&served, first_home.path(), &file, &[]);
    let mut stderr = first.stderr.take().expect("stderr");
    read_until(&mut stderr, r#""event":"step_done","step":"register""#);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(first.id() as i32, libc::SIGKILL) };
    assert_eq!(first.wait().expect("ends").code(), None, "killed");
    let killed_at = Instant::now();

    let (code, out, err) = finish(runner(&served, second_home.path(), &file, &[]));
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(out["status"], "finished", "{out}");
    assert!(err.contains("already running on"), "the live lease was waited for: {err}");
    assert!(killed_at.elapsed() >= Duration::from_secs(2), "not before the lease expired");
    assert_eq!(out["import"]["reused"], true, "the killed run's import was taken up: {out}");
    assert!(out["import"]["upload_summary"].is_null(), "nothing uploaded again: {out}");
    assert_eq!(uploads_started(&served), 1, "one upload");
    let name = out["image_name"].as_str().expect("image name");
    for region in ["cn-hangzhou", "cn-shanghai"] {
        assert_eq!(images_named(&served, root.path(), name, region).len(), 1, "one image in {region}");
    }
    // The record in the bucket says so: a third runner finds the run done.
    let (code, again, err) = finish(runner(&served, tempdir().path(), &file, &[]));
    assert_eq!((code, again["status"].as_str()), (0, Some("up_to_date")), "{again}\n{err}");
    assert_eq!(again["images"], out["images"]);
}

/// Twenty pipelines for twenty different images started at once, the emulator answering a fifth of its RPC calls
/// with `Throttling`: all finish (throttled calls are retried with backoff), and the ECS calls they made, per
/// operation and minute in the emulator's request log, stay within the budget docs/scaling.md states.
#[test]
fn twenty_pipelines_under_throttling_all_finish_within_the_rate_budget() {
    let root = tempdir();
    let config = root.path().join("emulator.toml");
    std::fs::write(&config, "[[faults.rules]]\noperation = \"rpc\"\nkind = \"slow_down\"\nrate = 0.2\n")
        .expect("config");
    let config = config.to_str().expect("utf-8");
    let served = Served::start_with(
        &root.path().join("emulator"),
        &["--import-seconds", "2", "--copy-seconds", "1", "--config", config],
    );
    served.bucket(BUCKET);
    let source = std::fs::read(guest_images().join("mbr-bios-ext4.raw")).expect("image");
    let files: Vec<String> = (0..20u8)
        .map(|n| {
            let image = root.path().join(format!("disk-{n}.raw"));
            let mut bytes = source.clone();
            bytes.extend(std::iter::repeat_n(n + 1, 1 << 20));
            std::fs::write(&image, bytes).expect("image copy");
            pipeline(root.path(), &format!("fleet-{n}"), &image, "2m")
        })
        .collect();
    let homes: Vec<_> = files.iter().map(|_| tempdir()).collect();
    let children: Vec<Child> = files.iter().zip(&homes).map(|(f, h)| runner(&served, h.path(), f, &[])).collect();
    let results: Vec<(i32, Value, String)> = children.into_iter().map(finish).collect();
    for (code, out, err) in &results {
        assert_eq!((*code, out["status"].as_str()), (0, Some("finished")), "{out}\n{err}");
    }
    let log = served.requests();
    let mut ops: std::collections::BTreeMap<String, usize> = Default::default();
    for r in &log {
        *ops.entry(format!("{} {}", r["operation"], r["fault"])).or_default() += 1;
    }
    eprintln!("requests: {ops:?}");
    let throttled =
        log.iter().filter(|r| r["fault"].as_str().is_some_and(|f| f.to_ascii_lowercase().contains("slow"))).count();
    assert!(throttled >= 20, "the fault was on: {throttled} throttled calls");
    // ECS calls per operation and minute.
    let mut per_minute: std::collections::BTreeMap<(String, u64), usize> = Default::default();
    for r in
        log.iter().filter(|r| r["path"] == "/" || r["operation"].as_str().is_some_and(|o| ECS_OPERATIONS.contains(&o)))
    {
        let op = r["operation"].as_str().unwrap_or("?").to_string();
        let minute = r["time_ms"].as_u64().unwrap_or(0) / 60_000;
        *per_minute.entry((op, minute)).or_default() += 1;
    }
    let busiest = per_minute.iter().max_by_key(|(_, n)| **n).map(|(k, n)| (k.0.clone(), *n));
    for ((op, _), n) in &per_minute {
        assert!(*n <= ECS_CALLS_PER_MINUTE, "{op}: {n} calls in a minute, over the budget; busiest {busiest:?}");
    }
}

/// The ECS operations an import and a pipeline call.
const ECS_OPERATIONS: [&str; 10] = [
    "DescribeImages",
    "DescribeTaskAttribute",
    "DescribeTasks",
    "ImportImage",
    "CopyImage",
    "ModifyImageAttribute",
    "ModifyImageSharePermission",
    "TagResources",
    "DescribeRegions",
    "ListTagResources",
];
/// docs/scaling.md: twenty pipelines at once stay under this many calls of one ECS operation per region and minute.
const ECS_CALLS_PER_MINUTE: usize = 600;
