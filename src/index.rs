//! Index arguments and results: build options, progress, index descriptions.

use napi::threadsafe_function::ThreadsafeFunction;
use napi_derive::napi;

/// How to build an index (see the engine's `IndexConfig`).
#[napi(object)]
pub struct NativeIndexOptions {
    /// `IVF_PQ`, `IVF_FLAT`, `IVF_HNSW_SQ`, `IVF_HNSW_PQ`, `IVF_RQ`, `BTREE`, `BITMAP`, `LABEL_LIST` or `FTS`; none: picked
    /// by the column.
    pub index_type: Option<String>,
    pub distance_type: Option<String>,
    pub num_partitions: Option<u32>,
    pub num_sub_vectors: Option<u32>,
    pub num_bits: Option<u32>,
    pub max_iterations: Option<u32>,
    pub sample_rate: Option<u32>,
    /// Recall the calibrated default search settings aim at.
    pub target_recall: Option<f64>,
    /// Graph indexes: links per node, and the build's candidate list.
    pub m: Option<u32>,
    pub ef_construction: Option<u32>,
    pub name: Option<String>,
    pub replace: Option<bool>,
    /// FTS: how text becomes tokens, and whether positions are kept (phrase queries).
    pub fts: Option<crate::fts::NativeTokenizerOptions>,
    pub with_position: Option<bool>,
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
    /// Graph indexes only.
    pub m: Option<u32>,
    pub ef_construction: Option<u32>,
    pub num_indexed_rows: f64,
    pub num_unindexed_rows: f64,
    pub size_bytes: f64,
    /// Vector indexes built on 1,000 rows or more: the search settings measured at build time.
    pub calibration: Option<NativeCalibration>,
}

/// What a vector index's build measured: recall of search settings on sample queries.
#[napi(object)]
pub struct NativeCalibration {
    pub target_recall: f64,
    pub sample_queries: u32,
    pub k: u32,
    /// The setting searches use by default (the cheapest reaching the target; nprobes 0:
    /// exact search, when no index setting reached it).
    pub nprobes: u32,
    pub ef: Option<u32>,
    pub refine_factor: Option<u32>,
    pub recall: f64,
    /// Settings on the cost/recall frontier, cheapest first.
    pub curve: Vec<NativeCalibrationPoint>,
}

#[napi(object)]
pub struct NativeCalibrationPoint {
    /// 0: exact search (the index bypassed), the curve's last point.
    pub nprobes: u32,
    /// Graph indexes only (0: every code of the probed partitions is scanned).
    pub ef: Option<u32>,
    pub refine_factor: Option<u32>,
    pub recall: f64,
    /// The standard error of `recall` over the sample queries.
    pub recall_std_err: f64,
    /// Estimated microseconds of one search on one core (a model, for comparing settings).
    pub estimated_cost_us: f64,
}

/// An f32 figure as the decimal it was written as (0.95, not 0.949999988079071).
fn decimal(v: f32) -> f64 {
    (f64::from(v) * 1e6).round() / 1e6
}

fn point(
    p: &quiver_engine::index::calibrate::CalibrationPoint,
    graph: bool,
) -> NativeCalibrationPoint {
    NativeCalibrationPoint {
        nprobes: p.nprobes,
        ef: graph.then_some(p.ef),
        refine_factor: (p.refine > 0).then_some(p.refine),
        recall: decimal(p.recall),
        recall_std_err: decimal(p.stderr),
        estimated_cost_us: (f64::from(p.cost_us) * 10.0).round() / 10.0,
    }
}

impl From<quiver_engine::index::calibrate::Calibration> for NativeCalibration {
    fn from(c: quiver_engine::index::calibrate::Calibration) -> Self {
        let chosen = c.chosen().map(|p| point(p, c.graph));
        NativeCalibration {
            target_recall: decimal(c.target_recall),
            sample_queries: c.queries,
            k: c.k,
            nprobes: chosen.as_ref().map_or(0, |p| p.nprobes),
            ef: chosen.as_ref().and_then(|p| p.ef),
            refine_factor: chosen.as_ref().and_then(|p| p.refine_factor),
            recall: chosen.as_ref().map_or(0.0, |p| p.recall),
            curve: c.points.iter().map(|p| point(p, c.graph)).collect(),
        }
    }
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
            m: d.m,
            ef_construction: d.ef_construction,
            num_indexed_rows: i.num_indexed_rows as f64,
            num_unindexed_rows: i.num_unindexed_rows as f64,
            size_bytes: i.size_bytes as f64,
            calibration: d.calibration.map(NativeCalibration::from),
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
