//! The IVF model (inverted file: vectors grouped by nearest centroid) with PQ codes or flat
//! vectors per partition, its file format, and the partition scan of a search.
//!
//! Vectors are compared in a "training space": float vectors as f32 (normalised for cosine,
//! so squared l2 between them is twice the cosine distance), binary vectors (hamming) with
//! each bit unpacked to a 0/1 value (squared l2 is then the hamming distance). Centroids live
//! in that space.

use arrow_array::cast::AsArray;
use arrow_array::types::{Float16Type, Float32Type, Float64Type, Int8Type, UInt8Type};
use arrow_array::{Array, FixedSizeListArray};
use arrow_schema::DataType;
use bytes::Bytes;
use object_store::path::Path;

use super::pq::{self, ProductQuantizer, CODES};
use crate::error::{Error, Result};
use crate::format::{decode_block_message, encode_block};
use crate::linalg::{self, DistanceType};

/// Which index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexKind {
    IvfPq,
    IvfFlat,
}

impl IndexKind {
    pub fn name(self) -> &'static str {
        match self {
            IndexKind::IvfPq => "IVF_PQ",
            IndexKind::IvfFlat => "IVF_FLAT",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "IVF_PQ" => Some(IndexKind::IvfPq),
            "IVF_FLAT" => Some(IndexKind::IvfFlat),
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

/// What each partition stores per row.
#[derive(Debug, Clone)]
pub enum Payload {
    /// `m` PQ code bytes per row.
    Pq {
        quantizer: ProductQuantizer,
        codes: Vec<u8>,
    },
    /// The vectors themselves, as f32.
    FlatF32(Vec<f32>),
    /// Binary vectors (hamming), as bytes.
    FlatBytes(Vec<u8>),
}

/// A loaded IVF index.
#[derive(Debug, Clone)]
pub struct IvfIndex {
    pub kind: IndexKind,
    pub distance: DistanceType,
    /// Elements per vector of the column.
    pub dim: usize,
    /// `partitions × space_dim` centroids.
    pub centroids: Vec<f32>,
    /// Row `offsets[p]..offsets[p + 1]` of `row_ids` (and of the payload) is partition `p`.
    pub offsets: Vec<usize>,
    pub row_ids: Vec<u64>,
    pub payload: Payload,
}

/// The stored form (protobuf in one checksummed block; see FORMAT.md, "Vector index file").
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
    /// u64 little-endian row addresses, grouped by partition.
    #[prost(bytes = "bytes", tag = "7")]
    row_ids: Bytes,
    #[prost(uint32, tag = "8")]
    pq_sub_vectors: u32,
    /// f32 little-endian, `m × sub_dim × 256` (transposed codebooks).
    #[prost(bytes = "bytes", tag = "9")]
    pq_codebooks: Bytes,
    /// PQ codes (`rows × m`), binary vectors (`rows × dim`) or f32 vectors (`rows × dim × 4`).
    #[prost(bytes = "bytes", tag = "10")]
    payload: Bytes,
}

fn f32_bytes(v: &[f32]) -> Bytes {
    Bytes::from(v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

impl IvfIndex {
    pub fn num_partitions(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn space_dim(&self) -> usize {
        space_dim(self.dim, self.distance)
    }

    pub fn num_sub_vectors(&self) -> usize {
        match &self.payload {
            Payload::Pq { quantizer, .. } => quantizer.m,
            _ => 0,
        }
    }

    /// Bytes held in memory (for the cache's weigher).
    pub fn heap_bytes(&self) -> usize {
        let payload = match &self.payload {
            Payload::Pq { quantizer, codes } => quantizer.codebooks.len() * 4 + codes.len(),
            Payload::FlatF32(v) => v.len() * 4,
            Payload::FlatBytes(v) => v.len(),
        };
        self.centroids.len() * 4 + self.offsets.len() * 8 + self.row_ids.len() * 8 + payload
    }

    pub fn encode(&self) -> Bytes {
        let (m, codebooks, payload) = match &self.payload {
            Payload::Pq { quantizer, codes } => (
                quantizer.m as u32,
                f32_bytes(&quantizer.codebooks),
                Bytes::from(codes.clone()),
            ),
            Payload::FlatF32(v) => (0, Bytes::new(), f32_bytes(v)),
            Payload::FlatBytes(v) => (0, Bytes::new(), Bytes::from(v.clone())),
        };
        let proto = IvfFileProto {
            kind: self.kind.name().to_string(),
            distance: distance_name(self.distance).to_string(),
            dim: self.dim as u32,
            num_partitions: self.num_partitions() as u32,
            centroids: f32_bytes(&self.centroids),
            offsets: self.offsets.iter().map(|&o| o as u64).collect(),
            row_ids: Bytes::from(
                self.row_ids
                    .iter()
                    .flat_map(|r| r.to_le_bytes())
                    .collect::<Vec<u8>>(),
            ),
            pq_sub_vectors: m,
            pq_codebooks: codebooks,
            payload,
        };
        Bytes::from(encode_block(prost::Message::encode_to_vec(&proto)))
    }

    /// Decodes and validates an index file read from `path`.
    pub fn decode(bytes: &[u8], path: &Path) -> Result<Self> {
        let proto: IvfFileProto = decode_block_message(bytes, path, "vector index")?;
        let bad = |what: &str| Error::corrupt(path, format!("vector index: {what}"));
        let kind = IndexKind::parse(&proto.kind).ok_or_else(|| bad("unknown index kind"))?;
        let distance: DistanceType = proto
            .distance
            .parse()
            .map_err(|_| bad("unknown distance type"))?;
        let dim = proto.dim as usize;
        let parts = proto.num_partitions as usize;
        // Sizes from the file are multiplied checked: a crafted file must not wrap them.
        let size = |factors: &[usize]| factors.iter().try_fold(1usize, |a, &f| a.checked_mul(f));
        let sdim =
            size(&[dim, space_dim(1, distance)]).ok_or_else(|| bad("vectors are too long"))?;
        if dim == 0 || parts == 0 || size(&[parts, sdim, 4]) != Some(proto.centroids.len()) {
            return Err(bad("centroids do not match the dimensions"));
        }
        let offsets = proto
            .offsets
            .iter()
            .map(|&o| usize::try_from(o))
            .collect::<std::result::Result<Vec<usize>, _>>()
            .map_err(|_| bad("partition offsets do not match the rows"))?;
        let rows = offsets.last().copied().unwrap_or(0);
        if offsets.len() != parts + 1
            || offsets[0] != 0
            || offsets.windows(2).any(|w| w[0] > w[1])
            || size(&[rows, 8]) != Some(proto.row_ids.len())
        {
            return Err(bad("partition offsets do not match the rows"));
        }
        let payload = match kind {
            IndexKind::IvfPq => {
                let m = proto.pq_sub_vectors as usize;
                if m == 0
                    || !sdim.is_multiple_of(m)
                    || size(&[sdim, CODES, 4]) != Some(proto.pq_codebooks.len())
                {
                    return Err(bad("PQ codebooks do not match the dimensions"));
                }
                if size(&[rows, m]) != Some(proto.payload.len()) {
                    return Err(bad("PQ codes do not match the rows"));
                }
                Payload::Pq {
                    quantizer: ProductQuantizer {
                        dim: sdim,
                        m,
                        codebooks: f32s(&proto.pq_codebooks),
                    },
                    codes: proto.payload.to_vec(),
                }
            }
            IndexKind::IvfFlat if distance == DistanceType::Hamming => {
                if size(&[rows, dim]) != Some(proto.payload.len()) {
                    return Err(bad("vectors do not match the rows"));
                }
                Payload::FlatBytes(proto.payload.to_vec())
            }
            IndexKind::IvfFlat => {
                if size(&[rows, dim, 4]) != Some(proto.payload.len()) {
                    return Err(bad("vectors do not match the rows"));
                }
                Payload::FlatF32(f32s(&proto.payload))
            }
        };
        Ok(IvfIndex {
            kind,
            distance,
            dim,
            centroids: f32s(&proto.centroids),
            offsets,
            row_ids: proto
                .row_ids
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
            payload,
        })
    }

    /// The largest file an index of these dimensions can be: its arrays, plus per field a tag
    /// and a length (11 bytes at most), 10 bytes at most per partition offset, the kind and
    /// distance names and the block trailer. `None` when the sizes overflow. An index file is
    /// checked against it (from the manifest's details) before it is read.
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

    /// Distances of partition `p`'s rows to the query, into `out` (approximate for PQ: the
    /// distance type's value computed from the codes).
    pub fn partition_distances(&self, p: usize, query: &PreparedQuery, out: &mut Vec<f32>) {
        let (start, end) = (self.offsets[p], self.offsets[p + 1]);
        let kernels = linalg::kernels();
        let sdim = self.space_dim();
        match &self.payload {
            Payload::Pq { quantizer, codes } => {
                let m = quantizer.m;
                let codes = &codes[start * m..end * m];
                let centroid = &self.centroids[p * sdim..(p + 1) * sdim];
                let mut table = query.table.borrow_mut();
                if self.distance == DistanceType::Dot {
                    // −q·(c + r) = −q·c + Σ table; the table does not depend on the partition.
                    let base = -linalg::dot(&query.space, centroid);
                    pq::scan(codes, m, &table, base, out);
                } else {
                    let mut residual = query.residual.borrow_mut();
                    residual.clear();
                    residual.extend(query.space.iter().zip(centroid).map(|(q, c)| q - c));
                    quantizer.l2_table(&residual, &mut table);
                    pq::scan(codes, m, &table, 0.0, out);
                    if self.distance == DistanceType::Cosine {
                        // Unit vectors: ‖a − b‖² = 2 (1 − cos).
                        out.iter_mut().for_each(|d| *d *= 0.5);
                    }
                }
            }
            Payload::FlatF32(vectors) => {
                out.clear();
                out.resize(end - start, 0.0);
                kernels.distances_f32(
                    self.distance,
                    &query.raw,
                    &vectors[start * self.dim..end * self.dim],
                    out,
                );
            }
            Payload::FlatBytes(bytes) => {
                out.clear();
                out.resize(end - start, 0.0);
                kernels.hamming_rows(&query.bytes, &bytes[start * self.dim..end * self.dim], out);
            }
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
        if let (Payload::Pq { quantizer, .. }, DistanceType::Dot) = (&self.payload, self.distance) {
            quantizer.dot_table(&space, &mut table);
        }
        PreparedQuery {
            raw: raw.to_vec(),
            bytes: bytes.to_vec(),
            space,
            table: std::cell::RefCell::new(table),
            residual: std::cell::RefCell::new(Vec::new()),
        }
    }
}

/// A query in every form the partition scan needs, with its scratch buffers.
pub struct PreparedQuery {
    raw: Vec<f32>,
    bytes: Vec<u8>,
    space: Vec<f32>,
    table: std::cell::RefCell<Vec<f32>>,
    residual: std::cell::RefCell<Vec<f32>>,
}

impl PreparedQuery {
    pub fn space(&self) -> &[f32] {
        &self.space
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
            let mut offsets = vec![0usize; partitions + 1];
            for &p in &rows {
                offsets[p + 1] += 1;
            }
            for p in 0..partitions {
                offsets[p + 1] += offsets[p];
            }
            let n = rows.len();
            let payload = match kind {
                IndexKind::IvfPq => Payload::Pq {
                    quantizer: ProductQuantizer {
                        dim: sdim,
                        m,
                        codebooks: vec![f32::INFINITY; sdim * CODES],
                    },
                    codes: vec![255; n * m],
                },
                IndexKind::IvfFlat if distance == DistanceType::Hamming => {
                    Payload::FlatBytes(vec![0xAB; n * dim])
                }
                IndexKind::IvfFlat => Payload::FlatF32(vec![-1.5; n * dim]),
            };
            let index = IvfIndex {
                kind,
                distance,
                dim,
                centroids: vec![f32::MAX; partitions * sdim],
                offsets,
                row_ids: (0..n as u64).map(|r| u64::MAX - r).collect(),
                payload,
            };
            let bytes = index.encode();
            let limit = IvfIndex::max_file_size(
                kind,
                distance,
                dim as u64,
                partitions as u64,
                index.num_sub_vectors() as u64,
                n as u64,
            );
            prop_assert!(limit.is_some_and(|l| bytes.len() as u64 <= l));
            let back = IvfIndex::decode(&bytes, &Path::from("i")).expect("decode");
            prop_assert_eq!(back.row_ids, index.row_ids);
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
