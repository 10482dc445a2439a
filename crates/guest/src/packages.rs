//! Installed packages with versions: the dpkg status file, or the RPM database (SQLite, read by
//! [`crate::sqlite`], with RPM header blobs decoded here). BerkeleyDB and NDB RPM databases are recognised and
//! reported as not read. Versions compare by dpkg's or RPM's own ordering rules.

use crate::sqlite::{self, Value};
use crate::vfs::Vfs;
use serde::Serialize;
use std::cmp::Ordering;

/// Largest dpkg status file read.
const MAX_STATUS: usize = 64 << 20;
/// Largest RPM SQLite database read (it is read whole: SQLite needs random access).
const MAX_RPMDB: usize = 256 << 20;
/// Index entries accepted in one RPM header.
const MAX_HEADER_TAGS: u32 = 0x1_0000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PackageFormat {
    Dpkg,
    /// RPM database in SQLite (rpmdb.sqlite, RPM 4.16 and later).
    RpmSqlite,
    /// RPM database in BerkeleyDB (/var/lib/rpm/Packages): recognised, not read.
    RpmBdb,
    /// RPM database in NDB (Packages.db, SUSE): recognised, not read.
    RpmNdb,
}

#[derive(Debug, Clone, Serialize)]
pub struct Package {
    pub name: String,
    /// The full version: dpkg `epoch:upstream-revision`, RPM `epoch:version-release` (epoch, revision optional).
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Packages {
    pub format: PackageFormat,
    /// The database file read.
    pub source: String,
    /// Sorted by name.
    pub packages: Vec<Package>,
    /// Every record was read.
    pub complete: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

impl Packages {
    /// The installed package `name` (the first, when several architectures are installed).
    pub fn get(&self, name: &str) -> Option<&Package> {
        self.packages.iter().find(|p| p.name == name)
    }

    /// Order two versions by this database's rules.
    pub fn compare(&self, a: &str, b: &str) -> Ordering {
        match self.format {
            PackageFormat::Dpkg => dpkg_cmp(a, b),
            _ => rpm_evr_cmp(a, b),
        }
    }

    /// Whether `name` is installed at version `min` or later; `None` when it is not installed.
    pub fn at_least(&self, name: &str, min: &str) -> Option<bool> {
        self.get(name).map(|p| self.compare(&p.version, min) != Ordering::Less)
    }
}

/// Installed entries of a dpkg status file ("Status: install ok installed").
pub fn parse_dpkg_status(text: &str) -> Vec<Package> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let (mut name, mut version, mut arch, mut installed) = (None, None, None, false);
        for line in stanza.lines() {
            if line.starts_with([' ', '\t']) {
                continue;
            }
            let Some((k, v)) = line.split_once(':') else { continue };
            let v = v.trim();
            match k {
                "Package" => name = Some(v.to_string()),
                "Version" => version = Some(v.to_string()),
                "Architecture" => arch = Some(v.to_string()),
                "Status" => installed = v.split_whitespace().nth(2) == Some("installed"),
                _ => {}
            }
        }
        if let (Some(name), Some(version), true) = (name, version, installed) {
            out.push(Package { name, version, arch });
        }
    }
    out
}

