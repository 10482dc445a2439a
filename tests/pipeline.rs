//! `imgport pipeline` end to end against the local cloud (each test with its own data and state folders): the
//! quickstart pipeline imported and copied, its manifest in Packer's shape, a rerun a no-op and `--force` a reuse;
//! a pipeline run three times over changed content retiring all but the 2 newest images per region; a failed run
//! rerun to the end; `check` pointing at the fault of a broken file.

use crate::common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// Fast imports; the local cloud's other defaults stay.
const FAST: &str = "[cloud]\nimport_seconds = 0.5\n";

/// `imgport ARGS` with the local cloud's and the run records' folders in `home`, the local cloud's settings from
/// `config`.
fn cmd(home: &Path, config: &str, args: &[&str]) -> Command {
    let cfg = home.join("local-cloud.toml");
    std::fs::write(&cfg, config).expect("config");
    let mut c = imgport();
    c.env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_STATE_HOME", home.join("state"))
        .env("IMGPORT_LOCAL_CLOUD_CONFIG", &cfg)
        .env("HOME", home)
        .args(args);
    c
}

/// Runs a command; answers the exit code, stdout as JSON (Null when it is not) and stderr. With `pipeline ... --json`,
/// the document is checked against docs/schemas/pipeline-result.schema.json.
fn run(home: &Path, config: &str, args: &[&str]) -> (i32, Value, String) {
    let out = cmd(home, config, args).output().expect("imgport runs");
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    if args.first() == Some(&"pipeline") && args.contains(&"--json") {
        assert!(json.is_object(), "one JSON document: {}", String::from_utf8_lossy(&out.stdout));
        check_schema("pipeline-result.schema.json", std::slice::from_ref(&json));
    }
    (out.status.code().unwrap_or(-1), json, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn image(home: &Path, id: &str, region: &str) -> Value {
    let (code, out, err) = run(home, FAST, &["images", "show", id, "--cloud", "local", "--region", region, "--json"]);
    assert_eq!(code, 0, "{err}");
    out
}

#[test]
fn quickstart_runs_writes_a_packer_manifest_and_reruns_as_a_no_op() {
    let home = tempfile::tempdir().expect("tempdir");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The quickstart as it is in the repository, beside a copy of the demo image where it expects it.
    std::fs::create_dir_all(home.path().join("pipelines")).expect("mkdir");
    std::fs::create_dir_all(home.path().join("examples")).expect("mkdir");
    std::fs::copy(root.join("pipelines/quickstart.toml"), home.path().join("pipelines/quickstart.toml")).expect("copy");
    std::fs::copy(root.join("examples/demo-debian12.qcow2"), home.path().join("examples/demo-debian12.qcow2"))
        .expect("copy");
    let file = home.path().join("pipelines/quickstart.toml");
    let file = file.to_str().expect("utf-8");

    let (code, _, err) = run(home.path(), FAST, &["pipeline", "check", file]);
    assert_eq!(code, 0, "{err}");
    let (code, plan, err) = run(home.path(), FAST, &["pipeline", "plan", file, "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(plan["would"].to_string().contains("import"), "{plan}");
    let (code, dry, err) = run(home.path(), FAST, &["pipeline", "run", file, "--dry-run", "--json"]);
    assert_eq!((code, dry["status"].as_str()), (0, Some("planned")), "{err}");
    assert!(!home.path().join("pipelines/quickstart-manifest.json").exists(), "a dry run changes nothing");

    let (code, out, err) = run(home.path(), FAST, &["pipeline", "run", file, "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out["status"], "finished", "{out}");
    let images = out["images"].as_object().expect("images").clone();
    assert_eq!(images.len(), 2, "the import region and the copy: {out}");
    let (hz, sh) = (images["cn-hangzhou"].as_str().expect("id"), images["cn-shanghai"].as_str().expect("id"));
    assert_eq!(out["artifact_id"], format!("cn-hangzhou:{hz},cn-shanghai:{sh}"));
    for (id, region) in [(hz, "cn-hangzhou"), (sh, "cn-shanghai")] {
        let i = image(home.path(), id, region);
        assert_eq!(i["Status"], "Available", "{i}");
        assert_eq!(i["ImageFamily"], "quickstart-debian12", "{i}");
    }
    let digest = out["digest"].as_str().expect("digest").to_string();
    assert_eq!(out["image_name"], format!("quickstart-debian12-{}", &digest[..12]));

    // The manifest: Packer's shape, the details as strings in custom_data.
    let manifest_path = home.path().join("pipelines/quickstart-manifest.json");
    let m: Value = serde_json::from_slice(&std::fs::read(&manifest_path).expect("manifest")).expect("json");
    assert_eq!(m["builds"].as_array().map(Vec::len), Some(1), "{m}");
    let b = &m["builds"][0];
    assert_eq!(b["builder_type"], "imgport");
    assert_eq!(b["artifact_id"], out["artifact_id"]);
    assert_eq!(b["packer_run_uuid"], m["last_run_uuid"]);
    assert_eq!(b["packer_run_uuid"], out["run_uuid"]);
    assert!(b["build_time"].as_i64().is_some_and(|t| t > 1_700_000_000), "{b}");
    assert_eq!(
        b["files"][0]["size"],
        std::fs::metadata(home.path().join("examples/demo-debian12.qcow2")).unwrap().len()
    );
    assert!(b["files"][0]["name"].as_str().is_some_and(|n| n.ends_with("demo-debian12.qcow2")), "{b}");
    let custom = b["custom_data"].as_object().expect("custom_data");
    assert!(custom.values().all(Value::is_string), "string values, as Packer's type has them: {b}");
    assert_eq!(custom["digest"], digest.as_str());
    let per_region: Value = serde_json::from_str(custom["images"].as_str().unwrap()).expect("images JSON");
    assert_eq!(per_region, Value::Object(images.clone()));
    let steps: Value = serde_json::from_str(custom["steps"].as_str().unwrap()).expect("steps JSON");
    let names: Vec<&str> = steps.as_array().unwrap().iter().filter_map(|s| s["step"].as_str()).collect();
    for s in ["source", "validate", "upload", "wait", "distribute", "retain"] {
        assert!(names.contains(&s), "{s} in {names:?}");
    }

    // Unchanged content: a no-op, the same ids, the manifest untouched.
    let (code, again, err) = run(home.path(), FAST, &["pipeline", "run", file, "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(again["status"], "up_to_date", "{again}");
    assert_eq!(again["artifact_id"], out["artifact_id"]);
    assert!(!err.contains("upload"), "nothing uploaded: {err}");
    let m2: Value = serde_json::from_slice(&std::fs::read(&manifest_path).expect("manifest")).expect("json");
    assert_eq!(m2, m);
    let (code, text, err) = {
        let o = cmd(home.path(), FAST, &["pipeline", "run", file]).output().expect("runs");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    assert_eq!(code, Some(0), "{err}");
    assert!(text.contains("up to date"), "{text}");
    assert!(err.contains("unchanged since it was digested"), "the image is not read again: {err}");

    // --force: the import runs again and reuses the images; a second build in the manifest.
    let (code, forced, err) = run(home.path(), FAST, &["pipeline", "run", file, "--force", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(forced["import"]["reused"], true, "{forced}");
    assert_eq!(forced["import"]["digest"], digest.as_str(), "the import takes the run's digest");
    assert_eq!(forced["artifact_id"], out["artifact_id"]);
    let m3: Value = serde_json::from_slice(&std::fs::read(&manifest_path).expect("manifest")).expect("json");
    assert_eq!(m3["builds"].as_array().map(Vec::len), Some(2), "{m3}");
    assert_eq!(m3["last_run_uuid"], forced["run_uuid"]);
    assert_ne!(m3["last_run_uuid"], m["last_run_uuid"]);
}

/// A copy of a guest image with one more MiB stamped with `stamp`: the same guest, other content.
fn stamped(dir: &Path, stamp: u8) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("golden.raw");
    let tmp = dir.join("golden.raw.tmp");
    std::fs::copy(guest_images().join("mbr-bios-ext4.raw"), &tmp).expect("copy");
    let mut f = std::fs::OpenOptions::new().append(true).open(&tmp).expect("open");
    f.write_all(&vec![stamp; 1 << 20]).expect("stamp");
    drop(f);
    std::fs::rename(&tmp, &path).expect("rename");
    path
}

#[test]
fn three_runs_over_changed_content_keep_the_two_newest_per_region() {
    let home = tempfile::tempdir().expect("tempdir");
    let out_dir = home.path().join("out");
    std::fs::create_dir_all(&out_dir).expect("mkdir");
    let file = home.path().join("golden.toml");
    std::fs::write(
        &file,
        r#"cloud = "local"
region = "cn-hangzhou"
[source]
glob = "out/*.raw"
[convert]
format = "qcow2"
keep = "converted/golden-{digest}.qcow2"
[import]
name = "golden-{var.CHANNEL}-{digest}"
family = "golden"
tags = { channel = "{var.CHANNEL}" }
[distribute]
copy_to = ["cn-shanghai"]
share_with = ["123456789012"]
[retain]
keep = 2
delete_after = "never"
[outputs]
manifest = "manifest.json"
"#,
    )
    .expect("write");
    let file = file.to_str().expect("utf-8");
    let (mut names, mut ids) = (Vec::new(), Vec::new());
    for stamp in 1..=3u8 {
        let source = stamped(&out_dir, stamp);
        let (code, out, err) = run(home.path(), FAST, &["pipeline", "run", file, "--var", "CHANNEL=stable", "--json"]);
        assert_eq!(code, 0, "run {stamp}: {out}\n{err}");
        assert_eq!(out["status"], "finished", "{out}");
        names.push(out["image_name"].as_str().expect("name").to_string());
        ids.push(out["images"].clone());
        // Converted on the way (the raw would go as it is), the qcow2 kept, its content the source's.
        assert_eq!(out["import"]["upload"], "convert_to_qcow2", "{out}");
        let digest = out["digest"].as_str().expect("digest");
        let kept = home.path().join(format!("converted/golden-{}.qcow2", &digest[..12]));
        let cmp =
            Command::new("qemu-img").args(["compare", "-f", "raw", "-F", "qcow2"]).arg(&source).arg(&kept).output();
        assert!(cmp.is_ok_and(|o| o.status.success()), "{} holds the source's content", kept.display());
        assert_eq!(out["import"]["shared_with"], serde_json::json!(["123456789012"]), "{out}");
        let retired = out["retired"].as_array().map(Vec::len).unwrap_or(0);
        // The third run's retention deprecates the first run's image in both regions.
        assert_eq!(retired, if stamp == 3 { 2 } else { 0 }, "run {stamp}: {out}");
    }
    assert!(names.iter().all(|n| n.starts_with("golden-stable-")), "{names:?}");
    for region in ["cn-hangzhou", "cn-shanghai"] {
        let (code, list, err) = run(
            home.path(),
            FAST,
            &["images", "list", "--family", "golden", "--cloud", "local", "--region", region, "--json"],
        );
        assert_eq!(code, 0, "{err}");
        let mut status: Vec<(String, String)> = list
            .as_array()
            .expect("images")
            .iter()
            .map(|i| {
                (i["ImageName"].as_str().unwrap_or("").to_string(), i["Status"].as_str().unwrap_or("").to_string())
            })
            .collect();
        status.sort();
        let mut expected: Vec<(String, String)> = names
            .iter()
            .enumerate()
            .map(|(n, name)| (name.clone(), if n == 0 { "Deprecated" } else { "Available" }.to_string()))
            .collect();
        expected.sort();
        assert_eq!(status, expected, "{region}: 2 Available and the oldest Deprecated (never deleted)");
    }
    // The plan of a fourth run with unchanged content: skipped, nothing more to retire.
    let (code, plan, err) = run(home.path(), FAST, &["pipeline", "plan", file, "--var", "CHANNEL=stable", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(plan["would"][0].as_str().is_some_and(|w| w.starts_with("skip")), "{plan}");
    let (code, out, err) = run(home.path(), FAST, &["pipeline", "run", file, "--var", "CHANNEL=stable", "--json"]);
    assert_eq!((code, out["status"].as_str()), (0, Some("up_to_date")), "{err}");
    let m: Value =
        serde_json::from_slice(&std::fs::read(home.path().join("manifest.json")).expect("manifest")).unwrap();
    assert_eq!(m["builds"].as_array().map(Vec::len), Some(3), "one build per run that did something");
    // A template variable with no value is an error at its place in the file.
    let (code, _, err) = run(home.path(), FAST, &["pipeline", "run", file, "--json"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("golden.toml:9:8: import.name: {var.CHANNEL} has no value"), "{err}");

    // An image someone else shared too is never retired: the second run's image, shared from cn-hangzhou with
    // another account, stays Available there when a fourth content makes it the oldest kept; its copy in
    // cn-shanghai, shared only by the pipeline, is deprecated.
    let second = ids[1]["cn-hangzhou"].as_str().expect("image id");
    let (code, _, err) = run(
        home.path(),
        FAST,
        &["images", "share", second, "--account", "999999999999", "--cloud", "local", "--region", "cn-hangzhou"],
    );
    assert_eq!(code, 0, "{err}");
    stamped(&out_dir, 4);
    let (code, out, err) = run(home.path(), FAST, &["pipeline", "run", file, "--var", "CHANNEL=stable", "--json"]);
    assert_eq!(code, 0, "{err}");
    let retired: Vec<&str> =
        out["retired"].as_array().expect("retired").iter().filter_map(|d| d["image_id"].as_str()).collect();
    assert_eq!(retired, [ids[1]["cn-shanghai"].as_str().expect("copy id")], "{out}");
    assert_eq!(image(home.path(), second, "cn-hangzhou")["Status"], "Available");
}

#[test]
fn a_failed_run_reruns_to_the_end() {
    let home = tempfile::tempdir().expect("tempdir");
    let file = home.path().join("retry.toml");
    let source = guest_images().join("deb-xfs.raw");
    std::fs::write(
        &file,
        format!(
            "cloud = \"local\"\n[source]\npath = {:?}\n[import]\nname = \"retry-{{digest}}\"\n[outputs]\nmanifest = \"m.json\"\n",
            source.to_str().expect("utf-8")
        ),
    )
    .expect("write");
    let file = file.to_str().expect("utf-8");
    let failing = format!("{FAST}[[faults.rules]]\noperation = \"ImportImage\"\nkind = \"create_failed\"\n");
    let (code, out, err) = run(home.path(), &failing, &["pipeline", "run", file, "--json"]);
    assert_eq!(code, 6, "the import's exit code: {err}");
    assert_eq!(out["status"], "failed", "{out}");
    assert!(!home.path().join("m.json").exists(), "no manifest for a failed run");
    let (code, out, err) = run(home.path(), FAST, &["pipeline", "run", file, "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out["status"], "finished", "a failed run is not a finished one: {out}");
    assert!(err.contains("resuming after run"), "{err}");
    let (code, out, _) = run(home.path(), FAST, &["pipeline", "run", file, "--json"]);
    assert_eq!((code, out["status"].as_str()), (0, Some("up_to_date")));
}

#[test]
fn check_points_at_the_fault() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/pipeline/tests/fixtures/pipelines");
    let home = tempfile::tempdir().expect("tempdir");
    let f = dir.join("negative-keep.toml");
    let (code, _, err) = run(home.path(), FAST, &["pipeline", "check", f.to_str().expect("utf-8")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("negative-keep.toml:9:8: retain.keep: must be at least 1, not -2"), "{err}");
    let (code, _, err) = run(home.path(), FAST, &["pipeline", "run", f.to_str().expect("utf-8")]);
    assert_eq!(code, 2, "run refuses it too: {err}");
}

/// kill -9 during the upload, then the rerun: the run record says the run did not finish, the rerun continues (the
/// upload resumes from the parts already sent) and there is one image.
#[test]
fn a_run_killed_during_the_upload_resumes_it_on_rerun() {
    use std::process::Stdio;
    use std::time::Duration;
    let home = tempfile::tempdir().expect("tempdir");
    let file = home.path().join("killed.toml");
    let source = guest_images().join("mbr-bios-ext4.raw");
    std::fs::write(
        &file,
        format!(
            "cloud = \"local\"\n[source]\npath = {:?}\n[import]\nname = \"killed-{{digest}}\"\npart_size = \"128K\"\n\
             concurrency = 2\n",
            source.to_str().expect("utf-8")
        ),
    )
    .expect("write");
    let file = file.to_str().expect("utf-8");
    // Four parts go at once, the rest wait 4 s each.
    let slow =
        format!("{FAST}[[faults.rules]]\noperation = \"UploadPart\"\nkind = \"latency\"\nms = 4000\nafter = 4\n");
    let mut child = cmd(home.path(), &slow, &["pipeline", "run", file])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("imgport starts");
    let mut stderr = child.stderr.take().expect("stderr");
    let seen = read_until(&mut stderr, "preflight");
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    assert_eq!(child.wait().expect("ends").code(), None, "killed: {seen}");

    let (code, out, err) = run(home.path(), FAST, &["pipeline", "run", file, "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out["status"], "finished", "{out}");
    assert!(err.contains("resuming after run"), "the record of the killed run is found: {err}");
    let summary = &out["import"]["upload_summary"];
    let (parts, resumed, sent) =
        (summary["parts"].as_u64(), summary["resumed_parts"].as_u64(), summary["sent_parts"].as_u64());
    assert!(resumed.is_some_and(|r| r >= 4), "the parts sent before the kill were kept: {summary}");
    assert_eq!(sent.zip(resumed).map(|(s, r)| s + r), parts, "only the rest was sent: {summary}");
    let name = out["image_name"].as_str().expect("name");
    let (code, list, err) = run(home.path(), FAST, &["images", "list", "--name", name, "--cloud", "local", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(list.as_array().map(Vec::len), Some(1), "one image: {list}");
}

/// A Packer manifest as the source: the file of its last run's build, whose name fills `{build}` and names the
/// build imgport's manifest appends.
#[test]
fn a_packer_manifest_source_names_the_build() {
    let home = tempfile::tempdir().expect("tempdir");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = home.path().join("output-qemu");
    std::fs::create_dir_all(&out).expect("mkdir");
    std::fs::copy(root.join("examples/demo-debian12.qcow2"), out.join("disk.qcow2")).expect("copy");
    std::fs::write(
        home.path().join("packer-manifest.json"),
        r#"{"builds": [{"name": "qemu", "builder_type": "qemu", "build_time": 1,
            "files": [{"name": "output-qemu/disk.qcow2", "size": 406016}], "artifact_id": "x",
            "packer_run_uuid": "run-1", "custom_data": null}], "last_run_uuid": "run-1"}"#,
    )
    .expect("write");
    let file = home.path().join("packer.toml");
    std::fs::write(
        &file,
        "cloud = \"local\"\n[source]\npacker_manifest = \"packer-manifest.json\"\nbuild = \"qemu\"\n[import]\n\
         name = \"pk-{build}-{digest}\"\n[outputs]\nmanifest = \"imgport-manifest.json\"\n",
    )
    .expect("write");
    let (code, res, err) = run(home.path(), FAST, &["pipeline", "run", file.to_str().expect("utf-8"), "--json"]);
    assert_eq!(code, 0, "{err}");
    let name = res["image_name"].as_str().expect("name");
    assert!(name.starts_with("pk-qemu-"), "{res}");
    assert!(res["source"].as_str().is_some_and(|s| s.ends_with("output-qemu/disk.qcow2")), "{res}");
    let m: Value =
        serde_json::from_slice(&std::fs::read(home.path().join("imgport-manifest.json")).expect("manifest")).unwrap();
    assert_eq!(m["builds"][0]["name"], "qemu", "{m}");
    assert_eq!(m["builds"][0]["artifact_id"], res["artifact_id"]);
}

/// `source.command` builds the source first (in the file's folder; its output shown as `build_output` events and
/// recorded); a failing build stops the run with exit 9 before anything is imported, its output and exit code in
/// the run record. The webhook receives the run's manifest, retried past a 503, and its URL's token is never
/// printed.
#[test]
fn a_build_command_makes_the_source_and_the_webhook_gets_the_manifest() {
    use std::io::{BufRead, BufReader, Read, Write};
    let home = tempfile::tempdir().expect("tempdir");
    let source = guest_images().join("mbr-bios-ext4.raw");
    // A webhook receiver: the first delivery answered 503, the second 200; the bodies kept.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("address").port();
    let receiver = std::thread::spawn(move || {
        let mut bodies = Vec::new();
        for (n, conn) in listener.incoming().take(2).enumerate() {
            let mut conn = conn.expect("connection");
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            let (mut line, mut len, mut first) = (String::new(), 0usize, String::new());
            loop {
                line.clear();
                reader.read_line(&mut line).expect("header");
                if first.is_empty() {
                    first = line.trim_end().to_string();
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().expect("length");
                }
                if line == "\r\n" || line.is_empty() {
                    break;
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).expect("body");
            bodies.push((first, String::from_utf8_lossy(&body).into_owned()));
            let status = if n == 0 { "503 Service Unavailable" } else { "200 OK" };
            write!(conn, "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").expect("answer");
        }
        bodies
    });
    let pipeline = |name: &str, command: &str| {
        let file = home.path().join(format!("{name}.toml"));
        std::fs::write(
            &file,
            format!(
                "cloud = \"local\"\n[source]\npath = \"out/{name}.raw\"\ncommand = {command}\n[import]\n\
                 name = \"{name}-{{digest}}\"\n[outputs]\nwebhook = \"http://127.0.0.1:{port}/hooks/{{var.HOOK_TOKEN}}\"\n"
            ),
        )
        .expect("write");
        file.to_str().expect("utf-8").to_string()
    };
    let cp = format!("[\"sh\", \"-c\", \"mkdir -p out && cp {} out/built.raw && echo built it\"]", source.display());
    let built = pipeline("built", &cp);
    let (code, out, err) =
        run(home.path(), FAST, &["pipeline", "run", &built, "--json", "--var", "HOOK_TOKEN=SECRET-TOKEN-42"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out["status"], "finished", "{out}");
    assert!(err.contains(r#""event":"build_output","line":"built it","stream":"stdout""#), "{err}");
    let steps: Vec<&str> = out["steps"].as_array().expect("steps").iter().filter_map(|s| s["step"].as_str()).collect();
    assert_eq!(steps.first(), Some(&"build"), "{steps:?}");
    assert!(steps.contains(&"webhook"), "{steps:?}");
    assert!(!err.contains("SECRET-TOKEN-42") && !out.to_string().contains("SECRET-TOKEN-42"), "the token is not shown");
    let bodies = receiver.join().expect("receiver");
    assert_eq!(bodies.len(), 2, "retried after the 503");
    assert_eq!(bodies[1].0, "POST /hooks/SECRET-TOKEN-42 HTTP/1.1", "the URL's {{var.HOOK_TOKEN}} rendered");
    let delivered: Value = serde_json::from_str(&bodies[1].1).expect("JSON body");
    assert_eq!(delivered["builds"][0]["artifact_id"], out["artifact_id"], "{delivered}");
    assert_eq!(delivered["last_run_uuid"], out["run_uuid"], "{delivered}");

    let failing = pipeline("broken", "[\"sh\", \"-c\", \"echo compiling; echo disk full >&2; exit 3\"]");
    let (code, out, err) = run(home.path(), FAST, &["pipeline", "run", &failing, "--json", "--var", "HOOK_TOKEN=x"]);
    assert_eq!(code, 9, "{err}");
    assert!(out["error"].as_str().is_some_and(|e| e.contains("failed (exit 3)")), "{out}");
    let records = home.path().join("state/imgport/pipelines");
    let record = std::fs::read_dir(&records)
        .expect("records")
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).expect("record"))
        .find(|t| t.contains("\"broken\""))
        .expect("the failed build's record");
    let record: Value = serde_json::from_str(&record).expect("JSON");
    assert_eq!((record["status"].as_str(), record["build"]["exit_code"].as_i64()), (Some("failed"), Some(3)));
    let mut tail: Vec<&str> = record["build"]["output_tail"].as_str().expect("output").lines().collect();
    tail.sort_unstable();
    assert_eq!(tail, ["compiling", "disk full"], "both streams kept: {record}");
}

/// kill -9 during the wait, then the rerun: it takes up the import the killed run registered (reused, nothing
/// uploaded again) and there is one image.
#[test]
fn a_run_killed_during_the_wait_takes_up_its_import_on_rerun() {
    use std::process::Stdio;
    let home = tempfile::tempdir().expect("tempdir");
    let file = home.path().join("waited.toml");
    let source = guest_images().join("mbr-bios-ext4.raw");
    std::fs::write(
        &file,
        format!(
            "cloud = \"local\"\n[source]\npath = {:?}\n[import]\nname = \"waited-{{digest}}\"\n",
            source.to_str().expect("utf-8")
        ),
    )
    .expect("write");
    let file = file.to_str().expect("utf-8");
    let slow = "[cloud]\nimport_seconds = 6\n";
    let mut child = cmd(home.path(), slow, &["pipeline", "run", file, "--json"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("imgport starts");
    let mut stderr = child.stderr.take().expect("stderr");
    read_until(&mut stderr, r#""event":"step_started","step":"wait""#);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    assert_eq!(child.wait().expect("ends").code(), None, "killed");

    let (code, out, err) = run(home.path(), slow, &["pipeline", "run", file, "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out["status"], "finished", "{out}");
    assert!(err.contains("resuming after run"), "{err}");
    assert_eq!(out["import"]["reused"], true, "the registered import is taken up: {out}");
    assert!(out["import"]["upload_summary"].is_null(), "nothing uploaded again: {out}");
    let name = out["image_name"].as_str().expect("name");
    let (code, list, err) = run(home.path(), FAST, &["images", "list", "--name", name, "--cloud", "local", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(list.as_array().map(Vec::len), Some(1), "one image: {list}");
}
