//! The pipeline file as written: TOML tables deserialized into structs that refuse unknown keys and keep the
//! position of every value ([`toml::Spanned`]), so that what [`super::check`] finds wrong after parsing points at
//! the line and column too. A syntax or type error of the parser is turned into the same [`FileError`], the field
//! named from the table and key at the error's position.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A fault in a pipeline file: where, which field, what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub file: PathBuf,
    /// 1-based; 0 when the fault has no place (an unreadable file).
    pub line: usize,
    pub column: usize,
    /// The dotted path of the field (`import.name`, `retain.keep`), or empty for the file as a whole.
    pub field: String,
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        match (self.line, self.field.is_empty()) {
            (0, true) => write!(f, "{file}: {}", self.message),
            (0, false) => write!(f, "{file}: {}: {}", self.field, self.message),
            (_, true) => write!(f, "{file}:{}:{}: {}", self.line, self.column, self.message),
            (_, false) => write!(f, "{file}:{}:{}: {}: {}", self.line, self.column, self.field, self.message),
        }
    }
}

impl std::error::Error for FileError {}

/// The file's text, to turn byte offsets into lines and columns.
#[derive(Debug, Clone)]
pub struct Text {
    pub file: PathBuf,
    pub text: String,
}

impl Text {
    /// 1-based line and column (in characters) of a byte offset.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, before[start..].chars().count() + 1)
    }

    pub fn error(&self, span: Range<usize>, field: &str, message: impl Into<String>) -> FileError {
        let (line, column) = self.position(span.start);
        FileError { file: self.file.clone(), line, column, field: field.to_string(), message: message.into() }
    }

    /// The dotted field at `offset`: the last table header above it, and the key of its line when there is one.
    fn field_at(&self, offset: usize) -> String {
        let before = self.text.get(..offset.min(self.text.len())).unwrap_or("");
        let mut table = String::new();
        for line in before.lines() {
            let t = line.trim();
            if t.starts_with('[') {
                table = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            }
        }
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.text[line_start..].find('\n').map_or(self.text.len(), |i| line_start + i);
        let line = &self.text[line_start..line_end];
        let key = match line.trim_start().starts_with('[') {
            true => None,
            false => line.split_once('=').map(|(k, _)| k.trim().trim_matches('"').to_string()),
        };
        join(&table, key.as_deref().unwrap_or(""))
    }
}

fn join(table: &str, key: &str) -> String {
    match (table.is_empty(), key.is_empty()) {
        (true, _) => key.to_string(),
        (false, true) => table.to_string(),
        (false, false) => format!("{table}.{key}"),
    }
}

/// A pipeline file, as written. Paths are relative to the file's folder.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPipeline {
    /// The pipeline's name [default: the file's stem]: names the run record and the manifest's builds.
    pub name: Option<Spanned<String>>,
    /// `alibaba` [default] or `local`.
    pub cloud: Option<Spanned<String>>,
    /// The import region [default: ALIBABA_CLOUD_REGION_ID, else cn-hangzhou].
    pub region: Option<Spanned<String>>,
    /// The OSS bucket in the import region (required for alibaba).
    pub bucket: Option<Spanned<String>>,
    /// Where run records and leases live so that runners on many machines share them: `oss://BUCKET/PREFIX` or
    /// `s3://BUCKET/PREFIX` [default: a local folder].
    pub state: Option<Spanned<String>>,
    /// How long a run's lease lives without renewal (`2m`); only with `state`.
    pub lease: Option<Spanned<String>>,
    pub source: Option<Spanned<RawSource>>,
    #[serde(default)]
    pub validate: RawValidate,
    #[serde(default)]
    pub convert: RawConvert,
    pub import: Option<Spanned<RawImport>>,
    #[serde(default)]
    pub distribute: RawDistribute,
    pub retain: Option<Spanned<RawRetain>>,
    #[serde(default)]
    pub outputs: RawOutputs,
}

/// Where the image comes from: exactly one of `path`, `glob` and `packer_manifest`; `command` builds it first.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub path: Option<Spanned<String>>,
    /// A pattern whose last component may hold `*` and `?`: the newest matching file (by modification time).
    pub glob: Option<Spanned<String>>,
    /// A Packer manifest: the files of its last run (`last_run_uuid`), of the build named `build` when given.
    pub packer_manifest: Option<Spanned<String>>,
    pub build: Option<Spanned<String>>,
    /// A build command (argv) whose output the other key names.
    pub command: Option<Spanned<Vec<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawValidate {
    /// The cloud the image is validated for: the import's (`alibaba`).
    pub target: Option<Spanned<String>>,
    /// Warnings fail the run too.
    #[serde(default)]
    pub strict: bool,
    /// Import even when validation finds errors.
    #[serde(default)]
    pub skip: bool,
}

