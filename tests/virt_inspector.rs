//! `imgport inspect` against libguestfs's `virt-inspector`, the reference for offline guest facts, on the realistic
//! images of scripts/build-test-images.sh: the same distribution, version, architecture, hostname, filesystems (type,
//! label, UUID), mount points and installed packages (name and version); and imgport at least 20 times faster.
//!
//! virt-inspector boots a small appliance VM. /dev/kvm exists on these machines but does not work (the appliance
//! hangs at "Booting from ROM"), so it runs under TCG (`LIBGUESTFS_BACKEND_SETTINGS=force_tcg`), as the issue's
//! baseline of ~24 s per image was measured. A missing virt-inspector fails the test: scripts/install-peers.sh
//! installs it.

use crate::common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

// ---- a small XML reader (virt-inspector's output: elements, attributes, text, the five entities) ----------------

#[derive(Debug, Default)]
struct Element {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<Element>,
    text: String,
}

impl Element {
    fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
    fn text_of(&self, name: &str) -> Option<String> {
        self.child(name).map(|c| c.text.trim().to_string())
    }
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

/// Parse an XML document into its root element; panics on malformed input (virt-inspector's output is trusted
/// to be well formed, and a parse failure is a test failure).
fn parse_xml(doc: &str) -> Element {
    let mut stack: Vec<Element> = vec![Element::default()];
    let mut rest = doc;
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            stack.last_mut().unwrap().text.push_str(&unescape(rest));
            break;
        };
        stack.last_mut().unwrap().text.push_str(&unescape(&rest[..lt]));
        rest = &rest[lt..];
        if let Some(r) = rest.strip_prefix("<?") {
            rest = &r[r.find("?>").expect("unterminated <?") + 2..];
        } else if let Some(r) = rest.strip_prefix("<!--") {
            rest = &r[r.find("-->").expect("unterminated comment") + 3..];
        } else if let Some(r) = rest.strip_prefix("</") {
            let gt = r.find('>').expect("unterminated end tag");
            let name = r[..gt].trim();
            let done = stack.pop().expect("end tag without a start");
            assert_eq!(done.name, name, "mismatched end tag");
            stack.last_mut().expect("end tag closes the document").children.push(done);
            rest = &r[gt + 1..];
        } else {
            let gt = rest.find('>').expect("unterminated tag");
            let mut tag = &rest[1..gt];
            rest = &rest[gt + 1..];
            let empty = tag.ends_with('/');
            if empty {
                tag = &tag[..tag.len() - 1];
            }
            let name_end = tag.find(char::is_whitespace).unwrap_or(tag.len());
            let mut e = Element { name: tag[..name_end].to_string(), ..Default::default() };
            let mut a = tag[name_end..].trim_start();
            while let Some(eq) = a.find('=') {
                let key = a[..eq].trim().to_string();
                let v = a[eq + 1..].trim_start();
                let q = v.chars().next().expect("attribute value");
                let end = v[1..].find(q).expect("unterminated attribute value") + 1;
                e.attrs.push((key, unescape(&v[1..end])));
                a = v[end + 1..].trim_start();
            }
            if empty {
                stack.last_mut().unwrap().children.push(e);
            } else {
                stack.push(e);
            }
        }
    }
    assert_eq!(stack.len(), 1, "unclosed elements");
    stack.pop().unwrap().children.pop().expect("no root element")
}

#[test]
fn xml_reader() {
    let e = parse_xml("<?xml version=\"1.0\"?>\n<!-- c --><a x='1' y=\"&lt;2&gt;\"><b>t &amp; u</b><c/><b>v</b></a>\n");
    assert_eq!((e.name.as_str(), e.attr("x"), e.attr("y")), ("a", Some("1"), Some("<2>")));
    assert_eq!(e.all("b").map(|b| b.text.clone()).collect::<Vec<_>>(), ["t & u", "v"]);
    assert!(e.child("c").is_some_and(|c| c.children.is_empty()));
}

// ---- the comparison -------------------------------------------------------------------------------------------

/// What both tools report about one guest, in one shape.
#[derive(Debug, PartialEq, Eq)]
struct Facts {
    root: String,
    os_type: String,
    distro: String,
    major: u64,
    minor: u64,
    arch: String,
    hostname: String,
    /// device -> mount point.
    mountpoints: BTreeMap<String, String>,
    /// device -> (type, label, UUID), for the filesystems the guest mounts.
    filesystems: BTreeMap<String, (String, String, String)>,
    /// package name -> version as the package manager writes it ("[epoch:]version[-release]").
    packages: BTreeMap<String, String>,
}

