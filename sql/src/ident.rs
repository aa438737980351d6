//! Identifier folding as PostgreSQL does it. A leaf: every layer that resolves a
//! name (planning, rewrites, DDL, COPY) folds it here, so one rule holds everywhere.

/// An identifier as PostgreSQL resolves it: quoted as written, unquoted lowercased.
pub fn normalize(i: &sqlparser::ast::Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_ascii_lowercase()
    }
}
