//! Object-store clients for uploads: Alibaba Cloud OSS (signature V4 by default, V1 as an option) and
//! S3-compatible stores (SigV4), behind one [`ObjectStore`] trait. Errors carry the service's code and a
//! [`RetryClass`]; the caller owns the retry policy. Around them: destination URLs ([`destination`]), store
//! configuration ([`settings`]), the bookkeeping of interrupted uploads ([`uploads`]) and the typed events an
//! upload reports ([`events`]); nothing here prints.

pub mod body;
pub mod checksum;
pub mod client;
pub mod destination;
mod digests;
pub use imgport_wire::crc64;
pub mod error;
pub mod events;
pub mod settings;
pub mod state;
pub mod stream;
pub mod upload;
pub mod uploads;
pub mod xml;

pub use body::{Body, FileRange};
pub use client::{Client, Flavor, StoreConfig};
pub use destination::{is_store_url, Destination, DestinationError};
pub use error::{ErrorKind, RetryClass, StorageError};
pub use events::{EventFn, UploadEvent};

use bytes::Bytes;
use std::future::Future;
use std::pin::Pin;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
pub type Result<T> = std::result::Result<T, StorageError>;

/// What the store reports about a stored object or part.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PutResult {
    /// Without quotes.
    pub etag: String,
    /// `x-oss-hash-crc64ecma`, when the store sends it.
    pub crc64: Option<u64>,
    /// The flexible checksum (of the algorithm sent) the store echoed. S3 echoes what it checked the body
    /// against; a store could also echo the header as sent, so the uploader compares it and treats the echo as
    /// the store's word.
    pub checksum: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectMeta {
    pub len: u64,
    pub etag: String,
    pub crc64: Option<u64>,
    /// The object's user metadata (`x-oss-meta-*` / `x-amz-meta-*`), by name without that prefix, lowercased.
    pub metadata: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    pub number: u32,
    pub size: u64,
    /// Without quotes.
    pub etag: String,
    pub crc64: Option<u64>,
}

/// What the store checks a part's body against (neither on OSS: its CRC-64 answer is compared instead).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartCheck {
    /// Base64 MD5 (`Content-MD5`).
    pub content_md5: Option<String>,
    pub checksum: Option<checksum::Value>,
}

/// A part as CompleteMultipartUpload names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPart {
    pub number: u32,
    /// Without quotes.
    pub etag: String,
    /// Its flexible checksum, when the upload has one.
    pub checksum: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadInfo {
    pub key: String,
    pub upload_id: String,
    pub initiated: String,
}

/// Options of a new object.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    pub storage_class: Option<String>,
    pub content_type: Option<String>,
    /// Base64 MD5 of the body, checked by the store.
    pub content_md5: Option<String>,
    /// The body's flexible checksum, sent with PutObject (S3).
    pub checksum: Option<checksum::Value>,
    /// User metadata kept with the object: names without the `x-oss-meta-` / `x-amz-meta-` prefix (lowercase
    /// letters, digits and `-`), values printable ASCII. Sent on PutObject and InitiateMultipartUpload, and signed.
    pub metadata: Vec<(String, String)>,
    /// Create the object only if the key is free (`x-oss-forbid-overwrite: true` on OSS, `If-None-Match: *` on
    /// S3): a key that exists answers [`ErrorKind::AlreadyExists`], the object there untouched. Leases rely on it.
    pub create_only: bool,
}

/// The operations a resumable multipart upload needs.
pub trait ObjectStore: Send + Sync {
    fn put_object<'a>(&'a self, key: &'a str, body: Body, opts: &'a PutOptions) -> BoxFuture<'a, Result<PutResult>>;
    fn head_object<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<ObjectMeta>>;
    /// The whole object (tests and small reads), up to 1 GiB: a longer one is a protocol error.
    fn get_object<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Bytes>>;
    /// Starts a multipart upload; with `checksum`, each part will carry that flexible checksum and Complete the
    /// whole object's, combined from the parts' (S3's `FULL_OBJECT` type).
    fn initiate_multipart<'a>(
        &'a self,
        key: &'a str,
        opts: &'a PutOptions,
        checksum: Option<checksum::Algorithm>,
    ) -> BoxFuture<'a, Result<String>>;
    fn upload_part<'a>(
        &'a self,
        key: &'a str,
        upload_id: &'a str,
        number: u32,
        body: Body,
        check: PartCheck,
    ) -> BoxFuture<'a, Result<PutResult>>;
    /// Every part the store holds, following the pages, sorted by number.
    fn list_parts<'a>(&'a self, key: &'a str, upload_id: &'a str) -> BoxFuture<'a, Result<Vec<PartInfo>>>;
    /// `parts` in ascending order; `whole` is the object's flexible checksum when the upload announced one (each
    /// part then carries its own).
    fn complete_multipart<'a>(
        &'a self,
        key: &'a str,
        upload_id: &'a str,
        parts: &'a [CompletedPart],
        whole: Option<checksum::Value>,
    ) -> BoxFuture<'a, Result<PutResult>>;
    fn abort_multipart<'a>(&'a self, key: &'a str, upload_id: &'a str) -> BoxFuture<'a, Result<()>>;
    /// Multipart uploads in progress under a prefix; [`StorageError::Unsupported`] where the store lacks it.
    fn list_multipart_uploads<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<UploadInfo>>>;
    /// Whether the store reports CRC-64 checksums (OSS does, S3 does not).
    fn has_crc64(&self) -> bool;
    /// Whether part ETags are the MD5 of the part (S3 without SSE-KMS, OSS).
    fn etag_is_md5(&self) -> bool {
        true
    }
    /// Signs from now on as if the clock read `server_time` now: the uploader calls it with the server's time
    /// from a skewed-clock answer before retrying. No default: a store that signs with the time must apply it,
    /// or its skew errors would be retried with the same clock.
    fn correct_clock(&self, server_time: i64);
}
