//! 8-bit scalar quantization: each dimension's range (from a training sample) split into 255
//! steps, so a vector becomes one byte per dimension, a quarter of its f32 size, and distances
//! are computed from the bytes directly.

use super::hnsw::GraphSpace;
use rayon::prelude::*;

use crate::linalg::sq::{sq_kernels, SqKernels, LINK_CODE_MAX};
use crate::linalg::DistanceType;

/// A trained scalar quantizer.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalarQuantizer {
    /// Per dimension: the value of code 0, and the step between codes.
    pub min: Vec<f32>,
    pub scale: Vec<f32>,
}

impl ScalarQuantizer {
    /// Trains on `dim`-wide rows (finite values).
    pub fn train(sample: &[f32], dim: usize) -> Self {
        let mut min = vec![f32::INFINITY; dim];
        let mut max = vec![f32::NEG_INFINITY; dim];
        for row in sample.chunks_exact(dim.max(1)) {
            for i in 0..dim {
                min[i] = min[i].min(row[i]);
                max[i] = max[i].max(row[i]);
            }
        }
        let scale = min
            .iter_mut()
            .zip(&max)
            .map(|(lo, &hi)| {
                if !lo.is_finite() || !hi.is_finite() {
                    *lo = 0.0;
                    return 1.0;
                }
                let step = (hi - *lo) / 255.0;
                // A constant dimension still needs a non-zero step to decode.
                if step > 0.0 {
                    step
                } else {
                    1.0
                }
            })
            .collect();
        ScalarQuantizer { min, scale }
    }

    pub fn dim(&self) -> usize {
        self.min.len()
    }

    /// Codes `v` into `out` (values outside the trained range take the nearest end).
    pub fn encode(&self, v: &[f32], out: &mut [u8]) {
        for (((o, &x), &lo), &s) in out.iter_mut().zip(v).zip(&self.min).zip(&self.scale) {
            *o = ((x - lo) / s).round().clamp(0.0, 255.0) as u8;
        }
    }

    /// `v`'s code decoded, as the offset from `min` (the form [`SqQuery`] holds).
    fn offsets_of(&self, codes: &[u8], out: &mut Vec<f32>) {
        out.clear();
        out.extend(
            codes
                .iter()
                .zip(&self.scale)
                .map(|(&c, &s)| f32::from(c) * s),
        );
    }

    /// A query (in the training space) prepared for distances to codes.
    pub fn query(&self, q: &[f32], distance: DistanceType) -> SqQuery {
        match distance {
            DistanceType::Dot => SqQuery::Dot {
                weights: q.iter().zip(&self.scale).map(|(x, s)| x * s).collect(),
                base: q.iter().zip(&self.min).map(|(x, m)| x * m).sum(),
            },
            _ => SqQuery::L2 {
                offsets: q.iter().zip(&self.min).map(|(x, m)| x - m).collect(),
            },
        }
    }

    /// The query a stored code makes (graph construction compares codes with codes).
    pub fn query_of_code(&self, codes: &[u8], distance: DistanceType) -> SqQuery {
        let mut offsets = Vec::with_capacity(codes.len());
        self.offsets_of(codes, &mut offsets);
        match distance {
            DistanceType::Dot => {
                let decoded: Vec<f32> = offsets.iter().zip(&self.min).map(|(o, m)| o + m).collect();
                self.query(&decoded, distance)
            }
            _ => SqQuery::L2 { offsets },
        }
    }

    /// Distance from a prepared query to a code (squared l2, or the negative inner product).
    #[inline]
    pub fn distance(&self, query: &SqQuery, codes: &[u8]) -> f32 {
        let k = sq_kernels();
        match query {
            SqQuery::L2 { offsets } => (k.l2)(offsets, &self.scale, codes),
            SqQuery::Dot { weights, base } => -(base + (k.dot)(weights, codes)),
        }
    }
}

/// The codes of one graph partition re-coded for linking it at build time: 7 bits per
/// dimension on one step shared by every dimension (the widest dimension's range over
/// [`LINK_CODE_MAX`]), so a distance is `step² · Σ (a − b)²` over small integers, which AVX2
/// multiplies 32 dimensions at a time. Searches rank with the 8-bit codes and the float
/// kernels; links need only a sound order of near neighbours, and a shared step keeps every
/// dimension's weight exact (a narrow dimension gets fewer levels, and adds little to a
/// distance). About three times as fast per distance as weighing 8-bit codes per dimension,
/// for a copy of the codes while the graph is built; a node's query is its number.
pub struct SqLinkSpace {
    kernels: &'static SqKernels,
    codes: Vec<u8>,
    width: usize,
    /// The float distance of one integer unit (`step²`).
    unit: f32,
    /// Inner product: `Σ min²`, and per node `Σ min·step·code`.
    dot: Option<(f32, Vec<f32>)>,
}

