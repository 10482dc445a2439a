//! `imgport import` into the built-in local cloud (`--cloud local`, each test with its own data folder): a real
//! guest image imported, validated, converted, waited for and reused on a rerun; a VMDK converted on the way,
//! copied and shared; each documented failure with its exit code (validation, a contradicting flag, a duplicate
//! name before any upload, CreateFailed with the task's reason, a timeout); and Ctrl-C during the wait cancelling
//! the import and removing what it created.

use crate::common::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `imgport ARGS --cloud local` with the local cloud's state in `home` and its settings from `config`.
fn import_cmd_raw(home: &Path, config: &str, args: &[&str]) -> Command {
    let cfg = home.join("local-cloud.toml");
    std::fs::write(&cfg, config).expect("config");
    let mut c = imgport();
    c.env("XDG_DATA_HOME", home.join("data"))
        .env("IMGPORT_LOCAL_CLOUD_CONFIG", &cfg)
        .env("HOME", home)
        .args(args)
        .args(["--cloud", "local"]);
    c
}

/// `imgport import ARGS --cloud local`.
fn import_cmd(home: &Path, config: &str, args: &[&str]) -> Command {
    let mut all = vec!["import"];
    all.extend_from_slice(args);
    import_cmd_raw(home, config, &all)
}

/// Fast imports; the local cloud's other defaults (the import role seeded) stay.
const FAST: &str = "[cloud]\nimport_seconds = 0.5\n";

/// Runs an import; with `--json`, its result document and every event line are checked against the schemas in
/// docs/schemas/.
fn run(home: &Path, config: &str, args: &[&str]) -> (i32, Value, String) {
    let out: Output = import_cmd(home, config, args).output().expect("imgport runs");
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if args.contains(&"--json") {
        assert!(json.is_object(), "one JSON document on stdout: {}\n{stderr}", String::from_utf8_lossy(&out.stdout));
        check_schema("import-result.schema.json", std::slice::from_ref(&json));
        let events: Vec<Value> = stderr
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("an event line that is not JSON ({e}): {l}")))
            .collect();
        assert!(!events.is_empty(), "events on stderr: {stderr}");
        check_schema("import-event.schema.json", &events);
    }
    (out.status.code().unwrap_or(-1), json, stderr)
}

/// Starts `cmd`, reads its stderr until `marker` shows, waits `delay`, sends SIGINT; answers the exit code, the
/// stderr before and after the signal, and how long the process took to end after it.
fn interrupt_at(mut cmd: Command, marker: &str, delay: Duration) -> (Option<i32>, String, String, Duration) {
    let mut child = cmd.stderr(Stdio::piped()).stdout(Stdio::null()).spawn().expect("imgport starts");
    let mut stderr = child.stderr.take().expect("stderr");
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buf = [0u8; 4096];
    while !seen.contains(marker) {
        assert!(Instant::now() < deadline, "never saw {marker:?}: {seen}");
        let n = std::io::Read::read(&mut stderr, &mut buf).expect("read stderr");
        assert!(n > 0, "imgport ended before {marker:?}: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    std::thread::sleep(delay);
    let signalled = Instant::now();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).expect("read stderr");
    let status = child.wait().expect("imgport ends");
    (status.code(), seen, rest, signalled.elapsed())
}

fn guest(name: &str) -> String {
    guest_images().join(format!("{name}.raw")).to_string_lossy().into_owned()
}

/// A copy of a guest image grown to `size` bytes (sparse) with `pieces` of 32 MiB of data spread evenly over the
/// rest of the disk: each piece a pseudo-random MiB repeated, stamped with its place so no two are alike.
fn sparse_guest(dir: &Path, name: &str, size: u64, pieces: u64) -> String {
    use std::io::{Seek, SeekFrom, Write};
    let path = dir.join(name);
    std::fs::copy(guest("mbr-bios-ext4"), &path).expect("copy the guest");
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).expect("open");
    let mut block: Vec<u8> = (0..1u64 << 20).map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8 | 1).collect();
    let (first, last) = (1u64 << 30, size - (32 << 20));
    for p in 0..pieces {
        let at = (first + (last - first) / pieces * p) & !((1 << 20) - 1);
        f.seek(SeekFrom::Start(at)).expect("seek");
        for m in 0..32u64 {
            block[..16].copy_from_slice(&[at.to_le_bytes(), m.to_le_bytes()].concat());
            f.write_all(&block).expect("write");
        }
    }
    f.set_len(size).expect("grow");
    path.to_string_lossy().into_owned()
}

