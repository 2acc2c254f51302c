//! RaBitQ quantization (Gao & Long, SIGMOD 2024) of IVF residuals: each residual is rotated by
//! a random orthogonal matrix, scaled to unit length and quantized to `bits` per dimension
//! (1: its signs). The inner product of a query with a row is estimated without bias from the
//! codes, with a per-row bound on the estimate's error that lets a search drop candidates which
//! cannot be among the nearest before the exact re-rank.
//!
//! Codes are stored as bit planes (plane `j` holds bit `j` of every dimension's level, one
//! bit per dimension), so `Σ level_i · q_i` is a sum of byte lookups, `bits × ⌈dim / 8⌉` per
//! row, in one table built once per query: `⟨v, R(q − c)⟩ = ⟨v, Rq⟩ − ⟨v, Rc⟩`, and the
//! second term (row and centroid are fixed) is stored with the row, so no partition needs a
//! table of its own.
//! Several bits per dimension follow the extended RaBitQ: levels on a uniform grid whose step
//! is chosen per row to maximise the quantized vector's alignment with the residual.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use crate::linalg;

/// Per-row factors stored after the codes: the residual's norm, the estimator's scale, the
/// error bound's scale, and `⟨levels − center, rotated centroid⟩`.
pub const FACTORS: usize = 4;
/// Widest vectors (in the training space) a rotation is built for: the matrix is `dim²` f32
/// and orthogonalising it costs `dim³`.
pub const MAX_DIM: usize = 4096;
pub const MAX_BITS: u32 = 8;
/// Confidence of the error bound, in standard deviations of the estimator. The paper's ε₀ is
/// 1.9 (one estimate in 35 beyond it on one side); a search drops candidates by the bound, so
/// it is wider here: one estimate in 700.
const EPSILON0: f32 = 3.0;
/// Grid steps tried per row for several bits, as fractions of the step that puts the largest
/// coordinate on the outermost level.
const STEP_FRACTIONS: [f32; 12] = [
    0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,
];

/// The trained quantizer: bits per dimension and the rotation.
#[derive(Debug, Clone, PartialEq)]
pub struct RabitQuantizer {
    pub dim: usize,
    pub bits: u32,
    /// `dim × dim`, row-major: rotated = rotation · x.
    pub rotation: Vec<f32>,
}

impl RabitQuantizer {
    /// A quantizer with a random orthogonal rotation drawn from `seed` (Gaussian matrix,
    /// orthonormalised row by row).
    pub fn train(dim: usize, bits: u32, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut rotation: Vec<f32> = (0..dim * dim).map(|_| gaussian(&mut rng)).collect();
        for i in 0..dim {
            let (done, rest) = rotation.split_at_mut(i * dim);
            let row = &mut rest[..dim];
            // Modified Gram–Schmidt, twice for accuracy in f32.
            for _ in 0..2 {
                for prev in done.chunks_exact(dim) {
                    let p = linalg::dot(prev, row);
                    row.iter_mut().zip(prev).for_each(|(r, &v)| *r -= p * v);
                }
            }
            let norm = linalg::dot(row, row).sqrt();
            if norm > 1e-6 {
                row.iter_mut().for_each(|r| *r /= norm);
            } else {
                // (A draw this degenerate does not happen in practice; a unit axis orthogonal
                // to nothing in particular keeps the matrix well defined.)
                row.iter_mut().for_each(|r| *r = 0.0);
                row[i] = 1.0;
            }
        }
        RabitQuantizer {
            dim,
            bits,
            rotation,
        }
    }

    /// Bytes of one bit plane.
    pub fn plane_bytes(&self) -> usize {
        self.dim.div_ceil(8)
    }

    /// Code bytes per row.
    pub fn code_width(&self) -> usize {
        self.bits as usize * self.plane_bytes()
    }

    /// Half the number of levels less one: level `c` stands for `c − center`.
    pub fn center(&self) -> f32 {
        ((1u32 << self.bits) - 1) as f32 / 2.0
    }

    /// `rotation · x` into `out`.
    pub fn rotate(&self, x: &[f32], out: &mut Vec<f32>) {
        out.clear();
        out.extend(
            self.rotation
                .chunks_exact(self.dim.max(1))
                .map(|row| linalg::dot(row, x)),
        );
    }

    /// Rotates every `dim`-wide row of `rows` (on all cores).
    pub fn rotate_rows(&self, rows: &[f32]) -> Vec<f32> {
        let dim = self.dim.max(1);
        let mut out = vec![0f32; rows.len()];
        out.par_chunks_mut(dim)
            .zip(rows.par_chunks(dim))
            .for_each(|(o, x)| {
                for (v, row) in o.iter_mut().zip(self.rotation.chunks_exact(dim)) {
                    *v = linalg::dot(row, x);
                }
            });
        out
    }

