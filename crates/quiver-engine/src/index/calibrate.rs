//! Self-calibration of a vector index's search settings. At build time a sample of the
//! table's own vectors serves as queries: their exact top-k over every row (themselves
//! excluded) is computed in the same pass that encodes the rows, then each query is searched
//! through the new index at growing `nprobes` and refine factors. The recall of every setting,
//! and its estimated cost, are stored with the index; a search with no explicit settings uses
//! the cheapest one reaching the target recall (0.95 unless the build or the query says
//! otherwise).
//!
//! The curve closes with exact search (recall 1, its cost estimated from the table's size):
//! when no index setting reaches a target, such as on data whose codes cannot tell
//! neighbours apart, or the one that does is estimated to cost more than a scan, the default
//! is the exact answer rather than a slower or wrong one.
//!
//! Recall of a setting is measured as the search computes it: a query's candidates are the
//! `k × refine` rows with the smallest index distances among the partitions probed, and since
//! candidates are re-ranked exactly, a true neighbour is returned exactly when it is among
//! them.

use std::collections::BinaryHeap;

use rayon::prelude::*;

use super::ivf::{IndexKind, IvfIndex, PreparedQuery};
use crate::linalg::{self, DistanceType};
use crate::vocab::Candidate;

/// Neighbours per query the calibration measures recall at (LanceDB's default limit).
pub const CALIBRATION_K: usize = 10;
/// Recall the defaults aim at when the build does not name one.
pub const DEFAULT_TARGET_RECALL: f32 = 0.95;
/// Exact-search work the ground truth may take, in multiply-adds (rows × queries × width):
/// about two seconds of two cores.
const GROUND_TRUTH_BUDGET: f64 = 4e9;
/// Sample queries: as many as the budget allows, between these bounds.
const MIN_QUERIES: usize = 50;
const MAX_QUERIES: usize = 200;
/// Tables smaller than this are not calibrated (the defaults probe most of them anyway).
const MIN_ROWS: u64 = 1_000;
/// Refine factors tried for IVF_PQ (IVF_FLAT distances are exact: no refine). The large ones
/// serve data whose codes barely tell neighbours apart (uniform noise: 32 reached 0.81).
const REFINE_FACTORS: [u32; 8] = [1, 2, 4, 8, 16, 32, 64, 128];

/// Standard errors by which a default setting's measured recall must clear the target (about
/// 0.015 at 0.96 with 200 queries). The first setting to clear a bar tends to be one whose
/// estimate came out high, and with two, held-out recall ran about 0.01 below the estimate on
/// pydocs, the overlapping mixture and the uniform sphere alike (0.952 where 0.9635 was
/// measured).
pub const MARGIN_STDERRS: f32 = 3.0;

/// Estimated costs, in nanoseconds on one core, of the parts of a search (measured on the
/// reference machine; only their ratios matter for choosing).
const NS_PER_PQ_LOOKUP: f32 = 0.9;
const NS_PER_FLOAT: f32 = 0.15;
const NS_PER_PARTITION: f32 = 300.0;
/// Building a residual table (l2 and cosine IVF_PQ): 256 × width multiply-adds per partition.
const NS_PER_TABLE_VALUE: f32 = 0.06;
/// Reading one candidate's vector for the exact re-rank, besides its distance.
const NS_PER_REFINED_ROW: f32 = 2_500.0;

/// Sample queries to calibrate a table of `rows` vectors `width` wide (in the training space)
/// with, or 0 when it is too small to need calibration. A graph build always affords the
/// most: linking a row computes thousands of distances `width` wide (about 8,000 on the 384-d
/// sphere at efConstruction 300), so the truth's `MAX_QUERIES` per row add a few percent to
/// it, where at 1M rows the budget's 50 queries left a margin of three standard errors so
/// wide that the default `ef` came out 4× what a held-out 0.95 needed.
pub fn query_count(rows: u64, width: usize, graph: bool) -> usize {
    if rows < MIN_ROWS {
        return 0;
    }
    if graph {
        return MAX_QUERIES;
    }
    let affordable = GROUND_TRUTH_BUDGET / (rows as f64 * width.max(1) as f64);
    (affordable as usize).clamp(MIN_QUERIES, MAX_QUERIES)
}

/// Whether the row at `row_id` is held out of training as a possible calibration query (one
/// row in `stride`, spread by a hash of the address so no fragment or region is favoured).
pub fn holds_out(row_id: u64, stride: u64) -> bool {
    let mut x = row_id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 32;
    stride != u64::MAX && x.is_multiple_of(stride.max(1))
}

