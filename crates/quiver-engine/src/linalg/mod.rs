//! Distance kernels: one portable implementation of each, plus SIMD versions chosen at run
//! time for the CPU (x86_64 AVX2+FMA+F16C and AVX-512 F+BW; aarch64 NEON). The binary targets
//! the baseline CPU; [`kernels`] picks the fastest table this CPU runs, once.
//!
//! Conventions: smaller is always closer. `l2` is the squared Euclidean distance, `cosine` is
//! 1 − cosine similarity, clamped at 0 (1 when either vector is all zeros), `dot` is the
//! *negative* inner product, `hamming` counts differing bits of uint8 vectors.
//!
//! NaN and infinity: a NaN component makes the distance NaN (search skips such rows: a NaN
//! cannot be ranked); an infinite component gives an infinite distance, or NaN where the
//! arithmetic is undefined (∞ − ∞, 0 · ∞). Queries with NaN or infinity are rejected before any
//! kernel runs.
//!
//! Batch forms (one query against many contiguous rows, and the many-to-many [`l2_matrix`] for
//! k-means) dispatch once per call, so the per-row work is straight SIMD code.

mod kernels;
#[cfg(target_arch = "aarch64")]
mod neon;
mod portable;
pub mod sq;
#[cfg(target_arch = "x86_64")]
mod x86;

use std::sync::OnceLock;

use half::f16;

pub use kernels::Kernels;

use std::str::FromStr;

use crate::error::{Error, Result};

/// How two vectors are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DistanceType {
    #[default]
    L2,
    Cosine,
    Dot,
    Hamming,
}

impl FromStr for DistanceType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "l2" | "euclidean" => Ok(DistanceType::L2),
            "cosine" => Ok(DistanceType::Cosine),
            "dot" => Ok(DistanceType::Dot),
            "hamming" => Ok(DistanceType::Hamming),
            other => Err(Error::invalid(format!(
                "unknown distance type '{other}'; use 'l2', 'cosine', 'dot' or 'hamming'"
            ))),
        }
    }
}

impl std::fmt::Display for DistanceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DistanceType::L2 => "l2",
            DistanceType::Cosine => "cosine",
            DistanceType::Dot => "dot",
            DistanceType::Hamming => "hamming",
        })
    }
}

/// Asks the CPU to bring `bytes` into cache (a hint: no effect on results; nothing on CPUs
/// without a prefetch instruction).
#[inline]
pub fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    for line in bytes.chunks(64) {
        // SAFETY: a prefetch never faults and reads nothing; the pointer is into `bytes`.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                line.as_ptr().cast::<i8>(),
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// The fastest kernel table this CPU runs. `QUIVER_SIMD=portable|avx2|avx512|neon` picks a
/// slower one (for comparisons); a set the CPU lacks is ignored.
pub fn kernels() -> &'static Kernels {
    static CHOSEN: OnceLock<&'static Kernels> = OnceLock::new();
    CHOSEN.get_or_init(|| {
        let available = available_kernels();
        let wanted = std::env::var("QUIVER_SIMD").ok();
        wanted
            .and_then(|w| available.iter().find(|k| k.isa == w).copied())
            .or_else(|| available.last().copied())
            .unwrap_or(&portable::KERNELS)
    })
}

/// Every kernel table this CPU runs, slowest (portable) first.
pub fn available_kernels() -> Vec<&'static Kernels> {
    #[allow(unused_mut)]
    let mut tables = vec![&portable::KERNELS];
    #[cfg(target_arch = "x86_64")]
    {
        tables.extend(x86::avx2());
        tables.extend(x86::avx512());
    }
    #[cfg(target_arch = "aarch64")]
    tables.push(&neon::KERNELS);
    tables
}

impl Kernels {
    /// Squared Euclidean distance.
    pub fn l2(&self, a: &[f32], b: &[f32]) -> f32 {
        (self.l2)(a, b)
    }

    /// Inner product.
    pub fn dot(&self, a: &[f32], b: &[f32]) -> f32 {
        (self.dot)(a, b)
    }

    /// 1 − cosine similarity, given `a`'s norm.
    pub fn cosine(&self, a: &[f32], b: &[f32], a_norm: f32) -> f32 {
        let (d, b_norm_sq) = (self.dot_norm)(a, b);
        kernels::cosine_from(d as f64, a_norm as f64, (b_norm_sq as f64).sqrt())
    }

