//! RAM policy documents, read the way RAM evaluates them for the one question imgport asks: may ECS import from
//! the user's bucket? The client's preflight and the local cloud's ImportImage use the same reading, so a role the
//! preflight accepts is a role the local cloud accepts.
//!
//! Known simplifications: `Resource` and `Condition` are not evaluated (any resource counts), and `NotAction` is
//! not understood (a statement using it matches nothing).

use serde_json::Value;

/// The role ECS assumes to read the user's bucket during an import.
pub const IMPORT_ROLE: &str = "AliyunECSImageImportDefaultRole";
/// The system policy that grants the import role what it needs.
pub const IMPORT_POLICY: &str = "AliyunECSImageImportRolePolicy";
/// The service principal ECS assumes roles as.
pub const ECS_PRINCIPAL: &str = "ecs.aliyuncs.com";
/// The trust policy the console gives the import role: ECS may assume it.
pub const ECS_TRUST_POLICY: &str = r#"{"Statement":[{"Action":"sts:AssumeRole","Effect":"Allow","Principal":{"Service":["ecs.aliyuncs.com"]}}],"Version":"1"}"#;
/// The actions the import reads the user's bucket with: a custom policy must allow them all to stand in for
/// [`IMPORT_POLICY`].
pub const IMPORT_ACTIONS: [&str; 3] = ["oss:GetObject", "oss:GetBucketLocation", "oss:GetBucketInfo"];

/// A string or a list of strings, as policy documents write `Action`, `Principal.Service` and `Resource`.
fn strings(v: Option<&Value>) -> Vec<&str> {
    match v {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(|x| x.as_str()).collect(),
        _ => Vec::new(),
    }
}

fn statements(doc: &Value) -> Vec<&Value> {
    match doc.get("Statement") {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(s @ Value::Object(_)) => vec![s],
        _ => Vec::new(),
    }
}

/// Case-insensitive match of an action against a pattern with `*` wildcards.
pub fn glob(pattern: &str, action: &str) -> bool {
    let (p, a) = (pattern.to_ascii_lowercase(), action.to_ascii_lowercase());
    let parts: Vec<&str> = p.split('*').collect();
    if parts.len() == 1 {
        return p == a;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !a.starts_with(first) || a.len() < first.len() + last.len() || !a.ends_with(last) {
        return false;
    }
    let mut rest = &a[first.len()..a.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

fn effect_is(st: &Value, effect: &str) -> bool {
    st.get("Effect").and_then(|e| e.as_str()).is_some_and(|e| e.eq_ignore_ascii_case(effect))
}

/// Whether a trust policy lets the service `principal` (such as [`ECS_PRINCIPAL`]) assume the role.
pub fn trusts(doc: &str, principal: &str) -> bool {
    let Ok(v) = serde_json::from_str::<Value>(doc) else { return false };
    statements(&v).iter().any(|st| {
        effect_is(st, "Allow")
            && strings(st.get("Action")).iter().any(|a| glob(a, "sts:AssumeRole"))
            && strings(st.get("Principal").and_then(|p| p.get("Service"))).contains(&principal)
    })
}

/// Whether a policy document allows `action` (an `Allow` statement matches it and no `Deny` statement does).
pub fn allows(doc: &str, action: &str) -> bool {
    let Ok(v) = serde_json::from_str::<Value>(doc) else { return false };
    let sts = statements(&v);
    let hit = |effect: &str| {
        sts.iter().any(|st| effect_is(st, effect) && strings(st.get("Action")).iter().any(|a| glob(a, action)))
    };
    hit("Allow") && !hit("Deny")
}

/// Whether a custom policy document grants everything the import needs ([`IMPORT_ACTIONS`]).
pub fn grants_import(doc: &str) -> bool {
    IMPORT_ACTIONS.iter().all(|a| allows(doc, a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("oss:GetObject", "oss:getobject"));
        assert!(glob("oss:*", "oss:GetObject"));
        assert!(glob("*", "oss:GetObject"));
        assert!(glob("oss:*Object", "oss:GetObject"));
        assert!(!glob("oss:Put*", "oss:GetObject"));
        assert!(!glob("oss:GetObject*x", "oss:GetObject"));
        assert!(!glob("ecs:*", "oss:GetObject"));
    }

    #[test]
    fn trust_and_grants() {
        assert!(trusts(ECS_TRUST_POLICY, ECS_PRINCIPAL));
        let other = ECS_TRUST_POLICY.replace("ecs.aliyuncs.com", "fc.aliyuncs.com");
        assert!(!trusts(&other, ECS_PRINCIPAL));
        assert!(!trusts("not json", ECS_PRINCIPAL));
        let all = r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"oss:Get*","Resource":"*"}]}"#;
        assert!(grants_import(all));
        let denied = r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"oss:*","Resource":"*"},
            {"Effect":"Deny","Action":"oss:GetObject","Resource":"*"}]}"#;
        assert!(!grants_import(denied));
        let partial = r#"{"Version":"1","Statement":{"Effect":"Allow","Action":["oss:GetObject"],"Resource":"*"}}"#;
        assert!(!grants_import(partial));
    }
}
