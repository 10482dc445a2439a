//! The keys the emulator accepts: one long-term access key pair, and a registry of temporary credentials
//! (access key, secret, security token, expiry) that STS AssumeRole adds to. Temporary credentials are kept in
//! `DATA/credentials.json` so they survive a restart, as issued STS tokens do.

use crate::util;
use imgport_auth::sign::SecretLookup;
use imgport_auth::{Credentials, Secret};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

/// The most temporary credentials the registry holds at once.
pub const MAX_TEMPORARY: usize = 10_000;
/// How long expired temporary credentials are remembered (so that they are refused as expired).
pub const EXPIRED_KEPT_SECONDS: i64 = 86_400;

/// Temporary credentials as STS issues them.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TemporaryCredential {
    pub access_key_id: String,
    pub access_key_secret: String,
    pub security_token: String,
    /// Unix seconds.
    pub expiration: i64,
    /// Unix seconds; 0 in registries written before it was kept (they count as issued long ago).
    #[serde(default)]
    pub issued_at: i64,
}

impl std::fmt::Debug for TemporaryCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemporaryCredential")
            .field("access_key_id", &imgport_auth::mask_access_key_id(&self.access_key_id))
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

impl TemporaryCredential {
    /// New random temporary credentials issued at `issued_at`, valid until `expiration` (ids shaped like STS's:
    /// `STS.` + 28 characters).
    pub fn generate(issued_at: i64, expiration: i64) -> Self {
        TemporaryCredential {
            access_key_id: format!("STS.{}", util::random_alnum(28)),
            access_key_secret: util::random_alnum(44),
            security_token: format!("CAIS{}", util::random_alnum(300)),
            expiration,
            issued_at,
        }
    }

    pub fn to_credentials(&self) -> Credentials {
        Credentials::new(self.access_key_id.clone(), self.access_key_secret.as_str())
            .with_token(self.security_token.as_str())
            .with_expiration(self.expiration)
    }
}

/// Why a request's security token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenProblem {
    /// Temporary credentials used without their token, or with another one.
    Invalid,
    Expired,
}

#[derive(Default, Serialize, Deserialize)]
struct Persisted {
    temporary: Vec<TemporaryCredential>,
}

/// The accepted keys. Implements [`SecretLookup`] for the verifiers.
pub struct CredentialStore {
    access_key_id: String,
    access_key_secret: Secret,
    temporary: RwLock<HashMap<String, TemporaryCredential>>,
    path: Option<PathBuf>,
}

