//! Credentials and the secret type that keeps them out of logs and debug output.

use std::fmt;

/// A secret string: `Debug` and `Display` print `***`; read it with [`Secret::expose`] where it is really needed.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_string())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

/// An access key pair, with the security token and expiry of temporary (STS) credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: Secret,
    pub security_token: Option<Secret>,
    /// Unix seconds; `None` for long-term keys.
    pub expiration: Option<i64>,
}

impl Credentials {
    /// Long-term access keys.
    pub fn new(access_key_id: impl Into<String>, access_key_secret: impl Into<Secret>) -> Self {
        Credentials {
            access_key_id: access_key_id.into(),
            access_key_secret: access_key_secret.into(),
            security_token: None,
            expiration: None,
        }
    }

    /// Adds a security token (STS credentials).
    pub fn with_token(mut self, token: impl Into<Secret>) -> Self {
        self.security_token = Some(token.into());
        self
    }

    pub fn with_expiration(mut self, unix: i64) -> Self {
        self.expiration = Some(unix);
        self
    }

    /// The token, if any and not empty.
    pub fn token(&self) -> Option<&str> {
        self.security_token.as_ref().map(Secret::expose).filter(|t| !t.is_empty())
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &mask_access_key_id(&self.access_key_id))
            .field("access_key_secret", &self.access_key_secret)
            .field("security_token", &self.security_token)
            .field("expiration", &self.expiration)
            .finish()
    }
}

/// Shows the first and last four characters of an access key id (`LTAI...wxyz`); short ids are hidden entirely.
pub fn mask_access_key_id(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len().max(3));
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}...{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_secrets() {
        let c = Credentials::new("LTAI5tAbCdEfGhIjKlMn", "s3cr3t-VALUE").with_token("T0KEN-VALUE").with_expiration(5);
        let shown = format!("{c:?} {:?} {} {:#?}", c.access_key_secret, c.access_key_secret, c);
        assert!(!shown.contains("s3cr3t-VALUE"), "{shown}");
        assert!(!shown.contains("T0KEN-VALUE"), "{shown}");
        assert!(!shown.contains("LTAI5tAbCdEfGhIjKlMn"), "{shown}");
        assert!(shown.contains("LTAI...KlMn"), "{shown}");
    }

    #[test]
    fn masking() {
        assert_eq!(mask_access_key_id("LTAI5tAbCdEfGhIjKlMn"), "LTAI...KlMn");
        assert_eq!(mask_access_key_id("ak"), "***");
        assert_eq!(mask_access_key_id("12345678"), "********");
    }
}
