use super::OpenArgs;
use crate::output::{human_size, print_error, print_json};
use imgport_disk::{open, FormatInfo, ImageInfo};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    open: OpenArgs,
    /// Print JSON (stable field names).
    #[arg(long)]
    json: bool,
    image: PathBuf,
}

pub fn run(args: Args) -> u8 {
    let info = open(&args.image, &args.open.options()).and_then(|img| ImageInfo::gather(&args.image, img.as_ref()));
    let info = match info {
        Ok(i) => i,
        Err(e) => {
            print_error(&e);
            return 1;
        }
    };
    if args.json {
        print_json(&info);
        return 0;
    }
    let d = &info.details;
    outln!("image: {}", info.filename);
    match &d.subformat {
        Some(sub) => outln!("file format: {} ({sub})", d.format),
        None => outln!("file format: {}", d.format),
    }
    outln!("virtual size: {} ({} bytes)", human_size(info.virtual_size), info.virtual_size);
    outln!("file size: {} ({} bytes)", human_size(info.file_size), info.file_size);
    outln!("disk size: {}", human_size(info.actual_size));
    outln!("allocated: {} ({} bytes)", human_size(info.allocated_bytes), info.allocated_bytes);
    if let Some(c) = d.cluster_size {
        outln!("cluster_size: {c}");
    }
    if let Some(b) = &d.backing_file {
        outln!("backing file: {b}");
    }
    // The format's own facts, printed as qemu-img prints them: each field name and its value.
    let specific = match &d.specific {
        Some(FormatInfo::Qcow2(i)) => serde_json::to_value(i),
        Some(FormatInfo::Vhd(i)) => serde_json::to_value(i),
        Some(FormatInfo::Vhdx(i)) => serde_json::to_value(i),
        Some(FormatInfo::Vmdk(i)) => serde_json::to_value(i),
        None => Ok(serde_json::Value::Null),
    };
    if let Ok(serde_json::Value::Object(map)) = specific {
        if !map.is_empty() {
            outln!("format specific information:");
        }
        for (k, v) in map {
            let v = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            outln!("    {k}: {v}");
        }
    }
    0
}
