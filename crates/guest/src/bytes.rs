//! Little- and big-endian field access that never panics: a field outside the buffer reads as zero.

pub fn u8_at(b: &[u8], off: usize) -> u8 {
    b.get(off).copied().unwrap_or(0)
}

fn arr<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    let mut a = [0u8; N];
    if let Some(s) = off.checked_add(N).and_then(|end| b.get(off..end)) {
        a.copy_from_slice(s);
    }
    a
}

pub fn le16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(arr(b, off))
}
pub fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(arr(b, off))
}
pub fn le64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(arr(b, off))
}
pub fn be16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes(arr(b, off))
}
pub fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes(arr(b, off))
}
pub fn be64(b: &[u8], off: usize) -> u64 {
    u64::from_be_bytes(arr(b, off))
}

/// `len` bytes at `off`, or an empty slice when they are not all there.
pub fn slice(b: &[u8], off: usize, len: usize) -> &[u8] {
    off.checked_add(len).and_then(|end| b.get(off..end)).unwrap_or(&[])
}

/// A NUL- or space-padded label as text (lossy), trimmed; `None` when empty.
pub fn label(raw: &[u8]) -> Option<String> {
    let end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
    let s = String::from_utf8_lossy(&raw[..end]).trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// A UUID stored as 16 big-endian bytes (ext4, XFS, btrfs, swap, LUKS), lower-case hyphenated; None when all zero.
pub fn uuid_be(b: &[u8]) -> Option<String> {
    let b: [u8; 16] = arr(b, 0);
    (b != [0; 16]).then(|| imgport_disk::guid::big_endian(&b))
}

/// A GUID in the mixed-endian layout of GPT and Microsoft (first three fields little-endian), upper-case.
pub fn guid_mixed(b: &[u8]) -> String {
    imgport_disk::guid::mixed_endian(&arr(b, 0)).to_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_out_of_bounds_read_as_zero() {
        let b = [1u8, 2, 3];
        assert_eq!(le16(&b, 1), 0x0302);
        assert_eq!(le32(&b, 1), 0);
        assert_eq!(le64(&b, usize::MAX), 0);
        assert!(slice(&b, 2, 5).is_empty());
    }

    #[test]
    fn guid_layouts() {
        let esp = [0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b];
        assert_eq!(guid_mixed(&esp), "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
        assert_eq!(uuid_be(&esp).unwrap(), "28732ac1-1ff8-d211-ba4b-00a0c93ec93b");
        assert_eq!(uuid_be(&[0u8; 16]), None);
    }
}
