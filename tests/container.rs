//! The container image as built (scripts/build-container.sh: the static binary, then buildah from scratch, as an
//! OCI image layout): every blob matches its digest, the config runs `/imgport` as a non-root user, the layer holds
//! what the Dockerfile puts there, the binary asks for no dynamic loader, and the quickstart pipeline runs from the
//! image's root filesystem — chrooted into it as the image's user, so nothing of the host's libraries is there.
//! Podman then runs the quickstart pipeline in the image as a scheduler would.

use crate::common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

const UID: u32 = 65532;

/// Builds the image (once per test process, one build at a time across processes) and returns the folder holding
/// `oci/` and `imgport.oci.tar`. The script's cargo build is incremental: after the first, it only links anew.
fn built() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        require("buildah");
        require("readelf");
        require("tar");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("container-image");
        std::fs::create_dir_all(dir.parent().expect("parent")).expect("mkdir");
        let lock = std::fs::File::create(dir.with_extension("lock")).expect("container build lock");
        lock.lock().expect("lock the container build");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-container.sh");
        let started = std::time::Instant::now();
        let out = Command::new("bash").arg(&script).arg(&dir).output().expect("runs build-container.sh");
        assert!(
            out.status.success(),
            "build-container.sh failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("container image built in {:.0?}", started.elapsed());
        dir
    })
}

/// A blob of the layout, checked against its digest and size.
fn blob(layout: &Path, descriptor: &Value) -> Vec<u8> {
    let digest = descriptor["digest"].as_str().expect("digest");
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    let bytes = std::fs::read(layout.join("blobs/sha256").join(hex)).expect("blob");
    assert_eq!(format!("{:x}", Sha256::digest(&bytes)), hex, "blob {digest} matches its digest");
    assert_eq!(Some(bytes.len() as u64), descriptor["size"].as_u64(), "blob {digest} has its size");
    bytes
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("JSON")
}

/// An ELF file's program header types.
fn program_headers(elf: &[u8]) -> Vec<u32> {
    assert_eq!(&elf[..4], b"\x7fELF", "an ELF file");
    assert_eq!((elf[4], elf[5]), (2, 1), "64-bit little-endian");
    assert_eq!(u16::from_le_bytes([elf[0x12], elf[0x13]]), 0x3e, "x86-64");
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().expect("8 bytes")) as usize;
    let phentsize = u16::from_le_bytes([elf[0x36], elf[0x37]]) as usize;
    let phnum = u16::from_le_bytes([elf[0x38], elf[0x39]]) as usize;
    (0..phnum)
        .map(|i| {
            let at = phoff + i * phentsize;
            u32::from_le_bytes(elf[at..at + 4].try_into().expect("4 bytes"))
        })
        .collect()
}

/// `tar -tv` of a layer: (mode string, uid/gid, path) per entry.
fn listing(layer: &Path) -> Vec<(String, String, String)> {
    let out = Command::new("tar").arg("--numeric-owner").arg("-tvf").arg(layer).output().expect("tar runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let path = f[5..].join(" ");
            (f[0].to_string(), f[1].to_string(), path.trim_start_matches("./").trim_end_matches('/').to_string())
        })
        .collect()
}

/// A command running `/imgport ARGS` from the root filesystem as the image's config says: chrooted into it as its
/// user with its environment when the test runs as root (CI), else the binary in place with the image's absolute
/// paths (HOME, arguments) moved under the root filesystem.
fn in_image(rootfs: &Path, env: &[(String, String)], args: &[&str]) -> Command {
    let mut c;
    if unsafe { libc::geteuid() } == 0 {
        // Found on the test's PATH: the child's environment is the image's alone.
        let found = Command::new("sh").args(["-c", "command -v chroot"]).output().expect("sh runs");
        assert!(found.status.success(), "chroot (coreutils) is missing");
        c = Command::new(String::from_utf8_lossy(&found.stdout).trim());
        c.arg(format!("--userspec={UID}:{UID}")).arg(rootfs).arg("/imgport");
        c.env_clear();
        for (k, v) in env {
            c.env(k, v);
        }
    } else {
        eprintln!("not root: running {}/imgport in place, not chrooted", rootfs.display());
        c = Command::new(rootfs.join("imgport"));
        c.env_clear();
        for (k, v) in env {
            let v = if v.starts_with('/') && k != "PATH" { format!("{}{v}", rootfs.display()) } else { v.clone() };
            c.env(k, v);
        }
    }
    let as_root = unsafe { libc::geteuid() } == 0;
    c.args(args.iter().map(|a| {
        if !as_root && a.starts_with('/') {
            format!("{}{a}", rootfs.display())
        } else {
            a.to_string()
        }
    }));
    c
}

