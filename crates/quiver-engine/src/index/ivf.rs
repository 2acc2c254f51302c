//! The IVF model (inverted file: vectors grouped by nearest centroid) with PQ codes or flat
//! vectors per partition, its file format, and the partition scan of a search.
//!
//! Files (FORMAT.md §6) are containers like the scalar indexes': part 0 the model (centroids,
//! partition offsets, PQ codebooks), then one part per partition (row addresses and codes or
//! vectors), so a search reads only the partitions it probes, each through the index cache.
//! Files of the earlier one-block layout still read (whole).
//!
//! Vectors are compared in a "training space": float vectors as f32 (normalised for cosine,
//! so squared l2 between them is twice the cosine distance), binary vectors (hamming) with
//! each bit unpacked to a 0/1 value (squared l2 is then the hamming distance). Centroids live
//! in that space.

use arrow_array::cast::AsArray;
use arrow_array::types::{Float16Type, Float32Type, Float64Type, Int8Type, UInt8Type};
use arrow_array::{Array, FixedSizeListArray};
use std::collections::HashSet;
use std::sync::Arc;

use arrow_schema::DataType;
use bytes::Bytes;
use object_store::path::Path;

use super::calibrate::{Calibration, CalibrationProto};
use super::hnsw::{Graph, GraphSpace, HnswParams, Visited};
use super::pq::{self, ProductQuantizer, CODES};
use super::rq::{self, RabitQuantizer};
use super::scalar::{Container, ContainerWriter, KeyKind};
use super::sq::{ScalarQuantizer, SqQuery};
use super::{PartContext, RowTranslate};
use crate::error::{Error, Result};
use crate::format::{decode_block_message, encode_block};
use crate::linalg::{self, DistanceType};
use crate::storage::Storage;
use crate::vocab::Candidate;

/// Which index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexKind {
    IvfPq,
    IvfFlat,
    /// An HNSW graph per partition over 8-bit scalar-quantized vectors.
    IvfHnswSq,
    /// RaBitQ codes of the residuals (1 to 8 bits per dimension).
    IvfRq,
    /// An HNSW graph per partition over PQ codes of the residuals.
    IvfHnswPq,
}

impl IndexKind {
    pub fn name(self) -> &'static str {
        match self {
            IndexKind::IvfPq => "IVF_PQ",
            IndexKind::IvfFlat => "IVF_FLAT",
            IndexKind::IvfHnswSq => "IVF_HNSW_SQ",
            IndexKind::IvfRq => "IVF_RQ",
            IndexKind::IvfHnswPq => "IVF_HNSW_PQ",
        }
    }

    /// Whether searches walk a graph (and `ef` acts).
    pub fn is_graph(self) -> bool {
        matches!(self, IndexKind::IvfHnswSq | IndexKind::IvfHnswPq)
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "IVF_PQ" => Some(IndexKind::IvfPq),
            "IVF_FLAT" => Some(IndexKind::IvfFlat),
            "IVF_HNSW_SQ" => Some(IndexKind::IvfHnswSq),
            "IVF_RQ" => Some(IndexKind::IvfRq),
            "IVF_HNSW_PQ" => Some(IndexKind::IvfHnswPq),
            _ => None,
        }
    }
}

pub fn distance_name(d: DistanceType) -> &'static str {
    match d {
        DistanceType::L2 => "l2",
        DistanceType::Cosine => "cosine",
        DistanceType::Dot => "dot",
        DistanceType::Hamming => "hamming",
    }
}

/// Width of a column's vectors in the training space.
pub fn space_dim(dim: usize, distance: DistanceType) -> usize {
    if distance == DistanceType::Hamming {
        dim * 8
    } else {
        dim
    }
}

/// Converts the vectors of `array` to the training space, appending to `out`; returns, for
/// each row, whether it was converted (null vectors and vectors holding NaN or infinity are
/// skipped: no search can rank them). Raw vectors are appended to `raw_f32` (flat float
/// indexes) or `raw_bytes` (hamming) when given.
pub fn to_space(
    array: &FixedSizeListArray,
    distance: DistanceType,
    out: &mut Vec<f32>,
    mut raw_f32: Option<&mut Vec<f32>>,
    mut raw_bytes: Option<&mut Vec<u8>>,
    kept: &mut Vec<bool>,
) -> Result<()> {
    let dim = array.value_length() as usize;
    let values = array.values();
    let start = array.offset() * dim;
    let rows = array.len();
    let mut row = vec![0f32; dim];
    kept.clear();
    for i in 0..rows {
        if array.is_null(i) {
            kept.push(false);
            continue;
        }
        let range = start + i * dim..start + (i + 1) * dim;
        if distance == DistanceType::Hamming {
            let bytes = &values.as_primitive::<UInt8Type>().values()[range];
            for &b in bytes {
                for bit in 0..8 {
                    out.push(((b >> bit) & 1) as f32);
                }
            }
            if let Some(raw) = raw_bytes.as_deref_mut() {
                raw.extend_from_slice(bytes);
            }
            kept.push(true);
            continue;
        }
        match values.data_type() {
            DataType::Float32 => {
                row.copy_from_slice(&values.as_primitive::<Float32Type>().values()[range])
            }
            DataType::Float16 => {
                let v = &values.as_primitive::<Float16Type>().values()[range];
                row.iter_mut().zip(v).for_each(|(o, x)| *o = x.to_f32());
            }
            DataType::Float64 => {
                let v = &values.as_primitive::<Float64Type>().values()[range];
                row.iter_mut().zip(v).for_each(|(o, x)| *o = *x as f32);
            }
            DataType::UInt8 => {
                let v = &values.as_primitive::<UInt8Type>().values()[range];
                row.iter_mut().zip(v).for_each(|(o, x)| *o = *x as f32);
            }
            DataType::Int8 => {
                let v = &values.as_primitive::<Int8Type>().values()[range];
                row.iter_mut().zip(v).for_each(|(o, x)| *o = *x as f32);
            }
            other => return Err(Error::invalid(format!("cannot index vectors of {other}"))),
        }
        if row.iter().any(|v| !v.is_finite()) {
            kept.push(false);
            continue;
        }
        if let Some(raw) = raw_f32.as_deref_mut() {
            raw.extend_from_slice(&row);
        }
        if distance == DistanceType::Cosine {
            normalize(&mut row);
        }
        out.extend_from_slice(&row);
        kept.push(true);
    }
    Ok(())
}

