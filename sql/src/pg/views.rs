//! `pg_catalog` views computed when they are scanned: `pg_cursors` (the session's
//! open cursors, as psycopg reads them before it closes a server-side cursor) and
//! `pg_indexes` (primary keys and declared indexes), `pg_views` (views and their
//! definitions). A leaf of the `pg` floor.
//!
//! Invariant: `pg_cursors` shows the session that queries it: each session puts its
//! [`OpenCursors`] into its DataFusion config, keeps it in step with its cursors,
//! and the view reads it at scan time.

use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{ArrayRef, BooleanArray, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};

use crate::plan::system::ComputedView;

/// The names of the views in `pg_catalog`.
pub(crate) const CURSORS_VIEW: &str = "pg_cursors";
pub(crate) const INDEXES_VIEW: &str = "pg_indexes";
pub(crate) const VIEWS_VIEW: &str = "pg_views";

/// The views Hindsight computes in `pg_catalog` (an unqualified name means them).
pub(crate) const COMPUTED_VIEWS: [&str; 3] = [CURSORS_VIEW, INDEXES_VIEW, VIEWS_VIEW];

/// One open cursor as the view lists it.
#[derive(Clone, Debug)]
pub(crate) struct CursorInfo {
    pub name: String,
    pub statement: String,
    pub holdable: bool,
    pub created_micros: i64,
}

/// A session's open cursors (a DataFusion config extension).
#[derive(Debug, Default)]
pub(crate) struct OpenCursors(Mutex<Vec<CursorInfo>>);

impl OpenCursors {
    /// Replace the listing.
    pub(crate) fn set(&self, cursors: Vec<CursorInfo>) {
        if let Ok(mut l) = self.0.lock() {
            *l = cursors;
        }
    }

    fn list(&self) -> Vec<CursorInfo> {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

/// A view computed at scan time from the querying session (and whatever its
/// closure captured): `pg_cursors`, `pg_indexes`.
/// The `pg_cursors` view of the querying session's cursors.
pub(crate) fn cursors_view() -> ComputedView {
    let flag = |n: &str| Field::new(n, DataType::Boolean, false);
    let schema = Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("statement", DataType::Utf8, false),
        flag("is_holdable"),
        flag("is_binary"),
        flag("is_scrollable"),
        Field::new(
            "creation_time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            false,
        ),
    ]));
    ComputedView::new(schema, |state| {
        let rows = state
            .config()
            .get_extension::<OpenCursors>()
            .map(|c| c.list())
            .unwrap_or_default();
        let flags = |f: &dyn Fn(&CursorInfo) -> bool| -> ArrayRef {
            Arc::new(rows.iter().map(|c| Some(f(c))).collect::<BooleanArray>())
        };
        vec![
            Arc::new(
                rows.iter()
                    .map(|c| Some(c.name.as_str()))
                    .collect::<StringArray>(),
            ),
            Arc::new(
                rows.iter()
                    .map(|c| Some(c.statement.as_str()))
                    .collect::<StringArray>(),
            ),
            flags(&|c| c.holdable),
            flags(&|_| false),
            flags(&|_| false),
            Arc::new(
                rows.iter()
                    .map(|c| Some(c.created_micros))
                    .collect::<TimestampMicrosecondArray>()
                    .with_timezone("+00:00"),
            ),
        ]
    })
}

/// The `pg_indexes` view: each keyed table's primary key (`<table>_pkey`) and its
/// declared indexes, with PostgreSQL's `indexdef` text.
pub(crate) fn indexes_view(db: hindsight_storage::Db) -> ComputedView {
    let text = |n: &str| Field::new(n, DataType::Utf8, true);
    let schema = Arc::new(Schema::new(vec![
        text("schemaname"),
        text("tablename"),
        text("indexname"),
        text("tablespace"),
        text("indexdef"),
    ]));
    ComputedView::new(schema, move |_| {
        let mut rows: Vec<IndexRow> = Vec::new();
        for t in db.catalog().tables() {
            let cols = |c: &[usize]| {
                c.iter()
                    .filter_map(|&i| t.columns.get(i).map(|c| quote_ident(&c.name)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mut add = |name: String, unique: bool, columns: &[usize]| {
                let def = format!(
                    "CREATE {}INDEX {} ON public.{} USING btree ({})",
                    if unique { "UNIQUE " } else { "" },
                    quote_ident(&name),
                    quote_ident(&t.name),
                    cols(columns)
                );
                rows.push((t.name.clone(), name, def));
            };
            if !t.key.is_empty() {
                add(format!("{}_pkey", t.name), true, &t.key);
            }
            for ix in &t.indexes {
                add(ix.name.clone(), ix.unique, &ix.columns);
            }
        }
        let col = |f: &dyn Fn(&IndexRow) -> Option<String>| -> ArrayRef {
            Arc::new(rows.iter().map(f).collect::<StringArray>())
        };
        vec![
            col(&|_| Some("public".into())),
            col(&|r| Some(r.0.clone())),
            col(&|r| Some(r.1.clone())),
            col(&|_| None),
            col(&|r| Some(r.2.clone())),
        ]
    })
}

/// (table, index, indexdef) of a `pg_indexes` row.
type IndexRow = (String, String, String);

/// An identifier as PostgreSQL prints it: bare when it is lowercase, else quoted.
fn quote_ident(name: &str) -> String {
    let bare = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if bare {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// The `pg_views` view: every view with its definition as stored.
pub(crate) fn views_view(db: hindsight_storage::Db) -> ComputedView {
    let text = |n: &str| Field::new(n, DataType::Utf8, true);
    let schema = Arc::new(Schema::new(vec![
        text("schemaname"),
        text("viewname"),
        text("viewowner"),
        text("definition"),
    ]));
    ComputedView::new(schema, move |_| {
        let catalog = db.catalog();
        let views: Vec<_> = catalog.views().collect();
        let col = |f: &dyn Fn(&hindsight_storage::ViewDef) -> Option<String>| -> ArrayRef {
            Arc::new(views.iter().map(|v| f(v)).collect::<StringArray>())
        };
        vec![
            col(&|_| Some(crate::plan::catalog::SCHEMA.into())),
            col(&|v| Some(v.name.clone())),
            col(&|_| Some("postgres".into())),
            col(&|v| Some(format!("{};", v.sql))),
        ]
    })
}