    /// Quantizes a rotated residual into `code` (`code_width` bytes) and `factors`; `centroid`
    /// is its partition's centroid, rotated.
    pub fn encode(&self, rotated: &[f32], centroid: &[f32], code: &mut [u8], factors: &mut [f32]) {
        code.fill(0);
        let norm = linalg::dot(rotated, rotated).sqrt();
        if norm == 0.0 || !norm.is_finite() {
            // The row is its centroid: its distance is the centroid's, exactly.
            factors.copy_from_slice(&[0.0; FACTORS]);
            return;
        }
        let center = self.center();
        let top = ((1u32 << self.bits) - 1) as f32;
        let level = |x: f32, step: f32| (x / step + center).round().clamp(0.0, top);
        // The grid step whose levels best align with the unit residual (`rotated / norm`);
        // alignment = ⟨levels − center, rotated⟩ / (‖levels − center‖ · norm).
        let max_abs = rotated.iter().fold(0f32, |m, x| m.max(x.abs()));
        let steps: &[f32] = if self.bits == 1 {
            &[1.0]
        } else {
            &STEP_FRACTIONS
        };
        let (mut best_step, mut best_alignment) = (max_abs / center.max(0.5), f32::MIN);
        for &fraction in steps {
            let step = max_abs / center.max(0.5) * fraction;
            let (mut dot, mut len2) = (0f32, 0f32);
            for &x in rotated {
                let v = level(x, step) - center;
                dot += v * x;
                len2 += v * v;
            }
            let alignment = dot / (len2.sqrt() * norm);
            if alignment > best_alignment {
                (best_step, best_alignment) = (step, alignment);
            }
        }
        let plane = self.plane_bytes();
        let (mut len2, mut centroid_term) = (0f32, 0f32);
        for (i, &x) in rotated.iter().enumerate() {
            let c = level(x, best_step);
            len2 += (c - center) * (c - center);
            centroid_term += (c - center) * centroid.get(i).copied().unwrap_or(0.0);
            let c = c as u32;
            for j in 0..self.bits as usize {
                if (c >> j) & 1 == 1 {
                    code[j * plane + i / 8] |= 1 << (i % 8);
                }
            }
        }
        let alignment = best_alignment.clamp(1e-6, 1.0);
        // ⟨unit residual, q⟩ ≈ ⟨levels − center, q⟩ / (‖levels − center‖ · alignment).
        let scale = 1.0 / (len2.sqrt() * alignment);
        let spread = (1.0 - alignment * alignment).max(0.0).sqrt() / alignment;
        let bound = norm * EPSILON0 * spread / ((self.dim.max(2) - 1) as f32).sqrt();
        factors.copy_from_slice(&[norm, scale, bound, centroid_term]);
    }

    /// The lookup table of a rotated query `q`: per code byte position, for each of the 256
    /// bytes, the sum of `q` over its set bits (every bit plane uses the same table). Returns
    /// `Σ q`.
    pub fn table(&self, q: &[f32], table: &mut Vec<f32>) -> f32 {
        table.clear();
        table.resize(self.plane_bytes() * 256, 0.0);
        for (g, sums) in table.chunks_exact_mut(256).enumerate() {
            for b in 1..256usize {
                let bit = b.trailing_zeros() as usize;
                let value = q.get(g * 8 + bit).copied().unwrap_or(0.0);
                sums[b] = sums[b & (b - 1)] + value;
            }
        }
        q.iter().sum()
    }

    /// `Σ level_i · q_i` of every code of `codes` into `out`, from `q`'s [`Self::table`].
    pub fn scan(&self, codes: &[u8], table: &[f32], out: &mut Vec<f32>) {
        let (plane, width) = (self.plane_bytes(), self.code_width());
        out.clear();
        if width == 0 || table.len() < plane * 256 {
            return;
        }
        out.extend(codes.chunks_exact(width).map(|code| {
            let mut total = 0f32;
            for (j, bits) in code.chunks_exact(plane).enumerate() {
                // Four partial sums: independent additions overlap in the pipeline.
                let mut s = [0f32; 4];
                let mut groups = bits.chunks_exact(4);
                let mut g = 0;
                for c in &mut groups {
                    for (lane, &b) in c.iter().enumerate() {
                        s[lane] += table[(g + lane) * 256 + b as usize];
                    }
                    g += 4;
                }
                for &b in groups.remainder() {
                    s[0] += table[g * 256 + b as usize];
                    g += 1;
                }
                total += ((s[0] + s[1]) + (s[2] + s[3])) * (1u32 << j) as f32;
            }
            total
        }));
    }