/// Scales `v` to unit length (zero vectors stay zero).
pub fn normalize(v: &mut [f32]) {
    let norm = linalg::dot(v, v).sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// The rows of one partition: their addresses and what the index stores of each.
#[derive(Debug, Clone)]
pub struct Partition {
    pub row_ids: Vec<u64>,
    pub data: PartitionData,
}

/// What a partition stores per row.
#[derive(Debug, Clone)]
pub enum PartitionData {
    /// `m` PQ code bytes per row.
    Pq(Vec<u8>),
    /// The vectors themselves, as f32.
    FlatF32(Vec<f32>),
    /// Binary vectors (hamming), as bytes.
    FlatBytes(Vec<u8>),
    /// Scalar-quantized vectors (one byte per dimension) and the graph linking them (node
    /// `i` is row `i` of the partition).
    HnswSq { codes: Vec<u8>, graph: Graph },
    /// PQ codes and the graph linking them.
    HnswPq { codes: Vec<u8>, graph: Graph },
    /// RaBitQ codes (bit planes) and [`rq::FACTORS`] floats per row.
    Rq { codes: Vec<u8>, factors: Vec<f32> },
}

impl Partition {
    pub fn len(&self) -> usize {
        self.row_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.row_ids.is_empty()
    }

    pub fn heap_bytes(&self) -> usize {
        64 + self.row_ids.len() * 8
            + match &self.data {
                PartitionData::Pq(c) | PartitionData::FlatBytes(c) => c.len(),
                PartitionData::FlatF32(v) => v.len() * 4,
                PartitionData::HnswSq { codes, graph } | PartitionData::HnswPq { codes, graph } => {
                    codes.len() + graph.heap_bytes()
                }
                PartitionData::Rq { codes, factors } => codes.len() + factors.len() * 4,
            }
    }

    /// The stored form (FORMAT.md §6): row addresses (u64 LE), then the per-row data.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.heap_bytes());
        for r in &self.row_ids {
            out.extend_from_slice(&r.to_le_bytes());
        }
        match &self.data {
            PartitionData::Pq(c) | PartitionData::FlatBytes(c) => out.extend_from_slice(c),
            PartitionData::FlatF32(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            PartitionData::HnswSq { codes, graph } | PartitionData::HnswPq { codes, graph } => {
                out.extend_from_slice(codes);
                graph.encode(&mut out);
            }
            PartitionData::Rq { codes, factors } => {
                out.extend_from_slice(codes);
                factors.iter().for_each(|x| out.extend(x.to_le_bytes()));
            }
        }
        out
    }
}

/// Where a loaded index keeps its partitions.
#[derive(Debug)]
enum Partitions {
    /// All in memory: an index just assembled, or read from a one-block file (the layout
    /// before partitions were stored apart).
    Resident(Vec<Arc<Partition>>),
    /// In a container file, read one partition at a time through the index cache.
    Stored {
        container: Box<Container>,
        /// Fragments the index was built over: a partition holding a row of another is corrupt.
        covered: HashSet<u64>,
    },
}

/// An IVF index: the model (centroids, partition sizes, PQ codebooks) always in memory, the
/// partitions in memory or loaded on demand.
#[derive(Debug)]
pub struct IvfIndex {
    pub kind: IndexKind,
    pub distance: DistanceType,
    /// Elements per vector of the column.
    pub dim: usize,
    /// `partitions × space_dim` centroids.
    pub centroids: Vec<f32>,
    /// Partition `p` holds rows `offsets[p]..offsets[p + 1]` of the index's row order.
    pub offsets: Vec<usize>,
    pub quantizer: Option<ProductQuantizer>,
    /// IVF_HNSW_SQ: the scalar quantizer and how the graphs were built.
    pub sq: Option<ScalarQuantizer>,
    pub hnsw: Option<HnswParams>,
    /// IVF_RQ: the quantizer and the centroids rotated by it.
    pub rq: Option<RqModel>,
    /// Search settings measured at build time (none for small tables and older files).
    pub calibration: Option<Calibration>,
    partitions: Partitions,
}

/// An IVF_RQ index's quantizer, and its centroids in the rotated space (residuals are coded
/// there).
#[derive(Debug, Clone)]
pub struct RqModel {
    pub quantizer: RabitQuantizer,
    pub rotated_centroids: Vec<f32>,
}

impl RqModel {
    pub fn new(quantizer: RabitQuantizer, centroids: &[f32]) -> Self {
        let rotated_centroids = quantizer.rotate_rows(centroids);
        RqModel {
            quantizer,
            rotated_centroids,
        }
    }
}

/// The stored model (protobuf, FORMAT.md §6). In a container it is part 0 and `row_ids` and
/// `payload` are empty; a one-block file (the earlier layout) holds everything in it.
#[derive(Clone, PartialEq, prost::Message)]
struct IvfFileProto {
    #[prost(string, tag = "1")]
    kind: String,
    #[prost(string, tag = "2")]
    distance: String,
    #[prost(uint32, tag = "3")]
    dim: u32,
    #[prost(uint32, tag = "4")]
    num_partitions: u32,
    /// f32 little-endian, `partitions × space_dim`.
    #[prost(bytes = "bytes", tag = "5")]
    centroids: Bytes,
    /// First row of each partition, then the row count.
    #[prost(uint64, repeated, tag = "6")]
    offsets: Vec<u64>,
    /// u64 little-endian row addresses, grouped by partition (one-block files only).
    #[prost(bytes = "bytes", tag = "7")]
    row_ids: Bytes,
    #[prost(uint32, tag = "8")]
    pq_sub_vectors: u32,
    /// f32 little-endian, `m × sub_dim × 256` (transposed codebooks).
    #[prost(bytes = "bytes", tag = "9")]
    pq_codebooks: Bytes,
    /// PQ codes (`rows × m`), binary vectors (`rows × dim`) or f32 vectors (`rows × dim × 4`)
    /// (one-block files only).
    #[prost(bytes = "bytes", tag = "10")]
    payload: Bytes,
    #[prost(message, optional, tag = "11")]
    calibration: Option<CalibrationProto>,
    /// IVF_HNSW_SQ: f32 LE per dimension of the training space: code 0's value, the step.
    #[prost(bytes = "bytes", tag = "12")]
    sq_min: Bytes,
    #[prost(bytes = "bytes", tag = "13")]
    sq_scale: Bytes,
    /// IVF_HNSW_SQ: links per node on upper layers (2m on layer 0), and the build's ef.
    #[prost(uint32, tag = "14")]
    hnsw_m: u32,
    #[prost(uint32, tag = "15")]
    hnsw_ef_construction: u32,
    /// IVF_RQ: bits per dimension, and the rotation (f32 LE, `space_dim²`, row-major).
    #[prost(uint32, tag = "16")]
    rq_bits: u32,
    #[prost(bytes = "bytes", tag = "17")]
    rq_rotation: Bytes,
}

fn f32_bytes(v: &[f32]) -> Bytes {
    Bytes::from(v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn u64s(b: &[u8]) -> Vec<u64> {
    b.chunks_exact(8)
        .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect()
}

/// The model of a decoded file, checked: names known, sizes consistent with each other.
struct Model {
    kind: IndexKind,
    distance: DistanceType,
    dim: usize,
    centroids: Vec<f32>,
    offsets: Vec<usize>,
    quantizer: Option<ProductQuantizer>,
    sq: Option<ScalarQuantizer>,
    hnsw: Option<HnswParams>,
    rq: Option<RabitQuantizer>,
    calibration: Option<Calibration>,
}

impl Model {
    fn into_index(self, partitions: Partitions) -> IvfIndex {
        IvfIndex {
            kind: self.kind,
            distance: self.distance,
            dim: self.dim,
            offsets: self.offsets,
            quantizer: self.quantizer,
            sq: self.sq,
            hnsw: self.hnsw,
            rq: self.rq.map(|q| RqModel::new(q, &self.centroids)),
            calibration: self.calibration,
            centroids: self.centroids,
            partitions,
        }
    }

    fn rows(&self) -> usize {
        self.offsets.last().copied().unwrap_or(0)
    }

    fn layout(&self) -> RowLayout {
        RowLayout::of(
            self.dim,
            self.distance,
            self.quantizer.as_ref(),
            self.sq.as_ref(),
            self.hnsw,
            self.rq.as_ref(),
        )
    }
}

/// How a partition stores each row after its address.
#[derive(Debug, Clone, Copy)]
enum RowLayout {
    Pq {
        m: usize,
    },
    FlatBytes {
        dim: usize,
    },
    FlatF32 {
        dim: usize,
    },
    /// Codes of `width` bytes, then the graph (of `m` links per upper-layer node).
    HnswSq {
        width: usize,
        m: usize,
    },
    HnswPq {
        width: usize,
        m: usize,
    },
    /// Codes of `width` bytes, then the factors.
    Rq {
        width: usize,
    },
}

impl RowLayout {
    fn of(
        dim: usize,
        distance: DistanceType,
        quantizer: Option<&ProductQuantizer>,
        sq: Option<&ScalarQuantizer>,
        hnsw: Option<HnswParams>,
        rq: Option<&RabitQuantizer>,
    ) -> RowLayout {
        match (quantizer, sq, hnsw, rq) {
            (Some(q), _, Some(h), _) => RowLayout::HnswPq { width: q.m, m: h.m },
            (Some(q), ..) => RowLayout::Pq { m: q.m },
            (None, Some(sq), Some(h), _) => RowLayout::HnswSq {
                width: sq.dim(),
                m: h.m,
            },
            (None, _, _, Some(rq)) => RowLayout::Rq {
                width: rq.code_width(),
            },
            _ if distance == DistanceType::Hamming => RowLayout::FlatBytes { dim },
            _ => RowLayout::FlatF32 { dim },
        }
    }

    /// Bytes per row besides the address (a graph comes after the rows).
    fn row_width(self) -> usize {
        match self {
            RowLayout::Pq { m } => m,
            RowLayout::FlatBytes { dim } => dim,
            RowLayout::FlatF32 { dim } => dim * 4,
            RowLayout::HnswSq { width, .. } | RowLayout::HnswPq { width, .. } => width,
            RowLayout::Rq { width } => width + rq::FACTORS * 4,
        }
    }
}

fn decode_model(proto: &IvfFileProto, path: &Path) -> Result<Model> {
    let bad = |what: &str| Error::corrupt(path, format!("vector index: {what}"));
    let kind = IndexKind::parse(&proto.kind).ok_or_else(|| bad("unknown index kind"))?;
    let distance: DistanceType = proto
        .distance
        .parse()
        .map_err(|_| bad("unknown distance type"))?;
    let dim = proto.dim as usize;
    let parts = proto.num_partitions as usize;
    let sdim = size(&[dim, space_dim(1, distance)]).ok_or_else(|| bad("vectors are too long"))?;
    if dim == 0 || parts == 0 || size(&[parts, sdim, 4]) != Some(proto.centroids.len()) {
        return Err(bad("centroids do not match the dimensions"));
    }
    let offsets = proto
        .offsets
        .iter()
        .map(|&o| usize::try_from(o))
        .collect::<std::result::Result<Vec<usize>, _>>()
        .map_err(|_| bad("partition offsets do not match the rows"))?;
    if offsets.len() != parts + 1
        || offsets[0] != 0
        || offsets.windows(2).any(|w| w[0] > w[1])
        || offsets
            .last()
            .is_some_and(|&rows| size(&[rows, 8]).is_none())
    {
        return Err(bad("partition offsets do not match the rows"));
    }
    let quantizer = match kind {
        IndexKind::IvfPq | IndexKind::IvfHnswPq => {
            let m = proto.pq_sub_vectors as usize;
            if m == 0
                || !sdim.is_multiple_of(m)
                || size(&[sdim, CODES, 4]) != Some(proto.pq_codebooks.len())
            {
                return Err(bad("PQ codebooks do not match the dimensions"));
            }
            Some(ProductQuantizer {
                dim: sdim,
                m,
                codebooks: f32s(&proto.pq_codebooks),
            })
        }
        IndexKind::IvfFlat | IndexKind::IvfHnswSq | IndexKind::IvfRq => None,
    };
    let rq = match kind {
        IndexKind::IvfRq => {
            let bits = proto.rq_bits;
            if distance == DistanceType::Hamming
                || !(1..=rq::MAX_BITS).contains(&bits)
                || sdim > rq::MAX_DIM
                || size(&[sdim, sdim, 4]) != Some(proto.rq_rotation.len())
            {
                return Err(bad("the RaBitQ rotation does not match the dimensions"));
            }
            Some(RabitQuantizer {
                dim: sdim,
                bits,
                rotation: f32s(&proto.rq_rotation),
            })
        }
        _ => None,
    };
    let hnsw = match kind {
        IndexKind::IvfHnswSq | IndexKind::IvfHnswPq => {
            let (m, ef) = (proto.hnsw_m as usize, proto.hnsw_ef_construction as usize);
            if distance == DistanceType::Hamming
                || !(MIN_HNSW_M..=MAX_HNSW_M).contains(&m)
                || ef > MAX_EF
            {
                return Err(bad("graph parameters out of range"));
            }
            Some(HnswParams {
                m,
                ef_construction: ef,
            })
        }
        _ => None,
    };
    let sq = match kind {
        IndexKind::IvfHnswSq => {
            if size(&[sdim, 4]) != Some(proto.sq_min.len())
                || proto.sq_scale.len() != proto.sq_min.len()
            {
                return Err(bad("the scalar quantizer does not match the dimensions"));
            }
            Some(ScalarQuantizer {
                min: f32s(&proto.sq_min),
                scale: f32s(&proto.sq_scale),
            })
        }
        _ => None,
    };
    Ok(Model {
        kind,
        distance,
        dim,
        centroids: f32s(&proto.centroids),
        offsets,
        quantizer,
        sq,
        hnsw,
        rq,
        calibration: proto.calibration.as_ref().and_then(Calibration::from_proto),
    })
}

/// Largest `ef` a graph build accepts.
pub const MAX_EF: usize = 100_000;
/// Links per node a graph may have on its upper layers.
pub const MIN_HNSW_M: usize = 2;
pub const MAX_HNSW_M: usize = 256;

/// Sizes from a file are multiplied checked: a crafted file must not wrap them.
fn size(factors: &[usize]) -> Option<usize> {
    factors.iter().try_fold(1usize, |a, &f| a.checked_mul(f))
}

/// Decodes the per-row data of `rows` rows laid out as [`Partition::encode`] writes them.
fn decode_rows(layout: RowLayout, rows: usize, bytes: &[u8], path: &Path) -> Result<Partition> {
    let width = layout.row_width();
    let fixed = size(&[rows, 8 + width]);
    let fits = match layout {
        RowLayout::HnswSq { .. } | RowLayout::HnswPq { .. } => {
            fixed.is_some_and(|f| f <= bytes.len())
        }
        _ => fixed == Some(bytes.len()),
    };
    if !fits {
        return Err(Error::corrupt(
            path,
            "vector index: a partition does not hold the rows its offsets give",
        ));
    }
    let (ids, data) = bytes.split_at(rows * 8);
    let data = match layout {
        RowLayout::Pq { .. } => PartitionData::Pq(data.to_vec()),
        RowLayout::HnswSq { m, .. } | RowLayout::HnswPq { m, .. } => {
            let (codes, graph) = data.split_at(rows * width);
            let graph = Graph::decode(graph, rows, m).ok_or_else(|| {
                Error::corrupt(path, "vector index: a partition's graph does not decode")
            })?;
            let codes = codes.to_vec();
            if matches!(layout, RowLayout::HnswPq { .. }) {
                PartitionData::HnswPq { codes, graph }
            } else {
                PartitionData::HnswSq { codes, graph }
            }
        }
        RowLayout::Rq { width } => {
            let (codes, factors) = data.split_at(rows * width);
            PartitionData::Rq {
                codes: codes.to_vec(),
                factors: f32s(factors),
            }
        }
        RowLayout::FlatBytes { .. } => PartitionData::FlatBytes(data.to_vec()),
        RowLayout::FlatF32 { .. } => PartitionData::FlatF32(f32s(data)),
    };
    Ok(Partition {
        row_ids: u64s(ids),
        data,
    })
}

/// The part of a container holding partition `p` (part 0 is the model).
fn part_of(p: usize) -> usize {
    p + 1
}

impl IvfIndex {
    /// An index whose partitions are all in memory.
    pub(crate) fn resident(
        kind: IndexKind,
        distance: DistanceType,
        dim: usize,
        centroids: Vec<f32>,
        quantizer: Option<ProductQuantizer>,
        partitions: Vec<Partition>,
    ) -> Self {
        let mut offsets = Vec::with_capacity(partitions.len() + 1);
        offsets.push(0);
        for p in &partitions {
            offsets.push(offsets.last().copied().unwrap_or(0) + p.len());
        }
        IvfIndex {
            kind,
            distance,
            dim,
            centroids,
            offsets,
            quantizer,
            sq: None,
            hnsw: None,
            rq: None,
            calibration: None,
            partitions: Partitions::Resident(partitions.into_iter().map(Arc::new).collect()),
        }
    }

    pub fn num_partitions(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Rows the index holds (deleted ones included, until the next optimize).
    pub fn num_rows(&self) -> usize {
        self.offsets.last().copied().unwrap_or(0)
    }

    pub fn space_dim(&self) -> usize {
        space_dim(self.dim, self.distance)
    }

    pub fn num_sub_vectors(&self) -> usize {
        self.quantizer.as_ref().map_or(0, |q| q.m)
    }

    /// Partition `p` when it is held in memory.
    pub(crate) fn resident_partition(&self, p: usize) -> Option<&Partition> {
        match &self.partitions {
            Partitions::Resident(parts) => parts.get(p).map(|p| &**p),
            Partitions::Stored { .. } => None,
        }
    }

    /// The fragments of the rows a resident index holds.
    pub(crate) fn fragments_held(&self) -> Vec<u64> {
        let Partitions::Resident(parts) = &self.partitions else {
            return Vec::new();
        };
        let set: HashSet<u64> = parts
            .iter()
            .flat_map(|p| p.row_ids.iter().map(|r| r >> 32))
            .collect();
        set.into_iter().collect()
    }

    /// Whether partitions are read on demand (rather than all held in memory).
    pub fn is_stored(&self) -> bool {
        matches!(self.partitions, Partitions::Stored { .. })
    }

    /// Bytes held in memory (for the cache's weigher): the model, and resident partitions.
    pub fn heap_bytes(&self) -> usize {
        let model = self.centroids.len() * 4
            + self.offsets.len() * 8
            + self.quantizer.as_ref().map_or(0, |q| q.codebooks.len() * 4)
            + self.sq.as_ref().map_or(0, |sq| sq.dim() * 8)
            + self.rq.as_ref().map_or(0, |rq| {
                (rq.quantizer.rotation.len() + rq.rotated_centroids.len()) * 4
            });
        model
            + match &self.partitions {
                Partitions::Resident(parts) => parts.iter().map(|p| p.heap_bytes()).sum(),
                Partitions::Stored { container, covered } => {
                    container.heap_bytes() + covered.len() * 16
                }
            }
    }

    fn model_proto(&self) -> IvfFileProto {
        IvfFileProto {
            kind: self.kind.name().to_string(),
            distance: distance_name(self.distance).to_string(),
            dim: self.dim as u32,
            num_partitions: self.num_partitions() as u32,
            centroids: f32_bytes(&self.centroids),
            offsets: self.offsets.iter().map(|&o| o as u64).collect(),
            row_ids: Bytes::new(),
            pq_sub_vectors: self.num_sub_vectors() as u32,
            pq_codebooks: self
                .quantizer
                .as_ref()
                .map_or_else(Bytes::new, |q| f32_bytes(&q.codebooks)),
            payload: Bytes::new(),
            calibration: self.calibration.as_ref().map(Calibration::to_proto),
            sq_min: self
                .sq
                .as_ref()
                .map_or_else(Bytes::new, |sq| f32_bytes(&sq.min)),
            sq_scale: self
                .sq
                .as_ref()
                .map_or_else(Bytes::new, |sq| f32_bytes(&sq.scale)),
            hnsw_m: self.hnsw.map_or(0, |h| h.m as u32),
            hnsw_ef_construction: self.hnsw.map_or(0, |h| h.ef_construction as u32),
            rq_bits: self.rq.as_ref().map_or(0, |rq| rq.quantizer.bits),
            rq_rotation: self
                .rq
                .as_ref()
                .map_or_else(Bytes::new, |rq| f32_bytes(&rq.quantizer.rotation)),
        }
    }

    fn layout(&self) -> RowLayout {
        RowLayout::of(
            self.dim,
            self.distance,
            self.quantizer.as_ref(),
            self.sq.as_ref(),
            self.hnsw,
            self.rq.as_ref().map(|rq| &rq.quantizer),
        )
    }

    /// Writes a resident index to `path` as a container: the model, then one part per
    /// partition. Returns the file's size.
    pub(crate) async fn write(&self, storage: &Storage, path: &Path) -> Result<u64> {
        let Partitions::Resident(parts) = &self.partitions else {
            return Err(Error::Internal(
                "only an index held in memory is written".into(),
            ));
        };
        let mut writer = ContainerWriter::new(storage, path);
        let model = prost::Message::encode_to_vec(&self.model_proto());
        writer.part(model, 0, 0, Vec::new(), Vec::new()).await?;
        for part in parts {
            writer
                .part(part.encode(), part.len() as u64, 0, Vec::new(), Vec::new())
                .await?;
        }
        let (_, size) = writer.finish(self.kind.name(), KeyKind::Num).await?;
        Ok(size)
    }

    /// The file as the earlier one-block layout held it (kept for reading such files, and
    /// to test that they still read).
    pub fn encode_one_block(&self) -> Result<Bytes> {
        let Partitions::Resident(parts) = &self.partitions else {
            return Err(Error::Internal(
                "only an index held in memory is encoded".into(),
            ));
        };
        let mut proto = self.model_proto();
        let mut ids = Vec::new();
        let mut payload = Vec::new();
        for part in parts {
            let bytes = part.encode();
            let (i, d) = bytes.split_at(part.len() * 8);
            ids.extend_from_slice(i);
            payload.extend_from_slice(d);
        }
        proto.row_ids = Bytes::from(ids);
        proto.payload = Bytes::from(payload);
        Ok(Bytes::from(encode_block(prost::Message::encode_to_vec(
            &proto,
        ))))
    }

    /// Decodes and validates a one-block index file read from `path`.
    pub fn decode_one_block(bytes: &[u8], path: &Path) -> Result<Self> {
        let proto: IvfFileProto = decode_block_message(bytes, path, "vector index")?;
        let model = decode_model(&proto, path)?;
        let rows = model.rows();
        if size(&[rows, 8]) != Some(proto.row_ids.len()) {
            return Err(Error::corrupt(
                path,
                "vector index: partition offsets do not match the rows",
            ));
        }
        let layout = model.layout();
        if size(&[rows, layout.row_width()]) != Some(proto.payload.len()) {
            return Err(Error::corrupt(
                path,
                "vector index: the vectors or codes do not match the rows",
            ));
        }
        let width = layout.row_width();
        let mut partitions = Vec::with_capacity(model.offsets.len() - 1);
        let mut bytes = Vec::new();
        for w in model.offsets.windows(2) {
            let (start, end) = (w[0], w[1]);
            bytes.clear();
            bytes.extend_from_slice(&proto.row_ids[start * 8..end * 8]);
            bytes.extend_from_slice(&proto.payload[start * width..end * width]);
            partitions.push(Arc::new(decode_rows(layout, end - start, &bytes, path)?));
        }
        Ok(model.into_index(Partitions::Resident(partitions)))
    }

    /// Opens a container index file: its lookup and model (partitions load on demand).
    pub(crate) async fn open_stored(
        storage: &Storage,
        path: &Path,
        size_bytes: u64,
        kind: IndexKind,
        covered: &[u64],
        prefetch: super::scalar::Prefetch,
    ) -> Result<Self> {
        let head = prefetch.head.clone();
        let container =
            Container::open_prefetched(storage, path, size_bytes, kind.name(), prefetch).await?;
        let bad = |what: &str| Error::corrupt(path, format!("vector index: {what}"));
        if container.lookup.parts.is_empty() {
            return Err(bad("the file holds no model"));
        }
        let block = container.read_part_from(storage, 0, head.as_ref()).await?;
        let decode_path = path.clone();
        let model = tokio::task::spawn_blocking(move || -> Result<Model> {
            let proto: IvfFileProto = prost::Message::decode(block)
                .map_err(|e| Error::corrupt(&decode_path, format!("vector index model: {e}")))?;
            if !proto.row_ids.is_empty() || !proto.payload.is_empty() {
                return Err(Error::corrupt(
                    &decode_path,
                    "vector index: its model holds rows",
                ));
            }
            decode_model(&proto, &decode_path)
        })
        .await
        .map_err(|e| Error::Internal(format!("index load task failed: {e}")))??;
        let parts = model.offsets.len() - 1;
        if container.lookup.parts.len() != part_of(parts) {
            return Err(bad("its parts do not match its partitions"));
        }
        if (0..parts).any(|p| {
            container.lookup.parts[part_of(p)].entries
                != (model.offsets[p + 1] - model.offsets[p]) as u64
        }) {
            return Err(bad("its parts do not match its partition offsets"));
        }
        Ok(model.into_index(Partitions::Stored {
            container: Box::new(container),
            covered: covered.iter().copied().collect(),
        }))
    }

    /// Translates the row addresses of every resident partition (a one-block file, read
    /// whole); stored partitions are translated as they load.
    pub(crate) async fn translate_resident(
        &mut self,
        translate: &dyn RowTranslate,
        covered: &[u64],
        path: &Path,
    ) -> Result<()> {
        let Partitions::Resident(parts) = &mut self.partitions else {
            return Ok(());
        };
        let covered: HashSet<u64> = covered.iter().copied().collect();
        for part in parts.iter_mut() {
            check_covered(&part.row_ids, &covered, path)?;
            if !translate.is_identity() {
                let part = Arc::make_mut(part);
                translate.translate(&mut part.row_ids).await?;
            }
        }
        Ok(())
    }

    /// Reads and checks partition `p` of a stored index through `storage` (addresses not yet
    /// translated).
    async fn read_partition(&self, storage: &Storage, p: usize) -> Result<Partition> {
        let Partitions::Stored { container, covered } = &self.partitions else {
            return Err(Error::Internal("a resident partition was read".into()));
        };
        let bytes = container.read_part(storage, part_of(p)).await?;
        let rows = self.offsets[p + 1] - self.offsets[p];
        let path = container.path.clone();
        let part = decode_rows(self.layout(), rows, &bytes, &path)?;
        check_covered(&part.row_ids, covered, &path)?;
        Ok(part)
    }

    /// Partition `p`, its addresses translated for the version read, through the cache;
    /// the flag says whether this call read it from storage.
    pub(crate) async fn partition(
        &self,
        p: usize,
        parts: &PartContext<'_>,
    ) -> Result<(Arc<Partition>, bool)> {
        if let Partitions::Resident(resident) = &self.partitions {
            return Ok((resident[p].clone(), false));
        }
        let key = format!("{}#v{p}", parts.key);
        parts
            .cache
            .get_or_load(&key, async {
                let mut part = self.read_partition(parts.storage, p).await?;
                if !parts.translate.is_identity() {
                    parts.translate.translate(&mut part.row_ids).await?;
                }
                let bytes = part.heap_bytes();
                Ok((part, bytes))
            })
            .await
    }

    /// Every partition with translated addresses, read past the cache (an update reads each
    /// once; keeping them would push out what queries use).
    pub(crate) async fn all_partitions(
        &self,
        parts: &PartContext<'_>,
    ) -> Result<Vec<Arc<Partition>>> {
        if let Partitions::Resident(resident) = &self.partitions {
            return Ok(resident.clone());
        }
        let mut out = Vec::with_capacity(self.num_partitions());
        for p in 0..self.num_partitions() {
            let mut part = self.read_partition(parts.storage, p).await?;
            if !parts.translate.is_identity() {
                parts.translate.translate(&mut part.row_ids).await?;
            }
            out.push(Arc::new(part));
        }
        Ok(out)
    }

    /// The largest one-block file an index of these dimensions can be: its arrays, plus
    /// per field a tag and a length (11 bytes at most), 10 bytes at most per partition
    /// offset, the kind and distance names and the block trailer. `None` when the sizes
    /// overflow. A one-block file is checked against it (from the manifest's details) before
    /// it is read.
    /// About how many bytes the model (the file's first part) of an index so described
    /// takes: centroids, partition offsets, codebooks, and some room. Reading this much from
    /// the start of the file at open usually fetches the model with the lookup.
    pub fn model_size_hint(
        kind: IndexKind,
        distance: DistanceType,
        dim: u64,
        partitions: u64,
    ) -> u64 {
        let sdim = dim.saturating_mul(space_dim(1, distance) as u64);
        let codebook = match kind {
            IndexKind::IvfPq | IndexKind::IvfHnswPq => sdim.saturating_mul(CODES as u64 * 4),
            // The rotation, space_dim² f32.
            IndexKind::IvfRq => sdim.saturating_mul(sdim).saturating_mul(4),
            IndexKind::IvfHnswSq => sdim.saturating_mul(8),
            IndexKind::IvfFlat => 0,
        };
        let model = partitions
            .saturating_mul(sdim.saturating_mul(4).saturating_add(24))
            .saturating_add(codebook);
        // Generous: a short guess costs a round trip more, a long one some bytes.
        model
            .saturating_add(model / 8)
            .saturating_add(4096)
            .min(256 * 1024 * 1024)
    }

    pub fn max_file_size(
        kind: IndexKind,
        distance: DistanceType,
        dim: u64,
        partitions: u64,
        sub_vectors: u64,
        rows: u64,
    ) -> Option<u64> {
        let sdim = dim.checked_mul(space_dim(1, distance) as u64)?;
        let payload = match kind {
            IndexKind::IvfPq => sdim
                .checked_mul(CODES as u64 * 4)?
                .checked_add(rows.checked_mul(sub_vectors)?)?,
            IndexKind::IvfFlat if distance == DistanceType::Hamming => rows.checked_mul(dim)?,
            IndexKind::IvfFlat => rows.checked_mul(dim)?.checked_mul(4)?,
            // Graph indexes were never written in one block.
            IndexKind::IvfHnswSq | IndexKind::IvfRq | IndexKind::IvfHnswPq => return None,
        };
        [
            partitions.checked_mul(sdim)?.checked_mul(4)?,
            partitions.checked_add(1)?.checked_mul(10)?,
            rows.checked_mul(8)?,
            payload,
            256,
        ]
        .into_iter()
        .try_fold(0u64, |a, b| a.checked_add(b))
    }

    /// Partitions ordered nearest first for a query in the training space.
    pub fn rank_partitions(&self, space_query: &[f32]) -> Vec<usize> {
        let kernels = linalg::kernels();
        let mut distances = vec![0f32; self.num_partitions()];
        let kind = if self.distance == DistanceType::Dot {
            DistanceType::Dot
        } else {
            DistanceType::L2
        };
        kernels.distances_f32(kind, space_query, &self.centroids, &mut distances);
        let mut order: Vec<usize> = (0..distances.len()).collect();
        order.sort_unstable_by(|&a, &b| distances[a].total_cmp(&distances[b]));
        order
    }

    /// Distances of the rows of `part` (partition `p`) to the query, into `out`
    /// (approximate for PQ and RaBitQ: the distance type's value computed from the codes;
    /// RaBitQ also leaves each estimate's error bound in `query.bounds`).
    pub fn partition_distances(
        &self,
        p: usize,
        part: &Partition,
        query: &mut PreparedQuery,
        out: &mut Vec<f32>,
    ) {
        let kernels = linalg::kernels();
        let sdim = self.space_dim();
        query.bounds.clear();
        if let (PartitionData::Rq { codes, factors }, Some(rq)) = (&part.data, &self.rq) {
            self.rq_distances(p, rq, codes, factors, query, out);
            return;
        }
        match (&part.data, &self.quantizer) {
            (PartitionData::Pq(codes) | PartitionData::HnswPq { codes, .. }, Some(quantizer)) => {
                let m = quantizer.m;
                let centroid = &self.centroids[p * sdim..(p + 1) * sdim];
                if self.distance == DistanceType::Dot {
                    // −q·(c + r) = −q·c + Σ table; the table does not depend on the partition.
                    let base = -linalg::dot(&query.space, centroid);
                    pq::scan(codes, m, &query.table, base, out);
                } else {
                    query.residual.clear();
                    query
                        .residual
                        .extend(query.space.iter().zip(centroid).map(|(q, c)| q - c));
                    quantizer.l2_table(&query.residual, &mut query.table);
                    pq::scan(codes, m, &query.table, 0.0, out);
                    if self.distance == DistanceType::Cosine {
                        // Unit vectors: ‖a − b‖² = 2 (1 − cos).
                        out.iter_mut().for_each(|d| *d *= 0.5);
                    }
                }
            }
            (PartitionData::FlatF32(vectors), _) => {
                out.clear();
                out.resize(part.len(), 0.0);
                kernels.distances_f32(self.distance, &query.raw, vectors, out);
            }
            (PartitionData::FlatBytes(bytes), _) => {
                out.clear();
                out.resize(part.len(), 0.0);
                kernels.hamming_rows(&query.bytes, bytes, out);
            }
            (PartitionData::HnswSq { codes, .. }, _) => {
                out.clear();
                if let (Some(sq), Some(q)) = (&self.sq, &query.sq) {
                    let width = sq.dim();
                    out.extend(codes.chunks_exact(width).map(|c| sq.distance(q, c)));
                }
                out.resize(part.len(), f32::INFINITY);
            }
            (PartitionData::Pq(_) | PartitionData::HnswPq { .. }, None)
            | (PartitionData::Rq { .. }, _) => {
                // Decoding never pairs codes with a model without their quantizer.
                out.clear();
                out.resize(part.len(), f32::INFINITY);
            }
        }
    }

    /// RaBitQ distance estimates of a partition's rows, and their error bounds.
    fn rq_distances(
        &self,
        p: usize,
        rq: &RqModel,
        codes: &[u8],
        factors: &[f32],
        query: &mut PreparedQuery,
        out: &mut Vec<f32>,
    ) {
        let quantizer = &rq.quantizer;
        let (sdim, width) = (self.space_dim(), quantizer.code_width());
        let rows = factors.len() / rq::FACTORS;
        let centroid = rq.rotated_centroids.get(p * sdim..(p + 1) * sdim);
        let (Some(centroid), true) = (centroid, width > 0 && codes.len() == rows * width) else {
            out.clear();
            out.resize(rows, f32::INFINITY);
            return;
        };
        quantizer.scan(codes, &query.table, out);
        let PreparedQuery {
            bounds,
            rotated,
            rq_sum,
            rq_norm,
            ..
        } = query;
        let q_sum = *rq_sum;
        bounds.clear();
        if self.distance == DistanceType::Dot {
            // −q·(c + r) = −Rq·Rc − ⟨r, q⟩ (rotation keeps inner products).
            let base = -linalg::dot(rotated, centroid);
            for (d, f) in out.iter_mut().zip(factors.chunks_exact(rq::FACTORS)) {
                let (estimate, bound) = quantizer.estimate(f, *d, q_sum, *rq_norm, false);
                *d = base - estimate;
                bounds.push(bound);
            }
            return;
        }
        // ‖r − (q − c)‖² = ‖r‖² + ‖q − c‖² − 2⟨r, q − c⟩ (halved for cosine).
        let q_norm2: f32 = rotated
            .iter()
            .zip(centroid)
            .map(|(q, c)| (q - c) * (q - c))
            .sum();
        let q_norm = q_norm2.sqrt();
        let (scale, bound_scale) = if self.distance == DistanceType::Cosine {
            (0.5, 1.0)
        } else {
            (1.0, 2.0)
        };
        for (d, f) in out.iter_mut().zip(factors.chunks_exact(rq::FACTORS)) {
            let (estimate, bound) = quantizer.estimate(f, *d, q_sum, q_norm, true);
            *d = scale * (f[0] * f[0] + q_norm2 - 2.0 * estimate);
            bounds.push(bound_scale * bound);
        }
    }

    /// Prepares a query (already validated: `dim` finite values, bytes for hamming).
    pub fn prepare(&self, raw: &[f32], bytes: &[u8]) -> PreparedQuery {
        let mut space = Vec::with_capacity(self.space_dim());
        if self.distance == DistanceType::Hamming {
            for &b in bytes {
                for bit in 0..8 {
                    space.push(((b >> bit) & 1) as f32);
                }
            }
        } else {
            space.extend_from_slice(raw);
            if self.distance == DistanceType::Cosine {
                normalize(&mut space);
            }
        }
        let mut table = Vec::new();
        if let (Some(quantizer), DistanceType::Dot) = (&self.quantizer, self.distance) {
            quantizer.dot_table(&space, &mut table);
        }
        let sq = self.sq.as_ref().map(|sq| sq.query(&space, self.distance));
        let mut rotated = Vec::new();
        let (mut rq_sum, mut rq_norm) = (0.0, 0.0);
        if let Some(rq) = &self.rq {
            // One table for every partition (the centroid's part is stored with each row).
            rq.quantizer.rotate(&space, &mut rotated);
            rq_sum = rq.quantizer.table(&rotated, &mut table);
            rq_norm = linalg::dot(&rotated, &rotated).sqrt();
        }
        PreparedQuery {
            raw: raw.to_vec(),
            bytes: bytes.to_vec(),
            space,
            table,
            residual: Vec::new(),
            sq,
            rotated,
            bounds: Vec::new(),
            rq_sum,
            rq_norm,
        }
    }
}

/// The codes of one partition as a graph space.
pub(crate) struct CodeSpace<'a> {
    pub sq: &'a ScalarQuantizer,
    pub codes: &'a [u8],
    pub distance: DistanceType,
}

/// Node `node`'s `width` code bytes in `codes` (empty past the end: a damaged graph's link
/// then scores as far as possible instead of panicking).
#[inline]
fn code_at(codes: &[u8], width: usize, node: u32) -> &[u8] {
    codes
        .get(node as usize * width..(node as usize + 1) * width)
        .unwrap_or(&[])
}

impl CodeSpace<'_> {
    #[inline]
    fn code(&self, node: u32) -> &[u8] {
        code_at(self.codes, self.sq.dim(), node)
    }
}

impl GraphSpace for CodeSpace<'_> {
    type Query = SqQuery;

    fn node_query(&self, node: u32) -> SqQuery {
        self.sq.query_of_code(self.code(node), self.distance)
    }

    #[inline]
    fn distance(&self, query: &SqQuery, node: u32) -> f32 {
        self.sq.distance(query, self.code(node))
    }

    #[inline]
    fn prefetch(&self, node: u32) {
        crate::linalg::prefetch(self.code(node));
    }
}

impl IvfIndex {
    /// The `want` nearest rows of graph partition `part` (number `p`) that `allow` admits (by
    /// row address), searching with `ef`; addresses in `row_id`. Also returns the distances
    /// computed.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn graph_search(
        &self,
        p: usize,
        part: &Partition,
        query: &PreparedQuery,
        ef: usize,
        want: usize,
        allow: &dyn Fn(u64) -> bool,
        absent_row: Option<u64>,
    ) -> (Vec<Candidate>, u64) {
        let rows = &part.row_ids;
        let admit = |node: u32| rows.get(node as usize).is_some_and(|&r| allow(r));
        let absent = absent_row
            .and_then(|row| rows.iter().position(|&r| r == row))
            .map(|node| node as u32);
        let (mut found, computed) = match (&part.data, &self.sq, &query.sq, &self.quantizer) {
            (PartitionData::HnswSq { codes, graph }, Some(sq), Some(q), _) => {
                let space = CodeSpace {
                    sq,
                    codes,
                    distance: self.distance,
                };
                walk(graph, &space, q, ef, want, &admit, absent)
            }
            (PartitionData::HnswPq { codes, graph }, _, _, Some(quantizer)) => {
                let space = PqSpace {
                    quantizer,
                    codes,
                    symmetric: None,
                };
                let q = self.pq_graph_query(p, query);
                walk(graph, &space, &q, ef, want, &admit, absent)
            }
            _ => (Vec::new(), 0),
        };
        for c in &mut found {
            c.row_id = rows[c.row_id as usize];
        }
        (found, computed)
    }

    /// A PQ graph's query for partition `p`: the lookup table of the query's residual from
    /// the partition's centroid (l2, cosine; halved for cosine), or of the query itself plus
    /// `−q·c` (dot).
    fn pq_graph_query(&self, p: usize, query: &PreparedQuery) -> PqQuery {
        let sdim = self.space_dim();
        let (Some(quantizer), Some(centroid)) = (
            &self.quantizer,
            self.centroids.get(p * sdim..(p + 1) * sdim),
        ) else {
            return PqQuery::Table {
                table: Vec::new(),
                base: f32::INFINITY,
                scale: 1.0,
            };
        };
        if self.distance == DistanceType::Dot {
            return PqQuery::Table {
                table: query.table.clone(),
                base: -linalg::dot(&query.space, centroid),
                scale: 1.0,
            };
        }
        let residual: Vec<f32> = query
            .space
            .iter()
            .zip(centroid)
            .map(|(q, c)| q - c)
            .collect();
        let mut table = Vec::new();
        quantizer.l2_table(&residual, &mut table);
        PqQuery::Table {
            table,
            base: 0.0,
            scale: if self.distance == DistanceType::Cosine {
                0.5
            } else {
                1.0
            },
        }
    }
}

