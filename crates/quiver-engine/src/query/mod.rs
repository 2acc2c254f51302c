//! Vector search execution: an indexed search over the fragments a vector index covers, merged
//! with an exact search over the rest, or an exact search over every live row; a SQL
//! prefilter (only matching rows are ranked) or postfilter; refinement of approximate
//! distances; and the final take of the returned columns.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float16Type, Float32Type, Float64Type, Int8Type, UInt64Type, UInt8Type};
use arrow_array::{Array, ArrayRef, FixedSizeListArray, Float32Array, RecordBatch, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use futures::StreamExt;

use crate::error::{Error, Result};
use crate::filter::FilterRef;
use crate::index::{self, IndexKind, RowGate};
use crate::linalg::{self, DistanceType};
use crate::table::manifest::Manifest;
use crate::table::{scan, ScanOptions, Table, ROW_ID};

/// Name of the distance column of search results.
pub const DISTANCE: &str = "_distance";

/// A nearest-neighbour search.
#[derive(Debug, Clone, Default)]
pub struct VectorSearch {
    /// The vector column; inferred when the table has exactly one.
    pub column: Option<String>,
    pub query: Vec<f64>,
    pub k: usize,
    /// `None`: the index's distance type when the column has an index (also when bypassing
    /// it), else l2. A type other than the index's makes the search exact.
    pub distance_type: Option<DistanceType>,
    /// Columns returned (all when `None`), plus `_distance`.
    pub columns: Option<Vec<String>>,
    pub with_row_id: bool,
    /// Keep only results with `lower <= distance < upper`.
    pub distance_range: (Option<f32>, Option<f32>),
    /// Only rows matching this filter are ranked (or, with `postfilter`, returned).
    pub filter: Option<FilterRef>,
    /// Rank every row first and filter the top `k` afterwards (may return fewer than `k`).
    pub postfilter: bool,
    /// Partitions an IVF index probes at least (default [`index::DEFAULT_NPROBES`]).
    pub nprobes: Option<usize>,
    /// Re-rank `k × refine_factor` index candidates by exact distance (default
    /// [`DEFAULT_REFINE_FACTOR`] for IVF_PQ; IVF_FLAT distances are exact already).
    pub refine_factor: Option<u32>,
    /// Search exactly even when the column has an index.
    pub bypass_index: bool,
}

/// Re-ranking factor of IVF_PQ searches that do not set one.
pub const DEFAULT_REFINE_FACTOR: u32 = 4;
/// A prefilter whose matches in the indexed fragments hold at most this many vector values
/// (1 MiB of f32) is answered by exact distances to those rows, read by take, instead of the
/// index: fewer reads than the refine step of an index search would need at that selectivity.
const SMALL_MATCH_VALUES: u64 = 1 << 18;

/// How a search ran.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchStats {
    /// The index used, if any.
    pub index: Option<String>,
    pub partitions_probed: usize,
    /// Rows whose distance was computed exactly (exact search, refinement).
    pub exact_rows: u64,
}

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