impl CredentialStore {
    /// The long-term pair, and the temporary credentials saved under `data_dir` (if any).
    pub fn open(access_key_id: &str, access_key_secret: &str, data_dir: Option<&Path>) -> io::Result<Self> {
        let path = data_dir.map(|d| d.join("credentials.json"));
        let mut temporary = HashMap::new();
        if let Some(p) = &path {
            match std::fs::read(p) {
                Ok(data) => {
                    let saved: Persisted = serde_json::from_slice(&data)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", p.display())))?;
                    for t in saved.temporary {
                        temporary.insert(t.access_key_id.clone(), t);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(CredentialStore {
            access_key_id: access_key_id.to_string(),
            access_key_secret: Secret::new(access_key_secret),
            temporary: RwLock::new(temporary),
            path,
        })
    }

    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// The long-term pair.
    pub fn credentials(&self) -> Credentials {
        Credentials::new(self.access_key_id.clone(), self.access_key_secret.clone())
    }

    fn save(&self, map: &HashMap<String, TemporaryCredential>) -> io::Result<()> {
        let Some(p) = &self.path else { return Ok(()) };
        let mut list: Vec<TemporaryCredential> = map.values().cloned().collect();
        list.sort_by(|a, b| a.access_key_id.cmp(&b.access_key_id));
        let data = serde_json::to_vec(&Persisted { temporary: list }).map_err(io::Error::other)?;
        let tmp = p.with_extension("json.tmp");
        util::write_private(&tmp, &data)?;
        std::fs::rename(&tmp, p)
    }

    /// Registers temporary credentials (what STS AssumeRole does). The registry is bounded: credentials expired for
    /// more than [`EXPIRED_KEPT_SECONDS`] are dropped (until then a request with them is told they expired rather
    /// than that the key is unknown); at [`MAX_TEMPORARY`] every expired one is dropped, and when all are still
    /// valid the new one is refused with an error of kind [`io::ErrorKind::QuotaExceeded`] (STS answers
    /// `Throttling`).
    pub fn add_temporary(&self, cred: TemporaryCredential, now: i64) -> io::Result<()> {
        self.add_temporary_within(cred, now, MAX_TEMPORARY)
    }

    fn add_temporary_within(&self, cred: TemporaryCredential, now: i64, cap: usize) -> io::Result<()> {
        let mut map = self.temporary.write().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, t| t.expiration > now - EXPIRED_KEPT_SECONDS);
        if map.len() >= cap {
            map.retain(|_, t| t.expiration > now);
        }
        if map.len() >= cap && !map.contains_key(&cred.access_key_id) {
            return Err(io::Error::new(io::ErrorKind::QuotaExceeded, "too many temporary credentials in force"));
        }
        map.insert(cred.access_key_id.clone(), cred);
        self.save(&map)
    }

    /// Issues and registers new temporary credentials valid for `duration_seconds` from `now`.
    pub fn issue_temporary(&self, now: i64, duration_seconds: i64) -> io::Result<TemporaryCredential> {
        let cred = TemporaryCredential::generate(now, now + duration_seconds);
        self.add_temporary(cred.clone(), now)?;
        Ok(cred)
    }

    pub fn temporary(&self, access_key_id: &str) -> Option<TemporaryCredential> {
        self.temporary.read().unwrap_or_else(|p| p.into_inner()).get(access_key_id).cloned()
    }

    pub fn is_temporary(&self, access_key_id: &str) -> bool {
        self.temporary(access_key_id).is_some()
    }

    /// Checks the security token a request carried for its access key. `expire_all_from` is the fault that
    /// makes every temporary credential issued up to that time count as expired from then on.
    pub fn check_token(
        &self,
        access_key_id: &str,
        token: Option<&str>,
        now: i64,
        expire_all_from: Option<i64>,
    ) -> Result<(), TokenProblem> {
        let Some(t) = self.temporary(access_key_id) else {
            return Ok(());
        };
        if token.is_none_or(|tok| !same(tok, &t.security_token)) {
            return Err(TokenProblem::Invalid);
        }
        // The fault expires what was issued up to its time, as an early expiry or a revocation does; STS
        // keeps issuing credentials that work (from the next second: the registry counts whole seconds).
        if now >= t.expiration || expire_all_from.is_some_and(|from| now >= from && t.issued_at <= from) {
            return Err(TokenProblem::Expired);
        }
        Ok(())
    }
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl SecretLookup for CredentialStore {
    fn secret(&self, access_key_id: &str) -> Option<Secret> {
        if access_key_id == self.access_key_id {
            return Some(self.access_key_secret.clone());
        }
        self.temporary(access_key_id).map(|t| Secret::new(t.access_key_secret))
    }
}

/// A new long-term pair shaped like Alibaba Cloud's (`LTAI` + 20 characters, 30-character secret).
pub fn generate_key_pair() -> (String, String) {
    (format!("LTAI{}", util::random_alnum(20)), util::random_alnum(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_and_tokens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CredentialStore::open("AK", "SK", Some(dir.path())).expect("open");
        assert_eq!(store.secret("AK").map(|s| s.expose().to_string()), Some("SK".into()));
        assert!(store.secret("nope").is_none());
        let t = store.issue_temporary(1000, 3600).expect("issue");
        assert!(store.secret(&t.access_key_id).is_some());
        assert_eq!(store.check_token("AK", None, 0, None), Ok(()));
        assert_eq!(store.check_token(&t.access_key_id, Some(&t.security_token), 2000, None), Ok(()));
        assert_eq!(store.check_token(&t.access_key_id, None, 2000, None), Err(TokenProblem::Invalid));
        assert_eq!(store.check_token(&t.access_key_id, Some("x"), 2000, None), Err(TokenProblem::Invalid));
        assert_eq!(
            store.check_token(&t.access_key_id, Some(&t.security_token), 4600, None),
            Err(TokenProblem::Expired)
        );
        assert_eq!(
            store.check_token(&t.access_key_id, Some(&t.security_token), 2000, Some(1500)),
            Err(TokenProblem::Expired)
        );
        // The expiry fault spares credentials issued after its time, and those before it until then.
        assert_eq!(store.check_token(&t.access_key_id, Some(&t.security_token), 2000, Some(999)), Ok(()));
        assert_eq!(store.check_token(&t.access_key_id, Some(&t.security_token), 1400, Some(1500)), Ok(()));
        assert_eq!(
            store.check_token(&t.access_key_id, Some(&t.security_token), 2000, Some(1000)),
            Err(TokenProblem::Expired)
        );
        // Survives a restart.
        let again = CredentialStore::open("AK", "SK", Some(dir.path())).expect("reopen");
        assert_eq!(again.temporary(&t.access_key_id), Some(t.clone()));
        assert!(!format!("{t:?}").contains(&t.access_key_secret));
    }

    #[test]
    fn the_registry_is_bounded() {
        let store = CredentialStore::open("AK", "SK", None).expect("open");
        let add = |issued: i64, expires: i64| {
            let t = TemporaryCredential::generate(issued, expires);
            store.add_temporary_within(t.clone(), issued, 3).map(|_| t)
        };
        let a = add(1000, 1100).expect("first");
        add(1000, 5000).expect("second");
        add(1000, 5000).expect("third");
        // Full, all valid: refused, and nothing is dropped.
        let e = add(1050, 5000).expect_err("over the cap");
        assert_eq!(e.kind(), io::ErrorKind::QuotaExceeded);
        assert!(store.temporary(&a.access_key_id).is_some());
        // Full with one expired: it makes room.
        add(1200, 5000).expect("room from the expired one");
        assert!(store.temporary(&a.access_key_id).is_none());
        assert_eq!(store.temporary.read().expect("lock").len(), 3);
        // Long expired ones go whatever the count.
        let late = 5000 + EXPIRED_KEPT_SECONDS + 1;
        add(late, late + 100).expect("after expiry");
        assert_eq!(store.temporary.read().expect("lock").len(), 1);
    }
}
