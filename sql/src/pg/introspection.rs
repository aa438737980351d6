//! Type-introspection queries of drivers that DataFusion cannot plan as written, and
//! the equivalent queries Hindsight runs instead.
//!
//! asyncpg learns every type it has no built-in codec for (arrays such as `real[]`)
//! with one recursive query (`typeinfo_tree`, in `asyncpg/introspection.py`) whose
//! domain, composite and range branches are correlated scalar subqueries inside
//! `CASE`, which DataFusion does not execute. Hindsight's catalog has no domains,
//! composite types or ranges, so those branches are always NULL; the replacement
//! keeps the query's parameter (`$1`, the OIDs asked for), its output columns and
//! their order, and the recursion into element types, computed from `pg_type` as
//! the original would. `attrtypoids` (always NULL here) is typed `text[]` rather
//! than `oid[]`: Arrow has no OID type, an integer array goes out as `int4[]`, and
//! asyncpg decodes the answer to its own introspection query only with the codecs it
//! is born with (`oid[]` and `text[]`), so `int4[]` would send it back to
//! introspection, recursively. For the same reason `$1` is cast to a list of
//! UInt32, Arrow's spelling of `oid` (sent as `oid[]`, not `int4[]`).
//!
//! Invariant: a statement is replaced only when it has the driver query's shape (a
//! recursive CTE named `typeinfo_tree` with its eleven columns); anything else is
//! left as it is.

use sqlparser::ast::{SetExpr, Statement};

/// asyncpg's `typeinfo_tree` query over a catalog without domains, composites or
/// ranges.
const ASYNCPG_TYPEINFO: &str = "
WITH RECURSIVE typeinfo_tree(oid, ns, name, kind, basetype, elemtype, elemdelim,
    range_subtype, attrtypoids, attrnames, depth, elemtype_name) AS (
  SELECT t.oid, ns.nspname, t.typname, t.typtype, CAST(NULL AS oid) AS basetype,
    t.typelem AS elemtype, elem_t.typdelim AS elemdelim, CAST(NULL AS oid) AS range_subtype,
    CAST(NULL AS text[]) AS attrtypoids, CAST(NULL AS text[]) AS attrnames, 0,
    COALESCE(elem_t.typname, '-') AS elemtype_name
  FROM pg_catalog.pg_type AS t
    JOIN pg_catalog.pg_namespace ns ON ns.oid = t.typnamespace
    LEFT JOIN pg_catalog.pg_type elem_t
      ON (t.typlen = -1 AND t.typelem != 0 AND t.typelem = elem_t.oid)
  WHERE arrow_cast(t.oid, 'UInt32') = any(arrow_cast($1, 'List(UInt32)'))
  UNION ALL
  SELECT t.oid, ns.nspname, t.typname, t.typtype, CAST(NULL AS oid) AS basetype,
    t.typelem AS elemtype, elem_t.typdelim AS elemdelim, CAST(NULL AS oid) AS range_subtype,
    CAST(NULL AS text[]) AS attrtypoids, CAST(NULL AS text[]) AS attrnames, tt.depth + 1,
    COALESCE(elem_t.typname, '-') AS elemtype_name
  FROM pg_catalog.pg_type AS t
    JOIN pg_catalog.pg_namespace ns ON ns.oid = t.typnamespace
    LEFT JOIN pg_catalog.pg_type elem_t
      ON (t.typlen = -1 AND t.typelem != 0 AND t.typelem = elem_t.oid),
    typeinfo_tree tt
  WHERE tt.elemtype IS NOT NULL AND t.oid = tt.elemtype
)
SELECT DISTINCT oid, ns, name, kind, basetype, elemtype, elemdelim, range_subtype,
  attrtypoids, attrnames, depth, CAST(NULL AS text) AS basetype_name, elemtype_name,
  CAST(NULL AS text) AS range_subtype_name
FROM typeinfo_tree
ORDER BY depth DESC";

/// The columns of asyncpg's `typeinfo_tree` CTE.
const TYPEINFO_COLUMNS: usize = 11;

/// The SQL to run instead of `stmt`, when `stmt` is a driver query known not to
/// plan as written.
pub(crate) fn replacement(stmt: &Statement) -> Option<&'static str> {
    let Statement::Query(q) = stmt else {
        return None;
    };
    let with = q.with.as_ref().filter(|w| w.recursive)?;
    let first = with.cte_tables.first()?;
    let is_typeinfo = first.alias.name.value.eq_ignore_ascii_case("typeinfo_tree")
        && first.alias.columns.len() == TYPEINFO_COLUMNS
        && matches!(q.body.as_ref(), SetExpr::Select(_));
    is_typeinfo.then_some(ASYNCPG_TYPEINFO)
}
