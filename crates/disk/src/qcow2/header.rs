//! The qcow2 header (v2 and v3), its extensions, and the validation done before any table is read.
//!
//! Everything here comes from the first cluster of the file. Values that would make later allocations
//! or offset arithmetic absurd (cluster size, L1 size, refcount table size) are refused now, with an
//! error naming the field, so the reader and the check can trust the geometry.

use crate::error::Result;
use crate::file::{be_u32, be_u64, ImageFile};

pub(crate) const MAGIC: &[u8; 4] = b"QFI\xfb";

pub(crate) const INCOMPAT_DIRTY: u64 = 1 << 0;
pub(crate) const INCOMPAT_CORRUPT: u64 = 1 << 1;
pub(crate) const INCOMPAT_DATA_FILE: u64 = 1 << 2;
pub(crate) const INCOMPAT_COMPRESSION: u64 = 1 << 3;
pub(crate) const INCOMPAT_EXTENDED_L2: u64 = 1 << 4;
const INCOMPAT_KNOWN: u64 =
    INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTENDED_L2;
pub(crate) const COMPAT_LAZY_REFCOUNTS: u64 = 1 << 0;
pub(crate) const AUTOCLEAR_BITMAPS: u64 = 1 << 0;

const EXT_END: u32 = 0;
const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
const EXT_FEATURE_TABLE: u32 = 0x6803_f857;
const EXT_BITMAPS: u32 = 0x2385_2875;
const EXT_DATA_FILE: u32 = 0x4441_5441;

/// Smallest and largest cluster sizes qemu opens (512 B .. 2 MiB).
pub(crate) const MIN_CLUSTER_BITS: u32 = 9;
pub(crate) const MAX_CLUSTER_BITS: u32 = 21;
/// qemu's limits: L1 table 32 MiB, refcount table 8 MiB, 65536 snapshots.
pub(crate) const MAX_L1_BYTES: u64 = 32 << 20;
pub(crate) const MAX_REFTABLE_BYTES: u64 = 8 << 20;
pub(crate) const MAX_SNAPSHOTS: u32 = 65536;
const V2_HEADER_LEN: u32 = 72;
const V3_MIN_HEADER_LEN: u32 = 104;
/// Header length qemu writes for v3 images: 104 bytes plus the compression type byte, padded to 8.
pub(crate) const V3_HEADER_LEN: u32 = 112;
const MAX_BACKING_NAME: u32 = 1023;

/// Compression used by compressed clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CompressionType {
    Zlib,
    Zstd,
}

impl CompressionType {
    pub(crate) fn name(self) -> &'static str {
        match self {
            CompressionType::Zlib => "zlib",
            CompressionType::Zstd => "zstd",
        }
    }
}

/// The bitmaps header extension (only trusted when the autoclear bit says the bitmaps are consistent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BitmapsExt {
    pub nb_bitmaps: u32,
    pub directory_size: u64,
    pub directory_offset: u64,
}

/// A parsed and validated qcow2 header.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    pub version: u32,
    pub cluster_bits: u32,
    pub size: u64,
    pub crypt_method: u32,
    pub l1_size: u32,
    pub l1_table_offset: u64,
    pub refcount_table_offset: u64,
    pub refcount_table_clusters: u32,
    pub nb_snapshots: u32,
    pub snapshots_offset: u64,
    pub incompatible: u64,
    pub compatible: u64,
    pub autoclear: u64,
    pub refcount_order: u32,
    pub header_length: u32,
    pub compression: CompressionType,
    pub backing_file: Option<String>,
    pub backing_format: Option<String>,
    pub bitmaps: Option<BitmapsExt>,
    /// End of the header extension area (first byte after the end-of-extensions marker).
    pub extensions_end: u64,
}

impl Header {
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }
    pub fn extended_l2(&self) -> bool {
        self.incompatible & INCOMPAT_EXTENDED_L2 != 0
    }
    pub fn dirty(&self) -> bool {
        self.incompatible & INCOMPAT_DIRTY != 0
    }
    pub fn corrupt(&self) -> bool {
        self.incompatible & INCOMPAT_CORRUPT != 0
    }
    pub fn lazy_refcounts(&self) -> bool {
        self.compatible & COMPAT_LAZY_REFCOUNTS != 0
    }
    pub fn refcount_bits(&self) -> u32 {
        1 << self.refcount_order
    }
    /// Bytes per L2 entry: 8, or 16 with extended L2 entries (entry + subcluster bitmap).
    pub fn l2_entry_bytes(&self) -> u64 {
        if self.extended_l2() {
            16
        } else {
            8
        }
    }
    /// log2 of the number of entries in one L2 table.
    pub fn l2_bits(&self) -> u32 {
        self.cluster_bits - self.l2_entry_bytes().trailing_zeros()
    }
    /// Bytes of guest disk one L2 table (one L1 entry) covers.
    pub fn l1_entry_span(&self) -> u64 {
        1u64 << (self.cluster_bits + self.l2_bits())
    }
    /// L1 entries needed to cover the virtual size.
    pub fn l1_entries_needed(&self) -> u64 {
        self.size.div_ceil(self.l1_entry_span())
    }
    pub fn compat(&self) -> &'static str {
        if self.version == 2 {
            "0.10"
        } else {
            "1.1"
        }
    }
}

