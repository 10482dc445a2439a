//! Initramfs contents as the Linux kernel unpacks them: a sequence of newc cpio archives, each either plain or
//! inside a gzip, xz, zstd or legacy-lz4 stream, separated by zero padding (an uncompressed early microcode
//! archive usually comes first). The file is streamed: file bodies are skipped, not held, except the few small
//! files the facts need (`modules.builtin`). Unpacked bytes, entries and name lengths are capped.

use crate::error::{Error, Result};
use serde::Serialize;
use std::collections::BTreeSet;
use std::io::{self, BufRead, Read};

/// Structure names the errors carry: the cpio archive (offsets are in the unpacked stream) and a compressed
/// segment of the file.
const CPIO: &str = "cpio archive";
const SEGMENT: &str = "initramfs segment";

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Unpacked bytes over all archives (a decompression bomb stops here).
    pub max_bytes: u64,
    pub max_entries: u64,
    /// cpio name length (the kernel's PATH_MAX).
    pub max_name: usize,
    /// Largest file whose contents are kept (modules.builtin).
    pub max_capture: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_bytes: 1 << 30, max_entries: 1_000_000, max_name: 4096, max_capture: 8 << 20 }
    }
}

/// One piece of the file: a run of plain cpio archives, or one compressed stream.
#[derive(Debug, Clone, Serialize)]
pub struct Segment {
    /// Byte offset in the initramfs file.
    pub offset: u64,
    /// "none", "gzip", "xz", "zstd", "lz4" (legacy format), or the name of a format not read ("bzip2", "lzma",
    /// "lzo", "lz4_frame").
    pub compression: &'static str,
    /// cpio archives that ended with their TRAILER!!! entry.
    pub archives: u32,
    pub entries: u64,
    /// Unpacked bytes.
    pub bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct InitramfsContents {
    pub segments: Vec<Segment>,
    pub entries: u64,
    pub unpacked_bytes: u64,
    /// CPU microcode (kernel/x86/microcode/*) is present, as early initramfs archives carry it.
    pub early_microcode: bool,
    /// Versions named by `lib/modules/<version>` paths inside.
    pub kernel_versions: Vec<String>,
    /// Kernel modules inside (.ko, .ko.xz, .ko.zst, .ko.gz), by module name ('-' written as '_'), sorted.
    pub modules: Vec<String>,
    /// The storage tools early boot needs to find the root, where present as files in a bin or sbin folder:
    /// `lvm` (root on LVM), `cryptsetup`, `btrfs`, `mdadm`, `multipath`. Sorted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub boot_tools: Vec<String>,
    /// Modules built into the kernel according to the `lib/modules/<version>/modules.builtin` inside, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modules_builtin: Option<Vec<String>>,
    /// The whole file was read without a problem.
    pub complete: bool,
    /// What stopped or disturbed the reading, each naming the structure and its offset.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// Module name of a kernel module file name: "xen-blkfront.ko.xz" -> "xen_blkfront".
pub fn module_name(file: &str) -> Option<String> {
    let base = file.rsplit('/').next().unwrap_or(file);
    let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"].iter().find_map(|ext| base.strip_suffix(ext))?;
    (!stem.is_empty()).then(|| stem.replace('-', "_"))
}

/// Module names listed in a modules.builtin file ("kernel/drivers/block/virtio_blk.ko" per line).
pub fn parse_modules_builtin(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text.lines().filter_map(|l| module_name(l.trim())).collect();
    v.sort();
    v.dedup();
    v
}

const NEWC_HEADER: usize = 110;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between archives: zero padding, then "0707..." or the end of this run.
    Start,
    Header,
    Name,
    NamePad,
    Data,
    DataPad,
}

/// The cpio reader, fed unpacked bytes in pieces of any size.
struct Cpio {
    limits: Limits,
    state: State,
    hdr: [u8; NEWC_HEADER],
    have: usize,
    name: Vec<u8>,
    name_len: usize,
    /// Bytes left in the current name padding, body or body padding.
    left: u64,
    body: u64,
    data_pad: u64,
    regular: bool,
    trailer: bool,
    /// Inside an archive (a header seen, its TRAILER!!! not yet).
    in_archive: bool,
    capture: Option<Vec<u8>>,
    /// Unpacked offset within the current segment, for messages.
    pos: u64,
    total: u64,
    entry_at: u64,
    /// Per segment.
    archives: u32,
    entries: u64,
    all_entries: u64,
    out: Collected,
}

#[derive(Default)]
struct Collected {
    microcode: bool,
    tools: BTreeSet<String>,
    versions: BTreeSet<String>,
    modules: BTreeSet<String>,
    builtin: Option<Vec<String>>,
}

fn pad4(n: u64) -> u64 {
    (4 - n % 4) % 4
}

fn hex_field(h: &[u8], i: usize) -> Option<u64> {
    let f = h.get(6 + i * 8..6 + i * 8 + 8)?;
    let s = std::str::from_utf8(f).ok()?;
    u64::from_str_radix(s, 16).ok()
}

impl Cpio {
    fn new(limits: Limits) -> Self {
        Cpio {
            limits,
            state: State::Start,
            hdr: [0; NEWC_HEADER],
            have: 0,
            name: Vec::new(),
            name_len: 0,
            left: 0,
            body: 0,
            data_pad: 0,
            regular: false,
            trailer: false,
            in_archive: false,
            capture: None,
            pos: 0,
            total: 0,
            entry_at: 0,
            archives: 0,
            entries: 0,
            all_entries: 0,
            out: Collected::default(),
        }
    }

