//! LVM2 physical volumes: the label, the PV header and the volume group metadata text, read from the on-disk
//! format of lvm2's `lib/format_text` (label_header, pv_header, mda_header, raw_locn). Enough to tell which volume
//! group a PV belongs to, which PVs the group needs and which logical volumes it holds; LV contents are not read.

use crate::bytes::{le32, le64};
use crate::error::{Error, Result};
use crate::reader::Region;
use serde::Serialize;

/// The first four sectors may hold the label.
const LABEL_SCAN_SECTORS: u64 = 4;
/// Largest metadata text read: real ones are a few KiB, the default area is 1 MiB.
const MAX_METADATA: u64 = 1 << 20;
const FMTT_MAGIC: &[u8; 16] = b" LVM2 x[5A%r0N*>";
/// lvm2's CRC: the reflected CRC-32 polynomial, this initial value, no final inversion.
const INITIAL_CRC: u32 = 0xf597_a6cf;
/// Nesting of the metadata text past which it is refused (real metadata nests four deep).
const MAX_DEPTH: usize = 16;

pub fn lvm_crc(data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new_with_initial(!INITIAL_CRC);
    h.update(data);
    !h.finalize()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PhysicalVolume {
    /// The volume (partition) holding it, e.g. "/dev/sda2".
    pub device: String,
    /// Byte offset of the volume in the virtual disk.
    pub start: u64,
    /// PV UUID without dashes (32 characters).
    pub uuid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_group: Option<VolumeGroup>,
    /// Why the metadata could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeGroup {
    pub name: String,
    pub seqno: u64,
    /// Member PVs: (metadata key such as "pv0", UUID without dashes, device hint).
    pub physical_volumes: Vec<VgMember>,
    pub logical_volumes: Vec<String>,
    /// Bytes per extent.
    #[serde(skip)]
    pub extent_size: u64,
    /// The PVs' extents, in the order of `physical_volumes`.
    #[serde(skip)]
    pub pv_extents: Vec<crate::lvm_layout::PvExtents>,
    /// The group's UUID without dashes (32 characters; `dm-uuid-LVM-` names start with it).
    #[serde(skip)]
    pub uuid: String,
    /// Each logical volume as the metadata describes it, in the order of `logical_volumes`.
    #[serde(skip)]
    pub lvs: Vec<LvMeta>,
}

/// A logical volume's identity and layout from the metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LvMeta {
    pub name: String,
    /// UUID without dashes.
    pub uuid: String,
    /// Users see it (`lvs`); sub-volumes of thin pools, RAID and caches are hidden.
    pub visible: bool,
    /// Where its bytes are, or why the metadata describing them is wrong.
    pub layout: std::result::Result<crate::lvm_layout::Layout, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VgMember {
    pub key: String,
    pub uuid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_hint: Option<String>,
}

/// Read the PV in `region` (whose label the probe found). `None` when no valid label is there.
pub fn read_pv(region: &mut Region, device: &str) -> Option<PhysicalVolume> {
    let head = region.read_vec(0, (LABEL_SCAN_SECTORS * 512).min(region.len()) as usize).ok()?;
    for sector in 0..LABEL_SCAN_SECTORS as usize {
        let Some(l) = head.get(sector * 512..sector * 512 + 512) else { break };
        if &l[0..8] != b"LABELONE" || &l[24..32] != b"LVM2 001" || le64(l, 8) != sector as u64 {
            continue;
        }
        let mut pv = PhysicalVolume {
            device: device.to_string(),
            start: region.start(),
            uuid: String::new(),
            volume_group: None,
            error: None,
        };
        if lvm_crc(&l[20..]) != le32(l, 16) {
            pv.error = Some(format!("label in sector {sector} has a bad checksum"));
            return Some(pv);
        }
        let off = le32(l, 20) as usize;
        let Some(h) = l.get(off..).filter(|h| h.len() >= 40) else {
            pv.error = Some("PV header lies outside the label sector".into());
            return Some(pv);
        };
        pv.uuid = String::from_utf8_lossy(&h[..32]).into_owned();
        // Two zero-terminated lists of (offset, size): data areas, then metadata areas.
        let mut at = 40;
        let mut lists: [Vec<(u64, u64)>; 2] = [Vec::new(), Vec::new()];
        for list in lists.iter_mut() {
            loop {
                if at + 16 > h.len() {
                    break;
                }
                let (o, s) = (le64(h, at), le64(h, at + 8));
                at += 16;
                if o == 0 && s == 0 {
                    break;
                }
                list.push((o, s));
            }
        }
        let mut last_error = None;
        for &(mda, size) in &lists[1] {
            match read_metadata(region, mda, size) {
                Ok(vg) => {
                    pv.volume_group = Some(vg);
                    break;
                }
                Err(e) => last_error = Some(e.to_string()),
            }
        }
        if pv.volume_group.is_none() {
            pv.error = Some(last_error.unwrap_or_else(|| "no metadata area (the PV carries no VG metadata)".into()));
        }
        return Some(pv);
    }
    None
}

/// Structure names the errors carry.
const AREA: &str = "lvm metadata area";
const TEXT_FORMAT: &str = "lvm metadata text";

fn read_metadata(region: &mut Region, mda: u64, size: u64) -> Result<VolumeGroup> {
    let at = |what: &str| format!("{what} at byte {mda} of the PV");
    let corrupt = |what: &str| Error::corrupt(AREA, at(what)).at(mda);
    let io = |e: imgport_disk::Error| Error::io(AREA, e).at(mda);
    if mda.checked_add(512).is_none_or(|end| end > region.len()) {
        return Err(corrupt("metadata area lies past the end of the volume"));
    }
    let h = region.read_vec(mda, 512).map_err(io)?;
    if &h[4..20] != FMTT_MAGIC {
        return Err(Error::invalid(AREA, at("metadata header has no LVM2 magic")).at(mda));
    }
    if lvm_crc(&h[4..]) != le32(&h, 0) {
        return Err(corrupt("metadata header has a bad checksum"));
    }
    // raw_locn[0]: the current metadata text, offset relative to the area.
    let (off, len, sum) = (le64(&h, 40), le64(&h, 48), le32(&h, 56));
    if off == 0 || len == 0 {
        return Err(Error::invalid(AREA, at("metadata area holds no metadata")).at(mda));
    }
    if len > MAX_METADATA || off >= size.max(512) {
        return Err(corrupt("metadata location is out of bounds"));
    }
    let start = mda.checked_add(off).filter(|s| s.saturating_add(len) <= region.len());
    let Some(start) = start else { return Err(corrupt("metadata text lies past the end of the volume")) };
    // The text may wrap around the end of the circular area; such metadata is read in two pieces.
    let area_end = mda.saturating_add(size);
    let mut text = Vec::with_capacity(len as usize);
    let first = len.min(area_end.saturating_sub(start).max(1));
    text.extend(region.read_vec(start, first as usize).map_err(io)?);
    if first < len {
        let rest = region.read_vec(mda + 512, (len - first) as usize).map_err(io)?;
        text.extend(rest);
    }
    if lvm_crc(&text) != sum {
        return Err(corrupt("metadata text has a bad checksum"));
    }
    let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
    parse_vg(&String::from_utf8_lossy(&text[..end])).map_err(|e| e.at(start))
}

/// A value of the metadata text format.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Str(String),
    Num(i64),
    List(Vec<Value>),
}

