//! The statuses every refusal of a request shares, whoever refuses it: an `INVALID_ARGUMENT`
//! that stays small however many fields are wrong, and `RESOURCE_EXHAUSTED` for a message
//! over the size limit. relief-api maps its errors through [`invalid_argument`] as the codec
//! does, so both answer alike. Every status made here carries `google.rpc.ErrorInfo` in
//! [`ERROR_DOMAIN`] ([`with_reason`]), with a reason of the contract's `ErrorReason` (its
//! name without the `ERROR_REASON_` prefix).

use std::collections::BTreeMap;

use prost::Message as _;

use http::{HeaderMap, HeaderValue};
use relief_domain::Violation;
use relief_domain::violation::{MAX_REPORTED, summarize};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt as _};

/// The most bytes `grpc-message` takes on the wire (percent-encoded, as gRPC sends it).
pub const MAX_MESSAGE_BYTES: usize = 1024;
/// The most bytes of one field path or one description in the details.
const MAX_DETAIL_BYTES: usize = 256;
/// Marks a message or a detail that was cut.
const CUT: &str = "…";

/// The `domain` of the `google.rpc.ErrorInfo` every relief error carries.
pub const ERROR_DOMAIN: &str = "relief.v1";

/// A status of `code` and `message` with `details` and an `ErrorInfo` of `reason` and
/// `metadata` in [`ERROR_DOMAIN`]. The `ErrorInfo` is encoded with its metadata in key
/// order, so one error is the same bytes every time it is answered.
pub fn with_reason(
    code: Code,
    message: impl Into<String>,
    reason: &str,
    metadata: impl IntoIterator<Item = (String, String)>,
    details: ErrorDetails,
) -> Status {
    let message = message.into();
    let others = Status::with_error_details(code, message.clone(), details);
    let info = ErrorInfo {
        reason: reason.to_owned(),
        domain: ERROR_DOMAIN.to_owned(),
        metadata: metadata.into_iter().collect(),
    };
    let any = prost_types::Any {
        type_url: "type.googleapis.com/google.rpc.ErrorInfo".to_owned(),
        value: info.encode_to_vec(),
    };
    // `google.rpc.Status.details` is field 3; a repeated field's elements may follow the
    // rest of an encoded message.
    let mut bytes = others.details().to_vec();
    prost::encoding::message::encode(3, &any, &mut bytes);
    Status::with_details(code, message, bytes.into())
}

/// `google.rpc.ErrorInfo`, with its metadata kept in key order.
#[derive(Clone, PartialEq, prost::Message)]
struct ErrorInfo {
    #[prost(string, tag = "1")]
    reason: String,
    #[prost(string, tag = "2")]
    domain: String,
    #[prost(btree_map = "string, string", tag = "3")]
    metadata: BTreeMap<String, String>,
}

/// `INVALID_ARGUMENT` listing at most [`relief_domain::violation::MAX_REPORTED`] of
/// `violations` as `google.rpc.BadRequest` field violations, plus one that counts the rest
/// (those beyond the listed ones and `omitted`, found but not kept); the message repeats them
/// in words, cut to stay under [`MAX_MESSAGE_BYTES`].
pub fn invalid_argument(violations: Vec<Violation>, omitted: usize) -> Status {
    let shown = violations.len().min(MAX_REPORTED);
    let found = violations.len().saturating_add(omitted);
    let mut metadata = vec![("violations".to_owned(), found.to_string())];
    if let Some(first) = violations.first().filter(|v| !v.field.is_empty()) {
        metadata.push((
            "field".to_owned(),
            cut_bytes(&first.field, MAX_DETAIL_BYTES),
        ));
    }
    let listed = summarize(violations, omitted);
    let words: Vec<String> = listed
        .iter()
        .take(shown)
        .map(|v| {
            if v.field.is_empty() {
                v.description.clone()
            } else {
                v.to_string()
            }
        })
        .collect();
    // The count comes first, so that cutting the message never loses it.
    let message = if found > shown {
        format!(
            "invalid request ({found} problems, the first {shown} listed): {}",
            words.join("; ")
        )
    } else {
        format!("invalid request: {}", words.join("; "))
    };
    let message = cut_message(&message);
    let details: Vec<FieldViolation> = listed
        .into_iter()
        .map(|v| {
            FieldViolation::new(
                cut_bytes(&v.field, MAX_DETAIL_BYTES),
                cut_bytes(&v.description, MAX_DETAIL_BYTES),
            )
        })
        .collect();
    with_reason(
        Code::InvalidArgument,
        message,
        "INVALID_ARGUMENT",
        metadata,
        ErrorDetails::with_bad_request(details),
    )
}

