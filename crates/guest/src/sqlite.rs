//! A read-only reader of SQLite database files held in memory, for exactly what the RPM database needs: find a
//! table by name in the schema and return every row's columns. It walks table b-trees (interior and leaf pages,
//! overflow chains) and decodes records. Indexes, WAL files, freelists and writes are out of scope. Every page
//! number, cell count, payload size and chain length taken from the file is checked, and a page is visited once.

use crate::bytes::{be16, be32};
use crate::error::Error;
use std::collections::HashSet;

/// Largest row payload accepted (RPM headers are far smaller).
const MAX_PAYLOAD: u64 = 64 << 20;
/// b-tree depth accepted (a real table of millions of rows is 4-5 deep).
const MAX_DEPTH: usize = 32;
/// Rows returned at most.
const MAX_ROWS: usize = 1_000_000;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Blob(Vec<u8>),
}

pub struct Db<'a> {
    data: &'a [u8],
    page_size: usize,
    usable: usize,
    pages: u32,
}

pub type Result<T> = crate::error::Result<T>;

const HEADER: &str = "sqlite header";
const PAGE: &str = "sqlite b-tree page";
const RECORD: &str = "sqlite record";

/// SQLite's big-endian variable-length integer: up to 9 bytes.
fn varint(b: &[u8], at: usize) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for i in 0..9 {
        let c = *b.get(at + i)?;
        if i == 8 {
            return Some(((v << 8) | u64::from(c), 9));
        }
        v = (v << 7) | u64::from(c & 0x7f);
        if c & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

impl<'a> Db<'a> {
    pub fn open(data: &'a [u8]) -> Result<Self> {
        if data.get(..16) != Some(b"SQLite format 3\0") {
            return Err(Error::invalid(HEADER, "sqlite header at offset 0: no \"SQLite format 3\" magic").at(0));
        }
        // The header's fields reach to byte 100; a shorter file (a truncated database) has none of them to read.
        if data.len() < 100 {
            return Err(Error::corrupt(
                HEADER,
                format!(
                    "sqlite header at offset 0: the file is {} bytes, shorter than the 100-byte header",
                    data.len()
                ),
            )
            .at(0));
        }
        let ps = be16(data, 16);
        let page_size = if ps == 1 { 65536 } else { usize::from(ps) };
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(Error::invalid(HEADER, format!("sqlite header at offset 16: page size {page_size}")).at(16));
        }
        let reserved = usize::from(data[20]);
        if page_size - reserved < 480 {
            return Err(Error::invalid(
                HEADER,
                format!("sqlite header at offset 20: {reserved} reserved bytes per page"),
            )
            .at(20));
        }
        if be32(data, 56) > 1 {
            return Err(Error::unsupported(HEADER, "sqlite header at offset 56: text encoding is not UTF-8").at(56));
        }
        let pages = u32::try_from(data.len() / page_size).unwrap_or(u32::MAX);
        Ok(Db { data, page_size, usable: page_size - reserved, pages })
    }

    fn page(&self, n: u32) -> Result<&'a [u8]> {
        if n == 0 || n > self.pages {
            return Err(Error::corrupt(PAGE, format!("page number {n} outside the file's {} pages", self.pages)));
        }
        let start = (n as usize - 1) * self.page_size;
        Ok(&self.data[start..start + self.page_size])
    }

    /// Root page of the table called `name`, from the schema table on page 1.
    pub fn table_root(&self, name: &str) -> Result<Option<u32>> {
        for row in self.rows(1)? {
            let is_table = matches!(row.first(), Some(Value::Text(t)) if t == "table");
            let named = matches!(row.get(1), Some(Value::Text(n)) if n.eq_ignore_ascii_case(name));
            if is_table && named {
                return match row.get(3) {
                    Some(Value::Int(r)) if *r > 0 && *r <= i64::from(u32::MAX) => Ok(Some(*r as u32)),
                    other => Err(Error::corrupt(RECORD, format!("schema entry of table {name}: root page {other:?}"))),
                };
            }
        }
        Ok(None)
    }

    /// Every row of the table b-tree rooted at `root`, in rowid order, as its record columns.
    pub fn rows(&self, root: u32) -> Result<Vec<Vec<Value>>> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        self.walk(root, 0, &mut seen, &mut out)?;
        Ok(out)
    }

    fn walk(&self, n: u32, depth: usize, seen: &mut HashSet<u32>, out: &mut Vec<Vec<Value>>) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(Error::limit(PAGE, format!("b-tree deeper than {MAX_DEPTH} at page {n}")));
        }
        if !seen.insert(n) {
            return Err(Error::corrupt(PAGE, format!("page {n} is reached twice: the b-tree loops")));
        }
        let page = self.page(n)?;
        let hdr = if n == 1 { 100 } else { 0 };
        let kind = page[hdr];
        let cells = usize::from(be16(page, hdr + 3));
        let head_len = if kind == 0x05 { 12 } else { 8 };
        let offset = (n as u64 - 1) * self.page_size as u64;
        let at = |what: &str| Error::corrupt(PAGE, format!("page {n} (file offset {offset:#x}): {what}")).at(offset);
        let within =
            |e: Error, what: String| e.context(format_args!("page {n} (file offset {offset:#x}): {what}")).at(offset);
        if cells > (self.page_size - hdr - head_len) / 2 {
            return Err(at(&format!("{cells} cells do not fit")));
        }
        for i in 0..cells {
            let ptr = usize::from(be16(page, hdr + head_len + 2 * i));
            if ptr < hdr + head_len || ptr >= self.usable {
                return Err(at(&format!("cell {i} pointer {ptr:#x} outside the page")));
            }
            match kind {
                0x05 => {
                    let child = be32(page, ptr);
                    self.walk(child, depth + 1, seen, out)?;
                }
                0x0d => {
                    if out.len() >= MAX_ROWS {
                        return Err(Error::limit(PAGE, format!("more than {MAX_ROWS} rows")));
                    }
                    let payload = self.payload(page, ptr, seen).map_err(|e| within(e, format!("cell {i}")))?;
                    out.push(record(&payload).map_err(|e| within(e, format!("cell {i} record")))?);
                }
                k => return Err(at(&format!("page type {k:#04x} is not a table b-tree page"))),
            }
        }
        if kind == 0x05 {
            self.walk(be32(page, hdr + 8), depth + 1, seen, out)?;
        }
        Ok(())
    }

    /// A leaf cell's payload, with its overflow chain followed.
    fn payload(&self, page: &[u8], ptr: usize, seen: &mut HashSet<u32>) -> Result<Vec<u8>> {
        let (size, a) = varint(page, ptr).ok_or_else(|| Error::corrupt(PAGE, "payload size runs off the page"))?;
        let (_rowid, b) = varint(page, ptr + a).ok_or_else(|| Error::corrupt(PAGE, "rowid runs off the page"))?;
        if size > MAX_PAYLOAD {
            return Err(Error::limit(PAGE, format!("payload of {size} bytes (limit {MAX_PAYLOAD})")));
        }
        let size = size as usize;
        let u = self.usable;
        let x = u - 35;
        let local = if size <= x {
            size
        } else {
            let m = ((u - 12) * 32 / 255) - 23;
            let k = m + (size - m) % (u - 4);
            if k <= x {
                k
            } else {
                m
            }
        };
        let start = ptr + a + b;
        let local_payload = page.get(start..start + local);
        let mut out = local_payload.ok_or_else(|| Error::corrupt(PAGE, "local payload runs off the page"))?.to_vec();
        if local < size {
            let mut next = be32(page, start + local);
            while out.len() < size {
                if !seen.insert(next) {
                    return Err(Error::corrupt(PAGE, format!("overflow page {next} is reached twice")));
                }
                let p = self.page(next)?;
                let take = (size - out.len()).min(u - 4);
                out.extend_from_slice(&p[4..4 + take]);
                next = be32(p, 0);
            }
        }
        Ok(out)
    }
}

