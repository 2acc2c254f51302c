//! Kernels over 8-bit scalar-quantized vectors (graph indexes): a code byte `c` of dimension
//! `i` stands for `min[i] + c · scale[i]`. One body per kernel, written in lanes of 16
//! independent accumulators so the compiler vectorizes it; compiled once for the baseline CPU
//! and once with AVX2+FMA, chosen at run time. Also the integer kernels over the 7-bit link
//! codes a graph build compares nodes with (`index::sq::SqLinkSpace`), hand-written for AVX2
//! and AVX-512 (BW, and VNNI where the CPU has it).

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

/// Largest value of a link code (7 bits): a difference of two stays within i8, and the sum
/// of two squares (or products) within i16, so `vpmaddubsw` multiplies 32 dimensions at once.
pub const LINK_CODE_MAX: u8 = 127;

/// Dimensions summed in one block of i32 lanes: each term is below 2¹⁴, so a block stays
/// below 2³¹ in any lane arrangement.
const LINK_BLOCK: usize = 1 << 16;

/// `Σ (a[i] − b[i])²`, or `Σ a[i]·b[i]` when `DOT`, over two link codes (values at most
/// [`LINK_CODE_MAX`]): exact integers, summed per block, returned as f32.
#[inline(always)]
fn link_body<const DOT: bool>(a: &[u8], b: &[u8]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut total = 0u64;
    for (a, b) in a.chunks(LINK_BLOCK).zip(b.chunks(LINK_BLOCK)) {
        let block: u32 = a
            .iter()
            .zip(b)
            .map(|(&a, &b)| {
                let (a, b) = (u32::from(a), u32::from(b));
                if DOT {
                    a * b
                } else {
                    a.abs_diff(b) * a.abs_diff(b)
                }
            })
            .sum();
        total += u64::from(block);
    }
    total as f32
}

fn link_l2_portable(a: &[u8], b: &[u8]) -> f32 {
    link_body::<false>(a, b)
}