/// How many bytes `b` takes in `grpc-message`: tonic percent-encodes controls, non-ASCII and
/// a few punctuation marks.
fn encoded_len(b: u8) -> usize {
    if !(0x20..0x7F).contains(&b) || b" \"#%<>`?{}".contains(&b) {
        3
    } else {
        1
    }
}

/// `message`, cut at a character boundary so that it takes less than [`MAX_MESSAGE_BYTES`]
/// percent-encoded.
pub fn cut_message(message: &str) -> String {
    let total: usize = message.bytes().map(encoded_len).sum();
    if total < MAX_MESSAGE_BYTES {
        return message.to_owned();
    }
    let budget = MAX_MESSAGE_BYTES - 1 - CUT.bytes().map(encoded_len).sum::<usize>();
    let mut used = 0usize;
    let mut end = 0usize;
    for (i, c) in message.char_indices() {
        let mut buf = [0u8; 4];
        let cost: usize = c.encode_utf8(&mut buf).bytes().map(encoded_len).sum();
        if used + cost > budget {
            break;
        }
        used += cost;
        end = i + c.len_utf8();
    }
    format!("{}{CUT}", message.get(..end).unwrap_or_default())
}

/// `s`, cut at a character boundary to at most `max` bytes.
fn cut_bytes(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let budget = max.saturating_sub(CUT.len());
    let end = (0..=budget)
        .rev()
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(0);
    format!("{}{CUT}", s.get(..end).unwrap_or_default())
}

/// How tonic words (percent-encoded) its refusal of a message over the size limit, which it
/// answers `OUT_OF_RANGE` after reading the length prefix and before buffering the message.
const TONIC_TOO_LARGE: &str = "Error,%20decoded%20message%20length%20too%20large";

