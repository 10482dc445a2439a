//! ECS images, RAM roles and STS AssumeRole driven by Alibaba's official Python SDKs (alibabacloud-ecs20140526,
//! alibabacloud-ram20150501, alibabacloud-sts20150401, oss2) against an in-process emulator: the import round trip
//! with a qcow2 made by qemu-img, import errors, the import rules (garbage, a wrong declared format, VHD sizes, no
//! boot signature, no partition table, a good disk), catalogue filters, copy, share, tags, delete, temporary
//! credentials and their expiry, a forced CreateFailed, imports across a restart, and the lifecycle rules: DryRun
//! changing nothing, copies tracked on the destination image and cancelled with CancelCopyImage (never tasks),
//! Available <-> Deprecated as the only status moves, `Status=ALL`, and creation times set by fault rules; and
//! (tests/peers/ecs_ram_tags.py) the import role's trust policy and custom policies, DetachPolicyFromRole,
//! DeleteRole and UpdateRole, tag validation, TagFilter and NextToken paging, and DescribeTasks' filters and paging.
//!
//! Needs the peers scripts/install-peers.sh installs (python3 with the SDKs, qemu-img); fails without them.

use imgport_emulator::faults::{Fault, FaultConfig, FaultRule};
use imgport_emulator::{CloudSettings, Emulator, EmulatorConfig, RunningEmulator};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

const AK: &str = "LTAI5tEmulatorTest02";
const SK: &str = "emulator-test-secret-ecs-0123456";
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/ecs_images.py");

/// The official SDKs and qemu-img are the test's peers (scripts/install-peers.sh installs them): without them the
/// test fails, never skips.
fn require_peers() {
    let python = imgport_test_support::peers::python_has(
        "oss2, alibabacloud_ecs20140526, alibabacloud_ram20150501, alibabacloud_sts20150401",
    );
    let qemu = Command::new("qemu-img").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(python && qemu, "python3 with the ECS/RAM/STS SDKs or qemu-img is missing: run scripts/install-peers.sh");
}

fn start(dir: &Path, settings: CloudSettings) -> RunningEmulator {
    let mut cfg = EmulatorConfig::new(dir).with_keys(AK, SK).cloud(settings);
    cfg.regions = vec!["cn-hangzhou".into(), "cn-shanghai".into()];
    Emulator::start(cfg).expect("emulator starts")
}

