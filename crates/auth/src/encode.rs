//! Percent-encoding and query parsing shared by the signers.

/// RFC 3986 unreserved characters: the only bytes every scheme here leaves as they are.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// Percent-encodes everything but the unreserved characters (and `/` when `keep_slash`), with uppercase hex.
///
/// This is the POP encoding of the RPC and ACS3 signatures too: space becomes `%20`, `*` becomes `%2A`, `~` stays.
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 2);
    for &b in s.as_bytes() {
        if unreserved(b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX_UPPER[(b >> 4) as usize] as char);
            out.push(HEX_UPPER[(b & 15) as usize] as char);
        }
    }
    out
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// A percent-encoded string that does not decode to UTF-8, or holds a broken escape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed percent-encoding in {0:?}")]
pub struct DecodeError(pub String);

/// Decodes `%XX` escapes (and `+` as a space when `plus_as_space`, the form convention of query strings).
pub fn percent_decode(s: &str, plus_as_space: bool) -> Result<String, DecodeError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|c| (*c as char).to_digit(16));
                let lo = bytes.get(i + 2).and_then(|c| (*c as char).to_digit(16));
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                    _ => return Err(DecodeError(s.to_string())),
                }
                i += 3;
            }
            b'+' if plus_as_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| DecodeError(s.to_string()))
}

/// Splits a raw query string (`a=1&b&c=x%20y`) into decoded pairs; a bare name gets an empty value.
pub fn parse_query(raw: &str) -> Result<Vec<(String, String)>, DecodeError> {
    let mut pairs = Vec::new();
    for part in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        pairs.push((percent_decode(k, true)?, percent_decode(v, true)?));
    }
    Ok(pairs)
}

/// Encodes decoded pairs as a query string (both sides with [`uri_encode`]); a pair with an empty value is written bare.
pub fn format_query(pairs: &[(String, String)]) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&uri_encode(k, false));
        if !v.is_empty() {
            out.push('=');
            out.push_str(&uri_encode(v, false));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pop_encoding_rules() {
        assert_eq!(uri_encode("a b*c~d/e+f", false), "a%20b%2Ac~d%2Fe%2Bf");
        assert_eq!(uri_encode("/bucket/1234+-/123/1.txt", true), "/bucket/1234%2B-/123/1.txt");
        assert_eq!(uri_encode("\u{1234}", false), "%E1%88%B4");
    }

    #[test]
    fn decode_round_trip_and_errors() {
        assert_eq!(percent_decode("a%20b+c", true).as_deref(), Ok("a b c"));
        assert_eq!(percent_decode("a+c", false).as_deref(), Ok("a+c"));
        assert!(percent_decode("%zz", false).is_err());
        assert!(percent_decode("%", false).is_err());
        assert!(percent_decode("%ff", false).is_err());
        let q = parse_query("b&a=1&c=x%2By&&d=").unwrap_or_default();
        assert_eq!(q.len(), 4);
        assert_eq!(q[2], ("c".to_string(), "x+y".to_string()));
        assert_eq!(format_query(&q), "b&a=1&c=x%2By&d");
    }
}
