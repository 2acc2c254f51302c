//! Vector indexes (IVF_PQ, IVF_FLAT) as an index kind: training (k-means, PQ) from a column
//! source, the update that folds in new rows without retraining, the manifest details, and
//! the partition search that query execution calls.
//!
//! An index covers the fragments that existed when it was built (or last updated). Rows
//! appended later are found by exact search over the uncovered fragments; deleted rows are
//! skipped through the current version's deletion vectors, so an index never returns a row
//! the version does not hold.

use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use roaring::RoaringBitmap;

use super::calibrate::{self, Calibration, CalibrationProto, GroundTruth};
use super::hnsw::{self, HnswParams};
use super::ivf::RqModel;
use super::ivf::{self, IndexKind, IvfIndex, Partition, PartitionData, PreparedQuery};
use super::kmeans::{self, KMeansParams};
use super::pq::{self, ProductQuantizer};
use super::rq::{self, RabitQuantizer};
use super::sq::{ScalarQuantizer, SqLinkSpace};
use super::{
    BuildJob, Built, ColumnSource, Index, IndexConfig, IndexDetails, IndexFamily, IndexFile,
    IndexType, PartContext, UpdateJob,
};
use crate::error::{Error, Result};
use crate::linalg::DistanceType;
use crate::vocab::{in_range, BuildProgress, Candidate, ProgressFn, PREALLOCATE};

/// Rows at most used to train PQ codebooks (a random part of the k-means sample).
const PQ_TRAINING_ROWS: usize = 16_384;
/// k-means iterations of each PQ codebook.
const PQ_ITERATIONS: usize = 25;
/// Relative improvement of the k-means objective below which training stops. Measured on the
/// 100K × 768 reference: at 1e-4 the partitions ran all 50 rounds (19.5 s), at 1e-3 they stop
/// after 7.7 s, and recall@10 at default search settings moved from 0.995 to 0.993.
pub(crate) const KMEANS_TOLERANCE: f64 = 1e-3;
/// Default partitions probed by a search.
pub const DEFAULT_NPROBES: usize = 20;
/// A vector column of at most this many bytes is kept from the sampling scan for the
/// encoding, which then reads nothing: on a cloud store a second read costs as much as the
/// first (0.6 s of a 100K × 768 build against moto behind a 10 ms proxy, timed by a scratch
/// script from the build's progress events). 512 MiB is ~170K
/// float32 vectors of 768 dimensions, tables whose k-means sample (256 rows per partition,
/// √rows partitions) already holds most of the rows.
const KEPT_SCAN_BYTES: u64 = 512 << 20;

/// How to build a vector index (`None`: the documented default).
#[derive(Debug, Clone)]
pub struct VectorIndexParams {
    pub kind: IndexKind,
    pub distance_type: DistanceType,
    pub num_partitions: Option<usize>,
    pub num_sub_vectors: Option<usize>,
    pub num_bits: Option<u32>,
    pub max_iterations: Option<usize>,
    pub sample_rate: Option<usize>,
    /// Recall the calibrated default settings aim at (default 0.95).
    pub target_recall: Option<f32>,
    /// IVF_HNSW_SQ: links per node (default 20) and the build's candidate list (default 300).
    pub m: Option<usize>,
    pub ef_construction: Option<usize>,
}

impl Default for VectorIndexParams {
    fn default() -> Self {
        VectorIndexParams {
            kind: IndexKind::IvfPq,
            distance_type: DistanceType::L2,
            num_partitions: None,
            num_sub_vectors: None,
            num_bits: None,
            max_iterations: None,
            sample_rate: None,
            target_recall: None,
            m: None,
            ef_construction: None,
        }
    }
}

/// What the manifest records about a vector index (protobuf `VectorIndexDetails`, stored in
/// `IndexMetadata.details`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct VectorIndexDetailsProto {
    #[prost(string, tag = "1")]
    pub distance_type: String,
    #[prost(uint32, tag = "2")]
    pub num_partitions: u32,
    #[prost(uint32, tag = "3")]
    pub num_sub_vectors: u32,
    #[prost(uint32, tag = "4")]
    pub num_bits: u32,
    #[prost(uint32, tag = "5")]
    pub dim: u32,
    /// Rows the index file holds (deleted ones included, until the next optimize).
    #[prost(uint64, tag = "6")]
    pub num_rows: u64,
    /// The settings measured at build time (absent: not calibrated).
    #[prost(message, optional, tag = "7")]
    pub calibration: Option<CalibrationProto>,
    /// IVF_HNSW_SQ: links per node, and the build's candidate list.
    #[prost(uint32, tag = "8")]
    pub m: u32,
    #[prost(uint32, tag = "9")]
    pub ef_construction: u32,
}

/// Checks a manifest's details of a vector index against its column: they decode and name a
/// distance its kind supports, and the column holds vectors of the length they describe
/// (hamming: of bytes). So a search never meets an index that does not fit its column.
fn check_details(
    kind: IndexKind,
    details: &[u8],
    column: &Field,
) -> std::result::Result<(), String> {
    let d: VectorIndexDetailsProto =
        prost::Message::decode(details).map_err(|e| format!("its details do not decode: {e}"))?;
    let distance: DistanceType = d
        .distance_type
        .parse()
        .map_err(|_| format!("unknown distance type '{}'", d.distance_type))?;
    let DataType::FixedSizeList(item, dim) = column.data_type() else {
        return Err(format!("column '{}' is not a vector column", column.name()));
    };
    if i64::from(d.dim) != i64::from(*dim) {
        return Err(format!(
            "it describes vectors of {} values, column '{}' holds {dim}",
            d.dim,
            column.name()
        ));
    }
    if distance == DistanceType::Hamming
        && (kind != IndexKind::IvfFlat || item.data_type() != &DataType::UInt8)
    {
        return Err(format!(
            "{} with hamming distance on column '{}' of {}",
            kind.name(),
            column.name(),
            item.data_type()
        ));
    }
    Ok(())
}

/// The details a manifest records of a vector index.
pub fn decode_details(details: &[u8]) -> Result<VectorIndexDetailsProto> {
    prost::Message::decode(details).map_err(|e| {
        Error::corrupt(
            "index entry in the manifest",
            format!("vector index details do not decode: {e}"),
        )
    })
}