/// A graph walk over `space` with the thread's visited marks.
fn walk<S: GraphSpace, A: Fn(u32) -> bool>(
    graph: &Graph,
    space: &S,
    query: &S::Query,
    ef: usize,
    want: usize,
    admit: &A,
    absent: Option<u32>,
) -> (Vec<Candidate>, u64) {
    VISITED.with(|cell| {
        let mut visited = cell.borrow_mut();
        let found = graph.search(space, query, ef, want, admit, &mut visited, absent);
        (found, visited.count())
    })
}

/// The PQ codes of one partition as a graph space: searches compare a query's lookup table
/// with codes; the build compares codes with codes through the symmetric table.
pub(crate) struct PqSpace<'a> {
    pub quantizer: &'a ProductQuantizer,
    pub codes: &'a [u8],
    /// `m × 256 × 256` code-to-code distances (the build only).
    pub symmetric: Option<&'a [f32]>,
}

/// A query of a [`PqSpace`].
pub(crate) enum PqQuery {
    /// A search: `base + scale × Σ table[j][code_j]`.
    Table {
        table: Vec<f32>,
        base: f32,
        scale: f32,
    },
    /// A node being linked.
    Node(u32),
}

impl PqSpace<'_> {
    #[inline]
    fn code(&self, node: u32) -> &[u8] {
        code_at(self.codes, self.quantizer.m, node)
    }
}

