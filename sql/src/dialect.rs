//! The SQL dialect: PostgreSQL, plus `FOR SYSTEM_TIME AS OF` on table references.
//!
//! sqlparser's PostgreSQL dialect does not parse table-version clauses. This dialect
//! delegates every behaviour PostgreSQL overrides, reports PostgreSQL's type id (so
//! the parser's PostgreSQL-specific branches stay on), and turns table versioning on.
//! The other version clauses sqlparser then also accepts (`TIMESTAMP AS OF`, `VERSION
//! AS OF`, `AT(...)`, `CHANGES`) are rejected with a hint in `rewrite`.

use std::any::TypeId;

use sqlparser::ast::Statement;
use sqlparser::dialect::{Dialect, PostgreSqlDialect, Precedence};
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

use crate::error::Result;

/// PostgreSQL with table versioning.
#[derive(Debug, Default, Clone, Copy)]
pub struct HindsightDialect {
    pg: PostgreSqlDialect,
}

macro_rules! delegate {
    ($($name:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty;)*) => {
        $(fn $name(&self, $($arg: $ty),*) -> $ret { self.pg.$name($($arg),*) })*
    };
}

impl Dialect for HindsightDialect {
    fn dialect(&self) -> TypeId {
        TypeId::of::<PostgreSqlDialect>()
    }

    fn supports_table_versioning(&self) -> bool {
        true
    }

    /// `WAIT FOR LSN 'x' [WITH (TIMEOUT 't', NO_THROW)]` (PostgreSQL 19) becomes
    /// `CALL hindsight_wait_for_lsn('x', 't' | NULL, true | false)`.
    fn parse_statement(&self, parser: &mut Parser) -> Option<Result<Statement, ParserError>> {
        let words = parser.peek_tokens::<3>();
        let is =
            |t: &Token, w: &str| matches!(t, Token::Word(x) if x.value.eq_ignore_ascii_case(w));
        if !(is(&words[0], "WAIT") && is(&words[1], "FOR") && is(&words[2], "LSN")) {
            return None;
        }
        Some(parse_wait_for_lsn(parser))
    }

    fn get_next_precedence(&self, parser: &Parser) -> Option<Result<u8, ParserError>> {
        self.pg.get_next_precedence(parser)
    }

    delegate! {
        identifier_quote_style(identifier: &str) -> Option<char>;
        is_delimited_identifier_start(ch: char) -> bool;
        is_identifier_start(ch: char) -> bool;
        is_identifier_part(ch: char) -> bool;
        supports_unicode_string_literal() -> bool;
        is_reserved_for_identifier(kw: Keyword) -> bool;
        is_custom_operator_part(ch: char) -> bool;
        supports_filter_during_aggregation() -> bool;
        supports_group_by_expr() -> bool;
        prec_value(prec: Precedence) -> u8;
        allow_extract_custom() -> bool;
        allow_extract_single_quotes() -> bool;
        supports_create_index_with_clause() -> bool;
        supports_explain_with_utility_options() -> bool;
        supports_listen_notify() -> bool;
        supports_factorial_operator() -> bool;
        supports_bitwise_shift_operators() -> bool;
        supports_comment_on() -> bool;
        supports_load_extension() -> bool;
        supports_named_fn_args_with_colon_operator() -> bool;
        supports_named_fn_args_with_expr_name() -> bool;
        supports_empty_projections() -> bool;
        supports_nested_comments() -> bool;
        supports_string_escape_constant() -> bool;
        supports_numeric_literal_underscores() -> bool;
        supports_array_typedef_with_brackets() -> bool;
        supports_geometric_types() -> bool;
        supports_set_names() -> bool;
        supports_alter_column_type_using() -> bool;
        supports_notnull_operator() -> bool;
        supports_interval_options() -> bool;
        supports_insert_table_alias() -> bool;
        supports_create_table_like_parenthesized() -> bool;
        supports_select_wildcard_with_alias() -> bool;
        supports_comma_separated_trim() -> bool;
        supports_xml_expressions() -> bool;
        supports_comment_optimizer_hint() -> bool;
    }
}

