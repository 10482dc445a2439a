//! A pipeline's build step (`source.command`): the command (an argv list, no shell) run in the pipeline file's
//! folder before the source is resolved, so that its output file, or the Packer manifest it writes, becomes the
//! source. Its output lines go to the caller as they come (the binary shows them), the last of them and the exit
//! status are kept for the run record. A stop asked for (a signal) ends the command: SIGTERM, then SIGKILL.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The output kept for the record: the last lines, at most this many bytes.
const KEEP_OUTPUT: usize = 16 << 10;
/// A line longer than this is cut (a build printing a binary blob must not grow memory).
const MAX_LINE: usize = 8 << 10;
/// How long a command asked to stop (SIGTERM) has before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long the output may go on after the command ended (processes it left behind holding it open).
const OUTPUT_GRACE: Duration = Duration::from_secs(5);

/// What the build did, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildRecord {
    pub command: Vec<String>,
    /// The exit code; `None` when a signal ended it.
    pub exit_code: Option<i32>,
    pub seconds: f64,
    /// The last lines of its standard output and error, interleaved as they came.
    pub output_tail: String,
}

/// Why a build did not succeed.
#[derive(Debug)]
pub enum BuildError {
    /// It could not be started (no such program, not executable).
    Start(String),
    /// It ended with a failure exit code or a signal.
    Failed(BuildRecord),
    /// A stop was asked for; the command was ended.
    Stopped(BuildRecord),
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::Start(m) => write!(f, "{m}"),
            BuildError::Failed(r) => match r.exit_code {
                Some(c) => write!(f, "the build command `{}` failed (exit {c})", r.command.join(" ")),
                None => write!(f, "the build command `{}` was ended by a signal", r.command.join(" ")),
            },
            BuildError::Stopped(r) => write!(f, "the build command `{}` was stopped", r.command.join(" ")),
        }
    }
}

/// Runs `argv` in `dir` with `env` added; each output line goes to `on_line` (`true` for standard error).
/// `stop` is asked every 100 ms.
pub fn run(
    argv: &[String],
    dir: &Path,
    env: &[(String, String)],
    stop: &dyn Fn() -> bool,
    on_line: &mut dyn FnMut(&str, bool),
) -> Result<BuildRecord, BuildError> {
    let started = Instant::now();
    let Some((program, args)) = argv.split_first() else {
        return Err(BuildError::Start("source.command is empty".into()));
    };
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(program);
    // Its own session (and process group): a stop reaches whatever the command started too, and without a
    // controlling terminal a prompt (sudo, a passphrase) fails at once instead of stopping the build for ever.
    // SAFETY: setsid(2) is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| if libc::setsid() < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) });
    }
    let mut child = command
        .args(args)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| BuildError::Start(format!("cannot run the build command `{}`: {e}", argv.join(" "))))?;
    // Bounded: a build printing faster than its lines are shown waits for them (memory stays flat).
    let (tx, rx) = mpsc::sync_channel::<(String, bool)>(1024);
    let readers: Vec<_> = [
        child.stdout.take().map(|o| Box::new(o) as Box<dyn Read + Send>),
        child.stderr.take().map(|e| Box::new(e) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .enumerate()
    .filter_map(|(n, r)| r.map(|r| (n == 1, r)))
    .map(|(is_err, r)| {
        let tx = tx.clone();
        std::thread::spawn(move || forward(r, is_err, &tx))
    })
    .collect();
    drop(tx);

    let mut tail = Tail::default();
    let mut stopped = false;
    let mut term_sent: Option<Instant> = None;
    let status = loop {
        // At most a batch per turn, so that a stop is looked at however much the build prints.
        for (line, is_err) in rx.try_iter().take(1024) {
            on_line(&line, is_err);
            tail.push(&line);
        }
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(_) => break None,
        }
        if stop() && term_sent.is_none() {
            stopped = true;
            term_sent = Some(Instant::now());
            signal_group(child.id(), libc::SIGTERM);
        }
        if term_sent.is_some_and(|t| t.elapsed() > STOP_GRACE) {
            signal_group(child.id(), libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // The rest of the output; a process the command left running with its output open is not waited for long.
    let deadline = Instant::now() + OUTPUT_GRACE;
    while let Ok((line, is_err)) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        on_line(&line, is_err);
        tail.push(&line);
    }
    if stopped {
        signal_group(child.id(), libc::SIGKILL);
    }
    drop(readers);
    let exit_code = status.and_then(|s| s.code());
    let record = BuildRecord {
        command: argv.to_vec(),
        exit_code,
        seconds: started.elapsed().as_secs_f64(),
        output_tail: tail.text(),
    };
    match (stopped, exit_code) {
        (true, _) => Err(BuildError::Stopped(record)),
        (false, Some(0)) => Ok(record),
        _ => Err(BuildError::Failed(record)),
    }
}

/// Signals the process group our child leads.
fn signal_group(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) on the process group of our own child (it leads it: `process_group(0)`); no memory is
        // touched.
        unsafe { libc::kill(-pid, sig) };
    }
}

