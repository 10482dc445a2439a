//! imgport as a Packer post-processor, with real Packer (Debian's 1.6.6, from scripts/install-peers.sh): the
//! template in examples/packer as written (its `file` builder copies examples/demo-debian12.qcow2, its
//! `manifest` then `shell-local` post-processors hand the image to `imgport import --packer-manifest`), pointed at
//! the local cloud. Packer runs in a network namespace with only a loopback (`unshare --net`) where the machine
//! allows one, else with its version check off: it needs nothing from the network (no plugin downloads); its
//! HOME, config, cache and temporary folders are temporary ones.

use crate::common::{imgport, require};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const FAST: &str = "[cloud]\nimport_seconds = 0.5\n";

/// The example's JSON template, or its HCL2 form.
const JSON: &str = "golden-image.json";
const HCL: &str = "golden-image.pkr.hcl";

fn template(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/packer").join(name)
}

/// Whether `unshare --net` works here (root, or unprivileged user namespaces).
fn offline_namespace() -> bool {
    static WORKS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WORKS.get_or_init(|| Command::new("unshare").args(["--net", "true"]).output().is_ok_and(|o| o.status.success()))
}

/// Folders of one run: the Packer working folder, and HOME/XDG/Packer's own folders, all temporary.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new(local_cloud: &str) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        for d in ["work", "home", "tmp", "data", "state"] {
            std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
        }
        std::fs::write(dir.path().join("local-cloud.toml"), local_cloud).expect("config");
        Env { dir }
    }
    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }
    /// The environment imgport and Packer share: the local cloud's state and config, a private HOME.
    fn apply(&self, c: &mut Command) {
        let d = self.dir.path();
        c.env("HOME", d.join("home"))
            .env("XDG_DATA_HOME", d.join("data"))
            .env("XDG_STATE_HOME", d.join("state"))
            .env("IMGPORT_LOCAL_CLOUD_CONFIG", d.join("local-cloud.toml"))
            .env("PACKER_CONFIG_DIR", d.join("home/.packer.d"))
            .env("PACKER_CACHE_DIR", d.join("packer_cache"))
            .env("TMPDIR", d.join("tmp"))
            .env("CHECKPOINT_DISABLE", "1")
            .env_remove("PACKER_LOG")
            .env_remove("PACKER_BUILD_NAME")
            .env_remove("PACKER_RUN_UUID")
            .env_remove("ALIBABA_CLOUD_REGION_ID");
    }
    /// `packer build` of the example for the local cloud, in the working folder: in a network namespace with only
    /// a loopback where this machine allows one (root or user namespaces), so the build provably needs no network;
    /// elsewhere with Packer's version check off (CHECKPOINT_DISABLE), its only network use.
    fn packer_build(&self, template_name: &str, image_name: &str) -> Output {
        require("packer");
        let imgport = env!("CARGO_BIN_EXE_imgport");
        let mut c = if offline_namespace() {
            let script = "ip link set lo up 2>/dev/null || true; exec \"$@\"";
            let mut c = Command::new("unshare");
            c.args(["--net", "sh", "-c", script, "sh", "packer"]);
            c
        } else {
            Command::new("packer")
        };
        c.args(["build", "-color=false"])
            .args(["-var", "cloud=local", "-var", &format!("imgport={imgport}")])
            .args(["-var", &format!("image_name={image_name}")])
            .arg(template(template_name))
            .current_dir(self.work());
        self.apply(&mut c);
        c.output().expect("packer runs")
    }
    fn images(&self) -> Vec<Value> {
        let mut c = imgport();
        c.args(["images", "list", "--cloud", "local", "--json"]);
        self.apply(&mut c);
        let out = c.output().expect("imgport runs");
        assert!(out.status.success(), "images list: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("a JSON list")
    }
    fn manifest(&self) -> Value {
        let text = std::fs::read(self.work().join("packer-manifest.json")).expect("packer wrote its manifest");
        serde_json::from_slice(&text).expect("the manifest is JSON")
    }
}