    /// Number of differing bits.
    pub fn hamming(&self, a: &[u8], b: &[u8]) -> u32 {
        (self.hamming)(a, b)
    }

    /// Distances from `query` to each `query.len()`-wide row of `rows`, into `out`.
    pub fn distances_f32(&self, kind: DistanceType, query: &[f32], rows: &[f32], out: &mut [f32]) {
        (self.distances_f32)(kind, query, rows, out)
    }

    /// As [`Self::distances_f32`], for half-float rows.
    pub fn distances_f16(&self, kind: DistanceType, query: &[f32], rows: &[f16], out: &mut [f32]) {
        (self.distances_f16)(kind, query, rows, out)
    }

    /// As [`Self::distances_f32`], for f64 rows and query (computed in f64).
    pub fn distances_f64(&self, kind: DistanceType, query: &[f64], rows: &[f64], out: &mut [f32]) {
        (self.distances_f64)(kind, query, rows, out)
    }

    /// Hamming distances from `query` to each `query.len()`-byte row of `rows`.
    pub fn hamming_rows(&self, query: &[u8], rows: &[u8], out: &mut [f32]) {
        (self.hamming_rows)(query, rows, out)
    }

    /// Squared distances between every `dim`-wide row of `x` and of `centroids`:
    /// `out[i * centroids + j]`, computed as ‖x‖² + ‖c‖² − 2·x·c in cache-sized blocks.
    pub fn l2_matrix(
        &self,
        x: &[f32],
        centroids: &[f32],
        dim: usize,
        out: &mut [f32],
    ) -> Result<()> {
        let dim = dim.max(1);
        let norms =
            |m: &[f32]| -> Vec<f32> { m.chunks_exact(dim).map(|r| (self.dot)(r, r)).collect() };
        let (x_norms, c_norms) = (norms(x), norms(centroids));
        let needed = x_norms.len() * c_norms.len();
        if out.len() != needed {
            return Err(Error::Internal(format!(
                "l2_matrix needs {needed} output values, got {}",
                out.len()
            )));
        }
        (self.l2_matrix)(x, &x_norms, centroids, &c_norms, dim, out);
        Ok(())
    }
}

impl Kernels {
    /// Squared distances from `x` to each of `out.len()` points stored transposed in `ct`
    /// (`x.len()` rows of `out.len()` values): the form PQ codebooks take, so that short
    /// sub-vectors are compared with many centroids at full SIMD width.
    pub fn l2_transposed(&self, x: &[f32], ct: &[f32], out: &mut [f32]) {
        (self.l2_transposed)(x, ct, out)
    }

    /// Inner products of `x` with each point stored transposed in `ct`.
    pub fn dot_transposed(&self, x: &[f32], ct: &[f32], out: &mut [f32]) {
        (self.dot_transposed)(x, ct, out)
    }
}

/// Squared Euclidean distance (fastest kernel).
pub fn l2(a: &[f32], b: &[f32]) -> f32 {
    kernels().l2(a, b)
}

/// Inner product (fastest kernel).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    kernels().dot(a, b)
}

/// 1 − cosine similarity, given `a`'s norm; 1 when either vector is all zeros.
pub fn cosine(a: &[f32], b: &[f32], a_norm: f32) -> f32 {
    kernels().cosine(a, b, a_norm)
}

