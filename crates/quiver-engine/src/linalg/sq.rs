//! Kernels over 8-bit scalar-quantized vectors (graph indexes): a code byte `c` of dimension
//! `i` stands for `min[i] + c · scale[i]`. One body per kernel, written in lanes of 16
//! independent accumulators so the compiler vectorizes it; compiled once for the baseline CPU
//! and once with AVX2+FMA, chosen at run time.

use std::sync::OnceLock;

const LANES: usize = 16;

/// `Σ (a[i] − s[i]·c[i])²`: the squared l2 distance between a vector whose offset from the
/// quantizer's minimum is `a` and the vector coded `c`.
#[inline(always)]
fn l2_body(a: &[f32], s: &[f32], c: &[u8]) -> f32 {
    let n = a.len().min(s.len()).min(c.len());
    let (a, s, c) = (&a[..n], &s[..n], &c[..n]);
    let mut acc = [0f32; LANES];
    let chunks = n / LANES;
    for k in 0..chunks {
        let (a, s, c) = (
            &a[k * LANES..(k + 1) * LANES],
            &s[k * LANES..(k + 1) * LANES],
            &c[k * LANES..(k + 1) * LANES],
        );
        for j in 0..LANES {
            let d = a[j] - s[j] * f32::from(c[j]);
            acc[j] += d * d;
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for i in chunks * LANES..n {
        let d = a[i] - s[i] * f32::from(c[i]);
        sum += d * d;
    }
    sum
}

/// `Σ w[i]·c[i]`.
#[inline(always)]
fn dot_body(w: &[f32], c: &[u8]) -> f32 {
    let n = w.len().min(c.len());
    let (w, c) = (&w[..n], &c[..n]);
    let mut acc = [0f32; LANES];
    let chunks = n / LANES;
    for k in 0..chunks {
        let (w, c) = (
            &w[k * LANES..(k + 1) * LANES],
            &c[k * LANES..(k + 1) * LANES],
        );
        for j in 0..LANES {
            acc[j] += w[j] * f32::from(c[j]);
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for i in chunks * LANES..n {
        sum += w[i] * f32::from(c[i]);
    }
    sum
}

/// Largest integer weight of a code-to-code kernel: a weighted difference of codes below 256
/// stays within i16 (255 × 127 = 32,385), and a pair of its squares within i32.
pub const MAX_CODE_WEIGHT: i16 = 127;

/// `Σ (w[i]·(a[i] − b[i]))²` over two codes (graph construction: both sides are stored codes,
/// so nothing is decoded to floats), or `Σ (w[i]·a[i])·(w[i]·b[i])` when `DOT`. Products are
/// exact integers, summed as f32.
#[inline(always)]
fn code_body<const DOT: bool>(w: &[i16], a: &[u8], b: &[u8]) -> f32 {
    #[inline(always)]
    fn term<const DOT: bool>(w: i16, a: u8, b: u8) -> f32 {
        let (w, a, b) = (i32::from(w), i32::from(a), i32::from(b));
        if DOT {
            (a * w * (b * w)) as f32
        } else {
            let e = (a - b) * w;
            (e * e) as f32
        }
    }
    let n = w.len().min(a.len()).min(b.len());
    let (w, a, b) = (&w[..n], &a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let chunks = n / LANES;
    for k in 0..chunks {
        let r = k * LANES..(k + 1) * LANES;
        let (w, a, b) = (&w[r.clone()], &a[r.clone()], &b[r]);
        for j in 0..LANES {
            acc[j] += term::<DOT>(w[j], a[j], b[j]);
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for i in chunks * LANES..n {
        sum += term::<DOT>(w[i], a[i], b[i]);
    }
    sum
}

fn code_l2_portable(w: &[i16], a: &[u8], b: &[u8]) -> f32 {
    code_body::<false>(w, a, b)
}

fn code_dot_portable(w: &[i16], a: &[u8], b: &[u8]) -> f32 {
    code_body::<true>(w, a, b)
}

fn l2_portable(a: &[f32], s: &[f32], c: &[u8]) -> f32 {
    l2_body(a, s, c)
}

fn dot_portable(w: &[f32], c: &[u8]) -> f32 {
    dot_body(w, c)
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn l2(a: &[f32], s: &[f32], c: &[u8]) -> f32 {
        super::l2_body(a, s, c)
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot(w: &[f32], c: &[u8]) -> f32 {
        super::dot_body(w, c)
    }

    /// `Σ (w·(a − b))²` (or `Σ (w·a)·(w·b)` when `DOT`) of 16 dimensions at `i`: widened to
    /// i16, weighted (`vpmullw`), multiplied pairwise into i32 lanes (`vpmaddwd`, each pair
    /// below 2³¹), as f32.
    ///
    /// # Safety
    /// AVX2; `i + 16` values readable in each slice.
    #[inline(always)]
    unsafe fn code_step<const DOT: bool>(w: *const i16, a: *const u8, b: *const u8) -> __m256 {
        // SAFETY: the caller guarantees AVX2 and 16 readable values at each pointer.
        unsafe {
            let va = _mm256_cvtepu8_epi16(_mm_loadu_si128(a.cast()));
            let vb = _mm256_cvtepu8_epi16(_mm_loadu_si128(b.cast()));
            let vw = _mm256_loadu_si256(w.cast());
            let products = if DOT {
                _mm256_madd_epi16(_mm256_mullo_epi16(va, vw), _mm256_mullo_epi16(vb, vw))
            } else {
                let e = _mm256_mullo_epi16(_mm256_sub_epi16(va, vb), vw);
                _mm256_madd_epi16(e, e)
            };
            _mm256_cvtepi32_ps(products)
        }
    }

    /// The code-to-code kernels: four independent accumulators over 64 dimensions a round
    /// (one accumulator's add latency would bound the loop), then 16 at a time, then scalar.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    unsafe fn code_kernel<const DOT: bool>(w: &[i16], a: &[u8], b: &[u8]) -> f32 {
        let n = w.len().min(a.len()).min(b.len());
        let steps = n / 16;
        let (wp, ap, bp) = (w.as_ptr(), a.as_ptr(), b.as_ptr());
        let sum;
        // SAFETY: every step reads 16 values at `i` with `i + 16 ≤ steps × 16 ≤ n`, within
        // slices at least `n` long; the intrinsics need only AVX2, which this function has.
        unsafe {
            let step = |i: usize| code_step::<DOT>(wp.add(i), ap.add(i), bp.add(i));
            let mut acc = [_mm256_setzero_ps(); 4];
            let rounds = steps / 4;
            for r in 0..rounds {
                let i = r * 64;
                acc[0] = _mm256_add_ps(acc[0], step(i));
                acc[1] = _mm256_add_ps(acc[1], step(i + 16));
                acc[2] = _mm256_add_ps(acc[2], step(i + 32));
                acc[3] = _mm256_add_ps(acc[3], step(i + 48));
            }
            for k in rounds * 4..steps {
                acc[k % 4] = _mm256_add_ps(acc[k % 4], step(k * 16));
            }
            let acc = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
            let s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps::<1>(acc));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_shuffle_ps::<0x55>(s, s));
            sum = _mm_cvtss_f32(s);
        }
        let tail = steps * 16..n;
        sum + super::code_body::<DOT>(&w[tail.clone()], &a[tail.clone()], &b[tail])
    }

    pub(super) fn code_l2_safe(w: &[i16], a: &[u8], b: &[u8]) -> f32 {
        // SAFETY: chosen only after the CPU reported AVX2.
        unsafe { code_kernel::<false>(w, a, b) }
    }

    pub(super) fn code_dot_safe(w: &[i16], a: &[u8], b: &[u8]) -> f32 {
        // SAFETY: chosen only after the CPU reported AVX2.
        unsafe { code_kernel::<true>(w, a, b) }
    }

    pub(super) fn l2_safe(a: &[f32], s: &[f32], c: &[u8]) -> f32 {
        // SAFETY: chosen only after the CPU reported AVX2 and FMA.
        unsafe { l2(a, s, c) }
    }

    pub(super) fn dot_safe(w: &[f32], c: &[u8]) -> f32 {
        // SAFETY: chosen only after the CPU reported AVX2 and FMA.
        unsafe { dot(w, c) }
    }
}

/// The kernels this CPU runs fastest.
#[derive(Clone, Copy)]
pub struct SqKernels {
    pub l2: fn(&[f32], &[f32], &[u8]) -> f32,
    pub dot: fn(&[f32], &[u8]) -> f32,
    /// Code to code, weighted by integers up to [`MAX_CODE_WEIGHT`]: `Σ (w·(a − b))²`.
    pub code_l2: fn(&[i16], &[u8], &[u8]) -> f32,
    /// `Σ (w·a)·(w·b)`.
    pub code_dot: fn(&[i16], &[u8], &[u8]) -> f32,
}

pub fn sq_kernels() -> &'static SqKernels {
    static CHOSEN: OnceLock<SqKernels> = OnceLock::new();
    CHOSEN.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if std::env::var("QUIVER_SIMD").as_deref() != Ok("portable")
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
        {
            return SqKernels {
                l2: avx2::l2_safe,
                dot: avx2::dot_safe,
                code_l2: avx2::code_l2_safe,
                code_dot: avx2::code_dot_safe,
            };
        }
        SqKernels {
            l2: l2_portable,
            dot: dot_portable,
            code_l2: code_l2_portable,
            code_dot: code_dot_portable,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type CodeKernel = fn(&[i16], &[u8], &[u8]) -> f32;

    proptest! {
        #[test]
        fn code_kernels_match_the_definition(
            pairs in proptest::collection::vec((any::<u8>(), any::<u8>(), 0..=MAX_CODE_WEIGHT), 0..2100),
        ) {
            let (a, b): (Vec<u8>, Vec<u8>) = pairs.iter().map(|&(a, b, _)| (a, b)).unzip();
            let w: Vec<i16> = pairs.iter().map(|&(_, _, w)| w).collect();
            let want_l2: f64 = pairs.iter().map(|&(a, b, w)| ((f64::from(a) - f64::from(b)) * f64::from(w)).powi(2)).sum();
            let want_dot: f64 = pairs.iter().map(|&(a, b, w)| f64::from(a) * f64::from(b) * f64::from(w).powi(2)).sum();
            let k = sq_kernels();
            for (l2, dot) in [(k.code_l2, k.code_dot), (code_l2_portable as CodeKernel, code_dot_portable as CodeKernel)] {
                prop_assert!((f64::from(l2(&w, &a, &b)) - want_l2).abs() <= 1e-5 * (1.0 + want_l2));
                prop_assert!((f64::from(dot(&w, &a, &b)) - want_dot).abs() <= 1e-5 * (1.0 + want_dot));
            }
        }

        #[test]
        fn code_kernels_do_not_overflow_at_the_extremes(dim in 0usize..5000) {
            let w = vec![MAX_CODE_WEIGHT; dim];
            let (zeros, full) = (vec![0u8; dim], vec![255u8; dim]);
            let k = sq_kernels();
            let most = (255.0 * f64::from(MAX_CODE_WEIGHT)).powi(2) * dim as f64;
            prop_assert!((f64::from((k.code_l2)(&w, &zeros, &full)) - most).abs() <= 1e-5 * (1.0 + most));
            prop_assert!((f64::from((k.code_dot)(&w, &full, &full)) - most).abs() <= 1e-5 * (1.0 + most));
        }

        #[test]
        fn kernels_match_the_definition(
            codes in proptest::collection::vec(any::<u8>(), 0..70),
            seed in 0u32..1000,
        ) {
            let n = codes.len();
            let a: Vec<f32> = (0..n).map(|i| ((i as u32 * 7 + seed) % 13) as f32 - 6.0).collect();
            let s: Vec<f32> = (0..n).map(|i| 0.01 + ((i as u32 + seed) % 5) as f32 * 0.02).collect();
            let want_l2: f64 = (0..n)
                .map(|i| (f64::from(a[i]) - f64::from(s[i]) * f64::from(codes[i])).powi(2))
                .sum();
            let want_dot: f64 = (0..n).map(|i| f64::from(s[i]) * f64::from(codes[i])).sum();
            let k = sq_kernels();
            for (l2, dot) in [(k.l2, k.dot), (l2_portable as fn(&[f32], &[f32], &[u8]) -> f32, dot_portable as fn(&[f32], &[u8]) -> f32)] {
                prop_assert!((f64::from(l2(&a, &s, &codes)) - want_l2).abs() <= 1e-3 * (1.0 + want_l2));
                prop_assert!((f64::from(dot(&s, &codes)) - want_dot).abs() <= 1e-3 * (1.0 + want_dot.abs()));
            }
        }
    }
}