/// The quickstart pipeline as the image sees it, under the user's home.
const QUICKSTART: &str = "/home/nonroot/quickstart/pipelines/quickstart.toml";

/// Puts the quickstart pipeline, the demo image and fast local cloud settings into `home` (the image's
/// /home/nonroot), writable by the image's user.
fn quickstart_in(home: &Path) {
    for d in ["quickstart/pipelines", "quickstart/examples"] {
        std::fs::create_dir_all(home.join(d)).expect("mkdir");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(root.join("pipelines/quickstart.toml"), home.join("quickstart/pipelines/quickstart.toml"))
        .expect("copy");
    std::fs::copy(root.join("examples/demo-debian12.qcow2"), home.join("quickstart/examples/demo-debian12.qcow2"))
        .expect("copy");
    std::fs::write(home.join("local-cloud.toml"), "[cloud]\nimport_seconds = 0.5\n").expect("config");
    if unsafe { libc::geteuid() } == 0 {
        for d in ["", "quickstart", "quickstart/pipelines", "quickstart/examples"] {
            std::os::unix::fs::chown(home.join(d), Some(UID), Some(UID)).expect("chown");
        }
    }
}

/// The quickstart's run finished with an image in each region, its manifest written, and the images are in the
/// local cloud the run left in `home`: the host's imgport finds them Available there.
fn quickstart_ran(out: &std::process::Output, home: &Path) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let result: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    check_schema("pipeline-result.schema.json", std::slice::from_ref(&result));
    assert_eq!(result["status"], "finished", "{result}");
    let images = result["images"].as_object().expect("images");
    let (hz, sh) = (images["cn-hangzhou"].as_str().expect("id"), images["cn-shanghai"].as_str().expect("id"));
    assert!(hz.starts_with("m-") && sh.starts_with("m-") && hz != sh, "{result}");
    assert_eq!(result["artifact_id"], format!("cn-hangzhou:{hz},cn-shanghai:{sh}"));
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(home.join("quickstart/pipelines/quickstart-manifest.json")).expect("the pipeline's manifest"),
    )
    .expect("JSON");
    assert_eq!(manifest["builds"][0]["artifact_id"], result["artifact_id"]);
    for (id, region) in [(hz, "cn-hangzhou"), (sh, "cn-shanghai")] {
        let out = imgport()
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("IMGPORT_LOCAL_CLOUD_CONFIG", home.join("local-cloud.toml"))
            .args(["images", "show", id, "--cloud", "local", "--region", region, "--json"])
            .output()
            .expect("runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let image: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(image["Status"], "Available", "{image}");
        assert_eq!(image["ImageFamily"], "quickstart-debian12", "{image}");
    }
}

