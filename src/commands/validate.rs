use super::OpenArgs;
use crate::output::{human_size, print_error, print_json};
use anstyle::{AnsiColor, Style};
use imgport_disk::{open, DiskImage};
use imgport_validate::{Finding, Options, Report, Severity, Status, Target};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    open: OpenArgs,
    /// The cloud to validate for.
    #[arg(long, default_value = "alibaba", value_parser = parse_target)]
    target: Target,
    /// Print JSON (stable field names).
    #[arg(long)]
    json: bool,
    /// Warnings count as failures for the exit status.
    #[arg(long)]
    strict: bool,
    // -v (global, src/main.rs) also lists the checks that passed, and the evidence of each finding.
    image: PathBuf,
    /// A data disk of the same VM (repeat for several): read with the system disk, so a volume group spanning
    /// disks is read whole. They become /dev/sdb, /dev/sdc, ... in the order given.
    #[arg(long = "data-disk", value_name = "IMAGE")]
    data_disks: Vec<PathBuf>,
}

fn parse_target(s: &str) -> Result<Target, String> {
    s.parse()
}

#[derive(Serialize)]
struct JsonOut<'a> {
    image: String,
    #[serde(flatten)]
    report: &'a Report,
    /// The exit status this run returns (depends on --strict).
    exit_code: u8,
}

pub fn run(args: Args) -> u8 {
    let options = Options { target: args.target, file_size: std::fs::metadata(&args.image).ok().map(|m| m.len()) };
    let data = match super::open_data_disks(&args.data_disks, &args.open) {
        Ok(d) => d,
        Err(e) => {
            print_error(&e);
            return 2;
        }
    };
    // Inspection reads the guest; validation judges what it found, with the container's details.
    let report = open(&args.image, &args.open.options()).and_then(|img| {
        let image: Arc<dyn DiskImage> = Arc::from(img);
        let details = image.details();
        let inspection = imgport_guest::inspect_disks(image, &data, &Default::default())?;
        Ok(imgport_validate::validate_inspection(&inspection, &details, &options))
    });
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            print_error(&e.in_file(&args.image));
            return 2;
        }
    };
    let code = report.exit_code(args.strict);
    if args.json {
        print_json(&JsonOut { image: args.image.display().to_string(), report: &report, exit_code: code });
    } else {
        print_human(&args, &report, code);
    }
    code
}

const ERROR: Style = AnsiColor::Red.on_default().bold();
const WARNING: Style = AnsiColor::Yellow.on_default().bold();
const NOTE: Style = AnsiColor::Cyan.on_default();
const SKIPPED: Style = AnsiColor::Blue.on_default();
const PASS: Style = AnsiColor::Green.on_default();
const BOLD: Style = Style::new().bold();

fn label(f: &Finding) -> (&'static str, Style) {
    match (f.status, f.severity) {
        (Status::Fail, Severity::Error) => ("error", ERROR),
        (Status::Fail, Severity::Warning) => ("warning", WARNING),
        (Status::Fail, Severity::Info) => ("note", NOTE),
        (Status::NotChecked, _) => ("unchecked", SKIPPED),
        (Status::Pass, _) => ("pass", PASS),
    }
}

fn evidence(f: &Finding) -> String {
    let e = &f.evidence;
    let mut parts = Vec::new();
    if let Some(p) = &e.path {
        parts.push(p.clone());
    }
    if let Some(o) = e.offset {
        parts.push(format!("@{o:#x}"));
    }
    if let Some(v) = &e.value {
        parts.push(format!("= {v}"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" [{}]", parts.join(" "))
    }
}

fn print_human(args: &Args, r: &Report, code: u8) {
    let profile = r.target.profile();
    let format = match &r.subformat {
        Some(sf) => format!("{} {sf}", r.format),
        None => r.format.to_string(),
    };
    outln!(
        "{BOLD}{}{BOLD:#}: {format}, {} virtual, validated for {} ({})",
        args.image.display(),
        human_size(r.virtual_size),
        r.target,
        profile.service
    );
    // Most severe first; passes only when asked.
    let order = [
        (Status::Fail, Some(Severity::Error)),
        (Status::Fail, Some(Severity::Warning)),
        (Status::Fail, Some(Severity::Info)),
        (Status::NotChecked, None),
        (Status::Pass, None),
    ];
    for (status, sev) in order {
        if status == Status::Pass && !crate::output::verbose() {
            continue;
        }
        for f in r.findings.iter().filter(|f| f.status == status && sev.is_none_or(|s| f.severity == s)) {
            let (name, style) = label(f);
            let fix = f.fix.as_ref().map(|x| format!(" -- fix: {x}")).unwrap_or_default();
            let ev = if crate::output::verbose() { evidence(f) } else { String::new() };
            outln!("{style}{name:<9}{style:#} {:<16} {}{ev}{fix}", f.id, f.message);
        }
    }
    let pairs: Vec<String> = r.parameters.pairs().into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    let what = match r.target {
        Target::Alibaba => "ImportImage",
        _ => "import parameters",
    };
    outln!("{what}: {}", pairs.join(" "));
    let s = &r.summary;
    let verdict = match (code, args.strict && s.warnings > 0 && s.errors == 0) {
        (0, _) => format!("{PASS}OK{PASS:#}"),
        (_, true) => format!("{ERROR}FAIL{ERROR:#} (--strict: warnings count)"),
        _ => format!("{ERROR}FAIL{ERROR:#}"),
    };
    let hidden = if crate::output::verbose() || s.passed == 0 { "" } else { " (-v lists them)" };
    outln!(
        "summary: {verdict} for {}: {} error(s), {} warning(s), {} note(s), {} not checked, {} passed{hidden}, {} read",
        r.target,
        s.errors,
        s.warnings,
        s.notes,
        s.not_checked,
        s.passed,
        human_size(r.bytes_read)
    );
}
