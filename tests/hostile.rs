//! Hostile input through the binary: every command on corrupted images exits with a clear error (never a panic,
//! a signal or a hang), peak memory stays bounded, and inputs are never modified.

use crate::common::*;
use std::path::Path;
use std::time::Duration;

/// Longest any one command may take on a corrupted image.
const TIME_BOUND: Duration = Duration::from_secs(30);

fn file_fingerprint(path: &Path) -> (Vec<u8>, std::time::SystemTime) {
    (std::fs::read(path).unwrap(), std::fs::metadata(path).unwrap().modified().unwrap())
}

/// Run every reading command on `img`; check that failures are clean errors.
fn all_commands(img: &Path, scratch: &Path) {
    let s = img.to_str().unwrap();
    let out = scratch.join("out.raw");
    let _ = std::fs::remove_file(&out);
    let o = out.to_str().unwrap();
    let cases: [(&[&str], &[i32]); 6] = [
        (&["info", "--json", s], &[0, 1]),
        (&["map", "--json", s], &[0, 1]),
        (&["check", "--json", s], &[0, 1, 2, 3]),
        (&["digest", s], &[0, 1]),
        (&["compare", s, s], &[0, 1, 2]),
        (&["convert", "-O", "raw", s, o], &[0, 1]),
    ];
    for (args, allowed) in cases {
        let BoundedRun { code, stderr: err, .. } = run_bounded(args, TIME_BOUND);
        assert!(allowed.contains(&code), "imgport {args:?} exited {code}: {err}");
        assert!(!err.contains("panicked"), "imgport {args:?} panicked: {err}");
        let is_error = code == 1 && args[0] != "compare" || code == 2 && args[0] == "compare";
        if is_error {
            assert!(err.starts_with("imgport: error: "), "imgport {args:?} failed without a clear error: {err:?}");
        }
    }
}

#[test]
fn every_command_fails_cleanly_on_corrupted_images() {
    let dir = tempdir();
    let (_src, fixtures) = format_fixtures(dir.path(), (3 << 20) + 4096 + 17, 5);
    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let mut rng = Rng::new(99);
    for fx in &fixtures {
        let original = std::fs::read(&fx.path).unwrap();
        let len = original.len() as u64;
        let variant = scratch.join(fx.path.file_name().unwrap());
        // The extent file of a multi-file image sits beside its descriptor.
        for entry in std::fs::read_dir(dir.path()).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&format!("{}-", fx.name)) {
                std::fs::copy(entry.path(), scratch.join(&name)).unwrap();
            }
        }
        let mut variants: Vec<Vec<u8>> = Vec::new();
        for cut in [0, 7, 512, 1024, 65536, 200_000, len / 2, len.saturating_sub(512), len.saturating_sub(1)] {
            variants.push(original[..(cut.min(len) as usize)].to_vec());
        }
        for _ in 0..16 {
            let mut v = original.clone();
            let pos = rng.below(len.min(256 << 10)) as usize / 4 * 4;
            let value: [u8; 4] = match rng.below(3) {
                0 => [0xff; 4],
                1 => [0x7f, 0xff, 0xff, 0xff],
                _ => (rng.next_u64() as u32).to_be_bytes(),
            };
            for (i, b) in value.iter().enumerate() {
                if let Some(x) = v.get_mut(pos + i) {
                    *x = *b;
                }
            }
            variants.push(v);
        }
        for v in &variants {
            std::fs::write(&variant, v).unwrap();
            all_commands(&variant, &scratch);
        }
    }
}

