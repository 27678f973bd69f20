//! What relief accepts as text. Names and lines are one line of printable text; long texts
//! (a situation, a reason, an opinion, a note, a narrative, a statement) may also hold tabs and
//! line breaks. Nothing may hold control characters, bidirectional controls (which make text
//! display in an order other than it is stored, so a name can pass for another) or Unicode
//! non-characters, and stored text is in Unicode normalization form C, so that the same name
//! typed on two keyboards compares equal on SQLite and PostgreSQL alike. The wire check
//! applies these rules to every string of every request; the domain applies them to what it
//! validates itself, such as configured rules.

use std::borrow::Cow;
use std::fmt;

use unicode_normalization::{IsNormalized, UnicodeNormalization as _, is_nfc_quick};

/// What a piece of text is allowed to hold besides printable characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A name, a code, an id or a line (an address, a unit's name): no control character.
    Line,
    /// Free text over several lines: tab and line feed are allowed, and a CR LF pair is
    /// normalised to LF.
    Long,
}

/// The first character that makes a text unacceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextError {
    /// A C0 or C1 control character, or DEL (tab and line feed are fine in a long text).
    Control { found: char, kind: Kind },
    /// U+202A–U+202E or U+2066–U+2069.
    Bidi(char),
    /// U+FDD0–U+FDEF or the last two code points of a plane (U+FFFE, U+FFFF, U+1FFFE…).
    Noncharacter(char),
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TextError::Control {
                found,
                kind: Kind::Line,
            } => write!(
                f,
                "must be one line without control characters (found U+{:04X})",
                u32::from(*found)
            ),
            TextError::Control {
                found,
                kind: Kind::Long,
            } => write!(
                f,
                "must not contain control characters other than tab and line breaks (found U+{:04X})",
                u32::from(*found)
            ),
            TextError::Bidi(c) => write!(
                f,
                "must not contain bidirectional control characters (found U+{:04X})",
                u32::from(*c)
            ),
            TextError::Noncharacter(c) => write!(
                f,
                "must not contain Unicode non-characters (found U+{:04X})",
                u32::from(*c)
            ),
        }
    }
}

impl std::error::Error for TextError {}

/// U+202A–U+202E (embeddings and overrides) and U+2066–U+2069 (isolates).
pub const fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// The 66 code points Unicode reserves as never being characters.
pub const fn is_noncharacter(c: char) -> bool {
    let u = c as u32;
    (u >= 0xFDD0 && u <= 0xFDEF) || (u & 0xFFFE) == 0xFFFE
}

/// Checks every character of `value` against the rules of `kind`. A long text may hold CR
/// only as part of a CR LF pair, which [`normalize`] turns into LF.
pub fn check(value: &str, kind: Kind) -> Result<(), TextError> {
    if value.is_ascii() {
        // The common case: only the ASCII controls can be wrong.
        let bytes = value.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            if b < 0x20 || b == 0x7F {
                let next = bytes.get(i + 1).copied();
                if !layout_allowed(b, next, kind) {
                    return Err(TextError::Control {
                        found: char::from(b),
                        kind,
                    });
                }
            }
        }
        return Ok(());
    }
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_control() {
            let next = chars.peek().and_then(|n| u8::try_from(*n).ok());
            let allowed = u8::try_from(c).is_ok_and(|b| layout_allowed(b, next, kind));
            if !allowed {
                return Err(TextError::Control { found: c, kind });
            }
        } else if is_bidi_control(c) {
            return Err(TextError::Bidi(c));
        } else if is_noncharacter(c) {
            return Err(TextError::Noncharacter(c));
        }
    }
    Ok(())
}

/// Whether the ASCII control `b` (followed by `next`) is allowed in text of `kind`.
fn layout_allowed(b: u8, next: Option<u8>, kind: Kind) -> bool {
    match kind {
        Kind::Line => false,
        Kind::Long => b == b'\t' || b == b'\n' || (b == b'\r' && next == Some(b'\n')),
    }
}

/// Whether `value` is already as relief stores it: in NFC, and for a long text without CR.
pub fn is_normalized(value: &str, kind: Kind) -> bool {
    if value.is_ascii() {
        return kind == Kind::Line || !value.contains('\r');
    }
    if kind == Kind::Long && value.contains('\r') {
        return false;
    }
    match is_nfc_quick(value.chars()) {
        IsNormalized::Yes => true,
        IsNormalized::No => false,
        IsNormalized::Maybe => unicode_normalization::is_nfc(value),
    }
}

/// `value` as relief stores it: CR LF as LF in a long text, then NFC.
pub fn normalize(value: &str, kind: Kind) -> String {
    let value: Cow<'_, str> = match kind {
        Kind::Long if value.contains("\r\n") => Cow::Owned(value.replace("\r\n", "\n")),
        Kind::Long | Kind::Line => Cow::Borrowed(value),
    };
    value.nfc().collect()
}

