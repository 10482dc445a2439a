use super::OpenArgs;
use crate::output::{print_error, print_json};
use imgport_disk::{compare, open, Comparison, Control};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    open: OpenArgs,
    /// Format of the second image (detected when omitted).
    #[arg(short = 'F', long = "format-b", value_parser = super::parse_format)]
    format_b: Option<imgport_disk::Format>,
    /// Compare images of different virtual sizes: the longer one's tail must be zeros.
    #[arg(long)]
    allow_size_mismatch: bool,
    #[arg(long)]
    json: bool,
    a: PathBuf,
    b: PathBuf,
}

pub fn run(args: Args) -> u8 {
    let opts_a = args.open.options();
    let mut opts_b = opts_a.clone();
    opts_b.format = args.format_b;
    let result = open(&args.a, &opts_a).and_then(|a| {
        let b = open(&args.b, &opts_b)?;
        compare(a.as_ref(), b.as_ref(), args.allow_size_mismatch, &Control::new())
    });
    let outcome = match result {
        Ok(c) => c,
        Err(e) => {
            print_error(&e);
            return 2;
        }
    };
    if args.json {
        print_json(&outcome);
    } else {
        match &outcome {
            Comparison::Identical => outln!("Images are identical."),
            Comparison::Differ { offset } => outln!("Content mismatch at offset {offset}!"),
            Comparison::SizeMismatch { size_a, size_b } => {
                outln!("Image size mismatch: {size_a} != {size_b} bytes (use --allow-size-mismatch)")
            }
        }
    }
    match outcome {
        Comparison::Identical => 0,
        _ => 1,
    }
}
