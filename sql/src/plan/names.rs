//! Relation names: how a name as written (`t`, `s.t`, `hindsight.s.t`) becomes the
//! relation key of the storage catalog (`t` for schema `public`, `s.t` otherwise; see
//! `hindsight_storage::relation_key`).
//!
//! An unqualified name is looked up in the session's search path, in order: its
//! temporary schema first (when it has one), then the schemas of `search_path` that
//! exist. A new relation named without a schema goes to the first schema of the
//! search path that exists (a temporary table to the session's temporary schema).
//!
//! Invariant: every statement resolves names with one [`Names`] (one catalog, one
//! path), so a name means the same relation throughout a statement. Before DataFusion
//! plans a query, `views::expand` rewrites every table reference to the schema it
//! resolves to, so everything downstream (table providers, the relation planner, the
//! as-of planner) needs only [`key_of`].

use std::sync::Arc;

use hindsight_storage::{Catalog, PUBLIC_SCHEMA, TableDef, relation_key, split_relation_key};
use sqlparser::ast::{Ident, ObjectName};

use crate::error::{ErrorKind, Result, SqlError};
use crate::ident::normalize;
use crate::plan::catalog::CATALOG;

/// The search path a session starts with (`"$user", public`).
pub(crate) fn default_search_path() -> Vec<String> {
    vec![PUBLIC_SCHEMA.to_string()]
}

/// Parse a `search_path` setting: a comma-separated list of schema names, each bare
/// (folded to lower case) or double-quoted. `$user` names the role's own schema,
/// which Hindsight does not create, so it is skipped.
pub(crate) fn parse_search_path(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(
            |s| match s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                Some(quoted) => quoted.replace("\"\"", "\""),
                None => s.to_ascii_lowercase(),
            },
        )
        .filter(|s| s != "$user")
        .collect()
}

/// The normalized parts of an object name (`None` for a function-call part).
pub(crate) fn parts(name: &ObjectName) -> Option<Vec<String>> {
    name.0.iter().map(|p| p.as_ident().map(normalize)).collect()
}

/// The normalized parts of a relation name, or 42601.
pub(crate) fn name_parts(name: &ObjectName) -> Result<Vec<String>> {
    parts(name).ok_or_else(|| SqlError::syntax(format!("improper relation name {name}")))
}

/// The relation key a name refers to once qualified (no search-path lookup): `t` is
/// in `public`, `s.t` in `s`, `db.s.t` in `s`.
pub(crate) fn key_of(parts: &[String]) -> Option<String> {
    match parts {
        [n] => Some(n.clone()),
        [s, n] => Some(relation_key(s, n)),
        [d, s, n] if d == CATALOG => Some(relation_key(s, n)),
        _ => None,
    }
}

/// A relation key as SQL text: `"t"`, or `"s"."t"` outside `public`.
pub(crate) fn quote_key(key: &str) -> String {
    let quote = |n: &str| format!("\"{}\"", n.replace('"', "\"\""));
    match key.split_once('.') {
        Some((s, n)) => format!("{}.{}", quote(s), quote(n)),
        None => quote(key),
    }
}

/// A relation key as a qualified object name (`"s"."t"`, `"public"."t"`).
pub(crate) fn qualified_name(key: &str) -> ObjectName {
    let (schema, name) = split_relation_key(key);
    ObjectName::from(vec![
        Ident::with_quote('"', schema),
        Ident::with_quote('"', name),
    ])
}

/// A name as the user wrote it, for messages.
pub(crate) fn written(parts: &[String]) -> String {
    parts.join(".")
}

/// Every session's temporary schema is `pg_temp_N`.
pub(crate) const TEMP_PREFIX: &str = "pg_temp_";

/// Whether `schema` is another session's temporary schema (`mine` is this
/// session's): its tables are invisible here, as in PostgreSQL.
pub(crate) fn foreign_temp(schema: &str, mine: Option<&str>) -> bool {
    schema.starts_with(TEMP_PREFIX) && Some(schema) != mine
}

fn undefined_table(parts: &[String]) -> SqlError {
    SqlError::new(
        ErrorKind::UndefinedTable,
        format!("relation \"{}\" does not exist", written(parts)),
    )
}

/// Name resolution for one statement: a catalog and a search path.
#[derive(Clone, Debug)]
pub(crate) struct Names {
    catalog: Arc<Catalog>,
    /// The session's temporary schema, searched first; never the default for creation.
    temp: Option<String>,
    path: Vec<String>,
}