/// Turns tonic's `OUT_OF_RANGE` for a message over the size limit into the
/// `RESOURCE_EXHAUSTED` gRPC's status-code table gives it, with `ErrorInfo` reason
/// `MESSAGE_TOO_LARGE`, in a trailers-only response's headers or in trailers. Returns whether
/// it did; any other status is left alone.
pub fn rewrite_size_status(headers: &mut HeaderMap) -> bool {
    let is_size_check = headers.get("grpc-status").is_some_and(|s| s == "11")
        && headers
            .get("grpc-message")
            .is_some_and(|m| m.as_bytes().starts_with(TONIC_TOO_LARGE.as_bytes()));
    if !is_size_check {
        return false;
    }
    let rest = headers
        .get("grpc-message")
        .map(|m| {
            m.as_bytes()
                .get(TONIC_TOO_LARGE.len()..)
                .unwrap_or_default()
                .to_vec()
        })
        .unwrap_or_default();
    let mut message = b"the%20message%20is%20too%20large".to_vec();
    message.extend_from_slice(&rest);
    headers.insert("grpc-status", HeaderValue::from_static("8"));
    if let Ok(value) = HeaderValue::from_bytes(&message) {
        headers.insert("grpc-message", value);
    }
    let mut encoded = HeaderMap::new();
    let status = with_reason(
        Code::ResourceExhausted,
        "",
        "MESSAGE_TOO_LARGE",
        [],
        ErrorDetails::new(),
    );
    if status.add_header(&mut encoded).is_ok()
        && let Some(details) = encoded.remove("grpc-status-details-bin")
    {
        headers.insert("grpc-status-details-bin", details);
    }
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tonic_types::StatusExt as _;

    use super::*;

    fn problems(n: usize, description: &str) -> Vec<Violation> {
        (0..n)
            .map(|i| {
                Violation::new(
                    format!("application.attachments[{i}].media_type"),
                    description,
                )
            })
            .collect()
    }

    #[test]
    fn invalid_argument_stays_small() {
        // (violations, omitted, description) -> details listed, last description
        let long = "说明".repeat(500);
        let cases: &[(usize, usize, &str, usize, Option<&str>)] = &[
            (1, 0, "is wrong", 1, None),
            (20, 0, "is wrong", 20, None),
            (100, 0, "is wrong", 21, Some("80 more problems not listed")),
            (
                20,
                1_000_000,
                "is wrong",
                21,
                Some("1000000 more problems not listed"),
            ),
            (30, 0, &long, 21, Some("10 more problems not listed")),
        ];
        for &(n, omitted, description, listed, last) in cases {
            let status = invalid_argument(problems(n, description), omitted);
            assert_eq!(status.code(), Code::InvalidArgument);
            let encoded: usize = status.message().bytes().map(encoded_len).sum();
            assert!(encoded < MAX_MESSAGE_BYTES, "{n}: {encoded} bytes");
            let details = status.get_details_bad_request().unwrap();
            assert_eq!(details.field_violations.len(), listed, "{n}");
            for v in &details.field_violations {
                assert!(v.description.len() <= MAX_DETAIL_BYTES, "{n}");
            }
            if let Some(last) = last {
                assert_eq!(details.field_violations.last().unwrap().description, last);
                let found = n + omitted;
                assert!(
                    status.message().starts_with(&format!(
                        "invalid request ({found} problems, the first 20 listed): "
                    )),
                    "{}",
                    status.message()
                );
            } else {
                assert!(
                    status
                        .message()
                        .starts_with("invalid request: application.")
                );
            }
        }
    }

    #[test]
    fn error_info_is_the_same_bytes_every_time() {
        let make = || {
            with_reason(
                Code::FailedPrecondition,
                "no",
                "CASE_STATE",
                ["state", "action", "district", "step"]
                    .map(|k| (k.to_owned(), format!("{k}-value"))),
                ErrorDetails::with_precondition_failure_violation("CASE_STATE", "", "no"),
            )
        };
        let first = make();
        for _ in 0..20 {
            assert_eq!(make().details(), first.details());
        }
        let details = first.get_error_details();
        let info = details.error_info().unwrap();
        assert_eq!(info.reason, "CASE_STATE");
        assert_eq!(info.domain, ERROR_DOMAIN);
        assert_eq!(info.metadata.len(), 4);
        assert_eq!(info.metadata["step"], "step-value");
        assert_eq!(
            details.precondition_failure().unwrap().violations[0].r#type,
            "CASE_STATE",
            "the other details stay"
        );
        assert_eq!(first.code(), Code::FailedPrecondition);
        assert_eq!(first.message(), "no");
    }

    #[test]
    fn messages_are_cut_at_a_character_boundary() {
        for text in ["a".repeat(5000), "张".repeat(2000), "a张{".repeat(700)] {
            let cut = cut_message(&text);
            let encoded: usize = cut.bytes().map(encoded_len).sum();
            assert!(encoded < MAX_MESSAGE_BYTES, "{encoded}");
            assert!(
                encoded > MAX_MESSAGE_BYTES - 20,
                "{encoded}: cut no more than needed"
            );
            assert!(cut.ends_with(CUT));
        }
        assert_eq!(cut_message("short"), "short");
        assert_eq!(cut_bytes("张三", 4), "…");
        assert_eq!(cut_bytes("张三", 6), "张三");
    }

    #[test]
    fn only_the_size_check_becomes_resource_exhausted() {
        let tonic = "Error,%20decoded%20message%20length%20too%20large:%20found%205000000%20bytes,%20the%20limit%20is:%204194304%20bytes";
        let cases: &[(&str, &str, bool)] = &[
            ("11", tonic, true),
            ("11", "out%20of%20range", false),
            ("3", tonic, false),
            ("0", "", false),
        ];
        for &(status, message, rewritten) in cases {
            let mut h = HeaderMap::new();
            h.insert("grpc-status", HeaderValue::from_str(status).unwrap());
            if !message.is_empty() {
                h.insert("grpc-message", HeaderValue::from_str(message).unwrap());
            }
            assert_eq!(rewrite_size_status(&mut h), rewritten, "{status} {message}");
            let expect = if rewritten { "8" } else { status };
            assert_eq!(h.get("grpc-status").unwrap(), expect);
            assert_eq!(
                h.contains_key("grpc-status-details-bin"),
                rewritten,
                "{status} {message}"
            );
            if rewritten {
                let info = Status::from_header_map(&h)
                    .unwrap()
                    .get_error_details()
                    .error_info()
                    .cloned()
                    .unwrap();
                assert_eq!(info.reason, "MESSAGE_TOO_LARGE");
                assert_eq!(info.domain, ERROR_DOMAIN);
            }
        }
        let mut h = HeaderMap::new();
        h.insert("grpc-status", HeaderValue::from_static("11"));
        h.insert("grpc-message", HeaderValue::from_static(tonic));
        rewrite_size_status(&mut h);
        assert_eq!(
            h.get("grpc-message").unwrap(),
            "the%20message%20is%20too%20large:%20found%205000000%20bytes,%20the%20limit%20is:%204194304%20bytes"
        );
    }
}
