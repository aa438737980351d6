//! Helpers the engine's unit tests share.

use crate::types::{ColumnDef, DataType, ScalarType, TableDef, TableOptions};

/// A table `name (id BIGINT NOT NULL PRIMARY KEY, v BIGINT)` without event time.
pub(super) fn id_value_table(name: &str) -> TableDef {
    TableDef::new(
        name,
        vec![
            ColumnDef::new("id", DataType::Scalar(ScalarType::Int64)).not_null(),
            ColumnDef::new("v", DataType::Scalar(ScalarType::Int64)),
        ],
        vec![0],
        None,
        TableOptions::default(),
    )
}