/// Sends `r`'s lines (cut at [`MAX_LINE`], lossily decoded) until it ends.
fn forward(r: Box<dyn Read + Send>, is_err: bool, tx: &mpsc::SyncSender<(String, bool)>) {
    let mut reader = BufReader::new(r);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        // Reads at most MAX_LINE bytes of a line; the rest of a longer line comes as the next "line".
        match (&mut reader).take(MAX_LINE as u64).read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']).to_string();
                if tx.send((line, is_err)).is_err() {
                    return;
                }
            }
        }
    }
}

/// The last lines, at most [`KEEP_OUTPUT`] bytes.
#[derive(Default)]
struct Tail {
    lines: std::collections::VecDeque<String>,
    bytes: usize,
}

impl Tail {
    fn push(&mut self, line: &str) {
        self.lines.push_back(line.to_string());
        self.bytes += line.len() + 1;
        while self.bytes > KEEP_OUTPUT {
            match self.lines.pop_front() {
                Some(l) => self.bytes -= l.len() + 1,
                None => break,
            }
        }
    }

    fn text(&self) -> String {
        self.lines.iter().map(String::as_str).collect::<Vec<_>>().join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn output_and_exit_code_are_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut seen = Vec::new();
        let r = run(
            &sh("echo out; echo err >&2; pwd; echo $IMGPORT_X"),
            dir.path(),
            &[("IMGPORT_X".into(), "y".into())],
            &|| false,
            &mut |l, e| seen.push((l.to_string(), e)),
        )
        .expect("runs");
        assert_eq!(r.exit_code, Some(0));
        assert!(seen.contains(&("out".into(), false)) && seen.contains(&("err".into(), true)), "{seen:?}");
        let lines: Vec<&str> = r.output_tail.lines().collect();
        assert!(lines.contains(&dir.path().to_str().expect("utf-8")) && lines.contains(&"y"), "{r:?}");
        let e = run(&sh("echo nope; exit 3"), dir.path(), &[], &|| false, &mut |_, _| {}).expect_err("fails");
        match e {
            BuildError::Failed(r) => assert_eq!((r.exit_code, r.output_tail.as_str()), (Some(3), "nope")),
            other => panic!("{other}"),
        }
        let e = run(&["/nonexistent/builder".to_string()], dir.path(), &[], &|| false, &mut |_, _| {});
        assert!(matches!(e, Err(BuildError::Start(m)) if m.contains("/nonexistent/builder")));
    }

    #[test]
    fn a_long_output_keeps_its_tail_and_a_stop_ends_the_command() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut longest = 0;
        let r = run(
            &sh("head -c 100000 /dev/zero | tr '\\0' a; echo; seq 1 20000; printf last"),
            dir.path(),
            &[],
            &|| false,
            &mut |l, _| longest = longest.max(l.len()),
        )
        .expect("runs");
        assert!(longest <= MAX_LINE, "a long line is cut: {longest}");
        assert!(r.output_tail.len() <= KEEP_OUTPUT, "{}", r.output_tail.len());
        assert!(r.output_tail.ends_with("\n20000\nlast"), "the last lines are kept");
        let asked = Instant::now();
        let e = run(&sh("sleep 30"), dir.path(), &[], &|| asked.elapsed() > Duration::from_millis(300), &mut |_, _| {});
        assert!(matches!(e, Err(BuildError::Stopped(_))), "{e:?}");
        assert!(asked.elapsed() < Duration::from_secs(5));
    }
}
