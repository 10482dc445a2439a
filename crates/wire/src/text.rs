//! Text forms of the wire: XML escaping and quoted header values.

/// Escapes text for XML element content and attribute values.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A quoted header or XML value (an ETag) without its surrounding whitespace and quotes.
pub fn unquote(s: &str) -> String {
    s.trim().trim_matches('"').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(xml_escape("a<&>"), "a&lt;&amp;&gt;");
        assert_eq!(xml_escape("\"it's\""), "&quot;it&apos;s&quot;");
        assert_eq!(xml_escape("plain é"), "plain é");
    }

    #[test]
    fn unquotes_etags() {
        assert_eq!(unquote(" \"abc\" "), "abc");
        assert_eq!(unquote("abc"), "abc");
        assert_eq!(unquote("\"\""), "");
    }
}