    /// Counters restart per segment; the parse state does not: like the kernel, an archive may continue from one
    /// compressed stream into the next.
    fn begin_segment(&mut self) {
        self.pos = 0;
        self.archives = 0;
        self.entries = 0;
    }

    /// Consume what belongs to cpio archives; stops early (returning the count used) only at a byte between
    /// entries that is neither zero padding nor the start of a header.
    fn feed(&mut self, data: &[u8]) -> Result<usize> {
        let mut i = 0usize;
        while i < data.len() {
            let rest = &data[i..];
            let used = match self.state {
                State::Start => {
                    let zeros = rest.iter().take_while(|&&b| b == 0).count();
                    if zeros == 0 {
                        if rest[0] != b'0' {
                            break;
                        }
                        self.state = State::Header;
                        self.have = 0;
                        self.entry_at = self.pos;
                    }
                    zeros
                }
                State::Header => {
                    let n = (NEWC_HEADER - self.have).min(rest.len());
                    self.hdr[self.have..self.have + n].copy_from_slice(&rest[..n]);
                    self.have += n;
                    if self.have == NEWC_HEADER {
                        self.header()?;
                    }
                    n
                }
                State::Name => {
                    let n = (self.name_len - self.name.len()).min(rest.len());
                    self.name.extend_from_slice(&rest[..n]);
                    if self.name.len() == self.name_len {
                        self.state = State::NamePad;
                        self.left = pad4((NEWC_HEADER + self.name_len) as u64);
                    }
                    n
                }
                State::NamePad | State::DataPad => {
                    let n = self.left.min(rest.len() as u64) as usize;
                    self.left -= n as u64;
                    n
                }
                State::Data => {
                    let n = self.left.min(rest.len() as u64) as usize;
                    if let Some(c) = self.capture.as_mut() {
                        c.extend_from_slice(&rest[..n]);
                    }
                    self.left -= n as u64;
                    n
                }
            };
            i += used;
            self.pos += used as u64;
            self.total += used as u64;
            self.advance();
            if self.total > self.limits.max_bytes {
                let why = format!(
                    "stopped after {} unpacked bytes (the limit): a decompression bomb or an absurdly large initramfs",
                    self.limits.max_bytes
                );
                return Err(Error::limit(CPIO, why).at(self.pos));
            }
        }
        Ok(i)
    }

