//! Network configuration of a Linux guest, from every system that may hold it: ifupdown
//! (/etc/network/interfaces and interfaces.d), netplan (/etc/netplan/*.yaml), NetworkManager keyfiles,
//! systemd-networkd (*.network), RHEL/SUSE ifcfg files, and udev rules that pin interface names to MAC addresses.
//!
//! netplan YAML is read with a small indentation-based parser of the subset netplan files use (block mappings,
//! block and flow sequences of scalars, comments); anchors, multi-line scalars and multiple documents are not
//! read. That avoids a YAML dependency for a handful of keys.

use crate::linux::{parse_shell_vars, MAX_TEXT};
use crate::vfs::Vfs;
use serde::Serialize;
use std::collections::BTreeMap;

/// Configuration files read per directory.
const MAX_FILES: usize = 500;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Interface {
    /// Interface name or match pattern as configured ("eth0", "ens3", "en*", "*"); for NetworkManager the
    /// connection's interface-name, or its id when it names none.
    pub name: String,
    /// "ifupdown", "netplan", "networkmanager", "networkd" or "ifcfg".
    pub system: &'static str,
    pub source: String,
    pub dhcp4: bool,
    pub dhcp6: bool,
    /// Static addresses configured ("192.0.2.10/24").
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// The configuration only applies to (or renames) the NIC with this MAC address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Brought up at boot (ifupdown auto/allow-hotplug, ifcfg ONBOOT, NetworkManager autoconnect), where said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_boot: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PinnedName {
    pub name: String,
    pub mac: String,
    pub source: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Network {
    pub interfaces: Vec<Interface>,
    /// udev rules (70-persistent-net.rules and the like) and systemd .link files that give a MAC address a fixed
    /// interface name: on new hardware the NIC gets another name and the configuration does not apply.
    pub pinned_names: Vec<PinnedName>,
    /// Some interface other than loopback gets an address by DHCPv4.
    pub any_dhcp4: bool,
}

fn truthy(v: &str) -> bool {
    matches!(
        v.trim().trim_matches(|c| c == '"' || c == '\'').to_ascii_lowercase().as_str(),
        "true" | "yes" | "on" | "1"
    )
}

fn list_dir(vfs: &mut Vfs, dir: &str, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = vfs
        .read_dir(dir)
        .map(|es| es.into_iter().map(|e| e.name).filter(|n| n.ends_with(suffix) && !n.starts_with('.')).collect())
        .unwrap_or_default();
    names.sort();
    names.truncate(MAX_FILES);
    names.into_iter().map(|n| format!("{dir}/{n}")).collect()
}

/// ifupdown stanzas: `auto`/`allow-hotplug`, `iface NAME inet|inet6 METHOD`, `address`, `hwaddress`.
pub fn parse_interfaces(text: &str, source: &str) -> Vec<Interface> {
    let mut out: Vec<Interface> = Vec::new();
    let mut auto: Vec<String> = Vec::new();
    let mut cur: Option<usize> = None;
    for line in text.lines() {
        let w: Vec<&str> = line.split('#').next().unwrap_or("").split_whitespace().collect();
        let Some(&first) = w.first() else { continue };
        match first {
            "auto" | "allow-hotplug" | "allow-auto" => auto.extend(w[1..].iter().map(|s| s.to_string())),
            "iface" if w.len() >= 4 => {
                let (name, family, method) = (w[1], w[2], w[3]);
                if name == "lo" || method == "loopback" {
                    cur = None;
                    continue;
                }
                let i = match out.iter().position(|x| x.name == name) {
                    Some(i) => i,
                    None => {
                        out.push(Interface {
                            name: name.to_string(),
                            system: "ifupdown",
                            source: source.to_string(),
                            ..Interface::default()
                        });
                        out.len() - 1
                    }
                };
                match (family, method) {
                    ("inet", "dhcp") => out[i].dhcp4 = true,
                    ("inet6", "dhcp" | "auto") => out[i].dhcp6 = true,
                    _ => {}
                }
                cur = Some(i);
            }
            "mapping" | "source" | "source-directory" | "iface" => cur = None,
            "address" => {
                if let (Some(i), Some(a)) = (cur, w.get(1)) {
                    out[i].addresses.push(a.to_string());
                }
            }
            "hwaddress" => {
                if let Some(i) = cur {
                    out[i].mac = w.last().map(|m| m.to_ascii_lowercase());
                }
            }
            _ => {}
        }
    }
    for i in out.iter_mut() {
        i.on_boot = Some(auto.contains(&i.name));
    }
    out
}

/// Flatten the YAML subset of netplan into ("network.ethernets.eth0.dhcp4", "true") pairs; sequence items
/// repeat their key.
pub fn flatten_yaml(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    // (indent, key) of the open mappings.
    let mut stack: Vec<(usize, String)> = Vec::new();
    for raw in text.lines().take(100_000) {
        let no_comment = strip_yaml_comment(raw);
        if no_comment.trim().is_empty() || no_comment.trim_start().starts_with("---") {
            continue;
        }
        let indent = no_comment.len() - no_comment.trim_start().len();
        let mut line = no_comment.trim();
        let mut indent_eff = indent;
        if let Some(item) = line.strip_prefix("- ").or_else(|| (line == "-").then_some("")) {
            // A sequence item belongs to the key above it (indented more, or at the same indent); "- key: v"
            // starts a mapping inside the item.
            while stack.last().is_some_and(|(i, _)| *i > indent) {
                stack.pop();
            }
            let path = stack.iter().map(|(_, k)| k.as_str()).collect::<Vec<_>>().join(".");
            if !item.contains(": ") && !item.ends_with(':') {
                out.push((path, unquote(item)));
                continue;
            }
            line = item;
            indent_eff = indent + 2;
        }
        while stack.last().is_some_and(|(i, _)| *i >= indent_eff) {
            stack.pop();
        }
        let (key, value) = match line.split_once(": ") {
            Some((k, v)) => (k.trim(), v.trim()),
            None => (line.trim_end_matches(':').trim(), ""),
        };
        let key = unquote(key);
        let path = stack.iter().map(|(_, k)| k.as_str()).chain([key.as_str()]).collect::<Vec<_>>().join(".");
        if value.is_empty() {
            if stack.len() < 64 {
                stack.push((indent_eff, key));
            }
        } else if let Some(flow) = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
            for item in flow.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                out.push((path.clone(), unquote(item)));
            }
        } else {
            out.push((path, unquote(value)));
        }
    }
    out
}

