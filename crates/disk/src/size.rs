//! Sizes as people write them on a command line: `65536`, `64k`, `64K`, `64KB`, `64KiB`, `2M`, `1G`, `1TiB`.
//! Units are binary (K is 1024) and case-insensitive; one parser for every size flag and `-o` option.

/// Why a size was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SizeError {
    /// The unit after the number is none of B, K, M, G, T (with an optional B or iB).
    UnknownUnit(String),
    /// No number, or one that does not fit in 64 bits once multiplied.
    NotASize(String),
}

impl std::fmt::Display for SizeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SizeError::UnknownUnit(s) => write!(f, "{s:?}: unknown unit (use K, M, G or T)"),
            SizeError::NotASize(s) => write!(f, "{s:?} is not a size"),
        }
    }
}

impl std::error::Error for SizeError {}

/// Parses a size in bytes: digits, then optionally a unit (`B`, `K`/`KB`/`KiB`, `M`..., `G`..., `T`...).
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ if digits.is_empty() => return Err(SizeError::NotASize(s.to_string())),
        _ => return Err(SizeError::UnknownUnit(s.to_string())),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1u64 << shift))
        .ok_or_else(|| SizeError::NotASize(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_units_are_binary_in_every_spelling() {
        for (text, want) in [
            ("123", 123),
            ("0", 0),
            ("512B", 512),
            ("64k", 64 << 10),
            ("64K", 64 << 10),
            ("64KB", 64 << 10),
            ("64KiB", 64 << 10),
            ("100kib", 100 << 10),
            ("5M", 5 << 20),
            ("5 MiB", 5 << 20),
            ("2G", 2 << 30),
            ("2GiB", 2 << 30),
            ("1T", 1 << 40),
            ("1TiB", 1 << 40),
            (" 64k ", 64 << 10),
        ] {
            assert_eq!(parse_size(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn size_refusals_say_why() {
        assert_eq!(parse_size("5X"), Err(SizeError::UnknownUnit("5X".into())));
        assert_eq!(parse_size("64Kb2"), Err(SizeError::UnknownUnit("64Kb2".into())));
        assert_eq!(parse_size(""), Err(SizeError::NotASize("".into())));
        assert_eq!(parse_size("K"), Err(SizeError::NotASize("K".into())));
        assert_eq!(parse_size("-1"), Err(SizeError::NotASize("-1".into())));
        assert_eq!(parse_size("1.5G"), Err(SizeError::UnknownUnit("1.5G".into())));
        assert_eq!(parse_size("99999999999T"), Err(SizeError::NotASize("99999999999T".into())));
        assert_eq!(parse_size("5X").map_err(|e| e.to_string()), Err("\"5X\": unknown unit (use K, M, G or T)".into()));
    }
}
