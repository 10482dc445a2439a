//! A conversion uploaded part by part as the writer produces it, with no temporary file. An interrupted run
//! resumes by writing the output again and sending only the parts the store does not hold, so the output must be
//! the same bytes every time: timestamps and identifiers come from a [`Stamp`] derived from the source's identity
//! and the options, and the options and the other files the image is read from are part of the resume state.
//!
//! [`ConvertUpload::with_copy`] also writes the output into a local file as it streams (one conversion feeding
//! both, `imgport import --keep-converted`). The tee sits before the stream writer, which is handed every byte and
//! only then skips the parts a resumed upload finds stored, so the file is whole on a resumed run too.

use imgport_disk::write::output_len_bound_for;
use imgport_disk::{write_image, Control, DiskImage, Error, ErrorKind, OpenOptions, Sink, Stamp, WriteOptions};
use imgport_storage::state::{source_id, SourceId};
use imgport_storage::stream::{upload_stream, StreamParams, StreamWriter};
use imgport_storage::upload::{Summary, UploadError, UploadOptions};
use imgport_storage::{EventFn, ObjectStore};
use std::sync::Arc;

/// The disk engine's `Sink` onto the stream uploader.
struct UploadSink<'a>(&'a mut StreamWriter);

fn sink_err(e: UploadError) -> Error {
    match e {
        UploadError::Config(m) => Error::invalid_argument(m),
        e => Error::new(ErrorKind::Io, e.to_string()),
    }
}

/// The upload, and a copy of every byte into a file when one is asked for.
struct TeeSink<'a> {
    upload: UploadSink<'a>,
    copy: Option<&'a mut dyn Sink>,
}

impl Sink for TeeSink<'_> {
    fn begin(&mut self, header_len: u64) -> imgport_disk::Result<()> {
        if let Some(c) = self.copy.as_mut() {
            c.begin(header_len)?;
        }
        self.upload.begin(header_len)
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> imgport_disk::Result<()> {
        if let Some(c) = self.copy.as_mut() {
            c.write_at(offset, data)?;
        }
        self.upload.write_at(offset, data)
    }
    /// The copy is completed (and with a `FileSink`, synced) before the upload's last parts are handed over.
    fn finish(&mut self, total_len: u64) -> imgport_disk::Result<()> {
        if let Some(c) = self.copy.as_mut() {
            c.finish(total_len)?;
        }
        self.upload.finish(total_len)
    }
}

impl Sink for UploadSink<'_> {
    fn begin(&mut self, header_len: u64) -> imgport_disk::Result<()> {
        self.0.begin(header_len).map_err(sink_err)
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> imgport_disk::Result<()> {
        self.0.write_at(offset, data).map_err(|e| sink_err(e).at(offset))
    }
    fn finish(&mut self, total_len: u64) -> imgport_disk::Result<()> {
        self.0.finish(total_len).map_err(sink_err)
    }
}

/// Everything that decides the output's bytes besides the named source file: the options and the identities of
/// the other files the image is read from (extent files, the backing chain). Kept in the resume state, so a rerun
/// with other options, or after one of those files changed, starts over instead of mixing parts of two images.
/// The text is stored: changing it makes every interrupted upload start over.
pub fn stream_params(open: &OpenOptions, opts: &WriteOptions, other_files: &[SourceId]) -> String {
    let mut files = String::new();
    for id in other_files {
        files.push_str(&format!(" file={}:{}:{}:{}:{:016x}", id.path, id.size, id.mtime_ns, id.inode, id.sample_crc64));
    }
    format!(
        "imgport-convert-v1 -O {} subformat={:?} compression={:?} cluster_size={:?} block_size={:?} -f {:?} \
         follow_backing={} ignore_checksums={}{files}",
        opts.format,
        opts.subformat,
        opts.compression,
        opts.cluster_size,
        opts.block_size,
        open.format,
        open.follow_backing,
        open.ignore_checksums
    )
}

/// The creation time is the source's modification time and the identifiers a hash of the source's identity and
/// the options: the same on every run over the unchanged source.
pub fn stamp(id: &SourceId, params: &str) -> Stamp {
    use sha2::Digest;
    let seed = sha2::Sha256::new()
        .chain_update(params.as_bytes())
        .chain_update(id.path.as_bytes())
        .chain_update(id.size.to_le_bytes())
        .chain_update(id.mtime_ns.to_le_bytes())
        .chain_update(id.inode.to_le_bytes())
        .chain_update(id.sample_crc64.to_le_bytes())
        .finalize();
    Stamp { unix_time: u64::try_from(id.mtime_ns / 1_000_000_000).unwrap_or(0), seed: seed.into() }
}

