//! The text descriptor: `key=value` lines (CID, parentCID, createType, ddb.*) and extent lines
//! `ACCESS SECTORS TYPE ["FILE" [OFFSET]]`. It is either a file of its own (monolithicFlat, twoGbMaxExtent*)
//! or embedded in a sparse extent (monolithicSparse, streamOptimized).
//!
//! Parsing is tolerant the way VMware's is (comments, blank lines, CRLF, unknown keys, unquoted values) but
//! every extent line must be well formed: a descriptor is the map of the disk, a line we cannot read is a
//! line whose data we would silently drop.

use crate::error::{Error, Result};

/// The most extents one descriptor may list (a 8 TiB twoGbMaxExtent disk has 4096).
pub const MAX_EXTENTS: usize = 4096;
/// The largest descriptor read (qemu reads at most 1 MiB as well).
pub const MAX_DESCRIPTOR_LEN: usize = 1 << 20;

/// How an extent may be accessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadWrite,
    ReadOnly,
    Inaccessible,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::ReadWrite => "RW",
            Access::ReadOnly => "RDONLY",
            Access::Inaccessible => "NOACCESS",
        }
    }
}

/// One extent line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtentLine {
    pub access: Access,
    pub sectors: u64,
    /// FLAT, SPARSE, ZERO, VMFS, VMFSSPARSE, SESPARSE, VMFSRDM, VMFSRAW... (upper case as written).
    pub kind: String,
    pub file: Option<String>,
    /// Start of the extent in its file, in sectors (FLAT and VMFS extents).
    pub offset: u64,
}

/// A parsed descriptor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Descriptor {
    pub version: Option<u32>,
    pub cid: Option<u32>,
    pub parent_cid: Option<u32>,
    pub create_type: Option<String>,
    pub parent_file_name_hint: Option<String>,
    pub extents: Vec<ExtentLine>,
    /// `ddb.*` entries in order, keys without the `ddb.` prefix, values unquoted.
    pub ddb: Vec<(String, String)>,
}

/// "ffffffff": the CID value that means "no parent".
pub const NO_PARENT_CID: u32 = 0xffff_ffff;

impl Descriptor {
    /// Parse descriptor text; an embedded descriptor ends at its first NUL byte.
    pub fn parse(bytes: &[u8]) -> Result<Descriptor> {
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        let text = String::from_utf8_lossy(&bytes[..end]);
        let mut d = Descriptor::default();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let first = line.split_whitespace().next().unwrap_or("");
            if let Some(access) = parse_access(first) {
                if d.extents.len() >= MAX_EXTENTS {
                    return Err(Error::unsupported(format!("descriptor lists more than {MAX_EXTENTS} extents")));
                }
                let e = parse_extent_line(access, line)
                    .map_err(|why| Error::invalid_format(format!("descriptor line {}: {why}: {line}", n + 1)))?;
                d.extents.push(e);
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let key = key.trim();
            let value = unquote(value.trim());
            match key.to_ascii_lowercase().as_str() {
                "version" => d.version = value.parse().ok(),
                "cid" => d.cid = parse_cid(value),
                "parentcid" => d.parent_cid = parse_cid(value),
                "createtype" => d.create_type = Some(value.to_string()),
                "parentfilenamehint" => d.parent_file_name_hint = Some(value.to_string()),
                lower if lower.starts_with("ddb.") => d.ddb.push((key[4..].to_string(), value.to_string())),
                _ => {}
            }
        }
        Ok(d)
    }

    /// A `ddb.` entry, by case-insensitive key without the prefix.
    pub fn ddb(&self, key: &str) -> Option<&str> {
        self.ddb.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.as_str())
    }

    /// True when the descriptor names a parent disk (a differencing disk / snapshot).
    pub fn has_parent(&self) -> bool {
        self.parent_file_name_hint.is_some() || self.parent_cid.is_some_and(|c| c != NO_PARENT_CID)
    }
}

fn parse_access(word: &str) -> Option<Access> {
    match word {
        "RW" => Some(Access::ReadWrite),
        "RDONLY" => Some(Access::ReadOnly),
        "NOACCESS" => Some(Access::Inaccessible),
        _ => None,
    }
}

fn parse_cid(value: &str) -> Option<u32> {
    u32::from_str_radix(value.trim(), 16).ok()
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v)
}

/// `ACCESS SECTORS TYPE ["FILE" [OFFSET]]`; the file name is quoted and may contain spaces.
fn parse_extent_line(access: Access, line: &str) -> Result<ExtentLine, &'static str> {
    let rest = line.split_once(char::is_whitespace).map(|(_, r)| r.trim_start()).unwrap_or("");
    let (sectors, rest) = rest.split_once(char::is_whitespace).ok_or("missing extent type")?;
    let sectors: u64 = sectors.parse().map_err(|_| "bad sector count")?;
    let rest = rest.trim_start();
    let (kind, rest) = match rest.split_once(char::is_whitespace) {
        Some((k, r)) => (k, r.trim_start()),
        None => (rest, ""),
    };
    if kind.is_empty() {
        return Err("missing extent type");
    }
    let kind = kind.to_ascii_uppercase();
    let (file, rest) = if let Some(quoted) = rest.strip_prefix('"') {
        let close = quoted.find('"').ok_or("unterminated file name")?;
        (Some(quoted[..close].to_string()), quoted[close + 1..].trim())
    } else if rest.is_empty() {
        (None, "")
    } else {
        // Unquoted names exist in hand-written descriptors; take one word.
        let (f, r) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        (Some(f.to_string()), r.trim())
    };
    let offset = match rest.split_whitespace().next() {
        None => 0,
        Some(o) => o.parse().map_err(|_| "bad extent offset")?,
    };
    if kind != "ZERO" && file.as_deref().is_none_or(str::is_empty) {
        return Err("missing file name");
    }
    Ok(ExtentLine { access, sectors, kind, file, offset })
}