#[test]
fn the_image_runs_the_quickstart_pipeline_from_its_root_filesystem() {
    let dir = built();
    let layout = dir.join("oci");

    // The layout: the tagged manifest, the config, one layer; every blob as its digest says.
    let layout_marker = json(&std::fs::read(layout.join("oci-layout")).expect("oci-layout"));
    assert_eq!(layout_marker["imageLayoutVersion"], "1.0.0");
    let index = json(&std::fs::read(layout.join("index.json")).expect("index.json"));
    let manifests = index["manifests"].as_array().expect("manifests");
    let tagged: Vec<&Value> =
        manifests.iter().filter(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "imgport").collect();
    assert_eq!(tagged.len(), 1, "one manifest tagged imgport: {index}");
    assert_eq!(tagged[0]["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    let manifest = json(&blob(&layout, tagged[0]));
    assert_eq!(manifest["config"]["mediaType"], "application/vnd.oci.image.config.v1+json");
    let config = json(&blob(&layout, &manifest["config"]));
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "one layer from scratch: {manifest}");

    // The config: /imgport as the entrypoint, a non-root user, HOME in its writable home.
    assert_eq!((config["os"].as_str(), config["architecture"].as_str()), (Some("linux"), Some("amd64")));
    let c = &config["config"];
    assert_eq!(c["Entrypoint"], serde_json::json!(["/imgport"]), "{config}");
    assert_eq!(c["User"], format!("{UID}:{UID}"), "{config}");
    assert_eq!(c["WorkingDir"], "/home/nonroot", "{config}");
    let env: Vec<(String, String)> = c["Env"]
        .as_array()
        .expect("Env")
        .iter()
        .filter_map(|e| e.as_str()?.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    assert!(env.contains(&("HOME".into(), "/home/nonroot".into())), "{env:?}");

    // The layer, uncompressed or gzip: its uncompressed digest is the config's diff_id.
    let layer_path =
        layout.join("blobs/sha256").join(layers[0]["digest"].as_str().unwrap().trim_start_matches("sha256:"));
    let layer = blob(&layout, &layers[0]);
    let media = layers[0]["mediaType"].as_str().expect("mediaType");
    let tar_bytes = match media {
        "application/vnd.oci.image.layer.v1.tar" => layer,
        "application/vnd.oci.image.layer.v1.tar+gzip" => {
            let out = Command::new("gzip").arg("-dc").arg(&layer_path).output().expect("gzip runs");
            assert!(out.status.success());
            out.stdout
        }
        other => panic!("a layer of type {other}"),
    };
    assert_eq!(config["rootfs"]["diff_ids"][0], format!("sha256:{:x}", Sha256::digest(&tar_bytes)));

    // What the layer holds: the binary, the CA bundle, users, /tmp for all, the user's home.
    let entries = listing(&layer_path);
    let entry = |path: &str| {
        entries.iter().find(|e| e.2 == path).unwrap_or_else(|| panic!("{path} in the layer: {entries:?}")).clone()
    };
    assert_eq!(entry("imgport").0, "-rwxr-xr-x");
    assert_eq!(entry("imgport").1, "0/0");
    assert_eq!(entry("tmp").0, "drwxrwxrwt");
    assert_eq!(entry("home/nonroot").1, format!("{UID}/{UID}"));
    for f in ["etc/ssl/certs/ca-certificates.crt", "etc/passwd", "etc/group", "etc/nsswitch.conf"] {
        assert!(entry(f).0.starts_with("-rw-r--r--"), "{:?}", entry(f));
    }
    assert!(entries.iter().all(|e| !e.2.contains(".wh.")), "no whiteouts: {entries:?}");

    // Unpacked: the binary is static (no PT_INTERP), the user exists, the bundle holds certificates.
    let work = tempfile::tempdir().expect("tempdir");
    let rootfs = work.path().join("rootfs");
    std::fs::create_dir(&rootfs).expect("mkdir");
    let out = Command::new("tar").arg("-xf").arg(&layer_path).arg("-C").arg(&rootfs).output().expect("tar runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let elf = std::fs::read(rootfs.join("imgport")).expect("the binary");
    let headers = program_headers(&elf);
    assert!(headers.contains(&1), "loadable segments: {headers:?}");
    assert!(!headers.contains(&3), "no PT_INTERP: the binary needs no dynamic loader: {headers:?}");
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).expect("passwd");
    assert!(passwd.lines().any(|l| l.starts_with(&format!("nonroot:x:{UID}:{UID}:"))), "{passwd}");
    let bundle = std::fs::read_to_string(rootfs.join("etc/ssl/certs/ca-certificates.crt")).expect("CA bundle");
    assert!(bundle.matches("BEGIN CERTIFICATE").count() > 50, "a CA bundle");
    if unsafe { libc::geteuid() } == 0 {
        // tar as root keeps the layer's owners: the home belongs to the image's user.
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(rootfs.join("home/nonroot")).expect("home").uid(), UID);
    }

    // `--version`, from the image: the version its label carries.
    let out = in_image(&rootfs, &env, &["--version"]).output().expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(version.starts_with(concat!("imgport ", env!("CARGO_PKG_VERSION"))), "{version}");
    assert_eq!(
        Some(version.trim_start_matches("imgport ")),
        c["Labels"]["org.opencontainers.image.version"].as_str(),
        "{config}"
    );

    // Names resolve through the image's /etc/hosts (glibc's files lookup is linked in): a call to localhost finds
    // nothing listening rather than failing to resolve.
    let mut with_endpoint = env.clone();
    with_endpoint.extend([
        ("IMGPORT_ECS_ENDPOINT".to_string(), "http://localhost:9".to_string()),
        ("ALIBABA_CLOUD_ACCESS_KEY_ID".to_string(), "LTAI-test".to_string()),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET".to_string(), "test".to_string()),
    ]);
    let out = in_image(&rootfs, &with_endpoint, &["images", "list", "--region", "cn-hangzhou"]).output().expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("Connection refused") && !err.contains("dns error"), "{err}");

    // The quickstart pipeline, run by the image's binary in its root filesystem: the files under the user's home,
    // the local cloud's and the run records' folders there too (HOME from the config's Env).
    let home = rootfs.join("home/nonroot");
    quickstart_in(&home);
    let mut env = env.clone();
    env.push(("IMGPORT_LOCAL_CLOUD_CONFIG".into(), "/home/nonroot/local-cloud.toml".into()));
    let out = in_image(&rootfs, &env, &["pipeline", "run", QUICKSTART, "--json"]).output().expect("runs");
    quickstart_ran(&out, &home);

    // The OCI archive is the same layout in one file.
    let archive = dir.join("imgport.oci.tar");
    let names = listing(&archive);
    assert!(names.iter().any(|e| e.2 == "index.json"), "{names:?}");
    assert!(names.iter().any(
        |e| e.2 == format!("blobs/sha256/{}", layers[0]["digest"].as_str().unwrap().trim_start_matches("sha256:"))
    ));
}

