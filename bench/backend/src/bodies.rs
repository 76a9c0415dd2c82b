//! The fixed response bodies, built once at start-up and shared by reference
//! count, so answering costs no copy and no allocation per byte.

use bytes::Bytes;

/// The text the find/replace scenario looks for in the HTML page.
pub const HTML_NEEDLE: &str = "http://backend.internal/";
/// What the find/replace scenario puts in its place.
pub const HTML_REPLACEMENT: &str = "https://www.example.com/";

/// Exact size of the HTML page, in bytes.
pub const HTML_SIZE: usize = 16 * 1024;

/// One servable body.
#[derive(Debug, Clone)]
pub struct Body {
    /// File name used when the bodies are written to disk, and the last path
    /// segment that selects this body over HTTP.
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: Bytes,
}

/// Every body the backend serves.
#[derive(Debug, Clone)]
pub struct Bodies {
    all: Vec<Body>,
}

impl Default for Bodies {
    fn default() -> Self {
        Self::new()
    }
}

impl Bodies {
    pub fn new() -> Self {
        let octets = "application/octet-stream";
        Self {
            all: vec![
                Body {
                    name: "1k",
                    content_type: octets,
                    bytes: pattern(1024),
                },
                Body {
                    name: "16k",
                    content_type: octets,
                    bytes: pattern(16 * 1024),
                },
                Body {
                    name: "256k",
                    content_type: octets,
                    bytes: pattern(256 * 1024),
                },
                Body {
                    name: "page.html",
                    content_type: "text/html; charset=utf-8",
                    bytes: html_page(),
                },
            ],
        }
    }

    pub fn all(&self) -> &[Body] {
        &self.all
    }

    /// The body selected by the last segment of `path`, whatever comes
    /// before it, so routing prefixes added by a benchmark need no stripping.
    pub fn for_path(&self, path: &str) -> Option<&Body> {
        let last = path.rsplit('/').next().unwrap_or(path);
        self.all.iter().find(|b| b.name == last)
    }
}

/// `len` printable bytes, so the body is also valid text.
fn pattern(len: usize) -> Bytes {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\n";
    Bytes::from(
        ALPHABET
            .iter()
            .copied()
            .cycle()
            .take(len)
            .collect::<Vec<u8>>(),
    )
}

/// A 16 KiB HTML page with many absolute links to rewrite, the typical job
/// of nginx `sub_filter`.
fn html_page() -> Bytes {
    let head = "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Catalogue</title></head>\n<body>\n<h1>Catalogue</h1>\n";
    let tail = "</body></html>\n";
    let mut page = String::with_capacity(HTML_SIZE);
    page.push_str(head);
    let mut item = 0u32;
    loop {
        let line = format!(
            "<p><a href=\"{HTML_NEEDLE}items/{item:04}\">Item {item:04}</a>: a short description of the item.</p>\n"
        );
        if page.len() + line.len() + tail.len() + "<!--  -->\n".len() > HTML_SIZE {
            break;
        }
        page.push_str(&line);
        item += 1;
    }
    // Pad with a comment to the exact size.
    let pad = HTML_SIZE - page.len() - tail.len() - "<!--  -->\n".len();
    page.push_str("<!-- ");
    page.push_str(&"x".repeat(pad));
    page.push_str(" -->\n");
    page.push_str(tail);
    Bytes::from(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_exact() {
        let bodies = Bodies::new();
        let len = |name: &str| bodies.for_path(name).map(|b| b.bytes.len());
        assert_eq!(len("/bytes/1k"), Some(1024));
        assert_eq!(len("/16k"), Some(16 * 1024));
        assert_eq!(len("/x/y/256k"), Some(256 * 1024));
        assert_eq!(len("/rewrite/page.html"), Some(HTML_SIZE));
        assert!(bodies.for_path("/nothing").is_none());
        assert!(bodies.for_path("/1k/").is_none());
    }

    #[test]
    fn html_has_many_needles() {
        let page = html_page();
        let text = std::str::from_utf8(&page).unwrap_or_default();
        assert!(text.matches(HTML_NEEDLE).count() > 100);
        assert!(text.ends_with("</html>\n"));
    }
}
