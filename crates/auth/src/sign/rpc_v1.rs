//! POP RPC signature V1: HMAC-SHA1 over the sorted, percent-encoded parameters, sent as the `Signature` parameter.

use super::{base64, hmac_sha1, lookup, SecretLookup, Verified, VerifyError};
use crate::encode::uri_encode;
use crate::time::{parse_iso8601, UtcTime};
use crate::Credentials;

/// `METHOD&%2F&pe(k1=v1&k2=v2...)` with the pairs sorted by name; `Signature` itself is left out.
pub fn string_to_sign(method: &str, params: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "Signature")
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    pairs.sort();
    let joined = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
    format!("{method}&{}&{}", uri_encode("/", false), uri_encode(&joined, false))
}

/// base64(HMAC-SHA1(secret + "&", string to sign)).
pub fn signature(secret: &str, string_to_sign: &str) -> String {
    base64(&hmac_sha1(format!("{secret}&").as_bytes(), string_to_sign.as_bytes()))
}

fn set(params: &mut Vec<(String, String)>, k: &str, v: &str) {
    params.retain(|(name, _)| name != k);
    params.push((k.to_string(), v.to_string()));
}

/// Adds the common signature parameters (`AccessKeyId`, `SignatureMethod`, `SignatureVersion`, `SignatureNonce`,
/// `Timestamp`, `SecurityToken` for STS) and then `Signature`. `Action`, `Version` and `Format` are the caller's.
/// `params` are all the parameters the request carries, query and form body together.
pub fn sign(params: &mut Vec<(String, String)>, method: &str, creds: &Credentials, time: i64, nonce: &str) {
    set(params, "AccessKeyId", &creds.access_key_id);
    set(params, "SignatureMethod", "HMAC-SHA1");
    set(params, "SignatureVersion", "1.0");
    set(params, "SignatureNonce", nonce);
    set(params, "Timestamp", &UtcTime::from_unix(time).iso8601());
    if let Some(token) = creds.token() {
        set(params, "SecurityToken", token);
    }
    let sig = signature(creds.access_key_secret.expose(), &string_to_sign(method, params));
    set(params, "Signature", &sig);
}

/// Verifies the parameters of a received request (query and form body together).
pub fn verify(method: &str, params: &[(String, String)], keys: &dyn SecretLookup) -> Result<Verified, VerifyError> {
    let get = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    let sig = get("Signature").ok_or(VerifyError::Unsigned)?;
    let ak = get("AccessKeyId").ok_or_else(|| VerifyError::Malformed("missing AccessKeyId".into()))?;
    if let Some(m) = get("SignatureMethod") {
        if m != "HMAC-SHA1" {
            return Err(VerifyError::Malformed(format!("unsupported SignatureMethod {m:?}")));
        }
    }
    let secret = lookup(keys, ak)?;
    let sts = string_to_sign(method, params);
    if !super::same_signature(&signature(secret.expose(), &sts), sig) {
        return Err(VerifyError::Mismatch { access_key_id: ak.to_string(), string_to_sign: sts });
    }
    Ok(Verified {
        access_key_id: ak.to_string(),
        signed_at: get("Timestamp").and_then(parse_iso8601),
        expires_at: None,
        region: None,
        presigned: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Secret;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn describe_regions_vector() {
        let p = pairs(&[
            ("Action", "DescribeRegions"),
            ("Format", "XML"),
            ("Version", "2014-05-26"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("TimeStamp", "2016-02-23T12:46:24Z"),
            ("AccessKeyId", "testid"),
        ]);
        assert_eq!(signature("testsecret", &string_to_sign("GET", &p)), "CT9X0VtwR86fNWSnsc6v8YGOjuE=");
        let mut signed = p.clone();
        signed.push(("Signature".into(), "CT9X0VtwR86fNWSnsc6v8YGOjuE=".into()));
        let keys = |ak: &str| (ak == "testid").then(|| Secret::new("testsecret"));
        assert!(verify("GET", &signed, &keys).is_ok());
        assert!(matches!(verify("POST", &signed, &keys), Err(VerifyError::Mismatch { .. })));
    }

    #[test]
    fn openapi_util_vector() {
        let p = pairs(&[("test", "ok")]);
        assert_eq!(string_to_sign("", &p), "&%2F&test%3Dok");
        assert_eq!(signature("accessKeySecret", &string_to_sign("", &p)), "jHx/oHoHNrbVfhncHEvPdHXZwHU=");
    }

    #[test]
    fn sign_then_verify_with_pop_encoding() {
        let mut p = pairs(&[("Action", "DescribeImages"), ("ImageName", "a b*c~d"), ("Version", "2014-05-26")]);
        sign(&mut p, "POST", &Credentials::new("id", "sec").with_token("tok"), 1_700_000_000, "nonce-1");
        assert!(string_to_sign("POST", &p).contains("ImageName%3Da%2520b%252Ac~d"));
        let keys = |_: &str| Some(Secret::new("sec"));
        assert_eq!(verify("POST", &p, &keys).map(|v| v.signed_at), Ok(Some(1_700_000_000)));
        let mut t = p.clone();
        t.push(("Extra".into(), "1".into()));
        assert!(verify("POST", &t, &keys).is_err());
    }
}
