//! CRC-64/XZ, the checksum OSS reports in `x-oss-hash-crc64ecma`, shared by the uploader and the emulator (the `crc` crate's CRC_64_ECMA_182 is another
//! variant: no reflection, no final xor).

use crc_fast::CrcAlgorithm::Crc64Xz;

/// A running CRC-64/XZ.
#[derive(Clone)]
pub struct Crc64(crc_fast::Digest);

impl Default for Crc64 {
    fn default() -> Self {
        Crc64(crc_fast::Digest::new(Crc64Xz))
    }
}

impl Crc64 {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn finish(&self) -> u64 {
        self.0.finalize()
    }
}

/// CRC-64/XZ of a whole buffer.
pub fn checksum(data: &[u8]) -> u64 {
    crc_fast::checksum(Crc64Xz, data)
}

/// The CRC of `a ++ b` from the CRCs of `a` and `b` and the length of `b`: how a multipart object's CRC follows
/// from its parts' without reading them again.
pub fn combine(crc_a: u64, crc_b: u64, len_b: u64) -> u64 {
    if len_b == 0 {
        return crc_a;
    }
    crc_fast::checksum_combine(Crc64Xz, crc_a, crc_b, len_b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value() {
        // The catalogue's check value of CRC-64/XZ.
        assert_eq!(checksum(b"123456789"), 0x995dc9bbdf1939fa);
        assert_eq!(checksum(b""), 0);
        let mut c = Crc64::new();
        c.update(b"1234");
        c.update(b"56789");
        assert_eq!(c.finish(), 0x995dc9bbdf1939fa);
    }

    #[test]
    fn combines() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        for split in [0, 1, 4096, 102_400, 299_999, 300_000] {
            let (a, b) = data.split_at(split);
            assert_eq!(combine(checksum(a), checksum(b), b.len() as u64), checksum(&data), "{split}");
        }
        // Folding from the CRC of nothing, as Complete does part by part.
        let parts: Vec<&[u8]> = data.chunks(100_000).collect();
        let folded = parts.iter().fold(0, |acc, p| combine(acc, checksum(p), p.len() as u64));
        assert_eq!(folded, checksum(&data));
        assert_eq!(combine(checksum(b"1234"), checksum(b"56789"), 5), checksum(b"123456789"));
        assert_eq!(combine(checksum(b""), checksum(b"abc"), 3), checksum(b"abc"));
        assert_eq!(combine(checksum(b"abc"), checksum(b""), 0), checksum(b"abc"));
    }
}
