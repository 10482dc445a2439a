//! One module per subcommand.

pub mod auth;
pub mod check;
pub mod cloud;
pub mod compare;
pub mod completions;
pub mod convert;
pub mod digest;
pub mod emulator;
pub mod images;
pub mod import;
pub mod info;
pub mod inspect;
pub mod man;
pub mod map;
pub mod pipeline;
pub mod upload;
pub mod validate;

use clap::Args as ClapArgs;
use imgport_disk::{ExtentFiles, Format, OpenOptions};

/// How to open input images; shared by every command that reads one.
#[derive(ClapArgs, Debug, Clone)]
pub struct OpenArgs {
    /// Input format (raw, qcow2, vhd, vhdx, vmdk); detected from content when omitted.
    #[arg(short = 'f', long = "format", value_parser = parse_format)]
    pub format: Option<Format>,
    /// Follow qcow2 backing files (refused by default: they name arbitrary host paths).
    #[arg(long)]
    pub follow_backing: bool,
    /// Proceed past bad VHD/VHDX checksums instead of refusing the image.
    #[arg(long)]
    pub ignore_checksums: bool,
    /// Let a VMDK descriptor name extent files outside its own folder (refused by default: a descriptor could
    /// otherwise read any host file into the image).
    #[arg(long)]
    pub allow_external_extents: bool,
}

impl OpenArgs {
    pub fn options(&self) -> OpenOptions {
        OpenOptions {
            format: self.format,
            follow_backing: self.follow_backing,
            ignore_checksums: self.ignore_checksums,
            extent_files: if self.allow_external_extents { ExtentFiles::Anywhere } else { ExtentFiles::InFolder },
            ..OpenOptions::default()
        }
    }
}

/// Open the data disks given with `--data-disk`, their formats detected from content (`--format` names the system
/// disk's), with the system disk's other open options. An error names the file.
pub fn open_data_disks(
    paths: &[std::path::PathBuf],
    open: &OpenArgs,
) -> imgport_disk::Result<Vec<std::sync::Arc<dyn imgport_disk::DiskImage>>> {
    if paths.len() > imgport_guest::inspect::MAX_DATA_DISKS {
        return Err(imgport_disk::Error::unsupported(format!(
            "{} data disks given; at most {} can be read with the system disk",
            paths.len(),
            imgport_guest::inspect::MAX_DATA_DISKS
        )));
    }
    let options = OpenOptions { format: None, ..open.options() };
    paths.iter().map(|p| imgport_disk::open(p, &options).map(std::sync::Arc::from).map_err(|e| e.in_file(p))).collect()
}

pub fn parse_format(s: &str) -> Result<Format, String> {
    s.parse().map_err(|e: imgport_disk::Error| e.to_string())
}