fn strip_yaml_comment(line: &str) -> &str {
    let mut in_s = false;
    let mut in_d = false;
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !in_d => in_s = !in_s,
            '"' if !in_s => in_d = !in_d,
            '#' if !in_s && !in_d && (i == 0 || line[..i].ends_with(char::is_whitespace)) => return &line[..i],
            _ => {}
        }
    }
    line
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    if s.len() >= 2 && ((s.starts_with('"') && s.ends_with('"')) || (s.starts_with('\'') && s.ends_with('\''))) {
        s[1..s.len() - 1].to_string()
    } else {
        s.to_string()
    }
}

/// netplan interfaces: network.{ethernets,bonds,bridges,vlans,wifis}.NAME.{dhcp4,dhcp6,addresses,match.macaddress}.
pub fn parse_netplan(text: &str, source: &str) -> Vec<Interface> {
    let mut by_name: BTreeMap<String, Interface> = BTreeMap::new();
    for (path, value) in flatten_yaml(text) {
        let parts: Vec<&str> = path.split('.').collect();
        if parts.len() < 4 || parts[0] != "network" {
            continue;
        }
        if !matches!(parts[1], "ethernets" | "bonds" | "bridges" | "vlans" | "wifis") {
            continue;
        }
        let e = by_name.entry(parts[2].to_string()).or_insert_with(|| Interface {
            name: parts[2].to_string(),
            system: "netplan",
            source: source.to_string(),
            on_boot: Some(true),
            ..Interface::default()
        });
        match &parts[3..] {
            ["dhcp4"] => e.dhcp4 = truthy(&value),
            ["dhcp6"] => e.dhcp6 = truthy(&value),
            ["addresses"] => e.addresses.push(value),
            ["match", "macaddress"] => e.mac = Some(value.to_ascii_lowercase()),
            ["match", "name"] => e.name = value,
            _ => {}
        }
    }
    by_name.into_values().collect()
}