/// Acceptance 10: a 1 TiB virtual disk holding 2 GiB of data validates, streams (as qcow2) and imports with no
/// more memory than a 4 GiB disk holding the same data, in time that follows the data: the digest, inspection and
/// conversion skip the holes, and the stream's parts are sized from the data, not from 1 TiB.
#[test]
fn a_1_tib_sparse_disk_imports_like_a_small_one() {
    let home = tempdir();
    let dir = tempdir();
    let mut measured = Vec::new();
    for (name, size) in [("small", 4u64 << 30), ("huge", 1 << 40)] {
        let image = sparse_guest(dir.path(), &format!("{name}.raw"), size, 64);
        let report = dir.path().join(format!("{name}.rss"));
        let cmd = import_cmd(home.path(), FAST, &[&image, "--name", name, "--json"]);
        let started = Instant::now();
        let out = under_time(&cmd, &report).output().expect("imgport runs");
        let took = started.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!((doc["status"].as_str(), doc["upload"].as_str()), (Some("Available"), Some("convert_to_qcow2")));
        let sent = doc["upload_summary"]["bytes"].as_u64().expect("bytes");
        assert!(sent < (2u64 << 30) + (64 << 20), "{name}: {sent} bytes sent for 2 GiB of data");
        assert_eq!(doc["parameters"]["disk_image_size"].as_u64(), Some(size >> 30), "{doc}");
        assert_eq!(doc["upload_summary"]["part_size"].as_u64(), Some(64 << 20), "{name}: parts sized from the data");
        std::fs::remove_file(&image).expect("remove");
        measured.push((peak_rss_kib(&report), took));
    }
    let [(small_kib, small_time), (huge_kib, huge_time)] = measured[..] else { unreachable!() };
    eprintln!("4 GiB: {small_kib} KiB, {small_time:?}; 1 TiB: {huge_kib} KiB, {huge_time:?}");
    assert!(huge_kib <= small_kib + small_kib / 4 + (32 << 10), "1 TiB: {huge_kib} KiB against {small_kib} KiB");
    assert!(huge_time <= small_time * 2 + Duration::from_secs(30), "1 TiB: {huge_time:?} against {small_time:?}");
}

