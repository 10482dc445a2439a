//! The little XML the APIs need: a writer for response bodies and a reader for small request bodies
//! (CompleteMultipartUpload, CreateBucketConfiguration, Delete).
//!
//! The reader is iterative and refuses documents nested deeper than [`MAX_DEPTH`]; the tree drops without
//! recursion too, so no request body can exhaust the stack.

pub(crate) use imgport_wire::xml_escape as escape;

/// Builds an XML document element by element.
pub struct XmlWriter {
    out: String,
}

impl Default for XmlWriter {
    fn default() -> Self {
        XmlWriter { out: String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n") }
    }
}

impl XmlWriter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn open(&mut self, tag: &str) -> &mut Self {
        self.out.push('<');
        self.out.push_str(tag);
        self.out.push('>');
        self
    }

    pub fn close(&mut self, tag: &str) -> &mut Self {
        self.out.push_str("</");
        self.out.push_str(tag);
        self.out.push_str(">\n");
        self
    }

    /// `<tag>text</tag>` with the text escaped.
    pub fn elem(&mut self, tag: &str, text: impl AsRef<str>) -> &mut Self {
        self.out.push('<');
        self.out.push_str(tag);
        self.out.push('>');
        self.out.push_str(&escape(text.as_ref()));
        self.out.push_str("</");
        self.out.push_str(tag);
        self.out.push_str(">\n");
        self
    }

    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.out)
    }
}

/// An element: its name (namespace prefix dropped), its text and its child elements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

impl Drop for Element {
    /// Drops the descendants from a list rather than recursively, whatever the depth.
    fn drop(&mut self) {
        let mut pending = std::mem::take(&mut self.children);
        while let Some(mut c) = pending.pop() {
            pending.append(&mut c.children);
        }
    }
}

/// The deepest nesting a request body may have. OSS documents use four levels at most
/// (`Delete/Object/Key`, `CompleteMultipartUpload/Part/ETag`); anything far deeper is hostile.
pub const MAX_DEPTH: usize = 32;

