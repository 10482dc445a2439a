//! Templates in pipeline files: text with placeholders in braces, checked when the file is checked and rendered
//! when it runs.
//!
//! - `{date}`: the run's start date, UTC (`2026-12-04`); `{datetime}`: date and time, UTC (`20261204-032443`,
//!   characters ECS image names take).
//! - `{git_sha}`: the short commit of the git checkout holding the pipeline file (an error outside one).
//! - `{build}`: the Packer build name of the source (a `packer_manifest` source only).
//! - `{digest}`: the first 12 hex digits of the source's content digest (imgport-digest-v1).
//! - `{var.NAME}`: `--var NAME=VALUE`, else the environment variable `IMGPORT_VAR_NAME`; unset is an error.
//!
//! `{{` and `}}` stand for literal braces. Any other placeholder is an error.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placeholder {
    Date,
    DateTime,
    GitSha,
    Build,
    Digest,
    Var(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Slot(Placeholder),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub source: String,
    parts: Vec<Part>,
}

/// The values placeholders take in one run; `None`: not known (an error when used).
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub date: String,
    pub datetime: String,
    pub git_sha: Option<String>,
    pub build: Option<String>,
    /// The full content digest; templates take its first 12 digits.
    pub digest: Option<String>,
    /// `--var` values; the environment's `IMGPORT_VAR_*` are read when a name is not among them.
    pub vars: BTreeMap<String, String>,
}

/// How long `{digest}` is.
pub const SHORT_DIGEST: usize = 12;

impl Context {
    /// The date placeholders for `unix` seconds.
    pub fn at(unix: i64) -> Context {
        let t = imgport_cloud::retain::format_time(unix); // 2026-12-04T03:24:43Z
        let digits: String = t.chars().filter(|c| c.is_ascii_digit()).collect();
        let datetime = match digits.len() >= 14 {
            true => format!("{}-{}", &digits[..8], &digits[8..14]),
            false => digits,
        };
        Context { date: t.get(..10).unwrap_or("").to_string(), datetime, ..Default::default() }
    }

    fn var(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned().or_else(|| std::env::var(format!("IMGPORT_VAR_{name}")).ok())
    }
}

impl Template {
    /// Parses `source`; the error says which placeholder is wrong.
    pub fn parse(source: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut chars = source.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    text.push('}');
                }
                '}' => return Err("a lone `}` (write `}}` for a brace)".into()),
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => return Err(format!("`{{{name}` is not closed with `}}`")),
                        }
                    }
                    let slot = match name.as_str() {
                        "date" => Placeholder::Date,
                        "datetime" => Placeholder::DateTime,
                        "git_sha" => Placeholder::GitSha,
                        "build" => Placeholder::Build,
                        "digest" => Placeholder::Digest,
                        _ => match name.strip_prefix("var.") {
                            Some(v) if !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                                Placeholder::Var(v.to_string())
                            }
                            _ => {
                                return Err(format!(
                                    "unknown placeholder {{{name}}}: the known ones are {{date}}, {{datetime}}, \
                                     {{git_sha}}, {{build}}, {{digest}} and {{var.NAME}} (NAME of letters, digits, _)"
                                ))
                            }
                        },
                    };
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(Part::Slot(slot));
                }
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Template { source: source.to_string(), parts })
    }

    pub fn placeholders(&self) -> impl Iterator<Item = &Placeholder> {
        self.parts.iter().filter_map(|p| match p {
            Part::Slot(s) => Some(s),
            Part::Text(_) => None,
        })
    }

    /// The text with every placeholder filled; the error names the first that has no value.
    pub fn render(&self, ctx: &Context) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Slot(s) => out.push_str(&match s {
                    Placeholder::Date => ctx.date.clone(),
                    Placeholder::DateTime => ctx.datetime.clone(),
                    Placeholder::GitSha => ctx
                        .git_sha
                        .clone()
                        .ok_or("{git_sha}: the pipeline file is not in a git checkout (or git is not installed)")?,
                    Placeholder::Build => ctx.build.clone().ok_or("{build}: the source has no Packer build name")?,
                    Placeholder::Digest => {
                        let d = ctx.digest.as_deref().ok_or("{digest}: the source's digest is not known yet")?;
                        d.chars().take(SHORT_DIGEST).collect()
                    }
                    Placeholder::Var(v) => ctx.var(v).ok_or_else(|| {
                        format!("{{var.{v}}} has no value: pass --var {v}=VALUE or set IMGPORT_VAR_{v}")
                    })?,
                }),
            }
        }
        Ok(out)
    }
}

/// The short commit of the checkout holding `dir`, when it is one.
pub fn git_sha(dir: &std::path::Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(dir)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let sha = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !sha.is_empty()).then_some(sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_placeholder_and_braces() {
        let t = Template::parse("img-{date}-{datetime}-{build}-{digest}-{var.CHANNEL}-{git_sha}-{{x}}").unwrap();
        let mut ctx = Context::at(1_764_818_683); // 2025-12-04T03:24:43Z
        ctx.git_sha = Some("abc".into());
        ctx.build = Some("qemu".into());
        ctx.digest = Some("0123456789abcdef0123".into());
        ctx.vars.insert("CHANNEL".into(), "beta".into());
        assert_eq!(t.render(&ctx).unwrap(), "img-2025-12-04-20251204-032443-qemu-0123456789ab-beta-abc-{x}");
    }

    #[test]
    fn refuses_unknown_and_unclosed_placeholders() {
        assert!(Template::parse("a-{dat}").unwrap_err().contains("unknown placeholder {dat}"));
        assert!(Template::parse("a-{var.}").unwrap_err().contains("unknown placeholder"));
        assert!(Template::parse("a-{date").unwrap_err().contains("not closed"));
        assert!(Template::parse("a}").unwrap_err().contains("lone"));
    }

    #[test]
    fn a_missing_value_is_named() {
        let t = Template::parse("{var.NOT_SET_ANYWHERE_42}").unwrap();
        assert!(t.render(&Context::at(0)).unwrap_err().contains("--var NOT_SET_ANYWHERE_42=VALUE"));
        assert!(Template::parse("{build}").unwrap().render(&Context::at(0)).unwrap_err().contains("Packer"));
    }
}