    /// Move past finished (possibly empty) name padding, body and body padding.
    fn advance(&mut self) {
        loop {
            match self.state {
                State::NamePad if self.left == 0 => {
                    self.left = self.body;
                    self.begin_entry();
                    self.state = State::Data;
                }
                State::Data if self.left == 0 => {
                    self.state = State::DataPad;
                    self.left = self.data_pad;
                }
                State::DataPad if self.left == 0 => {
                    self.end_entry();
                    self.state = State::Start;
                    return;
                }
                _ => return,
            }
        }
    }

    fn header(&mut self) -> Result<()> {
        let h = self.hdr;
        let at = self.entry_at;
        let magic = &h[..6];
        if magic != b"070701" && magic != b"070702" {
            return Err(if magic == b"070707" {
                let why = format!("cpio header at unpacked offset {at}: odc format (the kernel reads only newc)");
                Error::unsupported(CPIO, why)
            } else {
                let why = format!(
                    "cpio header at unpacked offset {at}: bad magic {:?} (expected 070701 or 070702)",
                    String::from_utf8_lossy(magic)
                );
                Error::invalid(CPIO, why)
            }
            .at(at));
        }
        let field = |i: usize| {
            hex_field(&h, i).ok_or_else(|| {
                Error::invalid(CPIO, format!("cpio header at unpacked offset {at}: field {i} is not hex")).at(at)
            })
        };
        let mode = field(1)?;
        let filesize = field(6)?;
        let namesize = field(11)?;
        if namesize == 0 || namesize > self.limits.max_name as u64 {
            let why =
                format!("cpio header at unpacked offset {at}: name size {namesize} (limit {})", self.limits.max_name);
            return Err(Error::limit(CPIO, why).at(at));
        }
        self.entries += 1;
        self.all_entries += 1;
        if self.all_entries > self.limits.max_entries {
            return Err(Error::limit(CPIO, format!("more than {} cpio entries (the limit)", self.limits.max_entries)));
        }
        self.in_archive = true;
        self.name.clear();
        self.name_len = namesize as usize;
        self.body = filesize;
        self.data_pad = pad4(filesize);
        self.regular = mode & 0o170000 == 0o100000;
        self.state = State::Name;
        Ok(())
    }

    /// The name is known: note the entry and decide whether to keep its body.
    fn begin_entry(&mut self) {
        let raw = self.name.split(|&b| b == 0).next().unwrap_or(&[]);
        let name = String::from_utf8_lossy(raw);
        let name = name.trim_start_matches("./").trim_start_matches('/').to_string();
        self.capture = None;
        self.trailer = name == "TRAILER!!!";
        if !self.trailer {
            self.note(&name);
            if self.regular && is_builtin_list(&name) && self.left <= self.limits.max_capture as u64 {
                self.capture = Some(Vec::with_capacity(self.left as usize));
            }
        }
    }

    fn end_entry(&mut self) {
        if let Some(data) = self.capture.take() {
            let list = parse_modules_builtin(&String::from_utf8_lossy(&data));
            self.out.builtin.get_or_insert_with(Vec::new).extend(list);
        }
        if self.trailer {
            self.archives += 1;
            self.in_archive = false;
        }
    }

    fn note(&mut self, name: &str) {
        if name.starts_with("kernel/x86/microcode/") && self.regular {
            self.out.microcode = true;
        }
        if self.regular {
            if let Some(tool) = boot_tool(name) {
                self.out.tools.insert(tool.to_string());
            }
        }
        let rest = name.strip_prefix("usr/lib/modules/").or_else(|| name.strip_prefix("lib/modules/"));
        if let Some(rest) = rest {
            let ver = rest.split('/').next().unwrap_or("");
            if !ver.is_empty() {
                self.out.versions.insert(ver.to_string());
            }
            if self.regular {
                if let Some(m) = module_name(rest) {
                    self.out.modules.insert(m);
                }
            }
        }
    }