/// The distance type a vector index was trained for.
pub fn details_distance(details: &[u8]) -> Result<DistanceType> {
    decode_details(details)?
        .distance_type
        .parse()
        .map_err(|_| Error::corrupt("index entry in the manifest", "unknown distance type"))
}

/// Default partitions: √rows, rounded (at least 1).
pub fn default_partitions(rows: u64) -> usize {
    ((rows as f64).sqrt().round() as usize).clamp(1, 65_536)
}

/// Default partitions of a graph index: one graph per million rows (a graph is searched in
/// logarithmic time, so partitions only bound the build's memory and the parts loaded).
pub fn default_graph_partitions(rows: u64) -> usize {
    (rows.div_ceil(1_000_000) as usize).max(1)
}

/// Bits per dimension of IVF_RQ codes (RaBitQ's one bit: the sign of each rotated value).
pub const DEFAULT_RQ_BITS: u32 = 1;
/// Candidate list of a graph search on an index built without calibration.
pub const DEFAULT_EF: usize = 64;
/// Graph defaults (LanceDB's): links per node and the build's candidate list.
pub const DEFAULT_HNSW_M: usize = 20;
pub const DEFAULT_EF_CONSTRUCTION: usize = 300;
/// Rows at least the scalar quantizer's ranges are measured on.
const SQ_TRAINING_ROWS: usize = 32_768;

/// Default sub-vectors: one per 8 dimensions (the largest divisor of `dim` not above
/// `dim / 8`; 1 for short vectors).
pub fn default_sub_vectors(dim: usize) -> usize {
    let target = (dim / 8).max(1);
    (1..=target)
        .rev()
        .find(|m| dim.is_multiple_of(*m))
        .unwrap_or(1)
}

