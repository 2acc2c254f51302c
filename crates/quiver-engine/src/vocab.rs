//! Shared vocabulary: names and small types that several layers speak (the row-id column,
//! row addresses, ranked candidates, distance ranges, progress reports). A leaf module: it
//! imports nothing of the engine but errors, so any layer can use it without a cycle.

use std::cmp::Ordering;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema};

use crate::error::{Error, Result};

/// Name of the row address column.
pub const ROW_ID: &str = "_rowid";

/// Row address of `offset` in fragment `fragment_id`.
pub fn row_address(fragment_id: u64, offset: u64) -> u64 {
    (fragment_id << 32) | offset
}

/// Heap entries reserved up front (a huge `limit` must not allocate before rows are found).
pub(crate) const PREALLOCATE: usize = 4096;

/// A row and its distance; ordered by distance, then row address.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Candidate {
    pub distance: f32,
    pub row_id: u64,
}

impl Eq for Candidate {}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance
            .total_cmp(&other.distance)
            .then(self.row_id.cmp(&other.row_id))
    }
}

/// Whether `distance` lies in `lower <= distance < upper` (NaN never does).
pub(crate) fn in_range(distance: f32, (lower, upper): (Option<f32>, Option<f32>)) -> bool {
    !distance.is_nan()
        && !lower.is_some_and(|l| distance < l)
        && !upper.is_some_and(|u| distance >= u)
}

/// Progress of a long operation, reported per phase (index builds: `sample`, `kmeans`, `pq`,
/// `encode`, `sort`, `write`; maintenance: its own phases).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildProgress {
    pub phase: &'static str,
    pub done: u64,
    pub total: u64,
}

/// Receives progress (called from worker threads; must not block).
pub type ProgressFn = Arc<dyn Fn(BuildProgress) + Send + Sync>;

/// The vector column to search or index: the named one, or the only fixed-size-list column.
/// Returns its name, element type and length.
pub(crate) fn resolve_vector_column(
    schema: &Schema,
    column: Option<&str>,
) -> Result<(String, DataType, usize)> {
    let vector_columns: Vec<&Arc<Field>> = schema
        .fields()
        .iter()
        .filter(|f| matches!(f.data_type(), DataType::FixedSizeList(_, _)))
        .collect();
    let field = match column {
        Some(name) => schema
            .field_with_name(name)
            .map_err(|_| Error::invalid(format!("column '{name}' does not exist")))?,
        None => match vector_columns.as_slice() {
            [only] => only.as_ref(),
            [] => return Err(Error::invalid("the table has no vector column to search")),
            many => {
                let names: Vec<&str> = many.iter().map(|f| f.name().as_str()).collect();
                return Err(Error::invalid(format!(
                    "the table has several vector columns ({}); name one with column()",
                    names.join(", ")
                )));
            }
        },
    };
    match field.data_type() {
        DataType::FixedSizeList(item, dim) => Ok((
            field.name().clone(),
            item.data_type().clone(),
            *dim as usize,
        )),
        other => Err(Error::invalid(format!(
            "column '{}' is {other}, not a vector column",
            field.name()
        ))),
    }
}
