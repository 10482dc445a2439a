//! Command-line conventions: shell completions, manual pages, `--version`, the global `-q`/`-v` flags, the log
//! filter's environment variables and `NO_COLOR`.

use std::path::Path;
use std::process::{Command, Output};

/// The binary with a clean environment for what these tests look at: no log filter, no colour forcing.
fn imgport() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgport"));
    for var in ["IMGPORT_LOG", "RUST_LOG", "NO_COLOR", "CLICOLOR", "CLICOLOR_FORCE"] {
        cmd.env_remove(var);
    }
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run imgport")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `imgport ARGS` and returns its stdout, failing the test unless it exits 0.
fn imgport_ok(args: &[&str]) -> String {
    let o = run(imgport().args(args));
    assert!(o.status.success(), "imgport {args:?} failed: {}", stderr(&o));
    stdout(&o)
}

/// The subcommands `imgport --help` lists (help excluded), so the tests follow new commands without edits.
fn subcommands() -> Vec<String> {
    let help = imgport_ok(&["--help"]);
    let listing = help.split("Commands:").nth(1).expect("a Commands: section").split("\n\n").next().unwrap_or("");
    let names: Vec<String> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help" && n.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        .map(str::to_string)
        .collect();
    for expected in ["info", "convert", "validate", "upload", "completions", "man"] {
        assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
    }
    names
}

#[test]
fn bash_completion_names_every_subcommand() {
    let script = imgport_ok(&["completions", "bash"]);
    assert!(script.contains("complete -F"), "{script}");
    for sub in subcommands() {
        assert!(script.contains(&sub), "bash completion does not mention {sub}");
    }
}

#[test]
fn zsh_fish_elvish_and_powershell_completions_generate() {
    assert!(imgport_ok(&["completions", "zsh"]).starts_with("#compdef imgport"));
    assert!(imgport_ok(&["completions", "fish"]).contains("complete -c imgport"));
    assert!(imgport_ok(&["completions", "elvish"]).contains("imgport"));
    assert!(imgport_ok(&["completions", "powershell"]).contains("imgport"));
    let o = run(imgport().args(["completions", "tcsh"]));
    assert_eq!(o.status.code(), Some(2), "an unknown shell is a usage error");
}

#[test]
fn man_page_is_roff_naming_every_subcommand() {
    let page = imgport_ok(&["man"]);
    assert!(page.lines().any(|l| l.starts_with(".TH imgport 1")), "{page}");
    assert!(page.contains(".SH SUBCOMMANDS"), "{page}");
    for sub in subcommands() {
        assert!(page.contains(&sub), "the manual page does not mention {sub}");
    }
}

#[test]
fn man_out_writes_one_page_per_command() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("man1");
    let o = run(imgport().args(["man", "--out"]).arg(&out));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("manual pages written"), "{}", stderr(&o));
    let page = |name: &str| std::fs::read_to_string(out.join(name)).unwrap_or_default();
    assert!(page("imgport.1").contains(".TH imgport 1"), "no imgport.1 in {}", out.display());
    for sub in subcommands() {
        let p = page(&format!("imgport-{sub}.1"));
        assert!(p.contains(".TH imgport-"), "no page for {sub} in {}", out.display());
    }
    assert!(page("imgport-auth-whoami.1").contains(".TH"), "nested commands get their own page");

    // -q leaves out the informational line, not the pages.
    let quiet_out = dir.path().join("quiet");
    let o = run(imgport().args(["-q", "man", "--out"]).arg(&quiet_out));
    assert!(o.status.success());
    assert_eq!(stderr(&o), "");
    assert!(quiet_out.join("imgport.1").exists());
}

/// The revision git reports for this checkout, when the tests run in one.
fn checkout_revision() -> Option<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let git = |args: &[&str]| {
        let o = Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
        o.status.success().then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let top = git(&["rev-parse", "--show-toplevel"])?;
    if Path::new(&top).canonicalize().ok()? != dir.canonicalize().ok()? {
        return None;
    }
    git(&["rev-parse", "--short=12", "HEAD"])
}

#[test]
fn version_names_the_git_revision_in_a_checkout() {
    let line = imgport_ok(&["--version"]);
    let line = line.trim_end();
    let bare = format!("imgport {}", env!("CARGO_PKG_VERSION"));
    match checkout_revision() {
        // The work tree may have been changed since the build: `-dirty` is not asserted either way.
        Some(rev) => assert!(line.starts_with(&format!("{bare} ({rev}")) && line.ends_with(')'), "{line}"),
        None => assert_eq!(line, bare),
    }
}

#[test]
fn every_command_accepts_quiet_and_verbose() {
    for sub in subcommands() {
        for flags in [["-q", "--help"], ["-vv", "--help"]] {
            let o = run(imgport().arg(&sub).args(flags));
            assert!(o.status.success(), "imgport {sub} {flags:?}: {}", stderr(&o));
            let help = stdout(&o);
            assert!(help.contains("--quiet") && help.contains("--verbose"), "imgport {sub} --help: {help}");
        }
    }
    let o = run(imgport().args(["-q", "-v", "completions", "bash"]));
    assert_eq!(o.status.code(), Some(2), "-q and -v together are a usage error");
    assert!(stderr(&o).contains("cannot be used with"), "{}", stderr(&o));
}

#[test]
fn log_events_follow_verbosity_and_the_environment() {
    let start = "imgport starting";
    let quiet_by_default = run(imgport().args(["completions", "bash"]));
    assert_eq!(stderr(&quiet_by_default), "", "warnings only by default");
    assert!(stderr(&run(imgport().args(["-vv", "completions", "bash"]))).contains(start));
    assert!(!stderr(&run(imgport().args(["-v", "completions", "bash"]))).contains(start), "-v is info, not debug");
    assert!(stderr(&run(imgport().env("IMGPORT_LOG", "debug").args(["completions", "bash"]))).contains(start));
    assert!(stderr(&run(imgport().env("RUST_LOG", "imgport=debug").args(["completions", "bash"]))).contains(start));
    // IMGPORT_LOG wins over RUST_LOG.
    let both = run(imgport().env("IMGPORT_LOG", "warn").env("RUST_LOG", "debug").args(["completions", "bash"]));
    assert_eq!(stderr(&both), "");

    let bad = run(imgport().env("IMGPORT_LOG", "imgport=loud").args(["completions", "bash"]));
    assert!(bad.status.success(), "a bad filter does not stop the command");
    assert!(stderr(&bad).contains("ignoring IMGPORT_LOG"), "{}", stderr(&bad));
    // Log lines never reach stdout, where results go.
    let o = run(imgport().args(["-vvv", "completions", "zsh"]));
    assert!(stdout(&o).starts_with("#compdef imgport"));
}

#[test]
fn no_color_turns_colour_off() {
    let esc = |o: &Output| stdout(o).contains('\u{1b}');
    assert!(esc(&run(imgport().env("CLICOLOR_FORCE", "1").arg("--help"))), "forced colour is coloured");
    assert!(!esc(&run(imgport().env("CLICOLOR_FORCE", "1").env("NO_COLOR", "1").arg("--help"))));
    // An empty NO_COLOR does not count (no-color.org).
    assert!(esc(&run(imgport().env("CLICOLOR_FORCE", "1").env("NO_COLOR", "").arg("--help"))));
    assert!(!esc(&run(imgport().arg("--help"))), "no colour when stdout is not a terminal");
}
