//! The point-lookup fast path: `SELECT <columns> FROM t WHERE key = $1` without
//! DataFusion's planner and executor.
//!
//! DataFusion's planning costs hundreds of microseconds per statement; online
//! inference needs a lookup in microseconds. Statements of exactly this shape (plain
//! columns or `*`; a conjunction of `key = <param or literal>`, `key IN (...)`,
//! `key = ANY($n)` or `key = ANY(ARRAY[...])` covering the whole entity key; nothing
//! else) over `t`, `as_of(t, <ts> [, known_at => <ts>])` or
//! `t FOR SYSTEM_TIME AS OF <ts>` are recognized once, by AST pattern, and answered
//! with storage point lookups, with the same semantics as the planned query (the read
//! point comes from the same [`ReadSpec`], TTL included; the open transaction's
//! writes are visible) and the same output schema. Anything else goes through
//! DataFusion.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType as ArrowType, Field, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::Session as DfSession;
use datafusion::common::DFSchema;
use datafusion::common::ScalarValue;
use datafusion::execution::context::SessionState;
use hindsight_storage::{
    Db, Projection, ReadAt, ScalarType, Snapshot, TableDef, Value as StorageValue, encode_key,
};
use sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArgOperator, GroupByExpr,
    ObjectName, Select, SelectItem, SetExpr, Statement, TableFactor, TableVersion, Value,
};

use crate::error::Result;
use crate::ident::normalize;
use crate::offload;
use crate::plan::provider::{ReadSpec, key_value};
use crate::plan::timeexpr::CompiledTime;

/// Where a key column's values come from.
#[derive(Clone, Debug)]
enum KeyArg {
    Param(usize),
    Array(usize),
    Literals(Vec<ScalarValue>),
    Params(Vec<usize>),
}

/// A recognized point lookup.
#[derive(Clone, Debug)]
pub struct FastLookup {
    def: Arc<TableDef>,
    /// The projected columns (and the key's types), resolved once.
    proj: Projection,
    read: ReadSpec,
    /// The read's time arguments compiled once (where they compile).
    compiled: Vec<Arc<CompiledTime>>,
    keys: Vec<KeyArg>,
    schema: SchemaRef,
    params: usize,
}

fn param_index(v: &Value) -> Option<usize> {
    match v {
        Value::Placeholder(p) => p
            .trim_start_matches('$')
            .parse::<usize>()
            .ok()?
            .checked_sub(1),
        _ => None,
    }
}

fn literal(v: &Value) -> Option<ScalarValue> {
    match v {
        Value::Number(n, _) => n
            .parse::<i64>()
            .map(|i| ScalarValue::Int64(Some(i)))
            .or_else(|_| n.parse::<f64>().map(|f| ScalarValue::Float64(Some(f))))
            .ok(),
        Value::SingleQuotedString(s) => Some(ScalarValue::Utf8(Some(s.clone()))),
        Value::Boolean(b) => Some(ScalarValue::Boolean(Some(*b))),
        _ => None,
    }
}

/// `$1, $2, ...` (all parameters) or literals (all literals) of an IN list or array.
fn value_list(items: &[Expr]) -> Option<KeyArg> {
    let vals: Vec<&Value> = items
        .iter()
        .map(|e| match e {
            Expr::Value(v) => Some(&v.value),
            _ => None,
        })
        .collect::<Option<_>>()?;
    if vals.iter().all(|v| param_index(v).is_some()) {
        Some(KeyArg::Params(
            vals.iter().filter_map(|v| param_index(v)).collect(),
        ))
    } else {
        Some(KeyArg::Literals(
            vals.iter()
                .map(|v| literal(v))
                .collect::<Option<Vec<_>>>()?,
        ))
    }
}

/// The right side of `key = ANY(...)`: one array parameter, or an `ARRAY[...]`
/// constructor of parameters or literals (optionally cast, as in `::bigint[]`).
fn any_arg(e: &Expr) -> Option<KeyArg> {
    match e {
        Expr::Value(v) => Some(KeyArg::Array(param_index(&v.value)?)),
        Expr::Array(a) => value_list(&a.elem),
        Expr::Cast { expr, .. } => any_arg(expr),
        Expr::Nested(inner) => any_arg(inner),
        _ => None,
    }
}

