use super::OpenArgs;
use crate::output::{print_error, stdout_failed};
use imgport_disk::{open, Error, Extent, ExtentKind, Extents, Mapping};
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    open: OpenArgs,
    #[arg(long)]
    json: bool,
    image: PathBuf,
}

/// The map is printed as it is walked: an image may map to millions of extents (as many as it has clusters),
/// and holding them all would let a small file take gigabytes. An error part way ends the output there (exit 1).
pub fn run(args: Args) -> u8 {
    let img = match open(&args.image, &args.open.options()) {
        Ok(img) => img,
        Err(e) => {
            print_error(&e);
            return 1;
        }
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let extents = Extents::all(img.as_ref());
    let printed = if args.json { print_json(&mut out, extents) } else { print_table(&mut out, extents) };
    match printed.and_then(|()| out.flush().map_err(Printing::Stdout)) {
        Ok(()) => 0,
        Err(Printing::Stdout(e)) => stdout_failed(e),
        Err(Printing::Map(e)) => {
            // What was printed so far stays valid up to the failure; the error says where it stopped.
            let _ = out.flush();
            print_error(&e);
            1
        }
    }
}

enum Printing {
    Map(Error),
    Stdout(std::io::Error),
}

fn print_table(out: &mut impl Write, extents: Extents) -> Result<(), Printing> {
    writeln!(out, "{:<20}{:<20}{:<13}Mapped to", "Offset", "Length", "Kind").map_err(Printing::Stdout)?;
    for e in extents {
        let e = e.map_err(Printing::Map)?;
        let kind = match e.mapping {
            Mapping::Compressed => "compressed",
            Mapping::Data { .. } => "data",
            Mapping::Zero => "zero",
            Mapping::Unallocated => "unallocated",
        };
        let host = e.host_offset().map(|h| format!("{h:#x}")).unwrap_or_default();
        writeln!(out, "{:<20}{:<20}{:<13}{host}", format!("{:#x}", e.offset), format!("{:#x}", e.length), kind)
            .map_err(Printing::Stdout)?;
    }
    Ok(())
}

/// A JSON array of extents, laid out exactly as `serde_json::to_string_pretty` lays out the whole list (written
/// by hand: a huge map is printed an extent at a time, and this is the loop that runs millions of times).
fn print_json(out: &mut impl Write, extents: Extents) -> Result<(), Printing> {
    let mut first = true;
    for e in extents {
        let e: Extent = e.map_err(Printing::Map)?;
        let lead = if first { "[\n" } else { ",\n" };
        first = false;
        let kind = match e.kind() {
            ExtentKind::Data => "data",
            ExtentKind::Zero => "zero",
            ExtentKind::Unallocated => "unallocated",
        };
        write!(
            out,
            "{lead}  {{\n    \"offset\": {},\n    \"length\": {},\n    \"kind\": \"{kind}\"",
            e.offset, e.length
        )
        .map_err(Printing::Stdout)?;
        if let Some(h) = e.host_offset() {
            write!(out, ",\n    \"host_offset\": {h}").map_err(Printing::Stdout)?;
        }
        if e.is_compressed() {
            out.write_all(b",\n    \"compressed\": true").map_err(Printing::Stdout)?;
        }
        out.write_all(b"\n  }").map_err(Printing::Stdout)?;
    }
    out.write_all(if first { b"[]\n" } else { b"\n]\n" }).map_err(Printing::Stdout)?;
    Ok(())
}