/// Read and validate the header and its extensions from the first cluster of `file`.
pub(crate) fn parse(file: &ImageFile) -> Result<Header> {
    let mut fixed = [0u8; V2_HEADER_LEN as usize];
    file.read_exact_at(&mut fixed, 0, "qcow2 header")?;
    if &fixed[0..4] != MAGIC {
        return Err(file.invalid(0, "not a qcow2 image (bad magic)"));
    }
    let version = be_u32(&fixed, 4);
    match version {
        2 | 3 => {}
        1 => return Err(file.unsupported("qcow (version 1) images are not supported, only qcow2 (versions 2 and 3)")),
        v => return Err(file.unsupported(format!("qcow2 version {v} is not supported (only versions 2 and 3)"))),
    }
    let cluster_bits = be_u32(&fixed, 20);
    if cluster_bits < MIN_CLUSTER_BITS {
        return Err(
            file.invalid(20, format!("cluster_bits {cluster_bits} is invalid (clusters must be at least 512 bytes)"))
        );
    }
    if cluster_bits > MAX_CLUSTER_BITS {
        return Err(file.unsupported(format!(
            "cluster size 2^{cluster_bits} is not supported (qemu and imgport open clusters of 512 bytes to 2 MiB)"
        )));
    }
    let cluster_size = 1u64 << cluster_bits;
    let backing_file_offset = be_u64(&fixed, 8);
    let backing_file_size = be_u32(&fixed, 16);
    let mut h = Header {
        version,
        cluster_bits,
        size: be_u64(&fixed, 24),
        crypt_method: be_u32(&fixed, 32),
        l1_size: be_u32(&fixed, 36),
        l1_table_offset: be_u64(&fixed, 40),
        refcount_table_offset: be_u64(&fixed, 48),
        refcount_table_clusters: be_u32(&fixed, 56),
        nb_snapshots: be_u32(&fixed, 60),
        snapshots_offset: be_u64(&fixed, 64),
        incompatible: 0,
        compatible: 0,
        autoclear: 0,
        refcount_order: 4,
        header_length: V2_HEADER_LEN,
        compression: CompressionType::Zlib,
        backing_file: None,
        backing_format: None,
        bitmaps: None,
        extensions_end: V2_HEADER_LEN as u64,
    };

    // The rest of the header and the extensions live in the first cluster.
    let mut first = vec![0u8; cluster_size as usize];
    file.read_zero_padded(&mut first, 0, "qcow2 header cluster")?;
    let mut compression_field = 0u8;
    if version >= 3 {
        h.header_length = be_u32(&first, 100);
        if h.header_length < V3_MIN_HEADER_LEN {
            return Err(file.invalid(100, format!("qcow2 v3 header_length {} is shorter than 104", h.header_length)));
        }
        if h.header_length as u64 > cluster_size {
            return Err(file.invalid(100, format!("header_length {} exceeds the cluster size", h.header_length)));
        }
        if h.header_length as u64 > file.len() {
            return Err(file.corrupt(0, "qcow2 header extends past the end of the file: truncated image?"));
        }
        h.incompatible = be_u64(&first, 72);
        h.compatible = be_u64(&first, 80);
        h.autoclear = be_u64(&first, 88);
        h.refcount_order = be_u32(&first, 96);
        if h.header_length > 104 {
            compression_field = first[104];
        }
    }
    if h.refcount_order > 6 {
        return Err(
            file.invalid(96, format!("refcount_order {} is invalid (refcounts are at most 64 bits)", h.refcount_order))
        );
    }

    let ext_end = if backing_file_offset != 0 { backing_file_offset.min(cluster_size) } else { cluster_size };
    let ext = parse_extensions(file, &first, h.header_length as u64, ext_end)?;
    h.backing_format = ext.backing_format;
    h.extensions_end = ext.end;
    if h.autoclear & AUTOCLEAR_BITMAPS != 0 {
        h.bitmaps = ext.bitmaps;
    }

    // Refusals, most fundamental first.
    let unknown = h.incompatible & !INCOMPAT_KNOWN;
    if unknown != 0 {
        let bits: Vec<String> = (0..64)
            .filter(|b| unknown & (1u64 << b) != 0)
            .map(|b| match ext.feature_names.iter().find(|(kind, bit, _)| *kind == 0 && *bit == b) {
                Some((_, _, name)) => format!("bit {b} ('{name}')"),
                None => format!("bit {b}"),
            })
            .collect();
        return Err(file.unsupported(format!(
            "qcow2 image uses unknown incompatible feature {}; refusing to read it",
            bits.join(", ")
        )));
    }
    if h.crypt_method != 0 {
        let method = match h.crypt_method {
            1 => "AES".to_string(),
            2 => "LUKS".to_string(),
            m => format!("method {m}"),
        };
        return Err(file.unsupported(format!("encrypted qcow2 image ({method}) is not supported")));
    }
    if h.incompatible & INCOMPAT_DATA_FILE != 0 {
        let name = ext.data_file.map(|n| format!(" '{n}'")).unwrap_or_default();
        return Err(file.unsupported(format!(
            "qcow2 image keeps its data in an external data file{name} (incompatible feature bit 2); not supported"
        )));
    }
    h.compression = match (compression_field, h.incompatible & INCOMPAT_COMPRESSION != 0) {
        (0, false) => CompressionType::Zlib,
        (1, true) => CompressionType::Zstd,
        (0, true) => {
            return Err(file.invalid(72, "compression type bit is set but the compression type field says zlib"));
        }
        (1, false) => {
            return Err(file.invalid(104, "compression type is zstd but the compression type bit is not set"));
        }
        (t, _) => return Err(file.unsupported(format!("unknown qcow2 compression type {t}"))),
    };
    if h.extended_l2() && cluster_bits < 14 {
        return Err(file.invalid(20, "extended L2 entries need clusters of at least 16 KiB"));
    }

    // Table geometry.
    if h.l1_size as u64 * 8 > MAX_L1_BYTES {
        return Err(file.corrupt(36, format!("L1 table of {} entries is absurdly large (limit 32 MiB)", h.l1_size)));
    }
    if (h.l1_size as u64) < h.l1_entries_needed() {
        return Err(
            file.corrupt(36, format!("L1 table of {} entries is too small for the virtual size {}", h.l1_size, h.size))
        );
    }
    if h.l1_size > 0 && (h.l1_table_offset == 0 || !h.l1_table_offset.is_multiple_of(cluster_size)) {
        return Err(file.corrupt(40, format!("L1 table offset {:#x} is not cluster aligned", h.l1_table_offset)));
    }
    if h.refcount_table_clusters as u64 * cluster_size > MAX_REFTABLE_BYTES {
        return Err(file.corrupt(
            56,
            format!("refcount table of {} clusters is absurdly large (limit 8 MiB)", h.refcount_table_clusters),
        ));
    }
    if !h.refcount_table_offset.is_multiple_of(cluster_size) {
        return Err(
            file.corrupt(48, format!("refcount table offset {:#x} is not cluster aligned", h.refcount_table_offset))
        );
    }
    if h.nb_snapshots > MAX_SNAPSHOTS {
        return Err(file.corrupt(60, format!("{} snapshots is more than qemu's limit of 65536", h.nb_snapshots)));
    }
    if h.nb_snapshots > 0 && !h.snapshots_offset.is_multiple_of(cluster_size) {
        return Err(file.corrupt(64, format!("snapshot table offset {:#x} is not cluster aligned", h.snapshots_offset)));
    }

    if backing_file_offset != 0 && backing_file_size != 0 {
        if backing_file_size > MAX_BACKING_NAME {
            return Err(file.invalid(16, format!("backing file name of {backing_file_size} bytes is too long")));
        }
        let mut name = vec![0u8; backing_file_size as usize];
        file.read_exact_at(&mut name, backing_file_offset, "backing file name")?;
        h.backing_file = Some(String::from_utf8_lossy(&name).into_owned());
    }
    Ok(h)
}