/// Checks `value` and returns it as relief stores it, borrowing when it already is.
pub fn clean(value: &str, kind: Kind) -> Result<Cow<'_, str>, TextError> {
    check(value, kind)?;
    if is_normalized(value, kind) {
        Ok(Cow::Borrowed(value))
    } else {
        Ok(Cow::Owned(normalize(value, kind)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn characters_are_checked_by_kind() {
        use Kind::{Line, Long};
        let ok: &[(&str, Kind)] = &[
            ("张三", Line),
            ("O'Brien-Smith Jr.", Line),
            ("", Line),
            ("家庭困难\n长期患病", Long),
            ("a\tb", Long),
            ("windows\r\nline", Long),
            ("emoji 🙂 and é", Line),
            ("\u{200F}", Line), // a right-to-left mark is not an override
        ];
        for (value, kind) in ok {
            assert_eq!(check(value, *kind), Ok(()), "{value:?} as {kind:?}");
        }
        let bad: &[(&str, Kind, TextError)] = &[
            (
                "a\0b",
                Line,
                TextError::Control {
                    found: '\0',
                    kind: Line,
                },
            ),
            (
                "a\0b",
                Long,
                TextError::Control {
                    found: '\0',
                    kind: Long,
                },
            ),
            (
                "a\tb",
                Line,
                TextError::Control {
                    found: '\t',
                    kind: Line,
                },
            ),
            (
                "a\nb",
                Line,
                TextError::Control {
                    found: '\n',
                    kind: Line,
                },
            ),
            (
                "lone\rcr",
                Long,
                TextError::Control {
                    found: '\r',
                    kind: Long,
                },
            ),
            (
                "trailing\r",
                Long,
                TextError::Control {
                    found: '\r',
                    kind: Long,
                },
            ),
            (
                "\u{1}",
                Long,
                TextError::Control {
                    found: '\u{1}',
                    kind: Long,
                },
            ),
            (
                "del\u{7f}",
                Line,
                TextError::Control {
                    found: '\u{7f}',
                    kind: Line,
                },
            ),
            (
                "张\u{85}三",
                Long,
                TextError::Control {
                    found: '\u{85}',
                    kind: Long,
                },
            ),
            (
                "张\u{9f}三",
                Line,
                TextError::Control {
                    found: '\u{9f}',
                    kind: Line,
                },
            ),
            ("张\u{202E}三", Line, TextError::Bidi('\u{202E}')),
            ("\u{202A}", Long, TextError::Bidi('\u{202A}')),
            ("x\u{2066}y", Line, TextError::Bidi('\u{2066}')),
            ("x\u{2069}", Long, TextError::Bidi('\u{2069}')),
            ("\u{FFFF}", Line, TextError::Noncharacter('\u{FFFF}')),
            ("\u{FFFE}", Long, TextError::Noncharacter('\u{FFFE}')),
            ("\u{FDD0}", Line, TextError::Noncharacter('\u{FDD0}')),
            ("\u{FDEF}", Line, TextError::Noncharacter('\u{FDEF}')),
            ("\u{10FFFF}", Line, TextError::Noncharacter('\u{10FFFF}')),
            ("\u{1FFFE}", Line, TextError::Noncharacter('\u{1FFFE}')),
        ];
        for (value, kind, error) in bad {
            assert_eq!(check(value, *kind), Err(*error), "{value:?} as {kind:?}");
        }
    }

    #[test]
    fn errors_name_the_code_point() {
        let e = check("a\u{202E}b", Kind::Line).unwrap_err();
        assert!(e.to_string().contains("U+202E"), "{e}");
        let e = check("a\tb", Kind::Line).unwrap_err();
        assert!(e.to_string().contains("U+0009"), "{e}");
    }

    #[test]
    fn text_is_stored_in_nfc_with_lf() {
        use Kind::{Line, Long};
        let cases: &[(&str, Kind, &str, bool)] = &[
            ("e\u{301}", Line, "\u{e9}", false),
            ("\u{e9}", Line, "\u{e9}", true),
            ("张三", Line, "张三", true),
            ("a\r\nb", Long, "a\nb", false),
            ("a\r\nb", Line, "a\r\nb", true),
            ("e\u{301}\r\n", Long, "\u{e9}\n", false),
            ("\u{212B}", Line, "\u{C5}", false), // the Ångström sign is Å
            ("plain", Long, "plain", true),
        ];
        for (value, kind, stored, already) in cases {
            assert_eq!(normalize(value, *kind), *stored, "{value:?}");
            assert_eq!(is_normalized(value, *kind), *already, "{value:?}");
            if let Ok(cleaned) = clean(value, *kind) {
                assert_eq!(cleaned, *stored, "{value:?}");
                assert_eq!(matches!(cleaned, Cow::Borrowed(_)), *already, "{value:?}");
            }
        }
    }

    proptest! {
        #[test]
        fn cleaned_text_is_normalized_and_still_acceptable(
            chars in proptest::collection::vec(any::<char>(), 0..48),
            long in any::<bool>(),
        ) {
            let s: String = chars.into_iter().collect();
            let kind = if long { Kind::Long } else { Kind::Line };
            if let Ok(cleaned) = clean(&s, kind) {
                prop_assert!(is_normalized(&cleaned, kind));
                prop_assert_eq!(check(&cleaned, kind), Ok(()));
            }
        }
    }
}
