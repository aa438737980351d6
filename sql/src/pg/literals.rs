//! PostgreSQL text literals that Arrow casts would misread.
//!
//! - arrays: `'{0.1,0.2,0.3}'` for `REAL[]` columns (Arrow cannot cast text to a list);
//! - bytea: `'\x0102'` is hex, as in PostgreSQL (Arrow would store the characters).
//!
//! In `INSERT ... VALUES`, a string literal going into such a column is rewritten
//! before planning (into `ARRAY[...]` or `X'...'`), so it is typed and cast like any
//! other value; so is a string literal cast to bytea anywhere (`'\x0102'::bytea`,
//! `E'\\x01'::bytea`, `bytea '\x01'`). Parameters bound as text are decoded by the
//! wire layer.

use std::ops::ControlFlow;

use hindsight_storage::{DataType, ScalarType, TableDef};
use sqlparser::ast::{
    Array, DataType as SqlType, Expr, Insert, SetExpr, Statement, TypedString, Value,
    ValueWithSpan, VisitMut, VisitorMut,
};

use crate::ident::normalize;

/// Split the text of a one-dimensional PostgreSQL array literal into elements
/// (`None` for NULL elements); `None` if the text is not an array literal.
pub fn parse_pg_array(text: &str) -> Option<Vec<Option<String>>> {
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut out = Vec::new();
    if inner.trim().is_empty() {
        return Some(out);
    }
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut item = String::new();
        let quoted = chars.peek() == Some(&'"');
        if quoted {
            chars.next();
            loop {
                match chars.next()? {
                    '\\' => item.push(chars.next()?),
                    '"' => break,
                    c => item.push(c),
                }
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                if c == '{' || c == '}' || c == '"' {
                    return None; // nested or malformed
                }
                item.push(c);
                chars.next();
            }
            item = item.trim().to_string();
        }
        if !quoted && item.eq_ignore_ascii_case("null") {
            out.push(None);
        } else {
            out.push(Some(item));
        }
        match chars.next() {
            None => return Some(out),
            Some(',') => continue,
            Some(_) => return None,
        }
    }
}

fn element_expr(item: Option<String>, elem: ScalarType) -> Expr {
    let value = match item {
        None => Value::Null,
        Some(s) => match elem {
            ScalarType::Text
            | ScalarType::Bytes
            | ScalarType::Date
            | ScalarType::Timestamp
            | ScalarType::TimestampTz => Value::SingleQuotedString(s),
            ScalarType::Bool => Value::Boolean(matches!(
                s.to_ascii_lowercase().as_str(),
                "t" | "true" | "1" | "yes" | "on"
            )),
            _ => Value::Number(s, false),
        },
    };
    Expr::Value(ValueWithSpan::from(value))
}

/// Decode PostgreSQL bytea text input (`\x` hex format, or the escape format).
pub fn parse_pg_bytea(text: &str) -> Option<Vec<u8>> {
    if let Some(hex) = text
        .strip_prefix("\\x")
        .or_else(|| text.strip_prefix("\\X"))
    {
        let hex: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        if !hex.len().is_multiple_of(2) {
            return None;
        }
        return hex
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
            .collect();
    }
    let mut out = Vec::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
        } else if b.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let oct = std::str::from_utf8(b.get(i + 1..i + 4)?).ok()?;
            out.push(u8::from_str_radix(oct, 8).ok()?);
            i += 4;
        }
    }
    Some(out)
}

/// Rewrite array and bytea text literals going into columns of `def` in `ins`'s VALUES.
pub(crate) fn rewrite_insert_literals(ins: &mut Insert, def: &TableDef) {
    let Some(source) = ins.source.as_mut() else {
        return;
    };
    let SetExpr::Values(values) = source.body.as_mut() else {
        return;
    };
    let targets: Vec<Option<DataType>> = if ins.columns.is_empty() {
        def.columns.iter().map(|c| Some(c.data_type)).collect()
    } else {
        ins.columns
            .iter()
            .map(|c| {
                c.0.last()
                    .and_then(|p| p.as_ident())
                    .and_then(|i| def.column_index(&normalize(i)))
                    .and_then(|i| def.columns.get(i))
                    .map(|c| c.data_type)
            })
            .collect()
    };
    for row in &mut values.rows {
        for (e, t) in row.content.iter_mut().zip(&targets) {
            let Expr::Value(v) = e else { continue };
            let Value::SingleQuotedString(text) = &v.value else {
                continue;
            };
            match t {
                Some(DataType::List(elem)) => {
                    if let Some(items) = parse_pg_array(text) {
                        *e = Expr::Array(Array {
                            elem: items.into_iter().map(|i| element_expr(i, *elem)).collect(),
                            named: true,
                        });
                    }
                }
                Some(DataType::Scalar(ScalarType::Bytes)) => {
                    if let Some(bytes) = parse_pg_bytea(text) {
                        *e = hex_literal(&bytes);
                    }
                }
                _ => {}
            }
        }
    }
}

/// `X'...'`: bytes as the hex literal DataFusion types as binary.
fn hex_literal(bytes: &[u8]) -> Expr {
    let hex: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
    Expr::Value(ValueWithSpan::from(Value::HexStringLiteral(hex)))
}

/// Rewrite string literals cast to bytea into the bytes PostgreSQL reads from them
/// (hex `\x..` or escape format); a literal that is neither is left to the cast.
pub(crate) fn bytea_casts(stmt: &mut Statement) {
    let _ = stmt.visit(&mut ByteaCasts);
}

struct ByteaCasts;

impl VisitorMut for ByteaCasts {
    type Break = ();

    fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        let bytes = match e {
            Expr::Cast {
                expr,
                data_type: SqlType::Bytea,
                ..
            } => match expr.as_ref() {
                Expr::Value(v) => string_value(&v.value).and_then(parse_pg_bytea),
                _ => None,
            },
            Expr::TypedString(TypedString {
                data_type: SqlType::Bytea,
                value,
                ..
            }) => string_value(&value.value).and_then(parse_pg_bytea),
            _ => None,
        };
        if let Some(bytes) = bytes {
            *e = hex_literal(&bytes);
        }
        ControlFlow::Continue(())
    }
}

fn string_value(v: &Value) -> Option<&str> {
    match v {
        Value::SingleQuotedString(s) | Value::EscapedStringLiteral(s) => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_literals_split_like_postgres() {
        assert_eq!(
            parse_pg_array("{1,2.5, 3}").unwrap(),
            vec![Some("1".into()), Some("2.5".into()), Some("3".into())]
        );
        assert_eq!(parse_pg_array("{}").unwrap(), Vec::<Option<String>>::new());
        assert_eq!(
            parse_pg_array(r#"{"a,b",NULL,"say \"hi\"",c}"#).unwrap(),
            vec![
                Some("a,b".into()),
                None,
                Some("say \"hi\"".into()),
                Some("c".into())
            ]
        );
        assert!(parse_pg_array("{{1,2},{3,4}}").is_none());
        assert!(parse_pg_array("not an array").is_none());
    }

    #[test]
    fn bytea_text_decodes_hex_and_escapes() {
        assert_eq!(parse_pg_bytea("\\x0aff").unwrap(), vec![10, 255]);
        assert_eq!(
            parse_pg_bytea("ab\\\\c\\001").unwrap(),
            b"ab\\c\x01".to_vec()
        );
        assert!(parse_pg_bytea("\\x0").is_none());
    }
}
