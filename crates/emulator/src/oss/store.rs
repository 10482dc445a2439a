//! The OSS state on disk: buckets, objects and multipart uploads under `DATA/oss/`.
//!
//! Bodies are files (a multipart object keeps its parts as they were uploaded, so Complete copies nothing);
//! metadata is small JSON files replaced atomically (write, then rename), so a restart finds every committed
//! change and no half-written record. Listings are served from an in-memory index rebuilt from the JSON at start.

use imgport_wire::hex_upper;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Parts other than the last must be at least this large (OSS's limit; S3's is 5 MiB).
pub const MIN_PART_SIZE: u64 = 100 * 1024;
pub const MAX_PART_NUMBER: u32 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the bucket does not exist")]
    NoSuchBucket,
    #[error("the key does not exist")]
    NoSuchKey,
    #[error("the upload does not exist")]
    NoSuchUpload,
    #[error("the bucket is not empty")]
    BucketNotEmpty,
    /// The bucket exists with other settings (the message says which).
    #[error("{0}")]
    BucketConflict(&'static str),
    #[error("part {number} was not uploaded or its ETag differs")]
    InvalidPart { number: u32, etag: String },
    #[error("parts are not in ascending order")]
    InvalidPartOrder,
    #[error("part {number} is {size} bytes, below the minimum")]
    EntityTooSmall { number: u32, size: u64 },
    #[error("the object exists and overwriting is forbidden")]
    FileAlreadyExists,
    #[error("no parts to complete")]
    NoParts,
    #[error(transparent)]
    Io(#[from] io::Error),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BucketInfo {
    pub name: String,
    pub region: String,
    /// Unix seconds.
    pub created: i64,
    pub storage_class: String,
    pub redundancy: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Segment {
    pub file: String,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    /// Uppercase hex, without quotes (`-N` suffix for multipart objects).
    pub etag: String,
    pub crc64: u64,
    /// Base64 MD5 of a simply uploaded object (OSS returns it as Content-MD5).
    pub content_md5: Option<String>,
    pub last_modified: i64,
    pub content_type: String,
    /// Stored headers returned on GET/HEAD: `x-oss-meta-*` and the standard content headers.
    pub headers: Vec<(String, String)>,
    pub multipart: bool,
    pub storage_class: String,
    /// Folder under the bucket's `data/` that holds this version's files.
    pub version: String,
    pub segments: Vec<Segment>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadInfo {
    pub upload_id: String,
    pub bucket: String,
    pub key: String,
    pub initiated: i64,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub storage_class: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartMeta {
    pub number: u32,
    pub size: u64,
    /// Uppercase hex MD5, without quotes.
    pub etag: String,
    pub crc64: u64,
    pub last_modified: i64,
    pub file: String,
}

/// What was learned while a request body streamed into a temporary file.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: PathBuf,
    pub size: u64,
    pub md5: [u8; 16],
    pub crc64: u64,
}

/// Settings of a new object, from the request headers.
#[derive(Debug, Clone, Default)]
pub struct NewObject {
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub storage_class: String,
    pub forbid_overwrite: bool,
}

#[derive(Debug, Default)]
pub struct Listing {
    pub objects: Vec<ObjectMeta>,
    pub prefixes: Vec<String>,
    pub truncated: bool,
    /// The last key or common prefix returned, where the next page starts (exclusive).
    pub next_marker: Option<String>,
}

#[derive(Debug, Default)]
pub struct UploadListing {
    pub uploads: Vec<UploadInfo>,
    pub prefixes: Vec<String>,
    pub truncated: bool,
    pub next_key_marker: String,
    pub next_upload_id_marker: String,
}

#[derive(Debug, Default)]
pub struct PartListing {
    pub upload: Option<UploadInfo>,
    pub parts: Vec<PartMeta>,
    pub truncated: bool,
    pub next_marker: u32,
}

struct BucketState {
    info: BucketInfo,
    objects: BTreeMap<String, ObjectMeta>,
}

struct UploadState {
    info: UploadInfo,
    parts: BTreeMap<u32, PartMeta>,
}

#[derive(Default)]
struct State {
    buckets: BTreeMap<String, BucketState>,
    uploads: HashMap<String, UploadState>,
}

/// The OSS store. Methods block on disk I/O: call them from a blocking context.
pub struct Store {
    root: PathBuf,
    state: Mutex<State>,
    seq: AtomicU64,
}

fn key_file(key: &str) -> String {
    imgport_wire::hex(&sha2::Sha256::digest(key.as_bytes()))
}

fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let data = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    crate::util::write_private(&tmp, &data)?;
    fs::rename(&tmp, path)
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> io::Result<T> {
    let data = fs::read(path)?;
    serde_json::from_slice(&data).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn remove_dir_quietly(path: &Path) {
    // Best effort: a leftover folder costs disk space, never correctness (nothing points at it any more).
    let _ = fs::remove_dir_all(path);
}

impl Store {
    /// Opens (creating if needed) the store under `root/oss` and loads its index.
    pub fn open(root: &Path) -> io::Result<Store> {
        let store = Store { root: root.join("oss"), state: Mutex::new(State::default()), seq: AtomicU64::new(0) };
        crate::util::create_private_dir_all(&store.root.join("buckets"))?;
        crate::util::create_private_dir_all(&store.root.join("uploads"))?;
        // Bodies of requests that never finished: nothing refers to them.
        remove_dir_quietly(&store.root.join("tmp"));
        crate::util::create_private_dir_all(&store.root.join("tmp"))?;
        let mut state = State::default();
        for entry in fs::read_dir(store.root.join("buckets"))? {
            let dir = entry?.path();
            let Ok(info) = read_json::<BucketInfo>(&dir.join("bucket.json")) else { continue };
            let mut objects = BTreeMap::new();
            if let Ok(rd) = fs::read_dir(dir.join("objects")) {
                for e in rd.flatten() {
                    let p = e.path();
                    if p.extension().is_some_and(|x| x == "json") {
                        if let Ok(meta) = read_json::<ObjectMeta>(&p) {
                            objects.insert(meta.key.clone(), meta);
                        }
                    }
                }
            }
            state.buckets.insert(info.name.clone(), BucketState { info, objects });
        }
        for entry in fs::read_dir(store.root.join("uploads"))? {
            let dir = entry?.path();
            let Ok(info) = read_json::<UploadInfo>(&dir.join("upload.json")) else { continue };
            let mut parts = BTreeMap::new();
            for e in fs::read_dir(&dir)?.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("part-") && name.ends_with(".json") {
                    if let Ok(p) = read_json::<PartMeta>(&e.path()) {
                        parts.insert(p.number, p);
                    }
                }
            }
            state.uploads.insert(info.upload_id.clone(), UploadState { info, parts });
        }
        *store.lock() = state;
        Ok(store)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the maps consistent (every change is a single insert/remove).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn unique(&self) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default();
        format!("{nanos:016X}{:016X}", self.seq.fetch_add(1, Ordering::Relaxed) ^ (std::process::id() as u64) << 40)
    }

    /// A fresh path for a request body being received.
    pub fn tmp_path(&self) -> PathBuf {
        self.root.join("tmp").join(self.unique())
    }

    fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.root.join("buckets").join(bucket)
    }

    fn upload_dir(&self, upload_id: &str) -> PathBuf {
        self.root.join("uploads").join(upload_id)
    }

    /// Creates a bucket; `Ok(false)` when it already existed with the same region (a repeated create is fine).
    pub fn create_bucket(&self, info: BucketInfo) -> Result<bool, StoreError> {
        let mut st = self.lock();
        if let Some(b) = st.buckets.get(&info.name) {
            if b.info.region != info.region {
                return Err(StoreError::BucketConflict("Bucket already exists can't modify location."));
            }
            if b.info.storage_class != info.storage_class {
                return Err(StoreError::BucketConflict("Bucket already exists can't modify storage type."));
            }
            if b.info.redundancy != info.redundancy {
                return Err(StoreError::BucketConflict("Bucket already exists CAN'T modify data redundancy type."));
            }
            return Ok(false);
        }
        let dir = self.bucket_dir(&info.name);
        crate::util::create_private_dir_all(&dir.join("objects"))?;
        crate::util::create_private_dir_all(&dir.join("data"))?;
        write_json_atomic(&dir.join("bucket.json"), &info)?;
        st.buckets.insert(info.name.clone(), BucketState { info, objects: BTreeMap::new() });
        Ok(true)
    }

    pub fn bucket(&self, name: &str) -> Option<BucketInfo> {
        self.lock().buckets.get(name).map(|b| b.info.clone())
    }

    pub fn buckets(&self) -> Vec<BucketInfo> {
        self.lock().buckets.values().map(|b| b.info.clone()).collect()
    }

    pub fn delete_bucket(&self, name: &str) -> Result<(), StoreError> {
        let mut st = self.lock();
        let b = st.buckets.get(name).ok_or(StoreError::NoSuchBucket)?;
        if !b.objects.is_empty() || st.uploads.values().any(|u| u.info.bucket == name) {
            return Err(StoreError::BucketNotEmpty);
        }
        // Remove the record first: a crash after it leaves only an unreferenced folder.
        let dir = self.bucket_dir(name);
        fs::remove_file(dir.join("bucket.json"))?;
        st.buckets.remove(name);
        drop(st);
        remove_dir_quietly(&dir);
        Ok(())
    }

    fn commit_object(&self, st: &mut State, bucket: &str, meta: ObjectMeta) -> Result<(), StoreError> {
        let dir = self.bucket_dir(bucket);
        write_json_atomic(&dir.join("objects").join(format!("{}.json", key_file(&meta.key))), &meta)?;
        let b = st.buckets.get_mut(bucket).ok_or(StoreError::NoSuchBucket)?;
        if let Some(old) = b.objects.insert(meta.key.clone(), meta) {
            // Readers that already opened the old files keep reading them (unlinked files live on while open).
            remove_dir_quietly(&dir.join("data").join(old.version));
        }
        Ok(())
    }

    /// Stores a simply uploaded object from a received body file.
    pub fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: &Received,
        new: NewObject,
        now: i64,
    ) -> Result<ObjectMeta, StoreError> {
        use base64::Engine;
        let version = self.unique();
        let mut st = self.lock();
        let b = st.buckets.get(bucket).ok_or(StoreError::NoSuchBucket)?;
        if new.forbid_overwrite && b.objects.contains_key(key) {
            return Err(StoreError::FileAlreadyExists);
        }
        let vdir = self.bucket_dir(bucket).join("data").join(&version);
        crate::util::create_private_dir_all(&vdir)?;
        fs::rename(&body.path, vdir.join("0"))?;
        let meta = ObjectMeta {
            key: key.to_string(),
            size: body.size,
            etag: hex_upper(&body.md5),
            crc64: body.crc64,
            content_md5: Some(base64::engine::general_purpose::STANDARD.encode(body.md5)),
            last_modified: now,
            content_type: new.content_type,
            headers: new.headers,
            multipart: false,
            storage_class: new.storage_class,
            version,
            segments: vec![Segment { file: "0".into(), size: body.size }],
        };
        self.commit_object(&mut st, bucket, meta.clone())?;
        Ok(meta)
    }

    pub fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectMeta, StoreError> {
        let st = self.lock();
        let b = st.buckets.get(bucket).ok_or(StoreError::NoSuchBucket)?;
        b.objects.get(key).cloned().ok_or(StoreError::NoSuchKey)
    }

    /// The object's metadata and its files, opened while the object cannot change under us.
    pub fn open_object(&self, bucket: &str, key: &str) -> Result<ObjectData, StoreError> {
        let st = self.lock();
        let b = st.buckets.get(bucket).ok_or(StoreError::NoSuchBucket)?;
        let meta = b.objects.get(key).cloned().ok_or(StoreError::NoSuchKey)?;
        let vdir = self.bucket_dir(bucket).join("data").join(&meta.version);
        let mut files = Vec::with_capacity(meta.segments.len());
        for s in &meta.segments {
            files.push((fs::File::open(vdir.join(&s.file))?, s.size));
        }
        drop(st);
        Ok(ObjectData { meta, files, pos: 0 })
    }

    /// Deletes an object; deleting a key that does not exist succeeds, as in OSS.
    pub fn delete_object(&self, bucket: &str, key: &str) -> Result<(), StoreError> {
        let mut st = self.lock();
        let b = st.buckets.get_mut(bucket).ok_or(StoreError::NoSuchBucket)?;
        if let Some(old) = b.objects.remove(key) {
            let dir = self.bucket_dir(bucket);
            if let Err(e) = fs::remove_file(dir.join("objects").join(format!("{}.json", key_file(key)))) {
                b.objects.insert(key.to_string(), old);
                return Err(e.into());
            }
            remove_dir_quietly(&dir.join("data").join(old.version));
        }
        Ok(())
    }

    /// Objects in key order after `marker`, under `prefix`, rolled up at `delimiter`.
    pub fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: &str,
        marker: &str,
        max_keys: usize,
    ) -> Result<Listing, StoreError> {
        let st = self.lock();
        let b = st.buckets.get(bucket).ok_or(StoreError::NoSuchBucket)?;
        let mut out = Listing::default();
        use std::ops::Bound;
        let start = if prefix > marker { Bound::Included(prefix) } else { Bound::Excluded(marker) };
        let range = b.objects.range::<str, _>((start, Bound::Unbounded));
        for (key, meta) in range {
            if !key.starts_with(prefix) {
                if key.as_str() > prefix {
                    break;
                }
                continue;
            }
            let rolled = if delimiter.is_empty() {
                None
            } else {
                key[prefix.len()..].find(delimiter).map(|i| key[..prefix.len() + i + delimiter.len()].to_string())
            };
            if let Some(cp) = &rolled {
                // A page that ended on this common prefix must not return it again.
                if out.prefixes.last() == Some(cp) || marker.starts_with(cp.as_str()) {
                    continue;
                }
            }
            if out.objects.len() + out.prefixes.len() >= max_keys {
                out.truncated = true;
                break;
            }
            match rolled {
                Some(cp) => {
                    out.next_marker = Some(cp.clone());
                    out.prefixes.push(cp);
                }
                None => {
                    out.next_marker = Some(key.clone());
                    out.objects.push(meta.clone());
                }
            }
        }
        if !out.truncated {
            out.next_marker = None;
        }
        Ok(out)
    }

    pub fn initiate_upload(&self, bucket: &str, key: &str, new: NewObject, now: i64) -> Result<UploadInfo, StoreError> {
        let upload_id = self.unique();
        let mut st = self.lock();
        if !st.buckets.contains_key(bucket) {
            return Err(StoreError::NoSuchBucket);
        }
        let info = UploadInfo {
            upload_id: upload_id.clone(),
            bucket: bucket.to_string(),
            key: key.to_string(),
            initiated: now,
            content_type: new.content_type,
            headers: new.headers,
            storage_class: new.storage_class,
        };
        let dir = self.upload_dir(&upload_id);
        crate::util::create_private_dir_all(&dir)?;
        write_json_atomic(&dir.join("upload.json"), &info)?;
        st.uploads.insert(upload_id, UploadState { info: info.clone(), parts: BTreeMap::new() });
        Ok(info)
    }

    fn upload_mut<'a>(
        st: &'a mut State,
        upload_id: &str,
        bucket: &str,
        key: &str,
    ) -> Result<&'a mut UploadState, StoreError> {
        match st.uploads.get_mut(upload_id) {
            Some(u) if u.info.bucket == bucket && u.info.key == key => Ok(u),
            _ => Err(StoreError::NoSuchUpload),
        }
    }

    /// Checks that an upload exists before its body is received.
    pub fn upload_exists(&self, bucket: &str, key: &str, upload_id: &str) -> Result<(), StoreError> {
        let mut st = self.lock();
        if !st.buckets.contains_key(bucket) {
            return Err(StoreError::NoSuchBucket);
        }
        Self::upload_mut(&mut st, upload_id, bucket, key).map(|_| ())
    }

    pub fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: u32,
        body: &Received,
        now: i64,
    ) -> Result<PartMeta, StoreError> {
        let file = format!("part-{number}-{}.data", self.unique());
        let mut st = self.lock();
        let dir = self.upload_dir(upload_id);
        let upload = Self::upload_mut(&mut st, upload_id, bucket, key)?;
        fs::rename(&body.path, dir.join(&file))?;
        let part = PartMeta {
            number,
            size: body.size,
            etag: hex_upper(&body.md5),
            crc64: body.crc64,
            last_modified: now,
            file,
        };
        write_json_atomic(&dir.join(format!("part-{number}.json")), &part)?;
        if let Some(old) = upload.parts.insert(number, part.clone()) {
            let _ = fs::remove_file(dir.join(old.file));
        }
        Ok(part)
    }

    pub fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        marker: u32,
        max_parts: usize,
    ) -> Result<PartListing, StoreError> {
        let mut st = self.lock();
        if !st.buckets.contains_key(bucket) {
            return Err(StoreError::NoSuchBucket);
        }
        let upload = Self::upload_mut(&mut st, upload_id, bucket, key)?;
        let mut out = PartListing { upload: Some(upload.info.clone()), ..Default::default() };
        for (n, p) in upload.parts.range(marker.saturating_add(1)..) {
            if out.parts.len() >= max_parts {
                out.truncated = true;
                break;
            }
            out.next_marker = *n;
            out.parts.push(p.clone());
        }
        Ok(out)
    }

    /// Completes an upload with the listed parts (`None`: every uploaded part, as `x-oss-complete-all` asks).
    pub fn complete_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        listed: Option<&[(u32, String)]>,
        forbid_overwrite: bool,
        now: i64,
    ) -> Result<ObjectMeta, StoreError> {
        let version = self.unique();
        let mut st = self.lock();
        if !st.buckets.contains_key(bucket) {
            return Err(StoreError::NoSuchBucket);
        }
        let upload = Self::upload_mut(&mut st, upload_id, bucket, key)?;
        let chosen: Vec<PartMeta> = match listed {
            None => upload.parts.values().cloned().collect(),
            Some(list) => {
                let mut chosen = Vec::with_capacity(list.len());
                let mut last = 0u32;
                for (number, etag) in list {
                    if *number <= last {
                        return Err(StoreError::InvalidPartOrder);
                    }
                    last = *number;
                    let wanted = imgport_wire::unquote(etag);
                    match upload.parts.get(number) {
                        Some(p) if p.etag.eq_ignore_ascii_case(&wanted) => chosen.push(p.clone()),
                        _ => return Err(StoreError::InvalidPart { number: *number, etag: etag.clone() }),
                    }
                }
                chosen
            }
        };
        if chosen.is_empty() {
            return Err(StoreError::NoParts);
        }
        if let Some(small) = chosen[..chosen.len() - 1].iter().find(|p| p.size < MIN_PART_SIZE) {
            return Err(StoreError::EntityTooSmall { number: small.number, size: small.size });
        }
        let info = upload.info.clone();
        if forbid_overwrite && st.buckets.get(bucket).is_some_and(|b| b.objects.contains_key(key)) {
            return Err(StoreError::FileAlreadyExists);
        }
        let mut md5s = Md5::new();
        let (mut crc, mut size) = (0u64, 0u64);
        for p in &chosen {
            let bytes: Vec<u8> = (0..p.etag.len() / 2)
                .filter_map(|i| u8::from_str_radix(p.etag.get(2 * i..2 * i + 2)?, 16).ok())
                .collect();
            md5s.update(&bytes);
            crc = crate::crc64::combine(crc, p.crc64, p.size);
            size += p.size;
        }
        let udir = self.upload_dir(upload_id);
        let vdir = self.bucket_dir(bucket).join("data").join(&version);
        crate::util::create_private_dir_all(&vdir)?;
        let mut segments = Vec::with_capacity(chosen.len());
        for p in &chosen {
            let name = p.number.to_string();
            fs::rename(udir.join(&p.file), vdir.join(&name))?;
            segments.push(Segment { file: name, size: p.size });
        }
        let meta = ObjectMeta {
            key: key.to_string(),
            size,
            etag: format!("{}-{}", hex_upper(&md5s.finalize()), chosen.len()),
            crc64: crc,
            content_md5: None,
            last_modified: now,
            content_type: info.content_type,
            headers: info.headers,
            multipart: true,
            storage_class: info.storage_class,
            version,
            segments,
        };
        self.commit_object(&mut st, bucket, meta.clone())?;
        st.uploads.remove(upload_id);
        drop(st);
        remove_dir_quietly(&udir);
        Ok(meta)
    }

    pub fn abort_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<(), StoreError> {
        let mut st = self.lock();
        if !st.buckets.contains_key(bucket) {
            return Err(StoreError::NoSuchBucket);
        }
        Self::upload_mut(&mut st, upload_id, bucket, key)?;
        let dir = self.upload_dir(upload_id);
        fs::remove_file(dir.join("upload.json"))?;
        st.uploads.remove(upload_id);
        drop(st);
        remove_dir_quietly(&dir);
        Ok(())
    }

    pub fn list_uploads(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: &str,
        key_marker: &str,
        upload_id_marker: &str,
        max: usize,
    ) -> Result<UploadListing, StoreError> {
        let st = self.lock();
        if !st.buckets.contains_key(bucket) {
            return Err(StoreError::NoSuchBucket);
        }
        let mut all: Vec<&UploadInfo> = st
            .uploads
            .values()
            .map(|u| &u.info)
            .filter(|u| u.bucket == bucket && u.key.starts_with(prefix))
            .filter(|u| {
                u.key.as_str() > key_marker
                    || (!upload_id_marker.is_empty() && u.key == key_marker && u.upload_id.as_str() > upload_id_marker)
            })
            .collect();
        all.sort_by(|a, b| (&a.key, &a.upload_id).cmp(&(&b.key, &b.upload_id)));
        let mut out = UploadListing::default();
        for u in all {
            let rolled = if delimiter.is_empty() {
                None
            } else {
                u.key[prefix.len()..].find(delimiter).map(|i| u.key[..prefix.len() + i + delimiter.len()].to_string())
            };
            if let Some(cp) = &rolled {
                // A page that ended on this common prefix (the key marker) must not return it again: paging
                // with a delimiter would otherwise never end.
                if out.prefixes.last() == Some(cp) || (!key_marker.is_empty() && key_marker.starts_with(cp.as_str())) {
                    continue;
                }
            }
            if out.uploads.len() + out.prefixes.len() >= max {
                out.truncated = true;
                break;
            }
            match rolled {
                Some(cp) => {
                    out.next_key_marker = cp.clone();
                    out.next_upload_id_marker.clear();
                    out.prefixes.push(cp);
                }
                None => {
                    out.next_key_marker = u.key.clone();
                    out.next_upload_id_marker = u.upload_id.clone();
                    out.uploads.push(u.clone());
                }
            }
        }
        Ok(out)
    }
}

/// An object's bytes: its segment files in order, readable and seekable as one stream.
pub struct ObjectData {
    pub meta: ObjectMeta,
    files: Vec<(fs::File, u64)>,
    pos: u64,
}

impl ObjectData {
    /// The open segment files and their sizes, in order.
    pub fn into_files(self) -> (ObjectMeta, Vec<(fs::File, u64)>) {
        (self.meta, self.files)
    }
}

impl Read for ObjectData {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut start = 0u64;
        for (file, size) in &mut self.files {
            if self.pos < start + *size {
                let within = self.pos - start;
                file.seek(SeekFrom::Start(within))?;
                let want = buf.len().min((*size - within) as usize);
                let n = file.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "object file shorter than recorded"));
                }
                self.pos += n as u64;
                return Ok(n);
            }
            start += *size;
        }
        Ok(0)
    }
}

impl Seek for ObjectData {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let size = self.meta.size as i128;
        let target = match to {
            SeekFrom::Start(n) => n as i128,
            SeekFrom::End(d) => size + d as i128,
            SeekFrom::Current(d) => self.pos as i128 + d as i128,
        };
        if target < 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"));
        }
        self.pos = target as u64;
        Ok(self.pos)
    }
}