/// Trains a vector index on the rows of `source` (column `column` of vectors of `dim`
/// `element`s).
async fn train(
    params: &VectorIndexParams,
    column: &Field,
    source: &dyn ColumnSource,
    progress: Option<ProgressFn>,
) -> Result<IvfIndex> {
    let report = |phase: &'static str, done: u64, total: u64| {
        if let Some(p) = &progress {
            p(BuildProgress { phase, done, total });
        }
    };
    let DataType::FixedSizeList(item, dim) = column.data_type() else {
        return Err(Error::invalid(format!(
            "column '{}' is {}, not a vector column",
            column.name(),
            column.data_type()
        )));
    };
    let (element, dim) = (item.data_type().clone(), *dim as usize);
    let column = column.name().clone();
    let distance = params.distance_type;
    match (params.kind, distance, &element) {
        (
            IndexKind::IvfPq | IndexKind::IvfHnswSq | IndexKind::IvfRq | IndexKind::IvfHnswPq,
            DistanceType::Hamming,
            _,
        ) => {
            return Err(Error::invalid(format!(
                "{} does not support hamming distance; use Index.ivfFlat({{ distanceType: 'hamming' }})",
                params.kind.name()
            )))
        }
        (_, DistanceType::Hamming, DataType::UInt8) => {}
        (_, DistanceType::Hamming, other) => {
            return Err(Error::invalid(format!(
                "hamming distance needs a uint8 vector column; '{column}' holds {other}"
            )))
        }
        _ => {}
    }
    let rq_bits = match (params.kind, params.num_bits) {
        (IndexKind::IvfRq, bits) => {
            let bits = bits.unwrap_or(DEFAULT_RQ_BITS);
            if !(1..=rq::MAX_BITS).contains(&bits) {
                return Err(Error::invalid(format!(
                    "numBits of IVF_RQ must be between 1 and {} (got {bits})",
                    rq::MAX_BITS
                )));
            }
            if ivf::space_dim(dim, distance) > rq::MAX_DIM {
                return Err(Error::invalid(format!(
                    "IVF_RQ takes vectors of at most {} dimensions ('{column}' has {dim}); use Index.ivfPq()",
                    rq::MAX_DIM
                )));
            }
            bits
        }
        (_, Some(bits)) if bits != 8 => {
            return Err(Error::invalid(format!(
                "numBits must be 8 (got {bits}): codes are one byte per sub-vector"
            )));
        }
        _ => 0,
    };
    let rows = source.rows();
    if rows == 0 {
        return Err(Error::invalid(format!(
            "cannot train an index on '{column}': the table has no rows; add rows first"
        )));
    }
    let sdim = ivf::space_dim(dim, distance);
    let partitions = params.num_partitions.unwrap_or_else(|| match params.kind {
        IndexKind::IvfHnswSq | IndexKind::IvfHnswPq => default_graph_partitions(rows),
        _ => default_partitions(rows),
    });
    if partitions == 0 {
        return Err(Error::invalid("numPartitions must be at least 1"));
    }
    let partitions = partitions.min(rows as usize);
    let sub_vectors = match params.kind {
        IndexKind::IvfPq | IndexKind::IvfHnswPq => {
            let m = params
                .num_sub_vectors
                .unwrap_or_else(|| default_sub_vectors(sdim));
            if m == 0 || !sdim.is_multiple_of(m) {
                return Err(Error::invalid(format!(
                    "numSubVectors must divide the vector length {sdim} (got {m})"
                )));
            }
            m
        }
        IndexKind::IvfFlat | IndexKind::IvfHnswSq | IndexKind::IvfRq => 0,
    };
    let hnsw = matches!(params.kind, IndexKind::IvfHnswSq | IndexKind::IvfHnswPq)
        .then(|| -> Result<HnswParams> {
            let m = params.m.unwrap_or(DEFAULT_HNSW_M);
            if !(ivf::MIN_HNSW_M..=ivf::MAX_HNSW_M).contains(&m) {
                return Err(Error::invalid(format!(
                    "m must be between {} and {} (got {m})",
                    ivf::MIN_HNSW_M,
                    ivf::MAX_HNSW_M
                )));
            }
            let ef_construction = params.ef_construction.unwrap_or(DEFAULT_EF_CONSTRUCTION);
            if ef_construction == 0 || ef_construction > ivf::MAX_EF {
                return Err(Error::invalid(format!(
                    "efConstruction must be between 1 and {} (got {ef_construction})",
                    ivf::MAX_EF
                )));
            }
            Ok(HnswParams { m, ef_construction })
        })
        .transpose()?;
    let target_recall = params
        .target_recall
        .unwrap_or(calibrate::DEFAULT_TARGET_RECALL);
    if !(target_recall > 0.0 && target_recall <= 1.0) {
        return Err(Error::invalid(format!(
            "targetRecall must be in (0, 1] (got {target_recall})"
        )));
    }
    let max_iterations = params.max_iterations.unwrap_or(50).max(1);
    let sample_rate = params.sample_rate.unwrap_or(256).max(1);
    // 1. A uniform sample of the column (reservoir sampling over one scan).
    let mut sample_size = sample_rate.saturating_mul(partitions);
    if hnsw.is_some() {
        // The scalar quantizer's ranges come from the sample too.
        sample_size = sample_size.max(SQ_TRAINING_ROWS);
    }
    let sample_size = sample_size.min(rows as usize);
    let mut rng = StdRng::seed_from_u64(0x5155_4956_4552);
    let mut sample: Vec<f32> = Vec::with_capacity(sample_size * sdim);
    let mut seen = 0usize;
    let (mut space, mut kept) = (Vec::new(), Vec::new());
    // Calibration queries: a second, small reservoir of rows with their addresses, drawn from
    // a fixed share of the rows (one in `query_stride`, by a hash of the address) that the
    // training sample never takes, so the queries are as unseen to the centroids and
    // quantizers as a user's are (a row that trained them sits nearer its own centroid).
    let query_slots = calibrate::query_count(rows, sdim, hnsw.is_some());
    let query_stride = if query_slots == 0 {
        u64::MAX
    } else {
        (rows / (8 * query_slots as u64)).max(4)
    };
    let mut query_seen = 0usize;
    let mut query_rng = StdRng::seed_from_u64(0x4341_4c49_4252);
    let mut queries: Vec<f32> = Vec::with_capacity(query_slots * sdim);
    let mut query_rows: Vec<u64> = Vec::with_capacity(query_slots);
    // Each row is its vector and its 8-byte address.
    let row_bytes = (dim * element.primitive_width().unwrap_or(8) + 8) as u64;
    let mut kept_scan = (rows.saturating_mul(row_bytes) <= KEPT_SCAN_BYTES).then(Vec::new);
    let mut stream = source.batches()?;
    report("sample", 0, rows);
    let mut scanned = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        space.clear();
        ivf::to_space(
            batch.column(0).as_fixed_size_list(),
            distance,
            &mut space,
            None,
            None,
            &mut kept,
        )?;
        let ids = batch.column(1).as_primitive::<UInt64Type>().values();
        let kept_ids = ids.iter().zip(&kept).filter(|(_, &k)| k).map(|(&id, _)| id);
        for (row, row_id) in space.chunks_exact(sdim).zip(kept_ids) {
            if calibrate::holds_out(row_id, query_stride) {
                if query_rows.len() < query_slots {
                    queries.extend_from_slice(row);
                    query_rows.push(row_id);
                } else {
                    let slot = query_rng.random_range(0..=query_seen);
                    if slot < query_slots {
                        queries[slot * sdim..(slot + 1) * sdim].copy_from_slice(row);
                        query_rows[slot] = row_id;
                    }
                }
                query_seen += 1;
                continue;
            }
            if seen < sample_size {
                sample.extend_from_slice(row);
            } else {
                let slot = rng.random_range(0..=seen);
                if slot < sample_size {
                    sample[slot * sdim..(slot + 1) * sdim].copy_from_slice(row);
                }
            }
            seen += 1;
        }
        scanned += batch.num_rows() as u64;
        report("sample", scanned, rows);
        if let Some(kept_scan) = &mut kept_scan {
            kept_scan.push(batch);
        }
    }
    if sample.is_empty() && !queries.is_empty() {
        // Every trainable vector fell among the held-out rows (a column almost all null):
        // train on them, uncalibrated.
        sample = std::mem::take(&mut queries);
        query_rows.clear();
    }
    if sample.is_empty() {
        return Err(Error::invalid(format!(
            "cannot train an index on '{column}': every vector is null or holds NaN/infinity"
        )));
    }

    // 2. Centroids, then PQ codebooks on residuals (CPU work off the async workers).
    let kind = params.kind;
    let training_progress = progress.clone();
    let (centroids, quantizer, sq, rq) = tokio::task::spawn_blocking(move || {
        let report = |phase: &'static str, done: u64, total: u64| {
            if let Some(p) = &training_progress {
                p(BuildProgress { phase, done, total });
            }
        };
        let kmeans_params = KMeansParams {
            k: partitions,
            max_iterations,
            tolerance: KMEANS_TOLERANCE,
            seed: 42,
        };
        report("kmeans", 0, max_iterations as u64);
        let model = kmeans::train(&sample, sdim, kmeans_params, |i| {
            report("kmeans", i as u64, max_iterations as u64)
        });
        report("kmeans", max_iterations as u64, max_iterations as u64);
        let quantizer = matches!(kind, IndexKind::IvfPq | IndexKind::IvfHnswPq).then(|| {
            let n = sample.len() / sdim;
            let train_rows = n.min(PQ_TRAINING_ROWS);
            let rows = &sample[..train_rows * sdim];
            let mut assignment = vec![0u32; train_rows];
            let mut distances = vec![0f32; train_rows];
            kmeans::assign(
                rows,
                sdim,
                &model.centroids,
                &mut assignment,
                &mut distances,
            );
            let mut residuals = rows.to_vec();
            for (r, &a) in residuals.chunks_exact_mut(sdim).zip(&assignment) {
                let c = &model.centroids[a as usize * sdim..(a as usize + 1) * sdim];
                r.iter_mut().zip(c).for_each(|(x, c)| *x -= c);
            }
            let done = std::sync::atomic::AtomicU64::new(0);
            report("pq", 0, sub_vectors as u64);
            ProductQuantizer::train(&residuals, sdim, sub_vectors, PQ_ITERATIONS, 7, &|| {
                let d = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                report("pq", d, sub_vectors as u64);
            })
        });
        let sq = (kind == IndexKind::IvfHnswSq).then(|| ScalarQuantizer::train(&sample, sdim));
        let rq = (kind == IndexKind::IvfRq).then(|| {
            RqModel::new(
                RabitQuantizer::train(sdim, rq_bits, 0x5241_4249_5451),
                &model.centroids,
            )
        });
        (model.centroids, quantizer, sq, rq)
    })
    .await
    .map_err(|e| Error::Internal(format!("index training failed: {e}")))?;
    // k-means trains at most one centroid per sampled (non-null, finite) vector.
    let partitions = centroids.len() / sdim;
    let model = Arc::new(Codec {
        kind,
        distance,
        dim,
        centroids,
        quantizer,
        sq,
        hnsw,
        rq,
    });

    // 3. Assign and encode every row (from the kept batches, else a second scan).
    // (The exact neighbours of the calibration queries are found in the same pass.)
    let truth = (!query_rows.is_empty()).then(|| {
        Arc::new(std::sync::Mutex::new(GroundTruth::new(
            sdim, distance, queries, query_rows,
        )))
    });
    let batches = match kept_scan {
        Some(batches) => futures::stream::iter(batches.into_iter().map(Ok)).boxed(),
        None => source.batches()?,
    };
    let encoded = encode_rows(batches, model.clone(), truth.clone(), &report, rows).await?;
    let mut index = assemble(model, partitions, encoded, Vec::new(), progress.clone()).await?;
    // 4. Calibration: the sample queries searched through the new index.
    let Some(truth) = truth.and_then(|t| Arc::into_inner(t)?.into_inner().ok()) else {
        return Ok(index);
    };
    report("calibrate", 0, 1);
    let index = tokio::task::spawn_blocking(move || {
        index.calibration = calibrate::calibrate(&index, &truth, target_recall);
        index
    })
    .await
    .map_err(|e| Error::Internal(format!("index calibration failed: {e}")))?;
    report("calibrate", 1, 1);
    Ok(index)
}

