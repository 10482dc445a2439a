//! From the file as written ([`RawPipeline`]) to a checked [`Pipeline`]: every value that parsed but is wrong
//! (a negative count, a region that is not one, a bad template, two sources) is reported with its line, column and
//! field, all of them at once.

use super::format::{self, FileError, RawPipeline, Text};
use super::template::{Placeholder, Template};
use imgport_cloud::retain::Policy;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// Where the image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Path(PathBuf),
    /// The folder and the pattern of the file name in it.
    Glob {
        dir: PathBuf,
        pattern: String,
    },
    Packer {
        manifest: PathBuf,
        build: Option<String>,
    },
}

/// A template and where it was written, for errors when it renders.
#[derive(Debug, Clone)]
pub struct Placed {
    pub template: Template,
    pub field: String,
    pub line: usize,
    pub column: usize,
}

/// The import step's settings.
#[derive(Debug, Clone)]
pub struct ImportSettings {
    pub name: Placed,
    pub description: Option<Placed>,
    pub family: Option<Placed>,
    pub tags: Vec<(String, Placed)>,
    pub key: Option<Placed>,
    pub boot_mode: Option<String>,
    pub platform: Option<String>,
    pub os_type: Option<String>,
    pub arch: Option<String>,
    pub disk_size: Option<u64>,
    pub license_type: Option<String>,
    pub nvme: Option<String>,
    pub resource_group_id: Option<String>,
    pub replace: bool,
    pub detect: bool,
    pub create_role: bool,
    pub keep_object: bool,
    pub timeout: Duration,
    pub part_size: Option<u64>,
    pub concurrency: Option<usize>,
}

/// A checked pipeline file. Paths are resolved against the file's folder.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub file: PathBuf,
    pub dir: PathBuf,
    pub name: String,
    pub cloud: String,
    pub region: Option<String>,
    pub bucket: Option<String>,
    pub source: Source,
    /// A build command run before the source is resolved (its output is the source).
    pub command: Option<Vec<String>>,
    pub strict: bool,
    pub skip_validation: bool,
    pub import: ImportSettings,
    pub copy_to: Vec<String>,
    pub share_with: Vec<String>,
    pub retain: Option<Policy>,
    pub manifest: Option<PathBuf>,
    /// A URL the run's manifest is POSTed to (a template).
    pub webhook: Option<Placed>,
    /// `[convert] format = "qcow2"`: every disk converted on the way.
    pub always_qcow2: bool,
    /// `[convert] keep`: where the converted system disk is also written (a template, relative to `dir`).
    pub keep_converted: Option<Placed>,
    /// Run records and leases in a bucket (`state`), with the lease's lifetime (`lease`).
    pub state: Option<(imgport_storage::Destination, Duration)>,
    /// SHA-256 of the file's text: a changed file is a new run.
    pub hash: String,
    /// What a check says that is not an error.
    pub notes: Vec<String>,
}

/// `dir` joined with `rel`, `a/../b` folded to `b` (lexically), so that messages and manifests show the path plainly.
fn under(dir: &Path, rel: &str) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in dir.join(rel).components() {
        match c {
            Component::ParentDir if matches!(out.components().next_back(), Some(Component::Normal(_))) => {
                out.pop();
            }
            Component::CurDir if !out.as_os_str().is_empty() => {}
            c => out.push(c),
        }
    }
    out
}

/// Reads, parses and checks a pipeline file: every error found, or the pipeline.
pub fn load(file: &Path) -> Result<Pipeline, Vec<FileError>> {
    let (text, raw) = format::read(file).map_err(|e| vec![e])?;
    check(&text, raw)
}

struct Checker<'a> {
    text: &'a Text,
    errors: Vec<FileError>,
}

