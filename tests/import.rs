//! `imgport import` into the built-in local cloud (`--cloud local`, each test with its own data folder): a real
//! guest image imported, validated, converted, waited for and reused on a rerun; a VMDK converted on the way,
//! copied and shared; each documented failure with its exit code (validation, a contradicting flag, a duplicate
//! name before any upload, CreateFailed with the task's reason, a timeout); throttled and failing API calls
//! retried and a task that finishes before its image waited out; the import role missing or untrusted, and
//! `--create-role`; Ctrl-C and SIGTERM during the upload and the wait cancelling the import and removing what it
//! created, and kill -9 followed by a resumed upload; `images find` across pages; `--replace` swapping images only
//! once the new one is Available; `--keep-converted` writing the streamed qcow2 whole (also on a resumed upload and
//! a reuse) and leaving nothing on refusal or Ctrl-C. One test imports through `--cloud alibaba` into
//! `imgport emulator serve` and has the official Python SDK check what it made.

use crate::common::*;
use imgport_auth::endpoints::{Endpoint, Service};
use imgport_auth::provider::{system_clock, CredentialsProvider, Static};
use imgport_auth::rpc::{RpcClient, Style};
use imgport_cloud::ecs::{CreateRequest, ImageFilter};
use imgport_cloud::model::ImageStatus;
use imgport_emulator::{CloudSettings, Emulator, EmulatorConfig};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `imgport ARGS --cloud local` with the local cloud's state in `home` and its settings from `config`.
fn import_cmd_raw(home: &Path, config: &str, args: &[&str]) -> Command {
    let cfg = home.join("local-cloud.toml");
    std::fs::write(&cfg, config).expect("config");
    let mut c = imgport();
    c.env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_STATE_HOME", home.join("state"))
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

/// Starts `cmd`, reads its stderr until `marker` shows, waits `delay`, sends `signal`; answers the exit code (none
/// when the signal killed it), the stderr before and after the signal, and how long the process took to end after it.
fn interrupt_at(
    mut cmd: Command,
    marker: &str,
    delay: Duration,
    signal: libc::c_int,
) -> (Option<i32>, String, String, Duration) {
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
    unsafe { libc::kill(child.id() as i32, signal) };
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

    // --force imports it anew and swaps it in once Available: the name holds the new image, the old one is gone.
    let first = out["image_id"].as_str().expect("id");
    let (code, forced, err) = run(home.path(), FAST, &[&image, "--name", "web-1", "--force", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!((forced["reused"].as_bool(), forced["status"].as_str()), (Some(false), Some("Available")), "{forced}");
    assert_ne!(forced["image_id"].as_str(), Some(first), "{forced}");
    assert_eq!(
        (forced["replaced"]["image_id"].as_str(), forced["replaced"]["action"].as_str()),
        (Some(first), Some("deleted"))
    );
    let listed =
        import_cmd_raw(home.path(), FAST, &["images", "list", "--name", "web-1", "--json"]).output().expect("runs");
    let listed: Value = serde_json::from_slice(&listed.stdout).expect("JSON");
    let ids: Vec<&str> = listed.as_array().expect("list").iter().filter_map(|i| i["ImageId"].as_str()).collect();
    assert_eq!(ids, [forced["image_id"].as_str().expect("id")], "{listed}");
    // Forced again: a third image, not the second answered by an old ClientToken.
    let (code, again, err) = run(home.path(), FAST, &[&image, "--name", "web-1", "--force", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_ne!(again["image_id"], forced["image_id"], "{again}");

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
    // A copy region that holds another image under the name fails preflight (4), before any upload.
    let (code, _, err) = run(home.path(), FAST, &[&good, "--name", "taken", "--region", "cn-shanghai"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) =
        run(home.path(), FAST, &[&guest("gpt-uefi-ext4"), "--name", "taken", "--copy-to", "cn-shanghai"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("--copy-to cn-shanghai: an image named") && !err.contains("imgport: upload"), "{err}");
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
    let (code, seen, rest, _) = interrupt_at(cmd, "Creating", Duration::ZERO, libc::SIGINT);
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
    assert_eq!((copies[0]["status"].as_str(), copies[0]["reused"].as_bool()), (Some("Available"), Some(false)));
    let copy_id = copies[0]["image_id"].as_str().expect("copy id").to_string();
    let copied = json(&["images", "show", &copy_id, "--region", "cn-beijing", "--json"]);
    assert_eq!(copied["ImageName"], "base");
    assert!(copied["Tags"].as_array().is_some_and(|t| t.iter().any(|t| t["TagKey"] == "imgport:digest")), "{copied}");
    // Copying again finds the copy there (same name and content): no second copy.
    let again = json(&["images", "copy", &id, "--to", "cn-beijing", "--json"]);
    assert_eq!((again[0]["image_id"].as_str(), again[0]["reused"].as_bool()), (Some(copy_id.as_str()), Some(true)));
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
    let (code, seen, rest, took) = interrupt_at(cmd, "in cn-beijing", Duration::ZERO, libc::SIGINT);
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

/// Two imports of the same content and name started at once: one uploads and imports, the other waits for it
/// (neither fails on the upload the other holds), and there is one image.
#[test]
fn two_imports_started_together_make_one_image() {
    let home = tempdir();
    let good = guest("mbr-bios-ext4");
    // Both commands (and the config file they share) are made before either starts.
    let mut cmds: Vec<Command> =
        (0..2).map(|_| import_cmd(home.path(), FAST, &[&good, "--name", "twin", "--json"])).collect();
    let children: Vec<_> = cmds
        .iter_mut()
        .map(|c| c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("imgport starts"))
        .collect();
    let outs: Vec<Value> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().expect("imgport ends");
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            assert_eq!(out.status.code(), Some(0), "{err}");
            let v: Value = serde_json::from_slice(&out.stdout).expect("JSON outcome");
            assert_eq!(v["status"], "Available", "{v}\n{err}");
            v
        })
        .collect();
    assert_eq!(outs[0]["image_id"], outs[1]["image_id"], "one image: {outs:?}");
    let uploaded = outs.iter().filter(|o| !o["upload_summary"].is_null()).count();
    assert_eq!(uploaded, 1, "uploaded once: {outs:?}");
    assert!(outs.iter().any(|o| o["reused"] == true), "the other reused the first's image: {outs:?}");
    let list =
        import_cmd_raw(home.path(), FAST, &["images", "list", "--name", "twin", "--json"]).output().expect("runs");
    let list: Value = serde_json::from_slice(&list.stdout).expect("list JSON");
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
}

/// An object the bucket already holds with the same content (its digest in the object's metadata) is not sent
/// again: the image deleted, the rerun imports from the kept object.
#[test]
fn an_object_already_uploaded_is_not_sent_again() {
    let home = tempdir();
    let good = guest("mbr-bios-ext4");
    let args = [good.as_str(), "--name", "kept", "--keep-object", "--json"];
    let (code, first, err) = run(home.path(), FAST, &args);
    assert_eq!(code, 0, "{err}");
    assert!(!first["upload_summary"].is_null(), "{first}");
    let id = first["image_id"].as_str().expect("image id");
    let del = import_cmd_raw(home.path(), FAST, &["images", "delete", id]).output().expect("runs");
    assert!(del.status.success(), "{}", String::from_utf8_lossy(&del.stderr));
    let (code, again, err) = run(home.path(), FAST, &args);
    assert_eq!(code, 0, "{err}");
    assert_eq!((again["status"].as_str(), again["reused"].as_bool()), (Some("Available"), Some(false)), "{again}");
    assert_ne!(again["image_id"], first["image_id"]);
    assert!(again["upload_summary"].is_null(), "nothing was sent: {again}");
    assert!(err.contains("already uploaded"), "{err}");
    // A chosen key holding this content passes the preflight too (other content there is refused, above).
    let keyed = [good.as_str(), "--name", "keyed", "--key", first["key"].as_str().expect("key"), "--json"];
    let (code, out, err) = run(home.path(), FAST, &keyed);
    assert_eq!(code, 0, "{err}");
    assert!(out["upload_summary"].is_null() && out["status"] == "Available", "{out}");
}

/// The local cloud is served by the first process for the others: `images list` answers while an import runs,
/// and an import connected to another's local cloud carries on when that process ends first.
#[test]
fn commands_share_the_local_cloud_while_an_import_runs() {
    let home = tempdir();
    let slow = "[cloud]\nimport_seconds = 4\n";
    let mut first = import_cmd(home.path(), slow, &[&guest("mbr-bios-ext4"), "--name", "first", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("imgport starts");
    let mut stderr = first.stderr.take().expect("stderr");
    read_until(&mut stderr, r#""event":"step_done","step":"register""#);
    let list =
        import_cmd_raw(home.path(), slow, &["images", "list", "--name", "first", "--json"]).output().expect("runs");
    assert!(list.status.success(), "{}", String::from_utf8_lossy(&list.stderr));
    let list: Value = serde_json::from_slice(&list.stdout).expect("list JSON");
    assert_eq!(list[0]["ImageName"], "first", "{list}");
    assert_ne!(list[0]["Status"], "Available", "listed while the import was under way, not after it: {list}");
    // Where the first serves is in a file only the user reads, on loopback.
    let server = home.path().join("data/imgport/local-cloud/server.json");
    let mode =
        |p: &Path| std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).expect("metadata").permissions());
    assert_eq!((mode(&server) & 0o777, mode(server.parent().expect("dir")) & 0o777), (0o600, 0o700));
    let served: Value = serde_json::from_slice(&std::fs::read(&server).expect("server.json")).expect("JSON");
    assert!(served["address"].as_str().is_some_and(|a| a.starts_with("127.0.0.1:")), "{}", served["address"]);
    // A second import while the first is waited for; the first ends before it, and it still finishes.
    let (code, second, err) = run(home.path(), slow, &[&guest("gpt-uefi-ext4"), "--name", "second", "--json"]);
    let first_pid = first.id();
    let first = first.wait_with_output().expect("first ends");
    assert_eq!(first.status.code(), Some(0));
    assert_eq!(code, 0, "{err}");
    assert_eq!(second["status"], "Available", "{second}");
    let after: Value = serde_json::from_slice(&std::fs::read(&server).expect("server.json")).expect("JSON");
    assert_eq!(after["address"], served["address"], "the second served on the same address");
    assert_ne!(after["pid"], first_pid, "the second took over once the first ended");
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
    let (code, seen, rest, _) = interrupt_at(cmd, "preflight", Duration::from_millis(500), libc::SIGINT);
    assert_eq!(code, Some(130), "{seen}{rest}");
    assert!(rest.contains("aborted"), "{rest}");
    let (code, out, err) = run(home.path(), FAST, &[&good, "--name", "stopped", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out["status"], "Available", "{out}");
}

/// Ctrl-C during an upload with `--keep-converted`: exit 130, and neither PATH nor its temporary file is left.
#[test]
fn ctrl_c_leaves_no_kept_file() {
    let home = tempdir();
    let out = home.path().join("out");
    std::fs::create_dir_all(&out).expect("dir");
    let kept = out.join("kept.qcow2");
    let slow = format!("{FAST}[[faults.rules]]\noperation = \"UploadPart\"\nkind = \"latency\"\nms = 4000\n");
    let (good, kept_s) = (guest("mbr-bios-ext4"), kept.to_string_lossy());
    let args = [&good, "--name", "stopped", "--part-size", "128K", "--keep-converted", &kept_s];
    let (code, seen, rest, _) =
        interrupt_at(import_cmd(home.path(), &slow, &args), "preflight", Duration::from_millis(500), libc::SIGINT);
    assert_eq!(code, Some(130), "{seen}{rest}");
    let left: Vec<_> = std::fs::read_dir(&out).expect("list").flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
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

/// The regions the local cloud serves (src/commands/cloud.rs), the default one first.
const LOCAL_REGIONS: [&str; 4] = ["cn-hangzhou", "cn-shanghai", "cn-beijing", "ap-southeast-1"];

/// Clients of a local cloud run in the test's process, and a runtime to call them on.
struct LocalApis {
    ecs: imgport_cloud::Ecs,
    ram: RpcClient,
    rt: tokio::runtime::Runtime,
}

/// Runs the local cloud of `home` in this process with `settings`, on the state `imgport --cloud local` keeps
/// there, so that a test can set up through the API what imgport's commands do not make; `f` gets clients of its
/// ECS (cn-hangzhou) and RAM. No imgport process may use that local cloud meanwhile.
fn with_local_cloud<T>(home: &Path, settings: CloudSettings, f: impl FnOnce(&LocalApis) -> T) -> T {
    let mut cfg = EmulatorConfig::new(home.join("data/imgport/local-cloud")).cloud(settings);
    cfg.regions = LOCAL_REGIONS.iter().map(|r| r.to_string()).collect();
    let emu = Emulator::start(cfg).expect("the local cloud starts");
    let creds: Arc<dyn CredentialsProvider> = Arc::new(Static::new(emu.credentials.clone(), "local cloud"));
    let client = |service, version: &str, style| {
        let endpoint = Endpoint::parse(&emu.ecs_endpoint).expect("endpoint");
        RpcClient::new(service, version, endpoint, style, system_clock())
            .expect("client")
            .with_credentials(creds.clone())
    };
    let apis = LocalApis {
        ecs: imgport_cloud::Ecs::new(client(Service::Ecs, imgport_cloud::ecs::VERSION, Style::Acs3), LOCAL_REGIONS[0]),
        ram: client(Service::Ram, imgport_cloud::role::VERSION, Style::RpcV1),
        rt: tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime"),
    };
    let answer = f(&apis);
    drop(apis);
    emu.shutdown();
    answer
}

/// Throttling and server errors on the calls an import makes are retried, and a task that reports Finished before
/// its image is Available is waited out: DescribeImages throttled and ImportImage failing twice each (a third
/// attempt is the client's last), UploadPart throttled and failing at random, DescribeImages failing at random
/// during the wait, and the task finishing 3 s before its image. The import ends Available with one image.
#[test]
fn throttling_failures_and_an_early_task_are_waited_out() {
    let home = tempdir();
    let faults = format!(
        "{FAST}[faults]\nseed = 3\n\
         [[faults.rules]]\noperation = \"DescribeImages\"\nkind = \"slow_down\"\ntimes = 2\n\
         [[faults.rules]]\noperation = \"ImportImage\"\nkind = \"internal_error\"\ntimes = 2\n\
         [[faults.rules]]\noperation = \"UploadPart\"\nkind = \"slow_down\"\ntimes = 2\n\
         [[faults.rules]]\noperation = \"UploadPart\"\nkind = \"internal_error\"\nrate = 0.3\nafter = 2\n\
         [[faults.rules]]\noperation = \"DescribeImages\"\nkind = \"internal_error\"\nrate = 0.3\nafter = 3\n\
         [[faults.rules]]\noperation = \"ImportImage\"\nkind = \"task_finishes_early\"\nseconds = 3\n"
    );
    let args = [guest("mbr-bios-ext4"), "--name".into(), "retried".into(), "--part-size".into(), "128K".into()];
    let args: Vec<&str> = args.iter().map(String::as_str).chain(["--json"]).collect();
    let (code, out, err) = run(home.path(), &faults, &args);
    assert_eq!(code, 0, "{err}");
    assert_eq!((out["status"].as_str(), out["reused"].as_bool()), (Some("Available"), Some(false)), "{out}");
    let summary = &out["upload_summary"];
    assert!(summary["parts"].as_u64().is_some_and(|p| p > 4), "a multipart upload: {summary}");
    assert!(summary["retries"].as_u64().is_some_and(|r| r >= 2), "the refused parts were sent again: {summary}");
    // The task finished early: said so, and the wait went on until the image was Available, 3 s later.
    assert!(err.contains(r#"{"event":"wait","wait":{"event":"task_finished_early""#), "{err}");
    let wait = out["steps"].as_array().and_then(|s| s.iter().find(|s| s["step"] == "wait")).expect("wait step");
    assert!(wait["seconds"].as_f64().is_some_and(|s| s >= 3.0), "{wait}");
    // ImportImage was sent three times with one ClientToken: one image.
    let named = with_local_cloud(home.path(), CloudSettings::default(), |apis| {
        let filter = ImageFilter { image_name: Some("retried".into()), ..Default::default() };
        apis.rt.block_on(apis.ecs.images(&filter)).expect("DescribeImages")
    });
    let ids: Vec<&str> = named.iter().map(|i| i.image_id.as_str()).collect();
    assert_eq!(ids, [out["image_id"].as_str().expect("id")], "one image");
}

/// The import role: missing, the import stops in preflight (exit 4) before any upload, naming the fix;
/// `--create-role` creates it and the import succeeds. Once the role's trust policy no longer names ECS (rewritten
/// through RAM UpdateRole), the same: refused with the fix, repaired by `--create-role`.
#[test]
fn the_import_role_is_checked_and_created() {
    let home = tempdir();
    let no_role = format!("{FAST}seed_import_role = false\n");
    let image = guest("mbr-bios-ext4");
    let (code, out, err) = run(home.path(), &no_role, &[&image, "--name", "role-1", "--json"]);
    assert_eq!(code, 4, "{err}");
    let error = out["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("AliyunECSImageImportDefaultRole does not exist") && error.contains("--create-role"),
        "{out}"
    );
    assert!(!err.contains("upload "), "no upload step ran: {err}");
    let (code, out, err) = run(home.path(), &no_role, &[&image, "--name", "role-1", "--create-role", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out["status"], "Available", "{out}");
    assert!(err.contains("created the RAM role AliyunECSImageImportDefaultRole"), "{err}");

    // The role now trusts another service only.
    let untrusted = r#"{"Version":"1","Statement":[{"Action":"sts:AssumeRole","Effect":"Allow","Principal":{"Service":["oss.aliyuncs.com"]}}]}"#;
    with_local_cloud(home.path(), CloudSettings::default(), |apis| {
        let params = [("RoleName", "AliyunECSImageImportDefaultRole"), ("NewAssumeRolePolicyDocument", untrusted)];
        apis.rt.block_on(apis.ram.call::<Value>("UpdateRole", &params)).expect("UpdateRole");
    });
    let (code, out, err) = run(home.path(), &no_role, &[&image, "--name", "role-2", "--json"]);
    assert_eq!(code, 4, "{err}");
    let error = out["error"].as_str().unwrap_or_default();
    assert!(error.contains("does not trust ecs.aliyuncs.com") && error.contains("--create-role"), "{out}");
    assert!(!err.contains("upload "), "no upload step ran: {err}");
    let (code, out, err) = run(home.path(), &no_role, &[&image, "--name", "role-2", "--create-role", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out["status"], "Available", "{out}");
    assert!(err.contains("set the trust policy of AliyunECSImageImportDefaultRole"), "{err}");
}

/// SIGTERM (CI cancelling a job, systemd, Kubernetes) stops an import as Ctrl-C does, with exit code 143: during
/// the upload the multipart upload is aborted, during the wait the task is cancelled and the object deleted; the
/// rerun imports afresh.
#[test]
fn sigterm_during_the_upload_and_the_wait_cleans_up() {
    let home = tempdir();
    let good = guest("mbr-bios-ext4");
    let slow_upload = format!(
        "{FAST}[[faults.rules]]\noperation = \"PutObject\"\nkind = \"latency\"\nms = 4000\n\
         [[faults.rules]]\noperation = \"UploadPart\"\nkind = \"latency\"\nms = 4000\n"
    );
    let cmd = import_cmd(home.path(), &slow_upload, &[&good, "--name", "termed"]);
    let (code, seen, rest, took) = interrupt_at(cmd, "preflight", Duration::from_millis(500), libc::SIGTERM);
    assert_eq!(code, Some(143), "{seen}{rest}");
    assert!(rest.contains("aborted"), "{rest}");
    assert!(took < Duration::from_secs(20), "it stopped promptly");
    let stalled = format!("{FAST}[[faults.rules]]\noperation = \"ImportImage\"\nkind = \"stall\"\n");
    let cmd = import_cmd(home.path(), &stalled, &[&good, "--name", "termed"]);
    let (code, seen, rest, _) = interrupt_at(cmd, "Creating", Duration::ZERO, libc::SIGTERM);
    assert_eq!(code, Some(143), "{seen}{rest}");
    assert!(rest.contains("cancelled task") && rest.contains("deleted oss://"), "{rest}");
    // Nothing of either run is left: the name imports afresh, sending every part.
    let (code, out, err) = run(home.path(), FAST, &[&good, "--name", "termed", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!((out["status"].as_str(), out["reused"].as_bool()), (Some("Available"), Some(false)), "{out}");
    assert_eq!(out["upload_summary"]["resumed_parts"], 0, "{out}");
}

/// kill -9 in the middle of the upload leaves the parts sent so far and the resume state; the rerun resumes: it
/// finds those parts intact and sends only the rest.
#[test]
fn a_rerun_after_kill_9_resumes_the_upload() {
    let home = tempdir();
    let good = guest("mbr-bios-ext4");
    // Four parts go at once, the rest wait 4 s each.
    let slow =
        format!("{FAST}[[faults.rules]]\noperation = \"UploadPart\"\nkind = \"latency\"\nms = 4000\nafter = 4\n");
    let args = [&good, "--name", "resumed", "--part-size", "128K", "--concurrency", "2"];
    let cmd = import_cmd(home.path(), &slow, &args);
    let (code, seen, rest, _) = interrupt_at(cmd, "preflight", Duration::from_millis(1500), libc::SIGKILL);
    assert_eq!(code, None, "killed: {seen}{rest}");
    let mut args = args.to_vec();
    args.push("--json");
    let (code, out, err) = run(home.path(), FAST, &args);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out["status"], "Available", "{out}");
    let summary = &out["upload_summary"];
    let (parts, resumed, sent) =
        (summary["parts"].as_u64(), summary["resumed_parts"].as_u64(), summary["sent_parts"].as_u64());
    assert!(resumed.is_some_and(|r| r >= 4), "the parts sent before the kill were kept: {summary}");
    assert_eq!(sent.zip(resumed).map(|(s, r)| s + r), parts, "only the rest was sent: {summary}");
}

/// `--keep-converted PATH`: the VMDK's conversion is written to PATH as it streams into the upload. A run killed
/// mid-upload leaves nothing at PATH; the rerun resumes the upload (the stored parts are not sent again) and still
/// writes the whole file, which `qemu-img compare` finds equal to the source and `qemu-img check` clean. A third
/// run reuses the image (nothing uploaded) and writes the same bytes to another path by converting alone.
#[test]
fn keep_converted_writes_the_streamed_qcow2_also_on_resume_and_reuse() {
    let home = tempdir();
    let vmdk = home.path().join("web.vmdk");
    qemu_convert(Path::new(&guest("mbr-bios-ext4")), &vmdk, "vmdk", "subformat=streamOptimized", &[]);
    let (vmdk, kept, again) = (vmdk.to_string_lossy(), home.path().join("web.qcow2"), home.path().join("again.qcow2"));
    let kept_s = kept.to_string_lossy();
    let slow =
        format!("{FAST}[[faults.rules]]\noperation = \"UploadPart\"\nkind = \"latency\"\nms = 4000\nafter = 4\n");
    let args = [&vmdk, "--name", "kept", "--part-size", "128K", "--concurrency", "2", "--keep-converted", &kept_s];
    let cmd = import_cmd(home.path(), &slow, &args);
    let (code, seen, rest, _) = interrupt_at(cmd, "preflight", Duration::from_millis(1500), libc::SIGKILL);
    assert_eq!(code, None, "killed: {seen}{rest}");
    assert!(!kept.exists(), "nothing at PATH before the upload completed");
    let mut args = args.to_vec();
    args.push("--json");
    let (code, out, err) = run(home.path(), FAST, &args);
    assert_eq!(code, 0, "{err}");
    assert_eq!((out["status"].as_str(), out["upload"].as_str()), (Some("Available"), Some("convert_to_qcow2")));
    assert!(out["upload_summary"]["resumed_parts"].as_u64().is_some_and(|r| r >= 4), "resumed: {out}");
    let converting: Vec<Value> = err
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == "converting")
        .collect();
    let virtual_size = qemu_info(Path::new(vmdk.as_ref()), "vmdk")["virtual-size"].as_u64();
    assert!(!converting.is_empty() && converting.iter().all(|e| e["total"].as_u64() == virtual_size), "{err}");
    assert_qemu_identical(Path::new(vmdk.as_ref()), "vmdk", &kept, "qcow2");
    let (code, text) = qemu_img_status(&["check", "-f", "qcow2", &kept_s]);
    assert_eq!(code, 0, "qemu-img check: {text}");
    // Rerun: the image is reused, nothing is uploaded, the file is the same bytes.
    let again_s = again.to_string_lossy();
    let (code, out, err) = run(home.path(), FAST, &[&vmdk, "--name", "kept", "--keep-converted", &again_s, "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out["reused"], true, "{out}");
    assert!(std::fs::read(&kept).expect("kept") == std::fs::read(&again).expect("again"), "the same bytes");
}

/// `--keep-converted` when the bucket already holds the converted object (kept by an earlier run under the same
/// `--key`): nothing is uploaded, and the file is converted alone, equal to the source.
#[test]
fn keep_converted_when_the_object_is_already_there() {
    let home = tempdir();
    let vmdk = home.path().join("disk.vmdk");
    qemu_convert(Path::new(&guest("mbr-bios-ext4")), &vmdk, "vmdk", "subformat=monolithicSparse", &[]);
    let (vmdk, kept) = (vmdk.to_string_lossy(), home.path().join("kept.qcow2"));
    let (code, _, err) = run(home.path(), FAST, &[&vmdk, "--name", "first", "--key", "disk.qcow2", "--keep-object"]);
    assert_eq!(code, 0, "{err}");
    let args =
        [&vmdk, "--name", "second", "--key", "disk.qcow2", "--keep-converted", &kept.to_string_lossy(), "--json"];
    let (code, out, err) = run(home.path(), FAST, &args);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("already uploaded"), "nothing was uploaded: {err}");
    assert_eq!(out["status"], "Available", "{out}");
    assert_qemu_identical(Path::new(vmdk.as_ref()), "vmdk", &kept, "qcow2");
}

/// `--keep-converted` is refused (exit 2) before anything is uploaded when PATH exists (left as it was) and when
/// the image goes up as it is (a qcow2: nothing is converted, so nothing could be kept).
#[test]
fn keep_converted_is_refused_when_nothing_is_converted_or_the_file_exists() {
    let home = tempdir();
    let vmdk = home.path().join("disk.vmdk");
    qemu_convert(Path::new(&guest("mbr-bios-ext4")), &vmdk, "vmdk", "subformat=monolithicSparse", &[]);
    let existing = home.path().join("existing.qcow2");
    std::fs::write(&existing, b"mine").expect("write");
    let (vmdk, existing_s) = (vmdk.to_string_lossy(), existing.to_string_lossy());
    let args = [&vmdk, "--name", "refused", "--keep-converted", &existing_s, "--oss-internal"];
    let (code, _, err) = run(home.path(), FAST, &args);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--keep-converted") && err.contains("output exists"), "{err}");
    assert!(err.contains("--oss-internal is ignored with --cloud local"), "{err}");
    assert_eq!(std::fs::read(&existing).expect("read"), b"mine", "left as it was");
    let qcow2 = home.path().join("disk.qcow2");
    qemu_convert(Path::new(&guest("mbr-bios-ext4")), &qcow2, "qcow2", "", &[]);
    let kept = home.path().join("kept.qcow2");
    let args = [qcow2.to_str().expect("utf-8"), "--name", "refused", "--keep-converted", kept.to_str().expect("utf-8")];
    let (code, _, err) = run(home.path(), FAST, &args);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("goes up as it is"), "{err}");
    assert!(!err.contains("upload "), "no upload step ran: {err}");
    assert!(!kept.exists());
}

/// `imgport images find` reads every page: 130 images made from one snapshot (CreateImage, through the API) and
/// the imported image that snapshot belongs to, more than one DescribeImages page (100) holds, found by snapshot id
/// and by name.
#[test]
fn images_find_reads_every_page() {
    let home = tempdir();
    let (code, out, err) = run(home.path(), FAST, &[&guest("mbr-bios-ext4"), "--name", "paged", "--json"]);
    assert_eq!(code, 0, "{err}");
    let id = out["image_id"].as_str().expect("id").to_string();
    let many = CloudSettings { import_seconds: 0.0, image_quota: 500, max_in_flight: 500, ..Default::default() };
    let snapshot = with_local_cloud(home.path(), many, |apis| {
        apis.rt.block_on(async {
            let image = apis.ecs.image(&id).await.expect("DescribeImages").expect("the imported image");
            let snapshot = image.disk_device_mappings[0].snapshot_id.clone();
            for n in 0..130 {
                let request = CreateRequest {
                    image_name: format!("many-{n:03}"),
                    snapshots: vec![snapshot.clone()],
                    ..Default::default()
                };
                apis.ecs.create_image(&request).await.expect("CreateImage");
            }
            let filter = ImageFilter { image_name: Some("many-".into()), ..Default::default() };
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let made = apis.ecs.images(&filter).await.expect("DescribeImages");
                if made.len() == 130 && made.iter().all(|i| i.status == ImageStatus::Available) {
                    break;
                }
                assert!(Instant::now() < deadline, "the images were not all made");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            snapshot
        })
    });
    let find = |args: &[&str]| -> Vec<String> {
        let out = import_cmd_raw(home.path(), FAST, args).output().expect("imgport runs");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let found: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let mut names: Vec<String> = found
            .as_array()
            .expect("a list")
            .iter()
            .map(|i| i["ImageName"].as_str().expect("name").to_string())
            .collect();
        names.sort();
        names
    };
    let mut expected: Vec<String> = (0..130).map(|n| format!("many-{n:03}")).collect();
    assert_eq!(find(&["images", "find", "--name", "many-", "--json"]), expected);
    expected.push("paged".into());
    assert_eq!(find(&["images", "find", "--snapshot-id", &snapshot, "--json"]), expected);
}

/// `--cloud alibaba` end to end, and what the official SDK sees: `imgport emulator serve` stands in for Alibaba
/// Cloud (the `IMGPORT_*_ENDPOINT` variables point at it, the keys come from the environment as for the real
/// service); the import goes through the real preflight (credentials, the bucket's region, the import role) with a
/// family, tags, a description, a copy and a share. Then Alibaba's Python SDKs, on the same emulator, find the
/// image and its copy with the parameters and tags imgport reported, shared with the account, and the bucket
/// empty (tests/peers/imported_images.py).
#[test]
fn the_official_sdk_sees_what_an_alibaba_import_made() {
    require_python("alibabacloud_ecs20140526, oss2");
    let home = tempdir();
    let served = Served::start(&home.path().join("emulator"));
    let bucket = "imgport-sdk-check";
    served.bucket(bucket);

    let image = guest("gpt-uefi-ext4");
    let description = "web server, imported by imgport";
    let out = served
        .imgport(home.path())
        .args(["import", &image, "--cloud", "alibaba", "--region", "cn-hangzhou", "--bucket", bucket])
        .args(["--name", "web-sdk", "--family", "web", "--description", description, "--tag", "team=web"])
        .args(["--tag", "env=test", "--copy-to", "cn-shanghai", "--share-with", "123456789012", "--json"])
        .output()
        .expect("imgport runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains(SERVE_SK), "the secret reached the log");
    assert!(stderr.contains(" (IMGPORT_OSS_ENDPOINT)"), "the OSS endpoint and why it is the one: {stderr}");
    let outcome: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");

    let cfg = serde_json::json!({
        "endpoint": served.endpoint("oss_endpoint"), "ak": SERVE_AK, "sk": SERVE_SK, "bucket": bucket,
        "outcome": outcome,
        "expect": {
            "family": "web", "description": description, "tags": {"team": "web", "env": "test"},
            "account": "123456789012", "version": env!("IMGPORT_VERSION"),
        },
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/imported_images.py");
    let check = Command::new("python3").args([script, "check", &cfg.to_string()]).output().expect("python3 runs");
    let text = format!("{}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));
    assert!(check.status.success() && text.contains("ok check"), "{text}\nimgport: {outcome}");
}

/// `--replace`: the new content takes the name only once it is Available. A new import that fails leaves the old
/// image as it was; one that times out is taken up by the rerun (its temporary image, not a second import), which
/// swaps it in and deletes the old image imgport made. `--resource-group-id` and `--nvme` reach the image.
#[test]
fn replace_swaps_only_after_the_new_image_is_available() {
    let home = tempdir();
    let show = |id: &str| -> Option<Value> {
        let out = import_cmd_raw(home.path(), FAST, &["images", "show", id, "--json"]).output().expect("runs");
        out.status.success().then(|| serde_json::from_slice(&out.stdout).expect("show JSON"))
    };
    let (code, first, err) = run(
        home.path(),
        FAST,
        &[
            &guest("mbr-bios-ext4"),
            "--name",
            "web",
            "--resource-group-id",
            "rg-acfm2test",
            "--copy-to",
            "cn-shanghai",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let old = first["image_id"].as_str().expect("id").to_string();
    let shown = show(&old).expect("the image");
    assert_eq!(shown["ResourceGroupId"], "rg-acfm2test", "{shown}");
    // --nvme auto: what the guest's initramfs carries (the test image's recipe says).
    assert_eq!(first["parameters"]["nvme_support"], nvme_at_boot("mbr-bios-ext4"), "{first}");
    assert_eq!(shown["Features"]["NvmeSupport"], nvme_at_boot("mbr-bios-ext4"), "{shown}");

    let other = guest("gpt-uefi-ext4");
    // The new import fails: the old image keeps its name, nothing of the new one is left.
    let failing = format!(
        "{FAST}[[faults.rules]]\noperation = \"ImportImage\"\nkind = \"create_failed\"\nreason = \"InvalidImage.Format: injected\"\n"
    );
    let (code, _, err) = run(home.path(), &failing, &[&other, "--name", "web", "--replace", "--nvme", "supported"]);
    assert_eq!(code, 6, "{err}");
    assert_eq!(show(&old).expect("the old image")["ImageName"], "web");

    // The new import times out: still in flight under its temporary name, the old image untouched.
    let stalled = format!("{FAST}[[faults.rules]]\noperation = \"ImportImage\"\nkind = \"stall\"\n");
    let args =
        [other.as_str(), "--name", "web", "--replace", "--nvme", "supported", "--copy-to", "cn-shanghai", "--json"];
    let (code, out, err) = run(home.path(), &stalled, &[&args[..], &["--timeout", "2s"]].concat());
    assert_eq!(code, 7, "{err}");
    let new = out["image_id"].as_str().expect("the new image").to_string();
    assert!(out["error"].as_str().is_some_and(|e| e.contains("rerun the same command")), "{out}");
    let pending = show(&new).expect("the new image");
    assert!(pending["ImageName"].as_str().is_some_and(|n| n.starts_with("web-new-")), "{pending}");
    assert_eq!(show(&old).expect("the old image")["ImageName"], "web", "not replaced before Available");

    // The rerun takes the import up, waits for it and swaps: the name is the new image's, the old one is gone.
    let (code, done, err) = run(home.path(), FAST, &args);
    assert_eq!(code, 0, "{err}");
    assert_eq!((done["image_id"].as_str(), done["name"].as_str()), (Some(new.as_str()), Some("web")), "{done}");
    assert_eq!(done["replaced"]["image_id"], old.as_str(), "{done}");
    assert_eq!(done["replaced"]["action"], "deleted", "imgport made it: {done}");
    assert!(done["replaced"].get("notes").is_none(), "its snapshots are deleted too: {done}");
    let steps: Vec<&str> = done["steps"].as_array().expect("steps").iter().filter_map(|s| s["step"].as_str()).collect();
    assert!(steps.ends_with(&["wait", "replace", "distribute"]), "swapped after the wait: {steps:?}");
    let swapped = show(&new).expect("the new image");
    assert_eq!((swapped["ImageName"].as_str(), swapped["Status"].as_str()), (Some("web"), Some("Available")));
    assert_eq!(swapped["Features"]["NvmeSupport"], "supported", "{swapped}");
    assert!(show(&old).is_none(), "the old image is deleted");
    // The copy region held the old content under the name too: swapped the same way.
    let copy = &done["copies"][0];
    assert_eq!((copy["status"].as_str(), copy["replaced"]["action"].as_str()), (Some("Available"), Some("deleted")));
    assert_eq!(copy["replaced"]["image_id"], first["copies"][0]["image_id"], "{done}");

    // An image imgport did not make is never deleted: renamed aside and deprecated.
    let json = |args: &[&str]| -> Value {
        let out = import_cmd_raw(home.path(), FAST, args).output().expect("runs");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("JSON")
    };
    let instances = json(&["instance", "list", "--json"]);
    let instance = instances[0]["InstanceId"].as_str().expect("an instance").to_string();
    let theirs = json(&["images", "create", "--from-instance", &instance, "--name", "theirs", "--json"]);
    let theirs = theirs["ImageId"].as_str().expect("id").to_string();
    let (code, mine, err) =
        run(home.path(), FAST, &[&guest("deb-nodrivers"), "--name", "theirs", "--replace", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(mine["parameters"]["nvme_support"], nvme_at_boot("deb-nodrivers"), "{mine}");
    let (r, aside) = (&mine["replaced"], show(&theirs).expect("kept"));
    assert_eq!((r["image_id"].as_str(), r["action"].as_str()), (Some(theirs.as_str()), Some("renamed")), "{mine}");
    assert_eq!(aside["ImageName"], r["renamed_to"], "{aside}");
    assert!(aside["ImageName"].as_str().is_some_and(|n| n.starts_with("theirs-replaced-20")), "{aside}");
    assert_eq!(aside["Status"], "Deprecated");
    assert_eq!(show(mine["image_id"].as_str().expect("id")).expect("new")["ImageName"], "theirs");

    // No room for another custom image: ImportImage's QuotaExceed.Image with the count, and the object removed.
    // (web, theirs and the one renamed aside)
    let full = format!("{FAST}image_quota = 3\n");
    let (code, out, err) = run(home.path(), &full, &[&guest("mbr-bios-ext4"), "--name", "web-2", "--json"]);
    assert_eq!(code, 6, "{err}");
    assert_eq!(out["code"], "QuotaExceed.Image", "{out}");
    assert!(out["error"].as_str().is_some_and(|e| e.contains("3 custom images")), "{out}");
    assert!(out["fix"].as_str().is_some_and(|f| f.contains("quota")), "{out}");
}

/// `supported` when the test image's recipe puts the nvme driver in the initramfs, else `unsupported`.
fn nvme_at_boot(name: &str) -> &'static str {
    let env = std::fs::read_to_string(guest_images().join(format!("{name}.env"))).expect("the image's recipe");
    let drivers = env.lines().find_map(|l| l.strip_prefix("DRIVERS_AT_BOOT=")).expect("DRIVERS_AT_BOOT");
    if drivers.split(',').any(|d| d == "nvme") {
        "supported"
    } else {
        "unsupported"
    }
}