/// The identities of the files besides the named one that the image's bytes come from.
pub fn other_file_ids(src: &dyn DiskImage) -> Result<Vec<SourceId>, Error> {
    let mut ids = Vec::new();
    for path in src.extra_files().into_iter().chain(src.backing_files()) {
        let path = std::fs::canonicalize(&path).unwrap_or(path);
        let name = path.display().to_string();
        let id = std::fs::File::open(&path).and_then(|mut f| source_id(&name, &mut f));
        ids.push(id.map_err(|e| Error::io("cannot read the file's identity", e).in_file(&path))?);
    }
    Ok(ids)
}

/// An opened image, the output asked for, and what the resume state records of them.
pub struct ConvertUpload {
    source: Box<dyn DiskImage>,
    write: WriteOptions,
    params: StreamParams,
    copy: Option<Box<dyn Sink + Send>>,
}

impl ConvertUpload {
    /// `open` are the options `source` was opened with (they decide the bytes read, so they are part of the
    /// resume state); reads the identity of every file besides the named one the image is read from.
    pub fn new(source: Box<dyn DiskImage>, open: &OpenOptions, write: WriteOptions) -> Result<Self, Error> {
        let other_files = other_file_ids(source.as_ref())?;
        let params = StreamParams {
            params: stream_params(open, &write, &other_files),
            // From the data, not the virtual size: a huge sparse disk streams in parts sized for its data.
            len_bound: output_len_bound_for(source.as_ref(), &write)?,
        };
        Ok(ConvertUpload { source, write, params, copy: None })
    }

    /// Writes every byte of the output into `copy` too, as it is uploaded (the same bytes, one conversion). On a
    /// resumed upload the output is produced whole again, so `copy` gets all of it.
    pub fn with_copy(mut self, copy: Box<dyn Sink + Send>) -> Self {
        self.copy = Some(copy);
        self
    }

    /// Writes the output into a local file only (replacing none), the same bytes a streamed upload of
    /// `source` (the path the image was opened from) makes: for `--keep-converted` when the store already holds
    /// the object. Returns the bytes written.
    pub fn write_file(
        self,
        source: &std::path::Path,
        output: &std::path::Path,
        control: &Control,
    ) -> Result<u64, Error> {
        let ConvertUpload { source: img, mut write, params, .. } = self;
        let abs = std::fs::canonicalize(source).map_err(|e| Error::io("cannot open", e).in_file(source))?;
        let id = std::fs::File::open(&abs)
            .and_then(|mut f| source_id(&abs.to_string_lossy(), &mut f))
            .map_err(|e| Error::io("cannot read the file's identity", e).in_file(source))?;
        write.stamp = Some(stamp(&id, &params.params));
        crate::convert_file::convert_to_file(img.as_ref(), &write, output, false, control)
    }

    /// Converts and uploads to `opts.key`. `control` reports the writer's progress through the source and stops
    /// it when cancelled; `events`, the upload's. Dropping the future (Ctrl-C) leaves the parts stored so far for
    /// a rerun; set `control`'s cancel flag too, so the writer stops at its next chunk.
    pub async fn run(
        self,
        store: Arc<dyn ObjectStore>,
        opts: &UploadOptions,
        control: Control,
        events: Option<EventFn>,
    ) -> Result<Summary, UploadError> {
        let ConvertUpload { source, mut write, params, mut copy } = self;
        let stamp_params = params.params.clone();
        let produce = move |id: &SourceId, w: &mut StreamWriter| {
            write.stamp = Some(stamp(id, &stamp_params));
            let copy = copy.as_mut().map(|c| c.as_mut() as &mut dyn Sink);
            write_image(source.as_ref(), &write, &mut TeeSink { upload: UploadSink(w), copy }, &control)
        };
        upload_stream(store, opts, &params, events, produce).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imgport_disk::Format;

    fn id(path: &str, mtime_ns: i128) -> SourceId {
        SourceId { path: path.into(), size: 1 << 20, mtime_ns, inode: 7, sample_crc64: 0xabc }
    }

    #[test]
    fn params_name_every_option_and_file() {
        let open = OpenOptions { follow_backing: true, ..OpenOptions::default() };
        let mut write = WriteOptions::new(Format::Qcow2);
        write.cluster_size = Some(65536);
        let p = stream_params(&open, &write, &[id("/d/base.qcow2", 5)]);
        assert_eq!(
            p,
            "imgport-convert-v1 -O qcow2 subformat=None compression=None cluster_size=Some(65536) block_size=None \
             -f None follow_backing=true ignore_checksums=false file=/d/base.qcow2:1048576:5:7:0000000000000abc"
        );
    }

    #[test]
    fn stamps_follow_the_source_and_the_options() {
        let a = stamp(&id("/d/a.raw", 3_000_000_000), "x");
        assert_eq!(a, stamp(&id("/d/a.raw", 3_000_000_000), "x"));
        assert_eq!(a.unix_time, 3);
        assert_ne!(a.seed, stamp(&id("/d/a.raw", 3_000_000_000), "y").seed);
        assert_ne!(a.seed, stamp(&id("/d/a.raw", 4_000_000_000), "x").seed);
    }
}
