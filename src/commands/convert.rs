//! `imgport convert`: to a file (written under a temporary name, renamed at the end), or streamed to a store
//! (`oss://BUCKET/KEY`, `s3://BUCKET/KEY`) part by part as it is written, resumable; both by imgport-pipeline.

use super::upload::{print_events, summary_line, Prepared};
use super::OpenArgs;
use crate::output::{control_with_progress, print_error, print_json};
use imgport_disk::{open, Control, Error, ErrorKind, Format, WriteOptions};
use imgport_pipeline::convert_file;
use imgport_pipeline::convert_upload::ConvertUpload;
use imgport_storage::upload::{Summary as UploadSummary, UploadError};
use indicatif::HumanBytes;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub(crate) open: OpenArgs,
    /// Output format: raw, qcow2, vhd, vhdx, vmdk.
    #[arg(short = 'O', long = "output-format", value_parser = super::parse_format)]
    pub(crate) output_format: Format,
    /// Output options, comma separated: subformat=fixed|dynamic|streamOptimized, cluster_size=64k,
    /// block_size=2M, compression_type=zstd|zlib.
    #[arg(short = 'o', long = "options", value_delimiter = ',')]
    pub(crate) options: Vec<String>,
    /// Compress qcow2 output clusters.
    #[arg(long, value_parser = ["zstd", "zlib"])]
    pub(crate) compress: Option<String>,
    /// Overwrite OUT if it exists.
    #[arg(long)]
    force: bool,
    /// Accepted for qemu-img compatibility: the progress bar is shown whenever stderr is a terminal.
    #[arg(short = 'p', long = "progress")]
    _progress: bool,
    /// Print a summary as JSON: sizes, bytes read and written, seconds (to a store: the upload's summary too).
    #[arg(long)]
    pub(crate) json: bool,
    /// Upload options, for an OUTPUT of oss://BUCKET/KEY or s3://BUCKET/KEY (streamed: no temporary file).
    #[command(flatten)]
    pub(crate) upload: super::upload::UploadArgs,
    pub(crate) input: PathBuf,
    /// A file, or oss://BUCKET/KEY or s3://BUCKET/KEY to upload the output as it is written.
    pub(crate) output: PathBuf,
}

/// What every `convert --json` reports of the conversion, to a file or to a store.
#[derive(serde::Serialize)]
struct Conversion {
    input: String,
    output: String,
    input_format: Format,
    output_format: Format,
    virtual_size: u64,
}

/// What `convert --json` prints for a local output.
#[derive(serde::Serialize)]
struct Summary {
    #[serde(flatten)]
    conversion: Conversion,
    /// Bytes read from the input file(s), metadata included.
    bytes_read: u64,
    /// Bytes written to the output (holes left unwritten are not counted).
    bytes_written: u64,
    seconds: f64,
}

pub fn run(args: Args) -> u8 {
    if args.output.to_str().is_some_and(imgport_storage::is_store_url) {
        return run_to_store(&args);
    }
    match convert(&args) {
        Ok(summary) => {
            if args.json {
                crate::output::print_json(&summary);
            }
            0
        }
        Err(e) => {
            print_error(&e);
            if e.kind() == ErrorKind::Interrupted {
                crate::signals::exit_code()
            } else {
                1
            }
        }
    }
}

/// The output options `-O`, `-o` and `--compress` ask for.
fn write_options(args: &Args) -> Result<WriteOptions, Error> {
    let mut opts = WriteOptions::new(args.output_format);
    for kv in &args.options {
        let (k, v) =
            kv.split_once('=').ok_or_else(|| Error::invalid_argument(format!("option '{kv}' is not key=value")))?;
        opts.set(k.trim(), v.trim())?;
    }
    if let Some(c) = &args.compress {
        opts.compression = Some(c.parse()?);
    }
    Ok(opts)
}

fn convert(args: &Args) -> Result<Summary, Error> {
    let started = std::time::Instant::now();
    let opts = write_options(args)?;
    convert_file::check_output(&args.input, &args.output, args.force)?;
    let src = open(&args.input, &args.open.options())?;
    // Signals are watched before the temporary output exists, so no signal can leave it behind.
    let (ctl, bar) = control_with_progress(src.virtual_size(), !args.json);
    let result = convert_file::convert_to_file(src.as_ref(), &opts, &args.output, args.force, &ctl);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let bytes_written = result?;
    Ok(Summary {
        conversion: Conversion {
            input: args.input.display().to_string(),
            output: args.output.display().to_string(),
            input_format: src.details().format,
            output_format: args.output_format,
            virtual_size: src.virtual_size(),
        },
        bytes_read: imgport_disk::file::bytes_read(),
        bytes_written,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// What `convert --json` prints for a store: the conversion's facts and the upload's summary (the same fields
/// as `upload --json`).
#[derive(serde::Serialize)]
struct StoreSummary {
    #[serde(flatten)]
    conversion: Conversion,
    #[serde(flatten)]
    upload: UploadSummary,
}

fn run_to_store(args: &Args) -> u8 {
    let dest = args.output.to_string_lossy();
    match to_store(args) {
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
        Err(Stopped::Signal(sig)) => super::upload::interrupted(sig, &dest, &args.upload.store),
        Err(Stopped::Upload(e)) => super::upload::failed(&e, &dest, &args.upload.store),
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

fn to_store(args: &Args) -> Result<StoreSummary, Stopped> {
    let dest = args.output.to_string_lossy().into_owned();
    let opts = write_options(args).map_err(|e| e.to_string())?;
    let src = open(&args.input, &args.open.options()).map_err(|e| e.to_string())?;
    let (virtual_size, input_format) = (src.virtual_size(), src.details().format);
    let prepared = Prepared::new(&dest, &args.upload, &args.input, true)?;
    let job = ConvertUpload::new(src, &args.open.options(), opts).map_err(|e| e.to_string())?;

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
    let events = print_events(bar.clone(), |b, p| {
        b.set_message(format!("{} uploaded, {} in flight", HumanBytes(p.done), p.in_flight))
    });
    let store = prepared.store();
    let result = prepared.rt.block_on(async {
        tokio::select! {
            r = job.run(store, &prepared.opts, ctl, Some(events)) => Ok(r),
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
        Ok(Ok(upload)) => Ok(StoreSummary {
            conversion: Conversion {
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
