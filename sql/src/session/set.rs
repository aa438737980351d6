//! Session settings: SET, RESET, SHOW and `current_setting`, with the parsed
//! `statement_timeout` kept in step.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType as ArrowType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use sqlparser::ast::Value as SqlValue;

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
        match value {
            Some(v) => self.settings.insert(name, v),
            None => self.settings.remove(&name),
        };
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
