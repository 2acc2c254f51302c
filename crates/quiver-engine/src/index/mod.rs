//! Vector indexes: IVF_PQ and IVF_FLAT. Owns training (k-means, PQ), the index files under
//! `_indices/`, their entries in the manifest, the connection's index cache, and the
//! partition search that query execution calls.
//!
//! An index covers the fragments that existed when it was built (or last optimized). Rows
//! appended later are found by exact search over the uncovered fragments; deleted rows are
//! skipped through the current version's deletion vectors, so an index never returns a row
//! the version does not hold.

pub mod ivf;
pub mod kmeans;
pub mod pq;

use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_schema::DataType;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use roaring::RoaringBitmap;

pub use self::ivf::{IndexKind, IvfIndex, Payload, PreparedQuery};
use self::kmeans::KMeansParams;
use self::pq::ProductQuantizer;
use crate::error::{Error, Result};
use crate::linalg::DistanceType;
use crate::query::{resolve_column, Candidate};
use crate::schema::TableSchema;
use crate::table::manifest::{IndexMetadataProto, Manifest, INDEX_FILE, INDICES_DIR};
use crate::table::{remap, ScanOptions, Table};

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
        }
    }
}

/// Progress of a build, reported per phase: `sample`, `kmeans`, `pq`, `encode`, `write`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildProgress {
    pub phase: &'static str,
    pub done: u64,
    pub total: u64,
}

/// Receives build progress (called from worker threads; must not block).
pub type ProgressFn = Arc<dyn Fn(BuildProgress) + Send + Sync>;

/// Options of [`create_index`].
#[derive(Clone, Default)]
pub struct CreateIndexOptions {
    pub params: VectorIndexParams,
    /// Default `{column}_idx`.
    pub name: Option<String>,
    /// Replace an index of the same name (or on the same column). Without it, that is an error.
    pub replace: bool,
    pub progress: Option<ProgressFn>,
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
}

/// An index as `list_indices` and `index_stats` describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexInfo {
    pub name: String,
    pub index_type: String,
    pub columns: Vec<String>,
    pub distance_type: String,
    pub num_partitions: u32,
    pub num_sub_vectors: u32,
    pub num_bits: u32,
    /// Live rows of the version that the index covers.
    pub num_indexed_rows: u64,
    /// Live rows the index does not cover yet (appended after the build; found by exact search).
    pub num_unindexed_rows: u64,
}

fn details(meta: &IndexMetadataProto) -> Result<VectorIndexDetailsProto> {
    prost::Message::decode(meta.details.as_slice()).map_err(|e| {
        Error::corrupt(
            format!("index '{}' in the manifest", meta.name),
            format!("index details do not decode: {e}"),
        )
    })
}

fn info(manifest: &Manifest, meta: &IndexMetadataProto) -> Result<IndexInfo> {
    let d = details(meta)?;
    let covered = remap::coverage(&manifest.proto, &meta.fragment_ids).fragments;
    let (mut indexed, mut unindexed) = (0, 0);
    for f in manifest.fragments() {
        if covered.contains(&f.id) {
            indexed += f.live_rows();
        } else {
            unindexed += f.live_rows();
        }
    }
    let columns = meta
        .field_ids
        .iter()
        .filter_map(|id| manifest.schema.field_ids.iter().position(|f| f == id))
        .map(|i| manifest.schema.arrow.field(i).name().clone())
        .collect();
    Ok(IndexInfo {
        name: meta.name.clone(),
        index_type: meta.index_type.clone(),
        columns,
        distance_type: d.distance_type,
        num_partitions: d.num_partitions,
        num_sub_vectors: d.num_sub_vectors,
        num_bits: d.num_bits,
        num_indexed_rows: indexed,
        num_unindexed_rows: unindexed,
    })
}

/// Every index of the checked-out version.
pub fn list_indices(table: &Table) -> Result<Vec<IndexInfo>> {
    let manifest = table.manifest();
    manifest
        .proto
        .indices
        .iter()
        .map(|m| info(&manifest, m))
        .collect()
}

