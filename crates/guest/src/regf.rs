//! A read-only Windows registry hive (regf) reader: the base block, cells in hive bins, key nodes (nk), values
//! (vk, with big-data db records), and subkey lists (lf, lh, li, ri). It reads only the cells a lookup needs,
//! through a small page cache over any random-access source. Cell sizes, counts, list nesting and data sizes taken
//! from the file are capped, and subkey lists that loop are detected.

use crate::bytes::{le16, le32};
use crate::error::Error;
use std::collections::{HashMap, HashSet};

/// Hive bins start one 4 KiB base block into the file; cell offsets count from there.
const BASE: u64 = 4096;
const PAGE: u64 = 4096;
const MAX_PAGES: usize = 2048;
/// Largest cell accepted (real cells are far smaller; big values are split by db records).
const MAX_CELL: u32 = 1 << 20;
/// Largest value data assembled.
const MAX_DATA: u32 = 16 << 20;
/// Subkeys or values listed per key at most.
const MAX_ENTRIES: usize = 100_000;
/// ri lists point at other lists; Windows nests one level.
const MAX_LIST_DEPTH: u32 = 4;
/// Cell reads per hive: a lookup needs dozens; a looping structure runs out of these.
const MAX_READS: u64 = 1_000_000;

pub type Result<T> = crate::error::Result<T>;

const BASE_BLOCK: &str = "regf base block";
const CELL: &str = "regf cell";
const LIST: &str = "regf subkey list";
const KEY: &str = "regf key node";
const VALUE: &str = "regf value";

/// Where a hive's bytes come from.
pub trait Source {
    /// Fill `buf` from `offset`; short only at the end of the file.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize>;
}

impl Source for &[u8] {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let start = (offset as usize).min(self.len());
        let n = buf.len().min(self.len() - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        Ok(n)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// REG_SZ and REG_EXPAND_SZ.
    String(String),
    MultiString(Vec<String>),
    Dword(u32),
    Qword(u64),
    /// Anything else (REG_BINARY, REG_NONE, ...), with its type.
    Other(u32, Vec<u8>),
}

#[derive(Debug, Clone)]
pub struct Value {
    pub name: String,
    pub data: Data,
}

pub struct Hive<S: Source> {
    src: S,
    len: u64,
    root: u32,
    minor: u32,
    pages: HashMap<u64, Vec<u8>>,
    reads: u64,
}

fn utf16(b: &[u8]) -> String {
    let units: Vec<u16> = b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    let s = String::from_utf16_lossy(&units);
    s.trim_end_matches('\0').to_string()
}

fn latin1(b: &[u8]) -> String {
    b.iter().map(|&c| c as char).collect()
}

impl<S: Source> Hive<S> {
    /// Open a hive of `len` bytes: check the base block ("regf", version 1.x, root cell inside the bins).
    pub fn open(src: S, len: u64) -> Result<Self> {
        let mut h = Hive { src, len, root: 0, minor: 0, pages: HashMap::new(), reads: 0 };
        let base = h.read(0, 512)?;
        if &base[..4] != b"regf" {
            return Err(Error::invalid(BASE_BLOCK, "regf base block at offset 0: no \"regf\" signature").at(0));
        }
        let (major, minor) = (le32(&base, 20), le32(&base, 24));
        if major != 1 {
            return Err(Error::unsupported(
                BASE_BLOCK,
                format!("regf base block at offset 20: version {major}.{minor}"),
            )
            .at(20));
        }
        h.minor = minor;
        h.root = le32(&base, 36);
        let bins = u64::from(le32(&base, 40));
        if bins == 0 || BASE + bins > len {
            // Hives copied while in use can under-report; what matters is that cells stay inside the file.
            h.len = len;
        } else {
            h.len = BASE + bins;
        }
        h.key_node(h.root).map_err(|e| e.context("regf root key"))?;
        Ok(h)
    }

    pub fn root(&self) -> u32 {
        self.root
    }