/// The table and read spec of a FROM item: `t`, `t FOR SYSTEM_TIME AS OF <ts>`,
/// `as_of(t, <ts> [, known_at => <ts>])`. Time arguments become DataFusion
/// expressions (placeholders kept), exactly as the relation planner builds them.
fn read_of(
    state: &SessionState,
    name: &ObjectName,
    args: Option<&[FunctionArg]>,
    version: Option<&TableVersion>,
) -> Option<(Vec<String>, ReadSpec, String)> {
    let to_expr = |e: &Expr| {
        state
            .create_logical_expr(&e.to_string(), &DFSchema::empty())
            .ok()
    };
    let parts = crate::plan::names::parts(name)?;
    let name = parts.last()?.clone();
    match (args, version) {
        (None, None) => Some((parts, ReadSpec::Current, name)),
        (None, Some(TableVersion::ForSystemTimeAsOf(e))) => {
            Some((parts, ReadSpec::SystemTime(to_expr(e)?), name))
        }
        (Some(args), None) if name == "as_of" => {
            let mut pos = Vec::new();
            let mut known_at = None;
            for a in args {
                match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => pos.push(e),
                    FunctionArg::Named {
                        name: n,
                        arg: FunctionArgExpr::Expr(e),
                        operator: FunctionArgOperator::RightArrow | FunctionArgOperator::Assignment,
                    } if normalize(n) == "known_at" && known_at.is_none() => {
                        known_at = Some(to_expr(e)?)
                    }
                    _ => return None,
                }
            }
            let [table, at] = pos.as_slice() else {
                return None;
            };
            let table = match table {
                Expr::Identifier(i) => vec![normalize(i)],
                Expr::CompoundIdentifier(p) => p.iter().map(normalize).collect(),
                _ => return None,
            };
            let at = to_expr(at)?;
            Some((table, ReadSpec::AsOf { at, known_at }, name))
        }
        _ => None,
    }
}

fn column_of(e: &Expr, qualifier: &str) -> Option<String> {
    match e {
        Expr::Identifier(i) => Some(normalize(i)),
        Expr::CompoundIdentifier(parts) => match parts.as_slice() {
            [q, c] if normalize(q) == qualifier => Some(normalize(c)),
            _ => None,
        },
        _ => None,
    }
}

fn conjuncts<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            conjuncts(left, out);
            conjuncts(right, out);
        }
        Expr::Nested(inner) => conjuncts(inner, out),
        other => out.push(other),
    }
}

/// The SELECT of a query with none of the clauses a point lookup cannot answer
/// (CTEs, ORDER BY, LIMIT, locks, DISTINCT, grouping, windows...).
fn plain_select(stmt: &Statement) -> Option<&Select> {
    let Statement::Query(q) = stmt else {
        return None;
    };
    if q.with.is_some()
        || q.order_by.is_some()
        || q.limit_clause.is_some()
        || q.fetch.is_some()
        || !q.locks.is_empty()
    {
        return None;
    }
    let SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    let plain = s.distinct.is_none()
        && s.top.is_none()
        && s.having.is_none()
        && s.qualify.is_none()
        && s.named_window.is_empty()
        && s.into.is_none()
        && s.lateral_views.is_empty()
        && matches!(&s.group_by, GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty());
    plain.then_some(s.as_ref())
}

/// The projection as column indexes: `*`, `q.*` and plain columns only.
fn projected_columns(items: &[SelectItem], def: &TableDef, qualifier: &str) -> Option<Vec<usize>> {
    let mut columns = Vec::new();
    for item in items {
        match item {
            SelectItem::Wildcard(opts)
                if opts.opt_exclude.is_none()
                    && opts.opt_except.is_none()
                    && opts.opt_replace.is_none()
                    && opts.opt_rename.is_none()
                    && opts.opt_ilike.is_none() =>
            {
                columns.extend(0..def.columns.len())
            }
            SelectItem::UnnamedExpr(e) => {
                columns.push(def.column_index(&column_of(e, qualifier)?)?)
            }
            _ => return None,
        }
    }
    (!columns.is_empty()).then_some(columns)
}