fn text(out: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn packer_builds_and_imgport_imports_the_image_into_the_local_cloud() {
    let env = Env::new(FAST);
    let out = env.packer_build(JSON, "packer-golden");
    let log = text(&out);
    assert!(out.status.success(), "packer build failed:\n{log}");
    assert!(log.contains("Running post-processor: shell-local") && log.contains("imgport: packer"), "{log}");

    // The local cloud holds the image, Available, tagged by the template.
    let images = env.images();
    let image = images.iter().find(|i| i["ImageName"] == "packer-golden").unwrap_or_else(|| panic!("{images:?}"));
    let id = image["ImageId"].as_str().expect("ImageId");
    assert_eq!(image["Status"], "Available", "{image}");
    let tags = image["Tags"].as_array().expect("Tags");
    let tag = |k: &str| tags.iter().find(|t| t["TagKey"] == k).map(|t| t["TagValue"].clone());
    assert_eq!(tag("packer-build"), Some(Value::from("debian12")), "{image}");

    // Packer's manifest: the build's file entry, and imgport's entry of the same run with the image id.
    let m = env.manifest();
    let run = m["last_run_uuid"].as_str().expect("last_run_uuid");
    let builds = m["builds"].as_array().expect("builds");
    assert_eq!(builds.len(), 2, "{m}");
    assert_eq!(builds[0]["files"][0]["name"], "output/debian12.qcow2", "{m}");
    let record = &builds[1];
    assert_eq!(record["name"], "debian12");
    assert_eq!(record["builder_type"], "file");
    assert_eq!(record["packer_run_uuid"], run);
    assert_eq!(record["artifact_id"], format!("cn-hangzhou:{id}"));
    assert_eq!(record["custom_data"]["imgport_image_id"], id);
    assert_eq!(record["custom_data"]["imgport_source"], env.work().join("output/debian12.qcow2").display().to_string());
    assert!(env.work().join("output/debian12.qcow2").exists());
    assert!(!env.work().join("packer-manifest.json.lock").exists());

    // A second build appends to the manifest (Packer reads imgport's entry back) and imports again: a new run.
    let out = env.packer_build(JSON, "packer-golden-2");
    assert!(out.status.success(), "second packer build failed:\n{}", text(&out));
    let m2 = env.manifest();
    let run2 = m2["last_run_uuid"].as_str().expect("last_run_uuid");
    assert_ne!(run2, run);
    let builds = m2["builds"].as_array().expect("builds");
    assert_eq!(builds.len(), 4, "{m2}");
    let id2 = env.images().iter().find(|i| i["ImageName"] == "packer-golden-2").map(|i| i["ImageId"].clone());
    assert_eq!(
        builds[3]["artifact_id"],
        format!("cn-hangzhou:{}", id2.and_then(|v| v.as_str().map(String::from)).unwrap_or_default())
    );
    assert_eq!(builds[3]["packer_run_uuid"], run2);
}

#[test]
fn a_failing_import_fails_the_packer_build() {
    let failing =
        format!("{FAST}[[faults.rules]]\noperation = \"ImportImage\"\nkind = \"create_failed\"\nreason = \"InvalidImage.Format: injected\"\n");
    let env = Env::new(&failing);
    let out = env.packer_build(JSON, "packer-broken");
    let log = text(&out);
    assert!(!out.status.success(), "packer build passed despite the failed import:\n{log}");
    assert!(log.contains("Build 'debian12' errored") && log.contains("Post-processor failed"), "{log}");
    assert!(log.contains("InvalidImage.Format"), "imgport's error shows in Packer's log:\n{log}");
    // No record in the manifest, no usable image in the local cloud.
    let m = env.manifest();
    let builds = m["builds"].as_array().expect("builds");
    assert!(builds.iter().all(|b| b["custom_data"].get("imgport_image_id").is_none()), "{m}");
    assert!(env.images().iter().all(|i| i["ImageName"] != "packer-broken" || i["Status"] != "Available"));
}

/// The HCL2 form of the template does the same (Packer 1.6.6 reads HCL2 too).
#[test]
fn the_hcl2_template_imports_too() {
    let env = Env::new(FAST);
    let out = env.packer_build(HCL, "packer-hcl");
    assert!(out.status.success(), "packer build failed:\n{}", text(&out));
    let id = env
        .images()
        .iter()
        .find(|i| i["ImageName"] == "packer-hcl" && i["Status"] == "Available")
        .map(|i| i["ImageId"].clone());
    let id = id.and_then(|v| v.as_str().map(String::from)).expect("the image is in the local cloud");
    let m = env.manifest();
    let builds = m["builds"].as_array().expect("builds");
    assert_eq!(builds.len(), 2, "{m}");
    assert_eq!(builds[1]["name"], "debian12", "{m}");
    assert_eq!(builds[1]["artifact_id"], format!("cn-hangzhou:{id}"), "{m}");
    assert_eq!(builds[1]["packer_run_uuid"], m["last_run_uuid"], "{m}");
}

/// Outside Packer, on a manifest of Packer's shape: a failed copy (exit 8) is recorded with the image and the copy
/// as `region:failed`; the rerun reuses the image, makes the copy and replaces imgport's entry.
#[test]
fn a_partial_import_is_recorded_and_the_rerun_replaces_the_record() {
    let run = "7c1e2f3a-0d4b-5e6f-8a9b-0c1d2e3f4a5b";
    let manifest = format!(
        "{{\n  \"builds\": [\n    {{\n      \"name\": \"golden\",\n      \"builder_type\": \"qemu\",\n      \"build_time\": 1796355000,\n      \
         \"files\": [{{\"name\": \"output-qemu/golden.qcow2\", \"size\": 406016}}],\n      \"artifact_id\": \"VM\",\n      \
         \"packer_run_uuid\": \"{run}\",\n      \"custom_data\": null\n    }}\n  ],\n  \"last_run_uuid\": \"{run}\"\n}}\n"
    );
    let copy_fails = format!("{FAST}[[faults.rules]]\noperation = \"CopyImage\"\nkind = \"create_failed\"\n");
    let env = Env::new(&copy_fails);
    let work = env.work();
    std::fs::create_dir_all(work.join("output-qemu")).expect("mkdir");
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo-debian12.qcow2");
    std::fs::copy(demo, work.join("output-qemu/golden.qcow2")).expect("copy");
    std::fs::write(work.join("packer-manifest.json"), manifest).expect("manifest");
    let import = |env: &Env| {
        let mut c = imgport();
        c.args(["import", "--packer-manifest", "packer-manifest.json", "--name", "golden", "--cloud", "local"])
            .args(["--copy-to", "cn-shanghai"])
            .current_dir(&work);
        env.apply(&mut c);
        c.output().expect("imgport runs")
    };
    let out = import(&env);
    assert_eq!(out.status.code(), Some(8), "{}", text(&out));
    let m = env.manifest();
    let record = &m["builds"][1];
    let id = record["custom_data"]["imgport_image_id"].as_str().expect("recorded").to_string();
    assert_eq!(record["artifact_id"], format!("cn-hangzhou:{id}"), "{m}");
    assert_eq!(record["custom_data"]["imgport_copies"], "cn-shanghai:failed", "{m}");
    assert_eq!(record["packer_run_uuid"], run, "{m}");

    std::fs::write(env.dir.path().join("local-cloud.toml"), FAST).expect("config");
    let out = import(&env);
    assert!(out.status.success(), "{}", text(&out));
    let m = env.manifest();
    let builds = m["builds"].as_array().expect("builds");
    assert_eq!(builds.len(), 2, "the record is replaced, not added: {m}");
    assert_eq!(builds[1]["custom_data"]["imgport_reused"], "true", "{m}");
    let copy = builds[1]["custom_data"]["imgport_copies"].as_str().expect("copies").to_string();
    let copy_id = copy.strip_prefix("cn-shanghai:").expect("the copy's region").to_string();
    assert!(copy_id.starts_with("m-"), "{copy}");
    assert_eq!(builds[1]["artifact_id"], format!("cn-hangzhou:{id},cn-shanghai:{copy_id}"), "{m}");
}

/// `imgport import --packer-manifest` refusals, without Packer: exit 2 and a message naming the problem.
#[test]
fn bad_packer_manifests_are_refused_with_exit_2() {
    let env = Env::new(FAST);
    let work = env.work();
    let import = |args: &[&str]| {
        let mut c = imgport();
        c.arg("import").args(args).args(["--name", "packer-x", "--cloud", "local"]).current_dir(&work);
        env.apply(&mut c);
        let out = c.output().expect("imgport runs");
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let write = |name: &str, body: &str| std::fs::write(work.join(name), body).expect("write");
    write("html.json", "<html>rate limited</html>");
    write("empty.json", "{\"builds\": [], \"last_run_uuid\": \"r\"}");
    let run = "r-1";
    write(
        "missing.json",
        &format!(
            "{{\"builds\": [{{\"name\": \"disk\", \"builder_type\": \"file\", \"files\": [{{\"name\": \"out/gone.qcow2\", \"size\": 1}}], \
             \"packer_run_uuid\": \"{run}\"}}], \"last_run_uuid\": \"{run}\"}}"
        ),
    );
    write("norun.json", "{\"builds\": [{\"name\": \"disk\", \"files\": [], \"packer_run_uuid\": \"r-0\"}]}");
    let cases: [(&[&str], &str); 7] = [
        (&["--packer-manifest", "html.json"], "is not a Packer manifest: not JSON"),
        (&["--packer-manifest", "empty.json"], "lists no builds"),
        (&["--packer-manifest", "missing.json"], "lists \"out/gone.qcow2\", which does not exist"),
        (&["--packer-manifest", "missing.json", "--build", "other"], "no build named \"other\""),
        (&["--packer-manifest", "norun.json"], "has no last_run_uuid"),
        (&["--packer-manifest", "absent.json"], "cannot read the Packer manifest absent.json"),
        (&["disk.qcow2", "--packer-manifest", "missing.json"], "cannot be used with"),
    ];
    for (args, want) in cases {
        let (code, err) = import(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: expected {want:?} in:\n{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let (code, err) = import(&["disk.qcow2", "--build", "disk"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--packer-manifest"), "{err}");
}
