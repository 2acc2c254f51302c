//! Product quantization: a vector is cut into `m` sub-vectors and each is replaced by the
//! 8-bit id of its nearest centroid in that sub-space's codebook. A query then precomputes,
//! per sub-space, its distance to all 256 centroids (a lookup table), and the approximate
//! distance to a stored vector is the sum of `m` table entries.
//!
//! Codebooks are kept transposed (per sub-space: `sub_dim` rows of 256 values), the form the
//! transposed distance kernel scans at full SIMD width. Tables are always 256 wide, so any
//! byte read from a file indexes inside them.

use rayon::prelude::*;

use super::kmeans::{self, KMeansParams};
use crate::linalg;

/// Centroids per sub-space (8-bit codes).
pub const CODES: usize = 256;

/// A trained product quantizer.
#[derive(Debug, Clone)]
pub struct ProductQuantizer {
    pub dim: usize,
    /// Sub-vectors per vector (bytes per code).
    pub m: usize,
    /// `m` blocks of `sub_dim × 256` values (transposed codebooks); centroids a sub-space did
    /// not train (fewer than 256 rows) are +∞ so they are never chosen.
    pub codebooks: Vec<f32>,
}

impl ProductQuantizer {
    pub fn sub_dim(&self) -> usize {
        self.dim / self.m
    }

    fn codebook(&self, j: usize) -> &[f32] {
        let size = self.sub_dim() * CODES;
        &self.codebooks[j * size..(j + 1) * size]
    }

    /// Trains `m` codebooks on the `dim`-wide rows of `data` (residuals, for IVF_PQ), one
    /// sub-space per parallel task. `on_subspace()` is called as each finishes.
    pub fn train(
        data: &[f32],
        dim: usize,
        m: usize,
        max_iterations: usize,
        seed: u64,
        on_subspace: &(dyn Fn() + Sync),
    ) -> Self {
        let sub_dim = dim / m;
        let n = data.len() / dim.max(1);
        let codebooks: Vec<Vec<f32>> = (0..m)
            .into_par_iter()
            .map(|j| {
                let mut sub = Vec::with_capacity(n * sub_dim);
                for row in data.chunks_exact(dim) {
                    sub.extend_from_slice(&row[j * sub_dim..(j + 1) * sub_dim]);
                }
                let params = KMeansParams {
                    k: CODES,
                    max_iterations,
                    tolerance: super::vector::KMEANS_TOLERANCE,
                    seed: seed.wrapping_add(j as u64),
                };
                let model = kmeans::train(&sub, sub_dim, params, |_| {});
                let trained = model.centroids.len() / sub_dim.max(1);
                let mut transposed = vec![f32::INFINITY; sub_dim * CODES];
                for (c, centroid) in model.centroids.chunks_exact(sub_dim).enumerate() {
                    for (t, &v) in centroid.iter().enumerate() {
                        transposed[t * CODES + c] = v;
                    }
                }
                debug_assert!(trained <= CODES);
                on_subspace();
                transposed
            })
            .collect();
        ProductQuantizer {
            dim,
            m,
            codebooks: codebooks.concat(),
        }
    }

    /// Encodes one `dim`-wide vector into `m` bytes; `scratch` holds 256 values.
    pub fn encode(&self, v: &[f32], code: &mut [u8], scratch: &mut [f32; CODES]) {
        let kernels = linalg::kernels();
        let sub_dim = self.sub_dim();
        for (j, byte) in code.iter_mut().enumerate().take(self.m) {
            kernels.l2_transposed(
                &v[j * sub_dim..(j + 1) * sub_dim],
                self.codebook(j),
                scratch,
            );
            // Untrained (+∞) centroids give ∞ − x = ∞ or NaN: never smaller.
            *byte = kmeans::argmin(scratch).0 as u8;
        }
    }

    /// The squared-l2 lookup table of `x` (a residual): `m × 256` values.
    pub fn l2_table(&self, x: &[f32], table: &mut Vec<f32>) {
        let kernels = linalg::kernels();
        let sub_dim = self.sub_dim();
        table.resize(self.m * CODES, 0.0);
        for (j, out) in table.chunks_exact_mut(CODES).enumerate() {
            kernels.l2_transposed(&x[j * sub_dim..(j + 1) * sub_dim], self.codebook(j), out);
        }
    }

    /// The negative inner-product lookup table of `x`: `m × 256` values.
    pub fn dot_table(&self, x: &[f32], table: &mut Vec<f32>) {
        let kernels = linalg::kernels();
        let sub_dim = self.sub_dim();
        table.resize(self.m * CODES, 0.0);
        for (j, out) in table.chunks_exact_mut(CODES).enumerate() {
            kernels.dot_transposed(&x[j * sub_dim..(j + 1) * sub_dim], self.codebook(j), out);
            out.iter_mut().for_each(|v| *v = -*v);
        }
    }
}