    /// Estimated `⟨residual, q − centroid⟩` (`residual`: l2 and cosine) or `⟨residual, q⟩`
    /// (dot), and its error bound, for a row of table sum `sum` (`q_sum` = `Σ Rq`, `q_norm`
    /// the norm of the rotated query, less the centroid when `residual`).
    #[inline]
    pub fn estimate(
        &self,
        factors: &[f32],
        sum: f32,
        q_sum: f32,
        q_norm: f32,
        residual: bool,
    ) -> (f32, f32) {
        let (norm, scale, bound, centroid_term) = (factors[0], factors[1], factors[2], factors[3]);
        let mut centered = sum - self.center() * q_sum;
        if residual {
            centered -= centroid_term;
        }
        (norm * scale * centered, bound * q_norm)
    }
}

/// A standard normal draw (Box–Muller).
fn gaussian(rng: &mut StdRng) -> f32 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_rotation_is_orthogonal() {
        let q = RabitQuantizer::train(37, 1, 3);
        for i in 0..37 {
            for j in 0..37 {
                let d = linalg::dot(
                    &q.rotation[i * 37..(i + 1) * 37],
                    &q.rotation[j * 37..(j + 1) * 37],
                );
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((d - want).abs() < 1e-4, "rows {i}, {j}: {d}");
            }
        }
    }

    /// Mean absolute error of the estimate over random rows, and the share of rows whose
    /// error exceeds the bound.
    fn estimate_errors(dim: usize, bits: u32) -> (f32, f32) {
        let quantizer = RabitQuantizer::train(dim, bits, 11);
        let mut rng = StdRng::seed_from_u64(5);
        let q: Vec<f32> = (0..dim).map(|_| gaussian(&mut rng)).collect();
        let centroid: Vec<f32> = (0..dim).map(|_| gaussian(&mut rng)).collect();
        let mut table = Vec::new();
        let q_sum = quantizer.table(&q, &mut table);
        // The estimate is of ⟨x, q − centroid⟩.
        let q_residual: Vec<f32> = q.iter().zip(&centroid).map(|(a, b)| a - b).collect();
        let q_norm = linalg::dot(&q_residual, &q_residual).sqrt();
        let (mut error, mut outside) = (0f32, 0usize);
        let rows = 2000;
        let mut code = vec![0u8; quantizer.code_width()];
        let mut factors = [0f32; FACTORS];
        let mut sums = Vec::new();
        for _ in 0..rows {
            let x: Vec<f32> = (0..dim).map(|_| gaussian(&mut rng) * 3.0).collect();
            quantizer.encode(&x, &centroid, &mut code, &mut factors);
            quantizer.scan(&code, &table, &mut sums);
            let (estimate, bound) = quantizer.estimate(&factors, sums[0], q_sum, q_norm, true);
            let truth = linalg::dot(&x, &q_residual);
            error += (estimate - truth).abs() / (factors[0] * q_norm);
            outside += usize::from((estimate - truth).abs() > bound);
        }
        (error / rows as f32, outside as f32 / rows as f32)
    }

    #[test]
    fn estimates_are_close_and_within_their_bound() {
        // One bit on 128 dimensions: relative error about 0.8 / √128 ≈ 0.06 (as the paper's).
        let (one_bit, outside) = estimate_errors(128, 1);
        assert!(one_bit < 0.07, "1-bit relative error {one_bit}");
        assert!(
            outside < 0.1,
            "1-bit: {outside} of the rows beyond the bound"
        );
        let (four_bits, outside) = estimate_errors(128, 4);
        assert!(
            four_bits < one_bit / 5.0,
            "4-bit relative error {four_bits}"
        );
        assert!(
            outside < 0.1,
            "4-bit: {outside} of the rows beyond the bound"
        );
    }

    proptest! {
        /// Codes and tables agree for any width and bits: the table sum is Σ level_i · q_i.
        #[test]
        fn table_sums_are_level_sums(dim in 1usize..70, bits in 1u32..=8, seed in 0u64..1000) {
            let quantizer = RabitQuantizer::train(dim, bits, seed);
            let mut rng = StdRng::seed_from_u64(seed);
            let x: Vec<f32> = (0..dim).map(|_| gaussian(&mut rng)).collect();
            let q: Vec<f32> = (0..dim).map(|_| gaussian(&mut rng)).collect();
            let mut code = vec![0u8; quantizer.code_width()];
            let mut factors = [0f32; FACTORS];
            quantizer.encode(&x, &[], &mut code, &mut factors);
            let plane = quantizer.plane_bytes();
            let level = |i: usize| -> u32 {
                (0..bits as usize)
                    .map(|j| u32::from((code[j * plane + i / 8] >> (i % 8)) & 1) << j)
                    .sum()
            };
            let want: f32 = (0..dim).map(|i| level(i) as f32 * q[i]).sum();
            let mut table = Vec::new();
            quantizer.table(&q, &mut table);
            let mut sums = Vec::new();
            quantizer.scan(&code, &table, &mut sums);
            prop_assert!((sums[0] - want).abs() <= 1e-3 * (1.0 + want.abs()) * (1u32 << bits) as f32);
            prop_assert!(factors.iter().all(|f| f.is_finite()));
        }
    }
}