/// virt-inspector's facts. A mount point whose fstab spec it could not resolve to a device
/// (`/dev/disk/by-uuid/...`, `/dev/disk/by-id/dm-uuid-LVM-...`) it lists under the spec itself; those are taken
/// through the device imgport resolved the same fstab line to, so the devices are compared where both resolved.
fn virt_inspector_facts(os: &Element, imgport: &Value) -> Facts {
    let os_type = os.text_of("name").unwrap_or_default();
    let num = |n: &str| os.text_of(n).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no {n}"));
    let resolved = |spec: &str| -> String {
        let unresolved = spec.starts_with("/dev/disk/");
        let fstab = imgport["operating_systems"][0]["fstab"].as_array().cloned().unwrap_or_default();
        match fstab.iter().find(|l| unresolved && l["spec"] == spec) {
            Some(l) => l["resolves_to"].as_str().unwrap_or(spec).to_string(),
            None => spec.to_string(),
        }
    };
    let mountpoints = os
        .child("mountpoints")
        .map(|m| {
            m.all("mountpoint")
                .map(|p| (resolved(p.attr("dev").expect("mountpoint dev")), p.text.trim().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let filesystems = os
        .child("filesystems")
        .map(|m| {
            m.all("filesystem")
                .map(|f| {
                    (
                        resolved(f.attr("dev").expect("filesystem dev")),
                        (
                            f.text_of("type").unwrap_or_default(),
                            f.text_of("label").unwrap_or_default(),
                            f.text_of("uuid").unwrap_or_default(),
                        ),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let packages = os
        .child("applications")
        .map(|a| {
            a.all("application")
                .map(|p| {
                    let mut v = String::new();
                    if let Some(e) = p.text_of("epoch").filter(|e| e != "0") {
                        v = format!("{e}:");
                    }
                    v.push_str(&p.text_of("version").unwrap_or_default());
                    if let Some(r) = p.text_of("release").filter(|r| !r.is_empty()) {
                        v = format!("{v}-{r}");
                    }
                    (p.text_of("name").expect("application name"), v)
                })
                .collect()
        })
        .unwrap_or_default();
    Facts {
        root: os.text_of("root").expect("root"),
        os_type,
        distro: os.text_of("distro").unwrap_or_default(),
        major: num("major_version"),
        minor: num("minor_version"),
        arch: os.text_of("arch").unwrap_or_default(),
        hostname: os.text_of("hostname").unwrap_or_default(),
        mountpoints,
        filesystems,
        packages,
    }
}

/// imgport's report in the same shape: only the filesystems virt-inspector lists (those the guest mounts), and
/// Windows' system volume under the name virt-inspector mounts it at ("/" rather than "C:").
fn imgport_facts(r: &Value, mounted: &[&str]) -> Facts {
    let os = &r["operating_systems"][0];
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let windows = os["os_type"] == "windows";
    let mut mountpoints = BTreeMap::new();
    let mut filesystems = BTreeMap::new();
    for v in r["volumes"].as_array().expect("volumes") {
        let dev = s(&v["device"]);
        if let Some(mp) = v["mountpoint"].as_str() {
            let mp = if windows && mp == "C:" { "/" } else { mp };
            mountpoints.insert(dev.clone(), mp.to_string());
        }
        if mounted.contains(&dev.as_str()) {
            let f = &v["filesystem"];
            filesystems.insert(dev, (s(&f["kind"]), s(&f["label"]), s(&f["uuid"])));
        }
    }
    let packages = os["packages"]["packages"]
        .as_array()
        .map(|a| a.iter().map(|p| (s(&p["name"]), s(&p["version"]))).collect())
        .unwrap_or_default();
    Facts {
        root: s(&os["root"]),
        os_type: s(&os["os_type"]),
        distro: s(&os["distro"]),
        major: os["major_version"].as_u64().expect("major_version"),
        minor: os["minor_version"].as_u64().expect("minor_version"),
        arch: s(&os["architecture"]["name"]),
        hostname: s(&os["hostname"]),
        mountpoints,
        filesystems,
        packages,
    }
}

/// Run virt-inspector on raw disks (the system disk first) under TCG with a deadline; (XML, wall time).
fn run_virt_inspector(disks: &[PathBuf]) -> (String, Duration) {
    let deadline = Duration::from_secs(600);
    let start = Instant::now();
    let img = &disks[0];
    let mut cmd = Command::new("virt-inspector");
    cmd.env("LIBGUESTFS_BACKEND", "direct").env("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg").arg("--format=raw");
    for d in disks {
        cmd.arg("-a").arg(d);
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("cannot run virt-inspector");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out, &mut s).map(|_| s)
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for virt-inspector") {
            break st;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("virt-inspector on {} ran for more than {deadline:?}", img.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let elapsed = start.elapsed();
    let xml = out_reader.join().expect("stdout reader").expect("virt-inspector printed invalid UTF-8");
    let stderr = err_reader.join().unwrap_or_default();
    assert!(status.success(), "virt-inspector on {} failed ({status}):\n{stderr}", img.display());
    (xml, elapsed)
}

/// imgport inspect --json with its wall time (best of three runs: the first may pay for cold page cache).
fn run_imgport_inspect(disks: &[PathBuf]) -> (Value, Duration) {
    let mut args = vec!["inspect".to_string(), "--json".into(), disks[0].to_str().expect("path").into()];
    for d in &disks[1..] {
        args.push("--data-disk".into());
        args.push(d.to_str().expect("path").into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut best = Duration::MAX;
    let mut report = Value::Null;
    for _ in 0..3 {
        let start = Instant::now();
        report = imgport_json(&args);
        best = best.min(start.elapsed());
    }
    (report, best)
}

/// The images compared: Debian on MBR/BIOS with ext4, Ubuntu on GPT/UEFI with an ESP mounted at /boot/efi, Debian
/// on an XFS v5 root, and the Windows skeleton (NTFS, registry hives); root on LVM: a linear LV, a striped LV, an
/// LV spanning two disks (given to both tools, `-a` twice and `--data-disk`), and Ubuntu's guided LVM layout;
/// Ubuntu on btrfs (subvolumes `@` and `@home`, named `btrfsvol:/dev/sda2/@` by both). Left out, because
/// virt-inspector fails on them here: the RPM images, the Rocky-on-LVM one and the Fedora and openSUSE btrfs
/// layouts among them (its appliance's librpm cannot open an RPM database, "rpmtsInitIterator", even an absent
/// one, and the whole inspection fails), and
/// the hybrid image (it does not resolve the root's `PARTUUID=` fstab entry and then cannot mount /boot/efi).
const IMAGES: &[&str] = &[
    "mbr-bios-ext4",
    "gpt-uefi-ext4",
    "deb-xfs",
    "win-ntfs",
    "mbr-lvm-root",
    "mbr-lvm-striped",
    "mbr-lvm-spanning",
    "gpt-ubuntu-lvm",
    "gpt-ubuntu-btrfs",
];

/// The data disks an image was built with (`DATA_DISKS` in its .env), as paths.
fn data_disks(name: &str) -> Vec<PathBuf> {
    let env = guest_env(name);
    env.get("DATA_DISKS")
        .map(|d| d.split(',').filter(|f| !f.is_empty()).map(|f| guest_images().join(f)).collect())
        .unwrap_or_default()
}

#[test]
fn inspect_agrees_with_virt_inspector_and_is_at_least_20x_faster() {
    require("virt-inspector");
    let names: Vec<&str> = IMAGES.to_vec();
    let images: Vec<Vec<PathBuf>> = names
        .iter()
        .map(|n| std::iter::once(guest_images().join(format!("{n}.raw"))).chain(data_disks(n)).collect())
        .collect();
    // Two at a time: each virt-inspector keeps a CPU busy with its emulated VM.
    let results: Vec<(String, Duration)> = std::thread::scope(|scope| {
        let mut out = Vec::new();
        for pair in images.chunks(2) {
            let handles: Vec<_> = pair.iter().map(|disks| scope.spawn(move || run_virt_inspector(disks))).collect();
            out.extend(handles.into_iter().map(|h| h.join().expect("virt-inspector thread")));
        }
        out
    });
    let mut total_theirs = Duration::ZERO;
    let mut total_ours = Duration::ZERO;
    for ((name, img), (xml, theirs)) in names.iter().zip(&images).zip(results) {
        let doc = parse_xml(&xml);
        assert_eq!(doc.name, "operatingsystems", "{name}");
        let oses: Vec<&Element> = doc.all("operatingsystem").collect();
        assert_eq!(oses.len(), 1, "{name}: virt-inspector found {} operating systems:\n{xml}", oses.len());
        let (report, ours) = run_imgport_inspect(img);
        let want = virt_inspector_facts(oses[0], &report);
        let mounted: Vec<&str> = want.filesystems.keys().map(String::as_str).collect();
        let got = imgport_facts(&report, &mounted);
        assert_eq!(got, want, "{name}: imgport inspect (left) vs virt-inspector (right)");
        // The comparison must have had something to compare.
        assert!(!want.hostname.is_empty() && !want.filesystems.is_empty(), "{name}: {want:?}");
        if want.os_type == "linux" {
            assert!(want.packages.len() >= 4, "{name}: virt-inspector listed too few packages: {want:?}");
        }
        let ratio = theirs.as_secs_f64() / ours.as_secs_f64().max(1e-6);
        println!(
            "{name}: imgport inspect {:.3} s, virt-inspector {:.1} s: {ratio:.0}x",
            ours.as_secs_f64(),
            theirs.as_secs_f64()
        );
        assert!(ratio >= 20.0, "{name}: imgport inspect took {ours:?}, virt-inspector {theirs:?}: under 20x");
        total_theirs += theirs;
        total_ours += ours;
    }
    println!(
        "all {} fully compared images: imgport inspect {:.3} s, virt-inspector {:.1} s",
        IMAGES.len(),
        total_ours.as_secs_f64(),
        total_theirs.as_secs_f64()
    );
}