    fn read(&mut self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let end = offset.checked_add(len as u64).ok_or_else(|| Error::corrupt(CELL, "offset overflows"))?;
        if end > self.len {
            return Err(Error::corrupt(
                CELL,
                format!("{len} bytes at offset {offset:#x} run past the end of the hive ({} bytes)", self.len),
            )
            .at(offset));
        }
        self.reads += 1;
        if self.reads > MAX_READS {
            return Err(Error::limit(CELL, format!("more than {MAX_READS} reads: the hive's structure loops")));
        }
        let mut out = Vec::with_capacity(len);
        let mut pos = offset;
        while pos < end {
            let page = pos / PAGE;
            if !self.pages.contains_key(&page) {
                if self.pages.len() >= MAX_PAGES {
                    self.pages.clear();
                }
                let mut buf = vec![0u8; PAGE as usize];
                let n = self.src.read_at(page * PAGE, &mut buf)?;
                buf.truncate(n);
                self.pages.insert(page, buf);
            }
            let data = &self.pages[&page];
            let within = (pos % PAGE) as usize;
            let take = ((end - pos) as usize).min(PAGE as usize - within);
            let got = data
                .get(within..within + take)
                .ok_or_else(|| Error::corrupt(CELL, format!("short read at offset {pos:#x}")).at(pos))?;
            out.extend_from_slice(got);
            pos += take as u64;
        }
        Ok(out)
    }

    /// The payload of the allocated cell at `off` (relative to the first hive bin), without its size field.
    fn cell(&mut self, off: u32) -> Result<Vec<u8>> {
        if off == 0 || off == u32::MAX {
            return Err(Error::corrupt(CELL, "null cell offset"));
        }
        let at = BASE + u64::from(off);
        let size = le32(&self.read(at, 4)?, 0) as i32;
        if size >= 0 {
            return Err(Error::corrupt(CELL, format!("cell at offset {at:#x} is free (size {size})")).at(at));
        }
        let size = size.unsigned_abs();
        if !(8..=MAX_CELL).contains(&size) {
            return Err(Error::corrupt(CELL, format!("cell at offset {at:#x}: size {size}")).at(at));
        }
        self.read(at + 4, size as usize - 4).map_err(|e| e.context(format_args!("cell at offset {at:#x}")))
    }

    fn key_node(&mut self, off: u32) -> Result<Vec<u8>> {
        let nk = self.cell(off)?;
        if &nk[..2] != b"nk" || nk.len() < 76 {
            let at = BASE + u64::from(off);
            return Err(Error::corrupt(KEY, format!("cell at offset {at:#x} is not a key node")).at(at));
        }
        Ok(nk)
    }

    fn key_name(nk: &[u8]) -> String {
        let len = usize::from(le16(nk, 72));
        let raw = crate::bytes::slice(nk, 76, len);
        if le16(nk, 2) & 0x20 != 0 {
            latin1(raw)
        } else {
            utf16(raw)
        }
    }

    /// Name of the key at `off`.
    pub fn name(&mut self, off: u32) -> Result<String> {
        Ok(Self::key_name(&self.key_node(off)?))
    }

    /// Subkeys of a key: (name, offset), in the order stored.
    pub fn subkeys(&mut self, key: u32) -> Result<Vec<(String, u32)>> {
        let nk = self.key_node(key)?;
        let count = le32(&nk, 20);
        if count == 0 {
            return Ok(Vec::new());
        }
        let mut offs = Vec::new();
        let mut seen = HashSet::new();
        self.list(le32(&nk, 28), 0, &mut seen, &mut offs)?;
        let mut out = Vec::with_capacity(offs.len());
        for off in offs {
            out.push((self.name(off)?, off));
        }
        Ok(out)
    }