/// The vector column to search: the named one, or the only fixed-size-list column.
pub(crate) fn resolve_column(
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

/// The query in the forms the kernels take: f32 (float columns), f64 (float64 columns) and
/// bytes (hamming).
struct Query {
    f32: Vec<f32>,
    f64: Vec<f64>,
    bytes: Vec<u8>,
}

/// Distances from `query` to every vector of `vectors` into `out` (null vectors get NaN, which
/// the search skips). One kernel call per batch.
fn distances(
    vectors: &FixedSizeListArray,
    query: &Query,
    distance: DistanceType,
    converted: &mut Vec<f32>,
    out: &mut Vec<f32>,
) -> Result<()> {
    let kernels = linalg::kernels();
    let values = vectors.values();
    let dim = query.f32.len();
    let offset = vectors.offset() * dim;
    let len = vectors.len() * dim;
    out.clear();
    out.resize(vectors.len(), 0.0);
    match (values.data_type(), distance) {
        (DataType::UInt8, DistanceType::Hamming) => {
            let v = &values.as_primitive::<UInt8Type>().values()[offset..offset + len];
            kernels.hamming_rows(&query.bytes, v, out);
        }
        (_, DistanceType::Hamming) => {
            return Err(Error::invalid(
                "hamming distance needs a uint8 vector column",
            ));
        }
        (DataType::Float32, _) => {
            let v = &values.as_primitive::<Float32Type>().values()[offset..offset + len];
            kernels.distances_f32(distance, &query.f32, v, out);
        }
        (DataType::Float16, _) => {
            let v = &values.as_primitive::<Float16Type>().values()[offset..offset + len];
            kernels.distances_f16(distance, &query.f32, v, out);
        }
        (DataType::Float64, _) => {
            let v = &values.as_primitive::<Float64Type>().values()[offset..offset + len];
            kernels.distances_f64(distance, &query.f64, v, out);
        }
        (DataType::UInt8 | DataType::Int8, _) => {
            converted.clear();
            if values.data_type() == &DataType::UInt8 {
                let v = &values.as_primitive::<UInt8Type>().values()[offset..offset + len];
                converted.extend(v.iter().map(|&x| x as f32));
            } else {
                let v = &values.as_primitive::<Int8Type>().values()[offset..offset + len];
                converted.extend(v.iter().map(|&x| x as f32));
            }
            kernels.distances_f32(distance, &query.f32, converted, out);
        }
        (other, _) => return Err(Error::invalid(format!("cannot search vectors of {other}"))),
    }
    if let Some(nulls) = vectors.nulls() {
        for i in nulls
            .iter()
            .enumerate()
            .filter(|(_, valid)| !valid)
            .map(|(i, _)| i)
        {
            out[i] = f32::NAN;
        }
    }
    Ok(())
}

/// Checks the query vector against the column and returns it in the kernels' forms.
fn prepare_query(
    search: &VectorSearch,
    column: &str,
    element: &DataType,
    dim: usize,
    distance: DistanceType,
) -> Result<Query> {
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
    if distance == DistanceType::Hamming && element != &DataType::UInt8 {
        return Err(Error::invalid(format!(
            "hamming distance needs a uint8 vector column; '{column}' holds {element}"
        )));
    }
    let bytes: Vec<u8> = if distance == DistanceType::Hamming {
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
    Ok(Query {
        f32: search.query.iter().map(|&v| v as f32).collect(),
        f64: search.query.clone(),
        bytes,
    })
}

/// Keeps the `k` best candidates offered (a bounded max-heap).
struct TopK {
    k: usize,
    heap: BinaryHeap<Candidate>,
}

impl TopK {
    fn new(k: usize) -> Self {
        TopK {
            k,
            // `k` comes from the caller: reserve what is likely, grow if more is needed.
            heap: BinaryHeap::with_capacity(k.min(PREALLOCATE) + 1),
        }
    }

    #[inline]
    fn offer(&mut self, candidate: Candidate) {
        if self.heap.len() < self.k {
            self.heap.push(candidate);
        } else if self.heap.peek().is_some_and(|worst| candidate < *worst) {
            self.heap.pop();
            self.heap.push(candidate);
        }
    }

    fn into_sorted(self) -> Vec<Candidate> {
        self.heap.into_sorted_vec()
    }
}

pub(crate) fn in_range(distance: f32, (lower, upper): (Option<f32>, Option<f32>)) -> bool {
    !distance.is_nan()
        && !lower.is_some_and(|l| distance < l)
        && !upper.is_some_and(|u| distance >= u)
}

/// What an exact pass over some rows compares.
struct Exact {
    column: String,
    query: Query,
    distance: DistanceType,
    k: usize,
    range: (Option<f32>, Option<f32>),
}

/// Heap entries reserved up front (a huge `limit` must not allocate before rows are found).
pub(crate) const PREALLOCATE: usize = 4096;

/// Batches ranked at once on the rayon pool while the scan reads the next ones.
const RANK_IN_FLIGHT: usize = 4;

/// The `k` nearest rows of a batch of (vector, `_rowid`) columns.
fn rank_batch(batch: &RecordBatch, exact: &Exact) -> Result<Vec<Candidate>> {
    let mut top = TopK::new(exact.k);
    let (mut batch_distances, mut converted) = (Vec::new(), Vec::new());
    distances(
        batch.column(0).as_fixed_size_list(),
        &exact.query,
        exact.distance,
        &mut converted,
        &mut batch_distances,
    )?;
    let row_ids = batch.column(1).as_primitive::<UInt64Type>();
    for (&distance, &row_id) in batch_distances.iter().zip(row_ids.values()) {
        // NaN: a null vector, or one holding NaN; it cannot be ranked.
        if in_range(distance, exact.range) {
            top.offer(Candidate { distance, row_id });
        }
    }
    Ok(top.into_sorted())
}

/// Ranks `batch` on the rayon pool; a panic there becomes an error, not an abort.
fn rank_on_pool(
    batch: RecordBatch,
    exact: Arc<Exact>,
) -> tokio::sync::oneshot::Receiver<Result<Vec<Candidate>>> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let ranked =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rank_batch(&batch, &exact)))
                .unwrap_or_else(|_| Err(Error::Internal("ranking a batch panicked".into())));
        let _ = sender.send(ranked);
    });
    receiver
}

