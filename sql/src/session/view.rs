//! `CREATE [OR REPLACE] VIEW name [(columns)] AS query` (DROP VIEW and renames:
//! `alter`).
//!
//! A view is its query's text (as parsed, before Hindsight's rewrites, so it reads
//! as written: `ASOF JOIN`, `FOR SYSTEM_TIME AS OF`, `history(...)`) and its column
//! names, kept in the storage catalog. Creating one plans the query, so a view that
//! cannot run is never stored; each use plans it again in place (see
//! `plan::relation`), so a view over time-travel reads stays point-in-time correct.

use hindsight_storage::{CatalogOp, ViewDef};
use sqlparser::ast::{CreateView, Statement};

use super::state::Session;
use crate::error::{ErrorKind, Result, SqlError};
use crate::ident::normalize;
use crate::output::Output;
use crate::plan::names::name_parts;
use crate::plan::rewrite::{DUP_MARK, name_query_outputs};
use crate::plan::views::view_query;

impl Session {
    pub(super) async fn create_view(&mut self, cv: CreateView) -> Result<Output> {
        if cv.materialized || cv.temporary || cv.to.is_some() {
            return Err(SqlError::unsupported(
                "MATERIALIZED and TEMPORARY views are not supported",
            )
            .with_hint("create a plain view, or a table with CREATE TABLE ... AS"));
        }
        let name = self.names().new_key(&name_parts(&cv.name)?)?;
        let catalog = self.catalog();
        let exists = catalog.relation_exists(&name);
        if exists && cv.if_not_exists {
            return Ok(Output::command("CREATE VIEW"));
        }
        if exists && cv.or_replace && catalog.view(&name).is_none() {
            return Err(SqlError::new(
                ErrorKind::WrongObjectType,
                format!("\"{}\" is not a view", cv.name),
            ));
        }
        let mut query = cv.query;
        crate::plan::views::qualify(&mut query, &self.names());
        let mut view = ViewDef {
            name,
            sql: query.to_string(),
            columns: Vec::new(),
            types: Vec::new(),
        };
        let (planned, types) = self.view_columns(&view).await?;
        view.types = types;
        view.columns = if cv.columns.is_empty() {
            planned
        } else if cv.columns.len() > planned.len() {
            return Err(SqlError::syntax(
                "CREATE VIEW specifies more column names than columns",
            ));
        } else {
            let mut named: Vec<String> = cv.columns.iter().map(|c| normalize(&c.name)).collect();
            named.extend(planned.into_iter().skip(named.len()));
            named
        };
        if let Some(dup) = first_duplicate(&view.columns) {
            return Err(SqlError::new(
                ErrorKind::DuplicateColumn,
                format!("column \"{dup}\" specified more than once"),
            ));
        }
        self.change_catalog(CatalogOp::CreateView {
            view,
            replace: cv.or_replace,
        })?;
        Ok(Output::command("CREATE VIEW"))
    }

    /// Plan the view's query (it must run today) and return its output names and
    /// types.
    async fn view_columns(&mut self, view: &ViewDef) -> Result<(Vec<String>, Vec<String>)> {
        let mut query = Box::new(view_query(view, super::execute::rewrite_input)?);
        name_query_outputs(&mut query);
        self.begin_statement(vec![])?;
        let plan = self.plan(Statement::Query(query)).await?;
        let fields = plan.schema().fields();
        let names = fields
            .iter()
            .map(|f| {
                f.name()
                    .split(DUP_MARK)
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        let types = fields.iter().map(|f| f.data_type().to_string()).collect();
        Ok((names, types))
    }
}

fn first_duplicate(names: &[String]) -> Option<&String> {
    names
        .iter()
        .enumerate()
        .find(|(i, n)| names[..*i].contains(n))
        .map(|(_, n)| n)
}
