//! GRUB's boot menu as the guest would show it: menu entries from grub.cfg (with submenus), Boot Loader
//! Specification entries (/boot/loader/entries/*.conf, pulled in by `blscfg`), grubenv (saved_entry, kernelopts)
//! and /etc/default/grub. The default entry's kernel, initrd, root= and console= are reported, and whether the
//! files it names exist.

use crate::linux::{parse_shell_vars, version_cmp, MAX_TEXT};
use crate::vfs::Vfs;
use serde::Serialize;
use std::collections::BTreeMap;

/// Menu entries kept per configuration (a generated grub.cfg has a few dozen).
const MAX_ENTRIES: usize = 1000;
/// Submenu nesting accepted.
const MAX_NESTING: usize = 8;

#[derive(Debug, Clone, Default, Serialize)]
pub struct BootEntry {
    pub title: String,
    /// `--id` of a menuentry, or the file name (without .conf) of a BLS entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Position in the menu as GRUB numbers it: "2", or "1>0" inside a submenu.
    pub position: String,
    /// The file the entry came from.
    pub source: String,
    /// The kernel as the entry names it (relative to the partition GRUB reads it from).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub initrd: Vec<String>,
    /// The kernel command line (after variable expansion of $kernelopts).
    pub options: String,
    /// `root=` of the command line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// `console=` values of the command line, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub consoles: Vec<String>,
    /// The filesystem UUID of `search --fs-uuid --set=root`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search_fs_uuid: Option<String>,
    /// Where the kernel is in the guest ("/boot/vmlinuz-..."), when found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_path: Option<String>,
    /// The kernel file exists (absent when the entry names none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_exists: Option<bool>,
    /// Every initrd file exists (absent when the entry names none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initrd_exists: Option<bool>,
    /// The volume `root=` names in this image ("/dev/sda2"), filled in by the inspection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_resolves_to: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DefaultGrub {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmdline_linux: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmdline_linux_default: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial_command: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_blscfg: Option<String>,
    /// `console=` values of GRUB_CMDLINE_LINUX and GRUB_CMDLINE_LINUX_DEFAULT.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub consoles: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Grub {
    /// The grub.cfg read, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// The grub.cfg calls `blscfg`: the BLS entries are part of its menu.
    pub blscfg: bool,
    /// Menu entries in menu order (BLS entries where `blscfg` stands, or alone when there is no grub.cfg).
    pub entries: Vec<BootEntry>,
    /// What `set default=` (or GRUB_DEFAULT) says, after expanding saved_entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_setting: Option<String>,
    /// The entry GRUB boots by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_entry: Option<BootEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grubenv_path: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub grubenv: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etc_default_grub: Option<DefaultGrub>,
}

/// Split a GRUB script line into words: single quotes, double quotes and backslash escapes as GRUB reads them.
pub fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut have = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                have = true;
                for d in chars.by_ref() {
                    if d == '\'' {
                        break;
                    }
                    cur.push(d);
                }
            }
            '"' => {
                have = true;
                while let Some(d) = chars.next() {
                    match d {
                        '"' => break,
                        '\\' => {
                            if let Some(e) = chars.next() {
                                cur.push(e);
                            }
                        }
                        _ => cur.push(d),
                    }
                }
            }
            '\\' => {
                have = true;
                if let Some(e) = chars.next() {
                    cur.push(e);
                }
            }
            c if c.is_whitespace() => {
                if have {
                    out.push(std::mem::take(&mut cur));
                    have = false;
                }
            }
            '#' if !have => break,
            c => {
                have = true;
                cur.push(c);
            }
        }
    }
    if have {
        out.push(cur);
    }
    out
}

/// `root=` and `console=` of a kernel command line.
fn cmdline_facts(options: &str) -> (Option<String>, Vec<String>) {
    let mut root = None;
    let mut consoles = Vec::new();
    for w in options.split_whitespace() {
        if let Some(v) = w.strip_prefix("root=") {
            root = Some(v.to_string());
        } else if let Some(v) = w.strip_prefix("console=") {
            consoles.push(v.to_string());
        }
    }
    (root, consoles)
}