fn fast() -> CloudSettings {
    CloudSettings { import_seconds: 1.0, ..Default::default() }
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().expect("qemu tool runs");
    assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A sparse raw disk of `size` bytes whose MBR holds one bootable Linux partition from 1 MiB to the end.
fn mbr_raw(path: &Path, size: u64) {
    let mut mbr = [0u8; 512];
    let sectors = u32::try_from(size / 512 - 2048).expect("small disk");
    mbr[446] = 0x80;
    mbr[446 + 4] = 0x83;
    mbr[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
    mbr[446 + 12..446 + 16].copy_from_slice(&sectors.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    let f = std::fs::File::create(path).expect("create raw");
    f.set_len(size).expect("size raw");
    std::os::unix::fs::FileExt::write_all_at(&f, &mbr, 0).expect("write MBR");
}

/// A 2 GiB qcow2 (made by qemu-img from a raw disk with an MBR partition table), and a fixed VHD whose size is
/// not a whole MiB.
fn images(dir: &Path) -> (String, String) {
    let raw = dir.join("mbr.raw");
    mbr_raw(&raw, 2 << 30);
    let q = dir.join("disk.qcow2");
    let v = dir.join("odd.vhd");
    let qs = q.to_str().expect("utf-8 path");
    run("qemu-img", &["convert", "-q", "-f", "raw", "-O", "qcow2", raw.to_str().expect("utf-8"), qs]);
    run(
        "qemu-img",
        &["create", "-q", "-f", "vpc", "-o", "subformat=fixed,force_size=on", v.to_str().expect("utf-8"), "1000000"],
    );
    (qs.to_string(), v.to_string_lossy().into_owned())
}

/// The disks the import rules judge, by name: a good MBR raw, a qcow2 without a boot signature, a qcow2 with the
/// signature but no partition table, random bytes, and a fixed VHD whose data is shorter than its footer says.
fn rule_images(dir: &Path) -> Value {
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    mbr_raw(&dir.join("good.raw"), 16 << 20);
    run("qemu-img", &["create", "-q", "-f", "qcow2", &path("blank.qcow2"), "1G"]);
    run("qemu-img", &["create", "-q", "-f", "qcow2", &path("signature-only.qcow2"), "1G"]);
    run("qemu-io", &["-c", "write -P 0x55 510 1", "-c", "write -P 0xaa 511 1", &path("signature-only.qcow2")]);
    // Random bytes: a deterministic xorshift stream, so a failure reproduces.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let garbage: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(dir.join("garbage.bin"), garbage).expect("write garbage");
    // A fixed VHD of 8 MiB cut to 7 MiB of data, its footer kept at the end.
    run("qemu-img", &["create", "-q", "-f", "vpc", "-o", "subformat=fixed,force_size=on", &path("full.vhd"), "8M"]);
    let full = std::fs::read(dir.join("full.vhd")).expect("read vhd");
    let footer = &full[full.len() - 512..];
    let short: Vec<u8> = full[..7 << 20].iter().chain(footer).copied().collect();
    std::fs::write(dir.join("short.vhd"), short).expect("write vhd");
    json!({
        "good": path("good.raw"), "blank": path("blank.qcow2"), "signature_only": path("signature-only.qcow2"),
        "garbage": path("garbage.bin"), "short_vhd": path("short.vhd"), "full_vhd": path("full.vhd"),
    })
}

fn scenario(emu: &RunningEmulator, name: &str, extra: Value) -> String {
    let mut cfg = json!({"endpoint": emu.ecs_endpoint, "ak": AK, "sk": SK, "account": emu.state().account_id});
    if let (Some(c), Value::Object(e)) = (cfg.as_object_mut(), extra) {
        c.extend(e);
    }
    let out = Command::new("python3").arg(SCRIPT).arg(name).arg(cfg.to_string()).output().expect("python3 runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let log: Vec<String> = emu.request_log().iter().map(|e| format!("{} {}", e.operation, e.status)).collect();
    assert!(out.status.success(), "{name}:\n{text}\nrequests:\n{}", log.join("\n"));
    text
}

#[test]
fn import_round_trip_errors_catalogue_copy_share_tags_and_delete() {
    require_peers();
    let dir = tempfile::tempdir().expect("tempdir");
    let (qcow2, vhd) = images(dir.path());
    let emu = start(&dir.path().join("emu"), fast());
    let text = scenario(&emu, "images", json!({"qcow2": qcow2, "vhd": vhd}));
    assert!(text.contains("ok images"), "{text}");
    let log = serde_json::to_string(&emu.request_log()).expect("json");
    assert!(!log.contains(SK), "the log holds the secret");
}

#[test]
fn import_rules_fail_bad_disks_as_documented_and_pass_a_good_one() {
    require_peers();
    let dir = tempfile::tempdir().expect("tempdir");
    let (qcow2, vhd) = images(dir.path());
    let mut disks = rule_images(dir.path());
    if let Value::Object(m) = &mut disks {
        m.insert("qcow2".into(), json!(qcow2));
        m.insert("vhd".into(), json!(vhd));
    }
    let emu = start(&dir.path().join("emu"), CloudSettings { seed_import_role: true, ..fast() });
    let text = scenario(&emu, "import-rules", disks);
    assert!(text.contains("ok import-rules"), "{text}");
}

#[test]
fn assume_role_credentials_work_for_oss_and_ecs_until_they_expire() {
    require_peers();
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = CloudSettings { sts_lifetime_cap_seconds: Some(3), ..fast() };
    let emu = start(dir.path(), settings);
    let text = scenario(&emu, "sts", json!({"sleep": 4}));
    assert!(text.contains("ok sts"), "{text}");
}

fn started(text: &str) -> Value {
    text.lines().find_map(|l| serde_json::from_str::<Value>(l).ok()).expect("ImageId and TaskId printed")
}

#[test]
fn forced_create_failed_and_imports_across_a_restart() {
    require_peers();
    let dir = tempfile::tempdir().expect("tempdir");
    let (qcow2, _) = images(dir.path());
    let data = dir.path().join("emu");
    let seeded = CloudSettings { seed_import_role: true, ..fast() };
    let emu = start(&data, seeded.clone());
    emu.set_faults(FaultConfig {
        rules: vec![FaultRule {
            operation: "ImportImage".into(),
            fault: Fault::CreateFailed { reason: Some("ImportImageFailed: injected".into()) },
            rate: 1.0,
            after: 0,
            times: Some(1),
        }],
        ..Default::default()
    });
    let ids = started(&scenario(&emu, "import-start", json!({"qcow2": qcow2, "name": "forced"})));
    let wait = |emu: &RunningEmulator, ids: &Value, expect: &str| {
        let mut v = ids.clone();
        if let Value::Object(m) = &mut v {
            m.insert("expect".into(), json!(expect));
            m.insert("code".into(), json!("ImportImageFailed"));
        }
        scenario(emu, "import-wait", v)
    };
    wait(&emu, &ids, "CreateFailed");
    // The rule was for one request only.
    let next = started(&scenario(&emu, "import-start", json!({"qcow2": qcow2, "name": "not-forced"})));
    wait(&emu, &next, "Available");
    // An import interrupted by a restart starts again and completes; finished images survive.
    let slow = CloudSettings { import_seconds: 30.0, ..seeded.clone() };
    emu.shutdown();
    let emu = start(&data, slow);
    let pending = started(&scenario(&emu, "import-start", json!({"qcow2": qcow2, "name": "interrupted"})));
    emu.shutdown();
    let emu = start(&data, seeded);
    wait(&emu, &pending, "Available");
    wait(&emu, &ids, "CreateFailed");
}

#[test]
fn dry_runs_copies_deprecation_and_creation_times_behave_as_ecs() {
    require_peers();
    let dir = tempfile::tempdir().expect("tempdir");
    let (qcow2, _) = images(dir.path());
    // Copies must still be in flight while the scenario cancels one: two seconds per import or copy.
    let emu = start(
        &dir.path().join("emu"),
        CloudSettings { import_seconds: 2.0, seed_import_role: true, ..Default::default() },
    );
    // The first two imports get the same CreationTime, the third one an hour earlier.
    let t0 = 1_700_000_000i64;
    let clock = |at: i64, after: u64, times: u64| FaultRule {
        operation: "ImportImage".into(),
        fault: Fault::CreationTime { at: Some(at), offset_seconds: 0 },
        rate: 1.0,
        after,
        times: Some(times),
    };
    emu.set_faults(FaultConfig { rules: vec![clock(t0, 0, 2), clock(t0 - 3600, 2, 1)], ..Default::default() });
    let text = scenario(&emu, "lifecycle", json!({"qcow2": qcow2, "t0": t0}));
    assert!(text.contains("ok lifecycle"), "{text}");
}

/// Image families (DescribeImageFromFamily, ImageFamily validation on ImportImage, ModifyImageAttribute and the
/// family a copy keeps) and DescribeImages' filters and fields (Usage, ImageOwnerId, IsPublic, ShowExpired,
/// Filter.N creation times, the detected disk Format and the fields the SDK models), in tests/peers/ecs_families.py.
/// Each scenario gets its own emulator whose first two imports have CreationTime t0 and the third t0 - 1 h.
#[test]
fn families_and_describe_images_filters_behave_as_ecs() {
    require_peers();
    let dir = tempfile::tempdir().expect("tempdir");
    let (qcow2, _) = images(dir.path());
    let t0 = 1_700_000_000i64;
    let clock = |at: i64, after: u64, times: u64| FaultRule {
        operation: "ImportImage".into(),
        fault: Fault::CreationTime { at: Some(at), offset_seconds: 0 },
        rate: 1.0,
        after,
        times: Some(times),
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/ecs_families.py");
    for name in ["families", "describe"] {
        let emu = start(
            &dir.path().join(name),
            CloudSettings { import_seconds: 1.0, seed_import_role: true, ..Default::default() },
        );
        emu.set_faults(FaultConfig { rules: vec![clock(t0, 0, 2), clock(t0 - 3600, 2, 1)], ..Default::default() });
        let cfg = json!({"endpoint": emu.ecs_endpoint, "ak": AK, "sk": SK, "account": emu.state().account_id,
            "qcow2": qcow2, "t0": t0});
        let out = Command::new("python3").arg(script).arg(name).arg(cfg.to_string()).output().expect("python3 runs");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let log: Vec<String> = emu.request_log().iter().map(|e| format!("{} {}", e.operation, e.status)).collect();
        assert!(out.status.success() && text.contains(&format!("ok {name}")), "{name}:\n{text}\n{}", log.join("\n"));
        emu.shutdown();
    }
}

const RAM_TAGS_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/ecs_ram_tags.py");

#[test]
fn ram_trust_tags_and_task_filters_behave_as_ecs() {
    require_peers();
    let dir = tempfile::tempdir().expect("tempdir");
    // Pages of two tag resources, so ListTagResources' NextToken is exercised.
    let emu = start(&dir.path().join("emu"), CloudSettings { tag_page_size: 2, ..fast() });
    let cfg = json!({"endpoint": emu.ecs_endpoint, "ak": AK, "sk": SK, "account": emu.state().account_id});
    for name in ["ram", "tags", "tasks"] {
        let out =
            Command::new("python3").arg(RAM_TAGS_SCRIPT).arg(name).arg(cfg.to_string()).output().expect("python3 runs");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && text.contains(&format!("ok {name}")), "{name}:\n{text}");
    }
}

/// Error codes as documented (MissingParameter naming the parameter, documented Platform values,
/// InvalidOSSObject.NeedRestore for archive-class objects, InvalidVHDImage.IncorrectSize,
/// IdempotentParameterMismatch for a reused ClientToken on ImportImage and CopyImage), and the `stall` fault that
/// holds an import in Creating until the fault is cleared or its seconds pass, and the `task_finishes_early` fault
/// (the task Finished while its image is still Creating); `copy_seconds` times copies apart from imports. Scenarios in tests/peers/ecs_errors.py.
#[test]
fn error_codes_and_import_timing_behave_as_ecs() {
    require_peers();
    let dir = tempfile::tempdir().expect("tempdir");
    let (qcow2, vhd) = images(dir.path());
    let settings =
        CloudSettings { import_seconds: 1.0, copy_seconds: Some(0.5), seed_import_role: true, ..Default::default() };
    let emu = start(&dir.path().join("emu"), settings);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/ecs_errors.py");
    for name in ["errors", "stall"] {
        let cfg = json!({
            "endpoint": emu.ecs_endpoint, "ak": AK, "sk": SK, "admin_secret": emu.admin_secret,
            "qcow2": qcow2, "vhd": vhd,
        });
        let out = Command::new("python3").arg(script).arg(name).arg(cfg.to_string()).output().expect("python3 runs");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let log: Vec<String> = emu.request_log().iter().map(|e| format!("{} {}", e.operation, e.status)).collect();
        assert!(out.status.success(), "{name}:\n{text}\nrequests:\n{}", log.join("\n"));
        assert!(text.contains(&format!("ok {name}")), "{text}");
    }
}

/// Snapshots as resources (DescribeSnapshots with its filters and both kinds of paging, DeleteSnapshot refused
/// while an image uses the snapshot, snapshot tags, DeleteImage leaving snapshots), CreateImage from an instance,
/// a snapshot and disk mappings with its documented refusals, Tag.N checks on ImportImage, CopyImage and
/// CreateImage, and the copy rules (IncorrectDestinationRegion, OperationDenied.ImageCopyConflict, one copy at a
/// time per destination region, Encrypted/KMSKeyId, the copy's own snapshots, DeleteImage of a copy's source).
/// Scenarios in tests/peers/ecs_snapshots.py.
#[test]
fn snapshots_and_copies() {
    require_peers();
    let dir = tempfile::tempdir().expect("tempdir");
    let (qcow2, _) = images(dir.path());
    // Copies slow enough that the second copy into a region is seen waiting behind the first.
    let settings =
        CloudSettings { import_seconds: 1.0, copy_seconds: Some(3.0), seed_import_role: true, ..Default::default() };
    let emu = start(&dir.path().join("emu"), settings);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/ecs_snapshots.py");
    let cfg = json!({"endpoint": emu.ecs_endpoint, "ak": AK, "sk": SK, "qcow2": qcow2});
    for name in ["snapshots", "create", "copies"] {
        let out = Command::new("python3").arg(script).arg(name).arg(cfg.to_string()).output().expect("python3 runs");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let log: Vec<String> = emu.request_log().iter().map(|e| format!("{} {}", e.operation, e.status)).collect();
        assert!(out.status.success() && text.contains(&format!("ok {name}")), "{name}:\n{text}\n{}", log.join("\n"));
    }
    emu.shutdown();
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The emulator's bounds against hostile clients, driven with the official SDKs (tests/peers/ecs_bounds.py): the
/// custom image quota (403 `QuotaExceed.Image`) and the cap on imports and copies in flight (400 `Throttling`) on
/// ImportImage and CopyImage, ImportImage's Description and Tag.N bounds; concurrent requests with one ClientToken
/// making one image; finished tasks pruned beyond `task_history`; RAM's limits (1000 roles, 20 system and 10 custom policies per role, 1024-character
/// descriptions); shutdown stopping the background work, after which nothing writes the state (compact JSON) and a
/// later emulator resumes the import; an upload that cannot be read answering 500 `InternalError`.
#[test]
fn bounds() {
    require_peers();
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = dir.path().join("bounds.raw");
    mbr_raw(&disk, 16 << 20);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/ecs_bounds.py");
    let run = |emu: &RunningEmulator, name: &str| -> String {
        let cfg = json!({"endpoint": emu.ecs_endpoint, "ak": AK, "sk": SK, "disk": disk.to_string_lossy()});
        let out = Command::new("python3").arg(script).arg(name).arg(cfg.to_string()).output().expect("python3 runs");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let log: Vec<String> = emu.request_log().iter().map(|e| format!("{} {}", e.operation, e.status)).collect();
        assert!(
            out.status.success() && text.contains(&format!("ok {name}")),
            "{name}:\n{text}\nrequests:\n{}",
            log.join("\n")
        );
        text
    };
    let seeded = |s: CloudSettings| CloudSettings { seed_import_role: true, ..s };

    let emu = start(
        &dir.path().join("quota"),
        seeded(CloudSettings {
            import_seconds: 2.0,
            copy_seconds: Some(1.0),
            image_quota: 3,
            max_in_flight: 2,
            ..Default::default()
        }),
    );
    run(&emu, "quota");
    emu.shutdown();

    let emu = start(&dir.path().join("token"), seeded(fast()));
    run(&emu, "token");
    emu.shutdown();

    let emu = start(
        &dir.path().join("tasks"),
        seeded(CloudSettings { import_seconds: 0.3, task_history: 3, ..Default::default() }),
    );
    run(&emu, "tasks");
    emu.shutdown();

    let emu = start(&dir.path().join("ram"), seeded(fast()));
    run(&emu, "ram");
    emu.shutdown();

    // Shutdown stops the import (3 s, saved at Waiting): nothing writes the state afterwards, and the next
    // emulator on the folder resumes it.
    let data = dir.path().join("restart");
    let emu = start(&data, seeded(CloudSettings { import_seconds: 3.0, ..Default::default() }));
    run(&emu, "shutdown_start");
    assert_eq!(emu.background_threads(), 1);
    let began = std::time::Instant::now();
    emu.shutdown();
    assert!(began.elapsed() < std::time::Duration::from_secs(3), "shutdown took {:?}", began.elapsed());
    let saved = std::fs::read(data.join("cloud.json")).expect("state saved");
    assert!(!saved.contains(&b'\n'), "the state is compact JSON");
    std::thread::sleep(std::time::Duration::from_millis(3500));
    assert_eq!(std::fs::read(data.join("cloud.json")).expect("state"), saved, "state written after shutdown");
    let state: Value = serde_json::from_slice(&saved).expect("state parses");
    let statuses: Vec<&str> = state["images"]
        .as_array()
        .expect("images")
        .iter()
        .filter(|i| i["name"] == "across-shutdown")
        .filter_map(|i| i["status"].as_str())
        .collect();
    assert!(statuses == ["Waiting"] || statuses == ["Creating"], "{statuses:?}");
    let emu = start(&data, seeded(fast()));
    run(&emu, "shutdown_resume");
    emu.shutdown();

    // An object whose data cannot be read (its data file replaced by a directory).
    let data = dir.path().join("unreadable");
    let emu = start(&data, seeded(fast()));
    run(&emu, "unreadable_upload");
    let objects: Vec<_> = files_under(&data)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "0"))
        .filter(|p| p.parent().and_then(Path::parent).and_then(Path::file_name).is_some_and(|n| n == "data"))
        .collect();
    assert_eq!(objects.len(), 1, "{objects:?}");
    std::fs::remove_file(&objects[0]).expect("remove data");
    std::fs::create_dir(&objects[0]).expect("directory in its place");
    run(&emu, "unreadable_import");
    emu.shutdown();
}
