//! `pipeline check`'s library side over a set of broken pipeline files (tests/fixtures/pipelines): each is refused
//! with the line, column, field and message its first line (`# expect: LINE:COLUMN FIELD: MESSAGE`) names; and a
//! good file checks into the values it declares.

use imgport_pipeline::file::{self, Source};
use std::path::Path;

#[test]
fn each_broken_file_is_refused_where_its_fault_is() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pipelines");
    let mut files: Vec<_> = std::fs::read_dir(&dir).expect("fixtures").flatten().map(|e| e.path()).collect();
    files.sort();
    assert!(files.len() >= 15, "the fixtures are there");
    let mut wrong = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("fixture");
        let expect = text.lines().next().and_then(|l| l.strip_prefix("# expect: ")).expect("an expect line");
        let (place, rest) = expect.split_once(' ').expect("LINE:COLUMN FIELD: MESSAGE");
        let (field, message) = rest.split_once(": ").expect("FIELD: MESSAGE");
        let errors = match file::load(f) {
            Ok(_) => {
                wrong.push(format!("{}: accepted", f.display()));
                continue;
            }
            Err(e) => e,
        };
        let hit = errors.iter().any(|e| {
            format!("{}:{}", e.line, e.column) == place && e.field == field && e.message.contains(message.trim())
        });
        if !hit {
            let got: Vec<String> =
                errors.iter().map(|e| format!("{}:{} {}: {}", e.line, e.column, e.field, e.message)).collect();
            wrong.push(format!("{}: expected {expect}, got {got:?}", f.display()));
        }
        // The error names the file too.
        assert!(errors.iter().all(|e| e.to_string().starts_with(&f.display().to_string())));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_good_file_checks_into_its_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("nightly.toml");
    std::fs::write(
        &f,
        r#"cloud = "local"
region = "cn-hangzhou"
[source]
packer_manifest = "out/packer-manifest.json"
build = "qemu"
[validate]
strict = true
[import]
name = "debian-{build}-{date}-{digest}"
family = "debian-12"
tags = { channel = "{var.CHANNEL}" }
boot_mode = "UEFI"
timeout = "90m"
part_size = "64M"
[distribute]
copy_to = ["cn-shanghai", "cn-shanghai"]
share_with = ["1234567890"]
[retain]
keep = 2
keep_days = 3
deprecate_after = "1h"
delete_after = "never"
[outputs]
manifest = "manifest.json"
"#,
    )
    .expect("write");
    let p = file::load(&f).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(p.name, "nightly");
    assert_eq!(
        p.source,
        Source::Packer { manifest: dir.path().join("out/packer-manifest.json"), build: Some("qemu".into()) }
    );
    assert!(p.strict);
    assert_eq!(p.copy_to, vec!["cn-shanghai"]);
    assert_eq!(p.import.timeout.as_secs(), 5400);
    assert_eq!(p.import.part_size, Some(64 << 20));
    let r = p.retain.expect("retain");
    assert_eq!(
        (r.keep, r.keep_younger_than, r.min_keep, r.deprecate_after, r.delete_after),
        (Some(2), Some(3 * 86_400), 1, 3600, None)
    );
    assert_eq!(p.manifest, Some(dir.path().join("manifest.json")));
}

#[test]
fn sources_resolve_to_the_newest_glob_match_and_the_packer_manifests_last_run() {
    use imgport_pipeline::file::source::{resolve, Resolved};
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // Glob: the newest by modification time, whatever the names.
    for (name, age) in [("b-old.qcow2", 300), ("a-new.qcow2", 10), ("c-mid.qcow2", 100)] {
        // The qcow2 magic: a Packer source must be a disk image by its content, as for `import --packer-manifest`.
        std::fs::write(d.join(name), b"QFI\xfb").expect("write");
        let f = std::fs::File::options().write(true).open(d.join(name)).expect("open");
        let t = std::time::SystemTime::now() - std::time::Duration::from_secs(age);
        f.set_modified(t).expect("mtime");
    }
    std::fs::write(d.join("notes.txt"), "x").expect("write");
    let glob = Source::Glob { dir: d.to_path_buf(), pattern: "*.qcow2".into() };
    assert_eq!(resolve(&glob).expect("match"), Resolved { path: d.join("a-new.qcow2"), build: None });
    let none = Source::Glob { dir: d.to_path_buf(), pattern: "*.vmdk".into() };
    assert!(resolve(&none).unwrap_err().contains("no file"));

    // Packer: only the builds of last_run_uuid count; `build` picks one; file names are from the manifest's folder.
    std::fs::write(
        d.join("packer-manifest.json"),
        r#"{"builds": [
            {"name": "qemu", "builder_type": "qemu", "build_time": 1, "files": [{"name": "b-old.qcow2", "size": 0}],
             "artifact_id": "x", "packer_run_uuid": "run-1"},
            {"name": "qemu", "builder_type": "qemu", "build_time": 2,
             "files": [{"name": "c-mid.qcow2", "size": 0}, {"name": "notes.txt", "size": 1}],
             "artifact_id": "x", "packer_run_uuid": "run-2"},
            {"name": "arm", "builder_type": "qemu", "build_time": 2, "files": [{"name": "a-new.qcow2", "size": 0}],
             "artifact_id": "x", "packer_run_uuid": "run-2"}
        ], "last_run_uuid": "run-2"}"#,
    )
    .expect("write");
    let manifest = d.join("packer-manifest.json");
    let qemu = Source::Packer { manifest: manifest.clone(), build: Some("qemu".into()) };
    assert_eq!(resolve(&qemu).expect("qemu"), Resolved { path: d.join("c-mid.qcow2"), build: Some("qemu".into()) });
    let both = Source::Packer { manifest: manifest.clone(), build: None };
    let e = resolve(&both).unwrap_err();
    assert!(e.contains("several builds") && e.contains("qemu") && e.contains("arm"), "{e}");
    let missing = Source::Packer { manifest, build: Some("vmware".into()) };
    let e = resolve(&missing).unwrap_err();
    assert!(e.contains("no build named \"vmware\""), "{e}");
    let absent = Source::Packer { manifest: d.join("nope.json"), build: None };
    let e = resolve(&absent).unwrap_err();
    assert!(e.contains("cannot read the Packer manifest"), "{e}");
}