/// INI sections of NetworkManager keyfiles and systemd units: section -> key -> values (keys may repeat).
fn parse_ini(text: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.trim().to_string();
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            out.entry(section.clone()).or_default().entry(k.trim().to_string()).or_default().push(v.trim().to_string());
        }
    }
    out
}

fn ini_get<'a>(ini: &'a BTreeMap<String, BTreeMap<String, Vec<String>>>, s: &str, k: &str) -> Option<&'a str> {
    ini.get(s)?.get(k)?.last().map(String::as_str)
}

pub fn parse_nmconnection(text: &str, source: &str) -> Option<Interface> {
    let ini = parse_ini(text);
    let kind = ini_get(&ini, "connection", "type").unwrap_or("");
    if !matches!(kind, "ethernet" | "802-3-ethernet" | "bond" | "bridge" | "vlan" | "wifi" | "802-11-wireless") {
        return None;
    }
    let name = ini_get(&ini, "connection", "interface-name")
        .or_else(|| ini_get(&ini, "connection", "id"))
        .unwrap_or("*")
        .to_string();
    let v4 = ini_get(&ini, "ipv4", "method").unwrap_or("auto");
    let v6 = ini_get(&ini, "ipv6", "method").unwrap_or("auto");
    let addresses = ini
        .get("ipv4")
        .into_iter()
        .chain(ini.get("ipv6"))
        .flat_map(|s| s.iter())
        .filter(|(k, _)| k.starts_with("address"))
        .flat_map(|(_, v)| v.iter().map(|a| a.split(',').next().unwrap_or("").to_string()))
        .collect();
    let mac = ini_get(&ini, "ethernet", "mac-address")
        .or_else(|| ini_get(&ini, "802-3-ethernet", "mac-address"))
        .map(str::to_ascii_lowercase);
    Some(Interface {
        name,
        system: "networkmanager",
        source: source.to_string(),
        dhcp4: v4 == "auto",
        dhcp6: matches!(v6, "auto" | "dhcp"),
        addresses,
        mac,
        on_boot: Some(ini_get(&ini, "connection", "autoconnect").is_none_or(truthy)),
    })
}

pub fn parse_networkd(text: &str, source: &str) -> Option<Interface> {
    let ini = parse_ini(text);
    let name = ini_get(&ini, "Match", "Name").unwrap_or("*").to_string();
    if name == "lo" {
        return None;
    }
    let dhcp = ini_get(&ini, "Network", "DHCP").unwrap_or("no").to_ascii_lowercase();
    let addresses = ini
        .get("Network")
        .and_then(|s| s.get("Address"))
        .into_iter()
        .flatten()
        .chain(ini.get("Address").and_then(|s| s.get("Address")).into_iter().flatten())
        .cloned()
        .collect();
    Some(Interface {
        name,
        system: "networkd",
        source: source.to_string(),
        dhcp4: matches!(dhcp.as_str(), "yes" | "true" | "ipv4" | "both"),
        dhcp6: matches!(dhcp.as_str(), "yes" | "true" | "ipv6" | "both"),
        addresses,
        mac: ini_get(&ini, "Match", "MACAddress").map(str::to_ascii_lowercase),
        on_boot: None,
    })
}

pub fn parse_ifcfg(text: &str, file_name: &str, source: &str) -> Option<Interface> {
    let v = parse_shell_vars(text);
    let name = v.get("DEVICE").cloned().unwrap_or_else(|| file_name.trim_start_matches("ifcfg-").to_string());
    if name == "lo" {
        return None;
    }
    let proto = v.get("BOOTPROTO").map(|s| s.to_ascii_lowercase()).unwrap_or_default();
    let mut addresses = Vec::new();
    for (k, a) in &v {
        if k.starts_with("IPADDR") && !a.is_empty() {
            let prefix = v.get(&k.replace("IPADDR", "PREFIX")).cloned();
            addresses.push(match prefix {
                Some(p) => format!("{a}/{p}"),
                None => a.clone(),
            });
        }
    }
    Some(Interface {
        name,
        system: "ifcfg",
        source: source.to_string(),
        dhcp4: proto == "dhcp" || proto.starts_with("dhcp4") || proto == "dhcp+autoip",
        dhcp6: v.get("DHCPV6C").is_some_and(|s| truthy(s)) || proto == "dhcp6",
        addresses,
        mac: v.get("HWADDR").or_else(|| v.get("MACADDR")).filter(|m| !m.is_empty()).map(|m| m.to_ascii_lowercase()),
        on_boot: v.get("ONBOOT").or_else(|| v.get("STARTMODE")).map(|s| truthy(s) || s == "auto" || s == "onboot"),
    })
}

