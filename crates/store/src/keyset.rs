//! Keyset paging: a list's next page is the rows strictly after the last key of the page
//! before, in the list's own order, so rows leaving the list between pages make no row of it
//! skipped. The comparison of a (sort column, id) pair is spelled out as
//! `a > x OR (a = x AND b > y)`, which SQLite and PostgreSQL read alike and which an index
//! on (a, b) behind the list's equality filters serves.

use sea_orm::{ColumnTrait, Condition, Value};

/// Rows after (`x`, `y`) in a list ordered by `a`, then `b`, both ascending.
pub(crate) fn after_ascending(
    a: impl ColumnTrait,
    x: impl Into<Value> + Clone,
    b: impl ColumnTrait,
    y: impl Into<Value>,
) -> Condition {
    Condition::any()
        .add(a.gt(x.clone()))
        .add(Condition::all().add(a.eq(x)).add(b.gt(y)))
}

/// Rows after (`x`, `y`) in a list ordered by `a`, then `b`, both descending (newest first).
pub(crate) fn after_descending(
    a: impl ColumnTrait,
    x: impl Into<Value> + Clone,
    b: impl ColumnTrait,
    y: impl Into<Value>,
) -> Condition {
    Condition::any()
        .add(a.lt(x.clone()))
        .add(Condition::all().add(a.eq(x)).add(b.lt(y)))
}