fn link_dot_portable(a: &[u8], b: &[u8]) -> f32 {
    link_body::<true>(a, b)
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

    /// `Σ (a − b)²` (or `Σ a·b` when `DOT`) of 32 dimensions of link codes at `i`, as eight
    /// i32 lanes: the difference (`vpsubb`, within i8) made positive (`vpabsb`), squared and
    /// summed in pairs into i16 (`vpmaddubsw`, each pair at most 2 × 127²), then in pairs into
    /// i32 (`vpmaddwd`).
    ///
    /// # Safety
    /// AVX2; 32 values readable at each pointer.
    #[inline(always)]
    unsafe fn link_step<const DOT: bool>(a: *const u8, b: *const u8) -> __m256i {
        // SAFETY: the caller guarantees AVX2 and 32 readable values at each pointer.
        unsafe {
            let va = _mm256_loadu_si256(a.cast());
            let vb = _mm256_loadu_si256(b.cast());
            let pairs = if DOT {
                _mm256_maddubs_epi16(va, vb)
            } else {
                let d = _mm256_abs_epi8(_mm256_sub_epi8(va, vb));
                _mm256_maddubs_epi16(d, d)
            };
            _mm256_madd_epi16(pairs, _mm256_set1_epi16(1))
        }
    }

    /// The link-code kernels: two independent i32 accumulators over 64 dimensions a round,
    /// emptied into a u64 every [`super::LINK_BLOCK`] dimensions, then the tail in scalar.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    unsafe fn link_kernel<const DOT: bool>(a: &[u8], b: &[u8]) -> f32 {
        let n = a.len().min(b.len());
        let steps = n / 32;
        let (ap, bp) = (a.as_ptr(), b.as_ptr());
        let mut total = 0u64;
        let per_block = super::LINK_BLOCK / 32;
        let mut first = 0;
        while first < steps {
            let last = (first + per_block).min(steps);
            // SAFETY: every step reads 32 values at `i` with `i + 32 ≤ steps × 32 ≤ n`, within
            // slices at least `n` long; the intrinsics need only AVX2, which this function has.
            unsafe {
                let step = |k: usize| link_step::<DOT>(ap.add(k * 32), bp.add(k * 32));
                let mut acc = [_mm256_setzero_si256(); 2];
                let mut k = first;
                while k + 2 <= last {
                    acc[0] = _mm256_add_epi32(acc[0], step(k));
                    acc[1] = _mm256_add_epi32(acc[1], step(k + 1));
                    k += 2;
                }
                if k < last {
                    acc[0] = _mm256_add_epi32(acc[0], step(k));
                }
                let acc = _mm256_add_epi32(acc[0], acc[1]);
                let mut lanes = [0u32; 8];
                _mm256_storeu_si256(lanes.as_mut_ptr().cast(), acc);
                total += lanes.iter().map(|&l| u64::from(l)).sum::<u64>();
            }
            first = last;
        }
        let tail = steps * 32..n;
        total as f32 + super::link_body::<DOT>(&a[tail.clone()], &b[tail])
    }

    pub(super) fn link_l2_safe(a: &[u8], b: &[u8]) -> f32 {
        // SAFETY: chosen only after the CPU reported AVX2.
        unsafe { link_kernel::<false>(a, b) }
    }

    pub(super) fn link_dot_safe(a: &[u8], b: &[u8]) -> f32 {
        // SAFETY: chosen only after the CPU reported AVX2.
        unsafe { link_kernel::<true>(a, b) }
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

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// `Σ (a − b)²` (or `Σ a·b` when `DOT`) of 64 dimensions of link codes, added into `acc`'s
    /// sixteen i32 lanes: with VNNI, squared and summed in fours by one `vpdpbusd`; otherwise
    /// as AVX2's step does, in pairs twice.
    ///
    /// # Safety
    /// AVX-512 F and BW (and VNNI when `VNNI`).
    #[inline(always)]
    unsafe fn link_step<const DOT: bool, const VNNI: bool>(
        acc: __m512i,
        va: __m512i,
        vb: __m512i,
    ) -> __m512i {
        // SAFETY: the caller guarantees the CPU features named above.
        unsafe {
            let (x, y) = if DOT {
                (va, vb)
            } else {
                let d = _mm512_abs_epi8(_mm512_sub_epi8(va, vb));
                (d, d)
            };
            if VNNI {
                _mm512_dpbusd_epi32(acc, x, y)
            } else {
                let pairs = _mm512_maddubs_epi16(x, y);
                _mm512_add_epi32(acc, _mm512_madd_epi16(pairs, _mm512_set1_epi16(1)))
            }
        }
    }

    /// The link-code kernels over 64 dimensions a step, the last step's values loaded under a
    /// mask (no scalar tail), the lanes emptied into a u64 every [`super::LINK_BLOCK`]
    /// dimensions (each lane gains at most 4 × 127² a step).
    ///
    /// # Safety
    /// AVX-512 F and BW (and VNNI when `VNNI`).
    #[inline(always)]
    unsafe fn link_kernel<const DOT: bool, const VNNI: bool>(a: &[u8], b: &[u8]) -> f32 {
        let n = a.len().min(b.len());
        let (ap, bp) = (a.as_ptr(), b.as_ptr());
        let mut total = 0u64;
        let mut first = 0;
        while first < n {
            let last = (first + super::LINK_BLOCK).min(n);
            // SAFETY: full steps read 64 values at `i` with `i + 64 ≤ last ≤ n`; the last
            // step's masked load reads only the `last − i` values below `n` (masked-out bytes
            // are neither read nor faulted on); the caller guarantees the CPU features.
            unsafe {
                let mut acc = [_mm512_setzero_si512(); 2];
                let mut i = first;
                while i + 128 <= last {
                    let (a0, b0) = (ap.add(i).cast(), bp.add(i).cast());
                    let (a1, b1) = (ap.add(i + 64).cast(), bp.add(i + 64).cast());
                    acc[0] = link_step::<DOT, VNNI>(
                        acc[0],
                        _mm512_loadu_si512(a0),
                        _mm512_loadu_si512(b0),
                    );
                    acc[1] = link_step::<DOT, VNNI>(
                        acc[1],
                        _mm512_loadu_si512(a1),
                        _mm512_loadu_si512(b1),
                    );
                    i += 128;
                }
                while i < last {
                    let take = (last - i).min(64);
                    let mask: u64 = if take == 64 {
                        u64::MAX
                    } else {
                        (1u64 << take) - 1
                    };
                    let va = _mm512_maskz_loadu_epi8(mask, ap.add(i).cast());
                    let vb = _mm512_maskz_loadu_epi8(mask, bp.add(i).cast());
                    acc[0] = link_step::<DOT, VNNI>(acc[0], va, vb);
                    i += take;
                }
                let lanes = _mm512_add_epi32(acc[0], acc[1]);
                // Sixteen lanes of at most 2²⁶ each: the sum fits a u32.
                total += u64::from(_mm512_reduce_add_epi32(lanes) as u32);
            }
            first = last;
        }
        total as f32
    }

    /// # Safety
    /// The CPU must support AVX-512 F and BW.
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn link_bw<const DOT: bool>(a: &[u8], b: &[u8]) -> f32 {
        // SAFETY: this function has the features the kernel needs without VNNI.
        unsafe { link_kernel::<DOT, false>(a, b) }
    }

    /// # Safety
    /// The CPU must support AVX-512 F, BW and VNNI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn link_vnni<const DOT: bool>(a: &[u8], b: &[u8]) -> f32 {
        // SAFETY: this function has every feature the kernel needs.
        unsafe { link_kernel::<DOT, true>(a, b) }
    }

    pub(super) fn link_l2_bw(a: &[u8], b: &[u8]) -> f32 {
        // SAFETY: chosen only after the CPU reported AVX-512 F and BW.
        unsafe { link_bw::<false>(a, b) }
    }

    pub(super) fn link_dot_bw(a: &[u8], b: &[u8]) -> f32 {
        // SAFETY: chosen only after the CPU reported AVX-512 F and BW.
        unsafe { link_bw::<true>(a, b) }
    }

    pub(super) fn link_l2_vnni(a: &[u8], b: &[u8]) -> f32 {
        // SAFETY: chosen only after the CPU reported AVX-512 F, BW and VNNI.
        unsafe { link_vnni::<false>(a, b) }
    }

    pub(super) fn link_dot_vnni(a: &[u8], b: &[u8]) -> f32 {
        // SAFETY: chosen only after the CPU reported AVX-512 F, BW and VNNI.
        unsafe { link_vnni::<true>(a, b) }
    }
}