/// Number of differing bits, as a distance.
pub fn hamming(a: &[u8], b: &[u8]) -> f32 {
    kernels().hamming(a, b) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ref_dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    fn ref_l2(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
    }

    fn ref_cosine(a: &[f64], b: &[f64]) -> f64 {
        let (na, nb) = (ref_dot(a, a).sqrt(), ref_dot(b, b).sqrt());
        if na == 0.0 || nb == 0.0 {
            1.0
        } else {
            (1.0 - ref_dot(a, b) / (na * nb)).max(0.0)
        }
    }

    fn close(got: f32, want: f64, scale: f64) -> bool {
        (got as f64 - want).abs() <= 1e-4 * (1.0 + scale)
    }

    fn widen(v: &[f32]) -> Vec<f64> {
        v.iter().map(|&x| x as f64).collect()
    }

    /// Two vectors of one length (0..=150: not multiples of any lane width too).
    fn pair() -> impl Strategy<Value = (Vec<f32>, Vec<f32>)> {
        (0usize..=150).prop_flat_map(|n| {
            (
                proptest::collection::vec(-10f32..10.0, n),
                proptest::collection::vec(-10f32..10.0, n),
            )
        })
    }

    proptest! {
        #[test]
        fn every_table_matches_an_f64_reference((a, b) in pair()) {
            let (wa, wb) = (widen(&a), widen(&b));
            let scale = ref_dot(&wa, &wa).max(ref_dot(&wb, &wb));
            for k in available_kernels() {
                prop_assert!(close(k.l2(&a, &b), ref_l2(&wa, &wb), scale), "{} l2", k.isa);
                prop_assert!(close(k.dot(&a, &b), ref_dot(&wa, &wb), scale), "{} dot", k.isa);
                let norm = ref_dot(&wa, &wa).sqrt() as f32;
                prop_assert!(close(k.cosine(&a, &b, norm), ref_cosine(&wa, &wb), 1.0), "{} cosine", k.isa);
            }
        }

        #[test]
        fn batch_forms_match_for_every_element_type((q, row) in pair(), rows in 1usize..5) {
            let dim = q.len().max(1);
            let q = if q.is_empty() { vec![0.5] } else { q };
            let row = if row.is_empty() { vec![-0.5] } else { row };
            // `rows` rows: the row, then shifted copies.
            let data: Vec<f32> = (0..rows).flat_map(|r| row.iter().map(move |x| x + r as f32)).collect();
            let halves: Vec<f16> = data.iter().map(|&x| f16::from_f32(x)).collect();
            let doubles = widen(&data);
            let wq = widen(&q);
            for kind in [DistanceType::L2, DistanceType::Dot, DistanceType::Cosine] {
                let reference = |r: &[f64]| match kind {
                    DistanceType::L2 => ref_l2(&wq, r),
                    DistanceType::Dot => -ref_dot(&wq, r),
                    _ => ref_cosine(&wq, r),
                };
                for k in available_kernels() {
                    let mut out = vec![0f32; rows];
                    k.distances_f32(kind, &q, &data, &mut out);
                    for (r, got) in doubles.chunks(dim).zip(&out) {
                        let scale = ref_dot(r, r).max(ref_dot(&wq, &wq));
                        prop_assert!(close(*got, reference(r), scale), "{} f32 {kind:?}", k.isa);
                    }
                    k.distances_f64(kind, &wq, &doubles, &mut out);
                    for (r, got) in doubles.chunks(dim).zip(&out) {
                        let scale = ref_dot(r, r).max(ref_dot(&wq, &wq));
                        prop_assert!(close(*got, reference(r), scale), "{} f64 {kind:?}", k.isa);
                    }
                    k.distances_f16(kind, &q, &halves, &mut out);
                    let widened: Vec<f64> = halves.iter().map(|h| h.to_f64()).collect();
                    for (r, got) in widened.chunks(dim).zip(&out) {
                        let scale = ref_dot(r, r).max(ref_dot(&wq, &wq));
                        prop_assert!(close(*got, reference(r), scale), "{} f16 {kind:?}", k.isa);
                    }
                }
            }
        }

        #[test]
        fn hamming_matches_popcount(n in 0usize..300, seed in any::<u64>()) {
            let bytes = |salt: u64| -> Vec<u8> {
                (0..n as u64).map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed ^ salt).to_le_bytes()[3]).collect()
            };
            let (a, b) = (bytes(1), bytes(0xABCD));
            let want: u32 = a.iter().zip(&b).map(|(x, y)| (x ^ y).count_ones()).sum();
            for k in available_kernels() {
                prop_assert_eq!(k.hamming(&a, &b), want, "{}", k.isa);
                let mut out = [0f32; 2];
                let rows: Vec<u8> = a.iter().chain(&b).copied().collect();
                if n > 0 {
                    k.hamming_rows(&b, &rows, &mut out);
                    prop_assert_eq!(out, [want as f32, 0.0], "{}", k.isa);
                }
            }
        }

        #[test]
        fn transposed_forms_match_pairwise(dim in 1usize..20, points in 1usize..80) {
            let value = |i: usize| ((i * 7919 % 103) as f32 - 50.0) / 10.0;
            let x: Vec<f32> = (0..dim).map(|i| value(i + 5)).collect();
            let rows: Vec<Vec<f32>> = (0..points).map(|j| (0..dim).map(|t| value(j * dim + t)).collect()).collect();
            let ct: Vec<f32> = (0..dim).flat_map(|t| rows.iter().map(move |r| r[t])).collect();
            for k in available_kernels() {
                let mut l2s = vec![0f32; points];
                let mut dots = vec![0f32; points];
                k.l2_transposed(&x, &ct, &mut l2s);
                k.dot_transposed(&x, &ct, &mut dots);
                for (j, r) in rows.iter().enumerate() {
                    let (wx, wr) = (widen(&x), widen(r));
                    let scale = ref_dot(&wx, &wx) + ref_dot(&wr, &wr);
                    prop_assert!(close(l2s[j], ref_l2(&wx, &wr), scale), "{} l2", k.isa);
                    prop_assert!(close(dots[j], ref_dot(&wx, &wr), scale), "{} dot", k.isa);
                }
            }
        }

        #[test]
        fn l2_matrix_matches_pairwise(dim in 1usize..40, rows in 1usize..11, centroids in 1usize..7) {
            let value = |i: usize| ((i * 7919 % 101) as f32 - 50.0) / 10.0;
            let x: Vec<f32> = (0..rows * dim).map(value).collect();
            let c: Vec<f32> = (0..centroids * dim).map(|i| value(i + 13)).collect();
            for k in available_kernels() {
                let mut out = vec![0f32; rows * centroids];
                k.l2_matrix(&x, &c, dim, &mut out).unwrap();
                for i in 0..rows {
                    for j in 0..centroids {
                        let (xi, cj) = (widen(&x[i * dim..(i + 1) * dim]), widen(&c[j * dim..(j + 1) * dim]));
                        let scale = ref_dot(&xi, &xi) + ref_dot(&cj, &cj);
                        prop_assert!(close(out[i * centroids + j], ref_l2(&xi, &cj), scale * 10.0), "{}", k.isa);
                    }
                }
            }
        }
    }

    #[test]
    fn zero_vectors_nan_and_infinity() {
        let nan_row = [
            1.0,
            f32::NAN,
            0.5,
            2.0,
            1.0,
            1.0,
            1.0,
            1.0,
            1.0,
            1.0,
            1.0,
            1.0,
            1.0,
            1.0,
            1.0,
            1.0,
            1.0,
        ];
        let ones = [1.0f32; 17];
        let zeros = [0f32; 17];
        let mut inf_row = ones;
        inf_row[16] = f32::INFINITY;
        for k in available_kernels() {
            assert_eq!(k.cosine(&zeros, &ones, 0.0), 1.0, "{}", k.isa);
            assert_eq!(k.cosine(&ones, &zeros, 17f32.sqrt()), 1.0, "{}", k.isa);
            assert!(
                k.cosine(&ones, &ones, 17f32.sqrt()).abs() < 1e-6,
                "{}",
                k.isa
            );
            assert!(k.l2(&ones, &nan_row).is_nan(), "{}", k.isa);
            assert!(k.dot(&ones, &nan_row).is_nan(), "{}", k.isa);
            assert!(
                k.cosine(&ones, &nan_row, 17f32.sqrt()).is_nan(),
                "{}",
                k.isa
            );
            assert_eq!(k.l2(&ones, &inf_row), f32::INFINITY, "{}", k.isa);
            assert_eq!(k.dot(&ones, &inf_row), f32::INFINITY, "{}", k.isa);
            assert_eq!(k.l2(&[], &[]), 0.0, "{}", k.isa);
        }
        assert_eq!(hamming(&[0b1010, 0xFF], &[0b0110, 0x0F]), 6.0);
        assert_eq!(
            "COSINE".parse::<DistanceType>().unwrap(),
            DistanceType::Cosine
        );
        assert!("manhattan".parse::<DistanceType>().is_err());
    }

    #[test]
    fn this_cpu_gets_its_fastest_table() {
        let tables: Vec<&str> = available_kernels().iter().map(|k| k.isa).collect();
        assert_eq!(tables[0], "portable");
        if std::env::var("QUIVER_SIMD").is_err() {
            assert_eq!(kernels().isa, *tables.last().unwrap());
        }
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            assert!(tables.contains(&"avx2"));
        }
    }
}