#[derive(Debug, Default)]
struct Section {
    name: String,
    values: Vec<(String, Value)>,
    children: Vec<Section>,
}

impl Section {
    fn child(&self, name: &str) -> Option<&Section> {
        self.children.iter().find(|c| c.name == name)
    }
    fn str(&self, key: &str) -> Option<&str> {
        self.values.iter().find_map(|(k, v)| match v {
            Value::Str(s) if k == key => Some(s.as_str()),
            _ => None,
        })
    }
    /// Whether the list `key` holds the string `item` (`status = ["READ", "VISIBLE"]`).
    fn list_has(&self, key: &str, item: &str) -> bool {
        self.values.iter().any(|(k, v)| match v {
            Value::List(items) if k == key => items.iter().any(|i| matches!(i, Value::Str(s) if s == item)),
            _ => false,
        })
    }
    fn num(&self, key: &str) -> Option<i64> {
        self.values.iter().find_map(|(k, v)| match v {
            Value::Num(n) if k == key => Some(*n),
            _ => None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Num(i64),
    Punct(char),
}

fn tokenize(text: &str) -> Result<Vec<Token>> {
    let mut out = Vec::new();
    let mut it = text.chars().peekable();
    while let Some(&c) = it.peek() {
        match c {
            c if c.is_whitespace() => {
                it.next();
            }
            '#' => while it.next().is_some_and(|c| c != '\n') {},
            '{' | '}' | '[' | ']' | '=' | ',' => {
                out.push(Token::Punct(c));
                it.next();
            }
            '"' => {
                it.next();
                let mut s = String::new();
                loop {
                    match it.next() {
                        Some('\\') => s.extend(it.next()),
                        Some('"') => break,
                        Some(c) => s.push(c),
                        None => return Err(Error::corrupt(TEXT_FORMAT, "unterminated string in the metadata text")),
                    }
                }
                out.push(Token::Str(s));
            }
            c if c.is_ascii_digit() || c == '-' => {
                let mut s = String::new();
                while let Some(&d) = it.peek().filter(|d| d.is_ascii_alphanumeric() || **d == '-' || **d == '.') {
                    s.push(d);
                    it.next();
                }
                match s.parse::<i64>() {
                    Ok(n) => out.push(Token::Num(n)),
                    Err(_) => out.push(Token::Ident(s)),
                }
            }
            c if c.is_alphanumeric() || "_.+-".contains(c) => {
                let mut s = String::new();
                while let Some(&d) = it.peek().filter(|d| d.is_alphanumeric() || "_.+-".contains(**d)) {
                    s.push(d);
                    it.next();
                }
                out.push(Token::Ident(s));
            }
            c => return Err(Error::corrupt(TEXT_FORMAT, format!("unexpected character {c:?} in the metadata text"))),
        }
    }
    Ok(out)
}

fn parse_section(toks: &[Token], pos: &mut usize, name: String, depth: usize) -> Result<Section> {
    if depth > MAX_DEPTH {
        return Err(Error::limit(TEXT_FORMAT, "metadata text nests too deeply"));
    }
    let mut sec = Section { name, ..Section::default() };
    while let Some(t) = toks.get(*pos) {
        *pos += 1;
        match t {
            Token::Punct('}') if depth > 0 => return Ok(sec),
            Token::Ident(key) => match toks.get(*pos) {
                Some(Token::Punct('{')) => {
                    *pos += 1;
                    sec.children.push(parse_section(toks, pos, key.clone(), depth + 1)?);
                }
                Some(Token::Punct('=')) => {
                    *pos += 1;
                    let v = parse_value(toks, pos)?;
                    sec.values.push((key.clone(), v));
                }
                _ => {
                    return Err(Error::corrupt(
                        TEXT_FORMAT,
                        format!("expected '=' or '{{' after {key:?} in the metadata text"),
                    ))
                }
            },
            t => return Err(Error::corrupt(TEXT_FORMAT, format!("unexpected {t:?} in the metadata text"))),
        }
    }
    if depth > 0 {
        return Err(Error::corrupt(TEXT_FORMAT, "metadata text ends inside a section"));
    }
    Ok(sec)
}

fn parse_value(toks: &[Token], pos: &mut usize) -> Result<Value> {
    let t = toks.get(*pos).ok_or_else(|| Error::corrupt(TEXT_FORMAT, "metadata text ends after '='"))?;
    *pos += 1;
    match t {
        Token::Str(s) => Ok(Value::Str(s.clone())),
        Token::Num(n) => Ok(Value::Num(*n)),
        Token::Punct('[') => {
            let mut items = Vec::new();
            loop {
                match toks.get(*pos) {
                    Some(Token::Punct(']')) => {
                        *pos += 1;
                        return Ok(Value::List(items));
                    }
                    Some(Token::Punct(',')) => *pos += 1,
                    Some(Token::Str(s)) => {
                        items.push(Value::Str(s.clone()));
                        *pos += 1;
                    }
                    Some(Token::Num(n)) => {
                        items.push(Value::Num(*n));
                        *pos += 1;
                    }
                    _ => return Err(Error::corrupt(TEXT_FORMAT, "malformed list in the metadata text")),
                }
            }
        }
        t => Err(Error::corrupt(TEXT_FORMAT, format!("unexpected {t:?} after '=' in the metadata text"))),
    }
}

/// The volume group described by a metadata text: its one top-level section.
fn parse_vg(text: &str) -> Result<VolumeGroup> {
    let toks = tokenize(text)?;
    let root = parse_section(&toks, &mut 0, String::new(), 0)?;
    let vg = root
        .children
        .iter()
        .find(|c| c.child("physical_volumes").is_some())
        .ok_or_else(|| Error::invalid(TEXT_FORMAT, "metadata text describes no volume group"))?;
    let physical_volumes = vg
        .child("physical_volumes")
        .map(|pvs| {
            pvs.children
                .iter()
                .map(|p| VgMember {
                    key: p.name.clone(),
                    uuid: p.str("id").unwrap_or("").replace('-', ""),
                    device_hint: p.str("device").map(str::to_string),
                })
                .collect()
        })
        .unwrap_or_default();
    let logical_volumes: Vec<String> =
        vg.child("logical_volumes").map(|l| l.children.iter().map(|c| c.name.clone()).collect()).unwrap_or_default();
    // Extents: the metadata counts in 512-byte sectors.
    let sectors = |n: Option<i64>| n.and_then(|n| u64::try_from(n).ok()).and_then(|n| n.checked_mul(512));
    let extent_size = sectors(vg.num("extent_size")).unwrap_or(0);
    let pv_extents: Vec<crate::lvm_layout::PvExtents> = vg
        .child("physical_volumes")
        .map(|pvs| {
            pvs.children
                .iter()
                .map(|p| crate::lvm_layout::PvExtents {
                    key: p.name.clone(),
                    pe_start: sectors(p.num("pe_start")).unwrap_or(0),
                    pe_count: p.num("pe_count").and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                })
                .collect()
        })
        .unwrap_or_default();
    let lvs = vg
        .child("logical_volumes")
        .map(|l| {
            l.children
                .iter()
                .map(|lv| {
                    let raw: Vec<crate::lvm_layout::RawSegment> =
                        lv.children.iter().filter(|c| c.name.starts_with("segment")).map(raw_segment).collect();
                    LvMeta {
                        name: lv.name.clone(),
                        uuid: lv.str("id").unwrap_or("").replace('-', ""),
                        visible: lv.list_has("status", "VISIBLE"),
                        layout: crate::lvm_layout::layout(&lv.name, extent_size, &pv_extents, &raw)
                            .map_err(|e| e.to_string()),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(VolumeGroup {
        name: vg.name.clone(),
        seqno: vg.num("seqno").and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
        physical_volumes,
        logical_volumes,
        extent_size,
        pv_extents,
        uuid: vg.str("id").unwrap_or("").replace('-', ""),
        lvs,
    })
}

/// A `segmentN` section as written: `stripes` alternates PV keys and first extents.
fn raw_segment(sec: &Section) -> crate::lvm_layout::RawSegment {
    let stripes = sec
        .values
        .iter()
        .find_map(|(k, v)| match v {
            Value::List(items) if k == "stripes" => Some(items),
            _ => None,
        })
        .map(|items| {
            items
                .chunks(2)
                .filter_map(|pair| match pair {
                    [Value::Str(pv), Value::Num(first)] => Some((pv.clone(), *first)),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    crate::lvm_layout::RawSegment {
        start_extent: sec.num("start_extent"),
        extent_count: sec.num("extent_count"),
        kind: sec.str("type").map(str::to_string),
        stripe_count: sec.num("stripe_count"),
        stripe_size: sec.num("stripe_size"),
        stripes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"vg0 {
id = "gQ7NxF-uSH4-NsDQ-oWi2-jc2J-Ky6Z-TMy5n6"
seqno = 3
format = "lvm2" # informational
status = ["RESIZEABLE", "READ", "WRITE"]
flags = []
extent_size = 8192

physical_volumes {

pv0 {
id = "JIrYxo-FzX5-5oMa-qwO7-SPnQ-noZ2-K4WEY5"
device = "/dev/sda2"	# Hint only
status = ["ALLOCATABLE"]
dev_size = 204800
pe_start = 2048
pe_count = 24
}
pv1 {
id = "AAAAAA-BBBB-CCCC-DDDD-EEEE-FFFF-GGGGGG"
device = "/dev/sdb"
}
}

logical_volumes {

root {
id = "Lv0Lv0-Lv0L-v0Lv-0Lv0-Lv0L-v0Lv-0Lv0Lv"
status = ["READ", "WRITE", "VISIBLE"]
segment_count = 1

segment1 {
start_extent = 0
extent_count = 20
type = "striped"
stripe_count = 1
stripes = [
"pv0", 0
]
}
}
}
}
# Generated by LVM2 version 2.03.16(2) (2022-05-18): Sun Oct 12 08:40:11 2025

contents = "Text Format Volume Group"
version = 1
description = "a \"quoted\" } value"
creation_time = 1700000000	# Tue Nov 14 22:13:20 2023
"#;

    #[test]
    fn metadata_text() {
        let vg = parse_vg(TEXT).unwrap();
        assert_eq!(vg.name, "vg0");
        assert_eq!(vg.seqno, 3);
        assert_eq!(vg.physical_volumes.len(), 2);
        assert_eq!(vg.physical_volumes[0].uuid, "JIrYxoFzX55oMaqwO7SPnQnoZ2K4WEY5");
        assert_eq!(vg.physical_volumes[0].device_hint.as_deref(), Some("/dev/sda2"));
        assert_eq!(vg.logical_volumes, ["root"]);
        assert_eq!(vg.extent_size, 4 << 20);
        assert_eq!(vg.pv_extents[0].pe_start, 1 << 20);
        assert!(vg.lvs[0].visible);
        assert_eq!(vg.lvs[0].uuid.len(), 32);
        assert_eq!(vg.uuid.len(), 32);
        match &vg.lvs[0].layout {
            Ok(crate::lvm_layout::Layout::Mapped { size, segments }) => {
                assert_eq!((*size, segments[0].stripes.as_slice()), (20 * (4 << 20), &[(0usize, 0u64)][..]));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_text_is_an_error_not_a_panic() {
        for bad in ["vg0 {", "vg0 { x = }", "vg0 { x = [ { ] }", "\"open", "a = 1", "}}}}", "vg0 { a = 1 } }"] {
            let _ = parse_vg(bad);
        }
        let deep = "a {".repeat(100) + &"}".repeat(100);
        assert!(parse_vg(&deep).is_err());
        assert!(parse_vg("contents = \"Text Format Volume Group\"").is_err());
    }

    fn region(bytes: Vec<u8>) -> Region {
        let disk = crate::reader::tests::mem_disk(bytes);
        disk.view(0, disk.size())
    }

    /// A PV as lvm2 lays it out: label in sector 1, metadata area at 4 KiB with the text at 4.5 KiB.
    fn pv_bytes(text: &str) -> Vec<u8> {
        let mut d = vec![0u8; 64 << 10];
        let l = 512;
        d[l..l + 8].copy_from_slice(b"LABELONE");
        d[l + 8..l + 16].copy_from_slice(&1u64.to_le_bytes());
        d[l + 20..l + 24].copy_from_slice(&32u32.to_le_bytes());
        d[l + 24..l + 32].copy_from_slice(b"LVM2 001");
        d[l + 32..l + 64].copy_from_slice(b"JIrYxoFzX55oMaqwO7SPnQnoZ2K4WEY5");
        // data area (32 KiB, 0), end; metadata area (4 KiB, 28 KiB), end.
        let areas = [32u64 << 10, 0, 0, 0, 4096, 28 << 10, 0, 0];
        for (i, v) in areas.iter().enumerate() {
            d[l + 72 + 8 * i..l + 80 + 8 * i].copy_from_slice(&v.to_le_bytes());
        }
        let crc = lvm_crc(&d[l + 20..l + 512]);
        d[l + 16..l + 20].copy_from_slice(&crc.to_le_bytes());
        let m = 4096;
        d[m + 4..m + 20].copy_from_slice(FMTT_MAGIC);
        d[m + 20..m + 24].copy_from_slice(&1u32.to_le_bytes());
        d[m + 24..m + 32].copy_from_slice(&4096u64.to_le_bytes());
        d[m + 32..m + 40].copy_from_slice(&(28u64 << 10).to_le_bytes());
        d[m + 40..m + 48].copy_from_slice(&512u64.to_le_bytes());
        d[m + 48..m + 56].copy_from_slice(&(text.len() as u64).to_le_bytes());
        d[m + 56..m + 60].copy_from_slice(&lvm_crc(text.as_bytes()).to_le_bytes());
        let crc = lvm_crc(&d[m + 4..m + 512]);
        d[m..m + 4].copy_from_slice(&crc.to_le_bytes());
        d[m + 512..m + 512 + text.len()].copy_from_slice(text.as_bytes());
        d
    }

    #[test]
    fn physical_volume_with_metadata() {
        let pv = read_pv(&mut region(pv_bytes(TEXT)), "/dev/sda2").unwrap();
        assert_eq!(pv.error, None);
        assert_eq!(pv.uuid, "JIrYxoFzX55oMaqwO7SPnQnoZ2K4WEY5");
        let vg = pv.volume_group.unwrap();
        assert_eq!((vg.name.as_str(), vg.physical_volumes.len()), ("vg0", 2));
        // A damaged text checksum is reported, not trusted.
        let mut d = pv_bytes(TEXT);
        d[4096 + 520] ^= 1;
        let pv = read_pv(&mut region(d), "/dev/sda2").unwrap();
        assert!(pv.error.unwrap().contains("bad checksum") && pv.volume_group.is_none());
        assert!(read_pv(&mut region(vec![0u8; 4096]), "/dev/sda2").is_none());
    }

    /// Random bytes in every field behind valid magics and checksums: errors, never a panic.
    #[test]
    fn hostile_headers_never_panic() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..2000 {
            let mut d = pv_bytes(TEXT);
            for _ in 0..1 + next() % 8 {
                // Hit the label, the PV header and the metadata header and text.
                let at = [512 + 20, 512 + 64, 4096 + 20, 4096 + 512][(next() % 4) as usize] + (next() % 80) as usize;
                d[at] = next() as u8;
            }
            if round % 2 == 0 {
                let crc = lvm_crc(&d[532..1024]);
                d[528..532].copy_from_slice(&crc.to_le_bytes());
                let crc = lvm_crc(&d[4100..4608]);
                d[4096..4100].copy_from_slice(&crc.to_le_bytes());
            }
            let _ = read_pv(&mut region(d), "/dev/sda2");
        }
    }

    #[test]
    fn crc_matches_lvm2() {
        // lvm2's calc_crc over nothing is its initial value; one step with the nibble table by hand for "a".
        assert_eq!(lvm_crc(b""), INITIAL_CRC);
        let mut crc = INITIAL_CRC;
        for &b in b"abc" {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        assert_eq!(lvm_crc(b"abc"), crc);
    }
}