/// dpkg's comparison of one part (upstream or revision): runs of non-digits compare with '~' before everything
/// (even the end), letters before other characters; runs of digits compare numerically.
fn dpkg_part_cmp(a: &str, b: &str) -> Ordering {
    fn order(c: Option<u8>) -> i32 {
        match c {
            None => 0,
            Some(b'~') => -1,
            Some(c) if c.is_ascii_digit() => 0,
            Some(c) if c.is_ascii_alphabetic() => i32::from(c),
            Some(c) => i32::from(c) + 256,
        }
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0usize, 0usize);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let (ac, bc) = (order(a.get(i).copied()), order(b.get(j).copied()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first = Ordering::Equal;
        while i < a.len() && a[i].is_ascii_digit() && j < b.len() && b[j].is_ascii_digit() {
            if first == Ordering::Equal {
                first = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if i < a.len() && a[i].is_ascii_digit() {
            return Ordering::Greater;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            return Ordering::Less;
        }
        if first != Ordering::Equal {
            return first;
        }
    }
    Ordering::Equal
}

fn split_epoch(v: &str) -> (u64, &str) {
    match v.split_once(':') {
        Some((e, rest)) if !e.is_empty() && e.bytes().all(|c| c.is_ascii_digit()) => {
            (e.parse().unwrap_or(u64::MAX), rest)
        }
        _ => (0, v),
    }
}

/// Compare two dpkg versions (`epoch:upstream-revision`) as `dpkg --compare-versions` does.
pub fn dpkg_cmp(a: &str, b: &str) -> Ordering {
    let (ea, ra) = split_epoch(a.trim());
    let (eb, rb) = split_epoch(b.trim());
    let (ua, va) = ra.rsplit_once('-').unwrap_or((ra, ""));
    let (ub, vb) = rb.rsplit_once('-').unwrap_or((rb, ""));
    ea.cmp(&eb).then_with(|| dpkg_part_cmp(ua, ub)).then_with(|| dpkg_part_cmp(va, vb))
}

/// RPM's rpmvercmp of one field (version or release).
pub fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0usize, 0usize);
    let sep = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    loop {
        while i < a.len() && sep(a[i]) {
            i += 1;
        }
        while j < b.len() && sep(b[j]) {
            j += 1;
        }
        // '~' sorts before everything, even the end.
        let (ta, tb) = (a.get(i) == Some(&b'~'), b.get(j) == Some(&b'~'));
        if ta || tb {
            if !(ta && tb) {
                return if ta { Ordering::Less } else { Ordering::Greater };
            }
            i += 1;
            j += 1;
            continue;
        }
        // '^' sorts after the end but before anything else.
        let (ca, cb) = (a.get(i) == Some(&b'^'), b.get(j) == Some(&b'^'));
        if ca || cb {
            if i >= a.len() {
                return Ordering::Less;
            }
            if j >= b.len() {
                return Ordering::Greater;
            }
            if !(ca && cb) {
                return if ca { Ordering::Less } else { Ordering::Greater };
            }
            i += 1;
            j += 1;
            continue;
        }
        if i >= a.len() || j >= b.len() {
            break;
        }
        let numeric = a[i].is_ascii_digit();
        let run = |s: &[u8], mut k: usize| {
            let start = k;
            while k < s.len() && if numeric { s[k].is_ascii_digit() } else { s[k].is_ascii_alphabetic() } {
                k += 1;
            }
            (start, k)
        };
        let (sa, ea) = run(a, i);
        let (sb, eb) = run(b, j);
        if sb == eb {
            // Segments of different kinds: numeric is newer.
            return if numeric { Ordering::Greater } else { Ordering::Less };
        }
        let (mut x, mut y) = (&a[sa..ea], &b[sb..eb]);
        if numeric {
            while x.first() == Some(&b'0') {
                x = &x[1..];
            }
            while y.first() == Some(&b'0') {
                y = &y[1..];
            }
            let o = x.len().cmp(&y.len());
            if o != Ordering::Equal {
                return o;
            }
        }
        let o = x.cmp(y);
        if o != Ordering::Equal {
            return o;
        }
        i = ea;
        j = eb;
    }
    match (i >= a.len(), j >= b.len()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, _) => Ordering::Greater,
    }
}

/// Compare `epoch:version-release` as RPM does; a release missing on one side is not compared.
pub fn rpm_evr_cmp(a: &str, b: &str) -> Ordering {
    let (ea, ra) = split_epoch(a.trim());
    let (eb, rb) = split_epoch(b.trim());
    let (va, la) = ra.rsplit_once('-').map_or((ra, None), |(v, r)| (v, Some(r)));
    let (vb, lb) = rb.rsplit_once('-').map_or((rb, None), |(v, r)| (v, Some(r)));
    ea.cmp(&eb).then_with(|| rpmvercmp(va, vb)).then_with(|| match (la, lb) {
        (Some(x), Some(y)) => rpmvercmp(x, y),
        _ => Ordering::Equal,
    })
}