/// One measured setting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CalibrationPoint {
    /// 0: exact search, the index bypassed (the curve's last point).
    pub nprobes: u32,
    /// Graph indexes: the search's candidate list (0 for IVF_PQ / IVF_FLAT).
    pub ef: u32,
    /// Refine factor (0: none, IVF_FLAT).
    pub refine: u32,
    /// Mean recall@k over the sample queries.
    pub recall: f32,
    /// The standard error of `recall` (the spread of the queries' recalls over √queries).
    pub stderr: f32,
    /// Estimated microseconds of one search on one core.
    pub cost_us: f32,
}

/// What calibration measured: the index settings on the cost/recall frontier (each cheaper
/// one has lower recall), cheapest first, then exact search.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    pub target_recall: f32,
    pub queries: u32,
    pub k: u32,
    /// A graph index's: points set `ef` (0: every code of the probed partitions scanned).
    pub graph: bool,
    pub points: Vec<CalibrationPoint>,
}

impl CalibrationPoint {
    /// Exact search: no index setting reached the target.
    pub fn is_exact(&self) -> bool {
        self.nprobes == 0
    }

    fn exact(rows: usize, width: usize) -> CalibrationPoint {
        CalibrationPoint {
            nprobes: 0,
            ef: 0,
            refine: 0,
            recall: 1.0,
            stderr: 0.0,
            cost_us: rows as f32 * width as f32 * NS_PER_FLOAT / 1000.0,
        }
    }
}

impl Calibration {
    /// The cheapest setting reaching `target` recall (exact search when no index setting
    /// does, or when it is estimated to cost no more than the one that does: 1-bit codes on
    /// the uniform sphere reach 0.95 only by re-ranking 1,280 of 50K rows, slower than a
    /// scan), or the one of highest recall when none does. A setting must clear the target by
    /// [`MARGIN_STDERRS`] standard errors of its estimate, so that unseen queries, not only
    /// the sample, reach it.
    pub fn pick(&self, target: f32) -> Option<&CalibrationPoint> {
        let exact = self.points.iter().find(|p| p.is_exact());
        match (self.cheapest_index_setting(target), exact) {
            (Some(index), Some(exact)) if exact.cost_us <= index.cost_us => Some(exact),
            (Some(index), _) => Some(index),
            (None, Some(exact)) => Some(exact),
            (None, None) => self.best_index_setting(),
        }
    }

    /// The cheapest index setting reaching `target` by the margin (none: no setting does).
    pub fn cheapest_index_setting(&self, target: f32) -> Option<&CalibrationPoint> {
        self.points
            .iter()
            .filter(|p| !p.is_exact() && p.recall - MARGIN_STDERRS * p.stderr >= target.min(1.0))
            .min_by(|a, b| a.cost_us.total_cmp(&b.cost_us))
    }

    /// The index setting of highest recall (what an exact default falls back to for the
    /// settings a search names only partly).
    pub fn best_index_setting(&self) -> Option<&CalibrationPoint> {
        self.points
            .iter()
            .filter(|p| !p.is_exact())
            .max_by(|a, b| a.recall.total_cmp(&b.recall))
    }

    /// The setting chosen for the build's target.
    pub fn chosen(&self) -> Option<&CalibrationPoint> {
        self.pick(self.target_recall)
    }

    pub fn to_proto(&self) -> CalibrationProto {
        CalibrationProto {
            target_recall: self.target_recall,
            queries: self.queries,
            k: self.k,
            nprobes: self.points.iter().map(|p| p.nprobes).collect(),
            ef: self.points.iter().map(|p| p.ef).collect(),
            refine: self.points.iter().map(|p| p.refine).collect(),
            recall: self.points.iter().map(|p| p.recall).collect(),
            stderr: self.points.iter().map(|p| p.stderr).collect(),
            cost_us: self.points.iter().map(|p| p.cost_us).collect(),
            graph: self.graph,
        }
    }

    /// The calibration a stored message describes, when it is consistent (a damaged one is
    /// ignored: searches then use the fixed defaults).
    pub fn from_proto(proto: &CalibrationProto) -> Option<Calibration> {
        let n = proto.nprobes.len();
        if n == 0
            || proto.refine.len() != n
            || proto.recall.len() != n
            || proto.cost_us.len() != n
            || !(proto.ef.is_empty() || proto.ef.len() == n)
            || !(proto.stderr.is_empty() || proto.stderr.len() == n)
        {
            return None;
        }
        let points: Vec<CalibrationPoint> = (0..n)
            .map(|i| CalibrationPoint {
                nprobes: proto.nprobes[i],
                ef: proto.ef.get(i).copied().unwrap_or(0),
                refine: proto.refine[i],
                recall: proto.recall[i],
                // (Older files did not record it: the binomial error of their sample.)
                stderr: proto.stderr.get(i).copied().unwrap_or_else(|| {
                    let r = proto.recall[i].clamp(0.0, 1.0);
                    (r * (1.0 - r) / (proto.queries.max(1) * proto.k.max(1)) as f32).sqrt()
                }),
                cost_us: proto.cost_us[i],
            })
            .collect();
        if points
            .iter()
            .any(|p| !p.recall.is_finite() || !p.stderr.is_finite())
        {
            return None;
        }
        Some(Calibration {
            target_recall: proto.target_recall,
            queries: proto.queries,
            k: proto.k,
            graph: proto.graph,
            points,
        })
    }
}

