use super::OpenArgs;
use crate::output::{print_error, print_json};
use imgport_disk::{open, CheckReport, ErrorKind, Finding};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    open: OpenArgs,
    #[arg(long)]
    json: bool,
    image: PathBuf,
}

#[derive(serde::Serialize)]
struct Report<'a> {
    filename: String,
    result: &'static str,
    #[serde(flatten)]
    report: &'a CheckReport,
}

pub fn run(args: Args) -> u8 {
    let report = open(&args.image, &args.open.options()).and_then(|img| img.check());
    let report = match report {
        Ok(r) => r,
        // An image too damaged to open is a corruption finding; anything else means the check could not run.
        Err(e) if e.kind() == ErrorKind::CorruptImage => CheckReport {
            corruptions: vec![Finding::new("image", e.offset(), e.to_string())],
            ..CheckReport::default()
        },
        Err(e) => {
            print_error(&e);
            return 1;
        }
    };
    let code = report.exit_code();
    let result = match code {
        0 => "clean",
        2 => "corrupt",
        _ => "leaks",
    };
    if args.json {
        print_json(&Report { filename: args.image.display().to_string(), result, report: &report });
        return code as u8;
    }
    for (label, list) in [("ERROR", &report.corruptions), ("Leaked", &report.leaks), ("Warning", &report.warnings)] {
        for f in list {
            match f.offset {
                Some(o) => outln!("{label}: {} at offset {o:#x}: {}", f.structure, f.message),
                None => outln!("{label}: {}: {}", f.structure, f.message),
            }
        }
    }
    match code {
        0 => outln!("No errors were found on the image."),
        2 => outln!("{} errors were found on the image.", report.corruptions.len()),
        _ => outln!("{} leaked clusters were found on the image.", report.leaks.len()),
    }
    code as u8
}