/// The `k` nearest live rows of `manifest` (optionally only those matching `prefilter`).
/// Fragments are split into one group per rayon thread, scanned concurrently; each group
/// streams its vector column and ranks batches on the rayon pool while reading ahead, so memory
/// is a few batches per group plus the heaps.
async fn exact_scan(
    table: &Table,
    manifest: Arc<Manifest>,
    exact: &Arc<Exact>,
    prefilter: Option<FilterRef>,
    stats: &mut SearchStats,
) -> Result<Vec<Candidate>> {
    let fragments = manifest.fragments().len();
    let groups = fragments.min(rayon::current_num_threads().max(1));
    let scans = (0..groups).map(|g| {
        let ids: std::collections::HashSet<u64> = manifest
            .fragments()
            .iter()
            .skip(g)
            .step_by(groups)
            .map(|f| f.id)
            .collect();
        scan_group(
            table,
            manifest.with_fragments(|f| ids.contains(&f.id)),
            exact,
            prefilter.clone(),
        )
    });
    let mut top = TopK::new(exact.k);
    for (best, rows) in futures::future::try_join_all(scans).await? {
        stats.exact_rows += rows;
        best.into_iter().for_each(|c| top.offer(c));
    }
    Ok(top.into_sorted())
}

/// One group of [`exact_scan`]: its best candidates and the rows it ranked.
async fn scan_group(
    table: &Table,
    manifest: Arc<Manifest>,
    exact: &Arc<Exact>,
    prefilter: Option<FilterRef>,
) -> Result<(Vec<Candidate>, u64)> {
    let (_, mut stream) = table.scan_manifest(
        manifest,
        ScanOptions {
            columns: Some(vec![exact.column.clone()]),
            with_row_id: true,
            filter: prefilter,
            ..Default::default()
        },
    )?;
    let mut top = TopK::new(exact.k);
    let mut rows = 0u64;
    let mut pending = std::collections::VecDeque::new();
    let merge = |top: &mut TopK, ranked: std::result::Result<Result<Vec<Candidate>>, _>| {
        ranked
            .map_err(|_| Error::Internal("a ranking task was dropped".into()))?
            .map(|best| best.into_iter().for_each(|c| top.offer(c)))
    };
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        rows += batch.num_rows() as u64;
        pending.push_back(rank_on_pool(batch, exact.clone()));
        if pending.len() >= RANK_IN_FLIGHT {
            if let Some(next) = pending.pop_front() {
                merge(&mut top, next.await)?;
            }
        }
    }
    for next in pending {
        merge(&mut top, next.await)?;
    }
    Ok((top.into_sorted(), rows))
}

/// Exact distances of the rows at `rows` (read by take), the `k` nearest kept.
async fn exact_at(
    table: &Table,
    manifest: &Manifest,
    rows: &[u64],
    exact: &Exact,
    stats: &mut SearchStats,
) -> Result<Vec<Candidate>> {
    let mut top = TopK::new(exact.k);
    let columns = [exact.column.clone()];
    for chunk in rows.chunks(scan::DEFAULT_BATCH_SIZE) {
        let batch = scan::take(table.inner(), manifest, chunk, Some(&columns), true).await?;
        stats.exact_rows += batch.num_rows() as u64;
        rank_batch(&batch, exact)?
            .into_iter()
            .for_each(|c| top.offer(c));
    }
    Ok(top.into_sorted())
}

/// Runs a search over the checked-out version. Results are sorted by distance (ties by row
/// address) and carry a `_distance` column.
pub async fn search(table: &Table, search: &VectorSearch) -> Result<RecordBatch> {
    Ok(search_with_stats(table, search).await?.0)
}

/// [`search`], also saying how it ran.
pub async fn search_with_stats(
    table: &Table,
    search: &VectorSearch,
) -> Result<(RecordBatch, SearchStats)> {
    let manifest = table.manifest();
    let schema = manifest.schema.arrow.clone();
    let (column, element, dim) = resolve_column(&schema, search.column.as_deref())?;
    let field_id = manifest.schema.field_ids[manifest.schema.column_index(&column)?];
    // The index's distance type is the default even when the search bypasses it, so an
    // exact search ranks the way the indexed one does.
    let index_meta = index::vector_index_for(&manifest, field_id);
    let index_distance = match index_meta {
        Some(meta) => Some(index::index_distance(meta)?),
        None => None,
    };
    let distance = search
        .distance_type
        .or(index_distance)
        .unwrap_or(DistanceType::L2);
    let query = prepare_query(search, &column, &element, dim, distance)?;
    let prefilter = search.filter.clone().filter(|_| !search.postfilter);
    let exact = Arc::new(Exact {
        column: column.clone(),
        query,
        distance,
        k: search.k,
        range: search.distance_range,
    });
    let mut stats = SearchStats::default();
    let usable = index_meta.filter(|_| !search.bypass_index && index_distance == Some(distance));
    let best = match usable {
        None => exact_scan(table, manifest.clone(), &exact, prefilter, &mut stats).await?,
        Some(meta) => {
            stats.index = Some(meta.name.clone());
            let covered: std::collections::HashSet<u64> =
                meta.fragment_ids.iter().copied().collect();
            // Usually every fragment is indexed: then the version is used as it is, uncopied.
            let all_covered = manifest.fragments().iter().all(|f| covered.contains(&f.id));
            let indexed = if all_covered {
                manifest.clone()
            } else {
                manifest.with_fragments(|f| covered.contains(&f.id))
            };
            let mut best = indexed_search(
                table, &indexed, meta, search, &exact, &prefilter, &mut stats,
            )
            .await?;
            if !all_covered {
                let rest = manifest.with_fragments(|f| !covered.contains(&f.id));
                best.extend(exact_scan(table, rest, &exact, prefilter, &mut stats).await?);
            }
            best.sort_unstable();
            best.truncate(search.k);
            best
        }
    };
    Ok((finish(table, &manifest, best, search).await?, stats))
}

