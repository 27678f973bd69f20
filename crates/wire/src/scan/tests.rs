//! The walk, table-driven over hand-built bytes of a small contract that has what relief's
//! has (strings, long texts, repeated and packed fields, nested and merged messages) and what
//! it has not (a message that nests itself), plus a proptest that no bytes make it panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::schema::SchemaError;

const PROTO: &str = r#"
syntax = "proto3";
package t;

message Inner {
  string name = 1;
  repeated string tags = 2;
  string note = 3;
}

message Node {
  Node child = 1;
  string label = 2;
}

message Request {
  string name = 1;
  repeated Inner items = 2;
  repeated int32 numbers = 3;
  Inner single = 4;
  bytes blob = 5;
  repeated fixed32 fixed = 6;
  Node node = 7;
  string text = 8;
  int64 amount = 9;
}

message Reply {}

service S {
  rpc Call(Request) returns (Reply);
  rpc Walk(Node) returns (Reply);
}
"#;

const LONG: &[&str] = &["t.Request.text", "t.Inner.note"];

struct OneFile;

impl protox::file::FileResolver for OneFile {
    fn resolve_path(&self, path: &Path) -> Option<String> {
        (path == Path::new("t.proto")).then(|| "t.proto".to_owned())
    }

    fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
        if name == "t.proto" {
            protox::file::File::from_source(name, PROTO)
        } else {
            Err(protox::Error::file_not_found(name))
        }
    }
}

fn schema() -> Schema {
    let mut compiler = protox::Compiler::with_file_resolver(OneFile);
    compiler.open_file("t.proto").unwrap();
    Schema::with_long_texts(&compiler.encode_file_descriptor_set(), LONG).unwrap()
}

fn root(schema: &Schema, name: &str) -> usize {
    schema.request("t", name).unwrap()
}

// ---- building bytes by hand ----

fn ld(number: u32, payload: impl AsRef<[u8]>) -> Vec<u8> {
    let payload = payload.as_ref();
    let mut out = Vec::new();
    put_key(&mut out, number, LEN);
    put_varint(&mut out, payload.len() as u64);
    out.extend_from_slice(payload);
    out
}

fn varint(number: u32, v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    put_key(&mut out, number, VARINT);
    put_varint(&mut out, v);
    out
}