/// What the disks go up as.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConvert {
    /// `auto` [default]: as they are when ECS takes them, else qcow2; `qcow2`: always converted.
    pub format: Option<Spanned<String>>,
    /// Also write the converted system disk here (a template; a path relative to the file; refused when nothing
    /// is converted, and when the file exists).
    pub keep: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawImport {
    /// The image name (a template).
    pub name: Option<Spanned<String>>,
    pub description: Option<Spanned<String>>,
    pub family: Option<Spanned<String>>,
    /// Tag values are templates.
    #[serde(default)]
    pub tags: BTreeMap<String, Spanned<String>>,
    pub boot_mode: Option<Spanned<String>>,
    pub platform: Option<Spanned<String>>,
    pub os_type: Option<Spanned<String>>,
    pub arch: Option<Spanned<String>>,
    pub disk_size: Option<Spanned<i64>>,
    pub license_type: Option<Spanned<String>>,
    pub nvme: Option<Spanned<String>>,
    pub resource_group_id: Option<Spanned<String>>,
    /// The object key (a template) [default: imgport/NAME-DIGEST.FORMAT].
    pub key: Option<Spanned<String>>,
    #[serde(default)]
    pub replace: bool,
    #[serde(default)]
    pub detect: bool,
    #[serde(default)]
    pub create_role: bool,
    #[serde(default)]
    pub keep_object: bool,
    /// How long to wait for the image (`3h`, `90m`, `600s`).
    pub timeout: Option<Spanned<String>>,
    /// Upload part size (`64M`).
    pub part_size: Option<Spanned<String>>,
    pub concurrency: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDistribute {
    #[serde(default)]
    pub copy_to: Vec<Spanned<String>>,
    #[serde(default)]
    pub share_with: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetain {
    pub keep: Option<Spanned<i64>>,
    pub keep_days: Option<Spanned<i64>>,
    pub min_keep: Option<Spanned<i64>>,
    pub deprecate_after: Option<Spanned<String>>,
    /// A duration, or `never`.
    pub delete_after: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutputs {
    /// The manifest file (Packer's shape), appended a build per run.
    pub manifest: Option<Spanned<String>>,
    /// A URL the run's manifest is POSTed to (JSON), retried.
    pub webhook: Option<Spanned<String>>,
}

/// Reads and parses a pipeline file; the parser's first error, placed.
pub fn read(file: &Path) -> Result<(Text, RawPipeline), FileError> {
    let text = std::fs::read_to_string(file).map_err(|e| FileError {
        file: file.to_path_buf(),
        line: 0,
        column: 0,
        field: String::new(),
        message: format!("cannot read: {e}"),
    })?;
    let text = Text { file: file.to_path_buf(), text };
    let raw = parse(&text)?;
    Ok((text, raw))
}

/// Parses the text of a pipeline file.
pub fn parse(text: &Text) -> Result<RawPipeline, FileError> {
    toml::from_str::<RawPipeline>(&text.text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let mut message = e.message().trim().to_string();
        // serde names the struct a table deserializes into: say "a table".
        while let Some(at) = message.find("struct Raw") {
            let end = message[at + 7..].find(|c: char| !c.is_alphanumeric()).map_or(message.len(), |n| at + 7 + n);
            message.replace_range(at..end, "a table");
        }
        let mut field = text.field_at(span.start);
        // A missing field is reported at its table: name the field itself.
        if let Some(rest) = message.strip_prefix("missing field `") {
            if let Some(name) = rest.split('`').next() {
                let table = text.field_at(span.start);
                field = join(
                    if text.text[..span.start.min(text.text.len())].trim().is_empty() { "" } else { &table },
                    name,
                );
            }
        }
        if let Some(rest) = message.strip_prefix("unknown field `") {
            if let Some(name) = rest.split('`').next() {
                // The span is the key's: the table above it, and the key.
                let table = field.rsplit_once('.').map_or("", |(t, _)| t).to_string();
                let table = if field.contains('.') { table } else { String::new() };
                field = join(&table, name);
            }
        }
        let (line, column) = text.position(span.start);
        FileError { file: text.file.clone(), line, column, field, message }
    })
}