/// The best candidates among the fragments of `indexed` (those the index covers).
async fn indexed_search(
    table: &Table,
    indexed: &Arc<Manifest>,
    meta: &crate::table::manifest::IndexMetadataProto,
    search: &VectorSearch,
    exact: &Arc<Exact>,
    prefilter: &Option<FilterRef>,
    stats: &mut SearchStats,
) -> Result<Vec<Candidate>> {
    if indexed.fragments().is_empty() || search.k == 0 {
        return Ok(Vec::new());
    }
    let index = index::load(table, meta).await?;
    if index.dim != exact.query.f32.len() || index.distance != exact.distance {
        return Err(Error::corrupt(
            format!("index '{}'", meta.name),
            "its vectors do not match the column it is listed for",
        ));
    }
    let gate = match prefilter {
        Some(filter) => {
            let matches = table.matching_rows(indexed, filter).await?;
            let matched: u64 = matches.values().map(|r| r.len()).sum();
            let dim = exact.query.f32.len().max(1) as u64;
            if matched.saturating_mul(dim) <= SMALL_MATCH_VALUES {
                // Few matches: their exact distances cost less than probing for them.
                let rows: Vec<u64> = matches
                    .iter()
                    .flat_map(|(&f, r)| r.iter().map(move |o| scan::row_address(f, o as u64)))
                    .collect();
                return exact_at(table, indexed, &rows, exact, stats).await;
            }
            RowGate::Only(matches.into_iter().collect())
        }
        None => index::live_gate(table, indexed).await?,
    };
    let refine = match (search.refine_factor, index.kind) {
        (Some(r), _) => Some(r.max(1) as usize),
        (None, IndexKind::IvfPq) => Some(DEFAULT_REFINE_FACTOR as usize),
        (None, IndexKind::IvfFlat) => None,
    };
    let want = search.k.saturating_mul(refine.unwrap_or(1));
    let nprobes = search.nprobes.unwrap_or(index::DEFAULT_NPROBES);
    let prepared = index.prepare(&exact.query.f32, &exact.query.bytes);
    // Inline: a probe is a few hundred microseconds of CPU, less than a hop to another thread
    // and back would add to every query.
    let (candidates, probed) =
        index::search_partitions(&index, &prepared, nprobes, want, &gate, exact.range);
    stats.partitions_probed += probed;
    match refine {
        Some(_) => {
            let rows: Vec<u64> = candidates.iter().map(|c| c.row_id).collect();
            exact_at(table, indexed, &rows, exact, stats).await
        }
        None => Ok(candidates
            .into_iter()
            .filter(|c| in_range(c.distance, exact.range))
            .take(exact.k)
            .collect()),
    }
}

/// Applies a postfilter to `best` and reads the returned columns.
async fn finish(
    table: &Table,
    manifest: &Manifest,
    mut best: Vec<Candidate>,
    search: &VectorSearch,
) -> Result<RecordBatch> {
    if let Some(filter) = search.filter.as_ref().filter(|_| search.postfilter) {
        let ids: Vec<u64> = best.iter().map(|c| c.row_id).collect();
        let mut keep = table.rows_matching(&ids, filter).await?.into_iter();
        best.retain(|_| keep.next().unwrap_or(false));
    }
    let ids: Vec<u64> = best.iter().map(|c| c.row_id).collect();
    // `_distance` is always returned; naming it in the projection (as LanceDB users do) is fine.
    let columns: Option<Vec<String>> = search
        .columns
        .as_ref()
        .map(|c| c.iter().filter(|n| *n != DISTANCE).cloned().collect());
    let rows = scan::take(
        table.inner(),
        manifest,
        &ids,
        columns.as_deref(),
        search.with_row_id,
    )
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
