//! The `/forward` answer: which extension, under which caller name, and its hashcompat body.
//!
//! The body is read by Asterisk's `CURL` with `CURLOPT(hashcompat)=yes`, which splits on raw
//! `&` and `=` before it percent-decodes: the name is cleaned (no control or bidi characters,
//! a length cap) and fully percent-encoded, and only strict extensions are ever written, so
//! nothing a CRM stores can add a key or bend the dialplan's `HASH(forwardHash,number)`.

use bytes::Bytes;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// CALLERID(name) longer than this is cut: desk phones show 20–40 characters anyway.
pub(crate) const NAME_MAX_CHARS: usize = 64;
pub(crate) use crate::numbers::is_valid_extension;

/// Unreserved URI characters stay readable; everything else (space, `&`, `=`, `%`, `+`, UTF-8) is escaped.
const NAME_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// A responsible operator found by a resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The extension to dial (validated by [`is_valid_extension`]).
    pub number: String,
    /// The caller's name for CALLERID(name), already cleaned; may be empty.
    pub name: String,
    /// Which resolver kind found it (`table`, `history`, …).
    pub resolver: &'static str,
}

impl Answer {
    /// Builds an answer from a resolver's raw values; `None` when the extension is not one.
    pub(crate) fn new(number: &str, name: &str, resolver: &'static str) -> Option<Self> {
        let number = number.trim();
        if !is_valid_extension(number) {
            return None;
        }
        Some(Self { number: number.to_string(), name: clean_name(name), resolver })
    }

    /// `name=<percent-encoded>&number=<extension>`, exactly as SPEC §4 writes it.
    pub(crate) fn body(&self) -> Bytes {
        let mut body = String::with_capacity(16 + self.name.len() * 3 + self.number.len());
        body.push_str("name=");
        body.extend(utf8_percent_encode(&self.name, NAME_ESCAPES));
        body.push_str("&number=");
        body.push_str(&self.number);
        Bytes::from(body)
    }
}

/// Makes a CRM's name fit for CALLERID(name): one line, no invisible or direction-changing
/// characters, no quotes or backslashes (they end a SIP display name), whitespace collapsed,
/// at most [`NAME_MAX_CHARS`] characters.
pub(crate) fn clean_name(raw: &str) -> String {
    let mut name = String::with_capacity(raw.len().min(NAME_MAX_CHARS * 4));
    let mut chars = 0usize;
    let mut pending_space = false;
    for c in raw.chars() {
        if c.is_whitespace() || c.is_control() {
            pending_space = !name.is_empty();
            continue;
        }
        if is_invisible(c) || matches!(c, '"' | '\\') {
            continue;
        }
        if pending_space {
            if chars + 1 >= NAME_MAX_CHARS {
                break;
            }
            name.push(' ');
            chars += 1;
            pending_space = false;
        }
        if chars >= NAME_MAX_CHARS {
            break;
        }
        name.push(c);
        chars += 1;
    }
    name
}

/// Zero-width and bidirectional formatting characters: they can make a name display as something else.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}' | '\u{00AD}')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits a body the way Asterisk's hashcompat does: on raw `&`, then the first raw `=`.
    fn hashcompat(body: &[u8]) -> Vec<(String, String)> {
        let text = std::str::from_utf8(body).expect("ascii body");
        text.split('&')
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
                (decode(key), decode(value))
            })
            .collect()
    }

    #[test]
    fn body_has_exactly_name_and_number() {
        let answer = Answer::new("101", "Иванов & Co = \"лучшие\"\r\nклиенты", "table").expect("valid");
        let body = answer.body();
        assert!(body.is_ascii());
        let pairs = hashcompat(&body);
        assert_eq!(
            pairs,
            vec![("name".to_string(), "Иванов & Co = лучшие клиенты".to_string()), ("number".into(), "101".into())]
        );
        let plain = Answer::new("102", "", "history").expect("valid");
        assert_eq!(&plain.body()[..], b"name=&number=102");
    }

    #[test]
    fn names_are_cleaned_and_capped() {
        assert_eq!(clean_name("  Ivan \t Petrov\n"), "Ivan Petrov");
        assert_eq!(clean_name("a\u{202E}b\u{200B}c\u{0007}d"), "abc d");
        assert_eq!(clean_name(&"я".repeat(500)).chars().count(), NAME_MAX_CHARS);
        let spaced = clean_name(&"ab ".repeat(100));
        assert!(spaced.chars().count() <= NAME_MAX_CHARS && !spaced.ends_with(' '), "{spaced:?}");
        assert_eq!(clean_name("\"\\"), "");
    }

    #[test]
    fn only_strict_extensions_are_accepted() {
        for good in ["101", "2001", "*65", "sales_1", "+79161234567"] {
            assert!(is_valid_extension(good), "{good}");
        }
        for bad in ["", "10 1", "101&number=666", "101\n", "101,102", "1/2", "${EXTEN}", &"1".repeat(21)] {
            assert!(!is_valid_extension(bad), "{bad:?}");
        }
        assert!(Answer::new(" 101 ", "x", "table").is_some());
    }
}