    /// The file ended: anything but "between archives" means it was cut short.
    fn at_end(&self) -> Result<()> {
        if self.state == State::Start && !self.in_archive {
            return Ok(());
        }
        let why = format!(
            "inside a cpio archive (last entry at unpacked offset {} of its segment): truncated, or no TRAILER!!! entry",
            self.entry_at
        );
        Err(Error::corrupt(CPIO, why).at(self.entry_at))
    }
}

/// Tools an initramfs needs to assemble the root's block device, by the names their packages install.
const BOOT_TOOLS: &[&str] = &["lvm", "cryptsetup", "btrfs", "mdadm", "multipath"];

/// The boot tool a path names: `usr/sbin/lvm`, `sbin/cryptsetup`, `bin/btrfs` and the like.
fn boot_tool(name: &str) -> Option<&'static str> {
    let (dir, file) = name.trim_start_matches("./").rsplit_once('/')?;
    let dir = dir.strip_prefix("usr/").unwrap_or(dir);
    if !matches!(dir, "bin" | "sbin") {
        return None;
    }
    BOOT_TOOLS.iter().copied().find(|t| *t == file)
}

fn is_builtin_list(name: &str) -> bool {
    let rest = name.strip_prefix("usr/lib/modules/").or_else(|| name.strip_prefix("lib/modules/"));
    rest.and_then(|r| r.split_once('/')).is_some_and(|(_, f)| f == "modules.builtin")
}

/// A buffered reader that can look ahead a few bytes and knows the file offset of its position.
struct Input<R: Read> {
    inner: R,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// File offset of `buf[start]`.
    offset: u64,
    eof: bool,
}

const INPUT_BUF: usize = 256 << 10;

impl<R: Read> Input<R> {
    fn new(inner: R) -> Self {
        Input { inner, buf: vec![0u8; INPUT_BUF].into_boxed_slice(), start: 0, end: 0, offset: 0, eof: false }
    }

    /// At least `n` bytes ahead when the file has them (fewer only at its end).
    fn peek(&mut self, n: usize) -> io::Result<&[u8]> {
        if self.end - self.start < n && !self.eof {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            while self.end < n.min(self.buf.len()) {
                let got = self.inner.read(&mut self.buf[self.end..])?;
                if got == 0 {
                    self.eof = true;
                    break;
                }
                self.end += got;
            }
        }
        Ok(&self.buf[self.start..self.end])
    }
}

impl<R: Read> Read for Input<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: Read> BufRead for Input<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.start == self.end && !self.eof {
            self.start = 0;
            self.end = self.inner.read(&mut self.buf)?;
            if self.end == 0 {
                self.eof = true;
            }
        }
        Ok(&self.buf[self.start..self.end])
    }
    fn consume(&mut self, n: usize) {
        let n = n.min(self.end - self.start);
        self.start += n;
        self.offset += n as u64;
    }
}

const LZ4_LEGACY_MAGIC: u32 = 0x184C_2102;
/// The legacy lz4 format's block size, and the largest compressed block it can produce.
const LZ4_LEGACY_BLOCK: usize = 8 << 20;
const LZ4_LEGACY_BOUND: usize = LZ4_LEGACY_BLOCK + LZ4_LEGACY_BLOCK / 255 + 16;
/// zstd window accepted (128 MiB): bounds the decoder's memory whatever the frame header asks.
const ZSTD_WINDOW_LOG_MAX: u32 = 27;
/// xz dictionary memory accepted, in KiB (256 MiB).
const XZ_MEM_LIMIT_KB: u32 = 256 << 10;

fn compression_of(magic: &[u8]) -> Option<&'static str> {
    Some(match magic {
        [0x1f, 0x8b, ..] | [0x1f, 0x9e, ..] => "gzip",
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => "xz",
        [0x28, 0xb5, 0x2f, 0xfd, ..] => "zstd",
        [0x02, 0x21, 0x4c, 0x18, ..] => "lz4",
        [0x04, 0x22, 0x4d, 0x18, ..] => "lz4_frame",
        [b'B', b'Z', b'h', ..] => "bzip2",
        [0x5d, 0x00, 0x00, ..] => "lzma",
        [0x89, b'L', b'Z', b'O', ..] => "lzo",
        _ => return None,
    })
}