impl ProductQuantizer {
    /// Code-to-code distances (symmetric distance computation): for each sub-vector `j`, a
    /// 256 × 256 table of the squared l2 (or, `dot`, negative inner product) between its
    /// centroids, `m × 65,536` values. Graphs over PQ codes are linked with it (a node's
    /// neighbours are chosen by comparing codes with codes).
    pub fn symmetric_table(&self, dot: bool) -> Vec<f32> {
        let kernels = linalg::kernels();
        let sub_dim = self.sub_dim();
        let mut table = vec![0f32; self.m * CODES * CODES];
        let mut centroid = vec![0f32; sub_dim];
        for (j, block) in table.chunks_exact_mut(CODES * CODES).enumerate() {
            let codebook = self.codebook(j);
            for (a, out) in block.chunks_exact_mut(CODES).enumerate() {
                for (t, c) in centroid.iter_mut().enumerate() {
                    *c = codebook[t * CODES + a];
                }
                if dot {
                    kernels.dot_transposed(&centroid, codebook, out);
                    out.iter_mut().for_each(|v| *v = -*v);
                } else {
                    kernels.l2_transposed(&centroid, codebook, out);
                }
            }
        }
        table
    }
}

/// Approximate distances of every `m`-byte code in `codes` from a lookup table, plus `base`.
#[inline]
pub fn scan(codes: &[u8], m: usize, table: &[f32], base: f32, out: &mut Vec<f32>) {
    out.clear();
    let table = &table[..m * CODES];
    out.extend(codes.chunks_exact(m).map(|code| {
        // Four partial sums: independent additions overlap in the pipeline.
        let mut s = [0f32; 4];
        let mut chunks = code.chunks_exact(4);
        let mut j = 0;
        for c in &mut chunks {
            for (lane, &b) in c.iter().enumerate() {
                s[lane] += table[(j + lane) * CODES + b as usize];
            }
            j += 4;
        }
        for &b in chunks.remainder() {
            s[0] += table[j * CODES + b as usize];
            j += 1;
        }
        base + (s[0] + s[1]) + (s[2] + s[3])
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    #[test]
    fn table_distances_approximate_true_distances() {
        let (n, dim, m) = (2000, 16, 4);
        let mut rng = StdRng::seed_from_u64(5);
        let data: Vec<f32> = (0..n * dim).map(|_| rng.random_range(-1f32..1.0)).collect();
        let pq = ProductQuantizer::train(&data, dim, m, 20, 9, &|| {});
        let mut codes = vec![0u8; n * m];
        let mut scratch = [0f32; CODES];
        for (v, c) in data.chunks_exact(dim).zip(codes.chunks_exact_mut(m)) {
            pq.encode(v, c, &mut scratch);
        }
        let q: Vec<f32> = (0..dim).map(|_| rng.random_range(-1f32..1.0)).collect();
        let mut table = Vec::new();
        pq.l2_table(&q, &mut table);
        let mut approx = Vec::new();
        scan(&codes, m, &table, 0.0, &mut approx);
        let exact: Vec<f32> = data.chunks_exact(dim).map(|v| linalg::l2(&q, v)).collect();
        let mean_error: f32 = approx
            .iter()
            .zip(&exact)
            .map(|(a, e)| (a - e).abs())
            .sum::<f32>()
            / n as f32;
        let mean: f32 = exact.iter().sum::<f32>() / n as f32;
        assert!(
            mean_error < 0.15 * mean,
            "error {mean_error} vs mean distance {mean}"
        );

        pq.dot_table(&q, &mut table);
        scan(&codes, m, &table, 0.0, &mut approx);
        let exact_dot: Vec<f32> = data
            .chunks_exact(dim)
            .map(|v| -linalg::dot(&q, v))
            .collect();
        let err: f32 = approx
            .iter()
            .zip(&exact_dot)
            .map(|(a, e)| (a - e).abs())
            .sum::<f32>()
            / n as f32;
        assert!(err < 0.5, "dot error {err}");
    }

    #[test]
    fn fewer_rows_than_codes_train_and_encode() {
        let data: Vec<f32> = (0..10 * 4).map(|i| i as f32).collect();
        let pq = ProductQuantizer::train(&data, 4, 2, 10, 1, &|| {});
        let mut code = [0u8; 2];
        let mut scratch = [0f32; CODES];
        pq.encode(&data[8..12], &mut code, &mut scratch);
        assert!(code.iter().all(|&c| (c as usize) < 10));
        let mut table = Vec::new();
        pq.l2_table(&data[8..12], &mut table);
        let mut out = Vec::new();
        scan(&code, 2, &table, 0.0, &mut out);
        assert!(
            out[0] < 1e-3,
            "a training row encodes to itself: {}",
            out[0]
        );
    }
}
