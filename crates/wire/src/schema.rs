//! relief's contract as the wire check reads it: for each message, for each field number,
//! whether the field repeats and whether it holds text, bytes, a message or a number. Built
//! once from the descriptor set that relief-proto compiles, so the check follows the `.proto`
//! files without code of its own per message.

use std::collections::HashMap;

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};
use relief_domain::text;

/// The string fields of requests that hold free text over several lines, where tab and line
/// breaks are allowed (see [`text::Kind::Long`]). Every other string is one line. Each entry
/// must name a string field of the contract, or the schema does not build.
pub const LONG_TEXTS: &[&str] = &[
    "relief.v1.Application.basic_situation",
    "relief.v1.Application.reason",
    "relief.v1.Application.over_cap_justification",
    "relief.v1.Application.repeat_relief_justification",
    "relief.v1.PetitionRef.summary",
    "relief.v1.EligibilityCategory.description",
    "relief.v1.WithdrawCaseRequest.reason",
    "relief.v1.DecideCaseRequest.opinion",
    "relief.v1.CancelApprovalRequest.reason",
    "relief.v1.RecordMeetingDecisionRequest.opinion",
    "relief.v1.ImportedDecision.opinion",
    "relief.v1.FailPaymentRequest.reason",
    "relief.v1.ReversePaymentRequest.reason",
    "relief.v1.ReconcileStatementRequest.statement_csv",
    "relief.v1.RecordFollowUpRequest.notes",
    "relief.v1.UpdateReportNarrativeRequest.text",
];

/// What a field holds, as far as the check cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Holds {
    Text(text::Kind),
    Bytes,
    /// A message, by its index in [`Schema::messages`].
    Message(usize),
    Number(Scalar),
}

/// How a number is laid out on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scalar {
    Varint,
    Fixed32,
    Fixed64,
}

#[derive(Debug, Clone)]
pub(crate) struct Field {
    pub(crate) number: u32,
    pub(crate) name: String,
    pub(crate) holds: Holds,
    /// For a repeated field: its counter across the whole request, and its place among the
    /// repeated fields of its own message.
    pub(crate) repeated: Option<Repeated>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Repeated {
    pub(crate) slot: usize,
    pub(crate) local: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub(crate) full_name: String,
    /// Sorted by number.
    pub(crate) fields: Vec<Field>,
    /// How many of the fields repeat.
    pub(crate) repeated_fields: usize,
}

impl Message {
    pub(crate) fn field(&self, number: u32) -> Option<&Field> {
        self.fields
            .binary_search_by_key(&number, |f| f.number)
            .ok()
            .and_then(|i| self.fields.get(i))
    }
}

/// Why a descriptor set cannot be checked against.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("the descriptor set does not decode: {0}")]
    Decode(String),
    #[error("{0} refers to {1}, which the descriptor set does not hold")]
    UnknownType(String, String),
    #[error("{0} is a group, which the check does not read")]
    Group(String),
    #[error("the long-text table names {0}, which is no string field of the contract")]
    UnknownLongText(String),
}

/// The index the check walks requests with.
#[derive(Debug, Clone)]
pub struct Schema {
    pub(crate) messages: Vec<Message>,
    /// Package, then name within the package, to message index.
    by_name: HashMap<String, HashMap<String, usize>>,
    /// Message indexes that are the input of some method.
    requests: Vec<bool>,
    /// How many repeated fields the whole contract has.
    pub(crate) repeated_slots: usize,
}

impl Schema {
    /// Builds the index from an encoded `FileDescriptorSet`, with relief's [`LONG_TEXTS`].
    pub fn from_descriptor_set(bytes: &[u8]) -> Result<Schema, SchemaError> {
        Self::with_long_texts(bytes, LONG_TEXTS)
    }