impl GraphSpace for PqSpace<'_> {
    type Query = PqQuery;

    fn node_query(&self, node: u32) -> PqQuery {
        PqQuery::Node(node)
    }

    #[inline]
    fn distance(&self, query: &PqQuery, node: u32) -> f32 {
        let code = self.code(node);
        match query {
            PqQuery::Table { table, base, scale } => {
                let table = &table[..table.len().min(code.len() * CODES)];
                let mut sum = 0f32;
                for (row, &c) in table.chunks_exact(CODES).zip(code) {
                    sum += row[c as usize];
                }
                base + scale * sum
            }
            PqQuery::Node(other) => {
                let Some(symmetric) = self.symmetric else {
                    return f32::INFINITY;
                };
                let mut sum = 0f32;
                for (block, (&a, &b)) in symmetric
                    .chunks_exact(CODES * CODES)
                    .zip(self.code(*other).iter().zip(code))
                {
                    sum += block[a as usize * CODES + b as usize];
                }
                sum
            }
        }
    }

    #[inline]
    fn prefetch(&self, node: u32) {
        crate::linalg::prefetch(self.code(node));
    }
}

thread_local! {
    /// Each thread's visited-node marks, reused across searches.
    static VISITED: std::cell::RefCell<Visited> = std::cell::RefCell::new(Visited::new(0));
}

