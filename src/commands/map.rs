use super::OpenArgs;
use crate::output::{print_error, print_json};
use imgport_disk::{open, ExtentKind};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    open: OpenArgs,
    #[arg(long)]
    json: bool,
    image: PathBuf,
}

pub fn run(args: Args) -> u8 {
    let map = open(&args.image, &args.open.options()).and_then(|img| img.map(0, img.virtual_size()));
    let map = match map {
        Ok(m) => m,
        Err(e) => {
            print_error(&e);
            return 1;
        }
    };
    if args.json {
        print_json(&map);
        return 0;
    }
    outln!("{:<20}{:<20}{:<13}Mapped to", "Offset", "Length", "Kind");
    for e in &map {
        let kind = match (e.kind, e.compressed) {
            (ExtentKind::Data, true) => "compressed",
            (ExtentKind::Data, false) => "data",
            (ExtentKind::Zero, _) => "zero",
            (ExtentKind::Unallocated, _) => "unallocated",
        };
        let host = e.host_offset.map(|h| format!("{h:#x}")).unwrap_or_default();
        outln!("{:<20}{:<20}{:<13}{host}", format!("{:#x}", e.offset), format!("{:#x}", e.length), kind);
    }
    0
}