/// The stored calibration (in the index model and in the manifest's details): parallel
/// arrays, one entry per frontier point.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CalibrationProto {
    #[prost(float, tag = "1")]
    pub target_recall: f32,
    #[prost(uint32, tag = "2")]
    pub queries: u32,
    #[prost(uint32, tag = "3")]
    pub k: u32,
    #[prost(uint32, repeated, tag = "4")]
    pub nprobes: Vec<u32>,
    #[prost(uint32, repeated, tag = "5")]
    pub refine: Vec<u32>,
    #[prost(float, repeated, tag = "6")]
    pub recall: Vec<f32>,
    #[prost(float, repeated, tag = "7")]
    pub cost_us: Vec<f32>,
    #[prost(uint32, repeated, tag = "8")]
    pub ef: Vec<u32>,
    #[prost(bool, tag = "9")]
    pub graph: bool,
    #[prost(float, repeated, tag = "10")]
    pub stderr: Vec<f32>,
}

/// Sample queries (rows of the table, in the training space) and their exact nearest rows,
/// accumulated batch by batch as the build reads the column.
pub struct GroundTruth {
    width: usize,
    k: usize,
    /// Distances are squared l2 in the training space, or the negative inner product (dot).
    dot: bool,
    queries: Vec<f32>,
    query_rows: Vec<u64>,
    query_norms: Vec<f32>,
    /// Per query, its `k` nearest rows so far (worst on top).
    nearest: Vec<BinaryHeap<Candidate>>,
}

/// Rows a ground-truth block computes at once (its distance matrix stays in cache).
const BLOCK_ROWS: usize = 1024;
/// Nearest rows kept per query: the k nearest, and rows tied with the k-th (duplicated
/// vectors are common in real tables; any of them is a right answer).
const TRUTH_KEEP: usize = 64;

impl GroundTruth {
    pub fn new(width: usize, distance: DistanceType, queries: Vec<f32>, rows: Vec<u64>) -> Self {
        let query_norms = queries
            .chunks_exact(width.max(1))
            .map(|q| linalg::dot(q, q))
            .collect();
        let n = rows.len();
        GroundTruth {
            width,
            k: CALIBRATION_K,
            dot: distance == DistanceType::Dot,
            queries,
            query_rows: rows,
            query_norms,
            nearest: vec![BinaryHeap::with_capacity(TRUTH_KEEP + 1); n],
        }
    }

    pub fn len(&self) -> usize {
        self.query_rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.query_rows.is_empty()
    }

    /// The right answers of query `q`: its `k` nearest rows and every row as near as the
    /// k-th (within rounding). Empty when the table had fewer than `k` other rows, or when
    /// more rows than are kept tie with the k-th: then too many rows are right answers to
    /// tell a hit by its address, and the query is left out.
    fn answers(&self, q: usize) -> Vec<u64> {
        let sorted = self.nearest[q].clone().into_sorted_vec();
        let Some(kth) = sorted.get(self.k - 1) else {
            return Vec::new();
        };
        // The blocked kernel computes ‖x‖² + ‖q‖² − 2x·q: its rounding scales with the norms.
        let tolerance = 1e-5 * (kth.distance.abs() + self.query_norms[q]);
        let answers: Vec<u64> = sorted
            .iter()
            .take_while(|c| c.distance <= kth.distance + tolerance)
            .map(|c| c.row_id)
            .collect();
        if answers.len() >= TRUTH_KEEP {
            return Vec::new();
        }
        answers
    }