/// The image run by podman, as a scheduler would run it: from the OCI layout, as its user, no network, the home a
/// volume. Podman keeps its storage in the test's folder. runc, not crun: crun refuses the test VMs' hybrid cgroup
/// layout; and the limits are the test's own, which a container may not raise.
#[test]
fn podman_runs_the_quickstart_pipeline_in_the_image() {
    require("podman");
    require("runc");
    let dir = built();
    let work = tempfile::tempdir().expect("tempdir");
    let home = work.path().join("home");
    quickstart_in(&home);
    let limit = |resource| {
        let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        assert_eq!(unsafe { libc::getrlimit(resource, &mut r) }, 0);
        r.rlim_max
    };
    let nofile = limit(libc::RLIMIT_NOFILE);
    let nproc = limit(libc::RLIMIT_NPROC).min(32768);
    let out = Command::new("podman")
        .arg("--root")
        .arg(work.path().join("storage"))
        .arg("--runroot")
        .arg(work.path().join("run"))
        .args(["--storage-driver", "vfs", "--runtime", "runc", "run", "--rm", "--network", "none"])
        .arg(format!("--ulimit=nofile={nofile}:{nofile}"))
        .arg(format!("--ulimit=nproc={nproc}:{nproc}"))
        .arg("--volume")
        .arg(format!("{}:/home/nonroot", home.display()))
        .args(["--env", "IMGPORT_LOCAL_CLOUD_CONFIG=/home/nonroot/local-cloud.toml"])
        .arg(format!("oci:{}:imgport", dir.join("oci").display()))
        .args(["pipeline", "run", QUICKSTART, "--json"])
        .output()
        .expect("podman runs");
    quickstart_ran(&out, &home);
    if unsafe { libc::geteuid() } == 0 {
        // Rootful podman: the files the run wrote in the volume belong to the image's user.
        use std::os::unix::fs::MetadataExt;
        let manifest = home.join("quickstart/pipelines/quickstart-manifest.json");
        assert_eq!(std::fs::metadata(manifest).expect("manifest").uid(), UID);
    }
}

/// The Dockerfile (built where a daemon and the network are) describes the image the script builds: the same
/// profile, target and static linking, the same base, user, entrypoint and files. Both can only drift apart here.
#[test]
fn the_dockerfile_describes_the_image_the_script_builds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docker = std::fs::read_to_string(root.join("Dockerfile")).expect("Dockerfile");
    let script = std::fs::read_to_string(root.join("scripts/build-container.sh")).expect("script");
    for both in [
        "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS=\"-C target-feature=+crt-static\"",
        "--profile container",
        "--bin imgport",
        "--locked",
        "container/rootfs/etc",
        "/etc/ssl/certs/ca-certificates.crt",
        "1777",
        "/home/nonroot",
    ] {
        assert!(docker.contains(both) && script.contains(both), "{both} in the Dockerfile and the script");
    }
    let stages: Vec<&str> = docker.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(stages, ["FROM rust:1-bookworm AS build", "FROM scratch"]);
    let last_stage = &docker[docker.rfind("FROM scratch").expect("scratch")..];
    for line in [
        "USER 65532:65532",
        "ENTRYPOINT [\"/imgport\"]",
        "WORKDIR /home/nonroot",
        "ENV HOME=/home/nonroot \\",
        "    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
    ] {
        assert!(last_stage.lines().any(|l| l == line), "{line} in the final stage");
    }
    for flag in [
        "--user 65532:65532",
        "--entrypoint '[\"/imgport\"]'",
        "--workingdir /home/nonroot",
        "--env HOME=/home/nonroot",
    ] {
        assert!(script.contains(flag), "{flag} in the script");
    }
}
