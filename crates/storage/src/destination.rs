//! Where an upload goes, as the user writes it: `oss://BUCKET/KEY` or `s3://BUCKET/KEY`.

use crate::Flavor;

/// A parsed `oss://` or `s3://` URL. The key may be empty or a prefix (`uploads list` takes one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub flavor: Flavor,
    pub bucket: String,
    pub key: String,
}

/// Why a destination URL was refused; each names the URL as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationError {
    NoScheme(String),
    UnknownScheme(String),
    NoBucket(String),
    /// An object is needed (upload, convert) but the URL names a bucket or a prefix.
    NoKey(String),
}

impl std::fmt::Display for DestinationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DestinationError::NoScheme(s) => write!(f, "{s:?}: expected oss://BUCKET/KEY or s3://BUCKET/KEY"),
            DestinationError::UnknownScheme(s) => write!(f, "{s:?}: the scheme must be oss or s3"),
            DestinationError::NoBucket(s) => write!(f, "{s:?}: no bucket"),
            DestinationError::NoKey(s) => write!(f, "{s}: give the object key (oss://BUCKET/KEY)"),
        }
    }
}

impl std::error::Error for DestinationError {}

/// Whether `s` names a store rather than a local file.
pub fn is_store_url(s: &str) -> bool {
    s.starts_with("oss://") || s.starts_with("s3://")
}

impl Destination {
    /// A bucket and an optional key or prefix. `oss_v1` chooses OSS signature version 1 for `oss://`.
    pub fn parse(s: &str, oss_v1: bool) -> Result<Destination, DestinationError> {
        let (scheme, rest) = s.split_once("://").ok_or_else(|| DestinationError::NoScheme(s.to_string()))?;
        let flavor = match scheme {
            "oss" if oss_v1 => Flavor::OssV1,
            "oss" => Flavor::OssV4,
            "s3" => Flavor::S3,
            _ => return Err(DestinationError::UnknownScheme(s.to_string())),
        };
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(DestinationError::NoBucket(s.to_string()));
        }
        Ok(Destination { flavor, bucket: bucket.to_string(), key: key.to_string() })
    }

    /// An object: a bucket and a key that is not a folder.
    pub fn parse_object(s: &str, oss_v1: bool) -> Result<Destination, DestinationError> {
        match Destination::parse(s, oss_v1)? {
            d if !d.key.is_empty() && !d.key.ends_with('/') => Ok(d),
            _ => Err(DestinationError::NoKey(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        let d = Destination::parse("oss://b/k/x.raw", false).expect("dest");
        assert_eq!((d.flavor, d.bucket.as_str(), d.key.as_str()), (Flavor::OssV4, "b", "k/x.raw"));
        assert_eq!(Destination::parse("oss://b/k", true).map(|d| d.flavor), Ok(Flavor::OssV1));
        assert_eq!(Destination::parse("s3://b/k", false).map(|d| d.flavor), Ok(Flavor::S3));
        assert_eq!(Destination::parse("s3://b", false).map(|d| d.key), Ok(String::new()));
        assert!(matches!(Destination::parse("http://b/k", false), Err(DestinationError::UnknownScheme(_))));
        assert!(matches!(Destination::parse("b/k", false), Err(DestinationError::NoScheme(_))));
        assert!(matches!(Destination::parse("oss:///k", false), Err(DestinationError::NoBucket(_))));
        assert!(matches!(Destination::parse_object("oss://b/dir/", false), Err(DestinationError::NoKey(_))));
        assert!(matches!(Destination::parse_object("oss://b", false), Err(DestinationError::NoKey(_))));
        assert!(is_store_url("s3://b/k") && is_store_url("oss://b/k") && !is_store_url("/tmp/oss://x"));
    }
}