/// The entries of `partitions` that `keep` admits, in the encoded (unsorted) form.
fn existing_rows(
    partitions: &[Arc<Partition>],
    keep: &(dyn Fn(u64) -> bool + Sync),
) -> (Encoded, u64, Vec<Option<KeptGraph>>) {
    let mut out = Encoded::default();
    let mut removed = 0u64;
    let mut graphs = Vec::with_capacity(partitions.len());
    for (p, part) in partitions.iter().enumerate() {
        let removed_before = removed;
        let is_graph = matches!(
            part.data,
            PartitionData::HnswSq { .. } | PartitionData::HnswPq { .. }
        );
        let mut kept_nodes = Vec::new();
        for (i, &row) in part.row_ids.iter().enumerate() {
            if !keep(row) {
                removed += 1;
                continue;
            }
            if is_graph {
                kept_nodes.push(i as u32);
            }
            out.partitions.push(p as u32);
            out.row_ids.push(row);
            match &part.data {
                PartitionData::Pq(codes) | PartitionData::FlatBytes(codes) => {
                    let w = codes.len() / part.len();
                    out.codes.extend_from_slice(&codes[i * w..(i + 1) * w]);
                }
                PartitionData::FlatF32(v) => {
                    let w = v.len() / part.len();
                    out.vectors.extend_from_slice(&v[i * w..(i + 1) * w]);
                }
                PartitionData::HnswSq { codes, .. } | PartitionData::HnswPq { codes, .. } => {
                    let w = codes.len() / part.len();
                    out.codes.extend_from_slice(&codes[i * w..(i + 1) * w]);
                }
                PartitionData::Rq { codes, factors } => {
                    let w = codes.len() / part.len();
                    out.codes.extend_from_slice(&codes[i * w..(i + 1) * w]);
                    out.vectors
                        .extend_from_slice(&factors[i * rq::FACTORS..(i + 1) * rq::FACTORS]);
                }
            }
        }
        // Kept rows come first in the rebuilt partition, in their order, so appended rows
        // join the stored graph; one that lost a few nodes is repaired first, one that lost
        // many is relinked.
        let lost = removed - removed_before;
        graphs.push(match &part.data {
            PartitionData::HnswSq { graph, .. } | PartitionData::HnswPq { graph, .. }
                if lost as f64 <= MAX_REPAIRED_SHARE * part.len() as f64 =>
            {
                Some(KeptGraph {
                    graph: graph.clone(),
                    kept: (lost > 0).then_some(kept_nodes),
                })
            }
            _ => None,
        });
    }
    (out, removed, graphs)
}

/// A partition's stored graph, and which of its nodes stay (none: all of them).
struct KeptGraph {
    graph: hnsw::Graph,
    kept: Option<Vec<u32>>,
}

impl KeptGraph {
    fn len(&self) -> usize {
        self.kept.as_ref().map_or(self.graph.len(), Vec::len)
    }

    /// The graph over the kept nodes (renumbered in order), repaired where nodes went.
    fn base<S: hnsw::GraphSpace>(&self, space: &S) -> std::borrow::Cow<'_, hnsw::Graph> {
        match &self.kept {
            None => std::borrow::Cow::Borrowed(&self.graph),
            Some(kept) => std::borrow::Cow::Owned(hnsw::without(&self.graph, kept, space)),
        }
    }
}

/// Share of a graph partition's rows that may be deleted before `optimize()` relinks it
/// rather than repairing the links around them.
const MAX_REPAIRED_SHARE: f64 = 0.2;

/// Rows encoded for an index: partition, address and payload of each row (IVF_RQ: codes,
/// and factors in `vectors`).
#[derive(Default)]
struct Encoded {
    partitions: Vec<u32>,
    row_ids: Vec<u64>,
    codes: Vec<u8>,
    vectors: Vec<f32>,
}

impl Encoded {
    fn append(mut self, other: Encoded) -> Encoded {
        self.partitions.extend(other.partitions);
        self.row_ids.extend(other.row_ids);
        self.codes.extend(other.codes);
        self.vectors.extend(other.vectors);
        self
    }
}

