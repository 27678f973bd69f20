//! A field-level problem with input. Validation collects every problem at once so a client
//! can fix a form in one round trip; the API edge turns these into gRPC field violations.

use std::fmt;

use crate::case::MAX_LINE_CHARS;
use crate::text;

/// The most problems one answer lists; the rest are counted in one more entry, so a request
/// with a million bad fields gets an answer of a few kilobytes.
pub const MAX_REPORTED: usize = 20;

/// The first [`MAX_REPORTED`] of `violations`, and when more were found (in `violations`
/// beyond those, plus `omitted` that the caller counted without keeping), one entry on the
/// whole request saying how many were left out.
pub fn summarize(mut violations: Vec<Violation>, omitted: usize) -> Vec<Violation> {
    let left_out = violations
        .len()
        .saturating_sub(MAX_REPORTED)
        .saturating_add(omitted);
    violations.truncate(MAX_REPORTED);
    if left_out > 0 {
        violations.push(Violation::new(
            "",
            format_args!("{left_out} more problems not listed"),
        ));
    }
    violations
}

/// One bad field: its path in the request (`application.recipient.resident_id_number`,
/// `rules.approval_chain.steps[2].role`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub description: String,
}

impl Violation {
    pub fn new(field: impl Into<String>, description: impl fmt::Display) -> Self {
        Self {
            field: field.into(),
            description: description.to_string(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.description)
    }
}

/// Collects violations while a value is checked field by field.
#[derive(Debug, Default)]
pub struct Violations(Vec<Violation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, description: impl fmt::Display) {
        self.0.push(Violation::new(field, description));
    }

    /// Records the error of `result` under `field` and returns the value when there was none.
    pub fn check<T, E: fmt::Display>(
        &mut self,
        field: impl Into<String>,
        result: Result<T, E>,
    ) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.add(field, e);
                None
            }
        }
    }

    /// Text must be at most `max_chars` characters of what [`text::check`] allows (a text
    /// allowed more than a line's characters is a long text, which may hold line breaks);
    /// required text must also be non-blank.
    pub fn text(&mut self, field: &str, value: &str, max_chars: usize, required: bool) {
        let kind = if max_chars > MAX_LINE_CHARS {
            text::Kind::Long
        } else {
            text::Kind::Line
        };
        if required && value.trim().is_empty() {
            self.add(field, "is required");
        } else if value.chars().count() > max_chars {
            self.add(
                field,
                format_args!("must be at most {max_chars} characters"),
            );
        } else if let Err(e) = text::check(value, kind) {
            self.add(field, e);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_result<T>(self, value: T) -> Result<T, Vec<Violation>> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self.0)
        }
    }

    pub fn into_vec(self) -> Vec<Violation> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(n: usize) -> Vec<Violation> {
        (0..n)
            .map(|i| Violation::new(format!("f{i}"), "is wrong"))
            .collect()
    }

    #[test]
    fn answers_list_at_most_twenty_and_count_the_rest() {
        // (found, counted without keeping) -> (listed, left out)
        let cases: &[(usize, usize, usize, Option<usize>)] = &[
            (0, 0, 0, None),
            (1, 0, 1, None),
            (20, 0, 20, None),
            (21, 0, 20, Some(1)),
            (100, 0, 20, Some(80)),
            (20, 5, 20, Some(5)),
            (3, 7, 3, Some(7)),
        ];
        for &(found, omitted, listed, left_out) in cases {
            let out = summarize(problems(found), omitted);
            let summary = left_out.map(|n| format!("{n} more problems not listed"));
            assert_eq!(
                out.len(),
                listed + usize::from(summary.is_some()),
                "{found} + {omitted}"
            );
            assert_eq!(
                out.last()
                    .filter(|v| v.field.is_empty())
                    .map(|v| v.description.clone()),
                summary,
                "{found} + {omitted}"
            );
        }
    }

    #[test]
    fn text_refuses_what_the_text_rules_refuse() {
        let mut v = Violations::new();
        v.text("name", "a\tb", 64, true);
        v.text("situation", "a\tb\nc", 4000, true);
        v.text("other", "x\u{202E}", 4000, false);
        let fields: Vec<String> = v.into_vec().into_iter().map(|v| v.field).collect();
        assert_eq!(fields, ["name", "other"]);
    }
}