    /// Folds in `rows` (training-space vectors) with addresses `row_ids`.
    pub fn add(&mut self, rows: &[f32], row_ids: &[u64]) {
        let (width, queries) = (self.width.max(1), self.len());
        if queries == 0 || row_ids.is_empty() {
            return;
        }
        let kernels = linalg::kernels();
        // Each block yields, per query, its k nearest rows of the block.
        let found: Vec<Vec<Vec<Candidate>>> = rows
            .par_chunks(BLOCK_ROWS * width)
            .zip(row_ids.par_chunks(BLOCK_ROWS))
            .map(|(block, ids)| {
                let mut matrix = vec![0f32; ids.len() * queries];
                if kernels
                    .l2_matrix(block, &self.queries, width, &mut matrix)
                    .is_err()
                {
                    return Vec::new();
                }
                if self.dot {
                    // −x·q = (‖x − q‖² − ‖x‖² − ‖q‖²) / 2.
                    for (r, row) in block.chunks_exact(width).enumerate() {
                        let norm = linalg::dot(row, row);
                        for (q, d) in matrix[r * queries..(r + 1) * queries]
                            .iter_mut()
                            .enumerate()
                        {
                            *d = (*d - norm - self.query_norms[q]) * 0.5;
                        }
                    }
                }
                (0..queries)
                    .map(|q| {
                        let mut heap = BinaryHeap::with_capacity(TRUTH_KEEP + 1);
                        for (r, &row_id) in ids.iter().enumerate() {
                            if row_id == self.query_rows[q] {
                                continue;
                            }
                            push_bounded(
                                &mut heap,
                                Candidate {
                                    distance: matrix[r * queries + q],
                                    row_id,
                                },
                                TRUTH_KEEP,
                            );
                        }
                        heap.into_vec()
                    })
                    .collect()
            })
            .collect();
        for block in found {
            for (q, candidates) in block.into_iter().enumerate() {
                for c in candidates {
                    push_bounded(&mut self.nearest[q], c, TRUTH_KEEP);
                }
            }
        }
    }
}

#[inline]
fn push_bounded(heap: &mut BinaryHeap<Candidate>, c: Candidate, bound: usize) {
    if heap.len() >= bound && heap.peek().is_some_and(|worst| c >= *worst) {
        return;
    }
    heap.push(c);
    if heap.len() > bound {
        heap.pop();
    }
}

/// `nprobes` values measured: fine steps first, then about 25% apart.
fn probe_steps(partitions: usize) -> Vec<usize> {
    let mut steps = Vec::new();
    let mut p = 1usize;
    while p < partitions {
        steps.push(p);
        p = if p < 8 { p + 1 } else { p + p.div_ceil(4) };
    }
    steps.push(partitions.max(1));
    steps
}