    fn list(&mut self, off: u32, depth: u32, seen: &mut HashSet<u32>, out: &mut Vec<u32>) -> Result<()> {
        if depth > MAX_LIST_DEPTH {
            return Err(Error::limit(LIST, format!("subkey lists nested deeper than {MAX_LIST_DEPTH}")));
        }
        if !seen.insert(off) {
            let at = BASE + u64::from(off);
            return Err(Error::corrupt(
                LIST,
                format!("subkey list at offset {at:#x} is reached twice: the lists loop"),
            )
            .at(at));
        }
        let cell = self.cell(off)?;
        let count = usize::from(le16(&cell, 2));
        let sig = &cell[..2];
        let stride = match sig {
            b"lf" | b"lh" => 8,
            b"li" | b"ri" => 4,
            _ => {
                let at = BASE + u64::from(off);
                return Err(Error::corrupt(
                    LIST,
                    format!("cell at offset {at:#x}: {:?} is not a subkey list", String::from_utf8_lossy(sig)),
                )
                .at(at));
            }
        };
        if 4 + count * stride > cell.len() {
            let at = BASE + u64::from(off);
            return Err(
                Error::corrupt(LIST, format!("subkey list at offset {at:#x}: {count} entries do not fit")).at(at)
            );
        }
        for i in 0..count {
            let child = le32(&cell, 4 + i * stride);
            if sig == b"ri" {
                self.list(child, depth + 1, seen, out)?;
            } else {
                if out.len() >= MAX_ENTRIES {
                    return Err(Error::limit(LIST, format!("more than {MAX_ENTRIES} subkeys")));
                }
                out.push(child);
            }
        }
        Ok(())
    }

    /// The subkey `name` of `key` (case-insensitive, as Windows compares).
    pub fn subkey(&mut self, key: u32, name: &str) -> Result<Option<u32>> {
        let want = name.to_lowercase();
        Ok(self.subkeys(key)?.into_iter().find(|(n, _)| n.to_lowercase() == want).map(|(_, o)| o))
    }

    /// A key by its backslash-separated path below the root.
    pub fn open_path(&mut self, path: &str) -> Result<Option<u32>> {
        let mut key = self.root;
        for part in path.split('\\').filter(|p| !p.is_empty()) {
            match self.subkey(key, part)? {
                Some(k) => key = k,
                None => return Ok(None),
            }
        }
        Ok(Some(key))
    }

    /// Every value of a key.
    pub fn values(&mut self, key: u32) -> Result<Vec<Value>> {
        let nk = self.key_node(key)?;
        let count = le32(&nk, 36) as usize;
        if count == 0 {
            return Ok(Vec::new());
        }
        if count > MAX_ENTRIES {
            let at = BASE + u64::from(key);
            return Err(Error::limit(KEY, format!("key at offset {at:#x}: {count} values")).at(at));
        }
        let list = self.cell(le32(&nk, 40))?;
        if list.len() < count * 4 {
            let at = BASE + u64::from(key);
            return Err(Error::corrupt(
                KEY,
                format!("value list of key at offset {at:#x}: {count} entries do not fit"),
            )
            .at(at));
        }
        let mut out = Vec::with_capacity(count);
        for i in 0..count {
            out.push(self.value_at(le32(&list, i * 4))?);
        }
        Ok(out)
    }

    /// The value `name` of `key` (case-insensitive; "" is the default value).
    pub fn value(&mut self, key: u32, name: &str) -> Result<Option<Data>> {
        let want = name.to_lowercase();
        Ok(self.values(key)?.into_iter().find(|v| v.name.to_lowercase() == want).map(|v| v.data))
    }

    fn value_at(&mut self, off: u32) -> Result<Value> {
        let vk = self.cell(off)?;
        if &vk[..2] != b"vk" || vk.len() < 20 {
            let at = BASE + u64::from(off);
            return Err(Error::corrupt(VALUE, format!("cell at offset {at:#x} is not a value")).at(at));
        }
        let name_len = usize::from(le16(&vk, 2));
        let raw_name = crate::bytes::slice(&vk, 20, name_len);
        let name = if le16(&vk, 16) & 1 != 0 { latin1(raw_name) } else { utf16(raw_name) };
        let size_field = le32(&vk, 4);
        let ty = le32(&vk, 12);
        let raw = if size_field & 0x8000_0000 != 0 {
            // Up to four bytes live in the data offset field itself.
            let n = (size_field & 0x7fff_ffff).min(4) as usize;
            vk[8..8 + n].to_vec()
        } else {
            self.value_data(le32(&vk, 8), size_field)?
        };
        let data = match ty {
            1 | 2 => Data::String(utf16(&raw)),
            7 => Data::MultiString(utf16(&raw).split('\0').filter(|s| !s.is_empty()).map(str::to_string).collect()),
            4 if raw.len() >= 4 => Data::Dword(le32(&raw, 0)),
            11 if raw.len() >= 8 => Data::Qword(crate::bytes::le64(&raw, 0)),
            t => Data::Other(t, raw),
        };
        Ok(Value { name, data })
    }

