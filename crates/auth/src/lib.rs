//! Credentials, request signing and endpoints shared by imgport's storage and cloud clients.
//!
//! - [`sign`]: OSS V4 and V1, ECS ACS3 and RPC V1, AWS SigV4 — pure signers and the matching verifiers.
//! - [`provider`]: where credentials come from, in the order the official SDKs look, with refresh before expiry.
//! - [`endpoints`]: region to endpoint, custom domains and per-service overrides.
//! - [`rpc`]: the client of the RPC-style APIs (STS, ECS, RAM): signing, retries, typed errors.
//! - [`policy`]: RAM policy documents, read as RAM does for the import role (trust and the import actions).

pub mod credentials;
pub mod encode;
pub mod endpoints;
pub mod env;
pub mod error;
pub mod policy;
pub mod provider;
pub mod request;
pub mod rpc;
pub mod sign;
pub mod time;

pub use credentials::{mask_access_key_id, Credentials, Secret};
pub use env::Env;
pub use error::ErrorKind;
pub use request::SignableRequest;
