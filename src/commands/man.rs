//! `imgport man [--out DIR]`: manual pages in roff, generated from the command-line definition.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Write one page per command into DIR (imgport.1, imgport-convert.1, imgport-auth-whoami.1, ...) instead
    /// of imgport.1 to stdout.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

pub fn run(args: Args, cli: clap::Command) -> u8 {
    let Some(dir) = args.out else {
        let mut page = Vec::new();
        if let Err(e) = clap_mangen::Man::new(cli).render(&mut page) {
            eprintln!("imgport: error: cannot render the manual page: {e}");
            return 1;
        }
        crate::output::write_stdout(&page);
        return 0;
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("imgport: error: cannot create {}: {e}", dir.display());
        return 1;
    }
    match clap_mangen::generate_to(cli, &dir) {
        Ok(()) => {
            note!("imgport: manual pages written to {}", dir.display());
            0
        }
        Err(e) => {
            eprintln!("imgport: error: cannot write the manual pages into {}: {e}", dir.display());
            1
        }
    }
}
