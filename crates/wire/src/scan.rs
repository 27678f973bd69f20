//! One walk over a request's protobuf bytes, guided by the [`Schema`], before anything is
//! decoded: it counts the elements of every repeated field (across the whole request, so a
//! message sent many times over, which protobuf merges, counts too), bounds how deep messages
//! nest, and checks every string against the text rules. A request with too many elements is
//! refused at the field that crossed the limit, having cost the walk and no allocation per
//! element. When some string is fine but not yet as relief stores it (not NFC, or a long text
//! with CR LF), a second walk writes the request again with those strings normalised.

use relief_domain::text;
use relief_domain::violation::{MAX_REPORTED, Violation};

use crate::Limits;
use crate::schema::{Field, Holds, Scalar, Schema};

/// Wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;
/// The largest field number protobuf allows.
const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;

/// A request the walk will not let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The bytes are not a message of the schema's shape; the text names the problem.
    Malformed(String),
    /// The request breaks a rule: the problems kept (at most [`MAX_REPORTED`]) and how many
    /// more were found.
    Invalid {
        violations: Vec<Violation>,
        omitted: usize,
    },
}

/// What the walk found in a request it lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Passed {
    /// Some string must be normalised: decode [`rewrite`]'s output instead of the request.
    pub(crate) rewrite: bool,
}

/// Walks `data` as the message `root` of `schema`.
pub(crate) fn scan(
    schema: &Schema,
    root: usize,
    data: &[u8],
    limits: Limits,
) -> Result<Passed, Refusal> {
    let mut walk = Walk::new(schema, limits);
    walk.message(root, data, 0, None)?;
    if walk.violations.is_empty() {
        Ok(Passed {
            rewrite: walk.rewrite,
        })
    } else {
        Err(Refusal::Invalid {
            violations: walk.violations,
            omitted: walk.omitted,
        })
    }
}

/// `data`, which [`scan`] passed, with every string as relief stores it.
pub(crate) fn rewrite(
    schema: &Schema,
    root: usize,
    data: &[u8],
    limits: Limits,
) -> Result<Vec<u8>, Refusal> {
    let mut walk = Walk::new(schema, limits);
    let mut out = Vec::with_capacity(data.len());
    walk.message(root, data, 0, Some(&mut out))?;
    Ok(out)
}

/// One step of the path to where the walk is: a field, with the element's index when the
/// field repeats.
struct Step<'s> {
    name: &'s str,
    index: Option<usize>,
}

struct Walk<'s> {
    schema: &'s Schema,
    limits: Limits,
    /// Elements seen so far per repeated field of the contract.
    totals: Vec<usize>,
    /// Elements seen per repeated field of each message being walked, innermost last: the
    /// index an element shows in a path.
    locals: Vec<usize>,
    path: Vec<Step<'s>>,
    violations: Vec<Violation>,
    omitted: usize,
    rewrite: bool,
}

impl<'s> Walk<'s> {
    fn new(schema: &'s Schema, limits: Limits) -> Self {
        Self {
            schema,
            limits,
            totals: vec![0; schema.repeated_slots],
            locals: Vec::new(),
            path: Vec::new(),
            violations: Vec::new(),
            omitted: 0,
            rewrite: false,
        }
    }

    /// The path of the current message, then `field` (and its element's index).
    fn path_to(&self, field: Option<(&str, Option<usize>)>) -> String {
        let mut out = String::new();
        let steps = self.path.iter().map(|s| (s.name, s.index)).chain(field);
        for (name, index) in steps {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(name);
            if let Some(i) = index {
                out.push_str(&format!("[{i}]"));
            }
        }
        out
    }

    fn malformed(&self, field: Option<(&str, Option<usize>)>, problem: &str) -> Refusal {
        let at = self.path_to(field);
        Refusal::Malformed(if at.is_empty() {
            problem.to_owned()
        } else {
            format!("{at}: {problem}")
        })
    }

    fn refuse(&self, field: Option<(&str, Option<usize>)>, problem: String) -> Refusal {
        let at = self.path_to(field);
        Refusal::Invalid {
            violations: vec![Violation::new(at, problem)],
            omitted: 0,
        }
    }

    fn violation(&mut self, at: String, problem: impl std::fmt::Display) {
        if self.violations.len() < MAX_REPORTED {
            self.violations.push(Violation::new(at, problem));
        } else {
            self.omitted = self.omitted.saturating_add(1);
        }
    }