/// Nodes re-coded per parallel task.
const RECODE_CHUNK: usize = 4096;

impl SqLinkSpace {
    /// The link codes of `codes` (coded by `sq`).
    pub fn new(sq: &ScalarQuantizer, codes: &[u8], distance: DistanceType) -> Self {
        let width = sq.dim().max(1);
        // Dimensions whose codes are all 0 here add nothing; their step (1 for a dimension
        // constant in training) must not set the shared one.
        let mut used = vec![false; width];
        for code in codes.chunks_exact(width) {
            for (u, &c) in used.iter_mut().zip(code) {
                *u |= c != 0;
            }
        }
        let widest = sq
            .scale
            .iter()
            .zip(&used)
            .filter(|(_, &u)| u)
            .fold(0f32, |m, (s, _)| m.max(s.abs() * 255.0));
        let step = widest / f32::from(LINK_CODE_MAX);
        // A code `c` of dimension `i` becomes `c · factor[i]`, rounded.
        let factor: Vec<f32> = sq
            .scale
            .iter()
            .zip(&used)
            .map(|(s, &u)| if u && step > 0.0 { s.abs() / step } else { 0.0 })
            .collect();
        let top = f32::from(LINK_CODE_MAX);
        let mut links = vec![0u8; codes.len() / width * width];
        links
            .par_chunks_mut(width * RECODE_CHUNK)
            .zip(codes.par_chunks(width * RECODE_CHUNK))
            .for_each(|(out, codes)| {
                for (out, code) in out.chunks_exact_mut(width).zip(codes.chunks_exact(width)) {
                    for ((o, &c), f) in out.iter_mut().zip(code).zip(&factor) {
                        *o = (f32::from(c) * f).round().min(top) as u8;
                    }
                }
            });
        let dot = (distance == DistanceType::Dot).then(|| {
            let constant = sq.min.iter().map(|m| m * m).sum();
            let linear = links
                .par_chunks(width)
                .map(|code| {
                    step * code
                        .iter()
                        .zip(&sq.min)
                        .map(|(&c, m)| m * f32::from(c))
                        .sum::<f32>()
                })
                .collect();
            (constant, linear)
        });
        SqLinkSpace {
            kernels: sq_kernels(),
            codes: links,
            width,
            unit: step * step,
            dot,
        }
    }

    #[inline]
    fn code(&self, node: u32) -> &[u8] {
        self.codes
            .get(node as usize * self.width..(node as usize + 1) * self.width)
            .unwrap_or(&[])
    }
}

impl GraphSpace for SqLinkSpace {
    type Query = u32;

    fn node_query(&self, node: u32) -> u32 {
        node
    }

    #[inline]
    fn distance(&self, &query: &u32, node: u32) -> f32 {
        let k = self.kernels;
        let (a, b) = (self.code(query), self.code(node));
        match &self.dot {
            None => (k.link_l2)(a, b) * self.unit,
            Some((constant, linear)) => {
                let side = |n: u32| linear.get(n as usize).copied().unwrap_or(0.0);
                -(constant + side(query) + side(node) + (k.link_dot)(a, b) * self.unit)
            }
        }
    }

    #[inline]
    fn prefetch(&self, node: u32) {
        crate::linalg::prefetch(self.code(node));
    }
}

