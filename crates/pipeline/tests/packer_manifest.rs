//! imgport_pipeline::packer over manifests of Packer's shape: fixtures/packer/file-builder.json was written by
//! Packer 1.6.6 itself (two runs of a `file`-builder template: `disk` and `notes`, then `disk` alone); the others
//! are the shapes the vmware-iso (split VMDK) and qemu (`disk_additional_size`) builders list. The disk images they
//! name are made with qemu-img in a temporary folder.

use imgport_pipeline::import::{CopyOutcome, ImportOutcome};
use imgport_pipeline::packer::{self, PackerError};
use std::path::{Path, PathBuf};
use std::process::Command;

const FIRST_RUN: &str = "583d2c5c-2276-8b35-ae6b-e9dc0c0d2614";
const LAST_RUN: &str = "e6d130b7-d722-f941-4170-e7386da5091f";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/packer").join(name)
}

/// A temporary folder holding the manifest `name` (copied) and the files `make` writes there.
fn setup(name: &str, make: impl FnOnce(&Path)) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("packer-manifest.json");
    std::fs::copy(fixture(name), &manifest).expect("copy fixture");
    make(dir.path());
    (dir, manifest)
}

fn qemu_img(args: &[&str], cwd: &Path) {
    let st = Command::new("qemu-img").args(args).current_dir(cwd).status().expect("qemu-img runs");
    assert!(st.success(), "qemu-img {args:?}");
}

fn file_builder_outputs(dir: &Path) {
    std::fs::create_dir_all(dir.join("out")).expect("mkdir");
    qemu_img(&["create", "-q", "-f", "qcow2", "out/disk.qcow2", "64M"], dir);
    std::fs::write(dir.join("out/notes.txt"), "built by packer\n").expect("notes");
}

fn last_run_uuid(manifest: &Path) -> String {
    let m = packer::read(manifest).expect("manifest reads");
    m.last_run_uuid.expect("last_run_uuid")
}

#[test]
fn the_last_runs_only_build_gives_its_disk() {
    let (dir, manifest) = setup("file-builder.json", file_builder_outputs);
    let m = packer::read(&manifest).expect("reads");
    assert_eq!(m.builds.len(), 3);
    let run = last_run_uuid(&manifest);
    let s = m.source(None, None, dir.path()).expect("a source");
    assert_eq!(s.build, "disk");
    assert_eq!(s.builder_type, "file");
    assert_eq!(s.run_uuid, run);
    assert_eq!(s.image, dir.path().join("out/disk.qcow2"));
    // Named, and with the run given as PACKER_RUN_UUID would give it: the same.
    assert_eq!(m.source(Some("disk"), Some(&run), dir.path()).expect("named"), s);
}

#[test]
fn an_earlier_run_with_two_builds_needs_a_name() {
    let (dir, manifest) = setup("file-builder.json", file_builder_outputs);
    let m = packer::read(&manifest).expect("reads");
    assert_ne!(last_run_uuid(&manifest), FIRST_RUN);
    match m.source(None, Some(FIRST_RUN), dir.path()) {
        Err(e @ PackerError::SeveralBuilds { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("disk, notes") && msg.contains("--build"), "{msg}");
        }
        other => panic!("expected SeveralBuilds, got {other:?}"),
    }
    let s = m.source(Some("disk"), Some(FIRST_RUN), dir.path()).expect("named build");
    assert_eq!(s.run_uuid, FIRST_RUN);
    match m.source(Some("notes"), Some(FIRST_RUN), dir.path()) {
        Err(e @ PackerError::NoDiskImage { .. }) => assert!(e.to_string().contains("out/notes.txt"), "{e}"),
        other => panic!("expected NoDiskImage, got {other:?}"),
    }
    // `notes` was not built in the last run.
    match m.source(Some("notes"), None, dir.path()) {
        Err(e @ PackerError::NoSuchBuild { .. }) => assert!(e.to_string().contains("builds in that run: disk"), "{e}"),
        other => panic!("expected NoSuchBuild, got {other:?}"),
    }
    match m.source(None, Some("not-a-run"), dir.path()) {
        Err(e @ PackerError::NoBuildInRun { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(FIRST_RUN) && msg.contains(LAST_RUN) && msg.contains("PACKER_RUN_UUID"), "{msg}");
        }
        other => panic!("expected NoBuildInRun, got {other:?}"),
    }
}

#[test]
fn relative_names_come_from_the_current_folder_then_the_manifests() {
    let (dir, manifest) = setup("file-builder.json", file_builder_outputs);
    let m = packer::read(&manifest).expect("reads");
    // Read from elsewhere: found beside the manifest.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let s = m.source(None, None, elsewhere.path()).expect("found beside the manifest");
    assert_eq!(s.image, dir.path().join("out/disk.qcow2"));
    // A file of that name in the current folder wins (where Packer ran).
    file_builder_outputs(elsewhere.path());
    let s = m.source(None, None, elsewhere.path()).expect("found in the current folder");
    assert_eq!(s.image, elsewhere.path().join("out/disk.qcow2"));
    // In neither: an error naming both places.
    std::fs::remove_file(dir.path().join("out/disk.qcow2")).expect("rm");
    let empty = tempfile::tempdir().expect("tempdir");
    match m.source(None, None, empty.path()) {
        Err(e @ PackerError::MissingFile { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("\"out/disk.qcow2\"") && msg.contains("does not exist"), "{msg}");
            assert!(msg.contains(&empty.path().join("out/disk.qcow2").display().to_string()), "{msg}");
        }
        other => panic!("expected MissingFile, got {other:?}"),
    }
}