/// Measures `index` (held in memory, just built) against `truth` and returns the frontier of
/// settings; `None` when there were no usable queries.
pub fn calibrate(index: &IvfIndex, truth: &GroundTruth, target_recall: f32) -> Option<Calibration> {
    let k = CALIBRATION_K;
    let partitions = index.num_partitions();
    let steps = probe_steps(partitions);
    let refines: &[u32] = match index.kind {
        IndexKind::IvfPq | IndexKind::IvfRq => &REFINE_FACTORS,
        IndexKind::IvfFlat => &[0],
        IndexKind::IvfHnswSq => {
            return calibrate_graph(index, truth, target_recall, &GRAPH_SQ_REFINE_FACTORS)
        }
        IndexKind::IvfHnswPq => {
            return calibrate_graph(index, truth, target_recall, &GRAPH_PQ_REFINE_FACTORS)
        }
    };
    let max_candidates = k * refines.iter().copied().max().unwrap_or(1).max(1) as usize;
    let sdim = index.space_dim();
    let hamming = index.distance == DistanceType::Hamming;
    // Per query: hits per (step, refine), and rows scanned per step.
    let measured: Vec<(Vec<u32>, Vec<u64>)> = (0..truth.len())
        .into_par_iter()
        .filter_map(|q| {
            let truth_rows = truth.answers(q);
            if truth_rows.len() < k {
                return None;
            }
            let space = &truth.queries[q * sdim..(q + 1) * sdim];
            let bytes: Vec<u8> = if hamming {
                space
                    .chunks(8)
                    .map(|bits| {
                        bits.iter()
                            .enumerate()
                            .fold(0u8, |b, (i, &v)| b | (u8::from(v > 0.5) << i))
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let mut query = index.prepare(space, &bytes);
            let order = index.rank_partitions(query.space());
            let self_row = truth.query_rows[q];
            let mut heap: BinaryHeap<Candidate> = BinaryHeap::with_capacity(max_candidates + 1);
            let mut distances = Vec::new();
            let mut hits = vec![0u32; steps.len() * refines.len()];
            let mut scanned = vec![0u64; steps.len()];
            let (mut rows, mut truth_seen, mut probed) = (0u64, 0usize, 0usize);
            for (s, &step) in steps.iter().enumerate() {
                while probed < step {
                    let p = order[probed];
                    probed += 1;
                    let Some(part) = index.resident_partition(p) else {
                        continue;
                    };
                    rows += part.len() as u64;
                    if truth_seen == truth_rows.len() {
                        // Every true neighbour was probed already: more rows can only push
                        // them out of the candidates, which the frontier treats as no change.
                        continue;
                    }
                    index.partition_distances(p, part, &mut query, &mut distances);
                    for (&distance, &row_id) in distances.iter().zip(&part.row_ids) {
                        if row_id == self_row {
                            continue;
                        }
                        if truth_rows.contains(&row_id) {
                            truth_seen += 1;
                        }
                        push_bounded(&mut heap, Candidate { distance, row_id }, max_candidates);
                    }
                }
                scanned[s] = rows;
                let sorted = heap.clone().into_sorted_vec();
                for (r, &refine) in refines.iter().enumerate() {
                    let take = k * refine.max(1) as usize;
                    let found = sorted
                        .iter()
                        .take(take)
                        .filter(|c| truth_rows.contains(&c.row_id))
                        .count();
                    hits[s * refines.len() + r] = found.min(k) as u32;
                }
            }
            Some((hits, scanned))
        })
        .collect();
    if measured.is_empty() {
        return None;
    }
    let n = measured.len() as f32;
    // Codes are scanned by table lookups (PQ: one per sub-vector; RaBitQ: one per byte, and
    // its factors); flat partitions by the distance kernel.
    let (per_row_ns, table_values) = match (&index.quantizer, &index.rq) {
        (Some(q), _) => (q.m as f32 * NS_PER_PQ_LOOKUP, 256 * sdim),
        (None, Some(rq)) => (
            (rq.quantizer.code_width() + 4) as f32 * NS_PER_PQ_LOOKUP,
            256 * rq.quantizer.code_width(),
        ),
        (None, None) => (index.dim as f32 * NS_PER_FLOAT, 0),
    };
    let table_ns = if index.distance != DistanceType::Dot {
        table_values as f32 * NS_PER_TABLE_VALUE
    } else {
        0.0
    };
    let mut all = Vec::with_capacity(steps.len() * refines.len());
    for (s, &step) in steps.iter().enumerate() {
        let rows = measured.iter().map(|(_, sc)| sc[s]).sum::<u64>() as f32 / n;
        for (r, &refine) in refines.iter().enumerate() {
            let (recall, stderr) =
                mean_and_stderr(measured.iter().map(|(h, _)| h[s * refines.len() + r]), k);
            let refined = if refine == 0 {
                0.0
            } else {
                (k * refine as usize) as f32 * (NS_PER_REFINED_ROW + sdim as f32 * NS_PER_FLOAT)
            };
            let cost_ns = partitions as f32 * sdim as f32 * NS_PER_FLOAT
                + step as f32 * (NS_PER_PARTITION + table_ns)
                + rows * per_row_ns
                + refined;
            all.push(CalibrationPoint {
                nprobes: step as u32,
                ef: 0,
                refine,
                recall,
                stderr,
                cost_us: cost_ns / 1000.0,
            });
        }
    }
    Some(Calibration {
        target_recall,
        queries: measured.len() as u32,
        k: k as u32,
        graph: false,
        points: frontier(all, CalibrationPoint::exact(index.num_rows(), sdim)),
    })
}

/// `ef` values a graph's ladder walks, doubling, then larger ones while a walk would still
/// visit a small part of the largest graph (a million-node graph of hard data needed more
/// than 512: without them the default became a scan of every code, 640 ms a query). Between
/// the two steps where recall first reaches the target, [`ef_between`] is measured too.
fn ef_steps(largest_graph: usize) -> Vec<u32> {
    let mut steps = vec![16, 32, 64, 128, 256, 512];
    for ef in [1024u32, 2048, 4096, 8192] {
        if (ef as usize).saturating_mul(16) > largest_graph {
            break;
        }
        steps.push(ef);
    }
    steps
}

/// The `ef` measured between a ladder step reaching the target (`reached`) and the step
/// before it (none: `reached` is the first): halfway, or 10 below the first step. Walks cost
/// about in proportion to `ef`, so a ladder doubling and filled in where it matters costs
/// two thirds of one rising by half at every step, with the same resolution at the target.
fn ef_between(before: Option<u32>, reached: u32) -> u32 {
    match before {
        Some(before) => (before + reached) / 2,
        None => 10,
    }
}

/// Refine factors tried for graph indexes: few over 8-bit scalar codes (close to the vectors
/// already), more over PQ codes.
const GRAPH_SQ_REFINE_FACTORS: [u32; 3] = [1, 2, 4];
const GRAPH_PQ_REFINE_FACTORS: [u32; 6] = [1, 2, 4, 8, 16, 32];
/// Recall at which a graph's `ef` ladder stops (larger settings cannot do measurably better).
const STOP_RECALL: f32 = 0.999;
/// Nanoseconds per node a graph search visits, besides its distance.
const NS_PER_VISIT: f32 = 40.0;
/// Nanoseconds per dimension of an 8-bit code scanned in order (a quarter of a float's bytes:
/// a scan of every code of 50K × 384 took 1.8 ms where the exact scan took 2.9 ms).
const NS_PER_SQ_DIM: f32 = 0.1;

/// Calibrates a graph index: the sample queries searched at growing `ef` (and, with more than
/// one partition, a few `nprobes`) until recall is all but perfect, hits counted for each
/// refine factor; a scan of every code closes the ladder when no walk got there.
fn calibrate_graph(
    index: &IvfIndex,
    truth: &GroundTruth,
    target_recall: f32,
    refines: &[u32],
) -> Option<Calibration> {
    let k = CALIBRATION_K;
    let partitions = index.num_partitions();
    let mut probes: Vec<usize> = probe_steps(partitions);
    if probes.len() > 6 {
        // A handful of probe counts, spread over the range.
        let last = probes.len() - 1;
        probes = (0..6).map(|i| probes[i * last / 5]).collect();
        probes.dedup();
    }
    let sdim = index.space_dim();
    // The queries that can be scored, prepared once.
    let queries: Vec<(Vec<u64>, u64, PreparedQuery, Vec<usize>)> = (0..truth.len())
        .into_par_iter()
        .filter_map(|q| {
            let answers = truth.answers(q);
            if answers.len() < k {
                return None;
            }
            let query = index.prepare(&truth.queries[q * sdim..(q + 1) * sdim], &[]);
            let order = index.rank_partitions(query.space());
            Some((answers, truth.query_rows[q], query, order))
        })
        .collect();
    if queries.is_empty() {
        return None;
    }
    let n = queries.len() as f32;
    let want = k * refines.iter().copied().max().unwrap_or(1) as usize;
    let mut all = Vec::new();
    let largest = (0..partitions)
        .filter_map(|p| index.resident_partition(p).map(|part| part.len()))
        .max()
        .unwrap_or(0);
    let steps = ef_steps(largest);
    let exact = CalibrationPoint::exact(index.num_rows(), sdim);
    // A code scanned in order (`ef` 0) costs its distance alone.
    let scanned_ns = match &index.quantizer {
        Some(q) => q.m as f32 * NS_PER_PQ_LOOKUP,
        None => sdim as f32 * NS_PER_SQ_DIM,
    };
    // A walk dearer than that scan of every code is not worth measuring: the scan ranks every
    // row by the same codes, so it finds what any walk finds, and it closes the ladder.
    let scan_all_us = (partitions as f32 * sdim as f32 * NS_PER_FLOAT
        + index.num_rows() as f32 * scanned_ns)
        / 1000.0;
    // The cheapest cost of a walk visiting `visited` nodes a query (its least refine).
    let walk_cost_us = |visited: f32, refine: u32| {
        (partitions as f32 * sdim as f32 * NS_PER_FLOAT
            + visited * (NS_PER_VISIT + sdim as f32 * NS_PER_FLOAT)
            + (k * refine as usize) as f32 * (NS_PER_REFINED_ROW + sdim as f32 * NS_PER_FLOAT))
            / 1000.0
    };
    // A walk dearer than this is never worth it (larger `ef` only costs more).
    let walk_limit_us = scan_all_us.min(exact.cost_us);
    let least_refine = refines.iter().copied().min().unwrap_or(1);
    for &nprobes in &probes {
        // Measures one `ef` (0: a scan of every probed code): its points, the best recall of
        // any refine factor, whether one reaches the target, and the nodes a query visited.
        let measure = |ef: u32, all: &mut Vec<CalibrationPoint>| -> (f32, bool, f32) {
            // Per query: hits per refine factor, and distances computed.
            let measured: Vec<(Vec<u32>, u64)> = queries
                .par_iter()
                .map(|(answers, self_row, query, order)| {
                    let allow = |row: u64| row != *self_row;
                    let mut query = query.clone();
                    let (mut found, mut computed) = (Vec::new(), 0u64);
                    let mut distances = Vec::new();
                    for &p in order.iter().take(nprobes) {
                        let Some(part) = index.resident_partition(p) else {
                            continue;
                        };
                        if ef == 0 {
                            index.partition_distances(p, part, &mut query, &mut distances);
                            computed += part.len() as u64;
                            let mut scanned: Vec<Candidate> = distances
                                .iter()
                                .zip(&part.row_ids)
                                .filter(|(_, &row)| row != *self_row)
                                .map(|(&distance, &row_id)| Candidate { distance, row_id })
                                .collect();
                            let keep = want.min(scanned.len());
                            if keep > 0 {
                                scanned.select_nth_unstable(keep - 1);
                                scanned.truncate(keep);
                            }
                            found.extend(scanned);
                        } else {
                            let (f, c) = index.graph_search(
                                p,
                                part,
                                &query,
                                ef as usize,
                                want.min(ef as usize).max(k),
                                &allow,
                                Some(*self_row),
                            );
                            found.extend(f);
                            computed += c;
                        }
                    }
                    found.sort_unstable();
                    let mut hits = vec![0u32; refines.len()];
                    for (h, &refine) in hits.iter_mut().zip(refines) {
                        let take = (k * refine as usize).min(found.len());
                        *h = found[..take]
                            .iter()
                            .filter(|c| answers.contains(&c.row_id))
                            .count()
                            .min(k) as u32;
                    }
                    (hits, computed)
                })
                .collect();
            let visited = measured.iter().map(|m| m.1).sum::<u64>() as f32 / n;
            let (mut best, mut reaches) = (0f32, false);
            for (r, &refine) in refines.iter().enumerate() {
                let (recall, stderr) = mean_and_stderr(measured.iter().map(|m| m.0[r]), k);
                best = best.max(recall);
                reaches |= recall - MARGIN_STDERRS * stderr >= target_recall;
                let cost_us = if ef == 0 {
                    walk_cost_us(0.0, refine) + visited * scanned_ns / 1000.0
                } else {
                    walk_cost_us(visited, refine)
                };
                all.push(CalibrationPoint {
                    nprobes: nprobes as u32,
                    ef,
                    refine,
                    recall,
                    stderr,
                    cost_us,
                });
            }
            (best, reaches, visited)
        };
        // `ef` ascending until recall is all but perfect or a walk would cost more than the
        // limit (predicted from the last walk: visits grow at most about in proportion to
        // `ef`), then the scan of every code unless a walk came near 100%.
        let (mut last_walk, mut before, mut reached) = (None::<(u32, f32)>, None, None);
        let mut perfect = false;
        for &ef in &steps {
            if let Some((last_ef, visited)) = last_walk {
                let predicted = (visited * ef as f32 / last_ef as f32).min(index.num_rows() as f32);
                if walk_cost_us(predicted, least_refine) > walk_limit_us {
                    break;
                }
            }
            let (best, reaches, visited) = measure(ef, &mut all);
            if reaches && reached.is_none() {
                reached = Some((before, ef));
            }
            before = Some(ef);
            last_walk = Some((ef, visited));
            if best >= STOP_RECALL {
                perfect = true;
                break;
            }
            if walk_cost_us(visited, least_refine) > walk_limit_us {
                break;
            }
        }
        if let Some((before, ef)) = reached {
            measure(ef_between(before, ef), &mut all);
        }
        if !perfect {
            measure(0, &mut all);
        }
    }
    Some(Calibration {
        target_recall,
        queries: queries.len() as u32,
        k: k as u32,
        graph: true,
        points: frontier(all, exact),
    })
}

/// Mean recall of queries finding `hits` of their `k` neighbours, and its standard error.
fn mean_and_stderr(hits: impl Iterator<Item = u32>, k: usize) -> (f32, f32) {
    let (mut n, mut sum, mut squares) = (0f64, 0f64, 0f64);
    for h in hits {
        let r = f64::from(h) / k.max(1) as f64;
        n += 1.0;
        sum += r;
        squares += r * r;
    }
    if n == 0.0 {
        return (0.0, 0.0);
    }
    let mean = sum / n;
    let variance = (squares / n - mean * mean).max(0.0) * n / (n - 1.0).max(1.0);
    (mean as f32, (variance / n).sqrt() as f32)
}

/// The index settings on the cost/recall frontier (by cost, each kept only when it beats
/// every cheaper one's recall), then `exact` unless an index setting is perfect already.
/// Exact search comes last whatever its estimated cost ([`Calibration::pick`] weighs it).
fn frontier(mut all: Vec<CalibrationPoint>, exact: CalibrationPoint) -> Vec<CalibrationPoint> {
    all.sort_by(|a, b| a.cost_us.total_cmp(&b.cost_us));
    let mut points: Vec<CalibrationPoint> = Vec::new();
    for p in all {
        if points.last().is_none_or(|last| p.recall > last.recall) {
            points.push(p);
        }
    }
    if points.last().is_none_or(|last| last.recall < 1.0) {
        points.push(exact);
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_count_follows_the_budget() {
        assert_eq!(query_count(999, 768, false), 0);
        assert_eq!(query_count(999, 768, true), 0);
        assert_eq!(query_count(10_000, 128, false), MAX_QUERIES);
        assert_eq!(query_count(100_000, 384, false), 104);
        assert_eq!(query_count(1_000_000, 768, false), MIN_QUERIES);
        assert_eq!(query_count(1_000_000, 768, true), MAX_QUERIES);
    }

    #[test]
    fn ef_steps_double_and_grow_with_the_graph() {
        let small = ef_steps(10_000);
        assert_eq!(small.last(), Some(&512));
        assert!(!small.contains(&1024));
        let large = ef_steps(1_000_000);
        assert!(large.contains(&4096) && large.contains(&8192));
        assert!(large.windows(2).all(|w| w[1] == 2 * w[0]));
        assert_eq!(ef_between(None, 16), 10);
        assert_eq!(ef_between(Some(32), 64), 48);
        assert_eq!(ef_between(Some(512), 1024), 768);
    }

    #[test]
    fn probe_steps_cover_every_partition_count() {
        assert_eq!(probe_steps(1), vec![1]);
        assert_eq!(probe_steps(5), vec![1, 2, 3, 4, 5]);
        let steps = probe_steps(1000);
        assert!(steps.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(steps.last(), Some(&1000));
        assert!(steps.len() < 40);
    }

    #[test]
    fn picks_the_cheapest_point_reaching_the_target() {
        let point = |nprobes, recall, cost_us| CalibrationPoint {
            stderr: 0.0,
            nprobes,
            ef: 0,
            refine: 4,
            recall,
            cost_us,
        };
        let c = Calibration {
            target_recall: 0.95,
            queries: 100,
            k: 10,
            graph: false,
            points: vec![
                point(5, 0.8, 10.0),
                point(10, 0.96, 20.0),
                point(20, 0.99, 40.0),
            ],
        };
        assert_eq!(c.chosen().map(|p| p.nprobes), Some(10));
        assert_eq!(c.pick(0.99).map(|p| p.nprobes), Some(20));
        assert_eq!(
            c.pick(0.999).map(|p| p.nprobes),
            Some(20),
            "best when none reaches"
        );
        assert_eq!(c.pick(0.5).map(|p| p.nprobes), Some(5));
        let back = Calibration::from_proto(&c.to_proto()).expect("decodes");
        assert_eq!(back, c);
        // 0.96 measured with a standard error of 0.004 does not clear 0.95 by the margin.
        let mut unsure = c.clone();
        unsure.points[1].stderr = 0.004;
        assert_eq!(unsure.chosen().map(|p| p.nprobes), Some(20));
        unsure.points[1].stderr = 0.003;
        assert_eq!(unsure.chosen().map(|p| p.nprobes), Some(10));
        // Exact search closes the curve: chosen where it is cheaper than the setting that
        // reaches the target, or where none does.
        let mut closed = c.clone();
        closed.points.push(CalibrationPoint {
            nprobes: 0,
            refine: 0,
            stderr: 0.0,
            ..point(0, 1.0, 30.0)
        });
        assert_eq!(closed.chosen().map(|p| p.nprobes), Some(10));
        assert_eq!(closed.pick(0.99).map(|p| p.nprobes), Some(0));
        assert_eq!(closed.pick(0.999).map(|p| p.nprobes), Some(0));
    }

    #[test]
    fn ground_truth_excludes_the_query_row() {
        // Rows 0..100 on a line; the query is row 10 itself.
        let rows: Vec<f32> = (0..100).map(|i| i as f32).collect();
        let ids: Vec<u64> = (0..100).collect();
        let mut truth = GroundTruth::new(1, DistanceType::L2, vec![10.0], vec![10]);
        truth.add(&rows[..50], &ids[..50]);
        truth.add(&rows[50..], &ids[50..]);
        let mut nearest = truth.answers(0);
        nearest.sort_unstable();
        assert_eq!(nearest, vec![5, 6, 7, 8, 9, 11, 12, 13, 14, 15]);
    }

    #[test]
    fn rows_tied_with_the_kth_are_right_answers() {
        // Thirty copies of each of four vectors; the query is a copy of the first.
        let rows: Vec<f32> = (0..120).map(|i| (i % 4) as f32 * 10.0).collect();
        let ids: Vec<u64> = (0..120).collect();
        let mut truth = GroundTruth::new(1, DistanceType::L2, vec![0.0], vec![0]);
        truth.add(&rows, &ids);
        let answers = truth.answers(0);
        assert_eq!(answers.len(), 29, "every other copy: {answers:?}");
        assert!(answers.iter().all(|r| r % 4 == 0 && *r != 0));
        // A hundred copies: more right answers than are kept, so the query is left out.
        let rows: Vec<f32> = (0..400).map(|i| (i % 4) as f32 * 10.0).collect();
        let ids: Vec<u64> = (0..400).collect();
        let mut truth = GroundTruth::new(1, DistanceType::L2, vec![0.0], vec![0]);
        truth.add(&rows, &ids);
        assert!(truth.answers(0).is_empty());
    }
}
