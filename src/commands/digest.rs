use super::OpenArgs;
use crate::output::{control_with_progress, print_error, print_json};
use imgport_disk::{digest, open, plain_sha256};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    open: OpenArgs,
    /// SHA-256 of the full virtual disk (equal to `qemu-img convert -O raw IMAGE - | sha256sum`).
    #[arg(long)]
    plain: bool,
    #[arg(long)]
    json: bool,
    image: PathBuf,
}

#[derive(serde::Serialize)]
struct Out {
    filename: String,
    algorithm: &'static str,
    digest: String,
    virtual_size: u64,
}

pub fn run(args: Args) -> u8 {
    let result = open(&args.image, &args.open.options()).and_then(|img| {
        let (ctl, _bar) = control_with_progress(img.virtual_size(), !args.json);
        let d = if args.plain { plain_sha256(img.as_ref(), &ctl) } else { digest(img.as_ref(), &ctl) }?;
        Ok((d, img.virtual_size()))
    });
    match result {
        Ok((d, virtual_size)) => {
            let algorithm = if args.plain { "sha256" } else { "imgport-digest-v1" };
            if args.json {
                print_json(&Out { filename: args.image.display().to_string(), algorithm, digest: d, virtual_size });
            } else {
                outln!("{algorithm}:{d}  {}", args.image.display());
            }
            0
        }
        Err(e) => {
            print_error(&e);
            1
        }
    }
}
