//! Query execution above plain scans. Today: exact (flat) vector search over every live row,
//! with a SQL prefilter (only matching rows are ranked) or postfilter. Index-backed search
//! plugs in here later.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float16Type, Float32Type, Float64Type, Int8Type, UInt8Type};
use arrow_array::{Array, ArrayRef, FixedSizeListArray, Float32Array, RecordBatch, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use futures::StreamExt;

use crate::error::{Error, Result};
use crate::filter::FilterRef;
use crate::linalg::{self, DistanceType};
use crate::table::{ScanOptions, Table, ROW_ID};

/// Name of the distance column of search results.
pub const DISTANCE: &str = "_distance";

/// An exact nearest-neighbour search.
#[derive(Debug, Clone)]
pub struct VectorSearch {
    /// The vector column; inferred when the table has exactly one.
    pub column: Option<String>,
    pub query: Vec<f64>,
    pub k: usize,
    pub distance_type: DistanceType,
    /// Columns returned (all when `None`), plus `_distance`.
    pub columns: Option<Vec<String>>,
    pub with_row_id: bool,
    /// Keep only results with `lower <= distance < upper`.
    pub distance_range: (Option<f32>, Option<f32>),
    /// Only rows matching this filter are ranked (or, with `postfilter`, returned).
    pub filter: Option<FilterRef>,
    /// Rank every row first and filter the top `k` afterwards (may return fewer than `k`).
    pub postfilter: bool,
}

#[derive(PartialEq)]
struct Candidate {
    distance: f32,
    row_id: u64,
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

/// The vector column to search: the named one, or the only fixed-size-list column.
fn resolve_column(schema: &Schema, column: Option<&str>) -> Result<(String, DataType, usize)> {
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

/// Distances from `query` to every vector of `vectors` (`None` for null vectors).
fn distances(
    vectors: &FixedSizeListArray,
    query: &[f32],
    query_bytes: &[u8],
    query_norm: f32,
    distance: DistanceType,
    out: &mut Vec<Option<f32>>,
) -> Result<()> {
    let dim = query.len();
    out.clear();
    let values = vectors.values();
    let mut buffer = vec![0f32; dim];
    for i in 0..vectors.len() {
        if vectors.is_null(i) {
            out.push(None);
            continue;
        }
        let range = i * dim..(i + 1) * dim;
        let d = match (values.data_type(), distance) {
            (DataType::UInt8, DistanceType::Hamming) => linalg::hamming(
                query_bytes,
                &values.as_primitive::<UInt8Type>().values()[range],
            ),
            (_, DistanceType::Hamming) => {
                return Err(Error::invalid(
                    "hamming distance needs a uint8 vector column",
                ));
            }
            (DataType::Float32, _) => {
                let v = &values.as_primitive::<Float32Type>().values()[range];
                float_distance(query, v, query_norm, distance)
            }
            (dt, _) => {
                match dt {
                    DataType::Float64 => {
                        let v = &values.as_primitive::<Float64Type>().values()[range];
                        buffer.iter_mut().zip(v).for_each(|(b, x)| *b = *x as f32);
                    }
                    DataType::Float16 => {
                        let v = &values.as_primitive::<Float16Type>().values()[range];
                        buffer.iter_mut().zip(v).for_each(|(b, x)| *b = x.to_f32());
                    }
                    DataType::UInt8 => {
                        let v = &values.as_primitive::<UInt8Type>().values()[range];
                        buffer.iter_mut().zip(v).for_each(|(b, x)| *b = *x as f32);
                    }
                    DataType::Int8 => {
                        let v = &values.as_primitive::<Int8Type>().values()[range];
                        buffer.iter_mut().zip(v).for_each(|(b, x)| *b = *x as f32);
                    }
                    other => {
                        return Err(Error::invalid(format!("cannot search vectors of {other}")));
                    }
                }
                float_distance(query, &buffer, query_norm, distance)
            }
        };
        out.push(Some(d));
    }
    Ok(())
}

fn float_distance(query: &[f32], v: &[f32], query_norm: f32, distance: DistanceType) -> f32 {
    match distance {
        DistanceType::L2 => linalg::l2(query, v),
        DistanceType::Dot => -linalg::dot(query, v),
        DistanceType::Cosine => linalg::cosine(query, v, query_norm),
        DistanceType::Hamming => f32::NAN,
    }
}

/// Runs an exact search over every live row of `table`'s checked-out version. Results are
/// sorted by distance (ties by row id) and carry a `_distance` column.
pub async fn exact_search(table: &Table, search: &VectorSearch) -> Result<RecordBatch> {
    let schema = table.schema();
    let (column, element, dim) = resolve_column(&schema, search.column.as_deref())?;
    if search.query.len() != dim {
        return Err(Error::invalid(format!(
            "the query vector has {} values but column '{column}' holds vectors of {dim}",
            search.query.len()
        )));
    }
    if search.query.iter().any(|v| !v.is_finite()) {
        return Err(Error::invalid(
            "the query vector contains NaN or infinite values",
        ));
    }
    if search.distance_type == DistanceType::Hamming && element != DataType::UInt8 {
        return Err(Error::invalid(format!(
            "hamming distance needs a uint8 vector column; '{column}' holds {element}"
        )));
    }
    let query_bytes: Vec<u8> = if search.distance_type == DistanceType::Hamming {
        search
            .query
            .iter()
            .map(|&v| {
                if (0.0..=255.0).contains(&v) && v.fract() == 0.0 {
                    Ok(v as u8)
                } else {
                    Err(Error::invalid(
                        "a hamming query holds integers 0-255 (bytes)",
                    ))
                }
            })
            .collect::<Result<_>>()?
    } else {
        Vec::new()
    };
    let query: Vec<f32> = search.query.iter().map(|&v| v as f32).collect();
    let query_norm = linalg::dot(&query, &query).sqrt();
    let (lower, upper) = search.distance_range;
    let k = search.k;

    let (_, mut stream) = table.scan(ScanOptions {
        columns: Some(vec![column]),
        with_row_id: true,
        filter: search.filter.clone().filter(|_| !search.postfilter),
        ..Default::default()
    })?;
    let mut heap: BinaryHeap<Candidate> = BinaryHeap::with_capacity(k + 1);
    let mut batch_distances = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let vectors = batch.column(0).as_fixed_size_list();
        let row_ids = batch
            .column(1)
            .as_primitive::<arrow_array::types::UInt64Type>();
        distances(
            vectors,
            &query,
            &query_bytes,
            query_norm,
            search.distance_type,
            &mut batch_distances,
        )?;
        for (d, row_id) in batch_distances.iter().zip(row_ids.values()) {
            let Some(distance) = *d else { continue };
            if lower.is_some_and(|l| distance < l) || upper.is_some_and(|u| distance >= u) {
                continue;
            }
            let candidate = Candidate {
                distance,
                row_id: *row_id,
            };
            if heap.len() < k {
                heap.push(candidate);
            } else if heap.peek().is_some_and(|worst| candidate < *worst) {
                heap.pop();
                heap.push(candidate);
            }
        }
    }
    let mut best = heap.into_sorted_vec();
    if let Some(filter) = search.filter.as_ref().filter(|_| search.postfilter) {
        let ids: Vec<u64> = best.iter().map(|c| c.row_id).collect();
        let mut keep = table.rows_matching(&ids, filter).await?.into_iter();
        best.retain(|_| keep.next().unwrap_or(false));
    }
    let ids: Vec<u64> = best.iter().map(|c| c.row_id).collect();
    let rows = table
        .take(&ids, search.columns.as_deref(), search.with_row_id)
        .await?;
    let mut fields: Vec<Arc<Field>> = rows.schema().fields().iter().cloned().collect();
    let mut columns: Vec<ArrayRef> = rows.columns().to_vec();
    fields.push(Arc::new(Field::new(DISTANCE, DataType::Float32, false)));
    columns.push(Arc::new(Float32Array::from_iter_values(
        best.iter().map(|c| c.distance),
    )));
    if search.with_row_id && rows.schema().field_with_name(ROW_ID).is_err() {
        fields.push(Arc::new(Field::new(ROW_ID, DataType::UInt64, false)));
        columns.push(Arc::new(UInt64Array::from(ids)));
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}