#[test]
fn inputs_are_never_modified() {
    let dir = tempdir();
    let (_src, fixtures) = format_fixtures(dir.path(), (2 << 20) + 512, 6);
    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    // Let the clock move so a write would show in the mtime.
    std::thread::sleep(Duration::from_millis(20));
    let mut files: Vec<_> =
        std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.path()).filter(|p| p.is_file()).collect();
    files.sort();
    let before: Vec<_> = files.iter().map(|p| file_fingerprint(p)).collect();
    for fx in &fixtures {
        all_commands(&fx.path, &scratch);
        let out = scratch.join("x.qcow2");
        let _ = std::fs::remove_file(&out);
        let _ = run_bounded(&["convert", "-O", "qcow2", fx.path.to_str().unwrap(), out.to_str().unwrap()], TIME_BOUND);
    }
    let after: Vec<_> = files.iter().map(|p| file_fingerprint(p)).collect();
    for ((path, b), a) in files.iter().zip(&before).zip(&after) {
        assert!(b.0 == a.0, "{} changed", path.display());
        assert_eq!(b.1, a.1, "{} mtime changed", path.display());
    }
}

// ---- reproducers of the security review (issue: hostile input) ------------------------------------------------------
// Each builds the image an attacker would send; every command must refuse it cleanly or read it in bounded memory,
// agree with the others on refusal, and never copy a host file's bytes into any output.

/// Bytes of the host file the images try to read; found in any output, they prove a leak.
const SECRET_MARKER: &str = "HOST-SECRET-7c1f0e3a-not-part-of-any-image";

/// What every command must do with a reproducer.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// Every command refuses the image (check may report it as corrupt instead).
    Refused,
    /// `info` and `map` describe the image and `check` reports the damage; every command that reads the data
    /// refuses it (the fast path that copies mapped data included).
    DataRefused,
    /// The image opens; commands finish within the memory bound; `check` exits with this code (2: it reports the
    /// damage).
    ReadBounded(i32),
}

struct Reproducer {
    name: &'static str,
    path: std::path::PathBuf,
    expect: Expect,
    /// Words the refusal must contain (the structure or reason).
    reason: &'static str,
}

