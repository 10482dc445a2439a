//! Just enough XML for the flat response shapes of OSS and S3: find elements by name, unescape text.

/// The inner text of every `<name>...</name>` in `xml`, in order (not nested elements of the same name).
pub fn elements<'a>(xml: &'a str, name: &str) -> Vec<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        match after.find(&close) {
            Some(end) => {
                out.push(&after[..end]);
                rest = &after[end + close.len()..];
            }
            None => break,
        }
    }
    out
}

/// The unescaped text of the first `<name>` element.
pub fn text(xml: &str, name: &str) -> Option<String> {
    elements(xml, name).first().map(|s| unescape(s))
}

pub fn unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    s.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#34;", "\"")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_unescapes() {
        let x = "<R><Part><ETag>&quot;ab&quot;</ETag></Part><Part><ETag>x</ETag></Part><N>3</N></R>";
        let parts = elements(x, "Part");
        assert_eq!(parts.len(), 2);
        assert_eq!(text(parts[0], "ETag").as_deref(), Some("\"ab\""));
        assert_eq!(text(x, "N").as_deref(), Some("3"));
        assert_eq!(text(x, "Missing"), None);
    }
}