impl Element {
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The trimmed text of a child element.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed XML: {0}")]
pub struct XmlError(pub String);

fn err<T>(msg: &str) -> Result<T, XmlError> {
    Err(XmlError(msg.to_string()))
}

fn decode_entities(s: &str) -> Result<String, XmlError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let end = rest[i..].find(';').ok_or_else(|| XmlError("unterminated entity".into()))?;
        let ent = &rest[i + 1..i + end];
        match ent {
            "amp" => out.push('&'),
            "lt" => out.push('<'),
            "gt" => out.push('>'),
            "quot" => out.push('"'),
            "apos" => out.push('\''),
            _ => {
                let code = if let Some(h) = ent.strip_prefix("#x").or_else(|| ent.strip_prefix("#X")) {
                    u32::from_str_radix(h, 16).ok()
                } else if let Some(d) = ent.strip_prefix('#') {
                    d.parse().ok()
                } else {
                    None
                };
                out.push(code.and_then(char::from_u32).ok_or_else(|| XmlError(format!("unknown entity &{ent};")))?);
            }
        }
        rest = &rest[i + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn local_name(tag: &str) -> &str {
    tag.rsplit_once(':').map_or(tag, |(_, n)| n)
}

/// Parses a small document into its root element. Attributes are ignored; mixed content keeps the text.
pub fn parse(input: &str) -> Result<Element, XmlError> {
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut rest = input.trim_start_matches('\u{feff}');
    loop {
        let Some(lt) = rest.find('<') else {
            if !rest.trim().is_empty() && stack.is_empty() {
                return err("text outside the root element");
            }
            break;
        };
        let text = &rest[..lt];
        if let Some(top) = stack.last_mut() {
            top.text.push_str(&decode_entities(text)?);
        } else if !text.trim().is_empty() {
            return err("text outside the root element");
        }
        rest = &rest[lt..];
        if let Some(r) = rest.strip_prefix("<?") {
            let end = r.find("?>").ok_or_else(|| XmlError("unterminated declaration".into()))?;
            rest = &r[end + 2..];
        } else if let Some(r) = rest.strip_prefix("<!--") {
            let end = r.find("-->").ok_or_else(|| XmlError("unterminated comment".into()))?;
            rest = &r[end + 3..];
        } else if let Some(r) = rest.strip_prefix("<![CDATA[") {
            let end = r.find("]]>").ok_or_else(|| XmlError("unterminated CDATA".into()))?;
            match stack.last_mut() {
                Some(top) => top.text.push_str(&r[..end]),
                None => return err("CDATA outside the root element"),
            }
            rest = &r[end + 3..];
        } else if rest.starts_with("<!") {
            let end = rest.find('>').ok_or_else(|| XmlError("unterminated doctype".into()))?;
            rest = &rest[end + 1..];
        } else if let Some(r) = rest.strip_prefix("</") {
            let end = r.find('>').ok_or_else(|| XmlError("unterminated end tag".into()))?;
            let name = local_name(r[..end].trim());
            let el = stack.pop().ok_or_else(|| XmlError("end tag without start".into()))?;
            if el.name != name {
                return Err(XmlError(format!("</{name}> closes <{}>", el.name)));
            }
            match stack.last_mut() {
                Some(parent) => parent.children.push(el),
                None if root.is_none() => root = Some(el),
                None => return err("more than one root element"),
            }
            rest = &r[end + 1..];
        } else {
            let r = &rest[1..];
            let end = r.find('>').ok_or_else(|| XmlError("unterminated start tag".into()))?;
            let inner = &r[..end];
            let self_closing = inner.ends_with('/');
            let inner = inner.trim_end_matches('/');
            let name = inner.split(|c: char| c.is_whitespace()).next().unwrap_or("");
            if name.is_empty() {
                return err("empty tag name");
            }
            if root.is_some() && stack.is_empty() {
                return err("more than one root element");
            }
            let el = Element { name: local_name(name).to_string(), text: String::new(), children: Vec::new() };
            if self_closing {
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            } else {
                if stack.len() >= MAX_DEPTH {
                    return err("elements nested too deeply");
                }
                stack.push(el);
            }
            rest = &r[end + 1..];
        }
    }
    if !stack.is_empty() {
        return err("unclosed element");
    }
    root.ok_or_else(|| XmlError("no root element".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_multipart_body() {
        let doc = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CompleteMultipartUpload xmlns=\"x\"><Part><PartNumber>1</PartNumber><ETag>&quot;AB&quot;</ETag></Part>\n<Part><PartNumber> 2 </PartNumber><ETag>\"CD\"</ETag></Part><!-- c --></CompleteMultipartUpload>";
        let root = parse(doc).expect("parses");
        assert_eq!(root.name, "CompleteMultipartUpload");
        let parts: Vec<(&str, &str)> = root
            .children_named("Part")
            .map(|p| (p.child_text("PartNumber").unwrap_or(""), p.child_text("ETag").unwrap_or("")))
            .collect();
        assert_eq!(parts, vec![("1", "\"AB\""), ("2", "\"CD\"")]);
    }

    #[test]
    fn malformed() {
        for bad in ["", "<a>", "<a></b>", "<a/><b/>", "x<a/>", "<a>&bogus;</a>", "<a>&amp</a>"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse("<a/>").map(|e| e.name.clone()), Ok("a".to_string()));
        assert_eq!(parse("<a>&#65;&#x42;<![CDATA[<c>]]></a>").map(|e| e.text.clone()), Ok("AB<c>".to_string()));
    }

    #[test]
    fn nesting_is_bounded() {
        let doc = |n: usize| format!("{}{}", "<a>".repeat(n), "</a>".repeat(n));
        assert!(parse(&doc(MAX_DEPTH)).is_ok());
        assert_eq!(parse(&doc(MAX_DEPTH + 1)), Err(XmlError("elements nested too deeply".into())));
        assert!(parse(&doc(1_000_000)).is_err());
        assert!(parse(&format!("{}<b/>{}", "<a>".repeat(MAX_DEPTH), "</a>".repeat(MAX_DEPTH))).is_ok());
        // A tree built by hand as deep as memory allows still drops without recursion.
        let mut e = Element { name: "leaf".into(), text: String::new(), children: Vec::new() };
        for _ in 0..200_000 {
            e = Element { name: "a".into(), text: String::new(), children: vec![e] };
        }
        drop(e);
    }

    #[test]
    fn json_bodies_have_a_depth_limit_too() {
        // serde_json refuses nesting beyond 128 levels, so admin and policy JSON cannot recurse deeply either.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(serde_json::from_str::<serde_json::Value>(&deep).is_err());
        let deep = format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
        assert!(serde_json::from_str::<serde_json::Value>(&deep).is_err());
    }

    #[test]
    fn writer_escapes() {
        let mut w = XmlWriter::new();
        w.open("R").elem("K", "a<b&\"c\"").close("R");
        let s = w.finish();
        assert!(s.contains("<K>a&lt;b&amp;&quot;c&quot;</K>"), "{s}");
        assert_eq!(parse(&s).map(|r| r.child_text("K").map(str::to_string)), Ok(Some("a<b&\"c\"".to_string())));
    }
}