/// WHERE as one equality set per key column and nothing else: the key arguments in
/// key order, and the parameter count they need (at least `declared`).
fn key_args(
    selection: &Expr,
    def: &TableDef,
    qualifier: &str,
    declared: usize,
) -> Option<(Vec<KeyArg>, usize)> {
    let mut parts = Vec::new();
    conjuncts(selection, &mut parts);
    let mut keys: Vec<Option<KeyArg>> = vec![None; def.key.len()];
    let key_pos = |c: &str| -> Option<usize> {
        let idx = def.column_index(c)?;
        def.key.iter().position(|&k| k == idx)
    };
    let mut params = declared;
    for p in parts {
        let (pos, arg) = match p {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } => {
                let (col, val) = match (column_of(left, qualifier), column_of(right, qualifier)) {
                    (Some(c), None) => (c, right.as_ref()),
                    (None, Some(c)) => (c, left.as_ref()),
                    _ => return None,
                };
                let Expr::Value(v) = val else {
                    return None;
                };
                let arg = match param_index(&v.value) {
                    Some(i) => KeyArg::Param(i),
                    None => KeyArg::Literals(vec![literal(&v.value)?]),
                };
                (key_pos(&col)?, arg)
            }
            Expr::AnyOp {
                left,
                compare_op: BinaryOperator::Eq,
                right,
                ..
            } => (key_pos(&column_of(left, qualifier)?)?, any_arg(right)?),
            Expr::InList {
                expr,
                list,
                negated: false,
            } => (key_pos(&column_of(expr, qualifier)?)?, value_list(list)?),
            _ => return None,
        };
        let slot = keys.get_mut(pos)?;
        if slot.is_some() {
            return None;
        }
        match &arg {
            KeyArg::Param(i) | KeyArg::Array(i) => params = params.max(i + 1),
            KeyArg::Params(v) => params = params.max(v.iter().max().map_or(0, |m| m + 1)),
            KeyArg::Literals(_) => {}
        }
        *slot = Some(arg);
    }
    Some((keys.into_iter().collect::<Option<_>>()?, params))
}

