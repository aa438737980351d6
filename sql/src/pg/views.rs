//! `pg_catalog` views computed when they are scanned: `pg_cursors` (the session's
//! open cursors, as psycopg reads them before it closes a server-side cursor) and
//! `pg_views` (views and their definitions); `pg_indexes` is `pg::indexes`'. A leaf
//! of the `pg` floor.
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
        let split = hindsight_storage::split_relation_key;
        vec![
            col(&|v| Some(split(&v.name).0.to_string())),
            col(&|v| Some(split(&v.name).1.to_string())),
            col(&|_| Some("postgres".into())),
            col(&|v| Some(format!("{};", v.sql))),
        ]
    })
}
