//! The request description every signer reads: method, decoded path, decoded query pairs and headers.

use crate::encode::{self, DecodeError};
use std::fmt;

/// An HTTP request as the signature schemes see it. Paths and query values are held decoded; each scheme
/// applies its own canonical encoding, so a verifier can rebuild what the client signed from what arrived.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SignableRequest {
    pub method: String,
    /// Decoded path, starting with `/`.
    pub path: String,
    /// Decoded query pairs in wire order; a bare name has an empty value.
    pub query: Vec<(String, String)>,
    /// Headers in wire order, names as sent.
    pub headers: Vec<(String, String)>,
}

impl SignableRequest {
    pub fn new(method: &str, path: &str) -> Self {
        SignableRequest { method: method.to_string(), path: path.to_string(), ..Default::default() }
    }

    /// Builds a request from a raw request target (`/a%20b?x=1&y`) as a server receives it.
    pub fn from_target(method: &str, target: &str, headers: Vec<(String, String)>) -> Result<Self, DecodeError> {
        let (raw_path, raw_query) = target.split_once('?').unwrap_or((target, ""));
        Ok(SignableRequest {
            method: method.to_string(),
            path: encode::percent_decode(raw_path, false)?,
            query: encode::parse_query(raw_query)?,
            headers,
        })
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Adds a query pair.
    pub fn with_query(mut self, name: &str, value: &str) -> Self {
        self.query.push((name.to_string(), value.to_string()));
        self
    }

    /// Every value of a header (case-insensitive name), in order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    /// The first value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Replaces every value of a header with one value.
    pub fn set_header(&mut self, name: &str, value: &str) {
        self.remove_header(name);
        self.headers.push((name.to_string(), value.to_string()));
    }

    pub fn remove_header(&mut self, name: &str) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    }

    /// The first value of a query parameter (exact name).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Replaces every value of a query parameter with one value.
    pub fn set_query(&mut self, name: &str, value: &str) {
        self.query.retain(|(k, _)| k != name);
        self.query.push((name.to_string(), value.to_string()));
    }

    /// The path and query as they go on the wire (`/a%20b?x=1&y`).
    pub fn target(&self) -> String {
        let mut t = encode::uri_encode(&self.path, true);
        if !self.query.is_empty() {
            t.push('?');
            t.push_str(&encode::format_query(&self.query));
        }
        t
    }
}

/// Header and query names whose values are credentials: never shown in debug output.
pub(crate) fn is_sensitive_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "authorization"
        || n.ends_with("security-token")
        || n.ends_with("securitytoken")
        || n == "signature"
        || n == "x-oss-signature"
        || n == "x-amz-signature"
        || n == "oidctoken"
        || n == "x-aliyun-ecs-metadata-token"
}

struct Redacted<'a>(&'a [(String, String)]);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, v)| {
                let shown = if is_sensitive_name(k) { "***" } else { v.as_str() };
                (k.as_str(), shown)
            }))
            .finish()
    }
}

impl fmt::Debug for SignableRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignableRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &Redacted(&self.query))
            .field("headers", &Redacted(&self.headers))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_round_trip() {
        let r = SignableRequest::from_target("GET", "/a%20b/c%2Bd?x=1&y&z=%2F", vec![]).unwrap_or_default();
        assert_eq!(r.path, "/a b/c+d");
        assert_eq!(r.query_param("z"), Some("/"));
        assert_eq!(r.target(), "/a%20b/c%2Bd?x=1&y&z=%2F");
    }

    #[test]
    fn debug_hides_credentials() {
        let r = SignableRequest::new("GET", "/")
            .with_header("Authorization", "OSS ak:SIGNATURE")
            .with_header("x-oss-security-token", "TOKEN")
            .with_query("Signature", "QSIG")
            .with_query("security-token", "QTOKEN");
        let s = format!("{r:?}");
        for secret in ["SIGNATURE", "TOKEN", "QSIG"] {
            assert!(!s.contains(secret), "{s}");
        }
    }
}