async fn encode_rows(
    mut stream: BoxStream<'static, Result<RecordBatch>>,
    model: Arc<Codec>,
    truth: Option<Arc<std::sync::Mutex<GroundTruth>>>,
    report: &(dyn Fn(&'static str, u64, u64) + Sync),
    total: u64,
) -> Result<Encoded> {
    let (kind, distance) = (model.kind, model.distance);
    let sdim = ivf::space_dim(model.dim, distance);
    let mut out = Encoded::default();
    let mut done = 0u64;
    report("encode", 0, total);
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let batch_rows = batch.num_rows() as u64;
        let (model, truth) = (model.clone(), truth.clone());
        let part = tokio::task::spawn_blocking(move || -> Result<Encoded> {
            let centroids = &model.centroids;
            use rayon::prelude::*;
            let (mut space, mut kept) = (Vec::new(), Vec::new());
            let mut raw = Vec::new();
            let mut bytes = Vec::new();
            let flat_float = kind == IndexKind::IvfFlat && distance != DistanceType::Hamming;
            let flat_bytes = kind == IndexKind::IvfFlat && distance == DistanceType::Hamming;
            ivf::to_space(
                batch.column(0).as_fixed_size_list(),
                distance,
                &mut space,
                flat_float.then_some(&mut raw),
                flat_bytes.then_some(&mut bytes),
                &mut kept,
            )?;
            let ids = batch.column(1).as_primitive::<UInt64Type>().values();
            let row_ids: Vec<u64> = ids
                .iter()
                .zip(&kept)
                .filter(|(_, &k)| k)
                .map(|(&id, _)| id)
                .collect();
            if let Some(mut truth) = truth.as_ref().and_then(|t| t.lock().ok()) {
                truth.add(&space, &row_ids);
            }
            let n = row_ids.len();
            let mut assignment = vec![0u32; n];
            let mut distances = vec![0f32; n];
            kmeans::assign(&space, sdim, centroids, &mut assignment, &mut distances);
            if let Some(rq) = &model.rq {
                let quantizer = &rq.quantizer;
                let (width, n) = (quantizer.code_width(), row_ids.len());
                let mut codes = vec![0u8; n * width];
                let mut factors = vec![0f32; n * rq::FACTORS];
                codes
                    .par_chunks_mut(width)
                    .zip(factors.par_chunks_mut(rq::FACTORS))
                    .zip(space.par_chunks(sdim))
                    .zip(assignment.par_iter())
                    .for_each_init(
                        || (vec![0f32; sdim], Vec::with_capacity(sdim)),
                        |(residual, rotated), (((code, f), v), &a)| {
                            let c = &centroids[a as usize * sdim..(a as usize + 1) * sdim];
                            residual
                                .iter_mut()
                                .zip(v.iter().zip(c))
                                .for_each(|(r, (x, c))| *r = x - c);
                            quantizer.rotate(residual, rotated);
                            let centroid =
                                &rq.rotated_centroids[a as usize * sdim..(a as usize + 1) * sdim];
                            quantizer.encode(rotated, centroid, code, f);
                        },
                    );
                return Ok(Encoded {
                    partitions: assignment,
                    row_ids,
                    codes,
                    vectors: factors,
                });
            }
            let codes = match (&model.quantizer, &model.sq) {
                (_, Some(sq)) => {
                    let mut codes = vec![0u8; n * sdim];
                    codes
                        .par_chunks_mut(sdim)
                        .zip(space.par_chunks(sdim))
                        .for_each(|(code, v)| sq.encode(v, code));
                    codes
                }
                (Some(q), None) => {
                    let m = q.m;
                    let mut codes = vec![0u8; n * m];
                    codes
                        .par_chunks_mut(m)
                        .zip(space.par_chunks(sdim))
                        .zip(assignment.par_iter())
                        .for_each_init(
                            || (vec![0f32; sdim], [0f32; pq::CODES]),
                            |(residual, scratch), ((code, v), &a)| {
                                let c = &centroids[a as usize * sdim..(a as usize + 1) * sdim];
                                residual
                                    .iter_mut()
                                    .zip(v.iter().zip(c))
                                    .for_each(|(r, (x, c))| *r = x - c);
                                q.encode(residual, code, scratch);
                            },
                        );
                    codes
                }
                (None, None) => bytes,
            };
            Ok(Encoded {
                partitions: assignment,
                row_ids,
                codes,
                vectors: raw,
            })
        })
        .await
        .map_err(|e| Error::Internal(format!("index encoding failed: {e}")))??;
        done += batch_rows;
        out = out.append(part);
        report("encode", done.min(total), total);
    }
    report("encode", total, total);
    Ok(out)
}

/// What encodes rows for an index: the trained model.
pub(crate) struct Codec {
    kind: IndexKind,
    distance: DistanceType,
    dim: usize,
    centroids: Vec<f32>,
    quantizer: Option<ProductQuantizer>,
    sq: Option<ScalarQuantizer>,
    hnsw: Option<HnswParams>,
    rq: Option<RqModel>,
}

impl Codec {
    fn of(index: &IvfIndex) -> Codec {
        Codec {
            kind: index.kind,
            distance: index.distance,
            dim: index.dim,
            centroids: index.centroids.clone(),
            quantizer: index.quantizer.clone(),
            sq: index.sq.clone(),
            hnsw: index.hnsw,
            rq: index.rq.clone(),
        }
    }
}

/// Groups encoded rows by partition into an index, building each partition's graph
/// (IVF_HNSW_SQ) on all cores.
async fn assemble(
    model: Arc<Codec>,
    partitions: usize,
    encoded: Encoded,
    graphs: Vec<Option<KeptGraph>>,
    progress: Option<ProgressFn>,
) -> Result<IvfIndex> {
    tokio::task::spawn_blocking(move || group(&model, partitions, encoded, &graphs, progress))
        .await
        .map_err(|e| Error::Internal(format!("index assembly failed: {e}")))
}

/// `graphs[p]`, when present, is partition `p`'s graph over its first rows: only the rows
/// after them are inserted.
fn group(
    model: &Codec,
    partitions: usize,
    encoded: Encoded,
    graphs: &[Option<KeptGraph>],
    progress: Option<ProgressFn>,
) -> IvfIndex {
    let (dim, distance) = (model.dim, model.distance);
    let sdim = ivf::space_dim(dim, distance);
    debug_assert_eq!(partitions, model.centroids.len() / sdim.max(1));
    let mut counts = vec![0usize; partitions];
    for &p in &encoded.partitions {
        counts[p as usize] += 1;
    }
    let width = match (&model.quantizer, &model.sq, &model.rq, distance) {
        (Some(q), ..) => q.m,
        (None, Some(_), ..) => sdim,
        (None, None, Some(rq), _) => rq.quantizer.code_width(),
        (None, None, None, DistanceType::Hamming) => dim,
        (None, None, None, _) => 0,
    };
    let mut parts: Vec<Partition> = counts
        .iter()
        .map(|&n| Partition {
            row_ids: Vec::with_capacity(n),
            data: match (&model.quantizer, &model.rq, width) {
                (Some(_), ..) => PartitionData::Pq(Vec::with_capacity(n * width)),
                (None, Some(_), _) => PartitionData::Rq {
                    codes: Vec::with_capacity(n * width),
                    factors: Vec::with_capacity(n * rq::FACTORS),
                },
                (None, None, 0) => PartitionData::FlatF32(Vec::with_capacity(n * dim)),
                (None, None, _) => PartitionData::FlatBytes(Vec::with_capacity(n * width)),
            },
        })
        .collect();
    for (i, &p) in encoded.partitions.iter().enumerate() {
        let part = &mut parts[p as usize];
        part.row_ids.push(encoded.row_ids[i]);
        match &mut part.data {
            PartitionData::Pq(c) | PartitionData::FlatBytes(c) => {
                c.extend_from_slice(&encoded.codes[i * width..(i + 1) * width])
            }
            PartitionData::FlatF32(v) => {
                v.extend_from_slice(&encoded.vectors[i * dim..(i + 1) * dim])
            }
            PartitionData::Rq { codes, factors } => {
                codes.extend_from_slice(&encoded.codes[i * width..(i + 1) * width]);
                factors.extend_from_slice(&encoded.vectors[i * rq::FACTORS..(i + 1) * rq::FACTORS]);
            }
            PartitionData::HnswSq { .. } | PartitionData::HnswPq { .. } => {}
        }
    }
    if let Some(params) = model.hnsw {
        // Nodes to link: those not in a kept graph.
        let total = parts
            .iter()
            .enumerate()
            .map(|(p, part)| {
                let kept = graphs
                    .get(p)
                    .and_then(Option::as_ref)
                    .map_or(0, |g| g.len());
                part.len().saturating_sub(kept) as u64
            })
            .sum();
        let linked = std::sync::atomic::AtomicU64::new(0);
        let report = |done: u64| {
            if let Some(p) = &progress {
                p(BuildProgress {
                    phase: "graph",
                    done,
                    total,
                });
            }
        };
        let on_node = || {
            let done = linked.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if done.is_multiple_of(4096) {
                report(done);
            }
        };
        report(0);
        // PQ graphs are linked by code-to-code distances (one table for every partition).
        let symmetric = match (&model.sq, &model.quantizer) {
            (None, Some(q)) => q.symmetric_table(distance == DistanceType::Dot),
            _ => Vec::new(),
        };
        for (p, part) in parts.iter_mut().enumerate() {
            let n = part.len();
            let base = graphs.get(p).and_then(Option::as_ref);
            match (
                std::mem::replace(&mut part.data, PartitionData::Pq(Vec::new())),
                &model.sq,
                &model.quantizer,
            ) {
                (PartitionData::FlatBytes(codes), Some(sq), _) => {
                    let space = SqLinkSpace::new(sq, &codes, distance);
                    let base = base.map(|b| b.base(&space));
                    let graph =
                        hnsw::extend(base.as_deref(), &space, n, params, 0x4853_5751, &on_node);
                    part.data = PartitionData::HnswSq { codes, graph };
                }
                (PartitionData::Pq(codes), None, Some(quantizer)) => {
                    let space = ivf::PqSpace {
                        quantizer,
                        codes: &codes,
                        symmetric: Some(&symmetric),
                    };
                    let base = base.map(|b| b.base(&space));
                    let graph =
                        hnsw::extend(base.as_deref(), &space, n, params, 0x4853_5750, &on_node);
                    part.data = PartitionData::HnswPq { codes, graph };
                }
                (data, ..) => part.data = data,
            }
        }
        report(total);
    }
    let mut index = IvfIndex::resident(
        model.kind,
        distance,
        dim,
        model.centroids.clone(),
        model.quantizer.clone(),
        parts,
    );
    index.sq = model.sq.clone();
    index.hnsw = model.hnsw;
    index.rq = model.rq.clone();
    index
}

/// Which row addresses a search may return.
pub(crate) enum RowGate {
    /// Live rows of these fragments: below their row count (an index file's entries are
    /// not trusted to be) and not deleted.
    Live(HashMap<u64, (u64, Option<Arc<RoaringBitmap>>)>),
    /// Only these rows (a prefilter's matches).
    Only(HashMap<u64, RoaringBitmap>),
}

impl RowGate {
    #[inline]
    pub(crate) fn allows(&self, row: u64) -> bool {
        let (fragment, offset) = (row >> 32, (row & 0xFFFF_FFFF) as u32);
        match self {
            RowGate::Live(fragments) => match fragments.get(&fragment) {
                Some((rows, deleted)) => {
                    u64::from(offset) < *rows
                        && deleted.as_ref().is_none_or(|d| !d.contains(offset))
                }
                None => false,
            },
            RowGate::Only(rows) => rows.get(&fragment).is_some_and(|r| r.contains(offset)),
        }
    }
}

/// The `want` nearest allowed rows found by probing at least `nprobes` partitions, nearest
/// first, and more while fewer than `want` allowed rows were found (filters, deletions).
/// Partitions load through the index cache in rounds of `nprobes`, so a search reads only
/// what it probes. Returns the rows sorted, with the partitions probed.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn search_partitions(
    index: &IvfIndex,
    query: &mut PreparedQuery,
    nprobes: usize,
    ef: usize,
    want: usize,
    gate: &RowGate,
    range: (Option<f32>, Option<f32>),
    parts: &PartContext<'_>,
) -> Result<Probed> {
    // IVF_FLAT distances are exact, so a distance range can choose candidates; PQ distances
    // are approximate, so the range applies after refinement.
    let range = if index.kind == IndexKind::IvfFlat {
        range
    } else {
        (None, None)
    };
    let nprobes = nprobes.max(1);
    let order = index.rank_partitions(query.space());
    let mut heap: BinaryHeap<Bounded> = BinaryHeap::with_capacity(want.min(PREALLOCATE) + 1);
    let mut distances = Vec::new();
    let mut probed = 0;
    let mut parts_loaded = 0u64;
    let mut comparisons = index.num_partitions() as u64;
    'rounds: for round in order.chunks(nprobes) {
        let loaded =
            futures::future::try_join_all(round.iter().map(|&p| index.partition(p, parts))).await?;
        for (&p, (part, was_read)) in round.iter().zip(loaded) {
            if probed >= nprobes && heap.len() >= want {
                break 'rounds;
            }
            parts_loaded += u64::from(was_read);
            probed += 1;
            // (ef 0 scans the graph partition's codes instead of walking it.)
            if ef > 0
                && matches!(
                    part.data,
                    PartitionData::HnswSq { .. } | PartitionData::HnswPq { .. }
                )
            {
                let allow = |row: u64| gate.allows(row);
                let (found, computed) = index.graph_search(p, &part, query, ef, want, &allow, None);
                comparisons += computed;
                for candidate in found {
                    if heap.len() >= want
                        && heap
                            .peek()
                            .is_some_and(|worst| candidate >= worst.candidate)
                    {
                        continue;
                    }
                    heap.push(Bounded {
                        candidate,
                        bound: 0.0,
                    });
                    if heap.len() > want {
                        heap.pop();
                    }
                }
                continue;
            }
            index.partition_distances(p, &part, query, &mut distances);
            comparisons += part.len() as u64;
            let bounds = query.bounds();
            for (i, (&distance, &row_id)) in distances.iter().zip(&part.row_ids).enumerate() {
                if !in_range(distance, range) {
                    continue;
                }
                let candidate = Candidate { distance, row_id };
                if heap.len() >= want
                    && heap
                        .peek()
                        .is_some_and(|worst| candidate >= worst.candidate)
                {
                    continue;
                }
                if !gate.allows(row_id) {
                    continue;
                }
                heap.push(Bounded {
                    candidate,
                    bound: bounds.get(i).copied().unwrap_or(0.0),
                });
                if heap.len() > want {
                    heap.pop();
                }
            }
        }
        if heap.len() >= want {
            break;
        }
    }
    let (candidates, bounds) = heap
        .into_sorted_vec()
        .into_iter()
        .map(|b| (b.candidate, b.bound))
        .unzip();
    Ok(Probed {
        candidates,
        bounds,
        partitions: probed,
        parts_loaded,
        comparisons,
    })
}