/// One index of the checked-out version, by name.
pub fn index_stats(table: &Table, name: &str) -> Result<IndexInfo> {
    let manifest = table.manifest();
    let meta = manifest
        .proto
        .indices
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| index_not_found(&manifest, name))?;
    info(&manifest, meta)
}

fn index_not_found(manifest: &Manifest, name: &str) -> Error {
    let names: Vec<&str> = manifest
        .proto
        .indices
        .iter()
        .map(|i| i.name.as_str())
        .collect();
    Error::IndexNotFound(format!(
        "'{name}' (indexes: {})",
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    ))
}

/// Removes an index from the table (a new version; the file stays for older versions).
pub async fn drop_index(table: &Table, name: &str) -> Result<u64> {
    let manifest = table.writable_manifest()?;
    if !manifest.proto.indices.iter().any(|i| i.name == name) {
        return Err(index_not_found(&manifest, name));
    }
    table
        .commit_index_change(
            manifest,
            crate::table::IndexChange::Drop {
                name: name.to_string(),
            },
        )
        .await
}

/// Checks a manifest's entry for a vector index against the schema it is listed with: its
/// details decode and name a distance its kind supports, and it is on one vector column of
/// the length it describes (hamming: of bytes). So a search never meets an index that does
/// not fit its column. Entries of index types this build does not know are left alone.
pub(crate) fn check_entry(
    meta: &IndexMetadataProto,
    schema: &TableSchema,
) -> std::result::Result<(), String> {
    let Some(kind) = IndexKind::parse(&meta.index_type) else {
        return Ok(());
    };
    let d: VectorIndexDetailsProto = prost::Message::decode(meta.details.as_slice())
        .map_err(|e| format!("its details do not decode: {e}"))?;
    let distance: DistanceType = d
        .distance_type
        .parse()
        .map_err(|_| format!("unknown distance type '{}'", d.distance_type))?;
    let column = match meta.field_ids.as_slice() {
        [id] => schema.field_ids.iter().position(|f| f == id),
        _ => None,
    }
    .map(|i| schema.arrow.field(i))
    .ok_or("it is not on one column of the table")?;
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
        && (kind == IndexKind::IvfPq || item.data_type() != &DataType::UInt8)
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

/// The distance type an index was trained for.
pub(crate) fn index_distance(meta: &IndexMetadataProto) -> Result<DistanceType> {
    details(meta)?.distance_type.parse().map_err(|_| {
        Error::corrupt(
            format!("index '{}' in the manifest", meta.name),
            "unknown distance type",
        )
    })
}

/// The vector index used for `field_id` in `manifest`, if any.
pub(crate) fn vector_index_for(manifest: &Manifest, field_id: i32) -> Option<&IndexMetadataProto> {
    manifest
        .proto
        .indices
        .iter()
        .find(|i| i.field_ids == [field_id] && IndexKind::parse(&i.index_type).is_some())
}

/// The index behind `meta` as `manifest` sees it (row addresses moved by the compactions
/// since its build), through the connection's index cache.
pub(crate) async fn load(
    table: &Table,
    manifest: &Manifest,
    meta: &IndexMetadataProto,
) -> Result<Arc<IvfIndex>> {
    Ok(load_counted(table, manifest, meta).await?.0)
}

/// [`load`], also saying whether the index was read from storage (a cache miss).
pub(crate) async fn load_counted(
    table: &Table,
    manifest: &Manifest,
    meta: &IndexMetadataProto,
) -> Result<(Arc<IvfIndex>, bool)> {
    let inner = table.inner();
    let relative = format!("{INDICES_DIR}/{}/{INDEX_FILE}", meta.uuid);
    let coverage = remap::coverage(&manifest.proto, &meta.fragment_ids);
    let key = format!(
        "{}/{relative}{}",
        inner.storage.uri(),
        coverage.cache_suffix(&manifest.proto)
    );
    if let Some(index) = inner.session.index(&key) {
        return Ok((index, false));
    }
    let path = inner.storage.path(&relative);
    let bad = |why: String| Error::corrupt(&path, format!("vector index '{}': {why}", meta.name));
    // The manifest says what the file holds, so the file is no larger than that allows...
    let d = details(meta)?;
    let kind = IndexKind::parse(&meta.index_type)
        .ok_or_else(|| bad(format!("unknown index type '{}'", meta.index_type)))?;
    let distance = index_distance(meta)?;
    let limit = IvfIndex::max_file_size(
        kind,
        distance,
        u64::from(d.dim),
        u64::from(d.num_partitions),
        u64::from(d.num_sub_vectors),
        d.num_rows,
    )
    .ok_or_else(|| bad("its sizes in the manifest overflow".into()))?;
    let (bytes, _) = inner
        .storage
        .read_all_at_most(&path, limit, "vector index")
        .await?;
    let decode_path = path.clone();
    let mut index = tokio::task::spawn_blocking(move || IvfIndex::decode(&bytes, &decode_path))
        .await
        .map_err(|e| Error::Internal(format!("index load task failed: {e}")))??;
    // ...and holds exactly that, for the fragments it names.
    if index.kind != kind
        || index.distance != distance
        || index.dim != d.dim as usize
        || index.num_partitions() != d.num_partitions as usize
        || index.num_sub_vectors() != d.num_sub_vectors as usize
        || index.row_ids.len() as u64 != d.num_rows
    {
        return Err(bad(
            "the file does not match the manifest's description of it".into(),
        ));
    }
    let covered: HashSet<u64> = meta.fragment_ids.iter().copied().collect();
    if let Some(row) = index
        .row_ids
        .iter()
        .find(|&&r| !covered.contains(&(r >> 32)))
    {
        return Err(bad(format!(
            "it holds row {row} of fragment {}, which it does not cover",
            row >> 32
        )));
    }
    remap::translate(inner, &manifest.proto, &coverage, &mut index.row_ids).await?;
    let index = Arc::new(index);
    inner.session.insert_index(key, index.clone());
    Ok((index, true))
}

/// Default partitions: √rows, rounded (at least 1).
pub fn default_partitions(rows: u64) -> usize {
    ((rows as f64).sqrt().round() as usize).clamp(1, 65_536)
}

/// Default sub-vectors: one per 8 dimensions (the largest divisor of `dim` not above
/// `dim / 8`; 1 for short vectors).
pub fn default_sub_vectors(dim: usize) -> usize {
    let target = (dim / 8).max(1);
    (1..=target)
        .rev()
        .find(|m| dim.is_multiple_of(*m))
        .unwrap_or(1)
}

/// Trains and writes a vector index on `column` and commits it as a new version.
pub async fn create_index(
    table: &Table,
    column: &str,
    options: CreateIndexOptions,
) -> Result<IndexInfo> {
    let manifest = table.writable_manifest()?;
    let schema = manifest.schema.arrow.clone();
    let (column, element, dim) = resolve_column(&schema, Some(column))?;
    let params = &options.params;
    let distance = params.distance_type;
    match (params.kind, distance, &element) {
        (IndexKind::IvfPq, DistanceType::Hamming, _) => {
            return Err(Error::invalid(
                "IVF_PQ does not support hamming distance; use Index.ivfFlat({ distanceType: 'hamming' })",
            ))
        }
        (_, DistanceType::Hamming, arrow_schema::DataType::UInt8) => {}
        (_, DistanceType::Hamming, other) => {
            return Err(Error::invalid(format!(
                "hamming distance needs a uint8 vector column; '{column}' holds {other}"
            )))
        }
        _ => {}
    }
    if let Some(bits) = params.num_bits {
        if bits != 8 {
            return Err(Error::invalid(format!(
                "numBits must be 8 (got {bits}): codes are one byte per sub-vector"
            )));
        }
    }
    let field_id = manifest.schema.field_ids[manifest.schema.column_index(&column)?];
    let name = options
        .name
        .clone()
        .unwrap_or_else(|| format!("{column}_idx"));
    if name.is_empty() || name.len() > 128 {
        return Err(Error::invalid("an index name has 1 to 128 characters"));
    }
    let replaced: Vec<String> = manifest
        .proto
        .indices
        .iter()
        .filter(|i| i.name == name || i.field_ids == [field_id])
        .map(|i| i.name.clone())
        .collect();
    if !replaced.is_empty() && !options.replace {
        return Err(Error::invalid(format!(
            "column '{column}' already has an index ('{}'); pass replace: true to rebuild it",
            replaced.join("', '")
        )));
    }
    let rows = manifest.live_rows();
    if rows == 0 {
        return Err(Error::invalid(format!(
            "cannot train an index on '{column}': the table has no rows; add rows first"
        )));
    }
    let sdim = ivf::space_dim(dim, distance);
    let partitions = params
        .num_partitions
        .unwrap_or_else(|| default_partitions(rows));
    if partitions == 0 {
        return Err(Error::invalid("numPartitions must be at least 1"));
    }
    let partitions = partitions.min(rows as usize);
    let sub_vectors = match params.kind {
        IndexKind::IvfPq => {
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
        IndexKind::IvfFlat => 0,
    };
    let max_iterations = params.max_iterations.unwrap_or(50).max(1);
    let sample_rate = params.sample_rate.unwrap_or(256).max(1);
    let report = |phase: &'static str, done: u64, total: u64| {
        if let Some(p) = &options.progress {
            p(BuildProgress { phase, done, total });
        }
    };

    // 1. A uniform sample of the column (reservoir sampling over one scan).
    let sample_size = sample_rate.saturating_mul(partitions).min(rows as usize);
    let mut rng = StdRng::seed_from_u64(0x5155_4956_4552);
    let mut sample: Vec<f32> = Vec::with_capacity(sample_size * sdim);
    let mut seen = 0usize;
    let (mut space, mut kept) = (Vec::new(), Vec::new());
    let (_, mut stream) = table.scan_manifest(
        manifest.clone(),
        ScanOptions {
            columns: Some(vec![column.clone()]),
            ..Default::default()
        },
    )?;
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
        for row in space.chunks_exact(sdim) {
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
    }
    if sample.is_empty() {
        return Err(Error::invalid(format!(
            "cannot train an index on '{column}': every vector is null or holds NaN/infinity"
        )));
    }

    // 2. Centroids, then PQ codebooks on residuals (CPU work off the async workers).
    let kind = params.kind;
    let progress = options.progress.clone();
    let (centroids, quantizer) = tokio::task::spawn_blocking(move || {
        let report = |phase: &'static str, done: u64, total: u64| {
            if let Some(p) = &progress {
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
        let quantizer = (kind == IndexKind::IvfPq).then(|| {
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
        (model.centroids, quantizer)
    })
    .await
    .map_err(|e| Error::Internal(format!("index training failed: {e}")))?;
    // k-means trains at most one centroid per sampled (non-null, finite) vector.
    let partitions = centroids.len() / sdim;
    let centroids = Arc::new(centroids);
    let quantizer = quantizer.map(Arc::new);

    // 3. Assign and encode every row (a second scan).
    let covered: Vec<u64> = manifest.fragments().iter().map(|f| f.id).collect();
    let encoded = encode_rows(
        table,
        &manifest,
        &column,
        distance,
        kind,
        dim,
        centroids.clone(),
        quantizer.clone(),
        &report,
        rows,
    )
    .await?;
    let index = assemble(
        kind,
        distance,
        dim,
        (*centroids).clone(),
        quantizer.map(|q| (*q).clone()),
        partitions,
        encoded,
    );

    // 4. Write the file and commit.
    report("write", 0, 1);
    publish(
        table, manifest, &name, field_id, index, covered, replaced, None,
    )
    .await?;
    report("write", 1, 1);
    index_stats(table, &name)
}

/// Writes `index` as a new file and commits it under `name` (replacing `replaces`; with
/// `expected_uuid`, only if the index of that name is still that one).
#[allow(clippy::too_many_arguments)]
async fn publish(
    table: &Table,
    read: Arc<Manifest>,
    name: &str,
    field_id: i32,
    index: IvfIndex,
    covered: Vec<u64>,
    replaces: Vec<String>,
    expected_uuid: Option<String>,
) -> Result<u64> {
    let uuid = uuid::Uuid::new_v4().simple().to_string();
    let inner = table.inner();
    let relative = format!("{INDICES_DIR}/{uuid}/{INDEX_FILE}");
    let encoded = index.encode();
    let size_bytes = encoded.len() as u64;
    inner
        .storage
        .put(&inner.storage.path(&relative), encoded)
        .await?;
    let meta = IndexMetadataProto {
        size_bytes,
        uuid,
        name: name.to_string(),
        field_ids: vec![field_id],
        dataset_version: read.version(),
        fragment_ids: covered,
        index_type: index.kind.name().to_string(),
        details: prost::Message::encode_to_vec(&VectorIndexDetailsProto {
            distance_type: ivf::distance_name(index.distance).to_string(),
            num_partitions: index.num_partitions() as u32,
            num_sub_vectors: index.num_sub_vectors() as u32,
            num_bits: if index.kind == IndexKind::IvfPq { 8 } else { 0 },
            dim: index.dim as u32,
            num_rows: index.row_ids.len() as u64,
        }),
    };
    let key = format!("{}/{relative}", inner.storage.uri());
    inner.session.insert_index(key, Arc::new(index));
    table
        .commit_index_change(
            read,
            crate::table::IndexChange::Create {
                index: meta,
                replaces,
                expected_uuid,
            },
        )
        .await
}

/// What [`optimize_indices`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OptimizeStats {
    /// Indexes rewritten.
    pub indexes_optimized: u64,
    /// Rows newly added to an index.
    pub rows_added: u64,
    /// Entries of deleted rows removed from an index.
    pub rows_removed: u64,
    /// The version after the last change (the current one when nothing changed).
    pub version: u64,
}

/// Brings every vector index up to date without retraining: rows of fragments it does not
/// cover are assigned to the existing centroids and encoded with the existing codebooks, and
/// entries of deleted rows are dropped. One new version per index changed.
pub async fn optimize_indices(table: &Table) -> Result<OptimizeStats> {
    let mut stats = OptimizeStats {
        version: table.version(),
        ..Default::default()
    };
    let names: Vec<String> = table
        .writable_manifest()?
        .proto
        .indices
        .iter()
        .filter(|i| IndexKind::parse(&i.index_type).is_some())
        .map(|i| i.name.clone())
        .collect();
    for name in names {
        // Another writer (automatic maintenance, another process) may rewrite the same index
        // meanwhile: then this one starts over from the newer version.
        let Some(done) = table
            .retry_on_conflict(|| optimize_one(table, &name))
            .await?
        else {
            continue;
        };
        stats.version = done.version;
        stats.indexes_optimized += 1;
        stats.rows_added += done.rows_added;
        stats.rows_removed += done.rows_removed;
    }
    Ok(stats)
}

/// What rewriting one index did.
struct IndexRewrite {
    version: u64,
    rows_added: u64,
    rows_removed: u64,
}

/// Brings the index `name` up to date (`None`: nothing to do, or it is gone).
async fn optimize_one(table: &Table, name: &str) -> Result<Option<IndexRewrite>> {
    let manifest = table.writable_manifest()?;
    let Some(meta) = manifest
        .proto
        .indices
        .iter()
        .find(|i| i.name == name)
        .cloned()
    else {
        return Ok(None);
    };
    let Some(column) = meta
        .field_ids
        .first()
        .and_then(|id| manifest.schema.field_ids.iter().position(|f| f == id))
        .map(|i| manifest.schema.arrow.field(i).name().clone())
    else {
        return Ok(None);
    };
    let index = load(table, &manifest, &meta).await?;
    let coverage = remap::coverage(&manifest.proto, &meta.fragment_ids);
    let covered = coverage.fragments;
    let gate = live_gate(table, &manifest.with_fragments(|f| covered.contains(&f.id))).await?;
    let kept: Vec<usize> = (0..index.row_ids.len())
        .filter(|&i| gate.allows(index.row_ids[i]))
        .collect();
    let uncovered = manifest.with_fragments(|f| !covered.contains(&f.id));
    let removed = (index.row_ids.len() - kept.len()) as u64;
    // Rewriting also folds in the compaction maps the index is read through, so loads
    // stop translating and the maps can be pruned.
    if uncovered.fragments().is_empty() && removed == 0 && coverage.steps.is_empty() {
        return Ok(None);
    }
    let quantizer = match &index.payload {
        Payload::Pq { quantizer, .. } => Some(Arc::new(quantizer.clone())),
        _ => None,
    };
    let added = encode_rows(
        table,
        &uncovered,
        &column,
        index.distance,
        index.kind,
        index.dim,
        Arc::new(index.centroids.clone()),
        quantizer.clone(),
        &|_, _, _| {},
        uncovered.live_rows(),
    )
    .await?;
    let rows_added = added.row_ids.len() as u64;
    let merged = existing_rows(&index, &kept).append(added);
    let rebuilt = assemble(
        index.kind,
        index.distance,
        index.dim,
        index.centroids.clone(),
        quantizer.map(|q| (*q).clone()),
        index.num_partitions(),
        merged,
    );
    let all: Vec<u64> = manifest.fragments().iter().map(|f| f.id).collect();
    let version = publish(
        table,
        manifest,
        name,
        meta.field_ids[0],
        rebuilt,
        all,
        vec![],
        Some(meta.uuid.clone()),
    )
    .await?;
    Ok(Some(IndexRewrite {
        version,
        rows_added,
        rows_removed: removed,
    }))
}

/// The entries of `index` at positions `kept`, in the encoded (unsorted) form.
fn existing_rows(index: &IvfIndex, kept: &[usize]) -> Encoded {
    let mut partition_of = vec![0u32; index.row_ids.len()];
    for p in 0..index.num_partitions() {
        partition_of[index.offsets[p]..index.offsets[p + 1]].fill(p as u32);
    }
    let mut out = Encoded::default();
    for &i in kept {
        out.partitions.push(partition_of[i]);
        out.row_ids.push(index.row_ids[i]);
        match &index.payload {
            Payload::Pq { quantizer, codes } => {
                let m = quantizer.m;
                out.codes.extend_from_slice(&codes[i * m..(i + 1) * m]);
            }
            Payload::FlatBytes(bytes) => out
                .codes
                .extend_from_slice(&bytes[i * index.dim..(i + 1) * index.dim]),
            Payload::FlatF32(v) => out
                .vectors
                .extend_from_slice(&v[i * index.dim..(i + 1) * index.dim]),
        }
    }
    out
}

/// Live rows of `manifest`'s fragments, as a gate.
pub(crate) async fn live_gate(table: &Table, manifest: &Manifest) -> Result<RowGate> {
    let mut fragments = HashMap::new();
    for f in manifest.fragments() {
        let deleted = table.inner().deleted_rows(f).await?;
        fragments.insert(f.id, (f.physical_rows, deleted));
    }
    Ok(RowGate::Live(fragments))
}

/// Rows encoded for an index: partition, address and payload of each row.
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

#[allow(clippy::too_many_arguments)]
async fn encode_rows(
    table: &Table,
    manifest: &Arc<Manifest>,
    column: &str,
    distance: DistanceType,
    kind: IndexKind,
    dim: usize,
    centroids: Arc<Vec<f32>>,
    quantizer: Option<Arc<ProductQuantizer>>,
    report: &(dyn Fn(&'static str, u64, u64) + Sync),
    total: u64,
) -> Result<Encoded> {
    let sdim = ivf::space_dim(dim, distance);
    let (_, mut stream) = table.scan_manifest(
        manifest.clone(),
        ScanOptions {
            columns: Some(vec![column.to_string()]),
            with_row_id: true,
            ..Default::default()
        },
    )?;
    let mut out = Encoded::default();
    let mut done = 0u64;
    report("encode", 0, total);
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let batch_rows = batch.num_rows() as u64;
        let (centroids, quantizer) = (centroids.clone(), quantizer.clone());
        let part = tokio::task::spawn_blocking(move || -> Result<Encoded> {
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
            let n = row_ids.len();
            let mut assignment = vec![0u32; n];
            let mut distances = vec![0f32; n];
            kmeans::assign(&space, sdim, &centroids, &mut assignment, &mut distances);
            let codes = match &quantizer {
                Some(q) => {
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
                None => bytes,
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

/// Groups encoded rows by partition (a counting sort) into an index.
fn assemble(
    kind: IndexKind,
    distance: DistanceType,
    dim: usize,
    centroids: Vec<f32>,
    quantizer: Option<ProductQuantizer>,
    partitions: usize,
    encoded: Encoded,
) -> IvfIndex {
    debug_assert_eq!(
        partitions,
        centroids.len() / ivf::space_dim(dim, distance).max(1)
    );
    let mut offsets = vec![0usize; partitions + 1];
    for &p in &encoded.partitions {
        offsets[p as usize + 1] += 1;
    }
    for p in 0..partitions {
        offsets[p + 1] += offsets[p];
    }
    let n = encoded.row_ids.len();
    let width = match (&quantizer, distance) {
        (Some(q), _) => q.m,
        (None, DistanceType::Hamming) => dim,
        (None, _) => 0,
    };
    let mut next = offsets.clone();
    let mut row_ids = vec![0u64; n];
    let mut codes = vec![0u8; n * width];
    let vector_width = if width == 0 { dim } else { 0 };
    let mut vectors = vec![0f32; n * vector_width];
    for (i, &p) in encoded.partitions.iter().enumerate() {
        let slot = next[p as usize];
        next[p as usize] += 1;
        row_ids[slot] = encoded.row_ids[i];
        if width > 0 {
            codes[slot * width..(slot + 1) * width]
                .copy_from_slice(&encoded.codes[i * width..(i + 1) * width]);
        } else {
            vectors[slot * dim..(slot + 1) * dim]
                .copy_from_slice(&encoded.vectors[i * dim..(i + 1) * dim]);
        }
    }
    let payload = match quantizer {
        Some(quantizer) => Payload::Pq { quantizer, codes },
        None if distance == DistanceType::Hamming => Payload::FlatBytes(codes),
        None => Payload::FlatF32(vectors),
    };
    IvfIndex {
        kind,
        distance,
        dim,
        centroids,
        offsets,
        row_ids,
        payload,
    }
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
/// Returns them sorted, with the partitions probed.
pub(crate) fn search_partitions(
    index: &IvfIndex,
    query: &PreparedQuery,
    nprobes: usize,
    want: usize,
    gate: &RowGate,
    range: (Option<f32>, Option<f32>),
) -> Probed {
    // IVF_FLAT distances are exact, so a distance range can choose candidates; PQ distances
    // are approximate, so the range applies after refinement.
    let range = if index.kind == IndexKind::IvfFlat {
        range
    } else {
        (None, None)
    };
    let order = index.rank_partitions(query.space());
    let mut heap: BinaryHeap<Candidate> =
        BinaryHeap::with_capacity(want.min(crate::query::PREALLOCATE) + 1);
    let mut distances = Vec::new();
    let mut probed = 0;
    let mut comparisons = (index.offsets.len().saturating_sub(1)) as u64;
    for p in order {
        if probed >= nprobes.max(1) && heap.len() >= want {
            break;
        }
        probed += 1;
        index.partition_distances(p, query, &mut distances);
        let rows = &index.row_ids[index.offsets[p]..index.offsets[p + 1]];
        comparisons += rows.len() as u64;
        for (&distance, &row_id) in distances.iter().zip(rows) {
            if !crate::query::in_range(distance, range) {
                continue;
            }
            let candidate = Candidate { distance, row_id };
            if heap.len() >= want && heap.peek().is_some_and(|worst| candidate >= *worst) {
                continue;
            }
            if !gate.allows(row_id) {
                continue;
            }
            heap.push(candidate);
            if heap.len() > want {
                heap.pop();
            }
        }
    }
    Probed {
        candidates: heap.into_sorted_vec(),
        partitions: probed,
        comparisons,
    }
}

/// What [`search_partitions`] found and how much it compared.
pub(crate) struct Probed {
    /// Nearest first.
    pub candidates: Vec<Candidate>,
    pub partitions: usize,
    /// Query-to-centroid distances plus codes scored in the probed partitions.
    pub comparisons: u64,
}
