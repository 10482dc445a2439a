//! `imgport convert ... IN oss://BUCKET/KEY` (or s3://): the output is uploaded part by part as the writer
//! produces it, with no temporary file. An interrupted run resumes by writing the output again (the same bytes:
//! timestamps and identifiers come from a stamp derived from the source's identity and the options) and
//! sending only the parts the store does not hold.

use super::convert::{write_options, Args};
use super::upload::{summary_line, Prepared};
use crate::output::print_json;
use imgport_disk::write::output_len_bound;
use imgport_disk::{open, write_image, Control, DiskImage, Error, ErrorKind, Sink, Stamp, WriteOptions};
use imgport_storage::state::{source_id, SourceId};
use imgport_storage::stream::{upload_stream, StreamParams, StreamWriter};
use imgport_storage::upload::{Progress, ProgressFn, Summary as UploadSummary, UploadError};
use indicatif::HumanBytes;
use std::sync::Arc;

/// The disk engine's `Sink` onto the stream uploader. The bridge lives in the binary so that neither crate
/// depends on the other: imgport-storage knows nothing of disk formats, imgport-disk nothing of the network.
struct UploadSink<'a>(&'a mut StreamWriter);

fn sink_err(e: UploadError) -> Error {
    match e {
        UploadError::Config(m) => Error::invalid_argument(m),
        e => Error::new(ErrorKind::Io, e.to_string()),
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

/// What `convert --json` prints for a store: the conversion's facts and the upload's summary (the same fields
/// as `upload --json`).
#[derive(serde::Serialize)]
struct Summary {
    #[serde(flatten)]
    conversion: super::convert::Conversion,
    #[serde(flatten)]
    upload: UploadSummary,
}

/// Everything that decides the output's bytes besides the named source file: the options and the identities of
/// the other files the image is read from (extent files, the backing chain). Kept in the resume state, so a rerun
/// with other options, or after one of those files changed, starts over instead of mixing parts of two images.
fn stream_params(args: &Args, opts: &WriteOptions, other_files: &[SourceId]) -> String {
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
        args.open.format,
        args.open.follow_backing,
        args.open.ignore_checksums
    )
}

/// The creation time is the source's modification time and the identifiers a hash of the source's identity and
/// the options: the same on every run over the unchanged source.
fn stamp(id: &SourceId, params: &str) -> Stamp {
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
fn other_file_ids(src: &dyn DiskImage) -> Result<Vec<SourceId>, String> {
    let mut ids = Vec::new();
    for path in src.extra_files().into_iter().chain(src.backing_files()) {
        let path = std::fs::canonicalize(&path).unwrap_or(path);
        let name = path.display().to_string();
        let id = std::fs::File::open(&path).and_then(|mut f| source_id(&name, &mut f));
        ids.push(id.map_err(|e| format!("{name}: {e}"))?);
    }
    Ok(ids)
}

pub fn run(args: &Args) -> u8 {
    match stream(args) {
        Ok(s) => {
            if args.json {
                print_json(&s);
            } else {
                outln!(
                    "{} ({} of {})",
                    summary_line(&s.upload, &s.conversion.output),
                    s.conversion.output_format,
                    s.conversion.input
                );
            }
            0
        }
        Err(Stopped::Signal(sig)) => {
            super::upload::interrupted(sig, &args.output.to_string_lossy(), &args.upload.store)
        }
        Err(Stopped::Upload(e)) => super::upload::failed(&e, &args.output.to_string_lossy(), &args.upload.store),
        Err(Stopped::Other(e)) => {
            eprintln!("imgport: error: {e}");
            1
        }
    }
}

/// Why a streamed convert did not finish.
enum Stopped {
    /// SIGINT, SIGTERM or SIGHUP: the parts stored so far stay for a rerun.
    Signal(libc::c_int),
    Upload(UploadError),
    Other(String),
}

impl From<String> for Stopped {
    fn from(m: String) -> Self {
        Stopped::Other(m)
    }
}

fn stream(args: &Args) -> Result<Summary, Stopped> {
    let dest = args.output.to_string_lossy().into_owned();
    let mut opts = write_options(args).map_err(|e| e.to_string())?;
    let src = open(&args.input, &args.open.options()).map_err(|e| e.to_string())?;
    let (virtual_size, input_format) = (src.virtual_size(), src.details().format);
    let prepared = Prepared::new(&dest, &args.upload, &args.input)?;
    let other_files = other_file_ids(src.as_ref())?;
    let params =
        StreamParams { params: stream_params(args, &opts, &other_files), len_bound: output_len_bound(virtual_size) };

    let mut ctl = Control::new();
    let bar = (!args.json && crate::output::progress_enabled()).then(|| {
        let bar = indicatif::ProgressBar::new(virtual_size);
        // The bar follows the source (the output's length is known only at its end); the message, the upload.
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} read {bytes_per_sec} ETA {eta} {msg}",
        ) {
            bar.set_style(style);
        }
        bar
    });
    if let Some(b) = bar.clone() {
        ctl = ctl.with_progress(move |pos| b.set_position(pos));
    }
    let cancel = ctl.cancel_flag();
    // The writer stops at its next chunk on a signal, even before the select below notices it.
    crate::signals::cancel_on_signal(cancel.clone());
    let stamp_params = params.params.clone();
    let produce = move |id: &SourceId, w: &mut StreamWriter| {
        opts.stamp = Some(stamp(id, &stamp_params));
        write_image(src.as_ref(), &opts, &mut UploadSink(w), &ctl)
    };
    let upload_progress = bar.clone().map(|b| -> ProgressFn {
        Arc::new(move |p: Progress| {
            b.set_message(format!("{} uploaded, {} in flight", HumanBytes(p.done), p.in_flight))
        })
    });
    let (store, fix_clock) = (prepared.store(), prepared.fix_clock());
    let result = prepared.rt.block_on(async {
        tokio::select! {
            r = upload_stream(store, Some(fix_clock), &prepared.opts, &params, upload_progress, produce) => Ok(r),
            sig = crate::signals::wait() => Err(sig),
        }
    });
    // Interrupted: the writer stops at its next chunk; the parts stored so far stay for a rerun.
    cancel.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    prepared.rt.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Err(sig) => Err(Stopped::Signal(sig)),
        Ok(Err(e)) => Err(Stopped::Upload(e)),
        Ok(Ok(upload)) => Ok(Summary {
            conversion: super::convert::Conversion {
                input: args.input.display().to_string(),
                output: dest,
                input_format,
                output_format: args.output_format,
                virtual_size,
            },
            upload,
        }),
    }
}
