//! Signature schemes: each one builds the canonical form of a request, signs it, and verifies a received request.
//!
//! Signers take the time as an argument and never read a clock, so every official vector reproduces exactly.
//! Verifiers only check the signature; what a server does with the claimed time (skew, expiry) is its own policy.

pub mod acs3;
pub mod oss_v1;
pub mod oss_v4;
pub mod rpc_v1;
pub mod sigv4;

use crate::credentials::Secret;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub(crate) fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so construction cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

pub(crate) fn hmac_sha1(key: &[u8], data: &[u8]) -> [u8; 20] {
    let mut mac = match Hmac::<sha1::Sha1>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Lowercase hex SHA-256 of some bytes (payload hashes, canonical request hashes).
pub fn sha256_hex(data: &[u8]) -> String {
    imgport_wire::hex(&Sha256::digest(data))
}

/// SHA-256 of the empty payload.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

pub(crate) fn base64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Compares two signatures without stopping at the first difference.
pub(crate) fn same_signature(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a verifier learned from a request whose signature matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub access_key_id: String,
    /// The time the client claims to have signed at (unix seconds), when the scheme carries one.
    pub signed_at: Option<i64>,
    /// When a presigned request stops being valid (unix seconds).
    pub expires_at: Option<i64>,
    /// Region of the credential scope (OSS V4, SigV4).
    pub region: Option<String>,
    /// Whether the signature came in the query string (presigned URL) rather than a header.
    pub presigned: bool,
}

/// Why a request failed verification; each maps onto the error a real service returns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// No signature at all (anonymous request).
    #[error("the request carries no signature")]
    Unsigned,
    /// The signature fields are present but malformed or incomplete (`InvalidArgument` / `AccessDenied`).
    #[error("malformed signature: {0}")]
    Malformed(String),
    /// The access key id is unknown (`InvalidAccessKeyId`).
    #[error("unknown access key id {0}")]
    UnknownAccessKey(String),
    /// The signature does not match (`SignatureDoesNotMatch`); servers echo the string to sign to help clients.
    /// It can hold the request's security token: return it to that client, never write it to a log.
    #[error("signature does not match")]
    Mismatch { access_key_id: String, string_to_sign: String },
}

/// Finds the secret of an access key id, as a verifying server does.
pub trait SecretLookup {
    fn secret(&self, access_key_id: &str) -> Option<Secret>;
}

impl<F: Fn(&str) -> Option<Secret>> SecretLookup for F {
    fn secret(&self, access_key_id: &str) -> Option<Secret> {
        self(access_key_id)
    }
}

pub(crate) fn lookup(keys: &dyn SecretLookup, ak: &str) -> Result<Secret, VerifyError> {
    keys.secret(ak).ok_or_else(|| VerifyError::UnknownAccessKey(ak.to_string()))
}

/// Splits `Name k1=v1,k2=v2` style authorization parameters (comma separated, optional spaces).
pub(crate) fn auth_params(s: &str) -> Vec<(String, String)> {
    s.split(',')
        .filter_map(|p| {
            let p = p.trim();
            let (k, v) = p.split_once('=')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

pub(crate) fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Header canonicalisation shared by the V4-style schemes: lowercase names, sorted, values trimmed and joined by `,`.
pub(crate) fn canonical_headers(
    req: &crate::SignableRequest,
    names: &[String],
    value: impl Fn(&str) -> String,
) -> String {
    let mut out = String::new();
    for name in names {
        let values: Vec<String> = req.header_values(name).into_iter().map(&value).collect();
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out
}