/// udev rules of the 70-persistent-net kind: `ATTR{address}=="MAC"` with `NAME="ethN"`.
pub fn parse_udev_net(text: &str, source: &str) -> Vec<PinnedName> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let mut mac = None;
        let mut name = None;
        for part in line.split(',') {
            let part = part.trim();
            if let Some(v) = part.strip_prefix("ATTR{address}==") {
                mac = Some(v.trim_matches('"').to_ascii_lowercase());
            } else if let Some(v) = part.strip_prefix("NAME=").or_else(|| part.strip_prefix("NAME:=")) {
                name = Some(v.trim_matches('"').to_string());
            }
        }
        if let (Some(mac), Some(name)) = (mac, name) {
            out.push(PinnedName { name, mac, source: source.to_string() });
        }
    }
    out
}

pub fn network(vfs: &mut Vfs) -> Network {
    let mut n = Network::default();
    let mut files = vec!["/etc/network/interfaces".to_string()];
    files.extend(list_dir(vfs, "/etc/network/interfaces.d", ""));
    for f in files {
        if let Some(t) = vfs.read_text(&f, MAX_TEXT) {
            n.interfaces.extend(parse_interfaces(&t, &f));
        }
    }
    for dir in ["/lib/netplan", "/run/netplan", "/etc/netplan"] {
        for f in list_dir(vfs, dir, ".yaml") {
            if let Some(t) = vfs.read_text(&f, MAX_TEXT) {
                n.interfaces.extend(parse_netplan(&t, &f));
            }
        }
    }
    for f in list_dir(vfs, "/etc/NetworkManager/system-connections", "") {
        if let Some(i) = vfs.read_text(&f, MAX_TEXT).and_then(|t| parse_nmconnection(&t, &f)) {
            n.interfaces.push(i);
        }
    }
    for dir in ["/usr/lib/systemd/network", "/lib/systemd/network", "/run/systemd/network", "/etc/systemd/network"] {
        for f in list_dir(vfs, dir, ".network") {
            if let Some(i) = vfs.read_text(&f, MAX_TEXT).and_then(|t| parse_networkd(&t, &f)) {
                n.interfaces.push(i);
            }
        }
        for f in list_dir(vfs, dir, ".link") {
            let Some(t) = vfs.read_text(&f, MAX_TEXT) else { continue };
            let ini = parse_ini(&t);
            if let (Some(mac), Some(name)) = (ini_get(&ini, "Match", "MACAddress"), ini_get(&ini, "Link", "Name")) {
                n.pinned_names.push(PinnedName {
                    name: name.to_string(),
                    mac: mac.to_ascii_lowercase(),
                    source: f.clone(),
                });
            }
        }
    }
    for dir in ["/etc/sysconfig/network-scripts", "/etc/sysconfig/network"] {
        for f in list_dir(vfs, dir, "") {
            let file_name = f.rsplit('/').next().unwrap_or("").to_string();
            if !file_name.starts_with("ifcfg-") || file_name.contains('~') || file_name.ends_with(".bak") {
                continue;
            }
            if let Some(i) = vfs.read_text(&f, MAX_TEXT).and_then(|t| parse_ifcfg(&t, &file_name, &f)) {
                n.interfaces.push(i);
            }
        }
    }
    for f in list_dir(vfs, "/etc/udev/rules.d", ".rules") {
        if f.contains("persistent-net") || f.contains("net-name") {
            if let Some(t) = vfs.read_text(&f, MAX_TEXT) {
                n.pinned_names.extend(parse_udev_net(&t, &f));
            }
        }
    }
    n.any_dhcp4 = n.interfaces.iter().any(|i| i.dhcp4);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifupdown() {
        let i = parse_interfaces(
            "auto lo\niface lo inet loopback\n\nallow-hotplug eth0\niface eth0 inet dhcp\niface eth0 inet6 auto\n\
             iface eth1 inet static\n  address 192.0.2.10/24\n  hwaddress ether 52:54:00:AA:BB:CC\n",
            "/etc/network/interfaces",
        );
        assert_eq!(i.len(), 2);
        assert!(i[0].dhcp4 && i[0].dhcp6 && i[0].on_boot == Some(true));
        assert_eq!((i[1].dhcp4, i[1].addresses.clone()), (false, vec!["192.0.2.10/24".to_string()]));
        assert_eq!(i[1].mac.as_deref(), Some("52:54:00:aa:bb:cc"));
        assert_eq!(i[1].on_boot, Some(false));
    }

    #[test]
    fn netplan_subset() {
        let text = "# cloud-init\nnetwork:\n  version: 2\n  ethernets:\n    eth0:\n      dhcp4: true  # primary\n      match:\n        macaddress: \"52:54:00:12:34:56\"\n      set-name: eth0\n    ens4:\n      dhcp4: no\n      addresses:\n        - 10.0.0.5/24\n        - \"10.0.0.6/24\"\n      nameservers:\n        addresses: [8.8.8.8]\n    ens5:\n      addresses: [192.0.2.1/24, 192.0.2.2/24]\n";
        let i = parse_netplan(text, "/etc/netplan/50-cloud-init.yaml");
        let by = |n: &str| i.iter().find(|x| x.name == n).unwrap().clone();
        assert!(by("eth0").dhcp4);
        assert_eq!(by("eth0").mac.as_deref(), Some("52:54:00:12:34:56"));
        assert!(!by("ens4").dhcp4);
        assert_eq!(by("ens4").addresses, ["10.0.0.5/24", "10.0.0.6/24"]);
        assert_eq!(by("ens5").addresses, ["192.0.2.1/24", "192.0.2.2/24"]);
        let flat = flatten_yaml("a:\n  - x: 1\n    y: 2\n  - z\n");
        assert!(flat.contains(&("a.x".to_string(), "1".to_string())), "{flat:?}");
        assert!(flat.contains(&("a".to_string(), "z".to_string())), "{flat:?}");
    }

    #[test]
    fn keyfiles_units_ifcfg_udev() {
        let nm = parse_nmconnection(
            "[connection]\nid=Wired\ntype=ethernet\ninterface-name=enp1s0\n[ethernet]\nmac-address=52:54:00:01:02:03\n[ipv4]\nmethod=manual\naddress1=192.0.2.5/24,192.0.2.1\n",
            "x",
        )
        .unwrap();
        assert!(!nm.dhcp4);
        assert_eq!(nm.addresses, ["192.0.2.5/24"]);
        assert_eq!(nm.mac.as_deref(), Some("52:54:00:01:02:03"));
        let nd = parse_networkd("[Match]\nName=en*\n[Network]\nDHCP=ipv4\n", "y").unwrap();
        assert!(nd.dhcp4 && !nd.dhcp6);
        let c = parse_ifcfg(
            "DEVICE=eth0\nBOOTPROTO=static\nHWADDR=52:54:00:AB:CD:EF\nIPADDR=192.0.2.9\nPREFIX=24\nONBOOT=yes\n",
            "ifcfg-eth0",
            "z",
        )
        .unwrap();
        assert!(!c.dhcp4);
        assert_eq!(c.addresses, ["192.0.2.9/24"]);
        assert_eq!(c.mac.as_deref(), Some("52:54:00:ab:cd:ef"));
        assert_eq!(c.on_boot, Some(true));
        let d = parse_ifcfg("BOOTPROTO=\"dhcp\"\n", "ifcfg-ens3", "z").unwrap();
        assert!(d.dhcp4 && d.name == "ens3");
        let u = parse_udev_net(
            "# net device ()\nSUBSYSTEM==\"net\", ACTION==\"add\", DRIVERS==\"?*\", ATTR{address}==\"52:54:00:AB:CD:EF\", ATTR{type}==\"1\", KERNEL==\"eth*\", NAME=\"eth0\"\n",
            "r",
        );
        assert_eq!((u[0].name.as_str(), u[0].mac.as_str()), ("eth0", "52:54:00:ab:cd:ef"));
    }
}