fn raw_key(number: u32, wire: u8) -> Vec<u8> {
    let mut out = Vec::new();
    put_key(&mut out, number, wire);
    out
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

fn repeat(part: &[u8], n: usize) -> Vec<u8> {
    part.repeat(n)
}

/// `Node` nested `n` deep through `child`.
fn nodes(n: usize) -> Vec<u8> {
    let mut inner = Vec::new();
    for _ in 0..n {
        inner = ld(1, &inner);
    }
    inner
}

// ---- the table ----

#[derive(Debug)]
enum Expect {
    Pass {
        rewrite: bool,
    },
    /// INVALID_ARGUMENT: (field path, a piece of its description) in order, and how many
    /// more were counted.
    Invalid(Vec<(String, &'static str)>, usize),
    /// INTERNAL: a piece of the problem's wording.
    Malformed(&'static str),
}

/// INVALID_ARGUMENT with these (field, piece of description), and `more` counted.
fn invalid(want: &[(&str, &'static str)], more: usize) -> Expect {
    Expect::Invalid(
        want.iter().map(|(f, d)| ((*f).to_owned(), *d)).collect(),
        more,
    )
}

fn limits(max_repeated_elements: usize, max_depth: usize) -> Limits {
    Limits {
        max_repeated_elements,
        max_depth,
    }
}

fn check(what: &str, message: &str, data: &[u8], limits: Limits, expect: Expect) {
    let schema = schema();
    let got = scan(&schema, root(&schema, message), data, limits);
    match (&got, &expect) {
        (Ok(p), Expect::Pass { rewrite }) => assert_eq!(p.rewrite, *rewrite, "{what}"),
        (
            Err(Refusal::Invalid {
                violations,
                omitted,
            }),
            Expect::Invalid(want, more),
        ) => {
            let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
            let want_fields: Vec<&str> = want.iter().map(|(f, _)| f.as_str()).collect();
            assert_eq!(fields, want_fields, "{what}");
            for (v, (_, piece)) in violations.iter().zip(want) {
                assert!(v.description.contains(piece), "{what}: {v}");
            }
            assert_eq!(omitted, more, "{what}");
        }
        (Err(Refusal::Malformed(problem)), Expect::Malformed(piece)) => {
            assert!(problem.contains(piece), "{what}: {problem}");
        }
        _ => panic!("{what}: got {got:?}, expected {expect:?}"),
    }
}

#[test]
fn requests_are_walked_as_the_schema_says() {
    let d = Limits::default();
    let pass = Expect::Pass { rewrite: false };
    let rewrite = Expect::Pass { rewrite: true };
    let item = |name: &str| ld(2, ld(1, name));
    let cases: Vec<(&str, &str, Vec<u8>, Limits, Expect)> = vec![
        ("nothing at all", "Request", vec![], d, pass),
        (
            "a plain name",
            "Request",
            ld(1, "张三"),
            d,
            Expect::Pass { rewrite: false },
        ),
        (
            "numbers and bytes",
            "Request",
            cat(&[varint(9, 42), ld(5, [0u8, 0xFF, 1])]),
            d,
            Expect::Pass { rewrite: false },
        ),
        (
            "a decomposed name",
            "Request",
            ld(1, "e\u{301}"),
            d,
            rewrite,
        ),
        (
            "CR LF in a long text",
            "Request",
            ld(8, "a\r\nb"),
            d,
            Expect::Pass { rewrite: true },
        ),
        (
            "tab and LF in a long text",
            "Request",
            ld(8, "a\tb\nc"),
            d,
            Expect::Pass { rewrite: false },
        ),
        (
            "a nested long text",
            "Request",
            ld(4, ld(3, "x\ny")),
            d,
            Expect::Pass { rewrite: false },
        ),
        (
            "CR LF in a name",
            "Request",
            ld(1, "a\r\nb"),
            d,
            invalid(&[("name", "U+000D")], 0),
        ),
        (
            "a tab in a name",
            "Request",
            ld(1, "a\tb"),
            d,
            invalid(&[("name", "U+0009")], 0),
        ),
        (
            "NUL",
            "Request",
            ld(1, "a\0b"),
            d,
            invalid(&[("name", "U+0000")], 0),
        ),
        (
            "C1 in a long text",
            "Request",
            ld(8, "a\u{85}b"),
            d,
            invalid(&[("text", "U+0085")], 0),
        ),
        (
            "an override in an element",
            "Request",
            cat(&[item("ok"), item("a\u{202E}b")]),
            d,
            invalid(&[("items[1].name", "bidirectional")], 0),
        ),
        (
            "an isolate in a repeated string",
            "Request",
            ld(4, cat(&[ld(2, "x"), ld(2, "\u{2066}")])),
            d,
            invalid(&[("single.tags[1]", "U+2066")], 0),
        ),
        (
            "a non-character",
            "Request",
            ld(1, "\u{FDD0}"),
            d,
            invalid(&[("name", "non-characters")], 0),
        ),
        (
            "problems in several fields",
            "Request",
            cat(&[ld(1, "\0"), ld(8, "\u{1}"), item("\u{FFFF}")]),
            d,
            invalid(
                &[
                    ("name", "U+0000"),
                    ("text", "U+0001"),
                    ("items[0].name", "U+FFFF"),
                ],
                0,
            ),
        ),
        (
            "25 bad elements",
            "Request",
            repeat(&item("\0"), 25),
            d,
            Expect::Invalid(
                (0..20)
                    .map(|i| (format!("items[{i}].name"), "U+0000"))
                    .collect(),
                5,
            ),
        ),
        (
            "elements at the limit",
            "Request",
            repeat(&ld(2, []), 3),
            limits(3, 32),
            Expect::Pass { rewrite: false },
        ),
        (
            "empty elements over the limit",
            "Request",
            repeat(&ld(2, []), 4),
            limits(3, 32),
            invalid(&[("items", "at most 3 elements")], 0),
        ),
        (
            "the limit before the text",
            "Request",
            repeat(&item("\0"), 4),
            limits(3, 32),
            invalid(&[("items", "at most 3")], 0),
        ),
        (
            "packed numbers over the limit",
            "Request",
            ld(3, [1u8, 0x80, 1, 2, 3]),
            limits(3, 32),
            invalid(&[("numbers", "at most 3")], 0),
        ),
        (
            "packed numbers at the limit",
            "Request",
            ld(3, [1u8, 0x80, 1, 2]),
            limits(3, 32),
            Expect::Pass { rewrite: false },
        ),
        (
            "packed and unpacked together",
            "Request",
            cat(&[ld(3, [1u8, 2]), varint(3, 7), varint(3, 8)]),
            limits(3, 32),
            invalid(&[("numbers", "at most 3")], 0),
        ),
        (
            "packed fixed32",
            "Request",
            ld(6, [0u8; 16]),
            limits(4, 32),
            Expect::Pass { rewrite: false },
        ),
        (
            "packed fixed32 over",
            "Request",
            ld(6, [0u8; 20]),
            limits(4, 32),
            invalid(&[("fixed", "at most 4")], 0),
        ),
        (
            "a merged message counts as one",
            "Request",
            repeat(&ld(4, cat(&[ld(2, "a"), ld(2, "b")])), 2),
            limits(3, 32),
            invalid(&[("single.tags", "at most 3")], 0),
        ),
        (
            "nesting at the limit",
            "Node",
            nodes(4),
            limits(10, 4),
            Expect::Pass { rewrite: false },
        ),
        (
            "nesting over the limit",
            "Node",
            nodes(5),
            limits(10, 4),
            invalid(&[("child.child.child.child.child", "more than 4 deep")], 0),
        ),
        (
            "a deep request within the default",
            "Node",
            nodes(32),
            d,
            Expect::Pass { rewrite: false },
        ),
        (
            "a deep request over the default",
            "Node",
            nodes(2_000),
            d,
            Expect::Invalid(vec![(vec!["child"; 33].join("."), "more than 32 deep")], 0),
        ),
        (
            "unknown fields are skipped",
            "Request",
            cat(&[
                varint(99, 1),
                ld(100, "\0"),
                raw_key(101, FIXED32),
                vec![0; 4],
                raw_key(102, FIXED64),
                vec![0; 8],
            ]),
            d,
            Expect::Pass { rewrite: false },
        ),
        (
            "an unknown group",
            "Request",
            cat(&[
                raw_key(50, START_GROUP),
                varint(1, 1),
                raw_key(51, START_GROUP),
                raw_key(51, END_GROUP),
                raw_key(50, END_GROUP),
            ]),
            d,
            Expect::Pass { rewrite: false },
        ),
        (
            "groups too deep",
            "Request",
            cat(&[
                repeat(&raw_key(50, START_GROUP), 40),
                repeat(&raw_key(50, END_GROUP), 40),
            ]),
            d,
            invalid(&[("", "groups more than 32 deep")], 0),
        ),
        (
            "a group that ends out of order",
            "Request",
            cat(&[raw_key(50, START_GROUP), raw_key(51, END_GROUP)]),
            d,
            Expect::Malformed("out of order"),
        ),
        (
            "a group end alone",
            "Request",
            raw_key(50, END_GROUP),
            d,
            Expect::Malformed("never started"),
        ),
        (
            "wire type 7",
            "Request",
            raw_key(60, 7),
            d,
            Expect::Malformed("wire type 7"),
        ),
        (
            "field number 0",
            "Request",
            vec![0x02, 0x00],
            d,
            Expect::Malformed("field number 0"),
        ),
        (
            "a string sent as a number",
            "Request",
            varint(1, 5),
            d,
            Expect::Malformed("name: has wire type 0"),
        ),
        (
            "a message sent as a number",
            "Request",
            cat(&[ld(4, varint(1, 5))]),
            d,
            Expect::Malformed("single.name: has wire type 0"),
        ),
        (
            "a number sent as bytes",
            "Request",
            ld(9, "x"),
            d,
            Expect::Malformed("amount: has wire type 2"),
        ),
        (
            "text that is not UTF-8",
            "Request",
            ld(2, ld(1, [0xFFu8, 0xFE])),
            d,
            Expect::Malformed("items[0].name: is not valid UTF-8"),
        ),
        (
            "a length past the end",
            "Request",
            vec![0x0A, 0x05, b'a'],
            d,
            Expect::Malformed("name: runs past the end"),
        ),
        (
            "a cut-short key",
            "Request",
            vec![0x80],
            d,
            Expect::Malformed("key is cut short"),
        ),
        (
            "a cut-short number",
            "Request",
            vec![0x48, 0x80],
            d,
            Expect::Malformed("amount: is cut short"),
        ),
        (
            "a cut-short packed list",
            "Request",
            ld(3, [0x80u8]),
            d,
            Expect::Malformed("numbers: holds a cut-short packed list"),
        ),
        (
            "garbage",
            "Request",
            vec![0xFF; 16],
            d,
            Expect::Malformed(""),
        ),
    ];
    for (what, message, data, limits, expect) in cases {
        check(what, message, &data, limits, expect);
    }
}

#[test]
fn a_rewrite_normalises_strings_and_keeps_everything_else() {
    let schema = schema();
    let request = root(&schema, "Request");
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        ("a name", ld(1, "e\u{301}"), ld(1, "\u{e9}")),
        ("a long text", ld(8, "a\r\nb\r\n"), ld(8, "a\nb\n")),
        (
            "nested, with lengths recomputed",
            cat(&[
                varint(9, 7),
                ld(2, cat(&[ld(1, "A\u{30A}"), ld(3, "x\r\ny")])),
                ld(5, [1u8, 2]),
            ]),
            cat(&[
                varint(9, 7),
                ld(2, cat(&[ld(1, "\u{C5}"), ld(3, "x\ny")])),
                ld(5, [1u8, 2]),
            ]),
        ),
        (
            "unknown fields and packed lists kept",
            cat(&[ld(100, "\u{301}"), ld(3, [1u8, 2]), ld(1, "e\u{301}")]),
            cat(&[ld(100, "\u{301}"), ld(3, [1u8, 2]), ld(1, "\u{e9}")]),
        ),
    ];
    for (what, data, want) in cases {
        let passed = scan(&schema, request, &data, Limits::default()).unwrap();
        assert!(passed.rewrite, "{what}");
        let out = rewrite(&schema, request, &data, Limits::default()).unwrap();
        assert_eq!(out, want, "{what}");
        let again = scan(&schema, request, &out, Limits::default()).unwrap();
        assert!(!again.rewrite, "{what}: a rewrite is final");
    }
}

#[test]
fn only_requests_are_checked() {
    let schema = schema();
    assert!(schema.request("t", "Request").is_some());
    assert!(schema.request("t", "Node").is_some());
    assert_eq!(
        schema.request("t", "Inner"),
        None,
        "not the input of a method"
    );
    assert_eq!(schema.request("t", "Reply"), None, "a response");
    assert_eq!(schema.request("u", "Request"), None);
}

#[test]
fn the_long_text_table_must_name_string_fields() {
    let mut compiler = protox::Compiler::with_file_resolver(OneFile);
    compiler.open_file("t.proto").unwrap();
    let bytes = compiler.encode_file_descriptor_set();
    for bad in ["t.Request.amount", "t.Request.gone", "t.Gone.text"] {
        assert_eq!(
            Schema::with_long_texts(&bytes, &[bad]).unwrap_err(),
            SchemaError::UnknownLongText(bad.to_owned()),
        );
    }
}

/// relief's own contract, compiled as relief-proto's build script does.
fn relief_schema() -> Schema {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files: Vec<_> = std::fs::read_dir(root.join("relief/v1"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    let fds = protox::compile(&files, [&root]).unwrap();
    Schema::from_descriptor_set(&prost::Message::encode_to_vec(&fds)).unwrap()
}

#[test]
fn relief_contract_builds_with_its_long_texts() {
    let schema = relief_schema();
    let mut long = schema.long_texts();
    long.sort();
    let mut want: Vec<String> = crate::LONG_TEXTS.iter().map(|s| (*s).to_owned()).collect();
    want.sort();
    assert_eq!(long, want);
    let requests = schema.requests();
    for r in [
        "relief.v1.CreateCaseRequest",
        "relief.v1.OpenMeetingRequest",
        "relief.v1.ImportCasesRequest",
    ] {
        assert!(requests.iter().any(|q| q == r), "{r}");
    }
    assert!(!requests.iter().any(|q| q.ends_with("Response")));
}

proptest! {
    #[test]
    fn no_bytes_make_the_walk_panic(
        data in proptest::collection::vec(any::<u8>(), 0..512),
        repeated in 0usize..8,
        depth in 0usize..6,
        walk in any::<bool>(),
    ) {
        let schema = schema();
        let message = root(&schema, if walk { "Node" } else { "Request" });
        let limits = limits(repeated, depth);
        if scan(&schema, message, &data, limits).is_ok() {
            let out = rewrite(&schema, message, &data, limits);
            prop_assert!(out.is_ok());
            if let Ok(out) = out {
                let again = scan(&schema, message, &out, limits);
                prop_assert_eq!(again, Ok(Passed { rewrite: false }));
            }
        }
    }

    #[test]
    fn well_formed_requests_with_any_text_never_panic(
        names in proptest::collection::vec(proptest::collection::vec(any::<char>(), 0..12), 0..6),
    ) {
        let schema = schema();
        let message = root(&schema, "Request");
        let data: Vec<u8> = names
            .iter()
            .map(|n| ld(2, ld(1, n.iter().collect::<String>())))
            .collect::<Vec<_>>()
            .concat();
        let _ = scan(&schema, message, &data, Limits::default());
    }
}