    /// Counts `n` more elements of `field`; returns the index of the first of them within
    /// the current message (for paths), or `None` for a field that does not repeat.
    fn count(&mut self, field: &Field, base: usize, n: usize) -> Result<Option<usize>, Refusal> {
        let Some(r) = field.repeated else {
            return Ok(None);
        };
        let total = self
            .totals
            .get_mut(r.slot)
            .ok_or_else(|| Refusal::Malformed("the schema is inconsistent".to_owned()))?;
        *total = total.saturating_add(n);
        if *total > self.limits.max_repeated_elements {
            let max = self.limits.max_repeated_elements;
            return Err(self.refuse(
                Some((&field.name, None)),
                format!("must have at most {max} elements"),
            ));
        }
        let local = self
            .locals
            .get_mut(base.saturating_add(r.local))
            .ok_or_else(|| Refusal::Malformed("the schema is inconsistent".to_owned()))?;
        let index = *local;
        *local = local.saturating_add(n);
        Ok(Some(index))
    }

    /// Walks one message; with `out`, writes it again with normalised strings.
    fn message(
        &mut self,
        message: usize,
        data: &[u8],
        depth: usize,
        mut out: Option<&mut Vec<u8>>,
    ) -> Result<(), Refusal> {
        let schema = self.schema;
        let m = schema
            .message(message)
            .ok_or_else(|| Refusal::Malformed("the schema is inconsistent".to_owned()))?;
        let base = self.locals.len();
        self.locals
            .resize(base.saturating_add(m.repeated_fields), 0);
        let mut r = Reader::new(data);
        while !r.is_empty() {
            let start = r.pos;
            let Some(key) = r.varint() else {
                return Err(self.malformed(None, "a field key is cut short"));
            };
            let (number, wire) = split_key(key).ok_or_else(|| {
                self.malformed(None, &format!("field number {} is out of range", key >> 3))
            })?;
            match m.field(number) {
                None => {
                    // Unknown fields are skipped by the decoder too, and cost nothing.
                    self.skip(&mut r, number, wire, depth)?;
                    copy(&mut out, data, start, r.pos);
                }
                Some(field) => {
                    self.field(
                        field,
                        wire,
                        &mut r,
                        base,
                        depth,
                        out.as_deref_mut(),
                        data,
                        start,
                    )?;
                }
            }
        }
        self.locals.truncate(base);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn field(
        &mut self,
        field: &'s Field,
        wire: u8,
        r: &mut Reader<'_>,
        base: usize,
        depth: usize,
        out: Option<&mut Vec<u8>>,
        data: &[u8],
        start: usize,
    ) -> Result<(), Refusal> {
        let name = field.name.as_str();
        let expect_len = |walk: &Self, wire: u8| {
            if wire == LEN {
                Ok(())
            } else {
                Err(walk.malformed(
                    Some((name, None)),
                    &format!("has wire type {wire}, expected length-delimited"),
                ))
            }
        };
        match field.holds {
            Holds::Text(kind) => {
                expect_len(self, wire)?;
                let bytes = self.len_delimited(r, name)?;
                let index = self.count(field, base, 1)?;
                let Ok(value) = std::str::from_utf8(bytes) else {
                    return Err(self.malformed(Some((name, index)), "is not valid UTF-8"));
                };
                if let Err(e) = text::check(value, kind) {
                    let at = self.path_to(Some((name, index)));
                    self.violation(at, e);
                } else if !text::is_normalized(value, kind) {
                    self.rewrite = true;
                    if let Some(out) = out {
                        let stored = text::normalize(value, kind);
                        put_key(out, field.number, LEN);
                        put_varint(out, stored.len() as u64);
                        out.extend_from_slice(stored.as_bytes());
                    }
                } else {
                    let mut out = out;
                    copy(&mut out, data, start, r.pos);
                }
            }
            Holds::Bytes => {
                expect_len(self, wire)?;
                self.len_delimited(r, name)?;
                self.count(field, base, 1)?;
                let mut out = out;
                copy(&mut out, data, start, r.pos);
            }
            Holds::Message(inner) => {
                expect_len(self, wire)?;
                let bytes = self.len_delimited(r, name)?;
                let index = self.count(field, base, 1)?;
                if depth >= self.limits.max_depth {
                    let max = self.limits.max_depth;
                    return Err(self.refuse(
                        Some((name, index)),
                        format!("nests messages more than {max} deep"),
                    ));
                }
                self.path.push(Step { name, index });
                match out {
                    None => self.message(inner, bytes, depth.saturating_add(1), None)?,
                    Some(out) => {
                        let mut nested = Vec::with_capacity(bytes.len());
                        self.message(inner, bytes, depth.saturating_add(1), Some(&mut nested))?;
                        put_key(out, field.number, LEN);
                        put_varint(out, nested.len() as u64);
                        out.extend_from_slice(&nested);
                    }
                }
                self.path.pop();
            }
            Holds::Number(scalar) => {
                if wire == LEN && field.repeated.is_some() {
                    // Packed: the elements are counted without being decoded.
                    let bytes = self.len_delimited(r, name)?;
                    let n = packed_count(bytes, scalar).ok_or_else(|| {
                        self.malformed(Some((name, None)), "holds a cut-short packed list")
                    })?;
                    self.count(field, base, n)?;
                } else if wire == scalar_wire(scalar) {
                    let index = self.count(field, base, 1)?;
                    if !r.skip_scalar(scalar) {
                        return Err(self.malformed(Some((name, index)), "is cut short"));
                    }
                } else {
                    return Err(self.malformed(
                        Some((name, None)),
                        &format!("has wire type {wire}, expected {}", scalar_wire(scalar)),
                    ));
                }
                let mut out = out;
                copy(&mut out, data, start, r.pos);
            }
        }
        Ok(())
    }

    fn len_delimited<'d>(&self, r: &mut Reader<'d>, name: &str) -> Result<&'d [u8], Refusal> {
        r.len_delimited()
            .ok_or_else(|| self.malformed(Some((name, None)), "runs past the end of its message"))
    }

    /// Skips an unknown field, groups included (bounded by the same depth as messages).
    fn skip(&self, r: &mut Reader<'_>, number: u32, wire: u8, depth: usize) -> Result<(), Refusal> {
        let cut = || self.malformed(None, &format!("unknown field {number} is cut short"));
        match wire {
            VARINT => r.varint().map(|_| ()).ok_or_else(cut),
            FIXED64 => r.skip_scalar(Scalar::Fixed64).then_some(()).ok_or_else(cut),
            FIXED32 => r.skip_scalar(Scalar::Fixed32).then_some(()).ok_or_else(cut),
            LEN => r.len_delimited().map(|_| ()).ok_or_else(cut),
            START_GROUP => {
                if depth >= self.limits.max_depth {
                    let max = self.limits.max_depth;
                    return Err(self.refuse(
                        None,
                        format!("unknown field {number} nests groups more than {max} deep"),
                    ));
                }
                loop {
                    let key = r.varint().ok_or_else(cut)?;
                    let (inner, inner_wire) = split_key(key).ok_or_else(cut)?;
                    if inner_wire == END_GROUP {
                        if inner == number {
                            return Ok(());
                        }
                        return Err(self.malformed(None, "a group ends out of order"));
                    }
                    self.skip(r, inner, inner_wire, depth.saturating_add(1))?;
                }
            }
            END_GROUP => Err(self.malformed(None, "a group ends that never started")),
            other => Err(self.malformed(
                None,
                &format!("field {number} has wire type {other}, which does not exist"),
            )),
        }
    }
}

