//! A field-level problem with input. Validation collects every problem at once so a client
//! can fix a form in one round trip; the API edge turns these into gRPC field violations.

use std::fmt;

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

    /// Text must be at most `max_chars` characters; required text must also be non-blank.
    pub fn text(&mut self, field: &str, value: &str, max_chars: usize, required: bool) {
        if required && value.trim().is_empty() {
            self.add(field, "is required");
        } else if value.chars().count() > max_chars {
            self.add(
                field,
                format_args!("must be at most {max_chars} characters"),
            );
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