/// Read an initramfs from `reader`: every cpio archive in it, plain or compressed, in order.
pub fn read(reader: impl Read, limits: Limits) -> InitramfsContents {
    let mut input = Input::new(reader);
    let mut cpio = Cpio::new(limits);
    let mut segments = Vec::new();
    let mut problems = Vec::new();
    loop {
        let offset = input.offset;
        let head = match input.peek(6) {
            Ok(h) => h,
            Err(e) => {
                problems.push(format!("read error at byte {} of the file: {e}", input.offset));
                break;
            }
        };
        if head.is_empty() {
            break;
        }
        let zeros = head.iter().take_while(|&&b| b == 0).count();
        if zeros > 0 {
            input.consume(zeros);
            continue;
        }
        let compression = if head[0] == b'0' {
            "none"
        } else {
            match compression_of(head) {
                Some(c) => c,
                None => {
                    problems.push(format!(
                        "byte {offset} of the file: data that is neither a cpio archive nor a known compression \
                         (starts {:02x?})",
                        &head[..head.len().min(6)]
                    ));
                    break;
                }
            }
        };
        cpio.begin_segment();
        let before = cpio.total;
        let result = match compression {
            "none" => plain(&mut input, &mut cpio),
            "gzip" => pump(&mut flate2::bufread::GzDecoder::new(&mut input), &mut cpio),
            "zstd" => match zstd::stream::read::Decoder::with_buffer(&mut input) {
                Ok(d) => {
                    let mut d = d.single_frame();
                    match d.window_log_max(ZSTD_WINDOW_LOG_MAX) {
                        Ok(()) => pump(&mut d, &mut cpio),
                        Err(e) => Err(Error::io(SEGMENT, e)),
                    }
                }
                Err(e) => Err(Error::io(SEGMENT, e)),
            },
            "xz" => pump(&mut lzma_rust2::XzReader::new_mem_limit(&mut input, false, XZ_MEM_LIMIT_KB), &mut cpio),
            "lz4" => lz4_legacy(&mut input, &mut cpio),
            "lz4_frame" => Err(Error::unsupported(
                SEGMENT,
                "lz4 frame format: the Linux kernel unpacks only the legacy lz4 format (lz4 -l)",
            )),
            other => Err(Error::unsupported(SEGMENT, format!("{other} compression is not read by imgport"))),
        };
        segments.push(Segment {
            offset,
            compression,
            archives: cpio.archives,
            entries: cpio.entries,
            bytes: cpio.total - before,
        });
        if let Err(e) = result {
            problems.push(format!("{compression} segment at byte {offset} of the file: {e}"));
            break;
        }
    }
    if problems.is_empty() {
        if let Err(e) = cpio.at_end() {
            problems.push(format!("end of the file: {e}"));
        }
    }
    let out = std::mem::take(&mut cpio.out);
    InitramfsContents {
        segments,
        entries: cpio.all_entries,
        unpacked_bytes: cpio.total,
        early_microcode: out.microcode,
        boot_tools: out.tools.into_iter().collect(),
        kernel_versions: out.versions.into_iter().collect(),
        modules: out.modules.into_iter().collect(),
        modules_builtin: out.builtin.map(|mut b| {
            b.sort();
            b.dedup();
            b
        }),
        complete: problems.is_empty(),
        problems,
    }
}

/// What follows a cpio archive inside a compressed segment must be another archive.
fn trailing_data(pos: u64) -> Error {
    let why = format!("unpacked offset {pos}: data after a cpio archive that is not another archive");
    Error::corrupt(CPIO, why).at(pos)
}