    pub(crate) fn with_long_texts(
        bytes: &[u8],
        long_texts: &[&str],
    ) -> Result<Schema, SchemaError> {
        let set =
            FileDescriptorSet::decode(bytes).map_err(|e| SchemaError::Decode(e.to_string()))?;
        // First every message's name, so fields can refer to messages declared later.
        let mut declared: Vec<(String, String, &DescriptorProto)> = Vec::new();
        for file in &set.file {
            let package = file.package.clone().unwrap_or_default();
            for m in &file.message_type {
                declare(&package, "", m, &mut declared);
            }
        }
        let mut by_name: HashMap<String, HashMap<String, usize>> = HashMap::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for (i, (package, name, _)) in declared.iter().enumerate() {
            by_name
                .entry(package.clone())
                .or_default()
                .insert(name.clone(), i);
            index.insert(full_name(package, name), i);
        }
        let mut long_found = vec![false; long_texts.len()];
        let mut slots = 0usize;
        let mut messages = Vec::with_capacity(declared.len());
        for (package, name, m) in &declared {
            let full = full_name(package, name);
            let mut fields = Vec::with_capacity(m.field.len());
            let mut repeated_fields = 0usize;
            for f in &m.field {
                let field_name = f.name.clone().unwrap_or_default();
                let path = format!("{full}.{field_name}");
                let holds = match f.r#type() {
                    Type::String => {
                        let long = long_texts.iter().position(|l| *l == path);
                        if let Some(i) = long
                            && let Some(found) = long_found.get_mut(i)
                        {
                            *found = true;
                        }
                        Holds::Text(if long.is_some() {
                            text::Kind::Long
                        } else {
                            text::Kind::Line
                        })
                    }
                    Type::Bytes => Holds::Bytes,
                    Type::Message => {
                        let target = f.type_name().trim_start_matches('.');
                        let i = index.get(target).copied().ok_or_else(|| {
                            SchemaError::UnknownType(path.clone(), target.to_owned())
                        })?;
                        Holds::Message(i)
                    }
                    Type::Group => return Err(SchemaError::Group(path)),
                    Type::Double | Type::Fixed64 | Type::Sfixed64 => Holds::Number(Scalar::Fixed64),
                    Type::Float | Type::Fixed32 | Type::Sfixed32 => Holds::Number(Scalar::Fixed32),
                    Type::Int64
                    | Type::Uint64
                    | Type::Int32
                    | Type::Bool
                    | Type::Uint32
                    | Type::Enum
                    | Type::Sint32
                    | Type::Sint64 => Holds::Number(Scalar::Varint),
                };
                let repeated = (f.label() == Label::Repeated).then(|| {
                    let r = Repeated {
                        slot: slots,
                        local: repeated_fields,
                    };
                    slots += 1;
                    repeated_fields += 1;
                    r
                });
                fields.push(Field {
                    number: u32::try_from(f.number()).unwrap_or(0),
                    name: field_name,
                    holds,
                    repeated,
                });
            }
            fields.sort_by_key(|f| f.number);
            messages.push(Message {
                full_name: full,
                fields,
                repeated_fields,
            });
        }
        if let Some(i) = long_found.iter().position(|found| !found)
            && let Some(name) = long_texts.get(i)
        {
            return Err(SchemaError::UnknownLongText((*name).to_owned()));
        }
        let mut requests = vec![false; messages.len()];
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    let input = method.input_type().trim_start_matches('.');
                    if let Some(flag) = index.get(input).and_then(|&i| requests.get_mut(i)) {
                        *flag = true;
                    }
                }
            }
        }
        Ok(Schema {
            messages,
            by_name,
            requests,
            repeated_slots: slots,
        })
    }

    /// The message `package.name`, when it is the input of some method of the contract.
    pub(crate) fn request(&self, package: &str, name: &str) -> Option<usize> {
        let i = *self.by_name.get(package)?.get(name)?;
        self.requests.get(i).copied().unwrap_or(false).then_some(i)
    }

    pub(crate) fn message(&self, i: usize) -> Option<&Message> {
        self.messages.get(i)
    }

    /// The full names of the string fields of the contract that hold free text over several
    /// lines: [`LONG_TEXTS`], as found.
    pub fn long_texts(&self) -> Vec<String> {
        let mut out = Vec::new();
        for m in &self.messages {
            for f in &m.fields {
                if f.holds == Holds::Text(text::Kind::Long) {
                    out.push(format!("{}.{}", m.full_name, f.name));
                }
            }
        }
        out
    }

    /// The full names of the messages some method takes.
    pub fn requests(&self) -> Vec<String> {
        self.messages
            .iter()
            .zip(&self.requests)
            .filter(|(_, is)| **is)
            .map(|(m, _)| m.full_name.clone())
            .collect()
    }
}

fn full_name(package: &str, name: &str) -> String {
    if package.is_empty() {
        name.to_owned()
    } else {
        format!("{package}.{name}")
    }
}

/// Adds `m` and its nested messages (named `Outer.Inner`, as prost's `Name` has them).
fn declare<'a>(
    package: &str,
    outer: &str,
    m: &'a DescriptorProto,
    out: &mut Vec<(String, String, &'a DescriptorProto)>,
) {
    let name = if outer.is_empty() {
        m.name().to_owned()
    } else {
        format!("{outer}.{}", m.name())
    };
    for nested in &m.nested_type {
        declare(package, &name, nested, out);
    }
    out.push((package.to_owned(), name, m));
}