/// Name, version, release, epoch and arch from an RPM header blob as rpmdb stores it (no lead magic).
pub fn parse_rpm_header(blob: &[u8]) -> crate::error::Result<Package> {
    use crate::bytes::be32;
    use crate::error::Error;
    const HEADER: &str = "rpm header";
    let il = be32(blob, 0);
    let dl = be32(blob, 4);
    if il == 0 || il > MAX_HEADER_TAGS {
        return Err(Error::invalid(HEADER, format!("rpm header: {il} index entries")).at(0));
    }
    let data_at = 8 + il as usize * 16;
    let data = blob.get(data_at..data_at.saturating_add(dl as usize)).ok_or_else(|| {
        let why = format!("rpm header: {il} entries and {dl} data bytes do not fit in {} bytes", blob.len());
        Error::corrupt(HEADER, why).at(4)
    })?;
    let mut f: [Option<String>; 4] = Default::default();
    let mut epoch = None;
    for i in 0..il as usize {
        let e = 8 + i * 16;
        let (tag, ty, off) = (be32(blob, e), be32(blob, e + 4), be32(blob, e + 8) as usize);
        let string = || -> Option<String> {
            let s = data.get(off..)?;
            let end = s.iter().position(|&c| c == 0)?;
            Some(String::from_utf8_lossy(&s[..end]).into_owned())
        };
        match (tag, ty) {
            (1000, 6 | 9) => f[0] = string(),
            (1001, 6 | 9) => f[1] = string(),
            (1002, 6 | 9) => f[2] = string(),
            (1022, 6 | 9) => f[3] = string(),
            (1003, 4) => epoch = data.get(off..off + 4).map(|b| be32(b, 0)),
            _ => {}
        }
    }
    let [Some(name), Some(version), release, arch] = f else {
        return Err(Error::invalid(HEADER, "rpm header: no name or version tag"));
    };
    let mut v = match epoch {
        Some(e) => format!("{e}:{version}"),
        None => version,
    };
    if let Some(r) = release {
        v = format!("{v}-{r}");
    }
    Ok(Package { name, version: v, arch })
}

/// Packages of an RPM SQLite database held in memory.
pub fn read_rpm_sqlite(data: &[u8]) -> (Vec<Package>, Vec<String>) {
    let mut problems = Vec::new();
    let rows = sqlite::Db::open(data).and_then(|db| match db.table_root("Packages")? {
        Some(root) => db.rows(root),
        None => Err(crate::error::Error::invalid("sqlite schema", "the database has no Packages table")),
    });
    let rows = match rows {
        Ok(r) => r,
        Err(e) => return (Vec::new(), vec![e.to_string()]),
    };
    let mut out = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let blob = row.iter().find_map(|v| if let Value::Blob(b) = v { Some(b) } else { None });
        match blob.map(|b| parse_rpm_header(b)) {
            Some(Ok(p)) if p.name != "gpg-pubkey" => out.push(p),
            Some(Ok(_)) => {}
            Some(Err(e)) => problems.push(format!("Packages row {i}: {e}")),
            None => problems.push(format!("Packages row {i}: no header blob")),
        }
    }
    (out, problems)
}

const RPM_DIRS: &[&str] = &["/var/lib/rpm", "/usr/lib/sysimage/rpm"];