/// Plain archives: feed file bytes until something that is not cpio (the next, compressed, segment) starts.
fn plain<R: Read>(input: &mut Input<R>, cpio: &mut Cpio) -> Result<()> {
    loop {
        let buf = input.fill_buf().map_err(|e| Error::io(SEGMENT, e))?;
        if buf.is_empty() {
            return Ok(());
        }
        let len = buf.len();
        let used = cpio.feed(buf)?;
        input.consume(used);
        if used < len {
            return Ok(());
        }
    }
}

/// Unpacked bytes from a decompressor into the cpio reader.
fn pump(r: &mut dyn Read, cpio: &mut Cpio) -> Result<()> {
    let mut buf = vec![0u8; 128 << 10];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let why = format!("decompression failed after {} unpacked bytes: {e}", cpio.pos);
                return Err(Error::corrupt(SEGMENT, why).at(cpio.pos));
            }
        };
        let used = cpio.feed(&buf[..n])?;
        if used < n {
            return Err(trailing_data(cpio.pos));
        }
    }
}

/// The legacy lz4 format the kernel reads: a magic, then blocks of (little-endian compressed size, data), each
/// unpacking to at most 8 MiB; a repeated magic starts a new stream, and anything else ends it.
fn lz4_legacy<R: Read>(input: &mut Input<R>, cpio: &mut Cpio) -> Result<()> {
    input.consume(4);
    let mut out = vec![0u8; LZ4_LEGACY_BLOCK];
    let mut block = Vec::new();
    loop {
        let head = input.peek(4).map_err(|e| Error::io(SEGMENT, e))?;
        if head.len() < 4 {
            return Ok(());
        }
        let size = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        if size == LZ4_LEGACY_MAGIC {
            input.consume(4);
            continue;
        }
        if size == 0 || size as usize > LZ4_LEGACY_BOUND {
            // Not a block: padding or the next segment.
            return Ok(());
        }
        let at = input.offset;
        input.consume(4);
        block.clear();
        let got = (&mut *input).take(u64::from(size)).read_to_end(&mut block).map_err(|e| Error::io(SEGMENT, e))?;
        if got < size as usize {
            let why = format!("lz4 block at byte {at} of the file: {size} bytes declared, {got} present");
            return Err(Error::corrupt(SEGMENT, why).at(at));
        }
        let n = lz4_flex::block::decompress_into(&block, &mut out)
            .map_err(|e| Error::corrupt(SEGMENT, format!("lz4 block at byte {at} of the file: {e}")).at(at))?;
        let used = cpio.feed(&out[..n])?;
        if used < n {
            return Err(trailing_data(cpio.pos));
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// A newc archive of (name, mode, body) entries with its trailer, as `cpio -o -H newc` writes it.
    pub(crate) fn newc(entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut put = |name: &str, mode: u32, body: &[u8], ino: u32| {
            let start = out.len();
            out.extend_from_slice(
                format!(
                    "070701{ino:08X}{mode:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}",
                    0,
                    0,
                    1,
                    0,
                    body.len(),
                    0,
                    0,
                    0,
                    0,
                    name.len() + 1,
                    0
                )
                .as_bytes(),
            );
            out.extend_from_slice(name.as_bytes());
            out.push(0);
            while (out.len() - start) % 4 != 0 {
                out.push(0);
            }
            out.extend_from_slice(body);
            while out.len() % 4 != 0 {
                out.push(0);
            }
        };
        for (i, (n, m, b)) in entries.iter().enumerate() {
            put(n, *m, b, i as u32 + 1);
        }
        put("TRAILER!!!", 0, b"", 0);
        while out.len() % 512 != 0 {
            out.push(0);
        }
        out
    }

    const F: u32 = 0o100644;
    const D: u32 = 0o040755;

    fn microcode() -> Vec<u8> {
        newc(&[("kernel", D, b""), ("kernel/x86/microcode/GenuineIntel.bin", F, b"ucode")])
    }

    fn main_archive() -> Vec<u8> {
        newc(&[
            (".", D, b""),
            ("usr/lib/modules/6.1.0-18-amd64", D, b""),
            ("usr/lib/modules/6.1.0-18-amd64/kernel/drivers/block/virtio_blk.ko", F, &[7u8; 5000]),
            ("usr/lib/modules/6.1.0-18-amd64/kernel/drivers/net/virtio_net.ko.xz", F, b"x"),
            ("usr/lib/modules/6.1.0-18-amd64/kernel/drivers/block/xen-blkfront.ko.zst", F, b"x"),
            (
                "usr/lib/modules/6.1.0-18-amd64/modules.builtin",
                F,
                b"kernel/drivers/virtio/virtio_pci.ko\nkernel/drivers/virtio/virtio.ko\n",
            ),
            ("init", F, b"#!/bin/sh\n"),
        ])
    }

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    fn lz4_legacy(b: &[u8]) -> Vec<u8> {
        let mut out = LZ4_LEGACY_MAGIC.to_le_bytes().to_vec();
        for chunk in b.chunks(LZ4_LEGACY_BLOCK) {
            let c = lz4_flex::block::compress(chunk);
            out.extend_from_slice(&(c.len() as u32).to_le_bytes());
            out.extend_from_slice(&c);
        }
        out
    }

    fn check_main(r: &InitramfsContents) {
        assert!(r.complete, "{:?}", r.problems);
        assert_eq!(r.modules, ["virtio_blk", "virtio_net", "xen_blkfront"]);
        assert_eq!(r.kernel_versions, ["6.1.0-18-amd64"]);
        assert_eq!(r.modules_builtin.as_deref(), Some(&["virtio".to_string(), "virtio_pci".to_string()][..]));
    }

    #[test]
    fn early_microcode_then_each_compression() {
        let main = main_archive();
        let bodies: Vec<(&str, Vec<u8>)> = vec![
            ("gzip", gzip(&main)),
            ("zstd", zstd::encode_all(&main[..], 3).unwrap()),
            ("lz4", lz4_legacy(&main)),
            ("none", main.clone()),
        ];
        for (name, body) in bodies {
            let mut file = microcode();
            file.extend_from_slice(&body);
            let r = read(&file[..], Limits::default());
            check_main(&r);
            assert!(r.early_microcode);
            let kinds: Vec<&str> = r.segments.iter().map(|s| s.compression).collect();
            // Plain archives in a row read as one run.
            if name == "none" {
                assert_eq!(kinds, ["none"]);
                assert_eq!(r.segments[0].archives, 2);
            } else {
                assert_eq!(kinds, ["none", name]);
                assert_eq!(r.segments[1].offset, microcode().len() as u64);
                assert_eq!(r.segments[1].archives, 1);
            }
            assert_eq!(r.entries, 2 + 7 + 2);
        }
    }

    #[test]
    fn two_gzip_members_and_padding_between() {
        let mut file = gzip(&microcode());
        file.extend_from_slice(&[0u8; 13]);
        file.extend_from_slice(&gzip(&main_archive()));
        let r = read(&file[..], Limits::default());
        check_main(&r);
        assert_eq!(r.segments.len(), 2);
        assert!(r.early_microcode);
    }

    #[test]
    fn malformed_archives_are_problems_not_panics() {
        let main = main_archive();
        // Bad magic in the middle of an archive.
        let mut bad = main.clone();
        bad[0x200..0x206].copy_from_slice(b"070799");
        let second = main.windows(6).skip(1).position(|w| w == b"070701").unwrap() + 1;
        let mut mid = main.clone();
        mid[second..second + 6].copy_from_slice(b"07x701");
        // Huge namesize and filesize.
        let mut name = main.clone();
        name[94..102].copy_from_slice(b"7FFFFFFF");
        let mut size = main.clone();
        size[54..62].copy_from_slice(b"FFFFFFFF");
        for (what, data) in [("mid", mid), ("name", name), ("size", size), ("truncated", main[..700].to_vec())] {
            let r = read(&data[..], Limits::default());
            assert!(!r.complete, "{what}");
            assert!(!r.problems.is_empty(), "{what}");
        }
        let _ = read(&bad[..], Limits::default());
        // Junk after the archives; a truncated gzip stream; an odc archive.
        let mut junk = main.clone();
        junk.extend_from_slice(b"\x13garbage");
        assert!(read(&junk[..], Limits::default()).problems[0].contains("neither a cpio archive"));
        let gz = gzip(&main);
        let r = read(&gz[..gz.len() / 2], Limits::default());
        assert!(r.problems[0].starts_with("gzip segment at byte 0"), "{:?}", r.problems);
        // An archive may run from one compressed stream into the next, as the kernel allows.
        let mut split = gzip(&main[..1000]);
        split.extend_from_slice(&gzip(&main[1000..]));
        check_main(&read(&split[..], Limits::default()));
        let r = read(&gzip(&main[..1000])[..], Limits::default());
        assert!(r.problems[0].starts_with("end of the file: inside a cpio archive"), "{:?}", r.problems);
        let r = read(&b"070707000000000000000000"[..], Limits::default());
        assert!(!r.complete);
        // Every prefix and single-byte corruption ends, whatever it reads.
        for cut in (0..main.len()).step_by(37) {
            let _ = read(&main[..cut], Limits::default());
        }
        let gz = gzip(&main);
        for i in (0..gz.len()).step_by(11) {
            let mut g = gz.clone();
            g[i] ^= 0x5a;
            let _ = read(&g[..], Limits::default());
        }
    }

    #[test]
    fn bombs_stop_at_the_limits() {
        // One 64 MiB entry of zeros, gzip- and zstd-compressed to a few KiB; the limit is 16 MiB.
        let limits = Limits { max_bytes: 16 << 20, ..Limits::default() };
        let mut cpio = newc(&[]);
        let head = format!(
            "070701{:08X}{:08X}{}{:08X}{}{:08X}{:08X}",
            1,
            F,
            "0".repeat(32),
            64u32 << 20,
            "0".repeat(32),
            6,
            0
        );
        let mut big = head.into_bytes();
        big.extend_from_slice(b"zeros\0");
        cpio.splice(0..0, big);
        let mut zeros = cpio.clone();
        zeros.splice(116..116, std::iter::repeat_n(0u8, 64 << 20));
        for body in [gzip(&zeros), zstd::encode_all(&zeros[..], 1).unwrap()] {
            assert!(body.len() < 1 << 20);
            let r = read(&body[..], limits);
            assert!(r.problems[0].contains("the limit"), "{:?}", r.problems);
            assert!(r.unpacked_bytes <= (16 << 20) + (128 << 10));
        }
        let many: Vec<(String, u32, &[u8])> = (0..50).map(|i| (format!("f{i}"), F, &b""[..])).collect();
        let refs: Vec<(&str, u32, &[u8])> = many.iter().map(|(n, m, b)| (n.as_str(), *m, *b)).collect();
        let r = read(&newc(&refs)[..], Limits { max_entries: 10, ..Limits::default() });
        assert!(r.problems[0].contains("more than 10 cpio entries"), "{:?}", r.problems);
    }

    #[test]
    fn module_names() {
        assert_eq!(module_name("a/xen-blkfront.ko.xz").as_deref(), Some("xen_blkfront"));
        assert_eq!(module_name("virtio_blk.ko").as_deref(), Some("virtio_blk"));
        assert_eq!(module_name("modules.dep"), None);
        assert_eq!(module_name(".ko"), None);
        assert_eq!(boot_tool("usr/sbin/lvm"), Some("lvm"));
        assert_eq!(boot_tool("./sbin/cryptsetup"), Some("cryptsetup"));
        assert_eq!(boot_tool("usr/lib/lvm"), None);
        assert_eq!(boot_tool("lvm"), None);
        assert_eq!(parse_modules_builtin("kernel/drivers/nvme/host/nvme.ko\n\nkernel/x/a-b.ko\n"), ["a_b", "nvme"]);
    }
}