/// The descriptor embedded in a streamOptimized image written by imgport.
pub fn stream_optimized_text(cid: u32, sectors: u64, file_name: &str) -> String {
    // Geometry as qemu computes it for a SCSI adapter: 255 heads, 63 sectors per track.
    let cylinders = sectors / (255 * 63);
    format!(
        "# Disk DescriptorFile\n\
         version=1\n\
         CID={cid:08x}\n\
         parentCID=ffffffff\n\
         createType=\"streamOptimized\"\n\
         \n\
         # Extent description\n\
         RW {sectors} SPARSE \"{file_name}\"\n\
         \n\
         # The Disk Data Base\n\
         #DDB\n\
         \n\
         ddb.virtualHWVersion = \"4\"\n\
         ddb.geometry.cylinders = \"{cylinders}\"\n\
         ddb.geometry.heads = \"255\"\n\
         ddb.geometry.sectors = \"63\"\n\
         ddb.adapterType = \"lsilogic\"\n\
         ddb.toolsVersion = \"2147483647\"\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const QEMU_FLAT: &str = "# Disk DescriptorFile\nversion=1\nCID=b4f14a4a\nparentCID=ffffffff\n\
        createType=\"twoGbMaxExtentFlat\"\n\n# Extent description\nRW 4194304 FLAT \"d-f001.vmdk\" 0\n\
        RW 10240 FLAT \"d-f002.vmdk\" 0\n\n# The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = \"4\"\n\
        ddb.adapterType = \"ide\"\n";

    #[test]
    fn parses_a_qemu_descriptor() {
        let d = Descriptor::parse(QEMU_FLAT.as_bytes()).unwrap();
        assert_eq!(d.version, Some(1));
        assert_eq!(d.cid, Some(0xb4f14a4a));
        assert_eq!(d.parent_cid, Some(NO_PARENT_CID));
        assert!(!d.has_parent());
        assert_eq!(d.create_type.as_deref(), Some("twoGbMaxExtentFlat"));
        assert_eq!(d.extents.len(), 2);
        assert_eq!(
            d.extents[1],
            ExtentLine {
                access: Access::ReadWrite,
                sectors: 10240,
                kind: "FLAT".into(),
                file: Some("d-f002.vmdk".into()),
                offset: 0
            }
        );
        assert_eq!(d.ddb("adaptertype"), Some("ide"));
        assert_eq!(d.ddb("virtualHWVersion"), Some("4"));
    }

    #[test]
    fn tolerates_crlf_unquoted_values_spaces_in_names_and_nul_padding() {
        let text = b"# Disk DescriptorFile\r\nCID=0000002a\r\ncreateType=streamOptimized\r\n\
            RDONLY 16777216 SPARSE \"my disk-0.vmdk\"\r\nRW 100 ZERO\r\nRW 8 VMFS \"raw.img\"\r\n\0\0garbage";
        let d = Descriptor::parse(text).unwrap();
        assert_eq!(d.cid, Some(42));
        assert_eq!(d.create_type.as_deref(), Some("streamOptimized"));
        assert_eq!(d.extents[0].access, Access::ReadOnly);
        assert_eq!(d.extents[0].file.as_deref(), Some("my disk-0.vmdk"));
        assert_eq!(d.extents[1].kind, "ZERO");
        assert_eq!(d.extents[1].file, None);
        assert_eq!(d.extents[2].offset, 0);
    }

    #[test]
    fn parent_makes_a_differencing_disk() {
        let d = Descriptor::parse(b"parentCID=12345678\n").unwrap();
        assert!(d.has_parent());
        let d = Descriptor::parse(b"parentCID=ffffffff\nparentFileNameHint=\"base.vmdk\"\n").unwrap();
        assert!(d.has_parent());
    }

    #[test]
    fn rejects_broken_extent_lines() {
        for bad in [
            "RW abc FLAT \"x\" 0",
            "RW 10",
            "RW 10 FLAT",
            "RW 10 FLAT \"x",
            "RW 10 FLAT \"x\" nope",
            "RW -5 FLAT \"x\" 0",
            "RW 99999999999999999999999 FLAT \"x\" 0",
        ] {
            let e = Descriptor::parse(bad.as_bytes()).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidFormat, "{bad}");
        }
    }

    #[test]
    fn caps_the_number_of_extents() {
        let text = "RW 1 ZERO\n".repeat(MAX_EXTENTS + 1);
        let e = Descriptor::parse(text.as_bytes()).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::UnsupportedFeature);
    }

    #[test]
    fn writer_descriptor_parses_back() {
        let text = stream_optimized_text(0xdeadbeef, 2048, "disk.vmdk");
        let d = Descriptor::parse(text.as_bytes()).unwrap();
        assert_eq!(d.cid, Some(0xdeadbeef));
        assert_eq!(d.create_type.as_deref(), Some("streamOptimized"));
        assert_eq!(d.extents[0].sectors, 2048);
        assert_eq!(d.ddb("adapterType"), Some("lsilogic"));
        assert!(!d.has_parent());
    }
}