/// The kernels this CPU runs fastest.
#[derive(Clone, Copy)]
pub struct SqKernels {
    pub l2: fn(&[f32], &[f32], &[u8]) -> f32,
    pub dot: fn(&[f32], &[u8]) -> f32,
    /// Link code to link code (values at most [`LINK_CODE_MAX`]): `Σ (a − b)²`.
    pub link_l2: fn(&[u8], &[u8]) -> f32,
    /// `Σ a·b`.
    pub link_dot: fn(&[u8], &[u8]) -> f32,
}

pub fn sq_kernels() -> &'static SqKernels {
    static CHOSEN: OnceLock<SqKernels> = OnceLock::new();
    CHOSEN.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            let asked = std::env::var("QUIVER_SIMD");
            let asked = asked.as_deref().unwrap_or("");
            if asked != "portable"
                && is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
            {
                let mut kernels = SqKernels {
                    l2: avx2::l2_safe,
                    dot: avx2::dot_safe,
                    link_l2: avx2::link_l2_safe,
                    link_dot: avx2::link_dot_safe,
                };
                if asked != "avx2"
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                {
                    if is_x86_feature_detected!("avx512vnni") {
                        kernels.link_l2 = avx512::link_l2_vnni;
                        kernels.link_dot = avx512::link_dot_vnni;
                    } else {
                        kernels.link_l2 = avx512::link_l2_bw;
                        kernels.link_dot = avx512::link_dot_bw;
                    }
                }
                return kernels;
            }
        }
        SqKernels {
            l2: l2_portable,
            dot: dot_portable,
            link_l2: link_l2_portable,
            link_dot: link_dot_portable,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type LinkKernel = fn(&[u8], &[u8]) -> f32;

    /// Every link kernel this CPU runs.
    fn link_kernels() -> Vec<(LinkKernel, LinkKernel)> {
        let k = sq_kernels();
        let mut kernels: Vec<(LinkKernel, LinkKernel)> = vec![
            (k.link_l2, k.link_dot),
            (link_l2_portable, link_dot_portable),
        ];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") {
                kernels.push((avx2::link_l2_safe, avx2::link_dot_safe));
            }
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") {
                kernels.push((avx512::link_l2_bw, avx512::link_dot_bw));
                if is_x86_feature_detected!("avx512vnni") {
                    kernels.push((avx512::link_l2_vnni, avx512::link_dot_vnni));
                }
            }
        }
        kernels
    }

    #[test]
    fn link_kernels_sum_long_vectors_without_overflow() {
        // Past several blocks of i32 lanes, every term at its largest.
        let dim = 3 * LINK_BLOCK + 77;
        let (zeros, full) = (vec![0u8; dim], vec![LINK_CODE_MAX; dim]);
        let most = f64::from(LINK_CODE_MAX).powi(2) * dim as f64;
        for (l2, dot) in link_kernels() {
            assert!((f64::from(l2(&zeros, &full)) - most).abs() <= 1e-6 * most);
            assert!((f64::from(dot(&full, &full)) - most).abs() <= 1e-6 * most);
            assert_eq!(l2(&full, &full), 0.0);
        }
    }

    proptest! {
        #[test]
        fn link_kernels_match_the_definition(
            pairs in proptest::collection::vec((0..=LINK_CODE_MAX, 0..=LINK_CODE_MAX), 0..2100),
        ) {
            let (a, b): (Vec<u8>, Vec<u8>) = pairs.iter().copied().unzip();
            let want_l2: f64 = pairs.iter().map(|&(a, b)| (f64::from(a) - f64::from(b)).powi(2)).sum();
            let want_dot: f64 = pairs.iter().map(|&(a, b)| f64::from(a) * f64::from(b)).sum();
            for (l2, dot) in link_kernels() {
                prop_assert!((f64::from(l2(&a, &b)) - want_l2).abs() <= 1e-6 * (1.0 + want_l2));
                prop_assert!((f64::from(dot(&a, &b)) - want_dot).abs() <= 1e-6 * (1.0 + want_dot));
            }
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