/// A candidate and the bound on its distance's error (0: exact, or no bound known).
#[derive(Clone, Copy)]
struct Bounded {
    candidate: Candidate,
    bound: f32,
}

impl PartialEq for Bounded {
    fn eq(&self, other: &Self) -> bool {
        self.candidate == other.candidate
    }
}

impl Eq for Bounded {}

impl PartialOrd for Bounded {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Bounded {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.candidate.cmp(&other.candidate)
    }
}

/// What [`search_partitions`] found and how much it compared.
pub(crate) struct Probed {
    /// Nearest first.
    pub candidates: Vec<Candidate>,
    /// Each candidate's error bound (IVF_RQ), aligned with `candidates`.
    pub bounds: Vec<f32>,
    pub partitions: usize,
    /// Partitions read from storage (not found in the index cache).
    pub parts_loaded: u64,
    /// Query-to-centroid distances plus codes scored in the probed partitions.
    pub comparisons: u64,
}

/// IVF_PQ or IVF_FLAT as an index kind.
pub struct IvfType {
    kind: IndexKind,
}

pub static IVF_PQ_TYPE: IvfType = IvfType {
    kind: IndexKind::IvfPq,
};
pub static IVF_FLAT_TYPE: IvfType = IvfType {
    kind: IndexKind::IvfFlat,
};
pub static IVF_HNSW_SQ_TYPE: IvfType = IvfType {
    kind: IndexKind::IvfHnswSq,
};
pub static IVF_RQ_TYPE: IvfType = IvfType {
    kind: IndexKind::IvfRq,
};
pub static IVF_HNSW_PQ_TYPE: IvfType = IvfType {
    kind: IndexKind::IvfHnswPq,
};

