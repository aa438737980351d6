//! `CREATE SCHEMA [IF NOT EXISTS] s [AUTHORIZATION r]` and `DROP SCHEMA [IF EXISTS]
//! s [, ...] [CASCADE | RESTRICT]`.
//!
//! A schema is a catalog entry; its relations are keyed `s.name` (see
//! `hindsight_storage::relation_key`). Both statements are catalog operations of the
//! session's transaction, so ROLLBACK undoes them. Dropping a schema that still holds
//! relations is 2BP01 unless CASCADE, which first drops its views, then its tables
//! (with their indexes, and the views elsewhere that read them).

use hindsight_storage::{CatalogOp, SchemaDef, split_relation_key};
use sqlparser::ast::{ObjectName, SchemaName};

use super::state::Session;
use crate::error::{ErrorKind, Result, SqlError};
use crate::ident::normalize;
use crate::output::Output;
use crate::plan::names::name_parts;

/// The schema an object name names (`s`, or `hindsight.s`).
fn schema_name(name: &ObjectName) -> Result<String> {
    match name_parts(name)?.as_slice() {
        [s] => Ok(s.clone()),
        [d, s] if d == crate::plan::catalog::CATALOG => Ok(s.clone()),
        _ => Err(SqlError::syntax(format!("improper schema name {name}"))),
    }
}

impl Session {
    pub(super) fn create_schema(
        &mut self,
        name: SchemaName,
        if_not_exists: bool,
    ) -> Result<Output> {
        let (name, owner) = match name {
            SchemaName::Simple(n) => (schema_name(&n)?, None),
            SchemaName::UnnamedAuthorization(r) => (normalize(&r), Some(normalize(&r))),
            SchemaName::NamedAuthorization(n, r) => (schema_name(&n)?, Some(normalize(&r))),
        };
        if if_not_exists && self.catalog().schema_exists(&name) {
            return Ok(Output::command("CREATE SCHEMA"));
        }
        if name.starts_with("pg_") {
            return Err(SqlError::new(
                ErrorKind::InvalidSchemaName,
                format!("unacceptable schema name \"{name}\""),
            )
            .with_detail("The prefix \"pg_\" is reserved for system schemas."));
        }
        self.change_catalog(CatalogOp::CreateSchema(SchemaDef { name, owner }))?;
        Ok(Output::command("CREATE SCHEMA"))
    }

    pub(super) fn drop_schemas(
        &mut self,
        names: &[ObjectName],
        if_exists: bool,
        cascade: bool,
    ) -> Result<Output> {
        for n in names {
            let name = schema_name(n)?;
            if name == hindsight_storage::PUBLIC_SCHEMA || name == "pg_catalog" {
                return Err(SqlError::new(
                    ErrorKind::DependentObjectsStillExist,
                    format!("cannot drop schema {name} because the system requires it"),
                ));
            }
            if self.catalog().schema(&name).is_none() {
                if if_exists {
                    continue;
                }
                return Err(hindsight_storage::Error::NoSuchSchema(name).into());
            }
            if cascade {
                self.drop_schema_contents(&name)?;
            }
            self.change_catalog(CatalogOp::DropSchema { name })?;
        }
        Ok(Output::command("DROP SCHEMA"))
    }

    /// DROP SCHEMA ... CASCADE: every view, then every table of the schema.
    fn drop_schema_contents(&mut self, schema: &str) -> Result<()> {
        let in_schema = |key: &str| split_relation_key(key).0 == schema;
        let catalog = self.catalog();
        let views: Vec<String> = catalog
            .views()
            .map(|v| v.name.clone())
            .filter(|k| in_schema(k))
            .collect();
        let tables: Vec<String> = catalog
            .tables()
            .map(|t| t.name.clone())
            .filter(|k| in_schema(k))
            .collect();
        for key in views {
            self.drop_relation_key(&key, true, true)?;
        }
        for key in tables {
            self.drop_relation_key(&key, false, true)?;
        }
        Ok(())
    }
}
