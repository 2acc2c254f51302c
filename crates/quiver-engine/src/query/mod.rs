//! Vector search execution: an indexed search over the fragments a vector index covers, merged
//! with an exact search over the rest, or an exact search over every live row; a SQL
//! prefilter (only matching rows are ranked) or postfilter; refinement of approximate
//! distances; and the final take of the returned columns.

use std::collections::BinaryHeap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float16Type, Float32Type, Float64Type, Int8Type, UInt64Type, UInt8Type};
use arrow_array::{Array, ArrayRef, FixedSizeListArray, Float32Array, RecordBatch, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use futures::StreamExt;

use crate::error::{Error, Result};
use crate::filter::FilterRef;
use crate::index::calibrate::{Calibration, CalibrationPoint};
use crate::index::vector::{search_partitions, RowGate};
use crate::index::{self, IndexKind};
use crate::linalg::{self, DistanceType};
use crate::plan::{PlanNode, Probe};
use crate::table::indices;
use crate::table::manifest::Manifest;
use crate::table::{scan, ScanOptions, Table};
use crate::vocab::{in_range, resolve_vector_column, Candidate, PREALLOCATE, ROW_ID};

pub mod text;

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
    /// Partitions an IVF index probes at least (default: the index's calibrated setting, or
    /// [`index::DEFAULT_NPROBES`] for an index built without calibration).
    pub nprobes: Option<usize>,
    /// Re-rank `k × refine_factor` index candidates by exact distance (default
    /// [`DEFAULT_REFINE_FACTOR`] for IVF_PQ; IVF_FLAT distances are exact already).
    pub refine_factor: Option<u32>,
    /// Graph indexes: the candidate list of a search (default: the index's calibrated
    /// setting, or [`index::vector::DEFAULT_EF`]); no effect on IVF_PQ / IVF_FLAT.
    pub ef: Option<usize>,
    /// Search exactly even when the column has an index.
    pub bypass_index: bool,
    /// Recall the index's calibrated settings should reach (default: the target it was
    /// built for); explicit `nprobes` / `refine_factor` win over it.
    pub target_recall: Option<f32>,
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

/// The query in the forms the kernels take: f32 (float columns), f64 (float64 columns) and
/// bytes (hamming).
struct Query {
    f32: Vec<f32>,
    f64: Vec<f64>,
    bytes: Vec<u8>,
}

/// The values of a run of vectors, typed.
#[derive(Clone, Copy)]
enum VectorValues<'a> {
    F32(&'a [f32]),
    F16(&'a [half::f16]),
    F64(&'a [f64]),
    U8(&'a [u8]),
    I8(&'a [i8]),
}

impl<'a> VectorValues<'a> {
    /// `bytes` read as `element`s; `None` when they are not aligned for that type.
    fn of_bytes(element: &DataType, bytes: &'a [u8]) -> Result<Option<Self>> {
        use zerocopy::FromBytes;
        Ok(match element {
            DataType::Float32 => <[f32]>::ref_from_bytes(bytes).ok().map(VectorValues::F32),
            DataType::Float16 => <[half::f16]>::ref_from_bytes(bytes)
                .ok()
                .map(VectorValues::F16),
            DataType::Float64 => <[f64]>::ref_from_bytes(bytes).ok().map(VectorValues::F64),
            DataType::UInt8 => Some(VectorValues::U8(bytes)),
            DataType::Int8 => <[i8]>::ref_from_bytes(bytes).ok().map(VectorValues::I8),
            other => return Err(Error::invalid(format!("cannot search vectors of {other}"))),
        })
    }

    /// The values of every vector of `vectors`.
    fn of_array(vectors: &'a FixedSizeListArray, dim: usize) -> Result<Self> {
        let values = vectors.values();
        let range = vectors.offset() * dim..(vectors.offset() + vectors.len()) * dim;
        Ok(match values.data_type() {
            DataType::Float32 => {
                VectorValues::F32(&values.as_primitive::<Float32Type>().values()[range])
            }
            DataType::Float16 => {
                VectorValues::F16(&values.as_primitive::<Float16Type>().values()[range])
            }
            DataType::Float64 => {
                VectorValues::F64(&values.as_primitive::<Float64Type>().values()[range])
            }
            DataType::UInt8 => {
                VectorValues::U8(&values.as_primitive::<UInt8Type>().values()[range])
            }
            DataType::Int8 => VectorValues::I8(&values.as_primitive::<Int8Type>().values()[range]),
            other => return Err(Error::invalid(format!("cannot search vectors of {other}"))),
        })
    }
}

/// Distances from `query` to every vector of `values` into `out` (resized to one per vector).
/// One kernel call per run.
fn distances_of(
    values: VectorValues<'_>,
    query: &Query,
    distance: DistanceType,
    converted: &mut Vec<f32>,
    out: &mut Vec<f32>,
) -> Result<()> {
    let kernels = linalg::kernels();
    let dim = query.f32.len().max(1);
    let len = match values {
        VectorValues::F32(v) => v.len(),
        VectorValues::F16(v) => v.len(),
        VectorValues::F64(v) => v.len(),
        VectorValues::U8(v) => v.len(),
        VectorValues::I8(v) => v.len(),
    };
    out.clear();
    out.resize(len / dim, 0.0);
    match (values, distance) {
        (VectorValues::U8(v), DistanceType::Hamming) => kernels.hamming_rows(&query.bytes, v, out),
        (_, DistanceType::Hamming) => {
            return Err(Error::invalid(
                "hamming distance needs a uint8 vector column",
            ));
        }
        (VectorValues::F32(v), _) => kernels.distances_f32(distance, &query.f32, v, out),
        (VectorValues::F16(v), _) => kernels.distances_f16(distance, &query.f32, v, out),
        (VectorValues::F64(v), _) => kernels.distances_f64(distance, &query.f64, v, out),
        (VectorValues::U8(v), _) => {
            converted.clear();
            converted.extend(v.iter().map(|&x| x as f32));
            kernels.distances_f32(distance, &query.f32, converted, out);
        }
        (VectorValues::I8(v), _) => {
            converted.clear();
            converted.extend(v.iter().map(|&x| x as f32));
            kernels.distances_f32(distance, &query.f32, converted, out);
        }
    }
    Ok(())
}

/// Distances from `query` to every vector of `vectors` into `out` (null vectors get NaN, which
/// the search skips).
fn distances(
    vectors: &FixedSizeListArray,
    query: &Query,
    distance: DistanceType,
    converted: &mut Vec<f32>,
    out: &mut Vec<f32>,
) -> Result<()> {
    let values = VectorValues::of_array(vectors, query.f32.len())?;
    distances_of(values, query, distance, converted, out)?;
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

    /// Whether a candidate at `distance` could enter (ties are settled by [`TopK::offer`]).
    #[inline]
    fn admits(&self, distance: f32) -> bool {
        self.heap.len() < self.k || self.heap.peek().is_some_and(|w| distance <= w.distance)
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

/// What an exact pass over some rows compares.
struct Exact {
    column: String,
    query: Query,
    distance: DistanceType,
    k: usize,
    range: (Option<f32>, Option<f32>),
}

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
///
/// On a local store the vector column is streamed page by page from its files on every core
/// at once ([`rank_pages_on_pool`]); a prefilter is evaluated first and only pages holding
/// matches are read (only the matching rows, by take, when they are few). On other stores
/// fragments are split into one group per rayon thread, scanned concurrently; each group
/// streams its vector column and ranks batches on the rayon pool while reading ahead. Either
/// way memory is a few buffers per thread plus the heaps, not the table.
async fn exact_scan(
    table: &Table,
    manifest: Arc<Manifest>,
    exact: &Arc<Exact>,
    prefilter: Option<FilterRef>,
    stats: &mut SearchStats,
) -> Result<Vec<Candidate>> {
    if let Some(sources) = local_sources(table, &manifest, exact).await? {
        let mut matches = match &prefilter {
            Some(filter) => Some(table.matching_rows(&manifest, filter).await?),
            None => None,
        };
        if let Some(rows) = matches.as_ref().and_then(|m| few_matches(m, exact)) {
            // Reading just them costs less than streaming their pages.
            return exact_at(table, &manifest, &rows, exact, stats).await;
        }
        let mut pages = Vec::new();
        for mut source in sources {
            if let Some(found) = &mut matches {
                match found.remove(&source.id) {
                    Some(rows) => source.eligible = Eligible::Only(rows),
                    None => continue,
                }
            }
            let source = Arc::new(source);
            let column = source
                .reader
                .metadata()
                .column(source.field_id, source.reader.path())?;
            for (page, rows) in column.row_starts.windows(2).enumerate() {
                if source.eligible.count_in(rows[0], rows[1]) > 0 {
                    pages.push((source.clone(), page));
                }
            }
        }
        let (best, rows) = rank_pages_on_pool(pages, exact.clone()).await?;
        stats.exact_rows += rows;
        return Ok(best);
    }
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

/// Bytes of vectors read and ranked at a time by the streamed exact search: small enough that
/// a run stays in a core's L2 cache from the read through the checksum to the distances.
const STREAM_RUN_BYTES: usize = 256 * 1024;

/// The row addresses of `matches` (live rows matching a prefilter, per fragment) when they hold
/// at most [`SMALL_MATCH_VALUES`] vector values: few enough to read by one coalesced take.
fn few_matches(
    matches: &std::collections::BTreeMap<u64, roaring::RoaringBitmap>,
    exact: &Exact,
) -> Option<Vec<u64>> {
    let matched: u64 = matches.values().map(|r| r.len()).sum();
    let dim = exact.query.f32.len().max(1) as u64;
    (matched.saturating_mul(dim) <= SMALL_MATCH_VALUES).then(|| {
        matches
            .iter()
            .flat_map(|(&f, r)| r.iter().map(move |o| scan::row_address(f, o as u64)))
            .collect()
    })
}

/// The rows of a streamed fragment that may be ranked.
enum Eligible {
    /// Every row but the deleted ones.
    Live(Option<Arc<roaring::RoaringBitmap>>),
    /// Only these (live rows matching a prefilter).
    Only(roaring::RoaringBitmap),
}

impl Eligible {
    #[inline]
    fn allows(&self, offset: u64) -> bool {
        match self {
            Eligible::Live(None) => true,
            Eligible::Live(Some(deleted)) => !deleted.contains(offset as u32),
            Eligible::Only(rows) => rows.contains(offset as u32),
        }
    }

    /// Eligible rows among offsets `start..end`.
    fn count_in(&self, start: u64, end: u64) -> u64 {
        if start >= end {
            return 0;
        }
        let range = start as u32..=(end - 1) as u32;
        match self {
            Eligible::Live(None) => end - start,
            Eligible::Live(Some(deleted)) => end - start - deleted.range_cardinality(range),
            Eligible::Only(rows) => rows.range_cardinality(range),
        }
    }
}

/// A fragment whose vector column is streamed from a local file.
struct StreamedFragment {
    id: u64,
    field_id: i32,
    reader: crate::format::reader::FileReader,
    file: crate::storage::SyncFile,
    eligible: Eligible,
}

/// Every fragment of `manifest` with its vector column's file open for streaming (live rows
/// eligible), when all can be streamed from local files; `None` otherwise (other stores, or
/// files that store the column as another type than the schema says).
async fn local_sources(
    table: &Table,
    manifest: &Manifest,
    exact: &Exact,
) -> Result<Option<Vec<StreamedFragment>>> {
    let schema = &manifest.schema;
    let index = schema.column_index(&exact.column)?;
    let field_id = schema.field_ids[index];
    let wanted = schema.arrow.field(index).data_type();
    let mut sources = Vec::with_capacity(manifest.fragments().len());
    for fragment in manifest.fragments() {
        let reader = scan::fragment_reader(table.inner(), fragment, field_id).await?;
        let column = reader.metadata().column(field_id, reader.path())?;
        let same_type = match (&column.data_type, wanted) {
            (DataType::FixedSizeList(a, da), DataType::FixedSizeList(b, db)) => {
                da == db && a.data_type() == b.data_type()
            }
            _ => false,
        };
        let Some(file) = table.inner().storage.sync_file(reader.path())? else {
            return Ok(None);
        };
        if !same_type {
            return Ok(None);
        }
        let deleted = table.inner().deleted_rows(fragment).await?;
        sources.push(StreamedFragment {
            id: fragment.id,
            field_id,
            reader,
            file,
            eligible: Eligible::Live(deleted),
        });
    }
    Ok(Some(sources))
}

/// Ranks every page of `pages` on the rayon pool, all cores at once: its best candidates and
/// the live rows it ranked. A panic there becomes an error, not an abort.
async fn rank_pages_on_pool(
    pages: Vec<(Arc<StreamedFragment>, usize)>,
    exact: Arc<Exact>,
) -> Result<(Vec<Candidate>, u64)> {
    use rayon::prelude::*;
    let (sender, receiver) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let ranked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pages
                .par_iter()
                .map_init(PageScratch::default, |scratch, (fragment, page)| {
                    rank_page(fragment, *page, &exact, scratch)
                })
                .try_reduce(
                    || (TopK::new(exact.k), 0),
                    |(mut a, rows_a), (b, rows_b)| {
                        b.heap.into_iter().for_each(|c| a.offer(c));
                        Ok((a, rows_a + rows_b))
                    },
                )
                .map(|(top, rows)| (top.into_sorted(), rows))
        }))
        .unwrap_or_else(|_| Err(Error::Internal("ranking pages panicked".into())));
        let _ = sender.send(ranked);
    });
    receiver
        .await
        .map_err(|_| Error::Internal("a ranking task was dropped".into()))?
}

/// Buffers a rayon worker reuses from page to page.
#[derive(Default)]
struct PageScratch {
    run: arrow_buffer::MutableBuffer,
    /// An aligned copy of a mapped run whose bytes are not aligned for its element type.
    aligned: arrow_buffer::MutableBuffer,
    distances: Vec<f32>,
    converted: Vec<f32>,
}

/// The best eligible rows of one page of a streamed fragment, and how many it holds.
fn rank_page(
    fragment: &StreamedFragment,
    page: usize,
    exact: &Exact,
    scratch: &mut PageScratch,
) -> Result<(TopK, u64)> {
    let reader = &fragment.reader;
    let column = reader.metadata().column(fragment.field_id, reader.path())?;
    let (DataType::FixedSizeList(item, _), Some(&page_start), Some(&page_end)) = (
        &column.data_type,
        column.row_starts.get(page),
        column.row_starts.get(page + 1),
    ) else {
        return Err(Error::Internal("streamed page is not a vector page".into()));
    };
    let mut top = TopK::new(exact.k);
    let PageScratch {
        run,
        aligned,
        distances: out,
        converted,
    } = scratch;
    let mut offer = |first: u64, out: &[f32]| {
        for (i, &distance) in out.iter().enumerate() {
            // NaN: a null vector, or one holding NaN; it cannot be ranked.
            if !in_range(distance, exact.range) || !top.admits(distance) {
                continue;
            }
            let offset = page_start + first + i as u64;
            if !fragment.eligible.allows(offset) {
                continue;
            }
            top.offer(Candidate {
                distance,
                row_id: scan::row_address(fragment.id, offset),
            });
        }
    };
    let streamed = reader.stream_vector_page(
        &fragment.file,
        fragment.field_id,
        page,
        STREAM_RUN_BYTES,
        run,
        |first, _, bytes| {
            let values = match VectorValues::of_bytes(item.data_type(), bytes)? {
                Some(values) => values,
                None => {
                    aligned.clear();
                    aligned.extend_from_slice(bytes);
                    VectorValues::of_bytes(item.data_type(), aligned.as_slice())?.ok_or_else(
                        || Error::Internal("an aligned copy of vectors is misaligned".into()),
                    )?
                }
            };
            distances_of(values, &exact.query, exact.distance, converted, out)?;
            offer(first, out);
            Ok(())
        },
    )?;
    if !streamed {
        let array = reader.read_page_sync(&fragment.file, fragment.field_id, page)?;
        distances(
            array.as_fixed_size_list(),
            &exact.query,
            exact.distance,
            converted,
            out,
        )?;
        offer(0, out);
    }
    Ok((top, fragment.eligible.count_in(page_start, page_end)))
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
    Ok(run(table, search, false).await?.0)
}

/// [`search`], also saying how it ran.
pub async fn search_with_stats(
    table: &Table,
    search: &VectorSearch,
) -> Result<(RecordBatch, SearchStats)> {
    let (batch, stats, _) = run(table, search, false).await?;
    Ok((batch, stats))
}

/// Runs a search and returns the plan it ran, each operator with the figures it measured
/// (I/O, index loads, comparisons, rows, time), counted for this search alone.
pub async fn analyze_search(
    table: &Table,
    search: &VectorSearch,
) -> Result<(RecordBatch, PlanNode)> {
    let (batch, _, plan) = run(table, search, true).await?;
    Ok((batch, plan))
}

/// The plan a search would run, without running it (the one decision made at run time — a
/// prefilter matching few rows ranks them exactly instead of probing the index — is noted).
pub fn explain_search(table: &Table, search: &VectorSearch) -> Result<PlanNode> {
    let r = resolve(table, search)?;
    let mut inputs = Vec::new();
    match &r.index {
        Some(used) => {
            let mut probe = index_node(used, search, r.indexed_fragments(), r.prefilter.is_some());
            if let Some(filter) = &r.prefilter {
                probe = probe.child(prefilter_node(filter, used.meta.fragment_ids.len()));
            }
            inputs.push(match used.settings.refine {
                Some(factor) => refine_node(factor, search.k).child(probe),
                None => probe,
            });
            let rest = r.manifest.fragments().len() - r.indexed_fragments();
            if rest > 0 {
                inputs.push(exact_node(&r, rest, "not covered by the index"));
            }
        }
        None => inputs.push(exact_node(
            &r,
            r.manifest.fragments().len(),
            &r.exact_reason,
        )),
    }
    Ok(output_nodes(&r, search, inputs))
}

/// A search's decisions, made once from the version and the request.
struct Resolved {
    manifest: Arc<Manifest>,
    exact: Arc<Exact>,
    prefilter: Option<FilterRef>,
    /// The index that answers for the fragments it covers.
    index: Option<UsedIndex>,
    /// Why the search is exact (when it is).
    exact_reason: String,
}

struct UsedIndex {
    meta: crate::table::manifest::IndexMetadataProto,
    settings: Settings,
    covered: std::collections::HashSet<u64>,
    /// Every fragment of the version is covered: the version is searched through the index
    /// uncopied.
    all_covered: bool,
}

impl Resolved {
    fn indexed_fragments(&self) -> usize {
        match &self.index {
            Some(used) => self
                .manifest
                .fragments()
                .iter()
                .filter(|f| used.covered.contains(&f.id))
                .count(),
            None => 0,
        }
    }
}

fn resolve(table: &Table, search: &VectorSearch) -> Result<Resolved> {
    let manifest = table.manifest();
    let schema = manifest.schema.arrow.clone();
    let (column, element, dim) = resolve_vector_column(&schema, search.column.as_deref())?;
    let field_id = manifest.schema.field_ids[manifest.schema.column_index(&column)?];
    // The index's distance type is the default even when the search bypasses it, so an
    // exact search ranks the way the indexed one does.
    let index_meta = indices::vector_index_for(&manifest, field_id);
    let index_distance = match index_meta {
        Some(meta) => Some(indices::index_distance(meta)?),
        None => None,
    };
    let distance = search
        .distance_type
        .or(index_distance)
        .unwrap_or(DistanceType::L2);
    let query = prepare_query(search, &column, &element, dim, distance)?;
    let prefilter = search.filter.clone().filter(|_| !search.postfilter);
    let exact = Arc::new(Exact {
        column,
        query,
        distance,
        k: search.k,
        range: search.distance_range,
    });
    let mut exact_reason = match (index_meta, search.bypass_index) {
        (None, _) => "no vector index on the column".to_string(),
        (Some(_), true) => "index bypassed".to_string(),
        (Some(meta), false) => format!(
            "index '{}' ranks by {}, not {}",
            meta.name,
            index_distance.map_or("?".to_string(), |d| d.to_string()),
            distance
        ),
    };
    let index = match index_meta {
        Some(meta) if !search.bypass_index && index_distance == Some(distance) => {
            let covered =
                crate::table::remap::coverage(&manifest.proto, &meta.fragment_ids).fragments;
            let all_covered = manifest.fragments().iter().all(|f| covered.contains(&f.id));
            let kind = IndexKind::parse(&meta.index_type).ok_or_else(|| {
                Error::corrupt(
                    format!("index '{}'", meta.name),
                    format!("unknown index type '{}'", meta.index_type),
                )
            })?;
            let settings = settings_of(search, kind, &meta.details)?;
            if let Some(why) = settings.exact {
                exact_reason = why;
                None
            } else {
                Some(UsedIndex {
                    meta: meta.clone(),
                    settings,
                    covered,
                    all_covered,
                })
            }
        }
        _ => None,
    };
    Ok(Resolved {
        manifest,
        exact,
        prefilter,
        index,
        exact_reason,
    })
}

/// Partitions a prefiltered search probes: the filter's true neighbours lie farther out than
/// the unfiltered ones, the more so the fewer rows it keeps, so the probe count grows as the
/// filter narrows (and the search still goes on until `k` rows pass it).
fn widened_nprobes(
    nprobes: usize,
    matches: &std::collections::HashMap<u64, roaring::RoaringBitmap>,
    rows: usize,
    partitions: usize,
) -> usize {
    let matched: u64 = matches.values().map(|b| b.len()).sum();
    if rows == 0 || matched == 0 {
        return nprobes;
    }
    let share = (matched as f64 / rows as f64).min(1.0);
    // By the square root of the inverse share: on a 10% filter, recall@10 0.983 (clustered)
    // and 0.959 (pydocs) against 0.922 / 0.950 probing nprobes, for 1.5× the time; the full
    // inverse reached 0.994 / 0.965 for 3× (ARCHITECTURE.md §10, "Calibration").
    let widened = (nprobes as f64 / share.sqrt()).ceil() as usize;
    widened.clamp(nprobes, partitions.max(nprobes))
}

/// How a search runs an index.
struct Settings {
    nprobes: usize,
    refine: Option<usize>,
    /// Graph indexes: the search's candidate list.
    ef: Option<usize>,
    /// The calibrated setting the defaults came from, if any.
    calibrated: Option<CalibrationPoint>,
    /// Why calibration chose exact search over the index (no explicit setting given).
    exact: Option<String>,
}

/// The settings a search runs an index with: explicit ones, else the calibrated setting for
/// the search's target recall (or the index's), else the fixed defaults.
fn settings_of(search: &VectorSearch, kind: IndexKind, details: &[u8]) -> Result<Settings> {
    if let Some(target) = search.target_recall {
        if !(target > 0.0 && target <= 1.0) {
            return Err(Error::invalid(format!(
                "targetRecall must be in (0, 1] (got {target})"
            )));
        }
    }
    let calibration = index::vector::decode_details(details)?
        .calibration
        .as_ref()
        .and_then(Calibration::from_proto);
    let target = calibration
        .as_ref()
        .map(|c| search.target_recall.unwrap_or(c.target_recall));
    let mut point = calibration
        .as_ref()
        .zip(target)
        .and_then(|(c, target)| c.pick(target))
        .copied();
    let explicit = search.nprobes.is_some()
        || (kind != IndexKind::IvfFlat && search.refine_factor.is_some())
        || (kind.is_graph() && search.ef.is_some());
    let mut exact = None;
    if let (Some(p), Some(c), Some(target)) = (point, calibration.as_ref(), target) {
        if p.is_exact() {
            let reaching = c.cheapest_index_setting(target).copied();
            let best = c.best_index_setting().copied();
            if !explicit {
                exact = Some(match reaching {
                    Some(r) => format!(
                        "calibrated: a scan (estimated {:.0} µs) costs no more than the cheapest setting of the index reaching recall@{} {target} on the build's sample (estimated {:.0} µs); the exact answer instead",
                        p.cost_us,
                        index::calibrate::CALIBRATION_K,
                        r.cost_us,
                    ),
                    None => format!(
                        "calibrated: no setting of the index reached recall@{} {target} on the build's sample (best {:.3}); the exact answer instead",
                        index::calibrate::CALIBRATION_K,
                        best.map_or(0.0, |b| b.recall),
                    ),
                });
            }
            // Settings a search leaves out come from the setting reaching the target, else
            // the index's best.
            point = reaching.or(best);
        }
    }
    let nprobes = search
        .nprobes
        .or(point.map(|p| p.nprobes as usize))
        .unwrap_or(index::DEFAULT_NPROBES);
    let refine = match (search.refine_factor, kind) {
        (Some(r), _) => Some(r.max(1) as usize),
        (None, IndexKind::IvfPq | IndexKind::IvfRq) => Some(
            point
                .map_or(DEFAULT_REFINE_FACTOR, |p| p.refine.max(1))
                .max(1) as usize,
        ),
        (None, IndexKind::IvfHnswSq | IndexKind::IvfHnswPq) => {
            Some(point.map_or(1, |p| p.refine.max(1)) as usize)
        }
        (None, IndexKind::IvfFlat) => None,
    };
    let ef = kind.is_graph().then(|| {
        search
            .ef
            .or(point.map(|p| p.ef as usize))
            .unwrap_or(index::vector::DEFAULT_EF)
    });
    // The estimate holds only for the calibrated setting itself, not for one partly overridden.
    let used = point.filter(|_| !explicit);
    Ok(Settings {
        nprobes,
        refine,
        ef,
        calibrated: used,
        exact,
    })
}

fn index_node(
    used: &UsedIndex,
    search: &VectorSearch,
    fragments: usize,
    filtered: bool,
) -> PlanNode {
    let nprobes = used.settings.nprobes;
    let want = search.k.saturating_mul(used.settings.refine.unwrap_or(1));
    let mut node = PlanNode::new("IndexSearch")
        .with("index", &used.meta.name)
        .with("type", &used.meta.index_type)
        .with(
            "distance",
            indices::index_distance(&used.meta).map_or("?".into(), |d| d.to_string()),
        )
        .with("nprobes", nprobes)
        .with("candidates", want);
    match used.settings.ef {
        Some(0) => node = node.with("ef", "all (every code of the probed partitions)"),
        Some(ef) => node = node.with("ef", ef),
        None => {}
    }
    if let Some(point) = used.settings.calibrated {
        node = node.with(
            "calibrated",
            format!(
                "estimated recall@{} {:.3}",
                index::calibrate::CALIBRATION_K,
                point.recall
            ),
        );
    }
    let mut node = node
        .with("fragments", fragments)
        .with_verbose(
            "probing",
            "nearest partitions first; more than nprobes while fewer candidates pass the row gate",
        )
        .with_verbose(
            "row_gate",
            if filtered {
                "prefilter matches"
            } else {
                "live rows (deletion vectors)"
            },
        );
    if filtered {
        node = node.with_verbose(
            "few_matches",
            format!(
                "matches holding at most {SMALL_MATCH_VALUES} vector values are ranked exactly by take instead"
            ),
        );
    }
    node
}

fn prefilter_node(filter: &FilterRef, fragments: usize) -> PlanNode {
    PlanNode::new("Prefilter")
        .with("filter", filter.text())
        .with("fragments", fragments)
        .with_verbose(
            "reads",
            format!(
                "columns [{}], pages pruned by statistics",
                filter.stored_columns().join(", ")
            ),
        )
}

fn refine_node(factor: usize, k: usize) -> PlanNode {
    PlanNode::new("Refine")
        .with("factor", factor)
        .with("candidates", k.saturating_mul(factor))
        .with_verbose(
            "reads",
            "the candidates' vectors by one coalesced take; exact distances",
        )
}

fn exact_node(r: &Resolved, fragments: usize, why: &str) -> PlanNode {
    let mut node = PlanNode::new("ExactSearch")
        .with("column", &r.exact.column)
        .with("distance", r.exact.distance)
        .with("fragments", fragments)
        .with("reason", format!("({why})"));
    if let Some(filter) = &r.prefilter {
        node = node.with("prefilter", filter.text());
    }
    node.with_verbose(
        "reads",
        "vector pages streamed on every core (local stores) or scanned in batches; a prefilter is evaluated first",
    )
}

/// The operators after candidate search: the top k, an optional postfilter, and the take of
/// the returned columns.
fn output_nodes(r: &Resolved, search: &VectorSearch, inputs: Vec<PlanNode>) -> PlanNode {
    let mut top = PlanNode::new("TopK")
        .with("k", search.k)
        .with("distance", r.exact.distance);
    if search.distance_range != (None, None) {
        let bound =
            |b: Option<f32>, default: &str| b.map_or(default.to_string(), |v| v.to_string());
        top = top.with(
            "range",
            format!(
                "[{}, {})",
                bound(search.distance_range.0, "-inf"),
                bound(search.distance_range.1, "inf")
            ),
        );
    }
    for input in inputs {
        top = top.child(input);
    }
    let mut root = top;
    if let Some(filter) = search.filter.as_ref().filter(|_| search.postfilter) {
        root = PlanNode::new("Postfilter")
            .with("filter", filter.text())
            .with_verbose(
                "note",
                "applied to the k nearest rows; fewer may be returned",
            )
            .child(root);
    }
    let columns = match &search.columns {
        Some(c) => format!("[{}]", c.join(", ")),
        None => "*".to_string(),
    };
    PlanNode::new("Take")
        .with("columns", columns)
        .with("with_row_id", search.with_row_id)
        .child(root)
}

/// Runs a search, building the plan of what ran (measured when `analyze`).
/// Fragments whose data-file metadata an indexed search reads beside its index lookup on a
/// cloud store (see `warm_file_metadata`); a table with more is usually compacted first.
const WARM_FRAGMENTS: usize = 64;

async fn run(
    table: &Table,
    search: &VectorSearch,
    analyze: bool,
) -> Result<(RecordBatch, SearchStats, PlanNode)> {
    // A listener for plan runs gets the figures of every search, analyzed or not.
    let traced = crate::events::plans_traced();
    let analyze = analyze || traced;
    let r = resolve(table, search)?;
    let _lease = table.lease(r.manifest.version());
    let mut stats = SearchStats::default();
    let mut inputs = Vec::new();
    let mut taken = None;
    let mut best = match &r.index {
        None => {
            let mut node = exact_node(&r, r.manifest.fragments().len(), &r.exact_reason);
            let best = measured_exact(
                table,
                r.manifest.clone(),
                &r,
                &mut stats,
                &mut node,
                analyze,
            )
            .await?;
            inputs.push(node);
            best
        }
        Some(used) => {
            stats.index = Some(used.meta.name.clone());
            // Usually every fragment is indexed: then the version is used as it is, uncopied.
            let indexed = if used.all_covered {
                r.manifest.clone()
            } else {
                r.manifest.with_fragments(|f| used.covered.contains(&f.id))
            };
            let (found, ()) = futures::join!(
                indexed_search(table, &indexed, used, search, &r, &mut stats, analyze),
                table
                    .inner()
                    .warm_file_metadata(&r.manifest, WARM_FRAGMENTS)
            );
            let (mut best, node, ahead) = found?;
            taken = ahead;
            inputs.push(node);
            if !used.all_covered {
                let rest = r.manifest.with_fragments(|f| !used.covered.contains(&f.id));
                let mut node = exact_node(&r, rest.fragments().len(), "not covered by the index");
                best.extend(measured_exact(table, rest, &r, &mut stats, &mut node, analyze).await?);
                inputs.push(node);
            }
            best.sort_unstable();
            best.truncate(search.k);
            best
        }
    };
    let mut plan = output_nodes(&r, search, inputs);
    let probe = Probe::start(analyze);
    if analyze {
        top_of(&mut plan).metrics_mut().output_rows = best.len() as u64;
    }
    let batch = finish(
        &table.measured(&probe),
        &r.manifest,
        &mut best,
        search,
        taken.as_ref(),
    )
    .await?;
    if analyze {
        if search.filter.is_some() && search.postfilter {
            if let Some(post) = plan.children.first_mut() {
                post.metrics_mut().output_rows = best.len() as u64;
            }
        }
        plan.metrics_mut().output_rows = batch.num_rows() as u64;
    }
    probe.finish(&mut plan);
    if traced {
        crate::events::plan_run("vector_search", &plan);
    }
    Ok((batch, stats, plan))
}

/// The `TopK` node of a search plan.
fn top_of(plan: &mut PlanNode) -> &mut PlanNode {
    let mut node = plan;
    while node.operator != "TopK" && !node.children.is_empty() {
        node = &mut node.children[0];
    }
    node
}

/// [`exact_scan`] measured into `node`.
async fn measured_exact(
    table: &Table,
    manifest: Arc<Manifest>,
    r: &Resolved,
    stats: &mut SearchStats,
    node: &mut PlanNode,
    analyze: bool,
) -> Result<Vec<Candidate>> {
    let probe = Probe::start(analyze);
    let ranked_before = stats.exact_rows;
    let best = exact_scan(
        &table.measured(&probe),
        manifest,
        &r.exact,
        r.prefilter.clone(),
        stats,
    )
    .await?;
    record_ranked(node, analyze, best.len(), stats.exact_rows - ranked_before);
    probe.finish(node);
    Ok(best)
}

/// Records an exact-ranking operator's output and the rows it ranked (when analyzing).
fn record_ranked(node: &mut PlanNode, analyze: bool, output: usize, ranked: u64) {
    if analyze {
        let m = node.metrics_mut();
        m.output_rows = output as u64;
        m.rows_ranked = ranked;
    }
}

/// [`exact_at`] measured into `node`.
async fn measured_exact_at(
    table: &Table,
    manifest: &Manifest,
    rows: &[u64],
    exact: &Exact,
    stats: &mut SearchStats,
    node: &mut PlanNode,
    analyze: bool,
) -> Result<Vec<Candidate>> {
    let probe = Probe::start(analyze);
    let before = stats.exact_rows;
    let best = exact_at(&table.measured(&probe), manifest, rows, exact, stats).await?;
    record_ranked(node, analyze, best.len(), stats.exact_rows - before);
    probe.finish(node);
    Ok(best)
}

/// Refinement of candidates whose distances carry error bounds (RaBitQ), by the paper's rule:
/// the `k` of smallest estimate are ranked exactly first, and the k-th of their exact
/// distances then bounds the rest — a candidate whose estimate, less its error bound, is
/// above it cannot be among the `k` nearest and is never read. Returns the best and how
/// many candidates were ruled out.
async fn refine_within_bounds(
    table: &Table,
    indexed: &Manifest,
    probed: &crate::index::vector::Probed,
    exact: &Exact,
    stats: &mut SearchStats,
) -> Result<(Vec<Candidate>, usize)> {
    let k = exact.k.min(probed.candidates.len());
    let first: Vec<u64> = probed.candidates[..k].iter().map(|c| c.row_id).collect();
    let mut best = exact_at(table, indexed, &first, exact, stats).await?;
    let rest = probed.candidates[k..].iter().zip(&probed.bounds[k..]);
    // (Fewer than k of the first in range or alive: no bound, every candidate is read.)
    let kth = (best.len() >= exact.k).then(|| {
        best.iter()
            .map(|c| c.distance)
            .fold(f32::NEG_INFINITY, f32::max)
    });
    let mut pruned = 0;
    let rows: Vec<u64> = rest
        .filter(|(c, &bound)| {
            let out = kth.is_some_and(|kth| c.distance - bound > kth);
            pruned += usize::from(out);
            !out
        })
        .map(|(c, _)| c.row_id)
        .collect();
    if !rows.is_empty() {
        best.extend(exact_at(table, indexed, &rows, exact, stats).await?);
        best.sort_unstable();
        best.truncate(exact.k);
    }
    Ok((best, pruned))
}

/// The best candidates among the fragments of `indexed` (those the index covers), the plan
/// node that found them, and on a cloud store the returned columns of every refined candidate,
/// taken beside the refine so that returning the results costs no round trip of its own.
async fn indexed_search(
    table: &Table,
    indexed: &Arc<Manifest>,
    used: &UsedIndex,
    search: &VectorSearch,
    r: &Resolved,
    stats: &mut SearchStats,
    analyze: bool,
) -> Result<(Vec<Candidate>, PlanNode, Option<Taken>)> {
    let meta = &used.meta;
    let exact = &r.exact;
    let fragments = indexed.fragments().len();
    let mut node = index_node(used, search, fragments, r.prefilter.is_some());
    if indexed.fragments().is_empty() || search.k == 0 {
        return Ok((Vec::new(), node, None));
    }
    let gate = match &r.prefilter {
        Some(filter) => {
            let mut pre = prefilter_node(filter, fragments);
            let probe = Probe::start(analyze);
            let matches = table
                .measured(&probe)
                .matching_rows(indexed, filter)
                .await?;
            if analyze {
                pre.metrics_mut().output_rows = matches.values().map(|b| b.len()).sum();
            }
            probe.finish(&mut pre);
            if analyze {
                // Which scalar indexes answered the prefilter (their parts are cached now).
                if let Some(node) = table.scalar_index_node(indexed, filter).await? {
                    pre = pre.child(node);
                }
            }
            if let Some(rows) = few_matches(&matches, exact) {
                // Their exact distances cost less than probing for them.
                let mut take = PlanNode::new("ExactTake")
                    .with("rows", rows.len())
                    .with("reason", "(the prefilter matched few rows: ranked exactly instead of probing the index)")
                    .child(pre);
                let best =
                    measured_exact_at(table, indexed, &rows, exact, stats, &mut take, analyze)
                        .await?;
                return Ok((best, take, None));
            }
            node = node.child(pre);
            Some(RowGate::Only(matches.into_iter().collect()))
        }
        None => None,
    };
    let probe = Probe::start(analyze);
    let observed = table.measured(&probe);
    let (entry, index) = indices::load_vector(&observed, indexed, meta).await?;
    let loaded = entry.loaded;
    if index.dim != exact.query.f32.len() || index.distance != exact.distance {
        return Err(Error::corrupt(
            format!("index '{}'", meta.name),
            "its vectors do not match the column it is listed for",
        ));
    }
    let gate = match gate {
        Some(g) => g,
        None => indices::live_gate(&observed, indexed).await?,
    };
    let refine = used.settings.refine;
    let want = search.k.saturating_mul(refine.unwrap_or(1));
    let nprobes = match &gate {
        RowGate::Only(matches) => widened_nprobes(
            used.settings.nprobes,
            matches,
            index.num_rows(),
            index.num_partitions(),
        ),
        RowGate::Live(_) => used.settings.nprobes,
    };
    let mut prepared = index.prepare(&exact.query.f32, &exact.query.bytes);
    let translation = entry.translation(observed.inner(), indexed);
    let parts = entry.parts(observed.inner(), &translation);
    // Inline: a probe is a few hundred microseconds of CPU, less than a hop to another thread
    // and back would add to every query.
    let probed = search_partitions(
        &index,
        &mut prepared,
        nprobes,
        used.settings.ef.unwrap_or(0),
        want,
        &gate,
        exact.range,
        &parts,
    )
    .await?;
    stats.partitions_probed += probed.partitions;
    node = node.with("partitions_probed", probed.partitions);
    if analyze {
        let m = node.metrics_mut();
        m.output_rows = probed.candidates.len() as u64;
        m.index_comparisons = probed.comparisons;
        if loaded {
            m.indices_loaded = 1;
        }
        m.parts_loaded = probed.parts_loaded + u64::from(loaded);
    }
    probe.finish(&mut node);
    match refine {
        Some(factor) => {
            let mut refine_step = refine_node(factor, search.k).child(node);
            let probe = Probe::start(analyze);
            let before = stats.exact_rows;
            let observed = table.measured(&probe);
            let cloud = table.inner().storage.is_cloud();
            let refined = async {
                // On a cloud store a second read costs a round trip, more than reading the
                // candidates the bounds would rule out: they are all read at once.
                if !cloud && probed.bounds.iter().any(|&b| b > 0.0) {
                    let (best, pruned) =
                        refine_within_bounds(&observed, indexed, &probed, exact, stats).await?;
                    Ok((best, Some(pruned)))
                } else {
                    let rows: Vec<u64> = probed.candidates.iter().map(|c| c.row_id).collect();
                    Ok((
                        exact_at(&observed, indexed, &rows, exact, stats).await?,
                        None,
                    ))
                }
            };
            let ahead = async {
                if !cloud {
                    return None;
                }
                let rows = probed.candidates.iter().map(|c| c.row_id).collect();
                // Only a shortcut: if it fails, returning the results takes the rows itself
                // (and reports what went wrong).
                Taken::read(&observed, &r.manifest, rows, search).await.ok()
            };
            let (refined, taken): (Result<_>, _) = futures::join!(refined, ahead);
            let (best, pruned) = refined?;
            if let Some(pruned) = pruned {
                refine_step = refine_step.with("pruned_by_error_bound", pruned);
            }
            record_ranked(
                &mut refine_step,
                analyze,
                best.len(),
                stats.exact_rows - before,
            );
            probe.finish(&mut refine_step);
            Ok((best, refine_step, taken))
        }
        None => Ok((
            probed
                .candidates
                .into_iter()
                .filter(|c| in_range(c.distance, exact.range))
                .take(exact.k)
                .collect(),
            node,
            None,
        )),
    }
}

/// Applies a postfilter to `best` and reads the returned columns.
async fn finish(
    table: &Table,
    manifest: &Manifest,
    best: &mut Vec<Candidate>,
    search: &VectorSearch,
    taken: Option<&Taken>,
) -> Result<RecordBatch> {
    if let Some(filter) = search.filter.as_ref().filter(|_| search.postfilter) {
        let ids: Vec<u64> = best.iter().map(|c| c.row_id).collect();
        let mut keep = table.rows_matching(&ids, filter).await?.into_iter();
        best.retain(|_| keep.next().unwrap_or(false));
    }
    let ids: Vec<u64> = best.iter().map(|c| c.row_id).collect();
    // `_distance` is always returned; naming it in the projection (as LanceDB users do) is fine.
    let output = RankedOutput {
        columns: search.columns.as_deref(),
        with_row_id: search.with_row_id,
        rank: DISTANCE,
    };
    take_ranked(
        table,
        manifest,
        ids,
        &output,
        best.iter().map(|c| c.distance),
        taken,
    )
    .await
}

/// Rows taken ahead of knowing which are returned: the returned columns of candidates, by
/// ascending address.
pub(crate) struct Taken {
    addresses: Vec<u64>,
    rows: RecordBatch,
}

impl Taken {
    /// The returned columns of `search` at `addresses`.
    async fn read(
        table: &Table,
        manifest: &Manifest,
        mut addresses: Vec<u64>,
        search: &VectorSearch,
    ) -> Result<Taken> {
        addresses.sort_unstable();
        addresses.dedup();
        let columns = returned_columns(search.columns.as_deref(), DISTANCE);
        let rows = scan::take(
            table.inner(),
            manifest,
            &addresses,
            columns.as_deref(),
            search.with_row_id,
        )
        .await?;
        Ok(Taken { addresses, rows })
    }

    /// The rows at `ids`, in order, when every one was taken.
    fn select(&self, ids: &[u64]) -> Option<Result<RecordBatch>> {
        let indices: Option<Vec<u32>> = ids
            .iter()
            .map(|id| self.addresses.binary_search(id).ok().map(|i| i as u32))
            .collect();
        let indices = arrow_array::UInt32Array::from(indices?);
        let select = || -> Result<RecordBatch> {
            let columns = self
                .rows
                .columns()
                .iter()
                .map(|c| arrow_select::take::take(c.as_ref(), &indices, None))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(ids.len()));
            Ok(RecordBatch::try_new_with_options(
                self.rows.schema(),
                columns,
                &options,
            )?)
        };
        Some(select())
    }
}

/// The columns a ranked result returns from the table: `columns` without the ranking column
/// `rank`, which a user may name.
fn returned_columns(columns: Option<&[String]>, rank: &str) -> Option<Vec<String>> {
    columns.map(|c| c.iter().filter(|n| *n != rank).cloned().collect())
}

/// What a ranked result returns: the table's `columns` (all when `None`), the ranking column
/// `rank` (left out of `columns` when a user names it), and `_rowid` when asked.
#[derive(Clone, Copy)]
pub(crate) struct RankedOutput<'a> {
    pub columns: Option<&'a [String]>,
    pub with_row_id: bool,
    pub rank: &'a str,
}

/// The rows at `ids` (ranked results, in order) as `output` asks, `values` the ranking
/// column's (one per row); from `taken` when it holds them all.
pub(crate) async fn take_ranked(
    table: &Table,
    manifest: &Manifest,
    ids: Vec<u64>,
    output: &RankedOutput<'_>,
    values: impl Iterator<Item = f32>,
    taken: Option<&Taken>,
) -> Result<RecordBatch> {
    let RankedOutput {
        columns,
        with_row_id,
        rank,
    } = *output;
    let rows = match taken.and_then(|t| t.select(&ids)) {
        Some(rows) => rows?,
        None => {
            let columns = returned_columns(columns, rank);
            scan::take(
                table.inner(),
                manifest,
                &ids,
                columns.as_deref(),
                with_row_id,
            )
            .await?
        }
    };
    let mut fields: Vec<Arc<Field>> = rows.schema().fields().iter().cloned().collect();
    let mut arrays: Vec<ArrayRef> = rows.columns().to_vec();
    fields.push(Arc::new(Field::new(rank, DataType::Float32, false)));
    arrays.push(Arc::new(Float32Array::from_iter_values(values)));
    if with_row_id && rows.schema().field_with_name(ROW_ID).is_err() {
        fields.push(Arc::new(Field::new(ROW_ID, DataType::UInt64, false)));
        arrays.push(Arc::new(UInt64Array::from(ids)));
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{batches_stream, ConnectOptions, CreateMode, Database, WriteParams};

    async fn vectors_table(uri: &str, memory_map: bool) -> Table {
        let values = Float32Array::from_iter_values((0..4000).map(|i| (i % 97) as f32));
        let item = Arc::new(Field::new("item", DataType::Float32, true));
        let list =
            FixedSizeListArray::try_new(item.clone(), 4, Arc::new(values), None).expect("vectors");
        let schema = Arc::new(Schema::new(vec![Field::new(
            "v",
            DataType::FixedSizeList(item, 4),
            false,
        )]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(list)]).expect("batch");
        let options = ConnectOptions {
            storage: Some(crate::storage::StorageOptions {
                memory_map,
                ..Default::default()
            }),
            ..Default::default()
        };
        let db = Database::connect(uri, options).await.expect("connect");
        db.create_table(
            "t",
            schema,
            batches_stream(vec![batch]),
            CreateMode::Create,
            WriteParams {
                page_size: 4096,
                ..Default::default()
            },
        )
        .await
        .expect("create")
    }

    fn exact() -> Exact {
        Exact {
            column: "v".into(),
            query: Query {
                f32: vec![1.0; 4],
                f64: vec![1.0; 4],
                bytes: Vec::new(),
            },
            distance: DistanceType::L2,
            k: 3,
            range: (None, None),
        }
    }

    #[tokio::test]
    async fn local_stores_stream_pages_and_others_do_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let local = vectors_table(dir.path().to_str().expect("utf-8"), false).await;
        let sources = local_sources(&local, &local.manifest(), &exact())
            .await
            .expect("sources")
            .expect("a local table streams");
        let column = sources[0]
            .reader
            .metadata()
            .column(sources[0].field_id, sources[0].reader.path())
            .expect("column");
        assert!(column.pages.len() > 1, "several pages");

        let memory = vectors_table("memory://", false).await;
        assert!(local_sources(&memory, &memory.manifest(), &exact())
            .await
            .expect("sources")
            .is_none());
    }

    #[tokio::test]
    async fn a_page_streams_in_runs_of_whole_vectors_covering_it_once() {
        for memory_map in [false, true] {
            page_streams_in_runs(memory_map).await;
        }
    }

    async fn page_streams_in_runs(memory_map: bool) {
        let dir = tempfile::tempdir().expect("tempdir");
        let table = vectors_table(dir.path().to_str().expect("utf-8"), memory_map).await;
        let sources = local_sources(&table, &table.manifest(), &exact())
            .await
            .expect("sources")
            .expect("a local table streams");
        let source = &sources[0];
        let whole = source
            .reader
            .read_page_sync(&source.file, source.field_id, 0)
            .expect("page");
        let whole = whole
            .as_fixed_size_list()
            .values()
            .as_primitive::<Float32Type>();
        let mut run = arrow_buffer::MutableBuffer::new(0);
        let mut seen = Vec::new();
        // 100 bytes: runs of 6 vectors (24 values), the last one shorter.
        let streamed = source
            .reader
            .stream_vector_page(
                &source.file,
                source.field_id,
                0,
                100,
                &mut run,
                |first, rows, bytes| {
                    assert_eq!(first as usize * 4, seen.len());
                    assert!(rows <= 6);
                    assert_eq!(bytes.len(), rows * 16);
                    seen.extend(
                        bytes
                            .chunks(4)
                            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                    );
                    Ok(())
                },
            )
            .expect("stream");
        assert!(streamed);
        assert_eq!(seen, whole.values().to_vec(), "memory_map {memory_map}");
    }
}
