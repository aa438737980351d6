//! `LIKE` / `ILIKE` with an `ESCAPE` character other than backslash (SQLAlchemy
//! sends `nspname NOT LIKE 'pg/_%' ESCAPE '/'`). DataFusion only knows backslash
//! escapes, so the pattern is translated to them: `x LIKE p ESCAPE 'c'` becomes
//! `x LIKE __hindsight_like_escape(p, 'c')`. A pattern with `ESCAPE ''` has no
//! escape character at all, as in PostgreSQL.
//!
//! Invariant: the translated pattern matches exactly what the original matches
//! under PostgreSQL's rules (an escaped character is literal; an unescaped
//! backslash is an ordinary character when another escape character is set).
//!
//! The same walk rewrites the one other expression form catalog queries use that
//! DataFusion lacks: the set-returning `generate_subscripts(a, d)` beside `unnest(a)`
//! in a select list (SQLAlchemy's key and index reflection) becomes
//! `unnest(generate_series(1, array_length(a, d)))`; DataFusion runs the unnests of
//! one select list in lockstep, as PostgreSQL runs its set-returning functions.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::{Array, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use sqlparser::ast::{Expr, Statement, Value, VisitMut, VisitorMut};

/// Name of the translating function.
pub(crate) const LIKE_ESCAPE_FUNCTION: &str = "__hindsight_like_escape";

/// Rewrite every LIKE / ILIKE with a non-backslash ESCAPE in `stmt`.
pub(crate) fn like_escapes(stmt: &mut Statement) {
    let _ = stmt.visit(&mut LikeEscapes);
}

struct LikeEscapes;

/// `generate_subscripts(a, d)` as `unnest(generate_series(1, array_length(a, d)))`.
fn generate_subscripts(expr: &Expr) -> Option<Expr> {
    let Expr::Function(f) = expr else {
        return None;
    };
    let name = f.name.0.last()?.as_ident()?;
    if !name.value.eq_ignore_ascii_case("generate_subscripts") {
        return None;
    }
    let sqlparser::ast::FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let args: Vec<Expr> = list
        .args
        .iter()
        .map(|a| match a {
            sqlparser::ast::FunctionArg::Unnamed(sqlparser::ast::FunctionArgExpr::Expr(e)) => {
                Some(e.clone())
            }
            _ => None,
        })
        .collect::<Option<_>>()?;
    let [array, dim] = args.as_slice() else {
        return None;
    };
    use crate::plan::rewrite::func;
    let one = Expr::value(Value::Number("1".into(), false));
    let len = func("array_length", vec![array.clone(), dim.clone()]);
    Some(func(
        "unnest",
        vec![func("generate_series", vec![one, len])],
    ))
}

impl VisitorMut for LikeEscapes {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Some(rewritten) = generate_subscripts(expr) {
            *expr = rewritten;
            return ControlFlow::Continue(());
        }
        let (Expr::Like {
            pattern,
            escape_char,
            ..
        }
        | Expr::ILike {
            pattern,
            escape_char,
            ..
        }) = expr
        else {
            return ControlFlow::Continue(());
        };
        let Some(esc) = escape_char.as_ref().map(|v| v.value.clone()) else {
            return ControlFlow::Continue(());
        };
        if matches!(&esc, Value::SingleQuotedString(s) if s == "\\") {
            return ControlFlow::Continue(());
        }
        let call = crate::plan::rewrite::func(
            LIKE_ESCAPE_FUNCTION,
            vec![(**pattern).clone(), Expr::value(esc)],
        );
        **pattern = call;
        *escape_char = None;
        ControlFlow::Continue(())
    }
}

/// `pattern` with escape character `esc` (none if empty) as a backslash-escaped
/// pattern; `None` for an escape string longer than one character.
pub(crate) fn translate(pattern: &str, esc: &str) -> Option<String> {
    let mut escs = esc.chars();
    let esc = escs.next();
    if escs.next().is_some() {
        return None;
    }
    let mut out = String::with_capacity(pattern.len() + 4);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if Some(c) == esc {
            match chars.next() {
                Some(n @ ('%' | '_' | '\\')) => {
                    out.push('\\');
                    out.push(n);
                }
                Some(n) => out.push(n),
                None => return None,
            }
        } else if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// `__hindsight_like_escape(pattern, escape)`.
pub(crate) fn like_escape_udf() -> ScalarUDF {
    create_udf(
        LIKE_ESCAPE_FUNCTION,
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let text = |i: usize| {
                arrays
                    .get(i)
                    .and_then(|a| a.as_any().downcast_ref::<StringArray>())
                    .ok_or_else(|| DataFusionError::Plan("LIKE ... ESCAPE expects text".into()))
            };
            let (patterns, escapes) = (text(0)?, text(1)?);
            let mut out = Vec::with_capacity(patterns.len());
            for i in 0..patterns.len() {
                if patterns.is_null(i) || escapes.is_null(i) {
                    out.push(None);
                    continue;
                }
                let t = translate(patterns.value(i), escapes.value(i)).ok_or_else(|| {
                    DataFusionError::Execution(
                        "invalid escape string: it must be empty or one character".into(),
                    )
                })?;
                out.push(Some(t));
            }
            Ok(ColumnarValue::Array(Arc::new(StringArray::from(out))))
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::translate;

    #[test]
    fn escapes_translate_to_backslash_escapes() {
        assert_eq!(translate("pg/_%", "/").as_deref(), Some("pg\\_%"));
        assert_eq!(translate("a//b", "/").as_deref(), Some("a/b"));
        assert_eq!(translate("a\\b%", "/").as_deref(), Some("a\\\\b%"));
        assert_eq!(translate("50#%", "#").as_deref(), Some("50\\%"));
        assert_eq!(translate("a_b", "").as_deref(), Some("a_b"));
        assert_eq!(translate("bad/", "/"), None);
        assert_eq!(translate("x", "ab"), None);
    }
}
