//! The environment the credential chain and endpoint resolution read, passed in rather than read globally so
//! tests can give each case its own variables and home folder without touching the process environment.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

#[derive(Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
    /// The user's home folder (for `~/.aliyun` and `~/.alibabacloud`).
    pub home: Option<PathBuf>,
    /// The DMI product name (`/sys/class/dmi/id/product_name`), which tells an ECS instance apart.
    pub dmi_product_name: Option<String>,
}

impl Env {
    /// The process environment, `$HOME` and the machine's DMI product name.
    pub fn from_process() -> Self {
        let vars: HashMap<String, String> =
            std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect();
        let home = vars.get("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
        let dmi_product_name =
            std::fs::read_to_string("/sys/class/dmi/id/product_name").ok().map(|s| s.trim().to_string());
        Env { vars, home, dmi_product_name }
    }

    /// An environment made of the given variables only (`HOME` among them sets the home folder).
    pub fn from_vars<K: Into<String>, V: Into<String>>(vars: impl IntoIterator<Item = (K, V)>) -> Self {
        let vars: HashMap<String, String> = vars.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        let home = vars.get("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
        Env { vars, home, dmi_product_name: None }
    }

    /// A variable, treating an empty value as unset (as the SDKs do).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// A boolean switch: `true` (any case) or `1`.
    pub fn flag(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
    }

    pub fn set(&mut self, name: &str, value: &str) {
        self.vars.insert(name.to_string(), value.to_string());
        if name == "HOME" {
            self.home = Some(PathBuf::from(value));
        }
    }
}

/// Shows variable names only: values include access key secrets.
impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.vars.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("Env")
            .field("vars", &names)
            .field("home", &self.home)
            .field("dmi_product_name", &self.dmi_product_name)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_names_not_values() {
        let e = Env::from_vars([("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "hidden-value"), ("EMPTY", "")]);
        let shown = format!("{e:?}");
        assert!(shown.contains("ALIBABA_CLOUD_ACCESS_KEY_SECRET") && !shown.contains("hidden-value"), "{shown}");
        assert_eq!(e.get("EMPTY"), None);
        assert!(!e.flag("EMPTY"));
    }
}