/// A path in a GRUB command with any "(hd0,msdos1)" device prefix removed.
fn strip_device(p: &str) -> String {
    match p.strip_prefix('(').and_then(|r| r.split_once(')')) {
        Some((_, rest)) => rest.to_string(),
        None => p.to_string(),
    }
}

/// Expand `$var` and `${var}` from `vars` (unknown ones become empty, as in GRUB).
fn expand(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, tail) = if let Some(b) = after.strip_prefix('{') {
            match b.find('}') {
                Some(j) => (&b[..j], &b[j + 1..]),
                None => (b, ""),
            }
        } else {
            let j = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            (&after[..j], &after[j..])
        };
        if name.is_empty() {
            out.push('$');
        } else if let Some(v) = vars.get(name) {
            out.push_str(v);
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

struct Parsed {
    entries: Vec<BootEntry>,
    default: Option<String>,
    /// Index in `entries` where `blscfg` stood, and the top-level position it had.
    blscfg_at: Option<(usize, usize)>,
}

/// Menu entries of a grub.cfg. Only what entries and `set default` say is evaluated: conditionals are read
/// through (both branches), which suits generated configurations.
pub fn parse_grub_cfg(text: &str, source: &str, env: &BTreeMap<String, String>) -> (Vec<BootEntry>, Option<String>) {
    let p = parse(text, source, env);
    (p.entries, p.default)
}

fn parse(text: &str, source: &str, env: &BTreeMap<String, String>) -> Parsed {
    let mut vars = env.clone();
    let mut entries: Vec<BootEntry> = Vec::new();
    let mut default = None;
    let mut blscfg_at = None;
    // Stack of open blocks: Some(position prefix, children so far) for submenus, None for if/for/function.
    let mut menus: Vec<(String, usize)> = vec![(String::new(), 0)];
    let mut blocks: Vec<Block> = Vec::new();
    let mut current: Option<BootEntry> = None;
    let mut pending_search: Option<String> = None;
    for raw in text.lines() {
        let w = words(raw);
        let Some(cmd) = w.first().map(String::as_str) else { continue };
        match cmd {
            "menuentry" | "submenu" => {
                let title = w.get(1).cloned().unwrap_or_default();
                let id = w.windows(2).find(|p| p[0] == "--id" || p[0] == "$menuentry_id_option").map(|p| p[1].clone());
                let Some((prefix, count)) = menus.last_mut() else { continue };
                let position = if prefix.is_empty() { count.to_string() } else { format!("{prefix}>{count}") };
                *count += 1;
                if cmd == "submenu" {
                    if menus.len() <= MAX_NESTING {
                        menus.push((position, 0));
                        blocks.push(Block::Submenu);
                    } else {
                        blocks.push(Block::Other);
                    }
                } else {
                    current = Some(BootEntry {
                        title,
                        id,
                        position,
                        source: source.to_string(),
                        search_fs_uuid: pending_search.clone(),
                        ..BootEntry::default()
                    });
                    blocks.push(Block::Entry);
                }
            }
            // A one-line "if ...; then ...; fi" opens nothing.
            "if" | "for" | "while" if !matches!(w.last().map(String::as_str), Some("fi" | "done")) => {
                blocks.push(Block::Cond)
            }
            "function" => blocks.push(Block::Other),
            "fi" | "done" if blocks.last() == Some(&Block::Cond) => {
                blocks.pop();
            }
            "}" => {
                // Close the innermost brace block, and any conditional left open inside it.
                while let Some(b) = blocks.pop() {
                    match b {
                        Block::Cond => continue,
                        Block::Entry => {
                            if let Some(e) = current.take() {
                                if entries.len() < MAX_ENTRIES {
                                    entries.push(finish(e));
                                }
                            }
                        }
                        Block::Submenu => {
                            menus.pop();
                        }
                        Block::Other => {}
                    }
                    break;
                }
            }
            "set" => {
                if let Some((k, v)) = w.get(1).and_then(|a| a.split_once('=')) {
                    let v = expand(v, &vars);
                    if k == "default" && current.is_none() {
                        default = Some(v.clone());
                    }
                    vars.insert(k.to_string(), v);
                }
            }
            "search" | "search.fs_uuid" => {
                let uuid = if cmd == "search.fs_uuid" || w.iter().any(|a| a == "--fs-uuid" || a == "-u") {
                    w.iter().skip(1).rfind(|a| !a.starts_with('-')).cloned()
                } else {
                    None
                };
                match current.as_mut() {
                    Some(e) => e.search_fs_uuid = uuid.or(e.search_fs_uuid.take()),
                    None => pending_search = uuid,
                }
            }
            "linux" | "linux16" | "linuxefi" => {
                if let (Some(e), Some(k)) = (current.as_mut(), w.get(1)) {
                    e.kernel = Some(strip_device(&expand(k, &vars)));
                    e.options = w[2..].iter().map(|a| expand(a, &vars)).collect::<Vec<_>>().join(" ");
                }
            }
            "initrd" | "initrd16" | "initrdefi" => {
                if let Some(e) = current.as_mut() {
                    e.initrd = w[1..].iter().map(|a| strip_device(&expand(a, &vars))).collect();
                }
            }
            "blscfg" => {
                if let Some((_, count)) = menus.first() {
                    blscfg_at.get_or_insert((entries.len(), *count));
                }
            }
            _ => {}
        }
    }
    Parsed { entries, default, blscfg_at }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Entry,
    Submenu,
    /// A function body, or a submenu nested too deep to number.
    Other,
    /// if/for/while, closed by fi/done.
    Cond,
}

fn finish(mut e: BootEntry) -> BootEntry {
    let (root, consoles) = cmdline_facts(&e.options);
    e.root = root;
    e.consoles = consoles;
    e
}

/// One BLS entry file: "key value" lines; `initrd` may repeat.
pub fn parse_bls(text: &str, id: &str, source: &str, env: &BTreeMap<String, String>) -> BootEntry {
    let mut e = BootEntry { id: Some(id.to_string()), source: source.to_string(), ..BootEntry::default() };
    let mut version = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let (k, v) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let v = v.trim();
        match k {
            "title" => e.title = v.to_string(),
            "version" => version = Some(v.to_string()),
            "linux" => e.kernel = Some(expand(v, env)),
            // GRUB expands variables here too; tuned's "$tuned_initrd" is usually unset, so empty.
            "initrd" => e.initrd.extend(expand(v, env).split_whitespace().map(str::to_string)),
            "options" => {
                let o = expand(v, env);
                e.options = if e.options.is_empty() { o } else { format!("{} {o}", e.options) };
            }
            _ => {}
        }
    }
    if e.title.is_empty() {
        e.title = version.unwrap_or_else(|| id.to_string());
    }
    finish(e)
}