/// Decode a record: a header of serial types, then the values.
pub fn record(p: &[u8]) -> Result<Vec<Value>> {
    let bad = |what: &str| Error::corrupt(RECORD, what);
    let (hlen, mut at) = varint(p, 0).ok_or_else(|| bad("header size missing"))?;
    let hlen = usize::try_from(hlen).map_err(|_| bad("header size too large"))?;
    if hlen > p.len() {
        return Err(bad(&format!("header of {hlen} bytes in a {}-byte record", p.len())));
    }
    let mut types = Vec::new();
    while at < hlen {
        let (t, n) = varint(p, at).ok_or_else(|| bad("serial type runs off the header"))?;
        types.push(t);
        at += n;
    }
    let mut body = hlen;
    let mut out = Vec::with_capacity(types.len());
    for t in types {
        let len = match t {
            0 | 8 | 9 => 0,
            1..=4 => t as usize,
            5 => 6,
            6 | 7 => 8,
            10 | 11 => return Err(bad(&format!("reserved serial type {t}"))),
            n => ((n - 12) / 2) as usize,
        };
        let end = body.checked_add(len).ok_or_else(|| bad("value length overflows"))?;
        let raw = p.get(body..end).ok_or_else(|| bad("value runs off the record"))?;
        body += len;
        out.push(match t {
            0 => Value::Null,
            8 => Value::Int(0),
            9 => Value::Int(1),
            1..=6 => {
                let mut v: i64 = if raw[0] & 0x80 != 0 { -1 } else { 0 };
                for &c in raw {
                    v = (v << 8) | i64::from(c);
                }
                Value::Int(v)
            }
            7 => Value::Float(f64::from_bits(raw.iter().fold(0u64, |a, &c| (a << 8) | u64::from(c)))),
            n if n % 2 == 0 => Value::Blob(raw.to_vec()),
            _ => Value::Text(String::from_utf8_lossy(raw).into_owned()),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    /// Found by the `sqlite` fuzz target: the magic and a page size, then the file ends before the reserved-bytes
    /// field at offset 20.
    #[test]
    fn a_header_cut_short_is_an_error() {
        let cut = b"SQLite format 3\0\x04\x00\x00\x00";
        let err = Db::open(cut).err().expect("a 20-byte file is refused");
        assert!(err.to_string().contains("shorter than the 100-byte header"), "{err}");
        assert_eq!(err.kind(), ErrorKind::Corrupt);
    }

    #[test]
    fn varints_and_records() {
        assert_eq!(varint(&[0x7f], 0), Some((0x7f, 1)));
        assert_eq!(varint(&[0x81, 0x00], 0), Some((0x80, 2)));
        assert_eq!(varint(&[0xff; 9], 0), Some((u64::MAX, 9)));
        assert_eq!(varint(&[0x81], 0), None);
        // (NULL, 1-byte int -2, text "ab", blob [1,2,3])
        let rec = [5u8, 0, 1, 17, 18, 0xfe, b'a', b'b', 1, 2, 3];
        assert_eq!(
            record(&rec).unwrap(),
            vec![Value::Null, Value::Int(-2), Value::Text("ab".into()), Value::Blob(vec![1, 2, 3])]
        );
        assert!(record(&[5u8, 0, 1, 17, 0x81]).is_err());
        assert!(record(&[200u8]).is_err());
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(Db::open(b"not a database").is_err());
        let mut d = vec![0u8; 4096];
        d[..16].copy_from_slice(b"SQLite format 3\0");
        d[16..18].copy_from_slice(&1024u16.to_be_bytes());
        // Page 1: an interior page whose right child is itself.
        d[100] = 0x05;
        d[108..112].copy_from_slice(&1u32.to_be_bytes());
        let db = Db::open(&d).unwrap();
        assert!(db.rows(1).unwrap_err().to_string().contains("loops"));
        d[108..112].copy_from_slice(&99u32.to_be_bytes());
        assert!(Db::open(&d).unwrap().rows(1).unwrap_err().to_string().contains("outside"));
    }
}