impl Names {
    pub(crate) fn new(catalog: Arc<Catalog>, temp: Option<String>, path: Vec<String>) -> Self {
        Names {
            catalog,
            temp,
            path,
        }
    }

    pub(crate) fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The key of an existing relation (table, view or index) the name refers to.
    pub(crate) fn existing(&self, parts: &[String]) -> Option<String> {
        self.find(parts, |k| {
            self.catalog.relation_exists(k) || self.catalog.index(k).is_some()
        })
    }

    /// The key of the table the name refers to, if it names a table.
    pub(crate) fn find_table(&self, parts: &[String]) -> Option<Arc<TableDef>> {
        let key = self.find(parts, |k| self.catalog.table(k).is_some())?;
        self.catalog.table(&key).cloned()
    }

    /// The table the name refers to, or 42P01 (also for another session's
    /// temporary table: it does not exist for this session).
    pub(crate) fn table(&self, parts: &[String]) -> Result<Arc<TableDef>> {
        self.find_table(parts).ok_or_else(|| undefined_table(parts))
    }

    /// The table an object name refers to, or 42P01.
    pub(crate) fn table_named(&self, name: &ObjectName) -> Result<Arc<TableDef>> {
        self.table(&name_parts(name)?)
    }

    /// The key of the relation the name refers to, found by `exists`.
    pub(crate) fn find(&self, parts: &[String], exists: impl Fn(&str) -> bool) -> Option<String> {
        match parts {
            [n] => self
                .temp
                .iter()
                .chain(&self.path)
                .filter(|s| self.catalog.schema_exists(s))
                .map(|s| relation_key(s, n))
                .find(|k| exists(k)),
            [s, _] if foreign_temp(s, self.temp.as_deref()) => None,
            [s, n] => Some(relation_key(self.schema_alias(s), n)).filter(|k| exists(k)),
            _ => key_of(parts).filter(|k| exists(k)),
        }
    }

    /// `pg_temp` names the session's temporary schema.
    fn schema_alias<'a>(&'a self, schema: &'a str) -> &'a str {
        match (&self.temp, schema) {
            (Some(temp), "pg_temp") => temp,
            _ => schema,
        }
    }

    /// The key a new relation named `parts` takes: in the schema named, else the first
    /// schema of the search path that exists (3F000 if none does).
    pub(crate) fn new_key(&self, parts: &[String]) -> Result<String> {
        let (schema, name) = match parts {
            [n] => {
                let schema = self
                    .path
                    .iter()
                    .find(|s| self.catalog.schema_exists(s))
                    .ok_or_else(|| {
                        SqlError::new(
                            ErrorKind::InvalidSchemaName,
                            "no schema has been selected to create in",
                        )
                    })?;
                (schema.as_str(), n.as_str())
            }
            [s, n] => (s.as_str(), n.as_str()),
            [d, s, n] if d == CATALOG => (s.as_str(), n.as_str()),
            [_, _, _] => {
                return Err(SqlError::unsupported(format!(
                    "cross-database references are not implemented: {}",
                    written(parts)
                )));
            }
            _ => {
                return Err(SqlError::syntax(format!(
                    "improper relation name (too many dotted names): {}",
                    written(parts)
                )));
            }
        };
        if !self.catalog.schema_exists(schema) {
            return Err(SqlError::new(
                ErrorKind::InvalidSchemaName,
                format!("schema \"{schema}\" does not exist"),
            ));
        }
        if name.contains('.') {
            return Err(SqlError::new(
                ErrorKind::InvalidParameterValue,
                format!("relation name \"{name}\" is not supported: names may not contain '.'"),
            ));
        }
        Ok(relation_key(schema, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_path_setting_is_parsed_as_postgresql_does() {
        assert_eq!(parse_search_path("\"$user\", public"), vec!["public"]);
        assert_eq!(
            parse_search_path("Feat, \"Mixed\"\"Case\", public"),
            vec!["feat", "Mixed\"Case", "public"]
        );
        assert!(parse_search_path("").is_empty());
    }

    #[test]
    fn qualified_names_map_to_relation_keys() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(key_of(&s(&["t"])).as_deref(), Some("t"));
        assert_eq!(key_of(&s(&["public", "t"])).as_deref(), Some("t"));
        assert_eq!(key_of(&s(&["feat", "t"])).as_deref(), Some("feat.t"));
        assert_eq!(
            key_of(&s(&["hindsight", "feat", "t"])).as_deref(),
            Some("feat.t")
        );
        assert_eq!(key_of(&s(&["other", "feat", "t"])), None);
    }
}