#[test]
fn imports_a_guest_then_reuses_it() {
    let home = tempdir();
    let image = guest("mbr-bios-ext4");
    let (code, out, err) = run(home.path(), FAST, &[&image, "--name", "web-1", "--json", "--tag", "team=web"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out["status"], "Available", "{out}");
    assert_eq!(out["reused"], false);
    assert!(out["image_id"].as_str().is_some_and(|i| i.starts_with("m-")), "{out}");
    // The parameters come from the guest; a sparse raw file goes up as qcow2, and the object is removed after.
    let p = &out["parameters"];
    assert_eq!(
        (p["os_type"].as_str(), p["boot_mode"].as_str(), p["format"].as_str()),
        (Some("linux"), Some("BIOS"), Some("QCOW2"))
    );
    assert_eq!(p["platform"], "Debian", "{p}");
    assert_eq!(out["upload"], "convert_to_qcow2");
    assert_eq!(out["object_deleted"], true);
    let digest = imgport_ok(&["digest", "--json", &image]);
    let digest: Value = serde_json::from_str(&digest).expect("digest JSON");
    assert_eq!(out["digest"], digest["digest"], "the digest is the image's content digest");
    // Each step was timed, and the human lines went to stderr.
    let steps: Vec<&str> = out["steps"].as_array().expect("steps").iter().filter_map(|s| s["step"].as_str()).collect();
    assert_eq!(steps, ["validate", "preflight", "upload", "register", "wait", "cleanup"], "{out}");
    assert!(err.contains("is Available"), "{err}");

    // The same content under the same name: reported, not imported again.
    let (code, again, err) = run(home.path(), FAST, &[&image, "--name", "web-1", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!((again["reused"].as_bool(), again["image_id"].as_str()), (Some(true), out["image_id"].as_str()));
    assert!(again["upload_summary"].is_null(), "nothing was uploaded: {again}");

    // Other content under that name: refused in preflight, before any upload.
    let (code, failed, err) = run(home.path(), FAST, &[&guest("gpt-uefi-ext4"), "--name", "web-1", "--json"]);
    assert_eq!(code, 4, "{err}");
    assert!(failed["error"].as_str().is_some_and(|e| e.contains("already exists")), "{failed}");
    assert!(!err.contains("upload "), "no upload step ran: {err}");
}

#[test]
fn a_vmdk_is_converted_copied_and_shared() {
    let home = tempdir();
    let vmdk = home.path().join("web.vmdk");
    qemu_convert(Path::new(&guest("gpt-uefi-ext4")), &vmdk, "vmdk", "subformat=streamOptimized", &[]);
    let vmdk = vmdk.to_string_lossy().into_owned();
    let args =
        [vmdk.as_str(), "--name", "web-uefi", "--copy-to", "cn-shanghai", "--share-with", "123456789012", "--json"];
    let (code, out, err) = run(home.path(), FAST, &args);
    assert_eq!(code, 0, "{err}");
    assert_eq!((out["source_format"].as_str(), out["upload"].as_str()), (Some("vmdk"), Some("convert_to_qcow2")));
    assert_eq!(out["parameters"]["boot_mode"], "UEFI", "{out}");
    let copies = out["copies"].as_array().expect("copies");
    assert_eq!(copies.len(), 1, "{out}");
    assert_eq!((copies[0]["region"].as_str(), copies[0]["status"].as_str()), (Some("cn-shanghai"), Some("Available")));
    assert_eq!(out["shared_with"], serde_json::json!(["123456789012"]));
}

#[test]
fn failures_have_their_exit_codes() {
    let home = tempdir();
    let good = guest("mbr-bios-ext4");
    // Validation errors stop the import (3); --skip-validation is the explicit way past them.
    let (code, out, err) = run(home.path(), FAST, &[&guest("deb-bad-ext4"), "--name", "bad", "--json"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("chattr -i"), "the fix is shown: {err}");
    assert!(err.lines().any(|l| l.starts_with(r#"{"event":"finding","#)), "findings as events: {err}");
    let findings = out["findings"].as_array().map(|f| f.iter().filter_map(Value::as_str).collect::<Vec<_>>());
    assert!(findings.is_some_and(|f| f.iter().any(|f| f.contains("chattr -i"))), "{out}");
    // A flag the image contradicts (2).
    let (code, _, err) = run(home.path(), FAST, &[&good, "--name", "uefi", "--boot-mode", "UEFI"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("boots with BIOS only"), "{err}");
    // CreateFailed (6): reported with the task's reason.
    let failing = format!(
        "{FAST}[[faults.rules]]\noperation = \"ImportImage\"\nkind = \"create_failed\"\nreason = \"InvalidImage.Format: injected\"\n"
    );
    let (code, out, err) = run(home.path(), &failing, &[&good, "--name", "failing", "--json"]);
    assert_eq!(code, 6, "{err}");
    assert_eq!(out["code"], "InvalidImage.Format", "{out}");
    // A stall runs into --timeout (7); the import goes on, so the object is kept.
    let stalled = format!("{FAST}[[faults.rules]]\noperation = \"ImportImage\"\nkind = \"stall\"\n");
    let started = Instant::now();
    let (code, out, err) = run(home.path(), &stalled, &[&good, "--name", "stalled", "--timeout", "3s", "--json"]);
    assert_eq!(code, 7, "{err}");
    assert!(out["error"].as_str().is_some_and(|e| e.contains("images wait")), "{out}");
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn ctrl_c_during_the_wait_cancels_the_import() {
    let home = tempdir();
    let good = guest("mbr-bios-ext4");
    let stalled = format!("{FAST}[[faults.rules]]\noperation = \"ImportImage\"\nkind = \"stall\"\n");
    let cmd = import_cmd(home.path(), &stalled, &[&good, "--name", "cancelled"]);
    // Interrupted once the image is registered and waited for.
    let (code, seen, rest, _) = interrupt_at(cmd, "Creating", Duration::ZERO);
    assert_eq!(code, Some(130), "{seen}{rest}");
    assert!(rest.contains("cancelled task"), "{rest}");
    assert!(rest.contains("deleted oss://"), "{rest}");
    // The cancelled image is gone: the name imports afresh.
    let (code, out, err) = run(home.path(), FAST, &[&good, "--name", "cancelled", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out["reused"], false, "{out}");
}

/// `imgport images ... --cloud local` and `imgport instance ...` over what an import made: list and find, show,
/// tag, copy, share and unshare, deprecate and undeprecate, create from an instance, replace an instance's disk,
/// cancel, delete with snapshots.
#[test]
fn images_commands_follow_the_lifecycle() {
    let home = tempdir();
    let (code, out, err) = run(home.path(), FAST, &[&guest("mbr-bios-ext4"), "--name", "base", "--json"]);
    assert_eq!(code, 0, "{err}");
    let id = out["image_id"].as_str().expect("id").to_string();
    let images = |args: &[&str]| -> (i32, String, String) {
        let out = import_cmd_raw(home.path(), FAST, args).output().expect("imgport runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    };
    let json = |args: &[&str]| -> Value {
        let (code, out, err) = images(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    };
    // Find by name, id and snapshot id; the system catalogue by owner.
    let by_name = json(&["images", "list", "--name", "base", "--json"]);
    assert_eq!(by_name[0]["ImageId"], id.as_str(), "{by_name}");
    let snapshot = by_name[0]["DiskDeviceMappings"][0]["SnapshotId"].as_str().expect("snapshot").to_string();
    assert_eq!(json(&["images", "find", "--id", &id, "--json"])[0]["ImageName"], "base");
    assert_eq!(json(&["images", "list", "--snapshot-id", &snapshot, "--json"])[0]["ImageId"], id.as_str());
    let system = json(&["images", "list", "--owner", "system", "--json"]);
    assert!(system.as_array().is_some_and(|a| a.len() > 1 && a.iter().all(|i| i["ImageOwnerAlias"] == "system")));
    // Tag, share, deprecate (refused while shared), unshare, deprecate, undeprecate.
    assert_eq!(images(&["images", "tag", &id, "team=web"]).0, 0);
    assert_eq!(images(&["images", "share", &id, "--account", "123456789012"]).0, 0);
    let (code, _, err) = images(&["images", "deprecate", &id]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("imgport images unshare"), "the fix is named: {err}");
    assert_eq!(images(&["images", "unshare", &id, "--account", "123456789012"]).0, 0);
    assert_eq!(images(&["images", "deprecate", &id]).0, 0);
    assert_eq!(json(&["images", "show", &id, "--json"])["Status"], "Deprecated");
    assert_eq!(images(&["images", "undeprecate", &id]).0, 0);
    let shown = json(&["images", "show", &id, "--json"]);
    assert!(shown["Tags"].as_array().is_some_and(|t| t.iter().any(|t| t["TagKey"] == "team")), "{shown}");
    // Copy into another region, waited for there.
    let copies = json(&["images", "copy", &id, "--to", "cn-beijing", "--json"]);
    assert_eq!(copies[0]["Status"], "Available", "{copies}");
    let copy_id = copies[0]["ImageId"].as_str().expect("copy id").to_string();
    assert_eq!(json(&["images", "show", &copy_id, "--region", "cn-beijing", "--json"])["ImageName"], "base");
    // An image from a stopped instance, then that instance's disk replaced with the imported image.
    let instances = json(&["instance", "list", "--json"]);
    let stopped =
        instances.as_array().expect("instances").iter().find(|i| i["Status"] == "Stopped").expect("a stopped one");
    let instance = stopped["InstanceId"].as_str().expect("id").to_string();
    let created = json(&["images", "create", "--from-instance", &instance, "--name", "from-instance", "--json"]);
    assert_eq!(created["Status"], "Available", "{created}");
    let (code, out, err) = images(&["instance", "replace-disk", &instance, "--image", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("system disk"), "{out}");
    // The image now runs on an instance: delete needs --force; --with-snapshots removes its snapshot too.
    let (code, _, err) = images(&["images", "delete", &id]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("ImageUsingByInstance"), "{err}");
    let (code, out, err) = images(&["images", "delete", &id, "--force", "--with-snapshots"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("deleted snapshot {snapshot}")), "{out}{err}");
    let (code, _, err) = images(&["images", "show", &id]);
    assert_eq!(code, 1, "gone: {err}");
}

/// `imgport images cancel` stops an import still under way.
#[test]
fn images_cancel_stops_an_import() {
    let home = tempdir();
    let stalled = format!("{FAST}[[faults.rules]]\noperation = \"ImportImage\"\nkind = \"stall\"\n");
    let (code, out, err) =
        run(home.path(), &stalled, &[&guest("mbr-bios-ext4"), "--name", "slow", "--no-wait", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out["status"], "Waiting", "{out}");
    let id = out["image_id"].as_str().expect("id").to_string();
    let cancel = import_cmd_raw(home.path(), &stalled, &["images", "cancel", &id]).output().expect("runs");
    assert!(cancel.status.success(), "{}", String::from_utf8_lossy(&cancel.stderr));
    assert!(String::from_utf8_lossy(&cancel.stdout).contains("cancelled task"));
    let show = import_cmd_raw(home.path(), FAST, &["images", "show", &id]).output().expect("runs");
    assert_eq!(show.status.code(), Some(1), "the cancelled import left no image");
}

/// The README's main command: the demo image that ships with the repo imports into the local cloud and lists.
#[test]
fn the_readme_demo_imports() {
    let home = tempdir();
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/demo-debian12.qcow2");
    let (code, out, err) = run(home.path(), FAST, &[demo, "--name", "demo", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!((out["status"].as_str(), out["upload"].as_str()), (Some("Available"), Some("as_is")), "{out}");
    let list = import_cmd_raw(home.path(), FAST, &["images", "list"]).output().expect("runs");
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success() && text.contains("demo") && text.contains("Available"), "{text}");
}

/// What a bad request, a misbehaving cloud or an interruption must not do: a request ECS would refuse is refused
/// before anything is read (exit 2); an object at a chosen key is never overwritten; a failed task API does not
/// fail an import whose image is fine; an earlier failed import of the same content does not block a rerun; a
/// copy that failed is made by the rerun, which reuses the image; a partial failure prints one JSON document.
#[test]
fn imports_survive_bad_requests_and_a_misbehaving_cloud() {
    let home = tempdir();
    let good = guest("mbr-bios-ext4");
    for bad in [
        vec!["--name", "1abc"],
        vec!["--name", "ok-name", "--tag", "imgport:digest=x"],
        vec!["--name", "ok-name", "--key", "a/../b"],
        vec!["--name", "ok-name", "--no-wait", "--copy-to", "cn-shanghai"],
        vec!["--name", "ok-name", "--no-wait", "--family", "web"],
        vec!["--name", "ok-name", "--boot-mode", "banana"],
    ] {
        let mut args = vec![good.as_str()];
        args.extend(bad.iter().copied());
        let (code, _, err) = run(home.path(), FAST, &args);
        assert_eq!(code, 2, "{bad:?}: {err}");
        assert!(!err.contains("upload "), "{bad:?} stopped before the upload: {err}");
    }
    // An object at a chosen key is not overwritten.
    let (code, _, err) =
        run(home.path(), FAST, &[&good, "--name", "keep", "--key", "mine/disk.qcow2", "--keep-object"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) =
        run(home.path(), FAST, &[&guest("gpt-uefi-ext4"), "--name", "other", "--key", "mine/disk.qcow2"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("already exists"), "{err}");
    // The task API failing does not fail an import whose image becomes Available.
    let broken_tasks =
        format!("{FAST}[[faults.rules]]\noperation = \"DescribeTaskAttribute\"\nkind = \"internal_error\"\n");
    let (code, out, err) =
        run(home.path(), &broken_tasks, &[&guest("gpt-hybrid-ext4"), "--name", "tasks-down", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out["status"], "Available", "{out}");
    // A failed import, then a rerun of the same content: the failed image is cleared away and the import succeeds.
    let failing = format!("{FAST}[[faults.rules]]\noperation = \"ImportImage\"\nkind = \"create_failed\"\n");
    let (code, _, err) = run(home.path(), &failing, &[&guest("deb-xfs"), "--name", "retry"]);
    assert_eq!(code, 6, "{err}");
    let (code, out, err) = run(home.path(), FAST, &[&guest("deb-xfs"), "--name", "retry", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!((out["status"].as_str(), out["reused"].as_bool()), (Some("Available"), Some(false)), "{out}");
    // A copy that fails: exit 8 with one JSON document holding the outcome; the rerun reuses the image and copies.
    let copy_fails = format!("{FAST}[[faults.rules]]\noperation = \"CopyImage\"\nkind = \"create_failed\"\n");
    let (code, out, err) =
        run(home.path(), &copy_fails, &[&good, "--name", "spread", "--copy-to", "cn-shanghai", "--json"]);
    assert_eq!(code, 8, "{err}");
    assert_eq!(out["exit_code"], 8, "a single JSON document: {out}");
    assert_eq!(out["outcome"]["copies"][0]["status"], "failed", "{out}");
    let first = out["image_id"].as_str().expect("image id").to_string();
    let (code, out, err) = run(home.path(), FAST, &[&good, "--name", "spread", "--copy-to", "cn-shanghai", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!((out["reused"].as_bool(), out["image_id"].as_str()), (Some(true), Some(first.as_str())), "{out}");
    assert_eq!(out["copies"][0]["status"], "Available", "{out}");
}

/// Ctrl-C while copies are waited for cancels them (CancelCopyImage) and exits 130; the imported image stays.
#[test]
fn ctrl_c_during_the_copies_cancels_them() {
    let home = tempdir();
    let slow = "[cloud]\nimport_seconds = 0.5\ncopy_seconds = 60\n";
    let cmd = import_cmd(home.path(), slow, &[&guest("mbr-bios-ext4"), "--name", "copied", "--copy-to", "cn-beijing"]);
    let (code, seen, rest, took) = interrupt_at(cmd, "in cn-beijing", Duration::ZERO);
    assert_eq!(code, Some(130), "{seen}{rest}");
    assert!(took < Duration::from_secs(20), "it stopped promptly");
    assert!(rest.contains("cancelled the copy"), "{rest}");
    let list = import_cmd_raw(home.path(), slow, &["images", "list", "--region", "cn-beijing", "--json"])
        .output()
        .expect("runs");
    let copies: Value = serde_json::from_slice(&list.stdout).expect("JSON");
    assert_eq!(copies.as_array().map(Vec::len), Some(0), "the copy is gone: {copies}");
}

/// An import of content another run is still importing (here one that returned with --no-wait) waits for that
/// image instead of importing twice.
#[test]
fn a_second_import_of_the_same_content_waits_for_the_first() {
    let home = tempdir();
    let good = guest("mbr-bios-ext4");
    let slow = format!("{FAST}[[faults.rules]]\noperation = \"ImportImage\"\nkind = \"stall\"\nseconds = 4\n");
    let (code, first, err) = run(home.path(), &slow, &[&good, "--name", "once", "--no-wait", "--json"]);
    assert_eq!(code, 0, "{err}");
    let (code, second, err) = run(home.path(), FAST, &[&good, "--name", "once", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!((second["reused"].as_bool(), second["status"].as_str()), (Some(true), Some("Available")), "{second}");
    assert_eq!(second["image_id"], first["image_id"], "one image: {second}");
}

/// Ctrl-C during the upload stops it, removes what was sent (no --keep-object) and exits 130; the rerun imports.
#[test]
fn ctrl_c_during_the_upload_removes_the_parts() {
    let home = tempdir();
    let good = guest("mbr-bios-ext4");
    let slow = format!(
        "{FAST}[[faults.rules]]\noperation = \"PutObject\"\nkind = \"latency\"\nms = 4000\n\
         [[faults.rules]]\noperation = \"UploadPart\"\nkind = \"latency\"\nms = 4000\n"
    );
    let cmd = import_cmd(home.path(), &slow, &[&good, "--name", "stopped"]);
    let (code, seen, rest, _) = interrupt_at(cmd, "preflight", Duration::from_millis(500));
    assert_eq!(code, Some(130), "{seen}{rest}");
    assert!(rest.contains("aborted"), "{rest}");
    let (code, out, err) = run(home.path(), FAST, &[&good, "--name", "stopped", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out["status"], "Available", "{out}");
}

/// `--data-disk`: a system disk and a data disk (a qcow2 made by qemu-img) become one image with two disks; both
/// objects are removed after.
#[test]
fn data_disks_join_the_image() {
    let home = tempdir();
    let data = home.path().join("data.qcow2");
    let data = data.to_str().expect("utf-8").to_string();
    qemu_img(&["create", "-q", "-f", "qcow2", &data, "6G"]);
    let io = std::process::Command::new("qemu-io").args(["-c", "write -P 0x5a 0 8M", &data]).output().expect("qemu-io");
    assert!(io.status.success(), "{}", String::from_utf8_lossy(&io.stderr));
    let (code, out, err) =
        run(home.path(), FAST, &[&guest("mbr-bios-ext4"), "--data-disk", &data, "--name", "two", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out["data_keys"].as_array().map(Vec::len), Some(1), "{out}");
    assert_eq!(out["object_deleted"], true);
    let id = out["image_id"].as_str().expect("id");
    let shown = import_cmd_raw(home.path(), FAST, &["images", "show", id, "--json"]).output().expect("runs");
    let image: Value = serde_json::from_slice(&shown.stdout).expect("JSON");
    let disks = image["DiskDeviceMappings"].as_array().expect("disks");
    assert_eq!(disks.len(), 2, "{image}");
    assert_eq!((disks[1]["Type"].as_str(), disks[1]["Size"].as_u64()), (Some("data"), Some(6)), "{image}");
    // The content digest covers both disks: the same system disk alone is other content.
    let (code, alone, err) = run(home.path(), FAST, &[&guest("mbr-bios-ext4"), "--name", "one", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_ne!(alone["digest"], out["digest"]);
}

/// Each input format imports: fixed and dynamic VHD go up as they are (whole MiB sizes), VHDX and a sparse VMDK
/// are converted while uploading; no temporary file is written (TMPDIR and the image's folder stay as they were).
#[test]
fn every_input_format_imports_without_temporary_files() {
    let home = tempdir();
    let images = home.path().join("images");
    let tmp = home.path().join("tmp");
    std::fs::create_dir_all(&images).expect("dir");
    std::fs::create_dir_all(&tmp).expect("dir");
    let raw = guest("gpt-uefi-ext4");
    let cases = [
        ("fixed.vhd", "vpc", "subformat=fixed,force_size=on", "as_is"),
        ("dynamic.vhd", "vpc", "subformat=dynamic,force_size=on", "as_is"),
        ("disk.vhdx", "vhdx", "", "convert_to_qcow2"),
        ("sparse.vmdk", "vmdk", "subformat=monolithicSparse", "convert_to_qcow2"),
    ];
    for (name, fmt, opts, _) in cases {
        qemu_convert(Path::new(&raw), &images.join(name), fmt, opts, &[]);
    }
    let before: Vec<_> = std::fs::read_dir(&images).expect("list").flatten().map(|e| e.file_name()).collect();
    for (n, (name, _, _, upload)) in cases.iter().enumerate() {
        let path = images.join(name);
        let image_name = format!("fmt-{n}");
        let out = import_cmd(home.path(), FAST, &[path.to_str().expect("utf-8"), "--name", &image_name, "--json"])
            .env("TMPDIR", &tmp)
            .output()
            .expect("imgport runs");
        let json: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(
            (json["status"].as_str(), json["upload"].as_str()),
            (Some("Available"), Some(*upload)),
            "{name}: {json}"
        );
        assert_eq!(json["parameters"]["boot_mode"], "UEFI", "{name}: {json}");
    }
    let after: Vec<_> = std::fs::read_dir(&images).expect("list").flatten().map(|e| e.file_name()).collect();
    assert_eq!(before, after, "nothing was written beside the images");
    assert_eq!(std::fs::read_dir(&tmp).expect("list").count(), 0, "nothing was written to TMPDIR");
}