fn write_secret(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("secret.txt");
    let mut bytes = Vec::new();
    while bytes.len() < 1 << 20 {
        bytes.extend_from_slice(SECRET_MARKER.as_bytes());
    }
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A monolithicSparse-style KDMV header (little endian) in one 512-byte sector.
fn kdmv_header(capacity: u64, grain_sectors: u64, desc: (u64, u64), gd_sector: u64, overhead: u64) -> Vec<u8> {
    let mut h = vec![0u8; 512];
    h[0..4].copy_from_slice(b"KDMV");
    h[4..8].copy_from_slice(&1u32.to_le_bytes());
    h[8..12].copy_from_slice(&1u32.to_le_bytes()); // valid newline test
    h[12..20].copy_from_slice(&capacity.to_le_bytes());
    h[20..28].copy_from_slice(&grain_sectors.to_le_bytes());
    h[28..36].copy_from_slice(&desc.0.to_le_bytes());
    h[36..44].copy_from_slice(&desc.1.to_le_bytes());
    h[44..48].copy_from_slice(&512u32.to_le_bytes());
    h[56..64].copy_from_slice(&gd_sector.to_le_bytes());
    h[64..72].copy_from_slice(&overhead.to_le_bytes());
    h[73..77].copy_from_slice(b"\n \r\n");
    h
}

fn descriptor(extent_lines: &str) -> String {
    format!(
        "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\n\
         # Extent description\n{extent_lines}\n\n# The Disk Data Base\nddb.adapterType = \"ide\"\n"
    )
}

/// A KDMV file of capacity 0 whose embedded descriptor names `extent_lines` (qemu reads it as a descriptor file).
fn kdmv_with_descriptor(extent_lines: &str) -> Vec<u8> {
    let mut text = descriptor(extent_lines).into_bytes();
    text.resize(text.len().div_ceil(512) * 512, 0);
    let mut file = kdmv_header(0, 8, (1, text.len() as u64 / 512), 0, 1 + text.len() as u64 / 512);
    file.extend_from_slice(&text);
    file
}

/// qcow2 v2 with 512-byte clusters whose L1 entries all point at one L2 table whose entries alternate between one
/// shared data cluster and nothing: `virtual_gib` GiB of virtual disk from a file of about a MiB, and an extent map
/// of virtual_size / 512 entries (every other cluster is data at the same host offset, so nothing merges).
fn qcow2_shared_clusters(virtual_gib: u64) -> Vec<u8> {
    const CS: u64 = 512;
    let virtual_size = virtual_gib << 30;
    let l1_entries = virtual_size / (CS * (CS / 8));
    let l1_clusters = (l1_entries * 8).div_ceil(CS);
    let (l1_at, l2_at) = (CS, CS * (1 + l1_clusters));
    let data_at = l2_at + CS;
    let rt_at = data_at + CS;
    let total_clusters = rt_at / CS + 1 + 64;
    let rb_entries = CS / 2;
    let rb_count = total_clusters.div_ceil(rb_entries);
    let rb_at = rt_at + CS;
    let mut f = vec![0u8; (rb_at + rb_count * CS) as usize];
    let be32 = |f: &mut Vec<u8>, at: usize, v: u32| f[at..at + 4].copy_from_slice(&v.to_be_bytes());
    let be64 = |f: &mut Vec<u8>, at: usize, v: u64| f[at..at + 8].copy_from_slice(&v.to_be_bytes());
    f[0..4].copy_from_slice(b"QFI\xfb");
    be32(&mut f, 4, 2);
    be32(&mut f, 20, 9);
    be64(&mut f, 24, virtual_size);
    be32(&mut f, 36, l1_entries as u32);
    be64(&mut f, 40, l1_at);
    be64(&mut f, 48, rt_at);
    be32(&mut f, 56, 1);
    const COPIED: u64 = 1 << 63;
    for i in 0..l1_entries {
        be64(&mut f, (l1_at + i * 8) as usize, l2_at | COPIED);
    }
    for i in (0..CS / 8).step_by(2) {
        be64(&mut f, (l2_at + i * 8) as usize, data_at | COPIED);
    }
    f[data_at as usize..(data_at + CS) as usize].fill(0x5a);
    for b in 0..rb_count {
        be64(&mut f, (rt_at + b * 8) as usize, rb_at + b * CS);
    }
    // Refcount 1 for every cluster in use: the L2 table and the data cluster are referenced far more often.
    let used = f.len() as u64 / CS;
    for c in 0..used {
        let at = rb_at + (c / rb_entries) * CS + (c % rb_entries) * 2;
        f[at as usize..at as usize + 2].copy_from_slice(&1u16.to_be_bytes());
    }
    f
}

/// monolithicSparse VMDK with 512-byte grains whose grain directory points every entry at one grain table whose
/// entries alternate between one shared grain and nothing.
fn vmdk_shared_tables(virtual_gib: u64) -> Vec<u8> {
    let capacity = (virtual_gib << 30) / 512;
    let gd_entries = capacity.div_ceil(512);
    let gd_sectors = (gd_entries * 4).div_ceil(512);
    let (gd_at, gt_at) = (1, 1 + gd_sectors);
    let grain_at = gt_at + 4;
    let mut f = kdmv_header(capacity, 1, (0, 0), gd_at, grain_at);
    f.resize(((grain_at + 1) * 512) as usize, 0);
    for i in 0..gd_entries {
        let at = (gd_at * 512 + i * 4) as usize;
        f[at..at + 4].copy_from_slice(&(gt_at as u32).to_le_bytes());
    }
    for i in (0..512u64).step_by(2) {
        let at = (gt_at * 512 + i * 4) as usize;
        f[at..at + 4].copy_from_slice(&(grain_at as u32).to_le_bytes());
    }
    f[(grain_at * 512) as usize..].fill(0x5a);
    f
}

/// A qemu-img-made dynamic VHD with data in its first block, then that block's BAT entry set to sector 0 (the
/// footer copy at the start of the file). Small enough that a whole read chunk maps to that one block: the
/// case where converters took the block straight from the file's mapping.
fn vhd_bat_at_footer_copy(dir: &Path) -> Vec<u8> {
    let raw = dir.join("vhd-src.raw");
    let mut data = vec![0u8; 2 << 20];
    Rng::new(21).fill(&mut data);
    std::fs::write(&raw, data).unwrap();
    let vhd = dir.join("vhd-src.vhd");
    qemu_convert(&raw, &vhd, "vpc", "subformat=dynamic", &[]);
    let mut f = std::fs::read(&vhd).unwrap();
    let be64 = |b: &[u8], at: usize| u64::from_be_bytes(b[at..at + 8].try_into().unwrap());
    let dyn_header = be64(&f, 16) as usize; // footer copy: data offset
    let bat = be64(&f, dyn_header + 16) as usize; // dynamic header: table offset
    f[bat..bat + 4].copy_from_slice(&0u32.to_be_bytes());
    f
}

/// A qemu-img-made VHDX with data, then its first BAT entry pointed at the BAT region itself.
fn vhdx_bat_into_bat(dir: &Path) -> Vec<u8> {
    let raw = dir.join("vhdx-src.raw");
    make_source_raw(&raw, 8 << 20, 22);
    let vhdx = dir.join("vhdx-src.vhdx");
    qemu_convert(&raw, &vhdx, "vhdx", "", &[]);
    let mut f = std::fs::read(&vhdx).unwrap();
    const BAT_GUID: [u8; 16] =
        [0x66, 0x77, 0xC2, 0x2D, 0x23, 0xF6, 0x00, 0x42, 0x9D, 0x64, 0x11, 0x5E, 0x9B, 0xFD, 0x4A, 0x08];
    let table = 0x30000;
    let count = u32::from_le_bytes(f[table + 8..table + 12].try_into().unwrap()) as usize;
    let entry = (0..count).map(|i| table + 16 + i * 32).find(|&e| f[e..e + 16] == BAT_GUID).expect("BAT region");
    let bat = u64::from_le_bytes(f[entry + 16..entry + 24].try_into().unwrap());
    assert_eq!(bat % (1 << 20), 0, "qemu-img aligns the BAT to 1 MiB");
    // PAYLOAD_BLOCK_FULLY_PRESENT (6) at the BAT's own offset, in MiB.
    let value = (bat >> 20) << 20 | 6;
    f[bat as usize..bat as usize + 8].copy_from_slice(&value.to_le_bytes());
    f
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo {}", path.display());
}

/// Every reproducer, written under `dir` (the secret lies in `dir`, the images in `dir/images`).
fn reproducers(dir: &Path) -> Vec<Reproducer> {
    let secret = write_secret(dir);
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    let mut out = Vec::new();
    let mut add = |name: &'static str, bytes: Vec<u8>, expect: Expect, reason: &'static str| {
        let path = images.join(name);
        std::fs::write(&path, bytes).unwrap();
        out.push(Reproducer { name, path, expect, reason });
    };
    let sectors = (1u64 << 20) / 512;
    add(
        "relative-escape.vmdk",
        descriptor(&format!("RW {sectors} FLAT \"../secret.txt\" 0")).into_bytes(),
        Expect::Refused,
        "not a visible file in the descriptor's folder",
    );
    add(
        "absolute.vmdk",
        descriptor(&format!("RW {sectors} FLAT \"{}\" 0", secret.display())).into_bytes(),
        Expect::Refused,
        "not a visible file in the descriptor's folder",
    );
    std::os::unix::fs::symlink("../secret.txt", images.join("link.bin")).unwrap();
    add(
        "symlink-escape.vmdk",
        descriptor(&format!("RW {sectors} FLAT \"link.bin\" 0")).into_bytes(),
        Expect::Refused,
        "not a visible file in the descriptor's folder",
    );
    add(
        "embedded-descriptor.vmdk",
        kdmv_with_descriptor(&format!("RW {sectors} FLAT \"../secret.txt\" 0")),
        Expect::Refused,
        "not a visible file in the descriptor's folder",
    );
    // Inside the folder, but not where VMware puts extents: a subfolder, and a hidden file (an image downloaded into
    // a home folder or a CI workspace sits beside `.ssh/`, `.aws/credentials`, `.env`).
    std::fs::create_dir_all(images.join("sub")).unwrap();
    std::fs::copy(&secret, images.join("sub/secret.bin")).unwrap();
    std::fs::copy(&secret, images.join(".env")).unwrap();
    add(
        "subfolder.vmdk",
        descriptor(&format!("RW {sectors} FLAT \"sub/secret.bin\" 0")).into_bytes(),
        Expect::Refused,
        "not a visible file in the descriptor's folder",
    );
    add(
        "hidden.vmdk",
        descriptor(&format!("RW {sectors} FLAT \".env\" 0")).into_bytes(),
        Expect::Refused,
        "not a visible file in the descriptor's folder",
    );
    mkfifo(&images.join("extent.fifo"));
    add(
        "fifo-extent.vmdk",
        descriptor(&format!("RW {sectors} FLAT \"extent.fifo\" 0")).into_bytes(),
        Expect::Refused,
        "FIFO",
    );
    // Sparse extent files of holes whose grain directories are each as large as allowed (64 MiB): many of them
    // must not add up to gigabytes of directory in memory.
    let mut lines = Vec::new();
    for i in 0..3 {
        let name = format!("huge-gd-{i}.vmdk");
        let capacity = 1u64 << 36; // sectors: 2^24 directory entries of 512 grains of 4 KiB
        let gd_sectors = (64u64 << 20) / 512;
        let mut f = std::fs::File::create(images.join(&name)).unwrap();
        std::io::Write::write_all(&mut f, &kdmv_header(capacity, 8, (0, 0), 1, 1 + gd_sectors)).unwrap();
        f.set_len((2 + gd_sectors) * 512).unwrap();
        lines.push(format!("RW {capacity} SPARSE \"{name}\""));
    }
    add(
        "huge-directories.vmdk",
        descriptor(&lines.join("\n")).into_bytes(),
        Expect::Refused,
        "grain directories add up to more than",
    );
    // One 4 MiB extent file named 256 times: a 1 GiB disk from a few KiB of descriptor.
    std::fs::write(images.join("small-extent.bin"), vec![0x33u8; 4 << 20]).unwrap();
    let lines: Vec<String> = (0..256).map(|_| "RW 8192 FLAT \"small-extent.bin\" 0".to_string()).collect();
    add("repeated-extent.vmdk", descriptor(&lines.join("\n")).into_bytes(), Expect::ReadBounded(0), "");
    add("shared-clusters.qcow2", qcow2_shared_clusters(2), Expect::ReadBounded(2), "");
    add("shared-tables.vmdk", vmdk_shared_tables(2), Expect::ReadBounded(2), "");
    add("bat-at-footer.vhd", vhd_bat_at_footer_copy(dir), Expect::DataRefused, "overlaps the");
    add("bat-into-bat.vhdx", vhdx_bat_into_bat(dir), Expect::DataRefused, "overlaps the BAT");
    let fifo = images.join("input.fifo");
    mkfifo(&fifo);
    out.push(Reproducer { name: "fifo-input", path: fifo, expect: Expect::Refused, reason: "FIFO" });
    out
}

/// Whether the file holds `needle` (grep: outputs are gigabytes of virtual disk).
fn file_contains(path: &Path, needle: &str) -> bool {
    if !path.exists() {
        return false;
    }
    let found = std::process::Command::new("grep").args(["-q", "-a", "-F", needle]).arg(path).status().unwrap();
    found.success()
}

#[test]
fn every_command_agrees_on_every_reproducer() {
    let dir = tempdir();
    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    for r in reproducers(dir.path()) {
        let s = r.path.to_str().unwrap();
        let out = scratch.join("out.img");
        let o = out.to_str().unwrap();
        let commands: [&[&str]; 9] = [
            &["info", "--json", s],
            &["map", "--json", s],
            &["check", "--json", s],
            &["digest", s],
            &["compare", s, s],
            &["convert", "-O", "raw", s, o],
            &["convert", "-O", "qcow2", s, o],
            &["inspect", "--json", s],
            &["validate", "--json", s],
        ];
        for args in commands {
            let _ = std::fs::remove_file(&out);
            let run = run_bounded(args, TIME_BOUND);
            let what = format!("{}: imgport {:?} exited {}: {}", r.name, &args[..args.len() - 1], run.code, run.stderr);
            assert!(!run.stderr.contains("panicked"), "{what}");
            for (name, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
                assert!(!text.contains(SECRET_MARKER), "{what}: the host file's bytes are in its {name}");
            }
            assert!(!file_contains(&out, SECRET_MARKER), "{what}: the host file's bytes are in its output");
            // compare and validate say "could not read" with 2, every other command with 1.
            let refused = run.code == if matches!(args[0], "compare" | "validate") { 2 } else { 1 };
            match r.expect {
                Expect::Refused => {
                    let reported = args[0] == "check" && run.code == 2;
                    assert!(refused || reported, "{what}: expected a refusal");
                    if refused {
                        assert!(run.stderr.contains(r.reason), "{what}: the refusal does not say '{}'", r.reason);
                        assert!(!out.exists(), "{what}: an output was left behind");
                    }
                }
                Expect::DataRefused if matches!(args[0], "info" | "map") => assert_eq!(run.code, 0, "{what}"),
                Expect::DataRefused if args[0] == "check" => assert_eq!(run.code, 2, "{what}"),
                Expect::DataRefused => {
                    assert!(refused, "{what}: expected a refusal");
                    assert!(run.stderr.contains(r.reason), "{what}: the refusal does not say '{}'", r.reason);
                    assert!(!out.exists(), "{what}: an output was left behind");
                }
                Expect::ReadBounded(check) => match args[0] {
                    "check" => assert_eq!(run.code, check, "{what}: the check must report the shared metadata"),
                    "compare" | "validate" => assert!(run.code != 2, "{what}"),
                    _ => assert_eq!(run.code, 0, "{what}"),
                },
            }
        }
    }
}

#[test]
fn external_extents_are_read_only_when_the_user_allows_them() {
    let dir = tempdir();
    let secret = write_secret(dir.path());
    let images = dir.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    let desc = images.join("trusted.vmdk");
    std::fs::write(&desc, descriptor(&format!("RW 2048 FLAT \"{}\" 0", secret.display()))).unwrap();
    let s = desc.to_str().unwrap();
    let refused = run_imgport(&["digest", "--plain", s]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--allow-external-extents"));
    // The user vouches for the image: it reads the file it names, exactly as qemu-img does.
    let ours = imgport_ok(&["digest", "--plain", "--allow-external-extents", s]);
    let out = dir.path().join("check.raw");
    qemu_img(&["convert", "-f", "vmdk", "-O", "raw", s, out.to_str().unwrap()]);
    let sha = std::process::Command::new("sha256sum").arg(&out).output().unwrap();
    let theirs = String::from_utf8_lossy(&sha.stdout).split_whitespace().next().unwrap().to_string();
    assert!(ours.starts_with(&format!("sha256:{theirs} ")), "{ours} vs qemu-img's {theirs}");
}

/// `imgport map IMAGE | head -1`: once the reader is gone, the command ends quietly (exit 0, nothing on stderr), as
/// ripgrep does, instead of panicking on the closed pipe.
#[test]
fn a_closed_stdout_ends_quietly() {
    let dir = tempdir();
    let (_src, fixtures) = format_fixtures(dir.path(), 4 << 20, 7);
    let img = fixtures[0].path.to_str().unwrap();
    for args in [&["map", img][..], &["map", "--json", img], &["info", img], &["check", img], &["digest", img]] {
        let mut child = imgport()
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Close the read end before the command prints anything.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "imgport {args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "imgport {args:?}: {err}");
        assert!(err.is_empty(), "imgport {args:?} complained about the closed pipe: {err}");
    }
}
