//! SQL expressions over a table: filters (`where`, `count_rows`, `delete`, `update`) and value
//! expressions (`update … valuesSql`, `add_columns`).
//!
//! Text is parsed once per call by `sqlparser` ([`plan`]), resolved against the table schema
//! into a typed tree ([`expr`]) with literals cast to the column types they meet and constants
//! folded, then evaluated batch by batch with arrow's kernels ([`eval`]). [`prune`] reads page
//! statistics to skip pages no row of which can match.
//!
//! Semantics follow SQL: three-valued logic (a row whose predicate is NULL does not match),
//! numeric promotion to int64 / uint64 / float64, string comparison by bytes (UTF-8 order).

mod eval;
mod expr;
pub mod index_plan;
mod plan;
pub(crate) mod prune;
mod syntax;

pub use syntax::MAX_DEPTH;

use std::ops::Range;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow_schema::{DataType, Schema};

use crate::error::{Error, FilterError, FilterErrorKind, Result};
use crate::format::reader::ColumnMeta;
use crate::vocab::ROW_ID;
use expr::{type_name, Expr};

/// Stack that parsing and planning may need at the depth limits (`sqlparser` frames are large).
const PARSE_RED_ZONE: usize = 1024 * 1024;
const PARSE_STACK: usize = 16 * 1024 * 1024;

/// A SQL expression resolved against a schema, ready to evaluate on batches of that schema.
#[derive(Debug, Clone)]
pub struct Expression {
    text: String,
    expr: Expr,
    /// Top-level columns it reads, in first-use order (`_rowid` included when used).
    columns: Vec<String>,
}

impl Expression {
    /// Parses and resolves `text` against `schema`. The virtual `_rowid` column may be used.
    pub fn parse(text: &str, schema: &Schema) -> Result<Self> {
        // The whole of planning runs with room to recurse to the depth limits (the syntax tree
        // is dropped inside too), whichever thread calls it.
        let expr = stacker::maybe_grow(PARSE_RED_ZONE, PARSE_STACK, || {
            let syntax = syntax::parse(text)?;
            plan::Planner::new(schema).plan_syntax(&syntax)
        })?;
        let mut columns: Vec<String> = Vec::new();
        expr.visit_columns(&mut |c| {
            if !columns.iter().any(|x| x == c) {
                columns.push(c.to_string());
            }
        });
        Ok(Expression {
            text: text.to_string(),
            expr,
            columns,
        })
    }

    /// The SQL text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Top-level columns the expression reads (may include `_rowid`).
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Whether the expression reads the virtual `_rowid` column.
    pub fn uses_row_id(&self) -> bool {
        self.columns.iter().any(|c| c == ROW_ID)
    }

    /// The type of the values it produces.
    pub fn data_type(&self) -> DataType {
        self.expr.data_type()
    }

    /// Checks that the result can be stored in a column of type `target` (casting if needed),
    /// and returns the expression with that cast.
    pub fn cast_to(mut self, target: &DataType, column: &str) -> Result<Self> {
        let from = self.expr.data_type();
        if &from == target {
            return Ok(self);
        }
        if !arrow_cast::can_cast_types(&from, target) {
            return Err(FilterError::new(
                FilterErrorKind::TypeMismatch,
                format!(
                    "'{}' is {} and cannot be stored in column '{column}' of type {}",
                    self.text,
                    type_name(&from),
                    type_name(target)
                ),
            )
            .into());
        }
        self.expr = plan::fold(Expr::Cast {
            expr: Box::new(self.expr),
            to: target.clone(),
        })?;
        Ok(self)
    }

    /// The expression's value for every row of `batch` (which holds at least [`Self::columns`]).
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        eval::evaluate(&self.expr, batch)
            .and_then(|v| v.into_array(batch.num_rows()))
            .map_err(|e| self.eval_error(e))
    }

    fn eval_error(&self, e: arrow_schema::ArrowError) -> Error {
        Error::InvalidArgument(format!("evaluating '{}' failed: {e}", self.text))
    }
}

/// A boolean SQL expression selecting rows.
#[derive(Debug, Clone)]
pub struct Filter {
    expression: Expression,
}

impl Filter {
    /// Parses a filter; it must be boolean (`WHERE`-clause syntax).
    pub fn parse(text: &str, schema: &Schema) -> Result<Self> {
        let expression = Expression::parse(text, schema)?;
        let t = expression.data_type();
        if !matches!(t, DataType::Boolean | DataType::Null) {
            return Err(FilterError::new(
                FilterErrorKind::TypeMismatch,
                format!(
                    "a filter must be true or false for each row, but '{text}' is {}; compare it with something (e.g. {text} > 0)",
                    type_name(&t)
                ),
            )
            .into());
        }
        Ok(Filter { expression })
    }

    pub fn text(&self) -> &str {
        self.expression.text()
    }

    /// Top-level columns the filter reads (may include `_rowid`).
    pub fn columns(&self) -> &[String] {
        self.expression.columns()
    }

    pub fn uses_row_id(&self) -> bool {
        self.expression.uses_row_id()
    }

    /// The stored columns the filter reads (`_rowid` is computed, not stored).
    pub fn stored_columns(&self) -> Vec<String> {
        self.columns()
            .iter()
            .filter(|c| c.as_str() != ROW_ID)
            .cloned()
            .collect()
    }

    /// Which rows of `batch` match (`false` where the predicate is NULL).
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<BooleanArray> {
        let value = self.expression.evaluate(batch)?;
        let b = match value.as_any().downcast_ref::<BooleanArray>() {
            Some(b) => b.clone(),
            None => BooleanArray::new_null(value.len()),
        };
        Ok(match b.nulls() {
            Some(n) => BooleanArray::new(b.values() & n.inner(), None),
            None => b,
        })
    }

    /// Row ranges of a data file that may hold matches, from page statistics; `None` when the
    /// statistics cannot narrow the file down. `column` returns a top-level column's page table.
    pub fn candidate_ranges<'a>(
        &self,
        column: &dyn Fn(&str) -> Option<&'a ColumnMeta>,
    ) -> Option<Vec<Range<u64>>> {
        prune::candidate_ranges(&self.expression.expr, column)
    }
}

impl Filter {
    /// What scalar indexes can answer of the filter (see [`index_plan`]): `estimate` says
    /// whether an index on a column answers a query and how many rows it may match;
    /// an index selecting more than `max_share` of `covered_rows` is not worth reading.
    pub fn index_plan(
        &self,
        estimate: &index_plan::Estimator<'_>,
        covered_rows: u64,
        max_share: f64,
    ) -> Option<index_plan::IndexPlan> {
        index_plan::plan(&self.expression.expr, estimate, covered_rows, max_share)
    }
}

/// `array` cast to `to` under the filter language's rules (failing on values that do not fit).
pub(crate) fn cast_value(array: &dyn Array, to: &DataType) -> Result<ArrayRef> {
    Ok(expr::cast_array(array, to)?)
}

/// Shared form used by scans.
pub type FilterRef = Arc<Filter>;

#[cfg(test)]
mod tests;
