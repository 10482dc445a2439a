//! CRC-64/XZ, the checksum OSS reports in `x-oss-hash-crc64ecma`.

use crc_fast::CrcAlgorithm::Crc64Xz;

pub fn checksum(data: &[u8]) -> u64 {
    crc_fast::checksum(Crc64Xz, data)
}

/// The CRC of `a ++ b` from the CRCs of both and the length of `b`.
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
    fn check_value_and_combine() {
        assert_eq!(checksum(b"123456789"), 0x995dc9bbdf1939fa);
        assert_eq!(combine(checksum(b"1234"), checksum(b"56789"), 5), checksum(b"123456789"));
        assert_eq!(combine(checksum(b""), checksum(b"abc"), 3), checksum(b"abc"));
        assert_eq!(combine(checksum(b"abc"), checksum(b""), 0), checksum(b"abc"));
    }
}