    fn value_data(&mut self, off: u32, size: u32) -> Result<Vec<u8>> {
        if size > MAX_DATA {
            return Err(Error::limit(VALUE, format!("value data of {size} bytes (limit {MAX_DATA})")));
        }
        let cell = self.cell(off)?;
        // Version 1.4+ splits data over 16344 bytes into segments listed by a db record.
        if self.minor >= 4 && size > 16344 && cell.get(..2) == Some(b"db") {
            let count = usize::from(le16(&cell, 2));
            let list = self.cell(le32(&cell, 4))?;
            if list.len() < count * 4 {
                return Err(Error::corrupt(VALUE, "big data segment list does not fit its cell"));
            }
            let mut out = Vec::new();
            for i in 0..count {
                if out.len() >= size as usize {
                    break;
                }
                let seg = self.cell(le32(&list, i * 4))?;
                out.extend_from_slice(&seg[..seg.len().min(16344)]);
            }
            out.truncate(size as usize);
            return Ok(out);
        }
        if cell.len() < size as usize {
            return Err(Error::corrupt(VALUE, format!("value data of {size} bytes in a {}-byte cell", cell.len())));
        }
        Ok(cell[..size as usize].to_vec())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tiny hive writer for unit tests only: keys with values, lists as lf records.
    pub(crate) struct Builder {
        bin: Vec<u8>,
    }

    impl Builder {
        pub(crate) fn new() -> Self {
            let mut bin = b"hbin".to_vec();
            bin.resize(32, 0);
            Builder { bin }
        }
        /// Append a cell; returns its offset.
        pub(crate) fn cell(&mut self, payload: &[u8]) -> u32 {
            let off = self.bin.len() as u32;
            let size = (payload.len() + 4).next_multiple_of(8);
            self.bin.extend_from_slice(&(-(size as i32)).to_le_bytes());
            self.bin.extend_from_slice(payload);
            self.bin.resize(off as usize + size, 0);
            off
        }
        pub(crate) fn value(&mut self, name: &str, ty: u32, data: &[u8]) -> u32 {
            let (size, off) = if data.len() <= 4 {
                let mut inline = [0u8; 4];
                inline[..data.len()].copy_from_slice(data);
                (0x8000_0000 | data.len() as u32, u32::from_le_bytes(inline))
            } else {
                (data.len() as u32, self.cell(data))
            };
            let mut vk = b"vk".to_vec();
            vk.extend_from_slice(&(name.len() as u16).to_le_bytes());
            vk.extend_from_slice(&size.to_le_bytes());
            vk.extend_from_slice(&off.to_le_bytes());
            vk.extend_from_slice(&ty.to_le_bytes());
            vk.extend_from_slice(&1u16.to_le_bytes());
            vk.extend_from_slice(&0u16.to_le_bytes());
            vk.extend_from_slice(name.as_bytes());
            self.cell(&vk)
        }
        pub(crate) fn key(&mut self, name: &str, subkeys: &[u32], values: &[u32]) -> u32 {
            let list = if subkeys.is_empty() {
                u32::MAX
            } else {
                let mut lf = b"lf".to_vec();
                lf.extend_from_slice(&(subkeys.len() as u16).to_le_bytes());
                for s in subkeys {
                    lf.extend_from_slice(&s.to_le_bytes());
                    lf.extend_from_slice(&0u32.to_le_bytes());
                }
                self.cell(&lf)
            };
            let vlist = if values.is_empty() {
                u32::MAX
            } else {
                let v: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                self.cell(&v)
            };
            let mut nk = vec![0u8; 76];
            nk[..2].copy_from_slice(b"nk");
            nk[2..4].copy_from_slice(&0x20u16.to_le_bytes());
            nk[20..24].copy_from_slice(&(subkeys.len() as u32).to_le_bytes());
            nk[28..32].copy_from_slice(&list.to_le_bytes());
            nk[36..40].copy_from_slice(&(values.len() as u32).to_le_bytes());
            nk[40..44].copy_from_slice(&vlist.to_le_bytes());
            nk[72..74].copy_from_slice(&(name.len() as u16).to_le_bytes());
            nk.extend_from_slice(name.as_bytes());
            self.cell(&nk)
        }
        pub(crate) fn finish(mut self, root: u32) -> Vec<u8> {
            let len = self.bin.len().next_multiple_of(4096);
            self.bin.resize(len, 0);
            self.bin[8..12].copy_from_slice(&(len as u32).to_le_bytes());
            let mut base = vec![0u8; 4096];
            base[..4].copy_from_slice(b"regf");
            base[20..24].copy_from_slice(&1u32.to_le_bytes());
            base[24..28].copy_from_slice(&5u32.to_le_bytes());
            base[36..40].copy_from_slice(&root.to_le_bytes());
            base[40..44].copy_from_slice(&(len as u32).to_le_bytes());
            base.extend(self.bin);
            base
        }
    }

    pub(crate) fn utf16z(s: &str) -> Vec<u8> {
        s.encode_utf16().chain([0]).flat_map(|u| u.to_le_bytes()).collect()
    }

    fn sample() -> (Vec<u8>, u32) {
        let mut b = Builder::new();
        let pn = b.value("ProductName", 1, &utf16z("Windows Server 2022 Datacenter"));
        let mj = b.value("CurrentMajorVersionNumber", 4, &10u32.to_le_bytes());
        let cv = b.key("CurrentVersion", &[], &[pn, mj]);
        let nt = b.key("Windows NT", &[cv], &[]);
        let ms = b.key("Microsoft", &[nt], &[]);
        let root = b.key("ROOT", &[ms], &[]);
        let lf_at = root; // the root's nk
        (b.finish(root), lf_at)
    }

    #[test]
    fn keys_and_values() {
        let (hive, _) = sample();
        let mut h = Hive::open(&hive[..], hive.len() as u64).unwrap();
        let k = h.open_path("microsoft\\WINDOWS NT\\CurrentVersion").unwrap().unwrap();
        assert_eq!(h.value(k, "productname").unwrap(), Some(Data::String("Windows Server 2022 Datacenter".into())));
        assert_eq!(h.value(k, "CurrentMajorVersionNumber").unwrap(), Some(Data::Dword(10)));
        assert_eq!(h.value(k, "missing").unwrap(), None);
        assert_eq!(h.open_path("Microsoft\\Nope").unwrap(), None);
    }

    #[test]
    fn hostile_hives_are_errors() {
        let (hive, _) = sample();
        // A subkey list that contains itself through an ri record.
        let mut b = Builder::new();
        let ri_at = b.bin.len() as u32;
        let mut ri = b"ri".to_vec();
        ri.extend_from_slice(&1u16.to_le_bytes());
        ri.extend_from_slice(&ri_at.to_le_bytes());
        b.cell(&ri);
        let mut nk = vec![0u8; 76];
        nk[..2].copy_from_slice(b"nk");
        nk[20..24].copy_from_slice(&1u32.to_le_bytes());
        nk[28..32].copy_from_slice(&ri_at.to_le_bytes());
        let root = b.cell(&nk);
        let looped = b.finish(root);
        let mut h = Hive::open(&looped[..], looped.len() as u64).unwrap();
        assert!(h.subkeys(root).unwrap_err().to_string().contains("loop"));
        // A huge cell size, and a cell running past the end.
        let mut huge = hive.clone();
        let root_cell = 4096 + le32(&hive, 36) as usize;
        huge[root_cell..root_cell + 4].copy_from_slice(&(-0x7000_0000i32).to_le_bytes());
        assert!(Hive::open(&huge[..], huge.len() as u64).is_err());
        let cut = &hive[..4096 + 100];
        assert!(Hive::open(cut, cut.len() as u64).and_then(|mut h| h.open_path("Microsoft\\Windows NT")).is_err());
        assert!(Hive::open(&b"regf"[..], 4).is_err());
        // Random bytes over every part of a valid hive: errors or answers, never a panic.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..3000 {
            let mut d = hive.clone();
            for _ in 0..1 + round % 8 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = 4096 + (x as usize % (d.len() - 4096));
                d[at] = (x >> 32) as u8;
            }
            if let Ok(mut h) = Hive::open(&d[..], d.len() as u64) {
                if let Ok(Some(k)) = h.open_path("Microsoft\\Windows NT\\CurrentVersion") {
                    let _ = h.values(k);
                }
            }
        }
    }
}