impl Checker<'_> {
    fn error(&mut self, span: Range<usize>, field: &str, message: impl Into<String>) {
        self.errors.push(self.text.error(span, field, message));
    }

    fn template(&mut self, value: &Spanned<String>, field: &str) -> Option<Placed> {
        let (line, column) = self.text.position(value.span().start);
        match Template::parse(value.get_ref()) {
            Ok(template) => Some(Placed { template, field: field.to_string(), line, column }),
            Err(e) => {
                self.error(value.span(), field, e);
                None
            }
        }
    }

    fn count(&mut self, value: &Option<Spanned<i64>>, field: &str, least: i64) -> Option<u64> {
        let v = value.as_ref()?;
        match *v.get_ref() {
            n if n < least => {
                self.error(v.span(), field, format!("must be at least {least}, not {n}"));
                None
            }
            n => Some(n as u64),
        }
    }

    fn duration(&mut self, value: &Option<Spanned<String>>, field: &str) -> Option<Duration> {
        let v = value.as_ref()?;
        match parse_duration(v.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(v.span(), field, e);
                None
            }
        }
    }

    fn region(&mut self, value: &Spanned<String>, field: &str) -> Option<String> {
        let r = value.get_ref();
        let shaped = r.len() <= 64
            && r.split('-').count() >= 2
            && r.split('-').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        if !shaped {
            self.error(value.span(), field, format!("{r:?} is not a region id (like cn-hangzhou or ap-southeast-1)"));
            return None;
        }
        Some(r.clone())
    }

    fn one_of(&mut self, value: &Option<Spanned<String>>, field: &str, allowed: &[&str]) -> Option<String> {
        let v = value.as_ref()?;
        if !allowed.contains(&v.get_ref().as_str()) {
            self.error(v.span(), field, format!("{:?}: expected one of {}", v.get_ref(), allowed.join(", ")));
        }
        Some(v.get_ref().clone())
    }
}

/// `3h`, `90m`, `45s`, `7d`, `600` (seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: u64 = num.parse().map_err(|_| format!("{s:?}: expected a duration like 3h, 90m or 600s"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(format!("{s:?}: the unit is s, m, h or d")),
    };
    Ok(Duration::from_secs(secs))
}

/// `64M`, `8MiB`, `1G`, `1048576`.
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t[..split].parse().map_err(|_| format!("{s:?}: expected a size like 64M"))?;
    let mul: u64 = match t[split..].trim().to_ascii_lowercase().trim_end_matches("ib").trim_end_matches('b') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return Err(format!("{s:?}: the unit is K, M or G")),
    };
    n.checked_mul(mul).ok_or_else(|| format!("{s:?} is too large"))
}