/// Fails when `rows` holds a row of a fragment the index does not cover.
fn check_covered(rows: &[u64], covered: &HashSet<u64>, path: &Path) -> Result<()> {
    match rows.iter().find(|&&r| !covered.contains(&(r >> 32))) {
        Some(row) => Err(Error::corrupt(
            path,
            format!(
                "vector index: it holds row {row} of fragment {}, which it does not cover",
                row >> 32
            ),
        )),
        None => Ok(()),
    }
}

/// A query in every form the partition scan needs, with its scratch buffers.
#[derive(Clone)]
pub struct PreparedQuery {
    raw: Vec<f32>,
    bytes: Vec<u8>,
    space: Vec<f32>,
    table: Vec<f32>,
    residual: Vec<f32>,
    sq: Option<SqQuery>,
    /// IVF_RQ: the query rotated (its table in `table`), the error bounds of the last
    /// partition scanned, `Σ Rq` and `‖Rq‖`.
    rotated: Vec<f32>,
    bounds: Vec<f32>,
    rq_sum: f32,
    rq_norm: f32,
}

impl PreparedQuery {
    pub fn space(&self) -> &[f32] {
        &self.space
    }

    /// Error bounds of the distances the last [`IvfIndex::partition_distances`] computed
    /// (IVF_RQ; empty for other kinds, whose distances carry no bound).
    pub fn bounds(&self) -> &[f32] {
        &self.bounds
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The size limit derived from an index's description covers every file of that
        /// description, and the file decodes back.
        #[test]
        fn size_limit_covers_every_index_file(
            kind in prop_oneof![Just(IndexKind::IvfPq), Just(IndexKind::IvfFlat)],
            distance in prop_oneof![
                Just(DistanceType::L2),
                Just(DistanceType::Cosine),
                Just(DistanceType::Dot),
                Just(DistanceType::Hamming),
            ],
            dim in 1usize..24,
            partitions in 1usize..6,
            rows in proptest::collection::vec(0usize..6, 0..40),
        ) {
            let sdim = space_dim(dim, distance);
            let m = (1..=sdim.min(4)).rev().find(|m| sdim.is_multiple_of(*m)).unwrap_or(1);
            let rows: Vec<usize> = rows.into_iter().map(|p| p % partitions).collect();
            let n = rows.len();
            let mut parts: Vec<Partition> = (0..partitions)
                .map(|_| Partition {
                    row_ids: Vec::new(),
                    data: match kind {
                        IndexKind::IvfPq => PartitionData::Pq(Vec::new()),
                        IndexKind::IvfFlat if distance == DistanceType::Hamming => {
                            PartitionData::FlatBytes(Vec::new())
                        }
                        // (The strategy draws only the kinds a one-block file held.)
                        IndexKind::IvfFlat
                        | IndexKind::IvfHnswSq
                        | IndexKind::IvfRq
                        | IndexKind::IvfHnswPq => {
                            PartitionData::FlatF32(Vec::new())
                        }
                    },
                })
                .collect();
            for (r, &p) in rows.iter().enumerate() {
                let part = &mut parts[p];
                part.row_ids.push(u64::MAX - r as u64);
                match &mut part.data {
                    PartitionData::Pq(c) => c.extend(std::iter::repeat_n(255u8, m)),
                    PartitionData::FlatBytes(b) => b.extend(std::iter::repeat_n(0xABu8, dim)),
                    PartitionData::FlatF32(v) => v.extend(std::iter::repeat_n(-1.5f32, dim)),
                    PartitionData::HnswSq { .. }
                    | PartitionData::HnswPq { .. }
                    | PartitionData::Rq { .. } => {}
                }
            }
            let quantizer = (kind == IndexKind::IvfPq).then(|| ProductQuantizer {
                dim: sdim,
                m,
                codebooks: vec![f32::INFINITY; sdim * CODES],
            });
            let index = IvfIndex::resident(
                kind,
                distance,
                dim,
                vec![f32::MAX; partitions * sdim],
                quantizer,
                parts,
            );
            let bytes = index.encode_one_block().expect("encode");
            let limit = IvfIndex::max_file_size(
                kind,
                distance,
                dim as u64,
                partitions as u64,
                index.num_sub_vectors() as u64,
                n as u64,
            );
            prop_assert!(limit.is_some_and(|l| bytes.len() as u64 <= l));
            let back = IvfIndex::decode_one_block(&bytes, &Path::from("i")).expect("decode");
            prop_assert_eq!(back.offsets, index.offsets);
            let (Partitions::Resident(a), Partitions::Resident(b)) =
                (&back.partitions, &index.partitions)
            else {
                panic!("one-block files read whole");
            };
            for (a, b) in a.iter().zip(b) {
                prop_assert_eq!(&a.row_ids, &b.row_ids);
                prop_assert_eq!(a.encode(), b.encode());
            }
        }
    }