/// A query prepared for [`ScalarQuantizer::distance`].
#[derive(Debug, Clone)]
pub enum SqQuery {
    /// `q − min` per dimension.
    L2 { offsets: Vec<f32> },
    /// `q · scale` per dimension, and `q · min`.
    Dot { weights: Vec<f32>, base: f32 },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rows` (`dim` wide) coded by `sq`, one after another.
    fn encode_all(sq: &ScalarQuantizer, rows: &[f32], dim: usize) -> Vec<u8> {
        let mut codes = vec![0u8; rows.len()];
        for (row, code) in rows.chunks_exact(dim).zip(codes.chunks_exact_mut(dim)) {
            sq.encode(row, code);
        }
        codes
    }

    /// Float distance and link distance from node `a`'s code to node `b`'s, and how far apart
    /// they may be: re-coding moves each decoded value by at most half a link step `h` (the
    /// widest dimension with a non-zero code, over 127), so a squared difference by
    /// `4h·|x − y| + 4h²` and a product by `h·(|x| + |y|) + h²`.
    fn both(
        sq: &ScalarQuantizer,
        codes: &[u8],
        distance: DistanceType,
        a: u32,
        b: u32,
    ) -> (f32, f32, f32) {
        let dim = sq.dim();
        let code = |n: u32| &codes[n as usize * dim..(n as usize + 1) * dim];
        let want = sq.distance(&sq.query_of_code(code(a), distance), code(b));
        let got = SqLinkSpace::new(sq, codes, distance).distance(&a, b);
        let widest = (0..dim)
            .filter(|&i| codes.chunks_exact(dim).any(|c| c[i] != 0))
            .map(|i| sq.scale[i] * 255.0)
            .fold(0f32, f32::max);
        let h = widest / f32::from(LINK_CODE_MAX) / 2.0;
        let decode = |n: u32| -> Vec<f32> {
            code(n)
                .iter()
                .zip(&sq.min)
                .zip(&sq.scale)
                .map(|((&c, m), s)| m + s * f32::from(c))
                .collect()
        };
        let (x, y) = (decode(a), decode(b));
        let bound: f32 = x
            .iter()
            .zip(&y)
            .map(|(x, y)| match distance {
                DistanceType::Dot => h * (x.abs() + y.abs()) + h * h,
                _ => 4.0 * h * (x - y).abs() + 4.0 * h * h,
            })
            .sum();
        (want, got, bound * 1.01 + 1e-5)
    }

    #[test]
    fn distances_from_codes_approximate_the_vectors() {
        let rows: Vec<f32> = (0..400)
            .map(|i| ((i * 37) % 101) as f32 / 10.0 - 5.0)
            .collect();
        let sq = ScalarQuantizer::train(&rows, 4);
        let mut code = [0u8; 4];
        for row in rows.chunks_exact(4).take(20) {
            sq.encode(row, &mut code);
            let q = [0.5f32, -1.0, 2.0, 0.0];
            let exact: f32 = q.iter().zip(row).map(|(a, b)| (a - b) * (a - b)).sum();
            let approx = sq.distance(&sq.query(&q, DistanceType::L2), &code);
            // Each value is off by at most half a step (10 / 255 / 2).
            let bound: f32 = q
                .iter()
                .zip(row)
                .map(|(a, b)| (a - b).abs() * 0.04 + 0.001)
                .sum();
            assert!((exact - approx).abs() <= bound, "{exact} vs {approx}");
            let dot: f32 = -q.iter().zip(row).map(|(a, b)| a * b).sum::<f32>();
            let approx = sq.distance(&sq.query(&q, DistanceType::Dot), &code);
            let bound: f32 = q.iter().map(|a| a.abs() * 0.02 + 0.001).sum();
            assert!((dot - approx).abs() <= bound, "{dot} vs {approx}");
            let own = sq.distance(&sq.query_of_code(&code, DistanceType::L2), &code);
            assert!(own.abs() < 1e-6);
        }
        // Linking distances (7-bit codes on one step) agree with the float kernels.
        let codes = encode_all(&sq, &rows, 4);
        for distance in [DistanceType::L2, DistanceType::Dot] {
            for (a, b) in [(0u32, 1u32), (3, 7), (10, 99), (42, 42)] {
                let (want, got, bound) = both(&sq, &codes, distance, a, b);
                assert!(
                    (want - got).abs() <= bound,
                    "{distance:?} {a} {b}: {want} vs {got} (bound {bound})"
                );
            }
        }
        // A constant dimension and out-of-range values still code.
        let flat = ScalarQuantizer::train(&[1.0, 1.0, 1.0, 1.0], 2);
        let mut c = [0u8; 2];
        flat.encode(&[1.0, 300.0], &mut c);
        assert_eq!(c, [0, 255]);
        // A dimension constant in training (step 1) leaves the others' link distances intact.
        let rows: Vec<f32> = (0..300)
            .flat_map(|i| [0.5, (i % 17) as f32 * 0.01, (i % 23) as f32 * 0.002])
            .collect();
        let sq = ScalarQuantizer::train(&rows, 3);
        let codes = encode_all(&sq, &rows, 3);
        for (a, b) in [(0u32, 5u32), (1, 40), (7, 200)] {
            let (want, got, bound) = both(&sq, &codes, DistanceType::L2, a, b);
            assert!(
                want > 0.0 && (want - got).abs() <= bound.min(0.1 * want),
                "{a} {b}: {want} vs {got} (bound {bound})"
            );
        }
    }
}