/// Checks a parsed file.
pub fn check(text: &Text, raw: RawPipeline) -> Result<Pipeline, Vec<FileError>> {
    let mut c = Checker { text, errors: Vec::new() };
    let file = text.file.clone();
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    let notes = Vec::new();
    let whole = 0..0;

    let name = match &raw.name {
        Some(n) => {
            let v = n.get_ref();
            if v.is_empty() || !v.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch)) {
                c.error(n.span(), "name", "letters, digits, `-`, `_` and `.` only (it names files)");
            }
            v.clone()
        }
        None => file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "pipeline".into()),
    };
    let cloud = c.one_of(&raw.cloud, "cloud", &["alibaba", "local"]).unwrap_or_else(|| "alibaba".into());
    let region = raw.region.as_ref().and_then(|r| c.region(r, "region"));
    let bucket = raw.bucket.as_ref().map(|b| b.get_ref().clone());
    if cloud == "alibaba" && bucket.is_none() {
        c.error(whole.clone(), "bucket", "required with cloud = \"alibaba\": an OSS bucket in the import region");
    }

    // Source.
    let mut has_build = false;
    let (source, command) = match &raw.source {
        None => {
            c.error(whole.clone(), "source", "missing: a [source] table with path, glob or packer_manifest");
            (None, None)
        }
        Some(s) => {
            let span = s.span();
            let s = s.get_ref();
            let given: Vec<&str> = [("path", s.path.is_some()), ("glob", s.glob.is_some())]
                .into_iter()
                .chain([("packer_manifest", s.packer_manifest.is_some())])
                .filter(|(_, g)| *g)
                .map(|(k, _)| k)
                .collect();
            let source = match (given.len(), &s.path, &s.glob, &s.packer_manifest) {
                (0, ..) => {
                    c.error(span, "source", "needs one of path, glob or packer_manifest");
                    None
                }
                (1, Some(p), _, _) => Some(Source::Path(under(&dir, p.get_ref()))),
                (1, _, Some(g), _) => {
                    let full = under(&dir, g.get_ref());
                    let pattern = full.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    let folder = full.parent().unwrap_or(Path::new(".")).to_path_buf();
                    if folder.to_string_lossy().contains(['*', '?', '[']) || pattern.is_empty() {
                        c.error(g.span(), "source.glob", "only the last component may hold * and ?");
                    }
                    Some(Source::Glob { dir: folder, pattern })
                }
                (1, _, _, Some(m)) => {
                    has_build = true;
                    Some(Source::Packer {
                        manifest: under(&dir, m.get_ref()),
                        build: s.build.as_ref().map(|b| b.get_ref().clone()),
                    })
                }
                _ => {
                    c.error(
                        span,
                        "source",
                        format!("give one of path, glob or packer_manifest, not {}", given.join(" and ")),
                    );
                    None
                }
            };
            if let (Some(b), false) = (&s.build, s.packer_manifest.is_some()) {
                c.error(b.span(), "source.build", "only with packer_manifest");
            }
            let command = match &s.command {
                Some(cmd) if cmd.get_ref().is_empty() || cmd.get_ref()[0].is_empty() => {
                    c.error(cmd.span(), "source.command", "an argv list with the program first");
                    None
                }
                Some(cmd) => Some(cmd.get_ref().clone()),
                None => None,
            };
            (source, command)
        }
    };

    // Validate.
    if let Some(t) = &raw.validate.target {
        match t.get_ref().parse::<imgport_validate::Target>() {
            Ok(imgport_validate::Target::Alibaba) => {}
            Ok(other) => c.error(
                t.span(),
                "validate.target",
                format!("{other}: the import validates for the cloud it imports into, alibaba"),
            ),
            Err(e) => c.error(t.span(), "validate.target", e),
        }
    }

    // Import.
    let import = match &raw.import {
        None => {
            c.error(whole.clone(), "import", "missing: an [import] table with at least the name");
            None
        }
        Some(i) => {
            let span = i.span();
            let i = i.get_ref();
            let name = match &i.name {
                Some(n) => c.template(n, "import.name"),
                None => {
                    c.error(span, "import.name", "missing: the image name (a template)");
                    None
                }
            };
            let description = i.description.as_ref().and_then(|d| c.template(d, "import.description"));
            let family = i.family.as_ref().and_then(|d| c.template(d, "import.family"));
            let key = i.key.as_ref().and_then(|d| c.template(d, "import.key"));
            let mut tags = Vec::new();
            for (k, v) in &i.tags {
                let field = format!("import.tags.{k}");
                if k.is_empty() || k.starts_with("acs:") || k.starts_with("aliyun") {
                    c.error(v.span(), &field, "tag keys may not be empty nor start with acs: or aliyun");
                }
                if let Some(t) = c.template(v, &field) {
                    tags.push((k.clone(), t));
                }
            }
            let boot_mode = c.one_of(&i.boot_mode, "import.boot_mode", &["BIOS", "UEFI", "UEFI-Preferred"]);
            let nvme = c.one_of(&i.nvme, "import.nvme", &["auto", "supported", "unsupported"]);
            let os_type = c.one_of(&i.os_type, "import.os_type", &["linux", "windows"]);
            let arch = c.one_of(&i.arch, "import.arch", &["x86_64", "i386", "arm64"]);
            let license_type = c.one_of(&i.license_type, "import.license_type", &["Auto", "Aliyun", "BYOL"]);
            let disk_size = c.count(&i.disk_size, "import.disk_size", 1);
            let concurrency = c.count(&i.concurrency, "import.concurrency", 1).map(|n| n as usize);
            let timeout = c.duration(&i.timeout, "import.timeout").unwrap_or(Duration::from_secs(3 * 3600));
            let part_size = i.part_size.as_ref().and_then(|p| match parse_size(p.get_ref()) {
                Ok(n) => Some(n),
                Err(e) => {
                    c.error(p.span(), "import.part_size", e);
                    None
                }
            });
            name.map(|name| ImportSettings {
                name,
                description,
                family,
                tags,
                key,
                boot_mode,
                platform: i.platform.as_ref().map(|p| p.get_ref().clone()),
                os_type,
                arch,
                disk_size,
                license_type,
                nvme,
                resource_group_id: i.resource_group_id.as_ref().map(|p| p.get_ref().clone()),
                replace: i.replace,
                detect: i.detect,
                create_role: i.create_role,
                keep_object: i.keep_object,
                timeout,
                part_size,
                concurrency,
            })
        }
    };
    // {build} only means something with a Packer source.
    if !has_build {
        if let Some(i) = &import {
            let all = std::iter::once(&i.name)
                .chain(i.description.iter())
                .chain(i.family.iter())
                .chain(i.key.iter())
                .chain(i.tags.iter().map(|(_, t)| t));
            for t in all {
                if t.template.placeholders().any(|p| *p == Placeholder::Build) {
                    let (line, column) = (t.line, t.column);
                    c.errors.push(FileError {
                        file: file.clone(),
                        line,
                        column,
                        field: t.field.clone(),
                        message: "{build} needs a packer_manifest source".into(),
                    });
                }
            }
        }
    }

    // Distribute.
    let mut copy_to: Vec<String> = Vec::new();
    for (n, r) in raw.distribute.copy_to.iter().enumerate() {
        if let Some(r) = c.region(r, &format!("distribute.copy_to[{n}]")) {
            if !copy_to.contains(&r) {
                copy_to.push(r);
            }
        }
    }
    let mut share_with: Vec<String> = Vec::new();
    for (n, a) in raw.distribute.share_with.iter().enumerate() {
        let v = a.get_ref();
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            c.error(a.span(), &format!("distribute.share_with[{n}]"), format!("{v:?} is not an account id (digits)"));
        } else if !share_with.contains(v) {
            share_with.push(v.clone());
        }
    }

    // Retain.
    let retain = raw.retain.as_ref().map(|r| {
        let span = r.span();
        let r = r.get_ref();
        let policy = Policy {
            keep: c.count(&r.keep, "retain.keep", 1).map(|n| n as usize),
            keep_younger_than: c.count(&r.keep_days, "retain.keep_days", 1).map(|d| d.saturating_mul(86_400)),
            min_keep: c.count(&r.min_keep, "retain.min_keep", 0).map_or(1, |n| n as usize),
            deprecate_after: c.duration(&r.deprecate_after, "retain.deprecate_after").map_or(0, |d| d.as_secs()),
            delete_after: match &r.delete_after {
                Some(d) if d.get_ref() == "never" => None,
                None => Some(7 * 86_400),
                some => c.duration(some, "retain.delete_after").map(|d| d.as_secs()),
            },
        };
        if r.keep.is_none() && r.keep_days.is_none() {
            c.error(span, "retain", "needs keep (the N newest) or keep_days (younger than D days), or both");
        }
        policy
    });
    if retain.is_some() && import.as_ref().is_some_and(|i| i.family.is_none()) {
        let span = raw.retain.as_ref().map_or(whole.clone(), |r| r.span());
        c.error(span, "retain", "retention works on an image family: set import.family");
    }

    let manifest = raw.outputs.manifest.as_ref().map(|m| under(&dir, m.get_ref()));
    // A template, so that a token can come from `{var.NAME}` (the environment) rather than the file; a URL
    // without placeholders is checked now, one with them once rendered.
    let webhook = raw.outputs.webhook.as_ref().and_then(|w| {
        let t = c.template(w, "outputs.webhook")?;
        if t.template.placeholders().next().is_none() {
            if let Err(e) = super::webhook::check_url(w.get_ref()) {
                c.error(w.span(), "outputs.webhook", e);
            }
        }
        Some(t)
    });

    // Convert.
    let always_qcow2 = c.one_of(&raw.convert.format, "convert.format", &["auto", "qcow2"]).as_deref() == Some("qcow2");
    let keep_converted = raw.convert.keep.as_ref().and_then(|k| c.template(k, "convert.keep"));
    if let Some(t) =
        keep_converted.as_ref().filter(|t| !has_build && t.template.placeholders().any(|p| *p == Placeholder::Build))
    {
        c.errors.push(FileError {
            file: file.clone(),
            line: t.line,
            column: t.column,
            field: t.field.clone(),
            message: "{build} needs a packer_manifest source".into(),
        });
    }

    // Shared state.
    let lease = c.duration(&raw.lease, "lease");
    if let Some(l) = raw.lease.as_ref().filter(|_| lease.is_some_and(|d| d < super::state::MIN_LEASE)) {
        let least = super::state::MIN_LEASE.as_secs();
        c.error(l.span(), "lease", format!("at least {least}s: it is renewed every third of it"));
    }
    let state = match &raw.state {
        Some(u) => match imgport_storage::Destination::parse(u.get_ref(), false) {
            Ok(d) => Some((d, lease.unwrap_or(super::state::DEFAULT_LEASE))),
            Err(e) => {
                c.error(u.span(), "state", format!("{e} (the bucket and a prefix for the run records and leases)"));
                None
            }
        },
        None => {
            if let Some(l) = &raw.lease {
                c.error(l.span(), "lease", "only with state (the lease lives in the state's bucket)");
            }
            None
        }
    };
    if !c.errors.is_empty() {
        return Err(c.errors);
    }
    let (Some(source), Some(import)) = (source, import) else {
        // Both report an error when missing.
        return Err(vec![text.error(whole, "", "incomplete pipeline")]);
    };
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(text.text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    Ok(Pipeline {
        file,
        dir,
        name,
        cloud,
        region,
        bucket,
        source,
        command,
        strict: raw.validate.strict,
        skip_validation: raw.validate.skip,
        import,
        copy_to,
        share_with,
        retain,
        manifest,
        webhook,
        always_qcow2,
        keep_converted,
        state,
        hash,
        notes,
    })
}