/// grubenv: "key=value" lines in a 1 KiB block padded with '#'.
pub fn parse_grubenv(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The entry a default setting picks: a number or "a>b" path, a title or an id; the first entry otherwise.
pub fn pick_default<'a>(entries: &'a [BootEntry], setting: Option<&str>) -> Option<&'a BootEntry> {
    let s = setting.map(str::trim).filter(|s| !s.is_empty() && *s != "saved");
    if let Some(s) = s {
        if let Some(e) = entries.iter().find(|e| e.position == s) {
            return Some(e);
        }
        if let Some(e) = entries.iter().find(|e| e.id.as_deref() == Some(s) || e.title == s) {
            return Some(e);
        }
        // "Advanced options>Debian, with Linux ..." style paths of titles.
        if let Some(last) = s.rsplit('>').next() {
            if let Some(e) = entries.iter().find(|e| e.title == last || e.id.as_deref() == Some(last)) {
                return Some(e);
            }
        }
    }
    entries.iter().find(|e| e.position == "0").or(entries.first())
}

/// Find a file a boot entry names: as written, then below /boot (GRUB reads /boot's own partition when /boot is
/// separate, so "/vmlinuz-x" there is "/boot/vmlinuz-x" in the guest).
/// Where GRUB's path `p` is in the guest: on the root, on a /boot of its own, or, when the root is the btrfs
/// subvolume `subvol` (GRUB reads the btrfs from its top level: `/@/boot/vmlinuz`), under it.
fn locate(vfs: &mut Vfs, p: &str, subvol: Option<&str>) -> Option<String> {
    let p = if p.starts_with('/') { p.to_string() } else { format!("/{p}") };
    let in_subvol = subvol
        .map(|s| format!("/{}", s.trim_matches('/')))
        .and_then(|s| p.strip_prefix(&s).filter(|rest| rest.starts_with('/')).map(str::to_string));
    [Some(p.clone()), Some(format!("/boot{p}")), in_subvol].into_iter().flatten().find(|c| vfs.is_file(c))
}