/// What the header extensions say.
#[derive(Debug, Default)]
struct Extensions {
    backing_format: Option<String>,
    data_file: Option<String>,
    bitmaps: Option<BitmapsExt>,
    /// (feature type, bit, name) from the feature name table.
    feature_names: Vec<(u8, u8, String)>,
    end: u64,
}

fn parse_extensions(file: &ImageFile, first: &[u8], start: u64, ext_end: u64) -> Result<Extensions> {
    let mut ext = Extensions::default();
    let mut offset = start;
    while offset < ext_end {
        if ext_end - offset < 8 {
            return Err(file.invalid(offset, "header extension is cut off by the end of the header area"));
        }
        let at = offset as usize;
        let kind = be_u32(first, at);
        let len = be_u32(first, at + 4) as u64;
        offset += 8;
        if len > ext_end - offset {
            return Err(file.invalid(
                offset - 8,
                format!("header extension {kind:#010x} of {len} bytes runs past the header area"),
            ));
        }
        let data = &first[offset as usize..(offset + len) as usize];
        match kind {
            EXT_END => {
                ext.end = offset;
                return Ok(ext);
            }
            EXT_BACKING_FORMAT => {
                if len >= 16 {
                    return Err(file.invalid(offset, format!("backing format name of {len} bytes is too long")));
                }
                ext.backing_format = Some(String::from_utf8_lossy(data).into_owned());
            }
            EXT_DATA_FILE => ext.data_file = Some(String::from_utf8_lossy(data).into_owned()),
            EXT_FEATURE_TABLE => {
                for entry in data.chunks_exact(48) {
                    let name = entry[2..].split(|&b| b == 0).next().unwrap_or_default();
                    ext.feature_names.push((entry[0], entry[1], String::from_utf8_lossy(name).into_owned()));
                }
            }
            EXT_BITMAPS => {
                if len != 24 {
                    return Err(file.invalid(offset, format!("bitmaps extension has length {len}, expected 24")));
                }
                ext.bitmaps = Some(BitmapsExt {
                    nb_bitmaps: be_u32(data, 0),
                    directory_size: be_u64(data, 8),
                    directory_offset: be_u64(data, 16),
                });
            }
            _ => {}
        }
        offset += len.div_ceil(8) * 8;
    }
    ext.end = offset.min(ext_end);
    Ok(ext)
}

