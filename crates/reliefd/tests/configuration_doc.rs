//! docs/CONFIGURATION.md names exactly the keys `reliefd` accepts. The accepted keys come
//! from the settings types themselves: each table is loaded with one key no type has, and
//! the refusal lists the keys the table's type expects (serde's field list, as figment
//! reports it). Sub-tables are found the same way, by probing every key as a table and as
//! an array of tables. A key added to the settings and not documented, or documented and
//! not accepted, fails this test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use figment::error::Kind;
use reliefd::settings::{Error, Settings};

const DOC: &str = include_str!("../../../docs/CONFIGURATION.md");
const PROBE: &str = "zz_no_such_key";

/// One step of a table's path: its key, and whether it is an array of tables.
type Path = Vec<(&'static str, bool)>;

fn header(path: &Path) -> String {
    let dotted: Vec<&str> = path.iter().map(|(k, _)| *k).collect();
    match path.last() {
        Some((_, true)) => format!("[[{}]]", dotted.join(".")),
        _ => format!("[{}]", dotted.join(".")),
    }
}

/// The keys the table at `path` accepts, or `None` when nothing there is a table of keys.
fn accepted_keys(path: &Path) -> Option<BTreeSet<&'static str>> {
    let mut toml = String::new();
    for i in 1..=path.len() {
        toml.push_str(&header(&path[..i].to_vec()));
        toml.push('\n');
    }
    toml.push_str(&format!("{PROBE} = 1\n"));
    match Settings::from_toml(&toml) {
        Err(Error::Load(e)) => match &e.kind {
            Kind::UnknownField(field, expected) if field == PROBE => {
                Some(expected.iter().copied().collect())
            }
            _ => None,
        },
        _ => None,
    }
}

/// Every table the settings types accept, by its TOML header, with its keys.
fn accepted() -> BTreeMap<String, BTreeSet<&'static str>> {
    let mut tables = BTreeMap::new();
    let root = accepted_keys(&Vec::new()).expect("the top level refuses unknown keys");
    let mut todo: Vec<(Path, BTreeSet<&'static str>)> = vec![(Vec::new(), root)];
    while let Some((path, keys)) = todo.pop() {
        for key in &keys {
            for array in [false, true] {
                let mut sub = path.clone();
                sub.push((key, array));
                if let Some(sub_keys) = accepted_keys(&sub) {
                    todo.push((sub, sub_keys));
                }
            }
        }
        if path.is_empty() {
            // Every top-level key is a table of its own.
            let tables_below: BTreeSet<&str> = todo.iter().map(|(p, _)| p[0].0).collect();
            assert_eq!(tables_below, keys, "every top-level key is a section");
        } else {
            tables.insert(header(&path), keys);
        }
    }
    tables
}

/// The keys docs/CONFIGURATION.md gives each table: under a heading that is a TOML table
/// header in backticks, the first column of the first Markdown table.
fn documented() -> BTreeMap<String, BTreeSet<String>> {
    let mut tables: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut in_table = false;
    let mut table_done = false;
    for line in DOC.lines() {
        if let Some(heading) = line.strip_prefix("### ") {
            let h = heading.trim();
            current = h
                .strip_prefix('`')
                .and_then(|h| h.strip_suffix('`'))
                .filter(|h| h.starts_with('['))
                .map(str::to_owned);
            if let Some(c) = &current {
                assert!(
                    tables.insert(c.clone(), BTreeSet::new()).is_none(),
                    "{c} is documented twice"
                );
            }
            in_table = false;
            table_done = false;
            continue;
        }
        let Some(table) = &current else { continue };
        if line.starts_with('|') {
            if table_done {
                continue;
            }
            in_table = true;
            let first = line
                .trim_matches('|')
                .split('|')
                .next()
                .unwrap_or("")
                .trim();
            if let Some(key) = first.strip_prefix('`').and_then(|k| k.strip_suffix('`')) {
                let keys = tables.get_mut(table).expect("the heading's entry");
                assert!(
                    keys.insert(key.to_owned()),
                    "{table} {key} is documented twice"
                );
            }
        } else if in_table {
            in_table = false;
            table_done = true;
        }
    }
    tables
}

#[test]
fn the_configuration_doc_names_exactly_the_accepted_keys() {
    let accepted: BTreeMap<String, BTreeSet<String>> = accepted()
        .into_iter()
        .map(|(t, keys)| (t, keys.into_iter().map(str::to_owned).collect()))
        .collect();
    let documented = documented();
    let tables: BTreeSet<&String> = accepted.keys().chain(documented.keys()).collect();
    let mut problems = Vec::new();
    for t in tables {
        let empty = BTreeSet::new();
        let a = accepted.get(t).unwrap_or(&empty);
        let d = documented.get(t).unwrap_or(&empty);
        if !accepted.contains_key(t) {
            problems.push(format!("{t} is documented but is no table of the settings"));
        }
        if !documented.contains_key(t) {
            problems.push(format!("{t} is accepted but has no section in the doc"));
        }
        for k in a.difference(d) {
            problems.push(format!("{t} {k} is accepted but not documented"));
        }
        for k in d.difference(a) {
            problems.push(format!("{t} {k} is documented but not accepted"));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/CONFIGURATION.md and the settings differ:\n{}",
        problems.join("\n")
    );
    // The probe finds the tables the settings have today; a sanity floor so a broken probe
    // cannot pass by finding nothing.
    for t in [
        "[server]",
        "[auth]",
        "[[districts]]",
        "[[districts.rules.steps]]",
        "[gateway.cors]",
    ] {
        assert!(accepted.contains_key(t), "{t} not found by the probe");
    }
}

#[test]
fn the_configuration_docs_district_example_loads() {
    let example = DOC
        .split("```toml\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("docs/CONFIGURATION.md has a TOML example");
    let settings = Settings::from_toml(example).unwrap_or_else(|e| panic!("{e}"));
    let [district] = settings.districts.as_slice() else {
        panic!("the example declares one district");
    };
    let (id, _, rules) = district.to_domain().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(id.as_str(), "430102");
    let conditional: Vec<&str> = rules
        .approval_chain
        .steps
        .iter()
        .filter(|s| !s.condition.is_unconditional())
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(conditional, ["局长审核"]);
}