fn split_key(key: u64) -> Option<(u32, u8)> {
    let number = key >> 3;
    let wire = u8::try_from(key & 7).ok()?;
    if number == 0 || number > MAX_FIELD_NUMBER {
        return None;
    }
    Some((u32::try_from(number).ok()?, wire))
}

const fn scalar_wire(s: Scalar) -> u8 {
    match s {
        Scalar::Varint => VARINT,
        Scalar::Fixed32 => FIXED32,
        Scalar::Fixed64 => FIXED64,
    }
}

/// How many numbers a packed list holds, or `None` when its last one is cut short.
fn packed_count(bytes: &[u8], scalar: Scalar) -> Option<usize> {
    match scalar {
        Scalar::Varint => {
            if bytes.last().is_some_and(|b| b & 0x80 != 0) {
                return None;
            }
            Some(bytes.iter().filter(|b| *b & 0x80 == 0).count())
        }
        Scalar::Fixed32 => bytes.len().is_multiple_of(4).then_some(bytes.len() / 4),
        Scalar::Fixed64 => bytes.len().is_multiple_of(8).then_some(bytes.len() / 8),
    }
}

fn copy(out: &mut Option<&mut Vec<u8>>, data: &[u8], start: usize, end: usize) {
    if let Some(out) = out {
        out.extend_from_slice(data.get(start..end).unwrap_or_default());
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, number: u32, wire: u8) {
    put_varint(out, (u64::from(number) << 3) | u64::from(wire));
}

/// Reads protobuf's building blocks off a slice, answering `None` instead of running past
/// its end.
struct Reader<'d> {
    data: &'d [u8],
    pos: usize,
}

impl<'d> Reader<'d> {
    fn new(data: &'d [u8]) -> Self {
        Self { data, pos: 0 }
    }

    fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let b = *self.data.get(self.pos)?;
            self.pos += 1;
            value |= u64::from(b & 0x7F).checked_shl(shift).unwrap_or(0);
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&'d [u8]> {
        let end = self.pos.checked_add(n)?;
        let bytes = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(bytes)
    }

    fn len_delimited(&mut self) -> Option<&'d [u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        self.take(len)
    }

    fn skip_scalar(&mut self, s: Scalar) -> bool {
        match s {
            Scalar::Varint => self.varint().is_some(),
            Scalar::Fixed32 => self.take(4).is_some(),
            Scalar::Fixed64 => self.take(8).is_some(),
        }
    }
}

#[cfg(test)]
mod tests;