/// The feature name table qemu writes into every v3 image, so tools that do not know a bit can name it.
const FEATURE_NAMES: [(u8, u8, &str); 8] = [
    (0, 0, "dirty bit"),
    (0, 1, "corrupt bit"),
    (0, 2, "external data file"),
    (0, 3, "compression type"),
    (0, 4, "extended L2 entries"),
    (1, 0, "lazy refcounts"),
    (2, 0, "bitmaps"),
    (2, 1, "raw external data"),
];

/// What the writer puts in the header cluster.
#[derive(Debug, Clone)]
pub(crate) struct NewHeader {
    pub cluster_bits: u32,
    pub size: u64,
    pub l1_size: u32,
    pub l1_table_offset: u64,
    pub refcount_table_offset: u64,
    pub refcount_table_clusters: u32,
    pub compression: CompressionType,
}

/// Serialize a v3 header (refcount_order 4, header length 112 as qemu writes it) with the feature name
/// table extension, into one cluster.
pub(crate) fn serialize(h: &NewHeader) -> Vec<u8> {
    let mut b = vec![0u8; 1usize << h.cluster_bits];
    b[0..4].copy_from_slice(MAGIC);
    put_u32(&mut b, 4, 3);
    put_u32(&mut b, 20, h.cluster_bits);
    put_u64(&mut b, 24, h.size);
    put_u32(&mut b, 36, h.l1_size);
    put_u64(&mut b, 40, h.l1_table_offset);
    put_u64(&mut b, 48, h.refcount_table_offset);
    put_u32(&mut b, 56, h.refcount_table_clusters);
    let incompatible = if h.compression == CompressionType::Zstd { INCOMPAT_COMPRESSION } else { 0 };
    put_u64(&mut b, 72, incompatible);
    put_u32(&mut b, 96, 4);
    put_u32(&mut b, 100, V3_HEADER_LEN);
    b[104] = match h.compression {
        CompressionType::Zlib => 0,
        CompressionType::Zstd => 1,
    };
    let mut at = V3_HEADER_LEN as usize;
    let table_len = FEATURE_NAMES.len() * 48;
    // A 512-byte cluster has room for the header and the end marker only.
    if at + 8 + table_len + 8 <= b.len() {
        put_u32(&mut b, at, EXT_FEATURE_TABLE);
        put_u32(&mut b, at + 4, table_len as u32);
        at += 8;
        for (kind, bit, name) in FEATURE_NAMES {
            b[at] = kind;
            b[at + 1] = bit;
            b[at + 2..at + 2 + name.len()].copy_from_slice(name.as_bytes());
            at += 48;
        }
    }
    // End-of-extensions marker: 8 zero bytes, already there.
    b
}

pub(crate) fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
pub(crate) fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}
