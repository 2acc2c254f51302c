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

fn l2_portable(a: &[f32], s: &[f32], c: &[u8]) -> f32 {
    l2_body(a, s, c)
}

fn dot_portable(w: &[f32], c: &[u8]) -> f32 {
    dot_body(w, c)
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
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
            };
        }
        SqKernels {
            l2: l2_portable,
            dot: dot_portable,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
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