impl FastLookup {
    /// Recognize a point-lookup statement; `None` for anything else.
    pub fn recognize(
        state: &SessionState,
        db: &Db,
        stmt: &Statement,
        declared: &[Option<ArrowType>],
    ) -> Option<FastLookup> {
        let s = plain_select(stmt)?;
        let [twj] = s.from.as_slice() else {
            return None;
        };
        if !twj.joins.is_empty() {
            return None;
        }
        let TableFactor::Table {
            name,
            alias,
            args,
            version,
            with_hints,
            ..
        } = &twj.relation
        else {
            return None;
        };
        if !with_hints.is_empty() || alias.as_ref().is_some_and(|a| !a.columns.is_empty()) {
            return None;
        }
        let (table, read, default_qualifier) = read_of(
            state,
            name,
            args.as_ref().map(|a| a.args.as_slice()),
            version.as_ref(),
        )?;
        let def = crate::plan::context::of(state)
            .ok()?
            .names(db)
            .find_table(&table)?;
        if def.key.is_empty() {
            return None;
        }
        let qualifier = alias
            .as_ref()
            .map(|a| normalize(&a.name))
            .unwrap_or(default_qualifier);
        let columns = projected_columns(&s.projection, &def, &qualifier)?;
        let (keys, mut params) = key_args(s.selection.as_ref()?, &def, &qualifier, declared.len())?;
        // The same (all-nullable) schema the planned query would have.
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(
            def.arrow_schema(Some(&columns))
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        for e in read.time_exprs() {
            for i in crate::plan::placeholders::placeholders(e) {
                params = params.max(i + 1);
            }
        }
        let proj = Projection::new(&def, Some(&columns)).ok()?;
        let mut fast = FastLookup {
            proj,
            def,
            read,
            compiled: Vec::new(),
            keys,
            schema,
            params,
        };
        let types = fast.param_types();
        fast.compiled = fast
            .read
            .time_exprs()
            .into_iter()
            .filter_map(|e| CompiledTime::new(state, e, &types).map(Arc::new))
            .collect();
        Some(fast)
    }

    /// Whether executing needs the statement's clock: a time argument that did not
    /// compile (it calls `now()` or another non-immutable function).
    pub fn needs_clock(&self) -> bool {
        self.read.time_exprs().len() > self.compiled.len()
    }

    /// Storage types of the row values (schema order).
    pub fn row_types(&self) -> &[hindsight_storage::DataType] {
        self.proj.types()
    }

    /// Row schema of the lookup.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Parameter types: the key column's type, or an array of it for `= ANY($n)`;
    /// time arguments as the planned query would type them.
    pub fn param_types(&self) -> Vec<Option<ArrowType>> {
        let mut out = vec![None; self.params];
        for e in self.read.time_exprs() {
            for (i, t) in crate::plan::placeholders::time_param_types(e) {
                if let Some(slot) = out.get_mut(i) {
                    *slot = Some(t);
                }
            }
        }
        let key_types = self.def.key_types();
        for (arg, t) in self.keys.iter().zip(key_types) {
            let scalar = hindsight_storage::DataType::Scalar(t).arrow_type();
            match arg {
                KeyArg::Param(i) => out[*i] = Some(scalar),
                KeyArg::Params(v) => v.iter().for_each(|i| out[*i] = Some(scalar.clone())),
                KeyArg::Array(i) => {
                    out[*i] = Some(ArrowType::List(Arc::new(Field::new_list_field(
                        scalar, true,
                    ))))
                }
                KeyArg::Literals(_) => {}
            }
        }
        out
    }

    /// Answer the lookup against `snapshot` with parameter values `params` as one
    /// Arrow batch; `state` evaluates time arguments (with the statement's clock).
    pub fn execute(
        &self,
        state: &dyn DfSession,
        snapshot: &Snapshot,
        params: &[ScalarValue],
    ) -> Result<RecordBatch> {
        let (keys, at) = self.read_point(state, snapshot, params)?;
        Ok(offload::lookup(keys.len(), || {
            snapshot.lookup_projected(&self.def, &keys, &at, &self.proj, self.schema.clone())
        })?)
    }

    /// [`FastLookup::execute`] row by row: `row` gets the values of each present
    /// entity (in the order of [`FastLookup::schema`]) from a reused buffer. Returns
    /// the number of rows. The online path: no Arrow arrays are built.
    pub fn execute_rows(
        &self,
        state: &dyn DfSession,
        snapshot: &Snapshot,
        params: &[ScalarValue],
        row: impl FnMut(&[StorageValue]),
    ) -> Result<usize> {
        let (keys, at) = self.read_point(state, snapshot, params)?;
        Ok(offload::lookup(keys.len(), || {
            snapshot.lookup_rows(&self.def, &keys, &at, &self.proj, row)
        })?)
    }

    /// The encoded keys and the read point of one execution.
    fn read_point(
        &self,
        state: &dyn DfSession,
        snapshot: &Snapshot,
        params: &[ScalarValue],
    ) -> Result<(Vec<Vec<u8>>, ReadAt)> {
        let key_types = self.proj.key_types();
        let keys = match (self.keys.as_slice(), key_types) {
            // The online lookup `key = $1`: no per-column value sets.
            ([KeyArg::Param(i)], [t]) => match params.get(*i).and_then(|s| key_value(s, *t)) {
                Some(v) => vec![encode_key(std::slice::from_ref(&v), key_types, &[])?],
                None => Vec::new(),
            },
            _ => self.key_combinations(params)?,
        };
        let time = |e: &datafusion::logical_expr::Expr| match self
            .compiled
            .iter()
            .find(|c| c.source() == e)
        {
            Some(c) => c.eval(params),
            None => crate::plan::timeexpr::eval_time(state, e, params),
        };
        let (_, at) = self.read.read_at_with(snapshot.now_micros(), &time)?;
        Ok((keys, at))
    }

    /// The encoded keys of every combination of the key arguments' values.
    fn key_combinations(&self, params: &[ScalarValue]) -> Result<Vec<Vec<u8>>> {
        let key_types = self.proj.key_types();
        let mut sets: Vec<Vec<StorageValue>> = Vec::with_capacity(self.keys.len());
        for (arg, &t) in self.keys.iter().zip(key_types) {
            let scalars: Vec<ScalarValue> = match arg {
                KeyArg::Param(i) => params.get(*i).cloned().into_iter().collect(),
                KeyArg::Params(v) => v.iter().filter_map(|i| params.get(*i).cloned()).collect(),
                KeyArg::Literals(v) => v.clone(),
                KeyArg::Array(i) => match params.get(*i) {
                    Some(ScalarValue::List(a)) => {
                        let values = a.value(0);
                        (0..values.len())
                            .filter_map(|j| ScalarValue::try_from_array(&values, j).ok())
                            .collect()
                    }
                    _ => vec![],
                },
            };
            let values = match arg {
                // A literal that is no value of the key's type is the statement's
                // error (22P02, as PostgreSQL types an untyped literal by its column).
                KeyArg::Literals(_) => scalars
                    .iter()
                    .map(|s| key_value(s, t).ok_or_else(|| invalid_literal(s, t)))
                    .collect::<Result<Vec<_>>>()?,
                _ => scalars.iter().filter_map(|s| key_value(s, t)).collect(),
            };
            sets.push(values);
        }
        encode_combinations(&sets, key_types)
    }
}

/// The error for a literal key value that is not a value of the key's type.
fn invalid_literal(v: &ScalarValue, t: ScalarType) -> crate::error::SqlError {
    let text = match v {
        ScalarValue::Utf8(Some(s)) => s.clone(),
        other => other.to_string(),
    };
    crate::error::SqlError::new(
        crate::error::ErrorKind::InvalidTextRepresentation,
        format!(
            "invalid input syntax for type {}: \"{text}\"",
            crate::types::pg_type_name(hindsight_storage::DataType::Scalar(t))
        ),
    )
}

/// Encoded keys of every combination of the key columns' values (one set per key
/// column, in key order), first occurrences only, in order.
fn encode_combinations(
    sets: &[Vec<StorageValue>],
    key_types: &[ScalarType],
) -> Result<Vec<Vec<u8>>> {
    // Odometer over one index per key column, the last column varying fastest.
    let mut keys = Vec::new();
    if sets.iter().any(Vec::is_empty) {
        return Ok(keys);
    }
    let mut at = vec![0usize; sets.len()];
    let mut combo: Vec<StorageValue> = Vec::with_capacity(sets.len());
    'combos: loop {
        combo.clear();
        combo.extend(sets.iter().zip(&at).filter_map(|(s, &i)| s.get(i).cloned()));
        keys.push(encode_key(&combo, key_types, &[])?);
        for (c, set) in sets.iter().enumerate().rev() {
            let Some(i) = at.get_mut(c) else { break };
            *i += 1;
            if *i < set.len() {
                continue 'combos;
            }
            *i = 0;
        }
        break;
    }
    Ok(first_occurrences(keys))
}

