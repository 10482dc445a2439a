use super::OpenArgs;
use crate::output::{control_with_progress, print_error};
use imgport_disk::{open, write_image, Error, ErrorKind, FileSink, Format, WriteOptions};
use std::path::{Path, PathBuf};

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
pub(crate) struct Conversion {
    pub(crate) input: String,
    pub(crate) output: String,
    pub(crate) input_format: Format,
    pub(crate) output_format: Format,
    pub(crate) virtual_size: u64,
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
    if args.output.to_str().is_some_and(super::upload::is_store_url) {
        return super::convert_upload::run(&args);
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
pub(crate) fn write_options(args: &Args) -> Result<WriteOptions, Error> {
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
    if !args.force && args.output.exists() {
        return Err(Error::invalid_argument("output exists (use --force to overwrite)").in_file(&args.output));
    }
    if same_file(&args.input, &args.output) {
        return Err(Error::invalid_argument("output is the input image").in_file(&args.output));
    }
    let src = open(&args.input, &args.open.options())?;
    // Signals are watched before the temporary output exists, so no signal can leave it behind.
    let (ctl, bar) = control_with_progress(src.virtual_size(), !args.json);
    let dir = match args.output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = args.output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // Written under a temporary name in the same folder and renamed at the end, so an error or Ctrl-C
    // never leaves a half-written image under the final name (the temporary file is removed on drop).
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".imgport-tmp")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(&dir)
        .map_err(|e| Error::io("cannot create output", e).in_file(&args.output))?;
    let file = tmp.as_file().try_clone().map_err(|e| Error::io("cannot create output", e).in_file(&args.output))?;
    let mut sink = FileSink::new(file, args.output.clone());
    let result = write_image(src.as_ref(), &opts, &mut sink, &ctl);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    result?;
    let persisted = if args.force { tmp.persist(&args.output) } else { tmp.persist_noclobber(&args.output) };
    persisted.map_err(|e| Error::io("cannot rename output into place", e.error).in_file(&args.output))?;
    Ok(Summary {
        conversion: Conversion {
            input: args.input.display().to_string(),
            output: args.output.display().to_string(),
            input_format: src.details().format,
            output_format: args.output_format,
            virtual_size: src.virtual_size(),
        },
        bytes_read: imgport_disk::file::bytes_read(),
        bytes_written: sink.bytes_written(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