    proptest! {
        /// Partitions of IVF_RQ and IVF_HNSW_PQ whose bytes say anything (row count, codes,
        /// factors, graph) decode to a typed error or to a partition that scans and walks
        /// without a panic.
        #[test]
        fn crafted_rq_and_pq_graph_partitions_never_panic(
            graph in any::<bool>(),
            rows in 0usize..12,
            bytes in proptest::collection::vec(any::<u8>(), 1..1200),
            graph_bytes in 0usize..600,
            exact_size in any::<bool>(),
            distance in prop_oneof![
                Just(DistanceType::L2),
                Just(DistanceType::Cosine),
                Just(DistanceType::Dot),
            ],
        ) {
            let dim = 16;
            let centroids = vec![0.25f32; 2 * dim];
            let mut index = if graph {
                let quantizer = ProductQuantizer {
                    dim,
                    m: 4,
                    codebooks: (0..dim * CODES).map(|i| (i % 7) as f32).collect(),
                };
                let mut index = IvfIndex::resident(
                    IndexKind::IvfHnswPq,
                    distance,
                    dim,
                    centroids,
                    Some(quantizer),
                    Vec::new(),
                );
                index.hnsw = Some(HnswParams {
                    m: 4,
                    ef_construction: 8,
                });
                index
            } else {
                let mut index =
                    IvfIndex::resident(IndexKind::IvfRq, distance, dim, centroids, None, Vec::new());
                index.rq = Some(RqModel::new(
                    RabitQuantizer::train(dim, 2, 1),
                    &index.centroids,
                ));
                index
            };
            let layout = index.layout();
            // Mostly the sizes the layout expects (so the contents are what is tested).
            let mut bytes = bytes;
            if exact_size {
                let want = rows * (8 + layout.row_width()) + if graph { graph_bytes } else { 0 };
                bytes = bytes.iter().copied().cycle().take(want).collect();
            }
            let Ok(part) = decode_rows(layout, rows, &bytes, &Path::from("i")) else {
                return Ok(());
            };
            index.offsets = vec![0, part.len(), part.len()];
            let query = index.prepare(&[0.5; 16], &[]);
            for p in 0..2 {
                let mut q = query.clone();
                let mut out = Vec::new();
                index.partition_distances(p, &part, &mut q, &mut out);
                prop_assert_eq!(out.len(), part.len());
                let (found, _) = index.graph_search(p, &part, &query, 16, 4, &|_| true, None);
                prop_assert!(found.len() <= 4);
            }
        }
    }

    #[test]
    fn overflowing_descriptions_have_no_size() {
        let huge = u64::from(u32::MAX);
        assert_eq!(
            IvfIndex::max_file_size(IndexKind::IvfFlat, DistanceType::L2, huge, 1, 0, u64::MAX),
            None
        );
    }
}