#[test]
fn a_split_vmdk_is_one_disk_and_other_files_are_skipped() {
    let (dir, manifest) = setup("vmware-split.json", |d| {
        std::fs::create_dir_all(d.join("output-vmware")).expect("mkdir");
        let out = d.join("output-vmware");
        qemu_img(&["create", "-q", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse", "disk.vmdk", "64M"], &out);
        std::fs::write(out.join("golden.vmx"), ".encoding = \"UTF-8\"\nscsi0:0.fileName = \"disk.vmdk\"\n")
            .expect("vmx");
        std::fs::write(out.join("golden.nvram"), [0u8; 64]).expect("nvram");
    });
    assert!(dir.path().join("output-vmware/disk-s001.vmdk").exists(), "qemu-img wrote the extent the fixture lists");
    let m = packer::read(&manifest).expect("reads");
    let s = m.source(None, None, dir.path()).expect("one disk");
    assert_eq!(s.image, dir.path().join("output-vmware/disk.vmdk"));
    let skipped: Vec<String> =
        s.skipped.iter().map(|p| p.file_name().unwrap_or_default().to_string_lossy().into_owned()).collect();
    assert_eq!(skipped, ["golden.vmx", "golden.nvram", "disk-s001.vmdk"]);
}

#[test]
fn several_disk_images_are_refused() {
    let (dir, manifest) = setup("qemu-two-disks.json", |d| {
        std::fs::create_dir_all(d.join("output-qemu")).expect("mkdir");
        qemu_img(&["create", "-q", "-f", "qcow2", "output-qemu/golden", "64M"], d);
        qemu_img(&["create", "-q", "-f", "qcow2", "output-qemu/golden-1", "64M"], d);
    });
    match packer::read(&manifest).expect("reads").source(None, None, dir.path()) {
        Err(e @ PackerError::SeveralDiskImages { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("output-qemu/golden,") && msg.contains("output-qemu/golden-1"), "{msg}");
            assert!(msg.contains("--data-disk"), "{msg}");
        }
        other => panic!("expected SeveralDiskImages, got {other:?}"),
    }
}

#[test]
fn a_raw_disk_counts_by_its_partition_table_or_its_name() {
    let run = "1a2b3c4d-0000-1111-2222-333344445555";
    let manifest_for = |files: &[&str]| {
        let files: Vec<String> = files.iter().map(|f| format!("{{\"name\": \"{f}\", \"size\": 1}}")).collect();
        format!(
            "{{\"builds\": [{{\"name\": \"raw\", \"builder_type\": \"null\", \"build_time\": 1, \"files\": [{}], \
             \"artifact_id\": \"x\", \"packer_run_uuid\": \"{run}\", \"custom_data\": {{}}}}], \"last_run_uuid\": \"{run}\"}}",
            files.join(", ")
        )
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut mbr = vec![0u8; 1 << 20];
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    std::fs::write(dir.path().join("disk"), &mbr).expect("mbr disk");
    std::fs::write(dir.path().join("root.img"), vec![0u8; 4096]).expect("img");
    std::fs::write(dir.path().join("SHA256SUMS"), "0000  disk\n").expect("sums");
    let path = dir.path().join("m.json");
    let source = |files: &[&str]| {
        let m = packer::parse(&path, manifest_for(files).as_bytes()).expect("parses");
        m.source(None, None, dir.path())
    };
    assert_eq!(source(&["SHA256SUMS", "disk"]).expect("mbr").image, dir.path().join("disk"));
    assert_eq!(source(&["root.img", "SHA256SUMS"]).expect("named").image, dir.path().join("root.img"));
    assert!(matches!(source(&["SHA256SUMS"]), Err(PackerError::NoDiskImage { .. })));
    assert!(matches!(source(&["disk", "root.img"]), Err(PackerError::SeveralDiskImages { .. })));
}

#[test]
fn bad_manifests_get_clear_errors() {
    let p = Path::new("bad.json");
    let err = |text: &str| match packer::parse(p, text.as_bytes()) {
        Ok(m) => m.source(None, None, Path::new(".")).expect_err("no source").to_string(),
        Err(e) => e.to_string(),
    };
    assert!(err("<html>").contains("not JSON"), "{}", err("<html>"));
    assert!(err("[1, 2]").contains("not a JSON object"));
    assert!(err("{}").contains("lists no builds"));
    assert!(err(r#"{"builds": [], "last_run_uuid": "r"}"#).contains("lists no builds"));
    assert!(err(r#"{"builds": {"name": "x"}}"#).contains("\"builds\" is not a list"));
    assert!(err(r#"{"builds": [{"builder_type": "file"}]}"#).contains("builds[0] has no name"));
    assert!(err(r#"{"builds": [{"name": "a", "files": [{"size": 3}]}]}"#).contains("builds[0].files[0] has no name"));
    assert!(err(r#"{"builds": [{"name": "a", "packer_run_uuid": 7}]}"#).contains("packer_run_uuid is not a string"));
    assert!(err(r#"{"builds": [{"name": "a", "packer_run_uuid": "r"}]}"#).contains("no last_run_uuid"));
    let other_run = err(r#"{"builds": [{"name": "a", "packer_run_uuid": "r1"}], "last_run_uuid": "r2"}"#);
    assert!(other_run.contains("no build of run r2 (last_run_uuid)") && other_run.contains("runs: r1"), "{other_run}");
    let read = packer::read(Path::new("/nonexistent/packer-manifest.json")).expect_err("no file").to_string();
    assert!(read.contains("cannot read the Packer manifest /nonexistent/packer-manifest.json"), "{read}");
}

fn outcome() -> ImportOutcome {
    ImportOutcome {
        image_id: "m-main".into(),
        region: "cn-hangzhou".into(),
        name: "golden".into(),
        status: "Available".into(),
        reused: false,
        task_id: Some("t-1".into()),
        digest: "ab".repeat(32),
        source_format: "qcow2".into(),
        upload: None,
        bucket: "b".into(),
        key: "imgport/golden.qcow2".into(),
        data_keys: Vec::new(),
        object_deleted: true,
        parameters: Default::default(),
        replaced: None,
        copies: vec![
            CopyOutcome {
                region: "cn-beijing".into(),
                image_id: "m-copy".into(),
                status: "Available".into(),
                error: None,
                reused: false,
                replaced: None,
            },
            CopyOutcome {
                region: "ap-south-1".into(),
                image_id: String::new(),
                status: String::new(),
                error: Some("QuotaExceeded".into()),
                reused: false,
                replaced: None,
            },
        ],
        shared_with: vec!["1234567890".into()],
        steps: Vec::new(),
        upload_summary: None,
        warnings: Vec::new(),
    }
}

#[test]
fn the_record_is_an_entry_packer_can_read_back_and_a_rerun_replaces_it() {
    let (dir, manifest) = setup("file-builder.json", file_builder_outputs);
    let m = packer::read(&manifest).expect("reads");
    let s = m.source(None, None, dir.path()).expect("source");
    let o = outcome();
    assert_eq!(packer::artifact_id(&o), "cn-beijing:m-copy,cn-hangzhou:m-main");
    packer::record(&manifest, &s, &o, 1_796_355_100).expect("recorded");
    packer::record(&manifest, &s, &o, 1_796_355_200).expect("recorded again");
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).expect("read")).expect("json");
    let builds = doc["builds"].as_array().expect("builds");
    assert_eq!(builds.len(), 4, "one entry added, replaced on the rerun");
    let r = &builds[3];
    assert_eq!(r["name"], "disk");
    assert_eq!(r["builder_type"], "file");
    assert_eq!(r["build_time"], 1_796_355_200u64);
    assert_eq!(r["packer_run_uuid"], LAST_RUN);
    assert_eq!(r["artifact_id"], "cn-beijing:m-copy,cn-hangzhou:m-main");
    assert_eq!(r["files"], serde_json::json!([]));
    let data = r["custom_data"].as_object().expect("custom_data");
    assert!(data.values().all(|v| v.is_string()), "Packer reads custom_data as strings: {data:?}");
    assert_eq!(data["imgport_image_id"], "m-main");
    assert_eq!(data["imgport_copies"], "cn-beijing:m-copy,ap-south-1:failed");
    assert_eq!(data["imgport_shared_with"], "1234567890");
    assert_eq!(doc["last_run_uuid"], LAST_RUN);
    assert!(!manifest.with_extension("json.lock").exists(), "the lock is released");
    // Packer's own entries are intact, and the record is not taken for a source.
    assert_eq!(builds[0]["custom_data"]["team"], "platform");
    let again = packer::read(&manifest).expect("reads").source(None, None, dir.path()).expect("source");
    assert_eq!(again, s);
}

#[test]
fn a_held_lock_is_waited_for() {
    let (dir, manifest) = setup("file-builder.json", file_builder_outputs);
    let s = packer::read(&manifest).expect("reads").source(None, None, dir.path()).expect("source");
    let lock = dir.path().join("packer-manifest.json.lock");
    std::fs::write(&lock, "").expect("lock");
    // Released by another writer within the wait: the record goes through.
    let l = lock.clone();
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        std::fs::remove_file(l).expect("unlock");
    });
    packer::record(&manifest, &s, &outcome(), 1).expect("recorded once the lock went");
    release.join().expect("thread");
    assert!(!lock.exists());
}