fn check_files(vfs: &mut Vfs, e: &mut BootEntry, subvol: Option<&str>) {
    if let Some(k) = e.kernel.clone() {
        e.kernel_path = locate(vfs, &k, subvol);
        e.kernel_exists = Some(e.kernel_path.is_some());
    }
    if !e.initrd.is_empty() {
        let all = e.initrd.clone().iter().all(|i| locate(vfs, i, subvol).is_some());
        e.initrd_exists = Some(all);
    }
}

const CONFIGS: &[&str] = &["/boot/grub/grub.cfg", "/boot/grub2/grub.cfg"];
const GRUBENVS: &[&str] = &["/boot/grub/grubenv", "/boot/grub2/grubenv"];

/// The first file of `fixed` that exists, else one in /boot/efi/EFI/*/`name`.
fn find_config(vfs: &mut Vfs, fixed: &[&str], name: &str) -> Option<String> {
    for p in fixed {
        if vfs.is_file(p) {
            return Some(p.to_string());
        }
    }
    let mut dirs: Vec<String> = vfs.read_dir("/boot/efi/EFI").ok()?.into_iter().map(|d| d.name).collect();
    dirs.sort();
    dirs.into_iter().map(|d| format!("/boot/efi/EFI/{d}/{name}")).find(|p| vfs.is_file(p))
}

/// GRUB's menu and settings in the guest whose root `vfs` shows; `root_subvol` is the btrfs subvolume the root
/// is, when it is one.
pub fn grub(vfs: &mut Vfs, root_subvol: Option<&str>) -> Option<Grub> {
    let mut g = Grub::default();
    if let Some(p) = find_config(vfs, GRUBENVS, "grubenv") {
        g.grubenv = parse_grubenv(&vfs.read_text(&p, MAX_TEXT).unwrap_or_default());
        g.grubenv_path = Some(p);
    }
    if let Some(text) = vfs.read_text("/etc/default/grub", MAX_TEXT) {
        let v = parse_shell_vars(&text);
        let get = |k: &str| v.get(k).cloned();
        let mut consoles = Vec::new();
        for k in ["GRUB_CMDLINE_LINUX", "GRUB_CMDLINE_LINUX_DEFAULT"] {
            consoles.extend(cmdline_facts(v.get(k).map_or("", String::as_str)).1);
        }
        g.etc_default_grub = Some(DefaultGrub {
            cmdline_linux: get("GRUB_CMDLINE_LINUX"),
            cmdline_linux_default: get("GRUB_CMDLINE_LINUX_DEFAULT"),
            default: get("GRUB_DEFAULT"),
            terminal: get("GRUB_TERMINAL").or_else(|| get("GRUB_TERMINAL_OUTPUT")),
            serial_command: get("GRUB_SERIAL_COMMAND"),
            enable_blscfg: get("GRUB_ENABLE_BLSCFG"),
            consoles,
        });
    }
    let bls = bls_entries(vfs, &g.grubenv);
    if let Some(p) = find_config(vfs, CONFIGS, "grub.cfg") {
        let text = vfs.read_text(&p, 4 * MAX_TEXT).unwrap_or_default();
        let parsed = parse(&text, &p, &g.grubenv);
        let mut entries = parsed.entries;
        if let Some((at, top)) = parsed.blscfg_at {
            g.blscfg = true;
            // BLS entries take top-level positions from where blscfg stands; later entries move down.
            let n = bls.len();
            for e in entries.iter_mut().skip(at) {
                e.position = shift(&e.position, top, n);
            }
            let bls: Vec<BootEntry> = bls
                .into_iter()
                .enumerate()
                .map(|(i, mut e)| {
                    e.position = (top + i).to_string();
                    e
                })
                .collect();
            entries.splice(at.min(entries.len())..at.min(entries.len()), bls);
        }
        let setting = parsed.default.map(|d| {
            if d.contains("saved_entry") || d == "saved" {
                g.grubenv.get("saved_entry").cloned().unwrap_or_default()
            } else {
                d
            }
        });
        g.config = Some(p);
        g.entries = entries;
        g.default_setting = setting;
    } else if !bls.is_empty() {
        g.entries = bls
            .into_iter()
            .enumerate()
            .map(|(i, mut e)| {
                e.position = i.to_string();
                e
            })
            .collect();
        g.default_setting = g.grubenv.get("saved_entry").cloned();
    } else if g.grubenv_path.is_none() && g.etc_default_grub.is_none() {
        return None;
    }
    for e in g.entries.iter_mut() {
        check_files(vfs, e, root_subvol);
    }
    g.default_entry = pick_default(&g.entries, g.default_setting.as_deref()).cloned();
    Some(g)
}