/// `keys` without repeats, each kept at its first occurrence.
fn first_occurrences(keys: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let keep: Vec<bool> = {
        let mut seen = std::collections::HashSet::with_capacity(keys.len());
        keys.iter().map(|k| seen.insert(k.as_slice())).collect()
    };
    if keep.iter().all(|&k| k) {
        return keys;
    }
    keys.into_iter()
        .zip(keep)
        .filter_map(|(k, keep)| keep.then_some(k))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ints(v: &[i64]) -> Vec<StorageValue> {
        v.iter().map(|&x| StorageValue::Int64(x)).collect()
    }

    #[test]
    fn key_combinations_vary_the_last_column_fastest_and_drop_repeats() {
        let types = [ScalarType::Int64, ScalarType::Int64];
        let enc = |a: i64, b: i64| {
            encode_key(
                &[StorageValue::Int64(a), StorageValue::Int64(b)],
                &types,
                &[],
            )
            .unwrap()
        };
        let keys = encode_combinations(&[ints(&[1, 2, 1]), ints(&[7, 8])], &types).unwrap();
        assert_eq!(keys, vec![enc(1, 7), enc(1, 8), enc(2, 7), enc(2, 8)]);
        assert!(
            encode_combinations(&[ints(&[1]), ints(&[])], &types)
                .unwrap()
                .is_empty()
        );
        let one = [ScalarType::Int64];
        let single = encode_combinations(&[ints(&[5, 3, 5, 3, 9])], &one).unwrap();
        let want: Vec<Vec<u8>> = [5, 3, 9]
            .iter()
            .map(|&x| encode_key(&[StorageValue::Int64(x)], &one, &[]).unwrap())
            .collect();
        assert_eq!(single, want);
    }
}
