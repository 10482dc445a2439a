//! System facts the import checks ask about: the root account in /etc/passwd and /etc/shadow, whether
//! /etc/shadow is immutable (its inode flags, read from the filesystem), /lib and /lib64 symlinks, and whether
//! sshd is installed and enabled at boot (systemd wants links, or SysV rc links).

use crate::fs::{FileType, FS_APPEND_FL, FS_IMMUTABLE_FL};
use crate::linux::MAX_TEXT;
use crate::vfs::Vfs;
use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Accounts {
    pub passwd_exists: bool,
    /// /etc/passwd has a line for root.
    pub passwd_root_entry: bool,
    /// root's uid in /etc/passwd.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_shell: Option<String>,
    pub shadow_exists: bool,
    /// /etc/shadow has a line for root.
    pub shadow_root_entry: bool,
    /// "set", "locked" ('!' or '*'), or "empty" (no password): the hash itself is never reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_password: Option<&'static str>,
    /// Inode flags of /etc/shadow in the `FS_*_FL` encoding, when the filesystem has them and they were read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow_flags: Option<u32>,
    /// FS_IMMUTABLE_FL is set: password changes (and cloud-init's) fail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow_immutable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow_append_only: Option<bool>,
    /// Why the flags could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow_flags_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LibLink {
    /// "/lib" or "/lib64".
    pub path: String,
    /// "directory", "symlink", "missing" or "other".
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The symlink target is absolute ("/usr/lib"), which breaks when the disk is mounted elsewhere.
    pub absolute: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Sshd {
    pub installed: bool,
    /// The files that showed it installed.
    pub installed_evidence: Vec<String>,
    /// Started at boot: a systemd wants link or alias, or a SysV rc start link, and not masked.
    pub enabled: bool,
    pub enabled_evidence: Vec<String>,
    /// The unit is masked (linked to /dev/null) or /etc/ssh/sshd_not_to_be_run exists.
    pub masked: bool,
    /// `PermitRootLogin` in /etc/ssh/sshd_config, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permit_root_login: Option<String>,
}

fn root_line(text: &str) -> Option<Vec<String>> {
    text.lines().map(|l| l.split(':').map(str::to_string).collect::<Vec<_>>()).find(|f| f[0] == "root")
}

pub fn accounts(vfs: &mut Vfs) -> Accounts {
    let mut a = Accounts::default();
    if let Some(text) = vfs.read_text("/etc/passwd", MAX_TEXT) {
        a.passwd_exists = true;
        if let Some(f) = root_line(&text) {
            a.passwd_root_entry = true;
            a.root_uid = f.get(2).and_then(|u| u.parse().ok());
            a.root_shell = f.get(6).filter(|s| !s.is_empty()).cloned();
        }
    }
    if let Some(text) = vfs.read_text("/etc/shadow", MAX_TEXT) {
        a.shadow_exists = true;
        if let Some(f) = root_line(&text) {
            a.shadow_root_entry = true;
            let pw = f.get(1).map_or("", String::as_str);
            a.root_password = Some(if pw.is_empty() {
                "empty"
            } else if pw.starts_with('!') || pw.starts_with('*') {
                "locked"
            } else {
                "set"
            });
        }
    }
    if vfs.exists("/etc/shadow") {
        match vfs.inode_flags("/etc/shadow") {
            Ok(Some(flags)) => {
                a.shadow_flags = Some(flags);
                a.shadow_immutable = Some(flags & FS_IMMUTABLE_FL != 0);
                a.shadow_append_only = Some(flags & FS_APPEND_FL != 0);
            }
            Ok(None) => {}
            Err(e) => a.shadow_flags_error = Some(e.to_string()),
        }
    }
    a
}

pub fn lib_links(vfs: &mut Vfs) -> Vec<LibLink> {
    ["/lib", "/lib64"]
        .iter()
        .map(|p| {
            let (kind, target) = match vfs.lstat(p) {
                Ok(m) if m.file_type == FileType::Symlink => ("symlink", vfs.read_link(p).ok()),
                Ok(m) if m.file_type == FileType::Dir => ("directory", None),
                Ok(_) => ("other", None),
                Err(_) => ("missing", None),
            };
            let absolute = target.as_deref().is_some_and(|t| t.starts_with('/'));
            LibLink { path: p.to_string(), kind, target, absolute }
        })
        .collect()
}

const SSHD_BINARIES: &[&str] = &["/usr/sbin/sshd", "/sbin/sshd"];
const UNIT_DIRS: &[&str] =
    &["/etc/systemd/system", "/run/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"];
const UNITS: &[&str] = &["ssh.service", "sshd.service", "ssh.socket", "sshd.socket"];
const WANTS: &[&str] = &["multi-user.target.wants", "sockets.target.wants", "graphical.target.wants"];

pub fn sshd(vfs: &mut Vfs) -> Sshd {
    let mut s = Sshd::default();
    for p in SSHD_BINARIES {
        if vfs.is_file(p) {
            s.installed_evidence.push(p.to_string());
        }
    }
    for dir in UNIT_DIRS {
        for unit in UNITS {
            let p = format!("{dir}/{unit}");
            match vfs.lstat(&p) {
                Ok(m) if m.file_type == FileType::Symlink => {
                    let target = vfs.read_link(&p).unwrap_or_default();
                    if target == "/dev/null" {
                        s.masked = true;
                    } else if *dir == "/etc/systemd/system" && vfs.is_file(&p) {
                        // An alias link (Debian's sshd.service -> ssh.service) exists only while enabled.
                        s.enabled_evidence.push(format!("{p} -> {target}"));
                    }
                }
                Ok(m) if m.file_type == FileType::File && !s.installed_evidence.contains(&p) => {
                    s.installed_evidence.push(p);
                }
                _ => {}
            }
        }
    }
    for wants in WANTS {
        for unit in UNITS {
            let p = format!("/etc/systemd/system/{wants}/{unit}");
            if vfs.lstat(&p).is_ok() {
                s.enabled_evidence.push(p);
            }
        }
    }
    // SysV: a start link in a multi-user runlevel.
    for level in 2..=5 {
        let dir = format!("/etc/rc{level}.d");
        let Ok(entries) = vfs.read_dir(&dir) else { continue };
        for e in entries {
            let n = e.name.as_str();
            if n.starts_with('S') && (n.ends_with("ssh") || n.ends_with("sshd")) {
                s.enabled_evidence.push(format!("{dir}/{n}"));
            }
        }
    }
    if vfs.exists("/etc/ssh/sshd_not_to_be_run") {
        s.masked = true;
    }
    s.installed = !s.installed_evidence.is_empty();
    s.enabled = s.installed && !s.masked && !s.enabled_evidence.is_empty();
    if let Some(text) = vfs.read_text("/etc/ssh/sshd_config", MAX_TEXT) {
        s.permit_root_login = text.lines().map(str::trim).filter(|l| !l.starts_with('#')).find_map(|l| {
            let mut w = l.split_whitespace();
            w.next().filter(|k| k.eq_ignore_ascii_case("PermitRootLogin")).and(w.next()).map(str::to_string)
        });
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::tests::MemFs;
    use FileType::*;

    #[test]
    fn accounts_links_and_sshd() {
        let fs = MemFs::new(&[
            ("/etc", Dir, b""),
            ("/etc/passwd", File, b"daemon:x:1:1::/:/bin/false\nroot:x:0:0:root:/root:/bin/bash\n"),
            ("/etc/shadow", File, b"root:$6$abc:19000:0:99999:7:::\n"),
            ("/lib", Symlink, b"/usr/lib"),
            ("/lib64", Symlink, b"usr/lib64"),
            ("/usr", Dir, b""),
            ("/usr/lib", Dir, b""),
            ("/usr/sbin", Dir, b""),
            ("/usr/sbin/sshd", File, b"ELF"),
            ("/sbin", Symlink, b"usr/sbin"),
            ("/usr/lib/systemd", Dir, b""),
            ("/usr/lib/systemd/system", Dir, b""),
            ("/usr/lib/systemd/system/sshd.service", File, b"[Unit]"),
            ("/etc/systemd", Dir, b""),
            ("/etc/systemd/system", Dir, b""),
            ("/etc/systemd/system/multi-user.target.wants", Dir, b""),
            (
                "/etc/systemd/system/multi-user.target.wants/sshd.service",
                Symlink,
                b"/usr/lib/systemd/system/sshd.service",
            ),
        ]);
        let mut vfs = Vfs::new(Box::new(fs));
        let a = accounts(&mut vfs);
        assert!(a.passwd_root_entry && a.shadow_root_entry);
        assert_eq!((a.root_uid, a.root_shell.as_deref(), a.root_password), (Some(0), Some("/bin/bash"), Some("set")));
        assert_eq!(a.shadow_immutable, None);
        let l = lib_links(&mut vfs);
        assert!(l[0].absolute && l[0].kind == "symlink");
        assert!(!l[1].absolute && l[1].target.as_deref() == Some("usr/lib64"));
        let s = sshd(&mut vfs);
        assert!(s.installed && s.enabled, "{s:?}");
    }
}