pub fn packages(vfs: &mut Vfs) -> Option<Packages> {
    if let Ok(status) = vfs.read_file("/var/lib/dpkg/status", MAX_STATUS) {
        let mut packages = parse_dpkg_status(&String::from_utf8_lossy(&status));
        packages.sort_by(|a, b| a.name.cmp(&b.name));
        return Some(Packages {
            format: PackageFormat::Dpkg,
            source: "/var/lib/dpkg/status".into(),
            packages,
            complete: true,
            problems: Vec::new(),
        });
    }
    for dir in RPM_DIRS {
        let path = format!("{dir}/rpmdb.sqlite");
        let Ok(meta) = vfs.stat(&path) else { continue };
        let mut problems = Vec::new();
        let (mut packages, mut read_problems) = if meta.size > MAX_RPMDB as u64 {
            (Vec::new(), vec![format!("{} bytes: larger than the {MAX_RPMDB}-byte limit", meta.size)])
        } else {
            match vfs.read_file(&path, MAX_RPMDB) {
                Ok(data) => read_rpm_sqlite(&data),
                Err(e) => (Vec::new(), vec![format!("cannot read: {e}")]),
            }
        };
        problems.append(&mut read_problems);
        if vfs.stat(&format!("{path}-wal")).is_ok_and(|m| m.size > 0) {
            problems.push(
                "a write-ahead log (rpmdb.sqlite-wal) holds changes not merged into the database: \
                           they are not read"
                    .into(),
            );
        }
        packages.sort_by(|a, b| a.name.cmp(&b.name));
        return Some(Packages {
            format: PackageFormat::RpmSqlite,
            source: path,
            complete: problems.is_empty(),
            packages,
            problems,
        });
    }
    for dir in RPM_DIRS {
        for (file, format, what) in
            [("Packages", PackageFormat::RpmBdb, "BerkeleyDB"), ("Packages.db", PackageFormat::RpmNdb, "NDB")]
        {
            let path = format!("{dir}/{file}");
            if vfs.is_file(&path) {
                return Some(Packages {
                    format,
                    problems: vec![format!("{what} RPM databases are not read: no package versions")],
                    source: path,
                    packages: Vec::new(),
                    complete: false,
                });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn dpkg_versions() {
        let cases = [
            ("22.4-1", "19.1.3", Greater),
            ("0.7.9-1", "19.1.3", Less),
            ("1:0.1", "2.0", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.0", "1.0-0", Equal),
            ("1.0a", "1.0-", Greater),
            ("1.0+dfsg", "1.0", Greater),
            ("1.0.1", "1.0a", Greater),
            ("22.4.2-1+deb12u1", "22.4.2-1", Greater),
            ("2.30-1ubuntu1", "2.30-1", Greater),
            ("1.010", "1.9", Greater),
            ("1~~", "1~~a", Less),
            ("1~", "1~~", Greater),
        ];
        for (a, b, want) in cases {
            assert_eq!(dpkg_cmp(a, b), want, "{a} vs {b}");
            assert_eq!(dpkg_cmp(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn rpm_versions() {
        let cases = [
            ("23.4-7.el9", "19.1.3", Greater),
            ("0.7.9-24.el7", "19.1.3", Less),
            ("1.0", "1.0", Equal),
            ("1.0a", "1.0", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.0^git1", "1.0", Greater),
            ("1.0^git1", "1.0.1", Less),
            ("2.0", "10", Less),
            ("1.a", "1.1", Less),
            ("1.001", "1.1", Equal),
            ("5.14.0-362.el9", "5.14.0-70.el9", Greater),
            ("1:1.0", "2.0", Greater),
            ("1.0-1", "1.0-2", Less),
            ("1.0-1", "1.0", Equal),
        ];
        for (a, b, want) in cases {
            assert_eq!(rpm_evr_cmp(a, b), want, "{a} vs {b}");
            assert_eq!(rpm_evr_cmp(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn dpkg_status_installed_only() {
        let p = parse_dpkg_status(
            "Package: cloud-init\nStatus: install ok installed\nVersion: 22.4.2-1+deb12u1\nArchitecture: all\nDescription: x\n multi\n\n\
             Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\nPackage: base-files\nStatus: install ok installed\nVersion: 12.4+deb12u5\n",
        );
        assert_eq!(p.len(), 2);
        let db = Packages {
            format: PackageFormat::Dpkg,
            source: String::new(),
            packages: p,
            complete: true,
            problems: vec![],
        };
        assert_eq!(db.at_least("cloud-init", "19.1.3"), Some(true));
        assert_eq!(db.at_least("cloud-init", "23"), Some(false));
        assert_eq!(db.at_least("gone", "0"), None);
    }

    /// An RPM header blob with the given (tag, type, value) entries.
    pub(crate) fn rpm_blob(entries: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let mut index = Vec::new();
        let mut data = Vec::new();
        for (tag, ty, v) in entries {
            index.extend_from_slice(&tag.to_be_bytes());
            index.extend_from_slice(&ty.to_be_bytes());
            index.extend_from_slice(&(data.len() as u32).to_be_bytes());
            index.extend_from_slice(&1u32.to_be_bytes());
            data.extend_from_slice(v);
        }
        let mut out = (entries.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend(index);
        out.extend(data);
        out
    }

    #[test]
    fn rpm_headers() {
        let b = rpm_blob(&[
            (1000, 6, b"cloud-init\0"),
            (1001, 6, b"23.4\0"),
            (1002, 6, b"7.el9\0"),
            (1003, 4, &1u32.to_be_bytes()),
            (1022, 6, b"noarch\0"),
        ]);
        let p = parse_rpm_header(&b).unwrap();
        assert_eq!(
            (p.name.as_str(), p.version.as_str(), p.arch.as_deref()),
            ("cloud-init", "1:23.4-7.el9", Some("noarch"))
        );
        assert!(parse_rpm_header(&b[..20]).is_err());
        let mut huge = b.clone();
        huge[..4].copy_from_slice(&0xFFFF_FFFFu32.to_be_bytes());
        assert!(parse_rpm_header(&huge).is_err());
        let mut off = b.clone();
        off[8 + 8..8 + 12].copy_from_slice(&0x7FFF_FFFFu32.to_be_bytes());
        assert!(parse_rpm_header(&off).is_err());
    }
}