impl Index for IvfIndex {
    fn index_type(&self) -> &'static str {
        self.kind.name()
    }

    fn heap_bytes(&self) -> usize {
        IvfIndex::heap_bytes(self)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn into_any_arc(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}

/// What the manifest records of `index`.
fn details_of(index: &IvfIndex) -> Vec<u8> {
    prost::Message::encode_to_vec(&VectorIndexDetailsProto {
        distance_type: ivf::distance_name(index.distance).to_string(),
        num_partitions: index.num_partitions() as u32,
        num_sub_vectors: index.num_sub_vectors() as u32,
        num_bits: match (index.kind, &index.rq) {
            (IndexKind::IvfPq | IndexKind::IvfHnswPq, _) => 8,
            (_, Some(rq)) => rq.quantizer.bits,
            _ => 0,
        },
        dim: index.dim as u32,
        num_rows: index.num_rows() as u64,
        calibration: index.calibration.as_ref().map(Calibration::to_proto),
        m: index.hnsw.map_or(0, |h| h.m as u32),
        ef_construction: index.hnsw.map_or(0, |h| h.ef_construction as u32),
    })
}

/// Writes `index` to `file`; the index cached after it is the file opened (its model in
/// memory, partitions read as searches probe them).
async fn write(
    storage: &crate::storage::Storage,
    file: &object_store::path::Path,
    index: IvfIndex,
    removed: u64,
) -> Result<Built> {
    let size_bytes = index.write(storage, file).await?;
    // The fragments the rows come from are the ones the manifest will record (a fresh
    // build's, or an update's after translation to the current version).
    let covered = index.fragments_held();
    let head = IvfIndex::model_size_hint(
        index.kind,
        index.distance,
        index.dim as u64,
        index.num_partitions() as u64,
    );
    let prefetch = super::scalar::Prefetch::read(storage, file, size_bytes, head).await?;
    let stored =
        IvfIndex::open_stored(storage, file, size_bytes, index.kind, &covered, prefetch).await?;
    Ok(Built {
        details: details_of(&index),
        size_bytes,
        entries: index.num_rows() as u64,
        removed,
        loaded: Some(Arc::new(stored)),
    })
}

impl IndexType for IvfType {
    fn name(&self) -> &'static str {
        self.kind.name()
    }

    fn family(&self) -> IndexFamily {
        IndexFamily::Vector
    }

    fn supports(&self, column: &Field) -> std::result::Result<(), String> {
        match column.data_type() {
            DataType::FixedSizeList(item, _)
                if matches!(
                    item.data_type(),
                    DataType::Float16
                        | DataType::Float32
                        | DataType::Float64
                        | DataType::UInt8
                        | DataType::Int8
                ) =>
            {
                Ok(())
            }
            other => Err(format!(
                "{} indexes vector columns (fixed-size lists of float16/32/64, uint8 or int8); '{}' is {other}",
                self.kind.name(),
                column.name()
            )),
        }
    }

    fn check(&self, details: &[u8], column: &Field) -> std::result::Result<(), String> {
        check_details(self.kind, details, column)
    }

    fn describe(&self, details: &[u8]) -> Result<IndexDetails> {
        let d = decode_details(details)?;
        Ok(IndexDetails {
            distance_type: Some(d.distance_type),
            num_partitions: Some(d.num_partitions),
            num_sub_vectors: Some(d.num_sub_vectors),
            num_bits: Some(d.num_bits),
            m: (d.m > 0).then_some(d.m),
            ef_construction: (d.ef_construction > 0).then_some(d.ef_construction),
            calibration: d.calibration.as_ref().and_then(Calibration::from_proto),
            ..Default::default()
        })
    }

    fn build<'a>(&'a self, job: BuildJob<'a>) -> BoxFuture<'a, Result<Built>> {
        Box::pin(async move {
            let IndexConfig::Vector(params) = job.config else {
                return Err(Error::invalid(format!(
                    "{} takes vector index parameters",
                    self.kind.name()
                )));
            };
            let index = train(params, job.column, job.source, job.progress.clone()).await?;
            job.report("write", 0, 1);
            let built = write(job.storage, job.file, index, 0).await?;
            job.report("write", 1, 1);
            Ok(built)
        })
    }

    fn open<'a>(&'a self, file: IndexFile<'a>) -> BoxFuture<'a, Result<Arc<dyn Index>>> {
        Box::pin(async move {
            let path = file.path.clone();
            let bad =
                |why: String| Error::corrupt(&path, format!("vector index '{}': {why}", file.name));
            let d = decode_details(file.details)?;
            let distance = details_distance(file.details)?;
            // The model comes first in the file and the lookup last: both ends in one round
            // trip, the model's share sized from the manifest's description.
            let head = IvfIndex::model_size_hint(
                self.kind,
                distance,
                u64::from(d.dim),
                u64::from(d.num_partitions),
            );
            let prefetch =
                super::scalar::Prefetch::read(file.storage, &path, file.size_bytes, head).await?;
            let size = prefetch.size;
            let mut index = if prefetch.is_container() {
                IvfIndex::open_stored(
                    file.storage,
                    &path,
                    file.size_bytes,
                    self.kind,
                    file.fragments,
                    prefetch,
                )
                .await?
            } else if matches!(
                self.kind,
                IndexKind::IvfHnswSq | IndexKind::IvfRq | IndexKind::IvfHnswPq
            ) {
                return Err(bad("no index footer".into()));
            } else {
                // A one-block file (the earlier layout), read whole. The manifest says what
                // it holds, so it is no larger than that allows.
                let limit = IvfIndex::max_file_size(
                    self.kind,
                    distance,
                    u64::from(d.dim),
                    u64::from(d.num_partitions),
                    u64::from(d.num_sub_vectors),
                    d.num_rows,
                )
                .ok_or_else(|| bad("its sizes in the manifest overflow".into()))?;
                if size > limit {
                    return Err(bad(format!(
                        "the file holds {size} bytes, more than the {limit} its description allows"
                    )));
                }
                let (bytes, _) = file
                    .storage
                    .read_all_at_most(&path, limit, "vector index")
                    .await?;
                let decode_path = path.clone();
                tokio::task::spawn_blocking(move || {
                    IvfIndex::decode_one_block(&bytes, &decode_path)
                })
                .await
                .map_err(|e| Error::Internal(format!("index load task failed: {e}")))??
            };
            // The file holds exactly what the manifest describes.
            if index.kind != self.kind
                || index.distance != distance
                || index.dim != d.dim as usize
                || index.num_partitions() != d.num_partitions as usize
                || index.num_sub_vectors() != d.num_sub_vectors as usize
                || index.num_rows() as u64 != d.num_rows
            {
                return Err(bad(
                    "the file does not match the manifest's description of it".into(),
                ));
            }
            index
                .translate_resident(file.translate, file.fragments, &path)
                .await?;
            Ok(Arc::new(index) as Arc<dyn Index>)
        })
    }

    fn update<'a>(&'a self, job: UpdateJob<'a>) -> BoxFuture<'a, Result<Built>> {
        Box::pin(async move {
            let index = job
                .current
                .as_any()
                .downcast_ref::<IvfIndex>()
                .ok_or_else(|| Error::Internal("a vector update got another index".into()))?;
            let partitions = index.all_partitions(job.parts).await?;
            let (kept, removed, graphs) = existing_rows(&partitions, job.keep);
            drop(partitions);
            let model = Arc::new(Codec::of(index));
            let added = encode_rows(
                job.added.batches()?,
                model.clone(),
                None,
                &|_, _, _| {},
                job.added.rows(),
            )
            .await?;
            let mut rebuilt = assemble(
                model,
                index.num_partitions(),
                kept.append(added),
                graphs,
                None,
            )
            .await?;
            // Partitions keep their centroids, so the measured settings still describe them.
            rebuilt.calibration = index.calibration.clone();
            write(job.storage, job.file, rebuilt, removed).await
        })
    }
}
