//! A Windows guest's virtio drivers.

use super::{CheckId, Guest, Subject};
use crate::facts::Fact;
use crate::finding::{Finding, Severity};
use imgport_guest::probe::FsKind;

pub(super) fn windows_drivers(s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: CheckId = CheckId::WindowsDrivers;
    let windows = match s.guest() {
        Guest::Windows(_) => true,
        Guest::Unknown(_) => s.has_fs(FsKind::Ntfs),
        Guest::Linux(_) => false,
    };
    if !windows {
        return Vec::new();
    }
    match &s.extras.windows_drivers {
        Fact::Unknown(why) => vec![Finding::not_checked(ID, format!("viostor, netkvm: cannot check: {why}"))],
        Fact::Known(d) => {
            let missing: Vec<&str> =
                [("viostor", d.viostor), ("netkvm", d.netkvm)].iter().filter(|(_, ok)| !ok).map(|(n, _)| *n).collect();
            if missing.is_empty() {
                vec![Finding::pass(ID, "viostor and netkvm (virtio) drivers are installed")]
            } else {
                let why = if d.why_not.is_empty() { String::new() } else { format!(" ({})", d.why_not.join("; ")) };
                vec![Finding::fail(
                    ID,
                    sev,
                    format!("virtio drivers missing: {}{why}", missing.join(", ")),
                    "install the virtio-win drivers in the guest (virtio-win-guest-tools.exe) before exporting",
                )]
            }
        }
    }
}