fn shift(position: &str, top: usize, by: usize) -> String {
    let (first, rest) = position.split_once('>').map_or((position, None), |(a, b)| (a, Some(b)));
    let n: usize = first.parse().unwrap_or(0);
    let n = if n >= top { n + by } else { n };
    match rest {
        Some(r) => format!("{n}>{r}"),
        None => n.to_string(),
    }
}

/// BLS entries, newest version first as GRUB's blscfg sorts them.
fn bls_entries(vfs: &mut Vfs, env: &BTreeMap<String, String>) -> Vec<BootEntry> {
    let Ok(list) = vfs.read_dir("/boot/loader/entries") else { return Vec::new() };
    let mut names: Vec<String> = list.into_iter().map(|e| e.name).filter(|n| n.ends_with(".conf")).collect();
    names.sort_by(|a, b| version_cmp(b, a));
    names.truncate(MAX_ENTRIES);
    names
        .into_iter()
        .filter_map(|n| {
            let path = format!("/boot/loader/entries/{n}");
            let text = vfs.read_text(&path, MAX_TEXT)?;
            Some(parse_bls(&text, n.trim_end_matches(".conf"), &path, env))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN_CFG: &str = r#"
set default="0"
if [ x"${feature_menuentry_id}" = xy ]; then
  menuentry_id_option="--id"
else
  menuentry_id_option=""
fi
menuentry 'Debian GNU/Linux' --class debian --class gnu-linux $menuentry_id_option 'gnulinux-simple-3f1b' {
	insmod ext2
	search --no-floppy --fs-uuid --set=root 3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d
	echo	'Loading Linux 6.1.0-18-amd64 ...'
	linux	/boot/vmlinuz-6.1.0-18-amd64 root=UUID=3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d ro console=tty0 console=ttyS0,115200n8 quiet
	initrd	/boot/initrd.img-6.1.0-18-amd64
}
submenu 'Advanced options for Debian GNU/Linux' $menuentry_id_option 'gnulinux-advanced-3f1b' {
	menuentry 'Debian GNU/Linux, with Linux 6.1.0-18-amd64 (recovery mode)' $menuentry_id_option 'gnulinux-6.1.0-18-amd64-recovery-3f1b' {
		linux	/boot/vmlinuz-6.1.0-18-amd64 root=/dev/sda1 ro single
		initrd	/boot/initrd.img-6.1.0-18-amd64
	}
}
menuentry 'UEFI Firmware Settings' $menuentry_id_option 'uefi-firmware' {
	fwsetup
}
"#;

    #[test]
    fn debian_grub_cfg() {
        let (e, d) = parse_grub_cfg(DEBIAN_CFG, "/boot/grub/grub.cfg", &BTreeMap::new());
        assert_eq!(d.as_deref(), Some("0"));
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].title, "Debian GNU/Linux");
        assert_eq!(e[0].id.as_deref(), Some("gnulinux-simple-3f1b"));
        assert_eq!(e[0].kernel.as_deref(), Some("/boot/vmlinuz-6.1.0-18-amd64"));
        assert_eq!(e[0].initrd, ["/boot/initrd.img-6.1.0-18-amd64"]);
        assert_eq!(e[0].root.as_deref(), Some("UUID=3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"));
        assert_eq!(e[0].consoles, ["tty0", "ttyS0,115200n8"]);
        assert_eq!(e[0].search_fs_uuid.as_deref(), Some("3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"));
        assert_eq!(e[1].position, "1>0");
        assert_eq!(e[1].root.as_deref(), Some("/dev/sda1"));
        assert_eq!(e[2].position, "2");
        assert_eq!(pick_default(&e, Some("1>0")).unwrap().position, "1>0");
        assert_eq!(pick_default(&e, Some("gnulinux-6.1.0-18-amd64-recovery-3f1b")).unwrap().position, "1>0");
        assert_eq!(
            pick_default(
                &e,
                Some(
                    "Advanced options for Debian GNU/Linux>Debian GNU/Linux, with Linux 6.1.0-18-amd64 (recovery mode)"
                )
            )
            .unwrap()
            .position,
            "1>0"
        );
        assert_eq!(pick_default(&e, None).unwrap().position, "0");
    }

    #[test]
    fn bls_and_grubenv() {
        let env = parse_grubenv("# GRUB Environment Block\nsaved_entry=abc-5.14.0-362.el9.x86_64\nkernelopts=root=UUID=5a5a ro console=ttyS0\n######\n");
        assert_eq!(env["kernelopts"], "root=UUID=5a5a ro console=ttyS0");
        let e = parse_bls(
            "title Rocky Linux (5.14.0-362.el9.x86_64) 9.3\nversion 5.14.0-362.el9.x86_64\nlinux /vmlinuz-5.14.0-362.el9.x86_64\ninitrd /initramfs-5.14.0-362.el9.x86_64.img $tuned_initrd\noptions $kernelopts crashkernel=1G\n",
            "abc-5.14.0-362.el9.x86_64",
            "/boot/loader/entries/abc-5.14.0-362.el9.x86_64.conf",
            &env,
        );
        assert_eq!(e.root.as_deref(), Some("UUID=5a5a"));
        assert_eq!(e.consoles, ["ttyS0"]);
        assert_eq!(e.options, "root=UUID=5a5a ro console=ttyS0 crashkernel=1G");
        assert_eq!(e.initrd, ["/initramfs-5.14.0-362.el9.x86_64.img"]);
    }

    #[test]
    fn words_and_expansion() {
        assert_eq!(words(r#"menuentry 'a b' "c\"d" e\ f # x"#), ["menuentry", "a b", "c\"d", "e f"]);
        let mut v = BTreeMap::new();
        v.insert("x".to_string(), "1".to_string());
        assert_eq!(expand("a$x-${x}-$y-$", &v), "a1-1--$");
        assert_eq!(strip_device("(hd0,msdos1)/vmlinuz"), "/vmlinuz");
        assert_eq!(shift("3>1", 2, 4), "7>1");
        assert_eq!(shift("1", 2, 4), "1");
    }

    #[test]
    fn hostile_configs_do_not_panic() {
        let nested: String =
            (0..100).map(|_| "submenu 'x' {\n").collect::<String>() + "menuentry 'deep' {\nlinux /k\n}\n";
        let (e, _) = parse_grub_cfg(&nested, "g", &BTreeMap::new());
        assert_eq!(e.len(), 1);
        let many = "menuentry 'x' {\n}\n".repeat(5000);
        assert_eq!(parse_grub_cfg(&many, "g", &BTreeMap::new()).0.len(), MAX_ENTRIES);
        for s in ["}}}}", "menuentry", "linux", "set", "set default", "menuentry '\\", "\"", "${"] {
            let _ = parse_grub_cfg(s, "g", &BTreeMap::new());
        }
    }
}
