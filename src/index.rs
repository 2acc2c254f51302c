//! Index arguments and results: build options, progress, index descriptions.

use napi::threadsafe_function::ThreadsafeFunction;
use napi_derive::napi;

/// How to build an index (see the engine's `IndexConfig`).
#[napi(object)]
pub struct NativeIndexOptions {
    /// `IVF_PQ`, `IVF_FLAT`, `BTREE`, `BITMAP` or `LABEL_LIST`; none: picked by the column.
    pub index_type: Option<String>,
    pub distance_type: Option<String>,
    pub num_partitions: Option<u32>,
    pub num_sub_vectors: Option<u32>,
    pub num_bits: Option<u32>,
    pub max_iterations: Option<u32>,
    pub sample_rate: Option<u32>,
    pub name: Option<String>,
    pub replace: Option<bool>,
}

/// Build progress handed to the JS callback.
#[napi(object)]
pub struct NativeIndexProgress {
    pub phase: String,
    pub done: f64,
    pub total: f64,
}

/// An index as `listIndices` / `indexStats` describe it.
#[napi(object)]
pub struct NativeIndexInfo {
    pub name: String,
    pub index_type: String,
    pub columns: Vec<String>,
    /// Vector indexes only.
    pub distance_type: Option<String>,
    pub num_partitions: Option<u32>,
    pub num_sub_vectors: Option<u32>,
    pub num_bits: Option<u32>,
    /// Bitmap and label-list indexes only.
    pub num_distinct_values: Option<f64>,
    /// B-tree indexes only.
    pub num_pages: Option<f64>,
    pub num_indexed_rows: f64,
    pub num_unindexed_rows: f64,
    pub size_bytes: f64,
}

impl From<quiver_engine::table::indices::IndexInfo> for NativeIndexInfo {
    fn from(i: quiver_engine::table::indices::IndexInfo) -> Self {
        let d = i.details;
        NativeIndexInfo {
            name: i.name,
            index_type: i.index_type,
            columns: i.columns,
            distance_type: d.distance_type,
            num_partitions: d.num_partitions,
            num_sub_vectors: d.num_sub_vectors,
            num_bits: d.num_bits,
            num_distinct_values: d.num_distinct_values.map(|n| n as f64),
            num_pages: d.num_pages.map(|n| n as f64),
            num_indexed_rows: i.num_indexed_rows as f64,
            num_unindexed_rows: i.num_unindexed_rows as f64,
            size_bytes: i.size_bytes as f64,
        }
    }
}

/// What `optimize` did.
#[napi(object)]
pub struct NativeOptimizeStats {
    pub indexes_optimized: f64,
    pub rows_added: f64,
    pub rows_removed: f64,
    pub version: f64,
}

/// A JS progress callback called from build threads without waiting for it.
pub(crate) type ProgressCallback =
    ThreadsafeFunction<NativeIndexProgress, (), NativeIndexProgress, napi::Status, false>;
