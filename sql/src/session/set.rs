//! Session settings: SET, RESET, SHOW, `current_setting(name [, missing_ok])` and
//! `set_config(name, value, is_local)`, with the parsed `statement_timeout` kept in
//! step.
//!
//! The two functions read and change the session, so they are resolved before
//! planning: a call with literal arguments becomes the literal it returns
//! (`set_config` changes the setting then, as SET would). A prepared statement
//! resolves them when it is prepared.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType as ArrowType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Statement, Value as SqlValue, VisitMut,
    VisitorMut,
};

use super::state::{Session, parse_timeout_ms};
use crate::error::{ErrorKind, Result, SqlError};
use crate::output::{Output, memory_stream};
use crate::settings::DEFAULT_SETTINGS;

impl Session {
    /// A setting's current value.
    pub fn setting(&self, name: &str) -> Option<&str> {
        self.settings
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    pub(super) fn set(&mut self, set: sqlparser::ast::Set) -> Result<Output> {
        use sqlparser::ast::Set as S;
        match set {
            S::SingleAssignment {
                variable, values, ..
            } => {
                let name = variable.to_string().to_ascii_lowercase();
                let value = values
                    .iter()
                    .map(|v| match v {
                        sqlparser::ast::Expr::Value(v) => match &v.value {
                            SqlValue::SingleQuotedString(s) | SqlValue::DoubleQuotedString(s) => {
                                s.clone()
                            }
                            other => other.to_string(),
                        },
                        // A quoted schema name in search_path keeps its quotes (and case).
                        sqlparser::ast::Expr::Identifier(i)
                            if name == "search_path" && i.quote_style.is_some() =>
                        {
                            i.to_string()
                        }
                        sqlparser::ast::Expr::Identifier(i) => i.value.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                self.set_variable(&name, &value)?;
                Ok(Output::command("SET"))
            }
            S::SetTimeZone { value, .. } => {
                let v = match value {
                    sqlparser::ast::Expr::Value(v) => match v.value {
                        SqlValue::SingleQuotedString(s) => s,
                        other => other.to_string(),
                    },
                    other => other.to_string(),
                };
                self.set_variable("timezone", &v)?;
                Ok(Output::command("SET"))
            }
            S::SetNames { charset_name, .. } => {
                self.set_variable("client_encoding", &charset_name.to_string())?;
                Ok(Output::command("SET"))
            }
            S::SetTransaction { .. } | S::SetSessionAuthorization(_) | S::SetRole { .. } => {
                Ok(Output::command("SET"))
            }
            other => Err(SqlError::unsupported(format!("{other} is not supported"))),
        }
    }

    /// Set a session variable (also used by the wire layer for startup parameters).
    pub fn set_variable(&mut self, name: &str, value: &str) -> Result<()> {
        let name = name.to_ascii_lowercase();
        match name.as_str() {
            "client_encoding" | "server_encoding"
                if !matches!(
                    value.to_ascii_uppercase().replace(['-', '_'], "").as_str(),
                    "UTF8" | "UNICODE"
                ) =>
            {
                return Err(SqlError::new(
                    ErrorKind::InvalidParameterValue,
                    format!("unsupported encoding \"{value}\": only UTF8 is supported"),
                ));
            }
            "statement_timeout" => {
                parse_timeout_ms(value)?;
            }
            "server_version" | "server_version_num" | "integer_datetimes" | "server_encoding" => {
                return Err(SqlError::new(
                    ErrorKind::InvalidParameterValue,
                    format!("parameter \"{name}\" cannot be changed"),
                ));
            }
            _ => {}
        }
        let value = if name == "client_encoding" {
            "UTF8".to_string()
        } else {
            value.to_string()
        };
        self.store_setting(name, Some(value));
        Ok(())
    }

    /// Store (or with `None` remove) a checked setting, keeping parsed copies in step.
    pub(super) fn store_setting(&mut self, name: String, value: Option<String>) {
        if name == "statement_timeout" {
            self.statement_timeout_ms = value
                .as_deref()
                .and_then(|v| parse_timeout_ms(v).ok())
                .unwrap_or(0);
        }
        if name == "search_path" {
            self.stmt.set_search_path(match &value {
                Some(v) => crate::plan::names::parse_search_path(v),
                None => crate::plan::names::default_search_path(),
            });
        }
        match value {
            Some(v) => self.settings.insert(name, v),
            None => self.settings.remove(&name),
        };
    }

    /// `RESET name` or `RESET ALL`.
    pub(super) fn reset(&mut self, which: sqlparser::ast::Reset) -> Output {
        match which {
            sqlparser::ast::Reset::ALL => {
                let names: Vec<String> = self.settings.keys().cloned().collect();
                for name in names {
                    self.reset_variable(&name);
                }
            }
            sqlparser::ast::Reset::ConfigurationParameter(name) => {
                self.reset_variable(&name.to_string().replace(' ', "_"));
            }
        }
        Output::command("RESET")
    }

    /// Reset a variable to its default.
    pub fn reset_variable(&mut self, name: &str) {
        let name = name.to_ascii_lowercase();
        let default = DEFAULT_SETTINGS
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string());
        self.store_setting(name, default);
    }

    /// The session's statement timeout in milliseconds (0: none).
    pub fn statement_timeout_ms(&self) -> u64 {
        self.statement_timeout_ms
    }

    /// A setting's value now: the ones that follow this node's cluster role
    /// (`transaction_read_only`, `default_transaction_read_only`, `in_hot_standby`:
    /// on for a standby) and the session's settings.
    pub(crate) fn setting_now(&self, key: &str) -> Option<String> {
        match key {
            "transaction_read_only" | "default_transaction_read_only" | "in_hot_standby" => {
                let standby = !self.engine.db().role().takes_writes();
                Some(if standby { "on" } else { "off" }.to_string())
            }
            _ => self.settings.get(key).cloned(),
        }
    }

    /// Resolve the `current_setting` and `set_config` calls of a statement.
    pub(super) fn resolve_setting_calls(&mut self, stmt: &mut Statement) -> Result<()> {
        if !matches!(stmt, Statement::Query(_)) {
            return Ok(());
        }
        match stmt.visit(&mut SettingCalls { session: self }) {
            ControlFlow::Break(e) => Err(e),
            ControlFlow::Continue(()) => Ok(()),
        }
    }

    /// `current_setting(name, missing_ok)`: None for a missing setting when allowed.
    fn current_setting(&self, name: &str, missing_ok: bool) -> Result<Option<String>> {
        let key = name.to_ascii_lowercase();
        match self.setting_now(&key) {
            Some(v) => Ok(Some(v)),
            None if missing_ok => Ok(None),
            None => Err(SqlError::new(
                ErrorKind::UndefinedObject,
                format!("unrecognized configuration parameter \"{name}\""),
            )),
        }
    }

    pub(super) async fn show(&mut self, variable: &[sqlparser::ast::Ident]) -> Result<Output> {
        let name = variable
            .iter()
            .map(|i| i.value.to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join(" ");
        let (names, values): (Vec<String>, Vec<String>) = if name == "all" {
            self.settings
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .unzip()
        } else {
            let key = match name.as_str() {
                "time zone" => "timezone".to_string(),
                "transaction isolation level" => "transaction_isolation".to_string(),
                _ => name.clone(),
            };
            match self.setting_now(&key) {
                Some(v) => (vec![key], vec![v]),
                None => {
                    return Err(SqlError::new(
                        ErrorKind::UndefinedObject,
                        format!("unrecognized configuration parameter \"{name}\""),
                    ));
                }
            }
        };
        use datafusion::arrow::array::StringArray;
        let batch = if name == "all" {
            RecordBatch::try_new(
                Arc::new(Schema::new(vec![
                    Field::new("name", ArrowType::Utf8, false),
                    Field::new("setting", ArrowType::Utf8, false),
                ])),
                vec![
                    Arc::new(StringArray::from(names)),
                    Arc::new(StringArray::from(values)),
                ],
            )?
        } else {
            RecordBatch::try_new(
                Arc::new(Schema::new(vec![Field::new(&name, ArrowType::Utf8, false)])),
                vec![Arc::new(StringArray::from(values))],
            )?
        };
        Ok(Output::Rows(memory_stream(vec![batch])))
    }
}

/// Replaces `current_setting(...)` and `set_config(...)` calls with literal
/// arguments by their value (see the module comment).
struct SettingCalls<'a> {
    session: &'a mut Session,
}

impl VisitorMut for SettingCalls<'_> {
    type Break = SqlError;

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<SqlError> {
        let Expr::Function(f) = expr else {
            return ControlFlow::Continue(());
        };
        let Some(name) = f.name.0.last().and_then(|p| p.as_ident()) else {
            return ControlFlow::Continue(());
        };
        let name = name.value.to_ascii_lowercase();
        if name == crate::pg::visibility::NAME {
            if let FunctionArguments::List(list) = &mut f.args
                && list.args.len() == 1
            {
                let path = self.session.stmt.visibility_path();
                list.args
                    .push(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::value(
                        SqlValue::SingleQuotedString(path),
                    ))));
            }
            return ControlFlow::Continue(());
        }
        if name != "current_setting" && name != "set_config" {
            return ControlFlow::Continue(());
        }
        let Some(args) = literal_args(&f.args) else {
            return ControlFlow::Continue(());
        };
        let value = match (name.as_str(), args.as_slice()) {
            ("current_setting", [setting]) => self.session.current_setting(setting, false),
            ("current_setting", [setting, missing_ok]) => {
                let ok = matches!(missing_ok.as_str(), "true" | "t" | "on");
                self.session.current_setting(setting, ok)
            }
            ("set_config", [setting, value, _is_local]) => self
                .session
                .set_variable(setting, value)
                .map(|()| Some(value.clone())),
            _ => return ControlFlow::Continue(()),
        };
        match value {
            Ok(v) => {
                let text = v.map_or(SqlValue::Null, SqlValue::SingleQuotedString);
                *expr = Expr::value(text);
                ControlFlow::Continue(())
            }
            Err(e) => ControlFlow::Break(e),
        }
    }
}

/// A call's arguments when every one is a literal (strings and booleans, as text).
fn literal_args(args: &FunctionArguments) -> Option<Vec<String>> {
    let FunctionArguments::List(list) = args else {
        return None;
    };
    list.args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v))) => match &v.value {
                SqlValue::SingleQuotedString(s) => Some(s.clone()),
                SqlValue::Boolean(b) => Some(b.to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}