/// The rest of `WAIT FOR LSN` (its three words not yet consumed).
fn parse_wait_for_lsn(parser: &mut Parser) -> Result<Statement, ParserError> {
    for _ in 0..3 {
        parser.next_token();
    }
    let lsn = parser.parse_literal_string()?;
    let (mut timeout, mut no_throw) = ("NULL".to_string(), false);
    if parser.parse_keyword(Keyword::WITH) {
        parser.expect_token(&Token::LParen)?;
        loop {
            let option = parser.parse_identifier()?.value.to_ascii_uppercase();
            match option.as_str() {
                "TIMEOUT" => {
                    timeout = match parser.next_token().token {
                        Token::SingleQuotedString(s) => quote(&s),
                        Token::Number(n, _) => quote(&format!("{n}ms")),
                        other => {
                            return Err(ParserError::ParserError(format!(
                                "TIMEOUT takes a duration such as '1s', found {other}"
                            )));
                        }
                    }
                }
                "NO_THROW" => no_throw = true,
                other => {
                    return Err(ParserError::ParserError(format!(
                        "unrecognized WAIT FOR option \"{other}\" (TIMEOUT and NO_THROW are supported)"
                    )));
                }
            }
            if !parser.consume_token(&Token::Comma) {
                break;
            }
        }
        parser.expect_token(&Token::RParen)?;
    }
    let call = format!(
        "CALL {}({}, {timeout}, {no_throw})",
        crate::session::WAIT_FUNCTION,
        quote(&lsn)
    );
    let mut stmts = Parser::parse_sql(&HindsightDialect::default(), &call)?;
    stmts
        .pop()
        .ok_or_else(|| ParserError::ParserError("WAIT FOR LSN did not parse".into()))
}

/// A SQL string literal of `s`.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Parse a string of `;`-separated statements.
pub fn parse(sql: &str) -> Result<Vec<Statement>> {
    Parser::parse_sql(&HindsightDialect::default(), sql).map_err(|e| {
        let err = crate::error::SqlError::from(e);
        if err.message.contains("MATCH_CONDITION") {
            // DuckDB spells the condition inside ON; Hindsight uses MATCH_CONDITION.
            err.with_hint(
                "write ASOF JOIN f MATCH_CONDITION (s.ts >= f.event_ts) ON s.key = f.key \
                 (the time comparison goes in MATCH_CONDITION, key equalities in ON)",
            )
        } else {
            err
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::ast::{SetExpr, TableFactor, TableVersion};

    #[test]
    fn for_system_time_as_of_parses_on_table_references() {
        let stmts = parse(
            "SELECT * FROM t FOR SYSTEM_TIME AS OF TIMESTAMPTZ '2026-01-01 00:00:00+00' AS x",
        )
        .unwrap();
        let Statement::Query(q) = &stmts[0] else {
            panic!()
        };
        let SetExpr::Select(s) = q.body.as_ref() else {
            panic!()
        };
        let TableFactor::Table { version, alias, .. } = &s.from[0].relation else {
            panic!()
        };
        assert!(matches!(version, Some(TableVersion::ForSystemTimeAsOf(_))));
        assert!(alias.is_some());
    }

    #[test]
    fn postgres_specific_syntax_still_parses() {
        parse("SELECT 1::int8, 'a' || 'b', x->>'k', ARRAY[1,2]::real[] FROM t WHERE y ~ 'z'")
            .unwrap();
        parse("SELECT * FROM t WHERE id = ANY($1)").unwrap();
        parse("SELECT * FROM as_of(t, now(), known_at => now())").unwrap();
        parse("SELECT s.*, f.x FROM s ASOF JOIN f MATCH_CONDITION (s.ts >= f.ts) ON s.id = f.id")
            .unwrap();
    }

    #[test]
    fn wait_for_lsn_becomes_a_call() {
        let s = parse("wait for lsn '0/1F4' WITH (TIMEOUT '1s', NO_THROW); SELECT 1").unwrap();
        assert_eq!(
            s[0].to_string(),
            "CALL hindsight_wait_for_lsn('0/1F4', '1s', true)"
        );
        let s = parse("WAIT FOR LSN '0/1'").unwrap();
        assert_eq!(
            s[0].to_string(),
            "CALL hindsight_wait_for_lsn('0/1', NULL, false)"
        );
        assert!(parse("WAIT FOR LSN '0/1' WITH (MODE 'x')").is_err());
        // "wait" stays an ordinary name elsewhere.
        parse("SELECT wait FROM t").unwrap();
    }
}
