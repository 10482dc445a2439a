//! S3's flexible checksums (`x-amz-checksum-crc64nvme`, `x-amz-checksum-crc32c`) and the choice among them and
//! Content-MD5.
//!
//! A CRC runs at many GB/s where MD5 runs at hundreds of MB/s, and a store that supports them checks each part
//! against its header and the whole object against the CRC combined from its parts (S3's `FULL_OBJECT` type),
//! with no MD5 needed on either side. Values travel as base64 of the CRC's big-endian bytes.

use crc_fast::CrcAlgorithm;
use serde::{Deserialize, Serialize};

/// A flexible checksum algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// CRC-64/NVME, S3's default since 2025.
    Crc64nvme,
    /// CRC-32C (Castagnoli).
    Crc32c,
}

impl Algorithm {
    /// As the command line and the resume state name it.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Crc64nvme => "crc64nvme",
            Algorithm::Crc32c => "crc32c",
        }
    }

    /// As S3 names it in `x-amz-checksum-algorithm`.
    pub fn s3_name(self) -> &'static str {
        match self {
            Algorithm::Crc64nvme => "CRC64NVME",
            Algorithm::Crc32c => "CRC32C",
        }
    }

    /// The header that carries a value.
    pub fn header(self) -> &'static str {
        match self {
            Algorithm::Crc64nvme => "x-amz-checksum-crc64nvme",
            Algorithm::Crc32c => "x-amz-checksum-crc32c",
        }
    }

    /// The element that carries a value in CompleteMultipartUpload (request and answer).
    pub fn xml_element(self) -> &'static str {
        match self {
            Algorithm::Crc64nvme => "ChecksumCRC64NVME",
            Algorithm::Crc32c => "ChecksumCRC32C",
        }
    }

    fn crc(self) -> CrcAlgorithm {
        match self {
            Algorithm::Crc64nvme => CrcAlgorithm::Crc64Nvme,
            Algorithm::Crc32c => CrcAlgorithm::Crc32Iscsi,
        }
    }

    /// Bytes of a value.
    fn width(self) -> usize {
        match self {
            Algorithm::Crc64nvme => 8,
            Algorithm::Crc32c => 4,
        }
    }

    pub fn checksum(self, data: &[u8]) -> u64 {
        crc_fast::checksum(self.crc(), data)
    }

    /// The checksum of `a ++ b` from those of `a` and `b` and the length of `b`: the whole object's from its
    /// parts', without reading them again.
    pub fn combine(self, a: u64, b: u64, len_b: u64) -> u64 {
        if len_b == 0 {
            return a;
        }
        crc_fast::checksum_combine(self.crc(), a, b, len_b)
    }

    /// The header's form of `value`.
    pub fn encode(self, value: u64) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&value.to_be_bytes()[8 - self.width()..])
    }

    /// A header's value; `None` unless it is base64 of exactly this algorithm's width.
    pub fn decode(self, text: &str) -> Option<u64> {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD.decode(text.trim()).ok()?;
        (bytes.len() == self.width()).then(|| bytes.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b)))
    }
}

/// How an upload's parts are checked, as `uploads list` and `--json` name it: the flexible checksum's name, else
/// `md5` (S3's Content-MD5) or `crc64` (OSS).
pub fn kind(flexible: Option<Algorithm>, s3: bool) -> &'static str {
    match flexible {
        Some(alg) => alg.name(),
        None if s3 => "md5",
        None => "crc64",
    }
}

/// A checksum and its algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Value {
    pub algorithm: Algorithm,
    pub value: u64,
}

/// A running checksum.
#[derive(Clone)]
pub struct Running(crc_fast::Digest);

impl Running {
    pub fn new(algorithm: Algorithm) -> Self {
        Running(crc_fast::Digest::new(algorithm.crc()))
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn finish(&self) -> u64 {
        self.0.finalize()
    }
}

/// How an S3 upload's parts and object are checked, as `--checksum` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Choice {
    /// CRC-64/NVME, and Content-MD5 instead where the store refuses flexible checksums.
    #[default]
    Auto,
    /// This flexible checksum, or fail.
    Flexible(Algorithm),
    /// Content-MD5 on every part, as S3 had before flexible checksums.
    Md5,
}

impl std::str::FromStr for Choice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Choice::Auto),
            "crc64nvme" => Ok(Choice::Flexible(Algorithm::Crc64nvme)),
            "crc32c" => Ok(Choice::Flexible(Algorithm::Crc32c)),
            "md5" => Ok(Choice::Md5),
            _ => Err(format!("unknown checksum {s:?}: choose auto, crc64nvme, crc32c or md5")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_values_and_header_form() {
        // The catalogue's check values (reveng): CRC-64/NVME and CRC-32/ISCSI of "123456789".
        assert_eq!(Algorithm::Crc64nvme.checksum(b"123456789"), 0xae8b_1486_0a79_9888);
        assert_eq!(Algorithm::Crc32c.checksum(b"123456789"), 0xe306_9283);
        // S3's documented value for an empty object: CRC64NVME "AAAAAAAAAAA=", CRC32C "AAAAAA==".
        assert_eq!(Algorithm::Crc64nvme.encode(Algorithm::Crc64nvme.checksum(b"")), "AAAAAAAAAAA=");
        assert_eq!(Algorithm::Crc32c.encode(Algorithm::Crc32c.checksum(b"")), "AAAAAA==");
        for alg in [Algorithm::Crc64nvme, Algorithm::Crc32c] {
            let v = alg.checksum(b"imgport");
            assert_eq!(alg.decode(&alg.encode(v)), Some(v));
        }
        assert_eq!(Algorithm::Crc32c.decode("AAAAAAAAAAA="), None, "a 64-bit value is not a CRC-32C");
        assert_eq!(Algorithm::Crc64nvme.decode("not base64!"), None);
    }

    #[test]
    fn combines_as_parts_fold_into_the_object() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        for alg in [Algorithm::Crc64nvme, Algorithm::Crc32c] {
            let folded = data
                .chunks(100_000)
                .fold(alg.checksum(b""), |acc, p| alg.combine(acc, alg.checksum(p), p.len() as u64));
            assert_eq!(folded, alg.checksum(&data), "{}", alg.name());
            let mut r = Running::new(alg);
            r.update(&data[..7]);
            r.update(&data[7..]);
            assert_eq!(r.finish(), alg.checksum(&data));
        }
    }

    #[test]
    fn choices_parse() {
        assert_eq!("auto".parse::<Choice>(), Ok(Choice::Auto));
        assert_eq!("CRC64NVME".parse::<Choice>(), Ok(Choice::Flexible(Algorithm::Crc64nvme)));
        assert_eq!("crc32c".parse::<Choice>(), Ok(Choice::Flexible(Algorithm::Crc32c)));
        assert_eq!("md5".parse::<Choice>(), Ok(Choice::Md5));
        assert!("sha256".parse::<Choice>().is_err());
    }
}
