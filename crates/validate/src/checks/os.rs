//! The operating system and its architecture, for Linux and Windows guests alike.

use super::{CheckId, Guest, Subject};
use crate::finding::{Finding, Severity};
use crate::profile::{Profile, Target};

pub(super) fn os_check(profile: &Profile, s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: CheckId = CheckId::Os;
    match s.guest() {
        Guest::Unknown(reason) if s.root_unreadable_kind() => vec![Finding::not_checked(ID, reason)],
        Guest::Unknown(reason) => vec![Finding::fail(
            ID,
            sev,
            format!("no operating system found: {reason}"),
            "check that this is the system disk of the VM",
        )],
        Guest::Windows(os) | Guest::Linux(os) => {
            let r = &os.release;
            let name = r.pretty_name.clone().or_else(|| r.name.clone()).unwrap_or_else(|| "unknown".into());
            let src = r.source.clone().unwrap_or_else(|| "/etc/os-release".into());
            let (platform, known) = crate::params::alibaba_platform(os);
            let recognised = r.distro.is_some() && (known || profile.target != Target::Alibaba);
            if !recognised {
                let (msg, fix) = match profile.target {
                    Target::Alibaba => (
                        format!(
                            "{name} ({}) is not one of ImportImage's Platform values: it imports as {platform}",
                            r.distro.as_deref().unwrap_or("no ID")
                        ),
                        "if it derives from a listed distribution, pass that Platform; otherwise Others Linux (ECS sets \
                         up nothing in the guest) or Customized Linux (needs Alibaba's customization script)"
                            .to_string(),
                    ),
                    _ => (
                        format!("cannot tell the distribution from {src}"),
                        "make sure /etc/os-release exists with ID and VERSION_ID".to_string(),
                    ),
                };
                return vec![Finding::fail(ID, sev, msg, fix).path(src).value(r.distro.clone().unwrap_or_default())];
            }
            let msg = match profile.target {
                Target::Alibaba => format!("{name}: Platform {platform}"),
                _ => name,
            };
            vec![Finding::pass(ID, msg).path(src).value(r.distro.clone().unwrap_or_default())]
        }
    }
}

pub(super) fn architecture(profile: &Profile, s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: CheckId = CheckId::Architecture;
    let os = match s.guest() {
        Guest::Linux(os) | Guest::Windows(os) => os,
        Guest::Unknown(_) => {
            return vec![Finding::not_checked(
                ID,
                "needs the root filesystem, which was not read (see root-filesystem)",
            )]
        }
    };
    let Some(a) = &os.architecture else {
        return vec![Finding::fail(
            ID,
            Severity::Warning,
            "cannot tell the architecture: no ELF binary at /bin/sh, /bin/bash or /bin/ls",
            "pass the architecture explicitly when importing",
        )];
    };
    if !profile.architectures.contains(&a.name.as_str()) {
        return vec![Finding::fail(
            ID,
            sev,
            format!(
                "{} binaries ({}-bit): {} supports {}",
                a.name,
                a.bits,
                profile.service,
                profile.architectures.join(", ")
            ),
            "rebuild the image for a supported architecture",
        )
        .path(a.evidence.clone())
        .value(a.name.clone())];
    }
    vec![Finding::pass(ID, format!("{} ({}-bit, from {})", a.name, a.bits, a.evidence))
        .path(a.evidence.clone())
        .value(a.name.clone())]
}
